//! The backend contract: a thin driver that only moves bytes (as in OpenMessaging Benchmark).
//!
//! The harness does all timing and accounting. A backend declares destinations, opens
//! producers (whose `send` hands a message to the client and returns a future for the broker's
//! confirm), opens consumers (which yield deliveries with an ack token) and describes its
//! topology. Killing and restarting nodes belongs to the cluster launcher (`crate::cluster`).

pub mod memory;
pub mod rabbitmq;
pub mod rabbitmq_stream_native;
pub mod redis;
pub mod registry;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered, StreamExt};
use futures::FutureExt;
use serde::Serialize;

use crate::cluster::version::BrokerVersion;
pub use registry::{BackendSpec, BackendType, Family, FieldError};

/// A future that resolves when the broker confirms one message.
pub type ConfirmFuture = BoxFuture<'static, Result<(), OpError>>;

/// The confirms of one batch (`Producer::send_batch`) as they come: (positions in the batch,
/// their outcome), each position at most once; a backend that learns several outcomes at once
/// (a pipeline's replies, a multiple ack) may give them as one range. A position whose confirm
/// never comes times out.
pub type BatchConfirms = BoxStream<'static, (Range<usize>, Result<(), OpError>)>;

/// A future that resolves when the broker has answered for every message of one batch: one
/// outcome per message, in the order they were given (a backend whose replies to a batch come
/// together, as a Redis pipeline's do).
pub type BatchConfirmFuture = BoxFuture<'static, Vec<Result<(), OpError>>>;

/// What handing one batch to the client gave.
pub struct SentBatch {
    /// How many payloads, from the first, the client took. Fewer than given only after an error
    /// that needs a reconnect (on the last one taken): the others were never handed over.
    pub taken: usize,
    /// Messages the client refused at once, as `send` would: (position, error).
    pub refused: Vec<(usize, OpError)>,
    /// Confirms of the messages taken and not refused; `None` without confirms.
    pub confirms: Option<BatchConfirms>,
}

impl SentBatch {
    /// `taken` messages whose outcomes all come at once, in order (one future for the batch):
    /// the outcomes go to the harness as ranges of equal outcomes.
    pub fn all_at_once(taken: usize, outcomes: BatchConfirmFuture) -> SentBatch {
        let ranges = futures::stream::once(outcomes)
            .flat_map(|v| futures::stream::iter(outcome_ranges(v)))
            .boxed();
        SentBatch {
            taken,
            refused: Vec::new(),
            confirms: Some(ranges),
        }
    }

    /// Messages handed to a client without confirms: `outcomes` says how handing each went.
    pub fn handed(outcomes: Vec<Result<(), OpError>>) -> SentBatch {
        let taken = outcomes.len();
        SentBatch {
            taken,
            refused: outcomes
                .into_iter()
                .enumerate()
                .filter_map(|(i, r)| r.err().map(|e| (i, e)))
                .collect(),
            confirms: None,
        }
    }

    /// What `send` returns for a batch of one message (the `send` of a producer written
    /// around `send_batch`): its refusal, else its confirm (`None` without confirms).
    pub fn into_one(self) -> Result<Option<ConfirmFuture>, OpError> {
        if let Some((_, e)) = self.refused.into_iter().next() {
            return Err(e);
        }
        Ok(self.confirms.map(|mut c| {
            async move {
                match c.next().await {
                    Some((_, r)) => r,
                    None => Err(OpError::Connection("no confirm came".into())),
                }
            }
            .boxed()
        }))
    }
}

/// Outcomes in order, as runs of successes (one range each) and single failures.
fn outcome_ranges(v: Vec<Result<(), OpError>>) -> Vec<(Range<usize>, Result<(), OpError>)> {
    let mut out: Vec<(Range<usize>, Result<(), OpError>)> = Vec::new();
    for (i, r) in v.into_iter().enumerate() {
        match (out.last_mut(), r) {
            (Some((range, Ok(()))), Ok(())) if range.end == i => range.end = i + 1,
            (_, r) => out.push((i..i + 1, r)),
        }
    }
    out
}

