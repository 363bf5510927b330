//! [`ClusterObserver`]: what a host learns about a cluster as it runs (who
//! leads in which epoch, which components restarted, which nodes crashed),
//! protocol-agnostic and in virtual time under the simulation.
//!
//! Facts arrive three ways:
//!
//! * the protocol-neutral `BecameLeader` / `SteppedDown` safety events that
//!   every protocol reports, through a [`LeadershipTap`] added to the run's
//!   safety checker;
//! * supervision events, through the [`SupervisionCollector`] actor that
//!   every node's supervision tree reports to;
//! * direct calls ([`ClusterObserver::leader_elected`],
//!   [`ClusterObserver::node_crashed`]) from the cluster host.

use crate::safety::{EventKinds, Invariant, ProtocolEvent, SafetyEvent, Violation};
use crate::supervision::{SupervisionEvent, SupervisionEventKind};
use crate::types::NodeId;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

/// At most this many leadership and supervision records are kept (counts go
/// on beyond it), so a pathological run cannot exhaust memory.
pub const MAX_RECORDS: usize = 100_000;

/// What happened to a node's leadership, or to the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderEventKind {
    /// The node became leader of `epoch`.
    Elected,
    /// The node stopped leading.
    SteppedDown,
    /// The node crashed (it leads nothing any more).
    Crashed,
    /// The node was started or restarted.
    Started,
}

/// One leadership or life-cycle fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderEvent {
    /// Microseconds since the observer's origin (virtual in simulations).
    pub at_us: u64,
    /// The node.
    pub node: NodeId,
    /// The epoch (Raft term, PBFT view, Paxos round) for `Elected`.
    pub epoch: u64,
    /// What happened.
    pub kind: LeaderEventKind,
}

/// Everything an observer has recorded, copied out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObserverSnapshot {
    /// Leaderships taken (distinct node and epoch), the first election
    /// included.
    pub leader_changes: u64,
    /// Component restarts by supervisors.
    pub component_restarts: u64,
    /// Component failures (panics or unexpected stops) seen by supervisors.
    pub component_failures: u64,
    /// Nodes declared failed by their supervisor (restart intensity
    /// exceeded).
    pub node_failures: u64,
    /// Node crashes (fault injection or engine stops).
    pub crashes: u64,
    /// Leadership and life-cycle events, oldest first (at most
    /// [`MAX_RECORDS`]).
    pub leadership: Vec<LeaderEvent>,
    /// Supervision events, oldest first (at most [`MAX_RECORDS`]).
    pub supervision: Vec<SupervisionEvent>,
}

#[derive(Debug)]
struct State {
    origin: Instant,
    elected: BTreeSet<(u64, NodeId)>,
    snapshot: ObserverSnapshot,
}

/// A clonable handle on one cluster's observations. Cheap to clone; every
/// clone records into the same log.
#[derive(Clone, Debug)]
pub struct ClusterObserver {
    inner: Arc<Mutex<State>>,
}

impl ClusterObserver {
    /// An observer whose time origin is now (tokio clock).
    pub fn new() -> Self {
        Self::with_origin(Instant::now())
    }

    /// An observer measuring time from `origin`.
    pub fn with_origin(origin: Instant) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                origin,
                elected: BTreeSet::new(),
                snapshot: ObserverSnapshot::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instant times are measured from.
    pub fn origin(&self) -> Instant {
        self.lock().origin
    }

    fn now_us(&self) -> u64 {
        let origin = self.origin();
        u64::try_from(Instant::now().saturating_duration_since(origin).as_micros())
            .unwrap_or(u64::MAX)
    }

    fn push(state: &mut State, event: LeaderEvent) {
        if state.snapshot.leadership.len() < MAX_RECORDS {
            state.snapshot.leadership.push(event);
        }
    }

    /// `node` became leader of `epoch` now.
    pub fn leader_elected(&self, node: NodeId, epoch: u64) {
        let at_us = self.now_us();
        self.leader_elected_at(at_us, node, epoch);
    }

