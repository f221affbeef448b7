//! summary.csv, timeseries.csv, timeline.csv, destinations.csv, cpu.csv (when the run knows its
//! nodes' processes), replica_lag.csv (when the backend can tell) and (for runs with faults)
//! faults.csv in the run folder. Rows are flushed as they come, so an interrupted run keeps
//! what it measured.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::aggregate::{aggregate, AggregateRow};
use super::{DestinationSecond, FaultRow, LostMessage, ReportError, Sink, SummaryRow};
use crate::metrics::aggregator::IntervalRow;
use crate::metrics::cpu::CpuRow;
use crate::metrics::replica_lag::LagRow;
use crate::metrics::stats::Stats;
use crate::scenario::timeline::TimelineEvent;

pub struct CsvSink {
    dir: PathBuf,
    timeseries: csv::Writer<File>,
    timeline: csv::Writer<File>,
    destinations: csv::Writer<File>,
    /// Created with the first fault row.
    faults: Option<csv::Writer<File>>,
    /// Created with the first lost message.
    lost: Option<csv::Writer<File>>,
    /// Created with the first CPU sample.
    cpu: Option<csv::Writer<File>>,
    /// Created with the first replica lag sample.
    replica_lag: Option<csv::Writer<File>>,
    summaries: Vec<SummaryRow>,
    /// Every fault row so far (aggregate.csv's unavailability).
    fault_rows: Vec<FaultRow>,
}

#[derive(serde::Serialize)]
struct TimelineRow<'a> {
    backend: &'a str,
    kind: &'a str,
    name: &'a str,
    start_s: f64,
    end_s: Option<f64>,
}

fn open(path: &Path) -> Result<csv::Writer<File>, ReportError> {
    csv::Writer::from_path(path).map_err(|source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    })
}

impl CsvSink {
    pub fn create(dir: &Path) -> Result<Self, ReportError> {
        Ok(CsvSink {
            dir: dir.to_path_buf(),
            timeseries: open(&dir.join("timeseries.csv"))?,
            timeline: open(&dir.join("timeline.csv"))?,
            destinations: open(&dir.join("destinations.csv"))?,
            faults: None,
            lost: None,
            cpu: None,
            replica_lag: None,
            summaries: Vec::new(),
            fault_rows: Vec::new(),
        })
    }

    fn write_rows<T: serde::Serialize>(
        w: &mut csv::Writer<File>,
        path: PathBuf,
        rows: &[T],
    ) -> Result<(), ReportError> {
        for r in rows {
            w.serialize(r).map_err(|source| ReportError::Csv {
                path: path.clone(),
                source,
            })?;
        }
        w.flush().map_err(|source| ReportError::Io { path, source })
    }

    /// `write_rows` to a file created with its first rows.
    fn write_created<T: serde::Serialize>(
        w: &mut Option<csv::Writer<File>>,
        path: PathBuf,
        rows: &[T],
    ) -> Result<(), ReportError> {
        let w = match w {
            Some(w) => w,
            None => w.insert(open(&path)?),
        };
        Self::write_rows(w, path, rows)
    }

    /// summary.csv (one row per backend and repetition) and aggregate.csv (one row per
    /// backend over its repetitions), rewritten whole.
    fn write_summary(&self) -> Result<(), ReportError> {
        let path = self.dir.join("summary.csv");
        Self::write_rows(&mut open(&path)?, path, &self.summaries)?;
        let path = self.dir.join("aggregate.csv");
        let csv_err = |source| ReportError::Csv {
            path: path.clone(),
            source,
        };
        let mut w = open(&path)?;
        w.write_record(AggregateRow::header()).map_err(csv_err)?;
        for row in aggregate(&self.summaries, &self.fault_rows) {
            w.write_record(row.record()).map_err(csv_err)?;
        }
        w.flush().map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })
    }
}

impl Sink for CsvSink {
    fn on_faults(&mut self, rows: &[FaultRow]) -> Result<(), ReportError> {
        self.fault_rows.extend_from_slice(rows);
        Self::write_created(&mut self.faults, self.dir.join("faults.csv"), rows)
    }

