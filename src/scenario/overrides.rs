//! The workload's figures from the command line (`run --rate 5000 …`, `quick`): applied to a
//! loaded scenario and checked by the same validation as the file's own fields; an error names
//! the flag. A flag replaces the figure everywhere in the file: `[workload]` and any backend
//! entry's own `rate` or `destinations`. meta.json records the flags a run was given.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::clusters::ClusterSection;
use super::model::{humantime_option, Rate, Scenario};
use super::ScenarioError;

/// The workload flags of `run` and `quick` (None: the file's value, or quick's default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, clap::Args)]
pub struct WorkloadOverrides {
    /// Target rate over all producers in msg/s, or "max" (workload.rate).
    #[arg(long, value_parser = parse_rate)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Measured duration, e.g. "120s" (workload.duration).
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_option")]
    pub duration: Option<Duration>,
    /// Warm-up before the measured duration, e.g. "30s" (workload.warmup).
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(skip_serializing_if = "Option::is_none", with = "humantime_option")]
    pub warmup: Option<Duration>,
    /// Bytes per message, at least 40, the harness's header (workload.message_size).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_size: Option<usize>,
    /// Queues or streams (workload.destinations).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destinations: Option<usize>,
    /// Producers over all destinations, spread evenly (workload.producers_total).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producers: Option<usize>,
    /// Consumers over all destinations, spread evenly (workload.consumers_total).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<usize>,
    /// Unconfirmed messages a producer may have open at once (workload.max_in_flight).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Run every backend N times, interleaved (A B C, A B C, …) (workload.repeat).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<usize>,
    /// "defaults": every local cluster with the brokers' production failure detection
    /// (Redis cluster-node-timeout 15000 ms, RabbitMQ net_ticktime 60 s) instead of the file's
    /// (the clusters' node_timeout_ms and net_ticktime_s).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_detection: Option<DetectionProfile>,
}

/// `--failure-detection`: which failure-detection timeouts the local clusters run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DetectionProfile {
    /// The brokers' own defaults: Redis `cluster-node-timeout` 15000 ms, RabbitMQ
    /// `net_ticktime` 60 s.
    Defaults,
}

/// Redis's default `cluster-node-timeout`, ms.
pub const REDIS_DEFAULT_NODE_TIMEOUT_MS: u64 = 15_000;
/// Erlang's (and so RabbitMQ's) default `net_ticktime`, s.
pub const RABBITMQ_DEFAULT_NET_TICKTIME_S: u32 = 60;

/// `--rate`: msg/s, "max" or "80% of max".
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    if text.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    if let Some(share) = Rate::parse_share(text) {
        return Ok(Rate::ShareOfMax(share));
    }
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSecond(r)),
        _ => Err(format!(
            "\"{text}\" is not a rate; use a positive number of msg/s (e.g. 10000), \"max\", or \
             a share of the maximum (e.g. \"80% of max\")"
        )),
    }
}

/// Which scenario fields each flag sets: (flag, field prefixes of validation errors it
/// explains).
const FLAG_FIELDS: [(&str, &[&str]); 10] = [
    ("--rate", &["workload.rate", ".rate"]),
    ("--duration", &["workload.duration"]),
    ("--warmup", &["workload.warmup"]),
    ("--message-size", &["workload.message_size"]),
    (
        "--destinations",
        &["workload.destinations", ".destinations"],
    ),
    ("--producers", &["workload.producers_total"]),
    ("--consumers", &["workload.consumers_total"]),
    ("--max-in-flight", &["workload.max_in_flight"]),
    ("--repeat", &["workload.repeat"]),
    (
        "--failure-detection",
        &[".node_timeout_ms", ".net_ticktime_s"],
    ),
];

impl WorkloadOverrides {
    pub fn is_empty(&self) -> bool {
        self.given().is_empty()
    }

