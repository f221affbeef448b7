//! `brokerbench quick <backend-type>`: a scenario built in memory, one backend on a local
//! cluster of its kind at the default ports, quick's workload defaults with the flags on top
//! (`WorkloadOverrides`, checked as a file's fields are). Its TOML is what the run folder keeps
//! as scenario.toml, so `brokerbench run <folder>/scenario.toml` runs it again.

use std::path::Path;
use std::time::Duration;

use super::clusters::{resolve, ClusterSection, Clusters};
use super::model::{BackendSpec, Rate, Scenario, Workload, BACKEND_TYPES};
use super::{ScenarioError, WorkloadOverrides};

/// What messages name as the scenario's file.
pub const SOURCE: &str = "brokerbench quick";

/// Quick's workload before the flags: 1000 msg/s of 1 KiB messages to one destination with
/// one producer and one consumer, 5 s of warm-up and 30 s measured.
pub fn default_workload() -> Workload {
    Workload {
        message_size: 1024,
        destinations: 1,
        producers_per_destination: 1,
        consumers_per_destination: 1,
        producers_total: None,
        consumers_total: None,
        rate: Rate::PerSecond(1000.0),
        max_in_flight: 128,
        warmup: Duration::from_secs(5),
        duration: Duration::from_secs(30),
        drain_timeout: Duration::from_secs(30),
        op_timeout: Duration::from_secs(10),
        consumer_delay: Duration::ZERO,
        repeat: 1,
        messages: None,
        mode: super::LoadMode::Live,
    }
}

/// The scenario of `quick <backend_type>` with `overrides`; `base_port` moves the local
/// cluster's ports (Redis: the first node's; RabbitMQ: node 1's AMQP port, every other port by
/// as much).
pub fn scenario(
    backend_type: &str,
    base_port: Option<u16>,
    overrides: &WorkloadOverrides,
) -> Result<Scenario, ScenarioError> {
    let source = Path::new(SOURCE);
    let flag_error = |flag: &str, message: String| ScenarioError::Flag {
        file: source.to_path_buf(),
        flag: flag.to_string(),
        message,
    };
    let spec = BackendSpec::from_type(backend_type).ok_or_else(|| {
        flag_error(
            "<backend-type>",
            format!(
                "\"{backend_type}\" is not a backend type; use one of {}",
                BACKEND_TYPES.join(", ")
            ),
        )
    })?;
    let mut s = Scenario {
        name: format!("quick-{backend_type}"),
        description: format!("brokerbench quick {backend_type}"),
        metrics_addr: None,
        workload: default_workload(),
        clusters: Clusters::default(),
        backends: vec![spec],
        faults: Vec::new(),
        monitoring: Default::default(),
    };
    resolve(&mut s.clusters, &mut s.backends).map_err(|(field, message)| ScenarioError::Field {
        file: source.to_path_buf(),
        field,
        message,
    })?;
    if let Some(port) = base_port {
        for (_, section) in s.clusters.iter_mut() {
            move_ports(section, port).map_err(|m| flag_error("--base-port", m))?;
        }
    }
    // Checked before the workload flags: the ports --base-port moved.
    super::validate(&s).map_err(|(field, message)| {
        let flag = if field.starts_with("clusters.") {
            "--base-port"
        } else {
            "<backend-type>"
        };
        flag_error(flag, format!("{message} (field `{field}`)"))
    })?;
    overrides.apply(&mut s, source)?;
    Ok(s)
}

