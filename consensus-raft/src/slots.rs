//! The slots of [`RaftNodeBuilder`](crate::node::RaftNodeBuilder): one per
//! replaceable component (LeaderElection, MembershipManager,
//! SnapshotCompactor and the inbound router), each filled by the stock actor
//! unless the builder is given another.
//!
//! A slot holds a factory: a `Fn` (`Send + Sync`, cloned by reference count,
//! so an engine plug-in or a simulation factory can hold it and build every
//! node and every incarnation with it) that gets a documented context and
//! returns a [`Component`]: the actor to supervise (any actix actor with a
//! plain `Context` that is `Supervised`) and the handles the rest of the
//! node needs from it. The node starts the component under its supervisor
//! with the stock component's name ([`components`](crate::node::components)),
//! so strategies, restarts, `inject_panic` and the simulation treat a
//! replacement like the stock actor.
//!
//! # The contract with the owner
//!
//! The LogReplicator (not replaceable: it owns term, vote, log and state
//! machine) is reached through [`SlotContext::owner`]:
//!
//! * its requests ([`OwnerHandles`]), all term-carrying: a request based on a
//!   state that no longer holds is refused with a [`Refusal`](crate::error::Refusal);
//! * its event stream: a component sends
//!   [`Subscribe`](crate::actors::Subscribe) in `started()` (again after
//!   every restart) naming what it wants: event kinds, which progress events
//!   (every one, or a filter such as the stock compactor's threshold), and
//!   optionally a [`LeaderContact`](crate::actors::LeaderContact) for the
//!   repeated contacts from the leader. The owner sends the current state
//!   first, then the events, in order, through the same channel. Nothing
//!   else ties two components together.
//!
//! # Example: the lowest id always campaigns
//!
//! ```no_run
//! use consensus_actors::kv::{KvCommand, KvStore};
//! use consensus_actors::supervision::ChildSlot;
//! use consensus_raft::actors::LeaderElection;
//! use consensus_raft::slots::{Component, ElectionHandles, Slot, SlotContext};
//!
//! // Here the stock actor stands in for one of your own: build any actor
//! // from the context, and hand out the recipients of its messages.
//! let slot = Slot::new(|ctx: &SlotContext<KvCommand>| {
//!     let child = ChildSlot::<LeaderElection<KvCommand>>::new();
//!     let addr = child.address();
//!     let actor = LeaderElection::new(ctx.id, ctx.cfg.clone(), ctx.seed, ctx.owner.clone(), ctx.epoch);
//!     Component::new(child, actor, ElectionHandles {
//!         peer: addr.clone().recipient(),
//!         transfer: addr.clone().recipient(),
//!         panic: Some(addr.recipient()),
//!     })
//! });
//! # let _: consensus_raft::slots::LeaderElectionSlot<KvCommand> = slot;
//! ```

use crate::actors::{
    ChangeMembership, InjectPanic, LeaderElection, MembershipManager, OwnerHandles, PeerMessage,
    RaftRouter, ReplicatedCommand, SnapshotCompactor, TransferLeadership,
};
use crate::config::RaftConfig;
use crate::messages::RaftMessage;
use actix::prelude::*;
use consensus_actors::supervision::{ChildSlot, SupervisionError, SupervisorBuilder};
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::NodeId;
use std::sync::Arc;
use tokio::time::Instant;

/// What a slot's factory gets to build LeaderElection, MembershipManager or
/// SnapshotCompactor.
#[derive(Clone)]
pub struct SlotContext<C: ReplicatedCommand> {
    /// The node.
    pub id: NodeId,
    /// The node's settings.
    pub cfg: RaftConfig,
    /// The node's seed (the stock LeaderElection draws its timeouts from
    /// it; a restart reseeds deterministically from it).
    pub seed: u64,
    /// Times count from here (the stock actors give the cores microseconds
    /// since `epoch`).
    pub epoch: Instant,
    /// The owner of term, vote and log: its requests and its event stream
    /// ([`OwnerHandles::subscribe`]).
    pub owner: OwnerHandles,
    /// Messages to peers (sent as this node).
    pub transport: Transport<RaftMessage<C>>,
}

