//! [`ParameterSync`] on a simulated Raft (or PBFT, see
//! [`SyncSpec::ordering`]) cluster with fast and slow workers
//! (and optionally Byzantine ones that never wait, and silent ones),
//! recording every read's staleness.
//!
//! Each replica is a Raft node running the [`ParameterSync`] state machine
//! and a training tier whose ParameterSync component
//! ([`replica`](crate::replica)) serves pulls from what that replica
//! applied. Each honest worker loops: pull from its home replica for its
//! clock (the replica answers once it applied the worker's own pushes); if
//! the consistency mode says wait, poll again 2 ms (virtual) later;
//! otherwise compute for its compute time and push through its home
//! replica. A Byzantine *rusher* pushes sign-flipped (×100) gradients as
//! fast as it can without waiting; the log refuses what the mode forbids,
//! and the rule filters what it lets through. A *silent* worker never
//! pushes: it stalls BSP and SSP until the replicas evict it.
//!
//! On PBFT ([`OrderingLayer::Pbft`]) some replicas may be Byzantine; the
//! workers' home replicas are then the correct ones (a worker trusts the
//! replica it runs next to), and `replicas_identical` is about the correct
//! replicas' parameters.

use crate::aggregation::Aggregator;
use crate::gradient_consensus::{ModelVersion, ReplicaProbe, Round};
use crate::parameter_sync::{
    Consistency, ParameterSync, PushRefusal, SyncConfig, SyncOutput, VersionedParameters,
};
use crate::replica::Ordering;
use crate::replica::TrainingSlots;
use crate::replica::{
    components, PullParameters, PullReply, PushGradient, SyncContext, SyncHandles,
};
use crate::replica_pbft::{pbft_ordering, PbftReplicaSimFactory};
use crate::replica_sim::{raft_ordering, ReplicaSimFactory, Replicas, Tier, TrainingFactory};
use crate::task::{LinearRegression, Shard};
use crate::training::{OrderingLayer, TrainingError};
use consensus_actors::sim::{NodeFactory, SimConfig, Simulation};
use consensus_actors::transport::Wire;
use consensus_actors::types::NodeId;
use consensus_pbft::PbftConfig;
use consensus_raft::RaftConfig;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A ParameterSync run.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncSpec {
    /// Seed of the simulation and the data.
    pub seed: u64,
    /// Raft replicas.
    pub replicas: u64,
    /// The consistency mode.
    pub consistency: Consistency,
    /// Workers computing in `fast`.
    pub fast_workers: usize,
    /// Workers computing in `slow`.
    pub slow_workers: usize,
    /// Compute time of a fast worker.
    pub fast: Duration,
    /// Compute time of a slow worker.
    pub slow: Duration,
    /// Pushes per honest worker.
    pub steps: u64,
    /// Byzantine workers that push sign-flipped (×100) gradients without
    /// waiting.
    pub byzantine: usize,
    /// Workers that never push.
    pub silent: usize,
    /// The rule every push aggregates the latest gradients with.
    pub aggregator: Aggregator,
    /// The f it tolerates.
    pub f: usize,
    /// Evict a worker stuck behind the others this long (virtual).
    pub evict_after: Option<Duration>,
    /// Step size.
    pub learning_rate: f32,
    /// Model dimension.
    pub dim: usize,
    /// Raft settings.
    pub raft: RaftConfig,
    /// The ordering layer (Raft by default; PBFT with Byzantine replicas).
    pub ordering: OrderingLayer,
}

impl SyncSpec {
    /// 3 replicas, 2 fast workers (10 ms) and 2 slow ones (40 ms), 20 steps
    /// each, learning rate 0.05, dimension 10, the mean rule, no Byzantine
    /// or silent worker, no eviction.
    pub fn new(seed: u64, consistency: Consistency) -> Self {
        Self {
            seed,
            replicas: 3,
            consistency,
            fast_workers: 2,
            slow_workers: 2,
            fast: Duration::from_millis(10),
            slow: Duration::from_millis(40),
            steps: 20,
            byzantine: 0,
            silent: 0,
            aggregator: Aggregator::Mean,
            f: 0,
            evict_after: None,
            learning_rate: 0.05,
            dim: 10,
            raft: RaftConfig::default(),
            ordering: OrderingLayer::Raft,
        }
    }
}

/// One pull by an honest worker about to compute.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadRecord {
    /// The reader.
    pub worker: NodeId,
    /// Its clock.
    pub clock: u64,
    /// The slowest worker's clock in what it read.
    pub slowest: u64,
    /// The version it read.
    pub version: ModelVersion,
}

impl ReadRecord {
    /// `clock − slowest`.
    pub fn staleness(&self) -> u64 {
        self.clock.saturating_sub(self.slowest)
    }
}

