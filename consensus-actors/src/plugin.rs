//! The plug-in boundary: what a protocol crate implements so that the
//! engine, the deterministic simulation, the benchmark and the `consensus`
//! program can run it. A protocol crate implements these traits itself (the
//! plug-in is part of the protocol: the Raft crate has its own) and
//! the engine's registry runs it by name.
//!
//! A protocol plugs in with two traits:
//!
//! * [`ProtocolPlugin`]: builds the nodes of one cluster. It is handed a
//!   [`NodeContext`] (id, peers, transport, seeded RNG, trace) and a
//!   [`NodeWiring`] (where to report safety events and supervision events),
//!   starts the node's actors and returns a [`PluginNode`]: the
//!   inbox the network delivers to, how to stop the node (a crash), and a
//!   [`NodeHandle`]. The plug-in keeps each node's durable storage across
//!   crashes and drops what a crash loses in [`ProtocolPlugin::on_crash`].
//! * [`NodeHandle`]: how the engine talks to one running node: submit a
//!   [`KvCommand`] for a client, ask who leads, change membership, take a
//!   snapshot, and the two RPCs of the paper (Raft's RequestVote and
//!   AppendEntries; Paxos answers a Prepare to the first). Operations a
//!   protocol does not have answer [`NodeError::Unsupported`] by default.
//!
//! Everything above the boundary (workload, faults, checking, reports,
//! benchmarks) is written once against these traits. Adding a protocol is
//! implementing them in the protocol's crate and registering the plug-in by
//! name in the engine's registry; no engine code changes.
//!
//! Leadership is observed from the protocol-neutral
//! [`SafetyEvent::BecameLeader`](crate::safety::SafetyEvent::BecameLeader) /
//! `SteppedDown` events every protocol reports through
//! [`NodeWiring::safety`].
//!
//! Node handles return [`Reply`]s: boxed futures that run on the caller's
//! thread (actix actors are single-threaded, and the simulation keeps every
//! node on one thread).

use crate::config::{ConfigError, ConsensusConfig};
use crate::kv::{KvCommand, KvOutput};
use crate::observer::ClusterObserver;
use crate::safety::{ProtocolEvent, SafetyChecker, SafetySink};
use crate::sim::{NodeContext, StartedNode};
use crate::supervision::SupervisionEvent;
use crate::transport::Wire;
use crate::types::{ClientId, LogEntry, LogId, LogIndex, NodeId, NodeState, Term};
use actix::Recipient;
use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Why one node did not produce a result for a request. It says whether
/// the request *may* have taken effect, which is what a client history
/// needs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NodeError {
    /// The node is not the leader; `leader` is the leader it knows of, if
    /// any. The request was certainly not applied.
    #[error("not the leader (leader: {})", leader_name(*.leader))]
    NotLeader {
        /// The leader the node knows of.
        leader: Option<NodeId>,
    },
    /// The node refused the request without acting on it (too many requests
    /// in flight, a leadership transfer, a configuration change pending...).
    /// The request was certainly not applied.
    #[error("refused: {0}")]
    Refused(String),
    /// The request was overwritten before it committed: certainly not
    /// applied.
    #[error("dropped: the request was certainly not applied")]
    Dropped,
    /// The outcome cannot be known (leadership lost, the node crashed...):
    /// the request may or may not have been applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The node is not running (crashed, stopped or never started). A
    /// request that was in flight when it stopped may have been applied.
    #[error("node is not running")]
    Stopped,
    /// The protocol does not offer this operation.
    #[error("{0} is not supported by this protocol")]
    Unsupported(&'static str),
}

impl NodeError {
    /// Whether the request may have taken effect despite the error (the
    /// client must record an unknown outcome, not a failure).
    pub fn may_have_applied(&self) -> bool {
        matches!(self, NodeError::Unknown(_) | NodeError::Stopped)
    }
}

fn leader_name(leader: Option<NodeId>) -> String {
    leader.map_or_else(|| "unknown".to_string(), |n| n.to_string())
}

/// Why a plug-in cannot run a cluster with the configuration it was given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The configuration is impossible.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A setting the protocol cannot honour.
    #[error("{0}")]
    InvalidSetting(String),
}

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
    /// ([`Committed::log_id`]); the engine's `propose` needs it.
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
    /// [`MemStorage::fail_next_sync`](crate::storage::MemStorage::fail_next_sync)).
    /// Returns false when the protocol cannot.
    fn fail_next_sync(&self, outcome: crate::storage::SyncFailure) -> bool {
        let _ = outcome;
        false
    }
}

