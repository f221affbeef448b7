//! The settings of a `rabbitmq-stream-native` entry, their checks, and what a confirm
//! guarantees.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backend::registry::{BackendType, Family, FieldError, Redelivery, Replay};
use crate::backend::{Backend, BackendError, Endpoints};
use crate::cluster::version::BrokerVersion;
use crate::scenario::{ClusterKind, ClusterSection, Guarantee, Rate, Workload};

use super::wire::Compression;

/// The backend type's name in scenario files and results.
pub const TYPE_NAME: &str = "rabbitmq-stream-native";

/// The most partitions a super stream may have here (three nodes; more only adds connections).
pub const MAX_PARTITIONS: usize = 32;
/// The most messages per sub-entry: a sub-entry never spans two of the harness's batches, and
/// a batch holds at most this many messages.
pub const MAX_SUB_ENTRY: usize = crate::load::producer::MAX_BATCH;

fn yes() -> bool {
    true
}
fn batch_size() -> usize {
    100
}
fn store_offset_every() -> u64 {
    1000
}

/// A RabbitMQ stream (or super stream) over the stream protocol (`rabbitmq-stream-client`, or
/// the backend's own client with `sub_entry_size`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NativeStreamSettings {
    #[serde(default)]
    pub label: Option<String>,
    /// The `[clusters.<name>]` this backend runs on (default: the one RabbitMQ cluster).
    #[serde(default)]
    pub cluster: Option<String>,
    /// This backend's number of streams, instead of `workload.destinations`.
    #[serde(default)]
    pub destinations: Option<usize>,
    /// This backend's target rate, instead of `workload.rate`.
    #[serde(default)]
    pub rate: Option<Rate>,
    /// Publisher confirms (by publishing id). Without them a message counts as published once
    /// the client took it.
    #[serde(default = "yes")]
    pub confirms: bool,
    /// The client's batch: at most this many messages per publish frame, and the depth of the
    /// queue between `send` and the connection (the client's `batch_size`, 100 by default).
    /// Not used with `sub_entry_size`: then each batch of the harness goes out at once, as
    /// sub-entries in as few frames as the frame size allows.
    #[serde(default = "batch_size")]
    pub batch_size: usize,
    /// Store the consumer's offset on the broker after every this many acknowledged messages
    /// (server-side offset tracking): a consumer that reopens, or takes over as the single
    /// active consumer, goes on after the last stored offset, so at most this many messages
    /// come again.
    #[serde(default = "store_offset_every")]
    pub store_offset_every: u64,
    /// Each destination is a super stream of this many partition streams (leaders spread over
    /// the nodes), instead of one stream.
    #[serde(default)]
    pub super_stream_partitions: Option<usize>,
    /// Sub-entry batching: at most this many messages per entry of the stream (one publishing
    /// id, one confirm), published and read by the backend's own stream protocol client
    /// (`wire/`). Absent: one message per entry, on `rabbitmq-stream-client`.
    #[serde(default)]
    pub sub_entry_size: Option<usize>,
    /// How a sub-entry's messages are compressed: "none" (the default) or "gzip"; only with
    /// `sub_entry_size`.
    #[serde(default)]
    pub compression: Option<String>,
}

impl NativeStreamSettings {
    /// The partition streams of each destination (1: a plain stream).
    pub fn partitions(&self) -> usize {
        self.super_stream_partitions.unwrap_or(1)
    }

    /// The compression of sub-entries (checked by `check`: anything else is refused there).
    pub fn compression(&self) -> Compression {
        match self.compression.as_deref() {
            Some("gzip") => Compression::Gzip,
            _ => Compression::None,
        }
    }

