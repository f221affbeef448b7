//! Starting and stopping the node processes: binaries, ports, node folders, `redis-server`
//! spawns, `redis-cli --cluster create`, and the graceful stop.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::config::render_conf;
use super::{LocalRedisCluster, RedisNode};
use crate::cluster::broker_root::{missing_in_root, BrokerRootDir};
use crate::cluster::leftovers::free_port;
use crate::cluster::netns::ClusterNet;
use crate::cluster::process::{find_binary, OwnedProcess};
use crate::cluster::{ClusterError, Progress};

/// Graceful stop: SIGTERM (repeated), then SIGKILL after this long.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Limit for `redis-cli --cluster create`.
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit for a new cluster to become healthy after `redis-cli --cluster create`.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_FIX: &str = "stop what uses it or choose another clusters.redis.base_port";
const BINARY_FIX: &str = "install it: apt-get install -y redis-server redis-tools, or set \
     RedisClusterConfig::redis_server / redis_cli to the binary's path";

impl LocalRedisCluster {
    /// Fresh node folders (no nodes-*.conf, AOF or RDB left from an earlier cluster) with their
    /// redis.conf.
    pub(super) fn prepare_folders(&self) -> Result<(), ClusterError> {
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

    pub(super) async fn start_and_form(
        &mut self,
        server_bin: &Path,
        cli_bin: &Path,
        root: Option<&BrokerRootDir>,
        progress: Progress<'_>,
    ) -> Result<(), ClusterError> {
        let t0 = Instant::now();
        for idx in 0..self.nodes.len() {
            let process = spawn_node(
                server_bin,
                &self.nodes[idx],
                root,
                &self.config.dir,
                self.net.as_ref(),
            )?;
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
        self.create_cluster(cli_bin, root).await?;
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

    async fn create_cluster(
        &self,
        cli_bin: &Path,
        root: Option<&BrokerRootDir>,
    ) -> Result<(), ClusterError> {
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(self.seeds());
        args.extend([
            "--cluster-replicas".into(),
            self.config.replicas_per_master.to_string(),
            "--cluster-yes".into(),
        ]);
        let command = format!("{} {}", cli_bin.display(), args.join(" "));
        let mut cmd = tokio::process::Command::new(cli_bin);
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(root) = root {
            root.confine_tokio(&mut cmd, &[], Path::new("/"))?;
        }
        let child = cmd.output();
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
}

/// Find a binary on PATH, or take a path (absolute, or relative with a `/`). In a broker root:
/// the path inside the root of a name found in its bin folders, or of an absolute path.
pub(super) fn resolve_binary(
    root: Option<&BrokerRootDir>,
    name: &str,
) -> Result<PathBuf, ClusterError> {
    if let Some(root) = root {
        return root
            .find_binary(name)
            .ok_or_else(|| missing_in_root(root, name));
    }
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

/// The node's port and cluster bus port are free (`leftovers::free_port`: a cluster left behind
/// by a run that is gone is stopped; anything else holding them is an error naming it).
pub(super) async fn check_ports(node: &RedisNode) -> Result<(), ClusterError> {
    free_port(
        node.port,
        format!("Redis node {} ({})", node.index, node.address()),
        PORT_FIX.into(),
    )
    .await?;
    free_port(
        node.bus_port(),
        format!(
            "the cluster bus of Redis node {} ({})",
            node.index,
            node.address()
        ),
        PORT_FIX.into(),
    )
    .await
}

/// Start `redis-server <conf>` in its own process group (so it outlives us and ignores our
/// terminal's Ctrl-C), in `root` if given (with the cluster folder `cluster_dir` mounted at its
/// own path there). A thread reaps it when it exits.
pub(super) fn spawn_node(
    server_bin: &Path,
    node: &RedisNode,
    root: Option<&BrokerRootDir>,
    cluster_dir: &Path,
    net: Option<&ClusterNet>,
) -> Result<OwnedProcess, ClusterError> {
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
    let mut cmd = std::process::Command::new(server_bin);
    cmd.arg(node.conf_path())
        .current_dir(&node.dir)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some(net) = net {
        net.enter(node.index, &mut cmd)?;
    }
    if let Some(root) = root {
        root.confine(&mut cmd, &[cluster_dir], &node.dir)?;
    }
    let mut child = cmd
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
pub(super) fn stop_processes(procs: Vec<(String, OwnedProcess)>) -> Vec<(String, OwnedProcess)> {
    std::thread::scope(|s| {
        for (_, p) in &procs {
            s.spawn(move || p.stop_blocking(STOP_GRACE));
        }
    });
    procs.into_iter().filter(|(_, p)| p.is_running()).collect()
}
