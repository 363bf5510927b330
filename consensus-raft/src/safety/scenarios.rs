//! End-to-end scenarios: a long, correct Raft history built by a small model
//! of the protocol (elections of the most up-to-date node, replication to a
//! rotating majority, uncommitted entries left behind by deposed leaders and
//! repaired later, compaction, crashes) must pass every Raft invariant; the
//! same history with one bug injected must not.

use super::{became_leader, stepped_down};
use super::{RaftSafetyEvent, SafetyChecker, SafetyEvent};
use consensus_actors::types::{LogIndex, NodeId, Term};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A node of the model: its log as (term, digest) from index 1.
#[derive(Clone, Default)]
struct ModelNode {
    log: Vec<(Term, u64)>,
    commit: u64,
    applied: u64,
}

impl ModelNode {
    fn last(&self) -> (Term, u64) {
        (
            self.log.last().map_or(Term::ZERO, |e| e.0),
            self.log.len() as u64,
        )
    }
}

/// Builds a correct Raft history of `terms` terms over `n` nodes.
pub(super) fn correct_raft_history(n: u64, terms: u64, seed: u64) -> Vec<SafetyEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut nodes: Vec<ModelNode> = vec![ModelNode::default(); n as usize];
    let mut events: Vec<SafetyEvent> = Vec::new();
    let mut previous_leader: Option<usize> = None;
    let majority = (n / 2 + 1) as usize;
    let mut next_digest = 1u64;
    for t in 1..=terms {
        let term = Term(t);
        // The election (§5.4.1): a random candidate wins if a majority of
        // logs are no more up to date than its own; the most up-to-date node
        // always can, so some candidate wins.
        let mut candidates: Vec<usize> = (0..nodes.len()).collect();
        let mut leader = 0;
        while !candidates.is_empty() {
            let c = candidates.remove(rng.random_range(0..candidates.len()));
            let voters = nodes.iter().filter(|v| v.last() <= nodes[c].last()).count();
            if voters >= majority {
                leader = c;
                break;
            }
        }
        if let Some(p) = previous_leader {
            events.push(stepped_down(NodeId(p as u64)));
        }
        events.push(became_leader(NodeId(leader as u64), term));
        previous_leader = Some(leader);
        let rounds = rng.random_range(1..4);
        for _ in 0..rounds {
            // The leader appends a batch of new entries of its term.
            let k = rng.random_range(1..6);
            let first = nodes[leader].log.len() as u64 + 1;
            let batch: Vec<(Term, u64)> = (0..k)
                .map(|_| {
                    next_digest += 1;
                    (term, next_digest)
                })
                .collect();
            nodes[leader].log.extend(batch.iter().copied());
            events.push(
                RaftSafetyEvent::AppendedBatch {
                    node: NodeId(leader as u64),
                    first_index: LogIndex(first),
                    entries: batch,
                }
                .into(),
            );
            // Replicate to a random majority including the leader, or one
            // time in four to a minority only: those entries stay uncommitted
            // and a later leader may overwrite them.
            let committing = rng.random_range(0..4) != 0;
            let size = if committing {
                majority
            } else {
                rng.random_range(1..majority)
            };
            let mut followers: Vec<usize> = (0..nodes.len()).filter(|&i| i != leader).collect();
            let mut group = vec![leader];
            while group.len() < size {
                let pick = followers.remove(rng.random_range(0..followers.len()));
                group.push(pick);
            }
            let leader_log = nodes[leader].log.clone();
            for &f in &group[1..] {
                let common = nodes[f]
                    .log
                    .iter()
                    .zip(&leader_log)
                    .take_while(|(a, b)| a == b)
                    .count();
                if common < nodes[f].log.len() {
                    events.push(
                        RaftSafetyEvent::Truncated {
                            node: NodeId(f as u64),
                            from_index: LogIndex(common as u64 + 1),
                        }
                        .into(),
                    );
                    nodes[f].log.truncate(common);
                }
                let rest = leader_log[common..].to_vec();
                if !rest.is_empty() {
                    events.push(
                        RaftSafetyEvent::AppendedBatch {
                            node: NodeId(f as u64),
                            first_index: LogIndex(common as u64 + 1),
                            entries: rest.clone(),
                        }
                        .into(),
                    );
                    nodes[f].log.extend(rest);
                }
            }
            if !committing {
                continue;
            }
            // The whole log is on a majority and ends in the leader's term:
            // committed. The leader learns first, then the group.
            let commit = leader_log.len() as u64;
            for &g in &group {
                events.push(
                    RaftSafetyEvent::CommitAdvanced {
                        node: NodeId(g as u64),
                        term,
                        commit_index: LogIndex(commit),
                    }
                    .into(),
                );
                let node = &mut nodes[g];
                node.commit = commit;
                while node.applied < node.commit {
                    node.applied += 1;
                    let (_, digest) = node.log[(node.applied - 1) as usize];
                    events.push(
                        RaftSafetyEvent::Applied {
                            node: NodeId(g as u64),
                            index: LogIndex(node.applied),
                            digest,
                        }
                        .into(),
                    );
                }
            }
            // Sometimes a node compacts its applied prefix.
            if rng.random_range(0..4) == 0 {
                let g = group[rng.random_range(0..group.len())];
                let upto = nodes[g].applied;
                if upto > 0 {
                    let (last_term, _) = nodes[g].log[(upto - 1) as usize];
                    events.push(
                        RaftSafetyEvent::SnapshotInstalled {
                            node: NodeId(g as u64),
                            last_index: LogIndex(upto),
                            last_term,
                        }
                        .into(),
                    );
                }
            }
        }
        // Sometimes a follower crashes and restarts: it keeps its log, loses
        // its commit index and state machine, and re-applies from index 1 once
        // it learns the commit index again (same commands, so no violation).
        if rng.random_range(0..3) == 0 {
            let c = rng.random_range(0..nodes.len());
            if Some(c) != previous_leader {
                events.push(SafetyEvent::Crashed {
                    node: NodeId(c as u64),
                });
                nodes[c].commit = 0;
                nodes[c].applied = 0;
            }
        }
    }
    events
}