    /// `node` became leader of `epoch` at `at_us`. A repeated report of the
    /// same node and epoch is ignored.
    pub fn leader_elected_at(&self, at_us: u64, node: NodeId, epoch: u64) {
        let mut st = self.lock();
        if !st.elected.insert((epoch, node)) {
            return;
        }
        st.snapshot.leader_changes += 1;
        Self::push(
            &mut st,
            LeaderEvent {
                at_us,
                node,
                epoch,
                kind: LeaderEventKind::Elected,
            },
        );
    }

    /// `node` stopped leading now.
    pub fn stepped_down(&self, node: NodeId) {
        let at_us = self.now_us();
        self.stepped_down_at(at_us, node);
    }

    /// `node` stopped leading at `at_us`.
    pub fn stepped_down_at(&self, at_us: u64, node: NodeId) {
        let mut st = self.lock();
        Self::push(
            &mut st,
            LeaderEvent {
                at_us,
                node,
                epoch: 0,
                kind: LeaderEventKind::SteppedDown,
            },
        );
    }

    /// `node` crashed now.
    pub fn node_crashed(&self, node: NodeId) {
        let at_us = self.now_us();
        let mut st = self.lock();
        st.snapshot.crashes += 1;
        Self::push(
            &mut st,
            LeaderEvent {
                at_us,
                node,
                epoch: 0,
                kind: LeaderEventKind::Crashed,
            },
        );
    }

    /// `node` was started (or restarted) now.
    pub fn node_started(&self, node: NodeId) {
        let at_us = self.now_us();
        let mut st = self.lock();
        Self::push(
            &mut st,
            LeaderEvent {
                at_us,
                node,
                epoch: 0,
                kind: LeaderEventKind::Started,
            },
        );
    }

    /// A supervision event from some node's tree.
    pub fn supervision(&self, event: SupervisionEvent) {
        let mut st = self.lock();
        match &event.kind {
            SupervisionEventKind::ChildRestarted { .. } => st.snapshot.component_restarts += 1,
            SupervisionEventKind::ChildPanicked { .. } | SupervisionEventKind::ChildStopped => {
                st.snapshot.component_failures += 1
            }
            SupervisionEventKind::NodeFailed { .. } => st.snapshot.node_failures += 1,
            SupervisionEventKind::NodeShutdown => {}
        }
        if st.snapshot.supervision.len() < MAX_RECORDS {
            st.snapshot.supervision.push(event);
        }
    }

    /// Leaderships taken so far.
    pub fn leader_changes(&self) -> u64 {
        self.lock().snapshot.leader_changes
    }

    /// Component restarts so far.
    pub fn component_restarts(&self) -> u64 {
        self.lock().snapshot.component_restarts
    }

    /// The most recent leader by epoch that has not stepped down or crashed
    /// since, as far as this observer knows.
    pub fn current_leader(&self) -> Option<(NodeId, u64)> {
        let st = self.lock();
        let mut leaders: Vec<(NodeId, u64)> = Vec::new();
        for ev in &st.snapshot.leadership {
            match ev.kind {
                LeaderEventKind::Elected => {
                    leaders.retain(|&(n, _)| n != ev.node);
                    leaders.push((ev.node, ev.epoch));
                }
                LeaderEventKind::SteppedDown | LeaderEventKind::Crashed => {
                    leaders.retain(|&(n, _)| n != ev.node)
                }
                LeaderEventKind::Started => {}
            }
        }
        leaders.into_iter().max_by_key(|&(n, e)| (e, n))
    }

    /// A copy of everything recorded.
    pub fn snapshot(&self) -> ObserverSnapshot {
        self.lock().snapshot.clone()
    }
}

impl Default for ClusterObserver {
    fn default() -> Self {
        Self::new()
    }
}

/// A pseudo-invariant that never reports a violation: it forwards the
/// neutral leadership events seen by the safety checker to a
/// [`ClusterObserver`], so leadership is recorded at the instant the
/// protocol reports it, with no extra message. Works for every protocol.
pub struct LeadershipTap {
    observer: ClusterObserver,
}

impl LeadershipTap {
    /// The name it runs under in a checker.
    pub const NAME: &'static str = "engine-leadership-tap";

    /// A tap feeding `observer`.
    pub fn new(observer: ClusterObserver) -> Self {
        Self { observer }
    }
}

