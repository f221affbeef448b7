//! The clusters a run needs, by name: started as local processes (and stopped at the end, on
//! error, on Ctrl-C and on panic; if this process dies without stopping them, its watchdog does),
//! or the user's external clusters. Each cluster's broker version is read from its running nodes.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::sync::watch;

use super::watchdog::Watchdog;
use super::{RunError, RunOptions};
use crate::backend::{Endpoints, RabbitEndpoint};
use crate::cluster::leftovers::{known_cluster, RunOwner};
use crate::cluster::rabbitmq::http::{Credentials, MgmtClient};
use crate::cluster::rabbitmq::{LocalRabbitCluster, RabbitClusterConfig};
use crate::cluster::redis::{LocalRedisCluster, RedisClusterConfig};
use crate::cluster::version::{running_version, BrokerVersion};
use crate::cluster::ClusterError;
use crate::fault::NodeControl;
use crate::monitoring::config::Targets;
use crate::monitoring::stack::MonitoringStack;
use crate::scenario::{BackendSpec, ClusterKind, ClusterMode, ClusterSection, Scenario};

/// A cluster brokerbench started for the run.
enum Local {
    Redis(LocalRedisCluster),
    Rabbitmq(LocalRabbitCluster),
}

impl Local {
    /// Stop the cluster, then delete its nodes' data (Redis's AOF and RDB files, RabbitMQ's
    /// mnesia folder: gigabytes after a max-rate run), keeping their configs and logs in the
    /// results folder for post-mortems.
    fn down_blocking(self) {
        let data: Vec<PathBuf> = match &self {
            Local::Redis(c) => c
                .nodes()
                .iter()
                .flat_map(|n| {
                    ["appendonlydir", "appendonly.aof", "dump.rdb"].map(|f| n.dir.join(f))
                })
                .collect(),
            Local::Rabbitmq(c) => c.nodes().iter().map(|n| n.mnesia_base()).collect(),
        };
        match self {
            Local::Redis(c) => c.down_blocking(),
            Local::Rabbitmq(c) => c.down_blocking(),
        }
        for path in data.iter().filter(|p| p.exists()) {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            if let Err(e) = removed {
                crate::errln!("brokerbench: cannot delete {}: {e}", path.display());
            }
        }
    }
}

/// One cluster of the run.
pub struct RunCluster {
    pub name: String,
    pub kind: ClusterKind,
    pub mode: ClusterMode,
    /// Its addresses (only the field of its kind is filled).
    pub endpoints: Endpoints,
    /// What its running nodes reported (None: `version_error` says why).
    pub version: Option<BrokerVersion>,
    pub version_error: Option<String>,
    /// "host", or the broker root its binaries came from.
    pub root: String,
    local: Option<Local>,
}

/// A cluster as meta.json records it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterMeta {
    pub name: String,
    pub kind: ClusterKind,
    pub mode: ClusterMode,
    /// The broker version its running nodes reported (null: unknown, see `version_error`).
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_error: Option<String>,
    /// Where the broker binaries came from: "host", or the root they ran in.
    pub root: String,
    /// The cluster's folder in the run folder (local clusters).
    pub dir: Option<String>,
}

/// Clusters started for one run. Dropping it stops whatever is still running.
#[derive(Default)]
pub struct RunClusters {
    clusters: Vec<RunCluster>,
    /// Folders of clusters being started, so an interrupted start can still be cleaned up.
    starting: Vec<(ClusterKind, PathBuf)>,
    /// Folders of every local cluster of the run.
    dirs: Vec<PathBuf>,
    /// Kills the local clusters if this process dies without stopping them; disarmed once
    /// `stop_blocking` has stopped them.
    watchdog: Option<Watchdog>,
    /// The monitoring stack's folder, once it is being started (`start_monitoring`).
    monitoring: Option<PathBuf>,
}

fn say(quiet: bool) -> impl Fn(&str) + Send + Sync {
    move |line: &str| {
        if !quiet {
            crate::errln!("  {line}");
        }
    }
}

