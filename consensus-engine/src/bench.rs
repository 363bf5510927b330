//! `consensus bench`: throughput and latency of an in-process cluster on
//! the real clock.
//!
//! The cluster runs on one actix System over a current-thread tokio runtime
//! (one core), its nodes connected by a zero-delay
//! [`LocalNetwork`](crate::network::LocalNetwork), with safety checking off.
//! `clients` concurrent clients each keep one command in flight and submit
//! straight to the leader until `ops` commands have committed: every
//! command is a distinct submission whose answer its client awaits before
//! it submits the next. Latency is measured per command from submission to
//! the committed answer. A client follows the leader a node names; a
//! watchdog (not one timer per command) fails the run when a command waits
//! longer than the request timeout.
//!
//! With [`BenchOptions::client_thread`], the clients run on a thread of
//! their own and the cluster keeps the calling one. With
//! [`BenchOptions::node_threads`] above 1, the nodes are spread over that
//! many threads (each an actix Arbiter with a [`LocalCluster`] of its
//! nodes, the clusters connected into one through
//! [`LocalCluster::connect`]): a node's messages to a node on another
//! thread cross threads as they would cross machines, through the same
//! network and inbox, and every component stays swappable.

use crate::error::{EngineError, NodeError};
use crate::host::{ClusterHost, LocalCluster, LocalOptions};
use crate::registry::PluginSpec;
use crate::simulate::LatencySummary;
use actix::Recipient;
use actix::System;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::KvCommand;
use consensus_actors::metrics::LatencyHistogram;
use consensus_actors::plugin::{
    Committed, NodeDirectory, NodeHandle, ProtocolPlugin, Reply, SharedSubmit,
};
use consensus_actors::transport::{Envelope, Wire};
use consensus_actors::types::{ClientId, ConsensusProtocol, NodeId, NodeState};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// Which command the benchmark replicates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchCommand {
    /// Empty commands (`KvCommand::Noop`): the cost of consensus alone.
    #[default]
    Noop,
    /// Small writes (`Put k<i % 1024> = v`).
    Put,
}

/// Settings of a benchmark run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchOptions {
    /// Concurrent clients, each with one command in flight.
    pub clients: usize,
    /// Commands to commit.
    pub ops: u64,
    /// What to replicate.
    pub command: BenchCommand,
    /// How long to wait for the first leader.
    pub leader_timeout: Duration,
    /// How long one command may take before the run fails.
    pub request_timeout: Duration,
    /// How often to sample the process' resident memory (`None`: never).
    pub rss_interval: Option<Duration>,
    /// Run the clients on a thread of their own, the nodes on the calling
    /// one, when the protocol's nodes accept submissions from another
    /// thread ([`NodeHandle::shared_submit`]). Off by default: everything
    /// shares one thread (the cross-thread wake-up per command costs more
    /// than the second core gives on a 2-core machine, see BENCHMARKS.md).
    pub client_thread: bool,
    /// Threads the nodes run on (at least 1). With more than one, node
    /// `k`-th in id order runs on thread `k % node_threads`, each thread an
    /// actix Arbiter with a [`LocalCluster`] of its nodes, the clusters
    /// connected into one ([`LocalCluster::connect`]); needs the protocol's
    /// [`NodeHandle::shared_submit`]. The clients keep the calling thread
    /// (with the first share of nodes) unless `client_thread`.
    pub node_threads: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            clients: 1,
            ops: 100_000,
            command: BenchCommand::Noop,
            leader_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            rss_interval: None,
            client_thread: false,
            node_threads: 1,
        }
    }
}

/// The result of a benchmark, as `consensus bench --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The protocol.
    pub protocol: ConsensusProtocol,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Commands committed.
    pub ops: u64,
    /// What was replicated.
    pub command: BenchCommand,
    /// Wall-clock seconds from the first submission to the last answer.
    pub elapsed_secs: f64,
    /// `ops / elapsed_secs`.
    pub ops_per_sec: f64,
    /// Per-command latency, submission to committed answer, microseconds.
    pub latency_us: LatencySummary,
    /// Submissions retried (leader changes during the run).
    pub retries: u64,
    /// The leader when the run started.
    pub leader: NodeId,
    /// Peak resident memory of the process, in MiB (Linux only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Resident memory sampled during the run, in MiB (Linux only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rss_samples_mib: Vec<f64>,
}

