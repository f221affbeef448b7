//! RabbitMQ streams over the stream protocol (`rabbitmq-stream-native`), on the official
//! `rabbitmq-stream-client` crate: the protocol streams were built for (port 5552 by default),
//! beside `rabbitmq-stream`, which reaches the same kind of stream through AMQP 0-9-1.
//!
//! - Destinations are streams, or super streams of `super_stream_partitions` partition streams.
//!   A plain stream is created through a connection to the node that should lead it
//!   (destination i on node i mod nodes, `client-local`), as the AMQP backends place their
//!   queues; a super stream's partitions go where the broker's `balanced` leader locator puts
//!   them (the fewest leaders first), so they spread over the nodes.
//! - Producers publish in batches with publishing ids and confirms (`producer.rs`); consumers
//!   form one single-active-consumer group per destination and track their offsets on the
//!   broker (`consumer.rs`).
//! - Leaders and members come from the management API, as for the AMQP backends, so
//!   `leader-of` / `replica-of` faults work unchanged (`nodes.rs`).
//! - With `sub_entry_size`, messages go out as sub-entries (several per entry, one confirm
//!   each, optionally gzip-compressed), which the crate (0.11) can neither publish nor read:
//!   that entry's producers, consumers and backlog reader use the backend's own client of the
//!   stream protocol (`wire/`, `subentry_producer.rs`, `source.rs`).

mod backlog;
mod consumer;
mod leaders;
mod nodes;
mod producer;
pub mod settings;
mod source;
mod subentry_producer;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rabbitmq_stream_client::error::StreamDeleteError;
use rabbitmq_stream_client::types::{LeaderLocator, ResponseCode};
use rabbitmq_stream_client::Environment;
use tokio::sync::watch;

use super::*;
use leaders::LeaderWatch;
use nodes::{Nodes, CONNECT_TIMEOUT};
pub use settings::NativeStreamSettings;

/// How long `setup` waits for the management API to report a new stream's leader.
const PLACEMENT_TIMEOUT: Duration = Duration::from_secs(20);
/// The consumer name (offset reference) of every destination's consumer group.
pub(super) const CONSUMER_NAME: &str = "brokerbench";

pub struct NativeStreamBackend {
    settings: NativeStreamSettings,
    label: String,
    nodes: Nodes,
    leaders: Arc<LeaderWatch>,
    /// The highest offset of each stream its consumers handed out (for `backlog`).
    handed: backlog::Handed,
    /// Messages of each stream confirmed to its producers (for the consumers' stall checks).
    confirmed: backlog::Confirmed,
    /// Each stream's single-active-consumer group generation.
    groups: backlog::Groups,
}

impl NativeStreamBackend {
    /// Find the stream listeners and check that a client can connect.
    pub async fn connect(
        settings: &NativeStreamSettings,
        endpoints: &[RabbitEndpoint],
    ) -> Result<Self, BackendError> {
        let label = settings
            .label
            .clone()
            .unwrap_or_else(|| settings::TYPE_NAME.to_string());
        let connect_err = |target: &str, message: String| BackendError::Connect {
            backend: label.clone(),
            target: target.to_string(),
            message,
        };
        let mut nodes = Nodes::of_endpoints(endpoints).map_err(|m| connect_err("rabbitmq", m))?;
        nodes
            .find_stream_ports()
            .await
            .map_err(|m| connect_err("the management API", m))?;
        nodes
            .environment(0)
            .await
            .map_err(|m| connect_err("the stream protocol", m))?;
        Ok(NativeStreamBackend {
            settings: settings.clone(),
            label,
            leaders: Arc::new(LeaderWatch::new(nodes.client_options())),
            nodes,
            handed: backlog::Handed::default(),
            confirmed: backlog::Confirmed::default(),
            groups: backlog::Groups::default(),
        })
    }

    fn setup_err(&self, action: impl Into<String>, message: impl Into<String>) -> BackendError {
        BackendError::Setup {
            backend: self.label.clone(),
            action: action.into(),
            message: message.into(),
        }
    }

