//! Charts of a results folder, each drawn by one function into a PNG and an SVG. A chart that
//! cannot be drawn (no data, a drawing error) is reported and skipped, never a panic. Text is
//! drawn with DejaVu Sans compiled into the binary, so no system font library is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::results::RunResults;
use super::SummaryRow;

const SIZE: (u32, u32) = (1000, 560);
const FONT: &str = "sans-serif";
const FAULT_SHADE: RGBColor = RGBColor(255, 205, 205);

/// A chart written as `<stem>.png` and `<stem>.svg`.
#[derive(Debug, Clone)]
pub struct ChartFile {
    pub stem: String,
    pub title: String,
    pub png: PathBuf,
    pub svg: PathBuf,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ChartError {
    #[error("chart {chart}: no data ({what})")]
    NoData { chart: String, what: String },
    #[error("chart {chart}: drawing failed: {message}")]
    Draw { chart: String, message: String },
}

/// Register the embedded font once per process.
fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Errors here would only mean corrupt font bytes; charts then fail with a Draw error.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

type Drawn = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Something drawable on any plotters backend.
trait Plot {
    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn;
}

/// Draw `data` into `<out>/<stem>.png` and `.svg`.
fn save<P: Plot>(out: &Path, stem: &str, title: &str, data: &P) -> Result<ChartFile, ChartError> {
    fonts();
    let draw_err = |message: String| ChartError::Draw {
        chart: stem.to_string(),
        message,
    };
    let png_path = out.join(format!("{stem}.png"));
    let svg_path = out.join(format!("{stem}.svg"));
    {
        let root = BitMapBackend::new(&png_path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err).map_err(draw_err)?;
        data.plot(&root).map_err(draw_err)?;
        root.present().map_err(err).map_err(draw_err)?;
    }
    {
        let root = SVGBackend::new(&svg_path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err).map_err(draw_err)?;
        data.plot(&root).map_err(draw_err)?;
        root.present().map_err(err).map_err(draw_err)?;
    }
    Ok(ChartFile {
        stem: stem.to_string(),
        title: title.to_string(),
        png: png_path,
        svg: svg_path,
    })
}

fn series_color(i: usize) -> RGBColor {
    const P: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    P[i % P.len()]
}

/// A safe file stem for a label.
pub fn stem(prefix: &str, label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}-{safe}")
}

/// Lines over time with fault windows shaded and labelled.
struct TimeChart {
    title: String,
    y_label: String,
    log_y: bool,
    lines: Vec<(String, Vec<(f64, f64)>)>,
    /// Per line (by index), a band from a lower bound up to the line (the upper bound), drawn
    /// in the line's colour, lighter.
    bands: Vec<(usize, Vec<BandPoint>)>,
    faults: Vec<(String, f64, f64)>,
}

/// `(t, lower, upper)`.
type BandPoint = (f64, f64, f64);

/// The legend entry of the bands of a time chart.
const BAND_LABEL: &str = "shaded: down to the lower bound";

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
        .chain(c.faults.iter().map(|f| f.2))
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
            chart
                .configure_mesh()
                .x_desc("seconds since the backend's load started")
                .y_desc(c.y_label.as_str())
                .label_style((FONT, 14))
                .draw()
                .map_err(err)?;
            for (name, from, to) in &c.faults {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(*from, $y0), (to.max(from + 0.05), y_max)],
                        FAULT_SHADE.filled(),
                    )))
                    .map_err(err)?
                    .label(name.clone())
                    .legend(|(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 16, y + 5)], FAULT_SHADE.filled())
                    });
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
    f: impl Fn(&crate::metrics::aggregator::IntervalRow) -> Option<f64>,
) -> Vec<(f64, f64)> {
    run.timeseries
        .iter()
        .filter(|r| r.backend == backend && r.t_end_s > r.t_start_s)
        .filter_map(|r| f(r).map(|v| (r.t_end_s, v)))
        .collect()
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
    let chart = TimeChart {
        title: format!("{}: throughput", run.display_name(backend)),
        y_label: "msg/s".into(),
        log_y: false,
        lines: vec![
            ("sent".into(), series(run, backend, |r| Some(r.sent_per_s))),
            (
                "confirmed".into(),
                series(run, backend, |r| Some(r.confirmed_per_s)),
            ),
            (
                "received".into(),
                series(run, backend, |r| Some(r.received_per_s)),
            ),
        ],
        bands: Vec::new(),
        faults: run.fault_windows(backend),
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
        title: format!("{}: latency per second", run.display_name(backend)),
        y_label: "ms (log scale)".into(),
        log_y: true,
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
        faults: run.fault_windows(backend),
    };
    save_time(out, stem("latency", backend), chart, NO_TIMESERIES)
}

