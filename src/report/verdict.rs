//! Verdicts on the proposal's claims C1..C6 (docs/claims.md): each one computed from a results
//! folder's summary.csv and faults.csv rows by a rule stated in words next to its outcome.
//!
//! A rule never guesses: when the data it needs is missing, the outcome is "not measured" and
//! the verdict's numbers say what is missing. Rows whose status does not start with "ok"
//! (interrupted or failed backends, faults that could not be injected or observed) are ignored,
//! and so are fault rows of a backend without an ok summary row (its type is unknown).

use std::collections::BTreeMap;

use super::results::{CpuSample, LagSample, RunResults};
use super::SummaryRow;
use crate::fault::FaultRow;

/// C4 (b): during a Redis master's outage the other shards keep at least this share of the
/// throughput they had before.
pub const C4_OTHERS_MIN_SHARE: f64 = 0.9;
/// C6: Redis Streams counts as faster when it receives at least this many times the messages
/// per second of a RabbitMQ stream (and its e2e p99 is no higher).
pub const C6_REDIS_MIN_SPEEDUP: f64 = 1.2;
/// C3: the destination counts the scaling experiment runs at max rate.
pub const C3_DESTINATION_COUNTS: [u32; 4] = [1, 3, 6, 12];
/// C3: a RabbitMQ quorum/mirrored series that grows by at most this much is capped by its leader.
pub const C3_RABBIT_FLAT: f64 = 1.2;
/// C3: Redis must grow by at least this much to spread load over its masters.
pub const C3_REDIS_GROWTH: f64 = 1.5;

const REDIS: &str = "redis-streams";
const QUORUM: &str = "rabbitmq-quorum";
const MIRRORED: &str = "rabbitmq-mirrored";
const STREAM: &str = "rabbitmq-stream";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Supported,
    Refuted,
    Inconclusive,
    NotMeasured,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Supported => "supported",
            Outcome::Refuted => "refuted",
            Outcome::Inconclusive => "inconclusive",
            Outcome::NotMeasured => "not measured",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    /// "C1".."C6".
    pub claim: &'static str,
    /// The claim in short, from docs/claims.md.
    pub title: &'static str,
    pub outcome: Outcome,
    /// The rule in words, with its thresholds.
    pub rule: String,
    /// The figures the rule used (or what was missing), one short line each.
    pub numbers: Vec<String>,
}

/// What one results folder holds (a run may hold only some of it).
pub struct Evidence<'a> {
    pub summary: &'a [SummaryRow],
    pub faults: &'a [FaultRow],
    /// replica_lag.csv (Redis backends only).
    pub replica_lag: &'a [LagSample],
    /// cpu.csv: figures a verdict shows beside its rule, never part of it.
    pub cpu: &'a [CpuSample],
}

impl<'a> Evidence<'a> {
    /// Everything a results folder holds.
    pub fn of(run: &'a RunResults) -> Self {
        Evidence {
            summary: &run.summary,
            faults: &run.faults,
            replica_lag: &run.replica_lag,
            cpu: &run.cpu,
        }
    }

    /// For one backend with CPU samples: the mean cores used by all its nodes and the harness
    /// together, and its busiest node with its mean (the first and last samples, partial
    /// intervals at the load's edges, left out when there are enough).
    fn cpu_use(&self, backend: &str) -> Option<(f64, String, f64)> {
        let mut by_node: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let host = crate::metrics::cpu::HOST;
        for s in self
            .cpu
            .iter()
            .filter(|s| s.backend == backend && s.node != host)
        {
            by_node.entry(s.node.as_str()).or_default().push(s.cpu);
        }
        let means: Vec<(&str, f64)> = by_node
            .into_iter()
            .map(|(node, v)| {
                let core = if v.len() > 4 {
                    &v[1..v.len() - 1]
                } else {
                    &v[..]
                };
                (node, core.iter().sum::<f64>() / core.len() as f64)
            })
            .collect();
        let total: f64 = means.iter().map(|(_, m)| m).sum();
        let (node, busiest) = means
            .iter()
            .filter(|(n, _)| *n != "harness")
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        Some((total, node.to_string(), *busiest))
    }
}

/// The six verdicts, C1..C6 in order.
pub fn verdicts(e: &Evidence) -> Vec<Verdict> {
    vec![c1(e), c2(e), c3(e), c4(e), c5(e), c6(e)]
}

fn is_ok(status: &str) -> bool {
    status.starts_with("ok")
}

fn is_rabbit(backend_type: &str) -> bool {
    backend_type.starts_with("rabbitmq-")
}

fn is_node_fault(f: &FaultRow) -> bool {
    f.action == "kill" || f.action == "stop" || f.action == "pause"
}

fn is_leader_kill(f: &FaultRow) -> bool {
    f.action == "kill" && f.target.starts_with("leader-of:")
}

fn is_consumer_kill(f: &FaultRow) -> bool {
    f.action == "kill-consumer"
}

impl Evidence<'_> {
    /// Summary rows with an ok status.
    fn backends(&self) -> impl Iterator<Item = &SummaryRow> {
        self.summary.iter().filter(|r| is_ok(&r.status))
    }

    /// The ok fault rows of one backend (by label) that `pick` selects.
    fn faults_of<'s>(
        &'s self,
        label: &'s str,
        pick: fn(&FaultRow) -> bool,
    ) -> impl Iterator<Item = &'s FaultRow> + 's {
        self.faults
            .iter()
            .filter(move |f| is_ok(&f.status) && f.backend == label && pick(f))
    }

    /// Ok backends of the given types, each with its ok fault rows that `pick` selects (only
    /// backends with at least one).
    fn with_faults(
        &self,
        types: &[&str],
        pick: fn(&FaultRow) -> bool,
    ) -> Vec<(&SummaryRow, Vec<&FaultRow>)> {
        self.backends()
            .filter(|r| types.contains(&r.backend_type.as_str()))
            .map(|r| (r, self.faults_of(&r.backend, pick).collect::<Vec<_>>()))
            .filter(|(_, fs)| !fs.is_empty())
            .collect()
    }
}

fn verdict(
    claim: &'static str,
    title: &'static str,
    outcome: Outcome,
    rule: String,
    numbers: Vec<String>,
) -> Verdict {
    Verdict {
        claim,
        title,
        outcome,
        rule,
        numbers,
    }
}

/// A row's name in a verdict's figures, with what its confirm guaranteed (older folders have
/// no guarantee column).
fn name(r: &SummaryRow) -> String {
    if r.guarantee.is_empty() {
        format!("{} ({})", r.backend, r.backend_type)
    } else {
        format!(
            "{} ({}; confirm: {})",
            r.backend, r.backend_type, r.guarantee
        )
    }
}

fn seconds(s: f64) -> String {
    if s.is_finite() {
        format!("{s:.2} s")
    } else {
        "never recovered".to_string()
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "no sample".to_string(), |x| format!("{x:.2} ms"))
}

