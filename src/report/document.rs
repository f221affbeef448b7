//! report.md and report.html of a results folder: the environment, what ran, the figures, one
//! section per claim of the proposal with its verdict and the rule that produced it, the charts
//! and the caveats. Both files are rendered from one list of blocks, so they say the same.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::charts::{self, ChartError, ChartFile};
use super::claims::{verdicts, Evidence, Verdict};
pub use super::compare::write_comparison;
pub use super::html::to_html;
use super::results::RunResults;
use super::{faults_section, front, harness, replay_section};
use super::{ReportError, SummaryRow};

/// One piece of the document.
#[derive(Debug, Clone)]
pub enum Block {
    Heading(u8, String),
    Para(String),
    List(Vec<String>),
    /// Header row, then rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// Alt text and a path relative to the report.
    Image(String, String),
    /// Images shown side by side (alt text, path), one per run.
    Images(Vec<(String, String)>),
}

/// What `write_report` produced.
#[derive(Debug)]
pub struct Written {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub charts: Vec<ChartFile>,
    pub skipped: Vec<ChartError>,
    pub verdicts: Vec<Verdict>,
}

/// The charts each claim shows, by file-stem prefix.
fn charts_for(claim: &str) -> &'static [&'static str] {
    match claim {
        "C1" => &["failover-loss"],
        "C2" => &["replica-lag-"],
        "C3" => &["throughput-by-destinations", "max-throughput", "cpu-"],
        "C4" => &["failover-unavailability", "throughput-"],
        "C6" => &["max-throughput", "percentiles", "p99-by-rate"],
        _ => &[],
    }
}

pub(super) fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into())
}

fn meta_str(meta: &serde_json::Value, path: &[&str]) -> String {
    let mut v = meta;
    for p in path {
        v = &v[*p];
    }
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The results table's columns, and one backend's cells. Beside throughput and latency it shows
/// what tells a harness that fell behind (send delay, unsent) and a consumer that fell behind
/// (undelivered, drained) from the broker's own figures.
pub(super) const RESULT_COLUMNS: [&str; 24] = [
    "backend",
    "broker, protocol (cluster)",
    "status",
    "a confirm guaranteed",
    "target msg/s",
    "received msg/s",
    "e2e p50 ms",
    "e2e p99 ms",
    "e2e max ms",
    "confirm p99 ms",
    "failed publish p99 ms",
    "send delay p99 ms",
    "sent",
    "unsent",
    "confirmed",
    "lost",
    "undelivered",
    "duplicated",
    "indeterminate",
    "foreign",
    "out of order",
    "phantom",
    "drained",
    "ledger",
];

/// A cell that must catch the eye: drawn in red in HTML, bold in Markdown.
pub(super) const ALARM: &str = "\u{26a0} ";

fn alarm(text: String) -> String {
    format!("{ALARM}{text}")
}

/// `n`, in red when it is not 0.
fn count_alarm(n: u64) -> String {
    if n > 0 {
        alarm(n.to_string())
    } else {
        n.to_string()
    }
}

pub(super) fn result_cells(s: &SummaryRow, h: &harness::HarnessCheck) -> Vec<String> {
    let mut status = s.status.clone();
    if s.overloaded {
        status += &format!(
            " (overloaded: {:.0}% late, {:.0}% unsent)",
            s.late_share * 100.0,
            s.unsent_share * 100.0
        );
    }
    if h.flagged() {
        status += &format!(" (harness: {})", h.warning());
    }
    if s.overloaded || h.flagged() {
        status = alarm(status);
    }
    let broker = match (s.broker_name(), s.cluster.as_str()) {
        (Some(b), "") => b,
        (Some(b), c) => format!("{b} ({c})"),
        (None, "") => "-".into(),
        (None, c) => format!("version unknown ({c})"),
    };
    vec![
        s.backend.clone(),
        broker,
        status,
        if s.guarantee.is_empty() {
            "-".into()
        } else {
            s.guarantee.clone()
        },
        s.target_rate
            .map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "max".into()),
        format!("{:.0}", s.received_per_s),
        opt(s.e2e_p50_ms),
        opt(s.e2e_p99_ms),
        opt(s.e2e_max_ms),
        opt(s.publish_p99_ms),
        opt(s.publish_failed_p99_ms),
        if s.overloaded {
            alarm(opt(s.send_delay_p99_ms))
        } else {
            opt(s.send_delay_p99_ms)
        },
        s.sent.to_string(),
        count_alarm(s.unsent),
        s.confirmed.to_string(),
        count_alarm(s.lost),
        count_alarm(s.undelivered),
        s.duplicates.to_string(),
        s.indeterminate.to_string(),
        s.foreign.to_string(),
        s.out_of_order.to_string(),
        count_alarm(s.phantom),
        match (s.drained, s.undelivered) {
            (true, _) => "yes".into(),
            (false, 0) => alarm("no".into()),
            (false, n) => alarm(format!("no: {n} still in the broker")),
        },
        if s.ledger_consistent {
            "adds up".into()
        } else {
            alarm(format!(
                "DOES NOT ADD UP: {}",
                crate::text::shorten(&s.ledger_problems, 300)
            ))
        },
    ]
}

