//! Verdicts on the proposal's claims C1..C6 (docs/claims.md): each one computed from a results
//! folder's summary.csv and faults.csv rows by a rule stated in words next to its outcome.
//!
//! A rule never guesses: when the data it needs is missing, the outcome is "not measured" and
//! the verdict's numbers say what is missing. Rows whose status does not start with "ok"
//! (interrupted or failed backends, faults that could not be injected or observed) are ignored,
//! and so are fault rows of a backend without an ok summary row (its type is unknown).

use std::collections::BTreeMap;

use super::harness::{cpu_shares, CPU_SHARE, HOST_SHARE};
use super::results::{CpuSample, LagSample, RunResults};
use super::SummaryRow;
use crate::fault::FaultRow;
use crate::scenario::GuaranteeClass;

mod c1;
mod c2;
mod c3;
mod c4;
mod c5;
mod c5_replay;
mod c6;
mod spread;

use spread::runs_note;
pub use spread::Spread;

pub use c3::{C3_DESTINATION_COUNTS, C3_RABBIT_FLAT, C3_REDIS_GROWTH};
pub use c4::C4_OTHERS_MIN_SHARE;
pub use c6::C6_REDIS_MIN_SPEEDUP;

const REDIS: &str = "redis-streams";
const QUORUM: &str = "rabbitmq-quorum";
const MIRRORED: &str = "rabbitmq-mirrored";
const STREAM: &str = "rabbitmq-stream";
const NATIVE_STREAM: &str = "rabbitmq-stream-native";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Supported,
    Refuted,
    /// The data cannot decide (its reason says why).
    Inconclusive,
    /// The rows that decide it ran on a host whose cores were busy (or whose harness was):
    /// their figures may be the host's, not the brokers'.
    HostBound,
    /// The difference lies inside the spread of the repetitions.
    WithinNoise,
    /// The rows the rule needs differ in something it must hold equal (e.g. the number of
    /// producers, or what a confirm guaranteed).
    NotComparable,
    /// Runs of the same scenario came to different verdicts (the overview, `verdicts`).
    RunsDisagree,
    NotMeasured,
}

impl Outcome {
    /// Inconclusive, for whatever reason.
    pub fn is_inconclusive(&self) -> bool {
        matches!(
            self,
            Outcome::Inconclusive
                | Outcome::HostBound
                | Outcome::WithinNoise
                | Outcome::NotComparable
                | Outcome::RunsDisagree
        )
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Supported => "supported",
            Outcome::Refuted => "refuted",
            Outcome::Inconclusive => "inconclusive",
            Outcome::HostBound => "inconclusive (host-bound)",
            Outcome::WithinNoise => "inconclusive (within noise)",
            Outcome::NotComparable => "inconclusive (not comparable)",
            Outcome::RunsDisagree => "inconclusive (runs disagree)",
            Outcome::NotMeasured => "not measured",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// "C1".."C6".
    pub claim: &'static str,
    /// The claim in short, from docs/claims.md.
    pub title: &'static str,
    pub outcome: Outcome,
    /// The rule in words, with its thresholds.
    pub rule: String,
    /// The figures the rule used (or what was missing), one short line each.
    pub numbers: Vec<String>,
    /// Why this outcome, in one sentence.
    pub reason: String,
}

impl Verdict {
    /// The same verdict with `reason` as its one-sentence reason.
    fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
}

/// What one results folder holds (a run may hold only some of it).
pub struct Evidence<'a> {
    pub summary: &'a [SummaryRow],
    pub faults: &'a [FaultRow],
    /// replica_lag.csv (Redis backends only).
    pub replica_lag: &'a [LagSample],
    /// cpu.csv: whether the host or the harness was busy while a row ran (a throughput or
    /// latency verdict decided by such rows is host-bound).
    pub cpu: &'a [CpuSample],
    /// The host's cores (meta.json `host.cores`); None: host-bound cannot be judged.
    pub cores: Option<f64>,
    /// meta.json (the backends' settings); None: not known.
    pub meta: Option<&'a serde_json::Value>,
}

impl<'a> Evidence<'a> {
    /// Everything a results folder holds.
    pub fn of(run: &'a RunResults) -> Self {
        Evidence {
            summary: &run.summary,
            faults: &run.faults,
            replica_lag: &run.replica_lag,
            cpu: &run.cpu,
            cores: run.meta["host"]["cores"].as_f64().filter(|c| *c > 0.0),
            meta: Some(&run.meta),
        }
    }

    /// How busy the host's cores (`host` rows of cpu.csv) and the harness were while `row`
    /// ran, as shares of the host's cores.
    fn host_load(&self, row: &SummaryRow) -> HostLoad {
        let (harness, host) = self
            .cores
            .map_or((None, None), |n| cpu_shares(self.cpu, n, &row.backend));
        HostLoad { harness, host }
    }

