//! A simulated training cluster: Raft replicas of [`GradientConsensus`],
//! worker actors, and a round coordinator, all in the deterministic
//! [`Simulation`] (paused clock, seeded RNG), so a run is a pure function of
//! its [`TrainingSpec`].
//!
//! Each round the coordinator pulls the parameters from the leader (a
//! ReadIndex read), asks every worker for its gradient, submits each
//! gradient through the Raft log when the worker's (virtual) compute time
//! has passed, and proposes [`CloseRound`](GradientCommand::CloseRound) when
//! the round's timeout expires, without waiting for late workers (their
//! submissions arrive after the close and are stale). An equivocating worker
//! hands its two gradients to different replicas, which both forward them to
//! the log. Replicas are compared through a [`ReplicaProbe`].

use crate::aggregation::Aggregator;
use crate::attack::{Attack, WorkerOutput};
use crate::gradient_consensus::{
    ConfigError, GradientCommand, GradientConsensus, GradientOutput, ReplicaProbe, Round,
    RoundSummary, TrainingConfig,
};
use crate::task::{LinearRegression, Shard};
use crate::worker::{Behaviour, ComputeGradient, GradientReady, WorkerActor, WorkerCore};
use actix::Actor;
use consensus_actors::sim::{SimConfig, SimError, Simulation};
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_raft::error::ProposeError;
use consensus_raft::node::RaftNode;
use consensus_raft::sim::RaftSimFactory;
use consensus_raft::RaftConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The first worker id (replicas are `1..=replicas`).
pub const FIRST_WORKER: u64 = 100;

/// A replica crash and its restart, by round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashPlan {
    /// The replica to crash.
    pub replica: NodeId,
    /// Crashed just before this round starts.
    pub at: Round,
    /// Restarted just before this round starts.
    pub restart_at: Round,
}

/// Everything a training run depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingSpec {
    /// Seed of the simulation, the data and the workers.
    pub seed: u64,
    /// Raft replicas.
    pub replicas: u64,
    /// Workers, Byzantine ones included.
    pub workers: usize,
    /// Byzantine workers (the last ones by id).
    pub byzantine: usize,
    /// What the Byzantine workers do.
    pub attack: Attack,
    /// The rounds in which they attack (`from..until`).
    pub attack_window: (Round, Round),
    /// The aggregation rule.
    pub aggregator: Aggregator,
    /// The f the rule must tolerate (usually `byzantine`).
    pub f: usize,
    /// Rounds to run.
    pub rounds: u64,
    /// Step size.
    pub learning_rate: f32,
    /// Model dimension.
    pub dim: usize,
    /// Samples per worker.
    pub samples_per_worker: usize,
    /// Observation noise of the data.
    pub noise_std: f64,
    /// A round closes this long (virtual) after it starts.
    pub round_timeout: Duration,
    /// Honest workers whose compute time exceeds the timeout (the last
    /// honest ones by id): always late.
    pub late_workers: usize,
    /// An optional replica crash and restart.
    pub crash: Option<CrashPlan>,
    /// Raft settings.
    pub raft: RaftConfig,
}

impl TrainingSpec {
    /// 3 replicas, `workers` workers of which `byzantine` run `attack` for
    /// the whole run, `aggregator` tolerating f = `byzantine`; dimension 10,
    /// 40 rounds, learning rate 0.2, 64 samples per worker, noise 0.1,
    /// rounds of 200 ms.
    pub fn new(
        seed: u64,
        workers: usize,
        byzantine: usize,
        attack: Attack,
        aggregator: Aggregator,
    ) -> Self {
        Self {
            seed,
            replicas: 3,
            workers,
            byzantine,
            attack,
            attack_window: (Round(0), Round(u64::MAX)),
            aggregator,
            f: byzantine,
            rounds: 40,
            learning_rate: 0.2,
            dim: 10,
            samples_per_worker: 64,
            noise_std: 0.1,
            round_timeout: Duration::from_millis(200),
            late_workers: 0,
            crash: None,
            raft: RaftConfig::default(),
        }
    }

    fn worker_ids(&self) -> Vec<NodeId> {
        (0..self.workers as u64)
            .map(|i| NodeId(FIRST_WORKER + i))
            .collect()
    }

