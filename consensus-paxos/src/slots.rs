//! The slots of [`PaxosNodeBuilder`](crate::node::PaxosNodeBuilder): one per
//! component (Acceptor, Proposer, Learner, ballot leader election), each
//! filled by the stock actor unless the builder is given another.
//!
//! A slot holds a factory (`Fn`, `Send + Sync`, shared by reference count)
//! that gets the node's [`SlotContext`] and returns a [`Component`]: the
//! actor to supervise and the handles the rest of the node reaches it by.
//! The node starts it under its supervisor with the stock component's name
//! ([`components`](crate::node::components)), so restarts, `inject_panic`
//! and the simulation treat a replacement like the stock actor.
//!
//! # The contract
//!
//! Components talk only through the messages of
//! [`wiring`](crate::wiring): peers' messages come as
//! [`PeerMessage`]s from the router (or straight from the node's own
//! components, for a message a node sends itself); local messages go
//! through [`SlotContext::bus`] straight to the component that handles
//! them (the node binds each [`LocalRecipient`] to the handle the slot's
//! factory returned, once every component is built). A replacement
//! handles the same messages as the stock component it stands for.
//!
//! # Example: an acceptor of your own
//!
//! ```no_run
//! use consensus_actors::supervision::ChildSlot;
//! use consensus_paxos::acceptor::Acceptor;
//! use consensus_paxos::slots::{AcceptorHandles, AcceptorSlot, Component, SlotContext};
//!
//! // The stock actor stands in for yours: build any actor from the context.
//! let slot = AcceptorSlot::new(|ctx: &SlotContext| {
//!     let child = ChildSlot::<Acceptor<_>>::new();
//!     let addr = child.address();
//!     let actor = Acceptor::new(ctx.id, ctx.acceptor_store.clone(), ctx.transport.clone(), ctx.safety.clone(), ctx.fail.clone());
//!     Component::new(child, actor, AcceptorHandles {
//!         peer: addr.clone().recipient(),
//!         direct: Some(addr.clone().recipient()),
//!         compact: Some(addr.clone().recipient()),
//!         panic: Some(addr.recipient()),
//!     })
//! });
//! ```

use crate::acceptor::{AcceptRecord, Acceptor, AcceptorHardState, DirectRequest};
use crate::config::{Mode, PaxosConfig};
use crate::election::BallotLeaderElection;
use crate::learner::{
    ChosenRecord, GetLearnerState, GetLearnerStatus, Learner, LearnerOutputs, TakeSnapshot,
};
use crate::messages::PaxosMessage;
use crate::proposer::{GetProposerStatus, Proposer, ProposerOutputs};
use crate::router::RouterTargets;
use crate::safety::PaxosEvent;
use crate::types::Configurations;
use crate::wiring::{
    Abandon, BallotTooLow, Compact, Configured, Decided, DrainSubmissions, FeedReady, InjectPanic,
    LeaderChange, LearnerNews, LocalFeed, LocalRecipient, PeerMessage, Proposed, Reconfigure,
    SubmissionQueue, Submit,
};
use actix::prelude::*;
use consensus_actors::safety::SafetySink;
use consensus_actors::sim::TraceHandle;
use consensus_actors::storage::MemStorage;
use consensus_actors::supervision::{ChildSlot, FailNode, SupervisionError, SupervisorBuilder};
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::NodeId;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The stock Acceptor's store (crash-aware, in memory).
pub type AcceptorStore = MemStorage<AcceptorHardState, AcceptRecord>;

/// The stock Proposer's store (the highest ballot it used).
pub type ProposerStore = MemStorage<crate::types::Ballot, ()>;

/// The stock Learner's store.
pub type LearnerStore = MemStorage<(), ChosenRecord>;

/// The local messages: each goes straight to the component that handles
/// it (bound by the node once every component is built). The two busiest
/// are [`LocalFeed`]s, which cost no mailbox message when their consumer
/// takes them itself.
#[derive(Clone, Default)]
pub struct NodeBus {
    /// To the Learner: what the Proposer proposed.
    pub proposed: LocalFeed<Proposed>,
    /// To the Learner.
    pub abandon: LocalRecipient<Abandon>,
    /// To the Proposer: the Learner's decisions and configurations, in
    /// order.
    pub news: LocalFeed<LearnerNews>,
    /// To the Proposer.
    pub leader_change: LocalRecipient<LeaderChange>,
    /// To the election.
    pub ballot_too_low: LocalRecipient<BallotTooLow>,
    /// To the Acceptor (unbound: an acceptor that keeps everything).
    pub compact: LocalRecipient<Compact>,
    /// To the election (unbound: a fixed membership).
    pub configured_election: LocalRecipient<Configured>,
}

