//! A producer of sub-entries (`sub_entry_size`), on the backend's own stream protocol client
//! (`wire/`): one publisher per partition stream (one for a plain stream), each on a connection
//! to its stream's leader. A batch goes to one partition (the next in turn for a super stream)
//! cut into sub-entries of at most `sub_entry_size` messages, optionally gzip-compressed; the
//! broker confirms each sub-entry, and every message of it gets that outcome. A closed
//! connection ends the confirms still awaited as `OpError::Connection` at once (indeterminate),
//! and the next batch asks the harness to reopen, as for the crate's producer (`producer.rs`).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::nodes::CONNECT_TIMEOUT;
use super::producer::{lost, refuse_all, ConfirmStall, CLOSE_TIMEOUT};
use super::wire::frame::code_name;
use super::wire::publisher::{Counters, Outcome, Outcomes, Publisher};
use super::NativeStreamBackend;
use crate::backend::{OpError, Producer, SentBatch};

/// One partition stream's publisher.
pub(super) struct Partition {
    pub stream: String,
    pub publisher: Publisher,
}

pub(super) struct SubEntryProducer {
    parts: Vec<Partition>,
    /// The partition the next batch goes to.
    next_part: usize,
    confirms: bool,
    /// A batch could not be encoded: the producer is reopened.
    failed: bool,
    /// The broker no longer knows a publisher (publish error or metadata update).
    cancelled: Arc<AtomicBool>,
    stall: ConfirmStall,
}

/// Open a publisher on each of `streams` (on its leader) for producer `index`.
pub(super) async fn open(
    b: &NativeStreamBackend,
    streams: Vec<String>,
    index: usize,
) -> Result<SubEntryProducer, OpError> {
    let cancelled = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let size = b.settings.sub_entry_size.unwrap_or(1);
    let mut parts = Vec::with_capacity(streams.len());
    for stream in streams {
        let fail =
            |m: String| OpError::Connection(format!("open a producer on stream {stream}: {m}"));
        let leader = match b.leaders.members(&stream).await {
            Ok(Some(m)) => m.leader,
            Ok(None) => {
                return Err(OpError::Unavailable(format!(
                    "stream {stream} has no leader right now"
                )))
            }
            Err(e) => return Err(fail(e)),
        };
        let target = b
            .nodes
            .wire_target(&leader, &format!("brokerbench-producer-{index}"))
            .map_err(&fail)?;
        let counters = Counters {
            confirmed: b.confirmed.counter(&stream),
            answered: answered.clone(),
            cancelled: cancelled.clone(),
        };
        let opened = Publisher::open(&target, &stream, b.settings.compression(), size, counters);
        let publisher = match tokio::time::timeout(CONNECT_TIMEOUT, opened).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        };
        parts.push(Partition { stream, publisher });
    }
    Ok(SubEntryProducer {
        next_part: index % parts.len().max(1),
        parts,
        confirms: b.settings.confirms,
        failed: false,
        cancelled,
        stall: ConfirmStall::new(answered),
    })
}

/// The outcomes of one batch's sub-entries as they come; once the connection is gone, every
/// sub-entry still open ends with `lost`, in runs of adjacent ones.
struct Pending {
    rx: Outcomes,
    /// Each sub-entry's positions (emptied once settled), in order.
    entries: Vec<Range<usize>>,
    left: usize,
    stream: String,
}

impl Pending {
    async fn next(&mut self) -> Option<(Range<usize>, Result<(), OpError>)> {
        if self.left == 0 {
            return None;
        }
        match self.rx.recv().await {
            Some((range, outcome)) => {
                let i = self.entries.partition_point(|r| r.end <= range.start);
                if let Some(e) = self.entries.get_mut(i).filter(|e| **e == range) {
                    *e = range.start..range.start;
                    self.left -= 1;
                }
                let result = match outcome {
                    Outcome::Confirmed => Ok(()),
                    Outcome::Refused(c) => Err(OpError::Nack(format!(
                        "publish error {} ({c:#04x}) for a sub-entry of {} messages",
                        code_name(c),
                        range.len()
                    ))),
                };
                Some((range, result))
            }
            None => {
                let first = self.entries.iter().position(|r| r.start < r.end)?;
                let start = self.entries[first].start;
                let mut end = start;
                for e in &mut self.entries[first..] {
                    if e.start == e.end || e.start != end {
                        break;
                    }
                    end = e.end;
                    *e = e.start..e.start;
                    self.left -= 1;
                }
                Some((start..end, Err(lost(&self.stream))))
            }
        }
    }
}

