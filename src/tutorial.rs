//! `brokerbench produce` / `consume`: the proposal's tutorial (make producer / make consumer),
//! with the harness's own header so that two processes on one host measure end-to-end latency.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::backend::rabbitmq::{QueueKind, RabbitBackend};
use crate::backend::redis::RedisStreams;
use crate::backend::{Backend, BackendError, Delivery, Destination};
use crate::clock::{Clock, MonotonicClock};
use crate::cluster::rabbitmq::LocalRabbitCluster;
use crate::load::producer::{run_producer, ProducerPlan};
use crate::load::rate::Schedule;
use crate::load::LoadContext;
use crate::metrics::aggregator::{quantile_ms, Aggregator};
use crate::metrics::ledger::Ledger;
use crate::metrics::stats::{record_ns, Recorder, Stats};
use crate::payload::Header;
use crate::scenario::{RabbitSettings, RedisSettings};

pub fn settings() -> RedisSettings {
    RedisSettings {
        label: Some("tutorial".into()),
        cluster: None,
        destinations: None,
        rate: None,
        maxlen: 1_000_000,
        read_count: 100,
        block_ms: 100,
        appendfsync: None,
        require_full_coverage: None,
        wait_replicas: 0,
        wait_timeout_ms: 1000,
        reply_timeout_ms: crate::backend::redis::settings::DEFAULT_REPLY_TIMEOUT_MS,
        client_retries: 0,
        claim_min_idle_ms: 5000,
        claim_interval_ms: 1000,
    }
}

/// Where `produce` sends.
#[derive(Debug, Clone)]
pub enum ProduceTarget {
    /// A Redis Cluster stream, found through a seed node.
    Redis { seed: String, stream: String },
    /// A quorum queue (declared afresh, deleted after) in the local RabbitMQ cluster whose
    /// folder `cluster up rabbitmq --dir` made.
    Rabbitmq { dir: PathBuf, queue: String },
}

/// How `produce` sends.
#[derive(Debug, Clone, Copy)]
pub struct ProduceOptions {
    /// Messages per second; 0 for max (as fast as `max_in_flight` allows).
    pub rate: f64,
    pub size: usize,
    pub max_in_flight: usize,
    /// The bound of the whole run (with `count` too).
    pub duration: Duration,
    /// Send exactly this many messages at max rate, then stop (a produce-only measurement).
    pub count: Option<u64>,
}

/// The backend and destination `produce` uses, and whether to delete it after.
pub(crate) async fn open_target(
    target: &ProduceTarget,
) -> Result<(Arc<dyn Backend>, Destination, bool), BackendError> {
    match target {
        ProduceTarget::Redis { seed, stream } => {
            let backend = RedisStreams::connect(&settings(), std::slice::from_ref(seed)).await?;
            let dest = backend.attach_stream(stream).await?;
            Ok((Arc::new(backend), dest, false))
        }
        ProduceTarget::Rabbitmq { dir, queue } => {
            let fail = |message: String| BackendError::Connect {
                backend: "rabbitmq-quorum".into(),
                target: dir.display().to_string(),
                message,
            };
            let cluster = LocalRabbitCluster::attach(dir).map_err(|e| fail(e.to_string()))?;
            let s: RabbitSettings = toml::from_str("label = \"produce\"")
                .map_err(|e| fail(format!("default RabbitMQ settings: {e}")))?;
            let backend =
                RabbitBackend::connect(QueueKind::Quorum, &s, &cluster.endpoints()).await?;
            let dest = backend.setup(queue, 1).await?.remove(0);
            Ok((Arc::new(backend), dest, true))
        }
    }
}

