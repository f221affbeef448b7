//! Replica lag rows: how far each node's copies are behind their leaders (the backend's
//! `replica_lag`), the worst copy per node, for replica_lag.csv.

use std::collections::BTreeMap;

use crate::backend::ReplicaLag;

/// replica_lag.csv: the most entries any copy on `node` was behind its leader at `t_s`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LagRow {
    pub backend: String,
    /// Seconds since the backend's load started.
    pub t_s: f64,
    pub node: String,
    pub lag_messages: f64,
}

/// One row per node: its worst-lagging copy.
pub fn per_node(backend: &str, t_s: f64, lags: &[ReplicaLag]) -> Vec<LagRow> {
    let mut worst: BTreeMap<&str, u64> = BTreeMap::new();
    for l in lags {
        let w = worst.entry(l.node.as_str()).or_default();
        *w = (*w).max(l.entries);
    }
    worst
        .into_iter()
        .map(|(node, entries)| LagRow {
            backend: backend.to_string(),
            t_s,
            node: node.to_string(),
            lag_messages: entries as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_worst_copy() {
        let lag = |d: &str, n: &str, e| ReplicaLag {
            destination: d.into(),
            node: n.into(),
            entries: e,
        };
        let rows = per_node(
            "b",
            2.0,
            &[lag("s0", "r1", 3), lag("s1", "r1", 9), lag("s0", "r2", 0)],
        );
        assert_eq!(
            rows.iter()
                .map(|r| (r.node.as_str(), r.lag_messages))
                .collect::<Vec<_>>(),
            [("r1", 9.0), ("r2", 0.0)]
        );
        assert!(rows.iter().all(|r| r.backend == "b" && r.t_s == 2.0));
    }
}
