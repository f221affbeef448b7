//! A producer task: schedule -> build a batch of payloads -> hand it over -> await its confirms
//! -> record. Everything is done per batch: one ledger lock, one payload chunk, one confirm
//! stream, one deadline and one recorder lock per batch; per message only the header, the
//! histograms and the ledger's bits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::watch;

use super::in_flight::{InFlight, Outcome};
use super::rate::Schedule;
use super::{Backoff, LoadContext};
use crate::backend::{Destination, OpError, Producer};
use crate::metrics::activity::Act;
use crate::metrics::stats::{record_ns, record_ns_n, Recorder};
use crate::payload::{Header, PayloadWriter};

/// Messages handed over in one batch, at most.
pub const MAX_BATCH: usize = 256;

pub struct ProducerPlan {
    /// Producer number over the whole run (0-based); also its id in the payload.
    pub id: usize,
    pub dest: Destination,
    pub schedule: Schedule,
    /// Send at most this many messages.
    pub limit: Option<u64>,
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
        if self.limit.is_some_and(|l| index >= l) {
            false
        } else if self.schedule.is_max() {
            now < self.end_ns
        } else {
            self.schedule.due_ns(index) < self.end_ns
        }
    }

    /// How many messages from `index` are due at `now` (before the end), at most `room`.
    fn due_now(&self, index: u64, now: u64, room: usize) -> usize {
        let due = if self.schedule.is_max() {
            if now < self.end_ns {
                u64::MAX
            } else {
                0
            }
        } else {
            let by_end = self.schedule.count_before(self.end_ns).unwrap_or(u64::MAX);
            self.schedule.due_count(now).min(by_end)
        };
        due.min(self.limit.unwrap_or(u64::MAX))
            .saturating_sub(index)
            .min(room as u64) as usize
    }

    /// The intended send time of message `seq` handed over at `sent_ns`: its place in the
    /// schedule, or at max rate the hand-over itself.
    fn due_of(&self, seq: u64, sent_ns: u64) -> u64 {
        if self.schedule.is_max() {
            sent_ns
        } else {
            self.schedule.due_ns(seq)
        }
    }
}

/// One producer task's state between batches.
struct ProducerTask {
    ctx: Arc<LoadContext>,
    plan: ProducerPlan,
    rec: Recorder,
    producer: Option<Box<dyn Producer>>,
    in_flight: InFlight,
    /// Messages handed over so far: the next sequence number.
    index: u64,
    writer: PayloadWriter,
    payloads: Vec<Bytes>,
    outcomes: Vec<Outcome>,
    confirmed: Vec<std::ops::Range<u64>>,
}

