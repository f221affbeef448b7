//! Clusters that outlived the run that started them (the harness was SIGKILLed, ran out of
//! memory, or aborted before it could stop them).
//!
//! A run writes an owner file (`owner.json`: the harness's pid, its start time and the run
//! folder) into each cluster folder before starting the cluster; `cluster up` writes none, so its
//! clusters, which the user asked to keep, are never taken for leftovers. A launcher that finds
//! one of its ports taken calls [`free_port`]: a port held by a process of a brokerbench cluster
//! whose owner is gone is freed by killing that cluster (with a line on stderr saying which pids
//! and which run folder); any other holder stays an error that names it. The run's watchdog
//! (`run::watchdog`) uses [`kill_cluster`] the moment the harness is gone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::port_holder::{holder_of, KnownCluster, LauncherKind, PortHolder};
use super::process::{carries_marker, is_alive, port_in_use, start_ticks, OwnedProcess};
use super::rabbitmq::LocalRabbitCluster;
use super::redis::LocalRedisCluster;
use super::ClusterError;
use crate::monitoring::stack::MonitoringStack;

/// Name of the owner file inside a cluster folder started by a run.
pub const OWNER_FILE: &str = "owner.json";
/// Both launchers' state file.
const STATE_FILE: &str = "cluster.json";
/// How long a SIGKILLed process may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long a freed port may take to become free.
const PORT_WAIT: Duration = Duration::from_secs(5);
/// How long a port held by anyone else may take to be released before it is an error: a
/// process that was just killed (by this run's watchdog, or a test) may still hold it for a
/// moment, and its sockets may then be out of sight (`PortHolder::Unseen`).
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// The harness process of a run that started a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOwner {
    pub pid: u32,
    /// Start time of `pid` (`process::start_ticks`), so that a recycled pid is not taken for it.
    pub start_ticks: u64,
    /// The run folder.
    pub run_dir: PathBuf,
}

impl RunOwner {
    /// This process, as the owner of the clusters of the run in `run_dir`.
    pub fn this_process(run_dir: &Path) -> Option<Self> {
        let pid = std::process::id();
        Some(RunOwner {
            pid,
            start_ticks: start_ticks(pid)?,
            run_dir: std::path::absolute(run_dir).unwrap_or_else(|_| run_dir.to_path_buf()),
        })
    }

