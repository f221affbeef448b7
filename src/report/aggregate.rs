//! aggregate.csv: one row per backend over its repetitions (summary.csv keeps one row per
//! repetition), with the median and the range (min to max) of the figures verdicts compare.

use super::claims::Spread;
use super::{FaultRow, SummaryRow};

/// Publish unavailability after one fault in seconds: 0 when unaffected, infinite when never
/// recovered, None when the row does not say.
pub fn publish_unavailable(f: &FaultRow) -> Option<f64> {
    match f.publish_recovered.as_str() {
        "unaffected" => Some(0.0),
        "no" => Some(f64::INFINITY),
        "yes" => f.publish_unavailable_s,
        _ => None,
    }
}

/// One row of aggregate.csv: a backend (summary.csv's `series`) over its ok repetitions.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    pub series: String,
    pub backend_type: String,
    pub guarantee: String,
    pub target_rate: Option<f64>,
    pub destinations: usize,
    /// Repetitions with an ok status (those the figures are over).
    pub runs: usize,
    /// (figure name, its median/min/max over the repetitions), in `FIGURES` order.
    pub figures: Vec<(&'static str, Option<Spread>)>,
}

/// The figures of aggregate.csv; each has `_median`, `_min` and `_max` columns.
pub const FIGURES: [&str; 6] = [
    "received_per_s",
    "publish_p50_ms",
    "publish_p99_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    // Per repetition the worst publish unavailability over its faults (rows with faults).
    "publish_unavailable_s",
];

impl AggregateRow {
    pub fn header() -> Vec<String> {
        let mut h: Vec<String> = [
            "series",
            "type",
            "guarantee",
            "target_rate",
            "destinations",
            "runs",
        ]
        .map(String::from)
        .to_vec();
        for f in FIGURES {
            for part in ["median", "min", "max"] {
                h.push(format!("{f}_{part}"));
            }
        }
        h
    }

    pub fn record(&self) -> Vec<String> {
        let num = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
        let mut r = vec![
            self.series.clone(),
            self.backend_type.clone(),
            self.guarantee.clone(),
            num(self.target_rate),
            self.destinations.to_string(),
            self.runs.to_string(),
        ];
        for (_, s) in &self.figures {
            r.push(num(s.map(|s| s.median)));
            r.push(num(s.map(|s| s.min)));
            r.push(num(s.map(|s| s.max)));
        }
        r
    }
}

/// One row per backend (in the order they first ran) over its ok repetitions.
pub fn aggregate(summary: &[SummaryRow], faults: &[FaultRow]) -> Vec<AggregateRow> {
    let mut order: Vec<&str> = Vec::new();
    for r in summary {
        if !order.contains(&r.series()) {
            order.push(r.series());
        }
    }
    order
        .into_iter()
        .filter_map(|series| {
            let rows: Vec<&SummaryRow> = summary
                .iter()
                .filter(|r| r.series() == series && r.status.starts_with("ok"))
                .collect();
            let first = rows.first()?;
            let spread =
                |f: fn(&SummaryRow) -> Option<f64>| Spread::of(rows.iter().filter_map(|r| f(r)));
            let unavailable = rows.iter().filter_map(|r| {
                faults
                    .iter()
                    .filter(|f| f.backend == r.backend && f.status.starts_with("ok"))
                    .filter_map(publish_unavailable)
                    .reduce(f64::max)
            });
            Some(AggregateRow {
                series: series.to_string(),
                backend_type: first.backend_type.clone(),
                guarantee: first.guarantee.clone(),
                target_rate: first.target_rate,
                destinations: first.destinations,
                runs: rows.len(),
                figures: FIGURES
                    .into_iter()
                    .zip([
                        spread(|r| Some(r.received_per_s)),
                        spread(|r| r.publish_p50_ms),
                        spread(|r| r.publish_p99_ms),
                        spread(|r| r.e2e_p50_ms),
                        spread(|r| r.e2e_p99_ms),
                        Spread::of(unavailable),
                    ])
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::results::RunResults;

    fn fixture(name: &str) -> RunResults {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        RunResults::load(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
    }

    /// The real run's aggregate.csv is what its summary.csv aggregates to.
    #[test]
    fn aggregate_rows_are_the_median_and_range_of_the_repetitions() {
        let run = fixture("verdicts-run");
        let rows = aggregate(&run.summary, &run.faults);
        assert_eq!(rows.len(), 9);
        let r = &rows[0];
        assert_eq!((r.series.as_str(), r.runs), ("redis-always-1", 2));
        let received = r.figures[0].1.expect("received");
        assert_eq!(
            (
                received.min.round(),
                received.max.round(),
                received.median.round()
            ),
            (16180.0, 21900.0, 19040.0)
        );
        let text = std::fs::read_to_string(run.dir.join("aggregate.csv")).expect("aggregate.csv");
        let mut written = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            written
                .headers()
                .expect("header")
                .iter()
                .collect::<Vec<_>>(),
            AggregateRow::header()
        );
        let written: Vec<Vec<String>> = written
            .records()
            .map(|r| r.expect("row").iter().map(String::from).collect())
            .collect();
        let ours: Vec<Vec<String>> = rows.iter().map(AggregateRow::record).collect();
        assert_eq!(written, ours);
    }

    /// A folder written before repetitions: every row its own series, run once.
    #[test]
    fn an_old_folder_aggregates_one_row_per_backend() {
        let run = fixture("report-run");
        assert_eq!(run.summary[0].repetition, 0);
        assert_eq!(run.summary[0].series(), "redis");
        let rows = aggregate(&run.summary, &run.faults);
        assert_eq!(rows.len(), run.summary.len());
        assert!(rows.iter().all(|r| r.runs == 1));
        // Redis stopped taking writes for 4.2 s after its master was killed.
        let unavailable = rows[0].figures[5].1.expect("unavailability");
        assert!((unavailable.median - 4.2).abs() < 0.1, "{unavailable:?}");
    }
}