/// C1: under a node fault some RabbitMQ setting loses messages while one with confirms does not.
fn c1(e: &Evidence) -> Verdict {
    const TITLE: &str = "RabbitMQ loses messages depending on ack/confirm/persistence settings";
    let rule = "RabbitMQ backends that went through a node fault (a kill or stop row in \
        faults.csv). Supported if one of them lost messages (lost > 0, or, without confirms \
        (confirmed = 0), unconfirmed_missing > 0: sent and never received) while another of \
        them with confirms (confirmed > 0) lost none (lost = 0); refuted if none of them lost \
        anything (lost = 0 and unconfirmed_missing = 0); inconclusive otherwise."
        .to_string();
    let faulted: Vec<&SummaryRow> = e
        .backends()
        .filter(|r| is_rabbit(&r.backend_type))
        .filter(|r| e.faults_of(&r.backend, is_node_fault).next().is_some())
        .collect();
    if faulted.is_empty() {
        let numbers = vec!["no RabbitMQ backend with an ok kill or stop fault row".to_string()];
        return verdict("C1", TITLE, Outcome::NotMeasured, rule, numbers);
    }
    let lost_some = |r: &SummaryRow| r.lost > 0 || (r.confirmed == 0 && r.unconfirmed_missing > 0);
    let mut numbers: Vec<String> = faulted
        .iter()
        .map(|r| {
            let faults: Vec<String> = e
                .faults_of(&r.backend, is_node_fault)
                .map(|f| format!("{} {}", f.action, f.target))
                .collect();
            format!(
                "{}: lost {} of {} confirmed ({} more still in the broker when the drain stopped); {} unconfirmed never received; {} duplicates (after {})",
                name(r),
                r.lost,
                r.confirmed,
                r.undelivered,
                r.unconfirmed_missing,
                r.duplicates,
                faults.join(", ")
            )
        })
        .collect();
    let lossy: Vec<&str> = faulted
        .iter()
        .filter(|r| lost_some(r))
        .map(|r| r.backend.as_str())
        .collect();
    let safe: Vec<&str> = faulted
        .iter()
        // A consumer that was still behind cannot show that nothing was lost.
        .filter(|r| r.confirmed > 0 && r.lost == 0 && r.undelivered == 0)
        .map(|r| r.backend.as_str())
        .collect();
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    numbers.push(format!("lost messages: {}", list(&lossy)));
    numbers.push(format!("with confirms, lost none: {}", list(&safe)));
    let outcome = if !lossy.is_empty() && !safe.is_empty() {
        Outcome::Supported
    } else if faulted
        .iter()
        .all(|r| r.lost == 0 && r.unconfirmed_missing == 0)
    {
        Outcome::Refuted
    } else {
        Outcome::Inconclusive
    };
    verdict("C1", TITLE, outcome, rule, numbers)
}

/// C2: replica lag, p99 per backend over all its replicas' samples (replica_lag.csv). A sample
/// is a pair of bounds (the leader and the replica are not read at the same instant): the p99 of
/// the upper bounds is at least the true p99, that of the lower bounds at most, so each side of
/// the rule uses the bound that cannot flatter it.
fn c2(e: &Evidence) -> Verdict {
    const TITLE: &str = "replicas lag behind the leader";
    let rule = "Replica lag in messages, sampled during the run (replica_lag.csv), p99 over every \
        replica of a backend. Each sample is a bound, not an exact figure: the leader and the \
        replica cannot be read at the same instant (Redis: the replica is read before and after \
        its master, giving a lower bound `lag_messages_min` and an upper bound `lag_messages`). \
        Supported (RabbitMQ's replicated queues lag, Redis's replicas less) if every \
        quorum/mirrored backend's lower-bound p99 is above every Redis backend's upper-bound \
        p99; refuted if every Redis backend's lower-bound p99 is at least every \
        quorum/mirrored backend's upper-bound p99; inconclusive otherwise."
        .to_string();
    // (p99 of the lower bounds, p99 of the upper bounds); a sample without a lower bound (runs
    // recorded before the bounds) counts as 0 there, which is always a true lower bound.
    let p99 = |r: &SummaryRow| {
        let samples = e.replica_lag.iter().filter(|s| s.backend == r.backend);
        let lower: Vec<f64> = samples
            .clone()
            .map(|s| s.lag_messages_min.unwrap_or(0.0))
            .collect();
        let upper: Vec<f64> = samples.map(|s| s.lag_messages).collect();
        Some((percentile_99(lower)?, percentile_99(upper)?))
    };
    let mut numbers = Vec::new();
    let mut side = |types: &[&str]| -> Vec<(f64, f64)> {
        e.backends()
            .filter(|r| types.contains(&r.backend_type.as_str()))
            .filter_map(|r| {
                let (lo, hi) = p99(r)?;
                numbers.push(format!(
                    "{}: replica lag p99 between {lo:.0} and {hi:.0} messages (bounds)",
                    name(r)
                ));
                Some((lo, hi))
            })
            .collect()
    };
    let redis = side(&[REDIS]);
    let rabbit = side(&[QUORUM, MIRRORED]);
    if redis.is_empty() || rabbit.is_empty() {
        numbers.push(
            "missing: replica_lag.csv samples for a redis-streams backend and a quorum or \
             mirrored backend (brokerbench samples Redis replicas only: RabbitMQ refreshes the \
             Raft indexes it publishes only every 5 s, and nothing for mirrors)"
                .into(),
        );
        return verdict("C2", TITLE, Outcome::NotMeasured, rule, numbers);
    }
    let highest =
        |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).fold(f64::MIN, f64::max);
    let lowest =
        |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).fold(f64::MAX, f64::min);
    let outcome = if lowest(&rabbit, |b| b.0) > highest(&redis, |b| b.1) {
        Outcome::Supported
    } else if lowest(&redis, |b| b.0) >= highest(&rabbit, |b| b.1) {
        Outcome::Refuted
    } else {
        Outcome::Inconclusive
    };
    verdict("C2", TITLE, outcome, rule, numbers)
}

/// The 99th percentile (nearest rank) of `values`, None when there are none.
fn percentile_99(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let i = ((values.len() as f64 * 0.99).ceil() as usize).clamp(1, values.len()) - 1;
    Some(values[i])
}

/// The number of destinations of a summary row's run (0 in folders written before
/// summary.csv recorded it: unknown).
fn destination_count(row: &SummaryRow) -> Option<u32> {
    (row.destinations > 0).then_some(row.destinations as u32)
}

/// C3: throughput against the number of destinations, per backend type, at max rate.
fn c3(e: &Evidence) -> Verdict {
    c3_with(e, destination_count)
}

