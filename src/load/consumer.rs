//! A consumer task: receive -> decode the harness's header -> ledger -> ack -> record.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Backoff, LoadContext};
use crate::backend::{AckToken, Consumer, Delivery, Destination};
use crate::metrics::activity::Act;
use crate::metrics::ledger::Receipt;
use crate::metrics::stats::{record_ns_n, Recorder};
use crate::payload::Header;

pub struct ConsumerPlan {
    pub id: usize,
    pub dest: Destination,
    /// Simulated processing time per message (the workload's `consumer_delay`), spent once per
    /// batch before the batch is acked: a consumer that is slower than its producers.
    pub process_delay: std::time::Duration,
    /// Pulled by the kill-consumer fault.
    pub kill: Arc<KillSwitch>,
}

/// The kill-consumer fault's handle on one consumer task: once pulled, the task crashes at its
/// next batch that holds messages (drops it unacked, closes its connection, exits) and reports
/// what it dropped, so the fault always leaves unacked messages behind while the load runs.
/// Pulled with a hold, it first stops processing and acking and keeps receiving until it holds
/// that many messages (or for `HOLD_MAX`), then crashes holding them all.
#[derive(Debug, Default)]
pub struct KillSwitch {
    pulled: AtomicBool,
    /// Messages to hold before crashing (0: crash with the first batch).
    hold: AtomicUsize,
    report: Mutex<Option<Abandoned>>,
    /// Switches pulled together with this one (a kill widened to a destination's consumers):
    /// the first consumer to die takes them back before it closes, so that the consumer taking
    /// over from it does not die too.
    group: Mutex<Vec<Arc<KillSwitch>>>,
}

/// What a killed consumer left behind.
#[derive(Debug, Clone)]
pub struct Abandoned {
    /// When it dropped its batch (harness clock).
    pub at_ns: u64,
    /// (producer, sequence) of this run's messages it had received but never processed or acked.
    pub messages: Vec<(u32, u64)>,
}

impl KillSwitch {
    pub fn pull(&self) {
        self.pulled.store(true, Ordering::SeqCst);
    }
    /// Pull it, to crash once holding at least `hold` messages.
    pub fn pull_holding(&self, hold: usize) {
        self.hold.store(hold, Ordering::SeqCst);
        self.pull();
    }
    fn hold(&self) -> usize {
        self.hold.load(Ordering::SeqCst)
    }
    /// Take the pull back (another consumer died instead); no effect once it has died.
    pub fn unpull(&self) {
        self.pulled.store(false, Ordering::SeqCst);
    }
    /// Pull this switch together with `others`: whichever consumer dies first takes the others
    /// back.
    pub fn pull_with(&self, others: Vec<Arc<KillSwitch>>, hold: usize) {
        *self.group.lock() = others;
        self.pull_holding(hold);
    }
    fn pulled(&self) -> bool {
        self.pulled.load(Ordering::SeqCst)
    }
    /// The report, once the consumer has died.
    pub fn report(&self) -> Option<Abandoned> {
        self.report.lock().clone()
    }
}

/// The parse path of one batch, with buffers reused from batch to batch: decode every header,
/// record the receipts in the ledger (one lock per run of messages from the same producer) and
/// the figures in the recorder (one lock per batch).
#[derive(Debug, Default)]
pub struct Parsed {
    ids: Vec<(u32, u64)>,
    intended: Vec<u64>,
    receipts: Vec<Receipt>,
}