/// What the router slot's factory gets: where each inbound message goes.
#[derive(Clone)]
pub struct RouterContext<C: ReplicatedCommand> {
    /// The node (envelopes for another node are dropped).
    pub id: NodeId,
    /// The LogReplicator: RequestVote, AppendEntries and their responses.
    pub replicator: Recipient<PeerMessage<C>>,
    /// LeaderElection: vote responses and TimeoutNow.
    pub election: Recipient<PeerMessage<C>>,
    /// SnapshotCompactor: InstallSnapshot and its responses.
    pub compactor: Recipient<PeerMessage<C>>,
}

/// What the node needs from its LeaderElection.
pub struct ElectionHandles<C: ReplicatedCommand> {
    /// Vote responses and TimeoutNow from peers.
    pub peer: Recipient<PeerMessage<C>>,
    /// The client API's `transfer_leadership`.
    pub transfer: Recipient<TransferLeadership>,
    /// Fault injection (`None`: the component offers none, and
    /// `inject_panic` answers false for it).
    pub panic: Option<Recipient<InjectPanic>>,
}

/// What the node needs from its MembershipManager.
pub struct MembershipHandles {
    /// The client API's `add_node` and `remove_node`.
    pub change: Recipient<ChangeMembership>,
    /// Fault injection (`None`: none offered).
    pub panic: Option<Recipient<InjectPanic>>,
}

/// What the node needs from its SnapshotCompactor.
pub struct CompactorHandles<C: ReplicatedCommand> {
    /// InstallSnapshot and its responses from peers.
    pub peer: Recipient<PeerMessage<C>>,
    /// Fault injection (`None`: none offered).
    pub panic: Option<Recipient<InjectPanic>>,
}

/// What the node needs from its router.
pub struct RouterHandles<C: ReplicatedCommand> {
    /// Envelopes the LogReplicator (the node's inbox) does not handle
    /// itself.
    pub inbox: Recipient<Envelope<RaftMessage<C>>>,
}

type StartChild = Box<dyn FnOnce(&mut SupervisorBuilder, &str) -> Result<(), SupervisionError>>;

/// A component built by a slot's factory: the child the node supervises and
/// the handles `H` the rest of the node uses to reach it.
pub struct Component<H> {
    pub(crate) handles: H,
    pub(crate) start: StartChild,
}

impl<H> Component<H> {
    /// `actor`, to run in `slot` (created by the factory, so that the
    /// handles can be taken from its address before the actor starts).
    pub fn new<A>(slot: ChildSlot<A>, actor: A, handles: H) -> Self
    where
        A: Actor<Context = Context<A>> + Supervised,
    {
        Self {
            handles,
            start: Box::new(move |tree, name| tree.start_child(name, slot, actor).map(|_| ())),
        }
    }

    /// The handles.
    pub fn handles(&self) -> &H {
        &self.handles
    }
}

/// What a slot holds: a factory building a component from a context.
type Factory<Ctx, H> = dyn Fn(&Ctx) -> Component<H> + Send + Sync;

/// A slot: the factory of one component (see the [module
/// documentation](self)). Cheap to clone.
pub struct Slot<Ctx, H>(Arc<Factory<Ctx, H>>);

impl<Ctx, H> Clone for Slot<Ctx, H> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<Ctx, H> Slot<Ctx, H> {
    /// A slot filled by what `factory` builds.
    pub fn new(factory: impl Fn(&Ctx) -> Component<H> + Send + Sync + 'static) -> Self {
        Self(Arc::new(factory))
    }

    /// Builds the component for `ctx`.
    pub fn build(&self, ctx: &Ctx) -> Component<H> {
        (self.0)(ctx)
    }
}

/// The LeaderElection slot.
pub type LeaderElectionSlot<C> = Slot<SlotContext<C>, ElectionHandles<C>>;
/// The MembershipManager slot.
pub type MembershipManagerSlot<C> = Slot<SlotContext<C>, MembershipHandles>;
/// The SnapshotCompactor slot.
pub type SnapshotCompactorSlot<C> = Slot<SlotContext<C>, CompactorHandles<C>>;
/// The router slot.
pub type RouterSlot<C> = Slot<RouterContext<C>, RouterHandles<C>>;

impl<C: ReplicatedCommand> Default for LeaderElectionSlot<C> {
    /// The stock [`LeaderElection`].
    fn default() -> Self {
        Slot::new(|ctx: &SlotContext<C>| {
            let child = ChildSlot::<LeaderElection<C>>::new();
            let addr = child.address();
            let actor = LeaderElection::new(
                ctx.id,
                ctx.cfg.clone(),
                ctx.seed,
                ctx.owner.clone(),
                ctx.epoch,
            );
            Component::new(
                child,
                actor,
                ElectionHandles {
                    peer: addr.clone().recipient(),
                    transfer: addr.clone().recipient(),
                    panic: Some(addr.recipient()),
                },
            )
        })
    }
}

