//! The load engine against the in-memory backend: rates, accounting, faults, the drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::finish::NO_CONFIRMS;
use super::*;
use crate::backend::memory::{MemoryBackend, MemoryFaults};
use crate::backend::Backend;
use crate::clock::random_id;
use crate::fault::FaultRow;
use crate::report::{LostFate, LostMessage, Sink, SummaryRow};
use crate::scenario::{FaultSpec, Rate, Workload};

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
        mode: crate::scenario::LoadMode::Live,
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
        LoadSpec {
            run_id: random_id(),
            label: "memory",
            kind: "memory",
            backend: dyn_backend,
            dests: &dests,
            workload: w,
            faults,
        },
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

/// Consumer 1 is its destination's standby (a single active consumer group): it receives
/// nothing, so the kill goes to consumer 0, which does, and faults.csv says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_standby_kills_the_consumer_of_its_destination_that_receives() {
    let mut w = workload(1000.0, 2);
    w.consumers_per_destination = 2;
    let fault: FaultSpec =
        toml::from_str("at = \"500ms\"\naction = \"kill-consumer\"\ntarget = \"consumer:1\"")
            .expect("fault");
    let backend = Arc::new(MemoryBackend::new(MemoryFaults {
        standby_consumers: vec![1],
        ..MemoryFaults::default()
    }));
    let (s, keep) = run_with(backend, &w, vec![(0, fault)]).await;
    assert!(s.ledger_consistent, "{}", s.ledger_problems);
    let rows = keep.faults.lock().clone();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.node.as_str(), r.status.as_str()),
        ("consumer:0", "ok"),
        "{r:?}"
    );
    // It died a little over a second after the fault (the wait for consumer 1 to receive).
    assert!(r.at_s > 1.0 + 0.9 && r.at_s < 1.0 + 2.5, "at {}", r.at_s);
    let held = r.abandoned.expect("abandoned is set");
    assert!(held > 0, "the consumer died holding a batch");
    assert_eq!(s.lost, held);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_fills_first_then_reads_everything_once() {
    let mut w = workload(5000.0, 10);
    w.mode = crate::scenario::LoadMode::Replay;
    w.messages = Some(3000);
    w.warmup = Duration::ZERO;
    let s = run(MemoryFaults::default(), &w).await;
    assert!(s.ledger_consistent, "{}", s.ledger_problems);
    assert_eq!(
        (s.sent, s.confirmed, s.received, s.lost, s.duplicates),
        (3000, 3000, 3000, 0, 0)
    );
    assert!(s.drained);
    assert_eq!(s.mode, crate::scenario::LoadMode::Replay);
    // 3000 messages at 5000 msg/s: the fill takes 0.6 s (to 10 ms), and nothing is read
    // before it ends, so the replay is all that is left.
    let fill_s = s.fill_s.expect("fill time");
    assert!((0.55..0.75).contains(&fill_s), "fill {fill_s} s");
    let fill_rate = s.fill_per_s.expect("fill rate");
    assert!((fill_rate - 3000.0 / fill_s).abs() < 1e-6, "{fill_rate}");
    let replay_s = s.replay_s.expect("replay time");
    assert!(replay_s > 0.0 && replay_s < fill_s, "replay {replay_s} s");
    assert!(s.replay_per_s.expect("replay rate") > fill_rate);
    // The whole load was the fill and the replay, not the 10 s bound.
    assert!(s.measured_s < 5.0, "{}", s.measured_s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_with_a_hold_dies_holding_at_least_that_many() {
    let mut w = workload(2000.0, 3);
    w.consumers_per_destination = 2;
    let fault: FaultSpec = toml::from_str(
        "at = \"500ms\"\naction = \"kill-consumer\"\ntarget = \"consumer:1\"\nhold = 200",
    )
    .expect("fault");
    let backend = Arc::new(MemoryBackend::new(MemoryFaults::default()));
    let (s, keep) = run_with(backend, &w, vec![(0, fault)]).await;
    assert!(s.ledger_consistent, "{}", s.ledger_problems);
    let rows = keep.faults.lock().clone();
    let r = &rows[0];
    assert_eq!(r.status, "ok", "{r:?}");
    let held = r.abandoned.expect("abandoned is set");
    assert!(held >= 200, "held {held}");
    // It held for a while: it died after the fault's time, within HOLD_MAX.
    assert!(r.at_s > 1.0 && r.at_s < 1.0 + 2.5, "at {}", r.at_s);
    // No acks in memory: what it held is gone, once each.
    assert_eq!(s.lost, held);
    assert_eq!(s.duplicates, 0);
}
