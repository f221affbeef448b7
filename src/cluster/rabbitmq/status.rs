//! What the cluster reports (running members, queue placement) and the waits on it: every node
//! booted, every node a running member.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::epmd::epmd_names_at;
use super::{LocalRabbitCluster, RabbitNode};
use crate::cluster::rabbitmq::http::{MgmtClient, QueuePlacement};
use crate::cluster::{ClusterError, Progress};

const POLL: Duration = Duration::from_millis(250);

/// Members of the cluster and the queues on it.
#[derive(Debug, Clone, Serialize)]
pub struct RabbitStatus {
    /// (node name, running member) for every configured node.
    pub nodes: Vec<(String, bool)>,
    /// Queues of vhost "/" with their placement.
    pub queues: Vec<(String, QueuePlacement)>,
}

impl LocalRabbitCluster {
    /// Running members and queue placement, from the management API of the first live node that
    /// answers.
    pub async fn status(&self) -> Result<RabbitStatus, ClusterError> {
        let mut errors = Vec::new();
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            let client = MgmtClient::new(
                &format!("{}:{}", n.host, n.http_port),
                &self.cfg.credentials(),
            );
            let running = match client.running_nodes().await {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let queues = match client.queues("/").await {
                Ok(q) => q,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let nodes = self
                .nodes
                .iter()
                .map(|m| (m.name.clone(), running.contains(&m.name)))
                .collect();
            return Ok(RabbitStatus { nodes, queues });
        }
        if errors.is_empty() {
            errors.push("no node of the cluster is running".to_string());
        }
        Err(ClusterError::Command {
            command: "GET /api/nodes, /api/queues/%2F".to_string(),
            message: errors.join("; "),
        })
    }

    /// A table of the nodes, then one line per queue: name, type, leader, members.
    pub fn format_status(s: &RabbitStatus) -> String {
        let mut out = String::new();
        let w = s
            .nodes
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!("{:<w$}  STATE\n", "NODE"));
        for (name, running) in &s.nodes {
            out.push_str(&format!(
                "{:<w$}  {}\n",
                name,
                if *running { "running" } else { "not running" }
            ));
        }
        out.push('\n');
        if s.queues.is_empty() {
            out.push_str("(no queues in vhost /)\n");
            return out;
        }
        let qw = s
            .queues
            .iter()
            .map(|(q, _)| q.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let tw = s
            .queues
            .iter()
            .map(|(_, p)| p.queue_type.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let lw = s
            .queues
            .iter()
            .map(|(_, p)| p.leader.len())
            .max()
            .unwrap_or(6)
            .max(6);
        out.push_str(&format!(
            "{:<qw$}  {:<tw$}  {:<lw$}  MEMBERS\n",
            "QUEUE", "TYPE", "LEADER"
        ));
        for (name, p) in &s.queues {
            out.push_str(&format!(
                "{:<qw$}  {:<tw$}  {:<lw$}  {}\n",
                name,
                p.queue_type,
                p.leader,
                p.members.join(",")
            ));
        }
        out
    }

    /// Wait until every live node's management API reports all configured nodes running.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), ClusterError> {
        let started = Instant::now();
        self.wait_members(None, started + timeout, started).await
    }

    /// Every node registered with epmd and `await_startup` succeeded.
    pub(super) async fn wait_booted(
        &mut self,
        deadline: Instant,
        progress: Progress<'_>,
    ) -> Result<(), ClusterError> {
        let waits = (0..self.nodes.len()).map(|i| self.wait_node_booted(i, deadline, progress));
        let results = futures::future::join_all(waits).await;
        for r in results {
            r?;
        }
        for i in 0..self.nodes.len() {
            self.adopt_pid_file(i)?;
        }
        Ok(())
    }

    pub(super) async fn wait_node_booted(
        &self,
        index: usize,
        deadline: Instant,
        progress: Progress<'_>,
    ) -> Result<(), ClusterError> {
        let start = Instant::now();
        let node = self.node(index)?;
        let died = |n: &RabbitNode| ClusterError::Node {
            node: n.name.clone(),
            message: format!(
                "exited while booting (log: {}, console: {})",
                n.log_file().display(),
                n.console_file().display()
            ),
            log_tail: n.log_tail(),
        };
        // 1. registered with the cluster's epmd (cheap to poll, unlike rabbitmqctl)
        loop {
            if !node.is_running() {
                return Err(died(node));
            }
            if let Ok(names) = epmd_names_at(&node.host, self.cfg.epmd_port).await {
                if names.iter().any(|n| n == node.short_name()) {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!(
                        "{} to register with epmd on {}:{}",
                        node.name, node.host, self.cfg.epmd_port
                    ),
                    waited_s: start.elapsed().as_secs_f64(),
                    detail: node.log_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        // 2. `rabbitmqctl await_startup` until it succeeds (it fails at once, rc 69, while the
        //    node is not reachable, and waits while it boots)
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let secs = left.as_secs().max(1).to_string();
            let last = match self
                .ctl(
                    node,
                    &["-q", "await_startup", "-t", &secs],
                    left + Duration::from_secs(5),
                )
                .await
            {
                Ok(_) => {
                    progress(&format!(
                        "{}: running ({:.1}s)",
                        node.name,
                        start.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
                Err(e) => e.to_string(),
            };
            if !node.is_running() {
                return Err(died(node));
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!(
                        "{} to boot (rabbitmqctl await_startup: {})",
                        node.name,
                        last.trim()
                    ),
                    waited_s: start.elapsed().as_secs_f64(),
                    detail: node.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Poll the management API of every live node until each reports all configured nodes as
    /// running. With `must_be_live`, that node must be live too (else it is an error at once).
    pub(super) async fn wait_members(
        &self,
        must_be_live: Option<usize>,
        deadline: Instant,
        started: Instant,
    ) -> Result<(), ClusterError> {
        let wanted: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let mut last_view: Vec<String>;
        loop {
            if let Some(i) = must_be_live {
                let n = self.node(i)?;
                if !n.is_running() {
                    return Err(ClusterError::Node {
                        node: n.name.clone(),
                        message: "exited while rejoining the cluster".to_string(),
                        log_tail: n.log_tail(),
                    });
                }
            }
            let live: Vec<&RabbitNode> = self.nodes.iter().filter(|n| n.is_running()).collect();
            let mut all_ok = !live.is_empty();
            last_view = Vec::new();
            let credentials = self.cfg.credentials();
            let credentials = &credentials;
            let views = futures::future::join_all(live.iter().map(|n| async move {
                let client = MgmtClient::new(&format!("{}:{}", n.host, n.http_port), credentials);
                (n, client.running_nodes().await)
            }))
            .await;
            let mut missing_somewhere: Option<String> = None;
            for (n, view) in views {
                match view {
                    Ok(running) => {
                        let missing: Vec<&String> =
                            wanted.iter().filter(|w| !running.contains(w)).collect();
                        if !missing.is_empty() {
                            all_ok = false;
                            if missing_somewhere.is_none() {
                                missing_somewhere = missing.first().map(|s| s.to_string());
                            }
                        }
                        last_view.push(format!(
                            "{} sees running: [{}]",
                            n.name,
                            running.join(", ")
                        ));
                    }
                    Err(e) => {
                        all_ok = false;
                        last_view.push(format!("{}: {e}", n.name));
                    }
                }
            }
            if all_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let culprit = missing_somewhere
                    .and_then(|m| self.nodes.iter().find(|n| n.name == m))
                    .or_else(|| self.nodes.iter().find(|n| !n.is_running()))
                    .or(self.nodes.first());
                let mut detail = if last_view.is_empty() {
                    "no node is running".to_string()
                } else {
                    last_view.join("\n")
                };
                if let Some(c) = culprit {
                    detail.push_str(&format!(
                        "\nlast lines of {}:\n{}",
                        c.log_file().display(),
                        c.log_tail()
                    ));
                }
                return Err(ClusterError::Timeout {
                    what: format!(
                        "all {} nodes to be running members of the cluster",
                        wanted.len()
                    ),
                    waited_s: started.elapsed().as_secs_f64(),
                    detail,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_status() {
        let s = RabbitStatus {
            nodes: vec![
                ("rabbit1@localhost".into(), true),
                ("rabbit2@localhost".into(), false),
            ],
            queues: vec![(
                "bb-q".into(),
                QueuePlacement {
                    leader: "rabbit1@localhost".into(),
                    members: vec!["rabbit1@localhost".into(), "rabbit2@localhost".into()],
                    queue_type: "quorum".into(),
                },
            )],
        };
        let t = LocalRabbitCluster::format_status(&s);
        assert!(t.contains("rabbit2@localhost  not running"), "{t}");
        assert!(
            t.contains("bb-q   quorum  rabbit1@localhost  rabbit1@localhost,rabbit2@localhost"),
            "{t}"
        );
        let empty = RabbitStatus {
            nodes: vec![],
            queues: vec![],
        };
        assert!(LocalRabbitCluster::format_status(&empty).contains("no queues"));
    }
}