    fn on_lost(&mut self, rows: &[LostMessage]) -> Result<(), ReportError> {
        Self::write_created(&mut self.lost, self.dir.join("lost.csv"), rows)
    }

    fn on_replica_lag(&mut self, rows: &[LagRow]) -> Result<(), ReportError> {
        let path = self.dir.join("replica_lag.csv");
        Self::write_created(&mut self.replica_lag, path, rows)
    }

    fn on_cpu(&mut self, rows: &[CpuRow]) -> Result<(), ReportError> {
        Self::write_created(&mut self.cpu, self.dir.join("cpu.csv"), rows)
    }

    fn on_destinations(&mut self, rows: &[DestinationSecond]) -> Result<(), ReportError> {
        let path = self.dir.join("destinations.csv");
        Self::write_rows(&mut self.destinations, path, rows)
    }

    fn on_interval(&mut self, row: &IntervalRow, _interval: &Stats) -> Result<(), ReportError> {
        let path = self.dir.join("timeseries.csv");
        Self::write_rows(&mut self.timeseries, path, std::slice::from_ref(row))
    }

    fn on_event(&mut self, e: &TimelineEvent) -> Result<(), ReportError> {
        let kind = match e.kind {
            crate::scenario::timeline::EventKind::Phase => "phase",
            crate::scenario::timeline::EventKind::Fault => "fault",
        };
        let row = TimelineRow {
            backend: &e.backend,
            kind,
            name: &e.name,
            start_s: e.start_s,
            end_s: e.end_s,
        };
        let path = self.dir.join("timeline.csv");
        Self::write_rows(&mut self.timeline, path, &[row])
    }

    fn on_backend_end(&mut self, summary: &SummaryRow) -> Result<(), ReportError> {
        self.summaries.push(summary.clone());
        self.write_summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::aggregator::Aggregator;
    use crate::metrics::stats::Recorder;

    #[test]
    fn writes_one_summary_row_per_backend_and_timeseries_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sink = CsvSink::create(dir.path()).expect("create");
        let r = Recorder::new();
        let mut agg = Aggregator::new("a", 0, vec![r.clone()]);
        r.with(|s| s.sent = 7);
        let (row, stats) = agg.tick(1_000_000_000, crate::scenario::timeline::Phase::Measure);
        let (row, stats) = (row.clone(), stats.clone());
        sink.on_interval(&row, &stats).expect("row");
        sink.on_backend_end(&SummaryRow::failed("a", "redis-streams", "ok".into()))
            .expect("summary a");
        sink.on_backend_end(&SummaryRow::failed(
            "b",
            "rabbitmq-quorum",
            "error: x".into(),
        ))
        .expect("summary b");
        let summary = std::fs::read_to_string(dir.path().join("summary.csv")).expect("read");
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 3, "{summary}");
        assert!(lines[0].starts_with("backend,series,repetition,type,status,guarantee,cluster,broker,broker_version,target_rate"));
        assert!(lines[2].starts_with("b,,0,rabbitmq-quorum,error: x"));
        // aggregate.csv: one row per backend with an ok row, over its repetitions.
        let agg = std::fs::read_to_string(dir.path().join("aggregate.csv")).expect("read");
        let lines: Vec<&str> = agg.lines().collect();
        assert_eq!(lines.len(), 2, "{agg}");
        assert!(lines[0].starts_with(
            "series,type,guarantee,target_rate,destinations,runs,received_per_s_median"
        ));
        assert!(
            lines[1].starts_with("a,redis-streams,,,0,1,0,0,0,"),
            "{agg}"
        );
        let ts = std::fs::read_to_string(dir.path().join("timeseries.csv")).expect("read");
        assert_eq!(ts.lines().count(), 2);
        assert!(
            ts.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("a,0.0,1.0,measure,7,")),
            "{ts}"
        );
    }
}
