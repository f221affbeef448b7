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
//!
//! The code is split by what it owns:
//! - `config`: [`RabbitClusterConfig`], the node layout ([`RabbitNode`]) and the port plan;
//! - `files`: what `up` writes into the cluster folder, and the environment of a node;
//! - `state`: the state file `cluster.json` and `attach`;
//! - `epmd`: the cluster's own epmd (start, NAMES query);
//! - `launch`: starting and stopping node processes, `rabbitmqctl` calls;
//! - `status`: [`RabbitStatus`], `format_status` and the waits for boot and membership;
//! - this file: [`LocalRabbitCluster`] and its lifecycle (`up`, `kill_node`, `restart_node`,
//!   `down`).

mod config;
mod control;
mod epmd;
mod files;
pub mod http;
mod launch;
pub mod mgmt_nodes;
mod state;
mod status;

pub use config::{PortUse, RabbitClusterConfig, RabbitNode, DEFAULT_BIN_DIR};
pub use epmd::epmd_names;
pub use files::{node_env, render_rabbitmq_conf};
pub use state::STATE_FILE;
pub use status::RabbitStatus;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cluster::broker_root::{missing_in_root, open_root, BrokerRootDir};
use crate::cluster::endpoints::RabbitEndpoint;
use crate::cluster::leftovers::free_port;
use crate::cluster::netns::ClusterNet;
use crate::cluster::process::{find_binary, OwnedProcess};
use crate::cluster::{ClusterError, Progress};

use epmd::{epmd_marker, find_epmd};
use files::{remove_if_exists, write_cookie, write_node_files};
use launch::KILL_WAIT;
use state::read_state;

/// How long `up` waits for the cluster to form, and `restart_node` for the node to rejoin.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const INSTALL_FIX: &str = "install it with `apt-get install -y rabbitmq-server`";
const DOWN_FIX: &str = "run `brokerbench cluster down rabbitmq` first";
const LOG_LINES: usize = 20;

/// A running local cluster (or one attached to from its state file).
#[derive(Debug, Clone)]
pub struct LocalRabbitCluster {
    cfg: RabbitClusterConfig,
    nodes: Vec<RabbitNode>,
    epmd: Option<OwnedProcess>,
    /// network = "namespaces": one epmd per node, in its namespace.
    node_epmds: Vec<OwnedProcess>,
    /// network = "namespaces": the bridge, namespaces and links.
    net: Option<ClusterNet>,
}

