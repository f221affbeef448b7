//! meta.json: what ran, where, with which versions, and where each destination lived.

use serde::Serialize;

use crate::backend::Topology;

#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    pub hostname: String,
    pub cores: usize,
    pub memory_bytes: u64,
    pub kernel: String,
}

impl HostInfo {
    pub fn read() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        let memory_kb = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| {
                v.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .unwrap_or(0);
        HostInfo {
            hostname: read("/proc/sys/kernel/hostname"),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            memory_bytes: memory_kb * 1024,
            kernel: read("/proc/sys/kernel/osrelease"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackendMeta {
    pub label: String,
    #[serde(rename = "type")]
    pub backend_type: String,
    pub status: String,
    /// The `[clusters.<name>]` it ran on.
    pub cluster: Option<String>,
    /// The broker version of that cluster (as its nodes reported it).
    pub broker_version: Option<String>,
    pub settings: serde_json::Value,
    /// Destinations with their leader/master, replicas and (Redis) hash slot, read at setup.
    pub topology: Option<Topology>,
    /// The topology after the load and any faults (leaders may have moved).
    pub topology_after: Option<Topology>,
    /// How long a node that stops answering goes unnoticed, by its peers and by the client:
    /// every failover figure depends on it.
    pub failure_detection: Option<crate::scenario::FailureDetection>,
    /// `rate = "80% of max"`: what the max-rate probe before the run measured, and the rate the
    /// run used (absent for a fixed or max rate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_probe: Option<crate::run::probe::RateProbe>,
    pub started_utc: Option<String>,
    pub ended_utc: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunMeta {
    pub brokerbench_version: String,
    pub git_commit: String,
    pub scenario: String,
    pub scenario_file: String,
    pub run_id: String,
    pub started_utc: String,
    pub ended_utc: Option<String>,
    pub host: HostInfo,
    pub workload: serde_json::Value,
    pub clusters: serde_json::Value,
    /// Each cluster the run used: name, kind, broker version, where its binaries came from.
    pub brokers: Vec<crate::run::clusters::ClusterMeta>,
    pub backends: Vec<BackendMeta>,
    /// The harness's own ceiling on this host with this binary (`brokerbench calibrate`):
    /// rows near it measured the harness, not the broker. None: not measured.
    pub harness_ceiling: Option<crate::calibrate::Ceiling>,
    /// The workload flags the run was given (`run --rate …`, `quick`), already in `workload`;
    /// empty when none.
    pub overrides: crate::scenario::WorkloadOverrides,
    pub caveat: String,
}

pub const CAVEAT: &str = "All nodes of every cluster ran on one host and shared its cores and disk: \
per-node work and how throughput grows with shards are shown, but not the capacity of separate machines. \
Compare ratios measured in one run, not absolute figures across runs or hosts.";

pub fn git_commit() -> String {
    option_env!("BROKERBENCH_GIT_COMMIT")
        .unwrap_or("unknown")
        .to_string()
}

pub fn utc_now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}
