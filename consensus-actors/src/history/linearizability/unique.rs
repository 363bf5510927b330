//! The unique-values pass: the first pass of every key, which decides in
//! O(n log n) a key whose written values are all distinct, without search.
//!
//! # When it applies
//!
//! Every value is written by at most one operation (a put, or a
//! compare-and-swap to it; a compare-and-swap observed to fail writes
//! nothing) and
//! every operation with a known outcome names the value it observed: a read
//! (`Value(x)`), a compare-and-swap that succeeded (it observes its
//! expected value) or failed reporting the value it found (`CasFailed(x)`,
//! `x` other than its expected value), or is a delete. Otherwise (a failed
//! compare-and-swap that did not report its value, a value written twice, a
//! compare-and-swap expecting the value it writes, ...) the pass says
//! [`Unique::NotApplicable`] and the key goes to the search as before.
//! Failed operations and reads with an unknown outcome never reach it.
//!
//! A key that is never deleted is decided exactly, either way (rules 1 to
//! 4): "absent" is then the initial value only, written once too, by a
//! virtual operation before everything. A key with deletes has several
//! absent versions, one per delete that found the key, and which one an
//! observer of absence saw is not named: rule 5 proves violations with
//! sound tests and builds an order with a placement that is checked (see
//! there); what it decides neither way goes to the search.
//!
//! Then every observer names the one write it saw (Gibbons & Korach,
//! "Testing shared memories", SIAM J. Computing 26(4), 1997: with this
//! read-mapping a register history is checkable in polynomial time; the
//! zones of Golab, Li & Shah, PODC 2011, are the same idea). The rules, each
//! with its proof:
//!
//! **Rule 1 (unknown outcomes that must be placed, and those that need
//! not).** An unknown-outcome write is *required* when its value is
//! observed by an operation with a known outcome, or is the expected value
//! of a required compare-and-swap (a closure, computed by a work list). The
//! others are dropped; the required ones are placed as writes that took
//! effect (a required compare-and-swap as one that succeeded).
//! *Proof.* (a) Every required write takes effect, and succeeds, in every
//! linearization `L`: by induction on the work list, a known-outcome
//! observer of `v` is placed where the value is `v`, so the last effective
//! write before it wrote `v`, and the only writer of `v` is that operation;
//! a required compare-and-swap succeeded (induction), so the value before
//! it was its expected value, whose only writer took effect. (b) Remove
//! from `L` every dropped operation and every unknown-outcome
//! compare-and-swap that failed in `L` (a failed one changed nothing). For
//! a kept operation `X` whose output or effect depends on the value (a
//! read, a compare-and-swap), the last effective write before it in `L` is
//! not removed: its value is the one `X` observes (a known outcome's
//! observation, or a required compare-and-swap's expected value), so that
//! write is required. Writes that took effect and were kept are the same
//! in both orders, so `X` sees the same value; a put's output does not
//! depend on the value. So the shorter order linearizes the reduced
//! history. (c) Conversely a linearization of the reduced history is one
//! of the original in which the dropped operations never took effect,
//! which an unknown outcome allows.
//!
//! **Rule 2 (clusters and chains).** In the reduced history every write
//! takes effect and every other operation observes one value `v` exactly,
//! so in a linearization it stands between the write of `v` and the next
//! write: the order is the initial value's cluster and then, write by
//! write, each write followed by the observers of its value (the write's
//! *cluster*). A compare-and-swap `e -> n` ends the cluster of `e` and
//! starts that of `n`, so `n`'s cluster comes right after `e`'s. Two
//! compare-and-swaps that succeed from the same `e` cannot both be placed
//! (between them the value would have to be `e` again, written a second
//! time); the pass leaves that case to the search. So the clusters form
//! *chains*: a put's (or the initial value's) cluster followed by those of
//! the compare-and-swaps chained from it, in a forced order. A
//! linearization is then exactly: the chains in some order, the initial
//! value's first, each chain contiguous, with the operations of each chain
//! in its forced cluster order and each cluster's observers in any order
//! after its write and before the next cluster's write.
//!
//! **Rule 3 (inside a chain).** Order each cluster's observers by
//! completion (then invocation). This is a valid order among them (if `a`
//! completed before `b` was invoked, `a` completes first), and no other
//! order inside the chain does better: whether an operation may stand
//! after another only depends on the pair, and only the observers of one
//! cluster may be swapped. So a chain fits real time iff, walking this
//! order, no operation completes before the latest invocation of an
//! operation before it; if one does, the two are a certificate (the first
//! must take effect before the second, which returned before the first was
//! invoked).
//!
//! **Rule 4 (between chains).** For a chain `C`, let `lo(C)` be the
//! earliest completion of its operations and `hi(C)` the latest
//! invocation (unknown outcomes complete at +infinity). Chains are
//! contiguous, so `A` can go before `B` iff no operation of `B` completed
//! before one of `A` was invoked: `hi(A) <= lo(B)`. This is a condition on
//! pairs, so an order of the chains fits iff every pair does. Sort the
//! chains by `(min(lo, hi), lo < hi)` (the initial value's first). If some
//! order fits, this one does: when only `B` before `A` fits (`hi(B) <=
//! lo(A)` and `lo(B) < hi(A)`), then `min(B) <= hi(B) <= lo(A)` and `min(B)
//! <= lo(B) < hi(A)`, so `min(B) <= min(A)`; if they are equal, to `m`,
//! then `lo(A) = m < hi(A)` (`A` sorts with `true`) and `hi(B) = m <=
//! lo(B)` (`B` sorts with `false`): `B` sorts first either way. So walking
//! the sorted chains, a chain `B` with `lo(B)` below the latest `hi` of the
//! chains before it (say `A`'s) proves the key not linearizable: `A`
//! cannot go before `B`, and since the sort put `A` first, `B` cannot go
//! before `A` either (or the initial value's chain `A` must go first).
//!
//! **Rule 5 (deletes).** Each delete that found the key writes a new
//! absent version (it must follow a present value, so it is never right
//! after another one, nor first); a delete that found nothing, a read of
//! absence and a compare-and-swap that failed finding nothing are
//! *observers of absence*, of some absent version; a compare-and-swap from
//! absent starts a chain of its own, and needs an absent version right
//! before it; an unknown-outcome delete is left out of the order (an
//! order without it is a linearization in which it never took effect),
//! but counted where (c) needs every delete. With the absent
//! version of each observer unknown, checking is NP-complete in general
//! (Gibbons & Korach): the rule proves what it can, then tries one
//! placement.
//! *(a) Chains of present values are still exact.* Let `L` linearize the
//! key. Between the write of a present value `v` and the next effective
//! write the value is `v`, so every operation placed there that has a
//! known outcome or is a required write observes `v` or is the
//! compare-and-swap from `v` (a delete, a put or a write of another value
//! would end the cluster; an observer of absence or of another value would
//! see the wrong value; only unknown outcomes that change nothing can stand
//! there besides). So each present value's chain is contiguous in `L`
//! among those operations, in its forced order, and rules 3 and 4 among
//! these chains give sound certificates as before.
//! *(b) Deletes and observers of absence as chains of one.* None of them
//! can stand inside a chain of present values (the value is present all
//! through it), so the chains of present values and each delete and each
//! observer of absence on its own are disjoint contiguous blocks of `L`,
//! and rule 4's argument applies to all of them together: if the sorted
//! blocks do not fit real time, no order does.
//! *(c) Something must happen between.* If an operation `x` of a present
//! value's chain returned before an observer of absence `r` was invoked,
//! then `x` precedes `r` in `L`, the value is present at `x` and absent at
//! `r`, so a delete (known, or unknown that took effect) stands between
//! them: invoked at or before `r` returned and returning at or after `x`
//! was invoked. If none is, no `L` exists; the `x` invoked latest is the
//! strongest. Symmetrically a delete `d` that found the key needs a write
//! of a present value (known, or unknown) between it and the latest
//! invoked operation that returned before `d` was invoked and left the key
//! absent (an observer of absence, or a delete), or the start.
//! *(d) A placement, then a check.* Take the chains of present values and
//! the deletes in rule 4's order (which fits real time, by (b)) and walk
//! it, tracking whether the key is present: a delete needs a present
//! value, a chain from absent needs absence. Where the next block does
//! not fit, a block further on that may move forward past the blocks in
//! between (its latest invocation is not after their earliest completion)
//! and fits is moved there: when the key is absent a chain from absent
//! first, else a chain from a put; when it is present, a delete. A delete
//! that finds the key absent with no such block ahead gets a put placed
//! before moved right before it, if that put may follow the blocks it
//! jumps over and they still fit without it. Then each observer of
//! absence goes to the earliest absent version (the initial one, or a
//! delete's) whose blocks before it invoked nothing after the observer
//! returned and whose blocks after it returned nothing before the
//! observer was invoked. Given the blocks, this is exact: both bounds grow
//! along the versions, so the versions an observer fits form a window,
//! and the earliest ones keep the observers in real-time order among
//! themselves (if `r2` returned before `r1` was invoked and `r1` fits
//! version `e1`, then `r2` fits `e1` too, so its earliest is not later);
//! inside a version they are ordered by completion (rule 3). Rule 4's
//! order puts simultaneous deletes after the chains they tie with, which
//! is where a read of absence right after them needs them. The result is
//! only a candidate, reported once it replays; if it does not, or the walk
//! finds no block to move, the key goes to the search.
//!
//! The order found is replayed on the register and checked against real
//! time before it is reported (O(n)). Without deletes a failure there would
//! be a bug of this pass (a debug assertion); either way it sends the key
//! to the search instead of giving a verdict. Every step is O(n log n).

