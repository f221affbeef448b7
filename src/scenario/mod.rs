//! Scenario files: loading, validation with precise messages, and the run's timeline.

mod broker_root;
pub mod clusters;
mod detection;
pub mod faults;
mod guarantee;
mod mode;
mod model;
pub mod monitoring;
mod overrides;
pub mod quick;
pub mod timeline;
mod validate;

pub use broker_root::{BrokerRoot, KnownRoot};
pub use clusters::{ClusterKind, ClusterSection, Clusters};
pub use detection::FailureDetection;
pub use faults::{FaultAction, FaultSpec, Target};
pub use guarantee::{Guarantee, GuaranteeClass};
pub use mode::{replayable_types, LoadMode, MAX_REPLAY_MESSAGES};
pub use model::*;
pub use overrides::{parse_rate, WorkloadOverrides};
pub use validate::validate;

use std::path::{Path, PathBuf};

/// A scenario file that cannot be used, with the file, the field and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read the scenario file: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: field `{field}`: {message}")]
    Field {
        file: PathBuf,
        field: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    /// A command-line flag that overrides a field (`WorkloadOverrides`).
    #[error("{file}: flag `{flag}`: {message}")]
    Flag {
        file: PathBuf,
        flag: String,
        message: String,
    },
}

/// Read, parse and validate a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parse and validate scenario text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
    let de = toml::Deserializer::new(text);
    let mut scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
        let mut field = e.path().to_string();
        let inner = e.into_inner();
        let mut message = crate::text::shorten_quoted(&one_line(inner.message()), 80);
        // A cluster section is read in two steps (its kind first): the inner field comes as
        // "`field`: message".
        if let Some((inner_field, rest)) = message
            .strip_prefix('`')
            .and_then(|m| m.split_once("`: "))
            .filter(|_| field.starts_with("clusters."))
        {
            field = format!("{field}.{inner_field}");
            message = rest.to_string();
        }
        // Inside an internally tagged enum (a backend entry) the path stops at the entry: add
        // the unknown field's name so the message names it.
        if let Some(name) = message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            if !field.ends_with(name) {
                field = format!("{field}.{name}");
            }
        }
        let line = inner
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        if field.is_empty() || field == "." {
            ScenarioError::Syntax {
                file: path.to_path_buf(),
                message: format!("{message}{at}"),
            }
        } else {
            ScenarioError::Field {
                file: path.to_path_buf(),
                field,
                message: format!("{}{at}", hint(&message)),
            }
        }
    })?;
    // A relative broker_root is the scenario file's folder's.
    let base = path.parent().unwrap_or(Path::new("."));
    for (_, section) in scenario.clusters.iter_mut() {
        let root = match section {
            ClusterSection::Redis(r) => &mut r.broker_root,
            ClusterSection::Rabbitmq(q) => &mut q.broker_root,
        };
        *root = root.take().map(|r| r.relative_to(base));
    }
    let field_error = |(field, message): (String, String)| ScenarioError::Field {
        file: path.to_path_buf(),
        field,
        message: crate::text::shorten_quoted(&message, 80),
    };
    clusters::resolve(&mut scenario.clusters, &mut scenario.backends).map_err(field_error)?;
    validate(&scenario).map_err(field_error)?;
    Ok(scenario)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Add the fix to serde's messages where it is not obvious.
