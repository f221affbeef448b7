//! A small client for RabbitMQ's management HTTP API (GET/PUT/DELETE with basic auth, JSON).
//!
//! It speaks HTTP/1.0 with `Connection: close`, so responses are never chunked and end at EOF:
//! enough for the handful of calls brokerbench makes, without an HTTP stack in the build.

use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("management API at {addr}: {message}")]
    Io { addr: String, message: String },
    #[error("management API at {addr}: {method} {path} answered {status}: {body}")]
    Status {
        addr: String,
        method: String,
        path: String,
        status: u16,
        body: String,
    },
    #[error("management API at {addr}: {path}: unexpected response: {message}")]
    Parse {
        addr: String,
        path: String,
        message: String,
    },
}

impl HttpError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, HttpError::Status { status: 404, .. })
    }
}

/// Leader and members of one queue, as the management API reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuePlacement {
    /// Erlang node name of the leader (quorum/stream) or master (classic).
    pub leader: String,
    /// All nodes holding a copy (leader included for quorum/stream; mirrors for classic).
    pub members: Vec<String>,
    /// Queue type as reported ("quorum", "stream", "classic").
    pub queue_type: String,
}

#[derive(Debug, Clone)]
pub struct MgmtClient {
    /// `host:port`
    addr: String,
    auth: String,
    timeout: Duration,
}

