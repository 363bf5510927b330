//! The verifier's mirror of each Raft node's log: (term, command digest) per
//! index above the node's snapshot, the snapshot's (index, term), and the
//! node's commit index. The [`SafetyChecker`](super::SafetyChecker) keeps one
//! [`RaftLogs`] for all its invariants and updates it after every invariant
//! has seen an event (see [`Invariant::observe_with_logs`](super::Invariant::observe_with_logs));
//! an invariant used on its own keeps its own.

use super::{AppendedEntries, RaftSafetyEvent, SafetyEvent};
use consensus_actors::types::{LogIndex, NodeId, Term};
use std::collections::BTreeMap;

/// What the verifier knows of one node's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLog {
    snapshot_index: LogIndex,
    /// `None` when unknown (the log restarted after a gap in the reports).
    snapshot_term: Option<Term>,
    /// `entries[k]` is the entry at `snapshot_index + 1 + k`.
    entries: Vec<(Term, u64)>,
    commit_index: LogIndex,
}

impl Default for NodeLog {
    fn default() -> Self {
        Self {
            snapshot_index: LogIndex::ZERO,
            snapshot_term: Some(Term::ZERO),
            entries: Vec::new(),
            commit_index: LogIndex::ZERO,
        }
    }
}

/// What writing one entry did to a [`NodeLog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The entry extended the log by one.
    Extended,
    /// An entry of the same term was already at that index (nothing
    /// changed, except the digest if it differed).
    AlreadyPresent {
        /// The digest that was there before.
        digest: u64,
    },
    /// An entry of another term was there: it and everything after it were
    /// removed, then the new entry written.
    Replaced {
        /// The term of the entry that was replaced.
        old_term: Term,
        /// How many entries were removed (including the replaced one).
        removed: u64,
    },
    /// The index is inside the snapshot (or is 0): nothing changed.
    BelowSnapshot,
    /// The index is beyond `last_index + 1`: the mirror forgets the log and
    /// restarts from this entry with an unknown prefix.
    Gap {
        /// The last index before the write.
        last_index: LogIndex,
    },
}

/// One entry of an append, with what the node's log held just before that
/// entry was written (earlier entries of the same event included). See
/// [`NodeLog::walk_append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryWrite {
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term.
    pub term: Term,
    /// The entry's command digest.
    pub digest: u64,
    /// The log's last index just before the write.
    pub last_before: LogIndex,
    /// The term at `index - 1` just before the write; `None` when `index`
    /// is inside the snapshot, beyond `last_before + 1` (a hole), or the
    /// term there is unknown.
    pub prev_term: Option<Term>,
    /// What [`NodeLog::append`] does with the entry.
    pub outcome: AppendOutcome,
}

/// The entries of one append event, each with the state of the log just
/// before it is written, computed from the log before the event without
/// changing it. Built by [`NodeLog::walk_append`].
#[derive(Clone, Debug)]
pub struct AppendWalk<'a> {
    log: &'a NodeLog,
    entries: AppendedEntries<'a>,
    /// The last index after the entries walked so far.
    last: LogIndex,
    /// True while every entry walked so far left the log's entries from
    /// `log` in place (it was inside the snapshot or already present).
    intact: bool,
    /// The last entry walked that was written (not inside the snapshot).
    prev_written: Option<(LogIndex, Term)>,
}

