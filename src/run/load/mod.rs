//! The load on destinations already set up, in three steps: `LoadRun::spawn` starts the
//! consumers, the producers and the samplers; `LoadRun::tick_loop` closes one interval per
//! second (or phase boundary) until the drain ends, beside the fault runner; `LoadRun::finish`
//! (finish.rs) collects the last figures, the faults and the ledger into the summary row.

mod finish;
mod replay;
#[cfg(test)]
mod tests;

pub use replay::ReplayFigures;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::backend::{Backend, Destination};
use crate::clock::sleep_until_ns;
use crate::clock::{Clock, MonotonicClock};
use crate::cluster::process::OwnedProcess;
use crate::fault::runner::ActiveFaults;
use crate::fault::{FaultRunner, NodeControl};
use crate::load::consumer::{run_consumer, ConsumerPlan, KillSwitch};
use crate::load::producer::{run_producer, ProducerPlan};
use crate::load::rate::Schedule;
use crate::load::LoadContext;
use crate::metrics::activity::Activity;
use crate::metrics::aggregator::Aggregator;
use crate::metrics::cpu::CpuSampler;
use crate::metrics::ledger::Ledger;
use crate::metrics::sampler::{run_samplers, Samples};
use crate::metrics::stats::Recorder;
use crate::report::{each, BackendStart, LiveFigures, Sink, SummaryRow};
use crate::scenario::timeline::{EventKind, Phase, Timeline};
use crate::scenario::{FaultSpec, LoadMode, Workload};

pub(crate) const NS: u64 = 1_000_000_000;

/// What one load runs: a backend on its destinations with a workload and its faults.
pub struct LoadSpec<'a> {
    pub run_id: u64,
    /// The row label (with the repetition, e.g. `redis-streams#2`).
    pub label: &'a str,
    /// The backend type.
    pub kind: &'a str,
    pub backend: Arc<dyn Backend>,
    pub dests: &'a [Destination],
    pub workload: &'a Workload,
    /// The faults that apply to this backend, with their index in the scenario, by time.
    pub faults: Vec<(usize, FaultSpec)>,
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

/// The instants of one load on the harness clock (ns).
#[derive(Debug, Clone, Copy)]
struct LoadTimes {
    origin: u64,
    warm_end: u64,
    end: u64,
    drain_deadline: u64,
}

impl LoadTimes {
    fn new(now: u64, w: &Workload) -> LoadTimes {
        let origin = now + 100_000_000;
        let warm_end = origin + w.warmup.as_nanos() as u64;
        let end = warm_end + w.duration.as_nanos() as u64;
        LoadTimes {
            origin,
            warm_end,
            end,
            drain_deadline: end + w.drain_timeout.as_nanos() as u64,
        }
    }

    fn phase(&self, now: u64) -> Phase {
        Phase::at(now, self.warm_end, self.end)
    }

    /// Seconds since the load's origin, as the timeline counts.
    fn secs(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.origin) as f64 / 1e9
    }
}

/// Where the tick loop stopped: the phase still open on the timeline, and why.
struct Ticked {
    phase: Phase,
    open: usize,
    interrupted: bool,
}

/// One load in progress.
pub struct LoadRun<'a> {
    spec: LoadSpec<'a>,
    times: LoadTimes,
    clock: Arc<dyn Clock>,
    ledger: Arc<Ledger>,
    activity: Arc<Activity>,
    agg: Aggregator,
    timeline: Timeline,
    tasks: Vec<JoinHandle<()>>,
    sampler: JoinHandle<()>,
    samples: Arc<parking_lot::Mutex<Samples>>,
    /// Producers still producing or awaiting confirms (a lingering one no longer counts).
    live_producers: Arc<AtomicUsize>,
    /// Each consumer's kill switch, by destination index (for consumer faults).
    switches: Vec<(usize, Arc<KillSwitch>)>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    /// Faults in progress (the fault runner counts them), for the live metrics.
    active_faults: Arc<ActiveFaults>,
    /// A replay's consumers, spawned once the fill is done (None: a live load).
    deferred: Option<replay::Deferred>,
    /// Who receives what a killed consumer held.
    watch: Arc<crate::load::watch::RedeliveryWatch>,
}

