//! The open-loop schedule: message i of a producer is due at start + i / rate, whatever the
//! broker does. Latency counts from the due time, so a stall shows up as latency instead of
//! silently lowering the offered load (no coordinated omission).

/// When each message of one producer is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    start_ns: u64,
    /// Nanoseconds between messages; `None` for "max" (due as soon as there is room in flight).
    interval_ns: Option<f64>,
}

impl Schedule {
    /// `rate` messages per second from `start_ns`. A non-positive rate means max.
    pub fn fixed(start_ns: u64, rate: f64) -> Self {
        let interval_ns = (rate.is_finite() && rate > 0.0).then(|| 1e9 / rate);
        Schedule {
            start_ns,
            interval_ns,
        }
    }

    pub fn max(start_ns: u64) -> Self {
        Schedule {
            start_ns,
            interval_ns: None,
        }
    }

    pub fn is_max(&self) -> bool {
        self.interval_ns.is_none()
    }

    /// Due time of message `i`. For max, every message is due at the start (the caller uses
    /// the actual send time as the intended time).
    pub fn due_ns(&self, i: u64) -> u64 {
        match self.interval_ns {
            Some(iv) => self.start_ns + (i as f64 * iv) as u64,
            None => self.start_ns,
        }
    }

    /// How many messages are due by `now_ns` (messages 0..n).
    pub fn due_count(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        match self.interval_ns {
            Some(iv) => ((now_ns - self.start_ns) as f64 / iv).floor() as u64 + 1,
            None => u64::MAX,
        }
    }

    /// Number of messages due strictly before `end_ns` (the total a producer sends in a run).
    pub fn count_before(&self, end_ns: u64) -> Option<u64> {
        let iv = self.interval_ns?;
        if end_ns <= self.start_ns {
            return Some(0);
        }
        Some(((end_ns - self.start_ns) as f64 / iv).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    #[test]
    fn due_times_follow_the_rate_not_the_sends() {
        let s = Schedule::fixed(1_000, 1000.0);
        assert_eq!(s.due_ns(0), 1_000);
        assert_eq!(s.due_ns(1), 1_001_000);
        assert_eq!(s.due_ns(1000), 1_000_001_000);
        // A producer stalled for 50 ms owes 50 messages, all with their original due times.
        let clock = ManualClock::new(1_000);
        assert_eq!(s.due_count(clock.now_ns()), 1);
        clock.advance(50_000_000);
        assert_eq!(s.due_count(clock.now_ns()), 51);
        assert_eq!(s.due_ns(25), 25_001_000);
        assert_eq!(s.due_count(999), 0);
    }

    #[test]
    fn fractional_rates_and_run_totals() {
        let s = Schedule::fixed(0, 3.0);
        assert_eq!(s.due_ns(1), 333_333_333);
        assert_eq!(s.due_ns(3), 1_000_000_000);
        assert_eq!(s.count_before(1_000_000_000), Some(3));
        assert_eq!(s.count_before(1_000_000_001), Some(4));
        let r = Schedule::fixed(0, 2500.0);
        assert_eq!(r.count_before(10_000_000_000), Some(25_000));
    }

    #[test]
    fn max_rate_has_no_schedule() {
        let s = Schedule::max(5);
        assert!(s.is_max());
        assert_eq!(s.due_ns(1_000_000), 5);
        assert_eq!(s.count_before(100), None);
        assert!(Schedule::fixed(0, 0.0).is_max());
    }
}
