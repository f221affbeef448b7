//! Settings of a local RabbitMQ cluster and the node layout they imply: names, ports, folders,
//! and the plan of every port the cluster listens on.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::LOG_LINES;
use crate::cluster::netns::{ClusterNet, NetworkMode};
use crate::cluster::process::OwnedProcess;
use crate::cluster::{log_tail, ClusterError};
use crate::scenario::RabbitClusterSection;

/// Where the Debian package puts the RabbitMQ scripts (run directly, not the /usr/sbin wrappers).
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/rabbitmq/bin";
/// Number of ports, after the nodes' distribution ports, that `rabbitmqctl` may use for its own
/// (short-lived) distribution listener.
const CLI_DIST_PORTS: u16 = 7;

/// Settings of a local RabbitMQ cluster. Node N (1-based) uses `<base port> + N - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RabbitClusterConfig {
    /// Cluster folder (node folders, shared HOME, state file).
    pub dir: PathBuf,
    /// Number of nodes (3).
    pub nodes: usize,
    pub amqp_base_port: u16,
    pub http_base_port: u16,
    pub stream_base_port: u16,
    pub prometheus_base_port: u16,
    pub dist_base_port: u16,
    /// Port of the cluster's own epmd.
    pub epmd_port: u16,
    /// Folder with `rabbitmq-server` and `rabbitmqctl`.
    pub bin_dir: PathBuf,
    /// Erlang's net_ticktime (s): failure detection of a node that stops answering.
    #[serde(default = "default_net_ticktime")]
    pub net_ticktime_s: u32,
    /// A broker root to run RabbitMQ, Erlang and epmd from (through chroot; `bin_dir` is then a
    /// folder inside the root), or None for the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// The user the nodes create at first boot (`default_user`) and the clients connect as.
    #[serde(default = "guest")]
    pub username: String,
    #[serde(default = "guest")]
    pub password: String,
    /// Loopback, or a network namespace per node (`crate::cluster::netns`).
    #[serde(default)]
    pub network: NetworkMode,
}

fn guest() -> String {
    "guest".to_string()
}

/// brokerbench's clusters detect a frozen node within about 12 s (RabbitMQ's default is 60).
pub const DEFAULT_NET_TICKTIME_S: u32 = 10;

fn default_net_ticktime() -> u32 {
    DEFAULT_NET_TICKTIME_S
}

impl RabbitClusterConfig {
    /// Three nodes with the ports of the scenario's `clusters.rabbitmq` section.
    pub fn from_section(dir: PathBuf, s: &RabbitClusterSection) -> Self {
        RabbitClusterConfig {
            dir,
            nodes: 3,
            amqp_base_port: s.amqp_base_port,
            http_base_port: s.http_base_port,
            stream_base_port: s.stream_base_port,
            prometheus_base_port: s.prometheus_base_port,
            dist_base_port: s.dist_base_port,
            epmd_port: s.epmd_port,
            bin_dir: PathBuf::from(DEFAULT_BIN_DIR),
            net_ticktime_s: s.net_ticktime_s,
            root: s
                .broker_root
                .as_ref()
                .map(crate::cluster::broker_root::root_dir),
            username: s.username.clone(),
            password: s.password.clone(),
            network: s.network,
        }
    }

    /// The namespaces and links of `network = "namespaces"` (None on loopback); named after
    /// the AMQP port of node 1.
    pub fn net(&self) -> Option<ClusterNet> {
        (self.network == NetworkMode::Namespaces)
            .then(|| ClusterNet::plan(self.amqp_base_port, self.nodes))
    }

    /// The address node `index` listens on: 127.0.0.1, or its namespace's.
    pub fn host_of(&self, index: usize) -> String {
        self.net()
            .and_then(|n| n.nodes.get(index).map(|x| x.addr.to_string()))
            .unwrap_or_else(|| "127.0.0.1".to_string())
    }

