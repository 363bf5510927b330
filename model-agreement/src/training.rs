//! A simulated training cluster: Raft (or PBFT, see [`OrderingLayer`])
//! replicas of [`GradientConsensus`],
//! worker actors, and a round coordinator, all in the deterministic
//! [`Simulation`] (paused clock, seeded RNG), so a run is a pure function of
//! its [`TrainingSpec`].
//!
//! Each replica is a Raft node (the ordering layer, running the
//! [`GradientConsensus`] state machine) and a training tier whose
//! GradientConsensus component ([`replica`](crate::replica)) workers talk
//! to. Each round the coordinator pulls the model from *every* replica's
//! component and takes the one whose hash a majority of replicas serve
//! (a replica serving another model at the same version is recorded in
//! [`TrainingReport::served_disagreements`]); asks every worker for its
//! gradient; submits each gradient through the worker's home replica when
//! the worker's (virtual) compute time has passed; and closes the round
//! (through replica 1's component, or the next running one) as soon as
//! every active worker submitted (the barrier) or when the round's timeout
//! expires, without waiting for late workers (their submissions arrive
//! after the close and are stale). An equivocating worker hands its two
//! gradients to two different replicas, which both forward them to the log.
//! The state machines are compared through a [`ReplicaProbe`].

use crate::aggregation::Aggregator;
use crate::attack::{Attack, WorkerOutput};
use crate::gradient_consensus::{
    parameter_hash, ConfigError, GradientConsensus, GradientOutput, ReplicaProbe, Round,
    RoundSummary, TrainingConfig,
};
use crate::replica::Ordering;
use crate::replica::{
    components, CloseRound, GradientContext, GradientHandles, ModelView, OrderingError, PullModel,
    SubmitGradient, TrainingSlots,
};
use crate::replica_pbft::PbftReplicaSimFactory;
use crate::replica_sim::{ReplicaSimFactory, Replicas, Tier, TrainingFactory, PROGRESS_TIMEOUT};
use crate::task::{LinearRegression, Shard};
use crate::worker::{Behaviour, ComputeGradient, GradientReady, WorkerActor, WorkerCore};
use actix::Actor;
use consensus_actors::sim::NodeFactory;
use consensus_actors::sim::{SimConfig, SimError, Simulation};
use consensus_actors::supervision::SupervisorBuilder;
use consensus_actors::transport::Wire;
use consensus_actors::types::NodeId;
use consensus_pbft::byzantine::Behaviour as PbftBehaviour;
use consensus_pbft::PbftConfig;
use consensus_raft::RaftConfig;
use std::collections::{BTreeMap, BTreeSet};
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

/// The consensus protocol that orders the training log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderingLayer {
    /// Raft (crash faults).
    Raft,
    /// PBFT (Byzantine replicas: n ≥ 3f + 1), with the named replicas
    /// Byzantine.
    Pbft {
        /// Byzantine replicas and how each lies.
        byzantine: Vec<(NodeId, PbftBehaviour)>,
    },
}

