//! A cluster section's `broker_root`: where the broker binaries of a local cluster come from.
//! Absent: the host's. `"debian13"`: the project's Debian 13 root (RabbitMQ 4.0, Redis 8.0),
//! built by `make brokers-debian13`. A path (containing a `/`; relative to the scenario file's
//! folder): any root folder with the brokers installed. The launchers run the nodes in it through
//! chroot (`cluster::broker_root`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The roots the project builds itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownRoot {
    /// Debian 13 (trixie): RabbitMQ 4.0.5 on Erlang 27, Redis 8.0.2.
    Debian13,
}

impl KnownRoot {
    pub const ALL: [KnownRoot; 1] = [KnownRoot::Debian13];

    pub fn name(self) -> &'static str {
        match self {
            KnownRoot::Debian13 => "debian13",
        }
    }
}

/// Value of `broker_root`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum BrokerRoot {
    Known(KnownRoot),
    Path(PathBuf),
}

impl BrokerRoot {
    /// A relative path taken relative to `base` (the scenario file's folder).
    pub fn relative_to(self, base: &Path) -> Self {
        match self {
            BrokerRoot::Path(p) if p.is_relative() => BrokerRoot::Path(base.join(p)),
            other => other,
        }
    }
}

impl TryFrom<String> for BrokerRoot {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if let Some(k) = KnownRoot::ALL.into_iter().find(|k| k.name() == s) {
            return Ok(BrokerRoot::Known(k));
        }
        if s.contains('/') {
            return Ok(BrokerRoot::Path(PathBuf::from(s)));
        }
        let names: Vec<String> = KnownRoot::ALL
            .iter()
            .map(|k| format!("\"{}\"", k.name()))
            .collect();
        Err(format!(
            "unknown broker root \"{s}\"; use {} (built by `make brokers-debian13`), a path to a root folder with the brokers installed (e.g. \"./roots/mine\"), or leave it out for the host's brokers",
            names.join(", ")
        ))
    }
}

impl From<BrokerRoot> for String {
    fn from(r: BrokerRoot) -> String {
        match r {
            BrokerRoot::Known(k) => k.name().to_string(),
            BrokerRoot::Path(p) => p.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(
            BrokerRoot::try_from("debian13".to_string()),
            Ok(BrokerRoot::Known(KnownRoot::Debian13))
        );
        assert_eq!(
            BrokerRoot::try_from("roots/mine".to_string()),
            Ok(BrokerRoot::Path(PathBuf::from("roots/mine")))
        );
        let e = BrokerRoot::try_from("debian14".to_string()).expect_err("unknown");
        assert!(e.contains("\"debian13\""), "{e}");
        assert_eq!(
            BrokerRoot::Path("roots/mine".into()).relative_to(Path::new("/s")),
            BrokerRoot::Path("/s/roots/mine".into())
        );
        assert_eq!(
            BrokerRoot::Path("/abs".into()).relative_to(Path::new("/s")),
            BrokerRoot::Path("/abs".into())
        );
        assert_eq!(
            String::from(BrokerRoot::Known(KnownRoot::Debian13)),
            "debian13"
        );
    }
}
