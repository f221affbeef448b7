//! `compare A B --max-regression 10%`: whether run B is worse than run A beyond a threshold, per
//! backend series (matched by label), on throughput (received msg/s: lower is worse) and
//! end-to-end p99 (higher is worse). With repetitions, each side's figure is the median over its
//! ok repetitions (aggregate.csv's, `aggregate::aggregate`).

use super::aggregate::{aggregate, AggregateRow};
use super::results::RunResults;

/// A figure the gate compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Distinct messages received per second (summary.csv `received_per_s`).
    Throughput,
    /// End-to-end latency p99 (summary.csv `e2e_p99_ms`).
    E2eP99,
}

impl Figure {
    pub const ALL: [Figure; 2] = [Figure::Throughput, Figure::E2eP99];

    /// The summary.csv column (and aggregate.csv's figure).
    pub fn column(&self) -> &'static str {
        match self {
            Figure::Throughput => "received_per_s",
            Figure::E2eP99 => "e2e_p99_ms",
        }
    }

    /// Its name for people.
    pub fn name(&self) -> &'static str {
        match self {
            Figure::Throughput => "throughput",
            Figure::E2eP99 => "e2e p99",
        }
    }

    pub fn unit(&self) -> &'static str {
        match self {
            Figure::Throughput => "msg/s",
            Figure::E2eP99 => "ms",
        }
    }

    /// The median over a series' ok repetitions (None: not recorded).
    fn median(&self, row: &AggregateRow) -> Option<f64> {
        row.figures
            .iter()
            .find(|(name, _)| *name == self.column())
            .and_then(|(_, s)| s.map(|s| s.median))
            .filter(|v| v.is_finite())
    }

    /// How much worse `b` is than `a`, as a share of `a` (negative: better). None when `a` is
    /// not above 0 (no base to compare with).
    pub fn worse_by(&self, a: f64, b: f64) -> Option<f64> {
        (a > 0.0).then(|| match self {
            Figure::Throughput => (a - b) / a,
            Figure::E2eP99 => (b - a) / a,
        })
    }
}

/// `--max-regression`: a percentage such as "10%" (written with its percent sign, so that
/// "0.1" cannot be mistaken for 10%). Returns the share (0.10).
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let fix = "write a percentage with its percent sign, e.g. --max-regression 10%";
    let Some(number) = text.trim().strip_suffix('%') else {
        return Err(format!("\"{text}\" is not a percentage; {fix}"));
    };
    match number.trim().parse::<f64>() {
        Ok(p) if p.is_finite() && (0.0..=1000.0).contains(&p) => Ok(p / 100.0),
        Ok(p) => Err(format!("{p}% is out of range; use 0% to 1000%")),
        Err(_) => Err(format!("\"{text}\" is not a percentage; {fix}")),
    }
}

/// One figure of one series in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureCheck {
    pub series: String,
    pub figure: Figure,
    /// Medians over the ok repetitions, and how many there were.
    pub a: f64,
    pub a_runs: usize,
    /// None: B has the series but no ok repetition of it (it failed or was interrupted).
    pub b: Option<f64>,
    pub b_runs: usize,
    /// How much worse B is, as a share of A (1.0: B has no ok repetition).
    pub worse_by: f64,
    /// Worse beyond the threshold.
    pub regressed: bool,
}

impl FigureCheck {
    /// One line, e.g. "redis-streams throughput: 9980.00 -> 7984.00 msg/s (20.0% worse;
    /// medians of 3 and 3 repetitions)".
    pub fn line(&self) -> String {
        let unit = self.figure.unit();
        let change = if self.worse_by >= 0.0 {
            format!("{:.1}% worse", self.worse_by * 100.0)
        } else {
            format!("{:.1}% better", -self.worse_by * 100.0)
        };
        let medians = if self.a_runs > 1 || self.b_runs > 1 {
            format!(
                "; medians of {} and {} repetitions",
                self.a_runs, self.b_runs
            )
        } else {
            String::new()
        };
        let values = match self.b {
            Some(b) => format!("{:.2} -> {b:.2} {unit}", self.a),
            None => format!("{:.2} {unit} -> no ok repetition", self.a),
        };
        format!(
            "{} {}: {values} ({change}{medians})",
            self.series,
            self.figure.name()
        )
    }
}

/// Both runs' series, figure by figure.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    pub checks: Vec<FigureCheck>,
    /// Series of A with ok repetitions that B does not have, and series only B has.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

impl Gate {
    pub fn regressions(&self) -> impl Iterator<Item = &FigureCheck> {
        self.checks.iter().filter(|c| c.regressed)
    }
}

