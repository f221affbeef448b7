//! Who holds a port: the process listening on it (from /proc/net/tcp and the processes' socket
//! descriptors), and whether that process belongs to a brokerbench cluster.
//!
//! A process is brokerbench's when a cluster folder can be derived from what /proc shows of it
//! (its working folder, a `redis.conf` path on its command line, the RabbitMQ or epmd variables in
//! its environment) and that folder's state file lists a marker the process carries. Anything
//! else is someone else's, however much it looks like a broker.

use std::path::{Path, PathBuf};

use super::leftovers::RunOwner;
use super::process::OwnedProcess;

/// Longest command line quoted in a message.
const COMMAND_CHARS: usize = 200;
/// State of a listening socket in /proc/net/tcp (TCP_LISTEN).
const TCP_LISTEN: &str = "0A";

/// What /proc shows of one process: enough to tell whose it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessView {
    pub pid: u32,
    /// Arguments as /proc/PID/cmdline splits them (a Redis node that has set its process title
    /// shows one string with spaces).
    pub cmdline: Vec<String>,
    /// `KEY=value` entries of /proc/PID/environ.
    pub environ: Vec<String>,
    /// The process's working folder.
    pub cwd: Option<PathBuf>,
}

impl ProcessView {
    /// What /proc shows of `pid` now (empty lists where unreadable); None if it is gone.
    pub fn read(pid: u32) -> Option<Self> {
        if !super::process::is_alive(pid) {
            return None;
        }
        let parts = |file: &str| -> Vec<String> {
            std::fs::read(format!("/proc/{pid}/{file}"))
                .map(|b| {
                    b.split(|c| *c == 0)
                        .filter(|p| !p.is_empty())
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(ProcessView {
            pid,
            cmdline: parts("cmdline"),
            environ: parts("environ"),
            cwd: std::fs::read_link(format!("/proc/{pid}/cwd")).ok(),
        })
    }

    /// Whether `marker` appears in the command line or the environment (as `carries_marker`).
    pub fn carries(&self, marker: &str) -> bool {
        self.cmdline
            .iter()
            .chain(&self.environ)
            .any(|part| part.contains(marker))
    }

    /// The command line for a message (shortened).
    pub fn command(&self) -> String {
        let text = self.cmdline.join(" ");
        if text.trim().is_empty() {
            return "command line unreadable".to_string();
        }
        let mut short: String = text.chars().take(COMMAND_CHARS).collect();
        if short.len() < text.len() {
            short.push_str("...");
        }
        short
    }

    /// Folders that may be the brokerbench cluster folder this process belongs to, most likely
    /// first: from `<dir>/node-<port>/redis.conf` on the command line, from the environment of a
    /// RabbitMQ node (`RABBITMQ_MNESIA_BASE=<dir>/rabbitN/mnesia`) or of a cluster's epmd
    /// (`BROKERBENCH_RABBIT_EPMD=<dir>`), and the working folder and its two parents.
    pub fn candidate_dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        let grandparent = |p: &Path| p.parent().and_then(Path::parent).map(Path::to_path_buf);
        for token in self.cmdline.iter().flat_map(|part| part.split(' ')) {
            if token.starts_with('/') && token.ends_with("/redis.conf") {
                out.extend(grandparent(Path::new(token)));
            }
        }
        for entry in &self.environ {
            if let Some(dir) = entry.strip_prefix("RABBITMQ_MNESIA_BASE=") {
                out.extend(grandparent(Path::new(dir)));
            } else if let Some(dir) = entry.strip_prefix("BROKERBENCH_RABBIT_EPMD=") {
                out.push(PathBuf::from(dir));
            }
        }
        if let Some(cwd) = &self.cwd {
            out.extend(cwd.ancestors().take(3).map(Path::to_path_buf));
        }
        let mut seen = Vec::new();
        out.retain(|d| {
            let new = d.is_absolute() && d != Path::new("/") && !seen.contains(d);
            seen.push(d.clone());
            new
        });
        out
    }
}

/// Which launcher started a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LauncherKind {
    Redis,
    RabbitMq,
    /// The monitoring stack (`monitoring::stack`): Prometheus and the redis_exporters.
    Monitoring,
}

impl LauncherKind {
    /// The command that stops what this launcher started in `dir`.
    pub fn down_command(self, dir: &Path) -> String {
        match self {
            LauncherKind::Redis => {
                format!("brokerbench cluster down redis --dir {}", dir.display())
            }
            LauncherKind::RabbitMq => {
                format!("brokerbench cluster down rabbitmq --dir {}", dir.display())
            }
            LauncherKind::Monitoring => {
                format!("brokerbench monitoring down --dir {}", dir.display())
            }
        }
    }
}

impl std::fmt::Display for LauncherKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LauncherKind::Redis => "Redis",
            LauncherKind::RabbitMq => "RabbitMQ",
            LauncherKind::Monitoring => "monitoring",
        })
    }
}

