//! What the fault runner may do to a local Redis Cluster's nodes, named by `host:port`.

use std::time::Duration;

use async_trait::async_trait;

use super::LocalRedisCluster;
use crate::cluster::netns::ClusterNet;
use crate::cluster::process::OwnedProcess;
use crate::cluster::ClusterError;
use crate::fault::control::{no_such_node, NodeControl};

/// How long `heal` waits for a Redis cluster to be healthy again.
const REDIS_HEAL_TIMEOUT: Duration = Duration::from_secs(60);

impl LocalRedisCluster {
    fn port_of(&self, node: &str) -> Result<u16, ClusterError> {
        self.nodes()
            .iter()
            .find(|n| n.address() == node)
            .map(|n| n.port)
            .ok_or_else(|| no_such_node(node, &self.node_names()))
    }
}

impl LocalRedisCluster {
    /// The cluster's network and the node's index in it.
    fn net_of(&self, node: &str) -> Result<(&ClusterNet, usize), ClusterError> {
        let i = self
            .nodes()
            .iter()
            .position(|n| n.address() == node)
            .ok_or_else(|| no_such_node(node, &self.node_names()))?;
        let net = self.net().ok_or_else(|| ClusterError::Node {
            node: node.to_string(),
            message: "cannot be cut off: its cluster runs on the loopback; set network = \"namespaces\" in its [clusters.<name>] section".into(),
            log_tail: String::new(),
        })?;
        Ok((net, i))
    }
}

#[async_trait]
impl NodeControl for LocalRedisCluster {
    fn node_names(&self) -> Vec<String> {
        self.nodes().iter().map(|n| n.address()).collect()
    }

    fn process_of(&self, node: &str) -> Option<&OwnedProcess> {
        self.nodes()
            .iter()
            .find(|n| n.address() == node)
            .and_then(|n| n.process.as_ref())
    }

    async fn kill(&mut self, node: &str, graceful: bool) -> Result<(), ClusterError> {
        let port = self.port_of(node)?;
        if graceful {
            self.stop_node(port).await
        } else {
            self.kill_node(port).await
        }
    }

    async fn restart(&mut self, node: &str) -> Result<(), ClusterError> {
        let port = self.port_of(node)?;
        self.restart_node(port).await
    }

    fn partition(&mut self, node: &str) -> Result<(), ClusterError> {
        let (net, i) = self.net_of(node)?;
        net.cut(i)
    }

    fn join(&mut self, node: &str) -> Result<(), ClusterError> {
        let (net, i) = self.net_of(node)?;
        net.join(i)
    }

    fn is_partitioned(&self, node: &str) -> bool {
        self.net_of(node).is_ok_and(|(net, i)| net.is_cut(i))
    }

    async fn wait_whole(&mut self) -> Result<(), ClusterError> {
        self.wait_healthy(REDIS_HEAL_TIMEOUT).await
    }
}
