//! summary.csv: one row per backend.

use serde::Serialize;

use crate::metrics::aggregator::{max_ms, quantile_ms, Aggregator};
use crate::metrics::ledger::LedgerSummary;
use crate::metrics::stats::Latency;
use crate::scenario::{ClusterKind, Workload};

/// Read back with defaults for columns an older brokerbench did not write.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SummaryRow {
    /// The backend's label; `<label>#<n>` for repetition n of a repeated backend.
    pub backend: String,
    /// The backend's own label, the same over its repetitions (empty in folders written before
    /// repetitions: the same as `backend`).
    pub series: String,
    /// 1-based repetition (0 in folders written before repetitions: run once).
    pub repetition: usize,
    #[serde(rename = "type")]
    pub backend_type: String,
    /// "ok", "interrupted", or "error: ..." (the backend could not run).
    pub status: String,
    /// What a confirm guaranteed under the settings this backend ran with (`Guarantee`):
    /// throughput and latency compare only between rows whose guarantees are alike.
    pub guarantee: String,
    /// The `[clusters.<name>]` this backend ran on (empty in runs recorded before clusters had
    /// names).
    pub cluster: String,
    /// What that cluster runs (empty in runs recorded before).
    pub broker: Option<ClusterKind>,
    /// The broker version of that cluster, e.g. "7.0.15" (empty: unknown, or a run recorded
    /// before versions were).
    pub broker_version: String,
    /// The failure-detection settings it ran with: not a column of summary.csv but meta.json's,
    /// filled in when a results folder is read (None: a run recorded before they were).
    #[serde(skip)]
    pub failure_detection: Option<crate::scenario::FailureDetection>,
    /// `rate = "80% of max"`: the probe that set `target_rate` (meta.json's, like
    /// `failure_detection`).
    #[serde(skip)]
    pub rate_probe: Option<crate::run::probe::RateProbe>,
    /// Target rate over all producers in msg/s ("max" in the scenario: empty).
    pub target_rate: Option<f64>,
    /// Queues or streams this backend ran on.
    pub destinations: usize,
    /// Producers and consumers over all destinations (0 in folders written before they were
    /// recorded: unknown).
    pub producers: usize,
    pub consumers: usize,
    pub measured_s: f64,
    pub sent_per_s: f64,
    pub confirmed_per_s: f64,
    /// Distinct messages received per second (duplicates, foreign and phantom deliveries have
    /// their own rates).
    pub received_per_s: f64,
    pub duplicates_per_s: f64,
    pub foreign_per_s: f64,
    pub phantom_per_s: f64,
    pub publish_p50_ms: Option<f64>,
    pub publish_p90_ms: Option<f64>,
    pub publish_p99_ms: Option<f64>,
    pub publish_p999_ms: Option<f64>,
    pub publish_max_ms: Option<f64>,
    /// Failed and indeterminate publishes (nack, refusal, confirm timeout, lost connection):
    /// intended send time -> the moment the producer learnt it.
    pub publish_failed_p50_ms: Option<f64>,
    pub publish_failed_p99_ms: Option<f64>,
    pub publish_failed_max_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p90_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub e2e_p999_ms: Option<f64>,
    pub e2e_max_ms: Option<f64>,
    pub send_delay_p50_ms: Option<f64>,
    pub send_delay_p99_ms: Option<f64>,
    pub send_delay_max_ms: Option<f64>,
    /// The producers fell behind their schedule: messages went unsent, or the send delay p99
    /// was above `late_threshold_ms`. Latency figures of such a row include the harness's own
    /// lateness (they count from the intended time), and its throughput is not the target.
    pub overloaded: bool,
    /// A message later than this (send delay) counts as late: 10 message intervals of one
    /// producer, and at least 100 ms. Empty at max rate (no schedule to be late for).
    pub late_threshold_ms: Option<f64>,
    /// Share of the measured messages (measure and drain phases, unsent ones included) whose
    /// send delay was above `late_threshold_ms`.
    pub late_share: f64,
    /// Share of the scheduled messages that were never sent.
    pub unsent_share: f64,
    pub sent: u64,
    /// Due before the end of the load, never handed to the client (not part of `sent`).
    pub unsent: u64,
    pub confirmed: u64,
    pub failed: u64,
    pub indeterminate: u64,
    pub unconfirmed: u64,
    pub never_confirmed: u64,
    pub received: u64,
    pub duplicates: u64,
    /// Confirmed, never received, and no longer held by the broker.
    pub lost: u64,
    /// Confirmed and never received, but still held by the broker when the drain stopped
    /// (ready or unacked): a consumer behind, not a loss.
    pub undelivered: u64,
    /// The broker was asked what it still held (false: `lost` may include messages still in it).
    pub backlog_known: bool,
    pub unconfirmed_received: u64,
    pub received_failed: u64,
    pub received_indeterminate: u64,
    pub unconfirmed_missing: u64,
    pub failed_missing: u64,
    pub indeterminate_missing: u64,
    /// First receipts older than one the same consumer already had from the same producer.
    pub out_of_order: u64,
    /// Deliveries naming a sequence number this run never sent: an anomaly of the system under
    /// test (or another writer), reported apart from the ledger's own checks.
    pub phantom: u64,
    /// Deliveries that are not this run's messages.
    pub foreign: u64,
    /// Entries the broker had trimmed (MAXLEN) when a consumer claimed or read them.
    pub trimmed: u64,
    pub errors: u64,
    pub error_kinds: String,
    /// Every confirmed message was received before the drain timeout (a row with undelivered
    /// messages never is).
    pub drained: bool,
    pub ledger_consistent: bool,
    pub ledger_problems: String,
    /// `live`, or `replay` (the producers filled the destinations, then new consumers read the
    /// whole history); runs recorded before modes: live.
    pub mode: crate::scenario::LoadMode,
    /// Replay only: load start -> the fill's last confirm (s), and confirmed messages per
    /// second over it.
    pub fill_s: Option<f64>,
    pub fill_per_s: Option<f64>,
    /// Replay only: the new consumers' start -> their last receipt (s), and distinct messages
    /// read per second over it.
    pub replay_s: Option<f64>,
    pub replay_per_s: Option<f64>,
}

