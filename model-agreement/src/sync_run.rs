//! [`ParameterSync`] on a simulated Raft cluster with fast and slow workers
//! (and optionally a Byzantine one that never waits), recording every read's
//! staleness.
//!
//! Each honest worker loops: read (through the leader, ReadIndex) whether it
//! may compute and the versioned parameters; if the consistency mode says
//! wait, poll again 2 ms (virtual) later; otherwise compute for its compute
//! time and push through the log. The Byzantine *rusher* pushes sign-flipped
//! gradients as fast as it can without waiting; the log refuses what the mode
//! forbids.

use crate::gradient_consensus::{ModelVersion, ReplicaProbe, Round};
use crate::parameter_sync::{
    Consistency, ParameterSync, PushRefusal, SyncCommand, SyncConfig, SyncOutput,
    VersionedParameters,
};
use crate::task::{LinearRegression, Shard};
use crate::training::TrainingError;
use consensus_actors::sim::{SimConfig, Simulation};
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_raft::node::RaftNode;
use consensus_raft::sim::{NodeRegistry, RaftSimFactory};
use consensus_raft::RaftConfig;
use std::cell::RefCell;
use std::rc::Rc;
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
    /// Adds a Byzantine worker that pushes without waiting.
    pub rusher: bool,
    /// Step size.
    pub learning_rate: f32,
    /// Model dimension.
    pub dim: usize,
    /// Raft settings.
    pub raft: RaftConfig,
}

impl SyncSpec {
    /// 3 replicas, 2 fast workers (10 ms) and 2 slow ones (40 ms), 20 steps
    /// each, learning rate 0.05, dimension 10.
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
            rusher: false,
            learning_rate: 0.05,
            dim: 10,
            raft: RaftConfig::default(),
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
}

