//! What a consumer's partition reads from: the crate's consumer (entries without sub-entries),
//! or a subscription of the backend's own client (`wire/`, entries with `sub_entry_size`: their
//! streams hold sub-entries, which the crate cannot decode). Both join the stream's single
//! active consumer group the same way: the consumer that becomes active starts after the offset
//! stored under the group's name (`consumer::resume_from`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::types::{Delivery, OffsetSpecification, ResponseCode};
use rabbitmq_stream_client::{Consumer as ClientConsumer, Environment};

use super::consumer::{resume_from, Stored};
use super::nodes::CONNECT_TIMEOUT;
use super::wire::gzip::GzipReader;
use super::wire::subscription::{self, Event, OffsetSpec, OnActivate, Subscription};
use super::wire::Target;
use crate::backend::OpError;
use crate::clock::within;

/// Chunks a wire subscription may have in flight; one more is allowed per chunk taken.
const WIRE_CREDIT: u16 = 10;

/// A partition's place in its stream's single active consumer group.
#[derive(Clone)]
pub(super) struct Group {
    /// The group's name (its offset reference), and the earlier generations' names, newest
    /// first (`backlog::Groups`).
    pub name: String,
    pub earlier: Vec<String>,
    /// Where the consumer started when it became active (deliveries below are dropped).
    pub start: Arc<AtomicU64>,
    /// Whether the broker made it the group's active consumer.
    pub active: Arc<AtomicBool>,
}

impl Group {
    /// This group's name, then the earlier generations'.
    fn names(&self) -> Vec<String> {
        std::iter::once(self.name.clone())
            .chain(self.earlier.iter().cloned())
            .collect()
    }
}

pub(super) enum Source {
    Crate(ClientConsumer),
    Wire(Box<WireSource>),
}

pub(super) struct WireSource {
    sub: Subscription,
    gunzip: GzipReader,
    /// Why the subscription ended, once it did.
    ended: Option<String>,
}

/// What one poll of a source gave.
pub(super) enum Polled {
    /// One message (the crate).
    One(Delivery),
    /// One chunk (the wire client), to decode with `Source::gunzip`.
    Chunk(Bytes),
    /// The subscription ended (its connection closed, the broker cancelled it).
    Ended(String),
}

fn open_err(stream: &str, e: impl std::fmt::Display) -> OpError {
    OpError::Connection(format!("open a consumer on stream {stream}: {e}"))
}

/// A crate consumer in `group` on `stream`, from `env`.
pub(super) async fn open_crate(
    env: &Environment,
    stream: &str,
    group: &Group,
    index: usize,
) -> Result<Source, OpError> {
    let g = group.clone();
    let build = env
        .consumer()
        .name(&group.name)
        .enable_single_active_consumer(true)
        .offset(OffsetSpecification::First)
        .client_provided_name(&format!("brokerbench-consumer-{index}"))
        .consumer_update(move |active, ctx| {
            let g = g.clone();
            g.active.store(active != 0, Ordering::Relaxed);
            // The listener's future must be Sync: run it as a task, await its handle.
            let decided = tokio::spawn(async move {
                if active == 0 {
                    return OffsetSpecification::Next;
                }
                let (client, stream) = (ctx.client(), ctx.stream());
                let from = resume_from(g.names(), &g.start, |name| {
                    let (client, stream) = (client.clone(), stream.clone());
                    async move {
                        match client.query_offset(name, &stream).await {
                            Ok(o) => Stored::At(o),
                            Err(ClientError::RequestError(ResponseCode::OffsetNotFound)) => {
                                Stored::None
                            }
                            Err(_) => Stored::Unknown,
                        }
                    }
                })
                .await;
                match from {
                    0 => OffsetSpecification::First,
                    o => OffsetSpecification::Offset(o),
                }
            });
            async move { decided.await.unwrap_or(OffsetSpecification::First) }
        })
        .build(stream);
    within(CONNECT_TIMEOUT, build)
        .await
        .map(Source::Crate)
        .map_err(|e| open_err(stream, e))
}

