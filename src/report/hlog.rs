//! HdrHistogram interval logs: `hdr/<backend>.hlog`, one line per interval and latency (tags
//! publish, publish_failed, e2e, send_delay), in the log format version 1.3 that
//! HistogramLogProcessor and HdrHistogram's plotters read. Values are microseconds; the
//! Interval_Max column is in milliseconds. At the end of each backend, `hdr/<backend>.<tag>.hgrm`:
//! the percentile distribution of the measured phase and the drain (see `hgrm`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

use super::{BackendStart, ReportError, Sink, SummaryRow};
use crate::metrics::aggregator::IntervalRow;
use crate::metrics::stats::{Latency, Stats};

pub struct HlogSink {
    dir: PathBuf,
    current: Option<(PathBuf, BufWriter<File>)>,
    /// The current backend's file-name stem and its measure + drain latencies, for the .hgrm
    /// files.
    label: String,
    measured: Stats,
    serializer: V2DeflateSerializer,
    buf: Vec<u8>,
}

impl HlogSink {
    pub fn new(dir: &Path) -> Result<Self, ReportError> {
        let dir = dir.join("hdr");
        std::fs::create_dir_all(&dir).map_err(|source| ReportError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(HlogSink {
            dir,
            current: None,
            label: String::new(),
            measured: Stats::default(),
            serializer: V2DeflateSerializer::new(),
            buf: Vec::new(),
        })
    }
}

/// File name for a backend label (kept to safe characters).
pub fn file_name(label: &str) -> String {
    format!("{}.hlog", file_stem(label))
}

/// A backend label kept to characters safe in a file name.
pub fn file_stem(label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    safe
}

impl Sink for HlogSink {
    fn on_backend_start(&mut self, start: &BackendStart) -> Result<(), ReportError> {
        let path = self.dir.join(file_name(&start.label));
        let io = |source| ReportError::Io {
            path: path.clone(),
            source,
        };
        let mut w = BufWriter::new(File::create(&path).map_err(io)?);
        let t = start
            .started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        writeln!(w, "#[Histogram log format version 1.3]").map_err(io)?;
        writeln!(w, "#[Backend: {} ({})]", start.label, start.backend_type).map_err(io)?;
        writeln!(
            w,
            "#[Values in microseconds; tags: publish, publish_failed, e2e, send_delay]"
        )
        .map_err(io)?;
        writeln!(w, "#[StartTime: {t:.3} (seconds since epoch)]").map_err(io)?;
        writeln!(w, "#[BaseTime: {t:.3} (seconds since epoch)]").map_err(io)?;
        writeln!(w, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"").map_err(io)?;
        self.current = Some((path, w));
        self.label = file_stem(&start.label);
        self.measured.reset();
        Ok(())
    }

    fn on_backend_end(&mut self, _summary: &SummaryRow) -> Result<(), ReportError> {
        if self.current.take().is_none() {
            return Ok(());
        }
        for l in Latency::ALL {
            let h = self.measured.histogram(l);
            if h.is_empty() {
                continue;
            }
            let path = self.dir.join(format!("{}.{}.hgrm", self.label, l.name()));
            std::fs::write(&path, super::hgrm::percentile_distribution(h, 1000.0))
                .map_err(|source| ReportError::Io { path, source })?;
        }
        Ok(())
    }

    fn on_interval(&mut self, row: &IntervalRow, interval: &Stats) -> Result<(), ReportError> {
        let Some((path, w)) = self.current.as_mut() else {
            return Ok(());
        };
        if row.phase.counts_latency() {
            self.measured.merge_latencies(interval);
        }
        for l in Latency::ALL {
            let h = interval.histogram(l);
            if h.is_empty() {
                continue;
            }
            self.buf.clear();
            self.serializer
                .serialize(h, &mut self.buf)
                .map_err(|e| ReportError::Encode {
                    path: path.clone(),
                    message: format!("{e:?}"),
                })?;
            let encoded = base64::engine::general_purpose::STANDARD.encode(&self.buf);
            writeln!(
                w,
                "Tag={},{:.3},{:.3},{:.3},{}",
                l.name(),
                row.t_start_s,
                row.t_end_s - row.t_start_s,
                h.max() as f64 / 1000.0,
                encoded
            )
            .map_err(|source| ReportError::Io {
                path: path.clone(),
                source,
            })?;
        }
        w.flush().map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })
    }
}

/// Read back one tag's interval histograms from a log, merged, keeping the intervals that start
/// at or after `from_s` seconds (the measured phase and the drain, as summary.csv's latencies).
pub fn read_merged(
    path: &Path,
    tag: &str,
    from_s: f64,
) -> Result<hdrhistogram::Histogram<u64>, ReportError> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    let text = std::fs::read(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let encode = |message: String| ReportError::Encode {
        path: path.to_path_buf(),
        message,
    };
    let mut merged = crate::metrics::stats::new_histogram();
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&text) {
        let Ok(LogEntry::Interval(h)) = entry else {
            continue;
        };
        if h.tag().map(|t| t.as_str()) != Some(tag)
            || h.start_timestamp().as_secs_f64() + 1e-6 < from_s
        {
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(h.encoded_histogram())
            .map_err(|e| encode(format!("an interval is not base64: {e}")))?;
        let one: hdrhistogram::Histogram<u64> = de
            .deserialize(&mut std::io::Cursor::new(bytes))
            .map_err(|e| encode(format!("an interval does not decode: {e:?}")))?;
        merged
            .add(&one)
            .map_err(|e| encode(format!("cannot merge an interval: {e:?}")))?;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::aggregator::Aggregator;
    use crate::metrics::stats::{record_ns, Recorder};
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn writes_a_log_that_hdrhistogram_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sink = HlogSink::new(dir.path()).expect("sink");
        sink.on_backend_start(&BackendStart {
            label: "redis x".into(),
            backend_type: "redis-streams".into(),
            started: std::time::SystemTime::now(),
            warmup_s: 0.0,
            duration_s: 1.0,
        })
        .expect("start");
        let r = Recorder::new();
        let mut agg = Aggregator::new("redis x", 0, vec![r.clone()]);
        r.with(|s| {
            for v in 1..=100 {
                record_ns(&mut s.e2e, v * 1_000_000);
            }
        });
        let (row, stats) = agg.tick(1_000_000_000, crate::scenario::timeline::Phase::Measure);
        let (row, stats) = (row.clone(), stats.clone());
        sink.on_interval(&row, &stats).expect("interval");
        let text = std::fs::read(dir.path().join("hdr").join("redis_x.hlog")).expect("read");
        let entries: Vec<_> = IntervalLogIterator::new(&text)
            .filter_map(|e| e.ok())
            .collect();
        let hist = entries.iter().find_map(|e| match e {
            LogEntry::Interval(h) => Some(h),
            _ => None,
        });
        let hist = hist.expect("one interval histogram");
        assert_eq!(hist.tag().map(|t| t.as_str()), Some("e2e"));
        assert!((hist.max() - 100.0).abs() < 0.2, "max {}", hist.max());
        assert!(String::from_utf8_lossy(&text).starts_with("#[Histogram log format version 1.3]\n"));
        // The backend's end writes its measured e2e distribution.
        sink.on_backend_end(&SummaryRow::default()).expect("end");
        let hgrm = std::fs::read_to_string(dir.path().join("hdr").join("redis_x.e2e.hgrm"))
            .expect("an .hgrm file");
        assert!(hgrm.contains("Total count    =          100]"), "{hgrm}");
        assert!(!dir.path().join("hdr").join("redis_x.publish.hgrm").exists());
    }
}
