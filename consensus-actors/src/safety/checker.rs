//! The pluggable invariant interface and the pure, synchronous checker that
//! runs a set of invariants over an event stream.

use super::{
    PaxosAgreement, PaxosPromisesKept, PbftAgreement, PbftPreparedAgreement, RaftElectionSafety,
    RaftEvent, RaftLeaderAppendOnly, RaftLeaderCompleteness, RaftLogMatching, RaftLogs,
    RaftStateMachineSafety, SafetyEvent, Violation,
};
use crate::types::ConsensusProtocol;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// A safety property checked as events happen.
///
/// An invariant keeps whatever state it needs, sees every event in order
/// and pushes a [`Violation`] to `out` for each way the event breaks its
/// property. It ignores events of other protocols. Implement it to check
/// your own properties and add it with [`SafetyChecker::add`].
pub trait Invariant: Send {
    /// A short kebab-case name, e.g. `raft-log-matching`; used as
    /// [`Violation::invariant`].
    fn name(&self) -> &'static str;

    /// Observes one event that happened at `at_us` (microseconds).
    fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>);

    /// Observes one event together with the checker's shared mirror of
    /// every node's Raft log, `logs`, as it was just before the event (the
    /// checker updates it once every invariant has seen the event).
    /// Invariants that read node logs implement this and
    /// [`uses_raft_logs`](Self::uses_raft_logs) so that one mirror serves
    /// them all; the default ignores `logs` and calls
    /// [`observe`](Self::observe).
    fn observe_with_logs(
        &mut self,
        at_us: u64,
        ev: &SafetyEvent,
        logs: &RaftLogs,
        out: &mut Vec<Violation>,
    ) {
        let _ = logs;
        self.observe(at_us, ev, out);
    }

    /// True when [`observe_with_logs`](Self::observe_with_logs) reads the
    /// shared mirror (a checker keeps the mirror only if one of its
    /// invariants does).
    fn uses_raft_logs(&self) -> bool {
        false
    }

    /// The kinds of event the invariant reacts to; a
    /// [`SafetyChecker`] shows it no others (it saves a call per event
    /// the invariant would ignore). It must include every kind that can
    /// change the invariant's state or produce a violation. The default is
    /// every kind.
    fn event_kinds(&self) -> EventKinds {
        EventKinds::ALL
    }
}

/// A set of [`SafetyEvent`] kinds (one per Raft event variant, plus
/// crashes, Paxos events and PBFT events); see
/// [`Invariant::event_kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKinds(u32);

impl EventKinds {
    /// Every kind.
    pub const ALL: Self = Self(u32::MAX);
    /// No kind.
    pub const NONE: Self = Self(0);
    /// [`RaftEvent::BecameLeader`].
    pub const BECAME_LEADER: Self = Self(1 << 0);
    /// [`RaftEvent::SteppedDown`].
    pub const STEPPED_DOWN: Self = Self(1 << 1);
    /// [`RaftEvent::Appended`].
    pub const APPENDED: Self = Self(1 << 2);
    /// [`RaftEvent::AppendedBatch`].
    pub const APPENDED_BATCH: Self = Self(1 << 3);
    /// [`RaftEvent::Truncated`].
    pub const TRUNCATED: Self = Self(1 << 4);
    /// [`RaftEvent::CommitAdvanced`].
    pub const COMMIT_ADVANCED: Self = Self(1 << 5);
    /// [`RaftEvent::Applied`].
    pub const APPLIED: Self = Self(1 << 6);
    /// [`RaftEvent::AppliedBatch`].
    pub const APPLIED_BATCH: Self = Self(1 << 7);
    /// [`RaftEvent::Committed`].
    pub const COMMITTED: Self = Self(1 << 8);
    /// [`RaftEvent::SnapshotInstalled`].
    pub const SNAPSHOT_INSTALLED: Self = Self(1 << 9);
    /// [`SafetyEvent::Crashed`].
    pub const CRASHED: Self = Self(1 << 10);
    /// Every [`SafetyEvent::Paxos`] event.
    pub const PAXOS: Self = Self(1 << 11);
    /// Every [`SafetyEvent::Pbft`] event.
    pub const PBFT: Self = Self(1 << 12);