    fn check_sub_entries(&self) -> Result<(), FieldError> {
        if let Some(n) = self.sub_entry_size {
            if !(2..=MAX_SUB_ENTRY).contains(&n) {
                return Err(FieldError::at(
                    "sub_entry_size",
                    format!(
                        "{n} is out of range; use 2 to {MAX_SUB_ENTRY} (the harness hands over at \
                         most {MAX_SUB_ENTRY} messages per batch, and a sub-entry never spans \
                         two), or leave it out for one message per entry"
                    ),
                ));
            }
        }
        let Some(c) = self.compression.as_deref() else {
            return Ok(());
        };
        match c {
            "none" | "gzip" => {}
            "snappy" | "lz4" | "zstd" => {
                return Err(FieldError::at(
                    "compression",
                    format!(
                        "\"{c}\" is a compression of the stream protocol that brokerbench's client \
                         does not write; use \"gzip\" or \"none\""
                    ),
                ))
            }
            _ => {
                return Err(FieldError::at(
                    "compression",
                    format!("\"{c}\" is not a compression; use \"gzip\" or \"none\""),
                ))
            }
        }
        if self.sub_entry_size.is_none() {
            return Err(FieldError::at(
                "compression",
                format!(
                    "compression applies to sub-entries only; set sub_entry_size (2 to \
                     {MAX_SUB_ENTRY}) too, or leave compression out"
                ),
            ));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), FieldError> {
        self.check_sub_entries()?;
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(FieldError::at(
                "batch_size",
                format!("{} is out of range; use 1 to 10000", self.batch_size),
            ));
        }
        if self.store_offset_every == 0 {
            return Err(FieldError::at(
                "store_offset_every",
                "0 would never store an offset; use 1 or more (1000 by default)",
            ));
        }
        if let Some(n) = self.super_stream_partitions {
            if n == 0 || n > MAX_PARTITIONS {
                return Err(FieldError::at(
                    "super_stream_partitions",
                    format!(
                        "{n} is out of range; use 2 to {MAX_PARTITIONS}, or leave it out for a \
                         plain stream"
                    ),
                ));
            }
            if n == 1 {
                return Err(FieldError::at(
                    "super_stream_partitions",
                    "a super stream of 1 partition is a plain stream with an exchange in front; \
                     leave it out, or use 2 or more",
                ));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BackendType for &NativeStreamSettings {
    fn name(&self) -> &'static str {
        TYPE_NAME
    }
    fn family(&self) -> Family {
        Family::Rabbitmq
    }
    fn cluster_kind(&self) -> ClusterKind {
        ClusterKind::Rabbitmq
    }
    fn protocol(&self) -> Option<&'static str> {
        Some("stream protocol")
    }
    fn replay(&self) -> Replay {
        // consumer.rs: a consumer name with no offset stored on the broker starts at
        // OffsetSpecification::First.
        Replay::FromFirst("offset spec first (no offset stored under the consumer's name)")
    }
    fn redelivery(&self) -> Redelivery {
        Redelivery::StoredOffset {
            every: self.store_offset_every,
        }
    }
    fn client_detection(&self, _local: bool, d: &mut crate::scenario::FailureDetection) {
        d.client_heartbeat_s = Some(super::nodes::HEARTBEAT_S as u16);
        d.client_heartbeat_protocol = Some("stream protocol".into());
    }
    fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }
    fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }
    fn destinations(&self) -> Option<usize> {
        self.destinations
    }
    fn rate(&self) -> Option<Rate> {
        self.rate
    }
    fn validate(&self, _workload: &Workload, _index: usize) -> Result<(), FieldError> {
        // Several consumers per destination are one single-active-consumer group: one reads,
        // the others take over from its stored offset.
        self.check()
    }
    fn guarantee(&self, _cluster: Option<&ClusterSection>) -> Guarantee {
        if self.confirms {
            // A stream confirms once a majority of its members have written the chunk (no
            // fsync), whatever the protocol.
            Guarantee::MajorityWritten
        } else {
            Guarantee::None
        }
    }
    fn supported_on(&self, version: &BrokerVersion) -> Result<(), String> {
        if version.major > 3 || (version.major == 3 && version.minor >= 11) {
            return Ok(());
        }
        Err(format!(
            "RabbitMQ {version} is too old for {TYPE_NAME}: its client (rabbitmq-stream-client) \
             needs RabbitMQ 3.11 or later; run it on a RabbitMQ 4.0 cluster (a cluster section \
             with broker_root = \"debian13\", see docs/broker-roots.md), or use rabbitmq-stream \
             (streams over AMQP 0-9-1) on {version}"
        ))
    }
    async fn build(&self, endpoints: &Endpoints) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(Arc::new(
            super::NativeStreamBackend::connect(self, &endpoints.rabbitmq).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendSpec;

    fn parse(extra: &str) -> NativeStreamSettings {
        let spec: BackendSpec =
            toml::from_str(&format!("type = \"{TYPE_NAME}\"\n{extra}")).expect("parses");
        match spec {
            BackendSpec::RabbitmqStreamNative(s) => s,
            other => panic!("wrong type: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_a_plain_stream_with_confirms() {
        let s = parse("");
        assert!(s.confirms);
        assert_eq!(
            (s.batch_size, s.store_offset_every, s.partitions()),
            (100, 1000, 1)
        );
        assert_eq!((&s).guarantee(None), Guarantee::MajorityWritten);
        assert!(s.check().is_ok());
        assert_eq!(
            (s.sub_entry_size, s.compression()),
            (None, Compression::None)
        );
    }

    #[test]
    fn sub_entries_take_a_size_and_optionally_gzip() {
        let s = parse("sub_entry_size = 100\ncompression = \"gzip\"");
        assert!(s.check().is_ok());
        assert_eq!(
            (s.sub_entry_size, s.compression()),
            (Some(100), Compression::Gzip)
        );
        let s = parse("sub_entry_size = 2\ncompression = \"none\"");
        assert!(s.check().is_ok());
        assert_eq!(s.compression(), Compression::None);
        let s = parse("sub_entry_size = 256");
        assert!(s.check().is_ok());
        assert_eq!(s.compression(), Compression::None);
    }

    #[test]
    fn each_bad_setting_names_its_field_and_fix() {
        for (extra, field, says) in [
            ("batch_size = 0", "batch_size", "use 1 to 10000"),
            (
                "store_offset_every = 0",
                "store_offset_every",
                "use 1 or more",
            ),
            (
                "super_stream_partitions = 1",
                "super_stream_partitions",
                "leave it out",
            ),
            (
                "super_stream_partitions = 99",
                "super_stream_partitions",
                "use 2 to 32",
            ),
            ("sub_entry_size = 1", "sub_entry_size", "use 2 to 256"),
            ("sub_entry_size = 1000", "sub_entry_size", "use 2 to 256"),
            (
                "compression = \"gzip\"",
                "compression",
                "set sub_entry_size (2 to 256) too, or leave compression out",
            ),
            (
                "sub_entry_size = 10\ncompression = \"zstd\"",
                "compression",
                "use \"gzip\" or \"none\"",
            ),
            (
                "sub_entry_size = 10\ncompression = \"Gzip\"",
                "compression",
                "is not a compression; use \"gzip\" or \"none\"",
            ),
        ] {
            let e = parse(extra).check().expect_err(extra);
            assert_eq!(e.field, field);
            assert!(e.message.contains(says), "{extra}: {}", e.message);
        }
        assert!(
            toml::from_str::<BackendSpec>(&format!("type = \"{TYPE_NAME}\"\nprefetch = 5"))
                .is_err()
        );
    }

    #[test]
    fn refuses_rabbitmq_before_3_11_and_says_what_to_use() {
        let s = parse("");
        let v = |t: &str| BrokerVersion::parse(t).expect("version");
        let e = (&s).supported_on(&v("3.10.8")).expect_err("3.10");
        assert!(e.contains("3.11 or later") && e.contains("debian13"), "{e}");
        assert!((&s).supported_on(&v("3.11.0")).is_ok());
        assert!((&s).supported_on(&v("4.0.5")).is_ok());
    }

    #[test]
    fn records_the_heartbeat_its_client_asks_for() {
        let s = parse("");
        let mut d = crate::scenario::FailureDetection::default();
        (&s).client_detection(true, &mut d);
        assert_eq!(d.describe(), "stream protocol heartbeat 5 s");
    }
}
