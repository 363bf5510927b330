//! The Raft plug-in: the supervised node ([`RaftNodeBuilder`]) replicating
//! the reference [`KvStore`], behind the runtime's [`ProtocolPlugin`] and
//! [`NodeHandle`], so the engine, `consensus simulate`, `consensus bench`
//! and campaigns run it. The engine registers it under [`PROTOCOL`]
//! (`raft`).
//!
//! * Each node keeps a crash-aware [`MemStorage`] across incarnations; a
//!   crash drops its unsynced writes ([`ProtocolPlugin::on_crash`]).
//! * Each node records its state changes (role, term, leader) in the run's
//!   trace ([`NodeContext::trace`]).
//! * Nodes of the initial configuration bootstrap with it; a node started
//!   later starts empty and waits for the leader to add it.
//! * Commands (reads included) are proposed through the log.
//! * The `panic` fault makes one of the four components panic, in turn;
//!   the node's supervisor restarts it.
//! * With [`NodeWiring::direct_rpcs`], each node sends through an
//!   [`RpcTap`] so that the engine's `request_vote` / `append_entries` can
//!   deliver a RequestVote or AppendEntries to the node and catch its
//!   answer before it reaches the network.

use crate::error::ProposeError;
use crate::events::HardState;
use crate::membership_manager::MembershipChangeError;
use crate::messages::{AppendEntries, EntryRef, RaftCommand, RaftMessage, RequestVote};
use crate::node::{components, RaftNode, RaftNodeBuilder};
use crate::safety::{self, RaftSafetyEvent, SafetyChecker};
use crate::{Membership, RaftConfig};
use actix::prelude::*;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvStore, StateMachine};
use consensus_actors::plugin::{
    ready, AppendRequest, AppendResponse, Capabilities, Committed, NodeError, NodeHandle, NodeInfo,
    NodeWiring, PluginError, PluginNode, ProtocolPlugin, Reply, SendReply, SharedSubmit,
    VoteRequest, VoteResponse,
};
use consensus_actors::sim::{NodeContext, StartedNode};
use consensus_actors::storage::{MemStorage, SyncFailure};
use consensus_actors::supervision::Shutdown;
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{ClientId, ConsensusProtocol, LogEntry, NodeId};
use rand::Rng;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// The name the engine registers Raft under.
pub const PROTOCOL: ConsensusProtocol = ConsensusProtocol::named("raft");

/// The messages Raft nodes exchange in the engine.
pub type RaftKvMessage = RaftMessage<KvCommand>;

/// The storage of one node.
pub type RaftKvStorage = MemStorage<HardState, EntryRef<KvCommand>>;

/// The node builder the plug-in starts each node with.
pub type RaftKvBuilder = RaftNodeBuilder<KvStore, RaftKvStorage>;

/// Changes the builder of every node before it starts: the way a variant
/// of the plug-in swaps a component (through the builder's slots) or
/// changes a node's settings. Called with the node's id.
pub type NodeSetup = Arc<dyn Fn(NodeId, RaftKvBuilder) -> RaftKvBuilder + Send + Sync>;

/// Raft, as the engine runs it. See the [module documentation](self).
pub struct RaftPlugin {
    cfg: RaftConfig,
    stores: BTreeMap<NodeId, RaftKvStorage>,
    setup: Option<NodeSetup>,
}

impl RaftPlugin {
    /// The stock plug-in for `config`, with every node's builder passed
    /// through `setup` before it starts: a variant of Raft (a component
    /// swapped through the builder's slots) that runs under the engine,
    /// `simulate`, `bench` and campaigns like the stock one. Register it
    /// under a name of its own with the engine's `Registry::register_with`.
    pub fn with_setup(
        config: &ConsensusConfig,
        setup: impl Fn(NodeId, RaftKvBuilder) -> RaftKvBuilder + Send + Sync + 'static,
    ) -> Result<Self, PluginError> {
        let mut plugin = Self::new(config)?;
        plugin.setup = Some(Arc::new(setup));
        Ok(plugin)
    }

