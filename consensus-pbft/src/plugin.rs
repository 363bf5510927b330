//! The PBFT plug-in: each node a supervised tree (authenticator, replica,
//! client proxy; see [`crate::node`]) replicating the reference key-value
//! store, behind the runtime's [`ProtocolPlugin`] and [`NodeHandle`], so
//! the engine, `consensus simulate`, `consensus bench` and campaigns run
//! it. The engine registers it under [`PROTOCOL`] (`pbft`).
//!
//! * `f` is `max_byzantine_nodes` when `byzantine_tolerance` is set (the
//!   configuration refuses `n < 3f + 1`), else the largest `f` the cluster
//!   tolerates, `(n - 1) / 3`.
//! * Any node accepts a command: its client proxy signs it, multicasts it
//!   and answers once f+1 replicas sent matching REPLYs.
//! * Each node's replica state is kept by the plug-in across crashes
//!   ([`ReplicaStore`]).
//! * The primary of a view reports the neutral `BecameLeader` with the view
//!   as the epoch.

use crate::engine::actor::ReplicaStore;
use crate::engine::core::{ReplicaConfig, Status};
use crate::evidence::EvidenceLog;
use crate::messages::encode_payload;
use crate::messages::PbftMessage;
use crate::node::{start_node, submit_authenticated, submit_encoded, NodeSpec, PbftSlots};
use crate::safety::{self, PbftEvent, SafetyChecker};
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
use consensus_actors::plugin::{
    ready, Capabilities, Committed, Evidence, EvidenceProbe, NodeError, NodeHandle, NodeInfo,
    NodeWiring, PluginError, PluginNode, ProtocolPlugin, Reply, SendReply, SharedSubmit,
};
use consensus_actors::sim::{NodeContext, StartedNode};
use consensus_actors::supervision::Shutdown;
use consensus_actors::types::{ClientId, ConsensusProtocol, LogId, LogIndex, NodeId, NodeState};
use std::collections::BTreeMap;
use std::rc::Rc;

/// The name the engine registers PBFT under.
pub const PROTOCOL: ConsensusProtocol = ConsensusProtocol::named("pbft");

/// A PRE-PREPARE orders up to this many times `max_log_entries_per_append`
/// requests: its two signatures (and the 3f checks of each) are shared by
/// the whole batch, so with many clients larger batches pay them less often
/// per request.
pub const BATCH_FACTOR: usize = 10;

/// PBFT's settings beyond the shared configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PbftConfig {
    /// `f`.
    pub f: usize,
    /// `K`: checkpoint interval.
    pub checkpoint_interval: u64,
    /// `L`: watermark window (a multiple of `K`).
    pub log_window: u64,
    /// Requests per PRE-PREPARE at most.
    pub batch_max: usize,
    /// Unexecuted batches the primary keeps at most: its window. The
    /// default, 1, runs one PRE-PREPARE at a time and batches whatever
    /// arrived meanwhile (as BFT-SMaRt runs one consensus instance at a
    /// time): the fewer batches, the larger each, and the two signatures
    /// and 3f checks of a batch are the cost that counts. In one process
    /// with 4096 clients a window of 1 gives 210 k requests/s against
    /// 204 k with 2 and 179 k with 4; with 64 clients 39.7 k against 23.0 k
    /// and 12.6 k (BENCHMARKS.md). A wider window pays where network
    /// latency, not CPU, bounds a round.
    pub batches_in_flight: u64,
    /// The request timer, microseconds (doubles per successive view change).
    pub view_change_timeout_us: u64,
    /// Retransmission interval, microseconds.
    pub retransmit_us: u64,
    /// Seed of the cluster secret.
    pub cluster_seed: u64,
    /// The cluster id in authenticated messages.
    pub cluster: u64,
}

