//! RabbitMQ quorum queues, streams and classic mirrored queues over AMQP 0-9-1 (lapin).
//!
//! - Quorum: durable queues with `x-queue-type=quorum`, replicated on every node.
//! - Stream: `x-queue-type=stream`, consumed over AMQP with `basic.qos` (acks are credit, so
//!   stream consumers always ack, even in "auto" mode: then the consumer acks by itself and hands
//!   out no tokens) and `x-stream-offset`: "first" on a consumer's first open, after the last
//!   offset it handed out when it is reopened (see `offsets.rs`).
//! - Mirrored: classic durable queues mirrored by an `ha-mode` policy set through the
//!   management API before the queues are declared, and deleted at teardown.
//!
//! Each queue is declared through a connection to the node its leader should live on, with the
//! `client-local` leader (master) locator; the management API then confirms where it went.
//! Producers and consumers each own a connection and one channel. They connect to the node the
//! scenario's `connect` placement picks and, if that node refuses, to the next ones in order
//! (as a real client would fail over). Lost connections and closed channels surface as
//! `OpError::Connection` (the harness reopens); a nack moves the producer to a fresh channel
//! (see `RabbitProducer`).
//!
//! Files: `declare.rs` (queue arguments, mirroring policy), `connection.rs` (AMQP connections
//! and channels, node fallback, URI helpers), `management.rs` (management API calls: placement,
//! leaders, deletion), `producer.rs` and `consumer.rs` (the `Producer` and `Consumer` impls),
//! `offsets.rs` (where stream consumers start), `backlog.rs` (what the broker still holds for
//! the consumers) with `stream_ends.rs` (a stream's first and last offsets, over the stream
//! protocol).

mod backlog;
mod connection;
mod consumer;
mod declare;
mod management;
mod offsets;
mod producer;
pub mod settings;
mod stream_ends;

pub use connection::uri_address;
pub use consumer::plan_acks;
pub use declare::{declare_arguments, ha_policy, policy_name, policy_pattern};

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};

use lapin::options::QueueDeclareOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection};
use parking_lot::Mutex;

use super::*;
use crate::cluster::rabbitmq::http::MgmtClient;
use crate::cluster::rabbitmq::mgmt_nodes::MgmtNodes;
use crate::cluster::version::BrokerVersion;
use crate::scenario::RabbitSettings;
use backlog::ConsumerGauges;
pub use connection::DEFAULT_HEARTBEAT_S;
use connection::{close_connection, redact};
use offsets::StreamOffsets;

/// Which kind of RabbitMQ queue a backend uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Quorum,
    Stream,
    Mirrored,
}

impl QueueKind {
    /// The backend type name used in scenario files and results.
    pub fn type_name(&self) -> &'static str {
        match self {
            QueueKind::Quorum => "rabbitmq-quorum",
            QueueKind::Stream => "rabbitmq-stream",
            QueueKind::Mirrored => "rabbitmq-mirrored",
        }
    }

    /// Whether RabbitMQ `version` has this kind of queue: Err(why not, and what to do).
    pub fn supported_on(&self, version: &BrokerVersion) -> Result<(), String> {
        match self {
            // Mirroring by `ha-*` policies was deprecated in 3.9 and removed in 4.0: a classic
            // queue of 4.x has a single copy.
            QueueKind::Mirrored if version.major >= 4 => Err(format!(
                "RabbitMQ {version} has no classic mirrored queues (RabbitMQ 4.0 removed \
                 mirroring by ha-* policies); run {} on a RabbitMQ 3.x cluster, or use \
                 rabbitmq-quorum, the replicated queue of 4.x",
                self.type_name()
            )),
            QueueKind::Quorum | QueueKind::Stream | QueueKind::Mirrored => Ok(()),
        }
    }

    /// The `x-queue-type` argument.
    pub fn queue_type(&self) -> &'static str {
        match self {
            QueueKind::Quorum => "quorum",
            QueueKind::Stream => "stream",
            QueueKind::Mirrored => "classic",
        }
    }
}

/// One broker node as the backend reaches it.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    uri: AMQPUri,
    address: String,
}

/// The three RabbitMQ backends (the queue kind selects which).
pub struct RabbitBackend {
    kind: QueueKind,
    settings: RabbitSettings,
    label: String,
    nodes: Vec<Node>,
    vhost: String,
    /// Destination name -> 0-based index of the node leading it (as last seen).
    leaders: Mutex<HashMap<String, usize>>,
    /// Destination name -> mirroring policy that covers it (mirrored only).
    policies: Mutex<HashMap<String, String>>,
    /// The nodes' management APIs.
    mgmt: MgmtNodes,
    /// Streams only: where each consumer left off, for its next open.
    stream_offsets: StreamOffsets,
    /// What the open consumers of each queue hold unacked (for `backlog`).
    consumer_gauges: ConsumerGauges,
}