/// One queue or stream that the harness produces to and consumes from.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// Position in the scenario's list of destinations (0-based).
    pub index: usize,
    /// The broker-side name: queue name, or stream key (with its hash tag for Redis).
    pub name: String,
}

/// An error of one broker operation. These are data (counted by kind), never crashes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpError {
    #[error("broker refused the message (nack): {0}")]
    Nack(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("connection lost or refused: {0}")]
    Connection(String),
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error("broker error: {0}")]
    Broker(String),
    #[error("malformed delivery: {0}")]
    Protocol(String),
}

impl OpError {
    /// The short kind under which errors are counted in the results.
    pub fn kind(&self) -> &'static str {
        match self {
            OpError::Nack(_) => "nack",
            OpError::Timeout(_) => "timeout",
            OpError::Connection(_) => "connection",
            OpError::Unavailable(_) => "unavailable",
            OpError::Broker(_) => "broker",
            OpError::Protocol(_) => "protocol",
        }
    }

    /// True when the producer or consumer that saw it must be reopened before further use.
    pub fn needs_reconnect(&self) -> bool {
        matches!(self, OpError::Connection(_))
    }

    /// True when the operation certainly did not take effect: the broker refused it (a nack,
    /// an unavailable cluster that refused before executing, e.g. CLUSTERDOWN, TRYAGAIN or
    /// MOVED, or another broker error reply). False when its outcome is unknown: a timeout, a
    /// lost connection or an unreadable reply may hide an operation that did happen. This is
    /// Jepsen's `:fail` (definite) versus `:info` (indeterminate): a definitely failed publish
    /// must never be received, an indeterminate one may be.
    pub fn is_definite(&self) -> bool {
        match self {
            OpError::Nack(_) | OpError::Unavailable(_) | OpError::Broker(_) => true,
            OpError::Timeout(_) | OpError::Connection(_) | OpError::Protocol(_) => false,
        }
    }
}

/// Errors while setting up a backend (before load starts): these abort the backend's run.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend {backend}: cannot connect to {target}: {message}")]
    Connect {
        backend: String,
        target: String,
        message: String,
    },
    #[error("backend {backend}: {action} failed: {message}")]
    Setup {
        backend: String,
        action: String,
        message: String,
    },
    #[error("backend {backend}: {source}")]
    Op {
        backend: String,
        #[source]
        source: OpError,
    },
}

/// How a consumer acknowledges one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckToken {
    /// Nothing to ack (auto-ack).
    None,
    /// AMQP delivery tag on the consumer's channel.
    Tag(u64),
    /// Redis stream entry id.
    Id(String),
    /// Redis stream entry id `<ms>-<seq>`, held as numbers (no allocation per entry).
    StreamEntry { ms: u64, seq: u64 },
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub payload: Bytes,
    pub redelivered: bool,
    pub token: AckToken,
}

#[async_trait]
pub trait Producer: Send {
    /// Hand one message to the client. Returns `Some(future)` that resolves on the broker's
    /// confirm, or `None` when this backend runs without confirms (fire and forget).
    async fn send(&mut self, payload: Bytes) -> Result<Option<ConfirmFuture>, OpError>;
    /// Hand `payloads` to the client in order, as `send` would one by one, leaving `payloads`
    /// empty. The harness sends in batches (one call, one confirm stream and one timer per
    /// batch). The default calls `send` for each payload and merges their confirms, so every
    /// confirm keeps its own time; a backend may do better (one pipeline, one lock). A producer
    /// confirms all its messages or none (`Backend::confirms`).
    async fn send_batch(&mut self, payloads: &mut Vec<Bytes>) -> SentBatch {
        let mut sent = SentBatch {
            taken: 0,
            refused: Vec::new(),
            confirms: None,
        };
        let confirms = FuturesUnordered::new();
        for (i, p) in payloads.drain(..).enumerate() {
            sent.taken = i + 1;
            match self.send(p).await {
                Ok(Some(confirm)) => confirms.push(confirm.map(move |r| (i..i + 1, r))),
                Ok(None) => {}
                Err(e) => {
                    let stop = e.needs_reconnect();
                    sent.refused.push((i, e));
                    if stop {
                        break;
                    }
                }
            }
        }
        payloads.clear();
        if !confirms.is_empty() {
            sent.confirms = Some(confirms.boxed());
        }
        sent
    }
    /// Close gracefully (best effort).
    async fn close(self: Box<Self>) {}
}