/// A brokerbench cluster folder as its state file (and owner file) describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownCluster {
    pub dir: PathBuf,
    pub kind: LauncherKind,
    /// What the processes of this cluster carry (every node's, and the epmd's).
    pub markers: Vec<String>,
    /// The processes its state file records (some may have exited).
    pub processes: Vec<OwnedProcess>,
    /// The run that started it; None for a cluster of `brokerbench cluster up`.
    pub owner: Option<RunOwner>,
}

impl KnownCluster {
    /// Pids of the recorded processes still running.
    pub fn running_pids(&self) -> Vec<u32> {
        self.processes
            .iter()
            .filter(|p| p.is_running())
            .map(|p| p.pid)
            .collect()
    }
}

/// Who holds a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortHolder {
    /// No listening socket on the port could be tied to a process (one this user may not
    /// inspect, or the port was freed meanwhile).
    Unseen,
    /// A process of a brokerbench cluster: `pid` carries one of `cluster.markers`.
    Ours { pid: u32, cluster: KnownCluster },
    /// Anyone else's process.
    Foreign { pid: u32, command: String },
}

impl PortHolder {
    /// For "port P is already in use by ...".
    pub fn describe(&self) -> String {
        match self {
            PortHolder::Unseen => "a process whose sockets cannot be inspected here".to_string(),
            PortHolder::Foreign { pid, command } => format!("pid {pid} (`{command}`)"),
            PortHolder::Ours { pid, cluster } => {
                let whose = match &cluster.owner {
                    None => "started with `brokerbench cluster up`".to_string(),
                    Some(o) if o.is_alive() => format!(
                        "of a brokerbench run still in progress: pid {}, run folder {}",
                        o.pid,
                        o.run_dir.display()
                    ),
                    Some(o) => format!(
                        "left by a brokerbench run that ended without stopping it: run folder {}",
                        o.run_dir.display()
                    ),
                };
                format!(
                    "pid {pid} of brokerbench's own {} cluster in {} ({whose})",
                    cluster.kind,
                    cluster.dir.display()
                )
            }
        }
    }
}

/// Who holds `port`: the first process with a socket listening on it, classified.
pub fn holder_of(port: u16) -> PortHolder {
    let Some(view) = listeners(port).into_iter().find_map(ProcessView::read) else {
        return PortHolder::Unseen;
    };
    classify(&view, super::leftovers::known_cluster)
}

/// Ours when one of the process's candidate folders is a cluster folder (`lookup`) whose markers
/// the process carries; otherwise foreign.
pub fn classify(view: &ProcessView, lookup: impl Fn(&Path) -> Option<KnownCluster>) -> PortHolder {
    for dir in view.candidate_dirs() {
        if let Some(cluster) = lookup(&dir) {
            if cluster.markers.iter().any(|m| view.carries(m)) {
                return PortHolder::Ours {
                    pid: view.pid,
                    cluster,
                };
            }
        }
    }
    PortHolder::Foreign {
        pid: view.pid,
        command: view.command(),
    }
}

/// Pids of the processes holding a TCP socket that listens on `port` (any address, IPv4 or IPv6).
pub fn listeners(port: u16) -> Vec<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|fds| {
                    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                        .any(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
                })
                .unwrap_or(false)
        })
        .collect();
    out.sort_unstable();
    out
}

