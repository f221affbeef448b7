//! Stream entries as the consumer reads them: entry ids held as two numbers, and the parsing of
//! XREADGROUP and XAUTOCLAIM replies into deliveries. The replies are taken by value, so each
//! payload moves into its delivery (no copy) and no entry id or field name becomes a String.

use std::fmt;
use std::io::Write;

use ::redis::{Cmd, Value};
use bytes::Bytes;

use super::FIELD;
use crate::backend::{AckToken, Delivery, OpError};

/// A stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    pub(super) fn parse(text: &[u8]) -> Option<Self> {
        let dash = text.iter().position(|&b| b == b'-')?;
        let number = |d: &[u8]| -> Option<u64> {
            if d.is_empty() || d.len() > 20 || !d.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(d).ok()?.parse().ok()
        };
        Some(EntryId {
            ms: number(&text[..dash])?,
            seq: number(&text[dash + 1..])?,
        })
    }

    pub(super) fn token(self) -> AckToken {
        AckToken::StreamEntry {
            ms: self.ms,
            seq: self.seq,
        }
    }

    /// The id an ack token names, if it is a stream entry's.
    pub(super) fn of_token(t: &AckToken) -> Option<Self> {
        match t {
            AckToken::StreamEntry { ms, seq } => Some(EntryId { ms: *ms, seq: *seq }),
            AckToken::Id(id) => Self::parse(id.as_bytes()),
            AckToken::None | AckToken::Tag(_) => None,
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Append `ids` to `cmd` as arguments, written through `scratch` (reused: no String per id).
pub(super) fn push_ids(cmd: &mut Cmd, ids: &[EntryId], scratch: &mut Vec<u8>) {
    scratch.clear();
    let mut ends = Vec::with_capacity(ids.len());
    for id in ids {
        // Writing to a Vec cannot fail.
        let _ = write!(scratch, "{}-{}", id.ms, id.seq);
        ends.push(scratch.len());
    }
    let mut start = 0;
    for end in ends {
        cmd.arg(&scratch[start..end]);
        start = end;
    }
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        Value::VerbatimString { text, .. } => Some(text.as_bytes()),
        _ => None,
    }
}

/// Parse an XREADGROUP reply (RESP2: [[key, entries]], RESP3: {key: entries}) as redis-rs reads
/// it into deliveries; the ids of trimmed entries go to `trimmed`. Returns the id of the last
/// entry, if any. The consumer reads frames in place (`parse_xreadgroup_frame`); this is the
/// tests' reference for it.
#[cfg(test)]
pub(super) fn parse_xreadgroup(
    v: Value,
    redelivered: bool,
    out: &mut Vec<Delivery>,
    trimmed: &mut Vec<EntryId>,
) -> Result<Option<EntryId>, OpError> {
    let lists: Vec<Value> = match v {
        Value::Nil => return Ok(None),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => kv.into_iter().nth(1),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        other => return Err(OpError::Protocol(format!("XREADGROUP answered {other:?}"))),
    };
    let mut last = None;
    for entries in lists {
        if let Value::Array(entries) = entries {
            last = parse_entries(entries, redelivered, out, trimmed)?.or(last);
        }
    }
    Ok(last)
}

/// What an XAUTOCLAIM reply says besides the entries claimed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Claimed {
    /// Where the next XAUTOCLAIM goes on.
    pub cursor: String,
    /// Entries deleted from the stream while pending (Redis 7: the reply's third element),
    /// which XAUTOCLAIM removed from the group's pending entries.
    pub deleted: u64,
}

/// Parse an XAUTOCLAIM reply, [next cursor, claimed entries, (Redis 7) ids of deleted entries],
/// into deliveries (all redelivered); claimed entries with nil fields go to `trimmed`.
pub(super) fn parse_xautoclaim(
    v: Value,
    out: &mut Vec<Delivery>,
    trimmed: &mut Vec<EntryId>,
) -> Result<Claimed, OpError> {
    let bad = |v: &Value| OpError::Protocol(format!("XAUTOCLAIM answered {v:?}"));
    let cursor = match &v {
        Value::Array(parts) => parts.first().and_then(bytes_of),
        _ => None,
    }
    .map(|b| String::from_utf8_lossy(b).into_owned())
    .ok_or_else(|| bad(&v))?;
    let deleted = match &v {
        Value::Array(parts) => match parts.get(2) {
            Some(Value::Array(ids)) => ids.len() as u64,
            None | Some(Value::Nil) => 0,
            Some(_) => return Err(bad(&v)),
        },
        _ => return Err(bad(&v)),
    };
    let Value::Array(parts) = v else {
        return Err(OpError::Protocol("XAUTOCLAIM: not an array".into()));
    };
    let Some(Value::Array(entries)) = parts.into_iter().nth(1) else {
        return Err(OpError::Protocol(
            "XAUTOCLAIM answered without a list of entries".into(),
        ));
    };
    parse_entries(entries, true, out, trimmed)?;
    Ok(Claimed { cursor, deleted })
}

