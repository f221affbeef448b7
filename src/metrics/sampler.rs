//! The once-a-second samplers of a backend's load, in one task beside it (never in the
//! aggregator loop): each node's CPU (`cpu`) and, when the backend can tell, its replica lag
//! (`replica_lag`). The rows wait in `Samples` until the load loop hands them to the sinks.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::cpu::{CpuRow, CpuSampler};
use super::replica_lag::{per_node, LagRow};
use crate::backend::{Backend, Destination};
use crate::clock::sleep_until_ns;
use crate::clock::Clock;

/// How long one round of replica lag questions may take before it is given up.
const LAG_ROUND_TIMEOUT: Duration = Duration::from_secs(2);

/// Rows sampled since the load loop last took them.
#[derive(Debug, Default)]
pub struct Samples {
    pub cpu: Vec<CpuRow>,
    pub lag: Vec<LagRow>,
}

impl Samples {
    /// Everything sampled so far, leaving none.
    pub fn take(&mut self) -> Samples {
        std::mem::take(self)
    }
}

/// Once a second from `origin_ns` until `stop`: sample the CPU (reading /proc off the async
/// workers) and ask the backend for its replica lag, adding the rows to `out`. A lag round that
/// fails or takes too long (a node is down) is skipped; a backend whose first answer is empty
/// cannot tell, and is not asked again.
pub async fn run_samplers(
    mut cpu: CpuSampler,
    backend: Arc<dyn Backend>,
    dests: Vec<Destination>,
    clock: Arc<dyn Clock>,
    origin_ns: u64,
    out: Arc<Mutex<Samples>>,
    mut stop: watch::Receiver<bool>,
) {
    let label = backend.label().to_string();
    let mut next = origin_ns;
    let mut ask_lag = true;
    let mut answered = false;
    loop {
        tokio::select! {
            _ = sleep_until_ns(clock.as_ref(), next) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let t_s = clock.now_ns().saturating_sub(origin_ns) as f64 / 1e9;
        let Ok((back, rows)) = tokio::task::spawn_blocking(move || {
            let rows = cpu.sample(t_s);
            (cpu, rows)
        })
        .await
        else {
            return;
        };
        cpu = back;
        out.lock().cpu.extend(rows);
        if ask_lag {
            if let Ok(Ok(lags)) =
                tokio::time::timeout(LAG_ROUND_TIMEOUT, backend.replica_lag(&dests)).await
            {
                if lags.is_empty() && !answered {
                    ask_lag = false;
                }
                answered = true;
                out.lock().lag.extend(per_node(&label, t_s, &lags));
            }
        }
        let now = clock.now_ns();
        while next <= now {
            next += 1_000_000_000;
        }
    }
}
