//! `Backend::backlog`: what the broker still holds for the harness's consumers.
//!
//! Quorum and mirrored queues: `ready` comes from a passive `queue.declare`, whose answer the
//! queue's leader (quorum: a query of its Raft state) or master (classic) computes when asked:
//! exact and immediate, unlike the management API's `messages_ready`, which is refreshed only
//! every few seconds (a quorum queue publishes its counts on a 5 s tick, the management plugin
//! collects them every 5 s). The same answer counts the queue's consumers, and this is what
//! makes `unacked` exact: RabbitMQ keeps no figure of unacknowledged deliveries that is fresher
//! than those statistics, but the harness's own consumers are the only ones, and each keeps
//! count of the deliveries it handed out and has not acked (a `ConsumerGauge`). Once the
//! broker counts as many consumers as the harness holds open, its `ready` is consistent with
//! them: in particular a consumer that was closed has been removed, and the deliveries it held
//! are back in `ready` (a quorum queue returns them in the same Raft command that removes the
//! consumer; a classic queue in the same step). So with the consumers closed, the figures are
//! exact. While consumers are open, deliveries the client library has received but the harness
//! has not yet taken (at most `prefetch` per consumer) are in neither figure.
//!
//! Streams: nothing is removed by an ack, and a reopened consumer starts after the last offset
//! it handed out (`offsets.rs`), so what the broker holds for a consumer is every entry after
//! that offset, up to the stream's last offset (read over the stream protocol,
//! `stream_ends.rs`); for a stream no consumer has read yet, every entry. `unacked` is 0.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use parking_lot::Mutex;

use super::connection::close_connection;
use super::stream_ends::{stream_ends, StreamEnds, StreamTarget};
use super::RabbitBackend;
use crate::backend::{BackendError, Backlog, Destination};

/// How long the broker's consumer count may take to agree with the harness's (a closed
/// consumer's channel is removed a moment after its close).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// How long a stream subscription waits for a chunk before the stream counts as empty.
const STREAM_EMPTY_WAIT: Duration = Duration::from_secs(1);
/// How long reading one stream's ends may take on one node.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What one open consumer holds: the deliveries it handed out and has not acked.
#[derive(Debug)]
pub(super) struct ConsumerGauge {
    unacked: AtomicU64,
    open: AtomicBool,
}

impl ConsumerGauge {
    /// Called once per batch (after a poll or an ack).
    pub fn set_unacked(&self, n: usize) {
        self.unacked.store(n as u64, Ordering::Relaxed);
    }

    /// The channel is gone (an error): the broker has requeued or will requeue its deliveries.
    pub fn closed(&self) {
        self.open.store(false, Ordering::Relaxed);
        self.unacked.store(0, Ordering::Relaxed);
    }
}

/// Queue name -> the gauges of the consumers opened on it. A consumer owns its gauge: once it
/// is closed or dropped, the gauge no longer counts.
#[derive(Debug, Clone, Default)]
pub(super) struct ConsumerGauges(Arc<Mutex<HashMap<String, Vec<Weak<ConsumerGauge>>>>>);

impl ConsumerGauges {
    pub fn register(&self, queue: &str) -> Arc<ConsumerGauge> {
        let gauge = Arc::new(ConsumerGauge {
            unacked: AtomicU64::new(0),
            open: AtomicBool::new(true),
        });
        let mut map = self.0.lock();
        let list = map.entry(queue.to_string()).or_default();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&gauge));
        gauge
    }

    /// (open consumers, deliveries they handed out and have not acked) on `queue`.
    pub fn held(&self, queue: &str) -> (u64, u64) {
        let map = self.0.lock();
        let live = map
            .get(queue)
            .into_iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .filter(|g| g.open.load(Ordering::Relaxed));
        live.fold((0, 0), |(n, u), g| {
            (n + 1, u + g.unacked.load(Ordering::Relaxed))
        })
    }

    pub fn forget(&self, queue: &str) {
        self.0.lock().remove(queue);
    }
}

impl RabbitBackend {
    /// `Backend::backlog` for quorum and mirrored queues (see the module's comment).
    pub(super) async fn queue_backlog(
        &self,
        destinations: &[Destination],
    ) -> Result<Backlog, BackendError> {
        let (conn, channel, _) = self
            .open_channel(0, true, "backlog")
            .await
            .map_err(|e| self.setup_err("connect to read the backlog", e.to_string()))?;
        let result = async {
            let mut total = Backlog::default();
            for d in destinations {
                let (ready, unacked) = self.settled_figures(&channel, &d.name).await?;
                total.ready += ready;
                total.unacked += unacked;
            }
            Ok(total)
        }
        .await;
        close_connection(&conn).await;
        result
    }

