//! Named clusters: `[clusters.<name>]` sections, each of one kind (Redis or RabbitMQ), and which
//! cluster each backend runs on.
//!
//! `[clusters.redis]` and `[clusters.rabbitmq]` need no `kind` (the name says it); any other name
//! does (`kind = "rabbitmq"`). A backend names its cluster with `cluster = "<name>"`; without it,
//! it runs on the one cluster of the kind it needs (a default local one, named after the kind,
//! when the scenario declares none).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::model::{BackendSpec, ClusterMode, RabbitClusterSection, RedisClusterSection};

/// What a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterKind {
    Redis,
    Rabbitmq,
}

impl ClusterKind {
    pub const ALL: [ClusterKind; 2] = [ClusterKind::Redis, ClusterKind::Rabbitmq];

    /// As written in a scenario (`kind = "redis"`), and the default cluster's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            ClusterKind::Redis => "redis",
            ClusterKind::Rabbitmq => "rabbitmq",
        }
    }

    /// The broker's name for people ("Redis 7.0.15").
    pub fn product(&self) -> &'static str {
        match self {
            ClusterKind::Redis => "Redis",
            ClusterKind::Rabbitmq => "RabbitMQ",
        }
    }

    /// The Debian package whose version is the broker's.
    pub fn package(&self) -> &'static str {
        match self {
            ClusterKind::Redis => "redis-server",
            ClusterKind::Rabbitmq => "rabbitmq-server",
        }
    }

    fn from_name(name: &str) -> Option<ClusterKind> {
        ClusterKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[clusters.<name>]` section.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ClusterSection {
    Redis(RedisClusterSection),
    Rabbitmq(RabbitClusterSection),
}

impl ClusterSection {
    pub fn default_of(kind: ClusterKind) -> Self {
        match kind {
            ClusterKind::Redis => ClusterSection::Redis(RedisClusterSection::default()),
            ClusterKind::Rabbitmq => ClusterSection::Rabbitmq(RabbitClusterSection::default()),
        }
    }

    pub fn kind(&self) -> ClusterKind {
        match self {
            ClusterSection::Redis(_) => ClusterKind::Redis,
            ClusterSection::Rabbitmq(_) => ClusterKind::Rabbitmq,
        }
    }

    /// Where a local cluster's binaries come from (None: the host).
    pub fn broker_root(&self) -> Option<&super::BrokerRoot> {
        match self {
            ClusterSection::Redis(s) => s.broker_root.as_ref(),
            ClusterSection::Rabbitmq(s) => s.broker_root.as_ref(),
        }
    }

    pub fn mode(&self) -> ClusterMode {
        match self {
            ClusterSection::Redis(s) => s.mode,
            ClusterSection::Rabbitmq(s) => s.mode,
        }
    }

    /// How a local cluster's nodes are networked (`network`).
    pub fn network(&self) -> crate::cluster::netns::NetworkMode {
        match self {
            ClusterSection::Redis(s) => s.network,
            ClusterSection::Rabbitmq(s) => s.network,
        }
    }

    /// The ports a local cluster of this section listens on: (first, last, field that sets
    /// them), as the launchers lay them out (6 Redis nodes and their bus ports at +10000;
    /// 3 RabbitMQ nodes, and the ports `rabbitmqctl` takes after the distribution ports).
    pub fn port_ranges(&self) -> Vec<(u32, u32, &'static str)> {
        match self {
            ClusterSection::Redis(s) => {
                let b = u32::from(s.base_port);
                vec![
                    (b, b + 5, "base_port"),
                    (b + 10_000, b + 10_005, "base_port"),
                ]
            }
            ClusterSection::Rabbitmq(s) => {
                let three = |p: u16, field| (u32::from(p), u32::from(p) + 2, field);
                vec![
                    three(s.amqp_base_port, "amqp_base_port"),
                    three(s.http_base_port, "http_base_port"),
                    three(s.stream_base_port, "stream_base_port"),
                    three(s.prometheus_base_port, "prometheus_base_port"),
                    // 3 nodes, then up to 7 ports for rabbitmqctl's own listener.
                    (
                        u32::from(s.dist_base_port),
                        u32::from(s.dist_base_port) + 9,
                        "dist_base_port",
                    ),
                    (u32::from(s.epmd_port), u32::from(s.epmd_port), "epmd_port"),
                ]
            }
        }
    }
}

/// Every `[clusters.<name>]` section, by name.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Clusters(BTreeMap<String, ClusterSection>);

impl Clusters {
    pub fn get(&self, name: &str) -> Option<&ClusterSection> {
        self.0.get(name)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut ClusterSection)> {
        self.0.iter_mut().map(|(n, s)| (n.as_str(), s))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ClusterSection)> {
        self.0.iter().map(|(n, s)| (n.as_str(), s))
    }

    /// Names of the clusters of `kind`, in name order.
    pub fn names_of(&self, kind: ClusterKind) -> Vec<&str> {
        self.iter()
            .filter(|(_, s)| s.kind() == kind)
            .map(|(n, _)| n)
            .collect()
    }

    pub fn insert(&mut self, name: &str, section: ClusterSection) {
        self.0.insert(name.to_string(), section);
    }

    /// The Redis section `name` (None: no such cluster, or not Redis).
    pub fn redis(&self, name: &str) -> Option<&RedisClusterSection> {
        match self.get(name) {
            Some(ClusterSection::Redis(s)) => Some(s),
            _ => None,
        }
    }

    pub fn rabbitmq(&self, name: &str) -> Option<&RabbitClusterSection> {
        match self.get(name) {
            Some(ClusterSection::Rabbitmq(s)) => Some(s),
            _ => None,
        }
    }

    pub fn redis_mut(&mut self, name: &str) -> Option<&mut RedisClusterSection> {
        match self.0.get_mut(name) {
            Some(ClusterSection::Redis(s)) => Some(s),
            _ => None,
        }
    }

    pub fn rabbitmq_mut(&mut self, name: &str) -> Option<&mut RabbitClusterSection> {
        match self.0.get_mut(name) {
            Some(ClusterSection::Rabbitmq(s)) => Some(s),
            _ => None,
        }
    }

    /// The one cluster of `kind` (its default section when there is none): what `brokerbench
    /// cluster up` reads from a scenario. Err: the names when there are several.
    pub fn only_of(&self, kind: ClusterKind) -> Result<(String, ClusterSection), Vec<String>> {
        match self.names_of(kind).as_slice() {
            [] => Ok((kind.as_str().to_string(), ClusterSection::default_of(kind))),
            [one] => Ok((one.to_string(), self.0[*one].clone())),
            many => Err(many.iter().map(|n| n.to_string()).collect()),
        }
    }
}

