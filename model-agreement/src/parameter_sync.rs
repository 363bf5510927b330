//! **ParameterSync**: a parameter server whose parameters live in a
//! replicated log, with three consistency modes (Ho et al. 2013).
//!
//! Workers *pull* versioned parameters, compute, and *push* a gradient;
//! every push is a command of the consensus log, applied by every replica
//! in the same order (`w ← w − lr · g`, in f64, rounded once), so replicas
//! hold bit-identical parameters. A worker's *clock* is the number of its
//! pushes applied; a version carries the [`VersionVector`] of those clocks
//! and the parameters' hash.
//!
//! | mode | a worker at clock c computes when | staleness of what it reads |
//! |---|---|---|
//! | [`Consistency::Bsp`] | every worker reached c (a barrier per clock) | 0 |
//! | [`Consistency::Ssp`] `(s)` | the slowest worker reached c − s | ≤ s |
//! | [`Consistency::Asp`] | always | unbounded |
//!
//! Staleness of a read at clock c is `c − min(clocks)`: how many clocks the
//! slowest worker's updates lag behind the reader.
//!
//! The bound is enforced by the replicated state, not by the workers'
//! goodwill: a push at clock c is refused when `c > min + s`, and a push
//! must carry the worker's next clock, so a Byzantine worker that ignores
//! the wait cannot run ahead or replay.
//!
//! # Robust aggregation in every mode
//!
//! The server keeps each worker's *latest* gradient. A push replaces the
//! pusher's, then steps the parameters by the configured rule
//! ([`SyncConfig::aggregator`], tolerating [`SyncConfig::f`]) over the
//! latest gradients of the active workers: `w ← w − lr · rule(latest)`.
//! With the mean rule and fresh gradients this moves as far per clock as
//! applying each push alone; with a robust rule, f Byzantine workers'
//! gradients are filtered in SSP and ASP as in synchronous rounds. While
//! fewer gradients are known than the rule needs for f, a push advances
//! the worker's clock without a step ([`SyncOutput::Buffered`]). A gradient
//! stays in the set at most s clocks stale (SSP), unbounded in ASP.
//!
//! # Eviction of a silent worker
//!
//! A silent worker stalls BSP and SSP: the slowest clock stops. Any replica
//! that sees a worker stuck behind the others at the same clock for
//! [`SyncConfig::evict_after`] (virtual) proposes [`SyncCommand::Evict`]
//! with that clock; the log orders it, so every replica agrees. It is
//! applied only if the worker is still at that clock (it did not push in
//! between) and behind the fastest; the worker is then ignored by the
//! slowest clock and by the aggregation, and its later pushes are refused.
//! Eviction is final.

use crate::aggregation::Aggregator;
use crate::gradient_consensus::{parameter_hash, ConfigError, ModelVersion, ReplicaProbe, Round};
use crate::replica::ParametersApplied;
use crate::version_vector::VersionVector;
use actix::Recipient;
use consensus_actors::kv::{SnapshotDecodeError, StateMachine};
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A consistency mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// Bulk synchronous: staleness 0.
    Bsp,
    /// Stale synchronous with bound `s`.
    Ssp(u64),
    /// Asynchronous: no bound.
    Asp,
}

impl Consistency {
    /// The staleness bound (`None`: unbounded).
    pub fn bound(self) -> Option<u64> {
        match self {
            Self::Bsp => Some(0),
            Self::Ssp(s) => Some(s),
            Self::Asp => None,
        }
    }

    /// Whether a worker at `clock` may compute when the slowest is at `min`.
    pub fn allows(self, clock: u64, min: u64) -> bool {
        self.bound().is_none_or(|s| clock <= min.saturating_add(s))
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bsp => f.write_str("bsp"),
            Self::Ssp(s) => write!(f, "ssp:{s}"),
            Self::Asp => f.write_str("asp"),
        }
    }
}

/// A consistency mode that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown consistency `{0}` (expected bsp, ssp:S with S a number, or asp)")]
pub struct UnknownConsistency(pub String);

impl FromStr for Consistency {
    type Err = UnknownConsistency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bsp" => Ok(Self::Bsp),
            "asp" => Ok(Self::Asp),
            _ => s
                .strip_prefix("ssp:")
                .and_then(|n| n.parse().ok())
                .map(Self::Ssp)
                .ok_or_else(|| UnknownConsistency(s.to_string())),
        }
    }
}

