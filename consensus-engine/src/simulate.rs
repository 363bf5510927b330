//! `consensus simulate`: a deterministic in-process cluster of any plug-in,
//! in virtual time, under a client workload and a fault schedule, then
//! checked for safety (as it runs) and linearizability (at the end).
//!
//! One run:
//!
//! 1. a paused-clock actix System; a [`Simulation`] of `nodes` nodes built by
//!    the plug-in, on a LAN-like [`SimNetwork`](consensus_actors::sim::SimNetwork)
//!    (1 ms delay, 1 ms jitter);
//! 2. every node reports safety events into one synchronous checker holding
//!    the protocol's invariants; supervision events and leaderships go to a
//!    [`ClusterObserver`];
//! 3. `clients` clients run the [`Workload`] for `duration` of virtual time
//!    while the nemesis injects the selected faults;
//! 4. the cluster is healed and restarted ([`Simulation::recover`]), the
//!    clients finish their last operations (answered or timed out), and the
//!    trace hash is taken;
//! 5. the client history is checked for linearizability.
//!
//! Same plug-in, same options, same build: same trace hash, same report.

use crate::error::EngineError;
use crate::faults::{scenario_outcomes, schedule_for, Fault, FaultSelection, ScenarioOutcome};
use crate::host::{checking_for, safety_report, HostedFactory};
use crate::registry::PluginSpec;
use crate::timeline::Timeline;
use crate::workload::{Workload, WorkloadOptions};
use actix::prelude::*;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::history::{
    check_history_with, CheckOptions, History, LinearizabilityReport, Verdict,
};
use consensus_actors::observer::{ClusterObserver, ObserverSnapshot, SupervisionCollector};
use consensus_actors::plugin::{Evidence, NodeDirectory, NodeWiring, ProtocolPlugin};
use consensus_actors::safety::SafetyReport;
use consensus_actors::sim::{
    block_on_paused, FaultEvent, NetworkFaults, NetworkStats, SimConfig, Simulation, TraceConfig,
    TraceRecord,
};
use consensus_actors::types::{ConsensusProtocol, NodeId};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::rc::Rc;
use tokio::time::{Duration, Instant};

/// Everything that shapes a simulation run besides the cluster configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulateOptions {
    /// The seed every random choice derives from.
    pub seed: u64,
    /// Virtual time the workload and the faults run for.
    pub duration: Duration,
    /// The client workload.
    pub workload: WorkloadOptions,
    /// Which faults to inject.
    pub faults: FaultSelection,
    /// Trace records to keep for writing out (0: none; the hash always
    /// covers everything).
    pub keep_trace: usize,
    /// Search budget of the linearizability check per key (`None`:
    /// unlimited).
    pub max_check_steps: Option<u64>,
    /// Memory budget of the linearizability check per key, in bytes
    /// (`None`: unlimited).
    pub max_check_memory_bytes: Option<u64>,
    /// Change the membership during the run ([`membership_changes`]): a
    /// spare node `nodes + 1` starts with the cluster, is added through
    /// the leader, then a random node of `1..=nodes` is removed. Refused
    /// for a protocol whose plug-in cannot
    /// ([`ProtocolPlugin::supports_membership_changes`]).
    pub membership_changes: bool,
}

impl SimulateOptions {
    /// The linearizability check's budgets: the same defaults as
    /// `check-history` and [`CheckOptions::default`].
    pub fn check_options(&self) -> CheckOptions<'static> {
        CheckOptions {
            max_steps_per_key: self.max_check_steps,
            max_memory_bytes: self.max_check_memory_bytes,
            interrupt: None,
        }
    }
}

impl Default for SimulateOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            duration: Duration::from_secs(60),
            workload: WorkloadOptions::default(),
            faults: FaultSelection::All,
            keep_trace: 0,
            max_check_steps: Some(consensus_actors::history::DEFAULT_MAX_STEPS_PER_KEY),
            max_check_memory_bytes: Some(consensus_actors::history::DEFAULT_MAX_MEMORY_BYTES),
            membership_changes: false,
        }
    }
}

/// Latency figures in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// How the client operations ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationCounts {
    /// Sent.
    pub invoked: u64,
    /// Took effect (acknowledged).
    pub ok: u64,
    /// Certainly did not take effect.
    pub failed: u64,
    /// Outcome unknown.
    pub unknown: u64,
}

/// One thing that went wrong, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationSummary {
    /// `safety` or `linearizability`.
    pub kind: String,
    /// The invariant broken, or the key whose history is not linearizable.
    pub name: String,
    /// What happened.
    pub detail: String,
    /// When (virtual microseconds), for safety violations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_us: Option<u64>,
}

