//! Raft's safety events: what a node did to its log, its commit index and
//! its state machine, reported as it happens.
//!
//! # What emitters must report, and when
//!
//! `Appended`/`AppendedBatch` once the entries are in the node's log
//! (durable, or followed by `Truncated` on recovery for what a crash lost);
//! an `Appended` at an index that holds an entry of another term implicitly
//! truncates from there, as in the paper. `CommitAdvanced` whenever the
//! node's commit index grows, with the node's current term; `Applied` (or
//! one `AppliedBatch` per commit advance) after `CommitAdvanced` for that
//! index; a node that applies as it commits reports both at once as one
//! `Committed`; `SnapshotInstalled` both for a snapshot received from the
//! leader and for the node compacting its own log. Leadership is reported
//! with the neutral [`SafetyEvent::BecameLeader`] (the term as the epoch)
//! and [`SafetyEvent::SteppedDown`] when a leader leaves leadership (needed
//! by Leader Append-Only: a node leads from `BecameLeader` until
//! `SteppedDown` or a crash). The runtime reports [`SafetyEvent::Crashed`]
//! when the node loses its volatile state; the log mirror is kept (durable
//! state survives a crash).

use super::{kinds, RaftLogs, SafetyEvent};
use consensus_actors::safety::{fmt_digest, EventKinds, ProtocolEvent};
use consensus_actors::types::{LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The neutral event: `node` became the leader of `term`.
pub fn became_leader(node: NodeId, term: Term) -> SafetyEvent {
    SafetyEvent::BecameLeader {
        node,
        epoch: term.get(),
    }
}

/// The neutral event: `node` stopped leading.
pub fn stepped_down(node: NodeId) -> SafetyEvent {
    SafetyEvent::SteppedDown { node }
}

impl From<RaftSafetyEvent> for SafetyEvent {
    fn from(ev: RaftSafetyEvent) -> Self {
        SafetyEvent::Protocol(ev)
    }
}

impl ProtocolEvent for RaftSafetyEvent {
    type Model = RaftLogs;

    fn kind(&self) -> EventKinds {
        match self {
            RaftSafetyEvent::Appended { .. } => kinds::APPENDED,
            RaftSafetyEvent::AppendedBatch { .. } => kinds::APPENDED_BATCH,
            RaftSafetyEvent::Truncated { .. } => kinds::TRUNCATED,
            RaftSafetyEvent::CommitAdvanced { .. } => kinds::COMMIT_ADVANCED,
            RaftSafetyEvent::Applied { .. } => kinds::APPLIED,
            RaftSafetyEvent::AppliedBatch { .. } => kinds::APPLIED_BATCH,
            RaftSafetyEvent::Committed { .. } => kinds::COMMITTED,
            RaftSafetyEvent::SnapshotInstalled { .. } => kinds::SNAPSHOT_INSTALLED,
        }
    }

    fn fmt_epoch(epoch: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Term(epoch), f)
    }

    fn update_model(model: &mut RaftLogs, ev: &SafetyEvent) {
        model.apply(ev);
    }
}

