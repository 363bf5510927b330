//! An exhaustive reference checker for small histories, used by the tests to
//! cross-check the real one. It shares nothing with it: no partitioning by
//! key, no memo, no interning; it runs the real [`KvStore`] over every
//! order of the operations that respects real time, for every choice of
//! which operations with an unknown outcome took effect.

use super::{History, Operation, Outcome};
use crate::kv::{KvCommand, KvStore, StateMachine};

/// Largest history (operations that may take effect) it accepts.
pub(crate) const MAX_OPS: usize = 10;

/// Whether `history` is linearizable, by trying every order.
pub(crate) fn linearizable(history: &History) -> bool {
    let ops: Vec<&Operation> = history
        .operations
        .iter()
        .filter(|op| op.command != KvCommand::Noop)
        .filter(|op| !matches!(op.outcome, Outcome::Fail { .. }))
        .collect();
    assert!(ops.len() <= MAX_OPS, "brute force is for small histories");
    let unknown: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i].outcome, Outcome::Unknown { .. }))
        .collect();
    // Each subset of the unknown operations is the set that took effect.
    (0u32..1 << unknown.len()).any(|mask| {
        let included: Vec<&Operation> = ops
            .iter()
            .enumerate()
            .filter(|(i, _)| match unknown.iter().position(|u| u == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .map(|(_, op)| *op)
            .collect();
        let mut placed = vec![false; included.len()];
        some_order(&included, &mut placed, &KvStore::default())
    })
}

/// `a` must take effect before `b`: it completed before `b` was invoked.
fn precedes(a: &Operation, b: &Operation) -> bool {
    a.outcome
        .complete_us()
        .is_some_and(|complete_us| complete_us < b.invoke_us)
}

/// Whether the unplaced operations can be placed, in some order respecting
/// real time, after the placed ones (which left `store`).
fn some_order(ops: &[&Operation], placed: &mut [bool], store: &KvStore) -> bool {
    if placed.iter().all(|&p| p) {
        return true;
    }
    for next in 0..ops.len() {
        if placed[next] {
            continue;
        }
        let blocked =
            (0..ops.len()).any(|i| !placed[i] && i != next && precedes(ops[i], ops[next]));
        if blocked {
            continue;
        }
        let mut after = store.clone();
        let output = after.apply(&ops[next].command);
        let fits = match &ops[next].outcome {
            Outcome::Ok { output: seen, .. } => seen.matches(&output),
            _ => true,
        };
        if !fits {
            continue;
        }
        placed[next] = true;
        let done = some_order(ops, placed, &after);
        placed[next] = false;
        if done {
            return true;
        }
    }
    false
}
