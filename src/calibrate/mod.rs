//! The harness's own ceiling: the whole load engine (open-loop schedule, payloads, ledger,
//! histograms, aggregator: `run_load` with the same producer and consumer tasks as a real run)
//! against the in-memory backend at max rate. What it sustains end to end, and the CPU it
//! spends per message, bound what any broker can be shown to do on the same host: a row whose
//! rate comes near it measured the harness, not the broker.

pub mod cache;
pub mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::backend::memory::{MemoryBackend, MemoryFaults};
use crate::backend::{Backend, BackendError};
use crate::clock::random_id;
use crate::metrics::aggregator::IntervalRow;
use crate::metrics::stats::Stats;
use crate::report::meta::{utc_now, HostInfo};
use crate::report::progress::progress_text;
use crate::report::{ReportError, Sink};
use crate::run::load::{run_load, LoadSpec};
use crate::scenario::{Rate, Workload};

/// A queue of the in-memory backend holds at most this many producer windows.
const QUEUE_CAPACITY_WINDOWS: usize = 4;

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrateOptions {
    pub warmup: Duration,
    pub duration: Duration,
    /// Send this many messages (then end as soon as all are received) instead of producing
    /// for the whole duration; the duration is then only a bound.
    pub messages: Option<u64>,
    pub destinations: usize,
    pub message_size: usize,
    pub max_in_flight: usize,
}

impl Default for CalibrateOptions {
    /// The shape of the throughput scenarios (3 destinations, one producer and one consumer
    /// each, 1 KiB, 256 in flight), for 3 s in all: short enough to run before every `run`.
    fn default() -> Self {
        CalibrateOptions {
            warmup: Duration::from_millis(500),
            duration: Duration::from_millis(2500),
            messages: None,
            destinations: 3,
            message_size: 1024,
            max_in_flight: 256,
        }
    }
}

impl CalibrateOptions {
    fn workload(&self) -> Workload {
        Workload {
            message_size: self.message_size,
            destinations: self.destinations,
            producers_per_destination: 1,
            consumers_per_destination: 1,
            producers_total: None,
            consumers_total: None,
            repeat: 1,
            rate: Rate::Max,
            max_in_flight: self.max_in_flight,
            warmup: self.warmup,
            duration: self.duration,
            drain_timeout: Duration::from_secs(30),
            op_timeout: Duration::from_secs(10),
            consumer_delay: Duration::ZERO,
            messages: self.messages,
            mode: crate::scenario::LoadMode::Live,
        }
    }

    /// In words, for the output and meta.json.
    pub fn describe(&self) -> String {
        let what = match self.messages {
            Some(m) => format!("{m} messages (at most {:?})", self.warmup + self.duration),
            None => format!("{:?} warm-up + {:?}", self.warmup, self.duration),
        };
        format!(
            "in-memory backend, {} destinations with 1 producer and 1 consumer each, {} B messages, max rate, {} in flight, {what}",
            self.destinations, self.message_size, self.max_in_flight
        )
    }
}

