//! The overview of a results root: the newest run of each scenario, one verdict per claim drawn
//! from the runs that measured it, and the charts that need several runs (p99 by rate: each
//! latency scenario runs one rate). `make bench` and `make failover-test` each refresh it, so
//! after both it holds every claim.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::charts::{self, ChartError, ChartFile};
use super::claims::{verdicts, Evidence, Outcome, Verdict};
use super::document::{rel, to_html, to_markdown, write, Block};
use super::results::RunResults;
use super::ReportError;

/// One claim over several runs.
#[derive(Debug, Clone)]
pub struct Combined {
    pub claim: &'static str,
    pub title: &'static str,
    pub outcome: Outcome,
    /// Each run (folder name) that measured the claim, with its verdict.
    pub from: Vec<(String, Verdict)>,
}

/// Claims that say something *can* happen: one run that shows it supports them, whatever the
/// other runs (other faults, other settings) show. C1: "RabbitMQ can lose messages".
pub const SHOWN_BY_ONE_RUN: [&str; 1] = ["C1"];

/// One run's verdicts.
#[derive(Debug, Clone)]
pub struct RunVerdicts {
    /// The folder's name.
    pub run: String,
    /// The scenario it ran (the folder name's part after the time).
    pub scenario: String,
    pub verdicts: Vec<Verdict>,
}

/// Per claim: not measured when no run measured it; for a claim in `SHOWN_BY_ONE_RUN`,
/// supported when one run supports it; otherwise, per scenario, its runs' outcome when they
/// agree and "runs disagree" when they do not, then over the scenarios their outcome when they
/// agree, "runs disagree" when one scenario's runs disagree, and inconclusive otherwise.
pub fn combine(per_run: &[RunVerdicts]) -> Vec<Combined> {
    let Some(first) = per_run.first() else {
        return Vec::new();
    };
    first
        .verdicts
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let measured: Vec<(&RunVerdicts, &Verdict)> = per_run
                .iter()
                .filter_map(|r| r.verdicts.get(i).map(|v| (r, v)))
                .filter(|(_, v)| v.outcome != Outcome::NotMeasured)
                .collect();
            let mut by_scenario: BTreeMap<&str, Vec<Outcome>> = BTreeMap::new();
            for (r, v) in &measured {
                by_scenario.entry(&r.scenario).or_default().push(v.outcome);
            }
            let per_scenario: Vec<Outcome> = by_scenario
                .values()
                .map(|o| {
                    if o.iter().all(|x| *x == o[0]) {
                        o[0]
                    } else if o.iter().all(Outcome::is_inconclusive) {
                        // Undecided every time, for different reasons (one run host-bound,
                        // another not comparable): no run decided otherwise.
                        Outcome::Inconclusive
                    } else {
                        Outcome::RunsDisagree
                    }
                })
                .collect();
            let outcome = match per_scenario.first() {
                None => Outcome::NotMeasured,
                Some(_)
                    if SHOWN_BY_ONE_RUN.contains(&v.claim)
                        && measured
                            .iter()
                            .any(|(_, v)| v.outcome == Outcome::Supported) =>
                {
                    Outcome::Supported
                }
                Some(f) if per_scenario.iter().all(|o| o == f) => *f,
                Some(_) if per_scenario.contains(&Outcome::RunsDisagree) => Outcome::RunsDisagree,
                Some(_) => Outcome::Inconclusive,
            };
            Combined {
                claim: v.claim,
                title: v.title,
                outcome,
                from: measured
                    .into_iter()
                    .map(|(r, v)| (r.run.clone(), v.clone()))
                    .collect(),
            }
        })
        .collect()
}

