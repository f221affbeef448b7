//! A consumer task: receive -> decode the harness's header -> ledger -> ack -> record.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Backoff, LoadContext};
use crate::backend::{AckToken, Consumer, Delivery, Destination};
use crate::metrics::ledger::Receipt;
use crate::metrics::stats::{record_ns, Recorder};
use crate::payload::Header;

pub struct ConsumerPlan {
    pub id: usize,
    pub dest: Destination,
}

/// Consume until `stop` turns true.
pub async fn run_consumer(
    ctx: Arc<LoadContext>,
    plan: ConsumerPlan,
    rec: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    let mut consumer: Option<Box<dyn Consumer>> = None;
    let mut backoff = Backoff::default();
    let mut batch: Vec<Delivery> = Vec::with_capacity(1024);
    let mut tokens: Vec<AckToken> = Vec::with_capacity(1024);
    while !*stop.borrow() {
        let c = match consumer.as_mut() {
            Some(c) => c,
            None => match ctx.backend.consumer(&plan.dest, plan.id).await {
                Ok(c) => {
                    backoff.reset();
                    consumer.insert(c)
                }
                Err(e) => {
                    rec.error(e.kind());
                    backoff.wait(&mut stop).await;
                    continue;
                }
            },
        };
        batch.clear();
        let polled = tokio::select! {
            r = c.poll(&mut batch) => r,
            _ = stop.changed() => break,
        };
        if let Err(e) = polled {
            rec.error(e.kind());
            if e.needs_reconnect() {
                consumer = None;
            }
            // Deliveries appended before the error still count.
        }
        if batch.is_empty() {
            continue;
        }
        let now = ctx.clock.now_ns();
        tokens.clear();
        rec.with(|s| {
            // The batch is refilled on the next poll: move the ack tokens out of it.
            for d in batch.drain(..) {
                match Header::decode(&d.payload) {
                    Ok(h) if h.run_id == ctx.run_id => {
                        s.received += 1;
                        match ctx.ledger.on_received(h.producer, h.seq) {
                            Receipt::First => {
                                record_ns(&mut s.e2e, now.saturating_sub(h.intended_ns))
                            }
                            Receipt::Duplicate => s.duplicates += 1,
                            Receipt::Unknown => {}
                        }
                    }
                    _ => s.foreign += 1,
                }
                if d.token != AckToken::None {
                    tokens.push(d.token);
                }
            }
        });
        if !tokens.is_empty() {
            if let Some(c) = consumer.as_mut() {
                if let Err(e) = c.ack(&tokens).await {
                    rec.error(e.kind());
                    if e.needs_reconnect() {
                        consumer = None;
                    }
                }
            }
        }
    }
    if let Some(c) = consumer.take() {
        c.close().await;
    }
}
