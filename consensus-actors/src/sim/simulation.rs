//! [`Simulation`]: a whole cluster on one thread, in virtual time.

use super::network::{
    DirectPort, NetHandle, NetworkError, NetworkFaults, NetworkStats, NetworkStatsHandle,
    PortSwitch, SimNetwork,
};
use super::rng::{derive_rng, network_rng, node_rng, workload_rng, STREAM_USER};
use super::trace::{fnv1a64, TraceConfig, TraceHandle};
use crate::transport::{Envelope, Transport, Wire};
use crate::types::NodeId;
use actix::prelude::*;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// Builds the nodes of a simulation. The simulation is protocol-agnostic: all
/// it knows of a node is the inbox it receives on and how to shut it down.
pub trait NodeFactory<M: Wire>: 'static {
    /// Builds (or rebuilds after a crash, from its durable storage) node
    /// `ctx.id`. Called inside the simulation's actix System: start the
    /// node's actors here (on the current arbiter, never on another one).
    fn start_node(&mut self, ctx: NodeContext<M>) -> StartedNode<M>;

    /// The node crashed: drop whatever a crash loses (unsynced storage
    /// writes). Called after the node's `shutdown` ran.
    fn on_crash(&mut self, id: NodeId);
}

/// Everything a node gets from the simulation when it starts.
pub struct NodeContext<M: Wire> {
    /// The node being started.
    pub id: NodeId,
    /// Every other member of the cluster when the node starts, sorted.
    pub peers: Vec<NodeId>,
    /// Sends through the simulated network as `id`. Closed when this
    /// incarnation crashes.
    pub transport: Transport<M>,
    /// This incarnation's own generator (from seed, node id, incarnation).
    pub rng: ChaCha8Rng,
    /// The run's trace, for reporting state changes.
    pub trace: TraceHandle,
    /// 0 on the first start, +1 on each restart.
    pub incarnation: u32,
}

impl<M: Wire> NodeContext<M> {
    /// Every member including this node, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all = self.peers.clone();
        all.push(self.id);
        all.sort_unstable();
        all
    }
}

/// A started node, as the simulation sees it.
pub struct StartedNode<M: Wire> {
    /// Where the network delivers the node's inbound envelopes.
    pub inbox: Recipient<Envelope<M>>,
    /// Stops every actor of the node (a crash). Must not block.
    pub shutdown: Box<dyn FnOnce()>,
}

impl<M: Wire> StartedNode<M> {
    /// A node receiving on `inbox` and stopped by `shutdown`.
    pub fn new(inbox: Recipient<Envelope<M>>, shutdown: impl FnOnce() + 'static) -> Self {
        Self {
            inbox,
            shutdown: Box::new(shutdown),
        }
    }
}

/// How a simulation is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// The nodes started before the body runs.
    pub nodes: Vec<NodeId>,
    /// The network's initial fault rates (also what [`Simulation::recover`] restores).
    pub network: NetworkFaults,
    /// What the trace keeps.
    pub trace: TraceConfig,
    /// How often [`Simulation::wait_until`] re-checks its condition (virtual time).
    pub poll_interval: Duration,
}

impl SimConfig {
    /// `count` nodes with ids `1..=count`, a fault-free network, a trace that
    /// keeps no records, a 10 ms polling interval.
    pub fn new(seed: u64, count: u64) -> Self {
        Self {
            seed,
            nodes: (1..=count).map(NodeId).collect(),
            network: NetworkFaults::none(),
            trace: TraceConfig::default(),
            poll_interval: Duration::from_millis(10),
        }
    }

    /// The same configuration with network fault rates `faults`.
    #[must_use]
    pub fn with_faults(mut self, faults: NetworkFaults) -> Self {
        self.network = faults;
        self
    }

    /// The same configuration keeping the last `records` trace records in
    /// memory (for [`TraceHandle::write_jsonl`]).
    #[must_use]
    pub fn keep_trace(mut self, records: usize) -> Self {
        self.trace.keep_records = records;
        self
    }

    /// Checks the node list (no duplicates), the fault rates and the
    /// polling interval (non-zero).
    pub fn validate(&self) -> Result<(), SimError> {
        let mut seen = BTreeSet::new();
        for &n in &self.nodes {
            if !seen.insert(n) {
                return Err(SimError::NodeExists(n));
            }
        }
        self.network.validate()?;
        if self.poll_interval.is_zero() {
            return Err(SimError::ZeroPollInterval);
        }
        Ok(())
    }
}

