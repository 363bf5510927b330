//! Raft **State Machine Safety** (Raft paper §5.4.3, Figure 3): "if a server
//! has applied a log entry at a given index to its state machine, no other
//! server will ever apply a different log entry for the same index" — and
//! the commit-level facts it rests on, the half of "committed entries are
//! never lost or changed" that replication could break:
//!
//! * every node that commits an index commits the same entry (term and
//!   command) there;
//! * a node never removes an entry it has committed (by truncation or by a
//!   snapshot that does not match it), and never moves its commit index past
//!   its last entry;
//! * every node applies the same command at an index, and the command it
//!   applies is the one committed there.
//!
//! Committed entries are read from the reporting node's mirrored log when its
//! commit index advances.

use super::index_map::IndexMap;
use super::kinds;
use super::{index_position, term_epoch};
use super::{EventKinds, NodeLog, RaftLogs, RaftSafetyEvent, SafetyEvent, Violation};
use consensus_actors::safety::fmt_digest;
use consensus_actors::types::{LogIndex, NodeId, Term};

/// Committed and applied entries never differ between nodes or change.
#[derive(Clone, Debug, Default)]
pub struct RaftStateMachineSafety {
    /// Its own mirror, used only when it runs outside a checker.
    logs: RaftLogs,
    facts: Facts,
}

/// What the invariant remembers besides the logs.
#[derive(Clone, Debug, Default)]
struct Facts {
    /// index -> (term, digest, first node that committed it).
    committed: IndexMap<(Term, u64, NodeId)>,
    /// index -> (digest, first node that applied it).
    applied: IndexMap<(u64, NodeId)>,
}

/// The invariant's name.
const NAME: &str = "raft-state-machine-safety";

impl Facts {
    fn on_commit(
        &mut self,
        logs: &RaftLogs,
        at_us: u64,
        ev: &SafetyEvent,
        node: NodeId,
        commit_index: LogIndex,
        out: &mut Vec<Violation>,
    ) {
        let name = NAME;
        let empty = NodeLog::default();
        let log = logs.get(node).unwrap_or(&empty);
        let last = log.last_index();
        if commit_index > last {
            out.push(
                Violation::new(
                    name,
                    at_us,
                    ev,
                    format!("{node} moved its commit index to {commit_index}, beyond its last entry {last}"),
                )
                .with_nodes([node])
                .with_position(index_position(commit_index)),
            );
        }
        let Some((first, last_new)) = log.newly_committed(commit_index) else {
            return;
        };
        let mut conflicts = 0u64;
        let mut first_conflict = None;
        for (index, term, digest) in log.entries_between(first, last_new) {
            let (c_term, c_digest, c_node) =
                *self.committed.get_or_insert(index, (term, digest, node));
            if (c_term, c_digest) != (term, digest) {
                conflicts += 1;
                first_conflict.get_or_insert((index, term, digest, c_term, c_digest, c_node));
            }
        }
        if let Some((index, term, digest, c_term, c_digest, c_node)) = first_conflict {
            let others = if conflicts > 1 {
                format!(" (and {} more indexes)", conflicts - 1)
            } else {
                String::new()
            };
            out.push(
                Violation::new(
                    name,
                    at_us,
                    ev,
                    format!(
                        "{node} committed {term} {} at {index} where {c_node} committed {c_term} {}{others}",
                        fmt_digest(digest),
                        fmt_digest(c_digest)
                    ),
                )
                .with_nodes([c_node, node])
                .with_epoch(term_epoch(term))
                .with_position(index_position(index)),
            );
        }
    }

    fn on_truncate(
        &self,
        logs: &RaftLogs,
        at_us: u64,
        ev: &SafetyEvent,
        node: NodeId,
        from_index: LogIndex,
        out: &mut Vec<Violation>,
    ) {
        let commit = logs.get(node).map_or(LogIndex::ZERO, NodeLog::commit_index);
        if from_index <= commit {
            out.push(
                Violation::new(
                    NAME,
                    at_us,
                    ev,
                    format!(
                        "{node} removed its committed entries {from_index}..={commit} (its commit index is {commit})"
                    ),
                )
                .with_nodes([node])
                .with_position(index_position(from_index)),
            );
        }
    }

