//! The Paxos plug-in: [`PaxosPlugin`] runs `paxos` ([`Mode::Basic`]) or
//! `multi-paxos` ([`Mode::Multi`]), chosen by the configuration's protocol
//! name, behind the runtime's [`ProtocolPlugin`] and [`NodeHandle`], so the
//! engine, `consensus simulate`, `consensus bench` and campaigns run them.
//!
//! * Each node keeps its stores ([`NodeStores`], crash-aware
//!   [`MemStorage`](consensus_actors::storage::MemStorage)s) across
//!   incarnations; a crash drops their unsynced writes.
//! * Commands (reads included) go through the log: a read is linearizable
//!   because it is ordered with every write by its slot and answered when
//!   its slot is delivered.
//! * `paxos`: every node proposes, so every node reports itself
//!   [`NodeState::Leader`] in [`NodeHandle::info`]. `multi-paxos`: the node
//!   whose phase 1 succeeded leads; the others answer
//!   [`NodeError::NotLeader`] with the leader the ballot election names.
//! * [`NodeHandle::request_vote`] delivers a Prepare (ballot = (term,
//!   candidate), slots from `last_log_index + 1`) to the node's Acceptor:
//!   granted is a Promise, the term answered is the promised ballot's
//!   round. AppendEntries has no Paxos counterpart: Unsupported.
//! * `add_node` / `remove_node` (`multi-paxos` only; `paxos` answers
//!   Unsupported): the leader chooses the change in a slot `s`; it names
//!   the acceptors from slot `s + α` on, `α` being the window (see
//!   [`proposer::core`](crate::proposer::core)). A second change while one
//!   is chosen but not yet in effect, or proposed but not yet chosen, is
//!   refused ([`ProposeError::ChangeInProgress`]).
//!   A node added is started knowing the initial acceptors, and learns the
//!   changes from its peers' log or snapshot.
//! * The `panic` fault makes one of the four components panic, in turn.
//! * Log compaction: every `snapshot_threshold` delivered slots a learner
//!   snapshots its key-value store; it and its acceptor drop the slots
//!   below (see [`learner::core`](crate::learner::core)). The engine's
//!   `create_snapshot` runs a read through the log on the leader (a
//!   linearizable point), then has its learner snapshot at its last
//!   delivered slot at once ([`PaxosNode::create_snapshot`](crate::node::PaxosNode::create_snapshot)):
//!   the serialized key-value store, as Raft's answers.

use crate::config::{Mode, PaxosConfig};
use crate::error::ProposeError;
use crate::messages::{PaxosMessage, Prepare};
use crate::node::{components, NodeStores, PaxosNode, PaxosNodeBuilder};
use crate::proposer::Role;
use crate::safety::{self, PaxosEvent};
use crate::slots::AcceptorStore;
use crate::types::{Ballot, Slot};
use crate::wiring::Change;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::KvCommand;
use consensus_actors::plugin::{
    Capabilities, Committed, NodeError, NodeHandle, NodeInfo, NodeWiring, PluginError, PluginNode,
    ProtocolPlugin, Reply, SendReply, SharedSubmit, VoteRequest, VoteResponse,
};
use consensus_actors::safety::SafetyChecker;
use consensus_actors::sim::{NodeContext, StartedNode};
use consensus_actors::storage::SyncFailure;
use consensus_actors::supervision::Shutdown;
use consensus_actors::types::{ClientId, ConsensusProtocol, LogIndex, NodeId, NodeState, Term};
use rand::Rng;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

/// The name of single-decree-per-slot Paxos.
pub const PAXOS: ConsensusProtocol = ConsensusProtocol::named("paxos");

/// The name of Multi-Paxos.
pub const MULTI_PAXOS: ConsensusProtocol = ConsensusProtocol::named("multi-paxos");

/// Changes the builder of every node before it starts (a component swapped
/// through the builder's slots, other settings). Called with the node's id.
pub type NodeSetup = Arc<dyn Fn(NodeId, PaxosNodeBuilder) -> PaxosNodeBuilder + Send + Sync>;

