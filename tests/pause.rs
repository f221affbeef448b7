//! The `pause` fault model (SIGSTOP: a frozen host, nothing closes, everyone waits for a
//! timeout), beside a kill for Redis in the same run. The paused node must be resumed and the
//! cluster whole again, the ledger must add up, and nothing may be left running. The Redis
//! client must leave the frozen master after its reply timeout and follow the new one as soon
//! as the other nodes name it, long before the pause ends.
//! Ports: Redis 7381-7386 (bus +10000); RabbitMQ AMQP 5790-5792, management 15790-15792,
//! stream 5793-5795, prometheus 15793-15795, distribution 25790-25799, epmd 4409.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

type Row = HashMap<String, String>;

/// The run's timeline shows the node paused, then resumed.
fn pause_on_the_timeline(out: &brokerbench::run::RunOutcome, node: &str) {
    let timeline = std::fs::read_to_string(out.dir.join("timeline.csv")).expect("timeline");
    for what in [format!("pause {node}"), format!("resume {node}")] {
        assert!(timeline.contains(&what), "{what} in {timeline}");
    }
}

/// The faults.csv rows of a kill then a pause, both recovered; returns (kill, pause).
fn kill_and_pause(out: &brokerbench::run::RunOutcome, backend: &str) -> (Row, Row) {
    let summary = read_csv(&out.dir.join("summary.csv"));
    assert_eq!(summary.len(), 1);
    let s = &summary[0];
    assert_eq!(s["backend"], backend);
    assert_eq!(s["status"], "ok", "{s:?}");
    assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
    let faults = read_csv(&out.dir.join("faults.csv"));
    assert_eq!(faults.len(), 2, "{faults:?}");
    let (kill, pause) = (faults[0].clone(), faults[1].clone());
    assert_eq!(kill["action"], "kill");
    assert_eq!(pause["action"], "pause");
    for f in [&kill, &pause] {
        assert_eq!(f["status"], "ok", "{f:?}");
        assert_eq!(f["leader_before"], f["node"], "{f:?}");
        // The topology is read from every node at once, so a frozen one does not hold it up.
        assert!(
            !f["new_leader"].is_empty() && f["new_leader"] != f["node"],
            "another node took over: {f:?}"
        );
        assert_eq!(f["publish_recovered"], "yes", "{f:?}");
        assert!(num(f, "rejoin_s") > 0.0, "{f:?}");
    }
    assert_eq!(kill["recovery"], "restarted", "{kill:?}");
    assert!(pause["recovery"].starts_with("resumed"), "{pause:?}");
    pause_on_the_timeline(out, &pause["node"]);
    eprintln!(
        "{backend}: kill unavailable {} s (new leader after {} s), pause unavailable {} s (new leader after {} s), {}",
        kill["publish_unavailable_s"],
        kill["leader_change_s"],
        pause["publish_unavailable_s"],
        pause["leader_change_s"],
        pause["recovery"]
    );
    (kill, pause)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_master_is_replaced_after_the_node_timeout_and_its_clients_follow_before_the_resume(
) {
    require_redis();
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "redis-pause-it",
        r#"
name = "redis-pause-it"
[workload]
message_size = 256
destinations = 3
rate = 1500
max_in_flight = 128
warmup = "1s"
duration = "24s"
drain_timeout = "20s"
op_timeout = "3s"
[clusters.redis]
base_port = 7381
node_timeout_ms = 2000
[[faults]]
at = "2s"
action = "kill"
target = "leader-of:0"
restart_after = "8s"
[[faults]]
at = "12s"
action = "pause"
target = "leader-of:1"
restart_after = "8s"
[[backends]]
type = "redis-streams"
label = "redis"
reply_timeout_ms = 1500
"#,
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let left = redis_servers_on(7381..=7386);
    assert!(
        left.is_empty(),
        "redis-server left running: {}",
        describe(&left)
    );
    let (_, pause) = kill_and_pause(&out, "redis");
    // A frozen master is given up only after cluster-node-timeout (2 s) has passed: publishing
    // to its shard stops at least that long.
    let stalled = num(&pause, "publish_unavailable_s");
    assert!(
        stalled >= 1.5,
        "publishing stopped for {stalled} s: {pause:?}"
    );
    let change = num(&pause, "leader_change_s");
    assert!(change >= 1.5, "new master {change} s after the pause");
    // The client gives the frozen master up after its reply timeout (1.5 s here) and follows the
    // new master as soon as the other nodes name it, not when the pause ends (8 s). Measured on
    // this 2-core host: publishing and consuming resumed 3.9 to 4.6 s after the pause, within
    // 0.2 s of the topology poll seeing the new master; before the fix both stopped for the
    // whole 8.0 s. Bounds: 1 s under the pause, and 1 s after the new master was seen.
    let pause_s = num(&pause, "restart_at_s") - num(&pause, "at_s");
    for column in ["publish_unavailable_s", "consume_unavailable_s"] {
        let stopped = num(&pause, column);
        assert!(
            stopped < pause_s - 1.0,
            "{column} {stopped} s, not well before the resume ({pause_s} s): {pause:?}"
        );
    }
    assert!(
        stalled <= change + 1.0,
        "publishing resumed {stalled} s after the pause, the new master was seen after {change} s"
    );
    assert_eq!(pause["consume_recovered"], "yes", "{pause:?}");
    // meta.json records the timeouts the figures depend on.
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.dir.join("meta.json")).expect("meta.json"),
    )
    .expect("meta.json is JSON");
    assert_eq!(
        meta["backends"][0]["failure_detection"],
        serde_json::json!({"redis_node_timeout_ms": 2000, "client_reply_timeout_ms": 1500}),
        "{}",
        meta["backends"][0]
    );
}

