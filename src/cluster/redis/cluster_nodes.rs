//! `CLUSTER NODES` output: [`RedisNodeStatus`] rows, slot ranges, row order, the slot owner across
//! several nodes' views, and the status table.

use serde::Serialize;

use super::LocalRedisCluster;

/// One row of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedisNodeStatus {
    pub id: String,
    /// "127.0.0.1:7001".
    pub address: String,
    /// "master", "replica", "fail" (flagged failed), "handshake", "noaddr" or "unknown".
    pub role: String,
    pub master_id: Option<String>,
    /// Slot ranges served, comma-separated ("0-5460"), or "-".
    pub slots: String,
    /// The raw flags ("myself,master", "slave,fail?", ...).
    pub flags: String,
    /// Whether the cluster bus link to the node is up.
    pub connected: bool,
}

impl RedisNodeStatus {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.split(',').any(|f| f == flag)
    }

    /// Whether the node is a master (also when flagged failed).
    pub fn is_master(&self) -> bool {
        self.has_flag("master")
    }

    /// The slot ranges in `slots`, inclusive.
    pub fn slot_ranges(&self) -> Vec<(u16, u16)> {
        parse_slot_ranges(&self.slots)
    }

    pub fn owns_slot(&self, slot: u16) -> bool {
        self.slot_ranges()
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&slot))
    }

    fn port(&self) -> u16 {
        self.address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0)
    }
}

impl LocalRedisCluster {
    /// A table: Role | Node ID | IP:Port | Master Node ID | Slot Range.
    pub fn format_status(rows: &[RedisNodeStatus]) -> String {
        let header =
            ["Role", "Node ID", "IP:Port", "Master Node ID", "Slot Range"].map(String::from);
        let body: Vec<[String; 5]> = rows
            .iter()
            .map(|r| {
                [
                    r.role.clone(),
                    r.id.clone(),
                    r.address.clone(),
                    r.master_id.clone().unwrap_or_else(|| "-".into()),
                    r.slots.clone(),
                ]
            })
            .collect();
        let mut widths = header.clone().map(|h| h.len());
        for row in &body {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: &[String; 5]| {
            let inner: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!(" {c:<w$} "))
                .collect();
            format!("|{}|\n", inner.join("|"))
        };
        let mut out = line(&header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &body {
            out.push_str(&line(row));
        }
        out
    }
}

/// A parsed CLUSTER NODES line with what the public row leaves out.
#[derive(Debug, Clone)]
pub struct NodeLine {
    pub status: RedisNodeStatus,
    pub myself: bool,
    pub config_epoch: u64,
}

/// Parse CLUSTER NODES output into status rows (malformed lines are skipped); also used by the
/// Redis backend, for clusters brokerbench did not start.
pub fn parse_node_rows(text: &str) -> Vec<RedisNodeStatus> {
    parse_cluster_nodes(text)
        .into_iter()
        .map(|l| l.status)
        .collect()
}

/// Parse CLUSTER NODES output; malformed lines are skipped.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeLine> {
    text.lines().filter_map(parse_cluster_nodes_line).collect()
}

fn parse_cluster_nodes_line(line: &str) -> Option<NodeLine> {
    // <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> ...
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 8 {
        return None;
    }
    let flags: Vec<&str> = f[2].split(',').collect();
    let has = |x: &str| flags.contains(&x);
    let role = if has("fail") {
        "fail"
    } else if has("handshake") {
        "handshake"
    } else if has("master") {
        "master"
    } else if has("slave") {
        "replica"
    } else if has("noaddr") {
        "noaddr"
    } else {
        "unknown"
    };
    let slots: Vec<&str> = f[8..]
        .iter()
        .copied()
        .filter(|s| !s.starts_with('['))
        .collect();
    let address = f[1].split(['@', ',']).next().unwrap_or(f[1]);
    Some(NodeLine {
        status: RedisNodeStatus {
            id: f[0].to_string(),
            address: address.to_string(),
            role: role.to_string(),
            master_id: (f[3] != "-").then(|| f[3].to_string()),
            slots: if slots.is_empty() {
                "-".into()
            } else {
                slots.join(",")
            },
            flags: f[2].to_string(),
            connected: f[7] == "connected",
        },
        myself: has("myself"),
        config_epoch: f[6].parse().unwrap_or(0),
    })
}

