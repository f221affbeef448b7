//! The local Redis Cluster launcher against real redis-server processes.
//!
//! Ports 7100-7199 only (cluster bus 17100-17199), a distinct base per test. Every test keeps
//! its cluster folder in a `ClusterDir`, whose Drop stops whatever the folder's state file
//! records, so nodes are stopped even when an assertion fails.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::{Duration, Instant};

use brokerbench::cluster::process::{find_binary, is_alive, port_in_use, OwnedProcess};
use brokerbench::cluster::redis::{
    LocalRedisCluster, RedisClusterConfig, RedisNodeStatus, STATE_FILE,
};
use brokerbench::cluster::ClusterError;
use brokerbench::scenario::RedisClusterSection;

/// A temporary cluster folder; dropping it stops the nodes its state file records.
struct ClusterDir {
    tmp: tempfile::TempDir,
}

impl ClusterDir {
    fn new() -> Self {
        ClusterDir {
            tmp: tempfile::tempdir().expect("create a temporary folder"),
        }
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }
}

impl Drop for ClusterDir {
    fn drop(&mut self) {
        if let Ok(cluster) = LocalRedisCluster::attach(self.tmp.path()) {
            cluster.down_blocking();
        }
    }
}

/// A missing redis-server fails the test: it never passes by skipping.
fn require_redis() {
    assert!(
        find_binary("redis-server").is_some() && find_binary("redis-cli").is_some(),
        "redis-server / redis-cli not installed (apt-get install -y redis-server redis-tools)"
    );
}

fn config(dir: &Path, base_port: u16) -> RedisClusterConfig {
    let section = RedisClusterSection {
        base_port,
        node_timeout_ms: 2000,
        ..Default::default()
    };
    RedisClusterConfig::from_section(dir.to_path_buf(), &section)
}

fn progress() -> impl Fn(&str) + Send + Sync {
    let t0 = Instant::now();
    move |line: &str| eprintln!("[{:6.2}s] {line}", t0.elapsed().as_secs_f64())
}

