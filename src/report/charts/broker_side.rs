//! The broker side beside the harness's own figures: from prometheus.csv (a run with
//! `monitoring = true`; `draw_all` draws it for each broker the run's Prometheus scraped), a broker's rate per node over the run with the harness's sent and
//! received rates on the same clock.

use std::path::Path;

use super::time::TimeChart;
use super::*;
use crate::monitoring::config::JOB_REDIS;
use crate::monitoring::query::PromRow;

/// `prometheus-<job>`: the broker's per-node rate (Redis commands/s, RabbitMQ messages
/// received/s) and the harness's sent and received msg/s, seconds since the monitoring started.
pub fn broker_side(
    run: &RunResults,
    rows: &[PromRow],
    job: &str,
    out: &Path,
) -> Result<ChartFile, ChartError> {
    let chart = format!("prometheus-{job}");
    let (query, what) = if job == JOB_REDIS {
        ("redis_commands_per_s", "Redis commands/s per node")
    } else {
        (
            "rabbitmq_received_per_s",
            "RabbitMQ messages received/s per node",
        )
    };
    let mut lines = lines_of(rows, query, "");
    if lines.is_empty() {
        return Err(ChartError::NoData {
            chart,
            what: format!("no {query} in prometheus.csv"),
        });
    }
    for (q, name) in [
        ("brokerbench_sent_per_s", "sent msg/s"),
        ("brokerbench_received_per_s", "received msg/s"),
    ] {
        lines.extend(lines_of(rows, q, name));
    }
    let title = format!("{what} beside the harness's rates ({})", run.name);
    let data = TimeChart {
        title: title.clone(),
        x_label: "seconds since the run's Prometheus started",
        y_label: "per second (Prometheus rate over 4 scrapes)".to_string(),
        log_y: false,
        y_count: false,
        lines,
        bands: Vec::new(),
        faults: Vec::new(),
    };
    save(out, &chart, &title, &data)
}

/// One line per series of `query` (NaN samples left out), named `<series> <suffix>`.
fn lines_of(rows: &[PromRow], query: &str, suffix: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.query == query && r.value.is_finite())
    {
        let name = if suffix.is_empty() {
            r.series.clone()
        } else {
            format!("{} {suffix}", r.series)
        };
        match lines.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((r.t_s, r.value)),
            None => lines.push((name, vec![(r.t_s, r.value)])),
        }
    }
    lines
}
