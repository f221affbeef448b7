//! A local Redis Cluster: `masters` masters with `replicas_per_master` replicas each, every node
//! a `redis-server` process on 127.0.0.1 with its own folder `<dir>/node-<port>/`.
//!
//! The launcher records what it started in `<dir>/cluster.json` (the state file) as soon as each
//! process exists, so another brokerbench process can `attach` to the folder and stop exactly
//! those processes. Each node runs in its own process group and outlives the process that
//! started it. Its marker (what its [`OwnedProcess`] is checked against before any signal) is
//! the absolute path of its redis.conf, which its command line shows from exec on: first as the
//! argument, then in the process title "redis-server 127.0.0.1:PORT [cluster] <conf>" that Redis
//! sets once it listens (Redis reuses the environment's memory for that title, so /proc/PID/environ
//! cannot carry a marker).
//!
//! Every wait polls a condition (PING, `cluster_state:ok`, `master_link_status:up`) and ends in
//! [`ClusterError::Timeout`] carrying the last lines of the log of the node it waited on.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::process::{find_binary, port_in_use, OwnedProcess};
use super::{log_tail, ClusterError, Progress};
use crate::scenario::{AppendFsync, RedisClusterSection};

/// Name of the state file inside the cluster folder.
pub const STATE_FILE: &str = "cluster.json";
/// The state file's `kind`.
const KIND: &str = "redis";

const HOST: &str = "127.0.0.1";
/// The cluster bus of a node listens on its port plus this offset.
const BUS_OFFSET: u32 = 10_000;
/// Graceful stop: SIGTERM (repeated), then SIGKILL after this long.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for a SIGKILLed process to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Limit for one request to one node.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Interval between two checks of a condition.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// Limit for a started process to answer PING.
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit for `redis-cli --cluster create`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit for a new cluster to become healthy after `redis-cli --cluster create`.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_LINES: usize = 20;
const PORT_FIX: &str = "stop what uses it or choose another clusters.redis.base_port";
const BINARY_FIX: &str = "install it: apt-get install -y redis-server redis-tools, or set \
     RedisClusterConfig::redis_server / redis_cli to the binary's path";

/// What `LocalRedisCluster::up` starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisClusterConfig {
    /// The cluster folder: state file and one folder per node.
    pub dir: PathBuf,
    /// Node i listens on base_port + i, its cluster bus on base_port + i + 10000.
    pub base_port: u16,
    pub masters: usize,
    pub replicas_per_master: usize,
    pub node_timeout_ms: u64,
    pub appendonly: bool,
    pub appendfsync: AppendFsync,
    /// RDB snapshot rule as in redis.conf's `save` ("" for none).
    pub save: String,
    /// Binary name (looked up on PATH) or path; default "redis-server".
    pub redis_server: String,
    /// Binary name (looked up on PATH) or path; default "redis-cli".
    pub redis_cli: String,
}

impl RedisClusterConfig {
    /// 3 masters with 1 replica each, settings from the scenario's `clusters.redis` section.
    pub fn from_section(dir: PathBuf, s: &RedisClusterSection) -> Self {
        RedisClusterConfig {
            dir,
            base_port: s.base_port,
            masters: 3,
            replicas_per_master: 1,
            node_timeout_ms: s.node_timeout_ms,
            appendonly: s.appendonly,
            appendfsync: s.appendfsync,
            save: s.save.clone(),
            redis_server: "redis-server".into(),
            redis_cli: "redis-cli".into(),
        }
    }

    /// Number of nodes: masters and their replicas.
    pub fn node_count(&self) -> usize {
        self.masters
            .saturating_mul(self.replicas_per_master.saturating_add(1))
    }

    /// Limit for a restarted node, or a cluster after a change, to settle.
    fn settle_timeout(&self) -> Duration {
        Duration::from_secs(30).max(Duration::from_millis(
            self.node_timeout_ms.saturating_mul(10),
        ))
    }
}

/// One node of the cluster and the process currently running it (None: not running).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisNode {
    pub index: usize,
    pub port: u16,
    /// The node's folder `<dir>/node-<port>/`.
    pub dir: PathBuf,
    pub process: Option<OwnedProcess>,
}

impl RedisNode {
    /// "127.0.0.1:port".
    pub fn address(&self) -> String {
        format!("{HOST}:{}", self.port)
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    fn bus_port(&self) -> u16 {
        // `up` checked that every bus port fits in a u16.
        u16::try_from(u32::from(self.port) + BUS_OFFSET).unwrap_or(u16::MAX)
    }

    /// What identifies the node's process in /proc/PID/cmdline: its absolute config path.
    fn marker(&self) -> String {
        self.conf_path().display().to_string()
    }

    /// The last lines of the node's log, and of its stderr if the process wrote there.
    fn log_tail(&self) -> String {
        let mut tail = String::new();
        for (path, lines) in [(self.log_path(), LOG_LINES), (self.stderr_path(), 10)] {
            let t = log_tail(&path, lines);
            if !t.trim().is_empty() {
                tail.push_str(&format!("[{}]\n{}\n", path.display(), t.trim_end()));
            }
        }
        tail
    }

    fn error(&self, message: impl Into<String>) -> ClusterError {
        ClusterError::Node {
            node: self.address(),
            message: message.into(),
            log_tail: self.log_tail(),
        }
    }

    /// Whether the node is meant to run: Ok(false) if no process is recorded, an error if the
    /// recorded process died although nobody killed it.
    fn expected_running(&self) -> Result<bool, ClusterError> {
        match &self.process {
            None => Ok(false),
            Some(p) if p.is_running() => Ok(true),
            Some(p) => {
                Err(self.error(format!("redis-server (pid {}) is no longer running", p.pid)))
            }
        }
    }
}

/// One row of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisNodeStatus {
    pub id: String,
    /// "127.0.0.1:7001".
    pub address: String,
    /// "master", "replica", "fail" (flagged failed), "handshake", "noaddr" or "unknown".
    pub role: String,
    pub master_id: Option<String>,
    /// Slot ranges served, comma-separated ("0-5460"), or "-".
    pub slots: String,
    /// The raw flags ("myself,master", "slave,fail?", ...).
    pub flags: String,
    /// Whether the cluster bus link to the node is up.
    pub connected: bool,
}

