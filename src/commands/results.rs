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

/// Two results folders side by side (default folder: results/compare-<a>-vs-<b>).
pub fn compare(a: &Path, b: &Path, out: Option<PathBuf>) -> Result<(), Failure> {
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
    Ok(())
}
