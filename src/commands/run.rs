//! `brokerbench validate`, `run` and `quick`: check scenario files (with the workload flags
//! applied), then run them one after another with the harness's ceiling recorded, a report per
//! run and the overview at the end; `quick` runs a scenario built from its flags the same way.

use std::path::{Path, PathBuf};

use tokio::sync::watch;

use super::{cancellation, results, Failure};
use crate::run::verdict_status::RunStatus;
use crate::run::{Prepared, RunError, RunOptions};
use crate::scenario;

/// `run`'s flags beside the scenario files.
pub struct RunFlags {
    pub results: PathBuf,
    pub quiet: bool,
    pub overrides: scenario::WorkloadOverrides,
    /// `--metrics-addr`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Load and check every file with the flags applied (without starting anything); the first
/// error is bad input.
fn check_all(
    scenarios: &[PathBuf],
    overrides: &scenario::WorkloadOverrides,
) -> Result<Vec<Prepared>, Failure> {
    scenarios
        .iter()
        .map(|p| Prepared::load(p, overrides).map_err(|e| Failure::Input(e.to_string())))
        .collect()
}

pub fn validate(scenarios: &[PathBuf]) -> Result<(), Failure> {
    for p in check_all(scenarios, &Default::default())? {
        let s = &p.scenario;
        crate::outln!(
            "{}: ok ({} backends: {})",
            p.file.display(),
            s.backends.len(),
            s.backends
                .iter()
                .map(|b| b.label())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// `brokerbench run`: every file checked with the flags before anything starts, then run.
pub async fn run(scenarios: &[PathBuf], flags: RunFlags) -> Result<(), Failure> {
    let prepared = check_all(scenarios, &flags.overrides)?;
    run_all(prepared, flags).await
}

/// Run prepared scenarios one after another, as `run` does: the harness's ceiling first, a
/// report per run, the overview at the end; the exit status of the worst.
pub async fn run_all(prepared: Vec<Prepared>, flags: RunFlags) -> Result<(), Failure> {
    // The run's watchdog is this same program (`brokerbench __watchdog`).
    let exe = std::env::current_exe().map_err(|e| {
        Failure::Failed(format!(
            "cannot find this program's path to start the run's watchdog: {e}"
        ))
    })?;
    let cancel = cancellation();
    let harness_ceiling = harness_ceiling(&exe, &flags.results, flags.quiet, cancel.clone()).await;
    if *cancel.borrow() {
        return Err(Failure::Interrupted);
    }
    let opts = RunOptions {
        results_root: flags.results,
        quiet: flags.quiet,
        overrides: flags.overrides,
        watchdog_exe: Some(exe),
        harness_ceiling,
        metrics_addr: flags.metrics_addr,
    };
    let mut failure = None;
    let mut worst = RunStatus::Ok;
    let mut ran = false;
    for p in prepared {
        let file = p.file.clone();
        match crate::run::run_prepared(p, &opts, cancel.clone()).await {
            Ok(out) => {
                crate::outln!("{}: results in {}", file.display(), out.dir.display());
                for s in &out.summaries {
                    crate::outln!("  {}", s.one_line());
                }
                // A report that cannot be written is said, and the run's result stands.
                // (`run_scenario` wrote results.json.)
                if let Err(e) = results::document(&out.dir) {
                    crate::errln!("error: {e}");
                }
                ran = true;
                if out.interrupted {
                    failure = Some(Failure::Interrupted);
                    break;
                }
                let status = RunStatus::of(&out.summaries);
                if status == RunStatus::Anomaly {
                    for s in out.summaries.iter().filter(|s| s.has_anomaly()) {
                        crate::errln!(
                            "anomaly: {} delivered {} messages this run never sent (see the report's Anomalies section)",
                            s.backend, s.phantom
                        );
                    }
                }
                worst = worst.max(status);
            }
            Err(RunError::Interrupted) => {
                failure = Some(Failure::Interrupted);
                break;
            }
            Err(e @ RunError::Scenario(_)) => return Err(Failure::Input(e.to_string())),
            Err(e) => {
                failure = Some(Failure::Failed(format!("{}: {e}", file.display())));
                break;
            }
        }
    }
    if ran {
        if let Err(e) = results::overview(&opts.results_root) {
            crate::errln!("error: {e}");
        }
    }
    match failure {
        Some(f) => Err(f),
        None if worst.exit_code() != 0 => Err(Failure::Status(worst.exit_code())),
        None => Ok(()),
    }
}

/// The harness's ceiling for this binary on this host, from the cache or measured now (before
/// any cluster starts). A failure is said and the run goes on without it.
async fn harness_ceiling(
    exe: &Path,
    results: &Path,
    quiet: bool,
    mut cancel: watch::Receiver<bool>,
) -> Option<crate::calibrate::Ceiling> {
    if !quiet {
        crate::errln!(
            "harness ceiling: looking it up (measured once per binary and host, about 3 s)"
        );
    }
    match crate::calibrate::cache::ceiling(exe, results, &mut cancel).await {
        Ok((c, measured)) => {
            if !quiet {
                crate::errln!(
                    "harness ceiling: {:.0} msg/s, {:.2} s CPU per million messages ({})",
                    c.msgs_per_s,
                    c.cpu_s_per_million,
                    if measured { "measured now" } else { "cached" }
                );
            }
            Some(c)
        }
        Err(e) => {
            crate::errln!("warning: {e}; the results will not record the harness's ceiling");
            None
        }
    }
}
