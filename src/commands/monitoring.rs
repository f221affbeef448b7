//! `brokerbench monitoring up|down` (`make monitoring`): the monitoring stack beside clusters
//! started with `cluster up`, left running until `down`.

use std::path::Path;

use super::Failure;
use crate::cli::MonitoringAction;
use crate::monitoring::config::targets;
use crate::monitoring::stack::MonitoringStack;
use crate::scenario::monitoring::{parse_addr, MonitoringSettings, DEFAULT_METRICS_ADDR};
use crate::scenario::{self, Scenario};

/// The scenario of `up` without `--scenario`: one Redis and one RabbitMQ backend on the
/// default local clusters.
const DEFAULT_SCENARIO: &str = "name = \"monitoring\"\n\
    [workload]\nmessage_size = 1024\nrate = 1000\nduration = \"1s\"\n\
    [[backends]]\ntype = \"redis-streams\"\n[[backends]]\ntype = \"rabbitmq-quorum\"\n";

pub async fn monitoring(action: MonitoringAction) -> Result<(), Failure> {
    match action {
        MonitoringAction::Up {
            dir,
            scenario,
            prometheus_port,
            redis_exporter_base_port,
            metrics_addr,
        } => {
            let s = match &scenario {
                Some(file) => scenario::load(file),
                None => scenario::parse(Path::new("(default clusters)"), DEFAULT_SCENARIO),
            }
            .map_err(|e| Failure::Input(e.to_string()))?;
            up(
                &s,
                &dir,
                prometheus_port,
                redis_exporter_base_port,
                metrics_addr,
            )
            .await
        }
        MonitoringAction::Down { dir } => {
            let stack = MonitoringStack::attach(&dir).map_err(|e| {
                Failure::Input(format!(
                    "{e}; is {} a `monitoring up` folder?",
                    dir.display()
                ))
            })?;
            let left = stack.down().await;
            if left.is_empty() {
                crate::outln!("monitoring stack in {} stopped", dir.display());
                Ok(())
            } else {
                Err(Failure::Failed(format!(
                    "still running: {}",
                    left.join(", ")
                )))
            }
        }
    }
}

async fn up(
    s: &Scenario,
    dir: &Path,
    prometheus_port: Option<u16>,
    exporter_base: Option<u16>,
    metrics_addr: Option<std::net::SocketAddr>,
) -> Result<(), Failure> {
    let settings = if s.monitoring.enabled {
        s.monitoring.clone()
    } else {
        MonitoringSettings::default()
    };
    let settings = MonitoringSettings {
        enabled: true,
        prometheus_port: prometheus_port.unwrap_or(settings.prometheus_port),
        redis_exporter_base_port: exporter_base.unwrap_or(settings.redis_exporter_base_port),
        ..settings
    };
    let addr = match metrics_addr.or(s.metrics_addr) {
        Some(a) => a,
        None => parse_addr(DEFAULT_METRICS_ADDR).map_err(Failure::Input)?,
    };
    let t = targets(s, &settings, Some(addr));
    let stack = MonitoringStack::up(dir, &t)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    crate::outln!(
        "Prometheus on {} scraping brokerbench at {addr}, {} redis_exporters ({}) and {} RabbitMQ \
         prometheus endpoints; config {}; stop with `brokerbench monitoring down --dir {}`",
        stack.url(),
        t.redis.len(),
        t.redis
            .iter()
            .map(|e| format!("{}->{}", e.port, e.node))
            .collect::<Vec<_>>()
            .join(", "),
        t.rabbitmq.len(),
        stack.dir.join("prometheus.yml").display(),
        dir.display()
    );
    Ok(())
}
