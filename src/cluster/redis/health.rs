//! Waiting on the cluster: poll a condition (PING, `cluster_state:ok`, replica links, gossip
//! agreement) until it holds, a node dies, or the time runs out.

use std::future::Future;
use std::time::{Duration, Instant};

use super::client::{call, call_pipe, info_field};
use super::cluster_nodes::{parse_cluster_nodes, NodeLine};
use super::{LocalRedisCluster, RedisNode, RedisNodeStatus};
use crate::cluster::ClusterError;

/// Interval between two checks of a condition.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Limit for a started process to answer PING.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A condition not met yet: which node, and why.
pub(super) struct Pending {
    port: u16,
    reason: String,
}

pub(super) type Probe = Result<Option<Pending>, ClusterError>;

pub(super) fn pending(port: u16, reason: impl Into<String>) -> Probe {
    Ok(Some(Pending {
        port,
        reason: reason.into(),
    }))
}

impl LocalRedisCluster {
    /// Wait until every given node answers PING (fails at once if one's process exits).
    pub(super) async fn wait_answering(&self, nodes: &[RedisNode]) -> Result<(), ClusterError> {
        self.poll("redis-server to answer PING", PING_TIMEOUT, || async move {
            for node in nodes {
                if !node.expected_running()? {
                    return Err(node.error("is not running"));
                }
                match call::<String>(&node.address(), &redis::cmd("PING")).await {
                    Ok(pong) if pong == "PONG" => {}
                    Ok(other) => return pending(node.port, format!("PING answered {other:?}")),
                    Err(e) => return pending(node.port, format!("PING: {e}")),
                }
            }
            Ok(None)
        })
        .await
    }

    pub(super) async fn health_probe(&self) -> Probe {
        // Each running node (one round trip each): cluster_state:ok, its own CLUSTER NODES
        // line, and for a replica its link to the master as the replica itself reports it.
        let mut views: Vec<(u16, RedisNodeStatus, Vec<NodeLine>)> = Vec::new();
        let mut all_running = true;
        for node in &self.nodes {
            if !node.expected_running()? {
                all_running = false;
                continue;
            }
            let mut pipe = redis::pipe();
            pipe.cmd("CLUSTER")
                .arg("INFO")
                .cmd("CLUSTER")
                .arg("NODES")
                .cmd("INFO")
                .arg("replication");
            let (info, nodes, repl) =
                match call_pipe::<(String, String, String)>(&node.address(), &pipe).await {
                    Ok(answers) => answers,
                    Err(e) => {
                        return pending(
                            node.port,
                            format!("CLUSTER INFO, CLUSTER NODES, INFO replication: {e}"),
                        )
                    }
                };
            if info_field(&info, "cluster_state") != Some("ok") {
                let state = info_field(&info, "cluster_state").unwrap_or("?");
                return pending(node.port, format!("cluster_state:{state}"));
            }
            let lines = parse_cluster_nodes(&nodes);
            let Some(me) = lines.iter().find(|l| l.myself).map(|l| l.status.clone()) else {
                return pending(node.port, "CLUSTER NODES has no line for the node itself");
            };
            match me.role.as_str() {
                "master" => {}
                "replica" if info_field(&repl, "master_link_status") == Some("up") => {}
                "replica" => {
                    let status = info_field(&repl, "master_link_status").unwrap_or("?");
                    return pending(
                        node.port,
                        format!("replica with master_link_status:{status}"),
                    );
                }
                other => return pending(node.port, format!("role {other} (flags {})", me.flags)),
            }
            views.push((node.port, me, lines));
        }
        if views.is_empty() {
            return Err(self.state_error("no node of the cluster is running"));
        }
        // Every running node sees every other running node as that node sees itself (gossip
        // has spread), so `status` from any node tells the same story.
        for (port, _, lines) in &views {
            for (other_port, other, _) in views.iter().filter(|(p, ..)| p != port) {
                let Some(seen) = lines
                    .iter()
                    .find(|l| l.status.id == other.id)
                    .map(|l| &l.status)
                else {
                    return pending(*port, format!("does not know {} yet", self.at(*other_port)));
                };
                if (&seen.role, &seen.master_id, &seen.slots)
                    != (&other.role, &other.master_id, &other.slots)
                    || !seen.connected
                {
                    return pending(
                        *port,
                        format!(
                            "sees {} as {} (flags {}, slots {}), which says it is {} (slots {})",
                            self.at(*other_port),
                            seen.role,
                            seen.flags,
                            seen.slots,
                            other.role,
                            other.slots
                        ),
                    );
                }
            }
        }
        // With every node running, every master serving slots has its replicas.
        if all_running {
            for (port, me, _) in views
                .iter()
                .filter(|(_, me, _)| me.role == "master" && me.slots != "-")
            {
                let n = views
                    .iter()
                    .filter(|(_, r, _)| r.master_id.as_ref() == Some(&me.id))
                    .count();
                if n < self.config.replicas_per_master {
                    let want = self.config.replicas_per_master;
                    return pending(*port, format!("master has {n} of {want} replica(s) linked"));
                }
            }
        }
        Ok(None)
    }

    /// Poll `probe` every POLL_EVERY until it reports nothing pending, fails, or `timeout` passes.
    /// The address of the node on `port`, for messages.
    fn at(&self, port: u16) -> String {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .map_or_else(|| format!("port {port}"), RedisNode::address)
    }

    pub(super) async fn poll<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Probe>,
    {
        let start = Instant::now();
        loop {
            let Some(p) = probe().await? else {
                return Ok(());
            };
            if start.elapsed() >= timeout {
                let node = self.nodes.iter().find(|n| n.port == p.port);
                return Err(ClusterError::Timeout {
                    what: format!("{what} (last seen on {}: {})", self.at(p.port), p.reason),
                    waited_s: start.elapsed().as_secs_f64(),
                    detail: node.map(RedisNode::log_tail).unwrap_or_default(),
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}