    /// Erlang node name of node `index`: `rabbit<index+1>@localhost` on loopback, a long name
    /// on its namespace's address (`rabbit1@10.251.X.10`) in namespaces.
    pub fn node_name_of(&self, index: usize) -> String {
        match self.network {
            NetworkMode::Loopback => Self::node_name(index),
            NetworkMode::Namespaces => format!("rabbit{}@{}", index + 1, self.host_of(index)),
        }
    }

    /// Who the clients and the management API client connect as.
    pub fn credentials(&self) -> crate::cluster::rabbitmq::http::Credentials {
        crate::cluster::rabbitmq::http::Credentials {
            user: self.username.clone(),
            password: self.password.clone(),
        }
    }

    /// Erlang node name of node `index` (0-based): `rabbit<index+1>@localhost`.
    pub fn node_name(index: usize) -> String {
        format!("rabbit{}@localhost", index + 1)
    }

    /// The node layout (names, ports, folders), without processes.
    pub fn layout(&self) -> Result<Vec<RabbitNode>, ClusterError> {
        (0..self.nodes)
            .map(|index| {
                Ok(RabbitNode {
                    index,
                    name: self.node_name_of(index),
                    host: self.host_of(index),
                    amqp_port: self.port(self.amqp_base_port, index, "amqp_base_port")?,
                    http_port: self.port(self.http_base_port, index, "http_base_port")?,
                    stream_port: self.port(self.stream_base_port, index, "stream_base_port")?,
                    prometheus_port: self.port(
                        self.prometheus_base_port,
                        index,
                        "prometheus_base_port",
                    )?,
                    dist_port: self.port(self.dist_base_port, index, "dist_base_port")?,
                    dir: self.dir.join(format!("rabbit{}", index + 1)),
                    process: None,
                })
            })
            .collect()
    }

    fn port(&self, base: u16, index: usize, field: &str) -> Result<u16, ClusterError> {
        u16::try_from(base as usize + index).map_err(|_| ClusterError::State {
            dir: self.dir.clone(),
            message: format!(
                "clusters.rabbitmq.{field} = {base} leaves no room for {} nodes; lower it",
                self.nodes
            ),
        })
    }

    /// Range of ports `rabbitmqctl` may listen on (right after the nodes' distribution ports).
    pub fn cli_dist_ports(&self) -> (u16, u16) {
        let min = self.dist_base_port.saturating_add(self.nodes as u16);
        (min, min.saturating_add(CLI_DIST_PORTS - 1))
    }

    /// Every port the cluster listens on: (port, what it is for, config field).
    pub fn port_plan(&self) -> Result<Vec<PortUse>, ClusterError> {
        let mut plan = Vec::new();
        for n in self.layout()? {
            let name = &n.name;
            plan.push(PortUse {
                port: n.amqp_port,
                what: format!("AMQP of {name}"),
                field: "amqp_base_port",
            });
            plan.push(PortUse {
                port: n.http_port,
                what: format!("management HTTP of {name}"),
                field: "http_base_port",
            });
            plan.push(PortUse {
                port: n.stream_port,
                what: format!("stream protocol of {name}"),
                field: "stream_base_port",
            });
            plan.push(PortUse {
                port: n.prometheus_port,
                what: format!("prometheus of {name}"),
                field: "prometheus_base_port",
            });
            plan.push(PortUse {
                port: n.dist_port,
                what: format!("Erlang distribution of {name}"),
                field: "dist_base_port",
            });
        }
        plan.push(PortUse {
            port: self.epmd_port,
            what: "the cluster's epmd".to_string(),
            field: "epmd_port",
        });
        let mut seen: HashMap<u16, &PortUse> = HashMap::new();
        for p in &plan {
            if let Some(other) = seen.insert(p.port, p) {
                return Err(ClusterError::State {
                    dir: self.dir.clone(),
                    message: format!(
                        "port {} is configured both for {} and for {}; change clusters.rabbitmq.{} or clusters.rabbitmq.{}",
                        p.port, other.what, p.what, other.field, p.field
                    ),
                });
            }
        }
        Ok(plan)
    }
}

