//! The Raft scenarios of the specification, each on a simulated cluster of
//! supervised nodes in virtual time (paused clock, seeded network), with the
//! SafetyVerifier's Raft invariants checked on every event. Tests wait on
//! conditions in virtual time, never on real sleeps.
#![forbid(unsafe_code)]

mod common;

use common::*;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::sim::NetworkFaults;
use consensus_actors::types::{ClientId, LogIndex, NodeId, NodeState, Term};
use consensus_raft::error::ProposeError;
use consensus_raft::membership_manager::MembershipChangeError;
use consensus_raft::{Membership, RaftConfig};
use std::collections::BTreeSet;

fn put(i: u64) -> KvCommand {
    KvCommand::put(format!("k{i}"), format!("v{i}"))
}

/// One node times out first, asks for (pre-)votes and wins: a single
/// election round (term 1), every node follows the same leader, and no
/// other node ever became leader.
#[test]
fn test_leader_election_single_candidate() {
    with_cluster(7, 5, RaftConfig::default(), |c| async move {
        let (leader, term) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        assert_eq!(term, Term(1), "pre-vote: one candidate, one term");
        assert!(
            c.wait_statuses(ms(200), |all| all.len() == 5
                && all
                    .iter()
                    .all(|s| s.term == term && s.leader == Some(leader)))
                .await
        );
        // Stable: no further election while the leader is healthy.
        c.sim.run_for(secs(3)).await;
        let statuses = c.statuses().await;
        assert!(statuses
            .iter()
            .all(|s| s.term == term && s.leader == Some(leader)));
        assert_eq!(
            statuses
                .iter()
                .filter(|s| s.role == NodeState::Leader)
                .count(),
            1
        );
        c.assert_safe();
    });
}

/// With pre-vote off and election timeouts drawn from a narrow range, the
/// four nodes time out nearly together and split the vote: no candidate
/// gets a majority in the first term; randomized timeouts then separate the
/// candidates and one wins a later term. At most one leader per term
/// throughout (Election Safety, checked by the verifier).
#[test]
fn test_leader_election_split_vote() {
    let cfg = RaftConfig {
        pre_vote: false,
        election_timeout_ms: (150, 152),
        heartbeat_interval_ms: 50,
        ..RaftConfig::default()
    };
    with_cluster(3, 4, cfg, |c| async move {
        let (leader, term) = c.wait_for_leader(&[], secs(10)).await.expect("a leader");
        assert!(
            term > Term(1),
            "the first term split the vote (won in {term})"
        );
        assert!(
            c.wait_statuses(ms(500), |all| all.iter().all(|s| s.leader == Some(leader)))
                .await
        );
        c.assert_safe();
    });
}

/// Entries proposed to the leader are replicated to every node, committed,
/// applied in order, and the results returned to the proposer; all logs end
/// up identical.
#[test]
fn test_log_replication_basic() {
    with_cluster(11, 3, RaftConfig::default(), |c| async move {
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let l = c.node(leader.get());
        for i in 0..50 {
            assert_eq!(l.propose(put(i), ClientId(1)).await, Ok(KvOutput::Ok));
        }
        assert_eq!(l.get("k49").await, Ok(Some("v49".into())));
        assert_eq!(
            l.propose(KvCommand::cas("k3", Some("v3"), "x"), ClientId(1))
                .await,
            Ok(KvOutput::CasOk)
        );
        assert!(
            c.wait_statuses(secs(1), |all| all.len() == 3
                && all.iter().all(|s| s.last_applied == LogIndex(52)))
                .await
        );
        let reference: Vec<_> = c
            .log_of(leader)
            .iter()
            .map(|(i, t, e)| (*i, *t, e.command.clone()))
            .collect();
        assert_eq!(reference.len(), 52, "no-op + 51 commands");
        for id in 1..=3 {
            let log: Vec<_> = c
                .log_of(NodeId(id))
                .iter()
                .map(|(i, t, e)| (*i, *t, e.command.clone()))
                .collect();
            assert_eq!(log, reference, "log of n{id}");
        }
        c.assert_safe();
    });
}

