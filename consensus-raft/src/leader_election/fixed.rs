//! [`StaticLeaderElection`]: a LeaderElection with a designated leader, for
//! experiments and as a template for election rules of your own.
//!
//! The lowest voter of the current configuration campaigns whenever it is
//! not leader and knows no leader; nobody else ever does. There are no
//! randomized timeouts and no check-quorum. Safety is untouched (the
//! LogReplicator still owns term, vote and log and refuses stale
//! requests); only *who* campaigns *when* changes, so liveness now depends
//! on the designated node being up.
//!
//! It reaches the owner only through the documented contract, which is all
//! a replacement needs: it subscribes to the owner's event stream
//! ([`Subscribe`], which starts with the owner's current state, so a
//! restarted instance resyncs through the same ordered channel as its
//! events) and sends term-carrying requests ([`OwnerHandles`]). The
//! `custom_topology` example and `consensus-raft/tests/swapped_components.rs`
//! run it in the LeaderElection slot of the stock node:
//!
//! ```
//! use consensus_actors::kv::KvCommand;
//! use consensus_raft::leader_election::StaticLeaderElection;
//! use consensus_raft::slots::RaftSlots;
//!
//! let slots = RaftSlots::<KvCommand>::default().with_leader_election(StaticLeaderElection::slot());
//! # let _ = slots;
//! ```

use crate::actors::{
    BecomeLeader, BeginElection, EventKinds, InjectPanic, Interest, ObserveTerm, OwnerHandles,
    PeerMessage, ProgressFilter, RaftEvents, ReplicatedCommand, Subscribe, TransferLeadership,
};
use crate::error::Refusal;
use crate::events::RaftEvent;
use crate::messages::RaftMessage;
use crate::node::components;
use crate::slots::{Component, ElectionHandles, LeaderElectionSlot, Slot, SlotContext};
use crate::Membership;
use actix::prelude::*;
use consensus_actors::supervision::ChildSlot;
use consensus_actors::types::{NodeId, NodeState, Term};
use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::time::Duration;

/// How often the designated node checks whether it should campaign.
pub const STATIC_ELECTION_TICK: Duration = Duration::from_millis(100);

/// A LeaderElection in which the lowest voter always campaigns and nobody
/// else does. See the [module documentation](self).
pub struct StaticLeaderElection<C> {
    id: NodeId,
    owner: OwnerHandles,
    term: Term,
    role: NodeState,
    leader: Option<NodeId>,
    voters: Membership,
    campaign: Option<Term>,
    votes: BTreeSet<NodeId>,
    _command: PhantomData<fn() -> C>,
}

impl<C: ReplicatedCommand> StaticLeaderElection<C> {
    /// The component of node `id`, talking to its owner through `owner`.
    pub fn new(id: NodeId, owner: OwnerHandles) -> Self {
        Self {
            id,
            owner,
            term: Term::ZERO,
            role: NodeState::Follower,
            leader: None,
            voters: Membership::empty(),
            campaign: None,
            votes: BTreeSet::new(),
            _command: PhantomData,
        }
    }

    /// The LeaderElection slot filled with this component: the factory
    /// gets the node's context and returns the actor with the handles the
    /// node needs from it (including panic injection).
    pub fn slot() -> LeaderElectionSlot<C> {
        Slot::new(|ctx: &SlotContext<C>| {
            let child = ChildSlot::<Self>::new();
            let addr = child.address();
            Component::new(
                child,
                Self::new(ctx.id, ctx.owner.clone()),
                ElectionHandles {
                    peer: addr.clone().recipient(),
                    transfer: addr.clone().recipient(),
                    panic: Some(addr.recipient()),
                },
            )
        })
    }

    /// Whether this node is the one that campaigns: the lowest voter.
    fn designated(&self) -> bool {
        self.voters.all_voters().iter().next() == Some(&self.id)
    }

    fn apply(&mut self, event: &RaftEvent) {
        match event {
            RaftEvent::RoleChanged { term, role, leader } => {
                self.term = *term;
                self.role = *role;
                self.leader = *leader;
            }
            RaftEvent::MembershipChanged { effective, .. } => self.voters = effective.clone(),
            RaftEvent::ElectionStarted {
                term,
                pre_vote: false,
                ..
            } => {
                self.campaign = Some(*term);
                self.votes = [self.id].into_iter().collect();
                self.maybe_win();
            }
            _ => {}
        }
    }

    /// Tells the owner we won once a quorum (both majorities while joint)
    /// voted for us in the term we campaign in.
    fn maybe_win(&mut self) {
        if let Some(term) = self.campaign {
            if self.voters.is_quorum(&self.votes) {
                self.owner.become_leader.do_send(BecomeLeader { term });
                self.campaign = None;
            }
        }
    }

    /// The designated node campaigns if nobody leads.
    fn tick(&mut self) {
        if self.designated() && self.role != NodeState::Leader && self.leader.is_none() {
            self.owner.begin_election.do_send(BeginElection {
                expected_term: self.term,
                pre_vote: false,
                transfer: false,
            });
        }
    }
}

impl<C: ReplicatedCommand> Actor for StaticLeaderElection<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The owner's current state comes first on the stream, in order
        // with the rest; then a check every tick.
        self.owner.subscribe.do_send(Subscribe::new(
            components::LEADER_ELECTION,
            ctx.address().recipient(),
            Interest {
                kinds: EventKinds::ROLE_CHANGED
                    | EventKinds::MEMBERSHIP_CHANGED
                    | EventKinds::ELECTION_STARTED,
                progress: ProgressFilter::Never,
            },
        ));
        ctx.run_interval(STATIC_ELECTION_TICK, |act, _| act.tick());
    }
}

impl<C: ReplicatedCommand> Supervised for StaticLeaderElection<C> {
    fn restarting(&mut self, _: &mut Context<Self>) {
        // Forget everything: the subscription in started() brings the
        // owner's state back.
        *self = Self::new(self.id, self.owner.clone());
    }
}

impl<C: ReplicatedCommand> Handler<RaftEvents> for StaticLeaderElection<C> {
    type Result = ();
    fn handle(&mut self, m: RaftEvents, _: &mut Context<Self>) {
        for e in &m.0 {
            self.apply(e);
        }
    }
}

impl<C: ReplicatedCommand> Handler<PeerMessage<C>> for StaticLeaderElection<C> {
    type Result = ();
    fn handle(&mut self, m: PeerMessage<C>, _: &mut Context<Self>) {
        if let RaftMessage::RequestVoteResponse(r) = m.msg {
            if r.term > self.term {
                self.owner
                    .observe_term
                    .do_send(ObserveTerm { term: r.term });
            } else if !r.pre_vote && r.vote_granted && Some(r.term) == self.campaign {
                self.votes.insert(m.from);
                self.maybe_win();
            }
        }
    }
}

impl<C: ReplicatedCommand> Handler<TransferLeadership> for StaticLeaderElection<C> {
    type Result = Result<(), Refusal>;
    fn handle(&mut self, m: TransferLeadership, _: &mut Context<Self>) -> Self::Result {
        // The leader is fixed: leadership is never handed over.
        Err(Refusal::BadTransferTarget(m.target))
    }
}

impl<C: ReplicatedCommand> Handler<InjectPanic> for StaticLeaderElection<C> {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        panic!("injected panic in StaticLeaderElection");
    }
}
