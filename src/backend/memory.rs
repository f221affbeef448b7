//! An in-process backend with injectable loss, duplication and nacks, for unit tests of the
//! harness's own logic (ledger, runner, reports) and for the harness's ceiling
//! (`brokerbench calibrate`). It is not in the scenario registry: no result can come from it.
//!
//! It works a batch at a time, so that what a calibration measures is the harness, not this
//! backend: one lock and one wake-up per batch sent or polled, one confirm stream per batch,
//! and per message only the arithmetic that decides which faults hit it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::*;

/// Faults to inject, counted over all messages sent to the backend (1-based message number n).
#[derive(Debug, Clone, Default)]
pub struct MemoryFaults {
    /// Confirm message n but never deliver it when n % drop_every == 0.
    pub drop_every: Option<u64>,
    /// Deliver message n twice when n % duplicate_every == 0.
    pub duplicate_every: Option<u64>,
    /// Nack (and do not deliver) message n when n % nack_every == 0.
    pub nack_every: Option<u64>,
    /// Queue message n before the message queued just before it when n % reorder_every == 0.
    pub reorder_every: Option<u64>,
    /// Deliver message n but fail its confirm as if the connection dropped (outcome unknown
    /// to the producer) when n % lose_confirm_every == 0.
    pub lose_confirm_every: Option<u64>,
    /// Delay before each confirm.
    pub confirm_delay: Duration,
    /// Publish without confirms: `confirms()` is false and `send` returns no confirm (the
    /// confirm faults above then go unseen by the producer).
    pub without_confirms: bool,
    /// A sent message reaches its queue this long after `send`, and never if its producer is
    /// closed first: as RabbitMQ 3.10 quorum queues drop the enqueues still buffered when the
    /// publishing channel closes.
    pub enqueue_delay: Option<Duration>,
    /// At most this many messages wait in a queue: a send waits for room, as a broker's flow
    /// control makes publishers wait (None: no limit).
    pub capacity: Option<usize>,
    /// Consumers (by index) that receive nothing, as the standbys of a single active consumer
    /// group do.
    pub standby_consumers: Vec<usize>,
}

/// Messages a consumer takes per poll, at most.
const POLL_MAX: usize = 256;

/// One queue, with its wake-ups.
#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<Bytes>>,
    /// Messages were queued.
    data: Notify,
    /// Messages were taken (a producer waiting for room).
    room: Notify,
}

#[derive(Default)]
struct Queues {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    record: Mutex<Injected>,
}

/// What the backend did, by (producer, sequence) from the harness's header: the truth a test
/// compares the ledger with.
#[derive(Debug, Default, Clone)]
pub struct Injected {
    /// Confirmed but never queued.
    pub dropped: Vec<(u32, u64)>,
    /// Messages handed to a consumer more than once (one entry per extra hand-out); tracked
    /// only when duplicates are injected.
    pub repeated: Vec<(u32, u64)>,
    /// Messages queued ahead of the one queued before them.
    pub reordered: u64,
    /// Queued, with a confirm that failed as if the connection dropped.
    pub lost_confirms: Vec<(u32, u64)>,
    /// Nacked and never queued.
    pub nacked: Vec<(u32, u64)>,
    /// Sent, still on their way (`enqueue_delay`) when their producer closed, never queued.
    pub discarded_on_close: Vec<(u32, u64)>,
    handed_out: std::collections::HashSet<(u32, u64)>,
}

fn id_of(payload: &Bytes) -> (u32, u64) {
    crate::payload::Header::decode(payload)
        .map(|h| (h.producer, h.seq))
        .unwrap_or((u32::MAX, u64::MAX))
}

pub struct MemoryBackend {
    faults: MemoryFaults,
    state: Arc<Queues>,
    counter: Arc<AtomicU64>,
}

impl MemoryBackend {
    pub fn new(faults: MemoryFaults) -> Self {
        MemoryBackend {
            faults,
            state: Arc::default(),
            counter: Arc::default(),
        }
    }

    fn queue(&self, key: &str) -> Option<Arc<Queue>> {
        self.state.queues.lock().get(key).cloned()
    }

    /// Messages waiting in queue `key`.
    pub fn queued(&self, key: &str) -> usize {
        self.queue(key).map_or(0, |q| q.items.lock().len())
    }

    /// Remove up to `n` messages from the front of queue `key`, as another client consuming
    /// behind the harness's back would; returns their (producer, sequence).
    pub fn steal(&self, key: &str, n: usize) -> Vec<(u32, u64)> {
        let Some(q) = self.queue(key) else {
            return Vec::new();
        };
        let mut items = q.items.lock();
        let n = n.min(items.len());
        let taken = items.drain(..n).map(|p| id_of(&p)).collect();
        q.room.notify_waiters();
        taken
    }

