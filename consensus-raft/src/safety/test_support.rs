//! Event builders and a runner shared by the invariant tests, so each test
//! reads as the sequence of events it checks.

use super::*;
use consensus_actors::types::{LogIndex, NodeId, Term};

/// Feeds `events` to `inv` in order (event `i` at virtual time `i` µs) and
/// returns every violation reported.
///
/// The same events also go to a copy of `inv` inside a [`SafetyChecker`]
/// (which shares its Raft log mirror with the invariants that read logs),
/// and both ways must report exactly the same violations.
pub(crate) fn run_invariant<I: Invariant<RaftSafetyEvent> + Clone + 'static>(
    inv: &mut I,
    events: &[SafetyEvent],
) -> Vec<Violation> {
    let mut checker = SafetyChecker::new().with(Box::new(inv.clone()));
    let mut out = Vec::new();
    let mut in_checker = Vec::new();
    for (t, ev) in events.iter().enumerate() {
        inv.observe(t as u64, ev, &mut out);
        in_checker.extend_from_slice(checker.observe(t as u64, ev));
    }
    assert_eq!(
        in_checker, out,
        "the invariant reports the same violations alone and in a checker"
    );
    out
}

/// `node` became leader of `term`.
pub(crate) fn leader(node: NodeId, term: u64) -> SafetyEvent {
    became_leader(node, Term(term))
}

/// `node` wrote one entry.
pub(crate) fn append(node: NodeId, index: u64, term: u64, digest: u64) -> SafetyEvent {
    RaftSafetyEvent::Appended {
        node,
        index: LogIndex(index),
        term: Term(term),
        digest,
    }
    .into()
}

/// `node` wrote `(term, digest)` entries from index `first` on.
pub(crate) fn batch(node: NodeId, first: u64, entries: &[(u64, u64)]) -> SafetyEvent {
    RaftSafetyEvent::AppendedBatch {
        node,
        first_index: LogIndex(first),
        entries: entries.iter().map(|(t, d)| (Term(*t), *d)).collect(),
    }
    .into()
}

/// `node` dropped its log from `from` on.
pub(crate) fn truncate(node: NodeId, from: u64) -> SafetyEvent {
    RaftSafetyEvent::Truncated {
        node,
        from_index: LogIndex(from),
    }
    .into()
}

/// `node`, in `term`, advanced its commit index to `index`.
pub(crate) fn commit(node: NodeId, term: u64, index: u64) -> SafetyEvent {
    RaftSafetyEvent::CommitAdvanced {
        node,
        term: Term(term),
        commit_index: LogIndex(index),
    }
    .into()
}

/// `node` applied the command with `digest` at `index`.
pub(crate) fn apply(node: NodeId, index: u64, digest: u64) -> SafetyEvent {
    RaftSafetyEvent::Applied {
        node,
        index: LogIndex(index),
        digest,
    }
    .into()
}

/// `node` applied the commands with `digests` from `first` on.
pub(crate) fn apply_batch(node: NodeId, first: u64, digests: &[u64]) -> SafetyEvent {
    RaftSafetyEvent::AppliedBatch {
        node,
        first_index: LogIndex(first),
        digests: digests.to_vec(),
    }
    .into()
}

/// `node`, in `term`, committed and applied the commands with `digests`
/// from `first` on (one `Committed` event).
pub(crate) fn committed(node: NodeId, term: u64, first: u64, digests: &[u64]) -> SafetyEvent {
    RaftSafetyEvent::Committed {
        node,
        term: Term(term),
        first_index: LogIndex(first),
        digests: digests.to_vec(),
    }
    .into()
}
