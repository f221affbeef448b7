//! brokerbench's entry point: parse the command line, run, map errors to exit codes
//! (0 ok, 1 failure, 2 bad input, 3 a ledger that does not add up (a harness bug), 4 an anomaly
//! of the system under test (deliveries of messages never sent), 130 interrupted).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use brokerbench::cli::{Cli, ClusterAction, ClusterKind, Command};
use brokerbench::cluster::rabbitmq::{LocalRabbitCluster, RabbitClusterConfig};
use brokerbench::cluster::redis::{LocalRedisCluster, RedisClusterConfig};
use brokerbench::run::verdict_status::RunStatus;
use brokerbench::run::{RunError, RunOptions};
use brokerbench::scenario::{self, AppendFsync, ClusterSection};
use clap::Parser;
use tokio::sync::watch;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The watchdog needs no async runtime: it blocks on a pipe and polls /proc.
    if let Command::Watchdog {
        parent,
        parent_start,
        run_dir,
    } = &cli.command
    {
        return ExitCode::from(brokerbench::run::watchdog::watch(
            *parent,
            *parent_start,
            run_dir,
        ));
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            brokerbench::errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async_main(cli))
}

/// The harness's ceiling for this binary on this host, from the cache or measured now (before
/// any cluster starts). A failure is said and the run goes on without it.
async fn harness_ceiling(
    exe: &Path,
    results: &Path,
    quiet: bool,
    mut cancel: watch::Receiver<bool>,
) -> Option<brokerbench::calibrate::Ceiling> {
    if !quiet {
        brokerbench::errln!(
            "harness ceiling: looking it up (measured once per binary and host, about 3 s)"
        );
    }
    match brokerbench::calibrate::cache::ceiling(exe, results, &mut cancel).await {
        Ok((c, measured)) => {
            if !quiet {
                brokerbench::errln!(
                    "harness ceiling: {:.0} msg/s, {:.2} s CPU per million messages ({})",
                    c.msgs_per_s,
                    c.cpu_s_per_million,
                    if measured { "measured now" } else { "cached" }
                );
            }
            Some(c)
        }
        Err(e) => {
            brokerbench::errln!("warning: {e}; the results will not record the harness's ceiling");
            None
        }
    }
}