impl LocalRabbitCluster {
    /// Check, prepare and start the cluster; return once every node's management API reports all
    /// nodes running. Starts nothing if a check fails; stops what it started if booting fails.
    /// A port held by a cluster that a dead run left behind is freed by stopping that cluster
    /// (`leftovers::free_port`).
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
        let root = open_root(cfg.root.as_deref())?;
        for bin in ["rabbitmq-server", "rabbitmqctl"] {
            let path = cfg.bin_dir.join(bin);
            match &root {
                Some(r) if r.find_binary(&path.display().to_string()).is_none() => {
                    return Err(missing_in_root(r, &path.display().to_string()))
                }
                None if !path.is_file() => {
                    return Err(ClusterError::MissingBinary {
                        binary: path.display().to_string(),
                        fix: INSTALL_FIX.to_string(),
                    })
                }
                _ => {}
            }
        }
        let epmd_bin = find_epmd(root.as_ref())?;
        match &root {
            Some(r) if r.find_binary("erl").is_none() => return Err(missing_in_root(r, "erl")),
            None if find_binary("erl").is_none() => {
                return Err(ClusterError::MissingBinary {
                    binary: "erl".to_string(),
                    fix: INSTALL_FIX.to_string(),
                })
            }
            _ => {}
        }
        if let Some(r) = &root {
            progress(&format!(
                "running RabbitMQ, Erlang and epmd from the broker root {}",
                r.dir().display()
            ));
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
        // In namespaces every node (and its epmd, and the CLI) has its own ports: nothing on
        // the host's loopback matters.
        for p in plan.iter().filter(|_| cfg.net().is_none()) {
            let fix = format!("stop what uses it or change clusters.rabbitmq.{}", p.field);
            free_port(p.port, p.what.clone(), fix).await?;
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
        let net = cfg.net();
        let mut cluster = LocalRabbitCluster {
            cfg,
            nodes,
            epmd: None,
            node_epmds: Vec::new(),
            net,
        };
        if let Some(net) = cluster.net.clone() {
            progress(&format!(
                "rabbitmq: creating network namespaces {}..{} behind the bridge {} ({})",
                net.nodes[0].ns,
                net.nodes[net.nodes.len() - 1].ns,
                net.bridge,
                net.gateway
            ));
            let dir = cluster.cfg.dir.clone();
            let made = match cluster.write_state() {
                Ok(()) => tokio::task::spawn_blocking(move || net.create(&dir))
                    .await
                    .unwrap_or_else(|e| {
                        Err(ClusterError::State {
                            dir: cluster.cfg.dir.clone(),
                            message: format!("the network task failed: {e}"),
                        })
                    }),
                Err(e) => Err(e),
            };
            if let Err(e) = made {
                cluster.down().await.ok();
                return Err(e);
            }
        }
        if let Err(e) = cluster.start_epmd(&epmd_bin, root.as_ref()).await {
            cluster.down().await.ok();
            return Err(e);
        }
        match &cluster.epmd {
            Some(e) => progress(&format!(
                "epmd: listening on 127.0.0.1:{} (pid {})",
                cluster.cfg.epmd_port, e.pid
            )),
            None => progress(&format!(
                "epmd: one per namespace on port {} (pids {})",
                cluster.cfg.epmd_port,
                cluster
                    .node_epmds
                    .iter()
                    .map(|p| p.pid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        for i in 0..cluster.nodes.len() {
            // Record the pid in the state file before the next node starts.
            if let Err(e) = cluster
                .spawn_node(i, root.as_ref())
                .and_then(|_| cluster.write_state())
            {
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
                amqp_uri: format!(
                    "amqp://{}:{}@{}:{}/%2f",
                    self.cfg.username, self.cfg.password, n.host, n.amqp_port
                ),
                http: format!("{}:{}", n.host, n.http_port),
            })
            .collect()
    }

    /// Every beam and the epmd this cluster started (as recorded; some may have exited).
    pub fn processes(&self) -> Vec<OwnedProcess> {
        let mut out = state::recorded_processes(&self.nodes, &self.epmd);
        out.extend(self.node_epmds.iter().cloned());
        out
    }

    /// The namespaces and links of its nodes (`network = "namespaces"`), None on loopback.
    pub fn net(&self) -> Option<&ClusterNet> {
        self.net.as_ref()
    }

    /// What each node's beam and the cluster's epmd carry, running or not.
    pub fn markers(&self) -> Vec<String> {
        let mut markers: Vec<String> = self.nodes.iter().map(RabbitNode::marker).collect();
        markers.push(epmd_marker(&self.cfg.dir));
        markers
    }

    /// SIGKILL node `index`'s beam and wait until it is gone.
    pub async fn kill_node(&mut self, index: usize) -> Result<(), ClusterError> {
        self.end_node(index, false).await
    }

    /// Stop node `index` gracefully (SIGTERM: RabbitMQ shuts down cleanly, handing leadership
    /// over; SIGKILL after 30 s) and wait until it is gone.
    pub async fn stop_node(&mut self, index: usize) -> Result<(), ClusterError> {
        self.end_node(index, true).await
    }

    async fn end_node(&mut self, index: usize, graceful: bool) -> Result<(), ClusterError> {
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
        tokio::task::spawn_blocking(move || {
            if graceful {
                p.stop_blocking(Duration::from_secs(30));
            } else {
                p.kill_blocking(KILL_WAIT);
            }
        })
        .await
        .ok();
        if proc.is_running() {
            return Err(ClusterError::Timeout {
                what: format!("{name} (pid {}) to exit", proc.pid),
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
        let epmd = match &self.net {
            Some(_) => self.node_epmds.get(index),
            None => self.epmd.as_ref(),
        };
        match epmd {
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
        for (port, what, field) in ports.into_iter().filter(|_| self.net.is_none()) {
            let fix = format!("stop what uses it or change clusters.rabbitmq.{field}");
            free_port(port, format!("{what} of {}", node.name), fix).await?;
        }
        remove_if_exists(&node.pid_file())?;
        let root = open_root(self.cfg.root.as_deref())?;
        self.spawn_node(index, root.as_ref())?;
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
            crate::errln!(
                "brokerbench: stopping the RabbitMQ cluster in {}: {e}",
                self.cfg.dir.display()
            );
        }
    }

    // ------------------------------------------------------------------------------------------

    /// The broker root the cluster runs from, opened (None: the host).
    fn root(&self) -> Result<Option<BrokerRootDir>, ClusterError> {
        open_root(self.cfg.root.as_deref())
    }

    fn node(&self, index: usize) -> Result<&RabbitNode, ClusterError> {
        self.nodes.get(index).ok_or_else(|| ClusterError::State {
            dir: self.cfg.dir.clone(),
            message: format!(
                "there is no node {index} (the cluster has {} nodes, numbered from 0)",
                self.nodes.len()
            ),
        })
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ClusterError {
    ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A 3-node config on the test ports, for the unit tests of every file of this module.
#[cfg(test)]
fn test_config() -> RabbitClusterConfig {
    RabbitClusterConfig {
        dir: std::path::PathBuf::from("/tmp/bb"),
        nodes: 3,
        amqp_base_port: 5700,
        http_base_port: 15700,
        stream_base_port: 5710,
        prometheus_base_port: 15710,
        dist_base_port: 25700,
        epmd_port: 4400,
        bin_dir: std::path::PathBuf::from(DEFAULT_BIN_DIR),
        net_ticktime_s: 10,
        root: None,
        username: "guest".into(),
        password: "guest".into(),
        network: Default::default(),
    }
}
