//! A consumer over the stream protocol with server-side offset tracking.
//!
//! All consumers of one destination share one consumer name and subscribe as a single active
//! consumer group: one reads, the others wait. Whoever becomes active (at its first open, after
//! a reconnect, or when the active one dies) starts after the offset last stored on the broker
//! under that name (the first offset if none is stored). The consumer stores its offset after
//! every `store_offset_every` acknowledged messages, so at most that many come again after a
//! crash: redelivery, not loss. A super stream has one client consumer per partition, read in
//! turn. A partition reads the crate's consumer or, for an entry with `sub_entry_size`, a
//! subscription of the backend's own client, whose chunks are decoded here (`source.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;

use super::backlog::{group_name, Groups, Handed};
use super::leaders::LeaderWatch;
use super::source::{Polled, Source};
use super::wire::{amqp, chunk};
use crate::backend::{AckToken, Consumer, Delivery, OpError};

/// How long `poll` waits for a first delivery.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// The most deliveries one `poll` returns.
const POLL_MAX: usize = 2000;
/// How long storing an offset or closing may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a consumer checks that its streams' leaders have not moved.
const LEADER_CHECK: Duration = Duration::from_secs(1);
/// How long a partition may stay silent, while no consumer of its group hands anything out,
/// before the consumer checks whether the stream holds entries it should have delivered.
const STALL_AFTER: Duration = Duration::from_secs(3);
/// A delivery's ack token: partition index in the top byte, offset below.
const OFFSET_BITS: u32 = 56;

/// The ack token of a delivery at `offset` of partition `part`.
pub(super) fn token(part: usize, offset: u64) -> AckToken {
    AckToken::Tag(((part as u64) << OFFSET_BITS) | (offset & ((1 << OFFSET_BITS) - 1)))
}

/// (partition, offset) of a token made by `token`.
pub(super) fn untoken(t: &AckToken) -> Option<(usize, u64)> {
    match t {
        AckToken::Tag(v) => Some(((v >> OFFSET_BITS) as usize, v & ((1 << OFFSET_BITS) - 1))),
        _ => None,
    }
}

/// What is stored on the broker under one name: an offset, none, or unknown (the query failed).
pub(super) enum Stored {
    At(u64),
    None,
    Unknown,
}

