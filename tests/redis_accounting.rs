//! What `lost` means, on a real Redis Cluster: a consumer that is behind leaves messages in the
//! stream (undelivered, not lost), and messages consumed behind the harness's back are lost,
//! exactly those, each named in lost.csv. Ports 7351-7356 (bus 17351-17356), this file only.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use redis::Value;

const PORTS: std::ops::RangeInclusive<u16> = 7351..=7356;

fn scenario(name: &str, consumer_delay: &str) -> String {
    format!(
        r#"
name = "{name}"
[workload]
message_size = 256
destinations = 1
rate = 500
max_in_flight = 64
duration = "5s"
drain_timeout = "2s"
consumer_delay = "{consumer_delay}"
[clusters.redis]
base_port = 7351
[[backends]]
type = "redis-streams"
label = "redis"
read_count = 50
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_undelivered_and_a_stolen_message_is_lost() {
    require_redis();
    let tmp = tempfile::tempdir().expect("temp dir");

    // A consumer that needs 4 ms per message cannot keep up with 500 msg/s: when the drain
    // stops, the stream still holds what it has not read. Undelivered, not lost.
    let slow = write_scenario(tmp.path(), "slow", &scenario("slow", "4ms"));
    let out = run_quietly(&slow, &tmp.path().join("slow")).await;
    let rows = read_csv(&out.dir.join("summary.csv"));
    let r = &rows[0];
    assert_eq!(r["status"], "ok");
    assert_eq!(r["ledger_consistent"], "true", "{}", r["ledger_problems"]);
    assert!(num(r, "undelivered") > 0.0, "{r:?}");
    assert_eq!(num(r, "lost"), 0.0, "{r:?}");
    assert_eq!(r["drained"], "false");
    assert_eq!(r["backlog_known"], "true");
    assert_eq!(
        num(r, "received") + num(r, "undelivered"),
        num(r, "confirmed"),
        "{r:?}"
    );

    // A thief in the harness's own consumer group reads 50 entries and acks them: the broker
    // no longer holds them for anyone. Exactly those are lost.
    let fast = write_scenario(tmp.path(), "steal", &scenario("steal", "0ms"));
    let thief = tokio::spawn(steal(50));
    let out = run_quietly(&fast, &tmp.path().join("steal")).await;
    let stolen = thief.await.expect("thief task");
    assert_eq!(stolen.len(), 50, "the thief got {} entries", stolen.len());
    let rows = read_csv(&out.dir.join("summary.csv"));
    let r = &rows[0];
    assert_eq!(r["ledger_consistent"], "true", "{}", r["ledger_problems"]);
    assert_eq!(num(r, "lost"), 50.0, "{r:?}");
    assert_eq!(num(r, "undelivered"), 0.0, "{r:?}");
    let listed: HashSet<(u32, u64)> = read_csv(&out.dir.join("lost.csv"))
        .iter()
        .map(|l| {
            assert_eq!(l["fate"], "lost");
            (num(l, "producer") as u32, num(l, "seq") as u64)
        })
        .collect();
    assert_eq!(listed, stolen);
    assert!(
        redis_servers_on(PORTS).is_empty(),
        "redis-server left running"
    );
}

/// Wait for the run's stream to appear, then take `n` entries from its consumer group as
/// another consumer would, and ack them. Returns their (producer, sequence).
async fn steal(n: usize) -> HashSet<(u32, u64)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (client, key) = loop {
        assert!(Instant::now() < deadline, "the run's stream never appeared");
        if let Some(found) = find_stream().await {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut conn = client
        .get_async_connection()
        .await
        .expect("thief connects to the cluster");
    let mut stolen = HashSet::new();
    while stolen.len() < n {
        assert!(Instant::now() < deadline, "stole only {}", stolen.len());
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("brokerbench")
            .arg("thief")
            .arg("COUNT")
            .arg(n - stolen.len())
            .arg("BLOCK")
            .arg(50)
            .arg("STREAMS")
            .arg(&key)
            .arg(">")
            .query_async(&mut conn)
            .await
            .expect("XREADGROUP");
        for (id, payload) in entries(&reply) {
            let _: i64 = redis::cmd("XACK")
                .arg(&key)
                .arg("brokerbench")
                .arg(&id)
                .query_async(&mut conn)
                .await
                .expect("XACK");
            let h = brokerbench::payload::Header::decode(&payload).expect("a harness payload");
            stolen.insert((h.producer, h.seq));
        }
    }
    stolen
}

/// The cluster client and the run's stream key, once the run has created it.
async fn find_stream() -> Option<(redis::cluster::ClusterClient, String)> {
    for port in PORTS {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let Ok(mut c) = client.get_multiplexed_async_connection().await else {
            continue;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("{bb-*")
            .query_async(&mut c)
            .await
            .unwrap_or_default();
        if let Some(key) = keys.into_iter().next() {
            let seeds: Vec<String> = PORTS.map(|p| format!("redis://127.0.0.1:{p}/")).collect();
            let cluster = redis::cluster::ClusterClient::new(seeds).ok()?;
            return Some((cluster, key));
        }
    }
    None
}

/// (entry id, payload) of an XREADGROUP reply.
fn entries(reply: &Value) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Value::Array(streams) = reply else {
        return out;
    };
    for s in streams {
        let Value::Array(kv) = s else { continue };
        let Some(Value::Array(items)) = kv.get(1) else {
            continue;
        };
        for item in items {
            let Value::Array(parts) = item else { continue };
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) =
                (parts.first(), parts.get(1))
            else {
                continue;
            };
            if let Some(Value::BulkString(p)) = fields.get(1) {
                out.push((String::from_utf8_lossy(id).into_owned(), p.clone()));
            }
        }
    }
    out
}
