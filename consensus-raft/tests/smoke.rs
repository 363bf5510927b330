//! First end-to-end checks of a supervised Raft cluster on the paused clock.

mod common;

use common::*;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::types::{ClientId, NodeId};
use consensus_raft::RaftConfig;
use std::time::Duration;

#[test]
fn three_nodes_elect_commit_and_read() {
    run(async {
        let c = Cluster::new(3, RaftConfig::default(), 1);
        let leader = c
            .wait_for_leader(&[1, 2, 3], Duration::from_secs(5))
            .await
            .expect("a leader");
        let l = &c.nodes[&leader];
        let out = l.propose(KvCommand::put("a", "1"), ClientId(1)).await;
        assert_eq!(out, Ok(KvOutput::Ok));
        assert_eq!(l.get("a").await, Ok(Some("1".to_string())));
        let follower = (1..=3).map(NodeId).find(|n| *n != leader).unwrap();
        let r = c.nodes[&follower]
            .propose(KvCommand::put("b", "2"), ClientId(1))
            .await;
        assert_eq!(
            r,
            Err(consensus_raft::error::ProposeError::NotLeader {
                leader: Some(leader)
            })
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        for s in c.statuses().await {
            assert_eq!(s.commit_index, s.last_log.index, "{s:?}");
        }
        assert!(c.violations().is_empty(), "{:?}", c.violations());
    });
}
