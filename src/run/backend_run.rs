//! One backend's run: setup -> warm-up -> measure -> drain -> teardown, with one aggregator
//! owning the figures and one timeline holding the phases.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use crate::backend::{self, Backend, Destination, Endpoints};
use crate::clock::{Clock, MonotonicClock};
use crate::cluster::process::OwnedProcess;
use crate::fault::analysis::{min_gap_ns, row as fault_row, Bounds};
use crate::fault::{FaultRow, FaultRunner, NodeControl};
use crate::load::consumer::{run_consumer, ConsumerPlan, KillSwitch};
use crate::load::producer::{run_producer, ProducerPlan};
use crate::load::rate::Schedule;
use crate::load::{sleep_until_ns, LoadContext};
use crate::metrics::activity::Activity;
use crate::metrics::aggregator::Aggregator;
use crate::metrics::cpu::CpuSampler;
use crate::metrics::ledger::Ledger;
use crate::metrics::sampler::{run_samplers, Samples};
use crate::metrics::stats::Recorder;
use crate::report::meta::{utc_now, BackendMeta};
use crate::report::{
    each, BackendStart, DestinationSecond, LostFate, LostMessage, Sink, SummaryRow,
};
use crate::scenario::timeline::{EventKind, Timeline};
use crate::scenario::{BackendSpec, ClusterKind, FaultSpec, Guarantee, Workload};

/// A random 64-bit run id (std's RandomState is seeded from the OS).
pub fn random_id() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::monotonic_ns());
    h.write_u32(std::process::id());
    h.finish()
}

pub struct BackendOutcome {
    pub summary: SummaryRow,
    pub meta: BackendMeta,
    pub interrupted: bool,
}

const NS: u64 = 1_000_000_000;
/// A fault row's publish availability on a backend without confirms.
pub const NO_CONFIRMS: &str = "cannot be measured (no confirms)";
/// lost.csv lists at most this many lost messages per backend (the count is in summary.csv).
const MAX_LOST_LISTED: usize = 100_000;

/// The cluster a backend runs on, as its summary row and metadata name it.
#[derive(Debug, Clone, Default)]
pub struct OnCluster {
    pub name: String,
    pub kind: Option<ClusterKind>,
    /// As the cluster's nodes reported it (None: unknown; the backend's own reading is used).
    pub version: Option<String>,
}

impl OnCluster {
    /// Name the cluster and its broker version in `summary`; `backend_version` is what the
    /// backend read itself, used when the cluster's is unknown.
    fn tag(&self, summary: &mut SummaryRow, backend_version: Option<&String>) {
        summary.cluster = self.name.clone();
        summary.broker = self.kind;
        summary.broker_version = self
            .version
            .as_ref()
            .or(backend_version)
            .cloned()
            .unwrap_or_default();
    }
}

