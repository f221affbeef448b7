//! The `redis-streams` backend's settings: what a `[[backends]]` entry may set, their
//! checks, and what a confirm guarantees with them.

use serde::{Deserialize, Serialize};

use crate::backend::registry::{BackendType, Family, FieldError, Redelivery, Replay};
use crate::cluster::version::BrokerVersion;
use crate::scenario::{
    AppendFsync, ClusterKind, ClusterMode, ClusterSection, Guarantee, Rate, RedisClusterSection,
    Workload,
};

/// Redis Cluster streams settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    #[serde(default)]
    pub label: Option<String>,
    /// The `[clusters.<name>]` this backend runs on (default: the one cluster of its kind).
    #[serde(default)]
    pub cluster: Option<String>,
    /// This backend's number of queues or streams, instead of `workload.destinations` (for
    /// runs that scale the number of destinations, claim C3).
    #[serde(default)]
    pub destinations: Option<usize>,
    /// This backend's target rate, instead of `workload.rate` (e.g. "max" beside fixed-rate
    /// backends in one scenario).
    #[serde(default)]
    pub rate: Option<Rate>,
    /// XADD MAXLEN ~ n (0: no trimming).
    #[serde(default)]
    pub maxlen: u64,
    /// XREADGROUP COUNT.
    #[serde(default = "read_count")]
    pub read_count: usize,
    /// XREADGROUP BLOCK in milliseconds.
    #[serde(default = "block_ms")]
    pub block_ms: u64,
    /// Applied with CONFIG SET on every node before this backend runs (default: the cluster's).
    #[serde(default)]
    pub appendfsync: Option<AppendFsync>,
    /// `cluster-require-full-coverage`, set with CONFIG SET on every node before this backend
    /// runs (default: Redis's, yes). With yes, every master refuses writes (CLUSTERDOWN) while
    /// any slot has no master, e.g. between a master's death and its replica's promotion; with
    /// no, only the dead master's slots are refused.
    #[serde(default)]
    pub require_full_coverage: Option<bool>,
    /// After each XADD, `WAIT <n> <wait_timeout_ms>`: the confirm waits for n replicas (0: no WAIT).
    #[serde(default)]
    pub wait_replicas: u32,
    #[serde(default = "wait_timeout")]
    pub wait_timeout_ms: u64,
    /// How long a producer or consumer waits for a node's reply before it gives up on that node
    /// (ms), on top of the time the command may block by design (WAIT's `wait_timeout_ms`,
    /// XREADGROUP's `block_ms`). Then every command in flight on the connection is
    /// indeterminate (`timeout`), and the client asks the other nodes which master serves its
    /// slot now, as redis-py's `socket_timeout` or Jedis's `soTimeout` do. This is what lets a
    /// client leave a master that froze (SIGSTOP, a hung host) without closing its sockets.
    #[serde(default = "reply_timeout")]
    pub reply_timeout_ms: u64,
    /// Producers: how many times an XADD that the cluster refused (MOVED, TRYAGAIN, CLUSTERDOWN,
    /// MASTERDOWN, LOADING, or no connection to the stream's master) is sent again; an XADD whose
    /// outcome is unknown (lost connection, reply timeout) is never resent, so this cannot
    /// duplicate an entry. Consumers: redis-rs's retries per command
    /// (`ClusterClient::builder(..).retries(..)`). With 0 every failed command surfaces to the
    /// harness (a MOVED still points the producer to the new master, and refreshes the
    /// consumers' slot map for their next command).
    #[serde(default)]
    pub client_retries: u32,
    /// XAUTOCLAIM: entries pending this long (ms) in any consumer of the group are taken over.
    #[serde(default = "claim_min_idle")]
    pub claim_min_idle_ms: u64,
    /// Each consumer runs XAUTOCLAIM at most once per this many ms (0: no claiming).
    #[serde(default = "claim_interval")]
    pub claim_interval_ms: u64,
}

fn read_count() -> usize {
    100
}
fn block_ms() -> u64 {
    100
}
fn wait_timeout() -> u64 {
    1000
}
/// The default reply timeout: Jedis's `soTimeout` default, well above a loaded master's slowest
/// reply here (tens of ms), well below a failover with the usual node timeouts.
pub const DEFAULT_REPLY_TIMEOUT_MS: u64 = 2000;
fn reply_timeout() -> u64 {
    DEFAULT_REPLY_TIMEOUT_MS
}
fn claim_min_idle() -> u64 {
    5000
}
fn claim_interval() -> u64 {
    1000
}

