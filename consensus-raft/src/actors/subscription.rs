//! The owner's event stream: the contract between the LogReplicator (the
//! owner of term, vote and log) and every other component, stock or not.
//!
//! A component subscribes by sending the owner a [`Subscribe`] (through
//! [`OwnerHandles::subscribe`](super::OwnerHandles::subscribe)) when it
//! starts, and again whenever it restarts. It names the [`RaftEvents`]
//! recipient to deliver to and what it wants ([`Interest`]: event kinds,
//! which [`RaftEvent::Progress`] events, and optionally a [`LeaderContact`]
//! for repeated contacts from the leader). Then:
//!
//! 1. the owner first sends the subscriber its current state (a
//!    `RoleChanged`, a `MembershipChanged` and a `Progress`, filtered by the
//!    interest), **through the same channel as every later event**, so the
//!    state cannot overtake an event nor be overtaken by one: a subscriber
//!    that applies its events in arrival order always ends with the owner's
//!    newest state. (A resynchronisation through a separate request and
//!    reply could be applied after newer events and slide the copy back.)
//! 2. after every step the owner sends each subscriber the events it asked
//!    for, in order, in one [`RaftEvents`] message at most.
//! 3. a subscription with the same name replaces the previous one (a
//!    restarted component subscribes again under its name); the owner keeps
//!    the subscriptions across its own restarts and resends every
//!    subscriber its state when it has recovered.
//!
//! Events in which only the log end moved are never published (no component
//! acts on an uncommitted append).

use super::{Contact, LeaderContact, RaftEvents};
use crate::events::{LogProgress, RaftEvent};
use actix::prelude::*;
use consensus_actors::types::{LogIndex, NodeId, NodeState, Term};

/// A set of [`RaftEvent`] kinds (Progress is chosen apart, with
/// [`ProgressFilter`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventKinds(u16);

impl EventKinds {
    /// No kind.
    pub const NONE: Self = Self(0);
    /// [`RaftEvent::RoleChanged`].
    pub const ROLE_CHANGED: Self = Self(1);
    /// [`RaftEvent::HeardFromLeader`].
    pub const HEARD_FROM_LEADER: Self = Self(1 << 1);
    /// [`RaftEvent::VoteGranted`].
    pub const VOTE_GRANTED: Self = Self(1 << 2);
    /// [`RaftEvent::ElectionStarted`].
    pub const ELECTION_STARTED: Self = Self(1 << 3);
    /// [`RaftEvent::PeerActive`].
    pub const PEER_ACTIVE: Self = Self(1 << 4);
    /// [`RaftEvent::MembershipChanged`].
    pub const MEMBERSHIP_CHANGED: Self = Self(1 << 5);
    /// [`RaftEvent::LearnerProgress`].
    pub const LEARNER_PROGRESS: Self = Self(1 << 6);
    /// [`RaftEvent::SnapshotNeeded`].
    pub const SNAPSHOT_NEEDED: Self = Self(1 << 7);
    /// [`RaftEvent::SnapshotTaken`].
    pub const SNAPSHOT_TAKEN: Self = Self(1 << 8);
    /// Every kind but Progress.
    pub const ALL: Self = Self((1 << 9) - 1);

    /// The kind of `e` (`NONE` for a Progress).
    pub fn of(e: &RaftEvent) -> Self {
        match e {
            RaftEvent::RoleChanged { .. } => Self::ROLE_CHANGED,
            RaftEvent::HeardFromLeader { .. } => Self::HEARD_FROM_LEADER,
            RaftEvent::VoteGranted { .. } => Self::VOTE_GRANTED,
            RaftEvent::ElectionStarted { .. } => Self::ELECTION_STARTED,
            RaftEvent::PeerActive { .. } => Self::PEER_ACTIVE,
            RaftEvent::MembershipChanged { .. } => Self::MEMBERSHIP_CHANGED,
            RaftEvent::Progress(_) => Self::NONE,
            RaftEvent::LearnerProgress { .. } => Self::LEARNER_PROGRESS,
            RaftEvent::SnapshotNeeded { .. } => Self::SNAPSHOT_NEEDED,
            RaftEvent::SnapshotTaken { .. } => Self::SNAPSHOT_TAKEN,
        }
    }