#[async_trait]
pub trait Consumer: Send {
    /// Wait a short, backend-defined time for deliveries and append them to `out`.
    /// Returning with nothing appended is fine (the harness loops).
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError>;
    /// Acknowledge deliveries previously returned by `poll`. A backend may hold the acks and
    /// send them with its next `poll` (one round trip for both) or at `close`, never later.
    async fn ack(&mut self, tokens: &[AckToken]) -> Result<(), OpError>;
    /// Entries this consumer found already removed by the broker since the last call (a Redis
    /// stream trimmed by MAXLEN: XAUTOCLAIM names their ids, XREADGROUP returns them without
    /// fields). They are counted as `trimmed`, never as foreign deliveries. Called once per
    /// batch by the harness.
    fn take_trimmed(&mut self) -> u64 {
        0
    }
    async fn close(self: Box<Self>) {}
}

/// One broker node as the backend sees it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub role: String,
}

/// Where one destination lives.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationPlacement {
    pub name: String,
    /// The node that takes writes (queue leader, or the master owning the stream's slot).
    pub leader: Option<String>,
    /// Nodes holding copies (followers/mirrors, or the master's replicas).
    pub replicas: Vec<String>,
    /// Redis hash slot of the stream key.
    pub slot: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Topology {
    pub nodes: Vec<NodeView>,
    pub destinations: Vec<DestinationPlacement>,
}

#[async_trait]
pub trait Backend: Send + Sync {
    /// A label for results (the scenario's `label`, or the backend type).
    fn label(&self) -> &str;
    /// Whether producers get broker confirms (false: sent messages stay "unconfirmed").
    fn confirms(&self) -> bool;
    /// Declare `count` destinations whose names start with `prefix`, idempotently.
    async fn setup(&self, prefix: &str, count: usize) -> Result<Vec<Destination>, BackendError>;
    /// Delete what `setup` declared (best effort).
    async fn teardown(&self, destinations: &[Destination]) -> Result<(), BackendError>;
    /// Open producer number `index` (0-based, over the whole run) on `dest`.
    async fn producer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Producer>, OpError>;
    /// Open consumer number `index` on `dest`.
    async fn consumer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Consumer>, OpError>;
    /// Which nodes exist and where each destination lives.
    async fn topology(&self, destinations: &[Destination]) -> Result<Topology, BackendError>;
    /// Broker version string for the run's metadata.
    async fn version(&self) -> Option<String> {
        None
    }
    /// What the broker still holds for the consumers of `destinations` right now (asked at the
    /// drain deadline): messages written but not yet delivered, plus delivered but not acked.
    /// `Ok(None)` when this backend cannot tell. The harness counts confirmed messages it has
    /// not received as `undelivered` (not `lost`) up to this figure.
    async fn backlog(
        &self,
        _destinations: &[Destination],
    ) -> Result<Option<Backlog>, BackendError> {
        Ok(None)
    }
    /// A replay (`workload.mode = "replay"`): make the consumers opened from now on new readers
    /// of `destinations`' whole history, from the start position the type declares
    /// (`BackendType::replay`). Called once the fill is confirmed, before any consumer opens.
    /// Nothing by default: a consumer's first open already starts at the first entry (the
    /// RabbitMQ streams' offset `first`).
    async fn new_readers(&self, _destinations: &[Destination]) -> Result<(), BackendError> {
        Ok(())
    }
    /// How far each copy of `destinations` is behind its leader right now, in entries. A
    /// backend that cannot tell to the second says nothing (RabbitMQ refreshes the Raft indexes it
    /// publishes only every 5 s).
    async fn replica_lag(
        &self,
        _destinations: &[Destination],
    ) -> Result<Vec<ReplicaLag>, BackendError> {
        Ok(Vec::new())
    }
}

