//! Where a stream begins and ends, read over RabbitMQ's stream protocol (the stream plugin's
//! port, which the management API's `/api/overview` lists per node).
//!
//! AMQP cannot tell: a passive `queue.declare` of a stream answers the message count of the
//! management statistics (refreshed every few seconds), and an AMQP consumer gets no
//! end-of-stream marker. Over the stream protocol, a subscription at "last" with a credit of
//! one chunk makes the broker send the stream's last committed chunk, whose header holds its
//! first offset and its number of records: the last offset is first + records - 1, exact as of
//! the subscription. A subscription at "first" gives the first offset the same way. An empty
//! stream sends no chunk: after `empty_wait` without one, the stream counts as empty.
//!
//! Only the frames this needs are spoken (protocol version 1, RabbitMQ 3.9+): peer properties,
//! SASL PLAIN, tune, open, subscribe, deliver and close.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SUBSCRIBE: u16 = 7;
const DELIVER: u16 = 8;
const PEER_PROPERTIES: u16 = 17;
const SASL_HANDSHAKE: u16 = 18;
const SASL_AUTHENTICATE: u16 = 19;
const TUNE: u16 = 20;
const OPEN: u16 = 21;
const CLOSE: u16 = 22;
/// The high bit of a command key marks a response.
const RESPONSE: u16 = 0x8000;
const CODE_OK: u16 = 1;
const OFFSET_FIRST: u16 = 1;
const OFFSET_LAST: u16 = 2;
/// An osiris chunk header: magic (5) and version, chunk type, entries, records, timestamp,
/// epoch, first offset, CRC, data length, trailer length, reserved.
const CHUNK_HEADER_LEN: usize = 48;
/// The largest frame other than a delivery that this client reads into memory.
const MAX_CONTROL_FRAME: usize = 1 << 20;

/// What to read: a stream on one node, and the credentials to read it with.
pub(super) struct StreamTarget<'a> {
    /// `host:port` of the node's stream listener.
    pub addr: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub vhost: &'a str,
    pub stream: &'a str,
}

/// The first and last offsets a stream holds (both included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamEnds {
    pub first: u64,
    pub last: u64,
}

/// The header of one delivered chunk: its first offset and how many records (offsets) it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    subscription: u8,
    first_offset: u64,
    records: u32,
}

/// One frame from the broker.
enum Incoming {
    Chunk(Chunk),
    Other { key: u16, body: Vec<u8> },
}

/// The first and last offsets of `target.stream`, or `None` when it is empty (no chunk within
/// `empty_wait` of subscribing). Errors name the node, the step and the broker's answer.
pub(super) async fn stream_ends(
    target: &StreamTarget<'_>,
    empty_wait: Duration,
) -> Result<Option<StreamEnds>, String> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("stream protocol at {}: connect: {e}", target.addr))?;
    let mut conn = Conn {
        stream,
        addr: target.addr.to_string(),
        next_correlation: 1,
        chunks: Vec::new(),
    };
    let result = conn.read_ends(target, empty_wait).await;
    conn.close().await;
    result
}

struct Conn {
    stream: TcpStream,
    addr: String,
    next_correlation: u32,
    /// Chunks that arrived while waiting for a response.
    chunks: Vec<Chunk>,
}