impl ProducerTask {
    /// Build and hand over the messages due now (one batch, within the in-flight window).
    /// Returns how many the client took.
    async fn send_due(&mut self, now: u64, stop: &mut watch::Receiver<bool>) -> usize {
        let Some(p) = self.producer.as_mut() else {
            return 0;
        };
        let plan = &self.plan;
        let room = plan.max_in_flight.saturating_sub(self.in_flight.messages());
        let n = plan.due_now(self.index, now, room.min(MAX_BATCH));
        if n == 0 {
            return 0;
        }
        // Issued before they are handed over: a consumer may receive them at once.
        let first = self.ctx.ledger.issue(plan.id, n as u64);
        debug_assert_eq!(first, self.index);
        let run_id = self.ctx.run_id;
        let header = |i: usize| {
            let seq = first + i as u64;
            Header {
                run_id,
                producer: plan.id as u32,
                seq,
                intended_ns: plan.due_of(seq, now),
            }
        };
        self.writer.write_batch(n, header, &mut self.payloads);
        // Handing over does not wait for the broker: Redis queues a pipeline entry, lapin
        // writes the frames to the socket (a dead peer is ended by the AMQP heartbeat, 5 s).
        let sent = tokio::select! {
            sent = p.send_batch(&mut self.payloads) => sent,
            // The run stops while the client holds the batch (e.g. waiting for room): what it
            // took is unknown, so the batch stays sent without an outcome (unconfirmed).
            _ = stop.wait_for(|s| *s) => {
                self.payloads.clear();
                self.index += n as u64;
                self.rec.with(|s| s.sent += n as u64);
                return n;
            }
        };
        self.payloads.clear();
        let taken = sent.taken.min(n);
        if taken < n {
            // Never handed over: issued again with the next batch.
            self.ctx.ledger.retract(plan.id, (n - taken) as u64);
        }
        self.index += taken as u64;
        self.rec.with(|s| {
            s.sent += taken as u64;
            if plan.schedule.is_max() {
                record_ns_n(&mut s.send_delay, 0, taken as u64);
            } else {
                for seq in first..first + taken as u64 {
                    record_ns(&mut s.send_delay, now.saturating_sub(plan.due_of(seq, now)));
                }
            }
        });
        let after = self.ctx.clock.now_ns();
        let mut reconnect = false;
        for (pos, e) in sent.refused.iter().filter(|(pos, _)| *pos < taken) {
            let seq = first + *pos as u64;
            reconnect |= failed(
                &self.ctx,
                plan,
                &self.rec,
                (seq, plan.due_of(seq, now)),
                e,
                after,
            );
        }
        match sent.confirms {
            Some(confirms) => self.in_flight.push(
                first,
                taken,
                sent.refused.iter().map(|(pos, _)| *pos),
                now,
                now.saturating_add(plan.confirm_timeout.as_nanos() as u64),
                confirms,
            ),
            // Without confirms, a message written to the client is all the producer learns: it
            // counts as a successful publish for the fault analysis.
            None => {
                let ok = taken.saturating_sub(sent.refused.len());
                self.ctx
                    .activity
                    .add(plan.dest.index, Act::Confirmed, now, ok as u32);
            }
        }
        if reconnect {
            self.producer = None;
        }
        taken
    }

    /// Account for the outcomes collected in `self.outcomes`, learnt at `now`.
    fn settle(&mut self, now: u64) {
        if self.outcomes.is_empty() {
            return;
        }
        let plan = &self.plan;
        self.confirmed.clear();
        let confirmed = &mut self.confirmed;
        let mut count = 0;
        self.rec.with(|s| {
            for (first, n, sent_ns, r) in &self.outcomes {
                if r.is_err() {
                    continue;
                }
                s.confirmed += n;
                count += n;
                if plan.schedule.is_max() {
                    // One intended time for the whole batch: one record for the run.
                    record_ns_n(&mut s.publish, now.saturating_sub(*sent_ns), *n);
                } else {
                    for seq in *first..first + n {
                        record_ns(
                            &mut s.publish,
                            now.saturating_sub(plan.due_of(seq, *sent_ns)),
                        );
                    }
                }
                confirmed.push(*first..first + n);
            }
        });
        if count > 0 {
            self.ctx.ledger.on_confirmed_ranges(plan.id, confirmed);
            self.ctx
                .activity
                .add(plan.dest.index, Act::Confirmed, now, count as u32);
        }
        let mut reconnect = false;
        for (first, n, sent_ns, r) in self.outcomes.drain(..) {
            if let Err(e) = r {
                for seq in first..first + n {
                    let due = plan.due_of(seq, sent_ns);
                    reconnect |= failed(&self.ctx, plan, &self.rec, (seq, due), &e, now);
                }
            }
        }
        if reconnect {
            self.producer = None;
        }
    }

    /// Settle whatever outcomes are in already, without waiting.
    fn settle_ready(&mut self, now: u64) {
        let (in_flight, outcomes) = (&mut self.in_flight, &mut self.outcomes);
        let _ = futures::future::poll_fn(|cx| in_flight.poll_outcomes(cx, outcomes)).now_or_never();
        self.expire_and_settle(now);
    }

    fn expire_and_settle(&mut self, now: u64) {
        self.in_flight
            .expire(now, self.plan.confirm_timeout, &mut self.outcomes);
        self.settle(now);
    }

    /// Nothing more to send and no outcome to wait for, or past the confirm deadline.
    fn finished(&self, now: u64) -> bool {
        (!self.plan.producing(self.index, now) && self.in_flight.is_empty())
            || now >= self.plan.confirm_deadline_ns
    }

