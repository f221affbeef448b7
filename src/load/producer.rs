//! A producer task: schedule -> send -> await confirm -> record.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tokio::sync::watch;

use super::rate::Schedule;
use super::{sleep_until_ns, Backoff, LoadContext};
use crate::backend::{Destination, OpError, Producer};
use crate::metrics::activity::Act;
use crate::metrics::stats::{record_ns, Recorder};
use crate::payload::Header;

pub struct ProducerPlan {
    /// Producer number over the whole run (0-based); also its id in the payload.
    pub id: usize,
    pub dest: Destination,
    pub schedule: Schedule,
    /// No message is due at or after this time.
    pub end_ns: u64,
    /// Stop waiting for outstanding confirms at this time.
    pub confirm_deadline_ns: u64,
    pub max_in_flight: usize,
    /// A confirm that takes longer than this counts as failed ("timeout").
    pub confirm_timeout: Duration,
    /// Decremented once, when this producer has nothing more to send or await.
    pub live: Option<Arc<AtomicUsize>>,
    /// Keep the connection open after that, until `stop`, as a long-lived publisher does. A
    /// publisher that closes its channel right after publishing without confirms can lose its
    /// last messages (RabbitMQ 3.10 quorum queues drop enqueues still buffered when the channel
    /// goes): that is the client's doing, not something a run should charge to the broker.
    pub linger: bool,
}

impl ProducerPlan {
    /// Whether message `index` is still to be sent: every message due before the end is sent,
    /// even if the task wakes up late; at max rate, sending stops at the end.
    fn producing(&self, index: u64, now: u64) -> bool {
        if self.schedule.is_max() {
            now < self.end_ns
        } else {
            self.schedule.due_ns(index) < self.end_ns
        }
    }
}

type Outcome = (u64, u64, Result<(), OpError>);

