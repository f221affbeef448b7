//! Where a cluster's nodes answer: what a launcher (or an external cluster's section) hands to
//! the backends.

use serde::Serialize;

#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// Redis Cluster seed nodes, `host:port`.
    pub redis: Vec<String>,
    /// RabbitMQ nodes, in node order.
    pub rabbitmq: Vec<RabbitEndpoint>,
}

impl RabbitEndpoint {
    /// The user its clients (and the management API client) connect as: the AMQP URI's.
    pub fn credentials(&self) -> super::rabbitmq::http::Credentials {
        super::rabbitmq::http::Credentials::of_amqp_uri(&self.amqp_uri).unwrap_or(
            super::rabbitmq::http::Credentials {
                user: "guest".into(),
                password: "guest".into(),
            },
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RabbitEndpoint {
    /// Erlang node name, e.g. `rabbit1@localhost`.
    pub node: String,
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`
    pub amqp_uri: String,
    /// Management API base, e.g. `127.0.0.1:15672`.
    pub http: String,
}
