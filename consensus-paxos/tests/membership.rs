//! Configuration changes on Multi-Paxos through the ConsensusEngine, in
//! virtual time: the counterpart of Raft's membership-change scenario. A
//! node added to a 3-node cluster catches up and then votes (once an old
//! follower is removed and the other stopped, the leader and the new node
//! are the only quorum left); a second change while one is in progress is
//! refused with a typed error; removing the leader itself hands leadership
//! to the remaining acceptors and the cluster goes on. Basic Paxos refuses
//! changes as unsupported.
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::plugin::NodeError;
use consensus_actors::sim::block_on_paused;
use consensus_actors::types::{ClientId, NodeId};
use consensus_engine::{ConsensusEngine, EngineError};
use std::time::Duration;

fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

fn cluster(protocol: &str, n: u64) -> ConsensusEngine {
    let engine = ConsensusEngine::new(ConsensusConfig::for_protocol(
        protocol.parse().unwrap(),
        n as usize,
    ))
    .unwrap();
    for id in ids(n) {
        engine.start_node(id, &ids(n)).unwrap();
    }
    engine
}

async fn put(engine: &ConsensusEngine, key: &str, value: &str) -> KvOutput {
    engine
        .execute(KvCommand::put(key, value), ClientId(1))
        .await
        .expect("committed")
        .output
}

/// Waits until `node` applied at least `slot`.
async fn caught_up(engine: &ConsensusEngine, node: NodeId, slot: u64) -> bool {
    for _ in 0..300 {
        if engine
            .node_info(node)
            .await
            .is_ok_and(|i| i.last_applied.0 >= slot)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[test]
fn test_membership_change() {
    block_on_paused(async {
        let engine = cluster("multi-paxos", 3);
        let leader = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        for i in 0..40 {
            assert_eq!(put(&engine, &format!("k{i}"), "v").await, KvOutput::Ok);
        }
        // Add node 4 while both followers are down: the change stays in
        // flight (no quorum), and a second change is refused meanwhile.
        let followers: Vec<NodeId> = ids(3).into_iter().filter(|&n| n != leader).collect();
        for f in &followers {
            engine.stop_node(*f).unwrap();
        }
        let (four, five) = futures::join!(engine.add_node(NodeId(4)), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let five = engine.add_node(NodeId(5)).await;
            for f in &followers {
                engine.restart_node(*f).unwrap();
            }
            five
        });
        assert_eq!(four, Ok(()));
        match five {
            Err(EngineError::Node {
                error: NodeError::Refused(why),
                ..
            }) => assert!(why.contains("in progress"), "{why}"),
            other => panic!("a second change in flight: {other:?}"),
        }
        assert!(!engine.running_nodes().contains(&NodeId(5)));
        let added = NodeId(4);
        // The new node catches up.
        let applied = engine.node_info(leader).await.unwrap().last_applied.0;
        assert!(caught_up(&engine, added, applied).await, "{added} lags");
        // Every node reports the new configuration.
        for n in [leader, added] {
            assert_eq!(
                engine.node_info(n).await.unwrap().members,
                vec![NodeId(1), NodeId(2), NodeId(3), NodeId(4)],
                "{n}'s members after adding node 4"
            );
        }
        // Remove an old follower: the acceptors are the leader, the other
        // old follower and node 4. With that follower stopped too, only
        // the leader and node 4 are left: a commit needs node 4's vote.
        let mut followers = ids(3).into_iter().filter(|&n| n != leader);
        let (old, other) = (followers.next().unwrap(), followers.next().unwrap());
        // (Refused until the first change is in effect: the no-ops that
        // fill its α slots are delivered.)
        let mut removed = engine.remove_node(old).await;
        for _ in 0..100 {
            if !matches!(
                &removed,
                Err(EngineError::Node {
                    error: NodeError::Refused(_),
                    ..
                })
            ) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            removed = engine.remove_node(old).await;
        }
        assert_eq!(removed, Ok(()));
        assert!(!engine.running_nodes().contains(&old));
        // `leader` may have become a follower meanwhile (the restarted
        // followers can win an election): a follower learns decisions from
        // the leader's next Accept or commit, as a Raft follower learns the
        // commit index from the next AppendEntries, so wait for it.
        let mut info = engine.node_info(leader).await.unwrap();
        for _ in 0..100 {
            if !info.members.contains(&old) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            info = engine.node_info(leader).await.unwrap();
        }
        assert!(
            info.members.contains(&added) && !info.members.contains(&old),
            "members after removing {old}: {:?}",
            info.members
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        engine.stop_node(other).unwrap();
        let with_four = tokio::time::timeout(
            Duration::from_secs(3),
            engine.execute(KvCommand::put("with-4", "yes"), ClientId(1)),
        )
        .await;
        assert!(
            matches!(&with_four, Ok(Ok(c)) if c.output == KvOutput::Ok),
            "the leader and the new node commit: {with_four:?}"
        );
        engine.restart_node(other).unwrap();
        // Remove the leader itself: the rest elect a leader and go on.
        let mut removed = engine.remove_node(leader).await;
        for _ in 0..100 {
            if !matches!(
                &removed,
                Err(EngineError::Node {
                    error: NodeError::Refused(_),
                    ..
                })
            ) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            removed = engine.remove_node(leader).await;
        }
        assert_eq!(removed, Ok(()));
        assert!(!engine.running_nodes().contains(&leader));
        let new = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        assert_ne!(new, leader);
        assert_eq!(put(&engine, "after", "removal").await, KvOutput::Ok);
        let read = engine
            .execute(KvCommand::get("k7"), ClientId(2))
            .await
            .unwrap();
        assert_eq!(read.output, KvOutput::Value(Some("v".into())));
        assert_eq!(engine.get_metrics().safety_ok, Some(true));
    })
    .unwrap();
}

#[test]
fn basic_paxos_refuses_configuration_changes() {
    block_on_paused(async {
        let engine = cluster("paxos", 3);
        engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        match engine.add_node(NodeId(4)).await {
            Err(EngineError::Node {
                error: NodeError::Unsupported(_),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    })
    .unwrap();
}
