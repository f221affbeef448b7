//! The report's Replay section: for a replay run (`workload.mode = "replay"`), each backend's
//! fill and replay rates beside the ledger's count of what the new readers read, and the types
//! of the run that cannot replay.

use super::document::{opt, Block};
use super::results::RunResults;
use crate::backend::registry::Replay;
use crate::scenario::LoadMode;

/// The Replay heading, paragraph and table; nothing when no row of the run is a replay.
pub(super) fn blocks(run: &RunResults) -> Vec<Block> {
    let rows: Vec<_> = run
        .summary
        .iter()
        .filter(|r| r.mode == LoadMode::Replay)
        .collect();
    if rows.is_empty() {
        return Vec::new();
    }
    let mut b = vec![
        Block::Heading(2, "Replay".into()),
        Block::Para(
            "Each backend was filled with the messages below while no consumer ran (fill: \
             the load's start -> its last confirm), then new consumers read the whole history \
             from the start position its type declares (replay: their start -> their last \
             receipt; both to 10 ms). Every message must be read exactly once: duplicates, \
             lost and undelivered 0."
                .into(),
        ),
        Block::Table(
            [
                "backend",
                "start position",
                "confirmed",
                "read",
                "fill msg/s",
                "fill s",
                "replay msg/s",
                "replay s",
                "duplicates",
                "lost",
                "undelivered",
                "status",
            ]
            .map(String::from)
            .to_vec(),
            rows.iter()
                .map(|r| {
                    let start = match Replay::of_type(&r.backend_type) {
                        Some(Replay::FromFirst(how)) => how.to_string(),
                        Some(Replay::Impossible(why)) => format!("cannot replay: {why}"),
                        None => "-".into(),
                    };
                    vec![
                        r.display_name(),
                        start,
                        r.confirmed.to_string(),
                        r.received.to_string(),
                        opt(r.fill_per_s.map(f64::round)),
                        opt(r.fill_s),
                        opt(r.replay_per_s.map(f64::round)),
                        opt(r.replay_s),
                        r.duplicates.to_string(),
                        r.lost.to_string(),
                        r.undelivered.to_string(),
                        r.status.clone(),
                    ]
                })
                .collect(),
        ),
    ];
    let cannot: Vec<String> = crate::backend::registry::BACKEND_TYPES
        .iter()
        .filter_map(|t| match Replay::of_type(t) {
            Some(Replay::Impossible(why)) => Some(format!("{t}: cannot replay: {why}")),
            _ => None,
        })
        .collect();
    if !cannot.is_empty() {
        b.push(Block::List(cannot));
    }
    b
}