    /// The kinds in `self` or `other`.
    #[must_use]
    pub const fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The kind of `ev`.
    pub fn of(ev: &SafetyEvent) -> Self {
        match ev {
            SafetyEvent::Raft(r) => match r {
                RaftEvent::BecameLeader { .. } => Self::BECAME_LEADER,
                RaftEvent::SteppedDown { .. } => Self::STEPPED_DOWN,
                RaftEvent::Appended { .. } => Self::APPENDED,
                RaftEvent::AppendedBatch { .. } => Self::APPENDED_BATCH,
                RaftEvent::Truncated { .. } => Self::TRUNCATED,
                RaftEvent::CommitAdvanced { .. } => Self::COMMIT_ADVANCED,
                RaftEvent::Applied { .. } => Self::APPLIED,
                RaftEvent::AppliedBatch { .. } => Self::APPLIED_BATCH,
                RaftEvent::Committed { .. } => Self::COMMITTED,
                RaftEvent::SnapshotInstalled { .. } => Self::SNAPSHOT_INSTALLED,
            },
            SafetyEvent::Crashed { .. } => Self::CRASHED,
            SafetyEvent::Paxos(_) => Self::PAXOS,
            SafetyEvent::Pbft(_) => Self::PBFT,
        }
    }

    /// True when every kind in `other` is in `self` (`other` is usually one
    /// kind, from [`of`](Self::of)).
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when `self` and `other` share a kind.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

/// How many violations a checker keeps by default; more are counted but not
/// stored, so a badly broken run cannot exhaust memory.
pub const DEFAULT_VIOLATION_LIMIT: usize = 1000;

/// Runs a set of [`Invariant`]s over an event stream. Pure: no clock, no
/// actor, no I/O; the caller says when each event happened.
///
/// The checker keeps one mirror of every node's Raft log ([`RaftLogs`]) for
/// all the invariants that read logs, rather than one each: every event is
/// shown to every invariant with the mirror as it was before the event,
/// then applied to the mirror once.
pub struct SafetyChecker {
    invariants: Vec<Box<dyn Invariant>>,
    /// `kinds[k]` is what `invariants[k]` reacts to
    /// ([`Invariant::event_kinds`], read once when it is added).
    kinds: Vec<EventKinds>,
    /// The shared mirror, kept when some invariant reads it.
    logs: Option<RaftLogs>,
    violations: Vec<Violation>,
    violation_count: u64,
    violation_limit: usize,
    events_observed: u64,
    fresh: Vec<Violation>,
}

impl Default for SafetyChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SafetyChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetyChecker")
            .field("invariants", &self.invariant_names())
            .field("events_observed", &self.events_observed)
            .field("violation_count", &self.violation_count)
            .finish()
    }
}

impl SafetyChecker {
    /// A checker with no invariants.
    pub fn new() -> Self {
        Self {
            invariants: Vec::new(),
            kinds: Vec::new(),
            logs: None,
            violations: Vec::new(),
            violation_count: 0,
            violation_limit: DEFAULT_VIOLATION_LIMIT,
            events_observed: 0,
            fresh: Vec::new(),
        }
    }

    /// Adds the Raft invariants: Election Safety, Leader Append-Only, Log
    /// Matching, Leader Completeness and State Machine Safety (Figure 3 of
    /// the Raft paper).
    #[must_use]
    pub fn with_raft(self) -> Self {
        self.with(Box::new(RaftElectionSafety::default()))
            .with(Box::new(RaftLeaderAppendOnly::default()))
            .with(Box::new(RaftLogMatching::default()))
            .with(Box::new(RaftLeaderCompleteness::default()))
            .with(Box::new(RaftStateMachineSafety::default()))
    }

    /// Adds the Paxos invariants: agreement (one value chosen per slot,
    /// judged from learners' `Chosen` reports and P2b) and promises kept
    /// (P1a).
    #[must_use]
    pub fn with_paxos(self) -> Self {
        self.with(Box::new(PaxosAgreement::default()))
            .with(Box::new(PaxosPromisesKept::default()))
    }

    /// Like [`with_paxos`](Self::with_paxos), but knowing there are
    /// `acceptors` acceptors, agreement also infers which values are chosen
    /// from the acceptors' `Accepted` reports (a majority at one ballot),
    /// without waiting for a learner.
    #[must_use]
    pub fn with_paxos_acceptors(self, acceptors: usize) -> Self {
        self.with(Box::new(PaxosAgreement::with_acceptors(acceptors)))
            .with(Box::new(PaxosPromisesKept::default()))
    }