/// Names of the clusters the scenario's backends run on, in the order they are first needed.
pub fn used_clusters(s: &Scenario) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    for name in s.backends.iter().filter_map(|b| b.cluster()) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

impl RunClusters {
    /// Start (or locate) every cluster the scenario's backends run on, and read their versions.
    pub async fn start(
        s: &Scenario,
        run_dir: &Path,
        opts: &RunOptions,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Self, RunError> {
        let mut me = RunClusters::default();
        let used: Vec<(&str, &ClusterSection)> = used_clusters(s)
            .into_iter()
            .filter_map(|n| s.clusters.get(n).map(|c| (n, c)))
            .collect();
        let any_local = used.iter().any(|(_, c)| c.mode() == ClusterMode::Local);
        if let (true, Some(exe)) = (any_local, &opts.watchdog_exe) {
            me.watchdog = Some(Watchdog::spawn(exe, run_dir)?);
        }
        for (name, section) in used {
            let mut cluster = me.bring_up(name, section, run_dir, opts, cancel).await?;
            match running_version(cluster.kind, &cluster.endpoints).await {
                Ok(v) => cluster.version = Some(v),
                Err(e) => cluster.version_error = Some(e.to_string()),
            }
            if !opts.quiet {
                crate::errln!(
                    "cluster \"{name}\": {} {}",
                    cluster.kind.product(),
                    cluster
                        .version
                        .as_ref()
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "(version unknown)".to_string())
                );
            }
            me.clusters.push(cluster);
        }
        Ok(me)
    }

