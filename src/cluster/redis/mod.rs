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
//!
//! Layout: `config` (what to start, redis.conf), `node` (one node's folder, ports and
//! process), `state` (the state file, `attach`), `launch` (starting and stopping the
//! processes, `redis-cli --cluster create`), `health` (the waits), `client` (one request to one
//! node), `cluster_nodes` (CLUSTER NODES parsing, `format_status`).

mod client;
mod cluster_nodes;
mod config;
mod control;
mod health;
mod launch;
mod node;
mod state;

use std::fs;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::broker_root::open_root;
use super::process::OwnedProcess;
use super::{ClusterError, Progress};

pub use cluster_nodes::{
    parse_cluster_nodes, parse_node_rows, pick_slot_owner, NodeLine, RedisNodeStatus,
};
pub use config::RedisClusterConfig;
pub use node::RedisNode;
pub use state::STATE_FILE;

use super::netns::ClusterNet;
use client::{call, info_field};
use cluster_nodes::sort_rows;
use config::{network_plan, plan_nodes, quote};
use health::pending;
use launch::{check_ports, resolve_binary, spawn_node, stop_processes};
use state::KIND;

const HOST: &str = "127.0.0.1";
/// The cluster bus of a node listens on its port plus this offset.
const BUS_OFFSET: u32 = 10_000;
/// How long to wait for a SIGKILLed process to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A Redis Cluster running as local processes, started by `up` or found by `attach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalRedisCluster {
    /// "redis", so a state file is not taken for another launcher's.
    kind: String,
    config: RedisClusterConfig,
    nodes: Vec<RedisNode>,
    /// The bridge, namespaces and links of `network = "namespaces"`, recorded before they are
    /// made so that `down` (or a later run's cleanup) removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    net: Option<ClusterNet>,
}