/// Checks the settings of a benchmark.
pub fn validate(config: &ConsensusConfig, options: &BenchOptions) -> Result<(), EngineError> {
    config.validate()?;
    if options.clients == 0 {
        return Err(EngineError::InvalidSetting(
            "--clients must be at least 1".into(),
        ));
    }
    if options.ops == 0 {
        return Err(EngineError::InvalidSetting(
            "--ops must be at least 1".into(),
        ));
    }
    if options.node_threads == 0 || options.node_threads > config.cluster_size {
        return Err(EngineError::InvalidSetting(format!(
            "--node-threads must be in 1..={} (one node per thread at most)",
            config.cluster_size
        )));
    }
    Ok(())
}

/// Runs a benchmark of plug-in `P` on a fresh real-clock System.
pub fn bench<P: ProtocolPlugin>(
    spec: &PluginSpec<P>,
    config: &ConsensusConfig,
    options: &BenchOptions,
) -> Result<BenchReport, EngineError> {
    validate(config, options)?;
    spec.check(config)?;
    let spec = spec.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::InvalidSetting(format!("cannot build a runtime: {e}")))?;
    let system = System::with_tokio_rt(move || runtime);
    let config = config.clone();
    let options = *options;
    let result = system.block_on(async move { run::<P>(&spec, &config, &options).await });
    result
}

async fn run<P: ProtocolPlugin>(
    spec: &PluginSpec<P>,
    config: &ConsensusConfig,
    options: &BenchOptions,
) -> Result<BenchReport, EngineError> {
    let members: Vec<NodeId> = (1..=config.cluster_size as u64).map(NodeId).collect();
    let (hosting, leader, targets) = if options.node_threads > 1 {
        let (shards, leader) = Shards::<P>::start(spec, config, &members, options).await?;
        let targets = Targets::Shared(shards.targets.clone());
        (Hosting::Shards(shards), leader, targets)
    } else {
        let cluster = start_cluster(spec, config, &members, &members)?;
        let directory = cluster.directory();
        let leader = find_leader(&directory, options.leader_timeout).await?;
        let handles = directory.handles();
        let shared: Option<Vec<Arc<dyn SharedSubmit>>> =
            handles.iter().map(|h| h.shared_submit()).collect();
        let targets = match shared {
            Some(shared) if options.client_thread => Targets::Shared(shared),
            _ => Targets::Local(handles),
        };
        (Hosting::Local(Box::new(cluster)), leader, targets)
    };

    let rss_samples = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(Cell::new(false));
    let sampler = options.rss_interval.map(|interval| {
        let samples = rss_samples.clone();
        let done = done.clone();
        actix::spawn(async move {
            while !done.get() {
                if let Some(bytes) = resident_bytes() {
                    samples.borrow_mut().push(bytes as f64 / (1024.0 * 1024.0));
                }
                tokio::time::sleep(interval).await;
            }
        })
    });

    let outcome = match (&hosting, targets) {
        // Spread nodes, clients not on a thread of their own: they share
        // the last node thread (the lighter share: the first holds the
        // leader), so the process keeps one thread per core.
        (Hosting::Shards(shards), Targets::Shared(targets)) if !options.client_thread => {
            shards.drive_clients(targets, leader, options).await
        }
        (_, targets) => drive(targets, leader, options).await,
    };
    done.set(true);
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }
    match hosting {
        Hosting::Local(cluster) => drop(cluster),
        Hosting::Shards(shards) => shards.stop().await,
    }
    let ClientOutcome {
        elapsed,
        latency,
        retries,
        failure,
    } = outcome?;
    if let Some(error) = failure {
        return Err(error);
    }
    let elapsed_secs = elapsed.as_secs_f64();
    let rss_samples_mib = rss_samples.borrow().clone();
    Ok(BenchReport {
        protocol: spec.name().clone(),
        nodes: config.cluster_size,
        clients: options.clients,
        ops: options.ops,
        command: options.command,
        elapsed_secs,
        ops_per_sec: if elapsed_secs > 0.0 {
            options.ops as f64 / elapsed_secs
        } else {
            0.0
        },
        latency_us: LatencySummary {
            p50: latency.p50(),
            p99: latency.p99(),
            max: latency.max(),
        },
        retries,
        leader,
        peak_rss_mib: peak_resident_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
        rss_samples_mib,
    })
}