impl RabbitBackend {
    /// Check the endpoints and reach the cluster (management API and AMQP).
    pub async fn connect(
        kind: QueueKind,
        settings: &RabbitSettings,
        endpoints: &[RabbitEndpoint],
    ) -> Result<Self, BackendError> {
        let label = settings
            .label
            .clone()
            .unwrap_or_else(|| kind.type_name().to_string());
        let connect_err = |target: &str, message: String| BackendError::Connect {
            backend: label.clone(),
            target: target.to_string(),
            message,
        };
        if endpoints.is_empty() {
            return Err(connect_err(
                "rabbitmq",
                "no RabbitMQ endpoints were given (the cluster section lists no nodes)".into(),
            ));
        }
        let mut nodes = Vec::with_capacity(endpoints.len());
        let mut mgmt = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            let mut uri: AMQPUri = ep.amqp_uri.parse().map_err(|e: String| {
                connect_err(
                    &ep.node,
                    format!("AMQP URI {:?} is invalid: {e}", redact(&ep.amqp_uri)),
                )
            })?;
            if uri.query.heartbeat.is_none() {
                uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_S);
            }
            let address = uri_address(&uri);
            nodes.push(Node {
                name: ep.node.clone(),
                uri,
                address,
            });
            mgmt.push(MgmtClient::new(&ep.http, &ep.credentials()));
        }
        if matches!(kind, QueueKind::Mirrored) {
            ha_policy(settings, nodes.len()).map_err(|m| BackendError::Setup {
                backend: label.clone(),
                action: "check the mirroring settings".into(),
                message: m,
            })?;
        }
        if matches!(kind, QueueKind::Stream) && settings.prefetch == 0 {
            return Err(BackendError::Setup {
                backend: label.clone(),
                action: "check the consumer settings".into(),
                message:
                    "stream consumers need a prefetch above 0 (basic.qos is required for streams)"
                        .into(),
            });
        }
        let vhost = nodes[0].uri.vhost.clone();
        let backend = RabbitBackend {
            kind,
            settings: settings.clone(),
            label: label.clone(),
            nodes,
            vhost,
            leaders: Mutex::new(HashMap::new()),
            policies: Mutex::new(HashMap::new()),
            mgmt: MgmtNodes::new(mgmt),
            stream_offsets: StreamOffsets::default(),
            consumer_gauges: ConsumerGauges::default(),
        };
        // The management API must answer (setup and topology depend on it) ...
        backend
            .mgmt
            .call(|c| async move { c.running_nodes().await })
            .await
            .map_err(|m| connect_err("the management API", m))?;
        // ... and AMQP must accept our credentials on at least one node.
        let (conn, _channel, _) = backend
            .open_channel(0, true, "connection check")
            .await
            .map_err(|e| connect_err("AMQP", e.to_string()))?;
        close_connection(&conn).await;
        Ok(backend)
    }

    fn setup_err(&self, action: impl Into<String>, message: impl Into<String>) -> BackendError {
        BackendError::Setup {
            backend: self.label.clone(),
            action: action.into(),
            message: message.into(),
        }
    }

    fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

#[async_trait]
impl Backend for RabbitBackend {
    fn label(&self) -> &str {
        &self.label
    }

    fn confirms(&self) -> bool {
        self.settings.confirms
    }

    async fn setup(&self, prefix: &str, count: usize) -> Result<Vec<Destination>, BackendError> {
        let n = self.nodes.len();
        let dests: Vec<Destination> = (0..count)
            .map(|i| Destination {
                index: i,
                name: format!("{prefix}-{i}"),
            })
            .collect();
        for d in &dests {
            self.delete_queue(&d.name)
                .await
                .map_err(|m| self.setup_err(format!("delete leftover queue {}", d.name), m))?;
            self.stream_offsets.forget(&d.name);
            self.consumer_gauges.forget(&d.name);
        }
        // Quorum queues get a member on every running node, and mirrors only go to running
        // nodes: setup waits until the management API shows them. A stream's members only show
        // in the management statistics, 5-10 s after the declaration: there the leader (known
        // at once) suffices and `topology` reports the members once they are known.
        let running = self
            .mgmt
            .call(|c| async move { c.running_nodes().await })
            .await
            .map_err(|m| self.setup_err("list the running nodes", m))?;
        let mut copies = if self.kind == QueueKind::Stream {
            1
        } else {
            running.len().max(1)
        };
        if self.kind == QueueKind::Mirrored {
            let (definition, want) = ha_policy(&self.settings, n)
                .map_err(|m| self.setup_err("check the mirroring settings", m))?;
            copies = copies.min(want);
            let name = policy_name(prefix);
            let pattern = policy_pattern(prefix);
            let vhost = self.vhost.clone();
            self.mgmt
                .call(|c| {
                    let (vhost, name, pattern, definition) = (
                        vhost.clone(),
                        name.clone(),
                        pattern.clone(),
                        definition.clone(),
                    );
                    async move {
                        c.set_policy(&vhost, &name, &pattern, "queues", definition)
                            .await
                    }
                })
                .await
                .map_err(|m| {
                    self.setup_err(format!("set mirroring policy {name} ({pattern})"), m)
                })?;
            let mut policies = self.policies.lock();
            for d in &dests {
                policies.insert(d.name.clone(), name.clone());
            }
        }
        // Declare each queue through its leader's node (one connection per node).
        let mut channels: HashMap<usize, (Connection, Channel)> = HashMap::new();
        let result = async {
            for d in &dests {
                let node = self.settings.leader.node_for(d.index, n, 0);
                let node_name = &self.nodes[node].name;
                let channel = match channels.entry(node) {
                    Entry::Occupied(e) => &e.into_mut().1,
                    Entry::Vacant(v) => {
                        let (conn, channel, _) =
                            self.open_channel(node, false, "setup").await.map_err(|e| {
                                self.setup_err(
                                    format!("connect to {node_name} to declare queue {}", d.name),
                                    e.to_string(),
                                )
                            })?;
                        &v.insert((conn, channel)).1
                    }
                };
                let options = QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel
                    .queue_declare(
                        d.name.as_str().into(),
                        options,
                        declare_arguments(self.kind),
                    )
                    .await
                    .map_err(|e| {
                        self.setup_err(
                            format!(
                                "declare {} queue {} on {node_name}",
                                self.kind.queue_type(),
                                d.name
                            ),
                            e.to_string(),
                        )
                    })?;
            }
            Ok::<(), BackendError>(())
        }
        .await;
        for (conn, _) in channels.values() {
            close_connection(conn).await;
        }
        result?;
        // Wait for all placements at once: they appear together, at the next statistics tick.
        let waits = dests.iter().map(|d| {
            self.await_placement(
                &d.name,
                self.settings.leader.node_for(d.index, n, 0),
                copies,
            )
        });
        let leaders = futures::future::join_all(waits).await;
        for (d, leader) in dests.iter().zip(leaders) {
            self.leaders.lock().insert(d.name.clone(), leader?);
        }
        Ok(dests)
    }

