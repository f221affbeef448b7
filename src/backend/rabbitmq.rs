//! RabbitMQ quorum queues, streams and classic mirrored queues over AMQP 0-9-1 (lapin).
//!
//! - Quorum: durable queues with `x-queue-type=quorum`, replicated on every node.
//! - Stream: `x-queue-type=stream`, consumed over AMQP with `x-stream-offset=first` and
//!   `basic.qos` (acks are credit, so stream consumers always ack, even in "auto" mode: then the
//!   consumer acks by itself and hands out no tokens).
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

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use parking_lot::Mutex;

use super::*;
use crate::cluster::rabbitmq_http::{HttpError, MgmtClient, QueuePlacement};
use crate::scenario::{AckMode, Placement, PlacementName, RabbitSettings};

/// How long one AMQP connection attempt (TCP + handshake + channel) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one management API call may take before the next node is asked.
const MGMT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `setup` waits for the management API to report a queue's leader (and mirrors).
const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(20);
/// AMQP heartbeat (seconds) when the endpoint's URI does not ask for one: a frozen node is
/// noticed after about two of these.
const DEFAULT_HEARTBEAT_S: u16 = 5;
/// How long `poll` waits for the first delivery.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// At most this many deliveries per `poll`.
const POLL_MAX: usize = 1000;
/// How long a graceful close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

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

    /// The `x-queue-type` argument.
    pub fn queue_type(&self) -> &'static str {
        match self {
            QueueKind::Quorum => "quorum",
            QueueKind::Stream => "stream",
            QueueKind::Mirrored => "classic",
        }
    }
}

