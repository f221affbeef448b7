//! What `up` writes into the cluster folder (node folders, config files, the shared Erlang
//! cookie), and the environment that points a node, and every `rabbitmqctl` call for it, at
//! those files.

use std::path::{Path, PathBuf};

use super::{io_err, RabbitClusterConfig, RabbitNode};
use crate::cluster::ClusterError;

const ENABLED_PLUGINS: &str = "[rabbitmq_management,rabbitmq_stream,rabbitmq_prometheus].\n";

pub(super) fn remove_if_exists(path: &Path) -> Result<(), ClusterError> {
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(|e| io_err(path, e))
}

/// A cookie unique enough to keep two local clusters apart.
fn make_cookie(home: &Path) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for round in 0..4u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(home.as_os_str().as_encoded_bytes());
        h.write_u64(round);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        out.push_str(&format!("{:016X}", h.finish()));
    }
    out
}

pub(super) fn write_cookie(home: &Path) -> Result<(), ClusterError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(home).map_err(|e| io_err(home, e))?;
    let path = home.join(".erlang.cookie");
    std::fs::write(&path, make_cookie(home)).map_err(|e| io_err(&path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))
        .map_err(|e| io_err(&path, e))
}

pub(super) fn write_node_files(
    cfg: &RabbitClusterConfig,
    n: &RabbitNode,
) -> Result<(), ClusterError> {
    for d in [n.dir.clone(), n.mnesia_base(), n.log_base()] {
        std::fs::create_dir_all(&d).map_err(|e| io_err(&d, e))?;
    }
    let files = [
        ("rabbitmq.conf", render_rabbitmq_conf(cfg, n)),
        ("advanced.config", "[].\n".to_string()),
        ("enabled_plugins", ENABLED_PLUGINS.to_string()),
        ("rabbitmq-env.conf", String::new()),
    ];
    for (name, text) in files {
        let path = n.dir.join(name);
        std::fs::write(&path, text).map_err(|e| io_err(&path, e))?;
    }
    Ok(())
}

/// `rabbitmq.conf` of node `n`: loopback listeners, classic_config discovery of all nodes,
/// pause_minority, the cluster's net_ticktime.
pub fn render_rabbitmq_conf(cfg: &RabbitClusterConfig, n: &RabbitNode) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "listeners.tcp.default = {}:{}\n",
        n.host, n.amqp_port
    ));
    // The user the clients connect as, created at first boot (guest may only connect from
    // loopback, which is where brokerbench's clients are).
    s.push_str(&format!("default_user = {}\n", cfg.username));
    s.push_str(&format!("default_pass = {}\n", cfg.password));
    if cfg.network == crate::cluster::netns::NetworkMode::Namespaces {
        // The clients come from the bridge's address, not loopback: let any user in (guest
        // may otherwise only connect from loopback).
        s.push_str("loopback_users = none\n");
    }
    s.push_str(&format!("management.tcp.ip = {}\n", n.host));
    s.push_str(&format!("management.tcp.port = {}\n", n.http_port));
    s.push_str(&format!(
        "stream.listeners.tcp.default = {}:{}\n",
        n.host, n.stream_port
    ));
    s.push_str(&format!("stream.advertised_host = {}\n", n.host));
    s.push_str(&format!("stream.advertised_port = {}\n", n.stream_port));
    s.push_str(&format!("prometheus.tcp.ip = {}\n", n.host));
    s.push_str(&format!("prometheus.tcp.port = {}\n", n.prometheus_port));
    s.push_str("cluster_formation.peer_discovery_backend = classic_config\n");
    for i in 0..cfg.nodes {
        s.push_str(&format!(
            "cluster_formation.classic_config.nodes.{} = {}\n",
            i + 1,
            cfg.node_name_of(i)
        ));
    }
    s.push_str("cluster_partition_handling = pause_minority\n");
    s.push_str(&format!("net_ticktime = {}\n", cfg.net_ticktime_s));
    s
}

