//! PBFT's safety properties, checked as the cluster runs by the runtime's
//! safety checker.
//!
//! | file | what it holds |
//! |---|---|
//! | `event.rs` | [`PbftEvent`] and its [`kinds`] |
//! | `agreement.rs` | PBFT (OSDI'99) §4.2/§4.4: correct replicas commit one request per sequence number |
//! | `prepared.rs` | PBFT (OSDI'99) §4.2: correct replicas prepare one request per view and sequence number |

mod agreement;
mod event;
mod prepared;

pub use agreement::PbftAgreement;
pub use consensus_actors::safety::{Epoch, Invariant, Position, Violation};
pub use event::{kinds, PbftEvent};
pub use prepared::PbftPreparedAgreement;

use crate::types::{SeqNo, View};

/// A safety event of a PBFT cluster: neutral, or a [`PbftEvent`].
pub type SafetyEvent = consensus_actors::safety::SafetyEvent<PbftEvent>;

/// A safety checker over PBFT's events.
pub type SafetyChecker = consensus_actors::safety::SafetyChecker<PbftEvent>;

/// The names of PBFT's invariants, in the order [`checker`] runs them.
pub const INVARIANTS: [&str; 2] = ["pbft-agreement", "pbft-prepared-agreement"];

/// A checker with the PBFT invariants: correct replicas commit one request
/// per sequence number in any view, and prepare one per view and sequence
/// number.
pub fn checker() -> SafetyChecker {
    SafetyChecker::new()
        .with(Box::new(PbftAgreement::default()))
        .with(Box::new(PbftPreparedAgreement::default()))
}

/// A view as a violation's epoch (`v2`).
pub fn view_epoch(view: View) -> Epoch {
    Epoch::new("view", view)
}

/// A sequence number as a violation's position (`s7`).
pub fn seq_position(seq: SeqNo) -> Position {
    Position::new("seq", seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_holds_the_documented_invariants() {
        assert_eq!(checker().invariant_names(), INVARIANTS);
    }
}