    /// When to wake up if nothing else happens: the next message due, the next batch deadline,
    /// the confirm deadline.
    fn wake_ns(&self, now: u64) -> u64 {
        let plan = &self.plan;
        let limit = self
            .in_flight
            .next_deadline_ns()
            .unwrap_or(u64::MAX)
            .min(plan.confirm_deadline_ns);
        let room = self.in_flight.messages() < plan.max_in_flight;
        if self.producer.is_some() && room && plan.producing(self.index, now) {
            let next = if plan.schedule.is_max() {
                now
            } else {
                plan.schedule.due_ns(self.index)
            };
            next.min(limit)
        } else {
            limit
        }
    }
}

/// Run until the schedule ends and every confirm is in (or the deadline passes), or until
/// `stop` turns true; with `plan.linger`, then hold the connection until `stop`. Returns the
/// number of messages still awaiting a confirm.
pub async fn run_producer(
    ctx: Arc<LoadContext>,
    plan: ProducerPlan,
    rec: Recorder,
    mut stop: watch::Receiver<bool>,
) -> usize {
    let clock = ctx.clock.clone();
    let mut t = ProducerTask {
        writer: PayloadWriter::new(ctx.message_size),
        ctx,
        plan,
        rec,
        producer: None,
        in_flight: InFlight::default(),
        index: 0,
        payloads: Vec::with_capacity(MAX_BATCH),
        outcomes: Vec::with_capacity(MAX_BATCH),
        confirmed: Vec::with_capacity(MAX_BATCH),
    };
    let mut backoff = Backoff::default();
    let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
    loop {
        if *stop.borrow() {
            break;
        }
        let now = clock.now_ns();
        if t.finished(now) {
            break;
        }
        let producing = t.plan.producing(t.index, now);
        if producing && t.producer.is_none() {
            match t.ctx.backend.producer(&t.plan.dest, t.plan.id).await {
                Ok(p) => {
                    t.producer = Some(p);
                    backoff.reset();
                }
                Err(e) => {
                    t.rec.error(e.kind());
                    t.ctx
                        .activity
                        .add(t.plan.dest.index, Act::PublishFailed, clock.now_ns(), 1);
                    backoff.wait(&mut stop).await;
                    continue;
                }
            }
        }
        let sent = if producing {
            t.send_due(now, &mut stop).await
        } else {
            0
        };
        t.settle_ready(clock.now_ns());
        let now = clock.now_ns();
        // The last outcomes may have come in, and the load ended, since the top of the loop:
        // then there is nothing left to wait for (the run's drain waits for every producer).
        if t.finished(now) {
            break;
        }
        let wake_ns = t.wake_ns(now);
        // More to do at once (or a producer to reopen after an error): let the other tasks
        // run first, once per batch.
        let reopen = t.producer.is_none() && t.plan.producing(t.index, now);
        if sent > 0 || reopen || wake_ns <= now {
            tokio::task::yield_now().await;
            continue;
        }
        timer
            .as_mut()
            .reset(tokio::time::Instant::now() + Duration::from_nanos(wake_ns - now));
        let waiting = !t.in_flight.is_empty();
        let (in_flight, outcomes) = (&mut t.in_flight, &mut t.outcomes);
        tokio::select! {
            _ = futures::future::poll_fn(|cx| in_flight.poll_outcomes(cx, outcomes)), if waiting => {}
            _ = &mut timer => {}
            _ = stop.changed() => {}
        }
        t.expire_and_settle(clock.now_ns());
    }
    let now = clock.now_ns();
    account_unsent(&t.ctx, &t.plan, &t.rec, t.index, now);
    if let Some(live) = &t.plan.live {
        live.fetch_sub(1, Ordering::SeqCst);
    }
    if t.plan.linger && t.producer.is_some() {
        // An error means the sender is gone: nothing will stop us later either.
        let _ = stop.wait_for(|s| *s).await;
    }
    if let Some(p) = t.producer.take() {
        p.close().await;
    }
    t.in_flight.messages()
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

    /// One destination on `backend`, and a load context over it on the monotonic clock:
    /// (context, destination, now).
    async fn context(
        backend: &Arc<MemoryBackend>,
        ledger: Arc<Ledger>,
    ) -> (Arc<LoadContext>, crate::backend::Destination, u64) {
        let dest = backend.setup("t", 1).await.expect("setup")[0].clone();
        let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
        let start = clock.now_ns();
        let ctx = Arc::new(LoadContext {
            run_id: 1,
            backend: backend.clone(),
            ledger,
            clock,
            message_size: 64,
            activity: Arc::new(Activity::new(start, 10_000_000_000, 1)),
            watch: Default::default(),
        });
        (ctx, dest, start)
    }

    /// One no-confirm producer sends 200 messages within 100 ms to a backend that queues each
    /// message 300 ms after it was sent, unless the producer has closed by then. Returns the
    /// backend once every message was queued or discarded.
    async fn send_200(linger: bool) -> Arc<MemoryBackend> {
        let backend = Arc::new(MemoryBackend::new(MemoryFaults {
            without_confirms: true,
            enqueue_delay: Some(Duration::from_millis(300)),
            ..MemoryFaults::default()
        }));
        let (ctx, dest, start) = context(&backend, Arc::new(Ledger::new(1, false))).await;
        let live = Arc::new(AtomicUsize::new(1));
        let plan = ProducerPlan {
            id: 0,
            dest,
            schedule: Schedule::fixed(start, 2000.0),
            limit: None,
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

    /// A producer whose last confirms come in while it hands over its last batch ends at once:
    /// it does not sleep until the confirm deadline with nothing left to wait for (the run's
    /// drain waits for every producer to end).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_producer_ends_as_soon_as_its_last_confirm_is_in() {
        let backend = Arc::new(MemoryBackend::new(MemoryFaults::default()));
        let ledger = Arc::new(Ledger::new(1, true));
        let (ctx, dest, start) = context(&backend, ledger.clone()).await;
        let live = Arc::new(AtomicUsize::new(1));
        // A budget of one batch: the producer hands it over and its confirms are in before it
        // decides how long to wait.
        let plan = ProducerPlan {
            id: 0,
            dest,
            schedule: Schedule::max(start),
            limit: Some(100),
            end_ns: start + 60_000_000_000,
            confirm_deadline_ns: start + 60_000_000_000,
            max_in_flight: 256,
            confirm_timeout: Duration::from_secs(30),
            live: Some(live.clone()),
            linger: true,
        };
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run_producer(ctx, plan, Recorder::new(), stop));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while live.load(Ordering::SeqCst) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the producer still runs 5 s after its last confirm"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(ledger.summary(0, None).confirmed, 100);
        let _ = stop_tx.send(true);
        assert_eq!(task.await.expect("producer task"), 0);
    }

    /// A max-rate producer whose client holds a batch (a full queue nobody reads) stops as soon
    /// as the run does; what it had issued stays sent without an outcome.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_producer_waiting_on_its_client_stops_with_the_run() {
        let backend = Arc::new(MemoryBackend::new(MemoryFaults {
            capacity: Some(10),
            ..MemoryFaults::default()
        }));
        let ledger = Arc::new(Ledger::new(1, true));
        let (ctx, dest, start) = context(&backend, ledger.clone()).await;
        let plan = ProducerPlan {
            id: 0,
            dest,
            schedule: Schedule::max(start),
            limit: None,
            end_ns: start + 60_000_000_000,
            confirm_deadline_ns: start + 70_000_000_000,
            max_in_flight: 64,
            confirm_timeout: Duration::from_secs(30),
            live: None,
            linger: false,
        };
        let (stop_tx, stop) = watch::channel(false);
        let rec = Recorder::new();
        let task = tokio::spawn(run_producer(ctx, plan, rec.clone(), stop));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(backend.queued("t-0"), 10);
        let _ = stop_tx.send(true);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("stopped within 2 s")
            .expect("producer task");
        let s = ledger.summary(0, None);
        assert!(s.consistent, "{}", s.problems);
        // The first batch (the whole window) never came back from the client: 10 of it queued.
        assert_eq!((s.sent, s.confirmed, s.unconfirmed), (64, 0, 64));
        rec.with(|st| assert_eq!(st.sent, s.sent));
    }
}
