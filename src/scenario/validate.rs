//! Checks that serde cannot express: ranges and combinations of fields.

use super::clusters::ClusterSection;
use super::faults::{FaultAction, Target};
use super::model::*;
use super::BrokerRoot;
use crate::cluster::netns::NetworkMode;

/// What a broker root must hold for a local Redis cluster, and for a RabbitMQ one.
const REDIS_BINARIES: [&str; 2] = ["redis-server", "redis-cli"];
const RABBIT_BINARIES: [&str; 4] = [
    "/usr/lib/rabbitmq/bin/rabbitmq-server",
    "/usr/lib/rabbitmq/bin/rabbitmqctl",
    "erl",
    "epmd",
];

/// A section's `broker_root`: only for local clusters; when a backend uses the cluster, the root
/// must be built and hold the brokers.
fn check_broker_root(
    section: &str,
    mode: ClusterMode,
    root: &Option<BrokerRoot>,
    used: bool,
    binaries: &[&str],
) -> Result<(), (String, String)> {
    let Some(root) = root else { return Ok(()) };
    let field = format!("{section}.broker_root");
    if mode == ClusterMode::External {
        return Err((
            field,
            "only local clusters run from a broker root; remove it or set mode = \"local\""
                .to_string(),
        ));
    }
    if used {
        crate::cluster::broker_root::check_root(root, binaries).map_err(|m| (field, m))?;
    }
    Ok(())
}

/// `Err((field, message))` for the first problem found.
pub fn validate(s: &Scenario) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((field.to_string(), message));
    if s.name.trim().is_empty()
        || !s
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return err(
            "name",
            format!(
                "\"{}\" must be non-empty and use only letters, digits, '-' and '_'",
                s.name
            ),
        );
    }
    let w = &s.workload;
    if w.message_size < crate::payload::HEADER_LEN {
        return err(
            "workload.message_size",
            format!(
                "{} is smaller than the harness's header; use at least {} bytes",
                w.message_size,
                crate::payload::HEADER_LEN
            ),
        );
    }
    if w.message_size > 16 * 1024 * 1024 {
        return err(
            "workload.message_size",
            format!("{} is over 16 MiB; use a smaller size", w.message_size),
        );
    }
    for (field, v) in [
        ("workload.destinations", w.destinations),
        (
            "workload.producers_per_destination",
            w.producers_per_destination,
        ),
        (
            "workload.consumers_per_destination",
            w.consumers_per_destination,
        ),
        ("workload.max_in_flight", w.max_in_flight),
        ("workload.repeat", w.repeat),
    ] {
        if v == 0 || v > 10_000 {
            return err(field, format!("{v} is out of range; use 1 to 10000"));
        }
    }
    if w.duration.is_zero() {
        return err(
            "workload.duration",
            "must be longer than 0s, e.g. \"60s\"".to_string(),
        );
    }
    if w.duration + w.warmup > std::time::Duration::from_secs(24 * 3600) {
        return err(
            "workload.duration",
            "warm-up plus duration is over 24h; load loops are bounded".to_string(),
        );
    }
    if let Rate::PerSecond(r) = w.rate {
        if r > 10_000_000.0 {
            return err(
                "workload.rate",
                format!("{r} msg/s is over 10M msg/s; use a lower rate or \"max\""),
            );
        }
    }
    if s.backends.is_empty() {
        return err(
            "backends",
            format!(
                "at least one [[backends]] entry is needed; types: {}",
                BACKEND_TYPES.join(", ")
            ),
        );
    }
    validate_clusters(s)?;
    let mut labels = std::collections::HashSet::new();
    for (i, b) in s.backends.iter().enumerate() {
        let at = |f: &str| format!("backends[{i}].{f}");
        if !labels.insert(b.label()) {
            return err(
                &at("label"),
                format!(
                    "\"{}\" is used by two backends; give each a distinct label",
                    b.label()
                ),
            );
        }
        let d = b.workload(w).destinations;
        if d == 0 || d > 10_000 {
            return err(
                &at("destinations"),
                format!("{d} is out of range; use 1 to 10000"),
            );
        }
        for (field, total) in [
            ("workload.producers_total", w.producers_total),
            ("workload.consumers_total", w.consumers_total),
        ] {
            if let Some(t) = total.filter(|t| *t == 0 || *t > 10_000 || t % d != 0) {
                return err(
                    field,
                    format!(
                        "{t} cannot be spread evenly over the {d} destinations of backends[{i}] \
                         ({}); use a multiple of every backend's number of destinations (1 to \
                         10000), e.g. 12 for 1, 3, 6 and 12",
                        b.label()
                    ),
                );
            }
        }
        if let Rate::PerSecond(r) = b.workload(w).rate {
            if r > 10_000_000.0 {
                return err(
                    &at("rate"),
                    format!("{r} msg/s is over 10M msg/s; use a lower rate or \"max\""),
                );
            }
        }
        b.backend_type()
            .validate(w, i)
            .map_err(|e| (e.path(i), e.message))?;
    }
    super::mode::validate_mode(s)?;
    validate_faults(s)?;
    validate_monitoring(s)
}