/// A benchmark cluster of `nodes` among `members`, started: no safety
/// checking, the protocol's messages over the network.
fn start_cluster<P: ProtocolPlugin>(
    spec: &PluginSpec<P>,
    config: &ConsensusConfig,
    nodes: &[NodeId],
    members: &[NodeId],
) -> Result<LocalCluster<P>, EngineError> {
    let options = LocalOptions {
        seed: 1,
        check_safety: false,
        direct_rpcs: false,
    };
    let mut cluster = LocalCluster::<P>::new(spec, config, options)?;
    for &id in nodes {
        cluster.start_node(id, members.to_vec())?;
    }
    Ok(cluster)
}

/// Who hosts the nodes during a run.
enum Hosting<P: ProtocolPlugin> {
    /// All of them, on the calling thread.
    Local(Box<LocalCluster<P>>),
    /// Spread over threads.
    Shards(Shards<P>),
}

/// What the clients submit through.
enum Targets {
    /// The nodes' own handles, on the calling thread.
    Local(Vec<Rc<dyn NodeHandle>>),
    /// The nodes' shared submit handles, usable from any thread.
    Shared(Vec<Arc<dyn SharedSubmit>>),
}

/// Runs the clients: on a thread of their own with
/// [`BenchOptions::client_thread`] and shared handles, else on this one.
async fn drive(
    targets: Targets,
    leader: NodeId,
    options: &BenchOptions,
) -> Result<ClientOutcome, EngineError> {
    match targets {
        Targets::Shared(targets) if options.client_thread => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let opts = *options;
            let spawned = std::thread::Builder::new()
                .name("bench-clients".into())
                .spawn(move || {
                    let outcome = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| {
                            EngineError::InvalidSetting(format!("cannot build a runtime: {e}"))
                        })
                        .map(|rt| {
                            tokio::task::LocalSet::new()
                                .block_on(&rt, drive_clients(targets, leader, opts))
                        });
                    // The receiver waits for it unless the run was dropped.
                    let _ = tx.send(outcome);
                })
                .map_err(|e| EngineError::InvalidSetting(format!("cannot start a thread: {e}")))?;
            let outcome = rx
                .await
                .map_err(|_| EngineError::InvalidSetting("the client thread failed".into()))?;
            let _ = spawned.join();
            outcome
        }
        Targets::Shared(targets) => Ok(drive_clients(targets, leader, *options).await),
        Targets::Local(handles) => Ok(drive_clients(handles, leader, *options).await),
    }
}

/// A node's inbox, as another thread's network reaches it.
type Inbox<M> = (NodeId, Recipient<Envelope<M>>);

/// What a shard tells the calling thread once its nodes started.
struct ShardReady<M: Wire> {
    inboxes: Vec<Inbox<M>>,
    /// Its nodes' shared submit handles, in id order (`None`: the protocol
    /// has none).
    submits: Option<Vec<Arc<dyn SharedSubmit>>>,
}

/// The calling thread's end of one shard.
struct ShardLink<M: Wire> {
    /// Taken once, to hand the shard every node's inbox.
    peers: Option<tokio::sync::oneshot::Sender<Vec<Inbox<M>>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    stopped: tokio::sync::oneshot::Receiver<()>,
}

/// A cluster's nodes spread over threads: a [`LocalCluster`] per thread,
/// connected into one cluster.
struct Shards<P: ProtocolPlugin> {
    links: Vec<ShardLink<P::Message>>,
    arbiters: Vec<actix::Arbiter>,
    targets: Vec<Arc<dyn SharedSubmit>>,
}

