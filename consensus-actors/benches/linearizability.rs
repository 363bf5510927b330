//! How fast the linearizability checker is.
//!
//! - `10k_ops_100_keys`: 10,000 operations from 32 concurrent clients over
//!   100 keys, all with known outcomes (a linearizable history made from a
//!   real sequential execution, each operation's interval around its
//!   linearization point);
//! - `10k_ops_100_keys_3pct_unknown`: the same with 3% of the operations
//!   ending unknown (half of them took effect), which keeps them candidates
//!   for the rest of the search;
//! - `10k_ops_1_key_8_clients`: 10,000 operations of 8 clients on one hot
//!   key (the search is exponential in the concurrency on one key: at 16
//!   clients on one key it needs about a million steps per 2,000
//!   operations, beyond 24 it exhausts the default budget);
//! - `jepsen_etcd_all`: the 103 Jepsen etcd histories of
//!   `<workspace root>/../shared/testdata/jepsen-etcd`, or of
//!   `$JEPSEN_ETCD_DIR` when set (skipped when absent).
//!
//! Run: `cargo bench -p consensus-actors --bench linearizability`.
#![forbid(unsafe_code)]

use consensus_actors::history::{check_history, History, HistoryRecorder, Verdict};
use consensus_actors::kv::{KvCommand, KvOutput, KvStore, StateMachine};
use consensus_actors::ClientId;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::path::PathBuf;

/// A planned operation: who, what, when, and when it takes effect.
struct Plan {
    client: u64,
    command: KvCommand,
    invoke_us: u64,
    complete_us: u64,
    point_us: u64,
    unknown: bool,
    applied: bool,
}

/// `ops` operations from `clients` clients, each client issuing one at a
/// time (1–200 us each, 0–50 us apart), over `keys` keys.
fn linearizable_history(ops: usize, keys: usize, clients: u64, unknown_pct: u32) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut free_at = vec![0u64; clients as usize];
    let mut plans = Vec::with_capacity(ops);
    for i in 0..ops {
        let client = rng.random_range(0..clients);
        let invoke_us = free_at[client as usize] + rng.random_range(0..50);
        let complete_us = invoke_us + rng.random_range(1..200);
        free_at[client as usize] = complete_us;
        let key = format!("k{}", rng.random_range(0..keys));
        let value = i.to_string();
        let command = match rng.random_range(0..10) {
            0..3 => KvCommand::Put { key, value },
            3..7 => KvCommand::Get { key },
            7..9 => KvCommand::Cas {
                key,
                // Filled in with the current value when applied, so that
                // about half of them succeed.
                expected: None,
                new: value,
            },
            _ => KvCommand::Delete { key },
        };
        let unknown = rng.random_range(0..100) < unknown_pct;
        plans.push(Plan {
            client,
            command,
            invoke_us,
            complete_us,
            point_us: rng.random_range(invoke_us..=complete_us),
            unknown,
            applied: !unknown || rng.random_bool(0.5),
        });
    }
    let mut order: Vec<usize> = (0..ops).collect();
    order.sort_by_key(|&i| (plans[i].point_us, i));
    let mut store = KvStore::default();
    let mut outputs: Vec<Option<KvOutput>> = vec![None; ops];
    for &i in &order {
        if let KvCommand::Cas { key, expected, .. } = &mut plans[i].command {
            if rng.random_bool(0.5) {
                *expected = store.get(key).map(str::to_string);
            } else {
                *expected = Some("stale".to_string());
            }
        }
        if plans[i].applied {
            outputs[i] = Some(store.apply(&plans[i].command));
        }
    }
    let mut rec = HistoryRecorder::new();
    let mut events: Vec<usize> = (0..ops).collect();
    events.sort_by_key(|&i| (plans[i].invoke_us, i));
    for i in events {
        let plan = &plans[i];
        let op = rec.invoke(ClientId(plan.client), plan.command.clone(), plan.invoke_us);
        let ended = match (&outputs[i], plan.unknown) {
            (_, true) => rec.unknown(op, plan.complete_us),
            (Some(output), false) => rec.ok(op, output.clone(), plan.complete_us),
            (None, false) => rec.fail(op, plan.complete_us),
        };
        assert!(ended.is_ok());
    }
    rec.into_history()
}

fn jepsen_histories() -> Vec<History> {
    let dir = std::env::var_os("JEPSEN_ETCD_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/jepsen-etcd"),
        PathBuf::from,
    );
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|text| History::from_jepsen(&text).ok())
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("check_history");
    group.sample_size(20);
    for (name, keys, clients, unknown_pct) in [
        ("10k_ops_100_keys", 100, 32, 0),
        ("10k_ops_100_keys_3pct_unknown", 100, 32, 3),
        ("10k_ops_1_key_8_clients", 1, 8, 0),
    ] {
        let history = linearizable_history(10_000, keys, clients, unknown_pct);
        let report = check_history(&history);
        assert_eq!(report.verdict, Verdict::Linearizable, "{report}");
        assert_eq!((report.operations, report.keys), (10_000, keys));
        eprintln!("{name}: {} search steps", report.steps);
        group.bench_function(name, |b| b.iter(|| check_history(black_box(&history))));
    }
    let jepsen = jepsen_histories();
    if jepsen.is_empty() {
        eprintln!("jepsen_etcd_all skipped: no test data");
    } else {
        group.bench_function("jepsen_etcd_all", |b| {
            b.iter(|| {
                jepsen
                    .iter()
                    .filter(|h| check_history(black_box(h)).linearizable)
                    .count()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
