//! The [`NodeSupervisor`] actor and the [`SupervisorBuilder`] that starts a
//! node's children under it.

use super::child::{spawn_child, ChildControl, ChildFailed, ChildFailure, ChildSlot};
use super::policy::{RestartDecision, RestartIntensity, RestartStrategy, RestartTracker};
use super::{
    ChildState, ChildStatus, ChildTag, NodeStatus, SupervisionError, SupervisionEvent,
    SupervisionEventKind,
};
use crate::types::NodeId;
use actix::prelude::*;
use std::collections::BTreeSet;
use std::rc::Rc;
use tokio::time::Instant;

type Starter = Box<dyn FnOnce(usize, Recipient<ChildFailed>) -> Box<dyn ChildControl>>;

struct PendingChild {
    name: String,
    start: Starter,
}

/// Collects a node's children (in start order) and its supervision
/// settings, then starts them all under a [`NodeSupervisor`]. Nothing runs
/// before [`start`](Self::start); dropping the builder drops the children
/// unstarted.
pub struct SupervisorBuilder {
    node: NodeId,
    strategy: RestartStrategy,
    intensity: RestartIntensity,
    time_base: Option<Instant>,
    subscribers: Vec<Recipient<SupervisionEvent>>,
    ctx: Context<NodeSupervisor>,
    names: BTreeSet<String>,
    children: Vec<PendingChild>,
}

