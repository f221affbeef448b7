//! Redelivery at a large prefetch, on real clusters: a Redis consumer (XREADGROUP COUNT 500)
//! and a quorum queue consumer (prefetch 500) are each killed while holding at least 300
//! unacked messages (the fault's `hold`); everything they held is processed again by the other
//! consumer (Redis: its XAUTOCLAIM loop; RabbitMQ: the requeue), nothing is lost, and C5 says
//! what each needed from the application.
//! Ports: Redis 7581-7586 (bus 17581-17586); RabbitMQ 3.10 AMQP 5851-5853, HTTP 15851-15853,
//! stream 5651-5653, prometheus 15951-15953, distribution 25851-25859, epmd 4413 (the ports of
//! tests/replay.rs: test binaries run one after another).

mod common;

use common::*;

const HOLD: f64 = 300.0;

const SCENARIO: &str = r#"
name = "redelivery-it"
[workload]
message_size = 256
destinations = 1
consumers_per_destination = 2
rate = 1000
max_in_flight = 256
warmup = "1s"
duration = "8s"
drain_timeout = "20s"
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

[[faults]]
at = "2s"
action = "kill-consumer"
target = "consumer:0"
hold = 300

[[backends]]
type = "redis-streams"
label = "redis"
read_count = 500
claim_min_idle_ms = 1000
claim_interval_ms = 200

[[backends]]
type = "rabbitmq-quorum"
label = "quorum"
prefetch = 500
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_holding_hundreds_has_all_of_them_redelivered() {
    require_redis();
    require_rabbitmq();
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(tmp.path(), "redelivery-it", SCENARIO);
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    assert!(
        redis_servers_on(7581..=7586).is_empty(),
        "redis-server left running"
    );
    let summary = read_csv(&out.dir.join("summary.csv"));
    let faults = read_csv(&out.dir.join("faults.csv"));
    for label in ["redis", "quorum"] {
        let s = row(&summary, label);
        assert_eq!(s["status"], "ok", "{s:?}");
        assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
        for col in ["lost", "undelivered", "phantom"] {
            assert_eq!(num(s, col), 0.0, "{label} {col}: {s:?}");
        }
        let f = row(&faults, label);
        assert_eq!(f["action"], "kill-consumer");
        assert_eq!(f["status"], "ok", "{f:?}");
        let held = num(f, "abandoned");
        assert!(held >= HOLD, "{label} held only {held}: {f:?}");
        assert_eq!(
            num(f, "reprocessed"),
            held,
            "{label}: everything held came again: {f:?}"
        );
        assert!(num(f, "redelivery_last_s") > 0.0, "{f:?}");
        // Consumer 0 died; the destination's other consumer, 1, got everything it held.
        assert_eq!(
            f["redelivered_to"],
            format!("consumer:1={held}"),
            "{label}: {f:?}"
        );
        eprintln!(
            "{label}: held {held}, redelivered {} ({}) from {} s to {} s after the kill; duplicates {}",
            f["reprocessed"], f["redelivered_to"], f["redelivery_first_s"], f["redelivery_last_s"], s["duplicates"]
        );
    }
    // C5 compares them and says what each needed from the application.
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.dir.join("results.json")).expect("results.json"),
    )
    .expect("results.json parses");
    let c5 = json["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["claim"] == "C5")
        .expect("C5");
    let numbers: Vec<&str> = c5["numbers"]
        .as_array()
        .expect("numbers")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert!(
        numbers
            .iter()
            .any(|n| n.starts_with("reprocessing: redis (")
                && n.ends_with(
                    "needs from the application: a claiming loop (XAUTOCLAIM every 200 ms, taking \
                 entries idle for claim_min_idle_ms = 1000 ms)"
                )),
        "{numbers:?}"
    );
    assert!(
        numbers.iter().any(|n| n.starts_with("reprocessing: for comparison, quorum (")
            && n.ends_with("needs from the application: nothing (the broker requeues when the channel closes)")),
        "{numbers:?}"
    );
    eprintln!("C5: {} ({})", c5["outcome"], c5["reason"]);
}
