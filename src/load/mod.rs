//! The load engine: producer and consumer tasks that follow the open-loop schedule, stamp
//! their own times, record into their own stats and feed the ledger.

pub mod consumer;
pub mod in_flight;
pub mod producer;
pub mod rate;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::clock::Clock;
use crate::metrics::activity::Activity;
use crate::metrics::ledger::Ledger;

/// What every load task of one backend run shares.
pub struct LoadContext {
    pub run_id: u64,
    pub backend: Arc<dyn Backend>,
    pub ledger: Arc<Ledger>,
    pub clock: Arc<dyn Clock>,
    pub message_size: usize,
    /// Per-destination confirms, failures and receipts in 10 ms slots (for the fault analysis).
    pub activity: Arc<Activity>,
    /// Who receives what a killed consumer held (kill-consumer).
    pub watch: Arc<watch::RedeliveryWatch>,
}

/// Exponential backoff for reopening producers and consumers after a broker fault.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Duration::from_millis(50),
        }
    }
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(1));
        d
    }
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }

    /// After a failed open: wait the next delay, or less if `stop` changes.
    pub async fn wait(&mut self, stop: &mut tokio::sync::watch::Receiver<bool>) {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {}
        }
    }
}
