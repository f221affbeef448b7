//! `brokerbench report` on a small results folder (tests/fixtures/report-run: a redis and a quorum
//! backend with a leader kill, max-rate stream rows at 3 and 12 destinations, replica lag and
//! CPU samples in the format a sampler will write), with histogram logs written by the
//! harness's own sink: every chart is a valid PNG and SVG of some size, the report links only
//! files that exist, and it carries a verdict for each claim.

use std::path::Path;

use brokerbench::metrics::aggregator::Aggregator;
use brokerbench::metrics::stats::{record_ns, Recorder};
use brokerbench::report::hlog::HlogSink;
use brokerbench::report::{BackendStart, Sink};

fn copy_fixture(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report-run");
    for e in std::fs::read_dir(&from).expect("fixture") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

/// hdr/<label>.hlog with ten one-second intervals of e2e latencies from 1 to `top_ms`.
fn write_hlog(dir: &Path, label: &str, top_ms: u64) {
    let mut sink = HlogSink::new(dir).expect("hlog sink");
    sink.on_backend_start(&BackendStart {
        label: label.into(),
        backend_type: "test".into(),
        started: std::time::SystemTime::now(),
        warmup_s: 5.0,
        duration_s: 10.0,
    })
    .expect("start");
    let r = Recorder::new();
    let mut agg = Aggregator::new(label, 0, vec![r.clone()]);
    for s in 5..16u64 {
        let (row, stats) = agg.tick(s * 1_000_000_000, "measure");
        let (row, stats) = (row.clone(), stats.clone());
        sink.on_interval(&row, &stats).expect("interval");
        r.with(|st| {
            for v in 1..=top_ms {
                record_ns(&mut st.e2e, v * 1_000_000);
            }
        });
    }
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
    write_hlog(dir, "redis", 50);
    write_hlog(dir, "quorum", 200);
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
        "replica-lag-quorum",
        "cpu-redis",
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
    // The fixture's redis fails over in about 4 s against about 0.35 s for the quorum queue, and
    // its replicas lag by a few messages against tens for the quorum queue's followers.
    let verdict_of = |c: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("### {c} — ")))
            .and_then(|l| l.rsplit(": ").next())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(verdict_of("C4"), "refuted");
    assert_eq!(verdict_of("C2"), "supported");
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
        write_hlog(d, "redis", 50);
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
    // The stream rows send 16.7k msg/s and receive up to 18.3k: 56% and 61% of this ceiling.
    meta["harness_ceiling"] = serde_json::json!({"msgs_per_s": 30000.0, "cpu_s_per_million": 2.0});
    std::fs::write(&meta_path, meta.to_string()).expect("write meta");
    let w = brokerbench::report::document::write_report(dir).expect("report");
    let md = std::fs::read_to_string(&w.markdown).expect("report.md");
    assert!(md.contains("## Harness"), "{md}");
    assert!(md.contains("30000 msg/s end to end"), "{md}");
    let row = |backend: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {backend} |")))
            .unwrap_or_else(|| panic!("no row for {backend}"))
            .to_string()
    };
    // redis: the harness used 0.82 of 2 cores (41%) while it ran.
    assert!(
        row("redis").contains("harness used 41% of the host's CPU"),
        "{}",
        row("redis")
    );
    assert!(row("stream-max").contains("throughput at 56% of the harness's ceiling"));
    assert!(row("stream-max-12").contains("61% of the harness's ceiling"));
    assert!(!row("quorum").contains("harness"), "{}", row("quorum"));
}
