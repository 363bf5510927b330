//! **GradientConsensus**: the replicated state machine of synchronous
//! training rounds.
//!
//! Workers' gradients and the close of each round are commands of the
//! consensus log. Every replica applies the same commands in the same order
//! to this [`StateMachine`], so every replica aggregates the same gradients
//! (sorted by worker id) with the same deterministic rule (see
//! [`aggregation`](crate::aggregation)) and holds bit-identical parameters;
//! [`ModelVersion::hash`] makes that checkable.
//!
//! # Rules of a round
//!
//! - A [`Submit`](GradientCommand::Submit) for the open round from a
//!   registered worker, with the right dimension and finite values, is
//!   accepted once. The same gradient again is a duplicate (a retried
//!   proposal); a *different* gradient from the same worker in the same
//!   round is equivocation: the worker's contribution to that round is
//!   dropped on every replica, whichever copy was ordered first.
//! - A submission for a closed round is stale (a late worker), for a future
//!   round refused.
//! - [`CloseRound`](GradientCommand::CloseRound) for the open round
//!   aggregates what was accepted, steps the parameters
//!   `w ← w − lr · aggregate` (in f64, rounded once to f32), increments the
//!   version and every included worker's entry of the version vector, and
//!   opens the next round. Whoever closes the round (the coordinator on its
//!   virtual timeout) does not wait for late workers. When the rule refuses
//!   (too few gradients for its bound on f), the parameters stay as they
//!   were and the next round opens; the refusal is in the output.
//! - With [`TrainingConfig::evict_after`] `= Some(k)`, a worker with no
//!   submission in k consecutive closed rounds is evicted by the close that
//!   makes it k (a log command, so every replica evicts it at the same
//!   round): it is no longer waited for (a round whose every active worker
//!   submitted may close at once, the barrier) and its later submissions
//!   are refused. Eviction is final and never leaves the group empty.

use crate::aggregation::{AggregationError, Aggregator};
use crate::replica::ModelApplied;
use crate::version_vector::VersionVector;
use actix::Recipient;
use consensus_actors::kv::{SnapshotDecodeError, StateMachine};
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

/// A training round number; round 0 is the first.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Round(pub u64);

impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// A 64-bit FNV-1a hash of the parameters' bit patterns (little-endian), the
/// same on every platform.
pub fn parameter_hash(params: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in params {
        for b in p.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A model version: its number, the updates it includes and its hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Versions applied so far (0: the initial parameters).
    pub number: u64,
    /// Per worker, how many of its gradients the version includes.
    pub vector: VersionVector,
    /// [`parameter_hash`] of the parameters.
    pub hash: u64,
}

/// What the training group agrees on before it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    /// The initial parameters (their length is the model's dimension).
    pub initial: Vec<f32>,
    /// Step size.
    pub learning_rate: f32,
    /// The aggregation rule.
    pub aggregator: Aggregator,
    /// Byzantine workers the rule must tolerate.
    pub f: usize,
    /// The workers allowed to submit.
    pub workers: Vec<NodeId>,
    /// Whether honest workers always submit before a round closes (the
    /// synchronous model). Then a missing gradient is a Byzantine worker's,
    /// and a round with `m` gradients missing tolerates `f − m` among those
    /// it has (what keeps Krum live when Byzantine workers stay silent).
    /// Without it only proven Byzantine workers, the equivocators, are
    /// subtracted from f: a missing gradient may be a late honest worker's.
    pub synchronous: bool,
    /// Evicts a worker silent for this many consecutive rounds (`None`:
    /// never).
    #[serde(default)]
    pub evict_after: Option<u64>,
}

/// A command of the training log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GradientCommand {
    /// A worker's gradient for a round.
    Submit {
        /// The round.
        round: Round,
        /// The worker.
        worker: NodeId,
        /// The gradient.
        gradient: Vec<f32>,
    },
    /// Closes the open round (the round's virtual timeout expired).
    CloseRound {
        /// The round to close.
        round: Round,
    },
}

