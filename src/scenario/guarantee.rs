//! What a broker's confirm guaranteed under the settings a backend actually ran with: the
//! figure that makes throughput and latency of two rows comparable (or not).

use super::model::{AppendFsync, BackendSpec, Scenario};

/// What one confirmed message was, at the moment its confirm arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// No confirms: the producer learns nothing.
    None,
    /// In the Redis master's memory only (no AOF, or AOF with appendfsync no).
    Memory,
    /// In the master's memory, written to its AOF and fsynced within about a second.
    AofEverysec,
    /// Fsynced to the master's AOF before the reply.
    AofAlways,
    /// In the memory of `n` replicas as well (WAIT n), with the master's AOF policy.
    ReplicaAck(u32, AppendFsync),
    /// Quorum queue: appended and fsynced on a majority of its members (Raft).
    MajorityFsync,
    /// Stream queue: written on a majority of its members, not fsynced (streams leave flushing
    /// to the OS).
    MajorityWritten,
    /// Classic mirrored queue: accepted by every mirror; persistent messages on disk.
    AllMirrorsDisk,
    /// Classic mirrored queue with transient messages: in every mirror's memory.
    AllMirrorsMemory,
    /// A Redis cluster brokerbench did not start, whose persistence the scenario does not set.
    AsConfigured,
}

impl Guarantee {
    /// The label used in summary.csv and the report.
    pub fn label(&self) -> String {
        match self {
            Guarantee::None => "none".into(),
            Guarantee::Memory => "memory".into(),
            Guarantee::AofEverysec => "aof-everysec".into(),
            Guarantee::AofAlways => "aof-always".into(),
            Guarantee::ReplicaAck(n, fsync) => {
                format!("replica-ack (WAIT {n}) + aof-{}", fsync.as_str())
            }
            Guarantee::MajorityFsync => "majority-fsync".into(),
            Guarantee::MajorityWritten => "majority-written (no fsync)".into(),
            Guarantee::AllMirrorsDisk => "all-mirrors (persistent)".into(),
            Guarantee::AllMirrorsMemory => "all-mirrors (transient, memory)".into(),
            Guarantee::AsConfigured => "as the external cluster is configured".into(),
        }
    }
}

/// Guarantees whose throughput and latency may be compared: a confirm that costs a fsync on a
/// majority is not weighed against one that costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GuaranteeClass {
    /// No confirms: the producer learns nothing.
    Unconfirmed,
    /// One node's memory, at most its page cache (memory, aof-everysec).
    OneNode,
    /// Several nodes' memory or page cache, no fsync (majority-written, WAIT n with
    /// aof-everysec or no, all-mirrors transient).
    Replicated,
    /// Fsynced before the confirm (majority-fsync, aof-always, WAIT n with aof-always,
    /// all-mirrors persistent).
    Durable,
    /// Unknown (an external cluster as configured).
    Unknown,
}

impl GuaranteeClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            GuaranteeClass::Unconfirmed => "unconfirmed",
            GuaranteeClass::OneNode => "one node, no fsync",
            GuaranteeClass::Replicated => "replicated, no fsync",
            GuaranteeClass::Durable => "fsynced",
            GuaranteeClass::Unknown => "unknown",
        }
    }

    /// The class of a guarantee as summary.csv names it (`Guarantee::label`); None for a label
    /// this version does not know (or an older folder's empty column).
    pub fn of_label(label: &str) -> Option<GuaranteeClass> {
        Some(match label {
            "none" => GuaranteeClass::Unconfirmed,
            "memory" | "aof-everysec" => GuaranteeClass::OneNode,
            "aof-always" | "majority-fsync" | "all-mirrors (persistent)" => GuaranteeClass::Durable,
            "majority-written (no fsync)" | "all-mirrors (transient, memory)" => {
                GuaranteeClass::Replicated
            }
            "as the external cluster is configured" => GuaranteeClass::Unknown,
            l if l.starts_with("replica-ack ") => {
                if l.ends_with("aof-always") {
                    GuaranteeClass::Durable
                } else {
                    GuaranteeClass::Replicated
                }
            }
            _ => return None,
        })
    }

    /// Rows of these classes may be compared (an unknown guarantee compares with nothing).
    pub fn comparable(a: Option<GuaranteeClass>, b: Option<GuaranteeClass>) -> bool {
        matches!((a, b), (Some(a), Some(b)) if a == b && a != GuaranteeClass::Unknown)
    }
}

