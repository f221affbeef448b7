//! Figures: per-task stats, the aggregator, the ledger.

pub mod activity;
pub mod aggregator;
pub mod bitset;
pub mod ledger;
pub mod stats;