/// Why a submission was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SubmitRefusal {
    /// The worker is not a member of the training group.
    #[error("worker {0} is not registered")]
    UnknownWorker(NodeId),
    /// The gradient has the wrong number of coordinates.
    #[error("gradient has {found} coordinates, the model {expected}")]
    Dimension {
        /// The model's dimension.
        expected: usize,
        /// The gradient's.
        found: usize,
    },
    /// A NaN or infinite coordinate.
    #[error("gradient has a non-finite coordinate")]
    NonFinite,
    /// The worker was evicted for silence.
    #[error("worker {0} was evicted")]
    Evicted(NodeId),
    /// The round is not open yet.
    #[error("round {submitted} is not open yet (open: {open})")]
    FutureRound {
        /// The round submitted for.
        submitted: Round,
        /// The open round.
        open: Round,
    },
}

/// The summary of a closed round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundSummary {
    /// The round closed.
    pub round: Round,
    /// Workers whose gradient was aggregated, in id order.
    pub included: Vec<NodeId>,
    /// The f the rule tolerated this round (see [`TrainingConfig::synchronous`]).
    pub f: usize,
    /// Workers dropped for equivocating.
    pub equivocators: Vec<NodeId>,
    /// Workers evicted by this close (silent for `evict_after` rounds).
    pub evicted: Vec<NodeId>,
    /// The rule's refusal ([`AggregationError`]'s message), when it refused
    /// (the parameters did not change).
    pub refused: Option<String>,
    /// The version after the round.
    pub version: ModelVersion,
}

/// The result of applying a [`GradientCommand`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GradientOutput {
    /// The gradient counts for the open round.
    Accepted,
    /// The same gradient was already accepted (a retried proposal).
    Duplicate,
    /// A different gradient from the same worker in the same round: the
    /// worker is dropped from the round.
    Equivocation,
    /// The round is already closed (a late worker, or a repeated close).
    Stale {
        /// The open round.
        open: Round,
    },
    /// The submission was refused.
    Refused(SubmitRefusal),
    /// The round closed.
    Closed(RoundSummary),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Pending {
    Gradient(Vec<f32>),
    Equivocated,
}

/// Everything a replica holds (what snapshots carry).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    config: TrainingConfig,
    round: Round,
    params: Vec<f32>,
    version: ModelVersion,
    /// The last aggregate (centered clipping's starting point).
    last_aggregate: Option<Vec<f32>>,
    pending: BTreeMap<NodeId, Pending>,
    /// The summary of the last closed round.
    last_summary: Option<RoundSummary>,
    /// Per active worker, the consecutive closed rounds without its
    /// submission.
    missed: BTreeMap<NodeId, u64>,
    evicted: BTreeSet<NodeId>,
}

/// One replica's record of a closed round, for observers.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaRecord {
    /// Which state-machine instance (one per replica incarnation).
    pub instance: usize,
    /// The round closed.
    pub round: Round,
    /// The parameters' hash after it.
    pub hash: u64,
    /// The parameters after it.
    pub params: Vec<f32>,
}

/// Collects what each state-machine instance applies, so tests and the
/// example can compare replicas without going through the leader (Raft
/// reads run on the leader). Observation only: it never feeds back into
/// the state.
#[derive(Clone, Debug, Default)]
pub struct ReplicaProbe {
    inner: Arc<Mutex<ProbeState>>,
}

#[derive(Debug, Default)]
struct ProbeState {
    instances: usize,
    records: Vec<ReplicaRecord>,
    params: BTreeMap<usize, (Round, Vec<f32>)>,
}

