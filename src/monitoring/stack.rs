//! The monitoring stack as local processes beside the clusters: Debian's `prometheus` and one
//! `prometheus-redis-exporter` per Redis node, started in a folder of their own (its
//! prometheus.yml, Prometheus's data, each process's log) and stopped by pid like the brokers.
//!
//! The folder's state file (`monitoring.json`) records every process with its marker
//! (`BROKERBENCH_MONITORING=<folder>` in its environment), so `brokerbench monitoring down`,
//! a run's watchdog and a later run that finds one of the ports taken
//! (`cluster::leftovers`) stop exactly these processes. A run writes its owner file there too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::{prometheus_yml, Targets};
use crate::cluster::leftovers::free_port;
use crate::cluster::process::{find_binary, in_new_session, wait_until, OwnedProcess};
use crate::cluster::ClusterError;

/// The state file of a monitoring folder.
pub const STATE_FILE: &str = "monitoring.json";
pub const PROMETHEUS_BIN: &str = "prometheus";
pub const REDIS_EXPORTER_BIN: &str = "prometheus-redis-exporter";
/// How long Prometheus and the exporters may take to answer.
const READY_WAIT: Duration = Duration::from_secs(30);
/// How long a process may take to stop on SIGTERM (Prometheus writes its head block).
const STOP_GRACE: Duration = Duration::from_secs(10);
const INSTALL: &str = "install Debian's prometheus and prometheus-redis-exporter: \
    apt-get install prometheus prometheus-redis-exporter (make deps does)";

/// A running stack, as its state file records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitoringStack {
    pub dir: PathBuf,
    pub prometheus_port: u16,
    /// (name, process): "prometheus", "redis-exporter-<port>".
    pub processes: Vec<(String, OwnedProcess)>,
}

impl MonitoringStack {
    /// The marker every process of the stack in `dir` carries.
    pub fn marker_of(dir: &Path) -> String {
        format!("BROKERBENCH_MONITORING={}", dir.display())
    }

    pub fn markers(&self) -> Vec<String> {
        vec![Self::marker_of(&self.dir)]
    }

    pub fn process_list(&self) -> Vec<OwnedProcess> {
        self.processes.iter().map(|(_, p)| p.clone()).collect()
    }