/// "0-5460,5462" -> [(0, 5460), (5462, 5462)]; "-" and "[...]" (migrating) entries give nothing.
fn parse_slot_ranges(slots: &str) -> Vec<(u16, u16)> {
    slots
        .split([',', ' '])
        .filter(|s| !s.is_empty() && !s.starts_with('[') && *s != "-")
        .filter_map(|s| match s.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => s.parse().ok().map(|n| (n, n)),
        })
        .collect()
}

/// Masters first (by first slot), then replicas (in their masters' order), then the rest; ties
/// by port.
pub(super) fn sort_rows(rows: &mut [RedisNodeStatus]) {
    let first_slot = |r: &RedisNodeStatus| {
        r.slot_ranges()
            .first()
            .map_or(u32::MAX, |(a, _)| u32::from(*a))
    };
    rows.sort_by_key(|r| (r.role != "master", first_slot(r), r.port()));
    let masters: Vec<String> = rows
        .iter()
        .filter(|r| r.role == "master")
        .map(|r| r.id.clone())
        .collect();
    let rank = |r: &RedisNodeStatus| match r.role.as_str() {
        "master" => (0, 0),
        "replica" => (
            1,
            r.master_id
                .as_ref()
                .and_then(|m| masters.iter().position(|x| x == m))
                .unwrap_or(usize::MAX),
        ),
        _ => (2, 0),
    };
    rows.sort_by_key(rank); // stable: masters keep their order, replicas stay by port
}

