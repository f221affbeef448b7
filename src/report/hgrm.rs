//! `.hgrm` files: a histogram's percentile distribution in HdrHistogram's own text format (as
//! `outputPercentileDistribution` prints it), which `hdr-plot` and HdrHistogram's online plotter
//! read. One file per backend and latency, over the measured phase and the drain (the same
//! samples as summary.csv's percentiles), values in milliseconds. A run writes them as it ends
//! (`hlog::HlogSink`); `brokerbench report` writes those a folder lacks from its hlogs.

use std::fmt::Write as _;
use std::path::PathBuf;

use hdrhistogram::Histogram;

use super::hlog;
use super::results::RunResults;
use super::ReportError;
use crate::metrics::stats::Latency;

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
    // HdrHistogram prints values with as many decimals as the histogram's significant digits.
    let digits = usize::from(h.sigfig());
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / unit_ratio;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.digits$} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.digits$} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.digits$}, StdDeviation   = {:12.digits$}]",
        h.mean() / unit_ratio,
        h.stdev() / unit_ratio
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.digits$}, Total count    = {:12}]",
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

/// The `.hgrm` path of one backend's latency.
pub fn path(run: &RunResults, backend: &str, latency: Latency) -> PathBuf {
    run.dir.join("hdr").join(format!(
        "{}.{}.hgrm",
        hlog::file_stem(backend),
        latency.name()
    ))
}

/// Write the `.hgrm` files a results folder lacks (one recorded before they existed), from each
/// backend's hlog: the intervals from the start of its measured phase on, as the run itself
/// does. A latency with no samples has none. Returns the files written.
pub fn write_missing(run: &RunResults) -> Result<Vec<PathBuf>, ReportError> {
    let mut written = Vec::new();
    for b in run.backends() {
        let log = run.dir.join("hdr").join(hlog::file_name(b));
        if !log.is_file() {
            continue;
        }
        for l in Latency::ALL {
            let out = path(run, b, l);
            if out.exists() {
                continue;
            }
            let h = hlog::read_merged(&log, l.name(), run.measure_start_s(b))?;
            if h.is_empty() {
                continue;
            }
            std::fs::write(&out, percentile_distribution(&h, 1000.0)).map_err(|source| {
                ReportError::Io {
                    path: out.clone(),
                    source,
                }
            })?;
            written.push(out);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::stats::{new_histogram, record_ns};

    /// HdrHistogram's own output for 25, 50 and 75 (values unscaled, 3 significant digits,
    /// tracking up to 2^53 - 1), as HdrHistogramJS's test of `outputPercentileDistribution`
    /// (a port of the Java one) expects it, byte for byte.
    #[test]
    fn the_distribution_is_hdrhistograms_own_byte_for_byte() {
        let mut h = Histogram::<u64>::new_with_bounds(1, (1u64 << 53) - 1, 3).expect("bounds");
        for v in [25, 50, 75] {
            h.record(v).expect("record");
        }
        let expected = "       Value     Percentile TotalCount 1/(1-Percentile)

      25.000 0.000000000000          1           1.00
      25.000 0.100000000000          1           1.11
      25.000 0.200000000000          1           1.25
      25.000 0.300000000000          1           1.43
      50.000 0.400000000000          2           1.67
      50.000 0.500000000000          2           2.00
      50.000 0.550000000000          2           2.22
      50.000 0.600000000000          2           2.50
      50.000 0.650000000000          2           2.86
      75.000 0.700000000000          3           3.33
      75.000 1.000000000000          3
#[Mean    =       50.000, StdDeviation   =       20.412]
#[Max     =       75.000, Total count    =            3]
#[Buckets =           43, SubBuckets     =         2048]
";
        assert_eq!(percentile_distribution(&h, 1.0), expected);
    }

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
