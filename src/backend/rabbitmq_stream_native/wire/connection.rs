//! One stream protocol connection: the handshake (peer properties, SASL PLAIN, tune, open),
//! then a reader task that answers requests by correlation id and hands what the server pushes
//! (confirms, publish errors, chunks, consumer updates, metadata updates) to its owner's
//! callback, and a writer task that writes queued frames and heartbeats. Heartbeat and frame
//! size are negotiated as `rabbitmq-stream-client` does (the smaller non-zero value of client
//! and server); a connection that hears nothing for two heartbeats counts as dead. Whatever
//! ends it (the broker's close, EOF, an I/O error, a malformed frame, the heartbeat) reaches
//! the owner once as `Push::Closed`, and every request still waiting fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::frame::{code, key, FrameReader, FrameWriter};
use super::{handshake, WireError};

/// How long one request may wait for its response.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest frame the client accepts from the server.
const MAX_FRAME_IN: u32 = 256 << 20;
/// How much the reader asks the socket for at a time, at least.
const READ_AHEAD: usize = 64 * 1024;

/// Where to connect, and as whom.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
    /// The heartbeat the client asks for, in seconds.
    pub heartbeat_s: u32,
    /// The connection's name on the broker.
    pub name: String,
}

impl Target {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} as {} on vhost {}",
            self.addr(),
            self.user,
            self.vhost
        )
    }
}

/// What the server sends unasked.
#[derive(Debug)]
pub enum Push {
    /// A publish confirm's fields after key and version.
    Confirm(FrameReader),
    /// A publish error's fields after key and version.
    PublishError(FrameReader),
    /// A deliver's fields after key and version: subscription id, then the chunk.
    Deliver(Bytes),
    /// The single active consumer's state changed: the server waits for an answer (an offset
    /// specification when it becomes active).
    ConsumerUpdate {
        correlation: u32,
        subscription: u8,
        active: bool,
    },
    /// The stream moved or went (its publishers and subscriptions are gone).
    MetadataUpdate { code: u16, stream: String },
    /// The connection ended; nothing follows.
    Closed(WireError),
}

/// The owner's handler of pushes, run on the reader task (it must not block).
pub type OnPush = Box<dyn FnMut(Push, &Requester) + Send>;

struct State {
    waiting: HashMap<u32, oneshot::Sender<FrameReader>>,
    /// Why the connection ended (None while it is open).
    closed: Option<WireError>,
}

struct Shared {
    addr: String,
    next: AtomicU32,
    state: Mutex<State>,
    /// Set when either task ends, so the other stops too.
    stop: watch::Sender<bool>,
}

impl Shared {
    /// End the connection for `why` (the first reason counts); the waiting requests fail.
    fn end(&self, why: WireError) -> WireError {
        let mut s = self.state.lock();
        let why = s.closed.get_or_insert(why).clone();
        s.waiting.clear();
        drop(s);
        self.stop.send_replace(true);
        why
    }
}

/// Sends frames and requests on a connection (cheap to clone; does not keep it open).
#[derive(Clone)]
pub struct Requester {
    out: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
}

impl Requester {
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Why the connection ended (None while it is open).
    pub fn closed(&self) -> Option<WireError> {
        self.shared.state.lock().closed.clone()
    }

    fn closed_error(&self) -> WireError {
        self.closed().unwrap_or_else(|| WireError::Closed {
            addr: self.shared.addr.clone(),
            reason: "the writer stopped".into(),
        })
    }

    /// Queue `frame` for writing.
    pub fn send(&self, frame: Bytes) -> Result<(), WireError> {
        if let Some(e) = self.closed() {
            return Err(e);
        }
        self.out.send(frame).map_err(|_| self.closed_error())
    }

    /// Send the request `build(correlation id)` makes and wait for its response: its fields
    /// after the correlation id (response code first).
    pub async fn request(
        &self,
        what: &'static str,
        build: impl FnOnce(u32) -> Bytes,
    ) -> Result<FrameReader, WireError> {
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.shared.state.lock();
            if let Some(e) = &s.closed {
                return Err(e.clone());
            }
            s.waiting.insert(id, tx);
        }
        self.send(build(id))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => Ok(r.named(what)),
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => {
                self.shared.state.lock().waiting.remove(&id);
                Err(WireError::Timeout {
                    request: what,
                    addr: self.shared.addr.clone(),
                    after: REQUEST_TIMEOUT,
                })
            }
        }
    }

    /// `request`, then its response code: Ok (the fields after it) or `WireError::Refused`.
    pub async fn request_ok(
        &self,
        what: &'static str,
        build: impl FnOnce(u32) -> Bytes,
    ) -> Result<FrameReader, WireError> {
        let mut r = self.request(what, build).await?;
        match r.u16()? {
            code::OK => Ok(r),
            c => Err(WireError::Refused {
                request: what,
                addr: self.shared.addr.clone(),
                code: c,
            }),
        }
    }
}

