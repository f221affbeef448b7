//! The three RabbitMQ backends against a real local 3-node cluster.
//!
//! One cluster serves the whole file: `rabbitmq_backends_end_to_end` runs every backend check
//! one after another (the backlog checks in `rabbitmq_backends/backlog.rs`, the failover last,
//! in `rabbitmq_backends/failover.rs`) and the guard stops the cluster when it is dropped (also
//! on failure).
//! Ports used: AMQP 5720-5722, HTTP 15720-15722, stream 5730-5732, prometheus 15730-15732,
//! distribution 25720-25722, epmd 4402.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brokerbench::backend::{
    self, AckToken, Backend, Destination, Endpoints, Producer, RabbitEndpoint,
};
use brokerbench::cluster::rabbitmq::http::MgmtClient;
use brokerbench::cluster::rabbitmq::{LocalRabbitCluster, RabbitClusterConfig};
use brokerbench::payload::Header;
use brokerbench::scenario::{
    AckMode, BackendSpec, Placement, PlacementName, RabbitClusterSection, RabbitSettings,
};
use futures::stream::{FuturesUnordered, StreamExt};

#[path = "rabbitmq_backends/backlog.rs"]
mod backlog;
#[path = "rabbitmq_backends/failover.rs"]
mod failover;

const MESSAGES_PER_PRODUCER: u64 = 2000;
const IN_FLIGHT: usize = 100;
const RUN_ID: u64 = 0xB0B;

/// The test cluster; stops it (and removes its folder) when dropped, also on failure.
struct ClusterGuard {
    cluster: LocalRabbitCluster,
    _dir: tempfile::TempDir,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.cluster.down_blocking();
    }
}

fn start_cluster(rt: &tokio::runtime::Runtime) -> ClusterGuard {
    let dir = tempfile::Builder::new()
        .prefix("bb-rmq-backends")
        .tempdir()
        .unwrap_or_else(|e| panic!("temp dir: {e}"));
    let section: RabbitClusterSection = toml::from_str(
        "amqp_base_port = 5720\nhttp_base_port = 15720\nstream_base_port = 5730\nprometheus_base_port = 15730\ndist_base_port = 25720\nepmd_port = 4402\n",
    )
    .unwrap_or_else(|e| panic!("cluster section: {e}"));
    let cfg = RabbitClusterConfig::from_section(dir.path().to_path_buf(), &section);
    let started = Instant::now();
    let cluster = rt
        .block_on(LocalRabbitCluster::up(cfg, &|line: &str| {
            eprintln!("cluster: {line}")
        }))
        .unwrap_or_else(|e| panic!("starting the RabbitMQ cluster failed: {e}"));
    eprintln!("cluster up in {:.1} s", started.elapsed().as_secs_f64());
    ClusterGuard { cluster, _dir: dir }
}

fn settings() -> RabbitSettings {
    match toml::from_str::<RabbitSettings>("") {
        Ok(s) => s,
        Err(e) => panic!("default RabbitMQ settings do not parse: {e}"),
    }
}

async fn build(spec: &BackendSpec, endpoints: &[RabbitEndpoint]) -> Arc<dyn Backend> {
    let endpoints = Endpoints {
        redis: Vec::new(),
        rabbitmq: endpoints.to_vec(),
    };
    match backend::build(spec, &endpoints).await {
        Ok(b) => b,
        Err(e) => panic!("{}: build failed: {e}", spec.type_name()),
    }
}

