//! Charts over time, one per backend: throughput, latency, replica lag, CPU.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{
    count_label, count_ticks, fault_marks, rate_rows, sends, tick_label, FaultMarks,
};
use super::lines::group_lines;
use super::*;
use crate::metrics::aggregator::IntervalRow;

const KILL_LINE: RGBColor = RGBColor(190, 0, 0);
const RESTART_LINE: RGBColor = RGBColor(0, 130, 0);

/// Lines over time with fault windows shaded and labelled.
pub(super) struct TimeChart {
    pub(super) title: String,
    pub(super) x_label: &'static str,
    pub(super) y_label: String,
    pub(super) log_y: bool,
    /// The y axis counts whole things (messages): integer ticks only.
    pub(super) y_count: bool,
    pub(super) lines: Vec<(String, Vec<(f64, f64)>)>,
    /// Per line (by index), a band from a lower bound up to the line (the upper bound), drawn
    /// in the line's colour, lighter.
    pub(super) bands: Vec<(usize, Vec<BandPoint>)>,
    pub(super) faults: Vec<FaultMarks>,
}

/// `(t, lower, upper)`.
type BandPoint = (f64, f64, f64);

/// The x axis of the charts of one backend's load.
const LOAD_CLOCK: &str = "seconds since the backend's load started";

/// The legend entry of the bands of a time chart.
const BAND_LABEL: &str = "shaded: down to the lower bound";

/// The legend entry of a fault's band.
const FAULT_BAND_LABEL: &str = "node down (fault to restart)";

impl Plot for TimeChart {
    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn {
        plot_time(root, self)
    }
}

fn plot_time<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &TimeChart) -> Drawn {
    let points = c.lines.iter().flat_map(|(_, p)| p.iter());
    let x_max = points
        .clone()
        .map(|p| p.0)
        .chain(c.faults.iter().map(|f| f.band_end_s))
        .fold(1.0f64, f64::max);
    let y_max = points.clone().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let y_min = points
        .map(|p| p.1)
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(y_max / 10.0);
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(&c.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! body {
        ($chart:expr, $y0:expr) => {{
            let mut chart = $chart;
            let count_fmt = |v: &f64| count_label(*v);
            let value_fmt = |v: &f64| tick_label(*v);
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(c.x_label)
                .x_label_formatter(&value_fmt)
                .y_desc(c.y_label.as_str())
                .label_style((FONT, 14));
            if c.y_count {
                mesh.y_labels(count_ticks(y_max))
                    .y_label_formatter(&count_fmt);
            } else {
                mesh.y_label_formatter(&value_fmt);
            }
            mesh.draw().map_err(err)?;
            for (k, f) in c.faults.iter().enumerate() {
                let band = chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(f.at_s, $y0), (f.band_end_s.max(f.at_s + 0.05), y_max)],
                        FAULT_SHADE.filled(),
                    )))
                    .map_err(err)?;
                if k == 0 {
                    band.label(FAULT_BAND_LABEL).legend(|(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 16, y + 5)], FAULT_SHADE.filled())
                    });
                }
                let mut marks = vec![(
                    f.at_s,
                    format!("{} at {:.1} s", f.fault, f.at_s),
                    KILL_LINE,
                    4,
                )];
                if let Some((name, at, back)) = &f.restart {
                    let verb = name.split(' ').next().unwrap_or("restart");
                    marks.push((
                        *at,
                        format!("{verb} at {at:.1} s, back at {back:.1} s"),
                        RESTART_LINE,
                        22,
                    ));
                }
                for (x, label, color, dy) in marks {
                    let line = chart
                        .draw_series(std::iter::once(PathElement::new(
                            [(x, $y0), (x, y_max)],
                            color.stroke_width(2),
                        )))
                        .map_err(err)?;
                    if k == 0 {
                        let what = if dy == 4 { "fault" } else { "restart / resume" };
                        line.label(what).legend(move |(x, y)| {
                            PathElement::new(
                                [(x + 8, y - 6), (x + 8, y + 6)],
                                color.stroke_width(2),
                            )
                        });
                    }
                    chart
                        .draw_series(std::iter::once(
                            EmptyElement::at((x, y_max))
                                + Text::new(label, (4, dy), (FONT, 13).into_font().color(&color)),
                        ))
                        .map_err(err)?;
                }
            }
            for (k, (i, pts)) in c.bands.iter().enumerate() {
                let shade = series_color(*i).mix(0.25);
                let outline: Vec<(f64, f64)> = pts
                    .iter()
                    .map(|p| (p.0, p.2))
                    .chain(pts.iter().rev().map(|p| (p.0, p.1.max($y0))))
                    .collect();
                let drawn = chart
                    .draw_series(std::iter::once(Polygon::new(outline, shade.filled())))
                    .map_err(err)?;
                if k == 0 {
                    drawn.label(BAND_LABEL).legend(|(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 16, y + 5)], BLACK.mix(0.2).filled())
                    });
                }
            }
            for (i, (name, pts)) in c.lines.iter().enumerate() {
                let color = series_color(i);
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().copied().filter(|p| !c.log_y || p.1 > 0.0),
                        color.stroke_width(2),
                    ))
                    .map_err(err)?
                    .label(name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                    });
            }
            legend(&mut chart, SeriesLabelPosition::MiddleRight)?;
        }};
    }
    if c.log_y {
        body!(
            builder
                .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
                .map_err(err)?,
            y_min
        );
    } else {
        body!(
            builder
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)
                .map_err(err)?,
            0.0
        );
    }
    Ok(())
}

fn series(
    run: &RunResults,
    backend: &str,
    f: impl Fn(&IntervalRow) -> Option<f64>,
) -> Vec<(f64, f64)> {
    points(
        run.timeseries
            .iter()
            .filter(|r| r.backend == backend && r.t_end_s > r.t_start_s),
        f,
    )
}

