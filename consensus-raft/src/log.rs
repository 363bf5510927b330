//! The in-memory view of a Raft log: the entries after the last snapshot,
//! addressed by [`LogIndex`], with the snapshot's last included id standing
//! in for everything purged.

use crate::messages::EntryRef;
use consensus_actors::types::{LogId, LogIndex, Term};
use std::collections::VecDeque;

/// The log suffix held in memory: `entries[k].index == snapshot_last.index + 1 + k`.
#[derive(Debug, Clone)]
pub struct RaftLog<C> {
    snapshot_last: LogId,
    entries: VecDeque<EntryRef<C>>,
}

impl<C> Default for RaftLog<C> {
    fn default() -> Self {
        Self {
            snapshot_last: LogId::default(),
            entries: VecDeque::new(),
        }
    }
}

impl<C> RaftLog<C> {
    /// A log whose purged prefix ends at `snapshot_last`, followed by
    /// `entries` (which must be consecutive from `snapshot_last.index + 1`).
    ///
    /// # Panics
    /// If the entries are not consecutive or their terms decrease (a log
    /// like that was never written by Raft).
    pub fn restore(snapshot_last: LogId, entries: impl IntoIterator<Item = EntryRef<C>>) -> Self {
        let mut log = Self {
            snapshot_last,
            entries: VecDeque::new(),
        };
        for e in entries {
            log.append(e);
        }
        log
    }

    /// The id of the last entry covered by the snapshot (index 0 when none).
    pub fn snapshot_last(&self) -> LogId {
        self.snapshot_last
    }

    /// Index of the first entry held in memory (`snapshot_last + 1`).
    pub fn first_index(&self) -> LogIndex {
        self.snapshot_last.index.next()
    }