/// Live processes whose command line shows a redis-server node on one of `ports`.
fn redis_processes_on(ports: RangeInclusive<u16>) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let ours = ports.clone().any(|p| {
            cmdline.contains(&format!("redis-server 127.0.0.1:{p} "))
                || cmdline.contains(&format!("/node-{p}/redis.conf"))
        });
        if ours && is_alive(pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Poll `check` every 50 ms until it gives Some, or panic after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 3 masters whose slots cover 0-16383 exactly once; 3 connected replicas, one per master.
fn assert_three_by_one(rows: &[RedisNodeStatus]) {
    let masters: Vec<&RedisNodeStatus> = rows.iter().filter(|r| r.role == "master").collect();
    let replicas: Vec<&RedisNodeStatus> = rows.iter().filter(|r| r.role == "replica").collect();
    assert_eq!(
        (masters.len(), replicas.len(), rows.len()),
        (3, 3, 6),
        "{rows:#?}"
    );
    let mut covered = vec![0u8; 16384];
    for m in &masters {
        for (a, b) in m.slot_ranges() {
            for s in a..=b {
                covered[usize::from(s)] += 1;
            }
        }
    }
    assert!(
        covered.iter().all(|c| *c == 1),
        "slots not covered exactly once: {rows:#?}"
    );
    let master_ids: HashSet<&str> = masters.iter().map(|m| m.id.as_str()).collect();
    let served: HashSet<&str> = replicas
        .iter()
        .filter_map(|r| r.master_id.as_deref())
        .collect();
    assert_eq!(
        served, master_ids,
        "every master has exactly one replica: {rows:#?}"
    );
    assert!(rows.iter().all(|r| r.connected), "{rows:#?}");
    assert!(
        rows[..3].iter().all(|r| r.role == "master"),
        "masters first: {rows:#?}"
    );
}

/// Write and read keys spread over every shard through a cluster client.
async fn cluster_round_trip(seeds: &[String], tag: &str) {
    let urls: Vec<String> = seeds.iter().map(|s| format!("redis://{s}")).collect();
    let client = redis::cluster::ClusterClient::new(urls).expect("cluster client");
    let work = async {
        let mut con = client.get_async_connection().await?;
        for i in 0..30 {
            let key = format!("bb-test-{i}");
            redis::cmd("SET")
                .arg(&key)
                .arg(format!("{tag}-{i}"))
                .query_async::<()>(&mut con)
                .await?;
            let back: String = redis::cmd("GET").arg(&key).query_async(&mut con).await?;
            assert_eq!(back, format!("{tag}-{i}"));
        }
        Ok::<(), redis::RedisError>(())
    };
    match tokio::time::timeout(Duration::from_secs(20), work).await {
        Ok(result) => result.expect("SET/GET through the cluster"),
        Err(_) => panic!("SET/GET through the cluster took over 20 s"),
    }
}

async fn config_get(port: u16, key: &str) -> String {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
    let work = async {
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("CONFIG")
            .arg("GET")
            .arg(key)
            .query_async::<Vec<String>>(&mut con)
            .await
    };
    let pair = tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .expect("CONFIG GET in time")
        .expect("CONFIG GET");
    pair.get(1).cloned().unwrap_or_default()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("address ends in :port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_failover_restart_and_down() {
    require_redis();
    let dir = ClusterDir::new();
    let log = progress();
    let t_up = Instant::now();
    let mut cluster = LocalRedisCluster::up(config(dir.path(), 7101), &log)
        .await
        .expect("cluster up");
    eprintln!("up took {:.2} s", t_up.elapsed().as_secs_f64());
    assert!(dir.path().join(STATE_FILE).exists());
    assert_eq!(
        cluster.seeds(),
        (7101..=7106)
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
    );

    // Every node runs, carries its marker, and shows itself as redis-server 127.0.0.1:PORT.
    let mut started: Vec<OwnedProcess> = cluster.processes();
    assert_eq!(started.len(), 6);
    for node in cluster.nodes() {
        let p = node.process.as_ref().expect("a process per node");
        assert!(p.is_running(), "node {} not running", node.port);
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(
            cmdline.contains(&format!("redis-server 127.0.0.1:{} [cluster]", node.port)),
            "{cmdline}"
        );
        assert!(node.dir.join("redis.conf").is_file());
    }

    let rows = cluster.status().await.expect("status");
    eprintln!("{}", LocalRedisCluster::format_status(&rows));
    assert_three_by_one(&rows);
    cluster_round_trip(&cluster.seeds(), "before").await;

    cluster
        .set_config("slowlog-max-len", "321")
        .await
        .expect("CONFIG SET on every node");
    for port in 7101..=7106 {
        assert_eq!(
            config_get(port, "slowlog-max-len").await,
            "321",
            "node {port}"
        );
    }

    // Kill the master of slot 0; its replica takes over.
    let victim_addr = cluster
        .master_of_slot(0)
        .await
        .expect("master_of_slot")
        .expect("slot 0 has a master");
    let victim = rows
        .iter()
        .find(|r| r.address == victim_addr)
        .expect("victim in status")
        .clone();
    let heir = rows
        .iter()
        .find(|r| r.master_id.as_deref() == Some(victim.id.as_str()))
        .expect("victim's replica")
        .clone();
    let victim_port = port_of(&victim_addr);
    let victim_pid = cluster
        .nodes()
        .iter()
        .find(|n| n.port == victim_port)
        .and_then(|n| n.process.clone())
        .expect("pid");
    let t_kill = Instant::now();
    cluster.kill_node(victim_port).await.expect("kill_node");
    assert!(
        !is_alive(victim_pid.pid),
        "killed pid {} still alive",
        victim_pid.pid
    );
    assert_eq!(cluster.processes().len(), 5);
    assert!(
        cluster.kill_node(victim_port).await.is_err(),
        "killing a dead node is an error"
    );
    // A setting changed while the node is down reaches it through its redis.conf.
    cluster
        .set_config("slowlog-log-slower-than", "12345")
        .await
        .expect("CONFIG SET with a node down");

    let owner = eventually(
        "the replica to be promoted",
        Duration::from_secs(30),
        || async {
            match cluster.master_of_slot(0).await {
                Ok(Some(a)) if a == heir.address => Some(a),
                _ => None,
            }
        },
    )
    .await;
    eprintln!(
        "failover: {owner} serves slot 0 after {:.2} s",
        t_kill.elapsed().as_secs_f64()
    );
    cluster
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("cluster_state:ok again after the failover");
    eprintln!(
        "cluster_state:ok on the survivors after {:.2} s",
        t_kill.elapsed().as_secs_f64()
    );
    let rows = cluster.status().await.expect("status after failover");
    eprintln!("{}", LocalRedisCluster::format_status(&rows));
    let promoted = rows
        .iter()
        .find(|r| r.id == heir.id)
        .expect("heir in status");
    assert_eq!(promoted.role, "master");
    assert!(promoted.owns_slot(0));
    let dead = rows
        .iter()
        .find(|r| r.id == victim.id)
        .expect("victim in status");
    assert_eq!(dead.role, "fail");
    cluster_round_trip(&cluster.seeds(), "after-failover").await;

    // Restart the killed node: it rejoins as a replica of the promoted one.
    let t_restart = Instant::now();
    cluster
        .restart_node(victim_port)
        .await
        .expect("restart_node");
    let restarted = cluster
        .nodes()
        .iter()
        .find(|n| n.port == victim_port)
        .and_then(|n| n.process.clone());
    let restarted = restarted.expect("restarted node has a process");
    assert!(restarted.is_running());
    started.push(restarted);
    let attached = LocalRedisCluster::attach(dir.path()).expect("state file after restart");
    assert_eq!(
        attached.processes(),
        cluster.processes(),
        "the state file follows kill and restart"
    );

    eventually(
        "the restarted node to rejoin as a replica",
        Duration::from_secs(30),
        || async {
            let rows = cluster.status().await.ok()?;
            let row = rows.iter().find(|r| r.id == victim.id)?;
            (row.role == "replica" && row.master_id.as_deref() == Some(heir.id.as_str()))
                .then_some(())
        },
    )
    .await;
    cluster
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy after the restart");
    eprintln!(
        "restarted node rejoined, cluster healthy after {:.2} s",
        t_restart.elapsed().as_secs_f64()
    );
    let rows = cluster.status().await.expect("status after restart");
    eprintln!("{}", LocalRedisCluster::format_status(&rows));
    assert_three_by_one(&rows);
    assert_eq!(
        config_get(victim_port, "slowlog-max-len").await,
        "321",
        "CONFIG SET kept across the restart"
    );
    assert_eq!(
        config_get(victim_port, "slowlog-log-slower-than").await,
        "12345",
        "CONFIG SET made while the node was down"
    );
    cluster_round_trip(&cluster.seeds(), "after-restart").await;

    let t_down = Instant::now();
    cluster.down().await.expect("down");
    eprintln!("down took {:.2} s", t_down.elapsed().as_secs_f64());
    for p in &started {
        assert!(!is_alive(p.pid), "pid {} still alive after down", p.pid);
    }
    assert!(redis_processes_on(7101..=7106).is_empty());
    assert!(!dir.path().join(STATE_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_starts_nothing() {
    require_redis();
    let dir = ClusterDir::new();
    let log = progress();

    let listener = std::net::TcpListener::bind("127.0.0.1:7113").expect("bind 7113 for the test");
    let result = LocalRedisCluster::up(config(dir.path(), 7111), &log).await;
    let message = format!("{result:?}");
    let Err(ClusterError::PortInUse { port, what, fix }) = result else {
        panic!("expected PortInUse for 7113, got {message}")
    };
    eprintln!("{message}");
    assert_eq!(port, 7113);
    assert!(what.contains("127.0.0.1:7113"), "{what}");
    assert!(
        fix.contains("choose another clusters.redis.base_port"),
        "{fix}"
    );
    assert!(
        redis_processes_on(7111..=7116).is_empty(),
        "{:?}",
        redis_processes_on(7111..=7116)
    );
    assert!(
        !dir.path().join(STATE_FILE).exists(),
        "a failed check writes no state"
    );
    drop(listener);
    // Another test's fork may hold a copy of the listener until its exec: wait until it is free.
    eventually("port 7113 to be free", Duration::from_secs(5), || async {
        (!port_in_use(7113)).then_some(())
    })
    .await;

    let bus = std::net::TcpListener::bind("127.0.0.1:17115").expect("bind 17115 for the test");
    match LocalRedisCluster::up(config(dir.path(), 7111), &log).await {
        Err(ClusterError::PortInUse { port, what, .. }) => {
            assert_eq!(port, 17115);
            assert!(
                what.contains("cluster bus") && what.contains("127.0.0.1:7115"),
                "{what}"
            );
        }
        other => panic!("expected PortInUse for 17115, got {other:?}"),
    }
    assert!(redis_processes_on(7111..=7116).is_empty());
    drop(bus);

    // Another launcher's state file in the folder is neither used nor overwritten.
    let foreign = r#"{"kind": "rabbitmq", "nodes": []}"#;
    std::fs::write(dir.path().join(STATE_FILE), foreign).expect("write a foreign state file");
    match LocalRedisCluster::up(config(dir.path(), 7111), &log).await {
        Err(e @ ClusterError::State { .. }) => {
            assert!(e.to_string().contains("rabbitmq"), "{e}")
        }
        other => panic!("expected a State error, got {other:?}"),
    }
    assert!(redis_processes_on(7111..=7116).is_empty());
    let kept = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap_or_default();
    assert_eq!(kept, foreign);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binary_is_reported() {
    let dir = ClusterDir::new();
    let log = progress();
    for (server, cli) in [
        ("redis-server-does-not-exist", "redis-cli"),
        ("/nonexistent/redis-server", "redis-cli"),
        ("redis-server", "redis-cli-does-not-exist"),
    ] {
        let mut cfg = config(dir.path(), 7121);
        cfg.redis_server = server.into();
        cfg.redis_cli = cli.into();
        match LocalRedisCluster::up(cfg, &log).await {
            Err(ClusterError::MissingBinary { binary, fix }) => {
                assert!(binary == server || binary == cli, "{binary}");
                assert!(
                    binary.contains("does-not-exist") || binary.starts_with("/nonexistent"),
                    "{binary}"
                );
                assert!(
                    fix.contains("apt-get install -y redis-server redis-tools"),
                    "{fix}"
                );
            }
            other => panic!("expected MissingBinary for ({server}, {cli}), got {other:?}"),
        }
    }
    assert!(redis_processes_on(7121..=7126).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_from_the_folder_then_down() {
    require_redis();
    let dir = ClusterDir::new();
    let log = progress();
    let t_up = Instant::now();
    let cluster = LocalRedisCluster::up(config(dir.path(), 7131), &log)
        .await
        .expect("cluster up");
    eprintln!("up took {:.2} s", t_up.elapsed().as_secs_f64());
    let pids = cluster.processes();
    let seeds = cluster.seeds();
    // As if `cluster up` ran in another process that has exited.
    drop(cluster);

    // Another `up` from the same folder is refused while the first cluster runs.
    match LocalRedisCluster::up(config(dir.path(), 7141), &log).await {
        Err(e @ ClusterError::State { .. }) => {
            assert!(
                e.to_string().contains("brokerbench cluster down redis"),
                "{e}"
            );
        }
        other => panic!("expected a State error, got {other:?}"),
    }
    assert!(redis_processes_on(7141..=7146).is_empty());

    let attached = LocalRedisCluster::attach(dir.path()).expect("attach");
    assert_eq!(attached.seeds(), seeds);
    assert_eq!(attached.processes(), pids);
    assert_eq!(attached.config().base_port, 7131);
    assert_three_by_one(
        &attached
            .status()
            .await
            .expect("status through the attached handle"),
    );
    attached.down().await.expect("down");
    for p in &pids {
        assert!(!is_alive(p.pid), "pid {} still alive after down", p.pid);
    }
    assert!(redis_processes_on(7131..=7136).is_empty());
    assert!(matches!(
        LocalRedisCluster::attach(dir.path()),
        Err(ClusterError::State { .. })
    ));

    // A new cluster forms in the same folder: the old nodes-*.conf and AOF files are gone.
    let again = LocalRedisCluster::up(config(dir.path(), 7131), &log)
        .await
        .expect("second up in the same folder");
    assert_three_by_one(&again.status().await.expect("status"));
    again.down().await.expect("down");
    assert!(redis_processes_on(7131..=7136).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_start_stops_the_others() {
    require_redis();
    let dir = ClusterDir::new();
    let log = progress();
    // A wrapper that starts every node but the third one, which fails like a bad config would.
    let wrapper = dir.path().join("redis-server-wrapper");
    let script = "#!/bin/sh\ncase \"$1\" in\n  */node-7153/*) echo 'refusing to start node 7153' >&2; exit 1;;\nesac\nexec redis-server \"$@\"\n";
    std::fs::write(&wrapper, script).expect("write the wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("make the wrapper executable");
    let mut cfg = config(dir.path(), 7151);
    cfg.redis_server = wrapper.display().to_string();
    let result = LocalRedisCluster::up(cfg, &log).await;
    let message = format!("{result:?}");
    let Err(err @ ClusterError::Node { .. }) = result else {
        panic!("expected a Node error, got {message}")
    };
    eprintln!("{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:7153"), "{text}");
    assert!(
        text.contains("refusing to start node 7153"),
        "the error shows the node's own complaint: {text}"
    );
    assert!(
        redis_processes_on(7151..=7156).is_empty(),
        "{:?}",
        redis_processes_on(7151..=7156)
    );
    assert!(!dir.path().join(STATE_FILE).exists());
}
