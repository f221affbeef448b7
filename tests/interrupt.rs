//! Ctrl-C during a run: the load stops, what was measured is written, the clusters the run
//! started are stopped, and the exit code is 130. Ports 7311-7316 (bus 17311-17316).

mod common;

use std::path::Path;

use std::time::{Duration, Instant};

use common::*;

/// SIGINT, then wait (up to 60 s) for the exit.
fn interrupt(child: &mut std::process::Child) -> std::process::ExitStatus {
    // SAFETY: plain kill(2) on the child we spawned.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            panic!("brokerbench did not stop within 60 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Poll `running` (nodes up) until all `nodes` were up and then one went (the fault's kill).
fn wait_for_the_kill(
    child: &mut std::process::Child,
    nodes: usize,
    timeout: Duration,
    running: impl Fn() -> usize,
) {
    let start = Instant::now();
    let mut seen_all = false;
    loop {
        let n = running();
        seen_all |= n == nodes;
        if seen_all && n + 1 == nodes {
            return;
        }
        if start.elapsed() > timeout || child.try_wait().ok().flatten().is_some() {
            panic!("the fault did not happen (nodes running: {n})");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The run folder after Ctrl-C during a node fault: faults.csv has the fault, on a node whose
/// name starts with `node`, not restarted; the backend is interrupted and its ledger adds up.
fn assert_interrupted_during_the_fault(dir: &Path, node: &str) {
    let faults = read_csv(&dir.join("faults.csv"));
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(faults[0]["node"].starts_with(node), "{:?}", faults[0]);
    assert!(
        faults[0]["status"].contains("interrupted before restarting"),
        "{:?}",
        faults[0]
    );
    assert!(
        faults[0]["restart_at_s"].is_empty(),
        "no restart after Ctrl-C"
    );
    let summary = read_csv(&dir.join("summary.csv"));
    assert_eq!(summary[0]["status"], "interrupted");
    assert_eq!(
        summary[0]["ledger_consistent"], "true",
        "{}",
        summary[0]["ledger_problems"]
    );
    assert!(dir.join("report.md").exists(), "the report was written");
}

#[test]
fn sigint_mid_run_stops_everything_and_keeps_the_results() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "interrupted",
        r#"
name = "interrupted"
[workload]
message_size = 256
destinations = 3
rate = 1000
duration = "120s"
[clusters.redis]
base_port = 7311
[[backends]]
type = "redis-streams"
[[backends]]
type = "redis-streams"
label = "never-runs"
"#,
    );
    let results = tmp.path().join("results");
    let mut guard = start_run(&results, &scenario, &[]);
    let child = &mut guard.0;
    // Wait until the load has produced a few intervals.
    let start = Instant::now();
    let timeseries = loop {
        let found = first_run_folder(&results).map(|d| d.join("timeseries.csv"));
        if let Some(ts) = found.filter(|p| {
            std::fs::read_to_string(p)
                .map(|t| t.lines().count() >= 3)
                .unwrap_or(false)
        }) {
            break ts;
        }
        if start.elapsed() > Duration::from_secs(60) || child.try_wait().ok().flatten().is_some() {
            panic!("the run did not get going");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !redis_servers_on(7311..=7316).is_empty(),
        "the run's cluster is up"
    );
    let status = interrupt(child);
    assert_eq!(status.code(), Some(130));
    assert!(
        redis_servers_on(7311..=7316).is_empty(),
        "redis-server left running: {}",
        describe(&redis_servers_on(7311..=7316))
    );
    let dir = timeseries.parent().expect("run dir");
    let rows = read_csv(&dir.join("summary.csv"));
    assert_eq!(rows.len(), 1, "the second backend never started");
    assert_eq!(rows[0]["status"], "interrupted");
    assert_eq!(
        rows[0]["ledger_consistent"], "true",
        "{}",
        rows[0]["ledger_problems"]
    );
    assert!(num(&rows[0], "sent") > 0.0);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta"))
            .expect("json");
    assert!(meta["ended_utc"].is_string(), "meta.json was completed");
    assert!(
        results.join("overview.md").is_file(),
        "the overview was refreshed"
    );
}

/// Ctrl-C while a fault has a node down and its restart is still to come: the run stops at once,
/// nothing is restarted, every node is stopped (the killed one is already gone), and faults.csv
/// says what happened. Ports 7341-7346 (bus 17341-17346).
#[test]
fn sigint_while_a_node_is_down_stops_everything() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "interrupted-fault",
        r#"
name = "interrupted-fault"
[workload]
message_size = 256
destinations = 3
rate = 600
duration = "120s"
[clusters.redis]
base_port = 7341
node_timeout_ms = 1000
[[faults]]
at = "1s"
action = "kill"
target = "leader-of:0"
restart_after = "100s"
[[backends]]
type = "redis-streams"
"#,
    );
    let results = tmp.path().join("results");
    let mut guard = start_run(&results, &scenario, &[]);
    let child = &mut guard.0;
    wait_for_the_kill(child, 6, Duration::from_secs(90), || {
        redis_servers_on(7341..=7346).len()
    });
    let status = interrupt(child);
    assert_eq!(status.code(), Some(130));
    assert!(
        redis_servers_on(7341..=7346).is_empty(),
        "redis-server left running: {}",
        describe(&redis_servers_on(7341..=7346))
    );
    let dir = first_run_folder(&results).expect("a run folder");
    assert_interrupted_during_the_fault(&dir, "127.0.0.1:");
}

/// Pids of beam.smp processes (RabbitMQ nodes) whose command line mentions `dir`.
fn beams_in(dir: &Path) -> Vec<u32> {
    processes_mentioning(&dir.display().to_string())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).contains("beam"))
                .unwrap_or(false)
        })
        .collect()
}