    /// The flags given with their values, as typed, e.g. ("--rate", "5000").
    pub fn given(&self) -> Vec<(&'static str, String)> {
        let d = |d: &Option<Duration>| d.map(|d| humantime::format_duration(d).to_string());
        let n = |n: &Option<usize>| n.map(|n| n.to_string());
        let rate = self.rate.map(|r| r.to_string());
        let values = [
            rate,
            d(&self.duration),
            d(&self.warmup),
            n(&self.message_size),
            n(&self.destinations),
            n(&self.producers),
            n(&self.consumers),
            n(&self.max_in_flight),
            n(&self.repeat),
            self.failure_detection.map(|_| "defaults".to_string()),
        ];
        FLAG_FIELDS
            .iter()
            .zip(values)
            .filter_map(|((flag, _), v)| v.map(|v| (*flag, v)))
            .collect()
    }

    /// Set the flags' figures in `s` (read from `file`, which messages name) and check the
    /// scenario again as a whole: an error in a field a flag set names the flag; any other
    /// names the field and the flags that led to it (a fault after a shorter --duration).
    pub fn apply(&self, s: &mut Scenario, file: &Path) -> Result<(), ScenarioError> {
        if self.is_empty() {
            return Ok(());
        }
        let w = &mut s.workload;
        if let Some(r) = self.rate {
            w.rate = r;
        }
        if let Some(d) = self.duration {
            w.duration = d;
        }
        if let Some(d) = self.warmup {
            w.warmup = d;
        }
        if let Some(n) = self.message_size {
            w.message_size = n;
        }
        if let Some(n) = self.destinations {
            w.destinations = n;
        }
        if let Some(n) = self.producers {
            w.producers_total = Some(n);
        }
        if let Some(n) = self.consumers {
            w.consumers_total = Some(n);
        }
        if let Some(n) = self.max_in_flight {
            w.max_in_flight = n;
        }
        if let Some(n) = self.repeat {
            w.repeat = n;
        }
        for b in &mut s.backends {
            b.drop_own_workload(self.rate.is_some(), self.destinations.is_some());
        }
        if let Some(DetectionProfile::Defaults) = self.failure_detection {
            for (_, c) in s.clusters.iter_mut() {
                match c {
                    ClusterSection::Redis(r) => r.node_timeout_ms = REDIS_DEFAULT_NODE_TIMEOUT_MS,
                    ClusterSection::Rabbitmq(r) => {
                        r.net_ticktime_s = RABBITMQ_DEFAULT_NET_TICKTIME_S
                    }
                }
            }
        }
        let given = self.given();
        super::validate(s).map_err(|(field, message)| {
            let flag = FLAG_FIELDS.iter().find(|(flag, fields)| {
                given.iter().any(|(g, _)| g == flag)
                    && fields
                        .iter()
                        .any(|f| field.starts_with(f) || (f.starts_with('.') && field.ends_with(f)))
            });
            match flag {
                Some((flag, _)) => ScenarioError::Flag {
                    file: file.to_path_buf(),
                    flag: flag.to_string(),
                    message,
                },
                None => ScenarioError::Field {
                    file: file.to_path_buf(),
                    field,
                    message: format!(
                        "{message} (with {})",
                        given
                            .iter()
                            .map(|(f, v)| format!("{f} {v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                },
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{parse, BackendSpec};

    const FILE: &str = "name = \"t\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"10s\"\n[[backends]]\ntype = \"redis-streams\"\nrate = 50\ndestinations = 2\n[[backends]]\ntype = \"rabbitmq-quorum\"\n[[faults]]\nat = \"5s\"\naction = \"kill\"\ntarget = \"leader-of:0\"\n";

    fn scenario() -> Scenario {
        parse(Path::new("s.toml"), FILE).expect("valid")
    }

    fn apply(o: WorkloadOverrides) -> Result<Scenario, String> {
        let mut s = scenario();
        o.apply(&mut s, Path::new("s.toml"))
            .map(|()| s)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn flags_replace_the_figure_everywhere_in_the_file() {
        let s = apply(WorkloadOverrides {
            rate: Some(Rate::PerSecond(5000.0)),
            destinations: Some(3),
            producers: Some(6),
            consumers: Some(3),
            message_size: Some(256),
            max_in_flight: Some(64),
            warmup: Some(Duration::from_secs(1)),
            duration: Some(Duration::from_secs(20)),
            repeat: Some(2),
            failure_detection: None,
        })
        .expect("valid");
        for b in &s.backends {
            let w = b.workload(&s.workload);
            assert_eq!(w.rate, Rate::PerSecond(5000.0), "{}", b.label());
            assert_eq!(w.destinations, 3, "{}", b.label());
            assert_eq!((w.producers(), w.consumers()), (6, 3));
            assert_eq!((w.message_size, w.max_in_flight, w.repeat), (256, 64, 2));
        }
        let BackendSpec::RedisStreams(r) = &s.backends[0] else {
            panic!("not redis")
        };
        assert_eq!((r.rate, r.destinations), (None, None));
        // Without flags the file stands, the backend's own figures too.
        let s = apply(WorkloadOverrides::default()).expect("valid");
        assert_eq!(
            s.backends[0].workload(&s.workload).rate,
            Rate::PerSecond(50.0)
        );
    }

    #[test]
    fn errors_name_the_flag_and_the_fix() {
        let e = apply(WorkloadOverrides {
            message_size: Some(10),
            ..Default::default()
        })
        .expect_err("too small");
        assert_eq!(
            e,
            "s.toml: flag `--message-size`: 10 is smaller than the harness's header; use at least 40 bytes"
        );
        let e = apply(WorkloadOverrides {
            destinations: Some(0),
            ..Default::default()
        })
        .expect_err("zero");
        assert!(
            e.starts_with("s.toml: flag `--destinations`: 0 is out of range"),
            "{e}"
        );
        let e = apply(WorkloadOverrides {
            destinations: Some(4),
            producers: Some(6),
            ..Default::default()
        })
        .expect_err("uneven");
        assert!(
            e.starts_with("s.toml: flag `--producers`: 6 cannot be spread evenly"),
            "{e}"
        );
        let e = apply(WorkloadOverrides {
            rate: Some(Rate::PerSecond(2e7)),
            ..Default::default()
        })
        .expect_err("too fast");
        assert!(
            e.starts_with("s.toml: flag `--rate`: 20000000 msg/s is over"),
            "{e}"
        );
        // A field no flag sets, broken by a flag: the field, and the flags that led to it.
        let e = apply(WorkloadOverrides {
            duration: Some(Duration::from_secs(2)),
            ..Default::default()
        })
        .expect_err("fault after the end");
        assert!(
            e.starts_with("s.toml: field `faults[0].at`: 5s is not inside the measured phase")
                && e.ends_with("(with --duration 2s)"),
            "{e}"
        );
        assert!(parse_rate("0").is_err() && parse_rate("fast").is_err());
        assert_eq!(parse_rate("80% of max"), Ok(Rate::ShareOfMax(0.8)));
        assert_eq!(parse_rate("0.5 of max"), Ok(Rate::ShareOfMax(0.5)));
        assert!(parse_rate("180% of max").is_err());
        assert!(parse_rate("0% of max").is_err());
        assert_eq!(parse_rate("MAX"), Ok(Rate::Max));
    }

    #[test]
    fn meta_json_records_the_flags_given() {
        let o = WorkloadOverrides {
            rate: Some(Rate::Max),
            duration: Some(Duration::from_secs(90)),
            producers: Some(4),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&o).expect("json"),
            serde_json::json!({"rate": "max", "duration": "1m 30s", "producers": 4})
        );
        assert_eq!(
            serde_json::to_value(WorkloadOverrides::default()).expect("json"),
            serde_json::json!({})
        );
    }

    #[test]
    fn failure_detection_defaults_set_every_clusters_timeouts() {
        let s = apply(WorkloadOverrides {
            failure_detection: Some(DetectionProfile::Defaults),
            ..Default::default()
        })
        .expect("applies");
        let redis = s.clusters.redis("redis").map(|r| r.node_timeout_ms);
        assert_eq!(redis, Some(REDIS_DEFAULT_NODE_TIMEOUT_MS));
        let rabbit = s.clusters.rabbitmq("rabbitmq").map(|r| r.net_ticktime_s);
        assert_eq!(rabbit, Some(RABBITMQ_DEFAULT_NET_TICKTIME_S));
        let o = WorkloadOverrides {
            failure_detection: Some(DetectionProfile::Defaults),
            ..Default::default()
        };
        assert_eq!(o.given(), [("--failure-detection", "defaults".to_string())]);
        assert_eq!(
            serde_json::to_value(&o).expect("json"),
            serde_json::json!({ "failure_detection": "defaults" })
        );
    }
}
