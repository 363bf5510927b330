//! A Raft node: the four components and the router as children of one
//! [`NodeSupervisor`], wired with `Recipient<_>` handles, and the client API.
//!
//! ```text
//!                    network (Envelope<RaftMessage<C>>)
//!                               │
//!                               ▼   the rest
//!   clients ──► LogReplicator ────────────► RaftRouter ─────┬──────────────────┐
//!   (propose,   (RequestVote,            vote responses, TimeoutNow   InstallSnapshot(+resp)
//!    read)       AppendEntries(+resp);                      ▼                  ▼
//!                term, vote, log,  ◄──── requests ── LeaderElection   SnapshotCompactor
//!                state machine)    ──── events ──►   MembershipManager ──►  (owner)
//!                                                    (the other three)
//! ```
//!
//! The node's inbox ([`RaftNode::inbox`]) is the LogReplicator: the messages
//! of nearly every step reach it in one mailbox hop, and it hands the others
//! to the RaftRouter (see [`LogReplicator::with_router`]).
//!
//! Children start in the order LogReplicator, LeaderElection,
//! MembershipManager, SnapshotCompactor, RaftRouter: with
//! [`RestartStrategy::RestForOne`] a failure of the owner restarts
//! everything that depends on it.
//!
//! Every component but the LogReplicator sits in a slot of the builder
//! ([`RaftSlots`], see [`slots`](crate::slots)): give
//! [`RaftNodeBuilder::slots`] (or one slot at a time) another actor that
//! handles the component's messages, and the node runs it in place of the
//! stock one, under the same supervisor, the same name and the same client
//! API.

use crate::actors::{
    ChangeMembership, Committed, DrainSubmissions, GetRaftStatus, InjectPanic, LogReplicator,
    OwnerHandles, ProposeBatch, Pushed, RaftStateMachine, RaftStatus, RaftStorage, Read,
    Submission, SubmissionQueue, TransferLeadership,
};
use crate::config::RaftConfig;
use crate::configuration::Membership;
use crate::error::{ProposeError, Refusal};
use crate::membership_manager::{ChangeKind, MembershipChangeError};
use crate::messages::RaftMessage;
use crate::safety::SafetySink;
use crate::slots::{
    LeaderElectionSlot, MembershipManagerSlot, RaftSlots, RouterContext, RouterSlot, SlotContext,
    SnapshotCompactorSlot,
};
use actix::prelude::*;
use consensus_actors::kv::StateMachine;
use consensus_actors::sim::TraceHandle;
use consensus_actors::supervision::{
    ChildSlot, NodeSupervisor, RestartIntensity, RestartStrategy, Shutdown, SupervisionError,
    SupervisionEvent, SupervisorBuilder,
};
use consensus_actors::transport::{Envelope, RegisterNode, Transport};
use consensus_actors::types::{ClientId, NodeId};
use std::sync::Arc;
use tokio::time::Instant;

type Command<SM> = <SM as StateMachine>::Command;
type Output<SM> = <SM as StateMachine>::Output;

/// The names of a Raft node's children in its supervision tree.
pub mod components {
    /// The LogReplicator (owner of term, vote, log and state machine).
    pub const LOG_REPLICATOR: &str = "log-replicator";
    /// LeaderElection.
    pub const LEADER_ELECTION: &str = "leader-election";
    /// MembershipManager.
    pub const MEMBERSHIP_MANAGER: &str = "membership-manager";
    /// SnapshotCompactor.
    pub const SNAPSHOT_COMPACTOR: &str = "snapshot-compactor";
    /// The inbound router.
    pub const ROUTER: &str = "router";
    /// The four Raft components, in start order.
    pub const ALL: [&str; 4] = [
        LOG_REPLICATOR,
        LEADER_ELECTION,
        MEMBERSHIP_MANAGER,
        SNAPSHOT_COMPACTOR,
    ];
}

