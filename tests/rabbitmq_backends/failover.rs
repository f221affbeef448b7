//! Failover: killing the node that leads a quorum queue and holds the producer's connection.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use brokerbench::backend::{AckToken, RabbitEndpoint};
use brokerbench::cluster::rabbitmq::LocalRabbitCluster;
use brokerbench::payload::Header;
use brokerbench::scenario::BackendSpec;
use futures::stream::{FuturesUnordered, StreamExt};

use super::{build, settings, RUN_ID};

/// Kill the node that leads a quorum queue and holds the producer's connection: the producer
/// sees a connection error, reopens on another node, and every confirmed message is consumed.
pub async fn failover_check(cluster: &mut LocalRabbitCluster, endpoints: &[RabbitEndpoint]) {
    let spec = BackendSpec::RabbitmqQuorum(settings());
    let backend = build(&spec, endpoints).await;
    let dests = backend
        .setup("bbt-failover", 1)
        .await
        .unwrap_or_else(|e| panic!("failover setup: {e}"));
    let dest = dests[0].clone();
    let topo = backend
        .topology(&dests)
        .await
        .unwrap_or_else(|e| panic!("topology: {e}"));
    assert_eq!(
        topo.destinations[0].leader.as_deref(),
        Some("rabbit1@localhost")
    );

    let mut confirmed = HashSet::new();
    let mut producer = backend
        .producer(&dest, 0)
        .await
        .unwrap_or_else(|e| panic!("producer: {e}"));
    let mut seq = 0u64;
    for _ in 0..200 {
        let payload = Header {
            run_id: RUN_ID,
            producer: 0,
            seq,
            intended_ns: 0,
        }
        .encode(256);
        let confirm = producer
            .send(payload)
            .await
            .unwrap_or_else(|e| panic!("send: {e}"))
            .unwrap_or_else(|| panic!("no confirm"));
        confirm.await.unwrap_or_else(|e| panic!("confirm: {e}"));
        confirmed.insert(seq);
        seq += 1;
    }

    // A consumer on rabbit2, opened before the failover, must keep receiving across it.
    let mut consumer = backend
        .consumer(&dest, 1)
        .await
        .unwrap_or_else(|e| panic!("consumer: {e}"));

    cluster
        .kill_node(0)
        .await
        .unwrap_or_else(|e| panic!("kill rabbit1: {e}"));
    // The producer's connection was on rabbit1 (spread: producer 0 -> node 1).
    let deadline = Instant::now() + Duration::from_secs(20);
    let error = loop {
        assert!(
            Instant::now() < deadline,
            "no error within 20 s of killing the producer's node"
        );
        let payload = Header {
            run_id: RUN_ID,
            producer: 0,
            seq,
            intended_ns: 0,
        }
        .encode(256);
        let sent = producer.send(payload).await;
        let result = match sent {
            Ok(Some(confirm)) => confirm.await,
            Ok(None) => panic!("no confirm"),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                confirmed.insert(seq);
            }
            Err(e) => break e,
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        error.needs_reconnect(),
        "expected a connection error, got {error:?}"
    );
    assert!(
        error.to_string().contains("bbt-failover-0"),
        "error lacks context: {error}"
    );
    producer.close().await;

    // Reopen: rabbit1 refuses, so the producer lands on the next node. While the queue elects
    // a new leader the broker may nack publishes (the producer then moves to a fresh channel):
    // resend those, as a real publisher would.
    let mut producer = backend
        .producer(&dest, 0)
        .await
        .unwrap_or_else(|e| panic!("reopen producer: {e}"));
    let first_new = seq + 1;
    let mut pending: Vec<u64> = (first_new..first_new + 200).collect();
    let mut nacks = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} messages still unconfirmed 60 s after failover",
            pending.len()
        );
        let mut in_flight = FuturesUnordered::new();
        let mut reopen = false;
        for &s in &pending {
            let payload = Header {
                run_id: RUN_ID,
                producer: 0,
                seq: s,
                intended_ns: 0,
            }
            .encode(256);
            match producer.send(payload).await {
                Ok(Some(confirm)) => in_flight.push(async move { (s, confirm.await) }),
                Ok(None) => panic!("no confirm"),
                Err(e) if e.needs_reconnect() => {
                    reopen = true;
                    break;
                }
                Err(e) => panic!("send after failover: {e}"),
            }
        }
        while let Some((s, r)) = in_flight.next().await {
            match r {
                Ok(()) => {
                    confirmed.insert(s);
                }
                Err(e) if e.kind() == "nack" => nacks += 1,
                Err(e) if e.needs_reconnect() => reopen = true,
                Err(e) => panic!("confirm of {s} after failover: {e}"),
            }
        }
        pending.retain(|s| !confirmed.contains(s));
        if reopen {
            producer.close().await;
            producer = backend
                .producer(&dest, 0)
                .await
                .unwrap_or_else(|e| panic!("reopen producer: {e}"));
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!("failover: {nacks} nacks while the queue elected a new leader");
    producer.close().await;

    let topo = backend
        .topology(&dests)
        .await
        .unwrap_or_else(|e| panic!("topology after failover: {e}"));
    let leader = topo.destinations[0].leader.clone().unwrap_or_default();
    assert!(
        leader == "rabbit2@localhost" || leader == "rabbit3@localhost",
        "leader after failover: {leader:?}"
    );

    let mut received = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !confirmed.is_subset(&received) {
        assert!(
            Instant::now() < deadline,
            "only {} of {} confirmed messages consumed",
            received.len(),
            confirmed.len()
        );
        let mut batch = Vec::new();
        consumer
            .poll(&mut batch)
            .await
            .unwrap_or_else(|e| panic!("poll: {e}"));
        let tokens: Vec<AckToken> = batch.iter().map(|d| d.token.clone()).collect();
        for d in &batch {
            let h = Header::decode(&d.payload).unwrap_or_else(|e| panic!("bad payload: {e}"));
            received.insert(h.seq);
        }
        consumer
            .ack(&tokens)
            .await
            .unwrap_or_else(|e| panic!("ack: {e}"));
    }
    consumer.close().await;

    cluster
        .restart_node(0)
        .await
        .unwrap_or_else(|e| panic!("restart rabbit1: {e}"));
    backend
        .teardown(&dests)
        .await
        .unwrap_or_else(|e| panic!("failover teardown: {e}"));
}
