//! Integration tests of the local RabbitMQ cluster launcher against real RabbitMQ processes.
//!
//! Ports used (and only these): AMQP 5700-5702, HTTP 15700-15702, stream 5710-5712,
//! prometheus 15710-15712, distribution 25700-25702 (+ 25703-25709 for rabbitmqctl), epmd 4400.
//! The tests hold a lock so that they never run two clusters on these ports at once; each one
//! stops what it started through a guard, even when an assertion fails.

mod common;
use common::{describe, processes_mentioning};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brokerbench::cluster::process::{port_in_use, OwnedProcess};
use brokerbench::cluster::rabbitmq::http::{Credentials, MgmtClient};
use brokerbench::cluster::rabbitmq::{
    epmd_names, LocalRabbitCluster, RabbitClusterConfig, STATE_FILE,
};
use brokerbench::cluster::ClusterError;

/// Serialises the tests (they share the ports). An async mutex: it is held across awaits.
static PORTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const CHILD_DIR_ENV: &str = "BB_RABBIT_TEST_CHILD_DIR";

fn config(dir: &Path) -> RabbitClusterConfig {
    RabbitClusterConfig {
        dir: dir.to_path_buf(),
        nodes: 3,
        amqp_base_port: 5700,
        http_base_port: 15700,
        stream_base_port: 5710,
        prometheus_base_port: 15710,
        dist_base_port: 25700,
        epmd_port: 4400,
        bin_dir: PathBuf::from("/usr/lib/rabbitmq/bin"),
        net_ticktime_s: 10,
        root: None,
        // Not RabbitMQ's default user: every client of the cluster must use the configured one.
        username: "bench".into(),
        password: "bench-pw.1".into(),
        network: Default::default(),
    }
}

fn progress(line: &str) {
    eprintln!("[rabbit] {line}");
}

/// Stops whatever cluster the state file in `dir` describes (and any extra processes) on drop.
struct Guard {
    dir: PathBuf,
    extra: Vec<OwnedProcess>,
}

