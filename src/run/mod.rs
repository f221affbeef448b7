//! A scenario run: validate -> results folder -> clusters -> each backend in turn -> metadata.

pub mod backend_run;
pub mod clusters;
pub mod load;
pub mod probe;
pub mod verdict_status;
pub mod versions;
pub mod watchdog;

use std::path::{Path, PathBuf};

use tokio::sync::watch;

use crate::cluster::ClusterError;
use crate::monitoring::config::{self, Targets};
use crate::monitoring::live::LiveExporter;
use crate::monitoring::query;
use crate::monitoring::stack::MonitoringStack;
use crate::report::csv_files::CsvSink;
use crate::report::hlog::HlogSink;
use crate::report::meta::{git_commit, utc_now, HostInfo, RunMeta, CAVEAT};
use crate::report::progress::ProgressSink;
use crate::report::{ReportError, Sink, SummaryRow};
use crate::scenario::{self, ScenarioError};

/// The monitoring stack's folder inside a run folder (`monitoring::stack`).
pub const MONITORING_DIR: &str = "monitoring";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("writing results: {0}")]
    Report(#[from] ReportError),
    #[error("{}: {source}", .path.display())]
    Results {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the run's watchdog ({} __watchdog): {source}", .exe.display())]
    Watchdog {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Monitoring(#[from] crate::monitoring::MonitoringError),
    #[error("interrupted")]
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where run folders go (default `results/`).
    pub results_root: PathBuf,
    pub quiet: bool,
    /// The workload's figures from the command line (`run --rate 5000 --duration 120s`, longer
    /// profiles: `PROFILE=full`), applied to every scenario file and recorded in meta.json.
    pub overrides: scenario::WorkloadOverrides,
    /// The brokerbench executable to start as the run's watchdog (`run::watchdog`), which
    /// kills the run's local clusters if this process dies without stopping them. None: no
    /// watchdog (a library caller that stops the clusters itself).
    pub watchdog_exe: Option<PathBuf>,
    /// The harness's ceiling on this host (`calibrate::cache::ceiling`), recorded in meta.json.
    pub harness_ceiling: Option<crate::calibrate::Ceiling>,
    /// `--metrics-addr`: serve the live metrics there (wins over the scenario's `metrics_addr`).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    pub summaries: Vec<SummaryRow>,
    pub interrupted: bool,
}

/// A new folder `<root>/<UTC time>-<scenario>/`, never an existing one.
pub fn create_run_dir(root: &Path, name: &str) -> Result<PathBuf, RunError> {
    std::fs::create_dir_all(root).map_err(|source| RunError::Results {
        path: root.to_path_buf(),
        source,
    })?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    for n in 1..1000 {
        let candidate = if n == 1 {
            root.join(format!("{stamp}-{name}"))
        } else {
            root.join(format!("{stamp}-{name}-{n}"))
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(RunError::Results {
                    path: candidate,
                    source,
                })
            }
        }
    }
    Err(RunError::Results {
        path: root.to_path_buf(),
        source: std::io::Error::other("too many runs in the same second"),
    })
}

/// A scenario ready to run: read, the command line's overrides applied, checked.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub scenario: scenario::Scenario,
    /// Where it came from (a file, or `scenario::quick::SOURCE`), for messages and meta.json.
    pub file: PathBuf,
    /// What the run folder keeps as scenario.toml: the file as written (the overrides are in
    /// meta.json), or quick's scenario as TOML.
    pub text: String,
    /// The flags applied to it.
    pub overrides: scenario::WorkloadOverrides,
}

impl Prepared {
    /// Read a scenario file, apply `overrides` and check the result and the broker versions
    /// it needs, before anything starts.
    pub fn load(
        path: &Path,
        overrides: &scenario::WorkloadOverrides,
    ) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut scenario = scenario::parse(path, &text)?;
        overrides.apply(&mut scenario, path)?;
        versions::check_before_start(&scenario, path)?;
        Ok(Prepared {
            scenario,
            file: path.to_path_buf(),
            text,
            overrides: overrides.clone(),
        })
    }

    /// `brokerbench quick`'s scenario (`scenario::quick`).
    pub fn quick(
        backend_type: &str,
        base_port: Option<u16>,
        overrides: &scenario::WorkloadOverrides,
    ) -> Result<Self, ScenarioError> {
        let file = PathBuf::from(scenario::quick::SOURCE);
        let scenario = scenario::quick::scenario(backend_type, base_port, overrides)?;
        versions::check_before_start(&scenario, &file)?;
        Ok(Prepared {
            text: scenario::quick::to_toml(&scenario)?,
            scenario,
            file,
            overrides: overrides.clone(),
        })
    }
}

