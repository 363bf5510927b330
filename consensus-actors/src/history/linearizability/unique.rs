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
//! absent versions, and which one an observer of absence saw is guessed
//! (rule 5): the pass then only ever answers "linearizable", with an order
//! it has replayed; when the guess fails, the key goes to the search.
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
//! **Rule 5 (deletes: a guess, then a check).** Each delete that found
//! the key starts a cluster of its own (it writes a new absent version,
//! and it must follow a present value); a delete that found nothing is an
//! observer of absence; one with an unknown outcome is left out. An
//! observer of absence is put in the cluster of the last delete invoked
//! before it completed (the initial value's if none), and a
//! compare-and-swap from absent starts a chain of its own. Rules 3 and 4
//! then build an order, which is only a candidate: it is reported only if
//! it replays (below), and no violation is ever reported for such a key,
//! since the guess may be what failed.
//!
//! The order found is replayed on the register and checked against real
//! time before it is reported (O(n)). Without deletes a failure there would
//! be a bug of this pass (a debug assertion); either way it sends the key
//! to the search instead of giving a verdict.

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
    // With a delete, "absent" has several versions and which one an
    // observer of absence saw is a guess (rule 5): only a linearization,
    // replayed, is then a verdict.
    let exact = !seq.iter().any(|op| op.cmd == Cmd::Delete);
    let mut role = vec![Role::Dropped; n];
    // The one operation that writes each value (`NIL`: none yet).
    let mut writer = vec![NIL; values];
    let mut deletes: Vec<u32> = Vec::new();
    for (i, op) in seq.iter().enumerate() {
        let known = op.complete_us.is_some();
        role[i] = match (op.cmd, op.expect) {
            (Cmd::Delete, Expect::Exactly(Out::Deleted(true))) => {
                deletes.push(i as u32);
                Role::Delete
            }
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
    // Rule 2: clusters. Cluster `v < values` is value `v`'s (0: the
    // initial absent value); cluster `values + k` is the absent value the
    // `k`-th delete (in invocation order) leaves. Links between clusters,
    // then each cluster's observers (counts, then offsets).
    deletes.sort_unstable_by_key(|&d| (seq[d as usize].invoke_us, d));
    let clusters = values + deletes.len();
    let cluster_writer = |c: usize| -> u32 {
        match c {
            0 => NIL,
            c if c < values => writer[c],
            c => deletes[c - values],
        }
    };
    // Rule 5: the absent version an observer of absence saw, guessed as
    // the one left by the last delete invoked before it completed.
    let absent_cluster = |i: usize| -> usize {
        let k = deletes.partition_point(|&d| seq[d as usize].invoke_us <= completion(&seq[i]));
        if k == 0 {
            0
        } else {
            values + k - 1
        }
    };
    let mut next = vec![NIL; values];
    let mut start = vec![0u32; clusters + 1];
    let mut cluster_of = vec![NIL; n];
    for (i, r) in role.iter_mut().enumerate() {
        match *r {
            Role::Unknown => *r = Role::Dropped,
            Role::Cas { expected, .. } if exact || expected != ABSENT => {
                if next[expected as usize] != NIL {
                    return Unique::NotApplicable("two compare-and-swaps succeed from one value");
                }
                next[expected as usize] = i as u32;
            }
            Role::Observer(v) => {
                let c = if v == ABSENT && !exact {
                    absent_cluster(i)
                } else {
                    v as usize
                };
                cluster_of[i] = c as u32;
                start[c + 1] += 1;
            }
            _ => {}
        }
    }
    for c in 0..clusters {
        start[c + 1] += start[c];
    }
    let mut observers = vec![0u32; start[clusters] as usize];
    let mut fill = start.clone();
    for (i, &c) in cluster_of.iter().enumerate() {
        if c != NIL {
            observers[fill[c as usize] as usize] = i as u32;
            fill[c as usize] += 1;
        }
    }
    drop(fill);
    drop(cluster_of);
    for c in 0..clusters {
        observers[start[c] as usize..start[c + 1] as usize].sort_unstable_by_key(|&i| {
            (completion(&seq[i as usize]), seq[i as usize].invoke_us, i)
        });
    }
    // Chains: from the initial value (if anything observes it or swaps it
    // out), every delete, every put and, with deletes, every
    // compare-and-swap from absent. Each chain's operations in their
    // forced order (rule 3), checked as they are laid out.
    let mut order: Vec<u32> = Vec::with_capacity(n);
    let mut chains: Vec<Chain> = Vec::new();
    let mut covered = 0usize;
    let roots = std::iter::once(0usize)
        .chain(values..clusters)
        .chain(role.iter().filter_map(|r| match *r {
            Role::Put(v) => Some(v as usize),
            Role::Cas { expected, new } if !exact && expected == ABSENT => Some(new as usize),
            _ => None,
        }));
    for root in roots {
        let begin = order.len();
        let mut chain = Chain {
            root: if root < values { root as u32 } else { ABSENT },
            initial: root == 0,
            begin: begin as u32,
            end: 0,
            lo: (u64::MAX, NIL),
            hi: (0, NIL),
            needs: ANY,
            leaves: ANY,
        };
        let mut cluster = root;
        loop {
            let members = std::iter::once(cluster_writer(cluster))
                .filter(|&w| w != NIL)
                .chain(
                    observers[start[cluster] as usize..start[cluster + 1] as usize]
                        .iter()
                        .copied(),
                );
            for i in members {
                let op = &seq[i as usize];
                if chain.hi.1 != NIL && completion(op) < chain.hi.0 {
                    if !exact {
                        return Unique::NotApplicable(
                            "deleted key: a chain does not fit real time",
                        );
                    }
                    return Unique::Violation(Conflict::Order {
                        first: chain.hi.1,
                        then: i,
                    });
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
            let link = if cluster < values { next[cluster] } else { NIL };
            if link == NIL {
                break;
            }
            let Role::Cas { new, .. } = role[link as usize] else {
                unreachable!("links are compare-and-swaps");
            };
            cluster = new as usize;
            if covered > clusters {
                return Unique::NotApplicable("a cycle of compare-and-swaps");
            }
        }
        chain.end = order.len() as u32;
        chain.needs = match role.get(cluster_writer(root) as usize) {
            Some(Role::Delete) => PRESENT,
            Some(Role::Cas { expected, .. }) if *expected == ABSENT => GONE,
            _ => ANY,
        };
        chain.leaves = if cluster == 0 || cluster >= values {
            GONE
        } else {
            PRESENT
        };
        if root == 0 && chain.begin == chain.end {
            continue;
        }
        chains.push(chain);
    }
    let placed = role.iter().filter(|r| **r != Role::Dropped).count();
    if order.len() != placed {
        // Some compare-and-swap is reachable from no put nor the initial
        // value: a cycle of them, or one from a value nobody writes.
        return Unique::NotApplicable("a compare-and-swap chain has no start");
    }
    // Rule 4: order the chains; the initial value's stays first.
    // The initial value's chain, if any, was laid out first.
    let first_is_root = chains.first().is_some_and(|c| c.initial);
    let rest = usize::from(first_is_root);
    chains[rest..].sort_unstable_by_key(|c| {
        let (lo, hi) = (c.lo.0, c.hi.0);
        (lo.min(hi), lo < hi, c.begin)
    });
    if !exact && !repair(&mut chains) {
        return Unique::NotApplicable("deleted key: no chain fits after a delete");
    }
    let mut latest: Option<usize> = None;
    for b in 0..chains.len() {
        if let Some(a) = latest {
            if chains[b].lo.0 < chains[a].hi.0 {
                if !exact {
                    return Unique::NotApplicable("deleted key: the chains cannot be ordered");
                }
                let (ca, cb) = (&chains[a], &chains[b]);
                let root = a == 0 && first_is_root;
                return Unique::Violation(Conflict::Chains {
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
    let mut linearization = Vec::with_capacity(order.len());
    for c in &chains {
        linearization.extend_from_slice(&order[c.begin as usize..c.end as usize]);
    }
    drop(order);
    if !replays(seq, &linearization) {
        // Without deletes, rules 1 to 4 are exact: an order that does not
        // replay would be a bug. With deletes, the guess of rule 5 (or a
        // dropped unknown write a delete needed) was wrong.
        debug_assert!(!exact, "the unique-values pass built an invalid order");
        return Unique::NotApplicable("deleted key: the order found does not replay");
    }
    Unique::Linearizable(linearization)
}

/// What a chain needs before it, or leaves after it: anything, a present
/// value, or absence.
const ANY: u8 = 0;
const PRESENT: u8 = 1;
const GONE: u8 = 2;

/// How far [`repair`] looks ahead for a chain to move.
const REPAIR_LOOKAHEAD: usize = 64;

/// Rule 5's repair of the sorted chains of a deleted key: a delete's chain
/// needs a present value before it, a compare-and-swap from absent needs
/// absence. Where the chain at `i` does not fit the value left before it,
/// the first of the next few chains that fits there, leaves what chain `i`
/// needs, and may move before the chains it jumps over (its latest
/// invocation is not after their earliest completions) is moved to `i`.
/// Returns whether every chain then fits; the replay still checks the
/// result.
fn repair(chains: &mut [Chain]) -> bool {
    let fits = |state: u8, needs: u8| needs == ANY || needs == state;
    let mut state = GONE;
    let mut i = 0;
    while i < chains.len() {
        if fits(state, chains[i].needs) {
            state = chains[i].leaves;
            i += 1;
            continue;
        }
        let wanted = chains[i].needs;
        let mut earliest_completion = u64::MAX;
        let mut found = None;
        let window = chains.len().min(i + REPAIR_LOOKAHEAD);
        for (j, c) in chains.iter().enumerate().take(window).skip(i) {
            if j > i && fits(state, c.needs) && c.leaves == wanted && c.hi.0 <= earliest_completion
            {
                found = Some(j);
                break;
            }
            earliest_completion = earliest_completion.min(c.lo.0);
        }
        let Some(j) = found else {
            return false;
        };
        chains[i..=j].rotate_right(1);
    }
    true
}

/// One chain of clusters: its operations are `order[begin..end]`.
struct Chain {
    /// The value of its first cluster (a put's, or absent).
    root: u32,
    /// Whether it starts with the initial value (it must go first).
    initial: bool,
    begin: u32,
    end: u32,
    /// The earliest completion and its operation.
    lo: (u64, u32),
    /// The latest invocation and its operation.
    hi: (u64, u32),
    /// What it needs before it ([`ANY`], [`PRESENT`] or [`GONE`]).
    needs: u8,
    /// What it leaves ([`PRESENT`] or [`GONE`]).
    leaves: u8,
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
