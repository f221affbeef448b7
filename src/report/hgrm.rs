//! `.hgrm` files: a histogram's percentile distribution in HdrHistogram's own text format (as
//! `outputPercentileDistribution` prints it), which `hdr-plot` and HdrHistogram's online plotter
//! read. One file per backend and latency, over the measured phase and the drain (the same
//! samples as summary.csv's percentiles), values in milliseconds.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance to 100%, as HdrHistogram's tools use by default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The distribution of `h` (values in µs) with values divided by `unit_ratio` (1000.0: ms).
pub fn percentile_distribution(h: &Histogram<u64>, unit_ratio: f64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / unit_ratio;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {q:1.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / unit_ratio,
        h.stdev() / unit_ratio
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / unit_ratio,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        // As HdrHistogram sizes them: the power of two that holds 2 x 10^significant digits.
        2u64.pow((2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil() as u32)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::stats::{new_histogram, record_ns};

    #[test]
    fn the_distribution_reads_like_hdrhistograms_own() {
        let mut h = new_histogram();
        for ms in 1..=1000u64 {
            record_ns(&mut h, ms * 1_000_000);
        }
        let text = percentile_distribution(&h, 1000.0);
        let mut lines = text.lines();
        assert_eq!(
            lines
                .next()
                .map(str::split_whitespace)
                .map(|w| w.collect::<Vec<_>>()),
            Some(vec![
                "Value",
                "Percentile",
                "TotalCount",
                "1/(1-Percentile)"
            ])
        );
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| {
                l.split_whitespace()
                    .map(|w| w.parse().expect("a number"))
                    .collect()
            })
            .collect();
        assert!(rows.len() > 20, "{text}");
        // Values and percentiles only grow; the median is near 500 ms; the last row is 100%.
        assert!(rows
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
        let median = rows.iter().find(|r| r[1] >= 0.5).expect("a median row");
        assert!((495.0..=505.0).contains(&median[0]), "{median:?}");
        let last = rows.last().expect("rows");
        assert_eq!((last[1], last[2]), (1.0, 1000.0));
        assert!(text.contains("#[Max     =     1000."), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
        assert!(text.contains("Total count    =         1000]"), "{text}");
    }
}
