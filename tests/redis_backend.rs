//! The redis-streams backend against a real local Redis Cluster: a reopened consumer reads back
//! its pending entries, another consumer claims a crashed one's entries (XAUTOCLAIM), and with
//! `client_retries = 0` a SIGKILLed master makes sends fail until its replica takes over, after
//! which the same producer reaches the new master. Ports 7321-7326 (bus 17321-17326) only.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use brokerbench::backend::redis::{key_slot, RedisStreams};
use brokerbench::backend::{AckToken, Backend, Consumer, Delivery, Destination};
use brokerbench::cluster::process::find_binary;
use brokerbench::cluster::redis::{LocalRedisCluster, RedisClusterConfig};
use brokerbench::scenario::{RedisClusterSection, RedisSettings};

const BASE_PORT: u16 = 7321;
/// How long an entry stays pending before another consumer may claim it.
const CLAIM_MIN_IDLE_MS: u64 = 2000;

/// A temporary cluster folder; dropping it stops the nodes its state file records.
struct ClusterDir(tempfile::TempDir);

impl Drop for ClusterDir {
    fn drop(&mut self) {
        if let Ok(cluster) = LocalRedisCluster::attach(self.0.path()) {
            cluster.down_blocking();
        }
    }
}

fn config(dir: &Path) -> RedisClusterConfig {
    let section = RedisClusterSection {
        base_port: BASE_PORT,
        node_timeout_ms: 2000,
        ..Default::default()
    };
    RedisClusterConfig::from_section(dir.to_path_buf(), &section)
}

fn settings(toml_text: &str) -> RedisSettings {
    toml::from_str(toml_text).expect("redis settings")
}

async fn send_all(backend: &RedisStreams, dest: &Destination, names: std::ops::Range<u32>) {
    let mut p = backend.producer(dest, 0).await.expect("producer");
    for i in names {
        let confirm = p
            .send(Bytes::from(format!("m{i}")))
            .await
            .expect("send")
            .expect("a confirm");
        confirm.await.expect("confirmed");
    }
    p.close().await;
}

/// Poll until `n` deliveries arrived (or `timeout`), then twice more to catch extras (well
/// within CLAIM_MIN_IDLE_MS: entries left unacked longer are claimed, by any consumer).
async fn poll_for(c: &mut dyn Consumer, n: usize, timeout: Duration) -> Vec<Delivery> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < timeout {
        c.poll(&mut got).await.expect("poll");
    }
    for _ in 0..2 {
        c.poll(&mut got).await.expect("poll");
    }
    got
}