impl RedisNodeStatus {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.split(',').any(|f| f == flag)
    }

    /// Whether the node is a master (also when flagged failed).
    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    /// The slot ranges in `slots`, inclusive.
    pub fn slot_ranges(&self) -> Vec<(u16, u16)> {
        parse_slot_ranges(&self.slots)
    }

    pub fn owns_slot(&self, slot: u16) -> bool {
        self.slot_ranges()
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&slot))
    }

    fn port(&self) -> u16 {
        self.address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0)
    }
}

/// A Redis Cluster running as local processes, started by `up` or found by `attach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalRedisCluster {
    /// "redis", so a state file is not taken for another launcher's.
    kind: String,
    config: RedisClusterConfig,
    nodes: Vec<RedisNode>,
}

/// A condition not met yet: which node, and why.
struct Pending {
    port: u16,
    reason: String,
}

type Probe = Result<Option<Pending>, ClusterError>;

fn pending(port: u16, reason: impl Into<String>) -> Probe {
    Ok(Some(Pending {
        port,
        reason: reason.into(),
    }))
}

impl LocalRedisCluster {
    /// Check binaries, ports and the folder, start every node, create the cluster and wait until
    /// it is healthy. Starts nothing if a check fails; stops what it started if a later step fails.
    pub async fn up(cfg: RedisClusterConfig, progress: Progress<'_>) -> Result<Self, ClusterError> {
        let started = Instant::now();
        let mut cfg = cfg;
        cfg.dir = std::path::absolute(&cfg.dir).map_err(|source| ClusterError::Io {
            path: cfg.dir.clone(),
            source,
        })?;
        let server_bin = resolve_binary(&cfg.redis_server)?;
        let cli_bin = resolve_binary(&cfg.redis_cli)?;
        let nodes = plan_nodes(&cfg)?;
        let mut cluster = LocalRedisCluster {
            kind: KIND.into(),
            config: cfg,
            nodes,
        };
        cluster.check_previous_state()?;
        let (first, last) = (
            cluster.nodes[0].port,
            cluster.nodes[cluster.nodes.len() - 1].port,
        );
        progress(&format!(
            "redis: checking ports {first}-{last} and cluster bus ports {}-{}",
            u32::from(first) + BUS_OFFSET,
            u32::from(last) + BUS_OFFSET
        ));
        for node in &cluster.nodes {
            check_ports(node)?;
        }
        cluster.prepare_folders()?;
        cluster.save_state()?;

        match cluster
            .start_and_form(&server_bin, &cli_bin, progress)
            .await
        {
            Ok(()) => {
                progress(&format!(
                    "redis: cluster of {} nodes up in {:.1} s (seeds {})",
                    cluster.nodes.len(),
                    started.elapsed().as_secs_f64(),
                    cluster.seeds().join(",")
                ));
                Ok(cluster)
            }
            Err(e) => {
                progress("redis: start failed; stopping the nodes started so far");
                if let Err(stop_err) = cluster.down().await {
                    progress(&format!("redis: could not stop every node: {stop_err}"));
                }
                Err(e)
            }
        }
    }

