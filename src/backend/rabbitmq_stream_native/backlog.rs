//! What a native stream still holds for its consumers at the drain deadline: the entries after
//! the highest offset any of its consumers handed to the harness. The stream's last offset is
//! read by a throw-away consumer subscribed at `last` (the broker sends the last chunk, whose
//! deliveries carry their offsets; the crate's consumer, or the wire client's for a stream of
//! sub-entries); the offsets handed out are the consumers' own (`Handed`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use rabbitmq_stream_client::types::OffsetSpecification;
use rabbitmq_stream_client::Environment;

use super::wire::chunk;
use super::wire::subscription::{Event, OffsetSpec, Subscription};
use super::wire::Target;
use crate::clock::within;

/// How long the reader waits for the last chunk before taking the stream as empty.
const EMPTY_WAIT: Duration = Duration::from_millis(1500);
/// After the last chunk's first entry, how long a silence ends it.
const CHUNK_QUIET: Duration = Duration::from_millis(300);
/// How long subscribing may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Stream (partition) name -> the highest offset a consumer handed to the harness. Shared by
/// the backend and its consumers.
#[derive(Debug, Clone, Default)]
pub(super) struct Handed(Arc<Mutex<HashMap<String, u64>>>);

impl Handed {
    /// Consumers handed out offsets up to `offset` of `stream` (a lower one changes nothing).
    pub fn record(&self, stream: &str, offset: u64) {
        let mut map = self.0.lock();
        match map.get_mut(stream) {
            Some(o) => *o = (*o).max(offset),
            None => {
                map.insert(stream.to_string(), offset);
            }
        }
    }

    pub fn get(&self, stream: &str) -> Option<u64> {
        self.0.lock().get(stream).copied()
    }

    /// Forget `stream` (created anew, or deleted).
    pub fn forget(&self, stream: &str) {
        self.0.lock().remove(stream);
    }
}

/// Stream (partition) name -> how many of its messages producers saw confirmed. A consumer
/// compares it across a silent spell (`consumer.rs`); the counter is looked up once per
/// producer or consumer open, and incremented without a lock.
#[derive(Debug, Clone, Default)]
pub(super) struct Confirmed(Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>);

impl Confirmed {
    pub fn counter(&self, stream: &str) -> Arc<AtomicU64> {
        self.0.lock().entry(stream.to_string()).or_default().clone()
    }

    pub fn forget(&self, stream: &str) {
        self.0.lock().remove(stream);
    }
}

/// Stream (partition) name -> the generation of its single-active-consumer group. RabbitMQ
/// 4.0.5 can keep a member whose node was killed as the group's active consumer for good (seen
/// in the leader-kill test: the reopened consumer never became active, nothing was delivered,
/// the partition stalled until the drain ended). A consumer that stalls without ever having
/// been active moves its stream to a new group (`brokerbench-1`, …), which starts after the
/// offset stored under the newest earlier name that has one.
#[derive(Debug, Clone, Default)]
pub(super) struct Groups(Arc<Mutex<HashMap<String, u32>>>);

impl Groups {
    pub fn generation(&self, stream: &str) -> u32 {
        self.0.lock().get(stream).copied().unwrap_or(0)
    }

    /// Move `stream` past generation `from` (once: consumers of the same stuck group that stall
    /// together bump it one step).
    pub fn bump(&self, stream: &str, from: u32) -> u32 {
        let mut map = self.0.lock();
        let g = map.entry(stream.to_string()).or_default();
        if *g == from {
            *g += 1;
        }
        *g
    }

    pub fn forget(&self, stream: &str) {
        self.0.lock().remove(stream);
    }
}

/// The group name of generation `g` (generation 0 keeps the plain name).
pub(super) fn group_name(base: &str, g: u32) -> String {
    if g == 0 {
        base.to_string()
    } else {
        format!("{base}-{g}")
    }
}

/// The last offset of a stream (None: it is empty), read with `read`. The reader goes to a
/// replica picked at random, which may be one that is restarting: a read that fails or finds
/// nothing while consumers have not handed out everything confirmed is tried once more.
pub(super) async fn last_offset<F, Fut>(read: F, maybe_more: bool) -> Result<Option<u64>, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<u64>, String>>,
{
    let first = read().await;
    match first {
        Ok(Some(_)) => first,
        Ok(None) if !maybe_more => first,
        _ => read().await.or(first),
    }
}