/// A wire subscription in `group` on `stream`, through `target` (a member of the stream).
pub(super) async fn open_wire(
    target: &Target,
    stream: &str,
    group: &Group,
) -> Result<Source, OpError> {
    let (g, name_of_stream) = (group.clone(), stream.to_string());
    let on_activate: OnActivate = Arc::new(move |active, req| {
        let (g, stream) = (g.clone(), name_of_stream.clone());
        g.active.store(active, Ordering::Relaxed);
        Box::pin(async move {
            if !active {
                return OffsetSpec::Next;
            }
            let from = resume_from(g.names(), &g.start, |name| {
                let (req, stream) = (req.clone(), stream.clone());
                async move {
                    match subscription::query_offset(&req, &name, &stream).await {
                        Ok(Some(o)) => Stored::At(o),
                        Ok(None) => Stored::None,
                        Err(_) => Stored::Unknown,
                    }
                }
            })
            .await;
            match from {
                0 => OffsetSpec::First,
                o => OffsetSpec::Offset(o),
            }
        })
    });
    let group = subscription::Group {
        name: group.name.clone(),
        on_activate,
    };
    let opened = Subscription::open(target, stream, OffsetSpec::First, WIRE_CREDIT, Some(group));
    let sub = within(CONNECT_TIMEOUT, opened)
        .await
        .map_err(|e| open_err(stream, e))?;
    Ok(Source::Wire(Box::new(WireSource {
        sub,
        gunzip: GzipReader::default(),
        ended: None,
    })))
}

impl Source {
    /// The next delivery, chunk or end, if one is ready.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Polled> {
        match self {
            Source::Crate(c) => c.poll_next_unpin(cx).map(|item| match item {
                None => Polled::Ended("its connection closed".into()),
                Some(Err(e)) => Polled::Ended(e.to_string()),
                Some(Ok(d)) => Polled::One(d),
            }),
            Source::Wire(w) => {
                if let Some(why) = &w.ended {
                    return Poll::Ready(Polled::Ended(why.clone()));
                }
                let why = match w.sub.poll_event(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Event::Chunk(c))) => return Poll::Ready(Polled::Chunk(c)),
                    Poll::Ready(Some(Event::Ended(e))) => e.to_string(),
                    Poll::Ready(None) => "its connection closed".to_string(),
                };
                // Sticky: a poll that ends early on it reports it the next time.
                w.ended = Some(why.clone());
                Poll::Ready(Polled::Ended(why))
            }
        }
    }

    /// A wire source's gzip reader, for its chunks (None for the crate's consumer).
    pub fn gunzip(&mut self) -> Option<&mut GzipReader> {
        match self {
            Source::Crate(_) => None,
            Source::Wire(w) => Some(&mut w.gunzip),
        }
    }

    /// A chunk was taken: the broker may send one more (a wire source; errors show as its end).
    pub fn chunk_taken(&self) {
        if let Source::Wire(w) = self {
            let _ = w.sub.credit(1);
        }
    }

    /// Store `offset` under the group's name `reference` for `stream`.
    pub async fn store_offset(
        &self,
        reference: &str,
        stream: &str,
        offset: u64,
    ) -> Result<(), String> {
        match self {
            Source::Crate(c) => c.store_offset(offset).await.map_err(|e| e.to_string()),
            Source::Wire(w) => w
                .sub
                .store_offset(reference, stream, offset)
                .map_err(|e| e.to_string()),
        }
    }

    /// Unsubscribe and close (the caller bounds the time).
    pub async fn close(&self) {
        match self {
            Source::Crate(c) => {
                let _ = c.handle().close().await;
            }
            Source::Wire(w) => w.sub.close().await,
        }
    }

    /// Close in a task of its own, when dropped without `close`: the crate's consumer keeps its
    /// connection (and its place in the group) until closed; a wire subscription closes its
    /// socket when dropped.
    pub fn close_when_dropped(&self, within: Duration) {
        if let Source::Crate(c) = self {
            let handle = c.handle();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = tokio::time::timeout(within, handle.close()).await;
                });
            }
        }
    }
}
