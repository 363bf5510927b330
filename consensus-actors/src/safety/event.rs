//! The events protocols report to the safety checker.
//!
//! A [`SafetyEvent<E>`] is either one of the few protocol-neutral facts the
//! runtime itself understands (a node took or left leadership of an epoch, a
//! node crashed) or a protocol's own event `E`, which only that protocol's
//! invariants interpret. Every protocol reports leadership through the
//! neutral [`SafetyEvent::BecameLeader`] / [`SafetyEvent::SteppedDown`], so
//! that tools (the engine's observer, reports, timelines) can follow who
//! leads without knowing the protocol.
//!
//! Events are small and cheap to build: commands are represented by a `u64`
//! digest ([`digest_of`](super::digest_of)), never copied.

use super::EventKinds;
use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a protocol's own safety events must offer the runtime's checking
/// machinery. Implemented by each protocol crate for its event type.
pub trait ProtocolEvent: Clone + fmt::Debug + fmt::Display + Send + Unpin + 'static {
    /// State that the checker keeps once for all of this protocol's
    /// invariants (e.g. Raft's mirror of every node's log), updated after
    /// every event with [`update_model`](Self::update_model). `()` when the
    /// invariants share nothing.
    type Model: Default + Send + Unpin + 'static;

    /// The kind of this event, one of the protocol's
    /// [`EventKinds::protocol`] bits, for the checker's filtering.
    fn kind(&self) -> EventKinds;

    /// Prints an epoch of this protocol (Raft prints a term as `t3`).
    fn fmt_epoch(epoch: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{epoch}")
    }

    /// Folds `ev` into the shared model, after every invariant saw it.
    fn update_model(model: &mut Self::Model, ev: &SafetyEvent<Self>) {
        let _ = (model, ev);
    }
}

/// One thing a node did that a safety property depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SafetyEvent<E> {
    /// The node became the leader (primary, distinguished proposer) of
    /// `epoch` (Raft term, PBFT view, Paxos ballot round). The neutral
    /// leadership event every protocol reports.
    BecameLeader {
        /// The new leader.
        node: NodeId,
        /// The epoch it leads.
        epoch: u64,
    },
    /// The node stopped being leader (it saw a higher epoch, was removed,
    /// or handed leadership over). A node leads from `BecameLeader` until
    /// `SteppedDown` or a crash.
    SteppedDown {
        /// The former leader.
        node: NodeId,
    },
    /// The node crashed: its volatile state (roles, commit index, applied
    /// state) is lost, its durable state survives.
    Crashed {
        /// The node that crashed.
        node: NodeId,
    },
    /// An event of the protocol itself.
    Protocol(E),
}

impl<E> SafetyEvent<E> {
    /// The protocol's own event, if this is one.
    pub fn protocol(&self) -> Option<&E> {
        match self {
            SafetyEvent::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// The event type of a protocol that reports only the neutral events
/// (leadership and crashes): it has no values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoProtocolEvents {}

impl fmt::Display for NoProtocolEvents {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl ProtocolEvent for NoProtocolEvents {
    type Model = ();

    fn kind(&self) -> EventKinds {
        match *self {}
    }
}

struct Digest(u64);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:016x}", self.0)
    }
}

/// Formats a digest the way events and violations print it (`#` and 16 hex
/// digits).
pub fn fmt_digest(digest: u64) -> String {
    Digest(digest).to_string()
}

/// Displays an epoch the way protocol `E` prints it.
pub struct EpochLabel<E>(pub u64, pub std::marker::PhantomData<fn() -> E>);

impl<E: ProtocolEvent> fmt::Display for EpochLabel<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        E::fmt_epoch(self.0, f)
    }
}

impl<E: ProtocolEvent> fmt::Display for SafetyEvent<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SafetyEvent::BecameLeader { node, epoch } => {
                write!(f, "{node} became leader of ")?;
                E::fmt_epoch(*epoch, f)
            }
            SafetyEvent::SteppedDown { node } => write!(f, "{node} stepped down"),
            SafetyEvent::Crashed { node } => write!(f, "{node} crashed"),
            SafetyEvent::Protocol(ev) => fmt::Display::fmt(ev, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neutral_events_print_as_short_sentences() {
        let ev: SafetyEvent<NoProtocolEvents> = SafetyEvent::BecameLeader {
            node: NodeId(2),
            epoch: 4,
        };
        assert_eq!(ev.to_string(), "n2 became leader of e4");
        let ev: SafetyEvent<NoProtocolEvents> = SafetyEvent::Crashed { node: NodeId(1) };
        assert_eq!(ev.to_string(), "n1 crashed");
        assert!(ev.protocol().is_none());
        let ev: SafetyEvent<NoProtocolEvents> = SafetyEvent::SteppedDown { node: NodeId(3) };
        assert_eq!(ev.to_string(), "n3 stepped down");
    }

    #[test]
    fn digests_print_as_sixteen_hex_digits() {
        assert_eq!(fmt_digest(0xab), "#00000000000000ab");
    }
}