    /// What was injected so far.
    pub fn injected(&self) -> Injected {
        self.state.record.lock().clone()
    }
}

fn unknown_queue(name: &str) -> OpError {
    OpError::Unavailable(format!("no queue named {name}"))
}

#[async_trait]
impl Backend for MemoryBackend {
    fn label(&self) -> &str {
        "memory"
    }
    fn confirms(&self) -> bool {
        !self.faults.without_confirms
    }
    async fn setup(&self, prefix: &str, count: usize) -> Result<Vec<Destination>, BackendError> {
        let mut q = self.state.queues.lock();
        Ok((0..count)
            .map(|i| {
                let name = format!("{prefix}-{i}");
                q.insert(name.clone(), Arc::default());
                Destination { index: i, name }
            })
            .collect())
    }
    async fn teardown(&self, destinations: &[Destination]) -> Result<(), BackendError> {
        let mut q = self.state.queues.lock();
        for d in destinations {
            q.remove(&d.name);
        }
        Ok(())
    }
    async fn producer(
        &self,
        dest: &Destination,
        _index: usize,
    ) -> Result<Box<dyn Producer>, OpError> {
        Ok(Box::new(MemoryProducer {
            queue: self
                .queue(&dest.name)
                .ok_or_else(|| unknown_queue(&dest.name))?,
            faults: self.faults.clone(),
            state: self.state.clone(),
            counter: self.counter.clone(),
            closed: Arc::default(),
        }))
    }
    async fn consumer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Consumer>, OpError> {
        Ok(Box::new(MemoryConsumer {
            standby: self.faults.standby_consumers.contains(&index),
            queue: self
                .queue(&dest.name)
                .ok_or_else(|| unknown_queue(&dest.name))?,
            state: self.state.clone(),
            track: self.faults.duplicate_every.is_some(),
        }))
    }
    async fn backlog(&self, destinations: &[Destination]) -> Result<Option<Backlog>, BackendError> {
        let ready = destinations
            .iter()
            .map(|d| self.queued(&d.name) as u64)
            .sum();
        Ok(Some(Backlog { ready, unacked: 0 }))
    }
    async fn topology(&self, destinations: &[Destination]) -> Result<Topology, BackendError> {
        Ok(Topology {
            nodes: vec![NodeView {
                name: "memory".into(),
                address: "in-process".into(),
                role: "node".into(),
            }],
            destinations: destinations
                .iter()
                .map(|d| DestinationPlacement {
                    name: d.name.clone(),
                    leader: Some("memory".into()),
                    replicas: vec![],
                    slot: None,
                })
                .collect(),
        })
    }
}

struct MemoryProducer {
    queue: Arc<Queue>,
    faults: MemoryFaults,
    state: Arc<Queues>,
    counter: Arc<AtomicU64>,
    /// Set by `close`: messages still on their way (`enqueue_delay`) are discarded.
    closed: Arc<AtomicBool>,
}

fn hits(every: Option<u64>, n: u64) -> bool {
    every.is_some_and(|e| e > 0 && n.is_multiple_of(e))
}

/// Where one message of a batch goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Queued (ahead of the last queued message with `reorder`, twice with `duplicate`).
    Queue { reorder: bool, duplicate: bool },
    /// Confirmed, never queued.
    Drop,
    /// Nacked, never queued.
    Nack,
}

impl Fate {
    const AS_SENT: Fate = Fate::Queue {
        reorder: false,
        duplicate: false,
    };
}

impl MemoryFaults {
    /// Every message is queued as sent, at once: no fault that picks messages, no delay.
    fn queues_as_sent(&self) -> bool {
        [
            self.drop_every,
            self.duplicate_every,
            self.nack_every,
            self.reorder_every,
            self.lose_confirm_every,
        ]
        .iter()
        .all(|e| e.is_none_or(|e| e == 0))
            && self.enqueue_delay.is_none()
    }

    fn fate(&self, n: u64) -> Fate {
        if hits(self.nack_every, n) {
            Fate::Nack
        } else if hits(self.drop_every, n) {
            Fate::Drop
        } else {
            Fate::Queue {
                reorder: hits(self.reorder_every, n),
                duplicate: hits(self.duplicate_every, n),
            }
        }
    }
}

/// The confirm outcomes of a batch of `len`: all Ok but at the positions in `failures`
/// (ascending), as ranges (a batch without failures is one item).
fn confirm_stream(len: usize, failures: Vec<(usize, OpError)>, delay: Duration) -> BatchConfirms {
    let mut items = Vec::with_capacity(2 * failures.len() + 1);
    let mut next = 0;
    for (at, e) in failures {
        if at > next {
            items.push((next..at, Ok(())));
        }
        items.push((at..at + 1, Err(e)));
        next = at + 1;
    }
    if len > next {
        items.push((next..len, Ok(())));
    }
    let outcomes = futures::stream::iter(items);
    if delay.is_zero() {
        outcomes.boxed()
    } else {
        futures::stream::once(async move {
            tokio::time::sleep(delay).await;
            outcomes
        })
        .flatten()
        .boxed()
    }
}

