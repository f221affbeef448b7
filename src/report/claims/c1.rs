//! C1: RabbitMQ loses messages depending on its ack/confirm/persistence settings.

use super::*;

/// The lag figure for `r` just before its first node fault: the worst copy on any node in the
/// last replica-lag sample taken before the fault (None: not sampled, e.g. RabbitMQ).
fn lag_before(e: &Evidence, r: &SummaryRow, at_s: f64) -> Option<String> {
    let before = e
        .replica_lag
        .iter()
        .filter(|l| l.backend == r.backend && l.t_s <= at_s);
    let last_t = before.clone().map(|l| l.t_s).reduce(f64::max)?;
    let (min, max) = before
        .filter(|l| l.t_s == last_t)
        .fold((0.0f64, 0.0f64), |(min, max), l| {
            (
                min.max(l.lag_messages_min.unwrap_or(0.0)),
                max.max(l.lag_messages),
            )
        });
    Some(format!(
        "replica lag {:.1} s before the fault: {min:.0}–{max:.0} entries (worst copy)",
        at_s - last_t
    ))
}

/// One faulted backend as a line: what it lost, at what offered rate, after which faults.
fn loss_line(e: &Evidence, r: &SummaryRow) -> String {
    let faults: Vec<&FaultRow> = e.faults_of(&r.backend, is_node_fault).collect();
    let names: Vec<String> = faults
        .iter()
        .map(|f| format!("{} {}", f.action, f.target))
        .collect();
    let rate = match (&r.rate_probe, r.target_rate) {
        (Some(p), _) => format!("offered {}", p.describe()),
        (None, Some(t)) => format!("offered {t:.0} msg/s"),
        (None, None) => "offered max rate".to_string(),
    };
    let lag = faults
        .first()
        .map(|f| lag_before(e, r, f.at_s).unwrap_or_else(|| "replica lag not sampled".to_string()))
        .unwrap_or_default();
    format!(
        "{}: lost {} of {} confirmed ({} more still in the broker when the drain stopped); {} unconfirmed never received; {} duplicates (after {}; {rate}; {lag})",
        name(r),
        r.lost,
        r.confirmed,
        r.undelivered,
        r.unconfirmed_missing,
        r.duplicates,
        names.join(", ")
    )
}

