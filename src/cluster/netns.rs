//! `network = "namespaces"`: every node of a local cluster in a network namespace of its own,
//! so that one node can be cut off from the others and from the clients while it keeps running
//! (the `partition` fault).
//!
//! Layout, for a cluster whose first port is P (ports are exclusive per cluster on a host, so the
//! names are too): a Linux bridge `bbP-br` in the root namespace with the address
//! 10.251.X.1/24 (X = P mod 256), and per node i a namespace `bbPnI` holding one end of a veth
//! pair (`bbPnI`, address 10.251.X.(10+i)/24) whose other end (`bbPnIh`) is a port of the
//! bridge. Nodes reach each other through the bridge, the harness through the bridge's address.
//! A partition sets the node's bridge-side end down: its peers and clients see their packets
//! vanish (no reset, no refusal), the node sees its link go down, and both notice only through
//! their own timeouts; setting it up again heals it. The bridge's alias records the cluster
//! folder, so a later run can tell whose network it is.
//!
//! Everything is made with `ip` (iproute2) and needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN). There
//! is no netem on this kernel: no packet loss, latency or one-way cut is emulated, only a whole
//! link going down. Inside its namespace a node also has its own loopback.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::ClusterError;

/// Where the namespaces' addresses come from: 10.251.0.0/16, one /24 per cluster.
const NET_PREFIX: [u8; 2] = [10, 251];
/// Node i's last address byte is this plus i.
const FIRST_NODE_HOST: u8 = 10;
/// Where `ip netns add` puts its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// How a local cluster's nodes are networked (`[clusters.<name>] network`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// Every node on 127.0.0.1 in the harness's own namespace: faults are signals only.
    #[default]
    Loopback,
    /// Every node in a network namespace of its own behind a bridge: `partition` is possible.
    Namespaces,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Loopback => "loopback",
            NetworkMode::Namespaces => "namespaces",
        }
    }
}

/// One node's namespace and link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeNet {
    /// The namespace, also the name of the node's end of the veth pair.
    pub ns: String,
    /// The bridge's end of the pair: down while the node is partitioned.
    pub link: String,
    pub addr: Ipv4Addr,
}

/// A cluster's bridge and its nodes' namespaces, as recorded in the cluster's state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNet {
    pub bridge: String,
    /// The bridge's address: where the harness's connections come from.
    pub gateway: Ipv4Addr,
    pub nodes: Vec<NodeNet>,
}

impl ClusterNet {
    /// The names and addresses for `count` nodes of the cluster whose first port is `port`.
    pub fn plan(port: u16, count: usize) -> ClusterNet {
        let x = (port % 256) as u8;
        let addr = |h: u8| Ipv4Addr::new(NET_PREFIX[0], NET_PREFIX[1], x, h);
        ClusterNet {
            bridge: format!("bb{port}-br"),
            gateway: addr(1),
            nodes: (0..count)
                .map(|i| NodeNet {
                    ns: format!("bb{port}n{i}"),
                    link: format!("bb{port}n{i}h"),
                    addr: addr(FIRST_NODE_HOST.saturating_add(i as u8)),
                })
                .collect(),
        }
    }

    /// Create the bridge, the namespaces and the links, the bridge's alias naming `owner` (the
    /// cluster folder). A network of the same names that a dead cluster left behind is removed
    /// first (see [`ClusterNet::clear_leftover`]); on failure whatever was made is removed.
    pub fn create(&self, owner: &Path) -> Result<(), ClusterError> {
        self.clear_leftover(owner)?;
        let o = self.gateway.octets();
        let subnet = format!("{}.{}.{}.0/24", o[0], o[1], o[2]);
        let taken = ip_out(&["-o", "-4", "addr", "show", "to", &subnet])?;
        if !taken.trim().is_empty() {
            return Err(ClusterError::Command {
                command: format!("ip -o -4 addr show to {subnet}"),
                message: format!(
                    "the subnet {subnet}, which a cluster whose first port is {} would use, is \
                     already in use on this host ({}); use another base port (the third byte \
                     of the subnet is the first port modulo 256)",
                    self.first_port(),
                    taken.lines().next().unwrap_or("").trim()
                ),
            });
        }
        let made = self.build(owner);
        if made.is_err() {
            self.remove();
        }
        made
    }