impl MemoryProducer {
    /// Queue `items` (payload, fate) in order, waiting for room when the queue is full.
    async fn enqueue(&self, items: impl Iterator<Item = (Bytes, Fate)>) {
        let mut items = items.peekable();
        while items.peek().is_some() {
            let room = self.queue.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut q = self.queue.items.lock();
                let mut reordered = 0;
                while let Some((payload, fate)) =
                    items.next_if(|_| self.faults.capacity.is_none_or(|c| q.len() < c.max(1)))
                {
                    if let Fate::Queue { reorder, duplicate } = fate {
                        let twice = duplicate.then(|| payload.clone());
                        if reorder && !q.is_empty() {
                            let at = q.len() - 1;
                            q.insert(at, payload);
                            reordered += 1;
                        } else {
                            q.push_back(payload);
                        }
                        if let Some(p) = twice {
                            q.push_back(p);
                        }
                    }
                }
                if reordered > 0 {
                    self.state.record.lock().reordered += reordered;
                }
            }
            self.queue.data.notify_waiters();
            if items.peek().is_some() {
                room.await;
            }
        }
    }
}

#[async_trait]
impl Producer for MemoryProducer {
    async fn send(&mut self, payload: Bytes) -> Result<Option<ConfirmFuture>, OpError> {
        let mut one = vec![payload];
        self.send_batch(&mut one).await.into_one()
    }

    async fn send_batch(&mut self, payloads: &mut Vec<Bytes>) -> SentBatch {
        let len = payloads.len();
        let first = self.counter.fetch_add(len as u64, Ordering::SeqCst) + 1;
        let f = &self.faults;
        if f.queues_as_sent() {
            // Nothing to inject: queue the batch as it is.
            self.enqueue(payloads.drain(..).map(|p| (p, Fate::AS_SENT)))
                .await;
            return SentBatch {
                taken: len,
                refused: Vec::new(),
                confirms: (!f.without_confirms)
                    .then(|| confirm_stream(len, Vec::new(), f.confirm_delay)),
            };
        }
        let mut failures = Vec::new();
        let mut queued = Vec::with_capacity(len);
        for (i, payload) in payloads.drain(..).enumerate() {
            let n = first + i as u64;
            let fate = f.fate(n);
            match fate {
                Fate::Nack => {
                    self.state.record.lock().nacked.push(id_of(&payload));
                    failures.push((i, OpError::Nack(format!("injected nack of message {n}"))));
                    continue;
                }
                Fate::Drop => self.state.record.lock().dropped.push(id_of(&payload)),
                Fate::Queue { .. } if hits(f.lose_confirm_every, n) => {
                    self.state.record.lock().lost_confirms.push(id_of(&payload));
                    failures.push((
                        i,
                        OpError::Connection(format!(
                            "injected: the connection dropped before message {n}'s confirm"
                        )),
                    ));
                }
                Fate::Queue { .. } => {}
            }
            queued.push((payload, fate));
        }
        match f.enqueue_delay {
            None => self.enqueue(queued.into_iter()).await,
            Some(delay) => {
                let this = MemoryProducer {
                    queue: self.queue.clone(),
                    faults: self.faults.clone(),
                    state: self.state.clone(),
                    counter: self.counter.clone(),
                    closed: self.closed.clone(),
                };
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if this.closed.load(Ordering::SeqCst) {
                        let mut r = this.state.record.lock();
                        r.discarded_on_close
                            .extend(queued.iter().map(|(p, _)| id_of(p)));
                    } else {
                        this.enqueue(queued.into_iter()).await;
                    }
                });
            }
        }
        SentBatch {
            taken: len,
            refused: Vec::new(),
            confirms: (!f.without_confirms).then(|| confirm_stream(len, failures, f.confirm_delay)),
        }
    }

    async fn close(self: Box<Self>) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

struct MemoryConsumer {
    /// Receives nothing (`MemoryFaults::standby_consumers`).
    standby: bool,
    queue: Arc<Queue>,
    state: Arc<Queues>,
    /// Record what was handed out, to find repeats (only when duplicates are injected).
    track: bool,
}