/// A follower cut off while the leader commits 600 entries (with a
/// majority) catches up once it can hear the leader again, through the
/// fast back-off and batches of at most `max_log_entries_per_append`.
#[test]
fn test_log_replication_with_follower_lag() {
    let cfg = RaftConfig {
        max_log_entries_per_append: 64,
        ..RaftConfig::default()
    };
    with_cluster(5, 3, cfg, |c| async move {
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let lagging = (1..=3).map(NodeId).find(|&n| n != leader).unwrap();
        c.sim.isolate(lagging);
        let l = c.node(leader.get());
        let mut pending = Vec::new();
        for i in 0..600 {
            let l = l.clone();
            pending.push(actix::spawn(
                async move { l.propose(put(i), ClientId(1)).await },
            ));
        }
        for p in pending {
            assert_eq!(p.await.unwrap(), Ok(KvOutput::Ok));
        }
        let lag_status = c.status(lagging).await.unwrap();
        assert!(lag_status.last_log.index < LogIndex(10), "{lag_status:?}");
        c.sim.heal();
        assert!(
            c.wait_statuses(secs(3), |all| all
                .iter()
                .all(|s| s.last_applied == LogIndex(601)))
                .await,
            "{:?}",
            c.statuses().await
        );
        assert_eq!(c.log_of(lagging).len(), 601);
        c.assert_safe();
    });
}

/// The leader crashes: the others elect a new leader within a few election
/// timeouts, nothing committed is lost, and the old leader rejoins as a
/// follower and catches up.
#[test]
fn test_leader_failure_and_reelection() {
    with_cluster(21, 5, RaftConfig::default(), |mut c| async move {
        let (old, old_term) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        for i in 0..20 {
            assert_eq!(c.propose(put(i), secs(1)).await, Ok(KvOutput::Ok));
        }
        c.sim.crash(old).unwrap();
        let crashed_at = c.sim.now();
        let others: Vec<u64> = (1..=5).filter(|&n| n != old.get()).collect();
        let (new, new_term) = c
            .wait_for_leader(&others, secs(3))
            .await
            .expect("a new leader");
        let failover = c.sim.now() - crashed_at;
        assert!(new != old && new_term > old_term);
        // Detection (≤ max election timeout) + one pre-vote/vote round.
        assert!(failover <= ms(700), "failover took {failover:?}");
        let n = c.node(new.get());
        for i in 0..20 {
            assert_eq!(n.get(format!("k{i}")).await, Ok(Some(format!("v{i}"))));
        }
        assert_eq!(n.propose(put(100), ClientId(1)).await, Ok(KvOutput::Ok));
        c.sim.restart(old).unwrap();
        assert!(
            c.wait_statuses(secs(2), |all| all.len() == 5
                && all.iter().all(
                    |s| s.last_applied == all[0].last_applied && s.leader == Some(new)
                ))
            .await
        );
        c.assert_safe();
    });
}