    /// Whether every kind of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl std::ops::BitOr for EventKinds {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

/// Which [`RaftEvent::Progress`] events a subscriber gets (each costs a
/// mailbox message, and a follower's progress moves on nearly every
/// AppendEntries). Whatever the filter (but `Never`), the state sent on
/// subscription includes the current progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProgressFilter {
    /// None.
    #[default]
    Never,
    /// Every progress published: the term, the commit index, the applied
    /// index or the snapshot moved (for a size- or time-based compaction
    /// policy, metrics, ...).
    Always,
    /// Every progress while this node leads, and the owner's current
    /// progress (stamped with the new term) right after the `RoleChanged`
    /// that makes it leader (the stock MembershipManager: it acts on the
    /// commit index only as leader).
    WhileLeading,
    /// A progress once `last_applied - snapshot_index` reaches `threshold`,
    /// and whenever the snapshot index moved (the stock SnapshotCompactor's
    /// policy).
    AppliedSinceSnapshot {
        /// Entries applied since the snapshot.
        threshold: u64,
    },
}

/// What a subscriber wants from the owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Interest {
    /// The event kinds (Progress apart).
    pub kinds: EventKinds,
    /// Which Progress events.
    pub progress: ProgressFilter,
}

impl Interest {
    /// What the stock LeaderElection acts on.
    pub fn leader_election() -> Self {
        Self {
            kinds: EventKinds::ROLE_CHANGED
                | EventKinds::HEARD_FROM_LEADER
                | EventKinds::VOTE_GRANTED
                | EventKinds::ELECTION_STARTED
                | EventKinds::PEER_ACTIVE
                | EventKinds::MEMBERSHIP_CHANGED,
            progress: ProgressFilter::Never,
        }
    }

    /// What the stock MembershipManager acts on.
    pub fn membership_manager() -> Self {
        Self {
            kinds: EventKinds::ROLE_CHANGED
                | EventKinds::MEMBERSHIP_CHANGED
                | EventKinds::LEARNER_PROGRESS,
            progress: ProgressFilter::WhileLeading,
        }
    }

    /// What the stock SnapshotCompactor acts on, compacting once
    /// `snapshot_threshold` entries were applied since the snapshot.
    pub fn snapshot_compactor(snapshot_threshold: u64) -> Self {
        Self {
            kinds: EventKinds::ROLE_CHANGED
                | EventKinds::SNAPSHOT_NEEDED
                | EventKinds::SNAPSHOT_TAKEN,
            progress: ProgressFilter::AppliedSinceSnapshot {
                threshold: snapshot_threshold,
            },
        }
    }

    /// Every event, every progress.
    pub fn everything() -> Self {
        Self {
            kinds: EventKinds::ALL,
            progress: ProgressFilter::Always,
        }
    }
}

/// Subscribes `events` to the owner's event stream (see the [module
/// documentation](self)): the owner first sends the current state, then
/// every event of interest, in order, through `events`.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Subscribe {
    /// The subscriber's name: a subscription under the same name replaces
    /// this one (use the component's name, e.g.
    /// [`components::LEADER_ELECTION`](crate::node::components::LEADER_ELECTION)).
    pub name: String,
    /// Where the events go.
    pub events: Recipient<RaftEvents>,
    /// What the subscriber wants.
    pub interest: Interest,
    /// With `Some`, and [`EventKinds::HEARD_FROM_LEADER`] in the interest,
    /// a run of contacts from the same leader (nothing else of interest in
    /// between) is sent as its first [`RaftEvent::HeardFromLeader`] only;
    /// the repeats are recorded in this [`LeaderContact`], which the
    /// subscriber reads before it acts on anything else. Saves a mailbox
    /// message per AppendEntries at every follower. With `None`, every
    /// contact is an event.
    pub contact: Option<LeaderContact>,
}

impl Subscribe {
    /// A subscription of `events` named `name` for `interest` (every contact
    /// from the leader as an event).
    pub fn new(name: impl Into<String>, events: Recipient<RaftEvents>, interest: Interest) -> Self {
        Self {
            name: name.into(),
            events,
            interest,
            contact: None,
        }
    }

    /// Records repeated contacts from the leader in `contact` instead of
    /// sending them (see [`contact`](Self::contact)).
    #[must_use]
    pub fn with_leader_contact(mut self, contact: LeaderContact) -> Self {
        self.contact = Some(contact);
        self
    }
}

