//! A producer over the stream protocol: one client producer per partition stream (one for a
//! plain stream), each connected to its stream's leader. A batch goes to one partition (the
//! next one in turn for a super stream, as a sticky partitioner does), with publishing ids
//! this producer assigns, so each confirm finds its place in the batch. If the connection
//! closes, the confirms still awaited end as `OpError::Connection` at once (indeterminate: the
//! broker may have written them), and the next batch asks the harness to reopen.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rabbitmq_stream_client::error::ProducerPublishError;
use rabbitmq_stream_client::types::{Message, ResponseCode};
use rabbitmq_stream_client::{ConfirmationStatus, NoDedup, OnClosed, Producer as ClientProducer};
use tokio::sync::{mpsc, watch};

use crate::backend::{OpError, Producer, SentBatch};

/// How long closing a producer (delete publisher, close the connection) may take.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a producer with messages awaiting confirms may go without any confirm (or publish
/// error) before it counts its connection as dead although the client has not noticed.
const CONFIRM_STALL: Duration = Duration::from_secs(5);

/// One partition's client producer and the next publishing id it gives.
pub(super) struct Partition {
    pub stream: String,
    pub producer: ClientProducer<NoDedup>,
    pub next_id: u64,
    /// Messages of this stream confirmed, shared by its producers and consumers.
    pub confirmed: Arc<AtomicU64>,
}

/// The crate's producer closes itself when its last handle is dropped, with a blocking
/// `block_on(close())` on whatever thread drops it: dropped on a runtime worker while its node
/// was frozen (a `pause`), that close never returned, and two such drops stopped both of the
/// runtime's threads and the whole run. So a partition hands its producer to a task that closes
/// it within `CLOSE_TIMEOUT`: `close` marks the producer closed at its first step, and the
/// blocking close of the last handle then returns at once.
impl Drop for Partition {
    fn drop(&mut self) {
        let producer = self.producer.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, producer.close()).await;
            });
        }
    }
}

pub(super) struct NativeProducer {
    pub parts: Vec<Partition>,
    /// The partition the next batch goes to.
    pub next_part: usize,
    pub confirms: bool,
    /// True once a partition's connection has closed.
    pub dead: watch::Receiver<bool>,
    /// A batch the client could not take.
    pub failed: bool,
    /// The broker no longer knows this publisher (it cancels publishers when the stream's
    /// leader moves): publishing again needs a new one.
    pub cancelled: Arc<AtomicBool>,
    pub stall: ConfirmStall,
}

/// Whether confirms stopped coming: messages await confirms and no outcome came for
/// `CONFIRM_STALL`, so the connection is dead although the client has not noticed.
pub(super) struct ConfirmStall {
    /// Outcomes (confirms and publish errors) the client reported, in messages.
    pub answered: Arc<AtomicU64>,
    /// Messages sent.
    pub sent: u64,
    /// Since when `answered` has not moved, and its value then.
    quiet: (Instant, u64),
}

impl ConfirmStall {
    pub fn new(answered: Arc<AtomicU64>) -> ConfirmStall {
        ConfirmStall {
            answered,
            sent: 0,
            quiet: (Instant::now(), 0),
        }
    }

    /// Whether messages await confirms and none came for `CONFIRM_STALL`.
    pub fn stalled(&mut self, confirms: bool) -> bool {
        let answered = self.answered.load(Ordering::Relaxed);
        if !confirms || self.sent <= answered || answered != self.quiet.1 {
            self.quiet = (Instant::now(), answered);
            return false;
        }
        self.quiet.0.elapsed() > CONFIRM_STALL
    }

    /// The error of a stalled producer.
    pub fn error(&self) -> OpError {
        OpError::Connection(format!(
            "no confirm for {CONFIRM_STALL:?} with {} messages awaiting one: the connection \
             is dead without the client noticing",
            self.sent
                .saturating_sub(self.answered.load(Ordering::Relaxed))
        ))
    }
}