use super::{step, Cmd, Expect, Out, SeqOp, ABSENT, NIL};

/// What the unique-values pass found for a key.
#[derive(Debug)]
pub(super) enum Unique {
    /// A linearization: indexes into the key's operations, in order
    /// (dropped unknown-outcome operations left out).
    Linearizable(Vec<u32>),
    /// Not linearizable, with a certificate.
    Violation(Conflict),
    /// The pass does not apply to this key (the reason, for the logs).
    NotApplicable(&'static str),
}

/// Why a key is not linearizable, as the pass proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Conflict {
    /// Rule 3: `first` must take effect before `then` (the order of the
    /// values forces it) but `then` returned before `first` was invoked.
    Order { first: u32, then: u32 },
    /// Rule 4: the chains of `a_value` and `b_value` cannot be ordered:
    /// `b_early` returned before `a_late` was invoked (so `A` cannot go
    /// first) and `a_early` returned before `b_late` was invoked (so `B`
    /// cannot). When `a_value` is the initial value (absent), `A` must go
    /// first and `a_early`/`b_late` are `NIL`.
    /// Rule 5: `first` returned before `then` was invoked, and something
    /// must take effect between them that nothing can: `then` observed
    /// absence and `first` a present value (a delete is missing), or
    /// `then` is a delete that found the key and `first` left it absent
    /// (`NIL`: the initial absence; a write is missing).
    NothingBetween { first: u32, then: u32 },
    Chains {
        a_value: u32,
        b_value: u32,
        a_late: u32,
        b_early: u32,
        a_early: u32,
        b_late: u32,
    },
}

