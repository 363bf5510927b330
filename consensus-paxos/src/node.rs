//! A Paxos node: Acceptor, Proposer, Learner and the ballot leader election
//! as children of one [`NodeSupervisor`], wired through the router, and the
//! client API.
//!
//! ```text
//!        network (Envelope<PaxosMessage>)
//!                  │
//!                  ▼
//!   ┌──────────  PaxosRouter  ───────────────────────────────┐
//!   │ Prepare, Accept     Promise, Nack   Accepted, Chosen,   Heartbeats
//!   ▼                     ▼               Commit, Accept (a   ▼
//!                                         copy), CatchUp(+Reply)
//! Acceptor            Proposer ─Proposed*/Abandon─────► Learner   BallotLeaderElection
//! (promise, accepted;  ▲   ◄──── Decided*/Configured* ──  (KvStore,  ── LeaderChange ──► Proposer
//!  synced store)       │                                  answers)  ◄── BallotTooLow ── Proposer
//!                   clients (submit)
//! ```
//!
//! Every component sits in a slot of the builder ([`PaxosSlots`]); the
//! router (no protocol state) is fixed. The network delivers to the
//! stock Learner, which handles its own messages (most of a node's
//! traffic) and hands the others straight to their component, as Raft's
//! LogReplicator does; a replacement Learner that does not offer to be
//! the inbox leaves that to the router. Local messages go straight to
//! their component: the node binds the bus ([`NodeBus`]) once every
//! factory has built its component. A node's messages to itself never
//! reach the network ([`Loopback`]); client commands reach the Proposer
//! through a shared queue, one wake-up message per batch of them
//! ([`SubmissionQueue`]). The messages marked `*` travel on
//! [`LocalFeed`](crate::wiring::LocalFeed)s: the stock Learner takes the
//! proposals before each of its inputs, and the stock Proposer the
//! decisions, waking only when it waits for one, so a command costs two
//! mailbox messages fewer. In Multi-Paxos a follower's Learner learns the
//! decisions from the leader's Accepts that pass by (their
//! [`Commit`](crate::messages::Commit)), not from a Chosen per slot.

use crate::acceptor::DirectRequest;
use crate::config::PaxosConfig;
use crate::error::ProposeError;
use crate::learner::{
    GetLearnerState, GetLearnerStatus, LearnerState, LearnerStatus, SnapshotTaken, TakeSnapshot,
};
use crate::messages::PaxosMessage;
use crate::proposer::{GetProposerStatus, ProposerStatus};
use crate::router::{Loopback, PaxosRouter, RouterTargets};
use crate::safety::PaxosEvent;
use crate::slots::{
    AcceptorSlot, ElectionSlot, LearnerSlot, LearnerStore, NodeBus, PaxosSlots, ProposerSlot,
    SlotContext,
};
use crate::slots::{AcceptorStore, ProposerStore};
use crate::types::Configurations;
use crate::wiring::{
    Change, DrainSubmissions, InjectPanic, LearnerNews, Pushed, Reconfigure, SubmissionQueue,
    Submit,
};
use actix::prelude::*;
use consensus_actors::kv::KvCommand;
use consensus_actors::plugin::Committed;
use consensus_actors::safety::SafetySink;
use consensus_actors::sim::TraceHandle;
use consensus_actors::supervision::{
    ChildSlot, NodeSupervisor, RestartIntensity, RestartStrategy, Shutdown, SupervisionError,
    SupervisionEvent, SupervisorBuilder,
};
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{ClientId, NodeId};
use std::sync::Arc;
use tokio::time::Instant;

/// The client a [`PaxosNode::create_snapshot`]'s read is proposed for.
const SNAPSHOT_CLIENT: ClientId = ClientId(u64::MAX);