    /// (ready, unacked) of `queue`, read once the broker counts as many consumers on it as the
    /// harness holds open.
    async fn settled_figures(
        &self,
        channel: &Channel,
        queue: &str,
    ) -> Result<(u64, u64), BackendError> {
        let action = || format!("read the backlog of queue {queue}");
        let start = Instant::now();
        let mut zero_answers = 0;
        loop {
            let options = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let q = channel
                .queue_declare(queue.into(), options, FieldTable::default())
                .await
                .map_err(|e| self.setup_err(action(), format!("passive declare: {e}")))?;
            let (ready, consumers) = (u64::from(q.message_count()), u64::from(q.consumer_count()));
            let (open, unacked) = self.consumer_gauges.held(queue);
            // A quorum queue whose leader does not answer within 250 ms is reported as empty
            // without consumers (rabbit_quorum_queue:stat/1): believe that only when asked twice.
            if ready == 0 && consumers == 0 && open == 0 {
                zero_answers += 1;
                if zero_answers < 2 {
                    tokio::time::sleep(SETTLE_POLL).await;
                    continue;
                }
            }
            if consumers == open {
                return Ok((ready, unacked));
            }
            if start.elapsed() > SETTLE_TIMEOUT {
                return Err(self.setup_err(
                    action(),
                    format!(
                        "the broker counts {consumers} consumers on it, the harness holds {open} \
                         open, still after {SETTLE_TIMEOUT:?} (a consumer whose connection died \
                         unnoticed, or another client consuming it)"
                    ),
                ));
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// `Backend::backlog` for streams: `None` when no node lists a stream protocol listener.
    pub(super) async fn stream_backlog(
        &self,
        destinations: &[Destination],
    ) -> Result<Option<Backlog>, BackendError> {
        let ports = self
            .stream_ports()
            .await
            .map_err(|m| self.setup_err("find the stream protocol listeners", m))?;
        if ports.iter().all(Option::is_none) {
            return Ok(None);
        }
        let reads = destinations.iter().map(|d| self.stream_ready(d, &ports));
        let mut total = Backlog::default();
        for ready in futures::future::join_all(reads).await {
            total.ready += ready?;
        }
        Ok(Some(total))
    }

    /// Entries of stream `dest` after what its consumers handed out (all of them if none has).
    async fn stream_ready(
        &self,
        dest: &Destination,
        ports: &[Option<u16>],
    ) -> Result<u64, BackendError> {
        let action = || format!("read the backlog of stream {}", dest.name);
        let ends = self
            .read_stream_ends(dest, ports)
            .await
            .map_err(|m| self.setup_err(action(), m))?;
        let handed_out = self.stream_offsets.positions(&dest.name);
        match (ends, handed_out.is_empty()) {
            (None, true) => Ok(0),
            (None, false) => Err(self.setup_err(
                action(),
                format!(
                    "no chunk came within {STREAM_EMPTY_WAIT:?}, though consumers have read up \
                     to offset {}",
                    handed_out.iter().max().copied().unwrap_or_default()
                ),
            )),
            (Some(e), true) => Ok((e.last + 1).saturating_sub(e.first)),
            (Some(e), false) => Ok(handed_out
                .iter()
                .map(|&o| e.last.saturating_sub(u64::try_from(o).unwrap_or(0)))
                .sum()),
        }
    }

    /// The ends of stream `dest`, read on its leader's node first (it knows the newest
    /// committed chunk at once), then on the other nodes with a stream listener.
    async fn read_stream_ends(
        &self,
        dest: &Destination,
        ports: &[Option<u16>],
    ) -> Result<Option<StreamEnds>, String> {
        let n = self.nodes.len();
        let leader = match self.placement(&dest.name).await {
            Ok(p) => self.node_index(&p.leader),
            Err(_) => None,
        }
        .or_else(|| self.leaders.lock().get(&dest.name).copied())
        .unwrap_or(0);
        let mut errors = Vec::new();
        for k in 0..n {
            let idx = (leader + k) % n;
            let Some(port) = ports[idx] else { continue };
            let node = &self.nodes[idx];
            let addr = format!("{}:{port}", node.uri.authority.host);
            let target = StreamTarget {
                addr: &addr,
                user: &node.uri.authority.userinfo.username,
                password: &node.uri.authority.userinfo.password,
                vhost: &self.vhost,
                stream: &dest.name,
            };
            match tokio::time::timeout(STREAM_READ_TIMEOUT, stream_ends(&target, STREAM_EMPTY_WAIT))
                .await
            {
                Ok(Ok(ends)) => return Ok(ends),
                Ok(Err(e)) => errors.push(format!("{}: {e}", node.name)),
                Err(_) => errors.push(format!(
                    "{}: stream protocol at {addr}: no answer within {STREAM_READ_TIMEOUT:?}",
                    node.name
                )),
            }
        }
        Err(errors.join("; "))
    }

    /// Each node's stream protocol port (in node order), from the listeners the management
    /// API lists; None for a node without one.
    async fn stream_ports(&self) -> Result<Vec<Option<u16>>, String> {
        let overview = self
            .mgmt
            .call(|c| async move { c.get_json("/api/overview").await })
            .await?;
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        Ok(crate::cluster::rabbitmq::http::stream_ports_of(
            &overview, &names,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_count_open_consumers_until_they_close_or_drop() {
        let gauges = ConsumerGauges::default();
        let a = gauges.register("q");
        let b = gauges.register("q");
        let other = gauges.register("r");
        a.set_unacked(5);
        b.set_unacked(2);
        other.set_unacked(100);
        assert_eq!(gauges.held("q"), (2, 7));
        b.closed();
        assert_eq!(gauges.held("q"), (1, 5));
        drop(a);
        assert_eq!(gauges.held("q"), (0, 0));
        assert_eq!(gauges.held("r"), (1, 100));
        gauges.forget("r");
        assert_eq!(gauges.held("r"), (0, 0));
        assert_eq!(gauges.held("nothing"), (0, 0));
    }
}
