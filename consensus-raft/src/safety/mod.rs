//! Raft's safety properties (Figure 3 of the Raft paper), checked as the
//! cluster runs by the runtime's [`SafetyChecker`] / `SafetyVerifier`.
//!
//! Raft nodes report [`RaftSafetyEvent`]s (entries written, commit index
//! advanced, entries applied, snapshots installed) and the neutral
//! leadership events ([`became_leader`], [`stepped_down`]). The checker
//! keeps one mirror of every node's log ([`RaftLogs`], the protocol's
//! shared model) for all the invariants that read logs.
//!
//! # Layout
//!
//! | file | what it holds |
//! |---|---|
//! | `event.rs` | [`RaftSafetyEvent`], its event [`kinds`], the neutral-event builders |
//! | `log_mirror.rs` | [`RaftLogs`]: the mirror of every node's Raft log, shared by the invariants |
//! | `election_safety.rs` | Raft §5.2: at most one leader per term |
//! | `leader_append_only.rs` | Raft §5.3: a leader never overwrites or deletes its entries |
//! | `log_matching.rs` | Raft §5.3: same index and term ⇒ identical prefix |
//! | `leader_completeness.rs` | Raft §5.4.1: leaders hold every entry committed in earlier terms |
//! | `state_machine_safety.rs` | Raft §5.4.3: committed and applied entries never change |
//!
//! # Use
//!
//! ```
//! use consensus_actors::safety::digest_of;
//! use consensus_actors::types::{LogIndex, NodeId, Term};
//! use consensus_raft::safety::{became_leader, checker, RaftSafetyEvent};
//!
//! let mut checker = checker();
//! checker.observe(10, &became_leader(NodeId(1), Term(1)));
//! let put = digest_of(&"put x 1");
//! checker.observe(20, &RaftSafetyEvent::Appended { node: NodeId(1), index: LogIndex(1), term: Term(1), digest: put }.into());
//! assert!(checker.is_ok());
//! // A second leader in term 1 breaks Election Safety.
//! let found = checker.observe(30, &became_leader(NodeId(2), Term(1)));
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].invariant, "raft-election-safety");
//! assert!(!checker.is_ok());
//! ```

/// Implements [`Invariant`] for a Raft invariant that reads node logs.
///
/// The type has a field `logs: RaftLogs` (its own mirror, for when it runs
/// alone) and a field holding everything else it remembers; `$check` is
/// called as `$check(&mut self.$state, at_us, ev, logs, out)` with the logs
/// as they were just before the event. Inside a [`SafetyChecker`] the
/// checker's shared mirror is passed instead and the own one stays empty.
macro_rules! raft_log_invariant {
    ($ty:ty, name: $name:expr, state: $state:ident, check: $check:path, kinds: $kinds:expr $(,)?) => {
        impl consensus_actors::safety::Invariant<$crate::safety::RaftSafetyEvent> for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>) {
                $check(&mut self.$state, at_us, ev, &self.logs, out);
                self.logs.apply(ev);
            }

            fn observe_with_model(
                &mut self,
                at_us: u64,
                ev: &SafetyEvent,
                logs: &RaftLogs,
                out: &mut Vec<Violation>,
            ) {
                $check(&mut self.$state, at_us, ev, logs, out);
            }

            fn uses_model(&self) -> bool {
                true
            }

            fn event_kinds(&self) -> EventKinds {
                $kinds
            }
        }
    };
}

mod election_safety;
mod event;
mod index_map;
mod leader_append_only;
mod leader_completeness;
mod log_matching;
mod log_mirror;
#[cfg(test)]
mod scenarios;
mod state_machine_safety;
#[cfg(test)]
mod test_support;

pub use consensus_actors::safety::{Epoch, EventKinds, Invariant, Position, Violation};
pub use election_safety::RaftElectionSafety;
pub use event::{became_leader, stepped_down, AppendedEntries, AppliedEntries, RaftSafetyEvent};
pub use leader_append_only::RaftLeaderAppendOnly;
pub use leader_completeness::RaftLeaderCompleteness;
pub use log_matching::RaftLogMatching;
pub use log_mirror::{AppendOutcome, AppendWalk, EntryWrite, NodeLog, RaftLogs, SnapshotOutcome};
pub use state_machine_safety::RaftStateMachineSafety;

use consensus_actors::types::{LogIndex, Term};

/// A safety event of a Raft cluster: neutral, or a [`RaftSafetyEvent`].
pub type SafetyEvent = consensus_actors::safety::SafetyEvent<RaftSafetyEvent>;

/// A safety checker over Raft's events.
pub type SafetyChecker = consensus_actors::safety::SafetyChecker<RaftSafetyEvent>;

/// Where Raft components report their safety events.
pub type SafetySink = consensus_actors::safety::SafetySink<RaftSafetyEvent>;

/// The kinds of [`RaftSafetyEvent`], for [`Invariant::event_kinds`]. The
/// neutral kinds (`BECAME_LEADER`, `STEPPED_DOWN`, `CRASHED`) are
/// [`EventKinds`]' own.
pub mod kinds {
    use consensus_actors::safety::EventKinds;

