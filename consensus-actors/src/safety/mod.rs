//! Safety checking: the [`SafetyVerifier`] and the invariants of Raft, Paxos
//! and PBFT, checked as the cluster runs.
//!
//! Protocol actors report what they do as compact [`SafetyEvent`]s (a leader
//! elected, entries written, a commit index advanced, a value chosen, a
//! request committed) through a [`SafetySink`]. Commands are never copied:
//! an event carries a `u64` [digest](digest_of) of the command. A
//! [`SafetyChecker`] feeds every event to a pluggable set of [`Invariant`]s;
//! an invariant that sees its property broken reports a [`Violation`] naming
//! the node(s), the term / view / ballot, the index / sequence number / slot
//! and the event that broke it.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `event.rs` | [`SafetyEvent`], [`RaftEvent`], [`PaxosEvent`], [`PbftEvent`] |
//! | `violation.rs` | [`Violation`], [`Epoch`], [`Position`] |
//! | `checker.rs` | the [`Invariant`] trait, the pure [`SafetyChecker`], [`SharedChecker`] |
//! | `verifier.rs` | the [`SafetyVerifier`] actor, its messages and the [`SafetySink`] handle |
//! | `raft_log.rs` | [`RaftLogs`]: the mirror of every node's Raft log, shared by the checker's invariants |
//! | `raft_election_safety.rs` | Raft §5.2: at most one leader per term |
//! | `raft_leader_append_only.rs` | Raft §5.3: a leader never overwrites or deletes its entries |
//! | `raft_log_matching.rs` | Raft §5.3: same index and term ⇒ identical prefix |
//! | `raft_leader_completeness.rs` | Raft §5.4.1: leaders hold every entry committed in earlier terms |
//! | `raft_state_machine_safety.rs` | Raft §5.4.3: committed and applied entries never change |
//! | `paxos_agreement.rs` | Paxos Made Simple §2.1/§2.2 (P2b): one value chosen per slot |
//! | `paxos_promises.rs` | Paxos Made Simple §2.2 (P1a): acceptors keep their promises |
//! | `pbft_agreement.rs` | PBFT (OSDI'99) §4.2/§4.4: correct replicas commit one request per sequence number |
//! | `pbft_prepared.rs` | PBFT (OSDI'99) §4.2: correct replicas prepare one request per view and sequence number |
//!
//! # Use
//!
//! ```
//! use consensus_actors::safety::{digest_of, RaftEvent, SafetyChecker};
//! use consensus_actors::types::{LogIndex, NodeId, Term};
//!
//! let mut checker = SafetyChecker::new().with_raft();
//! checker.observe(10, &RaftEvent::BecameLeader { node: NodeId(1), term: Term(1) }.into());
//! let put = digest_of(&"put x 1");
//! checker.observe(20, &RaftEvent::Appended { node: NodeId(1), index: LogIndex(1), term: Term(1), digest: put }.into());
//! assert!(checker.is_ok());
//! // A second leader in term 1 breaks Election Safety.
//! let found = checker.observe(30, &RaftEvent::BecameLeader { node: NodeId(2), term: Term(1) }.into());
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].invariant, "raft-election-safety");
//! assert!(!checker.is_ok());
//! ```
//!
//! # What emitters must report, and when
//!
//! * **Raft.** `Appended`/`AppendedBatch` once the entries are in the node's
//!   log (durable, or followed by `Truncated` on recovery for what a crash
//!   lost); an `Appended` at an index that holds an entry of another term
//!   implicitly truncates from there, as in the paper. `CommitAdvanced`
//!   whenever the node's commit index grows, with the node's current term;
//!   `Applied` (or one `AppliedBatch` per commit advance) after
//!   `CommitAdvanced` for that index; a node that applies as it commits
//!   reports both at once as one `Committed`; `SteppedDown` when a
//!   leader leaves leadership; `SnapshotInstalled` both for a snapshot
//!   received from the leader and for the node compacting its own log.
//!   [`SafetyEvent::Crashed`] when the node loses its volatile state; its log
//!   mirror is kept (durable state survives a crash).
//! * **Paxos / Multi-Paxos.** `Promised` for every promise an acceptor makes
//!   (promises cover every slot), `Accepted` for every accepted proposal,
//!   `Chosen` whenever a learner learns a value. Single-decree Paxos uses one
//!   slot (any fixed number).
//! * **PBFT.** `Prepared` when a replica's `prepared` predicate becomes true,
//!   `Committed` when `committed-local` does, and `ByzantineReplicas` (once,
//!   before anything else) for replicas that are faulty on purpose.
//!
//! Digests must be computed the same way on every path, e.g.
//! `digest_of(&entry.command)` for Raft entries and applied commands.

/// Implements [`Invariant`] for a Raft invariant that reads node logs.
///
/// The type has a field `logs: RaftLogs` (its own mirror, for when it runs
/// alone) and a field holding everything else it remembers; `$check` is
/// called as `$check(&mut self.$state, at_us, ev, logs, out)` with the logs
/// as they were just before the event. Inside a [`SafetyChecker`] the
/// checker's shared mirror is passed instead and the own one stays empty.
macro_rules! raft_log_invariant {
    ($ty:ty, name: $name:expr, state: $state:ident, check: $check:path, kinds: $kinds:expr $(,)?) => {
        impl $crate::safety::Invariant for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>) {
                $check(&mut self.$state, at_us, ev, &self.logs, out);
                self.logs.apply(ev);
            }

            fn observe_with_logs(
                &mut self,
                at_us: u64,
                ev: &SafetyEvent,
                logs: &RaftLogs,
                out: &mut Vec<Violation>,
            ) {
                $check(&mut self.$state, at_us, ev, logs, out);
            }

            fn uses_raft_logs(&self) -> bool {
                true
            }

            fn event_kinds(&self) -> $crate::safety::EventKinds {
                $kinds
            }
        }
    };
}

mod checker;
mod event;
mod index_map;
mod paxos_agreement;
mod paxos_promises;
mod pbft_agreement;
mod pbft_prepared;
mod raft_election_safety;
mod raft_leader_append_only;
mod raft_leader_completeness;
mod raft_log;
mod raft_log_matching;
mod raft_state_machine_safety;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod test_support;
mod verifier;
mod violation;

pub use checker::{
    EventKinds, Invariant, SafetyChecker, SafetyReport, SharedChecker, DEFAULT_VIOLATION_LIMIT,
};
pub use event::{AppendedEntries, AppliedEntries, PaxosEvent, PbftEvent, RaftEvent, SafetyEvent};
pub use paxos_agreement::PaxosAgreement;
pub use paxos_promises::PaxosPromisesKept;
pub use pbft_agreement::PbftAgreement;
pub use pbft_prepared::PbftPreparedAgreement;
pub use raft_election_safety::RaftElectionSafety;
pub use raft_leader_append_only::RaftLeaderAppendOnly;
pub use raft_leader_completeness::RaftLeaderCompleteness;
pub use raft_log::{AppendOutcome, AppendWalk, EntryWrite, NodeLog, RaftLogs, SnapshotOutcome};
pub use raft_log_matching::RaftLogMatching;
pub use raft_state_machine_safety::RaftStateMachineSafety;
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
