//! Benchmarks of the harness's own hot paths: what every message costs the load tasks, and what
//! one aggregator tick costs. The harness must stay far below the brokers' per-message cost.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use brokerbench::metrics::aggregator::Aggregator;
use brokerbench::metrics::ledger::Ledger;
use brokerbench::metrics::stats::{record_ns, Recorder};
use brokerbench::payload::Header;

fn payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("payload");
    g.throughput(Throughput::Elements(1));
    let h = Header {
        run_id: 1,
        producer: 2,
        seq: 3,
        intended_ns: 4,
    };
    g.bench_function("encode_1KiB", |b| b.iter(|| black_box(h.encode(1024))));
    let p = h.encode(1024);
    g.bench_function("decode", |b| {
        b.iter(|| black_box(Header::decode(black_box(&p))))
    });
    g.finish();
}

fn recording(c: &mut Criterion) {
    let mut g = c.benchmark_group("recording");
    g.throughput(Throughput::Elements(1));
    let r = Recorder::new();
    let mut v = 0u64;
    g.bench_function("recorder_latency_and_count", |b| {
        b.iter(|| {
            v = v.wrapping_add(7919);
            r.with(|s| {
                s.received += 1;
                record_ns(&mut s.e2e, v % 50_000_000);
            })
        })
    });
    let ledger = Ledger::new(1, true);
    let mut seq = 0u64;
    g.bench_function("ledger_send_confirm_receive", |b| {
        b.iter(|| {
            let s = ledger.next_seq(0);
            ledger.on_confirmed(0, s);
            black_box(ledger.on_received(0, s));
            seq += 1;
        })
    });
    g.finish();
}

fn aggregation(c: &mut Criterion) {
    let recorders: Vec<Recorder> = (0..24).map(|_| Recorder::new()).collect();
    let mut agg = Aggregator::new("bench", 0, recorders.clone());
    let mut now = 0u64;
    c.bench_function("aggregator_tick_24_tasks", |b| {
        b.iter(|| {
            for (i, r) in recorders.iter().enumerate() {
                r.with(|s| {
                    s.sent += 100;
                    for k in 0..100u64 {
                        record_ns(&mut s.e2e, (i as u64 + 1) * 10_000 + k * 1_000);
                        record_ns(&mut s.publish, (i as u64 + 1) * 5_000 + k * 1_000);
                    }
                });
            }
            now += 1_000_000_000;
            black_box(agg.tick(now, "measure").0.sent);
        })
    });
}

criterion_group!(benches, payload, recording, aggregation);
criterion_main!(benches);