/// Everything given refused: the connection is gone (the harness reopens).
pub(super) fn refuse_all(payloads: &mut Vec<Bytes>, why: OpError) -> SentBatch {
    payloads.clear();
    SentBatch {
        taken: 1,
        refused: vec![(0, why)],
        confirms: None,
    }
}

/// Tells the producer that its connection closed (the client calls it with what was not
/// confirmed; the confirm streams fail those themselves).
pub(super) struct Closed(pub Arc<watch::Sender<bool>>);

#[async_trait]
impl OnClosed for Closed {
    async fn on_closed(&self, _unconfirmed: Vec<Message>) {
        self.0.send_replace(true);
    }
}

/// What the client said about one message: its publishing id and outcome.
type Outcome = (u64, Result<(), OpError>);

fn outcome(r: Result<ConfirmationStatus, ProducerPublishError>) -> Option<Outcome> {
    let status = r.ok()?;
    let result = if status.confirmed() {
        Ok(())
    } else {
        Err(OpError::Nack(format!(
            "publish error {:?}",
            status.status()
        )))
    };
    Some((status.publishing_id(), result))
}

pub(super) fn lost(stream: &str) -> OpError {
    OpError::Connection(format!(
        "the connection to the leader of stream {stream} closed before the confirm"
    ))
}

/// The confirms of one batch: positions come as the client reports them; once the
/// connection is closed (or the client dropped the batch's callback), every position still
/// open ends with `lost`, in runs.
struct Pending {
    rx: mpsc::UnboundedReceiver<Outcome>,
    dead: watch::Receiver<bool>,
    first_id: u64,
    open: Vec<bool>,
    left: usize,
    stream: String,
}

impl Pending {
    /// The next run of open positions, closed as lost.
    fn fail_next_run(&mut self) -> Option<(Range<usize>, Result<(), OpError>)> {
        let start = self.open.iter().position(|o| *o)?;
        let len = self.open[start..].iter().take_while(|o| **o).count();
        for o in &mut self.open[start..start + len] {
            *o = false;
        }
        self.left -= len;
        Some((start..start + len, Err(lost(&self.stream))))
    }

    async fn next(&mut self) -> Option<(Range<usize>, Result<(), OpError>)> {
        while self.left > 0 {
            let got = tokio::select! {
                biased;
                got = self.rx.recv() => got,
                _ = self.dead.wait_for(|d| *d) => None,
            };
            let Some((id, result)) = got else {
                return self.fail_next_run();
            };
            let Some(pos) = id.checked_sub(self.first_id).map(|p| p as usize) else {
                continue;
            };
            if self.open.get(pos).copied().unwrap_or(false) {
                self.open[pos] = false;
                self.left -= 1;
                return Some((pos..pos + 1, result));
            }
        }
        None
    }
}

#[async_trait]
impl Producer for NativeProducer {
    async fn send(
        &mut self,
        payload: Bytes,
    ) -> Result<Option<crate::backend::ConfirmFuture>, OpError> {
        let mut one = vec![payload];
        self.send_batch(&mut one).await.into_one()
    }

