//! Live metrics: the harness's figures in Prometheus text format while a run is going
//! (`--metrics-addr`, the scenario's `metrics_addr`), served by `metrics-exporter-prometheus`'s
//! HTTP listener. It is a report sink: it learns what the aggregator closed once per interval
//! (`on_interval`) and the load's live figures (`on_live`), never a message on the hot path.
//! Every series is listed in [`SERIES`] and documented in docs/monitoring.md.

use std::collections::HashMap;
use std::net::SocketAddr;

use metrics::{Counter, Gauge, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::MonitoringError;
use crate::metrics::aggregator::IntervalRow;
use crate::metrics::stats::Stats;
use crate::report::{BackendStart, LiveFigures, ReportError, Sink, SummaryRow};
use crate::scenario::timeline::Phase;
use crate::scenario::FaultAction;

/// What kind of Prometheus series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesKind {
    Counter,
    Gauge,
}

/// One series brokerbench exposes.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub kind: SeriesKind,
    /// Labels besides `backend`.
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Series {
    Series {
        name,
        kind: SeriesKind::Counter,
        labels: &[],
        help,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Series {
    Series {
        name,
        kind: SeriesKind::Gauge,
        labels,
        help,
    }
}

pub const SENT: &str = "brokerbench_sent_total";
pub const CONFIRMED: &str = "brokerbench_confirmed_total";
pub const FAILED: &str = "brokerbench_failed_total";
pub const RECEIVED: &str = "brokerbench_received_total";
pub const DUPLICATES: &str = "brokerbench_duplicates_total";
pub const UNSENT: &str = "brokerbench_unsent_total";
pub const ERRORS: &str = "brokerbench_errors_total";
pub const AWAITING: &str = "brokerbench_awaiting_messages";
pub const LOST: &str = "brokerbench_lost_messages";
pub const UNDELIVERED: &str = "brokerbench_undelivered_messages";
pub const PUBLISH_LATENCY: &str = "brokerbench_publish_latency_seconds";
pub const E2E_LATENCY: &str = "brokerbench_e2e_latency_seconds";
pub const PHASE: &str = "brokerbench_phase";
pub const FAULTS_ACTIVE: &str = "brokerbench_faults_active";

/// Every series, with the help text its `# HELP` line carries (docs/monitoring.md lists the
/// same; a test checks both against a real scrape).
pub const SERIES: [Series; 14] = [
    counter(SENT, "Messages handed to the client, over every phase of the backend's load."),
    counter(CONFIRMED, "Messages the broker confirmed."),
    counter(FAILED, "Publishes that failed or whose outcome is unknown (nack, refusal, timeout, lost connection)."),
    counter(RECEIVED, "Distinct messages received for the first time."),
    counter(DUPLICATES, "Deliveries of a message already received."),
    counter(UNSENT, "Messages due but never handed to the client (counted when the run stops the producers)."),
    counter(ERRORS, "Errors the producers and consumers met."),
    gauge(AWAITING, &[], "Messages confirmed (without confirms: sent and not failed) and not received yet; whatever of it is not received by the end of the drain is lost or undelivered."),
    gauge(LOST, &[], "Confirmed, never received and no longer held by the broker: set once the backend's drain is over."),
    gauge(UNDELIVERED, &[], "Confirmed, not received, but the broker still held messages for the consumers when the drain stopped: set once the backend's drain is over."),
    gauge(PUBLISH_LATENCY, &["quantile"], "Publish latency (intended send time to confirm) over the last interval, in seconds; quantile 1 is the maximum; NaN when nothing was confirmed."),
    gauge(E2E_LATENCY, &["quantile"], "End-to-end latency (intended send time to receipt) over the last interval, in seconds; quantile 1 is the maximum; NaN when nothing was received."),
    gauge(PHASE, &["phase"], "1 for the load's current phase (warmup, measure, drain), 0 for the others; all 0 once the backend's load is over."),
    gauge(FAULTS_ACTIVE, &["action"], "Faults in progress on this backend's cluster, by action (kill, stop, pause, kill-consumer): from injection until the node is back (or the fault's window closes)."),
];

/// The quantiles of the latency gauges, as labels, and the interval row's figure for each.
const QUANTILES: [&str; 3] = ["0.5", "0.99", "1"];

/// The exporter of one run: its recorder, and the task serving `/metrics` on `addr`.
pub struct LiveExporter {
    recorder: std::sync::Arc<metrics_exporter_prometheus::PrometheusRecorder>,
    server: tokio::task::JoinHandle<()>,
    pub addr: SocketAddr,
}

impl LiveExporter {
    /// Listen on `addr` (on the current tokio runtime). `field` names where the address came
    /// from (`--metrics-addr`, or the scenario file's field) for the error. (The crate's
    /// `build` also spawns its registry's upkeep task, a sleeping loop per exporter; a run
    /// builds one.)
    pub fn start(addr: SocketAddr, field: &str) -> Result<Self, MonitoringError> {
        let (recorder, exporter) = PrometheusBuilder::new()
            .with_http_listener(addr)
            .build()
            .map_err(|e| MonitoringError::Listen {
                addr,
                field: field.to_string(),
                message: e.to_string(),
            })?;
        for s in &SERIES {
            let name = metrics::KeyName::from_const_str(s.name);
            let help = SharedString::const_str(s.help);
            match s.kind {
                SeriesKind::Counter => recorder.describe_counter(name, Some(Unit::Count), help),
                SeriesKind::Gauge => recorder.describe_gauge(name, None, help),
            }
        }
        let server = tokio::spawn(async move {
            let _ = exporter.await;
        });
        Ok(LiveExporter {
            recorder: std::sync::Arc::new(recorder),
            server,
            addr,
        })
    }

    /// The exposition as a scrape would see it (for tests).
    pub fn render(&self) -> String {
        self.handle().render()
    }

    fn handle(&self) -> PrometheusHandle {
        self.recorder.handle()
    }

    /// A sink that feeds this exporter.
    pub fn sink(&self) -> LiveSink {
        LiveSink {
            recorder: self.recorder.clone(),
            backend: String::new(),
            totals: Totals::default(),
            handles: HashMap::new(),
        }
    }
}

impl Drop for LiveExporter {
    /// The listener closes with its task.
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The counters' running totals for the backend in progress.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    sent: u64,
    confirmed: u64,
    failed: u64,
    received: u64,
    duplicates: u64,
    unsent: u64,
    errors: u64,
}

enum Handle {
    Counter(Counter),
    Gauge(Gauge),
}

/// The sink that sets the series once per interval.
pub struct LiveSink {
    recorder: std::sync::Arc<metrics_exporter_prometheus::PrometheusRecorder>,
    backend: String,
    totals: Totals,
    /// Registered series by (name, extra label value), for the backend in progress.
    handles: HashMap<(&'static str, &'static str), Handle>,
}

const META: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

impl LiveSink {
    fn key(&self, name: &'static str, extra: Option<(&'static str, &'static str)>) -> Key {
        let mut labels = vec![Label::new("backend", self.backend.clone())];
        if let Some((k, v)) = extra {
            labels.push(Label::new(k, v));
        }
        Key::from_parts(name, labels)
    }

    fn counter(&mut self, name: &'static str, value: u64) {
        let key = self.key(name, None);
        let h = self
            .handles
            .entry((name, ""))
            .or_insert_with(|| Handle::Counter(self.recorder.register_counter(&key, &META)));
        if let Handle::Counter(c) = h {
            c.absolute(value);
        }
    }

    fn gauge(&mut self, name: &'static str, extra: Option<(&'static str, &'static str)>, v: f64) {
        let key = self.key(name, extra);
        let h = self
            .handles
            .entry((name, extra.map(|e| e.1).unwrap_or("")))
            .or_insert_with(|| Handle::Gauge(self.recorder.register_gauge(&key, &META)));
        if let Handle::Gauge(g) = h {
            g.set(v);
        }
    }

    fn phase(&mut self, current: Option<Phase>) {
        for p in [Phase::Warmup, Phase::Measure, Phase::Drain] {
            let on = if Some(p) == current { 1.0 } else { 0.0 };
            self.gauge(PHASE, Some(("phase", p.as_str())), on);
        }
    }
}

/// Milliseconds (None: no sample) to seconds (NaN).
fn seconds(ms: Option<f64>) -> f64 {
    ms.map(|v| v / 1000.0).unwrap_or(f64::NAN)
}

impl Sink for LiveSink {
    fn on_backend_start(&mut self, start: &BackendStart) -> Result<(), ReportError> {
        self.backend = start.label.clone();
        self.totals = Totals::default();
        self.handles.clear();
        for name in [
            SENT, CONFIRMED, FAILED, RECEIVED, DUPLICATES, UNSENT, ERRORS,
        ] {
            self.counter(name, 0);
        }
        self.gauge(AWAITING, None, 0.0);
        for a in FaultAction::ALL {
            self.gauge(FAULTS_ACTIVE, Some(("action", a.as_str())), 0.0);
        }
        self.phase(Some(Phase::Warmup));
        Ok(())
    }

    fn on_interval(&mut self, row: &IntervalRow, _interval: &Stats) -> Result<(), ReportError> {
        let t = &mut self.totals;
        t.sent += row.sent;
        t.confirmed += row.confirmed;
        t.failed += row.failed;
        t.received += row.received;
        t.duplicates += row.duplicates;
        t.unsent += row.unsent;
        t.errors += row.errors;
        let t = self.totals;
        for (name, v) in [
            (SENT, t.sent),
            (CONFIRMED, t.confirmed),
            (FAILED, t.failed),
            (RECEIVED, t.received),
            (DUPLICATES, t.duplicates),
            (UNSENT, t.unsent),
            (ERRORS, t.errors),
        ] {
            self.counter(name, v);
        }
        let publish = [row.publish_p50_ms, row.publish_p99_ms, row.publish_max_ms];
        let e2e = [row.e2e_p50_ms, row.e2e_p99_ms, row.e2e_max_ms];
        for (q, (p, e)) in QUANTILES.into_iter().zip(publish.into_iter().zip(e2e)) {
            self.gauge(PUBLISH_LATENCY, Some(("quantile", q)), seconds(p));
            self.gauge(E2E_LATENCY, Some(("quantile", q)), seconds(e));
        }
        self.phase(Some(row.phase));
        Ok(())
    }

    fn on_live(&mut self, live: &LiveFigures) -> Result<(), ReportError> {
        self.gauge(AWAITING, None, live.awaiting as f64);
        for (action, n) in live.faults_active {
            self.gauge(FAULTS_ACTIVE, Some(("action", action.as_str())), *n as f64);
        }
        Ok(())
    }

    fn on_backend_end(&mut self, summary: &SummaryRow) -> Result<(), ReportError> {
        if summary.backend != self.backend {
            return Ok(());
        }
        self.gauge(LOST, None, summary.lost as f64);
        self.gauge(UNDELIVERED, None, summary.undelivered as f64);
        self.phase(None);
        for a in FaultAction::ALL {
            self.gauge(FAULTS_ACTIVE, Some(("action", a.as_str())), 0.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_interval_sets_counters_quantiles_and_the_phase() {
        // Port 0: the exporter's listener takes any free port; the render is what it serves.
        let exporter =
            LiveExporter::start("127.0.0.1:0".parse().expect("addr"), "test").expect("exporter");
        let mut sink = exporter.sink();
        let start = BackendStart {
            label: "redis-streams".into(),
            backend_type: "redis-streams".into(),
            started: std::time::SystemTime::now(),
            warmup_s: 1.0,
            duration_s: 2.0,
        };
        sink.on_backend_start(&start).expect("start");
        let row = IntervalRow {
            backend: "redis-streams".into(),
            phase: Phase::Measure,
            sent: 1000,
            confirmed: 990,
            received: 980,
            publish_p50_ms: Some(2.0),
            publish_p99_ms: Some(8.0),
            publish_max_ms: Some(9.5),
            ..Default::default()
        };
        sink.on_interval(&row, &Stats::default()).expect("interval");
        sink.on_interval(&row, &Stats::default()).expect("interval");
        let faults = [(FaultAction::Kill, 1u32)];
        sink.on_live(&LiveFigures {
            awaiting: 12,
            faults_active: &faults,
        })
        .expect("live");
        let text = exporter.render();
        for line in [
            "brokerbench_sent_total{backend=\"redis-streams\"} 2000",
            "brokerbench_received_total{backend=\"redis-streams\"} 1960",
            "brokerbench_publish_latency_seconds{backend=\"redis-streams\",quantile=\"0.99\"} 0.008",
            "brokerbench_e2e_latency_seconds{backend=\"redis-streams\",quantile=\"0.5\"} NaN",
            "brokerbench_phase{backend=\"redis-streams\",phase=\"measure\"} 1",
            "brokerbench_phase{backend=\"redis-streams\",phase=\"warmup\"} 0",
            "brokerbench_awaiting_messages{backend=\"redis-streams\"} 12",
            "brokerbench_faults_active{backend=\"redis-streams\",action=\"kill\"} 1",
            "# HELP brokerbench_sent_total Messages handed to the client",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("brokerbench_lost_messages{"),
            "lost is set at the end only"
        );
    }

    #[test]
    fn every_series_is_documented() {
        let docs = include_str!("../../docs/monitoring.md");
        for s in &SERIES {
            assert!(
                docs.contains(&format!("| `{}` |", s.name)),
                "{} is not in docs/monitoring.md",
                s.name
            );
        }
    }

    #[test]
    fn every_series_is_prefixed_and_unique() {
        let mut names: Vec<&str> = SERIES.iter().map(|s| s.name).collect();
        assert!(names.iter().all(|n| n.starts_with("brokerbench_")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SERIES.len());
    }
}
