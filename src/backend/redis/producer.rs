//! The producer: `send` queues each XADD for the producer's writer task, which writes whatever
//! is queued as one pipeline to the stream's master and, without waiting for its replies, goes
//! on writing the next ones: up to `MAX_FLIGHTS` pipelines are in flight on the connection at
//! once (the harness bounds the messages in flight). Redis runs a connection's commands in the
//! order they arrive, so the stream keeps the producer's order; each message's confirm comes
//! from that XADD's own reply, read in order as it arrives.
//!
//! The writer talks to the master over its own TCP connection, writing RESP itself (`resp.rs`:
//! no allocation per XADD, replies scanned in place), rather than through redis-rs's cluster
//! connection: that one turns a pipeline in which one reply is a redirect or a refusal (MOVED,
//! ASK, TRYAGAIN, CLUSTERDOWN, MASTERDOWN, LOADING, READONLY) into one error for the whole
//! pipeline, although Redis wrote the XADDs before it (and with retries it resends all of them).
//! Here each XADD has its own outcome:
//! - its entry id: confirmed;
//! - an error reply (MOVED, CLUSTERDOWN, OOM, ...): a definite failure of that XADD only, which
//!   Redis did not run;
//! - a dropped connection, a reply that does not come in time or cannot be read: every XADD in
//!   flight on the connection is indeterminate (`OpError::is_definite` false), as some may have
//!   run.
//!
//! A pipeline whose replies do not all come within the reply timeout (`reply_timeout_ms`, plus
//! WAIT's timeout when WAIT is used) makes every XADD in flight indeterminate, like a lost
//! connection. Then the writer gives up on that master: it does not reconnect to it (a frozen
//! node's kernel still accepts connections, so a reconnection would only wait again) but asks
//! the other nodes which master serves the slot now (`locate.rs`), and until one names another
//! master (or the old one answers again) refuses what it is given, definitely, asking again at
//! most every `LOCATE_INTERVAL`.
//!
//! The writer finds the master in CLUSTER NODES, follows MOVED to the slot's new master (once the
//! replies still due on the old connection are in), and resends an XADD that the cluster refused
//! (never one whose outcome is unknown) up to `client_retries` times.

use std::collections::VecDeque;
use std::time::Duration;

use ::redis::Value;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::locate::Locator;
use super::outcome::{is_refusal, moved_to, xadd_reply_outcome, BatchSink, Outcome, Sink};
use super::resp::{encode_wait, scan, Reply, XaddEncoder};
use super::{key_slot, FIELD};
use crate::backend::{ConfirmFuture, OpError, Producer, SentBatch};

/// Most XADDs in one pipeline.
const MAX_BATCH: usize = 1024;
/// Most pipelines in flight on the connection at once.
const MAX_FLIGHTS: usize = 8;
/// Waits before resending refused XADDs (not after a MOVED): doubling from the first to the
/// second, in ms.
const RETRY_WAIT_MS: (u64, u64) = (20, 500);
/// While no master is known for the slot, the cluster is asked again at most this often (in
/// between, what is queued is refused with the last answer).
const LOCATE_INTERVAL: Duration = Duration::from_millis(50);
/// Read buffer of the connection (replies of XADDs are about 24 bytes each).
const READ_BUFFER: usize = 64 * 1024;

/// What a producer writes and how it treats its stream's master.
#[derive(Debug, Clone)]
pub(super) struct WriterSettings {
    pub key: String,
    /// XADD MAXLEN ~ n (0: no trimming).
    pub maxlen: u64,
    /// `WAIT <replicas> <timeout ms>` after each pipeline.
    pub wait: Option<(u32, u64)>,
    /// Resends of an XADD that the cluster refused.
    pub retries: u32,
    pub connect_timeout: Duration,
    /// The reply timeout, WAIT's included (`RedisSettings::producer_reply_timeout`).
    pub response_timeout: Duration,
}

/// One message on its way.
struct Msg {
    payload: Bytes,
    sink: Sink,
    /// Times the cluster refused it so far.
    refused: u32,
}

fn stopped() -> OpError {
    OpError::Connection("the producer's writer task has stopped".into())
}

/// What `send` (one message) and `send_batch` (several) hand to the writer.
enum Queued {
    One(Msg),
    Many(Vec<Msg>),
}

pub(super) struct RedisProducer {
    queue: mpsc::UnboundedSender<Queued>,
    writer: tokio::task::JoinHandle<()>,
}

