//! `consensus simulate` on Raft, through the registry as the program runs
//! it: the run's trace holds the nodes' state changes (not only the
//! network's deliveries), and a protocol variant registered under its own
//! name runs like the stock one.
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::sim::TraceKind;
use consensus_engine::faults::FaultSelection;
use consensus_engine::simulate::SimulateOptions;
use consensus_engine::workload::WorkloadOptions;
use consensus_engine::Registry;
use std::time::Duration;

fn options(seed: u64) -> SimulateOptions {
    SimulateOptions {
        seed,
        duration: Duration::from_secs(3),
        workload: WorkloadOptions {
            clients: 2,
            ..WorkloadOptions::default()
        },
        faults: FaultSelection::None,
        keep_trace: 1_000_000,
        ..SimulateOptions::default()
    }
}

/// Regression (issue #10): the Raft plug-in never handed the run's trace to
/// its nodes, so a simulation's trace held deliveries and control actions
/// but no state change. Every node now records its role changes.
#[test]
fn the_trace_of_a_raft_simulation_records_state_changes() {
    let config = ConsensusConfig {
        cluster_size: 3,
        ..ConsensusConfig::default()
    };
    let driver = Registry::builtin().driver(&config.protocol).unwrap();
    let run = driver.simulate(&config, &options(4)).unwrap();
    assert!(run.report.passed(), "{:?}", run.report.violations);
    let roles: Vec<_> = run
        .trace
        .iter()
        .filter_map(|r| match &r.kind {
            TraceKind::State { node, label, .. } if label == "raft-role" => Some(*node),
            _ => None,
        })
        .collect();
    assert!(
        !roles.is_empty(),
        "no state change in {} trace records",
        run.trace.len()
    );
    // Every node reported at least its first role.
    for node in 1..=3 {
        assert!(
            roles.iter().any(|n| n.get() == node),
            "n{node} reported no role change"
        );
    }
}

/// A Raft variant registered under a name of its own (here the stock
/// plug-in with a smaller batch) runs through the registry like the stock
/// one, in the simulation and in the benchmark, and reports under its name.
#[test]
fn a_raft_variant_registers_under_its_own_name() {
    let name: consensus_actors::types::ConsensusProtocol = "raft-small-batches".parse().unwrap();
    let mut registry = Registry::builtin();
    registry.register_with(name.clone(), |config: &ConsensusConfig| {
        let config = ConsensusConfig {
            max_log_entries_per_append: 2,
            ..config.clone()
        };
        <consensus_raft::RaftPlugin as consensus_actors::plugin::ProtocolPlugin>::new(&config)
    });
    let config = ConsensusConfig::for_protocol(name.clone(), 3);
    let run = registry
        .driver(&name)
        .unwrap()
        .simulate(&config, &options(2))
        .unwrap();
    assert!(run.report.passed(), "{:?}", run.report.violations);
    assert_eq!(run.report.protocol, name);
    assert!(run.report.committed > 50, "{}", run.report.committed);
    // The same variant under the real-clock benchmark.
    let bench = registry
        .driver(&name)
        .unwrap()
        .bench(
            &config,
            &consensus_engine::BenchOptions {
                clients: 4,
                ops: 200,
                ..consensus_engine::BenchOptions::default()
            },
        )
        .unwrap();
    assert_eq!(bench.ops, 200);
    assert_eq!(bench.protocol, name);
}
