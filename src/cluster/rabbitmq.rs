//! A local 3-node RabbitMQ cluster, run as plain processes on 127.0.0.1.
//!
//! Layout of a cluster folder `<dir>`:
//! - `<dir>/home/.erlang.cookie` (mode 0400): the HOME of every node and every `rabbitmqctl` call;
//! - `<dir>/rabbit<N>/`: node N's `rabbitmq.conf`, `advanced.config`, `enabled_plugins`,
//!   `rabbitmq-env.conf` (empty), `mnesia/`, `log/`, `rabbit.pid` and `console.log`;
//! - `<dir>/epmd.log`: output of the cluster's own epmd;
//! - `<dir>/cluster.json`: the state file (configuration, pids), written as soon as a pid is
//!   known, so that `down` (or `attach` + `down` from another process) works after a crash.
//!
//! The cluster runs its own epmd on `127.0.0.1:<epmd_port>`; every node and every `rabbitmqctl`
//! call gets `ERL_EPMD_PORT`/`ERL_EPMD_ADDRESS`, and the nodes get `-start_epmd false`, so the
//! system's epmd on 4369 is never used or started and two clusters never share an epmd.
//! Nodes find each other through classic_config peer discovery (no join commands).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::RabbitEndpoint;
use crate::cluster::process::{find_binary, port_in_use, OwnedProcess};
use crate::cluster::rabbitmq_http::{MgmtClient, QueuePlacement};
use crate::cluster::{log_tail, ClusterError, Progress};
use crate::scenario::RabbitClusterSection;

/// Where the Debian package puts the RabbitMQ scripts (run directly, not the /usr/sbin wrappers).
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/rabbitmq/bin";
/// Name of the state file inside the cluster folder.
pub const STATE_FILE: &str = "cluster.json";
/// How long `up` waits for the cluster to form, and `restart_node` for the node to rejoin.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a node gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long to wait for a SIGKILLed process to disappear.
const KILL_WAIT: Duration = Duration::from_secs(15);
/// Number of ports, after the nodes' distribution ports, that `rabbitmqctl` may use for its own
/// (short-lived) distribution listener.
const CLI_DIST_PORTS: u16 = 7;
const INSTALL_FIX: &str = "install it with `apt-get install -y rabbitmq-server`";
const DOWN_FIX: &str = "run `brokerbench cluster down rabbitmq` first";
const ENABLED_PLUGINS: &str = "[rabbitmq_management,rabbitmq_stream,rabbitmq_prometheus].\n";
const POLL: Duration = Duration::from_millis(250);
const LOG_LINES: usize = 20;

/// Settings of a local RabbitMQ cluster. Node N (1-based) uses `<base port> + N - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RabbitClusterConfig {
    /// Cluster folder (node folders, shared HOME, state file).
    pub dir: PathBuf,
    /// Number of nodes (3).
    pub nodes: usize,
    pub amqp_base_port: u16,
    pub http_base_port: u16,
    pub stream_base_port: u16,
    pub prometheus_base_port: u16,
    pub dist_base_port: u16,
    /// Port of the cluster's own epmd.
    pub epmd_port: u16,
    /// Folder with `rabbitmq-server` and `rabbitmqctl`.
    pub bin_dir: PathBuf,
}

impl RabbitClusterConfig {
    /// Three nodes with the ports of the scenario's `clusters.rabbitmq` section.
    pub fn from_section(dir: PathBuf, s: &RabbitClusterSection) -> Self {
        RabbitClusterConfig {
            dir,
            nodes: 3,
            amqp_base_port: s.amqp_base_port,
            http_base_port: s.http_base_port,
            stream_base_port: s.stream_base_port,
            prometheus_base_port: s.prometheus_base_port,
            dist_base_port: s.dist_base_port,
            epmd_port: s.epmd_port,
            bin_dir: PathBuf::from(DEFAULT_BIN_DIR),
        }
    }

    /// Erlang node name of node `index` (0-based): `rabbit<index+1>@localhost`.
    pub fn node_name(index: usize) -> String {
        format!("rabbit{}@localhost", index + 1)
    }

    /// The node layout (names, ports, folders), without processes.
    pub fn layout(&self) -> Result<Vec<RabbitNode>, ClusterError> {
        (0..self.nodes)
            .map(|index| {
                Ok(RabbitNode {
                    index,
                    name: Self::node_name(index),
                    amqp_port: self.port(self.amqp_base_port, index, "amqp_base_port")?,
                    http_port: self.port(self.http_base_port, index, "http_base_port")?,
                    stream_port: self.port(self.stream_base_port, index, "stream_base_port")?,
                    prometheus_port: self.port(
                        self.prometheus_base_port,
                        index,
                        "prometheus_base_port",
                    )?,
                    dist_port: self.port(self.dist_base_port, index, "dist_base_port")?,
                    dir: self.dir.join(format!("rabbit{}", index + 1)),
                    process: None,
                })
            })
            .collect()
    }

    fn port(&self, base: u16, index: usize, field: &str) -> Result<u16, ClusterError> {
        u16::try_from(base as usize + index).map_err(|_| ClusterError::State {
            dir: self.dir.clone(),
            message: format!(
                "clusters.rabbitmq.{field} = {base} leaves no room for {} nodes; lower it",
                self.nodes
            ),
        })
    }

    /// Range of ports `rabbitmqctl` may listen on (right after the nodes' distribution ports).
    pub fn cli_dist_ports(&self) -> (u16, u16) {
        let min = self.dist_base_port.saturating_add(self.nodes as u16);
        (min, min.saturating_add(CLI_DIST_PORTS - 1))
    }