/// One port of the cluster and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortUse {
    pub port: u16,
    pub what: String,
    /// Field of `clusters.rabbitmq` that sets it.
    pub field: &'static str,
}

/// One node of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RabbitNode {
    /// 0-based.
    pub index: usize,
    /// `rabbit<index+1>@localhost` (namespaces: `rabbit<index+1>@<host>`)
    pub name: String,
    /// The address its listeners use: 127.0.0.1, or its namespace's.
    #[serde(default = "loopback")]
    pub host: String,
    pub amqp_port: u16,
    pub http_port: u16,
    pub stream_port: u16,
    pub prometheus_port: u16,
    pub dist_port: u16,
    /// `<cluster dir>/rabbit<index+1>`
    pub dir: PathBuf,
    /// The node's beam.smp, if started (None after `kill_node`).
    pub process: Option<OwnedProcess>,
}

fn loopback() -> String {
    "127.0.0.1".to_string()
}

impl RabbitNode {
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("rabbit.pid")
    }
    pub fn mnesia_base(&self) -> PathBuf {
        self.dir.join("mnesia")
    }
    pub fn log_base(&self) -> PathBuf {
        self.dir.join("log")
    }
    /// The node's main log file.
    pub fn log_file(&self) -> PathBuf {
        self.log_base().join(format!("{}.log", self.name))
    }
    /// stdout/stderr of `rabbitmq-server` (early boot errors land here).
    pub fn console_file(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// Text in /proc/<pid>/environ of this node's beam only.
    pub fn marker(&self) -> String {
        format!("RABBITMQ_MNESIA_BASE={}", self.mnesia_base().display())
    }
    pub(super) fn short_name(&self) -> &str {
        self.name.split('@').next().unwrap_or(&self.name)
    }
    pub(super) fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| p.is_running())
    }
    /// The last lines of the node's log (or of its console output if the log is empty).
    pub fn log_tail(&self) -> String {
        let tail = log_tail(&self.log_file(), LOG_LINES);
        if tail.trim().is_empty() {
            log_tail(&self.console_file(), LOG_LINES)
        } else {
            tail
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rabbitmq::test_config as cfg;

    #[test]
    fn from_section_uses_the_section_ports() {
        let s = RabbitClusterSection::default();
        let c = RabbitClusterConfig::from_section(PathBuf::from("/x"), &s);
        assert_eq!(c.nodes, 3);
        assert_eq!(c.amqp_base_port, s.amqp_base_port);
        assert_eq!(c.epmd_port, s.epmd_port);
        assert_eq!(c.bin_dir, PathBuf::from("/usr/lib/rabbitmq/bin"));
    }

    #[test]
    fn port_layout_is_base_plus_index() {
        let nodes = cfg().layout().expect("layout");
        assert_eq!(nodes.len(), 3);
        let n = &nodes[2];
        assert_eq!(n.index, 2);
        assert_eq!(n.name, "rabbit3@localhost");
        assert_eq!(
            (
                n.amqp_port,
                n.http_port,
                n.stream_port,
                n.prometheus_port,
                n.dist_port
            ),
            (5702, 15702, 5712, 15712, 25702)
        );
        assert_eq!(n.dir, PathBuf::from("/tmp/bb/rabbit3"));
        assert_eq!(n.marker(), "RABBITMQ_MNESIA_BASE=/tmp/bb/rabbit3/mnesia");
        let plan = cfg().port_plan().expect("plan");
        assert_eq!(plan.len(), 16);
        assert!(plan
            .iter()
            .any(|p| p.port == 4400 && p.field == "epmd_port"));
        assert_eq!(cfg().cli_dist_ports(), (25703, 25709));
    }

    #[test]
    fn overlapping_or_overflowing_ports_are_refused() {
        let mut c = cfg();
        c.stream_base_port = 5701;
        let e = c.port_plan().expect_err("overlap");
        assert!(e.to_string().contains("port 5701"), "{e}");
        let mut c = cfg();
        c.dist_base_port = 65534;
        assert!(c.layout().is_err());
    }
}
