//! Two clusters of one kind in one scenario (`[clusters.<name>]`), each backend on its own:
//! each cluster has its own ports, folder and faults, every row and meta.json name the cluster
//! and the broker version its nodes reported, and nothing is left running.
//! Ports: Redis 7451-7456 and 7461-7466 (bus +10000); RabbitMQ AMQP 5820-5822 and 5830-5832,
//! HTTP 15820-15822 and 15830-15832, stream 5823-5825 and 5833-5835, prometheus 15823-15825 and
//! 15833-15835, distribution 25820-25829 and 25830-25839, epmd 4413 and 4414.

mod common;

use common::*;

/// The version `redis-server --version` prints (v=7.0.15).
fn installed_redis_version() -> String {
    let out = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .expect("run redis-server --version");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or_else(|| panic!("no v= in {text}"))
        .to_string()
}

fn meta(dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_redis_clusters_run_side_by_side_each_with_its_own_faults() {
    require_redis();
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "two-redis",
        r#"
name = "two-redis"
[workload]
message_size = 256
destinations = 2
rate = 400
duration = "4s"
drain_timeout = "20s"
[clusters.redis-a]
kind = "redis"
base_port = 7451
[clusters.redis-b]
kind = "redis"
base_port = 7461
appendfsync = "always"
[[backends]]
type = "redis-streams"
label = "on-a"
cluster = "redis-a"
[[backends]]
type = "redis-streams"
label = "on-b"
cluster = "redis-b"
client_retries = 5
[[faults]]
at = "1s"
action = "kill"
target = "leader-of:0"
restart_after = "1s"
clusters = ["redis-b"]
"#,
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    for ports in [7451..=7456, 7461..=7466] {
        let left = redis_servers_on(ports.clone());
        assert!(left.is_empty(), "left running: {}", describe(&left));
    }
    let version = installed_redis_version();

    let rows = read_csv(&out.dir.join("summary.csv"));
    assert_eq!(rows.len(), 2);
    for (r, cluster) in rows.iter().zip(["redis-a", "redis-b"]) {
        assert_eq!(r["status"], "ok", "{r:?}");
        assert_eq!(r["ledger_consistent"], "true", "{}", r["ledger_problems"]);
        assert_eq!(
            (r["cluster"].as_str(), r["broker"].as_str()),
            (cluster, "redis")
        );
        assert_eq!(r["broker_version"], version);
        assert!(num(r, "received") > 0.0);
    }
    // Each cluster's own settings: the guarantee follows the cluster's appendfsync.
    assert_eq!(rows[0]["guarantee"], "aof-everysec");
    assert_eq!(rows[1]["guarantee"], "aof-always");
    // The fault was limited to the backend on redis-b, and hit a node of redis-b.
    let faults = read_csv(&out.dir.join("faults.csv"));
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["backend"], "on-b");
    assert!(
        faults[0]["node"].starts_with("127.0.0.1:746"),
        "{:?}",
        faults[0]
    );

    // meta.json: each cluster with its kind and version, each backend with its cluster.
    let m = meta(&out.dir);
    let brokers = m["brokers"].as_array().expect("brokers");
    let named: Vec<(&str, &str, &str, &str)> = brokers
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or(""),
                b["kind"].as_str().unwrap_or(""),
                b["version"].as_str().unwrap_or(""),
                b["root"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("redis-a", "redis", version.as_str(), "host"),
            ("redis-b", "redis", version.as_str(), "host")
        ]
    );
    assert_eq!(m["backends"][1]["cluster"], "redis-b");
    assert_eq!(m["clusters"]["redis-b"]["kind"], "redis");
    // Each cluster had its own folder in the run folder.
    assert!(out.dir.join("clusters/redis-a/node-7451").is_dir());
    assert!(out.dir.join("clusters/redis-b/node-7461").is_dir());
}

/// Two RabbitMQ clusters at once, with the same node names (rabbit1@localhost...) on their own
/// epmd and ports; mirrored queues pass the version check on the host's RabbitMQ 3.x.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rabbitmq_clusters_run_side_by_side() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "two-rabbits",
        r#"
name = "two-rabbits"
[workload]
message_size = 256
rate = 200
duration = "2s"
drain_timeout = "20s"
[clusters.rabbit-a]
kind = "rabbitmq"
amqp_base_port = 5820
http_base_port = 15820
stream_base_port = 5823
prometheus_base_port = 15823
dist_base_port = 25820
epmd_port = 4413
[clusters.rabbit-b]
kind = "rabbitmq"
amqp_base_port = 5830
http_base_port = 15830
stream_base_port = 5833
prometheus_base_port = 15833
dist_base_port = 25830
epmd_port = 4414
[[backends]]
type = "rabbitmq-quorum"
cluster = "rabbit-a"
[[backends]]
type = "rabbitmq-mirrored"
cluster = "rabbit-b"
"#,
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    for name in ["rabbit-a", "rabbit-b"] {
        let left = processes_mentioning(&out.dir.join("clusters").join(name).display().to_string());
        assert!(left.is_empty(), "{name} left running: {}", describe(&left));
    }
    let m = meta(&out.dir);
    let versions: Vec<&str> = m["brokers"]
        .as_array()
        .expect("brokers")
        .iter()
        .map(|b| b["version"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(versions.len(), 2);
    assert!(versions[0].starts_with("3."), "{versions:?}");
    assert_eq!(versions[0], versions[1]);
    let rows = read_csv(&out.dir.join("summary.csv"));
    assert_eq!(rows.len(), 2);
    for (r, cluster) in rows.iter().zip(["rabbit-a", "rabbit-b"]) {
        assert_eq!(r["status"], "ok", "{r:?}");
        assert_eq!(r["ledger_consistent"], "true", "{}", r["ledger_problems"]);
        assert_eq!(r["cluster"], cluster);
        assert_eq!(
            (r["broker"].as_str(), r["broker_version"].as_str()),
            ("rabbitmq", versions[0])
        );
        assert_eq!(num(r, "lost"), 0.0);
        assert!(num(r, "received") > 0.0);
    }
}