fn payloads(ds: &[Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect()
}

fn names(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

fn tokens(ds: &[Delivery]) -> Vec<AckToken> {
    ds.iter().map(|d| d.token.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_claims_and_a_killed_master() {
    if find_binary("redis-server").is_none() || find_binary("redis-cli").is_none() {
        eprintln!("SKIPPED: redis-server / redis-cli not installed");
        return;
    }
    let dir = ClusterDir(tempfile::tempdir().expect("temp dir"));
    let log = |line: &str| eprintln!("{line}");
    let mut cluster = LocalRedisCluster::up(config(dir.0.path()), &log)
        .await
        .expect("cluster up");
    let backend = RedisStreams::connect(
        // A COUNT below the number of pending entries: read-back and claims go on from where
        // the previous batch ended.
        &settings(&format!(
            "read_count = 4\nclaim_min_idle_ms = {CLAIM_MIN_IDLE_MS}\nclaim_interval_ms = 100"
        )),
        &cluster.seeds(),
    )
    .await
    .expect("connect");
    let dests = backend.setup("bb-backend-it", 1).await.expect("setup");
    let dest = &dests[0];

    // A consumer that never acks is dropped (as after a lost connection): reopened under the
    // same index, it gets its pending entries back first, marked redelivered.
    send_all(&backend, dest, 0..10).await;
    let mut c0 = backend.consumer(dest, 0).await.expect("c0");
    let first = poll_for(&mut *c0, 10, Duration::from_secs(10)).await;
    assert_eq!(payloads(&first), names(0..10));
    assert!(first.iter().all(|d| !d.redelivered));
    drop(c0);
    let mut c0 = backend.consumer(dest, 0).await.expect("c0 again");
    let again = poll_for(&mut *c0, 10, Duration::from_secs(10)).await;
    assert_eq!(payloads(&again), names(0..10), "each pending entry once");
    assert!(again.iter().all(|d| d.redelivered));
    c0.ack(&tokens(&again)).await.expect("ack");
    let none = poll_for(&mut *c0, 0, Duration::ZERO).await;
    assert!(
        none.is_empty(),
        "acked entries came back: {:?}",
        payloads(&none)
    );

    // A consumer crashes with entries unacked: another consumer of the destination claims them
    // once they have been idle claim_min_idle_ms.
    send_all(&backend, dest, 10..15).await;
    let mut c1 = backend.consumer(dest, 1).await.expect("c1");
    let taken = poll_for(&mut *c1, 5, Duration::from_secs(10)).await;
    assert_eq!(payloads(&taken), names(10..15));
    c1.close().await;
    let crashed = Instant::now();
    let claimed = poll_for(&mut *c0, 5, Duration::from_secs(10)).await;
    assert!(crashed.elapsed() >= Duration::from_millis(CLAIM_MIN_IDLE_MS) / 2);
    assert_eq!(payloads(&claimed), names(10..15));
    assert!(claimed.iter().all(|d| d.redelivered));
    c0.ack(&tokens(&claimed)).await.expect("ack claimed");
    let mut c1 = backend.consumer(dest, 1).await.expect("c1 again");
    let left = poll_for(&mut *c1, 0, Duration::ZERO).await;
    assert!(left.is_empty(), "claimed entries still pending in c1");
    c1.close().await;
    c0.close().await;

    // SIGKILL the stream's master. With client_retries = 0 (the default) failed sends surface,
    // and the same producer reaches the promoted replica without being reopened.
    let master = cluster
        .master_of_slot(key_slot(&dest.name))
        .await
        .expect("master_of_slot")
        .expect("the stream's slot has a master");
    let port: u16 = master
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let mut p = backend.producer(dest, 0).await.expect("producer");
    cluster.kill_node(port).await.expect("kill the master");
    let killed = Instant::now();
    let (mut errors, mut ok_in_a_row) = (Vec::new(), 0);
    while ok_in_a_row < 5 {
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "no steady sends 40 s after the kill; errors: {errors:?}"
        );
        let outcome = match p.send(Bytes::from_static(b"after-kill")).await {
            Ok(Some(confirm)) => tokio::time::timeout(Duration::from_secs(15), confirm)
                .await
                .expect("a confirm within 15 s"),
            Ok(None) => panic!("redis confirms every send"),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => ok_in_a_row += 1,
            Err(e) => {
                ok_in_a_row = 0;
                errors.push((e.kind(), e.is_definite(), e.to_string()));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (_, _, text) in &errors {
        match seen.last_mut() {
            Some((last, n)) if last == text => *n += 1,
            _ => seen.push((text, 1)),
        }
    }
    eprintln!(
        "steady {:.1} s after the kill; failed sends in order (message, times): {seen:?}",
        killed.elapsed().as_secs_f64()
    );
    assert!(!errors.is_empty(), "a send to the killed master must fail");
    for (kind, definite, text) in &errors {
        assert!(
            matches!(*kind, "connection" | "unavailable" | "timeout"),
            "{kind}: {text}"
        );
        assert_eq!(*definite, *kind == "unavailable", "{kind}: {text}");
    }
    let now = cluster
        .master_of_slot(key_slot(&dest.name))
        .await
        .expect("master_of_slot")
        .expect("a new master");
    assert_ne!(now, master);
    p.close().await;
    backend.teardown(&dests).await.expect("teardown");
    cluster.down().await.expect("cluster down");
}
