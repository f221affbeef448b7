//! The command line's newer flags, run as the built binary: `run`'s workload overrides and
//! their errors, `quick` on a real Redis cluster with RUST_LOG, `completions`, and `compare
//! --max-regression` on copies of a real fixture. Ports: Redis 7481-7486 (quick), 7651-7656 (a
//! share of max) and 7491-7496 (never started: bad input), bus ports +10000, this file only.

mod common;

use std::path::Path;

use common::*;

const FILE: &str = "name = \"flags\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"10s\"\n[clusters.redis]\nbase_port = 7491\n[[backends]]\ntype = \"redis-streams\"\n[[faults]]\nat = \"5s\"\naction = \"kill\"\ntarget = \"leader-of:0\"\n";

/// Bad input: exit 2 with one line, nothing created or started.
fn assert_bad_input(tmp: &Path, code: i32, stderr: &str, wants: &[&str]) {
    assert_eq!(code, 2, "{stderr}");
    for w in wants {
        assert!(stderr.contains(w), "{w:?} not in: {stderr}");
    }
    assert!(
        !tmp.join("results").exists(),
        "a results folder was created"
    );
    assert!(
        redis_servers_on(7491..=7496).is_empty(),
        "a redis-server was started"
    );
}

#[test]
fn workload_flags_are_checked_like_the_files_fields_and_name_the_flag() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = write_scenario(tmp.path(), "flags", FILE);
    let f = file.to_str().expect("utf-8");
    for (args, wants) in [
        (
            vec!["--message-size", "10"],
            vec!["flags.toml: flag `--message-size`: 10 is smaller than the harness's header; use at least 40 bytes"],
        ),
        (
            vec!["--destinations", "0"],
            vec!["flag `--destinations`: 0 is out of range; use 1 to 10000"],
        ),
        (
            vec!["--destinations", "4", "--producers", "6"],
            vec!["flag `--producers`: 6 cannot be spread evenly"],
        ),
        (
            vec!["--duration", "2s"],
            vec!["field `faults[0].at`: 5s is not inside the measured phase", "(with --duration 2s)"],
        ),
        // clap's own errors name the flag too.
        (vec!["--rate", "fast"], vec!["--rate", "\"fast\" is not a rate", "\"max\""]),
        (vec!["--max-in-flight", "lots"], vec!["--max-in-flight"]),
    ] {
        let mut all = vec!["run", f];
        all.extend(&args);
        let (code, _, stderr) = brokerbench(&all, tmp.path(), &[]);
        assert_bad_input(tmp.path(), code, &stderr, &wants);
        if !args.contains(&"--rate") && !args.contains(&"--max-in-flight") {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        }
    }
    // quick checks its flags the same way, and its backend type.
    let (code, _, stderr) = brokerbench(
        &[
            "quick",
            "redis-streams",
            "--message-size",
            "8",
            "--base-port",
            "7491",
        ],
        tmp.path(),
        &[],
    );
    assert_bad_input(
        tmp.path(),
        code,
        &stderr,
        &["brokerbench quick: flag `--message-size`: 8 is smaller"],
    );
    let (code, _, stderr) = brokerbench(&["quick", "kafka"], tmp.path(), &[]);
    assert_bad_input(
        tmp.path(),
        code,
        &stderr,
        &["kafka", "redis-streams", "rabbitmq-quorum"],
    );
    let (code, _, stderr) = brokerbench(
        &["quick", "redis-streams", "--base-port", "60000"],
        tmp.path(),
        &[],
    );
    assert_bad_input(
        tmp.path(),
        code,
        &stderr,
        &["flag `--base-port`: 60000 leaves no room"],
    );
}

