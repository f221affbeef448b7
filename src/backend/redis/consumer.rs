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

use std::time::Duration;

use ::redis::cluster_async::ClusterConnection;
use ::redis::{Cmd, Value};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use super::{as_text, map_err, RedisStreams, FIELD, GROUP};
use crate::backend::{AckToken, Consumer, Delivery, Destination, OpError};

/// XREADGROUP's ID for "this consumer's pending entries, from the first".
const PENDING_FROM_START: &str = "0";
/// XREADGROUP's ID for "entries never delivered to any consumer of the group".
const NEW_ENTRIES: &str = ">";
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
        let conn = self.client.get_async_connection().await.map_err(map_err)?;
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
            conn,
            key: dest.name.clone(),
            name: format!("c{index}"),
            count: s.read_count,
            block_ms: s.block_ms,
            pending_after: Some(PENDING_FROM_START.to_string()),
            claim,
            trimmed: 0,
            trimmed_pending: Vec::new(),
        }))
    }
}

struct RedisConsumer {
    conn: ClusterConnection,
    key: String,
    name: String,
    count: usize,
    block_ms: u64,
    /// `Some(id)` while reading back this consumer's own pending entries: the next read asks
    /// for those after `id` (so entries handed out but not yet acked are not handed out twice).
    /// `None` once that read came back empty: new entries.
    pending_after: Option<String>,
    /// XAUTOCLAIM's schedule and cursor; `None` when claiming is off.
    claim: Option<Claim>,
    /// Trimmed entries counted since the last `take_trimmed`.
    trimmed: u64,
    /// Ids of trimmed entries still pending in the group, to XACK.
    trimmed_pending: Vec<String>,
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
        let reply = cmd.query_async(&mut self.conn).await.map_err(map_err);
        if reply.as_ref().is_err_and(|e| !e.is_definite()) {
            self.pending_after = Some(PENDING_FROM_START.to_string());
        }
        reply
    }

    /// XREADGROUP after `id`: pending entries of this consumer, or new ones (waiting up to
    /// `block_ms` for them). Returns the id of the reply's last entry, trimmed ones included.
    async fn read(&mut self, id: &str, out: &mut Vec<Delivery>) -> Result<Option<String>, OpError> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.count);
        if id == NEW_ENTRIES {
            cmd.arg("BLOCK").arg(self.block_ms);
        }
        cmd.arg("STREAMS").arg(&self.key).arg(id);
        let v = self.query(&cmd).await?;
        parse_xreadgroup(&v, id != NEW_ENTRIES, out, &mut self.trimmed_pending)
    }

    /// While reading back pending entries: the next batch of them. True when there was one (the
    /// poll is done, even if all its entries were trimmed); false once there are no more (new
    /// entries from now on).
    async fn read_pending(&mut self, out: &mut Vec<Delivery>) -> Result<bool, OpError> {
        let Some(after) = self.pending_after.clone() else {
            return Ok(false);
        };
        match self.read(&after, out).await? {
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
        let claimed = parse_xautoclaim(&v, out, &mut self.trimmed_pending)?;
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
        let mut cmd = ::redis::cmd("XACK");
        cmd.arg(&self.key).arg(GROUP).arg(&self.trimmed_pending);
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
        self.read(NEW_ENTRIES, out).await.map(|_| ())
    }
}

#[async_trait]
impl Consumer for RedisConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        self.read_or_claim(out).await?;
        self.ack_trimmed().await
    }

    async fn ack(&mut self, tokens: &[AckToken]) -> Result<(), OpError> {
        let mut cmd = ::redis::cmd("XACK");
        cmd.arg(&self.key).arg(GROUP);
        let mut any = false;
        for t in tokens {
            if let AckToken::Id(id) = t {
                cmd.arg(id);
                any = true;
            }
        }
        if any {
            self.query(&cmd).await?;
        }
        Ok(())
    }

    fn take_trimmed(&mut self) -> u64 {
        std::mem::take(&mut self.trimmed)
    }
}

/// Parse an XREADGROUP reply (RESP2: [[key, entries]], RESP3: {key: entries}) into deliveries;
/// the ids of trimmed entries go to `trimmed`. Returns the id of the last entry, if any.
fn parse_xreadgroup(
    v: &Value,
    redelivered: bool,
    out: &mut Vec<Delivery>,
    trimmed: &mut Vec<String>,
) -> Result<Option<String>, OpError> {
    let lists: Vec<&Value> = match v {
        Value::Nil => return Ok(None),
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => Some(&kv[1]),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(_, entries)| entries).collect(),
        other => return Err(OpError::Protocol(format!("XREADGROUP answered {other:?}"))),
    };
    let mut last = None;
    for entries in lists {
        if let Value::Array(entries) = entries {
            last = parse_entries(entries, redelivered, out, trimmed).or(last);
        }
    }
    Ok(last)
}