impl RedisProducer {
    /// Start the writer task; `locator` finds the stream's master.
    pub(super) fn start(locator: Locator, settings: WriterSettings) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(Writer::new(locator, settings).run(rx));
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
        let msg = Msg {
            payload,
            sink: Sink::One(tx),
            refused: 0,
        };
        self.queue.send(Queued::One(msg)).map_err(|_| stopped())?;
        Ok(Some(
            async move { rx.await.unwrap_or_else(|_| Err(stopped())) }.boxed(),
        ))
    }

    async fn send_batch(&mut self, payloads: &mut Vec<Bytes>) -> SentBatch {
        let n = payloads.len();
        let (tx, rx) = oneshot::channel();
        let sink = BatchSink::new(n, tx);
        let msgs: Vec<Msg> = payloads
            .drain(..)
            .enumerate()
            .map(|(i, payload)| Msg {
                payload,
                sink: Sink::Batch(sink.clone(), i),
                refused: 0,
            })
            .collect();
        drop(sink);
        if n == 0 {
            return SentBatch::handed(Vec::new());
        }
        if self.queue.send(Queued::Many(msgs)).is_err() {
            return SentBatch::handed(vec![Err(stopped()); n]);
        }
        // A batch's replies come from the pipelines it went out in, read as they arrive: the
        // outcomes of the whole batch are given together once its last reply is in.
        SentBatch::all_at_once(
            n,
            async move { rx.await.unwrap_or_else(|_| vec![Err(stopped()); n]) }.boxed(),
        )
    }
}

/// One pipeline on the wire: its messages and, as the replies come, their outcomes.
struct Flight {
    msgs: Vec<Msg>,
    outcomes: Vec<Outcome>,
    /// Whether a WAIT follows the XADDs.
    wait: bool,
    sent_at: Instant,
}

/// The connection to the stream's master.
struct Conn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buf: BytesMut,
}

struct Writer {
    s: WriterSettings,
    slot: u16,
    locator: Locator,
    encoder: XaddEncoder,
    /// The stream's master (`host:port`), once known.
    master: Option<String>,
    /// The master last given up on (no reply in time, a lost connection, no connection): not
    /// used again unless it answers (`Locator::master_of`).
    suspect: Option<String>,
    /// The last failed search for the master, and when the next may start.
    locate_failed: Option<(Instant, OpError)>,
    conn: Option<Conn>,
    /// Where a MOVED sent the slot: used once the old connection has no reply due.
    moved_to: Option<String>,
    /// Pipelines in flight, oldest first.
    flights: VecDeque<Flight>,
    /// Refused XADDs to send again, and when.
    retry: VecDeque<Msg>,
    retry_at: Option<Instant>,
    /// The next pipeline's bytes (reused).
    out: BytesMut,
    /// Messages taken from the queue, not yet written.
    queued: VecDeque<Msg>,
}

impl Writer {
    fn new(locator: Locator, s: WriterSettings) -> Self {
        Writer {
            slot: key_slot(&s.key),
            encoder: XaddEncoder::new(&s.key, s.maxlen, FIELD),
            s,
            locator,
            master: None,
            suspect: None,
            locate_failed: None,
            conn: None,
            moved_to: None,
            flights: VecDeque::with_capacity(MAX_FLIGHTS),
            retry: VecDeque::new(),
            retry_at: None,
            out: BytesMut::with_capacity(256 * 1024),
            queued: VecDeque::with_capacity(MAX_BATCH),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Queued>) {
        let mut incoming: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
        let mut open = true;
        loop {
            if !open && self.queued.is_empty() && self.flights.is_empty() && self.retry.is_empty() {
                return;
            }
            let now = Instant::now();
            let retry_due = self.retry_at.is_some_and(|t| t <= now);
            // A redirect waits for the replies still due on the old connection.
            let room = self.flights.len() < MAX_FLIGHTS
                && (self.moved_to.is_none() || self.flights.is_empty());
            if room && (retry_due || !self.queued.is_empty()) {
                self.write_next(retry_due).await;
                continue;
            }
            let deadline = self
                .flights
                .front()
                .map(|f| f.sent_at + self.s.response_timeout);
            tokio::select! {
                biased;
                read = read_more(&mut self.conn), if !self.flights.is_empty() => match read {
                    Ok(0) => self.fail_all(OpError::Connection(
                        "the master closed the connection".into(),
                    )),
                    Ok(_) => self.take_replies(),
                    Err(e) => self.fail_all(OpError::Connection(format!(
                        "reading replies from {}: {e}",
                        self.master.as_deref().unwrap_or("?")
                    ))),
                },
                n = rx.recv_many(&mut incoming, MAX_BATCH), if open && room => {
                    if n == 0 {
                        open = false;
                    }
                    for q in incoming.drain(..) {
                        match q {
                            Queued::One(m) => self.queued.push_back(m),
                            Queued::Many(ms) => self.queued.extend(ms),
                        }
                    }
                }
                _ = sleep_until(self.retry_at), if room && self.retry_at.is_some() => {}
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let t = self.s.response_timeout;
                    self.fail_all(OpError::Timeout(format!("no reply within {t:?}")));
                }
            }
        }
    }

