//! C3: one leader caps RabbitMQ throughput; Redis Cluster spreads over its masters.

use super::*;

/// C3: the destination counts the scaling experiment runs at max rate.
pub const C3_DESTINATION_COUNTS: [u32; 4] = [1, 3, 6, 12];
/// C3: a RabbitMQ quorum/mirrored series that grows by at most this much is capped by its leader.
pub const C3_RABBIT_FLAT: f64 = 1.2;
/// C3: Redis must grow by at least this much to spread load over its masters.
pub const C3_REDIS_GROWTH: f64 = 1.5;

/// The number of destinations of a summary row's run (0 in folders written before
/// summary.csv recorded it: unknown).
fn destination_count(row: &SummaryRow) -> Option<u32> {
    (row.destinations > 0).then_some(row.destinations as u32)
}

/// C3: throughput against the number of destinations, per backend type, at max rate.
pub(super) fn c3(e: &Evidence) -> Verdict {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::tests::*;

    // ---- C3 ----
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
}
