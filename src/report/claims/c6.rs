//! C6: RabbitMQ streams vs Redis Streams.

use super::*;

/// C6: Redis Streams counts as faster when it receives at least this many times the messages
/// per second of a RabbitMQ stream (and its e2e p99 is no higher).
pub const C6_REDIS_MIN_SPEEDUP: f64 = 1.2;

/// C6: at max rate, Redis Streams against RabbitMQ streams, fastest backend of each.
pub(super) fn c6(e: &Evidence) -> Verdict {
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
    use crate::report::claims::tests::*;

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
