//! One backend's run: build and set up the backend, run the load (`load/`), heal the cluster
//! after node faults, tear down; a backend that cannot even be set up is a row with its error.

use tokio::sync::watch;

use super::load::{report, run_load, LoadOutcome, LoadSpec};
use super::probe;
use crate::backend::{self, Endpoints};
use crate::clock::random_id;
use crate::fault::NodeControl;
use crate::report::meta::{utc_now, BackendMeta};
use crate::report::{each, Sink, SummaryRow};
use crate::scenario::{BackendSpec, ClusterKind, FaultSpec, Guarantee, Workload};

pub struct BackendOutcome {
    pub summary: SummaryRow,
    pub meta: BackendMeta,
    pub interrupted: bool,
}

/// The cluster a backend runs on, as its summary row and metadata name it.
#[derive(Debug, Clone, Default)]
pub struct OnCluster {
    pub name: String,
    pub kind: Option<ClusterKind>,
    /// As the cluster's nodes reported it (None: unknown; the backend's own reading is used).
    pub version: Option<String>,
}

impl OnCluster {
    /// Name the cluster and its broker version in `summary`; `backend_version` is what the
    /// backend read itself, used when the cluster's is unknown.
    fn tag(&self, summary: &mut SummaryRow, backend_version: Option<&String>) {
        summary.cluster = self.name.clone();
        summary.broker = self.kind;
        summary.broker_version = self
            .version
            .as_ref()
            .or(backend_version)
            .cloned()
            .unwrap_or_default();
    }
}

