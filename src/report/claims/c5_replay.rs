//! C5's replay half: a new consumer reads a stream's whole history (`workload.mode = "replay"`,
//! scenarios/replay.toml), judged on Redis and listed beside RabbitMQ's streams; the types that
//! cannot replay (a queue deletes what it delivered) are named rather than left out.

use super::c5::Half;
use super::*;
use crate::backend::registry::{Family, Replay};
use crate::scenario::LoadMode;

/// Every filled message read exactly once, at a rate above 0.
fn complete(r: &SummaryRow) -> bool {
    r.confirmed > 0
        && r.received == r.confirmed
        && r.duplicates == 0
        && r.lost == 0
        && r.undelivered == 0
        && r.replay_per_s.is_some_and(|v| v > 0.0)
}

fn replay_line(r: &SummaryRow) -> String {
    let how = match Replay::of_type(&r.backend_type) {
        Some(Replay::FromFirst(how)) => how,
        _ => "?",
    };
    let rate = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.0} msg/s"));
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.2} s"));
    format!(
        "{}: a new reader ({how}) read {} of {} messages at {} in {} (filled at {} in {}); \
         duplicates {}, lost {}, undelivered {}",
        name(r),
        r.received,
        r.confirmed,
        rate(r.replay_per_s),
        secs(r.replay_s),
        rate(r.fill_per_s),
        secs(r.fill_s),
        r.duplicates,
        r.lost,
        r.undelivered
    )
}

/// The replay half of C5.
pub(super) fn replay_half(e: &Evidence) -> Half {
    let rule = "Replay runs (workload.mode = \"replay\"): each stream is filled with messages \
        while no consumer runs, then new consumers read from the start position their backend \
        type declares. Supported if every Redis replay read every confirmed message exactly \
        once (received = confirmed > 0; duplicates, lost and undelivered 0) at a replay rate \
        above 0; refuted if one missed or repeated a message. RabbitMQ's streams (AMQP 0-9-1 and \
        the stream protocol) take the same test and are listed beside Redis; quorum and \
        mirrored queues cannot replay."
        .to_string();
    let replays: Vec<&SummaryRow> = e
        .backends()
        .filter(|r| r.mode == LoadMode::Replay)
        .collect();
    let family = |r: &SummaryRow| Family::of_type(&r.backend_type);
    let redis: Vec<&SummaryRow> = replays
        .iter()
        .copied()
        .filter(|r| family(r) == Some(Family::Redis))
        .collect();
    let rabbit: Vec<&SummaryRow> = replays
        .iter()
        .copied()
        .filter(|r| family(r) == Some(Family::Rabbitmq))
        .collect();
    let mut numbers: Vec<String> = redis.iter().map(|r| replay_line(r)).collect();
    numbers.extend(
        rabbit
            .iter()
            .map(|r| format!("for comparison, {}", replay_line(r))),
    );
    // The types here that cannot replay, once each.
    let mut cannot: Vec<String> = Vec::new();
    for r in e.backends() {
        if let Some(Replay::Impossible(why)) = Replay::of_type(&r.backend_type) {
            let line = format!("{} ({}): cannot replay: {why}", r.series(), r.backend_type);
            if !cannot.contains(&line) {
                cannot.push(line);
            }
        }
    }
    numbers.extend(cannot);
    if redis.is_empty() {
        numbers.insert(
            0,
            "missing: a replay row on redis-streams (scenarios/replay.toml)".to_string(),
        );
        return Half {
            outcome: Outcome::NotMeasured,
            rule,
            numbers,
            reason: String::new(),
        };
    }
    let rates = |rows: &[&SummaryRow]| {
        rows.iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r.backend,
                    r.replay_per_s
                        .map_or_else(|| "-".to_string(), |v| format!("{v:.0} msg/s"))
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rabbit_part = if rabbit.is_empty() {
        "RabbitMQ's streams were not replayed in this run".to_string()
    } else if rabbit.iter().all(|r| complete(r)) {
        format!(
            "RabbitMQ's streams replayed too ({}): replay is a log's, not Redis's alone",
            rates(&rabbit)
        )
    } else {
        format!(
            "some RabbitMQ stream replays missed or repeated messages ({})",
            rates(&rabbit)
        )
    };
    let (outcome, redis_part) = if redis.iter().all(|r| complete(r)) {
        (
            Outcome::Supported,
            format!(
                "a new consumer group read every message of Redis's streams exactly once ({})",
                rates(&redis)
            ),
        )
    } else {
        (
            Outcome::Refuted,
            "a new consumer group on Redis missed or repeated messages of the history".to_string(),
        )
    };
    Half {
        outcome,
        rule,
        numbers,
        reason: format!("{redis_part}; {rabbit_part}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::tests::*;

    fn replayed(label: &str, ty: &str, read: u64, duplicates: u64) -> SummaryRow {
        SummaryRow {
            mode: LoadMode::Replay,
            confirmed: 1000,
            received: read,
            duplicates,
            fill_s: Some(0.5),
            fill_per_s: Some(2000.0),
            replay_s: Some(0.25),
            replay_per_s: Some(read as f64 / 0.25),
            ..backend(label, ty)
        }
    }

    fn half(rows: &[SummaryRow]) -> Half {
        replay_half(&Evidence {
            summary: rows,
            faults: &[],
            replica_lag: &[],
            cpu: &[],
            cores: None,
            meta: None,
        })
    }

    #[test]
    fn supported_when_redis_reads_its_whole_history_once_and_compared_with_the_streams() {
        let rows = [
            replayed("redis", REDIS, 1000, 0),
            replayed("native", NATIVE_STREAM, 1000, 0),
            backend("quorum", QUORUM),
        ];
        let h = half(&rows);
        assert_eq!(h.outcome, Outcome::Supported);
        assert_eq!(
            h.numbers,
            [
                "redis (redis-streams): a new reader (a new consumer group created at id 0 \
                 (XGROUP CREATE ... 0)) read 1000 of 1000 messages at 4000 msg/s in 0.25 s \
                 (filled at 2000 msg/s in 0.50 s); duplicates 0, lost 0, undelivered 0",
                "for comparison, native (rabbitmq-stream-native): a new reader (offset spec \
                 first (no offset stored under the consumer's name)) read 1000 of 1000 messages \
                 at 4000 msg/s in 0.25 s (filled at 2000 msg/s in 0.50 s); duplicates 0, lost \
                 0, undelivered 0",
                "quorum (rabbitmq-quorum): cannot replay: a queue deletes what it delivered",
            ]
        );
        assert!(h
            .reason
            .contains("RabbitMQ's streams replayed too (native 4000 msg/s)"));
    }

    #[test]
    fn refuted_when_redis_misses_or_repeats_and_not_measured_without_it() {
        assert_eq!(
            half(&[replayed("redis", REDIS, 999, 0)]).outcome,
            Outcome::Refuted
        );
        assert_eq!(
            half(&[replayed("redis", REDIS, 1000, 3)]).outcome,
            Outcome::Refuted
        );
        // A live Redis row is no replay.
        let h = half(&[backend("redis", REDIS), replayed("s", STREAM, 1000, 0)]);
        assert_eq!(h.outcome, Outcome::NotMeasured);
        assert!(
            h.numbers[0].starts_with("missing: a replay row"),
            "{:?}",
            h.numbers
        );
    }
}
