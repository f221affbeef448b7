//! The scenario's monitoring fields: `metrics_addr` (the harness's live metrics, as
//! `--metrics-addr`) and `monitoring` (`true`, or a `[monitoring]` table with its ports): the
//! run starts Prometheus and one redis_exporter per Redis node beside its clusters
//! (`crate::monitoring::stack`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Where `make monitoring` and `monitoring = true` put Prometheus, the first redis_exporter,
/// and the harness's metrics when no address is given (outside every port the tests use).
pub const DEFAULT_PROMETHEUS_PORT: u16 = 9090;
pub const DEFAULT_REDIS_EXPORTER_BASE_PORT: u16 = 9121;
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9190";

/// `monitoring = true`, or `[monitoring]` with its fields (enabled unless it says otherwise).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSettings {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Prometheus's HTTP port on 127.0.0.1.
    #[serde(default = "prometheus_port")]
    pub prometheus_port: u16,
    /// The redis_exporter of Redis node k (in the order of the run's clusters) listens on
    /// this + k.
    #[serde(default = "exporter_base")]
    pub redis_exporter_base_port: u16,
    /// How often Prometheus scrapes every target.
    #[serde(
        default = "scrape_interval",
        with = "super::model::humantime_serde_compat"
    )]
    pub scrape_interval: Duration,
}

fn yes() -> bool {
    true
}
fn prometheus_port() -> u16 {
    DEFAULT_PROMETHEUS_PORT
}
fn exporter_base() -> u16 {
    DEFAULT_REDIS_EXPORTER_BASE_PORT
}
fn scrape_interval() -> Duration {
    Duration::from_secs(1)
}

impl Default for MonitoringSettings {
    fn default() -> Self {
        MonitoringSettings {
            enabled: false,
            prometheus_port: prometheus_port(),
            redis_exporter_base_port: exporter_base(),
            scrape_interval: scrape_interval(),
        }
    }
}

impl MonitoringSettings {
    pub fn is_default(&self) -> bool {
        *self == MonitoringSettings::default()
    }
}

/// `monitoring = true|false` or a table.
pub fn deserialize_monitoring<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<MonitoringSettings, D::Error> {
    match toml::Value::deserialize(d)? {
        toml::Value::Boolean(enabled) => Ok(MonitoringSettings {
            enabled,
            ..Default::default()
        }),
        table @ toml::Value::Table(_) => MonitoringSettings::deserialize(table)
            .map_err(|e| serde::de::Error::custom(e.message())),
        other => Err(serde::de::Error::custom(format!(
            "expected true, false or a [monitoring] table with prometheus_port, \
             redis_exporter_base_port, scrape_interval; got {other}"
        ))),
    }
}

/// `metrics_addr = "127.0.0.1:9610"`.
pub fn deserialize_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    parse_addr(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// An address to listen on, `host:port` with a numeric host.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!("\"{text}\" is not an address to listen on; write an IP and a port, e.g. \"127.0.0.1:9610\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrap {
        #[serde(deserialize_with = "deserialize_monitoring")]
        monitoring: MonitoringSettings,
    }

    #[test]
    fn true_or_a_table() {
        let w: Wrap = toml::from_str("monitoring = true").expect("bool");
        assert!(w.monitoring.enabled);
        assert_eq!(w.monitoring.prometheus_port, DEFAULT_PROMETHEUS_PORT);
        let w: Wrap =
            toml::from_str("[monitoring]\nprometheus_port = 9620\nscrape_interval = \"2s\"")
                .expect("table");
        assert!(w.monitoring.enabled);
        assert_eq!(w.monitoring.prometheus_port, 9620);
        assert_eq!(w.monitoring.scrape_interval, Duration::from_secs(2));
        let e = toml::from_str::<Wrap>("[monitoring]\nprometheus = 1")
            .err()
            .expect("unknown");
        assert!(e.to_string().contains("unknown field `prometheus`"), "{e}");
        let e = toml::from_str::<Wrap>("monitoring = 3")
            .err()
            .expect("number");
        assert!(e.to_string().contains("expected true, false"), "{e}");
    }

    #[test]
    fn an_address_must_have_a_port() {
        assert!(parse_addr("127.0.0.1:9610").is_ok());
        let e = parse_addr("localhost").expect_err("no port");
        assert!(e.contains("e.g. \"127.0.0.1:9610\""), "{e}");
    }
}
