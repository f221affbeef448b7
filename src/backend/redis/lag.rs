//! Replica lag of a stream: entries its master has added that a replica does not have yet,
//! from `XINFO STREAM` (`entries-added`, Redis 7) on each, over direct connections (READONLY
//! on the replica). The two cannot be read at the same instant, so the lag is bounded: the
//! replica is read before the master and again after it (see `lag_bounds`).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::Value;

use super::{as_text, RedisStreams};
use crate::backend::{Backend, BackendError, Destination, ReplicaLag};

/// How long one XINFO (or opening its connection) may take before the node is skipped.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// Direct connections to single nodes, by address.
#[derive(Default)]
pub(super) struct NodeConnections(tokio::sync::Mutex<HashMap<String, MultiplexedConnection>>);

impl NodeConnections {
    async fn get(&self, address: &str) -> Option<MultiplexedConnection> {
        let mut map = self.0.lock().await;
        if let Some(c) = map.get(address) {
            return Some(c.clone());
        }
        let open = async {
            let client = ::redis::Client::open(format!("redis://{address}/")).ok()?;
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            // A replica answers reads of its master's slots only after READONLY.
            let _: () = ::redis::cmd("READONLY").query_async(&mut conn).await.ok()?;
            Some(conn)
        };
        let conn = tokio::time::timeout(ASK_TIMEOUT, open).await.ok()??;
        map.insert(address.to_string(), conn.clone());
        Some(conn)
    }

    async fn forget(&self, address: &str) {
        self.0.lock().await.remove(address);
    }

    /// `entries-added` of `key` on the node at `address` (None: no answer, or no stream).
    async fn entries_added(&self, address: &str, key: &str) -> Option<u64> {
        let mut conn = self.get(address).await?;
        let asked = tokio::time::timeout(
            ASK_TIMEOUT,
            ::redis::cmd("XINFO")
                .arg("STREAM")
                .arg(key)
                .query_async::<Value>(&mut conn),
        )
        .await;
        match asked {
            Ok(Ok(v)) => entries_added(&v),
            _ => {
                self.forget(address).await;
                None
            }
        }
    }
}

/// The `entries-added` field of an XINFO STREAM reply (a map, or a flat list in RESP2).
pub fn entries_added(v: &Value) -> Option<u64> {
    let pairs: Vec<(&Value, &Value)> = match v {
        Value::Map(m) => m.iter().map(|(k, v)| (k, v)).collect(),
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|c| Some((c.first()?, c.get(1)?)))
            .collect(),
        _ => return None,
    };
    pairs.into_iter().find_map(|(k, v)| {
        (as_text(k).as_deref() == Some("entries-added")).then(|| match v {
            Value::Int(n) => u64::try_from(*n).ok(),
            other => as_text(other)?.parse().ok(),
        })?
    })
}

/// Which node one reading of `entries-added` is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Replica,
    Master,
}

/// How far a replica was behind, at least and at most, in entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LagBounds {
    pub min: u64,
    pub max: u64,
}

/// Bound a replica's lag from three readings of `entries-added` taken in this order through
/// `read`: the replica (r1), the master (m), the replica again (r2). When the master was read
/// the replica held at least r1 and at most r2 entries (it only grows), so its lag was between
/// m - r2 and m - r1 (each at least 0). Reading the replica only before the master (the upper
/// bound alone) would count every write in between as lag. None when a node does not answer.
pub(super) async fn lag_bounds<F, Fut>(mut read: F) -> Option<LagBounds>
where
    F: FnMut(Side) -> Fut,
    Fut: Future<Output = Option<u64>>,
{
    let before = read(Side::Replica).await?;
    let master = read(Side::Master).await?;
    let after = read(Side::Replica).await?;
    let max = master.saturating_sub(before);
    // A replica that went backwards (a resync from scratch) must not give min > max.
    let min = master.saturating_sub(after).min(max);
    Some(LagBounds { min, max })
}