fn hint(message: &str) -> String {
    if message.starts_with("unknown variant") && message.contains("redis-streams") {
        format!("{message} (unknown backend type)")
    } else if message.starts_with("unknown field") {
        format!("{message}; remove it or fix its spelling")
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_shipped_scenario_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("scenarios/") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                if let Err(e) = super::load(&path) {
                    panic!("{e}");
                }
                n += 1;
            }
        }
        assert!(n >= 10, "only {n} scenarios found in {}", dir.display());
    }

    use super::*;

    const GOOD: &str = "name = \"t\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n[[backends]]\ntype = \"redis-streams\"\n";

    fn err(text: &str) -> String {
        match parse(Path::new("s.toml"), text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_partition_needs_a_cluster_in_namespaces() {
        let fault = "[[faults]]\nat = \"0s\"\naction = \"partition\"\ntarget = \"leader-of:0\"\n";
        let e = err(&format!("{GOOD}{fault}"));
        assert!(
            e.contains("field `faults[0].action`")
                && e.contains("clusters.redis.network = \"loopback\"")
                && e.contains("set network = \"namespaces\" in [clusters.redis]"),
            "{e}"
        );
        let namespaced = GOOD.replace(
            "[[backends]]",
            "[clusters.redis]\nnetwork = \"namespaces\"\n[[backends]]",
        );
        let ok = parse(Path::new("s.toml"), &format!("{namespaced}{fault}")).expect("valid");
        assert_eq!(ok.faults[0].action, FaultAction::Partition);
        let external = GOOD.replace(
            "[[backends]]",
            "[clusters.redis]\nmode = \"external\"\nnodes = [\"10.0.0.1:7000\"]\nnetwork = \"namespaces\"\n[[backends]]",
        );
        let e = err(&external);
        assert!(e.contains("field `clusters.redis.network`"), "{e}");
    }

    #[test]
    fn faults_are_checked_before_anything_starts() {
        let with = |fault: &str| format!("{GOOD}[[faults]]\n{fault}\n");
        let ok = parse(
            Path::new("s.toml"),
            &with("at = \"500ms\"\naction = \"kill\"\ntarget = \"leader-of:0\"\nrestart_after = \"2s\""),
        )
        .expect("valid fault");
        assert_eq!(ok.faults[0].target, Target::LeaderOf(0));
        for (fault, expect) in [
            (
                "at = \"5s\"\naction = \"kill\"\ntarget = \"leader-of:0\"",
                "field `faults[0].at`: 5s is not inside the measured phase",
            ),
            (
                "at = \"0s\"\naction = \"kill\"\ntarget = \"leader-of:3\"",
                "field `faults[0].target`: destination 3 does not exist",
            ),
            (
                "at = \"0s\"\naction = \"kill\"\ntarget = \"master:1\"",
                "field `faults[0].target`: \"master:1\" is not a target",
            ),
            (
                "at = \"0s\"\naction = \"explode\"\ntarget = \"random\"",
                "field `faults[0].action`",
            ),
            (
                "at = \"0s\"\naction = \"kill-consumer\"\ntarget = \"consumer:0\"",
                "field `workload.consumers_per_destination`: kill-consumer needs at least 2",
            ),
            (
                "at = \"0s\"\naction = \"kill\"\ntarget = \"consumer:0\"",
                "field `faults[0].target`: a consumer is a target for action = \"kill-consumer\" only",
            ),
            (
                "at = \"0s\"\naction = \"kill\"\ntarget = \"random\"\nbackends = [\"nope\"]",
                "field `faults[0].backends`",
            ),
            (
                "at = \"0s\"\naction = \"kill\"\ntarget = \"random\"\nrestart_after = \"60s\"",
                "field `faults[0].restart_after`: the restart at 1m would come after the drain",
            ),
        ] {
            let e = err(&with(fault));
            assert!(e.contains(expect), "{fault}\n{e}");
        }
        let external = GOOD.replace(
            "[[backends]]",
            "[clusters.redis]\nmode = \"external\"\nnodes = [\"10.0.0.1:7000\"]\n[[backends]]",
        );
        let e = err(&format!(
            "{external}[[faults]]\nat = \"0s\"\naction = \"kill\"\ntarget = \"random\"\n"
        ));
        assert!(
            e.contains("faults[0].action") && e.contains("external"),
            "{e}"
        );
    }

    #[test]
    fn producer_and_consumer_totals_spread_over_each_backends_destinations() {
        let text = GOOD
            .replace(
                "rate = 10",
                "rate = 10\nproducers_total = 12\nconsumers_total = 6",
            )
            .replace(
                "type = \"redis-streams\"\n",
                "type = \"redis-streams\"\ndestinations = 3\n",
            );
        let s = parse(Path::new("s.toml"), &text).expect("valid");
        let w = s.backends[0].workload(&s.workload);
        assert_eq!(
            (w.producers(), w.consumers(), w.producers_per_destination),
            (12, 6, 4)
        );
        assert_eq!(s.workload.repeat, 1);
        let e = err(&text.replace("destinations = 3", "destinations = 5"));
        assert!(
            e.contains("field `workload.producers_total`: 12 cannot be spread evenly over the 5 destinations"),
            "{e}"
        );
        let e = err(&text.replace("rate = 10", "rate = 10\nrepeat = 0"));
        assert!(
            e.contains("field `workload.repeat`: 0 is out of range"),
            "{e}"
        );
    }

    #[test]
    fn a_good_scenario_parses_with_defaults() {
        let s = parse(Path::new("s.toml"), GOOD).expect("valid");
        assert_eq!(s.workload.destinations, 1);
        assert_eq!(s.workload.rate, Rate::PerSecond(10.0));
        assert_eq!(s.backends[0].label(), "redis-streams");
        assert_eq!(s.clusters.redis("redis").map(|r| r.base_port), Some(7001));
        assert_eq!(s.backends[0].cluster(), Some("redis"));
    }

    #[test]
    fn broker_root_errors_name_the_field_and_the_fix() {
        let with = |section: &str, line: &str| {
            format!("{GOOD}[clusters.{section}]\n{line}\n").replace(
                "redis-streams",
                if section == "redis" {
                    "redis-streams"
                } else {
                    "rabbitmq-quorum"
                },
            )
        };
        let e = err(&with("redis", "broker_root = \"debian14\""));
        assert!(
            e.starts_with("s.toml: field `clusters.redis.broker_root`: unknown broker root \"debian14\"; use \"debian13\""),
            "{e}"
        );
        let e = err(&with("rabbitmq", "broker_root = \"/nonexistent/root\""));
        assert!(
            e.starts_with("s.toml: field `clusters.rabbitmq.broker_root`: ")
                && e.contains("point broker_root at a root with the brokers installed"),
            "{e}"
        );
        // A root without the brokers: the missing binaries are named.
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(tmp.path().join("proc")).expect("mkdir");
        let root = tmp.path().display().to_string();
        let e = err(&with("redis", &format!("broker_root = \"{root}\"")));
        assert!(e.contains("has no redis-server, redis-cli;"), "{e}");
        // Relative paths are taken from the scenario file's folder.
        let file = tmp.path().join("s.toml");
        let e = parse(&file, &with("redis", "broker_root = \"./sub/root\"")).expect_err("no root");
        assert!(
            e.to_string().contains(&format!("{root}/./sub/root"))
                || e.to_string().contains(&format!("{root}/sub/root")),
            "{e}"
        );
        let e = err(&with(
            "redis",
            "mode = \"external\"\nnodes = [\"h:1\"]\nbroker_root = \"debian13\"",
        ));
        assert!(
            e.contains("only local clusters run from a broker root"),
            "{e}"
        );
        // Not checked when no backend uses the cluster.
        assert!(parse(
            Path::new("s.toml"),
            &format!("{GOOD}[clusters.rabbitmq]\nbroker_root = \"/nonexistent\"\n")
        )
        .is_ok());
    }

    #[test]
    fn errors_name_the_file_the_field_and_the_fix() {
        let e = err(&GOOD.replace("rate = 10", "rate = 10\nbogus = 1"));
        assert!(
            e.starts_with("s.toml: field `workload.bogus`: unknown field"),
            "{e}"
        );
        let e = err(&GOOD.replace("rate = 10", "rate = -5"));
        assert!(
            e.starts_with("s.toml: field `workload.rate`") && e.contains("positive"),
            "{e}"
        );
        let e = err(&GOOD.replace("rate = 10", "rate = \"120% of max\""));
        assert!(
            e.starts_with("s.toml: field `workload.rate`") && e.contains("\"80% of max\""),
            "{e}"
        );
        let s = parse(
            Path::new("s.toml"),
            &GOOD.replace("rate = 10", "rate = \"80% of max\""),
        )
        .expect("a share of max parses");
        assert_eq!(s.workload.rate, Rate::ShareOfMax(0.8));
        let e = err(&GOOD.replace("redis-streams", "kafka"));
        assert!(
            e.contains("`backends[0].type`") && e.contains("rabbitmq-quorum"),
            "{e}"
        );
        let e = err(&GOOD.replace("redis-streams\"", "rabbitmq-quorum\"\nlazy = true"));
        assert!(e.contains("`backends[0].lazy`"), "{e}");
        let e = err(&GOOD.replace("redis-streams\"", "rabbitmq-stream\"\nack = \"auto\""));
        assert!(
            e.contains("`backends[0].ack`") && e.contains("manual"),
            "{e}"
        );
        let e = err(&GOOD.replace("redis-streams\"", "rabbitmq-quorum\"\nha_mode = \"all\""));
        assert!(
            e.contains("`backends[0].ha_mode`") && e.contains("only applies to rabbitmq-mirrored"),
            "{e}"
        );
        let e = err(&GOOD.replace("\"1s\"", "\"soon\""));
        assert!(
            e.contains("`workload.duration`") && e.contains("30s"),
            "{e}"
        );
        let e = err(&GOOD.replace("message_size = 100", "message_size = 10"));
        assert!(
            e.contains("`workload.message_size`") && e.contains("at least 40"),
            "{e}"
        );
        let e = err(&GOOD.replace("[workload]", "[workload"));
        assert!(e.starts_with("s.toml: ") && e.contains("line 2"), "{e}");
        let e = err(&format!("{GOOD}[[backends]]\ntype = \"redis-streams\"\n"));
        assert!(
            e.contains("`backends[1].label`") && e.contains("distinct"),
            "{e}"
        );
    }

    #[test]
    fn redis_retry_and_claim_settings() {
        let s = parse(Path::new("s.toml"), GOOD).expect("valid");
        let BackendSpec::RedisStreams(r) = &s.backends[0] else {
            panic!("not redis: {:?}", s.backends[0]);
        };
        assert_eq!(
            (r.client_retries, r.claim_min_idle_ms, r.claim_interval_ms),
            (0, 5000, 1000)
        );
        let with = |extra: &str| format!("{GOOD}{extra}\n");
        let e = err(&with("claim_min_idle_ms = 0"));
        assert!(e.contains("`backends[0].claim_min_idle_ms`"), "{e}");
        // Without claiming the idle time does not matter.
        parse(
            Path::new("s.toml"),
            &with("claim_interval_ms = 0\nclaim_min_idle_ms = 0"),
        )
        .expect("claiming off");
        let e = err(&with("claim_interval_ms = 4000000"));
        assert!(e.contains("`backends[0].claim_interval_ms`"), "{e}");
        let e = err(&with("client_retries = 17"));
        assert!(
            e.contains("`backends[0].client_retries`") && e.contains("0 to 16"),
            "{e}"
        );
        // The reply timeout: 2 s by default, WAIT's and BLOCK's time added to it.
        assert_eq!(r.reply_timeout_ms, 2000);
        assert_eq!(r.producer_reply_timeout().as_millis(), 2000);
        assert_eq!(
            r.consumer_reply_timeout().as_millis(),
            2000 + r.block_ms as u128
        );
        let s = parse(
            Path::new("s.toml"),
            &with(
                "wait_replicas = 1
wait_timeout_ms = 700
reply_timeout_ms = 1000",
            ),
        )
        .expect("valid");
        let BackendSpec::RedisStreams(r) = &s.backends[0] else {
            panic!("not redis");
        };
        assert_eq!(r.producer_reply_timeout().as_millis(), 1700);
        let e = err(&with("reply_timeout_ms = 50"));
        assert!(
            e.contains("`backends[0].reply_timeout_ms`") && e.contains("100 to 600000"),
            "{e}"
        );
        let e = err(&with("wait_replicas = 1\nwait_timeout_ms = 0"));
        assert!(e.contains("`backends[0].wait_timeout_ms`"), "{e}");
    }
}