impl<C: ReplicatedCommand> Default for MembershipManagerSlot<C> {
    /// The stock [`MembershipManager`].
    fn default() -> Self {
        Slot::new(|ctx: &SlotContext<C>| {
            let child = ChildSlot::<MembershipManager>::new();
            let addr = child.address();
            let actor =
                MembershipManager::new(ctx.id, ctx.cfg.clone(), ctx.owner.clone(), ctx.epoch);
            Component::new(
                child,
                actor,
                MembershipHandles {
                    change: addr.clone().recipient(),
                    panic: Some(addr.recipient()),
                },
            )
        })
    }
}

impl<C: ReplicatedCommand> Default for SnapshotCompactorSlot<C> {
    /// The stock [`SnapshotCompactor`].
    fn default() -> Self {
        Slot::new(|ctx: &SlotContext<C>| {
            let child = ChildSlot::<SnapshotCompactor<C>>::new();
            let addr = child.address();
            let actor = SnapshotCompactor::new(
                ctx.id,
                ctx.cfg.clone(),
                ctx.owner.clone(),
                ctx.transport.clone(),
                ctx.epoch,
            );
            Component::new(
                child,
                actor,
                CompactorHandles {
                    peer: addr.clone().recipient(),
                    panic: Some(addr.recipient()),
                },
            )
        })
    }
}

impl<C: ReplicatedCommand> Default for RouterSlot<C> {
    /// The stock [`RaftRouter`].
    fn default() -> Self {
        Slot::new(|ctx: &RouterContext<C>| {
            let child = ChildSlot::<RaftRouter<C>>::new();
            let addr = child.address();
            let actor = RaftRouter::new(
                ctx.id,
                ctx.replicator.clone(),
                ctx.election.clone(),
                ctx.compactor.clone(),
            );
            Component::new(
                child,
                actor,
                RouterHandles {
                    inbox: addr.recipient(),
                },
            )
        })
    }
}

/// The four slots of a node; the default fills each with the stock actor.
/// Cheap to clone, `Send + Sync`: hold one in a factory or a plug-in and
/// give it to every node.
pub struct RaftSlots<C: ReplicatedCommand> {
    /// LeaderElection.
    pub leader_election: LeaderElectionSlot<C>,
    /// MembershipManager.
    pub membership_manager: MembershipManagerSlot<C>,
    /// SnapshotCompactor.
    pub snapshot_compactor: SnapshotCompactorSlot<C>,
    /// The inbound router.
    pub router: RouterSlot<C>,
}

impl<C: ReplicatedCommand> Clone for RaftSlots<C> {
    fn clone(&self) -> Self {
        Self {
            leader_election: self.leader_election.clone(),
            membership_manager: self.membership_manager.clone(),
            snapshot_compactor: self.snapshot_compactor.clone(),
            router: self.router.clone(),
        }
    }
}

impl<C: ReplicatedCommand> Default for RaftSlots<C> {
    fn default() -> Self {
        Self {
            leader_election: Slot::default(),
            membership_manager: Slot::default(),
            snapshot_compactor: Slot::default(),
            router: Slot::default(),
        }
    }
}

impl<C: ReplicatedCommand> RaftSlots<C> {
    /// Replaces LeaderElection.
    #[must_use]
    pub fn with_leader_election(mut self, slot: LeaderElectionSlot<C>) -> Self {
        self.leader_election = slot;
        self
    }

    /// Replaces MembershipManager.
    #[must_use]
    pub fn with_membership_manager(mut self, slot: MembershipManagerSlot<C>) -> Self {
        self.membership_manager = slot;
        self
    }

    /// Replaces SnapshotCompactor.
    #[must_use]
    pub fn with_snapshot_compactor(mut self, slot: SnapshotCompactorSlot<C>) -> Self {
        self.snapshot_compactor = slot;
        self
    }

    /// Replaces the router.
    #[must_use]
    pub fn with_router(mut self, slot: RouterSlot<C>) -> Self {
        self.router = slot;
        self
    }
}