/// What a run recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncReport {
    /// Every honest read, in the order they happened.
    pub reads: Vec<ReadRecord>,
    /// Polls that found the worker had to wait.
    pub waits: u64,
    /// Pushes refused, by worker.
    pub refused: Vec<(NodeId, PushRefusal)>,
    /// Pushes applied.
    pub applied: u64,
    /// Distance to the true weights at the start and at the end.
    pub distance: (f64, f64),
    /// Simulation trace hash.
    pub trace_hash: u64,
    /// Held-out loss at the end.
    pub final_loss: f64,
    /// Every replica applied every version with the same parameters, and
    /// every replica reached the last one.
    pub replicas_identical: bool,
    /// Per state-machine instance, the held-out loss after each version.
    pub replica_losses: std::collections::BTreeMap<usize, Vec<(Round, f64)>>,
    /// Workers evicted by the end.
    pub evicted: Vec<NodeId>,
    /// Pushes that counted without a step (the rule refused: too few
    /// gradients known for its bound on f).
    pub buffered: u64,
}

impl SyncReport {
    /// The largest staleness of an honest read.
    pub fn max_staleness(&self) -> u64 {
        self.reads
            .iter()
            .map(ReadRecord::staleness)
            .max()
            .unwrap_or(0)
    }
}

#[derive(Default)]
struct Log {
    reads: Vec<ReadRecord>,
    waits: u64,
    refused: Vec<(NodeId, PushRefusal)>,
    applied: u64,
    buffered: u64,
}

/// Runs `spec` to completion with the stock components.
pub fn run_parameter_sync(spec: &SyncSpec) -> Result<SyncReport, TrainingError> {
    run_parameter_sync_with(spec, &TrainingSlots::default())
}

/// Runs `spec` to completion, the replicas' training tiers built from
/// `slots`.
pub fn run_parameter_sync_with(
    spec: &SyncSpec,
    slots: &TrainingSlots,
) -> Result<SyncReport, TrainingError> {
    if spec.fast_workers + spec.slow_workers == 0 || spec.dim == 0 || spec.replicas == 0 {
        return Err(TrainingError::Spec(
            "workers, dimension and replicas must be > 0".into(),
        ));
    }
    let honest = spec.fast_workers + spec.slow_workers;
    let total = honest + spec.byzantine + spec.silent;
    let workers: Vec<NodeId> = (0..total as u64).map(|i| NodeId(100 + i)).collect();
    let config = SyncConfig {
        initial: vec![0.0; spec.dim],
        learning_rate: spec.learning_rate,
        workers: workers.clone(),
        consistency: spec.consistency,
        aggregator: spec.aggregator,
        f: spec.f,
        evict_after: spec.evict_after,
    };
    config.validate()?;
    spec.ordering.validate(spec.replicas)?;
    let problem = LinearRegression::new(spec.dim, 0.1, spec.seed);
    let probe = ReplicaProbe::new();
    let sm_probe = probe.clone();
    let slot = slots.parameter_sync.clone();
    let byzantine: Vec<NodeId> = match &spec.ordering {
        OrderingLayer::Raft => Vec::new(),
        OrderingLayer::Pbft { byzantine } => byzantine.iter().map(|(id, _)| *id).collect(),
    };
    let correct: Vec<NodeId> = (1..=spec.replicas)
        .map(NodeId)
        .filter(|id| !byzantine.contains(id))
        .collect();
    if correct.is_empty() {
        return Err(TrainingError::Spec("no correct replica".into()));
    }
    // Correct replicas' state machines report to the probe (what the
    // identical-parameters claim is about); every replica's to its own tier.
    let liars = byzantine.clone();
    let build = move |id: NodeId,
                      ordering: Ordering<ParameterSync>,
                      tree: &mut consensus_actors::supervision::SupervisorBuilder|
          -> Result<Tier<ParameterSync, SyncHandles>, String> {
        let ctx = SyncContext {
            id,
            config: config.clone(),
            ordering,
        };
        let handles = slot
            .build(&ctx)
            .start(tree, components::PARAMETER_SYNC)
            .map_err(|e| e.to_string())?;
        let probe = (!liars.contains(&id)).then(|| sm_probe.clone());
        let (config, applied) = (config.clone(), handles.applied.clone());
        Ok(Tier {
            handles,
            make_sm: Arc::new(move || {
                let sm = ParameterSync::new(config.clone()).with_publisher(applied.clone());
                match &probe {
                    Some(p) => sm.with_probe(p.clone()),
                    None => sm,
                }
            }),
        })
    };
    let members = (1..=spec.replicas).map(NodeId);
    let sim_config = SimConfig::new(spec.seed, spec.replicas);
    let run = Drive {
        spec: spec.clone(),
        problem: problem.clone(),
        workers,
        honest,
        homes: correct.clone(),
    };
    let outcome = match &spec.ordering {
        OrderingLayer::Raft => {
            let factory = ReplicaSimFactory::new(spec.raft.clone(), members, build);
            Simulation::run(sim_config, factory, move |sim| {
                run.drive(sim, |f: &ReplicaSimFactory<ParameterSync, SyncHandles>| {
                    raft_ordering(f.raft_nodes())
                })
            })?
        }
        OrderingLayer::Pbft { byzantine } => {
            let cfg = PbftConfig::for_cluster(spec.replicas as usize)
                .map_err(|e| TrainingError::Spec(format!("PBFT: {e}")))?;
            let factory = byzantine.iter().fold(
                PbftReplicaSimFactory::new(cfg, members, build),
                |f, &(id, behaviour)| f.with_byzantine(id, behaviour),
            );
            let reader = correct[0];
            Simulation::run(sim_config, factory, move |sim| {
                run.drive(
                    sim,
                    move |f: &PbftReplicaSimFactory<ParameterSync, SyncHandles>| {
                        pbft_ordering(f.pbft_nodes(), reader)
                    },
                )
            })?
        }
    };
    let (log, final_version) = outcome.result?;
    let final_params = final_version.params;
    let last = Round(final_version.version.number);
    let held_out = problem.shard(u64::MAX, 256);
    let reached = probe.at_round(last);
    let replicas_identical = probe.disagreements().is_empty()
        && reached.len() >= correct.len()
        && reached.windows(2).all(|w| w[0].1 == w[1].1);
    let mut replica_losses = std::collections::BTreeMap::<usize, Vec<(Round, f64)>>::new();
    for r in probe.records() {
        replica_losses
            .entry(r.instance)
            .or_default()
            .push((r.round, held_out.loss(&r.params)));
    }
    Ok(SyncReport {
        reads: log.reads,
        waits: log.waits,
        refused: log.refused,
        applied: log.applied,
        buffered: log.buffered,
        distance: (
            problem.distance_to_truth(&vec![0.0; spec.dim]),
            problem.distance_to_truth(&final_params),
        ),
        trace_hash: outcome.trace_hash,
        final_loss: held_out.loss(&final_params),
        replicas_identical,
        replica_losses,
        evicted: final_version.evicted,
    })
}