/// Where a consumer that becomes active starts: after the offset stored under the first of
/// `names` (its group's name, then the earlier groups' of the stream, newest first) that has
/// one, or at offset 0 when none has. The offset chosen is also written to `start`, below
/// which deliveries are dropped (the broker delivers whole chunks, which may begin earlier).
pub(super) async fn resume_from<F, Fut>(names: Vec<String>, start: &AtomicU64, query: F) -> u64
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Stored>,
{
    let mut from = 0;
    'names: for name in names {
        let mut tries = 0;
        loop {
            match tokio::time::timeout(CALL_TIMEOUT, query(name.clone())).await {
                Ok(Stored::At(stored)) => {
                    from = stored + 1;
                    break 'names;
                }
                Ok(Stored::None) => break,
                // Unknown: reading from the start again only makes duplicates, never a gap.
                _ if tries >= 3 => break 'names,
                _ => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    start.store(from, Ordering::SeqCst);
    from
}

/// One partition's subscription and its offsets.
pub(super) struct Partition {
    pub stream: String,
    pub source: Source,
    /// The stream's leader when the consumer subscribed (`leaders.rs`).
    pub leader: String,
    /// Deliveries below this offset are dropped (set when the consumer becomes active).
    pub start: Arc<AtomicU64>,
    /// The highest offset acknowledged, and how many acks since the last store.
    pub acked: Option<u64>,
    pub since_store: u64,
    /// Since when nothing came on this partition, and what the group had handed out then.
    pub silent_since: Instant,
    pub handed_then: Option<u64>,
    /// Messages of this stream confirmed to producers (shared with them).
    pub confirmed: Arc<AtomicU64>,
    /// The generation of the group it joined (`backlog::Groups`), its name, and whether the
    /// broker has made it the group's active consumer.
    pub generation: u32,
    pub group: String,
    pub active: Arc<AtomicBool>,
}

/// A partition's subscription ends with it: the harness drops a consumer it reopens without
/// closing it, and the crate's consumer keeps its connection (and its place in the single active
/// consumer group) open until it is closed. Left open, it would stay the group's active member
/// while nobody reads it, and every reopened consumer would wait behind it as a standby.
impl Drop for Partition {
    fn drop(&mut self) {
        self.source.close_when_dropped(CALL_TIMEOUT);
    }
}

pub(super) struct NativeConsumer {
    pub parts: Vec<Partition>,
    pub store_every: u64,
    /// The partition polled first next time (fairness).
    pub next_first: usize,
    pub leaders: Arc<LeaderWatch>,
    /// When the leaders were last checked.
    pub checked: Instant,
    /// The highest offsets handed out, shared with the backend (for its backlog).
    pub handed: Handed,
    /// Each stream's group generation, shared with the backend.
    pub groups: Groups,
}

impl NativeConsumer {
    /// Err when a partition's leader moved since the consumer subscribed: the broker has
    /// cancelled the subscription (see `leaders.rs`), the harness must reopen it.
    async fn check_leaders(&mut self) -> Result<(), OpError> {
        if self.checked.elapsed() < LEADER_CHECK {
            return Ok(());
        }
        self.checked = Instant::now();
        for part in &self.parts {
            let now = match self.leaders.leader(&part.stream).await {
                Ok(l) => l,
                // The check itself failed: the consumer goes on.
                Err(_) => continue,
            };
            if now.as_deref() != Some(part.leader.as_str()) {
                return Err(OpError::Connection(format!(
                    "the leader of stream {} moved from {} to {}: the broker cancelled this \
                     subscription (metadata update)",
                    part.stream,
                    part.leader,
                    now.as_deref().unwrap_or("none yet")
                )));
            }
        }
        Ok(())
    }

    /// Err when a partition has stayed silent for `STALL_AFTER`, no consumer of its group handed
    /// anything out meanwhile, and producers saw more of its messages confirmed than the group
    /// handed out (a fresh stream numbers its messages from 0, so `confirmed` messages reach at
    /// least offset `confirmed - 1`): the subscription is dead without the client noticing (a
    /// subscription the broker cancelled at a member's restart, or a client task that died), and
    /// the harness must reopen it. This holds in the drain too, when producers have stopped.
    fn check_stalls(&mut self) -> Result<(), OpError> {
        for part in &mut self.parts {
            if part.silent_since.elapsed() < STALL_AFTER {
                continue;
            }
            let handed = self.handed.get(&part.stream);
            let confirmed = part.confirmed.load(Ordering::Relaxed);
            let handed_count = handed.map_or(0, |h| h + 1);
            if handed == part.handed_then && handed_count < confirmed {
                let handed = handed.map_or("none".to_string(), |h| h.to_string());
                if !part.active.load(Ordering::Relaxed) {
                    // The broker never made this consumer active, and nobody in its group reads:
                    // the group's active member is a dead one the broker keeps.
                    let g = self.groups.bump(&part.stream, part.generation);
                    return Err(OpError::Connection(format!(
                        "stream {}: {confirmed} messages confirmed, the group handed out offsets \
                         up to {handed} and this consumer was never made active in \
                         {STALL_AFTER:?}: the group is stuck behind a dead member; reopening in \
                         group {}",
                        part.stream,
                        group_name(super::CONSUMER_NAME, g)
                    )));
                }
                return Err(OpError::Connection(format!(
                    "stream {}: {confirmed} messages confirmed, the group handed out offsets up \
                     to {handed} and nothing came for {STALL_AFTER:?}: the subscription is dead \
                     without the client noticing",
                    part.stream,
                )));
            }
            part.silent_since = Instant::now();
            part.handed_then = handed;
        }
        Ok(())
    }

    /// The next delivery of any partition, if one is ready: (partition, what came).
    fn poll_any(&mut self, cx: &mut std::task::Context<'_>) -> Poll<(usize, Polled)> {
        let n = self.parts.len();
        for k in 0..n {
            let idx = (self.next_first + k) % n;
            if let Poll::Ready(item) = self.parts[idx].source.poll_next(cx) {
                self.next_first = (idx + 1) % n;
                return Poll::Ready((idx, item));
            }
        }
        Poll::Pending
    }

    /// Take what came: append its messages to `out` unless they lie before where this consumer
    /// started; Err when the partition's subscription ended, or a chunk could not be read (the
    /// records before the fault are appended).
    fn take(
        &mut self,
        (idx, item): (usize, Polled),
        out: &mut Vec<Delivery>,
    ) -> Result<(), OpError> {
        let part = &mut self.parts[idx];
        match item {
            Polled::Ended(why) => Err(OpError::Connection(format!(
                "consumer of stream {}: {why}",
                part.stream
            ))),
            Polled::One(d) => {
                part.silent_since = Instant::now();
                if d.offset() >= part.start.load(Ordering::Relaxed) {
                    out.push(Delivery {
                        payload: Bytes::copy_from_slice(d.message().data().unwrap_or_default()),
                        redelivered: false,
                        token: token(idx, d.offset()),
                    });
                }
                Ok(())
            }
            Polled::Chunk(c) => {
                part.silent_since = Instant::now();
                let start = part.start.load(Ordering::Relaxed);
                part.source.chunk_taken();
                let Some(gunzip) = part.source.gunzip() else {
                    return Ok(());
                };
                chunk::records(c, gunzip, |offset, record| {
                    if offset >= start {
                        out.push(Delivery {
                            payload: amqp::body(&record).unwrap_or(record),
                            redelivered: false,
                            token: token(idx, offset),
                        });
                    }
                })
                .map(|_| ())
                .map_err(|e| OpError::Protocol(format!("stream {}: {e}", part.stream)))
            }
        }
    }
}

#[async_trait]
impl Consumer for NativeConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        self.check_leaders().await?;
        self.check_stalls()?;
        let first =
            tokio::time::timeout(POLL_WAIT, futures::future::poll_fn(|cx| self.poll_any(cx))).await;
        let Ok(first) = first else {
            return Ok(());
        };
        let before = out.len();
        let mut taken = self.take(first, out);
        while taken.is_ok() && out.len() < POLL_MAX {
            match futures::future::poll_fn(|cx| self.poll_any(cx)).now_or_never() {
                // A closed connection ends this poll; the next one reports it.
                Some((_, Polled::Ended(_))) if !out.is_empty() => break,
                Some(item) => taken = self.take(item, out),
                None => break,
            }
        }
        // The highest offset handed out per partition, once per poll.
        let mut highest: Vec<Option<u64>> = vec![None; self.parts.len()];
        for (idx, offset) in out[before..].iter().filter_map(|d| untoken(&d.token)) {
            if let Some(h) = highest.get_mut(idx) {
                *h = Some(h.map_or(offset, |x| x.max(offset)));
            }
        }
        for (part, h) in self.parts.iter_mut().zip(highest) {
            if let Some(h) = h {
                self.handed.record(&part.stream, h);
                part.handed_then = self.handed.get(&part.stream);
            }
        }
        // What was appended before an error counts (the harness keeps it).
        taken
    }

    async fn ack(&mut self, tokens: &[AckToken]) -> Result<(), OpError> {
        for (idx, offset) in tokens.iter().filter_map(untoken) {
            if let Some(part) = self.parts.get_mut(idx) {
                part.acked = Some(part.acked.map_or(offset, |a| a.max(offset)));
                part.since_store += 1;
            }
        }
        for part in &mut self.parts {
            let Some(offset) = part.acked.filter(|_| part.since_store >= self.store_every) else {
                continue;
            };
            part.since_store = 0;
            let stored = part.source.store_offset(&part.group, &part.stream, offset);
            match tokio::time::timeout(CALL_TIMEOUT, stored).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(OpError::Connection(format!(
                        "store offset {offset} of stream {}: {e}",
                        part.stream
                    )))
                }
                Err(_) => {
                    return Err(OpError::Timeout(format!(
                        "store offset {offset} of stream {}: no answer within {CALL_TIMEOUT:?}",
                        part.stream
                    )))
                }
            }
        }
        Ok(())
    }

    /// Unsubscribe and close, without storing what was acknowledged since the last store (as a
    /// crash would): the next active consumer starts after the stored offset.
    async fn close(self: Box<Self>) {
        for part in &self.parts {
            let _ = tokio::time::timeout(CALL_TIMEOUT, part.source.close()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_partition_and_offset() {
        for (part, offset) in [(0, 0), (3, 123_456_789), (31, (1 << 56) - 1)] {
            assert_eq!(untoken(&token(part, offset)), Some((part, offset)));
        }
        assert_eq!(untoken(&AckToken::None), None);
    }
}
