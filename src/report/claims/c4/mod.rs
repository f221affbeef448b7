//! C4: leader death costs downtime on RabbitMQ; Redis fails over fast and only its shard is hit.

use super::*;
use crate::report::aggregate::publish_unavailable;

/// C4 (b): during a Redis master's outage the other shards keep at least this share of the
/// throughput they had before.
pub const C4_OTHERS_MIN_SHARE: f64 = 0.9;

/// One backend's worst publish unavailability over its leader kills, with the numbers lines.
fn worst_unavailable(
    model: Model,
    r: &SummaryRow,
    faults: &[&FaultRow],
    numbers: &mut Vec<String>,
) -> Option<f64> {
    let (pre, noun) = (model.prefix(), model.noun());
    let known: Vec<f64> = faults
        .iter()
        .filter_map(|f| publish_unavailable(f))
        .collect();
    let unknown = faults.len() - known.len();
    if unknown > 0 {
        numbers.push(format!(
            "{pre}{}: {unknown} {noun}(s) without a publish unavailability",
            name(r)
        ));
    }
    let worst = known.into_iter().reduce(f64::max)?;
    numbers.push(format!(
        "{pre}{}: publish unavailable {} (worst of {} {noun}(s); failure detection: {})",
        name(r),
        seconds(worst),
        faults.len() - unknown,
        r.detection()
    ));
    Some(worst)
}

/// Per backend (over its repetitions) the range of its worst unavailability; the backend with
/// the smallest median, with its label and the number of backends.
fn smallest<'a>(v: &[(&'a str, f64)]) -> Option<(&'a str, Spread, usize)> {
    let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (series, s) in v {
        by.entry(series).or_default().push(*s);
    }
    let n = by.len();
    by.into_iter()
        .filter_map(|(series, v)| Some((series, Spread::of(v)?)))
        .min_by(|a, b| a.1.median.total_cmp(&b.1.median))
        .map(|(s, spread)| (s, spread, n))
}

fn show(s: &Spread) -> String {
    if s.n <= 1 {
        seconds(s.median)
    } else {
        format!(
            "{} (median; {}–{} over {} runs)",
            seconds(s.median),
            seconds(s.min),
            seconds(s.max),
            s.n
        )
    }
}

/// A fault model C4 is judged under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    /// SIGKILL: the kernel closes the node's sockets at once, and its peers see it go.
    Kill,
    /// SIGSTOP, then SIGCONT: a frozen node, noticed only after the failure-detection timeouts.
    Pause,
    /// The node's link down while it runs (`network = "namespaces"`): cut off, noticed only
    /// after the failure-detection timeouts, and it still takes writes from no one.
    Partition,
}

impl Model {
    fn pick(self) -> fn(&FaultRow) -> bool {
        match self {
            Model::Kill => is_leader_kill,
            Model::Pause => |f| f.action == "pause" && f.target.starts_with("leader-of:"),
            Model::Partition => |f| f.action == "partition" && f.target.starts_with("leader-of:"),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Model::Kill => "leader kill",
            Model::Pause => "leader pause",
            Model::Partition => "leader partition",
        }
    }

    /// Kill lines stand alone (the model of most runs); pause lines say so.
    fn prefix(self) -> &'static str {
        match self {
            Model::Kill => "",
            Model::Pause => "pause: ",
            Model::Partition => "partition: ",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Model::Kill => "a killed leader (SIGKILL: its sockets close at once)",
            Model::Pause => "a frozen leader (SIGSTOP: no socket closes)",
            Model::Partition => "a cut-off leader (its link down: it runs on, no socket closes)",
        }
    }
}

