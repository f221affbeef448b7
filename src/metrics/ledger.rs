//! The ledger: every message of every producer, accounted from send to receipt.
//!
//! Per producer, sequence numbers are issued densely from 0, so "sent" is a count and the
//! outcomes are bitsets (1 bit per message): confirmed, failed, received. From them:
//! lost = confirmed but never received; duplicates and out-of-order receipts are counted as
//! they happen. `summary` checks that the numbers add up.

use parking_lot::Mutex;
use serde::Serialize;

use super::bitset::BitSet;

#[derive(Debug, Default)]
struct ProducerLedger {
    sent: u64,
    confirmed: BitSet,
    failed: BitSet,
    received: BitSet,
    duplicates: u64,
    out_of_order: u64,
    /// Receipts whose sequence number was never sent.
    unknown: u64,
    max_received: Option<u64>,
    /// Confirmed (or, without confirms, sent and not failed) but not yet received.
    awaiting: u64,
}

/// What one receipt was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    First,
    Duplicate,
    /// Sequence number or producer never sent in this run.
    Unknown,
}

#[derive(Debug)]
pub struct Ledger {
    producers: Vec<Mutex<ProducerLedger>>,
    /// Without confirms a message is expected at the consumer as soon as it is sent.
    confirms: bool,
    /// Receipts naming a producer that does not exist in this run.
    unknown_producer: std::sync::atomic::AtomicU64,
}

/// The ledger's totals over all producers, with the result of its consistency checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerSummary {
    pub sent: u64,
    pub confirmed: u64,
    /// The broker nacked it, or the confirm errored or timed out.
    pub failed: u64,
    /// Sent, with neither a confirm nor a failure by the end (includes all sends without confirms).
    pub unconfirmed: u64,
    /// Distinct messages received.
    pub received: u64,
    pub duplicates: u64,
    /// Confirmed but never received.
    pub lost: u64,
    /// Received although their publish failed.
    pub received_failed: u64,
    /// Unconfirmed and never received.
    pub unconfirmed_missing: u64,
    /// Failed and never received.
    pub failed_missing: u64,
    pub out_of_order: u64,
    /// Receipts of sequence numbers or producers that were never sent.
    pub unknown: u64,
    /// All the checks below passed.
    pub consistent: bool,
    /// Checks that failed, in words ("" when consistent).
    pub problems: String,
}

impl Ledger {
    pub fn new(producers: usize, confirms: bool) -> Self {
        Ledger {
            producers: (0..producers)
                .map(|_| Mutex::new(ProducerLedger::default()))
                .collect(),
            confirms,
            unknown_producer: Default::default(),
        }
    }

    /// Record that `producer` issued its next sequence number; returns it.
    pub fn next_seq(&self, producer: usize) -> u64 {
        let Some(p) = self.producers.get(producer) else {
            return u64::MAX;
        };
        let mut p = p.lock();
        let seq = p.sent;
        p.sent += 1;
        if !self.confirms {
            p.awaiting += 1;
        }
        seq
    }

    pub fn on_confirmed(&self, producer: usize, seq: u64) {
        let Some(p) = self.producers.get(producer) else {
            return;
        };
        let mut p = p.lock();
        if seq >= p.sent || p.confirmed.insert(seq) {
            return;
        }
        if !p.received.contains(seq) {
            p.awaiting += 1;
        }
    }

    pub fn on_failed(&self, producer: usize, seq: u64) {
        let Some(p) = self.producers.get(producer) else {
            return;
        };
        let mut p = p.lock();
        if seq >= p.sent || p.failed.insert(seq) {
            return;
        }
        if !self.confirms && !p.received.contains(seq) {
            p.awaiting = p.awaiting.saturating_sub(1);
        }
    }