/// Stream entries, `[id, [field, value, ...]]` each, as deliveries acked by id. An entry
/// deleted after its delivery (trimmed by MAXLEN) comes back with nil fields: its id goes to
/// `trimmed` instead. An entry that is nil as a whole (XAUTOCLAIM of Redis 6.2) has no id and is
/// skipped. Returns the id of the last entry that has one.
fn parse_entries(
    entries: Vec<Value>,
    redelivered: bool,
    out: &mut Vec<Delivery>,
    trimmed: &mut Vec<EntryId>,
) -> Result<Option<EntryId>, OpError> {
    let mut last = None;
    for e in entries {
        let Value::Array(parts) = e else { continue };
        let mut parts = parts.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(raw) = bytes_of(&id) else { continue };
        let id = EntryId::parse(raw).ok_or_else(|| {
            OpError::Protocol(format!(
                "stream entry id {:?} is not <ms>-<seq>",
                String::from_utf8_lossy(raw)
            ))
        })?;
        last = Some(id);
        let payload = match fields {
            Value::Nil => {
                trimmed.push(id);
                continue;
            }
            Value::Array(f) => {
                let mut f = f.into_iter();
                let mut found = None;
                while let (Some(k), Some(v)) = (f.next(), f.next()) {
                    if bytes_of(&k) == Some(FIELD.as_bytes()) {
                        found = Some(v);
                        break;
                    }
                }
                found
            }
            Value::Map(m) => m
                .into_iter()
                .find(|(k, _)| bytes_of(k) == Some(FIELD.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        };
        let payload = match payload {
            Some(Value::BulkString(b)) => Bytes::from(b),
            _ => Bytes::new(),
        };
        out.push(Delivery {
            payload,
            redelivered,
            token: id.token(),
        });
    }
    Ok(last)
}

/// A cursor over one raw RESP2 reply.
struct Frame<'a> {
    b: &'a [u8],
    at: usize,
}

impl Frame<'_> {
    fn bad(&self, what: &str) -> OpError {
        OpError::Protocol(format!("XREADGROUP reply: {what} at byte {}", self.at))
    }

    /// A `<kind><integer>\r\n` line.
    fn header(&mut self, kind: u8) -> Result<i64, OpError> {
        if self.b.get(self.at) != Some(&kind) {
            return Err(self.bad(&format!("expected {:?}", kind as char)));
        }
        let rest = &self.b[self.at + 1..];
        let end = rest
            .iter()
            .position(|&c| c == b'\r')
            .ok_or_else(|| self.bad("a line without CRLF"))?;
        let n = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| self.bad("not a number"))?;
        self.at += 1 + end + 2;
        Ok(n)
    }

    /// An array header: its length, or `None` for a nil array.
    fn array(&mut self) -> Result<Option<usize>, OpError> {
        let n = self.header(b'*')?;
        Ok(usize::try_from(n).ok())
    }

    /// A bulk string's byte range (`None` for a nil one).
    fn bulk(&mut self) -> Result<Option<std::ops::Range<usize>>, OpError> {
        let n = self.header(b'$')?;
        let Ok(n) = usize::try_from(n) else {
            return Ok(None);
        };
        let range = self.at..self.at + n;
        if self.b.len() < range.end + 2 {
            return Err(self.bad("a bulk string cut short"));
        }
        self.at = range.end + 2;
        Ok(Some(range))
    }
}