    /// Every port the cluster listens on: (port, what it is for, config field).
    pub fn port_plan(&self) -> Result<Vec<PortUse>, ClusterError> {
        let mut plan = Vec::new();
        for n in self.layout()? {
            let name = &n.name;
            plan.push(PortUse {
                port: n.amqp_port,
                what: format!("AMQP of {name}"),
                field: "amqp_base_port",
            });
            plan.push(PortUse {
                port: n.http_port,
                what: format!("management HTTP of {name}"),
                field: "http_base_port",
            });
            plan.push(PortUse {
                port: n.stream_port,
                what: format!("stream protocol of {name}"),
                field: "stream_base_port",
            });
            plan.push(PortUse {
                port: n.prometheus_port,
                what: format!("prometheus of {name}"),
                field: "prometheus_base_port",
            });
            plan.push(PortUse {
                port: n.dist_port,
                what: format!("Erlang distribution of {name}"),
                field: "dist_base_port",
            });
        }
        plan.push(PortUse {
            port: self.epmd_port,
            what: "the cluster's epmd".to_string(),
            field: "epmd_port",
        });
        let mut seen: HashMap<u16, &PortUse> = HashMap::new();
        for p in &plan {
            if let Some(other) = seen.insert(p.port, p) {
                return Err(ClusterError::State {
                    dir: self.dir.clone(),
                    message: format!(
                        "port {} is configured both for {} and for {}; change clusters.rabbitmq.{} or clusters.rabbitmq.{}",
                        p.port, other.what, p.what, other.field, p.field
                    ),
                });
            }
        }
        Ok(plan)
    }
}

/// One port of the cluster and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortUse {
    pub port: u16,
    pub what: String,
    /// Field of `clusters.rabbitmq` that sets it.
    pub field: &'static str,
}

/// One node of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RabbitNode {
    /// 0-based.
    pub index: usize,
    /// `rabbit<index+1>@localhost`
    pub name: String,
    pub amqp_port: u16,
    pub http_port: u16,
    pub stream_port: u16,
    pub prometheus_port: u16,
    pub dist_port: u16,
    /// `<cluster dir>/rabbit<index+1>`
    pub dir: PathBuf,
    /// The node's beam.smp, if started (None after `kill_node`).
    pub process: Option<OwnedProcess>,
}

impl RabbitNode {
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("rabbit.pid")
    }
    pub fn mnesia_base(&self) -> PathBuf {
        self.dir.join("mnesia")
    }
    pub fn log_base(&self) -> PathBuf {
        self.dir.join("log")
    }
    /// The node's main log file.
    pub fn log_file(&self) -> PathBuf {
        self.log_base().join(format!("{}.log", self.name))
    }
    /// stdout/stderr of `rabbitmq-server` (early boot errors land here).
    pub fn console_file(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// Text in /proc/<pid>/environ of this node's beam only.
    pub fn marker(&self) -> String {
        format!("RABBITMQ_MNESIA_BASE={}", self.mnesia_base().display())
    }
    fn short_name(&self) -> &str {
        self.name.split('@').next().unwrap_or(&self.name)
    }
    fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| p.is_running())
    }
    /// The last lines of the node's log (or of its console output if the log is empty).
    pub fn log_tail(&self) -> String {
        let tail = log_tail(&self.log_file(), LOG_LINES);
        if tail.trim().is_empty() {
            log_tail(&self.console_file(), LOG_LINES)
        } else {
            tail
        }
    }
}

/// Members of the cluster and the queues on it.
#[derive(Debug, Clone, Serialize)]
pub struct RabbitStatus {
    /// (node name, running member) for every configured node.
    pub nodes: Vec<(String, bool)>,
    /// Queues of vhost "/" with their placement.
    pub queues: Vec<(String, QueuePlacement)>,
}

/// Contents of `<dir>/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    kind: String,
    config: RabbitClusterConfig,
    nodes: Vec<RabbitNode>,
    epmd: Option<OwnedProcess>,
}

/// A running local cluster (or one attached to from its state file).
#[derive(Debug, Clone)]
pub struct LocalRabbitCluster {
    cfg: RabbitClusterConfig,
    nodes: Vec<RabbitNode>,
    epmd: Option<OwnedProcess>,
}

impl LocalRabbitCluster {
    /// Check, prepare and start the cluster; return once every node's management API reports all
    /// nodes running. Starts nothing if a check fails; stops what it started if booting fails.
    pub async fn up(
        cfg: RabbitClusterConfig,
        progress: Progress<'_>,
    ) -> Result<Self, ClusterError> {
        Self::up_with_timeout(cfg, progress, BOOT_TIMEOUT).await
    }

