//! `brokerbench report` on a small results folder (tests/fixtures/report-run: a real run of
//! tests/fixtures/report-run.toml, trimmed: a redis and a quorum backend with a leader kill,
//! max-rate stream rows at 3 and 12 destinations, replica lag and CPU samples, HdrHistogram
//! logs): every chart is a valid PNG and SVG of some size, the report links only files that
//! exist, and it carries a verdict for each claim.

mod common;

use common::copy_dir;

use std::path::Path;

/// The fixture: a real run of tests/fixtures/report-run.toml, its files trimmed (the hlogs keep
/// only the e2e tag).
fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-run");
    copy_dir(&from, to);
}

fn links(markdown: &str) -> Vec<String> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next().map(str::to_string))
        .collect()
}

#[test]
fn report_draws_every_chart_and_links_only_existing_files() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    copy_fixture(dir);
    let w = brokerbench::report::document::write_report(dir).expect("report");

    let stems: Vec<&str> = w.charts.iter().map(|c| c.stem.as_str()).collect();
    for expected in [
        "throughput-redis",
        "latency-redis",
        "throughput-quorum",
        "latency-quorum",
        "percentiles",
        "max-throughput",
        "throughput-by-destinations",
        "replica-lag-redis",
        "cpu-redis",
        "cpu-quorum",
        "p99-by-rate",
        "failover-unavailability",
        "failover-loss",
    ] {
        assert!(
            stems.contains(&expected),
            "{expected} not drawn: {stems:?} skipped {:?}",
            w.skipped
        );
    }
    for c in &w.charts {
        let png = std::fs::read(&c.png).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", c.png.display());
        assert!(
            png.len() > 5_000,
            "{} is {} bytes",
            c.png.display(),
            png.len()
        );
        let svg = std::fs::read_to_string(&c.svg).expect("svg");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{}",
            c.svg.display()
        );
        assert!(
            svg.len() > 2_000 && svg.contains("<text"),
            "{} has no text",
            c.svg.display()
        );
    }

    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    let md_links = links(&md);
    assert!(!md_links.is_empty());
    for l in &md_links {
        assert!(
            dir.join(l).is_file(),
            "report.md links {l}, which does not exist"
        );
    }
    let html = std::fs::read_to_string(&w.html).expect("report.html");
    for attr in ["src=\"", "href=\""] {
        for l in html.split(attr).skip(1).filter_map(|r| r.split('"').next()) {
            assert!(
                dir.join(l).is_file(),
                "report.html links {l}, which does not exist"
            );
            assert!(!l.starts_with("http"), "external asset {l}");
        }
    }
    for claim in ["C1", "C2", "C3", "C4", "C5", "C6"] {
        assert!(
            md.contains(&format!("### {claim} — ")),
            "no section for {claim}"
        );
    }
    // In the fixture Redis stopped taking writes for 4.2 s after its master was killed, the
    // quorum queue for 0.9 s; RabbitMQ's replica lag is not sampled (its Raft indexes refresh
    // every 5 s), so C2 cannot be judged and says so.
    let verdict_of = |c: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("### {c} — ")))
            .and_then(|l| l.rsplit(": ").next())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(verdict_of("C4"), "refuted");
    assert_eq!(verdict_of("C2"), "not measured");
    assert!(
        !w.charts.iter().any(|c| c.stem == "replica-lag-quorum"),
        "a quorum lag chart from data the tool cannot write"
    );
    assert!(md.contains("## Caveats"));
}

#[test]
fn a_folder_without_summary_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("meta.json"), "{}").expect("meta");
    let e = brokerbench::report::document::write_report(tmp.path()).expect_err("no summary.csv");
    assert!(e.to_string().contains("summary.csv"), "{e}");
}

