//! A replay (`workload.mode = "replay"`) on real clusters, in one scenario run: Redis Cluster
//! (3 masters + 3 replicas), RabbitMQ 3.10's stream over AMQP 0-9-1 and RabbitMQ 4.0's stream
//! over the stream protocol (the Debian 13 root) are each filled with messages while no consumer
//! runs, then new consumers (a new Redis group at id 0, offset "first") read the whole history:
//! every message once, and a replay rate above 0.
//! Ports: Redis 7581-7586 (bus 17581-17586); RabbitMQ 3.10 AMQP 5851-5853, HTTP 15851-15853,
//! stream 5651-5653, prometheus 15951-15953, distribution 25851-25859, epmd 4413; RabbitMQ 4.0
//! AMQP 5861-5863, HTTP 15861-15863, stream 5661-5663, prometheus 15961-15963, distribution
//! 25861-25869, epmd 4414.

mod common;

use common::*;

const MESSAGES: u64 = 30_000;

const SCENARIO: &str = r#"
name = "replay-it"
[workload]
mode = "replay"
messages = 30000
message_size = 512
destinations = 3
rate = "max"
max_in_flight = 256
duration = "30s"
drain_timeout = "30s"
op_timeout = "5s"

[clusters.redis]
base_port = 7581

[clusters.rabbitmq]
amqp_base_port = 5851
http_base_port = 15851
stream_base_port = 5651
prometheus_base_port = 15951
dist_base_port = 25851
epmd_port = 4413

[clusters.rabbitmq-4]
kind = "rabbitmq"
broker_root = "debian13"
amqp_base_port = 5861
http_base_port = 15861
stream_base_port = 5661
prometheus_base_port = 15961
dist_base_port = 25861
epmd_port = 4414

[[backends]]
type = "redis-streams"
cluster = "redis"
label = "redis"
read_count = 500

[[backends]]
type = "rabbitmq-stream"
cluster = "rabbitmq"
label = "stream"

[[backends]]
type = "rabbitmq-stream-native"
cluster = "rabbitmq-4"
label = "native"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_reads_every_filled_message_once_on_every_stream() {
    require_redis();
    require_rabbitmq();
    let _root = debian13_root();
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(tmp.path(), "replay-it", SCENARIO);
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    assert!(
        redis_servers_on(7581..=7586).is_empty(),
        "redis-server left running"
    );
    let summary = read_csv(&out.dir.join("summary.csv"));
    let series = read_csv(&out.dir.join("timeseries.csv"));
    let timeline = read_csv(&out.dir.join("timeline.csv"));
    check_report(&out.dir);
    for label in ["redis", "stream", "native"] {
        let s = row(&summary, label);
        assert_eq!(s["status"], "ok", "{s:?}");
        assert_eq!(s["mode"], "replay", "{s:?}");
        assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
        // The fill wrote exactly the budget, all confirmed; the replay read each one once.
        for col in ["sent", "confirmed", "received"] {
            assert_eq!(num(s, col), MESSAGES as f64, "{label} {col}: {s:?}");
        }
        for col in ["duplicates", "lost", "undelivered", "phantom", "foreign"] {
            assert_eq!(num(s, col), 0.0, "{label} {col}: {s:?}");
        }
        assert_eq!(s["drained"], "true", "{s:?}");
        assert!(num(s, "fill_per_s") > 0.0, "{s:?}");
        assert!(num(s, "replay_per_s") > 0.0, "{s:?}");
        // The rates are the counts over their own phases.
        let replay_s = num(s, "replay_s");
        assert!(
            (num(s, "replay_per_s") * replay_s - MESSAGES as f64).abs() < 1.0,
            "{s:?}"
        );
        // Nothing was read during the fill: no consumer ran then.
        let fill_rows: Vec<&Row> = series
            .iter()
            .filter(|r| r["backend"] == label && r["phase"] == "fill")
            .collect();
        assert!(!fill_rows.is_empty(), "{label}: no fill interval");
        assert!(
            fill_rows.iter().all(|r| num(r, "received") == 0.0),
            "{label}: received during the fill: {fill_rows:?}"
        );
        let read: f64 = series
            .iter()
            .filter(|r| r["backend"] == label && r["phase"] == "replay")
            .map(|r| num(r, "received"))
            .sum();
        assert_eq!(read, MESSAGES as f64, "{label}: read during the replay");
        let phases: Vec<&str> = timeline
            .iter()
            .filter(|e| e["backend"] == label && e["kind"] == "phase")
            .map(|e| e["name"].as_str())
            .collect();
        assert_eq!(phases, ["fill", "replay"], "{label}");
        eprintln!(
            "{label}: fill {:.0} msg/s in {} s, replay {:.0} msg/s in {} s",
            num(s, "fill_per_s"),
            s["fill_s"],
            num(s, "replay_per_s"),
            s["replay_s"]
        );
    }
}

/// C5's replay half and the report's Replay section, from the run's own folder.
fn check_report(dir: &std::path::Path) {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("results.json")).expect("results.json"),
    )
    .expect("results.json parses");
    let c5 = json["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["claim"] == "C5")
        .expect("C5");
    assert_eq!(c5["outcome"], "supported", "{c5}");
    let numbers: Vec<&str> = c5["numbers"]
        .as_array()
        .expect("numbers")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    for label in ["redis", "stream", "native"] {
        assert!(
            numbers.iter().any(|n| n.starts_with("replay: ")
                && n.contains(&format!("{label} ("))
                && n.contains(&format!("read {MESSAGES} of {MESSAGES} messages"))),
            "{label}: {numbers:?}"
        );
    }
    let reason = c5["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("RabbitMQ's streams replayed too"),
        "{reason}"
    );
    let written = brokerbench::report::document::write_report(dir).expect("report");
    let md = std::fs::read_to_string(&written.markdown).expect("report.md");
    assert!(md.contains("## Replay"), "no Replay section");
    assert!(
        md.contains("rabbitmq-quorum: cannot replay: a queue deletes what it delivered"),
        "{md}"
    );
}

/// Quorum and mirrored queues are refused for a replay, by the registry's capability, before
/// anything starts.
#[test]
fn a_queue_is_refused_for_a_replay() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "replay-queue",
        r#"
name = "replay-queue"
[workload]
mode = "replay"
messages = 1000
message_size = 512
rate = "max"
duration = "10s"
[[backends]]
type = "rabbitmq-quorum"
"#,
    );
    let path = scenario.to_string_lossy().to_string();
    let (code, _out, err) = brokerbench(&["validate", &path], tmp.path(), &[]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("backends[0].type")
            && err.contains("cannot replay: a queue deletes what it delivered"),
        "{err}"
    );
}
