//! The batches a producer has handed over and still awaits confirms for: one confirm stream and
//! one deadline per batch, not a future and a timer per message.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use futures::StreamExt;

use crate::backend::{BatchConfirms, OpError};

/// One message's outcome: its sequence number, when its batch was handed over, and the result.
pub type Outcome = (u64, u64, Result<(), OpError>);

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
                    Poll::Ready(Some((pos, result))) => {
                        if b.settle(pos) {
                            self.messages -= 1;
                            out.push((b.first_seq + pos as u64, b.sent_ns, result));
                        }
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
            for pos in 0..b.len {
                if b.settle(pos) {
                    self.messages -= 1;
                    out.push((
                        b.first_seq + pos as u64,
                        b.sent_ns,
                        Err(OpError::Timeout(format!("no confirm within {timeout:?}"))),
                    ));
                }
            }
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

    fn confirms(items: Vec<(usize, bool)>) -> BatchConfirms {
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

    #[test]
    fn outcomes_come_once_each_and_the_rest_time_out() {
        let mut f = InFlight::default();
        let mut cx = Context::from_waker(noop_waker_ref());
        // Batch of 5 from seq 10: position 1 was refused at once; 0 and 3 are confirmed, 2 is
        // nacked (and confirmed again, ignored), 4 never comes.
        f.push(
            10,
            5,
            [1].into_iter(),
            100,
            1_100,
            confirms(vec![(0, true), (2, false), (3, true), (2, true), (9, true)]),
        );
        f.push(
            20,
            2,
            std::iter::empty(),
            200,
            1_200,
            confirms(vec![(1, true)]),
        );
        assert_eq!(f.messages(), 6);
        let mut out = Vec::new();
        assert!(f.poll_outcomes(&mut cx, &mut out).is_ready());
        let got: Vec<(u64, u64, bool)> = out.iter().map(|(s, t, r)| (*s, *t, r.is_ok())).collect();
        assert_eq!(
            got,
            [
                (10, 100, true),
                (12, 100, false),
                (13, 100, true),
                (21, 200, true)
            ]
        );
        assert_eq!(f.messages(), 2);
        assert!(f.poll_outcomes(&mut cx, &mut out).is_pending());
        assert_eq!(f.next_deadline_ns(), Some(1_100));
        out.clear();
        f.expire(1_100, std::time::Duration::from_secs(1), &mut out);
        let timed_out: Vec<u64> = out.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(timed_out, [14]);
        assert!(matches!(out[0].2, Err(OpError::Timeout(_))));
        assert_eq!(f.next_deadline_ns(), Some(1_200));
        out.clear();
        f.expire(5_000, std::time::Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 1);
        assert!(f.is_empty() && f.next_deadline_ns().is_none());
    }
}
