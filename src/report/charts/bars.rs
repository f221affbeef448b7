//! Bar charts across the backends of one run: max throughput, p99 by rate, failover
//! unavailability and loss, throughput by destinations.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{count_label, count_ticks, format_value, tick_label};
use super::lines::{group_lines, save_lines, Lines};
use super::*;

/// Bars: one value per labelled item.
struct Bars {
    title: String,
    y_label: String,
    /// The values count whole things (messages): integer ticks only.
    count: bool,
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
    let count_fmt = |v: &f64| count_label(*v);
    let value_fmt = |v: &f64| tick_label(*v);
    let mut mesh = chart.configure_mesh();
    if b.count {
        mesh.x_labels(count_ticks(x_max))
            .x_label_formatter(&count_fmt);
    } else {
        mesh.x_label_formatter(&value_fmt);
    }
    mesh.disable_y_mesh()
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
            let label = if b.count {
                count_label(*v)
            } else {
                format_value(*v)
            };
            Text::new(label, (*v + x_max * 0.01, i as f64), (FONT, 13))
        }))
        .map_err(err)?;
    Ok(())
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

pub(super) fn rows_where<'a>(
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
            count: false,
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
            count: false,
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
            count: false,
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
            count: true,
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
            x_count: true,
            log_y: false,
            lines: group_lines(points, 2),
        },
    )
}