    /// Prometheus's HTTP API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.prometheus_port)
    }

    /// Start the exporters and Prometheus for `targets` in `dir` (created; an absolute path is
    /// recorded) and wait until each answers. Ports held by a leftover of a dead run are freed;
    /// any other holder is an error naming it.
    pub async fn up(dir: &Path, targets: &Targets) -> Result<Self, ClusterError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ClusterError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let missing = |bin: &str| ClusterError::State {
            dir: dir.clone(),
            message: format!("`{bin}` is not on PATH; {INSTALL}"),
        };
        let prometheus = find_binary(PROMETHEUS_BIN).ok_or_else(|| missing(PROMETHEUS_BIN))?;
        let exporter = if targets.redis.is_empty() {
            None
        } else {
            Some(find_binary(REDIS_EXPORTER_BIN).ok_or_else(|| missing(REDIS_EXPORTER_BIN))?)
        };
        let fix = "choose other ports ([monitoring] prometheus_port, redis_exporter_base_port)";
        free_port(targets.prometheus_port, "Prometheus".into(), fix.into()).await?;
        for e in &targets.redis {
            let what = format!("the redis_exporter of {}", e.node);
            free_port(e.port, what, fix.into()).await?;
        }
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, prometheus_yml(targets)).map_err(io(&config))?;
        let mut stack = MonitoringStack {
            dir: dir.clone(),
            prometheus_port: targets.prometheus_port,
            processes: Vec::new(),
        };
        // Recorded after each start, so that a failure part-way leaves a state file to stop by.
        if let Some(bin) = &exporter {
            for e in &targets.redis {
                let args = vec![
                    format!("-redis.addr=redis://{}", e.node),
                    format!("-web.listen-address=127.0.0.1:{}", e.port),
                ];
                let name = format!("redis-exporter-{}", e.port);
                let p = stack.spawn(bin, &args, &name)?;
                stack.processes.push((name, p));
                stack.save()?;
            }
        }
        let data = dir.join("prometheus-data");
        let args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{}", targets.prometheus_port),
            "--storage.tsdb.retention.time=30d".to_string(),
        ];
        let p = stack.spawn(&prometheus, &args, "prometheus")?;
        stack.processes.push(("prometheus".into(), p));
        stack.save()?;
        let mut ready = vec![(format!("{}/-/ready", stack.url()), "prometheus".to_string())];
        for e in &targets.redis {
            let url = format!("http://127.0.0.1:{}/metrics", e.port);
            ready.push((url, format!("redis-exporter-{}", e.port)));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| stack.failed(format!("cannot build an HTTP client: {e}")))?;
        for (url, name) in ready {
            let answered =
                wait_until(READY_WAIT, Duration::from_millis(100), || {
                    let (http, url) = (http.clone(), url.clone());
                    async move {
                        matches!(http.get(&url).send().await, Ok(r) if r.status().is_success())
                    }
                })
                .await;
            if !answered {
                return Err(ClusterError::Timeout {
                    what: format!("{name} to answer on {url}"),
                    waited_s: READY_WAIT.as_secs_f64(),
                    detail: tail(&stack.dir.join(format!("{name}.log"))),
                });
            }
        }
        // Prometheus hands its targets to the scrape loops a few seconds after it is ready
        // (its discovery updates are throttled): wait for a first scrape of each, so the run's
        // series start with it.
        let targets_n = targets.redis.len()
            + targets.rabbitmq.len()
            + usize::from(targets.brokerbench.is_some());
        let url = format!("{}/api/v1/query", stack.url());
        let scraped = wait_until(READY_WAIT, Duration::from_millis(100), || {
            let (http, url) = (http.clone(), url.clone());
            async move { scraped_targets(&http, &url).await >= targets_n }
        })
        .await;
        if !scraped {
            return Err(ClusterError::Timeout {
                what: format!("Prometheus to scrape its {targets_n} targets once"),
                waited_s: READY_WAIT.as_secs_f64(),
                detail: tail(&stack.dir.join("prometheus.log")),
            });
        }
        Ok(stack)
    }

    /// `bin args` in a session of its own, in the stack's folder, with its marker; its output
    /// in `<name>.log`. A thread reaps it when it exits.
    fn spawn(&self, bin: &Path, args: &[String], name: &str) -> Result<OwnedProcess, ClusterError> {
        let log = self.dir.join(format!("{name}.log"));
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(|source| ClusterError::Io {
                    path: log.clone(),
                    source,
                })
        };
        let marker = Self::marker_of(&self.dir);
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(&self.dir)
            .env("BROKERBENCH_MONITORING", self.dir.as_os_str())
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?);
        in_new_session(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| self.failed(format!("cannot start {}: {e}", bin.display())))?;
        let p = OwnedProcess {
            pid: child.id(),
            marker,
        };
        let _ = std::thread::Builder::new()
            .name(format!("reap-{name}"))
            .spawn(move || {
                let _ = child.wait();
            });
        Ok(p)
    }

    fn failed(&self, message: String) -> ClusterError {
        ClusterError::State {
            dir: self.dir.clone(),
            message,
        }
    }

    fn save(&self) -> Result<(), ClusterError> {
        let path = self.dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| self.failed(format!("cannot encode {STATE_FILE}: {e}")))?;
        std::fs::write(&path, text).map_err(|source| ClusterError::Io { path, source })
    }

    /// The stack recorded in `dir`.
    pub fn attach(dir: &Path) -> Result<Self, ClusterError> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ClusterError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ClusterError::State {
            dir: dir.to_path_buf(),
            message: format!("{STATE_FILE} is not a monitoring stack's: {e}"),
        })
    }

    /// Stop every process (SIGTERM, SIGKILL after a grace period), in parallel, and remove the
    /// state file once none is left running. Returns the names of those still running.
    pub fn down_blocking(&self) -> Vec<String> {
        std::thread::scope(|s| {
            for (_, p) in &self.processes {
                s.spawn(move || p.stop_blocking(STOP_GRACE));
            }
        });
        let left: Vec<String> = self
            .processes
            .iter()
            .filter(|(_, p)| p.is_running())
            .map(|(n, _)| n.clone())
            .collect();
        if left.is_empty() {
            let _ = std::fs::remove_file(self.dir.join(STATE_FILE));
        }
        left
    }

    pub async fn down(self) -> Vec<String> {
        tokio::task::spawn_blocking(move || self.down_blocking())
            .await
            .unwrap_or_default()
    }
}

/// How many targets Prometheus has scraped at least once (`count(up)`; 0 if it cannot tell).
async fn scraped_targets(http: &reqwest::Client, url: &str) -> usize {
    let asked = http.get(url).query(&[("query", "count(up)")]).send();
    let Ok(answer) = asked.await else { return 0 };
    let Ok(v) = answer.json::<serde_json::Value>().await else {
        return 0;
    };
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The last lines of a log, for an error.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(5);
    if lines.is_empty() {
        String::new()
    } else {
        format!("{}:\n{}", path.display(), lines[start..].join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::leftovers::{kill_cluster, known_cluster};
    use crate::cluster::port_holder::LauncherKind;

    /// A stack's folder is known to the leftovers' code (the watchdog, a later run on its
    /// ports): its processes are killed by pid and marker, and its state file goes.
    #[test]
    fn a_stack_folder_is_a_known_cluster_that_can_be_killed() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let child = Command::new("sleep")
            .arg("30")
            .env("BROKERBENCH_MONITORING", &dir)
            .spawn()
            .expect("sleep");
        let p = OwnedProcess {
            pid: child.id(),
            marker: MonitoringStack::marker_of(&dir),
        };
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let start = std::time::Instant::now();
        while !p.is_running() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let stack = MonitoringStack {
            dir: dir.clone(),
            prometheus_port: 9629,
            processes: vec![("prometheus".into(), p.clone())],
        };
        stack.save().expect("state file");
        let known = known_cluster(&dir).expect("a known folder");
        assert_eq!(known.kind, LauncherKind::Monitoring);
        assert_eq!(known.running_pids(), vec![p.pid]);
        assert_eq!(kill_cluster(&known, None), vec![p.pid]);
        assert!(!p.is_running());
        assert!(!dir.join(STATE_FILE).exists());
        assert!(LauncherKind::Monitoring
            .down_command(&dir)
            .starts_with("brokerbench monitoring down"));
    }
}
