//! Paxos' safety events: what acceptors and learners did.
//!
//! # What emitters must report
//!
//! `Promised` for every promise an acceptor makes (promises cover every
//! slot), `Accepted` for every accepted proposal, `Chosen` whenever a
//! learner learns a value, `Configured` whenever a learner delivers a
//! configuration change (Multi-Paxos' `add_node` / `remove_node`), so the
//! checker counts each slot's majority among that slot's acceptors.
//! Single-decree Paxos uses one slot (any fixed
//! number). A Multi-Paxos leader reports the neutral
//! [`SafetyEvent::BecameLeader`] with its ballot's round as the epoch.

use super::SafetyEvent;
use crate::types::{Ballot, Slot};
use consensus_actors::safety::{fmt_digest, EventKinds, ProtocolEvent};
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of [`PaxosEvent`], for
/// [`Invariant::event_kinds`](consensus_actors::safety::Invariant::event_kinds).
pub mod kinds {
    use consensus_actors::safety::EventKinds;

    /// [`PaxosEvent::Promised`](super::PaxosEvent::Promised).
    pub const PROMISED: EventKinds = EventKinds::protocol(0);
    /// [`PaxosEvent::Accepted`](super::PaxosEvent::Accepted).
    pub const ACCEPTED: EventKinds = EventKinds::protocol(1);
    /// [`PaxosEvent::Chosen`](super::PaxosEvent::Chosen).
    pub const CHOSEN: EventKinds = EventKinds::protocol(2);
    /// [`PaxosEvent::Configured`](super::PaxosEvent::Configured).
    pub const CONFIGURED: EventKinds = EventKinds::protocol(3);
}

/// What a Paxos (or Multi-Paxos) participant did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaxosEvent {
    /// The acceptor promised not to accept any proposal numbered below
    /// `ballot`, in any slot (phase 1b).
    Promised {
        /// The acceptor.
        acceptor: NodeId,
        /// The promised ballot.
        ballot: Ballot,
    },
    /// The acceptor accepted the proposal (`ballot`, value) for `slot`
    /// (phase 2b).
    Accepted {
        /// The acceptor.
        acceptor: NodeId,
        /// The slot (single-decree Paxos uses one fixed slot).
        slot: Slot,
        /// The proposal number.
        ballot: Ballot,
        /// Digest of the proposed value.
        digest: u64,
    },
    /// A learner learned that the value was chosen in `slot`, accepted by a
    /// majority at `ballot`.
    Chosen {
        /// The learner.
        node: NodeId,
        /// The slot.
        slot: Slot,
        /// The ballot a majority accepted.
        ballot: Ballot,
        /// Digest of the chosen value.
        digest: u64,
    },
    /// A learner delivered a configuration change: the acceptors of the
    /// slots from `from` on (until a later configuration).
    Configured {
        /// The learner.
        node: NodeId,
        /// The first slot the configuration governs.
        from: Slot,
        /// Its acceptors.
        acceptors: Vec<NodeId>,
    },
}

impl From<PaxosEvent> for SafetyEvent {
    fn from(ev: PaxosEvent) -> Self {
        SafetyEvent::Protocol(ev)
    }
}

impl ProtocolEvent for PaxosEvent {
    type Model = ();

    fn kind(&self) -> EventKinds {
        match self {
            PaxosEvent::Promised { .. } => kinds::PROMISED,
            PaxosEvent::Accepted { .. } => kinds::ACCEPTED,
            PaxosEvent::Chosen { .. } => kinds::CHOSEN,
            PaxosEvent::Configured { .. } => kinds::CONFIGURED,
        }
    }

    fn fmt_epoch(epoch: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "round{epoch}")
    }
}

impl fmt::Display for PaxosEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("paxos ")?;
        match self {
            PaxosEvent::Promised { acceptor, ballot } => write!(f, "{acceptor} promised {ballot}"),
            PaxosEvent::Accepted {
                acceptor,
                slot,
                ballot,
                digest,
            } => write!(
                f,
                "{acceptor} accepted {slot} {ballot} {}",
                fmt_digest(*digest)
            ),
            PaxosEvent::Chosen {
                node,
                slot,
                ballot,
                digest,
            } => write!(
                f,
                "{node} learned {slot} chosen at {ballot} {}",
                fmt_digest(*digest)
            ),
            PaxosEvent::Configured {
                node,
                from,
                acceptors,
            } => {
                let names: Vec<String> = acceptors.iter().map(|n| n.to_string()).collect();
                write!(
                    f,
                    "{node} learned acceptors {} from {from}",
                    names.join(" ")
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_short_sentences() {
        let ev: SafetyEvent = PaxosEvent::Accepted {
            acceptor: NodeId(3),
            slot: Slot(5),
            ballot: Ballot::new(2, NodeId(1)),
            digest: 0xab,
        }
        .into();
        assert_eq!(
            ev.to_string(),
            "paxos n3 accepted slot5 b2.1 #00000000000000ab"
        );
        let ev: SafetyEvent = SafetyEvent::BecameLeader {
            node: NodeId(2),
            epoch: 3,
        };
        assert_eq!(ev.to_string(), "n2 became leader of round3");
    }
}