/// The last offset of `stream` through the wire client (a stream with sub-entries, which the
/// crate cannot read): subscribed at `last` through `target`, the broker sends the last chunk,
/// whose header gives its first offset and record count; chunks that follow are read until
/// the stream goes quiet, as below.
pub(super) async fn read_last_offset_wire(
    target: &Target,
    stream: &str,
) -> Result<Option<u64>, String> {
    let opened = Subscription::open(target, stream, OffsetSpec::Last, 10, None);
    let mut sub = within(SUBSCRIBE_TIMEOUT, opened)
        .await
        .map_err(|e| format!("subscribe to stream {stream} at its end: {e}"))?;
    let mut last = None;
    let mut wait = EMPTY_WAIT;
    loop {
        let next = futures::future::poll_fn(|cx| sub.poll_event(cx));
        match tokio::time::timeout(wait, next).await {
            Ok(Some(Event::Chunk(c))) => {
                let h = chunk::header(&c)
                    .map_err(|e| format!("read the end of stream {stream}: {e}"))?;
                last = last.max(h.last_offset());
                let _ = sub.credit(1);
                wait = CHUNK_QUIET;
            }
            Ok(Some(Event::Ended(e))) if last.is_none() => {
                return Err(format!("read the end of stream {stream}: {e}"))
            }
            _ => break,
        }
    }
    let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT, sub.close()).await;
    Ok(last)
}

pub(super) async fn read_last_offset(
    env: &Environment,
    stream: &str,
) -> Result<Option<u64>, String> {
    let build = env
        .consumer()
        .offset(OffsetSpecification::Last)
        .client_provided_name("brokerbench-backlog")
        .build(stream);
    let mut consumer = within(SUBSCRIBE_TIMEOUT, build)
        .await
        .map_err(|e| format!("subscribe to stream {stream} at its end: {e}"))?;
    let mut last = None;
    let first = tokio::time::timeout(EMPTY_WAIT, consumer.next()).await;
    let mut seen = match first {
        Ok(Some(Ok(d))) => Some(d.offset()),
        Ok(Some(Err(e))) => return Err(format!("read the end of stream {stream}: {e}")),
        Ok(None) | Err(_) => None,
    };
    // The rest of the last chunk follows. Reading only what had already arrived can stop inside
    // the chunk and take the end short, and what is missing then counts as lost instead of
    // undelivered: read until the stream goes quiet (producers have stopped by now).
    while let Some(o) = seen {
        last = Some(last.map_or(o, |l: u64| l.max(o)));
        seen = match tokio::time::timeout(CHUNK_QUIET, consumer.next()).await {
            Ok(Some(Ok(d))) => Some(d.offset()),
            _ => None,
        };
    }
    let _ = tokio::time::timeout(SUBSCRIBE_TIMEOUT, consumer.handle().close()).await;
    Ok(last)
}

/// Entries of a stream whose last offset is `last` after the highest offset handed out.
pub(super) fn ready(last: Option<u64>, handed: Option<u64>) -> u64 {
    match (last, handed) {
        (None, _) => 0,
        (Some(l), None) => l + 1,
        (Some(l), Some(h)) => l.saturating_sub(h),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_stuck_group_moves_one_generation_however_many_consumers_saw_it() {
        let g = Groups::default();
        assert_eq!(g.generation("s"), 0);
        assert_eq!(g.bump("s", 0), 1);
        // A second consumer of the same stuck group: no second step.
        assert_eq!(g.bump("s", 0), 1);
        assert_eq!(g.bump("s", 1), 2);
        assert_eq!(g.generation("other"), 0);
        assert_eq!(group_name("brokerbench", 0), "brokerbench");
        assert_eq!(group_name("brokerbench", 2), "brokerbench-2");
        g.forget("s");
        assert_eq!(g.generation("s"), 0);
    }

    use super::*;

    #[test]
    fn confirmed_counters_are_shared_per_stream() {
        let c = Confirmed::default();
        c.counter("s")
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(c.counter("s").load(std::sync::atomic::Ordering::Relaxed), 3);
        assert_eq!(c.counter("t").load(std::sync::atomic::Ordering::Relaxed), 0);
        c.forget("s");
        assert_eq!(c.counter("s").load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn ready_counts_what_follows_the_highest_offset_handed_out() {
        assert_eq!(ready(None, None), 0);
        assert_eq!(ready(Some(9), None), 10);
        assert_eq!(ready(Some(9), Some(9)), 0);
        assert_eq!(ready(Some(9), Some(4)), 5);
        let h = Handed::default();
        h.record("s", 7);
        h.record("s", 3);
        assert_eq!(h.get("s"), Some(7));
        h.forget("s");
        assert_eq!(h.get("s"), None);
    }
}
