//! Raft **Leader Append-Only** (Raft paper §5.3, Figure 3): "a leader never
//! overwrites or deletes entries in its log; it only appends new entries".
//!
//! A node counts as leader from `BecameLeader` until `SteppedDown` or a
//! crash. While it leads, writing an entry of another term over one of its
//! entries, truncating its log, or installing a snapshot that discards its
//! entries is a violation. Compacting its own log (a snapshot whose last
//! entry it holds) is not.

use super::kinds;
use super::{index_position, term_epoch};
use super::{
    AppendOutcome, EventKinds, NodeLog, RaftLogs, RaftSafetyEvent, SafetyEvent, Violation,
};
use consensus_actors::types::{LogIndex, NodeId, Term};
use std::collections::BTreeMap;

/// The invariant's name.
const NAME: &str = "raft-leader-append-only";

/// Leaders only append.
#[derive(Clone, Debug, Default)]
pub struct RaftLeaderAppendOnly {
    /// Its own mirror, used only when it runs outside a checker.
    logs: RaftLogs,
    leading: BTreeMap<NodeId, Term>,
}

impl RaftLeaderAppendOnly {
    fn violation(
        name: &'static str,
        at_us: u64,
        ev: &SafetyEvent,
        node: NodeId,
        term: Term,
        index: LogIndex,
        detail: String,
    ) -> Violation {
        Violation::new(name, at_us, ev, detail)
            .with_nodes([node])
            .with_epoch(term_epoch(term))
            .with_position(index_position(index))
    }
}

raft_log_invariant!(
    RaftLeaderAppendOnly,
    name: NAME,
    state: leading,
    check: Self::check,
    kinds: EventKinds::CRASHED
        .or(EventKinds::BECAME_LEADER)
        .or(EventKinds::STEPPED_DOWN)
        .or(kinds::APPENDED)
        .or(kinds::APPENDED_BATCH)
        .or(kinds::TRUNCATED)
        .or(kinds::SNAPSHOT_INSTALLED),
);

