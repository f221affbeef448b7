//! `brokerbench produce --count N --floor`: a backend's producer driven by the smallest loop that
//! keeps a window of messages in flight, in batches (`Producer::send_batch`), without the load
//! engine's schedule, ledger, statistics and per-message confirm futures. It is not a
//! measurement of a broker; `make bench-harness` runs it beside the full `produce` to tell how
//! much of the client's CPU is the backend's and how much the engine's.

use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use tokio::sync::watch;

use crate::backend::{BackendError, OpError};
use crate::payload::Header;
use crate::tutorial::{open_target, ProduceTarget};

/// Send `count` messages of `size` bytes (one payload, shared) with at most `window` in flight;
/// print the totals as `produce` does. Bounded by `duration` and `stop`.
pub async fn produce_floor(
    target: &ProduceTarget,
    count: u64,
    size: usize,
    window: usize,
    duration: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BackendError> {
    let (backend, dest, delete_after) = open_target(target).await?;
    let op = |e: OpError| BackendError::Op {
        backend: backend.label().to_string(),
        source: e,
    };
    let mut producer = backend.producer(&dest, 0).await.map_err(op)?;
    let payload = Header {
        run_id: 0,
        producer: 0,
        seq: 0,
        intended_ns: 0,
    }
    .encode(size.max(crate::payload::HEADER_LEN));
    let window = window.max(1) as u64;
    let (mut sent, mut confirmed, mut failed, mut in_flight) = (0u64, 0u64, 0u64, 0u64);
    let mut pending = futures::stream::SelectAll::new();
    let mut batch = Vec::with_capacity(window as usize);
    let start = Instant::now();
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    while confirmed + failed < count {
        while in_flight < window && sent < count {
            let k = (window - in_flight).min(count - sent);
            batch.extend(std::iter::repeat_n(payload.clone(), k as usize));
            sent += k;
            in_flight += k;
            let handed = producer.send_batch(&mut batch).await;
            // Not taken (the producer broke), or refused at once: settled now.
            let settled_now = k - handed.taken as u64 + handed.refused.len() as u64;
            in_flight -= settled_now;
            failed += settled_now;
            match handed.confirms {
                Some(confirms) => pending.push(confirms),
                None => {
                    let ok = handed.taken as u64 - handed.refused.len() as u64;
                    in_flight -= ok;
                    confirmed += ok;
                }
            }
        }
        tokio::select! {
            Some((range, outcome)) = pending.next(), if !pending.is_empty() => {
                let n = range.len() as u64;
                in_flight -= n;
                match outcome {
                    Ok(()) => confirmed += n,
                    Err(_) => failed += n,
                }
            }
            _ = &mut deadline => break,
            _ = stop.changed() => break,
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    crate::outln!(
        "total: sent {sent} confirmed {confirmed} failed {failed} unconfirmed {in_flight} in {elapsed_s:.3} s: {:.0} msg/s confirmed",
        confirmed as f64 / elapsed_s.max(1e-9)
    );
    producer.close().await;
    if delete_after {
        if let Err(e) = backend.teardown(&[dest]).await {
            crate::errln!("warning: {e}");
        }
    }
    Ok(())
}