impl PbftConfig {
    /// The settings for `config`: `K = 64`, `L = 2K`, batches of up to
    /// [`BATCH_FACTOR`] × `max_log_entries_per_append` requests, one batch
    /// in flight, the request timer the upper
    /// election timeout, retransmission every two heartbeat intervals (at
    /// least 100 ms).
    pub fn from_consensus(config: &ConsensusConfig) -> Result<Self, PluginError> {
        config.validate()?;
        let n = config.cluster_size;
        let f = if config.byzantine_tolerance {
            config.max_byzantine_nodes
        } else {
            (n - 1) / 3
        };
        if n < 3 * f + 1 {
            return Err(PluginError::InvalidSetting(format!(
                "PBFT tolerating f = {f} Byzantine replicas needs at least {} nodes (3f + 1), got {n}",
                3 * f + 1
            )));
        }
        Ok(Self {
            f,
            checkpoint_interval: 64,
            log_window: 128,
            batch_max: config.max_log_entries_per_append.max(1) * BATCH_FACTOR,
            batches_in_flight: 1,
            view_change_timeout_us: config.election_timeout_ms.1 * 1000,
            retransmit_us: (config.heartbeat_interval_ms * 2000).max(100_000),
            cluster_seed: 0x5eed,
            cluster: 1,
        })
    }

    /// The settings for a cluster of `n` replicas tolerating the largest
    /// `f` it can, `(n - 1) / 3`, with the shared defaults otherwise.
    pub fn for_cluster(n: usize) -> Result<Self, PluginError> {
        Self::from_consensus(&ConsensusConfig {
            cluster_size: n,
            ..ConsensusConfig::default()
        })
    }

    /// The settings of replica `id` among `members`.
    pub fn replica(&self, id: NodeId, members: &[NodeId]) -> ReplicaConfig {
        let mut members = members.to_vec();
        members.sort_unstable();
        members.dedup();
        ReplicaConfig {
            id,
            members,
            f: self.f,
            checkpoint_interval: self.checkpoint_interval,
            log_window: self.log_window,
            batch_max: self.batch_max,
            batches_in_flight: self.batches_in_flight,
            view_change_timeout_us: self.view_change_timeout_us,
            retransmit_us: self.retransmit_us,
            max_pending: 65_536,
            cluster: self.cluster,
            secret: crate::authenticator::core::cluster_secret(self.cluster_seed, self.cluster),
        }
    }
}

/// PBFT, as the engine runs it. See the [module documentation](self).
pub struct PbftPlugin {
    cfg: PbftConfig,
    slots: Option<Rc<dyn Fn(NodeId) -> PbftSlots>>,
    /// Replicas made Byzantine by [`ProtocolPlugin::make_byzantine`].
    byzantine: BTreeMap<NodeId, crate::byzantine::Behaviour>,
    stores: BTreeMap<NodeId, ReplicaStore>,
    evidence: EvidenceLog,
}

impl PbftPlugin {
    /// The stock plug-in with each node's slots chosen by `slots` (e.g. a
    /// Byzantine replica on some nodes).
    pub fn with_slots(
        config: &ConsensusConfig,
        slots: impl Fn(NodeId) -> PbftSlots + 'static,
    ) -> Result<Self, PluginError> {
        let mut p = Self::new(config)?;
        p.slots = Some(Rc::new(slots));
        Ok(p)
    }

    /// The PBFT settings.
    pub fn pbft_config(&self) -> &PbftConfig {
        &self.cfg
    }

    /// The PBFT settings, to change before nodes start (e.g. a wider
    /// window of batches in flight).
    pub fn pbft_config_mut(&mut self) -> &mut PbftConfig {
        &mut self.cfg
    }

    /// Evidence recorded against replicas so far.
    pub fn evidence(&self) -> &EvidenceLog {
        &self.evidence
    }

    /// Records evidence into `log` (e.g. one the caller keeps to read
    /// after a run) instead of a log of its own.
    #[must_use]
    pub fn with_evidence_log(mut self, log: EvidenceLog) -> Self {
        self.evidence = log;
        self
    }