impl OrderingLayer {
    /// Refuses a PBFT layer with more Byzantine replicas than `replicas`
    /// tolerate (n ≥ 3f + 1) or with a Byzantine replica that is not a
    /// member.
    pub fn validate(&self, replicas: u64) -> Result<(), TrainingError> {
        let OrderingLayer::Pbft { byzantine } = self else {
            return Ok(());
        };
        let cfg = PbftConfig::for_cluster(replicas as usize)
            .map_err(|e| TrainingError::Spec(format!("PBFT: {e}")))?;
        if byzantine.len() > cfg.f {
            return Err(TrainingError::Spec(format!(
                "{} Byzantine replicas, PBFT with {replicas} replicas tolerates {}",
                byzantine.len(),
                cfg.f
            )));
        }
        if byzantine
            .iter()
            .any(|(id, _)| !(1..=replicas).contains(&id.0))
        {
            return Err(TrainingError::Spec(
                "a Byzantine replica that is not a member".into(),
            ));
        }
        Ok(())
    }
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
    /// Evicts a worker silent for this many consecutive rounds (`None`:
    /// never).
    pub evict_after: Option<u64>,
    /// Raft settings.
    pub raft: RaftConfig,
    /// The ordering layer (Raft by default).
    pub ordering: OrderingLayer,
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
            evict_after: None,
            raft: RaftConfig::default(),
            ordering: OrderingLayer::Raft,
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
        self.ordering.validate(self.replicas)?;
        if let OrderingLayer::Pbft { .. } = &self.ordering {
            if self.crash.is_some() {
                return Err(TrainingError::Spec(
                    "crash plans run on Raft only (a PBFT replica keeps its state machine \
                     across a crash, wired to its old training tier)"
                        .into(),
                ));
            }
        }
        let config = TrainingConfig {
            initial: vec![0.0; self.dim],
            learning_rate: self.learning_rate,
            aggregator: self.aggregator,
            f: self.f,
            workers: self.worker_ids(),
            synchronous: self.late_workers == 0,
            evict_after: self.evict_after,
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
    /// The ordering layer gave up.
    #[error(transparent)]
    Ordering(#[from] OrderingError),
    /// No majority of replicas served the same model at a version.
    #[error(
        "no majority of replicas served the same model at version {version} ({served} served it)"
    )]
    NoAgreement {
        /// The version.
        version: u64,
        /// Replicas that served that version at all.
        served: usize,
    },
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
    /// How long (virtual) the round lasted until its close was ordered.
    pub closed_after: Duration,
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
    /// Replicas whose GradientConsensus component served a model other
    /// than the majority's at the same version (the round it was pulled
    /// for): a lying or corrupted replica, caught by the hash comparison.
    pub served_disagreements: Vec<(Round, NodeId)>,
    /// Evidence of Byzantine replicas the correct PBFT replicas recorded
    /// (0 on Raft).
    pub replica_evidence: u64,
}

/// Runs a training job on a simulated cluster ([`TrainingSpec::ordering`])
/// with the stock components.
pub fn run_training(spec: &TrainingSpec) -> Result<TrainingReport, TrainingError> {
    run_training_with(spec, &TrainingSlots::default())
}

/// Runs a training job on a simulated cluster whose replicas' training
/// tiers are built from `slots`.
pub fn run_training_with(
    spec: &TrainingSpec,
    slots: &TrainingSlots,
) -> Result<TrainingReport, TrainingError> {
    let config = spec.validate()?;
    let problem = LinearRegression::new(spec.dim, spec.noise_std, spec.seed);
    let held_out = problem.shard(u64::MAX, 256);
    let probe = ReplicaProbe::new();
    let sm_probe = probe.clone();
    let slot = slots.gradient_consensus.clone();
    let byzantine: Vec<NodeId> = match &spec.ordering {
        OrderingLayer::Raft => Vec::new(),
        OrderingLayer::Pbft { byzantine } => byzantine.iter().map(|(id, _)| *id).collect(),
    };
    // Correct replicas' state machines report to the probe (what the
    // identical-model claim is about); every replica's to its own tier.
    let honest = byzantine.clone();
    let build = move |id: NodeId,
                      ordering: Ordering<GradientConsensus>,
                      tree: &mut SupervisorBuilder|
          -> Result<Tier<GradientConsensus, GradientHandles>, String> {
        let ctx = GradientContext {
            id,
            config: config.clone(),
            ordering,
        };
        let handles = slot
            .build(&ctx)
            .start(tree, components::GRADIENT_CONSENSUS)
            .map_err(|e| e.to_string())?;
        let probe = (!honest.contains(&id)).then(|| sm_probe.clone());
        let (config, applied) = (config.clone(), handles.applied.clone());
        Ok(Tier {
            handles,
            make_sm: Arc::new(move || {
                let sm = GradientConsensus::new(config.clone()).with_publisher(applied.clone());
                match &probe {
                    Some(p) => sm.with_probe(p.clone()),
                    None => sm,
                }
            }),
        })
    };
    let members = (1..=spec.replicas).map(NodeId);
    let sim_config = SimConfig::new(spec.seed, spec.replicas);
    let (spec2, problem2) = (spec.clone(), problem.clone());
    let mut evidence = None;
    let outcome = match &spec.ordering {
        OrderingLayer::Raft => {
            let factory = ReplicaSimFactory::new(spec.raft.clone(), members, build);
            Simulation::run(sim_config, factory, move |sim| {
                coordinate(sim, spec2, problem2)
            })?
        }
        OrderingLayer::Pbft { byzantine } => {
            let cfg = PbftConfig::for_cluster(spec.replicas as usize)
                .map_err(|e| TrainingError::Spec(format!("PBFT: {e}")))?;
            let factory = byzantine.iter().fold(
                PbftReplicaSimFactory::new(cfg, members, build),
                |f, &(id, behaviour)| f.with_byzantine(id, behaviour),
            );
            evidence = Some(factory.evidence().clone());
            Simulation::run(sim_config, factory, move |sim| {
                coordinate(sim, spec2, problem2)
            })?
        }
    };
    let (rounds, final_params, last_round, served_disagreements) = outcome.result?;
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
    let correct = spec.replicas - byzantine.len() as u64;
    let replicas_identical = probe.disagreements().is_empty()
        && reached.len() as u64 >= correct
        && reached.windows(2).all(|w| w[0].1 == w[1].1);
    let rounds: Vec<RoundReport> = rounds
        .into_iter()
        .map(|(summary, params, stale, closed_after)| RoundReport {
            loss: held_out.loss(&params),
            distance: problem.distance_to_truth(&params),
            summary,
            stale,
            closed_after,
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
        served_disagreements,
        replica_evidence: evidence.map_or(0, |e| e.total()),
    })
}

