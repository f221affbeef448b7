//! Per-node CPU: each broker process the run started (and the harness itself), sampled from
//! /proc/<pid>/stat once a second while a backend's load runs, as a share of one core (0.0 to
//! the number of cores). A node restarted by a fault is found again by its marker.
//!
//! A broker node's figure includes the processes it forks (Redis writes its AOF rewrites and
//! RDB snapshots in a child process; RabbitMQ's `erl_child_setup` and `inet_gethost`): those
//! still running (their own time) and those it has reaped (`cutime` + `cstime`). Without them a
//! max-rate Redis run with AOF rewrites shows the host busy with work nobody seems to do. The
//! harness's figure is its own process only (the nodes it started are its children).

use std::collections::HashMap;
use std::time::Instant;

use crate::cluster::process::{all_pids, descendants_in, processes_carrying, OwnedProcess};

/// cpu.csv: one node's CPU over the interval ending at `t_s`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CpuRow {
    pub backend: String,
    /// Seconds since the backend's load started.
    pub t_s: f64,
    /// A broker node (as the backend's topology names it), "harness", or "host" (the whole
    /// host's busy cores, other work included).
    pub node: String,
    /// Cores busy on average: 1.0 is one core all the time.
    pub cpu: f64,
}

/// The shortest interval a CPU figure is given for.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// The node name used for the harness's own process.
pub const HARNESS: &str = "harness";
/// The node name of the whole host's busy cores (every process, brokerbench's or not).
pub const HOST: &str = "host";

/// Busy clock ticks of the whole host (every core; idle and iowait left out), from /proc/stat.
pub fn host_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal
    let total: u64 = v.iter().sum();
    Some(total - v.get(3)? - v.get(4)?)
}

/// User + system CPU time of a process in clock ticks (all its threads), from /proc/<pid>/stat.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(parse_stat(&stat)?.own)
}

/// What the CPU figures need of one /proc/<pid>/stat.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    ppid: u32,
    /// utime + stime.
    own: u64,
    /// cutime + cstime: children it has waited for.
    reaped: u64,
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // Fields after the parenthesised command: state is field 3, ppid 4, utime 14, stime 15,
    // cutime 16, cstime 17.
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().take(15).collect();
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        own: n(11)? + n(12)?,
        reaped: n(13)? + n(14)?,
    })
}

/// Every process's stat, by pid (read once per sample).
fn process_table() -> HashMap<u32, Stat> {
    all_pids()
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_stat(&stat)?))
        })
        .collect()
}

