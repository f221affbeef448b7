//! Replica lag over a backend's load: once a second, how far each node's copies are behind
//! their leaders (the backend's `replica_lag`), the worst copy per node, into replica_lag.csv.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::backend::{Backend, Destination, ReplicaLag};
use crate::clock::Clock;
use crate::load::sleep_until_ns;

/// replica_lag.csv: the most entries any copy on `node` was behind its leader at `t_s`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LagRow {
    pub backend: String,
    /// Seconds since the backend's load started.
    pub t_s: f64,
    pub node: String,
    pub lag_messages: f64,
}

/// How long one round of questions may take before it is given up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Ask the backend once a second, from `origin_ns` until `stop`, and add the rows to `out`.
/// A round that fails or takes too long (a node is down) is skipped.
pub async fn sample_replica_lag(
    backend: Arc<dyn Backend>,
    dests: Vec<Destination>,
    clock: Arc<dyn Clock>,
    origin_ns: u64,
    out: Arc<Mutex<Vec<LagRow>>>,
    mut stop: watch::Receiver<bool>,
) {
    let label = backend.label().to_string();
    let mut next = origin_ns;
    let mut answered = false;
    loop {
        tokio::select! {
            _ = sleep_until_ns(clock.as_ref(), next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let asked_ns = clock.now_ns();
        let t_s = asked_ns.saturating_sub(origin_ns) as f64 / 1e9;
        if let Ok(Ok(lags)) = tokio::time::timeout(ROUND_TIMEOUT, backend.replica_lag(&dests)).await
        {
            if lags.is_empty() && !answered {
                // This backend cannot tell (or has no replicas): nothing to sample.
                return;
            }
            answered = true;
            out.lock().extend(per_node(&label, t_s, &lags));
        }
        let now = clock.now_ns();
        while next <= now {
            next += 1_000_000_000;
        }
    }
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