impl std::fmt::Debug for Subscribe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribe")
            .field("name", &self.name)
            .field("interest", &self.interest)
            .field("contact", &self.contact.is_some())
            .finish()
    }
}

/// What the owner tracks of one subscriber: its request, and what it sent
/// it last (to filter Progress and recognise repeated contacts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Route {
    interest: Interest,
    records_contacts: bool,
    /// The last RoleChanged sent made this node leader.
    leading: bool,
    /// The snapshot index in the last Progress sent.
    snapshot_index: LogIndex,
    /// The last event of interest sent is a HeardFromLeader of this term
    /// and leader (tracked only when contacts are recorded).
    heard: Option<(Term, NodeId)>,
}

impl Route {
    pub(crate) fn new(interest: Interest, records_contacts: bool) -> Self {
        Self {
            interest,
            records_contacts: records_contacts
                && interest.kinds.contains(EventKinds::HEARD_FROM_LEADER),
            ..Self::default()
        }
    }

    /// The events of `state` (the owner's state from scratch) this
    /// subscriber gets on (re)subscription; resets what was sent.
    pub(crate) fn resync(&mut self, state: &[RaftEvent], out: &mut Vec<RaftEvent>) {
        *self = Self::new(self.interest, self.records_contacts);
        for e in state {
            match e {
                RaftEvent::Progress(p) => {
                    if self.interest.progress != ProgressFilter::Never {
                        self.snapshot_index = p.snapshot_index;
                        out.push(e.clone());
                    }
                }
                RaftEvent::RoleChanged { role, .. } => {
                    self.leading = *role == NodeState::Leader;
                    if self.interest.kinds.contains(EventKinds::ROLE_CHANGED) {
                        out.push(e.clone());
                    }
                }
                _ => {
                    if self.interest.kinds.contains(EventKinds::of(e)) {
                        out.push(e.clone());
                    }
                }
            }
        }
    }

    /// Selects from `events` (one step's, in order) what this subscriber
    /// gets, into `out`; returns the repeated contact to record instead of
    /// sending, if any. `current` is the owner's progress now (asked only
    /// when the node becomes leader, for [`ProgressFilter::WhileLeading`]).
    pub(crate) fn select(
        &mut self,
        events: &[RaftEvent],
        current: &mut dyn FnMut() -> Option<LogProgress>,
        out: &mut Vec<RaftEvent>,
    ) -> Option<(Term, NodeId)> {
        let mut repeated = None;
        for e in events {
            match e {
                RaftEvent::Progress(p) => {
                    let send = match self.interest.progress {
                        ProgressFilter::Never => false,
                        ProgressFilter::Always => true,
                        ProgressFilter::WhileLeading => self.leading,
                        ProgressFilter::AppliedSinceSnapshot { threshold } => {
                            let since = p.last_applied.get().saturating_sub(p.snapshot_index.get());
                            p.snapshot_index != self.snapshot_index || since >= threshold
                        }
                    };
                    if send {
                        self.snapshot_index = p.snapshot_index;
                        out.push(e.clone());
                    }
                }
                RaftEvent::RoleChanged { term, role, .. } => {
                    let became_leader = *role == NodeState::Leader && !self.leading;
                    self.leading = *role == NodeState::Leader;
                    if self.interest.kinds.contains(EventKinds::ROLE_CHANGED) {
                        self.heard = None;
                        out.push(e.clone());
                    }
                    if became_leader && self.interest.progress == ProgressFilter::WhileLeading {
                        if let Some(p) = current() {
                            out.push(RaftEvent::Progress(LogProgress { term: *term, ..p }));
                        }
                    }
                }
                RaftEvent::HeardFromLeader { term, leader } => {
                    if !self.interest.kinds.contains(EventKinds::HEARD_FROM_LEADER) {
                        continue;
                    }
                    if self.records_contacts {
                        let heard = Some((*term, *leader));
                        if self.heard == heard {
                            repeated = heard;
                            continue;
                        }
                        self.heard = heard;
                    }
                    out.push(e.clone());
                }
                _ => {
                    if self.interest.kinds.contains(EventKinds::of(e)) {
                        self.heard = None;
                        out.push(e.clone());
                    }
                }
            }
        }
        repeated
    }
}

/// One subscriber, as the owner keeps it.
pub(crate) struct Subscription {
    name: String,
    events: Recipient<RaftEvents>,
    contact: Option<LeaderContact>,
    route: Route,
}

