//! The redis-streams backend against a real local Redis Cluster: a reopened consumer reads back
//! its pending entries, another consumer claims a crashed one's entries (XAUTOCLAIM), and with
//! `client_retries = 0` a SIGKILLed master makes sends fail until its replica takes over, after
//! which the same producer reaches the new master; an error reply to one XADD of a pipeline
//! fails that message only; the backlog at the drain deadline counts entries not yet delivered
//! and delivered but unacked; entries trimmed while pending are counted and acked, never
//! delivered. Each test has its own cluster: ports 7321-7326, 7401-7406, 7411-7416 and
//! 7421-7426 (bus ports 10000 above) only.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use brokerbench::backend::redis::{key_slot, RedisStreams};
use brokerbench::backend::{AckToken, Backend, Backlog, Consumer, Delivery, Destination};
use brokerbench::cluster::process::find_binary;
use brokerbench::cluster::redis::{LocalRedisCluster, RedisClusterConfig};
use brokerbench::scenario::{RedisClusterSection, RedisSettings};

const BASE_PORT: u16 = 7321;
/// The cluster of `an_error_reply_fails_only_its_own_xadd`.
const PIPELINE_BASE_PORT: u16 = 7401;
/// The cluster of `backlog_counts_undelivered_and_unacked_entries`.
const BACKLOG_BASE_PORT: u16 = 7411;
/// The cluster of `entries_trimmed_while_pending_are_counted_not_delivered`.
const TRIM_BASE_PORT: u16 = 7421;
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

fn config(dir: &Path, base_port: u16) -> RedisClusterConfig {
    let section = RedisClusterSection {
        base_port,
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

/// Start a cluster on `base_port`; a missing redis-server fails the test (it never skips).
async fn start_cluster(base_port: u16) -> (ClusterDir, LocalRedisCluster) {
    assert!(
        find_binary("redis-server").is_some() && find_binary("redis-cli").is_some(),
        "redis-server / redis-cli not installed (apt-get install -y redis-server redis-tools)"
    );
    let dir = ClusterDir(tempfile::tempdir().expect("temp dir"));
    let log = |line: &str| eprintln!("{line}");
    let cluster = LocalRedisCluster::up(config(dir.0.path(), base_port), &log)
        .await
        .expect("cluster up");
    (dir, cluster)
}

/// A direct connection to one node (`host:port`).
async fn node_connection(address: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://{address}/")).expect("client");
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("connected within 5 s")
    .expect("connect")
}

async fn query<T: redis::FromRedisValue>(
    conn: &mut redis::aio::MultiplexedConnection,
    cmd: &redis::Cmd,
) -> T {
    tokio::time::timeout(Duration::from_secs(5), cmd.query_async(conn))
        .await
        .expect("an answer within 5 s")
        .unwrap_or_else(|e| panic!("command to a node: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_entries_claims_and_a_killed_master() {
    let (_dir, mut cluster) = start_cluster(BASE_PORT).await;
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

/// One pipeline of XADDs in which Redis refuses some (OOM: the master's `maxmemory` is reached
/// part-way): each message gets its own outcome. The ones Redis wrote are confirmed (as many as
/// the stream holds), the refused ones fail definitely, and none is left without an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_reply_fails_only_its_own_xadd() {
    const MESSAGES: usize = 400;
    const SIZE: usize = 4096;
    let (_dir, cluster) = start_cluster(PIPELINE_BASE_PORT).await;
    let backend = RedisStreams::connect(&settings(""), &cluster.seeds())
        .await
        .expect("connect");
    let dests = backend.setup("bb-pipeline-it", 1).await.expect("setup");
    let dest = &dests[0];
    let master = cluster
        .master_of_slot(key_slot(&dest.name))
        .await
        .expect("master_of_slot")
        .expect("the stream's slot has a master");
    let mut node = node_connection(&master).await;
    let info: String = query(&mut node, redis::cmd("INFO").arg("memory")).await;
    let used: u64 = info
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("used_memory:"))
        .and_then(|v| v.parse().ok())
        .expect("used_memory in INFO memory");
    // Room for some 50 of the 400 entries: the rest are refused with OOM.
    let limit = used + 200 * 1024;
    let _: () = query(
        &mut node,
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("noeviction"),
    )
    .await;
    let _: () = query(
        &mut node,
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(limit),
    )
    .await;

    // Queue every message before awaiting any confirm: they go out in one or two pipelines.
    let mut p = backend.producer(dest, 0).await.expect("producer");
    let payload = Bytes::from(vec![b'x'; SIZE]);
    let mut confirms = Vec::with_capacity(MESSAGES);
    for _ in 0..MESSAGES {
        confirms.push(
            p.send(payload.clone())
                .await
                .expect("send")
                .expect("a confirm"),
        );
    }
    let mut outcomes = Vec::with_capacity(MESSAGES);
    for c in confirms {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(15), c)
                .await
                .expect("a confirm within 15 s"),
        );
    }
    p.close().await;
    let _: () = query(
        &mut node,
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0),
    )
    .await;
    let written: usize = query(&mut node, redis::cmd("XLEN").arg(&dest.name)).await;
    let confirmed = outcomes.iter().filter(|r| r.is_ok()).count();
    let failed: Vec<_> = outcomes.iter().filter_map(|r| r.as_ref().err()).collect();
    eprintln!(
        "{written} entries written, {confirmed} confirmed, {} failed; first failure: {:?}",
        failed.len(),
        failed.first().map(|e| e.to_string())
    );
    assert!(
        written > 0 && written < MESSAGES,
        "maxmemory should stop the stream part-way: {written} of {MESSAGES} written"
    );
    assert_eq!(
        confirmed, written,
        "every entry Redis wrote is confirmed, and only those"
    );
    assert_eq!(failed.len(), MESSAGES - written);
    for e in &failed {
        assert!(e.is_definite(), "a refused XADD is a definite failure: {e}");
        assert!(e.to_string().contains("OOM"), "{e}");
    }
    backend.teardown(&dests).await.expect("teardown");
    cluster.down().await.expect("cluster down");
}