/// The role of an operation in the reduced history.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Dropped (rule 1) or constraining nothing.
    Dropped,
    /// A put of the value.
    Put(u32),
    /// A delete that found the key (it writes a new absent version).
    Delete,
    /// A successful compare-and-swap (or a required unknown one).
    Cas { expected: u32, new: u32 },
    /// Observes the value and writes nothing.
    Observer(u32),
    /// An unknown-outcome write, not (yet) known to be required.
    Unknown,
}

fn completion(op: &SeqOp) -> u64 {
    op.complete_us.unwrap_or(u64::MAX)
}

/// Runs the pass over a key's operations; `values` is the number of value
/// ids of the key.
pub(super) fn check(seq: &[SeqOp], values: usize) -> Unique {
    let n = seq.len();
    if n >= NIL as usize / 2 || values >= NIL as usize / 2 {
        return Unique::NotApplicable("too many operations");
    }
    // With a delete, "absent" has several versions: rule 5.
    let deleted = seq.iter().any(|op| op.cmd == Cmd::Delete);
    let mut role = vec![Role::Dropped; n];
    // The one operation that writes each value (`NIL`: none yet).
    let mut writer = vec![NIL; values];
    for (i, op) in seq.iter().enumerate() {
        let known = op.complete_us.is_some();
        role[i] = match (op.cmd, op.expect) {
            (Cmd::Delete, Expect::Exactly(Out::Deleted(true))) => Role::Delete,
            (Cmd::Delete, Expect::Exactly(Out::Deleted(false))) => Role::Observer(ABSENT),
            (Cmd::Delete, Expect::Any) if !known => Role::Dropped,
            (Cmd::Get, Expect::Exactly(Out::Value(v))) => Role::Observer(v),
            (Cmd::Get, Expect::Any) => Role::Dropped,
            (Cmd::Put(_), Expect::Exactly(Out::Ok)) => Role::Put(op.writes),
            (Cmd::Cas { expected, new }, _) if expected == new => {
                return Unique::NotApplicable("a compare-and-swap expects the value it writes")
            }
            (Cmd::Cas { expected, new }, Expect::Exactly(Out::CasOk)) => {
                Role::Cas { expected, new }
            }
            (Cmd::Cas { expected, .. }, Expect::Exactly(Out::CasFailed(x))) if x != expected => {
                Role::Observer(x)
            }
            (Cmd::Put(_) | Cmd::Cas { .. }, Expect::Any) if !known => Role::Unknown,
            _ => return Unique::NotApplicable("an output does not name one value"),
        };
        let written = match (role[i], op.cmd) {
            (Role::Put(v), _) | (Role::Cas { new: v, .. }, _) => v,
            (Role::Unknown, Cmd::Put(v)) | (Role::Unknown, Cmd::Cas { new: v, .. }) => v,
            _ => NIL,
        };
        if written != NIL {
            if written == ABSENT || writer[written as usize] != NIL {
                return Unique::NotApplicable("a value is written twice");
            }
            writer[written as usize] = i as u32;
        }
    }
    // Rule 1: the closure of the required unknown-outcome writes.
    let mut work: Vec<u32> = Vec::new();
    for r in &role {
        match *r {
            Role::Observer(v) | Role::Cas { expected: v, .. } => work.push(v),
            _ => {}
        }
    }
    while let Some(v) = work.pop() {
        if v == ABSENT {
            continue;
        }
        let w = writer[v as usize];
        if w == NIL {
            // An observed value nobody writes: the reduction of unwritten
            // observations decides it (or the search does).
            return Unique::NotApplicable("an observed value has no writer");
        }
        if role[w as usize] == Role::Unknown {
            role[w as usize] = match seq[w as usize].cmd {
                Cmd::Cas { expected, new } => {
                    work.push(expected);
                    Role::Cas { expected, new }
                }
                _ => Role::Put(v),
            };
        }
    }
    drop(work);
    // Rule 2: clusters, one per value (`ABSENT`: the initial value's,
    // without deletes), and the links between them. With deletes, the
    // observers of absence and the deletes are set apart for rule 5, and a
    // compare-and-swap from absent starts a chain of its own.
    let mut next = vec![NIL; values];
    let mut start = vec![0u32; values + 1];
    let mut absent_observers: Vec<u32> = Vec::new();
    let mut deletes: Vec<u32> = Vec::new();
    for (i, r) in role.iter_mut().enumerate() {
        match *r {
            Role::Unknown => *r = Role::Dropped,
            Role::Cas { expected, .. } if !deleted || expected != ABSENT => {
                if next[expected as usize] != NIL {
                    return Unique::NotApplicable("two compare-and-swaps succeed from one value");
                }
                next[expected as usize] = i as u32;
            }
            Role::Observer(ABSENT) if deleted => absent_observers.push(i as u32),
            Role::Observer(v) => start[v as usize + 1] += 1,
            Role::Delete => deletes.push(i as u32),
            _ => {}
        }
    }
    for v in 0..values {
        start[v + 1] += start[v];
    }
    let mut observers = vec![0u32; start[values] as usize];
    let mut fill = start.clone();
    for (i, r) in role.iter().enumerate() {
        if let Role::Observer(v) = *r {
            if !(deleted && v == ABSENT) {
                observers[fill[v as usize] as usize] = i as u32;
                fill[v as usize] += 1;
            }
        }
    }
    drop(fill);
    for v in 0..values {
        observers[start[v] as usize..start[v + 1] as usize].sort_unstable_by_key(|&i| {
            (completion(&seq[i as usize]), seq[i as usize].invoke_us, i)
        });
    }
    // Chains: from the initial value (without deletes), every put and,
    // with deletes, every compare-and-swap from absent; each laid out in
    // its forced order and checked as it is (rule 3).
    let clusters = Clusters {
        seq,
        role: &role,
        writer: &writer,
        next: &next,
        observers: &observers,
        start: &start,
    };
    let mut order: Vec<u32> = Vec::with_capacity(n);
    let mut chains: Vec<Chain> = Vec::new();
    let roots = (!deleted)
        .then_some(ABSENT)
        .into_iter()
        .chain(role.iter().filter_map(|r| match *r {
            Role::Put(v) => Some(v),
            Role::Cas { expected, new } if deleted && expected == ABSENT => Some(new),
            _ => None,
        }));
    for root in roots {
        let chain = match clusters.lay_out(root, &mut order) {
            Ok(chain) => chain,
            Err(decided) => return decided,
        };
        if !(chain.initial && chain.begin == chain.end) {
            chains.push(chain);
        }
    }
    drop(observers);
    let placed = role.iter().filter(|r| **r != Role::Dropped).count();
    if order.len() + deletes.len() + absent_observers.len() != placed {
        // Some compare-and-swap is reachable from no put nor the initial
        // value: a cycle of them, or one from a value nobody writes.
        return Unique::NotApplicable("a compare-and-swap chain has no start");
    }
    // Rule 4: order the chains; the initial value's, laid out first,
    // stays first.
    let first_is_root = chains.first().is_some_and(|c| c.initial);
    chains[usize::from(first_is_root)..].sort_unstable_by_key(|c| {
        let (lo, hi) = (c.lo.0, c.hi.0);
        (lo.min(hi), lo < hi, c.begin)
    });
    if let Some(conflict) = unorderable(&chains, first_is_root) {
        return Unique::Violation(conflict);
    }
    let linearization = if deleted {
        let mut blocks = match singletons_unorderable(seq, &chains, &deletes, &absent_observers) {
            Ok(blocks) => blocks,
            Err(conflict) => return Unique::Violation(conflict),
        };
        if let Some(conflict) = nothing_between(seq, &role) {
            return Unique::Violation(conflict);
        }
        // Rule 5(d): the chains and deletes arranged, then the observers
        // of absence placed.
        blocks.retain(|c| c.begin < NIL / 2 || deletes.binary_search(&(c.begin - NIL / 2)).is_ok());
        if let Err(reason) = arrange(&mut blocks) {
            return Unique::NotApplicable(reason);
        }
        match place_observers(seq, &blocks, &order, &absent_observers) {
            Ok(linearization) => linearization,
            Err(reason) => return Unique::NotApplicable(reason),
        }
    } else {
        let mut linearization = Vec::with_capacity(order.len());
        for c in &chains {
            linearization.extend_from_slice(&order[c.begin as usize..c.end as usize]);
        }
        linearization
    };
    drop(order);
    if !replays(seq, &linearization) {
        // Without deletes, rules 1 to 4 are exact: an order that does not
        // replay would be a bug. With deletes, rule 5's placement of the
        // deletes (or a dropped unknown-outcome write) was not one that
        // works.
        debug_assert!(deleted, "the unique-values pass built an invalid order");
        return Unique::NotApplicable("deleted key: the order found does not replay");
    }
    Unique::Linearizable(linearization)
}