    /// Adds the PBFT invariants: correct replicas commit one request per
    /// sequence number in any view, and prepare one per view and sequence
    /// number.
    #[must_use]
    pub fn with_pbft(self) -> Self {
        self.with(Box::new(PbftAgreement::default()))
            .with(Box::new(PbftPreparedAgreement::default()))
    }

    /// A checker with the invariants of `protocol` (Multi-Paxos gets the
    /// Paxos ones).
    pub fn for_protocol(protocol: ConsensusProtocol) -> Self {
        match protocol {
            ConsensusProtocol::Raft => Self::new().with_raft(),
            ConsensusProtocol::Paxos | ConsensusProtocol::MultiPaxos => Self::new().with_paxos(),
            ConsensusProtocol::Pbft => Self::new().with_pbft(),
        }
    }

    /// Adds an invariant (builder style).
    #[must_use]
    pub fn with(mut self, invariant: Box<dyn Invariant>) -> Self {
        self.add(invariant);
        self
    }

    /// Adds an invariant.
    pub fn add(&mut self, invariant: Box<dyn Invariant>) {
        // An invariant that reads logs sees them from the first event the
        // checker observes on (add invariants before feeding events).
        if invariant.uses_raft_logs() && self.logs.is_none() {
            self.logs = Some(RaftLogs::default());
        }
        self.kinds.push(invariant.event_kinds());
        self.invariants.push(invariant);
    }

    /// Keeps at most `limit` violations (the first ones); later ones are
    /// only counted.
    #[must_use]
    pub fn with_violation_limit(mut self, limit: usize) -> Self {
        self.violation_limit = limit;
        self
    }

    /// Feeds one event, observed at `at_us`, to every invariant. Returns the
    /// violations this event caused (empty almost always).
    pub fn observe(&mut self, at_us: u64, ev: &SafetyEvent) -> &[Violation] {
        self.events_observed += 1;
        self.fresh.clear();
        let kind = EventKinds::of(ev);
        let interested = self
            .invariants
            .iter_mut()
            .zip(&self.kinds)
            .filter(|(_, kinds)| kinds.intersects(kind))
            .map(|(invariant, _)| invariant);
        match &mut self.logs {
            Some(logs) => {
                for invariant in interested {
                    invariant.observe_with_logs(at_us, ev, logs, &mut self.fresh);
                }
                logs.apply(ev);
            }
            None => {
                for invariant in interested {
                    invariant.observe(at_us, ev, &mut self.fresh);
                }
            }
        }
        for v in &self.fresh {
            tracing::error!(violation = %v, "safety violation");
            self.violation_count += 1;
            if self.violations.len() < self.violation_limit {
                self.violations.push(v.clone());
            }
        }
        &self.fresh
    }

    /// The violations found so far (at most the limit; see
    /// [`violation_count`](Self::violation_count)).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// How many violations were found, including those beyond the limit.
    pub fn violation_count(&self) -> u64 {
        self.violation_count
    }

    /// True when no invariant has been violated.
    pub fn is_ok(&self) -> bool {
        self.violation_count == 0
    }

    /// How many events were observed.
    pub fn events_observed(&self) -> u64 {
        self.events_observed
    }

    /// The shared mirror of every node's Raft log, if some invariant reads
    /// it.
    pub fn raft_logs(&self) -> Option<&RaftLogs> {
        self.logs.as_ref()
    }

    /// The names of the invariants, in the order they run.
    pub fn invariant_names(&self) -> Vec<&'static str> {
        self.invariants.iter().map(|i| i.name()).collect()
    }

    /// A serializable summary (for the `consensus` program's JSON).
    pub fn report(&self) -> SafetyReport {
        SafetyReport {
            ok: self.is_ok(),
            events_observed: self.events_observed,
            violation_count: self.violation_count,
            invariants: self
                .invariant_names()
                .into_iter()
                .map(str::to_string)
                .collect(),
            violations: self.violations.clone(),
        }
    }
}

/// What a checker found, in a form ready for JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyReport {
    /// True when no invariant was violated.
    pub ok: bool,
    /// Events observed.
    pub events_observed: u64,
    /// Violations found (including any beyond the stored limit).
    pub violation_count: u64,
    /// The invariants checked.
    pub invariants: Vec<String>,
    /// The stored violations, in the order found.
    pub violations: Vec<Violation>,
}