/// The arguments of `queue.declare` for a queue of `kind` whose leader goes to the declaring
/// node.
pub fn declare_arguments(kind: QueueKind) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        long_string(kind.queue_type()),
    );
    match kind {
        QueueKind::Quorum | QueueKind::Stream => {
            args.insert(
                ShortString::from("x-queue-leader-locator"),
                long_string("client-local"),
            );
        }
        QueueKind::Mirrored => {
            args.insert(
                ShortString::from("x-queue-master-locator"),
                long_string("client-local"),
            );
        }
    }
    args
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The mirroring policy of a mirrored backend: (definition, number of copies expected on a
/// cluster of `nodes`). Errors name the offending setting.
pub fn ha_policy(
    settings: &RabbitSettings,
    nodes: usize,
) -> Result<(serde_json::Value, usize), String> {
    let mode = settings.ha_mode.as_deref().unwrap_or("all");
    let sync = settings.ha_sync_mode.as_deref().unwrap_or("automatic");
    if sync != "automatic" && sync != "manual" {
        return Err(format!(
            "ha_sync_mode must be \"automatic\" or \"manual\", got \"{sync}\""
        ));
    }
    let mut def = serde_json::Map::new();
    def.insert("ha-mode".into(), serde_json::Value::from(mode));
    def.insert("ha-sync-mode".into(), serde_json::Value::from(sync));
    let copies = match mode {
        "all" => nodes,
        "exactly" => {
            let n = settings.ha_params.ok_or_else(|| {
                "ha_mode \"exactly\" needs ha_params (the number of copies)".to_string()
            })?;
            if n == 0 {
                return Err("ha_params must be at least 1".to_string());
            }
            def.insert("ha-params".into(), serde_json::Value::from(n));
            (n as usize).min(nodes)
        }
        other => {
            return Err(format!(
                "ha_mode must be \"all\" or \"exactly\", got \"{other}\""
            ))
        }
    };
    Ok((serde_json::Value::Object(def), copies))
}

/// The policy name for the queues of one `setup(prefix, ..)`.
pub fn policy_name(prefix: &str) -> String {
    format!("brokerbench-ha-{prefix}")
}

/// A policy pattern (regular expression) that matches exactly the queues `<prefix>-<i>`.
pub fn policy_pattern(prefix: &str) -> String {
    let mut p = String::from("^");
    for c in prefix.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str("-[0-9]+$");
    p
}

/// `host:port` of an AMQP URI (without the credentials).
pub fn uri_address(uri: &AMQPUri) -> String {
    format!("{}:{}", uri.authority.host, uri.authority.port)
}

/// Plan the `basic.ack`s for `tags` on a channel whose delivered-but-unacked tags are
/// `outstanding`. Returns (delivery tag, multiple) pairs. The longest run at the start of
/// `outstanding` that is entirely being acked goes in one `multiple=true` ack on its highest
/// tag; every other tag gets its own ack. Tags that are not outstanding (unknown or already
/// acked) are skipped: acking them would make the broker close the channel.
pub fn plan_acks(outstanding: &BTreeSet<u64>, tags: &[u64]) -> Vec<(u64, bool)> {
    let want: BTreeSet<u64> = tags
        .iter()
        .copied()
        .filter(|t| outstanding.contains(t))
        .collect();
    let mut plan = Vec::new();
    let mut prefix_end = None;
    let mut prefix_len = 0usize;
    for t in outstanding {
        if want.contains(t) {
            prefix_end = Some(*t);
            prefix_len += 1;
        } else {
            break;
        }
    }
    if let Some(end) = prefix_end {
        plan.push((end, prefix_len > 1));
    }
    plan.extend(
        want.iter()
            .filter(|t| prefix_end.is_none_or(|end| **t > end))
            .map(|t| (*t, false)),
    );
    plan
}

/// One broker node as the backend reaches it.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    uri: AMQPUri,
    address: String,
    mgmt: MgmtClient,
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
    /// The node whose management API answered last (asked first next time).
    mgmt_preferred: AtomicUsize,
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
                mgmt: MgmtClient::new(&ep.http),
            });
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
            mgmt_preferred: AtomicUsize::new(0),
        };
        // The management API must answer (setup and topology depend on it) ...
        backend
            .mgmt(|c| async move { c.running_nodes().await })
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

    /// Run one management API call on the preferred node, then the others in order, each within
    /// `MGMT_TIMEOUT`. Returns the first success, or every node's error.
    async fn mgmt<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: Fn(MgmtClient) -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let n = self.nodes.len();
        let first = self.mgmt_preferred.load(Ordering::Relaxed) % n.max(1);
        let mut errors = Vec::new();
        for k in 0..n {
            let idx = (first + k) % n;
            let client = self.nodes[idx].mgmt.clone();
            match tokio::time::timeout(MGMT_TIMEOUT, call(client)).await {
                Ok(Ok(v)) => {
                    self.mgmt_preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                // The API refused the request: another node would say the same.
                Ok(Err(
                    e @ HttpError::Status {
                        status: 400..=499, ..
                    },
                )) => return Err(e.to_string()),
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push(format!(
                    "management API at {}: no answer within {MGMT_TIMEOUT:?}",
                    self.nodes[idx].mgmt.addr()
                )),
            }
        }
        Err(errors.join("; "))
    }

    async fn placement(&self, queue: &str) -> Result<QueuePlacement, String> {
        let vhost = self.vhost.clone();
        let queue_owned = queue.to_string();
        self.mgmt(move |c| {
            let (vhost, queue) = (vhost.clone(), queue_owned.clone());
            async move { c.queue_placement(&vhost, &queue).await }
        })
        .await
    }

    fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The 0-based index of the node leading `dest`: asked from the management API when
    /// connections follow the leader (it moves on failover), else as remembered from setup.
    async fn leader_of(&self, dest: &Destination) -> usize {
        let remembered = self.leaders.lock().get(&dest.name).copied();
        if self.settings.connect == Placement::Named(PlacementName::Leader) {
            if let Ok(p) = self.placement(&dest.name).await {
                if let Some(idx) = self.node_index(&p.leader) {
                    self.leaders.lock().insert(dest.name.clone(), idx);
                    return idx;
                }
            }
        }
        remembered.unwrap_or(0)
    }

    /// Open a connection and a channel to node `preferred`, or (unless `exact`) to the next
    /// nodes in order if it refuses. Returns the node index actually used.
    async fn open_channel(
        &self,
        preferred: usize,
        fallback: bool,
        purpose: &str,
    ) -> Result<(Connection, Channel, usize), OpError> {
        let n = self.nodes.len();
        let tries = if fallback { n } else { 1 };
        let mut errors = Vec::new();
        for k in 0..tries {
            let idx = (preferred + k) % n;
            let node = &self.nodes[idx];
            match self.open_on(node, purpose).await {
                Ok((conn, channel)) => return Ok((conn, channel, idx)),
                Err(e) => errors.push(format!("{} ({}): {e}", node.name, node.address)),
            }
        }
        Err(OpError::Connection(format!(
            "{}: cannot open a connection for {purpose}: {}",
            self.label,
            errors.join("; ")
        )))
    }

    async fn open_on(&self, node: &Node, purpose: &str) -> Result<(Connection, Channel), String> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|e| format!("no tokio runtime: {e}"))?;
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::default().with_handle(handle))
            .with_reactor(tokio_reactor_trait::Tokio)
            .with_connection_name(LongString::from(format!(
                "brokerbench {} {purpose}",
                self.label
            )));
        let attempt = async {
            let conn = Connection::connect_uri(node.uri.clone(), props)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            match conn.create_channel().await {
                Ok(channel) => Ok((conn, channel)),
                Err(e) => {
                    close_connection(&conn).await;
                    Err(format!("open channel: {e}"))
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| format!("no AMQP handshake within {CONNECT_TIMEOUT:?}"))?
    }

    /// Wait until the management API knows the queue's leader and `copies` members, and check
    /// the leader is on `expected`. If the members stay incomplete, the known leader suffices.
    async fn await_placement(
        &self,
        queue: &str,
        expected: usize,
        copies: usize,
    ) -> Result<usize, BackendError> {
        let start = Instant::now();
        let action = || format!("check the placement of queue {queue}");
        loop {
            let (leader, last) = match self.placement(queue).await {
                Ok(p) if !p.leader.is_empty() => {
                    let complete = p.members.len() >= copies;
                    (
                        Some(p.leader.clone())
                            .filter(|_| complete || start.elapsed() > PLACEMENT_TIMEOUT),
                        format!("{p:?}"),
                    )
                }
                Ok(p) => (None, format!("{p:?}")),
                Err(e) => (None, e),
            };
            if let Some(leader) = leader {
                let Some(idx) = self.node_index(&leader) else {
                    return Err(self.setup_err(
                        action(),
                        format!(
                            "its leader {leader} is not one of the endpoints' nodes ({}); the endpoints' node names must match the cluster's",
                            self.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                if idx != expected {
                    return Err(self.setup_err(
                        action(),
                        format!(
                            "it was declared on {} with the client-local leader locator, but its leader is {leader}",
                            self.nodes[expected].name
                        ),
                    ));
                }
                return Ok(idx);
            }
            if start.elapsed() > PLACEMENT_TIMEOUT {
                return Err(self.setup_err(
                    format!("wait for the leader of queue {queue}"),
                    format!("not known after {PLACEMENT_TIMEOUT:?}; last seen: {last}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), String> {
        let vhost = self.vhost.clone();
        let queue_owned = queue.to_string();
        self.mgmt(move |c| {
            let (vhost, queue) = (vhost.clone(), queue_owned.clone());
            async move { c.delete_queue(&vhost, &queue).await }
        })
        .await
    }
}

/// Close a connection gracefully, without waiting long.
async fn close_connection(conn: &Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, "brokerbench done")).await;
}

/// The URI without its password, for messages.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &uri[..s], &uri[at + 1..]),
        _ => uri.to_string(),
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
        }
        // Quorum queues get a member on every running node, and mirrors only go to running
        // nodes: setup waits until the management API shows them. A stream's members only show
        // in the management statistics, 5-10 s after the declaration: there the leader (known
        // at once) suffices and `topology` reports the members once they are known.
        let running = self
            .mgmt(|c| async move { c.running_nodes().await })
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
            self.mgmt(|c| {
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
            .map_err(|m| self.setup_err(format!("set mirroring policy {name} ({pattern})"), m))?;
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
                    .queue_declare(&d.name, options, declare_arguments(self.kind))
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
                .mgmt(|c| {
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
        let leader = self.leader_of(dest).await;
        let target = self
            .settings
            .connect
            .node_for(index, self.nodes.len(), leader);
        let purpose = format!("producer {index} on {}", dest.name);
        let (conn, channel, node) = self.open_channel(target, true, &purpose).await?;
        let node = self.nodes[node].name.clone();
        let context = format!(
            "{}: producer {index} on queue {} via {node}",
            self.label, dest.name
        );
        if let Err(e) = publish_channel(&channel, self.settings.confirms, &context).await {
            close_connection(&conn).await;
            return Err(e);
        }
        Ok(Box::new(RabbitProducer {
            conn,
            channel,
            generation: 0,
            nacked: Arc::new(AtomicU64::new(0)),
            retired: VecDeque::new(),
            queue: dest.name.clone(),
            confirms: self.settings.confirms,
            properties: BasicProperties::default()
                .with_delivery_mode(if self.settings.persistent { 2 } else { 1 }),
            context,
        }))
    }

    async fn consumer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Consumer>, OpError> {
        let leader = self.leader_of(dest).await;
        let target = self
            .settings
            .connect
            .node_for(index, self.nodes.len(), leader);
        let purpose = format!("consumer {index} on {}", dest.name);
        let (conn, channel, node) = self.open_channel(target, true, &purpose).await?;
        let node = self.nodes[node].name.clone();
        let context = format!(
            "{}: consumer {index} on queue {} via {node}",
            self.label, dest.name
        );
        let auto = self.settings.ack == AckMode::Auto;
        // Streams refuse no-ack consumers: there the consumer acks by itself instead.
        let no_ack = auto && self.kind != QueueKind::Stream;
        let self_ack = auto && self.kind == QueueKind::Stream;
        let mut args = FieldTable::default();
        if self.kind == QueueKind::Stream {
            args.insert(ShortString::from("x-stream-offset"), long_string("first"));
        }
        let opened = async {
            channel
                .basic_qos(self.settings.prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| open_error(&context, "basic.qos", e))?;
            channel
                .basic_consume(
                    &dest.name,
                    &format!("brokerbench-{index}"),
                    BasicConsumeOptions {
                        no_ack,
                        ..Default::default()
                    },
                    args,
                )
                .await
                .map_err(|e| open_error(&context, "basic.consume", e))
        };
        let consumer = match opened.await {
            Ok(c) => c,
            Err(e) => {
                close_connection(&conn).await;
                return Err(e);
            }
        };
        Ok(Box::new(RabbitConsumer {
            conn,
            channel,
            consumer,
            manual: !auto,
            self_ack,
            outstanding: BTreeSet::new(),
            pending_error: None,
            context,
        }))
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
        let mut placements = Vec::with_capacity(destinations.len());
        for d in destinations {
            let p = self.placement(&d.name).await.map_err(|m| {
                self.setup_err(format!("read the placement of queue {}", d.name), m)
            })?;
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
        self.mgmt(|c| async move { c.version().await }).await.ok()
    }
}

/// An error while opening a producer or consumer: a broker refusal (e.g. the queue does not
/// exist) is `Broker`, anything else means the connection is unusable.
fn open_error(context: &str, step: &str, e: lapin::Error) -> OpError {
    match e {
        lapin::Error::ProtocolError(_) => OpError::Broker(format!("{context}: {step}: {e}")),
        _ => OpError::Connection(format!("{context}: {step}: {e}")),
    }
}

/// An error on an open channel: AMQP closes the channel on any error, so the producer or
/// consumer must be reopened.
fn channel_error(context: &str, step: &str, e: lapin::Error) -> OpError {
    OpError::Connection(format!("{context}: {step}: {e}"))
}

/// A producer: one connection, one channel in confirm mode (unless confirms are off).
///
/// RabbitMQ 3.10 can leave a channel that first published to a quorum queue while the queue was
/// electing a new leader nacking every later publish, long after the new leader is up (a fresh
/// channel works at once). So after a nack of a message published on the current channel, the
/// next `send` moves to a new channel on the same connection. The old channel stays open for a
/// while (`RETIRED_KEEP`) so that its outstanding confirms still arrive.
struct RabbitProducer {
    conn: Connection,
    channel: Channel,
    /// Counts the channels this producer has used (0 for the first).
    generation: u64,
    /// `generation + 1` of the newest channel that saw a nack (0: none).
    nacked: Arc<AtomicU64>,
    retired: VecDeque<(Channel, Instant)>,
    queue: String,
    confirms: bool,
    properties: BasicProperties,
    context: String,
}

/// How long a channel replaced after a nack stays open for its outstanding confirms.
const RETIRED_KEEP: Duration = Duration::from_secs(30);
/// At most this many replaced channels stay open.
const RETIRED_MAX: usize = 8;

/// Put a fresh channel in confirm mode (when confirms are on).
async fn publish_channel(channel: &Channel, confirms: bool, context: &str) -> Result<(), OpError> {
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| open_error(context, "confirm.select", e))?;
    }
    Ok(())
}

impl RabbitProducer {
    /// Move to a new channel on the same connection (see the type's documentation).
    async fn rotate_channel(&mut self) -> Result<(), OpError> {
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, self.conn.create_channel())
            .await
            .map_err(|_| {
                OpError::Connection(format!(
                    "{}: no new channel within {CONNECT_TIMEOUT:?}",
                    self.context
                ))
            })?
            .map_err(|e| channel_error(&self.context, "open a new channel after a nack", e))?;
        publish_channel(&channel, self.confirms, &self.context)
            .await
            .map_err(|e| match e {
                OpError::Broker(m) => OpError::Connection(m),
                other => other,
            })?;
        let old = std::mem::replace(&mut self.channel, channel);
        self.retired.push_back((old, Instant::now()));
        self.generation += 1;
        Ok(())
    }

    /// Close replaced channels that have been kept long enough.
    fn prune_retired(&mut self) {
        while let Some((_, since)) = self.retired.front() {
            if since.elapsed() > RETIRED_KEEP || self.retired.len() > RETIRED_MAX {
                // Dropping the last handle closes the channel.
                self.retired.pop_front();
            } else {
                break;
            }
        }
    }
}

#[async_trait]
impl Producer for RabbitProducer {
    async fn send(&mut self, payload: Bytes) -> Result<Option<ConfirmFuture>, OpError> {
        if !self.retired.is_empty() {
            self.prune_retired();
        }
        if self.confirms && self.nacked.load(Ordering::Acquire) == self.generation + 1 {
            self.rotate_channel().await?;
        }
        let confirm = self
            .channel
            .basic_publish(
                "",
                &self.queue,
                BasicPublishOptions::default(),
                &payload,
                self.properties.clone(),
            )
            .await
            .map_err(|e| channel_error(&self.context, "basic.publish", e))?;
        if !self.confirms {
            return Ok(None);
        }
        let context = self.context.clone();
        let nacked = self.nacked.clone();
        let generation = self.generation;
        Ok(Some(Box::pin(async move {
            match confirm.await {
                Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => Ok(()),
                Ok(Confirmation::Nack(_)) => {
                    nacked.fetch_max(generation + 1, Ordering::AcqRel);
                    Err(OpError::Nack(format!(
                        "{context}: the broker nacked the message"
                    )))
                }
                Err(e) => Err(channel_error(&context, "publisher confirm", e)),
            }
        })))
    }

    async fn close(self: Box<Self>) {
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, self.channel.close(200, "brokerbench done")).await;
        close_connection(&self.conn).await;
    }
}

struct RabbitConsumer {
    conn: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    /// The harness acks (tokens are handed out).
    manual: bool,
    /// Auto-ack on a stream: the consumer acks what it hands out by itself.
    self_ack: bool,
    /// Delivered but not yet acked delivery tags (manual mode).
    outstanding: BTreeSet<u64>,
    /// An error seen after some deliveries were already collected: reported by the next poll.
    pending_error: Option<OpError>,
    context: String,
}

impl RabbitConsumer {
    fn take(&mut self, d: lapin::message::Delivery, out: &mut Vec<Delivery>, highest: &mut u64) {
        *highest = (*highest).max(d.delivery_tag);
        let token = if self.manual {
            self.outstanding.insert(d.delivery_tag);
            AckToken::Tag(d.delivery_tag)
        } else {
            AckToken::None
        };
        out.push(Delivery {
            payload: Bytes::from(d.data),
            redelivered: d.redelivered,
            token,
        });
    }

    fn stream_error(&self, e: Option<lapin::Error>) -> OpError {
        match e {
            Some(e) => channel_error(&self.context, "consume", e),
            None => OpError::Connection(format!(
                "{}: the broker cancelled the consumer",
                self.context
            )),
        }
    }
}

#[async_trait]
impl Consumer for RabbitConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let mut highest = 0u64;
        match tokio::time::timeout(POLL_WAIT, self.consumer.next()).await {
            Err(_) => return Ok(()),
            Ok(Some(Ok(d))) => self.take(d, out, &mut highest),
            Ok(Some(Err(e))) => return Err(self.stream_error(Some(e))),
            Ok(None) => return Err(self.stream_error(None)),
        }
        for _ in 1..POLL_MAX {
            match self.consumer.next().now_or_never() {
                Some(Some(Ok(d))) => self.take(d, out, &mut highest),
                Some(Some(Err(e))) => {
                    self.pending_error = Some(self.stream_error(Some(e)));
                    break;
                }
                Some(None) => {
                    self.pending_error = Some(self.stream_error(None));
                    break;
                }
                None => break,
            }
        }
        if self.self_ack && highest > 0 && self.pending_error.is_none() {
            self.channel
                .basic_ack(highest, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| channel_error(&self.context, "basic.ack", e))?;
        }
        Ok(())
    }

    async fn ack(&mut self, tokens: &[AckToken]) -> Result<(), OpError> {
        if !self.manual {
            return Ok(());
        }
        let mut tags = Vec::with_capacity(tokens.len());
        for t in tokens {
            match t {
                AckToken::Tag(tag) => tags.push(*tag),
                AckToken::None => {}
                AckToken::Id(id) => {
                    return Err(OpError::Protocol(format!(
                        "{}: ack token {id:?} is not an AMQP delivery tag",
                        self.context
                    )));
                }
            }
        }
        for (tag, multiple) in plan_acks(&self.outstanding, &tags) {
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple })
                .await
                .map_err(|e| channel_error(&self.context, "basic.ack", e))?;
            if multiple {
                self.outstanding = self.outstanding.split_off(&(tag + 1));
            } else {
                self.outstanding.remove(&tag);
            }
        }
        Ok(())
    }

    async fn close(self: Box<Self>) {
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, self.channel.close(200, "brokerbench done")).await;
        close_connection(&self.conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tags: &[u64]) -> BTreeSet<u64> {
        tags.iter().copied().collect()
    }

    #[test]
    fn contiguous_run_is_one_multiple_ack() {
        let outstanding = set(&[1, 2, 3, 4, 5]);
        assert_eq!(plan_acks(&outstanding, &[3, 1, 2, 4, 5]), vec![(5, true)]);
        assert_eq!(plan_acks(&outstanding, &[1, 2, 3]), vec![(3, true)]);
        assert_eq!(plan_acks(&outstanding, &[1]), vec![(1, false)]);
    }

    #[test]
    fn gaps_are_never_covered_by_a_multiple_ack() {
        let outstanding = set(&[1, 2, 3, 4, 5, 6]);
        // 3 is still being processed: 1..2 in one ack, then 4 and 6 alone.
        assert_eq!(
            plan_acks(&outstanding, &[1, 2, 4, 6]),
            vec![(2, true), (4, false), (6, false)]
        );
        // Nothing from the start: every tag alone.
        assert_eq!(
            plan_acks(&outstanding, &[5, 4]),
            vec![(4, false), (5, false)]
        );
    }

    #[test]
    fn unknown_and_duplicate_tags_are_skipped() {
        let outstanding = set(&[10, 11, 12]);
        assert_eq!(
            plan_acks(&outstanding, &[10, 10, 11, 99, 3]),
            vec![(11, true)]
        );
        assert!(plan_acks(&outstanding, &[1, 2]).is_empty());
        assert!(plan_acks(&BTreeSet::new(), &[1]).is_empty());
        assert!(plan_acks(&outstanding, &[]).is_empty());
    }

    #[test]
    fn policy_pattern_matches_only_this_prefix() {
        assert_eq!(policy_pattern("bb-run1"), "^bb-run1-[0-9]+$");
        assert_eq!(policy_pattern("a.b+c"), "^a\\.b\\+c-[0-9]+$");
        assert_eq!(policy_name("bb-run1"), "brokerbench-ha-bb-run1");
    }

    fn settings(mode: Option<&str>, params: Option<u32>, sync: Option<&str>) -> RabbitSettings {
        let mut s: RabbitSettings = match toml::from_str("") {
            Ok(s) => s,
            Err(e) => panic!("default settings: {e}"),
        };
        s.ha_mode = mode.map(str::to_string);
        s.ha_params = params;
        s.ha_sync_mode = sync.map(str::to_string);
        s
    }

    #[test]
    fn ha_policy_definitions() {
        let (def, copies) = ha_policy(&settings(None, None, None), 3).unwrap();
        assert_eq!(
            def,
            serde_json::json!({"ha-mode": "all", "ha-sync-mode": "automatic"})
        );
        assert_eq!(copies, 3);
        let (def, copies) =
            ha_policy(&settings(Some("exactly"), Some(2), Some("manual")), 3).unwrap();
        assert_eq!(
            def,
            serde_json::json!({"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "manual"})
        );
        assert_eq!(copies, 2);
        assert_eq!(
            ha_policy(&settings(Some("exactly"), Some(5), None), 3)
                .unwrap()
                .1,
            3
        );
        assert!(ha_policy(&settings(Some("exactly"), None, None), 3)
            .unwrap_err()
            .contains("ha_params"));
        assert!(ha_policy(&settings(Some("nodes"), None, None), 3)
            .unwrap_err()
            .contains("ha_mode"));
        assert!(ha_policy(&settings(None, None, Some("eager")), 3)
            .unwrap_err()
            .contains("ha_sync_mode"));
    }

    #[test]
    fn declare_arguments_per_kind() {
        let get = |t: &FieldTable, k: &str| t.inner().get(k).cloned();
        let q = declare_arguments(QueueKind::Quorum);
        assert_eq!(get(&q, "x-queue-type"), Some(long_string("quorum")));
        assert_eq!(
            get(&q, "x-queue-leader-locator"),
            Some(long_string("client-local"))
        );
        let s = declare_arguments(QueueKind::Stream);
        assert_eq!(get(&s, "x-queue-type"), Some(long_string("stream")));
        let m = declare_arguments(QueueKind::Mirrored);
        assert_eq!(get(&m, "x-queue-type"), Some(long_string("classic")));
        assert_eq!(
            get(&m, "x-queue-master-locator"),
            Some(long_string("client-local"))
        );
        assert_eq!(get(&m, "x-queue-leader-locator"), None);
    }

    #[test]
    fn addresses_and_redaction() {
        let uri: AMQPUri = "amqp://guest:secret@127.0.0.1:5720/%2f".parse().unwrap();
        assert_eq!(uri_address(&uri), "127.0.0.1:5720");
        assert_eq!(uri.vhost, "/");
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5720/%2f"),
            "amqp://***@127.0.0.1:5720/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(QueueKind::Stream.type_name(), "rabbitmq-stream");
    }
}