impl SummaryRow {
    /// The failure-detection settings it ran with, in words ("not recorded" in runs recorded
    /// before they were).
    pub fn detection(&self) -> String {
        self.failure_detection
            .as_ref()
            .map_or_else(|| "not recorded".into(), |d| d.describe())
    }

    /// The backend's own label over its repetitions.
    pub fn series(&self) -> &str {
        if self.series.is_empty() {
            &self.backend
        } else {
            &self.series
        }
    }

    /// A row for a backend that could not run.
    pub fn failed(backend: &str, backend_type: &str, status: String) -> Self {
        SummaryRow {
            backend: backend.to_string(),
            backend_type: backend_type.to_string(),
            status,
            ..Default::default()
        }
    }

    pub fn from_run(
        backend: &str,
        backend_type: &str,
        status: String,
        w: &Workload,
        agg: &Aggregator,
        ledger: &LedgerSummary,
        drained: bool,
    ) -> Self {
        let target_rate = w.rate_per_producer().map(|r| r * w.producers() as f64);
        let m = agg.measured();
        let secs = agg.measured_secs();
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let q = |l: Latency, p: f64| quantile_ms(m.histogram(l), p);
        let all = agg.all();
        let load = Load::of(w, m, ledger);
        SummaryRow {
            backend: backend.to_string(),
            // Set by the backend's run, which knows its repetition.
            series: String::new(),
            repetition: 0,
            backend_type: backend_type.to_string(),
            status,
            // Set by the backend's run, which knows the settings and the cluster.
            guarantee: String::new(),
            cluster: String::new(),
            broker: None,
            broker_version: String::new(),
            failure_detection: None,
            rate_probe: None,
            target_rate,
            destinations: w.destinations,
            producers: w.producers(),
            consumers: w.consumers(),
            measured_s: secs,
            sent_per_s: per_s(m.sent),
            confirmed_per_s: per_s(m.confirmed),
            received_per_s: per_s(m.received),
            duplicates_per_s: per_s(m.duplicates),
            foreign_per_s: per_s(m.foreign),
            phantom_per_s: per_s(m.phantom),
            publish_p50_ms: q(Latency::Publish, 0.5),
            publish_p90_ms: q(Latency::Publish, 0.9),
            publish_p99_ms: q(Latency::Publish, 0.99),
            publish_p999_ms: q(Latency::Publish, 0.999),
            publish_max_ms: max_ms(&m.publish),
            publish_failed_p50_ms: q(Latency::PublishFailed, 0.5),
            publish_failed_p99_ms: q(Latency::PublishFailed, 0.99),
            publish_failed_max_ms: max_ms(&m.publish_failed),
            e2e_p50_ms: q(Latency::EndToEnd, 0.5),
            e2e_p90_ms: q(Latency::EndToEnd, 0.9),
            e2e_p99_ms: q(Latency::EndToEnd, 0.99),
            e2e_p999_ms: q(Latency::EndToEnd, 0.999),
            e2e_max_ms: max_ms(&m.e2e),
            send_delay_p50_ms: q(Latency::SendDelay, 0.5),
            send_delay_p99_ms: q(Latency::SendDelay, 0.99),
            send_delay_max_ms: max_ms(&m.send_delay),
            overloaded: load.overloaded,
            late_threshold_ms: load.threshold_ms,
            late_share: load.late_share,
            unsent_share: load.unsent_share,
            sent: ledger.sent,
            unsent: ledger.unsent,
            confirmed: ledger.confirmed,
            failed: ledger.failed,
            indeterminate: ledger.indeterminate,
            unconfirmed: ledger.unconfirmed,
            never_confirmed: ledger.never_confirmed,
            received: ledger.received,
            duplicates: ledger.duplicates,
            lost: ledger.lost,
            undelivered: ledger.undelivered,
            backlog_known: ledger.backlog_known,
            unconfirmed_received: ledger.unconfirmed_received,
            received_failed: ledger.received_failed,
            received_indeterminate: ledger.received_indeterminate,
            unconfirmed_missing: ledger.unconfirmed_missing,
            failed_missing: ledger.failed_missing,
            indeterminate_missing: ledger.indeterminate_missing,
            out_of_order: all.out_of_order,
            phantom: ledger.phantom,
            foreign: all.foreign,
            trimmed: all.trimmed,
            errors: all.error_count(),
            error_kinds: all
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
            drained,
            ledger_consistent: ledger.consistent,
            ledger_problems: ledger.problems.clone(),
            mode: w.mode,
            // Set by the load, which knows when its fill and replay ended.
            fill_s: None,
            fill_per_s: None,
            replay_s: None,
            replay_per_s: None,
        }
    }

