//! Management API calls, each tried on the nodes in turn: queue placement, the node leading a
//! destination, waiting for a declared queue's leader and members, and deleting queues.

use std::time::{Duration, Instant};

use super::RabbitBackend;
use crate::backend::{BackendError, Destination};
use crate::cluster::rabbitmq::http::QueuePlacement;
use crate::scenario::{Placement, PlacementName};

/// How long one management API call may take before the next node is asked.
/// How long `setup` waits for the management API to report a queue's leader (and mirrors).
const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(20);

impl RabbitBackend {
    pub(super) async fn placement(&self, queue: &str) -> Result<QueuePlacement, String> {
        let vhost = self.vhost.clone();
        let queue_owned = queue.to_string();
        self.mgmt
            .call(move |c| {
                let (vhost, queue) = (vhost.clone(), queue_owned.clone());
                async move { c.queue_placement(&vhost, &queue).await }
            })
            .await
    }

    /// Every queue's placement in one management call (`/api/queues/<vhost>`).
    pub(super) async fn placements(&self) -> Result<Vec<(String, QueuePlacement)>, String> {
        let vhost = self.vhost.clone();
        self.mgmt
            .call(move |c| {
                let vhost = vhost.clone();
                async move { c.queues(&vhost).await }
            })
            .await
    }

    /// The 0-based index of the node leading `dest`: asked from the management API when
    /// connections follow the leader (it moves on failover), else as remembered from setup.
    pub(super) async fn leader_of(&self, dest: &Destination) -> usize {
        let remembered = self.leaders.lock().get(&dest.name).copied();
        if self.settings.connect == Placement::Named(PlacementName::Leader) {
            if let Ok(p) = self.placement(&dest.name).await {
                if let Some(idx) = self.node_index(&p.leader) {
                    self.leaders.lock().insert(dest.name.clone(), idx);
                    return idx;
                }
            }
        }
        remembered.unwrap_or(0)
    }

    /// Wait until the management API knows the queue's leader and `copies` members, and check
    /// the leader is on `expected`. If the members stay incomplete, the known leader suffices.
    pub(super) async fn await_placement(
        &self,
        queue: &str,
        expected: usize,
        copies: usize,
    ) -> Result<usize, BackendError> {
        let start = Instant::now();
        let action = || format!("check the placement of queue {queue}");
        loop {
            let (leader, last) = match self.placement(queue).await {
                Ok(p) if !p.leader.is_empty() => {
                    let complete = p.members.len() >= copies;
                    (
                        Some(p.leader.clone())
                            .filter(|_| complete || start.elapsed() > PLACEMENT_TIMEOUT),
                        format!("{p:?}"),
                    )
                }
                Ok(p) => (None, format!("{p:?}")),
                Err(e) => (None, e),
            };
            if let Some(leader) = leader {
                let Some(idx) = self.node_index(&leader) else {
                    return Err(self.setup_err(
                        action(),
                        format!(
                            "its leader {leader} is not one of the endpoints' nodes ({}); the endpoints' node names must match the cluster's",
                            self.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                };
                if idx != expected {
                    return Err(self.setup_err(
                        action(),
                        format!(
                            "it was declared on {} with the client-local leader locator, but its leader is {leader}",
                            self.nodes[expected].name
                        ),
                    ));
                }
                return Ok(idx);
            }
            if start.elapsed() > PLACEMENT_TIMEOUT {
                return Err(self.setup_err(
                    format!("wait for the leader of queue {queue}"),
                    format!("not known after {PLACEMENT_TIMEOUT:?}; last seen: {last}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub(super) async fn delete_queue(&self, queue: &str) -> Result<(), String> {
        let vhost = self.vhost.clone();
        let queue_owned = queue.to_string();
        self.mgmt
            .call(move |c| {
                let (vhost, queue) = (vhost.clone(), queue_owned.clone());
                async move { c.delete_queue(&vhost, &queue).await }
            })
            .await
    }
}