/// The owner's subscribers, in subscription order.
#[derive(Default)]
pub(crate) struct Subscriptions {
    subs: Vec<Subscription>,
}

impl Subscriptions {
    /// Adds `s` (replacing a subscription of the same name); with `state`
    /// (the owner's state from scratch: the owner runs), sends it the part
    /// of the state it wants at once.
    pub(crate) fn subscribe(&mut self, s: Subscribe, state: Option<&[RaftEvent]>) {
        let mut sub = Subscription {
            route: Route::new(s.interest, s.contact.is_some()),
            name: s.name,
            events: s.events,
            contact: s.contact,
        };
        if let Some(state) = state {
            Self::resync_one(&mut sub, state);
        }
        match self.subs.iter_mut().find(|x| x.name == sub.name) {
            Some(old) => *old = sub,
            None => self.subs.push(sub),
        }
    }

    /// Sends every subscriber the state from scratch (the owner recovered).
    pub(crate) fn resync_all(&mut self, state: &[RaftEvent]) {
        for sub in &mut self.subs {
            Self::resync_one(sub, state);
        }
    }

    fn resync_one(sub: &mut Subscription, state: &[RaftEvent]) {
        // A record taken before the resync is older than the state sent.
        if let Some(c) = &sub.contact {
            c.take();
        }
        let mut out = Vec::new();
        sub.route.resync(state, &mut out);
        if !out.is_empty() {
            sub.events.do_send(RaftEvents(out));
        }
    }

