//! A small client of RabbitMQ's stream protocol, for what `rabbitmq-stream-client` 0.11 cannot
//! do: publish sub-entries (several messages in one entry, optionally gzip-compressed, with one
//! publishing id and one confirm each) and read a stream that holds them (the crate reads every
//! chunk entry as a plain message, so it cannot even decode a sub-entry). The backend uses it
//! for the producers, consumers and backlog reader of an entry with `sub_entry_size`; creating
//! streams, and every entry without sub-entries, stay on the crate.
//!
//! - `frame.rs`: frames, keys, response codes;
//! - `connection.rs`: a connection (requests, heartbeats, what the server pushes), opened by
//!   `handshake.rs`;
//! - `amqp.rs`: a message's AMQP 1.0 data section around the harness's payload;
//! - `gzip.rs`: gzip members for compressed sub-entries;
//! - `subentry.rs`: a publish frame's sub-entries;
//! - `chunk.rs`: a delivered chunk's records, sub-batches included;
//! - `publisher.rs`: a publisher and the confirms of its sub-entries;
//! - `subscription.rs`: a subscription (credit, single active consumer updates, offsets).
//!
//! Protocol: RabbitMQ's `deps/rabbitmq_stream/docs/PROTOCOL.adoc`, the chunk and sub-batch
//! layout from osiris's `osiris_log.erl`.

pub mod amqp;
pub mod chunk;
pub mod connection;
pub mod frame;
pub mod gzip;
mod handshake;
pub mod publisher;
pub mod subentry;
pub mod subscription;

use std::time::Duration;

pub use connection::{Connection, Target};

/// A failure of the wire client: data for the backend to classify, never a panic.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WireError {
    #[error("connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error("connection to {addr}: {message}")]
    Io { addr: String, message: String },
    #[error("malformed {what} frame: {needed} bytes needed, {left} left")]
    Short {
        what: &'static str,
        needed: usize,
        left: usize,
    },
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("{request} refused by {addr}: {} (response code {code:#04x})", frame::code_name(*code))]
    Refused {
        request: &'static str,
        addr: String,
        code: u16,
    },
    #[error("the connection to {addr} closed: {reason}")]
    Closed { addr: String, reason: String },
    #[error("no answer to {request} from {addr} within {after:?}")]
    Timeout {
        request: &'static str,
        addr: String,
        after: Duration,
    },
}

impl WireError {
    /// The broker's response code, when it refused a request.
    pub fn code(&self) -> Option<u16> {
        match self {
            WireError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How a sub-entry's records are compressed (the 3-bit code in its first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

impl Compression {
    /// The protocol's code: 0 none, 1 gzip (2 snappy, 3 lz4, 4 zstd are not offered).
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
        }
    }

    /// The name of compression code `code`, for errors.
    pub fn name_of(code: u8) -> &'static str {
        match code {
            0 => "none",
            1 => "gzip",
            2 => "snappy",
            3 => "lz4",
            4 => "zstd",
            _ => "an unknown compression",
        }
    }
}
