//! C5: a stream can be replayed, and unacked messages are easy to reprocess (XACK/XAUTOCLAIM).
//! Two halves, each judged on both brokers: the redelivery of what a killed consumer held
//! (here: Redis's claiming loop against RabbitMQ's requeue) and the replay of a stream's
//! history by a new consumer (c5_replay.rs).

use super::c5_replay::replay_half;
use super::*;
use crate::backend::registry::{BackendSpec, Redelivery};

/// One half of C5: its outcome, rule, figures and reason.
pub(super) struct Half {
    pub outcome: Outcome,
    pub rule: String,
    pub numbers: Vec<String>,
    pub reason: String,
}

/// What a backend row's settings (meta.json, else the type's defaults) make of a dead consumer's
/// messages, and whether the settings were read.
fn redelivery_of(e: &Evidence, r: &SummaryRow) -> (Option<Redelivery>, bool) {
    let recorded = e.meta.and_then(|m| {
        m["backends"]
            .as_array()?
            .iter()
            .find(|b| b["label"] == r.series())
            .and_then(|b| Redelivery::of_settings(&b["settings"]))
    });
    match recorded {
        Some(d) => (Some(d), true),
        None => (
            BackendSpec::from_type(&r.backend_type).map(|s| s.backend_type().redelivery()),
            false,
        ),
    }
}

/// One kill-consumer row as a line of numbers, with what the backend needs from the
/// application.
fn consumer_kill_line(e: &Evidence, r: &SummaryRow, f: &FaultRow) -> String {
    let n = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |x| x.to_string());
    let s = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |s| format!("{s:.2} s"));
    let needs = match redelivery_of(e, r) {
        (Some(d), true) => d.needs(),
        (Some(d), false) => format!("{} (the type's default settings)", d.needs()),
        (None, _) => "?".to_string(),
    };
    let to = if f.redelivered_to.is_empty() {
        "another consumer".to_string()
    } else {
        f.redelivered_to.clone()
    };
    format!(
        "{} fault {} ({}): held {} unacked, {} redelivered ({to}), first after {}, last after \
         {}; needs from the application: {needs}",
        name(r),
        f.fault,
        f.target,
        n(f.abandoned),
        n(f.reprocessed),
        s(f.redelivery_first_s),
        s(f.redelivery_last_s),
    )
}

/// Every message held was redelivered (and something was held).
fn all_back(f: &FaultRow) -> bool {
    matches!(f.abandoned.zip(f.reprocessed), Some((a, p)) if a > 0 && p == a)
}

/// The redelivery half: Redis's consumer kills decide whether its unacked messages are all
/// processed again; RabbitMQ's queue kills (a requeue, nothing from the application) decide
/// whether that is simpler on Redis.
fn redelivery_half(e: &Evidence) -> Half {
    let rule = "Consumer kills (kill-consumer) while holding unacked messages. Refuted if on some \
        redis-streams kill fewer messages were processed again than the killed consumer held \
        (reprocessed < abandoned), or if Redis got them all back only through a claiming loop \
        (XAUTOCLAIM, after claim_min_idle_ms) while a RabbitMQ queue (quorum, mirrored) got \
        everything back with nothing from the application at least as soon (its slowest last \
        redelivery <= Redis's fastest); supported if every Redis kill got everything back and \
        no RabbitMQ queue did so sooner; inconclusive otherwise (e.g. nothing was held). \
        Redelivery delay: the kill -> the last held message received by another consumer."
        .to_string();
    let mut redis: Vec<(&SummaryRow, &FaultRow)> = Vec::new();
    let mut others: Vec<(&SummaryRow, &FaultRow)> = Vec::new();
    for r in e.backends() {
        for f in e.faults_of(&r.backend, is_consumer_kill) {
            match redelivery_of(e, r).0 {
                Some(Redelivery::Claim { .. }) => redis.push((r, f)),
                _ => others.push((r, f)),
            }
        }
    }
    let mut numbers: Vec<String> = redis
        .iter()
        .map(|(r, f)| consumer_kill_line(e, r, f))
        .collect();
    for (r, f) in &others {
        numbers.push(format!("for comparison, {}", consumer_kill_line(e, r, f)));
    }
    if redis.is_empty() {
        numbers.insert(
            0,
            "missing: a kill-consumer row on redis-streams".to_string(),
        );
        return Half {
            outcome: Outcome::NotMeasured,
            rule,
            numbers,
            reason: String::new(),
        };
    }
    let missing = redis
        .iter()
        .filter(|(_, f)| f.abandoned.zip(f.reprocessed).is_none())
        .count();
    if missing > 0 {
        numbers.push(format!(
            "{missing} Redis consumer kill(s) without abandoned/reprocessed counts"
        ));
    }
    let lasts = |rows: &[(&SummaryRow, &FaultRow)]| -> Vec<f64> {
        rows.iter()
            .filter_map(|(_, f)| f.redelivery_last_s)
            .collect()
    };
    let requeues: Vec<(&SummaryRow, &FaultRow)> = others
        .iter()
        .copied()
        .filter(|(r, f)| redelivery_of(e, r).0 == Some(Redelivery::Requeue) && all_back(f))
        .collect();
    let redis_fastest = lasts(&redis).into_iter().reduce(f64::min);
    let rabbit_slowest = lasts(&requeues).into_iter().reduce(f64::max);
    let range = |v: Vec<f64>| {
        let lo = v.iter().copied().reduce(f64::min);
        let hi = v.iter().copied().reduce(f64::max);
        match (lo, hi) {
            (Some(lo), Some(hi)) if (hi - lo).abs() < 0.005 => format!("{lo:.2} s"),
            (Some(lo), Some(hi)) => format!("{lo:.2}-{hi:.2} s"),
            _ => "-".to_string(),
        }
    };
    if redis
        .iter()
        .any(|(_, f)| matches!(f.abandoned.zip(f.reprocessed), Some((a, p)) if p < a))
    {
        return Half {
            outcome: Outcome::Refuted,
            rule,
            numbers,
            reason: "some messages a killed Redis consumer held were never processed again".into(),
        };
    }
    if !redis.iter().all(|(_, f)| all_back(f)) {
        return Half {
            outcome: Outcome::Inconclusive,
            rule,
            numbers,
            reason: "some Redis consumer kills held nothing, or their counts are missing".into(),
        };
    }
    let redis_got = format!(
        "every message a killed Redis consumer held was processed again, through a claiming \
         loop, after {}",
        range(lasts(&redis))
    );
    match (redis_fastest, rabbit_slowest) {
        (Some(r), Some(q)) if q <= r => Half {
            outcome: Outcome::Refuted,
            rule,
            numbers,
            reason: format!(
                "{redis_got}; RabbitMQ's queues requeued everything with nothing from the \
                 application after {}: reprocessing is not simpler on Redis",
                range(lasts(&requeues))
            ),
        },
        (Some(_), Some(_)) => Half {
            outcome: Outcome::Inconclusive,
            rule,
            numbers,
            reason: format!(
                "{redis_got}; RabbitMQ's queues needed nothing from the application but \
                 redelivered later ({})",
                range(lasts(&requeues))
            ),
        },
        _ => Half {
            outcome: Outcome::Supported,
            rule,
            numbers,
            reason: format!(
                "{redis_got} (no RabbitMQ queue consumer kill here got everything back to \
                 compare with)"
            ),
        },
    }
}

