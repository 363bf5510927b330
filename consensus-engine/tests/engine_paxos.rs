//! The ConsensusEngine facade on Paxos and Multi-Paxos, in virtual time:
//! `propose` returns the entry's position (ballot round as term, slot as
//! index), `request_vote` delivers a Prepare to the node's acceptor, and the
//! Raft calls with no Paxos counterpart answer typed Unsupported errors.
#![forbid(unsafe_code)]

use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::plugin::NodeError;
use consensus_actors::sim::block_on_paused;
use consensus_actors::types::{ClientId, LogIndex, NodeId, Term};
use consensus_engine::EngineError;
use std::time::Duration;

mod support;

use support::{cluster, ids};

#[test]
fn propose_returns_the_slot_and_ballot_round() {
    for protocol in ["multi-paxos", "paxos"] {
        block_on_paused(async {
            let engine = cluster(protocol, 3);
            engine
                .wait_for_leader(Duration::from_secs(5))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut last = LogIndex(0);
            for i in 0..5 {
                let c = engine
                    .propose(KvCommand::put("x", i.to_string()), ClientId(1))
                    .await
                    .unwrap();
                assert_eq!(c.output, KvOutput::Ok);
                let id = c.log_id.expect("a position");
                assert!(
                    id.index > last,
                    "{protocol}: slots grow: {id:?} after {last:?}"
                );
                last = id.index;
            }
            let read = engine
                .execute(KvCommand::get("x"), ClientId(2))
                .await
                .unwrap();
            assert_eq!(read.output, KvOutput::Value(Some("4".into())), "{protocol}");
            assert_eq!(engine.get_metrics().safety_ok, Some(true));
        })
        .unwrap();
    }
}

#[test]
fn request_vote_is_a_prepare_and_raft_only_calls_are_unsupported() {
    block_on_paused(async {
        let engine = cluster("multi-paxos", 3);
        let leader = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        let follower = ids(3).into_iter().find(|&n| n != leader).unwrap();
        // A Prepare far above every ballot is promised, one below refused
        // with the promise.
        let (t, granted) = engine
            .request_vote(follower, NodeId(9), Term(1000), LogIndex(0), Term(0))
            .await
            .unwrap();
        assert_eq!((t, granted), (Term(1000), true));
        let (t, granted) = engine
            .request_vote(follower, NodeId(9), Term(999), LogIndex(0), Term(0))
            .await
            .unwrap();
        assert_eq!((t, granted), (Term(1000), false));
        match engine
            .append_entries(
                follower,
                leader,
                Term(1),
                LogIndex(0),
                Term(0),
                Vec::new(),
                LogIndex(0),
            )
            .await
        {
            Err(EngineError::Node {
                error: NodeError::Unsupported(op),
                ..
            }) => assert_eq!(op, "append_entries"),
            other => panic!("unexpected {other:?}"),
        }
        // Membership changes exist (tests/membership.rs in consensus-paxos);
        // removing a stranger is a typed refusal.
        assert!(matches!(
            engine.remove_node(NodeId(9)).await,
            Err(EngineError::Node {
                error: NodeError::Refused(_),
                ..
            })
        ));
        // create_snapshot works (tests/paxos_create_snapshot.rs).
    })
    .unwrap();
}