/// What the simulated part of a run needs, whatever the ordering layer.
struct Drive {
    spec: SyncSpec,
    problem: LinearRegression,
    workers: Vec<NodeId>,
    honest: usize,
    /// The replicas workers are homed on, in turn (the correct ones).
    homes: Vec<NodeId>,
}

impl Drive {
    /// Runs the workers to completion, then reads the final parameters
    /// through the ordering handle `reader` builds.
    async fn drive<M, F>(
        self,
        sim: Simulation<M, F>,
        reader: impl FnOnce(&F) -> Ordering<ParameterSync>,
    ) -> Result<(Log, VersionedParameters), TrainingError>
    where
        M: Wire,
        F: NodeFactory<M> + TrainingFactory<SyncHandles>,
    {
        let Drive {
            spec,
            problem,
            workers,
            honest,
            homes,
        } = self;
        let replicas = sim.factory().replicas();
        let log = Rc::new(RefCell::new(Log::default()));
        let mut tasks = Vec::new();
        for (i, &id) in workers.iter().enumerate() {
            let role = if i >= honest + spec.byzantine {
                continue;
            } else if i >= honest {
                Role::Rusher
            } else {
                Role::Honest(if i < spec.fast_workers {
                    spec.fast
                } else {
                    spec.slow
                })
            };
            let shard = problem.shard(i as u64, 64);
            let home = homes[i % homes.len()];
            let (reps, log, steps) = (replicas.clone(), Rc::clone(&log), spec.steps);
            let initial = vec![0.0; spec.dim];
            tasks.push(actix::spawn(async move {
                worker_loop(reps, home, id, shard, role, steps, initial, log).await
            }));
        }
        let mut failed = None;
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = Some(e),
                Err(_) => failed = Some(TrainingError::Spec("a worker task panicked".into())),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let final_version = reader(sim.factory()).read(ParameterSync::pull).await?;
        // Let every replica apply the last push before the probe is read.
        sim.run_for(Duration::from_secs(2)).await;
        drop(sim);
        let log = Rc::try_unwrap(log)
            .map(RefCell::into_inner)
            .unwrap_or_default();
        Ok((log, final_version))
    }
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Honest(Duration),
    Rusher,
}