/// The clusters of a key and the links between them (rule 2).
struct Clusters<'a> {
    seq: &'a [SeqOp],
    role: &'a [Role],
    writer: &'a [u32],
    /// The compare-and-swap that succeeds from each value (`NIL`: none).
    next: &'a [u32],
    /// Each value's observers, `observers[start[v]..start[v + 1]]`, by
    /// completion.
    observers: &'a [u32],
    start: &'a [u32],
}

impl Clusters<'_> {
    /// Lays out the chain from `root`'s cluster at the end of `order`, in
    /// its forced order (rule 3): a violation of real time inside it is a
    /// verdict.
    fn lay_out(&self, root: u32, order: &mut Vec<u32>) -> Result<Chain, Unique> {
        let mut chain = Chain {
            root,
            initial: root == ABSENT,
            from_absent: matches!(
                self.role.get(self.writer[root as usize] as usize),
                Some(Role::Cas {
                    expected: ABSENT,
                    ..
                })
            ),
            begin: order.len() as u32,
            end: 0,
            lo: (u64::MAX, NIL),
            hi: (0, NIL),
        };
        let mut cluster = root as usize;
        let mut covered = 0usize;
        loop {
            let writer = if cluster == ABSENT as usize {
                NIL
            } else {
                self.writer[cluster]
            };
            let members = std::iter::once(writer).filter(|&w| w != NIL).chain(
                self.observers[self.start[cluster] as usize..self.start[cluster + 1] as usize]
                    .iter()
                    .copied(),
            );
            for i in members {
                let op = &self.seq[i as usize];
                if chain.hi.1 != NIL && completion(op) < chain.hi.0 {
                    return Err(Unique::Violation(Conflict::Order {
                        first: chain.hi.1,
                        then: i,
                    }));
                }
                if chain.hi.1 == NIL || op.invoke_us > chain.hi.0 {
                    chain.hi = (op.invoke_us, i);
                }
                if completion(op) < chain.lo.0 || chain.lo.1 == NIL {
                    chain.lo = (completion(op), i);
                }
                order.push(i);
            }
            covered += 1;
            let link = self.next[cluster];
            if link == NIL {
                break;
            }
            let Role::Cas { new, .. } = self.role[link as usize] else {
                unreachable!("links are compare-and-swaps");
            };
            cluster = new as usize;
            if covered > self.next.len() {
                return Err(Unique::NotApplicable("a cycle of compare-and-swaps"));
            }
        }
        chain.end = order.len() as u32;
        Ok(chain)
    }
}

