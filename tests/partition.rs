//! The `partition` fault model (`network = "namespaces"`: every node in a network namespace of
//! its own behind a bridge; a partition sets the node's link down while it keeps running). The
//! cut-off leader must be replaced after the failure detection, publishing must resume through
//! the new leader, the healed node must rejoin, the ledger must add up, and nothing may be left
//! behind: no broker process, no namespace, no link — also when an assertion fails (the guard).
//! Needs root (namespaces, veth pairs, a bridge).
//! Ports: Redis 7601-7606 (bus +10000), network bb7601-*, 10.251.177.0/24; RabbitMQ AMQP
//! 5871-5873, management 15871-15873, stream 5671-5673, prometheus 15971-15973, distribution
//! 25871-25880, epmd 4415 (one per namespace), network bb5871-*, 10.251.239.0/24.

mod common;

use std::time::Duration;

use brokerbench::cluster::netns::ClusterNet;
use common::*;

/// Leaves nothing behind, however the test ends: SIGKILLs what still runs inside the network's
/// namespaces (only processes of this test's clusters can be there), then removes the links,
/// the namespaces and the bridge.
struct NetGuard(ClusterNet);

impl NetGuard {
    fn new(first_port: u16, nodes: usize) -> Self {
        NetGuard(ClusterNet::plan(first_port, nodes))
    }

    fn namespaces_listed(&self) -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| self.0.nodes.iter().any(|x| x.ns == *n))
            .map(str::to_string)
            .collect()
    }

    /// Nothing of the network is left (checked with `ip netns list` and /sys/class/net).
    fn assert_gone(&self) {
        let listed = self.namespaces_listed();
        assert!(listed.is_empty(), "namespaces left: {listed:?}");
        assert!(!self.0.any_left(), "links or namespaces left: {:?}", self.0);
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        for n in &self.0.nodes {
            let Ok(out) = std::process::Command::new("ip")
                .args(["netns", "pids", &n.ns])
                .output()
            else {
                continue;
            };
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: a plain kill(2) of a process inside this test's namespace.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let left = self.0.remove();
        if !left.is_empty() {
            eprintln!("could not remove {left:?}");
        }
    }
}

fn require_root() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "network = \"namespaces\" needs root: run these tests as root"
    );
}