/// One fault only: a RabbitMQ restart can take long on a busy host, and node faults run in order,
/// so a kill before the pause could push the pause past the end of the load. The kill's figures
/// (a new leader in about half a second) are tests/failover.rs's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_quorum_leader_stops_publishing_for_seconds_and_is_resumed() {
    require_rabbitmq();
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "quorum-pause-it",
        r#"
name = "quorum-pause-it"
[workload]
message_size = 256
destinations = 3
rate = 600
max_in_flight = 128
warmup = "1s"
duration = "24s"
drain_timeout = "30s"
op_timeout = "5s"
[clusters.rabbitmq]
amqp_base_port = 5790
http_base_port = 15790
stream_base_port = 5793
prometheus_base_port = 15793
dist_base_port = 25790
epmd_port = 4409
net_ticktime_s = 6
[[faults]]
at = "3s"
action = "pause"
target = "leader-of:1"
restart_after = "9s"
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
    let summary = read_csv(&out.dir.join("summary.csv"));
    let s = &summary[0];
    assert!(s["status"].starts_with("ok"), "{s:?}");
    assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
    assert_eq!(num(s, "lost"), 0.0, "{s:?}");
    let faults = read_csv(&out.dir.join("faults.csv"));
    assert_eq!(faults.len(), 1, "{faults:?}");
    let pause = &faults[0];
    assert_eq!(pause["action"], "pause");
    assert_eq!(pause["leader_before"], pause["node"], "{pause:?}");
    assert!(pause["recovery"].starts_with("resumed"), "{pause:?}");
    assert_eq!(pause["publish_recovered"], "yes", "{pause:?}");
    // Nothing closed: the peers give the node up after 0.75 to 1.25 of net_ticktime (6 s), the
    // clients connected to it after their heartbeat (5 s, two missed) or operation timeouts.
    let stalled = num(pause, "publish_unavailable_s");
    assert!(
        stalled >= 4.0,
        "publishing stopped for {stalled} s: {pause:?}"
    );
    pause_on_the_timeline(&out, &pause["node"]);
    eprintln!(
        "quorum pause: unavailable {} s, new leader {:?} after {:?} s, {}",
        pause["publish_unavailable_s"],
        pause["new_leader"],
        pause["leader_change_s"],
        pause["recovery"]
    );
}
