//! The protocol-agnostic machinery of `consensus simulate` (workload,
//! nemesis, observer, checking, report, history, timeline), exercised with
//! the toy protocol of `common`: its results are known in advance, so every
//! assertion is exact.
#![forbid(unsafe_code)]

mod common;

use common::{good_toy, lying_toy, toy_config, LYING_TOY, PRIMARY, TOY};
use consensus_actors::config::ConsensusConfig;
use consensus_actors::history::{check_history, History, Outcome, Verdict};
use consensus_engine::faults::{Fault, FaultSelection};
use consensus_engine::simulate::{simulate, SimulateOptions};
use consensus_engine::workload::WorkloadOptions;
use consensus_engine::EngineError;
use std::time::Duration;

fn options(seed: u64, secs: u64, faults: FaultSelection) -> SimulateOptions {
    SimulateOptions {
        seed,
        duration: Duration::from_secs(secs),
        workload: WorkloadOptions {
            clients: 3,
            ..WorkloadOptions::default()
        },
        faults,
        ..SimulateOptions::default()
    }
}

fn config() -> ConsensusConfig {
    toy_config(3)
}

fn lying_config() -> ConsensusConfig {
    ConsensusConfig::for_protocol(LYING_TOY, 3)
}

/// A protocol from outside the engine registers under its own name and runs
/// through the registry like a built-in one. It reports no protocol events
/// of its own, only the neutral leadership event, and its leader, epoch and
/// commits are observed all the same.
#[test]
fn a_protocol_registered_by_name_runs_and_is_observed_without_raft_events() {
    let mut registry = consensus_engine::Registry::builtin();
    registry.register::<common::GoodToy>(TOY);
    assert!(registry.available().contains(&TOY));
    let driver = registry.driver(&TOY).unwrap();
    assert_eq!(driver.protocol(), TOY);
    let run = driver
        .simulate(&config(), &options(1, 3, FaultSelection::None))
        .unwrap();
    let r = &run.report;
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.protocol, TOY);
    assert_eq!(r.leader_changes, 1);
    assert!(r.committed > 100, "{} committed", r.committed);
    let elected: Vec<_> = run
        .observed
        .leadership
        .iter()
        .filter(|e| e.kind == consensus_engine::observer::LeaderEventKind::Elected)
        .collect();
    assert_eq!(elected.len(), 1);
    assert_eq!((elected[0].node, elected[0].epoch), (PRIMARY, 1));
    // A configuration naming another protocol is refused by the toy's spec.
    let raft = ConsensusConfig {
        cluster_size: 3,
        ..ConsensusConfig::default()
    };
    assert!(matches!(
        driver.simulate(&raft, &options(1, 1, FaultSelection::None)),
        Err(EngineError::InvalidSetting(m)) if m.contains("toy")
    ));
}

#[test]
fn same_seed_same_run_other_seed_other_trace() {
    let a = simulate(&good_toy(), &config(), &options(7, 5, FaultSelection::All)).unwrap();
    let b = simulate(&good_toy(), &config(), &options(7, 5, FaultSelection::All)).unwrap();
    let c = simulate(&good_toy(), &config(), &options(8, 5, FaultSelection::All)).unwrap();
    assert_eq!(a.report, b.report);
    assert_eq!(a.history, b.history);
    assert_eq!(a.report.trace_hash.len(), 16);
    assert_ne!(a.report.trace_hash, c.report.trace_hash);
}

#[test]
fn a_fault_free_run_commits_everything_and_passes() {
    let run = simulate(&good_toy(), &config(), &options(1, 3, FaultSelection::None)).unwrap();
    let r = &run.report;
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.faults, Vec::<Fault>::new());
    assert_eq!(r.faults_injected, 0);
    assert_eq!(r.operations.unknown, 0);
    assert_eq!(r.crashes, 0);
    assert_eq!(r.leader_changes, 1, "node 1 leads once, from the start");
    assert!(r.committed > 100, "{} committed", r.committed);
    // Each client: 2 ms to the primary (first contact may be a redirect),
    // then 10 ms of think time: latency is exactly 2 ms.
    assert_eq!(r.latency_us.p50, 2000);
    assert_eq!(r.latency_us.max, 2000);
    assert_eq!(r.operations.ok + r.operations.failed, r.operations.invoked);
    assert_eq!(r.committed, r.operations.ok);
    assert_eq!(r.linearizability, Verdict::Linearizable);
    assert!(r.network.delivered > 0, "backups hear every command");
    // Committed operations per second add up to the total.
    assert_eq!(run.timeline.ok_per_second.iter().sum::<u64>(), r.committed);
    assert_eq!(run.timeline.leaders.len(), 1);
    assert_eq!(run.timeline.leaders[0].node, PRIMARY);
    let json = serde_json::to_value(r).unwrap();
    for field in [
        "protocol",
        "nodes",
        "seed",
        "virtual_secs",
        "committed",
        "leader_changes",
        "latency_us",
        "safety_ok",
        "linearizable",
        "violations",
        "trace_hash",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
    assert_eq!(json["protocol"], "toy");
    assert_eq!(json["latency_us"]["p99"], 2000);
}