/// Run a scenario file with `opts.overrides`. The scenario is validated before anything is
/// started.
pub async fn run_scenario(
    path: &Path,
    opts: &RunOptions,
    cancel: watch::Receiver<bool>,
) -> Result<RunOutcome, RunError> {
    let prepared = Prepared::load(path, &opts.overrides)?;
    run_prepared(prepared, opts, cancel).await
}

/// Run a prepared scenario (`opts.overrides` are already in it).
pub async fn run_prepared(
    prepared: Prepared,
    opts: &RunOptions,
    mut cancel: watch::Receiver<bool>,
) -> Result<RunOutcome, RunError> {
    let Prepared {
        scenario,
        file,
        text,
        overrides,
    } = prepared;
    let path = file.as_path();
    let dir = create_run_dir(&opts.results_root, &scenario.name)?;
    std::fs::write(dir.join("scenario.toml"), text).map_err(|source| RunError::Results {
        path: dir.join("scenario.toml"),
        source,
    })?;
    if !opts.quiet {
        crate::errln!("results: {}", dir.display());
    }
    let mut meta = RunMeta {
        brokerbench_version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: git_commit(),
        scenario: scenario.name.clone(),
        scenario_file: path.display().to_string(),
        run_id: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        started_utc: utc_now(),
        ended_utc: None,
        host: HostInfo::read(),
        workload: serde_json::to_value(&scenario.workload).unwrap_or_default(),
        clusters: serde_json::to_value(&scenario.clusters).unwrap_or_default(),
        brokers: Vec::new(),
        backends: Vec::new(),
        harness_ceiling: opts.harness_ceiling.clone(),
        overrides,
        caveat: CAVEAT.to_string(),
    };
    write_meta(&dir, &meta)?;
    let mut sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(CsvSink::create(&dir)?),
        Box::new(HlogSink::new(&dir)?),
    ];
    if !opts.quiet {
        sinks.push(Box::new(ProgressSink::default()));
    }
    let exporter = live_exporter(&scenario, opts)?;
    if let Some(e) = &exporter {
        sinks.push(Box::new(e.sink()));
        if !opts.quiet {
            crate::errln!("live metrics: http://{}/metrics", e.addr);
        }
    }
    let mut clusters = match clusters::RunClusters::start(&scenario, &dir, opts, &mut cancel).await
    {
        Ok(c) => c,
        Err(e) => {
            meta.ended_utc = Some(utc_now());
            write_meta(&dir, &meta)?;
            return Err(e);
        }
    };
    meta.brokers = clusters.meta(&dir);
    write_meta(&dir, &meta)?;
    let stack = if scenario.monitoring.enabled {
        let addr = exporter.as_ref().map(|e| e.addr);
        let targets = crate::monitoring::config::targets(&scenario, &scenario.monitoring, addr);
        match clusters.start_monitoring(&targets, &dir, opts).await {
            Ok(stack) => Some((stack, targets, unix_now())),
            Err(e) => {
                std::mem::take(&mut clusters).stop().await;
                meta.ended_utc = Some(utc_now());
                write_meta(&dir, &meta)?;
                return Err(e);
            }
        }
    } else {
        None
    };
    // A cluster whose version could not be read before it started (or an external one).
    if let Err(e) = versions::check_running(&scenario, path, &clusters) {
        std::mem::take(&mut clusters).stop().await;
        meta.ended_utc = Some(utc_now());
        write_meta(&dir, &meta)?;
        return Err(e.into());
    }
    let mut summaries = Vec::new();
    let mut interrupted = false;
    let repeat = scenario.workload.repeat.max(1);
    let backends = scenario.backends.len();
    // Repetitions interleave the backends: A B C, A B C, …
    let order = (1..=repeat).flat_map(|index| {
        scenario.backends.iter().enumerate().map(move |(i, spec)| {
            let rep = backend_run::Repetition { index, of: repeat };
            ((index - 1) * backends + i, rep, spec)
        })
    });
    for (i, rep, spec) in order {
        let endpoints = clusters.endpoints_for(spec);
        let on = clusters
            .cluster_of(spec)
            .map(|c| backend_run::OnCluster {
                name: c.name.clone(),
                kind: Some(c.kind),
                version: c.version.as_ref().map(|v| v.to_string()),
            })
            .unwrap_or_default();
        let control = clusters.control_for(spec);
        let spec = &scenario.effective_spec(spec);
        let guarantee = scenario.guarantee(spec);
        let out = backend_run::run_backend(
            i,
            rep,
            spec,
            &on,
            guarantee,
            &scenario.workload,
            &scenario.faults,
            &endpoints,
            control,
            &mut sinks,
            &mut cancel,
        )
        .await;
        summaries.push(out.summary);
        let mut backend_meta = out.meta;
        backend_meta.failure_detection = Some(scenario.failure_detection(spec));
        meta.backends.push(backend_meta);
        write_meta(&dir, &meta)?;
        if out.interrupted || *cancel.borrow() {
            interrupted = true;
            break;
        }
    }
    if let Some((stack, targets, start)) = &stack {
        keep_prometheus_series(stack, targets, *start, &dir, opts.quiet).await;
    }
    std::mem::take(&mut clusters).stop().await;
    drop(exporter);
    for s in sinks.iter_mut() {
        s.on_run_end()?;
    }
    meta.ended_utc = Some(utc_now());
    write_meta(&dir, &meta)?;
    crate::report::results_json::write(&dir)?;
    Ok(RunOutcome {
        dir,
        summaries,
        interrupted,
    })
}