/// What an XAUTOCLAIM reply says besides the entries claimed.
#[derive(Debug, PartialEq, Eq)]
struct Claimed {
    /// Where the next XAUTOCLAIM goes on.
    cursor: String,
    /// Entries deleted from the stream while pending (Redis 7: the reply's third element),
    /// which XAUTOCLAIM removed from the group's pending entries.
    deleted: u64,
}

/// Parse an XAUTOCLAIM reply, [next cursor, claimed entries, (Redis 7) ids of deleted entries],
/// into deliveries (all redelivered); claimed entries with nil fields go to `trimmed`.
fn parse_xautoclaim(
    v: &Value,
    out: &mut Vec<Delivery>,
    trimmed: &mut Vec<String>,
) -> Result<Claimed, OpError> {
    let bad = || OpError::Protocol(format!("XAUTOCLAIM answered {v:?}"));
    let Value::Array(parts) = v else {
        return Err(bad());
    };
    let cursor = parts.first().and_then(as_text).ok_or_else(bad)?;
    let Some(Value::Array(entries)) = parts.get(1) else {
        return Err(bad());
    };
    parse_entries(entries, true, out, trimmed);
    let deleted = match parts.get(2) {
        Some(Value::Array(ids)) => ids.len() as u64,
        None | Some(Value::Nil) => 0,
        Some(_) => return Err(bad()),
    };
    Ok(Claimed { cursor, deleted })
}