/// Rule 4's test of the sorted chains: the first chain that completes an
/// operation before the latest invocation of a chain sorted before it,
/// with the certificate.
fn unorderable(chains: &[Chain], first_is_root: bool) -> Option<Conflict> {
    let mut latest: Option<usize> = None;
    for b in 0..chains.len() {
        if let Some(a) = latest {
            if chains[b].lo.0 < chains[a].hi.0 {
                let (ca, cb) = (&chains[a], &chains[b]);
                let root = a == 0 && first_is_root;
                return Some(Conflict::Chains {
                    a_value: ca.root,
                    b_value: cb.root,
                    a_late: ca.hi.1,
                    b_early: cb.lo.1,
                    a_early: if root { NIL } else { ca.lo.1 },
                    b_late: if root { NIL } else { cb.hi.1 },
                });
            }
        }
        if latest.is_none_or(|a| chains[b].hi.0 > chains[a].hi.0) {
            latest = Some(b);
        }
    }
    None
}

/// Rule 5's test of real time: rule 4 with each delete and each observer
/// of absence as a chain of its own.
fn singletons_unorderable(
    seq: &[SeqOp],
    chains: &[Chain],
    deletes: &[u32],
    absent: &[u32],
) -> Result<Vec<Chain>, Conflict> {
    let mut all: Vec<Chain> = Vec::with_capacity(chains.len() + deletes.len() + absent.len());
    all.extend_from_slice(chains);
    for &i in deletes.iter().chain(absent) {
        let op = &seq[i as usize];
        all.push(Chain {
            root: ABSENT,
            initial: false,
            from_absent: false,
            // Unique among the chains (whose `begin` is below `n`).
            begin: NIL / 2 + i,
            end: NIL / 2 + i,
            lo: (completion(op), i),
            hi: (op.invoke_us, i),
        });
    }
    all.sort_unstable_by_key(|c| {
        let (lo, hi) = (c.lo.0, c.hi.0);
        (lo.min(hi), lo < hi, c.begin)
    });
    match unorderable(&all, false) {
        Some(conflict) => Err(conflict),
        None => Ok(all),
    }
}

