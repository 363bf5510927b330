//! Training replicas on Raft in the deterministic
//! [`Simulation`](consensus_actors::sim::Simulation): each replica is a
//! supervised Raft node (the ordering layer, its state machine a
//! [`GradientConsensus`](crate::GradientConsensus) or
//! [`ParameterSync`](crate::parameter_sync::ParameterSync)) plus a training
//! tier under its own supervisor, built from [`TrainingSlots`](crate::replica::TrainingSlots).
//!
//! The factory keeps each replica's Raft storage across incarnations (a
//! crash loses unsynced writes, a restart rebuilds both tiers), and gives
//! each replica's state machine the `applied` recipient of that replica's
//! component, so the component serves what its own replica applied.

use crate::replica::{Ordering, OrderingError, OrderingFuture, Query};
use actix::Recipient;
use consensus_actors::kv::StateMachine;
use consensus_actors::sim::{NodeContext, NodeFactory, StartedNode};
use consensus_actors::supervision::{Shutdown, SupervisorBuilder};
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_raft::actors::RaftStateMachine;
use consensus_raft::configuration::Membership;
use consensus_raft::error::ProposeError;
use consensus_raft::messages::RaftMessage;
use consensus_raft::node::{RaftNode, RaftNodeBuilder};
use consensus_raft::sim::SimStorage;
use consensus_raft::RaftConfig;
use rand::Rng;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type Command<SM> = <SM as StateMachine>::Command;

/// How long the Raft adapter keeps retrying without a leader.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// The training tiers of the running replicas (their components'
/// handles `H`), shared with the run's driver (single-threaded). Whatever
/// the ordering layer, a driver reaches replicas only through these.
pub struct Replicas<H>(Rc<RefCell<BTreeMap<NodeId, H>>>);

impl<H> Clone for Replicas<H> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<H> Default for Replicas<H> {
    fn default() -> Self {
        Self(Rc::new(RefCell::new(BTreeMap::new())))
    }
}

impl<H: Clone> Replicas<H> {
    /// The running incarnation of `id`'s tier.
    pub fn get(&self, id: NodeId) -> Option<H> {
        self.0.borrow().get(&id).cloned()
    }

    /// Every running replica's tier, in id order.
    pub fn all(&self) -> Vec<(NodeId, H)> {
        self.0
            .borrow()
            .iter()
            .map(|(i, h)| (*i, h.clone()))
            .collect()
    }

    /// The ids of the running replicas.
    pub fn ids(&self) -> Vec<NodeId> {
        self.0.borrow().keys().copied().collect()
    }

    /// `id`'s training tier, or the next running replica's (in id order,
    /// wrapping) when `id` is down.
    pub fn tier_near(&self, id: NodeId) -> Option<(NodeId, H)> {
        let map = self.0.borrow();
        map.range(id..)
            .chain(map.range(..id))
            .next()
            .map(|(i, h)| (*i, h.clone()))
    }

    pub(crate) fn insert(&self, id: NodeId, tier: H) {
        self.0.borrow_mut().insert(id, tier);
    }

    pub(crate) fn remove(&self, id: NodeId) {
        self.0.borrow_mut().remove(&id);
    }
}

/// A simulation factory that starts training replicas: what a run's driver
/// needs from it, whatever the ordering layer.
pub trait TrainingFactory<H> {
    /// The running replicas' training tiers.
    fn replicas(&self) -> Replicas<H>;
}

/// The running Raft nodes (the Raft adapter's view of the cluster).
pub struct RaftNodes<SM: RaftStateMachine>(Rc<RefCell<BTreeMap<NodeId, RaftNode<SM>>>>);

impl<SM: RaftStateMachine> Clone for RaftNodes<SM> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<SM: RaftStateMachine> RaftNodes<SM> {
    /// The running incarnation of `id`.
    pub fn get(&self, id: NodeId) -> Option<RaftNode<SM>> {
        self.0.borrow().get(&id).cloned()
    }

    /// Every running node, in id order.
    pub fn all(&self) -> Vec<RaftNode<SM>> {
        self.0.borrow().values().cloned().collect()
    }
}

/// What a replica's training tier gives the factory: the handles to
/// register and how to build the replica's state machine (wired to the
/// tier's `applied` recipient).
pub struct Tier<SM, H> {
    /// The component's handles.
    pub handles: H,
    /// Builds an empty state machine for the Raft node.
    pub make_sm: Arc<dyn Fn() -> SM + Send + Sync>,
}

type BuildTier<SM, H> =
    dyn Fn(NodeId, Ordering<SM>, &mut SupervisorBuilder) -> Result<Tier<SM, H>, String>;

/// Starts simulated training replicas. See the [module documentation](self).
pub struct ReplicaSimFactory<SM: RaftStateMachine, H> {
    cfg: RaftConfig,
    bootstrap: BTreeSet<NodeId>,
    stores: BTreeMap<NodeId, SimStorage<Command<SM>>>,
    nodes: RaftNodes<SM>,
    replicas: Replicas<H>,
    build: Rc<BuildTier<SM, H>>,
}