/// Every run under `root` that has at least one backend with an ok status, read, in
/// folder-name order (oldest first). Folders that cannot be read are skipped.
pub fn all_runs(root: &Path) -> Result<Vec<RunResults>, ReportError> {
    let entries = std::fs::read_dir(root).map_err(|source| ReportError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| scenario_of(n).is_some() && root.join(n).join("summary.csv").is_file())
        .collect();
    // The UTC time sorts as text: oldest first.
    names.sort();
    Ok(names
        .iter()
        .filter_map(|n| RunResults::load(&root.join(n)).ok())
        .filter(|r| r.summary.iter().any(|s| s.status.starts_with("ok")))
        .collect())
}

/// Every run's verdicts, in folder-name order.
pub fn run_verdicts(runs: &[RunResults]) -> Vec<RunVerdicts> {
    runs.iter()
        .map(|r| RunVerdicts {
            run: r.name.clone(),
            scenario: scenario_of(&r.name).unwrap_or(&r.name).to_string(),
            verdicts: verdicts(&Evidence::of(r)),
        })
        .collect()
}

/// `brokerbench verdicts`: per claim, its combined verdict, then each run that measured it with
/// its verdict and the reason, one line each.
pub fn verdict_lines(root: &Path) -> Result<Vec<String>, ReportError> {
    let per_run = run_verdicts(&all_runs(root)?);
    let mut out = Vec::new();
    for c in combine(&per_run) {
        out.push(format!("{} {}: {}", c.claim, c.title, c.outcome.as_str()));
        if c.from.is_empty() {
            out.push("  no run measured it".into());
        }
        for (run, v) in &c.from {
            out.push(format!("  {run}: {} — {}", v.outcome.as_str(), v.reason));
        }
    }
    Ok(out)
}

/// The scenario part of a run folder's name (`<UTC time>-<scenario>`), if it is one.
fn scenario_of(folder: &str) -> Option<&str> {
    let (time, scenario) = folder.split_once('-')?;
    (time.len() == 16 && time.starts_with(|c: char| c.is_ascii_digit()) && !scenario.is_empty())
        .then_some(scenario)
}

/// The newest run of each scenario under `root` that has at least one backend with an ok
/// status, read, in folder-name order. Folders that cannot be read are skipped.
pub fn newest_runs(root: &Path) -> Result<Vec<RunResults>, ReportError> {
    let entries = std::fs::read_dir(root).map_err(|source| ReportError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut by_scenario: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(s) = scenario_of(&name) {
            if e.path().join("summary.csv").is_file() {
                by_scenario.entry(s.to_string()).or_default().push(name);
            }
        }
    }
    let mut picked = Vec::new();
    for mut folders in by_scenario.into_values() {
        // The UTC time sorts as text: newest last.
        folders.sort();
        let newest_ok = folders
            .iter()
            .rev()
            .filter_map(|f| RunResults::load(&root.join(f)).ok())
            .find(|r| r.summary.iter().any(|s| s.status == "ok"));
        picked.extend(newest_ok);
    }
    picked.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(picked)
}

/// What `write_overview` produced.
#[derive(Debug)]
pub struct OverviewWritten {
    pub markdown: PathBuf,
    pub html: PathBuf,
    pub runs: Vec<PathBuf>,
    pub claims: Vec<Combined>,
    pub charts: Vec<ChartFile>,
    pub skipped: Vec<ChartError>,
}

/// Write `overview.md`, `overview.html` and `overview-charts/` into `root` from the newest
/// run of each scenario there.
pub fn write_overview(root: &Path) -> Result<OverviewWritten, ReportError> {
    let runs = newest_runs(root)?;
    // Verdicts from every run, so that runs of one scenario that disagree say so.
    let claims = combine(&run_verdicts(&all_runs(root)?));
    let chart_dir = root.join("overview-charts");
    std::fs::create_dir_all(&chart_dir).map_err(|source| ReportError::Io {
        path: chart_dir.clone(),
        source,
    })?;
    let (mut drawn, mut skipped) = (Vec::new(), Vec::new());
    match charts::p99_by_rate_across(&runs, &chart_dir) {
        Ok(c) => drawn.push(c),
        Err(e) => skipped.push(e),
    }
    let blocks = blocks(root, &runs, &claims, &drawn, &skipped);
    let markdown = root.join("overview.md");
    let html = root.join("overview.html");
    write(&markdown, &to_markdown(&blocks))?;
    write(&html, &to_html("brokerbench overview", &blocks, root)?)?;
    Ok(OverviewWritten {
        markdown,
        html,
        runs: runs.iter().map(|r| r.dir.clone()).collect(),
        claims,
        charts: drawn,
        skipped,
    })
}

