//! C3: one leader caps RabbitMQ throughput; Redis Cluster spreads over its masters.

use super::*;

/// C3: the destination counts the scaling experiment runs at max rate.
pub const C3_DESTINATION_COUNTS: [u32; 4] = [1, 3, 6, 12];
/// C3: a RabbitMQ quorum/mirrored series that grows by at most this much is capped by its leader.
pub const C3_RABBIT_FLAT: f64 = 1.2;
/// C3: Redis must grow by at least this much to spread load over its masters.
pub const C3_REDIS_GROWTH: f64 = 1.5;

/// One backend type's max-rate throughput (received msg/s) at each number of destinations,
/// for rows with one guarantee.
struct Series<'a> {
    ty: &'a str,
    guarantee: &'a str,
    /// The broker version of its rows ("" when the results do not say): RabbitMQ 3.10 and 4.0
    /// rows are two series.
    version: &'a str,
    by_count: BTreeMap<usize, Vec<&'a SummaryRow>>,
}

impl<'a> Series<'a> {
    fn spread(rows: &[&SummaryRow]) -> Option<Spread> {
        Spread::of(rows.iter().map(|r| r.received_per_s))
    }
    fn ends(&self) -> (&[&'a SummaryRow], &[&'a SummaryRow]) {
        let first = self.by_count.values().next().map_or(&[][..], |v| &v[..]);
        let last = self.by_count.values().last().map_or(&[][..], |v| &v[..]);
        (first, last)
    }
    /// Received msg/s at the most destinations / at the fewest, as a range.
    fn growth(&self) -> Option<Spread> {
        let (first, last) = self.ends();
        Self::spread(last)?.ratio(&Self::spread(first)?)
    }
    fn name(&self) -> String {
        let ty = if self.version.is_empty() {
            self.ty.to_string()
        } else {
            format!("{} {}", self.ty, self.version)
        };
        if self.guarantee.is_empty() {
            ty
        } else {
            format!("{ty} (confirm: {})", self.guarantee)
        }
    }
    fn line(&self) -> String {
        let points: Vec<String> = self
            .by_count
            .iter()
            .filter_map(|(n, rows)| {
                Some(format!("{n} → {}", Self::spread(rows)?.show(0, " msg/s")))
            })
            .collect();
        format!("{}: {}", self.name(), points.join(", "))
    }
}

/// What one RabbitMQ series against one Redis series of comparable guarantees shows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pair {
    Supports,
    Refutes,
    /// Decided by the medians, not by the ranges.
    Noise(bool),
    Open,
}

fn judge(redis: &Spread, rabbit: &Spread) -> Pair {
    let refutes = |r_hi: f64, q_lo: f64| q_lo >= r_hi || r_hi < C3_RABBIT_FLAT;
    let supports = |r_lo: f64, q_hi: f64| q_hi <= C3_RABBIT_FLAT && r_lo >= C3_REDIS_GROWTH;
    if refutes(redis.max, rabbit.min) {
        Pair::Refutes
    } else if supports(redis.min, rabbit.max) {
        Pair::Supports
    } else if refutes(redis.median, rabbit.median) {
        Pair::Noise(false)
    } else if supports(redis.median, rabbit.median) {
        Pair::Noise(true)
    } else {
        Pair::Open
    }
}

