//! The ledger: every message of every producer, accounted from send to receipt.
//!
//! Per producer, sequence numbers are issued densely from 0, so "sent" is a count and the
//! outcomes are bitsets (1 bit per message): confirmed, failed (the broker certainly did not
//! take it: a nack or a refusal), indeterminate (its confirm was lost with the connection or
//! timed out: it may or may not have been written, Jepsen's `:info`), received. From them:
//! lost = confirmed but never received, less what the broker still held at the end
//! (`undelivered`); duplicates are counted as they happen (out-of-order receipts are counted by
//! each consumer, as competing consumers reorder by nature). Messages due but never sent are
//! counted as `unsent`. Only confirmed messages can be lost: an indeterminate one that never arrives
//! is not a loss, and one that arrives is counted as such. `summary` checks that the numbers
//! add up.

use std::ops::Range;

use parking_lot::Mutex;

use super::bitset::BitSet;

mod summary;
pub use summary::LedgerSummary;

#[derive(Debug, Default)]
struct ProducerLedger {
    sent: u64,
    /// Due before the end of the load, never handed to the client.
    unsent: u64,
    confirmed: BitSet,
    failed: BitSet,
    indeterminate: BitSet,
    received: BitSet,
    duplicates: u64,
    /// Receipts whose sequence number was never sent.
    phantom: u64,
    /// Confirmed (or, without confirms, sent with no failure) but not yet received.
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
    phantom_producer: std::sync::atomic::AtomicU64,
}

impl Ledger {
    pub fn new(producers: usize, confirms: bool) -> Self {
        Ledger {
            producers: (0..producers)
                .map(|_| Mutex::new(ProducerLedger::default()))
                .collect(),
            confirms,
            phantom_producer: Default::default(),
        }
    }

    /// Bytes the ledger holds on the heap (its bitsets, mostly).
    pub fn heap_bytes(&self) -> u64 {
        let per_producer: u64 = self
            .producers
            .iter()
            .map(|p| {
                let p = p.lock();
                [&p.confirmed, &p.failed, &p.indeterminate, &p.received]
                    .iter()
                    .map(|b| b.heap_bytes())
                    .sum::<u64>()
            })
            .sum();
        per_producer
            + (self.producers.capacity() * std::mem::size_of::<Mutex<ProducerLedger>>()) as u64
    }

    /// How many producers the run has.
    pub fn producers(&self) -> usize {
        self.producers.len()
    }

    /// Record that `producer` had `n` messages due that it never sent.
    pub fn on_unsent(&self, producer: usize, n: u64) {
        if let Some(p) = self.producers.get(producer) {
            p.lock().unsent += n;
        }
    }

    /// Record that `producer` issued its next sequence number; returns it.
    pub fn next_seq(&self, producer: usize) -> u64 {
        self.issue(producer, 1)
    }

    /// Record that `producer` issued its next `n` sequence numbers (one lock); returns the
    /// first. Issue before handing the messages over: a receipt of a number not yet issued is a
    /// phantom.
    pub fn issue(&self, producer: usize, n: u64) -> u64 {
        let Some(p) = self.producers.get(producer) else {
            return u64::MAX;
        };
        let mut p = p.lock();
        let first = p.sent;
        p.sent += n;
        if !self.confirms {
            p.awaiting += n;
        }
        first
    }

    /// Take back the last `n` sequence numbers `producer` issued: they were never handed to
    /// the client (it refused the batch they were in), so no one can have received them, and
    /// the producer will issue them again.
    pub fn retract(&self, producer: usize, n: u64) {
        let Some(p) = self.producers.get(producer) else {
            return;
        };
        let mut p = p.lock();
        let n = n.min(p.sent);
        p.sent -= n;
        if !self.confirms {
            p.awaiting = p.awaiting.saturating_sub(n);
        }
    }

    pub fn on_confirmed(&self, producer: usize, seq: u64) {
        let one = seq..seq + 1;
        self.on_confirmed_ranges(producer, std::slice::from_ref(&one));
    }

    /// Confirms of several runs of messages of one producer (one lock).
    pub fn on_confirmed_ranges(&self, producer: usize, ranges: &[Range<u64>]) {
        let Some(p) = self.producers.get(producer) else {
            return;
        };
        let mut p = p.lock();
        let p = &mut *p;
        for seq in ranges.iter().flat_map(|r| r.clone()) {
            if seq >= p.sent || p.confirmed.insert(seq) {
                continue;
            }
            if !p.received.contains(seq) {
                p.awaiting += 1;
            }
        }
    }

    /// A publish that failed: `definite` when the broker certainly did not take it (see
    /// `OpError::is_definite`), else its outcome is unknown.
    pub fn on_failed(&self, producer: usize, seq: u64, definite: bool) {
        let Some(p) = self.producers.get(producer) else {
            return;
        };
        let mut p = p.lock();
        if seq >= p.sent {
            return;
        }
        let repeated = if definite {
            p.failed.insert(seq)
        } else {
            p.indeterminate.insert(seq)
        };
        // Without confirms every sent message is awaited; a failed one no longer is.
        if !repeated && !self.confirms && !p.received.contains(seq) {
            p.awaiting = p.awaiting.saturating_sub(1);
        }
    }

