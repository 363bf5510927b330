//! [`ConsensusEngine`]: one API for every protocol, the protocol chosen by
//! configuration.

use crate::bench::leader_now;
use crate::error::{EngineError, NodeError};
use crate::host::{ClusterHost, LocalOptions};
use crate::plugin::{AppendRequest, Capabilities, Committed, NodeHandle, NodeInfo, VoteRequest};
use crate::registry::{ProtocolDriver, Registry};
use crate::simulate::{EvidenceReport, LatencySummary};
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::KvCommand;
use consensus_actors::metrics::{LatencyHistogram, ThroughputSnapshot, ThroughputWindow};
use consensus_actors::safety::SafetyReport;
use consensus_actors::types::{ClientId, ConsensusProtocol, LogEntry, LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// How the engine runs its nodes and waits for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Seed of the nodes' random generators.
    pub seed: u64,
    /// Check the protocol's safety invariants while the nodes run.
    pub check_safety: bool,
    /// How long one request may take before it is reported as
    /// [`EngineError::Timeout`].
    pub request_timeout: Duration,
    /// How long the engine looks for a leader before reporting
    /// [`EngineError::NoLeader`].
    pub leader_timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            check_safety: true,
            request_timeout: Duration::from_secs(5),
            leader_timeout: Duration::from_secs(10),
        }
    }
}

/// Latency figures of the engine's requests, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Requests measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// What [`ConsensusEngine::get_metrics`] returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineMetrics {
    /// The protocol.
    pub protocol: ConsensusProtocol,
    /// Nodes running in this engine.
    pub nodes_running: usize,
    /// The leader the engine last talked to.
    pub leader: Option<NodeId>,
    /// Commands committed through the engine.
    pub committed: u64,
    /// Requests that failed (not applied, or outcome unknown).
    pub failed: u64,
    /// Latency of committed commands, submission to answer.
    pub latency_us: LatencyStats,
    /// Committed commands per second.
    pub throughput: ThroughputSnapshot,
    /// Leaderships taken (the first election included).
    pub leader_changes: u64,
    /// Components restarted by their node's supervisor.
    pub component_restarts: u64,
    /// Component failures (panics) seen by supervisors.
    pub component_failures: u64,
    /// Nodes declared failed by their supervisor.
    pub node_failures: u64,
    /// Nodes stopped as crashes.
    pub crashes: u64,
    /// No safety invariant violated (`None` when safety is not checked).
    pub safety_ok: Option<bool>,
    /// Evidence records the correct replicas made against Byzantine ones
    /// (0 for crash-only protocols); [`ConsensusEngine::evidence`] has them.
    #[serde(default)]
    pub evidence_records: u64,
}

struct Counters {
    latency: LatencyHistogram,
    throughput: ThroughputWindow,
    committed: u64,
    failed: u64,
}

/// One API for every protocol: start nodes, propose commands, find the
/// leader, change membership, snapshot, read metrics. The protocol is
/// chosen by [`ConsensusConfig::protocol`] and run by the plug-in the
/// [`Registry`] maps it to; a protocol that is not built yet is refused by
/// [`ConsensusEngine::new`].
///
/// An engine hosts any number of nodes of one cluster in this process,
/// connected by a zero-delay in-process network. It must be used inside an
/// actix System (`#[actix::main]`, `actix::System::new().block_on(...)`, or
/// the simulation's paused-clock System); it is single-threaded (`!Send`).
///
/// ```no_run
/// use consensus_engine::ConsensusEngine;
/// use consensus_actors::{ConsensusConfig, ClientId, NodeId};
/// use consensus_actors::kv::KvCommand;
///
/// actix::System::new().block_on(async {
///     let engine = ConsensusEngine::new(ConsensusConfig::default())?;
///     let members: Vec<NodeId> = (1..=5).map(NodeId).collect();
///     for &id in &members {
///         engine.start_node(id, &members)?;
///     }
///     let committed = engine.propose(KvCommand::put("x", "1"), ClientId(1)).await?;
///     println!("committed at {:?}: {:?}", committed.log_id, committed.output);
///     Ok::<(), consensus_engine::EngineError>(())
/// })
/// .unwrap();
/// ```
pub struct ConsensusEngine {
    config: ConsensusConfig,
    options: EngineOptions,
    driver: Arc<dyn ProtocolDriver>,
    cluster: RefCell<Option<Box<dyn ClusterHost>>>,
    /// The initial members, fixed by the first `start_node` (sorted).
    members: RefCell<Option<Vec<NodeId>>>,
    leader_hint: Cell<Option<NodeId>>,
    counters: Rc<RefCell<Option<Counters>>>,
}