impl Iterator for AppendWalk<'_> {
    type Item = EntryWrite;

    fn next(&mut self) -> Option<EntryWrite> {
        let (index, term, digest) = self.entries.next()?;
        let last_before = self.last;
        let (prev_term, outcome) = if index <= self.log.snapshot_index {
            (None, AppendOutcome::BelowSnapshot)
        } else {
            let prev_term = match self.prev_written {
                Some((i, t)) if i.next() == index => Some(t),
                // Contiguous entries: nothing was written at index - 1 by
                // this event, so the log there is still the original.
                _ => self.log.term_at(index.prev()),
            };
            if index.get() == last_before.get() + 1 {
                (prev_term, AppendOutcome::Extended)
            } else if index > last_before {
                (
                    None,
                    AppendOutcome::Gap {
                        last_index: last_before,
                    },
                )
            } else {
                // Inside the log: only reachable while the original entries
                // are in place (after any other write, index is last + 1).
                debug_assert!(self.intact);
                match self.log.entry_at(index) {
                    Some((old_term, old_digest)) if old_term == term => (
                        prev_term,
                        AppendOutcome::AlreadyPresent { digest: old_digest },
                    ),
                    Some((old_term, _)) => (
                        prev_term,
                        AppendOutcome::Replaced {
                            old_term,
                            removed: last_before.get() - index.get() + 1,
                        },
                    ),
                    None => (prev_term, AppendOutcome::BelowSnapshot),
                }
            }
        };
        match outcome {
            AppendOutcome::BelowSnapshot | AppendOutcome::AlreadyPresent { .. } => {}
            AppendOutcome::Extended
            | AppendOutcome::Gap { .. }
            | AppendOutcome::Replaced { .. } => {
                self.intact = false;
                self.last = index;
            }
        }
        if !matches!(outcome, AppendOutcome::BelowSnapshot) {
            self.prev_written = Some((index, term));
        }
        Some(EntryWrite {
            index,
            term,
            digest,
            last_before,
            prev_term,
            outcome,
        })
    }
}

/// What installing a snapshot did to a [`NodeLog`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// The snapshot is not newer than the current one: nothing changed.
    Stale,
    /// The log held the snapshot's last entry: entries up to it were
    /// compacted, later ones kept.
    Compacted,
    /// The log did not hold the snapshot's last entry: every entry was
    /// discarded.
    Replaced {
        /// How many entries were discarded.
        removed: u64,
    },
}