impl NodeBus {
    /// Tells the Proposer and the election of `configs`.
    pub fn configured(&self, configs: Configured) {
        if self.configured_election.is_bound() {
            self.configured_election.do_send(configs.clone());
        }
        self.news.send_urgent(LearnerNews::Configured(configs));
    }
}

/// What a slot's factory gets.
#[derive(Clone)]
pub struct SlotContext {
    /// The node.
    pub id: NodeId,
    /// The settings.
    pub cfg: PaxosConfig,
    /// Every member, this node included, sorted.
    pub members: Vec<NodeId>,
    /// The acceptors from slot 1 (a node added to a running cluster is
    /// not among them; its Learner learns the changes).
    pub configs: Configurations,
    /// The node's seed (a restart reseeds deterministically from it).
    pub seed: u64,
    /// Times count from here.
    pub epoch: Instant,
    /// Messages to peers (sent as this node).
    pub transport: Transport<PaxosMessage>,
    /// Where safety events go.
    pub safety: SafetySink<PaxosEvent>,
    /// The run's trace (simulations).
    pub trace: Option<TraceHandle>,
    /// The local messages (straight to their components).
    pub bus: NodeBus,
    /// Client commands on their way to the Proposer without a mailbox
    /// message each (see [`SubmissionQueue`]); a Proposer that offers
    /// [`ProposerHandles::drain`] takes them from here.
    pub submissions: Arc<SubmissionQueue>,
    /// The Acceptor's durable store (kept across crashes by the plug-in).
    pub acceptor_store: AcceptorStore,
    /// The Learner's log.
    pub learner_store: LearnerStore,
    /// The Proposer's ballots (kept across crashes by the plug-in).
    pub proposer_store: ProposerStore,
    /// Fails the node (a store that cannot be trusted).
    pub fail: Option<Recipient<FailNode>>,
    /// Each component's peer messages (bound once every component is
    /// built): where a component that is the node's inbox
    /// ([`LearnerHandles::inbox`]) hands the messages it does not handle.
    pub peers: RouterTargets,
}

/// What the node needs from its Acceptor.
pub struct AcceptorHandles {
    /// Prepare and Accept from peers.
    pub peer: Recipient<PeerMessage>,
    /// A request answered to the caller instead of the network (the engine's
    /// `request_vote`); `None`: not offered.
    pub direct: Option<Recipient<DirectRequest>>,
    /// The Learner's compactions (`None`: it keeps every acceptance).
    pub compact: Option<Recipient<Compact>>,
    /// Fault injection (`None`: not offered).
    pub panic: Option<Recipient<InjectPanic>>,
}

/// What the node needs from its Proposer.
pub struct ProposerHandles {
    /// Promise and Nack from peers.
    pub peer: Recipient<PeerMessage>,
    /// Client commands, one message each (used when `drain` is `None`).
    pub submit: Recipient<Submit>,
    /// Wakes the Proposer to take the commands queued in
    /// [`SlotContext::submissions`] (`None`: it takes [`Submit`]s only).
    pub drain: Option<Recipient<DrainSubmissions>>,
    /// Configuration changes (`None`: not offered).
    pub reconfigure: Option<Recipient<Reconfigure>>,
    /// The Learner's configurations.
    pub configured: Recipient<Configured>,
    /// The Learner's decisions.
    pub decided: Recipient<Decided>,
    /// `Some`: it takes the Learner's decisions and configurations from
    /// [`NodeBus::news`] itself, before each of its inputs, and asks to be
    /// woken (through this) when it waits for one; `decided` and
    /// `configured` are then not used. `None`: one message each.
    pub takes_news: Option<Recipient<FeedReady<LearnerNews>>>,
    /// The election's leaders.
    pub leader_change: Recipient<LeaderChange>,
    /// Its status (`None`: not offered).
    pub status: Option<Recipient<GetProposerStatus>>,
    /// Fault injection (`None`: not offered).
    pub panic: Option<Recipient<InjectPanic>>,
}