/// The names the node's components are supervised under.
pub mod components {
    /// The Acceptor.
    pub const ACCEPTOR: &str = "acceptor";
    /// The Proposer.
    pub const PROPOSER: &str = "proposer";
    /// The Learner.
    pub const LEARNER: &str = "learner";
    /// The ballot leader election.
    pub const ELECTION: &str = "ballot-leader-election";
    /// The router.
    pub const ROUTER: &str = "router";
    /// The components fault injection can reach, in order.
    pub const ALL: [&str; 4] = [ACCEPTOR, PROPOSER, LEARNER, ELECTION];
}

/// The stores of one node, kept across its crashes by whoever restarts it
/// (clones share the same store).
#[derive(Clone, Debug, Default)]
pub struct NodeStores {
    /// The Acceptor's promise and acceptances (synced before answers).
    pub acceptor: AcceptorStore,
    /// The Learner's delivered slots.
    pub learner: LearnerStore,
    /// The Proposer's highest ballot (synced before each Prepare).
    pub proposer: ProposerStore,
}

impl NodeStores {
    /// Simulates a crash of every store (unsynced writes lost).
    pub fn crash(&self) {
        self.acceptor.crash();
        self.learner.crash();
        self.proposer.crash();
    }
}

/// Builds one Paxos node. See the [module documentation](self).
pub struct PaxosNodeBuilder {
    id: NodeId,
    cfg: PaxosConfig,
    members: Vec<NodeId>,
    transport: Transport<PaxosMessage>,
    acceptor_store: AcceptorStore,
    learner_store: LearnerStore,
    proposer_store: ProposerStore,
    seed: u64,
    safety: SafetySink<PaxosEvent>,
    trace: Option<TraceHandle>,
    strategy: RestartStrategy,
    intensity: RestartIntensity,
    subscribers: Vec<Recipient<SupervisionEvent>>,
    time_base: Option<Instant>,
    slots: PaxosSlots,
    initial: Option<Vec<NodeId>>,
}

impl PaxosNodeBuilder {
    /// Node `id` of a cluster of `members` (this node included), with its
    /// stores (kept across crashes by whoever restarts it).
    pub fn new(
        id: NodeId,
        cfg: PaxosConfig,
        members: Vec<NodeId>,
        transport: Transport<PaxosMessage>,
        stores: NodeStores,
    ) -> Self {
        let NodeStores {
            acceptor: acceptor_store,
            learner: learner_store,
            proposer: proposer_store,
        } = stores;
        let mut members = members;
        members.sort_unstable();
        members.dedup();
        Self {
            id,
            cfg,
            members,
            transport,
            acceptor_store,
            learner_store,
            proposer_store,
            seed: id.get(),
            safety: SafetySink::noop(),
            trace: None,
            strategy: RestartStrategy::OneForOne,
            intensity: RestartIntensity::default(),
            subscribers: Vec::new(),
            time_base: None,
            slots: PaxosSlots::default(),
            initial: None,
        }
    }

    /// The cluster's acceptors from slot 1 (default: every member). A node
    /// added to a running cluster is started with the initial acceptors,
    /// without itself: it learns the changes from its peers.
    #[must_use]
    pub fn initial_acceptors(mut self, acceptors: Vec<NodeId>) -> Self {
        self.initial = Some(acceptors);
        self
    }

    /// Fills the component slots (default: the stock actors).
    #[must_use]
    pub fn slots(mut self, slots: PaxosSlots) -> Self {
        self.slots = slots;
        self
    }

    /// Puts `slot`'s actor in place of the stock Acceptor.
    #[must_use]
    pub fn acceptor(mut self, slot: AcceptorSlot) -> Self {
        self.slots.acceptor = slot;
        self
    }

    /// Puts `slot`'s actor in place of the stock Proposer.
    #[must_use]
    pub fn proposer(mut self, slot: ProposerSlot) -> Self {
        self.slots.proposer = slot;
        self
    }

    /// Puts `slot`'s actor in place of the stock Learner.
    #[must_use]
    pub fn learner(mut self, slot: LearnerSlot) -> Self {
        self.slots.learner = slot;
        self
    }