    /// The partition streams of destination `name` (itself for a plain stream).
    fn partition_names(&self, name: &str) -> Vec<String> {
        match self.settings.super_stream_partitions {
            Some(n) => (0..n).map(|k| format!("{name}-{k}")).collect(),
            None => vec![name.to_string()],
        }
    }

    async fn env(&self, preferred: usize) -> Result<Environment, OpError> {
        self.nodes
            .environment(preferred)
            .await
            .map(|(_, env)| env)
            .map_err(OpError::Connection)
    }

    /// Delete destination `name` if it exists (a leftover of an earlier run).
    async fn delete(&self, env: &Environment, name: &str) -> Result<(), String> {
        let deleted = if self.settings.super_stream_partitions.is_some() {
            tokio::time::timeout(CONNECT_TIMEOUT, env.delete_super_stream(name)).await
        } else {
            tokio::time::timeout(CONNECT_TIMEOUT, env.delete_stream(name)).await
        };
        match deleted {
            Ok(Ok(()))
            | Ok(Err(StreamDeleteError::Delete {
                status: ResponseCode::StreamDoesNotExist,
                ..
            })) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
        }
    }

    /// Create destination `d`: a plain stream led by node `d.index mod nodes`, or a super
    /// stream whose partitions the broker spreads.
    async fn create(&self, d: &Destination) -> Result<(), String> {
        let n = self.nodes.list.len();
        let (used, env) = self.nodes.environment(d.index % n.max(1)).await?;
        self.delete(&env, &d.name).await?;
        let created = match self.settings.super_stream_partitions {
            Some(parts) => {
                let creator = env
                    .stream_creator()
                    .leader_locator(LeaderLocator::LeastLeaders);
                tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    creator.create_super_stream(&d.name, parts, None),
                )
                .await
            }
            None => {
                if used != d.index % n.max(1) {
                    return Err(format!(
                        "its leader should be {}, which does not answer",
                        self.nodes.list[d.index % n].name
                    ));
                }
                let creator = env
                    .stream_creator()
                    .leader_locator(LeaderLocator::ClientLocal);
                tokio::time::timeout(CONNECT_TIMEOUT, creator.create(&d.name)).await
            }
        };
        match created {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
        }
    }

    /// Wait until the management API knows the leader of stream `name`: its placement.
    async fn await_leader(&self, name: &str) -> Result<(), BackendError> {
        let start = Instant::now();
        loop {
            let last = match self.nodes.placement(name).await {
                Ok(p) if !p.leader.is_empty() => return Ok(()),
                Ok(p) => format!("{p:?}"),
                Err(e) => e,
            };
            if start.elapsed() > PLACEMENT_TIMEOUT {
                return Err(self.setup_err(
                    format!("wait for the leader of stream {name}"),
                    format!("not known after {PLACEMENT_TIMEOUT:?}; last seen: {last}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The last offset of `stream` through the wire client, from a member the stream protocol
    /// advertises (a replica at random, as the crate's reader picks one).
    async fn wire_end(&self, stream: &str) -> Result<Option<u64>, String> {
        let members = self
            .leaders
            .members(stream)
            .await?
            .ok_or_else(|| format!("stream {stream} has no leader right now"))?;
        let target = self
            .nodes
            .wire_target(members.reader(), "brokerbench-backlog")?;
        backlog::read_last_offset_wire(&target, stream).await
    }

    /// The placement of stream `name` as the topology reports it.
    async fn placement(&self, name: &str) -> Result<DestinationPlacement, BackendError> {
        let p = self
            .nodes
            .placement(name)
            .await
            .map_err(|m| self.setup_err(format!("read the placement of stream {name}"), m))?;
        Ok(DestinationPlacement {
            name: name.to_string(),
            leader: (!p.leader.is_empty()).then(|| p.leader.clone()),
            replicas: p.members.into_iter().filter(|m| *m != p.leader).collect(),
            slot: None,
        })
    }
}

#[async_trait]
impl Backend for NativeStreamBackend {
    fn label(&self) -> &str {
        &self.label
    }

    fn confirms(&self) -> bool {
        self.settings.confirms
    }

    async fn setup(&self, prefix: &str, count: usize) -> Result<Vec<Destination>, BackendError> {
        let dests: Vec<Destination> = (0..count)
            .map(|i| Destination {
                index: i,
                name: format!("{prefix}-{i}"),
            })
            .collect();
        for d in &dests {
            for stream in self.partition_names(&d.name) {
                self.handed.forget(&stream);
                self.confirmed.forget(&stream);
                self.groups.forget(&stream);
            }
            self.create(d).await.map_err(|m| {
                self.setup_err(format!("create stream {} (stream protocol)", d.name), m)
            })?;
        }
        let names: Vec<String> = dests
            .iter()
            .flat_map(|d| self.partition_names(&d.name))
            .collect();
        for r in futures::future::join_all(names.iter().map(|s| self.await_leader(s))).await {
            r?;
        }
        Ok(dests)
    }

    async fn teardown(&self, destinations: &[Destination]) -> Result<(), BackendError> {
        let (_, env) = self
            .nodes
            .environment(0)
            .await
            .map_err(|m| self.setup_err("connect to delete the streams", m))?;
        let mut errors = Vec::new();
        for d in destinations {
            if let Err(e) = self.delete(&env, &d.name).await {
                errors.push(format!("delete stream {}: {e}", d.name));
            }
            for stream in self.partition_names(&d.name) {
                self.handed.forget(&stream);
                self.confirmed.forget(&stream);
                self.groups.forget(&stream);
            }
        }
        self.leaders.close().await;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(self.setup_err("teardown", errors.join("; ")))
        }
    }

    async fn producer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Producer>, OpError> {
        if self.settings.sub_entry_size.is_some() {
            let streams = self.partition_names(&dest.name);
            return Ok(Box::new(
                subentry_producer::open(self, streams, index).await?,
            ));
        }
        let env = self.env(index).await?;
        let (closed, dead) = watch::channel(false);
        let closed = Arc::new(closed);
        let mut parts = Vec::new();
        for stream in self.partition_names(&dest.name) {
            let build = env
                .producer()
                .batch_size(self.settings.batch_size)
                .client_provided_name(&format!("brokerbench-producer-{index}"))
                .on_closed(Box::new(producer::Closed(closed.clone())))
                .build(&stream);
            let p = match tokio::time::timeout(CONNECT_TIMEOUT, build).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    return Err(OpError::Connection(format!(
                        "open a producer on stream {stream}: {e}"
                    )))
                }
                Err(_) => {
                    return Err(OpError::Connection(format!(
                        "open a producer on stream {stream}: no answer within {CONNECT_TIMEOUT:?}"
                    )))
                }
            };
            parts.push(producer::Partition {
                confirmed: self.confirmed.counter(&stream),
                stream,
                producer: p,
                next_id: 0,
            });
        }
        Ok(Box::new(producer::NativeProducer {
            next_part: index % parts.len().max(1),
            parts,
            confirms: self.settings.confirms,
            dead,
            failed: false,
            cancelled: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            stall: producer::ConfirmStall::new(Arc::new(AtomicU64::new(0))),
        }))
    }

    async fn consumer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Consumer>, OpError> {
        // The crate's environment; an entry with sub-entries reads through the wire client.
        let env = match self.settings.sub_entry_size {
            None => Some(self.env(index).await?),
            Some(_) => None,
        };
        let mut parts: Vec<consumer::Partition> = Vec::new();
        for stream in self.partition_names(&dest.name) {
            // The leader before subscribing: if it moves later, the consumer sees it.
            let members = match self.leaders.members(&stream).await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    close_all(parts, &self.leaders).await;
                    return Err(OpError::Unavailable(format!(
                        "stream {stream} has no leader right now"
                    )));
                }
                Err(e) => {
                    close_all(parts, &self.leaders).await;
                    return Err(OpError::Connection(e));
                }
            };
            let generation = self.groups.generation(&stream);
            let group = source::Group {
                name: backlog::group_name(CONSUMER_NAME, generation),
                earlier: (0..generation)
                    .rev()
                    .map(|g| backlog::group_name(CONSUMER_NAME, g))
                    .collect(),
                start: Arc::new(AtomicU64::new(0)),
                active: Arc::new(AtomicBool::new(false)),
            };
            let opened = match &env {
                Some(env) => source::open_crate(env, &stream, &group, index).await,
                None => {
                    let name = format!("brokerbench-consumer-{index}");
                    match self.nodes.wire_target(members.reader(), &name) {
                        Ok(target) => source::open_wire(&target, &stream, &group).await,
                        Err(e) => Err(OpError::Connection(e)),
                    }
                }
            };
            let source = match opened {
                Ok(s) => s,
                Err(e) => {
                    close_all(parts, &self.leaders).await;
                    return Err(e);
                }
            };
            let handed_then = self.handed.get(&stream);
            let confirmed = self.confirmed.counter(&stream);
            parts.push(consumer::Partition {
                confirmed,
                stream,
                source,
                leader: members.leader,
                start: group.start,
                acked: None,
                since_store: 0,
                silent_since: Instant::now(),
                handed_then,
                generation,
                group: group.name,
                active: group.active,
            });
        }
        Ok(Box::new(consumer::NativeConsumer {
            parts,
            store_every: self.settings.store_offset_every,
            next_first: 0,
            leaders: self.leaders.clone(),
            checked: Instant::now(),
            handed: self.handed.clone(),
            groups: self.groups.clone(),
        }))
    }

    /// Each destination with the leader and members of its stream (of its first partition for
    /// a super stream: that is what `leader-of` / `replica-of` act on), then, for a super
    /// stream, every partition as its own entry.
    async fn topology(&self, destinations: &[Destination]) -> Result<Topology, BackendError> {
        let nodes = (0..self.nodes.list.len())
            .map(|i| NodeView {
                name: self.nodes.list[i].name.clone(),
                address: self.nodes.address(i),
                role: "node".into(),
            })
            .collect();
        let mut placements = Vec::new();
        let mut partitions = Vec::new();
        for d in destinations {
            let names = self.partition_names(&d.name);
            let mut first = self.placement(&names[0]).await?;
            first.name = d.name.clone();
            placements.push(first);
            if self.settings.super_stream_partitions.is_some() {
                for name in &names {
                    partitions.push(self.placement(name).await?);
                }
            }
        }
        placements.extend(partitions);
        Ok(Topology {
            nodes,
            destinations: placements,
        })
    }

    /// Entries after the highest offset the consumers handed out, summed over every
    /// partition stream (`backlog.rs`).
    async fn backlog(&self, destinations: &[Destination]) -> Result<Option<Backlog>, BackendError> {
        let env = match self.settings.sub_entry_size {
            None => Some(
                self.nodes
                    .environment(0)
                    .await
                    .map_err(|m| self.setup_err("connect to read the streams' ends", m))?
                    .1,
            ),
            Some(_) => None,
        };
        let streams: Vec<String> = destinations
            .iter()
            .flat_map(|d| self.partition_names(&d.name))
            .collect();
        let ends = futures::future::join_all(streams.iter().map(|s| {
            let confirmed = self
                .confirmed
                .counter(s)
                .load(std::sync::atomic::Ordering::Relaxed);
            let handed = self.handed.get(s).map_or(0, |h| h + 1);
            let env = env.as_ref();
            async move {
                match env {
                    Some(env) => {
                        let read = || backlog::read_last_offset(env, s);
                        backlog::last_offset(read, confirmed > handed).await
                    }
                    None => backlog::last_offset(|| self.wire_end(s), confirmed > handed).await,
                }
            }
        }));
        let mut total = Backlog::default();
        let ends = ends.await;
        for (stream, last) in streams.iter().zip(ends) {
            let last = last.map_err(|m| self.setup_err("read the backlog", m))?;
            total.ready += backlog::ready(last, self.handed.get(stream));
        }
        Ok(Some(total))
    }

    async fn version(&self) -> Option<String> {
        self.nodes
            .mgmt
            .call(|c| async move { c.version().await })
            .await
            .ok()
    }
}

async fn close_all(parts: Vec<consumer::Partition>, leaders: &Arc<LeaderWatch>) {
    Box::new(consumer::NativeConsumer {
        parts,
        store_every: 1,
        next_first: 0,
        leaders: leaders.clone(),
        checked: Instant::now(),
        handed: backlog::Handed::default(),
        groups: backlog::Groups::default(),
    })
    .close()
    .await;
}