/// Run one backend with the workload. Broker faults are data: a backend that cannot even be
/// set up yields a summary row with status "error: ...".
#[allow(clippy::too_many_arguments)]
pub async fn run_backend(
    index: usize,
    repetition: Repetition,
    spec: &BackendSpec,
    cluster: &OnCluster,
    guarantee: Guarantee,
    scenario_workload: &Workload,
    faults: &[FaultSpec],
    endpoints: &Endpoints,
    mut control: Option<&mut (dyn NodeControl + '_)>,
    sinks: &mut [Box<dyn Sink>],
    cancel: &mut watch::Receiver<bool>,
) -> BackendOutcome {
    // Faults name the backend's own label; its rows carry the repetition's.
    let series = spec.label();
    let label = repetition.label(&series);
    let kind = spec.type_name();
    let workload = &spec.workload(scenario_workload);
    let mut meta = BackendMeta {
        label: label.clone(),
        backend_type: kind.to_string(),
        status: String::new(),
        cluster: Some(cluster.name.clone()).filter(|n| !n.is_empty()),
        broker_version: cluster.version.clone(),
        settings: serde_json::to_value(spec).unwrap_or(serde_json::Value::Null),
        topology: None,
        topology_after: None,
        started_utc: Some(utc_now()),
        ended_utc: None,
    };
    let run_id = random_id();
    let prefix = format!("bb-{:08x}-{index}", run_id as u32);
    let prepared = async {
        let backend = backend::build(spec, endpoints).await?;
        let version = backend.version().await;
        let dests = backend.setup(&prefix, workload.destinations).await?;
        Ok::<_, backend::BackendError>((backend, version, dests))
    };
    let (backend, dests) = match prepared.await {
        Ok((backend, version, dests)) => {
            meta.broker_version = meta.broker_version.take().or(version);
            (backend, dests)
        }
        Err(e) => {
            let status = format!("error: {e}");
            meta.status = status.clone();
            meta.ended_utc = Some(utc_now());
            let mut summary = SummaryRow::failed(&label, kind, status);
            summary.guarantee = guarantee.label();
            cluster.tag(&mut summary, None);
            repetition.mark(&mut summary, &series);
            let _ = each(sinks, |s| s.on_backend_end(&summary));
            return BackendOutcome {
                summary,
                meta,
                interrupted: false,
            };
        }
    };
    meta.topology = backend.topology(&dests).await.ok();
    let mut mine: Vec<(usize, FaultSpec)> = faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.applies_to(&series, kind, spec.cluster()))
        .map(|(i, f)| (i, f.clone()))
        .collect();
    mine.sort_by_key(|(_, f)| f.at);
    let node_faults = mine.iter().any(|(_, f)| f.target.is_node());
    // brokerbench started the clusters (and will stop them) when it controls their nodes.
    let own_clusters = control.is_some();
    let LoadOutcome {
        mut summary,
        interrupted,
        ..
    } = run_load(
        run_id,
        &label,
        kind,
        backend.clone(),
        &dests,
        workload,
        mine,
        control.as_deref_mut(),
        sinks,
        cancel,
    )
    .await;
    summary.guarantee = guarantee.label();
    cluster.tag(&mut summary, meta.broker_version.as_ref());
    repetition.mark(&mut summary, &series);
    // Bring back every node a fault left down, so the next backend finds the cluster whole.
    // (Not after Ctrl-C: the clusters are about to be stopped.)
    if let Some(c) = control.filter(|_| node_faults && !interrupted) {
        match c.heal().await {
            Ok(restarted) if !restarted.is_empty() => {
                report(each(sinks, |s| {
                    s.on_notice(&format!(
                        "restarted {} after the faults",
                        restarted.join(", ")
                    ))
                }));
            }
            Ok(_) => {}
            Err(e) => {
                summary.status = format!(
                    "{}; the cluster did not heal after the faults: {e}",
                    summary.status
                );
            }
        }
    }
    // After Ctrl-C, clusters of our own are about to be stopped, maybe with a node still down
    // (deleting a quorum queue then waits for its members): skip what would only delay that.
    if !(interrupted && own_clusters) {
        meta.topology_after = backend.topology(&dests).await.ok();
        if let Err(e) = backend.teardown(&dests).await {
            crate::errln!("[{label}] teardown: {e}");
        }
    }
    meta.status = summary.status.clone();
    meta.ended_utc = Some(utc_now());
    let _ = each(sinks, |s| s.on_backend_end(&summary));
    BackendOutcome {
        summary,
        meta,
        interrupted,
    }
}

/// Which repetition of a backend this is (`workload.repeat`, `run --repeat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repetition {
    /// 1-based.
    pub index: usize,
    pub of: usize,
}

impl Repetition {
    pub const ONCE: Repetition = Repetition { index: 1, of: 1 };

    /// The label a repetition's rows carry in every results file: the backend's own when it
    /// runs once, `<label>#<n>` when it is repeated.
    pub fn label(&self, series: &str) -> String {
        if self.of <= 1 {
            series.to_string()
        } else {
            format!("{series}#{}", self.index)
        }
    }

    fn mark(&self, summary: &mut SummaryRow, series: &str) {
        summary.series = series.to_string();
        summary.repetition = self.index;
    }
}

/// What `run_load` gives back.
#[derive(Debug)]
pub struct LoadOutcome {
    pub summary: SummaryRow,
    /// Whether the run was cancelled (Ctrl-C) before its end.
    pub interrupted: bool,
    /// The ledger's heap at the end, in bytes.
    pub ledger_bytes: u64,
}