/// Builds and starts one Raft node.
///
/// ```no_run
/// use actix::Recipient;
/// use consensus_actors::{kv::{KvCommand, KvStore}, storage::MemStorage, NodeId};
/// use consensus_actors::transport::{Envelope, Transport};
/// use consensus_raft::{node::{RaftNode, RaftNodeBuilder}, Membership, RaftConfig, RaftMessage};
///
/// fn start(network: Recipient<Envelope<RaftMessage<KvCommand>>>) -> RaftNode<KvStore> {
///     RaftNodeBuilder::new(
///         NodeId(1),
///         RaftConfig::default(),
///         Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
///         MemStorage::new(),
///         KvStore::default,
///         Transport::new(NodeId(1), network),
///     )
///     .seed(42)
///     .start()
/// }
/// ```
pub struct RaftNodeBuilder<SM: RaftStateMachine, S> {
    id: NodeId,
    cfg: RaftConfig,
    initial_membership: Membership,
    storage: S,
    make_sm: Arc<dyn Fn() -> SM + Send + Sync>,
    transport: Transport<RaftMessage<Command<SM>>>,
    seed: u64,
    safety: SafetySink,
    strategy: RestartStrategy,
    intensity: RestartIntensity,
    subscribers: Vec<Recipient<SupervisionEvent>>,
    time_base: Option<Instant>,
    trace: Option<TraceHandle>,
    slots: RaftSlots<Command<SM>>,
}