/// `monitoring`'s ports: free of each other, of the harness's metrics address and of every
/// local cluster's ports.
fn validate_monitoring(s: &Scenario) -> Result<(), (String, String)> {
    let m = &s.monitoring;
    if !m.enabled {
        return Ok(());
    }
    let exporters = crate::monitoring::config::redis_nodes(s).len() as u32;
    let prom = u32::from(m.prometheus_port);
    let first = u32::from(m.redis_exporter_base_port);
    let last = first + exporters.max(1) - 1;
    if m.prometheus_port < 1024 || last > 65535 || first < 1024 {
        return Err((
            "monitoring.redis_exporter_base_port".to_string(),
            format!("ports {first}-{last} (one per Redis node) must lie within 1024-65535"),
        ));
    }
    if m.scrape_interval < std::time::Duration::from_millis(100) {
        return Err((
            "monitoring.scrape_interval".to_string(),
            "is under 100ms; use e.g. \"1s\"".to_string(),
        ));
    }
    let metrics = crate::monitoring::metrics_addr(s, None).map_or(0, |a| u32::from(a.port()));
    let mut taken: Vec<(u32, u32, String)> = vec![
        (prom, prom, "monitoring.prometheus_port".to_string()),
        (
            first,
            last,
            "monitoring.redis_exporter_base_port".to_string(),
        ),
        (metrics, metrics, "metrics_addr".to_string()),
    ];
    let used: Vec<&str> = s.backends.iter().filter_map(|b| b.cluster()).collect();
    for (name, section) in s.clusters.iter().filter(|(n, _)| used.contains(n)) {
        if section.mode() == ClusterMode::Local {
            for (a, b, f) in section.port_ranges() {
                taken.push((a, b, format!("clusters.{name}.{f}")));
            }
        }
    }
    for (i, (a0, a1, fa)) in taken.iter().enumerate().take(2) {
        for (b0, b1, fb) in taken.iter().skip(i + 1) {
            if a0 <= b1 && b0 <= a1 {
                return Err((
                    fa.clone(),
                    format!(
                        "ports {a0}-{a1} overlap ports {b0}-{b1} of `{fb}`; choose other ports"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The sections of the clusters that backends run on: ports, seeds, timeouts, and no port
/// shared between two local clusters.
fn validate_clusters(s: &Scenario) -> Result<(), (String, String)> {
    let used: Vec<&str> = s.backends.iter().filter_map(|b| b.cluster()).collect();
    for (name, section) in s.clusters.iter().filter(|(n, _)| used.contains(n)) {
        let field = |f: &str| format!("clusters.{name}.{f}");
        if section.mode() == ClusterMode::External && section.network() == NetworkMode::Namespaces {
            return Err((
                field("network"),
                "\"namespaces\" applies to clusters brokerbench starts; remove it, or use mode = \"local\"".to_string(),
            ));
        }
        match section {
            ClusterSection::Redis(r) => {
                if r.mode == ClusterMode::Local
                    && (r.base_port < 1024 || r.base_port as u32 + 6 + 10000 > 65535)
                {
                    return Err((
                        field("base_port"),
                        format!(
                            "{} leaves no room for 6 nodes and their bus ports (+10000); use 1024 to 55529",
                            r.base_port
                        ),
                    ));
                }
                if r.mode == ClusterMode::External && r.nodes.is_empty() {
                    return Err((
                        field("nodes"),
                        "external mode needs at least one seed address \"host:port\"".to_string(),
                    ));
                }
                if r.node_timeout_ms < 100 {
                    return Err((
                        field("node_timeout_ms"),
                        format!("{} is too short; use at least 100", r.node_timeout_ms),
                    ));
                }
                check_broker_root(
                    &format!("clusters.{name}"),
                    r.mode,
                    &r.broker_root,
                    true,
                    &REDIS_BINARIES,
                )?;
            }
            ClusterSection::Rabbitmq(q) => {
                if q.mode == ClusterMode::External && q.amqp_uris.is_empty() {
                    return Err((
                        field("amqp_uris"),
                        "external mode needs one AMQP URI per node".to_string(),
                    ));
                }
                // Written into rabbitmq.conf and the AMQP URIs as they are.
                for (f, v) in [("username", &q.username), ("password", &q.password)] {
                    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
                    if v.is_empty() || v.len() > 64 || !v.chars().all(plain) {
                        return Err((
                            field(f),
                            "use 1 to 64 letters, digits, '-', '_' or '.'".to_string(),
                        ));
                    }
                }
                check_broker_root(
                    &format!("clusters.{name}"),
                    q.mode,
                    &q.broker_root,
                    true,
                    &RABBIT_BINARIES,
                )?;
            }
        }
    }
    super::clusters::check_ports(&s.clusters, &used)
}

/// Faults: in the measured phase, on a destination and consumer that exist, on clusters that
/// brokerbench started itself (it cannot kill a user's nodes).
fn validate_faults(s: &Scenario) -> Result<(), (String, String)> {
    let w = &s.workload;
    if w.op_timeout < std::time::Duration::from_millis(100) {
        return Err((
            "workload.op_timeout".into(),
            format!(
                "{} is too short; use at least \"100ms\"",
                humantime::format_duration(w.op_timeout)
            ),
        ));
    }
    for (i, f) in s.faults.iter().enumerate() {
        let err = |field: &str, message: String| Err((format!("faults[{i}].{field}"), message));
        if f.at >= w.duration {
            return err(
                "at",
                format!(
                    "{} is not inside the measured phase (workload.duration = {}); faults count from its start",
                    humantime::format_duration(f.at),
                    humantime::format_duration(w.duration)
                ),
            );
        }
        let applies: Vec<&BackendSpec> = s
            .backends
            .iter()
            .filter(|b| f.applies_to(&b.label(), b.type_name(), b.cluster()))
            .collect();
        if let Some(name) = f.clusters.iter().find(|n| s.clusters.get(n).is_none()) {
            let names: Vec<&str> = s.clusters.iter().map(|(n, _)| n).collect();
            return err(
                "clusters",
                format!(
                    "\"{name}\" is not a cluster of this scenario; use names of its clusters ({})",
                    names.join(", ")
                ),
            );
        }
        if applies.is_empty() {
            return err(
                "backends",
                format!(
                    "{:?} (on clusters {:?}) names no backend of this scenario; use labels or types of its [[backends]] and the clusters they run on",
                    f.backends, f.clusters
                ),
            );
        }
        match (&f.target, f.action) {
            (Target::Consumer(c), FaultAction::KillConsumer) => {
                if *c >= w.consumers() {
                    return err(
                        "target",
                        format!(
                            "consumer {c} does not exist; the workload has {} consumers (0 to {})",
                            w.consumers(),
                            w.consumers() - 1
                        ),
                    );
                }
                if w.consumers_per_destination < 2 {
                    return Err(("workload.consumers_per_destination".into(), "kill-consumer needs at least 2 consumers per destination, so that another one can pick up the killed one's messages".into()));
                }
                if f.restart_after.is_some() {
                    return err(
                        "restart_after",
                        "a killed consumer stays dead; remove restart_after".into(),
                    );
                }
                if let Some(h) = f.hold.filter(|h| *h == 0 || *h > 100_000) {
                    return err("hold", format!("{h} is out of range; use 1 to 100000"));
                }
            }
            (_, _) if f.hold.is_some() => {
                return err(
                    "hold",
                    "only action = \"kill-consumer\" holds messages; remove hold".into(),
                )
            }
            (Target::Consumer(_), _) => {
                return err(
                    "target",
                    "a consumer is a target for action = \"kill-consumer\" only".into(),
                )
            }
            (_, FaultAction::KillConsumer) => {
                return err(
                    "target",
                    "kill-consumer needs target = \"consumer:<index>\"".into(),
                )
            }
            (t, _) => {
                if let Target::LeaderOf(d) | Target::ReplicaOf(d) = t {
                    let fewest = applies
                        .iter()
                        .map(|b| b.workload(w).destinations)
                        .min()
                        .unwrap_or(w.destinations);
                    if *d >= fewest {
                        return err(
                            "target",
                            format!(
                                "destination {d} does not exist; a backend it applies to has {fewest} (0 to {})",
                                fewest - 1
                            ),
                        );
                    }
                }
                if let Some(r) = f.restart_after {
                    if f.at + r >= w.duration + w.drain_timeout {
                        return err("restart_after", format!("the restart at {} would come after the drain; restart earlier or lengthen workload.duration", humantime::format_duration(f.at + r)));
                    }
                }
                for b in applies {
                    let name = b.cluster().unwrap_or_default();
                    let section = format!("clusters.{name}.mode");
                    let mode = s.clusters.get(name).map(|c| c.mode());
                    if mode == Some(ClusterMode::External) {
                        return err("action", format!("{} cannot {} nodes of an external cluster ({section} = \"external\"); run it with mode = \"local\", or limit the fault with `backends`", b.label(), f.action.as_str()));
                    }
                    let network = s
                        .clusters
                        .get(name)
                        .map(|c| c.network())
                        .unwrap_or_default();
                    if f.action == FaultAction::Partition && network != NetworkMode::Namespaces {
                        return err("action", format!("{} runs on the cluster \"{name}\", whose nodes share the loopback (clusters.{name}.network = \"{}\"): a node cannot be cut off there; set network = \"namespaces\" in [clusters.{name}] (needs root), or limit the fault with `backends` or `clusters`", b.label(), network.as_str()));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    const STREAM: &str = "name = \"t\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\nconsumers_per_destination = 2\n[[backends]]\ntype = \"redis-streams\"\n[[backends]]\ntype = \"rabbitmq-stream\"\n";

    #[test]
    fn a_stream_with_two_consumers_per_destination_is_refused() {
        let e = match crate::scenario::parse(Path::new("s.toml"), STREAM) {
            Ok(_) => {
                panic!("a rabbitmq-stream backend with 2 consumers per destination was accepted")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            e.starts_with("s.toml: field `workload.consumers_per_destination`: 2 consumers"),
            "{e}"
        );
        assert!(
            e.contains("backends[1] (rabbitmq-stream)")
                && e.contains("2 times")
                && e.contains("use consumers_per_destination = 1"),
            "{e}"
        );
        // One consumer per destination, or two without a stream backend, are fine.
        let one = STREAM.replace(
            "consumers_per_destination = 2",
            "consumers_per_destination = 1",
        );
        crate::scenario::parse(Path::new("s.toml"), &one).expect("one consumer per stream");
        let queues = STREAM.replace("rabbitmq-stream", "rabbitmq-quorum");
        crate::scenario::parse(Path::new("s.toml"), &queues).expect("two consumers per queue");
    }
}
