//! The plug-in boundary: what a protocol crate implements so that the
//! engine, the deterministic simulation, the benchmark and the `consensus`
//! program can run it.
//!
//! A protocol plugs in with two traits:
//!
//! * [`ProtocolPlugin`]: builds the nodes of one cluster. It is handed a
//!   [`NodeContext`] (id, peers, transport, seeded RNG, trace) and a
//!   [`NodeWiring`] (where to report safety events, supervision events and
//!   leadership), starts the node's actors and returns a [`PluginNode`]: the
//!   inbox the network delivers to, how to stop the node (a crash), and a
//!   [`NodeHandle`]. The plug-in keeps each node's durable storage across
//!   crashes and drops what a crash loses in [`ProtocolPlugin::on_crash`].
//! * [`NodeHandle`]: how the engine talks to one running node: submit a
//!   [`KvCommand`] for a client, ask who leads, change membership, take a
//!   snapshot, and (for Raft) the two RPCs of the paper. Operations a
//!   protocol does not have answer [`NodeError::Unsupported`] by default.
//!
//! Everything above the boundary (workload, faults, checking, reports,
//! benchmarks) is written once against these traits. Adding Paxos or PBFT is
//! implementing them and registering the plug-in in the
//! [`Registry`](crate::Registry); no engine code changes.
//!
//! Node handles return [`Reply`]s: boxed futures that run on the caller's
//! thread (actix actors are single-threaded, and the simulation keeps every
//! node on one thread).

use crate::error::NodeError;
use crate::observer::ClusterObserver;
use actix::Recipient;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::safety::{SafetyChecker, SafetySink};
use consensus_actors::sim::{NodeContext, StartedNode};
use consensus_actors::supervision::SupervisionEvent;
use consensus_actors::transport::Wire;
use consensus_actors::types::{
    ClientId, ConsensusProtocol, LogEntry, LogId, LogIndex, NodeId, NodeState, Term,
};
use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A node's answer to a request: a future on the caller's thread.
pub type Reply<T> = LocalBoxFuture<'static, Result<T, NodeError>>;

/// A node's answer that may be awaited on any thread.
pub type SendReply<T> = futures::future::BoxFuture<'static, Result<T, NodeError>>;

/// Submits commands to one node from any thread: the benchmark runs its
/// clients on a thread of their own (the nodes on another) when every node
/// offers one ([`NodeHandle::shared_submit`]).
pub trait SharedSubmit: Send + Sync {
    /// The node.
    fn node(&self) -> NodeId;

    /// As [`NodeHandle::submit`].
    fn submit(&self, client: ClientId, command: KvCommand) -> SendReply<Committed>;
}

/// An answer that is ready now.
pub fn ready<T: 'static>(value: Result<T, NodeError>) -> Reply<T> {
    Box::pin(futures::future::ready(value))
}

/// The [`NodeError::Unsupported`] answer.
pub fn unsupported<T: 'static>(what: &'static str) -> Reply<T> {
    ready(Err(NodeError::Unsupported(what)))
}

/// What a protocol offers beyond submitting commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Nodes can be added and removed while the cluster runs.
    pub membership: bool,
    /// A node can be asked to snapshot its state machine.
    pub snapshots: bool,
    /// Raft's RequestVote and AppendEntries can be called directly.
    pub raft_rpcs: bool,
    /// A component of a node can be made to panic (the `panic` fault).
    pub panic_injection: bool,
    /// The protocol tolerates Byzantine replicas.
    pub byzantine: bool,
    /// A committed command's answer says where it sits in the log
    /// ([`Committed::log_id`]); [`ConsensusEngine::propose`] needs it.
    ///
    /// [`ConsensusEngine::propose`]: crate::ConsensusEngine::propose
    pub log_positions: bool,
}

/// A command that committed: what applying it returned and, when the
/// protocol reports it, where it sits in the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// What the state machine returned.
    pub output: KvOutput,
    /// The entry's position: for protocols without terms or indexes, `term`
    /// is the epoch (view, ballot round) and `index` the position (slot,
    /// sequence number). `None` when the protocol does not report it
    /// ([`Capabilities::log_positions`] false).
    pub log_id: Option<LogId>,
}