/// Paxos and Multi-Paxos, as the engine runs them. See the [module
/// documentation](self).
pub struct PaxosPlugin {
    cfg: PaxosConfig,
    stores: BTreeMap<NodeId, NodeStores>,
    setup: Option<NodeSetup>,
}

impl PaxosPlugin {
    /// The stock plug-in with every node's builder passed through `setup`.
    pub fn with_setup(
        config: &ConsensusConfig,
        setup: impl Fn(NodeId, PaxosNodeBuilder) -> PaxosNodeBuilder + Send + Sync + 'static,
    ) -> Result<Self, PluginError> {
        let mut plugin = Self::new(config)?;
        plugin.setup = Some(Arc::new(setup));
        Ok(plugin)
    }

    /// The plug-in with these Paxos settings (flexible quorums, window...).
    pub fn with_config(cfg: PaxosConfig) -> Result<Self, PluginError> {
        cfg.validate()
            .map_err(|e| PluginError::InvalidSetting(e.to_string()))?;
        Ok(Self {
            cfg,
            stores: BTreeMap::new(),
            setup: None,
        })
    }

    /// The settings the nodes run with.
    pub fn paxos_config(&self) -> &PaxosConfig {
        &self.cfg
    }

    /// The Acceptor store of `node` (kept across crashes).
    pub fn acceptor_store(&self, node: NodeId) -> Option<&AcceptorStore> {
        self.stores.get(&node).map(|s| &s.acceptor)
    }
}

impl ProtocolPlugin for PaxosPlugin {
    type Message = PaxosMessage;

    type Event = PaxosEvent;

    const CAPABILITIES: Capabilities = Capabilities {
        membership: true,
        snapshots: true,
        raft_rpcs: true,
        panic_injection: true,
        byzantine: false,
        log_positions: true,
    };

    fn new(config: &ConsensusConfig) -> Result<Self, PluginError> {
        let mode = if config.protocol == MULTI_PAXOS {
            Mode::Multi
        } else if config.protocol == PAXOS {
            Mode::Basic
        } else {
            return Err(PluginError::InvalidSetting(format!(
                "the Paxos plug-in runs {PAXOS} or {MULTI_PAXOS}, not {}",
                config.protocol
            )));
        };
        Self::with_config(PaxosConfig::from_consensus(mode, config))
    }

    /// Only Multi-Paxos changes its acceptors (its leader orders the
    /// change); `paxos` answers Unsupported.
    fn supports_membership_changes(&self) -> bool {
        self.cfg.mode == Mode::Multi
    }

    fn safety_checker(&self, config: &ConsensusConfig) -> SafetyChecker<PaxosEvent> {
        if self.cfg.nodes == config.cluster_size {
            safety::checker_with_quorum(config.cluster_size, self.cfg.q2)
        } else {
            safety::checker_with_acceptors(config.cluster_size)
        }
    }

    fn start_node(
        &mut self,
        ctx: NodeContext<PaxosMessage>,
        wiring: &NodeWiring<PaxosEvent>,
    ) -> PluginNode<PaxosMessage> {
        let id = ctx.id;
        let stores = self.stores.entry(id).or_default().clone();
        let acceptor_store = stores.acceptor.clone();
        let mut members = wiring.initial_members.clone();
        members.extend(ctx.peers.iter().copied());
        members.push(id);
        members.sort_unstable();
        members.dedup();
        let mut rng = ctx.rng;
        let mut builder = PaxosNodeBuilder::new(
            id,
            self.cfg.clone(),
            members.clone(),
            ctx.transport.clone(),
            stores,
        )
        .initial_acceptors(wiring.initial_members.clone())
        .seed(rng.random())
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
        PluginNode {
            started: StartedNode::new(node.inbox(), move || supervisor.do_send(Shutdown)),
            handle: Rc::new(PaxosHandle {
                mode: self.cfg.mode,
                node: Arc::new(node),
                next_panic: Cell::new(0),
                store: acceptor_store,
            }),
        }
    }

    fn on_crash(&mut self, node: NodeId) {
        if let Some(s) = self.stores.get(&node) {
            s.crash();
        }
    }
}

/// The engine's handle on one Paxos node.
struct PaxosHandle {
    mode: Mode,
    node: Arc<PaxosNode>,
    next_panic: Cell<usize>,
    store: AcceptorStore,
}

