//! The report's Faults section: one row per fault, each beside the failure-detection timeouts
//! its backend ran with (meta.json), after a paragraph on the run's cluster timeouts.

use super::document::{opt, Block};
use super::results::RunResults;
use super::SummaryRow;

/// The Faults heading, paragraph and table; nothing when the run had no faults.
pub(super) fn blocks(run: &RunResults) -> Vec<Block> {
    if run.faults.is_empty() {
        return Vec::new();
    }
    vec![
        Block::Heading(2, "Faults".into()),
        Block::Para(failure_detection(&run.meta)),
        Block::Table(
            [
                "backend",
                "fault",
                "node",
                "new leader",
                "leader change s",
                "publish unavailable s",
                "consume unavailable s",
                "others before/during msg/s",
                "rejoin s",
                "abandoned/reprocessed",
                "status",
                "failure detection",
            ]
            .map(String::from)
            .to_vec(),
            run.faults
                .iter()
                .map(|f| {
                    vec![
                        f.backend.clone(),
                        format!("{} {}", f.action, f.target),
                        f.node.clone(),
                        f.new_leader.clone(),
                        opt(f.leader_change_s),
                        match f.publish_recovered.as_str() {
                            "yes" => opt(f.publish_unavailable_s),
                            other => other.to_string(),
                        },
                        match f.consume_recovered.as_str() {
                            "yes" => opt(f.consume_unavailable_s),
                            other => other.to_string(),
                        },
                        format!(
                            "{} / {}",
                            opt(f.others_baseline_per_s),
                            opt(f.others_during_per_s)
                        ),
                        opt(f.rejoin_s),
                        match (f.abandoned, f.reprocessed) {
                            (Some(a), Some(r)) if !f.redelivered_to.is_empty() => {
                                format!("{a}/{r} ({})", f.redelivered_to)
                            }
                            (Some(a), Some(r)) => format!("{a}/{r}"),
                            _ => "-".into(),
                        },
                        f.status.clone(),
                        run.summary
                            .iter()
                            .find(|s| s.backend == f.backend)
                            .map_or_else(|| "not recorded".into(), SummaryRow::detection),
                    ]
                })
                .collect(),
        ),
    ]
}

/// The failure-detection timeouts the fault figures depend on, from meta.json: a node whose
/// process dies is noticed at once on loopback (its sockets close); one that stops answering is
/// noticed only after these.
fn failure_detection(meta: &serde_json::Value) -> String {
    let mut found = Vec::new();
    for (name, c) in meta["clusters"].as_object().into_iter().flatten() {
        // Runs recorded before clusters had a kind named them by it.
        let kind = c["kind"].as_str().unwrap_or(name);
        // An external cluster keeps its own settings, which the scenario does not know.
        if c["mode"].as_str() == Some("external") {
            continue;
        }
        let on = if name == kind {
            String::new()
        } else {
            format!(" (cluster {name})")
        };
        match kind {
            "redis" => found.extend(c["node_timeout_ms"].as_u64().map(|ms| {
                format!("Redis cluster-node-timeout {ms} ms{on} (Redis's default: 15000)")
            })),
            // Runs recorded before net_ticktime was a setting ran with 10 s.
            "rabbitmq" => found.push(format!(
                "RabbitMQ net_ticktime {} s{on} (RabbitMQ's default: 60)",
                c["net_ticktime_s"].as_u64().unwrap_or(10)
            )),
            _ => {}
        }
    }
    format!(
        "Failure detection in this run: {}. A killed process closes its sockets, which RabbitMQ's Erlang distribution notices at once while Redis Cluster waits for its node timeout; a frozen or cut-off node gives no such signal, and then the peers wait for these timeouts and each client for its own (its reply timeout or heartbeat). The last column gives what each backend ran with.",
        if found.is_empty() { "not recorded".to_string() } else { found.join("; ") }
    )
}
