//! Raft **Leader Completeness** (Raft paper §5.4.1 and the proof in §5.4.3,
//! Figure 3): "if a log entry is committed in a given term, then that entry
//! will be present in the logs of the leaders for all higher-numbered
//! terms". This is the half of "committed entries are never lost" that
//! elections could break.
//!
//! Commits are learned from `CommitAdvanced` (the newly committed entries are
//! read from the reporting node's mirrored log). For each committed index
//! the checker keeps the entry and an upper bound on the term in which it
//! was committed: the smallest current term of any node that reported it
//! committed (exact when the leader that committed it reports first). When a
//! node becomes leader of term T, every entry committed in a term below T
//! must be in its mirrored log, with the same term and command. Entries the
//! new leader has compacted into a snapshot are only checked at the
//! snapshot's last index (by term); a snapshot holds committed entries only.

use super::index_map::IndexMap;
use super::kinds;
use super::{index_position, term_epoch};
use super::{EventKinds, RaftLogs, RaftSafetyEvent, SafetyEvent, Violation};
use consensus_actors::safety::fmt_digest;
use consensus_actors::types::{LogIndex, NodeId, Term};

/// A committed entry, as first reported.
#[derive(Clone, Copy, Debug)]
struct Committed {
    term: Term,
    digest: u64,
    /// Upper bound on the term in which the entry was committed.
    commit_term: Term,
    node: NodeId,
}

/// Every leader holds every entry committed in earlier terms.
#[derive(Clone, Debug, Default)]
pub struct RaftLeaderCompleteness {
    /// Its own mirror, used only when it runs outside a checker.
    logs: RaftLogs,
    committed: IndexMap<Committed>,
}

impl RaftLeaderCompleteness {
    /// How many committed indexes are known.
    pub fn committed_len(&self) -> usize {
        self.committed.len()
    }

    fn record_commits(
        committed: &mut IndexMap<Committed>,
        logs: &RaftLogs,
        node: NodeId,
        term: Term,
        commit_index: LogIndex,
    ) {
        let Some(log) = logs.get(node) else {
            return;
        };
        let Some((first, last)) = log.newly_committed(commit_index) else {
            return;
        };
        // Entries inside the snapshot (after a crash) have no digest left.
        for (index, entry_term, digest) in log.entries_between(first, last) {
            match committed.get_mut(index) {
                Some(c) => {
                    if c.term == entry_term && c.digest == digest {
                        c.commit_term = c.commit_term.min(term);
                    }
                }
                None => {
                    committed.get_or_insert(
                        index,
                        Committed {
                            term: entry_term,
                            digest,
                            commit_term: term.max(entry_term),
                            node,
                        },
                    );
                }
            }
        }
    }

    fn check_new_leader(
        committed: &IndexMap<Committed>,
        logs: &RaftLogs,
        at_us: u64,
        ev: &SafetyEvent,
        node: NodeId,
        term: Term,
        out: &mut Vec<Violation>,
    ) {
        let empty = super::NodeLog::default();
        let log = logs.get(node).unwrap_or(&empty);
        let (snapshot_index, snapshot_term) = log.snapshot();
        let mut missing = 0u64;
        let mut first_missing: Option<(LogIndex, Committed)> = None;
        for (index, c) in committed.range_from(snapshot_index) {
            if c.commit_term >= term {
                continue;
            }
            let present = if index == snapshot_index {
                snapshot_term.is_none_or(|t| t == c.term)
            } else {
                log.entry_at(index) == Some((c.term, c.digest))
            };
            if !present {
                missing += 1;
                first_missing.get_or_insert((index, *c));
            }
        }
        let Some((index, c)) = first_missing else {
            return;
        };
        let holds = match (log.entry_at(index), index == snapshot_index) {
            (Some((t, d)), _) => format!("it holds {t} {} there", fmt_digest(d)),
            (None, true) => format!(
                "its snapshot ends there in {}",
                snapshot_term.map_or_else(|| "an unknown term".to_string(), |t| t.to_string())
            ),
            (None, false) => format!("its log ends at {}", log.last_index()),
        };
        let others = if missing > 1 {
            format!(" (and {} more)", missing - 1)
        } else {
            String::new()
        };
        out.push(
            Violation::new(
                NAME,
                at_us,
                ev,
                format!(
                    "{node} became leader of {term} without the entry {index} {} {} that {} reported committed no later than {}{others}; {holds}",
                    c.term,
                    fmt_digest(c.digest),
                    c.node,
                    c.commit_term
                ),
            )
            .with_nodes([c.node, node])
            .with_epoch(term_epoch(term))
            .with_position(index_position(index)),
        );
    }
}

/// The invariant's name.
const NAME: &str = "raft-leader-completeness";

impl RaftLeaderCompleteness {
    /// Checks one event, with `logs` as they were before it.
    fn check(
        committed: &mut IndexMap<Committed>,
        at_us: u64,
        ev: &SafetyEvent,
        logs: &RaftLogs,
        out: &mut Vec<Violation>,
    ) {
        match ev {
            SafetyEvent::BecameLeader { node, epoch } => {
                Self::check_new_leader(committed, logs, at_us, ev, *node, Term(*epoch), out);
            }
            SafetyEvent::Protocol(
                raft @ (RaftSafetyEvent::CommitAdvanced { .. } | RaftSafetyEvent::Committed { .. }),
            ) => {
                if let Some((node, term, commit_index)) = raft.commit_advance() {
                    Self::record_commits(committed, logs, node, term, commit_index);
                }
            }
            _ => {}
        }
    }
}

