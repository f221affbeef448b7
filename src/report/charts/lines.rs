//! Line charts across backends or runs: the percentile spectrum, p99 by rate across runs.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{count_label, count_ticks, tick_label};
use super::bars::rows_where;
use super::*;

/// The end-to-end latency of the measured phase (and drain) per backend, from the HdrHistogram
/// logs: latency by percentile, the percentile axis on a log scale of 1/(1-p).
pub fn percentile_spectrum(run: &RunResults, out: &Path) -> Result<ChartFile, ChartError> {
    let chart = "percentiles";
    let mut lines = Vec::new();
    for b in run.backends() {
        let path = run.dir.join("hdr").join(crate::report::hlog::file_name(b));
        let Ok(h) = crate::report::hlog::read_merged(&path, "e2e", run.measure_start_s(b)) else {
            continue;
        };
        if h.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = (0..=50)
            .map(|k| 1.0 - 10f64.powf(-(k as f64) / 10.0))
            .map(|p| (1.0 / (1.0 - p), h.value_at_quantile(p) as f64 / 1000.0))
            .chain(std::iter::once((1e5 * 1.5, h.max() as f64 / 1000.0)))
            .collect();
        lines.push((run.display_name(b), pts));
    }
    if lines.is_empty() {
        return Err(ChartError::NoData {
            chart: chart.into(),
            what: "no e2e histograms in hdr/".into(),
        });
    }
    save(
        out,
        chart,
        "End-to-end latency by percentile",
        &Spectrum(lines),
    )
}

/// Latency by percentile, one line per backend.
struct Spectrum(Vec<(String, Vec<(f64, f64)>)>);

impl Plot for Spectrum {
    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn {
        plot_spectrum(root, &self.0)
    }
}

fn plot_spectrum<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    lines: &[(String, Vec<(f64, f64)>)],
) -> Drawn {
    let y_max = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(0.001f64, f64::max)
        * 1.5;
    let y_min = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(y_max / 10.0);
    let mut chart = ChartBuilder::on(root)
        .caption(
            "End-to-end latency by percentile (measured phase and drain)",
            (FONT, 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0f64..2e5).log_scale(), (y_min..y_max).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms (log scale)")
        .y_label_formatter(&|v| tick_label(*v))
        .x_label_formatter(&|x| {
            let p = format!("{:.4}", 100.0 * (1.0 - 1.0 / x));
            format!("{}%", p.trim_end_matches('0').trim_end_matches('.'))
        })
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = series_color(i);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// End-to-end p99 latency by target rate, one line per backend label, over several runs (the
/// latency scenarios run one rate each). Runs with faults are left out: their p99 is the fault's.
pub fn p99_by_rate_across(runs: &[RunResults], out: &Path) -> Result<ChartFile, ChartError> {
    let points = runs
        .iter()
        .filter(|r| r.faults.is_empty() && r.timeline.iter().all(|e| e.kind != "fault"))
        .flat_map(|run| {
            rows_where(run, |s| s.target_rate.is_some() && s.e2e_p99_ms.is_some()).map(|s| {
                (
                    s.display_name(),
                    (s.target_rate.unwrap_or(0.0), s.e2e_p99_ms.unwrap_or(0.0)),
                )
            })
        });
    save_lines(
        out,
        "p99-by-rate-across",
        "no backend ran at two fixed rates or more in runs without faults",
        Lines {
            caption: "End-to-end p99 latency by target rate",
            x_desc: "target msg/s",
            y_desc: "e2e p99 ms (log scale)",
            x_count: false,
            log_y: true,
            lines: group_lines(points, 2),
        },
    )
}

/// One line per name, through its points in x order; names with fewer than `min_points`
/// points are left out.
pub(super) fn group_lines<N: Ord + Into<String>>(
    points: impl Iterator<Item = (N, (f64, f64))>,
    min_points: usize,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut by_name: std::collections::BTreeMap<N, Vec<(f64, f64)>> = Default::default();
    for (name, p) in points {
        by_name.entry(name).or_default().push(p);
    }
    by_name
        .into_iter()
        .filter(|(_, pts)| pts.len() >= min_points)
        .map(|(name, mut pts)| {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (name.into(), pts)
        })
        .collect()
}

/// Save a line chart, or say why there is none (`missing`) when it has no line.
pub(super) fn save_lines(
    out: &Path,
    stem: &str,
    missing: &str,
    chart: Lines,
) -> Result<ChartFile, ChartError> {
    if chart.lines.is_empty() {
        return Err(ChartError::NoData {
            chart: stem.into(),
            what: missing.into(),
        });
    }
    save(out, stem, chart.caption, &chart)
}

/// Lines through points, one per named series, with a legend.
pub(super) struct Lines {
    pub(super) caption: &'static str,
    pub(super) x_desc: &'static str,
    pub(super) y_desc: &'static str,
    /// The x axis counts whole things (queues): integer ticks only.
    pub(super) x_count: bool,
    /// A logarithmic y axis (points at or below 0 are left out).
    pub(super) log_y: bool,
    pub(super) lines: Vec<(String, Vec<(f64, f64)>)>,
}

impl Plot for Lines {
    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn {
        let pts = self.lines.iter().flat_map(|l| l.1.iter());
        let x_max = pts.clone().map(|p| p.0).fold(1.0f64, f64::max) * 1.08 + 1.0;
        let y_max = pts.clone().map(|p| p.1).fold(1.0f64, f64::max) * 1.15;
        let y_min = pts
            .map(|p| p.1)
            .filter(|v| *v > 0.0)
            .fold(f64::MAX, f64::min)
            .min(y_max / 10.0)
            * 0.8;
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(self.caption, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                let count_fmt = |v: &f64| count_label(*v);
                let value_fmt = |v: &f64| tick_label(*v);
                let mut mesh = chart.configure_mesh();
                mesh.x_desc(self.x_desc)
                    .y_desc(self.y_desc)
                    .y_label_formatter(&value_fmt)
                    .label_style((FONT, 14));
                if self.x_count {
                    mesh.x_labels(count_ticks(x_max))
                        .x_label_formatter(&count_fmt);
                } else {
                    mesh.x_label_formatter(&value_fmt);
                }
                mesh.draw().map_err(err)?;
                for (i, (name, p)) in self.lines.iter().enumerate() {
                    let color = series_color(i);
                    let p: Vec<(f64, f64)> = p
                        .iter()
                        .copied()
                        .filter(|p| !self.log_y || p.1 > 0.0)
                        .collect();
                    chart
                        .draw_series(LineSeries::new(p.iter().copied(), color.stroke_width(2)))
                        .map_err(err)?
                        .label(name.clone())
                        .legend(move |(x, y)| {
                            PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                        });
                    chart
                        .draw_series(p.iter().map(|&xy| Circle::new(xy, 4, color.filled())))
                        .map_err(err)?;
                }
                legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
            }};
        }
        if self.log_y {
            body!(builder
                .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
                .map_err(err)?);
        } else {
            body!(builder
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)
                .map_err(err)?);
        }
        Ok(())
    }
}
