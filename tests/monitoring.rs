//! Live metrics and the monitoring stack against real brokers and Debian's prometheus and
//! prometheus-redis-exporter: a short Redis run serves `--metrics-addr`, a Prometheus started
//! with `brokerbench monitoring up` scrapes it (1 s) with 6 redis_exporters and a RabbitMQ
//! cluster's prometheus endpoints; the run itself starts a second stack (`[monitoring]`) and
//! keeps prometheus.csv. Then: the rate Prometheus saw is near the target, every documented
//! series is there, and every metric name of the Grafana dashboard and of prometheus.csv's
//! queries exists in what Prometheus scraped from brokerbench, redis_exporter and RabbitMQ.
//!
//! Ports (this file only): Redis 7541-7546 (bus 17541-17546); RabbitMQ AMQP 5841-5843, HTTP
//! 15841-15843, stream 5641-5643, prometheus 15941-15943, dist 25841-25849, epmd 4412;
//! brokerbench metrics 9610; Prometheus 9620 (the test's) and 9621 (the run's); redis_exporters
//! 9630-9635 (the test's) and 9640-9645 (the run's).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brokerbench::monitoring::live::SERIES;
use brokerbench::monitoring::promql::metric_names;
use brokerbench::monitoring::query::QUERIES;
use common::*;
use serde_json::Value;

const TARGET_RATE: f64 = 2000.0;

/// Both tests use Redis 7541-7546 and the run's stack ports: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
const PROM: u16 = 9620;

const RABBIT_SECTION: &str = "[clusters.rabbitmq]\nkind = \"rabbitmq\"\namqp_base_port = 5841\n\
    http_base_port = 15841\nstream_base_port = 5641\nprometheus_base_port = 15941\n\
    dist_base_port = 25841\nepmd_port = 4412\n";

/// The run: Redis only, live metrics on 9610, its own stack on 9621 / 9640-9645.
fn run_scenario() -> String {
    format!(
        "name = \"monitoring-live\"\nmetrics_addr = \"127.0.0.1:9610\"\n\
         [workload]\nmessage_size = 256\nrate = {TARGET_RATE}\nwarmup = \"1s\"\nduration = \"8s\"\n\
         drain_timeout = \"10s\"\n\
         [clusters.redis]\nbase_port = 7541\n\
         [[backends]]\ntype = \"redis-streams\"\n\
         [monitoring]\nprometheus_port = 9621\nredis_exporter_base_port = 9640\nscrape_interval = \"1s\"\n"
    )
}

/// The test's stack: both clusters, brokerbench on 9610.
fn stack_scenario() -> String {
    format!(
        "name = \"monitoring-stack\"\nmetrics_addr = \"127.0.0.1:9610\"\n\
         [workload]\nmessage_size = 256\nrate = 10\nduration = \"1s\"\n\
         [clusters.redis]\nbase_port = 7541\n{RABBIT_SECTION}\
         [[backends]]\ntype = \"redis-streams\"\n[[backends]]\ntype = \"rabbitmq-quorum\"\n\
         [monitoring]\nprometheus_port = {PROM}\nredis_exporter_base_port = 9630\nscrape_interval = \"1s\"\n"
    )
}

/// Stops what the test started, pass or fail: the test's stack and the RabbitMQ cluster.
struct Cleanup {
    tmp: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mon = self.tmp.join("mon");
        let _ = brokerbench(
            &["monitoring", "down", "--dir", &mon.display().to_string()],
            &self.tmp,
            &[],
        );
        let rabbit = self.tmp.join("rabbit");
        let _ = brokerbench(
            &[
                "cluster",
                "down",
                "rabbitmq",
                "--dir",
                &rabbit.display().to_string(),
            ],
            &self.tmp,
            &[],
        );
    }
}

fn api(path: &str, params: &[(&str, String)]) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let v: Value = rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{PROM}{path}"))
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("Prometheus {path}: {e}"));
        r.json()
            .await
            .unwrap_or_else(|e| panic!("Prometheus {path}: {e}"))
    });
    assert_eq!(v["status"], "success", "{path}: {v}");
    v["data"].clone()
}