#[test]
fn compare_puts_both_runs_side_by_side() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (a, b, out) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("cmp"),
    );
    for d in [&a, &b] {
        std::fs::create_dir_all(d).expect("dir");
        copy_fixture(d);
    }
    let w = brokerbench::report::document::write_comparison(&a, &b, &out).expect("compare");
    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    let l = links(&md);
    assert!(
        l.iter().any(|p| p.starts_with("a/")) && l.iter().any(|p| p.starts_with("b/")),
        "{l:?}"
    );
    for p in &l {
        assert!(
            out.join(p).is_file(),
            "comparison links {p}, which does not exist"
        );
    }
    assert!(md.contains("| C4 "), "{md}");
}

/// Rewrite a CSV file, letting `edit` change (or drop, by returning false) each row.
fn edit_csv(path: &Path, edit: impl Fn(&csv::StringRecord, &mut Vec<String>) -> bool) {
    let mut r = csv::Reader::from_path(path).expect("read csv");
    let headers = r.headers().expect("headers").clone();
    let mut w = csv::Writer::from_path(path.with_extension("new")).expect("write csv");
    w.write_record(&headers).expect("header");
    for rec in r.records() {
        let mut row: Vec<String> = rec.expect("row").iter().map(String::from).collect();
        if edit(&headers, &mut row) {
            w.write_record(&row).expect("row");
        }
    }
    w.flush().expect("flush");
    std::fs::rename(path.with_extension("new"), path).expect("rename");
}

fn column(headers: &csv::StringRecord, name: &str) -> usize {
    headers
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

/// A fault-free run folder at one fixed rate, from the fixture.
fn latency_run(dir: &Path, rate: u32) {
    std::fs::create_dir_all(dir).expect("dir");
    copy_fixture(dir);
    std::fs::remove_file(dir.join("faults.csv")).expect("no faults");
    edit_csv(&dir.join("timeline.csv"), |h, row| {
        row[column(h, "kind")] != "fault"
    });
    edit_csv(&dir.join("summary.csv"), |h, row| {
        let i = column(h, "target_rate");
        if !row[i].is_empty() {
            row[i] = format!("{rate}.0");
        }
        true
    });
}

#[test]
fn overview_takes_the_newest_good_run_of_each_scenario() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let failover = root.join("20261127T080000Z-failover");
    let interrupted = root.join("20261127T090000Z-failover");
    for d in [&failover, &interrupted] {
        std::fs::create_dir_all(d).expect("dir");
        copy_fixture(d);
    }
    // The newer failover run has no backend that ended ok: the older one stands.
    edit_csv(&interrupted.join("summary.csv"), |h, row| {
        row[column(h, "status")] = "interrupted".into();
        true
    });
    latency_run(&root.join("20261127T081000Z-latency-1k"), 1000);
    latency_run(&root.join("20261127T082000Z-latency-5k"), 5000);
    std::fs::create_dir_all(root.join("compare-a-vs-b")).expect("not a run");

    let w = brokerbench::report::overview::write_overview(root).expect("overview");
    let names: Vec<String> = w
        .runs
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "20261127T080000Z-failover",
            "20261127T081000Z-latency-1k",
            "20261127T082000Z-latency-5k"
        ]
    );
    // C4 comes from the failover run only (the latency runs have no faults), as its own report.
    let own = brokerbench::report::document::write_report(&failover).expect("report");
    let c4 = &w.claims[3];
    assert_eq!(c4.claim, "C4");
    assert_eq!(c4.outcome, own.verdicts[3].outcome);
    assert_ne!(c4.outcome.as_str(), "not measured");
    let from: Vec<&str> = c4.from.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(from, ["20261127T080000Z-failover"]);
    // p99 by rate needs the two latency runs: one line per backend over 1k and 5k.
    assert_eq!(w.charts.len(), 1, "{:?}", w.skipped);
    let png = std::fs::read(&w.charts[0].png).expect("png");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    let md = std::fs::read_to_string(&w.markdown).expect("overview.md");
    let l = links(&md);
    assert!(!l.is_empty());
    for p in &l {
        assert!(
            root.join(p).is_file(),
            "overview links {p}, which does not exist"
        );
    }
    assert!(md.contains("20261127T080000Z-failover/report.html"), "{md}");
    assert!(!md.contains("20261127T090000Z"), "{md}");
}

