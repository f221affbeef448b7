//! A subscription on a connection of its own: subscribe (offset specification, initial credit,
//! and for a single active consumer group its `single-active-consumer` and `name` properties),
//! chunks as they come (the owner gives one credit back per chunk it took), consumer updates
//! answered with the offset specification the owner's callback decides, stored and queried
//! offsets, unsubscribe. A metadata update for the stream (its leader moved, or it went) or
//! the connection's end closes the subscription: the owner reopens it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::chunk::split_deliver;
use super::connection::{OnPush, Push, Requester};
use super::frame::{code, code_name, key, FrameWriter};
use super::{Connection, Target, WireError};

/// The one subscription of each connection.
const SUBSCRIPTION_ID: u8 = 0;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    First,
    Last,
    Next,
    Offset(u64),
}

impl OffsetSpec {
    fn put(self, f: &mut FrameWriter) {
        match self {
            OffsetSpec::First => f.u16(1),
            OffsetSpec::Last => f.u16(2),
            OffsetSpec::Next => f.u16(3),
            OffsetSpec::Offset(o) => f.u16(4).u64(o),
        };
    }
}

/// What a subscription yields.
#[derive(Debug)]
pub enum Event {
    /// A chunk (the Deliver's bytes after the subscription id).
    Chunk(Bytes),
    /// The subscription ended; nothing follows.
    Ended(WireError),
}

/// Decides where the consumer starts when the broker makes it its group's active consumer
/// (`true`; `false`: it stepped down), with a requester to query stored offsets.
pub type OnActivate =
    Arc<dyn Fn(bool, Requester) -> Pin<Box<dyn Future<Output = OffsetSpec> + Send>> + Send + Sync>;

/// A single active consumer group to join.
pub struct Group {
    pub name: String,
    pub on_activate: OnActivate,
}

pub struct Subscription {
    conn: Connection,
    events: mpsc::UnboundedReceiver<Event>,
}

/// The answer to a consumer update: the offset specification to start from.
fn consumer_update_answer(correlation: u32, spec: OffsetSpec) -> Bytes {
    let mut f = FrameWriter::new(key::CONSUMER_UPDATE | key::RESPONSE, 16);
    f.u32(correlation).u16(code::OK);
    spec.put(&mut f);
    f.finish()
}

impl Subscription {
    /// Connect to `target` (a member of `stream`) and subscribe from `offset` with `credit`
    /// chunks, alone or in `group`.
    pub async fn open(
        target: &Target,
        stream: &str,
        offset: OffsetSpec,
        credit: u16,
        group: Option<Group>,
    ) -> Result<Subscription, WireError> {
        let (tx, events) = mpsc::unbounded_channel();
        let name = group.as_ref().map(|g| g.name.clone());
        let on_activate = group.map(|g| g.on_activate);
        let on_push: OnPush = {
            let stream = stream.to_string();
            Box::new(move |push: Push, req: &Requester| match push {
                Push::Deliver(body) => {
                    let _ = match split_deliver(body) {
                        Ok((_, chunk)) => tx.send(Event::Chunk(chunk)),
                        Err(e) => tx.send(Event::Ended(e)),
                    };
                }
                Push::ConsumerUpdate {
                    correlation,
                    active,
                    ..
                } => {
                    let req = req.clone();
                    let decide = on_activate.clone();
                    tokio::spawn(async move {
                        let spec = match decide {
                            Some(f) => f(active, req.clone()).await,
                            None => OffsetSpec::Next,
                        };
                        let _ = req.send(consumer_update_answer(correlation, spec));
                    });
                }
                Push::MetadataUpdate { code, stream: s } if s == stream => {
                    let _ = tx.send(Event::Ended(WireError::Closed {
                        addr: req.addr().to_string(),
                        reason: format!(
                            "the broker cancelled the subscription to stream {s} (metadata \
                             update: {})",
                            code_name(code)
                        ),
                    }));
                }
                Push::Closed(e) => {
                    let _ = tx.send(Event::Ended(e));
                }
                _ => {}
            })
        };
        let conn = Connection::open(target, on_push).await?;
        conn.requester()
            .request_ok("subscribe", |id| {
                let mut f = FrameWriter::new(key::SUBSCRIBE, 64 + stream.len());
                f.u32(id).u8(SUBSCRIPTION_ID).str(stream);
                offset.put(&mut f);
                f.u16(credit);
                if let Some(name) = &name {
                    f.map(&[("single-active-consumer", "true"), ("name", name.as_str())]);
                }
                f.finish()
            })
            .await?;
        Ok(Subscription { conn, events })
    }

