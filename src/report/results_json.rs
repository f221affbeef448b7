//! results.json: a results folder for machines (CI, notebooks, dashboards). Everything comes
//! from the folder's own files, read by `RunResults` like the report reads them: the scenario
//! (scenario.toml), the environment (meta.json as it is), every summary.csv row grouped per
//! backend series with its figures typed, faults.csv, and the claims' verdicts computed by
//! `claims::verdicts`, never by a rule of its own. Its JSON Schema is docs/results.schema.json.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::claims::{verdicts, Evidence, Verdict};
use super::results::RunResults;
use super::{FaultRow, ReportError, SummaryRow};

/// The file's name in a results folder.
pub const FILE: &str = "results.json";

/// Bumped when a field changes meaning or goes away (new fields keep the version).
pub const SCHEMA_VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Serialize)]
pub struct ResultsJson<'a> {
    pub schema_version: u32,
    /// The results folder's name, e.g. `20261127T083643Z-failover-leader`.
    pub run: &'a str,
    pub scenario: ScenarioJson,
    /// meta.json as the run wrote it: versions, host, effective workload, clusters, backends.
    pub environment: &'a serde_json::Value,
    /// One entry per backend series (its own label), in the order they first ran.
    pub backends: Vec<BackendJson<'a>>,
    /// faults.csv: one row per fault and backend (empty without faults).
    pub faults: &'a [FaultRow],
    /// C1..C6 with their outcome, rule, figures and one-sentence reason.
    pub verdicts: &'a [Verdict],
}

/// What ran.
#[derive(Debug, Serialize)]
pub struct ScenarioJson {
    /// The scenario's name (meta.json `scenario`).
    pub name: String,
    /// The file it was read from (meta.json `scenario_file`; None: not recorded).
    pub file: Option<String>,
    /// The folder's scenario.toml as JSON (the file as written, before `run`'s overrides,
    /// which meta.json records); None when the folder has no scenario.toml.
    pub definition: Option<serde_json::Value>,
}

/// One backend series: its rows of summary.csv, one per repetition.
#[derive(Debug, Serialize)]
pub struct BackendJson<'a> {
    /// The backend's own label over its repetitions.
    pub series: &'a str,
    #[serde(rename = "type")]
    pub backend_type: &'a str,
    /// Every figure of summary.csv, one object per repetition, in the order they ran.
    pub repetitions: Vec<&'a SummaryRow>,
}

/// The summary rows grouped by series, in the order each series first appears.
fn backends(summary: &[SummaryRow]) -> Vec<BackendJson<'_>> {
    let mut out: Vec<BackendJson> = Vec::new();
    for row in summary {
        match out.iter_mut().find(|b| b.series == row.series()) {
            Some(b) => b.repetitions.push(row),
            None => out.push(BackendJson {
                series: row.series(),
                backend_type: &row.backend_type,
                repetitions: vec![row],
            }),
        }
    }
    out
}

/// The folder's scenario.toml as JSON (None: no such file).
fn definition(dir: &Path) -> Result<Option<serde_json::Value>, ReportError> {
    let path = dir.join("scenario.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReportError::Io { path, source }),
    };
    let value: toml::Value = toml::from_str(&text).map_err(|e| ReportError::Encode {
        path: path.clone(),
        message: format!("not valid TOML: {}", e.message()),
    })?;
    serde_json::to_value(value)
        .map(Some)
        .map_err(|e| ReportError::Encode {
            path,
            message: format!("cannot be put in results.json: {e}"),
        })
}

/// The document for a folder already read, with the verdicts the report computed for it.
pub fn build<'a>(
    run: &'a RunResults,
    verdicts: &'a [Verdict],
) -> Result<ResultsJson<'a>, ReportError> {
    let meta = &run.meta;
    Ok(ResultsJson {
        schema_version: SCHEMA_VERSION,
        run: &run.name,
        scenario: ScenarioJson {
            name: meta["scenario"]
                .as_str()
                .unwrap_or(run.name.as_str())
                .to_string(),
            file: meta["scenario_file"].as_str().map(str::to_string),
            definition: definition(&run.dir)?,
        },
        environment: meta,
        backends: backends(&run.summary),
        faults: &run.faults,
        verdicts,
    })
}

/// Read a results folder and write its results.json; returns the file's path.
pub fn write(dir: &Path) -> Result<PathBuf, ReportError> {
    let run = RunResults::load(dir)?;
    let verdicts = verdicts(&Evidence::of(&run));
    let doc = build(&run, &verdicts)?;
    let path = dir.join(FILE);
    let text = serde_json::to_string_pretty(&doc).map_err(|e| ReportError::Encode {
        path: path.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&path, text + "\n").map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn rows_group_by_series_in_the_order_they_ran_with_typed_figures() {
        let run = RunResults::load(&fixture("verdicts-run")).expect("fixture");
        let v = verdicts(&Evidence::of(&run));
        let doc = build(&run, &v).expect("build");
        let rows: usize = doc.backends.iter().map(|b| b.repetitions.len()).sum();
        assert_eq!(rows, run.summary.len());
        let mut expected: Vec<&str> = Vec::new();
        for r in &run.summary {
            if !expected.contains(&r.series()) {
                expected.push(r.series());
            }
        }
        let series: Vec<&str> = doc.backends.iter().map(|b| b.series).collect();
        assert_eq!(series, expected);
        let json = serde_json::to_value(&doc).expect("json");
        let row = &json["backends"][0]["repetitions"][0];
        assert!(row["received_per_s"].is_number(), "{row}");
        assert!(row["sent"].is_u64(), "{row}");
        assert!(row["ledger_consistent"].is_boolean(), "{row}");
        assert_eq!(json["verdicts"].as_array().map(Vec::len), Some(6));
        assert!(json["verdicts"][0]["reason"].is_string());
        assert_eq!(json["environment"], run.meta);
        // The fixture has no scenario.toml.
        assert!(json["scenario"]["definition"].is_null());
    }

    #[test]
    fn a_broken_scenario_toml_names_the_file() {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::write(tmp.path().join("scenario.toml"), "name = ").expect("write");
        let e = definition(tmp.path()).expect_err("broken");
        assert!(
            e.to_string().contains("scenario.toml: not valid TOML"),
            "{e}"
        );
        std::fs::write(
            tmp.path().join("scenario.toml"),
            "name = \"x\"\n[workload]\nrate = 10\n",
        )
        .expect("write");
        let v = definition(tmp.path()).expect("ok").expect("some");
        assert_eq!(v["workload"]["rate"], 10);
    }
}