    async fn send_batch(&mut self, payloads: &mut Vec<Bytes>) -> SentBatch {
        if self.failed || self.cancelled.load(Ordering::Relaxed) || *self.dead.borrow() {
            let stream = &self.parts[self.next_part].stream;
            return refuse_all(payloads, lost(stream));
        }
        if self.stall.stalled(self.confirms) {
            self.failed = true;
            return refuse_all(payloads, self.stall.error());
        }
        let k = self.next_part;
        self.next_part = (k + 1) % self.parts.len();
        let part = &mut self.parts[k];
        let n = payloads.len();
        self.stall.sent += n as u64;
        let first_id = part.next_id;
        part.next_id += n as u64;
        let messages: Vec<Message> = payloads
            .drain(..)
            .enumerate()
            .map(|(i, p)| {
                Message::builder()
                    .body(p.as_ref())
                    .publishing_id(first_id + i as u64)
                    .build()
            })
            .collect();
        if !self.confirms {
            let r = part
                .producer
                .batch_send(messages, |_| futures::future::ready(()))
                .await;
            return match r {
                Ok(()) => SentBatch::handed(vec![Ok(()); n]),
                Err(e) => SentBatch {
                    taken: n,
                    refused: vec![(
                        n - 1,
                        OpError::Connection(format!("stream {}: {e}", part.stream)),
                    )],
                    confirms: None,
                },
            };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let cancelled = self.cancelled.clone();
        let answered = self.stall.answered.clone();
        let confirmed = part.confirmed.clone();
        let callback = move |r: Result<ConfirmationStatus, ProducerPublishError>| {
            answered.fetch_add(1, Ordering::Relaxed);
            if let Ok(status) = &r {
                if status.confirmed() {
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
                if matches!(
                    status.status(),
                    ResponseCode::PublisherDoesNotExist | ResponseCode::StreamNotAvailable
                ) {
                    cancelled.store(true, Ordering::Relaxed);
                }
            }
            if let Some(o) = outcome(r) {
                let _ = tx.send(o);
            }
            futures::future::ready(())
        };
        // On an error the client may have queued part of the batch: those confirms may still
        // come; once the connection is seen closed, the rest end as lost.
        let failed = part.producer.batch_send(messages, callback).await.is_err()
            || part.producer.is_closed();
        let dead = if failed {
            // The client could not take the batch (its connection is gone): no confirm will
            // come for what it did not publish, and the next batch asks for a reopen.
            self.failed = true;
            watch::channel(true).1
        } else {
            self.dead.clone()
        };
        let pending = Pending {
            rx,
            dead,
            first_id,
            open: vec![true; n],
            left: n,
            stream: part.stream.clone(),
        };
        let confirms = futures::stream::unfold(pending, |mut p| async move {
            p.next().await.map(|item| (item, p))
        })
        .boxed();
        SentBatch {
            taken: n,
            refused: Vec::new(),
            confirms: Some(confirms),
        }
    }

    async fn close(self: Box<Self>) {
        for part in self.parts {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, part.producer.clone().close()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: usize) -> (mpsc::UnboundedSender<Outcome>, watch::Sender<bool>, Pending) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (dead_tx, dead) = watch::channel(false);
        let p = Pending {
            rx,
            dead,
            first_id: 100,
            open: vec![true; n],
            left: n,
            stream: "s".into(),
        };
        (tx, dead_tx, p)
    }

    #[tokio::test]
    async fn confirms_find_their_place_and_a_closed_connection_ends_the_rest_as_lost() {
        let (tx, dead, mut p) = pending(6);
        tx.send((101, Ok(()))).expect("send");
        tx.send((104, Err(OpError::Nack("x".into()))))
            .expect("send");
        tx.send((101, Ok(()))).expect("a repeat is ignored");
        tx.send((7, Ok(())))
            .expect("an id before the batch is ignored");
        let (r, o) = p.next().await.expect("first");
        assert_eq!((r, o.is_ok()), (1..2, true));
        let (r, o) = p.next().await.expect("second");
        assert_eq!((r, o.map_err(|e| e.kind())), (4..5, Err("nack")));
        dead.send_replace(true);
        let mut rest = Vec::new();
        while let Some((r, o)) = p.next().await {
            assert!(o.expect_err("lost").needs_reconnect());
            rest.push(r);
        }
        assert_eq!(rest, [0..1, 2..4, 5..6]);
    }

    #[tokio::test]
    async fn a_dropped_callback_ends_the_batch_and_a_complete_batch_ends_by_itself() {
        let (tx, _dead, mut p) = pending(2);
        tx.send((100, Ok(()))).expect("send");
        drop(tx);
        assert_eq!(p.next().await.map(|(r, _)| r), Some(0..1));
        assert_eq!(
            p.next().await.map(|(r, o)| (r, o.is_err())),
            Some((1..2, true))
        );
        assert!(p.next().await.is_none());
        let (tx, _dead, mut p) = pending(1);
        tx.send((100, Ok(()))).expect("send");
        assert!(p.next().await.is_some());
        assert!(
            p.next().await.is_none(),
            "ends without waiting for the connection"
        );
    }
}