/// Run until the schedule ends and every confirm is in (or the deadline passes), or until
/// `stop` turns true; with `plan.linger`, then hold the connection until `stop`. Returns the
/// number of messages still awaiting a confirm.
pub async fn run_producer(
    ctx: Arc<LoadContext>,
    plan: ProducerPlan,
    rec: Recorder,
    mut stop: watch::Receiver<bool>,
) -> usize {
    let clock = ctx.clock.as_ref();
    let mut producer: Option<Box<dyn Producer>> = None;
    let mut in_flight: FuturesUnordered<futures::future::BoxFuture<'static, Outcome>> =
        FuturesUnordered::new();
    let mut index: u64 = 0;
    let mut backoff = Backoff::default();
    let id = plan.id as u32;
    loop {
        if *stop.borrow() {
            break;
        }
        let now = clock.now_ns();
        let producing = plan.producing(index, now);
        if !producing && in_flight.is_empty() {
            break;
        }
        if now >= plan.confirm_deadline_ns {
            break;
        }
        if producing && producer.is_none() {
            match ctx.backend.producer(&plan.dest, plan.id).await {
                Ok(p) => {
                    producer = Some(p);
                    backoff.reset();
                }
                Err(e) => {
                    rec.error(e.kind());
                    ctx.activity
                        .add(plan.dest.index, Act::PublishFailed, clock.now_ns(), 1);
                    backoff.wait(&mut stop).await;
                    continue;
                }
            }
        }
        // Send everything that is due, up to the in-flight limit.
        if let Some(p) = producer.as_mut().filter(|_| producing) {
            let mut burst = 0;
            while in_flight.len() < plan.max_in_flight && burst < 1024 {
                let now = clock.now_ns();
                let due = if plan.schedule.is_max() {
                    now
                } else {
                    plan.schedule.due_ns(index)
                };
                if due > now || due >= plan.end_ns {
                    break;
                }
                let seq = ctx.ledger.next_seq(plan.id);
                let payload = Header {
                    run_id: ctx.run_id,
                    producer: id,
                    seq,
                    intended_ns: due,
                }
                .encode(ctx.message_size);
                rec.with(|s| {
                    s.sent += 1;
                    record_ns(&mut s.send_delay, now.saturating_sub(due));
                });
                index += 1;
                burst += 1;
                // Handing over does not wait for the broker: Redis queues a pipeline entry, lapin
                // writes the frames to the socket (a dead peer is ended by the AMQP heartbeat,
                // 5 s). Only the confirm gets a timer: none per send on this path.
                match p.send(payload).await {
                    Ok(Some(confirm)) => {
                        let timeout = plan.confirm_timeout;
                        in_flight.push(
                            async move {
                                let r = match tokio::time::timeout(timeout, confirm).await {
                                    Ok(r) => r,
                                    Err(_) => Err(OpError::Timeout(format!(
                                        "no confirm within {timeout:?}"
                                    ))),
                                };
                                (seq, due, r)
                            }
                            .boxed(),
                        );
                    }
                    // Without confirms, a message written to the client is all the producer
                    // learns: it counts as a successful publish for the fault analysis.
                    Ok(None) => ctx.activity.add(plan.dest.index, Act::Confirmed, now, 1),
                    Err(e) => {
                        if failed(&ctx, &plan, &rec, (seq, due), &e, now) {
                            producer = None;
                            break;
                        }
                    }
                }
            }
            if burst >= 1024 {
                tokio::task::yield_now().await;
            }
        }
        // Wait for the next due message, a confirm, or the stop signal.
        let now = clock.now_ns();
        if producer.is_none() && plan.producing(index, now) {
            // Dropped after an error: settle what is ready, then reopen at once (opening backs
            // off by itself). Without confirms nothing else would wake this task.
            while let Some(Some(outcome)) = in_flight.next().now_or_never() {
                settle(&ctx, &plan, &rec, outcome, clock.now_ns(), &mut producer);
            }
            tokio::task::yield_now().await;
            continue;
        }
        let producing = producer.is_some() && plan.producing(index, now);
        let room = in_flight.len() < plan.max_in_flight;
        let wake_ns = if !producing {
            plan.end_ns.max(now).min(plan.confirm_deadline_ns)
        } else if !room {
            plan.confirm_deadline_ns
        } else if plan.schedule.is_max() {
            now
        } else {
            plan.schedule.due_ns(index).min(plan.end_ns)
        };
        if wake_ns <= now && in_flight.is_empty() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                settle(&ctx, &plan, &rec, outcome, clock.now_ns(), &mut producer);
                while let Some(Some(outcome)) = in_flight.next().now_or_never() {
                    settle(&ctx, &plan, &rec, outcome, clock.now_ns(), &mut producer);
                }
            }
            _ = sleep_until_ns(clock, wake_ns), if wake_ns > now => {}
            _ = stop.changed() => {}
        }
    }
    account_unsent(&ctx, &plan, &rec, index, clock.now_ns());
    if let Some(live) = &plan.live {
        live.fetch_sub(1, Ordering::SeqCst);
    }
    if plan.linger && producer.is_some() {
        // An error means the sender is gone: nothing will stop us later either.
        let _ = stop.wait_for(|s| *s).await;
    }
    if let Some(p) = producer.take() {
        p.close().await;
    }
    in_flight.len()
}

fn settle(
    ctx: &LoadContext,
    plan: &ProducerPlan,
    rec: &Recorder,
    (seq, due, r): Outcome,
    now: u64,
    producer: &mut Option<Box<dyn Producer>>,
) {
    match r {
        Ok(()) => {
            ctx.ledger.on_confirmed(plan.id, seq);
            ctx.activity.add(plan.dest.index, Act::Confirmed, now, 1);
            rec.with(|s| {
                s.confirmed += 1;
                record_ns(&mut s.publish, now.saturating_sub(due));
            });
        }
        Err(e) => {
            if failed(ctx, plan, rec, (seq, due), &e, now) {
                *producer = None;
            }
        }
    }
}