/// Run the load: spawn, tick until the drain ends beside the fault runner, finish.
pub async fn run_load(
    spec: LoadSpec<'_>,
    control: Option<&mut (dyn NodeControl + '_)>,
    sinks: &mut [Box<dyn Sink>],
    cancel: &mut watch::Receiver<bool>,
) -> LoadOutcome {
    let processes = node_processes(control.as_deref());
    let mut run = LoadRun::spawn(spec, processes);
    run.started(sinks);
    let (notice_tx, mut notices) = mpsc::unbounded_channel::<String>();
    let runner = run.fault_runner(notice_tx, cancel.clone());
    let fault_stop = run.stop_rx.clone();
    let (ticked, observations) = tokio::join!(
        run.tick_loop(sinks, cancel, &mut notices),
        runner.run(control, fault_stop)
    );
    while let Ok(line) = notices.try_recv() {
        report(each(sinks, |s| s.on_notice(&line)));
    }
    run.finish(ticked, &observations, sinks).await
}

/// The processes of the nodes a run controls (none for an external cluster), for the CPU
/// sampler.
fn node_processes(control: Option<&(dyn NodeControl + '_)>) -> Vec<(String, OwnedProcess)> {
    control
        .map(|c| {
            c.node_names()
                .into_iter()
                .filter_map(|n| c.process_of(&n).cloned().map(|p| (n, p)))
                .collect()
        })
        .unwrap_or_default()
}

impl<'a> LoadRun<'a> {
    /// Start the consumers (first, so that they are subscribed when the first message
    /// arrives), the producers and the samplers.
    fn spawn(spec: LoadSpec<'a>, processes: Vec<(String, OwnedProcess)>) -> LoadRun<'a> {
        let w = spec.workload;
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
        let ledger = Arc::new(Ledger::new(w.producers(), spec.backend.confirms()));
        let times = LoadTimes::new(clock.now_ns(), w);
        // A replay's consumers may read for a drain timeout after the fill's own bound.
        let replay_span = match w.mode {
            LoadMode::Replay => w.drain_timeout.as_nanos() as u64,
            LoadMode::Live => 0,
        };
        let activity = Arc::new(Activity::new(
            times.origin,
            times.drain_deadline - times.origin + replay_span + 10 * NS,
            spec.dests.len(),
        ));
        let redelivery_watch = Arc::new(crate::load::watch::RedeliveryWatch::default());
        let ctx = Arc::new(LoadContext {
            run_id: spec.run_id,
            backend: spec.backend.clone(),
            ledger: ledger.clone(),
            clock: clock.clone(),
            message_size: w.message_size,
            activity: activity.clone(),
            watch: redelivery_watch.clone(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut recorders = Vec::new();
        let mut tasks = Vec::new();
        let mut switches = Vec::new();
        let live_producers = Arc::new(AtomicUsize::new(w.producers()));
        let mut held_back = Vec::new();
        for (i, d) in spec.dests.iter().enumerate() {
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
                if w.mode == LoadMode::Replay {
                    held_back.push((plan, rec));
                    continue;
                }
                let (ctx, stop) = (ctx.clone(), stop_rx.clone());
                tasks.push(tokio::spawn(async move {
                    run_consumer(ctx, plan, rec, stop).await;
                }));
            }
        }
        let deferred = (w.mode == LoadMode::Replay).then(|| replay::Deferred {
            ctx: ctx.clone(),
            consumers: held_back,
            started_ns: None,
        });
        for (i, d) in spec.dests.iter().enumerate() {
            for p in 0..w.producers_per_destination {
                let plan = producer_plan(
                    w,
                    &times,
                    i * w.producers_per_destination + p,
                    d,
                    &live_producers,
                );
                let rec = Recorder::new();
                recorders.push(rec.clone());
                let (ctx, stop) = (ctx.clone(), stop_rx.clone());
                tasks.push(tokio::spawn(async move {
                    run_producer(ctx, plan, rec, stop).await;
                }));
            }
        }
        let samples = Arc::new(parking_lot::Mutex::new(Samples::default()));
        let sampler = tokio::spawn(run_samplers(
            CpuSampler::new(spec.label, processes),
            spec.backend.clone(),
            spec.dests.to_vec(),
            clock.clone(),
            times.origin,
            samples.clone(),
            stop_rx.clone(),
        ));
        LoadRun {
            agg: Aggregator::new(spec.label, times.origin, recorders),
            spec,
            times,
            clock,
            ledger,
            activity,
            timeline: Timeline::default(),
            tasks,
            sampler,
            samples,
            live_producers,
            switches,
            stop_tx,
            stop_rx,
            active_faults: Arc::default(),
            deferred,
            watch: redelivery_watch,
        }
    }

    fn started(&self, sinks: &mut [Box<dyn Sink>]) {
        let w = self.spec.workload;
        let start = BackendStart {
            label: self.spec.label.to_string(),
            backend_type: self.spec.kind.to_string(),
            started: SystemTime::now(),
            warmup_s: w.warmup.as_secs_f64(),
            duration_s: w.duration.as_secs_f64(),
        };
        report(each(sinks, |s| s.on_backend_start(&start)));
    }

    /// The fault runner of this load: it takes the consumers' kill switches.
    fn fault_runner(
        &mut self,
        notices: mpsc::UnboundedSender<String>,
        cancel: watch::Receiver<bool>,
    ) -> FaultRunner {
        FaultRunner {
            faults: std::mem::take(&mut self.spec.faults),
            backend: self.spec.backend.clone(),
            dests: self.spec.dests.to_vec(),
            clock: self.clock.clone(),
            measure_start_ns: self.times.warm_end,
            measure_end_ns: self.times.end,
            switches: std::mem::take(&mut self.switches),
            ledger: self.ledger.clone(),
            watch: self.watch.clone(),
            notices,
            cancel,
            active: self.active_faults.clone(),
        }
    }

    /// One interval per second or phase boundary, until the drain ends (everything confirmed
    /// is received and every producer is done, or the drain timeout), a message budget is
    /// spent and received, or the run is cancelled. Then stops the load tasks and the fault
    /// runner.
    async fn tick_loop(
        &mut self,
        sinks: &mut [Box<dyn Sink>],
        cancel: &mut watch::Receiver<bool>,
        notices: &mut mpsc::UnboundedReceiver<String>,
    ) -> Ticked {
        let t = self.times;
        let label = self.spec.label;
        let budget = self.spec.workload.messages.is_some();
        let mut phase = match self.deferred {
            Some(_) => Phase::Fill,
            None => t.phase(t.origin),
        };
        let mut open = self
            .timeline
            .open(label, EventKind::Phase, phase.as_str(), 0.0);
        let mut last_tick = t.origin;
        let mut interrupted = false;
        sleep_until_ns(self.clock.as_ref(), t.origin).await;
        loop {
            let now = self.clock.now_ns();
            // The next interval ends at the next whole second or phase boundary.
            let next_second = last_tick + NS - (last_tick - t.origin) % NS;
            let boundary = [t.warm_end, t.end]
                .into_iter()
                .filter(|&b| b > last_tick)
                .min()
                .unwrap_or(u64::MAX);
            let tick_at = next_second.min(boundary);
            // During the drain (or with a message budget), look at the ledger often so the
            // run ends as soon as it can (a replay's phases end on what the ledger says: more
            // often still).
            let watching = phase == Phase::Drain || budget;
            let wake = match (watching, self.deferred.is_some()) {
                (_, true) => tick_at.min(now + 10_000_000),
                (true, false) => tick_at.min(now + 50_000_000),
                (false, false) => tick_at,
            };
            tokio::select! {
                _ = sleep_until_ns(self.clock.as_ref(), wake) => {}
                _ = cancel.changed() => interrupted = true,
                Some(line) = notices.recv() => report(each(sinks, |s| s.on_notice(&line))),
            }
            let now = self.clock.now_ns();
            let producers_done = self.live_producers.load(Ordering::SeqCst) == 0;
            // A replay's fill ends when every producer is done; its replay, like a drain, when
            // everything confirmed is received (or at its own drain timeout).
            let fill_done = phase == Phase::Fill && producers_done;
            let drained_now =
                watching && phase != Phase::Fill && producers_done && self.ledger.awaiting() == 0;
            let out_of_time = match phase {
                Phase::Drain => now >= t.drain_deadline,
                Phase::Replay => self.replay_deadline().is_some_and(|d| now >= d),
                _ => false,
            };
            if now >= tick_at || interrupted || drained_now || out_of_time || fill_done {
                let (row, stats) = self.agg.tick(now, phase);
                report(each(sinks, |s| s.on_interval(row, stats)));
                self.report_live(sinks);
                report_samples(sinks, self.samples.lock().take());
                last_tick = now;
                let next_phase = match phase {
                    Phase::Fill if fill_done => Phase::Replay,
                    Phase::Fill | Phase::Replay => phase,
                    _ => t.phase(now),
                };
                if next_phase != phase {
                    self.timeline.close(open, t.secs(now));
                    report(each(sinks, |s| s.on_event(&self.timeline.events[open])));
                    open = self.timeline.open(
                        label,
                        EventKind::Phase,
                        next_phase.as_str(),
                        t.secs(now),
                    );
                    phase = next_phase;
                    if phase == Phase::Replay && !interrupted {
                        self.start_replay(sinks).await;
                    }
                }
            }
            if interrupted || drained_now || out_of_time {
                break;
            }
        }
        // Stop consumers (and producers, if interrupted) and the fault runner.
        let _ = self.stop_tx.send(true);
        Ticked {
            phase,
            open,
            interrupted,
        }
    }

    /// The fill is confirmed: make the backend's consumers new readers of the whole history
    /// (a new Redis group at id 0), then spawn them.
    async fn start_replay(&mut self, sinks: &mut [Box<dyn Sink>]) {
        if let Err(e) = self.spec.backend.new_readers(self.spec.dests).await {
            let line = format!("replay: could not start new readers from the beginning: {e}");
            report(each(sinks, |s| s.on_notice(&line)));
        }
        let now = self.clock.now_ns();
        if let Some(d) = self.deferred.as_mut() {
            let spawned = d.spawn(now, &self.stop_rx);
            self.tasks.extend(spawned);
        }
    }

    /// When a replay that has started gives up: its start plus the drain timeout.
    fn replay_deadline(&self) -> Option<u64> {
        let started = self.deferred.as_ref()?.started_ns?;
        Some(started + self.spec.workload.drain_timeout.as_nanos() as u64)
    }
}

impl LoadRun<'_> {
    /// The live figures beside the interval row (once per interval).
    fn report_live(&self, sinks: &mut [Box<dyn Sink>]) {
        let faults = self.active_faults.counts();
        let live = LiveFigures {
            awaiting: self.ledger.awaiting(),
            faults_active: &faults,
        };
        report(each(sinks, |s| s.on_live(&live)));
    }
}

/// Producer `id`'s plan: its schedule (fixed-rate producers staggered over one interval so
/// their sends do not line up), its share of a message budget, its deadlines.
fn producer_plan(
    w: &Workload,
    t: &LoadTimes,
    id: usize,
    dest: &Destination,
    live: &Arc<AtomicUsize>,
) -> ProducerPlan {
    let producers = w.producers();
    let schedule = match w.rate_per_producer() {
        Some(r) => Schedule::fixed(
            t.origin + ((1e9 / r) * id as f64 / producers as f64) as u64,
            r,
        ),
        None => Schedule::max(t.origin),
    };
    ProducerPlan {
        id,
        dest: dest.clone(),
        schedule,
        // The run's message budget, shared evenly (the first ones take the remainder).
        limit: w
            .messages
            .map(|m| m / producers as u64 + u64::from((id as u64) < m % producers as u64)),
        end_ns: t.end,
        confirm_deadline_ns: t.drain_deadline,
        max_in_flight: w.max_in_flight,
        confirm_timeout: w.op_timeout,
        live: Some(live.clone()),
        // Connections stay open through the drain; closed when the run stops.
        linger: true,
    }
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

/// Report-sink errors do not stop a run's load; they are printed.
pub(crate) fn report(r: Result<(), crate::report::ReportError>) {
    if let Err(e) = r {
        crate::errln!("writing results: {e}");
    }
}