impl ReplicaProbe {
    /// A probe with no instance yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        // A panic while holding the lock cannot leave ProbeState half-updated
        // in a way that matters for observation.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn register(&self) -> usize {
        let mut s = self.lock();
        s.instances += 1;
        s.instances - 1
    }

    pub(crate) fn record(&self, instance: usize, round: Round, params: &[f32]) {
        let mut s = self.lock();
        s.records.push(ReplicaRecord {
            instance,
            round,
            hash: parameter_hash(params),
            params: params.to_vec(),
        });
        s.params.insert(instance, (round, params.to_vec()));
    }

    /// Every round closed by every instance, in the order applied.
    pub fn records(&self) -> Vec<ReplicaRecord> {
        self.lock().records.clone()
    }

    /// Rounds at which two instances hold different parameters (empty when
    /// every replica agrees).
    pub fn disagreements(&self) -> Vec<Round> {
        let mut by_round: BTreeMap<Round, u64> = BTreeMap::new();
        let mut bad = Vec::new();
        for r in self.lock().records.iter() {
            let h = *by_round.entry(r.round).or_insert(r.hash);
            if h != r.hash && !bad.contains(&r.round) {
                bad.push(r.round);
            }
        }
        bad
    }

    /// The instances whose last closed round is `round`, with their hash.
    pub fn at_round(&self, round: Round) -> Vec<(usize, u64)> {
        self.lock()
            .params
            .iter()
            .filter(|(_, (r, _))| *r == round)
            .map(|(&i, (_, p))| (i, parameter_hash(p)))
            .collect()
    }

    /// The latest parameters of each instance (by instance).
    pub fn latest(&self) -> BTreeMap<usize, (Round, Vec<f32>)> {
        self.lock().params.clone()
    }
}

/// The GradientConsensus state machine. See the [module documentation](self).
#[derive(Debug)]
pub struct GradientConsensus {
    state: State,
    probe: Option<(ReplicaProbe, usize)>,
    publisher: Option<Recipient<ModelApplied>>,
}

impl GradientConsensus {
    /// A replica at round 0 with the initial parameters.
    ///
    /// # Panics
    /// When `config` is inconsistent (no workers, or a learning rate that
    /// is not finite): the configuration is the operator's, checked by
    /// [`TrainingConfig::validate`] before a cluster starts.
    pub fn new(config: TrainingConfig) -> Self {
        match Self::try_new(config) {
            Ok(sm) => sm,
            Err(e) => panic!("invalid training configuration: {e}"),
        }
    }

    /// A replica at round 0, or why `config` cannot run.
    pub fn try_new(config: TrainingConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let hash = parameter_hash(&config.initial);
        let params = config.initial.clone();
        Ok(Self {
            state: State {
                config,
                round: Round(0),
                params,
                version: ModelVersion {
                    number: 0,
                    vector: VersionVector::new(),
                    hash,
                },
                last_aggregate: None,
                pending: BTreeMap::new(),
                last_summary: None,
                missed: BTreeMap::new(),
                evicted: BTreeSet::new(),
            },
            probe: None,
            publisher: None,
        })
    }

