//! Starting and stopping the node processes (each `rabbitmq-server` in its own session, stopped
//! with its whole process group), and `rabbitmqctl` calls with the cluster's environment.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::files::remove_if_exists;
use super::{io_err, node_env, LocalRabbitCluster, RabbitNode, STATE_FILE};
use crate::cluster::broker_root::BrokerRootDir;
use crate::cluster::process::OwnedProcess;
use crate::cluster::ClusterError;

/// How long a node gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long to wait for a SIGKILLed process to disappear.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(15);

impl LocalRabbitCluster {
    pub(super) fn stop_all_blocking(&self) -> Result<(), ClusterError> {
        let beams: Vec<OwnedProcess> = self
            .nodes
            .iter()
            .filter_map(|n| n.process.clone())
            .collect();
        stop_group_blocking(&beams, STOP_GRACE);
        for e in self.epmd.iter().chain(&self.node_epmds) {
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
        if let Some(net) = &self.net {
            let left = net.remove();
            if !left.is_empty() {
                return Err(ClusterError::State {
                    dir: self.cfg.dir.clone(),
                    message: format!(
                        "could not remove the network {} ({}); {STATE_FILE} is kept, `ip link \
                         del` and `ip netns del` remove them",
                        net.bridge,
                        left.join(", ")
                    ),
                });
            }
        }
        remove_if_exists(&self.cfg.dir.join(STATE_FILE))
    }

    /// Start node `index`'s `rabbitmq-server` in its own session; its pid becomes the beam's (the
    /// scripts `exec` down to beam.smp).
    /// In a broker root, the cluster folder is mounted at its own path inside it.
    pub(super) fn spawn_node(
        &mut self,
        index: usize,
        root: Option<&BrokerRootDir>,
    ) -> Result<(), ClusterError> {
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
        if let Some(net) = &self.net {
            net.enter(index, &mut cmd)?;
        }
        if let Some(root) = root {
            root.confine(&mut cmd, &[self.cfg.dir.as_path()], &node.dir)?;
        }
        let proc = spawn_detached(cmd, node.marker(), &server.display().to_string())?;
        self.nodes[index].process = Some(proc);
        Ok(())
    }

    /// If the pid file names another live process of this node than the one recorded, record it.
    pub(super) fn adopt_pid_file(&mut self, index: usize) -> Result<(), ClusterError> {
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

    /// Run `rabbitmqctl -n <node> <args>` with the cluster's environment.
    pub(super) async fn ctl(
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
            .args(self.net.as_ref().map(|_| "--longnames"))
            .args(args)
            .current_dir(&node.dir)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // In namespaces the CLI runs in the node's, where that node's epmd listens on 127.0.0.1
        // (elsewhere it would start an epmd of its own).
        if let Some(net) = &self.net {
            net.enter(node.index, cmd.as_std_mut())?;
        }
        if let Some(root) = self.root()? {
            root.confine_tokio(&mut cmd, &[self.cfg.dir.as_path()], &node.dir)?;
        }
        // If this call times out or is abandoned (a failed `up`), the CLI's whole process group
        // is killed and waited for, so no CLI process outlives the cluster it talked to.
        let mut reaper = CtlReaper(None);
        let run = async {
            let child = cmd.spawn()?;
            reaper.0 = child.id();
            let out = child.wait_with_output().await;
            reaper.0 = None;
            out
        };
        let out = match tokio::time::timeout(timeout, run).await {
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
pub(super) fn spawn_detached(
    mut cmd: std::process::Command,
    marker: String,
    what: &str,
) -> Result<OwnedProcess, ClusterError> {
    crate::cluster::process::in_new_session(&mut cmd);
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
    // What each process started, found before it dies (its children are then re-parented).
    let families: Vec<Vec<u32>> = procs.iter().map(|p| p.descendants()).collect();
    let live: Vec<&OwnedProcess> = procs.iter().filter(|p| p.is_running()).collect();
    for p in &live {
        p.terminate();
    }
    let start = Instant::now();
    while start.elapsed() < grace && live.iter().any(|p| p.is_running()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in live.iter().filter(|p| p.is_running()) {
        p.kill_blocking(KILL_WAIT);
    }
    // Helper programs a node (or its start script) left behind.
    for (p, family) in procs.iter().zip(&families) {
        p.reap_leftovers(family, KILL_WAIT);
    }
}

/// Kills a `rabbitmqctl` process group that has not finished, and waits until it is gone.
struct CtlReaper(Option<u32>);

impl Drop for CtlReaper {
    fn drop(&mut self) {
        let Some(pid) = self.0 else { return };
        if !crate::cluster::process::is_alive(pid) {
            return;
        }
        // SAFETY: kill(2) on the process group of a child we spawned as its group leader.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
        let start = Instant::now();
        while crate::cluster::process::is_alive(pid) && start.elapsed() < Duration::from_secs(2) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
