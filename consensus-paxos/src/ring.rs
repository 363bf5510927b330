//! Per-slot state kept by slot (an Acceptor's acceptances, a Learner's
//! tallies): a ring for the run of slots a leader fills one after another,
//! a B-tree for the rest.
//!
//! A Multi-Paxos leader proposes slot after slot, so nearly every Accept
//! lands at, or just past, the end of the slots accepted so far; the
//! Learner's compaction forgets them from the front. A ring indexed by
//! slot serves both in O(1) where a B-tree of ten thousand slots (the
//! default snapshot interval) walked four levels per Accept (the largest
//! single cost of a Multi-Paxos acceptor in the 1-client profile). Slots
//! from the network can be anywhere (a lagging acceptor, a recovering
//! leader, basic Paxos's dueling proposers), so a slot that is neither in
//! the ring's run nor within [`GAP`] of its end goes to the B-tree: the
//! ring never holds more than `GAP` empty places per slot it holds, so its
//! memory stays bounded by what it holds.
//!
//! Invariant: no slot is in both (the B-tree holds no slot of the ring's
//! run `[base, base + ring.len())`).

use crate::types::Slot;
use std::collections::{BTreeMap, VecDeque};

/// How far past the ring's end a slot may land and still extend it (the
/// places between stay empty).
pub const GAP: u64 = 64;

/// A map from slot to `V`, ordered by slot. See the
/// [module documentation](self).
#[derive(Clone, Debug)]
pub struct SlotRing<V> {
    /// The slot of `ring[0]` (meaningless while the ring is empty).
    base: u64,
    ring: VecDeque<Option<V>>,
    /// Slots outside the ring's run.
    sparse: BTreeMap<Slot, V>,
    /// Values held (ring and B-tree).
    len: usize,
}