    /// Counts every evidence record in `recorder` too (see
    /// [`EVIDENCE_METRIC`](crate::evidence::EVIDENCE_METRIC)). Call before
    /// the nodes start.
    #[must_use]
    pub fn with_metrics(mut self, recorder: consensus_actors::metrics::ClusterRecorder) -> Self {
        self.evidence = self.evidence.with_recorder(recorder);
        self
    }

    /// The durable state of `node`'s replica.
    pub fn store(&self, node: NodeId) -> Option<&ReplicaStore> {
        self.stores.get(&node)
    }
}

impl ProtocolPlugin for PbftPlugin {
    type Message = PbftMessage;

    type Event = PbftEvent;

    const CAPABILITIES: Capabilities = Capabilities {
        membership: false,
        snapshots: false,
        raft_rpcs: false,
        panic_injection: true,
        byzantine: true,
        log_positions: true,
    };

    fn new(config: &ConsensusConfig) -> Result<Self, PluginError> {
        Ok(Self {
            cfg: PbftConfig::from_consensus(config)?,
            slots: None,
            byzantine: BTreeMap::new(),
            stores: BTreeMap::new(),
            evidence: EvidenceLog::new(),
        })
    }

    fn safety_checker(&self, _config: &ConsensusConfig) -> SafetyChecker {
        safety::checker()
    }

    fn start_node(
        &mut self,
        ctx: NodeContext<PbftMessage>,
        wiring: &NodeWiring<PbftEvent>,
    ) -> PluginNode<PbftMessage> {
        let id = ctx.id;
        let members = if wiring.initial_members.is_empty() {
            ctx.members()
        } else {
            wiring.initial_members.clone()
        };
        let cfg = self.cfg.replica(id, &members);
        let epoch = wiring.observer.origin();
        let store = self.stores.entry(id).or_default().clone();
        let slots = match self.byzantine.get(&id) {
            Some(&behaviour) => crate::byzantine::slots(behaviour),
            None => self
                .slots
                .as_ref()
                .map_or_else(PbftSlots::default, |s| s(id)),
        };
        let spec = NodeSpec {
            cfg,
            store: store.clone(),
            make_state_machine: std::sync::Arc::new(KvStore::default),
            transport: ctx.transport.clone(),
            safety: wiring.safety.clone(),
            evidence: self.evidence.clone(),
            epoch,
        };
        let spec_cfg = spec.cfg.clone();
        let node = start_node(spec, &slots, wiring.supervision.clone());
        let supervisor = node.supervisor.clone();
        PluginNode {
            started: StartedNode::new(node.inbox.clone(), move || supervisor.do_send(Shutdown)),
            handle: Rc::new(PbftHandle {
                id,
                members,
                cfg: spec_cfg,
                epoch,
                client: node.client.clone(),
                store,
                panics: [
                    node.view_changer_panic.clone(),
                    node.checkpoint_panic.clone(),
                ]
                .into_iter()
                .flatten()
                .collect(),
                next_panic: std::cell::Cell::new(0),
            }),
        }
    }

    fn on_crash(&mut self, _node: NodeId) {
        // The replica's state is durable (see `ReplicaStore`); the client
        // proxy's requests in flight are lost with the node.
    }

    /// One of the eight behaviours of [`Behaviour::ALL`](crate::byzantine::Behaviour::ALL),
    /// `draw` modulo 8.
    fn make_byzantine(&mut self, node: NodeId, draw: u64) -> Option<String> {
        let all = crate::byzantine::Behaviour::ALL;
        let behaviour = all[(draw % all.len() as u64) as usize];
        self.byzantine.insert(node, behaviour);
        Some(format!("{behaviour:?}"))
    }

    fn evidence_probe(&self) -> Option<EvidenceProbe> {
        let log = self.evidence.clone();
        Some(Box::new(move || {
            let records = log
                .records()
                .into_iter()
                .map(|e| Evidence {
                    witness: e.witness,
                    accused: e.accused,
                    kind: e.kind.to_string(),
                    proof: e.proof,
                })
                .collect();
            (records, log.total())
        }))
    }
}

