//! The cluster's own epmd: finding the binary, starting it on `127.0.0.1:<epmd_port>`, and the
//! NAMES query that tells which nodes have registered with it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::launch::spawn_detached;
use super::{io_err, LocalRabbitCluster, INSTALL_FIX, LOG_LINES};
use crate::cluster::broker_root::{missing_in_root, BrokerRootDir};
use crate::cluster::netns::ClusterNet;
use crate::cluster::process::{find_binary, OwnedProcess};
use crate::cluster::{log_tail, ClusterError};

/// The variable naming the cluster folder in the environment of the cluster's epmd.
const EPMD_VAR: &str = "BROKERBENCH_RABBIT_EPMD";

/// `epmd` on PATH, else next to Erlang's `erl` (in the broker root if there is one: the path
/// inside it).
pub(super) fn find_epmd(root: Option<&BrokerRootDir>) -> Result<PathBuf, ClusterError> {
    if let Some(root) = root {
        return root
            .find_binary("epmd")
            .or_else(|| root.find_binary("/usr/lib/erlang/bin/epmd"))
            .ok_or_else(|| missing_in_root(root, "epmd"));
    }
    find_binary("epmd")
        .or_else(|| find_binary("/usr/lib/erlang/bin/epmd"))
        .ok_or_else(|| ClusterError::MissingBinary {
            binary: "epmd".to_string(),
            fix: INSTALL_FIX.to_string(),
        })
}

/// What the epmd of the cluster in `dir` carries in its environment.
pub(super) fn epmd_marker(dir: &Path) -> String {
    format!("{EPMD_VAR}={}", dir.display())
}

impl LocalRabbitCluster {
    /// Start the cluster's epmd on 127.0.0.1, or (network = "namespaces") one epmd per node in
    /// its namespace, on 127.0.0.1 and the node's address there; wait until each answers.
    pub(super) async fn start_epmd(
        &mut self,
        epmd_bin: &Path,
        root: Option<&BrokerRootDir>,
    ) -> Result<(), ClusterError> {
        let Some(net) = self.net.clone() else {
            let proc = self.spawn_epmd(epmd_bin, root, "127.0.0.1", None, "epmd.log")?;
            self.epmd = Some(proc.clone());
            self.write_state()?;
            return self
                .wait_epmd(epmd_bin, "127.0.0.1", &proc, "epmd.log")
                .await;
        };
        for i in 0..self.nodes.len() {
            let host = self.nodes[i].host.clone();
            let log = format!("epmd-{}.log", i + 1);
            let proc = self.spawn_epmd(
                epmd_bin,
                root,
                &format!("127.0.0.1,{host}"),
                Some((&net, i)),
                &log,
            )?;
            self.node_epmds.push(proc.clone());
            self.write_state()?;
            self.wait_epmd(epmd_bin, &host, &proc, &log).await?;
        }
        Ok(())
    }

    fn spawn_epmd(
        &self,
        epmd_bin: &Path,
        root: Option<&BrokerRootDir>,
        addresses: &str,
        net: Option<(&ClusterNet, usize)>,
        log: &str,
    ) -> Result<OwnedProcess, ClusterError> {
        let log_path = self.cfg.dir.join(log);
        let log = std::fs::File::create(&log_path).map_err(|e| io_err(&log_path, e))?;
        let log2 = log.try_clone().map_err(|e| io_err(&log_path, e))?;
        let marker = epmd_marker(&self.cfg.dir);
        let mut cmd = std::process::Command::new(epmd_bin);
        cmd.args([
            "-address",
            addresses,
            "-port",
            &self.cfg.epmd_port.to_string(),
        ])
        .env(EPMD_VAR, &self.cfg.dir)
        .env_remove("ERL_EPMD_PORT")
        .env_remove("ERL_EPMD_ADDRESS")
        .current_dir(&self.cfg.dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
        if let Some((net, i)) = net {
            net.enter(i, &mut cmd)?;
        }
        if let Some(root) = root {
            root.confine(&mut cmd, &[self.cfg.dir.as_path()], &self.cfg.dir)?;
        }
        spawn_detached(cmd, marker, &epmd_bin.display().to_string())
    }

    async fn wait_epmd(
        &self,
        epmd_bin: &Path,
        host: &str,
        proc: &OwnedProcess,
        log: &str,
    ) -> Result<(), ClusterError> {
        let log_path = self.cfg.dir.join(log);
        let port = self.cfg.epmd_port;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if epmd_names_at(host, port).await.is_ok() {
                return Ok(());
            }
            if !proc.is_running() {
                return Err(ClusterError::Command {
                    command: format!("{} -address {host} -port {port}", epmd_bin.display()),
                    message: format!(
                        "epmd exited at once: {}",
                        log_tail(&log_path, LOG_LINES).trim()
                    ),
                });
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!("epmd to listen on {host}:{port}"),
                    waited_s: 10.0,
                    detail: log_tail(&log_path, LOG_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Names registered with the epmd on 127.0.0.1:`port` (NAMES_REQ).
pub async fn epmd_names(port: u16) -> std::io::Result<Vec<String>> {
    epmd_names_at("127.0.0.1", port).await
}

/// Names registered with the epmd on `host`:`port` (NAMES_REQ).
pub async fn epmd_names_at(host: &str, port: u16) -> std::io::Result<Vec<String>> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect((host, port)).await?;
        s.write_all(&[0, 1, b'n']).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<Vec<u8>, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("epmd on port {port} did not answer"),
            )
        })??;
    parse_epmd_names(&buf).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("epmd on port {port}: short answer"),
        )
    })
}

/// Parse an epmd NAMES_RESP: a 4-byte port, then lines `name <name> at port <port>`.
fn parse_epmd_names(buf: &[u8]) -> Option<Vec<String>> {
    let text = String::from_utf8_lossy(buf.get(4..)?);
    Some(
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("name"))
                    .then(|| w.next().map(str::to_string))
                    .flatten()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epmd_names() {
        let mut buf = vec![0, 0, 0x11, 0x30];
        buf.extend_from_slice(
            b"name rabbit1 at port 25700\nname rabbitmqcli-1-rabbit1 at port 25703\n",
        );
        assert_eq!(
            parse_epmd_names(&buf),
            Some(vec![
                "rabbit1".to_string(),
                "rabbitmqcli-1-rabbit1".to_string()
            ])
        );
        assert_eq!(parse_epmd_names(&[0, 0, 0x11, 0x30]), Some(vec![]));
        assert_eq!(parse_epmd_names(&[0]), None);
    }
}
