//! The registry: every backend type a scenario can name, one line each in `BackendSpec`, and
//! one arm in `BackendSpec::backend_type` that hands out its behaviour. Everything else about a
//! backend (its settings, their checks, the guarantee of a confirm, the broker versions it runs
//! on, how it connects) lives in its own folder, behind `BackendType`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::rabbitmq::settings::{RabbitSettings, RabbitType};
use super::rabbitmq::QueueKind;
use super::rabbitmq_stream_native::NativeStreamSettings;
use super::redis::settings::RedisSettings;
use super::{Backend, BackendError, Endpoints};
use crate::cluster::version::BrokerVersion;
use crate::scenario::{ClusterKind, ClusterSection, FailureDetection, Guarantee, Rate, Workload};

/// One `[[backends]]` entry: `type` selects the backend type, the other fields are its settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BackendSpec {
    RedisStreams(RedisSettings),
    RabbitmqQuorum(RabbitSettings),
    RabbitmqStream(RabbitSettings),
    RabbitmqMirrored(RabbitSettings),
    RabbitmqStreamNative(NativeStreamSettings),
}

impl BackendSpec {
    /// The one place an entry becomes its type's behaviour.
    pub fn backend_type(&self) -> Box<dyn BackendType + '_> {
        match self {
            BackendSpec::RedisStreams(s) => Box::new(s),
            BackendSpec::RabbitmqQuorum(s) => Box::new(RabbitType {
                kind: QueueKind::Quorum,
                settings: s,
            }),
            BackendSpec::RabbitmqStream(s) => Box::new(RabbitType {
                kind: QueueKind::Stream,
                settings: s,
            }),
            BackendSpec::RabbitmqMirrored(s) => Box::new(RabbitType {
                kind: QueueKind::Mirrored,
                settings: s,
            }),
            BackendSpec::RabbitmqStreamNative(s) => Box::new(s),
        }
    }

    /// Name the cluster this backend runs on (`clusters::resolve`).
    pub fn set_cluster(&mut self, name: String) {
        match self {
            BackendSpec::RedisStreams(s) => s.cluster = Some(name),
            BackendSpec::RabbitmqQuorum(s)
            | BackendSpec::RabbitmqStream(s)
            | BackendSpec::RabbitmqMirrored(s) => s.cluster = Some(name),
            BackendSpec::RabbitmqStreamNative(s) => s.cluster = Some(name),
        }
    }

    /// Forget the entry's own `rate` and `destinations` (the workload's apply): a command-line
    /// flag replaces the figure everywhere (`scenario::WorkloadOverrides`).
    pub fn drop_own_workload(&mut self, rate: bool, destinations: bool) {
        let (own_rate, own_destinations) = match self {
            BackendSpec::RedisStreams(s) => (&mut s.rate, &mut s.destinations),
            BackendSpec::RabbitmqQuorum(s)
            | BackendSpec::RabbitmqStream(s)
            | BackendSpec::RabbitmqMirrored(s) => (&mut s.rate, &mut s.destinations),
            BackendSpec::RabbitmqStreamNative(s) => (&mut s.rate, &mut s.destinations),
        };
        if rate {
            *own_rate = None;
        }
        if destinations {
            *own_destinations = None;
        }
    }

    /// The entry as it must run on `cluster`: a Redis backend on a cluster of our own without
    /// its own `appendfsync` gets the cluster's, set again before it runs, so that it never
    /// inherits what an earlier backend of the scenario set.
    pub fn with_cluster_defaults(&self, cluster: Option<&ClusterSection>) -> BackendSpec {
        let mut spec = self.clone();
        if let (BackendSpec::RedisStreams(s), Some(ClusterSection::Redis(c))) = (&mut spec, cluster)
        {
            if c.mode == crate::scenario::ClusterMode::Local && s.appendfsync.is_none() {
                s.appendfsync = Some(c.appendfsync);
            }
        }
        spec
    }

    pub fn type_name(&self) -> &'static str {
        self.backend_type().name()
    }

    /// The label under which results are reported.
    pub fn label(&self) -> String {
        let t = self.backend_type();
        t.label().unwrap_or(t.name()).to_string()
    }

    /// The backend a `type` names, with its default settings (None: no such type).
    pub fn from_type(type_name: &str) -> Option<BackendSpec> {
        let mut table = toml::Table::new();
        table.insert("type".into(), toml::Value::String(type_name.to_string()));
        BackendSpec::deserialize(toml::Value::Table(table)).ok()
    }

    /// The kind of cluster this backend runs on.
    pub fn cluster_kind(&self) -> ClusterKind {
        self.backend_type().cluster_kind()
    }

    /// The cluster this backend runs on (`[clusters.<name>]`); always set once the scenario is
    /// parsed (`clusters::resolve`).
    pub fn cluster(&self) -> Option<&str> {
        match self {
            BackendSpec::RedisStreams(s) => s.cluster.as_deref(),
            BackendSpec::RabbitmqQuorum(s)
            | BackendSpec::RabbitmqStream(s)
            | BackendSpec::RabbitmqMirrored(s) => s.cluster.as_deref(),
            BackendSpec::RabbitmqStreamNative(s) => s.cluster.as_deref(),
        }
    }

    /// The workload this backend runs: the scenario's, with its own number of destinations and
    /// rate when it sets them.
    pub fn workload(&self, w: &Workload) -> Workload {
        self.backend_type().workload(w)
    }
}

