//! Which broker version a cluster runs: read from its running nodes (Redis `INFO server`,
//! RabbitMQ's management API), which works for every launcher and for external clusters, or,
//! before a local cluster starts, from the dpkg database of the root its binaries come from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::rabbitmq::http::MgmtClient;
use super::ClusterError;
use crate::cluster::endpoints::Endpoints;
use crate::scenario::ClusterKind;

/// Limit for asking one node its version.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A broker's version, e.g. 3.10.8: the numbers compare, the text is shown as the broker gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerVersion {
    pub text: String,
    pub major: u32,
    pub minor: u32,
}

impl BrokerVersion {
    /// "4.0.5", "7.0.15", "8.0.2"; None without a leading `major.minor`.
    pub fn parse(text: &str) -> Option<BrokerVersion> {
        let text = text.trim();
        let mut parts = text.split(['.', '-', '+', '~']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts
            .next()
            .map(|m| {
                m.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            })
            .and_then(|m| m.parse().ok())?;
        Some(BrokerVersion {
            text: text.to_string(),
            major,
            minor,
        })
    }

    /// The upstream version in a Debian package version: `5:7.0.15-1~deb12u10` -> 7.0.15,
    /// `3.10.8-1.1+deb12u1` -> 3.10.8.
    pub fn from_debian(version: &str) -> Option<BrokerVersion> {
        let no_epoch = version
            .trim()
            .split_once(':')
            .map_or(version.trim(), |(_, v)| v);
        let upstream = no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u);
        BrokerVersion::parse(upstream)
    }
}

impl fmt::Display for BrokerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Where a version was read, for messages ("the running nodes", "/var/lib/dpkg/status").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownVersion {
    pub version: BrokerVersion,
    pub source: String,
}

/// The version of `kind`'s package installed in the root `root` ("/" for the host), from its
/// dpkg database. Ok(None): the package is not installed there.
pub fn installed_version(
    kind: ClusterKind,
    root: &Path,
) -> Result<Option<KnownVersion>, ClusterError> {
    let path: PathBuf = root.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&path).map_err(|source| ClusterError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(
        package_version(&text, kind.package()).map(|version| KnownVersion {
            version,
            source: path.display().to_string(),
        }),
    )
}

/// The version of installed package `package` in a dpkg status file's text.
fn package_version(status: &str, package: &str) -> Option<BrokerVersion> {
    status.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
        if field("Package") == Some(package) && installed {
            field("Version").and_then(BrokerVersion::from_debian)
        } else {
            None
        }
    })
}

/// The version the running nodes of a cluster report: Redis `INFO server` on the first seed that
/// answers, RabbitMQ `/api/overview` on the first management API that answers.
pub async fn running_version(
    kind: ClusterKind,
    endpoints: &Endpoints,
) -> Result<BrokerVersion, ClusterError> {
    let mut tried = Vec::new();
    match kind {
        ClusterKind::Redis => {
            for seed in &endpoints.redis {
                match tokio::time::timeout(ASK_TIMEOUT, redis_version(seed)).await {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) => tried.push(format!("{seed}: {e}")),
                    Err(_) => tried.push(format!("{seed}: no answer in {ASK_TIMEOUT:?}")),
                }
            }
        }
        ClusterKind::Rabbitmq => {
            for e in endpoints.rabbitmq.iter().filter(|e| !e.http.is_empty()) {
                let client = MgmtClient::new(&e.http, &e.credentials());
                match tokio::time::timeout(ASK_TIMEOUT, client.version()).await {
                    Ok(Ok(text)) => match BrokerVersion::parse(&text) {
                        Some(v) => return Ok(v),
                        None => tried.push(format!("{}: rabbitmq_version \"{text}\"", e.http)),
                    },
                    Ok(Err(err)) => tried.push(format!("{}: {err}", e.http)),
                    Err(_) => tried.push(format!("{}: no answer in {ASK_TIMEOUT:?}", e.http)),
                }
            }
        }
    }
    Err(ClusterError::Command {
        command: match kind {
            ClusterKind::Redis => "INFO server".to_string(),
            ClusterKind::Rabbitmq => "GET /api/overview".to_string(),
        },
        message: if tried.is_empty() {
            "no node to ask (no seed address, or no management address)".to_string()
        } else {
            tried.join("; ")
        },
    })
}

async fn redis_version(seed: &str) -> Result<BrokerVersion, String> {
    let url = if seed.contains("://") {
        seed.to_string()
    } else {
        format!("redis://{seed}")
    };
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut con)
        .await
        .map_err(|e| e.to_string())?;
    let text = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .ok_or("INFO server has no redis_version")?;
    BrokerVersion::parse(text).ok_or_else(|| format!("redis_version \"{}\"", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rabbitmq-server and redis-server stanzas trimmed from /var/lib/dpkg/status of a
    /// Debian 12 host; the redis-tools one edited to the state `apt-get remove` leaves a package
    /// in (only its configuration files installed).
    const STATUS: &str = "Package: rabbitmq-server
Status: install ok installed
Priority: optional
Section: net
Installed-Size: 22814
Maintainer: Debian OpenStack <team+openstack@tracker.debian.org>
Architecture: all
Version: 3.10.8-1.1+deb12u1
Depends: adduser, erlang-base | erlang-base-hipe, logrotate, lsb-base, openssl, socat, python3:any

Package: redis-tools
Status: deinstall ok config-files
Version: 5:7.0.15-1~deb12u10

Package: redis-server
Status: install ok installed
Priority: optional
Section: database
Architecture: amd64
Version: 5:7.0.15-1~deb12u10
Depends: redis-tools (= 5:7.0.15-1~deb12u10)
";

    #[test]
    fn package_versions_come_from_the_dpkg_status_file() {
        let v = |p| package_version(STATUS, p).map(|v| (v.text, v.major, v.minor));
        assert_eq!(v("rabbitmq-server"), Some(("3.10.8".into(), 3, 10)));
        assert_eq!(v("redis-server"), Some(("7.0.15".into(), 7, 0)));
        assert_eq!(v("redis-tools"), None, "only configuration files left");
        assert_eq!(v("rabbitmq"), None);
    }

    #[test]
    fn versions_parse_as_brokers_and_debian_write_them() {
        let v = BrokerVersion::parse("4.0.5").expect("4.0.5");
        assert_eq!((v.major, v.minor, v.text.as_str()), (4, 0, "4.0.5"));
        assert_eq!(
            BrokerVersion::from_debian("4.0.5-6").map(|v| v.text),
            Some("4.0.5".into())
        );
        assert_eq!(
            BrokerVersion::from_debian("5:8.0.2-3").map(|v| (v.text, v.major)),
            Some(("8.0.2".into(), 8))
        );
        assert_eq!(BrokerVersion::parse("unknown"), None);
    }

    /// The host's own package: this machine has Debian 12's brokers installed.
    #[test]
    fn the_hosts_rabbitmq_version_is_read_from_its_dpkg_database() {
        let v = installed_version(ClusterKind::Rabbitmq, Path::new("/"))
            .expect("read /var/lib/dpkg/status")
            .expect("rabbitmq-server is installed on this host");
        assert!(v.version.major >= 3, "{v:?}");
        assert_eq!(v.source, "/var/lib/dpkg/status");
    }
}