impl<'de> Deserialize<'de> for Clusters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Sections;
        impl<'de> Visitor<'de> for Sections {
            type Value = Clusters;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("cluster sections [clusters.<name>]")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Clusters, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let section = map.next_value_seed(Named(&name))?;
                    out.insert(name, section);
                }
                Ok(Clusters(out))
            }
        }
        d.deserialize_map(Sections)
    }
}

/// Deserializes one section, whose kind comes from its `kind` field or its name.
struct Named<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Named<'_> {
    type Value = ClusterSection;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<ClusterSection, D::Error> {
        use serde::de::Error;
        let name = self.0;
        let mut table = toml::Table::deserialize(d)?;
        let kind = match table.remove("kind") {
            Some(v) => {
                let kind = ClusterKind::deserialize(v).map_err(|e| {
                    D::Error::custom(format!("`kind`: {e}; use \"redis\" or \"rabbitmq\""))
                })?;
                if let Some(implied) = ClusterKind::from_name(name).filter(|k| *k != kind) {
                    return Err(D::Error::custom(format!(
                        "`kind`: a cluster named \"{name}\" is a {implied} cluster, not {kind}; \
                         remove `kind` or rename the section, e.g. [clusters.{kind}-2]"
                    )));
                }
                kind
            }
            None => ClusterKind::from_name(name).ok_or_else(|| {
                D::Error::custom(
                    "`kind`: missing; a cluster section other than [clusters.redis] or \
                     [clusters.rabbitmq] needs kind = \"redis\" or kind = \"rabbitmq\"",
                )
            })?,
        };
        let value = toml::Value::Table(table);
        // Name the field inside the section in the message (the caller adds the section's path).
        let inner = |e: serde_path_to_error::Error<toml::de::Error>| {
            let path = e.path().to_string();
            let message = e.into_inner().message().to_string();
            if path.is_empty() || path == "." || message.starts_with("unknown field") {
                D::Error::custom(message)
            } else {
                D::Error::custom(format!("`{path}`: {message}"))
            }
        };
        Ok(match kind {
            ClusterKind::Redis => {
                ClusterSection::Redis(serde_path_to_error::deserialize(value).map_err(inner)?)
            }
            ClusterKind::Rabbitmq => {
                ClusterSection::Rabbitmq(serde_path_to_error::deserialize(value).map_err(inner)?)
            }
        })
    }
}

