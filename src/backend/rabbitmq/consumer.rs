//! The consumer: one connection, one channel with `basic.qos` and `basic.consume`, and acks
//! planned so that a `multiple` ack never covers a delivery still being processed. A stream
//! consumer records the offsets it hands out, for where its next open starts; every consumer
//! keeps its gauge (deliveries handed out, not acked) up to date once per batch, for `backlog`.
//!
//! Deliveries are handed out in the order the channel received them: a consumer never reorders
//! what it gets (the broker may: a quorum queue delivers returned messages before the others).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};

use super::backlog::ConsumerGauge;
use super::connection::{channel_error, close_connection, open_error, CLOSE_TIMEOUT};
use super::offsets::{stream_offset, StreamOffsets, STREAM_OFFSET};
use super::{QueueKind, RabbitBackend};
use crate::backend::{AckToken, Consumer, Delivery, Destination, OpError};
use crate::scenario::AckMode;

/// How long `poll` waits for the first delivery.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// At most this many deliveries per `poll`.
const POLL_MAX: usize = 1000;

/// Plan the `basic.ack`s for `tags` on a channel whose delivered-but-unacked tags are
/// `outstanding`. Returns (delivery tag, multiple) pairs. The longest run at the start of
/// `outstanding` that is entirely being acked goes in one `multiple=true` ack on its highest
/// tag; every other tag gets its own ack. Tags that are not outstanding (unknown or already
/// acked) are skipped: acking them would make the broker close the channel.
pub fn plan_acks(outstanding: &BTreeSet<u64>, tags: &[u64]) -> Vec<(u64, bool)> {
    let want: BTreeSet<u64> = tags
        .iter()
        .copied()
        .filter(|t| outstanding.contains(t))
        .collect();
    let mut plan = Vec::new();
    let mut prefix_end = None;
    let mut prefix_len = 0usize;
    for t in outstanding {
        if want.contains(t) {
            prefix_end = Some(*t);
            prefix_len += 1;
        } else {
            break;
        }
    }
    if let Some(end) = prefix_end {
        plan.push((end, prefix_len > 1));
    }
    plan.extend(
        want.iter()
            .filter(|t| prefix_end.is_none_or(|end| **t > end))
            .map(|t| (*t, false)),
    );
    plan
}

impl RabbitBackend {
    /// `Backend::consumer`: a connection to the node the `connect` placement picks for consumer
    /// `index` (or the next ones if it refuses), and a channel consuming `dest`.
    pub(super) async fn open_consumer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Consumer>, OpError> {
        let leader = self.leader_of(dest).await;
        let target = self
            .settings
            .connect
            .node_for(index, self.nodes.len(), leader);
        let purpose = format!("consumer {index} on {}", dest.name);
        let (conn, channel, node) = self.open_channel(target, true, &purpose).await?;
        let node = self.nodes[node].name.clone();
        let context = format!(
            "{}: consumer {index} on queue {} via {node}",
            self.label, dest.name
        );
        let auto = self.settings.ack == AckMode::Auto;
        // Streams refuse no-ack consumers: there the consumer acks by itself instead.
        let no_ack = auto && self.kind != QueueKind::Stream;
        let self_ack = auto && self.kind == QueueKind::Stream;
        let mut args = FieldTable::default();
        let stream = self.kind == QueueKind::Stream;
        if stream {
            args.insert(
                ShortString::from(STREAM_OFFSET),
                self.stream_offsets.start_argument(&dest.name, index),
            );
        }
        let opened = async {
            channel
                .basic_qos(self.settings.prefetch, BasicQosOptions::default())
                .await
                .map_err(|e| open_error(&context, "basic.qos", e))?;
            channel
                .basic_consume(
                    dest.name.as_str().into(),
                    format!("brokerbench-{index}").into(),
                    BasicConsumeOptions {
                        no_ack,
                        ..Default::default()
                    },
                    args,
                )
                .await
                .map_err(|e| open_error(&context, "basic.consume", e))
        };
        let consumer = match opened.await {
            Ok(c) => c,
            Err(e) => {
                close_connection(&conn).await;
                return Err(e);
            }
        };
        Ok(Box::new(RabbitConsumer {
            conn,
            channel,
            consumer,
            manual: !auto,
            self_ack,
            outstanding: BTreeSet::new(),
            pending_error: None,
            offsets: stream.then(|| (self.stream_offsets.clone(), (dest.name.clone(), index))),
            last_offset: None,
            gauge: self.consumer_gauges.register(&dest.name),
            context,
        }))
    }
}

struct RabbitConsumer {
    conn: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    /// The harness acks (tokens are handed out).
    manual: bool,
    /// Auto-ack on a stream: the consumer acks what it hands out by itself.
    self_ack: bool,
    /// Delivered but not yet acked delivery tags (manual mode).
    outstanding: BTreeSet<u64>,
    /// An error seen after some deliveries were already collected: reported by the next poll.
    pending_error: Option<OpError>,
    /// Streams only: the backend's offsets and this consumer's key in them.
    offsets: Option<(StreamOffsets, (String, usize))>,
    /// Streams only: the highest offset handed out by the current poll.
    last_offset: Option<i64>,
    /// Deliveries handed out and not acked, as `backlog` reads them; dropped with the consumer.
    gauge: Arc<ConsumerGauge>,
    context: String,
}