impl Guard {
    fn new(dir: &Path) -> Self {
        Guard {
            dir: dir.to_path_buf(),
            extra: Vec::new(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(c) = LocalRabbitCluster::attach(&self.dir) {
            c.down_blocking();
        }
        for p in &self.extra {
            p.stop_blocking(Duration::from_secs(20));
        }
    }
}

/// Pids of processes whose command line or environment mentions `text`.
async fn poll_status<F>(
    cluster: &LocalRabbitCluster,
    timeout: Duration,
    what: &str,
    ok: F,
) -> brokerbench::cluster::rabbitmq::RabbitStatus
where
    F: Fn(&brokerbench::cluster::rabbitmq::RabbitStatus) -> bool,
{
    let start = Instant::now();
    loop {
        let last = match cluster.status().await {
            Ok(s) if ok(&s) => return s,
            Ok(s) => LocalRabbitCluster::format_status(&s),
            Err(e) => e.to_string(),
        };
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}; last status:\n{last}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn all_running(s: &brokerbench::cluster::rabbitmq::RabbitStatus) -> bool {
    s.nodes.len() == 3 && s.nodes.iter().all(|(_, up)| *up)
}

/// up → status → kill_node(0) → status shows it down → restart_node(0) → 3 running → down →
/// every recorded pid is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_up_kill_restart_down() {
    common::require_rabbitmq();
    let _lock = PORTS.lock().await;
    let tmp = tempfile::tempdir().expect("create a temp dir");
    let mut guard = Guard::new(tmp.path());

    let t = Instant::now();
    let mut cluster = match LocalRabbitCluster::up(config(tmp.path()), &progress).await {
        Ok(c) => c,
        Err(e) => panic!("up failed: {e}"),
    };
    eprintln!("TIMING up: {:.1}s", t.elapsed().as_secs_f64());
    let mut recorded: Vec<OwnedProcess> = cluster.processes();
    guard.extra = recorded.clone();
    assert_eq!(recorded.len(), 4, "3 beams and 1 epmd: {recorded:?}");
    assert!(recorded.iter().all(|p| p.is_running()), "{recorded:?}");

    // Layout, state file, cookie, pid files, environment.
    let dir = cluster.config().dir.clone();
    assert!(dir.join(STATE_FILE).is_file());
    let cookie = dir.join("home/.erlang.cookie");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cookie).expect("cookie").permissions(),
    );
    assert_eq!(mode & 0o777, 0o400);
    for n in cluster.nodes() {
        let pid_file = std::fs::read_to_string(n.pid_file()).expect("pid file");
        let proc = n.process.as_ref().expect("node process");
        assert_eq!(pid_file.trim(), proc.pid.to_string(), "{}", n.name);
        let environ = std::fs::read(format!("/proc/{}/environ", proc.pid)).expect("environ");
        let environ = String::from_utf8_lossy(&environ);
        assert!(environ.contains("ERL_EPMD_PORT=4400"), "{}", n.name);
        let cmdline =
            std::fs::read_to_string(format!("/proc/{}/cmdline", proc.pid)).unwrap_or_default();
        assert!(cmdline.contains("beam.smp"), "{}: {cmdline}", n.name);
    }
    let names = epmd_names(4400).await.expect("the cluster's epmd answers");
    for short in ["rabbit1", "rabbit2", "rabbit3"] {
        assert!(
            names.iter().any(|n| n == short),
            "{short} not registered with epmd 4400: {names:?}"
        );
    }
    let eps = cluster.endpoints();
    assert_eq!(eps.len(), 3);
    assert_eq!(
        eps[0].amqp_uri,
        "amqp://bench:bench-pw.1@127.0.0.1:5700/%2f"
    );
    // The nodes created the configured user, not guest: the management API answers to it only.
    let as_bench = MgmtClient::new(&eps[0].http, &eps[0].credentials());
    assert_eq!(
        as_bench.running_nodes().await.expect("as bench").len(),
        3,
        "running nodes as bench"
    );
    let guest = Credentials {
        user: "guest".into(),
        password: "guest".into(),
    };
    let refused = MgmtClient::new(&eps[0].http, &guest).running_nodes().await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("401")),
        "guest should be refused: {refused:?}"
    );
    assert_eq!(eps[1].http, "127.0.0.1:15701");
    for port in [5700, 5701, 5702, 5710, 5711, 5712, 15710, 15711, 15712] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "nothing listens on {port}"
        );
    }

    // Status: 3 running members.
    let s = cluster.status().await.expect("status");
    assert!(all_running(&s), "{}", LocalRabbitCluster::format_status(&s));
    let table = LocalRabbitCluster::format_status(&s);
    assert!(
        table.contains("rabbit3@localhost") && table.contains("running"),
        "{table}"
    );
    cluster
        .wait_healthy(Duration::from_secs(10))
        .await
        .expect("healthy right after up");

    // Kill node 1.
    let t = Instant::now();
    let victim = cluster.nodes()[0].process.clone().expect("node 1 process");
    cluster.kill_node(0).await.expect("kill_node(0)");
    assert!(!victim.is_running(), "beam of node 1 still runs");
    assert!(cluster.nodes()[0].process.is_none());
    let s = poll_status(
        &cluster,
        Duration::from_secs(60),
        "rabbit1 to be reported not running",
        |s| {
            s.nodes
                .iter()
                .any(|(n, up)| n == "rabbit1@localhost" && !*up)
                && s.nodes.iter().filter(|(_, up)| *up).count() == 2
        },
    )
    .await;
    eprintln!(
        "TIMING kill seen by the others: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    eprintln!("{}", LocalRabbitCluster::format_status(&s));
    let e = cluster
        .wait_healthy(Duration::from_secs(1))
        .await
        .expect_err("not healthy with a node down");
    assert!(matches!(e, ClusterError::Timeout { .. }), "{e}");
    let e = cluster.kill_node(0).await.expect_err("killing a dead node");
    assert!(matches!(e, ClusterError::Node { .. }), "{e}");
    let e = cluster.kill_node(7).await.expect_err("no node 7");
    assert!(matches!(e, ClusterError::State { .. }), "{e}");

    // Restart it.
    let t = Instant::now();
    cluster.restart_node(0).await.expect("restart_node(0)");
    eprintln!("TIMING restart: {:.1}s", t.elapsed().as_secs_f64());
    let again = cluster.nodes()[0]
        .process
        .clone()
        .expect("new process of node 1");
    assert_ne!(again.pid, victim.pid);
    recorded.push(again.clone());
    guard.extra = recorded.clone();
    let s = poll_status(
        &cluster,
        Duration::from_secs(30),
        "3 running nodes after restart",
        all_running,
    )
    .await;
    eprintln!("{}", LocalRabbitCluster::format_status(&s));
    cluster
        .wait_healthy(Duration::from_secs(30))
        .await
        .expect("healthy after restart");
    let e = cluster
        .restart_node(1)
        .await
        .expect_err("restarting a running node");
    assert!(matches!(e, ClusterError::Node { .. }), "{e}");
    // The state file follows the restart.
    let attached = LocalRabbitCluster::attach(&dir).expect("attach");
    assert_eq!(
        attached.nodes()[0].process.as_ref().map(|p| p.pid),
        Some(again.pid)
    );

    // Down.
    let t = Instant::now();
    cluster.down().await.expect("down");
    eprintln!("TIMING down: {:.1}s", t.elapsed().as_secs_f64());
    for p in &recorded {
        assert!(!p.is_running(), "pid {} still runs after down", p.pid);
    }
    assert!(!dir.join(STATE_FILE).exists(), "state file left behind");
    assert!(!port_in_use(4400), "epmd port still taken");
    assert!(processes_mentioning(&dir.display().to_string()).is_empty());
}