impl<SM, S> RaftNodeBuilder<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    /// A node `id` with `cfg`, starting from `storage` (empty for a new
    /// node). `initial_membership` is the configuration used while storage
    /// holds none: the bootstrap voters (every initial node gets the same),
    /// or [`Membership::empty`] for a node that an `add_node` will bring in.
    /// `make_sm` builds an empty state machine. Messages to peers leave
    /// through `transport` (which must send as `id`).
    pub fn new(
        id: NodeId,
        cfg: RaftConfig,
        initial_membership: Membership,
        storage: S,
        make_sm: impl Fn() -> SM + Send + Sync + 'static,
        transport: Transport<RaftMessage<Command<SM>>>,
    ) -> Self {
        debug_assert_eq!(transport.local(), id, "the transport must send as the node");
        Self {
            id,
            cfg,
            initial_membership,
            storage,
            make_sm: Arc::new(make_sm),
            transport,
            seed: id.get(),
            safety: SafetySink::noop(),
            strategy: RestartStrategy::OneForOne,
            intensity: RestartIntensity::default(),
            subscribers: Vec::new(),
            time_base: None,
            trace: None,
            slots: RaftSlots::default(),
        }
    }

    /// Fills the component slots (default: the stock actors).
    #[must_use]
    pub fn slots(mut self, slots: RaftSlots<Command<SM>>) -> Self {
        self.slots = slots;
        self
    }

    /// Puts `slot`'s actor in place of the stock LeaderElection.
    #[must_use]
    pub fn leader_election(mut self, slot: LeaderElectionSlot<Command<SM>>) -> Self {
        self.slots.leader_election = slot;
        self
    }

    /// Puts `slot`'s actor in place of the stock MembershipManager.
    #[must_use]
    pub fn membership_manager(mut self, slot: MembershipManagerSlot<Command<SM>>) -> Self {
        self.slots.membership_manager = slot;
        self
    }

    /// Puts `slot`'s actor in place of the stock SnapshotCompactor.
    #[must_use]
    pub fn snapshot_compactor(mut self, slot: SnapshotCompactorSlot<Command<SM>>) -> Self {
        self.slots.snapshot_compactor = slot;
        self
    }

    /// Puts `slot`'s actor in place of the stock router.
    #[must_use]
    pub fn router(mut self, slot: RouterSlot<Command<SM>>) -> Self {
        self.slots.router = slot;
        self
    }

    /// Seeds the election timeouts (default: the node id).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Reports safety events to `sink` (default: off).
    #[must_use]
    pub fn safety(mut self, sink: SafetySink) -> Self {
        self.safety = sink;
        self
    }

    /// The supervision strategy (default: one-for-one).
    #[must_use]
    pub fn strategy(mut self, strategy: RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The restart intensity (default: 10 in 10 s).
    #[must_use]
    pub fn intensity(mut self, intensity: RestartIntensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Sends supervision events to `subscriber`.
    #[must_use]
    pub fn supervision_subscriber(mut self, subscriber: Recipient<SupervisionEvent>) -> Self {
        self.subscribers.push(subscriber);
        self
    }

    /// Measures time (timers, supervision events) from `base` (default: the
    /// start).
    #[must_use]
    pub fn time_base(mut self, base: Instant) -> Self {
        self.time_base = Some(base);
        self
    }

    /// Records the node's role changes and commit advances in a simulation
    /// trace.
    #[must_use]
    pub fn trace(mut self, trace: TraceHandle) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Starts the node's supervision tree. Must run inside an actix System.
    /// Register [`RaftNode::inbox`] with the network so peers reach it.
    pub fn start(self) -> RaftNode<SM> {
        let id = self.id;
        let epoch = self.time_base.unwrap_or_else(Instant::now);
        let mut tree = SupervisorBuilder::new(id)
            .strategy(self.strategy)
            .intensity(self.intensity)
            .time_base(epoch);
        for s in self.subscribers {
            tree = tree.subscriber(s);
        }
        let mut replicator_slot = ChildSlot::<LogReplicator<SM, S>>::new();
        // Clients queue proposals here: a mailbox as deep as the proposals
        // the leader accepts, so in-flight clients are not parked one by one
        // (actix's default capacity is 16).
        replicator_slot
            .context_mut()
            .set_mailbox_capacity(self.cfg.max_pending_proposals);
        let replicator = replicator_slot.address();
        let transport = self.transport;
        let ctx = SlotContext {
            id,
            cfg: self.cfg.clone(),
            seed: self.seed,
            epoch,
            owner: OwnerHandles::of(&replicator),
            transport: transport.clone(),
        };
        let election = self.slots.leader_election.build(&ctx);
        let membership = self.slots.membership_manager.build(&ctx);
        let compactor = self.slots.snapshot_compactor.build(&ctx);
        let router = self.slots.router.build(&RouterContext {
            id,
            replicator: replicator.clone().recipient(),
            election: election.handles.peer.clone(),
            compactor: compactor.handles.peer.clone(),
        });
        let submissions = Arc::new(SubmissionQueue::new(self.cfg.max_pending_proposals));
        let replicator_actor = LogReplicator::new(
            id,
            self.cfg.clone(),
            self.initial_membership,
            self.storage,
            self.make_sm,
            transport,
            self.safety,
            Some(tree.address().recipient()),
            epoch,
        )
        .with_trace(self.trace)
        .with_submissions(Arc::clone(&submissions))
        .with_router(router.handles.inbox.clone());
        let transfer = election.handles.transfer.clone();
        let change = membership.handles.change.clone();
        let panics = [
            Some(replicator.clone().recipient()),
            election.handles.panic.clone(),
            membership.handles.panic.clone(),
            compactor.handles.panic.clone(),
        ];
        let started: Result<(), SupervisionError> = (|| {
            tree.start_child(
                components::LOG_REPLICATOR,
                replicator_slot,
                replicator_actor,
            )?;
            (election.start)(&mut tree, components::LEADER_ELECTION)?;
            (membership.start)(&mut tree, components::MEMBERSHIP_MANAGER)?;
            (compactor.start)(&mut tree, components::SNAPSHOT_COMPACTOR)?;
            (router.start)(&mut tree, components::ROUTER)?;
            Ok(())
        })();
        // The names are distinct constants: a duplicate cannot happen.
        debug_assert!(started.is_ok(), "{started:?}");
        let supervisor = tree.start();
        RaftNode {
            id,
            supervisor,
            submissions,
            drain: replicator.clone().recipient(),
            propose_batch: replicator.clone().recipient(),
            read: replicator.clone().recipient(),
            status: replicator.clone().recipient(),
            change,
            transfer,
            // The replicator handles most inbound messages itself and hands
            // the rest to the router: one mailbox hop instead of two.
            inbox: replicator.recipient(),
            panics,
        }
    }
}

/// A running Raft node: its supervisor, the handles of its components and
/// the client API. Cheap to clone.
pub struct RaftNode<SM: RaftStateMachine> {
    id: NodeId,
    supervisor: Addr<NodeSupervisor>,
    submissions: Arc<SubmissionQueue<Command<SM>, Output<SM>>>,
    drain: Recipient<DrainSubmissions>,
    propose_batch: Recipient<ProposeBatch<Command<SM>, Output<SM>>>,
    read: Recipient<Read<SM>>,
    status: Recipient<GetRaftStatus>,
    change: Recipient<ChangeMembership>,
    transfer: Recipient<TransferLeadership>,
    inbox: Recipient<Envelope<RaftMessage<Command<SM>>>>,
    /// Fault injection, per component of [`components::ALL`] (`None`: a
    /// replacement that offers none).
    panics: [Option<Recipient<InjectPanic>>; 4],
}

impl<SM: RaftStateMachine> Clone for RaftNode<SM> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            supervisor: self.supervisor.clone(),
            submissions: Arc::clone(&self.submissions),
            drain: self.drain.clone(),
            propose_batch: self.propose_batch.clone(),
            read: self.read.clone(),
            status: self.status.clone(),
            change: self.change.clone(),
            transfer: self.transfer.clone(),
            inbox: self.inbox.clone(),
            panics: self.panics.clone(),
        }
    }
}