fn check(events: &[SafetyEvent]) -> SafetyChecker {
    let mut checker = super::checker();
    for (t, ev) in events.iter().enumerate() {
        checker.observe(t as u64, ev);
    }
    checker
}

#[test]
fn a_long_correct_raft_history_passes_every_invariant() {
    for seed in 0..4 {
        let events = correct_raft_history(5, 60, seed);
        assert!(
            events.len() > 500,
            "a substantial history: {}",
            events.len()
        );
        let checker = check(&events);
        assert!(
            checker.is_ok(),
            "seed {seed}: {:#?}",
            &checker.violations()[..checker.violations().len().min(3)]
        );
        assert_eq!(checker.events_observed(), events.len() as u64);
    }
}

#[test]
fn the_model_history_exercises_repairs_compaction_and_crashes() {
    let events = correct_raft_history(5, 60, 0);
    let count = |f: fn(&SafetyEvent) -> bool| events.iter().filter(|e| f(e)).count();
    assert!(count(|e| matches!(e, SafetyEvent::Protocol(RaftSafetyEvent::Truncated { .. }))) > 0);
    assert!(
        count(|e| matches!(
            e,
            SafetyEvent::Protocol(RaftSafetyEvent::SnapshotInstalled { .. })
        )) > 0
    );
    assert!(count(|e| matches!(e, SafetyEvent::Crashed { .. })) > 0);
}

/// Corrupting one applied command anywhere in the history is caught by
/// State Machine Safety and nothing else.
#[test]
fn one_corrupted_apply_in_a_long_history_is_caught() {
    let mut events = correct_raft_history(5, 60, 1);
    let at = events
        .iter()
        .rposition(|e| matches!(e, SafetyEvent::Protocol(RaftSafetyEvent::Applied { .. })))
        .expect("the history applies entries");
    if let SafetyEvent::Protocol(RaftSafetyEvent::Applied { digest, .. }) = &mut events[at] {
        *digest ^= 1;
    }
    let checker = check(&events);
    let names: Vec<&str> = checker
        .violations()
        .iter()
        .map(|v| v.invariant.as_str())
        .collect();
    // Differs from other nodes' apply (if any) and from the committed entry.
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|n| *n == "raft-state-machine-safety"),
        "{names:?}"
    );
    assert!(checker.violations().iter().all(|v| v.at_us == at as u64));
}

/// Electing a stale node in the middle of the history (a broken vote rule)
/// is caught by Leader Completeness.
#[test]
fn electing_a_stale_node_is_caught() {
    let mut events = correct_raft_history(5, 30, 2);
    // A fresh node that never received anything wins a term above all.
    events.push(became_leader(NodeId(9), Term(1000)));
    let checker = check(&events);
    assert_eq!(checker.violation_count(), 1);
    let v = &checker.violations()[0];
    assert_eq!(v.invariant, "raft-leader-completeness");
    assert_eq!(v.nodes.last(), Some(&NodeId(9)));
}
