//! Failover runs on real clusters that the runs start and stop themselves: the stream's Redis
//! master and the quorum queue's leader are SIGKILLed mid-run and restarted, then a consumer is
//! killed with unacked messages; the runs must complete, record the recovery in faults.csv,
//! add up, and leave no process behind.
//! Ports: Redis 7331-7336 (bus +10000); RabbitMQ AMQP 5750-5752, management 15750-15752,
//! stream 5753-5755, prometheus 15753-15755, distribution 25750-25759, epmd 4405.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

type Row = HashMap<String, String>;

/// The checks every node fault must pass; returns (the faults.csv rows, the summary row).
fn check_run(out: &brokerbench::run::RunOutcome, backend: &str) -> (Vec<Row>, Row) {
    let summary = read_csv(&out.dir.join("summary.csv"));
    assert_eq!(summary.len(), 1);
    let s = summary[0].clone();
    assert_eq!(s["backend"], backend);
    assert_eq!(s["status"], "ok", "{s:?}");
    assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
    let faults = read_csv(&out.dir.join("faults.csv"));
    assert_eq!(faults.len(), 2, "{faults:?}");
    let kill = &faults[0];
    assert_eq!(kill["action"], "kill");
    assert_eq!(kill["status"], "ok", "{kill:?}");
    // The node killed was the destination's leader, and another node took over.
    assert!(!kill["node"].is_empty());
    assert_eq!(kill["leader_before"], kill["node"], "{kill:?}");
    assert!(
        !kill["new_leader"].is_empty() && kill["new_leader"] != kill["node"],
        "{kill:?}"
    );
    let change = num(kill, "leader_change_s");
    assert!(change > 0.0 && change < 30.0, "leader change {change}");
    assert_eq!(kill["publish_recovered"], "yes", "{kill:?}");
    let unavailable = num(kill, "publish_unavailable_s");
    assert!(
        unavailable > 0.0 && unavailable < 30.0,
        "unavailable {unavailable}"
    );
    // It was restarted and rejoined.
    assert!(num(kill, "rejoin_s") > 0.0, "{kill:?}");
    let timeline = std::fs::read_to_string(out.dir.join("timeline.csv")).expect("timeline");
    assert!(
        timeline.contains(&format!("kill {}", kill["node"])),
        "{timeline}"
    );
    assert!(
        timeline.contains(&format!("restart {}", kill["node"])),
        "{timeline}"
    );
    // The killed consumer's unacked messages were processed by the other one.
    let consumer = &faults[1];
    assert_eq!(consumer["action"], "kill-consumer");
    assert_eq!(consumer["status"], "ok", "{consumer:?}");
    let held = num(consumer, "abandoned");
    assert!(
        held > 0.0,
        "the consumer died holding unacked messages: {consumer:?}"
    );
    assert_eq!(num(consumer, "reprocessed"), held, "{consumer:?}");
    assert!(num(consumer, "redelivery_last_s") >= num(consumer, "redelivery_first_s"));
    (faults, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_streams_master_fails_over_and_the_run_accounts_for_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "redis-failover-it",
        r#"
name = "redis-failover-it"
[workload]
message_size = 256
destinations = 3
consumers_per_destination = 2
rate = 1500
max_in_flight = 128
warmup = "1s"
duration = "14s"
drain_timeout = "20s"
op_timeout = "3s"
[clusters.redis]
base_port = 7331
node_timeout_ms = 1000
[[faults]]
at = "2s"
action = "kill"
target = "leader-of:0"
restart_after = "4s"
[[faults]]
at = "9s"
action = "kill-consumer"
target = "consumer:1"
[[backends]]
type = "redis-streams"
label = "redis"
claim_min_idle_ms = 1000
claim_interval_ms = 200
"#,
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let left = redis_servers_on(7331..=7336);
    assert!(
        left.is_empty(),
        "redis-server left running: {}",
        describe(&left)
    );
    let (faults, s) = check_run(&out, "redis");
    assert!(
        faults[0]["node"].starts_with("127.0.0.1:733"),
        "{:?}",
        faults[0]
    );
    // Without WAIT, Redis may lose acknowledged writes in a failover: report, do not assert.
    eprintln!(
        "redis master kill: lost {} duplicates {} indeterminate {} unavailable {} s",
        s["lost"], s["duplicates"], s["indeterminate"], faults[0]["publish_unavailable_s"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_quorum_leader_loses_no_confirmed_message() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "quorum-failover-it",
        r#"
name = "quorum-failover-it"
[workload]
message_size = 256
destinations = 3
consumers_per_destination = 2
rate = 600
max_in_flight = 128
warmup = "1s"
duration = "20s"
drain_timeout = "30s"
op_timeout = "5s"
[clusters.rabbitmq]
amqp_base_port = 5750
http_base_port = 15750
stream_base_port = 5753
prometheus_base_port = 15753
dist_base_port = 25750
epmd_port = 4405
[[faults]]
at = "3s"
action = "kill"
target = "leader-of:0"
restart_after = "3s"
[[faults]]
at = "16s"
action = "kill-consumer"
target = "consumer:1"
[[backends]]
type = "rabbitmq-quorum"
label = "quorum"
confirms = true
persistent = true
"#,
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let cluster_dir = out.dir.join("clusters").join("rabbitmq");
    let left = wait_until_gone(&cluster_dir.display().to_string(), Duration::from_secs(10));
    assert!(left.is_empty(), "beam/epmd processes left: {left}");
    let (faults, s) = check_run(&out, "quorum");
    assert!(faults[0]["node"].starts_with("rabbit"), "{:?}", faults[0]);
    // RabbitMQ's guarantee for quorum queues with confirms and persistent messages.
    assert_eq!(num(&s, "lost"), 0.0, "{s:?}");
    assert!(num(&s, "confirmed") > 0.0);
    assert!(
        std::fs::metadata(out.dir.join("lost.csv")).is_err(),
        "lost.csv lists lost messages"
    );
}