/// Compare B with A; `max` is the share B may be worse by (0.10 for 10%). Err when no series
/// of A with an ok repetition is in B (nothing to compare).
pub fn check(a: &RunResults, b: &RunResults, max: f64) -> Result<Gate, String> {
    let agg_a = aggregate(&a.summary, &a.faults);
    let agg_b = aggregate(&b.summary, &b.faults);
    let mut gate = Gate::default();
    for row_a in &agg_a {
        let in_b = b.summary.iter().any(|r| r.series() == row_a.series);
        if !in_b {
            gate.only_in_a.push(row_a.series.clone());
            continue;
        }
        let row_b = agg_b.iter().find(|r| r.series == row_a.series);
        for figure in Figure::ALL {
            let Some(va) = figure.median(row_a) else {
                continue;
            };
            let vb = row_b.and_then(|r| figure.median(r));
            // A series B could not run at all is as bad as it gets; a figure B did not record
            // while it ran (no message received: no p99) is left to the throughput.
            let worse_by = match (row_b, vb) {
                (None, _) => Some(1.0),
                (Some(_), Some(vb)) => figure.worse_by(va, vb),
                (Some(_), None) => None,
            };
            let Some(worse_by) = worse_by else { continue };
            gate.checks.push(FigureCheck {
                series: row_a.series.clone(),
                figure,
                a: va,
                a_runs: row_a.runs,
                b: vb,
                b_runs: row_b.map_or(0, |r| r.runs),
                worse_by,
                regressed: worse_by > max,
            });
        }
    }
    for row in &b.summary {
        let s = row.series();
        if !a.summary.iter().any(|r| r.series() == s) && !gate.only_in_b.iter().any(|x| x == s) {
            gate.only_in_b.push(s.to_string());
        }
    }
    if gate.checks.is_empty() {
        return Err(format!(
            "no backend series of {} with an ok repetition is in {}: compare runs of the same \
             scenario (series are matched by label)",
            a.name, b.name
        ));
    }
    Ok(gate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SummaryRow;

    fn row(series: &str, rep: usize, rate: f64, p99: Option<f64>, status: &str) -> SummaryRow {
        SummaryRow {
            backend: format!("{series}#{rep}"),
            series: series.into(),
            repetition: rep,
            backend_type: "redis-streams".into(),
            status: status.into(),
            received_per_s: rate,
            e2e_p99_ms: p99,
            ..Default::default()
        }
    }

    fn run(name: &str, summary: Vec<SummaryRow>) -> RunResults {
        RunResults {
            dir: name.into(),
            name: name.into(),
            meta: serde_json::Value::Null,
            summary,
            timeseries: Vec::new(),
            timeline: Vec::new(),
            faults: Vec::new(),
            replica_lag: Vec::new(),
            cpu: Vec::new(),
        }
    }

    #[test]
    fn percentages_need_their_sign_and_a_range() {
        assert_eq!(parse_percent("10%"), Ok(0.10));
        assert_eq!(parse_percent(" 2.5 %"), Ok(0.025));
        assert_eq!(parse_percent("0%"), Ok(0.0));
        for bad in ["10", "0.1", "ten%", "%", ""] {
            let e = parse_percent(bad).expect_err(bad);
            assert!(e.contains("e.g. --max-regression 10%"), "{bad}: {e}");
        }
        assert!(parse_percent("-5%")
            .expect_err("negative")
            .contains("out of range"));
    }

    #[test]
    fn medians_over_repetitions_decide_and_direction_matters() {
        let a = run(
            "a",
            vec![
                row("r", 1, 1000.0, Some(10.0), "ok"),
                row("r", 2, 900.0, Some(12.0), "ok"),
                row("r", 3, 1100.0, Some(11.0), "ok"),
            ],
        );
        // Throughput median 880 (12% lower), p99 median 11 (same); the 400 msg/s outlier and
        // the failed repetition do not count.
        let b = run(
            "b",
            vec![
                row("r", 1, 880.0, Some(11.0), "ok"),
                row("r", 2, 400.0, Some(9.0), "ok"),
                row("r", 3, 990.0, Some(13.0), "ok"),
                row("r", 4, 0.0, None, "error: gone"),
            ],
        );
        let g = check(&a, &b, 0.10).expect("compared");
        let bad: Vec<_> = g.regressions().collect();
        assert_eq!(bad.len(), 1, "{g:?}");
        assert_eq!(bad[0].figure, Figure::Throughput);
        assert!((bad[0].worse_by - 0.12).abs() < 1e-9);
        assert!(
            bad[0].line()
                == "r throughput: 1000.00 -> 880.00 msg/s (12.0% worse; medians of 3 and 3 repetitions)",
            "{}",
            bad[0].line()
        );
        assert_eq!(check(&a, &b, 0.15).expect("ok").regressions().count(), 0);
        // Faster and quicker is never a regression.
        assert_eq!(check(&b, &a, 0.0).expect("ok").regressions().count(), 0);
    }

    #[test]
    fn a_series_b_could_not_run_regresses_and_unmatched_ones_are_listed() {
        let a = run(
            "a",
            vec![
                row("r", 1, 1000.0, Some(10.0), "ok"),
                row("q", 1, 500.0, Some(5.0), "ok"),
            ],
        );
        let b = run(
            "b",
            vec![
                row("r", 1, 0.0, None, "error: connection refused"),
                row("n", 1, 1.0, None, "ok"),
            ],
        );
        let g = check(&a, &b, 0.5).expect("compared");
        assert_eq!(g.only_in_a, ["q"]);
        assert_eq!(g.only_in_b, ["n"]);
        let bad: Vec<_> = g.regressions().collect();
        assert_eq!(bad.len(), 2, "{g:?}");
        assert!(
            bad[0].line() == "r throughput: 1000.00 msg/s -> no ok repetition (100.0% worse)",
            "{}",
            bad[0].line()
        );
        let e = check(&a, &run("c", vec![row("x", 1, 1.0, None, "ok")]), 0.1).expect_err("none");
        assert!(e.contains("series are matched by label"), "{e}");
    }
}