/// What a Raft node did to its log, commit index and state machine (its
/// leadership goes through the neutral [`SafetyEvent::BecameLeader`] and
/// [`SafetyEvent::SteppedDown`], with the term as the epoch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftSafetyEvent {
    /// One entry was written at `index`. If the node's log held an entry of
    /// another term there, that entry and all that follow it are removed
    /// first (Raft's AppendEntries rule 3).
    Appended {
        /// The node whose log changed.
        node: NodeId,
        /// Where the entry went.
        index: LogIndex,
        /// The entry's term.
        term: Term,
        /// Digest of the entry's command.
        digest: u64,
    },
    /// Consecutive entries written from `first_index` on; the same as one
    /// `Appended` per entry, in order.
    AppendedBatch {
        /// The node whose log changed.
        node: NodeId,
        /// Index of the first entry.
        first_index: LogIndex,
        /// (term, command digest) of each entry.
        entries: Vec<(Term, u64)>,
    },
    /// Every entry at `from_index` and after was removed from the node's log.
    Truncated {
        /// The node whose log changed.
        node: NodeId,
        /// The first removed index.
        from_index: LogIndex,
    },
    /// The node's commit index grew to `commit_index` (every entry up to it
    /// is committed). `term` is the node's current term when it learned it:
    /// an upper bound on the term in which the entries were committed, exact
    /// for the leader.
    CommitAdvanced {
        /// The node whose commit index grew.
        node: NodeId,
        /// The node's current term.
        term: Term,
        /// The new commit index.
        commit_index: LogIndex,
    },
    /// The node applied the entry at `index` to its state machine.
    Applied {
        /// The node that applied.
        node: NodeId,
        /// The applied index.
        index: LogIndex,
        /// Digest of the applied command.
        digest: u64,
    },
    /// The node applied consecutive entries from `first_index` on, one
    /// command digest each; the same as one `Applied` per digest, in order
    /// (what a node reports once per commit advance).
    AppliedBatch {
        /// The node that applied.
        node: NodeId,
        /// The first applied index.
        first_index: LogIndex,
        /// Digest of each applied command, in index order.
        digests: Vec<u64>,
    },
    /// The node's commit index grew to cover the entries from
    /// `first_index` on, one command digest each, and it applied them: the
    /// same facts as a `CommitAdvanced` to the last of them followed by an
    /// `AppliedBatch` of them, in one event (what a node reports once per
    /// commit advance when it applies as it commits). With no digests it
    /// says nothing.
    Committed {
        /// The node that committed and applied.
        node: NodeId,
        /// The node's current term (as in `CommitAdvanced`).
        term: Term,
        /// The first newly committed (and applied) index.
        first_index: LogIndex,
        /// Digest of each command, in index order.
        digests: Vec<u64>,
    },
    /// The node's log now starts with a snapshot ending at `last_index` in
    /// `last_term`: received from a leader, or the node compacting its own
    /// log. As in Raft §7, if the log holds an entry at `last_index` with
    /// `last_term` the entries after it are kept; otherwise the whole log is
    /// discarded.
    SnapshotInstalled {
        /// The node whose log changed.
        node: NodeId,
        /// Last index the snapshot covers.
        last_index: LogIndex,
        /// Term of that entry.
        last_term: Term,
    },
}

impl RaftSafetyEvent {
    /// The node the event is about.
    pub fn node(&self) -> NodeId {
        match self {
            RaftSafetyEvent::Appended { node, .. }
            | RaftSafetyEvent::AppendedBatch { node, .. }
            | RaftSafetyEvent::Truncated { node, .. }
            | RaftSafetyEvent::CommitAdvanced { node, .. }
            | RaftSafetyEvent::Applied { node, .. }
            | RaftSafetyEvent::AppliedBatch { node, .. }
            | RaftSafetyEvent::Committed { node, .. }
            | RaftSafetyEvent::SnapshotInstalled { node, .. } => *node,
        }
    }

    /// For `Appended` and `AppendedBatch`: the node and its written entries
    /// as (index, term, digest), in order. `None` for other events.
    pub fn appended_entries(&self) -> Option<(NodeId, AppendedEntries<'_>)> {
        match self {
            RaftSafetyEvent::Appended {
                node,
                index,
                term,
                digest,
            } => Some((*node, AppendedEntries::One(Some((*index, *term, *digest))))),
            RaftSafetyEvent::AppendedBatch {
                node,
                first_index,
                entries,
            } => Some((
                *node,
                AppendedEntries::Batch {
                    next: *first_index,
                    rest: entries.iter(),
                },
            )),
            _ => None,
        }
    }
}

impl RaftSafetyEvent {
    /// For `CommitAdvanced` and a non-empty `Committed`: the node, its term
    /// and its new commit index. `None` for other events.
    pub fn commit_advance(&self) -> Option<(NodeId, Term, LogIndex)> {
        match self {
            RaftSafetyEvent::CommitAdvanced {
                node,
                term,
                commit_index,
            } => Some((*node, *term, *commit_index)),
            RaftSafetyEvent::Committed {
                node,
                term,
                first_index,
                digests,
            } if !digests.is_empty() => Some((
                *node,
                *term,
                LogIndex(first_index.get() + digests.len() as u64 - 1),
            )),
            _ => None,
        }
    }

