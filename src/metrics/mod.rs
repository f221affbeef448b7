//! Figures: per-task stats, the aggregator, the ledger.

pub mod activity;
pub mod aggregator;
pub mod bitset;
pub mod cpu;
pub mod ledger;
pub mod replica_lag;
pub mod sampler;
pub mod stats;