/// Socket inodes of the rows of a /proc/net/tcp(6) table that listen on `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit_once(':')?.1;
            let listening = *f.get(3)? == TCP_LISTEN;
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| f.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_cluster(dir: &str, owner: Option<RunOwner>) -> KnownCluster {
        KnownCluster {
            dir: PathBuf::from(dir),
            kind: LauncherKind::Redis,
            markers: vec![
                format!("{dir}/node-7001/redis.conf"),
                format!("{dir}/node-7002/redis.conf"),
            ],
            processes: Vec::new(),
            owner,
        }
    }

    fn rabbit_cluster(dir: &str) -> KnownCluster {
        KnownCluster {
            dir: PathBuf::from(dir),
            kind: LauncherKind::RabbitMq,
            markers: vec![
                format!("RABBITMQ_MNESIA_BASE={dir}/rabbit1/mnesia"),
                format!("BROKERBENCH_RABBIT_EPMD={dir}"),
            ],
            processes: Vec::new(),
            owner: None,
        }
    }

    /// Only the folders in `known` are cluster folders.
    fn lookup(known: Vec<KnownCluster>) -> impl Fn(&Path) -> Option<KnownCluster> {
        move |dir| known.iter().find(|c| c.dir == dir).cloned()
    }

    fn view(cmdline: &[&str], environ: &[&str], cwd: Option<&str>) -> ProcessView {
        ProcessView {
            pid: 4242,
            cmdline: cmdline.iter().map(|s| s.to_string()).collect(),
            environ: environ.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.map(PathBuf::from),
        }
    }

    fn is_ours(h: &PortHolder, dir: &str) -> bool {
        matches!(h, PortHolder::Ours { pid: 4242, cluster } if cluster.dir == Path::new(dir))
    }

    #[test]
    fn a_redis_node_of_a_run_is_ours_by_its_title_or_its_arguments() {
        let d = "/r/20261201T000000Z-x/clusters/redis";
        let known = || lookup(vec![redis_cluster(d, None)]);
        // The title Redis sets once it listens, and the arguments before that.
        let title =
            format!("/usr/bin/redis-server 127.0.0.1:7001 [cluster] {d}/node-7001/redis.conf");
        assert!(is_ours(&classify(&view(&[&title], &[], None), known()), d));
        let conf = format!("{d}/node-7002/redis.conf");
        let args = view(&["/usr/bin/redis-server", &conf], &[], None);
        assert!(is_ours(&classify(&args, known()), d));
        // Found from its working folder alone (a title without the path).
        let cwd = format!("{d}/node-7001");
        let bare = view(&[&title], &[], Some(&cwd));
        assert!(is_ours(&classify(&bare, known()), d));
    }

    #[test]
    fn a_rabbitmq_node_and_its_epmd_are_ours_by_their_environment() {
        let d = "/r/run/clusters/rabbitmq";
        let known = || lookup(vec![rabbit_cluster(d)]);
        let beam = view(
            &["/usr/lib/erlang/erts-13.1.5/bin/beam.smp", "-W", "w"],
            &[
                "HOME=/r/run/clusters/rabbitmq/home",
                &format!("RABBITMQ_MNESIA_BASE={d}/rabbit1/mnesia"),
            ],
            Some("/"),
        );
        assert!(is_ours(&classify(&beam, known()), d));
        let epmd = view(
            &["/usr/bin/epmd", "-address", "127.0.0.1"],
            &[&format!("BROKERBENCH_RABBIT_EPMD={d}")],
            None,
        );
        assert!(is_ours(&classify(&epmd, known()), d));
    }

    #[test]
    fn look_alikes_are_foreign() {
        let d = "/r/run/clusters/redis";
        let known = || lookup(vec![redis_cluster(d, None)]);
        // A redis-server of someone else's on the same port.
        let theirs = view(&["redis-server *:7001"], &[], Some("/var/lib/redis"));
        assert_eq!(
            classify(&theirs, known()),
            PortHolder::Foreign {
                pid: 4242,
                command: "redis-server *:7001".into()
            }
        );
        // A shell started inside the cluster folder carries none of its markers.
        let shell = view(
            &["nc", "-l", "7001"],
            &[&format!("PWD={d}/node-7001")],
            Some(&format!("{d}/node-7001")),
        );
        assert!(matches!(
            classify(&shell, known()),
            PortHolder::Foreign { .. }
        ));
        // A node's config of a folder that is no (longer a) cluster folder.
        let gone = view(
            &["redis-server", "/elsewhere/node-7001/redis.conf"],
            &[],
            None,
        );
        assert!(matches!(
            classify(&gone, known()),
            PortHolder::Foreign { .. }
        ));
        // A node of another node's folder: markers are per cluster folder.
        let other = "/r/other/clusters/redis";
        let moved = view(
            &["redis-server", &format!("{other}/node-7001/redis.conf")],
            &[],
            None,
        );
        assert!(matches!(
            classify(&moved, known()),
            PortHolder::Foreign { .. }
        ));
    }

    #[test]
    fn describes_whose_cluster_holds_the_port() {
        let d = "/r/run/clusters/redis";
        let alive = RunOwner::this_process(Path::new("/r/run")).expect("own start time");
        let gone = RunOwner {
            start_ticks: alive.start_ticks + 1,
            ..alive.clone()
        };
        let text = |owner| {
            PortHolder::Ours {
                pid: 7,
                cluster: redis_cluster(d, owner),
            }
            .describe()
        };
        assert!(
            text(None).contains("`brokerbench cluster up`"),
            "{}",
            text(None)
        );
        let running = text(Some(alive));
        assert!(
            running.contains("still in progress") && running.contains("/r/run"),
            "{running}"
        );
        let left = text(Some(gone));
        assert!(
            left.contains("ended without stopping it") && left.contains("run folder /r/run"),
            "{left}"
        );
        let foreign = PortHolder::Foreign {
            pid: 9,
            command: "nc -l 7001".into(),
        };
        assert_eq!(foreign.describe(), "pid 9 (`nc -l 7001`)");
    }

    #[test]
    fn parses_listening_rows_of_the_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
   1: 0100007F:1B59 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n\
   2: 00000000:445C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 7001), vec![111]);
        assert_eq!(listening_inodes(table, 17500), vec![333]);
        assert!(listening_inodes(table, 7002).is_empty());
    }

    #[test]
    fn a_port_this_process_listens_on_is_held_by_a_foreign_process() {
        let (listener, port) = (21_500u16..22_000)
            .find_map(|p| {
                std::net::TcpListener::bind(("127.0.0.1", p))
                    .ok()
                    .map(|l| (l, p))
            })
            .expect("a free port in 21500-21999");
        assert!(listeners(port).contains(&std::process::id()));
        match holder_of(port) {
            PortHolder::Foreign { pid, command } => {
                assert_eq!(pid, std::process::id());
                assert!(!command.is_empty());
            }
            other => panic!("expected this test process as a foreign holder, got {other:?}"),
        }
        drop(listener);
    }
}