/// Operations as (completion, invocation, op) by completion, and the
/// (invocation, op) invoked latest up to each.
type ByCompletion = (Vec<(u64, u64, u32)>, Vec<(u64, u32)>);

/// Rule 5's test of what must happen between two operations: an observer
/// of absence `r` that some operation `x` of a present value's chain
/// returned before (so a delete took effect between them), with no delete
/// (known or unknown outcome) that may take effect after `x` and before
/// `r`; or a delete that found the key, with no write (known or unknown
/// outcome) that may take effect between it and the latest operation that
/// returned before it and left the key absent (or the start).
fn nothing_between(seq: &[SeqOp], role: &[Role]) -> Option<Conflict> {
    // (completion, invocation, op), by completion, with the operation of
    // the latest invocation up to each.
    let by_completion = |keep: &dyn Fn(usize) -> bool| {
        let mut list: Vec<(u64, u64, u32)> = (0..seq.len())
            .filter(|&i| keep(i) && seq[i].complete_us.is_some())
            .map(|i| (completion(&seq[i]), seq[i].invoke_us, i as u32))
            .collect();
        list.sort_unstable();
        let mut latest: Option<(u64, u32)> = None;
        let best: Vec<(u64, u32)> = list
            .iter()
            .map(|&(_, inv, i)| {
                if latest.is_none_or(|(l, _)| inv > l) {
                    latest = Some((inv, i));
                }
                latest.unwrap_or((inv, i))
            })
            .collect();
        (list, best)
    };
    // The latest-invoked operation of the list that returned before `t`.
    let before = |(list, best): &ByCompletion, t: u64| {
        let k = list.partition_point(|&(c, _, _)| c < t);
        (k > 0).then(|| best[k - 1])
    };
    // (invocation, completion) by invocation, with the latest completion
    // up to each.
    let by_invocation = |keep: &dyn Fn(&SeqOp) -> bool| {
        let mut list: Vec<(u64, u64)> = seq
            .iter()
            .filter(|op| keep(op))
            .map(|op| (op.invoke_us, completion(op)))
            .collect();
        list.sort_unstable();
        let mut latest = 0u64;
        for e in &mut list {
            latest = latest.max(e.1);
            e.1 = latest;
        }
        list
    };
    // Whether one of them is invoked at or before `until` and completes
    // at or after `after`.
    let any_between = |list: &[(u64, u64)], after: u64, until: u64| {
        let k = list.partition_point(|&(inv, _)| inv <= until);
        k > 0 && list[k - 1].1 >= after
    };
    let present = by_completion(&|i| match role[i] {
        Role::Put(_) | Role::Cas { .. } => true,
        Role::Observer(v) => v != ABSENT,
        _ => false,
    });
    let deleters = by_invocation(&|op| {
        op.cmd == Cmd::Delete && op.expect != Expect::Exactly(Out::Deleted(false))
    });
    for (r, _) in role
        .iter()
        .enumerate()
        .filter(|(_, r)| **r == Role::Observer(ABSENT))
    {
        let op = &seq[r];
        if let Some((after, x)) = before(&present, op.invoke_us) {
            if !any_between(&deleters, after, completion(op)) {
                return Some(Conflict::NothingBetween {
                    first: x,
                    then: r as u32,
                });
            }
        }
    }
    drop(present);
    drop(deleters);
    let gone = by_completion(&|i| matches!(role[i], Role::Observer(ABSENT) | Role::Delete));
    let writers = by_invocation(&|op| op.writes != NIL && op.writes != ABSENT);
    for (d, _) in role.iter().enumerate().filter(|(_, r)| **r == Role::Delete) {
        let op = &seq[d];
        let (after, y) = before(&gone, op.invoke_us).unwrap_or((0, NIL));
        if !any_between(&writers, after, completion(op)) {
            return Some(Conflict::NothingBetween {
                first: y,
                then: d as u32,
            });
        }
    }
    None
}

