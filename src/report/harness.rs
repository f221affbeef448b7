//! The harness's own limits in a report. The harness and the brokers share the host: a row whose
//! throughput came within half of the harness's ceiling (`brokerbench calibrate`, recorded in
//! meta.json), or whose harness used more than 30% of the host's CPU, may have measured the
//! harness rather than the broker, and says so; a row during which the host's cores were 90%
//! busy or more (other work included) may have measured the host, and says so too.

use super::results::{CpuSample, RunResults};
use super::SummaryRow;

/// A row at or above this share of the ceiling's rate is flagged.
pub const CEILING_SHARE: f64 = 0.5;
/// A row whose harness used more than this share of the host's cores on average is flagged.
pub const CPU_SHARE: f64 = 0.3;
/// A row during which the host's cores were at least this busy on average is flagged.
pub const HOST_SHARE: f64 = 0.9;

/// The ceiling a results folder recorded (meta.json `harness_ceiling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordedCeiling {
    pub msgs_per_s: f64,
    pub cpu_s_per_million: f64,
}

pub fn recorded_ceiling(meta: &serde_json::Value) -> Option<RecordedCeiling> {
    let c = &meta["harness_ceiling"];
    Some(RecordedCeiling {
        msgs_per_s: c["msgs_per_s"].as_f64().filter(|r| *r > 0.0)?,
        cpu_s_per_million: c["cpu_s_per_million"].as_f64().unwrap_or(f64::NAN),
    })
}

/// What one summary row says about the harness.
#[derive(Debug, Clone, PartialEq)]
pub struct HarnessCheck {
    pub backend: String,
    /// The row's highest rate (sent, confirmed or received) as a share of the ceiling.
    pub ceiling_share: Option<f64>,
    /// The harness's mean CPU while this backend ran, as a share of the host's cores.
    pub cpu_share: Option<f64>,
    /// The whole host's mean busy cores while this backend ran (every process), as a share of
    /// its cores.
    pub host_share: Option<f64>,
    /// The harness's share of the CPU that the brokers' nodes and the harness used together.
    pub of_used: Option<f64>,
    /// Mean busy cores of the brokers' nodes (with the processes they fork), of the harness
    /// and of the whole host while this backend ran: what is left of the host is other work.
    pub cores: Option<Cores>,
}

/// Who kept the host's cores busy while a backend ran (means, in cores).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cores {
    pub brokers: f64,
    pub harness: f64,
    pub host: f64,
}

impl HarnessCheck {
    pub fn near_ceiling(&self) -> bool {
        self.ceiling_share.is_some_and(|s| s >= CEILING_SHARE)
    }
    pub fn busy(&self) -> bool {
        self.cpu_share.is_some_and(|s| s > CPU_SHARE)
    }
    pub fn host_saturated(&self) -> bool {
        self.host_share.is_some_and(|s| s >= HOST_SHARE)
    }
    pub fn flagged(&self) -> bool {
        self.near_ceiling() || self.busy() || self.host_saturated()
    }

    /// Why the row is flagged, in words ("" when it is not).
    pub fn warning(&self) -> String {
        let mut why = Vec::new();
        if let Some(s) = self.ceiling_share.filter(|_| self.near_ceiling()) {
            why.push(format!(
                "throughput at {:.0}% of the harness's ceiling",
                s * 100.0
            ));
        }
        if let Some(s) = self.cpu_share.filter(|_| self.busy()) {
            why.push(format!("harness used {:.0}% of the host's CPU", s * 100.0));
        }
        if let Some(s) = self.host_share.filter(|_| self.host_saturated()) {
            why.push(format!("host's cores {:.0}% busy", s * 100.0));
        }
        why.join("; ")
    }
}

/// Mean CPU (in cores) of one node of one backend ("harness", "host" or a broker node), leaving
/// out the first and last samples (partial intervals at the load's edges) when there are enough.
fn node_cores(cpu: &[CpuSample], backend: &str, node: &str) -> Option<f64> {
    let v: Vec<f64> = cpu
        .iter()
        .filter(|s| s.backend == backend && s.node == node)
        .map(|s| s.cpu)
        .collect();
    let core = if v.len() > 4 { &v[1..v.len() - 1] } else { &v };
    (!core.is_empty()).then(|| core.iter().sum::<f64>() / core.len() as f64)
}

