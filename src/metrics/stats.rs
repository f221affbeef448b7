//! Per-task figures for one interval: latency histograms (microseconds) and counters.
//!
//! Each load task records into its own `Recorder` (an uncontended lock per operation); once
//! per interval the aggregator swaps the task's stats for an empty set and merges them.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Highest latency tracked: one hour, in microseconds. Larger values are clamped.
pub const MAX_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits over 1 us .. 1 h. The bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, MAX_US, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// The latencies a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Intended send time -> broker confirm.
    Publish,
    /// Intended send time -> nack, refusal, confirm timeout or lost connection: a publish that
    /// failed or whose outcome is unknown, at the time the producer learnt it.
    PublishFailed,
    /// Intended send time -> consumer receipt.
    EndToEnd,
    /// Intended send time -> actual hand-off to the client.
    SendDelay,
}

impl Latency {
    pub const ALL: [Latency; 4] = [
        Latency::Publish,
        Latency::PublishFailed,
        Latency::EndToEnd,
        Latency::SendDelay,
    ];
    pub fn name(&self) -> &'static str {
        match self {
            Latency::Publish => "publish",
            Latency::PublishFailed => "publish_failed",
            Latency::EndToEnd => "e2e",
            Latency::SendDelay => "send_delay",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub publish: Histogram<u64>,
    pub publish_failed: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub send_delay: Histogram<u64>,
    pub sent: u64,
    /// Due before the end of the load but never handed to the client (the producer was behind
    /// its schedule when the run stopped). Their send delay is recorded up to that moment.
    pub unsent: u64,
    pub confirmed: u64,
    /// Failed or indeterminate publishes.
    pub failed: u64,
    /// Distinct messages of this run received for the first time.
    pub received: u64,
    /// Deliveries of a message of this run already received.
    pub duplicates: u64,
    /// Deliveries of this run's producers naming a sequence number that was never sent.
    pub phantom: u64,
    /// First receipts of a message older than one this consumer already had from the same
    /// producer (counted per consumer: competing consumers reorder by nature).
    pub out_of_order: u64,
    /// Deliveries that are not this run's messages (undecodable or another run id).
    pub foreign: u64,
    /// Entries the broker had removed (a stream trimmed by MAXLEN) when a consumer claimed or
    /// read them.
    pub trimmed: u64,
    pub errors: BTreeMap<&'static str, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            publish: new_histogram(),
            publish_failed: new_histogram(),
            e2e: new_histogram(),
            send_delay: new_histogram(),
            sent: 0,
            unsent: 0,
            confirmed: 0,
            failed: 0,
            received: 0,
            duplicates: 0,
            phantom: 0,
            out_of_order: 0,
            foreign: 0,
            trimmed: 0,
            errors: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub fn histogram(&self, l: Latency) -> &Histogram<u64> {
        match l {
            Latency::Publish => &self.publish,
            Latency::PublishFailed => &self.publish_failed,
            Latency::EndToEnd => &self.e2e,
            Latency::SendDelay => &self.send_delay,
        }
    }

    /// Add `other` into `self` (HdrHistogram's `add`, counters summed).
    pub fn merge(&mut self, other: &Stats) {
        // Both histograms share the same bounds, so `add` cannot fail; clamp defensively anyway.
        self.merge_latencies(other);
        self.sent += other.sent;
        self.unsent += other.unsent;
        self.confirmed += other.confirmed;
        self.failed += other.failed;
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.phantom += other.phantom;
        self.out_of_order += other.out_of_order;
        self.foreign += other.foreign;
        self.trimmed += other.trimmed;
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
    }

    /// Add only `other`'s histograms (the drain's latencies belong to the run, its counters do
    /// not).
    pub fn merge_latencies(&mut self, other: &Stats) {
        // Every histogram shares the same bounds, so `add` cannot fail.
        let _ = self.publish.add(&other.publish);
        let _ = self.publish_failed.add(&other.publish_failed);
        let _ = self.e2e.add(&other.e2e);
        let _ = self.send_delay.add(&other.send_delay);
    }

    /// Every delivery a consumer counted: first receipts, duplicates and phantoms (foreign
    /// entries and trimmed ones excluded).
    pub fn deliveries(&self) -> u64 {
        self.received + self.duplicates + self.phantom
    }

    pub fn reset(&mut self) {
        // Clearing a histogram writes its whole counts array (188 KiB): skip the empty ones (a
        // producer has no e2e, a consumer no publish), which also leaves their pages untouched.
        for h in [
            &mut self.publish,
            &mut self.publish_failed,
            &mut self.e2e,
            &mut self.send_delay,
        ] {
            if !h.is_empty() {
                h.reset();
            }
        }
        self.sent = 0;
        self.unsent = 0;
        self.confirmed = 0;
        self.failed = 0;
        self.received = 0;
        self.duplicates = 0;
        self.phantom = 0;
        self.out_of_order = 0;
        self.foreign = 0;
        self.trimmed = 0;
        self.errors.clear();
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Record a latency given in nanoseconds (negative clock differences clamp to 0 -> 1 us bucket).
#[inline]
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1_000).clamp(1, MAX_US));
}

/// Record `n` messages of the same latency at once.
#[inline]
pub fn record_ns_n(h: &mut Histogram<u64>, ns: u64, n: u64) {
    h.saturating_record_n((ns / 1_000).clamp(1, MAX_US), n);
}

/// A load task's handle on its own stats.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Stats>>);

impl Recorder {
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Run `f` on the task's stats (the lock is uncontended except once per interval).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&mut Stats) -> R) -> R {
        f(&mut self.0.lock())
    }

    pub fn error(&self, kind: &'static str) {
        self.with(|s| *s.errors.entry(kind).or_insert(0) += 1);
    }

    /// Swap the task's stats with `spare` (which must be empty): O(1) under the lock.
    pub fn take_into(&self, spare: &mut Stats) {
        std::mem::swap(&mut *self.0.lock(), spare);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_interval_histograms_keeps_every_count() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for v in 1..=1000u64 {
            record_ns(&mut a.e2e, v * 1_000);
        }
        for v in 1001..=2000u64 {
            record_ns(&mut b.e2e, v * 1_000);
        }
        a.sent = 3;
        b.sent = 4;
        b.errors.insert("timeout", 2);
        let mut total = Stats::default();
        total.merge(&a);
        total.merge(&b);
        assert_eq!(total.e2e.len(), 2000);
        assert_eq!(total.sent, 7);
        assert_eq!(total.errors.get("timeout"), Some(&2));
        let p50 = total.e2e.value_at_quantile(0.5);
        assert!((995..=1005).contains(&p50), "p50 {p50}");
        assert!(total.e2e.max() >= 1999 && total.e2e.max() <= 2001);
        assert!(total.e2e.value_at_quantile(0.5) <= total.e2e.value_at_quantile(0.99));
    }

    #[test]
    fn take_into_swaps_out_the_interval() {
        let r = Recorder::new();
        r.with(|s| {
            s.sent += 5;
            record_ns(&mut s.publish, 2_000_000);
        });
        r.error("nack");
        let mut spare = Stats::default();
        r.take_into(&mut spare);
        assert_eq!(spare.sent, 5);
        assert_eq!(spare.publish.len(), 1);
        assert_eq!(spare.error_count(), 1);
        r.with(|s| assert_eq!((s.sent, s.publish.len()), (0, 0)));
    }

    #[test]
    fn latencies_are_clamped_not_dropped() {
        let mut s = Stats::default();
        record_ns(&mut s.e2e, 0);
        record_ns(&mut s.e2e, u64::MAX);
        assert_eq!(s.e2e.len(), 2);
    }
}