impl SupervisorBuilder {
    /// A tree for `node`: one-for-one, default intensity (10 in 10 s), time
    /// base taken at [`start`](Self::start).
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            strategy: RestartStrategy::default(),
            intensity: RestartIntensity::default(),
            time_base: None,
            subscribers: Vec::new(),
            ctx: Context::new(),
            names: BTreeSet::new(),
            children: Vec::new(),
        }
    }

    /// Sets the restart strategy.
    #[must_use]
    pub fn strategy(mut self, strategy: RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the restart intensity.
    #[must_use]
    pub fn intensity(mut self, intensity: RestartIntensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Event times (`at_us`) count from `base` (e.g. the simulation's
    /// start) instead of from [`start`](Self::start).
    #[must_use]
    pub fn time_base(mut self, base: Instant) -> Self {
        self.time_base = Some(base);
        self
    }

    /// Sends every event to `subscriber` from the start.
    #[must_use]
    pub fn subscriber(mut self, subscriber: Recipient<SupervisionEvent>) -> Self {
        self.subscribers.push(subscriber);
        self
    }

    /// The node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The supervisor's address, usable before it starts (messages wait).
    pub fn address(&self) -> Addr<NodeSupervisor> {
        self.ctx.address()
    }

    /// Adds `actor` as the next child, running in `slot` (whose address may
    /// already be in other components' hands). `A` may be any actor with a
    /// plain `Context` that is `Supervised`: a replacement component works
    /// exactly like the built-in one.
    pub fn start_child<A>(
        &mut self,
        name: impl Into<String>,
        slot: ChildSlot<A>,
        actor: A,
    ) -> Result<Addr<A>, SupervisionError>
    where
        A: Actor<Context = Context<A>> + Supervised,
    {
        let name = name.into();
        if !self.names.insert(name.clone()) {
            return Err(SupervisionError::DuplicateChild {
                node: self.node,
                name,
            });
        }
        let addr = slot.address();
        let tag = ChildTag {
            node: self.node,
            name: Rc::from(name.as_str()),
        };
        self.children.push(PendingChild {
            name,
            start: Box::new(move |index, report| spawn_child(slot, actor, index, tag, report)),
        });
        Ok(addr)
    }

    /// Adds the actor `f` builds (with its context) as the next child.
    pub fn spawn_child<A, F>(
        &mut self,
        name: impl Into<String>,
        f: F,
    ) -> Result<Addr<A>, SupervisionError>
    where
        A: Actor<Context = Context<A>> + Supervised,
        F: FnOnce(&mut Context<A>) -> A,
    {
        let name = name.into();
        if self.names.contains(&name) {
            return Err(SupervisionError::DuplicateChild {
                node: self.node,
                name,
            });
        }
        let mut slot = ChildSlot::new();
        let actor = f(slot.context_mut());
        self.start_child(name, slot, actor)
    }

    /// Starts the children in order, then the supervisor, on the current
    /// thread. Must be called inside a running actix System.
    pub fn start(self) -> Addr<NodeSupervisor> {
        let report = self.ctx.address().recipient::<ChildFailed>();
        let children = self
            .children
            .into_iter()
            .enumerate()
            .map(|(index, pending)| Child {
                control: (pending.start)(index, report.clone()),
                name: pending.name,
                restarts: 0,
            })
            .collect();
        let supervisor = NodeSupervisor {
            node: self.node,
            strategy: self.strategy,
            tracker: RestartTracker::new(self.intensity),
            time_base: self.time_base.unwrap_or_else(Instant::now),
            subscribers: self.subscribers,
            children,
            phase: Phase::Running,
        };
        tracing::debug!(node = %supervisor.node, children = supervisor.children.len(), strategy = ?supervisor.strategy, "node supervisor starting");
        self.ctx.run(supervisor)
    }
}

struct Child {
    name: String,
    control: Box<dyn ChildControl>,
    restarts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Failed,
    ShutDown,
}

/// Supervises one node's children: restarts them by strategy, enforces the
/// restart intensity, reports [`SupervisionEvent`]s. Built with
/// [`SupervisorBuilder`].
pub struct NodeSupervisor {
    node: NodeId,
    strategy: RestartStrategy,
    tracker: RestartTracker,
    time_base: Instant,
    subscribers: Vec<Recipient<SupervisionEvent>>,
    children: Vec<Child>,
    phase: Phase,
}

impl NodeSupervisor {
    fn at_us(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.time_base).as_micros()).unwrap_or(u64::MAX)
    }

    fn emit(&mut self, component: &str, kind: SupervisionEventKind, at: Instant) {
        let event = SupervisionEvent {
            node: self.node,
            component: component.to_owned(),
            kind,
            at_us: self.at_us(at),
        };
        tracing::info!(node = %event.node, component = %event.component, kind = ?event.kind, at_us = event.at_us, "supervision event");
        self.subscribers.retain(Recipient::connected);
        for s in &self.subscribers {
            s.do_send(event.clone());
        }
    }

    /// Stops every child, last started first. Panics of `stopping()` /
    /// `stopped()` are logged; they change nothing.
    fn stop_children(&mut self) {
        for child in self.children.iter().rev() {
            if child.control.state() == ChildState::Stopped {
                continue;
            }
            if let Some(reason) = child.control.stop() {
                tracing::warn!(node = %self.node, component = %child.name, %reason, "child panicked while stopping");
            }
            debug_assert_eq!(child.control.state(), ChildState::Stopped);
        }
    }

    fn restart(&mut self, index: usize, by_strategy: bool, at: Instant) {
        let child = &mut self.children[index];
        child.control.request_restart();
        child.restarts += 1;
        metrics::counter!(
            "supervision_restarts_total",
            "node" => self.node.get().to_string(),
            "component" => child.name.clone()
        )
        .increment(1);
        let name = child.name.clone();
        self.emit(
            &name,
            SupervisionEventKind::ChildRestarted { by_strategy },
            at,
        );
    }

    fn fail_node(&mut self, reason: String, at: Instant, ctx: &mut Context<Self>) {
        debug_assert_eq!(self.phase, Phase::Running);
        tracing::error!(node = %self.node, %reason, "node failed");
        metrics::counter!("supervision_node_failures_total", "node" => self.node.get().to_string())
            .increment(1);
        self.phase = Phase::Failed;
        self.stop_children();
        self.emit("", SupervisionEventKind::NodeFailed { reason }, at);
        ctx.stop();
    }

    fn status(&self) -> NodeStatus {
        NodeStatus {
            node: self.node,
            running: self.phase == Phase::Running,
            failed: self.phase == Phase::Failed,
            children: self
                .children
                .iter()
                .map(|c| ChildStatus {
                    name: c.name.clone(),
                    restarts: c.restarts,
                    state: c.control.state(),
                })
                .collect(),
            restarts_in_window: self.tracker.restarts_in_window(),
        }
    }
}

impl Actor for NodeSupervisor {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // However the supervisor ends, its children end with it.
        self.stop_children();
        tracing::debug!(node = %self.node, phase = ?self.phase, "node supervisor stopped");
    }
}