    /// For `Applied`, `AppliedBatch` and `Committed`: the node and the
    /// entries it applied as (index, digest), in order. `None` for other
    /// events.
    pub fn applied_entries(&self) -> Option<(NodeId, AppliedEntries<'_>)> {
        match self {
            RaftSafetyEvent::Applied {
                node,
                index,
                digest,
            } => Some((*node, AppliedEntries::One(Some((*index, *digest))))),
            RaftSafetyEvent::AppliedBatch {
                node,
                first_index,
                digests,
            }
            | RaftSafetyEvent::Committed {
                node,
                first_index,
                digests,
                ..
            } => Some((
                *node,
                AppliedEntries::Batch {
                    next: *first_index,
                    rest: digests.iter(),
                },
            )),
            _ => None,
        }
    }
}

/// The entries an `Applied` or `AppliedBatch` event applied, as
/// (index, digest).
#[derive(Clone, Debug)]
pub enum AppliedEntries<'a> {
    /// A single entry (taken once).
    One(Option<(LogIndex, u64)>),
    /// A batch.
    Batch {
        /// Index of the next entry.
        next: LogIndex,
        /// The digests not yet returned.
        rest: std::slice::Iter<'a, u64>,
    },
}

impl Iterator for AppliedEntries<'_> {
    type Item = (LogIndex, u64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            AppliedEntries::One(entry) => entry.take(),
            AppliedEntries::Batch { next, rest } => {
                let digest = rest.next()?;
                let index = *next;
                *next = next.next();
                Some((index, *digest))
            }
        }
    }
}

/// The entries an `Appended` or `AppendedBatch` event wrote, as
/// (index, term, digest).
#[derive(Clone, Debug)]
pub enum AppendedEntries<'a> {
    /// A single entry (taken once).
    One(Option<(LogIndex, Term, u64)>),
    /// A batch.
    Batch {
        /// Index of the next entry.
        next: LogIndex,
        /// The entries not yet returned.
        rest: std::slice::Iter<'a, (Term, u64)>,
    },
}

impl Iterator for AppendedEntries<'_> {
    type Item = (LogIndex, Term, u64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            AppendedEntries::One(entry) => entry.take(),
            AppendedEntries::Batch { next, rest } => {
                let (term, digest) = rest.next()?;
                let index = *next;
                *next = next.next();
                Some((index, *term, *digest))
            }
        }
    }
}