impl Parsed {
    /// Account for `batch`, received at `now`. `next_seq` holds, per producer, one past the
    /// highest sequence number this consumer received (a first receipt below it is out of
    /// order for this consumer).
    pub fn parse(
        &mut self,
        ctx: &LoadContext,
        batch: &[Delivery],
        now: u64,
        next_seq: &mut [u64],
        rec: &Recorder,
    ) {
        self.ids.clear();
        self.intended.clear();
        self.receipts.clear();
        let mut foreign = 0;
        for d in batch {
            match Header::decode(&d.payload) {
                Ok(h) if h.run_id == ctx.run_id => {
                    self.ids.push((h.producer, h.seq));
                    self.intended.push(h.intended_ns);
                }
                _ => foreign += 1,
            }
        }
        ctx.ledger.on_received_many(&self.ids, &mut self.receipts);
        rec.with(|s| {
            s.foreign += foreign;
            // Messages of one batch of a max-rate producer share their intended time: one
            // histogram record per run of equal latencies.
            let mut run = (0u64, 0u64);
            for ((&(producer, seq), &intended), receipt) in
                self.ids.iter().zip(&self.intended).zip(&self.receipts)
            {
                match receipt {
                    Receipt::First => {
                        s.received += 1;
                        // Histograms count microseconds.
                        let latency = now.saturating_sub(intended) / 1_000 * 1_000;
                        if run.1 > 0 && run.0 != latency {
                            record_ns_n(&mut s.e2e, run.0, run.1);
                            run.1 = 0;
                        }
                        run = (latency, run.1 + 1);
                        if let Some(next) = next_seq.get_mut(producer as usize) {
                            if seq < *next {
                                s.out_of_order += 1;
                            } else {
                                *next = seq + 1;
                            }
                        }
                    }
                    Receipt::Duplicate => s.duplicates += 1,
                    Receipt::Unknown => s.phantom += 1,
                }
            }
            if run.1 > 0 {
                record_ns_n(&mut s.e2e, run.0, run.1);
            }
        });
    }
}

impl Parsed {
    /// The messages of the last batch received for the first time.
    pub fn firsts(&self) -> impl Iterator<Item = &(u32, u64)> {
        self.ids
            .iter()
            .zip(&self.receipts)
            .filter(|(_, r)| matches!(r, Receipt::First))
            .map(|(id, _)| id)
    }
}

