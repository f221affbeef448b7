//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

/// Pids of running processes whose command line or environment mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    brokerbench::cluster::process::processes_carrying(needle)
        .into_iter()
        .filter(|pid| *pid != std::process::id())
        .collect()
}

/// Pids of redis-server processes serving any of `ports`.
pub fn redis_servers_on(ports: std::ops::RangeInclusive<u16>) -> Vec<u32> {
    ports
        .flat_map(|p| processes_mentioning(&format!("127.0.0.1:{p}")))
        .filter(|pid| is_redis_server(*pid))
        .collect()
}

fn is_redis_server(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        // The process title reads "/usr/bin/redis-server 127.0.0.1:PORT [cluster] /path/redis.conf".
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split_whitespace()
                .next()
                .is_some_and(|exe| exe.ends_with("redis-server"))
        })
        .unwrap_or(false)
}

/// The first run folder (`<UTC time>-<scenario>`) in a results root, if there is one yet.
pub fn first_run_folder(results: &Path) -> Option<std::path::PathBuf> {
    let mut runs: Vec<_> = std::fs::read_dir(results)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .map(|e| e.path())
        .collect();
    runs.sort();
    runs.into_iter().next()
}

/// Write a scenario file into `dir` and return its path.
pub fn write_scenario(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Read a CSV file into header-keyed rows.
/// One CSV row: column -> value.
pub type Row = std::collections::HashMap<String, String>;

/// The row of `backend` (its label) in `rows`.
pub fn row<'a>(rows: &'a [Row], backend: &str) -> &'a Row {
    rows.iter()
        .find(|r| r["backend"] == backend)
        .unwrap_or_else(|| panic!("no row for {backend}: {rows:?}"))
}

pub fn read_csv(path: &Path) -> Vec<Row> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = r.headers().expect("headers").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

pub fn num(row: &std::collections::HashMap<String, String>, col: &str) -> f64 {
    row.get(col)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("column {col} is not a number: {:?}", row.get(col)))
}

/// "pid: command line" for each pid, for assertion messages.
pub fn describe(pids: &[u32]) -> String {
    pids.iter()
        .map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            format!("{p}: {}", cmd.chars().take(200).collect::<String>())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A child brokerbench process that is interrupted (SIGINT, then SIGKILL) if a test ends early,
/// so that it cleans up the clusters it started.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(self.0.id() as i32, libc::SIGINT);
            }
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(60) {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Poll until no running process mentions `needle` (a process that was just killed can take a
/// moment to be torn down), for up to `timeout`; returns "pid: command line" of what is still
/// there, with what was seen first, or "" when nothing is.
pub fn wait_until_gone(needle: &str, timeout: std::time::Duration) -> String {
    let start = std::time::Instant::now();
    let first = describe(&processes_mentioning(needle));
    loop {
        let left = processes_mentioning(needle);
        if left.is_empty() {
            return String::new();
        }
        if start.elapsed() >= timeout {
            return format!("{} (first seen: {first})", describe(&left));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Run a scenario file quietly with results under `root`, as `brokerbench run` would, without
/// a way to interrupt it.
pub async fn run_quietly(scenario: &Path, root: &Path) -> brokerbench::run::RunOutcome {
    let (_tx, cancel) = tokio::sync::watch::channel(false);
    let opts = brokerbench::run::RunOptions {
        results_root: root.to_path_buf(),
        quiet: true,
        overrides: Default::default(),
        watchdog_exe: Some(env!("CARGO_BIN_EXE_brokerbench").into()),
        harness_ceiling: None,
        metrics_addr: None,
    };
    match brokerbench::run::run_scenario(scenario, &opts, cancel).await {
        Ok(out) => out,
        Err(e) => panic!("run {}: {e}", scenario.display()),
    }
}

/// Fail (never skip) when redis-server or redis-cli is missing: CI installs them, and a
/// developer without them must see what to install rather than a green test that checked nothing.
pub fn require_redis() {
    for bin in ["redis-server", "redis-cli"] {
        assert!(
            brokerbench::cluster::process::find_binary(bin).is_some(),
            "{bin} is not installed: run `make deps` (or apt-get install -y redis-server redis-tools)"
        );
    }
}

/// Fail (never skip) when RabbitMQ is missing; see `require_redis`.
pub fn require_rabbitmq() {
    assert!(
        std::path::Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").is_file(),
        "rabbitmq-server is not installed: run `make deps` (or apt-get install -y rabbitmq-server)"
    );
}

/// `brokerbench run --quiet <extra> --results <results> <scenario>`, killed when the guard
/// drops.
pub fn start_run(results: &Path, scenario: &Path, extra: &[&str]) -> ChildGuard {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_brokerbench"))
        .args(["run", "--quiet"])
        .args(extra)
        .arg("--results")
        .arg(results)
        .arg(scenario)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start brokerbench");
    ChildGuard(child)
}

/// The Debian 13 root, built once per test binary if it is not there (`tools/broker-root.sh`
/// makes concurrent builds wait for each other). Panics with the builder's output if it fails.
pub fn debian13_root() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = brokerbench::cluster::broker_root::known_root_dir(
            brokerbench::scenario::KnownRoot::Debian13,
        );
        if dir
            .join(brokerbench::cluster::broker_root::READY_MARKER)
            .is_file()
        {
            return Ok(dir);
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/broker-root.sh");
        eprintln!(
            "building the Debian 13 broker root with {}",
            script.display()
        );
        let t0 = std::time::Instant::now();
        let out = std::process::Command::new(&script)
            .args(["build", "debian13"])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{text}(took {:.0} s)", t0.elapsed().as_secs_f64());
        if !out.status.success()
            || !dir
                .join(brokerbench::cluster::broker_root::READY_MARKER)
                .is_file()
        {
            return Err(format!(
                "the Debian 13 broker root could not be built ({}): {text}",
                out.status
            ));
        }
        Ok(dir)
    });
    match built {
        Ok(dir) => std::fs::canonicalize(dir).expect("root folder"),
        Err(e) => panic!("{e}"),
    }
}

/// Copy a folder (a results folder fixture) with its subfolders.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let p = entry.expect("entry").path();
        let dest = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, dest).expect("copy");
        }
    }
}

/// The results folders of tests/fixtures (trimmed real runs).
pub fn fixture_dirs() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("tests/fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("summary.csv").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// `brokerbench <args>` in `cwd` with extra environment: (exit code, stdout, stderr).
pub fn brokerbench(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_brokerbench"));
    cmd.args(args).current_dir(cwd).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run brokerbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