impl RedisSettings {
    /// Checks serde cannot express.
    fn check(&self) -> Result<(), FieldError> {
        let r = self;
        if r.read_count == 0 || r.read_count > 100_000 {
            return Err(FieldError::at(
                "read_count",
                format!("{} is out of range; use 1 to 100000", r.read_count),
            ));
        }
        if r.block_ms == 0 || r.block_ms > 10_000 {
            return Err(FieldError::at(
                "block_ms",
                format!("{} is out of range; use 1 to 10000", r.block_ms),
            ));
        }
        if r.reply_timeout_ms < 100 || r.reply_timeout_ms > 600_000 {
            return Err(FieldError::at(
                "reply_timeout_ms",
                format!(
                    "{} is out of range; use 100 to 600000 (default {DEFAULT_REPLY_TIMEOUT_MS}); \
                     WAIT's wait_timeout_ms and XREADGROUP's block_ms are added to it, not \
                     part of it",
                    r.reply_timeout_ms
                ),
            ));
        }
        if r.wait_replicas > 0 && (r.wait_timeout_ms == 0 || r.wait_timeout_ms > 600_000) {
            return Err(FieldError::at(
                "wait_timeout_ms",
                format!(
                    "{} is out of range while wait_replicas is set; use 1 to 600000 (WAIT 0 \
                     would block until the replicas answer, however long)",
                    r.wait_timeout_ms
                ),
            ));
        }
        // redis-rs waits longer before each retry (seconds by the 10th).
        if r.client_retries > 16 {
            return Err(FieldError::at(
                "client_retries",
                format!("{} is out of range; use 0 to 16", r.client_retries),
            ));
        }
        if r.claim_interval_ms > 3_600_000 {
            return Err(FieldError::at(
                "claim_interval_ms",
                format!(
                    "{} is out of range; use 0 (no claiming) to 3600000",
                    r.claim_interval_ms
                ),
            ));
        }
        if r.claim_interval_ms > 0 && (r.claim_min_idle_ms == 0 || r.claim_min_idle_ms > 3_600_000)
        {
            return Err(FieldError::at(
                "claim_min_idle_ms",
                format!(
                    "{} is out of range while claim_interval_ms is set; use 1 to 3600000 \
                     (0 would take entries other consumers are still processing)",
                    r.claim_min_idle_ms
                ),
            ));
        }
        Ok(())
    }
}

impl RedisSettings {
    /// How long a producer waits for a pipeline's replies: the reply timeout, plus WAIT's own
    /// timeout when WAIT follows the XADDs (WAIT answers only once it has run out).
    pub fn producer_reply_timeout(&self) -> std::time::Duration {
        let wait = if self.wait_replicas > 0 {
            self.wait_timeout_ms
        } else {
            0
        };
        std::time::Duration::from_millis(self.reply_timeout_ms + wait)
    }

    /// How long a consumer waits for a reply: the reply timeout plus XREADGROUP's BLOCK.
    pub fn consumer_reply_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.reply_timeout_ms + self.block_ms)
    }
}

/// What a confirm guarantees on `cluster` with settings `s`.
pub fn redis_guarantee(cluster: &RedisClusterSection, s: &RedisSettings) -> Guarantee {
    if cluster.mode == ClusterMode::External && s.appendfsync.is_none() {
        return Guarantee::AsConfigured;
    }
    // Without AOF, appendfsync does not matter: nothing is logged.
    let fsync = if cluster.appendonly {
        s.appendfsync.unwrap_or(cluster.appendfsync)
    } else {
        AppendFsync::No
    };
    if s.wait_replicas > 0 {
        return Guarantee::ReplicaAck(s.wait_replicas, fsync);
    }
    match fsync {
        AppendFsync::No => Guarantee::Memory,
        AppendFsync::Everysec => Guarantee::AofEverysec,
        AppendFsync::Always => Guarantee::AofAlways,
    }
}

#[async_trait::async_trait]
impl BackendType for &RedisSettings {
    fn name(&self) -> &'static str {
        "redis-streams"
    }
    fn family(&self) -> Family {
        Family::Redis
    }
    fn cluster_kind(&self) -> ClusterKind {
        ClusterKind::Redis
    }
    fn replay(&self) -> Replay {
        // Backend::new_readers: the group is created anew at id 0 once the fill is done.
        Replay::FromFirst("a new consumer group created at id 0 (XGROUP CREATE ... 0)")
    }
    fn redelivery(&self) -> Redelivery {
        Redelivery::Claim {
            min_idle_ms: self.claim_min_idle_ms,
            interval_ms: self.claim_interval_ms,
        }
    }
    fn client_detection(&self, _local: bool, d: &mut crate::scenario::FailureDetection) {
        d.client_reply_timeout_ms = Some(self.reply_timeout_ms);
        d.client_wait_timeout_ms = (self.wait_replicas > 0).then_some(self.wait_timeout_ms);
    }
    fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }
    fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }
    fn destinations(&self) -> Option<usize> {
        self.destinations
    }
    fn rate(&self) -> Option<Rate> {
        self.rate
    }
    fn validate(&self, _workload: &Workload, _index: usize) -> Result<(), FieldError> {
        self.check()
    }
    fn guarantee(&self, cluster: Option<&ClusterSection>) -> Guarantee {
        let section = match cluster {
            Some(ClusterSection::Redis(r)) => r.clone(),
            _ => RedisClusterSection::default(),
        };
        redis_guarantee(&section, self)
    }
    fn supported_on(&self, _version: &BrokerVersion) -> Result<(), String> {
        Ok(())
    }
    async fn build(
        &self,
        endpoints: &crate::backend::Endpoints,
    ) -> Result<std::sync::Arc<dyn crate::backend::Backend>, crate::backend::BackendError> {
        Ok(std::sync::Arc::new(
            super::RedisStreams::connect(*self, &endpoints.redis).await?,
        ))
    }
}
