//! The settings of the RabbitMQ backends (`rabbitmq-quorum`, `rabbitmq-stream`,
//! `rabbitmq-mirrored`): what a `[[backends]]` entry may set, their checks by queue kind, and
//! what a confirm guarantees.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::QueueKind;
use crate::backend::registry::{
    BackendType, Family, FieldError, Redelivery, Replay, QUEUE_CANNOT_REPLAY,
};
use crate::backend::{Backend, BackendError, Endpoints};
use crate::cluster::version::BrokerVersion;
use crate::scenario::{ClusterKind, ClusterSection, Guarantee, Rate, Workload};

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    Manual,
    Auto,
}

/// Where queue leaders go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Placement {
    /// "spread": destination i on node (i mod nodes) + 1.
    Named(PlacementName),
    /// A node number (1-based): every destination on that node.
    Node(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementName {
    /// Destination (or client) i on node (i mod nodes) + 1.
    Spread,
    /// Connections only: connect to the node that leads the destination.
    Leader,
}

impl Default for Placement {
    fn default() -> Self {
        Placement::Named(PlacementName::Spread)
    }
}

impl Placement {
    /// 0-based node index for item `index` on a cluster of `nodes`; `leader` is the 0-based
    /// node that leads the destination (used by `Leader`).
    pub fn node_for(&self, index: usize, nodes: usize, leader: usize) -> usize {
        match self {
            Placement::Named(PlacementName::Spread) => index % nodes.max(1),
            Placement::Named(PlacementName::Leader) => leader,
            Placement::Node(n) => (n.saturating_sub(1)).min(nodes.saturating_sub(1)),
        }
    }
}

/// RabbitMQ settings, shared by the quorum, stream and mirrored backends.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitSettings {
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
    /// Publisher confirms.
    #[serde(default = "yes")]
    pub confirms: bool,
    /// delivery_mode 2 (persistent) or 1 (transient).
    #[serde(default = "yes")]
    pub persistent: bool,
    #[serde(default = "manual")]
    pub ack: AckMode,
    /// basic.qos prefetch count per consumer.
    #[serde(default = "prefetch")]
    pub prefetch: u16,
    /// Which node leads each queue.
    #[serde(default)]
    pub leader: Placement,
    /// Which node each producer and consumer connects to: "spread" over the nodes, "leader"
    /// (the queue leader's node), or a node number.
    #[serde(default)]
    pub connect: Placement,
    /// Mirrored only: ha-mode ("all" or "exactly").
    #[serde(default)]
    pub ha_mode: Option<String>,
    /// Mirrored only, with ha-mode "exactly": number of copies.
    #[serde(default)]
    pub ha_params: Option<u32>,
    /// Mirrored only: "automatic" or "manual".
    #[serde(default)]
    pub ha_sync_mode: Option<String>,
}

fn manual() -> AckMode {
    AckMode::Manual
}
fn prefetch() -> u16 {
    500
}

/// A RabbitMQ backend type: the queue kind with its settings.
pub struct RabbitType<'a> {
    pub kind: QueueKind,
    pub settings: &'a RabbitSettings,
}

