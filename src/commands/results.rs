//! The commands that read results folders without a broker: `report`, `overview`, `verdicts`,
//! `compare`.

use std::path::{Path, PathBuf};

use super::Failure;

/// overview.md / overview.html of a results root: prints the verdicts and the path.
pub fn overview(root: &Path) -> Result<(), Failure> {
    let w = crate::report::overview::write_overview(root)
        .map_err(|e| Failure::Input(format!("overview of {}: {e}", root.display())))?;
    crate::outln!("overview of {} runs in {}:", w.runs.len(), root.display());
    for c in &w.claims {
        let from: Vec<&str> = c.from.iter().map(|(r, _)| r.as_str()).collect();
        crate::outln!(
            "  {}: {}{}",
            c.claim,
            c.outcome.as_str(),
            if from.is_empty() {
                String::new()
            } else {
                format!(" ({})", from.join(", "))
            }
        );
    }
    crate::outln!("overview: {}", w.html.display());
    Ok(())
}

/// `brokerbench report`: the report (`document`) and results.json of a results folder (older
/// folders have none).
pub fn report(dir: &Path) -> Result<(), Failure> {
    document(dir)?;
    let json = crate::report::results_json::write(dir)
        .map_err(|e| Failure::Input(format!("results.json for {}: {e}", dir.display())))?;
    crate::outln!("results for machines: {}", json.display());
    Ok(())
}

/// Charts, report.md and report.html of a results folder; prints the verdicts and the path.
pub fn document(dir: &Path) -> Result<(), Failure> {
    let w = crate::report::document::write_report(dir)
        .map_err(|e| Failure::Input(format!("report for {}: {e}", dir.display())))?;
    for e in &w.skipped {
        crate::errln!("  chart skipped: {e}");
    }
    for v in &w.verdicts {
        crate::outln!("  {}: {}", v.claim, v.outcome.as_str());
    }
    crate::outln!("report: {}", w.html.display());
    Ok(())
}

/// Per claim, the verdict of every run under `root` that measured it.
pub fn verdicts(root: &Path) -> Result<(), Failure> {
    let lines = crate::report::overview::verdict_lines(root)
        .map_err(|e| Failure::Input(format!("verdicts of {}: {e}", root.display())))?;
    for l in lines {
        crate::outln!("{l}");
    }
    Ok(())
}

/// Two results folders side by side (default folder: results/compare-<a>-vs-<b>); with
/// `max_regression` (a share: 0.10 for 10%), the gate of `report::regression` after it.
pub fn compare(
    a: &Path,
    b: &Path,
    out: Option<PathBuf>,
    max_regression: Option<f64>,
) -> Result<(), Failure> {
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let out = out.unwrap_or_else(|| {
        PathBuf::from("results").join(format!("compare-{}-vs-{}", name(a), name(b)))
    });
    let w = crate::report::document::write_comparison(a, b, &out)
        .map_err(|e| Failure::Input(format!("compare {} {}: {e}", a.display(), b.display())))?;
    crate::outln!("comparison: {}", w.html.display());
    match max_regression {
        Some(max) => gate(a, b, max),
        None => Ok(()),
    }
}

/// `compare --max-regression`: a line per series and figure; Err(Regressed) naming what
/// regressed when anything did.
fn gate(a: &Path, b: &Path, max: f64) -> Result<(), Failure> {
    use crate::report::regression::check;
    use crate::report::results::RunResults;
    let load = |p: &Path| {
        RunResults::load(p).map_err(|e| Failure::Input(format!("compare {}: {e}", p.display())))
    };
    let (ra, rb) = (load(a)?, load(b)?);
    let g = check(&ra, &rb, max).map_err(Failure::Input)?;
    let pct = max * 100.0;
    crate::outln!(
        "regression gate: b ({}) against a ({}), at most {pct}% worse:",
        rb.name,
        ra.name
    );
    for c in &g.checks {
        let tag = if c.regressed { "REGRESSED" } else { "ok" };
        crate::outln!("  {tag:<9} {}", c.line());
    }
    for s in &g.only_in_a {
        crate::outln!("  not in b  {s} (not compared)");
    }
    for s in &g.only_in_b {
        crate::outln!("  only in b {s} (not compared)");
    }
    let bad: Vec<String> = g.regressions().map(|c| c.line()).collect();
    if bad.is_empty() {
        crate::outln!("no regression beyond {pct}%");
        Ok(())
    } else {
        Err(Failure::Regressed(format!(
            "b is worse than a by more than --max-regression {pct}%: {}",
            bad.join("; ")
        )))
    }
}
