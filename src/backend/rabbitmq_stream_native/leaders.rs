//! Where each stream's leader is right now, from the stream protocol's `metadata` command over
//! one client connection that the backend's consumers share (and where the wire client's
//! publishers and consumers connect: a stream's leader, or one of its replicas).
//!
//! Why consumers need it: when a stream's leader changes, RabbitMQ restarts the stream's member
//! processes and cancels every subscription to it, telling the client with a `metadata_update`
//! frame. `rabbitmq-stream-client` 0.11 ignores that frame (its issue #96, "Handle metadata
//! update", is open), so its consumer would wait forever on a subscription that no longer
//! exists. The backend's consumers therefore note the leader when they subscribe and check it
//! about once a second; when it moved they report a lost connection, and the harness reopens
//! them from the stored offset, as the Java client does on a metadata update.

use std::time::Duration;

use rabbitmq_stream_client::types::ResponseCode;
use rabbitmq_stream_client::{Client, ClientOptions};

/// How long connecting, or one metadata request, may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A stream's members as the stream protocol advertises them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Members {
    /// `host:port` of its leader.
    pub leader: String,
    pub replicas: Vec<String>,
}

impl Members {
    /// Where a reader connects: a replica picked at random, or the leader when there is none
    /// (as the crate's consumer picks).
    pub fn reader(&self) -> &str {
        if self.replicas.is_empty() {
            return &self.leader;
        }
        let k = crate::clock::random_id() as usize % self.replicas.len();
        &self.replicas[k]
    }
}

pub(super) struct LeaderWatch {
    /// One per node with a stream listener, in node order.
    options: Vec<ClientOptions>,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl LeaderWatch {
    pub fn new(options: Vec<ClientOptions>) -> LeaderWatch {
        LeaderWatch {
            options,
            client: tokio::sync::Mutex::new(None),
        }
    }

    async fn connect(&self) -> Result<Client, String> {
        let mut errors = Vec::new();
        for o in &self.options {
            match tokio::time::timeout(CALL_TIMEOUT, Client::connect(o.clone())).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => errors.push(e.to_string()),
                Err(_) => errors.push(format!("no answer within {CALL_TIMEOUT:?}")),
            }
        }
        Err(format!("no node answered: {}", errors.join("; ")))
    }

    /// Close the shared connection (at teardown).
    pub async fn close(&self) {
        if let Some(c) = self.client.lock().await.take() {
            let _ = tokio::time::timeout(CALL_TIMEOUT, c.close()).await;
        }
    }

    /// `host:port` of the leader of `stream`; None while it has none (an election).
    pub async fn leader(&self, stream: &str) -> Result<Option<String>, String> {
        Ok(self.members(stream).await?.map(|m| m.leader))
    }

    /// `host:port` of the leader and replicas of `stream`; None while it has no leader.
    pub async fn members(&self, stream: &str) -> Result<Option<Members>, String> {
        let mut held = self.client.lock().await;
        let client = match held.as_ref() {
            Some(c) if !c.is_closed() => c.clone(),
            _ => {
                let c = self.connect().await?;
                *held = Some(c.clone());
                c
            }
        };
        let asked = tokio::time::timeout(CALL_TIMEOUT, client.metadata(vec![stream.to_string()]));
        match asked.await {
            Ok(Ok(map)) => Ok(map
                .get(stream)
                .filter(|m| m.response_code == ResponseCode::Ok && m.leader.port > 0)
                .map(|m| Members {
                    leader: format!("{}:{}", m.leader.host, m.leader.port),
                    replicas: m
                        .replicas
                        .iter()
                        .map(|r| format!("{}:{}", r.host, r.port))
                        .collect(),
                })),
            failed => {
                // Ask through a new connection next time.
                if let Some(old) = held.take() {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(CALL_TIMEOUT, old.close()).await;
                    });
                }
                Err(match failed {
                    Ok(Err(e)) => format!("metadata of stream {stream}: {e}"),
                    _ => format!("metadata of stream {stream}: no answer within {CALL_TIMEOUT:?}"),
                })
            }
        }
    }
}