    /// [`RaftSafetyEvent::Appended`](super::RaftSafetyEvent::Appended).
    pub const APPENDED: EventKinds = EventKinds::protocol(0);
    /// [`RaftSafetyEvent::AppendedBatch`](super::RaftSafetyEvent::AppendedBatch).
    pub const APPENDED_BATCH: EventKinds = EventKinds::protocol(1);
    /// [`RaftSafetyEvent::Truncated`](super::RaftSafetyEvent::Truncated).
    pub const TRUNCATED: EventKinds = EventKinds::protocol(2);
    /// [`RaftSafetyEvent::CommitAdvanced`](super::RaftSafetyEvent::CommitAdvanced).
    pub const COMMIT_ADVANCED: EventKinds = EventKinds::protocol(3);
    /// [`RaftSafetyEvent::Applied`](super::RaftSafetyEvent::Applied).
    pub const APPLIED: EventKinds = EventKinds::protocol(4);
    /// [`RaftSafetyEvent::AppliedBatch`](super::RaftSafetyEvent::AppliedBatch).
    pub const APPLIED_BATCH: EventKinds = EventKinds::protocol(5);
    /// [`RaftSafetyEvent::Committed`](super::RaftSafetyEvent::Committed).
    pub const COMMITTED: EventKinds = EventKinds::protocol(6);
    /// [`RaftSafetyEvent::SnapshotInstalled`](super::RaftSafetyEvent::SnapshotInstalled).
    pub const SNAPSHOT_INSTALLED: EventKinds = EventKinds::protocol(7);
}

/// The names of Raft's invariants, in the order [`checker`] runs them.
pub const INVARIANTS: [&str; 5] = [
    "raft-election-safety",
    "raft-leader-append-only",
    "raft-log-matching",
    "raft-leader-completeness",
    "raft-state-machine-safety",
];

/// A checker with Raft's invariants: Election Safety, Leader Append-Only,
/// Log Matching, Leader Completeness and State Machine Safety (Figure 3 of
/// the Raft paper), sharing one mirror of every node's log.
pub fn checker() -> SafetyChecker {
    with_raft(SafetyChecker::new())
}

/// Adds Raft's invariants to `checker` (e.g. one that already holds
/// invariants of your own).
pub fn with_raft(checker: SafetyChecker) -> SafetyChecker {
    checker
        .with(Box::new(RaftElectionSafety::default()))
        .with(Box::new(RaftLeaderAppendOnly::default()))
        .with(Box::new(RaftLogMatching::default()))
        .with(Box::new(RaftLeaderCompleteness::default()))
        .with(Box::new(RaftStateMachineSafety::default()))
}

/// A Raft term as a violation's epoch (`t3`).
pub fn term_epoch(term: Term) -> Epoch {
    Epoch::new("term", term)
}

/// A Raft log index as a violation's position (`i7`).
pub fn index_position(index: LogIndex) -> Position {
    Position::new("index", index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::types::NodeId;

    #[test]
    fn the_checker_holds_the_documented_invariants() {
        assert_eq!(checker().invariant_names(), INVARIANTS);
    }

    #[test]
    fn raft_invariants_share_one_log_mirror_updated_after_every_event() {
        let mut c = checker();
        let leader = |n, t| became_leader(NodeId(n), Term(t));
        let entries = vec![(Term(1), 10), (Term(1), 11)];
        let batch = RaftSafetyEvent::AppendedBatch {
            node: NodeId(1),
            first_index: LogIndex(1),
            entries,
        };
        assert!(c.observe(1, &leader(1, 1)).is_empty());
        assert!(c.observe(2, &batch.into()).is_empty());
        let commit = RaftSafetyEvent::CommitAdvanced {
            node: NodeId(1),
            term: Term(1),
            commit_index: LogIndex(2),
        };
        assert!(c.observe(3, &commit.into()).is_empty());
        let log = c.model().unwrap().get(NodeId(1)).unwrap();
        assert_eq!(log.last_index(), LogIndex(2));
        assert_eq!(log.commit_index(), LogIndex(2));
        assert_eq!(log.entry_at(LogIndex(2)), Some((Term(1), 11)));
        // The committed entries are known to Leader Completeness through the
        // shared mirror: node 2, with an empty log, cannot lead term 2.
        let found = c.observe(4, &leader(2, 2));
        let names: Vec<&str> = found.iter().map(|v| v.invariant.as_str()).collect();
        assert_eq!(names, vec!["raft-leader-completeness"]);
        // A truncation of committed entries is seen against the mirror
        // before it is applied.
        let truncate = RaftSafetyEvent::Truncated {
            node: NodeId(1),
            from_index: LogIndex(2),
        };
        let found = c.observe(5, &truncate.into());
        let names: Vec<&str> = found.iter().map(|v| v.invariant.as_str()).collect();
        assert_eq!(
            names,
            vec!["raft-leader-append-only", "raft-state-machine-safety"]
        );
        let log = c.model().unwrap().get(NodeId(1)).unwrap();
        assert_eq!(log.last_index(), LogIndex(1));
    }

    #[test]
    fn epochs_and_positions_print_the_raft_way() {
        let v = Violation::new("x", 1, &became_leader(NodeId(1), Term(3)), "d")
            .with_epoch(term_epoch(Term(3)))
            .with_position(index_position(LogIndex(7)));
        assert_eq!(
            v.to_string(),
            "x at 1us [t3 i7]: d (event: n1 became leader of t3)"
        );
    }
}
