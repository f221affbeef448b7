//! The producer: `send` queues each XADD for the producer's writer task, which sends whatever is
//! queued as one pipeline and resolves each message's confirm from its reply.

use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::Value;
use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;

use super::{key_slot, map_err, FIELD};
use crate::backend::{ConfirmFuture, OpError, Producer};

/// A producer: `send` queues the XADD for the producer's writer task, which sends whatever is
/// queued as one pipeline (in order) and resolves each message's confirm from its reply. One
/// pipeline per producer is in flight at a time, so the stream keeps the producer's order;
/// batches grow with the load (the harness bounds them by max in-flight).
pub(super) struct RedisProducer {
    queue: tokio::sync::mpsc::UnboundedSender<(
        Bytes,
        tokio::sync::oneshot::Sender<Result<(), OpError>>,
    )>,
    writer: tokio::task::JoinHandle<()>,
}

impl RedisProducer {
    pub(super) fn start(
        conn: ClusterConnection,
        key: String,
        maxlen: u64,
        wait: Option<(u32, u64)>,
    ) -> Self {
        let (queue, rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::spawn(write_pipelines(conn, key, maxlen, wait, rx));
        RedisProducer { queue, writer }
    }
}

impl Drop for RedisProducer {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

type Pending = (Bytes, tokio::sync::oneshot::Sender<Result<(), OpError>>);

async fn write_pipelines(
    mut conn: ClusterConnection,
    key: String,
    maxlen: u64,
    wait: Option<(u32, u64)>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>,
) {
    let slot = key_slot(&key);
    let mut batch: Vec<Pending> = Vec::with_capacity(1024);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut pipe = ::redis::pipe();
        for (payload, _) in &batch {
            let cmd = pipe.cmd("XADD").arg(&key);
            if maxlen > 0 {
                cmd.arg("MAXLEN").arg("~").arg(maxlen);
            }
            cmd.arg("*").arg(FIELD).arg(payload.as_ref());
        }
        let replies: Result<Vec<Value>, OpError> =
            pipe.query_async(&mut conn).await.map_err(map_err);
        let mut outcome: Vec<Result<(), OpError>> = match replies {
            Ok(values) if values.len() == batch.len() => values
                .into_iter()
                .map(|v| match v {
                    Value::Nil => Err(OpError::Broker("XADD returned nil".into())),
                    Value::ServerError(e) => Err(OpError::Broker(format!("{e:?}"))),
                    _ => Ok(()),
                })
                .collect(),
            Ok(values) => vec![
                Err(OpError::Protocol(format!(
                    "pipeline of {} XADDs got {} replies",
                    batch.len(),
                    values.len()
                )));
                batch.len()
            ],
            Err(e) => vec![Err(e); batch.len()],
        };
        if let Some((replicas, timeout_ms)) = wait.filter(|_| outcome.iter().any(|r| r.is_ok())) {
            // WAIT on the stream's master, over the connection that carried the XADDs: the
            // confirms then mean "replicated to n replicas".
            let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                ::redis::cluster_routing::Route::new(
                    slot,
                    ::redis::cluster_routing::SlotAddr::Master,
                ),
            ));
            let acked = conn
                .route_command(
                    ::redis::cmd("WAIT").arg(replicas).arg(timeout_ms).clone(),
                    route,
                )
                .await;
            // The XADDs already ran on the master, so a WAIT that falls short (its timeout) or
            // fails leaves them in an unknown state (a failover may keep or drop them): never a
            // definite failure, whatever the WAIT's own error was.
            let err = match acked {
                Ok(Value::Int(n)) if n >= replicas as i64 => None,
                Ok(other) => Some(OpError::Timeout(format!(
                    "WAIT {replicas} {timeout_ms}: acknowledged by {other:?}"
                ))),
                Err(e) => Some(match map_err(e) {
                    e if e.is_definite() => {
                        OpError::Timeout(format!("WAIT {replicas} after the XADDs: {e}"))
                    }
                    e => e,
                }),
            };
            if let Some(err) = err {
                for r in outcome.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(err.clone());
                }
            }
        }
        for ((_, tx), r) in batch.drain(..).zip(outcome) {
            let _ = tx.send(r);
        }
    }
}

#[async_trait]
impl Producer for RedisProducer {
    async fn send(&mut self, payload: Bytes) -> Result<Option<ConfirmFuture>, OpError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue
            .send((payload, tx))
            .map_err(|_| OpError::Connection("the producer's writer task has stopped".into()))?;
        Ok(Some(
            async move {
                rx.await.unwrap_or_else(|_| {
                    Err(OpError::Connection(
                        "the producer's writer task has stopped".into(),
                    ))
                })
            }
            .boxed(),
        ))
    }
}
