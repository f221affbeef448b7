//! Bad input exits non-zero with one line naming the file and the field, before anything starts.

mod common;

use std::process::Command;

fn run(args: &[&str], cwd: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_brokerbench"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run brokerbench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const BASE: &str = "name = \"bad\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n[clusters.redis]\nbase_port = 7391\n[[backends]]\ntype = \"redis-streams\"\n";

#[test]
fn bad_scenarios_exit_2_with_file_and_field_and_start_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "unknown-field",
            BASE.replace("rate = 10", "rate = 10\nspeed = 3"),
            "workload.speed",
        ),
        (
            "negative-rate",
            BASE.replace("rate = 10", "rate = -100"),
            "workload.rate",
        ),
        (
            "unknown-backend",
            BASE.replace("redis-streams", "kafka"),
            "backends[0].type",
        ),
        (
            "unknown-rabbit-setting",
            BASE.replace("redis-streams\"", "rabbitmq-quorum\"\nlazy_mode = true"),
            "backends[0].lazy_mode",
        ),
        (
            "long-bad-value",
            BASE.replace("rate = 10", &format!("rate = \"{}\"", "9x".repeat(2500))),
            "workload.rate",
        ),
        (
            "stream-auto-ack",
            BASE.replace("redis-streams\"", "rabbitmq-stream\"\nack = \"auto\""),
            "backends[0].ack",
        ),
        (
            "stream-two-consumers",
            BASE.replace("redis-streams\"", "rabbitmq-stream\"")
                .replace("rate = 10", "rate = 10\nconsumers_per_destination = 2"),
            "workload.consumers_per_destination",
        ),
    ];
    for (name, text, field) in cases {
        let path = common::write_scenario(tmp.path(), name, &text);
        let (code, stderr) = run(
            &[
                "run",
                path.to_str().expect("utf-8 path"),
                "--results",
                "results",
            ],
            tmp.path(),
        );
        assert_eq!(code, 2, "{name}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: one line expected: {stderr}");
        assert!(
            name != "long-bad-value" || lines[0].chars().count() < 400,
            "{name}: a bad value must be quoted cut to a readable length: {} characters",
            lines[0].chars().count()
        );
        assert!(
            lines[0].contains(&format!("{name}.toml")),
            "{name}: no file in {stderr}"
        );
        assert!(
            lines[0].contains(&format!("`{field}`")),
            "{name}: no field {field} in {stderr}"
        );
        assert!(
            !tmp.path().join("results").exists(),
            "{name}: a results folder was created"
        );
        assert!(
            common::redis_servers_on(7391..=7396).is_empty(),
            "{name}: a redis-server was started"
        );
        assert!(
            common::processes_mentioning(&tmp.path().display().to_string()).is_empty(),
            "{name}: a process was started"
        );
    }
}

#[test]
fn a_missing_scenario_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (code, stderr) = run(&["run", "nope.toml"], tmp.path());
    assert_eq!(code, 2);
    assert!(
        stderr.contains("nope.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn cluster_down_without_a_cluster_says_so() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (code, stderr) = run(
        &["cluster", "down", "redis", "--dir", "nothing-here"],
        tmp.path(),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("nothing-here"), "{stderr}");
}

/// Output that cannot be written (a full disk under a redirect, a closed pipe) must not make
/// brokerbench panic: a run owns brokers and results that it still has to stop and write.
#[test]
fn unwritable_output_does_not_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full (a device every Linux has)");
    let out = Command::new(env!("CARGO_BIN_EXE_brokerbench"))
        .args(["validate", "scenarios/throughput.toml"])
        .current_dir(root)
        .stdout(full)
        .output()
        .expect("run brokerbench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