    /// Reports the model after every round close (and after a restored
    /// snapshot) to `publisher`: the replica's GradientConsensus component.
    #[must_use]
    pub fn with_publisher(mut self, publisher: Recipient<ModelApplied>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    fn publish(&self) {
        if let Some(p) = &self.publisher {
            p.do_send(ModelApplied(crate::replica::model_view(self)));
        }
    }

    /// Workers evicted so far, in id order.
    pub fn evicted(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.state.evicted.iter().copied()
    }

    /// Whether every active (not evicted) worker has a submission in the
    /// open round (the barrier: the round may close).
    pub fn all_submitted(&self) -> bool {
        let s = &self.state;
        s.config
            .workers
            .iter()
            .all(|w| s.evicted.contains(w) || s.pending.contains_key(w))
    }

    /// Reports every closed round to `probe`.
    #[must_use]
    pub fn with_probe(mut self, probe: ReplicaProbe) -> Self {
        let instance = probe.register();
        self.probe = Some((probe, instance));
        self
    }

    /// The open round.
    pub fn round(&self) -> Round {
        self.state.round
    }

    /// The current parameters.
    pub fn params(&self) -> &[f32] {
        &self.state.params
    }

    /// The current version.
    pub fn version(&self) -> &ModelVersion {
        &self.state.version
    }

    /// The summary of the last closed round.
    pub fn last_summary(&self) -> Option<&RoundSummary> {
        self.state.last_summary.as_ref()
    }

    /// The training configuration.
    pub fn config(&self) -> &TrainingConfig {
        &self.state.config
    }

    fn handle_submit(&mut self, round: Round, worker: NodeId, gradient: &[f32]) -> GradientOutput {
        let s = &mut self.state;
        if round < s.round {
            return GradientOutput::Stale { open: s.round };
        }
        if round > s.round {
            return GradientOutput::Refused(SubmitRefusal::FutureRound {
                submitted: round,
                open: s.round,
            });
        }
        if !s.config.workers.contains(&worker) {
            return GradientOutput::Refused(SubmitRefusal::UnknownWorker(worker));
        }
        if s.evicted.contains(&worker) {
            return GradientOutput::Refused(SubmitRefusal::Evicted(worker));
        }
        if gradient.len() != s.params.len() {
            return GradientOutput::Refused(SubmitRefusal::Dimension {
                expected: s.params.len(),
                found: gradient.len(),
            });
        }
        if !gradient.iter().all(|x| x.is_finite()) {
            return GradientOutput::Refused(SubmitRefusal::NonFinite);
        }
        match s.pending.get_mut(&worker) {
            None => {
                s.pending
                    .insert(worker, Pending::Gradient(gradient.to_vec()));
                GradientOutput::Accepted
            }
            Some(Pending::Gradient(g)) if g.as_slice() == gradient => GradientOutput::Duplicate,
            Some(p) => {
                tracing::debug!(%worker, %round, "equivocation: worker dropped from the round");
                *p = Pending::Equivocated;
                GradientOutput::Equivocation
            }
        }
    }

    fn handle_close_round(&mut self, round: Round) -> GradientOutput {
        let s = &mut self.state;
        if round != s.round {
            return GradientOutput::Stale { open: s.round };
        }
        let pending = std::mem::take(&mut s.pending);
        let mut included = Vec::new();
        let mut equivocators = Vec::new();
        let mut gradients: Vec<&[f32]> = Vec::new();
        for (w, p) in &pending {
            match p {
                Pending::Gradient(g) => {
                    included.push(*w);
                    gradients.push(g);
                }
                Pending::Equivocated => equivocators.push(*w),
            }
        }
        let excluded = if s.config.synchronous {
            s.config.workers.len() - included.len()
        } else {
            equivocators.len()
        };
        let f = s.config.f.saturating_sub(excluded);
        let result = s
            .config
            .aggregator
            .aggregate_from(&gradients, f, s.last_aggregate.as_deref());
        let refused = match result {
            Ok(aggregate) => {
                let lr = f64::from(s.config.learning_rate);
                for (p, &a) in s.params.iter_mut().zip(&aggregate) {
                    *p = (f64::from(*p) - lr * f64::from(a)) as f32;
                }
                for w in &included {
                    s.version.vector.increment(*w);
                }
                s.last_aggregate = Some(aggregate);
                None
            }
            Err(e) => {
                tracing::debug!(%round, error = %e, "round closed without an update");
                included.clear();
                Some(e.to_string())
            }
        };
        // Silence: every active worker without a submission this round.
        let mut evicted = Vec::new();
        for &w in &s.config.workers {
            if s.evicted.contains(&w) {
                continue;
            }
            let missed = s.missed.entry(w).or_insert(0);
            *missed = if pending.contains_key(&w) {
                0
            } else {
                *missed + 1
            };
            if s.config.evict_after.is_some_and(|k| *missed >= k) {
                evicted.push(w);
            }
        }
        for w in &evicted {
            if s.evicted.len() + 1 < s.config.workers.len() {
                tracing::info!(worker = %w, %round, "evicting a silent worker");
                s.evicted.insert(*w);
                s.missed.remove(w);
            }
        }
        evicted.retain(|w| s.evicted.contains(w));
        debug_assert!(s.evicted.len() < s.config.workers.len());
        s.version.number += 1;
        s.version.hash = parameter_hash(&s.params);
        s.round = Round(round.0 + 1);
        debug_assert!(s.version.vector.total() <= s.version.number * s.config.workers.len() as u64);
        if let Some((probe, instance)) = &self.probe {
            probe.record(*instance, round, &self.state.params);
        }
        let summary = RoundSummary {
            round,
            f,
            included,
            equivocators,
            evicted,
            refused,
            version: self.state.version.clone(),
        };
        self.state.last_summary = Some(summary.clone());
        self.publish();
        GradientOutput::Closed(summary)
    }
}

impl TrainingConfig {
    /// Checks what the state machine relies on: workers listed, a finite
    /// learning rate, finite initial parameters, and the rule's parameters
    /// and bound on f for the full set of workers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers.is_empty() {
            return Err(ConfigError::NoWorkers);
        }
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 {
            return Err(ConfigError::LearningRate(self.learning_rate));
        }
        if !self.initial.iter().all(|x| x.is_finite()) {
            return Err(ConfigError::NonFiniteInitial);
        }
        self.aggregator
            .check(self.workers.len(), self.f)
            .map_err(ConfigError::Aggregator)
    }
}