raft_log_invariant!(
    RaftLeaderCompleteness,
    name: NAME,
    state: committed,
    check: Self::check,
    kinds: EventKinds::BECAME_LEADER
        .or(kinds::COMMIT_ADVANCED)
        .or(kinds::COMMITTED),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::test_support::{batch, commit, committed, leader, run_invariant};

    const N1: NodeId = NodeId(1);
    const N2: NodeId = NodeId(2);
    const N3: NodeId = NodeId(3);

    fn run(events: &[SafetyEvent]) -> Vec<Violation> {
        run_invariant(&mut RaftLeaderCompleteness::default(), events)
    }

    /// §5.4.1: a new leader whose log holds every committed entry passes,
    /// including one that compacted them into a snapshot.
    #[test]
    fn leaders_holding_every_committed_entry_pass() {
        let out = run(&[
            leader(N1, 1),
            batch(N1, 1, &[(1, 10), (1, 11)]),
            batch(N2, 1, &[(1, 10), (1, 11)]),
            commit(N1, 1, 2),
            commit(N2, 1, 2),
            leader(N2, 2),
            batch(N2, 3, &[(2, 12)]),
            batch(N3, 1, &[(1, 10), (1, 11), (2, 12)]),
            commit(N2, 2, 3),
            RaftSafetyEvent::SnapshotInstalled {
                node: N3,
                last_index: LogIndex(2),
                last_term: Term(1),
            }
            .into(),
            SafetyEvent::Crashed { node: N3 },
            leader(N3, 3),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }

    /// §5.4.1: a leader elected without an entry committed in an earlier
    /// term is a violation naming the leader, the committer and the index.
    #[test]
    fn a_leader_missing_a_committed_entry_is_reported() {
        let out = run(&[
            leader(N1, 1),
            batch(N1, 1, &[(1, 10), (1, 11), (1, 12)]),
            batch(N2, 1, &[(1, 10), (1, 11), (1, 12)]),
            commit(N1, 1, 3),
            batch(N3, 1, &[(1, 10)]),
            leader(N3, 2),
        ]);
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.invariant, "raft-leader-completeness");
        assert_eq!(v.nodes, vec![N1, N3]);
        assert_eq!(v.epoch, Some(term_epoch(Term(2))));
        assert_eq!(v.position, Some(index_position(LogIndex(2))));
        assert_eq!(
            v.detail,
            "n3 became leader of t2 without the entry i2 t1 #000000000000000b that n1 reported committed no later than t1 (and 1 more); its log ends at i1"
        );
    }

    /// A leader that holds a different entry at a committed index lacks the
    /// committed one.
    #[test]
    fn a_leader_with_a_different_entry_at_a_committed_index_is_reported() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11)]),
            commit(N1, 1, 2),
            batch(N3, 1, &[(1, 10), (2, 99)]),
            leader(N3, 3),
        ]);
        assert_eq!(out.len(), 1);
        assert!(out[0]
            .detail
            .ends_with("it holds t2 #0000000000000063 there"));
    }

    /// The property binds leaders of *later* terms only: an entry committed in
    /// t5 need not be in the log of a (slow) leader of t4 elected afterwards.
    #[test]
    fn a_leader_of_an_earlier_term_than_the_commit_is_not_bound() {
        let out = run(&[
            batch(N1, 1, &[(2, 10), (5, 11)]),
            commit(N1, 5, 2),
            leader(N3, 4),
        ]);
        assert!(out.is_empty(), "{out:?}");
        // But a leader of t6 must have them.
        let out = run(&[
            batch(N1, 1, &[(2, 10), (5, 11)]),
            commit(N1, 5, 2),
            leader(N3, 6),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].position, Some(index_position(LogIndex(1))));
    }

    /// The commit term is the smallest term any node reported the commit in:
    /// a later report by a follower in a higher term does not raise it.
    #[test]
    fn the_commit_term_is_the_earliest_report() {
        let out = run(&[
            batch(N2, 1, &[(1, 10)]),
            commit(N2, 4, 1),
            batch(N1, 1, &[(1, 10)]),
            commit(N1, 2, 1),
            leader(N3, 3),
        ]);
        assert_eq!(out.len(), 1, "committed by t2, so a t3 leader needs it");
    }

    /// A snapshot whose last entry disagrees with a committed entry there.
    #[test]
    fn a_leader_whose_snapshot_contradicts_a_commit_is_reported() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11)]),
            commit(N1, 1, 2),
            RaftSafetyEvent::SnapshotInstalled {
                node: N3,
                last_index: LogIndex(2),
                last_term: Term(2),
            }
            .into(),
            leader(N3, 3),
        ]);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].detail.ends_with("its snapshot ends there in t2"),
            "{}",
            out[0].detail
        );
    }

    /// Entries reported by a `Committed` event bind later leaders like a
    /// `CommitAdvanced` to the last of them.
    #[test]
    fn a_leader_missing_an_entry_of_a_committed_event_is_reported() {
        let out = run(&[
            leader(N1, 1),
            batch(N1, 1, &[(1, 10), (1, 11), (1, 12)]),
            batch(N2, 1, &[(1, 10), (1, 11), (1, 12)]),
            committed(N1, 1, 1, &[10, 11, 12]),
            batch(N3, 1, &[(1, 10)]),
            leader(N3, 2),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nodes, vec![N1, N3]);
        assert_eq!(
            out[0].detail,
            "n3 became leader of t2 without the entry i2 t1 #000000000000000b that n1 reported committed no later than t1 (and 1 more); its log ends at i1"
        );
    }
}