    /// Whether any of the rows that decide a throughput or latency verdict ran on a saturated
    /// host (or with a busy harness), with one line of figures per row ("-" where cpu.csv has
    /// no sample).
    fn host_bound(&self, rows: &[&SummaryRow]) -> (bool, Vec<String>) {
        let mut any = false;
        let mut lines = Vec::new();
        for r in rows {
            let l = self.host_load(r);
            any |= l.saturated();
            let pct = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0));
            lines.push(format!(
                "{}: host's cores {} busy, harness {} of the host's CPU{}",
                r.backend,
                pct(l.host),
                pct(l.harness),
                if l.saturated() { " (host-bound)" } else { "" }
            ));
        }
        (any, lines)
    }

    /// For one backend with CPU samples: the mean cores used by all its nodes and the harness
    /// together, and its busiest node with its mean (the first and last samples, partial
    /// intervals at the load's edges, left out when there are enough).
    fn cpu_use(&self, backend: &str) -> Option<(f64, String, f64)> {
        let mut by_node: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let host = crate::metrics::cpu::HOST;
        for s in self
            .cpu
            .iter()
            .filter(|s| s.backend == backend && s.node != host)
        {
            by_node.entry(s.node.as_str()).or_default().push(s.cpu);
        }
        let means: Vec<(&str, f64)> = by_node
            .into_iter()
            .map(|(node, v)| {
                let core = if v.len() > 4 {
                    &v[1..v.len() - 1]
                } else {
                    &v[..]
                };
                (node, core.iter().sum::<f64>() / core.len() as f64)
            })
            .collect();
        let total: f64 = means.iter().map(|(_, m)| m).sum();
        let (node, busiest) = means
            .iter()
            .filter(|(n, _)| *n != "harness")
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        Some((total, node.to_string(), *busiest))
    }
}

/// How busy the host was while one row ran.
#[derive(Debug, Clone, Copy)]
struct HostLoad {
    /// The harness's mean CPU as a share of the host's cores.
    harness: Option<f64>,
    /// The whole host's mean busy cores (every process) as a share of its cores.
    host: Option<f64>,
}

impl HostLoad {
    /// The host's cores were at least `HOST_SHARE` busy, or the harness used more than
    /// `CPU_SHARE` of them (the thresholds of the report's Harness lines).
    fn saturated(&self) -> bool {
        self.host.is_some_and(|s| s >= HOST_SHARE) || self.harness.is_some_and(|s| s > CPU_SHARE)
    }
}

/// The six verdicts, C1..C6 in order.
pub fn verdicts(e: &Evidence) -> Vec<Verdict> {
    vec![
        c1::c1(e),
        c2::c2(e),
        c3::c3(e),
        c4::c4(e),
        c5::c5(e),
        c6::c6(e),
    ]
}

fn is_ok(status: &str) -> bool {
    status.starts_with("ok")
}

/// A RabbitMQ backend type, by the registry's family (not by its name).
fn is_rabbit(backend_type: &str) -> bool {
    crate::backend::Family::of_type(backend_type) == Some(crate::backend::Family::Rabbitmq)
}

fn is_node_fault(f: &FaultRow) -> bool {
    matches!(f.action.as_str(), "kill" | "stop" | "pause" | "partition")
}

fn is_leader_kill(f: &FaultRow) -> bool {
    f.action == "kill" && f.target.starts_with("leader-of:")
}

fn is_consumer_kill(f: &FaultRow) -> bool {
    f.action == "kill-consumer"
}

impl Evidence<'_> {
    /// Summary rows with an ok status.
    fn backends(&self) -> impl Iterator<Item = &SummaryRow> {
        self.summary.iter().filter(|r| is_ok(&r.status))
    }

    /// The ok fault rows of one backend (by label) that `pick` selects.
    fn faults_of<'s>(
        &'s self,
        label: &'s str,
        pick: fn(&FaultRow) -> bool,
    ) -> impl Iterator<Item = &'s FaultRow> + 's {
        self.faults
            .iter()
            .filter(move |f| is_ok(&f.status) && f.backend == label && pick(f))
    }

    /// Ok backends of the given types, each with its ok fault rows that `pick` selects (only
    /// backends with at least one).
    fn with_faults(
        &self,
        types: &[&str],
        pick: fn(&FaultRow) -> bool,
    ) -> Vec<(&SummaryRow, Vec<&FaultRow>)> {
        self.backends()
            .filter(|r| types.contains(&r.backend_type.as_str()))
            .map(|r| (r, self.faults_of(&r.backend, pick).collect::<Vec<_>>()))
            .filter(|(_, fs)| !fs.is_empty())
            .collect()
    }
}

