//! An in-process backend with injectable loss, duplication and nacks, for unit tests of the
//! harness's own logic (ledger, runner, reports). It is not in the scenario registry: no
//! result can come from it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
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
}

#[derive(Default)]
struct Queues {
    queues: Mutex<HashMap<String, VecDeque<Bytes>>>,
    notify: Notify,
    record: Mutex<Injected>,
}

/// What the backend did, by (producer, sequence) from the harness's header: the truth a test
/// compares the ledger with.
#[derive(Debug, Default, Clone)]
pub struct Injected {
    /// Confirmed but never queued.
    pub dropped: Vec<(u32, u64)>,
    /// Messages handed to a consumer more than once (one entry per extra hand-out).
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

    /// Messages waiting in queue `key`.
    pub fn queued(&self, key: &str) -> usize {
        self.state.queues.lock().get(key).map_or(0, |q| q.len())
    }

    /// Remove up to `n` messages from the front of queue `key`, as another client consuming
    /// behind the harness's back would; returns their (producer, sequence).
    pub fn steal(&self, key: &str, n: usize) -> Vec<(u32, u64)> {
        let mut q = self.state.queues.lock();
        let Some(q) = q.get_mut(key) else {
            return Vec::new();
        };
        let n = n.min(q.len());
        q.drain(..n).map(|p| id_of(&p)).collect()
    }

    /// What was injected so far.
    pub fn injected(&self) -> Injected {
        self.state.record.lock().clone()
    }
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
                q.insert(name.clone(), VecDeque::new());
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
            key: dest.name.clone(),
            faults: self.faults.clone(),
            state: self.state.clone(),
            counter: self.counter.clone(),
            closed: Arc::default(),
        }))
    }
    async fn consumer(
        &self,
        dest: &Destination,
        _index: usize,
    ) -> Result<Box<dyn Consumer>, OpError> {
        Ok(Box::new(MemoryConsumer {
            key: dest.name.clone(),
            state: self.state.clone(),
        }))
    }
    async fn backlog(&self, destinations: &[Destination]) -> Result<Option<Backlog>, BackendError> {
        let q = self.state.queues.lock();
        let ready = destinations
            .iter()
            .filter_map(|d| q.get(&d.name))
            .map(|q| q.len() as u64)
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
    key: String,
    faults: MemoryFaults,
    state: Arc<Queues>,
    counter: Arc<AtomicU64>,
    /// Set by `close`: messages still on their way (`enqueue_delay`) are discarded.
    closed: Arc<AtomicBool>,
}

fn hits(every: Option<u64>, n: u64) -> bool {
    every.is_some_and(|e| e > 0 && n.is_multiple_of(e))
}

#[async_trait]
impl Producer for MemoryProducer {
    async fn send(&mut self, payload: Bytes) -> Result<Option<ConfirmFuture>, OpError> {
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let f = &self.faults;
        let id = id_of(&payload);
        let result = if hits(f.nack_every, n) {
            self.state.record.lock().nacked.push(id);
            Err(OpError::Nack(format!("injected nack of message {n}")))
        } else {
            if hits(f.drop_every, n) {
                self.state.record.lock().dropped.push(id);
            } else if let Some(delay) = f.enqueue_delay {
                let (state, key, closed) =
                    (self.state.clone(), self.key.clone(), self.closed.clone());
                let duplicate = hits(f.duplicate_every, n);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if closed.load(Ordering::SeqCst) {
                        state.record.lock().discarded_on_close.push(id);
                    } else {
                        enqueue(&state, &key, payload, false, duplicate);
                        state.notify.notify_waiters();
                    }
                });
            } else {
                let reorder = hits(f.reorder_every, n);
                enqueue(
                    &self.state,
                    &self.key,
                    payload,
                    reorder,
                    hits(f.duplicate_every, n),
                );
            }
            self.state.notify.notify_waiters();
            if hits(f.lose_confirm_every, n) && !hits(f.drop_every, n) {
                self.state.record.lock().lost_confirms.push(id);
                Err(OpError::Connection(format!(
                    "injected: the connection dropped before message {n}'s confirm"
                )))
            } else {
                Ok(())
            }
        };
        if f.without_confirms {
            return Ok(None);
        }
        let delay = f.confirm_delay;
        Ok(Some(
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                result
            }
            .boxed(),
        ))
    }

    async fn close(self: Box<Self>) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// Queue `payload` on `key` (ahead of the last queued message with `reorder`, twice with
/// `duplicate`).
fn enqueue(state: &Queues, key: &str, payload: Bytes, reorder: bool, duplicate: bool) {
    let mut q = state.queues.lock();
    if let Some(q) = q.get_mut(key) {
        if reorder && !q.is_empty() {
            q.insert(q.len() - 1, payload.clone());
            state.record.lock().reordered += 1;
        } else {
            q.push_back(payload.clone());
        }
        if duplicate {
            q.push_back(payload);
        }
    }
}

struct MemoryConsumer {
    key: String,
    state: Arc<Queues>,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        for attempt in 0..2 {
            {
                let mut q = self.state.queues.lock();
                if let Some(q) = q.get_mut(&self.key) {
                    while out.len() < 256 {
                        match q.pop_front() {
                            Some(payload) => {
                                let id = id_of(&payload);
                                let mut r = self.state.record.lock();
                                if !r.handed_out.insert(id) {
                                    r.repeated.push(id);
                                }
                                out.push(Delivery {
                                    payload,
                                    redelivered: false,
                                    token: AckToken::None,
                                })
                            }
                            None => break,
                        }
                    }
                }
            }
            if !out.is_empty() || attempt == 1 {
                break;
            }
            let _ =
                tokio::time::timeout(Duration::from_millis(20), self.state.notify.notified()).await;
        }
        Ok(())
    }
    async fn ack(&mut self, _tokens: &[AckToken]) -> Result<(), OpError> {
        Ok(())
    }
}