/// Consume until `stop` turns true.
pub async fn run_consumer(
    ctx: Arc<LoadContext>,
    plan: ConsumerPlan,
    rec: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    let mut consumer: Option<Box<dyn Consumer>> = None;
    let mut backoff = Backoff::default();
    let mut batch: Vec<Delivery> = Vec::with_capacity(1024);
    let mut tokens: Vec<AckToken> = Vec::with_capacity(1024);
    // Per producer, one past the highest sequence number this consumer has received: a first
    // receipt below it is out of order for this consumer.
    let mut next_seq: Vec<u64> = vec![0; ctx.ledger.producers()];
    let mut parsed = Parsed::default();
    // Pulled with a hold: what it received and holds unprocessed, since when.
    let mut held: Vec<Delivery> = Vec::new();
    let mut holding_since: Option<u64> = None;
    let hold_max = crate::scenario::faults::HOLD_MAX.as_nanos() as u64;
    while !*stop.borrow() {
        let c = match consumer.as_mut() {
            Some(c) => c,
            None => match ctx.backend.consumer(&plan.dest, plan.id).await {
                Ok(c) => {
                    backoff.reset();
                    consumer.insert(c)
                }
                Err(e) => {
                    rec.error(e.kind());
                    ctx.activity
                        .add(plan.dest.index, Act::ConsumeFailed, ctx.clock.now_ns(), 1);
                    backoff.wait(&mut stop).await;
                    continue;
                }
            },
        };
        batch.clear();
        let polled = tokio::select! {
            r = c.poll(&mut batch) => r,
            _ = stop.changed() => break,
        };
        match polled {
            Ok(()) => backoff.reset(),
            Err(e) => {
                rec.error(e.kind());
                ctx.activity
                    .add(plan.dest.index, Act::ConsumeFailed, ctx.clock.now_ns(), 1);
                if e.needs_reconnect() {
                    consumer = None;
                }
                // Deliveries appended before the error still count; then wait a little, so
                // that a refusing cluster (CLUSTERDOWN) is not hammered in a tight loop.
                if batch.is_empty() {
                    backoff.wait(&mut stop).await;
                }
            }
        }
        if let Some(c) = consumer.as_mut() {
            let trimmed = c.take_trimmed();
            if trimmed > 0 {
                rec.with(|s| s.trimmed += trimmed);
            }
        }
        if plan.kill.pulled() {
            if !batch.is_empty() || !held.is_empty() {
                held.append(&mut batch);
                let now = ctx.clock.now_ns();
                let since = *holding_since.get_or_insert(now);
                if held.len() >= plan.kill.hold() || now.saturating_sub(since) >= hold_max {
                    return crash(&ctx, &plan, consumer, &mut held).await;
                }
            }
            continue;
        }
        if !held.is_empty() {
            // Pulled back (another consumer died instead): what it held is processed now.
            held.append(&mut batch);
            std::mem::swap(&mut batch, &mut held);
            holding_since = None;
        }
        if batch.is_empty() {
            continue;
        }
        let now = ctx.clock.now_ns();
        let batch_len = batch.len();
        ctx.activity
            .add(plan.dest.index, Act::Received, now, batch_len as u32);
        parsed.parse(&ctx, &batch, now, &mut next_seq, &rec);
        ctx.watch.on_received(plan.id, parsed.firsts());
        tokens.clear();
        // The batch is refilled on the next poll: move the ack tokens out of it.
        tokens.extend(
            batch
                .drain(..)
                .map(|d| d.token)
                .filter(|t| *t != AckToken::None),
        );
        if !plan.process_delay.is_zero() {
            let busy = plan.process_delay * batch_len as u32;
            tokio::select! {
                _ = tokio::time::sleep(busy) => {}
                _ = stop.changed() => {}
            }
        }
        if !tokens.is_empty() {
            if let Some(c) = consumer.as_mut() {
                if let Err(e) = c.ack(&tokens).await {
                    rec.error(e.kind());
                    ctx.activity
                        .add(plan.dest.index, Act::ConsumeFailed, ctx.clock.now_ns(), 1);
                    if e.needs_reconnect() {
                        consumer = None;
                    }
                }
            }
        }
        // A poll that always has messages ready never waits: let the other tasks run.
        tokio::task::yield_now().await;
    }
    if plan.kill.pulled() {
        // Pulled, and the load ended before it held enough (or before another message came:
        // nothing to drop).
        held.append(&mut batch);
        return crash(&ctx, &plan, consumer, &mut held).await;
    }
    if let Some(c) = consumer.take() {
        c.close().await;
    }
}

/// The kill-consumer fault: drop the batch without processing or acking it, close the consumer
/// (RabbitMQ requeues its unacked deliveries; Redis keeps them pending for XAUTOCLAIM), and
/// report what was dropped.
async fn crash(
    ctx: &LoadContext,
    plan: &ConsumerPlan,
    consumer: Option<Box<dyn Consumer>>,
    batch: &mut Vec<Delivery>,
) {
    for other in plan.kill.group.lock().drain(..) {
        other.unpull();
    }
    let at_ns = ctx.clock.now_ns();
    let mut messages: Vec<(u32, u64)> = batch
        .drain(..)
        .filter_map(|d| Header::decode(&d.payload).ok())
        .filter(|h| h.run_id == ctx.run_id)
        .map(|h| (h.producer, h.seq))
        .collect();
    // A consumer that held for a while may have been handed one message twice (claimed back
    // by its own XAUTOCLAIM): each counts once.
    messages.sort_unstable();
    messages.dedup();
    // Watched before the connection closes (a requeue follows at once); those another consumer
    // already has (claimed while this one held them) are not waited for.
    let unreceived: Vec<(u32, u64)> = messages
        .iter()
        .copied()
        .filter(|&(p, s)| !ctx.ledger.is_received(p, s))
        .collect();
    ctx.watch.start(&unreceived);
    if let Some(c) = consumer {
        c.close().await;
    }
    *plan.kill.report.lock() = Some(Abandoned { at_ns, messages });
}
