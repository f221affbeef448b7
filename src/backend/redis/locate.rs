//! Which master serves a slot, asked so that a node that stops answering cannot hold the
//! question up: every known node is asked `CLUSTER NODES` at once, each over its own short
//! connection with a short limit (`Locator::question_timeout`), and the answer is the master
//! claim with the highest config epoch among the views that came back (as the cluster itself
//! settles a failover). A master that one view flags `fail` serves nothing.
//!
//! After a producer or consumer gave up on its master (no reply within the reply timeout, or a
//! lost connection), it asks again with that node as the `suspect`: the suspect is not asked,
//! and a view that still names it is believed only if it answers a PING within the limit. Until
//! then the answer is a definite `Unavailable` and the client asks again later. So a client
//! leaves a frozen master as soon as any other node names its replacement, and goes back to
//! it if it wakes before a failover. This is what cluster clients such as redis-py, Lettuce and
//! go-redis do after a socket timeout: refresh the slot map from another node.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::as_text;
use super::node_conn::{value_of, NodeConn};
use crate::backend::OpError;
use crate::cluster::redis::{parse_cluster_nodes, pick_slot_owner, NodeLine};

/// The longest a question to one node may take, connection included.
pub const QUESTION_TIMEOUT: Duration = Duration::from_millis(500);
/// Once one node has answered CLUSTER NODES, the others have this much longer: nodes that
/// answer at all answer within a millisecond or two here, and a frozen one would cost the whole
/// `QUESTION_TIMEOUT` of every search.
const GRACE: Duration = Duration::from_millis(50);
/// How long the suspect has to answer PING before it is believed again (at most
/// `QUESTION_TIMEOUT`): while the other nodes still name it, each search waits this long.
const PING_TIMEOUT: Duration = Duration::from_millis(200);

/// Finds a slot's master; clones share the list of known nodes.
#[derive(Clone)]
pub(super) struct Locator {
    /// Addresses of the cluster's nodes: the seeds, then every node a view named.
    nodes: Arc<Mutex<Vec<String>>>,
    question_timeout: Duration,
}

impl Locator {
    /// `seeds`: `host:port` of nodes to ask first; `question_timeout`: the limit per node.
    pub(super) fn new(seeds: &[String], question_timeout: Duration) -> Self {
        Locator {
            nodes: Arc::new(Mutex::new(seeds.to_vec())),
            question_timeout,
        }
    }

    /// The master that serves `slot`, not believing `suspect` (the node last given up on)
    /// unless it answers again. Errors are definite: nothing was sent to the stream.
    pub(super) async fn master_of(
        &self,
        slot: u16,
        suspect: Option<&str>,
    ) -> Result<String, OpError> {
        let (views, errors) = self.views(suspect).await;
        let t = self.question_timeout;
        match pick_slot_owner(&views, slot) {
            Some(m) if Some(m.as_str()) != suspect => Ok(m),
            Some(m) => {
                if self.answers_ping(&m).await {
                    Ok(m)
                } else {
                    Err(OpError::Unavailable(format!(
                        "the stream's master {m} does not answer PING within {:?} and no \
                         other node names a new master for slot {slot} yet",
                        PING_TIMEOUT.min(t)
                    )))
                }
            }
            None if views.is_empty() => Err(nobody_answered(t, &errors)),
            None => Err(OpError::Unavailable(format!(
                "no master serves slot {slot} yet (its master is flagged failed, or no view \
                 names one)"
            ))),
        }
    }

    /// The cluster's nodes as the best-informed node that answers sees them: the view whose
    /// highest config epoch is the highest (it has heard of the latest failover). A frozen node
    /// costs the limit, not its silence.
    pub(super) async fn freshest_view(&self) -> Result<Vec<NodeLine>, OpError> {
        let (views, errors) = self.views(None).await;
        let epoch = |v: &Vec<NodeLine>| v.iter().map(|l| l.config_epoch).max().unwrap_or(0);
        let mut best: Option<Vec<NodeLine>> = None;
        for v in views {
            if best.as_ref().is_none_or(|b| epoch(&v) > epoch(b)) {
                best = Some(v);
            }
        }
        best.ok_or_else(|| nobody_answered(self.question_timeout, &errors))
    }

