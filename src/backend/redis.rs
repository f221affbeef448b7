//! Redis Cluster streams (being written).
use crate::scenario::RedisSettings;
use super::*;
pub struct RedisStreams;
impl RedisStreams {
    pub async fn connect(_s: &RedisSettings, _seeds: &[String]) -> Result<Self, BackendError> { todo!() }
}
#[async_trait]
impl Backend for RedisStreams {
    fn label(&self) -> &str { todo!() }
    fn confirms(&self) -> bool { todo!() }
    async fn setup(&self, _prefix: &str, _count: usize) -> Result<Vec<Destination>, BackendError> { todo!() }
    async fn teardown(&self, _d: &[Destination]) -> Result<(), BackendError> { todo!() }
    async fn producer(&self, _d: &Destination, _i: usize) -> Result<Box<dyn Producer>, OpError> { todo!() }
    async fn consumer(&self, _d: &Destination, _i: usize) -> Result<Box<dyn Consumer>, OpError> { todo!() }
    async fn topology(&self, _d: &[Destination]) -> Result<Topology, BackendError> { todo!() }
}