    fn on_snapshot(
        &self,
        logs: &RaftLogs,
        at_us: u64,
        ev: &SafetyEvent,
        node: NodeId,
        (last_index, last_term): (LogIndex, Term),
        out: &mut Vec<Violation>,
    ) {
        let name = NAME;
        if let Some((c_term, c_digest, c_node)) = self.committed.get(last_index).copied() {
            if c_term != last_term {
                out.push(
                    Violation::new(
                        name,
                        at_us,
                        ev,
                        format!(
                            "{node} installed a snapshot ending at {last_index} in {last_term}, but {c_node} committed {c_term} {} there",
                            fmt_digest(c_digest)
                        ),
                    )
                    .with_nodes([c_node, node])
                    .with_epoch(term_epoch(last_term))
                    .with_position(index_position(last_index)),
                );
            }
        }
        let empty = NodeLog::default();
        let log = logs.get(node).unwrap_or(&empty);
        let commit = log.commit_index();
        if log.snapshot_would_discard(last_index, last_term) && commit > last_index {
            out.push(
                Violation::new(
                    name,
                    at_us,
                    ev,
                    format!(
                        "{node} installed a snapshot ending at {last_index} {last_term} that its log does not match, discarding its committed entries up to {commit}"
                    ),
                )
                .with_nodes([node])
                .with_epoch(term_epoch(last_term))
                .with_position(index_position(last_index.next())),
            );
        }
    }

    fn on_apply(
        &mut self,
        at_us: u64,
        ev: &SafetyEvent,
        node: NodeId,
        index: LogIndex,
        digest: u64,
        out: &mut Vec<Violation>,
    ) {
        let name = NAME;
        let (a_digest, a_node) = *self.applied.get_or_insert(index, (digest, node));
        if a_digest != digest {
            out.push(
                Violation::new(
                    name,
                    at_us,
                    ev,
                    format!(
                        "{node} applied {} at {index} where {a_node} applied {}",
                        fmt_digest(digest),
                        fmt_digest(a_digest)
                    ),
                )
                .with_nodes([a_node, node])
                .with_position(index_position(index)),
            );
        }
        if let Some((c_term, c_digest, c_node)) = self.committed.get(index).copied() {
            if c_digest != digest {
                out.push(
                    Violation::new(
                        name,
                        at_us,
                        ev,
                        format!(
                            "{node} applied {} at {index}, but the entry committed there (by {c_node}) is {c_term} {}",
                            fmt_digest(digest),
                            fmt_digest(c_digest)
                        ),
                    )
                    .with_nodes([c_node, node])
                    .with_epoch(term_epoch(c_term))
                    .with_position(index_position(index)),
                );
            }
        }
    }
}

impl Facts {
    /// Checks one event, with `logs` as they were before it.
    fn check(&mut self, at_us: u64, ev: &SafetyEvent, logs: &RaftLogs, out: &mut Vec<Violation>) {
        match ev {
            SafetyEvent::Protocol(RaftSafetyEvent::CommitAdvanced {
                node, commit_index, ..
            }) => self.on_commit(logs, at_us, ev, *node, *commit_index, out),
            // A commit advance and the applies that follow it: checked as
            // the two events it stands for (applies do not read the logs).
            SafetyEvent::Protocol(raft @ RaftSafetyEvent::Committed { .. }) => {
                if let Some((node, _, commit_index)) = raft.commit_advance() {
                    self.on_commit(logs, at_us, ev, node, commit_index, out);
                }
                if let Some((node, entries)) = raft.applied_entries() {
                    for (index, digest) in entries {
                        self.on_apply(at_us, ev, node, index, digest, out);
                    }
                }
            }
            SafetyEvent::Protocol(RaftSafetyEvent::Truncated { node, from_index }) => {
                self.on_truncate(logs, at_us, ev, *node, *from_index, out);
            }
            SafetyEvent::Protocol(RaftSafetyEvent::SnapshotInstalled {
                node,
                last_index,
                last_term,
            }) => self.on_snapshot(logs, at_us, ev, *node, (*last_index, *last_term), out),
            SafetyEvent::Protocol(
                raft @ (RaftSafetyEvent::Applied { .. } | RaftSafetyEvent::AppliedBatch { .. }),
            ) => {
                if let Some((node, entries)) = raft.applied_entries() {
                    for (index, digest) in entries {
                        self.on_apply(at_us, ev, node, index, digest, out);
                    }
                }
            }
            _ => {}
        }
    }
}

