//! The one aggregator of a backend run: once per interval it collects every load task's stats
//! (an O(1) swap per task), merges them into the interval view and the cumulative views, and
//! produces one time-series row.

use serde::Serialize;

use super::stats::{Recorder, Stats};
use crate::scenario::timeline::Phase;

/// One row of timeseries.csv: one interval of one backend. Read back with defaults for columns
/// an older brokerbench did not write.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct IntervalRow {
    pub backend: String,
    /// Seconds since the backend's load started.
    pub t_start_s: f64,
    pub t_end_s: f64,
    /// warmup, measure or drain.
    pub phase: Phase,
    pub sent: u64,
    /// Due but never handed to the client (counted when the run stopped the producer).
    pub unsent: u64,
    pub confirmed: u64,
    /// Failed or indeterminate publishes.
    pub failed: u64,
    /// Distinct messages received for the first time.
    pub received: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub phantom: u64,
    pub trimmed: u64,
    pub errors: u64,
    pub sent_per_s: f64,
    pub confirmed_per_s: f64,
    /// Distinct messages per second (duplicates, foreign and phantom deliveries have their own).
    pub received_per_s: f64,
    pub duplicates_per_s: f64,
    pub publish_p50_ms: Option<f64>,
    pub publish_p99_ms: Option<f64>,
    pub publish_max_ms: Option<f64>,
    /// Failed and indeterminate publishes: intended send time -> the failure.
    pub publish_failed_p99_ms: Option<f64>,
    pub publish_failed_max_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub e2e_max_ms: Option<f64>,
    pub send_delay_p99_ms: Option<f64>,
    pub send_delay_max_ms: Option<f64>,
    /// Error counts by kind, "kind=n;kind=n".
    pub error_kinds: String,
}

/// A quantile in milliseconds, or None for an empty histogram.
pub fn quantile_ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

pub fn max_ms(h: &hdrhistogram::Histogram<u64>) -> Option<f64> {
    (!h.is_empty()).then(|| h.max() as f64 / 1000.0)
}

pub struct Aggregator {
    backend: String,
    recorders: Vec<Recorder>,
    spare: Stats,
    interval: Stats,
    /// Latencies of the measure and drain phases; counters of the measure phase only.
    measured: Stats,
    measured_s: f64,
    /// Counters over every phase.
    all: Stats,
    origin_ns: u64,
    last_ns: u64,
    rows: Vec<IntervalRow>,
}

impl Aggregator {
    /// `origin_ns`: the backend's load start on the harness clock.
    pub fn new(backend: &str, origin_ns: u64, recorders: Vec<Recorder>) -> Self {
        Aggregator {
            backend: backend.to_string(),
            recorders,
            spare: Stats::default(),
            interval: Stats::default(),
            measured: Stats::default(),
            measured_s: 0.0,
            all: Stats::default(),
            origin_ns,
            last_ns: origin_ns,
            rows: Vec::new(),
        }
    }

