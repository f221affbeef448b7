//! `rate = "80% of max"`: before its run, a backend runs a short max-rate probe of the same
//! workload on destinations of its own, and the run's rate becomes that share of what the probe
//! received per second (the end-to-end maximum on this machine, this minute). The probe's
//! destinations are deleted before the run, so none of its messages reach the run's consumers.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::load::{run_load, LoadOutcome, LoadSpec};
use crate::backend::Backend;
use crate::clock::random_id;
use crate::scenario::{Rate, Workload};

/// The probe's warm-up, measured phase and drain.
pub const PROBE_WARMUP: Duration = Duration::from_secs(1);
pub const PROBE_DURATION: Duration = Duration::from_secs(3);
const PROBE_DRAIN: Duration = Duration::from_secs(10);

/// What a probe measured and the rate the run then used (meta.json's `rate_probe`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateProbe {
    /// The share of the maximum asked for (0.8 for "80% of max").
    pub share: f64,
    /// Distinct messages received per second over the probe's measured phase.
    pub max_received_per_s: f64,
    /// Confirmed per second over the same phase (0 without confirms).
    pub max_confirmed_per_s: f64,
    /// The probe's measured phase, s.
    pub measured_s: f64,
    /// The rate the run was given: `share` × `max_received_per_s`, msg/s over all producers.
    pub rate: f64,
}

impl RateProbe {
    /// One line for notices and the report.
    pub fn describe(&self) -> String {
        format!(
            "{:.0} msg/s = {:.0}% of the {:.0} msg/s received in a {:.0} s max-rate probe just before",
            self.rate,
            self.share * 100.0,
            self.max_received_per_s,
            self.measured_s
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("setting up the rate probe's destinations: {0}")]
    Setup(#[from] crate::backend::BackendError),
    #[error("the max-rate probe received nothing in {0:?} (status: {1}); cannot set \"{2}\"")]
    Nothing(Duration, String, Rate),
    #[error("interrupted during the rate probe")]
    Interrupted,
}

/// The workload to run: `w` itself unless its rate is a share of the maximum, which a probe
/// on destinations `<prefix>p*` then resolves to msg/s.
pub async fn resolve(
    backend: &Arc<dyn Backend>,
    prefix: &str,
    label: &str,
    kind: &str,
    w: &Workload,
    cancel: &mut watch::Receiver<bool>,
) -> Result<Option<(Workload, RateProbe)>, ProbeError> {
    let Rate::ShareOfMax(share) = w.rate else {
        return Ok(None);
    };
    let probe = probe_workload(w);
    let dests = backend
        .setup(&format!("{prefix}p"), probe.destinations)
        .await?;
    let LoadOutcome {
        summary,
        interrupted,
        ..
    } = run_load(
        LoadSpec {
            run_id: random_id(),
            label: &format!("{label} (rate probe)"),
            kind,
            backend: backend.clone(),
            dests: &dests,
            workload: &probe,
            faults: Vec::new(),
        },
        None,
        &mut [],
        cancel,
    )
    .await;
    if let Err(e) = backend.teardown(&dests).await {
        crate::errln!("[{label}] rate probe teardown: {e}");
    }
    if interrupted {
        return Err(ProbeError::Interrupted);
    }
    let found = RateProbe {
        share,
        max_received_per_s: summary.received_per_s,
        max_confirmed_per_s: summary.confirmed_per_s,
        measured_s: summary.measured_s,
        rate: (share * summary.received_per_s).round(),
    };
    if found.rate < 1.0 {
        return Err(ProbeError::Nothing(PROBE_DURATION, summary.status, w.rate));
    }
    let mut run = w.clone();
    run.rate = Rate::PerSecond(found.rate);
    Ok(Some((run, found)))
}

/// The run's workload at max rate for a short measured phase, without faults.
fn probe_workload(w: &Workload) -> Workload {
    Workload {
        rate: Rate::Max,
        warmup: PROBE_WARMUP,
        duration: PROBE_DURATION,
        drain_timeout: PROBE_DRAIN,
        repeat: 1,
        messages: None,
        ..w.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;

    fn workload(rate: Rate) -> Workload {
        let text = "message_size = 100\nrate = 10\nduration = \"30s\"\nwarmup = \"5s\"\n";
        let mut w: Workload = toml::from_str(text).expect("workload");
        w.rate = rate;
        w
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_share_of_max_becomes_that_share_of_what_the_probe_received() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new(Default::default()));
        let (_tx, mut cancel) = watch::channel(false);
        let w = workload(Rate::ShareOfMax(0.5));
        let (run, probe) = resolve(&backend, "t", "mem", "memory", &w, &mut cancel)
            .await
            .expect("probe")
            .expect("a share of max is probed");
        assert!(probe.max_received_per_s > 1000.0, "{probe:?}");
        assert_eq!(probe.rate, (0.5 * probe.max_received_per_s).round());
        assert_eq!(run.rate, Rate::PerSecond(probe.rate));
        // Everything else is the scenario's.
        assert_eq!((run.duration, run.warmup), (w.duration, w.warmup));
        assert!(
            probe.describe().contains("50% of the"),
            "{}",
            probe.describe()
        );
    }

    #[tokio::test]
    async fn a_fixed_rate_needs_no_probe() {
        let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new(Default::default()));
        let (_tx, mut cancel) = watch::channel(false);
        let w = workload(Rate::PerSecond(10.0));
        let r = resolve(&backend, "t", "mem", "memory", &w, &mut cancel).await;
        assert!(matches!(r, Ok(None)));
    }
}