/// What the node needs from its Learner.
pub struct LearnerHandles {
    /// Accepted, Chosen, Commit, CatchUp and CatchUpReply from peers, and
    /// (Multi-Paxos) a copy of each peer's Accept when the router is the
    /// inbox.
    pub peer: Recipient<PeerMessage>,
    /// The Proposer's proposals (and the answers to keep).
    pub proposed: Recipient<Proposed>,
    /// `Some`: it takes the proposals from [`NodeBus::proposed`] itself,
    /// before each of its inputs (a proposal matters to it only once an
    /// acceptor answers it), and asks to be woken through this when it
    /// waits for one; `proposed` is then not used. `None`: one message
    /// each.
    pub takes_proposed: Option<Recipient<FeedReady<Proposed>>>,
    /// `Some`: it takes its own acceptor's Accepted from
    /// [`RouterTargets::own_accepted`] itself, before each of its inputs,
    /// and asks to be woken through this when one more acceptance could
    /// choose a slot (a leader's own acceptance then usually rides along
    /// with the first follower's, one mailbox message fewer per slot).
    /// `None`: they come as [`PeerMessage`]s like the others.
    pub takes_own_accepted: Option<Recipient<FeedReady<PeerMessage>>>,
    /// The node's inbox, when the Learner offers to be it (as Raft's
    /// LogReplicator is): the network delivers every envelope of the node
    /// here; the Learner handles its own messages (most of a node's
    /// traffic: Accepted at a leader, the leader's Accepts at a follower,
    /// which it keeps before handing them on) and hands the
    /// others to [`SlotContext::peers`], one mailbox hop fewer than through
    /// the router. `None`: the router is the inbox.
    pub inbox: Option<Recipient<Envelope<PaxosMessage>>>,
    /// Answers to give up.
    pub abandon: Recipient<Abandon>,
    /// Its status (`None`: not offered).
    pub status: Option<Recipient<GetLearnerStatus>>,
    /// Its state machine (`None`: not offered).
    pub state: Option<Recipient<GetLearnerState>>,
    /// A snapshot taken on demand (`None`: not offered; the engine's
    /// `create_snapshot` then answers Unsupported).
    pub snapshot: Option<Recipient<TakeSnapshot>>,
    /// Fault injection (`None`: not offered).
    pub panic: Option<Recipient<InjectPanic>>,
}

/// What the node needs from its ballot leader election.
pub struct ElectionHandles {
    /// Heartbeats from peers.
    pub peer: Recipient<PeerMessage>,
    /// The Proposer's refusals.
    pub ballot_too_low: Recipient<BallotTooLow>,
    /// The Learner's configurations (`None`: a fixed membership).
    pub configured: Option<Recipient<Configured>>,
    /// Fault injection (`None`: not offered).
    pub panic: Option<Recipient<InjectPanic>>,
}

type StartChild = Box<dyn FnOnce(&mut SupervisorBuilder, &str) -> Result<(), SupervisionError>>;

/// A component built by a slot's factory: the child to supervise and the
/// handles `H` the node reaches it by.
pub struct Component<H> {
    pub(crate) handles: H,
    pub(crate) start: StartChild,
}

impl<H> Component<H> {
    /// `actor`, to run in `slot` (created by the factory so the handles can
    /// be taken from its address first).
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

    /// The handles, to change before the node takes them (a stock
    /// component offered without one of its optional handles, say).
    pub fn handles_mut(&mut self) -> &mut H {
        &mut self.handles
    }
}

type Factory<H> = dyn Fn(&SlotContext) -> Component<H> + Send + Sync;

/// A slot: the factory of one component. Cheap to clone.
pub struct Slot<H>(Arc<Factory<H>>);

impl<H> Clone for Slot<H> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<H> Slot<H> {
    /// A slot filled by what `factory` builds.
    pub fn new(factory: impl Fn(&SlotContext) -> Component<H> + Send + Sync + 'static) -> Self {
        Self(Arc::new(factory))
    }

    /// Builds the component for `ctx`.
    pub fn build(&self, ctx: &SlotContext) -> Component<H> {
        (self.0)(ctx)
    }
}

/// The Acceptor slot.
pub type AcceptorSlot = Slot<AcceptorHandles>;
/// The Proposer slot.
pub type ProposerSlot = Slot<ProposerHandles>;
/// The Learner slot.
pub type LearnerSlot = Slot<LearnerHandles>;
/// The ballot leader election slot.
pub type ElectionSlot = Slot<ElectionHandles>;

impl Default for AcceptorSlot {
    /// The stock [`Acceptor`].
    fn default() -> Self {
        Slot::new(|ctx: &SlotContext| {
            let child = ChildSlot::<Acceptor<AcceptorStore>>::new();
            let addr = child.address();
            let actor = Acceptor::new(
                ctx.id,
                ctx.acceptor_store.clone(),
                ctx.transport.clone(),
                ctx.safety.clone(),
                ctx.fail.clone(),
            );
            Component::new(
                child,
                actor,
                AcceptorHandles {
                    peer: addr.clone().recipient(),
                    direct: Some(addr.clone().recipient()),
                    compact: Some(addr.clone().recipient()),
                    panic: Some(addr.recipient()),
                },
            )
        })
    }
}

