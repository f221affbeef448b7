//! brokerbench: runs RabbitMQ and Redis Streams side by side on real clusters, breaks them on
//! purpose, and reports what happened.

pub mod backend;
pub mod calibrate;
pub mod cli;
pub mod client_floor;
pub mod clock;
pub mod cluster;
pub mod fault;
pub mod load;
pub mod metrics;
pub mod payload;
pub mod report;
pub mod run;
pub mod scenario;
pub mod text;
pub mod tutorial;
