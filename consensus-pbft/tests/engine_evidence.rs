//! Evidence through the `ConsensusEngine` facade, protocol-neutral: a PBFT
//! variant registered with a flooding Byzantine replica on node 2 answers
//! clients, and `ConsensusEngine::evidence` / `get_metrics` report records
//! against node 2 only; Raft, a crash-only protocol, reports none.
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::sim::block_on_paused;
use consensus_actors::types::{ClientId, NodeId};
use consensus_engine::{ConsensusEngine, EngineOptions, Registry};
use consensus_pbft::byzantine::{self, Behaviour};
use consensus_pbft::node::PbftSlots;
use consensus_pbft::PbftPlugin;
use std::time::Duration;

fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

#[test]
fn the_engine_reports_evidence_against_the_byzantine_replica_only() {
    let mut registry = Registry::builtin();
    let name = "pbft-flood".parse().expect("a valid name");
    registry.register_with::<PbftPlugin>(name, |config| {
        PbftPlugin::with_slots(config, |id| {
            if id == NodeId(2) {
                byzantine::slots(Behaviour::Flood)
            } else {
                PbftSlots::default()
            }
        })
    });
    let config = ConsensusConfig::for_protocol("pbft-flood".parse().expect("name"), 4);
    block_on_paused(async move {
        let engine = ConsensusEngine::with_options(config, EngineOptions::default(), &registry)
            .expect("the variant is registered");
        assert_eq!(engine.evidence().total, 0, "no node started yet");
        for id in ids(4) {
            engine.start_node(id, &ids(4)).expect("starts");
        }
        engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .expect("a primary");
        for i in 0..10 {
            let c = engine
                .execute(KvCommand::put("k", i.to_string()), ClientId(1))
                .await
                .expect("answered despite the flood");
            assert_eq!(c.output, KvOutput::Ok);
        }
        let evidence = engine.evidence();
        assert!(evidence.total > 0, "the flood is detected");
        assert_eq!(evidence.accused, vec![NodeId(2)], "{evidence:?}");
        assert!(evidence.records.iter().all(|e| e.accused == NodeId(2)));
        let metrics = engine.get_metrics();
        assert!(
            metrics.evidence_records >= evidence.total,
            "counted in the metrics: {} < {}",
            metrics.evidence_records,
            evidence.total
        );
    })
    .expect("runtime builds");
}

#[test]
fn a_crash_only_protocol_reports_no_evidence() {
    block_on_paused(async {
        let engine = ConsensusEngine::new(ConsensusConfig::for_protocol(
            "raft".parse().expect("name"),
            3,
        ))
        .expect("raft");
        for id in ids(3) {
            engine.start_node(id, &ids(3)).expect("starts");
        }
        engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .expect("a leader");
        engine
            .execute(KvCommand::put("k", "v"), ClientId(1))
            .await
            .expect("committed");
        let evidence = engine.evidence();
        assert_eq!(evidence.total, 0);
        assert!(evidence.records.is_empty() && evidence.accused.is_empty());
        assert_eq!(engine.get_metrics().evidence_records, 0);
    })
    .expect("runtime builds");
}