/// As `make failover-test` interrupted while a quorum queue's leader is down: exit 130, no
/// beam or epmd left, the queues are not torn down one by one (deleting a quorum queue with a
/// member down waits; the whole cluster is stopped instead), and the results are written.
/// Ports: AMQP 5760-5762, HTTP 15760-15762, stream 5763-5765, prometheus 15763-15765,
/// distribution 25760-25762, epmd 4406.
#[test]
fn sigint_while_a_rabbitmq_leader_is_down_stops_everything() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "interrupted-rabbit",
        r#"
name = "interrupted-rabbit"
[workload]
message_size = 256
destinations = 3
rate = 600
warmup = "1s"
duration = "120s"
[clusters.rabbitmq]
amqp_base_port = 5760
http_base_port = 15760
stream_base_port = 5763
prometheus_base_port = 15763
dist_base_port = 25760
epmd_port = 4406
[[faults]]
at = "2s"
action = "kill"
target = "leader-of:0"
restart_after = "100s"
[[backends]]
type = "rabbitmq-quorum"
label = "quorum"
"#,
    );
    let results = tmp.path().join("results");
    let mut guard = start_run(&results, &scenario, &[]);
    let child = &mut guard.0;
    let cluster_dir =
        |results: &Path| first_run_folder(results).map(|d| d.join("clusters").join("rabbitmq"));
    wait_for_the_kill(child, 3, Duration::from_secs(120), || {
        cluster_dir(&results).map_or(0, |d| beams_in(&d).len())
    });
    let run_dir = first_run_folder(&results).expect("a run folder");
    let status = interrupt(child);
    assert_eq!(status.code(), Some(130));
    let left = wait_until_gone(
        &run_dir
            .join("clusters")
            .join("rabbitmq")
            .display()
            .to_string(),
        Duration::from_secs(10),
    );
    assert!(left.is_empty(), "beam/epmd processes left: {left}");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).expect("read stderr");
    }
    assert!(
        !stderr.contains("teardown"),
        "queues were torn down after Ctrl-C: {stderr}"
    );
    assert_interrupted_during_the_fault(&run_dir, "rabbit");
}
