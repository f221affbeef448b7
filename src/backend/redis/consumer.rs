//! The consumer: XREADGROUP (COUNT, BLOCK) in the backend's group on its own connection, and
//! XACK. When opened, a consumer first reads back its own pending entries (delivered to its name
//! earlier but never acked, e.g. when a reply was lost with a connection), then new entries.
//! At most once per claim interval it takes over, with XAUTOCLAIM, entries that have been pending
//! too long in any consumer of the group (e.g. one that crashed). Both come as `redelivered`.
//!
//! Entries the stream lost while they were pending (trimmed by MAXLEN, or deleted) are not
//! deliveries: XREADGROUP returns them with nil fields when a consumer reads its pending entries
//! back, XAUTOCLAIM (Redis 7) names them apart and removes them from the pending entries itself.
//! The consumer XACKs the former and counts both, for `Consumer::take_trimmed`.
//!
//! The consumer talks to the stream's master over its own connection (`node_conn.rs`), found in
//! CLUSTER NODES (`locate.rs`) and followed on MOVED, so that XREADGROUP replies are scanned in
//! place: each payload is a slice of the read buffer, each id two numbers (`entries.rs`). A lost
//! connection is `OpError::Connection` (the harness reopens the consumer, which reads its pending
//! entries back); a MOVED is a definite refusal, and the next command goes to the new master. A
//! reply that does not come within the reply timeout (`reply_timeout_ms` plus BLOCK) is
//! `OpError::Timeout`: the consumer gives that master up and asks the other nodes which master
//! serves the slot now, as the producer does.
//!
//! `ack` does not wait for Redis: the ids go out in one pipeline with the next XREADGROUP (one
//! round trip per batch instead of two), and `close` sends those still held. XACK is
//! idempotent, so ids whose pipeline failed are sent again with the next one. Replies are parsed
//! by value (`entries.rs`): payloads move into their deliveries, ids stay numbers.

use std::time::Duration;

use ::redis::{Cmd, Value};
use async_trait::async_trait;
use tokio::time::Instant;

use super::entries::{parse_xautoclaim, parse_xreadgroup_frame, push_ids, EntryId};
use super::locate::Locator;
use super::node_conn::{error_of, value_of, NodeConn};
use super::{key_slot, RedisStreams, CONNECT_TIMEOUT, GROUP};
use crate::backend::{AckToken, Consumer, Delivery, Destination, OpError};

/// XREADGROUP's ID for "this consumer's pending entries, from the first".
const PENDING_FROM_START: EntryId = EntryId { ms: 0, seq: 0 };
/// How long `close` may take to send the acks still held.
const CLOSE_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// XAUTOCLAIM's cursor for "scan the group's pending entries from the first" (it answers this
/// cursor again when a scan is complete).
const CLAIM_FROM_START: &str = "0-0";

impl RedisStreams {
    /// `Backend::consumer`: consumer `c<index>` of the group on `dest`.
    pub(super) async fn open_consumer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Consumer>, OpError> {
        // Each consumer has its own connection: XREADGROUP BLOCK holds the connection it runs on.
        let slot = key_slot(&dest.name);
        let master = self.locator.master_of(slot, None).await?;
        let conn = NodeConn::open(&master, CONNECT_TIMEOUT).await?;
        let s = &self.settings;
        let claim = (s.claim_interval_ms > 0).then(|| {
            let interval = Duration::from_millis(s.claim_interval_ms);
            Claim {
                min_idle_ms: s.claim_min_idle_ms,
                interval,
                due: Instant::now() + interval,
                cursor: CLAIM_FROM_START.to_string(),
            }
        });
        Ok(Box::new(RedisConsumer {
            locator: self.locator.clone(),
            slot,
            conn: Some(conn),
            master: None,
            suspect: None,
            reply_timeout: s.consumer_reply_timeout(),
            frames: Vec::with_capacity(2),
            packed: Vec::new(),
            key: dest.name.clone(),
            name: format!("c{index}"),
            count: s.read_count,
            block_ms: s.block_ms,
            pending_after: Some(PENDING_FROM_START),
            claim,
            trimmed: 0,
            trimmed_pending: Vec::new(),
            to_ack: Vec::with_capacity(s.read_count),
            scratch: Vec::new(),
        }))
    }
}