fn points<'a>(
    rows: impl IntoIterator<Item = &'a IntervalRow>,
    f: impl Fn(&IntervalRow) -> Option<f64>,
) -> Vec<(f64, f64)> {
    rows.into_iter()
        .filter_map(|r| f(r).map(|v| (r.t_end_s, v)))
        .collect()
}

fn faults(run: &RunResults, backend: &str) -> Vec<FaultMarks> {
    fault_marks(&run.fault_windows(backend))
}

const NO_TIMESERIES: &str = "no rows in timeseries.csv";

/// Save a time chart, or say why there is none (`missing`) when it has no points.
fn save_time(
    out: &Path,
    stem: String,
    chart: TimeChart,
    missing: &str,
) -> Result<ChartFile, ChartError> {
    if chart.lines.iter().all(|(_, p)| p.is_empty()) {
        return Err(ChartError::NoData {
            chart: stem,
            what: missing.into(),
        });
    }
    let title = chart.title.clone();
    save(out, &stem, &title, &chart)
}

/// Sent, confirmed and received msg/s over time for one backend, fault windows shaded.
pub fn throughput_over_time(
    run: &RunResults,
    backend: &str,
    out: &Path,
) -> Result<ChartFile, ChartError> {
    // Rates: without the drain's empty tail and a partial last interval (see `rate_rows`).
    let all: Vec<&IntervalRow> = run
        .timeseries
        .iter()
        .filter(|r| r.backend == backend)
        .collect();
    let rows = rate_rows(&all);
    let chart = TimeChart {
        x_label: LOAD_CLOCK,
        title: format!("{}: throughput", run.display_name(backend)),
        y_label: "msg/s".into(),
        log_y: false,
        y_count: false,
        lines: vec![
            (
                "sent".into(),
                points(rows.iter().copied().filter(|r| sends(r.phase)), |r| {
                    Some(r.sent_per_s)
                }),
            ),
            (
                "confirmed".into(),
                points(rows.iter().copied(), |r| Some(r.confirmed_per_s)),
            ),
            (
                "received".into(),
                points(rows.iter().copied(), |r| Some(r.received_per_s)),
            ),
        ],
        bands: Vec::new(),
        faults: faults(run, backend),
    };
    save_time(out, stem("throughput", backend), chart, NO_TIMESERIES)
}

/// End-to-end p50/p99/max and confirm p99 latency over time for one backend (log scale).
pub fn latency_over_time(
    run: &RunResults,
    backend: &str,
    out: &Path,
) -> Result<ChartFile, ChartError> {
    let chart = TimeChart {
        x_label: LOAD_CLOCK,
        title: format!("{}: latency per second", run.display_name(backend)),
        y_label: "ms (log scale)".into(),
        log_y: true,
        y_count: false,
        lines: vec![
            ("e2e p50".into(), series(run, backend, |r| r.e2e_p50_ms)),
            ("e2e p99".into(), series(run, backend, |r| r.e2e_p99_ms)),
            ("e2e max".into(), series(run, backend, |r| r.e2e_max_ms)),
            (
                "confirm p99".into(),
                series(run, backend, |r| r.publish_p99_ms),
            ),
            (
                "failed publish max".into(),
                series(run, backend, |r| r.publish_failed_max_ms),
            ),
            (
                "send delay p99".into(),
                series(run, backend, |r| r.send_delay_p99_ms),
            ),
        ],
        bands: Vec::new(),
        faults: faults(run, backend),
    };
    save_time(out, stem("latency", backend), chart, NO_TIMESERIES)
}

/// Replica lag over time for one backend, one line per replica (from replica_lag.csv): the
/// line is the upper bound of the lag, a band under it reaches down to the lower bound.
pub fn replica_lag(run: &RunResults, backend: &str, out: &Path) -> Result<ChartFile, ChartError> {
    let samples = || run.replica_lag.iter().filter(|s| s.backend == backend);
    let lines = group_lines(
        samples().map(|s| (s.node.as_str(), (s.t_s, s.lag_messages))),
        1,
    );
    let bands = lines
        .iter()
        .enumerate()
        .map(|(i, (node, _))| {
            let mut pts: Vec<BandPoint> = samples()
                .filter(|s| &s.node == node)
                .filter_map(|s| Some((s.t_s, s.lag_messages_min?, s.lag_messages)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            (i, pts)
        })
        // Exact figures (lower bound = upper bound) need no band.
        .filter(|(_, pts)| pts.iter().any(|p| p.1 < p.2))
        .collect();
    let chart = TimeChart {
        x_label: LOAD_CLOCK,
        title: format!("{}: replica lag (bounds)", run.display_name(backend)),
        y_label: "messages behind the leader, at most".into(),
        log_y: false,
        y_count: true,
        lines,
        bands,
        faults: faults(run, backend),
    };
    save_time(
        out,
        stem("replica-lag", backend),
        chart,
        "no replica_lag.csv rows",
    )
}

/// Each node's CPU share over time for one backend (from cpu.csv).
pub fn cpu_share(run: &RunResults, backend: &str, out: &Path) -> Result<ChartFile, ChartError> {
    let chart = TimeChart {
        x_label: LOAD_CLOCK,
        title: format!("{}: CPU per node", run.display_name(backend)),
        y_label: "cores".into(),
        log_y: false,
        y_count: false,
        lines: group_lines(
            run.cpu
                .iter()
                .filter(|s| s.backend == backend)
                .map(|s| (s.node.as_str(), (s.t_s, s.cpu))),
            1,
        ),
        bands: Vec::new(),
        faults: faults(run, backend),
    };
    save_time(out, stem("cpu", backend), chart, "no cpu.csv rows")
}