/// Producer `p` sends `count` messages to `dest` with up to IN_FLIGHT confirms open; returns
/// how many were confirmed (or sent, without confirms), and the producer, still open.
///
/// The caller closes it once the consumers have everything, as the harness does: without
/// confirms, RabbitMQ 3.10 quorum queues can drop the last messages of a channel closed right
/// after publishing them (seen: the last 19 to 56 of 2000, in 2 runs of 25).
async fn produce(
    backend: Arc<dyn Backend>,
    dest: Destination,
    p: u32,
    count: u64,
) -> (u64, Box<dyn Producer>) {
    let mut producer = backend
        .producer(&dest, p as usize)
        .await
        .unwrap_or_else(|e| panic!("producer {p}: {e}"));
    let mut in_flight = FuturesUnordered::new();
    let mut done = 0u64;
    for seq in 0..count {
        while in_flight.len() >= IN_FLIGHT {
            match in_flight.next().await {
                Some(Ok(())) => done += 1,
                Some(Err(e)) => panic!("producer {p}: confirm failed: {e}"),
                None => break,
            }
        }
        let payload = Header {
            run_id: RUN_ID,
            producer: p,
            seq,
            intended_ns: seq,
        }
        .encode(256);
        match producer.send(payload).await {
            Ok(Some(confirm)) => in_flight.push(confirm),
            Ok(None) => done += 1,
            Err(e) => panic!("producer {p}: send {seq} failed: {e}"),
        }
    }
    while let Some(r) = in_flight.next().await {
        match r {
            Ok(()) => done += 1,
            Err(e) => panic!("producer {p}: confirm failed: {e}"),
        }
    }
    (done, producer)
}

/// Consumer `c` reads `dest` until it has `expect` messages (and a little longer, to catch
/// extra deliveries); acks them; returns (producer, seq) of everything received.
async fn consume(
    backend: Arc<dyn Backend>,
    dest: Destination,
    c: usize,
    expect: usize,
    ack: bool,
) -> Vec<(u32, u64)> {
    let mut consumer = backend
        .consumer(&dest, c)
        .await
        .unwrap_or_else(|e| panic!("consumer {c}: {e}"));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_until: Option<Instant> = None;
    let mut batch = Vec::new();
    loop {
        if Instant::now() > deadline {
            panic!(
                "consumer {c} on {}: only {} of {expect} messages within 60 s",
                dest.name,
                seen.len()
            );
        }
        if quiet_until.is_some_and(|t| Instant::now() > t) {
            break;
        }
        batch.clear();
        consumer
            .poll(&mut batch)
            .await
            .unwrap_or_else(|e| panic!("consumer {c}: poll: {e}"));
        let tokens: Vec<AckToken> = batch.iter().map(|d| d.token.clone()).collect();
        for d in &batch {
            let h = Header::decode(&d.payload)
                .unwrap_or_else(|e| panic!("consumer {c}: bad payload: {e}"));
            assert_eq!(h.run_id, RUN_ID);
            assert_eq!(d.payload.len(), 256);
            if ack {
                assert!(
                    matches!(d.token, AckToken::Tag(_)),
                    "manual ack needs a delivery tag, got {:?}",
                    d.token
                );
            } else {
                assert_eq!(d.token, AckToken::None);
            }
            seen.push((h.producer, h.seq));
        }
        if ack && !tokens.is_empty() {
            consumer
                .ack(&tokens)
                .await
                .unwrap_or_else(|e| panic!("consumer {c}: ack: {e}"));
        }
        if seen.len() >= expect && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(500));
        }
    }
    consumer.close().await;
    seen
}

/// After everything was acked, a fresh consumer on a queue gets nothing.
async fn assert_drained(backend: &Arc<dyn Backend>, dest: &Destination) {
    let mut consumer = backend
        .consumer(dest, 7)
        .await
        .unwrap_or_else(|e| panic!("late consumer: {e}"));
    let mut batch = Vec::new();
    for _ in 0..8 {
        consumer
            .poll(&mut batch)
            .await
            .unwrap_or_else(|e| panic!("late consumer: poll: {e}"));
    }
    assert!(
        batch.is_empty(),
        "{}: {} messages redelivered after they were acked",
        dest.name,
        batch.len()
    );
    consumer.close().await;
}