    /// Puts `slot`'s actor in place of the stock ballot leader election.
    #[must_use]
    pub fn election(mut self, slot: ElectionSlot) -> Self {
        self.slots.election = slot;
        self
    }

    /// Seeds back-offs and batch nonces (default: the node id).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Reports safety events to `sink` (default: off).
    #[must_use]
    pub fn safety(mut self, sink: SafetySink<PaxosEvent>) -> Self {
        self.safety = sink;
        self
    }

    /// Records leadership changes in a simulation trace.
    #[must_use]
    pub fn trace(mut self, trace: TraceHandle) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The supervision strategy (default: one-for-one).
    #[must_use]
    pub fn strategy(mut self, strategy: RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The restart intensity (default: the runtime's).
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

    /// Measures time from `base` (default: the start).
    #[must_use]
    pub fn time_base(mut self, base: Instant) -> Self {
        self.time_base = Some(base);
        self
    }

    /// Starts the node's supervision tree (inside an actix System).
    /// Register [`PaxosNode::inbox`] with the network so peers reach it.
    pub fn start(self) -> PaxosNode {
        let id = self.id;
        let epoch = self.time_base.unwrap_or_else(Instant::now);
        let mut tree = SupervisorBuilder::new(id)
            .strategy(self.strategy)
            .intensity(self.intensity)
            .time_base(epoch);
        for s in self.subscribers {
            tree = tree.subscriber(s);
        }
        let mut router_slot = ChildSlot::<PaxosRouter>::new();
        router_slot
            .context_mut()
            .set_mailbox_capacity(self.cfg.max_pending);
        let router = router_slot.address();
        // Components name each other before any of them exists: the bus and
        // the router's targets are bound below, once all four are built.
        let bus = NodeBus::default();
        let targets = RouterTargets::unbound();
        let submissions = Arc::new(SubmissionQueue::new(self.cfg.max_pending));
        let ctx = SlotContext {
            id,
            cfg: self.cfg.clone(),
            configs: Configurations::initial(self.initial.as_deref().unwrap_or(&self.members)),
            members: self.members.clone(),
            seed: self.seed,
            epoch,
            transport: Loopback::transport(id, self.transport, targets.clone()),
            safety: self.safety,
            trace: self.trace,
            bus: bus.clone(),
            submissions: Arc::clone(&submissions),
            acceptor_store: self.acceptor_store,
            learner_store: self.learner_store,
            proposer_store: self.proposer_store,
            fail: Some(tree.address().recipient()),
            peers: targets.clone(),
        };
        let acceptor = self.slots.acceptor.build(&ctx);
        let proposer = self.slots.proposer.build(&ctx);
        let learner = self.slots.learner.build(&ctx);
        let election = self.slots.election.build(&ctx);
        targets.acceptor.bind(acceptor.handles.peer.clone());
        targets.proposer.bind(proposer.handles.peer.clone());
        targets.learner.bind(learner.handles.peer.clone());
        targets.election.bind(election.handles.peer.clone());
        match &learner.handles.takes_proposed {
            Some(wake) => bus.proposed.bind_taken(Some(wake.clone())),
            None => bus
                .proposed
                .bind_recipient(learner.handles.proposed.clone()),
        }
        if let Some(wake) = &learner.handles.takes_own_accepted {
            targets.own_accepted.bind_taken(Some(wake.clone()));
        }
        bus.abandon.bind(learner.handles.abandon.clone());
        match &proposer.handles.takes_news {
            Some(wake) => bus.news.bind_taken(Some(wake.clone())),
            None => {
                let decided = proposer.handles.decided.clone();
                let configured = proposer.handles.configured.clone();
                bus.news.bind_each(move |n| match n {
                    LearnerNews::Decided(d) => decided.do_send(d),
                    LearnerNews::Configured(c) => configured.do_send(c),
                    // A Proposer that takes news one message at a time
                    // counts on acceptors in id order.
                    LearnerNews::Acked(_) | LearnerNews::Leading(_) => {}
                });
            }
        }
        bus.leader_change
            .bind(proposer.handles.leader_change.clone());
        bus.ballot_too_low
            .bind(election.handles.ballot_too_low.clone());
        if let Some(c) = &acceptor.handles.compact {
            bus.compact.bind(c.clone());
        }
        if let Some(c) = &election.handles.configured {
            bus.configured_election.bind(c.clone());
        }
        let router_actor = PaxosRouter::new(id, targets);
        let mut node = PaxosNode {
            id,
            supervisor: tree.address(),
            // The Learner, when it offers, takes the node's envelopes itself
            // (most of them are its own) and hands on the rest.
            inbox: learner
                .handles
                .inbox
                .clone()
                .unwrap_or_else(|| router.clone().recipient()),
            submit: proposer.handles.submit.clone(),
            drain: proposer.handles.drain.clone(),
            submissions,
            reconfigure: proposer.handles.reconfigure.clone(),
            proposer_status: proposer.handles.status.clone(),
            learner_status: learner.handles.status.clone(),
            learner_state: learner.handles.state.clone(),
            learner_snapshot: learner.handles.snapshot.clone(),
            direct: acceptor.handles.direct.clone(),
            panics: [
                acceptor.handles.panic.clone(),
                proposer.handles.panic.clone(),
                learner.handles.panic.clone(),
                election.handles.panic.clone(),
            ],
        };
        let started: Result<(), SupervisionError> = (|| {
            (acceptor.start)(&mut tree, components::ACCEPTOR)?;
            (learner.start)(&mut tree, components::LEARNER)?;
            (proposer.start)(&mut tree, components::PROPOSER)?;
            (election.start)(&mut tree, components::ELECTION)?;
            tree.start_child(components::ROUTER, router_slot, router_actor)?;
            Ok(())
        })();
        // The names are distinct constants: a duplicate cannot happen.
        debug_assert!(started.is_ok(), "{started:?}");
        node.supervisor = tree.start();
        node
    }
}

/// A running Paxos node: its supervisor, its inbox and the client API.
/// Cheap to clone; `Send + Sync` (every handle is an actix address).
#[derive(Clone)]
pub struct PaxosNode {
    id: NodeId,
    supervisor: Addr<NodeSupervisor>,
    inbox: Recipient<Envelope<PaxosMessage>>,
    submit: Recipient<Submit>,
    drain: Option<Recipient<DrainSubmissions>>,
    submissions: Arc<SubmissionQueue>,
    reconfigure: Option<Recipient<Reconfigure>>,
    proposer_status: Option<Recipient<GetProposerStatus>>,
    learner_status: Option<Recipient<GetLearnerStatus>>,
    learner_state: Option<Recipient<GetLearnerState>>,
    learner_snapshot: Option<Recipient<TakeSnapshot>>,
    direct: Option<Recipient<DirectRequest>>,
    panics: [Option<Recipient<InjectPanic>>; 4],
}

impl PaxosNode {
    /// The node.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Its supervisor.
    pub fn supervisor(&self) -> &Addr<NodeSupervisor> {
        &self.supervisor
    }

    /// Where the network delivers this node's messages.
    pub fn inbox(&self) -> Recipient<Envelope<PaxosMessage>> {
        self.inbox.clone()
    }

    /// Proposes `command` for `client`: resolves once the slot holding it is
    /// chosen and delivered here, with what applying it returned and its
    /// position (ballot round as term, slot as index). Reads are commands
    /// too: they go through the log, which makes them linearizable.
    pub async fn submit(
        &self,
        command: KvCommand,
        client: ClientId,
    ) -> Result<Committed, ProposeError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let submit = Submit {
            client,
            command,
            reply,
        };
        match &self.drain {
            Some(drain) => match self.submissions.push(submit) {
                Pushed::Wake => drain.do_send(DrainSubmissions),
                Pushed::Queued => {}
                Pushed::Refused(_, error) => return Err(error),
            },
            None => self.submit.do_send(submit),
        }
        answer.await.unwrap_or(Err(ProposeError::Unknown))
    }

    /// Asks this node (it must lead, Multi-Paxos) to choose a
    /// configuration change: resolves once the change is chosen and
    /// delivered here. It takes effect `α` (the window) slots after its
    /// slot; the leader fills those slots with no-ops at once.
    /// [`ProposeError::ChangeInProgress`] while another change is chosen
    /// but not in effect, or proposed but not chosen.
    pub async fn reconfigure(&self, change: Change) -> Result<(), ProposeError> {
        let Some(to) = &self.reconfigure else {
            return Err(ProposeError::Unsupported);
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        to.do_send(Reconfigure { change, reply });
        answer
            .await
            .unwrap_or(Err(ProposeError::Unknown))
            .map(|_| ())
    }

    /// The Proposer's status (`None` while it restarts, or not offered).
    pub async fn proposer_status(&self) -> Option<ProposerStatus> {
        self.proposer_status
            .as_ref()?
            .send(GetProposerStatus)
            .await
            .ok()
    }

    /// The Learner's status (`None` while it restarts, or not offered).
    pub async fn learner_status(&self) -> Option<LearnerStatus> {
        self.learner_status
            .as_ref()?
            .send(GetLearnerStatus)
            .await
            .ok()
    }

    /// The Learner's state machine and how far it got (`None` while it
    /// restarts, or not offered).
    pub async fn learner_state(&self) -> Option<LearnerState> {
        self.learner_state
            .as_ref()?
            .send(GetLearnerState)
            .await
            .ok()
    }

    /// A snapshot of the state machine at a linearizable point: a read
    /// goes through the log first (in Multi-Paxos only the leader gets it
    /// chosen, so a deposed leader cannot answer a stale state), then the
    /// Learner snapshots at its last delivered slot, at or after the
    /// read's (saved and compacted as any snapshot). Errors: the read's
    /// ([`ProposeError::NotLeader`] on a follower...), or
    /// [`ProposeError::Unsupported`] when the Learner offers no snapshot,
    /// [`ProposeError::Unknown`] when it is restarting or failed.
    pub async fn create_snapshot(&self) -> Result<SnapshotTaken, ProposeError> {
        let Some(learner) = &self.learner_snapshot else {
            return Err(ProposeError::Unsupported);
        };
        let read = KvCommand::Get { key: String::new() };
        self.submit(read, SNAPSHOT_CLIENT).await?;
        learner
            .send(TakeSnapshot)
            .await
            .ok()
            .flatten()
            .ok_or(ProposeError::Unknown)
    }

    /// Delivers a Prepare or Accept to the Acceptor on behalf of `from` and
    /// returns its answer (Promise, Accepted or Nack) instead of sending it.
    /// `None`: not offered, the acceptor failed, or not such a message.
    pub async fn direct(&self, from: NodeId, msg: PaxosMessage) -> Option<PaxosMessage> {
        self.direct
            .as_ref()?
            .send(DirectRequest { from, msg })
            .await
            .ok()
            .flatten()
    }

    /// Makes one component panic (`component` one of [`components::ALL`]).
    /// False for an unknown name or a component that offers none.
    pub fn inject_panic(&self, component: &str) -> bool {
        let target = components::ALL
            .iter()
            .position(|c| *c == component)
            .and_then(|i| self.panics[i].as_ref());
        match target {
            Some(p) => {
                p.do_send(InjectPanic);
                true
            }
            None => false,
        }
    }

    /// Stops the node and waits until it is down.
    pub async fn shutdown(&self) {
        let _ = self.supervisor.send(Shutdown).await;
    }
}