/// The two halves as one outcome: refuted if either is, not measured if both are, else the
/// measured halves' (supported only when every measured half is).
fn combine(a: Outcome, b: Outcome) -> Outcome {
    match (a, b) {
        (Outcome::Refuted, _) | (_, Outcome::Refuted) => Outcome::Refuted,
        (Outcome::NotMeasured, x) | (x, Outcome::NotMeasured) => x,
        (Outcome::Supported, Outcome::Supported) => Outcome::Supported,
        (Outcome::Supported, x) | (x, _) => x,
    }
}

/// C5: both halves, each with its rule and figures.
pub(super) fn c5(e: &Evidence) -> Verdict {
    const TITLE: &str =
        "a stream can be replayed, and unacked messages are easy to reprocess (XACK/XAUTOCLAIM)";
    let redelivery = redelivery_half(e);
    let replay = replay_half(e);
    let outcome = combine(redelivery.outcome, replay.outcome);
    let rule = format!("Reprocessing: {} Replay: {}", redelivery.rule, replay.rule);
    let mut numbers: Vec<String> = redelivery
        .numbers
        .iter()
        .map(|n| format!("reprocessing: {n}"))
        .collect();
    numbers.extend(replay.numbers.iter().map(|n| format!("replay: {n}")));
    let v = verdict("C5", TITLE, outcome, rule, numbers);
    if outcome == Outcome::NotMeasured {
        return v.because(
            "missing: a consumer kill on redis-streams (scenarios/failover-consumer.toml) and a \
             replay on redis-streams (scenarios/replay.toml)",
        );
    }
    let reasons: Vec<String> = [&redelivery, &replay]
        .iter()
        .filter(|h| h.outcome != Outcome::NotMeasured)
        .map(|h| h.reason.clone())
        .collect();
    if reasons.is_empty() {
        v
    } else {
        v.because(reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::tests::*;

    // ---- C5 ----

    fn consumer_kill(label: &str, abandoned: u64, reprocessed: u64, last_s: f64) -> FaultRow {
        FaultRow {
            abandoned: Some(abandoned),
            reprocessed: Some(reprocessed),
            redelivery_first_s: Some(last_s / 2.0),
            redelivery_last_s: Some(last_s),
            redelivered_to: format!("consumer:1={reprocessed}"),
            ..fault(label, "kill-consumer", "consumer:0")
        }
    }

    fn c5_backends() -> Vec<SummaryRow> {
        vec![backend("redis", REDIS), backend("quorum", QUORUM)]
    }

    #[test]
    fn c5_compares_redis_claims_with_rabbitmq_requeues() {
        let f = [
            consumer_kill("redis", 120, 120, 5.5),
            consumer_kill("quorum", 200, 200, 0.05),
        ];
        let v = &run(&c5_backends(), &f)[4];
        // Redis gets everything back, but only through a claiming loop and later than a
        // requeue that needs nothing from the application.
        assert_eq!(v.outcome, Outcome::Refuted);
        assert_eq!(
            &v.numbers[..2],
            [
                "reprocessing: redis (redis-streams) fault 0 (consumer:0): held 120 unacked, 120 \
                 redelivered (consumer:1=120), first after 2.75 s, last after 5.50 s; needs from the application: a claiming loop (XAUTOCLAIM every \
                 1000 ms, taking entries idle for claim_min_idle_ms = 5000 ms) (the type's \
                 default settings)",
                "reprocessing: for comparison, quorum (rabbitmq-quorum) fault 0 (consumer:0): \
                 held 200 unacked, 200 redelivered (consumer:1=200), first after 0.03 s, last \
                 after 0.05 s; needs from the application: nothing (the \
                 broker requeues when the channel closes) (the type's default settings)",
            ]
        );
        assert_eq!(
            v.numbers[2],
            "replay: missing: a replay row on redis-streams (scenarios/replay.toml)"
        );
        assert_eq!(
            v.numbers[3],
            "replay: quorum (rabbitmq-quorum): cannot replay: a queue deletes what it delivered"
        );
        assert!(
            v.reason.contains("after 5.50 s")
                && v.reason
                    .contains("nothing from the application after 0.05 s"),
            "{}",
            v.reason
        );
        // A requeue slower than every claim: no longer simpler and sooner.
        let f = [
            consumer_kill("redis", 120, 120, 2.0),
            consumer_kill("quorum", 200, 200, 3.0),
        ];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Inconclusive);
        // No RabbitMQ queue kill to compare with.
        let f = [consumer_kill("redis", 120, 120, 2.0)];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Supported);
    }

    #[test]
    fn c5_refuted_when_some_are_not_reprocessed() {
        let f = [
            consumer_kill("redis", 120, 120, 2.0),
            consumer_kill("redis", 80, 79, 2.0),
        ];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Refuted);
    }

    #[test]
    fn c5_inconclusive_when_nothing_was_in_flight() {
        let f = [consumer_kill("redis", 0, 0, 2.0)];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Inconclusive);
        // Some kills held nothing, or their counts are missing: not every kill tested it.
        let f = [
            consumer_kill("redis", 0, 0, 2.0),
            consumer_kill("redis", 10, 10, 2.0),
        ];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Inconclusive);
        let f = [
            FaultRow {
                abandoned: None,
                ..consumer_kill("redis", 0, 0, 2.0)
            },
            consumer_kill("redis", 10, 10, 2.0),
        ];
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Inconclusive);
    }

    #[test]
    fn c5_not_measured_without_a_redis_consumer_kill_or_replay() {
        assert_eq!(outcome(5, &[], &[]), Outcome::NotMeasured);
        let f = [consumer_kill("quorum", 10, 10, 0.1)];
        let v = &run(&c5_backends(), &f)[4];
        assert_eq!(v.outcome, Outcome::NotMeasured);
        assert!(v.numbers[1].starts_with("reprocessing: for comparison, quorum"));
        assert!(
            v.reason.starts_with("missing: a consumer kill"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn c5_takes_claim_settings_from_meta_json() {
        let meta = serde_json::json!({"backends": [{"label": "redis", "settings": {
            "type": "redis-streams", "claim_min_idle_ms": 2000, "claim_interval_ms": 500}}]});
        let s = c5_backends();
        let f = [consumer_kill("redis", 120, 120, 2.3)];
        let v = c5(&Evidence {
            summary: &s,
            faults: &f,
            replica_lag: &[],
            cpu: &[],
            cores: None,
            meta: Some(&meta),
        });
        assert!(
            v.numbers[0].ends_with(
                "a claiming loop (XAUTOCLAIM every 500 ms, taking entries idle for \
                 claim_min_idle_ms = 2000 ms)"
            ),
            "{}",
            v.numbers[0]
        );
    }

    #[test]
    fn c5_combines_its_halves() {
        use Outcome::*;
        assert_eq!(combine(Supported, NotMeasured), Supported);
        assert_eq!(combine(NotMeasured, Refuted), Refuted);
        assert_eq!(combine(Supported, Inconclusive), Inconclusive);
        assert_eq!(combine(NotMeasured, NotMeasured), NotMeasured);
        assert_eq!(combine(Supported, Supported), Supported);
    }

    #[test]
    fn c5_ignores_rows_that_are_not_ok() {
        let mut f = vec![
            consumer_kill("redis", 10, 10, 2.0),
            consumer_kill("redis", 10, 3, 2.0),
        ];
        f[1].status = "error: consumer report missing".into();
        assert_eq!(outcome(5, &c5_backends(), &f), Outcome::Supported);
        let mut s = c5_backends();
        s[0].status = "interrupted".into();
        assert_eq!(outcome(5, &s, &f), Outcome::NotMeasured);
    }
}
