//! [`RedisNode`]: one node's port, folder and files, and the process running it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{BUS_OFFSET, HOST};
use crate::cluster::process::OwnedProcess;
use crate::cluster::{log_tail, ClusterError};

const LOG_LINES: usize = 20;

/// One node of the cluster and the process currently running it (None: not running).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisNode {
    pub index: usize,
    /// The address it listens on: 127.0.0.1, or its namespace's (`network = "namespaces"`).
    #[serde(default = "loopback")]
    pub host: String,
    pub port: u16,
    /// The node's folder `<dir>/node-<port>/`.
    pub dir: PathBuf,
    pub process: Option<OwnedProcess>,
}

fn loopback() -> String {
    HOST.to_string()
}

impl RedisNode {
    /// "host:port", e.g. "127.0.0.1:7001".
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    pub(super) fn stderr_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    pub(super) fn bus_port(&self) -> u16 {
        // `up` checked that every bus port fits in a u16.
        u16::try_from(u32::from(self.port) + BUS_OFFSET).unwrap_or(u16::MAX)
    }

    /// What identifies the node's process in /proc/PID/cmdline: its absolute config path.
    pub(super) fn marker(&self) -> String {
        self.conf_path().display().to_string()
    }

    /// The last lines of the node's log, and of its stderr if the process wrote there.
    pub(super) fn log_tail(&self) -> String {
        let mut tail = String::new();
        for (path, lines) in [(self.log_path(), LOG_LINES), (self.stderr_path(), 10)] {
            let t = log_tail(&path, lines);
            if !t.trim().is_empty() {
                tail.push_str(&format!("[{}]\n{}\n", path.display(), t.trim_end()));
            }
        }
        tail
    }

    pub(super) fn error(&self, message: impl Into<String>) -> ClusterError {
        ClusterError::Node {
            node: self.address(),
            message: message.into(),
            log_tail: self.log_tail(),
        }
    }

    /// Whether the node is meant to run: Ok(false) if no process is recorded, an error if the
    /// recorded process died although nobody killed it.
    pub(super) fn expected_running(&self) -> Result<bool, ClusterError> {
        match &self.process {
            None => Ok(false),
            Some(p) if p.is_running() => Ok(true),
            Some(p) => {
                Err(self.error(format!("redis-server (pid {}) is no longer running", p.pid)))
            }
        }
    }
}