/// Where a node reports what the engine observes. Handed to
/// [`ProtocolPlugin::start_node`] for every node of a cluster.
pub struct NodeWiring<E: ProtocolEvent> {
    /// The cluster's configuration.
    pub config: ConsensusConfig,
    /// Where the node's components report [`SafetyEvent`]s, leadership
    /// included (off in benchmarks).
    ///
    /// [`SafetyEvent`]: crate::safety::SafetyEvent
    pub safety: SafetySink<E>,
    /// Where the node's supervision tree reports failures and restarts
    /// (pass it to [`SupervisorBuilder::subscriber`]).
    ///
    /// [`SupervisorBuilder::subscriber`]: crate::supervision::SupervisorBuilder::subscriber
    pub supervision: Option<Recipient<SupervisionEvent>>,
    /// The members of the initial configuration (the nodes that bootstrap
    /// the cluster). A node started that is not listed joins later, through
    /// [`NodeHandle::add_member`] on the leader.
    pub initial_members: Vec<NodeId>,
    /// Offer [`NodeHandle::request_vote`] and [`NodeHandle::append_entries`]
    /// (the engine facade asks for them; benchmarks and simulations do not,
    /// so a plug-in need not pay for them there).
    pub direct_rpcs: bool,
    /// Leadership and other cluster-level facts. The neutral
    /// `BecameLeader` / `SteppedDown` safety events reach it by themselves
    /// (when safety events are checked); its
    /// [`origin`](ClusterObserver::origin) is the cluster's time origin.
    pub observer: ClusterObserver,
    /// The node runs inside the deterministic simulation (virtual time).
    pub simulated: bool,
}

impl<E: ProtocolEvent> Clone for NodeWiring<E> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            safety: self.safety.clone(),
            supervision: self.supervision.clone(),
            initial_members: self.initial_members.clone(),
            direct_rpcs: self.direct_rpcs,
            observer: self.observer.clone(),
            simulated: self.simulated,
        }
    }
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
///
/// The engine's registry creates one per cluster through a factory
/// (by default [`ProtocolPlugin::new`]), so a variant of a protocol (a node
/// with a component swapped) registers as a factory that configures the
/// stock plug-in.
pub trait ProtocolPlugin: Sized + 'static {
    /// The messages its nodes exchange.
    type Message: Wire;

    /// The protocol's own safety events (see [`ProtocolEvent`]).
    type Event: ProtocolEvent;

    /// What it offers beyond submitting commands.
    const CAPABILITIES: Capabilities;

    /// A plug-in for a cluster configured by `config` (already validated
    /// with [`ConsensusConfig::validate`]). Refuses settings it cannot honour.
    fn new(config: &ConsensusConfig) -> Result<Self, PluginError>;

    /// The invariants checked while it runs in a simulation.
    fn safety_checker(&self, config: &ConsensusConfig) -> SafetyChecker<Self::Event>;

    /// Builds (or rebuilds after a crash, from its durable storage) node
    /// `ctx.id`, inside the current actix System.
    fn start_node(
        &mut self,
        ctx: NodeContext<Self::Message>,
        wiring: &NodeWiring<Self::Event>,
    ) -> PluginNode<Self::Message>;

    /// Node `node` crashed (its actors are stopped): drop what a crash loses.
    fn on_crash(&mut self, node: NodeId);

    /// Makes `node` one of the protocol's Byzantine replicas from its next
    /// start on, with a behaviour chosen by `draw` (a seeded random number:
    /// `consensus simulate --faults byzantine` calls it before the cluster
    /// starts). Returns the behaviour's name, or `None` when the protocol
    /// has no Byzantine replicas (the default).
    fn make_byzantine(&mut self, node: NodeId, draw: u64) -> Option<String> {
        let _ = (node, draw);
        None
    }

    /// A way to read, during and after a run, the evidence the protocol's
    /// correct replicas recorded against others (Byzantine fault
    /// detection), or `None` when it records none (the default).
    fn evidence_probe(&self) -> Option<EvidenceProbe> {
        None
    }

    /// Whether this plug-in, as configured, can add and remove nodes while
    /// it runs (`consensus simulate --membership-changes`). The default is
    /// [`Capabilities::membership`]; a plug-in running several protocols
    /// answers for the one configured.
    fn supports_membership_changes(&self) -> bool {
        Self::CAPABILITIES.membership
    }
}

/// One record of misbehaviour a replica saw another commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Who saw it.
    pub witness: NodeId,
    /// The replica accused.
    pub accused: NodeId,
    /// What it did, in the protocol's words.
    pub kind: String,
    /// The proof, readable.
    pub proof: String,
}

/// Reads the evidence recorded so far: `(records kept, total recorded)`.
pub type EvidenceProbe = Box<dyn Fn() -> (Vec<Evidence>, u64)>;

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