    /// Whether the harness still runs (same pid, same start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        is_alive(self.pid) && start_ticks(self.pid) == Some(self.start_ticks)
    }

    /// Write `<cluster_dir>/owner.json` (creating the folder).
    pub fn write(&self, cluster_dir: &Path) -> Result<(), ClusterError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ClusterError::Io { path, source }
        };
        std::fs::create_dir_all(cluster_dir).map_err(io(cluster_dir))?;
        let path = cluster_dir.join(OWNER_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| ClusterError::State {
            dir: cluster_dir.to_path_buf(),
            message: format!("cannot encode {OWNER_FILE}: {e}"),
        })?;
        std::fs::write(&path, text).map_err(io(&path))
    }

    /// The owner recorded in `<cluster_dir>/owner.json`, if there is a readable one.
    pub fn read(cluster_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(cluster_dir.join(OWNER_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The cluster whose state file (either launcher's) is in `dir`, if any.
pub fn known_cluster(dir: &Path) -> Option<KnownCluster> {
    let owner = RunOwner::read(dir);
    if let Ok(m) = MonitoringStack::attach(dir) {
        return Some(KnownCluster {
            dir: dir.to_path_buf(),
            kind: LauncherKind::Monitoring,
            markers: m.markers(),
            processes: m.process_list(),
            owner,
        });
    }
    if !dir.join(STATE_FILE).is_file() {
        return None;
    }
    let (kind, markers, processes) = if let Ok(c) = LocalRedisCluster::attach(dir) {
        (LauncherKind::Redis, c.markers(), c.processes())
    } else if let Ok(c) = LocalRabbitCluster::attach(dir) {
        (LauncherKind::RabbitMq, c.markers(), c.processes())
    } else {
        return None;
    };
    Some(KnownCluster {
        dir: dir.to_path_buf(),
        kind,
        markers,
        processes,
        owner,
    })
}

/// SIGKILL every running process the cluster's state file records, and `extra` (a process of
/// the cluster found on one of its ports), in parallel, with what each started; wait until they
/// are gone; then let the launcher finish its bookkeeping (its `down` finds nothing running and
/// removes the state file). Returns the pids that were running.
pub fn kill_cluster(cluster: &KnownCluster, extra: Option<OwnedProcess>) -> Vec<u32> {
    let mut procs: Vec<OwnedProcess> = cluster
        .processes
        .iter()
        .filter(|p| p.is_running())
        .cloned()
        .collect();
    if let Some(x) = extra {
        if !procs.iter().any(|p| p.pid == x.pid) && x.is_running() {
            procs.push(x);
        }
    }
    std::thread::scope(|s| {
        for p in &procs {
            s.spawn(move || p.kill_blocking(KILL_WAIT));
        }
    });
    match cluster.kind {
        LauncherKind::Redis => {
            if let Ok(c) = LocalRedisCluster::attach(&cluster.dir) {
                c.down_blocking();
            }
        }
        LauncherKind::RabbitMq => {
            if let Ok(c) = LocalRabbitCluster::attach(&cluster.dir) {
                c.down_blocking();
            }
        }
        LauncherKind::Monitoring => {
            if let Ok(m) = MonitoringStack::attach(&cluster.dir) {
                m.down_blocking();
            }
        }
    }
    procs.iter().map(|p| p.pid).collect()
}

/// Make sure 127.0.0.1:`port` can be listened on before a launcher starts `what` there. If a
/// process of a brokerbench cluster whose run is gone holds it, that cluster is killed (a line on
/// stderr says which pids and which run folder) and the port waited for; any other holder is a
/// [`ClusterError::PortInUse`] naming it (pid and command line, or whose brokerbench cluster).
pub async fn free_port(port: u16, what: String, fix: String) -> Result<(), ClusterError> {
    if !port_in_use(port) {
        return Ok(());
    }
    let mut holder = blocking(move || holder_of(port), PortHolder::Unseen).await;
    if let PortHolder::Ours { pid, cluster } = &holder {
        if let Some(owner) = cluster.owner.as_ref().filter(|o| !o.is_alive()) {
            let holding = cluster
                .markers
                .iter()
                .find(|m| carries_marker(*pid, m))
                .map(|m| OwnedProcess {
                    pid: *pid,
                    marker: m.clone(),
                });
            let mut pids = cluster.running_pids();
            if !pids.contains(pid) {
                pids.push(*pid);
            }
            crate::errln!(
                "brokerbench: port {port} is held by the {} cluster in {}, left behind by the run \
                 in {} (its brokerbench, pid {}, ended without stopping it); stopping pids {}",
                cluster.kind,
                cluster.dir.display(),
                owner.run_dir.display(),
                owner.pid,
                join(&pids)
            );
            let c = cluster.clone();
            blocking(move || kill_cluster(&c, holding), Vec::new()).await;
            if released_within(port, PORT_WAIT).await {
                return Ok(());
            }
            holder = blocking(move || holder_of(port), PortHolder::Unseen).await;
        }
    }
    if !matches!(holder, PortHolder::Ours { .. }) {
        if released_within(port, RELEASE_WAIT).await {
            return Ok(());
        }
        holder = blocking(move || holder_of(port), PortHolder::Unseen).await;
    }
    let fix = match &holder {
        PortHolder::Ours { cluster, .. } if cluster.owner.is_none() => format!(
            "`{}` stops it; or {fix}",
            cluster.kind.down_command(&cluster.dir)
        ),
        PortHolder::Ours { .. } => format!("wait until that run ends; or {fix}"),
        _ => fix,
    };
    Err(ClusterError::PortInUse {
        port,
        what,
        holder: holder.describe(),
        fix,
    })
}

/// Poll until 127.0.0.1:`port` can be listened on, for at most `limit`; whether it can.
async fn released_within(port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while port_in_use(port) && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !port_in_use(port)
}

/// Run `f` on a blocking thread (it scans /proc or waits for processes to die).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static, failed: T) -> T {
    tokio::task::spawn_blocking(f).await.unwrap_or(failed)
}

fn join(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_file_round_trips_and_tells_a_live_harness_from_a_gone_one() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let cluster_dir = tmp.path().join("clusters").join("redis");
        let me = RunOwner::this_process(tmp.path()).expect("own start time");
        assert!(me.is_alive());
        me.write(&cluster_dir).expect("write owner.json");
        assert_eq!(RunOwner::read(&cluster_dir), Some(me.clone()));
        // Same pid, another start time: a recycled pid, not the harness.
        let recycled = RunOwner {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!recycled.is_alive());
        assert_eq!(RunOwner::read(tmp.path()), None);
        // No state file: not a cluster folder.
        assert_eq!(known_cluster(&cluster_dir), None);
    }

    /// A listener on the first free port of `ports`.
    fn listen_in(ports: std::ops::Range<u16>) -> (std::net::TcpListener, u16) {
        ports
            .clone()
            .find_map(|p| {
                std::net::TcpListener::bind(("127.0.0.1", p))
                    .ok()
                    .map(|l| (l, p))
            })
            .unwrap_or_else(|| panic!("no free port in {ports:?}"))
    }

    #[tokio::test]
    async fn a_foreign_listener_is_an_error_naming_it() {
        let (listener, port) = listen_in(22_000..22_500);
        let err = free_port(port, "a test".into(), "choose another".into()).await;
        match err {
            Err(ClusterError::PortInUse {
                port: p,
                holder,
                fix,
                ..
            }) => {
                assert_eq!(p, port);
                assert!(holder.starts_with("pid "), "{holder}");
                assert_eq!(fix, "choose another");
            }
            other => panic!("expected PortInUse, got {other:?}"),
        }
        drop(listener);
    }

    /// A port released within a moment (a process that was just killed) is waited for.
    #[tokio::test]
    async fn a_port_released_within_a_moment_is_waited_for() {
        let (listener, port) = listen_in(22_500..23_000);
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(listener);
        });
        let freed = free_port(port, "a test".into(), "choose another".into()).await;
        assert!(freed.is_ok(), "{freed:?}");
        holder.join().expect("holder thread");
    }
}
