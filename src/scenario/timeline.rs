//! One timeline per backend run: every load phase and every fault, on the harness's clock, so
//! charts can shade a kill window and CSV rows line up with it.

use serde::{Deserialize, Serialize};

/// The load phases of one backend run, in order: warm-up (not counted), measure (counted),
/// drain (the load has stopped; latencies of what still arrives count, throughput does not).
/// A replay (`workload.mode = "replay"`) has two instead: fill (producers only, until the
/// messages are confirmed), then replay (new consumers only, until every message is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Warmup,
    Measure,
    Drain,
    Fill,
    Replay,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
            Phase::Fill => "fill",
            Phase::Replay => "replay",
        }
    }

    /// The phase at `now_ns` of a load whose warm-up ends at `warm_end_ns` and whose
    /// measurement ends at `end_ns`.
    pub fn at(now_ns: u64, warm_end_ns: u64, end_ns: u64) -> Phase {
        if now_ns >= end_ns {
            Phase::Drain
        } else if now_ns >= warm_end_ns {
            Phase::Measure
        } else {
            Phase::Warmup
        }
    }

    /// Whether latencies of this phase belong to the run's figures (all but warm-up; a
    /// replay's end-to-end latencies count from the intended send time, so they are the
    /// messages' age when read).
    pub fn counts_latency(self) -> bool {
        !matches!(self, Phase::Warmup)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Phase,
    Fault,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimelineEvent {
    pub backend: String,
    pub kind: EventKind,
    /// "warmup", "measure", "drain", or a fault such as "kill rabbit1@localhost".
    pub name: String,
    /// Seconds since the backend's load started.
    pub start_s: f64,
    /// `None` while the event is still open.
    pub end_s: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub events: Vec<TimelineEvent>,
}

impl Timeline {
    /// Open an event; returns its index for `close`.
    pub fn open(&mut self, backend: &str, kind: EventKind, name: &str, start_s: f64) -> usize {
        self.events.push(TimelineEvent {
            backend: backend.to_string(),
            kind,
            name: name.to_string(),
            start_s,
            end_s: None,
        });
        self.events.len() - 1
    }

    pub fn close(&mut self, index: usize, end_s: f64) {
        if let Some(e) = self.events.get_mut(index) {
            e.end_s = Some(end_s);
        }
    }

    /// The phase open at `t` seconds for `backend` ("" if none).
    pub fn phase_at(&self, backend: &str, t: f64) -> &str {
        self.events
            .iter()
            .filter(|e| e.backend == backend && e.kind == EventKind::Phase)
            .rfind(|e| e.start_s <= t && e.end_s.is_none_or(|end| t < end))
            .map(|e| e.name.as_str())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_follows_the_load_bounds() {
        assert_eq!(Phase::at(0, 10, 20), Phase::Warmup);
        assert_eq!(Phase::at(10, 10, 20), Phase::Measure);
        assert_eq!(Phase::at(20, 10, 20), Phase::Drain);
        // No warm-up: measuring from the start.
        assert_eq!(Phase::at(0, 0, 20), Phase::Measure);
        assert_eq!(format!("[{:>7}]", Phase::Drain), "[  drain]");
        assert!(Phase::Drain.counts_latency() && !Phase::Warmup.counts_latency());
    }

    #[test]
    fn phase_at_follows_open_and_closed_events() {
        let mut t = Timeline::default();
        let w = t.open("b", EventKind::Phase, "warmup", 0.0);
        t.close(w, 5.0);
        let m = t.open("b", EventKind::Phase, "measure", 5.0);
        assert_eq!(t.phase_at("b", 1.0), "warmup");
        assert_eq!(t.phase_at("b", 5.0), "measure");
        assert_eq!(t.phase_at("b", 100.0), "measure");
        t.close(m, 10.0);
        assert_eq!(t.phase_at("b", 10.5), "");
        assert_eq!(t.phase_at("other", 1.0), "");
    }
}
