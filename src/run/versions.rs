//! Backends that a cluster's broker version cannot run are refused with the reason: before any
//! node starts, from the version of the broker package a local cluster will run (the dpkg
//! database of the host or of its root), and again once the clusters are up, from the version
//! their nodes report (which also covers external clusters).

use std::path::Path;

use crate::backend;
use crate::cluster::version::{installed_version, KnownVersion};
use crate::scenario::{ClusterMode, Scenario, ScenarioError};

use super::clusters::RunClusters;

/// Refuse, before anything starts, a backend whose local cluster's broker package (as
/// installed where its binaries come from) cannot run it. A version that cannot be read here
/// is checked again once the cluster runs.
pub fn check_before_start(s: &Scenario, path: &Path) -> Result<(), ScenarioError> {
    check(s, path, |name| {
        let section = s.clusters.get(name)?;
        if section.mode() != ClusterMode::Local {
            return None;
        }
        // The binaries of a local cluster come from the host, or from its broker root.
        let root = section
            .broker_root()
            .map(crate::cluster::broker_root::root_dir)
            .unwrap_or_else(|| std::path::PathBuf::from("/"));
        installed_version(section.kind(), &root).ok().flatten()
    })
}

/// Refuse a backend whose running cluster reported a version that cannot run it.
pub fn check_running(
    s: &Scenario,
    path: &Path,
    clusters: &RunClusters,
) -> Result<(), ScenarioError> {
    check(s, path, |name| {
        let c = clusters.clusters().iter().find(|c| c.name == name)?;
        Some(KnownVersion {
            version: c.version.clone()?,
            source: "as its running nodes report".to_string(),
        })
    })
}

/// The first backend that the version of its cluster (`version_of(cluster name)`, None:
/// unknown) cannot run, as an error naming the file, the backend and why.
pub fn check(
    s: &Scenario,
    path: &Path,
    version_of: impl Fn(&str) -> Option<KnownVersion>,
) -> Result<(), ScenarioError> {
    for (i, b) in s.backends.iter().enumerate() {
        let Some(name) = b.cluster() else { continue };
        let Some(known) = version_of(name) else {
            continue;
        };
        if let Err(reason) = backend::supported_on(b, &known.version) {
            return Err(ScenarioError::Field {
                file: path.to_path_buf(),
                field: format!("backends[{i}].type"),
                message: format!(
                    "{} cannot run on cluster \"{name}\", which runs {} {} ({}): {reason}",
                    b.type_name(),
                    b.cluster_kind().product(),
                    known.version,
                    known.source
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::version::BrokerVersion;

    const TWO_RABBITS: &str = r#"name = "v"
[workload]
message_size = 100
rate = 10
duration = "1s"
[clusters.rabbitmq-3]
kind = "rabbitmq"
[clusters.rabbitmq-4]
kind = "rabbitmq"
amqp_base_port = 5800
http_base_port = 15800
stream_base_port = 5810
prometheus_base_port = 15810
dist_base_port = 25800
epmd_port = 4420
[[backends]]
type = "rabbitmq-mirrored"
label = "mirrored-3"
cluster = "rabbitmq-3"
[[backends]]
type = "rabbitmq-quorum"
label = "quorum-4"
cluster = "rabbitmq-4"
[[backends]]
type = "rabbitmq-mirrored"
label = "mirrored-4"
cluster = "rabbitmq-4"
"#;

    fn versions(name: &str) -> Option<KnownVersion> {
        let text = match name {
            "rabbitmq-3" => "3.10.8",
            "rabbitmq-4" => "4.0.5",
            _ => return None,
        };
        Some(KnownVersion {
            version: BrokerVersion::parse(text)?,
            source: "from the test".to_string(),
        })
    }

    #[test]
    fn mirrored_queues_on_rabbitmq_4_are_refused_with_the_reason() {
        let path = Path::new("v.toml");
        let s = crate::scenario::parse(path, TWO_RABBITS).expect("valid without versions");
        let e = check(&s, path, versions)
            .expect_err("mirrored on 4.0.5 was accepted")
            .to_string();
        assert_eq!(
            e,
            "v.toml: field `backends[2].type`: rabbitmq-mirrored cannot run on cluster \
             \"rabbitmq-4\", which runs RabbitMQ 4.0.5 (from the test): RabbitMQ 4.0.5 has no \
             classic mirrored queues (RabbitMQ 4.0 removed mirroring by ha-* policies); run \
             rabbitmq-mirrored on a RabbitMQ 3.x cluster, or use rabbitmq-quorum, the \
             replicated queue of 4.x"
        );
        // Mirrored on 3.10 and quorum on 4.0 are fine; so is an unknown version.
        let without = TWO_RABBITS.replace(
            "[[backends]]\ntype = \"rabbitmq-mirrored\"\nlabel = \"mirrored-4\"\ncluster = \"rabbitmq-4\"\n",
            "",
        );
        let s = crate::scenario::parse(path, &without).expect("valid");
        check(&s, path, versions).expect("mirrored on 3.10, quorum on 4.0");
        check(&s, path, |_| None).expect("versions unknown");
    }

    /// This host has Debian 12's RabbitMQ 3.10: mirrored queues on a local cluster pass.
    #[test]
    fn the_hosts_rabbitmq_runs_mirrored_queues() {
        let path = Path::new("v.toml");
        let s = crate::scenario::parse(path, TWO_RABBITS).expect("valid");
        let host = installed_version(crate::scenario::ClusterKind::Rabbitmq, Path::new("/"))
            .expect("read the host's dpkg database")
            .expect("rabbitmq-server is installed");
        assert_eq!(
            host.version.major, 3,
            "this test expects Debian 12's RabbitMQ 3.x"
        );
        check_before_start(&s, path).expect("RabbitMQ 3.x has mirrored queues");
    }
}