/// What a harness or a consumer that fell behind looks like must catch the eye: the results
/// table shows send delay, unsent, undelivered and drained, in red where they need a look, and
/// a phantom gets its own Anomalies section.
#[test]
fn results_table_shows_what_fell_behind_in_red() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    copy_fixture(dir);
    edit_csv(&dir.join("summary.csv"), |h, row| {
        if row[column(h, "backend")] == "quorum" {
            row[column(h, "overloaded")] = "true".into();
            row[column(h, "unsent")] = "1234".into();
            row[column(h, "undelivered")] = "77".into();
            row[column(h, "drained")] = "false".into();
            row[column(h, "phantom")] = "2".into();
        }
        true
    });
    let w = brokerbench::report::document::write_report(dir).expect("report");
    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    let html = std::fs::read_to_string(&w.html).expect("report.html");
    for col in [
        "send delay p99 ms",
        "unsent",
        "undelivered",
        "drained",
        "foreign",
        "out of order",
    ] {
        assert!(md.contains(&format!("| {col} |")), "no column {col}");
    }
    let quorum = md
        .lines()
        .find(|l| l.starts_with("| quorum |"))
        .expect("a quorum row");
    assert!(quorum.contains("overloaded"), "{quorum}");
    assert!(quorum.contains("no: 77 still in the broker"), "{quorum}");
    assert!(
        html.contains("<td class=\"alarm\">\u{26a0} 1234</td>"),
        "unsent not in red"
    );
    assert!(md.contains("## Anomalies"));
    assert!(md.contains("quorum: 2 deliveries of messages this run never sent"));
    // The other rows are not marked.
    let redis = md
        .lines()
        .find(|l| l.starts_with("| redis |"))
        .expect("a redis row");
    assert!(!redis.contains('\u{26a0}'), "{redis}");
}

/// Every failover figure depends on the brokers' failure-detection timeouts: the report states
/// them beside the faults table.
#[test]
fn the_faults_section_states_the_failure_detection_timeouts() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_fixture(tmp.path());
    let w = brokerbench::report::document::write_report(tmp.path()).expect("report");
    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    let faults = md.split("## Faults").nth(1).expect("a Faults section");
    assert!(
        faults.contains("Redis cluster-node-timeout 2000 ms")
            && faults.contains("RabbitMQ net_ticktime 10 s"),
        "{}",
        &faults[..faults.len().min(600)]
    );
    // This run was recorded before meta.json kept each backend's settings: the rows say so.
    let row = |md: &str, backend: &str| -> String {
        md.split("## Faults")
            .nth(1)
            .and_then(|f| f.lines().find(|l| l.starts_with(&format!("| {backend} |"))))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(&md, "redis").ends_with("| not recorded |"), "{md}");
    // As a run records them now (meta.json, per backend): beside each row, and in C4.
    let meta_path = tmp.path().join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).expect("meta")).expect("json");
    for b in meta["backends"].as_array_mut().expect("backends") {
        b["failure_detection"] = if b["type"] == "redis-streams" {
            serde_json::json!({"redis_node_timeout_ms": 2000, "client_reply_timeout_ms": 1500})
        } else {
            serde_json::json!({"rabbitmq_net_ticktime_s": 10, "client_heartbeat_s": 5})
        };
    }
    std::fs::write(&meta_path, meta.to_string()).expect("write meta");
    let w = brokerbench::report::document::write_report(tmp.path()).expect("report");
    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    assert!(
        row(&md, "redis")
            .ends_with("| cluster-node-timeout 2000 ms, client reply timeout 1500 ms |"),
        "{}",
        row(&md, "redis")
    );
    assert!(
        row(&md, "quorum").ends_with("| net_ticktime 10 s, AMQP heartbeat 5 s |"),
        "{}",
        row(&md, "quorum")
    );
    let c4 = md.split("### C4").nth(1).expect("a C4 section");
    assert!(
        c4.contains(
            "failure detection: cluster-node-timeout 2000 ms, client reply timeout 1500 ms)"
        ),
        "{}",
        &c4[..c4.len().min(1500)]
    );
}

