//! Aggregation on the hot path: 10 gradients of 1,000,000 `f32`, each rule.
//!
//! `cargo bench -p model-agreement --bench aggregation`
#![forbid(unsafe_code)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use model_agreement::Aggregator;
use rand::{Rng, SeedableRng};
use std::hint::black_box;

const WORKERS: usize = 10;
const DIM: usize = 1_000_000;
const F: usize = 1;

fn rules() -> [Aggregator; 7] {
    [
        Aggregator::Mean,
        Aggregator::Median,
        Aggregator::TrimmedMean { beta: 0.1 },
        Aggregator::Krum,
        Aggregator::MultiKrum { m: WORKERS - F },
        Aggregator::Bulyan,
        Aggregator::CenteredClipping {
            tau: 10.0,
            iterations: 3,
        },
    ]
}

fn bench_rules(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let gradients: Vec<Vec<f32>> = (0..WORKERS)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    let refs: Vec<&[f32]> = gradients.iter().map(Vec::as_slice).collect();
    let mut group = c.benchmark_group("aggregate_10x1M");
    group.sample_size(10);
    group.throughput(Throughput::Elements((WORKERS * DIM) as u64));
    for rule in rules() {
        group.bench_with_input(BenchmarkId::from_parameter(rule.name()), &refs, |b, r| {
            b.iter(|| black_box(rule.aggregate(black_box(r), F).expect("bounds hold")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_rules);
criterion_main!(benches);
