//! The producer: `send` queues each XADD for the producer's writer task, which sends whatever is
//! queued as one pipeline (in order) to the stream's master and resolves each message's confirm
//! from that XADD's own reply. One pipeline per producer is in flight at a time, so the stream
//! keeps the producer's order; batches grow with the load (the harness bounds them by max
//! in-flight).
//!
//! The writer talks to the master over its own connection to that node rather than through
//! redis-rs's cluster connection: the cluster connection turns a pipeline in which one reply is
//! a redirect or a refusal (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, MASTERDOWN, LOADING, READONLY)
//! into one error for the whole pipeline, although Redis wrote the XADDs before it (and with
//! retries it resends all of them). Here each XADD has its own outcome:
//! - its entry id: confirmed;
//! - an error reply (MOVED, CLUSTERDOWN, OOM, ...): a definite failure of that XADD only, which
//!   Redis did not run;
//! - a dropped connection, a reply that does not come in time or cannot be read: every XADD of
//!   the pipeline is indeterminate (`OpError::is_definite` false), as some may have run.
//!
//! The writer finds the master in CLUSTER NODES, follows MOVED to the slot's new master, and
//! resends an XADD that the cluster refused (never one whose outcome is unknown) up to
//! `client_retries` times.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncConnectionConfig, Cmd, Pipeline, ServerError, ServerErrorKind, Value};
use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::{cluster_nodes, is_failed, key_slot, map_err, refused_by_the_cluster, FIELD};
use crate::backend::{ConfirmFuture, OpError, Producer};

/// Most XADDs in one pipeline.
const MAX_BATCH: usize = 1024;
/// Waits before resending refused XADDs (not after a MOVED): doubling from the first to the
/// second, in ms.
const RETRY_WAIT_MS: (u64, u64) = (20, 500);

/// What a producer writes and how it treats its stream's master.
#[derive(Debug, Clone)]
pub(super) struct WriterSettings {
    pub key: String,
    /// XADD MAXLEN ~ n (0: no trimming).
    pub maxlen: u64,
    /// `WAIT <replicas> <timeout ms>` after each pipeline that wrote something.
    pub wait: Option<(u32, u64)>,
    /// Resends of an XADD that the cluster refused.
    pub retries: u32,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

type Confirm = oneshot::Sender<Result<(), OpError>>;
type Pending = (Bytes, Confirm);

pub(super) struct RedisProducer {
    queue: mpsc::UnboundedSender<Pending>,
    writer: tokio::task::JoinHandle<()>,
}

impl RedisProducer {
    /// Start the writer task; `cluster` answers CLUSTER NODES when the master is to be found.
    pub(super) fn start(cluster: ClusterConnection, settings: WriterSettings) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(Writer::new(cluster, settings).run(rx));
        RedisProducer { queue, writer }
    }
}

impl Drop for RedisProducer {
    fn drop(&mut self) {
        self.writer.abort();
    }
}

#[async_trait]
impl Producer for RedisProducer {
    async fn send(&mut self, payload: Bytes) -> Result<Option<ConfirmFuture>, OpError> {
        let (tx, rx) = oneshot::channel();
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

struct Writer {
    s: WriterSettings,
    slot: u16,
    cluster: ClusterConnection,
    config: AsyncConnectionConfig,
    /// The stream's master (`host:port`), once known.
    master: Option<String>,
    conn: Option<MultiplexedConnection>,
    /// Reused from batch to batch; set to give each command's reply (`ignore_errors`).
    pipe: Pipeline,
    /// The outcome of each message of the batch, by position.
    outcomes: Vec<Result<(), OpError>>,
    /// Positions (in the batch) of the XADDs the next pipeline carries.
    todo: Vec<usize>,
    /// Positions of the XADDs the cluster refused in the last pipeline, to be sent again.
    refused: Vec<usize>,
}

impl Writer {
    fn new(cluster: ClusterConnection, s: WriterSettings) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(s.connect_timeout))
            .set_response_timeout(Some(s.response_timeout));
        let mut pipe = Pipeline::with_capacity(MAX_BATCH);
        pipe.ignore_errors();
        Writer {
            slot: key_slot(&s.key),
            s,
            cluster,
            config,
            master: None,
            conn: None,
            pipe,
            outcomes: Vec::with_capacity(MAX_BATCH),
            todo: Vec::with_capacity(MAX_BATCH),
            refused: Vec::with_capacity(MAX_BATCH),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Pending>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.write(&batch).await;
            for ((_, tx), r) in batch.drain(..).zip(self.outcomes.drain(..)) {
                let _ = tx.send(r);
            }
        }
    }