impl<P: ProtocolPlugin> Shards<P> {
    /// Starts `members` over `options.node_threads` threads (this one
    /// first), connects them and waits for a leader; returns them and the
    /// leader.
    async fn start(
        spec: &PluginSpec<P>,
        config: &ConsensusConfig,
        members: &[NodeId],
        options: &BenchOptions,
    ) -> Result<(Self, NodeId), EngineError> {
        let threads = options.node_threads;
        let (leader_tx, mut leader_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut shards = Self {
            links: Vec::new(),
            arbiters: Vec::new(),
            targets: Vec::new(),
        };
        let mut readies = Vec::new();
        for shard in 0..threads {
            let nodes: Vec<NodeId> = members
                .iter()
                .enumerate()
                .filter(|(k, _)| match std::env::var("TMPSHARD") {
                    Ok(v) => {
                        v.split(',').nth(*k).and_then(|x| x.parse::<usize>().ok()) == Some(shard)
                    }
                    Err(_) => k % threads == shard,
                })
                .map(|(_, &id)| id)
                .collect();
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let (peers_tx, peers_rx) = tokio::sync::oneshot::channel();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
            let host = ShardHost {
                spec: spec.clone(),
                config: config.clone(),
                members: members.to_vec(),
                nodes,
                ready: ready_tx,
                peers: peers_rx,
                leader: leader_tx.clone(),
                stop: stop_rx,
                stopped: stopped_tx,
            };
            if shard == 0 {
                actix::spawn(host.run());
            } else {
                let arbiter = actix::Arbiter::new();
                arbiter.spawn_fn(move || {
                    actix::spawn(host.run());
                });
                shards.arbiters.push(arbiter);
            }
            shards.links.push(ShardLink {
                peers: Some(peers_tx),
                stop: stop_tx,
                stopped: stopped_rx,
            });
            readies.push(ready_rx);
        }
        drop(leader_tx);
        let mut inboxes = Vec::new();
        let mut submits = Vec::new();
        let mut failure = None;
        for ready in readies {
            match ready.await {
                Ok(Ok(r)) => {
                    inboxes.extend(r.inboxes);
                    match r.submits {
                        Some(s) => submits.extend(s),
                        None => {
                            failure.get_or_insert(EngineError::InvalidSetting(
                                "--node-threads needs a protocol whose nodes take \
                                 submissions from other threads"
                                    .into(),
                            ));
                        }
                    }
                }
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(EngineError::InvalidSetting(
                        "a node thread failed to start".into(),
                    ));
                }
            }
        }
        if let Some(e) = failure {
            shards.stop().await;
            return Err(e);
        }
        submits.sort_by_key(|s| s.node());
        shards.targets = submits;
        for peers in shards.links.iter_mut().filter_map(|l| l.peers.take()) {
            let _ = peers.send(inboxes.clone());
        }
        let began = Instant::now();
        match tokio::time::timeout(options.leader_timeout, leader_rx.recv()).await {
            Ok(Some(leader)) => Ok((shards, leader)),
            _ => {
                shards.stop().await;
                Err(EngineError::NoLeader {
                    waited_ms: began.elapsed().as_millis() as u64,
                })
            }
        }
    }

    /// Runs the clients on the last node thread; returns what they
    /// measured.
    async fn drive_clients(
        &self,
        targets: Vec<Arc<dyn SharedSubmit>>,
        leader: NodeId,
        options: &BenchOptions,
    ) -> Result<ClientOutcome, EngineError> {
        let Some(arbiter) = self.arbiters.last() else {
            return Ok(drive_clients(targets, leader, *options).await);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opts = *options;
        arbiter.spawn_fn(move || {
            actix::spawn(async move {
                let outcome = drive_clients(targets, leader, opts).await;
                let _ = tx.send(outcome);
            });
        });
        rx.await
            .map_err(|_| EngineError::InvalidSetting("the clients' thread failed".into()))
    }

    /// Stops every shard's nodes and waits for the threads to end.
    async fn stop(self) {
        for link in self.links {
            let _ = link.stop.send(());
            let _ = link.stopped.await;
        }
        for arbiter in self.arbiters {
            arbiter.stop();
            let _ = arbiter.join();
        }
    }
}

/// One thread's share of a cluster's nodes.
struct ShardHost<P: ProtocolPlugin> {
    spec: PluginSpec<P>,
    config: ConsensusConfig,
    members: Vec<NodeId>,
    nodes: Vec<NodeId>,
    ready: tokio::sync::oneshot::Sender<Result<ShardReady<P::Message>, EngineError>>,
    peers: tokio::sync::oneshot::Receiver<Vec<Inbox<P::Message>>>,
    leader: tokio::sync::mpsc::UnboundedSender<NodeId>,
    stop: tokio::sync::oneshot::Receiver<()>,
    stopped: tokio::sync::oneshot::Sender<()>,
}

impl<P: ProtocolPlugin> ShardHost<P> {
    /// Starts this shard's nodes, connects them to the others' and serves
    /// until told to stop; on its own thread.
    async fn run(self) {
        let ShardHost {
            spec,
            config,
            members,
            nodes,
            ready,
            peers,
            leader,
            stop,
            stopped,
        } = self;
        let mut cluster = match start_cluster(&spec, &config, &nodes, &members) {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e));
                let _ = stopped.send(());
                return;
            }
        };
        let directory = cluster.directory();
        let inboxes = nodes
            .iter()
            .filter_map(|&id| cluster.inbox(id).map(|inbox| (id, inbox)))
            .collect();
        let submits = directory
            .handles()
            .iter()
            .map(|h| h.shared_submit())
            .collect();
        let _ = ready.send(Ok(ShardReady { inboxes, submits }));
        if let Ok(all) = peers.await {
            for (id, inbox) in all {
                if !nodes.contains(&id) {
                    cluster.connect(id, inbox);
                }
            }
            // Until one shard found the leader (the calling thread then
            // drops its end), or this one does.
            let search = async {
                while !leader.is_closed() {
                    if let Some(l) = leader_now(&directory).await {
                        let _ = leader.send(l);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                std::future::pending::<()>().await
            };
            let _ = futures::future::select(std::pin::pin!(search), stop).await;
        }
        drop(cluster);
        let _ = stopped.send(());
    }
}

