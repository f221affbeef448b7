//! The faults a scenario injects: what to break, when (from the start of the measured phase)
//! and whether to bring it back.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One `[[faults]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// When, counted from the start of the measured phase, e.g. "10s".
    #[serde(with = "super::model::humantime_serde_compat")]
    pub at: Duration,
    pub action: FaultAction,
    /// What to act on: "leader-of:<destination>", "replica-of:<destination>", "node:<name>",
    /// "random" (a node), or "consumer:<index>" (kill-consumer).
    pub target: Target,
    /// Start the node again this long after the fault (nodes only).
    #[serde(default, with = "super::model::humantime_option")]
    pub restart_after: Option<Duration>,
    /// Only for these backends (labels or types); empty: every backend of the scenario.
    #[serde(default)]
    pub backends: Vec<String>,
    /// Only for the backends that run on these clusters (`[clusters.<name>]` names); empty:
    /// on every cluster. With `backends`, a backend must match both.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// kill-consumer only: the consumer stops processing and acking, keeps receiving until it
    /// holds at least this many messages (or for `HOLD_MAX`), then dies holding them all (a
    /// consumer that crashes with its prefetch, or its XREADGROUP COUNT, in hand). Absent: it
    /// dies with the first batch it receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<usize>,
}

/// A kill-consumer with `hold` dies at the latest this long after it started holding, whatever
/// it holds by then (a RabbitMQ consumer gets no more than its prefetch unacked).
pub const HOLD_MAX: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// SIGKILL the node's process.
    Kill,
    /// Stop the node gracefully (SIGTERM, SIGKILL after a grace period).
    Stop,
    /// SIGSTOP the node's process, SIGCONT at `restart_after`: a frozen host. No socket is
    /// closed, so peers and clients notice only through their timeouts.
    Pause,
    /// The harness's own consumer task crashes: it drops the batch it holds without acking,
    /// closes its connection and never comes back. Another consumer must pick the messages up.
    KillConsumer,
    /// Cut the node off from the other nodes and the clients (its link down) while it keeps
    /// running; join it again at `restart_after`. Needs `network = "namespaces"`.
    Partition,
}

impl FaultAction {
    pub const ALL: [FaultAction; 4] = [
        FaultAction::Kill,
        FaultAction::Stop,
        FaultAction::Pause,
        FaultAction::KillConsumer,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            FaultAction::Kill => "kill",
            FaultAction::Stop => "stop",
            FaultAction::Pause => "pause",
            FaultAction::KillConsumer => "kill-consumer",
            FaultAction::Partition => "partition",
        }
    }

    /// How a node hit by this fault comes back at `restart_after`, for the timeline.
    pub fn comeback(&self) -> &'static str {
        match self {
            FaultAction::Pause => "resume",
            FaultAction::Partition => "heal",
            _ => "restart",
        }
    }
}

/// Which node (or consumer) a fault acts on; node targets are resolved from the live topology
/// at the moment of the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The node leading destination i (queue leader, or the master owning the stream's slot).
    LeaderOf(usize),
    /// A running node holding a copy of destination i (follower, mirror, or replica).
    ReplicaOf(usize),
    /// A node by name: a RabbitMQ node name (`rabbit2@localhost`) or a Redis `host:port`.
    Node(String),
    /// A running node, chosen at random.
    Random,
    /// The harness's consumer number i (0-based over the run).
    Consumer(usize),
}

pub const TARGET_FORMS: &str =
    "\"leader-of:<destination index>\", \"replica-of:<destination index>\", \"node:<name>\", \"random\" or \"consumer:<index>\"";

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        let index = |v: &str| {
            v.parse::<usize>().map_err(|_| {
                format!("\"{text}\": \"{v}\" is not a destination or consumer index (0, 1, ...)")
            })
        };
        match text.split_once(':') {
            None if text == "random" => Ok(Target::Random),
            Some(("leader-of", v)) => index(v).map(Target::LeaderOf),
            Some(("replica-of", v)) => index(v).map(Target::ReplicaOf),
            Some(("consumer", v)) => index(v).map(Target::Consumer),
            Some(("node", v)) if !v.is_empty() => Ok(Target::Node(v.to_string())),
            _ => Err(format!("\"{text}\" is not a target; use {TARGET_FORMS}")),
        }
    }

    pub fn is_node(&self) -> bool {
        !matches!(self, Target::Consumer(_))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::LeaderOf(i) => write!(f, "leader-of:{i}"),
            Target::ReplicaOf(i) => write!(f, "replica-of:{i}"),
            Target::Node(n) => write!(f, "node:{n}"),
            Target::Random => f.write_str("random"),
            Target::Consumer(i) => write!(f, "consumer:{i}"),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Target::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl FaultSpec {
    /// Whether this fault applies to the backend with `label` and `type_name` that runs on the
    /// cluster `cluster`.
    pub fn applies_to(&self, label: &str, type_name: &str, cluster: Option<&str>) -> bool {
        let backend =
            self.backends.is_empty() || self.backends.iter().any(|b| b == label || b == type_name);
        let on = self.clusters.is_empty()
            || cluster.is_some_and(|c| self.clusters.iter().any(|n| n == c));
        backend && on
    }

    /// One line for logs and the timeline, e.g. "kill leader-of:0".
    pub fn describe(&self) -> String {
        format!("{} {}", self.action.as_str(), self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for text in [
            "leader-of:0",
            "replica-of:2",
            "node:rabbit2@localhost",
            "node:127.0.0.1:7001",
            "random",
            "consumer:3",
        ] {
            let t = Target::parse(text).expect(text);
            assert_eq!(t.to_string(), text);
        }
        assert_eq!(
            Target::parse("node:127.0.0.1:7001"),
            Ok(Target::Node("127.0.0.1:7001".into()))
        );
        for bad in [
            "leader",
            "leader-of:x",
            "node:",
            "consumer:-1",
            "master-of:0",
        ] {
            let e = Target::parse(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }
}
