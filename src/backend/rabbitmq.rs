//! RabbitMQ quorum, stream and classic mirrored queues over AMQP 0-9-1 (being written).
use crate::scenario::RabbitSettings;
use super::*;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind { Quorum, Stream, Mirrored }
pub struct RabbitBackend;
impl RabbitBackend {
    pub async fn connect(_k: QueueKind, _s: &RabbitSettings, _e: &[RabbitEndpoint]) -> Result<Self, BackendError> { todo!() }
}
#[async_trait]
impl Backend for RabbitBackend {
    fn label(&self) -> &str { todo!() }
    fn confirms(&self) -> bool { todo!() }
    async fn setup(&self, _prefix: &str, _count: usize) -> Result<Vec<Destination>, BackendError> { todo!() }
    async fn teardown(&self, _d: &[Destination]) -> Result<(), BackendError> { todo!() }
    async fn producer(&self, _d: &Destination, _i: usize) -> Result<Box<dyn Producer>, OpError> { todo!() }
    async fn consumer(&self, _d: &Destination, _i: usize) -> Result<Box<dyn Consumer>, OpError> { todo!() }
    async fn topology(&self, _d: &[Destination]) -> Result<Topology, BackendError> { todo!() }
}