/// The owner of `slot` across several nodes' views: the master claim with the highest config
/// epoch; None if no view has a claim or if any view flags that master as failed.
pub fn pick_slot_owner(views: &[Vec<NodeLine>], slot: u16) -> Option<String> {
    let best = views
        .iter()
        .flatten()
        .filter(|l| l.status.is_master() && l.status.owns_slot(slot))
        .max_by_key(|l| l.config_epoch)?;
    let failed = views
        .iter()
        .flatten()
        .any(|l| l.status.id == best.status.id && l.status.has_flag("fail"));
    (!failed).then(|| best.status.address.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real output, from the proposal's tutorial (CLUSTER NODES of its 6-node cluster).
    const NODES: &str = "\
21fdb1f289c80f8b469fa4b949e5bb5f71b6df98 10.0.0.14:7004@17004 slave de5b6c6cbe29e759831487e31c08317cca23008d 0 1736766603439 3 connected
911bf7ebf83c6f841436a27bafcf374d2ef7fc6c 10.0.0.16:7006@17006 slave d147d15ae692fbc54e6abe5cf0f2dd7223578915 0 1736766603957 2 connected
d147d15ae692fbc54e6abe5cf0f2dd7223578915 10.0.0.12:7002@17002 master - 0 1736766603000 2 connected 5461-10922
5ae037b9b6524a36bf5397a940a9ac564146aa55 10.0.0.15:7005@17005 slave 2eb5bd9bf11c91b0a397f90fad4b196b34908064 0 1736766603557 1 connected
de5b6c6cbe29e759831487e31c08317cca23008d 10.0.0.13:7003@17003 master - 0 1736766601894 3 connected 10923-16383
2eb5bd9bf11c91b0a397f90fad4b196b34908064 10.0.0.11:7001@17001 myself,master - 0 1736766602000 1 connected 0-5460
";

    fn rows() -> Vec<RedisNodeStatus> {
        let mut rows: Vec<RedisNodeStatus> = parse_cluster_nodes(NODES)
            .into_iter()
            .map(|l| l.status)
            .collect();
        sort_rows(&mut rows);
        rows
    }

    #[test]
    fn parses_cluster_nodes_output() {
        let lines = parse_cluster_nodes(NODES);
        assert_eq!(lines.len(), 6);
        let me = lines.iter().find(|l| l.myself).map(|l| l.status.clone());
        assert_eq!(
            me,
            Some(RedisNodeStatus {
                id: "2eb5bd9bf11c91b0a397f90fad4b196b34908064".into(),
                address: "10.0.0.11:7001".into(),
                role: "master".into(),
                master_id: None,
                slots: "0-5460".into(),
                flags: "myself,master".into(),
                connected: true,
            })
        );
        let replica = &lines[0].status;
        assert_eq!(replica.role, "replica");
        assert_eq!(replica.address, "10.0.0.14:7004");
        assert_eq!(
            replica.master_id.as_deref(),
            Some("de5b6c6cbe29e759831487e31c08317cca23008d")
        );
        assert_eq!(replica.slots, "-");
        assert_eq!(lines[4].config_epoch, 3);
    }

    #[test]
    fn sorts_masters_by_slot_then_replicas_by_master() {
        let order: Vec<(String, String)> =
            rows().into_iter().map(|r| (r.role, r.address)).collect();
        let expect = [
            ("master", "10.0.0.11:7001"),
            ("master", "10.0.0.12:7002"),
            ("master", "10.0.0.13:7003"),
            ("replica", "10.0.0.15:7005"),
            ("replica", "10.0.0.16:7006"),
            ("replica", "10.0.0.14:7004"),
        ];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(order, expect);
    }

    #[test]
    fn parses_failed_disconnected_and_migrating_nodes() {
        let text = "\
aaa 127.0.0.1:7101@17101 master,fail - 1 2 1 disconnected
bbb 127.0.0.1:7104@17104,host-b myself,master - 0 0 7 connected 0-5460 5462 [5461->-ccc]
ccc 127.0.0.1:7102@17102 slave,fail? bbb 1 2 7 connected
garbage line
ddd :0@0 noaddr,handshake - 0 0 0 disconnected
";
        let lines = parse_cluster_nodes(text);
        assert_eq!(lines.len(), 4);
        let s: Vec<&RedisNodeStatus> = lines.iter().map(|l| &l.status).collect();
        assert_eq!(
            (s[0].role.as_str(), s[0].connected, s[0].slots.as_str()),
            ("fail", false, "-")
        );
        assert!(s[0].is_master());
        assert_eq!(s[1].address, "127.0.0.1:7104");
        assert_eq!(s[1].slots, "0-5460,5462");
        assert_eq!(s[1].slot_ranges(), vec![(0, 5460), (5462, 5462)]);
        assert!(s[1].owns_slot(5462) && !s[1].owns_slot(5461) && s[1].owns_slot(0));
        assert_eq!(
            (s[2].role.as_str(), s[2].master_id.as_deref()),
            ("replica", Some("bbb"))
        );
        assert_eq!(s[3].role, "handshake");
    }

    #[test]
    fn slot_ranges_cover_the_whole_space() {
        let mut covered = 0u32;
        for r in rows().iter().filter(|r| r.role == "master") {
            for (a, b) in r.slot_ranges() {
                covered += u32::from(b) - u32::from(a) + 1;
            }
        }
        assert_eq!(covered, 16384);
        assert!(parse_slot_ranges("-").is_empty());
        assert!(parse_slot_ranges("x-1").is_empty());
    }

    #[test]
    fn formats_a_table() {
        let table = LocalRedisCluster::format_status(&rows());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 8);
        assert!(lines[0].starts_with("| Role ") && lines[0].contains("| Slot Range "));
        assert!(lines[1].starts_with("|---"));
        assert!(
            lines[2].contains("| master ")
                && lines[2].contains("10.0.0.11:7001")
                && lines[2].contains("| 0-5460")
        );
        assert!(
            lines[5].contains("| replica ")
                && lines[5].contains("2eb5bd9bf11c91b0a397f90fad4b196b34908064")
        );
        // All lines have the same width.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
    }

    #[test]
    fn slot_owner_is_the_claim_with_the_highest_epoch() {
        // The old master restarted and still claims 0-5460 at epoch 1; the promoted replica has epoch 7.
        let stale = parse_cluster_nodes(
            "old 127.0.0.1:7101@17101 myself,master - 0 0 1 connected 0-5460\n",
        );
        let fresh = parse_cluster_nodes(
            "new 127.0.0.1:7104@17104 myself,master - 0 0 7 connected 0-5460\nold 127.0.0.1:7101@17101 slave new 0 0 7 connected\n",
        );
        assert_eq!(
            pick_slot_owner(&[stale.clone(), fresh], 0).as_deref(),
            Some("127.0.0.1:7104")
        );
        // A master flagged failed by any view serves nothing; one only suspected (fail?) still does.
        let failed =
            parse_cluster_nodes("m 127.0.0.1:7101@17101 master,fail - 0 0 1 disconnected 0-5460\n");
        assert_eq!(pick_slot_owner(&[stale.clone(), failed], 0), None);
        assert_eq!(pick_slot_owner(&[stale], 9000), None);
        let pfail = parse_cluster_nodes(
            "m 127.0.0.1:7101@17101 master,fail? - 0 0 1 disconnected 0-5460\n",
        );
        assert_eq!(
            pick_slot_owner(&[pfail], 100).as_deref(),
            Some("127.0.0.1:7101")
        );
    }
}
