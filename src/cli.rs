//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::scenario::WorkloadOverrides;

#[derive(Debug, Parser)]
#[command(
    name = "brokerbench",
    version,
    about = "Runs RabbitMQ and Redis Streams side by side on real clusters, breaks them on purpose, and reports what happened."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario file: start the clusters it needs, run each backend, write results.
    Run {
        /// Scenario files (TOML), run one after another.
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
        /// Folder for run folders.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
        /// Serve the harness's live metrics in Prometheus text format on this address while
        /// the run goes, e.g. 127.0.0.1:9190 (docs/monitoring.md); wins over the scenario's
        /// `metrics_addr`.
        #[arg(long, value_name = "IP:PORT", value_parser = crate::scenario::monitoring::parse_addr)]
        metrics_addr: Option<std::net::SocketAddr>,
        /// Workload flags: each replaces that figure everywhere in every scenario file (also a
        /// backend entry's own rate or destinations), is checked like the file's field, and is
        /// recorded in meta.json.
        #[command(flatten)]
        overrides: WorkloadOverrides,
    },
    /// Run one backend type on a local cluster of its kind (default ports) without a scenario
    /// file: 1000 msg/s of 1 KiB messages, 1 destination, 1 producer and 1 consumer, 5 s warm-up
    /// and 30 s measured unless the flags say otherwise; prints the summary. The results folder
    /// is a run's (its scenario.toml runs it again with `run`).
    Quick {
        /// The backend type.
        #[arg(value_name = "BACKEND_TYPE", value_parser = clap::builder::PossibleValuesParser::new(crate::scenario::BACKEND_TYPES))]
        backend_type: String,
        /// Folder for run folders.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
        /// Move the local cluster's ports: Redis, the first node's (default 7001); RabbitMQ,
        /// node 1's AMQP port (default 5672), every other port by as much.
        #[arg(long)]
        base_port: Option<u16>,
        /// Serve the harness's live metrics in Prometheus text format on this address while
        /// the run goes, e.g. 127.0.0.1:9190 (docs/monitoring.md); wins over the scenario's
        /// `metrics_addr`.
        #[arg(long, value_name = "IP:PORT", value_parser = crate::scenario::monitoring::parse_addr)]
        metrics_addr: Option<std::net::SocketAddr>,
        #[command(flatten)]
        overrides: WorkloadOverrides,
    },
    /// Print a completion script for a shell, e.g. `brokerbench completions bash >
    /// /etc/bash_completion.d/brokerbench`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Measure the harness's own ceiling: the whole load engine against the in-memory backend
    /// at max rate (no broker). Prints the end-to-end rate it sustains, the harness CPU per
    /// million messages, the ledger's bytes per message and the process's memory. With the
    /// default settings the figure is also cached for `run` (one per binary and host).
    Calibrate(CalibrateArgs),
    /// Check scenario files without starting anything.
    Validate {
        #[arg(required = true)]
        scenarios: Vec<PathBuf>,
    },
    /// Rebuild the charts and report.md / report.html of results folders from their files
    /// alone (no broker needed).
    Report {
        /// Results folders, e.g. results/20261127T083643Z-failover-leader.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Write overview.md / overview.html in a results root: the newest run of each scenario,
    /// one verdict per claim from the runs that measured it, and the p99-by-rate chart across
    /// runs. `run` refreshes it after its scenarios.
    Overview {
        /// The results root.
        #[arg(long, default_value = "results")]
        results: PathBuf,
    },
    /// Per claim, the verdict of every run under a results root that measured it, with its
    /// reason, and the claim's verdict over them ("runs disagree" when runs of one scenario do).
    Verdicts {
        /// The results root, e.g. results.
        root: PathBuf,
    },
    /// Put two results folders side by side (same charts, both runs) in a new folder; with
    /// --max-regression, also a gate for CI: exit status 5 when B is worse than A beyond it.
    Compare {
        a: PathBuf,
        b: PathBuf,
        /// Where to write (default: results/compare-<a>-vs-<b>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Fail (exit status 5) when B is worse than A by more than this, e.g. 10%, on
        /// throughput (received msg/s) or e2e p99 of any backend series (matched by label;
        /// medians over repetitions).
        #[arg(long, value_name = "PERCENT", value_parser = crate::report::regression::parse_percent)]
        max_regression: Option<f64>,
    },
    /// Start, stop or show a local cluster.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Start or stop Prometheus and one redis_exporter per Redis node as local processes beside
    /// the clusters (`make monitoring`), scraping the exporters, RabbitMQ's prometheus
    /// endpoints and brokerbench's live metrics (docs/monitoring.md).
    Monitoring {
        #[command(subcommand)]
        action: MonitoringAction,
    },
    /// Produce to a Redis Cluster stream until Ctrl-C (or --duration), a line per second.
    Produce(TutorialArgs),
    /// Consume from a Redis Cluster stream until Ctrl-C (or --duration), a line per second,
    /// with end-to-end latency from the producer's intended send time.
    Consume(TutorialArgs),
    /// Internal: the watchdog `run` starts, which kills the run's clusters if `run` dies
    /// without stopping them (see `run::watchdog`).
    #[command(name = "__watchdog", hide = true)]
    Watchdog {
        /// Pid of the `brokerbench run` process to watch.
        #[arg(long)]
        parent: u32,
        /// Its start time in clock ticks after boot (field 22 of /proc/PID/stat).
        #[arg(long)]
        parent_start: u64,
        /// The run folder, whose `clusters/*/cluster.json` list what to kill.
        #[arg(long)]
        run_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// Measured time at max rate, after the warm-up.
    #[arg(long, default_value = "2500ms", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Warm-up before the measured time [default: 500ms; 0 with --messages].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<std::time::Duration>,
    /// Send this many messages instead (e.g. 10000000, to see the harness's memory at that
    /// count); the run ends once all are received (at most after 10 s plus 20 µs per message).
    #[arg(long)]
    pub messages: Option<u64>,
    /// Queues of the in-memory backend, each with one producer and one consumer.
    #[arg(long, default_value_t = 3)]
    pub destinations: usize,
    /// Message size in bytes (at least 40, the harness header).
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Unconfirmed messages a producer may have open at once.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Print the figures as JSON (meta.json's `harness_ceiling`).
    #[arg(long)]
    pub json: bool,
    /// Print a line per second of the load.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClusterKind {
    Redis,
    Rabbitmq,
}

#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Start a local cluster (Redis: 3 masters + 3 replicas; RabbitMQ: 3 nodes).
    Up {
        kind: ClusterKind,
        #[command(flatten)]
        at: ClusterDir,
        /// Read ports and persistence settings from this scenario's [clusters] section.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Redis: first port (nodes use 6 consecutive ports, bus ports +10000).
        #[arg(long)]
        base_port: Option<u16>,
        /// Redis: cluster-node-timeout in ms.
        #[arg(long)]
        node_timeout_ms: Option<u64>,
        /// Redis: appendonly yes/no.
        #[arg(long)]
        appendonly: Option<bool>,
        /// Redis: appendfsync no/everysec/always.
        #[arg(long)]
        appendfsync: Option<String>,
        /// Redis: RDB save rule, e.g. "60 1000" ("" for none).
        #[arg(long)]
        save: Option<String>,
        /// RabbitMQ: AMQP port of node 1 (node N uses +N-1).
        #[arg(long)]
        amqp_base_port: Option<u16>,
    },
    /// Stop exactly the processes that `cluster up` started (pids in the cluster folder).
    Down {
        kind: ClusterKind,
        #[command(flatten)]
        at: ClusterDir,
    },
    /// Show the nodes (and, for RabbitMQ, each queue's leader and members).
    Status {
        kind: ClusterKind,
        #[command(flatten)]
        at: ClusterDir,
    },
}

#[derive(Debug, Subcommand)]
pub enum MonitoringAction {
    /// Start the stack for a scenario's clusters (default: the default local Redis cluster on
    /// 7001-7006 and RabbitMQ cluster with prometheus on 15692-15694), and leave it running.
    Up {
        /// Folder for prometheus.yml, Prometheus's data and the logs.
        #[arg(long, default_value = "run/monitoring")]
        dir: PathBuf,
        /// Take the clusters, the ports and `metrics_addr` from this scenario file.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Prometheus's port [default: the scenario's, else 9090].
        #[arg(long)]
        prometheus_port: Option<u16>,
        /// The first redis_exporter's port, one more per node [default: the scenario's, else 9121].
        #[arg(long)]
        redis_exporter_base_port: Option<u16>,
        /// The harness's metrics address to scrape [default: the scenario's, else 127.0.0.1:9190].
        #[arg(long, value_name = "IP:PORT", value_parser = crate::scenario::monitoring::parse_addr)]
        metrics_addr: Option<std::net::SocketAddr>,
    },
    /// Stop exactly the processes `monitoring up` started (pids in the folder's monitoring.json).
    Down {
        #[arg(long, default_value = "run/monitoring")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ClusterDir {
    /// Cluster folder (default run/redis-cluster or run/rabbitmq-cluster).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

impl ClusterDir {
    pub fn resolve(&self, kind: ClusterKind) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| match kind {
            ClusterKind::Redis => PathBuf::from("run/redis-cluster"),
            ClusterKind::Rabbitmq => PathBuf::from("run/rabbitmq-cluster"),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct TutorialArgs {
    /// Redis Cluster seed node.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub seed: String,
    /// Stream key.
    #[arg(long, default_value = "{bb-tutorial}")]
    pub stream: String,
    /// Producer: messages per second, or "max" (as fast as --max-in-flight allows).
    #[arg(long, default_value = "1000", value_parser = parse_rate)]
    pub rate: f64,
    /// Producer: send exactly this many messages, as fast as --max-in-flight allows (a
    /// produce-only measurement: `make bench-harness`), then print the totals and the rate.
    #[arg(long)]
    pub count: Option<u64>,
    /// Producer, with --count: drive the backend's producer with the smallest batch loop
    /// instead of the load engine (no schedule, ledger or statistics): the client's floor.
    #[arg(long, requires = "count")]
    pub floor: bool,
    /// Producer: a RabbitMQ cluster folder (`brokerbench cluster up rabbitmq --dir D`): publish
    /// with confirms to a quorum queue named after --stream there, instead of to Redis.
    #[arg(long)]
    pub rabbitmq: Option<PathBuf>,
    /// Producer: message size in bytes (at least 40, the harness header).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Stop after this long (load loops are bounded), e.g. "10m".
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Producer: unconfirmed messages allowed at once.
    #[arg(long, default_value_t = 128)]
    pub max_in_flight: usize,
}

/// `--rate`: messages per second, or "max" (0: no schedule, as fast as the window allows).
fn parse_rate(s: &str) -> Result<f64, String> {
    if s.eq_ignore_ascii_case("max") {
        return Ok(0.0);
    }
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a rate; use messages per second (e.g. 1000) or \"max\""
        )),
    }
}