/// Parse an XREADGROUP reply (RESP2, `[[key, [[id, [field, value, ...]], ...]]]` or nil) in
/// place: each payload is a slice of `frame` (no copy), ids are read as numbers; trimmed entries
/// (nil fields) go to `trimmed`. Returns the id of the last entry, if any. An error reply must
/// have been handled before.
pub(super) fn parse_xreadgroup_frame(
    frame: &Bytes,
    redelivered: bool,
    out: &mut Vec<Delivery>,
    trimmed: &mut Vec<EntryId>,
) -> Result<Option<EntryId>, OpError> {
    let mut f = Frame { b: frame, at: 0 };
    let mut last = None;
    let Some(streams) = f.array()? else {
        return Ok(None);
    };
    for _ in 0..streams {
        if f.array()? != Some(2) {
            return Err(f.bad("a stream that is not [key, entries]"));
        }
        f.bulk()?;
        let entries = f.array()?.unwrap_or(0);
        for _ in 0..entries {
            if f.array()? != Some(2) {
                return Err(f.bad("an entry that is not [id, fields]"));
            }
            let id_range = f.bulk()?.ok_or_else(|| f.bad("an entry without id"))?;
            let id = EntryId::parse(&frame[id_range.clone()]).ok_or_else(|| {
                OpError::Protocol(format!(
                    "stream entry id {:?} is not <ms>-<seq>",
                    String::from_utf8_lossy(&frame[id_range])
                ))
            })?;
            last = Some(id);
            let Some(fields) = f.array()? else {
                trimmed.push(id);
                continue;
            };
            let mut payload = Bytes::new();
            for _ in 0..fields / 2 {
                let key = f.bulk()?;
                let value = f.bulk()?;
                if let (Some(k), Some(v)) = (key, value) {
                    if &frame[k] == FIELD.as_bytes() && payload.is_empty() {
                        payload = frame.slice(v);
                    }
                }
            }
            out.push(Delivery {
                payload,
                redelivered,
                token: id.token(),
            });
        }
    }
    Ok(last)
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

    fn id(ms: u64, seq: u64) -> EntryId {
        EntryId { ms, seq }
    }

    #[test]
    fn entry_ids_are_two_numbers() {
        assert_eq!(
            EntryId::parse(b"1700000000000-12"),
            Some(id(1_700_000_000_000, 12))
        );
        for bad in [&b"17"[..], b"-1", b"1-", b"a-1", b"1-2-3", b"+1-2"] {
            assert_eq!(EntryId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(id(5, 7).to_string(), "5-7");
        assert_eq!(
            EntryId::of_token(&AckToken::Id("3-4".into())),
            Some(id(3, 4))
        );
        assert_eq!(EntryId::of_token(&id(3, 4).token()), Some(id(3, 4)));
        assert_eq!(EntryId::of_token(&AckToken::Tag(3)), None);
        let mut cmd = ::redis::cmd("XACK");
        let mut scratch = Vec::new();
        push_ids(&mut cmd, &[id(1, 0), id(22, 333)], &mut scratch);
        assert_eq!(
            cmd.get_packed_command(),
            ::redis::cmd("XACK")
                .arg("1-0")
                .arg("22-333")
                .get_packed_command()
        );
    }

    #[test]
    fn parses_xreadgroup_replies() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"{k}"),
            Value::Array(vec![entry("1-0", b"a"), entry("1-1", b"bc")]),
        ])]);
        let (mut out, mut trimmed) = (Vec::new(), Vec::new());
        let last = parse_xreadgroup(reply, false, &mut out, &mut trimmed).expect("parse");
        assert_eq!(last, Some(id(1, 1)));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].payload.as_ref(), b"bc");
        assert_eq!(out[1].token, id(1, 1).token());
        assert!(!out[1].redelivered);
        assert!(trimmed.is_empty());
        out.clear();
        let last = parse_xreadgroup(Value::Nil, false, &mut out, &mut trimmed).expect("nil");
        assert!(out.is_empty() && last.is_none());
        assert!(parse_xreadgroup(Value::Int(3), false, &mut out, &mut trimmed).is_err());
        // RESP3: a map from key to entries (two entries are not taken for a [key, entries] pair).
        let reply = Value::Map(vec![(
            bulk(b"{k}"),
            Value::Array(vec![entry("2-0", b"x"), entry("2-1", b"y")]),
        )]);
        parse_xreadgroup(reply, true, &mut out, &mut trimmed).expect("resp3");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].token, id(2, 0).token());
        assert!(out.iter().all(|d| d.redelivered));
        // An id Redis would never send is an unreadable reply, not a skipped entry.
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"{k}"),
            Value::Array(vec![entry("oops", b"x")]),
        ])]);
        let e = parse_xreadgroup(reply, false, &mut out, &mut trimmed).expect_err("bad id");
        assert!(!e.is_definite());
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
        let last = parse_xreadgroup(reply, true, &mut out, &mut trimmed).expect("parse");
        assert_eq!(
            out.iter().map(|d| d.token.clone()).collect::<Vec<_>>(),
            [id(1, 0).token(), id(1, 2).token()]
        );
        assert!(out.iter().all(|d| d.redelivered && !d.payload.is_empty()));
        assert_eq!(trimmed, [id(1, 1), id(1, 3)]);
        assert_eq!(last, Some(id(1, 3)), "the next read starts after 1-3");
        // A batch of trimmed entries only: nothing delivered, but the read-back goes on.
        let (mut out, mut trimmed) = (Vec::new(), Vec::new());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"{k}"),
            Value::Array(vec![trimmed_entry("2-0"), trimmed_entry("2-1")]),
        ])]);
        let last = parse_xreadgroup(reply, true, &mut out, &mut trimmed).expect("parse");
        assert!(out.is_empty());
        assert_eq!(trimmed, [id(2, 0), id(2, 1)]);
        assert_eq!(last, Some(id(2, 1)));
        // An empty history is the stream with no entries: the read-back is over.
        let empty = Value::Array(vec![Value::Array(vec![bulk(b"{k}"), Value::Array(vec![])])]);
        let last = parse_xreadgroup(empty, true, &mut out, &mut trimmed).expect("empty");
        assert!(out.is_empty() && last.is_none());
    }

    #[test]
    fn xreadgroup_frames_are_read_in_place_like_values() {
        let raw = b"*1\r\n*2\r\n$3\r\n{k}\r\n*3\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\np\r\n$1\r\na\r\n*2\r\n$3\r\n1-1\r\n*-1\r\n*2\r\n$3\r\n1-2\r\n*4\r\n$1\r\nq\r\n$1\r\nz\r\n$1\r\np\r\n$2\r\nbc\r\n";
        let frame = Bytes::from_static(raw);
        let (mut out, mut trimmed) = (Vec::new(), Vec::new());
        let last = parse_xreadgroup_frame(&frame, true, &mut out, &mut trimmed).expect("frame");
        let (mut out2, mut trimmed2) = (Vec::new(), Vec::new());
        let value = ::redis::parse_redis_value(raw).expect("value");
        let last2 = parse_xreadgroup(value, true, &mut out2, &mut trimmed2).expect("value");
        assert_eq!(last, Some(id(1, 2)));
        assert_eq!(last, last2);
        assert_eq!(trimmed, [id(1, 1)]);
        assert_eq!(trimmed, trimmed2);
        assert_eq!(out.len(), 2);
        for (a, b) in out.iter().zip(&out2) {
            assert_eq!(
                (&a.payload, &a.token, a.redelivered),
                (&b.payload, &b.token, b.redelivered)
            );
        }
        assert_eq!(out[1].payload.as_ref(), b"bc");
        // No entries (BLOCK ran out): a nil array.
        let nil = Bytes::from_static(b"*-1\r\n");
        assert_eq!(
            parse_xreadgroup_frame(&nil, false, &mut out, &mut trimmed).expect("nil"),
            None
        );
        // Cut short or not an XREADGROUP reply: unreadable, not definite.
        for bad in [&raw[..raw.len() - 4], &b":1\r\n"[..], &b"*1\r\n*3\r\n"[..]] {
            let e =
                parse_xreadgroup_frame(&Bytes::copy_from_slice(bad), false, &mut out, &mut trimmed)
                    .expect_err("bad frame");
            assert!(!e.is_definite());
        }
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
            parse_xautoclaim(reply, &mut out, &mut trimmed).expect("parse"),
            Claimed {
                cursor: "1700000000000-3".into(),
                deleted: 2
            }
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.as_ref(), b"a");
        assert_eq!(out[0].token, id(1, 0).token());
        assert!(out[0].redelivered);
        assert_eq!(trimmed, [id(1, 2)]);
        // A complete scan with nothing claimed (Redis 6.2 has no third element).
        out.clear();
        let done = Value::Array(vec![bulk(b"0-0"), Value::Array(vec![])]);
        assert_eq!(
            parse_xautoclaim(done, &mut out, &mut trimmed).expect("done"),
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
                parse_xautoclaim(bad.clone(), &mut out, &mut trimmed).is_err(),
                "{bad:?}"
            );
        }
    }
}
