//! The ConsensusEngine facade on PBFT (`byzantine_tolerance = true`), in
//! virtual time: `propose` returns the position f+1 replicas agree the
//! command executed at (the view as term, the sequence number as index),
//! before and after the primary of view 0 is stopped. Any replica takes a
//! client's command (`propose_to` any node works).
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::sim::block_on_paused;
use consensus_actors::types::{ClientId, LogIndex, NodeId, Term};
use consensus_engine::ConsensusEngine;
use std::time::Duration;

mod support;

fn cluster(n: u64) -> ConsensusEngine {
    let config = ConsensusConfig {
        cluster_size: n as usize,
        byzantine_tolerance: true,
        max_byzantine_nodes: 1,
        ..ConsensusConfig::default()
    };
    let engine = support::start(config);
    assert_eq!(engine.protocol(), consensus_pbft::PROTOCOL);
    assert!(engine.capabilities().log_positions);
    engine
}

/// One command at a time: each gets a batch of its own, so the sequence
/// numbers grow by one; the term is view 0 until the primary (n1) stops,
/// then a later view, and the sequence numbers go on growing (they never
/// restart per view).
#[test]
fn propose_returns_the_sequence_number_and_view() {
    block_on_paused(async {
        let engine = cluster(4);
        engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        let mut last = LogIndex(0);
        for i in 0..5 {
            let c = engine
                .propose(KvCommand::put("x", i.to_string()), ClientId(1))
                .await
                .unwrap();
            assert_eq!(c.output, KvOutput::Ok);
            let id = c.log_id.expect("a position");
            assert_eq!(id.term, Term(0), "view 0");
            assert_eq!(id.index, LogIndex(last.get() + 1), "one batch each");
            last = id.index;
        }
        engine.stop_node(NodeId(1)).unwrap();
        // The backups still name n1 (a PBFT view changes only when a
        // request waits): submit through n2, whose request starts it.
        let c = engine
            .propose_to(NodeId(2), KvCommand::put("x", "after"), ClientId(1))
            .await
            .unwrap();
        let id = c.log_id.expect("a position");
        assert!(id.term >= Term(1), "a view change happened: {id:?}");
        assert!(
            id.index > last,
            "sequence numbers go on: {id:?} after {last:?}"
        );
        let read = engine
            .execute(KvCommand::get("x"), ClientId(2))
            .await
            .unwrap();
        assert_eq!(read.output, KvOutput::Value(Some("after".into())));
        assert!(read.log_id.is_some_and(|r| r.index > id.index));
        assert_eq!(engine.get_metrics().safety_ok, Some(true));
    })
    .unwrap();
}