/// A cluster name is a folder name in the run folder and a word in messages.
fn check_name(name: &str) -> Result<(), (String, String)> {
    if name.is_empty()
        || name.len() > 40
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            format!("clusters.{name}"),
            "a cluster name must be 1 to 40 letters, digits, '-' or '_', e.g. [clusters.rabbitmq-4]"
                .to_string(),
        ));
    }
    Ok(())
}

/// Give every backend its cluster: the one it names, or the one cluster of its kind (a default
/// local cluster named after the kind when the scenario declares none). `Err((field, message))`.
pub fn resolve(
    clusters: &mut Clusters,
    backends: &mut [BackendSpec],
) -> Result<(), (String, String)> {
    for (name, _) in clusters.iter() {
        check_name(name)?;
    }
    for (i, b) in backends.iter_mut().enumerate() {
        let kind = b.cluster_kind();
        let name = match b.cluster() {
            Some(name) => {
                let field = format!("backends[{i}].cluster");
                match clusters.get(name) {
                    None => {
                        let known: Vec<&str> = clusters.names_of(kind);
                        return Err((
                            field,
                            format!(
                                "\"{name}\" is not a cluster of this scenario ({} clusters: {}); \
                                 declare [clusters.{name}] with kind = \"{kind}\", or name one of them",
                                kind.product(),
                                if known.is_empty() { "none".to_string() } else { known.join(", ") }
                            ),
                        ));
                    }
                    Some(s) if s.kind() != kind => {
                        return Err((
                            field,
                            format!(
                                "cluster \"{name}\" is a {} cluster, but {} runs on {}; name a {} cluster",
                                s.kind().product(),
                                b.type_name(),
                                kind.product(),
                                kind.product()
                            ),
                        ))
                    }
                    Some(_) => name.to_string(),
                }
            }
            None => match clusters.names_of(kind).as_slice() {
                [] => {
                    let name = kind.as_str();
                    clusters.insert(name, ClusterSection::default_of(kind));
                    name.to_string()
                }
                [one] => one.to_string(),
                many => {
                    return Err((
                        format!("backends[{i}].cluster"),
                        format!(
                            "the scenario has {} {} clusters ({}); say which one {} runs on, e.g. cluster = \"{}\"",
                            many.len(),
                            kind.product(),
                            many.join(", "),
                            b.label(),
                            many[0]
                        ),
                    ))
                }
            },
        };
        b.set_cluster(name);
    }
    Ok(())
}