    /// The cluster whose state file `up` wrote in `dir` (from this or another process).
    pub fn attach(dir: &Path) -> Result<Self, ClusterError> {
        let path = dir.join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ClusterError::State {
                    dir: dir.to_path_buf(),
                    message: format!(
                        "no {STATE_FILE}: no local Redis cluster was started from this folder, or it was stopped; \
                         run `brokerbench cluster up redis`"
                    ),
                })
            }
            Err(source) => return Err(ClusterError::Io { path, source }),
        };
        let state = |message: String| ClusterError::State {
            dir: dir.to_path_buf(),
            message,
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| state(format!("cannot read {STATE_FILE}: {e}")))?;
        match value.get("kind").and_then(|k| k.as_str()) {
            Some(KIND) => {}
            other => {
                let kind = other.unwrap_or("unknown");
                return Err(state(format!(
                    "{STATE_FILE} describes a {kind} cluster, not a Redis cluster"
                )));
            }
        }
        serde_json::from_value(value).map_err(|e| state(format!("cannot read {STATE_FILE}: {e}")))
    }

    pub fn config(&self) -> &RedisClusterConfig {
        &self.config
    }

    /// "127.0.0.1:port" of every node.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::address).collect()
    }

    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// Every process this cluster started that may still run.
    pub fn processes(&self) -> Vec<OwnedProcess> {
        self.nodes
            .iter()
            .filter_map(|n| n.process.clone())
            .collect()
    }

    /// `CLUSTER NODES` from the first running node that answers, parsed; masters first (by first
    /// slot), then replicas (in their masters' order), then the rest.
    pub async fn status(&self) -> Result<Vec<RedisNodeStatus>, ClusterError> {
        let mut last_error = None;
        for node in self.running_nodes() {
            match call::<String>(node.port, redis::cmd("CLUSTER").arg("NODES")).await {
                Ok(text) => {
                    let mut rows: Vec<RedisNodeStatus> = parse_cluster_nodes(&text)
                        .into_iter()
                        .map(|l| l.status)
                        .collect();
                    sort_rows(&mut rows);
                    return Ok(rows);
                }
                Err(e) => last_error = Some(node.error(format!("CLUSTER NODES failed: {e}"))),
            }
        }
        Err(last_error.unwrap_or_else(|| self.state_error("no node of the cluster is running")))
    }

    /// A table: Role | Node ID | IP:Port | Master Node ID | Slot Range.
    pub fn format_status(rows: &[RedisNodeStatus]) -> String {
        let header =
            ["Role", "Node ID", "IP:Port", "Master Node ID", "Slot Range"].map(String::from);
        let body: Vec<[String; 5]> = rows
            .iter()
            .map(|r| {
                [
                    r.role.clone(),
                    r.id.clone(),
                    r.address.clone(),
                    r.master_id.clone().unwrap_or_else(|| "-".into()),
                    r.slots.clone(),
                ]
            })
            .collect();
        let mut widths = header.clone().map(|h| h.len());
        for row in &body {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String; 5]| {
            let inner: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!(" {c:<w$} "))
                .collect();
            format!("|{}|\n", inner.join("|"))
        };
        let mut out = line(&header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &body {
            out.push_str(&line(row));
        }
        out
    }

    /// "127.0.0.1:port" of the master serving `slot` now: the claim with the highest config
    /// epoch across the views of all running nodes. None while that master is flagged failed
    /// (before its replica is promoted).
    pub async fn master_of_slot(&self, slot: u16) -> Result<Option<String>, ClusterError> {
        let mut views = Vec::new();
        let mut last_error = None;
        for node in self.running_nodes() {
            match call::<String>(node.port, redis::cmd("CLUSTER").arg("NODES")).await {
                Ok(text) => views.push(parse_cluster_nodes(&text)),
                Err(e) => last_error = Some(node.error(format!("CLUSTER NODES failed: {e}"))),
            }
        }
        if views.is_empty() {
            return Err(
                last_error.unwrap_or_else(|| self.state_error("no node of the cluster is running"))
            );
        }
        Ok(pick_slot_owner(&views, slot))
    }

    /// `CONFIG SET key value` on every running node, kept across restarts (`CONFIG REWRITE`);
    /// a node not running now gets the setting in its redis.conf for its next start.
    pub async fn set_config(&self, key: &str, value: &str) -> Result<(), ClusterError> {
        for node in &self.nodes {
            if node.expected_running()? {
                call::<()>(
                    node.port,
                    redis::cmd("CONFIG").arg("SET").arg(key).arg(value),
                )
                .await
                .map_err(|e| node.error(format!("CONFIG SET {key} {value} failed: {e}")))?;
                call::<()>(node.port, redis::cmd("CONFIG").arg("REWRITE"))
                    .await
                    .map_err(|e| node.error(format!("CONFIG REWRITE failed: {e}")))?;
            } else {
                let path = node.conf_path();
                let mut text = fs::read_to_string(&path).map_err(|source| ClusterError::Io {
                    path: path.clone(),
                    source,
                })?;
                text.push_str(&format!("{key} {}\n", quote(value)));
                fs::write(&path, text).map_err(|source| ClusterError::Io { path, source })?;
            }
        }
        Ok(())
    }

    /// Wait until every running node reports `cluster_state:ok` and sees every other running
    /// node connected and in the role (and slots) that node reports for itself, every running
    /// replica has `master_link_status:up`, and (when every node runs) every master serving
    /// slots has `replicas_per_master` linked replicas. A node that died without `kill_node`
    /// fails the wait at once.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<(), ClusterError> {
        self.poll("a healthy Redis cluster", timeout, || self.health_probe())
            .await
    }

    /// SIGKILL the node on `port` and wait until its process is gone.
    pub async fn kill_node(&mut self, port: u16) -> Result<(), ClusterError> {
        let idx = self.index_of(port)?;
        let node = &self.nodes[idx];
        let Some(process) = node.process.clone() else {
            return Err(node.error("is not running (already killed?)"));
        };
        if !process.is_running() {
            let err = node.error(format!(
                "redis-server (pid {}) had already exited",
                process.pid
            ));
            self.nodes[idx].process = None;
            self.save_state()?;
            return Err(err);
        }
        let p = process.clone();
        let _ = tokio::task::spawn_blocking(move || p.kill_blocking(KILL_WAIT)).await;
        if process.is_running() {
            return Err(node.error(format!(
                "pid {} still runs {KILL_WAIT:?} after SIGKILL",
                process.pid
            )));
        }
        self.nodes[idx].process = None;
        self.save_state()
    }

    /// Start the node on `port` again with its config and data, record it, and wait until it
    /// answers PING and reports `cluster_state:ok`. If the wait fails, the new process stays
    /// recorded (and `down` stops it).
    pub async fn restart_node(&mut self, port: u16) -> Result<(), ClusterError> {
        let idx = self.index_of(port)?;
        let node = &self.nodes[idx];
        if let Some(p) = &node.process {
            if p.is_running() {
                return Err(node.error(format!("is still running (pid {}); kill it first", p.pid)));
            }
        }
        let server_bin = resolve_binary(&self.config.redis_server)?;
        check_ports(node)?;
        let process = spawn_node(&server_bin, node)?;
        self.nodes[idx].process = Some(process);
        self.save_state()?;
        let node = &self.nodes[idx];
        self.wait_answering(std::slice::from_ref(node)).await?;
        self.poll(
            "the restarted node to report cluster_state:ok",
            self.config.settle_timeout(),
            || async {
                if !node.expected_running()? {
                    return Err(node.error("is not running"));
                }
                match call::<String>(node.port, redis::cmd("CLUSTER").arg("INFO")).await {
                    Ok(info) if info_field(&info, "cluster_state") == Some("ok") => Ok(None),
                    Ok(info) => pending(
                        node.port,
                        format!(
                            "cluster_state:{}",
                            info_field(&info, "cluster_state").unwrap_or("?")
                        ),
                    ),
                    Err(e) => pending(node.port, format!("CLUSTER INFO: {e}")),
                }
            },
        )
        .await
    }

    /// Stop exactly the processes this cluster started (SIGTERM, repeated; SIGKILL after 10 s),
    /// then remove the state file. The state file stays if a process survives.
    pub async fn down(&self) -> Result<(), ClusterError> {
        let procs = self.tracked_processes();
        let survivors = tokio::task::spawn_blocking(move || stop_processes(procs))
            .await
            .map_err(|e| self.state_error(format!("the task stopping the nodes failed: {e}")))?;
        self.finish_down(survivors)
    }

    /// `down` for synchronous callers (Drop guards, signal handlers); best effort.
    pub fn down_blocking(&self) {
        let survivors = stop_processes(self.tracked_processes());
        let _ = self.finish_down(survivors);
    }

    // ---- internals ----

    fn state_path(&self) -> PathBuf {
        self.config.dir.join(STATE_FILE)
    }

    fn state_error(&self, message: impl Into<String>) -> ClusterError {
        ClusterError::State {
            dir: self.config.dir.clone(),
            message: message.into(),
        }
    }

    fn index_of(&self, port: u16) -> Result<usize, ClusterError> {
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .ok_or_else(|| {
                self.state_error(format!(
                    "no node of this Redis cluster uses port {port} (nodes: {})",
                    self.seeds().join(", ")
                ))
            })
    }

    fn running_nodes(&self) -> impl Iterator<Item = &RedisNode> {
        self.nodes
            .iter()
            .filter(|n| n.process.as_ref().is_some_and(OwnedProcess::is_running))
    }

    fn tracked_processes(&self) -> Vec<(String, OwnedProcess)> {
        self.nodes
            .iter()
            .filter_map(|n| n.process.clone().map(|p| (n.address(), p)))
            .collect()
    }

    fn finish_down(&self, survivors: Vec<(String, OwnedProcess)>) -> Result<(), ClusterError> {
        if !survivors.is_empty() {
            let list: Vec<String> = survivors
                .iter()
                .map(|(a, p)| format!("{a} (pid {})", p.pid))
                .collect();
            return Err(self.state_error(format!(
                "still running after SIGTERM and SIGKILL: {}; {STATE_FILE} is kept",
                list.join(", ")
            )));
        }
        match fs::remove_file(self.state_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ClusterError::Io {
                path: self.state_path(),
                source,
            }),
        }
    }

    /// Write the state file (atomically: temporary file, then rename).
    fn save_state(&self) -> Result<(), ClusterError> {
        let path = self.state_path();
        let tmp = self.config.dir.join(format!(".{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| self.state_error(format!("cannot serialise {STATE_FILE}: {e}")))?;
        fs::write(&tmp, text).map_err(|source| ClusterError::Io {
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, &path).map_err(|source| ClusterError::Io { path, source })
    }

    /// A state file left in the folder whose processes still run: refuse to start over it.
    fn check_previous_state(&self) -> Result<(), ClusterError> {
        if !self.state_path().exists() {
            return Ok(());
        }
        // Never overwrite a state file that may list running processes (another launcher's,
        // or one this version cannot read).
        let previous = LocalRedisCluster::attach(&self.config.dir).map_err(|e| {
            self.state_error(format!(
                "{STATE_FILE} is there but cannot be used ({e}); if no cluster runs from this folder, remove it"
            ))
        })?;
        let running: Vec<String> = previous
            .tracked_processes()
            .into_iter()
            .filter(|(_, p)| p.is_running())
            .map(|(a, p)| format!("{a} (pid {})", p.pid))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        Err(self.state_error(format!(
            "a Redis cluster started from this folder still runs ({}); run `brokerbench cluster down redis` first",
            running.join(", ")
        )))
    }

    /// Fresh node folders (no nodes-*.conf, AOF or RDB left from an earlier cluster) with their
    /// redis.conf.
    fn prepare_folders(&self) -> Result<(), ClusterError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ClusterError::Io { path, source }
        };
        fs::create_dir_all(&self.config.dir).map_err(io(&self.config.dir))?;
        for node in &self.nodes {
            if node.dir.exists() {
                fs::remove_dir_all(&node.dir).map_err(io(&node.dir))?;
            }
            fs::create_dir_all(&node.dir).map_err(io(&node.dir))?;
            fs::write(node.conf_path(), render_conf(&self.config, node))
                .map_err(io(&node.conf_path()))?;
        }
        Ok(())
    }

    async fn start_and_form(
        &mut self,
        server_bin: &Path,
        cli_bin: &Path,
        progress: Progress<'_>,
    ) -> Result<(), ClusterError> {
        let t0 = Instant::now();
        for idx in 0..self.nodes.len() {
            let process = spawn_node(server_bin, &self.nodes[idx])?;
            progress(&format!(
                "redis: started node {} (pid {})",
                self.nodes[idx].address(),
                process.pid
            ));
            self.nodes[idx].process = Some(process);
            self.save_state()?;
        }
        self.wait_answering(&self.nodes).await?;
        progress(&format!(
            "redis: all {} nodes answer PING ({:.1} s)",
            self.nodes.len(),
            t0.elapsed().as_secs_f64()
        ));

        progress(&format!(
            "redis: creating the cluster ({} masters, {} replica(s) each)",
            self.config.masters, self.config.replicas_per_master
        ));
        self.create_cluster(cli_bin).await?;
        progress(&format!(
            "redis: redis-cli --cluster create done ({:.1} s)",
            t0.elapsed().as_secs_f64()
        ));

        self.wait_healthy(HEALTHY_TIMEOUT).await?;
        progress(&format!(
            "redis: cluster_state:ok on every node, replicas linked ({:.1} s)",
            t0.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    async fn create_cluster(&self, cli_bin: &Path) -> Result<(), ClusterError> {
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(self.seeds());
        args.extend([
            "--cluster-replicas".into(),
            self.config.replicas_per_master.to_string(),
            "--cluster-yes".into(),
        ]);
        let command = format!("{} {}", cli_bin.display(), args.join(" "));
        let child = tokio::process::Command::new(cli_bin)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(CREATE_TIMEOUT, child).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                return Err(ClusterError::Command {
                    command,
                    message: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ClusterError::Timeout {
                    what: format!("`{command}`"),
                    waited_s: CREATE_TIMEOUT.as_secs_f64(),
                    detail: self
                        .nodes
                        .first()
                        .map(RedisNode::log_tail)
                        .unwrap_or_default(),
                })
            }
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let log = self.config.dir.join("cluster-create.log");
        fs::write(&log, &text).map_err(|source| ClusterError::Io { path: log, source })?;
        if !output.status.success() {
            let lines: Vec<&str> = text.lines().collect();
            return Err(ClusterError::Command {
                command,
                message: format!(
                    "{}; last output:\n{}",
                    output.status,
                    lines[lines.len().saturating_sub(15)..].join("\n")
                ),
            });
        }
        Ok(())
    }

    /// Wait until every given node answers PING (fails at once if one's process exits).
    async fn wait_answering(&self, nodes: &[RedisNode]) -> Result<(), ClusterError> {
        self.poll("redis-server to answer PING", PING_TIMEOUT, || async move {
            for node in nodes {
                if !node.expected_running()? {
                    return Err(node.error("is not running"));
                }
                match call::<String>(node.port, &redis::cmd("PING")).await {
                    Ok(pong) if pong == "PONG" => {}
                    Ok(other) => return pending(node.port, format!("PING answered {other:?}")),
                    Err(e) => return pending(node.port, format!("PING: {e}")),
                }
            }
            Ok(None)
        })
        .await
    }

    async fn health_probe(&self) -> Probe {
        // Each running node (one round trip each): cluster_state:ok, its own CLUSTER NODES
        // line, and for a replica its link to the master as the replica itself reports it.
        let mut views: Vec<(u16, RedisNodeStatus, Vec<NodeLine>)> = Vec::new();
        let mut all_running = true;
        for node in &self.nodes {
            if !node.expected_running()? {
                all_running = false;
                continue;
            }
            let mut pipe = redis::pipe();
            pipe.cmd("CLUSTER")
                .arg("INFO")
                .cmd("CLUSTER")
                .arg("NODES")
                .cmd("INFO")
                .arg("replication");
            let (info, nodes, repl) =
                match call_pipe::<(String, String, String)>(node.port, &pipe).await {
                    Ok(answers) => answers,
                    Err(e) => {
                        return pending(
                            node.port,
                            format!("CLUSTER INFO, CLUSTER NODES, INFO replication: {e}"),
                        )
                    }
                };
            if info_field(&info, "cluster_state") != Some("ok") {
                let state = info_field(&info, "cluster_state").unwrap_or("?");
                return pending(node.port, format!("cluster_state:{state}"));
            }
            let lines = parse_cluster_nodes(&nodes);
            let Some(me) = lines.iter().find(|l| l.myself).map(|l| l.status.clone()) else {
                return pending(node.port, "CLUSTER NODES has no line for the node itself");
            };
            match me.role.as_str() {
                "master" => {}
                "replica" if info_field(&repl, "master_link_status") == Some("up") => {}
                "replica" => {
                    let status = info_field(&repl, "master_link_status").unwrap_or("?");
                    return pending(
                        node.port,
                        format!("replica with master_link_status:{status}"),
                    );
                }
                other => return pending(node.port, format!("role {other} (flags {})", me.flags)),
            }
            views.push((node.port, me, lines));
        }
        if views.is_empty() {
            return Err(self.state_error("no node of the cluster is running"));
        }
        // Every running node sees every other running node as that node sees itself (gossip
        // has spread), so `status` from any node tells the same story.
        for (port, _, lines) in &views {
            for (other_port, other, _) in views.iter().filter(|(p, ..)| p != port) {
                let Some(seen) = lines
                    .iter()
                    .find(|l| l.status.id == other.id)
                    .map(|l| &l.status)
                else {
                    return pending(*port, format!("does not know {HOST}:{other_port} yet"));
                };
                if (&seen.role, &seen.master_id, &seen.slots)
                    != (&other.role, &other.master_id, &other.slots)
                    || !seen.connected
                {
                    return pending(
                        *port,
                        format!(
                            "sees {HOST}:{other_port} as {} (flags {}, slots {}), which says it is {} (slots {})",
                            seen.role, seen.flags, seen.slots, other.role, other.slots
                        ),
                    );
                }
            }
        }
        // With every node running, every master serving slots has its replicas.
        if all_running {
            for (port, me, _) in views
                .iter()
                .filter(|(_, me, _)| me.role == "master" && me.slots != "-")
            {
                let n = views
                    .iter()
                    .filter(|(_, r, _)| r.master_id.as_ref() == Some(&me.id))
                    .count();
                if n < self.config.replicas_per_master {
                    let want = self.config.replicas_per_master;
                    return pending(*port, format!("master has {n} of {want} replica(s) linked"));
                }
            }
        }
        Ok(None)
    }

    /// Poll `probe` every POLL_EVERY until it reports nothing pending, fails, or `timeout` passes.
    async fn poll<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Probe>,
    {
        let start = Instant::now();
        loop {
            let Some(p) = probe().await? else {
                return Ok(());
            };
            if start.elapsed() >= timeout {
                let node = self.nodes.iter().find(|n| n.port == p.port);
                return Err(ClusterError::Timeout {
                    what: format!("{what} (last seen on {HOST}:{}: {})", p.port, p.reason),
                    waited_s: start.elapsed().as_secs_f64(),
                    detail: node.map(RedisNode::log_tail).unwrap_or_default(),
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

/// The nodes `cfg` describes, after checking the counts and that every port fits.
fn plan_nodes(cfg: &RedisClusterConfig) -> Result<Vec<RedisNode>, ClusterError> {
    let state = |message: String| ClusterError::State {
        dir: cfg.dir.clone(),
        message,
    };
    if cfg.masters < 3 {
        return Err(state(format!(
            "a Redis Cluster needs at least 3 masters, got {}",
            cfg.masters
        )));
    }
    let count = cfg.node_count();
    let last_bus = u64::from(cfg.base_port) + count as u64 - 1 + u64::from(BUS_OFFSET);
    if cfg.base_port == 0 || last_bus > u64::from(u16::MAX) {
        return Err(state(format!(
            "base_port {} does not fit {count} nodes and their cluster bus ports (port + {BUS_OFFSET} must stay <= 65535)",
            cfg.base_port
        )));
    }
    Ok((0..count)
        .map(|index| {
            let port = cfg.base_port + index as u16;
            RedisNode {
                index,
                port,
                dir: cfg.dir.join(format!("node-{port}")),
                process: None,
            }
        })
        .collect())
}

/// Find a binary on PATH, or take a path (absolute, or relative with a `/`).
fn resolve_binary(name: &str) -> Result<PathBuf, ClusterError> {
    let found = if name.contains('/') {
        std::path::absolute(name).ok().filter(|p| p.is_file())
    } else {
        find_binary(name)
    };
    found.ok_or_else(|| ClusterError::MissingBinary {
        binary: name.to_string(),
        fix: BINARY_FIX.to_string(),
    })
}

fn check_ports(node: &RedisNode) -> Result<(), ClusterError> {
    if port_in_use(node.port) {
        return Err(ClusterError::PortInUse {
            port: node.port,
            what: format!("Redis node {} ({})", node.index, node.address()),
            fix: PORT_FIX.into(),
        });
    }
    if port_in_use(node.bus_port()) {
        return Err(ClusterError::PortInUse {
            port: node.bus_port(),
            what: format!(
                "the cluster bus of Redis node {} ({})",
                node.index,
                node.address()
            ),
            fix: PORT_FIX.into(),
        });
    }
    Ok(())
}

/// A redis.conf value in double quotes, as Redis's config parser reads it.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn render_conf(cfg: &RedisClusterConfig, node: &RedisNode) -> String {
    let path = |p: PathBuf| quote(&p.display().to_string());
    [
        format!(
            "# written by brokerbench: Redis Cluster node {} of {}",
            node.index,
            cfg.node_count()
        ),
        "bind 127.0.0.1".into(),
        format!("port {}", node.port),
        "protected-mode no".into(),
        "daemonize no".into(),
        format!("dir {}", path(node.dir.clone())),
        format!("pidfile {}", path(node.dir.join("redis.pid"))),
        format!("logfile {}", path(node.log_path())),
        "cluster-enabled yes".into(),
        format!("cluster-config-file nodes-{}.conf", node.port),
        format!("cluster-node-timeout {}", cfg.node_timeout_ms),
        format!("appendonly {}", if cfg.appendonly { "yes" } else { "no" }),
        format!("appendfsync {}", cfg.appendfsync.as_str()),
        format!("save {}", quote(&cfg.save)),
        "repl-diskless-sync-delay 0".into(),
        "proc-title-template \"{title} {listen-addr} {server-mode} {config-file}\"".into(),
    ]
    .join("\n")
        + "\n"
}

/// Start `redis-server <conf>` in its own process group (so it outlives us and ignores our
/// terminal's Ctrl-C). A thread reaps it when it exits.
fn spawn_node(server_bin: &Path, node: &RedisNode) -> Result<OwnedProcess, ClusterError> {
    use std::os::unix::process::CommandExt;
    let err_path = node.stderr_path();
    let stderr = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&err_path)
        .map_err(|source| ClusterError::Io {
            path: err_path.clone(),
            source,
        })?;
    let stdout = stderr.try_clone().map_err(|source| ClusterError::Io {
        path: err_path.clone(),
        source,
    })?;
    let marker = node.marker();
    let mut child = std::process::Command::new(server_bin)
        .arg(node.conf_path())
        .current_dir(&node.dir)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|e| node.error(format!("cannot start {}: {e}", server_bin.display())))?;
    let process = OwnedProcess {
        pid: child.id(),
        marker,
    };
    // Reap the child when it exits (it would stay a zombie while we run otherwise). If the
    // thread cannot start, the child is simply not reaped before we exit.
    let _ = std::thread::Builder::new()
        .name(format!("reap-redis-{}", node.port))
        .spawn(move || {
            let _ = child.wait();
        });
    Ok(process)
}

/// Stop the processes in parallel (`OwnedProcess::stop_blocking`); returns those still running.
fn stop_processes(procs: Vec<(String, OwnedProcess)>) -> Vec<(String, OwnedProcess)> {
    std::thread::scope(|s| {
        for (_, p) in &procs {
            s.spawn(move || p.stop_blocking(STOP_GRACE));
        }
    });
    procs.into_iter().filter(|(_, p)| p.is_running()).collect()
}

/// One command to one node, with a time limit.
async fn call<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Result<T, String> {
    timed(async {
        let mut con = connect(port).await?;
        cmd.query_async(&mut con).await.map_err(|e| e.to_string())
    })
    .await
}

/// Several commands to one node in one round trip, with a time limit.
async fn call_pipe<T: redis::FromRedisValue>(
    port: u16,
    pipe: &redis::Pipeline,
) -> Result<T, String> {
    timed(async {
        let mut con = connect(port).await?;
        pipe.query_async(&mut con).await.map_err(|e| e.to_string())
    })
    .await
}

async fn connect(port: u16) -> Result<redis::aio::MultiplexedConnection, String> {
    let client =
        redis::Client::open(format!("redis://{HOST}:{port}")).map_err(|e| e.to_string())?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())
}

async fn timed<T>(request: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// The value of `field:value` in INFO or CLUSTER INFO text.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix(field)?.strip_prefix(':'))
}

/// A parsed CLUSTER NODES line with what the public row leaves out.
#[derive(Debug, Clone)]
struct NodeLine {
    status: RedisNodeStatus,
    myself: bool,
    config_epoch: u64,
}

/// Parse CLUSTER NODES output into status rows (malformed lines are skipped); also used by the
/// Redis backend, for clusters brokerbench did not start.
pub fn parse_node_rows(text: &str) -> Vec<RedisNodeStatus> {
    parse_cluster_nodes(text)
        .into_iter()
        .map(|l| l.status)
        .collect()
}

/// Parse CLUSTER NODES output; malformed lines are skipped.
fn parse_cluster_nodes(text: &str) -> Vec<NodeLine> {
    text.lines().filter_map(parse_cluster_nodes_line).collect()
}

fn parse_cluster_nodes_line(line: &str) -> Option<NodeLine> {
    // <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> ...
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    let flags: Vec<&str> = f[2].split(',').collect();
    let has = |x: &str| flags.contains(&x);
    let role = if has("fail") {
        "fail"
    } else if has("handshake") {
        "handshake"
    } else if has("master") {
        "master"
    } else if has("slave") {
        "replica"
    } else if has("noaddr") {
        "noaddr"
    } else {
        "unknown"
    };
    let slots: Vec<&str> = f[8..]
        .iter()
        .copied()
        .filter(|s| !s.starts_with('['))
        .collect();
    let address = f[1].split(['@', ',']).next().unwrap_or(f[1]);
    Some(NodeLine {
        status: RedisNodeStatus {
            id: f[0].to_string(),
            address: address.to_string(),
            role: role.to_string(),
            master_id: (f[3] != "-").then(|| f[3].to_string()),
            slots: if slots.is_empty() {
                "-".into()
            } else {
                slots.join(",")
            },
            flags: f[2].to_string(),
            connected: f[7] == "connected",
        },
        myself: has("myself"),
        config_epoch: f[6].parse().unwrap_or(0),
    })
}

/// "0-5460,5462" -> [(0, 5460), (5462, 5462)]; "-" and "[...]" (migrating) entries give nothing.
fn parse_slot_ranges(slots: &str) -> Vec<(u16, u16)> {
    slots
        .split([',', ' '])
        .filter(|s| !s.is_empty() && !s.starts_with('[') && *s != "-")
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|n| (n, n)),
        })
        .collect()
}

/// Masters first (by first slot), then replicas (in their masters' order), then the rest; ties
/// by port.
fn sort_rows(rows: &mut [RedisNodeStatus]) {
    let first_slot = |r: &RedisNodeStatus| {
        r.slot_ranges()
            .first()
            .map_or(u32::MAX, |(a, _)| u32::from(*a))
    };
    rows.sort_by_key(|r| (r.role != "master", first_slot(r), r.port()));
    let masters: Vec<String> = rows
        .iter()
        .filter(|r| r.role == "master")
        .map(|r| r.id.clone())
        .collect();
    let rank = |r: &RedisNodeStatus| match r.role.as_str() {
        "master" => (0, 0),
        "replica" => (
            1,
            r.master_id
                .as_ref()
                .and_then(|m| masters.iter().position(|x| x == m))
                .unwrap_or(usize::MAX),
        ),
        _ => (2, 0),
    };
    rows.sort_by_key(rank); // stable: masters keep their order, replicas stay by port
}

/// The owner of `slot` across several nodes' views: the master claim with the highest config
/// epoch; None if no view has a claim or if any view flags that master as failed.
fn pick_slot_owner(views: &[Vec<NodeLine>], slot: u16) -> Option<String> {
    let best = views
        .iter()
        .flatten()
        .filter(|l| l.status.is_master() && l.status.owns_slot(slot))
        .max_by_key(|l| l.config_epoch)?;
    let failed = views
        .iter()
        .flatten()
        .any(|l| l.status.id == best.status.id && l.status.has_flag("fail"));
    (!failed).then(|| best.status.address.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output, from /work/shared/proposal.ko.md.
    const NODES: &str = "\
21fdb1f289c80f8b469fa4b949e5bb5f71b6df98 10.0.0.14:7004@17004 slave de5b6c6cbe29e759831487e31c08317cca23008d 0 1736766603439 3 connected
911bf7ebf83c6f841436a27bafcf374d2ef7fc6c 10.0.0.16:7006@17006 slave d147d15ae692fbc54e6abe5cf0f2dd7223578915 0 1736766603957 2 connected
d147d15ae692fbc54e6abe5cf0f2dd7223578915 10.0.0.12:7002@17002 master - 0 1736766603000 2 connected 5461-10922
5ae037b9b6524a36bf5397a940a9ac564146aa55 10.0.0.15:7005@17005 slave 2eb5bd9bf11c91b0a397f90fad4b196b34908064 0 1736766603557 1 connected
de5b6c6cbe29e759831487e31c08317cca23008d 10.0.0.13:7003@17003 master - 0 1736766601894 3 connected 10923-16383
2eb5bd9bf11c91b0a397f90fad4b196b34908064 10.0.0.11:7001@17001 myself,master - 0 1736766602000 1 connected 0-5460
";

    fn rows() -> Vec<RedisNodeStatus> {
        let mut rows: Vec<RedisNodeStatus> = parse_cluster_nodes(NODES)
            .into_iter()
            .map(|l| l.status)
            .collect();
        sort_rows(&mut rows);
        rows
    }

    #[test]
    fn parses_cluster_nodes_output() {
        let lines = parse_cluster_nodes(NODES);
        assert_eq!(lines.len(), 6);
        let me = lines.iter().find(|l| l.myself).map(|l| l.status.clone());
        assert_eq!(
            me,
            Some(RedisNodeStatus {
                id: "2eb5bd9bf11c91b0a397f90fad4b196b34908064".into(),
                address: "10.0.0.11:7001".into(),
                role: "master".into(),
                master_id: None,
                slots: "0-5460".into(),
                flags: "myself,master".into(),
                connected: true,
            })
        );
        let replica = &lines[0].status;
        assert_eq!(replica.role, "replica");
        assert_eq!(replica.address, "10.0.0.14:7004");
        assert_eq!(
            replica.master_id.as_deref(),
            Some("de5b6c6cbe29e759831487e31c08317cca23008d")
        );
        assert_eq!(replica.slots, "-");
        assert_eq!(lines[4].config_epoch, 3);
    }

    #[test]
    fn sorts_masters_by_slot_then_replicas_by_master() {
        let order: Vec<(String, String)> =
            rows().into_iter().map(|r| (r.role, r.address)).collect();
        let expect = [
            ("master", "10.0.0.11:7001"),
            ("master", "10.0.0.12:7002"),
            ("master", "10.0.0.13:7003"),
            ("replica", "10.0.0.15:7005"),
            ("replica", "10.0.0.16:7006"),
            ("replica", "10.0.0.14:7004"),
        ];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(order, expect);
    }

    #[test]
    fn parses_failed_disconnected_and_migrating_nodes() {
        let text = "\
aaa 127.0.0.1:7101@17101 master,fail - 1 2 1 disconnected
bbb 127.0.0.1:7104@17104,host-b myself,master - 0 0 7 connected 0-5460 5462 [5461->-ccc]
ccc 127.0.0.1:7102@17102 slave,fail? bbb 1 2 7 connected
garbage line
ddd :0@0 noaddr,handshake - 0 0 0 disconnected
";
        let lines = parse_cluster_nodes(text);
        assert_eq!(lines.len(), 4);
        let s: Vec<&RedisNodeStatus> = lines.iter().map(|l| &l.status).collect();
        assert_eq!(
            (s[0].role.as_str(), s[0].connected, s[0].slots.as_str()),
            ("fail", false, "-")
        );
        assert!(s[0].is_master());
        assert_eq!(s[1].address, "127.0.0.1:7104");
        assert_eq!(s[1].slots, "0-5460,5462");
        assert_eq!(s[1].slot_ranges(), vec![(0, 5460), (5462, 5462)]);
        assert!(s[1].owns_slot(5462) && !s[1].owns_slot(5461) && s[1].owns_slot(0));
        assert_eq!(
            (s[2].role.as_str(), s[2].master_id.as_deref()),
            ("replica", Some("bbb"))
        );
        assert_eq!(s[3].role, "handshake");
    }

    #[test]
    fn slot_ranges_cover_the_whole_space() {
        let mut covered = 0u32;
        for r in rows().iter().filter(|r| r.role == "master") {
            for (a, b) in r.slot_ranges() {
                covered += u32::from(b) - u32::from(a) + 1;
            }
        }
        assert_eq!(covered, 16384);
        assert!(parse_slot_ranges("-").is_empty());
        assert!(parse_slot_ranges("x-1").is_empty());
    }

    #[test]
    fn formats_a_table() {
        let table = LocalRedisCluster::format_status(&rows());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 8);
        assert!(lines[0].starts_with("| Role ") && lines[0].contains("| Slot Range "));
        assert!(lines[1].starts_with("|---"));
        assert!(
            lines[2].contains("| master ")
                && lines[2].contains("10.0.0.11:7001")
                && lines[2].contains("| 0-5460")
        );
        assert!(
            lines[5].contains("| replica ")
                && lines[5].contains("2eb5bd9bf11c91b0a397f90fad4b196b34908064")
        );
        // All lines have the same width.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
    }

    #[test]
    fn slot_owner_is_the_claim_with_the_highest_epoch() {
        // The old master restarted and still claims 0-5460 at epoch 1; the promoted replica has epoch 7.
        let stale = parse_cluster_nodes(
            "old 127.0.0.1:7101@17101 myself,master - 0 0 1 connected 0-5460\n",
        );
        let fresh = parse_cluster_nodes(
            "new 127.0.0.1:7104@17104 myself,master - 0 0 7 connected 0-5460\nold 127.0.0.1:7101@17101 slave new 0 0 7 connected\n",
        );
        assert_eq!(
            pick_slot_owner(&[stale.clone(), fresh], 0).as_deref(),
            Some("127.0.0.1:7104")
        );
        // A master flagged failed by any view serves nothing; one only suspected (fail?) still does.
        let failed =
            parse_cluster_nodes("m 127.0.0.1:7101@17101 master,fail - 0 0 1 disconnected 0-5460\n");
        assert_eq!(pick_slot_owner(&[stale.clone(), failed], 0), None);
        assert_eq!(pick_slot_owner(&[stale], 9000), None);
        let pfail = parse_cluster_nodes(
            "m 127.0.0.1:7101@17101 master,fail? - 0 0 1 disconnected 0-5460\n",
        );
        assert_eq!(
            pick_slot_owner(&[pfail], 100).as_deref(),
            Some("127.0.0.1:7101")
        );
    }

    #[test]
    fn reads_info_fields() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nmaster_link_down_since_seconds:-1\r\n";
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "master_link"), None);
        assert_eq!(
            info_field("cluster_state:fail\n", "cluster_state"),
            Some("fail")
        );
    }

    fn config(dir: &str) -> RedisClusterConfig {
        let section = RedisClusterSection {
            base_port: 7101,
            save: "60 1000".into(),
            ..Default::default()
        };
        RedisClusterConfig::from_section(PathBuf::from(dir), &section)
    }

    #[test]
    fn config_from_section_and_node_plan() {
        let cfg = config("/tmp/bb \"x\"");
        assert_eq!(
            (cfg.masters, cfg.replicas_per_master, cfg.node_count()),
            (3, 1, 6)
        );
        assert_eq!(
            (cfg.node_timeout_ms, cfg.appendonly, cfg.appendfsync),
            (2000, true, AppendFsync::Everysec)
        );
        assert_eq!(
            (cfg.redis_server.as_str(), cfg.redis_cli.as_str()),
            ("redis-server", "redis-cli")
        );
        let nodes = plan_nodes(&cfg).unwrap_or_default();
        assert_eq!(
            nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
            vec![7101, 7102, 7103, 7104, 7105, 7106]
        );
        assert_eq!(nodes[2].dir, PathBuf::from("/tmp/bb \"x\"/node-7103"));
        assert_eq!(nodes[2].bus_port(), 17103);
        assert_eq!(nodes[2].marker(), "/tmp/bb \"x\"/node-7103/redis.conf");

        let conf = render_conf(&cfg, &nodes[2]);
        for line in [
            "bind 127.0.0.1",
            "port 7103",
            "protected-mode no",
            "dir \"/tmp/bb \\\"x\\\"/node-7103\"",
            "pidfile \"/tmp/bb \\\"x\\\"/node-7103/redis.pid\"",
            "logfile \"/tmp/bb \\\"x\\\"/node-7103/redis.log\"",
            "cluster-enabled yes",
            "cluster-config-file nodes-7103.conf",
            "cluster-node-timeout 2000",
            "appendonly yes",
            "appendfsync everysec",
            "save \"60 1000\"",
            "repl-diskless-sync-delay 0",
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }
    }

    #[test]
    fn rejects_impossible_layouts() {
        let mut cfg = config("/tmp/x");
        cfg.masters = 2;
        assert!(matches!(plan_nodes(&cfg), Err(ClusterError::State { .. })));
        let mut cfg = config("/tmp/x");
        cfg.base_port = 55_531; // last bus port 65536
        assert!(matches!(plan_nodes(&cfg), Err(ClusterError::State { .. })));
        cfg.base_port = 55_530;
        assert!(plan_nodes(&cfg).is_ok());
    }

    #[test]
    fn futures_can_be_spawned() {
        fn is_send<T: Send>(_: &T) {}
        let progress = |_: &str| {};
        let up = LocalRedisCluster::up(config("/tmp/x"), &progress);
        is_send(&up);
        let mut cluster = LocalRedisCluster {
            kind: KIND.into(),
            config: config("/tmp/x"),
            nodes: Vec::new(),
        };
        is_send(&cluster.wait_healthy(Duration::from_secs(1)));
        is_send(&cluster.status());
        is_send(&cluster.master_of_slot(0));
        is_send(&cluster.kill_node(7101));
        is_send(&cluster.restart_node(7101));
        is_send(&cluster.down());
    }

    #[test]
    fn state_file_round_trip() {
        let Ok(tmp) = tempfile::tempdir() else { return };
        let cfg = config(&tmp.path().display().to_string());
        let mut nodes = plan_nodes(&cfg).unwrap_or_default();
        nodes[0].process = Some(OwnedProcess {
            pid: 4242,
            marker: nodes[0].marker(),
        });
        let cluster = LocalRedisCluster {
            kind: KIND.into(),
            config: cfg.clone(),
            nodes,
        };
        assert!(cluster.save_state().is_ok());
        let back = LocalRedisCluster::attach(tmp.path());
        let Ok(back) = back else {
            panic!("attach failed: {back:?}")
        };
        assert_eq!(back.config(), &cfg);
        assert_eq!(back.nodes(), cluster.nodes());
        assert_eq!(back.seeds()[5], "127.0.0.1:7106");
        assert_eq!(back.processes().len(), 1);
        // A dead pid: down has nothing to stop and removes the state file.
        back.down_blocking();
        assert!(!tmp.path().join(STATE_FILE).exists());
        assert!(matches!(
            LocalRedisCluster::attach(tmp.path()),
            Err(ClusterError::State { .. })
        ));
        // Another launcher's state file is not taken for a Redis cluster's.
        let rabbit = r#"{"kind": "rabbitmq", "nodes": []}"#;
        assert!(std::fs::write(tmp.path().join(STATE_FILE), rabbit).is_ok());
        let err = LocalRedisCluster::attach(tmp.path())
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("a rabbitmq cluster")),
            "{err:?}"
        );
    }
}