type RoundRecord = (RoundSummary, Vec<f32>, usize, Duration);
type Coordinated = Result<(Vec<RoundRecord>, Vec<f32>, Round, Vec<(Round, NodeId)>), TrainingError>;

/// How long a pull waits for a replica to apply the version asked for.
const PULL_WAIT: Duration = Duration::from_secs(1);

async fn coordinate<M, F>(
    mut sim: Simulation<M, F>,
    spec: TrainingSpec,
    problem: LinearRegression,
) -> Coordinated
where
    M: Wire,
    F: NodeFactory<M> + TrainingFactory<GradientHandles>,
{
    let replicas = sim.factory().replicas();
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
    // A worker's home replica: where its submissions go.
    let home = |i: usize, k: u64| NodeId(1 + (i as u64 + k) % spec.replicas);
    let index: BTreeMap<NodeId, usize> = workers
        .iter()
        .enumerate()
        .map(|(i, (id, _, _))| (*id, i))
        .collect();
    let mut history = Vec::new();
    let mut disagreements = Vec::new();
    let mut evicted: BTreeSet<NodeId> = BTreeSet::new();
    let mut model = agreed_model(&replicas, spec.replicas, 0, Round(0), &mut disagreements).await?;
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
        debug_assert_eq!(
            model.round, round,
            "the coordinator closes every round it opens"
        );
        let start = Instant::now();
        let pulled = Arc::clone(&model.params);
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
        let mut outstanding: BTreeSet<NodeId> = spec
            .worker_ids()
            .into_iter()
            .filter(|w| !evicted.contains(w))
            .collect();
        let mut stale = 0;
        let mut closed: Option<(RoundSummary, Duration)> = None;
        for g in &ready {
            if closed.is_none() && start + g.after > deadline {
                tokio::time::sleep_until(deadline).await;
                closed = Some((close(&replicas, round).await?, start.elapsed()));
            }
            tokio::time::sleep_until(start + g.after).await;
            let submissions = match &g.output {
                WorkerOutput::Gradient(v) => vec![v.clone()],
                // Two replicas each forward what they got.
                WorkerOutput::Equivocate { to_first, to_rest } => {
                    vec![to_first.clone(), to_rest.clone()]
                }
                WorkerOutput::Silent => vec![],
            };
            let i = index[&g.worker];
            for (k, gradient) in submissions.into_iter().enumerate() {
                let msg = SubmitGradient {
                    round,
                    worker: g.worker,
                    gradient,
                };
                match submit(&replicas, home(i, k as u64), msg).await? {
                    GradientOutput::Stale { .. } => stale += 1,
                    GradientOutput::Accepted
                    | GradientOutput::Duplicate
                    | GradientOutput::Equivocation => {
                        outstanding.remove(&g.worker);
                    }
                    GradientOutput::Refused(_) | GradientOutput::Closed(_) => {}
                }
            }
            if closed.is_none() && outstanding.is_empty() {
                // The barrier: every active worker submitted.
                closed = Some((close(&replicas, round).await?, start.elapsed()));
            }
        }
        let (summary, closed_after) = match closed {
            Some(c) => c,
            None => {
                tokio::time::sleep_until(deadline).await;
                (close(&replicas, round).await?, start.elapsed())
            }
        };
        evicted.extend(summary.evicted.iter().copied());
        model = agreed_model(
            &replicas,
            spec.replicas,
            summary.version.number,
            Round(r + 1),
            &mut disagreements,
        )
        .await?;
        if model.version.hash != summary.version.hash {
            return Err(TrainingError::NoAgreement {
                version: summary.version.number,
                served: 0,
            });
        }
        history.push((summary, model.params.to_vec(), stale, closed_after));
    }
    let last = Round(spec.rounds.saturating_sub(1));
    // Let every replica apply the last close before the probe is read.
    sim.run_for(Duration::from_secs(2)).await;
    Ok((history, model.params.to_vec(), last, disagreements))
}

