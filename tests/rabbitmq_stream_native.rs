//! `rabbitmq-stream-native` (the stream protocol, on rabbitmq-stream-client) against a real
//! 3-node RabbitMQ 4.0 cluster from the Debian 13 root, in one scenario run (one cluster start):
//! a fault-free stream, a super stream of 3 partitions spread over the nodes and a stream whose
//! leader is killed and restarted, and one whose leader is frozen (SIGSTOP) and resumed, one
//! consumer each; then, in a run of its own, a consumer killed
//! while another waits as the single active consumer's standby, which takes over from the stored
//! offset. And the backend is
//! refused on the host's RabbitMQ 3.10 before anything starts.
//! Ports: RabbitMQ AMQP 5810-5812, HTTP 15810-15812, stream 5813-5815, prometheus
//! 15813-15815, distribution 25810-25819, epmd 4411.

mod common;

use std::collections::BTreeSet;

use common::*;

const CLUSTER: &str = r#"
[clusters.rabbitmq]
amqp_base_port = 5810
http_base_port = 15810
stream_base_port = 5813
prometheus_base_port = 15813
dist_base_port = 25810
epmd_port = 4411
broker_root = "debian13"
"#;

/// One test at a time: they share the ports.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SCENARIO: &str = r#"
name = "native-stream"
[workload]
message_size = 256
destinations = 3
producers_per_destination = 1
consumers_per_destination = 1
rate = 600
warmup = "1s"
duration = "12s"
drain_timeout = "30s"
op_timeout = "5s"

{CLUSTER}
[[faults]]
at = "3s"
action = "kill"
target = "leader-of:0"
restart_after = "3s"
backends = ["native-kill"]

[[faults]]
at = "3s"
action = "pause"
target = "leader-of:0"
restart_after = "6s"
backends = ["native-pause"]

[[backends]]
type = "rabbitmq-stream-native"
label = "native"
store_offset_every = 100

[[backends]]
type = "rabbitmq-stream-native"
label = "native-super"
super_stream_partitions = 3
destinations = 1

[[backends]]
type = "rabbitmq-stream-native"
label = "native-kill"

[[backends]]
type = "rabbitmq-stream-native"
label = "native-pause"
"#;

/// Completed, the ledger adds up, no confirmed message lost, and (with `all_received`) every
/// confirmed message received.
fn check_accounted(s: &Row, all_received: bool) {
    assert_eq!(s["status"], "ok", "{s:?}");
    assert_eq!(s["type"], "rabbitmq-stream-native");
    assert_eq!(s["guarantee"], "majority-written (no fsync)", "{s:?}");
    assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
    assert!(num(s, "confirmed") > 1000.0, "{s:?}");
    assert_eq!(num(s, "lost"), 0.0, "{s:?}");
    assert_eq!(s["backlog_known"], "true", "{s:?}");
    if all_received {
        assert_eq!(num(s, "undelivered"), 0.0, "{s:?}");
    }
    eprintln!(
        "{}: sent {} confirmed {} received {} duplicates {} lost {} undelivered {} e2e p99 {} ms",
        s["backend"],
        s["sent"],
        s["confirmed"],
        s["received"],
        s["duplicates"],
        s["lost"],
        s["undelivered"],
        s["e2e_p99_ms"]
    );
}