    /// The next event, if one is ready.
    pub fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }

    /// Allow the broker `n` more chunks.
    pub fn credit(&self, n: u16) -> Result<(), WireError> {
        let mut f = FrameWriter::new(key::CREDIT, 3);
        f.u8(SUBSCRIPTION_ID).u16(n);
        self.conn.requester().send(f.finish())
    }

    /// Store `offset` under `reference` for `stream` (the broker does not answer).
    pub fn store_offset(
        &self,
        reference: &str,
        stream: &str,
        offset: u64,
    ) -> Result<(), WireError> {
        let mut f = FrameWriter::new(key::STORE_OFFSET, 16 + reference.len() + stream.len());
        f.str(reference).str(stream).u64(offset);
        self.conn.requester().send(f.finish())
    }

    pub fn requester(&self) -> &Requester {
        self.conn.requester()
    }

    /// Unsubscribe and close the connection (best effort, each step bounded); dropping the
    /// subscription closes the socket anyway.
    pub async fn close(&self) {
        let req = self.conn.requester();
        if req.closed().is_none() {
            let _ = req
                .request_ok("unsubscribe", |id| {
                    let mut f = FrameWriter::new(key::UNSUBSCRIBE, 8);
                    f.u32(id).u8(SUBSCRIPTION_ID);
                    f.finish()
                })
                .await;
            let _ = req
                .request("close", |id| {
                    let mut f = FrameWriter::new(key::CLOSE, 32);
                    f.u32(id).u16(code::OK).str("brokerbench is done");
                    f.finish()
                })
                .await;
        }
    }
}

/// The offset stored under `reference` for `stream` (None: none is).
pub async fn query_offset(
    req: &Requester,
    reference: &str,
    stream: &str,
) -> Result<Option<u64>, WireError> {
    let mut r = req
        .request("query offset", |id| {
            let mut f = FrameWriter::new(key::QUERY_OFFSET, 16 + reference.len() + stream.len());
            f.u32(id).str(reference).str(stream);
            f.finish()
        })
        .await?;
    match r.u16()? {
        code::OK => Ok(Some(r.u64()?)),
        code::OFFSET_NOT_FOUND => Ok(None),
        c => Err(WireError::Refused {
            request: "query offset",
            addr: req.addr().to_string(),
            code: c,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::FrameReader;
    use super::*;

    #[test]
    fn a_consumer_update_is_answered_with_its_offset_specification() {
        for (spec, tail) in [
            (OffsetSpec::First, vec![0, 1]),
            (OffsetSpec::Next, vec![0, 3]),
            (OffsetSpec::Offset(258), vec![0, 4, 0, 0, 0, 0, 0, 0, 1, 2]),
        ] {
            let f = consumer_update_answer(77, spec);
            let mut r = FrameReader::new(f.slice(4..), "answer");
            assert_eq!(r.u16().expect("key"), 0x801a);
            assert_eq!(r.u16().expect("version"), 1);
            assert_eq!(r.u32().expect("correlation"), 77);
            assert_eq!(r.u16().expect("code"), code::OK);
            assert_eq!(r.rest().as_ref(), tail.as_slice(), "{spec:?}");
        }
    }
}
