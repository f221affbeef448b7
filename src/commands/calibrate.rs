//! `brokerbench calibrate`: the harness's own ceiling on this host (the load engine against the
//! in-memory backend), printed and cached for the runs of this binary.

use std::path::Path;

use super::{cancellation, Failure};
use crate::calibrate::{cache, measure, CalibrateError, CalibrateOptions};

/// `brokerbench calibrate`: measure, print, and cache the default calibration.
pub async fn calibrate(a: crate::cli::CalibrateArgs) -> Result<(), Failure> {
    if a.size < crate::payload::HEADER_LEN || a.destinations == 0 || a.max_in_flight == 0 {
        return Err(Failure::Input(format!(
            "--size must be at least {} and --destinations and --max-in-flight at least 1",
            crate::payload::HEADER_LEN
        )));
    }
    let opts = CalibrateOptions {
        warmup: a.warmup.unwrap_or(match a.messages {
            Some(_) => std::time::Duration::ZERO,
            None => CalibrateOptions::default().warmup,
        }),
        // With a message count, the duration only bounds the run.
        duration: match a.messages {
            Some(m) => {
                std::time::Duration::from_secs(10)
                    + std::time::Duration::from_micros(m.saturating_mul(20))
            }
            None => a.duration,
        },
        messages: a.messages,
        destinations: a.destinations,
        message_size: a.size,
        max_in_flight: a.max_in_flight,
    };
    let mut cancel = cancellation();
    let mut sinks: Vec<Box<dyn crate::report::Sink>> = Vec::new();
    if a.verbose {
        sinks.push(Box::new(crate::calibrate::IntervalLines));
    }
    let c = match measure(&opts, &mut sinks, &mut cancel).await {
        Ok(c) => c,
        Err(CalibrateError::Interrupted) => return Err(Failure::Interrupted),
        Err(e) => return Err(Failure::Failed(e.to_string())),
    };
    if a.json {
        let text = serde_json::to_string_pretty(&c).map_err(|e| Failure::Failed(e.to_string()))?;
        crate::outln!("{text}");
    } else {
        for line in c.lines() {
            crate::outln!("{line}");
        }
    }
    // The default calibration is what `run` records: keep it for this binary.
    if opts == CalibrateOptions::default() {
        let stored = std::env::current_exe()
            .map_err(|e| e.to_string())
            .and_then(|exe| cache::CacheKey::of(&exe).map_err(|e| e.to_string()))
            .and_then(|key| {
                cache::store(&cache::cache_dir(Path::new("results")), &key, &c)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = stored {
            crate::errln!("warning: the ceiling was not cached: {e}");
        }
    }
    Ok(())
}