/// Environment of node `n` (also given to `rabbitmqctl` calls for it).
pub fn node_env(cfg: &RabbitClusterConfig, n: &RabbitNode) -> Vec<(String, String)> {
    let p = |path: PathBuf| path.display().to_string();
    let mut env: Vec<(String, String)> = vec![
        ("HOME".into(), p(cfg.dir.join("home"))),
        ("ERL_EPMD_PORT".into(), cfg.epmd_port.to_string()),
        ("ERL_EPMD_ADDRESS".into(), "127.0.0.1".into()),
        ("RABBITMQ_NODENAME".into(), n.name.clone()),
        ("RABBITMQ_NODE_IP_ADDRESS".into(), n.host.clone()),
        ("RABBITMQ_NODE_PORT".into(), n.amqp_port.to_string()),
        ("RABBITMQ_DIST_PORT".into(), n.dist_port.to_string()),
        ("RABBITMQ_BASE".into(), p(n.dir.clone())),
        ("RABBITMQ_MNESIA_BASE".into(), p(n.mnesia_base())),
        ("RABBITMQ_LOG_BASE".into(), p(n.log_base())),
        ("RABBITMQ_PID_FILE".into(), p(n.pid_file())),
        (
            "RABBITMQ_CONFIG_FILE".into(),
            p(n.dir.join("rabbitmq.conf")),
        ),
        (
            "RABBITMQ_ADVANCED_CONFIG_FILE".into(),
            p(n.dir.join("advanced.config")),
        ),
        (
            "RABBITMQ_CONF_ENV_FILE".into(),
            p(n.dir.join("rabbitmq-env.conf")),
        ),
        (
            "RABBITMQ_ENABLED_PLUGINS_FILE".into(),
            p(n.dir.join("enabled_plugins")),
        ),
        // Distribution on the node's address only; never start an epmd (the cluster's own must be running).
        (
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
            format!(
                "-kernel inet_dist_use_interface {{{}}} -start_epmd false",
                n.host.replace('.', ",")
            ),
        ),
    ];
    if cfg.network == crate::cluster::netns::NetworkMode::Namespaces {
        // Node names on the namespaces' addresses are long names (rabbit1@10.251.X.10).
        env.push(("RABBITMQ_USE_LONGNAME".into(), "true".into()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use crate::cluster::rabbitmq::test_config as cfg;

    #[test]
    fn renders_the_recipe_config() {
        let c = cfg();
        let nodes = c.layout().expect("layout");
        let conf = render_rabbitmq_conf(&c, &nodes[1]);
        for line in [
            "listeners.tcp.default = 127.0.0.1:5701",
            "management.tcp.ip = 127.0.0.1",
            "management.tcp.port = 15701",
            "stream.listeners.tcp.default = 127.0.0.1:5711",
            "stream.advertised_host = 127.0.0.1",
            "stream.advertised_port = 5711",
            "prometheus.tcp.port = 15711",
            "cluster_formation.peer_discovery_backend = classic_config",
            "cluster_formation.classic_config.nodes.1 = rabbit1@localhost",
            "cluster_formation.classic_config.nodes.3 = rabbit3@localhost",
            "cluster_partition_handling = pause_minority",
            "net_ticktime = 10",
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "missing {line:?} in\n{conf}"
            );
        }
        let env: HashMap<String, String> = node_env(&c, &nodes[1]).into_iter().collect();
        assert_eq!(env["HOME"], "/tmp/bb/home");
        assert_eq!(env["ERL_EPMD_PORT"], "4400");
        assert_eq!(env["RABBITMQ_NODENAME"], "rabbit2@localhost");
        assert_eq!(env["RABBITMQ_DIST_PORT"], "25701");
        assert_eq!(env["RABBITMQ_PID_FILE"], "/tmp/bb/rabbit2/rabbit.pid");
        assert!(env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"].contains("-start_epmd false"));
    }
}