/// The result of one simulation run, as `consensus simulate --json` prints
/// it. The first eleven fields are the contract of DESIGN.md.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimulationReport {
    /// The protocol.
    pub protocol: ConsensusProtocol,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Virtual time of the whole run (workload, then recovery), in seconds.
    pub virtual_secs: f64,
    /// Client operations acknowledged as committed.
    pub committed: u64,
    /// Leaderships taken (the first election included).
    pub leader_changes: u64,
    /// Virtual latency of acknowledged operations.
    pub latency_us: LatencySummary,
    /// No safety invariant was violated.
    pub safety_ok: bool,
    /// The client history is linearizable.
    pub linearizable: bool,
    /// Every violation found (safety first).
    pub violations: Vec<ViolationSummary>,
    /// The replay check, 16 hex digits: same seed, same build, same hash.
    pub trace_hash: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Virtual time the workload and the faults ran for, in seconds.
    pub duration_secs: f64,
    /// The fault families injected.
    pub faults: Vec<Fault>,
    /// Faults applied by the nemesis.
    pub faults_injected: usize,
    /// How the client operations ended.
    pub operations: OperationCounts,
    /// Component restarts by supervisors.
    pub component_restarts: u64,
    /// Node crashes injected.
    pub crashes: u64,
    /// Safety events checked.
    pub safety_events: u64,
    /// The linearizability verdict (`linearizable`, `not_linearizable`,
    /// `unknown` when the search budget ran out).
    pub linearizability: Verdict,
    /// What the network did.
    pub network: NetworkStats,
    /// Real time the run took, in seconds (set by the program, not the
    /// deterministic part).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_secs: Option<f64>,
    /// Virtual seconds per real second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speedup: Option<f64>,
    /// Each partial-connectivity scenario the nemesis set up, and how long
    /// commits took to resume in it (absent when there was none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scenarios: Vec<ScenarioOutcome>,
    /// The replicas `--faults byzantine` made Byzantine (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub byzantine: Vec<ByzantineReplica>,
    /// The evidence the correct replicas recorded, for protocols that
    /// detect Byzantine behaviour (absent for the others).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceReport>,
    /// Membership changes that took effect (`--membership-changes`; absent
    /// when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub membership_changes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SimulationReport {
    /// Whether the run passed: safety held and the history is linearizable.
    pub fn passed(&self) -> bool {
        self.safety_ok && self.linearizable
    }

    /// Records the real time the run took (and the speed-up it means).
    pub fn set_real_time(&mut self, real_secs: f64) {
        self.real_secs = Some(real_secs);
        if real_secs > 0.0 {
            self.speedup = Some(self.virtual_secs / real_secs);
        }
    }
}

/// A run's report and everything that can be written out of it.
#[derive(Clone, Debug)]
pub struct SimulationRun {
    /// The report.
    pub report: SimulationReport,
    /// The client history.
    pub history: History,
    /// The kept trace records (see [`SimulateOptions::keep_trace`]).
    pub trace: Vec<TraceRecord>,
    /// Records in the whole trace (kept or not).
    pub trace_len: u64,
    /// The safety checker's report.
    pub safety: SafetyReport,
    /// The linearizability checker's report.
    pub linearizability: LinearizabilityReport,
    /// What the run looked like over time (for `--report`).
    pub timeline: Timeline,
    /// The faults applied, in order.
    pub fault_events: Vec<FaultEvent>,
    /// Leaderships and supervision events.
    pub observed: ObserverSnapshot,
}

/// What the deterministic part of a run produced.
struct RawRun {
    history: History,
    stats: crate::workload::WorkloadStats,
    fault_events: Vec<FaultEvent>,
    observed: ObserverSnapshot,
    safety: SafetyReport,
    trace_hash: u64,
    trace: Vec<TraceRecord>,
    trace_len: u64,
    network: NetworkStats,
    virtual_us: u64,
    recovered_at_us: u64,
    byzantine: Vec<ByzantineReplica>,
    evidence: Option<(Vec<Evidence>, u64)>,
    membership_changes: u64,
}

/// A replica `--faults byzantine` made Byzantine for the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByzantineReplica {
    /// The replica.
    pub node: NodeId,
    /// Its behaviour, in the protocol's words.
    pub behaviour: String,
}

/// What the correct replicas recorded against others in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceReport {
    /// Records in all.
    pub total: u64,
    /// The replicas accused, sorted.
    pub accused: Vec<NodeId>,
    /// The first records (at most [`EVIDENCE_SHOWN`]).
    pub records: Vec<Evidence>,
}