    /// Up to `max` lost messages (confirmed, not received), as (producer, sequence).
    pub fn lost_list(&self, max: usize) -> Vec<(u32, u64)> {
        let mut out = Vec::new();
        for (i, p) in self.producers.iter().enumerate() {
            let p = p.lock();
            for seq in p.confirmed.iter().filter(|s| !p.received.contains(*s)) {
                if out.len() >= max {
                    return out;
                }
                out.push((i as u32, seq));
            }
        }
        out
    }

    /// Whether message `seq` of `producer` has been received.
    pub fn is_received(&self, producer: u32, seq: u64) -> bool {
        self.producers
            .get(producer as usize)
            .is_some_and(|p| p.lock().received.contains(seq))
    }

    /// Record a receipt.
    pub fn on_received(&self, producer: u32, seq: u64) -> Receipt {
        let Some(p) = self.producers.get(producer as usize) else {
            self.phantom_producer
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Receipt::Unknown;
        };
        self.receive(&mut p.lock(), seq)
    }

    /// Record receipts of (producer, sequence), appending one `Receipt` per receipt to `out`
    /// in order. One lock per run of receipts from the same producer.
    pub fn on_received_many(&self, ids: &[(u32, u64)], out: &mut Vec<Receipt>) {
        let mut i = 0;
        while i < ids.len() {
            let producer = ids[i].0;
            let run = ids[i..].iter().take_while(|(p, _)| *p == producer).count();
            let Some(p) = self.producers.get(producer as usize) else {
                self.phantom_producer
                    .fetch_add(run as u64, std::sync::atomic::Ordering::Relaxed);
                out.extend(std::iter::repeat_n(Receipt::Unknown, run));
                i += run;
                continue;
            };
            let mut p = p.lock();
            for &(_, seq) in &ids[i..i + run] {
                out.push(self.receive(&mut p, seq));
            }
            i += run;
        }
    }

    fn receive(&self, p: &mut ProducerLedger, seq: u64) -> Receipt {
        if seq >= p.sent {
            p.phantom += 1;
            return Receipt::Unknown;
        }
        if p.received.insert(seq) {
            p.duplicates += 1;
            return Receipt::Duplicate;
        }
        let expected = if self.confirms {
            p.confirmed.contains(seq)
        } else {
            !p.failed.contains(seq) && !p.indeterminate.contains(seq)
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
        let s = l.summary(150, None);
        assert!(s.consistent, "{}", s.problems);
        assert_eq!(
            (
                s.sent,
                s.confirmed,
                s.received,
                s.lost,
                s.duplicates,
                s.unsent
            ),
            (150, 150, 150, 0, 0, 0)
        );
    }

    #[test]
    fn lost_and_duplicated() {
        let l = Ledger::new(1, true);
        send(&l, 0, 10);
        for s in 0..10 {
            l.on_confirmed(0, s);
        }
        // 3 and 7 never arrive; 5 arrives twice; 2 arrives after 4.
        for s in [0, 1, 4, 2, 5, 5, 6, 8, 9] {
            l.on_received(0, s);
        }
        let s = l.summary(9, None);
        assert!(s.consistent, "{}", s.problems);
        assert_eq!(s.lost, 2);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.received, 8);
        assert_eq!(l.awaiting(), 2);
    }

