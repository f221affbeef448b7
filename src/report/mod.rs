//! Result sinks: CSV files, HdrHistogram logs, the live progress line. Each sink implements
//! the hooks it needs; the others default to doing nothing.

pub mod aggregate;
pub mod charts;
pub mod claims;
pub mod compare;
pub mod csv_files;
pub mod document;
mod faults_section;
mod front;
pub mod harness;
pub mod hgrm;
pub mod hlog;
pub mod html;
pub mod meta;
pub mod overview;
pub mod progress;
pub mod regression;
mod replay_section;
pub mod results;
pub mod results_json;
pub mod summary;

use std::path::PathBuf;

pub use crate::fault::FaultRow;
use crate::metrics::aggregator::IntervalRow;
use crate::metrics::stats::Stats;
use crate::scenario::timeline::TimelineEvent;
pub use summary::SummaryRow;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Csv { path: PathBuf, source: csv::Error },
    #[error("{}: {message}", .path.display())]
    Encode { path: PathBuf, message: String },
}

/// What a sink learns when a backend's load starts.
#[derive(Debug, Clone)]
pub struct BackendStart {
    pub label: String,
    pub backend_type: String,
    /// Load start as wall-clock time (for histogram log headers).
    pub started: std::time::SystemTime,
    /// Seconds of warm-up and of measurement.
    pub warmup_s: f64,
    pub duration_s: f64,
}

/// A backend's load as it goes, besides the aggregator's interval row: handed to the sinks
/// once per interval (the live metrics' gauges).
#[derive(Debug, Clone, Copy)]
pub struct LiveFigures<'a> {
    /// Confirmed (without confirms: sent and not failed) and not received yet.
    pub awaiting: u64,
    /// Faults in progress, by action.
    pub faults_active: &'a [(crate::scenario::FaultAction, u32)],
}

/// destinations.csv: one row per destination and second of a backend's load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DestinationSecond {
    pub backend: String,
    pub destination: String,
    /// Whole seconds since the backend's load started.
    pub second: u64,
    pub confirmed: u64,
    pub publish_failed: u64,
    pub received: u64,
    pub consume_failed: u64,
}

/// lost.csv: one confirmed message that was never received (Jepsen lists them too).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LostMessage {
    pub backend: String,
    pub producer: u32,
    pub seq: u64,
    pub fate: LostFate,
}

/// What is known of a confirmed message that never arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LostFate {
    /// The broker held nothing more for the consumers when the drain stopped: it is gone.
    Lost,
    /// The broker still held some messages (a consumer behind): this one is either among them
    /// or gone; summary.csv says how many of each.
    LostOrUndelivered,
}

pub trait Sink: Send {
    fn on_backend_start(&mut self, _start: &BackendStart) -> Result<(), ReportError> {
        Ok(())
    }
    fn on_interval(&mut self, _row: &IntervalRow, _interval: &Stats) -> Result<(), ReportError> {
        Ok(())
    }
    fn on_event(&mut self, _event: &TimelineEvent) -> Result<(), ReportError> {
        Ok(())
    }
    /// The load's live figures, once per interval right after `on_interval`.
    fn on_live(&mut self, _live: &LiveFigures) -> Result<(), ReportError> {
        Ok(())
    }
    /// A line about a fault being injected or observed, as it happens.
    fn on_notice(&mut self, _line: &str) -> Result<(), ReportError> {
        Ok(())
    }
    /// The recovery figures of a backend's faults, once its load is over.
    fn on_faults(&mut self, _rows: &[FaultRow]) -> Result<(), ReportError> {
        Ok(())
    }
    /// Confirmed messages never received, once a backend's drain is over.
    fn on_lost(&mut self, _rows: &[LostMessage]) -> Result<(), ReportError> {
        Ok(())
    }
    /// Each node's worst replica lag at the last sample, while a backend's load runs.
    fn on_replica_lag(
        &mut self,
        _rows: &[crate::metrics::replica_lag::LagRow],
    ) -> Result<(), ReportError> {
        Ok(())
    }
    /// Each node's CPU over the last second, while a backend's load runs.
    fn on_cpu(&mut self, _rows: &[crate::metrics::cpu::CpuRow]) -> Result<(), ReportError> {
        Ok(())
    }
    /// Per-destination counts per second, once a backend's load is over.
    fn on_destinations(&mut self, _rows: &[DestinationSecond]) -> Result<(), ReportError> {
        Ok(())
    }
    fn on_backend_end(&mut self, _summary: &SummaryRow) -> Result<(), ReportError> {
        Ok(())
    }
    fn on_run_end(&mut self) -> Result<(), ReportError> {
        Ok(())
    }
}

/// Call a hook on every sink; the first error is returned after all have been called.
pub fn each<F>(sinks: &mut [Box<dyn Sink>], mut f: F) -> Result<(), ReportError>
where
    F: FnMut(&mut dyn Sink) -> Result<(), ReportError>,
{
    let mut first = Ok(());
    for s in sinks.iter_mut() {
        if let Err(e) = f(s.as_mut()) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}