impl Guarantee {
    pub fn class(&self) -> GuaranteeClass {
        GuaranteeClass::of_label(&self.label()).unwrap_or(GuaranteeClass::Unknown)
    }
}

impl Scenario {
    /// What a confirm of `spec` guaranteed: its own settings over the cluster's defaults.
    pub fn guarantee(&self, spec: &BackendSpec) -> Guarantee {
        spec.backend_type().guarantee(self.section_of(spec))
    }

    /// `spec` as it must run on its cluster (`BackendSpec::with_cluster_defaults`).
    pub fn effective_spec(&self, spec: &BackendSpec) -> BackendSpec {
        spec.with_cluster_defaults(self.section_of(spec))
    }

    fn section_of(&self, spec: &BackendSpec) -> Option<&crate::scenario::ClusterSection> {
        spec.cluster().and_then(|name| self.clusters.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(extra: &str, backends: &str) -> Scenario {
        let text = format!(
            "name = \"g\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n{extra}\n{backends}"
        );
        crate::scenario::parse(std::path::Path::new("g.toml"), &text).expect("scenario")
    }

    fn labels(s: &Scenario) -> Vec<String> {
        s.backends.iter().map(|b| s.guarantee(b).label()).collect()
    }

    #[test]
    fn each_setting_says_what_its_confirm_meant() {
        let s = scenario(
            "",
            "[[backends]]\ntype = \"redis-streams\"\n\
             [[backends]]\ntype = \"redis-streams\"\nlabel = \"w\"\nwait_replicas = 1\n\
             [[backends]]\ntype = \"redis-streams\"\nlabel = \"a\"\nappendfsync = \"always\"\n\
             [[backends]]\ntype = \"rabbitmq-quorum\"\n\
             [[backends]]\ntype = \"rabbitmq-quorum\"\nlabel = \"nc\"\nconfirms = false\n\
             [[backends]]\ntype = \"rabbitmq-stream\"\n\
             [[backends]]\ntype = \"rabbitmq-mirrored\"\npersistent = false\n",
        );
        let classes: Vec<GuaranteeClass> =
            s.backends.iter().map(|b| s.guarantee(b).class()).collect();
        use GuaranteeClass::*;
        assert_eq!(
            classes,
            [
                OneNode,
                Replicated,
                Durable,
                Durable,
                Unconfirmed,
                Replicated,
                Replicated
            ]
        );
        assert!(GuaranteeClass::comparable(Some(Durable), Some(Durable)));
        assert!(!GuaranteeClass::comparable(Some(OneNode), Some(Durable)));
        assert!(!GuaranteeClass::comparable(None, None));
        assert!(!GuaranteeClass::comparable(Some(Unknown), Some(Unknown)));
        assert_eq!(
            GuaranteeClass::of_label("replica-ack (WAIT 1) + aof-always"),
            Some(Durable)
        );
        assert_eq!(
            labels(&s),
            [
                "aof-everysec",
                "replica-ack (WAIT 1) + aof-everysec",
                "aof-always",
                "majority-fsync",
                "none",
                "majority-written (no fsync)",
                "all-mirrors (transient, memory)"
            ]
        );
        // Without AOF on the cluster, a confirm is memory only, whatever appendfsync says.
        let s = scenario(
            "[clusters.redis]\nappendonly = false",
            "[[backends]]\ntype = \"redis-streams\"\nappendfsync = \"always\"\n",
        );
        assert_eq!(labels(&s), ["memory"]);
    }

    /// A backend without its own appendfsync must not run with what an earlier backend set.
    #[test]
    fn a_redis_backend_runs_with_the_clusters_appendfsync_unless_it_sets_its_own() {
        let s = scenario(
            "[clusters.redis]
appendfsync = \"no\"",
            "[[backends]]
type = \"redis-streams\"
label = \"a\"
appendfsync = \"always\"
             [[backends]]
type = \"redis-streams\"
label = \"b\"
",
        );
        let fsync = |i: usize| match s.effective_spec(&s.backends[i]) {
            BackendSpec::RedisStreams(r) => r.appendfsync,
            _ => None,
        };
        assert_eq!(fsync(0), Some(AppendFsync::Always));
        assert_eq!(fsync(1), Some(AppendFsync::No));
        assert_eq!(labels(&s), ["aof-always", "memory"]);
    }
}