    /// Start the local cluster `name`, or take the addresses of an external one.
    async fn bring_up(
        &mut self,
        name: &str,
        section: &ClusterSection,
        run_dir: &Path,
        opts: &RunOptions,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<RunCluster, RunError> {
        let mut cluster = RunCluster {
            name: name.to_string(),
            kind: section.kind(),
            mode: section.mode(),
            endpoints: Endpoints::default(),
            version: None,
            version_error: None,
            root: section
                .broker_root()
                .map(|r| String::from(r.clone()))
                .unwrap_or_else(|| "host".to_string()),
            local: None,
        };
        let progress = say(opts.quiet);
        let dir = run_dir.join("clusters").join(name);
        match section {
            ClusterSection::Redis(sec) if sec.mode == ClusterMode::External => {
                cluster.endpoints.redis = sec.nodes.clone()
            }
            ClusterSection::Rabbitmq(sec) if sec.mode == ClusterMode::External => {
                cluster.endpoints.rabbitmq = external_rabbit(&sec.amqp_uris, &sec.http).await?
            }
            ClusterSection::Redis(sec) => {
                if !opts.quiet {
                    crate::errln!(
                        "starting local Redis Cluster \"{name}\" (3 masters + 3 replicas) in {}",
                        dir.display()
                    );
                }
                self.own(&dir, run_dir)?;
                self.starting.push((ClusterKind::Redis, dir.clone()));
                let up = LocalRedisCluster::up(
                    RedisClusterConfig::from_section(dir.clone(), sec),
                    &progress,
                );
                let c = tokio::select! {
                    r = up => r.map_err(|e| in_section(e, name))?,
                    _ = cancel.changed() => return Err(RunError::Interrupted),
                };
                self.starting.pop();
                cluster.endpoints.redis = c.seeds();
                cluster.local = Some(Local::Redis(c));
            }
            ClusterSection::Rabbitmq(sec) => {
                if !opts.quiet {
                    crate::errln!(
                        "starting local RabbitMQ cluster \"{name}\" (3 nodes, about 30 s) in {}",
                        dir.display()
                    );
                }
                self.own(&dir, run_dir)?;
                self.starting.push((ClusterKind::Rabbitmq, dir.clone()));
                let up = LocalRabbitCluster::up(
                    RabbitClusterConfig::from_section(dir.clone(), sec),
                    &progress,
                );
                let c = tokio::select! {
                    r = up => r.map_err(|e| in_section(e, name))?,
                    _ = cancel.changed() => return Err(RunError::Interrupted),
                };
                self.starting.pop();
                cluster.endpoints.rabbitmq = c.endpoints();
                cluster.local = Some(Local::Rabbitmq(c));
            }
        }
        Ok(cluster)
    }

    /// Start Prometheus and the redis_exporters for `targets` in `<run dir>/monitoring`, owned
    /// by this run like its clusters (stopped with them, by the watchdog if this process dies).
    pub async fn start_monitoring(
        &mut self,
        targets: &Targets,
        run_dir: &Path,
        opts: &RunOptions,
    ) -> Result<MonitoringStack, RunError> {
        let dir = run_dir.join(super::MONITORING_DIR);
        if !opts.quiet {
            crate::errln!(
                "starting Prometheus (port {}) and {} redis_exporters in {}",
                targets.prometheus_port,
                targets.redis.len(),
                dir.display()
            );
        }
        if let (None, Some(exe)) = (&self.watchdog, &opts.watchdog_exe) {
            self.watchdog = Some(Watchdog::spawn(exe, run_dir)?);
        }
        self.own(&dir, run_dir)?;
        self.monitoring = Some(dir.clone());
        Ok(MonitoringStack::up(&dir, targets).await?)
    }

    /// Mark the cluster folder `dir` as this run's (its owner file), before anything is started
    /// in it, so that a later run can tell a leftover of this one if this process dies.
    fn own(&mut self, dir: &Path, run_dir: &Path) -> Result<(), RunError> {
        let owner = RunOwner::this_process(run_dir).ok_or_else(|| ClusterError::State {
            dir: dir.to_path_buf(),
            message: "cannot read this process's start time in /proc/self/stat".to_string(),
        })?;
        owner.write(dir)?;
        self.dirs.push(dir.to_path_buf());
        Ok(())
    }

    /// The cluster a backend runs on.
    pub fn cluster_of(&self, spec: &BackendSpec) -> Option<&RunCluster> {
        let name = spec.cluster()?;
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The clusters of the run, in the order they were started.
    pub fn clusters(&self) -> &[RunCluster] {
        &self.clusters
    }

    /// Addresses of the cluster a backend runs on.
    pub fn endpoints_for(&self, spec: &BackendSpec) -> Endpoints {
        self.cluster_of(spec)
            .map(|c| c.endpoints.clone())
            .unwrap_or_default()
    }

    /// What the fault runner may do to the cluster a backend runs on (None: not ours).
    pub fn control_for(&mut self, spec: &BackendSpec) -> Option<&mut (dyn NodeControl + 'static)> {
        let name = spec.cluster()?;
        let cluster = self.clusters.iter_mut().find(|c| c.name == name)?;
        match cluster.local.as_mut()? {
            Local::Redis(c) => Some(c as &mut (dyn NodeControl + 'static)),
            Local::Rabbitmq(c) => Some(c as &mut (dyn NodeControl + 'static)),
        }
    }

    /// What meta.json records of each cluster.
    pub fn meta(&self, run_dir: &Path) -> Vec<ClusterMeta> {
        self.clusters
            .iter()
            .map(|c| ClusterMeta {
                name: c.name.clone(),
                kind: c.kind,
                mode: c.mode,
                version: c.version.as_ref().map(|v| v.to_string()),
                version_error: c.version_error.clone(),
                root: c.root.clone(),
                dir: c
                    .local
                    .as_ref()
                    .map(|_| run_dir.join("clusters").join(&c.name).display().to_string()),
            })
            .collect()
    }

    /// Stop every local cluster (blocking; also used by Drop).
    pub fn stop_blocking(&mut self) {
        // The stack first: its exporters would log errors while the nodes go down.
        if let Some(dir) = self.monitoring.take() {
            if let Ok(m) = MonitoringStack::attach(&dir) {
                m.down_blocking();
            }
        }
        for c in self.clusters.iter_mut() {
            if let Some(local) = c.local.take() {
                local.down_blocking();
            }
        }
        // A start that was interrupted recorded its processes in its folder's state file.
        for (kind, dir) in self.starting.drain(..) {
            match kind {
                ClusterKind::Redis => {
                    if let Ok(c) = LocalRedisCluster::attach(&dir) {
                        c.down_blocking();
                    }
                }
                ClusterKind::Rabbitmq => {
                    if let Ok(c) = LocalRabbitCluster::attach(&dir) {
                        c.down_blocking();
                    }
                }
            }
        }
        let Some(watchdog) = self.watchdog.take() else {
            return;
        };
        let left: Vec<String> = self
            .dirs
            .iter()
            .filter(|d| known_cluster(d).is_some_and(|c| !c.running_pids().is_empty()))
            .map(|d| d.display().to_string())
            .collect();
        if left.is_empty() {
            watchdog.disarm();
        } else {
            // Closing the pipe makes the watchdog kill what is left.
            crate::errln!(
                "brokerbench: processes of {} are still running; the watchdog (pid {}) kills them",
                left.join(", "),
                watchdog.pid()
            );
        }
    }

    pub async fn stop(mut self) {
        let _ = tokio::task::spawn_blocking(move || self.stop_blocking()).await;
    }
}

impl Drop for RunClusters {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

/// The launchers name a setting as in `[clusters.redis]` / `[clusters.rabbitmq]`: name the
/// section the cluster came from.
fn in_section(e: ClusterError, name: &str) -> ClusterError {
    let rename = |text: String| {
        text.replace("clusters.redis.", &format!("clusters.{name}."))
            .replace("clusters.rabbitmq.", &format!("clusters.{name}."))
    };
    match e {
        ClusterError::PortInUse {
            port,
            what,
            holder,
            fix,
        } => ClusterError::PortInUse {
            port,
            what,
            holder,
            fix: rename(fix),
        },
        ClusterError::State { dir, message } => ClusterError::State {
            dir,
            message: rename(message),
        },
        other => other,
    }
}

/// Endpoints of a user's RabbitMQ cluster; node names are read from each management API.
async fn external_rabbit(
    amqp: &[String],
    http: &[String],
) -> Result<Vec<RabbitEndpoint>, RunError> {
    let mut out = Vec::new();
    for (i, uri) in amqp.iter().enumerate() {
        let http = http.get(i).cloned().unwrap_or_default();
        let mut node = format!("node{}", i + 1);
        if !http.is_empty() {
            let credentials = Credentials::of_amqp_uri(uri).map_err(|e| {
                RunError::Cluster(ClusterError::Command {
                    command: format!("amqp_uris[{i}]"),
                    message: format!("\"{uri}\" is not an AMQP URI: {e}"),
                })
            })?;
            let v = MgmtClient::new(&http, &credentials)
                .get_json("/api/overview")
                .await
                .map_err(|e| {
                    RunError::Cluster(ClusterError::Command {
                        command: format!("GET http://{http}/api/overview"),
                        message: e.to_string(),
                    })
                })?;
            if let Some(n) = v.get("node").and_then(|n| n.as_str()) {
                node = n.to_string();
            }
        }
        out.push(RabbitEndpoint {
            node,
            amqp_uri: uri.clone(),
            http,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_messages_name_the_clusters_own_section() {
        let e = in_section(
            ClusterError::PortInUse {
                port: 5800,
                what: "AMQP of rabbit1@localhost".into(),
                holder: "pid 1 (x)".into(),
                fix: "stop what uses it or change clusters.rabbitmq.amqp_base_port".into(),
            },
            "rabbitmq-4",
        );
        assert!(
            e.to_string()
                .ends_with("stop what uses it or change clusters.rabbitmq-4.amqp_base_port"),
            "{e}"
        );
    }
}