/// Rule 5(d): arranges the blocks sorted by rule 4 (chains of present
/// values and deletes) so that each delete follows a present value and
/// each chain from absent follows a delete or the start, moving a block
/// forward only past blocks it may precede (its latest invocation is not
/// after their earliest completion), or a put back to right before a
/// delete (see the module documentation). Fails if it finds no such move;
/// the result is checked by the replay.
fn arrange(blocks: &mut [Chain]) -> Result<(), &'static str> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Kind {
        /// A chain from a put: fits anywhere, leaves a present value.
        Put,
        /// A chain from absent: needs absence, leaves a present value.
        FromAbsent,
        /// A delete that found the key: needs a present value.
        Delete,
    }
    let kind = |c: &Chain| {
        if c.begin >= NIL / 2 {
            Kind::Delete
        } else if c.from_absent {
            Kind::FromAbsent
        } else {
            Kind::Put
        }
    };
    // The first block from `i + 1` of a wanted kind that may move to `i`.
    let find = |blocks: &[Chain], i: usize, wanted: &dyn Fn(Kind) -> bool| {
        let mut earliest = blocks[i].lo.0;
        let ahead = blocks.iter().enumerate().take(i + REARRANGE_LOOKAHEAD);
        for (j, c) in ahead.skip(i + 1) {
            if earliest < c.lo.0.min(c.hi.0) {
                break;
            }
            if c.hi.0 <= earliest && wanted(kind(c)) {
                return Some(j);
            }
            earliest = earliest.min(c.lo.0);
        }
        None
    };
    let mut absent = true;
    // Whether the key is absent before each block placed.
    let mut before: Vec<bool> = Vec::with_capacity(blocks.len());
    // Whether the key is absent after a block (whatever it was before).
    let step = |_: bool, k: Kind| k == Kind::Delete;
    for i in 0..blocks.len() {
        let k = kind(&blocks[i]);
        let pick = if absent {
            if k == Kind::FromAbsent {
                None
            } else if let Some(j) = find(blocks, i, &|k| k == Kind::FromAbsent) {
                Some(j)
            } else if k == Kind::Put {
                None
            } else if let Some(j) = find(blocks, i, &|k| k == Kind::Put) {
                Some(j)
            } else {
                // A delete after a delete: move a put placed before to
                // right before it, if it may follow what it jumps over and
                // what it jumps over still fits without it.
                let p = (i.saturating_sub(REARRANGE_LOOKAHEAD)..i)
                    .rev()
                    .find(|&p| {
                        kind(&blocks[p]) == Kind::Put && {
                            let lo = blocks[p].lo.0;
                            let mut state = before[p];
                            blocks[p + 1..i].iter().all(|b| {
                                let fits = match kind(b) {
                                    Kind::Put => true,
                                    Kind::Delete => !state,
                                    Kind::FromAbsent => state,
                                };
                                state = step(state, kind(b));
                                fits && b.hi.0 <= lo
                            })
                        }
                    })
                    .ok_or(NO_PLACE)?;
                blocks[p..i].rotate_left(1);
                let mut state = before[p];
                for (q, b) in blocks.iter().enumerate().take(i).skip(p) {
                    before[q] = state;
                    state = step(state, kind(b));
                }
                absent = state;
                None
            }
        } else if k == Kind::FromAbsent {
            Some(find(blocks, i, &|k| k == Kind::Delete).ok_or(NO_PLACE)?)
        } else {
            None
        };
        if let Some(j) = pick {
            blocks[i..=j].rotate_right(1);
        }
        before.push(absent);
        absent = step(absent, kind(&blocks[i]));
    }
    Ok(())
}

