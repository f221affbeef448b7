//! The backend contract: a thin driver that only moves bytes (as in OpenMessaging Benchmark).
//!
//! The harness does all timing and accounting. A backend declares destinations, opens
//! producers (whose `send` hands a message to the client and returns a future for the broker's
//! confirm), opens consumers (which yield deliveries with an ack token) and describes its
//! topology. Killing and restarting nodes belongs to the cluster launcher (`crate::cluster`).

pub mod memory;
pub mod rabbitmq;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::scenario::BackendSpec;

/// A future that resolves when the broker confirms one message.
pub type ConfirmFuture = BoxFuture<'static, Result<(), OpError>>;

/// A future that resolves when the broker has answered for every message of one batch: one
/// outcome per message, in the order they were given (see `Producer::send_batch`).
pub type BatchConfirmFuture = BoxFuture<'static, Vec<Result<(), OpError>>>;

/// What `Producer::send_batch` did with a batch.
pub enum BatchSent {
    /// The messages were handed over; the future gives each one's outcome.
    Confirms(BatchConfirmFuture),
    /// This backend runs without confirms: the outcome of handing each message to the client
    /// (`Ok`: written, all the producer learns).
    Handed(Vec<Result<(), OpError>>),
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
    /// Hand the messages of `payloads` (drained, so the caller can reuse the vector) to the
    /// client in order, with one future for the whole batch instead of one per message: for a
    /// load loop that wants no per-message future, channel or timer. The outcomes keep `send`'s
    /// meaning. When handing one over fails with an error that needs the producer reopened,
    /// the messages after it in the batch are not handed over and get that error too (not
    /// definite: counted like it). The default sends each message with `send`.
    async fn send_batch(&mut self, payloads: &mut Vec<Bytes>) -> BatchSent {
        let mut confirms: Vec<Option<ConfirmFuture>> = Vec::with_capacity(payloads.len());
        let mut outcomes: Vec<Result<(), OpError>> = Vec::with_capacity(payloads.len());
        let mut broken: Option<OpError> = None;
        for p in payloads.drain(..) {
            if let Some(e) = &broken {
                outcomes.push(Err(e.clone()));
                confirms.push(None);
                continue;
            }
            match self.send(p).await {
                Ok(c) => {
                    outcomes.push(Ok(()));
                    confirms.push(c);
                }
                Err(e) => {
                    outcomes.push(Err(e.clone()));
                    confirms.push(None);
                    broken = e.needs_reconnect().then_some(e);
                }
            }
        }
        if confirms.iter().all(Option::is_none) {
            return BatchSent::Handed(outcomes);
        }
        BatchSent::Confirms(Box::pin(async move {
            for (outcome, confirm) in outcomes.iter_mut().zip(confirms) {
                if let Some(c) = confirm {
                    *outcome = c.await;
                }
            }
            outcomes
        }))
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
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Redis Cluster seed nodes, `host:port`.
    pub redis: Vec<String>,
    /// RabbitMQ nodes, in node order.
    pub rabbitmq: Vec<RabbitEndpoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RabbitEndpoint {
    /// Erlang node name, e.g. `rabbit1@localhost`.
    pub node: String,
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`
    pub amqp_uri: String,
    /// Management API base, e.g. `127.0.0.1:15672`.
    pub http: String,
}

/// The registry: build the backend a scenario entry names.
pub async fn build(
    spec: &BackendSpec,
    endpoints: &Endpoints,
) -> Result<Arc<dyn Backend>, BackendError> {
    match spec {
        BackendSpec::RedisStreams(s) => Ok(Arc::new(
            redis::RedisStreams::connect(s, &endpoints.redis).await?,
        )),
        BackendSpec::RabbitmqQuorum(s) => Ok(Arc::new(
            rabbitmq::RabbitBackend::connect(rabbitmq::QueueKind::Quorum, s, &endpoints.rabbitmq)
                .await?,
        )),
        BackendSpec::RabbitmqStream(s) => Ok(Arc::new(
            rabbitmq::RabbitBackend::connect(rabbitmq::QueueKind::Stream, s, &endpoints.rabbitmq)
                .await?,
        )),
        BackendSpec::RabbitmqMirrored(s) => Ok(Arc::new(
            rabbitmq::RabbitBackend::connect(rabbitmq::QueueKind::Mirrored, s, &endpoints.rabbitmq)
                .await?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