/// Produce until `stop`, `duration` or `count` messages; prints a line per second, then the
/// totals with the elapsed time and rate.
pub async fn produce(
    target: &ProduceTarget,
    o: ProduceOptions,
    stop: watch::Receiver<bool>,
) -> Result<(), BackendError> {
    let (backend, dest, delete_after) = open_target(target).await?;
    let name = dest.name.clone();
    let kept = dest.clone();
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    let run_id = crate::clock::random_id();
    let ledger = Arc::new(Ledger::new(1, true));
    let ctx = Arc::new(LoadContext {
        run_id,
        backend: backend.clone(),
        ledger: ledger.clone(),
        clock: clock.clone(),
        message_size: o.size.max(crate::payload::HEADER_LEN),
        // Runs until Ctrl-C: one slot holds all (the fault analysis does not run here).
        activity: Arc::new(crate::metrics::activity::Activity::new(0, 0, 1)),
        watch: Default::default(),
    });
    let start = clock.now_ns() + 10_000_000;
    let bound = start + o.duration.as_nanos() as u64;
    // With a count, message i is due at start + i ns: all are due at once and go out as fast
    // as the window allows, exactly `count` of them (publish latencies then count from the
    // start: only the totals mean something).
    let (schedule, end, confirm_deadline) = match o.count {
        Some(n) => (Schedule::fixed(start, 1e9), start + n, bound),
        None => (Schedule::fixed(start, o.rate), bound, bound + 5_000_000_000),
    };
    let plan = ProducerPlan {
        id: 0,
        dest,
        schedule,
        limit: None,
        end_ns: end,
        confirm_deadline_ns: confirm_deadline,
        max_in_flight: o.max_in_flight,
        confirm_timeout: Duration::from_secs(5),
        live: None,
        linger: false,
    };
    let rec = Recorder::new();
    let mut agg = Aggregator::new("produce", start, vec![rec.clone()]);
    let rate = match (o.count, o.rate > 0.0) {
        (Some(n), _) => format!("{n} messages at max rate"),
        (None, true) => format!("{} msg/s", o.rate),
        (None, false) => "max rate".to_string(),
    };
    crate::errln!(
        "producing to {name} ({}) {rate}, {} in flight (run id {run_id:016x}); Ctrl-C to stop",
        backend.label(),
        o.max_in_flight
    );
    let mut task = tokio::spawn(run_producer(ctx, plan, rec, stop));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut task => break,
            _ = tick.tick() => {}
        }
        let (row, _) = agg.tick(clock.now_ns(), crate::scenario::timeline::Phase::Measure);
        let ms = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        crate::outln!(
            "{:>5.0}s sent {:>6}/s confirmed {:>6}/s failed {} | publish p50 {} p99 {} ms | send delay p99 {} ms",
            row.t_end_s, row.sent, row.confirmed, row.failed, ms(row.publish_p50_ms), ms(row.publish_p99_ms), ms(row.send_delay_p99_ms)
        );
    }
    // The producer is done: the elapsed time ends with its last confirm.
    let elapsed_s = clock.now_ns().saturating_sub(start) as f64 / 1e9;
    let s = ledger.summary(0, None);
    crate::outln!(
        "total: sent {} confirmed {} failed {} unconfirmed {} in {elapsed_s:.3} s: {:.0} msg/s confirmed",
        s.sent,
        s.confirmed,
        s.failed,
        s.unconfirmed,
        s.confirmed as f64 / elapsed_s.max(1e-9)
    );
    if delete_after {
        if let Err(e) = backend.teardown(&[kept]).await {
            crate::errln!("warning: {e}");
        }
    }
    Ok(())
}

/// Per producer (run id, producer id): highest sequence seen and messages missing below it.
#[derive(Default)]
struct Seen {
    next: u64,
    gaps: u64,
    late: u64,
}

/// Consume until `stop` or `duration`; prints a line per second with e2e latency and gaps.
pub async fn consume(
    seed: &str,
    stream: &str,
    duration: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BackendError> {
    let backend = RedisStreams::connect(&settings(), &[seed.to_string()]).await?;
    let dest = backend.attach_stream(stream).await?;
    let mut consumer = backend
        .consumer(&dest, std::process::id() as usize)
        .await
        .map_err(|e| BackendError::Op {
            backend: "tutorial".into(),
            source: e,
        })?;
    let clock = MonotonicClock;
    let deadline = clock.now_ns() + duration.as_nanos() as u64;
    let mut interval = Stats::default();
    let mut seen: HashMap<(u64, u32), Seen> = HashMap::new();
    let mut batch: Vec<Delivery> = Vec::new();
    let mut next_line = clock.now_ns() + 1_000_000_000;
    let mut t = 0u64;
    // Entries the stream trimmed (MAXLEN) before this consumer read them, this second.
    let mut trimmed = 0u64;
    crate::errln!(
        "consuming {stream} via {seed} in group {}; Ctrl-C to stop",
        crate::backend::redis::GROUP
    );
    while !*stop.borrow() && clock.now_ns() < deadline {
        batch.clear();
        let r = tokio::select! {
            r = consumer.poll(&mut batch) => r,
            _ = stop.changed() => break,
        };
        if let Err(e) = r {
            interval
                .errors
                .entry(e.kind())
                .and_modify(|n| *n += 1)
                .or_insert(1);
        }
        trimmed += consumer.take_trimmed();
        let now = clock.now_ns();
        let mut tokens = Vec::with_capacity(batch.len());
        for d in &batch {
            tokens.push(d.token.clone());
            match Header::decode(&d.payload) {
                Ok(h) => {
                    interval.received += 1;
                    record_ns(&mut interval.e2e, now.saturating_sub(h.intended_ns));
                    let s = seen.entry((h.run_id, h.producer)).or_default();
                    if h.seq >= s.next {
                        s.gaps += h.seq - s.next;
                        s.next = h.seq + 1;
                    } else {
                        s.late += 1;
                    }
                }
                Err(_) => interval.foreign += 1,
            }
        }
        if !tokens.is_empty() {
            if let Err(e) = consumer.ack(&tokens).await {
                interval
                    .errors
                    .entry(e.kind())
                    .and_modify(|n| *n += 1)
                    .or_insert(1);
            }
        }
        if now >= next_line {
            t += 1;
            let gaps: u64 = seen.values().map(|s| s.gaps).sum();
            let late: u64 = seen.values().map(|s| s.late).sum();
            let ms = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
            crate::outln!(
                "{t:>5}s received {:>6}/s | e2e p50 {} p99 {} ms | producers seen {} | gaps {gaps} late {late} | trimmed {trimmed} foreign {} errors {}",
                interval.received,
                ms(quantile_ms(&interval.e2e, 0.5)),
                ms(quantile_ms(&interval.e2e, 0.99)),
                seen.len(),
                interval.foreign,
                interval.error_count()
            );
            interval.reset();
            trimmed = 0;
            next_line += 1_000_000_000;
        }
    }
    Ok(())
}