impl Conn {
    async fn read_ends(
        &mut self,
        t: &StreamTarget<'_>,
        empty_wait: Duration,
    ) -> Result<Option<StreamEnds>, String> {
        let mut props = Frame::request(PEER_PROPERTIES);
        props.u32(1).str("product").str("brokerbench");
        self.request(props, "peer properties").await?;
        let mechanisms = self
            .request(Frame::request(SASL_HANDSHAKE), "SASL handshake")
            .await?;
        if !list_of_strings(&mechanisms).iter().any(|m| m == "PLAIN") {
            return Err(self.error("SASL handshake", "the broker does not offer PLAIN"));
        }
        let mut auth = Frame::request(SASL_AUTHENTICATE);
        auth.str("PLAIN")
            .bytes(format!("\0{}\0{}", t.user, t.password).as_bytes());
        self.request(auth, "authenticate").await?;
        // The broker sends its tune after authenticating; it must be answered before the open
        // (answered later, it counts as an unknown command and the broker closes).
        self.await_tune().await?;
        let mut open = Frame::request(OPEN);
        open.str(t.vhost);
        self.request(open, &format!("open virtual host {:?}", t.vhost))
            .await?;
        let last = self.subscribe(0, t.stream, OFFSET_LAST, empty_wait).await?;
        let Some(last) = last else {
            return Ok(None);
        };
        let first = self
            .subscribe(1, t.stream, OFFSET_FIRST, empty_wait)
            .await?
            .ok_or_else(|| {
                self.error(
                    &format!("read the first chunk of stream {}", t.stream),
                    "no chunk came, though the stream has a last one",
                )
            })?;
        let last_offset = (last.first_offset + u64::from(last.records)).saturating_sub(1);
        Ok(Some(StreamEnds {
            first: first.first_offset,
            last: last_offset,
        }))
    }