/// What the parameter group agrees on before it starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncConfig {
    /// Initial parameters.
    pub initial: Vec<f32>,
    /// Step size.
    pub learning_rate: f32,
    /// The workers.
    pub workers: Vec<NodeId>,
    /// The consistency mode.
    pub consistency: Consistency,
    /// The rule every push aggregates the latest gradients with.
    pub aggregator: Aggregator,
    /// Byzantine workers the rule must tolerate.
    pub f: usize,
    /// A worker stuck behind the others this long (virtual) is evicted
    /// (`None`: never).
    pub evict_after: Option<Duration>,
}

impl SyncConfig {
    /// Mean, f = 0, no eviction: every push applied as it comes.
    pub fn plain(
        initial: Vec<f32>,
        learning_rate: f32,
        workers: Vec<NodeId>,
        consistency: Consistency,
    ) -> Self {
        Self {
            initial,
            learning_rate,
            workers,
            consistency,
            aggregator: Aggregator::Mean,
            f: 0,
            evict_after: None,
        }
    }

    /// Checks what the state machine relies on: workers listed, a finite
    /// positive learning rate, finite initial parameters, and the rule's
    /// parameters and bound on f for the full set of workers.
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

/// A command of the parameter log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SyncCommand {
    /// A worker's gradient for its clock `clock`.
    Push {
        /// The worker.
        worker: NodeId,
        /// Its clock: the number of its pushes applied before this one.
        clock: u64,
        /// The gradient.
        gradient: Vec<f32>,
    },
    /// Evicts a worker seen stuck at `clock` (see the [module
    /// documentation](self)).
    Evict {
        /// The worker.
        worker: NodeId,
        /// The clock it was stuck at.
        clock: u64,
    },
}

/// Why a push was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PushRefusal {
    /// Not a member.
    #[error("worker {0} is not registered")]
    UnknownWorker(NodeId),
    /// Not the worker's next clock (a replay, or a gap).
    #[error("push for clock {clock}, the worker's next clock is {expected}")]
    OutOfOrder {
        /// The clock pushed.
        clock: u64,
        /// The worker's next clock.
        expected: u64,
    },
    /// The consistency mode forbids it: the worker is too far ahead.
    #[error("clock {clock} is more than {bound} ahead of the slowest worker ({slowest})")]
    TooFarAhead {
        /// The clock pushed.
        clock: u64,
        /// The slowest worker's clock.
        slowest: u64,
        /// The staleness bound.
        bound: u64,
    },
    /// Wrong dimension or non-finite values.
    #[error("malformed gradient")]
    Malformed,
    /// The worker was evicted.
    #[error("worker {0} was evicted")]
    Evicted(NodeId),
    /// An eviction whose evidence no longer holds: the worker moved on, or
    /// is not behind the fastest, or is the last active one.
    #[error("worker {worker} is not stuck at clock {clock} (its clock: {current})")]
    NotStuck {
        /// The worker.
        worker: NodeId,
        /// The clock the eviction named.
        clock: u64,
        /// Its clock.
        current: u64,
    },
}

/// The result of a push.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SyncOutput {
    /// Applied: the new version (parameters stepped by the rule).
    Applied(ModelVersion),
    /// The push counts (the worker's clock advanced) but the rule refused
    /// to aggregate the latest gradients (too few for its bound on f): the
    /// parameters did not change.
    Buffered {
        /// The new version.
        version: ModelVersion,
        /// The rule's refusal.
        refused: String,
    },
    /// The worker was evicted.
    Evicted(NodeId),
    /// Refused.
    Refused(PushRefusal),
}

/// What a pull returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionedParameters {
    /// The version (number, version vector of clocks, hash).
    pub version: ModelVersion,
    /// The parameters.
    pub params: Vec<f32>,
    /// The slowest active worker's clock.
    pub slowest: u64,
    /// Evicted workers.
    pub evicted: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SyncState {
    config: SyncConfig,
    params: Vec<f32>,
    version: ModelVersion,
    /// Each worker's latest gradient.
    latest: BTreeMap<NodeId, Vec<f32>>,
    /// The last aggregate (centered clipping's starting point).
    last_aggregate: Option<Vec<f32>>,
    evicted: BTreeSet<NodeId>,
}

