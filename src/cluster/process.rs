//! Processes that brokerbench started: liveness, identity and stopping by pid.
//!
//! A pid is only signalled if the process still carries the marker it was started with (a
//! string in its command line or environment), so a recycled pid is never touched.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long `is_ours` waits before looking again for the marker of a live process.
const MARKER_RETRIES_MS: [u64; 3] = [5, 20, 50];

/// A process the project started, identified by pid and a marker string.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnedProcess {
    pub pid: u32,
    /// Text that appears in /proc/<pid>/cmdline or /proc/<pid>/environ of this process only.
    pub marker: String,
}

impl OwnedProcess {
    /// Alive, not a zombie, and still ours (`is_ours`).
    pub fn is_running(&self) -> bool {
        is_ours(self.pid, &self.marker)
    }

    /// Send a signal if the process is still ours. Returns whether it was sent.
    pub fn signal(&self, sig: i32) -> bool {
        if !self.is_running() {
            return false;
        }
        // SAFETY: plain kill(2) on a pid we verified above.
        unsafe { libc::kill(self.pid as i32, sig) == 0 }
    }

    /// SIGTERM, then SIGCONT: a paused process (a `pause` fault) handles the SIGTERM only once
    /// it runs again.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
        self.signal(libc::SIGCONT);
    }

    /// Stopped by SIGSTOP (state `T` in /proc/<pid>/stat) and still ours.
    pub fn is_paused(&self) -> bool {
        self.is_running()
            && std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .ok()
                .and_then(|s| {
                    let (_, rest) = s.rsplit_once(')')?;
                    rest.split_whitespace().next().map(|st| st == "T")
                })
                .unwrap_or(false)
    }

    /// SIGTERM, wait up to `grace` (retrying SIGTERM every second, as Redis may ignore the first
    /// while writing its AOF), then SIGKILL and wait until gone. Blocking; returns true if the
    /// process had to be killed.
    pub fn stop_blocking(&self, grace: Duration) -> bool {
        let family = self.descendants();
        if !self.is_running() {
            self.reap_leftovers(&family, Duration::from_secs(5));
            return false;
        }
        let start = Instant::now();
        let mut last_term = start;
        self.terminate();
        while start.elapsed() < grace {
            if !self.is_running() {
                self.reap_leftovers(&family, Duration::from_secs(5));
                return false;
            }
            if last_term.elapsed() >= Duration::from_secs(1) {
                self.signal(libc::SIGTERM);
                last_term = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.kill_blocking(Duration::from_secs(10));
        self.reap_leftovers(&family, Duration::from_secs(5));
        true
    }

    /// SIGKILL and wait (up to `wait`) until the pid is gone.
    pub fn kill_blocking(&self, wait: Duration) {
        let family = self.descendants();
        let start = Instant::now();
        self.signal(libc::SIGKILL);
        while self.is_running() && start.elapsed() < wait {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.reap_leftovers(&family, wait);
    }

    /// Pids of the processes this one started (children, grandchildren, ...) that carry its
    /// marker. Take it before stopping the process: its children are re-parented when it dies.
    pub fn descendants(&self) -> Vec<u32> {
        let mut out = descendants_in(&parent_links(), self.pid);
        out.retain(|&c| is_ours(c, &self.marker));
        out
    }

    /// SIGKILL what the process left behind and wait (up to `wait`) until it is gone: members of
    /// its process group (it was started as a group leader, so the group id is its pid) and the
    /// `family` found by `descendants` before it was stopped (helpers that made their own group,
    /// such as Erlang's erl_child_setup), as long as they still carry its marker.
    pub fn reap_leftovers(&self, family: &[u32], wait: Duration) {
        let start = Instant::now();
        loop {
            let mut members = group_members(self.pid, &self.marker);
            let strays: Vec<u32> = family
                .iter()
                .copied()
                .filter(|p| !members.contains(p) && is_ours(*p, &self.marker))
                .collect();
            members.extend(strays);
            if members.is_empty() || start.elapsed() >= wait {
                return;
            }
            for m in members {
                // SAFETY: kill(2) on a pid just verified to be ours and to carry our marker.
                unsafe {
                    libc::kill(m as i32, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Async version of `stop_blocking`, run on a blocking thread.
    pub async fn stop(&self, grace: Duration) -> bool {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.stop_blocking(grace))
            .await
            .unwrap_or(false)
    }
}

/// The descendants of `root` (children, grandchildren, ...) in `links` of (pid, parent pid),
/// each once.
pub fn descendants_in(links: &[(u32, u32)], root: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in links {
            if parent == p && child != root && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Every pid in /proc.
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Live processes carrying `marker` (one look each: a scan of every process).
pub fn processes_carrying(marker: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| is_alive(pid) && carries_marker(pid, marker))
        .collect()
}

/// (pid, parent pid) of every process.
fn parent_links() -> Vec<(u32, u32)> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            Some((pid, rest.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect()
}

/// Live processes in process group `pgid` that carry `marker`.
pub fn group_members(pgid: u32, marker: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| process_group(pid) == Some(pgid) && is_ours(pid, marker))
        .collect()
}

/// The process group of `pid` (field 5 of /proc/<pid>/stat).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// When `pid` started, in clock ticks after boot (field 22 of /proc/<pid>/stat): with the pid,
/// it names one process for good, as a recycled pid gets a later start time.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // Field 3 (after the parenthesised command) is the state.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

/// Alive, not a zombie, and carrying `marker`. A process in the middle of an `execve`
/// (rabbitmq-server execs its way down to beam.smp, `setsid` execs its command) shows an empty
/// environment for a moment, so a live process without the marker is looked at again
/// (`MARKER_RETRIES_MS`) before it counts as someone else's.
pub fn is_ours(pid: u32, marker: &str) -> bool {
    for wait_ms in std::iter::once(0).chain(MARKER_RETRIES_MS) {
        if wait_ms > 0 {
            std::thread::sleep(Duration::from_millis(wait_ms));
        }
        if !is_alive(pid) {
            return false;
        }
        if carries_marker(pid, marker) {
            return true;
        }
    }
    false
}

/// Whether the process's command line or environment contains `marker` (one look; see
/// `is_ours`).
pub fn carries_marker(pid: u32, marker: &str) -> bool {
    let has = |file: &str| {
        std::fs::read(format!("/proc/{pid}/{file}"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .any(|part| String::from_utf8_lossy(part).contains(marker))
            })
            .unwrap_or(false)
    };
    has("cmdline") || has("environ")
}

/// Whether something already listens on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Start the command's process in a session of its own (setsid), so that a terminal's Ctrl-C
/// or a hang-up does not reach it: the harness stops it itself, by pid.
pub fn in_new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
}

/// Find an executable on PATH (or accept an absolute path that exists).
pub fn find_binary(name: &str) -> Option<std::path::PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|c| c.is_file())
}

/// Poll `check` every `every` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_only_a_process_carrying_its_marker() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .env("BB_TEST_MARKER", "marker-xyz")
            .spawn();
        let Ok(mut child) = child else { return };
        let wrong = OwnedProcess {
            pid: child.id(),
            marker: "not-this-one".into(),
        };
        assert!(!wrong.is_running());
        assert!(!wrong.signal(libc::SIGKILL));
        let right = OwnedProcess {
            pid: child.id(),
            marker: "BB_TEST_MARKER=marker-xyz".into(),
        };
        // The new process shows its own environment once exec has completed: poll for it.
        let start = Instant::now();
        while !right.is_running() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(right.is_running());
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        right.stop_blocking(Duration::from_secs(5));
        assert!(!right.is_running());
    }

    /// While a process execs from one program to the next, /proc/<pid>/environ is empty for a
    /// moment; a process that is ours all along must never look like someone else's.
    #[test]
    fn a_process_is_ours_while_it_execs() {
        let mut misses = 0;
        for _ in 0..30 {
            let mut child = std::process::Command::new("sh")
                .args(["-c", "exec sh -c 'exec sh -c \"exec sleep 0.1\"'"])
                .env("BB_EXEC_MARKER", "exec-chain")
                .spawn()
                .expect("spawn sh");
            let p = OwnedProcess {
                pid: child.id(),
                marker: "BB_EXEC_MARKER=exec-chain".into(),
            };
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(60) {
                if !p.is_running() && is_alive(p.pid) {
                    misses += 1;
                }
            }
            let _ = child.wait();
        }
        assert_eq!(misses, 0, "a live process of ours looked foreign");
    }

    #[test]
    fn reaping_a_group_kills_its_marked_children_only() {
        use std::os::unix::process::CommandExt;
        // A shell leading its own group, with a marked child; the shell then exits.
        let child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 >/dev/null 2>&1 & echo $!; exit 0"])
            .env("BB_GROUP_MARKER", "group-xyz")
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(child) = child else { return };
        let leader = child.id();
        let Ok(out) = child.wait_with_output() else {
            return;
        };
        let Ok(sleeper) = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>() else {
            return;
        };
        let p = OwnedProcess {
            pid: leader,
            marker: "BB_GROUP_MARKER=group-xyz".into(),
        };
        assert!(!p.is_running(), "the leader has exited");
        assert_eq!(
            group_members(leader, "BB_GROUP_MARKER=group-xyz"),
            vec![sleeper]
        );
        assert!(group_members(leader, "another-marker").is_empty());
        p.stop_blocking(Duration::from_secs(1));
        let start = Instant::now();
        while is_alive(sleeper) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_alive(sleeper), "the orphaned child was left running");
    }

    #[test]
    fn stopping_kills_a_child_that_left_the_group() {
        use std::os::unix::process::CommandExt;
        // A shell leading its group starts a child in a new session (as erl_child_setup does)
        // and stays in the foreground.
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "setsid sleep 30 >/dev/null 2>&1 & echo $!; exec sleep 30",
            ])
            .env("BB_FAMILY_MARKER", "family-xyz")
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = child else { return };
        let leader = child.id();
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            use std::io::BufRead;
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        let Ok(helper) = line.trim().parse::<u32>() else {
            return;
        };
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let p = OwnedProcess {
            pid: leader,
            marker: "BB_FAMILY_MARKER=family-xyz".into(),
        };
        // `$!` is printed before the helper's setsid has run: wait until it has.
        let start = Instant::now();
        while !(p.is_running()
            && p.descendants().contains(&helper)
            && !group_members(leader, "BB_FAMILY_MARKER=family-xyz").contains(&helper))
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            p.descendants().contains(&helper),
            "the helper is found as a descendant"
        );
        assert!(
            !group_members(leader, "BB_FAMILY_MARKER=family-xyz").contains(&helper),
            "the helper left the group"
        );
        p.stop_blocking(Duration::from_secs(2));
        assert!(
            !is_alive(helper) || !carries_marker(helper, "BB_FAMILY_MARKER=family-xyz"),
            "the helper outlived the stop"
        );
    }

    #[test]
    fn port_in_use_sees_a_listener() {
        // A port below the kernel's ephemeral range (32768-60999 on Linux): once the listener is
        // gone, no outgoing connection of a concurrent test can take it as its source port.
        let (l, port) = (21_000u16..21_500)
            .find_map(|p| {
                std::net::TcpListener::bind(("127.0.0.1", p))
                    .ok()
                    .map(|l| (l, p))
            })
            .expect("a free port in 21000-21499");
        assert!(port_in_use(port));
        drop(l);
        // A process forked by a concurrent test may hold a copy of the socket until it execs:
        // poll until the port is free.
        let start = Instant::now();
        while port_in_use(port) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!port_in_use(port));
    }
}
