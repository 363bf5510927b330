//! What [`DiskStorage`] costs on this machine's disk.
//!
//! - `group_commit_64`: append a batch of 64 entries (100-byte payloads)
//!   then `sync` (one write and one `fdatasync`); throughput in entries.
//! - `append_sync_1`: append one entry then `sync`: the latency of a
//!   single durable append, which is the `fdatasync` latency of the disk.
//! - `read_64`: read back 64 synced entries with `entries` (one `pread`,
//!   checksums and decoding), from the page cache.
//!
//! The store lives in a temporary directory (`$TMPDIR`, else `/tmp`): set
//! `TMPDIR` to measure another disk.
//!
//! Run: `cargo bench -p consensus-actors --bench disk`
#![forbid(unsafe_code)]

use consensus_actors::storage::{DiskStorage, Durable, LogStore};
use consensus_actors::types::LogIndex;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::cell::Cell;
use std::hint::black_box;

type Entry = (u64, Vec<u8>);
type Store = DiskStorage<u64, Entry>;

fn batch(first: u64, n: u64) -> Vec<Entry> {
    (first..first + n)
        .map(|i| (i, vec![(i % 251) as u8; 100]))
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().expect("temporary directory");
    let mut g = c.benchmark_group("disk");
    g.sample_size(20);

    let mut store = Store::open(dir.path().join("group")).expect("open");
    let next = Cell::new(1u64);
    g.throughput(Throughput::Elements(64));
    g.bench_function("group_commit_64", |b| {
        b.iter_batched(
            || {
                let first = next.get();
                next.set(first + 64);
                batch(first, 64)
            },
            |entries| {
                store.append(&entries).expect("append");
                store.sync().expect("sync");
            },
            BatchSize::SmallInput,
        )
    });

    let mut store = Store::open(dir.path().join("single")).expect("open");
    next.set(1);
    g.throughput(Throughput::Elements(1));
    g.bench_function("append_sync_1", |b| {
        b.iter_batched(
            || {
                let first = next.get();
                next.set(first + 1);
                batch(first, 1)
            },
            |entries| {
                store.append(&entries).expect("append");
                store.sync().expect("sync");
            },
            BatchSize::SmallInput,
        )
    });

    let mut store = Store::open(dir.path().join("read")).expect("open");
    store.append(&batch(1, 64 * 1024)).expect("append");
    store.sync().expect("sync");
    g.throughput(Throughput::Elements(64));
    let mut from = 1u64;
    g.bench_function("read_64", |b| {
        b.iter(|| {
            let got = store
                .entries(LogIndex(from), LogIndex(from + 64), 64)
                .expect("read");
            from = if from > 60 * 1024 { 1 } else { from + 64 };
            black_box(got)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