/// The end-to-end latency of the measured phase (and drain) per backend, from the HdrHistogram
/// logs: latency by percentile, the percentile axis on a log scale of 1/(1-p).
pub fn percentile_spectrum(run: &RunResults, out: &Path) -> Result<ChartFile, ChartError> {
    let chart = "percentiles";
    let mut lines = Vec::new();
    for b in run.backends() {
        let path = run.dir.join("hdr").join(super::hlog::file_name(b));
        let Ok(h) = super::hlog::read_merged(&path, "e2e", run.measure_start_s(b)) else {
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
            "End-to-end latency by percentile (measured phase)",
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

/// The legend of the labelled series, boxed, at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Drawn {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// Bars: one value per labelled item.
struct Bars {
    title: String,
    y_label: String,
    items: Vec<(String, f64)>,
}

impl Plot for Bars {
    fn plot<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn {
        plot_bars(root, self)
    }
}

/// Horizontal bars, so that long labels (backend and setting) stay readable.
fn plot_bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, b: &Bars) -> Drawn {
    let n = b.items.len();
    let x_max = b.items.iter().map(|i| i.1).fold(0.0f64, f64::max).max(1e-3) * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption(&b.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..x_max, -0.5f64..(n as f64 - 0.5))
        .map_err(err)?;
    let labels: Vec<String> = b.items.iter().map(|i| i.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n.max(1))
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc(b.y_label.as_str())
        .label_style((FONT, 13))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(b.items.iter().enumerate().map(|(i, (_, v))| {
            Rectangle::new(
                [(0.0, i as f64 - 0.35), (*v, i as f64 + 0.35)],
                series_color(i).filled(),
            )
        }))
        .map_err(err)?;
    chart
        .draw_series(b.items.iter().enumerate().map(|(i, (_, v))| {
            Text::new(format_value(*v), (*v + x_max * 0.01, i as f64), (FONT, 13))
        }))
        .map_err(err)?;
    Ok(())
}

fn format_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn save_bars(out: &Path, stem: &str, bars: Bars) -> Result<ChartFile, ChartError> {
    if bars.items.is_empty() {
        return Err(ChartError::NoData {
            chart: stem.into(),
            what: bars.title,
        });
    }
    let title = bars.title.clone();
    save(out, stem, &title, &bars)
}

fn rows_where<'a>(
    run: &'a RunResults,
    f: impl Fn(&SummaryRow) -> bool + 'a,
) -> impl Iterator<Item = &'a SummaryRow> + 'a {
    run.summary
        .iter()
        .filter(move |s| s.status.starts_with("ok") && f(s))
}

/// Bars: received msg/s of every backend that ran at max rate.
pub fn max_throughput(run: &RunResults, out: &Path) -> Result<ChartFile, ChartError> {
    let items = rows_where(run, |s| s.target_rate.is_none())
        .map(|s| (s.display_name(), s.received_per_s))
        .collect();
    save_bars(
        out,
        "max-throughput",
        Bars {
            title: "Max throughput (received msg/s, measured phase)".into(),
            y_label: "msg/s".into(),
            items,
        },
    )
}

/// Bars: end-to-end p99 of every backend that ran at a fixed rate, labelled with the rate.
pub fn p99_by_rate(run: &RunResults, out: &Path) -> Result<ChartFile, ChartError> {
    let items = rows_where(run, |s| s.target_rate.is_some() && s.e2e_p99_ms.is_some())
        .map(|s| {
            let rate = s.target_rate.unwrap_or(0.0);
            (
                format!("{} @ {rate:.0}/s", s.display_name()),
                s.e2e_p99_ms.unwrap_or(0.0),
            )
        })
        .collect();
    save_bars(
        out,
        "p99-by-rate",
        Bars {
            title: "End-to-end p99 latency (ms) at a fixed rate".into(),
            y_label: "ms".into(),
            items,
        },
    )
}

/// Bars: publish unavailability after each node fault, per backend.
pub fn failover_unavailability(run: &RunResults, out: &Path) -> Result<ChartFile, ChartError> {
    let node_faults = || {
        run.faults
            .iter()
            .filter(|f| f.action != "kill-consumer" && f.status == "ok")
    };
    // Only measured windows are drawn: a row that never recovered or that cannot be measured
    // (no confirms) would otherwise read as 0 s.
    let items = node_faults()
        .filter_map(|f| {
            let v = match f.publish_recovered.as_str() {
                "unaffected" => 0.0,
                "yes" => f.publish_unavailable_s?,
                _ => return None,
            };
            Some((
                format!("{} ({})", run.display_name(&f.backend), f.target),
                v,
            ))
        })
        .collect::<Vec<_>>();
    let left_out: Vec<String> = node_faults()
        .filter(|f| !matches!(f.publish_recovered.as_str(), "unaffected" | "yes"))
        .map(|f| format!("{}: {}", f.backend, f.publish_recovered))
        .collect();
    let title = if left_out.is_empty() {
        "Publish unavailability after the fault (s)".to_string()
    } else {
        format!(
            "Publish unavailability after the fault (s); not drawn: {}",
            left_out.join(", ")
        )
    };
    save_bars(
        out,
        "failover-unavailability",
        Bars {
            title,
            y_label: "seconds".into(),
            items,
        },
    )
}

/// Bars: lost and duplicated messages per backend of a run with faults.
pub fn failover_loss(run: &RunResults, out: &Path) -> Result<ChartFile, ChartError> {
    if run.faults.is_empty() {
        return Err(ChartError::NoData {
            chart: "failover-loss".into(),
            what: "no faults.csv".into(),
        });
    }
    let items = rows_where(run, |_| true)
        .flat_map(|s| {
            [
                (
                    format!("{} lost", s.display_name()),
                    (s.lost + s.unconfirmed_missing) as f64,
                ),
                (format!("{} dup", s.display_name()), s.duplicates as f64),
            ]
        })
        .collect();
    save_bars(
        out,
        "failover-loss",
        Bars {
            title:
                "Lost (confirmed, or sent without confirms, never received) and duplicated messages"
                    .into(),
            y_label: "messages".into(),
            items,
        },
    )
}

/// Lines: received msg/s at max rate against the number of destinations, per backend type
/// (claim C3), when the run has a type at two destination counts or more.
pub fn throughput_by_destinations(run: &RunResults, out: &Path) -> Result<ChartFile, ChartError> {
    // One line per type and broker version: RabbitMQ 3.10 and 4.0 rows are not one line.
    let points = rows_where(run, |s| s.target_rate.is_none() && s.destinations > 0).map(|s| {
        let name = match s.broker_name() {
            Some(b) => format!("{} ({b})", s.backend_type),
            None => s.backend_type.clone(),
        };
        (name, (s.destinations as f64, s.received_per_s))
    });
    save_lines(
        out,
        "throughput-by-destinations",
        "no backend type ran at max rate with two destination counts or more",
        Lines {
            caption: "Max throughput by number of destinations",
            x_desc: "queues / streams",
            y_desc: "received msg/s",
            log_y: false,
            lines: group_lines(points, 2),
        },
    )
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
            log_y: true,
            lines: group_lines(points, 2),
        },
    )
}