    /// Close the interval that ends at `now_ns`, which belonged to `phase`.
    /// Returns the row and the interval's merged stats (for histogram logs).
    pub fn tick(&mut self, now_ns: u64, phase: Phase) -> (&IntervalRow, &Stats) {
        self.interval.reset();
        for r in &self.recorders {
            r.take_into(&mut self.spare);
            self.interval.merge(&self.spare);
            self.spare.reset();
        }
        let secs = now_ns.saturating_sub(self.last_ns) as f64 / 1e9;
        self.all.merge(&self.interval);
        match phase {
            // A replay's two phases are both measured (their own rates are the run's).
            Phase::Measure | Phase::Fill | Phase::Replay => {
                self.measured.merge(&self.interval);
                self.measured_s += secs;
            }
            Phase::Drain => {
                // Latencies of messages still arriving after the load stopped belong to the run;
                // its throughput does not.
                // Unsent messages are counted when the run stops the producers, in the drain.
                self.measured.merge_latencies(&self.interval);
                self.measured.unsent += self.interval.unsent;
            }
            Phase::Warmup => {}
        }
        let i = &self.interval;
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let row = IntervalRow {
            backend: self.backend.clone(),
            t_start_s: self.last_ns.saturating_sub(self.origin_ns) as f64 / 1e9,
            t_end_s: now_ns.saturating_sub(self.origin_ns) as f64 / 1e9,
            phase,
            sent: i.sent,
            unsent: i.unsent,
            confirmed: i.confirmed,
            failed: i.failed,
            received: i.received,
            duplicates: i.duplicates,
            foreign: i.foreign,
            phantom: i.phantom,
            trimmed: i.trimmed,
            errors: i.error_count(),
            sent_per_s: rate(i.sent),
            confirmed_per_s: rate(i.confirmed),
            received_per_s: rate(i.received),
            duplicates_per_s: rate(i.duplicates),
            publish_p50_ms: quantile_ms(&i.publish, 0.5),
            publish_p99_ms: quantile_ms(&i.publish, 0.99),
            publish_max_ms: max_ms(&i.publish),
            publish_failed_p99_ms: quantile_ms(&i.publish_failed, 0.99),
            publish_failed_max_ms: max_ms(&i.publish_failed),
            e2e_p50_ms: quantile_ms(&i.e2e, 0.5),
            e2e_p99_ms: quantile_ms(&i.e2e, 0.99),
            e2e_max_ms: max_ms(&i.e2e),
            send_delay_p99_ms: quantile_ms(&i.send_delay, 0.99),
            send_delay_max_ms: max_ms(&i.send_delay),
            error_kinds: i
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";"),
        };
        self.last_ns = now_ns;
        self.rows.push(row);
        let row = self.rows.last().unwrap_or_else(|| unreachable!());
        (row, &self.interval)
    }

    pub fn rows(&self) -> &[IntervalRow] {
        &self.rows
    }

    /// Measure-phase counters, measure+drain latencies.
    pub fn measured(&self) -> &Stats {
        &self.measured
    }

    pub fn measured_secs(&self) -> f64 {
        self.measured_s
    }

    /// Counters over all phases.
    pub fn all(&self) -> &Stats {
        &self.all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::stats::record_ns;

    #[test]
    fn ticks_merge_every_task_and_split_phases() {
        let a = Recorder::new();
        let b = Recorder::new();
        let mut agg = Aggregator::new("x", 1_000_000_000, vec![a.clone(), b.clone()]);
        a.with(|s| s.sent += 10);
        b.with(|s| s.sent += 5);
        let (row, _) = agg.tick(2_000_000_000, Phase::Warmup);
        assert_eq!(
            (row.sent, row.sent_per_s, row.t_start_s, row.t_end_s),
            (15, 15.0, 0.0, 1.0)
        );
        a.with(|s| {
            s.received += 20;
            record_ns(&mut s.e2e, 3_000_000);
        });
        b.with(|s| record_ns(&mut s.e2e, 5_000_000));
        let (row, interval) = agg.tick(2_500_000_000, Phase::Measure);
        assert_eq!(row.received_per_s, 40.0);
        assert_eq!(interval.e2e.len(), 2);
        assert_eq!(row.e2e_max_ms.map(|v| v.round()), Some(5.0));
        b.with(|s| record_ns(&mut s.e2e, 9_000_000));
        b.with(|s| s.received += 1);
        agg.tick(3_500_000_000, Phase::Drain);
        assert_eq!(agg.measured().sent, 0);
        assert_eq!(agg.measured().received, 20);
        assert_eq!(agg.measured().e2e.len(), 3);
        assert!((agg.measured_secs() - 0.5).abs() < 1e-9);
        assert_eq!(agg.all().sent, 15);
        assert_eq!(agg.all().received, 21);
        assert_eq!(agg.rows().len(), 3);
    }
}