/// Where a client sends its commands: one node, through a handle usable on
/// the clients' thread.
trait Target: Clone + 'static {
    fn node(&self) -> NodeId;
    fn submit(&self, client: ClientId, command: KvCommand) -> Reply<Committed>;
}

impl Target for Rc<dyn NodeHandle> {
    fn node(&self) -> NodeId {
        NodeHandle::node(self.as_ref())
    }
    fn submit(&self, client: ClientId, command: KvCommand) -> Reply<Committed> {
        NodeHandle::submit(self.as_ref(), client, command)
    }
}

impl Target for Arc<dyn SharedSubmit> {
    fn node(&self) -> NodeId {
        SharedSubmit::node(self.as_ref())
    }
    fn submit(&self, client: ClientId, command: KvCommand) -> Reply<Committed> {
        SharedSubmit::submit(self.as_ref(), client, command)
    }
}

/// What the clients measured.
struct ClientOutcome {
    elapsed: Duration,
    latency: LatencyHistogram,
    retries: u64,
    failure: Option<EngineError>,
}

/// State the clients of one run share (all on one thread).
struct Clients<T> {
    /// Every node, in id order.
    targets: Vec<T>,
    /// Position in `targets` of the node believed to lead.
    current: Cell<usize>,
    remaining: Cell<u64>,
    retries: Cell<u64>,
    latency: RefCell<LatencyHistogram>,
    failure: RefCell<Option<EngineError>>,
    /// Per client: since when its current command waits for an answer.
    waiting_since: RefCell<Vec<Option<Instant>>>,
    options: BenchOptions,
}