    /// Checks the spec before anything starts.
    pub fn validate(&self) -> Result<TrainingConfig, TrainingError> {
        if self.replicas == 0 {
            return Err(TrainingError::Spec("at least one replica".into()));
        }
        if self.byzantine + self.late_workers > self.workers {
            return Err(TrainingError::Spec(format!(
                "{} Byzantine and {} late workers out of {}",
                self.byzantine, self.late_workers, self.workers
            )));
        }
        if self.dim == 0 || self.samples_per_worker == 0 || self.round_timeout.is_zero() {
            return Err(TrainingError::Spec(
                "dimension, samples per worker and round timeout must be > 0".into(),
            ));
        }
        if let Some(c) = self.crash {
            if !(1..=self.replicas).contains(&c.replica.0) || c.restart_at <= c.at {
                return Err(TrainingError::Spec(format!("bad crash plan {c:?}")));
            }
        }
        let config = TrainingConfig {
            initial: vec![0.0; self.dim],
            learning_rate: self.learning_rate,
            aggregator: self.aggregator,
            f: self.f,
            workers: self.worker_ids(),
            synchronous: self.late_workers == 0,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Why a training run could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    /// The spec is inconsistent.
    #[error("invalid training spec: {0}")]
    Spec(String),
    /// The training configuration is refused (e.g. the rule's bound on f).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The simulation could not start or run.
    #[error("simulation: {0}")]
    Sim(#[from] SimError),
    /// No leader could commit for too long.
    #[error("no leader committed a command within {0:?} (virtual)")]
    NoProgress(Duration),
}

/// One round, as the leader applied it.
#[derive(Clone, Debug, PartialEq)]
pub struct RoundReport {
    /// The round's summary (who was included, the new version).
    pub summary: RoundSummary,
    /// Held-out loss after the round.
    pub loss: f64,
    /// Distance of the parameters to the true weights after the round.
    pub distance: f64,
    /// Submissions that arrived after the close.
    pub stale: usize,
}

/// What a training run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingReport {
    /// Per round, in order.
    pub rounds: Vec<RoundReport>,
    /// Final parameters (the leader's).
    pub final_params: Vec<f32>,
    /// Held-out loss at the start.
    pub initial_loss: f64,
    /// Held-out loss at the end.
    pub final_loss: f64,
    /// Distance of the final parameters to the true weights.
    pub final_distance: f64,
    /// Every replica applied every round with the same parameter hash, and
    /// every replica's last incarnation reached the last round.
    pub replicas_identical: bool,
    /// Per state-machine instance (replica incarnation), the loss after
    /// each round it applied.
    pub replica_losses: BTreeMap<usize, Vec<(Round, f64)>>,
    /// Hash of the simulation trace (replay check).
    pub trace_hash: u64,
}

type Sim =
    Simulation<consensus_raft::RaftMessage<GradientCommand>, RaftSimFactory<GradientConsensus>>;

/// Runs a training job on a simulated Raft cluster.
pub fn run_training(spec: &TrainingSpec) -> Result<TrainingReport, TrainingError> {
    let config = spec.validate()?;
    let problem = LinearRegression::new(spec.dim, spec.noise_std, spec.seed);
    let held_out = problem.shard(u64::MAX, 256);
    let probe = ReplicaProbe::new();
    let sm_probe = probe.clone();
    let factory = RaftSimFactory::new(
        spec.raft.clone(),
        (1..=spec.replicas).map(NodeId),
        move || GradientConsensus::new(config.clone()).with_probe(sm_probe.clone()),
    );
    let spec2 = spec.clone();
    let problem2 = problem.clone();
    let outcome = Simulation::run(
        SimConfig::new(spec.seed, spec.replicas),
        factory,
        move |sim| coordinate(sim, spec2, problem2),
    )?;
    let (rounds, final_params, last_round) = outcome.result?;
    let replica_losses = probe.records().into_iter().fold(
        BTreeMap::<usize, Vec<(Round, f64)>>::new(),
        |mut m, r| {
            m.entry(r.instance)
                .or_default()
                .push((r.round, held_out.loss(&r.params)));
            m
        },
    );
    let reached = probe.at_round(last_round);
    let replicas_identical = probe.disagreements().is_empty()
        && reached.len() as u64 >= spec.replicas
        && reached.windows(2).all(|w| w[0].1 == w[1].1);
    let rounds: Vec<RoundReport> = rounds
        .into_iter()
        .map(|(summary, params, stale)| RoundReport {
            loss: held_out.loss(&params),
            distance: problem.distance_to_truth(&params),
            summary,
            stale,
        })
        .collect();
    Ok(TrainingReport {
        initial_loss: held_out.loss(&vec![0.0; spec.dim]),
        final_loss: held_out.loss(&final_params),
        final_distance: problem.distance_to_truth(&final_params),
        final_params,
        rounds,
        replicas_identical,
        replica_losses,
        trace_hash: outcome.trace_hash,
    })
}

type Coordinated = Result<(Vec<(RoundSummary, Vec<f32>, usize)>, Vec<f32>, Round), TrainingError>;

/// How long the coordinator keeps retrying a command without a leader.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

async fn coordinate(mut sim: Sim, spec: TrainingSpec, problem: LinearRegression) -> Coordinated {
    let honest_count = spec.workers - spec.byzantine;
    let workers: Vec<(NodeId, actix::Addr<WorkerActor>, bool)> = spec
        .worker_ids()
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let byzantine = i >= honest_count;
            let late = !byzantine && i >= honest_count - spec.late_workers;
            let behaviour = if byzantine {
                Behaviour::Byzantine {
                    attack: spec.attack,
                    from: spec.attack_window.0,
                    until: spec.attack_window.1,
                }
            } else {
                Behaviour::Honest
            };
            // Honest compute times spread over the first half of the round;
            // late workers take twice the round.
            let compute = if late {
                spec.round_timeout * 2
            } else {
                spec.round_timeout / 2 * (1 + i as u32 % 4) / 4
            };
            let shard: Shard = problem.shard(i as u64, spec.samples_per_worker);
            let core = WorkerCore::new(id, shard, behaviour, compute, spec.seed ^ (id.0 << 32));
            (id, WorkerActor::new(core).start(), byzantine)
        })
        .collect();
    let mut leader = find_leader(&sim, None).await?;
    let mut history = Vec::new();
    let mut params = vec![0.0; spec.dim];
    for r in 0..spec.rounds {
        let round = Round(r);
        if let Some(c) = spec.crash {
            if c.at == round {
                tracing::info!(replica = %c.replica, %round, "crashing a replica");
                sim.crash(c.replica)?;
            }
            if c.restart_at == round {
                tracing::info!(replica = %c.replica, %round, "restarting a replica");
                sim.restart(c.replica)?;
            }
        }
        params = loop {
            let node = node_or_find(&sim, &mut leader).await?;
            match node
                .read(|sm: &GradientConsensus| (sm.round(), sm.params().to_vec()))
                .await
            {
                Ok((open, p)) => {
                    debug_assert_eq!(open, round, "the coordinator closes every round it opens");
                    break p;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "read failed; finding the leader");
                    leader = find_leader(&sim, Some(leader)).await?;
                }
            }
        };
        let start = Instant::now();
        let pulled = Arc::new(params.clone());
        let ask = |honest: Arc<Vec<Vec<f32>>>| ComputeGradient {
            round,
            params: Arc::clone(&pulled),
            honest,
            workers: spec.workers,
            byzantine: spec.byzantine,
        };
        let mut ready: Vec<GradientReady> = Vec::with_capacity(spec.workers);
        for (_, addr, byz) in &workers {
            if !byz {
                ready.push(
                    addr.send(ask(Arc::new(Vec::new())))
                        .await
                        .expect("worker actors live as long as the run"),
                );
            }
        }
        let honest: Arc<Vec<Vec<f32>>> = Arc::new(
            ready
                .iter()
                .filter_map(|g| match &g.output {
                    WorkerOutput::Gradient(v) => Some(v.clone()),
                    _ => None,
                })
                .collect(),
        );
        for (_, addr, byz) in &workers {
            if *byz {
                ready.push(
                    addr.send(ask(Arc::clone(&honest)))
                        .await
                        .expect("worker actors live as long as the run"),
                );
            }
        }
        ready.sort_by_key(|g| (g.after, g.worker));
        let deadline = start + spec.round_timeout;
        let mut stale = 0;
        let mut closed = None;
        for g in &ready {
            if closed.is_none() && start + g.after > deadline {
                tokio::time::sleep_until(deadline).await;
                closed = Some(close(&sim, &mut leader, round).await?);
            }
            tokio::time::sleep_until(start + g.after).await;
            let submissions = match &g.output {
                WorkerOutput::Gradient(v) => vec![v.clone()],
                // The two halves of the replicas each forward what they got.
                WorkerOutput::Equivocate { to_first, to_rest } => {
                    vec![to_first.clone(), to_rest.clone()]
                }
                WorkerOutput::Silent => vec![],
            };
            for gradient in submissions {
                let cmd = GradientCommand::Submit {
                    round,
                    worker: g.worker,
                    gradient,
                };
                if let GradientOutput::Stale { .. } = propose(&sim, &mut leader, cmd).await? {
                    stale += 1;
                }
            }
        }
        let summary = match closed {
            Some(s) => s,
            None => {
                tokio::time::sleep_until(deadline).await;
                close(&sim, &mut leader, round).await?
            }
        };
        let node = node_or_find(&sim, &mut leader).await?;
        let after = node
            .read(|sm: &GradientConsensus| sm.params().to_vec())
            .await
            .unwrap_or_else(|_| params.clone());
        history.push((summary, after, stale));
    }
    let last = Round(spec.rounds.saturating_sub(1));
    // Let every replica apply the last close before the probe is read.
    sim.run_for(Duration::from_secs(2)).await;
    let node = node_or_find(&sim, &mut leader).await?;
    let final_params = node
        .read(|sm: &GradientConsensus| sm.params().to_vec())
        .await
        .unwrap_or(params);
    Ok((history, final_params, last))
}

