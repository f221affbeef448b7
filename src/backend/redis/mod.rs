//! Redis Cluster streams: XADD (optionally MAXLEN ~) in pipelines over a direct connection to
//! the stream's master (see `producer.rs` for why), consumer groups with XREADGROUP (COUNT,
//! BLOCK) and XACK over a direct connection too (`consumer.rs`, `node_conn.rs`); both find the
//! master by asking every node CLUSTER NODES with a short limit (`locate.rs`), follow MOVED, and
//! give up on a master that does not reply within the reply timeout (`reply_timeout_ms`).
//! The topology (CLUSTER NODES) is read the same way, from every node at once; redis-rs's
//! cluster client asks INFO and does setup and teardown.
//!
//! Stream keys carry a hash tag chosen so that destination i lands on master i mod masters:
//! the load spreads over the shards the way the proposal intends.
//!
//! Files: this one (the backend, keys and slots), `producer.rs` (the `Producer` impl: XADD
//! pipelines) with `resp.rs` (its wire format), `consumer.rs` (the `Consumer` impl) with
//! `node_conn.rs` (its connection) and `entries.rs` (the parsing of its replies), `locate.rs`
//! (which master serves a slot, without waiting on a frozen node), `lag.rs`
//! (replica lag), `backlog.rs` (what the group has yet to read or ack).

mod backlog;
mod consumer;
mod entries;
mod lag;
mod locate;
mod node_conn;
mod outcome;
mod producer;
mod resp;
pub mod settings;

use std::collections::HashMap;
use std::time::Duration;

use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{ErrorKind, RedisError, ServerErrorKind, Value};
use async_trait::async_trait;

use super::*;
use crate::cluster::redis::RedisNodeStatus;
use crate::scenario::RedisSettings;

/// Consumer group used on every stream.
pub const GROUP: &str = "brokerbench";
/// Field holding the payload in each stream entry.
const FIELD: &str = "p";

pub struct RedisStreams {
    label: String,
    settings: RedisSettings,
    /// Questions to any node (INFO): no retries, so a question during a failover answers (or
    /// fails) at once. CLUSTER NODES goes to every node at once instead (`locator`), so that a
    /// frozen node cannot hold a topology read up.
    conn: ClusterConnection,
    /// Setup and teardown: follows redirects and reconnects (a few short retries), so they work
    /// on a cluster whose slots moved during a fault.
    admin: ClusterConnection,
    /// Direct connections to single nodes, for the replica lag.
    nodes: lag::NodeConnections,
    /// Finds a stream's master for producers and consumers.
    locator: locate::Locator,
}

/// How long opening a connection to one node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Retries of the setup/teardown connection, and its waits between them (ms).
const ADMIN_RETRIES: u32 = 4;
const ADMIN_RETRY_WAIT_MS: (u64, u64) = (20, 500);

/// A direct connection's timeouts for setup commands (CONFIG SET): redis-rs 1.x would otherwise
/// give up on a reply after 500 ms.
fn admin_connection() -> ::redis::AsyncConnectionConfig {
    ::redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
}

/// CRC16/XMODEM, as Redis Cluster uses for key slots.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key, honouring `{hash tags}`.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = key.find('{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.find('}')
            .filter(|&close| close > 0)
            .map(|close| &rest.as_bytes()[..close])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

/// Flagged as failed (or suspected) by the node that answered.
fn is_failed(n: &RedisNodeStatus) -> bool {
    n.flags.split(',').any(|f| f == "fail" || f == "fail?")
}

/// Map a redis-rs error to the kind it is counted under. The kinds keep `OpError::is_definite`
/// true: the refusals below (redirects included: a node answers MOVED or ASK instead of running
/// the command) are definite; timeouts, I/O errors and unreadable replies are not.
pub(crate) fn map_err(e: RedisError) -> OpError {
    let text = e.to_string();
    if e.is_timeout() {
        return OpError::Timeout(text);
    }
    // A refused connection never carried the command: a definite failure.
    if e.is_connection_refusal() {
        return OpError::Unavailable(text);
    }
    if e.is_connection_dropped() || e.is_io_error() {
        return OpError::Connection(text);
    }
    match e.kind() {
        ErrorKind::Server(kind) if refused_by_the_cluster(kind) => OpError::Unavailable(text),
        ErrorKind::ClusterConnectionNotFound => OpError::Unavailable(text),
        // The reply arrived but could not be read or converted: the command may have run.
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => OpError::Protocol(text),
        _ => OpError::Broker(text),
    }
}