/// C3 with the destination count of a row given by `count`.
fn c3_with(e: &Evidence, count: impl Fn(&SummaryRow) -> Option<u32>) -> Verdict {
    const TITLE: &str = "one leader caps RabbitMQ throughput; Redis Cluster spreads";
    let wanted: Vec<String> = C3_DESTINATION_COUNTS
        .iter()
        .map(|n| n.to_string())
        .collect();
    let rule = format!(
        "Max-rate runs (no target rate) of the same backend type at several of {} destinations; \
         growth = received msg/s at the most destinations / at the fewest. Supported if every \
         RabbitMQ quorum or mirrored series grows by at most {C3_RABBIT_FLAT}× while Redis grows \
         by at least {C3_REDIS_GROWTH}×; refuted if a RabbitMQ quorum or mirrored series grows \
         at least as much as Redis, or Redis grows by less than {C3_RABBIT_FLAT}×; inconclusive \
         otherwise. On one host all nodes share the cores: growth shows spreading over masters, \
         not over machines.",
        wanted.join(", ")
    );
    let max_rate: Vec<&SummaryRow> = e.backends().filter(|r| r.target_rate.is_none()).collect();
    // Per type, per destination count: the highest received rate.
    let mut series: BTreeMap<&str, BTreeMap<u32, f64>> = BTreeMap::new();
    for r in &max_rate {
        if let Some(n) = count(r) {
            let best = series
                .entry(r.backend_type.as_str())
                .or_default()
                .entry(n)
                .or_insert(r.received_per_s);
            *best = best.max(r.received_per_s);
        }
    }
    series.retain(|_, by_count| by_count.len() >= 2);
    if series.is_empty() {
        let numbers = vec![
            format!(
                "needs max-rate runs with {} destinations (scenarios/scaling.toml, a backend's `destinations` setting)",
                wanted.join(", ")
            ),
            format!("max-rate rows here: {}", max_rate.len()),
        ];
        return verdict("C3", TITLE, Outcome::NotMeasured, rule, numbers);
    }
    let mut numbers: Vec<String> = series
        .iter()
        .map(|(ty, by_count)| {
            let points: Vec<String> = by_count
                .iter()
                .map(|(n, rate)| format!("{n} → {rate:.0} msg/s"))
                .collect();
            format!("{ty}: {}", points.join(", "))
        })
        .collect();
    // Growth of each series from its fewest to its most destinations.
    let growth = |ty: &str| {
        let by_count = series.get(ty)?;
        let (first, last) = (by_count.values().next()?, by_count.values().last()?);
        (*first > 0.0).then(|| last / first)
    };
    let redis = growth(REDIS);
    let rabbit: Vec<(&str, f64)> = [QUORUM, MIRRORED]
        .into_iter()
        .filter_map(|ty| growth(ty).map(|g| (ty, g)))
        .collect();
    let Some(redis) = redis.filter(|_| !rabbit.is_empty()) else {
        numbers.push(
            "missing: a redis-streams series and a rabbitmq-quorum or rabbitmq-mirrored series, \
             each at two destination counts or more"
                .into(),
        );
        return verdict("C3", TITLE, Outcome::NotMeasured, rule, numbers);
    };
    numbers.push(format!("growth: redis-streams {redis:.2}×"));
    for (ty, g) in &rabbit {
        numbers.push(format!("growth: {ty} {g:.2}×"));
    }
    // Where the CPU went (cpu.csv): a host with every core busy cannot show growth.
    for r in max_rate.iter().filter(|r| count(r).is_some()) {
        if let Some((total, node, busiest)) = e.cpu_use(&r.backend) {
            numbers.push(format!(
                "{}: nodes and harness used {total:.2} cores on average; busiest node {node} at {busiest:.2}",
                name(r)
            ));
        }
    }
    let outcome = if rabbit.iter().any(|(_, g)| *g >= redis) || redis < C3_RABBIT_FLAT {
        Outcome::Refuted
    } else if rabbit.iter().all(|(_, g)| *g <= C3_RABBIT_FLAT) && redis >= C3_REDIS_GROWTH {
        Outcome::Supported
    } else {
        Outcome::Inconclusive
    };
    verdict("C3", TITLE, outcome, rule, numbers)
}

/// Publish unavailability after one fault in seconds: 0 when unaffected, infinite when never
/// recovered, None when the row does not say.
fn publish_unavailable(f: &FaultRow) -> Option<f64> {
    match f.publish_recovered.as_str() {
        "unaffected" => Some(0.0),
        "no" => Some(f64::INFINITY),
        "yes" => f.publish_unavailable_s,
        _ => None,
    }
}

/// One backend's worst publish unavailability over its leader kills, with the numbers lines.
fn worst_unavailable(
    r: &SummaryRow,
    faults: &[&FaultRow],
    numbers: &mut Vec<String>,
) -> Option<f64> {
    let known: Vec<f64> = faults
        .iter()
        .filter_map(|f| publish_unavailable(f))
        .collect();
    let unknown = faults.len() - known.len();
    if unknown > 0 {
        numbers.push(format!(
            "{}: {unknown} leader kill(s) without a publish unavailability",
            name(r)
        ));
    }
    let worst = known.into_iter().reduce(f64::max)?;
    numbers.push(format!(
        "{}: publish unavailable {} (worst of {} leader kill(s))",
        name(r),
        seconds(worst),
        faults.len() - unknown
    ));
    Some(worst)
}

/// The smallest of some backends' unavailabilities, with its label.
fn smallest<'a>(v: &[(&'a str, f64)]) -> Option<(&'a str, f64)> {
    v.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))
}

