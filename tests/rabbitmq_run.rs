//! A whole scenario run on the three RabbitMQ backends against a real local 3-node cluster that
//! the run starts and stops itself. Ports: AMQP 5740-5742, management 15740-15742, stream
//! 5743-5745, prometheus 15743-15745, distribution 25740-25749, epmd 4404.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_stream_and_mirrored_queues_lose_nothing_when_nothing_fails() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = write_scenario(
        tmp.path(),
        "rabbit-it",
        r#"
name = "rabbit-it"
[workload]
message_size = 512
destinations = 3
rate = 600
max_in_flight = 128
warmup = "1s"
duration = "5s"
drain_timeout = "20s"
[clusters.rabbitmq]
amqp_base_port = 5740
http_base_port = 15740
stream_base_port = 5743
prometheus_base_port = 15743
dist_base_port = 25740
epmd_port = 4404
[[backends]]
type = "rabbitmq-quorum"
[[backends]]
type = "rabbitmq-stream"
[[backends]]
type = "rabbitmq-mirrored"
leader = 2
ha_mode = "exactly"
ha_params = 2
"#,
    );
    let out = run_quietly(&scenario, &tmp.path().join("results")).await;
    let cluster_dir = out.dir.join("clusters").join("rabbitmq");
    let left = wait_until_gone(
        &cluster_dir.display().to_string(),
        std::time::Duration::from_secs(10),
    );
    assert!(
        left.is_empty(),
        "beam/epmd processes of the run are still running: {left}"
    );

    let rows = read_csv(&out.dir.join("summary.csv"));
    assert_eq!(
        rows.iter()
            .map(|r| r["backend"].as_str())
            .collect::<Vec<_>>(),
        ["rabbitmq-quorum", "rabbitmq-stream", "rabbitmq-mirrored"]
    );
    for r in &rows {
        let b = &r["backend"];
        assert_eq!(r["status"], "ok", "{b}");
        assert_eq!(
            r["ledger_consistent"], "true",
            "{b}: {}",
            r["ledger_problems"]
        );
        let (sent, confirmed, received) = (num(r, "sent"), num(r, "confirmed"), num(r, "received"));
        assert_eq!(sent, 600.0 * 6.0, "{b}");
        assert_eq!(confirmed, sent, "{b}");
        assert_eq!(received, confirmed, "{b}");
        assert_eq!(num(r, "lost"), 0.0, "{b}");
        assert_eq!(num(r, "duplicates"), 0.0, "{b}");
        let (p50, p99) = (num(r, "e2e_p50_ms"), num(r, "e2e_p99_ms"));
        assert!(p50 > 0.0 && p50 <= p99, "{b}: p50 {p50} p99 {p99}");
    }

    // Everything was confirmed and received: each drain ends as soon as the last producer is
    // done, far from its 20 s timeout (it used to wait out the timeout when a producer's last
    // confirms came in just as the load ended).
    let drains: Vec<(String, f64)> = read_csv(&out.dir.join("timeline.csv"))
        .iter()
        .filter(|r| r["kind"] == "phase" && r["name"] == "drain")
        .map(|r| (r["backend"].clone(), num(r, "end_s") - num(r, "start_s")))
        .collect();
    assert_eq!(drains.len(), 3, "{drains:?}");
    for (b, secs) in &drains {
        assert!(*secs < 5.0, "{b}: the drain lasted {secs:.1} s: {drains:?}");
    }

    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.dir.join("meta.json")).expect("meta"))
            .expect("json");
    for b in meta["backends"].as_array().expect("backends") {
        let dests = b["topology"]["destinations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(dests.len(), 3, "{}", b["label"]);
        for d in &dests {
            let leader = d["leader"].as_str().unwrap_or("");
            assert!(
                leader.starts_with("rabbit") && leader.ends_with("@localhost"),
                "{}: leader unknown: {d}",
                b["label"]
            );
        }
        if b["label"] == "rabbitmq-mirrored" {
            // leader = 2 pins every queue's master on rabbit2; ha-mode exactly 2 gives one mirror.
            for d in &dests {
                assert_eq!(d["leader"], "rabbit2@localhost", "{d}");
                assert_eq!(d["replicas"].as_array().map(|m| m.len()), Some(1), "{d}");
            }
        } else {
            let mut leaders: Vec<&str> =
                dests.iter().filter_map(|d| d["leader"].as_str()).collect();
            leaders.sort();
            leaders.dedup();
            assert_eq!(
                leaders.len(),
                3,
                "{}: leaders spread over the nodes: {dests:?}",
                b["label"]
            );
        }
    }
    // CPU of the three nodes, the harness and the whole host for each backend; no replica lag (RabbitMQ does
    // not publish it to the second).
    let cpu = read_csv(&out.dir.join("cpu.csv"));
    for b in ["rabbitmq-quorum", "rabbitmq-stream", "rabbitmq-mirrored"] {
        let mut nodes: Vec<&str> = cpu
            .iter()
            .filter(|r| r["backend"] == b)
            .map(|r| r["node"].as_str())
            .collect();
        nodes.sort();
        nodes.dedup();
        assert_eq!(
            nodes,
            [
                "harness",
                "host",
                "rabbit1@localhost",
                "rabbit2@localhost",
                "rabbit3@localhost"
            ],
            "{b}"
        );
    }
    assert!(!out.dir.join("replica_lag.csv").exists());
}