impl<SM: RaftStateMachine, H: Clone + 'static> ReplicaSimFactory<SM, H> {
    /// Replicas `bootstrap` forming the Raft configuration; `build` adds a
    /// replica's training component to its tier (given the replica's
    /// ordering handle) and says how to build its state machine.
    pub fn new(
        cfg: RaftConfig,
        bootstrap: impl IntoIterator<Item = NodeId>,
        build: impl Fn(NodeId, Ordering<SM>, &mut SupervisorBuilder) -> Result<Tier<SM, H>, String>
            + 'static,
    ) -> Self {
        Self {
            cfg,
            bootstrap: bootstrap.into_iter().collect(),
            stores: BTreeMap::new(),
            nodes: RaftNodes(Rc::new(RefCell::new(BTreeMap::new()))),
            replicas: Replicas::default(),
            build: Rc::new(build),
        }
    }

    /// The running Raft nodes.
    pub fn raft_nodes(&self) -> RaftNodes<SM> {
        self.nodes.clone()
    }
}

impl<SM: RaftStateMachine, H: Clone + 'static> TrainingFactory<H> for ReplicaSimFactory<SM, H> {
    fn replicas(&self) -> Replicas<H> {
        self.replicas.clone()
    }
}

impl<SM: RaftStateMachine, H: Clone + 'static> NodeFactory<RaftMessage<Command<SM>>>
    for ReplicaSimFactory<SM, H>
{
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
        let mut tree = SupervisorBuilder::new(id);
        let ordering = raft_ordering(self.nodes.clone());
        let tier = match (self.build)(id, ordering, &mut tree) {
            Ok(t) => t,
            // The tier's components have distinct names; a factory that
            // fails here is a bug of the run that built it.
            Err(e) => panic!("training tier of {id} could not be built: {e}"),
        };
        let make_sm = Arc::clone(&tier.make_sm);
        let raft = RaftNodeBuilder::new(
            id,
            self.cfg.clone(),
            initial,
            storage,
            move || make_sm(),
            ctx.transport,
        )
        .seed(ctx.rng.random())
        .trace(ctx.trace.clone())
        .start();
        let tier_supervisor = tree.start();
        let inbox: Recipient<_> = raft.inbox();
        let raft_supervisor = raft.supervisor().clone();
        self.nodes.0.borrow_mut().insert(id, raft);
        self.replicas.insert(id, tier.handles);
        StartedNode::new(inbox, move || {
            tier_supervisor.do_send(Shutdown);
            raft_supervisor.do_send(Shutdown);
        })
    }

    fn on_crash(&mut self, id: NodeId) {
        self.nodes.0.borrow_mut().remove(&id);
        self.replicas.remove(id);
        if let Some(store) = self.stores.get(&id) {
            store.crash();
        }
    }
}

/// The Raft adapter of [`Ordering`]: proposals and reads go to the leader
/// (found by asking the running replicas, remembered, followed on
/// `NotLeader` hints), retried until [`PROGRESS_TIMEOUT`] passes without a
/// leader answering.
pub fn raft_ordering<SM: RaftStateMachine>(replicas: RaftNodes<SM>) -> Ordering<SM> {
    let leader: Rc<Cell<Option<NodeId>>> = Rc::new(Cell::new(None));
    let (r2, l2) = (replicas.clone(), Rc::clone(&leader));
    Ordering::new(
        move |cmd: Command<SM>| -> OrderingFuture<SM::Output> {
            let (replicas, leader) = (replicas.clone(), Rc::clone(&leader));
            Box::pin(async move {
                let give_up = Instant::now() + PROGRESS_TIMEOUT;
                loop {
                    let node = find_leader(&replicas, &leader, give_up).await?;
                    match node.propose(cmd.clone(), ClientId(1)).await {
                        Ok(out) => return Ok(out),
                        Err(ProposeError::NotLeader { leader: Some(l) })
                            if replicas.get(l).is_some() =>
                        {
                            leader.set(Some(l));
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "proposal failed; finding the leader");
                            leader.set(None);
                            if Instant::now() > give_up {
                                return Err(OrderingError::NoProgress(PROGRESS_TIMEOUT));
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        },
        move |query: Query<SM>| -> OrderingFuture<Box<dyn Any + Send>> {
            let (replicas, leader) = (r2.clone(), Rc::clone(&l2));
            Box::pin(async move {
                let give_up = Instant::now() + PROGRESS_TIMEOUT;
                loop {
                    let node = find_leader(&replicas, &leader, give_up).await?;
                    let q = Arc::clone(&query);
                    match node.read(move |sm: &SM| q(sm)).await {
                        Ok(answer) => return Ok(answer),
                        Err(e) => {
                            tracing::debug!(error = %e, "read failed; finding the leader");
                            leader.set(None);
                            if Instant::now() > give_up {
                                return Err(OrderingError::NoProgress(PROGRESS_TIMEOUT));
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        },
    )
}

/// The remembered leader if it still runs, else the first running replica
/// that reports itself leader.
async fn find_leader<SM: RaftStateMachine>(
    replicas: &RaftNodes<SM>,
    leader: &Cell<Option<NodeId>>,
    give_up: Instant,
) -> Result<RaftNode<SM>, OrderingError> {
    loop {
        if let Some(r) = leader.get().and_then(|l| replicas.get(l)) {
            return Ok(r);
        }
        for r in replicas.all() {
            if r.status()
                .await
                .is_some_and(|s| s.role == NodeState::Leader)
            {
                leader.set(Some(r.id()));
                return Ok(r);
            }
        }
        if Instant::now() > give_up {
            return Err(OrderingError::NoProgress(PROGRESS_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