    /// Index of the last entry (the snapshot's when the suffix is empty).
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot_last.index.get() + self.entries.len() as u64)
    }

    /// Id of the last entry (the snapshot's when the suffix is empty).
    pub fn last_log_id(&self) -> LogId {
        self.entries
            .back()
            .map(|e| e.log_id())
            .unwrap_or(self.snapshot_last)
    }

    /// Number of entries held in memory.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is held in memory.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn offset(&self, index: LogIndex) -> Option<usize> {
        if index <= self.snapshot_last.index {
            return None;
        }
        let k = (index.get() - self.snapshot_last.index.get() - 1) as usize;
        (k < self.entries.len()).then_some(k)
    }

    /// The term of the entry at `index`: the snapshot's term at its last
    /// included index, `None` when purged or beyond the end. Index 0 has term 0.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot_last.index {
            return Some(self.snapshot_last.term);
        }
        self.offset(index).map(|k| self.entries[k].term)
    }

    /// Whether the log holds an entry with this id (the snapshot's last id
    /// counts).
    pub fn matches(&self, id: LogId) -> bool {
        self.term_at(id.index) == Some(id.term)
    }

    /// The entry at `index`, if held in memory.
    pub fn get(&self, index: LogIndex) -> Option<&EntryRef<C>> {
        self.offset(index).map(|k| &self.entries[k])
    }

    /// Up to `max` entries from `from` on (shared, no deep copy). Empty when
    /// `from` is beyond the end or purged.
    pub fn slice(&self, from: LogIndex, max: usize) -> Vec<EntryRef<C>> {
        match self.offset(from) {
            Some(k) => self.entries.range(k..).take(max).cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Appends one entry.
    ///
    /// # Panics
    /// If the entry's index is not `last_index + 1` or its term is below the
    /// last entry's (terms never decrease along a log).
    pub fn append(&mut self, entry: EntryRef<C>) {
        assert_eq!(
            entry.index,
            self.last_index().next(),
            "log entries must be appended consecutively"
        );
        assert!(
            entry.term >= self.last_log_id().term,
            "terms never decrease along a log"
        );
        self.entries.push_back(entry);
    }

    /// Removes every entry from `from` on. Returns how many were removed.
    ///
    /// # Panics
    /// If `from` is at or below the snapshot (those entries are committed).
    pub fn truncate_from(&mut self, from: LogIndex) -> usize {
        assert!(
            from > self.snapshot_last.index,
            "cannot truncate into the snapshot"
        );
        let keep = (from.get() - self.snapshot_last.index.get() - 1) as usize;
        let removed = self.entries.len().saturating_sub(keep);
        self.entries.truncate(keep);
        removed
    }

    /// Forgets the entries up to and including `upto` (now covered by a
    /// snapshot whose last included id is `upto` with term `term`).
    /// Entries after `upto` are kept when they follow `upto` in this log;
    /// otherwise (the snapshot is not a prefix of this log) the whole suffix
    /// goes.
    pub fn purge_upto(&mut self, last_included: LogId) {
        if last_included.index <= self.snapshot_last.index {
            return;
        }
        if self.matches(last_included) {
            let n = (last_included.index.get() - self.snapshot_last.index.get()) as usize;
            self.entries.drain(..n);
        } else {
            self.entries.clear();
        }
        self.snapshot_last = last_included;
    }

    /// The first index of the run of entries of `term` that contains or ends
    /// before `at` (for the conflict hint). Stops at the first in-memory index.
    pub fn first_index_of_term_at(&self, at: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(at) else {
            return at;
        };
        if self.offset(at).is_none() {
            return at;
        }
        // Terms are non-decreasing, so the run of `term` is contiguous and
        // starts at the first entry whose term is not below it.
        let lower = self.entries.partition_point(|e| e.term < term);
        LogIndex(self.snapshot_last.index.get() + 1 + lower as u64)
    }

    /// The last index holding an entry of `term`, if any is held in memory.
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let upper = self.entries.partition_point(|e| e.term <= term);
        if upper == 0 {
            return (self.snapshot_last.term == term && self.snapshot_last.index > LogIndex::ZERO)
                .then_some(self.snapshot_last.index);
        }
        let e = &self.entries[upper - 1];
        (e.term == term).then_some(e.index)
    }

    /// Iterates the entries held in memory from `from` on.
    pub fn iter_from(&self, from: LogIndex) -> impl Iterator<Item = &EntryRef<C>> {
        let k = match self.offset(from) {
            Some(k) => k,
            None if from <= self.snapshot_last.index => 0,
            None => self.entries.len(),
        };
        self.entries.range(k..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::RaftCommand;
    use consensus_actors::types::{ClientId, LogEntry};
    use std::sync::Arc;

    fn e(term: u64, index: u64) -> EntryRef<u32> {
        Arc::new(LogEntry::new(
            Term(term),
            LogIndex(index),
            RaftCommand::Normal(index as u32),
            0,
            ClientId(0),
        ))
    }

    fn log(terms: &[u64]) -> RaftLog<u32> {
        RaftLog::restore(
            LogId::default(),
            terms.iter().enumerate().map(|(i, &t)| e(t, i as u64 + 1)),
        )
    }

    #[test]
    fn indexes_and_terms() {
        let l = log(&[1, 1, 2, 3, 3]);
        assert_eq!(l.first_index(), LogIndex(1));
        assert_eq!(l.last_index(), LogIndex(5));
        assert_eq!(l.last_log_id(), LogId::new(Term(3), LogIndex(5)));
        assert_eq!(l.term_at(LogIndex(0)), Some(Term(0)));
        assert_eq!(l.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(l.term_at(LogIndex(6)), None);
        assert_eq!(l.slice(LogIndex(4), 10).len(), 2);
        assert_eq!(l.slice(LogIndex(2), 2)[1].index, LogIndex(3));
        assert!(l.slice(LogIndex(6), 10).is_empty());
    }

    #[test]
    fn term_runs_for_fast_backoff() {
        let l = log(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(l.first_index_of_term_at(LogIndex(5)), LogIndex(3));
        assert_eq!(l.first_index_of_term_at(LogIndex(2)), LogIndex(1));
        assert_eq!(l.last_index_of_term(Term(2)), Some(LogIndex(5)));
        assert_eq!(l.last_index_of_term(Term(3)), None);
        assert_eq!(l.last_index_of_term(Term(4)), Some(LogIndex(6)));
    }

    #[test]
    fn truncate_and_purge() {
        let mut l = log(&[1, 1, 2, 2, 3]);
        assert_eq!(l.truncate_from(LogIndex(4)), 2);
        assert_eq!(l.last_index(), LogIndex(3));
        l.purge_upto(LogId::new(Term(1), LogIndex(2)));
        assert_eq!(l.first_index(), LogIndex(3));
        assert_eq!(l.term_at(LogIndex(2)), Some(Term(1)));
        assert_eq!(l.term_at(LogIndex(1)), None);
        assert!(l.get(LogIndex(2)).is_none());
        assert_eq!(l.get(LogIndex(3)).unwrap().term, Term(2));
        // A snapshot that is not a prefix of the log wipes the suffix.
        l.purge_upto(LogId::new(Term(5), LogIndex(3)));
        assert!(l.is_empty());
        assert_eq!(l.last_log_id(), LogId::new(Term(5), LogIndex(3)));
        // Snapshot-only log answers for the last included entry.
        assert_eq!(l.last_index_of_term(Term(5)), Some(LogIndex(3)));
        assert_eq!(l.iter_from(LogIndex(1)).count(), 0);
    }

    #[test]
    #[should_panic(expected = "consecutively")]
    fn gaps_are_refused() {
        let mut l = log(&[1]);
        l.append(e(1, 3));
    }

    #[test]
    #[should_panic(expected = "snapshot")]
    fn truncating_the_snapshot_is_refused() {
        let mut l = log(&[1, 1]);
        l.purge_upto(LogId::new(Term(1), LogIndex(1)));
        l.truncate_from(LogIndex(1));
    }
}