/// Runs `options.clients` clients against `targets` until `options.ops`
/// commands committed (or one failed); a watchdog fails the run when a
/// command waits longer than `options.request_timeout`.
async fn drive_clients<T: Target>(
    targets: Vec<T>,
    leader: NodeId,
    options: BenchOptions,
) -> ClientOutcome {
    let current = targets.iter().position(|t| t.node() == leader).unwrap_or(0);
    let clients = Rc::new(Clients {
        targets,
        current: Cell::new(current),
        remaining: Cell::new(options.ops),
        retries: Cell::new(0),
        latency: RefCell::new(LatencyHistogram::new()),
        failure: RefCell::new(None),
        waiting_since: RefCell::new(vec![None; options.clients]),
        options,
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..options.clients)
        .map(|i| tokio::task::spawn_local(run_client(clients.clone(), i)))
        .collect();
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let all = futures::future::join_all(tasks);
    let watchdog = std::pin::pin!(watchdog(clients.clone()));
    let mut failed = None;
    match futures::future::select(all, watchdog).await {
        futures::future::Either::Left((joined, _)) => {
            if let Some(Err(e)) = joined.into_iter().find(|r| r.is_err()) {
                failed = Some(EngineError::InvalidSetting(format!(
                    "a client task failed: {e}"
                )));
            }
        }
        futures::future::Either::Right(((), _)) => {
            for a in aborts {
                a.abort();
            }
        }
    }
    let elapsed = started.elapsed();
    let failure = clients.failure.borrow_mut().take().or(failed);
    let latency = clients.latency.borrow().clone();
    ClientOutcome {
        elapsed,
        latency,
        retries: clients.retries.get(),
        failure,
    }
}

/// Returns when a command waited longer than the request timeout (after
/// recording the failure); checks a few times per timeout, without a timer
/// per command.
async fn watchdog<T: Target>(clients: Rc<Clients<T>>) {
    let timeout = clients.options.request_timeout;
    let period = (timeout / 4).clamp(Duration::from_millis(1), Duration::from_millis(100));
    loop {
        tokio::time::sleep(period).await;
        if clients.failure.borrow().is_some() {
            return;
        }
        let now = Instant::now();
        let late = clients
            .waiting_since
            .borrow()
            .iter()
            .flatten()
            .any(|&since| now.saturating_duration_since(since) > timeout);
        if late {
            let node = clients.targets[clients.current.get()].node();
            *clients.failure.borrow_mut() = Some(EngineError::Timeout {
                node,
                waited_ms: timeout.as_millis() as u64,
            });
            return;
        }
    }
}

/// One client: one command in flight, the next submitted when the answer
/// came. Follows the leader a node names; without a name, tries the next
/// node after a pause, for at most `leader_timeout` per command.
async fn run_client<T: Target>(clients: Rc<Clients<T>>, i: usize) {
    let client = ClientId(i as u64 + 1);
    let options = clients.options;
    let mut seq: u64 = 0;
    // One clock read per command: the answer to one is the submission of
    // the next.
    let mut began = Instant::now();
    loop {
        let left = clients.remaining.get();
        if left == 0 || clients.failure.borrow().is_some() {
            clients.waiting_since.borrow_mut()[i] = None;
            return;
        }
        clients.remaining.set(left - 1);
        seq += 1;
        let command = match options.command {
            BenchCommand::Noop => KvCommand::Noop,
            BenchCommand::Put => KvCommand::put(format!("k{}", seq % 1024), "v"),
        };
        clients.waiting_since.borrow_mut()[i] = Some(began);
        let mut failing_since: Option<Instant> = None;
        loop {
            let at = clients.current.get();
            let target = clients.targets[at].clone();
            match target.submit(client, command.clone()).await {
                Ok(_) => {
                    let now = Instant::now();
                    clients
                        .latency
                        .borrow_mut()
                        .record_duration(now.saturating_duration_since(began));
                    began = now;
                    break;
                }
                Err(NodeError::Refused(_)) => {
                    // Back-pressure: too many in flight; try again soon.
                    clients.retries.set(clients.retries.get() + 1);
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    clients.retries.set(clients.retries.get() + 1);
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= options.leader_timeout {
                        *clients.failure.borrow_mut() =
                            Some(EngineError::from_node(target.node(), error));
                        return;
                    }
                    let named = match error {
                        NodeError::NotLeader { leader: Some(l) } => {
                            clients.targets.iter().position(|t| t.node() == l)
                        }
                        _ => None,
                    };
                    match named {
                        Some(next) => clients.current.set(next),
                        None => {
                            if clients.current.get() == at {
                                clients.current.set((at + 1) % clients.targets.len());
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
        }
    }
}

/// Polls every running node until one says it leads; returns it.
pub async fn find_leader(
    directory: &NodeDirectory,
    timeout: Duration,
) -> Result<NodeId, EngineError> {
    let began = Instant::now();
    loop {
        if let Some(leader) = leader_now(directory).await {
            return Ok(leader);
        }
        let waited = began.elapsed();
        if waited >= timeout {
            return Err(EngineError::NoLeader {
                waited_ms: waited.as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The node that leads the highest epoch among the running nodes that
/// claim leadership, if any.
pub async fn leader_now(directory: &NodeDirectory) -> Option<NodeId> {
    let mut best: Option<(u64, NodeId)> = None;
    for handle in directory.handles() {
        if let Ok(info) = handle.info().await {
            if info.role == NodeState::Leader && best.is_none_or(|(e, _)| info.epoch > e) {
                best = Some((info.epoch, info.node));
            }
        }
    }
    best.map(|(_, n)| n)
}

/// The process' resident memory in bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

/// The process' peak resident memory in bytes (Linux; `None` elsewhere).
pub fn peak_resident_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_settings_are_refused() {
        let cfg = ConsensusConfig::default();
        let zero_clients = BenchOptions {
            clients: 0,
            ..BenchOptions::default()
        };
        assert!(matches!(
            validate(&cfg, &zero_clients),
            Err(EngineError::InvalidSetting(m)) if m.contains("--clients")
        ));
        let zero_ops = BenchOptions {
            ops: 0,
            ..BenchOptions::default()
        };
        assert!(validate(&cfg, &zero_ops).is_err());
        let bad_cfg = ConsensusConfig {
            cluster_size: 0,
            ..ConsensusConfig::default()
        };
        assert!(matches!(
            validate(&bad_cfg, &BenchOptions::default()),
            Err(EngineError::Config(_))
        ));
    }

    /// Clients on the nodes' thread and on a thread of their own, with the
    /// nodes on one thread and spread over two, commit exactly the
    /// commands asked for, each answer awaited.
    #[test]
    fn every_placement_commits_every_command() {
        for (client_thread, node_threads) in [(false, 1), (true, 1), (false, 2), (true, 2)] {
            let options = BenchOptions {
                clients: 16,
                ops: 400,
                client_thread,
                node_threads,
                ..BenchOptions::default()
            };
            let config = ConsensusConfig {
                cluster_size: 3,
                ..ConsensusConfig::default()
            };
            let spec = PluginSpec::<consensus_raft::RaftPlugin>::stock(consensus_raft::PROTOCOL);
            let report = bench(&spec, &config, &options).unwrap();
            let placement = format!("client_thread {client_thread}, node_threads {node_threads}");
            assert_eq!(report.ops, 400);
            assert_eq!((report.nodes, report.clients), (3, 16));
            assert_eq!(report.retries, 0, "{placement}");
            assert!(report.ops_per_sec > 0.0);
            assert!((1..=3).contains(&report.leader.get()));
            assert!(report.latency_us.p50 <= report.latency_us.max);
        }
    }

    /// PBFT offers a shared submit handle too: its clients run on a thread
    /// of their own with `client_thread`, its replicas on threads of their
    /// own with `node_threads` (agreeing on keys and on the primary across
    /// threads), and every command commits.
    #[test]
    fn pbft_clients_and_replicas_run_on_threads_of_their_own() {
        for node_threads in [1, 4] {
            let options = BenchOptions {
                clients: 16,
                ops: 400,
                client_thread: true,
                node_threads,
                ..BenchOptions::default()
            };
            let config = ConsensusConfig::for_protocol(consensus_pbft::PROTOCOL, 4).byzantine();
            let spec = PluginSpec::<consensus_pbft::PbftPlugin>::stock(consensus_pbft::PROTOCOL);
            let report = bench(&spec, &config, &options).unwrap();
            assert_eq!((report.ops, report.nodes, report.clients), (400, 4, 16));
            assert_eq!(report.retries, 0);
            assert_eq!(report.leader, NodeId(1), "the primary of view 0");
        }
    }

    #[test]
    fn node_threads_are_at_least_one_and_at_most_one_per_node() {
        let cfg = ConsensusConfig {
            cluster_size: 3,
            ..ConsensusConfig::default()
        };
        for node_threads in [0, 4] {
            let options = BenchOptions {
                node_threads,
                ..BenchOptions::default()
            };
            assert!(matches!(
                validate(&cfg, &options),
                Err(EngineError::InvalidSetting(m)) if m.contains("--node-threads")
            ));
        }
        for node_threads in 1..=3 {
            let options = BenchOptions {
                node_threads,
                ..BenchOptions::default()
            };
            assert!(validate(&cfg, &options).is_ok());
        }
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes().expect("VmRSS on Linux");
            let peak = peak_resident_bytes().expect("VmHWM on Linux");
            assert!(rss > 0 && peak >= rss / 2);
        }
    }
}
