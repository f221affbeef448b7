//! results.json validates against docs/results.schema.json (JSON Schema draft 2020-12): the
//! files `brokerbench report` writes for the fixtures (trimmed real runs) and the one a short
//! real Redis run writes, with `run`'s workload flags recorded. Ports: Redis 7471-7476 (bus
//! 17471-17476), this file only.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/results.schema.json");
    let text = std::fs::read_to_string(&path).expect("docs/results.schema.json");
    serde_json::from_str(&text).expect("the schema is JSON")
}

/// The schema's complaints about `doc`, one line each ("" when it is valid).
fn violations(doc: &Value) -> String {
    let schema = schema();
    jsonschema::meta::validate(&schema).expect("a valid draft 2020-12 schema");
    let v = jsonschema::draft202012::new(&schema).expect("schema compiles");
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// results.json holds every row of summary.csv, typed, grouped by series, and meta.json as it is.
fn check_against_folder(dir: &Path, doc: &Value) {
    let rows = read_csv(&dir.join("summary.csv"));
    let json_rows: Vec<&Value> = doc["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .flat_map(|b| b["repetitions"].as_array().expect("repetitions"))
        .collect();
    assert_eq!(json_rows.len(), rows.len(), "{}", dir.display());
    for row in &rows {
        let j = json_rows
            .iter()
            .find(|j| j["backend"] == row["backend"].as_str())
            .unwrap_or_else(|| panic!("{}: no row {}", dir.display(), row["backend"]));
        for (col, text) in row {
            let v = &j[col.as_str()];
            match text.as_str() {
                "" => assert!(v.is_null() || v == "", "{col}: {v}"),
                "true" | "false" => assert_eq!(v.as_bool(), Some(text == "true"), "{col}"),
                t if t.parse::<f64>().is_ok() && col != "broker_version" => {
                    let n = v
                        .as_f64()
                        .unwrap_or_else(|| panic!("{col} is not a number: {v}"));
                    let want: f64 = t.parse().expect("number");
                    assert!(
                        (n - want).abs() <= want.abs() * 1e-12,
                        "{col}: {n} vs {want}"
                    );
                }
                t => assert_eq!(v.as_str(), Some(t), "{col}"),
            }
        }
    }
    assert_eq!(doc["environment"], read_json(&dir.join("meta.json")));
    let faults = if dir.join("faults.csv").is_file() {
        read_csv(&dir.join("faults.csv")).len()
    } else {
        0
    };
    assert_eq!(doc["faults"].as_array().map(Vec::len), Some(faults));
}

#[test]
fn report_writes_a_valid_results_json_for_every_fixture() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let fixtures = fixture_dirs();
    assert!(fixtures.len() >= 4, "{fixtures:?}");
    for from in fixtures {
        let name = from
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let dir = tmp.path().join(&name);
        copy_dir(&from, &dir);
        let (code, stdout, stderr) =
            brokerbench(&["report", dir.to_str().expect("utf-8")], tmp.path(), &[]);
        assert_eq!(code, 0, "{name}: {stderr}");
        let doc = read_json(&dir.join("results.json"));
        assert_eq!(violations(&doc), "", "{name}");
        check_against_folder(&dir, &doc);
        assert_eq!(doc["run"], name.as_str());
        // The verdicts are the report's: the same outcomes it printed.
        for v in doc["verdicts"].as_array().expect("verdicts") {
            let line = format!("  {}: ", v["claim"].as_str().expect("claim"));
            let printed = stdout
                .lines()
                .find(|l| l.starts_with(&line))
                .unwrap_or_else(|| panic!("{name}: {line} not printed: {stdout}"));
            use brokerbench::report::claims::Outcome::*;
            let outcome = [
                Supported,
                Refuted,
                Inconclusive,
                HostBound,
                WithinNoise,
                NotComparable,
                RunsDisagree,
                NotMeasured,
            ]
            .into_iter()
            .find(|o| serde_json::to_value(o).expect("json") == v["outcome"])
            .unwrap_or_else(|| panic!("{name}: unknown outcome {}", v["outcome"]));
            assert_eq!(printed, format!("{line}{}", outcome.as_str()), "{name}");
            assert!(
                !v["reason"].as_str().expect("reason").is_empty(),
                "{name}: {v}"
            );
        }
    }
}

/// The first summary row of a results.json.
fn row(doc: &mut Value) -> &mut Value {
    &mut doc["backends"][0]["repetitions"][0]
}

#[test]
fn the_schema_rejects_what_results_json_must_not_be() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("run");
    copy_dir(&fixture_dirs()[0], &dir);
    let (code, _, stderr) = brokerbench(&["report", dir.to_str().expect("utf-8")], tmp.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    let good = read_json(&dir.join("results.json"));
    assert_eq!(violations(&good), "");
    let bad = |edit: &dyn Fn(&mut Value)| {
        let mut doc = good.clone();
        edit(&mut doc);
        violations(&doc)
    };
    // A number as text, a boolean as text, a column the schema does not know, a missing one.
    let e = bad(&|d| row(d)["received_per_s"] = "1000".into());
    assert!(e.contains("received_per_s"), "{e}");
    let e = bad(&|d| row(d)["drained"] = "true".into());
    assert!(e.contains("drained"), "{e}");
    let e = bad(&|d| row(d)["speed"] = 1.into());
    assert!(e.contains("speed"), "{e}");
    let e = bad(&|d| {
        row(d).as_object_mut().expect("row").remove("lost");
    });
    assert!(e.contains("lost"), "{e}");
    let e = bad(&|d| d["verdicts"][0]["outcome"] = "maybe".into());
    assert!(e.contains("outcome"), "{e}");
}

#[test]
fn a_real_redis_run_writes_a_valid_results_json_with_its_flags_recorded() {
    require_redis();
    let tmp = tempfile::tempdir().expect("temp dir");
    // The file says 200 msg/s for 30 s; the flags make it 800 msg/s for 3 s.
    let scenario = write_scenario(
        tmp.path(),
        "results-json",
        r#"
name = "results-json"
[workload]
message_size = 256
destinations = 2
rate = 200
warmup = "1s"
duration = "30s"
drain_timeout = "10s"
[clusters.redis]
base_port = 7471
[[backends]]
type = "redis-streams"
"#,
    );
    let results = tmp.path().join("results");
    let (code, stdout, stderr) = brokerbench(
        &[
            "run",
            "--quiet",
            "--rate",
            "800",
            "--duration",
            "3s",
            "--results",
            results.to_str().expect("utf-8"),
            scenario.to_str().expect("utf-8"),
        ],
        tmp.path(),
        &[],
    );
    let left = redis_servers_on(7471..=7476);
    assert!(left.is_empty(), "left running: {}", describe(&left));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // RUST_LOG unset: no client logs.
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains(" redis::") || l.contains(" lapin::")),
        "client logs without RUST_LOG: {stderr}"
    );
    let dir = first_run_folder(&results).expect("a run folder");
    // The stopped cluster's folder keeps each node's config and log, not its data (AOF files
    // reach gigabytes at max rate).
    let node = dir.join("clusters/redis/node-7471");
    assert!(node.join("redis.conf").is_file(), "{}", node.display());
    for data in ["appendonlydir", "appendonly.aof", "dump.rdb"] {
        assert!(
            !node.join(data).exists(),
            "{data} kept in {}",
            node.display()
        );
    }
    let doc = read_json(&dir.join("results.json"));
    assert_eq!(violations(&doc), "");
    check_against_folder(&dir, &doc);
    let meta = read_json(&dir.join("meta.json"));
    assert_eq!(
        meta["overrides"],
        serde_json::json!({"rate": 800.0, "duration": "3s"})
    );
    assert_eq!(meta["workload"]["rate"], 800.0);
    // The scenario as written, before the flags.
    assert_eq!(doc["scenario"]["definition"]["workload"]["rate"], 200);
    assert_eq!(doc["scenario"]["name"], "results-json");
    let row = &doc["backends"][0]["repetitions"][0];
    assert_eq!(row["status"], "ok");
    assert_eq!(row["target_rate"], 800.0);
    assert_eq!(row["lost"], 0);
    let received = row["received_per_s"].as_f64().expect("rate");
    assert!(
        (700.0..=900.0).contains(&received),
        "{received} msg/s at 800"
    );

    // A run compared with itself passes the gate.
    let d = dir.to_str().expect("utf-8");
    let out = tmp.path().join("cmp");
    let (code, stdout, stderr) = brokerbench(
        &[
            "compare",
            d,
            d,
            "--max-regression",
            "10%",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("no regression beyond 10%"), "{stdout}");
}