struct Check {
    spec: BackendSpec,
    prefix: &'static str,
    /// Expected leader node name of destination i.
    leaders: [&'static str; 2],
    manual_ack: bool,
    /// Queues (not streams) lose acked messages: a new consumer must get nothing.
    check_drained: bool,
}

async fn run_check(check: Check, endpoints: &[RabbitEndpoint]) {
    let name = check.spec.type_name();
    let backend = build(&check.spec, endpoints).await;
    assert_eq!(backend.label(), check.spec.label());
    let version = backend.version().await.unwrap_or_default();
    assert!(version.starts_with("3."), "{name}: version {version:?}");

    // Setup is idempotent: a second run replaces the first's queues.
    let first = backend
        .setup(check.prefix, 2)
        .await
        .unwrap_or_else(|e| panic!("{name}: setup: {e}"));
    assert_eq!(first.len(), 2);
    let dests = backend
        .setup(check.prefix, 2)
        .await
        .unwrap_or_else(|e| panic!("{name}: second setup: {e}"));
    assert_eq!(dests[0].name, format!("{}-0", check.prefix));
    assert_eq!(dests[1].name, format!("{}-1", check.prefix));

    // A stream's members show in the management statistics some seconds after setup.
    let deadline = Instant::now() + Duration::from_secs(20);
    let topo = loop {
        let topo = backend
            .topology(&dests)
            .await
            .unwrap_or_else(|e| panic!("{name}: topology: {e}"));
        if topo.destinations.iter().all(|p| p.replicas.len() == 2) || Instant::now() > deadline {
            break topo;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(topo.nodes.len(), 3);
    assert!(
        topo.nodes
            .iter()
            .all(|n| n.role == "node" && n.address.starts_with("127.0.0.1:572")),
        "{:?}",
        topo.nodes
    );
    assert_eq!(topo.destinations.len(), 2);
    for (i, p) in topo.destinations.iter().enumerate() {
        assert_eq!(
            p.leader.as_deref(),
            Some(check.leaders[i]),
            "{name}: leader of {}: {p:?}",
            p.name
        );
        let mut replicas = p.replicas.clone();
        replicas.sort();
        assert_eq!(
            replicas.len(),
            2,
            "{name}: {} should have two replicas besides its leader: {p:?}",
            p.name
        );
        assert!(!replicas.contains(&check.leaders[i].to_string()));
    }

    let consumers: Vec<_> = (0..2)
        .map(|c| {
            let (b, d) = (backend.clone(), dests[c].clone());
            tokio::spawn(consume(
                b,
                d,
                c,
                MESSAGES_PER_PRODUCER as usize,
                check.manual_ack,
            ))
        })
        .collect();
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let (b, d) = (backend.clone(), dests[p].clone());
            tokio::spawn(produce(b, d, p as u32, MESSAGES_PER_PRODUCER))
        })
        .collect();
    let mut open_producers = Vec::new();
    for (p, h) in producers.into_iter().enumerate() {
        let (done, producer) = h
            .await
            .unwrap_or_else(|e| panic!("{name}: producer {p} task: {e}"));
        assert_eq!(done, MESSAGES_PER_PRODUCER, "{name}: producer {p}");
        open_producers.push(producer);
    }
    let mut all = HashSet::new();
    let mut total = 0usize;
    for (c, h) in consumers.into_iter().enumerate() {
        let seen = h
            .await
            .unwrap_or_else(|e| panic!("{name}: consumer {c} task: {e}"));
        // Each queue has exactly one producer: consumer c reads producer c's messages.
        assert!(
            seen.iter().all(|(p, _)| *p as usize == c),
            "{name}: consumer {c} got another queue's messages"
        );
        total += seen.len();
        all.extend(seen);
    }
    for producer in open_producers {
        producer.close().await;
    }
    assert_eq!(
        total,
        2 * MESSAGES_PER_PRODUCER as usize,
        "{name}: duplicates or extra deliveries"
    );
    assert_eq!(
        all.len(),
        2 * MESSAGES_PER_PRODUCER as usize,
        "{name}: lost messages"
    );

    if check.check_drained {
        for d in &dests {
            assert_drained(&backend, d).await;
        }
    }

    backend
        .teardown(&dests)
        .await
        .unwrap_or_else(|e| panic!("{name}: teardown: {e}"));
    assert!(
        backend.topology(&dests).await.is_err(),
        "{name}: queues still exist after teardown"
    );
    let mgmt = MgmtClient::new(&endpoints[0].http, &endpoints[0].credentials());
    let policies = mgmt
        .get_json("/api/policies/%2F")
        .await
        .unwrap_or_else(|e| panic!("list policies: {e}"));
    assert_eq!(
        policies.as_array().map(|a| a.len()),
        Some(0),
        "{name}: policies left after teardown: {policies}"
    );
}

#[test]
fn rabbitmq_backends_end_to_end() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut cluster = start_cluster(&rt);
    let endpoints = cluster.cluster.endpoints();