/// A simulation operation that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The paused tokio runtime could not be built.
    #[error("cannot build the simulation runtime: {0}")]
    Runtime(#[from] io::Error),
    /// No such node in the cluster.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The node is already a member (add) or listed twice (config).
    #[error("node {0} already exists")]
    NodeExists(NodeId),
    /// The node is running (restart of a running node).
    #[error("node {0} is running")]
    NodeRunning(NodeId),
    /// The node is down (crash of a crashed node).
    #[error("node {0} is down")]
    NodeDown(NodeId),
    /// The network refused a control request.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// `poll_interval` is zero.
    #[error("poll_interval must be positive")]
    ZeroPollInterval,
    /// A fault action needs a hook that was not given.
    #[error("no panic hook: cannot panic a component of {0}")]
    NoPanicHook(NodeId),
    /// A disk fault needs a hook that was not given.
    #[error("no disk hook: cannot fail the disk of {0}")]
    NoDiskHook(NodeId),
}

/// [`Simulation::wait_until`] gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("condition not met within {limit:?} of virtual time")]
pub struct Timeout {
    /// The limit that passed.
    pub limit: Duration,
}

/// What [`Simulation::run`] returns.
#[derive(Debug)]
pub struct SimOutcome<R> {
    /// What the body returned.
    pub result: R,
    /// The trace hash at the end of the body: the replay check.
    pub trace_hash: u64,
    /// The trace (its kept records can still be written out).
    pub trace: TraceHandle,
    /// The network's counters at the end.
    pub stats: NetworkStats,
    /// Virtual time the run took.
    pub virtual_elapsed: Duration,
}

struct NodeSlot {
    incarnation: u32,
    running: Option<Running>,
}

struct Running {
    shutdown: Box<dyn FnOnce()>,
    port: PortSwitch,
}

/// Runs `fut` to completion on a fresh actix System over a current-thread
/// tokio runtime whose clock is paused: virtual time jumps ahead whenever
/// every task is idle. Everything spawned inside stays on this thread.
///
/// Only tokio's time driver is enabled: simulated code does no I/O, and
/// without the I/O driver a wake-up costs no system call (several times
/// faster simulations).
///
/// While it runs, [`clock::now`](super::clock::now) answers from a cache
/// that the runtime's park hooks clear (the paused clock only moves while
/// the runtime parks).
pub fn block_on_paused<Fut: Future>(fut: Fut) -> Result<Fut::Output, SimError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .on_thread_park(super::clock::forget)
        .on_thread_unpark(super::clock::forget)
        .build()?;
    let system = System::with_tokio_rt(move || rt);
    let _cached_clock = super::clock::Enabled::new();
    let out = system.block_on(fut);
    Ok(out)
}

/// A whole cluster on one actix System, in virtual time, with every random
/// choice drawn from generators split off one seed.
///
/// Control operations (crash, partition, faults...) take effect in the order
/// they are issued, before any message sent after them, at the current
/// virtual instant.
pub struct Simulation<M: Wire, F: NodeFactory<M>> {
    config: SimConfig,
    factory: F,
    network: Addr<SimNetwork<M>>,
    net: NetHandle<M>,
    stats: NetworkStatsHandle,
    trace: TraceHandle,
    nodes: BTreeMap<NodeId, NodeSlot>,
    clients: BTreeSet<NodeId>,
    rng: ChaCha8Rng,
    start: Instant,
    faults: NetworkFaults,
}

impl<M: Wire, F: NodeFactory<M>> Simulation<M, F> {
    /// Builds a paused-clock System, starts the network and the configured
    /// nodes, runs `body` to completion and returns its result with the
    /// trace hash. Everything runs on the calling thread.
    pub fn run<B, Fut, R>(config: SimConfig, factory: F, body: B) -> Result<SimOutcome<R>, SimError>
    where
        B: FnOnce(Self) -> Fut,
        Fut: Future<Output = R>,
    {
        block_on_paused(async move {
            let sim = Self::start(config, factory)?;
            let trace = sim.trace.clone();
            let stats = sim.stats.clone();
            let start = sim.start;
            let result = body(sim).await;
            Ok(SimOutcome {
                result,
                trace_hash: trace.hash(),
                trace,
                stats: stats.get(),
                virtual_elapsed: Instant::now().saturating_duration_since(start),
            })
        })?
    }

