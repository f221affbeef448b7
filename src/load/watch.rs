//! Who got a killed consumer's messages: the messages it held are watched from its crash until
//! the fault runner stops watching, and every consumer that receives one of them for the first
//! time is credited with it. Off (one relaxed load per batch) while no kill-consumer is open.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub struct RedeliveryWatch {
    active: AtomicBool,
    inner: Mutex<Watched>,
}

#[derive(Debug, Default)]
struct Watched {
    held: HashSet<(u32, u64)>,
    by_consumer: BTreeMap<usize, u64>,
}

impl RedeliveryWatch {
    /// Watch `held` (the messages a consumer died with) from now on.
    pub fn start(&self, held: &[(u32, u64)]) {
        let mut w = self.inner.lock();
        w.held = held.iter().copied().collect();
        w.by_consumer.clear();
        self.active.store(!w.held.is_empty(), Ordering::SeqCst);
    }

    /// Consumer `consumer` received `ids` for the first time.
    pub fn on_received<'a>(&self, consumer: usize, ids: impl Iterator<Item = &'a (u32, u64)>) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let mut w = self.inner.lock();
        let n = ids.filter(|id| w.held.remove(id)).count() as u64;
        if n > 0 {
            *w.by_consumer.entry(consumer).or_default() += n;
        }
        if w.held.is_empty() {
            self.active.store(false, Ordering::Relaxed);
        }
    }

    /// Stop watching: how many of the held messages each consumer received (by consumer index).
    pub fn stop(&self) -> BTreeMap<usize, u64> {
        self.active.store(false, Ordering::SeqCst);
        let mut w = self.inner.lock();
        w.held.clear();
        std::mem::take(&mut w.by_consumer)
    }
}

/// `consumer:1=300; consumer:2=200`, by consumer index ("" when nobody got anything).
pub fn describe(by_consumer: &BTreeMap<usize, u64>) -> String {
    by_consumer
        .iter()
        .map(|(c, n)| format!("consumer:{c}={n}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_held_message_is_credited_once_to_whoever_got_it_first() {
        let w = RedeliveryWatch::default();
        // Not watching: nothing is counted.
        w.on_received(3, [(0, 1)].iter());
        w.start(&[(0, 1), (0, 2), (1, 7)]);
        w.on_received(1, [(0, 1), (0, 9)].iter());
        w.on_received(2, [(0, 1), (0, 2)].iter());
        let got = w.stop();
        assert_eq!(describe(&got), "consumer:1=1; consumer:2=1");
        // Stopped: later receipts count for nothing.
        w.on_received(1, [(1, 7)].iter());
        assert!(w.stop().is_empty());
    }
}