/// Runs `spec` to completion.
pub fn run_parameter_sync(spec: &SyncSpec) -> Result<SyncReport, TrainingError> {
    if spec.fast_workers + spec.slow_workers == 0 || spec.dim == 0 || spec.replicas == 0 {
        return Err(TrainingError::Spec(
            "workers, dimension and replicas must be > 0".into(),
        ));
    }
    let honest = spec.fast_workers + spec.slow_workers;
    let workers: Vec<NodeId> = (0..honest as u64 + u64::from(spec.rusher))
        .map(|i| NodeId(100 + i))
        .collect();
    let config = SyncConfig {
        initial: vec![0.0; spec.dim],
        learning_rate: spec.learning_rate,
        workers: workers.clone(),
        consistency: spec.consistency,
    };
    if !config.learning_rate.is_finite() || config.learning_rate <= 0.0 {
        return Err(TrainingError::Spec(
            "learning rate must be finite and > 0".into(),
        ));
    }
    let problem = LinearRegression::new(spec.dim, 0.1, spec.seed);
    let probe = ReplicaProbe::new();
    let sm_probe = probe.clone();
    let factory = RaftSimFactory::new(
        spec.raft.clone(),
        (1..=spec.replicas).map(NodeId),
        move || ParameterSync::new(config.clone()).with_probe(sm_probe.clone()),
    );
    let spec2 = spec.clone();
    let problem2 = problem.clone();
    let outcome = Simulation::run(
        SimConfig::new(spec.seed, spec.replicas),
        factory,
        move |sim| async move {
            let registry = sim.factory().registry();
            let log = Rc::new(RefCell::new(Log::default()));
            let mut tasks = Vec::new();
            for (i, &id) in workers.iter().enumerate() {
                let role = if i >= honest {
                    Role::Rusher
                } else {
                    Role::Honest(if i < spec2.fast_workers {
                        spec2.fast
                    } else {
                        spec2.slow
                    })
                };
                let shard = problem2.shard(i as u64, 64);
                let (reg, log, steps) = (registry.clone(), Rc::clone(&log), spec2.steps);
                tasks.push(actix::spawn(async move {
                    worker_loop(reg, id, shard, role, steps, log).await
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
            let final_version = read(&registry, |sm: &ParameterSync| sm.pull()).await?;
            // Let every replica apply the last push before the probe is read.
            sim.run_for(Duration::from_secs(2)).await;
            let final_params = final_version.params;
            let last = Round(final_version.version.number);
            drop(sim);
            let log = Rc::try_unwrap(log)
                .map(RefCell::into_inner)
                .unwrap_or_default();
            Ok((log, final_params, last))
        },
    )?;
    let (log, final_params, last) = outcome.result?;
    let held_out = problem.shard(u64::MAX, 256);
    let reached = probe.at_round(last);
    let replicas_identical = probe.disagreements().is_empty()
        && reached.len() as u64 >= spec.replicas
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
        distance: (
            problem.distance_to_truth(&vec![0.0; spec.dim]),
            problem.distance_to_truth(&final_params),
        ),
        trace_hash: outcome.trace_hash,
        final_loss: held_out.loss(&final_params),
        replicas_identical,
        replica_losses,
    })
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Honest(Duration),
    Rusher,
}

const POLL: Duration = Duration::from_millis(2);
const GIVE_UP: Duration = Duration::from_secs(30);

async fn worker_loop(
    registry: NodeRegistry<ParameterSync>,
    id: NodeId,
    shard: Shard,
    role: Role,
    steps: u64,
    log: Rc<RefCell<Log>>,
) -> Result<(), TrainingError> {
    match role {
        Role::Honest(compute) => {
            for clock in 0..steps {
                let give_up = Instant::now() + GIVE_UP;
                let pulled: VersionedParameters = loop {
                    let (may, current, vp) = read(&registry, move |sm: &ParameterSync| {
                        (sm.may_compute(id), sm.clock(id), sm.pull())
                    })
                    .await?;
                    assert_eq!(
                        current, clock,
                        "an honest worker's pushes are all applied in order"
                    );
                    if may {
                        break vp;
                    }
                    log.borrow_mut().waits += 1;
                    if Instant::now() > give_up {
                        // A silent worker stalls BSP and SSP (see parameter_sync).
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
                let out = propose(
                    &registry,
                    SyncCommand::Push {
                        worker: id,
                        clock,
                        gradient,
                    },
                )
                .await?;
                record(&log, id, out);
            }
        }
        Role::Rusher => {
            // Pushes every millisecond, never waiting, until as many of its
            // pushes were applied as an honest worker makes.
            let give_up = Instant::now() + GIVE_UP;
            let mut clock = 0;
            while clock < steps {
                let vp = read(&registry, |sm: &ParameterSync| sm.pull()).await?;
                let gradient = shard
                    .gradient(&vp.params)
                    .iter()
                    .map(|g| -100.0 * g)
                    .collect();
                let out = propose(
                    &registry,
                    SyncCommand::Push {
                        worker: id,
                        clock,
                        gradient,
                    },
                )
                .await?;
                if matches!(out, SyncOutput::Applied(_)) {
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
        SyncOutput::Refused(r) => l.refused.push((id, r)),
    }
}

async fn leader(
    registry: &NodeRegistry<ParameterSync>,
) -> Result<RaftNode<ParameterSync>, TrainingError> {
    let give_up = Instant::now() + GIVE_UP;
    loop {
        for node in registry.all() {
            if node
                .status()
                .await
                .is_some_and(|s| s.role == NodeState::Leader)
            {
                return Ok(node);
            }
        }
        if Instant::now() > give_up {
            return Err(TrainingError::NoProgress(GIVE_UP));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read<R: Send + 'static>(
    registry: &NodeRegistry<ParameterSync>,
    query: impl Fn(&ParameterSync) -> R + Send + Clone + 'static,
) -> Result<R, TrainingError> {
    let give_up = Instant::now() + GIVE_UP;
    loop {
        let node = leader(registry).await?;
        match node.read(query.clone()).await {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() <= give_up => {
                tracing::debug!(error = %e, "read failed; retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => return Err(TrainingError::NoProgress(GIVE_UP)),
        }
    }
}

async fn propose(
    registry: &NodeRegistry<ParameterSync>,
    cmd: SyncCommand,
) -> Result<SyncOutput, TrainingError> {
    let give_up = Instant::now() + GIVE_UP;
    loop {
        let node = leader(registry).await?;
        match node.propose(cmd.clone(), ClientId(1)).await {
            Ok(out) => return Ok(out),
            Err(e) if Instant::now() <= give_up => {
                tracing::debug!(error = %e, "push failed; retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => return Err(TrainingError::NoProgress(GIVE_UP)),
        }
    }
}