    /// Starts the network and the configured nodes inside the current
    /// System, which must run on a paused current-thread runtime (see
    /// [`block_on_paused`]) for the run to be deterministic. Virtual time 0
    /// is now.
    pub fn start(config: SimConfig, factory: F) -> Result<Self, SimError> {
        config.validate()?;
        let start = Instant::now();
        let trace = TraceHandle::new(start, config.trace);
        let network = SimNetwork::new(
            network_rng(config.seed),
            config.network,
            Some(trace.clone()),
        )?;
        let stats = network.stats_handle();
        let net = network.handle();
        let network = network.start();
        let mut sim = Self {
            rng: workload_rng(config.seed),
            faults: config.network,
            nodes: config
                .nodes
                .iter()
                .map(|&n| {
                    (
                        n,
                        NodeSlot {
                            incarnation: 0,
                            running: None,
                        },
                    )
                })
                .collect(),
            clients: BTreeSet::new(),
            config,
            factory,
            network,
            net,
            stats,
            trace,
            start,
        };
        let ids: Vec<NodeId> = sim.nodes.keys().copied().collect();
        // What the nodes send as they start enters the network once every
        // one of them is registered.
        let held = sim.net.hold();
        for id in ids {
            sim.launch(id, 0);
        }
        if held {
            sim.net.release();
        }
        Ok(sim)
    }

    fn launch(&mut self, id: NodeId, incarnation: u32) {
        let held = self.net.hold();
        let (port, switch) =
            DirectPort::new(id, self.net.clone(), self.network.clone().recipient());
        let ctx = NodeContext {
            id,
            peers: self.nodes.keys().copied().filter(|&n| n != id).collect(),
            transport: Transport::direct(id, Arc::new(port)),
            rng: node_rng(self.config.seed, id, incarnation),
            trace: self.trace.clone(),
            incarnation,
        };
        let started = self.factory.start_node(ctx);
        self.net.register(id, started.inbox);
        if held {
            self.net.release();
        }
        self.trace
            .record_control(format!("start {id} incarnation {incarnation}"));
        tracing::debug!(node = %id, incarnation, "sim: node started");
        self.nodes.insert(
            id,
            NodeSlot {
                incarnation,
                running: Some(Running {
                    shutdown: started.shutdown,
                    port: switch,
                }),
            },
        );
    }