impl MemoryConsumer {
    /// Move up to `POLL_MAX` queued messages to `out`; returns how many.
    fn take(&self, out: &mut Vec<Delivery>) -> usize {
        let mut q = self.queue.items.lock();
        let n = q.len().min(POLL_MAX.saturating_sub(out.len()));
        let start = out.len();
        out.extend(q.drain(..n).map(|payload| Delivery {
            payload,
            redelivered: false,
            token: AckToken::None,
        }));
        drop(q);
        if n > 0 {
            self.queue.room.notify_waiters();
        }
        if self.track && n > 0 {
            let mut r = self.state.record.lock();
            for d in &out[start..] {
                let id = id_of(&d.payload);
                if !r.handed_out.insert(id) {
                    r.repeated.push(id);
                }
            }
        }
        n
    }
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        if self.standby {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return Ok(());
        }
        let queued = self.queue.data.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        if self.take(out) == 0 {
            let _ = tokio::time::timeout(Duration::from_millis(20), queued).await;
            self.take(out);
        }
        Ok(())
    }
    async fn ack(&mut self, _tokens: &[AckToken]) -> Result<(), OpError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Header;

    fn payload(seq: u64) -> Bytes {
        Header {
            run_id: 1,
            producer: 0,
            seq,
            intended_ns: 0,
        }
        .encode(64)
    }

    /// Outcome of each position, one by one.
    async fn outcomes(sent: SentBatch) -> Vec<(usize, bool)> {
        let items: Vec<_> = sent.confirms.expect("confirms").collect().await;
        items
            .into_iter()
            .flat_map(|(range, r)| range.map(move |i| (i, r.is_ok())))
            .collect()
    }

    /// Faults hit by message number across batches, each outcome at its position.
    #[tokio::test]
    async fn a_batch_gets_its_faults_by_message_number() {
        let b = MemoryBackend::new(MemoryFaults {
            nack_every: Some(3),
            drop_every: Some(4),
            duplicate_every: Some(5),
            ..MemoryFaults::default()
        });
        let d = b.setup("t", 1).await.expect("setup").remove(0);
        let mut p = b.producer(&d, 0).await.expect("producer");
        let mut batch: Vec<Bytes> = (0..4).map(payload).collect();
        let sent = p.send_batch(&mut batch).await;
        assert!(batch.is_empty() && sent.taken == 4 && sent.refused.is_empty());
        // Message 3 (position 2) is nacked; 4 is dropped but confirmed.
        assert_eq!(
            outcomes(sent).await,
            [(0, true), (1, true), (2, false), (3, true)]
        );
        let mut batch: Vec<Bytes> = (4..6).map(payload).collect();
        outcomes(p.send_batch(&mut batch).await).await;
        // Queued: 1, 2, then 5 twice, then 6 (message 6 is nacked: 3 divides it).
        assert_eq!(b.queued("t-0"), 4);
        let truth = b.injected();
        assert_eq!(truth.nacked, [(0, 2), (0, 5)]);
        assert_eq!(truth.dropped, [(0, 3)]);
        let mut c = b.consumer(&d, 0).await.expect("consumer");
        let mut out = Vec::new();
        c.poll(&mut out).await.expect("poll");
        let got: Vec<(u32, u64)> = out.iter().map(|d| id_of(&d.payload)).collect();
        assert_eq!(got, [(0, 0), (0, 1), (0, 4), (0, 4)]);
        assert_eq!(b.injected().repeated, [(0, 4)]);
    }

    /// A batch confirmed whole is one item of the confirm stream.
    #[tokio::test]
    async fn a_batch_without_faults_is_confirmed_at_once() {
        let b = MemoryBackend::new(MemoryFaults::default());
        let d = b.setup("t", 1).await.expect("setup").remove(0);
        let mut p = b.producer(&d, 0).await.expect("producer");
        let mut batch: Vec<Bytes> = (0..100).map(payload).collect();
        let sent = p.send_batch(&mut batch).await;
        let items: Vec<_> = sent.confirms.expect("confirms").collect().await;
        assert_eq!(items.len(), 1);
        assert_eq!((items[0].0.clone(), items[0].1.is_ok()), (0..100, true));
    }

    /// With a capacity, a send waits until a consumer makes room.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_makes_the_producer_wait() {
        let b = Arc::new(MemoryBackend::new(MemoryFaults {
            capacity: Some(10),
            ..MemoryFaults::default()
        }));
        let d = b.setup("t", 1).await.expect("setup").remove(0);
        let mut p = b.producer(&d, 0).await.expect("producer");
        let sender = tokio::spawn(async move {
            let mut batch: Vec<Bytes> = (0..25).map(payload).collect();
            p.send_batch(&mut batch).await.taken
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(b.queued("t-0"), 10, "the producer waits for room");
        assert!(!sender.is_finished());
        let mut c = b.consumer(&d, 0).await.expect("consumer");
        let mut got = 0;
        while got < 25 {
            let mut out = Vec::new();
            c.poll(&mut out).await.expect("poll");
            got += out.len();
        }
        assert_eq!(sender.await.expect("sender"), 25);
        assert_eq!(b.queued("t-0"), 0);
    }
}
