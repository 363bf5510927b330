//! Paxos' vocabulary: ballots (proposal numbers) and slots.

use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

consensus_actors::newtype_u64!(
    /// A Multi-Paxos log slot.
    Slot,
    "slot"
);

/// A Paxos ballot (proposal number): ordered by round, then by the proposer's
/// node id, so two proposers never use the same ballot.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// The round; a proposer that is pre-empted retries with a higher round.
    pub round: u64,
    /// The node that owns this ballot (tie-breaker).
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every real ballot.
    pub const ZERO: Self = Self {
        round: 0,
        node: NodeId(0),
    };

    /// A ballot of `round` owned by `node`.
    pub const fn new(round: u64, node: NodeId) -> Self {
        Self { round, node }
    }

    /// The smallest ballot owned by `node` that is greater than `self`.
    #[must_use]
    pub const fn next_for(self, node: NodeId) -> Self {
        Self {
            round: self.round + 1,
            node,
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.round, self.node.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        assert!(Ballot::new(1, NodeId(5)) < Ballot::new(2, NodeId(1)));
        assert!(Ballot::new(2, NodeId(1)) < Ballot::new(2, NodeId(2)));
        assert!(Ballot::ZERO < Ballot::new(0, NodeId(1)));
        let b = Ballot::new(3, NodeId(2)).next_for(NodeId(1));
        assert_eq!(b, Ballot::new(4, NodeId(1)));
        assert_eq!(b.to_string(), "b4.1");
        assert_eq!(Slot(3).to_string(), "slot3");
    }
}