/// Put a local cluster's first port at `port`.
fn move_ports(section: &mut ClusterSection, port: u16) -> Result<(), String> {
    match section {
        ClusterSection::Redis(r) => r.base_port = port,
        ClusterSection::Rabbitmq(q) => {
            let old = [
                q.amqp_base_port,
                q.http_base_port,
                q.stream_base_port,
                q.prometheus_base_port,
                q.dist_base_port,
                q.epmd_port,
            ];
            let amqp = i32::from(q.amqp_base_port);
            let delta = i32::from(port) - amqp;
            // The distribution ports run 10 up from the first (rabbitmqctl's own).
            let lowest = old.iter().map(|p| i32::from(*p)).min().unwrap_or(amqp);
            let highest = old.iter().map(|p| i32::from(*p)).max().unwrap_or(amqp) + 9;
            if lowest + delta < 1024 || highest + delta > i32::from(u16::MAX) {
                return Err(format!(
                    "{port} puts RabbitMQ's other ports (management, stream, Prometheus, \
                     distribution, epmd: moved as far as the AMQP port) outside 1024 to 65535; \
                     use {} to {}",
                    1024 + amqp - lowest,
                    i32::from(u16::MAX) - (highest - amqp)
                ));
            }
            let moved = old.map(|p| (i32::from(p) + delta) as u16);
            [
                q.amqp_base_port,
                q.http_base_port,
                q.stream_base_port,
                q.prometheus_base_port,
                q.dist_base_port,
                q.epmd_port,
            ] = moved;
        }
    }
    Ok(())
}

/// The scenario as a scenario file.
pub fn to_toml(s: &Scenario) -> Result<String, ScenarioError> {
    toml::to_string(s).map_err(|e| ScenarioError::Syntax {
        file: SOURCE.into(),
        message: format!("cannot be written as TOML: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_type_builds_a_valid_scenario_that_parses_back() {
        for t in BACKEND_TYPES {
            let s = scenario(t, None, &WorkloadOverrides::default()).expect(t);
            assert_eq!(s.backends.len(), 1);
            assert_eq!(s.backends[0].type_name(), *t);
            let text = to_toml(&s).expect("toml");
            let back = super::super::parse(Path::new("scenario.toml"), &text)
                .unwrap_or_else(|e| panic!("{t}: {e}\n{text}"));
            assert_eq!(back.name, format!("quick-{t}"));
            assert_eq!(back.workload.rate, Rate::PerSecond(1000.0));
            assert_eq!(back.workload.duration, Duration::from_secs(30));
            assert_eq!(
                serde_json::to_value(&back.clusters).expect("json"),
                serde_json::to_value(&s.clusters).expect("json"),
                "{t}"
            );
        }
        let s = scenario("redis-streams", None, &WorkloadOverrides::default()).expect("redis");
        assert_eq!(s.clusters.redis("redis").map(|r| r.base_port), Some(7001));
    }

    #[test]
    fn flags_and_ports_apply_and_are_checked() {
        let o = WorkloadOverrides {
            rate: Some(Rate::PerSecond(10_000.0)),
            duration: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        let s = scenario("redis-streams", Some(7481), &o).expect("valid");
        assert_eq!(s.workload.rate, Rate::PerSecond(10_000.0));
        assert_eq!(s.workload.duration, Duration::from_secs(3));
        assert_eq!(s.clusters.redis("redis").map(|r| r.base_port), Some(7481));
        let s = scenario("rabbitmq-quorum", Some(6000), &o).expect("valid");
        let q = s.clusters.rabbitmq("rabbitmq").expect("rabbit");
        assert_eq!(
            (q.amqp_base_port, q.http_base_port, q.epmd_port),
            (6000, 15672 + 328, 4370 + 328)
        );
        let e = scenario("redis-streams", Some(60000), &o).expect_err("no room");
        assert!(
            e.to_string()
                .starts_with("brokerbench quick: flag `--base-port`: 60000 leaves no room"),
            "{e}"
        );
        let e = scenario("rabbitmq-stream", Some(65000), &o).expect_err("out of range");
        assert!(e.to_string().contains("flag `--base-port`"), "{e}");
        let e = scenario("kafka", None, &o).expect_err("unknown");
        assert!(
            e.to_string().contains("redis-streams, rabbitmq-quorum"),
            "{e}"
        );
        let e = scenario(
            "redis-streams",
            None,
            &WorkloadOverrides {
                message_size: Some(8),
                ..Default::default()
            },
        )
        .expect_err("small");
        assert!(
            e.to_string()
                .starts_with("brokerbench quick: flag `--message-size`: 8 is smaller"),
            "{e}"
        );
    }
}