raft_log_invariant!(
    RaftStateMachineSafety,
    name: NAME,
    state: facts,
    check: Facts::check,
    kinds: kinds::COMMIT_ADVANCED
        .or(kinds::COMMITTED)
        .or(kinds::TRUNCATED)
        .or(kinds::SNAPSHOT_INSTALLED)
        .or(kinds::APPLIED)
        .or(kinds::APPLIED_BATCH),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::test_support::{
        apply, apply_batch, batch, commit, committed, run_invariant,
    };

    const N1: NodeId = NodeId(1);
    const N2: NodeId = NodeId(2);

    fn run(events: &[SafetyEvent]) -> Vec<Violation> {
        run_invariant(&mut RaftStateMachineSafety::default(), events)
    }

    /// Figure 3: nodes that commit and apply the same entries, re-apply them
    /// after a crash, and truncate only uncommitted entries, pass.
    #[test]
    fn nodes_agreeing_on_committed_and_applied_entries_pass() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11), (1, 12)]),
            batch(N2, 1, &[(1, 10), (1, 11), (1, 99)]),
            commit(N1, 1, 2),
            commit(N2, 1, 2),
            apply(N1, 1, 10),
            apply(N1, 2, 11),
            apply(N2, 1, 10),
            RaftSafetyEvent::Truncated {
                node: N2,
                from_index: LogIndex(3),
            }
            .into(),
            batch(N2, 3, &[(2, 13)]),
            commit(N2, 2, 3),
            SafetyEvent::Crashed { node: N2 },
            apply(N2, 1, 10),
            // After a crash the node's commit index is volatile and unknown:
            // dropping an unsynced suffix on recovery is not judged here.
            RaftSafetyEvent::Truncated {
                node: N2,
                from_index: LogIndex(3),
            }
            .into(),
            // A snapshot that matches the log compacts it: nothing lost.
            RaftSafetyEvent::SnapshotInstalled {
                node: N1,
                last_index: LogIndex(2),
                last_term: Term(1),
            }
            .into(),
            commit(N1, 1, 1),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }

    /// "Committed entries are never changed": a different entry committed at
    /// an index another node committed is a violation.
    #[test]
    fn a_different_committed_entry_at_an_index_is_reported() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11)]),
            batch(N2, 1, &[(1, 10), (2, 12)]),
            commit(N1, 1, 2),
            commit(N2, 2, 2),
        ]);
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.invariant, "raft-state-machine-safety");
        assert_eq!(v.nodes, vec![N1, N2]);
        assert_eq!(v.epoch, Some(term_epoch(Term(2))));
        assert_eq!(v.position, Some(index_position(LogIndex(2))));
        assert_eq!(
            v.detail,
            "n2 committed t2 #000000000000000c at i2 where n1 committed t1 #000000000000000b"
        );
    }

    /// "Committed entries are never lost": a node overwriting (truncating) an
    /// entry it committed is a violation.
    #[test]
    fn a_committed_entry_overwritten_is_reported() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11), (1, 12)]),
            commit(N1, 1, 2),
            RaftSafetyEvent::Truncated {
                node: N1,
                from_index: LogIndex(2),
            }
            .into(),
            batch(N1, 2, &[(2, 20)]),
            commit(N1, 2, 2),
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].position, Some(index_position(LogIndex(2))));
        assert_eq!(
            out[0].detail,
            "n1 removed its committed entries i2..=i2 (its commit index is i2)"
        );
    }

    /// Figure 3: two nodes applying different commands at one index.
    #[test]
    fn two_commands_applied_at_one_index_are_reported() {
        let out = run(&[apply(N1, 4, 10), apply(N2, 4, 10), apply(NodeId(3), 4, 11)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nodes, vec![N1, NodeId(3)]);
        assert_eq!(out[0].position, Some(index_position(LogIndex(4))));
        assert_eq!(
            out[0].detail,
            "n3 applied #000000000000000b at i4 where n1 applied #000000000000000a"
        );
    }

    /// A batch of applies is checked like one `Applied` per entry: agreeing
    /// batches pass, a differing command inside one is reported at its
    /// index, against the other node's apply and the committed entry.
    #[test]
    fn an_applied_batch_is_checked_entry_by_entry() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11), (1, 12)]),
            commit(N1, 1, 3),
            apply_batch(N1, 1, &[10, 11, 12]),
            apply_batch(N2, 1, &[10]),
            apply_batch(N2, 2, &[11, 13]),
        ]);
        let details: Vec<&str> = out.iter().map(|v| v.detail.as_str()).collect();
        assert_eq!(
            details,
            vec![
                "n2 applied #000000000000000d at i3 where n1 applied #000000000000000c",
                "n2 applied #000000000000000d at i3, but the entry committed there (by n1) is t1 #000000000000000c",
            ]
        );
        assert!(out
            .iter()
            .all(|v| v.position == Some(index_position(LogIndex(3)))));
    }

    #[test]
    fn applying_something_other_than_the_committed_entry_is_reported() {
        let out = run(&[batch(N1, 1, &[(1, 10)]), commit(N1, 1, 1), apply(N1, 1, 11)]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].detail,
            "n1 applied #000000000000000b at i1, but the entry committed there (by n1) is t1 #000000000000000a"
        );
    }

    #[test]
    fn a_commit_index_beyond_the_log_is_reported() {
        let out = run(&[batch(N1, 1, &[(1, 10)]), commit(N1, 1, 3)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].position, Some(index_position(LogIndex(3))));
        assert_eq!(
            out[0].detail,
            "n1 moved its commit index to i3, beyond its last entry i1"
        );
    }

    #[test]
    fn a_snapshot_contradicting_committed_entries_is_reported() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11), (1, 12)]),
            commit(N1, 1, 3),
            RaftSafetyEvent::SnapshotInstalled {
                node: N1,
                last_index: LogIndex(2),
                last_term: Term(2),
            }
            .into(),
        ]);
        let details: Vec<&str> = out.iter().map(|v| v.detail.as_str()).collect();
        assert_eq!(
            details,
            vec![
                "n1 installed a snapshot ending at i2 in t2, but n1 committed t1 #000000000000000b there",
                "n1 installed a snapshot ending at i2 t2 that its log does not match, discarding its committed entries up to i3",
            ]
        );
    }

    fn details(out: &[Violation]) -> Vec<&str> {
        out.iter().map(|v| v.detail.as_str()).collect()
    }

    /// A `Committed` event is checked as the `CommitAdvanced` and
    /// `AppliedBatch` it stands for: a different entry committed at an
    /// index, and a different command applied there, are both reported,
    /// exactly as the two events report them.
    #[test]
    fn a_committed_event_is_checked_as_a_commit_and_its_applies() {
        let logs = [
            batch(N1, 1, &[(1, 10), (1, 11)]),
            batch(N2, 1, &[(1, 10), (2, 12)]),
        ];
        let mut one = logs.to_vec();
        one.extend([
            committed(N1, 1, 1, &[10, 11]),
            committed(N2, 2, 1, &[10, 12]),
        ]);
        let mut two = logs.to_vec();
        two.extend([
            commit(N1, 1, 2),
            apply_batch(N1, 1, &[10, 11]),
            commit(N2, 2, 2),
            apply_batch(N2, 1, &[10, 12]),
        ]);
        let (out_one, out_two) = (run(&one), run(&two));
        assert_eq!(
            details(&out_one),
            vec![
                "n2 committed t2 #000000000000000c at i2 where n1 committed t1 #000000000000000b",
                "n2 applied #000000000000000c at i2 where n1 applied #000000000000000b",
                "n2 applied #000000000000000c at i2, but the entry committed there (by n1) is t1 #000000000000000b",
            ]
        );
        assert_eq!(details(&out_one), details(&out_two));
    }

    /// A `Committed` event moves the node's commit index in the mirror: a
    /// commit beyond the log and a later truncation of committed entries
    /// are reported; an empty one says nothing.
    #[test]
    fn a_committed_event_moves_the_commit_index() {
        let beyond = run(&[batch(N1, 1, &[(1, 10)]), committed(N1, 1, 1, &[10, 11, 12])]);
        assert_eq!(
            details(&beyond),
            vec!["n1 moved its commit index to i3, beyond its last entry i1"]
        );
        let overwritten = run(&[
            batch(N1, 1, &[(1, 10), (1, 11), (1, 12)]),
            committed(N1, 1, 1, &[10, 11]),
            RaftSafetyEvent::Truncated {
                node: N1,
                from_index: LogIndex(2),
            }
            .into(),
        ]);
        assert_eq!(
            details(&overwritten),
            vec!["n1 removed its committed entries i2..=i2 (its commit index is i2)"]
        );
        let empty = run(&[batch(N1, 1, &[(1, 10)]), committed(N1, 1, 5, &[])]);
        assert!(empty.is_empty(), "{empty:?}");
    }
}