impl RaftLeaderAppendOnly {
    /// Checks one event, with `logs` as they were before it.
    fn check(
        leading: &mut BTreeMap<NodeId, Term>,
        at_us: u64,
        ev: &SafetyEvent,
        logs: &RaftLogs,
        out: &mut Vec<Violation>,
    ) {
        let raft = match ev {
            SafetyEvent::Crashed { node } | SafetyEvent::SteppedDown { node } => {
                leading.remove(node);
                return;
            }
            SafetyEvent::BecameLeader { node, epoch } => {
                leading.insert(*node, Term(*epoch));
                return;
            }
            SafetyEvent::Protocol(r) => r,
        };
        if let Some((node, entries)) = raft.appended_entries() {
            let Some(lt) = leading.get(&node).copied() else {
                return;
            };
            let empty = NodeLog::default();
            let log = logs.get(node).unwrap_or(&empty);
            // Entries are contiguous and increasing: a write replaces an
            // entry only at an index the log already holds, so an append
            // that starts past the log's end (a leader's usual append)
            // replaces nothing.
            if entries
                .clone()
                .next()
                .is_none_or(|(first, _, _)| first > log.last_index())
            {
                return;
            }
            for write in log.walk_append(entries) {
                let (index, term) = (write.index, write.term);
                if let AppendOutcome::Replaced { old_term, .. } = write.outcome {
                    let last = write.last_before;
                    {
                        out.push(Self::violation(
                            NAME,
                            at_us,
                            ev,
                            node,
                            lt,
                            index,
                            format!(
                                "{node}, leader of {lt}, overwrote its entry {index} of {old_term} with one of {term} (removing {index}..={last})"
                            ),
                        ));
                    }
                }
            }
            return;
        }
        match raft {
            RaftSafetyEvent::Truncated { node, from_index } => {
                if let Some(lt) = leading.get(node).copied() {
                    let last = logs.get(*node).map_or(LogIndex::ZERO, NodeLog::last_index);
                    if *from_index <= last {
                        let v = Self::violation(
                            NAME,
                            at_us,
                            ev,
                            *node,
                            lt,
                            *from_index,
                            format!(
                                "{node}, leader of {lt}, deleted its entries {from_index}..={last}"
                            ),
                        );
                        out.push(v);
                    }
                }
            }
            RaftSafetyEvent::SnapshotInstalled {
                node,
                last_index,
                last_term,
            } => {
                if let Some(lt) = leading.get(node).copied() {
                    let empty = NodeLog::default();
                    let log = logs.get(*node).unwrap_or(&empty);
                    if log.snapshot_would_discard(*last_index, *last_term) {
                        let last = log.last_index();
                        let v = Self::violation(
                            NAME,
                            at_us,
                            ev,
                            *node,
                            lt,
                            *last_index,
                            format!(
                                "{node}, leader of {lt}, installed a snapshot through {last_index} {last_term} that its log (ending at {last}) does not match, discarding its entries"
                            ),
                        );
                        out.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::stepped_down;
    use crate::safety::test_support::{append, leader, run_invariant, truncate};

    const N1: NodeId = NodeId(1);

    fn run(events: &[SafetyEvent]) -> Vec<Violation> {
        run_invariant(&mut RaftLeaderAppendOnly::default(), events)
    }

    /// Followers may overwrite and truncate; a leader that only appends and
    /// compacts its own log is fine; after stepping down it may truncate.
    #[test]
    fn appending_leaders_and_truncating_followers_pass() {
        let out = run(&[
            append(N1, 1, 1, 10),
            append(N1, 2, 1, 11),
            append(N1, 2, 2, 12), // follower overwrite
            truncate(N1, 2),      // follower truncation
            leader(N1, 3),
            append(N1, 2, 3, 13),
            append(N1, 3, 3, 14),
            append(N1, 3, 3, 14), // re-announcing its own entry
            RaftSafetyEvent::SnapshotInstalled {
                node: N1,
                last_index: LogIndex(2),
                last_term: Term(3),
            }
            .into(),
            truncate(N1, 4), // nothing at 4: nothing deleted
            stepped_down(N1),
            truncate(N1, 3),
            leader(N1, 5),
            SafetyEvent::Crashed { node: N1 },
            append(N1, 3, 4, 15),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }

    /// Figure 3: a leader overwriting one of its entries is a violation.
    #[test]
    fn a_leader_overwriting_its_log_is_reported() {
        let out = run(&[
            append(N1, 1, 1, 10),
            append(N1, 2, 1, 11),
            leader(N1, 2),
            append(N1, 2, 2, 12),
        ]);
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.nodes, vec![N1]);
        assert_eq!(v.epoch, Some(term_epoch(Term(2))));
        assert_eq!(v.position, Some(index_position(LogIndex(2))));
        assert_eq!(
            v.detail,
            "n1, leader of t2, overwrote its entry i2 of t1 with one of t2 (removing i2..=i2)"
        );
    }

    /// Figure 3: a leader deleting entries is a violation.
    #[test]
    fn a_leader_truncating_its_log_is_reported() {
        let out = run(&[
            RaftSafetyEvent::AppendedBatch {
                node: N1,
                first_index: LogIndex(1),
                entries: vec![(Term(1), 1), (Term(1), 2), (Term(1), 3)],
            }
            .into(),
            leader(N1, 2),
            truncate(N1, 2),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].position, Some(index_position(LogIndex(2))));
        assert_eq!(
            out[0].detail,
            "n1, leader of t2, deleted its entries i2..=i3"
        );
    }

    /// A leader installing a snapshot that does not match its log loses its
    /// entries: a violation.
    #[test]
    fn a_leader_discarding_its_log_for_a_snapshot_is_reported() {
        let out = run(&[
            append(N1, 1, 1, 1),
            append(N1, 2, 1, 2),
            leader(N1, 2),
            RaftSafetyEvent::SnapshotInstalled {
                node: N1,
                last_index: LogIndex(2),
                last_term: Term(2),
            }
            .into(),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].position, Some(index_position(LogIndex(2))));
    }
}
