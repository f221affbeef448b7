//! From what happened around a fault (the activity slots, the topology polls, the killed
//! consumer's report) to one row of faults.csv. Pure functions, unit-tested on made-up series.

use serde::Serialize;

use super::runner::Observation;
use crate::backend::Destination;
use crate::metrics::activity::{Act, Activity, SLOT_NS};
use crate::scenario::{Rate, Workload};

/// Slots in one second.
const SECOND: usize = (1_000_000_000 / SLOT_NS) as usize;

/// When a series of operations came back after a fault at slot `from`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recovery {
    /// No failure and no gap of at least the minimum length: never unavailable.
    Unaffected,
    /// Available again at this slot (the first success after the last failure and after the
    /// longest gap without successes).
    At(usize),
    /// Still unavailable at the end of what was recorded.
    Never,
}

/// Find when operations recovered after a fault at slot `from`.
///
/// Unavailable means: a failure in a slot (10 ms) without any success, or a gap of at least
/// `min_gap` slots without successes. Recovery is the first success after the last such slot.
/// `ok` and `bad` count successes and failures per slot. Failures and gaps are looked for in
/// `[from, to)` (up to the next fault or the end of the measured phase); the first success
/// after them may come later, up to `limit` (the end of the drain). A gap shorter than
/// `min_gap` slots is ordinary jitter, not an outage.
pub fn recovery(
    ok: &[u32],
    bad: &[u32],
    from: usize,
    to: usize,
    limit: usize,
    min_gap: usize,
) -> Recovery {
    let limit = limit.min(ok.len()).min(bad.len());
    let to = to.min(limit);
    if from >= to {
        return Recovery::Never;
    }
    let first_ok_from = |start: usize| (start..limit).find(|&i| ok[i] > 0);
    let mut end: Option<usize> = None;
    let mut never = false;
    // A slot with failures but also successes is degraded, not down: only failures in slots
    // without a success mark the service as unavailable.
    if let Some(last_bad) = (from..to).rev().find(|&i| bad[i] > 0 && ok[i] == 0) {
        match first_ok_from(last_bad + 1) {
            Some(i) => end = Some(i),
            None => never = true,
        }
    }
    // The longest run of slots without a success that starts in the window.
    let (mut best_len, mut best_end) = (0usize, None::<usize>);
    let mut i = from;
    while i < to {
        if ok[i] > 0 {
            i += 1;
            continue;
        }
        let start = i;
        let resume = first_ok_from(start);
        let stop = resume.unwrap_or(limit);
        if stop - start > best_len {
            best_len = stop - start;
            best_end = resume;
            if resume.is_none() {
                never = never || best_len >= min_gap;
            }
        }
        i = stop.max(start + 1);
    }
    if best_len >= min_gap {
        if let Some(e) = best_end {
            end = Some(end.map_or(e, |x| x.max(e)));
        }
    }
    if never {
        Recovery::Never
    } else {
        match end {
            Some(e) => Recovery::At(e),
            None => Recovery::Unaffected,
        }
    }
}

/// Mean rate in events/s over slots `[from, to)`.
pub fn rate(series: &[u32], from: usize, to: usize) -> Option<f64> {
    let to = to.min(series.len());
    (to > from).then(|| {
        let n: u64 = series[from..to].iter().map(|&c| c as u64).sum();
        n as f64 / ((to - from) as f64 * SLOT_NS as f64 / 1e9)
    })
}

/// The lowest one-second rate among the whole seconds from `from` up to `to`.
pub fn min_rate(series: &[u32], from: usize, to: usize) -> Option<f64> {
    let to = to.min(series.len());
    (from..to)
        .step_by(SECOND)
        .filter(|s| s + SECOND <= to)
        .filter_map(|s| rate(series, s, s + SECOND))
        .min_by(|a, b| a.total_cmp(b))
}

/// Element-wise sum of some destinations' series of one kind.
fn summed(activity: &Activity, dests: &[usize], act: Act) -> Vec<u32> {
    let mut out = vec![0u32; activity.slots()];
    for &d in dests {
        for (o, c) in out.iter_mut().zip(activity.series(d, act)) {
            *o = o.saturating_add(c);
        }
    }
    out
}

