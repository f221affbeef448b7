//! The report's opening summary, one screen: each claim's verdict with its one-sentence reason,
//! then per backend what a reader compares first (throughput, p99, lost, unavailability). The
//! details follow in the report's other sections.

use super::claims::{Outcome, Verdict};
use super::document::{opt, Block, ALARM};
use super::results::RunResults;
use super::SummaryRow;
use crate::report::charts::axis::format_value;

pub(super) fn blocks(run: &RunResults, verdicts: &[Verdict]) -> Vec<Block> {
    vec![
        Block::Heading(2, "Summary".into()),
        Block::Table(
            ["claim", "verdict", "why"].map(String::from).to_vec(),
            verdicts.iter().map(verdict_row).collect(),
        ),
        Block::Table(
            [
                "backend",
                "received msg/s (target)",
                "e2e p99 ms",
                "lost",
                "publish / consume unavailable s",
            ]
            .map(String::from)
            .to_vec(),
            run.summary.iter().map(|s| backend_row(run, s)).collect(),
        ),
        Block::Para(
            "Received msg/s over the measured phase; e2e p99 from each message's intended send time to its receipt, over the measured phase and the drain; lost: confirmed (or sent without confirms) and never received; unavailable: seconds from each fault until confirms (publish) and receipts (consume) on the destinations it hit came back (faults.csv). Details, conditions and every figure below.".into(),
        ),
    ]
}

fn verdict_row(v: &Verdict) -> Vec<String> {
    let reason = if v.reason.is_empty() {
        match v.outcome {
            Outcome::NotMeasured => "This run has none of the data the rule needs.".to_string(),
            _ => "See the claim's section below.".to_string(),
        }
    } else {
        let r = v.reason.trim_end_matches('.');
        let mut chars = r.chars();
        match chars.next() {
            Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
            None => String::new(),
        }
    };
    vec![
        format!("{} {}", v.claim, v.title),
        v.outcome.as_str().to_string(),
        reason,
    ]
}

fn backend_row(run: &RunResults, s: &SummaryRow) -> Vec<String> {
    let target = s
        .target_rate
        .map(format_value)
        .unwrap_or_else(|| "max".into());
    let lost = s.lost + s.unconfirmed_missing;
    let lost = if lost > 0 {
        format!("{ALARM}{}", format_value(lost as f64))
    } else {
        "0".into()
    };
    vec![
        s.display_name(),
        format!("{} ({target})", format_value(s.received_per_s)),
        opt(s.e2e_p99_ms),
        lost,
        unavailability(run, &s.backend),
    ]
}

/// "4.21 / 5.63" per node fault of `backend` ("; " between faults), what stands for a window
/// that was not measured, or "no fault".
fn unavailability(run: &RunResults, backend: &str) -> String {
    let side = |recovered: &str, seconds: Option<f64>| match recovered {
        "yes" => opt(seconds),
        "unaffected" => "0".into(),
        "" => "-".into(),
        other => format!("{ALARM}{other}"),
    };
    let windows: Vec<String> = run
        .faults
        .iter()
        .filter(|f| f.backend == backend)
        .map(|f| {
            let (p, c) = (
                side(&f.publish_recovered, f.publish_unavailable_s),
                side(&f.consume_recovered, f.consume_unavailable_s),
            );
            if f.action == "kill-consumer" {
                format!("{c} (consumer kill)")
            } else {
                format!("{p} / {c}")
            }
        })
        .collect();
    if windows.is_empty() {
        "no fault".into()
    } else {
        let joined = windows.join("; ");
        // One alarm sign at the front, so the whole cell reads red.
        if joined.contains(ALARM) {
            format!("{ALARM}{}", joined.replace(ALARM, ""))
        } else {
            joined
        }
    }
}
