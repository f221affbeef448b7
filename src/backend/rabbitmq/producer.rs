//! The producer: one connection, one channel in confirm mode, and the move to a fresh channel
//! after a nack (see `RabbitProducer`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection};
use lapin::{Confirmation, PublisherConfirm};

use super::connection::{
    channel_error, close_connection, open_error, CLOSE_TIMEOUT, CONNECT_TIMEOUT,
};
use super::RabbitBackend;
use crate::backend::{ConfirmFuture, Destination, OpError, Producer};

impl RabbitBackend {
    /// `Backend::producer`: a connection to the node the `connect` placement picks for producer
    /// `index` (or the next ones if it refuses), and a channel, in confirm mode when confirms
    /// are on.
    pub(super) async fn open_producer(
        &self,
        dest: &Destination,
        index: usize,
    ) -> Result<Box<dyn Producer>, OpError> {
        let leader = self.leader_of(dest).await;
        let target = self
            .settings
            .connect
            .node_for(index, self.nodes.len(), leader);
        let purpose = format!("producer {index} on {}", dest.name);
        let (conn, channel, node) = self.open_channel(target, true, &purpose).await?;
        let node = self.nodes[node].name.clone();
        let context = format!(
            "{}: producer {index} on queue {} via {node}",
            self.label, dest.name
        );
        if let Err(e) = publish_channel(&channel, self.settings.confirms, &context).await {
            close_connection(&conn).await;
            return Err(e);
        }
        Ok(Box::new(RabbitProducer {
            conn,
            channel,
            generation: 0,
            nacked: Arc::new(AtomicU64::new(0)),
            retired: VecDeque::new(),
            queue: dest.name.as_str().into(),
            confirms: self.settings.confirms,
            properties: BasicProperties::default()
                .with_delivery_mode(if self.settings.persistent { 2 } else { 1 }),
            context: context.into(),
        }))
    }
}

/// A producer: one connection, one channel in confirm mode (unless confirms are off).
///
/// RabbitMQ 3.10 can leave a channel that first published to a quorum queue while the queue was
/// electing a new leader nacking every later publish, long after the new leader is up (a fresh
/// channel works at once). So after a nack of a message published on the current channel, the
/// next `send` moves to a new channel on the same connection. The old channel stays open for a
/// while (`RETIRED_KEEP`) so that its outstanding confirms still arrive.
struct RabbitProducer {
    conn: Connection,
    channel: Channel,
    /// Counts the channels this producer has used (0 for the first).
    generation: u64,
    /// `generation + 1` of the newest channel that saw a nack (0: none).
    nacked: Arc<AtomicU64>,
    retired: VecDeque<(Channel, Instant)>,
    queue: ShortString,
    confirms: bool,
    properties: BasicProperties,
    /// Names the producer in errors; shared with each confirm future (no copy per message).
    context: Arc<str>,
}

/// How long a channel replaced after a nack stays open for its outstanding confirms.
const RETIRED_KEEP: Duration = Duration::from_secs(30);
/// At most this many replaced channels stay open.
const RETIRED_MAX: usize = 8;

/// Put a fresh channel in confirm mode (when confirms are on).
async fn publish_channel(channel: &Channel, confirms: bool, context: &str) -> Result<(), OpError> {
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| open_error(context, "confirm.select", e))?;
    }
    Ok(())
}

impl RabbitProducer {
    /// Move to a new channel on the same connection (see the type's documentation).
    async fn rotate_channel(&mut self) -> Result<(), OpError> {
        let channel = tokio::time::timeout(CONNECT_TIMEOUT, self.conn.create_channel())
            .await
            .map_err(|_| {
                OpError::Connection(format!(
                    "{}: no new channel within {CONNECT_TIMEOUT:?}",
                    self.context
                ))
            })?
            .map_err(|e| channel_error(&self.context, "open a new channel after a nack", e))?;
        publish_channel(&channel, self.confirms, &self.context)
            .await
            .map_err(|e| match e {
                OpError::Broker(m) => OpError::Connection(m),
                other => other,
            })?;
        let old = std::mem::replace(&mut self.channel, channel);
        self.retired.push_back((old, Instant::now()));
        self.generation += 1;
        Ok(())
    }

    /// Close replaced channels that have been kept long enough.
    fn prune_retired(&mut self) {
        while let Some((_, since)) = self.retired.front() {
            if since.elapsed() > RETIRED_KEEP || self.retired.len() > RETIRED_MAX {
                // Dropping the last handle closes the channel.
                self.retired.pop_front();
            } else {
                break;
            }
        }
    }
}

/// What one publisher confirm means for its message; a nack marks the channel's generation.
fn confirmed(
    confirm: Result<Confirmation, lapin::Error>,
    context: &str,
    nacked: &AtomicU64,
    generation: u64,
) -> Result<(), OpError> {
    match confirm {
        Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => Ok(()),
        Ok(Confirmation::Nack(_)) => {
            nacked.fetch_max(generation + 1, Ordering::AcqRel);
            Err(OpError::Nack(format!(
                "{context}: the broker nacked the message"
            )))
        }
        Err(e) => Err(channel_error(context, "publisher confirm", e)),
    }
}

impl RabbitProducer {
    /// Before a publish: drop old retired channels, and move to a fresh channel after a nack.
    async fn ready(&mut self) -> Result<(), OpError> {
        if !self.retired.is_empty() {
            self.prune_retired();
        }
        if self.confirms && self.nacked.load(Ordering::Acquire) == self.generation + 1 {
            self.rotate_channel().await?;
        }
        Ok(())
    }

    async fn publish(&self, payload: &[u8]) -> Result<PublisherConfirm, OpError> {
        self.channel
            .basic_publish(
                ShortString::default(),
                // lapin takes the routing key by value: one copy of the name per message.
                self.queue.clone(),
                BasicPublishOptions::default(),
                payload,
                self.properties.clone(),
            )
            .await
            .map_err(|e| channel_error(&self.context, "basic.publish", e))
    }
}

#[async_trait]
impl Producer for RabbitProducer {
    async fn send(&mut self, payload: Bytes) -> Result<Option<ConfirmFuture>, OpError> {
        self.ready().await?;
        let confirm = self.publish(&payload).await?;
        if !self.confirms {
            return Ok(None);
        }
        let context = self.context.clone();
        let nacked = self.nacked.clone();
        let generation = self.generation;
        Ok(Some(Box::pin(async move {
            confirmed(confirm.await, &context, &nacked, generation)
        })))
    }

    async fn close(self: Box<Self>) {
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            self.channel.close(200, "brokerbench done".into()),
        )
        .await;
        close_connection(&self.conn).await;
    }
}