/// What a broker still holds for the consumers (see `Backend::backlog`), summed over the
/// destinations asked about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// Written, never delivered to a consumer (Redis: entries after the group's last-delivered
    /// id; RabbitMQ queues: ready; streams: entries after the consumer's committed offset).
    pub ready: u64,
    /// Delivered but not acknowledged (Redis: the group's pending entries; RabbitMQ: unacked).
    pub unacked: u64,
}

impl Backlog {
    pub fn total(&self) -> u64 {
        self.ready + self.unacked
    }
}

/// One copy of a destination and how far it is behind its leader: entries (messages) the leader
/// has that this copy does not, as bounds, since the leader and the copy cannot be read at the
/// same instant (`entries_min == entries_max` when the backend reads them at once).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaLag {
    pub destination: String,
    /// The node holding the copy, as the topology names it.
    pub node: String,
    /// The lag was at least this many entries.
    pub entries_min: u64,
    /// The lag was at most this many entries.
    pub entries_max: u64,
}

/// Addresses of the clusters a run can use, filled by the launcher (or from a scenario's
/// `external` cluster section).
pub use crate::cluster::endpoints::{Endpoints, RabbitEndpoint};

/// Whether a cluster running broker `version` can run the backend `spec` names: Err(the
/// reason, and what to use instead).
pub fn supported_on(spec: &BackendSpec, version: &BrokerVersion) -> Result<(), String> {
    spec.backend_type().supported_on(version)
}

/// Build the backend a scenario entry names, connected to `endpoints`.
pub async fn build(
    spec: &BackendSpec,
    endpoints: &Endpoints,
) -> Result<Arc<dyn Backend>, BackendError> {
    spec.backend_type().build(endpoints).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer with only `send`: confirms message n with an error when n % 3 == 2, refuses
    /// message 4 at once, and loses its connection at message 6.
    struct OneByOne(usize);

    #[async_trait]
    impl Producer for OneByOne {
        async fn send(&mut self, _: Bytes) -> Result<Option<ConfirmFuture>, OpError> {
            let n = self.0;
            self.0 += 1;
            match n {
                4 => Err(OpError::Nack("no".into())),
                6 => Err(OpError::Connection("gone".into())),
                n if n % 3 == 2 => Ok(Some(
                    futures::future::ready(Err(OpError::Timeout("t".into()))).boxed(),
                )),
                _ => Ok(Some(futures::future::ready(Ok(())).boxed())),
            }
        }
    }

    #[tokio::test]
    async fn the_default_send_batch_sends_one_by_one_and_stops_at_a_lost_connection() {
        let mut p = OneByOne(0);
        let mut payloads = vec![Bytes::from_static(b"x"); 9];
        let sent = p.send_batch(&mut payloads).await;
        assert!(payloads.is_empty());
        assert_eq!(sent.taken, 7, "stops after the lost connection");
        let refused: Vec<usize> = sent.refused.iter().map(|(i, _)| *i).collect();
        assert_eq!(refused, [4, 6]);
        let mut confirms: Vec<(usize, usize, bool)> = sent
            .confirms
            .expect("confirms")
            .map(|(i, r)| (i.start, i.len(), r.is_ok()))
            .collect()
            .await;
        confirms.sort_unstable();
        assert_eq!(
            confirms,
            [
                (0, 1, true),
                (1, 1, true),
                (2, 1, false),
                (3, 1, true),
                (5, 1, false)
            ]
        );
    }

    #[test]
    fn refusals_are_definite_and_lost_replies_are_not() {
        let m = || "x".to_string();
        for e in [
            OpError::Nack(m()),
            OpError::Unavailable(m()),
            OpError::Broker(m()),
        ] {
            assert!(e.is_definite(), "{e}");
            assert!(!e.needs_reconnect(), "{e}");
        }
        for e in [
            OpError::Timeout(m()),
            OpError::Connection(m()),
            OpError::Protocol(m()),
        ] {
            assert!(!e.is_definite(), "{e}");
        }
        assert!(OpError::Connection(m()).needs_reconnect());
    }
}