/// Pulls the model at `version` from every running replica and returns the
/// one a majority of all `replicas` serve (same hash, hash matching the
/// parameters); the others that served that version are recorded as
/// disagreeing at `round`.
async fn agreed_model(
    replicas: &Replicas<GradientHandles>,
    n: u64,
    version: u64,
    round: Round,
    disagreements: &mut Vec<(Round, NodeId)>,
) -> Result<ModelView, TrainingError> {
    let mut views = Vec::new();
    for (id, tier) in replicas.all() {
        let pull = PullModel {
            at_least: version,
            within: PULL_WAIT,
        };
        if let Ok(Some(view)) = tier.pull.send(pull).await {
            if view.version.number == version {
                views.push((id, view));
            }
        }
    }
    let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, v) in &views {
        if parameter_hash(&v.params) == v.version.hash {
            *votes.entry(v.version.hash).or_default() += 1;
        }
    }
    let quorum = n as usize / 2 + 1;
    let Some((&hash, _)) = votes.iter().find(|(_, &c)| c >= quorum) else {
        return Err(TrainingError::NoAgreement {
            version,
            served: views.len(),
        });
    };
    let mut agreed = None;
    for (id, v) in views {
        if v.version.hash == hash && parameter_hash(&v.params) == hash {
            agreed.get_or_insert(v);
        } else {
            tracing::warn!(replica = %id, version, "a replica served a model the majority does not hold");
            disagreements.push((round, id));
        }
    }
    Ok(agreed.expect("a quorum of views holds the hash"))
}

/// Submits through `prefer`'s component (the next running replica's when
/// it is down).
async fn submit(
    replicas: &Replicas<GradientHandles>,
    prefer: NodeId,
    msg: SubmitGradient,
) -> Result<GradientOutput, TrainingError> {
    let give_up = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        if let Some((_, tier)) = replicas.tier_near(prefer) {
            match tier.submit.send(msg.clone()).await {
                Ok(out) => return Ok(out?),
                Err(e) => tracing::debug!(error = %e, "replica gone; trying another"),
            }
        }
        if Instant::now() > give_up {
            return Err(TrainingError::NoProgress(PROGRESS_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Closes `round` through replica 1's component (or the next running one).
async fn close(
    replicas: &Replicas<GradientHandles>,
    round: Round,
) -> Result<RoundSummary, TrainingError> {
    let give_up = Instant::now() + PROGRESS_TIMEOUT;
    loop {
        if let Some((_, tier)) = replicas.tier_near(NodeId(1)) {
            match tier.close.send(CloseRound { round }).await {
                Ok(out) => {
                    return match out? {
                        GradientOutput::Closed(s) => Ok(s),
                        other => Err(TrainingError::Spec(format!(
                            "round {round} did not close: {other:?}"
                        ))),
                    }
                }
                Err(e) => tracing::debug!(error = %e, "replica gone; trying another"),
            }
        }
        if Instant::now() > give_up {
            return Err(TrainingError::NoProgress(PROGRESS_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