/// One row of faults.csv.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FaultRow {
    pub backend: String,
    /// Position in the scenario's `[[faults]]` list.
    pub fault: usize,
    pub action: String,
    pub target: String,
    /// The node acted on, resolved at the moment of the fault ("consumer:<i>" for kill-consumer).
    pub node: String,
    /// Destinations the fault hit (led by the node, or the consumer's), `;`-separated.
    pub destinations: String,
    /// Seconds since the backend's load started.
    pub at_s: f64,
    /// The hit destination's leader before the fault and the one that took over.
    pub leader_before: String,
    pub new_leader: String,
    /// From the fault until the topology showed the new leader.
    pub leader_change_s: Option<f64>,
    /// From the fault until the first confirmed publish after the last failure (and after the
    /// longest gap without confirms); empty if never unavailable or never recovered (see
    /// `publish_recovered`).
    pub publish_unavailable_s: Option<f64>,
    /// "yes", "unaffected", or "no" (still unavailable when the run ended).
    pub publish_recovered: String,
    pub consume_unavailable_s: Option<f64>,
    pub consume_recovered: String,
    /// Failed publishes and consumer errors on the hit destinations from the fault to the next
    /// fault or the end of the measured phase.
    pub publish_failures: u64,
    pub consume_failures: u64,
    /// Received msg/s on the hit destinations in the 5 s before the fault, and the lowest
    /// one-second rate in the 10 s after it.
    pub baseline_per_s: Option<f64>,
    pub dip_min_per_s: Option<f64>,
    /// Received msg/s on the other destinations (the other shards) before and during the
    /// unavailability window (at least 1 s).
    pub others_baseline_per_s: Option<f64>,
    pub others_during_per_s: Option<f64>,
    /// When the restart began (seconds since load start) and how long the node took to rejoin.
    pub restart_at_s: Option<f64>,
    pub rejoin_s: Option<f64>,
    /// kill-consumer: messages the killed consumer held unacked, how many another consumer
    /// processed afterwards, and when the first and the last of them arrived (from the kill).
    pub abandoned: Option<u64>,
    pub reprocessed: Option<u64>,
    pub redelivery_first_s: Option<f64>,
    pub redelivery_last_s: Option<f64>,
    /// kill-consumer: who received what it held, e.g. "consumer:1=500" ("before the kill=n":
    /// another consumer had n of them before it died, claimed while it held them).
    pub redelivered_to: String,
    /// How the node came back: "restarted", "resumed", or "resumed, then restarted: ..." when
    /// a paused node's cluster did not heal by itself; empty when it was not brought back.
    pub recovery: String,
    /// "ok", or what went wrong while injecting or observing the fault.
    pub status: String,
}

/// Where the measured phase ends and the drain ends, and the next fault's time, as slots.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub measure_end_ns: u64,
    pub load_end_ns: u64,
    /// Minimum outage length (ns): shorter gaps in confirms or receipts are jitter.
    pub min_gap_ns: u64,
}

fn recovered_text(r: Recovery) -> String {
    match r {
        Recovery::Unaffected => "unaffected",
        Recovery::At(_) => "yes",
        Recovery::Never => "no",
    }
    .to_string()
}

/// The shortest gap in a destination's confirms or receipts that counts as an outage: 250 ms,
/// or ten intervals between messages at a low fixed rate.
pub fn min_gap_ns(w: &Workload) -> u64 {
    let floor = 250_000_000u64;
    match w.rate {
        Rate::PerSecond(r) => {
            let per_dest = r / w.destinations.max(1) as f64;
            floor.max((10.0 / per_dest * 1e9) as u64)
        }
        Rate::Max | Rate::ShareOfMax(_) => floor,
    }
}