/// The run's live metrics exporter, if the flag or the scenario asks for one.
fn live_exporter(
    scenario: &scenario::Scenario,
    opts: &RunOptions,
) -> Result<Option<LiveExporter>, RunError> {
    let Some(addr) = crate::monitoring::metrics_addr(scenario, opts.metrics_addr) else {
        return Ok(None);
    };
    // (The run's errors are said after the file's name.)
    let field = if opts.metrics_addr.is_some() {
        "--metrics-addr"
    } else if scenario.metrics_addr.is_some() {
        "field `metrics_addr`"
    } else {
        "`monitoring` without `metrics_addr`: the default address"
    };
    Ok(Some(LiveExporter::start(addr, field)?))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// prometheus.csv: the broker-side series from the stack's start to now, once Prometheus has
/// scraped past the end of the run. A failure is said; the run's results stand.
async fn keep_prometheus_series(
    stack: &MonitoringStack,
    targets: &Targets,
    start: f64,
    dir: &Path,
    quiet: bool,
) {
    let end = unix_now();
    let scrape = targets.scrape_interval;
    let mut jobs = Vec::new();
    if targets.brokerbench.is_some() {
        jobs.push(config::JOB_BROKERBENCH);
    }
    if !targets.redis.is_empty() {
        jobs.push(config::JOB_REDIS);
    }
    if !targets.rabbitmq.is_empty() {
        jobs.push(config::JOB_RABBITMQ);
    }
    let port = stack.prometheus_port;
    crate::monitoring::query::wait_for_scrape(port, end, scrape * 5).await;
    let kept = match query::broker_series(port, &jobs, start, end, scrape).await {
        Ok(rows) => query::write_csv(dir, &rows).map(|()| rows.len()),
        Err(e) => Err(e),
    };
    match kept {
        Ok(n) if !quiet => crate::errln!("prometheus.csv: {n} samples"),
        Ok(_) => {}
        Err(e) => crate::errln!("warning: prometheus.csv not written: {e}"),
    }
}

fn write_meta(dir: &Path, meta: &RunMeta) -> Result<(), RunError> {
    let path = dir.join("meta.json");
    let text = serde_json::to_string_pretty(meta).map_err(|e| RunError::Results {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(&path, text).map_err(|source| RunError::Results { path, source })
}