/// The load itself on destinations already set up: producers, consumers, the aggregator loop,
/// the drain.
#[allow(clippy::too_many_arguments)]
pub async fn run_load(
    run_id: u64,
    label: &str,
    kind: &str,
    backend: Arc<dyn Backend>,
    dests: &[Destination],
    w: &Workload,
    faults: Vec<(usize, FaultSpec)>,
    control: Option<&mut (dyn NodeControl + '_)>,
    sinks: &mut [Box<dyn Sink>],
    cancel: &mut watch::Receiver<bool>,
) -> LoadOutcome {
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    let ledger = Arc::new(Ledger::new(w.producers(), backend.confirms()));
    let origin = clock.now_ns() + 100_000_000;
    let warm_end = origin + w.warmup.as_nanos() as u64;
    let end = warm_end + w.duration.as_nanos() as u64;
    let drain_deadline = end + w.drain_timeout.as_nanos() as u64;
    let activity = Arc::new(Activity::new(
        origin,
        drain_deadline - origin + 10 * NS,
        dests.len(),
    ));
    let ctx = Arc::new(LoadContext {
        run_id,
        backend: backend.clone(),
        ledger: ledger.clone(),
        clock: clock.clone(),
        message_size: w.message_size,
        activity: activity.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut recorders = Vec::new();
    let mut tasks = Vec::new();
    let mut switches = Vec::new();
    let live_producers = Arc::new(AtomicUsize::new(w.producers()));

    // Consumers first, so that they are subscribed when the first message arrives.
    for (i, d) in dests.iter().enumerate() {
        for c in 0..w.consumers_per_destination {
            let rec = Recorder::new();
            recorders.push(rec.clone());
            let kill = Arc::new(KillSwitch::default());
            switches.push((i, kill.clone()));
            let plan = ConsumerPlan {
                id: i * w.consumers_per_destination + c,
                dest: d.clone(),
                process_delay: w.consumer_delay,
                kill,
            };
            tasks.push(tokio::spawn(run_consumer(
                ctx.clone(),
                plan,
                rec,
                stop_rx.clone(),
            )));
        }
    }
    let producers = w.producers();
    for (i, d) in dests.iter().enumerate() {
        for p in 0..w.producers_per_destination {
            let id = i * w.producers_per_destination + p;
            let schedule = match w.rate_per_producer() {
                // Stagger producers over one interval so their sends do not line up.
                Some(r) => Schedule::fixed(
                    origin + ((1e9 / r) * id as f64 / producers as f64) as u64,
                    r,
                ),
                None => Schedule::max(origin),
            };
            let plan = ProducerPlan {
                id,
                dest: d.clone(),
                schedule,
                // The run's message budget, shared evenly (the first ones take the remainder).
                limit: w
                    .messages
                    .map(|m| m / producers as u64 + u64::from((id as u64) < m % producers as u64)),
                end_ns: end,
                confirm_deadline_ns: drain_deadline,
                max_in_flight: w.max_in_flight,
                confirm_timeout: w.op_timeout,
                live: Some(live_producers.clone()),
                // Connections stay open through the drain; closed when the run stops.
                linger: true,
            };
            let rec = Recorder::new();
            recorders.push(rec.clone());
            let (ctx, stop) = (ctx.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(async move {
                run_producer(ctx, plan, rec, stop).await;
            }));
        }
    }

    let mut agg = Aggregator::new(label, origin, recorders);
    // The processes of the nodes this run controls (none for an external cluster), and the
    // harness's own.
    let processes: Vec<(String, OwnedProcess)> = control
        .as_deref()
        .map(|c| {
            c.node_names()
                .into_iter()
                .filter_map(|n| c.process_of(&n).cloned().map(|p| (n, p)))
                .collect()
        })
        .unwrap_or_default();
    let samples = Arc::new(parking_lot::Mutex::new(Samples::default()));
    let sampler = tokio::spawn(run_samplers(
        CpuSampler::new(label, processes),
        backend.clone(),
        dests.to_vec(),
        clock.clone(),
        origin,
        samples.clone(),
        stop_rx.clone(),
    ));
    let mut timeline = Timeline::default();
    let secs = |ns: u64| ns.saturating_sub(origin) as f64 / 1e9;
    let start = BackendStart {
        label: label.to_string(),
        backend_type: kind.to_string(),
        started: SystemTime::now(),
        warmup_s: w.warmup.as_secs_f64(),
        duration_s: w.duration.as_secs_f64(),
    };
    report(each(sinks, |s| s.on_backend_start(&start)));
    let mut phase = if warm_end > origin {
        "warmup"
    } else {
        "measure"
    };
    let mut open = timeline.open(label, EventKind::Phase, phase, 0.0);
    let mut last_tick = origin;
    let mut interrupted = false;
    let (notice_tx, mut notices) = mpsc::unbounded_channel::<String>();
    let runner = FaultRunner {
        faults,
        backend: backend.clone(),
        dests: dests.to_vec(),
        clock: clock.clone(),
        measure_start_ns: warm_end,
        measure_end_ns: end,
        switches,
        ledger: ledger.clone(),
        notices: notice_tx,
        cancel: cancel.clone(),
    };
    let fault_stop = stop_rx.clone();
    let load = async {
        sleep_until_ns(clock.as_ref(), origin).await;
        loop {
            let now = clock.now_ns();
            // The next interval ends at the next whole second or phase boundary.
            let next_second = last_tick + NS - (last_tick - origin) % NS;
            let boundary = [warm_end, end]
                .into_iter()
                .filter(|&b| b > last_tick)
                .min()
                .unwrap_or(u64::MAX);
            let tick_at = next_second.min(boundary);
            // During the drain (or with a message budget), look at the ledger often so the
            // run ends as soon as it can.
            let wake = if phase == "drain" || w.messages.is_some() {
                tick_at.min(now + 50_000_000)
            } else {
                tick_at
            };
            tokio::select! {
                _ = sleep_until_ns(clock.as_ref(), wake) => {}
                _ = cancel.changed() => interrupted = true,
                Some(line) = notices.recv() => report(each(sinks, |s| s.on_notice(&line))),
            }
            let now = clock.now_ns();
            // With a message budget, the run ends as soon as it is spent and received.
            let drained_now = (phase == "drain" || w.messages.is_some())
                && live_producers.load(Ordering::SeqCst) == 0
                && ledger.awaiting() == 0;
            let out_of_time = phase == "drain" && now >= drain_deadline;
            if now >= tick_at || interrupted || drained_now || out_of_time {
                let (row, stats) = agg.tick(now, phase);
                report(each(sinks, |s| s.on_interval(row, stats)));
                report_samples(sinks, samples.lock().take());
                last_tick = now;
                let next_phase = if now >= end {
                    "drain"
                } else if now >= warm_end {
                    "measure"
                } else {
                    "warmup"
                };
                if next_phase != phase {
                    timeline.close(open, secs(now));
                    report(each(sinks, |s| s.on_event(&timeline.events[open])));
                    open = timeline.open(label, EventKind::Phase, next_phase, secs(now));
                    phase = next_phase;
                }
            }
            if interrupted || drained_now || out_of_time {
                break;
            }
        }
        // Stop consumers (and producers, if interrupted) and the fault runner.
        let _ = stop_tx.send(true);
    };
    let ((), observations) = tokio::join!(load, runner.run(control, fault_stop));
    while let Ok(line) = notices.try_recv() {
        report(each(sinks, |s| s.on_notice(&line)));
    }
    // Collect the load tasks' last figures.
    for t in tasks {
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let abort = sampler.abort_handle();
    if tokio::time::timeout(Duration::from_secs(3), sampler)
        .await
        .is_err()
    {
        abort.abort();
    }
    report_samples(sinks, samples.lock().take());
    // Every fault on the timeline, and its recovery figures.
    for o in &observations {
        let what = format!(
            "{} {}",
            o.spec.action.as_str(),
            o.node.clone().unwrap_or_else(|| o.spec.target.to_string())
        );
        let i = timeline.open(label, EventKind::Fault, &what, secs(o.at_ns));
        timeline.close(i, secs(o.end_ns.unwrap_or(o.at_ns)));
        report(each(sinks, |s| s.on_event(&timeline.events[i])));
        if let Some(r) = o.restart_ns {
            let verb = if o.spec.action == crate::scenario::faults::FaultAction::Pause {
                "resume"
            } else {
                "restart"
            };
            let name = format!("{verb} {}", o.node.clone().unwrap_or_default());
            let i = timeline.open(label, EventKind::Fault, &name, secs(r));
            timeline.close(i, secs(o.rejoined_ns.unwrap_or(r)));
            report(each(sinks, |s| s.on_event(&timeline.events[i])));
        }
    }
    let bounds = Bounds {
        measure_end_ns: end,
        load_end_ns: clock.now_ns().min(drain_deadline),
        min_gap_ns: min_gap_ns(w),
    };
    let confirms = backend.confirms();
    let rows: Vec<FaultRow> = observations
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let next = observations.get(k + 1).map(|n| n.at_ns);
            let mut row = fault_row(label, o, next, dests, &activity, bounds);
            if !confirms {
                // Without confirms a send is all a producer learns: publish availability cannot
                // be measured, and a 0 would read as "no downtime".
                row.publish_unavailable_s = None;
                row.publish_recovered = NO_CONFIRMS.to_string();
            }
            row
        })
        .collect();
    if !rows.is_empty() {
        report(each(sinks, |s| s.on_faults(&rows)));
    }
    let per_second = destination_seconds(label, dests, &activity, bounds.load_end_ns);
    report(each(sinks, |s| s.on_destinations(&per_second)));
    let now = clock.now_ns();
    let (row, stats) = agg.tick(now, phase);
    report(each(sinks, |s| s.on_interval(row, stats)));
    timeline.close(open, secs(now));
    report(each(sinks, |s| s.on_event(&timeline.events[open])));
    let drained = ledger.awaiting() == 0;
    // Messages confirmed and not received may still be in the broker (a consumer behind): ask
    // it what it holds, so that only what it no longer holds counts as lost.
    let held = if drained {
        Some(0)
    } else {
        held_by_broker(backend.as_ref(), dests, sinks).await
    };
    let ledger_summary = ledger.summary(agg.all().deliveries(), held);
    let fate = if ledger_summary.undelivered > 0 {
        LostFate::LostOrUndelivered
    } else {
        LostFate::Lost
    };
    let lost: Vec<LostMessage> = ledger
        .lost_list(MAX_LOST_LISTED)
        .into_iter()
        .map(|(producer, seq)| LostMessage {
            backend: label.to_string(),
            producer,
            seq,
            fate,
        })
        .collect();
    if !lost.is_empty() {
        report(each(sinks, |s| s.on_lost(&lost)));
    }
    let status = if interrupted { "interrupted" } else { "ok" };
    LoadOutcome {
        summary: SummaryRow::from_run(
            label,
            kind,
            status.to_string(),
            w,
            &agg,
            &ledger_summary,
            drained,
        ),
        interrupted,
        ledger_bytes: ledger.heap_bytes(),
    }
}

/// What the broker still holds for the consumers (ready + unacked), asked once when the drain
/// stops with messages outstanding; `None` when the backend cannot tell or does not answer.
async fn held_by_broker(
    backend: &dyn Backend,
    dests: &[Destination],
    sinks: &mut [Box<dyn Sink>],
) -> Option<u64> {
    let asked = tokio::time::timeout(Duration::from_secs(10), backend.backlog(dests)).await;
    let answer = match asked {
        Ok(Ok(b)) => return b.map(|b| b.total()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 10 s".to_string(),
    };
    let line = format!(
        "could not ask the broker what it still holds ({answer}): messages not received count as lost"
    );
    report(each(sinks, |s| s.on_notice(&line)));
    None
}

/// Hand sampled CPU and replica lag rows to the sinks.
fn report_samples(sinks: &mut [Box<dyn Sink>], samples: Samples) {
    if !samples.cpu.is_empty() {
        report(each(sinks, |s| s.on_cpu(&samples.cpu)));
    }
    if !samples.lag.is_empty() {
        report(each(sinks, |s| s.on_replica_lag(&samples.lag)));
    }
}

/// destinations.csv: per destination and second, what the activity slots counted.
fn destination_seconds(
    label: &str,
    dests: &[Destination],
    activity: &Activity,
    until_ns: u64,
) -> Vec<DestinationSecond> {
    let mut rows = Vec::new();
    for d in dests {
        for (second, [confirmed, publish_failed, received, consume_failed]) in activity
            .per_second(d.index, until_ns)
            .into_iter()
            .enumerate()
        {
            rows.push(DestinationSecond {
                backend: label.to_string(),
                destination: d.name.clone(),
                second: second as u64,
                confirmed,
                publish_failed,
                received,
                consume_failed,
            });
        }
    }
    rows
}

/// Report-sink errors do not stop a run's load; they are printed.
fn report(r: Result<(), crate::report::ReportError>) {
    if let Err(e) = r {
        crate::errln!("writing results: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{MemoryBackend, MemoryFaults};
    use crate::scenario::Rate;

    fn workload(rate: f64, secs: u64) -> Workload {
        Workload {
            message_size: 128,
            destinations: 2,
            producers_per_destination: 2,
            consumers_per_destination: 1,
            producers_total: None,
            consumers_total: None,
            repeat: 1,
            rate: Rate::PerSecond(rate),
            max_in_flight: 64,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(secs),
            drain_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(5),
            consumer_delay: Duration::ZERO,
            messages: None,
        }
    }

    /// A sink that keeps the fault rows and the lost messages.
    #[derive(Default, Clone)]
    struct Keep {
        faults: Arc<parking_lot::Mutex<Vec<FaultRow>>>,
        lost: Arc<parking_lot::Mutex<Vec<LostMessage>>>,
    }
    impl Sink for Keep {
        fn on_faults(&mut self, rows: &[FaultRow]) -> Result<(), crate::report::ReportError> {
            self.faults.lock().extend_from_slice(rows);
            Ok(())
        }
        fn on_lost(&mut self, rows: &[LostMessage]) -> Result<(), crate::report::ReportError> {
            self.lost.lock().extend_from_slice(rows);
            Ok(())
        }
    }

    async fn run_with(
        backend: Arc<MemoryBackend>,
        w: &Workload,
        faults: Vec<(usize, FaultSpec)>,
    ) -> (SummaryRow, Keep) {
        let dyn_backend: Arc<dyn Backend> = backend;
        let dests = dyn_backend.setup("t", w.destinations).await.expect("setup");
        let (_tx, mut cancel) = watch::channel(false);
        let keep = Keep::default();
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(keep.clone())];
        let LoadOutcome {
            summary,
            interrupted,
            ..
        } = run_load(
            random_id(),
            "memory",
            "memory",
            dyn_backend,
            &dests,
            w,
            faults,
            None,
            &mut sinks,
            &mut cancel,
        )
        .await;
        assert!(!interrupted);
        (summary, keep)
    }

    async fn run(faults: MemoryFaults, w: &Workload) -> SummaryRow {
        run_with(Arc::new(MemoryBackend::new(faults)), w, Vec::new())
            .await
            .0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fault_free_run_meets_its_rate_and_accounts_for_everything() {
        let w = workload(2000.0, 2);
        let s = run(MemoryFaults::default(), &w).await;
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        assert_eq!(
            (s.sent, s.confirmed, s.received, s.lost, s.duplicates),
            (5000, 5000, 5000, 0, 0)
        );
        assert!(s.drained);
        assert!(
            (s.sent_per_s - 2000.0).abs() < 200.0,
            "sent {}/s",
            s.sent_per_s
        );
        let (p50, p99, max) = (
            s.e2e_p50_ms.unwrap_or(-1.0),
            s.e2e_p99_ms.unwrap_or(-1.0),
            s.e2e_max_ms.unwrap_or(-1.0),
        );
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{p50} {p99} {max}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_injected_fault_is_found_and_nothing_else() {
        // One producer per destination, so that a reordering is an out-of-order receipt.
        let mut w = workload(1500.0, 2);
        w.producers_per_destination = 1;
        w.drain_timeout = Duration::from_secs(2);
        let backend = Arc::new(MemoryBackend::new(MemoryFaults {
            drop_every: Some(97),
            duplicate_every: Some(89),
            nack_every: Some(331),
            reorder_every: Some(13),
            lose_confirm_every: Some(101),
            ..MemoryFaults::default()
        }));
        let (s, keep) = run_with(backend.clone(), &w, Vec::new()).await;
        let truth = backend.injected();
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        // Lost: exactly the dropped messages, by identity.
        let mut lost: Vec<(u32, u64)> = keep
            .lost
            .lock()
            .iter()
            .map(|l| (l.producer, l.seq))
            .collect();
        let mut dropped = truth.dropped.clone();
        lost.sort_unstable();
        dropped.sort_unstable();
        assert!(!dropped.is_empty());
        assert_eq!(lost, dropped);
        assert_eq!(s.lost, dropped.len() as u64);
        // Duplicates: every extra hand-out, no more.
        assert!(!truth.repeated.is_empty());
        assert_eq!(s.duplicates, truth.repeated.len() as u64);
        // Nacks are definite failures; lost confirms are indeterminate and were delivered.
        assert_eq!(s.failed, truth.nacked.len() as u64);
        assert_eq!(s.failed_missing, s.failed);
        assert_eq!(s.indeterminate, truth.lost_confirms.len() as u64);
        assert_eq!(s.received_indeterminate, s.indeterminate);
        assert_eq!(s.indeterminate_missing, 0);
        // Out of order: only where something was reordered.
        assert!(
            s.out_of_order > 0 && s.out_of_order <= truth.reordered,
            "{} {}",
            s.out_of_order,
            truth.reordered
        );
        assert_eq!(s.phantom, 0);
        assert_eq!(
            s.sent,
            s.confirmed + s.failed + s.indeterminate + s.unconfirmed
        );
    }

    /// Without confirms, what a producer sent last may still be on its way in the broker when
    /// the producer is done; closing then would discard it (RabbitMQ 3.10 quorum queues do).
    /// The run keeps producer connections open until it ends, so nothing is charged as lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn producers_stay_connected_until_the_run_ends() {
        let backend = Arc::new(MemoryBackend::new(MemoryFaults {
            without_confirms: true,
            enqueue_delay: Some(Duration::from_millis(300)),
            ..MemoryFaults::default()
        }));
        let (s, _) = run_with(backend.clone(), &workload(2000.0, 1), Vec::new()).await;
        let discarded = backend.injected().discarded_on_close;
        assert!(
            discarded.is_empty(),
            "{} messages discarded when their producer closed",
            discarded.len()
        );
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        assert!(s.drained);
        assert_eq!((s.sent, s.received, s.lost), (3000, 3000, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fault_free_run_reports_no_loss_and_no_duplicates() {
        let mut w = workload(1000.0, 1);
        w.producers_per_destination = 1;
        let backend = Arc::new(MemoryBackend::new(MemoryFaults::default()));
        let (s, keep) = run_with(backend, &w, Vec::new()).await;
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        assert!(keep.lost.lock().is_empty());
        assert_eq!(
            (
                s.lost,
                s.duplicates,
                s.out_of_order,
                s.failed,
                s.indeterminate
            ),
            (0, 0, 0, 0, 0)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_consumer_is_recorded_on_the_timeline_and_in_faults() {
        let mut w = workload(1000.0, 2);
        w.consumers_per_destination = 2;
        let fault: FaultSpec =
            toml::from_str("at = \"500ms\"\naction = \"kill-consumer\"\ntarget = \"consumer:1\"")
                .expect("fault");
        let backend = Arc::new(MemoryBackend::new(MemoryFaults::default()));
        let (s, keep) = run_with(backend, &w, vec![(0, fault)]).await;
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        let rows = keep.faults.lock().clone();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.action.as_str(), r.node.as_str(), r.status.as_str()),
            ("kill-consumer", "consumer:1", "ok")
        );
        // Warm-up is 0.5 s and the fault comes 0.5 s into the measured phase.
        assert!((r.at_s - 1.0).abs() < 0.3, "at {}", r.at_s);
        // The memory backend has no acks: what the killed consumer dropped is gone, and the
        // row says how much it held and that none of it came back.
        let held = r.abandoned.expect("abandoned is set");
        assert!(held > 0, "the consumer died holding a batch");
        assert_eq!(r.reprocessed, Some(0));
        assert_eq!(s.lost, held);
        // The other consumer of that destination kept receiving.
        // (A host busy enough to stall it shows a short gap: "yes", never "no".)
        assert!(
            matches!(r.consume_recovered.as_str(), "unaffected" | "yes"),
            "{}",
            r.consume_recovered
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn injected_loss_duplicates_and_nacks_are_counted() {
        let w = workload(1000.0, 1);
        let faults = MemoryFaults {
            drop_every: Some(100),
            duplicate_every: Some(50),
            nack_every: Some(250),
            confirm_delay: Duration::from_millis(1),
            ..Default::default()
        };
        let s = run(faults, &w).await;
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        assert_eq!(s.sent, 1500);
        // Messages 250, 500, ... are nacked (6); of the others every 100th is dropped (15 minus
        // the 100s that are also 250-multiples: 500, 1000, 1500) and every 50th duplicated.
        assert_eq!(s.failed, 6);
        assert_eq!(s.lost, 12);
        assert_eq!(s.confirmed, 1494);
        assert_eq!(s.received, 1482);
        assert_eq!(s.duplicates, 30 - 6 - 12);
        assert!(!s.drained, "lost messages can never drain");
    }

    /// Nacks and confirm timeouts are publishes too: their latency (intended time -> the
    /// failure) goes to publish_failed, so a failover cannot make publish latency look better.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_and_timed_out_publishes_are_recorded_at_their_elapsed_time() {
        let mut w = workload(400.0, 1);
        w.op_timeout = Duration::from_millis(200);
        let s = run(
            MemoryFaults {
                nack_every: Some(50),
                // Far past the timeout, so that a busy host cannot let a confirm win the race.
                confirm_delay: Duration::from_millis(1500),
                ..Default::default()
            },
            &w,
        )
        .await;
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        // Every confirm takes 1.5 s, past the 200 ms timeout: all are indeterminate or nacked.
        assert_eq!(s.confirmed, 0);
        assert_eq!(s.failed + s.indeterminate, s.sent);
        assert!(s.publish_p99_ms.is_none(), "no confirmed publish");
        let p50 = s
            .publish_failed_p50_ms
            .expect("failed publishes are recorded");
        assert!((200.0..1000.0).contains(&p50), "publish_failed p50 {p50}");
        assert!(s.publish_failed_max_ms.unwrap_or(0.0) >= p50);
    }

    /// A fixed-rate run whose producers cannot keep up: an open-loop harness keeps the intended
    /// times, so a stall shows up as latency, not as a lower rate; what was due and never sent
    /// is counted (unsent), its lateness recorded up to the end, and the row is overloaded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_overloaded_run_counts_unsent_messages_and_says_so() {
        // Every confirm takes 50 ms with only 8 in flight per producer: each producer can confirm
        // at most 160 msg/s, far below the 500 msg/s it is asked for.
        let mut w = workload(2000.0, 1);
        w.max_in_flight = 8;
        w.drain_timeout = Duration::from_secs(1);
        let s = run(
            MemoryFaults {
                confirm_delay: Duration::from_millis(50),
                ..Default::default()
            },
            &w,
        )
        .await;
        assert!(s.sent_per_s < 1000.0, "sent {}/s", s.sent_per_s);
        assert!(
            s.publish_p99_ms.unwrap_or(0.0) > 300.0,
            "publish p99 {:?}",
            s.publish_p99_ms
        );
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        // 1.5 s of schedule at 2000 msg/s; what was not sent by the drain deadline is unsent.
        assert_eq!(
            s.sent + s.unsent,
            3000,
            "sent {} unsent {}",
            s.sent,
            s.unsent
        );
        assert!(s.unsent > 1000, "unsent {}", s.unsent);
        assert!(s.overloaded);
        assert!(s.unsent_share > 0.3 && s.late_share > 0.3, "{s:?}");
        // The producers fell behind from the start and were stopped at the drain deadline,
        // 1 s after the schedule ended: the first unsent message was due about 2 s before.
        let max = s.send_delay_max_ms.unwrap_or(0.0);
        assert!(max >= 1500.0, "send delay max {max} ms");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_that_keeps_up_is_not_overloaded() {
        let s = run(MemoryFaults::default(), &workload(1000.0, 1)).await;
        // A busy host may delay a few sends past the threshold; none goes unsent.
        assert_eq!(s.unsent, 0);
        assert!(s.late_share < 0.05, "{s:?}");
        assert_eq!(s.late_threshold_ms, Some(100.0));
    }

    /// A consumer slower than its producers leaves messages in the broker when the drain
    /// stops: they are undelivered, not lost, and the row is not drained.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_consumer_leaves_messages_undelivered_not_lost() {
        // 500 msg/s per destination against a consumer that needs 20 ms per message (50 msg/s,
        // however large its batches: a poll takes up to 1024).
        let mut w = workload(1000.0, 3);
        w.consumer_delay = Duration::from_millis(20);
        w.drain_timeout = Duration::from_millis(500);
        let (s, keep) = run_with(
            Arc::new(MemoryBackend::new(MemoryFaults::default())),
            &w,
            Vec::new(),
        )
        .await;
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        assert!(s.undelivered > 0, "{s:?}");
        assert_eq!(s.lost, 0);
        assert!(s.backlog_known);
        assert!(!s.drained);
        assert_eq!(s.received + s.undelivered, s.confirmed);
        assert!(
            keep.lost.lock().is_empty()
                || keep
                    .lost
                    .lock()
                    .iter()
                    .all(|l| l.fate == LostFate::LostOrUndelivered)
        );
    }

    /// Messages consumed behind the harness's back are gone from the broker: exactly those
    /// are lost, each named, while what the broker still holds is undelivered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_removed_behind_the_harness_are_lost_and_named() {
        let mut w = workload(1000.0, 1);
        w.destinations = 1;
        w.consumer_delay = Duration::from_millis(3);
        w.drain_timeout = Duration::from_millis(300);
        let backend = Arc::new(MemoryBackend::new(MemoryFaults::default()));
        let thief = {
            let backend = backend.clone();
            tokio::spawn(async move {
                // Wait until the slow consumer has a backlog, then take 40 messages.
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while backend.queued("t-0") < 100 && std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                backend.steal("t-0", 40)
            })
        };
        let (s, keep) = run_with(backend.clone(), &w, Vec::new()).await;
        let mut stolen = thief.await.expect("thief");
        assert_eq!(stolen.len(), 40);
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        assert_eq!(s.lost, 40, "{s:?}");
        assert!(s.undelivered > 0);
        // lost.csv names every missing message (the stolen ones among them, with the fate
        // "lost or undelivered" since the broker still held some).
        let listed: std::collections::HashSet<(u32, u64)> = keep
            .lost
            .lock()
            .iter()
            .map(|l| (l.producer, l.seq))
            .collect();
        stolen.sort_unstable();
        assert!(stolen.iter().all(|id| listed.contains(id)));
        assert_eq!(listed.len() as u64, s.lost + s.undelivered);
    }

    /// Duplicates are not throughput: received_per_s counts distinct messages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn received_rate_counts_distinct_messages() {
        let s = run(
            MemoryFaults {
                duplicate_every: Some(2),
                ..Default::default()
            },
            &workload(1000.0, 1),
        )
        .await;
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        assert!(s.duplicates > 400);
        assert!(
            s.received_per_s < 1.1 * s.confirmed_per_s,
            "received {}/s vs confirmed {}/s",
            s.received_per_s,
            s.confirmed_per_s
        );
        assert!(s.duplicates_per_s > 400.0, "{}", s.duplicates_per_s);
    }

    /// Competing consumers of one queue reorder by nature: out_of_order counts only what one
    /// consumer received out of its producer's order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn competing_consumers_are_not_out_of_order() {
        let mut w = workload(4000.0, 1);
        w.destinations = 1;
        w.producers_per_destination = 1;
        w.consumers_per_destination = 4;
        w.consumer_delay = Duration::from_micros(200);
        let s = run(MemoryFaults::default(), &w).await;
        assert!(s.ledger_consistent, "{}", s.ledger_problems);
        assert_eq!(s.received, s.sent);
        assert_eq!(s.out_of_order, 0);
    }

    /// Without confirms a send is all a producer learns: a fault row cannot measure publish
    /// availability and must say so, never show 0 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fault_row_without_confirms_says_it_cannot_be_measured() {
        let mut w = workload(1000.0, 2);
        w.consumers_per_destination = 2;
        let fault: FaultSpec =
            toml::from_str("at = \"500ms\"\naction = \"kill-consumer\"\ntarget = \"consumer:1\"")
                .expect("fault");
        let backend = Arc::new(MemoryBackend::new(MemoryFaults {
            without_confirms: true,
            ..MemoryFaults::default()
        }));
        let (_, keep) = run_with(backend, &w, vec![(0, fault)]).await;
        let rows = keep.faults.lock().clone();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].publish_recovered, NO_CONFIRMS);
        assert_eq!(rows[0].publish_unavailable_s, None);
    }
}