    /// Write one pipeline: the refused XADDs due again first, else what is queued.
    async fn write_next(&mut self, retry_due: bool) {
        let mut msgs = Vec::with_capacity(MAX_BATCH.min(self.queued.len().max(self.retry.len())));
        if retry_due {
            self.retry_at = None;
            msgs.extend(self.retry.drain(..));
        } else {
            let n = self.queued.len().min(MAX_BATCH);
            msgs.extend(self.queued.drain(..n));
        }
        if let Some(to) = self.moved_to.take() {
            self.master = Some(to);
            self.conn = None;
        }
        if let Err(e) = self.connect().await {
            // Nothing was sent: definite, and worth another try.
            for m in msgs {
                self.refused(m, e.clone(), false);
            }
            return;
        }
        self.out.clear();
        for m in &msgs {
            self.encoder.encode(&m.payload, &mut self.out);
        }
        let wait = self.s.wait.is_some();
        if let Some((replicas, timeout_ms)) = self.s.wait {
            encode_wait(replicas, timeout_ms, &mut self.out);
        }
        let n = msgs.len();
        self.flights.push_back(Flight {
            msgs,
            outcomes: Vec::with_capacity(n),
            wait,
            sent_at: Instant::now(),
        });
        let written = match self.conn.as_mut() {
            Some(c) => c.write.write_all(&self.out).await,
            None => Ok(()),
        };
        if let Err(e) = written {
            // Part of the pipeline may have gone out: unknown, for it and all before it.
            self.fail_all(OpError::Connection(format!(
                "writing to {}: {e}",
                self.master.as_deref().unwrap_or("?")
            )));
        }
    }

    /// Settle every reply that has fully arrived.
    fn take_replies(&mut self) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let (reply, len) = match scan(&conn.buf) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    return self.fail_all(OpError::Protocol(format!(
                        "unreadable reply from {}: {e}",
                        self.master.as_deref().unwrap_or("?")
                    )));
                }
            };
            let _ = conn.buf.split_to(len);
            let Some(flight) = self.flights.front_mut() else {
                return self.fail_all(OpError::Protocol("a reply to no command".into()));
            };
            if flight.outcomes.len() < flight.msgs.len() {
                let outcome = xadd_reply_outcome(&reply);
                if let Reply::Error(Value::ServerError(e)) = &reply {
                    if let Some(to) = moved_to(e, self.master.as_deref()) {
                        self.moved_to = Some(to);
                    }
                }
                flight.outcomes.push(outcome);
                if flight.outcomes.len() < flight.msgs.len() || flight.wait {
                    continue;
                }
            } else {
                apply_wait(&reply, flight, self.s.wait);
            }
            if let Some(done) = self.flights.pop_front() {
                self.settle(done);
            }
        }
    }

    /// Hand out the outcomes of a pipeline whose replies are all in.
    fn settle(&mut self, flight: Flight) {
        for (m, outcome) in flight.msgs.into_iter().zip(flight.outcomes) {
            match outcome {
                Err(e) if is_refusal(&e) => self.refused(m, e, true),
                other => m.sink.resolve(other),
            }
        }
    }

    /// The cluster refused `m` (or nothing could be sent): try again later if retries are
    /// left, else that is its outcome.
    fn refused(&mut self, mut m: Msg, e: OpError, replied: bool) {
        if m.refused >= self.s.retries {
            return m.sink.resolve(Err(e));
        }
        m.refused += 1;
        // After a MOVED the new master is tried at once.
        let wait = if replied && self.moved_to.is_some() {
            0
        } else {
            (RETRY_WAIT_MS.0 << (m.refused - 1).min(16)).min(RETRY_WAIT_MS.1)
        };
        let at = Instant::now() + Duration::from_millis(wait);
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
        self.retry.push_back(m);
    }

    /// The connection failed: every XADD in flight gets `e` (never sent again). The master is
    /// given up on (a MOVED seen before names the next one; else the cluster is asked).
    fn fail_all(&mut self, e: OpError) {
        self.conn = None;
        for f in self.flights.drain(..) {
            for m in f.msgs {
                m.sink.resolve(Err(e.clone()));
            }
        }
        let gave_up_on = self.master.take();
        match self.moved_to.take() {
            Some(to) => self.master = Some(to),
            None => self.suspect = gave_up_on,
        }
    }

    /// Open the connection to the stream's master (after finding the master) if needed. An
    /// error means nothing was sent: a definite `Unavailable`.
    async fn connect(&mut self) -> Result<(), OpError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let master = match self.master.take() {
            Some(m) => m,
            None => self.locate().await?,
        };
        let opened = tokio::time::timeout(self.s.connect_timeout, TcpStream::connect(&master))
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", self.s.connect_timeout),
                ))
            })
            .and_then(|s| s.set_nodelay(true).map(|()| s));
        // On failure `master` stays forgotten: the next try asks the cluster again, and believes
        // this one only if it answers.
        let stream = match opened {
            Ok(s) => s,
            Err(e) => {
                let e = OpError::Unavailable(format!(
                    "cannot connect to the stream's master {master}: {e}"
                ));
                self.suspect = Some(master);
                return Err(e);
            }
        };
        let (read, write) = stream.into_split();
        self.master = Some(master);
        self.conn = Some(Conn {
            read,
            write,
            buf: BytesMut::with_capacity(READ_BUFFER),
        });
        Ok(())
    }

    /// The master that serves the stream's slot, as the nodes other than the suspect say
    /// (`Locator::master_of`); after a failed search, the same answer until `LOCATE_INTERVAL`
    /// has passed.
    async fn locate(&mut self) -> Result<String, OpError> {
        if let Some((next, e)) = &self.locate_failed {
            if Instant::now() < *next {
                return Err(e.clone());
            }
        }
        match self
            .locator
            .master_of(self.slot, self.suspect.as_deref())
            .await
        {
            Ok(m) => {
                self.suspect = None;
                self.locate_failed = None;
                Ok(m)
            }
            Err(e) => {
                self.locate_failed = Some((Instant::now() + LOCATE_INTERVAL, e.clone()));
                Err(e)
            }
        }
    }
}

