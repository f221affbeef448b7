//! A consumer's own connection to its stream's master: commands are written packed, replies are
//! read as raw RESP2 frames (`Bytes` cut from the read buffer, no copy), so that the consumer can
//! scan an XREADGROUP reply in place (`entries::parse_xreadgroup_frame`) instead of having
//! redis-rs build a `Value` tree of it (five allocations per entry). Other replies, rare, go
//! through redis-rs's parser.

use std::time::Duration;

use ::redis::Value;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{scan, Reply};
use super::{refused_by_the_cluster, ServerErrorKind};
use crate::backend::OpError;

const READ_BUFFER: usize = 256 * 1024;

pub(super) struct NodeConn {
    stream: TcpStream,
    buf: BytesMut,
    address: String,
    /// A command was written whose reply was not read (its poll was cancelled, or it failed):
    /// the connection is out of step and must not be used again.
    dirty: bool,
}

/// What a failed exchange means for the connection.
pub(super) struct Failed {
    pub error: OpError,
    /// The slot's new master, from a MOVED reply.
    pub moved_to: Option<String>,
}

impl From<OpError> for Failed {
    fn from(error: OpError) -> Self {
        Failed {
            error,
            moved_to: None,
        }
    }
}

impl NodeConn {
    /// Connect to `address`; a failure is a definite `Unavailable` (nothing was sent).
    pub(super) async fn open(address: &str, timeout: Duration) -> Result<Self, OpError> {
        let opened = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| format!("no connection within {timeout:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .and_then(|s| s.set_nodelay(true).map(|()| s).map_err(|e| e.to_string()));
        match opened {
            Ok(stream) => Ok(NodeConn {
                stream,
                buf: BytesMut::with_capacity(READ_BUFFER),
                address: address.to_string(),
                dirty: false,
            }),
            Err(e) => Err(OpError::Unavailable(format!(
                "cannot connect to the stream's master {address}: {e}"
            ))),
        }
    }

    pub(super) fn address(&self) -> &str {
        &self.address
    }

    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Write `packed` (commands in RESP) and read `n` replies into `frames`, within `timeout`.
    /// An error reply is not an error here: the caller reads it with `error_of`.
    pub(super) async fn exchange(
        &mut self,
        packed: &[u8],
        n: usize,
        frames: &mut Vec<Bytes>,
        timeout: Duration,
    ) -> Result<(), OpError> {
        self.dirty = true;
        let address = self.address.clone();
        let io = |e: std::io::Error| OpError::Connection(format!("{address}: {e}"));
        let work = async {
            self.stream.write_all(packed).await.map_err(&io)?;
            while frames.len() < n {
                match scan(&self.buf) {
                    Ok(Some((_, len))) => {
                        frames.push(self.buf.split_to(len).freeze());
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(OpError::Protocol(format!(
                            "unreadable reply from {address}: {e}"
                        )))
                    }
                }
                if self.buf.capacity() - self.buf.len() < READ_BUFFER / 4 {
                    self.buf.reserve(READ_BUFFER);
                }
                let read = self.stream.read_buf(&mut self.buf).await.map_err(&io)?;
                if read == 0 {
                    return Err(OpError::Connection(format!(
                        "{address} closed the connection"
                    )));
                }
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(())) => {
                self.dirty = false;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(OpError::Timeout(format!(
                "no reply from {} within {timeout:?}",
                self.address
            ))),
        }
    }
}

/// The error an error reply stands for (`None` for any other reply): a refusal by the cluster
/// is `Unavailable`, any other error reply `Broker`, both definite. A MOVED names the new master.
pub(super) fn error_of(frame: &[u8], current: &str) -> Option<Failed> {
    if frame.first() != Some(&b'-') {
        return None;
    }
    let Ok(Some((Reply::Error(Value::ServerError(e)), _))) = scan(frame) else {
        return Some(Failed::from(OpError::Protocol(format!(
            "unreadable error reply {:?}",
            String::from_utf8_lossy(frame)
        ))));
    };
    let text = format!("{} {}", e.code(), e.details().unwrap_or_default());
    let error = match e.kind() {
        Some(kind) if refused_by_the_cluster(kind) => OpError::Unavailable(text),
        _ => OpError::Broker(text),
    };
    let moved_to = (e.kind() == Some(ServerErrorKind::Moved))
        .then(|| super::outcome::moved_to(&e, Some(current)))
        .flatten();
    Some(Failed { error, moved_to })
}

/// A reply that is not an XREADGROUP's, as redis-rs reads it.
pub(super) fn value_of(frame: &[u8]) -> Result<Value, OpError> {
    ::redis::parse_redis_value(frame)
        .map_err(|e| OpError::Protocol(format!("unreadable reply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_are_refusals_or_broker_errors() {
        let moved = error_of(b"-MOVED 3999 127.0.0.1:7002\r\n", "127.0.0.1:7001").expect("error");
        assert_eq!(moved.error.kind(), "unavailable");
        assert!(moved.error.is_definite());
        assert_eq!(moved.moved_to.as_deref(), Some("127.0.0.1:7002"));
        let busy = error_of(b"-NOGROUP No such key\r\n", "127.0.0.1:7001").expect("error");
        assert_eq!(busy.error.kind(), "broker");
        assert!(busy.moved_to.is_none());
        assert!(error_of(b":1\r\n", "x").is_none());
        assert_eq!(value_of(b":3\r\n").expect("int"), Value::Int(3));
    }
}
