//! C5: unacked messages are easy to reprocess with XACK/XAUTOCLAIM.

use super::*;

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
pub(super) fn c5(e: &Evidence) -> Verdict {
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
    let reason = match outcome {
        Outcome::Supported => {
            "on every Redis consumer kill all the messages it held were processed again"
        }
        Outcome::Refuted => "some messages a killed Redis consumer held were never processed again",
        _ => "some Redis consumer kills held nothing, or their counts are missing",
    };
    verdict("C5", TITLE, outcome, rule, numbers).because(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::tests::*;

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
}