/// C4: after a leader kill Redis publishes again no later than RabbitMQ's replicated queues (a),
/// and Redis's other shards keep their throughput (b).
fn c4(e: &Evidence) -> Verdict {
    const TITLE: &str = "leader death costs downtime on RabbitMQ; Redis fails over fast and only \
        the dead master's shard is hit";
    let rule = format!(
        "Leader kills (kill leader-of:*). Per backend, publish unavailability is the worst over \
         its leader kills (unaffected = 0 s; not recovered = until the end, worse than any \
         number). (a) the best Redis backend's unavailability ≤ the smallest of the RabbitMQ \
         quorum and mirrored backends with publisher confirms (without confirms a publish \
         cannot be seen to fail); (b) on every Redis leader kill with figures for the \
         other destinations, their received msg/s during the outage ≥ {C4_OTHERS_MIN_SHARE} × \
         before. Supported if (a) and (b) hold; refuted if (a) fails or (b) fails on every Redis \
         row; inconclusive otherwise."
    );
    let mut numbers = Vec::new();
    let redis = e.with_faults(&[REDIS], is_leader_kill);
    let mut rabbit = e.with_faults(&[QUORUM, MIRRORED], is_leader_kill);
    rabbit.retain(|(r, _)| r.confirmed > 0);
    let mut redis_outage = Vec::new();
    for (r, fs) in &redis {
        if let Some(s) = worst_unavailable(r, fs, &mut numbers) {
            redis_outage.push((r.backend.as_str(), s));
        }
    }
    let mut rabbit_outage = Vec::new();
    for (r, fs) in &rabbit {
        if let Some(s) = worst_unavailable(r, fs, &mut numbers) {
            rabbit_outage.push((r.backend.as_str(), s));
        }
    }
    let (Some(best_redis), Some(best_rabbit)) = (smallest(&redis_outage), smallest(&rabbit_outage))
    else {
        if redis_outage.is_empty() {
            numbers
                .push("missing: a redis-streams leader kill with a publish unavailability".into());
        }
        if rabbit_outage.is_empty() {
            numbers.push(
                "missing: a rabbitmq-quorum or rabbitmq-mirrored leader kill with a publish \
                 unavailability"
                    .into(),
            );
        }
        return verdict("C4", TITLE, Outcome::NotMeasured, rule, numbers);
    };
    let a_holds = best_redis.1 <= best_rabbit.1;
    numbers.push(format!(
        "(a) {}: best Redis {} ({}, best of {} Redis backend(s)) {} smallest RabbitMQ {} ({})",
        if a_holds { "holds" } else { "fails" },
        seconds(best_redis.1),
        best_redis.0,
        redis_outage.len(),
        if a_holds { "≤" } else { ">" },
        seconds(best_rabbit.1),
        best_rabbit.0,
    ));
    // (b): every Redis leader kill with a non-zero baseline on the other destinations.
    let mut held = 0;
    let mut failed = Vec::new();
    for (r, fs) in &redis {
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
                "{} fault {}: other destinations {before:.0} → {during:.0} msg/s ({:.0} %)",
                r.backend,
                f.fault,
                100.0 * during / before
            ));
            if ok {
                held += 1;
            } else {
                failed.push(format!("{} fault {}", r.backend, f.fault));
            }
        }
    }
    let b_rows = held + failed.len();
    numbers.push(if b_rows == 0 {
        "(b) not measured: no Redis leader kill with the other destinations' throughput".into()
    } else if failed.is_empty() {
        format!("(b) holds on all {b_rows} Redis row(s)")
    } else {
        format!(
            "(b) fails on {} of {b_rows} Redis row(s): {}",
            failed.len(),
            failed.join(", ")
        )
    });
    let outcome = if !a_holds || (b_rows > 0 && held == 0) {
        Outcome::Refuted
    } else if b_rows > 0 && failed.is_empty() {
        Outcome::Supported
    } else {
        Outcome::Inconclusive
    };
    verdict("C4", TITLE, outcome, rule, numbers)
}

/// One kill-consumer row as a line of numbers.
fn consumer_kill_line(r: &SummaryRow, f: &FaultRow) -> String {
    let n = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |x| x.to_string());
    format!(
        "{} fault {} ({}): abandoned {}, reprocessed {}, last redelivered after {}",
        name(r),
        f.fault,
        f.target,
        n(f.abandoned),
        n(f.reprocessed),
        f.redelivery_last_s
            .map_or_else(|| "-".to_string(), |s| format!("{s:.2} s"))
    )
}

/// C5: on Redis, every message a killed consumer held is processed by another consumer.
fn c5(e: &Evidence) -> Verdict {
    const TITLE: &str = "a stream makes reprocessing unacked messages simple (XACK/XAUTOCLAIM)";
    let rule = "Consumer kills (kill-consumer) on redis-streams. Supported if on every one the \
        killed consumer held messages (abandoned > 0) and all of them were processed again \
        (reprocessed = abandoned); refuted if on some, fewer were (reprocessed < abandoned); \
        inconclusive otherwise (e.g. nothing was in flight: abandoned = 0). RabbitMQ's consumer \
        kills are listed for comparison."
        .to_string();
    let redis = e.with_faults(&[REDIS], is_consumer_kill);
    let rabbit = e.with_faults(&[QUORUM, MIRRORED, STREAM], is_consumer_kill);
    let rows: Vec<(&SummaryRow, &FaultRow)> = redis
        .iter()
        .flat_map(|(r, fs)| fs.iter().map(move |f| (*r, *f)))
        .collect();
    let mut numbers: Vec<String> = rows.iter().map(|(r, f)| consumer_kill_line(r, f)).collect();
    for (r, fs) in &rabbit {
        for f in fs {
            numbers.push(format!("for comparison, {}", consumer_kill_line(r, f)));
        }
    }
    if rows.is_empty() {
        numbers.insert(
            0,
            "missing: a kill-consumer row on redis-streams".to_string(),
        );
        return verdict("C5", TITLE, Outcome::NotMeasured, rule, numbers);
    }
    let counts: Vec<Option<(u64, u64)>> = rows
        .iter()
        .map(|(_, f)| f.abandoned.zip(f.reprocessed))
        .collect();
    let missing = counts.iter().filter(|c| c.is_none()).count();
    if missing > 0 {
        numbers.push(format!(
            "{missing} Redis consumer kill(s) without abandoned/reprocessed counts"
        ));
    }
    let outcome = if counts.iter().flatten().any(|&(a, p)| p < a) {
        Outcome::Refuted
    } else if counts
        .iter()
        .all(|c| matches!(c, Some((a, p)) if *a > 0 && p == a))
    {
        Outcome::Supported
    } else {
        Outcome::Inconclusive
    };
    verdict("C5", TITLE, outcome, rule, numbers)
}

