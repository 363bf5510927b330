//! Safety checking machinery: the [`SafetyVerifier`], the pure
//! [`SafetyChecker`] and the [`SafetySink`] protocol components report
//! through, generic over a protocol's events.
//!
//! Protocol actors report what they do as compact [`SafetyEvent`]s: the
//! neutral ones every protocol reports (a node took or left leadership of
//! an epoch, a node crashed) and the protocol's own events (`E`, see
//! [`ProtocolEvent`]), e.g. Raft's entries written and commit index
//! advanced, Paxos' values accepted and chosen, PBFT's requests committed.
//! Commands are never copied: an event carries a `u64`
//! [digest](digest_of) of the command. A [`SafetyChecker`] feeds every event
//! to a pluggable set of [`Invariant`]s; an invariant that sees its property
//! broken reports a [`Violation`] naming the node(s), the epoch (term, view,
//! ballot), the position (index, sequence number, slot) and the event that
//! broke it.
//!
//! This crate names no protocol: the invariants of a protocol and its event
//! type live in the protocol's crate (`consensus_raft::safety`,
//! `consensus_paxos::safety`, `consensus_pbft::safety`).
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `event.rs` | [`SafetyEvent`], the [`ProtocolEvent`] trait, [`NoProtocolEvents`] |
//! | `violation.rs` | [`Violation`], [`Epoch`], [`Position`] |
//! | `checker.rs` | the [`Invariant`] trait, [`EventKinds`], the pure [`SafetyChecker`], [`SharedChecker`] |
//! | `verifier.rs` | the [`SafetyVerifier`] actor, its messages and the [`SafetySink`] handle |
//!
//! # Use
//!
//! A protocol defines its events and invariants; a user adds their own
//! invariant next to them:
//!
//! ```
//! use consensus_actors::safety::{
//!     EventKinds, Invariant, NoProtocolEvents, SafetyChecker, SafetyEvent, Violation,
//! };
//! use consensus_actors::types::NodeId;
//!
//! /// Node 9 must never lead.
//! struct Node9NeverLeads;
//!
//! impl Invariant<NoProtocolEvents> for Node9NeverLeads {
//!     fn name(&self) -> &'static str {
//!         "node9-never-leads"
//!     }
//!     fn observe(&mut self, at_us: u64, ev: &SafetyEvent<NoProtocolEvents>, out: &mut Vec<Violation>) {
//!         if let SafetyEvent::BecameLeader { node: NodeId(9), .. } = ev {
//!             out.push(Violation::new(self.name(), at_us, ev, "n9 led").with_nodes([NodeId(9)]));
//!         }
//!     }
//!     fn event_kinds(&self) -> EventKinds {
//!         EventKinds::BECAME_LEADER
//!     }
//! }
//!
//! let mut checker = SafetyChecker::new().with(Box::new(Node9NeverLeads));
//! checker.observe(10, &SafetyEvent::BecameLeader { node: NodeId(1), epoch: 1 });
//! assert!(checker.is_ok());
//! let found = checker.observe(20, &SafetyEvent::BecameLeader { node: NodeId(9), epoch: 2 });
//! assert_eq!(found[0].invariant, "node9-never-leads");
//! ```
//!
//! # What emitters must report
//!
//! Every protocol reports [`SafetyEvent::BecameLeader`] when a node starts
//! leading an epoch (Raft term, PBFT view, Paxos ballot round) and
//! [`SafetyEvent::SteppedDown`] when it stops; the runtime reports
//! [`SafetyEvent::Crashed`] when a node loses its volatile state. What a
//! protocol must report of its own is documented with its event type.
//! Digests must be computed the same way on every path, e.g.
//! `digest_of(&entry.command)`.

mod checker;
mod event;
mod verifier;
mod violation;

pub use checker::{
    EventKinds, Invariant, SafetyChecker, SafetyReport, SharedChecker, DEFAULT_VIOLATION_LIMIT,
};
pub use event::{fmt_digest, EpochLabel, NoProtocolEvents, ProtocolEvent, SafetyEvent};
pub use verifier::{
    GetSafetyReport, GetViolations, Observe, SafetySink, SafetyVerifier, SubscribeViolations,
    ViolationFound,
};
pub use violation::{Epoch, Position, Violation};

use serde::Serialize;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a (64 bit) of `bytes`: a stable hash, the same in every process and
/// on every platform (unlike `std`'s randomly keyed `DefaultHasher`).
pub fn digest_bytes(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// An `io::Write` that folds the bytes it receives into an FNV-1a hash, so
/// a value is hashed while it is encoded, without a buffer.
struct FnvWriter(u64);

impl std::io::Write for FnvWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for b in buf {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The digest that stands for `value` in [`SafetyEvent`]s: FNV-1a (64 bit)
/// of its MessagePack (rmp-serde) encoding. Equal values have equal digests
/// in every process and every run, as long as their encoding is
/// deterministic (no `HashMap` inside).
///
/// A value whose `Serialize` implementation fails (derived implementations
/// never do) gets the digest of the bytes written before the failure, mixed
/// with a marker, so it is still deterministic.
pub fn digest_of<T: Serialize + ?Sized>(value: &T) -> u64 {
    let mut writer = FnvWriter(FNV_OFFSET);
    match rmp_serde::encode::write(&mut writer, value) {
        Ok(()) => writer.0,
        Err(_) => writer.0 ^ 0x8000_0000_0000_0001,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvCommand;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(digest_bytes(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest_bytes(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(digest_bytes(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn digest_of_hashes_the_messagepack_encoding() {
        let cmd = KvCommand::put("k", "v");
        let bytes = rmp_serde::to_vec(&cmd).unwrap();
        assert_eq!(digest_of(&cmd), digest_bytes(&bytes));
        assert_eq!(digest_of(&cmd), digest_of(&cmd.clone()));
        assert_ne!(digest_of(&cmd), digest_of(&KvCommand::put("k", "w")));
        // A fixed value has a fixed digest in every process and every build.
        assert_eq!(digest_of(&7u64), digest_bytes(&[7]));
    }
}