impl Handler<ChildFailed> for NodeSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildFailed, ctx: &mut Self::Context) {
        if self.phase != Phase::Running {
            return;
        }
        let Some(child) = self.children.get(msg.index) else {
            debug_assert!(false, "failure report from unknown child {}", msg.index);
            return;
        };
        let name = child.name.clone();
        let stale = child.control.incarnation() != msg.incarnation;
        metrics::counter!(
            "supervision_failures_total",
            "node" => self.node.get().to_string(),
            "component" => name.clone()
        )
        .increment(1);
        let (kind, how) = match &msg.failure {
            ChildFailure::Panicked(reason) => (
                SupervisionEventKind::ChildPanicked {
                    reason: reason.clone(),
                },
                format!("panicked: {reason}"),
            ),
            ChildFailure::Stopped => (SupervisionEventKind::ChildStopped, "stopped".to_owned()),
        };
        self.emit(&name, kind, msg.at);
        if stale {
            // A sibling's failure already restarted this child after it
            // failed: that restart handled this failure too.
            return;
        }
        match self.tracker.on_failure(self.at_us(msg.at)) {
            RestartDecision::Restart => {
                for index in self.strategy.affected(msg.index, self.children.len()) {
                    self.restart(index, index != msg.index, msg.at);
                }
            }
            RestartDecision::Exceeded { restarts_in_window } => {
                let intensity = self.tracker.intensity();
                let reason = format!(
                    "{name} {how}; restart intensity exceeded ({restarts_in_window} restarts within {:?}, at most {})",
                    intensity.within, intensity.max_restarts
                );
                self.fail_node(reason, msg.at, ctx);
            }
        }
    }
}

/// Declares the node failed at once, as if the restart intensity had been
/// exceeded: every child stops, [`SupervisionEventKind::NodeFailed`] is
/// emitted with `reason`, the supervisor stops. For a component that meets
/// an error no restart can cure (for example durable storage refusing a
/// write). Ignored if the node is no longer running.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct FailNode {
    /// Why the node cannot go on.
    pub reason: String,
}

impl Handler<FailNode> for NodeSupervisor {
    type Result = ();

    fn handle(&mut self, msg: FailNode, ctx: &mut Self::Context) {
        if self.phase == Phase::Running {
            self.fail_node(msg.reason, Instant::now(), ctx);
        }
    }
}

/// Stops every child of the node now (their mailboxes close, every address
/// disconnects) and then the supervisor. Used for a clean stop and for a
/// simulated crash. When the reply arrives, the children are gone.
#[derive(Message, Clone, Copy, Debug, Default)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for NodeSupervisor {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::ShutDown;
        self.stop_children();
        self.emit("", SupervisionEventKind::NodeShutdown, Instant::now());
        ctx.stop();
    }
}

/// Asks for the tree's [`NodeStatus`].
#[derive(Message, Clone, Copy, Debug, Default)]
#[rtype(result = "NodeStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for NodeSupervisor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Restarts one child by name, as if it had failed but without counting
/// against the intensity and without applying the strategy (for tests and
/// experiments).
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(), SupervisionError>")]
pub struct RestartChild {
    /// The child's name.
    pub name: String,
}

impl Handler<RestartChild> for NodeSupervisor {
    type Result = Result<(), SupervisionError>;

    fn handle(&mut self, msg: RestartChild, _: &mut Self::Context) -> Self::Result {
        if self.phase != Phase::Running {
            return Err(SupervisionError::NodeNotRunning { node: self.node });
        }
        let index = self
            .children
            .iter()
            .position(|c| c.name == msg.name)
            .ok_or_else(|| SupervisionError::UnknownChild {
                node: self.node,
                name: msg.name.clone(),
            })?;
        self.restart(index, false, Instant::now());
        Ok(())
    }
}

/// Adds a subscriber to the node's [`SupervisionEvent`]s.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<SupervisionEvent>);

impl Handler<Subscribe> for NodeSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) {
        self.subscribers.push(msg.0);
    }
}

/// A subscriber that keeps every [`SupervisionEvent`] it receives, in
/// arrival order (for tests and experiment reports; unbounded, so meant for
/// runs of bounded length).
#[derive(Debug, Default)]
pub struct EventLog {
    events: Vec<SupervisionEvent>,
}

impl EventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Actor for EventLog {
    type Context = Context<Self>;
}

impl Handler<SupervisionEvent> for EventLog {
    type Result = ();

    fn handle(&mut self, event: SupervisionEvent, _: &mut Self::Context) {
        self.events.push(event);
    }
}

/// Asks an [`EventLog`] for the events received so far.
#[derive(Message, Clone, Copy, Debug, Default)]
#[rtype(result = "Vec<SupervisionEvent>")]
pub struct GetEvents;

impl Handler<GetEvents> for EventLog {
    type Result = MessageResult<GetEvents>;

    fn handle(&mut self, _: GetEvents, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.events.clone())
    }
}