impl Default for ProposerSlot {
    /// The stock [`Proposer`].
    fn default() -> Self {
        Slot::new(|ctx: &SlotContext| {
            let mut child = ChildSlot::<Proposer<ProposerStore>>::new();
            child
                .context_mut()
                .set_mailbox_capacity(ctx.cfg.max_pending);
            let addr = child.address();
            let actor = Proposer::new(
                ctx.proposer_store.clone(),
                ctx.fail.clone(),
                ctx.id,
                ctx.cfg.clone(),
                ctx.members.clone(),
                ctx.seed,
                ctx.epoch,
                ctx.transport.clone(),
                ProposerOutputs {
                    proposed: ctx.bus.proposed.clone(),
                    abandon: ctx.bus.abandon.clone(),
                    ballot_too_low: ctx.bus.ballot_too_low.clone(),
                },
                ctx.safety.clone(),
            )
            .with_configurations(ctx.configs.clone())
            .with_submissions(Arc::clone(&ctx.submissions))
            .with_news(ctx.bus.news.clone())
            .with_trace(ctx.trace.clone());
            Component::new(
                child,
                actor,
                ProposerHandles {
                    peer: addr.clone().recipient(),
                    submit: addr.clone().recipient(),
                    drain: Some(addr.clone().recipient()),
                    reconfigure: Some(addr.clone().recipient()),
                    configured: addr.clone().recipient(),
                    decided: addr.clone().recipient(),
                    takes_news: Some(addr.clone().recipient()),
                    leader_change: addr.clone().recipient(),
                    status: Some(addr.clone().recipient()),
                    panic: Some(addr.recipient()),
                },
            )
        })
    }
}

impl Default for LearnerSlot {
    /// The stock [`Learner`].
    fn default() -> Self {
        Slot::new(|ctx: &SlotContext| {
            let child = ChildSlot::<Learner<LearnerStore>>::new();
            let addr = child.address();
            let actor = Learner::new(
                ctx.id,
                ctx.cfg.clone(),
                ctx.members.clone(),
                ctx.configs.clone(),
                ctx.epoch,
                ctx.learner_store.clone(),
                ctx.transport.clone(),
                LearnerOutputs {
                    news: ctx.bus.news.clone(),
                    compact: ctx.bus.compact.clone(),
                    configured: vec![ctx.bus.configured_election.clone()],
                },
                ctx.safety.clone(),
                ctx.fail.clone(),
            )
            .with_peers(ctx.peers.clone())
            .with_proposals(ctx.bus.proposed.clone())
            .with_own_accepted(ctx.peers.own_accepted.clone());
            Component::new(
                child,
                actor,
                LearnerHandles {
                    peer: addr.clone().recipient(),
                    proposed: addr.clone().recipient(),
                    takes_proposed: Some(addr.clone().recipient()),
                    takes_own_accepted: Some(addr.clone().recipient()),
                    inbox: Some(addr.clone().recipient()),
                    abandon: addr.clone().recipient(),
                    status: Some(addr.clone().recipient()),
                    state: Some(addr.clone().recipient()),
                    snapshot: Some(addr.clone().recipient()),
                    panic: Some(addr.recipient()),
                },
            )
        })
    }
}

impl Default for ElectionSlot {
    /// The stock [`BallotLeaderElection`] (silent in basic Paxos).
    fn default() -> Self {
        Slot::new(|ctx: &SlotContext| {
            let child = ChildSlot::<BallotLeaderElection>::new();
            let addr = child.address();
            let initial = ctx.configs.latest().1.to_vec();
            let majority = initial.len() / 2 + 1;
            let actor = BallotLeaderElection::new(
                ctx.id,
                initial,
                majority,
                Duration::from_millis(ctx.cfg.heartbeat_ms),
                ctx.cfg.mode == Mode::Multi,
                ctx.transport.clone(),
                ctx.bus.leader_change.clone(),
            );
            Component::new(
                child,
                actor,
                ElectionHandles {
                    peer: addr.clone().recipient(),
                    ballot_too_low: addr.clone().recipient(),
                    configured: Some(addr.clone().recipient()),
                    panic: Some(addr.recipient()),
                },
            )
        })
    }
}

/// The four slots of a node; the default fills each with the stock actor.
#[derive(Clone, Default)]
pub struct PaxosSlots {
    /// The Acceptor.
    pub acceptor: AcceptorSlot,
    /// The Proposer.
    pub proposer: ProposerSlot,
    /// The Learner.
    pub learner: LearnerSlot,
    /// The ballot leader election.
    pub election: ElectionSlot,
}

impl PaxosSlots {
    /// Replaces the Acceptor.
    #[must_use]
    pub fn with_acceptor(mut self, slot: AcceptorSlot) -> Self {
        self.acceptor = slot;
        self
    }

    /// Replaces the Proposer.
    #[must_use]
    pub fn with_proposer(mut self, slot: ProposerSlot) -> Self {
        self.proposer = slot;
        self
    }

    /// Replaces the Learner.
    #[must_use]
    pub fn with_learner(mut self, slot: LearnerSlot) -> Self {
        self.learner = slot;
        self
    }

    /// Replaces the ballot leader election.
    #[must_use]
    pub fn with_election(mut self, slot: ElectionSlot) -> Self {
        self.election = slot;
        self
    }
}
