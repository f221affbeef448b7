//! AMQP connections: opening a connection and a channel on a node (or, failing that, on the
//! next nodes in order), closing them, the errors an open channel reports, and URI helpers.

use std::time::Duration;

use lapin::types::LongString;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};

use super::{Node, RabbitBackend};
use crate::backend::OpError;

/// How long one AMQP connection attempt (TCP + handshake + channel) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// AMQP heartbeat (seconds) when the endpoint's URI does not ask for one: a frozen node is
/// noticed after about two of these.
pub const DEFAULT_HEARTBEAT_S: u16 = 5;
/// How long a graceful close may take.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// `host:port` of an AMQP URI (without the credentials).
pub fn uri_address(uri: &AMQPUri) -> String {
    format!("{}:{}", uri.authority.host, uri.authority.port)
}

/// The URI without its password, for messages.
pub(super) fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &uri[..s], &uri[at + 1..]),
        _ => uri.to_string(),
    }
}

impl RabbitBackend {
    /// Open a connection and a channel to node `preferred`, or (if `fallback`) to the next
    /// nodes in order if it refuses. Returns the node index actually used.
    pub(super) async fn open_channel(
        &self,
        preferred: usize,
        fallback: bool,
        purpose: &str,
    ) -> Result<(Connection, Channel, usize), OpError> {
        let n = self.nodes.len();
        let tries = if fallback { n } else { 1 };
        let mut errors = Vec::new();
        for k in 0..tries {
            let idx = (preferred + k) % n;
            let node = &self.nodes[idx];
            match self.open_on(node, purpose).await {
                Ok((conn, channel)) => return Ok((conn, channel, idx)),
                Err(e) => errors.push(format!("{} ({}): {e}", node.name, node.address)),
            }
        }
        Err(OpError::Connection(format!(
            "{}: cannot open a connection for {purpose}: {}",
            self.label,
            errors.join("; ")
        )))
    }

    async fn open_on(&self, node: &Node, purpose: &str) -> Result<(Connection, Channel), String> {
        // lapin 4 runs on the tokio runtime it is called from (its `tokio` feature); automatic
        // recovery stays off: the harness reopens, and counts, what a fault breaks.
        let props = ConnectionProperties::default().with_connection_name(LongString::from(
            format!("brokerbench {} {purpose}", self.label),
        ));
        let attempt = async {
            let conn = Connection::connect_uri(node.uri.clone(), props)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            match conn.create_channel().await {
                Ok(channel) => Ok((conn, channel)),
                Err(e) => {
                    close_connection(&conn).await;
                    Err(format!("open channel: {e}"))
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| format!("no AMQP handshake within {CONNECT_TIMEOUT:?}"))?
    }
}

/// Close a connection gracefully, without waiting long.
pub(super) async fn close_connection(conn: &Connection) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.close(200, "brokerbench done".into())).await;
}

/// An error while opening a producer or consumer: a broker refusal (e.g. the queue does not
/// exist) is `Broker`, anything else means the connection is unusable.
pub(super) fn open_error(context: &str, step: &str, e: lapin::Error) -> OpError {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(_) => OpError::Broker(format!("{context}: {step}: {e}")),
        _ => OpError::Connection(format!("{context}: {step}: {e}")),
    }
}

/// An error on an open channel: AMQP closes the channel on any error, so the producer or
/// consumer must be reopened.
pub(super) fn channel_error(context: &str, step: &str, e: lapin::Error) -> OpError {
    OpError::Connection(format!("{context}: {step}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_redaction() {
        let uri: AMQPUri = "amqp://guest:secret@127.0.0.1:5720/%2f".parse().unwrap();
        assert_eq!(uri_address(&uri), "127.0.0.1:5720");
        assert_eq!(uri.vhost, "/");
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5720/%2f"),
            "amqp://***@127.0.0.1:5720/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
