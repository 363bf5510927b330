//! Paxos' safety properties, checked as the cluster runs by the runtime's
//! safety checker.
//!
//! | file | what it holds |
//! |---|---|
//! | `event.rs` | [`PaxosEvent`] and its [`kinds`] |
//! | `agreement.rs` | Paxos Made Simple §2.1/§2.2 (P2b): one value chosen per slot |
//! | `promises.rs` | Paxos Made Simple §2.2 (P1a): acceptors keep their promises |

mod agreement;
mod event;
mod promises;

pub use agreement::PaxosAgreement;
pub use consensus_actors::safety::{Epoch, Invariant, Position, Violation};
pub use event::{kinds, PaxosEvent};
pub use promises::PaxosPromisesKept;

use crate::types::{Ballot, Slot};

/// A safety event of a Paxos cluster: neutral, or a [`PaxosEvent`].
pub type SafetyEvent = consensus_actors::safety::SafetyEvent<PaxosEvent>;

/// A safety checker over Paxos' events.
pub type SafetyChecker = consensus_actors::safety::SafetyChecker<PaxosEvent>;

/// The names of Paxos' invariants, in the order [`checker`] runs them.
pub const INVARIANTS: [&str; 2] = ["paxos-agreement", "paxos-promises-kept"];

/// A checker with the Paxos invariants: agreement (one value chosen per
/// slot, judged from learners' `Chosen` reports and P2b) and promises kept
/// (P1a).
pub fn checker() -> SafetyChecker {
    SafetyChecker::new()
        .with(Box::new(PaxosAgreement::default()))
        .with(Box::new(PaxosPromisesKept::default()))
}

/// Like [`checker`], but knowing there are `acceptors` acceptors, agreement
/// also infers which values are chosen from the acceptors' `Accepted`
/// reports (a majority at one ballot), without waiting for a learner.
pub fn checker_with_acceptors(acceptors: usize) -> SafetyChecker {
    SafetyChecker::new()
        .with(Box::new(PaxosAgreement::with_acceptors(acceptors)))
        .with(Box::new(PaxosPromisesKept::default()))
}

/// Like [`checker_with_acceptors`], with flexible quorums: `q2` of the
/// `acceptors` at one ballot choose a value.
pub fn checker_with_quorum(acceptors: usize, q2: usize) -> SafetyChecker {
    SafetyChecker::new()
        .with(Box::new(PaxosAgreement::with_quorum(acceptors, q2)))
        .with(Box::new(PaxosPromisesKept::default()))
}

/// A ballot as a violation's epoch (`b3.1`).
pub fn ballot_epoch(ballot: Ballot) -> Epoch {
    Epoch::new("ballot", ballot)
}

/// A slot as a violation's position (`slot4`).
pub fn slot_position(slot: Slot) -> Position {
    Position::new("slot", slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::types::NodeId;

    #[test]
    fn the_checker_holds_the_documented_invariants() {
        assert_eq!(checker().invariant_names(), INVARIANTS);
        assert_eq!(checker_with_acceptors(3).invariant_names(), INVARIANTS);
    }

    #[test]
    fn two_learners_disagreeing_on_a_slot_is_a_violation() {
        let mut c = checker();
        for (node, digest) in [(1, 10), (2, 11)] {
            c.observe(
                1,
                &PaxosEvent::Chosen {
                    node: NodeId(node),
                    slot: Slot(1),
                    ballot: Ballot::new(1, NodeId(node)),
                    digest,
                }
                .into(),
            );
        }
        assert_eq!(c.violation_count(), 1);
        assert_eq!(c.violations()[0].invariant, "paxos-agreement");
    }
}
