//! The PBFT campaign: many seeds, each a 4-replica cluster (f = 1) under
//! the simulation's seeded nemesis — crashes and restarts, partitions,
//! loss, duplication and reordering — while concurrent clients read and
//! write the key-value store through every node. Every run must end with
//! zero SafetyVerifier violations (PBFT agreement per sequence number
//! across views; prepared agreement per view) and a client history the
//! linearizability checker accepts.
//!
//! ```sh
//! # CI (the default): 200 seeds of 1 virtual second
//! cargo test -p consensus-pbft --test campaign
//! # the long campaign: 10,000 seeds
//! PBFT_CAMPAIGN_SEEDS=10000 cargo test --release -p consensus-pbft --test campaign -- --nocapture
//! ```
//!
//! The pipelined campaign runs the same nemesis with four batches in
//! flight instead of the stock one (100 seeds by default,
//! `PBFT_PIPELINED_SEEDS`).
//!
//! The Byzantine campaign runs every Byzantine behaviour in turn (20 seeds
//! each by default, `PBFT_BYZANTINE_SEEDS`), one replica lying (which one
//! rotates with the behaviour), under the same nemesis.
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::plugin::ProtocolPlugin;
use consensus_actors::types::NodeId;
use consensus_engine::campaign::Campaign;
use consensus_engine::registry::{PluginSpec, Registry};
use consensus_engine::simulate::SimulateOptions;
use consensus_pbft::byzantine::{self, Behaviour};
use consensus_pbft::node::PbftSlots;
use consensus_pbft::PbftPlugin;
use std::sync::Arc;
use std::time::Duration;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn pbft_campaign_is_safe_and_linearizable_under_crashes_partitions_loss_dup_and_reorder() {
    let seeds = env_u64("PBFT_CAMPAIGN_SEEDS", 200);
    let first = env_u64("PBFT_CAMPAIGN_FIRST_SEED", 1);
    let secs = env_u64("PBFT_CAMPAIGN_SECS", 1);
    let config = ConsensusConfig::for_protocol(consensus_pbft::PROTOCOL, 4).byzantine();
    assert_eq!(config.max_byzantine_nodes, 1);
    let driver = Registry::builtin()
        .driver(&config.protocol)
        .expect("pbft is registered");
    let options = SimulateOptions {
        duration: Duration::from_secs(secs),
        ..SimulateOptions::default()
    };
    let report = Campaign::new(driver, config, options, first..=first + seeds - 1)
        .jobs(2)
        .run();
    println!(
        "pbft campaign: {} runs, {} passed, {} committed, {:.1}s",
        report.runs, report.passed, report.committed, report.real_secs
    );
    assert!(
        report.committed > seeds * 10,
        "the clusters made progress: {report:?}"
    );
    assert!(report.passed_all(), "{:#?}", report);
}

/// The stock primary runs one batch at a time; a wider window keeps several
/// PRE-PREPAREs in flight, so view changes find several prepared
/// certificates above the stable checkpoint, and holes to fill with null
/// requests. The same nemesis over that window (100 seeds by default,
/// `PBFT_PIPELINED_SEEDS`).
#[test]
fn pbft_campaign_with_four_batches_in_flight_is_safe_and_linearizable() {
    let seeds = env_u64("PBFT_PIPELINED_SEEDS", 100);
    let first = env_u64("PBFT_CAMPAIGN_FIRST_SEED", 1);
    let secs = env_u64("PBFT_CAMPAIGN_SECS", 1);
    let config = ConsensusConfig::for_protocol(consensus_pbft::PROTOCOL, 4).byzantine();
    let spec = PluginSpec::with_factory(consensus_pbft::PROTOCOL, |config| {
        let mut plugin = PbftPlugin::new(config)?;
        plugin.pbft_config_mut().batches_in_flight = 4;
        Ok(plugin)
    });
    let options = SimulateOptions {
        duration: Duration::from_secs(secs),
        ..SimulateOptions::default()
    };
    let report = Campaign::new(Arc::new(spec), config, options, first..=first + seeds - 1)
        .jobs(2)
        .run();
    println!(
        "pbft pipelined campaign: {} runs, {} passed, {} committed, {:.1}s",
        report.runs, report.passed, report.committed, report.real_secs
    );
    assert!(report.committed > seeds * 10, "the clusters made progress");
    assert!(report.passed_all(), "{:#?}", report);
}

#[test]
fn pbft_campaign_with_one_byzantine_replica_of_each_kind_is_safe_and_linearizable() {
    let seeds = env_u64("PBFT_BYZANTINE_SEEDS", 20);
    let secs = env_u64("PBFT_CAMPAIGN_SECS", 1);
    let mut committed = 0;
    for (i, behaviour) in Behaviour::ALL.into_iter().enumerate() {
        // The primary of view 0 is n1, of view 1 n2: the behaviours of a
        // primary go there, the others rotate.
        let liar = match behaviour {
            Behaviour::Equivocate | Behaviour::WrongDigest => NodeId(1),
            Behaviour::LyingNewView => NodeId(2),
            _ => NodeId(1 + (i as u64 % 4)),
        };
        let config = ConsensusConfig::for_protocol(consensus_pbft::PROTOCOL, 4).byzantine();
        let spec = PluginSpec::with_factory(consensus_pbft::PROTOCOL, move |config| {
            PbftPlugin::with_slots(config, move |node| {
                if node == liar {
                    byzantine::slots(behaviour)
                } else {
                    PbftSlots::default()
                }
            })
        });
        let options = SimulateOptions {
            duration: Duration::from_secs(secs),
            ..SimulateOptions::default()
        };
        let first = 1 + 1000 * i as u64;
        let report = Campaign::new(Arc::new(spec), config, options, first..=first + seeds - 1)
            .jobs(2)
            .run();
        println!(
            "pbft byzantine campaign ({behaviour:?} at {liar}): {} runs, {} passed, {} committed, {:.1}s",
            report.runs, report.passed, report.committed, report.real_secs
        );
        assert!(report.passed_all(), "{behaviour:?}: {:#?}", report);
        committed += report.committed;
    }
    assert!(committed > seeds * 7 * 10, "the clusters made progress");
}