/// A [`SafetyChecker`] shared by every node of an in-process cluster, for
/// direct synchronous checking without messages (see
/// [`SafetySink::local`](super::SafetySink::local)). Cloning is cheap.
#[derive(Clone, Default)]
pub struct SharedChecker(Arc<Mutex<SafetyChecker>>);

impl fmt::Debug for SharedChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lock().fmt(f)
    }
}

impl SharedChecker {
    /// Shares `checker`.
    pub fn new(checker: SafetyChecker) -> Self {
        Self(Arc::new(Mutex::new(checker)))
    }

    /// Locks the checker. A panic inside an invariant while it was locked
    /// does not make the checker unusable (its state is still consistent
    /// per event).
    pub fn lock(&self) -> MutexGuard<'_, SafetyChecker> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Feeds one event; returns how many violations it caused.
    pub fn observe(&self, at_us: u64, ev: &SafetyEvent) -> usize {
        self.lock().observe(at_us, ev).len()
    }

    /// A copy of the violations found so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.lock().violations().to_vec()
    }

    /// True when no invariant has been violated.
    pub fn is_ok(&self) -> bool {
        self.lock().is_ok()
    }

    /// A serializable summary.
    pub fn report(&self) -> SafetyReport {
        self.lock().report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::{PaxosEvent, RaftEvent};
    use crate::types::{Ballot, NodeId, Slot, Term};

    /// A user-defined invariant: node 9 must never do anything.
    struct Node9StaysQuiet;

    impl Invariant for Node9StaysQuiet {
        fn name(&self) -> &'static str {
            "node9-quiet"
        }

        fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>) {
            if let SafetyEvent::Raft(r) = ev {
                if r.node() == NodeId(9) {
                    out.push(
                        Violation::new(self.name(), at_us, ev, "n9 spoke").with_nodes([NodeId(9)]),
                    );
                }
            }
        }
    }

    fn leader(node: u64, term: u64) -> SafetyEvent {
        RaftEvent::BecameLeader {
            node: NodeId(node),
            term: Term(term),
        }
        .into()
    }

    /// Counts the events it is shown; reacts only to leader changes.
    #[derive(Default)]
    struct CountsLeaders(std::sync::Arc<std::sync::atomic::AtomicU64>);

    impl Invariant for CountsLeaders {
        fn name(&self) -> &'static str {
            "counts-leaders"
        }

        fn observe(&mut self, _: u64, _: &SafetyEvent, _: &mut Vec<Violation>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }

        fn event_kinds(&self) -> EventKinds {
            EventKinds::BECAME_LEADER.or(EventKinds::CRASHED)
        }
    }

    /// A checker shows an invariant only the kinds of event it asked for,
    /// with and without the shared log mirror.
    #[test]
    fn invariants_see_only_the_event_kinds_they_react_to() {
        let append: SafetyEvent = RaftEvent::AppendedBatch {
            node: NodeId(1),
            first_index: crate::types::LogIndex(1),
            entries: vec![(Term(1), 7)],
        }
        .into();
        let crash = SafetyEvent::Crashed { node: NodeId(1) };
        assert_eq!(EventKinds::of(&append), EventKinds::APPENDED_BATCH);
        assert!(EventKinds::ALL.contains(EventKinds::of(&crash)));
        assert!(!EventKinds::NONE.intersects(EventKinds::of(&crash)));
        for with_raft in [false, true] {
            let seen = CountsLeaders::default();
            let count = seen.0.clone();
            let mut c = SafetyChecker::new();
            if with_raft {
                c = c.with_raft();
            }
            c.add(Box::new(seen));
            for ev in [&append, &leader(1, 1), &append, &crash, &leader(2, 2)] {
                c.observe(0, ev);
            }
            assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 3);
            assert_eq!(c.events_observed(), 5);
        }
    }

    #[test]
    fn protocol_sets_hold_the_documented_invariants() {
        assert_eq!(
            SafetyChecker::for_protocol(ConsensusProtocol::Raft).invariant_names(),
            vec![
                "raft-election-safety",
                "raft-leader-append-only",
                "raft-log-matching",
                "raft-leader-completeness",
                "raft-state-machine-safety"
            ]
        );
        assert_eq!(
            SafetyChecker::for_protocol(ConsensusProtocol::MultiPaxos).invariant_names(),
            vec!["paxos-agreement", "paxos-promises-kept"]
        );
        assert_eq!(
            SafetyChecker::for_protocol(ConsensusProtocol::Pbft).invariant_names(),
            vec!["pbft-agreement", "pbft-prepared-agreement"]
        );
    }

    #[test]
    fn user_invariants_plug_in_next_to_the_built_in_ones() {
        let mut c = SafetyChecker::new()
            .with_raft()
            .with(Box::new(Node9StaysQuiet));
        assert!(c.observe(1, &leader(1, 1)).is_empty());
        let found = c.observe(2, &leader(9, 1));
        let names: Vec<&str> = found.iter().map(|v| v.invariant.as_str()).collect();
        assert_eq!(names, vec!["raft-election-safety", "node9-quiet"]);
        assert_eq!(c.violation_count(), 2);
        assert_eq!(c.events_observed(), 2);
        assert!(!c.is_ok());
    }

    #[test]
    fn invariants_ignore_other_protocols_events() {
        let mut c = SafetyChecker::new().with_raft().with_pbft();
        // Two learners disagreeing about a Paxos slot is not Raft's business.
        for node in [1, 2] {
            c.observe(
                1,
                &PaxosEvent::Chosen {
                    node: NodeId(node),
                    slot: Slot(1),
                    ballot: Ballot::new(1, NodeId(node)),
                    digest: node,
                }
                .into(),
            );
        }
        assert!(c.is_ok());
    }

    #[test]
    fn violations_beyond_the_limit_are_counted_not_stored() {
        let mut c = SafetyChecker::new().with_raft().with_violation_limit(2);
        c.observe(0, &leader(1, 1));
        for node in 2..=5 {
            assert_eq!(c.observe(node, &leader(node, 1)).len(), 1);
        }
        assert_eq!(c.violation_count(), 4);
        assert_eq!(c.violations().len(), 2);
        assert_eq!(c.violations()[0].at_us, 2);
        let report = c.report();
        assert!(!report.ok);
        assert_eq!(report.violation_count, 4);
        assert_eq!(report.events_observed, 5);
        assert_eq!(report.violations.len(), 2);
    }

    #[test]
    fn raft_invariants_share_one_log_mirror_updated_after_every_event() {
        use crate::types::LogIndex;
        assert!(SafetyChecker::for_protocol(ConsensusProtocol::Pbft)
            .raft_logs()
            .is_none());
        let mut c = SafetyChecker::new().with_raft();
        let entries = vec![(Term(1), 10), (Term(1), 11)];
        let batch = RaftEvent::AppendedBatch {
            node: NodeId(1),
            first_index: LogIndex(1),
            entries,
        };
        assert!(c.observe(1, &leader(1, 1)).is_empty());
        assert!(c.observe(2, &batch.into()).is_empty());
        let commit = RaftEvent::CommitAdvanced {
            node: NodeId(1),
            term: Term(1),
            commit_index: LogIndex(2),
        };
        assert!(c.observe(3, &commit.into()).is_empty());
        let log = c.raft_logs().unwrap().get(NodeId(1)).unwrap();
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
        let truncate = RaftEvent::Truncated {
            node: NodeId(1),
            from_index: LogIndex(2),
        };
        let found = c.observe(5, &truncate.into());
        let names: Vec<&str> = found.iter().map(|v| v.invariant.as_str()).collect();
        assert_eq!(
            names,
            vec!["raft-leader-append-only", "raft-state-machine-safety"]
        );
        let log = c.raft_logs().unwrap().get(NodeId(1)).unwrap();
        assert_eq!(log.last_index(), LogIndex(1));
    }

    #[test]
    fn a_shared_checker_is_one_checker_behind_many_handles() {
        let shared = SharedChecker::new(SafetyChecker::new().with_raft());
        let other = shared.clone();
        assert_eq!(shared.observe(1, &leader(1, 3)), 0);
        assert_eq!(other.observe(2, &leader(2, 3)), 1);
        assert!(!shared.is_ok());
        assert_eq!(shared.violations().len(), 1);
        assert_eq!(shared.report().events_observed, 2);
    }
}