/// C4 under one fault model: its outcome and reason, or what is missing.
fn judge(
    e: &Evidence,
    model: Model,
    numbers: &mut Vec<String>,
) -> Result<(Outcome, &'static str), Vec<String>> {
    let redis = e.with_faults(&[REDIS], model.pick());
    let mut rabbit = e.with_faults(&[QUORUM, MIRRORED], model.pick());
    rabbit.retain(|(r, _)| r.confirmed > 0);
    let mut redis_outage = Vec::new();
    for (r, fs) in &redis {
        if let Some(s) = worst_unavailable(model, r, fs, numbers) {
            redis_outage.push((r.series(), s));
        }
    }
    let mut rabbit_outage = Vec::new();
    for (r, fs) in &rabbit {
        if let Some(s) = worst_unavailable(model, r, fs, numbers) {
            rabbit_outage.push((r.series(), s));
        }
    }
    let (Some(best_redis), Some(best_rabbit)) = (smallest(&redis_outage), smallest(&rabbit_outage))
    else {
        let mut missing = Vec::new();
        if redis_outage.is_empty() {
            missing.push(format!(
                "missing: a redis-streams {} with a publish unavailability",
                model.noun()
            ));
        }
        if rabbit_outage.is_empty() {
            missing.push(format!(
                "missing: a rabbitmq-quorum or rabbitmq-mirrored {} with a publish unavailability",
                model.noun()
            ));
        }
        return Err(missing);
    };
    // Over repetitions (a) decides only when the ranges do; the medians alone: within noise.
    let (r, q) = (best_redis.1, best_rabbit.1);
    let a_holds = r.max <= q.min;
    let a_fails = r.min > q.max;
    let pre = model.prefix();
    numbers.push(format!(
        "{pre}(a) {}: best Redis {} ({}, best of {} Redis backend(s)) {} smallest RabbitMQ {} ({})",
        if a_holds {
            "holds"
        } else if a_fails {
            "fails"
        } else {
            "within noise"
        },
        show(&r),
        best_redis.0,
        best_redis.2,
        if a_holds {
            "≤"
        } else if a_fails {
            ">"
        } else {
            "overlaps"
        },
        show(&q),
        best_rabbit.0,
    ));
    // (b): every Redis leader kill with a non-zero baseline on the other destinations.
    let mut held = 0;
    let mut failed = Vec::new();
    let mut host_bound = Vec::new();
    for (r, fs) in &redis {
        let (bound, lines) = e.host_bound(&[r]);
        for f in fs {
            let (Some(before), Some(during)) = (f.others_baseline_per_s, f.others_during_per_s)
            else {
                continue;
            };
            if before <= 0.0 {
                continue;
            }
            let ok = during >= C4_OTHERS_MIN_SHARE * before;
            numbers.push(format!(
                "{pre}{} fault {}: other destinations {before:.0} → {during:.0} msg/s ({:.0} %)",
                r.backend,
                f.fault,
                100.0 * during / before
            ));
            if ok {
                held += 1;
            } else if bound {
                host_bound.push(format!("{} fault {}", r.backend, f.fault));
                numbers.extend(lines.iter().cloned());
            } else {
                failed.push(format!("{} fault {}", r.backend, f.fault));
            }
        }
    }
    let b_rows = held + failed.len();
    numbers.push(if b_rows == 0 {
        format!(
            "{pre}(b) not measured: no Redis {} with the other destinations' throughput",
            model.noun()
        )
    } else if failed.is_empty() {
        format!("{pre}(b) holds on all {b_rows} Redis row(s)")
    } else {
        format!(
            "{pre}(b) fails on {} of {b_rows} Redis row(s): {}",
            failed.len(),
            failed.join(", ")
        )
    });
    if !host_bound.is_empty() {
        numbers.push(format!(
            "{pre}(b) host-bound on {} Redis row(s): {}",
            host_bound.len(),
            host_bound.join(", ")
        ));
    }
    let (outcome, reason) = if a_fails {
        (
            Outcome::Refuted,
            "Redis published again later than a replicated RabbitMQ queue after its leader failed",
        )
    } else if b_rows > 0 && held == 0 {
        (
            Outcome::Refuted,
            "every Redis leader fault cut the other shards' throughput",
        )
    } else if !a_holds {
        (
            Outcome::WithinNoise,
            "the ranges of Redis's and RabbitMQ's publish unavailability over the repetitions overlap",
        )
    } else if b_rows > 0 && failed.is_empty() {
        (
            Outcome::Supported,
            "Redis published again no later than the replicated RabbitMQ queues, and its other shards kept their throughput",
        )
    } else if failed.is_empty() && !host_bound.is_empty() {
        (
            Outcome::HostBound,
            "Redis published again first, but the other shards' throughput fell only while the host's cores (or the harness) were saturated",
        )
    } else {
        (
            Outcome::Inconclusive,
            "Redis published again first, but the other shards' throughput is missing or held on some kills only",
        )
    };
    Ok((outcome, reason))
}

