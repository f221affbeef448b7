//! What the streams still hold for the consumer group (`Backend::backlog`), per stream from one
//! `XINFO GROUPS`: `lag` (Redis 7: entries after the group's last-delivered id, nil when Redis
//! cannot tell, e.g. after deletions past that id) and `pending` (the group's pending entries,
//! XPENDING's count, read in the same command so both describe one instant). When `lag` is nil
//! the entries after `last-delivered-id` are counted with XRANGE, a page at a time.

use ::redis::cluster_async::ClusterConnection;
use ::redis::Value;

use super::{as_text, map_err, RedisStreams, GROUP};
use crate::backend::{BackendError, Backlog, Destination, OpError};

/// Entries per XRANGE page when counting.
const PAGE: usize = 1000;

/// The consumer group's line of an XINFO GROUPS reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupInfo {
    /// Delivered, not yet acknowledged.
    pub pending: u64,
    pub last_delivered_id: String,
    /// Entries never delivered; None when Redis cannot tell (or is older than 7.0).
    pub lag: Option<u64>,
}

/// Find `group` in an XINFO GROUPS reply: a list with one entry per group, each a flat list of
/// field and value (RESP2) or a map (RESP3).
pub(super) fn parse_groups(v: &Value, group: &str) -> Result<Option<GroupInfo>, String> {
    let Value::Array(groups) = v else {
        return Err(format!("XINFO GROUPS answered {v:?}"));
    };
    for g in groups {
        let pairs: Vec<(&Value, &Value)> = match g {
            Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|c| Some((c.first()?, c.get(1)?)))
                .collect(),
            other => return Err(format!("XINFO GROUPS: a group is {other:?}")),
        };
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| as_text(k).as_deref() == Some(name))
                .map(|(_, v)| *v)
        };
        if field("name").and_then(as_text).as_deref() != Some(group) {
            continue;
        }
        let number = |name: &str| match field(name) {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            Some(other) => as_text(other)?.parse().ok(),
            None => None,
        };
        let pending =
            number("pending").ok_or_else(|| format!("XINFO GROUPS: no pending in {g:?}"))?;
        let last_delivered_id = field("last-delivered-id")
            .and_then(as_text)
            .ok_or_else(|| format!("XINFO GROUPS: no last-delivered-id in {g:?}"))?;
        return Ok(Some(GroupInfo {
            pending,
            last_delivered_id,
            lag: number("lag"),
        }));
    }
    Ok(None)
}

/// The id of the last entry of an XRANGE reply, and how many entries it has.
fn page_end(v: &Value) -> Result<(usize, Option<String>), String> {
    let Value::Array(entries) = v else {
        return Err(format!("XRANGE answered {v:?}"));
    };
    let last = entries.last().and_then(|e| match e {
        Value::Array(parts) => parts.first().and_then(as_text),
        _ => None,
    });
    Ok((entries.len(), last))
}

impl RedisStreams {
    /// `Backend::backlog`: summed over `destinations`.
    pub(super) async fn stream_backlog(
        &self,
        destinations: &[Destination],
    ) -> Result<Backlog, BackendError> {
        let mut total = Backlog::default();
        for d in destinations {
            let b = self.backlog_of(&d.name).await?;
            total.ready += b.ready;
            total.unacked += b.unacked;
        }
        Ok(total)
    }

    async fn backlog_of(&self, key: &str) -> Result<Backlog, BackendError> {
        let mut conn = self.admin.clone();
        let action = format!("XINFO GROUPS {key}");
        let reply: Value = ::redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.setup_err(&action, map_err(e)))?;
        let group = parse_groups(&reply, GROUP)
            .map_err(|e| self.setup_err(&action, e))?
            .ok_or_else(|| self.setup_err(&action, format!("no consumer group {GROUP}")))?;
        let ready = match group.lag {
            Some(lag) => lag,
            None => count_after(&mut conn, key, &group.last_delivered_id)
                .await
                .map_err(|e| {
                    self.setup_err(&format!("count the entries of {key} with XRANGE"), e)
                })?,
        };
        Ok(Backlog {
            ready,
            unacked: group.pending,
        })
    }
}

/// Entries of `key` after `id` (exclusive), counted with XRANGE a page at a time, stopping at
/// the stream's length when it started (so a stream still being written to cannot keep it
/// going).
async fn count_after(conn: &mut ClusterConnection, key: &str, id: &str) -> Result<u64, OpError> {
    let length: u64 = ::redis::cmd("XLEN")
        .arg(key)
        .query_async(conn)
        .await
        .map_err(map_err)?;
    let mut counted: u64 = 0;
    let mut after = id.to_string();
    while counted < length {
        let page: Value = ::redis::cmd("XRANGE")
            .arg(key)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await
            .map_err(map_err)?;
        let (n, last) = page_end(&page).map_err(OpError::Protocol)?;
        counted += n as u64;
        match last {
            Some(last) if n == PAGE => after = last,
            _ => break,
        }
    }
    Ok(counted.min(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn group(name: &str, pending: i64, last: &str, lag: Value) -> Value {
        Value::Array(vec![
            bulk("name"),
            bulk(name),
            bulk("consumers"),
            Value::Int(2),
            bulk("pending"),
            Value::Int(pending),
            bulk("last-delivered-id"),
            bulk(last),
            bulk("entries-read"),
            Value::Int(12),
            bulk("lag"),
            lag,
        ])
    }

    #[test]
    fn reads_the_groups_pending_entries_and_lag() {
        let reply = Value::Array(vec![
            group("other", 9, "9-0", Value::Int(99)),
            group(GROUP, 5, "1700000000000-11", Value::Int(8)),
        ]);
        assert_eq!(
            parse_groups(&reply, GROUP),
            Ok(Some(GroupInfo {
                pending: 5,
                last_delivered_id: "1700000000000-11".into(),
                lag: Some(8),
            }))
        );
        // Redis cannot tell the lag (deletions after the last-delivered id): nil.
        let reply = Value::Array(vec![group(GROUP, 0, "3-0", Value::Nil)]);
        let g = parse_groups(&reply, GROUP).expect("parse").expect("group");
        assert_eq!((g.pending, g.lag), (0, None));
        // RESP3: each group a map.
        let reply = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk(GROUP)),
            (bulk("pending"), Value::Int(2)),
            (bulk("last-delivered-id"), bulk("4-0")),
            (bulk("lag"), Value::Int(0)),
        ])]);
        let g = parse_groups(&reply, GROUP).expect("parse").expect("group");
        assert_eq!((g.pending, g.lag), (2, Some(0)));
        assert_eq!(parse_groups(&Value::Array(vec![]), GROUP), Ok(None));
        assert!(parse_groups(&Value::Int(1), GROUP).is_err());
    }

    #[test]
    fn a_page_ends_at_its_last_entry() {
        let entry =
            |id: &str| Value::Array(vec![bulk(id), Value::Array(vec![bulk("p"), bulk("x")])]);
        let page = Value::Array(vec![entry("1-0"), entry("1-1")]);
        assert_eq!(page_end(&page), Ok((2, Some("1-1".into()))));
        assert_eq!(page_end(&Value::Array(vec![])), Ok((0, None)));
        assert!(page_end(&Value::Nil).is_err());
    }
}
