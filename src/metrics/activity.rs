//! Per-destination activity in 10 ms slots: confirms, failed publishes, receipts and consumer
//! errors, counted where they happen (one relaxed atomic add each). The fault analysis reads
//! it to find when a destination stopped and came back, and `destinations.csv` sums it per
//! second, so the other shards' throughput during a fault can be told from the hit one's.

use std::sync::atomic::{AtomicU32, Ordering};

/// Width of one slot.
pub const SLOT_NS: u64 = 10_000_000;
/// At most this many slots per destination (about 2.9 hours); later events land in the last.
const MAX_SLOTS: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Confirmed = 0,
    /// A publish that failed (nack, error or timeout).
    PublishFailed = 1,
    Received = 2,
    /// A consumer's poll or ack that failed, or a consumer that could not be opened.
    ConsumeFailed = 3,
}

const KINDS: usize = 4;

#[derive(Debug)]
pub struct Activity {
    origin_ns: u64,
    slots: usize,
    /// `dests × KINDS × slots` counters.
    counts: Vec<AtomicU32>,
    dests: usize,
}

impl Activity {
    /// Room for `span_ns` after `origin_ns` for `dests` destinations.
    pub fn new(origin_ns: u64, span_ns: u64, dests: usize) -> Self {
        let slots = ((span_ns / SLOT_NS) as usize + 1).clamp(1, MAX_SLOTS);
        Activity {
            origin_ns,
            slots,
            counts: (0..dests * KINDS * slots)
                .map(|_| AtomicU32::new(0))
                .collect(),
            dests,
        }
    }

    pub fn origin_ns(&self) -> u64 {
        self.origin_ns
    }

    pub fn destinations(&self) -> usize {
        self.dests
    }

    /// The slot holding time `at_ns` (clamped to the first and last).
    pub fn slot_of(&self, at_ns: u64) -> usize {
        ((at_ns.saturating_sub(self.origin_ns) / SLOT_NS) as usize).min(self.slots - 1)
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    fn base(&self, dest: usize, act: Act) -> usize {
        (dest * KINDS + act as usize) * self.slots
    }

    /// Count `n` events of `act` on destination `dest` at `at_ns`.
    pub fn add(&self, dest: usize, act: Act, at_ns: u64, n: u32) {
        if dest < self.dests && n > 0 {
            self.counts[self.base(dest, act) + self.slot_of(at_ns)].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A copy of one destination's counts of `act`, slot by slot.
    pub fn series(&self, dest: usize, act: Act) -> Vec<u32> {
        if dest >= self.dests {
            return vec![0; self.slots];
        }
        let b = self.base(dest, act);
        self.counts[b..b + self.slots]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Activity {
    /// One destination's counts per whole second up to `until_ns`, in the order confirmed,
    /// publish failed, received, consume failed.
    pub fn per_second(&self, dest: usize, until_ns: u64) -> Vec<[u64; KINDS]> {
        let per_second = (1_000_000_000 / SLOT_NS) as usize;
        let last = self.slot_of(until_ns) + 1;
        let series = [
            Act::Confirmed,
            Act::PublishFailed,
            Act::Received,
            Act::ConsumeFailed,
        ]
        .map(|act| self.series(dest, act));
        (0..last)
            .step_by(per_second)
            .map(|start| {
                let end = (start + per_second).min(last);
                series
                    .each_ref()
                    .map(|s| s[start..end].iter().map(|&c| c as u64).sum())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_land_in_their_slot_and_destination() {
        let a = Activity::new(1_000, 100 * SLOT_NS, 2);
        a.add(0, Act::Confirmed, 1_000, 1);
        a.add(0, Act::Confirmed, 1_000 + SLOT_NS - 1, 2);
        a.add(0, Act::Confirmed, 1_000 + SLOT_NS, 4);
        a.add(1, Act::Received, 1_000 + 5 * SLOT_NS, 7);
        // Before the origin: first slot; far after the end: last slot; unknown destination: ignored.
        a.add(1, Act::Received, 0, 1);
        a.add(1, Act::Received, u64::MAX, 1);
        a.add(9, Act::Received, 1_000, 1);
        let c = a.series(0, Act::Confirmed);
        assert_eq!((c[0], c[1], c[2]), (3, 4, 0));
        let r = a.series(1, Act::Received);
        assert_eq!((r[0], r[5], r[a.slots() - 1]), (1, 7, 1));
        assert_eq!(a.series(0, Act::Received).iter().sum::<u32>(), 0);
        let seconds = a.per_second(0, 1_000 + 2 * SLOT_NS);
        assert_eq!(seconds, vec![[7, 0, 0, 0]]);
    }
}
