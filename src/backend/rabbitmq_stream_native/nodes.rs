//! The cluster as the native stream backend reaches it: each node's stream protocol port (from
//! the management API's listeners), a client environment opened on a node (or the next ones in
//! order), and management API calls tried on each node in turn (placement, version, running
//! nodes).

use std::time::Duration;

use lapin::uri::AMQPUri;
use rabbitmq_stream_client::{ClientOptions, Environment};

use crate::backend::RabbitEndpoint;
use crate::cluster::rabbitmq::http::{MgmtClient, QueuePlacement};
use crate::cluster::rabbitmq::mgmt_nodes::MgmtNodes;

/// How long opening a client environment (TCP, SASL, tune, open) may take on one node.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one management API call may take before the next node is asked.
/// Stream protocol heartbeat (seconds): a frozen node is noticed after about two of these.
pub(super) const HEARTBEAT_S: u32 = 5;

/// One broker node.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// Erlang node name, e.g. `rabbit1@localhost`.
    pub name: String,
    pub host: String,
    /// Its stream protocol listener (None: the node lists none).
    pub stream_port: Option<u16>,
}

/// The nodes, the user and virtual host every client uses.
#[derive(Debug)]
pub(super) struct Nodes {
    pub list: Vec<Node>,
    user: String,
    password: String,
    pub vhost: String,
    /// The nodes' management APIs.
    pub mgmt: MgmtNodes,
}

impl Nodes {
    /// The nodes of `endpoints` (user, password and virtual host from their AMQP URIs); stream
    /// ports are unknown until `find_stream_ports`.
    pub fn of_endpoints(endpoints: &[RabbitEndpoint]) -> Result<Nodes, String> {
        let first = endpoints
            .first()
            .ok_or("no RabbitMQ endpoints were given (the cluster section lists no nodes)")?;
        let uri: AMQPUri = first
            .amqp_uri
            .parse()
            .map_err(|e: String| format!("the AMQP URI of {} is invalid: {e}", first.node))?;
        let mut list = Vec::with_capacity(endpoints.len());
        for ep in endpoints {
            let u: AMQPUri = ep
                .amqp_uri
                .parse()
                .map_err(|e: String| format!("the AMQP URI of {} is invalid: {e}", ep.node))?;
            list.push(Node {
                name: ep.node.clone(),
                host: u.authority.host.clone(),
                stream_port: None,
            });
        }
        Ok(Nodes {
            list,
            user: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password,
            vhost: uri.vhost,
            mgmt: MgmtNodes::new(
                endpoints
                    .iter()
                    .map(|ep| MgmtClient::new(&ep.http, &ep.credentials()))
                    .collect(),
            ),
        })
    }

    /// Read each node's stream protocol port from the listeners the management API lists.
    /// Err when no node has one (the `rabbitmq_stream` plugin is not enabled).
    pub async fn find_stream_ports(&mut self) -> Result<(), String> {
        let overview = self
            .mgmt
            .call(|c| async move { c.get_json("/api/overview").await })
            .await?;
        let names: Vec<&str> = self.list.iter().map(|n| n.name.as_str()).collect();
        let ports = crate::cluster::rabbitmq::http::stream_ports_of(&overview, &names);
        for (node, port) in self.list.iter_mut().zip(ports) {
            node.stream_port = port;
        }
        if self.list.iter().all(|n| n.stream_port.is_none()) {
            return Err(
                "no node lists a stream protocol listener; enable the rabbitmq_stream \
                 plugin (local clusters have it)"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// A client environment opened on node `preferred`, or on the next nodes in order if it
    /// refuses: (the node used, the environment). Producers and consumers opened from it find
    /// their stream's leader (or a replica) themselves, from the stream's metadata.
    pub async fn environment(&self, preferred: usize) -> Result<(usize, Environment), String> {
        let n = self.list.len();
        let mut errors = Vec::new();
        for k in 0..n {
            let idx = (preferred + k) % n;
            let node = &self.list[idx];
            let Some(port) = node.stream_port else {
                continue;
            };
            let build = Environment::builder()
                .host(&node.host)
                .port(port)
                .username(&self.user)
                .password(&self.password)
                .virtual_host(&self.vhost)
                .heartbeat(HEARTBEAT_S)
                .client_provided_name("brokerbench")
                .build();
            match tokio::time::timeout(CONNECT_TIMEOUT, build).await {
                Ok(Ok(env)) => return Ok((idx, env)),
                Ok(Err(e)) => errors.push(format!("{} ({}:{port}): {e}", node.name, node.host)),
                Err(_) => errors.push(format!(
                    "{} ({}:{port}): no answer within {CONNECT_TIMEOUT:?}",
                    node.name, node.host
                )),
            }
        }
        Err(errors.join("; "))
    }

    /// Client options for each node with a stream listener, in node order.
    pub fn client_options(&self) -> Vec<ClientOptions> {
        self.list
            .iter()
            .filter_map(|n| {
                Some(
                    ClientOptions::builder()
                        .host(&n.host)
                        .port(n.stream_port?)
                        .user(&self.user)
                        .password(&self.password)
                        .v_host(&self.vhost)
                        .heartbeat(HEARTBEAT_S)
                        .client_provided_name("brokerbench-leaders".into())
                        .build(),
                )
            })
            .collect()
    }

    /// Where the wire client connects to reach `addr` (`host:port`, as the stream protocol's
    /// metadata advertises a node), with the backend's user, password and virtual host; `name`
    /// is the connection's name on the broker.
    pub fn wire_target(&self, addr: &str, name: &str) -> Result<super::wire::Target, String> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("\"{addr}\" is no host:port"))?;
        Ok(super::wire::Target {
            host: host.to_string(),
            port,
            user: self.user.clone(),
            password: self.password.clone(),
            vhost: self.vhost.clone(),
            heartbeat_s: HEARTBEAT_S,
            name: name.to_string(),
        })
    }

    /// Leader and members of stream `name`.
    pub async fn placement(&self, name: &str) -> Result<QueuePlacement, String> {
        let vhost = self.vhost.clone();
        let name = name.to_string();
        self.mgmt
            .call(move |c| {
                let (vhost, name) = (vhost.clone(), name.clone());
                async move { c.queue_placement(&vhost, &name).await }
            })
            .await
    }

    /// `host:port` of a node's stream listener, for the topology.
    pub fn address(&self, idx: usize) -> String {
        let n = &self.list[idx];
        match n.stream_port {
            Some(p) => format!("{}:{p}", n.host),
            None => format!("{} (no stream listener)", n.host),
        }
    }
}