fn list(v: &[&str]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// C1: under a node fault some RabbitMQ setting loses messages while one with confirms does not.
/// Redis backends that went through a node fault are shown beside them: which settings of
/// either side lost confirmed messages.
pub(super) fn c1(e: &Evidence) -> Verdict {
    const TITLE: &str = "RabbitMQ loses messages depending on ack/confirm/persistence settings";
    let rule = "RabbitMQ backends that went through a node fault (a kill, stop or pause row in \
        faults.csv). Supported if one of them lost messages (lost > 0, or, without confirms \
        (confirmed = 0), unconfirmed_missing > 0: sent and never received) while another of \
        them with confirms (confirmed > 0) lost none (lost = 0); refuted if none of them lost \
        anything (lost = 0 and unconfirmed_missing = 0); inconclusive otherwise. Redis backends \
        through the same faults are listed beside them, with the settings of each side that \
        lost confirmed messages; they do not decide the claim, which is about RabbitMQ."
        .to_string();
    let faulted_of = |family: fn(&str) -> bool| -> Vec<&SummaryRow> {
        e.backends()
            .filter(|r| family(&r.backend_type))
            .filter(|r| e.faults_of(&r.backend, is_node_fault).next().is_some())
            .collect()
    };
    let faulted = faulted_of(is_rabbit);
    let redis = faulted_of(|t| t == REDIS);
    if faulted.is_empty() {
        let numbers =
            vec!["no RabbitMQ backend with an ok kill, stop or pause fault row".to_string()];
        return verdict("C1", TITLE, Outcome::NotMeasured, rule, numbers);
    }
    let lost_some = |r: &SummaryRow| r.lost > 0 || (r.confirmed == 0 && r.unconfirmed_missing > 0);
    let mut numbers: Vec<String> = faulted.iter().map(|r| loss_line(e, r)).collect();
    numbers.extend(
        redis
            .iter()
            .map(|r| format!("beside it, {}", loss_line(e, r))),
    );
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
    let confirmed_loss = |rows: &[&SummaryRow]| -> Vec<String> {
        rows.iter()
            .filter(|r| r.lost > 0)
            .map(|r| format!("{} {} (confirm: {})", r.backend, r.lost, r.guarantee))
            .collect()
    };
    let (rabbit_confirmed_loss, redis_confirmed_loss) =
        (confirmed_loss(&faulted), confirmed_loss(&redis));
    numbers.push(format!("lost messages: {}", list(&lossy)));
    numbers.push(format!("with confirms, lost none: {}", list(&safe)));
    let side = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    numbers.push(format!(
        "lost confirmed messages: RabbitMQ {}; Redis {}",
        side(&rabbit_confirmed_loss),
        if redis.is_empty() {
            "not faulted in this run".to_string()
        } else {
            side(&redis_confirmed_loss)
        }
    ));
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
    let redis_part = if redis.is_empty() {
        String::new()
    } else if redis_confirmed_loss.is_empty() {
        "; no Redis setting lost a confirmed message".to_string()
    } else {
        format!(
            "; on the Redis side {} lost confirmed messages",
            redis_confirmed_loss.join(", ")
        )
    };
    let reason = match outcome {
        Outcome::Supported => format!(
            "after a node fault {} lost messages while {} (with confirms) lost none{redis_part}",
            list(&lossy),
            list(&safe)
        ),
        Outcome::Refuted => {
            format!("no RabbitMQ setting lost anything after a node fault{redis_part}")
        }
        _ => format!(
            "every faulted setting lost messages, or none with confirms came through clean{redis_part}"
        ),
    };
    verdict("C1", TITLE, outcome, rule, numbers).because(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::claims::tests::*;

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

    /// Both sides: a Redis setting through the same fault is shown with what it lost and the
    /// replica lag just before the kill; it does not decide the claim.
    #[test]
    fn c1_states_which_settings_of_each_side_lost_confirmed_messages() {
        let mut redis = SummaryRow {
            confirmed: 5000,
            lost: 37,
            guarantee: "acknowledged by the master".into(),
            target_rate: Some(16000.0),
            ..backend("redis", REDIS)
        };
        redis.rate_probe = Some(crate::run::probe::RateProbe {
            share: 0.8,
            max_received_per_s: 20000.0,
            max_confirmed_per_s: 20100.0,
            measured_s: 3.0,
            rate: 16000.0,
        });
        let s = [confirmed("q", 0), unconfirmed("nc", 12), redis];
        let mut f = kills(&["q", "nc", "redis"]);
        f[2].at_s = 10.0;
        let lag = |t_s: f64, node: &str, max: f64| LagSample {
            backend: "redis".into(),
            t_s,
            node: node.into(),
            lag_messages: max,
            lag_messages_min: Some(max - 2.0),
        };
        let lags = [
            lag(8.5, "a", 900.0),
            lag(9.5, "a", 40.0),
            lag(9.5, "b", 120.0),
            // After the kill: not "before".
            lag(10.5, "b", 5000.0),
        ];
        let v = &verdicts(&Evidence {
            summary: &s,
            faults: &f,
            replica_lag: &lags,
            cpu: &[],
            cores: None,
            meta: None,
        })[0];
        assert_eq!(v.outcome, Outcome::Supported, "{:?}", v.numbers);
        let line = v
            .numbers
            .iter()
            .find(|n| n.starts_with("beside it, redis"))
            .expect("the Redis row is listed");
        assert!(line.contains("lost 37 of 5000 confirmed"), "{line}");
        assert!(
            line.contains("16000 msg/s = 80% of the 20000 msg/s received"),
            "{line}"
        );
        assert!(
            line.contains("replica lag 0.5 s before the fault: 118–120 entries"),
            "{line}"
        );
        assert!(v.numbers.iter().any(|n| n
            == "lost confirmed messages: RabbitMQ none; Redis redis 37 (confirm: acknowledged by the master)"));
        assert!(
            v.reason.ends_with("; on the Redis side redis 37 (confirm: acknowledged by the master) lost confirmed messages"),
            "{}",
            v.reason
        );
        // RabbitMQ's lag is not sampled: said so.
        assert!(
            v.numbers[0].contains("replica lag not sampled"),
            "{}",
            v.numbers[0]
        );
    }
}