/// Percent-encode one path segment (vhost "/" becomes "%2F").
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl MgmtClient {
    /// A client for `host:port` as guest/guest (allowed from loopback).
    pub fn new(addr: &str) -> Self {
        Self::with_credentials(addr, "guest", "guest")
    }

    pub fn with_credentials(addr: &str, user: &str, password: &str) -> Self {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        MgmtClient {
            addr: addr.to_string(),
            auth,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// One request; returns (status, body).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(u16, String), HttpError> {
        let io = |message: String| HttpError::Io {
            addr: self.addr.clone(),
            message,
        };
        let body_text = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Basic {}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.addr, self.auth
        );
        if body.is_some() {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body_text.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(&body_text);
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(&self.addr)
                .await
                .map_err(|e| io(format!("connect: {e}")))?;
            stream
                .write_all(req.as_bytes())
                .await
                .map_err(|e| io(format!("write: {e}")))?;
            let mut buf = Vec::new();
            stream
                .read_to_end(&mut buf)
                .await
                .map_err(|e| io(format!("read: {e}")))?;
            Ok::<Vec<u8>, HttpError>(buf)
        };
        let buf = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                io(format!(
                    "{method} {path}: no answer within {:?}",
                    self.timeout
                ))
            })??;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| HttpError::Parse {
                addr: self.addr.clone(),
                path: path.to_string(),
                message: format!("no status line in {head:?}"),
            })?;
        Ok((status, body.to_string()))
    }

    async fn expect_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String, HttpError> {
        let (status, text) = self.request(method, path, body).await?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(HttpError::Status {
                addr: self.addr.clone(),
                method: method.to_string(),
                path: path.to_string(),
                status,
                body: text.chars().take(300).collect(),
            })
        }
    }

    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, HttpError> {
        let text = self.expect_ok("GET", path, None).await?;
        serde_json::from_str(&text).map_err(|e| HttpError::Parse {
            addr: self.addr.clone(),
            path: path.to_string(),
            message: e.to_string(),
        })
    }

    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<(), HttpError> {
        self.expect_ok("PUT", path, Some(body)).await.map(|_| ())
    }

    /// DELETE; a 404 counts as success (already gone).
    pub async fn delete(&self, path: &str) -> Result<(), HttpError> {
        match self.expect_ok("DELETE", path, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// RabbitMQ version from /api/overview.
    pub async fn version(&self) -> Result<String, HttpError> {
        let v = self.get_json("/api/overview").await?;
        Ok(v.get("rabbitmq_version")
            .and_then(|s| s.as_str())
            .unwrap_or("unknown")
            .to_string())
    }

    /// Names of the running cluster members, from /api/nodes.
    pub async fn running_nodes(&self) -> Result<Vec<String>, HttpError> {
        let v = self.get_json("/api/nodes").await?;
        let nodes = v.as_array().cloned().unwrap_or_default();
        Ok(nodes
            .iter()
            .filter(|n| n.get("running").and_then(|r| r.as_bool()).unwrap_or(false))
            .filter_map(|n| n.get("name").and_then(|s| s.as_str()).map(str::to_string))
            .collect())
    }

    /// Leader and members of a queue.
    pub async fn queue_placement(
        &self,
        vhost: &str,
        queue: &str,
    ) -> Result<QueuePlacement, HttpError> {
        let path = format!(
            "/api/queues/{}/{}",
            encode_segment(vhost),
            encode_segment(queue)
        );
        let v = self.get_json(&path).await?;
        Ok(placement_from_json(&v))
    }

    /// Every queue in `vhost` with its placement, sorted by name.
    pub async fn queues(&self, vhost: &str) -> Result<Vec<(String, QueuePlacement)>, HttpError> {
        let path = format!("/api/queues/{}", encode_segment(vhost));
        let v = self.get_json(&path).await?;
        let mut out: Vec<(String, QueuePlacement)> = v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|q| Some((q.get("name")?.as_str()?.to_string(), placement_from_json(q))))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Create or replace a policy.
    pub async fn set_policy(
        &self,
        vhost: &str,
        name: &str,
        pattern: &str,
        apply_to: &str,
        definition: serde_json::Value,
    ) -> Result<(), HttpError> {
        let path = format!(
            "/api/policies/{}/{}",
            encode_segment(vhost),
            encode_segment(name)
        );
        let body = serde_json::json!({ "pattern": pattern, "apply-to": apply_to, "definition": definition, "priority": 0 });
        self.put_json(&path, &body).await
    }

    pub async fn delete_policy(&self, vhost: &str, name: &str) -> Result<(), HttpError> {
        self.delete(&format!(
            "/api/policies/{}/{}",
            encode_segment(vhost),
            encode_segment(name)
        ))
        .await
    }

    pub async fn delete_queue(&self, vhost: &str, queue: &str) -> Result<(), HttpError> {
        self.delete(&format!(
            "/api/queues/{}/{}",
            encode_segment(vhost),
            encode_segment(queue)
        ))
        .await
    }
}

/// Read leader/members from one queue object of the management API. Quorum and stream queues
/// report `leader` and `members`; classic queues report `node` and `slave_nodes` (mirrors).
pub fn placement_from_json(q: &serde_json::Value) -> QueuePlacement {
    let s = |k: &str| q.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let list = |k: &str| -> Vec<String> {
        q.get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let queue_type = s("type").unwrap_or_else(|| "classic".to_string());
    let leader = s("leader").or_else(|| s("node")).unwrap_or_default();
    let mut members = list("members");
    if members.is_empty() {
        members.push(leader.clone());
        members.extend(list("slave_nodes"));
    }
    members.retain(|m| !m.is_empty());
    QueuePlacement {
        leader,
        members,
        queue_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_default_vhost() {
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(encode_segment("bb-q.1"), "bb-q.1");
    }

    #[test]
    fn placement_of_quorum_and_classic_queues() {
        let quorum = serde_json::json!({"type": "quorum", "leader": "rabbit2@localhost", "members": ["rabbit1@localhost", "rabbit2@localhost", "rabbit3@localhost"]});
        let p = placement_from_json(&quorum);
        assert_eq!(p.leader, "rabbit2@localhost");
        assert_eq!(p.members.len(), 3);
        let classic = serde_json::json!({"type": "classic", "node": "rabbit1@localhost", "slave_nodes": ["rabbit3@localhost"]});
        let p = placement_from_json(&classic);
        assert_eq!(p.leader, "rabbit1@localhost");
        assert_eq!(p.members, vec!["rabbit1@localhost", "rabbit3@localhost"]);
    }
}