/// What the system under test did that the harness never asked for, one line per backend.
fn anomalies(run: &RunResults) -> Vec<String> {
    run.summary
        .iter()
        .filter(|s| s.has_anomaly())
        .map(|s| {
            format!(
                "{}: {} deliveries of messages this run never sent (phantoms): the broker, or another writer on the same queue or stream, delivered them",
                s.backend, s.phantom
            )
        })
        .collect()
}

/// Relative path of a chart file from the report's folder.
pub(super) fn rel(report_dir: &Path, file: &Path) -> String {
    file.strip_prefix(report_dir)
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The blocks of one run's report.
pub fn blocks(
    run: &RunResults,
    report_dir: &Path,
    drawn: &[ChartFile],
    skipped: &[ChartError],
    verdicts: &[Verdict],
) -> Vec<Block> {
    let m = &run.meta;
    let mut b = vec![
        Block::Heading(1, format!("brokerbench report: {}", run.name)),
        Block::Para(format!(
            "Scenario `{}` ({}), run from {} to {}.",
            meta_str(m, &["scenario"]),
            meta_str(m, &["scenario_file"]),
            meta_str(m, &["started_utc"]),
            meta_str(m, &["ended_utc"])
        )),
    ];
    b.extend(front::blocks(run, verdicts));
    b.extend([
        Block::Heading(2, "Environment".into()),
        Block::List(vec![
            format!(
                "brokerbench {} (commit {})",
                meta_str(m, &["brokerbench_version"]),
                meta_str(m, &["git_commit"])
            ),
            format!(
                "host: {} cores, {:.1} GiB memory, kernel {}",
                meta_str(m, &["host", "cores"]),
                m["host"]["memory_bytes"].as_f64().unwrap_or(0.0) / (1u64 << 30) as f64,
                meta_str(m, &["host", "kernel"])
            ),
        ]),
    ]);
    if let Some(brokers) = m["brokers"].as_array().filter(|b| !b.is_empty()) {
        b.push(Block::List(
            brokers
                .iter()
                .map(|c| {
                    format!(
                        "cluster {}: {} {} ({}, binaries from {})",
                        meta_str(c, &["name"]),
                        meta_str(c, &["kind"]),
                        meta_str(c, &["version"]),
                        meta_str(c, &["mode"]),
                        meta_str(c, &["root"])
                    )
                })
                .collect(),
        ));
    }
    if let Some(backends) = m["backends"].as_array() {
        b.push(Block::List(
            backends
                .iter()
                .map(|x| {
                    format!(
                        "{} ({}): broker {}",
                        meta_str(x, &["label"]),
                        meta_str(x, &["type"]),
                        meta_str(x, &["broker_version"])
                    )
                })
                .collect(),
        ));
    }
    b.push(Block::Heading(2, "Results".into()));
    let harness_checks = harness::checks(run);
    b.push(Block::Table(
        RESULT_COLUMNS.map(String::from).to_vec(),
        run.summary
            .iter()
            .zip(&harness_checks)
            .map(|(s, h)| result_cells(s, h))
            .collect(),
    ));
    b.push(Block::Para(
        "Latencies count from each message's intended send time. \"send delay\" is how late the harness handed a message to the client: when it is high the producers fell behind (the row is marked overloaded) and latency includes the harness's lateness. \"unsent\": due but never sent. \"lost\": confirmed, never received, and no longer in the broker; \"undelivered\": confirmed, never received, but still in the broker when the drain stopped (a consumer behind). \u{26a0} marks what needs a look.".into(),
    ));
    b.push(Block::Heading(2, "Harness".into()));
    b.push(Block::List(
        harness::lines(run, &harness_checks)
            .into_iter()
            .map(|(flagged, line)| if flagged { alarm(line) } else { line })
            .collect(),
    ));
    let odd = anomalies(run);
    if !odd.is_empty() {
        b.push(Block::Heading(2, "Anomalies".into()));
        b.push(Block::List(odd.into_iter().map(alarm).collect()));
    }
    b.extend(faults_section::blocks(run));
    b.extend(replay_section::blocks(run));
    b.push(Block::Heading(2, "The proposal's claims".into()));
    for v in verdicts {
        b.push(Block::Heading(
            3,
            format!("{} — {}: {}", v.claim, v.title, v.outcome.as_str()),
        ));
        if !v.reason.is_empty() {
            b.push(Block::Para(format!("Why: {}.", v.reason)));
        }
        b.push(Block::Para(format!("Rule: {}", v.rule)));
        if !v.numbers.is_empty() {
            b.push(Block::List(v.numbers.clone()));
        }
        for c in drawn
            .iter()
            .filter(|c| charts_for(v.claim).iter().any(|p| c.stem.starts_with(p)))
        {
            b.push(Block::Image(c.title.clone(), rel(report_dir, &c.png)));
        }
    }
    let shown = |c: &ChartFile| {
        verdicts
            .iter()
            .any(|v| charts_for(v.claim).iter().any(|p| c.stem.starts_with(p)))
    };
    b.push(Block::Heading(2, "Other charts".into()));
    b.push(Block::Para(
        "The charts not shown under a claim above. Each chart is a PNG and an SVG in charts/. On a chart over time, a red band is a fault: from the kill (or pause), the red line, to the restart (or resume), the green line, whose label says when the node was back. Throughput lines stop where the sends stop (sent) and where nothing was left to confirm or receive; a last interval shorter than half the usual one is not drawn.".into(),
    ));
    for c in drawn.iter().filter(|c| !shown(c)) {
        b.push(Block::Image(c.title.clone(), rel(report_dir, &c.png)));
    }
    if !skipped.is_empty() {
        b.push(Block::Para("Not drawn (no data in this run):".into()));
        b.push(Block::List(skipped.iter().map(|e| e.to_string()).collect()));
    }
    b.push(Block::Heading(2, "Caveats".into()));
    b.push(Block::List(vec![
        meta_str(m, &["caveat"]),
        "Every node of every cluster and the harness share one host's cores and disk: compare ratios within a run, not absolute figures across runs or machines.".into(),
        "A verdict is only as wide as the runs in this folder: claims whose data is not here say \"not measured\".".into(),
    ]));
    b
}

fn md_cell(s: &str) -> String {
    let s = s.replace('|', "\\|").replace('\n', " ");
    match s.strip_prefix(ALARM) {
        Some(rest) => format!("**{ALARM}{rest}**"),
        None => s,
    }
}

pub fn to_markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {text}\n", "#".repeat(*level as usize));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(out, "- {i}");
                }
                out.push('\n');
            }
            Block::Table(head, rows) => {
                let _ = writeln!(
                    out,
                    "| {} |",
                    head.iter()
                        .map(|h| md_cell(h))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
                let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
                for r in rows {
                    let _ = writeln!(
                        out,
                        "| {} |",
                        r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                    );
                }
                out.push('\n');
            }
            Block::Image(alt, path) => {
                let _ = writeln!(out, "![{}]({path})\n", md_cell(alt));
            }
            Block::Images(images) => {
                for (alt, path) in images {
                    let _ = write!(out, "![{}]({path}) ", md_cell(alt));
                }
                out.push_str("\n\n");
            }
        }
    }
    out
}

pub(super) fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Rebuild the charts (in `<dir>/charts/`) and `report.md` / `report.html` of a results folder
/// from its files alone.
pub fn write_report(dir: &Path) -> Result<Written, ReportError> {
    let run = RunResults::load(dir)?;
    let chart_dir = dir.join("charts");
    std::fs::create_dir_all(&chart_dir).map_err(|source| ReportError::Io {
        path: chart_dir.clone(),
        source,
    })?;
    super::hgrm::write_missing(&run)?;
    let (drawn, skipped) = charts::draw_all(&run, &chart_dir);
    let verdicts = verdicts(&Evidence::of(&run));
    let blocks = blocks(&run, dir, &drawn, &skipped, &verdicts);
    let markdown = dir.join("report.md");
    let html = dir.join("report.html");
    write(&markdown, &to_markdown(&blocks))?;
    write(
        &html,
        &to_html(&format!("brokerbench report: {}", run.name), &blocks, dir)?,
    )?;
    Ok(Written {
        markdown,
        html,
        charts: drawn,
        skipped,
        verdicts,
    })
}
