//! The randomized campaign for `paxos` and `multi-paxos`: many seeds, each a
//! 5-node simulated cluster under every fault the engine's nemesis injects
//! (crashes and restarts, partitions, one-way links, isolation, loss,
//! duplication, reordering, component panics) with concurrent clients
//! reading and writing the key-value store through the log. Every run must
//! end with zero SafetyVerifier violations (one value per slot, promises
//! kept) and a client history the linearizability checker accepts.
//! Log compaction is on: a snapshot every 16 slots, so lagging and
//! restarted nodes catch up from snapshots and leaders recover over
//! compacted acceptors.
//!
//! ```sh
//! # CI (the default): 200 seeds per protocol, and 200 of multi-paxos
//! # with membership changes (node 6 added, a random node removed)
//! cargo test -p consensus-paxos --test campaign
//! # the long campaign: 10,000 seeds per protocol
//! PAXOS_CAMPAIGN_SEEDS=10000 cargo test --release -p consensus-paxos --test campaign -- --nocapture
//! # the same through the program, one protocol
//! consensus simulate --protocol multi-paxos --nodes 5 --faults all --duration 5 --snapshot-threshold 16 --seeds 1..10000 --jobs 2
//! consensus simulate --protocol multi-paxos --nodes 5 --faults all --duration 5 --snapshot-threshold 16 --membership-changes --seeds 1..10000 --jobs 2
//! ```
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_engine::campaign::Campaign;
use consensus_engine::{FaultSelection, Registry, SimulateOptions, WorkloadOptions};
use std::time::Duration;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn campaign(protocol: &str, membership_changes: bool) {
    consensus_actors::supervision::install_panic_hook();
    let seeds = env_u64("PAXOS_CAMPAIGN_SEEDS", 200);
    let first = env_u64("PAXOS_CAMPAIGN_FIRST_SEED", 1);
    let secs = env_u64("PAXOS_CAMPAIGN_SECS", 5);
    let mut config = ConsensusConfig::for_protocol(protocol.parse().expect("a protocol name"), 5);
    config.snapshot_threshold = 16;
    let driver = Registry::builtin()
        .driver(&config.protocol)
        .expect("the protocol is registered");
    let options = SimulateOptions {
        duration: Duration::from_secs(secs),
        workload: WorkloadOptions {
            clients: 4,
            ..WorkloadOptions::default()
        },
        faults: FaultSelection::All,
        membership_changes,
        ..SimulateOptions::default()
    };
    let report = Campaign::new(driver, config, options, first..=first + seeds - 1)
        .jobs(1)
        .replay_program("consensus simulate")
        .run();
    println!(
        "{protocol}: {} runs, {} passed, {} committed, {} membership changes, {:.1} s",
        report.runs, report.passed, report.committed, report.membership_changes, report.real_secs
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert!(report.undecided.is_empty(), "{:#?}", report.undecided);
    assert_eq!(report.passed, seeds);
    assert!(
        report.committed >= seeds,
        "the clients got little done: {} commits",
        report.committed
    );
    if membership_changes {
        // Most seeds get both changes in (the add, then the removal) before
        // the faults stop; a run without any would test nothing new.
        assert!(
            report.membership_changes >= seeds,
            "only {} membership changes in {seeds} runs",
            report.membership_changes
        );
    }
}

#[test]
fn paxos_campaign() {
    campaign("paxos", false);
}

#[test]
fn multi_paxos_campaign() {
    campaign("multi-paxos", false);
}

/// The same faults while node 6 is added and a random node of 1..=5 is
/// removed (`--membership-changes`).
#[test]
fn multi_paxos_campaign_with_membership_changes() {
    campaign("multi-paxos", true);
}

/// Seeds that failed once, run again (each a bug fixed):
/// * multi-paxos 1710 with membership changes: a leader that learned of
///   two pending changes prepared only the latest configuration and
///   overwrote a value chosen in the middle one with a no-op.
#[test]
fn regression_seeds() {
    consensus_actors::supervision::install_panic_hook();
    let mut config = ConsensusConfig::for_protocol("multi-paxos".parse().expect("a protocol"), 5);
    config.snapshot_threshold = 16;
    let driver = Registry::builtin()
        .driver(&config.protocol)
        .expect("the protocol is registered");
    let options = SimulateOptions {
        duration: Duration::from_secs(5),
        workload: WorkloadOptions {
            clients: 4,
            ..WorkloadOptions::default()
        },
        faults: FaultSelection::All,
        membership_changes: true,
        ..SimulateOptions::default()
    };
    let report = Campaign::new(driver, config, options, 1710..=1710)
        .jobs(1)
        .run();
    assert!(
        report.passed_all(),
        "{:#?} {:?}",
        report.failed,
        report.errors
    );
    assert_eq!(report.membership_changes, 2);
}

/// `paxos` cannot change its membership: the flag is a usage error, before
/// anything runs.
#[test]
fn paxos_refuses_membership_changes() {
    let config = ConsensusConfig::for_protocol("paxos".parse().expect("a protocol name"), 5);
    let driver = Registry::builtin()
        .driver(&config.protocol)
        .expect("the protocol is registered");
    let options = SimulateOptions {
        duration: Duration::from_secs(1),
        membership_changes: true,
        ..SimulateOptions::default()
    };
    let report = Campaign::new(driver, config, options, 1..=1).jobs(1).run();
    assert_eq!(report.runs, 1);
    assert!(
        report.errors.len() == 1 && report.errors[0].contains("cannot add or remove nodes"),
        "{:?}",
        report.errors
    );
}