/// The harness's ceiling on one host with one binary (meta.json's `harness_ceiling`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// Distinct messages received per second, end to end, over the measured phase.
    pub msgs_per_s: f64,
    /// Messages sent per second over the measured phase.
    pub sent_per_s: f64,
    /// Harness CPU (user + system, every thread) per million messages received, in seconds.
    pub cpu_s_per_million: f64,
    /// Cores the harness kept busy on average while the load ran.
    pub cpu_cores: f64,
    /// Messages received (every phase).
    pub messages: u64,
    /// Wall time of the load (warm-up, measure, drain), in seconds.
    pub seconds: f64,
    /// The ledger's heap at the end, in bytes, and per message sent.
    pub ledger_bytes: u64,
    pub ledger_bytes_per_message: f64,
    /// Resident memory of the process at its peak and at the end of the load, in bytes.
    pub rss_peak_bytes: u64,
    pub rss_end_bytes: u64,
    /// What ran, in words.
    pub workload: String,
    pub measured_utc: String,
    pub hostname: String,
    pub cores: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("calibration: setting up the in-memory backend: {0}")]
    Setup(#[from] BackendError),
    #[error("calibration: the harness's ledger does not add up: {0}")]
    Ledger(String),
    #[error("calibration: {lost} messages lost on the in-memory backend (a harness bug)")]
    Lost { lost: u64 },
    #[error("calibration: no message was received in {0:?}")]
    NothingReceived(Duration),
    #[error("calibration: interrupted")]
    Interrupted,
    #[error("calibration: cannot read this process's CPU time or memory from the kernel")]
    Process,
    #[error("harness ceiling cache {}: {source}", .path.display())]
    Cache {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Run the load engine against the in-memory backend and measure it; `sinks` see its
/// intervals.
pub async fn measure(
    opts: &CalibrateOptions,
    sinks: &mut [Box<dyn Sink>],
    cancel: &mut watch::Receiver<bool>,
) -> Result<Ceiling, CalibrateError> {
    // A queue holds at most a few in-flight windows, as a broker's flow control would: the
    // producers cannot run ahead of the consumers and pile up memory.
    let memory = Arc::new(MemoryBackend::new(MemoryFaults {
        capacity: Some(QUEUE_CAPACITY_WINDOWS * opts.max_in_flight),
        ..MemoryFaults::default()
    }));
    let backend: Arc<dyn Backend> = memory;
    let dests = backend.setup("calibrate", opts.destinations).await?;
    let w = opts.workload();
    let cpu_before = process::cpu_seconds().ok_or(CalibrateError::Process)?;
    let started = Instant::now();
    let out = run_load(
        LoadSpec {
            run_id: random_id(),
            label: "calibrate",
            kind: "memory",
            backend: backend.clone(),
            dests: &dests,
            workload: &w,
            faults: Vec::new(),
        },
        None,
        sinks,
        cancel,
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = process::cpu_seconds().ok_or(CalibrateError::Process)? - cpu_before;
    let rss = process::rss().ok_or(CalibrateError::Process)?;
    let _ = backend.teardown(&dests).await;
    let s = &out.summary;
    if out.interrupted {
        return Err(CalibrateError::Interrupted);
    }
    if !s.ledger_consistent {
        return Err(CalibrateError::Ledger(s.ledger_problems.clone()));
    }
    if s.lost > 0 {
        return Err(CalibrateError::Lost { lost: s.lost });
    }
    if s.received == 0 {
        return Err(CalibrateError::NothingReceived(w.warmup + w.duration));
    }
    let host = HostInfo::read();
    Ok(Ceiling {
        msgs_per_s: s.received_per_s,
        sent_per_s: s.sent_per_s,
        cpu_s_per_million: cpu / s.received as f64 * 1e6,
        cpu_cores: cpu / seconds,
        messages: s.received,
        seconds,
        ledger_bytes: out.ledger_bytes,
        ledger_bytes_per_message: out.ledger_bytes as f64 / s.sent.max(1) as f64,
        rss_peak_bytes: rss.peak,
        rss_end_bytes: rss.now,
        workload: opts.describe(),
        measured_utc: utc_now(),
        hostname: host.hostname,
        cores: host.cores,
    })
}

impl Ceiling {
    /// A few lines for a terminal.
    pub fn lines(&self) -> Vec<String> {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        vec![
            format!(
                "harness ceiling: {:.0} msg/s end to end ({:.0} msg/s sent); {:.2} s of harness CPU per million messages ({:.2} cores busy)",
                self.msgs_per_s, self.sent_per_s, self.cpu_s_per_million, self.cpu_cores
            ),
            format!(
                "{} messages in {:.1} s; ledger {:.1} MiB ({:.3} bytes/message); RSS {:.1} MiB at the end, {:.1} MiB at its peak",
                self.messages,
                self.seconds,
                mib(self.ledger_bytes),
                self.ledger_bytes_per_message,
                mib(self.rss_end_bytes),
                mib(self.rss_peak_bytes)
            ),
            format!("({} on {}, {} cores)", self.workload, self.hostname, self.cores),
        ]
    }
}

/// A sink that prints one line per interval (`calibrate --verbose`).
#[derive(Debug, Default)]
pub struct IntervalLines;

impl Sink for IntervalLines {
    fn on_interval(&mut self, row: &IntervalRow, _: &Stats) -> Result<(), ReportError> {
        crate::errln!("{}", progress_text(&row.backend, row, row.t_end_s));
        Ok(())
    }
}