/// The mean cores of the brokers' nodes (summed) and of the harness while `backend` ran.
fn brokers_and_harness(cpu: &[CpuSample], backend: &str) -> Option<(f64, f64)> {
    use crate::metrics::cpu::{HARNESS, HOST};
    let harness = node_cores(cpu, backend, HARNESS)?;
    let mut nodes: Vec<&str> = cpu
        .iter()
        .filter(|s| s.backend == backend && s.node != HARNESS && s.node != HOST)
        .map(|s| s.node.as_str())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    let brokers: f64 = nodes
        .iter()
        .filter_map(|n| node_cores(cpu, backend, n))
        .sum();
    Some((brokers, harness))
}

/// The harness's and the whole host's mean CPU while `backend` ran, each as a share of the
/// host's `cores` (None without samples).
pub fn cpu_shares(cpu: &[CpuSample], cores: f64, backend: &str) -> (Option<f64>, Option<f64>) {
    use crate::metrics::cpu::{HARNESS, HOST};
    let share = |node| node_cores(cpu, backend, node).map(|c| c / cores);
    (share(HARNESS), share(HOST))
}

fn row_rate(s: &SummaryRow) -> f64 {
    s.sent_per_s.max(s.confirmed_per_s).max(s.received_per_s)
}

/// One check per summary row, in order.
pub fn checks(run: &RunResults) -> Vec<HarnessCheck> {
    let ceiling = recorded_ceiling(&run.meta);
    let cores = run.meta["host"]["cores"].as_f64().filter(|c| *c > 0.0);
    run.summary
        .iter()
        .map(|s| {
            let (cpu_share, host_share) =
                cores.map_or((None, None), |n| cpu_shares(&run.cpu, n, &s.backend));
            let used = brokers_and_harness(&run.cpu, &s.backend);
            let host = node_cores(&run.cpu, &s.backend, crate::metrics::cpu::HOST);
            HarnessCheck {
                backend: s.backend.clone(),
                ceiling_share: ceiling.map(|c| row_rate(s) / c.msgs_per_s),
                cpu_share,
                host_share,
                // The harness's share of what the brokers' nodes and the harness used together.
                of_used: used.and_then(|(brokers, harness)| {
                    (harness + brokers > 0.0).then(|| harness / (harness + brokers))
                }),
                cores: used.zip(host).map(|((brokers, harness), host)| Cores {
                    brokers,
                    harness,
                    host,
                }),
            }
        })
        .collect()
}