/// The ParameterSync state machine. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ParameterSync {
    state: SyncState,
    probe: Option<(ReplicaProbe, usize)>,
    publisher: Option<Recipient<ParametersApplied>>,
}

impl PartialEq for ParameterSync {
    /// The replicated state only (not the observer).
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl ParameterSync {
    /// A replica at version 0.
    pub fn new(config: SyncConfig) -> Self {
        let hash = parameter_hash(&config.initial);
        Self {
            state: SyncState {
                params: config.initial.clone(),
                config,
                version: ModelVersion {
                    number: 0,
                    vector: VersionVector::new(),
                    hash,
                },
                latest: BTreeMap::new(),
                last_aggregate: None,
                evicted: BTreeSet::new(),
            },
            probe: None,
            publisher: None,
        }
    }

    /// Reports every change of the served parameters (applied push,
    /// eviction, restored snapshot) to `publisher`: the replica's
    /// ParameterSync component.
    #[must_use]
    pub fn with_publisher(mut self, publisher: Recipient<ParametersApplied>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    fn publish(&self) {
        if let Some(p) = &self.publisher {
            p.do_send(ParametersApplied(self.pull()));
        }
    }

    /// The active (not evicted) workers, in id order.
    pub fn active(&self) -> impl Iterator<Item = NodeId> + '_ {
        let s = &self.state;
        s.config
            .workers
            .iter()
            .copied()
            .filter(|w| !s.evicted.contains(w))
    }

    /// Reports every applied version to `probe` (its [`Round`] is the
    /// version number).
    #[must_use]
    pub fn with_probe(mut self, probe: ReplicaProbe) -> Self {
        let instance = probe.register();
        self.probe = Some((probe, instance));
        self
    }

    /// The slowest active worker's clock.
    pub fn slowest(&self) -> u64 {
        self.state
            .version
            .vector
            .min_over(self.active())
            .unwrap_or(0)
    }

    /// The fastest worker's clock.
    pub fn fastest(&self) -> u64 {
        self.state
            .config
            .workers
            .iter()
            .map(|w| self.clock(*w))
            .max()
            .unwrap_or(0)
    }

    /// `worker`'s clock.
    pub fn clock(&self, worker: NodeId) -> u64 {
        self.state.version.vector.get(worker)
    }

    /// Whether `worker` may compute its next gradient now.
    pub fn may_compute(&self, worker: NodeId) -> bool {
        self.state
            .config
            .consistency
            .allows(self.clock(worker), self.slowest())
    }

    /// The current versioned parameters.
    pub fn pull(&self) -> VersionedParameters {
        VersionedParameters {
            version: self.state.version.clone(),
            params: self.state.params.clone(),
            slowest: self.slowest(),
            evicted: self.state.evicted.iter().copied().collect(),
        }
    }

    fn handle_push(&mut self, worker: NodeId, clock: u64, gradient: &[f32]) -> SyncOutput {
        if !self.state.config.workers.contains(&worker) {
            return SyncOutput::Refused(PushRefusal::UnknownWorker(worker));
        }
        if self.state.evicted.contains(&worker) {
            return SyncOutput::Refused(PushRefusal::Evicted(worker));
        }
        let expected = self.clock(worker);
        if clock != expected {
            return SyncOutput::Refused(PushRefusal::OutOfOrder { clock, expected });
        }
        let slowest = self.slowest();
        if let Some(bound) = self.state.config.consistency.bound() {
            if clock > slowest + bound {
                return SyncOutput::Refused(PushRefusal::TooFarAhead {
                    clock,
                    slowest,
                    bound,
                });
            }
        }
        let s = &mut self.state;
        if gradient.len() != s.params.len() || !gradient.iter().all(|x| x.is_finite()) {
            return SyncOutput::Refused(PushRefusal::Malformed);
        }
        s.latest.insert(worker, gradient.to_vec());
        // The latest gradient of every active worker, in id order.
        let gradients: Vec<&[f32]> = s
            .latest
            .iter()
            .filter(|(w, _)| !s.evicted.contains(w))
            .map(|(_, g)| g.as_slice())
            .collect();
        let result =
            s.config
                .aggregator
                .aggregate_from(&gradients, s.config.f, s.last_aggregate.as_deref());
        let refused = match result {
            Ok(aggregate) => {
                let lr = f64::from(s.config.learning_rate);
                for (p, &a) in s.params.iter_mut().zip(&aggregate) {
                    *p = (f64::from(*p) - lr * f64::from(a)) as f32;
                }
                s.last_aggregate = Some(aggregate);
                None
            }
            Err(e) => Some(e.to_string()),
        };
        s.version.vector.increment(worker);
        s.version.number += 1;
        s.version.hash = parameter_hash(&s.params);
        debug_assert_eq!(s.version.vector.total(), s.version.number);
        if let Some((probe, instance)) = &self.probe {
            probe.record(*instance, Round(s.version.number), &s.params);
        }
        let version = s.version.clone();
        self.publish();
        match refused {
            None => SyncOutput::Applied(version),
            Some(refused) => SyncOutput::Buffered { version, refused },
        }
    }

    fn handle_evict(&mut self, worker: NodeId, clock: u64) -> SyncOutput {
        if !self.state.config.workers.contains(&worker) {
            return SyncOutput::Refused(PushRefusal::UnknownWorker(worker));
        }
        if self.state.evicted.contains(&worker) {
            return SyncOutput::Refused(PushRefusal::Evicted(worker));
        }
        let current = self.clock(worker);
        if current != clock || current >= self.fastest() || self.active().count() <= 1 {
            return SyncOutput::Refused(PushRefusal::NotStuck {
                worker,
                clock,
                current,
            });
        }
        tracing::info!(%worker, clock, "evicting a silent worker");
        self.state.evicted.insert(worker);
        debug_assert!(self.active().count() >= 1);
        self.publish();
        SyncOutput::Evicted(worker)
    }
}

impl StateMachine for ParameterSync {
    type Command = SyncCommand;
    type Output = SyncOutput;