/// Stream entries, `[id, [field, value, ...]]` each, as deliveries acked by id. An entry
/// deleted after its delivery (trimmed by MAXLEN) comes back with nil fields: its id goes to
/// `trimmed` instead. An entry that is nil as a whole (XAUTOCLAIM of Redis 6.2) has no id and is
/// skipped. Returns the id of the last entry that has one.
fn parse_entries(
    entries: &[Value],
    redelivered: bool,
    out: &mut Vec<Delivery>,
    trimmed: &mut Vec<String>,
) -> Option<String> {
    // Whether the last entry with an id was trimmed: its id is copied once, at the end.
    let mut last_trimmed = None;
    for e in entries {
        let Value::Array(parts) = e else { continue };
        let (Some(id), Some(fields)) = (parts.first().and_then(as_text), parts.get(1)) else {
            continue;
        };
        let payload = match fields {
            Value::Nil => {
                trimmed.push(id);
                last_trimmed = Some(true);
                continue;
            }
            Value::Array(f) => f
                .chunks(2)
                .find(|kv| kv.first().and_then(as_text).as_deref() == Some(FIELD))
                .and_then(|kv| kv.get(1)),
            Value::Map(m) => m
                .iter()
                .find(|(k, _)| as_text(k).as_deref() == Some(FIELD))
                .map(|(_, v)| v),
            _ => None,
        };
        let payload = match payload {
            Some(Value::BulkString(b)) => Bytes::copy_from_slice(b),
            _ => Bytes::new(),
        };
        last_trimmed = Some(false);
        out.push(Delivery {
            payload,
            redelivered,
            token: AckToken::Id(id),
        });
    }
    match last_trimmed? {
        true => trimmed.last().cloned(),
        false => match out.last().map(|d| &d.token) {
            Some(AckToken::Id(id)) => Some(id.clone()),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn entry(id: &str, p: &[u8]) -> Value {
        Value::Array(vec![
            bulk(id.as_bytes()),
            Value::Array(vec![bulk(b"p"), bulk(p)]),
        ])
    }

    #[test]
    fn parses_xreadgroup_replies() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"{k}"),
            Value::Array(vec![entry("1-0", b"a"), entry("1-1", b"bc")]),
        ])]);
        let (mut out, mut trimmed) = (Vec::new(), Vec::new());
        let last = parse_xreadgroup(&reply, false, &mut out, &mut trimmed).expect("parse");
        assert_eq!(last.as_deref(), Some("1-1"));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].payload.as_ref(), b"bc");
        assert_eq!(out[1].token, AckToken::Id("1-1".into()));
        assert!(!out[1].redelivered);
        assert!(trimmed.is_empty());
        out.clear();
        let last = parse_xreadgroup(&Value::Nil, false, &mut out, &mut trimmed).expect("nil");
        assert!(out.is_empty() && last.is_none());
        assert!(parse_xreadgroup(&Value::Int(3), false, &mut out, &mut trimmed).is_err());
        // RESP3: a map from key to entries (two entries are not taken for a [key, entries] pair).
        let reply = Value::Map(vec![(
            bulk(b"{k}"),
            Value::Array(vec![entry("2-0", b"x"), entry("2-1", b"y")]),
        )]);
        parse_xreadgroup(&reply, true, &mut out, &mut trimmed).expect("resp3");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].token, AckToken::Id("2-0".into()));
        assert!(out.iter().all(|d| d.redelivered));
    }

    #[test]
    fn trimmed_entries_read_back_are_not_deliveries() {
        // Reading this consumer's history: a trimmed entry has nil fields. It is not a delivery
        // (never a foreign message); its id is kept to be acked, and the read goes on after it.
        let trimmed_entry = |id: &str| Value::Array(vec![bulk(id.as_bytes()), Value::Nil]);
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"{k}"),
            Value::Array(vec![
                entry("1-0", b"a"),
                trimmed_entry("1-1"),
                entry("1-2", b"c"),
                trimmed_entry("1-3"),
            ]),
        ])]);
        let (mut out, mut trimmed) = (Vec::new(), Vec::new());
        let last = parse_xreadgroup(&reply, true, &mut out, &mut trimmed).expect("parse");
        assert_eq!(
            out.iter().map(|d| d.token.clone()).collect::<Vec<_>>(),
            [AckToken::Id("1-0".into()), AckToken::Id("1-2".into())]
        );
        assert!(out.iter().all(|d| d.redelivered && !d.payload.is_empty()));
        assert_eq!(trimmed, ["1-1", "1-3"]);
        assert_eq!(
            last.as_deref(),
            Some("1-3"),
            "the next read starts after 1-3"
        );
        // A batch of trimmed entries only: nothing delivered, but the read-back goes on.
        let (mut out, mut trimmed) = (Vec::new(), Vec::new());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"{k}"),
            Value::Array(vec![trimmed_entry("2-0"), trimmed_entry("2-1")]),
        ])]);
        let last = parse_xreadgroup(&reply, true, &mut out, &mut trimmed).expect("parse");
        assert!(out.is_empty());
        assert_eq!(trimmed, ["2-0", "2-1"]);
        assert_eq!(last.as_deref(), Some("2-1"));
        // An empty history is the stream with no entries: the read-back is over.
        let empty = Value::Array(vec![Value::Array(vec![bulk(b"{k}"), Value::Array(vec![])])]);
        let last = parse_xreadgroup(&empty, true, &mut out, &mut trimmed).expect("empty");
        assert!(out.is_empty() && last.is_none());
    }

    #[test]
    fn parses_xautoclaim_replies() {
        // Redis 7: [cursor, entries, deleted ids]. The deleted ids are counted (Redis already
        // dropped them from the pending entries); an entry nil as a whole (Redis 6.2) is
        // skipped; one with nil fields is trimmed, as in XREADGROUP.
        let reply = Value::Array(vec![
            bulk(b"1700000000000-3"),
            Value::Array(vec![
                entry("1-0", b"a"),
                Value::Nil,
                Value::Array(vec![bulk(b"1-2"), Value::Nil]),
            ]),
            Value::Array(vec![bulk(b"1-1"), bulk(b"1-4")]),
        ]);
        let (mut out, mut trimmed) = (Vec::new(), Vec::new());
        assert_eq!(
            parse_xautoclaim(&reply, &mut out, &mut trimmed).expect("parse"),
            Claimed {
                cursor: "1700000000000-3".into(),
                deleted: 2
            }
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.as_ref(), b"a");
        assert_eq!(out[0].token, AckToken::Id("1-0".into()));
        assert!(out[0].redelivered);
        assert_eq!(trimmed, ["1-2"]);
        // A complete scan with nothing claimed (Redis 6.2 has no third element).
        out.clear();
        let done = Value::Array(vec![bulk(b"0-0"), Value::Array(vec![])]);
        assert_eq!(
            parse_xautoclaim(&done, &mut out, &mut trimmed).expect("done"),
            Claimed {
                cursor: "0-0".into(),
                deleted: 0
            }
        );
        assert!(out.is_empty());
        for bad in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![bulk(b"0-0")]),
            Value::Array(vec![Value::Int(0), Value::Array(vec![])]),
            Value::Array(vec![bulk(b"0-0"), Value::Array(vec![]), Value::Int(2)]),
        ] {
            assert!(
                parse_xautoclaim(&bad, &mut out, &mut trimmed).is_err(),
                "{bad:?}"
            );
        }
    }
}
