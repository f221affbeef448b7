//! The live progress line: one update per interval (indicatif on a terminal, a plain line
//! every 5 s otherwise, so logs of `make bench` show progress too).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::{BackendStart, ReportError, Sink, SummaryRow};
use crate::metrics::aggregator::IntervalRow;
use crate::metrics::stats::Stats;

pub struct ProgressSink {
    bar: Option<ProgressBar>,
    tty: bool,
    label: String,
    total_s: f64,
    intervals: u64,
}

impl Default for ProgressSink {
    fn default() -> Self {
        ProgressSink {
            bar: None,
            tty: std::io::stderr().is_terminal(),
            label: String::new(),
            total_s: 0.0,
            intervals: 0,
        }
    }
}

/// The progress text for one interval.
pub fn progress_text(label: &str, row: &IntervalRow, total_s: f64) -> String {
    let ms = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    format!(
        "[{label}] {:>7} {:>5.0}/{:.0}s | sent {:>7.0}/s conf {:>7.0}/s recv {:>7.0}/s | e2e p50 {} p99 {} ms | publish p99 {} ms | errors {}{}",
        row.phase,
        row.t_end_s,
        total_s,
        row.sent_per_s,
        row.confirmed_per_s,
        row.received_per_s,
        ms(row.e2e_p50_ms),
        ms(row.e2e_p99_ms),
        ms(row.publish_p99_ms),
        row.errors,
        if row.error_kinds.is_empty() { String::new() } else { format!(" ({})", row.error_kinds) }
    )
}

impl Sink for ProgressSink {
    fn on_backend_start(&mut self, start: &BackendStart) -> Result<(), ReportError> {
        self.label = start.label.clone();
        self.total_s = start.warmup_s + start.duration_s;
        self.intervals = 0;
        if self.tty {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(format!("[{}] starting", self.label));
            self.bar = Some(bar);
        } else {
            crate::errln!(
                "[{}] load started ({} s warm-up, {} s measured)",
                self.label,
                start.warmup_s,
                start.duration_s
            );
        }
        Ok(())
    }

    fn on_interval(&mut self, row: &IntervalRow, _interval: &Stats) -> Result<(), ReportError> {
        self.intervals += 1;
        let text = progress_text(&self.label, row, self.total_s);
        match &self.bar {
            Some(bar) => {
                bar.set_message(text);
                bar.tick();
            }
            None if self.intervals.is_multiple_of(5) => crate::errln!("{text}"),
            None => {}
        }
        Ok(())
    }

    fn on_notice(&mut self, line: &str) -> Result<(), ReportError> {
        let text = format!("[{}] {line}", self.label);
        match &self.bar {
            Some(bar) => bar.println(text),
            None => crate::errln!("{text}"),
        }
        Ok(())
    }

    fn on_backend_end(&mut self, summary: &SummaryRow) -> Result<(), ReportError> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        crate::errln!("{}", summary.one_line());
        Ok(())
    }
}