/// `brokerbench calibrate`: measure, print, and cache the default calibration.
async fn calibrate(a: brokerbench::cli::CalibrateArgs) -> ExitCode {
    use brokerbench::calibrate::{cache, measure, CalibrateOptions};
    if a.size < brokerbench::payload::HEADER_LEN || a.destinations == 0 || a.max_in_flight == 0 {
        brokerbench::errln!(
            "error: --size must be at least {} and --destinations and --max-in-flight at least 1",
            brokerbench::payload::HEADER_LEN
        );
        return ExitCode::from(2);
    }
    let opts = CalibrateOptions {
        warmup: a.warmup.unwrap_or(match a.messages {
            Some(_) => std::time::Duration::ZERO,
            None => CalibrateOptions::default().warmup,
        }),
        // With a message count, the duration only bounds the run.
        duration: match a.messages {
            Some(m) => {
                std::time::Duration::from_secs(10)
                    + std::time::Duration::from_micros(m.saturating_mul(20))
            }
            None => a.duration,
        },
        messages: a.messages,
        destinations: a.destinations,
        message_size: a.size,
        max_in_flight: a.max_in_flight,
    };
    let mut cancel = cancellation();
    let mut sinks: Vec<Box<dyn brokerbench::report::Sink>> = Vec::new();
    if a.verbose {
        sinks.push(Box::new(brokerbench::calibrate::IntervalLines));
    }
    let c = match measure(&opts, &mut sinks, &mut cancel).await {
        Ok(c) => c,
        Err(brokerbench::calibrate::CalibrateError::Interrupted) => return ExitCode::from(130),
        Err(e) => {
            brokerbench::errln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if a.json {
        match serde_json::to_string_pretty(&c) {
            Ok(text) => brokerbench::outln!("{text}"),
            Err(e) => {
                brokerbench::errln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        for line in c.lines() {
            brokerbench::outln!("{line}");
        }
    }
    // The default calibration is what `run` records: keep it for this binary.
    if opts == CalibrateOptions::default() {
        let stored = std::env::current_exe()
            .map_err(|e| e.to_string())
            .and_then(|exe| cache::CacheKey::of(&exe).map_err(|e| e.to_string()))
            .and_then(|key| {
                cache::store(&cache::cache_dir(Path::new("results")), &key, &c)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = stored {
            brokerbench::errln!("warning: the ceiling was not cached: {e}");
        }
    }
    ExitCode::SUCCESS
}

/// A watch that turns true on Ctrl-C or SIGTERM.
fn cancellation() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        brokerbench::errln!("\nstopping: cleaning up what was started");
        let _ = tx.send(true);
    });
    rx
}

async fn async_main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Validate { scenarios } => {
            for p in &scenarios {
                let checked = scenario::load(p).and_then(|s| {
                    brokerbench::run::versions::check_before_start(&s, p).map(|()| s)
                });
                match checked {
                    Ok(s) => brokerbench::outln!(
                        "{}: ok ({} backends: {})",
                        p.display(),
                        s.backends.len(),
                        s.backends
                            .iter()
                            .map(|b| b.label())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Err(e) => {
                        brokerbench::errln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Calibrate(a) => calibrate(a).await,
        Command::Overview { results } => {
            if write_overview(&results) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Command::Verdicts { root } => match brokerbench::report::overview::verdict_lines(&root) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: verdicts of {}: {e}", root.display());
                ExitCode::from(2)
            }
        },
        Command::Report { dirs } => {
            if dirs.iter().all(|d| write_report(d)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Command::Compare { a, b, out } => {
            let name = |p: &std::path::Path| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let out = out.unwrap_or_else(|| {
                std::path::PathBuf::from("results").join(format!(
                    "compare-{}-vs-{}",
                    name(&a),
                    name(&b)
                ))
            });
            match brokerbench::report::document::write_comparison(&a, &b, &out) {
                Ok(w) => {
                    brokerbench::outln!("comparison: {}", w.html.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    brokerbench::errln!("error: compare {} {}: {e}", a.display(), b.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Run {
            scenarios,
            results,
            quiet,
            duration,
            warmup,
            repeat,
        } => {
            // Validate every file before starting anything.
            for p in &scenarios {
                let checked = scenario::load(p)
                    .and_then(|s| brokerbench::run::versions::check_before_start(&s, p));
                if let Err(e) = checked {
                    brokerbench::errln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
            // The run's watchdog is this same program (`brokerbench __watchdog`).
            let exe = match std::env::current_exe() {
                Ok(exe) => exe,
                Err(e) => {
                    brokerbench::errln!(
                        "error: cannot find this program's path to start the run's watchdog: {e}"
                    );
                    return ExitCode::from(1);
                }
            };
            let cancel = cancellation();
            let harness_ceiling = harness_ceiling(&exe, &results, quiet, cancel.clone()).await;
            if *cancel.borrow() {
                return ExitCode::from(130);
            }
            let opts = RunOptions {
                results_root: results,
                quiet,
                duration,
                warmup,
                repeat: repeat.map(usize::from),
                watchdog_exe: Some(exe),
                harness_ceiling,
            };
            let mut code = ExitCode::SUCCESS;
            let mut worst = RunStatus::Ok;
            let mut ran = false;
            for p in &scenarios {
                match brokerbench::run::run_scenario(p, &opts, cancel.clone()).await {
                    Ok(out) => {
                        brokerbench::outln!("{}: results in {}", p.display(), out.dir.display());
                        for s in &out.summaries {
                            brokerbench::outln!("  {}", s.one_line());
                        }
                        // A report that cannot be written is said, and the run's result stands.
                        write_report(&out.dir);
                        ran = true;
                        if out.interrupted {
                            code = ExitCode::from(130);
                            break;
                        }
                        let status = RunStatus::of(&out.summaries);
                        if status == RunStatus::Anomaly {
                            for s in out.summaries.iter().filter(|s| s.has_anomaly()) {
                                brokerbench::errln!(
                                    "anomaly: {} delivered {} messages this run never sent (see the report's Anomalies section)",
                                    s.backend, s.phantom
                                );
                            }
                        }
                        worst = worst.max(status);
                    }
                    Err(RunError::Interrupted) => {
                        code = ExitCode::from(130);
                        break;
                    }
                    Err(e @ RunError::Scenario(_)) => {
                        brokerbench::errln!("error: {e}");
                        return ExitCode::from(2);
                    }
                    Err(e) => {
                        brokerbench::errln!("error: {}: {e}", p.display());
                        code = ExitCode::from(1);
                        break;
                    }
                }
            }
            if ran {
                write_overview(&opts.results_root);
            }
            if code == ExitCode::SUCCESS {
                code = ExitCode::from(worst.exit_code());
            }
            code
        }
        Command::Cluster { action } => match cluster(action).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                brokerbench::errln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Produce(a) => {
            let stop = cancellation();
            let target = match &a.rabbitmq {
                Some(dir) => brokerbench::tutorial::ProduceTarget::Rabbitmq {
                    dir: dir.clone(),
                    queue: a.stream.clone(),
                },
                None => brokerbench::tutorial::ProduceTarget::Redis {
                    seed: a.seed.clone(),
                    stream: a.stream.clone(),
                },
            };
            let options = brokerbench::tutorial::ProduceOptions {
                rate: a.rate,
                size: a.size,
                max_in_flight: a.max_in_flight,
                duration: a.duration,
                count: a.count,
            };
            let done = match a.count.filter(|_| a.floor) {
                Some(n) => {
                    brokerbench::client_floor::produce_floor(
                        &target,
                        n,
                        a.size,
                        a.max_in_flight,
                        a.duration,
                        stop,
                    )
                    .await
                }
                None => brokerbench::tutorial::produce(&target, options, stop).await,
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    brokerbench::errln!("error: {e}\n(is the cluster up? `make redis-cluster` starts one on 127.0.0.1:7001-7006)");
                    ExitCode::from(1)
                }
            }
        }
        Command::Watchdog { .. } => {
            brokerbench::errln!(
                "error: {} runs only as `brokerbench run`'s helper",
                brokerbench::run::watchdog::SUBCOMMAND
            );
            ExitCode::from(2)
        }
        Command::Consume(a) => {
            let stop = cancellation();
            match brokerbench::tutorial::consume(&a.seed, &a.stream, a.duration, stop).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    brokerbench::errln!("error: {e}\n(is the cluster up? `make redis-cluster` starts one on 127.0.0.1:7001-7006)");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn progress(line: &str) {
    brokerbench::errln!("  {line}");
}

async fn cluster(action: ClusterAction) -> anyhow::Result<()> {
    match action {
        ClusterAction::Up {
            kind,
            at,
            scenario: file,
            base_port,
            node_timeout_ms,
            appendonly,
            appendfsync,
            save,
            amqp_base_port,
        } => {
            let dir = at.resolve(kind);
            let section_kind = match kind {
                ClusterKind::Redis => scenario::ClusterKind::Redis,
                ClusterKind::Rabbitmq => scenario::ClusterKind::Rabbitmq,
            };
            let section = match &file {
                Some(f) => match scenario::load(f)?.clusters.only_of(section_kind) {
                    Ok((_, section)) => section,
                    Err(names) => anyhow::bail!(
                        "{}: {} {} clusters ({}); `cluster up` starts one: keep only its section in a copy of the file",
                        f.display(),
                        names.len(),
                        section_kind.product(),
                        names.join(", ")
                    ),
                },
                None => ClusterSection::default_of(section_kind),
            };
            match section {
                ClusterSection::Redis(mut s) => {
                    let s = &mut s;
                    if let Some(p) = base_port {
                        s.base_port = p;
                    }
                    if let Some(t) = node_timeout_ms {
                        s.node_timeout_ms = t;
                    }
                    if let Some(a) = appendonly {
                        s.appendonly = a;
                    }
                    if let Some(f) = appendfsync {
                        s.appendfsync = match f.as_str() {
                            "no" => AppendFsync::No,
                            "everysec" => AppendFsync::Everysec,
                            "always" => AppendFsync::Always,
                            other => {
                                anyhow::bail!("--appendfsync {other}: use no, everysec or always")
                            }
                        };
                    }
                    if let Some(r) = save {
                        s.save = r;
                    }
                    let c = LocalRedisCluster::up(
                        RedisClusterConfig::from_section(dir.clone(), s),
                        &progress,
                    )
                    .await?;
                    brokerbench::outln!(
                        "Redis Cluster up in {} (stop it with `brokerbench cluster down redis{}`)",
                        dir.display(),
                        dir_flag(&at.dir)
                    );
                    brokerbench::outln!("{}", LocalRedisCluster::format_status(&c.status().await?));
                }
                ClusterSection::Rabbitmq(mut s) => {
                    let s = &mut s;
                    if let Some(p) = amqp_base_port {
                        s.amqp_base_port = p;
                    }
                    let c = LocalRabbitCluster::up(
                        RabbitClusterConfig::from_section(dir.clone(), s),
                        &progress,
                    )
                    .await?;
                    brokerbench::outln!("RabbitMQ cluster up in {} (stop it with `brokerbench cluster down rabbitmq{}`)", dir.display(), dir_flag(&at.dir));
                    for e in c.endpoints() {
                        brokerbench::outln!(
                            "  {}  {}  management http://{}",
                            e.node,
                            e.amqp_uri,
                            e.http
                        );
                    }
                }
            }
            Ok(())
        }
        ClusterAction::Down { kind, at } => {
            let dir = at.resolve(kind);
            match kind {
                ClusterKind::Redis => {
                    LocalRedisCluster::attach(&dir)
                        .with_context(|| no_cluster(&dir))?
                        .down()
                        .await?
                }
                ClusterKind::Rabbitmq => {
                    LocalRabbitCluster::attach(&dir)
                        .with_context(|| no_cluster(&dir))?
                        .down()
                        .await?
                }
            }
            brokerbench::outln!("stopped the cluster in {}", dir.display());
            Ok(())
        }
        ClusterAction::Status { kind, at } => {
            let dir = at.resolve(kind);
            match kind {
                ClusterKind::Redis => {
                    let c = LocalRedisCluster::attach(&dir).with_context(|| no_cluster(&dir))?;
                    brokerbench::outln!("{}", LocalRedisCluster::format_status(&c.status().await?));
                }
                ClusterKind::Rabbitmq => {
                    let c = LocalRabbitCluster::attach(&dir).with_context(|| no_cluster(&dir))?;
                    brokerbench::outln!(
                        "{}",
                        LocalRabbitCluster::format_status(&c.status().await?)
                    );
                }
            }
            Ok(())
        }
    }
}

fn dir_flag(dir: &Option<std::path::PathBuf>) -> String {
    dir.as_ref()
        .map(|d| format!(" --dir {}", d.display()))
        .unwrap_or_default()
}

fn no_cluster(dir: &Path) -> String {
    format!(
        "no cluster state in {} (was `brokerbench cluster up` run with this --dir?)",
        dir.display()
    )
}

/// overview.md / overview.html of a results root: prints the verdicts and the path. Returns
/// false (after saying why) when it cannot be written.
fn write_overview(root: &std::path::Path) -> bool {
    match brokerbench::report::overview::write_overview(root) {
        Ok(w) => {
            brokerbench::outln!("overview of {} runs in {}:", w.runs.len(), root.display());
            for c in &w.claims {
                let from: Vec<&str> = c.from.iter().map(|(r, _)| r.as_str()).collect();
                brokerbench::outln!(
                    "  {}: {}{}",
                    c.claim,
                    c.outcome.as_str(),
                    if from.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", from.join(", "))
                    }
                );
            }
            brokerbench::outln!("overview: {}", w.html.display());
            true
        }
        Err(e) => {
            brokerbench::errln!("error: overview of {}: {e}", root.display());
            false
        }
    }
}

/// Charts, report.md and report.html of a results folder; prints the verdicts and the path.
/// Returns false (after saying why) when the folder cannot be read.
fn write_report(dir: &std::path::Path) -> bool {
    match brokerbench::report::document::write_report(dir) {
        Ok(w) => {
            for e in &w.skipped {
                brokerbench::errln!("  chart skipped: {e}");
            }
            for v in &w.verdicts {
                brokerbench::outln!("  {}: {}", v.claim, v.outcome.as_str());
            }
            brokerbench::outln!("report: {}", w.html.display());
            true
        }
        Err(e) => {
            brokerbench::errln!("error: report for {}: {e}", dir.display());
            false
        }
    }
}