/// Submits `command` for `client` through the client proxy `proxy`.
fn submit_kv(
    proxy: &actix::Addr<crate::client::ClientProxy>,
    client: ClientId,
    command: &KvCommand,
) -> SendReply<Committed> {
    committed(submit_encoded::<KvStore>(
        proxy,
        client,
        encode_payload(command),
    ))
}

/// The engine's answer from the proxy's: the output and its position.
fn committed(
    answer: impl std::future::Future<Output = Result<(KvOutput, LogId), NodeError>> + Send + 'static,
) -> SendReply<Committed> {
    Box::pin(async move {
        answer.await.map(|(output, at)| Committed {
            output,
            log_id: Some(at),
        })
    })
}

/// Submits to one PBFT node from any thread: the request is authenticated
/// there (timestamp and MACs, as a client machine would), and the node's
/// client proxy, reached through its thread-safe actix address, sends and
/// tracks it; the answer comes on a oneshot channel.
struct PbftSubmit {
    id: NodeId,
    client: actix::Addr<crate::client::ClientProxy>,
    signer: std::sync::Mutex<crate::client::RequestSigner>,
}

impl SharedSubmit for PbftSubmit {
    fn node(&self) -> NodeId {
        self.id
    }

    fn submit(&self, client: ClientId, command: KvCommand) -> SendReply<Committed> {
        let op = encode_payload(&command);
        let request = match self.signer.lock() {
            Ok(mut signer) => signer.authenticate(client, op),
            Err(_) => return Box::pin(async { Err(NodeError::Stopped) }),
        };
        committed(submit_authenticated::<KvStore>(&self.client, request))
    }
}

struct PbftHandle {
    id: NodeId,
    members: Vec<NodeId>,
    /// The replica's settings (the shared submit handle's keys).
    cfg: ReplicaConfig,
    /// The node's time base (request timestamps).
    epoch: tokio::time::Instant,
    client: actix::Addr<crate::client::ClientProxy>,
    store: ReplicaStore,
    /// The ViewChanger's and the CheckpointProtocol's fault injection
    /// (none for a whole replica).
    panics: Vec<actix::Recipient<crate::node::InjectPanic>>,
    next_panic: std::cell::Cell<usize>,
}

impl NodeHandle for PbftHandle {
    fn node(&self) -> NodeId {
        self.id
    }

    fn submit(&self, client: ClientId, command: KvCommand) -> Reply<Committed> {
        submit_kv(&self.client, client, &command)
    }

    fn shared_submit(&self) -> Option<std::sync::Arc<dyn SharedSubmit>> {
        Some(std::sync::Arc::new(PbftSubmit {
            id: self.id,
            client: self.client.clone(),
            signer: std::sync::Mutex::new(crate::client::RequestSigner::new(&self.cfg, self.epoch)),
        }))
    }

    /// The ViewChanger and the CheckpointProtocol in turn (they restart
    /// and resync from the engine; see [`crate::notes`]).
    fn inject_panic(&self) -> bool {
        if self.panics.is_empty() {
            return false;
        }
        let i = self.next_panic.get() % self.panics.len();
        self.next_panic.set(i + 1);
        self.panics[i].do_send(crate::node::InjectPanic);
        true
    }

    fn info(&self) -> Reply<NodeInfo> {
        let info = self.store.with(|r| NodeInfo {
            node: self.id,
            role: if r.is_primary() {
                NodeState::Leader
            } else if matches!(r.status(), Status::ViewChange { .. }) {
                NodeState::Candidate
            } else {
                NodeState::Follower
            },
            epoch: r.view().get(),
            leader: (r.status() == Status::Normal).then(|| r.primary()),
            commit_index: LogIndex(r.last_executed().get()),
            last_applied: LogIndex(r.last_executed().get()),
            members: self.members.clone(),
        });
        ready(info.ok_or_else(|| NodeError::Unknown("the replica has not started".into())))
    }
}
