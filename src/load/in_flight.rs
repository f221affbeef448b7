//! The batches a producer has handed over and still awaits confirms for: one confirm stream and
//! one deadline per batch, not a future and a timer per message.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use futures::StreamExt;

use crate::backend::{BatchConfirms, OpError};

/// The outcome of consecutive messages: the first's sequence number, how many, when their batch
/// was handed over, and the result.
pub type Outcome = (u64, u64, u64, Result<(), OpError>);

struct Batch {
    first_seq: u64,
    /// When it was handed over (harness clock).
    sent_ns: u64,
    /// Past this, every message of it still without an outcome has timed out.
    deadline_ns: u64,
    /// None once the stream has ended.
    confirms: Option<BatchConfirms>,
    /// One bit per position: the outcome is in.
    settled: Vec<u64>,
    len: usize,
    pending: usize,
}

impl Batch {
    /// Settle the positions of `range` not settled yet with `result`, pushing one outcome per
    /// run of consecutive ones; returns how many.
    fn settle_runs(
        &mut self,
        range: std::ops::Range<usize>,
        result: &Result<(), OpError>,
        out: &mut Vec<Outcome>,
    ) -> usize {
        let mut settled = 0;
        let mut run: Option<(usize, usize)> = None;
        for pos in range {
            if self.settle(pos) {
                settled += 1;
                match run.as_mut() {
                    Some((_, n)) => *n += 1,
                    None => run = Some((pos, 1)),
                }
            } else if let Some((at, n)) = run.take() {
                out.push(self.outcome(at, n, result));
            }
        }
        if let Some((at, n)) = run {
            out.push(self.outcome(at, n, result));
        }
        settled
    }

    fn outcome(&self, at: usize, n: usize, result: &Result<(), OpError>) -> Outcome {
        (
            self.first_seq + at as u64,
            n as u64,
            self.sent_ns,
            result.clone(),
        )
    }

    /// Mark `pos` settled; false if it already was (or is out of range).
    fn settle(&mut self, pos: usize) -> bool {
        if pos >= self.len {
            return false;
        }
        let (w, b) = (pos / 64, pos % 64);
        if self.settled[w] & (1 << b) != 0 {
            return false;
        }
        self.settled[w] |= 1 << b;
        self.pending -= 1;
        true
    }
}

#[derive(Default)]
pub struct InFlight {
    /// In the order they were handed over, so the first has the earliest deadline.
    batches: VecDeque<Batch>,
    /// Messages still awaiting an outcome, over every batch.
    messages: usize,
    /// Bitset buffers of finished batches, to reuse.
    spare: Vec<Vec<u64>>,
}

impl InFlight {
    /// Messages still awaiting an outcome.
    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Await the confirms of the `len` messages from `first_seq` handed over at `sent_ns`, but
    /// those at `settled` positions (their outcome is already known), until `deadline_ns`.
    pub fn push(
        &mut self,
        first_seq: u64,
        len: usize,
        settled: impl Iterator<Item = usize>,
        sent_ns: u64,
        deadline_ns: u64,
        confirms: BatchConfirms,
    ) {
        let mut bits = self.spare.pop().unwrap_or_default();
        bits.clear();
        bits.resize(len.div_ceil(64), 0);
        let mut b = Batch {
            first_seq,
            sent_ns,
            deadline_ns,
            confirms: Some(confirms),
            settled: bits,
            len,
            pending: len,
        };
        for pos in settled {
            b.settle(pos);
        }
        if b.pending == 0 {
            self.spare.push(b.settled);
            return;
        }
        self.messages += b.pending;
        self.batches.push_back(b);
    }