    fn build(&self, owner: &Path) -> Result<(), ClusterError> {
        let gw = format!("{}/24", self.gateway);
        ip(&["link", "add", &self.bridge, "type", "bridge"])?;
        ip(&[
            "link",
            "set",
            &self.bridge,
            "alias",
            &owner.display().to_string(),
        ])?;
        ip(&["addr", "add", &gw, "dev", &self.bridge])?;
        ip(&["link", "set", &self.bridge, "up"])?;
        for n in &self.nodes {
            let addr = format!("{}/24", n.addr);
            ip(&["netns", "add", &n.ns])?;
            ip(&[
                "link", "add", &n.link, "type", "veth", "peer", "name", &n.ns,
            ])?;
            ip(&["link", "set", &n.ns, "netns", &n.ns])?;
            ip(&["link", "set", &n.link, "master", &self.bridge, "up"])?;
            ip(&["-n", &n.ns, "addr", "add", &addr, "dev", &n.ns])?;
            ip(&["-n", &n.ns, "link", "set", &n.ns, "up"])?;
            ip(&["-n", &n.ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Remove the links, the namespaces and the bridge (best effort: what is not there is
    /// skipped). Call it once the nodes' processes are gone: a namespace lives on while a
    /// process is inside it. Returns what could not be removed.
    pub fn remove(&self) -> Vec<String> {
        let mut left = Vec::new();
        for n in &self.nodes {
            if link_exists(&n.link) && ip(&["link", "del", &n.link]).is_err() {
                left.push(n.link.clone());
            }
            if ns_path(&n.ns).exists() && ip(&["netns", "del", &n.ns]).is_err() {
                left.push(n.ns.clone());
            }
        }
        if link_exists(&self.bridge) && ip(&["link", "del", &self.bridge]).is_err() {
            left.push(self.bridge.clone());
        }
        left
    }

    /// Whether any of the names exists on this host.
    pub fn any_left(&self) -> bool {
        link_exists(&self.bridge)
            || self
                .nodes
                .iter()
                .any(|n| link_exists(&n.link) || ns_path(&n.ns).exists())
    }

    /// Cut node `i` off (its bridge-side link down).
    pub fn cut(&self, i: usize) -> Result<(), ClusterError> {
        ip(&["link", "set", &self.node(i)?.link, "down"])
    }

    /// Join node `i` again (its bridge-side link up).
    pub fn join(&self, i: usize) -> Result<(), ClusterError> {
        ip(&["link", "set", &self.node(i)?.link, "up"])
    }

    /// Whether node `i`'s link is down (`ip link set down`, not a missing carrier).
    pub fn is_cut(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| {
            std::fs::read_to_string(format!("/sys/class/net/{}/flags", n.link))
                .ok()
                .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
                .is_some_and(|flags| flags & (libc::IFF_UP as u32) == 0)
        })
    }

    /// Make `cmd` start inside node `i`'s namespace (setns before exec: the process's pid is
    /// the one `spawn` returns, as on loopback).
    pub fn enter(&self, i: usize, cmd: &mut Command) -> Result<(), ClusterError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let path = ns_path(&self.node(i)?.ns);
        let file = std::fs::File::open(&path).map_err(|source| ClusterError::Io {
            path: path.clone(),
            source,
        })?;
        // SAFETY: the closure makes one system call on a descriptor opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Ok(())
    }

    fn node(&self, i: usize) -> Result<&NodeNet, ClusterError> {
        self.nodes.get(i).ok_or_else(|| ClusterError::Command {
            command: "ip link".into(),
            message: format!("the network of {} has no node {i}", self.bridge),
        })
    }

    fn first_port(&self) -> &str {
        self.bridge.trim_start_matches("bb").trim_end_matches("-br")
    }

    /// A network of these names already exists. If the bridge's alias names the folder of a
    /// cluster whose run is over, that cluster is killed first (`leftovers::kill_cluster`, which
    /// removes its network too). Then, if the alias names `owner` or a folder whose cluster is
    /// gone (no state file, or its run is over) and no process is inside the namespaces, the
    /// network is a leftover and is removed (a line on stderr says so); otherwise it is an error
    /// naming the folder of the cluster that uses it.
    fn clear_leftover(&self, owner: &Path) -> Result<(), ClusterError> {
        if !self.any_left() {
            return Ok(());
        }
        let alias = std::fs::read_to_string(format!("/sys/class/net/{}/ifalias", self.bridge))
            .map(|a| PathBuf::from(a.trim()))
            .unwrap_or_default();
        if alias != owner && !alias.as_os_str().is_empty() {
            if let Some(c) = super::leftovers::known_cluster(&alias)
                .filter(|c| c.owner.as_ref().is_some_and(|o| !o.is_alive()))
            {
                crate::errln!(
                    "brokerbench: the network {} belongs to the cluster in {}, left behind by a \
                     run that is over; stopping it",
                    self.bridge,
                    alias.display()
                );
                super::leftovers::kill_cluster(&c, None);
                if !self.any_left() {
                    return Ok(());
                }
            }
        }
        let inside: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| ns_path(&n.ns).exists())
            .flat_map(|n| {
                ip_out(&["netns", "pids", &n.ns])
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        let gone = alias == owner
            || alias.as_os_str().is_empty()
            || super::leftovers::known_cluster(&alias)
                .is_none_or(|c| c.owner.as_ref().is_some_and(|o| !o.is_alive()));
        if gone && inside.is_empty() {
            crate::errln!(
                "brokerbench: removing the network {} left behind by the cluster in {}",
                self.bridge,
                if alias.as_os_str().is_empty() {
                    "an unknown folder".to_string()
                } else {
                    alias.display().to_string()
                }
            );
            let left = self.remove();
            if left.is_empty() {
                return Ok(());
            }
        }
        Err(ClusterError::Command {
            command: format!("ip link add {} type bridge", self.bridge),
            message: format!(
                "the network {} already exists (bridge alias: {:?}; processes inside its \
                 namespaces: {}); stop that cluster (`brokerbench cluster down ... --dir {}`), \
                 or use another base port",
                self.bridge,
                alias.display().to_string(),
                if inside.is_empty() {
                    "none".to_string()
                } else {
                    inside.join(" ")
                },
                alias.display()
            ),
        })
    }
}

fn ns_path(ns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(ns)
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Run `ip ARGS`; an error carries its stderr and the fix.
fn ip(args: &[&str]) -> Result<(), ClusterError> {
    ip_out(args).map(|_| ())
}

fn ip_out(args: &[&str]) -> Result<String, ClusterError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ClusterError::Command {
            command: command.clone(),
            message: format!(
                "cannot run `ip` ({e}); network = \"namespaces\" needs iproute2 (apt-get install \
                 iproute2) and root"
            ),
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(ClusterError::Command {
        command,
        message: format!(
            "{}: {}; network = \"namespaces\" needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_addresses_follow_the_port() {
        let net = ClusterNet::plan(7601, 6);
        assert_eq!(net.bridge, "bb7601-br");
        assert_eq!(net.gateway, Ipv4Addr::new(10, 251, 177, 1));
        assert_eq!(net.nodes[5].ns, "bb7601n5");
        assert_eq!(net.nodes[5].link, "bb7601n5h");
        assert_eq!(net.nodes[5].addr, Ipv4Addr::new(10, 251, 177, 15));
        assert_eq!(net.first_port(), "7601");
        // Linux interface names are at most 15 bytes.
        let wide = ClusterNet::plan(65535, 12);
        for n in &wide.nodes {
            assert!(n.link.len() <= 15 && n.ns.len() <= 15, "{n:?}");
        }
        assert!(wide.bridge.len() <= 15);
    }
}