/// A training configuration that cannot run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// No worker listed.
    #[error("no worker in the training group")]
    NoWorkers,
    /// The learning rate is not a positive finite number.
    #[error("learning rate must be finite and > 0, got {0}")]
    LearningRate(f32),
    /// The initial parameters hold a NaN or infinity.
    #[error("initial parameters must be finite")]
    NonFiniteInitial,
    /// The rule refuses the number of workers and f.
    #[error(transparent)]
    Aggregator(AggregationError),
}

impl StateMachine for GradientConsensus {
    type Command = GradientCommand;
    type Output = GradientOutput;

    fn apply(&mut self, command: &GradientCommand) -> GradientOutput {
        match command {
            GradientCommand::Submit {
                round,
                worker,
                gradient,
            } => self.handle_submit(*round, *worker, gradient),
            GradientCommand::CloseRound { round } => self.handle_close_round(*round),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        rmp_serde::to_vec(&self.state).expect("the state serializes: plain data")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotDecodeError> {
        let state: State =
            rmp_serde::from_slice(snapshot).map_err(|e| SnapshotDecodeError(e.to_string()))?;
        self.state = state;
        self.publish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(aggregator: Aggregator, f: usize, workers: u64) -> TrainingConfig {
        TrainingConfig {
            initial: vec![0.0, 0.0],
            learning_rate: 0.5,
            aggregator,
            f,
            workers: (1..=workers).map(NodeId).collect(),
            synchronous: false,
            evict_after: None,
        }
    }

    fn submit(round: u64, worker: u64, g: &[f32]) -> GradientCommand {
        GradientCommand::Submit {
            round: Round(round),
            worker: NodeId(worker),
            gradient: g.to_vec(),
        }
    }

    #[test]
    fn a_round_aggregates_what_was_accepted_and_steps() {
        let mut sm = GradientConsensus::new(config(Aggregator::Median, 1, 3));
        assert_eq!(
            sm.apply(&submit(0, 1, &[1.0, 2.0])),
            GradientOutput::Accepted
        );
        assert_eq!(
            sm.apply(&submit(0, 1, &[1.0, 2.0])),
            GradientOutput::Duplicate
        );
        assert_eq!(
            sm.apply(&submit(0, 2, &[3.0, 2.0])),
            GradientOutput::Accepted
        );
        assert_eq!(
            sm.apply(&submit(0, 3, &[100.0, 2.0])),
            GradientOutput::Accepted
        );
        assert!(matches!(
            sm.apply(&submit(1, 1, &[0.0, 0.0])),
            GradientOutput::Refused(SubmitRefusal::FutureRound { .. })
        ));
        assert!(matches!(
            sm.apply(&submit(0, 9, &[0.0, 0.0])),
            GradientOutput::Refused(SubmitRefusal::UnknownWorker(_))
        ));
        assert!(matches!(
            sm.apply(&submit(0, 2, &[0.0])),
            GradientOutput::Refused(SubmitRefusal::Dimension { .. })
        ));
        assert_eq!(
            sm.apply(&submit(0, 2, &[f32::NAN, 0.0])),
            GradientOutput::Refused(SubmitRefusal::NonFinite)
        );
        let GradientOutput::Closed(summary) =
            sm.apply(&GradientCommand::CloseRound { round: Round(0) })
        else {
            panic!("closes");
        };
        assert_eq!(summary.included, vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(summary.refused, None);
        // Median (3, 2) × 0.5.
        assert_eq!(sm.params(), &[-1.5, -1.0]);
        assert_eq!(summary.version.number, 1);
        assert_eq!(summary.version.hash, parameter_hash(&[-1.5, -1.0]));
        assert_eq!(summary.version.vector.get(NodeId(2)), 1);
        // A late worker and a repeated close are stale.
        assert_eq!(
            sm.apply(&submit(0, 2, &[1.0, 1.0])),
            GradientOutput::Stale { open: Round(1) }
        );
        assert_eq!(
            sm.apply(&GradientCommand::CloseRound { round: Round(0) }),
            GradientOutput::Stale { open: Round(1) }
        );
    }

    #[test]
    fn equivocation_drops_the_worker_whatever_came_first() {
        for order in [[1.0f32, -100.0], [-100.0, 1.0]] {
            let mut sm = GradientConsensus::new(config(Aggregator::Mean, 0, 2));
            sm.apply(&submit(0, 1, &[order[0], 0.0]));
            assert_eq!(
                sm.apply(&submit(0, 1, &[order[1], 0.0])),
                GradientOutput::Equivocation
            );
            // A third copy does not bring it back.
            assert_eq!(
                sm.apply(&submit(0, 1, &[order[0], 0.0])),
                GradientOutput::Equivocation
            );
            sm.apply(&submit(0, 2, &[2.0, 2.0]));
            let GradientOutput::Closed(s) =
                sm.apply(&GradientCommand::CloseRound { round: Round(0) })
            else {
                panic!("closes");
            };
            assert_eq!(s.included, vec![NodeId(2)]);
            assert_eq!(s.equivocators, vec![NodeId(1)]);
            assert_eq!(sm.params(), &[-1.0, -1.0]);
        }
    }

    #[test]
    fn a_refused_rule_closes_the_round_without_an_update() {
        let mut sm = GradientConsensus::new(config(Aggregator::Krum, 1, 5));
        sm.apply(&submit(0, 1, &[1.0, 1.0]));
        let GradientOutput::Closed(s) = sm.apply(&GradientCommand::CloseRound { round: Round(0) })
        else {
            panic!("closes");
        };
        assert_eq!(
            s.refused.as_deref(),
            Some("krum cannot tolerate f = 1 Byzantine gradients out of n = 1: it needs n >= 2f+3")
        );
        assert!(s.included.is_empty());
        assert_eq!(sm.params(), &[0.0, 0.0]);
        assert_eq!(sm.round(), Round(1));
    }

    #[test]
    fn synchronous_rounds_count_missing_workers_as_byzantine() {
        let mut c = config(Aggregator::Krum, 1, 5);
        c.synchronous = true;
        let mut sm = GradientConsensus::new(c);
        // Worker 5 is silent: 4 gradients, f = 0 among them (Krum: 4 >= 3).
        for w in 1..=4 {
            sm.apply(&submit(0, w, &[w as f32, 0.0]));
        }
        let GradientOutput::Closed(s) = sm.apply(&GradientCommand::CloseRound { round: Round(0) })
        else {
            panic!("closes");
        };
        assert_eq!((s.f, s.refused.clone(), s.included.len()), (0, None, 4));
        // Asynchronous: the missing worker may be honest, f stays 1, refused.
        let mut sm = GradientConsensus::new(config(Aggregator::Krum, 1, 5));
        for w in 1..=4 {
            sm.apply(&submit(0, w, &[w as f32, 0.0]));
        }
        let GradientOutput::Closed(s) = sm.apply(&GradientCommand::CloseRound { round: Round(0) })
        else {
            panic!("closes");
        };
        assert_eq!(s.f, 1);
        assert!(s.refused.is_some());
    }

    #[test]
    fn a_worker_silent_for_k_rounds_is_evicted_by_the_close() {
        let mut c = config(Aggregator::Mean, 0, 3);
        c.evict_after = Some(2);
        let mut sm = GradientConsensus::new(c);
        let close = |sm: &mut GradientConsensus, r| match sm
            .apply(&GradientCommand::CloseRound { round: Round(r) })
        {
            GradientOutput::Closed(s) => s,
            other => panic!("closes: {other:?}"),
        };
        // Worker 3 is silent; worker 2 only in round 0.
        sm.apply(&submit(0, 1, &[1.0, 0.0]));
        assert!(!sm.all_submitted());
        assert!(close(&mut sm, 0).evicted.is_empty());
        sm.apply(&submit(1, 1, &[1.0, 0.0]));
        sm.apply(&submit(1, 2, &[1.0, 0.0]));
        assert!(!sm.all_submitted(), "worker 3 is still waited for");
        assert_eq!(close(&mut sm, 1).evicted, vec![NodeId(3)]);
        assert_eq!(sm.evicted().collect::<Vec<_>>(), vec![NodeId(3)]);
        assert_eq!(
            sm.apply(&submit(2, 3, &[0.0, 0.0])),
            GradientOutput::Refused(SubmitRefusal::Evicted(NodeId(3)))
        );
        sm.apply(&submit(2, 1, &[1.0, 0.0]));
        assert!(!sm.all_submitted());
        sm.apply(&submit(2, 2, &[1.0, 0.0]));
        assert!(sm.all_submitted(), "the barrier skips the evicted worker");
        assert!(close(&mut sm, 2).evicted.is_empty());
        // Without `evict_after`, silence never evicts.
        let mut sm = GradientConsensus::new(config(Aggregator::Mean, 0, 2));
        for r in 0..5 {
            sm.apply(&submit(r, 1, &[1.0, 0.0]));
            assert!(close(&mut sm, r).evicted.is_empty());
        }
        assert!(!sm.all_submitted());
    }

    #[test]
    fn snapshot_restores_bit_identical_state() {
        let probe = ReplicaProbe::new();
        let mut a = GradientConsensus::new(config(
            Aggregator::CenteredClipping {
                tau: 1.0,
                iterations: 2,
            },
            1,
            3,
        ))
        .with_probe(probe.clone());
        for r in 0..3 {
            for w in 1..=3 {
                a.apply(&submit(r, w, &[w as f32 * 0.3, -(r as f32)]));
            }
            a.apply(&GradientCommand::CloseRound { round: Round(r) });
        }
        a.apply(&submit(3, 1, &[0.1, 0.1]));
        let mut b =
            GradientConsensus::new(config(Aggregator::Mean, 0, 1)).with_probe(probe.clone());
        b.restore(&a.snapshot()).expect("decodes");
        assert_eq!(b.state, a.state);
        for w in 2..=3 {
            let cmd = submit(3, w, &[0.5, 0.5]);
            assert_eq!(a.apply(&cmd), b.apply(&cmd));
        }
        let close = GradientCommand::CloseRound { round: Round(3) };
        assert_eq!(a.apply(&close), b.apply(&close));
        assert_eq!(a.version().hash, b.version().hash);
        assert!(probe.disagreements().is_empty());
        assert_eq!(probe.at_round(Round(3)).len(), 2);
        assert!(b.restore(b"garbage").is_err());
    }

    #[test]
    fn invalid_configurations_are_refused() {
        assert_eq!(
            config(Aggregator::Mean, 0, 0).validate(),
            Err(ConfigError::NoWorkers)
        );
        assert!(matches!(
            config(Aggregator::Krum, 1, 4).validate(),
            Err(ConfigError::Aggregator(_))
        ));
        let mut c = config(Aggregator::Mean, 0, 3);
        c.learning_rate = f32::NAN;
        assert!(c.validate().is_err());
    }
}