    // Quorum queues, both leaders pinned on node 2, connections spread.
    let mut quorum = settings();
    quorum.leader = Placement::Node(2);
    let mut stream = settings();
    stream.prefetch = 200;
    let mirrored = settings();
    // Variants: no confirms, auto-ack, connections to the leader.
    let mut quorum_auto = settings();
    quorum_auto.confirms = false;
    quorum_auto.ack = AckMode::Auto;
    quorum_auto.connect = Placement::Named(PlacementName::Leader);
    quorum_auto.label = Some("quorum-auto-ack".into());
    let mut stream_auto = settings();
    stream_auto.ack = AckMode::Auto;
    stream_auto.prefetch = 100;
    stream_auto.connect = Placement::Named(PlacementName::Leader);
    let mut mirrored_exactly = settings();
    mirrored_exactly.ha_mode = Some("exactly".into());
    mirrored_exactly.ha_params = Some(3);
    mirrored_exactly.ha_sync_mode = Some("manual".into());
    mirrored_exactly.leader = Placement::Node(3);

    let checks = vec![
        Check {
            spec: BackendSpec::RabbitmqQuorum(quorum),
            prefix: "bbt-quorum",
            leaders: ["rabbit2@localhost", "rabbit2@localhost"],
            manual_ack: true,
            check_drained: true,
        },
        Check {
            spec: BackendSpec::RabbitmqStream(stream),
            prefix: "bbt-stream",
            leaders: ["rabbit1@localhost", "rabbit2@localhost"],
            manual_ack: true,
            check_drained: false,
        },
        Check {
            spec: BackendSpec::RabbitmqMirrored(mirrored),
            prefix: "bbt-mirrored",
            leaders: ["rabbit1@localhost", "rabbit2@localhost"],
            manual_ack: true,
            check_drained: true,
        },
        Check {
            spec: BackendSpec::RabbitmqQuorum(quorum_auto),
            prefix: "bbt-quorum-auto",
            leaders: ["rabbit1@localhost", "rabbit2@localhost"],
            manual_ack: false,
            check_drained: true,
        },
        Check {
            spec: BackendSpec::RabbitmqStream(stream_auto),
            prefix: "bbt-stream-auto",
            leaders: ["rabbit1@localhost", "rabbit2@localhost"],
            manual_ack: false,
            check_drained: false,
        },
        Check {
            spec: BackendSpec::RabbitmqMirrored(mirrored_exactly),
            prefix: "bbt-mirrored-exactly",
            leaders: ["rabbit3@localhost", "rabbit3@localhost"],
            manual_ack: true,
            check_drained: true,
        },
    ];
    for check in checks {
        let started = Instant::now();
        let name = check.spec.label();
        rt.block_on(run_check(check, &endpoints));
        eprintln!("{name}: ok in {:.1} s", started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    rt.block_on(backlog::backlog_checks(&endpoints));
    eprintln!("backlog: ok in {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    rt.block_on(failover::failover_check(&mut cluster.cluster, &endpoints));
    eprintln!("failover: ok in {:.1} s", started.elapsed().as_secs_f64());
    drop(cluster);
}
