//! SIGKILL of `brokerbench run` in the middle of a run: its watchdog kills the clusters the run
//! started within seconds; and a later run that finds a cluster left behind on its ports (its
//! watchdog killed too) stops it, says so, and runs. Ports: Redis 7361-7366 (bus 17361-17366);
//! RabbitMQ AMQP 5770-5772, HTTP 15770-15772, stream 5773-5775, prometheus 15773-15775,
//! distribution 25770-25779, epmd 4407.

mod common;

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use brokerbench::cluster::process::{find_binary, port_in_use};
use brokerbench::cluster::rabbitmq::LocalRabbitCluster;
use brokerbench::cluster::redis::LocalRedisCluster;
use common::*;

/// How soon after the harness's death nothing it started may be left.
const CLEANUP_LIMIT: Duration = Duration::from_secs(10);

const REDIS_SCENARIO: &str = r#"
name = "crash-redis"
[workload]
message_size = 128
destinations = 1
rate = 300
warmup = "0s"
duration = "60s"
[clusters.redis]
base_port = 7361
[[backends]]
type = "redis-streams"
"#;

const RABBIT_SCENARIO: &str = r#"
name = "crash-rabbit"
[workload]
message_size = 128
destinations = 1
rate = 300
warmup = "0s"
duration = "60s"
[clusters.rabbitmq]
amqp_base_port = 5770
http_base_port = 15770
stream_base_port = 5773
prometheus_base_port = 15773
dist_base_port = 25770
epmd_port = 4407
[[backends]]
type = "rabbitmq-quorum"
"#;

/// Stops, when the test ends however it ends, any cluster still recorded in these folders (the
/// runs' own cleanup is what the test checks, so this only matters when it fails).
struct Leftovers(Vec<PathBuf>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for dir in &self.0 {
            if let Ok(c) = LocalRedisCluster::attach(dir) {
                c.down_blocking();
            } else if let Ok(c) = LocalRabbitCluster::attach(dir) {
                c.down_blocking();
            }
        }
    }
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
        assert!(
            start.elapsed() < timeout,
            "no load within {timeout:?} (is the broker installed?)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pid of the watchdog of the run in `run_dir`.
fn watchdog_of(run_dir: &Path) -> u32 {
    let pids: Vec<u32> = processes_mentioning(&run_dir.display().to_string())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).contains("__watchdog"))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(pids.len(), 1, "one watchdog for {}", run_dir.display());
    pids[0]
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) on a process this test started (or its run's watchdog).
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// Poll `left` until it returns nothing; returns how long that took, or panics with what is left.
fn gone_within(limit: Duration, left: impl Fn() -> Vec<u32>) -> Duration {
    let start = Instant::now();
    loop {
        let pids = left();
        if pids.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "still running {limit:?} after the harness died: {}",
            describe(&pids)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Anything running that mentions the run's folder (nodes, epmd, the watchdog).
fn of_run(run_dir: &Path) -> Vec<u32> {
    processes_mentioning(&run_dir.display().to_string())
}

#[test]
fn sigkill_mid_redis_run_leaves_nothing_and_the_next_run_stops_a_leftover_cluster() {
    assert!(
        find_binary("redis-server").is_some(),
        "redis-server is not installed"
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(tmp.path(), "crash-redis", REDIS_SCENARIO);
    let nodes = || redis_servers_on(7361..=7366);
    let mut leftovers = Leftovers(Vec::new());

    // 1. SIGKILL the harness mid-run: its watchdog kills the six nodes.
    let results = tmp.path().join("first");
    let mut run = start_run(&results, &scenario, &[]);
    let run_dir = wait_for_load(&results, &mut run.0, Duration::from_secs(60));
    leftovers.0.push(run_dir.join("clusters").join("redis"));
    assert_eq!(nodes().len(), 6, "{}", describe(&nodes()));
    let watchdog = watchdog_of(&run_dir);
    sigkill(run.0.id());
    let _ = run.0.wait();
    let took = gone_within(CLEANUP_LIMIT, || [nodes(), of_run(&run_dir)].concat());
    eprintln!("nodes and watchdog (pid {watchdog}) gone {took:?} after the SIGKILL");
    let log = std::fs::read_to_string(run_dir.join("watchdog.log")).expect("watchdog.log");
    assert!(
        log.contains("Redis cluster") && log.contains("killed pids"),
        "{log}"
    );

    // 2. The same run again (it starts: nothing was left), SIGKILLed with its watchdog: its
    // nodes stay behind.
    let results = tmp.path().join("second");
    let mut run = start_run(&results, &scenario, &[]);
    let orphaned_run = wait_for_load(&results, &mut run.0, Duration::from_secs(60));
    leftovers
        .0
        .push(orphaned_run.join("clusters").join("redis"));
    sigkill(watchdog_of(&orphaned_run));
    sigkill(run.0.id());
    let _ = run.0.wait();
    let orphans = nodes();
    assert_eq!(orphans.len(), 6, "{}", describe(&orphans));

    // 3. The same run once more, to its end: it stops the leftover cluster, says so, succeeds.
    let results = tmp.path().join("third");
    let mut run = start_run(&results, &scenario, &["--duration", "1s"]);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = run.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the third run hangs"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = run.0.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).expect("read stderr");
    }
    assert!(status.success(), "{status}: {stderr}");
    let said = format!("left behind by the run in {}", orphaned_run.display());
    assert!(stderr.contains(&said), "{stderr}");
    for pid in &orphans {
        assert!(stderr.contains(&pid.to_string()), "pid {pid}: {stderr}");
    }
    let run_dir = first_run_folder(&results).expect("run");
    let summary = read_csv(&run_dir.join("summary.csv"));
    assert_eq!(summary[0]["status"], "ok");
    assert!(nodes().is_empty(), "{}", describe(&nodes()));
    // A run that ends normally leaves no watchdog either, and the watchdog did nothing.
    assert!(
        of_run(&run_dir).is_empty(),
        "{}",
        describe(&of_run(&run_dir))
    );
    assert!(!run_dir.join("watchdog.log").exists());
}

#[test]
fn sigkill_mid_rabbitmq_run_leaves_nothing() {
    assert!(
        Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").is_file(),
        "rabbitmq-server is not installed"
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(tmp.path(), "crash-rabbit", RABBIT_SCENARIO);
    let results = tmp.path().join("results");
    let mut run = start_run(&results, &scenario, &[]);
    let run_dir = wait_for_load(&results, &mut run.0, Duration::from_secs(150));
    let cluster_dir = run_dir.join("clusters").join("rabbitmq");
    let _leftovers = Leftovers(vec![cluster_dir.clone()]);
    let nodes = processes_mentioning(&cluster_dir.display().to_string());
    assert!(
        nodes.len() >= 4,
        "3 beams and an epmd: {}",
        describe(&nodes)
    );
    sigkill(run.0.id());
    let _ = run.0.wait();
    let took = gone_within(CLEANUP_LIMIT, || of_run(&run_dir));
    eprintln!("beams, epmd and watchdog gone {took:?} after the SIGKILL");
    // What a run of the same scenario needs is free again. A dying process leaves /proc's
    // command line (its memory goes first) a moment before its sockets close: poll.
    let ports = [5770, 5771, 5772, 15770, 5773, 15773, 25770, 4407];
    let start = Instant::now();
    loop {
        let taken: Vec<u16> = ports.into_iter().filter(|p| port_in_use(*p)).collect();
        if taken.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < CLEANUP_LIMIT,
            "ports {taken:?} still taken {CLEANUP_LIMIT:?} after the processes were gone"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
