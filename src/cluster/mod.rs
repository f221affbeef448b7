//! Cluster launchers: start brokers as local processes (default), stop exactly what they
//! started, kill and restart single nodes for fault runs. Broker clients live in `backend`.

pub mod broker_root;
pub mod endpoints;
pub mod leftovers;
pub mod netns;
pub mod port_holder;
pub mod process;
pub mod rabbitmq;
pub mod redis;
pub mod version;

use std::path::PathBuf;

/// Errors of the launchers, each carrying the node, port, file or command involved and a fix.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("`{binary}` was not found; {fix}")]
    MissingBinary { binary: String, fix: String },
    #[error("port {port} on 127.0.0.1, needed for {what}, is already in use by {holder}; {fix}")]
    PortInUse {
        port: u16,
        what: String,
        /// Who holds it: pid and command line, or which brokerbench cluster.
        holder: String,
        fix: String,
    },
    #[error("node {node}: {message}{}", tail_suffix(.log_tail))]
    Node {
        node: String,
        message: String,
        log_tail: String,
    },
    #[error("{}: {message}", .dir.display())]
    State { dir: PathBuf, message: String },
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("timed out after {waited_s:.0}s waiting for {what}{}", tail_suffix(.detail))]
    Timeout {
        what: String,
        waited_s: f64,
        detail: String,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- last lines of the log ---\n{}", tail.trim_end())
    }
}

/// The last `n` lines of a text file ("" if unreadable).
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(_) => String::new(),
    }
}

/// Reports progress while a cluster starts (a line per step).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);