    /// The earliest deadline of a batch still awaited.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.batches.iter().map(|b| b.deadline_ns).min()
    }

    /// Move every outcome that is in to `out`. Ready when at least one was; otherwise the
    /// streams will wake the task.
    pub fn poll_outcomes(&mut self, cx: &mut Context<'_>, out: &mut Vec<Outcome>) -> Poll<()> {
        let before = out.len();
        for b in self.batches.iter_mut() {
            while let Some(confirms) = b.confirms.as_mut() {
                match confirms.poll_next_unpin(cx) {
                    Poll::Ready(Some((range, result))) => {
                        let end = range.end.min(b.len);
                        self.messages -= b.settle_runs(range.start..end, &result, out);
                    }
                    // A position never confirmed waits for the deadline.
                    Poll::Ready(None) => b.confirms = None,
                    Poll::Pending => break,
                }
                if b.pending == 0 {
                    break;
                }
            }
        }
        self.drop_finished();
        if out.len() > before {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Every message of a batch whose deadline is at or before `now_ns` and has no outcome
    /// times out.
    pub fn expire(&mut self, now_ns: u64, timeout: std::time::Duration, out: &mut Vec<Outcome>) {
        for b in self.batches.iter_mut().filter(|b| b.deadline_ns <= now_ns) {
            let e = Err(OpError::Timeout(format!("no confirm within {timeout:?}")));
            self.messages -= b.settle_runs(0..b.len, &e, out);
        }
        self.drop_finished();
    }

    fn drop_finished(&mut self) {
        let spare = &mut self.spare;
        self.batches.retain_mut(|b| {
            if b.pending > 0 {
                return true;
            }
            spare.push(std::mem::take(&mut b.settled));
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker_ref;

    fn confirms(items: Vec<(std::ops::Range<usize>, bool)>) -> BatchConfirms {
        futures::stream::iter(items.into_iter().map(|(i, ok)| {
            (
                i,
                if ok {
                    Ok(())
                } else {
                    Err(OpError::Nack("n".into()))
                },
            )
        }))
        .boxed()
    }

    fn flat(out: &[Outcome]) -> Vec<(u64, u64, u64, bool)> {
        out.iter()
            .map(|(s, n, t, r)| (*s, *n, *t, r.is_ok()))
            .collect()
    }

    #[test]
    fn outcomes_come_once_each_and_the_rest_time_out() {
        let mut f = InFlight::default();
        let mut cx = Context::from_waker(noop_waker_ref());
        // Batch of 8 from seq 10: position 1 was refused at once; 0..4 are confirmed at once
        // (1 is skipped), 4 is nacked, then confirmed again (ignored), 9 is out of range, 7
        // never comes.
        f.push(
            10,
            8,
            [1].into_iter(),
            100,
            1_100,
            confirms(vec![
                (0..4, true),
                (4..5, false),
                (4..7, true),
                (9..10, true),
            ]),
        );
        f.push(
            20,
            2,
            std::iter::empty(),
            200,
            1_200,
            confirms(vec![(1..2, true)]),
        );
        assert_eq!(f.messages(), 9);
        let mut out = Vec::new();
        assert!(f.poll_outcomes(&mut cx, &mut out).is_ready());
        assert_eq!(
            flat(&out),
            [
                (10, 1, 100, true),
                (12, 2, 100, true),
                (14, 1, 100, false),
                (15, 2, 100, true),
                (21, 1, 200, true)
            ]
        );
        assert_eq!(f.messages(), 2);
        assert!(f.poll_outcomes(&mut cx, &mut out).is_pending());
        assert_eq!(f.next_deadline_ns(), Some(1_100));
        out.clear();
        f.expire(1_100, std::time::Duration::from_secs(1), &mut out);
        assert_eq!(flat(&out), [(17, 1, 100, false)]);
        assert!(matches!(out[0].3, Err(OpError::Timeout(_))));
        assert_eq!(f.next_deadline_ns(), Some(1_200));
        out.clear();
        f.expire(5_000, std::time::Duration::from_secs(1), &mut out);
        assert_eq!(flat(&out), [(20, 1, 200, false)]);
        assert!(f.is_empty() && f.next_deadline_ns().is_none());
    }
}
