//! PBFT nodes for the deterministic [`Simulation`](consensus_actors::sim::Simulation),
//! replicating any [`StateMachine`]: a [`NodeFactory`] that starts each
//! node as a supervised tree ([`crate::node`]) whose replica executes on a
//! state machine built by the factory's `make_state_machine`, as
//! `consensus_raft::sim::RaftSimFactory` does for Raft.
//!
//! Each replica's state ([`ReplicaStore`]) is kept across crashes (PBFT's
//! durable replica). Every node is built with the factory's [`PbftSlots`]
//! ([`with_slots`](PbftSimFactory::with_slots)), or with a Byzantine
//! replica for the nodes named by
//! [`with_byzantine`](PbftSimFactory::with_byzantine).
//!
//! ```
//! use consensus_actors::kv::KvStore;
//! use consensus_actors::types::NodeId;
//! use consensus_pbft::sim::PbftSimFactory;
//! use consensus_pbft::PbftConfig;
//! let cfg = PbftConfig::for_cluster(4).expect("n = 4 tolerates f = 1");
//! let factory = PbftSimFactory::new(cfg, (1..=4).map(NodeId), KvStore::default);
//! assert_eq!(factory.members().len(), 4);
//! ```

use crate::byzantine::{self, Behaviour};
use crate::engine::actor::ReplicaStore;
use crate::evidence::EvidenceLog;
use crate::messages::PbftMessage;
use crate::node::{start_node, MakeStateMachine, NodeSpec, PbftNode, PbftSlots};
use crate::plugin::PbftConfig;
use crate::safety::PbftEvent;
use actix::Recipient;
use consensus_actors::kv::StateMachine;
use consensus_actors::safety::SafetySink;
use consensus_actors::sim::{NodeContext, NodeFactory, StartedNode};
use consensus_actors::supervision::{Shutdown, SupervisionEvent};
use consensus_actors::types::NodeId;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use tokio::time::Instant;

/// The running nodes of a simulation, shared with test clients and fault
/// hooks that cannot borrow the simulation (single-threaded: `Rc`).
pub struct NodeRegistry<SM: StateMachine>(Rc<RefCell<BTreeMap<NodeId, PbftNode<SM>>>>);

impl<SM: StateMachine> Clone for NodeRegistry<SM> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<SM: StateMachine> Default for NodeRegistry<SM> {
    fn default() -> Self {
        Self(Rc::new(RefCell::new(BTreeMap::new())))
    }
}

impl<SM: StateMachine> NodeRegistry<SM> {
    /// The running incarnation of `id`.
    pub fn get(&self, id: NodeId) -> Option<PbftNode<SM>> {
        self.0.borrow().get(&id).cloned()
    }

    /// Every running node, in id order.
    pub fn all(&self) -> Vec<PbftNode<SM>> {
        self.0.borrow().values().cloned().collect()
    }

    /// The ids of the running nodes.
    pub fn ids(&self) -> Vec<NodeId> {
        self.0.borrow().keys().copied().collect()
    }
}

/// Starts simulated PBFT nodes executing on `SM`. See the
/// [module documentation](self).
pub struct PbftSimFactory<SM: StateMachine> {
    cfg: PbftConfig,
    members: Vec<NodeId>,
    make_sm: MakeStateMachine<SM>,
    safety: SafetySink<PbftEvent>,
    evidence: EvidenceLog,
    supervision: Option<Recipient<SupervisionEvent>>,
    time_base: Option<Instant>,
    slots: PbftSlots<SM>,
    byzantine: BTreeMap<NodeId, Behaviour>,
    stores: BTreeMap<NodeId, ReplicaStore<SM>>,
    nodes: NodeRegistry<SM>,
}

impl<SM: StateMachine> PbftSimFactory<SM> {
    /// A factory for the cluster `members`; every replica starts from
    /// `make_state_machine()` (which must build the same state each time:
    /// its digest is the genesis checkpoint's).
    pub fn new(
        cfg: PbftConfig,
        members: impl IntoIterator<Item = NodeId>,
        make_state_machine: impl Fn() -> SM + Send + Sync + 'static,
    ) -> Self {
        let mut members: Vec<NodeId> = members.into_iter().collect();
        members.sort_unstable();
        members.dedup();
        Self {
            cfg,
            members,
            make_sm: Arc::new(make_state_machine),
            safety: SafetySink::noop(),
            evidence: EvidenceLog::new(),
            supervision: None,
            time_base: None,
            slots: PbftSlots::default(),
            byzantine: BTreeMap::new(),
            stores: BTreeMap::new(),
            nodes: NodeRegistry::default(),
        }
    }

