//! The harness's clock: CLOCK_MONOTONIC in nanoseconds. It is system-wide on Linux, so a
//! producer and a consumer in separate processes on one host read the same clock, and the
//! intended send time written into a payload can be compared with the receive time.

/// A source of nanosecond timestamps; injectable for tests.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

/// CLOCK_MONOTONIC, shared by all processes on the host.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        monotonic_ns()
    }
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists on Linux.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleep until the harness clock reads `target_ns` (returns at once if it already does).
pub async fn sleep_until_ns(clock: &dyn Clock, target_ns: u64) {
    let now = clock.now_ns();
    if target_ns > now {
        tokio::time::sleep(std::time::Duration::from_nanos(target_ns - now)).await;
    }
}

/// `fut`'s result within `t`, its error or the timeout as text ("no answer within {t:?}").
pub async fn within<T, E: std::fmt::Display>(
    t: std::time::Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(t, fut).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {t:?}")),
    }
}

/// A random 64-bit id (std's RandomState is seeded from the OS): run ids, random picks.
pub fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(monotonic_ns());
    h.write_u32(std::process::id());
    h.finish()
}

/// A clock that only moves when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    pub fn new(start_ns: u64) -> Self {
        ManualClock(std::sync::atomic::AtomicU64::new(start_ns))
    }
    pub fn set(&self, ns: u64) {
        self.0.store(ns, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn advance(&self, ns: u64) {
        self.0.fetch_add(ns, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