/// Every backend type's name, for messages.
pub const BACKEND_TYPES: &[&str] = &[
    "redis-streams",
    "rabbitmq-quorum",
    "rabbitmq-stream",
    "rabbitmq-mirrored",
    "rabbitmq-stream-native",
];

/// The broker a backend type belongs to, for the claims that compare brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Redis,
    Rabbitmq,
}

impl Family {
    /// The family of a backend type named in a results file (None: unknown type).
    pub fn of_type(type_name: &str) -> Option<Family> {
        BackendSpec::from_type(type_name).map(|s| s.backend_type().family())
    }
}

/// The protocol a backend type named in a results file speaks, when its broker has several
/// (None: it has one, or the type is unknown).
pub fn protocol_of_type(type_name: &str) -> Option<&'static str> {
    BackendSpec::from_type(type_name).and_then(|s| s.backend_type().protocol())
}

/// Whether a new consumer can read a destination's whole history (a replay), and from which
/// start position its first open reads: a capability each backend type declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// The destination keeps what it delivered; a new consumer's first open starts at its first
    /// entry, as the broker is told (e.g. "consumer group created at id 0").
    FromFirst(&'static str),
    /// It cannot, and why (a queue deletes what it delivered).
    Impossible(&'static str),
}

/// Why a queue cannot replay, in the report's words.
pub const QUEUE_CANNOT_REPLAY: &str = "a queue deletes what it delivered";

impl Replay {
    /// Whether a backend type named in a results file can replay (None: unknown type).
    pub fn of_type(type_name: &str) -> Option<Replay> {
        BackendSpec::from_type(type_name).map(|s| s.backend_type().replay())
    }
}

/// What becomes of the messages a consumer held unacked when it dies, and what the application
/// must do for another consumer to get them: a capability each backend type declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// The broker hands them to another consumer by itself when the dead one's channel closes
    /// (a requeue): nothing from the application.
    Requeue,
    /// They stay pending under the dead consumer's name until another consumer claims them:
    /// the application runs a claiming loop (XAUTOCLAIM, every `interval_ms`), which takes
    /// only entries idle for `min_idle_ms`.
    Claim { min_idle_ms: u64, interval_ms: u64 },
    /// The standby of a single active consumer group takes over from the offset stored on the
    /// broker (every `every` messages): what was read after the last store comes again.
    StoredOffset { every: u64 },
    /// Every consumer reads the whole log from its own offset: nothing is handed over.
    OwnOffset,
}

impl Redelivery {
    /// What it needs from the application, in the report's words.
    pub fn needs(&self) -> String {
        match self {
            Redelivery::Requeue => "nothing (the broker requeues when the channel closes)".into(),
            Redelivery::Claim {
                min_idle_ms,
                interval_ms,
            } if *interval_ms == 0 => format!(
                "a claiming loop, which none ran here (claim_interval_ms = 0; \
                 claim_min_idle_ms = {min_idle_ms} ms)"
            ),
            Redelivery::Claim {
                min_idle_ms,
                interval_ms,
            } => format!(
                "a claiming loop (XAUTOCLAIM every {interval_ms} ms, taking entries idle for \
                 claim_min_idle_ms = {min_idle_ms} ms)"
            ),
            Redelivery::StoredOffset { every } => format!(
                "nothing but storing offsets (every {every} messages; what was read after the \
                 last store comes again)"
            ),
            Redelivery::OwnOffset => "nothing (each consumer reads from its own offset)".into(),
        }
    }

    /// The redelivery of a `[[backends]]` entry as meta.json records its settings (None: not
    /// an entry of a known type).
    pub fn of_settings(settings: &serde_json::Value) -> Option<Redelivery> {
        BackendSpec::deserialize(settings.clone())
            .ok()
            .map(|s| s.backend_type().redelivery())
    }
}