#[test]
fn crashes_make_unknown_outcomes_that_stay_linearizable() {
    let only_crash = FaultSelection::Only(vec![Fault::Crash]);
    let mut saw_unknown = false;
    for seed in 1..=4 {
        let run = simulate(
            &good_toy(),
            &config(),
            &options(seed, 20, only_crash.clone()),
        )
        .unwrap();
        let r = &run.report;
        assert!(r.passed(), "seed {seed}: {:?}", r.violations);
        assert!(r.faults_injected > 0);
        assert_eq!(
            r.crashes as usize,
            run.fault_events
                .iter()
                .filter(|e| matches!(e.action, consensus_actors::sim::FaultAction::Crash(_)))
                .count()
        );
        saw_unknown |= r.operations.unknown > 0;
        // The history round-trips through JSON and the library agrees.
        let back = History::from_json(&run.history.to_json()).unwrap();
        assert_eq!(back, run.history);
        assert!(check_history(&back).linearizable);
        let unknown = back
            .operations
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Unknown { .. }))
            .count() as u64;
        assert_eq!(unknown, r.operations.unknown);
    }
    assert!(
        saw_unknown,
        "some crash of the primary caught an operation in flight"
    );
}

#[test]
fn a_lying_protocol_is_caught_by_the_linearizability_check() {
    let run = simulate(
        &lying_toy(),
        &lying_config(),
        &options(3, 3, FaultSelection::None),
    )
    .unwrap();
    let r = &run.report;
    assert!(r.safety_ok);
    assert!(!r.linearizable);
    assert!(!r.passed());
    assert_eq!(r.linearizability, Verdict::NotLinearizable);
    assert!(r
        .violations
        .iter()
        .all(|v| v.kind == "linearizability" && v.name.starts_with('k')));
    assert!(!r.violations.is_empty());
}

#[test]
fn impossible_settings_are_refused_before_running() {
    let zero = SimulateOptions {
        duration: Duration::ZERO,
        ..options(1, 1, FaultSelection::None)
    };
    assert!(matches!(
        simulate(&good_toy(), &config(), &zero),
        Err(EngineError::InvalidSetting(m)) if m.contains("--duration")
    ));
    let no_keys = SimulateOptions {
        workload: WorkloadOptions {
            keys: 0,
            ..WorkloadOptions::default()
        },
        ..options(1, 1, FaultSelection::None)
    };
    assert!(simulate(&good_toy(), &config(), &no_keys).is_err());
    let bad = ConsensusConfig {
        heartbeat_interval_ms: 500,
        ..config()
    };
    assert!(matches!(
        simulate(&good_toy(), &bad, &options(1, 1, FaultSelection::None)),
        Err(EngineError::Config(_))
    ));
    let panic = FaultSelection::Only(vec![Fault::Panic]);
    assert!(matches!(
        simulate(&good_toy(), &config(), &options(1, 1, panic)),
        Err(EngineError::InvalidSetting(m)) if m.contains("panic")
    ));
}

#[test]
fn the_report_picture_shows_the_run() {
    let run = simulate(
        &good_toy(),
        &config(),
        &options(
            5,
            10,
            FaultSelection::Only(vec![Fault::Crash, Fault::Partition]),
        ),
    )
    .unwrap();
    let svg = run.timeline.to_svg("toy");
    assert!(svg.contains("n1 leads term 1"));
    assert!(svg.contains("committed ops/s"));
    if run.report.crashes > 0 {
        assert!(svg.contains("crash n"));
    }
}
