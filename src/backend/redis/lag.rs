//! Replica lag of a stream: entries its master has added that a replica does not have yet,
//! from `XINFO STREAM` (`entries-added`, Redis 7) on each, over direct connections (READONLY
//! on the replica). The replica is asked first, then the master, so a write in between can only
//! make the lag look larger, never hide it.

use std::collections::HashMap;
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

impl RedisStreams {
    /// `Backend::replica_lag`: per stream and replica of its master, entries behind.
    pub(super) async fn stream_replica_lag(
        &self,
        destinations: &[Destination],
    ) -> Result<Vec<ReplicaLag>, BackendError> {
        let topo = self.topology(destinations).await?;
        let mut out = Vec::new();
        for p in &topo.destinations {
            let Some(master) = &p.leader else { continue };
            for replica in &p.replicas {
                let Some(on_replica) = self.nodes.entries_added(replica, &p.name).await else {
                    continue;
                };
                let Some(on_master) = self.nodes.entries_added(master, &p.name).await else {
                    continue;
                };
                out.push(ReplicaLag {
                    destination: p.name.clone(),
                    node: replica.clone(),
                    entries: on_master.saturating_sub(on_replica),
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
}