impl RedisStreams {
    /// `Backend::replica_lag`: per stream and replica of its master, entries behind (bounds).
    pub(super) async fn stream_replica_lag(
        &self,
        destinations: &[Destination],
    ) -> Result<Vec<ReplicaLag>, BackendError> {
        let topo = self.topology(destinations).await?;
        let mut out = Vec::new();
        for p in &topo.destinations {
            let Some(master) = &p.leader else { continue };
            for replica in &p.replicas {
                let (nodes, key) = (&self.nodes, p.name.as_str());
                let read = |side| {
                    let node = match side {
                        Side::Replica => replica.as_str(),
                        Side::Master => master.as_str(),
                    };
                    nodes.entries_added(node, key)
                };
                let Some(bounds) = lag_bounds(read).await else {
                    continue;
                };
                out.push(ReplicaLag {
                    destination: p.name.clone(),
                    node: replica.clone(),
                    entries_min: bounds.min,
                    entries_max: bounds.max,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_entries_added_from_either_reply_shape() {
        let flat = Value::Array(vec![
            bulk("length"),
            Value::Int(7),
            bulk("entries-added"),
            Value::Int(42),
        ]);
        assert_eq!(entries_added(&flat), Some(42));
        let map = Value::Map(vec![(bulk("entries-added"), Value::Int(5))]);
        assert_eq!(entries_added(&map), Some(5));
        assert_eq!(
            entries_added(&Value::Array(vec![bulk("length"), Value::Int(1)])),
            None
        );
        assert_eq!(entries_added(&Value::Nil), None);
    }

    /// Replays `script` (the node each reading must be taken on, and what it answers) and checks
    /// that the readings came in that order.
    async fn bounds_from(script: &[(Side, Option<u64>)]) -> Option<LagBounds> {
        let mut next = script.iter();
        let mut asked = Vec::new();
        let bounds = lag_bounds(|side| {
            asked.push(side);
            let answer = next.next().and_then(|(_, v)| *v);
            async move { answer }
        })
        .await;
        let expected: Vec<Side> = script
            .iter()
            .map(|(side, _)| *side)
            .take(asked.len())
            .collect();
        assert_eq!(
            asked, expected,
            "readings in the order replica, master, replica"
        );
        bounds
    }

    #[tokio::test]
    async fn lag_is_bounded_by_the_replica_read_before_and_after_the_master() {
        use Side::{Master, Replica};
        // The replica had 90 entries, the master 100, then the replica 97: 3 to 10 behind.
        let b = bounds_from(&[
            (Replica, Some(90)),
            (Master, Some(100)),
            (Replica, Some(97)),
        ])
        .await;
        assert_eq!(b, Some(LagBounds { min: 3, max: 10 }));
        // Caught up by the second reading: at least 0 (never negative), at most 5.
        let b = bounds_from(&[
            (Replica, Some(95)),
            (Master, Some(100)),
            (Replica, Some(104)),
        ])
        .await;
        assert_eq!(b, Some(LagBounds { min: 0, max: 5 }));
        // Idle: exactly 0.
        let b = bounds_from(&[(Replica, Some(7)), (Master, Some(7)), (Replica, Some(7))]).await;
        assert_eq!(b, Some(LagBounds { min: 0, max: 0 }));
        // A replica ahead of an older master reading (writes between the reads): 0 both ways.
        let b = bounds_from(&[(Replica, Some(12)), (Master, Some(10)), (Replica, Some(12))]).await;
        assert_eq!(b, Some(LagBounds { min: 0, max: 0 }));
        // A replica that went backwards (resynced from scratch) keeps min <= max.
        let b = bounds_from(&[(Replica, Some(95)), (Master, Some(100)), (Replica, Some(3))]).await;
        assert_eq!(b, Some(LagBounds { min: 5, max: 5 }));
        // No answer from a node: no bounds, and no further reading.
        let b = bounds_from(&[(Replica, Some(1)), (Master, None)]).await;
        assert_eq!(b, None);
        let b = bounds_from(&[(Replica, Some(1)), (Master, Some(2)), (Replica, None)]).await;
        assert_eq!(b, None);
    }
}
