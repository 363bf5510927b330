//! Training replicas on PBFT in the deterministic
//! [`Simulation`](consensus_actors::sim::Simulation): each replica is a
//! supervised PBFT node (authenticator, replica, client proxy; the replica
//! executes the training state machine) plus a training tier under its own
//! supervisor, as [`replica_sim`](crate::replica_sim) does for Raft. Some
//! replicas can be Byzantine (the PBFT crate's Byzantine replica slots:
//! equivocating primary, wrong digests, forged authenticators, ...): PBFT
//! with n ≥ 3f + 1 keeps every correct replica's state machine, and so its
//! model, identical.
//!
//! A component's [`Ordering`] here submits through its own node's client
//! proxy (accepted on f + 1 matching replies) and reads its own replica's
//! state machine. Replicas keep their state across a crash (PBFT's durable
//! replica), so a restarted node would keep a state machine wired to its
//! old training tier: the training runs do not crash PBFT replicas.

use crate::replica::{Ordering, OrderingError, OrderingFuture, Query};
use crate::replica_sim::{Replicas, Tier, TrainingFactory, PROGRESS_TIMEOUT};
use consensus_actors::kv::StateMachine;
use consensus_actors::safety::SafetySink;
use consensus_actors::sim::{NodeContext, NodeFactory, StartedNode};
use consensus_actors::supervision::{Shutdown, SupervisorBuilder};
use consensus_actors::types::{ClientId, NodeId};
use consensus_pbft::byzantine::{self, Behaviour};
use consensus_pbft::engine::actor::ReplicaStore;
use consensus_pbft::evidence::EvidenceLog;
use consensus_pbft::messages::PbftMessage;
use consensus_pbft::node::{start_node, NodeSpec, PbftNode, PbftSlots};
use consensus_pbft::PbftConfig;
use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The running PBFT nodes.
pub struct PbftNodes<SM: StateMachine>(Rc<RefCell<BTreeMap<NodeId, PbftNode<SM>>>>);

impl<SM: StateMachine> Clone for PbftNodes<SM> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<SM: StateMachine> PbftNodes<SM> {
    /// The running incarnation of `id`.
    pub fn get(&self, id: NodeId) -> Option<PbftNode<SM>> {
        self.0.borrow().get(&id).cloned()
    }
}

type BuildTier<SM, H> =
    dyn Fn(NodeId, Ordering<SM>, &mut SupervisorBuilder) -> Result<Tier<SM, H>, String>;

/// Starts simulated training replicas on PBFT. See the [module
/// documentation](self).
pub struct PbftReplicaSimFactory<SM: StateMachine, H> {
    cfg: PbftConfig,
    members: Vec<NodeId>,
    byzantine: BTreeMap<NodeId, Behaviour>,
    evidence: EvidenceLog,
    stores: BTreeMap<NodeId, ReplicaStore<SM>>,
    nodes: PbftNodes<SM>,
    replicas: Replicas<H>,
    build: Rc<BuildTier<SM, H>>,
}

impl<SM: StateMachine, H: Clone + 'static> PbftReplicaSimFactory<SM, H> {
    /// Replicas `members` with PBFT settings `cfg`; `build` adds a
    /// replica's training component to its tier (given the replica's
    /// ordering handle) and says how to build its state machine (which
    /// must start in the same state on every replica).
    pub fn new(
        cfg: PbftConfig,
        members: impl IntoIterator<Item = NodeId>,
        build: impl Fn(NodeId, Ordering<SM>, &mut SupervisorBuilder) -> Result<Tier<SM, H>, String>
            + 'static,
    ) -> Self {
        let mut members: Vec<NodeId> = members.into_iter().collect();
        members.sort_unstable();
        members.dedup();
        Self {
            cfg,
            members,
            byzantine: BTreeMap::new(),
            evidence: EvidenceLog::new(),
            stores: BTreeMap::new(),
            nodes: PbftNodes(Rc::new(RefCell::new(BTreeMap::new()))),
            replicas: Replicas::default(),
            build: Rc::new(build),
        }
    }

    /// Makes `node`'s replica Byzantine, lying as `behaviour`.
    #[must_use]
    pub fn with_byzantine(mut self, node: NodeId, behaviour: Behaviour) -> Self {
        self.byzantine.insert(node, behaviour);
        self
    }

    /// Evidence of Byzantine behaviour the correct replicas recorded.
    pub fn evidence(&self) -> &EvidenceLog {
        &self.evidence
    }

    /// The running PBFT nodes.
    pub fn pbft_nodes(&self) -> PbftNodes<SM> {
        self.nodes.clone()
    }
}

