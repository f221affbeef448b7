//! The load's mode: consumers beside the producers (`live`), or started only once the producers
//! have filled the destinations (`replay`: a new reader of the whole history), and its checks.

use serde::{Deserialize, Serialize};

use super::Scenario;
use crate::backend::registry::{BackendSpec, Replay, BACKEND_TYPES};

/// When the consumers start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// Consumers run beside the producers (warm-up, measure, drain).
    #[default]
    Live,
    /// The producers first fill the destinations with `workload.messages` confirmed messages
    /// and no consumer running (the fill); then new consumers read the whole history from the
    /// start position their backend declares (`BackendType::replay`) until every message is
    /// read (the replay). The fill rate and the replay rate are separate figures.
    Replay,
}

impl LoadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadMode::Live => "live",
            LoadMode::Replay => "replay",
        }
    }
}

/// The largest `workload.messages` a replay takes (the ledger holds a bit per message; the
/// history must fit the brokers' disks and memory).
pub const MAX_REPLAY_MESSAGES: u64 = 100_000_000;

/// Checks of `workload.mode` and what goes with it: `Err((field, message))`.
pub fn validate_mode(s: &Scenario) -> Result<(), (String, String)> {
    let w = &s.workload;
    let err = |field: &str, message: String| Err((field.to_string(), message));
    match w.mode {
        LoadMode::Live => {
            if w.messages.is_some() {
                return err(
                    "workload.messages",
                    "is only read with mode = \"replay\" (the number of messages the fill \
                     writes); remove it, or set workload.mode = \"replay\""
                        .to_string(),
                );
            }
            Ok(())
        }
        LoadMode::Replay => {
            let producers_max = s
                .backends
                .iter()
                .map(|b| b.workload(w).producers() as u64)
                .max()
                .unwrap_or(1);
            match w.messages {
                None => {
                    return err(
                        "workload.messages",
                        "is missing; mode = \"replay\" fills each backend with this many \
                         messages before its consumers start, e.g. messages = 20000"
                            .to_string(),
                    )
                }
                Some(m) if m < producers_max || m > MAX_REPLAY_MESSAGES => {
                    return err(
                        "workload.messages",
                        format!(
                            "{m} is out of range; use {producers_max} (one per producer) to \
                             {MAX_REPLAY_MESSAGES}"
                        ),
                    )
                }
                Some(_) => {}
            }
            if !w.warmup.is_zero() {
                return err(
                    "workload.warmup",
                    "a replay has no warm-up (the fill is all produced before any consumer \
                     starts); remove it"
                        .to_string(),
                );
            }
            if !s.faults.is_empty() {
                return err(
                    "faults",
                    "a replay takes no faults (its figures are the fill and the replay rates); \
                     put them in a scenario with mode = \"live\""
                        .to_string(),
                );
            }
            for (i, b) in s.backends.iter().enumerate() {
                if let Replay::Impossible(why) = b.backend_type().replay() {
                    return err(
                        &format!("backends[{i}].type"),
                        format!(
                            "{} cannot replay: {why}; a replay runs on the types that keep \
                             what they delivered: {}",
                            b.type_name(),
                            replayable_types().join(", ")
                        ),
                    );
                }
            }
            Ok(())
        }
    }
}

/// The backend types that can replay, from the registry (for messages).
pub fn replayable_types() -> Vec<&'static str> {
    BACKEND_TYPES
        .iter()
        .copied()
        .filter(|t| {
            BackendSpec::from_type(t)
                .is_some_and(|s| matches!(s.backend_type().replay(), Replay::FromFirst(_)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::scenario::parse;

    const REPLAY: &str = "name = \"r\"\n[workload]\nmode = \"replay\"\nmessages = 1000\n\
        message_size = 100\nrate = \"max\"\nduration = \"10s\"\n";

    fn with(workload: &str, rest: &str) -> Result<super::super::Scenario, String> {
        parse(Path::new("r.toml"), &format!("{REPLAY}{workload}\n{rest}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_replay_runs_on_streams_with_a_message_count() {
        let s = with("", "[[backends]]\ntype = \"redis-streams\"\n").expect("valid");
        assert_eq!(s.workload.mode, super::LoadMode::Replay);
        assert_eq!(s.workload.messages, Some(1000));
        assert_eq!(
            super::replayable_types(),
            ["redis-streams", "rabbitmq-stream", "rabbitmq-stream-native"]
        );
    }

    #[test]
    fn a_replay_refuses_queues_warmups_faults_and_a_missing_count() {
        for (ty, field) in [
            ("rabbitmq-quorum", "backends[0].type"),
            ("rabbitmq-mirrored", "backends[0].type"),
        ] {
            let e = with("", &format!("[[backends]]\ntype = \"{ty}\"\n")).expect_err(ty);
            assert!(
                e.contains(field) && e.contains("cannot replay: a queue deletes what it delivered"),
                "{e}"
            );
        }
        let redis = "[[backends]]\ntype = \"redis-streams\"\n";
        let e = with("warmup = \"1s\"", redis).expect_err("warm-up");
        assert!(e.contains("workload.warmup"), "{e}");
        let fault =
            "[[faults]]\nat = \"1s\"\naction = \"kill-consumer\"\ntarget = \"consumer:0\"\n";
        let e = with("", &format!("{redis}{fault}")).expect_err("faults");
        assert!(e.contains("faults") && e.contains("takes no faults"), "{e}");
        let text = REPLAY.replace("messages = 1000\n", "");
        let e = parse(Path::new("r.toml"), &format!("{text}{redis}")).expect_err("count");
        assert!(e.to_string().contains("workload.messages"), "{e}");
        let text = REPLAY.replace("messages = 1000", "messages = 0");
        let e = parse(Path::new("r.toml"), &format!("{text}{redis}")).expect_err("zero");
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn a_live_run_takes_no_message_count_from_the_file() {
        let text = REPLAY.replace("mode = \"replay\"\n", "");
        let e = parse(
            Path::new("r.toml"),
            &format!("{text}[[backends]]\ntype = \"redis-streams\"\n"),
        )
        .expect_err("live with messages");
        assert!(e.to_string().contains("workload.messages"), "{e}");
    }
}