/// An open connection; dropping it stops its tasks and closes the socket.
pub struct Connection {
    req: Requester,
    tasks: [AbortHandle; 2],
    /// The negotiated frame size limit (0: none) and heartbeat (seconds, 0: none).
    pub frame_max: u32,
    pub heartbeat_s: u32,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Requests still waiting (from a clone of the requester) fail at once.
        self.req.shared.end(WireError::Closed {
            addr: self.req.shared.addr.clone(),
            reason: "closed by brokerbench".into(),
        });
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(super) fn io_err(addr: &str) -> impl Fn(std::io::Error) -> WireError + '_ {
    move |e| WireError::Io {
        addr: addr.to_string(),
        message: e.to_string(),
    }
}

/// Reads frames from the socket into one buffer and cuts them out of it (a frame is a slice of
/// the buffer, not a copy). Cancelling `next` loses nothing: what was read stays buffered.
pub(super) struct FrameSource {
    rd: OwnedReadHalf,
    buf: BytesMut,
    addr: String,
}

impl FrameSource {
    /// The next frame: its bytes after the size field.
    pub(super) async fn next(&mut self) -> Result<Bytes, WireError> {
        loop {
            if self.buf.len() >= 4 {
                let size = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if !(4..=MAX_FRAME_IN).contains(&size) {
                    return Err(WireError::Malformed {
                        what: "frame",
                        detail: format!("a frame of {size} bytes from {}", self.addr),
                    });
                }
                let whole = 4 + size as usize;
                if self.buf.len() >= whole {
                    let _ = self.buf.split_to(4);
                    return Ok(self.buf.split_to(size as usize).freeze());
                }
                self.buf.reserve(whole - self.buf.len());
            }
            if self.buf.capacity() - self.buf.len() < READ_AHEAD / 4 {
                self.buf.reserve(READ_AHEAD);
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) => {
                    return Err(WireError::Closed {
                        addr: self.addr.clone(),
                        reason: "the broker closed the socket".into(),
                    })
                }
                Ok(_) => {}
                Err(e) => return Err(io_err(&self.addr)(e)),
            }
        }
    }
}

/// A frame's key, and a reader of its fields after key and version.
pub(super) fn split(frame: Bytes) -> Result<(u16, FrameReader), WireError> {
    let mut r = FrameReader::new(frame, "frame");
    let k = r.u16()?;
    r.u16()?;
    Ok((k, r))
}

impl Connection {
    /// Connect to `t`, authenticate and open its virtual host; `on_push` gets what the server
    /// pushes from then on. The caller bounds the time (dropping the future closes the socket).
    pub async fn open(t: &Target, on_push: OnPush) -> Result<Connection, WireError> {
        let addr = t.addr();
        let stream = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| WireError::Connect {
                addr: addr.clone(),
                message: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
        let mut rd = FrameSource {
            rd,
            buf: BytesMut::with_capacity(READ_AHEAD),
            addr: addr.clone(),
        };
        let (frame_max, heartbeat_s) = handshake::handshake(&mut rd, &mut wr, t).await?;
        let (out, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            addr,
            next: AtomicU32::new(10),
            state: Mutex::new(State {
                waiting: HashMap::new(),
                closed: None,
            }),
            stop: watch::channel(false).0,
        });
        let req = Requester { out, shared };
        let reader = tokio::spawn(read_loop(rd, req.clone(), heartbeat_s, on_push));
        let writer = tokio::spawn(write_loop(wr, rx, req.shared.clone(), heartbeat_s));
        Ok(Connection {
            req,
            tasks: [reader.abort_handle(), writer.abort_handle()],
            frame_max,
            heartbeat_s,
        })
    }

    pub fn requester(&self) -> &Requester {
        &self.req
    }

