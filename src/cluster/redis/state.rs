//! The state file `<dir>/cluster.json`: what the launcher started, written as soon as each process
//! exists, read back by `attach`, removed by `down` once every process is gone.

use std::fs;
use std::path::{Path, PathBuf};

use super::LocalRedisCluster;
use crate::cluster::process::OwnedProcess;
use crate::cluster::ClusterError;

/// Name of the state file inside the cluster folder.
pub const STATE_FILE: &str = "cluster.json";
/// The state file's `kind`.
pub(super) const KIND: &str = "redis";

impl LocalRedisCluster {
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

    fn state_path(&self) -> PathBuf {
        self.config.dir.join(STATE_FILE)
    }

    pub(super) fn state_error(&self, message: impl Into<String>) -> ClusterError {
        ClusterError::State {
            dir: self.config.dir.clone(),
            message: message.into(),
        }
    }

    pub(super) fn finish_down(
        &self,
        survivors: Vec<(String, OwnedProcess)>,
    ) -> Result<(), ClusterError> {
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
        if let Some(net) = &self.net {
            let left = net.remove();
            if !left.is_empty() {
                return Err(self.state_error(format!(
                    "could not remove the network {} ({}); {STATE_FILE} is kept, `ip link del` \
                     and `ip netns del` remove them",
                    net.bridge,
                    left.join(", ")
                )));
            }
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
    pub(super) fn save_state(&self) -> Result<(), ClusterError> {
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
    pub(super) fn check_previous_state(&self) -> Result<(), ClusterError> {
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
}

#[cfg(test)]
mod tests {
    use super::super::config::plan_nodes;
    use super::super::config::tests::config;
    use super::*;

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
            net: None,
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
