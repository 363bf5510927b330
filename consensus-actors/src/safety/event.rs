//! The events protocols report to the safety checker.
//!
//! Events are small and cheap to build: commands are represented by a `u64`
//! digest ([`digest_of`](super::digest_of)), never copied.

use crate::types::{Ballot, LogIndex, NodeId, SeqNo, Slot, Term, View};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One thing a node did that a safety property depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SafetyEvent {
    /// A Raft event.
    Raft(RaftEvent),
    /// A Paxos or Multi-Paxos event.
    Paxos(PaxosEvent),
    /// A PBFT event.
    Pbft(PbftEvent),
    /// The node crashed: its volatile state (roles, commit index, applied
    /// state) is lost, its durable state (term, vote, log, snapshot,
    /// promises) survives.
    Crashed {
        /// The node that crashed.
        node: NodeId,
    },
}

/// What a Raft node did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftEvent {
    /// The node won the election of `term`.
    BecameLeader {
        /// The new leader.
        node: NodeId,
        /// The term it leads.
        term: Term,
    },
    /// The node stopped being leader (it saw a higher term, was removed, or
    /// handed leadership over). Required for the Leader Append-Only check:
    /// a node is considered leader from `BecameLeader` until `SteppedDown` or
    /// a crash.
    SteppedDown {
        /// The former leader.
        node: NodeId,
    },
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

/// What a Paxos (or Multi-Paxos) participant did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaxosEvent {
    /// The acceptor promised not to accept any proposal numbered below
    /// `ballot`, in any slot (phase 1b).
    Promised {
        /// The acceptor.
        acceptor: NodeId,
        /// The promised ballot.
        ballot: Ballot,
    },
    /// The acceptor accepted the proposal (`ballot`, value) for `slot`
    /// (phase 2b).
    Accepted {
        /// The acceptor.
        acceptor: NodeId,
        /// The slot (single-decree Paxos uses one fixed slot).
        slot: Slot,
        /// The proposal number.
        ballot: Ballot,
        /// Digest of the proposed value.
        digest: u64,
    },
    /// A learner learned that the value was chosen in `slot`, accepted by a
    /// majority at `ballot`.
    Chosen {
        /// The learner.
        node: NodeId,
        /// The slot.
        slot: Slot,
        /// The ballot a majority accepted.
        ballot: Ballot,
        /// Digest of the chosen value.
        digest: u64,
    },
}

/// What a PBFT replica did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PbftEvent {
    /// `prepared(m, view, seq, replica)` became true (§4.2).
    Prepared {
        /// The replica.
        replica: NodeId,
        /// The view.
        view: View,
        /// The sequence number.
        seq: SeqNo,
        /// Digest of the request.
        digest: u64,
    },
    /// `committed-local(m, view, seq, replica)` became true (§4.2).
    Committed {
        /// The replica.
        replica: NodeId,
        /// The view.
        view: View,
        /// The sequence number.
        seq: SeqNo,
        /// Digest of the request.
        digest: u64,
    },
    /// These replicas are faulty (Byzantine) on purpose: their events are not
    /// trusted. Adds to any earlier declaration.
    ByzantineReplicas {
        /// The faulty replicas.
        replicas: Vec<NodeId>,
    },
}

impl From<RaftEvent> for SafetyEvent {
    fn from(ev: RaftEvent) -> Self {
        SafetyEvent::Raft(ev)
    }
}

impl From<PaxosEvent> for SafetyEvent {
    fn from(ev: PaxosEvent) -> Self {
        SafetyEvent::Paxos(ev)
    }
}

impl From<PbftEvent> for SafetyEvent {
    fn from(ev: PbftEvent) -> Self {
        SafetyEvent::Pbft(ev)
    }
}

