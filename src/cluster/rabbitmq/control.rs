//! What the fault runner may do to a local RabbitMQ cluster's nodes, named by Erlang node name.

use std::time::Duration;

use async_trait::async_trait;

use super::LocalRabbitCluster;
use crate::cluster::process::OwnedProcess;
use crate::cluster::ClusterError;
use crate::fault::control::{no_such_node, NodeControl};

/// How long `heal` waits for every RabbitMQ node to be running and clustered again (a resumed
/// node may first have to find that its peers gave it up). A restarted node has already been
/// waited for by `restart`.
const RABBIT_HEAL_TIMEOUT: Duration = Duration::from_secs(40);

impl LocalRabbitCluster {
    fn index_of(&self, node: &str) -> Result<usize, ClusterError> {
        self.nodes()
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| no_such_node(node, &self.node_names()))
    }
}

impl LocalRabbitCluster {
    fn net_or_err(&self, node: &str) -> Result<&crate::cluster::netns::ClusterNet, ClusterError> {
        self.net().ok_or_else(|| ClusterError::Node {
            node: node.to_string(),
            message: "cannot be cut off: its cluster runs on the loopback; set network = \"namespaces\" in its [clusters.<name>] section".into(),
            log_tail: String::new(),
        })
    }
}

#[async_trait]
impl NodeControl for LocalRabbitCluster {
    fn node_names(&self) -> Vec<String> {
        self.nodes().iter().map(|n| n.name.clone()).collect()
    }

    fn process_of(&self, node: &str) -> Option<&OwnedProcess> {
        self.nodes()
            .iter()
            .find(|n| n.name == node)
            .and_then(|n| n.process.as_ref())
    }

    async fn kill(&mut self, node: &str, graceful: bool) -> Result<(), ClusterError> {
        let i = self.index_of(node)?;
        if graceful {
            self.stop_node(i).await
        } else {
            self.kill_node(i).await
        }
    }

    async fn restart(&mut self, node: &str) -> Result<(), ClusterError> {
        let i = self.index_of(node)?;
        self.restart_node(i).await
    }

    fn partition(&mut self, node: &str) -> Result<(), ClusterError> {
        let i = self.index_of(node)?;
        self.net_or_err(node)?.cut(i)
    }

    fn join(&mut self, node: &str) -> Result<(), ClusterError> {
        let i = self.index_of(node)?;
        self.net_or_err(node)?.join(i)
    }

    fn is_partitioned(&self, node: &str) -> bool {
        match (self.index_of(node), self.net()) {
            (Ok(i), Some(net)) => net.is_cut(i),
            _ => false,
        }
    }

    async fn wait_whole(&mut self) -> Result<(), ClusterError> {
        self.wait_healthy(RABBIT_HEAL_TIMEOUT).await
    }
}
