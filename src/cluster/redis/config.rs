//! What `LocalRedisCluster::up` starts: [`RedisClusterConfig`], the nodes it describes and each
//! node's redis.conf.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{RedisNode, BUS_OFFSET, HOST};
use crate::cluster::netns::{ClusterNet, NetworkMode};
use crate::cluster::ClusterError;
use crate::scenario::{AppendFsync, RedisClusterSection};

/// What `LocalRedisCluster::up` starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisClusterConfig {
    /// The cluster folder: state file and one folder per node.
    pub dir: PathBuf,
    /// Node i listens on base_port + i, its cluster bus on base_port + i + 10000.
    pub base_port: u16,
    pub masters: usize,
    pub replicas_per_master: usize,
    pub node_timeout_ms: u64,
    pub appendonly: bool,
    pub appendfsync: AppendFsync,
    /// RDB snapshot rule as in redis.conf's `save` ("" for none).
    pub save: String,
    /// Binary name (looked up on PATH) or path; default "redis-server".
    pub redis_server: String,
    /// Binary name (looked up on PATH) or path; default "redis-cli".
    pub redis_cli: String,
    /// A broker root to run `redis_server` and `redis_cli` from (through chroot; names are
    /// looked up in the root's bin folders), or None for the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Loopback, or a network namespace per node (`crate::cluster::netns`).
    #[serde(default)]
    pub network: NetworkMode,
}

impl RedisClusterConfig {
    /// 3 masters with 1 replica each, settings from the scenario's `clusters.redis` section.
    pub fn from_section(dir: PathBuf, s: &RedisClusterSection) -> Self {
        RedisClusterConfig {
            dir,
            base_port: s.base_port,
            masters: 3,
            replicas_per_master: 1,
            node_timeout_ms: s.node_timeout_ms,
            appendonly: s.appendonly,
            appendfsync: s.appendfsync,
            save: s.save.clone(),
            redis_server: "redis-server".into(),
            redis_cli: "redis-cli".into(),
            root: s
                .broker_root
                .as_ref()
                .map(crate::cluster::broker_root::root_dir),
            network: s.network,
        }
    }

    /// Number of nodes: masters and their replicas.
    pub fn node_count(&self) -> usize {
        self.masters
            .saturating_mul(self.replicas_per_master.saturating_add(1))
    }

    /// Limit for a restarted node, or a cluster after a change, to settle.
    pub(super) fn settle_timeout(&self) -> Duration {
        Duration::from_secs(30).max(Duration::from_millis(
            self.node_timeout_ms.saturating_mul(10),
        ))
    }
}

/// The nodes `cfg` describes, after checking the counts and that every port fits.
pub(super) fn plan_nodes(cfg: &RedisClusterConfig) -> Result<Vec<RedisNode>, ClusterError> {
    let state = |message: String| ClusterError::State {
        dir: cfg.dir.clone(),
        message,
    };
    if cfg.masters < 3 {
        return Err(state(format!(
            "a Redis Cluster needs at least 3 masters, got {}",
            cfg.masters
        )));
    }
    let count = cfg.node_count();
    let last_bus = u64::from(cfg.base_port) + count as u64 - 1 + u64::from(BUS_OFFSET);
    if cfg.base_port == 0 || last_bus > u64::from(u16::MAX) {
        return Err(state(format!(
            "base_port {} does not fit {count} nodes and their cluster bus ports (port + {BUS_OFFSET} must stay <= 65535)",
            cfg.base_port
        )));
    }
    let net = network_plan(cfg);
    Ok((0..count)
        .map(|index| {
            let port = cfg.base_port + index as u16;
            let host = net
                .as_ref()
                .and_then(|n| n.nodes.get(index))
                .map_or_else(|| HOST.to_string(), |n| n.addr.to_string());
            RedisNode {
                index,
                host,
                port,
                dir: cfg.dir.join(format!("node-{port}")),
                process: None,
            }
        })
        .collect())
}

/// The namespaces and links of `network = "namespaces"` (None on loopback).
pub(super) fn network_plan(cfg: &RedisClusterConfig) -> Option<ClusterNet> {
    (cfg.network == NetworkMode::Namespaces)
        .then(|| ClusterNet::plan(cfg.base_port, cfg.node_count()))
}