    /// XADD every message of `batch`, resending those the cluster refused; leaves one outcome
    /// per message in `self.outcomes`.
    async fn write(&mut self, batch: &[Pending]) {
        self.outcomes.clear();
        self.outcomes.resize(batch.len(), Ok(()));
        self.todo.clear();
        self.todo.extend(0..batch.len());
        let mut resends = 0;
        loop {
            let redirected = self.send_pipeline(batch).await;
            std::mem::swap(&mut self.todo, &mut self.refused);
            if self.todo.is_empty() || resends >= self.s.retries {
                return;
            }
            resends += 1;
            if !redirected {
                let wait = (RETRY_WAIT_MS.0 << (resends - 1).min(16)).min(RETRY_WAIT_MS.1);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
    }

    /// One pipeline with the XADDs of `self.todo`: sets their outcomes and lists in
    /// `self.refused` those to send again. True when a MOVED named the slot's new master.
    async fn send_pipeline(&mut self, batch: &[Pending]) -> bool {
        self.refused.clear();
        let mut conn = match self.connection().await {
            Ok(c) => c,
            Err(e) => {
                // Nothing was sent: definite, and worth another try.
                for &i in &self.todo {
                    self.outcomes[i] = Err(e.clone());
                }
                self.refused.extend_from_slice(&self.todo);
                return false;
            }
        };
        self.pipe.clear();
        for &i in &self.todo {
            self.pipe.add_command(xadd(&self.s, &batch[i].0));
        }
        let replies = self.pipe.query_async::<Vec<Value>>(&mut conn).await;
        let mut redirected = false;
        match replies {
            Ok(values) if values.len() == self.todo.len() => {
                for (&i, v) in self.todo.iter().zip(&values) {
                    let outcome = xadd_outcome(v);
                    if let Value::ServerError(e) = v {
                        if e.kind().is_some_and(refused_by_the_cluster) {
                            self.refused.push(i);
                        }
                        if let Some(to) = moved_to(e, self.master.as_deref()) {
                            self.master = Some(to);
                            self.conn = None;
                            redirected = true;
                        }
                    }
                    self.outcomes[i] = outcome;
                }
            }
            Ok(values) => {
                let e = OpError::Protocol(format!(
                    "a pipeline of {} XADDs got {} replies",
                    self.todo.len(),
                    values.len()
                ));
                self.fail_all(e);
            }
            Err(e) => self.fail_all(map_err(e)),
        }
        self.wait_for_replicas(&mut conn).await;
        redirected
    }

    /// The whole pipeline failed: every XADD it carried gets `e` (never sent again).
    fn fail_all(&mut self, e: OpError) {
        // The connection may be out of step with its replies, or gone.
        self.conn = None;
        for &i in &self.todo {
            self.outcomes[i] = Err(e.clone());
        }
    }

    /// `WAIT` on the connection that carried the XADDs of `self.todo`, when some were written:
    /// their confirms then mean "replicated to n replicas". The XADDs already ran on the master,
    /// so a WAIT that falls short (its timeout) or fails leaves them in an unknown state (a
    /// failover may keep or drop them): never a definite failure, whatever the WAIT's own error.
    async fn wait_for_replicas(&mut self, conn: &mut MultiplexedConnection) {
        let Some((replicas, timeout_ms)) = self.s.wait else {
            return;
        };
        if !self.todo.iter().any(|&i| self.outcomes[i].is_ok()) {
            return;
        }
        let acked = ::redis::cmd("WAIT")
            .arg(replicas)
            .arg(timeout_ms)
            .query_async::<Value>(conn)
            .await;
        let err = match acked {
            Ok(Value::Int(n)) if n >= i64::from(replicas) => return,
            Ok(other) => OpError::Timeout(format!(
                "WAIT {replicas} {timeout_ms}: acknowledged by {other:?}"
            )),
            Err(e) => match map_err(e) {
                e if e.is_definite() => {
                    OpError::Timeout(format!("WAIT {replicas} after the XADDs: {e}"))
                }
                e => {
                    self.conn = None;
                    e
                }
            },
        };
        for &i in &self.todo {
            if self.outcomes[i].is_ok() {
                self.outcomes[i] = Err(err.clone());
            }
        }
    }

    /// The connection to the stream's master, opened (after finding the master) if needed. An
    /// error means nothing was sent: a definite `Unavailable`.
    async fn connection(&mut self) -> Result<MultiplexedConnection, OpError> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let master = match self.master.take() {
            Some(m) => m,
            None => self.locate().await?,
        };
        let opened = match ::redis::Client::open(format!("redis://{master}/")) {
            Ok(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
            }
            Err(e) => Err(e),
        };
        // On failure `master` stays forgotten: the next try asks the cluster again.
        let conn = opened.map_err(|e| {
            OpError::Unavailable(format!(
                "cannot connect to the stream's master {master}: {e}"
            ))
        })?;
        self.master = Some(master);
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// The master that owns the stream's slot, from CLUSTER NODES of any node.
    async fn locate(&self) -> Result<String, OpError> {
        let nodes = cluster_nodes(&self.cluster)
            .await
            .map_err(|e| OpError::Unavailable(format!("cannot find the stream's master: {e}")))?;
        nodes
            .iter()
            .find(|n| n.is_master() && !is_failed(n) && n.owns_slot(self.slot))
            .map(|n| n.address.clone())
            .ok_or_else(|| {
                OpError::Unavailable(format!("no master owns slot {} (CLUSTER NODES)", self.slot))
            })
    }
}

/// One XADD, its buffers sized once.
fn xadd(s: &WriterSettings, payload: &[u8]) -> Cmd {
    let mut cmd = Cmd::with_capacity(8, 48 + s.key.len() + payload.len());
    cmd.arg("XADD").arg(s.key.as_str());
    if s.maxlen > 0 {
        cmd.arg("MAXLEN").arg("~").arg(s.maxlen);
    }
    cmd.arg("*").arg(FIELD).arg(payload);
    cmd
}

/// The outcome of one XADD from its own reply.
fn xadd_outcome(v: &Value) -> Result<(), OpError> {
    match v {
        // The new entry's id.
        Value::BulkString(_) | Value::SimpleString(_) | Value::VerbatimString { .. } => Ok(()),
        // Redis refused this XADD and did not run it.
        Value::ServerError(e) => {
            let text = format!("{} {}", e.code(), e.details().unwrap_or_default());
            Err(match e.kind() {
                Some(kind) if refused_by_the_cluster(kind) => OpError::Unavailable(text),
                _ => OpError::Broker(text),
            })
        }
        Value::Nil => Err(OpError::Broker("XADD answered nil".into())),
        // Not an XADD reply: whether it ran is unknown.
        other => Err(OpError::Protocol(format!("XADD answered {other:?}"))),
    }
}

/// The new master named by a MOVED reply (`MOVED <slot> <host>:<port>`; an empty host means the
/// one already in use, `current`).
fn moved_to(e: &ServerError, current: Option<&str>) -> Option<String> {
    if e.kind() != Some(ServerErrorKind::Moved) {
        return None;
    }
    let address = e.details()?.split_ascii_whitespace().nth(1)?;
    let (host, port) = address.rsplit_once(':')?;
    if host.is_empty() {
        let (current_host, _) = current?.rsplit_once(':')?;
        return Some(format!("{current_host}:{port}"));
    }
    Some(address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server error reply as the parser builds it.
    fn error_reply(line: &str) -> Value {
        let raw = format!("-{line}\r\n");
        ::redis::parse_redis_value(raw.as_bytes()).expect("an error reply")
    }

    #[test]
    fn each_xadd_reply_is_its_own_outcome() {
        assert!(xadd_outcome(&Value::BulkString(b"1700000000000-0".to_vec())).is_ok());
        let oom = xadd_outcome(&error_reply(
            "OOM command not allowed when used memory > 'maxmemory'.",
        ))
        .expect_err("OOM");
        assert_eq!(oom.kind(), "broker");
        assert!(
            oom.is_definite() && oom.to_string().contains("OOM"),
            "{oom}"
        );
        for refusal in [
            "MOVED 3999 127.0.0.1:7002",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "LOADING Redis is loading the dataset in memory",
        ] {
            let e = xadd_outcome(&error_reply(refusal)).expect_err(refusal);
            assert_eq!(e.kind(), "unavailable", "{refusal}");
            assert!(e.is_definite(), "{refusal}");
        }
        let wrongtype = xadd_outcome(&error_reply(
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ))
        .expect_err("WRONGTYPE");
        assert!(wrongtype.is_definite());
        // Something XADD never answers: the command may have run.
        assert!(!xadd_outcome(&Value::Int(1)).expect_err("int").is_definite());
    }

    #[test]
    fn moved_names_the_new_master() {
        let Value::ServerError(moved) = error_reply("MOVED 3999 127.0.0.1:7002") else {
            panic!("not a server error");
        };
        assert_eq!(
            moved_to(&moved, Some("127.0.0.1:7001")).as_deref(),
            Some("127.0.0.1:7002")
        );
        let Value::ServerError(bare) = error_reply("MOVED 3999 :7003") else {
            panic!("not a server error");
        };
        assert_eq!(
            moved_to(&bare, Some("10.0.0.1:7001")).as_deref(),
            Some("10.0.0.1:7003")
        );
        let Value::ServerError(down) = error_reply("CLUSTERDOWN The cluster is down") else {
            panic!("not a server error");
        };
        assert_eq!(moved_to(&down, Some("127.0.0.1:7001")), None);
    }

    #[test]
    fn an_xadd_carries_the_key_the_trim_and_the_payload() {
        let s = WriterSettings {
            key: "{k}".into(),
            maxlen: 1000,
            wait: None,
            retries: 0,
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
        };
        let packed = xadd(&s, b"abc").get_packed_command();
        let expected =
            b"*8\r\n$4\r\nXADD\r\n$3\r\n{k}\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n$4\r\n1000\r\n\
                         $1\r\n*\r\n$1\r\np\r\n$3\r\nabc\r\n";
        assert_eq!(
            String::from_utf8_lossy(&packed),
            String::from_utf8_lossy(expected)
        );
    }
}