/// Evidence records a report carries at most.
pub const EVIDENCE_SHOWN: usize = 20;

/// Draws the `f` Byzantine replicas of a run and their behaviours from
/// the seed, and tells the plug-in.
fn make_byzantine<P: ProtocolPlugin>(
    plugin: &mut P,
    seed: u64,
    nodes: usize,
    f: usize,
) -> Result<Vec<ByzantineReplica>, EngineError> {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    // A stream of its own ("byzantin"), so the other draws stay as they are.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x6279_7a61_6e74_696e);
    let mut members: Vec<NodeId> = (1..=nodes as u64).map(NodeId).collect();
    members.shuffle(&mut rng);
    let mut chosen: Vec<NodeId> = members.into_iter().take(f).collect();
    chosen.sort_unstable();
    chosen
        .into_iter()
        .map(|node| {
            let draw: u64 = rng.random();
            plugin
                .make_byzantine(node, draw)
                .map(|behaviour| ByzantineReplica { node, behaviour })
                .ok_or_else(|| {
                    EngineError::InvalidSetting(
                        "--faults byzantine: this protocol has no Byzantine replicas".into(),
                    )
                })
        })
        .collect()
}

/// Checks the settings of a simulation.
pub fn validate(config: &ConsensusConfig, options: &SimulateOptions) -> Result<(), EngineError> {
    config.validate()?;
    if options.duration.is_zero() {
        return Err(EngineError::InvalidSetting(
            "--duration must be at least one millisecond of virtual time".into(),
        ));
    }
    if options.duration > Duration::from_secs(7 * 24 * 3600) {
        return Err(EngineError::InvalidSetting(
            "--duration longer than a week of virtual time is not supported".into(),
        ));
    }
    options
        .workload
        .validate()
        .map_err(EngineError::InvalidSetting)?;
    if options.faults.named().contains(&Fault::Byzantine)
        && !(config.byzantine_tolerance && config.max_byzantine_nodes >= 1)
    {
        return Err(EngineError::InvalidSetting(
            "--faults byzantine needs --byzantine F (F >= 1 Byzantine replicas)".into(),
        ));
    }
    Ok(())
}

/// Runs one simulation of plug-in `P` and checks it.
pub fn simulate<P: ProtocolPlugin>(
    spec: &PluginSpec<P>,
    config: &ConsensusConfig,
    options: &SimulateOptions,
) -> Result<SimulationRun, EngineError> {
    validate(config, options)?;
    spec.check(config)?;
    let faults = options.faults.resolve(&P::CAPABILITIES)?;
    let raw = block_on_paused(run_cluster::<P>(
        spec.clone(),
        config.clone(),
        options.clone(),
        faults.clone(),
    ))
    .map_err(|e| EngineError::Simulation(e.to_string()))??;

    let linearizability = check_history_with(&raw.history, &options.check_options());

    let mut violations: Vec<ViolationSummary> = raw
        .safety
        .violations
        .iter()
        .map(|v| ViolationSummary {
            kind: "safety".into(),
            name: v.invariant.clone(),
            detail: v.to_string(),
            at_us: Some(v.at_us),
        })
        .collect();
    for key in &linearizability.per_key {
        match key.verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable => violations.push(ViolationSummary {
                kind: "linearizability".into(),
                name: key.key.clone(),
                detail: key
                    .explanation
                    .as_ref()
                    .map_or_else(|| "not linearizable".to_string(), |e| e.summary.clone()),
                at_us: None,
            }),
            Verdict::Undecided => violations.push(ViolationSummary {
                kind: "linearizability".into(),
                name: key.key.clone(),
                detail: format!(
                    "{} (raise the budget)",
                    key.undecided_reason().unwrap_or_default()
                ),
                at_us: None,
            }),
        }
    }

    // With `--faults byzantine` the engine chose every Byzantine replica, so
    // evidence may accuse only those: an accusation of a correct one is a
    // detection bug, reported as a violation. (Without it, a plug-in built
    // with Byzantine slots of its own knows its liars and the engine does
    // not: the evidence is reported, not judged.)
    let evidence = raw.evidence.as_ref().map(|(records, total)| {
        let mut accused: Vec<NodeId> = records.iter().map(|e| e.accused).collect();
        accused.sort_unstable();
        accused.dedup();
        EvidenceReport {
            total: *total,
            accused,
            records: records.iter().take(EVIDENCE_SHOWN).cloned().collect(),
        }
    });
    let mut wrongly_accused = false;
    if let (Some((records, _)), false) = (&raw.evidence, raw.byzantine.is_empty()) {
        for e in records {
            if !raw.byzantine.iter().any(|b| b.node == e.accused) {
                wrongly_accused = true;
                violations.push(ViolationSummary {
                    kind: "evidence".into(),
                    name: "correct replica accused".into(),
                    detail: format!(
                        "{} accuses {} of {}: {}",
                        e.witness, e.accused, e.kind, e.proof
                    ),
                    at_us: None,
                });
            }
        }
    }

    let stats = &raw.stats;
    let report = SimulationReport {
        protocol: spec.name().clone(),
        nodes: config.cluster_size,
        seed: options.seed,
        virtual_secs: raw.virtual_us as f64 / 1e6,
        committed: stats.ok,
        leader_changes: raw.observed.leader_changes,
        latency_us: LatencySummary {
            p50: stats.latency.p50(),
            p99: stats.latency.p99(),
            max: stats.latency.max(),
        },
        // Evidence against a correct replica breaks the detector's own
        // invariant: it fails the run like a safety violation.
        safety_ok: raw.safety.ok && !wrongly_accused,
        linearizable: linearizability.linearizable,
        violations,
        trace_hash: format!("{:016x}", raw.trace_hash),
        clients: options.workload.clients,
        duration_secs: options.duration.as_secs_f64(),
        faults: faults.clone(),
        faults_injected: raw.fault_events.len(),
        operations: OperationCounts {
            invoked: stats.invoked,
            ok: stats.ok,
            failed: stats.failed,
            unknown: stats.unknown,
        },
        component_restarts: raw.observed.component_restarts,
        crashes: raw.observed.crashes,
        safety_events: raw.safety.events_observed,
        linearizability: linearizability.verdict,
        network: raw.network,
        real_secs: None,
        speedup: None,
        scenarios: scenario_outcomes(&raw.fault_events, &raw.history, raw.recovered_at_us),
        byzantine: raw.byzantine.clone(),
        evidence,
        membership_changes: raw.membership_changes,
    };
    let timeline = Timeline::build(
        config.cluster_size,
        raw.virtual_us,
        raw.recovered_at_us,
        &stats.ok_per_second,
        &raw.observed.leadership,
        &raw.fault_events,
    );
    Ok(SimulationRun {
        report,
        history: raw.history,
        trace: raw.trace,
        trace_len: raw.trace_len,
        safety: raw.safety,
        linearizability,
        timeline,
        fault_events: raw.fault_events,
        observed: raw.observed,
    })
}