struct RedisConsumer {
    /// Finds the master again.
    locator: Locator,
    slot: u16,
    conn: Option<NodeConn>,
    /// Where the next connection goes (a MOVED named it); else CLUSTER NODES says.
    master: Option<String>,
    /// The master last given up on (no reply in time, lost connection, no connection): not
    /// believed again unless it answers.
    suspect: Option<String>,
    /// A reply slower than this (BLOCK included) is a timeout.
    reply_timeout: Duration,
    /// Raw replies of the last exchange, and the commands of the next one (reused).
    frames: Vec<bytes::Bytes>,
    packed: Vec<u8>,
    key: String,
    name: String,
    count: usize,
    block_ms: u64,
    /// `Some(id)` while reading back this consumer's own pending entries: the next read asks
    /// for those after `id` (so entries handed out but not yet acked are not handed out twice).
    /// `None` once that read came back empty: new entries.
    pending_after: Option<EntryId>,
    /// XAUTOCLAIM's schedule and cursor; `None` when claiming is off.
    claim: Option<Claim>,
    /// Trimmed entries counted since the last `take_trimmed`.
    trimmed: u64,
    /// Ids of trimmed entries still pending in the group, to XACK.
    trimmed_pending: Vec<EntryId>,
    /// Ids acked by the harness, sent with the next read (or at close).
    to_ack: Vec<EntryId>,
    /// Where ids are written as arguments (reused).
    scratch: Vec<u8>,
}

struct Claim {
    min_idle_ms: u64,
    interval: Duration,
    /// When the next XAUTOCLAIM may run.
    due: Instant,
    /// Where the next XAUTOCLAIM goes on scanning the group's pending entries.
    cursor: String,
}

impl RedisConsumer {
    /// Send one command. A lost reply may hide entries delivered or claimed to this consumer's
    /// name (or an XACK that did not happen): after an error whose outcome is unknown, the next
    /// polls read back this consumer's pending entries from the first.
    async fn query(&mut self, cmd: &Cmd) -> Result<Value, OpError> {
        self.packed.clear();
        cmd.write_packed_command(&mut self.packed);
        let reply = self.exchange(1).await;
        let reply = reply.and_then(|()| match self.frames.first() {
            Some(f) => value_of(f),
            None => Err(OpError::Protocol("no reply".into())),
        });
        self.after_reply(reply)
    }

    /// Send `self.packed` and read `n` raw replies into `self.frames`, (re)connecting first if
    /// needed. An error reply among them is the error (MOVED: the next connection goes to the
    /// new master). The connection is dropped after anything that leaves it out of step.
    async fn exchange(&mut self, n: usize) -> Result<(), OpError> {
        self.frames.clear();
        if self.conn.as_ref().is_some_and(NodeConn::is_dirty) {
            // A cancelled poll left a reply unread: it may have delivered entries to this
            // consumer, which the read-back from the first pending entry finds.
            self.conn = None;
            self.pending_after = Some(PENDING_FROM_START);
        }
        if self.conn.is_none() {
            let master = match self.master.take() {
                Some(m) => m,
                None => {
                    let m = self
                        .locator
                        .master_of(self.slot, self.suspect.as_deref())
                        .await?;
                    self.suspect = None;
                    m
                }
            };
            match NodeConn::open(&master, CONNECT_TIMEOUT).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.suspect = Some(master);
                    return Err(e);
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(OpError::Unavailable(
                "no connection to the stream's master".into(),
            ));
        };
        let timeout = self.reply_timeout;
        if let Err(e) = conn
            .exchange(&self.packed, n, &mut self.frames, timeout)
            .await
        {
            // No reply in time, or the connection failed: ask the other nodes next time.
            self.suspect = Some(conn.address().to_string());
            self.conn = None;
            return Err(e);
        }
        let address = conn.address().to_string();
        for f in &self.frames {
            if let Some(failed) = error_of(f, &address) {
                if let Some(to) = failed.moved_to {
                    self.master = Some(to);
                    self.conn = None;
                }
                return Err(failed.error);
            }
        }
        Ok(())
    }

    fn after_reply<T>(&mut self, reply: Result<T, OpError>) -> Result<T, OpError> {
        if reply.as_ref().is_err_and(|e| !e.is_definite()) {
            self.pending_after = Some(PENDING_FROM_START);
        }
        reply
    }

    /// XACK of the ids the harness acked since the last read, as a command.
    fn xack(&mut self, ids: &[EntryId]) -> Cmd {
        let mut cmd = ::redis::cmd("XACK");
        cmd.arg(&self.key).arg(GROUP);
        push_ids(&mut cmd, ids, &mut self.scratch);
        cmd
    }

