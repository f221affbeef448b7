//! This process's own CPU time and memory, as the kernel counts them.

/// CPU time this process has used so far (user + system, every thread), in seconds.
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage writes into the rusage we own; RUSAGE_SELF always exists.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if r != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(ru.ru_utime) + secs(ru.ru_stime))
}

/// Resident memory now and its peak over the process's life (`VmRSS`, `VmHWM` of
/// /proc/self/status), in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rss {
    pub now: u64,
    pub peak: u64,
}

pub fn rss() -> Option<Rss> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> Option<Rss> {
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .map(|k| k * 1024)
    };
    Some(Rss {
        now: kib("VmRSS:")?,
        peak: kib("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            parse_rss(s),
            Some(Rss {
                now: 1024 * 1024,
                peak: 2048 * 1024
            })
        );
        assert_eq!(parse_rss("Name:\tx\n"), None);
        let own = rss().expect("own status");
        assert!(own.now > 0 && own.peak >= own.now);
        assert!(cpu_seconds().is_some());
    }
}