#[test]
fn quick_runs_a_backend_type_on_a_local_cluster_and_prints_the_summary() {
    require_redis();
    let tmp = tempfile::tempdir().expect("temp dir");
    let results = tmp.path().join("results");
    let (code, stdout, stderr) = brokerbench(
        &[
            "quick",
            "redis-streams",
            "--rate",
            "1000",
            "--duration",
            "3s",
            "--warmup",
            "1s",
            "--message-size",
            "200",
            "--base-port",
            "7481",
            "--quiet",
            "--results",
            results.to_str().expect("utf-8"),
        ],
        tmp.path(),
        &[("RUST_LOG", "redis=trace")],
    );
    let left = redis_servers_on(7481..=7486);
    assert!(left.is_empty(), "left running: {}", describe(&left));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // The summary line.
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("redis-streams"))
        .unwrap_or_else(|| panic!("no summary line: {stdout}"));
    assert!(
        line.contains("msg/s received") && line.contains("ledger adds up"),
        "{line}"
    );
    // RUST_LOG turned the redis client's log on (it logs through `log`).
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("TRACE") && l.contains("redis::")),
        "no redis client log on stderr with RUST_LOG=redis=trace: {}",
        stderr.chars().take(2000).collect::<String>()
    );
    let dir = first_run_folder(&results).expect("a run folder");
    assert!(
        dir.file_name()
            .expect("name")
            .to_string_lossy()
            .ends_with("-quick-redis-streams"),
        "{}",
        dir.display()
    );
    let rows = read_csv(&dir.join("summary.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(num(&rows[0], "target_rate"), 1000.0);
    assert_eq!(num(&rows[0], "lost"), 0.0);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta"))
            .expect("json");
    assert_eq!(
        meta["overrides"],
        serde_json::json!({"rate": 1000.0, "duration": "3s", "warmup": "1s", "message_size": 200})
    );
    assert_eq!(meta["scenario_file"], "brokerbench quick");
    assert!(dir.join("results.json").is_file() && dir.join("report.html").is_file());
    // Its scenario.toml is a scenario file that `run` takes.
    let (code, stdout, stderr) = brokerbench(
        &[
            "validate",
            dir.join("scenario.toml").to_str().expect("utf-8"),
        ],
        tmp.path(),
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = std::fs::read_to_string(dir.join("scenario.toml")).expect("scenario.toml");
    assert!(
        text.contains("base_port = 7481") && text.contains("message_size = 200"),
        "{text}"
    );
}

/// `--rate "50% of max"`: a max-rate probe on destinations of its own before the run, whose
/// received rate sets the run's (meta.json `rate_probe`, summary.csv `target_rate`).
#[test]
fn a_share_of_the_maximum_is_probed_before_the_run() {
    require_redis();
    let tmp = tempfile::tempdir().expect("temp dir");
    let results = tmp.path().join("results");
    let (code, stdout, stderr) = brokerbench(
        &[
            "quick",
            "redis-streams",
            "--rate",
            "50% of max",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--base-port",
            "7651",
            "--quiet",
            "--results",
            results.to_str().expect("utf-8"),
        ],
        tmp.path(),
        &[],
    );
    let left = redis_servers_on(7651..=7656);
    assert!(left.is_empty(), "left running: {}", describe(&left));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let dir = first_run_folder(&results).expect("a run folder");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta"))
            .expect("json");
    let probe = &meta["backends"][0]["rate_probe"];
    let max = probe["max_received_per_s"]
        .as_f64()
        .expect("the probe's rate");
    assert!(max > 100.0, "{probe}");
    assert_eq!(probe["share"], 0.5);
    let rate = probe["rate"].as_f64().expect("the rate used");
    assert_eq!(rate, (0.5 * max).round(), "{probe}");
    assert_eq!(meta["overrides"]["rate"], "50% of max");
    let rows = read_csv(&dir.join("summary.csv"));
    assert_eq!(rows[0]["status"], "ok");
    assert_eq!(num(&rows[0], "target_rate"), rate);
    // The probe's messages went to destinations of their own: none reached the run.
    assert_eq!(num(&rows[0], "foreign"), 0.0);
    assert_eq!(num(&rows[0], "lost"), 0.0);
}

#[test]
fn completions_print_a_script_per_shell() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (code, bash, stderr) = brokerbench(&["completions", "bash"], tmp.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
    // Bash takes the script: `complete` then knows brokerbench.
    let script = tmp.path().join("brokerbench.bash");
    std::fs::write(&script, &bash).expect("write");
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p brokerbench",
            script.display()
        ))
        .output()
        .expect("bash");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("brokerbench"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for sub in [
        "quick",
        "compare",
        "completions",
        "--max-regression",
        "--rate",
    ] {
        assert!(bash.contains(sub), "{sub} not in the bash script");
    }
    assert!(
        !bash.contains("__watchdog"),
        "the hidden subcommand is offered"
    );
    let (code, zsh, _) = brokerbench(&["completions", "zsh"], tmp.path(), &[]);
    assert!(code == 0 && zsh.starts_with("#compdef brokerbench") && zsh.contains("quick"));
    let (code, fish, _) = brokerbench(&["completions", "fish"], tmp.path(), &[]);
    assert!(code == 0 && fish.contains("complete -c brokerbench") && fish.contains("quick"));
    let (code, _, stderr) = brokerbench(&["completions", "tcsh"], tmp.path(), &[]);
    assert!(code == 2 && stderr.contains("bash"), "{stderr}");
}

/// A copy of a fixture with `received_per_s` times `rate` and `e2e_p99_ms` times `p99` in
/// every row of summary.csv.
fn scaled_copy(from: &Path, to: &Path, rate: f64, p99: f64) {
    copy_dir(from, to);
    let path = to.join("summary.csv");
    let mut r = csv::Reader::from_path(&path).expect("summary.csv");
    let headers = r.headers().expect("headers").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (rate_col, p99_col) = (col("received_per_s"), col("e2e_p99_ms"));
    let mut w = csv::Writer::from_path(to.join("summary.csv.new")).expect("write");
    w.write_record(&headers).expect("header");
    for rec in r.records() {
        let mut rec: Vec<String> = rec.expect("row").iter().map(String::from).collect();
        for (c, k) in [(rate_col, rate), (p99_col, p99)] {
            if let Ok(v) = rec[c].parse::<f64>() {
                rec[c] = (v * k).to_string();
            }
        }
        w.write_record(&rec).expect("row");
    }
    w.flush().expect("flush");
    std::fs::rename(to.join("summary.csv.new"), &path).expect("rename");
}

#[test]
fn compare_max_regression_fails_on_a_regression_and_passes_on_the_same_figures() {
    let tmp = tempfile::tempdir().expect("temp dir");
    // A real run (two repetitions per backend), and copies of it: one whose throughput is 20%
    // lower and p99 50% higher in every row (a synthetic regression), and one unchanged.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verdicts-run");
    let a = tmp.path().join("a");
    let worse = tmp.path().join("worse");
    let same = tmp.path().join("same");
    copy_dir(&fixture, &a);
    scaled_copy(&fixture, &worse, 0.8, 1.5);
    scaled_copy(&fixture, &same, 1.0, 1.0);
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();
    let compare = |b: &Path, extra: &[&str]| {
        let out = tmp.path().join("cmp");
        let mut args = vec!["compare".to_string(), s(&a), s(b), "--out".into(), s(&out)];
        args.extend(extra.iter().map(|x| x.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        brokerbench(&args, tmp.path(), &[])
    };
    let (code, stdout, stderr) = compare(&worse, &["--max-regression", "10%"]);
    assert_eq!(code, 5, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("REGRESSED redis-1k throughput:")
            && stdout.contains("(20.0% worse; medians of 2 and 2 repetitions)")
            && stdout.contains("REGRESSED redis-1k e2e p99:")
            && stdout.contains("(50.0% worse; medians of 2 and 2 repetitions)"),
        "{stdout}"
    );
    assert!(
        stderr.starts_with("error: b is worse than a by more than --max-regression 10%: ")
            && stderr.contains("redis-1k throughput"),
        "{stderr}"
    );
    // Within a wider threshold, and the same figures under a new name, it passes.
    let (code, stdout, stderr) = compare(&worse, &["--max-regression", "60%"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (code, stdout, stderr) = compare(&same, &["--max-regression", "0%"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("no regression beyond 0%"), "{stdout}");
    // Without the flag, compare only puts the runs side by side, as before.
    let (code, stdout, stderr) = compare(&worse, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("comparison: ") && !stdout.contains("regression"),
        "{stdout}"
    );
    // A threshold that does not parse names the flag and the fix.
    let (code, _, stderr) = compare(&worse, &["--max-regression", "0.1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--max-regression") && stderr.contains("e.g. --max-regression 10%"),
        "{stderr}"
    );
}