/// Error replies by which the cluster refuses a command it did not run because of its own state
/// (a redirect, a slot without a master, a node still loading): counted as `unavailable`.
fn refused_by_the_cluster(kind: ServerErrorKind) -> bool {
    matches!(
        kind,
        ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::BusyLoading
    )
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// Ask any node, over `conn`, one question whose answer is text; `what` names it.
async fn ask_any_node(
    conn: &ClusterConnection,
    what: &str,
    cmd: &::redis::Cmd,
) -> Result<String, OpError> {
    let v = conn
        .clone()
        .route_command(
            cmd.clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
        .map_err(map_err)?;
    as_text(&v).ok_or_else(|| OpError::Protocol(format!("{what} answered {v:?}")))
}

impl RedisStreams {
    pub async fn connect(settings: &RedisSettings, seeds: &[String]) -> Result<Self, BackendError> {
        let label = settings
            .label
            .clone()
            .unwrap_or_else(|| "redis-streams".to_string());
        let fail = |message: String| BackendError::Connect {
            backend: label.clone(),
            target: seeds.join(","),
            message,
        };
        if seeds.is_empty() {
            return Err(fail(
                "no seed nodes (clusters.redis.nodes is empty and no local cluster was started)"
                    .into(),
            ));
        }
        let client = Self::client(settings, seeds, settings.client_retries)
            .map_err(|e| fail(e.to_string()))?;
        let admin_client =
            Self::client(settings, seeds, ADMIN_RETRIES).map_err(|e| fail(e.to_string()))?;
        let open = |c: ClusterClient| async move {
            tokio::time::timeout(Duration::from_secs(10), c.get_async_connection())
                .await
                .map_err(|_| "no answer within 10s".to_string())?
                .map_err(|e| e.to_string())
        };
        let conn = open(client).await.map_err(&fail)?;
        let admin = open(admin_client).await.map_err(&fail)?;
        let question_timeout =
            locate::QUESTION_TIMEOUT.min(Duration::from_millis(settings.reply_timeout_ms));
        Ok(RedisStreams {
            label,
            settings: settings.clone(),
            conn,
            admin,
            nodes: lag::NodeConnections::default(),
            locator: locate::Locator::new(seeds, question_timeout),
        })
    }

    fn client(
        settings: &RedisSettings,
        seeds: &[String],
        retries: u32,
    ) -> Result<ClusterClient, RedisError> {
        let urls: Vec<String> = seeds.iter().map(|s| format!("redis://{s}/")).collect();
        ClusterClient::builder(urls)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(Duration::from_millis(
                settings.block_ms + settings.wait_timeout_ms + 5_000,
            ))
            // client_retries 0 (the default): a failed command surfaces at once; a MOVED reply
            // or a lost connection still makes the client refresh its slot map or reconnect.
            .retries(retries)
            .min_retry_wait(ADMIN_RETRY_WAIT_MS.0)
            .max_retry_wait(ADMIN_RETRY_WAIT_MS.1)
            .build()
    }

    /// Ask any node one question whose answer is text (CLUSTER NODES, INFO); `what` names it.
    async fn ask_any_node(&self, what: &str, cmd: &::redis::Cmd) -> Result<String, OpError> {
        ask_any_node(&self.conn, what, cmd).await
    }

    /// The cluster's nodes, as the best-informed node that answers in time sees them.
    async fn cluster_nodes(&self) -> Result<Vec<RedisNodeStatus>, OpError> {
        let view = self.locator.freshest_view().await?;
        Ok(view.into_iter().map(|l| l.status).collect())
    }

    /// Masters that own slots, sorted by address (so master 0 is the lowest port).
    async fn masters(&self) -> Result<Vec<RedisNodeStatus>, OpError> {
        let mut masters: Vec<RedisNodeStatus> = self
            .cluster_nodes()
            .await?
            .into_iter()
            .filter(|n| n.is_master() && !is_failed(n) && !n.slot_ranges().is_empty())
            .collect();
        masters.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(masters)
    }

    fn setup_err(&self, action: &str, e: impl std::fmt::Display) -> BackendError {
        BackendError::Setup {
            backend: self.label.clone(),
            action: action.to_string(),
            message: e.to_string(),
        }
    }

    /// CONFIG SET on every node of the cluster (persistence settings of this backend).
    async fn config_set_everywhere(&self, key: &str, value: &str) -> Result<(), BackendError> {
        let nodes = self
            .cluster_nodes()
            .await
            .map_err(|e| self.setup_err("CLUSTER NODES", e))?;
        for n in nodes.iter().filter(|n| !is_failed(n)) {
            let client = ::redis::Client::open(format!("redis://{}/", n.address))
                .map_err(|e| self.setup_err(&format!("connect {}", n.address), e))?;
            let mut c = tokio::time::timeout(
                Duration::from_secs(5),
                client.get_multiplexed_async_connection_with_config(&admin_connection()),
            )
            .await
            .map_err(|_| self.setup_err(&format!("connect {}", n.address), "no answer within 5s"))?
            .map_err(|e| self.setup_err(&format!("connect {}", n.address), e))?;
            let _: () = ::redis::cmd("CONFIG")
                .arg("SET")
                .arg(key)
                .arg(value)
                .query_async(&mut c)
                .await
                .map_err(|e| {
                    self.setup_err(&format!("CONFIG SET {key} {value} on {}", n.address), e)
                })?;
        }
        Ok(())
    }
}

impl RedisStreams {
    /// Use an existing stream (creating it and the consumer group if missing), without deleting
    /// anything: for `brokerbench produce` / `consume`.
    pub async fn attach_stream(&self, key: &str) -> Result<Destination, BackendError> {
        let mut conn = self.admin.clone();
        let r: ::redis::RedisResult<()> = ::redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match r {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(self.setup_err(&format!("XGROUP CREATE {key}"), e)),
        }
        Ok(Destination {
            index: 0,
            name: key.to_string(),
        })
    }
}

/// Pick a stream key for destination `index` whose slot belongs to `master`.
fn key_on_master(prefix: &str, index: usize, master: &RedisNodeStatus) -> Option<String> {
    (0..100_000)
        .map(|j| format!("{{{prefix}-{index}-{j}}}"))
        .find(|k| master.owns_slot(key_slot(k)))
}

#[async_trait]
impl Backend for RedisStreams {
    fn label(&self) -> &str {
        &self.label
    }

    fn confirms(&self) -> bool {
        true
    }

    async fn setup(&self, prefix: &str, count: usize) -> Result<Vec<Destination>, BackendError> {
        if let Some(a) = self.settings.appendfsync {
            self.config_set_everywhere("appendfsync", a.as_str())
                .await?;
        }
        if let Some(full) = self.settings.require_full_coverage {
            let v = if full { "yes" } else { "no" };
            self.config_set_everywhere("cluster-require-full-coverage", v)
                .await?;
        }
        let masters = self
            .masters()
            .await
            .map_err(|e| self.setup_err("read the cluster's masters", e))?;
        if masters.is_empty() {
            return Err(self.setup_err(
                "read the cluster's masters",
                "no master owns slots; is the cluster formed?",
            ));
        }
        let mut dests = Vec::with_capacity(count);
        for i in 0..count {
            let master = &masters[i % masters.len()];
            let key = key_on_master(prefix, i, master).ok_or_else(|| {
                self.setup_err(
                    "choose a stream key",
                    format!("no hash tag found for master {}", master.address),
                )
            })?;
            let mut conn = self.admin.clone();
            let _: ::redis::RedisResult<()> =
                ::redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            let _: () = ::redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&key)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.setup_err(&format!("XGROUP CREATE {key}"), e))?;
            dests.push(Destination {
                index: i,
                name: key,
            });
        }
        Ok(dests)
    }

    /// A new consumer group at id 0 on every stream (the one `setup` made is destroyed first:
    /// nothing has read from it during the fill), so the replay is a new group's read of the
    /// whole history.
    async fn new_readers(&self, destinations: &[Destination]) -> Result<(), BackendError> {
        let mut conn = self.admin.clone();
        for d in destinations {
            let _: i64 = ::redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&d.name)
                .arg(GROUP)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.setup_err(&format!("XGROUP DESTROY {}", d.name), e))?;
            let _: () = ::redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&d.name)
                .arg(GROUP)
                .arg("0")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.setup_err(&format!("XGROUP CREATE {} 0", d.name), e))?;
        }
        Ok(())
    }

    async fn teardown(&self, destinations: &[Destination]) -> Result<(), BackendError> {
        let mut conn = self.admin.clone();
        for d in destinations {
            let _: () = ::redis::cmd("DEL")
                .arg(&d.name)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.setup_err(&format!("DEL {}", d.name), e))?;
        }
        Ok(())
    }

    async fn producer(
        &self,
        dest: &Destination,
        _index: usize,
    ) -> Result<Box<dyn Producer>, OpError> {
        // Each producer has its own connection to the stream's master, as separate client
        // processes would: a blocked WAIT on one does not hold up the others.
        let s = &self.settings;
        Ok(Box::new(producer::RedisProducer::start(
            self.locator.clone(),
            producer::WriterSettings {
                key: dest.name.clone(),
                maxlen: s.maxlen,
                wait: (s.wait_replicas > 0).then_some((s.wait_replicas, s.wait_timeout_ms)),
                retries: s.client_retries,
                connect_timeout: CONNECT_TIMEOUT,
                response_timeout: s.producer_reply_timeout(),
            },
        )))
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
            .cluster_nodes()
            .await
            .map_err(|e| self.setup_err("CLUSTER NODES", e))?;
        let by_id: HashMap<&str, &RedisNodeStatus> =
            nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let mut topo = Topology::default();
        for n in &nodes {
            let role = if is_failed(n) {
                "failed".to_string()
            } else if n.is_master() {
                "master".to_string()
            } else {
                format!(
                    "replica of {}",
                    n.master_id
                        .as_deref()
                        .and_then(|m| by_id.get(m))
                        .map(|m| m.address.as_str())
                        .unwrap_or("?")
                )
            };
            topo.nodes.push(NodeView {
                name: n.id.clone(),
                address: n.address.clone(),
                role,
            });
        }
        topo.nodes.sort_by(|a, b| a.address.cmp(&b.address));
        for d in destinations {
            let slot = key_slot(&d.name);
            let master = nodes
                .iter()
                .find(|n| n.is_master() && !is_failed(n) && n.owns_slot(slot));
            let replicas = master
                .map(|m| {
                    nodes
                        .iter()
                        .filter(|r| r.master_id.as_deref() == Some(m.id.as_str()))
                        .map(|r| r.address.clone())
                        .collect()
                })
                .unwrap_or_default();
            topo.destinations.push(DestinationPlacement {
                name: d.name.clone(),
                leader: master.map(|m| m.address.clone()),
                replicas,
                slot: Some(slot),
            });
        }
        Ok(topo)
    }

    async fn replica_lag(
        &self,
        destinations: &[Destination],
    ) -> Result<Vec<ReplicaLag>, BackendError> {
        self.stream_replica_lag(destinations).await
    }

    async fn backlog(&self, destinations: &[Destination]) -> Result<Option<Backlog>, BackendError> {
        self.stream_backlog(destinations).await.map(Some)
    }

    async fn version(&self) -> Option<String> {
        let text = self
            .ask_any_node("INFO server", ::redis::cmd("INFO").arg("server"))
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map(|v| v.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::redis::parse_node_rows;

    #[test]
    fn slots_match_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("{user1000}.following"), key_slot("user1000"));
        assert_eq!(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
        assert_eq!(key_slot("{}x"), crc16(b"{}x") % 16384);
    }

    #[test]
    fn picks_a_key_on_each_master() {
        let text = "21fd 10.0.0.14:7004@17004 slave de5b 0 1736766603439 3 connected\n\
                    d147 10.0.0.12:7002@17002 master - 0 1736766603000 2 connected 5461-10922\n\
                    de5b 10.0.0.13:7003@17003 master - 0 1736766601894 3 connected 10923-16383\n\
                    2eb5 10.0.0.11:7001@17001 myself,master - 0 1736766602000 1 connected 0-5460 [93-<-abc]\n";
        let nodes = parse_node_rows(text);
        assert_eq!(nodes.len(), 4);
        assert!(!nodes[0].is_master());
        assert_eq!(nodes[3].slot_ranges(), vec![(0, 5460)]);
        for m in nodes.iter().filter(|n| n.is_master()) {
            let key = key_on_master("bb-run", 0, m).expect("a key for every master");
            assert!(m.owns_slot(key_slot(&key)));
            assert!(key.starts_with('{') && key.ends_with('}'));
        }
    }

    #[test]
    fn redirects_and_refusals_are_definite() {
        let kind = |k: ErrorKind| map_err(RedisError::from((k, "test")));
        let server = |k: ServerErrorKind| kind(ErrorKind::Server(k));
        for k in [
            ServerErrorKind::Moved,
            ServerErrorKind::Ask,
            ServerErrorKind::TryAgain,
            ServerErrorKind::ClusterDown,
        ] {
            let e = server(k);
            assert_eq!(e.kind(), "unavailable", "{k:?}");
            assert!(e.is_definite(), "{k:?}");
        }
        assert_eq!(server(ServerErrorKind::ResponseError).kind(), "broker");
        assert!(server(ServerErrorKind::ReadOnly).is_definite());
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = map_err(RedisError::from(reset));
        assert_eq!(e.kind(), "connection");
        assert!(!e.is_definite());
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(!map_err(RedisError::from(timed_out)).is_definite());
        assert!(!kind(ErrorKind::Parse).is_definite());
        assert!(!kind(ErrorKind::UnexpectedReturnType).is_definite());
    }
}