    /// The Raft settings the nodes run with.
    pub fn raft_config(&self) -> &RaftConfig {
        &self.cfg
    }

    /// The durable storage of `node` (kept across crashes).
    pub fn storage(&self, node: NodeId) -> Option<&RaftKvStorage> {
        self.stores.get(&node)
    }
}

impl ProtocolPlugin for RaftPlugin {
    type Message = RaftKvMessage;

    type Event = RaftSafetyEvent;

    const CAPABILITIES: Capabilities = Capabilities {
        membership: true,
        snapshots: true,
        raft_rpcs: true,
        panic_injection: true,
        byzantine: false,
        log_positions: true,
    };

    fn new(config: &ConsensusConfig) -> Result<Self, PluginError> {
        let cfg = RaftConfig::from_consensus(config);
        cfg.validate()?;
        Ok(Self {
            cfg,
            stores: BTreeMap::new(),
            setup: None,
        })
    }

    fn safety_checker(&self, _config: &ConsensusConfig) -> SafetyChecker {
        safety::checker()
    }

    fn start_node(
        &mut self,
        mut ctx: NodeContext<RaftKvMessage>,
        wiring: &NodeWiring<RaftSafetyEvent>,
    ) -> PluginNode<RaftKvMessage> {
        let id = ctx.id;
        let storage = self.stores.entry(id).or_default().clone();
        let store = storage.clone();
        let initial = if wiring.initial_members.contains(&id) {
            Membership::new(wiring.initial_members.iter().copied())
        } else {
            Membership::empty()
        };
        let tap = wiring
            .direct_rpcs
            .then(|| RpcTap::new(ctx.transport.clone()).start());
        let transport = match &tap {
            Some(tap) => Transport::new(id, tap.clone().recipient()),
            None => ctx.transport.clone(),
        };
        let mut builder = RaftNodeBuilder::new(
            id,
            self.cfg.clone(),
            initial,
            storage,
            KvStore::default,
            transport,
        )
        .seed(ctx.rng.random())
        .safety(wiring.safety.clone())
        .trace(ctx.trace.clone())
        .time_base(wiring.observer.origin());
        if let Some(subscriber) = &wiring.supervision {
            builder = builder.supervision_subscriber(subscriber.clone());
        }
        if let Some(setup) = &self.setup {
            builder = setup(id, builder);
        }
        let node = builder.start();
        let supervisor = node.supervisor().clone();
        let stop_tap = tap.clone();
        let shutdown = move || {
            supervisor.do_send(Shutdown);
            if let Some(tap) = stop_tap {
                tap.do_send(StopTap);
            }
        };
        PluginNode {
            started: StartedNode::new(node.inbox(), shutdown),
            handle: Rc::new(RaftHandle {
                shared: Arc::new(node.clone()),
                node: Rc::new(node),
                tap,
                next_panic: Cell::new(0),
                store,
            }),
        }
    }

    fn on_crash(&mut self, node: NodeId) {
        if let Some(store) = self.stores.get(&node) {
            store.crash();
        }
    }
}

fn propose_error(e: ProposeError) -> NodeError {
    match e {
        ProposeError::NotLeader { leader } => NodeError::NotLeader { leader },
        ProposeError::Busy => NodeError::Refused("too many requests in flight".into()),
        ProposeError::TransferInProgress => {
            NodeError::Refused("leadership transfer in progress".into())
        }
        ProposeError::Dropped => NodeError::Dropped,
        ProposeError::Unknown => NodeError::Unknown("leadership lost or node stopped".into()),
    }
}

fn membership_error(e: MembershipChangeError) -> NodeError {
    match e {
        MembershipChangeError::NotLeader { leader } => NodeError::NotLeader { leader },
        MembershipChangeError::LeadershipLost => NodeError::Unknown(e.to_string()),
        other => NodeError::Refused(other.to_string()),
    }
}