    /// Close gracefully: the close request, its answer (within `REQUEST_TIMEOUT`), then the
    /// socket.
    pub async fn close(self) {
        if self.req.closed().is_none() {
            let _ = self
                .req
                .request("close", |id| {
                    let mut f = FrameWriter::new(key::CLOSE, 32);
                    f.u32(id).u16(code::OK).str("brokerbench is done");
                    f.finish()
                })
                .await;
        }
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
    heartbeat_s: u32,
) {
    let every = Duration::from_secs((heartbeat_s / 2).max(1) as u64);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut stop = shared.stop.subscribe();
    let heartbeat = {
        let f = FrameWriter::new(key::HEARTBEAT, 0);
        f.finish()
    };
    let why = loop {
        let frame = tokio::select! {
            f = rx.recv() => match f {
                Some(f) => f,
                None => break "the connection was dropped".to_string(),
            },
            _ = tick.tick(), if heartbeat_s > 0 => heartbeat.clone(),
            _ = stop.wait_for(|s| *s) => return,
        };
        if let Err(e) = wr.write_all(&frame).await {
            break format!("write: {e}");
        }
    };
    shared.end(WireError::Closed {
        addr: shared.addr.clone(),
        reason: why,
    });
}

async fn read_loop(mut rd: FrameSource, req: Requester, heartbeat_s: u32, mut on_push: OnPush) {
    let shared = req.shared.clone();
    let mut stop = shared.stop.subscribe();
    // Silence for two heartbeats: the peer is gone (or frozen). Checked by one ticker, not a
    // timer per frame.
    let silence = Duration::from_secs(2 * heartbeat_s.max(1) as u64);
    let mut check = tokio::time::interval(silence / 4);
    let mut heard = Instant::now();
    let why = loop {
        let frame = tokio::select! {
            f = rd.next() => f,
            _ = check.tick(), if heartbeat_s > 0 => {
                if heard.elapsed() > silence {
                    break Some(WireError::Closed {
                        addr: shared.addr.clone(),
                        reason: format!("nothing heard for {silence:?} (two heartbeats)"),
                    });
                }
                continue;
            }
            _ = stop.wait_for(|s| *s) => break None,
        };
        heard = Instant::now();
        let frame = match frame {
            Ok(f) => f,
            Err(e) => break Some(e),
        };
        match dispatch(frame, &req, &mut on_push) {
            Ok(None) => {}
            Ok(Some(closed)) => break Some(closed),
            Err(e) => break Some(e),
        }
    };
    let why = why.unwrap_or_else(|| WireError::Closed {
        addr: shared.addr.clone(),
        reason: "the writer stopped".into(),
    });
    let why = shared.end(why);
    on_push(Push::Closed(why), &req);
}

/// Hand one frame to whoever waits for it. Some(error) when the broker closed the connection.
fn dispatch(
    frame: Bytes,
    req: &Requester,
    on_push: &mut OnPush,
) -> Result<Option<WireError>, WireError> {
    let (k, mut r) = split(frame)?;
    if k == key::CREDIT | key::RESPONSE || k == key::TUNE | key::RESPONSE {
        // A credit for a subscription the broker no longer has (it answers credits only then):
        // the subscription's own end reports it.
        return Ok(None);
    }
    if k & key::RESPONSE != 0 {
        let id = r.u32()?;
        if let Some(tx) = req.shared.state.lock().waiting.remove(&id) {
            let _ = tx.send(r);
        }
        return Ok(None);
    }
    match k {
        key::PUBLISH_CONFIRM => on_push(Push::Confirm(r.named("publish confirm")), req),
        key::PUBLISH_ERROR => on_push(Push::PublishError(r.named("publish error")), req),
        key::DELIVER => on_push(Push::Deliver(r.rest()), req),
        key::CONSUMER_UPDATE => {
            let mut r = r.named("consumer update");
            let correlation = r.u32()?;
            let subscription = r.u8()?;
            let active = r.u8()? != 0;
            on_push(
                Push::ConsumerUpdate {
                    correlation,
                    subscription,
                    active,
                },
                req,
            );
        }
        key::METADATA_UPDATE => {
            let mut r = r.named("metadata update");
            let code = r.u16()?;
            let stream = r.str()?;
            on_push(Push::MetadataUpdate { code, stream }, req);
        }
        key::CLOSE => {
            let mut r = r.named("close");
            let id = r.u32()?;
            let c = r.u16()?;
            let reason = r.str()?;
            let mut f = FrameWriter::new(key::CLOSE | key::RESPONSE, 6);
            f.u32(id).u16(code::OK);
            let _ = req.send(f.finish());
            return Ok(Some(WireError::Closed {
                addr: req.shared.addr.clone(),
                reason: format!("the broker closed it: {reason} (code {c})"),
            }));
        }
        // Heartbeats only prove the peer alive; anything else is not for this client.
        _ => {}
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_shows_no_password() {
        let t = Target {
            host: "127.0.0.1".into(),
            port: 5552,
            user: "bench".into(),
            password: "s3cret".into(),
            vhost: "/".into(),
            heartbeat_s: 5,
            name: "x".into(),
        };
        let shown = format!("{t:?}");
        assert!(
            shown.contains("127.0.0.1:5552") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