    /// The broker and its version, e.g. "Redis 7.0.15", with the protocol when the broker has
    /// several, e.g. "RabbitMQ 4.0.5, stream protocol" (None: not recorded).
    pub fn broker_name(&self) -> Option<String> {
        let kind = self.broker?;
        let protocol = crate::backend::registry::protocol_of_type(&self.backend_type)
            .map_or(String::new(), |p| format!(", {p}"));
        (!self.broker_version.is_empty())
            .then(|| format!("{} {}{protocol}", kind.product(), self.broker_version))
    }

    /// The row's name in legends and tables: its label and, when recorded, the broker version,
    /// e.g. "redis-streams (Redis 7.0.15)".
    pub fn display_name(&self) -> String {
        match self.broker_name() {
            Some(b) => format!("{} ({b})", self.backend),
            None => self.backend.clone(),
        }
    }

    /// Whether the system under test did something the harness never asked for (a delivery of
    /// a message never sent): reported as an anomaly, with its own exit status.
    pub fn has_anomaly(&self) -> bool {
        self.phantom > 0
    }

    /// A replay's two figures in words ("" for a live run).
    pub fn replay_line(&self) -> String {
        if self.mode != crate::scenario::LoadMode::Replay {
            return String::new();
        }
        let f = |v: Option<f64>, unit: &str| v.map_or("-".into(), |x| format!("{x:.0}{unit}"));
        let s = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.2} s"));
        format!(
            "fill {} in {}, replay {} in {}",
            f(self.fill_per_s, " msg/s"),
            s(self.fill_s),
            f(self.replay_per_s, " msg/s"),
            s(self.replay_s)
        )
    }

    /// One line for the terminal.
    pub fn one_line(&self) -> String {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        let replay = self.replay_line();
        let replay = if replay.is_empty() {
            replay
        } else {
            format!(" | {replay}")
        };
        format!(
            "{}: {}{} | {:.0} msg/s received | e2e p50 {} p99 {} max {} ms | publish p99 {} ms | send delay p99 {} ms | sent {} unsent {} confirmed {} received {} lost {} undelivered {} dup {} unconfirmed {} failed {} indeterminate {} phantom {} | ledger {}{}",
            self.display_name(),
            self.status,
            if self.overloaded { " (OVERLOADED: the producers fell behind their schedule)" } else { "" },
            self.received_per_s,
            f(self.e2e_p50_ms),
            f(self.e2e_p99_ms),
            f(self.e2e_max_ms),
            f(self.publish_p99_ms),
            f(self.send_delay_p99_ms),
            self.sent,
            self.unsent,
            self.confirmed,
            self.received,
            self.lost,
            self.undelivered,
            self.duplicates,
            self.unconfirmed,
            self.failed,
            self.indeterminate,
            self.phantom,
            if self.ledger_consistent { "adds up".to_string() } else { format!("DOES NOT ADD UP: {}", self.ledger_problems) },
            replay
        )
    }
}