const POLL: Duration = Duration::from_millis(2);
const GIVE_UP: Duration = Duration::from_secs(30);
/// How long a pull waits for the home replica to apply the worker's pushes.
const PULL_WAIT: Duration = Duration::from_millis(500);

type SyncReplicas = Replicas<SyncHandles>;

#[allow(clippy::too_many_arguments)]
async fn worker_loop(
    replicas: SyncReplicas,
    home: NodeId,
    id: NodeId,
    shard: Shard,
    role: Role,
    steps: u64,
    initial: Vec<f32>,
    log: Rc<RefCell<Log>>,
) -> Result<(), TrainingError> {
    match role {
        Role::Honest(compute) => {
            for clock in 0..steps {
                let give_up = Instant::now() + GIVE_UP;
                let pulled: VersionedParameters = loop {
                    let pull = PullParameters {
                        worker: id,
                        clock,
                        within: PULL_WAIT,
                    };
                    match pull_from(&replicas, home, pull).await {
                        Some(PullReply::Ready(vp)) => {
                            assert_eq!(
                                vp.version.vector.get(id),
                                clock,
                                "an honest worker's pushes are all applied in order"
                            );
                            break vp;
                        }
                        Some(PullReply::Wait { .. }) => log.borrow_mut().waits += 1,
                        Some(PullReply::NotYet) | None => {}
                    }
                    if Instant::now() > give_up {
                        // A silent worker stalls BSP and SSP unless evicted.
                        return Err(TrainingError::NoProgress(GIVE_UP));
                    }
                    tokio::time::sleep(POLL).await;
                };
                log.borrow_mut().reads.push(ReadRecord {
                    worker: id,
                    clock,
                    slowest: pulled.slowest,
                    version: pulled.version.clone(),
                });
                tokio::time::sleep(compute).await;
                let gradient = shard.gradient(&pulled.params);
                let out = push_to(
                    &replicas,
                    home,
                    PushGradient {
                        worker: id,
                        clock,
                        gradient,
                    },
                )
                .await?;
                let evicted = matches!(out, SyncOutput::Refused(PushRefusal::Evicted(_)));
                record(&log, id, out);
                if evicted {
                    // Too slow for `evict_after`: the group moved on.
                    tracing::warn!(worker = %id, clock, "an honest worker was evicted");
                    return Ok(());
                }
            }
        }
        Role::Rusher => {
            // Pushes every millisecond, never waiting, until as many of its
            // pushes counted as an honest worker makes; computes on the
            // freshest parameters it could pull.
            let give_up = Instant::now() + GIVE_UP;
            let mut clock = 0;
            let mut params = initial;
            while clock < steps {
                let pull = PullParameters {
                    worker: id,
                    clock,
                    within: Duration::ZERO,
                };
                if let Some(PullReply::Ready(vp)) = pull_from(&replicas, home, pull).await {
                    params = vp.params;
                }
                let gradient = shard.gradient(&params).iter().map(|g| -100.0 * g).collect();
                let out = push_to(
                    &replicas,
                    home,
                    PushGradient {
                        worker: id,
                        clock,
                        gradient,
                    },
                )
                .await?;
                if matches!(out, SyncOutput::Applied(_) | SyncOutput::Buffered { .. }) {
                    clock += 1;
                }
                record(&log, id, out);
                if Instant::now() > give_up {
                    return Err(TrainingError::NoProgress(GIVE_UP));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    Ok(())
}

fn record(log: &Rc<RefCell<Log>>, id: NodeId, out: SyncOutput) {
    let mut l = log.borrow_mut();
    match out {
        SyncOutput::Applied(_) => l.applied += 1,
        SyncOutput::Buffered { .. } => {
            l.applied += 1;
            l.buffered += 1;
        }
        SyncOutput::Refused(r) => l.refused.push((id, r)),
        SyncOutput::Evicted(_) => {}
    }
}

async fn pull_from(
    replicas: &SyncReplicas,
    home: NodeId,
    pull: PullParameters,
) -> Option<PullReply> {
    let (_, tier) = replicas.tier_near(home)?;
    tier.pull.send(pull).await.ok()
}

async fn push_to(
    replicas: &SyncReplicas,
    home: NodeId,
    push: PushGradient,
) -> Result<SyncOutput, TrainingError> {
    let give_up = Instant::now() + GIVE_UP;
    loop {
        if let Some((_, tier)) = replicas.tier_near(home) {
            match tier.push.send(push.clone()).await {
                Ok(out) => return Ok(out?),
                Err(e) => tracing::debug!(error = %e, "replica gone; trying another"),
            }
        }
        if Instant::now() > give_up {
            return Err(TrainingError::NoProgress(GIVE_UP));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