fn topology(meta: &serde_json::Value, backend: &str) -> Vec<(String, String, usize)> {
    let b = meta["backends"]
        .as_array()
        .expect("backends")
        .iter()
        .find(|b| b["label"] == backend)
        .unwrap_or_else(|| panic!("{backend} not in meta.json"));
    b["topology"]["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_string(),
                d["leader"].as_str().unwrap_or_default().to_string(),
                d["replicas"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_streams_on_rabbitmq_4_account_for_every_message_under_faults() {
    let _root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "native-stream",
        &SCENARIO.replace("{CLUSTER}", CLUSTER),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let summary = read_csv(&out.dir.join("summary.csv"));
    let faults = read_csv(&out.dir.join("faults.csv"));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.dir.join("meta.json")).expect("meta.json"),
    )
    .expect("meta.json parses");
    let version = meta["brokers"][0]["version"].as_str().unwrap_or_default();
    assert!(version.starts_with("4.0."), "{}", meta["brokers"]);

    // Fault-free: sent == confirmed == received, nothing lost, no duplicates.
    let s = row(&summary, "native");
    check_accounted(s, true);
    for col in ["confirmed", "received"] {
        assert_eq!(num(s, col), num(s, "sent"), "{col}: {s:?}");
    }
    assert_eq!(num(s, "duplicates"), 0.0, "{s:?}");
    assert_eq!(s["drained"], "true", "{s:?}");

    // The super stream: every message once, over 3 partitions led by 3 different nodes.
    let s = row(&summary, "native-super");
    check_accounted(s, true);
    assert_eq!(num(s, "received"), num(s, "sent"), "{s:?}");
    let topo = topology(&meta, "native-super");
    let dest = format!("{}-", topo[0].0);
    let partitions: Vec<&(String, String, usize)> =
        topo.iter().filter(|(n, ..)| n.starts_with(&dest)).collect();
    assert_eq!(partitions.len(), 3, "{topo:?}");
    let leaders: BTreeSet<&str> = partitions.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(
        leaders.len(),
        3,
        "partitions spread over the nodes: {topo:?}"
    );
    assert!(partitions.iter().all(|(.., r)| *r == 2), "{topo:?}");

    // The leader kill: a new leader, publishing recovered, every confirmed message received
    // (duplicates are allowed and counted). Before the consumers moved a stuck group to a new
    // one (backlog::Groups), the consumer of the killed leader's stream stayed a standby behind
    // a dead member in about half the runs, and what it never read counted as undelivered.
    let s = row(&summary, "native-kill");
    check_accounted(s, true);
    assert_eq!(s["drained"], "true", "{s:?}");
    let kill = row(&faults, "native-kill");
    assert_eq!(kill["action"], "kill");
    assert_eq!(kill["status"], "ok", "{kill:?}");
    assert_eq!(kill["leader_before"], kill["node"], "{kill:?}");
    assert!(
        !kill["new_leader"].is_empty() && kill["new_leader"] != kill["node"],
        "{kill:?}"
    );
    assert_eq!(kill["publish_recovered"], "yes", "{kill:?}");
    assert!(num(kill, "rejoin_s") > 0.0, "{kill:?}");
    eprintln!(
        "leader kill: {} killed, new leader {} after {} s, publishing unavailable {} s",
        kill["node"], kill["new_leader"], kill["leader_change_s"], kill["publish_unavailable_s"]
    );

    // The leader frozen, then resumed: the run goes on and ends (the crate's producer closes
    // itself with a blocking call; dropped on a runtime thread while its node was frozen, it
    // once stopped the whole run), and no confirmed message is lost.
    let s = row(&summary, "native-pause");
    check_accounted(s, false);
    let pause = row(&faults, "native-pause");
    assert_eq!(pause["action"], "pause");
    assert_eq!(pause["status"], "ok", "{pause:?}");
    eprintln!(
        "leader pause: {} frozen 6 s, publishing unavailable {} s, consuming {} s, {} received of {} confirmed",
        pause["node"], pause["publish_unavailable_s"], pause["consume_unavailable_s"], s["received"], s["confirmed"]
    );
}

/// Two consumers per stream of a backend with `settings` form a single active consumer group:
/// when the active one is killed (consumer 1, or whichever of its destination receives if
/// consumer 1 is the standby), the other takes over from the offset stored on the broker.
async fn consumer_kill_takes_over_from_the_stored_offset(label: &str, settings: &str) {
    let _root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "native-consumer",
        &format!(
            r#"
name = "native-consumer"
[workload]
message_size = 256
destinations = 3
consumers_per_destination = 2
rate = 600
warmup = "1s"
duration = "8s"
drain_timeout = "30s"
op_timeout = "5s"
{CLUSTER}
[[faults]]
at = "3s"
action = "kill-consumer"
target = "consumer:1"
[[backends]]
type = "rabbitmq-stream-native"
label = "{label}"
store_offset_every = 500
{settings}
"#
        ),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let summary = read_csv(&out.dir.join("summary.csv"));
    let faults = read_csv(&out.dir.join("faults.csv"));
    // Consumer 1 or, if it is its group's standby (it receives nothing), the
    // active consumer of its destination dies; the other takes over from the stored offset, so
    // what the dead one held comes again (redelivery), nothing is lost, and at most one store
    // interval (500 per destination) plus what was held is read twice.
    let s = row(&summary, label);
    check_accounted(s, true);
    let ck = row(&faults, label);
    assert_eq!(ck["action"], "kill-consumer");
    assert_eq!(ck["status"], "ok", "{ck:?}");
    let abandoned = num(ck, "abandoned");
    assert!(abandoned > 0.0, "{ck:?}");
    assert_eq!(
        num(ck, "reprocessed"),
        abandoned,
        "all it held came again: {ck:?}"
    );
    assert!(num(s, "duplicates") <= 500.0 + abandoned, "{s:?}");
    eprintln!(
        "consumer kill ({label}): held {abandoned}, redelivered from {} s to {} s after, \
         duplicates {}",
        ck["redelivery_first_s"], ck["redelivery_last_s"], s["duplicates"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumers_standby_takes_over_from_the_stored_offset() {
    consumer_kill_takes_over_from_the_stored_offset("native-consumer", "").await;
}

/// The same with sub-entries (the wire client's consumers): the standby resumes from the
/// stored offset of a record inside a sub-entry, not of the sub-entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumers_standby_takes_over_from_the_stored_offset_with_sub_entries() {
    consumer_kill_takes_over_from_the_stored_offset(
        "native-consumer-sub",
        "sub_entry_size = 50\ncompression = \"gzip\"",
    )
    .await;
}

/// A consumer slower than its producer leaves messages in the stream when the drain stops: the
/// backend tells how many (the entries after the highest offset its consumers handed out), so
/// they count as undelivered, not lost; with sub-entries too (the wire client reads the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_stream_still_holds_at_the_drain_deadline_is_undelivered_not_lost() {
    let _root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "native-backlog",
        &format!(
            r#"
name = "native-backlog"
[workload]
message_size = 256
destinations = 1
rate = 1000
consumer_delay = "4ms"
warmup = "0s"
duration = "4s"
drain_timeout = "1s"
{CLUSTER}
[[backends]]
type = "rabbitmq-stream-native"
label = "native-slow"

[[backends]]
type = "rabbitmq-stream-native"
label = "native-slow-sub"
sub_entry_size = 50
compression = "gzip"
"#
        ),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let summary = read_csv(&out.dir.join("summary.csv"));
    for label in ["native-slow", "native-slow-sub"] {
        let s = row(&summary, label);
        assert_eq!(s["ledger_consistent"], "true", "{}", s["ledger_problems"]);
        assert_eq!(s["backlog_known"], "true", "{s:?}");
        assert_eq!(s["drained"], "false", "{s:?}");
        let missing = num(s, "confirmed") - num(s, "received");
        assert!(missing > 500.0, "the consumer fell behind: {s:?}");
        assert_eq!(num(s, "undelivered"), missing, "{s:?}");
        assert_eq!(num(s, "lost"), 0.0, "{s:?}");
        eprintln!(
            "slow consumer ({label}): confirmed {} received {} undelivered {}",
            s["confirmed"], s["received"], s["undelivered"]
        );
    }
}

/// On the host's RabbitMQ 3.10 the backend is refused before anything starts, saying why.
#[test]
fn the_native_stream_is_refused_on_rabbitmq_3_10() {
    require_rabbitmq();
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("native-on-3.toml");
    std::fs::write(
        &path,
        "name = \"native-on-3\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n\
         [clusters.rabbitmq]\namqp_base_port = 5810\n\
         [[backends]]\ntype = \"rabbitmq-stream-native\"\n",
    )
    .expect("write scenario");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_brokerbench"))
        .args(["validate", &path.display().to_string()])
        .output()
        .expect("run brokerbench validate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("backends[0].type"), "{stderr}");
    assert!(stderr.contains("3.11 or later"), "says why: {stderr}");
    assert!(stderr.contains("debian13"), "says what to use: {stderr}");
}

/// Sub-entry batching (the wire client's producers and consumers), gzip-compressed and not:
/// without faults, every message sent is confirmed and received once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_entries_gzip_and_uncompressed_account_for_every_message() {
    let _root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "native-sub",
        &format!(
            r#"
name = "native-sub"
[workload]
message_size = 256
destinations = 3
rate = 1500
warmup = "1s"
duration = "8s"
drain_timeout = "30s"
op_timeout = "5s"
{CLUSTER}
[[backends]]
type = "rabbitmq-stream-native"
label = "native-sub-gzip"
sub_entry_size = 50
compression = "gzip"
store_offset_every = 100

[[backends]]
type = "rabbitmq-stream-native"
label = "native-sub-none"
sub_entry_size = 50
compression = "none"
"#
        ),
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let summary = read_csv(&out.dir.join("summary.csv"));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.dir.join("meta.json")).expect("meta.json"),
    )
    .expect("meta.json parses");
    for (label, compression) in [("native-sub-gzip", "gzip"), ("native-sub-none", "none")] {
        let s = row(&summary, label);
        check_accounted(s, true);
        for col in ["confirmed", "received"] {
            assert_eq!(num(s, col), num(s, "sent"), "{col}: {s:?}");
        }
        assert_eq!(num(s, "duplicates"), 0.0, "{s:?}");
        assert_eq!(s["drained"], "true", "{s:?}");
        let b = meta["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .find(|b| b["label"] == label)
            .unwrap_or_else(|| panic!("{label} not in meta.json"));
        let settings = b.to_string();
        assert!(
            settings.contains("\"sub_entry_size\":50")
                && settings.contains(&format!("\"compression\":\"{compression}\"")),
            "{settings}"
        );
    }
}

/// Sub-entry settings the wire client cannot do are refused before anything starts, naming the
/// field and the fix; good ones pass.
#[test]
fn sub_entry_settings_are_checked_before_anything_starts() {
    let _root = debian13_root();
    let tmp = tempfile::tempdir().expect("temp dir");
    let validate = |name: &str, settings: &str| {
        let path = write_scenario(
            tmp.path(),
            name,
            &format!(
                "name = \"{name}\"\n[workload]\nmessage_size = 100\nrate = 10\nduration = \"1s\"\n\
                 {CLUSTER}\n[[backends]]\ntype = \"rabbitmq-stream-native\"\n{settings}\n"
            ),
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_brokerbench"))
            .args(["validate", &path.display().to_string()])
            .output()
            .expect("run brokerbench validate");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (name, settings, field, fix) in [
        (
            "too-small",
            "sub_entry_size = 1",
            "backends[0].sub_entry_size",
            "use 2 to 256",
        ),
        (
            "too-large",
            "sub_entry_size = 1000",
            "backends[0].sub_entry_size",
            "use 2 to 256",
        ),
        (
            "alone",
            "compression = \"gzip\"",
            "backends[0].compression",
            "set sub_entry_size (2 to 256) too",
        ),
        (
            "zstd",
            "sub_entry_size = 100\ncompression = \"zstd\"",
            "backends[0].compression",
            "use \"gzip\" or \"none\"",
        ),
    ] {
        let (code, stderr) = validate(name, settings);
        assert_eq!(code, Some(2), "{name}: {stderr}");
        assert!(stderr.contains(field), "{name} names {field}: {stderr}");
        assert!(stderr.contains(fix), "{name} says {fix}: {stderr}");
    }
    let (code, stderr) = validate("good", "sub_entry_size = 100\ncompression = \"gzip\"");
    assert_eq!(code, Some(0), "{stderr}");
}

/// Stops the cluster it holds when dropped, even when an assertion fails.
struct ClusterGuard(brokerbench::cluster::rabbitmq::LocalRabbitCluster);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.0.down_blocking();
    }
}

/// The payload of message `seq`, as the harness writes it (64 bytes).
fn harness_payload(seq: u64) -> bytes::Bytes {
    brokerbench::payload::Header {
        run_id: 7,
        producer: 0,
        seq,
        intended_ns: 1000 + seq,
    }
    .encode(64)
}

/// The records of the chunks the wire subscription `sub` delivers until the one at offset
/// `last` has come: (offset, payload), and the chunks themselves.
async fn read_records(
    sub: &mut brokerbench::backend::rabbitmq_stream_native::wire::subscription::Subscription,
    last: u64,
) -> (Vec<(u64, bytes::Bytes)>, Vec<bytes::Bytes>) {
    use brokerbench::backend::rabbitmq_stream_native::wire::{amqp, chunk, gzip, subscription};
    let mut gunzip = gzip::GzipReader::default();
    let (mut records, mut chunks) = (Vec::new(), Vec::new());
    while records.last().is_none_or(|(o, _)| *o < last) {
        let next = futures::future::poll_fn(|cx| sub.poll_event(cx));
        match tokio::time::timeout(std::time::Duration::from_secs(10), next).await {
            Ok(Some(subscription::Event::Chunk(c))) => {
                chunk::records(c.clone(), &mut gunzip, |o, r| {
                    records.push((o, amqp::body(&r).expect("a data section")))
                })
                .expect("the chunk decodes");
                chunks.push(c);
                sub.credit(1).expect("credit");
            }
            other => {
                panic!("records up to offset {last} awaited, {records:?} came, then {other:?}")
            }
        }
    }
    (records, chunks)
}

/// The wire client against RabbitMQ 4.0, without the harness: a stream gets 3 plain entries
/// (from rabbitmq-stream-client), then 5 messages as gzip sub-entries of 2 and 3 as one
/// uncompressed sub-entry (the wire publisher, one confirm per sub-entry); a wire subscription
/// reads them back byte for byte, each with its own offset; offsets are stored and queried; and
/// a single active consumer starts where its consumer update answer says. With
/// BROKERBENCH_CAPTURE_DIR set, the chunks are written there as hex (the decoder's fixture,
/// `src/backend/rabbitmq_stream_native/wire/testdata/`, was captured so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_client_reads_plain_entries_and_sub_entries_byte_for_byte() {
    use brokerbench::backend::rabbitmq_stream_native::wire::publisher::{
        Counters, Outcome, Publisher,
    };
    use brokerbench::backend::rabbitmq_stream_native::wire::subscription::{
        query_offset, Group, OffsetSpec, Subscription,
    };
    use brokerbench::backend::rabbitmq_stream_native::wire::{Compression, Target};
    use rabbitmq_stream_client::types::{LeaderLocator, Message};

    let _root = debian13_root();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let table: toml::Table = toml::from_str(CLUSTER).expect("cluster section");
    let mut section: brokerbench::scenario::RabbitClusterSection = table["clusters"]["rabbitmq"]
        .clone()
        .try_into()
        .expect("a RabbitMQ cluster section");
    // Not guest/guest: every client must use the cluster's credentials.
    section.username = "bench".into();
    section.password = "bench-pw.1".into();
    let config = brokerbench::cluster::rabbitmq::RabbitClusterConfig::from_section(
        tmp.path().into(),
        &section,
    );
    let cluster = ClusterGuard(
        brokerbench::cluster::rabbitmq::LocalRabbitCluster::up(config, &|l: &str| {
            eprintln!("[rabbit] {l}")
        })
        .await
        .expect("the cluster starts"),
    );
    let node = &cluster.0.nodes()[0];
    let port = node.stream_port;
    let target = |name: &str| Target {
        host: node.host.clone(),
        port,
        user: "bench".into(),
        password: "bench-pw.1".into(),
        vhost: "/".into(),
        heartbeat_s: 5,
        name: name.into(),
    };
    let stream = "wire-test";

    // The stream, led by node 1 (client-local), and 3 plain entries through the crate.
    let env = rabbitmq_stream_client::Environment::builder()
        .host(&node.host)
        .port(port)
        .username("bench")
        .password("bench-pw.1")
        .build()
        .await
        .expect("the crate connects");
    env.stream_creator()
        .leader_locator(LeaderLocator::ClientLocal)
        .create(stream)
        .await
        .expect("stream created");
    let producer = env.producer().build(stream).await.expect("crate producer");
    let plain: Vec<Message> = (0..3)
        .map(|seq| {
            Message::builder()
                .body(harness_payload(seq).to_vec())
                .build()
        })
        .collect();
    let confirmed = producer
        .batch_send_with_confirm(plain)
        .await
        .expect("crate publishes");
    assert!(confirmed.iter().all(|c| c.confirmed()), "{confirmed:?}");
    producer.close().await.expect("crate producer closes");

    // 5 messages as gzip sub-entries of 2, then 3 as one uncompressed sub-entry.
    for (compression, size, seqs) in [(Compression::Gzip, 2, 3..8), (Compression::None, 3, 8..11)] {
        let counters = Counters::default();
        let mut publisher = Publisher::open(
            &target("wire-test-publisher"),
            stream,
            compression,
            size,
            counters.clone(),
        )
        .await
        .expect("the wire publisher opens");
        let payloads: Vec<bytes::Bytes> = seqs.clone().map(harness_payload).collect();
        let n = payloads.len();
        let mut published = publisher.publish(&payloads, true).expect("published");
        let mut outcomes = Vec::new();
        while let Ok(Some(o)) = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            published.outcomes.recv(),
        )
        .await
        {
            outcomes.push(o);
        }
        outcomes.sort_by_key(|(r, _)| r.start);
        let expected: Vec<_> = published
            .entries
            .iter()
            .map(|r| (r.clone(), Outcome::Confirmed))
            .collect();
        assert_eq!(
            outcomes, expected,
            "{compression:?}: one confirm per sub-entry"
        );
        assert_eq!(published.entries.len(), n.div_ceil(size));
        assert_eq!(
            counters
                .confirmed
                .load(std::sync::atomic::Ordering::Relaxed),
            n as u64
        );
        publisher.close().await;
    }

    // Read back from the first offset: 11 records, offsets 0..11, payloads as sent.
    let mut sub = Subscription::open(
        &target("wire-test-reader"),
        stream,
        OffsetSpec::First,
        10,
        None,
    )
    .await
    .expect("subscribed");
    let (records, chunks) = read_records(&mut sub, 10).await;
    let expected: Vec<(u64, bytes::Bytes)> = (0..11).map(|s| (s, harness_payload(s))).collect();
    assert_eq!(records, expected);
    // The entries' first bytes: plain entries (top bit 0), a gzip sub-batch (0x90) and an
    // uncompressed one (0x80).
    let first_entries: Vec<u8> = chunks
        .iter()
        .map(|c| c[brokerbench::backend::rabbitmq_stream_native::wire::chunk::HEADER_LEN])
        .collect();
    assert!(first_entries[0] & 0x80 == 0, "{first_entries:02x?}");
    assert!(
        first_entries.contains(&0x90) && first_entries.contains(&0x80),
        "{first_entries:02x?}"
    );
    if let Ok(dir) = std::env::var("BROKERBENCH_CAPTURE_DIR") {
        let hex: Vec<String> = chunks
            .iter()
            .map(|c| c.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        std::fs::write(
            std::path::Path::new(&dir).join("deliver-chunks.hex"),
            hex.join("\n") + "\n",
        )
        .expect("write the captured chunks");
    }

    // Offsets stored under a reference come back; an unknown reference has none.
    sub.store_offset("wire-group", stream, 8).expect("stored");
    let start = std::time::Instant::now();
    loop {
        match query_offset(sub.requester(), "wire-group", stream).await {
            Ok(Some(8)) => break,
            other if start.elapsed() > std::time::Duration::from_secs(10) => {
                panic!("offset 8 not stored: {other:?}")
            }
            _ => tokio::task::yield_now().await,
        }
    }
    assert_eq!(
        query_offset(sub.requester(), "nobody", stream)
            .await
            .expect("query"),
        None
    );
    sub.close().await;

    // A single active consumer: the broker's consumer update asks where to start; the answer
    // (after the stored offset) is where the deliveries begin.
    let activated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = activated.clone();
    let on_activate: brokerbench::backend::rabbitmq_stream_native::wire::subscription::OnActivate =
        std::sync::Arc::new(move |active, req| {
            let seen = seen.clone();
            Box::pin(async move {
                seen.store(active, std::sync::atomic::Ordering::SeqCst);
                match query_offset(&req, "wire-group", "wire-test").await {
                    Ok(Some(o)) => OffsetSpec::Offset(o + 1),
                    _ => OffsetSpec::First,
                }
            })
        });
    let group = Group {
        name: "wire-group".into(),
        on_activate,
    };
    let mut sac = Subscription::open(
        &target("wire-test-group"),
        stream,
        OffsetSpec::First,
        10,
        Some(group),
    )
    .await
    .expect("subscribed in a group");
    let (records, chunks) = read_records(&mut sac, 10).await;
    assert!(activated.load(std::sync::atomic::Ordering::SeqCst));
    // Whole chunks come: the first one holds offset 9, and none before the sub-entries' (the
    // crate's plain entries, offsets 0-2, are skipped).
    let firsts: Vec<u64> = records.iter().map(|(o, _)| *o).collect();
    assert!(firsts[0] >= 3 && firsts[0] <= 9, "{firsts:?}");
    assert_eq!(records.last().map(|(o, _)| *o), Some(10), "{firsts:?}");
    assert!(!chunks.is_empty());
    sac.close().await;
}
