//! **VersionVector**: the causal order of model versions (Fidge 1988,
//! Mattern 1989).
//!
//! A version vector maps each writer (a [`NodeId`]) to the number of its
//! updates a version includes. Version `a` happened before `b` when every
//! entry of `a` is at most the matching entry of `b` and one is strictly
//! smaller; two versions neither of which is before the other are
//! *concurrent*: each includes an update the other lacks.
//!
//! It is written here rather than taken from `crdts::VClock` because the
//! crate would bring its own actor-id and CRDT traits for four functions;
//! this one is a `BTreeMap<NodeId, u64>` (iteration in id order, so its
//! serialisation and hash are deterministic) where a missing entry is 0.
//!
//! ```
//! use consensus_actors::types::NodeId;
//! use model_agreement::version_vector::{CausalOrder, VersionVector};
//! let mut a = VersionVector::new();
//! a.increment(NodeId(1));
//! let mut b = a.clone();
//! b.increment(NodeId(2)); // b saw a, then wrote
//! a.increment(NodeId(1)); // a wrote without seeing b
//! assert_eq!(a.compare(&b), CausalOrder::Concurrent);
//! let mut merged = a.clone();
//! merged.merge(&b);
//! assert_eq!(a.compare(&merged), CausalOrder::Before);
//! assert_eq!(merged.compare(&b), CausalOrder::After);
//! ```

use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How two versions are causally related.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CausalOrder {
    /// `self` happened before `other` (`other` includes all of `self`, and more).
    Before,
    /// `self` happened after `other`.
    After,
    /// Both include exactly the same updates.
    Equal,
    /// Each includes an update the other does not.
    Concurrent,
}

/// A version vector: per writer, how many of its updates a version includes.
/// Entries that are 0 are never stored, so equal versions are equal maps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector {
    counters: BTreeMap<NodeId, u64>,
}

impl VersionVector {
    /// The empty version (no update from anyone).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many updates of `writer` this version includes.
    pub fn get(&self, writer: NodeId) -> u64 {
        self.counters.get(&writer).copied().unwrap_or(0)
    }

    /// Records one more update by `writer`; returns its new counter.
    ///
    /// # Panics
    /// When the counter would overflow `u64` (2^64 updates by one writer).
    pub fn increment(&mut self, writer: NodeId) -> u64 {
        let c = self.counters.entry(writer).or_insert(0);
        *c = c.checked_add(1).expect("version counter overflow");
        *c
    }

    /// Includes everything `other` includes: the entry-wise maximum (the
    /// least upper bound of the two in the causal order).
    pub fn merge(&mut self, other: &Self) {
        for (&w, &c) in &other.counters {
            let mine = self.counters.entry(w).or_insert(0);
            *mine = (*mine).max(c);
        }
        debug_assert!(matches!(
            other.compare(self),
            CausalOrder::Before | CausalOrder::Equal
        ));
    }

