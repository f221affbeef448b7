//! Clusters from the Debian 13 broker root (`broker_root = "debian13"`): a 6-node Redis 8.0
//! cluster and a 3-node RabbitMQ 4.0 cluster run a short scenario whose stream master or queue
//! leader is SIGKILLed and restarted, with no message lost; and a run whose harness is SIGKILLed
//! leaves no process and no mount behind. The root is built (`tools/broker-root.sh`) when
//! missing; a test fails, never skips, when it cannot be built.
//! Ports: Redis 7631-7636 (bus 17631-17636); RabbitMQ AMQP 5780-5782, HTTP 15780-15782,
//! stream 5783-5785, prometheus 15783-15785, distribution 25780-25789, epmd 4410. The tests take
//! turns (`TURN`): each uses all of them.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// One test at a time: they share the ports, and two clusters of each at once are too much for
/// two cores.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// How soon after the harness's death nothing it started may be left.
const CLEANUP_LIMIT: Duration = Duration::from_secs(15);

const REDIS_SECTION: &str = r#"
[clusters.redis]
base_port = 7631
node_timeout_ms = 1000
broker_root = "debian13"
"#;

const RABBIT_SECTION: &str = r#"
[clusters.rabbitmq]
amqp_base_port = 5780
http_base_port = 15780
stream_base_port = 5783
prometheus_base_port = 15783
dist_base_port = 25780
epmd_port = 4410
broker_root = "debian13"
"#;

/// Every mount, in any mount namespace a live process is in, whose line mentions `needle`
/// ("pid: line").
fn mounts_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            continue;
        };
        out.extend(
            text.lines()
                .filter(|l| l.contains(needle))
                .map(|l| format!("{pid}: {l}")),
        );
    }
    out
}

/// Processes whose root folder is `root` (anything still running from it).
fn processes_in_root(root: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            brokerbench::cluster::process::is_alive(*pid)
                && std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root)
        })
        .collect()
}

