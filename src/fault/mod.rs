//! Faults: the runner that injects them on the timeline (`runner`), what it may do to a
//! cluster (`control`), and the recovery figures computed afterwards (`analysis`, faults.csv).

pub mod analysis;
pub mod control;
pub mod runner;

pub use analysis::FaultRow;
pub use control::NodeControl;
pub use runner::{FaultRunner, Observation};