    /// Builds every correct node with `slots` (default: the stock replica).
    #[must_use]
    pub fn with_slots(mut self, slots: PbftSlots<SM>) -> Self {
        self.slots = slots;
        self
    }

    /// Makes `node`'s replica Byzantine, lying as `behaviour`.
    #[must_use]
    pub fn with_byzantine(mut self, node: NodeId, behaviour: Behaviour) -> Self {
        self.byzantine.insert(node, behaviour);
        self
    }

    /// Reports every node's safety events to `sink`.
    #[must_use]
    pub fn with_safety(mut self, sink: SafetySink<PbftEvent>) -> Self {
        self.safety = sink;
        self
    }

    /// Records evidence into `log` (one the caller keeps).
    #[must_use]
    pub fn with_evidence_log(mut self, log: EvidenceLog) -> Self {
        self.evidence = log;
        self
    }

    /// Sends every node's supervision events to `subscriber`.
    #[must_use]
    pub fn with_supervision_events(mut self, subscriber: Recipient<SupervisionEvent>) -> Self {
        self.supervision = Some(subscriber);
        self
    }

    /// Measures every node's time from `base` (default: when the node
    /// starts).
    #[must_use]
    pub fn with_time_base(mut self, base: Instant) -> Self {
        self.time_base = Some(base);
        self
    }

    /// The cluster, sorted.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// The Byzantine replicas and their behaviours.
    pub fn byzantine(&self) -> &BTreeMap<NodeId, Behaviour> {
        &self.byzantine
    }

    /// The running incarnation of `id`.
    pub fn node(&self, id: NodeId) -> Option<PbftNode<SM>> {
        self.nodes.get(id)
    }

    /// Every running node, in id order.
    pub fn nodes(&self) -> Vec<PbftNode<SM>> {
        self.nodes.all()
    }

    /// A shared view of the running nodes (for clients and fault hooks).
    pub fn registry(&self) -> NodeRegistry<SM> {
        self.nodes.clone()
    }

    /// The durable state of `id`'s replica (kept across crashes).
    pub fn store(&self, id: NodeId) -> Option<&ReplicaStore<SM>> {
        self.stores.get(&id)
    }

    /// Evidence recorded so far.
    pub fn evidence(&self) -> &EvidenceLog {
        &self.evidence
    }

    /// The PBFT settings.
    pub fn config(&self) -> &PbftConfig {
        &self.cfg
    }
}

impl<SM: StateMachine> NodeFactory<PbftMessage> for PbftSimFactory<SM> {
    fn start_node(&mut self, ctx: NodeContext<PbftMessage>) -> StartedNode<PbftMessage> {
        let id = ctx.id;
        let store = self.stores.entry(id).or_default().clone();
        let slots = match self.byzantine.get(&id) {
            Some(&behaviour) => byzantine::slots::<SM>(behaviour),
            None => self.slots.clone(),
        };
        let spec = NodeSpec {
            cfg: self.cfg.replica(id, &self.members),
            store,
            make_state_machine: Arc::clone(&self.make_sm),
            transport: ctx.transport,
            safety: self.safety.clone(),
            evidence: self.evidence.clone(),
            epoch: self.time_base.unwrap_or_else(Instant::now),
        };
        let node = start_node(spec, &slots, self.supervision.clone());
        let inbox = node.inbox.clone();
        let supervisor = node.supervisor.clone();
        self.nodes.0.borrow_mut().insert(id, node);
        StartedNode::new(inbox, move || supervisor.do_send(Shutdown))
    }

    fn on_crash(&mut self, id: NodeId) {
        // The replica's state is durable; the client proxy's requests in
        // flight are lost with the node.
        self.nodes.0.borrow_mut().remove(&id);
    }
}