impl RaftEvent {
    /// The node the event is about.
    pub fn node(&self) -> NodeId {
        match self {
            RaftEvent::BecameLeader { node, .. }
            | RaftEvent::SteppedDown { node }
            | RaftEvent::Appended { node, .. }
            | RaftEvent::AppendedBatch { node, .. }
            | RaftEvent::Truncated { node, .. }
            | RaftEvent::CommitAdvanced { node, .. }
            | RaftEvent::Applied { node, .. }
            | RaftEvent::AppliedBatch { node, .. }
            | RaftEvent::Committed { node, .. }
            | RaftEvent::SnapshotInstalled { node, .. } => *node,
        }
    }

    /// For `Appended` and `AppendedBatch`: the node and its written entries
    /// as (index, term, digest), in order. `None` for other events.
    pub fn appended_entries(&self) -> Option<(NodeId, AppendedEntries<'_>)> {
        match self {
            RaftEvent::Appended {
                node,
                index,
                term,
                digest,
            } => Some((*node, AppendedEntries::One(Some((*index, *term, *digest))))),
            RaftEvent::AppendedBatch {
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

impl RaftEvent {
    /// For `CommitAdvanced` and a non-empty `Committed`: the node, its term
    /// and its new commit index. `None` for other events.
    pub fn commit_advance(&self) -> Option<(NodeId, Term, LogIndex)> {
        match self {
            RaftEvent::CommitAdvanced {
                node,
                term,
                commit_index,
            } => Some((*node, *term, *commit_index)),
            RaftEvent::Committed {
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
            RaftEvent::Applied {
                node,
                index,
                digest,
            } => Some((*node, AppliedEntries::One(Some((*index, *digest))))),
            RaftEvent::AppliedBatch {
                node,
                first_index,
                digests,
            }
            | RaftEvent::Committed {
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

struct Digest(u64);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:016x}", self.0)
    }
}

/// Formats a digest the way events and violations print it (`#` and 16 hex
/// digits).
pub(crate) fn fmt_digest(digest: u64) -> String {
    Digest(digest).to_string()
}

impl fmt::Display for SafetyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SafetyEvent::Raft(ev) => write!(f, "raft {ev}"),
            SafetyEvent::Paxos(ev) => write!(f, "paxos {ev}"),
            SafetyEvent::Pbft(ev) => write!(f, "pbft {ev}"),
            SafetyEvent::Crashed { node } => write!(f, "{node} crashed"),
        }
    }
}

impl fmt::Display for RaftEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RaftEvent::BecameLeader { node, term } => write!(f, "{node} became leader of {term}"),
            RaftEvent::SteppedDown { node } => write!(f, "{node} stepped down"),
            RaftEvent::Appended {
                node,
                index,
                term,
                digest,
            } => write!(f, "{node} appended {index} {term} {}", Digest(*digest)),
            RaftEvent::AppendedBatch {
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
            RaftEvent::Truncated { node, from_index } => {
                write!(f, "{node} truncated its log from {from_index}")
            }
            RaftEvent::CommitAdvanced {
                node,
                term,
                commit_index,
            } => write!(
                f,
                "{node} advanced its commit index to {commit_index} in {term}"
            ),
            RaftEvent::Applied {
                node,
                index,
                digest,
            } => write!(f, "{node} applied {index} {}", Digest(*digest)),
            RaftEvent::AppliedBatch {
                node,
                first_index,
                digests,
            } => match digests.len() {
                0 => write!(f, "{node} applied no entries at {first_index}"),
                1 => write!(f, "{node} applied {first_index} {}", Digest(digests[0])),
                n => write!(
                    f,
                    "{node} applied {n} entries {first_index}..={}",
                    LogIndex(first_index.get() + n as u64 - 1)
                ),
            },
            RaftEvent::Committed {
                node,
                term,
                first_index,
                digests,
            } => match digests.len() {
                0 => write!(f, "{node} committed no entries at {first_index}"),
                1 => write!(
                    f,
                    "{node} committed and applied {first_index} {} in {term}",
                    Digest(digests[0])
                ),
                n => write!(
                    f,
                    "{node} committed and applied {n} entries {first_index}..={} in {term}",
                    LogIndex(first_index.get() + n as u64 - 1)
                ),
            },
            RaftEvent::SnapshotInstalled {
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

impl fmt::Display for PaxosEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaxosEvent::Promised { acceptor, ballot } => write!(f, "{acceptor} promised {ballot}"),
            PaxosEvent::Accepted {
                acceptor,
                slot,
                ballot,
                digest,
            } => write!(f, "{acceptor} accepted {slot} {ballot} {}", Digest(*digest)),
            PaxosEvent::Chosen {
                node,
                slot,
                ballot,
                digest,
            } => write!(
                f,
                "{node} learned {slot} chosen at {ballot} {}",
                Digest(*digest)
            ),
        }
    }
}

impl fmt::Display for PbftEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PbftEvent::Prepared {
                replica,
                view,
                seq,
                digest,
            } => write!(f, "{replica} prepared {view} {seq} {}", Digest(*digest)),
            PbftEvent::Committed {
                replica,
                view,
                seq,
                digest,
            } => write!(f, "{replica} committed {view} {seq} {}", Digest(*digest)),
            PbftEvent::ByzantineReplicas { replicas } => {
                f.write_str("byzantine replicas")?;
                for r in replicas {
                    write!(f, " {r}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_entries_walk_single_and_batch_events() {
        let one = RaftEvent::Appended {
            node: NodeId(1),
            index: LogIndex(4),
            term: Term(2),
            digest: 9,
        };
        let (node, entries) = one.appended_entries().unwrap();
        assert_eq!(node, NodeId(1));
        assert_eq!(entries.collect::<Vec<_>>(), vec![(LogIndex(4), Term(2), 9)]);

        let batch = RaftEvent::AppendedBatch {
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
        assert!(RaftEvent::SteppedDown { node: NodeId(1) }
            .appended_entries()
            .is_none());
    }

    #[test]
    fn applied_entries_walk_single_and_batch_events() {
        let one = RaftEvent::Applied {
            node: NodeId(1),
            index: LogIndex(4),
            digest: 9,
        };
        let (node, entries) = one.applied_entries().unwrap();
        assert_eq!(node, NodeId(1));
        assert_eq!(entries.collect::<Vec<_>>(), vec![(LogIndex(4), 9)]);
        let batch = RaftEvent::AppliedBatch {
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
        assert!(RaftEvent::SteppedDown { node: NodeId(1) }
            .applied_entries()
            .is_none());
    }

    #[test]
    fn events_print_as_short_sentences() {
        let ev: SafetyEvent = RaftEvent::AppendedBatch {
            node: NodeId(2),
            first_index: LogIndex(7),
            entries: vec![(Term(1), 10), (Term(3), 11)],
        }
        .into();
        assert_eq!(
            ev.to_string(),
            "raft n2 appended 2 entries i7..=i8 (t1..=t3)"
        );
        let ev: SafetyEvent = PaxosEvent::Accepted {
            acceptor: NodeId(3),
            slot: Slot(5),
            ballot: Ballot::new(2, NodeId(1)),
            digest: 0xab,
        }
        .into();
        assert_eq!(
            ev.to_string(),
            "paxos n3 accepted slot5 b2.1 #00000000000000ab"
        );
        let ev: SafetyEvent = PbftEvent::ByzantineReplicas {
            replicas: vec![NodeId(3), NodeId(4)],
        }
        .into();
        assert_eq!(ev.to_string(), "pbft byzantine replicas n3 n4");
        assert_eq!(
            SafetyEvent::Crashed { node: NodeId(1) }.to_string(),
            "n1 crashed"
        );
    }

    #[test]
    fn events_round_trip_through_json() {
        let ev: SafetyEvent = RaftEvent::CommitAdvanced {
            node: NodeId(1),
            term: Term(2),
            commit_index: LogIndex(3),
        }
        .into();
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<SafetyEvent>(&json).unwrap(), ev);
    }
}
