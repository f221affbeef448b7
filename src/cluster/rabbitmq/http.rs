//! A client for RabbitMQ's management HTTP API (GET/PUT/DELETE with basic auth, JSON) on
//! reqwest, asking as the cluster's user (`Credentials`, from its AMQP URIs).

use std::time::Duration;

use serde::Serialize;

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

/// Who the management API is asked as: the user of the cluster's AMQP URIs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    /// The user and password of an AMQP URI (the URI's defaults when it names none).
    pub fn of_amqp_uri(uri: &str) -> Result<Credentials, String> {
        let parsed: lapin::uri::AMQPUri = uri.parse()?;
        let info = parsed.authority.userinfo;
        Ok(Credentials {
            user: info.username,
            password: info.password,
        })
    }
}

#[derive(Debug, Clone)]
pub struct MgmtClient {
    /// `host:port`
    addr: String,
    credentials: Credentials,
    http: reqwest::Client,
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
    /// A client for the management API at `host:port`, asking as `credentials`.
    pub fn new(addr: &str, credentials: &Credentials) -> Self {
        let timeout = Duration::from_secs(10);
        MgmtClient {
            addr: addr.to_string(),
            credentials: credentials.clone(),
            // One connection pool per client; a client that cannot be configured falls back to
            // reqwest's defaults (the timeout is also applied per request).
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
            timeout,
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
        let method_value = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| io(format!("{method}: {e}")))?;
        let mut req = self
            .http
            .request(method_value, format!("http://{}{path}", self.addr))
            .basic_auth(&self.credentials.user, Some(&self.credentials.password))
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let response = req.send().await.map_err(|e| {
            if e.is_timeout() {
                io(format!(
                    "{method} {path}: no answer within {:?}",
                    self.timeout
                ))
            } else {
                io(format!("{method} {path}: {e}"))
            }
        })?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| io(format!("{method} {path}: reading the answer: {e}")))?;
        Ok((status, text))
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
/// Each node's stream protocol port (in the order of `nodes`), from the listeners of an
/// `/api/overview` answer; None for a node that lists none.
pub fn stream_ports_of(overview: &serde_json::Value, nodes: &[&str]) -> Vec<Option<u16>> {
    let listeners = overview
        .get("listeners")
        .and_then(|l| l.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    nodes
        .iter()
        .map(|node| {
            listeners.iter().find_map(|l| {
                let field = |k: &str| l.get(k).and_then(|v| v.as_str());
                (field("node") == Some(*node) && field("protocol") == Some("stream"))
                    .then(|| l.get("port").and_then(|p| p.as_u64()))
                    .flatten()
                    .and_then(|p| u16::try_from(p).ok())
            })
        })
        .collect()
}

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
    fn credentials_come_from_the_amqp_uri() {
        let c = Credentials::of_amqp_uri("amqp://bench:s3cret@127.0.0.1:5672/%2f").expect("uri");
        assert_eq!((c.user.as_str(), c.password.as_str()), ("bench", "s3cret"));
        // Without user info, the AMQP URI defaults (guest/guest).
        let c = Credentials::of_amqp_uri("amqp://127.0.0.1:5672").expect("uri");
        assert_eq!((c.user.as_str(), c.password.as_str()), ("guest", "guest"));
        assert!(Credentials::of_amqp_uri("http://x").is_err());
    }

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
