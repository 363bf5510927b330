//! [`IndexMap`]: a map keyed by log index for the invariants' per-index
//! facts (committed entries, applied commands).
//!
//! Raft indexes are dense and grow from 1, so facts live in a vector indexed
//! by the log index: one bounds check per lookup instead of a tree descent,
//! and no allocation per insert. An index far beyond the vector (more than
//! [`DENSE_GAP_MAX`] past its end, which a real log never reports but a
//! hand-written or corrupted history may) goes to an ordered map instead, so
//! memory stays proportional to the facts held. Iteration is in index order
//! either way: results never depend on the layout.

use consensus_actors::types::LogIndex;
use std::collections::BTreeMap;

/// Indexes at most this far past the end of the dense part extend it; farther
/// ones are kept sparse.
pub(crate) const DENSE_GAP_MAX: u64 = 1 << 16;

/// A map from log index to `V`. See the [module documentation](self).
#[derive(Clone, Debug)]
pub(crate) struct IndexMap<V> {
    /// `dense[i]` is the value at index `i`.
    dense: Vec<Option<V>>,
    /// Values at indexes `>= dense.len()` that were too far to extend it.
    sparse: BTreeMap<LogIndex, V>,
}

impl<V> Default for IndexMap<V> {
    fn default() -> Self {
        Self {
            dense: Vec::new(),
            sparse: BTreeMap::new(),
        }
    }
}

impl<V> IndexMap<V> {
    fn slot(index: LogIndex) -> Option<usize> {
        usize::try_from(index.get()).ok()
    }

    /// The value at `index`.
    pub(crate) fn get(&self, index: LogIndex) -> Option<&V> {
        match Self::slot(index) {
            Some(i) if i < self.dense.len() => self.dense[i].as_ref(),
            _ => self.sparse.get(&index),
        }
    }

    /// The value at `index`, to change it.
    pub(crate) fn get_mut(&mut self, index: LogIndex) -> Option<&mut V> {
        match Self::slot(index) {
            Some(i) if i < self.dense.len() => self.dense[i].as_mut(),
            _ => self.sparse.get_mut(&index),
        }
    }

    /// The value at `index`, inserting `value` first if there is none.
    #[inline]
    pub(crate) fn get_or_insert(&mut self, index: LogIndex, value: V) -> &mut V {
        // The usual cases first: an index already covered, or the next one
        // with nothing sparse to move in (a log that grows by appends).
        if let Some(i) = Self::slot(index) {
            if i < self.dense.len() {
                return self.dense[i].get_or_insert(value);
            }
            if i == self.dense.len() && self.sparse.is_empty() {
                self.dense.push(None);
                return self.dense[i].get_or_insert(value);
            }
        }
        self.get_or_insert_slow(index, value)
    }

    /// [`get_or_insert`](Self::get_or_insert) beyond the dense part.
    fn get_or_insert_slow(&mut self, index: LogIndex, value: V) -> &mut V {
        let len = self.dense.len() as u64;
        let near = index.get() < len || index.get() - len <= DENSE_GAP_MAX;
        match Self::slot(index) {
            Some(i) if near => {
                if i >= self.dense.len() {
                    self.grow_to(i + 1);
                }
                self.dense[i].get_or_insert(value)
            }
            _ => self.sparse.entry(index).or_insert(value),
        }
    }

    /// Extends the dense part to `len` slots, moving in the sparse values it
    /// now covers.
    fn grow_to(&mut self, len: usize) {
        self.dense.resize_with(len, || None);
        if self.sparse.is_empty() {
            // The usual case: nothing to move in.
            return;
        }
        let beyond = self.sparse.split_off(&LogIndex(len as u64));
        for (index, value) in std::mem::replace(&mut self.sparse, beyond) {
            if let Some(i) = Self::slot(index) {
                self.dense[i] = Some(value);
            }
        }
    }

    /// The values at `from` and after, in index order.
    pub(crate) fn range_from(&self, from: LogIndex) -> impl Iterator<Item = (LogIndex, &V)> + '_ {
        let start = Self::slot(from).unwrap_or(usize::MAX).min(self.dense.len());
        let dense = self.dense[start..]
            .iter()
            .enumerate()
            .filter_map(move |(k, v)| v.as_ref().map(|v| (LogIndex((start + k) as u64), v)));
        let sparse_from = from.max(LogIndex(self.dense.len() as u64));
        dense.chain(self.sparse.range(sparse_from..).map(|(i, v)| (*i, v)))
    }

    /// How many indexes hold a value.
    pub(crate) fn len(&self) -> usize {
        self.dense.iter().filter(|v| v.is_some()).count() + self.sparse.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_indexes_are_dense_far_ones_sparse_and_iteration_is_ordered() {
        let mut m = IndexMap::default();
        assert_eq!(*m.get_or_insert(LogIndex(3), 'c'), 'c');
        assert_eq!(*m.get_or_insert(LogIndex(3), 'x'), 'c', "first value kept");
        let far = LogIndex(10 + DENSE_GAP_MAX * 4);
        m.get_or_insert(far, 'z');
        m.get_or_insert(LogIndex(1), 'a');
        assert_eq!(m.dense.len(), 4);
        assert_eq!(m.sparse.len(), 1);
        assert_eq!(m.get(LogIndex(1)), Some(&'a'));
        assert_eq!(m.get(LogIndex(2)), None);
        assert_eq!(m.get(far), Some(&'z'));
        assert_eq!(m.len(), 3);
        assert_eq!(
            m.range_from(LogIndex(2)).collect::<Vec<_>>(),
            vec![(LogIndex(3), &'c'), (far, &'z')]
        );
        assert_eq!(m.range_from(far.next()).count(), 0);
        // Growing the dense part up to the far index moves it in.
        let mut i = 4;
        while (i as u64) < far.get() {
            m.get_or_insert(LogIndex(i as u64 + DENSE_GAP_MAX), 'g');
            i += DENSE_GAP_MAX as usize;
        }
        assert!(m.sparse.is_empty());
        assert_eq!(m.get(far), Some(&'z'));
        assert_eq!(m.range_from(far).next(), Some((far, &'z')));
    }
}
