//! Hosting a plug-in's nodes: [`HostedFactory`] (the
//! [`NodeFactory`] a [`Simulation`](consensus_actors::sim::Simulation) builds
//! nodes with) and [`LocalCluster`] (a real-time cluster in this process, on
//! a [`LocalNetwork`]). Both keep the [`NodeDirectory`] of running nodes and
//! tell the [`ClusterObserver`] and the safety checker about starts and
//! crashes, so plug-ins do not have to.

use crate::error::EngineError;
use crate::network::LocalNetwork;
use crate::registry::PluginSpec;
use actix::prelude::*;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::observer::{ClusterObserver, LeadershipTap, SupervisionCollector};
use consensus_actors::plugin::{Capabilities, NodeDirectory, NodeWiring, ProtocolPlugin};
use consensus_actors::safety::{
    ProtocolEvent, SafetyEvent, SafetyReport, SafetySink, SharedChecker,
};
use consensus_actors::sim::rng::node_rng;
use consensus_actors::sim::{NodeContext, NodeFactory, StartedNode, TraceConfig, TraceHandle};
use consensus_actors::transport::{DeregisterNode, Envelope, RegisterNode, Transport, Wire};
use consensus_actors::types::{ConsensusProtocol, NodeId};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Builds a plug-in's nodes for a simulation (or a [`LocalCluster`]) and
/// keeps the directory of running ones.
pub struct HostedFactory<P: ProtocolPlugin> {
    plugin: P,
    wiring: NodeWiring<P::Event>,
    directory: NodeDirectory,
}

impl<P: ProtocolPlugin> HostedFactory<P> {
    /// Hosts `plugin`'s nodes, wiring them with `wiring`; running nodes are
    /// listed in `directory`.
    pub fn new(plugin: P, wiring: NodeWiring<P::Event>, directory: NodeDirectory) -> Self {
        Self {
            plugin,
            wiring,
            directory,
        }
    }

    /// The plug-in.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// The wiring every node gets.
    pub fn wiring(&self) -> &NodeWiring<P::Event> {
        &self.wiring
    }

    /// The wiring, to change before more nodes start.
    pub fn wiring_mut(&mut self) -> &mut NodeWiring<P::Event> {
        &mut self.wiring
    }

    /// The running nodes.
    pub fn directory(&self) -> &NodeDirectory {
        &self.directory
    }
}

impl<P: ProtocolPlugin> NodeFactory<P::Message> for HostedFactory<P> {
    fn start_node(&mut self, ctx: NodeContext<P::Message>) -> StartedNode<P::Message> {
        let id = ctx.id;
        let node = self.plugin.start_node(ctx, &self.wiring);
        self.directory.insert(id, node.handle);
        self.wiring.observer.node_started(id);
        node.started
    }

    fn on_crash(&mut self, id: NodeId) {
        self.stopped(id);
        self.wiring.observer.node_crashed(id);
    }
}

impl<P: ProtocolPlugin> HostedFactory<P> {
    /// Node `id`'s actors are stopped: it leaves the directory and its
    /// plug-in drops what a stop loses (not counted as a crash here).
    fn stopped(&mut self, id: NodeId) {
        self.directory.remove(id);
        self.plugin.on_crash(id);
        self.wiring.safety.emit(SafetyEvent::Crashed { node: id });
    }
}

/// How the checking of a cluster is set up.
pub struct Checking<E: ProtocolEvent> {
    /// The sink nodes report to.
    pub sink: SafetySink<E>,
    /// The checker behind it, when safety is checked.
    pub checker: Option<SharedChecker<E>>,
}

/// Sets up safety checking for a cluster of `P`: the protocol's invariants
/// plus the [`LeadershipTap`], in a checker shared synchronously by every
/// node (deterministic, no messages). With `check` false, the sink is off.
pub fn checking_for<P: ProtocolPlugin>(
    plugin: &P,
    config: &ConsensusConfig,
    observer: &ClusterObserver,
    origin: Instant,
    check: bool,
) -> Checking<P::Event> {
    if !check {
        return Checking {
            sink: SafetySink::noop(),
            checker: None,
        };
    }
    let checker = plugin
        .safety_checker(config)
        .with(Box::new(LeadershipTap::new(observer.clone())));
    let shared = SharedChecker::new(checker);
    Checking {
        sink: SafetySink::local(&shared, origin),
        checker: Some(shared),
    }
}

/// The safety report of `checker` without the engine's own tap among the
/// invariants.
pub fn safety_report<E: ProtocolEvent>(checker: &SharedChecker<E>) -> SafetyReport {
    let mut report = checker.report();
    report.invariants.retain(|n| n != LeadershipTap::NAME);
    report
}