    fn apply(&mut self, command: &SyncCommand) -> SyncOutput {
        match command {
            SyncCommand::Push {
                worker,
                clock,
                gradient,
            } => self.handle_push(*worker, *clock, gradient),
            SyncCommand::Evict { worker, clock } => self.handle_evict(*worker, *clock),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        rmp_serde::to_vec(&self.state).expect("the state serializes: plain data")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotDecodeError> {
        self.state =
            rmp_serde::from_slice(snapshot).map_err(|e| SnapshotDecodeError(e.to_string()))?;
        self.publish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(consistency: Consistency) -> ParameterSync {
        ParameterSync::new(SyncConfig::plain(
            vec![0.0],
            1.0,
            vec![NodeId(1), NodeId(2)],
            consistency,
        ))
    }

    fn push(worker: u64, clock: u64) -> SyncCommand {
        SyncCommand::Push {
            worker: NodeId(worker),
            clock,
            gradient: vec![1.0],
        }
    }

    #[test]
    fn the_log_enforces_the_staleness_bound() {
        let mut p = sm(Consistency::Ssp(1));
        assert!(matches!(p.apply(&push(1, 0)), SyncOutput::Applied(_)));
        assert!(matches!(p.apply(&push(1, 1)), SyncOutput::Applied(_)));
        // Clock 2 while worker 2 is at 0: more than 1 ahead.
        assert_eq!(
            p.apply(&push(1, 2)),
            SyncOutput::Refused(PushRefusal::TooFarAhead {
                clock: 2,
                slowest: 0,
                bound: 1
            })
        );
        assert!(!p.may_compute(NodeId(1)));
        assert!(p.may_compute(NodeId(2)));
        assert_eq!(
            p.apply(&push(2, 1)),
            SyncOutput::Refused(PushRefusal::OutOfOrder {
                clock: 1,
                expected: 0
            })
        );
        let SyncOutput::Applied(v) = p.apply(&push(2, 0)) else {
            panic!("applied");
        };
        assert_eq!(
            (v.number, v.vector.get(NodeId(1)), v.vector.get(NodeId(2))),
            (3, 2, 1)
        );
        assert!(p.may_compute(NodeId(1)));
        assert_eq!(p.pull().params, vec![-3.0]);
        assert_eq!(
            p.apply(&push(1, 1)),
            SyncOutput::Refused(PushRefusal::OutOfOrder {
                clock: 1,
                expected: 2
            })
        );
        assert_eq!(
            p.apply(&push(9, 0)),
            SyncOutput::Refused(PushRefusal::UnknownWorker(NodeId(9)))
        );
        // BSP: a barrier per clock. ASP: anything in order.
        let mut b = sm(Consistency::Bsp);
        b.apply(&push(1, 0));
        assert!(matches!(
            b.apply(&push(1, 1)),
            SyncOutput::Refused(PushRefusal::TooFarAhead { .. })
        ));
        let mut a = sm(Consistency::Asp);
        for c in 0..10 {
            assert!(matches!(a.apply(&push(1, c)), SyncOutput::Applied(_)));
        }
        let mut r = sm(Consistency::Asp);
        r.restore(&a.snapshot()).expect("decodes");
        assert_eq!(r, a);
    }

    #[test]
    fn every_push_aggregates_the_latest_gradients_with_the_rule() {
        let mut c = SyncConfig::plain(
            vec![0.0],
            1.0,
            (1..=3).map(NodeId).collect(),
            Consistency::Asp,
        );
        c.aggregator = Aggregator::Median;
        c.f = 1;
        let mut p = ParameterSync::new(c);
        let push = |w, clock, g: f32| SyncCommand::Push {
            worker: NodeId(w),
            clock,
            gradient: vec![g],
        };
        // Median tolerates f = 1 from 3 gradients on: buffered before.
        assert!(matches!(
            p.apply(&push(1, 0, 1.0)),
            SyncOutput::Buffered { .. }
        ));
        assert!(matches!(
            p.apply(&push(2, 0, 2.0)),
            SyncOutput::Buffered { .. }
        ));
        assert_eq!(p.pull().params, vec![0.0]);
        assert_eq!(p.clock(NodeId(2)), 1, "a buffered push advances the clock");
        // The Byzantine worker's huge gradient is the median's outlier.
        assert!(matches!(
            p.apply(&push(3, 0, -1000.0)),
            SyncOutput::Applied(_)
        ));
        assert_eq!(p.pull().params, vec![-1.0]);
        // Worker 1's new gradient replaces its old one: median(3, 2, -1000).
        p.apply(&push(1, 1, 3.0));
        assert_eq!(p.pull().params, vec![-3.0]);
    }

    #[test]
    fn a_silent_worker_is_evicted_by_a_log_command_and_stops_blocking() {
        let mut p = sm(Consistency::Bsp);
        p.apply(&push(1, 0));
        assert!(!p.may_compute(NodeId(1)), "the barrier waits for worker 2");
        let evict = |w, clock| SyncCommand::Evict {
            worker: NodeId(w),
            clock,
        };
        // Evidence that does not hold is refused: a wrong clock, the fastest.
        for (w, c) in [(2, 1), (1, 1)] {
            assert!(matches!(
                p.apply(&evict(w, c)),
                SyncOutput::Refused(PushRefusal::NotStuck { .. })
            ));
        }
        assert_eq!(p.apply(&evict(2, 0)), SyncOutput::Evicted(NodeId(2)));
        assert_eq!(p.slowest(), 1, "the evicted worker no longer counts");
        assert!(p.may_compute(NodeId(1)));
        assert!(matches!(p.apply(&push(1, 1)), SyncOutput::Applied(_)));
        assert_eq!(
            p.apply(&push(2, 0)),
            SyncOutput::Refused(PushRefusal::Evicted(NodeId(2)))
        );
        assert_eq!(
            p.apply(&evict(2, 0)),
            SyncOutput::Refused(PushRefusal::Evicted(NodeId(2)))
        );
        // The last active worker is never evicted.
        assert!(matches!(
            p.apply(&evict(1, 2)),
            SyncOutput::Refused(PushRefusal::NotStuck { .. })
        ));
        assert_eq!(p.pull().evicted, vec![NodeId(2)]);
        let mut r = sm(Consistency::Bsp);
        r.restore(&p.snapshot()).expect("decodes");
        assert_eq!(r, p);
    }

    #[test]
    fn consistency_parses() {
        assert_eq!("bsp".parse(), Ok(Consistency::Bsp));
        assert_eq!("ssp:3".parse(), Ok(Consistency::Ssp(3)));
        assert_eq!("asp".parse(), Ok(Consistency::Asp));
        assert!("ssp:x".parse::<Consistency>().is_err());
        assert_eq!(Consistency::Ssp(3).to_string(), "ssp:3");
    }
}