impl NodeLog {
    /// The index of the last entry (the snapshot's if there are none).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot_index.get() + self.entries.len() as u64)
    }

    /// The snapshot's last index and term (index 0, term 0 before any).
    pub fn snapshot(&self) -> (LogIndex, Option<Term>) {
        (self.snapshot_index, self.snapshot_term)
    }

    /// The node's commit index as last reported (reset to the snapshot
    /// index by a crash).
    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }

    /// The number of entries held above the snapshot.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no entries are held above the snapshot.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn offset(&self, index: LogIndex) -> Option<usize> {
        if index <= self.snapshot_index {
            return None;
        }
        let k = index.get() - self.snapshot_index.get() - 1;
        if k < self.entries.len() as u64 {
            usize::try_from(k).ok()
        } else {
            None
        }
    }

    /// The term of the entry at `index`: known for the snapshot's last index
    /// and every index above it that the log holds; `None` otherwise.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_index {
            self.snapshot_term
        } else {
            self.offset(index).map(|k| self.entries[k].0)
        }
    }

    /// The (term, digest) of the entry at `index`, for indexes above the
    /// snapshot that the log holds.
    pub fn entry_at(&self, index: LogIndex) -> Option<(Term, u64)> {
        self.offset(index).map(|k| self.entries[k])
    }

    /// The entries the log holds above its snapshot at indexes `first..=last`,
    /// as (index, term, digest), in index order: the indexes for which
    /// [`entry_at`](Self::entry_at) is `Some`, read as one slice.
    pub fn entries_between(
        &self,
        first: LogIndex,
        last: LogIndex,
    ) -> impl Iterator<Item = (LogIndex, Term, u64)> + '_ {
        let start = first.max(LogIndex(self.snapshot_index.get().saturating_add(1)));
        let end = last.min(self.last_index());
        let base = self.snapshot_index.get() + 1;
        let slice = if start <= end {
            let lo = usize::try_from(start.get() - base).unwrap_or(usize::MAX);
            let hi = usize::try_from(end.get() - base).unwrap_or(usize::MAX);
            self.entries.get(lo..=hi).unwrap_or(&[])
        } else {
            &[]
        };
        slice
            .iter()
            .enumerate()
            .map(move |(k, &(term, digest))| (LogIndex(start.get() + k as u64), term, digest))
    }

    /// Would writing (`index`, `term`) replace an entry of another term?
    pub fn would_replace(&self, index: LogIndex, term: Term) -> bool {
        self.entry_at(index).is_some_and(|(t, _)| t != term)
    }

    /// Writes one entry, with Raft's rule for conflicts.
    pub fn append(&mut self, index: LogIndex, term: Term, digest: u64) -> AppendOutcome {
        if index <= self.snapshot_index {
            return AppendOutcome::BelowSnapshot;
        }
        let last = self.last_index();
        if index.get() == last.get() + 1 {
            self.entries.push((term, digest));
            return AppendOutcome::Extended;
        }
        if index > last {
            self.snapshot_index = index.prev();
            self.snapshot_term = None;
            self.entries.clear();
            self.entries.push((term, digest));
            self.commit_index = self.commit_index.min(self.snapshot_index);
            return AppendOutcome::Gap { last_index: last };
        }
        // index is inside the log.
        let Some(k) = self.offset(index) else {
            return AppendOutcome::BelowSnapshot;
        };
        let (old_term, old_digest) = self.entries[k];
        if old_term == term {
            self.entries[k].1 = digest;
            return AppendOutcome::AlreadyPresent { digest: old_digest };
        }
        let removed = (self.entries.len() - k) as u64;
        self.entries.truncate(k);
        self.entries.push((term, digest));
        AppendOutcome::Replaced { old_term, removed }
    }

    /// Walks the entries of one append event (contiguous, increasing
    /// indexes) through this log without changing it: each comes with the
    /// log's state just before it would be written, and what writing it
    /// would do, as if the earlier ones had been [`append`](Self::append)ed.
    pub fn walk_append<'a>(&'a self, entries: AppendedEntries<'a>) -> AppendWalk<'a> {
        AppendWalk {
            log: self,
            entries,
            last: self.last_index(),
            intact: true,
            prev_written: None,
        }
    }

    /// Writes contiguous entries from `first_index` on, as [`append`](Self::append)
    /// would one by one; a batch that extends the log (the usual case) is
    /// copied in at once.
    pub fn append_batch(&mut self, first_index: LogIndex, entries: &[(Term, u64)]) {
        if first_index > self.snapshot_index && first_index == self.last_index().next() {
            self.entries.extend_from_slice(entries);
            return;
        }
        let mut index = first_index;
        for (term, digest) in entries {
            self.append(index, *term, *digest);
            index = index.next();
        }
    }

    /// Removes every entry at `from_index` and after; returns how many were
    /// removed. The snapshot cannot be removed: a `from_index` inside it
    /// removes every entry above it.
    pub fn truncate(&mut self, from_index: LogIndex) -> u64 {
        let keep = if from_index <= self.snapshot_index {
            0
        } else {
            let k = from_index.get() - self.snapshot_index.get() - 1;
            usize::try_from(k)
                .unwrap_or(usize::MAX)
                .min(self.entries.len())
        };
        let removed = (self.entries.len() - keep) as u64;
        self.entries.truncate(keep);
        removed
    }

    /// Would installing a snapshot through (`last_index`, `last_term`)
    /// discard the entry at `last_index` or entries after it?
    pub fn snapshot_would_discard(&self, last_index: LogIndex, last_term: Term) -> bool {
        if last_index <= self.snapshot_index || self.term_at(last_index) == Some(last_term) {
            return false;
        }
        self.term_at(last_index).is_some() || self.last_index() > last_index
    }

    /// Installs a snapshot, with Raft's rule (§7): keep the entries after
    /// the snapshot if the log holds its last entry, else discard them all.
    pub fn install_snapshot(&mut self, last_index: LogIndex, last_term: Term) -> SnapshotOutcome {
        if last_index <= self.snapshot_index {
            return SnapshotOutcome::Stale;
        }
        let outcome = if self.term_at(last_index) == Some(last_term) {
            let drop = usize::try_from(last_index.get() - self.snapshot_index.get())
                .unwrap_or(usize::MAX)
                .min(self.entries.len());
            self.entries.drain(..drop);
            self.commit_index = self.commit_index.max(last_index);
            SnapshotOutcome::Compacted
        } else {
            let removed = self.entries.len() as u64;
            self.entries.clear();
            self.commit_index = last_index;
            SnapshotOutcome::Replaced { removed }
        };
        self.snapshot_index = last_index;
        self.snapshot_term = Some(last_term);
        outcome
    }

    /// Raises the commit index to `commit_index` (never lowers it, never
    /// beyond the last entry). Returns the newly committed range
    /// `(first, last)` of indexes, if any.
    pub fn advance_commit(&mut self, commit_index: LogIndex) -> Option<(LogIndex, LogIndex)> {
        let range = self.newly_committed(commit_index);
        if let Some((_, target)) = range {
            self.commit_index = target;
        }
        range
    }

    /// The range `(first, last)` of indexes that
    /// [`advance_commit`](Self::advance_commit)`(commit_index)` would newly
    /// commit, if any, without changing anything.
    pub fn newly_committed(&self, commit_index: LogIndex) -> Option<(LogIndex, LogIndex)> {
        let target = commit_index.min(self.last_index());
        (target > self.commit_index).then(|| (self.commit_index.next(), target))
    }

    /// Forgets volatile state after a crash: the commit index falls back to
    /// the snapshot (the log itself is durable).
    pub fn crash(&mut self) {
        self.commit_index = self.snapshot_index;
    }
}

