//! Hot paths of the engine, measured with criterion:
//!
//! * `local_network/route_1000`: 1000 envelopes through the zero-delay
//!   in-process router (the real-time network of the engine and `bench`);
//! * `raft/commit_10000_noops_3_nodes_64_in_flight`: 10,000 empty commands
//!   committed by a 3-node Raft cluster on the real clock, 64 in flight
//!   (the commit phase only, not the start and first election);
//! * `simulate/raft_5_nodes_1s`: one second of virtual time of a 5-node Raft
//!   cluster under 5 clients, no faults, checked (the cost of `simulate`).
//!
//! Run with `cargo bench -p consensus-engine --bench hot_paths`. The
//! protocol's own hot paths (appending and replicating a batch, advancing
//! the commit index) are in `cargo bench -p consensus-raft --bench
//! core_paths`; the linearizability check in `cargo bench -p
//! consensus-actors --bench linearizability`.
#![forbid(unsafe_code)]

use actix::prelude::*;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::transport::{Envelope, RegisterNode, Transport};
use consensus_actors::types::NodeId;
use consensus_engine::bench::{bench, BenchOptions};
use consensus_engine::faults::FaultSelection;
use consensus_engine::network::{GetLocalStats, LocalNetwork};
use consensus_engine::simulate::{simulate, SimulateOptions};
use consensus_engine::PluginSpec;
use consensus_raft::RaftPlugin;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

struct Count(u64);
impl Actor for Count {
    type Context = Context<Self>;
}
impl Handler<Envelope<u64>> for Count {
    type Result = ();
    fn handle(&mut self, env: Envelope<u64>, _: &mut Context<Self>) {
        self.0 += env.msg;
    }
}

fn local_network(c: &mut Criterion) {
    let system = System::new();
    let (net, transport) = system.block_on(async {
        let net = LocalNetwork::<u64>::new().start();
        let sink = Count(0).start();
        net.send(RegisterNode {
            node: NodeId(2),
            inbox: sink.recipient(),
        })
        .await
        .expect("register");
        let transport = Transport::new(NodeId(1), net.clone().recipient());
        (net, transport)
    });
    c.bench_function("local_network/route_1000", |b| {
        b.iter(|| {
            system.block_on(async {
                for i in 0..1000u64 {
                    transport.send(NodeId(2), i);
                }
                net.send(GetLocalStats).await.expect("stats")
            })
        })
    });
}

fn raft_commit(c: &mut Criterion) {
    let config = ConsensusConfig {
        cluster_size: 3,
        ..ConsensusConfig::default()
    };
    let options = BenchOptions {
        clients: 64,
        ops: 10_000,
        ..BenchOptions::default()
    };
    let mut group = c.benchmark_group("raft");
    group.sample_size(10);
    group.throughput(Throughput::Elements(options.ops));
    // Only the commit phase is timed (first submission to last answer, as
    // the run reports it): starting the nodes and the first election on the
    // real clock take longer than the commits and are not a hot path.
    group.bench_function("commit_10000_noops_3_nodes_64_in_flight", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let report = bench(
                        &PluginSpec::<RaftPlugin>::stock(consensus_raft::PROTOCOL),
                        &config,
                        &options,
                    )
                    .expect("bench runs");
                    Duration::from_secs_f64(report.elapsed_secs)
                })
                .sum()
        })
    });
    group.finish();
}

fn simulate_raft(c: &mut Criterion) {
    let config = ConsensusConfig::default();
    let options = SimulateOptions {
        duration: Duration::from_secs(1),
        faults: FaultSelection::None,
        ..SimulateOptions::default()
    };
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.bench_function("raft_5_nodes_1s", |b| {
        b.iter(|| {
            simulate(
                &PluginSpec::<RaftPlugin>::stock(consensus_raft::PROTOCOL),
                &config,
                &options,
            )
            .expect("simulation runs")
        })
    });
    group.finish();
}

criterion_group!(benches, local_network, raft_commit, simulate_raft);
criterion_main!(benches);