/// Nothing runs from the root, nothing mentioning `run_dir` runs, and no mount of the root or
/// of the run folder is left in any namespace; polled for up to `limit` (a killed process takes
/// a moment to go).
fn assert_nothing_left(root: &Path, run_dir: &Path, limit: Duration) {
    let start = Instant::now();
    loop {
        let procs = [
            processes_in_root(root),
            processes_mentioning(&run_dir.display().to_string()),
        ]
        .concat();
        let mounts = [
            mounts_mentioning(&root.display().to_string()),
            mounts_mentioning(&run_dir.display().to_string()),
        ]
        .concat();
        if procs.is_empty() && mounts.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "left {limit:?} after the end: processes {}; mounts {mounts:?}",
            describe(&procs)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The checks of a run whose destination 0 lost its leader (killed, restarted after 3 s):
/// completed, consistent ledger, nothing lost, the node rejoined.
fn check_failover_run(out: &brokerbench::run::RunOutcome, backend: &str, nodes: usize) {
    let summary = read_csv(&out.dir.join("summary.csv"));
    assert_eq!(summary.len(), 1);
    let s = &summary[0];
    assert_eq!(s["backend"], backend);
    assert_eq!(s["status"], "ok", "{s:?}");
    assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
    assert!(num(s, "confirmed") > 0.0, "{s:?}");
    assert_eq!(num(s, "lost"), 0.0, "{s:?}");
    let faults = read_csv(&out.dir.join("faults.csv"));
    assert_eq!(faults.len(), 1, "{faults:?}");
    let kill = &faults[0];
    assert_eq!(kill["action"], "kill");
    assert_eq!(kill["status"], "ok", "{kill:?}");
    assert_eq!(kill["leader_before"], kill["node"], "{kill:?}");
    assert!(
        !kill["new_leader"].is_empty() && kill["new_leader"] != kill["node"],
        "{kill:?}"
    );
    assert_eq!(kill["publish_recovered"], "yes", "{kill:?}");
    assert!(num(kill, "rejoin_s") > 0.0, "{kill:?}");
    // CPU sampling in /proc/<pid> sees the nodes in the root like host processes.
    let cpu = read_csv(&out.dir.join("cpu.csv"));
    let busy: std::collections::BTreeSet<&str> = cpu
        .iter()
        .filter(|r| !["harness", "host"].contains(&r["node"].as_str()) && num(r, "cpu") > 0.0)
        .map(|r| r["node"].as_str())
        .collect();
    assert!(busy.len() >= nodes, "CPU sampled for {busy:?} only");
    eprintln!(
        "{backend}: confirmed {} lost {} duplicates {}; {} killed, leader change {} s, \
         unavailable {} s, rejoin {} s",
        s["confirmed"],
        s["lost"],
        s["duplicates"],
        kill["node"],
        kill["leader_change_s"],
        kill["publish_unavailable_s"],
        kill["rejoin_s"]
    );
}

/// Whether any file directly in `dir` (a log folder) contains `text`.
fn some_log_says(dir: &Path, text: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(text)))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_8_from_the_root_fails_over_without_loss_and_leaves_nothing() {
    let root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "d13-redis",
        &format!(
            r#"
name = "d13-redis"
[workload]
message_size = 256
destinations = 3
rate = 1000
warmup = "1s"
duration = "10s"
drain_timeout = "20s"
op_timeout = "3s"
{REDIS_SECTION}
[[faults]]
at = "2s"
action = "kill"
target = "leader-of:0"
restart_after = "3s"
[[backends]]
type = "redis-streams"
label = "redis-8"
wait_replicas = 1
wait_timeout_ms = 2000
"#
        ),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let cluster_dir = out.dir.join("clusters").join("redis");
    assert_nothing_left(&root, &out.dir, Duration::from_secs(10));
    // The nodes were Redis 8.0 (the host's is 7.0).
    for port in 7631..=7636 {
        let node = cluster_dir.join(format!("node-{port}"));
        assert!(
            some_log_says(&node, "Redis version=8.0."),
            "{}: no \"Redis version=8.0.\" in its log",
            node.display()
        );
    }
    check_failover_run(&out, "redis-8", 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_4_from_the_root_loses_no_confirmed_message_and_leaves_nothing() {
    let root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "d13-rabbit",
        &format!(
            r#"
name = "d13-rabbit"
[workload]
message_size = 256
destinations = 3
rate = 600
warmup = "1s"
duration = "14s"
drain_timeout = "30s"
op_timeout = "5s"
{RABBIT_SECTION}
[[faults]]
at = "3s"
action = "kill"
target = "leader-of:0"
restart_after = "3s"
[[backends]]
type = "rabbitmq-quorum"
label = "quorum-4"
confirms = true
persistent = true
"#
        ),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let cluster_dir = out.dir.join("clusters").join("rabbitmq");
    assert_nothing_left(&root, &out.dir, Duration::from_secs(10));
    for n in 1..=3 {
        let logs = cluster_dir.join(format!("rabbit{n}")).join("log");
        assert!(
            some_log_says(&logs, "Starting RabbitMQ 4.0."),
            "{}: no \"Starting RabbitMQ 4.0.\" in the logs",
            logs.display()
        );
    }
    check_failover_run(&out, "quorum-4", 3);
}

/// Poll until the run in `results` has written load intervals; returns its folder.
fn wait_for_load(results: &Path, child: &mut std::process::Child, timeout: Duration) -> PathBuf {
    let start = Instant::now();
    loop {
        if let Some(dir) = first_run_folder(results) {
            let rows = std::fs::read_to_string(dir.join("timeseries.csv"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if rows >= 3 {
                return dir;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the run ended ({status}) before its load started: {err}");
        }
        assert!(start.elapsed() < timeout, "no load within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_harness_leaves_no_process_and_no_mount() {
    let root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    // Both clusters start before the first backend's load.
    let scenario = write_scenario(
        tmp.path(),
        "d13-crash",
        &format!(
            r#"
name = "d13-crash"
[workload]
message_size = 128
rate = 300
warmup = "0s"
duration = "60s"
{REDIS_SECTION}
{RABBIT_SECTION}
[[backends]]
type = "redis-streams"
[[backends]]
type = "rabbitmq-quorum"
"#
        ),
    );
    let results = tmp.path().join("results");
    let mut run = start_run(&results, &scenario, &[]);
    let run_dir = tokio::task::block_in_place(|| {
        wait_for_load(&results, &mut run.0, Duration::from_secs(180))
    });

    // Six redis-servers, three beams and an epmd run from the root, as host processes; their
    // mounts are in their own namespaces, none in this one.
    let in_root = processes_in_root(&root);
    assert!(in_root.len() >= 10, "{}", describe(&in_root));
    let here = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !here.contains(&root.display().to_string()),
        "a mount of the root in the harness's namespace:\n{here}"
    );
    let redis_dir = run_dir.join("clusters").join("redis");
    let node = redis_servers_on(7631..=7631);
    assert_eq!(node.len(), 1, "{}", describe(&node));
    let theirs = std::fs::read_to_string(format!("/proc/{}/mountinfo", node[0])).expect("theirs");
    assert!(
        theirs.contains(&redis_dir.display().to_string()) && theirs.contains(" /proc "),
        "the node's namespace has /proc and its cluster folder:\n{theirs}"
    );

    // SIGKILL the harness: its watchdog kills every node; the namespaces end with them.
    // SAFETY: kill(2) on the brokerbench process this test started.
    unsafe {
        libc::kill(run.0.id() as i32, libc::SIGKILL);
    }
    let _ = run.0.wait();
    let t0 = Instant::now();
    tokio::task::block_in_place(|| assert_nothing_left(&root, &run_dir, CLEANUP_LIMIT));
    eprintln!(
        "processes and mounts gone {:?} after the SIGKILL",
        t0.elapsed()
    );
    let log = std::fs::read_to_string(run_dir.join("watchdog.log")).expect("watchdog.log");
    assert!(log.contains("killed pids"), "{log}");
}

/// A classic mirrored queue on the root's RabbitMQ 4.0 is refused before anything starts, with
/// the reason, while the same backend on the host's RabbitMQ 3.10 is valid.
#[test]
fn mirrored_queues_on_the_roots_rabbitmq_4_are_refused_before_anything_starts() {
    let root = debian13_root();
    assert!(root.join("usr/lib/rabbitmq/bin/rabbitmq-server").exists());
    let tmp = tempfile::tempdir().expect("temp dir");
    let text = |broker_root: &str| {
        format!(
            "name = \"mirrored-on-4\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n\
             [clusters.rabbitmq]\namqp_base_port = 5780\n{broker_root}\n\
             [[backends]]\ntype = \"rabbitmq-mirrored\"\n"
        )
    };
    let validate = |name: &str, body: String| {
        let path = tmp.path().join(name);
        std::fs::write(&path, body).expect("write scenario");
        std::process::Command::new(env!("CARGO_BIN_EXE_brokerbench"))
            .args(["validate", &path.display().to_string()])
            .output()
            .expect("run brokerbench validate")
    };
    let refused = validate("on-4.toml", text("broker_root = \"debian13\""));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backends[0].type"), "{stderr}");
    assert!(stderr.contains("4.0"), "names the version: {stderr}");
    assert!(
        stderr.to_lowercase().contains("mirror"),
        "says why: {stderr}"
    );
    let host = validate("on-host.toml", text(""));
    assert_eq!(
        host.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&host.stderr)
    );
}