/// A setting that fails a check: the field (under `backends[i].`, or under `workload.`) and
/// the message with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    /// The field is the workload's, not the backend entry's.
    pub in_workload: bool,
    pub message: String,
}

impl FieldError {
    /// A field of the backend entry.
    pub fn at(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            in_workload: false,
            message: message.into(),
        }
    }

    /// A field of `[workload]` that this backend cannot run with.
    pub fn workload(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            in_workload: true,
            message: message.into(),
        }
    }

    /// The field's full path in the scenario file, for backend entry `index`.
    pub fn path(&self, index: usize) -> String {
        if self.in_workload {
            format!("workload.{}", self.field)
        } else {
            format!("backends[{index}].{}", self.field)
        }
    }
}

/// What a backend type is, beyond the driver contract (`Backend`): implemented by each backend
/// folder's settings.
#[async_trait::async_trait]
pub trait BackendType: Send + Sync {
    /// The `type` of scenario files and results rows.
    fn name(&self) -> &'static str;
    fn family(&self) -> Family;
    /// The kind of cluster (and launcher) it needs.
    fn cluster_kind(&self) -> ClusterKind;
    /// The protocol its client speaks, named in every table and legend when its broker has
    /// more than one (RabbitMQ streams: AMQP 0-9-1 or the stream protocol); None when the
    /// broker has one.
    fn protocol(&self) -> Option<&'static str> {
        None
    }
    /// The common settings every entry has.
    fn label(&self) -> Option<&str>;
    fn cluster(&self) -> Option<&str>;
    fn destinations(&self) -> Option<usize>;
    fn rate(&self) -> Option<Rate>;
    /// Its client's part of `detection` (how long a node that stops answering goes unnoticed
    /// by the client: reply timeouts, heartbeats), on a cluster brokerbench started (`local`)
    /// or not. Nothing by default.
    fn client_detection(&self, _local: bool, _detection: &mut FailureDetection) {}
    /// Whether a new consumer reads the whole history, and from where its first open starts
    /// (`workload.mode = "replay"` runs only the types that can).
    fn replay(&self) -> Replay;
    /// What becomes of a dead consumer's unacked messages, and what the application does for it.
    fn redelivery(&self) -> Redelivery;
    /// Checks of its settings that serde cannot express (`index`: its place in the file).
    fn validate(&self, workload: &Workload, index: usize) -> Result<(), FieldError>;
    /// What a confirm guarantees with these settings on `cluster` (its section, if known).
    fn guarantee(&self, cluster: Option<&ClusterSection>) -> Guarantee;
    /// Whether a cluster running broker `version` can run it: Err(why not, and what to use).
    fn supported_on(&self, version: &BrokerVersion) -> Result<(), String>;
    /// Connect to the cluster at `endpoints`.
    async fn build(&self, endpoints: &Endpoints) -> Result<Arc<dyn Backend>, BackendError>;

    /// The workload it runs: the scenario's, with its own number of destinations and rate
    /// when it sets them, and totals of producers and consumers spread over its destinations.
    fn workload(&self, w: &Workload) -> Workload {
        let destinations = self.destinations().unwrap_or(w.destinations);
        let per = |total: Option<usize>, each: usize| {
            total.map_or(each, |t| (t / destinations.max(1)).max(1))
        };
        Workload {
            destinations,
            rate: self.rate().unwrap_or(w.rate),
            producers_per_destination: per(w.producers_total, w.producers_per_destination),
            consumers_per_destination: per(w.consumers_total, w.consumers_per_destination),
            ..w.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_type_is_registered_with_its_own_name() {
        for name in BACKEND_TYPES {
            let spec = BackendSpec::from_type(name).expect("registered");
            assert_eq!(spec.type_name(), *name);
            assert_eq!(spec.label(), *name);
        }
        assert!(BackendSpec::from_type("kafka").is_none());
        assert_eq!(Family::of_type("rabbitmq-stream"), Some(Family::Rabbitmq));
        assert_eq!(Family::of_type("redis-streams"), Some(Family::Redis));
        assert_eq!(Family::of_type("memory"), None);
        assert_eq!(protocol_of_type("rabbitmq-stream"), Some("AMQP 0-9-1"));
        assert_eq!(
            protocol_of_type("rabbitmq-stream-native"),
            Some("stream protocol")
        );
        assert_eq!(protocol_of_type("redis-streams"), None);
    }
}