/// The report's lines on the harness: its ceiling, then one line per row, each with whether
/// it is flagged (the caller marks those).
pub fn lines(run: &RunResults, checks: &[HarnessCheck]) -> Vec<(bool, String)> {
    let mut out = vec![(
        false,
        match recorded_ceiling(&run.meta) {
            Some(c) => format!(
                "harness ceiling on this host: {:.0} msg/s end to end, {:.2} s of harness CPU per million messages (in-memory backend, `brokerbench calibrate`); a row at {:.0}% of it or more is flagged",
                c.msgs_per_s,
                c.cpu_s_per_million,
                CEILING_SHARE * 100.0
            ),
            None => "harness ceiling: not recorded in this run (run `brokerbench calibrate` to see it)".into(),
        },
    )];
    for c in checks {
        let share = |v: Option<f64>| {
            v.map(|s| format!("{:.0}%", s * 100.0))
                .unwrap_or_else(|| "-".into())
        };
        let mut text = if c.flagged() {
            format!(
                "{}: {}: its figures may be the {}'s, not the broker's",
                c.backend,
                c.warning(),
                if c.near_ceiling() || c.busy() {
                    "harness"
                } else {
                    "host"
                }
            )
        } else {
            format!(
                "{}: {} of the ceiling, harness {} of the host's CPU",
                c.backend,
                share(c.ceiling_share),
                share(c.cpu_share)
            )
        };
        if let Some(h) = c.host_share.filter(|_| !c.host_saturated()) {
            text += &format!("; host's cores {} busy", share(Some(h)));
        }
        if let Some(u) = c.of_used {
            text += &format!(
                "; harness {} of the CPU the brokers and the harness used",
                share(Some(u))
            );
        }
        // Who used a saturated host: the brokers (the limit, if theirs is most of it), the
        // harness, or other work on a shared machine.
        if let Some(k) = c.cores.filter(|_| c.host_saturated()) {
            text += &format!(
                " (cores busy: brokers' nodes {:.2}, harness {:.2}, other work {:.2})",
                k.brokers,
                k.harness,
                (k.host - k.brokers - k.harness).max(0.0)
            );
        }
        out.push((c.flagged(), text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(meta: serde_json::Value, rows: &[(&str, f64)], cpu: &[(&str, &str, f64)]) -> RunResults {
        RunResults {
            dir: "x".into(),
            name: "x".into(),
            meta,
            summary: rows
                .iter()
                .map(|(b, r)| SummaryRow {
                    backend: b.to_string(),
                    received_per_s: *r,
                    sent_per_s: r * 0.9,
                    ..SummaryRow::default()
                })
                .collect(),
            timeseries: vec![],
            timeline: vec![],
            faults: vec![],
            replica_lag: vec![],
            cpu: cpu
                .iter()
                .flat_map(|(b, node, c)| {
                    (0..6).map(|t| CpuSample {
                        backend: b.to_string(),
                        t_s: t as f64,
                        node: node.to_string(),
                        // The edges are partial intervals, left out of the mean.
                        cpu: if t == 0 || t == 5 { 0.0 } else { *c },
                    })
                })
                .collect(),
        }
    }

    #[test]
    fn rows_near_the_ceiling_or_with_a_busy_harness_are_flagged() {
        let meta = serde_json::json!({
            "host": {"cores": 2},
            "harness_ceiling": {"msgs_per_s": 100000.0, "cpu_s_per_million": 1.5}
        });
        let r = run(
            meta,
            &[
                ("fast", 60_000.0),
                ("slow", 10_000.0),
                ("busy", 10_000.0),
                ("full", 10_000.0),
            ],
            &[
                ("fast", "harness", 0.2),
                ("slow", "harness", 0.2),
                ("slow", "n1", 0.6),
                ("slow", "host", 1.0),
                ("busy", "harness", 0.7),
                ("full", "harness", 0.1),
                ("full", "n1", 0.9),
                ("full", "host", 1.9),
            ],
        );
        let c = checks(&r);
        assert_eq!(
            c.iter().map(|c| c.flagged()).collect::<Vec<_>>(),
            [true, false, true, true]
        );
        assert!(c[3].host_saturated() && !c[3].busy() && !c[3].near_ceiling());
        assert_eq!(c[3].warning(), "host's cores 95% busy");
        assert!((c[3].of_used.unwrap_or(0.0) - 0.1).abs() < 1e-9);
        assert!(c[0].near_ceiling() && !c[0].busy());
        assert!((c[0].ceiling_share.unwrap_or(0.0) - 0.6).abs() < 1e-9);
        assert!((c[2].cpu_share.unwrap_or(0.0) - 0.35).abs() < 1e-9);
        assert_eq!(c[2].warning(), "harness used 35% of the host's CPU");
        let l = lines(&r, &c);
        assert!(l[0].1.contains("100000 msg/s"), "{}", l[0].1);
        assert!(l[1].0 && l[1].1.contains("60% of the harness's ceiling"));
        assert_eq!(
            l[2],
            (
                false,
                "slow: 10% of the ceiling, harness 10% of the host's CPU; host's cores 50% busy; \
                 harness 25% of the CPU the brokers and the harness used"
                    .into()
            )
        );
        assert!(l[4].0 && l[4].1.contains("may be the host's"), "{}", l[4].1);
        assert!(
            l[4].1
                .ends_with("(cores busy: brokers' nodes 0.90, harness 0.10, other work 0.90)"),
            "{}",
            l[4].1
        );
        assert!(!l[2].1.contains("cores busy:"), "{}", l[2].1);
        assert_eq!(l[4].1.matches("95% busy").count(), 1, "{}", l[4].1);
    }

    #[test]
    fn without_a_recorded_ceiling_only_the_cpu_counts() {
        let r = run(
            serde_json::json!({"host": {"cores": 2}}),
            &[("a", 1e9)],
            &[],
        );
        let c = checks(&r);
        assert_eq!((c[0].ceiling_share, c[0].cpu_share), (None, None));
        assert!(!c[0].flagged());
        assert!(lines(&r, &c)[0].1.contains("not recorded"));
    }
}