    /// Record a receipt.
    pub fn on_received(&self, producer: u32, seq: u64) -> Receipt {
        let Some(p) = self.producers.get(producer as usize) else {
            self.unknown_producer
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Receipt::Unknown;
        };
        let mut p = p.lock();
        if seq >= p.sent {
            p.unknown += 1;
            return Receipt::Unknown;
        }
        if p.received.insert(seq) {
            p.duplicates += 1;
            return Receipt::Duplicate;
        }
        if p.max_received.is_some_and(|m| seq < m) {
            p.out_of_order += 1;
        }
        p.max_received = Some(p.max_received.map_or(seq, |m| m.max(seq)));
        let expected = if self.confirms {
            p.confirmed.contains(seq)
        } else {
            !p.failed.contains(seq)
        };
        if expected {
            p.awaiting = p.awaiting.saturating_sub(1);
        }
        Receipt::First
    }

    /// Messages the consumers should still receive: confirmed (without confirms: sent and not
    /// failed) and not received yet. The drain waits for this to reach 0.
    pub fn awaiting(&self) -> u64 {
        self.producers.iter().map(|p| p.lock().awaiting).sum()
    }

    /// Totals and consistency checks. `deliveries` is the number of deliveries the consumers
    /// counted on their own (every receipt, first or not, foreign excluded).
    pub fn summary(&self, deliveries: u64) -> LedgerSummary {
        let mut s = LedgerSummary::default();
        let mut problems = Vec::new();
        let mut first_receipts_expected = 0;
        for (i, p) in self.producers.iter().enumerate() {
            let p = p.lock();
            let confirmed = p.confirmed.count();
            let failed = p.failed.count();
            let both = p.confirmed.count_and(&p.failed);
            if both > 0 {
                problems.push(format!(
                    "producer {i}: {both} messages both confirmed and failed"
                ));
            }
            for (what, set) in [
                ("confirmed", &p.confirmed),
                ("failed", &p.failed),
                ("received", &p.received),
            ] {
                let beyond = set.count_from(p.sent);
                if beyond > 0 {
                    problems.push(format!(
                        "producer {i}: {beyond} {what} sequence numbers beyond the {} sent",
                        p.sent
                    ));
                }
            }
            let received = p.received.count();
            let confirmed_received = p.confirmed.count_and(&p.received);
            let failed_received = p.failed.count_and(&p.received);
            let unconfirmed = p.sent - confirmed - failed + both;
            s.sent += p.sent;
            s.confirmed += confirmed;
            s.failed += failed;
            s.unconfirmed += unconfirmed;
            s.received += received;
            s.duplicates += p.duplicates;
            s.out_of_order += p.out_of_order;
            s.unknown += p.unknown;
            s.lost += confirmed - confirmed_received;
            s.received_failed += failed_received;
            s.failed_missing += failed - failed_received;
            // Received messages that are neither confirmed nor failed (inclusion-exclusion; the
            // triple overlap is only non-zero in the inconsistent case reported above).
            let triple = if both > 0 {
                p.confirmed
                    .iter()
                    .filter(|q| p.failed.contains(*q) && p.received.contains(*q))
                    .count() as u64
            } else {
                0
            };
            let received_unconfirmed = received + triple - confirmed_received - failed_received;
            s.unconfirmed_missing += unconfirmed.saturating_sub(received_unconfirmed);
            first_receipts_expected += received;
        }
        s.unknown += self
            .unknown_producer
            .load(std::sync::atomic::Ordering::Relaxed);
        // The counts must add up.
        if s.confirmed + s.failed + s.unconfirmed != s.sent {
            problems.push(format!(
                "confirmed {} + failed {} + unconfirmed {} != sent {}",
                s.confirmed, s.failed, s.unconfirmed, s.sent
            ));
        }
        let received_unconfirmed = s.unconfirmed - s.unconfirmed_missing;
        if (s.confirmed - s.lost) + s.received_failed + received_unconfirmed != s.received {
            problems.push(format!(
                "received {} != confirmed-and-received {} + failed-and-received {} + unconfirmed-and-received {}",
                s.received,
                s.confirmed - s.lost,
                s.received_failed,
                received_unconfirmed
            ));
        }
        if first_receipts_expected + s.duplicates + s.unknown != deliveries {
            problems.push(format!(
                "consumers counted {deliveries} deliveries but the ledger holds {} distinct + {} duplicates + {} unknown",
                first_receipts_expected, s.duplicates, s.unknown
            ));
        }
        if s.unknown > 0 {
            problems.push(format!(
                "{} receipts of messages that were never sent",
                s.unknown
            ));
        }
        s.consistent = problems.is_empty();
        s.problems = problems.join("; ");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(l: &Ledger, p: usize, n: u64) {
        for _ in 0..n {
            l.next_seq(p);
        }
    }

    #[test]
    fn fault_free_run_adds_up() {
        let l = Ledger::new(2, true);
        send(&l, 0, 100);
        send(&l, 1, 50);
        for s in 0..100 {
            l.on_confirmed(0, s);
        }
        for s in 0..50 {
            l.on_confirmed(1, s);
        }
        assert_eq!(l.awaiting(), 150);
        for s in 0..100 {
            assert_eq!(l.on_received(0, s), Receipt::First);
        }
        for s in 0..50 {
            l.on_received(1, s);
        }
        assert_eq!(l.awaiting(), 0);
        let s = l.summary(150);
        assert!(s.consistent, "{}", s.problems);
        assert_eq!(
            (
                s.sent,
                s.confirmed,
                s.received,
                s.lost,
                s.duplicates,
                s.out_of_order
            ),
            (150, 150, 150, 0, 0, 0)
        );
    }

    #[test]
    fn lost_duplicated_and_out_of_order() {
        let l = Ledger::new(1, true);
        send(&l, 0, 10);
        for s in 0..10 {
            l.on_confirmed(0, s);
        }
        // 3 and 7 never arrive; 5 arrives twice; 2 arrives after 4.
        for s in [0, 1, 4, 2, 5, 5, 6, 8, 9] {
            l.on_received(0, s);
        }
        let s = l.summary(9);
        assert!(s.consistent, "{}", s.problems);
        assert_eq!(s.lost, 2);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.out_of_order, 1);
        assert_eq!(s.received, 8);
        assert_eq!(l.awaiting(), 2);
    }