#[async_trait]
impl Producer for SubEntryProducer {
    async fn send(
        &mut self,
        payload: Bytes,
    ) -> Result<Option<crate::backend::ConfirmFuture>, OpError> {
        let mut one = vec![payload];
        self.send_batch(&mut one).await.into_one()
    }

    async fn send_batch(&mut self, payloads: &mut Vec<Bytes>) -> SentBatch {
        let k = self.next_part;
        let part = &self.parts[k];
        if self.failed
            || self.cancelled.load(Ordering::Relaxed)
            || part.publisher.closed().is_some()
        {
            return refuse_all(payloads, lost(&part.stream));
        }
        if self.stall.stalled(self.confirms) {
            self.failed = true;
            return refuse_all(payloads, self.stall.error());
        }
        self.next_part = (k + 1) % self.parts.len();
        let part = &mut self.parts[k];
        let n = payloads.len();
        let published = match part.publisher.publish(payloads.as_slice(), self.confirms) {
            Ok(p) => p,
            Err(e) => {
                self.failed = true;
                let why = OpError::Connection(format!("stream {}: {e}", part.stream));
                return refuse_all(payloads, why);
            }
        };
        let frame_max = part.publisher.frame_max();
        let refused: Vec<(usize, OpError)> = published
            .too_large
            .iter()
            .map(|&i| {
                (
                    i,
                    OpError::Broker(format!(
                        "not sent: a message of {} bytes does not fit in a publish frame of \
                         {frame_max} bytes (the broker's frame_max)",
                        payloads[i].len()
                    )),
                )
            })
            .collect();
        payloads.clear();
        self.stall.sent += (n - refused.len()) as u64;
        if !self.confirms {
            return SentBatch {
                taken: n,
                refused,
                confirms: None,
            };
        }
        let pending = Pending {
            rx: published.outcomes,
            left: published.entries.len(),
            entries: published.entries,
            stream: part.stream.clone(),
        };
        let confirms = futures::stream::unfold(pending, |mut p| async move {
            p.next().await.map(|item| (item, p))
        })
        .boxed();
        SentBatch {
            taken: n,
            refused,
            confirms: Some(confirms),
        }
    }

    async fn close(self: Box<Self>) {
        for part in self.parts {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, part.publisher.close()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    type Sender = mpsc::UnboundedSender<(Range<usize>, Outcome)>;

    fn pending(entries: Vec<Range<usize>>) -> (Sender, Pending) {
        let (tx, rx) = mpsc::unbounded_channel();
        let p = Pending {
            rx,
            left: entries.len(),
            entries,
            stream: "s".into(),
        };
        (tx, p)
    }

    #[tokio::test]
    async fn sub_entry_outcomes_cover_their_messages_and_a_lost_connection_the_rest() {
        let (tx, mut p) = pending(vec![0..100, 100..200, 200..256, 256..300]);
        tx.send((100..200, Outcome::Confirmed)).expect("send");
        tx.send((256..300, Outcome::Refused(0x06))).expect("send");
        let (r, o) = p.next().await.expect("confirm");
        assert_eq!((r, o.is_ok()), (100..200, true));
        let (r, o) = p.next().await.expect("refusal");
        let e = o.expect_err("a nack");
        assert_eq!((r, e.kind(), e.is_definite()), (256..300, "nack", true));
        assert!(e.to_string().contains("stream not available"), "{e}");
        drop(tx);
        let mut rest = Vec::new();
        while let Some((r, o)) = p.next().await {
            let e = o.expect_err("lost");
            assert!(e.needs_reconnect() && !e.is_definite(), "{e}");
            rest.push(r);
        }
        assert_eq!(rest, [0..100, 200..256]);
    }

    #[tokio::test]
    async fn a_batch_ends_when_every_sub_entry_is_settled() {
        let (tx, mut p) = pending(vec![0..2, 2..3]);
        tx.send((2..3, Outcome::Confirmed)).expect("send");
        tx.send((0..2, Outcome::Confirmed)).expect("send");
        assert_eq!(p.next().await.map(|(r, _)| r), Some(2..3));
        assert_eq!(p.next().await.map(|(r, _)| r), Some(0..2));
        assert!(
            p.next().await.is_none(),
            "ends without waiting for the channel"
        );
        // Lost sub-entries next to each other come as one run.
        let (tx, mut p) = pending(vec![0..2, 2..3, 3..7]);
        drop(tx);
        assert_eq!(p.next().await.map(|(r, _)| r), Some(0..7));
        assert!(p.next().await.is_none());
    }
}
