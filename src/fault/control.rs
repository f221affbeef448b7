//! What the fault runner may do to a cluster's nodes, by the names the backends' topology
//! uses: a Redis node's `host:port`, a RabbitMQ node's Erlang name. Implemented by the local
//! launchers, each in its own folder (`cluster/redis/control.rs`, `cluster/rabbitmq/control.rs`);
//! a cluster brokerbench did not start has no control (faults are refused for it when the
//! scenario is validated).

use async_trait::async_trait;

use crate::cluster::process::OwnedProcess;
use crate::cluster::ClusterError;

/// How a paused node came back (`NodeControl::resume_whole`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// The cluster healed once the node ran again.
    ByItself,
    /// It did not (the reason, one line): the node was restarted.
    Restarted(String),
}

#[async_trait]
pub trait NodeControl: Send {
    /// Every node, named as the backend's topology names them.
    fn node_names(&self) -> Vec<String>;
    /// The process running `node` (None: not running, or no such node).
    fn process_of(&self, node: &str) -> Option<&OwnedProcess>;
    /// SIGKILL (or, if `graceful`, stop) the node and wait until its process is gone.
    async fn kill(&mut self, node: &str, graceful: bool) -> Result<(), ClusterError>;
    /// Start a stopped node again and wait until it has rejoined.
    async fn restart(&mut self, node: &str) -> Result<(), ClusterError>;
    /// SIGSTOP the node: a frozen host. Its sockets stay open, so its peers and clients notice
    /// only through their own timeouts (`cluster-node-timeout`, `net_ticktime`, a client's
    /// operation timeout), as with a hung machine or a network that drops packets.
    async fn pause(&mut self, node: &str) -> Result<(), ClusterError> {
        self.send(node, libc::SIGSTOP, "pause")
    }
    /// SIGCONT a paused node.
    async fn resume(&mut self, node: &str) -> Result<(), ClusterError> {
        self.send(node, libc::SIGCONT, "resume")
    }
    fn send(&self, node: &str, sig: i32, what: &str) -> Result<(), ClusterError> {
        match self.process_of(node) {
            Some(p) if p.signal(sig) => Ok(()),
            _ => Err(ClusterError::Node {
                node: node.to_string(),
                message: format!("cannot {what}: its process is not running"),
                log_tail: String::new(),
            }),
        }
    }
    /// Cut the node off from the other nodes and from the clients while it keeps running (its
    /// link down). Only a cluster whose nodes run in network namespaces can.
    fn partition(&mut self, node: &str) -> Result<(), ClusterError> {
        Err(no_network(node))
    }
    /// Join a partitioned node to the network again.
    fn join(&mut self, node: &str) -> Result<(), ClusterError> {
        Err(no_network(node))
    }
    /// Whether the node is cut off now.
    fn is_partitioned(&self, _node: &str) -> bool {
        false
    }
    /// Join a partitioned node again and wait until the whole cluster is healthy; if it does
    /// not heal by itself, restart the node. Says how the node came back.
    async fn join_whole(&mut self, node: &str) -> Result<Resumed, ClusterError> {
        self.join(node)?;
        self.settle_or_restart(node).await
    }
    /// Wait until the whole cluster is healthy; if it does not get there, restart `node` (as
    /// an operator would) and wait again.
    async fn settle_or_restart(&mut self, node: &str) -> Result<Resumed, ClusterError> {
        match self.wait_whole().await {
            Ok(()) => Ok(Resumed::ByItself),
            Err(e) => {
                let why: String = e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect();
                self.kill(node, false).await?;
                self.restart(node).await?;
                self.wait_whole().await?;
                Ok(Resumed::Restarted(why))
            }
        }
    }
    /// Resume a paused node and wait until the whole cluster is healthy; if it does not heal by
    /// itself (RabbitMQ 3.10 can stay partitioned after a frozen node wakes up), restart the
    /// node, as an operator would. Says how the node came back.
    async fn resume_whole(&mut self, node: &str) -> Result<Resumed, ClusterError> {
        self.resume(node).await?;
        self.settle_or_restart(node).await
    }

    fn is_paused(&self, node: &str) -> bool {
        self.process_of(node).is_some_and(|p| p.is_paused())
    }

    /// After restarts: wait until the whole cluster is healthy again.
    async fn wait_whole(&mut self) -> Result<(), ClusterError> {
        Ok(())
    }

    fn is_running(&self, node: &str) -> bool {
        self.process_of(node).is_some_and(|p| p.is_running())
    }

    /// Join every partitioned node, resume every paused node, restart every node that is down
    /// and wait until the cluster is whole; returns the nodes it joined, resumed or restarted.
    async fn heal(&mut self) -> Result<Vec<String>, ClusterError> {
        let cut: Vec<String> = self
            .node_names()
            .into_iter()
            .filter(|n| self.is_partitioned(n))
            .collect();
        for n in &cut {
            self.join_whole(n).await?;
        }
        let paused: Vec<String> = self
            .node_names()
            .into_iter()
            .filter(|n| self.is_paused(n))
            .collect();
        for n in &paused {
            self.resume_whole(n).await?;
        }
        let down: Vec<String> = self
            .node_names()
            .into_iter()
            .filter(|n| !self.is_running(n))
            .collect();
        for n in &down {
            self.restart(n).await?;
        }
        self.wait_whole().await?;
        Ok(cut.into_iter().chain(paused).chain(down).collect())
    }
}

/// The error for a partition on a cluster whose nodes share the loopback.
fn no_network(node: &str) -> ClusterError {
    ClusterError::Node {
        node: node.to_string(),
        message: "cannot be cut off: its cluster runs on the loopback; set network = \"namespaces\" in its [clusters.<name>] section".into(),
        log_tail: String::new(),
    }
}

/// The error for a node name the cluster does not have.
pub(crate) fn no_such_node(node: &str, names: &[String]) -> ClusterError {
    ClusterError::Node {
        node: node.to_string(),
        message: format!(
            "is not a node of this cluster (nodes: {})",
            names.join(", ")
        ),
        log_tail: String::new(),
    }
}