/// What a node knows of itself and its cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node.
    pub node: NodeId,
    /// Its role.
    pub role: NodeState,
    /// Its epoch: the Raft term, the PBFT view, the Paxos ballot round.
    pub epoch: u64,
    /// The leader it knows of for its epoch.
    pub leader: Option<NodeId>,
    /// Highest position known committed.
    pub commit_index: LogIndex,
    /// Highest position applied to its state machine.
    pub last_applied: LogIndex,
    /// The voting members it knows of, sorted.
    pub members: Vec<NodeId>,
}

/// Raft's RequestVote arguments (Figure 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest {
    /// Candidate requesting the vote.
    pub candidate_id: NodeId,
    /// Candidate's term.
    pub term: Term,
    /// Index of candidate's last log entry.
    pub last_log_index: LogIndex,
    /// Term of candidate's last log entry.
    pub last_log_term: Term,
}

/// Raft's RequestVote results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteResponse {
    /// The voter's current term.
    pub term: Term,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// Raft's AppendEntries arguments (Figure 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// Leader's id.
    pub leader_id: NodeId,
    /// Leader's term.
    pub term: Term,
    /// Index of the entry immediately preceding the new ones.
    pub prev_log_index: LogIndex,
    /// Term of that entry.
    pub prev_log_term: Term,
    /// Entries to store (empty for a heartbeat).
    pub entries: Vec<LogEntry<KvCommand>>,
    /// Leader's commit index.
    pub leader_commit: LogIndex,
}

/// Raft's AppendEntries results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResponse {
    /// The follower's current term.
    pub term: Term,
    /// Whether the follower's log matched at `prev_log_index`.
    pub success: bool,
}

/// How the engine talks to one running node (one incarnation: a restarted
/// node gets a new handle). Every method but [`node`](Self::node) and
/// [`submit`](Self::submit) has a default that answers
/// [`NodeError::Unsupported`].
pub trait NodeHandle {
    /// The node.
    fn node(&self) -> NodeId;

    /// Submits `command` on behalf of `client` and resolves when it
    /// committed and was applied (or failed). A node that is not the leader
    /// answers [`NodeError::NotLeader`] with the leader it knows.
    fn submit(&self, client: ClientId, command: KvCommand) -> Reply<Committed>;

    /// What the node knows of itself and its cluster.
    fn info(&self) -> Reply<NodeInfo>;

    /// Adds `node` to the cluster (the node must be running already).
    /// Resolves when the change committed. Only a leader can do it.
    fn add_member(&self, node: NodeId) -> Reply<()> {
        let _ = node;
        unsupported("add_node")
    }

    /// Removes `node` from the cluster. Resolves when the change committed.
    fn remove_member(&self, node: NodeId) -> Reply<()> {
        let _ = node;
        unsupported("remove_node")
    }

    /// A consistent snapshot of the state machine (its serialized state at
    /// a linearizable point), taken on this node, which must lead.
    fn create_snapshot(&self) -> Reply<Vec<u8>> {
        unsupported("create_snapshot")
    }

    /// Delivers a RequestVote to this node and returns its answer.
    fn request_vote(&self, request: VoteRequest) -> Reply<VoteResponse> {
        let _ = request;
        unsupported("request_vote")
    }

    /// Delivers an AppendEntries to this node and returns its answer.
    fn append_entries(&self, request: AppendRequest) -> Reply<AppendResponse> {
        let _ = request;
        unsupported("append_entries")
    }

    /// A handle that submits to this node from any thread, when the
    /// protocol's client path allows it (`None`, the default: only
    /// [`submit`](Self::submit), on the node's thread).
    fn shared_submit(&self) -> Option<std::sync::Arc<dyn SharedSubmit>> {
        None
    }

    /// Makes one component of the node panic (its supervisor restarts it).
    /// Returns false when the protocol cannot.
    fn inject_panic(&self) -> bool {
        false
    }

    /// Makes the next sync of the node's store fail, its write torn or
    /// landed (the `disk` fault; see
    /// [`MemStorage::fail_next_sync`](consensus_actors::storage::MemStorage::fail_next_sync)).
    /// Returns false when the protocol cannot.
    fn fail_next_sync(&self, outcome: consensus_actors::storage::SyncFailure) -> bool {
        let _ = outcome;
        false
    }
}