/// A leader in a minority partition cannot commit: its proposal never
/// completes while partitioned; after the partition heals it learns of the
/// new term, steps down, and its uncommitted entry is overwritten (the
/// proposer is told it was dropped).
#[test]
fn test_network_partition_minority_cannot_commit() {
    with_cluster(31, 5, RaftConfig::default(), |c| async move {
        let (old, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        assert_eq!(c.propose(put(0), secs(1)).await, Ok(KvOutput::Ok));
        let buddy = (1..=5).map(NodeId).find(|&n| n != old).unwrap();
        let majority: Vec<NodeId> = (1..=5)
            .map(NodeId)
            .filter(|&n| n != old && n != buddy)
            .collect();
        c.sim
            .partition(vec![vec![old, buddy], majority.clone()])
            .unwrap();
        let old_node = c.node(old.get());
        let stuck = actix::spawn(async move { old_node.propose(put(1), ClientId(1)).await });
        c.sim.run_for(secs(1)).await;
        assert!(!stuck.is_finished(), "a minority leader must not commit");
        let old_status = c.status(old).await.unwrap();
        assert_eq!(old_status.commit_index, LogIndex(2), "{old_status:?}");
        // Check-quorum: the isolated leader steps down by itself.
        assert_ne!(old_status.role, NodeState::Leader, "{old_status:?}");
        c.sim.heal();
        let r = stuck.await.unwrap();
        assert_eq!(r, Err(ProposeError::Dropped));
        let ids: Vec<u64> = majority.iter().map(|n| n.get()).collect();
        let (new, _) = c
            .wait_for_leader(&ids, secs(1))
            .await
            .expect("majority leader");
        assert_eq!(
            c.node(new.get()).get("k1").await,
            Ok(None),
            "the minority write never happened"
        );
        c.assert_safe();
    });
}

/// The majority side of a partition elects a leader (if it lost it) and
/// keeps committing; after healing, the minority catches up.
#[test]
fn test_network_partition_majority_continues() {
    with_cluster(41, 5, RaftConfig::default(), |c| async move {
        let (old, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let buddy = (1..=5).map(NodeId).find(|&n| n != old).unwrap();
        let majority: Vec<u64> = (1..=5)
            .filter(|&n| n != old.get() && n != buddy.get())
            .collect();
        c.sim
            .partition(vec![
                vec![old, buddy],
                majority.iter().map(|&n| NodeId(n)).collect(),
            ])
            .unwrap();
        let (new, _) = c
            .wait_for_leader(&majority, secs(2))
            .await
            .expect("majority leader");
        let n = c.node(new.get());
        for i in 0..30 {
            assert_eq!(n.propose(put(i), ClientId(1)).await, Ok(KvOutput::Ok));
        }
        assert_eq!(n.get("k29").await, Ok(Some("v29".into())));
        c.sim.heal();
        let target = c.status(new).await.unwrap().commit_index;
        assert!(
            c.wait_statuses(secs(2), |all| all.len() == 5
                && all.iter().all(|s| s.last_applied >= target))
                .await
        );
        c.assert_safe();
    });
}

/// Log compaction: past `snapshot_threshold` applied entries the nodes
/// snapshot and purge; a follower that missed the purged entries is brought
/// up to date with InstallSnapshot in chunks; a restarted node recovers
/// from snapshot plus log.
#[test]
fn test_snapshot_compaction() {
    let cfg = RaftConfig {
        snapshot_threshold: 100,
        snapshot_keep_entries: 10,
        snapshot_chunk_bytes: 256,
        ..RaftConfig::default()
    };
    with_cluster(51, 3, cfg, |mut c| async move {
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let lagging = (1..=3).map(NodeId).find(|&n| n != leader).unwrap();
        c.sim.isolate(lagging);
        let l = c.node(leader.get());
        for i in 0..350 {
            assert_eq!(l.propose(put(i), ClientId(1)).await, Ok(KvOutput::Ok));
        }
        let s = c.status(leader).await.unwrap();
        assert!(s.snapshot_index >= LogIndex(300), "{s:?}");
        assert!(
            s.first_log_index > LogIndex(200),
            "the log was purged: {s:?}"
        );
        c.sim.heal();
        assert!(
            c.wait_statuses(secs(3), |all| all
                .iter()
                .all(|s| s.last_applied == LogIndex(351)))
                .await,
            "{:?}",
            c.statuses().await
        );
        let lag = c.status(lagging).await.unwrap();
        assert!(
            lag.snapshot_index >= LogIndex(300),
            "installed a snapshot: {lag:?}"
        );
        // Restart a node: it comes back from snapshot + log.
        c.sim.crash(lagging).unwrap();
        c.sim.restart(lagging).unwrap();
        assert!(
            c.wait_statuses(secs(2), |all| all.len() == 3
                && all.iter().all(|s| s.last_applied == LogIndex(351)))
                .await
        );
        c.sim.crash(leader).unwrap();
        let others: Vec<u64> = (1..=3).filter(|&n| n != leader.get()).collect();
        let (new, _) = c
            .wait_for_leader(&others, secs(3))
            .await
            .expect("new leader");
        let n = c.node(new.get());
        for i in [0, 123, 349] {
            assert_eq!(n.get(format!("k{i}")).await, Ok(Some(format!("v{i}"))));
        }
        c.assert_safe();
    });
}

/// add_node: the new node joins as a learner, catches up, then C_old,new,
/// then C_new; a second change meanwhile is refused. remove_node of the
/// leader: it steps down once C_new is committed and the rest elect a new
/// leader.
#[test]
fn test_membership_change_joint_consensus() {
    with_cluster(61, 3, RaftConfig::default(), |mut c| async move {
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let l = c.node(leader.get());
        for i in 0..40 {
            assert_eq!(l.propose(put(i), ClientId(1)).await, Ok(KvOutput::Ok));
        }
        c.sim.add_node(NodeId(4)).unwrap();
        let adding = {
            let l = l.clone();
            actix::spawn(async move { l.add_node(NodeId(4)).await })
        };
        tokio::task::yield_now().await;
        c.sim.run_for(ms(1)).await;
        assert_eq!(
            l.add_node(NodeId(5)).await,
            Err(MembershipChangeError::ChangeInProgress)
        );
        let four = Membership::new([1, 2, 3, 4].map(NodeId));
        assert_eq!(adding.await.unwrap(), Ok(four.clone()));
        assert!(
            c.wait_statuses(secs(2), |all| all.len() == 4
                && all
                    .iter()
                    .all(|s| s.membership == four && s.last_applied >= LogIndex(41)))
                .await,
            "{:?}",
            c.statuses().await
        );
        // Remove the leader itself.
        let three: BTreeSet<NodeId> = [1, 2, 3, 4]
            .map(NodeId)
            .into_iter()
            .filter(|&n| n != leader)
            .collect();
        let expected = Membership::new(three.iter().copied());
        assert_eq!(l.remove_node(leader).await, Ok(expected.clone()));
        let among: Vec<u64> = three.iter().map(|n| n.get()).collect();
        let (new, _) = c
            .wait_for_leader(&among, secs(3))
            .await
            .expect("a leader among the rest");
        assert_ne!(new, leader);
        let old_status = c.status(leader).await.unwrap();
        assert_ne!(
            old_status.role,
            NodeState::Leader,
            "the removed leader stepped down"
        );
        let n = c.node(new.get());
        assert_eq!(n.propose(put(99), ClientId(1)).await, Ok(KvOutput::Ok));
        assert_eq!(n.get("k99").await, Ok(Some("v99".into())));
        // The removed node never disrupts the new configuration.
        c.sim.run_for(secs(3)).await;
        let (still, _) = c.leader(&among).await.expect("leader");
        assert_eq!(still, new);
        c.assert_safe();
    });
}

/// Many proposals in flight at once are batched into shared AppendEntries
/// and all answered, each with its own result (ordering per key respected).
#[test]
fn test_concurrent_proposals_are_batched() {
    with_cluster(71, 3, RaftConfig::default(), |c| async move {
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let l = c.node(leader.get());
        let before = c.sim.stats().delivered;
        let mut handles = Vec::new();
        for i in 0..1000u64 {
            let l = l.clone();
            handles.push(actix::spawn(async move {
                l.propose(KvCommand::cas("ctr", None, format!("{i}")), ClientId(i))
                    .await
            }));
        }
        let mut ok = 0;
        for h in handles {
            match h.await.unwrap() {
                Ok(KvOutput::CasOk) => ok += 1,
                Ok(KvOutput::CasFailed(Some(_))) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(ok, 1, "exactly one CAS on an absent key wins");
        let messages = c.sim.stats().delivered - before;
        assert!(
            messages < 200,
            "1000 proposals took {messages} messages: not batched"
        );
        c.assert_safe();
    });
}

/// Network faults (loss, duplication, reordering) do not break safety and
/// the cluster still makes progress.
#[test]
fn test_progress_under_lossy_network() {
    let faults = NetworkFaults {
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.1,
        jitter: ms(3),
        ..NetworkFaults::none()
    };
    with_cluster_config(
        consensus_actors::sim::SimConfig::new(81, 5).with_faults(faults),
        RaftConfig::default(),
        |c| async move {
            for i in 0..50 {
                let r = c.propose(put(i), secs(5)).await;
                assert!(
                    matches!(
                        r,
                        Ok(KvOutput::Ok) | Err(ProposeError::Dropped) | Err(ProposeError::Unknown)
                    ),
                    "{r:?}"
                );
            }
            let (l, _) = c.wait_for_leader(&[], secs(2)).await.expect("leader");
            assert_eq!(c.node(l.get()).get("k49").await, Ok(Some("v49".into())));
            c.assert_safe();
        },
    );
}

/// Pre-vote (thesis §9.6): a follower cut off for many election timeouts
/// keeps campaigning in pre-votes only, so its term does not grow; when it
/// comes back it does not disrupt the healthy leader (same leader, same
/// term).
#[test]
fn test_rejoining_node_does_not_disrupt_the_leader() {
    with_cluster(91, 5, RaftConfig::default(), |c| async move {
        let (leader, term) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let loner = (1..=5).map(NodeId).find(|&n| n != leader).unwrap();
        c.sim.isolate(loner);
        c.sim.run_for(secs(3)).await;
        let s = c.status(loner).await.unwrap();
        assert_eq!(s.term, term, "pre-votes do not bump the term: {s:?}");
        c.sim.heal();
        c.sim.run_for(secs(1)).await;
        let (now, now_term) = c.leader(&[]).await.expect("leader");
        assert_eq!((now, now_term), (leader, term));
        assert_eq!(
            c.node(leader.get()).propose(put(1), ClientId(1)).await,
            Ok(KvOutput::Ok)
        );
        c.assert_safe();
    });
}

/// Leadership transfer (thesis §3.10): the leader brings the target up to
/// date and sends it TimeoutNow; the target wins the next term at once (no
/// election timeout, no pre-vote), and proposals resume there.
#[test]
fn test_leadership_transfer() {
    with_cluster(101, 3, RaftConfig::default(), |c| async move {
        let (leader, term) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let l = c.node(leader.get());
        for i in 0..10 {
            assert_eq!(l.propose(put(i), ClientId(1)).await, Ok(KvOutput::Ok));
        }
        let target = (1..=3).map(NodeId).find(|&n| n != leader).unwrap();
        let began = c.sim.now();
        l.transfer_leadership(target)
            .await
            .expect("transfer starts");
        let (new, new_term) = loop {
            if let Some((n, t)) = c.leader(&[]).await {
                if n == target {
                    break (n, t);
                }
            }
            assert!(c.sim.now() - began < ms(100), "transfer took too long");
            tokio::time::sleep(ms(1)).await;
        };
        assert_eq!(new_term, term.next());
        assert!(c.sim.now() - began < ms(50), "no election timeout waited");
        let t = c.node(new.get());
        assert_eq!(t.get("k9").await, Ok(Some("v9".into())));
        assert_eq!(t.propose(put(10), ClientId(1)).await, Ok(KvOutput::Ok));
        assert_eq!(
            l.transfer_leadership(leader).await,
            Err(consensus_raft::error::Refusal::NotLeader)
        );
        c.assert_safe();
    });
}

/// A batch of proposals in one message: one result per command, in order,
/// applied in that order; a follower refuses the whole batch.
#[test]
fn test_propose_batch_returns_results_in_order() {
    with_cluster(111, 3, RaftConfig::default(), |c| async move {
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let batch = vec![
            KvCommand::cas("x", None, "1"),
            KvCommand::cas("x", Some("1"), "2"),
            KvCommand::cas("x", None, "3"),
            KvCommand::get("x"),
        ];
        assert_eq!(
            c.node(leader.get())
                .propose_batch(batch.clone(), ClientId(1))
                .await,
            vec![
                Ok(KvOutput::CasOk),
                Ok(KvOutput::CasOk),
                Ok(KvOutput::CasFailed(Some("2".into()))),
                Ok(KvOutput::Value(Some("2".into()))),
            ]
        );
        let follower = (1..=3).map(NodeId).find(|&n| n != leader).unwrap();
        let refused = c
            .node(follower.get())
            .propose_batch(batch, ClientId(1))
            .await;
        assert_eq!(refused.len(), 4);
        assert!(refused.iter().all(|r| *r
            == Err(ProposeError::NotLeader {
                leader: Some(leader)
            })));
        assert!(c
            .node(leader.get())
            .propose_batch(Vec::new(), ClientId(1))
            .await
            .is_empty());
        c.assert_safe();
    });
}

/// `propose_at` and `propose_batch_at` tell where each command committed:
/// the leader's term and increasing indexes, and every node's persisted log
/// holds exactly that command at that position.
#[test]
fn test_propose_at_reports_the_committed_log_position() {
    with_cluster(112, 3, RaftConfig::default(), |c| async move {
        let (leader, term) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let node = c.node(leader.get());
        let first = node
            .propose_at(put(1), ClientId(7))
            .await
            .expect("committed");
        assert_eq!(first.output, KvOutput::Ok);
        assert_eq!(first.log_id.term, term);
        let second = node
            .propose_at(put(2), ClientId(7))
            .await
            .expect("committed");
        assert_eq!(second.log_id.term, term);
        assert_eq!(second.log_id.index, first.log_id.index.next());
        let batch = node
            .propose_batch_at(vec![put(3), KvCommand::get("k1")], ClientId(8))
            .await;
        let batch: Vec<_> = batch.into_iter().map(|r| r.expect("committed")).collect();
        assert_eq!(batch[0].log_id.index, second.log_id.index.next());
        assert_eq!(batch[1].log_id.index, batch[0].log_id.index.next());
        assert_eq!(batch[1].output, KvOutput::Value(Some("v1".into())));
        let last = batch[1].log_id.index;
        assert!(
            c.wait_statuses(secs(1), |all| all.len() == 3
                && all.iter().all(|s| s.commit_index >= last))
                .await
        );
        let expected = [
            (first.log_id, put(1), ClientId(7)),
            (second.log_id, put(2), ClientId(7)),
            (batch[0].log_id, put(3), ClientId(8)),
            (batch[1].log_id, KvCommand::get("k1"), ClientId(8)),
        ];
        for n in 1..=3 {
            let log = c.log_of(NodeId(n));
            for (log_id, command, client) in &expected {
                let (_, t, entry) = log
                    .iter()
                    .find(|(i, _, _)| *i == log_id.index)
                    .expect("the entry is in the log");
                assert_eq!(*t, log_id.term, "node {n}");
                assert_eq!(
                    entry.command,
                    consensus_raft::RaftCommand::Normal(command.clone()),
                    "node {n}"
                );
                assert_eq!(entry.client_id, *client, "node {n}");
            }
        }
        c.assert_safe();
    });
}

/// A proposal queued for the LogReplicator when it panics is answered once
/// it restarted (it restarts as a follower: NotLeader), not left waiting;
/// a proposal to a node that was shut down is answered Unknown at once.
#[test]
fn test_queued_proposals_survive_restarts_and_stops() {
    with_cluster(113, 3, RaftConfig::default(), |c| async move {
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let node = c.node(leader.get());
        assert_eq!(node.propose(put(1), ClientId(1)).await, Ok(KvOutput::Ok));
        // The panic is in the mailbox before the wake-up of the proposal.
        assert!(node.inject_panic(consensus_raft::node::components::LOG_REPLICATOR));
        let answer = tokio::time::timeout(secs(1), node.propose(put(2), ClientId(1)))
            .await
            .expect("answered, not left in the queue");
        assert!(
            matches!(answer, Err(ProposeError::NotLeader { .. })),
            "{answer:?}"
        );
        // The cluster goes on (a new leader may be elected meanwhile).
        assert_eq!(c.propose(put(3), secs(3)).await, Ok(KvOutput::Ok));
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let node = c.node(leader.get());
        node.shutdown().await;
        let answer = tokio::time::timeout(secs(1), node.propose(put(4), ClientId(1)))
            .await
            .expect("answered at once");
        assert_eq!(answer, Err(ProposeError::Unknown));
    });
}

/// A node added after the log was compacted catches up as a learner through
/// InstallSnapshot, then becomes a voter.
#[test]
fn test_new_node_catches_up_from_a_snapshot() {
    let cfg = RaftConfig {
        snapshot_threshold: 50,
        snapshot_keep_entries: 0,
        snapshot_chunk_bytes: 128,
        ..RaftConfig::default()
    };
    with_cluster(121, 3, cfg, |mut c| async move {
        let (leader, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        let l = c.node(leader.get());
        for i in 0..120 {
            assert_eq!(l.propose(put(i), ClientId(1)).await, Ok(KvOutput::Ok));
        }
        c.sim.run_for(ms(100)).await;
        let s = c.status(leader).await.unwrap();
        assert!(s.first_log_index > LogIndex(50), "compacted: {s:?}");
        c.sim.add_node(NodeId(4)).unwrap();
        let four = Membership::new([1, 2, 3, 4].map(NodeId));
        assert_eq!(l.add_node(NodeId(4)).await, Ok(four.clone()));
        let s4 = c.status(NodeId(4)).await.unwrap();
        assert!(
            s4.snapshot_index > LogIndex(0),
            "installed a snapshot: {s4:?}"
        );
        // n4 learns the configuration that adds it with the next
        // AppendEntries (which may wait for its answer to the previous one).
        assert!(
            c.wait_statuses(secs(1), |all| all
                .iter()
                .all(|s| s.last_applied == all[0].last_applied && s.membership == four)
                && all.len() == 4)
                .await
        );
        let s4 = c.status(NodeId(4)).await.unwrap();
        assert_eq!(s4.membership, four);
        c.assert_safe();
    });
}

/// Concurrent clients (puts, compare-and-swaps and ReadIndex reads on two
/// keys) while the leader crashes and the network loses, duplicates and
/// reorders messages: the history the clients saw is linearizable against
/// the key-value model (checked per key by the workspace's checker).
#[test]
fn test_concurrent_proposals_linearizability() {
    use consensus_actors::history::{check_history, HistoryRecorder};
    use std::cell::RefCell;
    use std::rc::Rc;
    let faults = NetworkFaults {
        loss: 0.02,
        duplicate: 0.02,
        reorder: 0.05,
        jitter: ms(2),
        ..NetworkFaults::none()
    };
    with_cluster_config(
        consensus_actors::sim::SimConfig::new(131, 5).with_faults(faults),
        RaftConfig::default(),
        |mut c| async move {
            c.wait_for_leader(&[], secs(2)).await.expect("a leader");
            let origin = tokio::time::Instant::now();
            let now = move || origin.elapsed().as_micros() as u64;
            let rec = Rc::new(RefCell::new(HistoryRecorder::new()));
            let reg = c.sim.factory().registry();
            let mut clients = Vec::new();
            for id in 1..=6u64 {
                let (rec, reg) = (rec.clone(), reg.clone());
                let mut rng = c.sim.rng_for(&format!("lin-{id}"));
                clients.push(actix::spawn(async move {
                    for seq in 0..120u64 {
                        let key = if rand::Rng::random_bool(&mut rng, 0.5) {
                            "x"
                        } else {
                            "y"
                        };
                        let roll = rand::Rng::random_range(&mut rng, 0..10);
                        let cmd = match roll {
                            0..=3 => KvCommand::get(key),
                            4..=6 => KvCommand::put(key, format!("{id}-{seq}")),
                            _ => KvCommand::cas(key, None, format!("{id}-{seq}")),
                        };
                        // Whoever leads now (the client learns it by asking).
                        let mut leader = None;
                        for n in reg.all() {
                            if n.status()
                                .await
                                .is_some_and(|s| s.role == NodeState::Leader)
                            {
                                leader = Some(n);
                            }
                        }
                        let Some(node) = leader else {
                            tokio::time::sleep(ms(20)).await;
                            continue;
                        };
                        let op = rec.borrow_mut().invoke(ClientId(id), cmd.clone(), now());
                        let res = if let KvCommand::Get { key } = &cmd {
                            let k = key.clone();
                            match tokio::time::timeout(ms(500), node.get(k)).await {
                                Ok(Ok(v)) => Some(Ok(KvOutput::Value(v))),
                                _ => Some(Err(ProposeError::NotLeader { leader: None })),
                            }
                        } else {
                            match tokio::time::timeout(ms(500), node.propose(cmd, ClientId(id)))
                                .await
                            {
                                Ok(Ok(out)) => Some(Ok(out)),
                                Ok(Err(ProposeError::Unknown)) | Err(_) => None,
                                Ok(Err(e)) => Some(Err(e)),
                            }
                        };
                        let at = now();
                        let ended = {
                            let mut r = rec.borrow_mut();
                            match res {
                                Some(Ok(out)) => r.ok(op, out, at),
                                Some(Err(_)) => r.fail(op, at),
                                None => r.unknown(op, at),
                            }
                        };
                        ended.expect("ends once");
                        tokio::time::sleep(ms(rand::Rng::random_range(&mut rng, 1..10))).await;
                    }
                }));
            }
            c.sim.run_for(ms(400)).await;
            let (l, _) = c.leader(&[]).await.expect("leader");
            c.sim.crash(l).unwrap();
            c.sim.run_for(secs(1)).await;
            c.sim.restart(l).unwrap();
            for t in clients {
                t.await.unwrap();
            }
            let history = rec.borrow().history();
            let report = check_history(&history);
            assert!(report.linearizable, "{report}");
            assert_eq!(report.keys, 2);
            let oks = history
                .operations
                .iter()
                .filter(|o| matches!(o.outcome, consensus_actors::history::Outcome::Ok { .. }))
                .count();
            assert!(oks > 500, "{oks} operations completed");
            c.assert_safe();
        },
    );
}

/// A failed `fsync` (a disk fault): the leader's next sync fails with its
/// write torn. The leader must not acknowledge the proposal whose entry
/// that sync was making durable, and must stop (its store refuses writes
/// until the process restarts). The others elect a new leader and go on;
/// after the crash and restart the old leader's store holds only what was
/// synced, it rejoins, and the cluster agrees.
#[test]
fn test_failed_sync_stops_the_node_without_acknowledging() {
    use consensus_actors::storage::{LogStore, SyncFailure};
    with_cluster(23, 3, RaftConfig::default(), |mut c| async move {
        let (old, _) = c.wait_for_leader(&[], secs(2)).await.expect("a leader");
        for i in 0..5 {
            assert_eq!(c.propose(put(i), secs(1)).await, Ok(KvOutput::Ok));
        }
        let store = c.sim.factory().storage(old).expect("store").clone();
        let synced_last = store.last_index();
        store.fail_next_sync(SyncFailure::Torn);
        let leader = c.node(old.get());
        let r = tokio::time::timeout(secs(2), leader.propose(put(100), ClientId(1))).await;
        assert!(
            !matches!(r, Ok(Ok(_))),
            "acknowledged a write whose sync failed: {r:?}"
        );
        assert!(store.has_failed(), "the sync failed");
        assert!(c.status(old).await.is_none(), "the node stopped");
        let others: Vec<u64> = (1..=3).filter(|&n| n != old.get()).collect();
        let (new, _) = c
            .wait_for_leader(&others, secs(3))
            .await
            .expect("a new leader");
        assert_ne!(new, old);
        // The stopped process is gone: crash and restart it.
        c.sim.crash(old).unwrap();
        assert_eq!(store.last_index(), synced_last, "the torn write is lost");
        assert!(!store.has_failed());
        c.sim.restart(old).unwrap();
        assert_eq!(c.propose(put(101), secs(2)).await, Ok(KvOutput::Ok));
        assert!(
            c.wait_statuses(secs(3), |all| all.len() == 3
                && all.iter().all(|s| s.last_applied == all[0].last_applied))
                .await,
            "the restarted node caught up"
        );
        let last = |log: Vec<(LogIndex, Term, _)>| log.last().map(|e| (e.0, e.1));
        assert_eq!(last(c.log_of(old)), last(c.log_of(new)), "same log end");
        c.assert_safe();
    });
}