/// A taken AMQP port: PortInUse naming port and field, and nothing is started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_port_starts_nothing() {
    common::require_rabbitmq();
    let _lock = PORTS.lock().await;
    let tmp = tempfile::tempdir().expect("create a temp dir");
    let _guard = Guard::new(tmp.path());
    let _taken = std::net::TcpListener::bind("127.0.0.1:5701").expect("bind 5701 for the test");
    let r = LocalRabbitCluster::up(config(tmp.path()), &progress).await;
    match r {
        Err(ClusterError::PortInUse {
            port, what, fix, ..
        }) => {
            assert_eq!(port, 5701);
            assert!(
                what.contains("AMQP") && what.contains("rabbit2@localhost"),
                "{what}"
            );
            assert!(fix.contains("clusters.rabbitmq.amqp_base_port"), "{fix}");
        }
        Err(e) => panic!("expected PortInUse, got {e}"),
        Ok(c) => {
            c.down().await.ok();
            panic!("up succeeded although port 5701 was taken");
        }
    }
    assert!(!tmp.path().join(STATE_FILE).exists());
    assert!(!port_in_use(4400), "an epmd was started");
    let dir = std::fs::canonicalize(tmp.path()).expect("canonical dir");
    assert!(
        processes_mentioning(&dir.display().to_string()).is_empty(),
        "a process of this cluster was started"
    );

    // A missing binary is reported as such, before anything else.
    let mut cfg = config(tmp.path());
    cfg.bin_dir = tmp.path().join("no-such-bin");
    match LocalRabbitCluster::up(cfg, &progress).await {
        Err(ClusterError::MissingBinary { fix, .. }) => {
            assert!(fix.contains("apt-get install -y rabbitmq-server"), "{fix}")
        }
        Err(e) => panic!("expected MissingBinary, got {e}"),
        Ok(c) => {
            c.down().await.ok();
            panic!("up succeeded without binaries");
        }
    }
    assert!(
        LocalRabbitCluster::attach(tmp.path()).is_err(),
        "attach without a state file"
    );
}

