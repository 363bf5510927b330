//! `ConsensusEngine::create_snapshot` on Paxos and Multi-Paxos clusters, in
//! virtual time: it answers what Raft's does (the serialized key-value
//! store, which `KvStore::restore` reads back) at a linearizable point:
//! every write acknowledged before the call is in it (the leader's learner
//! takes it at its last delivered slot, after a read through the log).
#![forbid(unsafe_code)]

use consensus_actors::kv::{KvCommand, KvStore, StateMachine};
use consensus_actors::sim::block_on_paused;
use consensus_actors::types::ClientId;
use std::time::Duration;

mod support;

use support::cluster;

fn restore(bytes: &[u8]) -> KvStore {
    let mut kv = KvStore::default();
    kv.restore(bytes).expect("a key-value snapshot");
    kv
}

#[test]
fn create_snapshot_holds_every_acknowledged_write() {
    for protocol in ["multi-paxos", "paxos"] {
        block_on_paused(async {
            let engine = cluster(protocol, 3);
            let leader = engine
                .wait_for_leader(Duration::from_secs(5))
                .await
                .unwrap();
            // Nothing written yet: the empty store.
            let empty = restore(&engine.create_snapshot().await.unwrap());
            assert_eq!(empty.len(), 0, "{protocol}");
            for i in 0..10 {
                engine
                    .execute(
                        KvCommand::put(format!("k{i}"), format!("v{i}")),
                        ClientId(1),
                    )
                    .await
                    .unwrap();
            }
            let first = restore(&engine.create_snapshot().await.unwrap());
            assert_eq!(first.len(), 10, "{protocol}");
            assert_eq!(first.get("k7"), Some("v7"), "{protocol}");
            let info = engine.node_info(leader).await.unwrap();
            assert!(
                info.last_applied.0 >= 11,
                "{protocol}: ten writes and a read applied: {info:?}"
            );
            // Later writes are in the next snapshot, an overwrite too.
            engine
                .execute(KvCommand::put("k7", "again"), ClientId(2))
                .await
                .unwrap();
            engine
                .execute(KvCommand::delete("k0"), ClientId(2))
                .await
                .unwrap();
            let second = restore(&engine.create_snapshot().await.unwrap());
            assert_eq!(second.len(), 9, "{protocol}");
            assert_eq!(second.get("k7"), Some("again"), "{protocol}");
            assert_eq!(second.get("k0"), None, "{protocol}");
            assert_eq!(engine.get_metrics().safety_ok, Some(true), "{protocol}");
        })
        .unwrap();
    }
}
