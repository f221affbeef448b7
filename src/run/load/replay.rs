//! A replay (`workload.mode = "replay"`): the consumers wait until the producers have filled
//! the destinations, then start as new readers of the whole history. Its two figures, the fill
//! rate and the replay rate, come from the activity slots (10 ms): the fill ends with its last
//! confirm, the replay starts when the consumers are spawned and ends with its last receipt.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::load::consumer::{run_consumer, ConsumerPlan};
use crate::load::LoadContext;
use crate::metrics::activity::{Act, Activity, SLOT_NS};
use crate::metrics::stats::Recorder;

/// The consumers of a replay, held back until the fill is done.
pub(super) struct Deferred {
    pub ctx: Arc<LoadContext>,
    pub consumers: Vec<(ConsumerPlan, Recorder)>,
    /// When they were spawned (harness clock): the replay's start.
    pub started_ns: Option<u64>,
}

impl Deferred {
    /// Spawn the held-back consumers now.
    pub fn spawn(&mut self, now_ns: u64, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        self.started_ns = Some(now_ns);
        std::mem::take(&mut self.consumers)
            .into_iter()
            .map(|(plan, rec)| {
                let (ctx, stop) = (self.ctx.clone(), stop.clone());
                tokio::spawn(async move { run_consumer(ctx, plan, rec, stop).await })
            })
            .collect()
    }
}

/// A replay's two figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayFigures {
    /// Load start -> the last confirm of the fill (s), and confirmed messages per second.
    pub fill_s: Option<f64>,
    pub fill_per_s: Option<f64>,
    /// Consumers started -> the last receipt (s), and distinct messages read per second.
    pub replay_s: Option<f64>,
    pub replay_per_s: Option<f64>,
}

/// The end of the last 10 ms slot (harness clock) in which any destination saw `act` before
/// `until_ns`; None if none did.
fn last_slot_end(activity: &Activity, act: Act, until_ns: u64) -> Option<u64> {
    let last = activity.slot_of(until_ns);
    (0..activity.destinations())
        .filter_map(|d| {
            activity.series(d, act)[..=last]
                .iter()
                .rposition(|&n| n > 0)
        })
        .max()
        .map(|slot| activity.origin_ns() + (slot as u64 + 1) * SLOT_NS)
}

/// The fill and replay figures of a load whose consumers started at `replay_start_ns` (None:
/// the fill never ended), with `confirmed` messages confirmed and `read` distinct messages
/// received.
pub fn figures(
    activity: &Activity,
    replay_start_ns: Option<u64>,
    until_ns: u64,
    confirmed: u64,
    read: u64,
) -> ReplayFigures {
    let rate = |n: u64, s: Option<f64>| s.filter(|s| *s > 0.0).map(|s| n as f64 / s);
    let fill_end = last_slot_end(
        activity,
        Act::Confirmed,
        replay_start_ns.unwrap_or(until_ns),
    );
    let fill_s = fill_end.map(|e| e.saturating_sub(activity.origin_ns()) as f64 / 1e9);
    let replay_s = replay_start_ns.and_then(|start| {
        last_slot_end(activity, Act::Received, until_ns)
            .filter(|&end| end > start)
            .map(|end| (end - start) as f64 / 1e9)
    });
    ReplayFigures {
        fill_s,
        fill_per_s: rate(confirmed, fill_s),
        replay_s,
        replay_per_s: rate(read, replay_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_fill_ends_with_its_last_confirm_and_the_replay_with_its_last_receipt() {
        let origin = 1_000 * MS;
        let a = Activity::new(origin, 10_000 * MS, 2);
        // Fill: confirms on both destinations until 495 ms (slot 49 ends at 500 ms).
        a.add(0, Act::Confirmed, origin + 5 * MS, 600);
        a.add(1, Act::Confirmed, origin + 495 * MS, 400);
        // Replay from 600 ms: receipts until 1 s 205 ms (slot 120 ends at 1 s 210 ms).
        let start = origin + 600 * MS;
        a.add(0, Act::Received, origin + 700 * MS, 500);
        a.add(1, Act::Received, origin + 1_205 * MS, 500);
        let f = figures(&a, Some(start), origin + 5_000 * MS, 1_000, 1_000);
        assert_eq!(f.fill_s, Some(0.5));
        assert_eq!(f.fill_per_s, Some(2_000.0));
        let replay_s = f.replay_s.expect("replay time");
        assert!((replay_s - 0.61).abs() < 1e-9, "{replay_s}");
        assert!((f.replay_per_s.expect("rate") - 1_000.0 / 0.61).abs() < 1e-6);
    }

    #[test]
    fn a_replay_that_read_nothing_has_no_rate() {
        let origin = 0;
        let a = Activity::new(origin, 1_000 * MS, 1);
        a.add(0, Act::Confirmed, 100 * MS, 10);
        let f = figures(&a, Some(200 * MS), 900 * MS, 10, 0);
        assert_eq!(f.replay_s, None);
        assert_eq!(f.replay_per_s, None);
        // The fill never ended (interrupted): its figures stop where it was.
        let f = figures(&a, None, 900 * MS, 10, 0);
        assert!(f.fill_s.is_some() && f.replay_s.is_none());
    }
}
