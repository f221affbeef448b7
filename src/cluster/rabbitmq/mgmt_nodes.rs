//! The management APIs of a cluster's nodes, asked in turn: one call goes to the node that
//! answered last (or the one after a node that has not answered), then to the others, each
//! within `MGMT_TIMEOUT`. Both RabbitMQ backends (AMQP
//! and the stream protocol) reach the management API through this.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::http::{HttpError, MgmtClient};

/// How long one node's management API may take to answer one call.
pub const MGMT_TIMEOUT: Duration = Duration::from_secs(5);

/// One client per node, in node order.
#[derive(Debug)]
pub struct MgmtNodes {
    clients: Vec<MgmtClient>,
    /// The node whose management API answered last (asked first next time).
    preferred: AtomicUsize,
}

impl MgmtNodes {
    pub fn new(clients: Vec<MgmtClient>) -> Self {
        MgmtNodes {
            clients,
            preferred: AtomicUsize::new(0),
        }
    }

    /// Run one management API call on the preferred node, then the others in order, each within
    /// `MGMT_TIMEOUT`. Returns the first success; a refusal (4xx) at once, since another node
    /// would say the same; otherwise every node's error.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: Fn(MgmtClient) -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let n = self.clients.len();
        if n == 0 {
            return Err("no management API to ask (the cluster lists no nodes)".into());
        }
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for k in 0..n {
            let idx = (first + k) % n;
            let client = self.clients[idx].clone();
            // Until this node answers, the next call starts at the one after it: a caller that
            // gives up within MGMT_TIMEOUT (the fault runner's topology poll) must not ask a
            // silent node (frozen, or cut off) first forever.
            self.preferred.store((idx + 1) % n, Ordering::Relaxed);
            match tokio::time::timeout(MGMT_TIMEOUT, call(client)).await {
                Ok(Ok(v)) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(
                    e @ HttpError::Status {
                        status: 400..=499, ..
                    },
                )) => return Err(e.to_string()),
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push(format!(
                    "management API at {}: no answer within {MGMT_TIMEOUT:?}",
                    self.clients[idx].addr()
                )),
            }
        }
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rabbitmq::http::Credentials;

    /// Nothing listens on these ports: every node's error is reported, none is skipped.
    #[tokio::test]
    async fn every_nodes_error_is_reported_when_none_answers() {
        let c = Credentials {
            user: "u".into(),
            password: "p".into(),
        };
        let nodes = MgmtNodes::new(vec![
            MgmtClient::new("127.0.0.1:9", &c),
            MgmtClient::new("127.0.0.1:10", &c),
        ]);
        let e = nodes
            .call(|c| async move { c.get_json("/api/overview").await })
            .await
            .expect_err("nothing answers");
        assert!(
            e.contains("127.0.0.1:9") && e.contains("127.0.0.1:10"),
            "{e}"
        );
        let empty = MgmtNodes::new(Vec::new());
        assert!(empty
            .call(|c| async move { c.get_json("/api/overview").await })
            .await
            .is_err());
    }
}