/// Local clusters that backends run on must not share a port: `Err((field, message))` naming both.
pub fn check_ports(clusters: &Clusters, used: &[&str]) -> Result<(), (String, String)> {
    let local: Vec<(&str, &ClusterSection)> = clusters
        .iter()
        .filter(|(n, s)| used.contains(n) && s.mode() == ClusterMode::Local)
        .collect();
    for (i, (a, sa)) in local.iter().enumerate() {
        for (b, sb) in &local[i + 1..] {
            for (a0, a1, fa) in sa.port_ranges() {
                for (b0, b1, fb) in sb.port_ranges() {
                    if a0 <= b1 && b0 <= a1 {
                        return Err((
                            format!("clusters.{b}.{fb}"),
                            format!(
                                "ports {b0}-{b1} of cluster \"{b}\" overlap ports {a0}-{a1} of cluster \"{a}\" \
                                 (clusters.{a}.{fa}); give each cluster its own ports"
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::scenario::{parse, ClusterKind};

    const HEAD: &str =
        "name = \"c\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n";

    fn parsed(text: &str) -> crate::scenario::Scenario {
        match parse(Path::new("c.toml"), &format!("{HEAD}{text}")) {
            Ok(s) => s,
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    fn err(text: &str) -> String {
        match parse(Path::new("c.toml"), &format!("{HEAD}{text}")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn named_clusters_of_one_kind_run_side_by_side() {
        let s = parsed(
            "[clusters.redis-7]\nkind = \"redis\"\nbase_port = 7001\n\
             [clusters.redis-8]\nkind = \"redis\"\nbase_port = 7011\nappendfsync = \"always\"\n\
             [[backends]]\ntype = \"redis-streams\"\nlabel = \"a\"\ncluster = \"redis-7\"\n\
             [[backends]]\ntype = \"redis-streams\"\nlabel = \"b\"\ncluster = \"redis-8\"\n",
        );
        assert_eq!(
            s.clusters.names_of(ClusterKind::Redis),
            ["redis-7", "redis-8"]
        );
        assert_eq!(s.backends[1].cluster(), Some("redis-8"));
        assert_eq!(s.guarantee(&s.backends[0]).label(), "aof-everysec");
        assert_eq!(s.guarantee(&s.backends[1]).label(), "aof-always");
        // No default cluster is added when the scenario names its own.
        assert!(s.clusters.get("redis").is_none());
    }

    #[test]
    fn a_backend_without_cluster_takes_the_one_of_its_kind() {
        let s = parsed(
            "[clusters.rabbitmq-4]\nkind = \"rabbitmq\"\n\
             [[backends]]\ntype = \"rabbitmq-quorum\"\n[[backends]]\ntype = \"redis-streams\"\n",
        );
        assert_eq!(s.backends[0].cluster(), Some("rabbitmq-4"));
        // None declared: the default local cluster, named after its kind.
        assert_eq!(s.backends[1].cluster(), Some("redis"));
        assert_eq!(s.clusters.redis("redis").map(|r| r.base_port), Some(7001));
    }

    #[test]
    fn unclear_clusters_are_refused_with_the_fix() {
        let two = "[clusters.a]\nkind = \"rabbitmq\"\n[clusters.b]\nkind = \"rabbitmq\"\namqp_base_port = 5800\nhttp_base_port = 15800\nstream_base_port = 5810\nprometheus_base_port = 15810\ndist_base_port = 25800\nepmd_port = 4420\n";
        let e = err(&format!("{two}[[backends]]\ntype = \"rabbitmq-quorum\"\n"));
        assert!(
            e.starts_with(
                "c.toml: field `backends[0].cluster`: the scenario has 2 RabbitMQ clusters (a, b)"
            ) && e.contains("cluster = \"a\""),
            "{e}"
        );
        let e = err(&format!(
            "{two}[[backends]]\ntype = \"rabbitmq-quorum\"\ncluster = \"c\"\n"
        ));
        assert!(
            e.starts_with("c.toml: field `backends[0].cluster`: \"c\" is not a cluster")
                && e.contains("RabbitMQ clusters: a, b"),
            "{e}"
        );
        let e = err(&format!(
            "{two}[[backends]]\ntype = \"redis-streams\"\ncluster = \"a\"\n"
        ));
        assert!(
            e.contains("`backends[0].cluster`: cluster \"a\" is a RabbitMQ cluster, but redis-streams runs on Redis"),
            "{e}"
        );
        let e = err("[clusters.fast]\nbase_port = 7001\n[[backends]]\ntype = \"redis-streams\"\n");
        assert!(
            e.starts_with("c.toml: field `clusters.fast.kind`: missing"),
            "{e}"
        );
        let e =
            err("[clusters.redis]\nkind = \"rabbitmq\"\n[[backends]]\ntype = \"redis-streams\"\n");
        assert!(
            e.contains("`clusters.redis.kind`: a cluster named \"redis\" is a redis cluster"),
            "{e}"
        );
        let e = err("[clusters.x]\nkind = \"kafka\"\n[[backends]]\ntype = \"redis-streams\"\n");
        assert!(
            e.contains("`clusters.x.kind`") && e.contains("use \"redis\" or \"rabbitmq\""),
            "{e}"
        );
        let e =
            err("[clusters.redis]\nbase_port = \"x\"\n[[backends]]\ntype = \"redis-streams\"\n");
        assert!(
            e.starts_with("c.toml: field `clusters.redis.base_port`: invalid type"),
            "{e}"
        );
        let e = err("[clusters.redis]\nbogus = 1\n[[backends]]\ntype = \"redis-streams\"\n");
        assert!(
            e.starts_with("c.toml: field `clusters.redis.bogus`: unknown field"),
            "{e}"
        );
        let e =
            err("[clusters.\"a b\"]\nkind = \"redis\"\n[[backends]]\ntype = \"redis-streams\"\n");
        assert!(
            e.contains("`clusters.a b`") && e.contains("letters, digits"),
            "{e}"
        );
    }

    #[test]
    fn a_fault_can_be_limited_to_the_backends_of_one_cluster() {
        let two = "[clusters.redis-7]\nkind = \"redis\"\n\
             [clusters.redis-8]\nkind = \"redis\"\nmode = \"external\"\nnodes = [\"127.0.0.1:7500\"]\n\
             [[backends]]\ntype = \"redis-streams\"\nlabel = \"a\"\ncluster = \"redis-7\"\n\
             [[backends]]\ntype = \"redis-streams\"\nlabel = \"b\"\ncluster = \"redis-8\"\n";
        let fault = |clusters: &str| {
            format!("{two}[[faults]]\nat = \"0s\"\naction = \"kill\"\ntarget = \"random\"\nclusters = {clusters}\n")
        };
        let s = parsed(&fault("[\"redis-7\"]"));
        let f = &s.faults[0];
        let applies: Vec<String> = s
            .backends
            .iter()
            .filter(|b| f.applies_to(&b.label(), b.type_name(), b.cluster()))
            .map(|b| b.label())
            .collect();
        assert_eq!(applies, ["a"]);
        // On every cluster, the fault would hit the external one too.
        let e = err(&fault("[]"));
        assert!(
            e.contains("`faults[0].action`: b cannot kill nodes of an external cluster (clusters.redis-8.mode"),
            "{e}"
        );
        let e = err(&fault("[\"redis-9\"]"));
        assert!(
            e.contains("`faults[0].clusters`: \"redis-9\" is not a cluster of this scenario; use names of its clusters (redis-7, redis-8)"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_ports_of_two_clusters_are_refused_naming_both() {
        let e = err(
            "[clusters.rabbitmq-3]\nkind = \"rabbitmq\"\n[clusters.rabbitmq-4]\nkind = \"rabbitmq\"\namqp_base_port = 5800\n\
             [[backends]]\ntype = \"rabbitmq-quorum\"\nlabel = \"a\"\ncluster = \"rabbitmq-3\"\n\
             [[backends]]\ntype = \"rabbitmq-quorum\"\nlabel = \"b\"\ncluster = \"rabbitmq-4\"\n",
        );
        assert!(
            e.starts_with("c.toml: field `clusters.rabbitmq-4.http_base_port`: ports 15672-15674 of cluster \"rabbitmq-4\" overlap ports 15672-15674 of cluster \"rabbitmq-3\" (clusters.rabbitmq-3.http_base_port)"),
            "{e}"
        );
        // Redis bus ports count too: 7001's bus is 17001-17006.
        let e = err(
            "[clusters.a]\nkind = \"redis\"\n[clusters.b]\nkind = \"rabbitmq\"\nepmd_port = 17003\n\
             [[backends]]\ntype = \"redis-streams\"\n[[backends]]\ntype = \"rabbitmq-quorum\"\n",
        );
        assert!(
            e.contains("`clusters.b.epmd_port`") && e.contains("cluster \"a\""),
            "{e}"
        );
        // A cluster no backend runs on is never started, so its ports do not matter.
        parsed(
            "[clusters.a]\nkind = \"redis\"\n[clusters.b]\nkind = \"redis\"\n\
             [[backends]]\ntype = \"redis-streams\"\ncluster = \"a\"\n",
        );
    }
}
