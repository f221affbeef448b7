//! `rabbitmq-stream-native` (the stream protocol, on rabbitmq-stream-client) against a real
//! 3-node RabbitMQ 4.0 cluster from the Debian 13 root, in one scenario run (one cluster start):
//! a fault-free stream, a super stream of 3 partitions spread over the nodes and a stream whose
//! leader is killed and restarted, and one whose leader is frozen (SIGSTOP) and resumed, one
//! consumer each; then, in a run of its own, a consumer killed
//! while another waits as the single active consumer's standby, which takes over from the stored
//! offset. And the backend is
//! refused on the host's RabbitMQ 3.10 before anything starts.
//! Ports: RabbitMQ AMQP 5810-5812, HTTP 15810-15812, stream 5813-5815, prometheus
//! 15813-15815, distribution 25810-25819, epmd 4411.

mod common;

use std::collections::BTreeSet;

use common::*;

const CLUSTER: &str = r#"
[clusters.rabbitmq]
amqp_base_port = 5810
http_base_port = 15810
stream_base_port = 5813
prometheus_base_port = 15813
dist_base_port = 25810
epmd_port = 4411
broker_root = "debian13"
"#;

/// One test at a time: they share the ports.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SCENARIO: &str = r#"
name = "native-stream"
[workload]
message_size = 256
destinations = 3
producers_per_destination = 1
consumers_per_destination = 1
rate = 600
warmup = "1s"
duration = "12s"
drain_timeout = "30s"
op_timeout = "5s"

{CLUSTER}
[[faults]]
at = "3s"
action = "kill"
target = "leader-of:0"
restart_after = "3s"
backends = ["native-kill"]

[[faults]]
at = "3s"
action = "pause"
target = "leader-of:0"
restart_after = "6s"
backends = ["native-pause"]

[[backends]]
type = "rabbitmq-stream-native"
label = "native"
store_offset_every = 100

[[backends]]
type = "rabbitmq-stream-native"
label = "native-super"
super_stream_partitions = 3
destinations = 1

[[backends]]
type = "rabbitmq-stream-native"
label = "native-kill"

[[backends]]
type = "rabbitmq-stream-native"
label = "native-pause"
"#;

/// Completed, the ledger adds up, no confirmed message lost, and (with `all_received`) every
/// confirmed message received.
fn check_accounted(s: &Row, all_received: bool) {
    assert_eq!(s["status"], "ok", "{s:?}");
    assert_eq!(s["type"], "rabbitmq-stream-native");
    assert_eq!(s["guarantee"], "majority-written (no fsync)", "{s:?}");
    assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
    assert!(num(s, "confirmed") > 1000.0, "{s:?}");
    assert_eq!(num(s, "lost"), 0.0, "{s:?}");
    assert_eq!(s["backlog_known"], "true", "{s:?}");
    if all_received {
        assert_eq!(num(s, "undelivered"), 0.0, "{s:?}");
    }
    eprintln!(
        "{}: sent {} confirmed {} received {} duplicates {} lost {} undelivered {} e2e p99 {} ms",
        s["backend"],
        s["sent"],
        s["confirmed"],
        s["received"],
        s["duplicates"],
        s["lost"],
        s["undelivered"],
        s["e2e_p99_ms"]
    );
}