/// Rule 5(d), observers of absence: given the blocks in order (chains and
/// deletes), puts each observer of absence in the earliest absent version
/// (the initial one, or a delete's) that it fits, and returns the whole
/// order (not yet replayed), or why it found none.
fn place_observers(
    seq: &[SeqOp],
    blocks: &[Chain],
    order: &[u32],
    absent: &[u32],
) -> Result<Vec<u32>, &'static str> {
    let is_delete = |c: &Chain| c.begin >= NIL / 2;
    // For each absent version: the latest invocation up to its delete,
    // and the earliest completion after it. Both grow along the versions.
    let mut suf = vec![u64::MAX; blocks.len() + 1];
    for p in (0..blocks.len()).rev() {
        suf[p] = suf[p + 1].min(blocks[p].lo.0);
    }
    let mut epoch_pre = vec![0u64];
    let mut epoch_suf = vec![suf[0]];
    let mut latest = 0u64;
    for (p, c) in blocks.iter().enumerate() {
        latest = latest.max(c.hi.0);
        if is_delete(c) {
            epoch_pre.push(latest);
            epoch_suf.push(suf[p + 1]);
        }
    }
    drop(suf);
    let epochs = epoch_pre.len();
    let mut epoch_start = vec![0u32; epochs + 1];
    let mut epoch_of = Vec::with_capacity(absent.len());
    for &r in absent {
        let op = &seq[r as usize];
        let e = epoch_suf.partition_point(|&lo| lo < op.invoke_us);
        if e == epochs || epoch_pre[e] > completion(op) {
            return Err("deleted key: an observer of absence fits no absent version");
        }
        epoch_of.push(e as u32);
        epoch_start[e + 1] += 1;
    }
    for e in 0..epochs {
        epoch_start[e + 1] += epoch_start[e];
    }
    let mut in_epoch = vec![0u32; absent.len()];
    let mut fill = epoch_start.clone();
    for (&r, &e) in absent.iter().zip(&epoch_of) {
        in_epoch[fill[e as usize] as usize] = r;
        fill[e as usize] += 1;
    }
    drop(fill);
    drop(epoch_of);
    for e in 0..epochs {
        in_epoch[epoch_start[e] as usize..epoch_start[e + 1] as usize].sort_unstable_by_key(|&i| {
            (completion(&seq[i as usize]), seq[i as usize].invoke_us, i)
        });
    }
    let epoch = |e: usize| &in_epoch[epoch_start[e] as usize..epoch_start[e + 1] as usize];
    let mut linearization = Vec::with_capacity(order.len() + blocks.len() + absent.len());
    linearization.extend_from_slice(epoch(0));
    let mut e = 0;
    for c in blocks {
        if is_delete(c) {
            e += 1;
            linearization.push(c.begin - NIL / 2);
            linearization.extend_from_slice(epoch(e));
        } else {
            linearization.extend_from_slice(&order[c.begin as usize..c.end as usize]);
        }
    }
    Ok(linearization)
}

/// Why [`arrange`] found no order.
const NO_PLACE: &str = "deleted key: no block fits where a delete or absence is needed";

/// How far [`arrange`] looks ahead for a block to move.
const REARRANGE_LOOKAHEAD: usize = 256;

/// One chain of clusters: its operations are `order[begin..end]`.
#[derive(Clone, Copy)]
struct Chain {
    /// The value of its first cluster (a put's, or absent).
    root: u32,
    /// Whether it starts with the initial value (it must go first).
    initial: bool,
    /// Whether it starts with a compare-and-swap from absent.
    from_absent: bool,
    begin: u32,
    end: u32,
    /// The earliest completion and its operation.
    lo: (u64, u32),
    /// The latest invocation and its operation.
    hi: (u64, u32),
}

/// Whether `order` linearizes the key: every operation with a known
/// outcome appears once, real time is respected, and the register gives
/// every known outcome its observed output.
fn replays(seq: &[SeqOp], order: &[u32]) -> bool {
    let mut seen = vec![false; seq.len()];
    let mut state = ABSENT;
    let mut latest_invoke = 0u64;
    for &i in order {
        let Some(op) = seq.get(i as usize) else {
            return false;
        };
        if std::mem::replace(&mut seen[i as usize], true) || completion(op) < latest_invoke {
            return false;
        }
        latest_invoke = latest_invoke.max(op.invoke_us);
        let (after, out) = step(state, op.cmd);
        if !op.expect.allows(out) {
            return false;
        }
        state = after;
    }
    seq.iter()
        .zip(&seen)
        .all(|(op, &seen)| seen || op.complete_us.is_none())
}