/// Options of a [`LocalCluster`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalOptions {
    /// Seed of the nodes' random generators (election timeouts...).
    pub seed: u64,
    /// Check the protocol's safety invariants as the cluster runs.
    pub check_safety: bool,
    /// Ask the plug-in for direct RPCs ([`NodeWiring::direct_rpcs`]).
    pub direct_rpcs: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            check_safety: true,
            direct_rpcs: true,
        }
    }
}

/// The object-safe face of a [`LocalCluster`], whatever its protocol.
pub trait ClusterHost {
    /// The protocol the nodes run.
    fn protocol(&self) -> ConsensusProtocol;
    /// What it offers.
    fn capabilities(&self) -> Capabilities;
    /// Starts node `id` knowing `peers`. The first node started fixes the
    /// initial configuration (itself and its peers); a node outside it
    /// joins through the leader's membership change.
    fn start_node(&mut self, id: NodeId, peers: Vec<NodeId>) -> Result<(), EngineError>;
    /// Stops node `id` as a crash would (durable state kept).
    fn stop_node(&mut self, id: NodeId) -> Result<(), EngineError>;
    /// Starts stopped node `id` again from its durable state, with the peers
    /// it was started with.
    fn restart_node(&mut self, id: NodeId) -> Result<(), EngineError>;
    /// Forgets stopped node `id` (after it left the cluster).
    fn forget_node(&mut self, id: NodeId);
    /// Stops node `id` because it left the cluster, and forgets it: unlike
    /// [`stop_node`](Self::stop_node) this is not counted as a crash.
    fn remove_node(&mut self, id: NodeId) -> Result<(), EngineError>;
    /// The running nodes.
    fn directory(&self) -> NodeDirectory;
    /// Every node ever started and not forgotten, sorted.
    fn known_nodes(&self) -> Vec<NodeId>;
    /// What was observed.
    fn observer(&self) -> ClusterObserver;
    /// The safety report, when safety is checked.
    fn safety_report(&self) -> Option<SafetyReport>;
    /// The evidence the protocol's correct replicas recorded against
    /// others: `(records kept, total recorded)`, from the plug-in's
    /// [`evidence_probe`](ProtocolPlugin::evidence_probe) (none for a
    /// crash-only protocol).
    fn evidence(&self) -> (Vec<consensus_actors::plugin::Evidence>, u64) {
        (Vec::new(), 0)
    }
}

struct LocalNode<M: Wire> {
    incarnation: u32,
    peers: Vec<NodeId>,
    inbox: Recipient<Envelope<M>>,
    shutdown: Option<Box<dyn FnOnce()>>,
}

/// A real-time cluster of `P` in this process: nodes exchange messages
/// through a [`LocalNetwork`] with no delay. Must be created and used inside
/// an actix System.
pub struct LocalCluster<P: ProtocolPlugin> {
    factory: HostedFactory<P>,
    network: Addr<LocalNetwork<P::Message>>,
    nodes: BTreeMap<NodeId, LocalNode<P::Message>>,
    seed: u64,
    trace: TraceHandle,
    checker: Option<SharedChecker<P::Event>>,
    protocol: ConsensusProtocol,
}

impl<P: ProtocolPlugin> LocalCluster<P> {
    /// A cluster with no node yet of the plug-in `spec` builds, for
    /// `config` (validated here).
    pub fn new(
        spec: &PluginSpec<P>,
        config: &ConsensusConfig,
        options: LocalOptions,
    ) -> Result<Self, EngineError> {
        let plugin = spec.build(config)?;
        let origin = Instant::now();
        let observer = ClusterObserver::with_origin(origin);
        let checking = checking_for(&plugin, config, &observer, origin, options.check_safety);
        let collector = SupervisionCollector::new(observer.clone()).start();
        let wiring = NodeWiring {
            config: config.clone(),
            safety: checking.sink,
            supervision: Some(collector.recipient()),
            initial_members: Vec::new(),
            direct_rpcs: options.direct_rpcs,
            observer,
            simulated: false,
        };
        Ok(Self {
            factory: HostedFactory::new(plugin, wiring, NodeDirectory::new()),
            network: LocalNetwork::new().start(),
            nodes: BTreeMap::new(),
            seed: options.seed,
            trace: TraceHandle::new(
                origin,
                TraceConfig {
                    keep_records: 0,
                    skip_deliveries: true,
                },
            ),
            checker: checking.checker,
            protocol: spec.name().clone(),
        })
    }

    /// The plug-in.
    pub fn plugin(&self) -> &P {
        self.factory.plugin()
    }