    /// `up` with another boot timeout.
    pub async fn up_with_timeout(
        cfg: RabbitClusterConfig,
        progress: Progress<'_>,
        timeout: Duration,
    ) -> Result<Self, ClusterError> {
        let started = Instant::now();
        let mut cfg = cfg;
        // --- checks: nothing is started or removed before they all pass ---
        for bin in ["rabbitmq-server", "rabbitmqctl"] {
            let path = cfg.bin_dir.join(bin);
            if !path.is_file() {
                return Err(ClusterError::MissingBinary {
                    binary: path.display().to_string(),
                    fix: INSTALL_FIX.to_string(),
                });
            }
        }
        let epmd_bin = find_epmd()?;
        if find_binary("erl").is_none() {
            return Err(ClusterError::MissingBinary {
                binary: "erl".to_string(),
                fix: INSTALL_FIX.to_string(),
            });
        }
        if cfg.nodes == 0 {
            return Err(ClusterError::State {
                dir: cfg.dir.clone(),
                message: "a cluster needs at least one node".to_string(),
            });
        }
        std::fs::create_dir_all(&cfg.dir).map_err(|e| io_err(&cfg.dir, e))?;
        cfg.dir = std::fs::canonicalize(&cfg.dir).map_err(|e| io_err(&cfg.dir, e))?;
        let state_path = cfg.dir.join(STATE_FILE);
        if state_path.exists() {
            if let Ok(previous) = read_state(&cfg.dir) {
                let live: Vec<String> = previous
                    .processes()
                    .iter()
                    .filter(|p| p.is_running())
                    .map(|p| p.pid.to_string())
                    .collect();
                if !live.is_empty() {
                    return Err(ClusterError::State {
                        dir: cfg.dir.clone(),
                        message: format!("a cluster started in this folder is still running (pids {}); {DOWN_FIX}", live.join(", ")),
                    });
                }
            }
        }
        let plan = cfg.port_plan()?;
        for p in &plan {
            if port_in_use(p.port) {
                return Err(ClusterError::PortInUse {
                    port: p.port,
                    what: p.what.clone(),
                    fix: format!("stop what uses it or change clusters.rabbitmq.{}", p.field),
                });
            }
        }

        // --- prepare the folder: remove data of a previous cluster, write config files ---
        let nodes = cfg.layout()?;
        remove_if_exists(&state_path)?;
        remove_if_exists(&cfg.dir.join("epmd.log"))?;
        remove_if_exists(&cfg.dir.join("home"))?;
        for n in &nodes {
            remove_if_exists(&n.dir)?;
        }
        write_cookie(&cfg.dir.join("home"))?;
        for n in &nodes {
            write_node_files(&cfg, n)?;
        }

        // --- epmd, then the nodes; the state file follows every new pid ---
        let mut cluster = LocalRabbitCluster {
            cfg,
            nodes,
            epmd: None,
        };
        if let Err(e) = cluster.start_epmd(&epmd_bin).await {
            cluster.down().await.ok();
            return Err(e);
        }
        progress(&format!(
            "epmd: listening on 127.0.0.1:{} (pid {})",
            cluster.cfg.epmd_port,
            cluster.epmd.as_ref().map_or(0, |p| p.pid)
        ));
        for i in 0..cluster.nodes.len() {
            // Record the pid in the state file before the next node starts.
            if let Err(e) = cluster.spawn_node(i).and_then(|_| cluster.write_state()) {
                cluster.down().await.ok();
                return Err(e);
            }
            let n = &cluster.nodes[i];
            progress(&format!(
                "{}: booting (pid {})",
                n.name,
                n.process.as_ref().map_or(0, |p| p.pid)
            ));
        }
        let deadline = Instant::now() + timeout;
        let booted = cluster.wait_booted(deadline, progress).await;
        let formed = match booted {
            Ok(()) => cluster.wait_members(None, deadline, started).await,
            Err(e) => Err(e),
        };
        if let Err(e) = formed {
            progress("boot failed; stopping what was started");
            cluster.down().await.ok();
            return Err(e);
        }
        progress(&format!(
            "cluster formed: {} running nodes after {:.1}s",
            cluster.nodes.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(cluster)
    }

    /// The cluster described by `<dir>/cluster.json` (written by `up`).
    pub fn attach(dir: &Path) -> Result<Self, ClusterError> {
        let st = read_state(dir)?;
        Ok(LocalRabbitCluster {
            cfg: st.config,
            nodes: st.nodes,
            epmd: st.epmd,
        })
    }

    pub fn config(&self) -> &RabbitClusterConfig {
        &self.cfg
    }

    pub fn nodes(&self) -> &[RabbitNode] {
        &self.nodes
    }

    /// AMQP URI and management address of every node, in node order.
    pub fn endpoints(&self) -> Vec<RabbitEndpoint> {
        self.nodes
            .iter()
            .map(|n| RabbitEndpoint {
                node: n.name.clone(),
                amqp_uri: format!("amqp://guest:guest@127.0.0.1:{}/%2f", n.amqp_port),
                http: format!("127.0.0.1:{}", n.http_port),
            })
            .collect()
    }

    /// Every beam and the epmd this cluster started (as recorded; some may have exited).
    pub fn processes(&self) -> Vec<OwnedProcess> {
        let mut out: Vec<OwnedProcess> = self
            .nodes
            .iter()
            .filter_map(|n| n.process.clone())
            .collect();
        out.extend(self.epmd.clone());
        out
    }

    /// Running members and queue placement, from the management API of the first live node that
    /// answers.
    pub async fn status(&self) -> Result<RabbitStatus, ClusterError> {
        let mut errors = Vec::new();
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            let client = MgmtClient::new(&format!("127.0.0.1:{}", n.http_port));
            let running = match client.running_nodes().await {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let queues = match client.queues("/").await {
                Ok(q) => q,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            let nodes = self
                .nodes
                .iter()
                .map(|m| (m.name.clone(), running.contains(&m.name)))
                .collect();
            return Ok(RabbitStatus { nodes, queues });
        }
        if errors.is_empty() {
            errors.push("no node of the cluster is running".to_string());
        }
        Err(ClusterError::Command {
            command: "GET /api/nodes, /api/queues/%2F".to_string(),
            message: errors.join("; "),
        })
    }

    /// A table of the nodes, then one line per queue: name, type, leader, members.
    pub fn format_status(s: &RabbitStatus) -> String {
        let mut out = String::new();
        let w = s
            .nodes
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!("{:<w$}  STATE\n", "NODE"));
        for (name, running) in &s.nodes {
            out.push_str(&format!(
                "{:<w$}  {}\n",
                name,
                if *running { "running" } else { "not running" }
            ));
        }
        out.push('\n');
        if s.queues.is_empty() {
            out.push_str("(no queues in vhost /)\n");
            return out;
        }
        let qw = s
            .queues
            .iter()
            .map(|(q, _)| q.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let tw = s
            .queues
            .iter()
            .map(|(_, p)| p.queue_type.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let lw = s
            .queues
            .iter()
            .map(|(_, p)| p.leader.len())
            .max()
            .unwrap_or(6)
            .max(6);
        out.push_str(&format!(
            "{:<qw$}  {:<tw$}  {:<lw$}  MEMBERS\n",
            "QUEUE", "TYPE", "LEADER"
        ));
        for (name, p) in &s.queues {
            out.push_str(&format!(
                "{:<qw$}  {:<tw$}  {:<lw$}  {}\n",
                name,
                p.queue_type,
                p.leader,
                p.members.join(",")
            ));
        }
        out
    }

    /// Wait until every live node's management API reports all configured nodes running.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), ClusterError> {
        let started = Instant::now();
        self.wait_members(None, started + timeout, started).await
    }

    /// SIGKILL node `index`'s beam and wait until it is gone.
    pub async fn kill_node(&mut self, index: usize) -> Result<(), ClusterError> {
        let node = self.node(index)?;
        let name = node.name.clone();
        let proc = match &node.process {
            Some(p) if p.is_running() => p.clone(),
            _ => {
                return Err(ClusterError::Node {
                    node: name,
                    message: "is not running; nothing to kill".to_string(),
                    log_tail: String::new(),
                })
            }
        };
        let p = proc.clone();
        tokio::task::spawn_blocking(move || p.kill_blocking(KILL_WAIT))
            .await
            .ok();
        if proc.is_running() {
            return Err(ClusterError::Timeout {
                what: format!("{name} (pid {}) to exit after SIGKILL", proc.pid),
                waited_s: KILL_WAIT.as_secs_f64(),
                detail: String::new(),
            });
        }
        self.nodes[index].process = None;
        self.write_state()
    }

    /// Start node `index` again (after `kill_node`) and wait until it is a running member again.
    pub async fn restart_node(&mut self, index: usize) -> Result<(), ClusterError> {
        let started = Instant::now();
        let node = self.node(index)?.clone();
        if node.is_running() {
            return Err(ClusterError::Node {
                node: node.name.clone(),
                message: format!(
                    "is still running (pid {}); kill_node it first",
                    node.process.as_ref().map_or(0, |p| p.pid)
                ),
                log_tail: String::new(),
            });
        }
        match &self.epmd {
            Some(e) if e.is_running() => {}
            _ => {
                return Err(ClusterError::State {
                    dir: self.cfg.dir.clone(),
                    message: format!("the cluster's epmd (port {}) is gone; run `brokerbench cluster down rabbitmq` and start the cluster again", self.cfg.epmd_port),
                })
            }
        }
        let ports = [
            (node.amqp_port, "AMQP", "amqp_base_port"),
            (node.http_port, "management HTTP", "http_base_port"),
            (node.stream_port, "stream protocol", "stream_base_port"),
            (node.prometheus_port, "prometheus", "prometheus_base_port"),
            (node.dist_port, "Erlang distribution", "dist_base_port"),
        ];
        for (port, what, field) in ports {
            if port_in_use(port) {
                return Err(ClusterError::PortInUse {
                    port,
                    what: format!("{what} of {}", node.name),
                    fix: format!("stop what uses it or change clusters.rabbitmq.{field}"),
                });
            }
        }
        remove_if_exists(&node.pid_file())?;
        self.spawn_node(index)?;
        self.write_state()?;
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let quiet = |_: &str| {};
        self.wait_node_booted(index, deadline, &quiet).await?;
        self.adopt_pid_file(index)?;
        self.wait_members(Some(index), deadline, started).await
    }

    /// Stop every beam (SIGTERM, SIGKILL after a grace period), then the cluster's epmd; remove the
    /// state file once all are gone.
    pub async fn down(&self) -> Result<(), ClusterError> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.stop_all_blocking()).await {
            Ok(r) => r,
            Err(e) => Err(ClusterError::State {
                dir: self.cfg.dir.clone(),
                message: format!("stopping the cluster failed: {e}"),
            }),
        }
    }

    /// Blocking `down` (for Drop guards and signal handlers); reports a failure on stderr.
    pub fn down_blocking(&self) {
        if let Err(e) = self.stop_all_blocking() {
            eprintln!(
                "brokerbench: stopping the RabbitMQ cluster in {}: {e}",
                self.cfg.dir.display()
            );
        }
    }

    // ------------------------------------------------------------------------------------------

    fn node(&self, index: usize) -> Result<&RabbitNode, ClusterError> {
        self.nodes.get(index).ok_or_else(|| ClusterError::State {
            dir: self.cfg.dir.clone(),
            message: format!(
                "there is no node {index} (the cluster has {} nodes, numbered from 0)",
                self.nodes.len()
            ),
        })
    }

    fn stop_all_blocking(&self) -> Result<(), ClusterError> {
        let beams: Vec<OwnedProcess> = self
            .nodes
            .iter()
            .filter_map(|n| n.process.clone())
            .collect();
        stop_group_blocking(&beams, STOP_GRACE);
        if let Some(e) = &self.epmd {
            e.stop_blocking(Duration::from_secs(5));
        }
        let left: Vec<String> = self
            .processes()
            .iter()
            .filter(|p| p.is_running())
            .map(|p| p.pid.to_string())
            .collect();
        if !left.is_empty() {
            return Err(ClusterError::State {
                dir: self.cfg.dir.clone(),
                message: format!(
                    "processes {} are still running after SIGKILL",
                    left.join(", ")
                ),
            });
        }
        remove_if_exists(&self.cfg.dir.join(STATE_FILE))
    }

    fn write_state(&self) -> Result<(), ClusterError> {
        let st = StateFile {
            kind: "rabbitmq".to_string(),
            config: self.cfg.clone(),
            nodes: self.nodes.clone(),
            epmd: self.epmd.clone(),
        };
        let path = self.cfg.dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(&st).map_err(|e| ClusterError::State {
            dir: self.cfg.dir.clone(),
            message: format!("cannot encode {STATE_FILE}: {e}"),
        })?;
        let tmp = self.cfg.dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))
    }

    async fn start_epmd(&mut self, epmd_bin: &Path) -> Result<(), ClusterError> {
        let log_path = self.cfg.dir.join("epmd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| io_err(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| io_err(&log_path, e))?;
        let marker = format!("BROKERBENCH_RABBIT_EPMD={}", self.cfg.dir.display());
        let mut cmd = std::process::Command::new(epmd_bin);
        cmd.args([
            "-address",
            "127.0.0.1",
            "-port",
            &self.cfg.epmd_port.to_string(),
        ])
        .env("BROKERBENCH_RABBIT_EPMD", &self.cfg.dir)
        .env_remove("ERL_EPMD_PORT")
        .env_remove("ERL_EPMD_ADDRESS")
        .current_dir(&self.cfg.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
        let proc = spawn_detached(cmd, marker, &epmd_bin.display().to_string())?;
        self.epmd = Some(proc.clone());
        self.write_state()?;
        let port = self.cfg.epmd_port;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if epmd_names(port).await.is_ok() {
                return Ok(());
            }
            if !proc.is_running() {
                return Err(ClusterError::Command {
                    command: format!("{} -address 127.0.0.1 -port {port}", epmd_bin.display()),
                    message: format!(
                        "epmd exited at once: {}",
                        log_tail(&log_path, LOG_LINES).trim()
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!("epmd to listen on 127.0.0.1:{port}"),
                    waited_s: 10.0,
                    detail: log_tail(&log_path, LOG_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Start node `index`'s `rabbitmq-server` in its own session; its pid becomes the beam's (the
    /// scripts `exec` down to beam.smp).
    fn spawn_node(&mut self, index: usize) -> Result<(), ClusterError> {
        let node = self.node(index)?.clone();
        let console_path = node.console_file();
        let console = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console_path)
            .map_err(|e| io_err(&console_path, e))?;
        let console2 = console.try_clone().map_err(|e| io_err(&console_path, e))?;
        let server = self.cfg.bin_dir.join("rabbitmq-server");
        let mut cmd = std::process::Command::new(&server);
        cmd.env_clear()
            .envs(inherited_env())
            .envs(node_env(&self.cfg, &node))
            // Makes the script `exec` the VM instead of running it as a child of a signal-proxy
            // shell, so the spawned pid is the beam's.
            .env("RUNNING_UNDER_SYSTEMD", "true")
            .current_dir(&node.dir)
            .stdin(std::process::Stdio::null())
            .stdout(console)
            .stderr(console2);
        let proc = spawn_detached(cmd, node.marker(), &server.display().to_string())?;
        self.nodes[index].process = Some(proc);
        Ok(())
    }

    /// If the pid file names another live process of this node than the one recorded, record it.
    fn adopt_pid_file(&mut self, index: usize) -> Result<(), ClusterError> {
        let node = self.node(index)?;
        let Some(pid) = std::fs::read_to_string(node.pid_file())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        else {
            return Ok(());
        };
        if node.process.as_ref().is_some_and(|p| p.pid == pid) {
            return Ok(());
        }
        let candidate = OwnedProcess {
            pid,
            marker: node.marker(),
        };
        if candidate.is_running() {
            self.nodes[index].process = Some(candidate);
            self.write_state()?;
        }
        Ok(())
    }

    /// Every node registered with epmd and `await_startup` succeeded.
    async fn wait_booted(
        &mut self,
        deadline: Instant,
        progress: Progress<'_>,
    ) -> Result<(), ClusterError> {
        let waits = (0..self.nodes.len()).map(|i| self.wait_node_booted(i, deadline, progress));
        let results = futures::future::join_all(waits).await;
        for r in results {
            r?;
        }
        for i in 0..self.nodes.len() {
            self.adopt_pid_file(i)?;
        }
        Ok(())
    }

    async fn wait_node_booted(
        &self,
        index: usize,
        deadline: Instant,
        progress: Progress<'_>,
    ) -> Result<(), ClusterError> {
        let start = Instant::now();
        let node = self.node(index)?;
        let died = |n: &RabbitNode| ClusterError::Node {
            node: n.name.clone(),
            message: format!(
                "exited while booting (log: {}, console: {})",
                n.log_file().display(),
                n.console_file().display()
            ),
            log_tail: n.log_tail(),
        };
        // 1. registered with the cluster's epmd (cheap to poll, unlike rabbitmqctl)
        loop {
            if !node.is_running() {
                return Err(died(node));
            }
            if let Ok(names) = epmd_names(self.cfg.epmd_port).await {
                if names.iter().any(|n| n == node.short_name()) {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!(
                        "{} to register with epmd on 127.0.0.1:{}",
                        node.name, self.cfg.epmd_port
                    ),
                    waited_s: start.elapsed().as_secs_f64(),
                    detail: node.log_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        // 2. `rabbitmqctl await_startup` until it succeeds (it fails at once, rc 69, while the
        //    node is not reachable, and waits while it boots)
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let secs = left.as_secs().max(1).to_string();
            let last = match self
                .ctl(
                    node,
                    &["-q", "await_startup", "-t", &secs],
                    left + Duration::from_secs(5),
                )
                .await
            {
                Ok(_) => {
                    progress(&format!(
                        "{}: running ({:.1}s)",
                        node.name,
                        start.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
                Err(e) => e.to_string(),
            };
            if !node.is_running() {
                return Err(died(node));
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!(
                        "{} to boot (rabbitmqctl await_startup: {})",
                        node.name,
                        last.trim()
                    ),
                    waited_s: start.elapsed().as_secs_f64(),
                    detail: node.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Poll the management API of every live node until each reports all configured nodes as
    /// running. With `must_be_live`, that node must be live too (else it is an error at once).
    async fn wait_members(
        &self,
        must_be_live: Option<usize>,
        deadline: Instant,
        started: Instant,
    ) -> Result<(), ClusterError> {
        let wanted: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let mut last_view: Vec<String>;
        loop {
            if let Some(i) = must_be_live {
                let n = self.node(i)?;
                if !n.is_running() {
                    return Err(ClusterError::Node {
                        node: n.name.clone(),
                        message: "exited while rejoining the cluster".to_string(),
                        log_tail: n.log_tail(),
                    });
                }
            }
            let live: Vec<&RabbitNode> = self.nodes.iter().filter(|n| n.is_running()).collect();
            let mut all_ok = !live.is_empty();
            last_view = Vec::new();
            let views = futures::future::join_all(live.iter().map(|n| async move {
                let client = MgmtClient::new(&format!("127.0.0.1:{}", n.http_port));
                (n, client.running_nodes().await)
            }))
            .await;
            let mut missing_somewhere: Option<String> = None;
            for (n, view) in views {
                match view {
                    Ok(running) => {
                        let missing: Vec<&String> =
                            wanted.iter().filter(|w| !running.contains(w)).collect();
                        if !missing.is_empty() {
                            all_ok = false;
                            if missing_somewhere.is_none() {
                                missing_somewhere = missing.first().map(|s| s.to_string());
                            }
                        }
                        last_view.push(format!(
                            "{} sees running: [{}]",
                            n.name,
                            running.join(", ")
                        ));
                    }
                    Err(e) => {
                        all_ok = false;
                        last_view.push(format!("{}: {e}", n.name));
                    }
                }
            }
            if all_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let culprit = missing_somewhere
                    .and_then(|m| self.nodes.iter().find(|n| n.name == m))
                    .or_else(|| self.nodes.iter().find(|n| !n.is_running()))
                    .or(self.nodes.first());
                let mut detail = if last_view.is_empty() {
                    "no node is running".to_string()
                } else {
                    last_view.join("\n")
                };
                if let Some(c) = culprit {
                    detail.push_str(&format!(
                        "\nlast lines of {}:\n{}",
                        c.log_file().display(),
                        c.log_tail()
                    ));
                }
                return Err(ClusterError::Timeout {
                    what: format!(
                        "all {} nodes to be running members of the cluster",
                        wanted.len()
                    ),
                    waited_s: started.elapsed().as_secs_f64(),
                    detail,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Run `rabbitmqctl -n <node> <args>` with the cluster's environment.
    async fn ctl(
        &self,
        node: &RabbitNode,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, ClusterError> {
        let ctl = self.cfg.bin_dir.join("rabbitmqctl");
        let command = format!("rabbitmqctl -n {} {}", node.name, args.join(" "));
        let (cli_min, cli_max) = self.cfg.cli_dist_ports();
        let mut cmd = tokio::process::Command::new(&ctl);
        cmd.env_clear()
            .envs(inherited_env())
            .envs(node_env(&self.cfg, node))
            .env("RABBITMQ_CTL_DIST_PORT_MIN", cli_min.to_string())
            .env("RABBITMQ_CTL_DIST_PORT_MAX", cli_max.to_string())
            .env("LC_ALL", "C.UTF-8")
            .arg("-n")
            .arg(&node.name)
            .args(args)
            .current_dir(&node.dir)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(timeout, cmd.output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(ClusterError::Command {
                    command,
                    message: format!("cannot run {}: {e}", ctl.display()),
                })
            }
            Err(_) => {
                return Err(ClusterError::Command {
                    command,
                    message: format!("no answer within {}s", timeout.as_secs()),
                })
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let text = format!("{} {}", stderr.trim(), stdout.trim());
            let text: String = text.trim().chars().take(500).collect();
            Err(ClusterError::Command {
                command,
                message: format!("exit code {}: {}", out.status.code().unwrap_or(-1), text),
            })
        }
    }
}

impl StateFile {
    fn processes(&self) -> Vec<OwnedProcess> {
        let mut out: Vec<OwnedProcess> = self
            .nodes
            .iter()
            .filter_map(|n| n.process.clone())
            .collect();
        out.extend(self.epmd.clone());
        out
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ClusterError {
    ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_state(dir: &Path) -> Result<StateFile, ClusterError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ClusterError::State {
            dir: dir.to_path_buf(),
            message: format!("no {STATE_FILE}: no local RabbitMQ cluster was started in this folder (or it was stopped)"),
        },
        _ => io_err(&path, e),
    })?;
    let st: StateFile = serde_json::from_str(&text).map_err(|e| ClusterError::State {
        dir: dir.to_path_buf(),
        message: format!("{STATE_FILE} is unreadable: {e}"),
    })?;
    if st.kind != "rabbitmq" {
        return Err(ClusterError::State {
            dir: dir.to_path_buf(),
            message: format!("{STATE_FILE} describes a {} cluster, not rabbitmq", st.kind),
        });
    }
    Ok(st)
}

fn remove_if_exists(path: &Path) -> Result<(), ClusterError> {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(|e| io_err(path, e))
}

/// `epmd` on PATH, else next to Erlang's `erl`.
fn find_epmd() -> Result<PathBuf, ClusterError> {
    find_binary("epmd")
        .or_else(|| find_binary("/usr/lib/erlang/bin/epmd"))
        .ok_or_else(|| ClusterError::MissingBinary {
            binary: "epmd".to_string(),
            fix: INSTALL_FIX.to_string(),
        })
}

/// A cookie unique enough to keep two local clusters apart.
fn make_cookie(home: &Path) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for round in 0..4u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(home.as_os_str().as_encoded_bytes());
        h.write_u64(round);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.push_str(&format!("{:016X}", h.finish()));
    }
    out
}

fn write_cookie(home: &Path) -> Result<(), ClusterError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(home).map_err(|e| io_err(home, e))?;
    let path = home.join(".erlang.cookie");
    std::fs::write(&path, make_cookie(home)).map_err(|e| io_err(&path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
        .map_err(|e| io_err(&path, e))
}

fn write_node_files(cfg: &RabbitClusterConfig, n: &RabbitNode) -> Result<(), ClusterError> {
    for d in [n.dir.clone(), n.mnesia_base(), n.log_base()] {
        std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
    }
    let files = [
        ("rabbitmq.conf", render_rabbitmq_conf(cfg, n)),
        ("advanced.config", "[].\n".to_string()),
        ("enabled_plugins", ENABLED_PLUGINS.to_string()),
        ("rabbitmq-env.conf", String::new()),
    ];
    for (name, text) in files {
        let path = n.dir.join(name);
        std::fs::write(&path, text).map_err(|e| io_err(&path, e))?;
    }
    Ok(())
}

/// `rabbitmq.conf` of node `n`: loopback listeners, classic_config discovery of all nodes,
/// pause_minority, net_ticktime 10.
pub fn render_rabbitmq_conf(cfg: &RabbitClusterConfig, n: &RabbitNode) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "listeners.tcp.default = 127.0.0.1:{}\n",
        n.amqp_port
    ));
    s.push_str("management.tcp.ip = 127.0.0.1\n");
    s.push_str(&format!("management.tcp.port = {}\n", n.http_port));
    s.push_str(&format!(
        "stream.listeners.tcp.default = 127.0.0.1:{}\n",
        n.stream_port
    ));
    s.push_str("stream.advertised_host = 127.0.0.1\n");
    s.push_str(&format!("stream.advertised_port = {}\n", n.stream_port));
    s.push_str("prometheus.tcp.ip = 127.0.0.1\n");
    s.push_str(&format!("prometheus.tcp.port = {}\n", n.prometheus_port));
    s.push_str("cluster_formation.peer_discovery_backend = classic_config\n");
    for i in 0..cfg.nodes {
        s.push_str(&format!(
            "cluster_formation.classic_config.nodes.{} = {}\n",
            i + 1,
            RabbitClusterConfig::node_name(i)
        ));
    }
    s.push_str("cluster_partition_handling = pause_minority\n");
    s.push_str("net_ticktime = 10\n");
    s
}

/// Environment of node `n` (also given to `rabbitmqctl` calls for it).
pub fn node_env(cfg: &RabbitClusterConfig, n: &RabbitNode) -> Vec<(String, String)> {
    let p = |path: PathBuf| path.display().to_string();
    vec![
        ("HOME".into(), p(cfg.dir.join("home"))),
        ("ERL_EPMD_PORT".into(), cfg.epmd_port.to_string()),
        ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
        ("RABBITMQ_NODENAME".into(), n.name.clone()),
        ("RABBITMQ_NODE_IP_ADDRESS".into(), "127.0.0.1".into()),
        ("RABBITMQ_NODE_PORT".into(), n.amqp_port.to_string()),
        ("RABBITMQ_DIST_PORT".into(), n.dist_port.to_string()),
        ("RABBITMQ_BASE".into(), p(n.dir.clone())),
        ("RABBITMQ_MNESIA_BASE".into(), p(n.mnesia_base())),
        ("RABBITMQ_LOG_BASE".into(), p(n.log_base())),
        ("RABBITMQ_PID_FILE".into(), p(n.pid_file())),
        (
            "RABBITMQ_CONFIG_FILE".into(),
            p(n.dir.join("rabbitmq.conf")),
        ),
        (
            "RABBITMQ_ADVANCED_CONFIG_FILE".into(),
            p(n.dir.join("advanced.config")),
        ),
        (
            "RABBITMQ_CONF_ENV_FILE".into(),
            p(n.dir.join("rabbitmq-env.conf")),
        ),
        (
            "RABBITMQ_ENABLED_PLUGINS_FILE".into(),
            p(n.dir.join("enabled_plugins")),
        ),
        // Distribution on loopback only; never start an epmd (the cluster's own must be running).
        (
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
            "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false".into(),
        ),
    ]
}

/// The caller's environment without anything that would steer RabbitMQ or Erlang elsewhere.
fn inherited_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            !(k.starts_with("RABBITMQ_")
                || k.starts_with("ERL_")
                || k == "HOME"
                || k == "NOTIFY_SOCKET"
                || k == "RUNNING_UNDER_SYSTEMD")
        })
        .collect()
}

/// Spawn `cmd` in a new session (so it outlives the caller and its terminal's signals), reap it
/// in a background thread, and return it as an OwnedProcess.
fn spawn_detached(
    mut cmd: std::process::Command,
    marker: String,
    what: &str,
) -> Result<OwnedProcess, ClusterError> {
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
    let mut child = cmd.spawn().map_err(|e| ClusterError::Command {
        command: what.to_string(),
        message: format!("cannot start: {e}"),
    })?;
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(OwnedProcess { pid, marker })
}

/// SIGTERM all, wait up to `grace` for all, SIGKILL the rest.
fn stop_group_blocking(procs: &[OwnedProcess], grace: Duration) {
    let live: Vec<&OwnedProcess> = procs.iter().filter(|p| p.is_running()).collect();
    for p in &live {
        p.signal(libc::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < grace && live.iter().any(|p| p.is_running()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in live.iter().filter(|p| p.is_running()) {
        p.kill_blocking(KILL_WAIT);
    }
    // Helper programs a node (or its start script) left behind.
    for p in procs {
        p.reap_group(KILL_WAIT);
    }
}

/// Names registered with the epmd on 127.0.0.1:`port` (NAMES_REQ).
pub async fn epmd_names(port: u16) -> std::io::Result<Vec<String>> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(&[0, 1, b'n']).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<Vec<u8>, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("epmd on port {port} did not answer"),
            )
        })??;
    parse_epmd_names(&buf).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("epmd on port {port}: short answer"),
        )
    })
}

/// Parse an epmd NAMES_RESP: a 4-byte port, then lines `name <name> at port <port>`.
fn parse_epmd_names(buf: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(buf.get(4..)?);
    Some(
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("name"))
                    .then(|| w.next().map(str::to_string))
                    .flatten()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RabbitClusterConfig {
        RabbitClusterConfig {
            dir: PathBuf::from("/tmp/bb"),
            nodes: 3,
            amqp_base_port: 5700,
            http_base_port: 15700,
            stream_base_port: 5710,
            prometheus_base_port: 15710,
            dist_base_port: 25700,
            epmd_port: 4400,
            bin_dir: PathBuf::from(DEFAULT_BIN_DIR),
        }
    }

    #[test]
    fn from_section_uses_the_section_ports() {
        let s = RabbitClusterSection::default();
        let c = RabbitClusterConfig::from_section(PathBuf::from("/x"), &s);
        assert_eq!(c.nodes, 3);
        assert_eq!(c.amqp_base_port, s.amqp_base_port);
        assert_eq!(c.epmd_port, s.epmd_port);
        assert_eq!(c.bin_dir, PathBuf::from("/usr/lib/rabbitmq/bin"));
    }

    #[test]
    fn port_layout_is_base_plus_index() {
        let nodes = cfg().layout().expect("layout");
        assert_eq!(nodes.len(), 3);
        let n = &nodes[2];
        assert_eq!(n.index, 2);
        assert_eq!(n.name, "rabbit3@localhost");
        assert_eq!(
            (
                n.amqp_port,
                n.http_port,
                n.stream_port,
                n.prometheus_port,
                n.dist_port
            ),
            (5702, 15702, 5712, 15712, 25702)
        );
        assert_eq!(n.dir, PathBuf::from("/tmp/bb/rabbit3"));
        assert_eq!(n.marker(), "RABBITMQ_MNESIA_BASE=/tmp/bb/rabbit3/mnesia");
        let plan = cfg().port_plan().expect("plan");
        assert_eq!(plan.len(), 16);
        assert!(plan
            .iter()
            .any(|p| p.port == 4400 && p.field == "epmd_port"));
        assert_eq!(cfg().cli_dist_ports(), (25703, 25709));
    }

    #[test]
    fn overlapping_or_overflowing_ports_are_refused() {
        let mut c = cfg();
        c.stream_base_port = 5701;
        let e = c.port_plan().expect_err("overlap");
        assert!(e.to_string().contains("port 5701"), "{e}");
        let mut c = cfg();
        c.dist_base_port = 65534;
        assert!(c.layout().is_err());
    }

    #[test]
    fn renders_the_recipe_config() {
        let c = cfg();
        let nodes = c.layout().expect("layout");
        let conf = render_rabbitmq_conf(&c, &nodes[1]);
        for line in [
            "listeners.tcp.default = 127.0.0.1:5701",
            "management.tcp.ip = 127.0.0.1",
            "management.tcp.port = 15701",
            "stream.listeners.tcp.default = 127.0.0.1:5711",
            "stream.advertised_host = 127.0.0.1",
            "stream.advertised_port = 5711",
            "prometheus.tcp.port = 15711",
            "cluster_formation.peer_discovery_backend = classic_config",
            "cluster_formation.classic_config.nodes.1 = rabbit1@localhost",
            "cluster_formation.classic_config.nodes.3 = rabbit3@localhost",
            "cluster_partition_handling = pause_minority",
            "net_ticktime = 10",
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }
        let env: HashMap<String, String> = node_env(&c, &nodes[1]).into_iter().collect();
        assert_eq!(env["HOME"], "/tmp/bb/home");
        assert_eq!(env["ERL_EPMD_PORT"], "4400");
        assert_eq!(env["RABBITMQ_NODENAME"], "rabbit2@localhost");
        assert_eq!(env["RABBITMQ_DIST_PORT"], "25701");
        assert_eq!(env["RABBITMQ_PID_FILE"], "/tmp/bb/rabbit2/rabbit.pid");
        assert!(env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].contains("-start_epmd false"));
    }

    #[test]
    fn parses_epmd_names() {
        let mut buf = vec![0, 0, 0x11, 0x30];
        buf.extend_from_slice(
            b"name rabbit1 at port 25700\nname rabbitmqcli-1-rabbit1 at port 25703\n",
        );
        assert_eq!(
            parse_epmd_names(&buf),
            Some(vec![
                "rabbit1".to_string(),
                "rabbitmqcli-1-rabbit1".to_string()
            ])
        );
        assert_eq!(parse_epmd_names(&[0, 0, 0x11, 0x30]), Some(vec![]));
        assert_eq!(parse_epmd_names(&[0]), None);
    }

    #[test]
    fn formats_status() {
        let s = RabbitStatus {
            nodes: vec![
                ("rabbit1@localhost".into(), true),
                ("rabbit2@localhost".into(), false),
            ],
            queues: vec![(
                "bb-q".into(),
                QueuePlacement {
                    leader: "rabbit1@localhost".into(),
                    members: vec!["rabbit1@localhost".into(), "rabbit2@localhost".into()],
                    queue_type: "quorum".into(),
                },
            )],
        };
        let t = LocalRabbitCluster::format_status(&s);
        assert!(t.contains("rabbit2@localhost  not running"), "{t}");
        assert!(
            t.contains("bb-q   quorum  rabbit1@localhost  rabbit1@localhost,rabbit2@localhost"),
            "{t}"
        );
        let empty = RabbitStatus {
            nodes: vec![],
            queues: vec![],
        };
        assert!(LocalRabbitCluster::format_status(&empty).contains("no queues"));
    }

    #[test]
    fn endpoints_and_state_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg();
        c.dir = dir.path().to_path_buf();
        let nodes = c.layout().expect("layout");
        let cluster = LocalRabbitCluster {
            cfg: c.clone(),
            nodes,
            epmd: Some(OwnedProcess {
                pid: 1,
                marker: "m".into(),
            }),
        };
        let eps = cluster.endpoints();
        assert_eq!(eps[0].amqp_uri, "amqp://guest:guest@127.0.0.1:5700/%2f");
        assert_eq!(eps[2].http, "127.0.0.1:15702");
        cluster.write_state().expect("write state");
        let back = LocalRabbitCluster::attach(dir.path()).expect("attach");
        assert_eq!(back.config(), &c);
        assert_eq!(back.nodes().len(), 3);
        assert_eq!(back.processes().len(), 1);
        assert!(LocalRabbitCluster::attach(&dir.path().join("nope")).is_err());
    }
}