    /// CLUSTER NODES of every known node but `skip`, asked at once, and the errors of those that
    /// did not answer in time (within the limit, or `GRACE` after the first answer).
    async fn views(&self, skip: Option<&str>) -> (Vec<Vec<NodeLine>>, Vec<String>) {
        let asked: Vec<String> = self
            .nodes
            .lock()
            .iter()
            .filter(|a| Some(a.as_str()) != skip)
            .cloned()
            .collect();
        let mut pending: FuturesUnordered<_> = asked
            .iter()
            .map(|a| async move { (a, self.cluster_nodes(a).await) })
            .collect();
        let mut views = Vec::with_capacity(asked.len());
        let mut errors = Vec::new();
        let mut deadline = Instant::now() + self.question_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, pending.next()).await;
            let Ok(Some((address, answer))) = next else {
                break;
            };
            match answer {
                Ok(view) => {
                    if views.is_empty() {
                        deadline = deadline.min(Instant::now() + GRACE);
                    }
                    views.push(view);
                }
                Err(e) => errors.push(format!("{address}: {e}")),
            }
        }
        if !pending.is_empty() {
            errors.push(format!("{} more did not answer in time", pending.len()));
        }
        self.learn(&views);
        (views, errors)
    }

    /// CLUSTER NODES of the node at `address`, within the limit.
    async fn cluster_nodes(&self, address: &str) -> Result<Vec<NodeLine>, OpError> {
        let cmd = ::redis::cmd("CLUSTER").arg("NODES").get_packed_command();
        let v = self.ask(address, &cmd, self.question_timeout).await?;
        let text = as_text(&v)
            .ok_or_else(|| OpError::Protocol(format!("CLUSTER NODES answered {v:?}")))?;
        Ok(parse_cluster_nodes(&text))
    }

    /// Whether the node at `address` answers PING within the limit.
    async fn answers_ping(&self, address: &str) -> bool {
        let cmd = ::redis::cmd("PING").get_packed_command();
        let t = PING_TIMEOUT.min(self.question_timeout);
        matches!(self.ask(address, &cmd, t).await, Ok(v) if as_text(&v).as_deref() == Some("PONG"))
    }

    /// One command to one node over a connection of its own, connection included within `t`
    /// (a frozen node's kernel still accepts connections: only the reply never comes).
    async fn ask(
        &self,
        address: &str,
        packed: &[u8],
        t: Duration,
    ) -> Result<::redis::Value, OpError> {
        let work = async {
            let mut conn = NodeConn::open(address, t).await?;
            let mut frames = Vec::with_capacity(1);
            conn.exchange(packed, 1, &mut frames, t).await?;
            match frames.first() {
                Some(f) => value_of(f),
                None => Err(OpError::Protocol("no reply".into())),
            }
        };
        tokio::time::timeout(t, work)
            .await
            .unwrap_or_else(|_| Err(OpError::Timeout(format!("no answer within {t:?}"))))
    }

    /// Add the nodes the views name (with a usable address) to the known ones.
    fn learn(&self, views: &[Vec<NodeLine>]) {
        let mut nodes = self.nodes.lock();
        for line in views.iter().flatten() {
            let a = &line.status.address;
            let usable = a
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port != "0");
            if usable && !nodes.contains(a) {
                nodes.push(a.clone());
            }
        }
    }
}

fn nobody_answered(t: Duration, errors: &[String]) -> OpError {
    OpError::Unavailable(format!(
        "no node answered CLUSTER NODES within {t:?} ({})",
        if errors.is_empty() {
            "no node known besides the one given up on".to_string()
        } else {
            errors.join("; ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_every_usable_address_once() {
        let l = Locator::new(&["127.0.0.1:7001".to_string()], QUESTION_TIMEOUT);
        let view = parse_cluster_nodes(
            "a 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-8000\n\
             b 127.0.0.1:7002@17002 master - 0 0 2 connected 8001-16383\n\
             c :0@0 noaddr,handshake - 0 0 0 disconnected\n",
        );
        l.learn(&[view.clone(), view]);
        assert_eq!(*l.nodes.lock(), vec!["127.0.0.1:7001", "127.0.0.1:7002"]);
    }

    /// A node that accepts connections but never answers (as a frozen process's kernel does) is
    /// given up on within the limit, and is not believed without an answer.
    #[tokio::test]
    async fn a_silent_suspect_is_not_believed_and_does_not_hold_the_question_up() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let address = silent.local_addr().expect("address").to_string();
        let l = Locator::new(std::slice::from_ref(&address), Duration::from_millis(200));
        let started = std::time::Instant::now();
        let e = l.master_of(0, None).await.expect_err("nobody answers");
        assert!(e.is_definite(), "{e:?}");
        assert!(e.to_string().contains("no node answered"), "{e}");
        let e = l
            .master_of(0, Some(&address))
            .await
            .expect_err("only the suspect");
        assert!(e.is_definite(), "{e:?}");
        assert!(!l.answers_ping(&address).await);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        drop(silent);
    }

    /// A node on a port of its own that answers every command with `reply` (RESP), as often as
    /// asked; its address.
    async fn answering(reply: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 512];
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {
                        if socket.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    fn bulk(text: &str) -> String {
        format!("${}\r\n{text}\r\n", text.len())
    }

    /// After a failover the nodes other than the frozen master name its replica, which wins on
    /// its config epoch even beside a stale view; before it, the frozen master is not believed.
    #[tokio::test]
    async fn the_other_nodes_name_the_new_master_and_the_frozen_one_is_not_asked() {
        let frozen = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let old = frozen.local_addr().expect("address").to_string();
        let new = "127.0.0.1:7999";
        let stale = answering(bulk(&format!(
            "o {old}@1 master - 0 0 1 connected 0-16383\nr {new}@2 slave o 0 0 1 connected\n"
        )))
        .await;
        let l = Locator::new(&[old.clone(), stale.clone()], Duration::from_millis(300));
        let started = std::time::Instant::now();
        // Only a stale view, naming the frozen master: not believed (it does not answer PING).
        let e = l
            .master_of(42, Some(&old))
            .await
            .expect_err("no new master yet");
        assert!(
            e.is_definite() && e.to_string().contains("does not answer PING"),
            "{e}"
        );
        // The promoted replica's view, at a higher epoch: it wins.
        let fresh = answering(bulk(&format!(
            "r {new}@2 myself,master - 0 0 2 connected 0-16383\no {old}@1 master,fail? - 0 0 1 connected\n"
        )))
        .await;
        l.nodes.lock().push(fresh);
        assert_eq!(l.master_of(42, Some(&old)).await.expect("new master"), new);
        let view = l.freshest_view().await.expect("a view");
        assert!(
            view.iter().any(|n| n.myself && n.status.address == new),
            "{view:?}"
        );
        // Neither question waited for the frozen node longer than one limit.
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // A suspect that answers again is believed.
        let alive = answering("+PONG\r\n".into()).await;
        assert!(l.answers_ping(&alive).await);
        drop(frozen);
    }
}