    /// The causal relation of `self` to `other`.
    pub fn compare(&self, other: &Self) -> CausalOrder {
        let mut less = false;
        let mut greater = false;
        // Keys of both maps, in order; missing entries count as 0.
        let mut a = self.counters.iter().peekable();
        let mut b = other.counters.iter().peekable();
        loop {
            let (x, y) = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(&(ka, &ca)), Some(&(kb, &cb))) => match ka.cmp(kb) {
                    std::cmp::Ordering::Equal => {
                        a.next();
                        b.next();
                        (ca, cb)
                    }
                    std::cmp::Ordering::Less => {
                        a.next();
                        (ca, 0)
                    }
                    std::cmp::Ordering::Greater => {
                        b.next();
                        (0, cb)
                    }
                },
                (Some(&(_, &ca)), None) => {
                    a.next();
                    (ca, 0)
                }
                (None, Some(&(_, &cb))) => {
                    b.next();
                    (0, cb)
                }
            };
            less |= x < y;
            greater |= x > y;
        }
        match (less, greater) {
            (false, false) => CausalOrder::Equal,
            (true, false) => CausalOrder::Before,
            (false, true) => CausalOrder::After,
            (true, true) => CausalOrder::Concurrent,
        }
    }

    /// Whether `self` includes every update `other` includes (after or equal).
    pub fn dominates(&self, other: &Self) -> bool {
        matches!(self.compare(other), CausalOrder::After | CausalOrder::Equal)
    }

    /// The smallest counter over `writers` (0 for a writer never seen).
    pub fn min_over(&self, writers: impl IntoIterator<Item = NodeId>) -> Option<u64> {
        writers.into_iter().map(|w| self.get(w)).min()
    }

    /// The total number of updates included.
    pub fn total(&self) -> u64 {
        self.counters.values().sum()
    }

    /// The non-zero entries, in writer order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.counters.iter().map(|(&w, &c)| (w, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vv(entries: &[(u64, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for &(w, c) in entries {
            for _ in 0..c {
                v.increment(NodeId(w));
            }
        }
        v
    }

    /// Concurrent updates are detected as concurrent; causally later ones
    /// are ordered after (the issue's `test_causal_ordering_version_vectors`).
    #[test]
    fn test_causal_ordering_version_vectors() {
        let base = vv(&[(1, 2), (2, 1)]);
        // Two writers update the same base without seeing each other.
        let mut x = base.clone();
        x.increment(NodeId(1));
        let mut y = base.clone();
        y.increment(NodeId(3));
        assert_eq!(x.compare(&y), CausalOrder::Concurrent);
        assert_eq!(y.compare(&x), CausalOrder::Concurrent);
        assert_eq!(base.compare(&x), CausalOrder::Before);
        assert_eq!(x.compare(&base), CausalOrder::After);
        // A writer who saw both and then wrote is after both.
        let mut z = x.clone();
        z.merge(&y);
        z.increment(NodeId(2));
        assert_eq!(z.compare(&x), CausalOrder::After);
        assert_eq!(z.compare(&y), CausalOrder::After);
        assert_eq!(x.compare(&z), CausalOrder::Before);
        assert_eq!(z.compare(&z.clone()), CausalOrder::Equal);
        // Missing entries are zeros: {} == {} and {} before anything.
        assert_eq!(
            VersionVector::new().compare(&VersionVector::new()),
            CausalOrder::Equal
        );
        assert_eq!(VersionVector::new().compare(&x), CausalOrder::Before);
    }

    #[test]
    fn serde_round_trip_is_exact() {
        let v = vv(&[(1, 3), (7, 1)]);
        let bytes = rmp_serde::to_vec(&v).expect("encodes");
        let back: VersionVector = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, v);
        assert_eq!(back.compare(&v), CausalOrder::Equal);
    }

    fn arb_vv() -> impl Strategy<Value = VersionVector> {
        proptest::collection::vec((0u64..5, 0u64..4), 0..6).prop_map(|e| vv(&e))
    }

    fn le(a: &VersionVector, b: &VersionVector) -> bool {
        matches!(a.compare(b), CausalOrder::Before | CausalOrder::Equal)
    }

    proptest! {
        /// Reflexive, antisymmetric, transitive; compare is its own mirror.
        #[test]
        fn partial_order_laws(a in arb_vv(), b in arb_vv(), c in arb_vv()) {
            prop_assert_eq!(a.compare(&a), CausalOrder::Equal);
            let mirror = match a.compare(&b) {
                CausalOrder::Before => CausalOrder::After,
                CausalOrder::After => CausalOrder::Before,
                o => o,
            };
            prop_assert_eq!(b.compare(&a), mirror);
            if le(&a, &b) && le(&b, &a) {
                prop_assert_eq!(&a, &b);
            }
            if le(&a, &b) && le(&b, &c) {
                prop_assert!(le(&a, &c));
            }
            // Entry-wise definition.
            let entrywise = (0..5).all(|w| a.get(NodeId(w)) <= b.get(NodeId(w)));
            prop_assert_eq!(le(&a, &b), entrywise);
        }

        /// Merge is the least upper bound: commutative, associative,
        /// idempotent, above both inputs and below any common upper bound.
        #[test]
        fn merge_is_least_upper_bound(a in arb_vv(), b in arb_vv(), c in arb_vv()) {
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            prop_assert_eq!(&ab, &ba);
            prop_assert!(le(&a, &ab) && le(&b, &ab));
            let mut aa = a.clone();
            aa.merge(&a);
            prop_assert_eq!(&aa, &a);
            let mut ab_c = ab.clone();
            ab_c.merge(&c);
            let mut bc = b.clone();
            bc.merge(&c);
            let mut a_bc = a.clone();
            a_bc.merge(&bc);
            prop_assert_eq!(&ab_c, &a_bc);
            if le(&a, &c) && le(&b, &c) {
                prop_assert!(le(&ab, &c));
            }
        }

        /// An increment moves a version strictly after itself.
        #[test]
        fn increment_is_strictly_after(a in arb_vv(), w in 0u64..5) {
            let mut b = a.clone();
            b.increment(NodeId(w));
            prop_assert_eq!(b.compare(&a), CausalOrder::After);
            prop_assert_eq!(b.total(), a.total() + 1);
        }
    }
}