fn verdict(
    claim: &'static str,
    title: &'static str,
    outcome: Outcome,
    rule: String,
    numbers: Vec<String>,
) -> Verdict {
    // Until a rule says more: what was missing, or the outcome's own words.
    let reason = match outcome {
        Outcome::NotMeasured => numbers
            .iter()
            .find(|n| n.starts_with("missing") || n.starts_with("no ") || n.starts_with("needs"))
            .cloned()
            .unwrap_or_else(|| "no run here measured it".into()),
        _ => String::new(),
    };
    Verdict {
        claim,
        title,
        outcome,
        rule,
        numbers,
        reason,
    }
}

/// Whether two rows' confirms guaranteed comparable things (`GuaranteeClass`): throughput and
/// latency compare only between such rows. A row without a guarantee (a folder written before
/// summary.csv had the column) compares with nothing.
fn comparable(a: &SummaryRow, b: &SummaryRow) -> bool {
    GuaranteeClass::comparable(class(a), class(b))
}

fn class(r: &SummaryRow) -> Option<GuaranteeClass> {
    GuaranteeClass::of_label(&r.guarantee)
}

/// A row's name in a verdict's figures, with what its confirm guaranteed (older folders have
/// no guarantee column).
fn name(r: &SummaryRow) -> String {
    if r.guarantee.is_empty() {
        format!("{} ({})", r.backend, r.backend_type)
    } else {
        format!(
            "{} ({}; confirm: {}{})",
            r.backend,
            r.backend_type,
            r.guarantee,
            class(r).map_or(String::new(), |c| format!(", {}", c.as_str()))
        )
    }
}

/// A backend over its repetitions (its own label, not a repetition's) with its guarantee.
fn series_name(r: &SummaryRow) -> String {
    name(&SummaryRow {
        backend: r.series().to_string(),
        ..r.clone()
    })
}

fn seconds(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.2} s")
    } else {
        "never recovered".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn backend(label: &str, ty: &str) -> SummaryRow {
        SummaryRow {
            backend: label.into(),
            backend_type: ty.into(),
            status: "ok".into(),
            ..Default::default()
        }
    }

    pub(super) fn fault(label: &str, action: &str, target: &str) -> FaultRow {
        FaultRow {
            backend: label.into(),
            action: action.into(),
            target: target.into(),
            status: "ok".into(),
            ..Default::default()
        }
    }

    pub(super) fn run(summary: &[SummaryRow], faults: &[FaultRow]) -> Vec<Verdict> {
        verdicts(&Evidence {
            summary,
            faults,
            replica_lag: &[],
            cpu: &[],
            cores: None,
            meta: None,
        })
    }

    pub(super) fn outcome(claim: usize, summary: &[SummaryRow], faults: &[FaultRow]) -> Outcome {
        run(summary, faults)[claim - 1].outcome
    }

    #[test]
    fn six_verdicts_in_order_none_measured_without_evidence() {
        let v = run(&[], &[]);
        let claims: Vec<&str> = v.iter().map(|v| v.claim).collect();
        assert_eq!(claims, ["C1", "C2", "C3", "C4", "C5", "C6"]);
        for v in &v {
            assert_eq!(v.outcome, Outcome::NotMeasured, "{}", v.claim);
            assert!(!v.rule.is_empty() && !v.numbers.is_empty(), "{}", v.claim);
            assert!(!v.title.is_empty());
        }
    }

    #[test]
    fn outcome_names() {
        assert_eq!(Outcome::NotMeasured.as_str(), "not measured");
        assert_eq!(Outcome::Supported.as_str(), "supported");
        assert_eq!(
            serde_json::to_string(&Outcome::NotMeasured).unwrap(),
            "\"not-measured\""
        );
    }

    /// A results folder of tests/fixtures (a real run, trimmed).
    pub(super) fn fixture(name: &str) -> RunResults {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        RunResults::load(&dir).unwrap_or_else(|e| panic!("fixture {}: {e}", dir.display()))
    }

    /// The summary rows of `run` but those whose backend label is in `drop`.
    pub(super) fn rows_but(run: &RunResults, drop: &[&str]) -> Vec<SummaryRow> {
        let rows: Vec<SummaryRow> = run
            .summary
            .iter()
            .filter(|r| !drop.contains(&r.backend.as_str()))
            .cloned()
            .collect();
        assert_eq!(rows.len() + drop.len(), run.summary.len(), "{drop:?}");
        rows
    }

    /// Evidence of `rows` from `run`, with its cpu.csv and cores or without them.
    pub(super) fn evidence<'a>(
        run: &'a RunResults,
        rows: &'a [SummaryRow],
        with_cpu: bool,
    ) -> Evidence<'a> {
        let all = Evidence::of(run);
        Evidence {
            summary: rows,
            cpu: if with_cpu { all.cpu } else { &[] },
            cores: all.cores.filter(|_| with_cpu),
            ..all
        }
    }
}