/// Where a node reports what the engine observes. Handed to
/// [`ProtocolPlugin::start_node`] for every node of a cluster.
#[derive(Clone)]
pub struct NodeWiring {
    /// The cluster's configuration.
    pub config: ConsensusConfig,
    /// Where the node's components report [`SafetyEvent`]s
    /// (off in benchmarks).
    ///
    /// [`SafetyEvent`]: consensus_actors::safety::SafetyEvent
    pub safety: SafetySink,
    /// Where the node's supervision tree reports failures and restarts
    /// (pass it to [`SupervisorBuilder::subscriber`]).
    ///
    /// [`SupervisorBuilder::subscriber`]: consensus_actors::supervision::SupervisorBuilder::subscriber
    pub supervision: Option<Recipient<SupervisionEvent>>,
    /// The members of the initial configuration (the nodes that bootstrap
    /// the cluster). A node started that is not listed joins later, through
    /// [`NodeHandle::add_member`] on the leader.
    pub initial_members: Vec<NodeId>,
    /// Offer [`NodeHandle::request_vote`] and [`NodeHandle::append_entries`]
    /// (the engine facade asks for them; benchmarks and simulations do not,
    /// so a plug-in need not pay for them there).
    pub direct_rpcs: bool,
    /// Leadership and other cluster-level facts. Raft's `BecameLeader` /
    /// `SteppedDown` safety events reach it by themselves; a protocol that
    /// does not emit those calls
    /// [`ClusterObserver::leader_elected`] itself.
    pub observer: ClusterObserver,
    /// The node runs inside the deterministic simulation (virtual time).
    pub simulated: bool,
}

/// A node a plug-in started.
pub struct PluginNode<M: Wire> {
    /// Its inbox and how to stop it.
    pub started: StartedNode<M>,
    /// How the engine talks to it.
    pub handle: Rc<dyn NodeHandle>,
}

/// A consensus protocol, as the engine runs it. One value builds and keeps
/// the nodes of one cluster (and their durable storage across crashes).
pub trait ProtocolPlugin: Sized + 'static {
    /// The messages its nodes exchange.
    type Message: Wire;

    /// Which protocol this is.
    const PROTOCOL: ConsensusProtocol;

    /// What it offers beyond submitting commands.
    const CAPABILITIES: Capabilities;

    /// A plug-in for a cluster configured by `config` (already validated
    /// with [`ConsensusConfig::validate`]). Refuses settings it cannot honour.
    fn new(config: &ConsensusConfig) -> Result<Self, crate::EngineError>;

    /// The invariants checked while it runs in a simulation.
    fn safety_checker(&self, config: &ConsensusConfig) -> SafetyChecker {
        let _ = config;
        SafetyChecker::for_protocol(Self::PROTOCOL)
    }

    /// Builds (or rebuilds after a crash, from its durable storage) node
    /// `ctx.id`, inside the current actix System.
    fn start_node(
        &mut self,
        ctx: NodeContext<Self::Message>,
        wiring: &NodeWiring,
    ) -> PluginNode<Self::Message>;

    /// Node `node` crashed (its actors are stopped): drop what a crash loses.
    fn on_crash(&mut self, node: NodeId);
}

/// The running nodes of a cluster and their handles; shared between the
/// cluster host and the clients (single-threaded).
#[derive(Clone, Default)]
pub struct NodeDirectory {
    nodes: Rc<RefCell<BTreeMap<NodeId, Rc<dyn NodeHandle>>>>,
}

impl NodeDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle of running node `node`.
    pub fn get(&self, node: NodeId) -> Option<Rc<dyn NodeHandle>> {
        self.nodes.borrow().get(&node).cloned()
    }

    /// The running nodes, sorted.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.borrow().keys().copied().collect()
    }

    /// Every running node's handle, in id order.
    pub fn handles(&self) -> Vec<Rc<dyn NodeHandle>> {
        self.nodes.borrow().values().cloned().collect()
    }

    /// Records `node`'s handle (a start or restart).
    pub fn insert(&self, node: NodeId, handle: Rc<dyn NodeHandle>) {
        self.nodes.borrow_mut().insert(node, handle);
    }

    /// Forgets `node` (a crash or stop).
    pub fn remove(&self, node: NodeId) {
        self.nodes.borrow_mut().remove(&node);
    }

    /// Whether `node` is running.
    pub fn contains(&self, node: NodeId) -> bool {
        self.nodes.borrow().contains_key(&node)
    }
}

impl std::fmt::Debug for NodeDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDirectory")
            .field("nodes", &self.ids())
            .finish()
    }
}
