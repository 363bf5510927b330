//! `consensus simulate --protocol pbft --faults byzantine --byzantine F`
//! through the registry as the program runs it: F replicas drawn from the
//! seed each run a Byzantine behaviour drawn from the seed; the correct
//! replicas stay safe and linearizable, evidence accuses only the
//! Byzantine ones, and the same seed draws the same replicas.
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::types::{ConsensusProtocol, NodeId};
use consensus_engine::faults::{Fault, FaultSelection};
use consensus_engine::simulate::{SimulateOptions, SimulationRun};
use consensus_engine::workload::WorkloadOptions;
use consensus_engine::Registry;
use std::time::Duration;

fn run(
    protocol: &'static str,
    nodes: usize,
    f: Option<usize>,
    seed: u64,
) -> Result<SimulationRun, String> {
    let mut config = ConsensusConfig::for_protocol(ConsensusProtocol::named(protocol), nodes);
    if let Some(f) = f {
        config.byzantine_tolerance = true;
        config.max_byzantine_nodes = f;
    }
    let options = SimulateOptions {
        seed,
        duration: Duration::from_secs(4),
        workload: WorkloadOptions {
            clients: 3,
            ..WorkloadOptions::default()
        },
        faults: FaultSelection::Only(vec![Fault::Crash, Fault::Loss, Fault::Byzantine]),
        ..SimulateOptions::default()
    };
    let driver = Registry::builtin()
        .driver(&config.protocol)
        .map_err(|e| e.to_string())?;
    driver
        .simulate(&config, &options)
        .map_err(|e| e.to_string())
}

fn check(run: &SimulationRun, f: usize) {
    let r = &run.report;
    assert!(r.passed(), "seed {}: {:?}", r.seed, r.violations);
    assert!(r.committed > 0, "seed {}: no progress", r.seed);
    assert_eq!(r.byzantine.len(), f, "{:?}", r.byzantine);
    let evidence = r.evidence.as_ref().expect("PBFT reports its evidence");
    for accused in &evidence.accused {
        assert!(
            r.byzantine.iter().any(|b| b.node == *accused),
            "a correct replica {accused} was accused: {evidence:?}"
        );
    }
}

#[test]
fn byzantine_replicas_drawn_from_the_seed_are_outvoted_and_only_they_are_accused() {
    let mut behaviours = std::collections::BTreeSet::new();
    for seed in 1..=4 {
        let run = run("pbft", 4, Some(1), seed).expect("runs");
        check(&run, 1);
        behaviours.insert(run.report.byzantine[0].behaviour.clone());
    }
    assert!(
        behaviours.len() >= 2,
        "the seed draws the behaviour: {behaviours:?}"
    );
    // n = 7 tolerates two.
    check(&run("pbft", 7, Some(2), 9).expect("runs"), 2);
}

#[test]
fn the_same_seed_draws_the_same_byzantine_replicas() {
    let a = run("pbft", 4, Some(1), 3).expect("runs");
    let b = run("pbft", 4, Some(1), 3).expect("runs");
    assert_eq!(a.report.byzantine, b.report.byzantine);
    assert_eq!(a.report.trace_hash, b.report.trace_hash);
    let picked: Vec<NodeId> = a.report.byzantine.iter().map(|b| b.node).collect();
    assert_eq!(picked.len(), 1);
}

#[test]
fn byzantine_faults_are_refused_where_they_cannot_run() {
    let Err(e) = run("raft", 4, Some(1), 1) else {
        panic!("raft has no Byzantine replicas");
    };
    assert!(e.contains("only tolerates crash faults"), "{e}");
    let Err(e) = run("pbft", 4, None, 1) else {
        panic!("needs --byzantine");
    };
    assert!(e.contains("--byzantine F"), "{e}");
}

/// Regression, seed 3020: with `--byzantine 0` on 4 replicas the quorum
/// was `2f + 1 = 1`, so after a crash, lost messages and component panics
/// n2 committed null requests in view 1 at sequence numbers where n1 had
/// committed clients' requests in view 0. Quorums are now
/// `⌈(n + f + 1) / 2⌉` (3 here), which any two share a replica of. The
/// same faults with 6 replicas and f = 1 (quorum 4, not 3) must hold too.
#[test]
fn quorums_intersect_whatever_n_and_f_under_component_panics() {
    for (nodes, f, seeds) in [(4, 0, [3020, 3050]), (6, 1, [3020, 3021])] {
        for seed in seeds {
            let mut config = ConsensusConfig::for_protocol(ConsensusProtocol::named("pbft"), nodes);
            config.byzantine_tolerance = true;
            config.max_byzantine_nodes = f;
            let options = SimulateOptions {
                seed,
                duration: Duration::from_secs(8),
                workload: WorkloadOptions {
                    clients: 3,
                    ..WorkloadOptions::default()
                },
                faults: FaultSelection::Only(vec![Fault::Crash, Fault::Loss, Fault::Panic]),
                ..SimulateOptions::default()
            };
            let run = Registry::builtin()
                .driver(&config.protocol)
                .expect("pbft is registered")
                .simulate(&config, &options)
                .expect("runs");
            let r = &run.report;
            assert!(
                r.passed(),
                "n={nodes} f={f} seed {seed}: {:?}",
                r.violations
            );
            assert!(r.committed > 0, "n={nodes} f={f} seed {seed}: no progress");
        }
    }
}
