//! C4's rule on hand-made rows, and on trimmed real runs (tests/fixtures).
use super::*;
use crate::report::claims::tests::*;

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

/// Each backend's figure is given beside the timeouts it ran with.
#[test]
fn c4_states_each_backends_failure_detection() {
    let mut s = c4_backends();
    s[0].failure_detection = Some(crate::scenario::FailureDetection {
        redis_node_timeout_ms: Some(2000),
        client_reply_timeout_ms: Some(2000),
        ..Default::default()
    });
    let f = [
        others(leader_kill("redis", Some(2.0), "yes"), 2000.0, 1900.0),
        leader_kill("quorum", Some(3.0), "yes"),
    ];
    let v = &run(&s, &f)[3];
    let line = |label: &str| {
        v.numbers
            .iter()
            .find(|n| n.starts_with(label) && n.contains("publish unavailable"))
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        line("redis").ends_with(
            "failure detection: cluster-node-timeout 2000 ms, client reply timeout 2000 ms)"
        ),
        "{:?}",
        v.numbers
    );
    // A run recorded before the settings were.
    assert!(
        line("quorum").ends_with("failure detection: not recorded)"),
        "{:?}",
        v.numbers
    );
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

// tests/fixtures/verdicts-failover: a leader kill on Redis and on a quorum queue, twice
// each. Redis published again after 3.97 and 4.05 s, the quorum queue after 1.81 and 5.72
// s; during each Redis outage its other shards fell to 75% of their rate, while the host's
// cores were 93% and 94% busy.

fn failover(drop: &[&str], with_cpu: bool) -> Verdict {
    let run = fixture("verdicts-failover");
    let rows = rows_but(&run, drop);
    c4(&evidence(&run, &rows, with_cpu))
}

#[test]
fn c4_is_within_noise_when_the_unavailability_ranges_overlap() {
    let v = failover(&[], true);
    assert_eq!(v.outcome, Outcome::WithinNoise, "{:#?}", v.numbers);
    assert!(v.numbers.contains(&"(a) within noise: best Redis 4.01 s (median; 3.97 s–4.05 s over 2 runs) (redis, best of 1 Redis backend(s)) overlaps smallest RabbitMQ 3.76 s (median; 1.81 s–5.72 s over 2 runs) (quorum)".to_string()), "{:#?}", v.numbers);
    // One repetition each: 3.97 s against 1.81 s decides.
    let v = failover(&["redis#2", "quorum#2"], true);
    assert_eq!(v.outcome, Outcome::Refuted, "{:#?}", v.numbers);
}

#[test]
fn c4_other_shards_falling_on_a_saturated_host_decide_nothing() {
    let v = failover(&[], true);
    assert!(v.numbers.contains(
        &"(b) host-bound on 2 Redis row(s): redis#1 fault 0, redis#2 fault 0".to_string()
    ));
    assert!(v.numbers.contains(
        &"redis#1: host's cores 93% busy, harness 8% of the host's CPU (host-bound)".to_string()
    ));
    // Redis first on every range (3.97–4.05 s against 5.72 s): only (b) is left, host-bound.
    let v = failover(&["quorum#1"], true);
    assert_eq!(v.outcome, Outcome::HostBound, "{:#?}", v.numbers);
    // Without cpu.csv the same falls refute (b) on every Redis row.
    let v = failover(&["quorum#1"], false);
    assert_eq!(v.outcome, Outcome::Refuted, "{:#?}", v.numbers);
    assert_eq!(
        v.reason,
        "every Redis leader fault cut the other shards' throughput"
    );
}

// ---- C4 under both fault models ----

fn leader_pause(label: &str, unavailable: Option<f64>) -> FaultRow {
    FaultRow {
        publish_unavailable_s: unavailable,
        publish_recovered: "yes".into(),
        ..fault(label, "pause", "leader-of:1")
    }
}

#[test]
fn c4_is_inconclusive_when_a_frozen_leader_reverses_the_kill() {
    // Killed: Redis 2 s against quorum 3 s. Frozen: Redis 4 s against quorum 1 s.
    let f = [
        others(leader_kill("redis", Some(2.0), "yes"), 2000.0, 1900.0),
        leader_kill("quorum", Some(3.0), "yes"),
        others(leader_pause("redis", Some(4.0)), 2000.0, 1900.0),
        leader_pause("quorum", Some(1.0)),
    ];
    let v = &run(&c4_backends(), &f)[3];
    assert_eq!(v.outcome, Outcome::Inconclusive, "{:#?}", v.numbers);
    assert!(
        v.reason.starts_with(
            "the fault model decides: refuted under a frozen leader (SIGSTOP: no socket \
             closes): Redis published again later"
        ) && v
            .reason
            .contains("; supported under a killed leader (SIGKILL"),
        "{}",
        v.reason
    );
    // Refuted under one model and undecided under the other: refuted.
    let mut g = f.clone();
    g[0].others_during_per_s = None;
    g[0].others_baseline_per_s = None;
    assert_eq!(run(&c4_backends(), &g)[3].outcome, Outcome::Refuted);
    assert!(v
        .numbers
        .iter()
        .any(|n| n.starts_with("(a) holds: best Redis 2.00 s")));
    assert!(v
        .numbers
        .iter()
        .any(|n| n.starts_with("pause: (a) fails: best Redis 4.00 s")));
    assert!(v
        .numbers
        .iter()
        .any(|n| n.starts_with("pause: redis (") && n.contains("(worst of 1 leader pause(s)")));
}

#[test]
fn c4_is_supported_only_when_both_models_support_it() {
    let f = [
        others(leader_kill("redis", Some(2.0), "yes"), 2000.0, 1900.0),
        leader_kill("quorum", Some(3.0), "yes"),
        others(leader_pause("redis", Some(4.0)), 2000.0, 1900.0),
        leader_pause("quorum", Some(8.0)),
    ];
    let v = &run(&c4_backends(), &f)[3];
    assert_eq!(v.outcome, Outcome::Supported, "{:#?}", v.numbers);
    assert!(
        v.reason
            .starts_with("under both a killed and a frozen leader"),
        "{}",
        v.reason
    );
    // Without the pause rows the verdict says it covers a killed leader only.
    let v = &run(&c4_backends(), &f[..2])[3];
    assert_eq!(v.outcome, Outcome::Supported);
    assert!(v
        .numbers
        .iter()
        .any(|n| n.starts_with("pause model not measured")));
    // A pause on one side only: what is missing is named, the kill still decides.
    let v = &run(&c4_backends(), &f[..3])[3];
    assert_eq!(v.outcome, Outcome::Supported);
    assert!(v
        .numbers
        .iter()
        .any(|n| n.starts_with("missing: a rabbitmq-quorum or rabbitmq-mirrored leader pause")));
    // The pause alone decides too, and says the kill was not measured.
    let v = &run(&c4_backends(), &f[2..])[3];
    assert_eq!(v.outcome, Outcome::Supported);
    assert!(v
        .numbers
        .iter()
        .any(|n| n.starts_with("kill model not measured")));
}

#[test]
fn c4_undecided_under_one_model_is_undecided() {
    let f = [
        others(leader_kill("redis", Some(2.0), "yes"), 2000.0, 1900.0),
        leader_kill("quorum", Some(3.0), "yes"),
        // No figures for the other shards under the pause: (b) cannot decide there.
        leader_pause("redis", Some(4.0)),
        leader_pause("quorum", Some(8.0)),
    ];
    let v = &run(&c4_backends(), &f)[3];
    assert_eq!(v.outcome, Outcome::Inconclusive, "{:#?}", v.numbers);
    assert!(
        v.reason.starts_with("under a frozen leader"),
        "{}",
        v.reason
    );
}

#[test]
fn c4_judges_a_partition_apart() {
    let partition = |label: &str, unavailable: f64| FaultRow {
        publish_unavailable_s: Some(unavailable),
        publish_recovered: "yes".into(),
        ..fault(label, "partition", "leader-of:0")
    };
    let kill = [
        others(leader_kill("redis", Some(2.0), "yes"), 2000.0, 1900.0),
        leader_kill("quorum", Some(3.0), "yes"),
    ];
    // Cut off: Redis 4 s against quorum 6 s: supported under both models.
    let mut f = kill.to_vec();
    f.extend([
        others(partition("redis", 4.0), 2000.0, 1900.0),
        partition("quorum", 6.0),
    ]);
    let v = &run(&c4_backends(), &f)[3];
    assert_eq!(v.outcome, Outcome::Supported, "{:#?}", v.numbers);
    assert!(
        v.reason.starts_with("under a killed leader") && v.reason.contains("a cut-off leader"),
        "{}",
        v.reason
    );
    // Cut off: Redis 4 s against quorum 1 s: refuted under the partition, supported under
    // the kill: the fault model decides.
    f[3] = partition("quorum", 1.0);
    let v = &run(&c4_backends(), &f)[3];
    assert_eq!(v.outcome, Outcome::Inconclusive, "{:#?}", v.numbers);
    assert!(
        v.reason
            .starts_with("the fault model decides: refuted under a cut-off leader"),
        "{}",
        v.reason
    );
    assert!(v
        .numbers
        .iter()
        .any(|n| n.starts_with("partition: (a) fails: best Redis 4.00 s")));
}