/// `Backend::backlog`: N entries written, k read by a consumer that acks all but j of them:
/// N - k ready and j unacked; with an undelivered entry deleted (XINFO GROUPS then has no lag)
/// the ready entries are counted with XRANGE; and destinations add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_counts_undelivered_and_unacked_entries() {
    const N: u32 = 20;
    const K: usize = 12;
    const J: usize = 5;
    let (_dir, cluster) = start_cluster(BACKLOG_BASE_PORT).await;
    let backend = RedisStreams::connect(
        &settings(&format!("read_count = {K}\nclaim_interval_ms = 0")),
        &cluster.seeds(),
    )
    .await
    .expect("connect");
    let dests = backend.setup("bb-backlog-it", 2).await.expect("setup");
    let (a, b) = (&dests[0], &dests[1]);
    let backlog = |d: &[Destination]| {
        let d = d.to_vec();
        let backend = &backend;
        async move {
            backend
                .backlog(&d)
                .await
                .expect("backlog")
                .expect("redis tells its backlog")
        }
    };
    assert_eq!(backlog(&dests).await, Backlog::default());

    send_all(&backend, a, 0..N).await;
    assert_eq!(
        backlog(std::slice::from_ref(a)).await,
        Backlog {
            ready: N as u64,
            unacked: 0
        }
    );
    let mut c = backend.consumer(a, 0).await.expect("consumer");
    let mut got = Vec::new();
    c.poll(&mut got).await.expect("poll");
    assert_eq!(
        payloads(&got),
        names(0..K as u32),
        "one poll reads COUNT {K}"
    );
    c.ack(&tokens(&got[..K - J])).await.expect("ack");
    // The consumer sends its acks with its next read, or when it closes: here, it closes (its
    // unacked entries stay pending in the group).
    c.close().await;
    let expected = Backlog {
        ready: (N as usize - K) as u64,
        unacked: J as u64,
    };
    assert_eq!(backlog(std::slice::from_ref(a)).await, expected);

    // Delete the first undelivered entry: Redis no longer tells the group's lag, and the ready
    // entries are counted instead.
    let master = cluster
        .master_of_slot(key_slot(&a.name))
        .await
        .expect("master_of_slot")
        .expect("a master");
    let mut node = node_connection(&master).await;
    let ids: Vec<(String, Vec<(String, String)>)> = query(
        &mut node,
        redis::cmd("XRANGE").arg(&a.name).arg("-").arg("+"),
    )
    .await;
    let deleted: usize = query(&mut node, redis::cmd("XDEL").arg(&a.name).arg(&ids[K].0)).await;
    assert_eq!(deleted, 1);
    let groups: Vec<std::collections::HashMap<String, redis::Value>> =
        query(&mut node, redis::cmd("XINFO").arg("GROUPS").arg(&a.name)).await;
    assert_eq!(
        groups[0].get("lag"),
        Some(&redis::Value::Nil),
        "XINFO GROUPS after XDEL: {groups:?}"
    );
    assert_eq!(
        backlog(std::slice::from_ref(a)).await,
        Backlog {
            ready: expected.ready - 1,
            unacked: J as u64
        }
    );

    // Two destinations add up.
    send_all(&backend, b, 0..3).await;
    assert_eq!(
        backlog(&dests).await,
        Backlog {
            ready: expected.ready - 1 + 3,
            unacked: J as u64
        }
    );
    backend.teardown(&dests).await.expect("teardown");
    cluster.down().await.expect("cluster down");
}