async fn submit(
    node: Arc<PaxosNode>,
    client: ClientId,
    command: KvCommand,
) -> Result<Committed, NodeError> {
    node.submit(command, client).await.map_err(NodeError::from)
}

impl NodeHandle for PaxosHandle {
    fn node(&self) -> NodeId {
        self.node.id()
    }

    fn submit(&self, client: ClientId, command: KvCommand) -> Reply<Committed> {
        Box::pin(submit(Arc::clone(&self.node), client, command))
    }

    fn info(&self) -> Reply<NodeInfo> {
        let node = Arc::clone(&self.node);
        let mode = self.mode;
        Box::pin(async move {
            let unavailable =
                || NodeError::Unknown("status unavailable (restarting or stopped)".into());
            let p = node.proposer_status().await.ok_or_else(unavailable)?;
            let l = node.learner_status().await.ok_or_else(unavailable)?;
            let (role, leader) = match mode {
                Mode::Basic => (NodeState::Leader, Some(node.id())),
                Mode::Multi => {
                    let role = match p.role {
                        _ if p.is_leader => NodeState::Leader,
                        Role::Preparing => NodeState::Candidate,
                        _ => NodeState::Follower,
                    };
                    (role, p.leader)
                }
            };
            let delivered = LogIndex(l.next.0.saturating_sub(1));
            let mut members = l.members;
            members.sort_unstable();
            Ok(NodeInfo {
                node: node.id(),
                role,
                epoch: p.ballot.map_or(0, |b| b.round),
                leader,
                commit_index: delivered,
                last_applied: delivered,
                members,
            })
        })
    }

    fn request_vote(&self, request: VoteRequest) -> Reply<VoteResponse> {
        let node = Arc::clone(&self.node);
        Box::pin(async move {
            let prepare = PaxosMessage::Prepare(Prepare {
                ballot: Ballot::new(request.term.get(), request.candidate_id),
                first: Slot(request.last_log_index.0 + 1),
                last: None,
            });
            match node.direct(request.candidate_id, prepare).await {
                Some(PaxosMessage::Promise(p)) => Ok(VoteResponse {
                    term: Term(p.ballot.round),
                    granted: true,
                }),
                Some(PaxosMessage::Nack(n)) => Ok(VoteResponse {
                    term: Term(n.promised.round),
                    granted: false,
                }),
                Some(other) => Err(NodeError::Unknown(format!(
                    "unexpected answer {}",
                    other.name()
                ))),
                None => Err(NodeError::Unknown(
                    "the acceptor did not answer (failed, restarting or replaced)".into(),
                )),
            }
        })
    }

    fn add_member(&self, node: NodeId) -> Reply<()> {
        let this = Arc::clone(&self.node);
        Box::pin(async move {
            this.reconfigure(Change::Add(node))
                .await
                .map_err(NodeError::from)
        })
    }

    fn remove_member(&self, node: NodeId) -> Reply<()> {
        let this = Arc::clone(&self.node);
        Box::pin(async move {
            this.reconfigure(Change::Remove(node))
                .await
                .map_err(NodeError::from)
        })
    }

    fn create_snapshot(&self) -> Reply<Vec<u8>> {
        let node = Arc::clone(&self.node);
        Box::pin(async move {
            match node.create_snapshot().await {
                Ok(s) => Ok(s.state),
                Err(ProposeError::Unsupported) => Err(NodeError::Unsupported("create_snapshot")),
                Err(e) => Err(NodeError::from(e)),
            }
        })
    }

    fn shared_submit(&self) -> Option<Arc<dyn SharedSubmit>> {
        Some(Arc::new(PaxosSubmit(Arc::clone(&self.node))))
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

/// Submits to one Paxos node from any thread.
struct PaxosSubmit(Arc<PaxosNode>);

impl SharedSubmit for PaxosSubmit {
    fn node(&self) -> NodeId {
        self.0.id()
    }

    fn submit(&self, client: ClientId, command: KvCommand) -> SendReply<Committed> {
        Box::pin(submit(Arc::clone(&self.0), client, command))
    }
}