/// The deterministic part: runs inside a paused-clock System.
async fn run_cluster<P: ProtocolPlugin>(
    spec: PluginSpec<P>,
    config: ConsensusConfig,
    options: SimulateOptions,
    faults: Vec<Fault>,
) -> Result<RawRun, EngineError> {
    let origin = Instant::now();
    let observer = ClusterObserver::with_origin(origin);
    let mut plugin = spec.build(&config)?;
    if options.membership_changes && !plugin.supports_membership_changes() {
        return Err(EngineError::InvalidSetting(format!(
            "--membership-changes: {} cannot add or remove nodes",
            spec.name()
        )));
    }
    let byzantine = if faults.contains(&Fault::Byzantine) {
        make_byzantine(
            &mut plugin,
            options.seed,
            config.cluster_size,
            config.max_byzantine_nodes,
        )?
    } else {
        Vec::new()
    };
    let evidence_probe = plugin.evidence_probe();
    let checking = checking_for(&plugin, &config, &observer, origin, true);
    let checker = checking.checker.clone();
    let collector = SupervisionCollector::new(observer.clone()).start();
    let directory = NodeDirectory::new();
    let wiring = NodeWiring {
        config: config.clone(),
        safety: checking.sink,
        supervision: Some(collector.recipient()),
        initial_members: (1..=config.cluster_size as u64).map(NodeId).collect(),
        direct_rpcs: false,
        observer: observer.clone(),
        simulated: true,
    };
    let factory = HostedFactory::new(plugin, wiring, directory.clone());
    let nodes = config.cluster_size;
    let sim_config = SimConfig {
        network: NetworkFaults::lan(),
        trace: TraceConfig {
            keep_records: options.keep_trace,
            skip_deliveries: false,
        },
        ..SimConfig::new(options.seed, nodes as u64)
    };
    let mut sim = Simulation::start(sim_config, factory)
        .map_err(|e| EngineError::Simulation(e.to_string()))?;

    let workload = Workload::new(options.workload.clone(), directory.clone(), origin);
    workload.reserve_for(options.duration);
    let deadline = origin + options.duration;
    let mut clients = Vec::with_capacity(options.workload.clients);
    for index in 0..options.workload.clients {
        let rng = sim.rng_for(&format!("client-{index}"));
        clients.push(actix::spawn(
            workload.clone().run_client(index, rng, deadline),
        ));
    }

    let changes = Rc::new(Cell::new(0));
    let changer = if options.membership_changes {
        let spare = NodeId(nodes as u64 + 1);
        sim.add_node(spare)
            .map_err(|e| EngineError::Simulation(e.to_string()))?;
        Some(actix::spawn(membership_changes(
            directory.clone(),
            sim.rng_for("membership"),
            nodes,
            deadline,
            Rc::clone(&changes),
        )))
    } else {
        None
    };

    let fault_events = match schedule_for(&faults, nodes, &directory, &observer) {
        Some(mut schedule) => schedule.run(&mut sim, options.duration).await,
        None => {
            sim.run_for(options.duration).await;
            Vec::new()
        }
    };
    let recovered_at_us = micros(Instant::now().saturating_duration_since(origin));
    let restarted: Vec<NodeId> = sim.recover();
    if !restarted.is_empty() {
        tracing::debug!(?restarted, "simulation: nodes restarted for recovery");
    }
    for client in clients {
        if let Err(e) = client.await {
            tracing::error!(error = %e, "simulation: a client task failed");
        }
    }
    if let Some(changer) = changer {
        if let Err(e) = changer.await {
            tracing::error!(error = %e, "simulation: the membership task failed");
        }
    }
    let virtual_us = micros(Instant::now().saturating_duration_since(origin));
    // Everything reported is taken here, before the nodes are stopped.
    let trace = sim.trace().clone();
    let trace_hash = trace.hash();
    let trace_records = trace.records();
    let trace_len = trace.len();
    let network = sim.stats();
    let observed = observer.snapshot();
    let safety = checker.as_ref().map(safety_report).unwrap_or(SafetyReport {
        ok: true,
        events_observed: 0,
        violation_count: 0,
        invariants: Vec::new(),
        violations: Vec::new(),
    });
    // Stop every node before the System goes away.
    for node in sim.up_nodes() {
        if let Err(e) = sim.crash(node) {
            tracing::debug!(error = %e, "simulation: stopping a node");
        }
    }
    let stats = workload.stats();
    // Every client has ended: the history is moved out, not copied.
    let history = std::mem::take(&mut *workload.recorder().borrow_mut()).into_history();
    Ok(RawRun {
        history,
        stats,
        fault_events,
        observed,
        safety,
        trace_hash,
        trace: trace_records,
        trace_len,
        network,
        virtual_us,
        recovered_at_us,
        byzantine,
        evidence: evidence_probe.map(|probe| probe()),
        membership_changes: changes.get(),
    })
}