/// C3: throughput against the number of destinations, per backend type and guarantee, at max
/// rate, with the same number of producers and consumers at every count.
pub(super) fn c3(e: &Evidence) -> Verdict {
    const TITLE: &str = "one leader caps RabbitMQ throughput; Redis Cluster spreads";
    let wanted: Vec<String> = C3_DESTINATION_COUNTS
        .iter()
        .map(|n| n.to_string())
        .collect();
    let rule = format!(
        "Max-rate runs (no target rate) of one backend type and guarantee at several of {} \
         destinations, with the same total of producers and consumers at every count (rows \
         whose totals differ are not compared: not comparable); growth = received msg/s at the \
         most destinations / at the fewest, as a range over the repetitions (lowest to highest \
         ratio). Each RabbitMQ quorum or mirrored series is compared with the Redis series of \
         a comparable guarantee. Supported if every RabbitMQ series grows by at most \
         {C3_RABBIT_FLAT}× while Redis grows by at least {C3_REDIS_GROWTH}× (whole ranges); \
         refuted if a RabbitMQ series grows at least as much as Redis, or Redis grows by less \
         than {C3_RABBIT_FLAT}× (whole ranges); within noise when only the medians decide; \
         host-bound when the host's cores were {:.0}% busy or more, or the harness used more \
         than {:.0}% of them, during a row at the fewest or the most destinations; \
         inconclusive otherwise. On one host all nodes share the cores: growth shows spreading \
         over masters, not over machines.",
        wanted.join(", "),
        HOST_SHARE * 100.0,
        CPU_SHARE * 100.0,
    );
    let max_rate: Vec<&SummaryRow> = e
        .backends()
        .filter(|r| r.target_rate.is_none() && r.destinations > 0)
        .collect();
    let mut grouped: BTreeMap<(&str, &str, &str), BTreeMap<usize, Vec<&SummaryRow>>> =
        BTreeMap::new();
    for r in &max_rate {
        grouped
            .entry((
                r.backend_type.as_str(),
                r.guarantee.as_str(),
                r.broker_version.as_str(),
            ))
            .or_default()
            .entry(r.destinations)
            .or_default()
            .push(r);
    }
    let series: Vec<Series> = grouped
        .into_iter()
        .filter(|(_, by_count)| by_count.len() >= 2)
        .map(|((ty, guarantee, version), by_count)| Series {
            ty,
            guarantee,
            version,
            by_count,
        })
        .collect();
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
    let mut numbers: Vec<String> = series.iter().map(Series::line).collect();
    let redis: Vec<&Series> = series.iter().filter(|s| s.ty == REDIS).collect();
    let rabbit: Vec<&Series> = series
        .iter()
        .filter(|s| s.ty == QUORUM || s.ty == MIRRORED)
        .collect();
    if redis.is_empty() || rabbit.is_empty() {
        numbers.push(
            "missing: a redis-streams series and a rabbitmq-quorum or rabbitmq-mirrored series, \
             each at two destination counts or more"
                .into(),
        );
        return verdict("C3", TITLE, Outcome::NotMeasured, rule, numbers);
    }
    // The rows that decide: each series at its fewest and its most destinations.
    let deciding: Vec<&SummaryRow> = redis
        .iter()
        .chain(&rabbit)
        .flat_map(|s| {
            let (first, last) = s.ends();
            first.iter().chain(last).copied()
        })
        .collect();
    let totals: BTreeMap<(usize, usize), Vec<&str>> =
        deciding.iter().fold(BTreeMap::new(), |mut m, r| {
            m.entry((r.producers, r.consumers))
                .or_default()
                .push(r.backend.as_str());
            m
        });
    if totals.len() > 1 || totals.contains_key(&(0, 0)) {
        for ((p, c), rows) in &totals {
            numbers.push(if (*p, *c) == (0, 0) {
                format!("producers and consumers not recorded: {}", rows.join(", "))
            } else {
                format!("{p} producers, {c} consumers: {}", rows.join(", "))
            });
        }
        let reason = if totals.contains_key(&(0, 0)) {
            "summary.csv does not say how many producers and consumers some rows ran with, so \
             growth cannot be told apart from more clients"
        } else {
            "the rows ran with different totals of producers and consumers, so growth would \
             measure the clients as much as the destinations (use workload.producers_total and \
             consumers_total)"
        };
        return verdict("C3", TITLE, Outcome::NotComparable, rule, numbers).because(reason);
    }
    let mut pairs = Vec::new();
    for q in &rabbit {
        let Some(qg) = q.growth() else { continue };
        numbers.push(format!("growth: {} {}", q.name(), qg.show(2, "×")));
        for r in redis.iter().filter(|r| {
            let (a, b) = (r.ends().0.first(), q.ends().0.first());
            a.zip(b).is_some_and(|(a, b)| comparable(a, b))
        }) {
            if let Some(rg) = r.growth() {
                pairs.push((q.name(), r.name(), judge(&rg, &qg)));
            }
        }
    }
    for r in &redis {
        if let Some(g) = r.growth() {
            numbers.push(format!("growth: {} {}", r.name(), g.show(2, "×")));
        }
    }
    let runs = redis
        .iter()
        .chain(&rabbit)
        .flat_map(|s| s.by_count.values().map(Vec::len))
        .min()
        .unwrap_or(1);
    if pairs.is_empty() {
        return verdict("C3", TITLE, Outcome::NotComparable, rule, numbers).because(
            "no RabbitMQ series has a Redis series with a comparable guarantee to be compared with",
        );
    }
    let (mut outcome, mut reason) = if let Some((q, r, _)) =
        pairs.iter().find(|p| p.2 == Pair::Refutes)
    {
        (
            Outcome::Refuted,
            format!("{q} grows at least as much as {r}, or Redis grows by less than {C3_RABBIT_FLAT}× ({})", runs_note(runs)),
        )
    } else if pairs.iter().all(|p| p.2 == Pair::Supports) {
        (
            Outcome::Supported,
            format!("every RabbitMQ series stays within {C3_RABBIT_FLAT}× while Redis grows by {C3_REDIS_GROWTH}× or more ({})", runs_note(runs)),
        )
    } else if pairs.iter().any(|p| matches!(p.2, Pair::Noise(_))) {
        (
            Outcome::WithinNoise,
            format!(
                "the medians would decide but the ranges of the growth overlap the thresholds ({})",
                runs_note(runs)
            ),
        )
    } else {
        (
            Outcome::Inconclusive,
            format!(
                "the growth falls between the thresholds ({})",
                runs_note(runs)
            ),
        )
    };
    let (host_bound, lines) = e.host_bound(&deciding);
    numbers.extend(lines);
    // Where the CPU went (cpu.csv).
    for r in &deciding {
        if let Some((total, node, busiest)) = e.cpu_use(&r.backend) {
            numbers.push(format!(
                "{}: nodes and harness used {total:.2} cores on average; busiest node {node} at {busiest:.2}",
                r.backend
            ));
        }
    }
    if host_bound {
        outcome = Outcome::HostBound;
        reason = format!(
            "the host's cores (or the harness) were saturated during rows that decide it, so \
             the growth measures the host, not the brokers (otherwise: {})",
            reason
        );
    }
    verdict("C3", TITLE, outcome, rule, numbers).because(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::tests::*;

    // tests/fixtures/verdicts-run: Redis (appendfsync always) and quorum queues at max rate on 1
    // and 3 destinations, 6 producers and 6 consumers in all, twice each, on a host whose cores
    // were 100% busy throughout (other work shared it). Redis received 16180 and 21900 msg/s on
    // 1 destination, 22186 and 27007 on 3; the quorum queues 6423 and 6534, then 5998 and 4352.

    #[test]
    fn c3_is_host_bound_when_the_hosts_cores_were_saturated() {
        let run = fixture("verdicts-run");
        let rows = rows_but(&run, &[]);
        let v = c3(&evidence(&run, &rows, true));
        assert_eq!(v.outcome, Outcome::HostBound, "{:#?}", v.numbers);
        assert!(v.reason.contains("saturated"), "{}", v.reason);
        assert!(
            v.numbers.contains(
                &"quorum-3#2: host's cores 100% busy, harness 10% of the host's CPU (host-bound)"
                    .to_string()
            ),
            "{:#?}",
            v.numbers
        );
        // Without cpu.csv the same rows decide nothing either: growth between the thresholds.
        let v = c3(&evidence(&run, &rows, false));
        assert_eq!(v.outcome, Outcome::Inconclusive, "{:#?}", v.numbers);
        assert!(v.numbers.contains(
            &"growth: redis-streams 7.0.15 (confirm: aof-always) 1.29× (median; 1.01–1.67 over 2 runs)"
                .to_string()
        ));
        assert!(v.numbers.contains(
            &"growth: rabbitmq-quorum 3.10.8 (confirm: majority-fsync) 0.80× (median; 0.67–0.93 over 2 runs)"
                .to_string()
        ));
    }

    #[test]
    fn c3_is_within_noise_when_only_the_medians_decide() {
        let run = fixture("verdicts-run");
        // Redis: 1 destination 16180 msg/s, 3 destinations 22186 and 27007: the median growth
        // 1.52× reaches 1.5×, the lowest 1.37× does not.
        let rows = rows_but(&run, &["redis-always-1#2"]);
        let v = c3(&evidence(&run, &rows, false));
        assert_eq!(v.outcome, Outcome::WithinNoise, "{:#?}", v.numbers);
        assert!(v.reason.contains("ranges"), "{}", v.reason);
        assert_eq!(c3(&evidence(&run, &rows, true)).outcome, Outcome::HostBound);
        // One run of each Redis count: 16180 → 27007 msg/s (1.67×) decides, and says there
        // was no spread.
        let rows = rows_but(&run, &["redis-always-1#2", "redis-always-3#1"]);
        let v = c3(&evidence(&run, &rows, false));
        assert_eq!(v.outcome, Outcome::Supported, "{:#?}", v.numbers);
        assert!(
            v.reason.contains("one run each, so no spread"),
            "{}",
            v.reason
        );
    }

    /// Rows of one type on two broker versions are two series, never pooled: with the quorum
    /// queue's 1-destination rows said to be from another version, neither version has two
    /// destination counts, so no quorum series is left to judge.
    #[test]
    fn c3_keeps_broker_versions_apart() {
        let run = fixture("verdicts-run");
        let mut rows = rows_but(&run, &[]);
        // The versions come from the fixture's meta.json (Redis 7.0.15, RabbitMQ 3.10.8).
        let v = c3(&evidence(&run, &rows, false));
        assert!(
            v.numbers
                .iter()
                .any(|n| n.starts_with("growth: redis-streams 7.0.15 (confirm: aof-always)")),
            "{:#?}",
            v.numbers
        );
        assert!(v
            .numbers
            .iter()
            .any(|n| n.starts_with("growth: rabbitmq-quorum")));
        for r in rows
            .iter_mut()
            .filter(|r| r.backend_type == "rabbitmq-quorum" && r.destinations == 1)
        {
            r.broker_version = "4.0.5".into();
        }
        let v = c3(&evidence(&run, &rows, false));
        assert_eq!(v.outcome, Outcome::NotMeasured, "{:#?}", v.numbers);
        assert!(
            !v.numbers
                .iter()
                .any(|n| n.starts_with("growth: rabbitmq-quorum")),
            "{:#?}",
            v.numbers
        );
    }

    #[test]
    fn c3_refuses_rows_whose_producer_and_consumer_totals_differ() {
        // tests/fixtures/verdicts-unequal: one producer and one consumer per destination, so 1
        // and 3 of each; Redis grew 20634 → 30247 msg/s, the quorum queue 7022 → 6681.
        let run = fixture("verdicts-unequal");
        let rows = rows_but(&run, &[]);
        let v = c3(&evidence(&run, &rows, false));
        assert_eq!(v.outcome, Outcome::NotComparable, "{:#?}", v.numbers);
        assert!(v.reason.contains("different totals"), "{}", v.reason);
        assert!(v
            .numbers
            .contains(&"1 producers, 1 consumers: redis-always-1, quorum-1".to_string()));
        // Rows from a folder that did not record the totals are not compared either.
        let old: Vec<SummaryRow> = rows
            .iter()
            .map(|r| SummaryRow {
                producers: 0,
                consumers: 0,
                ..r.clone()
            })
            .collect();
        let v = c3(&evidence(&run, &old, false));
        assert_eq!(v.outcome, Outcome::NotComparable);
        assert!(v.reason.contains("does not say"), "{}", v.reason);
    }

    #[test]
    fn c3_not_measured_without_two_destination_counts() {
        let run = fixture("verdicts-unequal");
        let rows = rows_but(&run, &["redis-always-3", "quorum-3"]);
        let v = c3(&evidence(&run, &rows, false));
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(v.numbers[0].contains("1, 3, 6, 12 destinations"));
        let rows = rows_but(&run, &["quorum-3"]);
        let v = c3(&evidence(&run, &rows, false));
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(
            v.reason.starts_with("missing: a redis-streams series"),
            "{}",
            v.reason
        );
    }
}
