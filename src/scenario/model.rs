//! The scenario file's model: a broker-independent workload, cluster sections, and a list of
//! backends that each run the same workload one after another.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in the results folder's name.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Serve the harness's live metrics here while the run goes (`--metrics-addr` wins).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::monitoring::deserialize_addr"
    )]
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub workload: Workload,
    /// `[clusters.<name>]` sections; after parsing, also the default cluster of each kind a
    /// backend needs that the file does not declare.
    #[serde(default)]
    pub clusters: super::clusters::Clusters,
    /// Backends, run one after another with the same workload.
    pub backends: Vec<BackendSpec>,
    /// Faults injected during each backend's measured phase.
    #[serde(default)]
    pub faults: Vec<super::faults::FaultSpec>,
    /// `monitoring = true`: Prometheus and redis_exporters beside the clusters, prometheus.csv.
    #[serde(
        default,
        skip_serializing_if = "super::monitoring::MonitoringSettings::is_default",
        deserialize_with = "super::monitoring::deserialize_monitoring"
    )]
    pub monitoring: super::monitoring::MonitoringSettings,
}

/// The workload: what load to apply, independent of the broker.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Bytes per message, including the harness's header.
    pub message_size: usize,
    /// Number of queues or streams.
    #[serde(default = "one")]
    pub destinations: usize,
    #[serde(default = "one")]
    pub producers_per_destination: usize,
    #[serde(default = "one")]
    pub consumers_per_destination: usize,
    /// Producers over all destinations, spread evenly (instead of `producers_per_destination`):
    /// keeps the total the same when backends run different numbers of destinations (claim C3).
    /// Must be a multiple of every backend's number of destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producers_total: Option<usize>,
    /// Consumers over all destinations, spread evenly (instead of `consumers_per_destination`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers_total: Option<usize>,
    /// Target rate over all producers, in msg/s, "max", or a share of the maximum that a short
    /// max-rate probe just before the run sustains ("80% of max").
    pub rate: Rate,
    /// Unconfirmed messages a producer may have open at once.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    #[serde(default = "zero_duration", with = "humantime_serde_compat")]
    pub warmup: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub duration: Duration,
    /// After producing stops, how long to wait for confirms and consumers to catch up.
    #[serde(default = "default_drain", with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
    /// A publish whose confirm takes longer than this counts as failed ("timeout"), its
    /// outcome unknown.
    #[serde(default = "default_op_timeout", with = "humantime_serde_compat")]
    pub op_timeout: Duration,
    /// Simulated processing time per message on the consumer (e.g. "2ms"), spent once per
    /// batch before it is acked: makes consumers slower than producers on purpose. 0: none.
    #[serde(default = "zero_duration", with = "humantime_serde_compat")]
    pub consumer_delay: Duration,
    /// Run every backend this many times, interleaved (A B C, A B C, …) so that drift on the
    /// host hits all of them; each repetition is a row of summary.csv (`run --repeat` wins).
    #[serde(default = "one")]
    pub repeat: usize,
    /// Stop producing after this many messages over all producers (shared evenly), and end the
    /// run once they are all received, instead of at the end of the duration (which still
    /// bounds it). In a scenario file only with `mode = "replay"` (the fill's size); also
    /// `brokerbench calibrate --messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
    /// `live` (default): consumers beside the producers; `replay`: the producers fill the
    /// destinations with `messages` first, then new consumers read the whole history.
    #[serde(default)]
    pub mode: super::LoadMode,
}

fn one() -> usize {
    1
}
fn default_in_flight() -> usize {
    128
}
fn zero_duration() -> Duration {
    Duration::ZERO
}
fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_op_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Workload {
    pub fn producers(&self) -> usize {
        self.destinations * self.producers_per_destination
    }
    pub fn consumers(&self) -> usize {
        self.destinations * self.consumers_per_destination
    }
    /// Rate for one producer in msg/s (`None` for max, and for a share of the maximum that
    /// was not resolved by a probe: the load then runs at max).
    pub fn rate_per_producer(&self) -> Option<f64> {
        match self.rate {
            Rate::Max | Rate::ShareOfMax(_) => None,
            Rate::PerSecond(r) => Some(r / self.producers() as f64),
        }
    }
}

