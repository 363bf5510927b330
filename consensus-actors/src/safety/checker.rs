//! The pluggable invariant interface and the pure, synchronous checker that
//! runs a set of invariants over an event stream.

use super::{ProtocolEvent, SafetyEvent, Violation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// A safety property checked as events happen, over the events of one
/// protocol (`E`, see [`ProtocolEvent`]).
///
/// An invariant keeps whatever state it needs, sees every event in order
/// and pushes a [`Violation`] to `out` for each way the event breaks its
/// property. Implement it to check your own properties and add it with
/// [`SafetyChecker::add`].
pub trait Invariant<E: ProtocolEvent>: Send {
    /// A short kebab-case name, e.g. `raft-log-matching`; used as
    /// [`Violation::invariant`].
    fn name(&self) -> &'static str;

    /// Observes one event that happened at `at_us` (microseconds).
    fn observe(&mut self, at_us: u64, ev: &SafetyEvent<E>, out: &mut Vec<Violation>);

    /// Observes one event together with the checker's shared model of the
    /// protocol ([`ProtocolEvent::Model`], e.g. Raft's mirror of every
    /// node's log), as it was just before the event (the checker updates it
    /// once every invariant has seen the event). Invariants that read the
    /// model implement this and [`uses_model`](Self::uses_model) so that
    /// one model serves them all; the default ignores `model` and calls
    /// [`observe`](Self::observe).
    fn observe_with_model(
        &mut self,
        at_us: u64,
        ev: &SafetyEvent<E>,
        model: &E::Model,
        out: &mut Vec<Violation>,
    ) {
        let _ = model;
        self.observe(at_us, ev, out);
    }

    /// True when [`observe_with_model`](Self::observe_with_model) reads the
    /// shared model (a checker keeps the model only if one of its
    /// invariants does).
    fn uses_model(&self) -> bool {
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

/// A set of [`SafetyEvent`] kinds: the three neutral kinds and up to 24
/// kinds a protocol defines for its own events
/// ([`EventKinds::protocol`]); see [`Invariant::event_kinds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKinds(u32);

impl EventKinds {
    /// Every kind.
    pub const ALL: Self = Self(u32::MAX);
    /// No kind.
    pub const NONE: Self = Self(0);
    /// [`SafetyEvent::BecameLeader`].
    pub const BECAME_LEADER: Self = Self(1 << 0);
    /// [`SafetyEvent::SteppedDown`].
    pub const STEPPED_DOWN: Self = Self(1 << 1);
    /// [`SafetyEvent::Crashed`].
    pub const CRASHED: Self = Self(1 << 2);
    /// Every kind of protocol event.
    pub const ALL_PROTOCOL: Self = Self(!0b1111_1111);

    /// The protocol's own kind number `n` (0 to 23). Each protocol numbers
    /// its event kinds itself; kinds of different protocols never meet in
    /// one checker.
    pub const fn protocol(n: u32) -> Self {
        assert!(n < 24, "a protocol has at most 24 event kinds");
        Self(1 << (8 + n))
    }

    /// The kinds in `self` or `other`.
    #[must_use]
    pub const fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The kind of `ev`.
    pub fn of<E: ProtocolEvent>(ev: &SafetyEvent<E>) -> Self {
        match ev {
            SafetyEvent::BecameLeader { .. } => Self::BECAME_LEADER,
            SafetyEvent::SteppedDown { .. } => Self::STEPPED_DOWN,
            SafetyEvent::Crashed { .. } => Self::CRASHED,
            SafetyEvent::Protocol(e) => e.kind(),
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

/// Runs a set of [`Invariant`]s over the event stream of one protocol.
/// Pure: no clock, no actor, no I/O; the caller says when each event
/// happened.
///
/// The checker keeps one shared model of the protocol
/// ([`ProtocolEvent::Model`]) for all the invariants that read it, rather
/// than one each: every event is shown to every invariant with the model as
/// it was before the event, then folded into the model once.
pub struct SafetyChecker<E: ProtocolEvent> {
    invariants: Vec<Box<dyn Invariant<E>>>,
    /// `kinds[k]` is what `invariants[k]` reacts to
    /// ([`Invariant::event_kinds`], read once when it is added).
    kinds: Vec<EventKinds>,
    /// The shared model, kept when some invariant reads it.
    model: Option<E::Model>,
    violations: Vec<Violation>,
    violation_count: u64,
    violation_limit: usize,
    events_observed: u64,
    fresh: Vec<Violation>,
}

impl<E: ProtocolEvent> Default for SafetyChecker<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: ProtocolEvent> fmt::Debug for SafetyChecker<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetyChecker")
            .field("invariants", &self.invariant_names())
            .field("events_observed", &self.events_observed)
            .field("violation_count", &self.violation_count)
            .finish()
    }
}

impl<E: ProtocolEvent> SafetyChecker<E> {
    /// A checker with no invariants.
    pub fn new() -> Self {
        Self {
            invariants: Vec::new(),
            kinds: Vec::new(),
            model: None,
            violations: Vec::new(),
            violation_count: 0,
            violation_limit: DEFAULT_VIOLATION_LIMIT,
            events_observed: 0,
            fresh: Vec::new(),
        }
    }

    /// Adds an invariant (builder style).
    #[must_use]
    pub fn with(mut self, invariant: Box<dyn Invariant<E>>) -> Self {
        self.add(invariant);
        self
    }

    /// Adds an invariant.
    pub fn add(&mut self, invariant: Box<dyn Invariant<E>>) {
        // An invariant that reads the model sees it from the first event the
        // checker observes on (add invariants before feeding events).
        if invariant.uses_model() && self.model.is_none() {
            self.model = Some(E::Model::default());
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
    pub fn observe(&mut self, at_us: u64, ev: &SafetyEvent<E>) -> &[Violation] {
        self.events_observed += 1;
        self.fresh.clear();
        let kind = EventKinds::of(ev);
        let interested = self
            .invariants
            .iter_mut()
            .zip(&self.kinds)
            .filter(|(_, kinds)| kinds.intersects(kind))
            .map(|(invariant, _)| invariant);
        match &mut self.model {
            Some(model) => {
                for invariant in interested {
                    invariant.observe_with_model(at_us, ev, model, &mut self.fresh);
                }
                E::update_model(model, ev);
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

    /// The shared model, if some invariant reads it.
    pub fn model(&self) -> Option<&E::Model> {
        self.model.as_ref()
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
pub struct SharedChecker<E: ProtocolEvent>(Arc<Mutex<SafetyChecker<E>>>);

impl<E: ProtocolEvent> Clone for SharedChecker<E> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<E: ProtocolEvent> Default for SharedChecker<E> {
    fn default() -> Self {
        Self::new(SafetyChecker::new())
    }
}

impl<E: ProtocolEvent> fmt::Debug for SharedChecker<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lock().fmt(f)
    }
}

impl<E: ProtocolEvent> SharedChecker<E> {
    /// Shares `checker`.
    pub fn new(checker: SafetyChecker<E>) -> Self {
        Self(Arc::new(Mutex::new(checker)))
    }

    /// Locks the checker. A panic inside an invariant while it was locked
    /// does not make the checker unusable (its state is still consistent
    /// per event).
    pub fn lock(&self) -> MutexGuard<'_, SafetyChecker<E>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Feeds one event; returns how many violations it caused.
    pub fn observe(&self, at_us: u64, ev: &SafetyEvent<E>) -> usize {
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
    use crate::safety::Epoch;
    use crate::types::NodeId;

    /// A toy protocol: nodes write numbers; its one invariant is that no
    /// node writes a number another node wrote, judged from a shared model
    /// (who wrote what).
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Toy {
        Wrote { node: NodeId, value: u64 },
        Noise,
    }

    impl fmt::Display for Toy {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Toy::Wrote { node, value } => write!(f, "{node} wrote {value}"),
                Toy::Noise => f.write_str("noise"),
            }
        }
    }

    const WROTE: EventKinds = EventKinds::protocol(0);
    const NOISE: EventKinds = EventKinds::protocol(1);

    impl ProtocolEvent for Toy {
        type Model = std::collections::BTreeMap<u64, NodeId>;

        fn kind(&self) -> EventKinds {
            match self {
                Toy::Wrote { .. } => WROTE,
                Toy::Noise => NOISE,
            }
        }

        fn fmt_epoch(epoch: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "round{epoch}")
        }

        fn update_model(model: &mut Self::Model, ev: &SafetyEvent<Self>) {
            if let SafetyEvent::Protocol(Toy::Wrote { node, value }) = ev {
                model.entry(*value).or_insert(*node);
            }
        }
    }

    /// Reads the shared model.
    #[derive(Default)]
    struct UniqueWrites;

    impl Invariant<Toy> for UniqueWrites {
        fn name(&self) -> &'static str {
            "unique-writes"
        }

        fn observe(&mut self, _: u64, _: &SafetyEvent<Toy>, _: &mut Vec<Violation>) {
            unreachable!("the checker passes the model")
        }

        fn observe_with_model(
            &mut self,
            at_us: u64,
            ev: &SafetyEvent<Toy>,
            model: &<Toy as ProtocolEvent>::Model,
            out: &mut Vec<Violation>,
        ) {
            if let SafetyEvent::Protocol(Toy::Wrote { node, value }) = ev {
                if let Some(first) = model.get(value).filter(|first| *first != node) {
                    out.push(
                        Violation::new(self.name(), at_us, ev, format!("{first} wrote it first"))
                            .with_nodes([*first, *node]),
                    );
                }
            }
        }

        fn uses_model(&self) -> bool {
            true
        }

        fn event_kinds(&self) -> EventKinds {
            WROTE
        }
    }

    /// Counts the events it is shown; reacts only to leader changes and
    /// crashes.
    #[derive(Default)]
    struct CountsLeaders(Arc<std::sync::atomic::AtomicU64>);

    impl Invariant<Toy> for CountsLeaders {
        fn name(&self) -> &'static str {
            "counts-leaders"
        }

        fn observe(&mut self, _: u64, _: &SafetyEvent<Toy>, _: &mut Vec<Violation>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }

        fn event_kinds(&self) -> EventKinds {
            EventKinds::BECAME_LEADER.or(EventKinds::CRASHED)
        }
    }

    /// Node 9 must never lead.
    struct Node9NeverLeads;

    impl Invariant<Toy> for Node9NeverLeads {
        fn name(&self) -> &'static str {
            "node9-never-leads"
        }

        fn observe(&mut self, at_us: u64, ev: &SafetyEvent<Toy>, out: &mut Vec<Violation>) {
            if let SafetyEvent::BecameLeader { node, epoch } = ev {
                if *node == NodeId(9) {
                    out.push(
                        Violation::new(self.name(), at_us, ev, "n9 led")
                            .with_nodes([NodeId(9)])
                            .with_epoch(Epoch::of::<Toy>("round", *epoch)),
                    );
                }
            }
        }
    }

    fn leader(node: u64, epoch: u64) -> SafetyEvent<Toy> {
        SafetyEvent::BecameLeader {
            node: NodeId(node),
            epoch,
        }
    }

    fn wrote(node: u64, value: u64) -> SafetyEvent<Toy> {
        SafetyEvent::Protocol(Toy::Wrote {
            node: NodeId(node),
            value,
        })
    }

    /// A checker shows an invariant only the kinds of event it asked for.
    #[test]
    fn invariants_see_only_the_event_kinds_they_react_to() {
        let noise = SafetyEvent::Protocol(Toy::Noise);
        let crash = SafetyEvent::Crashed { node: NodeId(1) };
        assert_eq!(EventKinds::of(&noise), NOISE);
        assert!(EventKinds::ALL.contains(EventKinds::of(&crash)));
        assert!(EventKinds::ALL_PROTOCOL.contains(NOISE));
        assert!(!EventKinds::ALL_PROTOCOL.intersects(EventKinds::CRASHED));
        assert!(!EventKinds::NONE.intersects(EventKinds::of(&crash)));
        for with_model in [false, true] {
            let seen = CountsLeaders::default();
            let count = seen.0.clone();
            let mut c = SafetyChecker::new();
            if with_model {
                c.add(Box::new(UniqueWrites));
            }
            c.add(Box::new(seen));
            for ev in [&noise, &leader(1, 1), &wrote(1, 5), &crash, &leader(2, 2)] {
                c.observe(0, ev);
            }
            assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 3);
            assert_eq!(c.events_observed(), 5);
            assert_eq!(c.model().is_some(), with_model);
        }
    }

    /// The model is shown to invariants as it was before the event, and
    /// updated once after it.
    #[test]
    fn invariants_share_one_model_updated_after_every_event() {
        let mut c = SafetyChecker::new().with(Box::new(UniqueWrites));
        assert!(c.observe(1, &wrote(1, 7)).is_empty());
        assert!(
            c.observe(2, &wrote(1, 7)).is_empty(),
            "the same writer again"
        );
        assert_eq!(c.model().unwrap().get(&7), Some(&NodeId(1)));
        let found = c.observe(3, &wrote(2, 7));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].nodes, vec![NodeId(1), NodeId(2)]);
        assert_eq!(found[0].event, "n2 wrote 7");
    }

    #[test]
    fn user_invariants_plug_in_next_to_others() {
        let mut c = SafetyChecker::new()
            .with(Box::new(UniqueWrites))
            .with(Box::new(Node9NeverLeads));
        assert_eq!(
            c.invariant_names(),
            vec!["unique-writes", "node9-never-leads"]
        );
        assert!(c.observe(1, &leader(1, 1)).is_empty());
        let found = c.observe(2, &leader(9, 3));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].to_string(),
            "node9-never-leads at 2us [round3] n9: n9 led (event: n9 became leader of round3)"
        );
        assert_eq!(c.violation_count(), 1);
        assert!(!c.is_ok());
    }

    #[test]
    fn violations_beyond_the_limit_are_counted_not_stored() {
        let mut c = SafetyChecker::new()
            .with(Box::new(Node9NeverLeads))
            .with_violation_limit(2);
        c.observe(0, &leader(1, 1));
        for t in 2..=5 {
            assert_eq!(c.observe(t, &leader(9, t)).len(), 1);
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
    fn a_shared_checker_is_one_checker_behind_many_handles() {
        let shared = SharedChecker::new(SafetyChecker::new().with(Box::new(UniqueWrites)));
        let other = shared.clone();
        assert_eq!(shared.observe(1, &wrote(1, 3)), 0);
        assert_eq!(other.observe(2, &wrote(2, 3)), 1);
        assert!(!shared.is_ok());
        assert_eq!(shared.violations().len(), 1);
        assert_eq!(shared.report().events_observed, 2);
    }
}