/// Instant query: (labels, value) of each result series.
fn query(expr: &str) -> Vec<(Value, f64)> {
    let data = api("/api/v1/query", &[("query", expr.to_string())]);
    data["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|s| {
            let v = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (s["metric"].clone(), v)
        })
        .collect()
}

/// Range query of one series: (unix s, value).
fn range(expr: &str, start: f64, end: f64) -> Vec<(f64, f64)> {
    let data = api(
        "/api/v1/query_range",
        &[
            ("query", expr.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", "1".to_string()),
        ],
    );
    let result = data["result"].as_array().expect("matrix");
    assert_eq!(result.len(), 1, "{expr}: {data}");
    result[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            (
                p[0].as_f64().expect("time"),
                p[1].as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn poll(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Every expression of the Grafana dashboard (panels' targets and template queries).
fn dashboard_exprs() -> Vec<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("compose/grafana/dashboards/brokerbench.json");
    let text = std::fs::read_to_string(&path).expect("dashboard JSON");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dash["uid"], "brokerbench");
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        assert_eq!(
            p["datasource"]["uid"], "brokerbench-prometheus",
            "{}",
            p["title"]
        );
        for t in p["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().expect("templating") {
        let q = v["query"]["query"].as_str().expect("template query");
        // label_values(metric, label): the metric is the first argument.
        let inner = q
            .trim_start_matches("label_values(")
            .split(',')
            .next()
            .unwrap_or("");
        exprs.push(inner.to_string());
    }
    exprs
}

#[test]
fn a_redis_run_is_watched_by_prometheus_and_every_queried_name_exists() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_redis();
    require_rabbitmq();
    let began = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().to_path_buf();
    let _cleanup = Cleanup { tmp: root.clone() };
    let stack_file = write_scenario(&root, "stack.toml", &stack_scenario());
    let run_file = write_scenario(&root, "run.toml", &run_scenario());

    // RabbitMQ (about 30 s) beside everything else.
    let rabbit_dir = root.join("rabbit");
    let (rabbit_args, rabbit_cwd) = (
        vec![
            "cluster".to_string(),
            "up".into(),
            "rabbitmq".into(),
            "--dir".into(),
            rabbit_dir.display().to_string(),
            "--scenario".into(),
            stack_file.display().to_string(),
        ],
        root.clone(),
    );
    let rabbit = std::thread::spawn(move || {
        let args: Vec<&str> = rabbit_args.iter().map(String::as_str).collect();
        brokerbench(&args, &rabbit_cwd, &[])
    });

    let mon = root.join("mon");
    let (code, out, err) = brokerbench(
        &[
            "monitoring",
            "up",
            "--dir",
            &mon.display().to_string(),
            "--scenario",
            &stack_file.display().to_string(),
        ],
        &root,
        &[],
    );
    assert_eq!(code, 0, "monitoring up: {out}{err}");
    let yml = std::fs::read_to_string(mon.join("prometheus.yml")).expect("prometheus.yml");
    assert!(
        yml.contains("'127.0.0.1:9610'") && yml.contains("'127.0.0.1:15941'"),
        "{yml}"
    );

    let results = root.join("results");
    let started = unix_now();
    let (code, out, err) = brokerbench(
        &[
            "run",
            "--quiet",
            "--metrics-addr",
            "127.0.0.1:9610",
            "--results",
            &results.display().to_string(),
            &run_file.display().to_string(),
        ],
        &root,
        &[],
    );
    assert_eq!(code, 0, "run: {out}{err}");
    let ended = unix_now();
    let run_secs = ended - started;

    let (code, out, err) = rabbit.join().expect("rabbit thread");
    assert_eq!(code, 0, "cluster up rabbitmq: {out}{err}");
    poll(
        "Prometheus to scrape 3 RabbitMQ nodes",
        Duration::from_secs(30),
        || query("up{job=\"rabbitmq\"} == 1").len() == 3,
    );
    // The run's Redis cluster is gone by now: each exporter saw its node up during the run.
    let redis_up = query("max_over_time(redis_up{job=\"redis\"}[5m]) == 1");
    assert_eq!(
        redis_up.len(),
        6,
        "redis_exporters that saw their node up: {redis_up:?}"
    );

    // The sent rate Prometheus saw while the run measured, away from the phase edges.
    let rate = range("sum(rate(brokerbench_sent_total[4s]))", started, ended);
    let measure = range("sum(brokerbench_phase{phase=\"measure\"})", started, ended);
    let measuring: Vec<f64> = measure
        .iter()
        .filter(|(_, v)| *v == 1.0)
        .map(|(t, _)| *t)
        .collect();
    assert!(
        measuring.len() >= 6,
        "Prometheus saw {} s of the measure phase: {measure:?}",
        measuring.len()
    );
    let (m0, m1) = (measuring[0] + 4.0, measuring[measuring.len() - 1]);
    let mut inside: Vec<f64> = rate
        .iter()
        .filter(|(t, v)| *t >= m0 && *t <= m1 && v.is_finite())
        .map(|(_, v)| *v)
        .collect();
    assert!(
        !inside.is_empty(),
        "no rate sample inside the measure phase: {rate:?}"
    );
    inside.sort_by(f64::total_cmp);
    let median = inside[inside.len() / 2];
    eprintln!(
        "measured: Prometheus saw {median:.0} msg/s sent (median of {} samples, target {TARGET_RATE}); \
         run took {run_secs:.1} s",
        inside.len()
    );
    assert!(
        (median - TARGET_RATE).abs() <= 0.3 * TARGET_RATE,
        "Prometheus saw {median:.0} msg/s sent, the target was {TARGET_RATE}: {inside:?}"
    );
    let received = query("sum(max_over_time(brokerbench_received_total[5m]))");
    let sent = query("sum(max_over_time(brokerbench_sent_total[5m]))");
    assert!(
        sent[0].1 > 0.0 && received[0].1 == sent[0].1,
        "sent {sent:?} received {received:?}"
    );
    let p99 = query("max_over_time(brokerbench_e2e_latency_seconds{quantile=\"0.99\"}[5m])");
    assert!(
        p99.iter().any(|(_, v)| *v > 0.0 && *v < 1.0),
        "e2e p99 {p99:?}"
    );
    let lost = query("max_over_time(brokerbench_lost_messages[5m])");
    assert_eq!(
        lost.len(),
        1,
        "lost is set once the drain is over: {lost:?}"
    );
    assert_eq!(lost[0].1, 0.0);

    // Every documented series was scraped, and every name the dashboard and prometheus.csv's
    // queries read exists in what Prometheus scraped from brokerbench, redis_exporter and RabbitMQ.
    let names: BTreeSet<String> = api("/api/v1/label/__name__/values", &[])
        .as_array()
        .expect("names")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    for s in SERIES {
        assert!(names.contains(s.name), "{} was never scraped", s.name);
    }
    let mut exprs = dashboard_exprs();
    exprs.extend(QUERIES.iter().map(|q| q.expr(Duration::from_secs(1))));
    let mut checked = BTreeSet::new();
    for e in &exprs {
        let found = metric_names(e);
        assert!(!found.is_empty(), "no metric name in {e:?}");
        for n in found {
            assert!(names.contains(&n), "{n} (in {e:?}) is in no real scrape");
            checked.insert(n);
        }
    }
    for prefix in ["brokerbench_", "redis_", "rabbitmq_"] {
        assert!(
            checked.iter().any(|n| n.starts_with(prefix)),
            "no {prefix} name checked"
        );
    }

    // The run's own stack: prometheus.csv and the chart beside the harness's figures.
    let dir = first_run_folder(&results).expect("run folder");
    let rows = read_csv(&dir.join("prometheus.csv"));
    for q in [
        "brokerbench_sent_per_s",
        "redis_commands_per_s",
        "redis_memory_used_bytes",
    ] {
        assert!(
            rows.iter()
                .any(|r| r["query"] == q && num(r, "value") > 0.0),
            "{q} in prometheus.csv"
        );
    }
    let nodes: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["query"] == "redis_commands_per_s")
        .map(|r| r["series"].as_str())
        .collect();
    assert_eq!(nodes.len(), 6, "{nodes:?}");
    assert!(
        dir.join("charts/prometheus-redis.png").is_file(),
        "the broker-side chart"
    );
    assert!(
        !dir.join("charts/prometheus-rabbitmq.png").exists(),
        "RabbitMQ was not in the run"
    );
    let report = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    assert!(
        report.contains("charts/prometheus-redis.png"),
        "the report shows the chart"
    );
    assert!(
        !dir.join("monitoring").join("monitoring.json").exists(),
        "the run stopped its stack"
    );
    assert!(
        processes_mentioning(&format!(
            "BROKERBENCH_MONITORING={}",
            dir.join("monitoring").display()
        ))
        .is_empty(),
        "a process of the run's stack is still running"
    );
    eprintln!(
        "measured: whole test {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

/// SIGKILL of a run with `monitoring = true`: its watchdog stops Prometheus and the exporters
/// with the Redis cluster.
#[test]
fn a_killed_run_leaves_no_monitoring_process() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_redis();
    let tmp = tempfile::tempdir().expect("temp dir");
    let text = run_scenario().replace("duration = \"8s\"", "duration = \"60s\"");
    let file = write_scenario(tmp.path(), "kill.toml", &text);
    let results = tmp.path().join("results");
    let mut run = start_run(&results, &file, &[]);
    // Until the run's Prometheus has scraped the load.
    let start = Instant::now();
    let dir = loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never got its stack up"
        );
        if let Ok(Some(status)) = run.0.try_wait() {
            panic!("the run ended early: {status}");
        }
        let dir = first_run_folder(&results);
        let up = dir.as_ref().is_some_and(|d| {
            d.join("monitoring/monitoring.json").is_file()
                && std::fs::read_to_string(d.join("timeseries.csv"))
                    .is_ok_and(|t| t.lines().count() >= 3)
        });
        if up {
            break dir.expect("run folder");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let marker = format!(
        "BROKERBENCH_MONITORING={}",
        dir.join("monitoring").display()
    );
    assert_eq!(
        processes_mentioning(&marker).len(),
        7,
        "prometheus and 6 exporters run"
    );
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(run.0.id() as i32, libc::SIGKILL);
    }
    let _ = run.0.wait();
    let left = wait_until_gone(&marker, Duration::from_secs(15));
    assert!(
        left.is_empty(),
        "left running after the harness died: {left}"
    );
    assert!(
        redis_servers_on(7541..=7546).is_empty(),
        "a Redis node outlived the run"
    );
    // The watchdog writes its line once it has stopped the stack.
    let log = || std::fs::read_to_string(dir.join("watchdog.log")).unwrap_or_default();
    poll(
        "the watchdog's line about the stack",
        Duration::from_secs(10),
        || log().contains("monitoring cluster in "),
    );
}

/// The compose path: the dashboard names the provisioned datasource's uid, the provider reads
/// the folder compose/monitoring.yml mounts, and `docker-compose config` accepts the file.
#[test]
fn the_grafana_provisioning_hangs_together() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("compose");
    let read =
        |p: &str| std::fs::read_to_string(base.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let datasource = read("grafana/provisioning/datasources/prometheus.yaml");
    assert!(
        datasource.contains("uid: brokerbench-prometheus"),
        "{datasource}"
    );
    assert!(
        datasource.contains("url: http://127.0.0.1:9090"),
        "the default of make monitoring"
    );
    let provider = read("grafana/provisioning/dashboards/brokerbench.yaml");
    assert!(
        provider.contains("path: /var/lib/grafana/dashboards"),
        "{provider}"
    );
    let compose = read("monitoring.yml");
    assert!(
        compose.contains("./grafana/dashboards:/var/lib/grafana/dashboards:ro"),
        "{compose}"
    );
    assert!(
        compose.contains("./grafana/provisioning:/etc/grafana/provisioning:ro"),
        "{compose}"
    );
    // Every panel and the template name the datasource (checked in dashboard_exprs).
    assert!(dashboard_exprs().len() >= 10);
    let out = std::process::Command::new("docker-compose")
        .args(["-f", "monitoring.yml", "config", "-q"])
        .current_dir(&base)
        .output()
        .expect(
            "docker-compose (Debian's package) must be installed: apt-get install docker-compose",
        );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