/// Run one backend with the workload. Broker faults are data: a backend that cannot even be
/// set up yields a summary row with status "error: ...".
#[allow(clippy::too_many_arguments)]
pub async fn run_backend(
    index: usize,
    repetition: Repetition,
    spec: &BackendSpec,
    cluster: &OnCluster,
    guarantee: Guarantee,
    scenario_workload: &Workload,
    faults: &[FaultSpec],
    endpoints: &Endpoints,
    mut control: Option<&mut (dyn NodeControl + '_)>,
    sinks: &mut [Box<dyn Sink>],
    cancel: &mut watch::Receiver<bool>,
) -> BackendOutcome {
    // Faults name the backend's own label; its rows carry the repetition's.
    let series = spec.label();
    let label = repetition.label(&series);
    let kind = spec.type_name();
    let workload = &spec.workload(scenario_workload);
    let mut meta = BackendMeta {
        label: label.clone(),
        backend_type: kind.to_string(),
        status: String::new(),
        cluster: Some(cluster.name.clone()).filter(|n| !n.is_empty()),
        broker_version: cluster.version.clone(),
        settings: serde_json::to_value(spec).unwrap_or(serde_json::Value::Null),
        topology: None,
        topology_after: None,
        failure_detection: None,
        rate_probe: None,
        started_utc: Some(utc_now()),
        ended_utc: None,
    };
    let run_id = random_id();
    let prefix = format!("bb-{:08x}-{index}", run_id as u32);
    let prepared = async {
        let backend = backend::build(spec, endpoints).await?;
        let version = backend.version().await;
        let dests = backend.setup(&prefix, workload.destinations).await?;
        Ok::<_, backend::BackendError>((backend, version, dests))
    };
    let failed = |meta: &mut BackendMeta, status: String, sinks: &mut [Box<dyn Sink>]| {
        meta.status = status.clone();
        meta.ended_utc = Some(utc_now());
        let mut summary = SummaryRow::failed(&label, kind, status);
        summary.guarantee = guarantee.label();
        cluster.tag(&mut summary, None);
        repetition.mark(&mut summary, &series);
        let _ = each(sinks, |s| s.on_backend_end(&summary));
        summary
    };
    let (backend, dests) = match prepared.await {
        Ok((backend, version, dests)) => {
            meta.broker_version = meta.broker_version.take().or(version);
            (backend, dests)
        }
        Err(e) => {
            let summary = failed(&mut meta, format!("error: {e}"), sinks);
            return BackendOutcome {
                summary,
                meta,
                interrupted: false,
            };
        }
    };
    // A share of the maximum: probe it now, on destinations of the probe's own.
    let probed;
    let workload = match probe::resolve(&backend, &prefix, &label, kind, workload, cancel).await {
        Ok(None) => workload,
        Ok(Some((w, found))) => {
            report(each(sinks, |s| {
                s.on_notice(&format!("[{label}] rate {}", found.describe()))
            }));
            meta.rate_probe = Some(found);
            probed = w;
            &probed
        }
        Err(e) => {
            let interrupted = matches!(e, probe::ProbeError::Interrupted);
            if let Err(e) = backend.teardown(&dests).await {
                crate::errln!("[{label}] teardown: {e}");
            }
            let summary = failed(&mut meta, format!("error: {e}"), sinks);
            return BackendOutcome {
                summary,
                meta,
                interrupted,
            };
        }
    };
    meta.topology = backend.topology(&dests).await.ok();
    let mut mine: Vec<(usize, FaultSpec)> = faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.applies_to(&series, kind, spec.cluster()))
        .map(|(i, f)| (i, f.clone()))
        .collect();
    mine.sort_by_key(|(_, f)| f.at);
    let node_faults = mine.iter().any(|(_, f)| f.target.is_node());
    // brokerbench started the clusters (and will stop them) when it controls their nodes.
    let own_clusters = control.is_some();
    let LoadOutcome {
        mut summary,
        interrupted,
        ..
    } = run_load(
        LoadSpec {
            run_id,
            label: &label,
            kind,
            backend: backend.clone(),
            dests: &dests,
            workload,
            faults: mine,
        },
        control.as_deref_mut(),
        sinks,
        cancel,
    )
    .await;
    summary.guarantee = guarantee.label();
    cluster.tag(&mut summary, meta.broker_version.as_ref());
    repetition.mark(&mut summary, &series);
    // Bring back every node a fault left down, so the next backend finds the cluster whole.
    // (Not after Ctrl-C: the clusters are about to be stopped.)
    if let Some(c) = control.filter(|_| node_faults && !interrupted) {
        match c.heal().await {
            Ok(restarted) if !restarted.is_empty() => {
                report(each(sinks, |s| {
                    s.on_notice(&format!(
                        "restarted {} after the faults",
                        restarted.join(", ")
                    ))
                }));
            }
            Ok(_) => {}
            Err(e) => {
                summary.status = format!(
                    "{}; the cluster did not heal after the faults: {e}",
                    summary.status
                );
            }
        }
    }
    // After Ctrl-C, clusters of our own are about to be stopped, maybe with a node still down
    // (deleting a quorum queue then waits for its members): skip what would only delay that.
    if !(interrupted && own_clusters) {
        meta.topology_after = backend.topology(&dests).await.ok();
        if let Err(e) = backend.teardown(&dests).await {
            crate::errln!("[{label}] teardown: {e}");
        }
    }
    meta.status = summary.status.clone();
    meta.ended_utc = Some(utc_now());
    let _ = each(sinks, |s| s.on_backend_end(&summary));
    BackendOutcome {
        summary,
        meta,
        interrupted,
    }
}

/// Which repetition of a backend this is (`workload.repeat`, `run --repeat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repetition {
    /// 1-based.
    pub index: usize,
    pub of: usize,
}

impl Repetition {
    pub const ONCE: Repetition = Repetition { index: 1, of: 1 };

    /// The label a repetition's rows carry in every results file: the backend's own when it
    /// runs once, `<label>#<n>` when it is repeated.
    pub fn label(&self, series: &str) -> String {
        if self.of <= 1 {
            series.to_string()
        } else {
            format!("{series}#{}", self.index)
        }
    }

    fn mark(&self, summary: &mut SummaryRow, series: &str) {
        summary.series = series.to_string();
        summary.repetition = self.index;
    }
}