/// The engine's handle on one Raft node.
struct RaftHandle {
    /// Shared, not cloned, by the requests in flight (a clone of a
    /// [`RaftNode`] clones every one of its component handles).
    node: Rc<RaftNode<KvStore>>,
    /// The same node, for [`SharedSubmit`] handles.
    shared: Arc<RaftNode<KvStore>>,
    tap: Option<Addr<RpcTap>>,
    next_panic: Cell<usize>,
    /// The node's store, for the `disk` fault.
    store: RaftKvStorage,
}

impl RaftHandle {
    fn rpc(&self, expect: Expect, msg: RaftKvMessage, from: NodeId) -> Reply<RaftKvMessage> {
        let Some(tap) = self.tap.clone() else {
            return ready(Err(NodeError::Unsupported(
                "direct RPCs (not enabled for this cluster)",
            )));
        };
        let inbox = self.node.inbox();
        let to = self.node.id();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            tap.send(ExpectReply {
                to: from,
                expect,
                reply,
            })
            .await
            .map_err(|_| NodeError::Stopped)?;
            inbox
                .try_send(Envelope { from, to, msg })
                .map_err(|_| NodeError::Stopped)?;
            answer.await.map_err(|_| NodeError::Stopped)
        })
    }
}

impl NodeHandle for RaftHandle {
    fn node(&self) -> NodeId {
        self.node.id()
    }

    fn submit(&self, client: ClientId, command: KvCommand) -> Reply<Committed> {
        let node = Rc::clone(&self.node);
        Box::pin(async move {
            node.propose_at(command, client)
                .await
                .map(|c| Committed {
                    output: c.output,
                    log_id: Some(c.log_id),
                })
                .map_err(propose_error)
        })
    }

    fn info(&self) -> Reply<NodeInfo> {
        let node = Rc::clone(&self.node);
        Box::pin(async move {
            let status = node.status().await.ok_or_else(|| {
                NodeError::Unknown("status unavailable (restarting or stopped)".into())
            })?;
            Ok(NodeInfo {
                node: status.id,
                role: status.role,
                epoch: status.term.get(),
                leader: status.leader,
                commit_index: status.commit_index,
                last_applied: status.last_applied,
                members: status.membership.all_voters().into_iter().collect(),
            })
        })
    }

    fn add_member(&self, node: NodeId) -> Reply<()> {
        let leader = Rc::clone(&self.node);
        Box::pin(async move {
            leader
                .add_node(node)
                .await
                .map(|_| ())
                .map_err(membership_error)
        })
    }

    fn remove_member(&self, node: NodeId) -> Reply<()> {
        let leader = Rc::clone(&self.node);
        Box::pin(async move {
            leader
                .remove_node(node)
                .await
                .map(|_| ())
                .map_err(membership_error)
        })
    }

    fn create_snapshot(&self) -> Reply<Vec<u8>> {
        let node = Rc::clone(&self.node);
        Box::pin(async move {
            node.read(|kv: &KvStore| kv.snapshot())
                .await
                .map_err(propose_error)
        })
    }

    fn request_vote(&self, request: VoteRequest) -> Reply<VoteResponse> {
        let msg = RaftMessage::RequestVote(RequestVote {
            term: request.term,
            candidate_id: request.candidate_id,
            last_log_index: request.last_log_index,
            last_log_term: request.last_log_term,
            pre_vote: false,
            leadership_transfer: false,
        });
        let answer = self.rpc(Expect::Vote, msg, request.candidate_id);
        Box::pin(async move {
            match answer.await? {
                RaftMessage::RequestVoteResponse(r) => Ok(VoteResponse {
                    term: r.term,
                    granted: r.vote_granted,
                }),
                other => Err(NodeError::Unknown(format!(
                    "unexpected answer {}",
                    other.name()
                ))),
            }
        })
    }

