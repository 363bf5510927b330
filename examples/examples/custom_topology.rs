//! Replacing one component of a Raft node with an actor of your own.
//!
//! Every box of a Raft node is an actor reached only through typed
//! `Recipient<_>` handles, so any of them can be swapped for another actor
//! that handles the same messages. Here each node is wired by hand (what
//! `RaftNodeBuilder` does) with the stock LogReplicator, MembershipManager,
//! SnapshotCompactor and router, but with `StaticLeaderElection` in place of
//! `LeaderElection`: no randomized timeouts, the lowest node id always
//! campaigns and the others never do. Safety is untouched (the
//! LogReplicator still owns term, vote and log and refuses stale
//! requests); only *who* campaigns *when* changed.
//!
//! Run with `cargo run --example custom_topology`.
#![forbid(unsafe_code)]

use actix::prelude::*;
use consensus_actors::kv::{KvCommand, KvStore};
use consensus_actors::storage::MemStorage;
use consensus_actors::supervision::{ChildSlot, RestartStrategy, SupervisorBuilder};
use consensus_actors::transport::{RegisterNode, Transport};
use consensus_actors::types::{ClientId, NodeId, NodeState, Term};
use consensus_engine::network::LocalNetwork;
use consensus_raft::actors::{
    BecomeLeader, BeginElection, EventSubscribers, GetRaftStatus, GetState, LogReplicator,
    MembershipManager, ObserveTerm, OwnerHandles, PeerMessage, Propose, RaftEvents, RaftRouter,
    SnapshotCompactor, TransferLeadership,
};
use consensus_raft::error::Refusal;
use consensus_raft::events::{HardState, RaftEvent};
use consensus_raft::messages::{EntryRef, RaftMessage};
use consensus_raft::{Membership, RaftConfig};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type Cmd = KvCommand;

/// A leader election of our own: the lowest voter campaigns whenever it is
/// not leader; nobody else ever does.
struct StaticLeaderElection {
    id: NodeId,
    owner: OwnerHandles,
    term: Term,
    role: NodeState,
    leader: Option<NodeId>,
    voters: Membership,
    campaign: Option<Term>,
    votes: BTreeSet<NodeId>,
}

impl StaticLeaderElection {
    fn new(id: NodeId, owner: OwnerHandles, voters: Membership) -> Self {
        Self {
            id,
            owner,
            term: Term::ZERO,
            role: NodeState::Follower,
            leader: None,
            voters,
            campaign: None,
            votes: BTreeSet::new(),
        }
    }

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

    /// Tells the owner we won once a quorum voted for us.
    fn maybe_win(&mut self) -> bool {
        match self.campaign {
            Some(term) if self.voters.is_quorum(&self.votes) => {
                self.owner.become_leader.do_send(BecomeLeader { term });
                self.campaign = None;
                true
            }
            _ => false,
        }
    }

    /// Every 100 ms: the designated node campaigns if nobody leads.
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

impl Actor for StaticLeaderElection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Learn the owner's state, then check every 100 ms.
        let req = self.owner.get_state.send(GetState);
        ctx.spawn(req.into_actor(self).map(|res, act, _| {
            for e in res.unwrap_or_default() {
                act.apply(&e);
            }
        }));
        ctx.run_interval(Duration::from_millis(100), |act, _| act.tick());
    }
}

impl Supervised for StaticLeaderElection {}

impl Handler<RaftEvents> for StaticLeaderElection {
    type Result = ();
    fn handle(&mut self, m: RaftEvents, _: &mut Context<Self>) {
        for e in &m.0 {
            self.apply(e);
        }
    }
}

