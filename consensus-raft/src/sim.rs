//! Raft nodes for the deterministic [`Simulation`](consensus_actors::sim::Simulation):
//! a [`NodeFactory`] that starts each node as a supervised [`RaftNode`] over
//! a crash-aware [`MemStorage`] kept across incarnations.
//!
//! A crash stops the node's supervision tree and drops every storage write
//! that was not synced; a restart rebuilds the node from what survived.
//! Nodes listed at construction bootstrap with that configuration; nodes
//! added later start with an empty configuration and wait to be added with
//! [`RaftNode::add_node`]. Every node is built with the factory's
//! [`RaftSlots`] ([`with_slots`](RaftSimFactory::with_slots)): a node with
//! replaced components runs under the simulation like the stock one.

use crate::actors::RaftStateMachine;
use crate::config::RaftConfig;
use crate::configuration::Membership;
use crate::events::HardState;
use crate::messages::{EntryRef, RaftMessage};
use crate::node::{RaftNode, RaftNodeBuilder};
use crate::safety::SafetySink;
use crate::slots::RaftSlots;
use actix::Recipient;
use consensus_actors::kv::StateMachine;
use consensus_actors::sim::{NodeContext, NodeFactory, StartedNode};
use consensus_actors::storage::MemStorage;
use consensus_actors::supervision::{
    RestartIntensity, RestartStrategy, Shutdown, SupervisionEvent,
};
use consensus_actors::types::NodeId;
use rand::Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use tokio::time::Instant;

/// The storage a simulated Raft node uses.
pub type SimStorage<C> = MemStorage<HardState, EntryRef<C>>;

type Command<SM> = <SM as StateMachine>::Command;

/// Starts simulated Raft nodes. See the [module documentation](self).
pub struct RaftSimFactory<SM: RaftStateMachine> {
    cfg: RaftConfig,
    bootstrap: BTreeSet<NodeId>,
    make_sm: Arc<dyn Fn() -> SM + Send + Sync>,
    safety: SafetySink,
    strategy: RestartStrategy,
    intensity: RestartIntensity,
    supervision: Option<Recipient<SupervisionEvent>>,
    time_base: Option<Instant>,
    stores: BTreeMap<NodeId, SimStorage<Command<SM>>>,
    nodes: NodeRegistry<SM>,
    slots: RaftSlots<Command<SM>>,
}

/// The running nodes of a simulation, shared with test clients and fault
/// hooks that cannot borrow the simulation (single-threaded: `Rc`).
pub struct NodeRegistry<SM: RaftStateMachine>(Rc<RefCell<BTreeMap<NodeId, RaftNode<SM>>>>);

impl<SM: RaftStateMachine> Clone for NodeRegistry<SM> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<SM: RaftStateMachine> Default for NodeRegistry<SM> {
    fn default() -> Self {
        Self(Rc::new(RefCell::new(BTreeMap::new())))
    }
}

impl<SM: RaftStateMachine> NodeRegistry<SM> {
    /// The running incarnation of `id`.
    pub fn get(&self, id: NodeId) -> Option<RaftNode<SM>> {
        self.0.borrow().get(&id).cloned()
    }

    /// Every running node, in id order.
    pub fn all(&self) -> Vec<RaftNode<SM>> {
        self.0.borrow().values().cloned().collect()
    }

    /// The ids of the running nodes.
    pub fn ids(&self) -> Vec<NodeId> {
        self.0.borrow().keys().copied().collect()
    }

    fn insert(&self, node: RaftNode<SM>) {
        self.0.borrow_mut().insert(node.id(), node);
    }

    fn remove(&self, id: NodeId) {
        self.0.borrow_mut().remove(&id);
    }
}

