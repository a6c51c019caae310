//! Benchmarks of the audit writer.
//!
//! - `enqueue/record` against `enqueue/bare_channel`: the request-path cost of
//!   `AuditHandle::record` next to a plain `tokio::sync::mpsc` `try_send` of the same event
//!   to a thread that discards it. Both queue bursts of 16384 events into a 65536-slot
//!   queue, so neither hits a full queue; only the sends are timed.
//! - `sustained/record_to_chained_file`: events per second through the writer thread,
//!   SHA-256 chaining and file writes. Bursts of 32768 events go in with `record` (never
//!   a full queue) and each burst is timed up to the end of its `flush`.
//! - `sustained/submit_with_backpressure`: the same with one task calling lossless
//!   `submit` as fast as it can, so the queue stays full and the task waits for space.

#![allow(missing_docs)]

use std::hint::black_box;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shadowcat_audit::{
    AuditConfig, AuditEvent, AuditWriter, EventKind, Fsync, Mode, Outcome, log_files,
};
use shadowcat_core::{Principal, RequestId, SessionId};
use tokio::sync::mpsc;

const QUEUE: usize = 65_536;
const BURST: u64 = 16_384;

fn sample_event() -> AuditEvent {
    let mut principal = Principal::anonymous();
    principal.subject = "user-7f3a@example.com".to_owned();
    AuditEvent::new(EventKind::RequestCompleted {
        method: "tools/call".into(),
        target: Some("search_documents".into()),
        status: 200,
        latency_us: 1843,
        outcome: Outcome::Ok,
        error_code: None,
    })
    .with_request_id(RequestId::next())
    .with_session_id(SessionId::mint())
    .with_client_ip("192.0.2.44".parse().unwrap())
    .with_principal(Arc::new(principal))
}

fn new_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn config(dir: &Path, mode: Mode) -> AuditConfig {
    AuditConfig {
        dir: dir.to_owned(),
        mode,
        queue_capacity: NonZeroUsize::new(QUEUE).unwrap(),
        max_file_bytes: NonZeroU64::new(16 << 20).unwrap(),
        fsync: Fsync::Never,
        ..AuditConfig::default()
    }
}

/// Removes every audit file but the newest, so long runs do not fill the disk.
fn prune_files(dir: &Path) {
    let files = log_files(dir, "audit").unwrap();
    for path in files.iter().rev().skip(1) {
        std::fs::remove_file(path).unwrap();
    }
}

fn enqueue(c: &mut Criterion) {
    let runtime = new_runtime();
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditWriter::new(config(dir.path(), Mode::Lossy))
        .spawn()
        .unwrap();
    let event = sample_event();

    let (sender, mut receiver) = mpsc::channel::<AuditEvent>(QUEUE);
    let consumer = std::thread::spawn(move || {
        let runtime = new_runtime();
        let mut batch = Vec::with_capacity(1024);
        while runtime.block_on(receiver.recv_many(&mut batch, 1024)) > 0 {
            batch.clear();
        }
    });

    let mut group = c.benchmark_group("enqueue");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            let mut left = iterations;
            while left > 0 {
                let burst = left.min(BURST);
                let events: Vec<AuditEvent> = (0..burst).map(|_| event.clone()).collect();
                let started = Instant::now();
                for event in events {
                    audit.record(black_box(event));
                }
                timed += started.elapsed();
                runtime.block_on(audit.flush()).unwrap();
                left -= burst;
            }
            prune_files(dir.path());
            timed
        });
    });
    group.bench_function("bare_channel", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            let mut left = iterations;
            while left > 0 {
                let burst = left.min(BURST);
                let events: Vec<AuditEvent> = (0..burst).map(|_| event.clone()).collect();
                let started = Instant::now();
                for event in events {
                    if sender.try_send(black_box(event)).is_err() {
                        panic!("bare channel full");
                    }
                }
                timed += started.elapsed();
                while sender.capacity() < QUEUE {
                    std::thread::yield_now();
                }
                left -= burst;
            }
            timed
        });
    });
    group.finish();

    assert_eq!(audit.metrics().dropped, 0, "record hit a full queue");
    runtime.block_on(audit.shutdown()).unwrap();
    drop(sender);
    consumer.join().unwrap();
}

fn sustained(c: &mut Criterion) {
    let runtime = new_runtime();
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditWriter::new(config(dir.path(), Mode::Lossless))
        .spawn()
        .unwrap();
    let event = sample_event();

    let mut group = c.benchmark_group("sustained");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.bench_function("record_to_chained_file", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            let mut left = iterations;
            while left > 0 {
                let burst = left.min(BURST * 2);
                let events: Vec<AuditEvent> = (0..burst).map(|_| event.clone()).collect();
                let started = Instant::now();
                for event in events {
                    audit.record(event);
                }
                runtime.block_on(audit.flush()).unwrap();
                timed += started.elapsed();
                left -= burst;
            }
            prune_files(dir.path());
            timed
        });
    });
    group.bench_function("submit_with_backpressure", |b| {
        b.iter_custom(|iterations| {
            let started = Instant::now();
            runtime.block_on(async {
                for _ in 0..iterations {
                    audit.submit(event.clone()).await.unwrap();
                }
                audit.flush().await.unwrap();
            });
            let elapsed = started.elapsed();
            prune_files(dir.path());
            elapsed
        });
    });
    group.finish();

    assert_eq!(audit.metrics().dropped, 0, "record hit a full queue");
    runtime.block_on(audit.shutdown()).unwrap();
}

criterion_group!(benches, enqueue, sustained);
criterion_main!(benches);
