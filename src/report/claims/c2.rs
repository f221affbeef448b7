//! C2: replicas lag behind their leader (replica_lag.csv).

use super::*;

/// C2: replica lag, p99 per backend over all its replicas' samples (replica_lag.csv). A sample
/// is a pair of bounds (the leader and the replica are not read at the same instant): the p99 of
/// the upper bounds is at least the true p99, that of the lower bounds at most, so each side of
/// the rule uses the bound that cannot flatter it.
pub(super) fn c2(e: &Evidence) -> Verdict {
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
    let reason = match outcome {
        Outcome::Supported => "every quorum/mirrored backend's p99 replica lag (lower bound) is above every Redis backend's (upper bound)",
        Outcome::Refuted => "every Redis backend's p99 replica lag (lower bound) is at least every quorum/mirrored backend's (upper bound)",
        _ => "the bounds of the two sides' p99 replica lag overlap",
    };
    verdict("C2", TITLE, outcome, rule, numbers).because(reason)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::tests::*;

    // ---- C2 ----

    #[test]
    fn c2_is_not_measured_without_lag_samples() {
        let s = [SummaryRow {
            confirmed: 1000,
            ..backend("q", QUORUM)
        }];
        let v = &run(&s, &[fault("q", "kill", "leader-of:0")])[1];
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
            cores: None,
            meta: None,
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
}