/// C4: after a leader fault Redis publishes again no later than RabbitMQ's replicated queues
/// (a), and Redis's other shards keep their throughput (b), under every fault model the run
/// has (a kill, a pause, a partition).
pub(super) fn c4(e: &Evidence) -> Verdict {
    const TITLE: &str = "leader death costs downtime on RabbitMQ; Redis fails over fast and only \
        the dead master's shard is hit";
    let rule = format!(
        "Leader faults (kill, pause or partition of leader-of:*), judged apart under each fault \
         model: a kill (SIGKILL: the kernel closes the node's sockets at once), a pause \
         (SIGSTOP, SIGCONT at restart_after: a frozen node, noticed only after the \
         failure-detection timeouts) and a partition (the node's link down while it runs, on a \
         cluster with network = \"namespaces\"; noticed only after the same timeouts). Per backend and model, publish unavailability is the worst over its faults \
         (unaffected = 0 s; not recovered = until the end, worse than any number). (a) the best \
         Redis backend's unavailability ≤ the smallest of the RabbitMQ quorum and mirrored \
         backends with publisher confirms (without confirms a publish cannot be seen to fail); \
         (b) on every Redis leader fault with figures for the other destinations, their \
         received msg/s during the outage ≥ {C4_OTHERS_MIN_SHARE} × before; a row where (b) \
         fails while the host's cores were {:.0}% busy or more (or the harness used more than \
         {:.0}% of them) is host-bound and counts for neither side. Under one model: supported \
         if (a) and (b) hold; refuted if (a) fails or (b) fails on every Redis row; host-bound \
         if (a) holds and (b) failed only on host-bound rows; inconclusive otherwise. Over the \
         models: inconclusive if supported under one and refuted under another (the fault model \
         decides); refuted if refuted under one and undecided under the others; supported if \
         supported under every model measured (the numbers say when a model was not); otherwise \
         the undecided model's outcome.",
        HOST_SHARE * 100.0,
        CPU_SHARE * 100.0,
    );
    let mut numbers = Vec::new();
    let kill = judge(e, Model::Kill, &mut numbers);
    let pause = judge(e, Model::Pause, &mut numbers);
    let pause_tried = e.faults.iter().any(Model::Pause.pick());
    let mut judged: Vec<(Model, Outcome, &str)> = [(Model::Kill, &kill), (Model::Pause, &pause)]
        .into_iter()
        .filter_map(|(m, r)| r.as_ref().ok().map(|(o, why)| (m, *o, *why)))
        .collect();
    match (&kill, &pause) {
        (Err(missing), Err(_)) if !pause_tried => numbers.extend(missing.iter().cloned()),
        (Err(missing), Err(missing_pause)) => {
            numbers.extend(missing.iter().chain(missing_pause).cloned())
        }
        (Ok(_), Err(missing)) if pause_tried => numbers.extend(missing.iter().cloned()),
        (Ok(_), Err(_)) => numbers.push(
            "pause model not measured (no leader pause in this run): the verdict holds for a \
             killed leader only"
                .into(),
        ),
        (Err(_), Ok(_)) => numbers.push(
            "kill model not measured (no leader kill on both sides in this run): the verdict \
             holds for a frozen leader only"
                .into(),
        ),
        (Ok(_), Ok(_)) => {}
    }
    // A partition (network = "namespaces" only) counts when the run has one.
    match judge(e, Model::Partition, &mut numbers) {
        Ok((o, why)) => judged.push((Model::Partition, o, why)),
        Err(missing) if e.faults.iter().any(Model::Partition.pick()) => numbers.extend(missing),
        Err(_) => {}
    }
    let Some(&(_, _, first_why)) = judged.first() else {
        return verdict("C4", TITLE, Outcome::NotMeasured, rule, numbers);
    };
    let under = |m: Model, why: &str| {
        if judged.len() > 1 {
            format!("under {}: {why}", m.name())
        } else {
            why.to_string()
        }
    };
    let refuted = judged.iter().find(|(_, o, _)| *o == Outcome::Refuted);
    let supported = judged.iter().find(|(_, o, _)| *o == Outcome::Supported);
    let undecided = judged.iter().find(|(_, o, _)| *o != Outcome::Supported);
    let (outcome, reason) = match (refuted, supported, undecided) {
        // The fault model decides: neither side fails over first under every failure.
        (Some((rm, _, rwhy)), Some((sm, _, swhy)), _) => (
            Outcome::Inconclusive,
            format!(
                "the fault model decides: refuted {}; supported {}",
                under(*rm, rwhy),
                under(*sm, swhy)
            ),
        ),
        (Some((m, o, why)), None, _) | (None, _, Some((m, o, why))) => (*o, under(*m, why)),
        (None, _, None) if judged.len() == 2 && judged[1].0 == Model::Pause => (
            Outcome::Supported,
            format!("under both a killed and a frozen leader: {first_why}"),
        ),
        (None, _, None) if judged.len() > 1 => {
            let names: Vec<&str> = judged.iter().map(|(m, ..)| m.name()).collect();
            (
                Outcome::Supported,
                format!("under {}: {first_why}", names.join(" and ")),
            )
        }
        (None, _, None) => (Outcome::Supported, first_why.to_string()),
    };
    verdict("C4", TITLE, outcome, rule, numbers).because(reason)
}

#[cfg(test)]
mod tests;