/// A redis.conf value in double quotes, as Redis's config parser reads it.
pub(super) fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(super) fn render_conf(cfg: &RedisClusterConfig, node: &RedisNode) -> String {
    let path = |p: PathBuf| quote(&p.display().to_string());
    [
        format!(
            "# written by brokerbench: Redis Cluster node {} of {}",
            node.index,
            cfg.node_count()
        ),
        format!("bind {}", node.host),
        format!("cluster-announce-ip {}", node.host),
        format!("port {}", node.port),
        "protected-mode no".into(),
        "daemonize no".into(),
        format!("dir {}", path(node.dir.clone())),
        format!("pidfile {}", path(node.dir.join("redis.pid"))),
        format!("logfile {}", path(node.log_path())),
        "cluster-enabled yes".into(),
        format!("cluster-config-file nodes-{}.conf", node.port),
        format!("cluster-node-timeout {}", cfg.node_timeout_ms),
        format!("appendonly {}", if cfg.appendonly { "yes" } else { "no" }),
        format!("appendfsync {}", cfg.appendfsync.as_str()),
        format!("save {}", quote(&cfg.save)),
        "repl-diskless-sync-delay 0".into(),
        "proc-title-template \"{title} {listen-addr} {server-mode} {config-file}\"".into(),
    ]
    .join("\n")
        + "\n"
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::cluster::redis) fn config(dir: &str) -> RedisClusterConfig {
        let section = RedisClusterSection {
            base_port: 7101,
            save: "60 1000".into(),
            ..Default::default()
        };
        RedisClusterConfig::from_section(PathBuf::from(dir), &section)
    }

    #[test]
    fn config_from_section_and_node_plan() {
        let cfg = config("/tmp/bb \"x\"");
        assert_eq!(
            (cfg.masters, cfg.replicas_per_master, cfg.node_count()),
            (3, 1, 6)
        );
        assert_eq!(
            (cfg.node_timeout_ms, cfg.appendonly, cfg.appendfsync),
            (2000, true, AppendFsync::Everysec)
        );
        assert_eq!(
            (cfg.redis_server.as_str(), cfg.redis_cli.as_str()),
            ("redis-server", "redis-cli")
        );
        let nodes = plan_nodes(&cfg).unwrap_or_default();
        assert_eq!(
            nodes.iter().map(|n| n.port).collect::<Vec<_>>(),
            vec![7101, 7102, 7103, 7104, 7105, 7106]
        );
        assert_eq!(nodes[2].dir, PathBuf::from("/tmp/bb \"x\"/node-7103"));
        assert_eq!(nodes[2].bus_port(), 17103);
        assert_eq!(nodes[2].marker(), "/tmp/bb \"x\"/node-7103/redis.conf");

        let conf = render_conf(&cfg, &nodes[2]);
        for line in [
            "bind 127.0.0.1",
            "port 7103",
            "protected-mode no",
            "dir \"/tmp/bb \\\"x\\\"/node-7103\"",
            "pidfile \"/tmp/bb \\\"x\\\"/node-7103/redis.pid\"",
            "logfile \"/tmp/bb \\\"x\\\"/node-7103/redis.log\"",
            "cluster-enabled yes",
            "cluster-config-file nodes-7103.conf",
            "cluster-node-timeout 2000",
            "appendonly yes",
            "appendfsync everysec",
            "save \"60 1000\"",
            "repl-diskless-sync-delay 0",
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }
    }

    #[test]
    fn rejects_impossible_layouts() {
        let mut cfg = config("/tmp/x");
        cfg.masters = 2;
        assert!(matches!(plan_nodes(&cfg), Err(ClusterError::State { .. })));
        let mut cfg = config("/tmp/x");
        cfg.base_port = 55_531; // last bus port 65536
        assert!(matches!(plan_nodes(&cfg), Err(ClusterError::State { .. })));
        cfg.base_port = 55_530;
        assert!(plan_nodes(&cfg).is_ok());
    }
}