    async fn teardown(&self, destinations: &[Destination]) -> Result<(), BackendError> {
        let mut errors = Vec::new();
        for d in destinations {
            if let Err(e) = self.delete_queue(&d.name).await {
                errors.push(format!("delete queue {}: {e}", d.name));
            }
            self.leaders.lock().remove(&d.name);
            self.stream_offsets.forget(&d.name);
            self.consumer_gauges.forget(&d.name);
        }
        let policies: BTreeSet<String> = {
            let mut map = self.policies.lock();
            destinations
                .iter()
                .filter_map(|d| map.remove(&d.name))
                .collect()
        };
        for name in policies {
            let vhost = self.vhost.clone();
            let res = self
                .mgmt
                .call(|c| {
                    let (vhost, name) = (vhost.clone(), name.clone());
                    async move { c.delete_policy(&vhost, &name).await }
                })
                .await;
            if let Err(e) = res {
                errors.push(format!("delete policy {name}: {e}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(self.setup_err("teardown", errors.join("; ")))
        }
    }

    async fn producer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Producer>, OpError> {
        self.open_producer(dest, index).await
    }

    async fn consumer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Consumer>, OpError> {
        self.open_consumer(dest, index).await
    }

    async fn topology(&self, destinations: &[Destination]) -> Result<Topology, BackendError> {
        let nodes = self
            .nodes
            .iter()
            .map(|n| NodeView {
                name: n.name.clone(),
                address: n.address.clone(),
                role: "node".into(),
            })
            .collect();
        // Every queue's placement in one call: while a node is unreachable (cut off, frozen)
        // each management call may take seconds, and the fault runner gives a topology 5 s.
        let listed = self
            .placements()
            .await
            .map_err(|m| self.setup_err("read the queues' placement".to_string(), m))?;
        let mut placements = Vec::with_capacity(destinations.len());
        for d in destinations {
            let Some(p) = listed.iter().find(|(n, _)| *n == d.name).map(|(_, p)| p) else {
                return Err(self.setup_err(
                    format!("read the placement of queue {}", d.name),
                    "the management API does not list it".to_string(),
                ));
            };
            if let Some(idx) = self.node_index(&p.leader) {
                self.leaders.lock().insert(d.name.clone(), idx);
            }
            let leader = (!p.leader.is_empty()).then(|| p.leader.clone());
            let replicas = p
                .members
                .iter()
                .filter(|m| **m != p.leader)
                .cloned()
                .collect();
            placements.push(DestinationPlacement {
                name: d.name.clone(),
                leader,
                replicas,
                slot: None,
            });
        }
        Ok(Topology {
            nodes,
            destinations: placements,
        })
    }

    async fn version(&self) -> Option<String> {
        self.mgmt
            .call(|c| async move { c.version().await })
            .await
            .ok()
    }

    /// Queues: ready from a passive `queue.declare`, unacked from the harness's own consumers;
    /// streams: entries after the offset the consumers reached (see `backlog.rs` for why these
    /// sources are exact, and when).
    async fn backlog(&self, destinations: &[Destination]) -> Result<Option<Backlog>, BackendError> {
        match self.kind {
            QueueKind::Stream => self.stream_backlog(destinations).await,
            QueueKind::Quorum | QueueKind::Mirrored => {
                self.queue_backlog(destinations).await.map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_kind_names() {
        assert_eq!(QueueKind::Stream.type_name(), "rabbitmq-stream");
    }
}