/// The mirrored logs of every node, updated from [`RaftSafetyEvent`]s.
#[derive(Clone, Debug, Default)]
pub struct RaftLogs {
    /// `dense[id]` is the log of the node numbered `id`, for the small
    /// numbers clusters use (every invariant looks a log up per event:
    /// one bounds check instead of a tree search).
    dense: Vec<Option<NodeLog>>,
    /// Logs of nodes numbered [`DENSE_NODES_MAX`] or more.
    sparse: BTreeMap<NodeId, NodeLog>,
}

/// Node numbers below this are kept in [`RaftLogs`]'s dense table.
const DENSE_NODES_MAX: u64 = 1024;

impl RaftLogs {
    /// The log of `node`, if it reported anything.
    pub fn get(&self, node: NodeId) -> Option<&NodeLog> {
        if node.get() < DENSE_NODES_MAX {
            self.dense.get(node.get() as usize)?.as_ref()
        } else {
            self.sparse.get(&node)
        }
    }

    fn get_mut(&mut self, node: NodeId) -> Option<&mut NodeLog> {
        if node.get() < DENSE_NODES_MAX {
            self.dense.get_mut(node.get() as usize)?.as_mut()
        } else {
            self.sparse.get_mut(&node)
        }
    }

    /// The log of `node`, created empty if unknown.
    pub fn log_mut(&mut self, node: NodeId) -> &mut NodeLog {
        if node.get() < DENSE_NODES_MAX {
            let slot = node.get() as usize;
            if self.dense.len() <= slot {
                self.dense.resize_with(slot + 1, || None);
            }
            self.dense[slot].get_or_insert_with(NodeLog::default)
        } else {
            self.sparse.entry(node).or_default()
        }
    }

    /// Updates the mirror with one event (every event that changes a log,
    /// a commit index, or volatile state; others are ignored).
    pub fn apply(&mut self, ev: &SafetyEvent) {
        match ev {
            SafetyEvent::Crashed { node } => {
                if let Some(log) = self.get_mut(*node) {
                    log.crash();
                }
            }
            SafetyEvent::Protocol(r) => self.apply_raft(r),
            _ => {}
        }
    }

