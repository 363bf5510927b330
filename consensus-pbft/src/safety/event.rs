//! PBFT's safety events: what replicas prepared and committed.
//!
//! # What emitters must report
//!
//! `Prepared` when a replica's `prepared` predicate becomes true,
//! `Committed` when `committed-local` does, and `ByzantineReplicas` (once,
//! before anything else) for replicas that are faulty on purpose. The
//! primary of a view reports the neutral [`SafetyEvent::BecameLeader`] with
//! the view as the epoch.

use super::SafetyEvent;
use crate::types::{SeqNo, View};
use consensus_actors::safety::{fmt_digest, EventKinds, ProtocolEvent};
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds of [`PbftEvent`], for
/// [`Invariant::event_kinds`](consensus_actors::safety::Invariant::event_kinds).
pub mod kinds {
    use consensus_actors::safety::EventKinds;

    /// [`PbftEvent::Prepared`](super::PbftEvent::Prepared).
    pub const PREPARED: EventKinds = EventKinds::protocol(0);
    /// [`PbftEvent::Committed`](super::PbftEvent::Committed).
    pub const COMMITTED: EventKinds = EventKinds::protocol(1);
    /// [`PbftEvent::ByzantineReplicas`](super::PbftEvent::ByzantineReplicas).
    pub const BYZANTINE_REPLICAS: EventKinds = EventKinds::protocol(2);
}

/// What a PBFT replica did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PbftEvent {
    /// `prepared(m, view, seq, replica)` became true (§4.2).
    Prepared {
        /// The replica.
        replica: NodeId,
        /// The view.
        view: View,
        /// The sequence number.
        seq: SeqNo,
        /// Digest of the request.
        digest: u64,
    },
    /// `committed-local(m, view, seq, replica)` became true (§4.2).
    Committed {
        /// The replica.
        replica: NodeId,
        /// The view.
        view: View,
        /// The sequence number.
        seq: SeqNo,
        /// Digest of the request.
        digest: u64,
    },
    /// These replicas are faulty (Byzantine) on purpose: their events are not
    /// trusted. Adds to any earlier declaration.
    ByzantineReplicas {
        /// The faulty replicas.
        replicas: Vec<NodeId>,
    },
}

impl From<PbftEvent> for SafetyEvent {
    fn from(ev: PbftEvent) -> Self {
        SafetyEvent::Protocol(ev)
    }
}

impl ProtocolEvent for PbftEvent {
    type Model = ();

    fn kind(&self) -> EventKinds {
        match self {
            PbftEvent::Prepared { .. } => kinds::PREPARED,
            PbftEvent::Committed { .. } => kinds::COMMITTED,
            PbftEvent::ByzantineReplicas { .. } => kinds::BYZANTINE_REPLICAS,
        }
    }

    fn fmt_epoch(epoch: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&View(epoch), f)
    }
}

impl fmt::Display for PbftEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pbft ")?;
        match self {
            PbftEvent::Prepared {
                replica,
                view,
                seq,
                digest,
            } => write!(f, "{replica} prepared {view} {seq} {}", fmt_digest(*digest)),
            PbftEvent::Committed {
                replica,
                view,
                seq,
                digest,
            } => write!(
                f,
                "{replica} committed {view} {seq} {}",
                fmt_digest(*digest)
            ),
            PbftEvent::ByzantineReplicas { replicas } => {
                f.write_str("byzantine replicas")?;
                for r in replicas {
                    write!(f, " {r}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_print_as_short_sentences() {
        let ev: SafetyEvent = PbftEvent::ByzantineReplicas {
            replicas: vec![NodeId(3), NodeId(4)],
        }
        .into();
        assert_eq!(ev.to_string(), "pbft byzantine replicas n3 n4");
        let ev: SafetyEvent = PbftEvent::Committed {
            replica: NodeId(1),
            view: View(2),
            seq: SeqNo(3),
            digest: 1,
        }
        .into();
        assert_eq!(ev.to_string(), "pbft n1 committed v2 s3 #0000000000000001");
        let ev: SafetyEvent = SafetyEvent::BecameLeader {
            node: NodeId(2),
            epoch: 3,
        };
        assert_eq!(ev.to_string(), "n2 became leader of v3");
    }
}
