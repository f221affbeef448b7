//! What the fault runner may do to a local Redis Cluster's nodes, named by `host:port`.

use std::time::Duration;

use async_trait::async_trait;

use super::LocalRedisCluster;
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

    async fn wait_whole(&mut self) -> Result<(), ClusterError> {
        self.wait_healthy(REDIS_HEAL_TIMEOUT).await
    }
}