/// Build the row for one observed fault. `next_ns`: when the next fault of this backend began.
pub fn row(
    backend: &str,
    obs: &Observation,
    next_ns: Option<u64>,
    dests: &[Destination],
    activity: &Activity,
    bounds: Bounds,
) -> FaultRow {
    let origin = activity.origin_ns();
    let secs = |ns: u64| ns.saturating_sub(origin) as f64 / 1e9;
    let slot = |ns: u64| activity.slot_of(ns);
    let from = slot(obs.at_ns);
    // The fault's window ends at the node's restart (a separate event: its resync stalls are
    // not the kill's), the next fault, or the end of the measured phase.
    let window_end = next_ns
        .unwrap_or(bounds.measure_end_ns)
        .min(obs.restart_ns.unwrap_or(u64::MAX))
        .min(bounds.measure_end_ns);
    let to = slot(window_end);
    let limit = slot(bounds.load_end_ns) + 1;
    let min_gap = ((bounds.min_gap_ns / SLOT_NS) as usize).max(1);
    let all: Vec<usize> = (0..activity.destinations()).collect();
    let hit: Vec<usize> = if obs.affected.is_empty() {
        all.clone()
    } else {
        obs.affected.clone()
    };
    let others: Vec<usize> = all.into_iter().filter(|d| !hit.contains(d)).collect();
    let received = summed(activity, &hit, Act::Received);
    let publish_failed = summed(activity, &hit, Act::PublishFailed);
    let consume_failed = summed(activity, &hit, Act::ConsumeFailed);
    let publish = recovery(
        &summed(activity, &hit, Act::Confirmed),
        &publish_failed,
        from,
        to,
        limit,
        min_gap,
    );
    let consume = recovery(&received, &consume_failed, from, to, limit, min_gap);
    let span = |r: Recovery| match r {
        Recovery::At(s) => Some(s.saturating_sub(from) as f64 * SLOT_NS as f64 / 1e9),
        _ => None,
    };
    let count =
        |series: &[u32]| -> u64 { series[from..to.max(from)].iter().map(|&c| c as u64).sum() };
    let before = from.saturating_sub(5 * SECOND);
    let outage_slots = match publish {
        Recovery::At(s) => s.saturating_sub(from),
        _ => 0,
    }
    .max(SECOND);
    let others_received = summed(activity, &others, Act::Received);
    let rel = |ns: Option<u64>| ns.map(|t| t.saturating_sub(obs.at_ns) as f64 / 1e9);
    let abandoned = obs.abandoned.as_ref().map(|a| a.messages.len() as u64);
    FaultRow {
        backend: backend.to_string(),
        fault: obs.index,
        action: obs.spec.action.as_str().to_string(),
        target: obs.spec.target.to_string(),
        node: obs.node.clone().unwrap_or_default(),
        destinations: obs
            .affected
            .iter()
            .filter_map(|&i| dests.get(i).map(|d| d.name.as_str()))
            .collect::<Vec<_>>()
            .join(";"),
        at_s: secs(obs.at_ns),
        leader_before: obs.leader_before.clone().unwrap_or_default(),
        new_leader: obs.new_leader.clone().unwrap_or_default(),
        leader_change_s: rel(obs.leader_seen_ns),
        publish_unavailable_s: span(publish),
        publish_recovered: recovered_text(publish),
        consume_unavailable_s: span(consume),
        consume_recovered: recovered_text(consume),
        publish_failures: count(&publish_failed),
        consume_failures: count(&consume_failed),
        baseline_per_s: rate(&received, before, from),
        dip_min_per_s: min_rate(&received, from, (from + 10 * SECOND).min(to.max(from))),
        others_baseline_per_s: (!others.is_empty())
            .then(|| rate(&others_received, before, from))
            .flatten(),
        others_during_per_s: (!others.is_empty())
            .then(|| rate(&others_received, from, from + outage_slots))
            .flatten(),
        restart_at_s: obs.restart_ns.map(secs),
        recovery: obs.recovery.clone().unwrap_or_default(),
        rejoin_s: match (obs.restart_ns, obs.rejoined_ns) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9),
            _ => None,
        },
        abandoned,
        reprocessed: obs.abandoned.as_ref().map(|_| obs.reprocessed),
        redelivery_first_s: rel(obs.redelivered_first_ns),
        redelivery_last_s: rel(obs.redelivered_last_ns),
        redelivered_to: obs.redelivered_to.clone(),
        status: obs.error.clone().unwrap_or_else(|| "ok".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(len: usize, f: impl Fn(usize) -> u32) -> Vec<u32> {
        (0..len).map(f).collect()
    }

    #[test]
    fn outage_ends_at_the_first_success_after_the_last_failure() {
        // Successes everywhere except slots 100..250; failures at 120 and 200.
        let ok = series(1000, |i| u32::from(!(100..250).contains(&i)));
        let bad = series(1000, |i| u32::from(i == 120 || i == 200));
        assert_eq!(recovery(&ok, &bad, 100, 900, 1000, 25), Recovery::At(250));
        // A failure in a slot where other publishes succeeded is degraded service, not an
        // outage; a failure in a slot with no success is.
        let ok = series(1000, |_| 1);
        let bad = series(1000, |i| u32::from(i == 300));
        assert_eq!(
            recovery(&ok, &bad, 100, 900, 1000, 25),
            Recovery::Unaffected
        );
        let ok = series(1000, |i| u32::from(i != 300));
        assert_eq!(recovery(&ok, &bad, 100, 900, 1000, 25), Recovery::At(301));
    }

    #[test]
    fn a_silent_stall_is_an_outage_and_jitter_is_not() {
        // Confirms stop for 3 s without a single error (a frozen leader).
        let ok = series(1000, |i| u32::from(!(105..405).contains(&i)));
        let bad = vec![0; 1000];
        assert_eq!(recovery(&ok, &bad, 100, 900, 1000, 25), Recovery::At(405));
        // A 100 ms hole is below the 250 ms threshold.
        let ok = series(1000, |i| u32::from(!(300..310).contains(&i)));
        assert_eq!(
            recovery(&ok, &bad, 100, 900, 1000, 25),
            Recovery::Unaffected
        );
    }

    #[test]
    fn never_recovering_and_recovering_in_the_drain() {
        let ok = series(1000, |i| u32::from(i < 100));
        let bad = series(1000, |i| u32::from(i >= 100));
        assert_eq!(recovery(&ok, &bad, 100, 500, 1000, 25), Recovery::Never);
        // Back only after the window (during the drain): recovered, at that slot.
        let ok = series(1000, |i| u32::from(!(100..700).contains(&i)));
        let bad = vec![0; 1000];
        assert_eq!(recovery(&ok, &bad, 100, 500, 1000, 25), Recovery::At(700));
    }

    #[test]
    fn rates_per_second() {
        let s = series(500, |i| if i < 200 { 10 } else { 0 });
        assert_eq!(rate(&s, 0, 100), Some(1000.0));
        assert_eq!(rate(&s, 100, 300), Some(500.0));
        assert_eq!(rate(&s, 10, 10), None);
        assert_eq!(min_rate(&s, 0, 500), Some(0.0));
        assert_eq!(min_rate(&s, 0, 200), Some(1000.0));
        assert_eq!(min_rate(&s, 0, 50), None);
    }
}