    fn launch(&mut self, id: NodeId, peers: Vec<NodeId>, incarnation: u32) {
        let ctx = NodeContext {
            id,
            peers: peers.clone(),
            transport: Transport::new(id, self.network.clone().recipient()),
            rng: node_rng(self.seed, id, incarnation),
            trace: self.trace.clone(),
            incarnation,
        };
        let started = self.factory.start_node(ctx);
        self.network.do_send(RegisterNode {
            node: id,
            inbox: started.inbox.clone(),
        });
        self.nodes.insert(
            id,
            LocalNode {
                incarnation,
                peers,
                inbox: started.inbox,
                shutdown: Some(started.shutdown),
            },
        );
    }

    /// Where node `id` of this cluster receives its envelopes, while it
    /// runs: to [`connect`](Self::connect) it to a cluster on another
    /// thread.
    pub fn inbox(&self, id: NodeId) -> Option<Recipient<Envelope<P::Message>>> {
        self.nodes
            .get(&id)
            .filter(|n| n.shutdown.is_some())
            .map(|n| n.inbox.clone())
    }

    /// Connects node `id`, which runs elsewhere in this process (another
    /// `LocalCluster`, on another thread) and receives on `inbox`: this
    /// cluster's nodes then reach it through their network as they reach
    /// each other. That is how one cluster's nodes are spread over threads
    /// (`consensus bench --node-threads`); safety checking and the
    /// directory stay per `LocalCluster`.
    pub fn connect(&mut self, id: NodeId, inbox: Recipient<Envelope<P::Message>>) {
        self.network.do_send(RegisterNode { node: id, inbox });
    }
}

impl<P: ProtocolPlugin> ClusterHost for LocalCluster<P> {
    fn protocol(&self) -> ConsensusProtocol {
        self.protocol.clone()
    }

    fn capabilities(&self) -> Capabilities {
        P::CAPABILITIES
    }

    fn start_node(&mut self, id: NodeId, peers: Vec<NodeId>) -> Result<(), EngineError> {
        if self.nodes.contains_key(&id) {
            return Err(EngineError::NodeExists(id));
        }
        let mut peers: Vec<NodeId> = peers.into_iter().filter(|&p| p != id).collect();
        peers.sort_unstable();
        peers.dedup();
        if self.factory.wiring().initial_members.is_empty() {
            let mut initial = peers.clone();
            initial.push(id);
            initial.sort_unstable();
            self.factory.wiring_mut().initial_members = initial;
        }
        self.launch(id, peers, 0);
        Ok(())
    }

    fn stop_node(&mut self, id: NodeId) -> Result<(), EngineError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(EngineError::UnknownNode(id))?;
        let shutdown = node.shutdown.take().ok_or(EngineError::UnknownNode(id))?;
        self.network.do_send(DeregisterNode { node: id });
        shutdown();
        self.factory.on_crash(id);
        Ok(())
    }

    fn restart_node(&mut self, id: NodeId) -> Result<(), EngineError> {
        let node = self.nodes.get(&id).ok_or(EngineError::UnknownNode(id))?;
        if node.shutdown.is_some() {
            return Err(EngineError::NodeExists(id));
        }
        let (peers, incarnation) = (node.peers.clone(), node.incarnation + 1);
        self.launch(id, peers, incarnation);
        Ok(())
    }

    fn forget_node(&mut self, id: NodeId) {
        if self.nodes.get(&id).is_some_and(|n| n.shutdown.is_none()) {
            self.nodes.remove(&id);
        }
    }

    fn remove_node(&mut self, id: NodeId) -> Result<(), EngineError> {
        let mut node = self.nodes.remove(&id).ok_or(EngineError::UnknownNode(id))?;
        if let Some(shutdown) = node.shutdown.take() {
            self.network.do_send(DeregisterNode { node: id });
            shutdown();
            self.factory.stopped(id);
        }
        Ok(())
    }

    fn directory(&self) -> NodeDirectory {
        self.factory.directory().clone()
    }

    fn known_nodes(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn observer(&self) -> ClusterObserver {
        self.factory.wiring().observer.clone()
    }

    fn safety_report(&self) -> Option<SafetyReport> {
        self.checker.as_ref().map(safety_report)
    }

    fn evidence(&self) -> (Vec<consensus_actors::plugin::Evidence>, u64) {
        self.plugin()
            .evidence_probe()
            .map(|probe| probe())
            .unwrap_or_default()
    }
}

impl<P: ProtocolPlugin> Drop for LocalCluster<P> {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(shutdown) = node.shutdown.take() {
                shutdown();
            }
        }
    }
}