fn topology(meta: &serde_json::Value, backend: &str) -> Vec<(String, String, usize)> {
    let b = meta["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["label"] == backend)
        .unwrap_or_else(|| panic!("{backend} not in meta.json"));
    b["topology"]["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_string(),
                d["leader"].as_str().unwrap_or_default().to_string(),
                d["replicas"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_streams_on_rabbitmq_4_account_for_every_message_under_faults() {
    let _root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "native-stream",
        &SCENARIO.replace("{CLUSTER}", CLUSTER),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let summary = read_csv(&out.dir.join("summary.csv"));
    let faults = read_csv(&out.dir.join("faults.csv"));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.dir.join("meta.json")).expect("meta.json"),
    )
    .expect("meta.json parses");
    let version = meta["brokers"][0]["version"].as_str().unwrap_or_default();
    assert!(version.starts_with("4.0."), "{}", meta["brokers"]);

    // Fault-free: sent == confirmed == received, nothing lost, no duplicates.
    let s = row(&summary, "native");
    check_accounted(s, true);
    for col in ["confirmed", "received"] {
        assert_eq!(num(s, col), num(s, "sent"), "{col}: {s:?}");
    }
    assert_eq!(num(s, "duplicates"), 0.0, "{s:?}");
    assert_eq!(s["drained"], "true", "{s:?}");

    // The super stream: every message once, over 3 partitions led by 3 different nodes.
    let s = row(&summary, "native-super");
    check_accounted(s, true);
    assert_eq!(num(s, "received"), num(s, "sent"), "{s:?}");
    let topo = topology(&meta, "native-super");
    let dest = format!("{}-", topo[0].0);
    let partitions: Vec<&(String, String, usize)> =
        topo.iter().filter(|(n, ..)| n.starts_with(&dest)).collect();
    assert_eq!(partitions.len(), 3, "{topo:?}");
    let leaders: BTreeSet<&str> = partitions.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(
        leaders.len(),
        3,
        "partitions spread over the nodes: {topo:?}"
    );
    assert!(partitions.iter().all(|(.., r)| *r == 2), "{topo:?}");

    // The leader kill: a new leader, publishing recovered, every confirmed message received
    // (duplicates are allowed and counted). Before the consumers moved a stuck group to a new
    // one (backlog::Groups), the consumer of the killed leader's stream stayed a standby behind
    // a dead member in about half the runs, and what it never read counted as undelivered.
    let s = row(&summary, "native-kill");
    check_accounted(s, true);
    assert_eq!(s["drained"], "true", "{s:?}");
    let kill = row(&faults, "native-kill");
    assert_eq!(kill["action"], "kill");
    assert_eq!(kill["status"], "ok", "{kill:?}");
    assert_eq!(kill["leader_before"], kill["node"], "{kill:?}");
    assert!(
        !kill["new_leader"].is_empty() && kill["new_leader"] != kill["node"],
        "{kill:?}"
    );
    assert_eq!(kill["publish_recovered"], "yes", "{kill:?}");
    assert!(num(kill, "rejoin_s") > 0.0, "{kill:?}");
    eprintln!(
        "leader kill: {} killed, new leader {} after {} s, publishing unavailable {} s",
        kill["node"], kill["new_leader"], kill["leader_change_s"], kill["publish_unavailable_s"]
    );

    // The leader frozen, then resumed: the run goes on and ends (the crate's producer closes
    // itself with a blocking call; dropped on a runtime thread while its node was frozen, it
    // once stopped the whole run), and no confirmed message is lost.
    let s = row(&summary, "native-pause");
    check_accounted(s, false);
    let pause = row(&faults, "native-pause");
    assert_eq!(pause["action"], "pause");
    assert_eq!(pause["status"], "ok", "{pause:?}");
    eprintln!(
        "leader pause: {} frozen 6 s, publishing unavailable {} s, consuming {} s, {} received of {} confirmed",
        pause["node"], pause["publish_unavailable_s"], pause["consume_unavailable_s"], s["received"], s["confirmed"]
    );
}

/// Two consumers per stream form a single active consumer group: when the active one is killed
/// (consumer 1, or whichever of its destination receives if consumer 1 is the standby), the other
/// takes over from the offset stored on the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumers_standby_takes_over_from_the_stored_offset() {
    let _root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "native-consumer",
        &format!(
            r#"
name = "native-consumer"
[workload]
message_size = 256
destinations = 3
consumers_per_destination = 2
rate = 600
warmup = "1s"
duration = "8s"
drain_timeout = "30s"
op_timeout = "5s"
{CLUSTER}
[[faults]]
at = "3s"
action = "kill-consumer"
target = "consumer:1"
[[backends]]
type = "rabbitmq-stream-native"
label = "native-consumer"
store_offset_every = 500
"#
        ),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let summary = read_csv(&out.dir.join("summary.csv"));
    let faults = read_csv(&out.dir.join("faults.csv"));
    // Consumer 1 or, if it is its group's standby (it receives nothing), the
    // active consumer of its destination dies; the other takes over from the stored offset, so
    // what the dead one held comes again (redelivery), nothing is lost, and at most one store
    // interval (500 per destination) plus what was held is read twice.
    let s = row(&summary, "native-consumer");
    check_accounted(s, true);
    let ck = row(&faults, "native-consumer");
    assert_eq!(ck["action"], "kill-consumer");
    assert_eq!(ck["status"], "ok", "{ck:?}");
    let abandoned = num(ck, "abandoned");
    assert!(abandoned > 0.0, "{ck:?}");
    assert_eq!(
        num(ck, "reprocessed"),
        abandoned,
        "all it held came again: {ck:?}"
    );
    assert!(num(s, "duplicates") <= 500.0 + abandoned, "{s:?}");
    eprintln!(
        "consumer kill: held {abandoned}, redelivered from {} s to {} s after, duplicates {}",
        ck["redelivery_first_s"], ck["redelivery_last_s"], s["duplicates"]
    );
}

/// A consumer slower than its producer leaves messages in the stream when the drain stops: the
/// backend tells how many (the entries after the highest offset its consumers handed out), so
/// they count as undelivered, not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_stream_still_holds_at_the_drain_deadline_is_undelivered_not_lost() {
    let _root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "native-backlog",
        &format!(
            r#"
name = "native-backlog"
[workload]
message_size = 256
destinations = 1
rate = 1000
consumer_delay = "4ms"
warmup = "0s"
duration = "4s"
drain_timeout = "1s"
{CLUSTER}
[[backends]]
type = "rabbitmq-stream-native"
label = "native-slow"
"#
        ),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let summary = read_csv(&out.dir.join("summary.csv"));
    let s = row(&summary, "native-slow");
    assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
    assert_eq!(s["backlog_known"], "true", "{s:?}");
    assert_eq!(s["drained"], "false", "{s:?}");
    let missing = num(s, "confirmed") - num(s, "received");
    assert!(missing > 500.0, "the consumer fell behind: {s:?}");
    assert_eq!(num(s, "undelivered"), missing, "{s:?}");
    assert_eq!(num(s, "lost"), 0.0, "{s:?}");
    eprintln!(
        "slow consumer: confirmed {} received {} undelivered {}",
        s["confirmed"], s["received"], s["undelivered"]
    );
}

/// On the host's RabbitMQ 3.10 the backend is refused before anything starts, saying why.
#[test]
fn the_native_stream_is_refused_on_rabbitmq_3_10() {
    require_rabbitmq();
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("native-on-3.toml");
    std::fs::write(
        &path,
        "name = \"native-on-3\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n\
         [clusters.rabbitmq]\namqp_base_port = 5810\n\
         [[backends]]\ntype = \"rabbitmq-stream-native\"\n",
    )
    .expect("write scenario");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brokerbench"))
        .args(["validate", &path.display().to_string()])
        .output()
        .expect("run brokerbench validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backends[0].type"), "{stderr}");
    assert!(stderr.contains("3.11 or later"), "says why: {stderr}");
    assert!(stderr.contains("debian13"), "says what to use: {stderr}");
}