impl fmt::Display for RaftSafetyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("raft ")?;
        match self {
            RaftSafetyEvent::Appended {
                node,
                index,
                term,
                digest,
            } => write!(f, "{node} appended {index} {term} {}", fmt_digest(*digest)),
            RaftSafetyEvent::AppendedBatch {
                node,
                first_index,
                entries,
            } => match (entries.first(), entries.last()) {
                (Some(first), Some(last)) => write!(
                    f,
                    "{node} appended {} entries {first_index}..={} ({}..={})",
                    entries.len(),
                    LogIndex(first_index.get() + entries.len() as u64 - 1),
                    first.0,
                    last.0
                ),
                _ => write!(f, "{node} appended no entries at {first_index}"),
            },
            RaftSafetyEvent::Truncated { node, from_index } => {
                write!(f, "{node} truncated its log from {from_index}")
            }
            RaftSafetyEvent::CommitAdvanced {
                node,
                term,
                commit_index,
            } => write!(
                f,
                "{node} advanced its commit index to {commit_index} in {term}"
            ),
            RaftSafetyEvent::Applied {
                node,
                index,
                digest,
            } => write!(f, "{node} applied {index} {}", fmt_digest(*digest)),
            RaftSafetyEvent::AppliedBatch {
                node,
                first_index,
                digests,
            } => match digests.len() {
                0 => write!(f, "{node} applied no entries at {first_index}"),
                1 => write!(f, "{node} applied {first_index} {}", fmt_digest(digests[0])),
                n => write!(
                    f,
                    "{node} applied {n} entries {first_index}..={}",
                    LogIndex(first_index.get() + n as u64 - 1)
                ),
            },
            RaftSafetyEvent::Committed {
                node,
                term,
                first_index,
                digests,
            } => match digests.len() {
                0 => write!(f, "{node} committed no entries at {first_index}"),
                1 => write!(
                    f,
                    "{node} committed and applied {first_index} {} in {term}",
                    fmt_digest(digests[0])
                ),
                n => write!(
                    f,
                    "{node} committed and applied {n} entries {first_index}..={} in {term}",
                    LogIndex(first_index.get() + n as u64 - 1)
                ),
            },
            RaftSafetyEvent::SnapshotInstalled {
                node,
                last_index,
                last_term,
            } => write!(
                f,
                "{node} installed a snapshot through {last_index} {last_term}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_entries_walk_single_and_batch_events() {
        let one = RaftSafetyEvent::Appended {
            node: NodeId(1),
            index: LogIndex(4),
            term: Term(2),
            digest: 9,
        };
        let (node, entries) = one.appended_entries().unwrap();
        assert_eq!(node, NodeId(1));
        assert_eq!(entries.collect::<Vec<_>>(), vec![(LogIndex(4), Term(2), 9)]);

        let batch = RaftSafetyEvent::AppendedBatch {
            node: NodeId(2),
            first_index: LogIndex(7),
            entries: vec![(Term(1), 10), (Term(3), 11)],
        };
        let (node, entries) = batch.appended_entries().unwrap();
        assert_eq!(node, NodeId(2));
        assert_eq!(
            entries.collect::<Vec<_>>(),
            vec![(LogIndex(7), Term(1), 10), (LogIndex(8), Term(3), 11)]
        );
        assert!(RaftSafetyEvent::Truncated {
            node: NodeId(1),
            from_index: LogIndex(1)
        }
        .appended_entries()
        .is_none());
    }

    #[test]
    fn applied_entries_walk_single_and_batch_events() {
        let one = RaftSafetyEvent::Applied {
            node: NodeId(1),
            index: LogIndex(4),
            digest: 9,
        };
        let (node, entries) = one.applied_entries().unwrap();
        assert_eq!(node, NodeId(1));
        assert_eq!(entries.collect::<Vec<_>>(), vec![(LogIndex(4), 9)]);
        let batch = RaftSafetyEvent::AppliedBatch {
            node: NodeId(2),
            first_index: LogIndex(7),
            digests: vec![10, 11, 12],
        };
        let (node, entries) = batch.applied_entries().unwrap();
        assert_eq!(node, NodeId(2));
        assert_eq!(
            entries.collect::<Vec<_>>(),
            vec![(LogIndex(7), 10), (LogIndex(8), 11), (LogIndex(9), 12)]
        );
        assert_eq!(
            SafetyEvent::from(batch).to_string(),
            "raft n2 applied 3 entries i7..=i9"
        );
        assert!(RaftSafetyEvent::Truncated {
            node: NodeId(1),
            from_index: LogIndex(1)
        }
        .applied_entries()
        .is_none());
    }

    #[test]
    fn events_print_as_short_sentences() {
        let ev: SafetyEvent = RaftSafetyEvent::AppendedBatch {
            node: NodeId(2),
            first_index: LogIndex(7),
            entries: vec![(Term(1), 10), (Term(3), 11)],
        }
        .into();
        assert_eq!(
            ev.to_string(),
            "raft n2 appended 2 entries i7..=i8 (t1..=t3)"
        );
        assert_eq!(
            became_leader(NodeId(3), Term(4)).to_string(),
            "n3 became leader of t4"
        );
        assert_eq!(
            SafetyEvent::Crashed { node: NodeId(1) }.to_string(),
            "n1 crashed"
        );
    }

    #[test]
    fn events_round_trip_through_json() {
        let ev: SafetyEvent = RaftSafetyEvent::CommitAdvanced {
            node: NodeId(1),
            term: Term(2),
            commit_index: LogIndex(3),
        }
        .into();
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<SafetyEvent>(&json).unwrap(), ev);
    }
}