/// A row near the harness's ceiling (recorded in meta.json) or with a busy harness (cpu.csv) is
/// flagged in the results table and in the Harness section; the others are not.
#[test]
fn rows_near_the_harness_ceiling_or_with_a_busy_harness_are_flagged() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    copy_fixture(dir);
    let meta_path = dir.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).expect("meta")).expect("json");
    // The stream rows send or receive up to 13.3k and 15.9k msg/s: 53% and 64% of this ceiling.
    meta["harness_ceiling"] = serde_json::json!({"msgs_per_s": 25000.0, "cpu_s_per_million": 2.0});
    std::fs::write(&meta_path, meta.to_string()).expect("write meta");
    // The harness used about 0.26 of the 2 cores during the redis row; make it 0.9 (45%).
    edit_csv(&dir.join("cpu.csv"), |h, row| {
        if row[column(h, "backend")] == "redis" && row[column(h, "node")] == "harness" {
            row[column(h, "cpu")] = "0.9".into();
        }
        true
    });
    let w = brokerbench::report::document::write_report(dir).expect("report");
    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    assert!(md.contains("## Harness"), "{md}");
    assert!(md.contains("25000 msg/s end to end"), "{md}");
    let row = |backend: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {backend} |")))
            .unwrap_or_else(|| panic!("no row for {backend}"))
            .to_string()
    };
    assert!(
        row("redis").contains("harness used 45% of the host's CPU"),
        "{}",
        row("redis")
    );
    assert!(
        row("stream-max").contains("throughput at 53% of the harness's ceiling"),
        "{}",
        row("stream-max")
    );
    assert!(row("stream-max-12").contains("64% of the harness's ceiling"));
    assert!(!row("quorum").contains("harness"), "{}", row("quorum"));
}

/// The fixture was recorded before summary.csv named each row's cluster and broker version:
/// the version comes from meta.json's backends (and the kind from the backend type) into the
/// results table and every chart's legend. A row that names its own (a newer run) keeps it.
#[test]
fn every_row_and_legend_carries_its_broker_version() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    copy_fixture(dir);
    let run = brokerbench::report::results::RunResults::load(dir).expect("load the old run");
    let names: Vec<String> = run.summary.iter().map(|s| s.display_name()).collect();
    assert_eq!(
        names,
        [
            "redis (Redis 7.0.15)",
            "quorum (RabbitMQ 3.10.8, AMQP 0-9-1)",
            "stream-max (RabbitMQ 3.10.8, AMQP 0-9-1)",
            "stream-max-12 (RabbitMQ 3.10.8, AMQP 0-9-1)"
        ]
    );
    let w = brokerbench::report::document::write_report(dir).expect("report");
    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    assert!(
        md.contains("| backend | broker, protocol (cluster) | status |"),
        "{md}"
    );
    assert!(md.contains("| redis | Redis 7.0.15 (redis) |"), "{md}");
    assert!(
        md.contains("| quorum | RabbitMQ 3.10.8, AMQP 0-9-1 (rabbitmq) |"),
        "{md}"
    );
    let svg = |stem: &str| {
        let c = w
            .charts
            .iter()
            .find(|c| c.stem == stem)
            .unwrap_or_else(|| panic!("no chart {stem}"));
        std::fs::read_to_string(&c.svg).expect("svg")
    };
    assert!(svg("percentiles").contains("redis (Redis 7.0.15)"));
    assert!(svg("percentiles").contains("quorum (RabbitMQ 3.10.8, AMQP 0-9-1)"));
    assert!(svg("max-throughput").contains("stream-max-12 (RabbitMQ 3.10.8, AMQP 0-9-1)"));
    assert!(svg("throughput-redis").contains("redis (Redis 7.0.15): throughput"));
    assert!(
        svg("throughput-by-destinations").contains("rabbitmq-stream (RabbitMQ 3.10.8, AMQP 0-9-1)")
    );
    assert!(svg("failover-loss").contains("quorum (RabbitMQ 3.10.8, AMQP 0-9-1) lost"));

    // A newer run writes the columns itself: they win over meta.json.
    let path = dir.join("summary.csv");
    let mut r = csv::Reader::from_path(&path).expect("read");
    let mut headers: Vec<String> = r
        .headers()
        .expect("headers")
        .iter()
        .map(String::from)
        .collect();
    headers.extend(["cluster", "broker", "broker_version"].map(String::from));
    let rows: Vec<Vec<String>> = r
        .records()
        .map(|rec| {
            let mut row: Vec<String> = rec.expect("row").iter().map(String::from).collect();
            let on_4 = row[0] == "quorum";
            row.extend(if on_4 {
                ["rabbitmq-4", "rabbitmq", "4.0.5"].map(String::from)
            } else {
                ["", "", ""].map(String::from)
            });
            row
        })
        .collect();
    let mut out = csv::Writer::from_path(&path).expect("write");
    out.write_record(&headers).expect("headers");
    for row in rows {
        out.write_record(&row).expect("row");
    }
    out.flush().expect("flush");
    let run = brokerbench::report::results::RunResults::load(dir).expect("load");
    assert_eq!(
        run.display_name("quorum"),
        "quorum (RabbitMQ 4.0.5, AMQP 0-9-1)"
    );
    assert_eq!(run.summary[1].cluster, "rabbitmq-4");
    assert_eq!(run.display_name("redis"), "redis (Redis 7.0.15)");
}

