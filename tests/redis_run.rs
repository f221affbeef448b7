//! A whole scenario run against a real local Redis Cluster that the run starts and stops
//! itself. Ports 7301-7306 (bus 17301-17306) are used by this test only.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_free_fixed_rate_run_accounts_for_every_message() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "redis-it",
        r#"
name = "redis-it"
[workload]
message_size = 512
destinations = 3
rate = 1500
max_in_flight = 128
warmup = "1s"
duration = "6s"
drain_timeout = "15s"
[clusters.redis]
base_port = 7301
[[backends]]
type = "redis-streams"
"#,
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    // Nothing the run started is left.
    assert!(
        redis_servers_on(7301..=7306).is_empty(),
        "redis-server left running: {:?}",
        redis_servers_on(7301..=7306)
    );

    let rows = read_csv(&out.dir.join("summary.csv"));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["status"], "ok");
    assert_eq!(r["ledger_consistent"], "true", "{}", r["ledger_problems"]);
    let (sent, confirmed, received) = (num(r, "sent"), num(r, "confirmed"), num(r, "received"));
    assert_eq!(
        sent,
        1500.0 * 7.0,
        "every message due in warm-up + measurement is sent"
    );
    assert_eq!(confirmed, sent);
    assert_eq!(received, confirmed);
    for col in [
        "lost",
        "duplicates",
        "failed",
        "unconfirmed",
        "phantom",
        "foreign",
    ] {
        assert_eq!(num(r, col), 0.0, "{col}");
    }
    let rate = num(r, "received_per_s");
    assert!(
        (rate - 1500.0).abs() <= 150.0,
        "received {rate} msg/s, target 1500"
    );
    for l in ["e2e", "publish"] {
        let (p50, p99, max) = (
            num(r, &format!("{l}_p50_ms")),
            num(r, &format!("{l}_p99_ms")),
            num(r, &format!("{l}_max_ms")),
        );
        assert!(
            p50 > 0.0 && p50 <= p99 && p99 <= max,
            "{l}: p50 {p50} p99 {p99} max {max}"
        );
    }

    // The other result files.
    let ts = read_csv(&out.dir.join("timeseries.csv"));
    assert!(ts.len() >= 7, "{} timeseries rows", ts.len());
    assert!(
        ts.iter().any(|r| r["phase"] == "warmup") && ts.iter().any(|r| r["phase"] == "measure")
    );
    let ts_sent: f64 = ts.iter().map(|r| num(r, "sent")).sum();
    assert_eq!(ts_sent, sent, "the time series adds up to the ledger");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.dir.join("meta.json")).expect("meta"))
            .expect("json");
    assert_eq!(
        meta["backends"][0]["broker_version"]
            .as_str()
            .map(|v| v.starts_with("7.")),
        Some(true)
    );
    let dests = meta["backends"][0]["topology"]["destinations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(dests.len(), 3);
    let mut leaders: Vec<&str> = dests.iter().filter_map(|d| d["leader"].as_str()).collect();
    leaders.sort();
    leaders.dedup();
    assert_eq!(
        leaders.len(),
        3,
        "the three streams are spread over the three masters: {dests:?}"
    );
    assert!(meta["host"]["cores"].as_u64().unwrap_or(0) >= 1);
    assert!(out.dir.join("scenario.toml").is_file());
    let hlog =
        std::fs::read_to_string(out.dir.join("hdr").join("redis-streams.hlog")).expect("hlog");
    assert!(hlog.lines().any(|l| l.starts_with("Tag=e2e,")));
    // CPU per second of each of the six nodes, of the harness and of the whole host, while the
    // load ran.
    let cpu = read_csv(&out.dir.join("cpu.csv"));
    let mut nodes: Vec<&str> = cpu.iter().map(|r| r["node"].as_str()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 8, "{nodes:?}");
    assert!(nodes.contains(&"harness") && nodes.contains(&"host"));
    assert!(cpu
        .iter()
        .all(|r| num(r, "cpu") >= 0.0 && num(r, "cpu") <= 2.5));
    assert!(
        cpu.iter().filter(|r| r["node"] == "harness").count() >= 5,
        "a harness sample per second"
    );
    // The three masters took writes: each used some CPU.
    assert!(
        cpu.iter()
            .filter(|r| r["node"] != "harness")
            .any(|r| num(r, "cpu") > 0.0),
        "no broker node used CPU"
    );
    // Replica lag once a second: each stream's master has one replica, so three nodes.
    let lag = read_csv(&out.dir.join("replica_lag.csv"));
    let mut replicas: Vec<&str> = lag.iter().map(|r| r["node"].as_str()).collect();
    replicas.sort();
    replicas.dedup();
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    assert!(lag.len() >= 15, "{} lag samples", lag.len());
    // Bounds: 0 <= lower bound <= upper bound.
    for r in &lag {
        let (min, max) = (num(r, "lag_messages_min"), num(r, "lag_messages"));
        assert!(0.0 <= min && min <= max, "{r:?}");
    }
}
