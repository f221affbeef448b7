//! The clusters a run needs: started as local processes (and stopped at the end, on error, on
//! Ctrl-C and on panic; if this process dies without stopping them, its watchdog does), or the
//! user's external clusters.

use std::path::{Path, PathBuf};

use tokio::sync::watch;

use super::watchdog::Watchdog;
use super::{RunError, RunOptions};
use crate::backend::{Endpoints, RabbitEndpoint};
use crate::cluster::leftovers::{known_cluster, RunOwner};
use crate::cluster::rabbitmq::{LocalRabbitCluster, RabbitClusterConfig};
use crate::cluster::rabbitmq_http::MgmtClient;
use crate::cluster::redis::{LocalRedisCluster, RedisClusterConfig};
use crate::cluster::ClusterError;
use crate::fault::NodeControl;
use crate::scenario::{BackendSpec, ClusterMode, Scenario};

/// Clusters started for one run. Dropping it stops whatever is still running.
#[derive(Default)]
pub struct RunClusters {
    pub redis: Option<LocalRedisCluster>,
    pub rabbitmq: Option<LocalRabbitCluster>,
    pub endpoints: Endpoints,
    /// Folders of clusters being started, so an interrupted start can still be cleaned up.
    starting: Vec<(&'static str, PathBuf)>,
    /// Folders of every local cluster of the run.
    dirs: Vec<PathBuf>,
    /// Kills the local clusters if this process dies without stopping them; disarmed once
    /// `stop_blocking` has stopped them.
    watchdog: Option<Watchdog>,
}

fn say(quiet: bool) -> impl Fn(&str) + Send + Sync {
    move |line: &str| {
        if !quiet {
            crate::errln!("  {line}");
        }
    }
}

impl RunClusters {
    /// Start (or locate) every cluster the scenario's backends need.
    pub async fn start(
        s: &Scenario,
        run_dir: &Path,
        opts: &RunOptions,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Self, RunError> {
        let quiet = opts.quiet;
        let mut me = RunClusters::default();
        let progress = say(quiet);
        let local_redis =
            s.backends.iter().any(|b| b.is_redis()) && s.clusters.redis.mode == ClusterMode::Local;
        let local_rabbit = s.backends.iter().any(|b| !b.is_redis())
            && s.clusters.rabbitmq.mode == ClusterMode::Local;
        if let (true, Some(exe)) = (local_redis || local_rabbit, &opts.watchdog_exe) {
            me.watchdog = Some(Watchdog::spawn(exe, run_dir)?);
        }
        if s.backends.iter().any(|b| b.is_redis()) {
            let sec = &s.clusters.redis;
            match sec.mode {
                ClusterMode::External => me.endpoints.redis = sec.nodes.clone(),
                ClusterMode::Local => {
                    let dir = run_dir.join("clusters").join("redis");
                    if !quiet {
                        crate::errln!(
                            "starting a local Redis Cluster (3 masters + 3 replicas) in {}",
                            dir.display()
                        );
                    }
                    me.own(&dir, run_dir)?;
                    me.starting.push(("redis", dir.clone()));
                    let up = LocalRedisCluster::up(
                        RedisClusterConfig::from_section(dir, sec),
                        &progress,
                    );
                    let cluster = tokio::select! {
                        r = up => r?,
                        _ = cancel.changed() => return Err(RunError::Interrupted),
                    };
                    me.starting.pop();
                    me.endpoints.redis = cluster.seeds();
                    me.redis = Some(cluster);
                }
            }
        }
        if s.backends.iter().any(|b| !b.is_redis()) {
            let sec = &s.clusters.rabbitmq;
            match sec.mode {
                ClusterMode::External => {
                    me.endpoints.rabbitmq = external_rabbit(&sec.amqp_uris, &sec.http).await?
                }
                ClusterMode::Local => {
                    let dir = run_dir.join("clusters").join("rabbitmq");
                    if !quiet {
                        crate::errln!(
                            "starting a local 3-node RabbitMQ cluster in {} (about 30 s)",
                            dir.display()
                        );
                    }
                    me.own(&dir, run_dir)?;
                    me.starting.push(("rabbitmq", dir.clone()));
                    let up = LocalRabbitCluster::up(
                        RabbitClusterConfig::from_section(dir, sec),
                        &progress,
                    );
                    let cluster = tokio::select! {
                        r = up => r?,
                        _ = cancel.changed() => return Err(RunError::Interrupted),
                    };
                    me.starting.pop();
                    me.endpoints.rabbitmq = cluster.endpoints();
                    me.rabbitmq = Some(cluster);
                }
            }
        }
        Ok(me)
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

    /// What the fault runner may do to the cluster a backend runs on (None: not ours).
    pub fn control_for(&mut self, spec: &BackendSpec) -> Option<&mut (dyn NodeControl + 'static)> {
        if spec.is_redis() {
            self.redis
                .as_mut()
                .map(|c| c as &mut (dyn NodeControl + 'static))
        } else {
            self.rabbitmq
                .as_mut()
                .map(|c| c as &mut (dyn NodeControl + 'static))
        }
    }

    /// Stop every local cluster (blocking; also used by Drop).
    pub fn stop_blocking(&mut self) {
        if let Some(c) = self.redis.take() {
            c.down_blocking();
        }
        if let Some(c) = self.rabbitmq.take() {
            c.down_blocking();
        }
        // A start that was interrupted recorded its processes in its folder's state file.
        for (kind, dir) in self.starting.drain(..) {
            match kind {
                "redis" => {
                    if let Ok(c) = LocalRedisCluster::attach(&dir) {
                        c.down_blocking();
                    }
                }
                _ => {
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
            let v = MgmtClient::new(&http)
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