/// C6: at max rate, Redis Streams against RabbitMQ streams, fastest backend of each.
fn c6(e: &Evidence) -> Verdict {
    const TITLE: &str = "RabbitMQ streams vs Redis Streams (not compared by the proposal)";
    let rule = format!(
        "Max-rate runs (no target rate) of backends without faults; the fastest (received \
         msg/s) redis-streams and rabbitmq-stream backends. Supported (Redis Streams is faster) \
         if Redis receives ≥ {C6_REDIS_MIN_SPEEDUP} × the stream's msg/s and its e2e p99 is no \
         higher; refuted if the stream receives at least as many msg/s as Redis; inconclusive \
         otherwise."
    );
    let fastest = |ty: &str| {
        let rows: Vec<&SummaryRow> = e
            .backends()
            .filter(|r| r.backend_type == ty && r.target_rate.is_none())
            .filter(|r| !e.faults.iter().any(|f| f.backend == r.backend))
            .collect();
        let best = rows
            .iter()
            .copied()
            .max_by(|a, b| a.received_per_s.total_cmp(&b.received_per_s));
        best.map(|b| (b, rows.len()))
    };
    let line = |(r, of): (&SummaryRow, usize)| {
        format!(
            "{}: {:.0} msg/s received, e2e p99 {} (fastest of {of} max-rate row(s))",
            name(r),
            r.received_per_s,
            ms(r.e2e_p99_ms)
        )
    };
    let (redis, stream) = (fastest(REDIS), fastest(STREAM));
    let mut numbers: Vec<String> = redis.into_iter().chain(stream).map(line).collect();
    let (Some((redis, _)), Some((stream, _))) = (redis, stream) else {
        for (found, ty) in [(redis, REDIS), (stream, STREAM)] {
            if found.is_none() {
                numbers.push(format!("missing: a max-rate {ty} row without faults"));
            }
        }
        return verdict("C6", TITLE, Outcome::NotMeasured, rule, numbers);
    };
    let (r, s) = (redis.received_per_s, stream.received_per_s);
    if s > 0.0 {
        numbers.push(format!("Redis / stream msg/s: {:.2}", r / s));
    }
    let latency_ok = match (redis.e2e_p99_ms, stream.e2e_p99_ms) {
        (Some(a), Some(b)) => Some(a <= b),
        _ => None,
    };
    if latency_ok.is_none() {
        numbers.push("e2e p99 missing on one side: latency not compared".to_string());
    }
    let outcome = if s >= r {
        Outcome::Refuted
    } else if r >= C6_REDIS_MIN_SPEEDUP * s && latency_ok == Some(true) {
        Outcome::Supported
    } else {
        Outcome::Inconclusive
    };
    verdict("C6", TITLE, outcome, rule, numbers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(label: &str, ty: &str) -> SummaryRow {
        SummaryRow {
            backend: label.into(),
            backend_type: ty.into(),
            status: "ok".into(),
            ..Default::default()
        }
    }

    fn fault(label: &str, action: &str, target: &str) -> FaultRow {
        FaultRow {
            backend: label.into(),
            action: action.into(),
            target: target.into(),
            status: "ok".into(),
            ..Default::default()
        }
    }

    fn run(summary: &[SummaryRow], faults: &[FaultRow]) -> Vec<Verdict> {
        verdicts(&Evidence {
            summary,
            faults,
            replica_lag: &[],
            cpu: &[],
        })
    }

    fn outcome(claim: usize, summary: &[SummaryRow], faults: &[FaultRow]) -> Outcome {
        run(summary, faults)[claim - 1].outcome
    }

    #[test]
    fn six_verdicts_in_order_none_measured_without_evidence() {
        let v = run(&[], &[]);
        let claims: Vec<&str> = v.iter().map(|v| v.claim).collect();
        assert_eq!(claims, ["C1", "C2", "C3", "C4", "C5", "C6"]);
        for v in &v {
            assert_eq!(v.outcome, Outcome::NotMeasured, "{}", v.claim);
            assert!(!v.rule.is_empty() && !v.numbers.is_empty(), "{}", v.claim);
            assert!(!v.title.is_empty());
        }
    }

    #[test]
    fn outcome_names() {
        assert_eq!(Outcome::NotMeasured.as_str(), "not measured");
        assert_eq!(Outcome::Supported.as_str(), "supported");
        assert_eq!(
            serde_json::to_string(&Outcome::NotMeasured).unwrap(),
            "\"not-measured\""
        );
    }

    // ---- C1 ----

    /// A RabbitMQ backend with confirms: `lost` of 1000 confirmed.
    fn confirmed(label: &str, lost: u64) -> SummaryRow {
        SummaryRow {
            confirmed: 1000,
            lost,
            ..backend(label, QUORUM)
        }
    }

    /// A RabbitMQ backend without confirms: `missing` sent and never received.
    fn unconfirmed(label: &str, missing: u64) -> SummaryRow {
        SummaryRow {
            unconfirmed: 1000,
            unconfirmed_missing: missing,
            ..backend(label, MIRRORED)
        }
    }

    fn kills(labels: &[&str]) -> Vec<FaultRow> {
        labels
            .iter()
            .map(|l| fault(l, "kill", "leader-of:0"))
            .collect()
    }

    #[test]
    fn c1_supported_when_one_setting_loses_and_one_with_confirms_does_not() {
        let s = [confirmed("q", 0), unconfirmed("nc", 12)];
        let v = &run(&s, &kills(&["q", "nc"]))[0];
        assert_eq!(v.outcome, Outcome::Supported);
        assert!(v
            .numbers
            .iter()
            .any(|n| n.contains("nc (rabbitmq-mirrored)")
                && n.contains("12 unconfirmed never received")));
        // Confirmed losses count as well; a stop is a node fault too.
        let s = [confirmed("q", 0), confirmed("q2", 3)];
        let f = [
            fault("q", "stop", "replica-of:0"),
            fault("q2", "kill", "node:rabbit1"),
        ];
        assert_eq!(outcome(1, &s, &f), Outcome::Supported);
    }

    #[test]
    fn c1_refuted_when_no_faulted_backend_lost_anything() {
        let s = [confirmed("q", 0), unconfirmed("nc", 0)];
        assert_eq!(outcome(1, &s, &kills(&["q", "nc"])), Outcome::Refuted);
    }

    #[test]
    fn c1_inconclusive_when_all_lost_or_no_safe_setting() {
        let s = [confirmed("q", 1), unconfirmed("nc", 5)];
        assert_eq!(outcome(1, &s, &kills(&["q", "nc"])), Outcome::Inconclusive);
        // With confirms, unconfirmed_missing is no loss but not a clean run either.
        let s = [SummaryRow {
            unconfirmed_missing: 4,
            ..confirmed("q", 0)
        }];
        assert_eq!(outcome(1, &s, &kills(&["q"])), Outcome::Inconclusive);
    }

    #[test]
    fn c1_not_measured_without_a_faulted_rabbitmq_backend() {
        // A Redis backend went through a fault, the RabbitMQ one did not.
        let s = [confirmed("q", 5), backend("redis", REDIS)];
        let f = [
            fault("redis", "kill", "leader-of:0"),
            fault("q", "kill-consumer", "consumer:0"),
        ];
        let v = &run(&s, &f)[0];
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(v.numbers[0].contains("no RabbitMQ backend"));
    }

    #[test]
    fn c1_compares_faulted_backends_only() {
        // The clean backend with confirms ran without a fault: no comparison.
        let s = [confirmed("q", 0), unconfirmed("nc", 12)];
        assert_eq!(outcome(1, &s, &kills(&["nc"])), Outcome::Inconclusive);
    }

    #[test]
    fn c1_ignores_rows_that_are_not_ok() {
        // The lossy backend was interrupted, the fault on the other could not be injected.
        let mut s = vec![confirmed("q", 0), unconfirmed("nc", 12)];
        s[1].status = "interrupted".into();
        assert_eq!(outcome(1, &s, &kills(&["q", "nc"])), Outcome::Refuted);
        let mut f = kills(&["q", "nc"]);
        f[0].status = "error: kill failed".into();
        s[1].status = "ok".into();
        assert_eq!(outcome(1, &s, &f), Outcome::Inconclusive);
        s[1].status = "error: no cluster".into();
        assert_eq!(outcome(1, &s, &f), Outcome::NotMeasured);
    }

    // ---- C2 ----

    #[test]
    fn c2_is_not_measured_without_lag_samples() {
        let s = [confirmed("q", 0)];
        let v = &run(&s, &kills(&["q"]))[1];
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(v.numbers.iter().any(|n| n.contains("replica_lag.csv")));
    }

    /// Samples whose lower and upper bounds are equal.
    fn lag(backend: &str, values: &[f64]) -> Vec<LagSample> {
        let bounds: Vec<(f64, f64)> = values.iter().map(|v| (*v, *v)).collect();
        lag_bounds(backend, &bounds)
    }

    /// Samples of (lower, upper) bounds.
    fn lag_bounds(backend: &str, bounds: &[(f64, f64)]) -> Vec<LagSample> {
        bounds
            .iter()
            .enumerate()
            .map(|(i, (lo, hi))| LagSample {
                backend: backend.into(),
                t_s: i as f64,
                node: "n".into(),
                lag_messages: *hi,
                lag_messages_min: Some(*lo),
            })
            .collect()
    }

    fn c2_verdict(redis: Vec<LagSample>, mirrored: Vec<LagSample>) -> Verdict {
        let s = [backend("redis", REDIS), backend("mirrored", MIRRORED)];
        let samples = [redis, mirrored].concat();
        c2(&Evidence {
            summary: &s,
            faults: &[],
            replica_lag: &samples,
            cpu: &[],
        })
    }

    fn c2_outcome(redis: &[f64], mirrored: &[f64]) -> Outcome {
        c2_verdict(lag("redis", redis), lag("mirrored", mirrored)).outcome
    }

    #[test]
    fn c2_compares_the_p99_lag_of_both_sides() {
        assert_eq!(
            c2_outcome(&[0.0, 1.0, 2.0], &[10.0, 50.0, 400.0]),
            Outcome::Supported
        );
        assert_eq!(c2_outcome(&[100.0, 500.0], &[1.0, 3.0]), Outcome::Refuted);
        // Only one side sampled: not measured.
        assert_eq!(c2_outcome(&[], &[1.0, 3.0]), Outcome::NotMeasured);
    }

    #[test]
    fn c2_judges_lag_by_the_bound_that_cannot_flatter() {
        let mirrored = || lag("mirrored", &[40.0, 50.0]);
        // Redis between 5 and 60: its upper bound overlaps the other side, its lower bound does
        // not reach it either: inconclusive, not supported.
        let v = c2_verdict(lag_bounds("redis", &[(5.0, 60.0), (2.0, 30.0)]), mirrored());
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(
            v.numbers
                .iter()
                .any(|n| n.contains("replica lag p99 between 5 and 60 messages (bounds)")),
            "{:?}",
            v.numbers
        );
        assert!(v.rule.contains("bound"), "{}", v.rule);
        // Both bounds below: supported; lower bound at or above: refuted.
        let v = c2_verdict(lag_bounds("redis", &[(1.0, 39.0)]), mirrored());
        assert_eq!(v.outcome, Outcome::Supported);
        let v = c2_verdict(lag_bounds("redis", &[(50.0, 90.0)]), mirrored());
        assert_eq!(v.outcome, Outcome::Refuted);
        // Runs recorded before the lower bound: it counts as 0, so no refutation.
        let mut old = lag("redis", &[90.0]);
        old[0].lag_messages_min = None;
        assert_eq!(c2_verdict(old, mirrored()).outcome, Outcome::Inconclusive);
    }

    // ---- C3 ----

    fn max_rate(label: &str, ty: &str, per_s: f64) -> SummaryRow {
        SummaryRow {
            received_per_s: per_s,
            ..backend(label, ty)
        }
    }

    #[test]
    fn c3_not_measured_without_destination_counts() {
        assert_eq!(outcome(3, &[], &[]), Outcome::NotMeasured);
        let s = [max_rate("redis", REDIS, 5e4), max_rate("q", QUORUM, 2e4)];
        let v = &run(&s, &[])[2];
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(v.numbers[0].contains("1, 3, 6, 12 destinations"));
    }

    /// The destination count plugged in from the label's suffix ("redis-3" → 3).
    fn count_from_label(r: &SummaryRow) -> Option<u32> {
        r.backend.rsplit('-').next()?.parse().ok()
    }

    #[test]
    fn c3_lists_series_once_counts_are_known() {
        let mut s = vec![
            max_rate("redis-1", REDIS, 2e4),
            max_rate("redis-3", REDIS, 5e4),
            max_rate("q-1", QUORUM, 1e4),
            max_rate("q-3", QUORUM, 1.5e4),
            max_rate("stream-3", STREAM, 9e4),
            SummaryRow {
                target_rate: Some(1000.0),
                ..max_rate("q-6", QUORUM, 1e3)
            },
            SummaryRow {
                status: "interrupted".into(),
                ..max_rate("redis-6", REDIS, 1e3)
            },
        ];
        let v = c3_with(
            &Evidence {
                summary: &s,
                faults: &[],
                replica_lag: &[],
                cpu: &[],
            },
            count_from_label,
        );
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(
            v.numbers,
            [
                "rabbitmq-quorum: 1 → 10000 msg/s, 3 → 15000 msg/s",
                "redis-streams: 1 → 20000 msg/s, 3 → 50000 msg/s",
                "growth: redis-streams 2.50×",
                "growth: rabbitmq-quorum 1.50×",
            ]
        );
        // CPU figures are listed beside the rule, per backend with samples; they do not change
        // the outcome.
        let cpu_rows: Vec<CpuSample> = [
            ("q-1", "rabbit1", [0.2, 0.7, 0.7, 0.7, 0.7, 0.2]),
            ("q-1", "rabbit2", [0.1, 0.4, 0.4, 0.4, 0.4, 0.1]),
            ("q-1", "harness", [0.1, 0.3, 0.3, 0.3, 0.3, 0.1]),
        ]
        .into_iter()
        .flat_map(|(backend, node, values)| {
            values
                .into_iter()
                .enumerate()
                .map(move |(t, cpu)| CpuSample {
                    backend: backend.into(),
                    t_s: t as f64,
                    node: node.into(),
                    cpu,
                })
        })
        .collect();
        let v = c3_with(
            &Evidence {
                summary: &s,
                faults: &[],
                replica_lag: &[],
                cpu: &cpu_rows,
            },
            count_from_label,
        );
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert_eq!(
            v.numbers.last().map(String::as_str),
            Some(
                "q-1 (rabbitmq-quorum): nodes and harness used 1.40 cores on average; busiest node rabbit1 at 0.70"
            ),
            "{:?}",
            v.numbers
        );
        s.retain(|r| !r.backend.ends_with("-1"));
        let v = c3_with(
            &Evidence {
                summary: &s,
                faults: &[],
                replica_lag: &[],
                cpu: &[],
            },
            count_from_label,
        );
        assert_eq!(v.outcome, Outcome::NotMeasured);
    }

    // ---- C4 ----

    fn leader_kill(label: &str, unavailable: Option<f64>, recovered: &str) -> FaultRow {
        FaultRow {
            publish_unavailable_s: unavailable,
            publish_recovered: recovered.into(),
            ..fault(label, "kill", "leader-of:0")
        }
    }

    fn others(f: FaultRow, before: f64, during: f64) -> FaultRow {
        FaultRow {
            others_baseline_per_s: Some(before),
            others_during_per_s: Some(during),
            ..f
        }
    }

    fn c4_backends() -> Vec<SummaryRow> {
        [
            backend("redis", REDIS),
            backend("redis-wait1", REDIS),
            backend("quorum", QUORUM),
            backend("mirrored", MIRRORED),
            backend("stream", STREAM),
        ]
        .into_iter()
        .map(|r| SummaryRow {
            confirmed: 1000,
            ..r
        })
        .collect()
    }

    fn c3_outcome(rows: &[SummaryRow]) -> Outcome {
        c3_with(
            &Evidence {
                summary: rows,
                faults: &[],
                replica_lag: &[],
                cpu: &[],
            },
            count_from_label,
        )
        .outcome
    }

    #[test]
    fn c3_supported_when_the_quorum_queue_stays_flat_and_redis_grows() {
        let s = [
            max_rate("redis-1", REDIS, 2e4),
            max_rate("redis-12", REDIS, 5e4),
            max_rate("q-1", QUORUM, 1e4),
            max_rate("q-12", QUORUM, 1.1e4),
        ];
        assert_eq!(c3_outcome(&s), Outcome::Supported);
    }

    #[test]
    fn c3_refuted_when_rabbitmq_grows_as_much_as_redis_or_redis_does_not_grow() {
        let s = [
            max_rate("redis-1", REDIS, 2e4),
            max_rate("redis-12", REDIS, 4e4),
            max_rate("q-1", QUORUM, 1e4),
            max_rate("q-12", QUORUM, 2.5e4),
        ];
        assert_eq!(c3_outcome(&s), Outcome::Refuted);
        let s = [
            max_rate("redis-1", REDIS, 2e4),
            max_rate("redis-12", REDIS, 2.1e4),
            max_rate("q-1", QUORUM, 1e4),
            max_rate("q-12", QUORUM, 1e4),
        ];
        assert_eq!(c3_outcome(&s), Outcome::Refuted);
    }

    #[test]
    fn c3_needs_both_sides() {
        let s = [
            max_rate("redis-1", REDIS, 2e4),
            max_rate("redis-12", REDIS, 5e4),
        ];
        assert_eq!(c3_outcome(&s), Outcome::NotMeasured);
    }

    #[test]
    fn c3_reads_the_destination_count_from_summary_csv() {
        let s = [
            SummaryRow {
                destinations: 1,
                ..max_rate("redis", REDIS, 2e4)
            },
            SummaryRow {
                destinations: 12,
                ..max_rate("redis-many", REDIS, 5e4)
            },
            SummaryRow {
                destinations: 1,
                ..max_rate("q", QUORUM, 1e4)
            },
            SummaryRow {
                destinations: 12,
                ..max_rate("q-many", QUORUM, 1e4)
            },
        ];
        assert_eq!(run(&s, &[])[2].outcome, Outcome::Supported);
    }

    #[test]
    fn c4_leaves_out_rabbitmq_backends_without_confirms() {
        let mut s = c4_backends();
        s.push(backend("mirrored-noconfirm", MIRRORED));
        let f = [
            others(leader_kill("redis", Some(2.0), "yes"), 2000.0, 1900.0),
            leader_kill("quorum", Some(3.0), "yes"),
            // No confirms: nothing can be seen to fail, "unaffected" says nothing.
            leader_kill("mirrored-noconfirm", None, "unaffected"),
        ];
        let v = &run(&s, &f)[3];
        assert_eq!(v.outcome, Outcome::Supported, "{:?}", v.numbers);
    }

    #[test]
    fn c4_supported_when_redis_fails_over_first_and_other_shards_keep_going() {
        let f = [
            others(leader_kill("redis", Some(2.0), "yes"), 2000.0, 1900.0),
            others(leader_kill("redis-wait1", Some(9.0), "yes"), 2000.0, 1800.0),
            leader_kill("quorum", Some(3.0), "yes"),
            leader_kill("mirrored", None, "no"),
            // Stream queues are not compared in (a).
            leader_kill("stream", None, "unaffected"),
        ];
        let v = &run(&c4_backends(), &f)[3];
        assert_eq!(v.outcome, Outcome::Supported, "{:?}", v.numbers);
        assert!(v.numbers.iter().any(|n| n
            .starts_with("(a) holds: best Redis 2.00 s (redis, best of 2")
            && n.contains("smallest RabbitMQ 3.00 s (quorum)")));
        assert!(v.numbers.iter().any(|n| n.contains("never recovered")));
        assert!(v
            .numbers
            .iter()
            .any(|n| n == "(b) holds on all 2 Redis row(s)"));
    }

    #[test]
    fn c4_refuted_when_redis_is_slower_than_a_replicated_queue() {
        let f = [
            others(leader_kill("redis", Some(5.0), "yes"), 2000.0, 2000.0),
            leader_kill("quorum", None, "unaffected"),
        ];
        assert_eq!(outcome(4, &c4_backends(), &f), Outcome::Refuted);
        // Never recovered is worse than any number.
        let f = [
            others(leader_kill("redis", None, "no"), 2000.0, 2000.0),
            leader_kill("mirrored", Some(60.0), "yes"),
        ];
        assert_eq!(outcome(4, &c4_backends(), &f), Outcome::Refuted);
    }

    #[test]
    fn c4_refuted_when_every_redis_row_hits_the_other_shards() {
        let f = [
            others(leader_kill("redis", Some(1.0), "yes"), 2000.0, 0.0),
            others(leader_kill("redis-wait1", Some(1.0), "yes"), 2000.0, 1000.0),
            leader_kill("quorum", Some(4.0), "yes"),
        ];
        assert_eq!(outcome(4, &c4_backends(), &f), Outcome::Refuted);
    }

    #[test]
    fn c4_inconclusive_when_some_redis_settings_hit_the_other_shards() {
        let f = [
            others(leader_kill("redis", Some(1.0), "yes"), 2000.0, 1950.0),
            others(leader_kill("redis-wait1", Some(1.0), "yes"), 2000.0, 100.0),
            leader_kill("quorum", Some(4.0), "yes"),
        ];
        let v = &run(&c4_backends(), &f)[3];
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(v
            .numbers
            .iter()
            .any(|n| n == "(b) fails on 1 of 2 Redis row(s): redis-wait1 fault 0"));
        // No figures for the other destinations at all: (b) cannot be decided.
        let f = [
            leader_kill("redis", Some(1.0), "yes"),
            leader_kill("quorum", Some(4.0), "yes"),
        ];
        assert_eq!(outcome(4, &c4_backends(), &f), Outcome::Inconclusive);
    }

    #[test]
    fn c4_not_measured_without_both_sides() {
        assert_eq!(outcome(4, &[], &[]), Outcome::NotMeasured);
        let f = [leader_kill("redis", Some(1.0), "yes")];
        let v = &run(&c4_backends(), &f)[3];
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(v
            .numbers
            .iter()
            .any(|n| n.contains("missing: a rabbitmq-quorum")));
        // A replica kill or a stop is not a leader kill; a stream queue is not compared.
        let f = [
            leader_kill("redis", Some(1.0), "yes"),
            fault("quorum", "kill", "replica-of:0"),
            fault("mirrored", "stop", "leader-of:0"),
            leader_kill("stream", Some(4.0), "yes"),
        ];
        assert_eq!(outcome(4, &c4_backends(), &f), Outcome::NotMeasured);
    }

    #[test]
    fn c4_ignores_rows_that_are_not_ok() {
        let mut f = vec![
            others(leader_kill("redis", Some(1.0), "yes"), 2000.0, 2000.0),
            leader_kill("quorum", Some(0.5), "yes"),
            leader_kill("mirrored", Some(4.0), "yes"),
        ];
        assert_eq!(outcome(4, &c4_backends(), &f), Outcome::Refuted);
        f[1].status = "error: leader not found".into();
        assert_eq!(outcome(4, &c4_backends(), &f), Outcome::Supported);
        let mut s = c4_backends();
        s[3].status = "interrupted".into();
        assert_eq!(outcome(4, &s, &f), Outcome::NotMeasured);
    }

    // ---- C5 ----

    fn consumer_kill(label: &str, abandoned: u64, reprocessed: u64) -> FaultRow {
        FaultRow {
            abandoned: Some(abandoned),
            reprocessed: Some(reprocessed),
            redelivery_last_s: Some(5.5),
            ..fault(label, "kill-consumer", "consumer:0")
        }
    }

    fn c5_backends() -> Vec<SummaryRow> {
        vec![backend("redis", REDIS), backend("quorum", QUORUM)]
    }

    #[test]
    fn c5_supported_when_every_abandoned_message_is_reprocessed() {
        let f = [
            consumer_kill("redis", 120, 120),
            consumer_kill("quorum", 200, 200),
        ];
        let v = &run(&c5_backends(), &f)[4];
        assert_eq!(v.outcome, Outcome::Supported);
        assert_eq!(
            v.numbers,
            [
                "redis (redis-streams) fault 0 (consumer:0): abandoned 120, reprocessed 120, last redelivered after 5.50 s",
                "for comparison, quorum (rabbitmq-quorum) fault 0 (consumer:0): abandoned 200, reprocessed 200, last redelivered after 5.50 s",
            ]
        );
    }

    #[test]
    fn c5_refuted_when_some_are_not_reprocessed() {
        let f = [
            consumer_kill("redis", 120, 120),
            consumer_kill("redis", 80, 79),
        ];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Refuted);
    }

    #[test]
    fn c5_inconclusive_when_nothing_was_in_flight() {
        let f = [consumer_kill("redis", 0, 0)];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Inconclusive);
        // Some kills held nothing, or their counts are missing: not every kill tested it.
        let f = [consumer_kill("redis", 0, 0), consumer_kill("redis", 10, 10)];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Inconclusive);
        let f = [
            FaultRow {
                abandoned: None,
                ..consumer_kill("redis", 0, 0)
            },
            consumer_kill("redis", 10, 10),
        ];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Inconclusive);
    }

    #[test]
    fn c5_not_measured_without_a_redis_consumer_kill() {
        assert_eq!(outcome(5, &[], &[]), Outcome::NotMeasured);
        let f = [consumer_kill("quorum", 10, 10)];
        let v = &run(&c5_backends(), &f)[4];
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(v.numbers[1].starts_with("for comparison, quorum"));
    }

    #[test]
    fn c5_ignores_rows_that_are_not_ok() {
        let mut f = vec![
            consumer_kill("redis", 10, 10),
            consumer_kill("redis", 10, 3),
        ];
        f[1].status = "error: consumer report missing".into();
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Supported);
        let mut s = c5_backends();
        s[0].status = "interrupted".into();
        assert_eq!(outcome(5, &s, &f), Outcome::NotMeasured);
    }

    // ---- C6 ----

    fn fast(label: &str, ty: &str, per_s: f64, p99: f64) -> SummaryRow {
        SummaryRow {
            e2e_p99_ms: Some(p99),
            ..max_rate(label, ty, per_s)
        }
    }

    #[test]
    fn c6_supported_when_redis_is_faster_and_no_slower_at_p99() {
        let s = [
            fast("redis", REDIS, 60_000.0, 10.0),
            fast("redis-always", REDIS, 20_000.0, 50.0),
            fast("stream", STREAM, 50_000.0, 10.0),
        ];
        let v = &run(&s, &[])[5];
        assert_eq!(v.outcome, Outcome::Supported);
        assert_eq!(
            v.numbers[0],
            "redis (redis-streams): 60000 msg/s received, e2e p99 10.00 ms (fastest of 2 max-rate row(s))"
        );
        assert!(v
            .numbers
            .contains(&"Redis / stream msg/s: 1.20".to_string()));
    }

    #[test]
    fn c6_refuted_when_the_stream_is_at_least_as_fast() {
        let s = [
            fast("redis", REDIS, 50_000.0, 5.0),
            fast("stream", STREAM, 50_000.0, 50.0),
        ];
        assert_eq!(outcome(6, &s, &[]), Outcome::Refuted);
    }

    #[test]
    fn c6_inconclusive_when_the_margin_or_latency_falls_short() {
        let s = [
            fast("redis", REDIS, 55_000.0, 5.0),
            fast("stream", STREAM, 50_000.0, 50.0),
        ];
        assert_eq!(outcome(6, &s, &[]), Outcome::Inconclusive);
        let s = [
            fast("redis", REDIS, 90_000.0, 60.0),
            fast("stream", STREAM, 50_000.0, 50.0),
        ];
        assert_eq!(outcome(6, &s, &[]), Outcome::Inconclusive);
        let s = [
            max_rate("redis", REDIS, 90_000.0),
            fast("stream", STREAM, 50_000.0, 50.0),
        ];
        assert_eq!(outcome(6, &s, &[]), Outcome::Inconclusive);
    }

    #[test]
    fn c6_not_measured_without_both_max_rate_rows() {
        assert_eq!(outcome(6, &[], &[]), Outcome::NotMeasured);
        // A fixed-rate stream row, and a stream row whose run had a fault, do not count.
        let s = [
            fast("redis", REDIS, 60_000.0, 10.0),
            SummaryRow {
                target_rate: Some(5000.0),
                ..fast("stream", STREAM, 5_000.0, 2.0)
            },
            fast("stream-killed", STREAM, 1_000.0, 2.0),
        ];
        let f = [fault("stream-killed", "kill", "leader-of:0")];
        let v = &run(&s, &f)[5];
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(v
            .numbers
            .contains(&"missing: a max-rate rabbitmq-stream row without faults".to_string()));
    }

    #[test]
    fn c6_ignores_rows_that_are_not_ok() {
        let s = [
            fast("redis", REDIS, 60_000.0, 10.0),
            fast("stream", STREAM, 50_000.0, 10.0),
            SummaryRow {
                status: "interrupted".into(),
                ..fast("stream-2", STREAM, 90_000.0, 1.0)
            },
        ];
        assert_eq!(outcome(6, &s, &[]), Outcome::Supported);
    }
}