impl LocalRedisCluster {
    /// Check binaries, ports and the folder, start every node, create the cluster and wait until
    /// it is healthy. Starts nothing if a check fails; stops what it started if a later step fails.
    /// A port held by a cluster that a dead run left behind is freed by stopping that cluster
    /// (`leftovers::free_port`).
    pub async fn up(cfg: RedisClusterConfig, progress: Progress<'_>) -> Result<Self, ClusterError> {
        let started = Instant::now();
        let mut cfg = cfg;
        cfg.dir = std::path::absolute(&cfg.dir).map_err(|source| ClusterError::Io {
            path: cfg.dir.clone(),
            source,
        })?;
        let root = open_root(cfg.root.as_deref())?;
        let server_bin = resolve_binary(root.as_ref(), &cfg.redis_server)?;
        let cli_bin = resolve_binary(root.as_ref(), &cfg.redis_cli)?;
        if let Some(r) = &root {
            progress(&format!(
                "redis: running redis-server and redis-cli from the broker root {}",
                r.dir().display()
            ));
        }
        let nodes = plan_nodes(&cfg)?;
        let net = network_plan(&cfg);
        let mut cluster = LocalRedisCluster {
            kind: KIND.into(),
            config: cfg,
            nodes,
            net,
        };
        cluster.check_previous_state()?;
        let (first, last) = (
            cluster.nodes[0].port,
            cluster.nodes[cluster.nodes.len() - 1].port,
        );
        // In namespaces every node has its own ports: nothing on the host's loopback matters.
        if cluster.net.is_none() {
            progress(&format!(
                "redis: checking ports {first}-{last} and cluster bus ports {}-{}",
                u32::from(first) + BUS_OFFSET,
                u32::from(last) + BUS_OFFSET
            ));
            for node in &cluster.nodes {
                check_ports(node).await?;
            }
        }
        cluster.prepare_folders()?;
        cluster.save_state()?;

        let started_net = match &cluster.net {
            Some(net) => {
                progress(&format!(
                    "redis: creating network namespaces {}..{} behind the bridge {} ({})",
                    net.nodes[0].ns,
                    net.nodes[net.nodes.len() - 1].ns,
                    net.bridge,
                    net.gateway
                ));
                let (net, dir) = (net.clone(), cluster.config.dir.clone());
                tokio::task::spawn_blocking(move || net.create(&dir))
                    .await
                    .map_err(|e| cluster.state_error(format!("the network task failed: {e}")))
                    .and_then(|r| r)
            }
            None => Ok(()),
        };
        let start = async {
            started_net?;
            cluster
                .start_and_form(&server_bin, &cli_bin, root.as_ref(), progress)
                .await
        };
        match start.await {
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

    /// The namespaces and links of its nodes (`network = "namespaces"`), None on loopback.
    pub fn net(&self) -> Option<&ClusterNet> {
        self.net.as_ref()
    }

    /// Every process this cluster started that may still run.
    pub fn processes(&self) -> Vec<OwnedProcess> {
        self.nodes
            .iter()
            .filter_map(|n| n.process.clone())
            .collect()
    }

    /// What each node's process carries (see the module doc), running or not.
    pub fn markers(&self) -> Vec<String> {
        self.nodes.iter().map(RedisNode::marker).collect()
    }

    /// `CLUSTER NODES` from the first running node that answers, parsed; masters first (by first
    /// slot), then replicas (in their masters' order), then the rest.
    pub async fn status(&self) -> Result<Vec<RedisNodeStatus>, ClusterError> {
        let mut last_error = None;
        for node in self.running_nodes() {
            match call::<String>(&node.address(), redis::cmd("CLUSTER").arg("NODES")).await {
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

    /// "127.0.0.1:port" of the master serving `slot` now: the claim with the highest config
    /// epoch across the views of all running nodes. None while that master is flagged failed
    /// (before its replica is promoted).
    pub async fn master_of_slot(&self, slot: u16) -> Result<Option<String>, ClusterError> {
        let mut views = Vec::new();
        let mut last_error = None;
        for node in self.running_nodes() {
            match call::<String>(&node.address(), redis::cmd("CLUSTER").arg("NODES")).await {
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
                    &node.address(),
                    redis::cmd("CONFIG").arg("SET").arg(key).arg(value),
                )
                .await
                .map_err(|e| node.error(format!("CONFIG SET {key} {value} failed: {e}")))?;
                call::<()>(&node.address(), redis::cmd("CONFIG").arg("REWRITE"))
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
        self.end_node(port, false).await
    }

    /// Stop the node on `port` gracefully (SIGTERM; SIGKILL after 10 s) and wait until it is gone.
    pub async fn stop_node(&mut self, port: u16) -> Result<(), ClusterError> {
        self.end_node(port, true).await
    }

    async fn end_node(&mut self, port: u16, graceful: bool) -> Result<(), ClusterError> {
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
        let _ = tokio::task::spawn_blocking(move || {
            if graceful {
                p.stop_blocking(KILL_WAIT);
            } else {
                p.kill_blocking(KILL_WAIT);
            }
        })
        .await;
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
        let root = open_root(self.config.root.as_deref())?;
        let server_bin = resolve_binary(root.as_ref(), &self.config.redis_server)?;
        if self.net.is_none() {
            check_ports(node).await?;
        }
        let process = spawn_node(
            &server_bin,
            node,
            root.as_ref(),
            &self.config.dir,
            self.net.as_ref(),
        )?;
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
                match call::<String>(&node.address(), redis::cmd("CLUSTER").arg("INFO")).await {
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
}

#[cfg(test)]
mod tests {
    use super::config::tests::config;
    use super::*;

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
            net: None,
        };
        is_send(&cluster.wait_healthy(Duration::from_secs(1)));
        is_send(&cluster.status());
        is_send(&cluster.master_of_slot(0));
        is_send(&cluster.kill_node(7101));
        is_send(&cluster.restart_node(7101));
        is_send(&cluster.down());
    }
}