    #[test]
    fn failed_and_unconfirmed_are_told_apart() {
        let l = Ledger::new(1, true);
        send(&l, 0, 6);
        l.on_confirmed(0, 0);
        l.on_confirmed(0, 1);
        l.on_failed(0, 2);
        l.on_failed(0, 3);
        // 4 and 5: no outcome. 3 (failed) and 4 (unconfirmed) arrive anyway.
        for s in [0, 1, 3, 4] {
            l.on_received(0, s);
        }
        let s = l.summary(4);
        assert!(s.consistent, "{}", s.problems);
        assert_eq!((s.confirmed, s.failed, s.unconfirmed), (2, 2, 2));
        assert_eq!(
            (
                s.lost,
                s.received_failed,
                s.failed_missing,
                s.unconfirmed_missing
            ),
            (0, 1, 1, 1)
        );
    }

    #[test]
    fn without_confirms_sent_messages_are_awaited() {
        let l = Ledger::new(1, false);
        send(&l, 0, 3);
        assert_eq!(l.awaiting(), 3);
        l.on_received(0, 0);
        l.on_failed(0, 2);
        assert_eq!(l.awaiting(), 1);
        let s = l.summary(1);
        assert_eq!((s.unconfirmed, s.unconfirmed_missing, s.lost), (2, 1, 0));
        assert!(s.consistent, "{}", s.problems);
    }

    #[test]
    fn inconsistencies_are_reported() {
        let l = Ledger::new(1, true);
        send(&l, 0, 2);
        l.on_confirmed(0, 0);
        l.on_received(0, 0);
        assert_eq!(l.on_received(0, 9), Receipt::Unknown);
        assert_eq!(l.on_received(5, 0), Receipt::Unknown);
        // The consumers claim one more delivery than the ledger saw.
        let s = l.summary(4);
        assert!(!s.consistent);
        assert!(s.problems.contains("never sent"), "{}", s.problems);
        assert!(s.problems.contains("deliveries"), "{}", s.problems);
    }
}
