//! The failure-detection settings a backend ran with: how long a node that stops answering goes
//! unnoticed, by its peers (Redis `cluster-node-timeout`, RabbitMQ's `net_ticktime`) and by the
//! client (the Redis client's reply timeout, the AMQP heartbeat). A killed process closes its
//! sockets and is noticed at once; a frozen or cut-off one only after these, so every failover
//! figure is read beside them (meta.json records them per backend, the report prints them).

use serde::{Deserialize, Serialize};

use super::clusters::ClusterSection;
use super::model::{BackendSpec, ClusterMode, Scenario};

/// What a results folder records about one backend's failure detection. A field is absent when
/// it does not apply to the backend, or is not known (a cluster brokerbench did not start keeps
/// its own settings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureDetection {
    /// Redis Cluster's `cluster-node-timeout`, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_node_timeout_ms: Option<u64>,
    /// Erlang's `net_ticktime` on the RabbitMQ nodes, s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rabbitmq_net_ticktime_s: Option<u32>,
    /// How long the client waits for a node's reply before it gives that node up (Redis:
    /// `reply_timeout_ms`), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_reply_timeout_ms: Option<u64>,
    /// Time a command may block by design, added to the reply timeout (Redis: WAIT's
    /// `wait_timeout_ms` when `wait_replicas` is set), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_wait_timeout_ms: Option<u64>,
    /// The heartbeat the client asked for, s (a dead peer after about two missed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_heartbeat_s: Option<u16>,
    /// The protocol of that heartbeat (AMQP 0-9-1, the stream protocol); AMQP when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_heartbeat_protocol: Option<String>,
}

impl FailureDetection {
    /// One line for the report, e.g. "cluster-node-timeout 2000 ms, client reply timeout
    /// 2000 ms"; "not recorded" when nothing is known (a run recorded before these were).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ms) = self.redis_node_timeout_ms {
            parts.push(format!("cluster-node-timeout {ms} ms"));
        }
        if let Some(s) = self.rabbitmq_net_ticktime_s {
            parts.push(format!("net_ticktime {s} s"));
        }
        if let Some(ms) = self.client_reply_timeout_ms {
            parts.push(match self.client_wait_timeout_ms {
                Some(wait) => format!("client reply timeout {ms} ms + WAIT {wait} ms"),
                None => format!("client reply timeout {ms} ms"),
            });
        }
        if let Some(s) = self.client_heartbeat_s {
            let protocol = self.client_heartbeat_protocol.as_deref().unwrap_or("AMQP");
            parts.push(format!("{protocol} heartbeat {s} s"));
        }
        if parts.is_empty() {
            "not recorded".into()
        } else {
            parts.join(", ")
        }
    }

    /// Read from meta.json's entry for one backend; absent in runs recorded before.
    pub fn from_meta(backend: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(backend.get("failure_detection")?.clone()).ok()
    }
}

impl Scenario {
    /// The failure-detection settings `spec` runs with on its cluster.
    pub fn failure_detection(&self, spec: &BackendSpec) -> FailureDetection {
        let section = spec.cluster().and_then(|name| self.clusters.get(name));
        let mut d = FailureDetection::default();
        match section {
            Some(ClusterSection::Redis(r)) if r.mode == ClusterMode::Local => {
                d.redis_node_timeout_ms = Some(r.node_timeout_ms);
            }
            Some(ClusterSection::Rabbitmq(r)) if r.mode == ClusterMode::Local => {
                d.rabbitmq_net_ticktime_s = Some(r.net_ticktime_s);
            }
            _ => {}
        }
        let local = section.is_some_and(|s| match s {
            ClusterSection::Redis(r) => r.mode == ClusterMode::Local,
            ClusterSection::Rabbitmq(r) => r.mode == ClusterMode::Local,
        });
        spec.backend_type().client_detection(local, &mut d);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> Scenario {
        let head = "name = \"d\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n";
        crate::scenario::parse(std::path::Path::new("d.toml"), &format!("{head}{text}"))
            .expect("scenario")
    }

    #[test]
    fn records_the_timeouts_of_each_side() {
        let s = scenario(
            "[clusters.redis]\nnode_timeout_ms = 3000\n[clusters.rabbitmq]\nnet_ticktime_s = 6\n\
             [[backends]]\ntype = \"redis-streams\"\nreply_timeout_ms = 1500\nwait_replicas = 1\n\
             [[backends]]\ntype = \"rabbitmq-quorum\"\n",
        );
        let redis = s.failure_detection(&s.effective_spec(&s.backends[0]));
        assert_eq!(
            redis.describe(),
            "cluster-node-timeout 3000 ms, client reply timeout 1500 ms + WAIT 1000 ms"
        );
        let quorum = s.failure_detection(&s.effective_spec(&s.backends[1]));
        assert_eq!(quorum.describe(), "net_ticktime 6 s, AMQP heartbeat 5 s");
        // meta.json round trip, and a run recorded before: not recorded.
        let json = serde_json::json!({ "failure_detection": redis });
        assert_eq!(FailureDetection::from_meta(&json), Some(redis));
        assert_eq!(FailureDetection::from_meta(&serde_json::json!({})), None);
        assert_eq!(FailureDetection::default().describe(), "not recorded");
    }

    #[test]
    fn an_external_clusters_own_settings_are_not_known() {
        let s = scenario(
            "[clusters.redis]\nmode = \"external\"\nnodes = [\"127.0.0.1:7000\"]\n\
             [[backends]]\ntype = \"redis-streams\"\n",
        );
        let d = s.failure_detection(&s.effective_spec(&s.backends[0]));
        assert_eq!(d.redis_node_timeout_ms, None);
        assert_eq!(d.describe(), "client reply timeout 2000 ms");
    }
}