/// Poll until `take_trimmed` has added up to `n` (or `timeout`); returns the deliveries and the
/// trimmed count.
async fn poll_trimmed(c: &mut dyn Consumer, n: u64, timeout: Duration) -> (Vec<Delivery>, u64) {
    let start = Instant::now();
    let (mut got, mut trimmed) = (Vec::new(), 0);
    while trimmed < n && start.elapsed() < timeout {
        c.poll(&mut got).await.expect("poll");
        trimmed += c.take_trimmed();
    }
    (got, trimmed)
}

/// Entries trimmed from the stream while pending: a consumer reading its pending entries back
/// (XREADGROUP gives them nil fields) and a consumer claiming another's (XAUTOCLAIM names them
/// apart) count them for `take_trimmed`, deliver none of them, and leave nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_trimmed_while_pending_are_counted_not_delivered() {
    let (_dir, cluster) = start_cluster(TRIM_BASE_PORT).await;
    let backend = RedisStreams::connect(
        &settings("claim_min_idle_ms = 500\nclaim_interval_ms = 100"),
        &cluster.seeds(),
    )
    .await
    .expect("connect");
    let dests = backend.setup("bb-trim-it", 1).await.expect("setup");
    let dest = &dests[0];
    let master = cluster
        .master_of_slot(key_slot(&dest.name))
        .await
        .expect("master_of_slot")
        .expect("a master");
    let mut node = node_connection(&master).await;
    let unacked = || async {
        backend
            .backlog(std::slice::from_ref(dest))
            .await
            .expect("backlog")
            .expect("redis tells its backlog")
            .unacked
    };

    // A consumer reads 10 entries and crashes; the stream is trimmed; reopened, the consumer
    // reads its pending entries back: 10 trimmed, none delivered, none left pending.
    send_all(&backend, dest, 0..10).await;
    let mut c0 = backend.consumer(dest, 0).await.expect("c0");
    let first = poll_for(&mut *c0, 10, Duration::from_secs(10)).await;
    assert_eq!(payloads(&first), names(0..10));
    assert_eq!(c0.take_trimmed(), 0);
    drop(c0);
    assert_eq!(
        query::<usize>(
            &mut node,
            redis::cmd("XTRIM").arg(&dest.name).arg("MAXLEN").arg(0)
        )
        .await,
        10
    );
    let mut c0 = backend.consumer(dest, 0).await.expect("c0 again");
    let (got, trimmed) = poll_trimmed(&mut *c0, 10, Duration::from_secs(10)).await;
    assert!(got.is_empty(), "trimmed entries delivered: {got:?}");
    assert_eq!(trimmed, 10);
    assert_eq!(unacked().await, 0, "trimmed entries left pending");

    // Another consumer takes 5 and crashes; the stream is trimmed; XAUTOCLAIM in c0 names them
    // as deleted: 5 trimmed, none delivered, none pending.
    send_all(&backend, dest, 10..15).await;
    let mut c1 = backend.consumer(dest, 1).await.expect("c1");
    let taken = poll_for(&mut *c1, 5, Duration::from_secs(10)).await;
    assert_eq!(payloads(&taken), names(10..15));
    c1.close().await;
    assert_eq!(
        query::<usize>(
            &mut node,
            redis::cmd("XTRIM").arg(&dest.name).arg("MAXLEN").arg(0)
        )
        .await,
        5
    );
    let (got, trimmed) = poll_trimmed(&mut *c0, 5, Duration::from_secs(10)).await;
    assert!(got.is_empty(), "trimmed entries delivered: {got:?}");
    assert_eq!(trimmed, 5);
    assert_eq!(unacked().await, 0, "trimmed entries left pending");

    // New entries still come as deliveries, and nothing more is counted as trimmed.
    send_all(&backend, dest, 15..18).await;
    let fresh = poll_for(&mut *c0, 3, Duration::from_secs(10)).await;
    assert_eq!(payloads(&fresh), names(15..18));
    assert_eq!(c0.take_trimmed(), 0);
    c0.ack(&tokens(&fresh)).await.expect("ack");
    c0.close().await;
    backend.teardown(&dests).await.expect("teardown");
    cluster.down().await.expect("cluster down");
}
