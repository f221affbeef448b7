//! summary.csv: one row per backend.

use serde::Serialize;

use crate::metrics::aggregator::{max_ms, quantile_ms, Aggregator};
use crate::metrics::ledger::LedgerSummary;
use crate::metrics::stats::Latency;
use crate::scenario::Workload;

/// Read back with defaults for columns an older brokerbench did not write.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SummaryRow {
    pub backend: String,
    #[serde(rename = "type")]
    pub backend_type: String,
    /// "ok", "interrupted", or "error: ..." (the backend could not run).
    pub status: String,
    /// Target rate over all producers in msg/s ("max" in the scenario: empty).
    pub target_rate: Option<f64>,
    /// Queues or streams this backend ran on.
    pub destinations: usize,
    pub measured_s: f64,
    pub sent_per_s: f64,
    pub confirmed_per_s: f64,
    pub received_per_s: f64,
    pub publish_p50_ms: Option<f64>,
    pub publish_p90_ms: Option<f64>,
    pub publish_p99_ms: Option<f64>,
    pub publish_p999_ms: Option<f64>,
    pub publish_max_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p90_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub e2e_p999_ms: Option<f64>,
    pub e2e_max_ms: Option<f64>,
    pub send_delay_p50_ms: Option<f64>,
    pub send_delay_p99_ms: Option<f64>,
    pub send_delay_max_ms: Option<f64>,
    pub sent: u64,
    pub confirmed: u64,
    pub failed: u64,
    pub indeterminate: u64,
    pub unconfirmed: u64,
    pub never_confirmed: u64,
    pub received: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub unconfirmed_received: u64,
    pub received_failed: u64,
    pub received_indeterminate: u64,
    pub unconfirmed_missing: u64,
    pub failed_missing: u64,
    pub indeterminate_missing: u64,
    pub out_of_order: u64,
    pub phantom: u64,
    pub foreign: u64,
    pub errors: u64,
    pub error_kinds: String,
    /// Every confirmed message was received before the drain timeout.
    pub drained: bool,
    pub ledger_consistent: bool,
    pub ledger_problems: String,
}

impl SummaryRow {
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
        SummaryRow {
            backend: backend.to_string(),
            backend_type: backend_type.to_string(),
            status,
            target_rate,
            destinations: w.destinations,
            measured_s: secs,
            sent_per_s: per_s(m.sent),
            confirmed_per_s: per_s(m.confirmed),
            received_per_s: per_s(m.received),
            publish_p50_ms: q(Latency::Publish, 0.5),
            publish_p90_ms: q(Latency::Publish, 0.9),
            publish_p99_ms: q(Latency::Publish, 0.99),
            publish_p999_ms: q(Latency::Publish, 0.999),
            publish_max_ms: max_ms(&m.publish),
            e2e_p50_ms: q(Latency::EndToEnd, 0.5),
            e2e_p90_ms: q(Latency::EndToEnd, 0.9),
            e2e_p99_ms: q(Latency::EndToEnd, 0.99),
            e2e_p999_ms: q(Latency::EndToEnd, 0.999),
            e2e_max_ms: max_ms(&m.e2e),
            send_delay_p50_ms: q(Latency::SendDelay, 0.5),
            send_delay_p99_ms: q(Latency::SendDelay, 0.99),
            send_delay_max_ms: max_ms(&m.send_delay),
            sent: ledger.sent,
            confirmed: ledger.confirmed,
            failed: ledger.failed,
            indeterminate: ledger.indeterminate,
            unconfirmed: ledger.unconfirmed,
            never_confirmed: ledger.never_confirmed,
            received: ledger.received,
            duplicates: ledger.duplicates,
            lost: ledger.lost,
            unconfirmed_received: ledger.unconfirmed_received,
            received_failed: ledger.received_failed,
            received_indeterminate: ledger.received_indeterminate,
            unconfirmed_missing: ledger.unconfirmed_missing,
            failed_missing: ledger.failed_missing,
            indeterminate_missing: ledger.indeterminate_missing,
            out_of_order: ledger.out_of_order,
            phantom: ledger.phantom,
            foreign: all.foreign,
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
        }
    }

    /// One line for the terminal.
    pub fn one_line(&self) -> String {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        format!(
            "{}: {} | {:.0} msg/s received | e2e p50 {} p99 {} max {} ms | publish p99 {} ms | sent {} confirmed {} received {} lost {} dup {} unconfirmed {} failed {} indeterminate {} | ledger {}",
            self.backend,
            self.status,
            self.received_per_s,
            f(self.e2e_p50_ms),
            f(self.e2e_p99_ms),
            f(self.e2e_max_ms),
            f(self.publish_p99_ms),
            self.sent,
            self.confirmed,
            self.received,
            self.lost,
            self.duplicates,
            self.unconfirmed,
            self.failed,
            self.indeterminate,
            if self.ledger_consistent { "adds up".to_string() } else { format!("DOES NOT ADD UP: {}", self.ledger_problems) }
        )
    }
}
