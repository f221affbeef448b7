//! The state file `<dir>/cluster.json` (configuration, pids): written by `up` as soon as a pid is
//! known, read back by `attach`, and by `up` to refuse a folder whose cluster still runs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{io_err, LocalRabbitCluster, RabbitClusterConfig, RabbitNode};
use crate::cluster::netns::ClusterNet;
use crate::cluster::process::OwnedProcess;
use crate::cluster::ClusterError;

/// Name of the state file inside the cluster folder.
pub const STATE_FILE: &str = "cluster.json";

/// Contents of `<dir>/cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StateFile {
    kind: String,
    config: RabbitClusterConfig,
    nodes: Vec<RabbitNode>,
    epmd: Option<OwnedProcess>,
    /// network = "namespaces": one epmd per node, in its namespace (Erlang asks the epmd on
    /// the peer's address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    node_epmds: Vec<OwnedProcess>,
    /// network = "namespaces": the bridge, namespaces and links, recorded before they are made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    net: Option<ClusterNet>,
}

impl StateFile {
    pub(super) fn processes(&self) -> Vec<OwnedProcess> {
        let mut out = recorded_processes(&self.nodes, &self.epmd);
        out.extend(self.node_epmds.iter().cloned());
        out
    }
}

/// Every beam and the epmd recorded for a cluster (some may have exited).
pub(super) fn recorded_processes(
    nodes: &[RabbitNode],
    epmd: &Option<OwnedProcess>,
) -> Vec<OwnedProcess> {
    let mut out: Vec<OwnedProcess> = nodes.iter().filter_map(|n| n.process.clone()).collect();
    out.extend(epmd.clone());
    out
}

pub(super) fn read_state(dir: &Path) -> Result<StateFile, ClusterError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ClusterError::State {
            dir: dir.to_path_buf(),
            message: format!("no {STATE_FILE}: no local RabbitMQ cluster was started in this folder (or it was stopped)"),
        },
        _ => io_err(&path, e),
    })?;
    let st: StateFile = serde_json::from_str(&text).map_err(|e| ClusterError::State {
        dir: dir.to_path_buf(),
        message: format!("{STATE_FILE} is unreadable: {e}"),
    })?;
    if st.kind != "rabbitmq" {
        return Err(ClusterError::State {
            dir: dir.to_path_buf(),
            message: format!("{STATE_FILE} describes a {} cluster, not rabbitmq", st.kind),
        });
    }
    Ok(st)
}

impl LocalRabbitCluster {
    /// The cluster described by `<dir>/cluster.json` (written by `up`).
    pub fn attach(dir: &Path) -> Result<Self, ClusterError> {
        let st = read_state(dir)?;
        Ok(LocalRabbitCluster {
            cfg: st.config,
            nodes: st.nodes,
            epmd: st.epmd,
            node_epmds: st.node_epmds,
            net: st.net,
        })
    }

    pub(super) fn write_state(&self) -> Result<(), ClusterError> {
        let st = StateFile {
            kind: "rabbitmq".to_string(),
            config: self.cfg.clone(),
            nodes: self.nodes.clone(),
            epmd: self.epmd.clone(),
            node_epmds: self.node_epmds.clone(),
            net: self.net.clone(),
        };
        let path = self.cfg.dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(&st).map_err(|e| ClusterError::State {
            dir: self.cfg.dir.clone(),
            message: format!("cannot encode {STATE_FILE}: {e}"),
        })?;
        let tmp = self.cfg.dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rabbitmq::test_config as cfg;

    #[test]
    fn endpoints_and_state_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cfg();
        c.dir = dir.path().to_path_buf();
        let nodes = c.layout().expect("layout");
        let cluster = LocalRabbitCluster {
            cfg: c.clone(),
            nodes,
            epmd: Some(OwnedProcess {
                pid: 1,
                marker: "m".into(),
            }),
            node_epmds: Vec::new(),
            net: None,
        };
        let eps = cluster.endpoints();
        assert_eq!(eps[0].amqp_uri, "amqp://guest:guest@127.0.0.1:5700/%2f");
        assert_eq!(eps[2].http, "127.0.0.1:15702");
        cluster.write_state().expect("write state");
        let back = LocalRabbitCluster::attach(dir.path()).expect("attach");
        assert_eq!(back.config(), &c);
        assert_eq!(back.nodes().len(), 3);
        assert_eq!(back.processes().len(), 1);
        assert!(LocalRabbitCluster::attach(&dir.path().join("nope")).is_err());
    }
}
