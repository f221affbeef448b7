//! The consumer: XREADGROUP (COUNT, BLOCK) in the backend's group on its own connection, and
//! XACK. When opened, a consumer first reads back its own pending entries (delivered to its name
//! earlier but never acked, e.g. when a reply was lost with a connection), then new entries.
//! At most once per claim interval it takes over, with XAUTOCLAIM, entries that have been pending
//! too long in any consumer of the group (e.g. one that crashed). Both come as `redelivered`.

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
    /// `block_ms` for them).
    async fn read(&mut self, id: &str, out: &mut Vec<Delivery>) -> Result<(), OpError> {
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
        parse_xreadgroup(&v, id != NEW_ENTRIES, out)
    }

    /// While reading back pending entries: the next batch of them. True when it appended some
    /// (the poll is done); false once there are no more (new entries from now on).
    async fn read_pending(&mut self, out: &mut Vec<Delivery>) -> Result<bool, OpError> {
        let Some(after) = self.pending_after.clone() else {
            return Ok(false);
        };
        let before = out.len();
        self.read(&after, out).await?;
        match out[before..].last().map(|d| &d.token) {
            Some(AckToken::Id(last)) => {
                self.pending_after = Some(last.clone());
                Ok(true)
            }
            _ => {
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
        let cursor = parse_xautoclaim(&v, out)?;
        if let Some(c) = self.claim.as_mut() {
            c.cursor = cursor;
        }
        Ok(out.len() > before)
    }
}

#[async_trait]
impl Consumer for RedisConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        if self.read_pending(out).await? || self.claim(out).await? {
            return Ok(());
        }
        self.read(NEW_ENTRIES, out).await
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
}

/// Parse an XREADGROUP reply (RESP2: [[key, entries]], RESP3: {key: entries}) into deliveries.
fn parse_xreadgroup(v: &Value, redelivered: bool, out: &mut Vec<Delivery>) -> Result<(), OpError> {
    let lists: Vec<&Value> = match v {
        Value::Nil => return Ok(()),
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
    for entries in lists {
        if let Value::Array(entries) = entries {
            parse_entries(entries, redelivered, out);
        }
    }
    Ok(())
}

/// Parse an XAUTOCLAIM reply, [next cursor, claimed entries, (Redis 7) ids of deleted entries],
/// into deliveries (all redelivered). Returns the next cursor. Deleted entries need nothing:
/// Redis 7 already removed them from the group's pending entries.
fn parse_xautoclaim(v: &Value, out: &mut Vec<Delivery>) -> Result<String, OpError> {
    let bad = || OpError::Protocol(format!("XAUTOCLAIM answered {v:?}"));
    let Value::Array(parts) = v else {
        return Err(bad());
    };
    let cursor = parts.first().and_then(as_text).ok_or_else(bad)?;
    let Some(Value::Array(entries)) = parts.get(1) else {
        return Err(bad());
    };
    parse_entries(entries, true, out);
    Ok(cursor)
}

/// Stream entries, `[id, [field, value, ...]]` each, as deliveries acked by id. An entry
/// deleted after its delivery (trimmed by MAXLEN) comes back with nil fields: it is handed out
/// with an empty payload, so that it is acked and leaves the pending entries. An entry that is
/// nil as a whole has no id to ack and is skipped.
fn parse_entries(entries: &[Value], redelivered: bool, out: &mut Vec<Delivery>) {
    for e in entries {
        let Value::Array(parts) = e else { continue };
        let (Some(id), Some(fields)) = (parts.first().and_then(as_text), parts.get(1)) else {
            continue;
        };
        let payload = match fields {
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
        out.push(Delivery {
            payload,
            redelivered,
            token: AckToken::Id(id),
        });
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
        let mut out = Vec::new();
        parse_xreadgroup(&reply, false, &mut out).expect("parse");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].payload.as_ref(), b"bc");
        assert_eq!(out[1].token, AckToken::Id("1-1".into()));
        assert!(!out[1].redelivered);
        out.clear();
        parse_xreadgroup(&Value::Nil, false, &mut out).expect("nil");
        assert!(out.is_empty());
        assert!(parse_xreadgroup(&Value::Int(3), false, &mut out).is_err());
        // RESP3: a map from key to entries (two entries are not taken for a [key, entries] pair).
        let reply = Value::Map(vec![(
            bulk(b"{k}"),
            Value::Array(vec![entry("2-0", b"x"), entry("2-1", b"y")]),
        )]);
        parse_xreadgroup(&reply, true, &mut out).expect("resp3");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].token, AckToken::Id("2-0".into()));
        assert!(out.iter().all(|d| d.redelivered));
    }

    #[test]
    fn parses_pending_entries_read_back() {
        // Reading this consumer's history: a trimmed entry has nil fields, an empty history is
        // the stream with no entries.
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"{k}"),
            Value::Array(vec![
                entry("1-0", b"a"),
                Value::Array(vec![bulk(b"1-1"), Value::Nil]),
            ]),
        ])]);
        let mut out = Vec::new();
        parse_xreadgroup(&reply, true, &mut out).expect("parse");
        assert_eq!(out.len(), 2);
        assert!(out[1].payload.is_empty());
        assert_eq!(out[1].token, AckToken::Id("1-1".into()));
        assert!(out.iter().all(|d| d.redelivered));
        out.clear();
        let empty = Value::Array(vec![Value::Array(vec![bulk(b"{k}"), Value::Array(vec![])])]);
        parse_xreadgroup(&empty, true, &mut out).expect("empty");
        assert!(out.is_empty());
    }

    #[test]
    fn parses_xautoclaim_replies() {
        // Redis 7: [cursor, entries, deleted ids]; an entry nil as a whole (Redis 6.2) is
        // skipped, one with nil fields comes with an empty payload as in XREADGROUP.
        let reply = Value::Array(vec![
            bulk(b"1700000000000-3"),
            Value::Array(vec![
                entry("1-0", b"a"),
                Value::Nil,
                Value::Array(vec![bulk(b"1-2"), Value::Nil]),
            ]),
            Value::Array(vec![bulk(b"1-1")]),
        ]);
        let mut out = Vec::new();
        assert_eq!(
            parse_xautoclaim(&reply, &mut out).expect("parse"),
            "1700000000000-3"
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].payload.as_ref(), b"a");
        assert_eq!(out[0].token, AckToken::Id("1-0".into()));
        assert!(out[1].payload.is_empty());
        assert_eq!(out[1].token, AckToken::Id("1-2".into()));
        assert!(out.iter().all(|d| d.redelivered));
        // A complete scan with nothing claimed (Redis 6.2 has no third element).
        out.clear();
        let done = Value::Array(vec![bulk(b"0-0"), Value::Array(vec![])]);
        assert_eq!(parse_xautoclaim(&done, &mut out).expect("done"), "0-0");
        assert!(out.is_empty());
        for bad in [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![bulk(b"0-0")]),
            Value::Array(vec![Value::Int(0), Value::Array(vec![])]),
        ] {
            assert!(parse_xautoclaim(&bad, &mut out).is_err(), "{bad:?}");
        }
    }
}