async fn close(
    sim: &Sim,
    leader: &mut NodeId,
    round: Round,
) -> Result<RoundSummary, TrainingError> {
    match propose(sim, leader, GradientCommand::CloseRound { round }).await? {
        GradientOutput::Closed(s) => Ok(s),
        other => {
            // A retried close whose first attempt committed (its outcome was
            // unknown): the replicated state remembers the summary.
            let node = node_or_find(sim, leader).await?;
            match node
                .read(|sm: &GradientConsensus| sm.last_summary().cloned())
                .await
            {
                Ok(Some(s)) if s.round == round => Ok(s),
                _ => Err(TrainingError::Spec(format!(
                    "round {round} did not close: {other:?}"
                ))),
            }
        }
    }
}

/// Proposes through the leader, finding a new one on refusals.
async fn propose(
    sim: &Sim,
    leader: &mut NodeId,
    cmd: GradientCommand,
) -> Result<GradientOutput, TrainingError> {
    let give_up = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        let node = node_or_find(sim, leader).await?;
        match node.propose(cmd.clone(), ClientId(1)).await {
            Ok(out) => return Ok(out),
            Err(ProposeError::NotLeader { leader: Some(l) }) if sim.is_up(l) => *leader = l,
            Err(e) => {
                tracing::debug!(error = %e, "proposal failed; finding the leader");
                if Instant::now() > give_up {
                    return Err(TrainingError::NoProgress(PROGRESS_TIMEOUT));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                *leader = find_leader(sim, Some(*leader)).await?;
            }
        }
    }
}

async fn node_or_find(
    sim: &Sim,
    leader: &mut NodeId,
) -> Result<RaftNode<GradientConsensus>, TrainingError> {
    if let Some(n) = sim.factory().node(*leader) {
        return Ok(n);
    }
    *leader = find_leader(sim, None).await?;
    sim.factory()
        .node(*leader)
        .ok_or(TrainingError::NoProgress(PROGRESS_TIMEOUT))
}

/// Waits for a node that reports itself leader (other than `not` when
/// another is available).
async fn find_leader(sim: &Sim, not: Option<NodeId>) -> Result<NodeId, TrainingError> {
    let give_up = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        let mut found = None;
        for node in sim.factory().nodes() {
            if let Some(s) = node.status().await {
                if s.role == NodeState::Leader && (found.is_none() || Some(s.id) != not) {
                    found = Some(s.id);
                }
            }
        }
        if let Some(l) = found {
            return Ok(l);
        }
        if Instant::now() > give_up {
            return Err(TrainingError::NoProgress(PROGRESS_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