/// Whether the producers kept to their schedule.
struct Load {
    overloaded: bool,
    threshold_ms: Option<f64>,
    late_share: f64,
    unsent_share: f64,
}

/// A message is late when its send delay exceeds this many intervals of one producer...
const LATE_INTERVALS: f64 = 10.0;
/// ...and at least this many milliseconds (timer and scheduling jitter on a busy host).
const LATE_MIN_MS: f64 = 100.0;

impl Load {
    fn of(w: &Workload, m: &crate::metrics::stats::Stats, ledger: &LedgerSummary) -> Load {
        let scheduled = ledger.sent + ledger.unsent;
        let share = |n: u64| {
            if scheduled > 0 {
                n as f64 / scheduled as f64
            } else {
                0.0
            }
        };
        let Some(rate) = w.rate_per_producer() else {
            return Load {
                overloaded: false,
                threshold_ms: None,
                late_share: 0.0,
                unsent_share: 0.0,
            };
        };
        let threshold_ms = (LATE_INTERVALS * 1000.0 / rate).max(LATE_MIN_MS);
        let threshold_us = (threshold_ms * 1000.0) as u64;
        let h = &m.send_delay;
        // Late ones among the recorded send delays (unsent ones are recorded there too).
        let late = if h.is_empty() || h.max() <= threshold_us {
            0
        } else {
            h.count_between(threshold_us + 1, h.max())
        };
        let p99_late = quantile_ms(h, 0.99).is_some_and(|p| p > threshold_ms);
        Load {
            overloaded: ledger.unsent > 0 || p99_late,
            threshold_ms: Some(threshold_ms),
            late_share: late as f64 / h.len().max(1) as f64,
            unsent_share: share(ledger.unsent),
        }
    }
}
