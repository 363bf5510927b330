//! A safety event as the cores hand it out: the events that name a value
//! carry the value, and its digest is computed only when someone listens
//! ([`SafetySink::emit_with`](consensus_actors::safety::SafetySink::emit_with)):
//! hashing a batch of 512 commands at every acceptance is not free, and
//! benchmarks check no invariant.

use crate::safety::PaxosEvent;
use crate::types::{Ballot, Slot, ValueRef};
use consensus_actors::types::NodeId;

/// A [`PaxosEvent`] not built yet.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// An event without a value.
    Event(PaxosEvent),
    /// [`PaxosEvent::Accepted`] of `value`.
    Accepted {
        /// The acceptor.
        acceptor: NodeId,
        /// The slot.
        slot: Slot,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: ValueRef,
    },
    /// [`PaxosEvent::Chosen`] of `value`.
    Chosen {
        /// The learner.
        node: NodeId,
        /// The slot.
        slot: Slot,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: ValueRef,
    },
}

impl Report {
    /// The event (computing the value's digest).
    pub fn event(&self) -> PaxosEvent {
        match self {
            Report::Event(e) => e.clone(),
            Report::Accepted {
                acceptor,
                slot,
                ballot,
                value,
            } => PaxosEvent::Accepted {
                acceptor: *acceptor,
                slot: *slot,
                ballot: *ballot,
                digest: value.digest(),
            },
            Report::Chosen {
                node,
                slot,
                ballot,
                value,
            } => PaxosEvent::Chosen {
                node: *node,
                slot: *slot,
                ballot: *ballot,
                digest: value.digest(),
            },
        }
    }
}
