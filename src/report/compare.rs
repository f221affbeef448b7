//! Two results folders side by side: both runs' results and verdicts, and the charts both have.

use std::path::Path;

use super::charts;
use super::claims::{verdicts, Evidence, Verdict};
use super::document::{rel, result_cells, write, Block, Written, RESULT_COLUMNS};
use super::document::{to_html, to_markdown};
use super::harness;
use super::results::RunResults;
use super::ReportError;

/// Two runs side by side: both runs' results and verdicts in one table each, and every chart
/// that both have, next to each other. Written into `out` (charts under `out/a`, `out/b`).
pub fn write_comparison(a: &Path, b: &Path, out: &Path) -> Result<Written, ReportError> {
    let runs = [RunResults::load(a)?, RunResults::load(b)?];
    let mut drawn = Vec::new();
    let mut skipped = Vec::new();
    for (run, sub) in runs.iter().zip(["a", "b"]) {
        let dir = out.join(sub);
        std::fs::create_dir_all(&dir).map_err(|source| ReportError::Io {
            path: dir.clone(),
            source,
        })?;
        let (d, s) = charts::draw_all(run, &dir);
        drawn.push(d);
        skipped.extend(s);
    }
    let verdicts: Vec<Vec<Verdict>> = runs.iter().map(|r| verdicts(&Evidence::of(r))).collect();
    let title = format!(
        "brokerbench comparison: {} vs {}",
        runs[0].name, runs[1].name
    );
    let mut blocks = vec![
        Block::Heading(1, title.clone()),
        Block::List(vec![
            format!("a: {}", a.display()),
            format!("b: {}", b.display()),
        ]),
        Block::Heading(2, "Results".into()),
    ];
    let mut rows = Vec::new();
    for (run, tag) in runs.iter().zip(["a", "b"]) {
        for (s, h) in run.summary.iter().zip(harness::checks(run)) {
            let mut cells = vec![tag.to_string()];
            cells.extend(result_cells(s, &h));
            rows.push(cells);
        }
    }
    let mut head = vec!["run".to_string()];
    head.extend(RESULT_COLUMNS.map(String::from));
    blocks.push(Block::Table(head, rows));
    blocks.push(Block::Heading(2, "Verdicts".into()));
    blocks.push(Block::Table(
        ["claim", "a", "b"].map(String::from).to_vec(),
        verdicts[0]
            .iter()
            .zip(&verdicts[1])
            .map(|(x, y)| {
                vec![
                    format!("{} {}", x.claim, x.title),
                    x.outcome.as_str().into(),
                    y.outcome.as_str().into(),
                ]
            })
            .collect(),
    ));
    blocks.push(Block::Heading(2, "Charts (a left, b right)".into()));
    for c in &drawn[0] {
        if let Some(d) = drawn[1].iter().find(|d| d.stem == c.stem) {
            blocks.push(Block::Heading(3, c.title.clone()));
            blocks.push(Block::Images(vec![
                (format!("a: {}", c.title), rel(out, &c.png)),
                (format!("b: {}", d.title), rel(out, &d.png)),
            ]));
        }
    }
    let markdown = out.join("report.md");
    let html = out.join("report.html");
    write(&markdown, &to_markdown(&blocks))?;
    write(&html, &to_html(&title, &blocks, out)?)?;
    Ok(Written {
        markdown,
        html,
        charts: drawn.concat(),
        skipped,
        verdicts: verdicts.concat(),
    })
}