    #[test]
    fn failed_and_unconfirmed_are_told_apart() {
        let l = Ledger::new(1, true);
        send(&l, 0, 6);
        l.on_confirmed(0, 0);
        l.on_confirmed(0, 1);
        l.on_failed(0, 2, true);
        l.on_failed(0, 3, true);
        // 4 and 5: no outcome. 3 (failed) and 4 (unconfirmed) arrive anyway.
        for s in [0, 1, 3, 4] {
            l.on_received(0, s);
        }
        let s = l.summary(4, None);
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
    fn indeterminate_outcomes_are_neither_failed_nor_lost() {
        let l = Ledger::new(1, true);
        send(&l, 0, 5);
        l.on_confirmed(0, 0);
        l.on_failed(0, 1, true);
        // 2 and 3: the connection dropped before their confirms; 3 had been written anyway.
        l.on_failed(0, 2, false);
        l.on_failed(0, 3, false);
        for s in [0, 3] {
            l.on_received(0, s);
        }
        assert_eq!(l.awaiting(), 0, "only confirmed messages are awaited");
        let s = l.summary(2, None);
        assert!(s.consistent, "{}", s.problems);
        assert_eq!(
            (s.confirmed, s.failed, s.indeterminate, s.unconfirmed),
            (1, 1, 2, 1)
        );
        assert_eq!(s.never_confirmed, 4);
        assert_eq!(s.lost, 0);
        assert_eq!((s.received_indeterminate, s.indeterminate_missing), (1, 1));
        assert_eq!((s.unconfirmed_received, s.unconfirmed_missing), (1, 1));
    }

    #[test]
    fn an_outcome_given_twice_is_reported() {
        let l = Ledger::new(1, true);
        send(&l, 0, 1);
        l.on_confirmed(0, 0);
        l.on_failed(0, 0, false);
        let s = l.summary(0, None);
        assert!(!s.consistent);
        assert!(
            s.problems.contains("both confirmed and indeterminate"),
            "{}",
            s.problems
        );
    }

    #[test]
    fn without_confirms_sent_messages_are_awaited() {
        let l = Ledger::new(1, false);
        send(&l, 0, 3);
        assert_eq!(l.awaiting(), 3);
        l.on_received(0, 0);
        l.on_failed(0, 2, true);
        assert_eq!(l.awaiting(), 1);
        let s = l.summary(1, None);
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
        let s = l.summary(4, None);
        assert!(!s.consistent);
        assert_eq!(s.phantom, 2);
        assert!(s.problems.contains("deliveries"), "{}", s.problems);
    }

    /// A phantom (a delivery naming a sequence number never sent) is something the broker or
    /// another writer did: an anomaly reported as such, while the harness's own books balance.
    #[test]
    fn phantoms_are_anomalies_not_inconsistencies() {
        let l = Ledger::new(1, true);
        send(&l, 0, 2);
        l.on_confirmed(0, 0);
        l.on_confirmed(0, 1);
        l.on_received(0, 0);
        l.on_received(0, 1);
        assert_eq!(l.on_received(0, 7), Receipt::Unknown);
        let s = l.summary(3, None);
        assert_eq!(s.phantom, 1);
        assert!(s.consistent, "{}", s.problems);
    }

    /// A consumer that is behind leaves messages in the broker: they are undelivered, not lost;
    /// only what the broker no longer holds is lost.
    #[test]
    fn messages_the_broker_still_holds_are_undelivered_not_lost() {
        let l = Ledger::new(1, true);
        send(&l, 0, 10);
        for s in 0..10 {
            l.on_confirmed(0, s);
        }
        for s in 0..4 {
            l.on_received(0, s);
        }
        let s = l.summary(4, Some(6));
        assert!(s.consistent, "{}", s.problems);
        assert_eq!((s.lost, s.undelivered, s.backlog_known), (0, 6, true));
        // The broker holds only 2 of the 6 missing: 4 are gone.
        let s = l.summary(4, Some(2));
        assert_eq!((s.lost, s.undelivered), (4, 2));
        // Not asked: every missing message counts as lost, and the row says it was not asked.
        let s = l.summary(4, None);
        assert_eq!((s.lost, s.undelivered, s.backlog_known), (6, 0, false));
    }

    /// The batch calls keep the same books as one call per message.
    #[test]
    fn batches_add_up_like_single_messages() {
        let l = Ledger::new(2, true);
        assert_eq!(l.issue(0, 10), 0);
        assert_eq!(l.issue(0, 5), 10);
        // The last 3 were never handed over: issued again later.
        l.retract(0, 3);
        assert_eq!(l.issue(0, 3), 12);
        assert_eq!(l.issue(1, 2), 0);
        l.on_confirmed_ranges(0, &[0..10, 10..15]);
        l.on_confirmed_ranges(1, &[0..2, 1..2]);
        assert_eq!(l.awaiting(), 17);
        let mut out = Vec::new();
        let ids: Vec<(u32, u64)> = (0..15)
            .map(|s| (0, s))
            .chain([(1, 0), (0, 3), (1, 9), (7, 0), (1, 1)])
            .collect();
        l.on_received_many(&ids, &mut out);
        assert_eq!(out.len(), ids.len());
        assert!(out[..15].iter().all(|r| *r == Receipt::First));
        assert_eq!(
            out[15..],
            [
                Receipt::First,
                Receipt::Duplicate,
                Receipt::Unknown,
                Receipt::Unknown,
                Receipt::First
            ]
        );
        assert_eq!(l.awaiting(), 0);
        let s = l.summary(ids.len() as u64, None);
        assert!(s.consistent, "{}", s.problems);
        assert_eq!(
            (s.sent, s.received, s.duplicates, s.phantom),
            (17, 17, 1, 2)
        );
    }

    #[test]
    fn without_confirms_a_retracted_message_is_not_awaited() {
        let l = Ledger::new(1, false);
        l.issue(0, 4);
        l.retract(0, 1);
        assert_eq!(l.awaiting(), 3);
        let s = l.summary(0, None);
        assert_eq!(s.sent, 3);
    }

    #[test]
    fn unsent_messages_are_counted_apart_from_sent() {
        let l = Ledger::new(2, true);
        send(&l, 0, 3);
        l.on_unsent(0, 5);
        l.on_unsent(1, 2);
        let s = l.summary(0, None);
        assert_eq!((s.sent, s.unsent), (3, 7));
        assert!(s.consistent, "{}", s.problems);
    }
}