/// The run's timeline shows the node cut off, then healed.
fn partition_on_the_timeline(out: &brokerbench::run::RunOutcome, node: &str) {
    let timeline = std::fs::read_to_string(out.dir.join("timeline.csv")).expect("timeline");
    for what in [format!("partition {node}"), format!("heal {node}")] {
        assert!(timeline.contains(&what), "{what} in {timeline}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_redis_master_is_failed_over_and_rejoins_as_a_replica() {
    require_redis();
    require_root();
    let guard = NetGuard::new(7601, 6);
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "redis-partition-it",
        r#"
name = "redis-partition-it"
[workload]
message_size = 256
destinations = 3
rate = 1000
max_in_flight = 128
warmup = "1s"
duration = "16s"
drain_timeout = "20s"
op_timeout = "3s"
[clusters.redis]
base_port = 7601
node_timeout_ms = 2000
network = "namespaces"
[[faults]]
at = "2s"
action = "partition"
target = "leader-of:0"
restart_after = "8s"
[[backends]]
type = "redis-streams"
label = "redis"
reply_timeout_ms = 1500
[[backends]]
type = "redis-streams"
label = "redis-wait1"
wait_replicas = 1
reply_timeout_ms = 1500
"#,
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let left = wait_until_gone(
        &out.dir.join("clusters").display().to_string(),
        Duration::from_secs(10),
    );
    assert!(left.is_empty(), "redis-server left running: {left}");
    guard.assert_gone();

    let summary = read_csv(&out.dir.join("summary.csv"));
    let faults = read_csv(&out.dir.join("faults.csv"));
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert_eq!(faults.len(), 2, "{faults:?}");
    for (s, f) in summary.iter().zip(&faults) {
        let backend = &s["backend"];
        assert_eq!(&f["backend"], backend);
        assert_eq!(s["status"], "ok", "{s:?}");
        assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
        assert_eq!(f["action"], "partition");
        assert_eq!(f["status"], "ok", "{f:?}");
        assert_eq!(f["leader_before"], f["node"], "{f:?}");
        assert!(
            f["node"].starts_with("10.251.177."),
            "the node is named by its namespace's address: {f:?}"
        );
        assert!(
            !f["new_leader"].is_empty() && f["new_leader"] != f["node"],
            "its replica took over: {f:?}"
        );
        assert_eq!(f["publish_recovered"], "yes", "{f:?}");
        // Healed, and the cluster whole again: `heal` waits until every node agrees on every
        // role and each master with slots has its replica linked, so the old master is back
        // as the new master's replica.
        assert_eq!(f["recovery"], "healed", "{f:?}");
        assert!(num(f, "rejoin_s") > 0.0, "{f:?}");
        // Nobody sees the node go: its peers give it up after cluster-node-timeout (2 s).
        let change = num(f, "leader_change_s");
        assert!(
            change >= 1.5,
            "{backend}: new master {change} s after the partition"
        );
        let stalled = num(f, "publish_unavailable_s");
        assert!(
            stalled >= 1.5,
            "{backend}: publishing stopped for {stalled} s: {f:?}"
        );
        partition_on_the_timeline(&out, &f["node"]);
        eprintln!(
            "{backend} partition: unavailable {} s, new master {} after {} s, rejoined after {} s, lost {}",
            f["publish_unavailable_s"], f["new_leader"], f["leader_change_s"], f["rejoin_s"], s["lost"]
        );
    }
    let cut_s =
        |f: &std::collections::HashMap<String, String>| num(f, "restart_at_s") - num(f, "at_s");
    // Without WAIT the client follows the promoted replica long before the heal (8 s); what the
    // cut-off master had confirmed but not yet passed on is lost, and counted as lost.
    let plain = &faults[0];
    assert_eq!(plain["backend"], "redis");
    let stalled = num(plain, "publish_unavailable_s");
    assert!(
        stalled < cut_s(plain) - 1.0,
        "publishing resumed {stalled} s after the cut, not well before the heal: {plain:?}"
    );
    // WAIT 1: nothing confirmed is lost, but the promoted replica has no replica of its own
    // until the old master rejoins, so every WAIT fails until the heal.
    let wait1 = (&summary[1], &faults[1]);
    assert_eq!(wait1.1["backend"], "redis-wait1");
    assert_eq!(num(wait1.0, "lost"), 0.0, "{:?}", wait1.0);
    assert!(
        num(wait1.1, "publish_unavailable_s") >= cut_s(wait1.1) - 0.5,
        "WAIT 1 cannot succeed before the heal: {:?}",
        wait1.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_quorum_leader_is_replaced_before_the_heal_and_the_ledger_adds_up() {
    require_rabbitmq();
    require_root();
    let guard = NetGuard::new(5871, 3);
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "quorum-partition-it",
        r#"
name = "quorum-partition-it"
[workload]
message_size = 256
destinations = 3
rate = 600
max_in_flight = 128
warmup = "1s"
duration = "30s"
drain_timeout = "30s"
op_timeout = "5s"
[clusters.rabbitmq]
amqp_base_port = 5871
http_base_port = 15871
stream_base_port = 5671
prometheus_base_port = 15971
dist_base_port = 25871
epmd_port = 4415
net_ticktime_s = 4
network = "namespaces"
[[faults]]
at = "3s"
action = "partition"
target = "leader-of:1"
restart_after = "20s"
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
    guard.assert_gone();
    let summary = read_csv(&out.dir.join("summary.csv"));
    let s = &summary[0];
    assert!(s["status"].starts_with("ok"), "{s:?}");
    assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
    // Publisher confirms on a quorum queue: nothing confirmed is lost.
    assert_eq!(num(s, "lost"), 0.0, "{s:?}");
    let faults = read_csv(&out.dir.join("faults.csv"));
    assert_eq!(faults.len(), 1, "{faults:?}");
    let f = &faults[0];
    assert_eq!(f["action"], "partition");
    assert_eq!(f["leader_before"], f["node"], "{f:?}");
    assert!(
        f["node"].contains("@10.251.239."),
        "a long node name on the namespace's address: {f:?}"
    );
    assert!(f["recovery"].starts_with("healed"), "{f:?}");
    assert_eq!(f["publish_recovered"], "yes", "{f:?}");
    assert!(
        !f["new_leader"].is_empty() && f["new_leader"] != f["node"],
        "another member leads: {f:?}"
    );
    // Nothing closed: the peers give the node up after 0.75 to 1.25 of net_ticktime (4 s).
    let change = num(f, "leader_change_s");
    assert!(
        change >= 2.5,
        "new leader {change} s after the partition: {f:?}"
    );
    // The queue took confirmed publishes again while its old leader was still cut off: the
    // clients on the cut-off node notice after their AMQP heartbeat (5 s, two missed) or
    // their operation timeout, then reconnect elsewhere.
    let stalled = num(f, "publish_unavailable_s");
    let cut_s = num(f, "restart_at_s") - num(f, "at_s");
    assert!(
        stalled >= 3.0 && stalled < cut_s - 1.0,
        "publishing stopped for {stalled} s of a {cut_s} s partition: {f:?}"
    );
    partition_on_the_timeline(&out, &f["node"]);
    eprintln!(
        "quorum partition: unavailable {} s, new leader {} after {} s, rejoined after {} s, {}",
        f["publish_unavailable_s"],
        f["new_leader"],
        f["leader_change_s"],
        f["rejoin_s"],
        f["recovery"]
    );
}