impl<SM: StateMachine, H: Clone + 'static> TrainingFactory<H> for PbftReplicaSimFactory<SM, H> {
    fn replicas(&self) -> Replicas<H> {
        self.replicas.clone()
    }
}

impl<SM: StateMachine, H: Clone + 'static> NodeFactory<PbftMessage>
    for PbftReplicaSimFactory<SM, H>
{
    fn start_node(&mut self, ctx: NodeContext<PbftMessage>) -> StartedNode<PbftMessage> {
        let id = ctx.id;
        let store = self.stores.entry(id).or_default().clone();
        let slots = match self.byzantine.get(&id) {
            Some(&behaviour) => byzantine::slots::<SM>(behaviour),
            None => PbftSlots::default(),
        };
        let mut tree = SupervisorBuilder::new(id);
        let ordering = pbft_ordering(self.nodes.clone(), id);
        let tier = match (self.build)(id, ordering, &mut tree) {
            Ok(t) => t,
            // The tier's components have distinct names; a factory that
            // fails here is a bug of the run that built it.
            Err(e) => panic!("training tier of {id} could not be built: {e}"),
        };
        let spec = NodeSpec {
            cfg: self.cfg.replica(id, &self.members),
            store,
            make_state_machine: Arc::clone(&tier.make_sm),
            transport: ctx.transport,
            safety: SafetySink::noop(),
            evidence: self.evidence.clone(),
            epoch: Instant::now(),
        };
        let node = start_node(spec, &slots, None);
        let tier_supervisor = tree.start();
        let inbox = node.inbox.clone();
        let node_supervisor = node.supervisor.clone();
        self.nodes.0.borrow_mut().insert(id, node);
        self.replicas.insert(id, tier.handles);
        StartedNode::new(inbox, move || {
            tier_supervisor.do_send(Shutdown);
            node_supervisor.do_send(Shutdown);
        })
    }

    fn on_crash(&mut self, id: NodeId) {
        self.nodes.0.borrow_mut().remove(&id);
        self.replicas.remove(id);
    }
}

/// The PBFT adapter of [`Ordering`] for replica `home`: proposals go
/// through `home`'s client proxy as client `home` (one client per replica,
/// so requests of different replicas never share a client's timestamps)
/// and are retried until [`PROGRESS_TIMEOUT`]; reads run on `home`'s own
/// replica (PBFT keeps every correct replica's executed state identical).
pub fn pbft_ordering<SM: StateMachine>(nodes: PbftNodes<SM>, home: NodeId) -> Ordering<SM> {
    let n2 = nodes.clone();
    Ordering::new(
        move |cmd: SM::Command| -> OrderingFuture<SM::Output> {
            let nodes = nodes.clone();
            Box::pin(async move {
                let give_up = Instant::now() + PROGRESS_TIMEOUT;
                loop {
                    let remaining = give_up.saturating_duration_since(Instant::now());
                    if let Some(node) = nodes.get(home) {
                        match tokio::time::timeout(remaining, node.submit(ClientId(home.0), &cmd))
                            .await
                        {
                            Ok(Ok(out)) => return Ok(out),
                            Ok(Err(e)) => tracing::debug!(error = %e, "PBFT submission failed"),
                            Err(_) => {}
                        }
                    }
                    if Instant::now() >= give_up {
                        return Err(OrderingError::NoProgress(PROGRESS_TIMEOUT));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        },
        move |query: Query<SM>| -> OrderingFuture<Box<dyn Any + Send>> {
            let nodes = n2.clone();
            Box::pin(async move {
                let give_up = Instant::now() + PROGRESS_TIMEOUT;
                loop {
                    if let Some(answer) = nodes
                        .get(home)
                        .and_then(|n| n.with_state_machine(|sm| query(sm)))
                    {
                        return Ok(answer);
                    }
                    if Instant::now() >= give_up {
                        return Err(OrderingError::NoProgress(PROGRESS_TIMEOUT));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        },
    )
}
