//! Benchmarks of the harness's own hot paths: what every message costs the load tasks (payloads,
//! ledger, recording, the consumer's parse path), and what one aggregator tick costs. The
//! harness must stay far below the brokers' per-message cost; `brokerbench calibrate` measures
//! the whole engine end to end (docs/harness-performance.md).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use brokerbench::backend::memory::{MemoryBackend, MemoryFaults};
use brokerbench::backend::{AckToken, Delivery};
use brokerbench::clock::{Clock, MonotonicClock};
use brokerbench::load::consumer::Parsed;
use brokerbench::load::LoadContext;
use brokerbench::metrics::activity::Activity;
use brokerbench::metrics::aggregator::Aggregator;
use brokerbench::metrics::ledger::Ledger;
use brokerbench::metrics::stats::{record_ns, Recorder};
use brokerbench::payload::{Header, PayloadWriter};

/// Messages per batch in the batch benchmarks (the producer's largest batch).
const BATCH: usize = 256;

fn header(seq: u64) -> Header {
    Header {
        run_id: 1,
        producer: 0,
        seq,
        intended_ns: 4,
    }
}

fn payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("payload");
    g.throughput(Throughput::Elements(1));
    let h = header(3);
    // One allocation per message: what the producer did before PayloadWriter.
    g.bench_function("encode_1KiB", |b| b.iter(|| black_box(h.encode(1024))));
    let p = h.encode(1024);
    g.bench_function("decode", |b| {
        b.iter(|| black_box(Header::decode(black_box(&p))))
    });
    let mut w = PayloadWriter::new(1024);
    g.bench_function("writer_1KiB", |b| b.iter(|| black_box(w.write(&h))));
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut w = PayloadWriter::new(1024);
    let mut out: Vec<Bytes> = Vec::with_capacity(BATCH);
    g.bench_function("writer_batch_256x1KiB", |b| {
        b.iter(|| {
            w.write_batch(BATCH, |i| header(i as u64), &mut out);
            // The messages are gone (sent and consumed) before the next batch.
            out.clear();
        })
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
    g.bench_function("ledger_send_confirm_receive", |b| {
        b.iter(|| {
            let s = ledger.next_seq(0);
            ledger.on_confirmed(0, s);
            black_box(ledger.on_received(0, s));
        })
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    let ledger = Ledger::new(1, true);
    let mut ids = Vec::with_capacity(BATCH);
    let mut receipts = Vec::with_capacity(BATCH);
    g.bench_function("ledger_batch_256", |b| {
        b.iter(|| {
            let first = ledger.issue(0, BATCH as u64);
            let confirmed = first..first + BATCH as u64;
            ledger.on_confirmed_ranges(0, std::slice::from_ref(&confirmed));
            ids.clear();
            ids.extend(confirmed.map(|s| (0u32, s)));
            receipts.clear();
            ledger.on_received_many(&ids, &mut receipts);
            black_box(receipts.len())
        })
    });
    g.finish();
}

/// The consumer's parse path for one batch: decode every header, the ledger, the recorder.
fn consumer_parse(c: &mut Criterion) {
    let clock: Arc<dyn Clock> = Arc::new(MonotonicClock);
    let ledger = Arc::new(Ledger::new(4, true));
    let ctx = LoadContext {
        run_id: 1,
        backend: Arc::new(MemoryBackend::new(MemoryFaults::default())),
        ledger: ledger.clone(),
        clock: clock.clone(),
        message_size: 1024,
        activity: Arc::new(Activity::new(0, 1_000_000_000, 1)),
        watch: Default::default(),
    };
    let rec = Recorder::new();
    let mut parsed = Parsed::default();
    let mut next_seq = vec![0u64; 4];
    let mut writers: Vec<PayloadWriter> = (0..4).map(|_| PayloadWriter::new(1024)).collect();
    let mut g = c.benchmark_group("consumer");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("parse_batch_256_from_4_producers", |b| {
        b.iter_batched(
            || {
                // Four producers' batches of 64, issued and confirmed, as a poll returns them.
                let mut payloads = Vec::with_capacity(BATCH);
                for (p, w) in writers.iter_mut().enumerate() {
                    let first = ledger.issue(p, 64);
                    let range = first..first + 64;
                    ledger.on_confirmed_ranges(p, std::slice::from_ref(&range));
                    let now = clock.now_ns();
                    w.write_batch(
                        64,
                        |i| Header {
                            run_id: 1,
                            producer: p as u32,
                            seq: first + i as u64,
                            intended_ns: now,
                        },
                        &mut payloads,
                    );
                }
                payloads
                    .into_iter()
                    .map(|payload| Delivery {
                        payload,
                        redelivered: false,
                        token: AckToken::None,
                    })
                    .collect::<Vec<_>>()
            },
            |batch| {
                parsed.parse(&ctx, &batch, clock.now_ns(), &mut next_seq, &rec);
                batch
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// One aggregator tick over `tasks` recorders, each with 100 latencies of two kinds.
fn tick(c: &mut Criterion, name: &str, tasks: usize) {
    let recorders: Vec<Recorder> = (0..tasks).map(|_| Recorder::new()).collect();
    let mut agg = Aggregator::new("bench", 0, recorders.clone());
    let mut now = 0u64;
    c.bench_function(name, |b| {
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
            black_box(
                agg.tick(now, brokerbench::scenario::timeline::Phase::Measure)
                    .0
                    .sent,
            );
        })
    });
}

fn aggregation(c: &mut Criterion) {
    tick(c, "aggregator_tick_24_tasks", 24);
    // 64 producers and their 64 consumers.
    tick(c, "aggregator_tick_64_producers", 128);
}

criterion_group!(benches, payload, recording, consumer_parse, aggregation);
criterion_main!(benches);