/// Helper run in a child process by `up_in_one_process_down_in_another`: starts the cluster in
/// the folder named by the environment and exits without stopping it (as `cluster up` does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper, run by up_in_one_process_down_in_another"]
async fn child_process_up() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    match LocalRabbitCluster::up(config(&dir), &progress).await {
        Ok(c) => eprintln!(
            "child: cluster up with pids {:?}",
            c.processes().iter().map(|p| p.pid).collect::<Vec<_>>()
        ),
        Err(e) => panic!("child: up failed: {e}"),
    }
}

/// `up` in one process (which then exits), `attach` + `down` in another; a second `up` in the
/// same folder while it runs is refused; stale data of a previous cluster is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_in_one_process_down_in_another() {
    common::require_rabbitmq();
    let _lock = PORTS.lock().await;
    let tmp = tempfile::tempdir().expect("create a temp dir");
    let _guard = Guard::new(tmp.path());
    let stale = tmp
        .path()
        .join("rabbit1/mnesia/stale-file-of-a-previous-cluster");
    std::fs::create_dir_all(stale.parent().expect("parent")).expect("mkdir");
    std::fs::write(&stale, "old").expect("write stale file");

    let exe = std::env::current_exe().expect("test binary path");
    let t = Instant::now();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "child_process_up",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, tmp.path())
        .output()
        .expect("run the child test process");
    eprintln!(
        "TIMING up in child process: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child did not run the helper:\n{stdout}\n{stderr}"
    );
    assert!(!stale.exists(), "stale mnesia data was not removed");

    let cluster = LocalRabbitCluster::attach(tmp.path()).expect("attach");
    let recorded = cluster.processes();
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    assert!(
        recorded.iter().all(|p| p.is_running()),
        "the cluster did not outlive its launcher: {recorded:?}"
    );
    let s = cluster.status().await.expect("status via attach");
    assert!(all_running(&s), "{}", LocalRabbitCluster::format_status(&s));

    // A second cluster in the same folder is refused while this one runs.
    match LocalRabbitCluster::up(config(tmp.path()), &progress).await {
        Err(ClusterError::State { message, .. }) => assert!(
            message.contains("brokerbench cluster down rabbitmq"),
            "{message}"
        ),
        Err(e) => panic!("expected a State error, got {e}"),
        Ok(c) => {
            c.down().await.ok();
            panic!("a second cluster started in the same folder");
        }
    }

    let t = Instant::now();
    cluster.down().await.expect("down after attach");
    eprintln!(
        "TIMING down after attach: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    for p in &recorded {
        assert!(!p.is_running(), "pid {} still runs after down", p.pid);
    }
    assert!(!tmp.path().join(STATE_FILE).exists());
    assert!(LocalRabbitCluster::attach(tmp.path()).is_err());
    assert!(!port_in_use(4400));
}

/// A boot that does not finish in time: a Timeout with the node's log, and everything stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_timeout_stops_everything() {
    common::require_rabbitmq();
    let _lock = PORTS.lock().await;
    let tmp = tempfile::tempdir().expect("create a temp dir");
    let _guard = Guard::new(tmp.path());
    let t = Instant::now();
    let r =
        LocalRabbitCluster::up_with_timeout(config(tmp.path()), &progress, Duration::from_secs(3))
            .await;
    eprintln!(
        "TIMING failed up (3 s timeout) incl. cleanup: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    match r {
        Err(e @ ClusterError::Timeout { .. }) => {
            let text = e.to_string();
            eprintln!("{text}");
            assert!(text.contains("rabbit"), "{text}");
        }
        Err(e) => panic!("expected Timeout, got {e}"),
        Ok(c) => {
            c.down().await.ok();
            panic!("the cluster booted within 3 s");
        }
    }
    assert!(
        !tmp.path().join(STATE_FILE).exists(),
        "state file left behind"
    );
    assert!(!port_in_use(4400), "epmd left running");
    let dir = std::fs::canonicalize(tmp.path()).expect("canonical dir");
    let left = processes_mentioning(&dir.display().to_string());
    assert!(
        left.is_empty(),
        "processes left running: {}",
        describe(&left)
    );
}