impl<SM: RaftStateMachine> RaftSimFactory<SM> {
    /// A factory whose nodes `bootstrap` form the initial configuration.
    pub fn new(
        cfg: RaftConfig,
        bootstrap: impl IntoIterator<Item = NodeId>,
        make_sm: impl Fn() -> SM + Send + Sync + 'static,
    ) -> Self {
        Self {
            cfg,
            bootstrap: bootstrap.into_iter().collect(),
            make_sm: Arc::new(make_sm),
            safety: SafetySink::noop(),
            strategy: RestartStrategy::OneForOne,
            intensity: RestartIntensity::default(),
            supervision: None,
            time_base: None,
            stores: BTreeMap::new(),
            nodes: NodeRegistry::default(),
            slots: RaftSlots::default(),
        }
    }

    /// Builds every node with `slots` (default: the stock components).
    #[must_use]
    pub fn with_slots(mut self, slots: RaftSlots<Command<SM>>) -> Self {
        self.slots = slots;
        self
    }

    /// The slots every node is built with.
    pub fn slots(&self) -> &RaftSlots<Command<SM>> {
        &self.slots
    }

    /// Reports every node's safety events to `sink`.
    #[must_use]
    pub fn with_safety(mut self, sink: SafetySink) -> Self {
        self.safety = sink;
        self
    }

    /// Every node's supervision strategy and intensity.
    #[must_use]
    pub fn with_supervision(
        mut self,
        strategy: RestartStrategy,
        intensity: RestartIntensity,
    ) -> Self {
        self.strategy = strategy;
        self.intensity = intensity;
        self
    }

    /// Sends every node's supervision events to `subscriber`.
    #[must_use]
    pub fn with_supervision_events(mut self, subscriber: Recipient<SupervisionEvent>) -> Self {
        self.supervision = Some(subscriber);
        self
    }

    /// Measures every node's time from `base`.
    #[must_use]
    pub fn with_time_base(mut self, base: Instant) -> Self {
        self.time_base = Some(base);
        self
    }

    /// The running incarnation of `id`.
    pub fn node(&self, id: NodeId) -> Option<RaftNode<SM>> {
        self.nodes.get(id)
    }

    /// Every running node, in id order.
    pub fn nodes(&self) -> Vec<RaftNode<SM>> {
        self.nodes.all()
    }

    /// A shared view of the running nodes (for clients and fault hooks).
    pub fn registry(&self) -> NodeRegistry<SM> {
        self.nodes.clone()
    }

    /// The storage of `id` (kept across crashes).
    pub fn storage(&self, id: NodeId) -> Option<&SimStorage<Command<SM>>> {
        self.stores.get(&id)
    }

    /// The Raft settings.
    pub fn config(&self) -> &RaftConfig {
        &self.cfg
    }
}

impl<SM: RaftStateMachine> NodeFactory<RaftMessage<Command<SM>>> for RaftSimFactory<SM> {
    fn start_node(
        &mut self,
        mut ctx: NodeContext<RaftMessage<Command<SM>>>,
    ) -> StartedNode<RaftMessage<Command<SM>>> {
        let id = ctx.id;
        let storage = self.stores.entry(id).or_default().clone();
        let initial = if self.bootstrap.contains(&id) {
            Membership::new(self.bootstrap.iter().copied())
        } else {
            Membership::empty()
        };
        let make_sm = Arc::clone(&self.make_sm);
        let mut builder = RaftNodeBuilder::new(
            id,
            self.cfg.clone(),
            initial,
            storage,
            move || make_sm(),
            ctx.transport,
        )
        .seed(ctx.rng.random())
        .trace(ctx.trace.clone())
        .safety(self.safety.clone())
        .strategy(self.strategy)
        .intensity(self.intensity)
        .slots(self.slots.clone());
        if let Some(s) = &self.supervision {
            builder = builder.supervision_subscriber(s.clone());
        }
        if let Some(base) = self.time_base {
            builder = builder.time_base(base);
        }
        let node = builder.start();
        let inbox = node.inbox();
        let supervisor = node.supervisor().clone();
        self.nodes.insert(node);
        StartedNode::new(inbox, move || supervisor.do_send(Shutdown))
    }

    fn on_crash(&mut self, id: NodeId) {
        self.nodes.remove(id);
        if let Some(store) = self.stores.get(&id) {
            store.crash();
        }
    }
}