/// When the run stops a fixed-rate producer that is behind its schedule, the messages due
/// before the end of the load that it never handed to the client are counted as `unsent` and
/// their send delay is recorded up to `now`: an overloaded run cannot hide its worst latencies
/// by not sending them. (At max rate nothing is ever due but unsent.) Returns how many.
pub(crate) fn account_unsent(
    ctx: &LoadContext,
    plan: &ProducerPlan,
    rec: &Recorder,
    sent: u64,
    now: u64,
) -> u64 {
    let Some(due) = plan.schedule.count_before(plan.end_ns) else {
        return 0;
    };
    let unsent = due.saturating_sub(sent);
    if unsent == 0 {
        return 0;
    }
    ctx.ledger.on_unsent(plan.id, unsent);
    rec.with(|s| {
        s.unsent += unsent;
        for i in sent..due {
            record_ns(
                &mut s.send_delay,
                now.saturating_sub(plan.schedule.due_ns(i)),
            );
        }
    });
    unsent
}

/// Account for a message due at `due` whose publish failed at `now` (a definite failure, or an
/// unknown outcome: see `OpError::is_definite`): its latency goes to `publish_failed`. Returns
/// whether the producer must be reopened.
fn failed(
    ctx: &LoadContext,
    plan: &ProducerPlan,
    rec: &Recorder,
    (seq, due): (u64, u64),
    e: &OpError,
    now: u64,
) -> bool {
    ctx.ledger.on_failed(plan.id, seq, e.is_definite());
    ctx.activity
        .add(plan.dest.index, Act::PublishFailed, now, 1);
    rec.with(|s| {
        s.failed += 1;
        record_ns(&mut s.publish_failed, now.saturating_sub(due));
        *s.errors.entry(e.kind()).or_insert(0) += 1;
    });
    e.needs_reconnect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::{MemoryBackend, MemoryFaults};
    use crate::backend::Backend;
    use crate::clock::{Clock, MonotonicClock};
    use crate::metrics::activity::Activity;
    use crate::metrics::ledger::Ledger;

    /// One no-confirm producer sends 200 messages within 100 ms to a backend that queues each
    /// message 300 ms after it was sent, unless the producer has closed by then. Returns the
    /// backend once every message was queued or discarded.
    async fn send_200(linger: bool) -> Arc<MemoryBackend> {
        let backend = Arc::new(MemoryBackend::new(MemoryFaults {
            without_confirms: true,
            enqueue_delay: Some(Duration::from_millis(300)),
            ..MemoryFaults::default()
        }));
        let dest = backend.setup("t", 1).await.expect("setup")[0].clone();
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
        let start = clock.now_ns();
        let ctx = Arc::new(LoadContext {
            run_id: 1,
            backend: backend.clone(),
            ledger: Arc::new(Ledger::new(1, false)),
            clock: clock.clone(),
            message_size: 64,
            activity: Arc::new(Activity::new(start, 10_000_000_000, 1)),
        });
        let live = Arc::new(AtomicUsize::new(1));
        let plan = ProducerPlan {
            id: 0,
            dest,
            schedule: Schedule::fixed(start, 2000.0),
            end_ns: start + 100_000_000,
            confirm_deadline_ns: start + 5_000_000_000,
            max_in_flight: 16,
            confirm_timeout: Duration::from_secs(1),
            live: Some(live.clone()),
            linger,
        };
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run_producer(ctx, plan, Recorder::new(), stop));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let settled = || backend.queued("t-0") + backend.injected().discarded_on_close.len() == 200;
        while live.load(Ordering::SeqCst) > 0 || !settled() {
            assert!(std::time::Instant::now() < deadline, "not settled in 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop_tx.send(true);
        assert_eq!(task.await.expect("producer task"), 0);
        backend
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lingering_producer_loses_nothing_on_the_way() {
        let backend = send_200(true).await;
        assert_eq!(backend.queued("t-0"), 200);
        assert!(backend.injected().discarded_on_close.is_empty());
    }

    /// The failure lingering avoids: closing at once discards what is still on its way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_at_once_discards_what_is_on_its_way() {
        let backend = send_200(false).await;
        assert!(!backend.injected().discarded_on_close.is_empty());
        assert!(backend.queued("t-0") < 200);
    }
}