impl RabbitConsumer {
    fn take(&mut self, d: lapin::message::Delivery, out: &mut Vec<Delivery>, highest: &mut u64) {
        *highest = (*highest).max(d.delivery_tag);
        if self.offsets.is_some() {
            if let Some(o) = stream_offset(d.properties.headers().as_ref()) {
                self.last_offset = Some(self.last_offset.map_or(o, |l| l.max(o)));
            }
        }
        let token = if self.manual {
            self.outstanding.insert(d.delivery_tag);
            AckToken::Tag(d.delivery_tag)
        } else {
            AckToken::None
        };
        out.push(Delivery {
            payload: Bytes::from(d.data),
            redelivered: d.redelivered,
            token,
        });
    }

    /// The channel failed: the broker requeues what it held, so the gauge no longer counts.
    fn stream_error(&self, e: Option<lapin::Error>) -> OpError {
        self.gauge.closed();
        match e {
            Some(e) => channel_error(&self.context, "consume", e),
            None => OpError::Connection(format!(
                "{}: the broker cancelled the consumer",
                self.context
            )),
        }
    }

    fn ack_error(&self, e: lapin::Error) -> OpError {
        self.gauge.closed();
        channel_error(&self.context, "basic.ack", e)
    }
}

#[async_trait]
impl Consumer for RabbitConsumer {
    async fn poll(&mut self, out: &mut Vec<Delivery>) -> Result<(), OpError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        let mut highest = 0u64;
        match tokio::time::timeout(POLL_WAIT, self.consumer.next()).await {
            Err(_) => return Ok(()),
            Ok(Some(Ok(d))) => self.take(d, out, &mut highest),
            Ok(Some(Err(e))) => return Err(self.stream_error(Some(e))),
            Ok(None) => return Err(self.stream_error(None)),
        }
        for _ in 1..POLL_MAX {
            match self.consumer.next().now_or_never() {
                Some(Some(Ok(d))) => self.take(d, out, &mut highest),
                Some(Some(Err(e))) => {
                    self.pending_error = Some(self.stream_error(Some(e)));
                    break;
                }
                Some(None) => {
                    self.pending_error = Some(self.stream_error(None));
                    break;
                }
                None => break,
            }
        }
        // What was handed out counts even if the poll then fails.
        if let (Some((offsets, key)), Some(o)) = (&self.offsets, self.last_offset.take()) {
            offsets.record(key, o);
        }
        if self.pending_error.is_none() {
            self.gauge.set_unacked(self.outstanding.len());
        }
        if self.self_ack && highest > 0 && self.pending_error.is_none() {
            self.channel
                .basic_ack(highest, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| self.ack_error(e))?;
        }
        Ok(())
    }

    async fn ack(&mut self, tokens: &[AckToken]) -> Result<(), OpError> {
        if !self.manual {
            return Ok(());
        }
        let mut tags = Vec::with_capacity(tokens.len());
        for t in tokens {
            match t {
                AckToken::Tag(tag) => tags.push(*tag),
                AckToken::None => {}
                other @ (AckToken::Id(_) | AckToken::StreamEntry { .. }) => {
                    return Err(OpError::Protocol(format!(
                        "{}: ack token {other:?} is not an AMQP delivery tag",
                        self.context
                    )));
                }
            }
        }
        for (tag, multiple) in plan_acks(&self.outstanding, &tags) {
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple })
                .await
                .map_err(|e| self.ack_error(e))?;
            if multiple {
                self.outstanding = self.outstanding.split_off(&(tag + 1));
            } else {
                self.outstanding.remove(&tag);
            }
        }
        self.gauge.set_unacked(self.outstanding.len());
        Ok(())
    }

    async fn close(self: Box<Self>) {
        // Nothing is acked on close: RabbitMQ requeues the channel's unacked deliveries.
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            self.channel.close(200, "brokerbench done".into()),
        )
        .await;
        close_connection(&self.conn).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tags: &[u64]) -> BTreeSet<u64> {
        tags.iter().copied().collect()
    }

    #[test]
    fn contiguous_run_is_one_multiple_ack() {
        let outstanding = set(&[1, 2, 3, 4, 5]);
        assert_eq!(plan_acks(&outstanding, &[3, 1, 2, 4, 5]), vec![(5, true)]);
        assert_eq!(plan_acks(&outstanding, &[1, 2, 3]), vec![(3, true)]);
        assert_eq!(plan_acks(&outstanding, &[1]), vec![(1, false)]);
    }

    #[test]
    fn gaps_are_never_covered_by_a_multiple_ack() {
        let outstanding = set(&[1, 2, 3, 4, 5, 6]);
        // 3 is still being processed: 1..2 in one ack, then 4 and 6 alone.
        assert_eq!(
            plan_acks(&outstanding, &[1, 2, 4, 6]),
            vec![(2, true), (4, false), (6, false)]
        );
        // Nothing from the start: every tag alone.
        assert_eq!(
            plan_acks(&outstanding, &[5, 4]),
            vec![(4, false), (5, false)]
        );
    }

    #[test]
    fn unknown_and_duplicate_tags_are_skipped() {
        let outstanding = set(&[10, 11, 12]);
        assert_eq!(
            plan_acks(&outstanding, &[10, 10, 11, 99, 3]),
            vec![(11, true)]
        );
        assert!(plan_acks(&outstanding, &[1, 2]).is_empty());
        assert!(plan_acks(&BTreeSet::new(), &[1]).is_empty());
        assert!(plan_acks(&outstanding, &[]).is_empty());
    }
}
