//! The run's watchdog: a small process that kills the run's clusters when the harness dies
//! without stopping them (SIGKILL, the OOM killer, an abort), so no broker outlives its run.
//!
//! Design: `brokerbench run` re-executes its own binary as `brokerbench __watchdog --parent PID
//! --parent-start TICKS --run-dir DIR` before it starts the first node of a run. The watchdog
//! - runs in a session of its own, so the terminal's Ctrl-C and a signal to the harness's process
//!   group leave it alone (the harness's own Ctrl-C cleanup is slow for RabbitMQ, and a second
//!   kill during it must still leave nothing);
//! - holds the read end of a pipe whose write end only the harness holds (Rust opens pipes
//!   close-on-exec, so the brokers it spawns do not inherit it): when the harness ends, however
//!   it ends, the kernel closes it and the watchdog reads end-of-file at once. It also checks
//!   every [`POLL`] that the harness (pid and start time, so a recycled pid does not count) is
//!   alive, in case the pipe was inherited somewhere;
//! - when the harness is gone, SIGKILLs every process recorded in the state file of each cluster
//!   folder under `<run dir>/clusters/` (pid and marker checked, as always) with what they
//!   started, and writes what it did to `<run dir>/watchdog.log`. SIGKILL, not a graceful stop:
//!   the run's results are lost anyway, and a graceful RabbitMQ stop takes 20-30 s;
//! - exits without touching anything when the harness writes `q` (after it has stopped its
//!   clusters itself).
//!
//! Not chosen: `prctl(PR_SET_PDEATHSIG)` in each node's `pre_exec`. It fires when the *thread*
//! that forked the node exits, not the process (tokio's blocking threads come and go), and it is
//! not inherited by what a node forks (Erlang's `erl_child_setup`, a daemonized Redis's real
//! server process). A watchdog process reads the same state files that `cluster down` reads,
//! so what it kills is exactly what the run recorded, with the pid and marker checks.
//!
//! Limits: a node spawned in the microseconds before its pid reached the state file is not
//! known to the watchdog; the next run that needs its port finds it there and stops it
//! (`cluster::leftovers::free_port`). A SIGKILL of the watchdog itself leaves the same case.
//! `brokerbench cluster up` starts no watchdog: its clusters are meant to outlive it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::RunError;
use crate::cluster::leftovers::{kill_cluster, known_cluster, RunOwner};

/// How often the watchdog looks whether the harness still runs.
const POLL: Duration = Duration::from_millis(200);
/// How long the harness waits for a disarmed watchdog to exit before killing it.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// What the harness writes to tell the watchdog to exit without touching anything.
const DISARM: u8 = b'q';
/// Name of the hidden subcommand.
pub const SUBCOMMAND: &str = "__watchdog";
/// The watchdog's log inside the run folder (written only when it acts).
pub const LOG_FILE: &str = "watchdog.log";

/// The harness's end of a running watchdog. Dropping it without [`Watchdog::disarm`] closes the
/// pipe, which the watchdog takes for the harness's death.
#[derive(Debug)]
pub struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Start `exe __watchdog` for the run in `run_dir`, watching this process.
    pub fn spawn(exe: &Path, run_dir: &Path) -> Result<Self, RunError> {
        let failed = |source: std::io::Error| RunError::Watchdog {
            exe: exe.to_path_buf(),
            source,
        };
        let me = RunOwner::this_process(run_dir).ok_or_else(|| {
            failed(std::io::Error::other(
                "cannot read this process's start time in /proc/self/stat",
            ))
        })?;
        let mut cmd = Command::new(exe);
        cmd.arg(SUBCOMMAND)
            .arg("--parent")
            .arg(me.pid.to_string())
            .arg("--parent-start")
            .arg(me.start_ticks.to_string())
            .arg("--run-dir")
            .arg(&me.run_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::cluster::process::in_new_session(&mut cmd);
        let mut child = cmd.spawn().map_err(failed)?;
        let pipe = child.stdin.take();
        Ok(Watchdog { child, pipe })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The run has stopped its clusters: tell the watchdog to exit and wait for it (killing it
    /// if it does not exit within [`EXIT_WAIT`]).
    pub fn disarm(mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(&[DISARM]);
        }
        let start = Instant::now();
        while start.elapsed() < EXIT_WAIT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the watchdog heard from the harness.
enum Heard {
    Disarm,
    /// End of file (or an error): the harness is gone.
    Closed,
}

/// The body of `brokerbench __watchdog`: wait until the harness (`parent`, started at
/// `parent_start`) is gone or disarms the watchdog; in the first case kill the clusters of the
/// run in `run_dir`. Returns the exit code.
pub fn watch(parent: u32, parent_start: u64, run_dir: &Path) -> u8 {
    let owner = RunOwner {
        pid: parent,
        start_ticks: parent_start,
        run_dir: run_dir.to_path_buf(),
    };
    let (tx, rx) = mpsc::channel();
    // The reader stays blocked in read(2) until the harness writes or its end is closed.
    let reader = std::thread::Builder::new().spawn(move || {
        let mut byte = [0u8; 1];
        let heard = loop {
            match std::io::stdin().read(&mut byte) {
                Ok(1) if byte[0] == DISARM => break Heard::Disarm,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                _ => break Heard::Closed,
            }
        };
        let _ = tx.send(heard);
    });
    if reader.is_err() {
        // Without the pipe, polling alone still works.
        log(
            run_dir,
            "cannot start the thread reading the pipe; polling only",
        );
    }
    loop {
        match rx.recv_timeout(POLL) {
            Ok(Heard::Disarm) => return 0,
            Ok(Heard::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if reader.is_ok() {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !owner.is_alive() {
            break;
        }
    }
    log(
        run_dir,
        &format!("brokerbench (pid {parent}) ended without stopping its clusters; stopping them"),
    );
    let mut left = 0;
    for dir in cluster_dirs(run_dir) {
        let Some(cluster) = known_cluster(&dir) else {
            continue;
        };
        let killed = kill_cluster(&cluster, None);
        let survivors = cluster.running_pids();
        log(
            run_dir,
            &format!(
                "{} cluster in {}: killed pids {:?}{}",
                cluster.kind,
                dir.display(),
                killed,
                if survivors.is_empty() {
                    String::new()
                } else {
                    format!("; still running: {survivors:?}")
                }
            ),
        );
        left += survivors.len();
    }
    if left == 0 {
        0
    } else {
        1
    }
}

/// The cluster folders of a run (`<run dir>/clusters/*`).
fn cluster_dirs(run_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run_dir.join("clusters")) else {
        return vec![run_dir.join(crate::run::MONITORING_DIR)];
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    // The monitoring stack's folder (`monitoring::stack`), beside the clusters.
    dirs.push(run_dir.join(crate::run::MONITORING_DIR));
    dirs
}

/// Append a line to the run's watchdog.log (best effort: nobody reads the watchdog's stderr).
fn log(run_dir: &Path, line: &str) {
    let path = run_dir.join(LOG_FILE);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{} {line}", crate::report::meta::utc_now());
    }
}