    /// XREADGROUP after `after` (this consumer's pending entries), or of new entries (`None`,
    /// waiting up to `block_ms` for them), in one pipeline after the XACK of the ids held.
    /// Returns the id of the reply's last entry, trimmed ones included.
    async fn read(
        &mut self,
        after: Option<EntryId>,
        out: &mut Vec<Delivery>,
    ) -> Result<Option<EntryId>, OpError> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.count);
        if after.is_none() {
            cmd.arg("BLOCK").arg(self.block_ms);
        }
        cmd.arg("STREAMS").arg(&self.key);
        match after {
            Some(id) => cmd.arg(id.to_string()),
            None => cmd.arg(">"),
        };
        // The acks held go first, in the same write.
        let ids = std::mem::take(&mut self.to_ack);
        self.packed.clear();
        if !ids.is_empty() {
            self.xack(&ids).write_packed_command(&mut self.packed);
        }
        cmd.write_packed_command(&mut self.packed);
        let n = if ids.is_empty() { 1 } else { 2 };
        let exchanged = self.exchange(n).await;
        if let Err(e) = self.after_reply(exchanged) {
            // Sent again with the next read (XACK is idempotent).
            self.to_ack = ids;
            return Err(e);
        }
        let Some(frame) = self.frames.last() else {
            return Err(OpError::Protocol("no XREADGROUP reply".into()));
        };
        let parsed = parse_xreadgroup_frame(frame, after.is_some(), out, &mut self.trimmed_pending);
        self.after_reply(parsed)
    }

    /// While reading back pending entries: the next batch of them. True when there was one (the
    /// poll is done, even if all its entries were trimmed); false once there are no more (new
    /// entries from now on).
    async fn read_pending(&mut self, out: &mut Vec<Delivery>) -> Result<bool, OpError> {
        let Some(after) = self.pending_after else {
            return Ok(false);
        };
        match self.read(Some(after), out).await? {
            Some(last) => {
                self.pending_after = Some(last);
                Ok(true)
            }
            None => {
                self.pending_after = None;
                Ok(false)
            }
        }
    }

    /// XAUTOCLAIM, when due. True when it appended entries (the poll is done).
    async fn claim(&mut self, out: &mut Vec<Delivery>) -> Result<bool, OpError> {
        let now = Instant::now();
        let Some(c) = self.claim.as_mut().filter(|c| now >= c.due) else {
            return Ok(false);
        };
        c.due = now + c.interval;
        let mut cmd = ::redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.key)
            .arg(GROUP)
            .arg(&self.name)
            .arg(c.min_idle_ms)
            .arg(&c.cursor)
            .arg("COUNT")
            .arg(self.count);
        let v = self.query(&cmd).await?;
        let before = out.len();
        let claimed = parse_xautoclaim(v, out, &mut self.trimmed_pending)?;
        // Redis removed the deleted ones from the pending entries as it named them: each is
        // named once, to one consumer, and needs no XACK.
        self.trimmed += claimed.deleted;
        if let Some(c) = self.claim.as_mut() {
            c.cursor = claimed.cursor;
        }
        Ok(out.len() > before)
    }

    /// XACK the trimmed entries found pending. Only those Redis says it removed from the group's
    /// pending entries are counted (XACK's reply), so an entry that another consumer's
    /// XAUTOCLAIM reported at the same time is not counted twice; after a failed XACK the ids
    /// are tried again with the next poll.
    async fn ack_trimmed(&mut self) -> Result<(), OpError> {
        if self.trimmed_pending.is_empty() {
            return Ok(());
        }
        // A read-back after a lost reply can list the same entries again.
        self.trimmed_pending.sort_unstable();
        self.trimmed_pending.dedup();
        let ids = std::mem::take(&mut self.trimmed_pending);
        let cmd = self.xack(&ids);
        self.trimmed_pending = ids;
        match self.query(&cmd).await? {
            Value::Int(n) => self.trimmed += u64::try_from(n).unwrap_or(0),
            other => return Err(OpError::Protocol(format!("XACK answered {other:?}"))),
        }
        self.trimmed_pending.clear();
        Ok(())
    }

    async fn read_or_claim(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        if self.read_pending(out).await? || self.claim(out).await? {
            return Ok(());
        }
        self.read(None, out).await.map(|_| ())
    }
}

#[async_trait]
impl Consumer for RedisConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        self.read_or_claim(out).await?;
        self.ack_trimmed().await
    }

    /// Held until the next read (or `close`), which sends them first.
    async fn ack(&mut self, tokens: &[AckToken]) -> Result<(), OpError> {
        self.to_ack
            .extend(tokens.iter().filter_map(EntryId::of_token));
        Ok(())
    }

    fn take_trimmed(&mut self) -> u64 {
        std::mem::take(&mut self.trimmed)
    }

    /// Send the acks still held (best effort, bounded in time): what the harness processed
    /// does not stay pending in the group, so the backlog at the drain is exact.
    async fn close(mut self: Box<Self>) {
        if self.to_ack.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.to_ack);
        let cmd = self.xack(&ids);
        let _ = tokio::time::timeout(CLOSE_ACK_TIMEOUT, self.query(&cmd)).await;
    }
}