    fn apply_raft(&mut self, ev: &RaftSafetyEvent) {
        if let RaftSafetyEvent::AppendedBatch {
            node,
            first_index,
            entries,
        } = ev
        {
            self.log_mut(*node).append_batch(*first_index, entries);
            return;
        }
        if let Some((node, entries)) = ev.appended_entries() {
            let log = self.log_mut(node);
            for (index, term, digest) in entries {
                log.append(index, term, digest);
            }
            return;
        }
        match ev {
            RaftSafetyEvent::Truncated { node, from_index } => {
                self.log_mut(*node).truncate(*from_index);
            }
            RaftSafetyEvent::SnapshotInstalled {
                node,
                last_index,
                last_term,
            } => {
                self.log_mut(*node)
                    .install_snapshot(*last_index, *last_term);
            }
            RaftSafetyEvent::CommitAdvanced { .. } | RaftSafetyEvent::Committed { .. } => {
                if let Some((node, _, commit_index)) = ev.commit_advance() {
                    self.log_mut(node).advance_commit(commit_index);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(entries: &[(u64, u64)]) -> NodeLog {
        let mut log = NodeLog::default();
        for (k, (term, digest)) in entries.iter().enumerate() {
            let outcome = log.append(LogIndex(k as u64 + 1), Term(*term), *digest);
            assert_eq!(outcome, AppendOutcome::Extended);
        }
        log
    }

    #[test]
    fn appends_extend_keep_or_replace_like_append_entries() {
        let mut log = log_of(&[(1, 10), (1, 11), (2, 12)]);
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(
            log.append(LogIndex(2), Term(1), 11),
            AppendOutcome::AlreadyPresent { digest: 11 }
        );
        assert_eq!(
            log.last_index(),
            LogIndex(3),
            "a matching entry keeps the suffix"
        );
        assert!(log.would_replace(LogIndex(2), Term(3)));
        assert_eq!(
            log.append(LogIndex(2), Term(3), 20),
            AppendOutcome::Replaced {
                old_term: Term(1),
                removed: 2
            }
        );
        assert_eq!(log.last_index(), LogIndex(2));
        assert_eq!(log.entry_at(LogIndex(2)), Some((Term(3), 20)));
        assert_eq!(log.term_at(LogIndex(0)), Some(Term(0)));
        assert_eq!(
            log.append(LogIndex(0), Term(1), 1),
            AppendOutcome::BelowSnapshot
        );
    }

    /// The walk reports, for every entry, what appending the entries one by
    /// one would see and do.
    #[test]
    fn walking_an_append_matches_appending_one_by_one() {
        let base = log_of(&[(1, 10), (1, 11), (2, 12), (2, 13)]);
        let mut compacted = base.clone();
        compacted.install_snapshot(LogIndex(2), Term(1));
        let mut unknown_prefix = base.clone();
        unknown_prefix.append(LogIndex(7), Term(3), 17);
        let batches: [(u64, &[(Term, u64)]); 8] = [
            (5, &[(Term(2), 14), (Term(3), 15)]),
            (
                2,
                &[(Term(1), 11), (Term(2), 22), (Term(3), 14), (Term(3), 15)],
            ),
            (3, &[(Term(3), 20), (Term(3), 21), (Term(3), 22)]),
            (2, &[(Term(1), 11), (Term(2), 12)]),
            (7, &[(Term(3), 15), (Term(3), 16)]),
            (
                0,
                &[(Term(1), 9), (Term(1), 10), (Term(1), 11), (Term(4), 12)],
            ),
            (
                1,
                &[
                    (Term(1), 10),
                    (Term(1), 11),
                    (Term(1), 12),
                    (Term(1), 13),
                    (Term(1), 14),
                ],
            ),
            (8, &[(Term(3), 18)]),
        ];
        for log in [&base, &compacted, &unknown_prefix] {
            for (first, entries) in batches {
                let event = RaftSafetyEvent::AppendedBatch {
                    node: NodeId(1),
                    first_index: LogIndex(first),
                    entries: entries.to_vec(),
                };
                let (_, appended) = event.appended_entries().unwrap();
                let walked: Vec<EntryWrite> = log.walk_append(appended).collect();
                let mut one_by_one = log.clone();
                let mut expected = Vec::new();
                for (k, (term, digest)) in entries.iter().enumerate() {
                    let index = LogIndex(first + k as u64);
                    let last_before = one_by_one.last_index();
                    let (snapshot_index, _) = one_by_one.snapshot();
                    let prev_term = if index <= snapshot_index || index > last_before.next() {
                        None
                    } else {
                        one_by_one.term_at(index.prev())
                    };
                    let outcome = one_by_one.append(index, *term, *digest);
                    expected.push(EntryWrite {
                        index,
                        term: *term,
                        digest: *digest,
                        last_before,
                        prev_term,
                        outcome,
                    });
                }
                assert_eq!(walked, expected, "batch from i{first} on {log:?}");
                let mut applied = log.clone();
                applied.append_batch(LogIndex(first), entries);
                assert_eq!(applied, one_by_one);
            }
        }
    }

    #[test]
    fn a_batch_writes_what_its_entries_would_one_by_one() {
        let base = log_of(&[(1, 10), (1, 11), (2, 12)]);
        let batches: [(u64, &[(Term, u64)]); 5] = [
            (4, &[(Term(2), 13), (Term(3), 14)]),                // extends
            (2, &[(Term(1), 11), (Term(2), 12), (Term(3), 14)]), // overlaps, then extends
            (2, &[(Term(3), 20), (Term(3), 21)]),                // replaces the suffix
            (6, &[(Term(3), 15)]),                               // leaves a gap
            (0, &[(Term(1), 9), (Term(1), 10)]),                 // starts below the log
        ];
        for (first, entries) in batches {
            let mut one_by_one = base.clone();
            for (k, (term, digest)) in entries.iter().enumerate() {
                one_by_one.append(LogIndex(first + k as u64), *term, *digest);
            }
            let mut batched = base.clone();
            batched.append_batch(LogIndex(first), entries);
            assert_eq!(batched, one_by_one, "batch from i{first}");
        }
        let mut compacted = base.clone();
        compacted.install_snapshot(LogIndex(3), Term(2));
        let mut one_by_one = compacted.clone();
        one_by_one.append(LogIndex(3), Term(2), 12);
        one_by_one.append(LogIndex(4), Term(2), 13);
        compacted.append_batch(LogIndex(3), &[(Term(2), 12), (Term(2), 13)]);
        assert_eq!(compacted, one_by_one);
        assert_eq!(compacted.entry_at(LogIndex(4)), Some((Term(2), 13)));
    }

    /// `entries_between` yields exactly the indexes `entry_at` knows.
    #[test]
    fn entries_between_reads_what_entry_at_would() {
        let mut log = log_of(&[(1, 10), (1, 11), (2, 12), (2, 13), (3, 14)]);
        log.install_snapshot(LogIndex(2), Term(1));
        for first in 0..8 {
            for last in 0..8 {
                let expected: Vec<(LogIndex, Term, u64)> = (first..=last)
                    .filter_map(|i| log.entry_at(LogIndex(i)).map(|(t, d)| (LogIndex(i), t, d)))
                    .collect();
                let got: Vec<_> = log
                    .entries_between(LogIndex(first), LogIndex(last))
                    .collect();
                assert_eq!(got, expected, "{first}..={last}");
            }
        }
        assert_eq!(
            log.entries_between(LogIndex(4), LogIndex(4))
                .collect::<Vec<_>>(),
            vec![(LogIndex(4), Term(2), 13)]
        );
    }

    #[test]
    fn a_gap_restarts_the_mirror_with_an_unknown_prefix() {
        let mut log = log_of(&[(1, 10)]);
        assert_eq!(
            log.append(LogIndex(4), Term(2), 13),
            AppendOutcome::Gap {
                last_index: LogIndex(1)
            }
        );
        assert_eq!(log.snapshot(), (LogIndex(3), None));
        assert_eq!(log.term_at(LogIndex(3)), None);
        assert_eq!(log.entry_at(LogIndex(4)), Some((Term(2), 13)));
    }

    #[test]
    fn truncation_removes_the_suffix_but_never_the_snapshot() {
        let mut log = log_of(&[(1, 10), (1, 11), (2, 12)]);
        assert_eq!(log.truncate(LogIndex(5)), 0);
        assert_eq!(log.truncate(LogIndex(3)), 1);
        assert_eq!(log.last_index(), LogIndex(2));
        assert_eq!(
            log.install_snapshot(LogIndex(1), Term(1)),
            SnapshotOutcome::Compacted
        );
        assert_eq!(log.truncate(LogIndex(1)), 1);
        assert_eq!(log.last_index(), LogIndex(1));
        assert_eq!(log.term_at(LogIndex(1)), Some(Term(1)));
    }

    #[test]
    fn snapshots_keep_a_matching_suffix_and_discard_a_conflicting_log() {
        let mut log = log_of(&[(1, 10), (1, 11), (2, 12), (2, 13)]);
        assert!(!log.snapshot_would_discard(LogIndex(2), Term(1)));
        assert_eq!(
            log.install_snapshot(LogIndex(2), Term(1)),
            SnapshotOutcome::Compacted
        );
        assert_eq!(log.snapshot(), (LogIndex(2), Some(Term(1))));
        assert_eq!(log.len(), 2);
        assert_eq!(log.entry_at(LogIndex(3)), Some((Term(2), 12)));
        assert_eq!(log.entry_at(LogIndex(2)), None);
        assert_eq!(log.term_at(LogIndex(2)), Some(Term(1)));
        assert_eq!(log.commit_index(), LogIndex(2));
        assert_eq!(
            log.install_snapshot(LogIndex(1), Term(1)),
            SnapshotOutcome::Stale
        );

        assert!(log.snapshot_would_discard(LogIndex(3), Term(3)));
        assert!(!log.snapshot_would_discard(LogIndex(9), Term(3)));
        assert_eq!(
            log.install_snapshot(LogIndex(3), Term(3)),
            SnapshotOutcome::Replaced { removed: 2 }
        );
        assert!(log.is_empty());
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(
            log.append(LogIndex(4), Term(3), 14),
            AppendOutcome::Extended
        );
    }

    #[test]
    fn commit_index_only_grows_within_the_log_and_a_crash_resets_it() {
        let mut log = log_of(&[(1, 10), (1, 11), (2, 12)]);
        assert_eq!(
            log.advance_commit(LogIndex(2)),
            Some((LogIndex(1), LogIndex(2)))
        );
        assert_eq!(log.advance_commit(LogIndex(1)), None);
        assert_eq!(
            log.advance_commit(LogIndex(9)),
            Some((LogIndex(3), LogIndex(3)))
        );
        assert_eq!(log.commit_index(), LogIndex(3));
        log.crash();
        assert_eq!(log.commit_index(), LogIndex(0));
        assert_eq!(log.last_index(), LogIndex(3), "the log is durable");
    }

    #[test]
    fn raft_logs_follow_events() {
        let mut logs = RaftLogs::default();
        logs.apply(
            &RaftSafetyEvent::AppendedBatch {
                node: NodeId(1),
                first_index: LogIndex(1),
                entries: vec![(Term(1), 1), (Term(1), 2)],
            }
            .into(),
        );
        logs.apply(
            &RaftSafetyEvent::CommitAdvanced {
                node: NodeId(1),
                term: Term(1),
                commit_index: LogIndex(2),
            }
            .into(),
        );
        assert_eq!(logs.get(NodeId(1)).unwrap().commit_index(), LogIndex(2));
        logs.apply(&SafetyEvent::Crashed { node: NodeId(1) });
        assert_eq!(logs.get(NodeId(1)).unwrap().commit_index(), LogIndex(0));
        logs.apply(
            &RaftSafetyEvent::Truncated {
                node: NodeId(1),
                from_index: LogIndex(2),
            }
            .into(),
        );
        assert_eq!(logs.get(NodeId(1)).unwrap().last_index(), LogIndex(1));
        assert!(logs.get(NodeId(2)).is_none());
    }

    /// Nodes numbered past the dense table are mirrored like the others,
    /// apart from each other and from a small number they share bits with.
    #[test]
    fn raft_logs_keep_small_and_large_node_numbers_apart() {
        let big = NodeId(DENSE_NODES_MAX + 3);
        let bigger = NodeId(u64::MAX);
        let mut logs = RaftLogs::default();
        for (node, entries) in [(NodeId(3), 1), (big, 2), (bigger, 3)] {
            logs.apply(
                &RaftSafetyEvent::AppendedBatch {
                    node,
                    first_index: LogIndex(1),
                    entries: vec![(Term(1), 7); entries],
                }
                .into(),
            );
            logs.apply(
                &RaftSafetyEvent::CommitAdvanced {
                    node,
                    term: Term(1),
                    commit_index: LogIndex(1),
                }
                .into(),
            );
        }
        assert_eq!(logs.get(NodeId(3)).unwrap().last_index(), LogIndex(1));
        assert_eq!(logs.get(big).unwrap().last_index(), LogIndex(2));
        assert_eq!(logs.get(bigger).unwrap().last_index(), LogIndex(3));
        assert!(logs.get(NodeId(DENSE_NODES_MAX - 1)).is_none());
        assert!(logs.get(NodeId(DENSE_NODES_MAX)).is_none());
        logs.apply(&SafetyEvent::Crashed { node: big });
        assert_eq!(logs.get(big).unwrap().commit_index(), LogIndex(0));
        assert_eq!(logs.get(bigger).unwrap().commit_index(), LogIndex(1));
        assert_eq!(logs.get(NodeId(3)).unwrap().commit_index(), LogIndex(1));
    }
}