    /// Subscribe at `offset` with a credit of one chunk; the chunk, or None if none comes
    /// within `wait`.
    async fn subscribe(
        &mut self,
        subscription: u8,
        stream: &str,
        offset: u16,
        wait: Duration,
    ) -> Result<Option<Chunk>, String> {
        let mut sub = Frame::request(SUBSCRIBE);
        sub.u8(subscription).str(stream).u16(offset).u16(1);
        let step = format!("subscribe to stream {stream}");
        self.request(sub, &step).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self
                .chunks
                .iter()
                .position(|c| c.subscription == subscription)
            {
                return Ok(Some(self.chunks.swap_remove(i)));
            }
            match tokio::time::timeout_at(deadline, self.read()).await {
                Err(_) => return Ok(None),
                Ok(frame) => self.handle_unsolicited(frame?, &step)?,
            }
        }
    }

    /// Wait for the broker's tune and answer it, accepting its frame size and heartbeat.
    async fn await_tune(&mut self) -> Result<(), String> {
        loop {
            match self.read().await? {
                Incoming::Other { key: TUNE, body } => {
                    let mut tune = Frame::new(TUNE | RESPONSE);
                    tune.raw(&body);
                    return self.send(tune, "tune").await;
                }
                other => self.handle_unsolicited(other, "tune")?,
            }
        }
    }

    /// Send a request and wait for its response; returns the response's body after its code.
    async fn request(&mut self, mut frame: Frame, step: &str) -> Result<Vec<u8>, String> {
        let correlation = self.next_correlation;
        self.next_correlation += 1;
        frame.set_correlation(correlation);
        let want = frame.key() | RESPONSE;
        self.send(frame, step).await?;
        loop {
            match self.read().await? {
                Incoming::Other { key, body } if key == want => {
                    let (got, code, rest) = match body.as_slice() {
                        [a, b, c, d, e, f, rest @ ..] => (
                            u32::from_be_bytes([*a, *b, *c, *d]),
                            u16::from_be_bytes([*e, *f]),
                            rest,
                        ),
                        _ => return Err(self.error(step, "truncated response")),
                    };
                    if got != correlation {
                        continue;
                    }
                    if code != CODE_OK {
                        return Err(self.error(step, &response_code(code)));
                    }
                    return Ok(rest.to_vec());
                }
                other => self.handle_unsolicited(other, step)?,
            }
        }
    }

    /// A frame that is not the awaited response: keep chunks, fail on the broker's close,
    /// ignore the rest (heartbeats, metadata updates).
    fn handle_unsolicited(&mut self, frame: Incoming, step: &str) -> Result<(), String> {
        match frame {
            Incoming::Chunk(c) => self.chunks.push(c),
            Incoming::Other { key: CLOSE, body } => {
                let reason = body
                    .get(6..)
                    .map(|r| String::from_utf8_lossy(r.get(2..).unwrap_or(r)).into_owned())
                    .unwrap_or_default();
                return Err(
                    self.error(step, &format!("the broker closed the connection: {reason}"))
                );
            }
            Incoming::Other { .. } => {}
        }
        Ok(())
    }

    async fn send(&mut self, frame: Frame, step: &str) -> Result<(), String> {
        let bytes = frame.finish();
        self.stream
            .write_all(&bytes)
            .await
            .map_err(|e| self.error(step, &format!("write: {e}")))
    }

    async fn read(&mut self) -> Result<Incoming, String> {
        let io = |addr: &str, e: std::io::Error| format!("stream protocol at {addr}: read: {e}");
        let size = self
            .stream
            .read_u32()
            .await
            .map_err(|e| io(&self.addr, e))? as usize;
        if size < 4 {
            return Err(format!(
                "stream protocol at {}: a frame of {size} bytes",
                self.addr
            ));
        }
        let key = self
            .stream
            .read_u16()
            .await
            .map_err(|e| io(&self.addr, e))?;
        let _version = self
            .stream
            .read_u16()
            .await
            .map_err(|e| io(&self.addr, e))?;
        let rest = size - 4;
        if key == DELIVER {
            // Read the subscription id and the chunk header; skip the chunk's data.
            let mut head = [0u8; 1 + CHUNK_HEADER_LEN];
            if rest < head.len() {
                return Err(format!(
                    "stream protocol at {}: a delivery of {rest} bytes",
                    self.addr
                ));
            }
            self.stream
                .read_exact(&mut head)
                .await
                .map_err(|e| io(&self.addr, e))?;
            let skip = (rest - head.len()) as u64;
            let skipped =
                tokio::io::copy(&mut (&mut self.stream).take(skip), &mut tokio::io::sink())
                    .await
                    .map_err(|e| io(&self.addr, e))?;
            if skipped != skip {
                return Err(format!(
                    "stream protocol at {}: the connection ended inside a delivery",
                    self.addr
                ));
            }
            return parse_chunk(&head)
                .map(Incoming::Chunk)
                .map_err(|m| format!("stream protocol at {}: {m}", self.addr));
        }
        if rest > MAX_CONTROL_FRAME {
            return Err(format!(
                "stream protocol at {}: a frame of {rest} bytes (command {key})",
                self.addr
            ));
        }
        let mut body = vec![0u8; rest];
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| io(&self.addr, e))?;
        Ok(Incoming::Other { key, body })
    }

    /// Close politely (best effort, briefly).
    async fn close(&mut self) {
        let mut close = Frame::request(CLOSE);
        close.u16(CODE_OK).str("brokerbench done");
        let _ =
            tokio::time::timeout(Duration::from_millis(500), self.request(close, "close")).await;
    }

    fn error(&self, step: &str, message: &str) -> String {
        format!("stream protocol at {}: {step}: {message}", self.addr)
    }
}