/// One line per name, through its points in x order; names with fewer than `min_points`
/// points are left out.
fn group_lines<N: Ord + Into<String>>(
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
fn save_lines(
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
struct Lines {
    caption: &'static str,
    x_desc: &'static str,
    y_desc: &'static str,
    /// A logarithmic y axis (points at or below 0 are left out).
    log_y: bool,
    lines: Vec<(String, Vec<(f64, f64)>)>,
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
                chart
                    .configure_mesh()
                    .x_desc(self.x_desc)
                    .y_desc(self.y_desc)
                    .x_label_formatter(&|v| format_value(*v))
                    .y_label_formatter(&|v| format_value(*v))
                    .label_style((FONT, 14))
                    .draw()
                    .map_err(err)?;
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
        title: format!("{}: replica lag (bounds)", run.display_name(backend)),
        y_label: "messages behind the leader, at most".into(),
        log_y: false,
        lines,
        bands,
        faults: run.fault_windows(backend),
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
        title: format!("{}: CPU per node", run.display_name(backend)),
        y_label: "cores".into(),
        log_y: false,
        lines: group_lines(
            run.cpu
                .iter()
                .filter(|s| s.backend == backend)
                .map(|s| (s.node.as_str(), (s.t_s, s.cpu))),
            1,
        ),
        bands: Vec::new(),
        faults: run.fault_windows(backend),
    };
    save_time(out, stem("cpu", backend), chart, "no cpu.csv rows")
}

/// Every chart the run has data for; the others come back as errors saying why.
pub fn draw_all(run: &RunResults, out: &Path) -> (Vec<ChartFile>, Vec<ChartError>) {
    let mut drawn = Vec::new();
    let mut skipped = Vec::new();
    let mut keep = |r: Result<ChartFile, ChartError>| match r {
        Ok(c) => drawn.push(c),
        Err(e) => skipped.push(e),
    };
    for b in run.backends() {
        keep(throughput_over_time(run, b, out));
        keep(latency_over_time(run, b, out));
        keep(replica_lag(run, b, out));
        keep(cpu_share(run, b, out));
    }
    keep(percentile_spectrum(run, out));
    keep(max_throughput(run, out));
    keep(throughput_by_destinations(run, out));
    keep(p99_by_rate(run, out));
    keep(failover_unavailability(run, out));
    keep(failover_loss(run, out));
    (drawn, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_without_data_is_skipped_with_the_reason() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let run = RunResults {
            dir: tmp.path().to_path_buf(),
            name: "empty".into(),
            meta: serde_json::Value::Null,
            summary: vec![SummaryRow {
                backend: "b".into(),
                status: "ok".into(),
                target_rate: Some(1000.0),
                ..Default::default()
            }],
            timeseries: Vec::new(),
            timeline: Vec::new(),
            faults: Vec::new(),
            replica_lag: Vec::new(),
            cpu: Vec::new(),
        };
        let (drawn, skipped) = draw_all(&run, tmp.path());
        // A fixed-rate row with no p99 and no max-rate row: nothing to draw, nothing panics.
        assert!(drawn.is_empty(), "{drawn:?}");
        assert_eq!(skipped.len(), 10, "{skipped:?}");
        assert!(skipped
            .iter()
            .all(|e| matches!(e, ChartError::NoData { .. })));
        assert!(
            skipped[0].to_string().contains("throughput-b"),
            "{}",
            skipped[0]
        );
    }
}