    /// Sends each subscriber the events of one step it wants (one message
    /// at most), and records repeated contacts at `now_us`. `current` is the
    /// owner's progress now.
    pub(crate) fn publish(
        &mut self,
        events: &[RaftEvent],
        now_us: u64,
        mut current: impl FnMut() -> Option<LogProgress>,
    ) {
        if events.is_empty() {
            return;
        }
        for sub in &mut self.subs {
            let mut out = Vec::new();
            let repeated = sub.route.select(events, &mut current, &mut out);
            if let (Some(contact), Some((term, leader))) = (&sub.contact, repeated) {
                contact.record(Contact {
                    term,
                    leader,
                    at_us: now_us,
                });
            }
            if !out.is_empty() {
                sub.events.do_send(RaftEvents(out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(term: u64, applied: u64, snapshot: u64) -> LogProgress {
        LogProgress {
            term: Term(term),
            commit_index: LogIndex(applied),
            last_applied: LogIndex(applied),
            last_log_index: LogIndex(applied),
            snapshot_index: LogIndex(snapshot),
        }
    }

    fn role(term: u64, role: NodeState) -> RaftEvent {
        RaftEvent::RoleChanged {
            term: Term(term),
            role,
            leader: (role == NodeState::Leader).then_some(NodeId(1)),
        }
    }

    fn heard(term: u64, leader: u64) -> RaftEvent {
        RaftEvent::HeardFromLeader {
            term: Term(term),
            leader: NodeId(leader),
        }
    }

    fn select(r: &mut Route, events: &[RaftEvent]) -> (Vec<RaftEvent>, Option<(Term, NodeId)>) {
        let mut out = Vec::new();
        let rep = r.select(events, &mut || Some(progress(2, 7, 0)), &mut out);
        (out, rep)
    }

    /// A follower's progress below the threshold reaches none of the stock
    /// components; HeardFromLeader reaches LeaderElection alone.
    #[test]
    fn follower_progress_below_the_threshold_reaches_no_stock_component() {
        let events = [heard(2, 1), RaftEvent::Progress(progress(2, 5, 0))];
        let mut e = Route::new(Interest::leader_election(), false);
        let mut m = Route::new(Interest::membership_manager(), false);
        let mut c = Route::new(Interest::snapshot_compactor(10), false);
        assert_eq!(select(&mut e, &events).0, vec![heard(2, 1)]);
        assert_eq!(select(&mut m, &events).0, Vec::<RaftEvent>::new());
        assert_eq!(select(&mut c, &events).0, Vec::<RaftEvent>::new());
    }

    /// A subscriber that asks for every progress gets every one (a
    /// replacement compactor with its own policy hears of them all).
    #[test]
    fn progress_always_means_every_progress() {
        let mut r = Route::new(
            Interest {
                kinds: EventKinds::SNAPSHOT_TAKEN,
                progress: ProgressFilter::Always,
            },
            false,
        );
        for applied in 1..5 {
            let p = RaftEvent::Progress(progress(2, applied, 0));
            assert_eq!(select(&mut r, std::slice::from_ref(&p)).0, vec![p]);
        }
        assert_eq!(select(&mut r, &[heard(2, 1)]).0, Vec::<RaftEvent>::new());
    }

    /// With a contact record, a HeardFromLeader that repeats the last event
    /// of interest (same term and leader, nothing else in between) is
    /// recorded, not sent; without one, every contact is sent.
    #[test]
    fn only_repeated_contacts_are_recorded() {
        let mut r = Route::new(Interest::leader_election(), true);
        let p = RaftEvent::Progress(progress(2, 5, 0));
        assert_eq!(
            select(&mut r, &[heard(2, 1), p.clone()]),
            (vec![heard(2, 1)], None)
        );
        assert_eq!(
            select(&mut r, &[heard(2, 1), p.clone()]),
            (vec![], Some((Term(2), NodeId(1))))
        );
        // Another leader, and any other event of interest, start a new run.
        let (out, rep) = select(&mut r, &[role(3, NodeState::Follower), heard(3, 2)]);
        assert_eq!((out.len(), rep), (2, None));
        let vote = RaftEvent::VoteGranted {
            term: Term(3),
            candidate: NodeId(4),
        };
        assert_eq!(select(&mut r, std::slice::from_ref(&vote)).0, vec![vote]);
        assert_eq!(select(&mut r, &[heard(3, 2)]), (vec![heard(3, 2)], None));
        assert_eq!(
            select(&mut r, &[heard(3, 2)]),
            (vec![], Some((Term(3), NodeId(2))))
        );
        let mut plain = Route::new(Interest::leader_election(), false);
        for _ in 0..3 {
            assert_eq!(
                select(&mut plain, &[heard(2, 1)]),
                (vec![heard(2, 1)], None)
            );
        }
    }

    /// The stock compactor's filter: progress at the threshold, or when the
    /// snapshot index moved.
    #[test]
    fn compactor_gets_progress_at_the_threshold_or_a_new_snapshot() {
        let mut r = Route::new(Interest::snapshot_compactor(10), false);
        let at = RaftEvent::Progress(progress(2, 10, 0));
        assert_eq!(select(&mut r, std::slice::from_ref(&at)).0, vec![at]);
        let snap = RaftEvent::Progress(progress(2, 11, 8));
        assert_eq!(select(&mut r, std::slice::from_ref(&snap)).0, vec![snap]);
        let below = RaftEvent::Progress(progress(2, 12, 8));
        assert_eq!(select(&mut r, &[below]).0, Vec::<RaftEvent>::new());
    }

    /// WhileLeading: the role change, then the current progress with the new
    /// term, then every progress while leading; none after stepping down.
    #[test]
    fn membership_gets_progress_only_while_leading() {
        let mut r = Route::new(Interest::membership_manager(), false);
        let lead = role(3, NodeState::Leader);
        assert_eq!(
            select(&mut r, std::slice::from_ref(&lead)).0,
            vec![lead, RaftEvent::Progress(progress(3, 7, 0))]
        );
        let p = RaftEvent::Progress(progress(3, 8, 0));
        assert_eq!(select(&mut r, std::slice::from_ref(&p)).0, vec![p]);
        let down = role(4, NodeState::Follower);
        let p = RaftEvent::Progress(progress(4, 9, 0));
        assert_eq!(select(&mut r, &[down.clone(), p]).0, vec![down]);
    }

    /// On (re)subscription the subscriber gets the state it wants, and the
    /// filters restart from it.
    #[test]
    fn resync_sends_the_wanted_state_and_resets_the_filters() {
        let state = [
            role(5, NodeState::Leader),
            RaftEvent::Progress(progress(5, 20, 12)),
        ];
        let mut r = Route::new(Interest::snapshot_compactor(100), false);
        let mut out = Vec::new();
        r.resync(&state, &mut out);
        assert_eq!(out, state.to_vec());
        assert!(r.leading);
        assert_eq!(r.snapshot_index, LogIndex(12));
        let mut e = Route::new(Interest::leader_election(), true);
        let mut out = Vec::new();
        e.resync(&state, &mut out);
        assert_eq!(out, vec![role(5, NodeState::Leader)]);
    }
}