/// CPU ticks of `pid` and everything it forked: its own, those of the children it reaped, and
/// those of its live descendants (each counted the same way). A child that ends moves from the
/// last term to the second when it is reaped, so the sum only grows.
fn tree_ticks(table: &HashMap<u32, Stat>, pid: u32) -> Option<u64> {
    let ticks = |s: &Stat| s.own + s.reaped;
    let root = ticks(table.get(&pid)?);
    let links: Vec<(u32, u32)> = table.iter().map(|(&p, s)| (p, s.ppid)).collect();
    let forked: u64 = descendants_in(&links, pid)
        .iter()
        .filter_map(|c| table.get(c).map(ticks))
        .sum();
    Some(root + forked)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub struct CpuSampler {
    backend: String,
    /// (node, its process as last seen).
    nodes: Vec<(String, OwnedProcess)>,
    /// Per node: ticks and time of the previous sample, and the pid they belong to.
    last: HashMap<String, (u32, u64, Instant)>,
    tick_hz: f64,
}

impl CpuSampler {
    /// Sample `nodes` (node name, process) and the harness for `backend`.
    pub fn new(backend: &str, nodes: Vec<(String, OwnedProcess)>) -> Self {
        let mut s = CpuSampler {
            backend: backend.to_string(),
            nodes,
            last: HashMap::new(),
            tick_hz: ticks_per_second(),
        };
        // The first sample only sets the baseline.
        let _ = s.sample(0.0);
        s
    }

    /// One row per node that was running at this sample and the previous one. A sample less
    /// than `MIN_INTERVAL` after the previous one (a short last interval) gives nothing: a few
    /// clock ticks over a few milliseconds say little.
    pub fn sample(&mut self, t_s: f64) -> Vec<CpuRow> {
        let now = Instant::now();
        if self
            .last
            .get(HARNESS)
            .is_some_and(|(_, _, at)| now.duration_since(*at) < MIN_INTERVAL)
        {
            return Vec::new();
        }
        let mut current: Vec<(String, u32)> = vec![
            (HARNESS.to_string(), std::process::id()),
            (HOST.to_string(), 0),
        ];
        for (name, proc) in &mut self.nodes {
            if !proc.is_running() {
                // Killed, maybe restarted under a new pid.
                match processes_carrying(&proc.marker).first() {
                    Some(&pid) => proc.pid = pid,
                    None => continue,
                }
            }
            current.push((name.clone(), proc.pid));
        }
        let table = process_table();
        let mut rows = Vec::new();
        let mut next = HashMap::new();
        for (node, pid) in current {
            // The host is read from /proc/stat, under pid 0 (no process has it).
            let ticks = if node == HOST {
                host_busy_ticks()
            } else if node == HARNESS {
                table.get(&pid).map(|s| s.own)
            } else {
                tree_ticks(&table, pid)
            };
            let Some(ticks) = ticks else {
                continue;
            };
            if let Some((last_pid, last_ticks, at)) = self.last.get(&node) {
                let secs = now.duration_since(*at).as_secs_f64();
                if *last_pid == pid && secs > 0.0 && ticks >= *last_ticks {
                    rows.push(CpuRow {
                        backend: self.backend.clone(),
                        t_s,
                        node: node.clone(),
                        cpu: (ticks - last_ticks) as f64 / self.tick_hz / secs,
                    });
                }
            }
            next.insert(node, (pid, ticks, now));
        }
        self.last = next;
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_s_cpu_time() {
        let before = cpu_ticks(std::process::id()).expect("own stat");
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert_ne!(x, 1);
        let after = cpu_ticks(std::process::id()).expect("own stat");
        assert!(after > before, "{before} -> {after}");
        assert_eq!(cpu_ticks(0), None);
    }

    #[test]
    fn a_tree_sums_live_descendants_and_reaped_children() {
        let st = |ppid, own, reaped| Stat { ppid, own, reaped };
        let table: HashMap<u32, Stat> = [
            (10, st(1, 100, 7)),
            (11, st(10, 50, 0)),
            (12, st(11, 5, 3)),
            (20, st(1, 1000, 0)),
            (21, st(20, 9, 0)),
        ]
        .into_iter()
        .collect();
        assert_eq!(tree_ticks(&table, 10), Some(100 + 7 + 50 + 5 + 3));
        assert_eq!(tree_ticks(&table, 21), Some(9));
        assert_eq!(tree_ticks(&table, 99), None);
        let own = parse_stat(&std::fs::read_to_string("/proc/self/stat").expect("own stat"))
            .expect("parsed");
        assert_eq!(own.ppid, std::os::unix::process::parent_id());
    }

    #[test]
    fn a_node_is_charged_for_the_children_it_forks_running_or_reaped() {
        // A node that forks a busy child and waits for it, as Redis forks an AOF rewrite.
        let mut node = std::process::Command::new("sh")
            .args([
                "-c",
                "sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; exec sleep 30",
            ])
            .spawn()
            .expect("spawn sh");
        let pid = node.id();
        let start = Instant::now();
        let mut running_child = None;
        let mut reaped = None;
        while start.elapsed() < std::time::Duration::from_secs(20) && reaped.is_none() {
            let table = process_table();
            let own = table.get(&pid).map(|s| s.own).unwrap_or(0);
            let tree = tree_ticks(&table, pid).unwrap_or(0);
            if table.values().any(|s| s.ppid == pid) && tree > own + 2 {
                running_child = Some(tree - own);
            }
            if table.get(&pid).is_some_and(|s| s.reaped > 2) {
                reaped = Some(tree - own);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = node.kill();
        let _ = node.wait();
        assert!(
            running_child.is_some(),
            "the busy child was never counted while it ran"
        );
        let reaped = reaped.expect("the child was reaped within 20 s");
        assert!(
            reaped >= running_child.unwrap_or(0),
            "reaped {reaped} < seen running"
        );
    }

    #[test]
    fn a_busy_child_shows_about_one_core_and_a_dead_one_none() {
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .env("BB_CPU_MARKER", "busy-loop")
            .spawn()
            .expect("spawn sh");
        let proc = OwnedProcess {
            pid: busy.id(),
            marker: "BB_CPU_MARKER=busy-loop".into(),
        };
        let mut s = CpuSampler::new("b", vec![("busy".into(), proc)]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        let rows = s.sample(1.0);
        let cpu = rows
            .iter()
            .find(|r| r.node == "busy")
            .map(|r| r.cpu)
            .expect("a row for the busy node");
        // One spinning shell: never more than one core, and clearly busy even on a shared,
        // loaded host (an idle process shows 0.00).
        assert!(cpu > 0.1 && cpu < 1.2, "cpu {cpu}");
        assert!(rows.iter().any(|r| r.node == HARNESS && r.backend == "b"));
        // The host runs the busy shell at least, and never more than its cores.
        let host = rows.iter().find(|r| r.node == HOST).map(|r| r.cpu);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        assert!(
            host.is_some_and(|h| h >= cpu * 0.8 && h <= cores * 1.05),
            "host {host:?}, busy {cpu}"
        );
        assert!(s.sample(1.1).is_empty(), "too soon after the last sample");
        let _ = busy.kill();
        let _ = busy.wait();
        std::thread::sleep(MIN_INTERVAL);
        let rows = s.sample(2.0);
        assert!(rows.iter().all(|r| r.node != "busy"), "{rows:?}");
    }
}
