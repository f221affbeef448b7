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
use crate::monitoring::config::{JOB_RABBITMQ, JOB_REDIS};

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

pub mod axis;
mod bars;
mod broker_side;
mod lines;
mod time;

pub use bars::{
    failover_loss, failover_unavailability, max_throughput, p99_by_rate, throughput_by_destinations,
};
pub use broker_side::broker_side;
pub use lines::{p99_by_rate_across, percentile_spectrum};
pub use time::{cpu_share, latency_over_time, replica_lag, throughput_over_time};

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
    // A run with `monitoring = true`: the brokers it scraped.
    let prom = crate::monitoring::query::read_csv(&run.dir);
    for job in [JOB_REDIS, JOB_RABBITMQ] {
        if prom.iter().any(|r| r.job == job) {
            keep(broker_side(run, &prom, job, out));
        }
    }
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