impl Handler<PeerMessage<Cmd>> for StaticLeaderElection {
    type Result = ();
    fn handle(&mut self, m: PeerMessage<Cmd>, _: &mut Context<Self>) {
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

impl Handler<TransferLeadership> for StaticLeaderElection {
    type Result = Result<(), Refusal>;
    fn handle(&mut self, m: TransferLeadership, _: &mut Context<Self>) -> Self::Result {
        // The leader is static: leadership is never handed over.
        Err(Refusal::BadTransferTarget(m.target))
    }
}

type Storage = MemStorage<HardState, EntryRef<Cmd>>;
type Replicator = LogReplicator<KvStore, Storage>;

/// Wires one node like `RaftNodeBuilder` does, with our election actor.
fn start_node(
    id: NodeId,
    voters: &Membership,
    network: &Addr<LocalNetwork<RaftMessage<Cmd>>>,
) -> Addr<Replicator> {
    let cfg = RaftConfig::default();
    let epoch = Instant::now();
    let transport = Transport::new(id, network.clone().recipient());
    let mut tree = SupervisorBuilder::new(id).strategy(RestartStrategy::RestForOne);
    let replicator_slot = ChildSlot::<Replicator>::new();
    let election_slot = ChildSlot::<StaticLeaderElection>::new();
    let membership_slot = ChildSlot::<MembershipManager>::new();
    let compactor_slot = ChildSlot::<SnapshotCompactor<Cmd>>::new();
    let router_slot = ChildSlot::<RaftRouter<Cmd>>::new();
    let replicator = replicator_slot.address();
    let election = election_slot.address();
    let membership = membership_slot.address();
    let compactor = compactor_slot.address();
    let router = router_slot.address();
    let owner = OwnerHandles::of(&replicator);
    let events = EventSubscribers {
        election: election.clone().recipient(),
        membership: membership.clone().recipient(),
        compactor: compactor.clone().recipient(),
    };
    let children = (|| {
        tree.start_child(
            "log-replicator",
            replicator_slot,
            Replicator::new(
                id,
                cfg.clone(),
                voters.clone(),
                Storage::new(),
                Arc::new(KvStore::default),
                transport.clone(),
                events,
                consensus_actors::safety::SafetySink::noop(),
                Some(tree.address().recipient()),
                epoch,
            ),
        )?;
        tree.start_child(
            "static-leader-election",
            election_slot,
            StaticLeaderElection::new(id, owner.clone(), voters.clone()),
        )?;
        tree.start_child(
            "membership-manager",
            membership_slot,
            MembershipManager::new(id, cfg.clone(), owner.clone(), epoch),
        )?;
        tree.start_child(
            "snapshot-compactor",
            compactor_slot,
            SnapshotCompactor::new(id, cfg.clone(), owner, transport, epoch),
        )?;
        tree.start_child(
            "router",
            router_slot,
            RaftRouter::new(
                id,
                replicator.clone().recipient(),
                election.recipient(),
                compactor.recipient(),
            ),
        )
    })();
    if let Err(e) = children {
        panic!("wiring node {id}: {e}");
    }
    tree.start();
    network.do_send(RegisterNode::<RaftMessage<Cmd>> {
        node: id,
        inbox: router.recipient(),
    });
    replicator
}

#[actix::main]
async fn main() {
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let voters = Membership::new(ids.iter().copied());
    let network = LocalNetwork::<RaftMessage<Cmd>>::new().start();
    let replicators: Vec<Addr<Replicator>> = ids
        .iter()
        .map(|&id| start_node(id, &voters, &network))
        .collect();

    // Node 1 campaigns at its first tick and wins; nobody else ever tries.
    let mut leader = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for r in &replicators {
            if let Ok(Some(s)) = r.send(GetRaftStatus).await {
                if s.role == NodeState::Leader {
                    leader = Some((s.id, r.clone(), s.term));
                }
            }
        }
        if leader.is_some() {
            break;
        }
    }
    let Some((id, replicator, term)) = leader else {
        panic!("no leader elected");
    };
    println!("{id} leads term {term} (always the lowest id with StaticLeaderElection)");
    assert_eq!(id, NodeId(1));
    let out = replicator
        .send(Propose::<Cmd, _>::new(
            KvCommand::put("who", "static"),
            ClientId(1),
        ))
        .await;
    println!("put who=static -> {out:?}");
}
