//! `brokerbench cluster up|down|status`: a local Redis Cluster or RabbitMQ cluster on its own,
//! for the tutorial commands and for poking at a broker by hand.

use std::path::Path;

use anyhow::Context;

use crate::cli::{ClusterAction, ClusterKind};
use crate::cluster::rabbitmq::{LocalRabbitCluster, RabbitClusterConfig};
use crate::cluster::redis::{LocalRedisCluster, RedisClusterConfig};
use crate::scenario::{self, AppendFsync, ClusterSection};

fn progress(line: &str) {
    crate::errln!("  {line}");
}

pub async fn cluster(action: ClusterAction) -> anyhow::Result<()> {
    match action {
        ClusterAction::Up {
            kind,
            at,
            scenario: file,
            base_port,
            node_timeout_ms,
            appendonly,
            appendfsync,
            save,
            amqp_base_port,
        } => {
            let dir = at.resolve(kind);
            let section_kind = match kind {
                ClusterKind::Redis => scenario::ClusterKind::Redis,
                ClusterKind::Rabbitmq => scenario::ClusterKind::Rabbitmq,
            };
            let section = match &file {
                Some(f) => match scenario::load(f)?.clusters.only_of(section_kind) {
                    Ok((_, section)) => section,
                    Err(names) => anyhow::bail!(
                        "{}: {} {} clusters ({}); `cluster up` starts one: keep only its section in a copy of the file",
                        f.display(),
                        names.len(),
                        section_kind.product(),
                        names.join(", ")
                    ),
                },
                None => ClusterSection::default_of(section_kind),
            };
            match section {
                ClusterSection::Redis(mut s) => {
                    let s = &mut s;
                    if let Some(p) = base_port {
                        s.base_port = p;
                    }
                    if let Some(t) = node_timeout_ms {
                        s.node_timeout_ms = t;
                    }
                    if let Some(a) = appendonly {
                        s.appendonly = a;
                    }
                    if let Some(f) = appendfsync {
                        s.appendfsync = match f.as_str() {
                            "no" => AppendFsync::No,
                            "everysec" => AppendFsync::Everysec,
                            "always" => AppendFsync::Always,
                            other => {
                                anyhow::bail!("--appendfsync {other}: use no, everysec or always")
                            }
                        };
                    }
                    if let Some(r) = save {
                        s.save = r;
                    }
                    let c = LocalRedisCluster::up(
                        RedisClusterConfig::from_section(dir.clone(), s),
                        &progress,
                    )
                    .await?;
                    crate::outln!(
                        "Redis Cluster up in {} (stop it with `brokerbench cluster down redis{}`)",
                        dir.display(),
                        dir_flag(&at.dir)
                    );
                    crate::outln!("{}", LocalRedisCluster::format_status(&c.status().await?));
                }
                ClusterSection::Rabbitmq(mut s) => {
                    let s = &mut s;
                    if let Some(p) = amqp_base_port {
                        s.amqp_base_port = p;
                    }
                    let c = LocalRabbitCluster::up(
                        RabbitClusterConfig::from_section(dir.clone(), s),
                        &progress,
                    )
                    .await?;
                    crate::outln!("RabbitMQ cluster up in {} (stop it with `brokerbench cluster down rabbitmq{}`)", dir.display(), dir_flag(&at.dir));
                    for e in c.endpoints() {
                        crate::outln!("  {}  {}  management http://{}", e.node, e.amqp_uri, e.http);
                    }
                }
            }
            Ok(())
        }
        ClusterAction::Down { kind, at } => {
            let dir = at.resolve(kind);
            match kind {
                ClusterKind::Redis => {
                    LocalRedisCluster::attach(&dir)
                        .with_context(|| no_cluster(&dir))?
                        .down()
                        .await?
                }
                ClusterKind::Rabbitmq => {
                    LocalRabbitCluster::attach(&dir)
                        .with_context(|| no_cluster(&dir))?
                        .down()
                        .await?
                }
            }
            crate::outln!("stopped the cluster in {}", dir.display());
            Ok(())
        }
        ClusterAction::Status { kind, at } => {
            let dir = at.resolve(kind);
            match kind {
                ClusterKind::Redis => {
                    let c = LocalRedisCluster::attach(&dir).with_context(|| no_cluster(&dir))?;
                    crate::outln!("{}", LocalRedisCluster::format_status(&c.status().await?));
                }
                ClusterKind::Rabbitmq => {
                    let c = LocalRabbitCluster::attach(&dir).with_context(|| no_cluster(&dir))?;
                    crate::outln!("{}", LocalRabbitCluster::format_status(&c.status().await?));
                }
            }
            Ok(())
        }
    }
}

fn dir_flag(dir: &Option<std::path::PathBuf>) -> String {
    dir.as_ref()
        .map(|d| format!(" --dir {}", d.display()))
        .unwrap_or_default()
}

fn no_cluster(dir: &Path) -> String {
    format!(
        "no cluster state in {} (was `brokerbench cluster up` run with this --dir?)",
        dir.display()
    )
}