impl<V> Default for SlotRing<V> {
    fn default() -> Self {
        Self {
            base: 0,
            ring: VecDeque::new(),
            sparse: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<V> SlotRing<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many slots hold a value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot holds a value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first slot past the ring's run.
    fn end(&self) -> u64 {
        self.base + self.ring.len() as u64
    }

    fn in_ring(&self, slot: Slot) -> Option<usize> {
        if slot.0 >= self.base && slot.0 < self.end() {
            usize::try_from(slot.0 - self.base).ok()
        } else {
            None
        }
    }

    /// The value in `slot`.
    pub fn get(&self, slot: Slot) -> Option<&V> {
        match self.in_ring(slot) {
            Some(i) => self.ring[i].as_ref(),
            None => self.sparse.get(&slot),
        }
    }

    /// The value in `slot`, to change in place.
    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut V> {
        match self.in_ring(slot) {
            Some(i) => self.ring[i].as_mut(),
            None => self.sparse.get_mut(&slot),
        }
    }

    /// Puts `value` in `slot`; the value it replaces, if any.
    pub fn insert(&mut self, slot: Slot, value: V) -> Option<V> {
        if let Some(i) = self.in_ring(slot) {
            let old = self.ring[i].replace(value);
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        if self.ring.is_empty() {
            // A new run starts here; the B-tree gives up this slot.
            let old = self.sparse.remove(&slot);
            self.base = slot.0;
            self.ring.push_back(Some(value));
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        let end = self.end();
        if slot.0 >= end && slot.0 - end < GAP {
            // Extends the run: the slots it now covers leave the B-tree.
            let moved: Vec<(Slot, V)> = if self.sparse.is_empty() {
                Vec::new()
            } else {
                let above = self.sparse.split_off(&Slot(end));
                let mut rest = above;
                let after = rest.split_off(&Slot(slot.0 + 1));
                self.sparse.extend(after);
                rest.into_iter().collect()
            };
            while self.end() <= slot.0 {
                self.ring.push_back(None);
            }
            let mut old = None;
            for (s, v) in moved {
                if s == slot {
                    old = Some(v);
                } else if let Some(i) = self.in_ring(s) {
                    self.ring[i] = Some(v);
                }
            }
            if let Some(i) = self.in_ring(slot) {
                self.ring[i] = Some(value);
            }
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        let old = self.sparse.insert(slot, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The values, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.ring.iter().flatten().chain(self.sparse.values())
    }

    /// Takes the value out of `slot`.
    pub fn remove(&mut self, slot: Slot) -> Option<V> {
        let old = match self.in_ring(slot) {
            Some(i) => self.ring[i].take(),
            None => self.sparse.remove(&slot),
        };
        if old.is_some() {
            self.len -= 1;
            // Slots leave from the front (in slot order) most of the time:
            // keep the ring starting at one that holds a value.
            while let Some(None) = self.ring.front() {
                self.ring.pop_front();
                self.base += 1;
            }
        }
        old
    }

    /// Forgets every slot below `slot`.
    pub fn forget_below(&mut self, slot: Slot) {
        if let Some(through) = slot.0.checked_sub(1) {
            self.forget_through(Slot(through));
        }
    }

    /// Forgets every slot up to `through`.
    pub fn forget_through(&mut self, through: Slot) {
        while !self.ring.is_empty() && self.base <= through.0 {
            if self.ring.pop_front().flatten().is_some() {
                self.len -= 1;
            }
            self.base += 1;
        }
        // Empty places at the front hold nothing: drop them too.
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.base += 1;
        }
        let kept = self.sparse.split_off(&Slot(through.0.saturating_add(1)));
        self.len -= self.sparse.len();
        self.sparse = kept;
    }

    /// The first slot holding a value.
    pub fn first_slot(&self) -> Option<Slot> {
        let ring = self
            .ring
            .iter()
            .position(Option::is_some)
            .map(|i| Slot(self.base + i as u64));
        let sparse = self.sparse.keys().next().copied();
        match (ring, sparse) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The slots from `first` to `last` (`None`: no end) that hold a
    /// value, in slot order.
    pub fn range(&self, first: Slot, last: Option<Slot>) -> Vec<(Slot, &V)> {
        let last = last.map_or(u64::MAX, |s| s.0);
        let mut out = Vec::new();
        if first.0 > last {
            return out;
        }
        let (base, end) = (self.base, self.end());
        if self.ring.is_empty() {
            out.extend(self.sparse.range(first..=Slot(last)).map(|(s, v)| (*s, v)));
            return out;
        }
        // Below the run, in the run, above it.
        if first.0 < base {
            let below = Slot(last.min(base - 1));
            out.extend(self.sparse.range(first..=below).map(|(s, v)| (*s, v)));
        }
        let from = first.0.max(base);
        let to = last.min(end - 1);
        if from <= to {
            for s in from..=to {
                let i = usize::try_from(s - base).unwrap_or(usize::MAX);
                if let Some(Some(v)) = self.ring.get(i) {
                    out.push((Slot(s), v));
                }
            }
        }
        if last >= end {
            let above = Slot(first.0.max(end));
            out.extend(self.sparse.range(above..=Slot(last)).map(|(s, v)| (*s, v)));
        }
        out
    }

    /// Checks the invariant (O(n): for tests).
    pub fn check(&self) {
        assert!(
            self.ring.is_empty()
                || self
                    .sparse
                    .range(Slot(self.base)..Slot(self.end()))
                    .next()
                    .is_none(),
            "a slot both in the ring and in the B-tree"
        );
        assert_eq!(
            self.len,
            self.ring.iter().filter(|v| v.is_some()).count() + self.sparse.len(),
            "the count is off"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        Forget(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Mostly runs near each other, some far away.
            4 => (0u64..300, any::<u32>()).prop_map(|(s, v)| Op::Insert(s, v)),
            1 => (0u64..100_000, any::<u32>()).prop_map(|(s, v)| Op::Insert(s, v)),
            1 => (0u64..300).prop_map(Op::Forget),
            2 => (0u64..300).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Every operation answers as a B-tree would.
        #[test]
        fn the_ring_agrees_with_a_btree(ops in proptest::collection::vec(op(), 0..200), probes in proptest::collection::vec((0u64..400, proptest::option::of(0u64..400)), 1..20)) {
            let mut ring = SlotRing::new();
            let mut model: BTreeMap<Slot, u32> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(s, v) => {
                        prop_assert_eq!(ring.insert(Slot(s), v), model.insert(Slot(s), v));
                    }
                    Op::Remove(s) => {
                        prop_assert_eq!(ring.remove(Slot(s)), model.remove(&Slot(s)));
                    }
                    Op::Forget(t) => {
                        ring.forget_through(Slot(t));
                        model = model.split_off(&Slot(t + 1));
                    }
                }
                ring.check();
                prop_assert_eq!(ring.len(), model.len());
                prop_assert_eq!(ring.first_slot(), model.keys().next().copied());
            }
            for (first, last) in probes {
                let got: Vec<(Slot, u32)> = ring.range(Slot(first), last.map(Slot)).into_iter().map(|(s, v)| (s, *v)).collect();
                let want: Vec<(Slot, u32)> = match last {
                    Some(l) if l < first => Vec::new(),
                    Some(l) => model.range(Slot(first)..=Slot(l)).map(|(s, v)| (*s, *v)).collect(),
                    None => model.range(Slot(first)..).map(|(s, v)| (*s, *v)).collect(),
                };
                prop_assert_eq!(got, want);
                prop_assert_eq!(ring.get(Slot(first)), model.get(&Slot(first)));
            }
        }
    }

    #[test]
    fn a_leaders_run_stays_in_the_ring_and_compaction_empties_it() {
        let mut ring = SlotRing::new();
        for s in 1..=1000u64 {
            assert_eq!(ring.insert(Slot(s), s), None);
        }
        assert!(ring.sparse.is_empty(), "a contiguous run is all ring");
        assert_eq!(ring.len(), 1000);
        ring.forget_through(Slot(990));
        assert_eq!(ring.len(), 10);
        assert_eq!(ring.first_slot(), Some(Slot(991)));
        // Far ahead: the B-tree; then the run reaches it and takes it over.
        ring.insert(Slot(1000 + GAP + 5), 7);
        assert_eq!(ring.sparse.len(), 1);
        for s in 1001..=1000 + GAP + 10 {
            ring.insert(Slot(s), s);
        }
        assert!(ring.sparse.is_empty());
        ring.check();
        ring.forget_through(Slot(u64::MAX - 1));
        assert!(ring.is_empty());
    }
}