/// The subscription id and chunk header at the start of a delivery.
fn parse_chunk(head: &[u8]) -> Result<Chunk, String> {
    let [subscription, magic_version, ..] = *head else {
        return Err("a delivery without a chunk header".into());
    };
    if magic_version >> 4 != 5 {
        return Err(format!(
            "a chunk with magic {:#x}, not 5",
            magic_version >> 4
        ));
    }
    let be_u32 = |at: usize| {
        head.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    let be_u64 = |at: usize| {
        head.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
    };
    // After the subscription id: magic/version 1, type 1, entries 2, records 4, timestamp 8,
    // epoch 8, first offset 8.
    match (be_u32(1 + 4), be_u64(1 + 24)) {
        (Some(records), Some(first_offset)) => Ok(Chunk {
            subscription,
            first_offset,
            records,
        }),
        _ => Err("a truncated chunk header".into()),
    }
}

/// The mechanisms of a SASL handshake response: a count, then length-prefixed strings.
fn list_of_strings(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(count) = body
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
    else {
        return out;
    };
    let mut at = 4;
    for _ in 0..count {
        let Some(len) = body
            .get(at..at + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_be_bytes)
        else {
            break;
        };
        let Some(s) = body.get(at + 2..at + 2 + len as usize) else {
            break;
        };
        out.push(String::from_utf8_lossy(s).into_owned());
        at += 2 + len as usize;
    }
    out
}

fn response_code(code: u16) -> String {
    let what = match code {
        2 => "stream does not exist",
        6 => "stream not available",
        7 => "SASL mechanism not supported",
        8 => "authentication failure",
        9 => "SASL error",
        12 => "virtual host access failure",
        16 => "access refused",
        _ => "refused",
    };
    format!("{what} (response code {code})")
}

/// One outgoing frame: size (filled in by `finish`), key, version 1, then the fields.
struct Frame(Vec<u8>);

impl Frame {
    fn new(key: u16) -> Self {
        let mut b = vec![0u8; 4];
        b.extend_from_slice(&key.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        Frame(b)
    }

    /// A request: its correlation id (set by `Conn::request`) follows the version.
    fn request(key: u16) -> Self {
        let mut f = Frame::new(key);
        f.u32(0);
        f
    }

    fn key(&self) -> u16 {
        u16::from_be_bytes([self.0[4], self.0[5]])
    }

    fn set_correlation(&mut self, correlation: u32) {
        self.0[8..12].copy_from_slice(&correlation.to_be_bytes());
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A string: 16-bit length, then UTF-8 bytes.
    fn str(&mut self, s: &str) -> &mut Self {
        let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.0.extend_from_slice(&s.as_bytes()[..len as usize]);
        self
    }

    /// Bytes: 32-bit length, then the bytes.
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }

    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_size_prefixed_with_key_version_and_correlation() {
        let mut f = Frame::request(SUBSCRIBE);
        f.u8(3).str("s-0").u16(OFFSET_LAST).u16(1);
        f.set_correlation(9);
        assert_eq!(f.key(), SUBSCRIBE);
        let bytes = f.finish();
        assert_eq!(
            bytes,
            [
                &[0, 0, 0, 18][..],
                &[0, 7, 0, 1],
                &[0, 0, 0, 9],
                &[3, 0, 3, b's', b'-', b'0'],
                &[0, 2, 0, 1]
            ]
            .concat()
        );
    }

    #[test]
    fn chunk_headers_give_the_first_offset_and_the_records() {
        let mut head = vec![4u8, 0x50, 0, 0, 3];
        head.extend_from_slice(&7u32.to_be_bytes()); // records
        head.extend_from_slice(&[0; 16]); // timestamp, epoch
        head.extend_from_slice(&1234u64.to_be_bytes()); // first offset
        head.resize(1 + CHUNK_HEADER_LEN, 0);
        assert_eq!(
            parse_chunk(&head),
            Ok(Chunk {
                subscription: 4,
                first_offset: 1234,
                records: 7
            })
        );
        head[1] = 0x40;
        assert!(parse_chunk(&head).unwrap_err().contains("magic"));
        assert!(parse_chunk(&head[..10]).is_err());
    }

    #[test]
    fn sasl_mechanisms_are_listed() {
        let mut body = 2u32.to_be_bytes().to_vec();
        for m in ["PLAIN", "AMQPLAIN"] {
            body.extend_from_slice(&(m.len() as u16).to_be_bytes());
            body.extend_from_slice(m.as_bytes());
        }
        assert_eq!(list_of_strings(&body), vec!["PLAIN", "AMQPLAIN"]);
        assert_eq!(list_of_strings(&body[..7]), vec![] as Vec<String>);
        assert!(response_code(8).contains("authentication"));
    }
}