fn blocks(
    root: &Path,
    runs: &[RunResults],
    claims: &[Combined],
    drawn: &[ChartFile],
    skipped: &[ChartError],
) -> Vec<Block> {
    let mut b = vec![
        Block::Heading(1, "brokerbench overview".into()),
        Block::Para(format!(
            "The newest run of each scenario in {} (a run counts if at least one backend ended ok); each run's own report is in its folder. A claim's verdict here comes from every run that measured it: their verdict when they agree, \"inconclusive (runs disagree)\" when runs of one scenario disagree, and inconclusive when different scenarios do; a claim that something can happen ({}) is supported by one run that shows it. `brokerbench verdicts` lists them.",
            root.display(),
            SHOWN_BY_ONE_RUN.join(", ")
        )),
        Block::Heading(2, "Runs".into()),
        Block::Table(
            ["run", "backends ok", "report"].map(String::from).to_vec(),
            runs.iter()
                .map(|r| {
                    let ok = r.summary.iter().filter(|s| s.status == "ok").count();
                    vec![
                        r.name.clone(),
                        format!("{ok} of {}", r.summary.len()),
                        rel(root, &r.dir.join("report.html")),
                    ]
                })
                .collect(),
        ),
        Block::Heading(2, "Verdicts".into()),
        Block::Table(
            ["claim", "verdict", "measured by"].map(String::from).to_vec(),
            claims
                .iter()
                .map(|c| {
                    vec![
                        format!("{} {}", c.claim, c.title),
                        c.outcome.as_str().to_string(),
                        if c.from.is_empty() {
                            "-".to_string()
                        } else {
                            c.from
                                .iter()
                                .map(|(run, v)| format!("{run}: {}", v.outcome.as_str()))
                                .collect::<Vec<_>>()
                                .join("; ")
                        },
                    ]
                })
                .collect(),
        ),
    ];
    for c in claims {
        b.push(Block::Heading(
            3,
            format!("{} — {}: {}", c.claim, c.title, c.outcome.as_str()),
        ));
        if c.from.is_empty() {
            b.push(Block::Para(
                "No run here measured it (see the runs' reports for what was missing).".into(),
            ));
        }
        for (run, v) in &c.from {
            b.push(Block::Para(format!(
                "{run}: {} — {}. Rule: {}",
                v.outcome.as_str(),
                v.reason,
                v.rule
            )));
            if !v.numbers.is_empty() {
                b.push(Block::List(v.numbers.clone()));
            }
        }
    }
    b.push(Block::Heading(2, "Charts across runs".into()));
    for c in drawn {
        b.push(Block::Image(c.title.clone(), rel(root, &c.png)));
    }
    if !skipped.is_empty() {
        b.push(Block::Para("Not drawn:".into()));
        b.push(Block::List(skipped.iter().map(|e| e.to_string()).collect()));
    }
    b.push(Block::Heading(2, "Caveats".into()));
    b.push(Block::List(vec![
        "Every verdict's rule compares backends within one run. The runs here may come from different times on a shared host: compare figures across runs with care.".into(),
        "Every node of every cluster and the harness share one host's cores and disk.".into(),
    ]));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(claim: &'static str, outcome: Outcome) -> Verdict {
        Verdict {
            claim,
            title: "t",
            outcome,
            rule: "r".into(),
            numbers: Vec::new(),
            reason: String::new(),
        }
    }

    fn run(name: &str, outcomes: [Outcome; 2]) -> RunVerdicts {
        RunVerdicts {
            run: name.to_string(),
            scenario: name.to_string(),
            verdicts: vec![verdict("C1", outcomes[0]), verdict("C2", outcomes[1])],
        }
    }

    #[test]
    fn runs_of_one_scenario_that_disagree_say_so() {
        use Outcome::*;
        let again = |name: &str, outcomes| RunVerdicts {
            scenario: "scaling".into(),
            ..run(name, outcomes)
        };
        let c = combine(&[
            again("20261201T080000Z-scaling", [NotMeasured, Refuted]),
            again("20261201T090000Z-scaling", [NotMeasured, Supported]),
            run("20261201T100000Z-throughput", [NotMeasured, Supported]),
        ]);
        // Not the newest run's verdict: the two scaling runs disagree.
        assert_eq!(c[1].outcome, RunsDisagree);
        assert_eq!(c[1].outcome.as_str(), "inconclusive (runs disagree)");
        assert_eq!(c[1].from.len(), 3);
        let c = combine(&[
            again("20261201T080000Z-scaling", [NotMeasured, Supported]),
            again("20261201T090000Z-scaling", [NotMeasured, Supported]),
        ]);
        assert_eq!(c[1].outcome, Supported);
        // Two runs that both could not decide, for different reasons, do not disagree.
        let c = combine(&[
            again("20261201T080000Z-scaling", [NotMeasured, HostBound]),
            again("20261201T090000Z-scaling", [NotMeasured, NotComparable]),
        ]);
        assert_eq!(c[1].outcome, Inconclusive);
        // A run that decided beside one that could not does.
        let c = combine(&[
            again("20261201T080000Z-scaling", [NotMeasured, Supported]),
            again("20261201T090000Z-scaling", [NotMeasured, HostBound]),
        ]);
        assert_eq!(c[1].outcome, RunsDisagree);
    }

    #[test]
    fn runs_that_agree_give_their_verdict_and_others_do_not_count() {
        use Outcome::*;
        let c = combine(&[
            run("a", [Supported, NotMeasured]),
            run("b", [NotMeasured, NotMeasured]),
            run("c", [Supported, NotMeasured]),
        ]);
        assert_eq!(c[0].outcome, Supported);
        let from: Vec<&str> = c[0].from.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(from, ["a", "c"]);
        assert_eq!(c[1].outcome, NotMeasured);
        assert!(c[1].from.is_empty());
    }

    #[test]
    fn runs_that_disagree_are_inconclusive() {
        use Outcome::*;
        let c = combine(&[run("a", [Refuted, Supported]), run("b", [Refuted, Refuted])]);
        assert_eq!(c[0].outcome, Refuted);
        assert_eq!(c[1].outcome, Inconclusive);
    }

    #[test]
    fn one_run_that_shows_a_loss_supports_c1() {
        use Outcome::*;
        let c = combine(&[
            run("leader-kill", [Supported, NotMeasured]),
            run("replica-kill", [Refuted, NotMeasured]),
        ]);
        assert_eq!(c[0].outcome, Supported);
        assert_eq!(c[0].from.len(), 2);
        let c = combine(&[
            run("leader-kill", [Refuted, NotMeasured]),
            run("replica-kill", [Refuted, NotMeasured]),
        ]);
        assert_eq!(c[0].outcome, Refuted);
    }

    #[test]
    fn no_runs_no_claims() {
        assert!(combine(&[]).is_empty());
    }

    #[test]
    fn only_timestamped_folders_are_runs() {
        assert_eq!(
            scenario_of("20261127T083643Z-failover-leader"),
            Some("failover-leader")
        );
        assert_eq!(scenario_of("compare-a-vs-b"), None);
        assert_eq!(scenario_of("overview-charts"), None);
        assert_eq!(scenario_of("20261127T083643Z-"), None);
    }
}