impl std::fmt::Debug for ConsensusEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusEngine")
            .field("protocol", &self.config.protocol)
            .field("nodes", &self.running_nodes())
            .field("leader_hint", &self.leader_hint.get())
            .finish()
    }
}

impl ConsensusEngine {
    /// An engine for `config`, with default [`EngineOptions`] and the
    /// built-in protocols. Refuses an impossible configuration
    /// ([`EngineError::Config`]) and a protocol that is not built yet
    /// ([`EngineError::ProtocolNotBuilt`]).
    pub fn new(config: ConsensusConfig) -> Result<Self, EngineError> {
        Self::with_options(config, EngineOptions::default(), &Registry::builtin())
    }

    /// An engine for `config` with `options`, its protocol looked up in
    /// `registry` (to run a plug-in of your own).
    pub fn with_options(
        config: ConsensusConfig,
        options: EngineOptions,
        registry: &Registry,
    ) -> Result<Self, EngineError> {
        config.validate()?;
        let mut config = config;
        // Byzantine tolerance with the default (crash-tolerant) protocol
        // selects PBFT.
        if config.byzantine_tolerance
            && config.protocol == consensus_actors::types::DEFAULT_PROTOCOL
            && registry
                .driver(&config.protocol)
                .is_ok_and(|d| !d.capabilities().byzantine)
            && registry.driver(&consensus_pbft::PROTOCOL).is_ok()
        {
            config.protocol = consensus_pbft::PROTOCOL;
        }
        let driver = registry.driver(&config.protocol)?;
        Ok(Self {
            config,
            options,
            driver,
            cluster: RefCell::new(None),
            members: RefCell::new(None),
            leader_hint: Cell::new(None),
            counters: Rc::new(RefCell::new(None)),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ConsensusConfig {
        &self.config
    }

    /// The protocol the nodes run.
    pub fn protocol(&self) -> ConsensusProtocol {
        self.config.protocol.clone()
    }

    /// What the protocol offers beyond proposing commands.
    pub fn capabilities(&self) -> Capabilities {
        self.driver.capabilities()
    }

    fn with_cluster<T>(
        &self,
        f: impl FnOnce(&mut dyn ClusterHost) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut slot = self.cluster.borrow_mut();
        if slot.is_none() {
            if actix::System::try_current().is_none() {
                return Err(EngineError::InvalidSetting(
                    "the engine must run inside an actix System (actix::System::new().block_on(...))"
                        .into(),
                ));
            }
            let cluster = self.driver.local_cluster(
                &self.config,
                LocalOptions {
                    seed: self.options.seed,
                    check_safety: self.options.check_safety,
                    direct_rpcs: true,
                },
            )?;
            *self.counters.borrow_mut() = Some(Counters {
                latency: LatencyHistogram::new(),
                throughput: ThroughputWindow::new(Instant::now()),
                committed: 0,
                failed: 0,
            });
            *slot = Some(cluster);
        }
        match slot.as_deref_mut() {
            Some(cluster) => f(cluster),
            None => Err(EngineError::InvalidSetting("no cluster".into())),
        }
    }

    /// Starts node `node_id` in this engine as a member of the initial
    /// cluster `members` (which must list `node_id` itself).
    ///
    /// The configuration is the one source of truth for the cluster's size:
    /// `members` must name exactly [`ConsensusConfig::cluster_size`]
    /// distinct nodes, and every node started this way must be given the
    /// same members. A contradiction is refused here with
    /// [`EngineError::Membership`] and nothing is started. Nodes that join
    /// later come in through [`add_node`](Self::add_node);
    /// [`start_cluster`](Self::start_cluster) starts nodes `1..=cluster_size`
    /// in one call.
    pub fn start_node(&self, node_id: NodeId, members: &[NodeId]) -> Result<(), EngineError> {
        let mut wanted = members.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let refuse = |reason: String| {
            Err(EngineError::Membership {
                node: node_id,
                reason,
            })
        };
        if wanted.len() != members.len() {
            return refuse("the members list names a node twice".into());
        }
        if !wanted.contains(&node_id) {
            return refuse(format!(
                "the members {} do not include the node itself",
                list(&wanted)
            ));
        }
        if wanted.len() != self.config.cluster_size {
            return refuse(format!(
                "{} members given, but the configuration's cluster_size is {}",
                wanted.len(),
                self.config.cluster_size
            ));
        }
        if let Some(fixed) = self.members.borrow().as_ref() {
            if *fixed != wanted {
                return refuse(format!(
                    "the members {} differ from {} given to the nodes already started",
                    list(&wanted),
                    list(fixed)
                ));
            }
        }
        self.with_cluster(|c| c.start_node(node_id, wanted.clone()))?;
        self.members.borrow_mut().get_or_insert(wanted);
        Ok(())
    }

    /// Starts the whole initial cluster: nodes `1..=cluster_size` of the
    /// configuration, each knowing all; returns their ids.
    pub fn start_cluster(&self) -> Result<Vec<NodeId>, EngineError> {
        let members: Vec<NodeId> = (1..=self.config.cluster_size as u64).map(NodeId).collect();
        for &id in &members {
            self.start_node(id, &members)?;
        }
        Ok(members)
    }

    /// Stops node `node_id` as a crash would: its durable state is kept and
    /// [`restart_node`](Self::restart_node) brings it back.
    pub fn stop_node(&self, node_id: NodeId) -> Result<(), EngineError> {
        if self.leader_hint.get() == Some(node_id) {
            self.leader_hint.set(None);
        }
        self.with_cluster(|c| c.stop_node(node_id))
    }

    /// Restarts stopped node `node_id` from its durable state.
    pub fn restart_node(&self, node_id: NodeId) -> Result<(), EngineError> {
        self.with_cluster(|c| c.restart_node(node_id))
    }

    /// The nodes running in this engine, sorted.
    pub fn running_nodes(&self) -> Vec<NodeId> {
        self.cluster
            .borrow()
            .as_ref()
            .map(|c| c.directory().ids())
            .unwrap_or_default()
    }

    fn handle(&self, node: NodeId) -> Result<Rc<dyn NodeHandle>, EngineError> {
        self.cluster
            .borrow()
            .as_ref()
            .and_then(|c| c.directory().get(node))
            .ok_or(EngineError::UnknownNode(node))
    }

    async fn timed<T>(
        &self,
        node: NodeId,
        fut: impl Future<Output = Result<T, NodeError>>,
    ) -> Result<T, EngineError> {
        match tokio::time::timeout(self.options.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(EngineError::from_node(node, e)),
            Err(_) => Err(EngineError::Timeout {
                node,
                waited_ms: self.options.request_timeout.as_millis() as u64,
            }),
        }
    }

    /// Proposes `command` for `client_id` to the leader (found and followed
    /// through redirects) and returns, once it is committed and applied,
    /// where it was committed and what applying it returned: the same
    /// [`Committed`] as [`execute`](Self::execute), with
    /// [`Committed::log_id`] always set. Needs a protocol that reports log
    /// positions ([`Capabilities::log_positions`]); `execute` works with
    /// every protocol.
    pub async fn propose(
        &self,
        command: KvCommand,
        client_id: ClientId,
    ) -> Result<Committed, EngineError> {
        self.require(
            self.capabilities().log_positions,
            "propose (reporting the log position; use execute)",
        )?;
        let committed = self.execute(command, client_id).await?;
        self.with_position(committed)
    }

    /// `committed`, checked to carry its log position.
    fn with_position(&self, committed: Committed) -> Result<Committed, EngineError> {
        if committed.log_id.is_none() {
            return Err(EngineError::Unsupported {
                protocol: self.config.protocol.clone(),
                operation: "propose (reporting the log position; use execute)",
            });
        }
        Ok(committed)
    }

    /// Submits `command` for `client_id` to the leader (found and followed
    /// through redirects) and returns, once it is committed and applied,
    /// what applying it returned (the value read, whether a compare-and-swap
    /// held...) and, for protocols that report it, its log position. Works
    /// with every protocol. Fails at once with
    /// [`EngineError::NoNodeRunning`] when no node runs.
    pub async fn execute(
        &self,
        command: KvCommand,
        client_id: ClientId,
    ) -> Result<Committed, EngineError> {
        let began = Instant::now();
        let mut redirects = 0;
        loop {
            let leader = match self.leader_hint.get() {
                Some(l) if self.handle(l).is_ok() => l,
                _ => self.wait_for_leader(self.options.leader_timeout).await?,
            };
            let result = self.submit_to(leader, command.clone(), client_id).await;
            match result {
                Ok(committed) => {
                    self.leader_hint.set(Some(leader));
                    self.count_ok(began);
                    return Ok(committed);
                }
                Err(EngineError::NotLeader { leader: hint, .. }) if redirects < 5 => {
                    redirects += 1;
                    match hint {
                        Some(h) if self.handle(h).is_ok() => self.leader_hint.set(Some(h)),
                        _ => {
                            self.leader_hint.set(None);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                Err(e) => {
                    self.count_failed();
                    if matches!(e, EngineError::Timeout { .. } | EngineError::Node { .. }) {
                        self.leader_hint.set(None);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Proposes `command` to node `node` only: a node that is not the
    /// leader answers [`EngineError::NotLeader`] naming the leader it knows.
    /// Returns what [`propose`](Self::propose) returns.
    pub async fn propose_to(
        &self,
        node: NodeId,
        command: KvCommand,
        client_id: ClientId,
    ) -> Result<Committed, EngineError> {
        self.require(
            self.capabilities().log_positions,
            "propose (reporting the log position; use execute)",
        )?;
        let began = Instant::now();
        match self.submit_to(node, command, client_id).await {
            Ok(c) => {
                self.count_ok(began);
                self.with_position(c)
            }
            Err(e) => {
                if !matches!(e, EngineError::NotLeader { .. }) {
                    self.count_failed();
                }
                Err(e)
            }
        }
    }

    async fn submit_to(
        &self,
        node: NodeId,
        command: KvCommand,
        client_id: ClientId,
    ) -> Result<Committed, EngineError> {
        let handle = self.handle(node)?;
        self.timed(node, handle.submit(client_id, command)).await
    }

    fn count_ok(&self, began: Instant) {
        if let Some(c) = self.counters.borrow_mut().as_mut() {
            let now = Instant::now();
            c.latency
                .record_duration(now.saturating_duration_since(began));
            c.throughput.record(1, now);
            c.committed += 1;
        }
    }

    fn count_failed(&self) {
        if let Some(c) = self.counters.borrow_mut().as_mut() {
            c.failed += 1;
        }
    }

    /// Delivers Raft's RequestVote to `node` (Figure 2) and returns its
    /// `(term, vote_granted)`. Protocols without it answer
    /// [`NodeError::Unsupported`].
    pub async fn request_vote(
        &self,
        node: NodeId,
        candidate_id: NodeId,
        term: Term,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) -> Result<(Term, bool), EngineError> {
        let handle = self.handle(node)?;
        let r = self
            .timed(
                node,
                handle.request_vote(VoteRequest {
                    candidate_id,
                    term,
                    last_log_index,
                    last_log_term,
                }),
            )
            .await?;
        Ok((r.term, r.granted))
    }

    /// Delivers Raft's AppendEntries to `node` (Figure 2) and returns its
    /// `(term, success)`.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_entries(
        &self,
        node: NodeId,
        leader_id: NodeId,
        term: Term,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<LogEntry<KvCommand>>,
        leader_commit: LogIndex,
    ) -> Result<(Term, bool), EngineError> {
        let handle = self.handle(node)?;
        let r = self
            .timed(
                node,
                handle.append_entries(AppendRequest {
                    leader_id,
                    term,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                }),
            )
            .await?;
        Ok((r.term, r.success))
    }

    /// The leader, as the running nodes see it now: the node that leads the
    /// highest epoch, or `None` during an election.
    pub async fn get_leader(&self) -> Option<NodeId> {
        let directory = self.cluster.borrow().as_ref().map(|c| c.directory())?;
        let leader = leader_now(&directory).await;
        if leader.is_some() {
            self.leader_hint.set(leader);
        }
        leader
    }

    /// Waits until some running node leads, for at most `timeout`.
    /// Fails at once with [`EngineError::NoNodeRunning`] when no node runs.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId, EngineError> {
        let began = Instant::now();
        loop {
            if self.running_nodes().is_empty() {
                return Err(EngineError::NoNodeRunning);
            }
            if let Some(leader) = self.get_leader().await {
                return Ok(leader);
            }
            let waited = Instant::now().saturating_duration_since(began);
            if waited >= timeout {
                return Err(EngineError::NoLeader {
                    waited_ms: waited.as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// What node `node` knows of itself and its cluster.
    pub async fn node_info(&self, node: NodeId) -> Result<NodeInfo, EngineError> {
        let handle = self.handle(node)?;
        self.timed(node, handle.info()).await
    }

    /// Runs `op` on the leader, following redirects.
    async fn on_leader<T, F, Fut>(&self, mut op: F) -> Result<T, EngineError>
    where
        F: FnMut(Rc<dyn NodeHandle>) -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        let mut redirects = 0;
        loop {
            let leader = self.wait_for_leader(self.options.leader_timeout).await?;
            let handle = self.handle(leader)?;
            match self.timed(leader, op(handle)).await {
                Err(EngineError::NotLeader { .. }) if redirects < 5 => {
                    redirects += 1;
                    self.leader_hint.set(None);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    fn require(&self, available: bool, what: &'static str) -> Result<(), EngineError> {
        if available {
            Ok(())
        } else {
            Err(EngineError::Unsupported {
                protocol: self.config.protocol.clone(),
                operation: what,
            })
        }
    }

    /// Adds node `node_id` to the cluster: starts it in this engine (as a
    /// non-voting newcomer that knows the current members) and has the
    /// leader add it; resolves when the change committed. On failure the
    /// new node is stopped again.
    pub async fn add_node(&self, node_id: NodeId) -> Result<(), EngineError> {
        self.require(self.capabilities().membership, "add_node")?;
        let peers = self.running_nodes();
        if peers.contains(&node_id) {
            return Err(EngineError::NodeExists(node_id));
        }
        self.with_cluster(|c| c.start_node(node_id, peers))?;
        let result = self.on_leader(|leader| leader.add_member(node_id)).await;
        if result.is_err() {
            let _ = self.with_cluster(|c| {
                c.stop_node(node_id)?;
                c.forget_node(node_id);
                Ok(())
            });
        }
        result
    }

    /// Removes node `node_id` from the cluster through the leader; once the
    /// change committed, stops the node in this engine (if it runs here).
    /// A removal is not a crash: [`EngineMetrics::crashes`] does not count
    /// it. Fails at once with [`EngineError::NoNodeRunning`] when no node
    /// runs.
    pub async fn remove_node(&self, node_id: NodeId) -> Result<(), EngineError> {
        self.require(self.capabilities().membership, "remove_node")?;
        self.on_leader(|leader| leader.remove_member(node_id))
            .await?;
        if self.handle(node_id).is_ok() {
            if self.leader_hint.get() == Some(node_id) {
                self.leader_hint.set(None);
            }
            self.with_cluster(|c| c.remove_node(node_id))?;
        }
        Ok(())
    }

    /// A consistent snapshot of the replicated state machine (its
    /// serialized state at a linearizable point), taken on the leader.
    /// [`KvStore::restore`](consensus_actors::kv::StateMachine::restore)
    /// reads it back.
    pub async fn create_snapshot(&self) -> Result<Vec<u8>, EngineError> {
        self.require(self.capabilities().snapshots, "create_snapshot")?;
        self.on_leader(|leader| leader.create_snapshot()).await
    }

    /// Makes one component of node `node` panic (fault injection); its
    /// supervisor restarts it, and [`EngineMetrics::component_restarts`]
    /// counts it. Successive calls go through the node's components in turn.
    pub fn inject_panic(&self, node: NodeId) -> Result<(), EngineError> {
        self.require(self.capabilities().panic_injection, "inject_panic")?;
        if self.handle(node)?.inject_panic() {
            Ok(())
        } else {
            Err(EngineError::Unsupported {
                protocol: self.config.protocol.clone(),
                operation: "inject_panic",
            })
        }
    }

    /// Latency percentiles and throughput of the commands proposed through
    /// this engine, leader changes, component restarts and safety.
    pub fn get_metrics(&self) -> EngineMetrics {
        let cluster = self.cluster.borrow();
        let observed = cluster
            .as_ref()
            .map(|c| c.observer().snapshot())
            .unwrap_or_default();
        let safety_ok = cluster
            .as_ref()
            .and_then(|c| c.safety_report())
            .map(|r| r.ok);
        let nodes_running = cluster.as_ref().map_or(0, |c| c.directory().ids().len());
        let evidence_records = cluster.as_ref().map_or(0, |c| c.evidence().1);
        let counters = self.counters.borrow();
        let now = Instant::now();
        let (latency_us, throughput, committed, failed) = match counters.as_ref() {
            Some(c) => (
                LatencyStats {
                    count: c.latency.count(),
                    p50: c.latency.p50(),
                    p90: c.latency.p90(),
                    p99: c.latency.p99(),
                    max: c.latency.max(),
                    mean: c.latency.mean(),
                },
                c.throughput.snapshot(now),
                c.committed,
                c.failed,
            ),
            None => (LatencyStats::default(), ThroughputSnapshot::default(), 0, 0),
        };
        EngineMetrics {
            protocol: self.config.protocol.clone(),
            nodes_running,
            leader: self.leader_hint.get(),
            committed,
            failed,
            latency_us,
            throughput,
            leader_changes: observed.leader_changes,
            component_restarts: observed.component_restarts,
            component_failures: observed.component_failures,
            node_failures: observed.node_failures,
            crashes: observed.crashes,
            safety_ok,
            evidence_records,
        }
    }

    /// The latency figures of [`get_metrics`](Self::get_metrics) in the
    /// three-number form of the program's JSON.
    pub fn latency_summary(&self) -> LatencySummary {
        let m = self.get_metrics();
        LatencySummary {
            p50: m.latency_us.p50,
            p99: m.latency_us.p99,
            max: m.latency_us.max,
        }
    }

    /// What the protocol's correct replicas recorded against others
    /// (Byzantine fault detection), protocol-neutral: the plug-in's
    /// [`evidence_probe`](crate::plugin::ProtocolPlugin::evidence_probe);
    /// empty for crash-only protocols and before any node started.
    pub fn evidence(&self) -> EvidenceReport {
        let (records, total) = self
            .cluster
            .borrow()
            .as_ref()
            .map(|c| c.evidence())
            .unwrap_or_default();
        let mut accused: Vec<NodeId> = records.iter().map(|e| e.accused).collect();
        accused.sort_unstable();
        accused.dedup();
        EvidenceReport {
            total,
            accused,
            records,
        }
    }

    /// The safety checker's report (`None` when safety is not checked or no
    /// node was started).
    pub fn safety_report(&self) -> Option<SafetyReport> {
        self.cluster
            .borrow()
            .as_ref()
            .and_then(|c| c.safety_report())
    }
}

/// `[n1, n2, n3]`.
fn list(nodes: &[NodeId]) -> String {
    let names: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    format!("[{}]", names.join(", "))
}
