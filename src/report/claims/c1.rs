//! C1: RabbitMQ loses messages depending on its ack/confirm/persistence settings.

use super::*;

/// C1: under a node fault some RabbitMQ setting loses messages while one with confirms does not.
pub(super) fn c1(e: &Evidence) -> Verdict {
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
    let reason = match outcome {
        Outcome::Supported => format!(
            "after a node fault {} lost messages while {} (with confirms) lost none",
            list(&lossy),
            list(&safe)
        ),
        Outcome::Refuted => "no RabbitMQ setting lost anything after a node fault".to_string(),
        _ => "every faulted setting lost messages, or none with confirms came through clean"
            .to_string(),
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
}