impl<E: ProtocolEvent> Invariant<E> for LeadershipTap {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, at_us: u64, ev: &SafetyEvent<E>, _out: &mut Vec<Violation>) {
        match ev {
            SafetyEvent::BecameLeader { node, epoch } => {
                self.observer.leader_elected_at(at_us, *node, *epoch);
            }
            SafetyEvent::SteppedDown { node } => {
                self.observer.stepped_down_at(at_us, *node);
            }
            _ => {}
        }
    }

    fn event_kinds(&self) -> EventKinds {
        EventKinds::BECAME_LEADER.or(EventKinds::STEPPED_DOWN)
    }
}

/// An actor every node's supervision tree reports to; it records the events
/// in a [`ClusterObserver`].
pub struct SupervisionCollector {
    observer: ClusterObserver,
}

impl SupervisionCollector {
    /// A collector feeding `observer`.
    pub fn new(observer: ClusterObserver) -> Self {
        Self { observer }
    }
}

impl Actor for SupervisionCollector {
    type Context = Context<Self>;
}

impl Handler<SupervisionEvent> for SupervisionCollector {
    type Result = ();

    fn handle(&mut self, msg: SupervisionEvent, _ctx: &mut Context<Self>) {
        tracing::debug!(node = %msg.node, component = %msg.component, kind = ?msg.kind, "supervision event");
        self.observer.supervision(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::NoProtocolEvents;

    #[test]
    fn elections_are_counted_once_per_node_and_epoch() {
        let obs = ClusterObserver::with_origin(Instant::now());
        obs.leader_elected_at(10, NodeId(1), 1);
        obs.leader_elected_at(11, NodeId(1), 1);
        obs.leader_elected_at(50, NodeId(2), 2);
        assert_eq!(obs.leader_changes(), 2);
        assert_eq!(obs.current_leader(), Some((NodeId(2), 2)));
        obs.stepped_down_at(60, NodeId(2));
        assert_eq!(obs.current_leader(), Some((NodeId(1), 1)));
        let snap = obs.snapshot();
        assert_eq!(snap.leadership.len(), 3);
        assert_eq!(snap.leadership[2].kind, LeaderEventKind::SteppedDown);
    }

    #[test]
    fn tap_forwards_neutral_leadership_and_never_reports_violations() {
        let obs = ClusterObserver::with_origin(Instant::now());
        let mut tap = LeadershipTap::new(obs.clone());
        let mut out = Vec::new();
        let elected: SafetyEvent<NoProtocolEvents> = SafetyEvent::BecameLeader {
            node: NodeId(3),
            epoch: 4,
        };
        Invariant::observe(&mut tap, 5, &elected, &mut out);
        let stepped: SafetyEvent<NoProtocolEvents> = SafetyEvent::SteppedDown { node: NodeId(3) };
        Invariant::observe(&mut tap, 9, &stepped, &mut out);
        assert!(out.is_empty());
        let snap = obs.snapshot();
        assert_eq!(snap.leader_changes, 1);
        assert_eq!(
            snap.leadership[0],
            LeaderEvent {
                at_us: 5,
                node: NodeId(3),
                epoch: 4,
                kind: LeaderEventKind::Elected
            }
        );
        assert_eq!(obs.current_leader(), None);
    }

    #[test]
    fn supervision_events_are_counted_by_kind() {
        let obs = ClusterObserver::with_origin(Instant::now());
        let ev = |kind| SupervisionEvent {
            node: NodeId(1),
            component: "election".into(),
            kind,
            at_us: 0,
        };
        obs.supervision(ev(SupervisionEventKind::ChildPanicked {
            reason: "boom".into(),
        }));
        obs.supervision(ev(SupervisionEventKind::ChildRestarted {
            by_strategy: false,
        }));
        obs.supervision(ev(SupervisionEventKind::ChildRestarted {
            by_strategy: true,
        }));
        obs.supervision(ev(SupervisionEventKind::NodeFailed {
            reason: "too many".into(),
        }));
        let snap = obs.snapshot();
        assert_eq!(snap.component_failures, 1);
        assert_eq!(snap.component_restarts, 2);
        assert_eq!(snap.node_failures, 1);
        assert_eq!(snap.supervision.len(), 4);
    }
}