/// A target rate: a number of msg/s, as fast as the broker confirms, or a share of what the
/// backend sustained in a max-rate probe run just before (run/probe.rs resolves it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
    /// A share in (0, 1]: "80% of max" is 0.8.
    ShareOfMax(f64),
}

impl Rate {
    /// "80% of max" (or "0.8 of max") -> 0.8; `None` when `text` is not of that form, or the
    /// share is not in (0, 100] %.
    pub fn parse_share(text: &str) -> Option<f64> {
        let head = text.trim().strip_suffix("of max")?.trim();
        let share = match head.strip_suffix('%') {
            Some(pct) => pct.trim().parse::<f64>().ok()? / 100.0,
            None => head.parse::<f64>().ok()?,
        };
        (share.is_finite() && share > 0.0 && share <= 1.0).then_some(share)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSecond(r) => write!(f, "{r}"),
            Rate::ShareOfMax(s) => write!(f, "{}% of max", s * 100.0),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rate::Max => s.serialize_str("max"),
            Rate::PerSecond(r) => s.serialize_f64(*r),
            Rate::ShareOfMax(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a positive number of msg/s, \"max\", or a share such as \"80% of max\"",
                )
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Rate, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Rate, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Rate, E> {
                if v.is_finite() && v > 0.0 {
                    Ok(Rate::PerSecond(v))
                } else {
                    Err(E::custom(format!(
                        "rate must be a positive number of msg/s or \"max\", got {v}"
                    )))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                if v == "max" {
                    Ok(Rate::Max)
                } else if let Some(share) = Rate::parse_share(v) {
                    Ok(Rate::ShareOfMax(share))
                } else {
                    Err(E::custom(format!(
                        "rate must be a positive number of msg/s, \"max\", or a share of the \
                         maximum between 1% and 100% such as \"80% of max\", got \"{v}\""
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Durations written as "30s", "2m", "500ms".
pub(crate) mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "\"{text}\" is not a duration ({e}); write e.g. \"30s\", \"2m\", \"500ms\""
            ))
        })
    }
}

/// Optional durations written as "30s" (absent: `None`).
pub(crate) mod humantime_option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::humantime_serde_compat::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::humantime_serde_compat")] Duration);
        Ok(Some(Wrap::deserialize(d)?.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// brokerbench starts the nodes itself as local processes.
    #[default]
    Local,
    /// The user's cluster at `nodes`; brokerbench does not start or stop it.
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppendFsync {
    No,
    Everysec,
    Always,
}

impl AppendFsync {
    pub fn as_str(&self) -> &'static str {
        match self {
            AppendFsync::No => "no",
            AppendFsync::Everysec => "everysec",
            AppendFsync::Always => "always",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisClusterSection {
    #[serde(default)]
    pub mode: ClusterMode,
    /// First port; nodes use base_port..base_port+5 (and +10000 for the cluster bus).
    #[serde(default = "redis_base_port")]
    pub base_port: u16,
    #[serde(default = "redis_node_timeout")]
    pub node_timeout_ms: u64,
    #[serde(default = "yes")]
    pub appendonly: bool,
    #[serde(default = "everysec")]
    pub appendfsync: AppendFsync,
    /// RDB snapshot rule as in redis.conf's `save` ("" for none, e.g. "60 1000").
    #[serde(default)]
    pub save: String,
    /// External mode: seed addresses `host:port`.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Where the local nodes' binaries come from: the host's (absent), "debian13" (the project's
    /// Debian 13 root, `make brokers-debian13`) or a path to a root folder (`broker_root.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_root: Option<super::BrokerRoot>,
    /// Local mode: "loopback" (every node on 127.0.0.1, the default) or "namespaces" (every
    /// node in a network namespace of its own behind a bridge, needs root; makes the
    /// `partition` fault possible). See docs/clusters.md.
    #[serde(default)]
    pub network: crate::cluster::netns::NetworkMode,
}

fn redis_base_port() -> u16 {
    7001
}
fn redis_node_timeout() -> u64 {
    2000
}
fn yes() -> bool {
    true
}
fn everysec() -> AppendFsync {
    AppendFsync::Everysec
}

impl Default for RedisClusterSection {
    fn default() -> Self {
        RedisClusterSection {
            mode: ClusterMode::Local,
            base_port: redis_base_port(),
            node_timeout_ms: redis_node_timeout(),
            appendonly: true,
            appendfsync: AppendFsync::Everysec,
            save: String::new(),
            nodes: Vec::new(),
            broker_root: None,
            network: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitClusterSection {
    #[serde(default)]
    pub mode: ClusterMode,
    /// AMQP port of node 1; node N uses amqp_base_port + N - 1.
    #[serde(default = "amqp_base")]
    pub amqp_base_port: u16,
    /// Management HTTP port of node 1.
    #[serde(default = "http_base")]
    pub http_base_port: u16,
    /// Stream protocol port of node 1.
    #[serde(default = "stream_base")]
    pub stream_base_port: u16,
    /// Prometheus port of node 1.
    #[serde(default = "prom_base")]
    pub prometheus_base_port: u16,
    /// Erlang distribution port of node 1.
    #[serde(default = "dist_base")]
    pub dist_base_port: u16,
    /// The cluster's own epmd port.
    #[serde(default = "epmd_port")]
    pub epmd_port: u16,
    /// Erlang's `net_ticktime` in seconds: how long a node that stops answering (frozen, or cut
    /// off) goes unnoticed, at most about 1.25 x this. RabbitMQ's default is 60; brokerbench's
    /// clusters use 10 unless the scenario says otherwise. A node whose process dies is noticed
    /// at once (its sockets close), whatever this is.
    #[serde(default = "net_ticktime")]
    pub net_ticktime_s: u32,
    /// External mode: AMQP URIs, one per node, in node order.
    #[serde(default)]
    pub amqp_uris: Vec<String>,
    /// External mode: management `host:port`, one per node.
    #[serde(default)]
    pub http: Vec<String>,
    /// Where the local nodes' binaries come from, as for Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_root: Option<super::BrokerRoot>,
    /// Local mode: the user the nodes create at first boot and every client (AMQP, stream,
    /// management API) connects as (RabbitMQ's own default, guest, may only connect from
    /// loopback). External mode: the credentials are those of `amqp_uris`.
    #[serde(default = "guest")]
    pub username: String,
    #[serde(default = "guest", skip_serializing)]
    pub password: String,
    /// Local mode: "loopback" (every node on 127.0.0.1, the default) or "namespaces" (every
    /// node in a network namespace of its own behind a bridge, needs root; makes the
    /// `partition` fault possible). See docs/clusters.md.
    #[serde(default)]
    pub network: crate::cluster::netns::NetworkMode,
}

fn guest() -> String {
    "guest".to_string()
}

fn amqp_base() -> u16 {
    5672
}
fn http_base() -> u16 {
    15672
}
fn stream_base() -> u16 {
    5552
}
fn prom_base() -> u16 {
    15692
}
fn dist_base() -> u16 {
    25672
}
fn epmd_port() -> u16 {
    4370
}
fn net_ticktime() -> u32 {
    10
}

impl Default for RabbitClusterSection {
    fn default() -> Self {
        RabbitClusterSection {
            mode: ClusterMode::Local,
            amqp_base_port: amqp_base(),
            http_base_port: http_base(),
            stream_base_port: stream_base(),
            prometheus_base_port: prom_base(),
            dist_base_port: dist_base(),
            epmd_port: epmd_port(),
            net_ticktime_s: net_ticktime(),
            amqp_uris: Vec::new(),
            http: Vec::new(),
            broker_root: None,
            username: guest(),
            password: guest(),
            network: Default::default(),
        }
    }
}

pub use crate::backend::rabbitmq::settings::{AckMode, Placement, PlacementName, RabbitSettings};
pub use crate::backend::redis::settings::RedisSettings;
pub use crate::backend::registry::{BackendSpec, BACKEND_TYPES};