impl RabbitType<'_> {
    /// Checks serde cannot express; some depend on the queue kind.
    fn check(&self, w: &Workload, index: usize) -> Result<(), FieldError> {
        let q = self.settings;
        let name = self.kind.type_name();
        let stream = self.kind == QueueKind::Stream;
        let mirrored = self.kind == QueueKind::Mirrored;
        let consumers = self.workload(w).consumers_per_destination;
        if stream && consumers > 1 {
            return Err(FieldError::workload(
                "consumers_per_destination",
                format!(
                    "{consumers} consumers per destination would each read the whole stream of \
                     backends[{index}] ({name}): every AMQP consumer of a stream gets every \
                     message, so each would arrive {consumers} times (RabbitMQ 3.10 has no single \
                     active consumer for streams over AMQP); use consumers_per_destination \
                     = 1, or run the {name} backend in a scenario of its own"
                ),
            ));
        }
        if stream && q.ack == AckMode::Auto {
            return Err(FieldError::at(
                "ack",
                "a stream queue cannot be consumed with auto-ack (streams need manual acks as \
                 credit); use \"manual\"",
            ));
        }
        if q.prefetch == 0 && (stream || q.ack == AckMode::Manual) {
            return Err(FieldError::at(
                "prefetch",
                "0 means unlimited, which stream queues refuse and which hides back-pressure; \
                 use 1 to 65535",
            ));
        }
        if let Placement::Named(PlacementName::Leader) = q.leader {
            return Err(FieldError::at(
                "leader",
                "\"leader\" only applies to `connect`; use \"spread\" or a node number",
            ));
        }
        for (f, p) in [("leader", &q.leader), ("connect", &q.connect)] {
            if let Placement::Node(n) = p {
                if *n == 0 || *n > 3 {
                    return Err(FieldError::at(
                        f,
                        format!("node {n} does not exist; use 1, 2 or 3, or \"spread\""),
                    ));
                }
            }
        }
        if !mirrored {
            for (f, set) in [
                ("ha_mode", q.ha_mode.is_some()),
                ("ha_params", q.ha_params.is_some()),
                ("ha_sync_mode", q.ha_sync_mode.is_some()),
            ] {
                if set {
                    return Err(FieldError::at(
                        f,
                        format!("only applies to rabbitmq-mirrored, not {name}; remove it"),
                    ));
                }
            }
            return Ok(());
        }
        match q.ha_mode.as_deref() {
            None | Some("all") => {
                if q.ha_params.is_some() {
                    return Err(FieldError::at(
                        "ha_params",
                        "only applies with ha_mode = \"exactly\"",
                    ));
                }
            }
            Some("exactly") => match q.ha_params {
                Some(n) if (1..=3).contains(&n) => {}
                other => {
                    return Err(FieldError::at(
                        "ha_params",
                        format!("{other:?}: ha_mode \"exactly\" needs ha_params from 1 to 3"),
                    ))
                }
            },
            Some(m) => {
                return Err(FieldError::at(
                    "ha_mode",
                    format!("\"{m}\" is not supported; use \"all\" or \"exactly\""),
                ))
            }
        }
        if let Some(m) = q.ha_sync_mode.as_deref() {
            if m != "automatic" && m != "manual" {
                return Err(FieldError::at(
                    "ha_sync_mode",
                    format!("\"{m}\" is not allowed; use \"automatic\" or \"manual\""),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BackendType for RabbitType<'_> {
    fn name(&self) -> &'static str {
        self.kind.type_name()
    }
    fn family(&self) -> Family {
        Family::Rabbitmq
    }
    fn cluster_kind(&self) -> ClusterKind {
        ClusterKind::Rabbitmq
    }
    fn protocol(&self) -> Option<&'static str> {
        Some("AMQP 0-9-1")
    }
    fn replay(&self) -> Replay {
        match self.kind {
            // offsets.rs: a consumer's first open on a queue passes x-stream-offset "first".
            QueueKind::Stream => Replay::FromFirst("x-stream-offset \"first\" on a new consumer"),
            QueueKind::Quorum | QueueKind::Mirrored => Replay::Impossible(QUEUE_CANNOT_REPLAY),
        }
    }
    fn redelivery(&self) -> Redelivery {
        match self.kind {
            QueueKind::Stream => Redelivery::OwnOffset,
            QueueKind::Quorum | QueueKind::Mirrored => Redelivery::Requeue,
        }
    }
    fn client_detection(&self, local: bool, d: &mut crate::scenario::FailureDetection) {
        // What the AMQP clients ask for when the URI does not (a local cluster's never do).
        if local {
            d.client_heartbeat_s = Some(super::DEFAULT_HEARTBEAT_S);
        }
    }
    fn label(&self) -> Option<&str> {
        self.settings.label.as_deref()
    }
    fn cluster(&self) -> Option<&str> {
        self.settings.cluster.as_deref()
    }
    fn destinations(&self) -> Option<usize> {
        self.settings.destinations
    }
    fn rate(&self) -> Option<Rate> {
        self.settings.rate
    }
    fn validate(&self, workload: &Workload, index: usize) -> Result<(), FieldError> {
        self.check(workload, index)
    }
    fn guarantee(&self, _cluster: Option<&ClusterSection>) -> Guarantee {
        if !self.settings.confirms {
            return Guarantee::None;
        }
        match self.kind {
            QueueKind::Quorum => Guarantee::MajorityFsync,
            QueueKind::Stream => Guarantee::MajorityWritten,
            QueueKind::Mirrored if self.settings.persistent => Guarantee::AllMirrorsDisk,
            QueueKind::Mirrored => Guarantee::AllMirrorsMemory,
        }
    }
    fn supported_on(&self, version: &BrokerVersion) -> Result<(), String> {
        self.kind.supported_on(version)
    }
    async fn build(&self, endpoints: &Endpoints) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(Arc::new(
            super::RabbitBackend::connect(self.kind, self.settings, &endpoints.rabbitmq).await?,
        ))
    }
}