/// Read more replies into the connection's buffer (never ready without a connection).
async fn read_more(conn: &mut Option<Conn>) -> std::io::Result<usize> {
    match conn {
        Some(c) => {
            if c.buf.capacity() - c.buf.len() < READ_BUFFER / 4 {
                c.buf.reserve(READ_BUFFER);
            }
            c.read.read_buf(&mut c.buf).await
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The WAIT after a pipeline's XADDs: their confirms then mean "replicated to n replicas". The
/// XADDs already ran on the master, so a WAIT that falls short (its timeout) or fails leaves
/// them in an unknown state (a failover may keep or drop them): never a definite failure.
fn apply_wait(reply: &Reply, flight: &mut Flight, wait: Option<(u32, u64)>) {
    let Some((replicas, timeout_ms)) = wait else {
        return;
    };
    let err = match reply {
        Reply::Int(n) if *n >= i64::from(replicas) => return,
        Reply::Error(v) => OpError::Timeout(format!(
            "WAIT {replicas} {timeout_ms} after the XADDs: {v:?}"
        )),
        other => OpError::Timeout(format!(
            "WAIT {replicas} {timeout_ms}: acknowledged by {other:?}"
        )),
    };
    for o in flight.outcomes.iter_mut().filter(|o| o.is_ok()) {
        *o = Err(err.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_that_falls_short_leaves_the_written_xadds_unknown() {
        let flight = |outcomes: Vec<Outcome>| Flight {
            msgs: Vec::new(),
            outcomes,
            wait: true,
            sent_at: Instant::now(),
        };
        let refused = || Err(OpError::Unavailable("CLUSTERDOWN".into()));
        let mut f = flight(vec![Ok(()), refused()]);
        apply_wait(&Reply::Int(1), &mut f, Some((1, 100)));
        assert!(f.outcomes[0].is_ok());
        let mut f = flight(vec![Ok(()), refused()]);
        apply_wait(&Reply::Int(0), &mut f, Some((1, 100)));
        let e = f.outcomes[0].clone().expect_err("short");
        assert_eq!(e.kind(), "timeout");
        assert!(!e.is_definite());
        assert_eq!(
            f.outcomes[1].clone().expect_err("refused").kind(),
            "unavailable"
        );
    }
}