    /// Virtual time since the simulation started.
    pub fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The configuration the run started with.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Lets the cluster run for `duration` of virtual time.
    pub async fn run_for(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// Waits until `cond` holds, checking it now and then every
    /// [`SimConfig::poll_interval`] of virtual time, for at most `limit`.
    /// Returns the virtual time waited.
    pub async fn wait_until(
        &self,
        mut cond: impl FnMut(&Self) -> bool,
        limit: Duration,
    ) -> Result<Duration, Timeout> {
        let began = Instant::now();
        loop {
            let waited = Instant::now().saturating_duration_since(began);
            if cond(self) {
                return Ok(waited);
            }
            if waited >= limit {
                return Err(Timeout { limit });
            }
            tokio::time::sleep(self.config.poll_interval.min(limit - waited)).await;
        }
    }

    /// Crashes `id`: its port closes (nothing more leaves it), the network
    /// forgets its inbox (nothing more reaches it), its actors are shut
    /// down, then the factory drops what the crash loses.
    pub fn crash(&mut self, id: NodeId) -> Result<(), SimError> {
        let slot = self.nodes.get_mut(&id).ok_or(SimError::UnknownNode(id))?;
        let running = slot.running.take().ok_or(SimError::NodeDown(id))?;
        let incarnation = slot.incarnation;
        running.port.close();
        self.net.deregister(id);
        (running.shutdown)();
        self.factory.on_crash(id);
        self.trace
            .record_control(format!("crash {id} incarnation {incarnation}"));
        tracing::debug!(node = %id, incarnation, "sim: node crashed");
        Ok(())
    }

    /// Restarts crashed node `id` with the next incarnation number, which
    /// it returns.
    pub fn restart(&mut self, id: NodeId) -> Result<u32, SimError> {
        let slot = self.nodes.get(&id).ok_or(SimError::UnknownNode(id))?;
        if slot.running.is_some() {
            return Err(SimError::NodeRunning(id));
        }
        let incarnation = slot.incarnation + 1;
        self.launch(id, incarnation);
        Ok(incarnation)
    }

    /// Adds and starts a new node (for membership changes). Nodes already
    /// running are not told: that is the protocol's business.
    pub fn add_node(&mut self, id: NodeId) -> Result<(), SimError> {
        if self.nodes.contains_key(&id) || self.clients.contains(&id) {
            return Err(SimError::NodeExists(id));
        }
        self.launch(id, 0);
        Ok(())
    }

    /// Splits the network into groups that cannot talk to each other (see
    /// [`Partition`](super::Partition)).
    pub fn partition(&self, groups: Vec<Vec<NodeId>>) -> Result<(), SimError> {
        self.net.partition(&groups)?;
        Ok(())
    }

    /// Cuts the directed link `from -> to` only.
    pub fn block_link(&self, from: NodeId, to: NodeId) {
        self.net.block(from, to);
    }

    /// Restores the directed link `from -> to`.
    pub fn unblock_link(&self, from: NodeId, to: NodeId) {
        self.net.unblock(from, to);
    }

    /// Cuts every link to and from `node`.
    pub fn isolate(&self, node: NodeId) {
        self.net.isolate(node);
    }

    /// Removes every partition, block and isolation.
    pub fn heal(&self) {
        self.net.heal();
    }

    /// Replaces the network's fault rates.
    pub fn set_faults(&mut self, faults: NetworkFaults) -> Result<(), SimError> {
        faults.validate()?;
        self.faults = faults;
        self.net.set_faults(faults)?;
        Ok(())
    }

    /// The fault rates currently set.
    pub fn faults(&self) -> NetworkFaults {
        self.faults
    }

    /// Back to a healthy cluster: heals the network, restores the
    /// configured fault rates and restarts every crashed node. Returns the
    /// nodes restarted.
    pub fn recover(&mut self) -> Vec<NodeId> {
        self.heal();
        if self.faults != self.config.network {
            self.faults = self.config.network;
            if let Err(e) = self.net.set_faults(self.faults) {
                // The configured rates were validated when the run started.
                tracing::error!(error = %e, "sim: cannot restore the configured fault rates");
            }
        }
        let down = self.down_nodes();
        for &id in &down {
            let incarnation = self.nodes.get(&id).map_or(0, |s| s.incarnation + 1);
            self.launch(id, incarnation);
        }
        down
    }

    /// The network's counters so far.
    pub fn stats(&self) -> NetworkStats {
        self.stats.get()
    }

    /// The run's trace.
    pub fn trace(&self) -> &TraceHandle {
        &self.trace
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The workload generator (test clients, custom schedules), split off the
    /// seed independently of the nodes' and the network's.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// A further independent generator named `label` (the same label gives
    /// the same stream for the same seed).
    pub fn rng_for(&self, label: &str) -> ChaCha8Rng {
        derive_rng(self.config.seed, STREAM_USER, fnv1a64(label.as_bytes()))
    }

    /// The node factory.
    pub fn factory(&self) -> &F {
        &self.factory
    }

    /// The node factory, mutably.
    pub fn factory_mut(&mut self) -> &mut F {
        &mut self.factory
    }

    /// The network actor (to register extra endpoints such as clients, or to
    /// send it control messages directly).
    pub fn network(&self) -> &Addr<SimNetwork<M>> {
        &self.network
    }

    /// A transport sending as `id` straight into the network, bypassing any
    /// node port (for test clients that are not simulated nodes).
    pub fn transport_for(&self, id: NodeId) -> Transport<M> {
        Transport::new(id, self.network.clone().recipient())
    }

    /// Makes `id` a network endpoint that is not a cluster member (a test
    /// client): messages to `id` go to `inbox`, with the same delays and
    /// faults as between nodes. Returns the transport it sends with. The
    /// nemesis never crashes or partitions it, and partitions that do not
    /// list it leave it connected to every side.
    pub fn register_client(
        &mut self,
        id: NodeId,
        inbox: Recipient<Envelope<M>>,
    ) -> Result<Transport<M>, SimError> {
        if self.nodes.contains_key(&id) || !self.clients.insert(id) {
            return Err(SimError::NodeExists(id));
        }
        self.net.register(id, inbox);
        self.trace.record_control(format!("client {id}"));
        Ok(self.transport_for(id))
    }

    /// Every member, sorted.
    pub fn members(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Members currently running, sorted.
    pub fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, s)| s.running.is_some())
            .map(|(&n, _)| n)
            .collect()
    }

    /// Members currently crashed, sorted.
    pub fn down_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, s)| s.running.is_none())
            .map(|(&n, _)| n)
            .collect()
    }

    /// Whether `id` is a running member.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|s| s.running.is_some())
    }

    /// The current (or, when down, the last) incarnation of `id`.
    pub fn incarnation(&self, id: NodeId) -> Option<u32> {
        self.nodes.get(&id).map(|s| s.incarnation)
    }
}
