//! `Backend::backlog` on the real cluster: publish, take some, ack some, close; the figures
//! must match what the test did, at once (no waiting for the management statistics).

use std::sync::Arc;
use std::time::{Duration, Instant};

use brokerbench::backend::{AckToken, Backend, Backlog, Consumer, Destination, RabbitEndpoint};
use brokerbench::scenario::BackendSpec;

use super::{build, produce, settings};

/// Messages published to destination 0 and 1.
const FIRST: u64 = 200;
const SECOND: u64 = 7;
/// The consumers' prefetch: a queue delivers this many before acks are needed.
const PREFETCH: u16 = 30;
/// How many of the first deliveries the test acks.
const ACKED: usize = 10;

/// Poll `consumer` until it has handed out at least `want` deliveries; returns their tokens.
async fn take(consumer: &mut Box<dyn Consumer>, want: usize, what: &str) -> Vec<AckToken> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tokens = Vec::new();
    let mut batch = Vec::new();
    while tokens.len() < want {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {want} deliveries within 20 s",
            tokens.len()
        );
        batch.clear();
        consumer
            .poll(&mut batch)
            .await
            .unwrap_or_else(|e| panic!("{what}: poll: {e}"));
        tokens.extend(batch.iter().map(|d| d.token.clone()));
    }
    tokens
}

async fn backlog(backend: &Arc<dyn Backend>, dests: &[Destination], what: &str) -> Backlog {
    match backend.backlog(dests).await {
        Ok(Some(b)) => b,
        Ok(None) => panic!("{what}: the backend cannot tell its backlog"),
        Err(e) => panic!("{what}: backlog: {e}"),
    }
}

/// One backend: two destinations with FIRST and SECOND messages; a consumer on the first takes
/// the prefetch window, acks ACKED, takes what the acks let through, and closes.
async fn check(spec: BackendSpec, prefix: &str, endpoints: &[RabbitEndpoint]) {
    let name = spec.label();
    let stream = matches!(spec, BackendSpec::RabbitmqStream(_));
    let backend = build(&spec, endpoints).await;
    let dests = backend
        .setup(prefix, 2)
        .await
        .unwrap_or_else(|e| panic!("{name}: setup: {e}"));
    let total = FIRST + SECOND;
    let figures = |ready: u64, unacked: u64| Backlog { ready, unacked };

    let b = backlog(&backend, &dests, &format!("{name}, empty")).await;
    assert_eq!(b, figures(0, 0), "{name}: empty destinations");

    let (first, p0) = produce(backend.clone(), dests[0].clone(), 0, FIRST).await;
    let (second, p1) = produce(backend.clone(), dests[1].clone(), 1, SECOND).await;
    assert_eq!((first, second), (FIRST, SECOND), "{name}: confirms");
    let b = backlog(&backend, &dests, &format!("{name}, published")).await;
    assert_eq!(b, figures(total, 0), "{name}: nothing consumed yet");

    let mut consumer = backend
        .consumer(&dests[0], 0)
        .await
        .unwrap_or_else(|e| panic!("{name}: consumer: {e}"));
    let window = PREFETCH as usize;
    let mut taken = take(&mut consumer, window, &name).await;
    let b = backlog(&backend, &dests, &format!("{name}, window taken")).await;
    if stream {
        // A stream delivers whole chunks (possibly past the prefetch); everything after the
        // last offset handed out is backlog, and nothing is held unacked.
        assert_eq!(b, figures(total - taken.len() as u64, 0), "{name}");
    } else {
        assert_eq!(taken.len(), window, "{name}: a queue keeps to the prefetch");
        assert_eq!(
            b,
            figures(total - PREFETCH as u64, PREFETCH as u64),
            "{name}"
        );
    }

    // Ack the first ACKED: the broker lets as many more through. A stream counts a chunk
    // delivered past the prefetch against the credit: there the test acks all it took.
    let acked = if stream { taken.len() } else { ACKED };
    consumer
        .ack(&taken[..acked])
        .await
        .unwrap_or_else(|e| panic!("{name}: ack: {e}"));
    let before = taken.len();
    let more = ACKED.min(FIRST as usize - before);
    taken.extend(take(&mut consumer, more, &name).await);
    let b = backlog(&backend, &dests, &format!("{name}, after acks")).await;
    let handed_out = taken.len() as u64;
    if stream {
        assert!(handed_out >= (before + more) as u64, "{name}");
        assert_eq!(b, figures(total - handed_out, 0), "{name}");
    } else {
        assert_eq!(handed_out, (PREFETCH as usize + ACKED) as u64, "{name}");
        assert_eq!(
            b,
            figures(total - handed_out, handed_out - ACKED as u64),
            "{name}: after acking {ACKED}"
        );
    }

    // Closing requeues a queue's unacked deliveries; a stream consumer's place is kept.
    consumer.close().await;
    let b = backlog(&backend, &dests, &format!("{name}, consumer closed")).await;
    if stream {
        assert_eq!(b, figures(total - handed_out, 0), "{name}: closed");
    } else {
        assert_eq!(b, figures(total - ACKED as u64, 0), "{name}: closed");
    }

    p0.close().await;
    p1.close().await;
    backend
        .teardown(&dests)
        .await
        .unwrap_or_else(|e| panic!("{name}: teardown: {e}"));
}

/// The backlog of each RabbitMQ backend.
pub async fn backlog_checks(endpoints: &[RabbitEndpoint]) {
    let mut s = settings();
    s.prefetch = PREFETCH;
    for (spec, prefix) in [
        (BackendSpec::RabbitmqQuorum(s.clone()), "bbt-backlog-quorum"),
        (
            BackendSpec::RabbitmqMirrored(s.clone()),
            "bbt-backlog-mirrored",
        ),
        (BackendSpec::RabbitmqStream(s), "bbt-backlog-stream"),
    ] {
        let started = Instant::now();
        let name = spec.label();
        check(spec, prefix, endpoints).await;
        eprintln!(
            "{name} backlog: ok in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}