/// `--membership-changes`: adds the spare node `nodes + 1` (started with
/// the cluster), then removes a random node of `1..=nodes` (perhaps the
/// leader), one change at a time through whichever node leads, retrying
/// through leader changes and faults until `deadline`. A change counts
/// once the leader it went through reports it in its members (an attempt
/// that timed out may have taken effect).
pub async fn membership_changes(
    directory: NodeDirectory,
    mut rng: rand_chacha::ChaCha8Rng,
    nodes: usize,
    deadline: Instant,
    done: Rc<Cell<u64>>,
) {
    use rand::Rng;
    let spare = NodeId(nodes as u64 + 1);
    let victim = NodeId(rng.random_range(1..=nodes as u64));
    for (add, node) in [(true, spare), (false, victim)] {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        while Instant::now() < deadline {
            let Some(leader) = find_leader(&directory).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let change = if add {
                leader.add_member(node)
            } else {
                leader.remove_member(node)
            };
            let answered = tokio::time::timeout(Duration::from_secs(3), change).await;
            let in_effect = match answered {
                Ok(Ok(())) => true,
                // Refused, timed out, lost: done already if the leader
                // says so.
                _ => match tokio::time::timeout(Duration::from_secs(1), leader.info()).await {
                    Ok(Ok(info)) => info.members.contains(&node) == add,
                    _ => false,
                },
            };
            if in_effect {
                done.set(done.get() + 1);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A node that reports itself the leader, if one does (asked in id order).
async fn find_leader(
    directory: &NodeDirectory,
) -> Option<Rc<dyn consensus_actors::plugin::NodeHandle>> {
    for handle in directory.handles() {
        let info = tokio::time::timeout(Duration::from_millis(200), handle.info()).await;
        if matches!(info, Ok(Ok(i)) if i.role == consensus_actors::types::NodeState::Leader) {
            return Some(handle);
        }
    }
    None
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
