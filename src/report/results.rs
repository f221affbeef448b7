//! A results folder read back from its files alone (no broker needed): what `brokerbench
//! report` and `compare` draw and judge.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{FaultRow, ReportError, SummaryRow};
use crate::metrics::aggregator::IntervalRow;
use crate::scenario::{BackendSpec, FailureDetection};

/// One row of timeline.csv.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TimelineEntry {
    pub backend: String,
    /// "phase" or "fault".
    pub kind: String,
    pub name: String,
    pub start_s: f64,
    pub end_s: Option<f64>,
}

/// One row of replica_lag.csv: how far one node's copies are behind their leaders (its worst
/// copy), sampled once a second (`metrics::replica_lag`); the report draws it when it is there.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LagSample {
    pub backend: String,
    /// Seconds since the backend's load started.
    pub t_s: f64,
    /// The replica (a RabbitMQ node name, a Redis `host:port`).
    pub node: String,
    /// Entries (messages) behind the leader, at most (the upper bound).
    pub lag_messages: f64,
    /// At least this many entries behind (the lower bound); absent in runs recorded before the
    /// bounds were.
    #[serde(default)]
    pub lag_messages_min: Option<f64>,
}

/// One row of cpu.csv: one node's share of the host's CPU over the interval ending at `t_s`
/// (0.0 to the number of cores), sampled once a second (`metrics::cpu`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CpuSample {
    pub backend: String,
    pub t_s: f64,
    /// A broker node, or "harness".
    pub node: String,
    pub cpu: f64,
}

/// Everything a report needs from one run folder. Files a run did not write are empty.
#[derive(Debug, Clone)]
pub struct RunResults {
    pub dir: PathBuf,
    /// The folder's name, e.g. `20261127T083643Z-failover-leader`.
    pub name: String,
    pub meta: serde_json::Value,
    pub summary: Vec<SummaryRow>,
    pub timeseries: Vec<IntervalRow>,
    pub timeline: Vec<TimelineEntry>,
    pub faults: Vec<FaultRow>,
    pub replica_lag: Vec<LagSample>,
    pub cpu: Vec<CpuSample>,
}

fn read_rows<T: DeserializeOwned>(path: &Path, required: bool) -> Result<Vec<T>, ReportError> {
    if !required && !path.exists() {
        return Ok(Vec::new());
    }
    let csv_err = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut r = csv::Reader::from_path(path).map_err(csv_err)?;
    r.deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(csv_err)
}

/// What meta.json's backends say about each row: the failure-detection settings (absent in runs
/// recorded before they were). Runs recorded before summary.csv named the cluster and broker
/// version of each row: take the version from meta.json's backends and the kind from the
/// backend type. Each backend then ran on the one cluster of its kind, which has the kind's
/// name.
fn fill_from_meta(summary: &mut [SummaryRow], meta: &serde_json::Value) {
    let backends = meta["backends"].as_array();
    for row in summary.iter_mut() {
        let backend = backends
            .into_iter()
            .flatten()
            .find(|b| b["label"].as_str() == Some(row.backend.as_str()));
        row.failure_detection = backend.and_then(FailureDetection::from_meta);
        row.rate_probe = backend
            .and_then(|b| b.get("rate_probe"))
            .and_then(|p| serde_json::from_value(p.clone()).ok());
        if row.broker.is_none() {
            row.broker = BackendSpec::from_type(&row.backend_type).map(|b| b.cluster_kind());
        }
        if row.cluster.is_empty() {
            if let Some(kind) = row.broker {
                row.cluster = kind.as_str().to_string();
            }
        }
        if row.broker_version.is_empty() {
            let version = backends
                .into_iter()
                .flatten()
                .find(|b| b["label"].as_str() == Some(row.backend.as_str()))
                .and_then(|b| b["broker_version"].as_str());
            if let Some(v) = version {
                row.broker_version = v.to_string();
            }
        }
    }
}

impl RunResults {
    /// Read a results folder; summary.csv and meta.json must be there.
    pub fn load(dir: &Path) -> Result<Self, ReportError> {
        let meta_path = dir.join("meta.json");
        let meta_text = std::fs::read_to_string(&meta_path).map_err(|source| ReportError::Io {
            path: meta_path.clone(),
            source,
        })?;
        let meta = serde_json::from_str(&meta_text).map_err(|e| ReportError::Encode {
            path: meta_path,
            message: format!("not valid JSON: {e}"),
        })?;
        let mut summary = read_rows(&dir.join("summary.csv"), true)?;
        fill_from_meta(&mut summary, &meta);
        Ok(RunResults {
            dir: dir.to_path_buf(),
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            meta,
            summary,
            timeseries: read_rows(&dir.join("timeseries.csv"), false)?,
            timeline: read_rows(&dir.join("timeline.csv"), false)?,
            faults: read_rows(&dir.join("faults.csv"), false)?,
            replica_lag: read_rows(&dir.join("replica_lag.csv"), false)?,
            cpu: read_rows(&dir.join("cpu.csv"), false)?,
        })
    }

    /// A backend's name in legends and titles: its label and broker version, e.g.
    /// "redis-streams (Redis 7.0.15)".
    pub fn display_name(&self, backend: &str) -> String {
        self.summary
            .iter()
            .find(|s| s.backend == backend)
            .map(|s| s.display_name())
            .unwrap_or_else(|| backend.to_string())
    }

    /// Backend labels in the order they ran.
    pub fn backends(&self) -> Vec<&str> {
        self.summary.iter().map(|s| s.backend.as_str()).collect()
    }

    /// The fault windows of one backend: (name, start_s, end_s).
    pub fn fault_windows(&self, backend: &str) -> Vec<(String, f64, f64)> {
        self.timeline
            .iter()
            .filter(|e| e.backend == backend && e.kind == "fault")
            .map(|e| (e.name.clone(), e.start_s, e.end_s.unwrap_or(e.start_s)))
            .collect()
    }

    /// When the measured phase of one backend started (seconds since its load started).
    pub fn measure_start_s(&self, backend: &str) -> f64 {
        self.timeline
            .iter()
            .find(|e| {
                e.backend == backend
                    && e.kind == "phase"
                    && e.name == crate::scenario::timeline::Phase::Measure.as_str()
            })
            .map(|e| e.start_s)
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_lag_reads_with_or_without_its_lower_bound() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("replica_lag.csv");
        std::fs::write(
            &path,
            "backend,t_s,node,lag_messages,lag_messages_min\nredis,1,n1,5,2\n",
        )
        .expect("write");
        let rows: Vec<LagSample> = read_rows(&path, true).expect("read");
        assert_eq!(
            (rows[0].lag_messages, rows[0].lag_messages_min),
            (5.0, Some(2.0))
        );
        // A run recorded before the lower bound.
        std::fs::write(&path, "backend,t_s,node,lag_messages\nredis,1,n1,5\n").expect("write");
        let rows: Vec<LagSample> = read_rows(&path, true).expect("read old");
        assert_eq!(
            (rows[0].lag_messages, rows[0].lag_messages_min),
            (5.0, None)
        );
    }
}