    fn append_entries(&self, request: AppendRequest) -> Reply<AppendResponse> {
        let entries: Vec<EntryRef<KvCommand>> = request
            .entries
            .into_iter()
            .map(|e| {
                Arc::new(LogEntry::new(
                    e.term,
                    e.index,
                    RaftCommand::Normal(e.command),
                    e.timestamp_us,
                    e.client_id,
                ))
            })
            .collect();
        let msg = RaftMessage::AppendEntries(AppendEntries {
            term: request.term,
            leader_id: request.leader_id,
            prev_log_index: request.prev_log_index,
            prev_log_term: request.prev_log_term,
            entries,
            leader_commit: request.leader_commit,
            round: 0,
        });
        let answer = self.rpc(Expect::Append, msg, request.leader_id);
        Box::pin(async move {
            match answer.await? {
                RaftMessage::AppendEntriesResponse(r) => Ok(AppendResponse {
                    term: r.term,
                    success: r.success,
                }),
                other => Err(NodeError::Unknown(format!(
                    "unexpected answer {}",
                    other.name()
                ))),
            }
        })
    }

    fn shared_submit(&self) -> Option<Arc<dyn SharedSubmit>> {
        Some(Arc::new(RaftSubmit(Arc::clone(&self.shared))))
    }

    fn inject_panic(&self) -> bool {
        let i = self.next_panic.get();
        self.next_panic.set((i + 1) % components::ALL.len());
        self.node.inject_panic(components::ALL[i])
    }

    fn fail_next_sync(&self, outcome: SyncFailure) -> bool {
        self.store.fail_next_sync(outcome);
        true
    }
}

/// Submits to one Raft node from any thread (the client API of a
/// [`RaftNode`] is made of thread-safe actix handles).
struct RaftSubmit(Arc<RaftNode<KvStore>>);

impl SharedSubmit for RaftSubmit {
    fn node(&self) -> NodeId {
        self.0.id()
    }

    fn submit(&self, client: ClientId, command: KvCommand) -> SendReply<Committed> {
        let node = Arc::clone(&self.0);
        Box::pin(async move {
            node.propose_at(command, client)
                .await
                .map(|c| Committed {
                    output: c.output,
                    log_id: Some(c.log_id),
                })
                .map_err(propose_error)
        })
    }
}

/// Which answer an [`RpcTap`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Vote,
    Append,
}

impl Expect {
    fn matches(self, msg: &RaftKvMessage) -> bool {
        match self {
            Expect::Vote => matches!(msg, RaftMessage::RequestVoteResponse(r) if !r.pre_vote),
            Expect::Append => matches!(msg, RaftMessage::AppendEntriesResponse(_)),
        }
    }
}

struct Pending {
    to: NodeId,
    expect: Expect,
    reply: oneshot::Sender<RaftKvMessage>,
}

/// Sits between a Raft node and the network: forwards everything, except
/// the answer to a request the engine delivered directly, which it hands
/// back to the engine instead.
pub struct RpcTap {
    outbound: Transport<RaftKvMessage>,
    pending: Vec<Pending>,
}

impl RpcTap {
    fn new(outbound: Transport<RaftKvMessage>) -> Self {
        Self {
            outbound,
            pending: Vec::new(),
        }
    }
}

impl Actor for RpcTap {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct ExpectReply {
    to: NodeId,
    expect: Expect,
    reply: oneshot::Sender<RaftKvMessage>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopTap;

impl Handler<ExpectReply> for RpcTap {
    type Result = ();

    fn handle(&mut self, msg: ExpectReply, _ctx: &mut Context<Self>) {
        self.pending.push(Pending {
            to: msg.to,
            expect: msg.expect,
            reply: msg.reply,
        });
    }
}

impl Handler<Envelope<RaftKvMessage>> for RpcTap {
    type Result = ();

    fn handle(&mut self, env: Envelope<RaftKvMessage>, _ctx: &mut Context<Self>) {
        if !self.pending.is_empty() {
            // Forget requests whose caller gave up.
            self.pending.retain(|p| !p.reply.is_closed());
            if let Some(i) = self
                .pending
                .iter()
                .position(|p| p.to == env.to && p.expect.matches(&env.msg))
            {
                let p = self.pending.remove(i);
                if let Err(msg) = p.reply.send(env.msg) {
                    self.outbound.send(env.to, msg);
                }
                return;
            }
        }
        self.outbound.send(env.to, env.msg);
    }
}

impl Handler<StopTap> for RpcTap {
    type Result = ();

    fn handle(&mut self, _msg: StopTap, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