/// The report of a repeated run (tests/fixtures/verdicts-run: two repetitions of each backend,
/// on a host whose cores were 100% busy) shows per claim the rows compared with their
/// guarantees, medians and ranges, and why, in one sentence.
#[test]
fn a_repeated_runs_report_shows_ranges_guarantees_and_reasons() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("20261202T024049Z-verdicts-fixture");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verdicts-run"),
        &dir,
    );
    let w = brokerbench::report::document::write_report(&dir).expect("report");
    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    let section = |c: &str| {
        let start = md
            .find(&format!("### {c} — "))
            .unwrap_or_else(|| panic!("no {c}"));
        let rest = &md[start..];
        let end = rest[4..].find("\n### ").map_or(rest.len(), |e| e + 4);
        rest[..end].to_string()
    };
    let c3 = section("C3");
    assert!(
        c3.lines()
            .next()
            .is_some_and(|l| l.ends_with(": inconclusive (host-bound)")),
        "{c3}"
    );
    assert!(
        c3.contains("Why: the host's cores (or the harness) were saturated"),
        "{c3}"
    );
    assert!(
        c3.contains(
            "redis-streams 7.0.15 (confirm: aof-always): 1 → 19040 msg/s (median; 16180–21900 over 2 runs), 3 → 24596 msg/s (median; 22186–27007 over 2 runs)"
        ),
        "{c3}"
    );
    let c6 = section("C6");
    assert!(c6.contains(": inconclusive (host-bound)"), "{c6}");
    assert!(
        c6.contains("redis-wait1-1k (redis-streams; confirm: replica-ack (WAIT 1) + aof-everysec, replicated, no fsync) at 1000 msg/s offered, 6 destination(s): received 1000 msg/s (median; 1000–1000 over 2 runs), e2e p99 4.37 ms (median; 3.31–5.42 over 2 runs)"),
        "{c6}"
    );
    // `brokerbench verdicts` over a root holding it and a copy says the same per run.
    let copy = tmp.path().join("20261202T030000Z-verdicts-fixture");
    copy_dir(&dir, &copy);
    let lines = brokerbench::report::overview::verdict_lines(tmp.path()).expect("verdicts");
    let i = lines.iter().position(|l| l.starts_with("C3 ")).expect("C3");
    assert!(
        lines[i].ends_with(": inconclusive (host-bound)"),
        "{lines:#?}"
    );
    assert!(
        lines[i + 1].starts_with(
            "  20261202T024049Z-verdicts-fixture: inconclusive (host-bound) — the host's cores"
        ),
        "{lines:#?}"
    );
    assert!(
        lines[i + 2].starts_with("  20261202T030000Z-verdicts-fixture: "),
        "{lines:#?}"
    );
}