impl<SM: RaftStateMachine> RaftNode<SM> {
    /// The node.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's supervisor (status, events, shutdown, restarts).
    pub fn supervisor(&self) -> &Addr<NodeSupervisor> {
        &self.supervisor
    }

    /// Where the network delivers this node's messages.
    pub fn inbox(&self) -> Recipient<Envelope<RaftMessage<Command<SM>>>> {
        self.inbox.clone()
    }

    /// Registers the node's inbox with a network.
    pub fn register_with(&self, network: &Recipient<RegisterNode<RaftMessage<Command<SM>>>>) {
        network.do_send(RegisterNode {
            node: self.id,
            inbox: self.inbox.clone(),
        });
    }

    /// Proposes `command`: the state machine's output once it is committed
    /// and applied. A follower answers [`ProposeError::NotLeader`] with the
    /// leader it knows.
    pub async fn propose(
        &self,
        command: Command<SM>,
        client_id: ClientId,
    ) -> Result<Output<SM>, ProposeError> {
        self.propose_at(command, client_id).await.map(|c| c.output)
    }

    /// Proposes `command` like [`propose`](Self::propose), and also tells
    /// where its entry committed: [`Committed::log_id`] is the term the
    /// leader appended it in and its index in the log.
    ///
    /// The proposal goes through the LogReplicator's [`SubmissionQueue`]:
    /// no mailbox message per proposal, one wake-up for all the proposals
    /// queued while the LogReplicator was busy.
    pub async fn propose_at(
        &self,
        command: Command<SM>,
        client_id: ClientId,
    ) -> Result<Committed<Output<SM>>, ProposeError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let submission = Submission {
            command,
            client_id,
            reply,
        };
        match self.submissions.push(submission) {
            Pushed::Wake => self.drain.do_send(DrainSubmissions),
            Pushed::Queued => {}
            Pushed::Refused(_, error) => return Err(error),
        }
        // A dropped reply: the LogReplicator stopped with it.
        answer.await.unwrap_or(Err(ProposeError::Unknown))
    }

    /// Proposes several commands in one message: one result per command, in
    /// order (each as [`propose`](Self::propose) would give it).
    pub async fn propose_batch(
        &self,
        commands: Vec<Command<SM>>,
        client_id: ClientId,
    ) -> Vec<Result<Output<SM>, ProposeError>> {
        self.propose_batch_at(commands, client_id)
            .await
            .into_iter()
            .map(|r| r.map(|c| c.output))
            .collect()
    }

    /// Proposes several commands in one message, like
    /// [`propose_batch`](Self::propose_batch), with each committed entry's
    /// log position (consecutive indexes when one leader appended them all).
    pub async fn propose_batch_at(
        &self,
        commands: Vec<Command<SM>>,
        client_id: ClientId,
    ) -> Vec<Result<Committed<Output<SM>>, ProposeError>> {
        let n = commands.len();
        match self
            .propose_batch
            .send(ProposeBatch::new(commands, client_id))
            .await
        {
            Ok(results) => results,
            Err(_) => (0..n).map(|_| Err(ProposeError::Unknown)).collect(),
        }
    }

    /// A linearizable read (ReadIndex): `query` runs on the leader's state
    /// machine once everything committed before the call is applied and the
    /// leader confirmed it still leads.
    pub async fn read<R, F>(&self, query: F) -> Result<R, ProposeError>
    where
        R: Send + 'static,
        F: FnOnce(&SM) -> R + Send + 'static,
    {
        let query = Box::new(move |sm: &SM| Box::new(query(sm)) as Box<dyn std::any::Any + Send>);
        let out = self
            .read
            .send(Read { query })
            .await
            .unwrap_or(Err(ProposeError::Unknown))?;
        out.downcast::<R>()
            .map(|b| *b)
            .map_err(|_| ProposeError::Unknown)
    }

    /// Adds `node` as a voter (learner first, then joint consensus). Ask the
    /// leader.
    pub async fn add_node(&self, node: NodeId) -> Result<Membership, MembershipChangeError> {
        self.change_membership(ChangeKind::AddNode(node)).await
    }

    /// Removes `node` (joint consensus). Ask the leader.
    pub async fn remove_node(&self, node: NodeId) -> Result<Membership, MembershipChangeError> {
        self.change_membership(ChangeKind::RemoveNode(node)).await
    }

    async fn change_membership(
        &self,
        kind: ChangeKind,
    ) -> Result<Membership, MembershipChangeError> {
        self.change
            .send(ChangeMembership(kind))
            .await
            .unwrap_or(Err(MembershipChangeError::LeadershipLost))
    }

    /// Hands leadership to `target` (leader only). While LeaderElection is
    /// down (the node stopped or failed) the answer is
    /// [`Refusal::Unavailable`].
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), Refusal> {
        self.transfer
            .send(TransferLeadership { target })
            .await
            .unwrap_or(Err(Refusal::Unavailable))
    }

    /// The node's Raft state (`None` while the LogReplicator restarts or
    /// after the node stopped).
    pub async fn status(&self) -> Option<RaftStatus> {
        self.status.send(GetRaftStatus).await.ok().flatten()
    }

    /// Makes one component panic (fault injection for tests and chaos
    /// experiments): `component` is one of [`components::ALL`]. Returns
    /// false for an unknown name, or a replacement component that offers no
    /// fault injection.
    pub fn inject_panic(&self, component: &str) -> bool {
        let target = components::ALL
            .iter()
            .position(|c| *c == component)
            .and_then(|i| self.panics[i].as_ref());
        match target {
            Some(panic) => {
                panic.do_send(InjectPanic);
                true
            }
            None => false,
        }
    }

    /// Stops the node (every component) and waits until it is down.
    pub async fn shutdown(&self) {
        // An error means the supervisor is already gone.
        let _ = self.supervisor.send(Shutdown).await;
    }
}

impl RaftNode<consensus_actors::kv::KvStore> {
    /// Linearizable read of `key` from the reference key-value store.
    pub async fn get(&self, key: impl Into<String>) -> Result<Option<String>, ProposeError> {
        let key = key.into();
        self.read(move |kv: &consensus_actors::kv::KvStore| kv.get(&key).map(str::to_string))
            .await
    }
}
