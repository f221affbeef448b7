//! Replica lag rows: how far each node's copies are behind their leaders (the backend's
//! `replica_lag`), the worst copy per node, for replica_lag.csv.

use std::collections::BTreeMap;

use crate::backend::ReplicaLag;

/// replica_lag.csv: how many entries the worst copy on `node` was behind its leader at `t_s`,
/// as bounds (the leader and the copy are not read at the same instant).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LagRow {
    pub backend: String,
    /// Seconds since the backend's load started.
    pub t_s: f64,
    pub node: String,
    /// At most this many entries behind (the upper bound; the column's name predates the bounds).
    pub lag_messages: f64,
    /// At least this many entries behind (the lower bound).
    pub lag_messages_min: f64,
}

/// One row per node: bounds of its worst-lagging copy. The worst lag is at least the largest
/// lower bound and at most the largest upper bound of the node's copies.
pub fn per_node(backend: &str, t_s: f64, lags: &[ReplicaLag]) -> Vec<LagRow> {
    let mut worst: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for l in lags {
        let (min, max) = worst.entry(l.node.as_str()).or_default();
        *min = (*min).max(l.entries_min);
        *max = (*max).max(l.entries_max);
    }
    worst
        .into_iter()
        .map(|(node, (min, max))| LagRow {
            backend: backend.to_string(),
            t_s,
            node: node.to_string(),
            lag_messages: max as f64,
            lag_messages_min: min as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_worst_copy() {
        let lag = |d: &str, n: &str, min, max| ReplicaLag {
            destination: d.into(),
            node: n.into(),
            entries_min: min,
            entries_max: max,
        };
        let rows = per_node(
            "b",
            2.0,
            &[
                lag("s0", "r1", 3, 4),
                lag("s1", "r1", 1, 9),
                lag("s0", "r2", 0, 0),
            ],
        );
        assert_eq!(
            rows.iter()
                .map(|r| (r.node.as_str(), r.lag_messages_min, r.lag_messages))
                .collect::<Vec<_>>(),
            [("r1", 3.0, 9.0), ("r2", 0.0, 0.0)]
        );
        assert!(rows.iter().all(|r| r.backend == "b" && r.t_s == 2.0));
    }
}
