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
//! the wait cannot run ahead or replay. (A silent Byzantine worker stalls
//! BSP and SSP: the slowest clock stops; evicting it is not done here.)

use crate::gradient_consensus::{parameter_hash, ModelVersion, ReplicaProbe, Round};
use crate::version_vector::VersionVector;
use consensus_actors::kv::{SnapshotDecodeError, StateMachine};
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

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
}

/// The result of a push.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SyncOutput {
    /// Applied: the new version.
    Applied(ModelVersion),
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
    /// The slowest worker's clock.
    pub slowest: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SyncState {
    config: SyncConfig,
    params: Vec<f32>,
    version: ModelVersion,
}

/// The ParameterSync state machine. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ParameterSync {
    state: SyncState,
    probe: Option<(ReplicaProbe, usize)>,
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
            },
            probe: None,
        }
    }

    /// Reports every applied version to `probe` (its [`Round`] is the
    /// version number).
    #[must_use]
    pub fn with_probe(mut self, probe: ReplicaProbe) -> Self {
        let instance = probe.register();
        self.probe = Some((probe, instance));
        self
    }

    /// The slowest worker's clock.
    pub fn slowest(&self) -> u64 {
        let s = &self.state;
        s.version
            .vector
            .min_over(s.config.workers.iter().copied())
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
        }
    }

    fn handle_push(&mut self, worker: NodeId, clock: u64, gradient: &[f32]) -> SyncOutput {
        if !self.state.config.workers.contains(&worker) {
            return SyncOutput::Refused(PushRefusal::UnknownWorker(worker));
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
        let lr = f64::from(s.config.learning_rate);
        for (p, &g) in s.params.iter_mut().zip(gradient) {
            *p = (f64::from(*p) - lr * f64::from(g)) as f32;
        }
        s.version.vector.increment(worker);
        s.version.number += 1;
        s.version.hash = parameter_hash(&s.params);
        debug_assert_eq!(s.version.vector.total(), s.version.number);
        if let Some((probe, instance)) = &self.probe {
            probe.record(*instance, Round(s.version.number), &s.params);
        }
        SyncOutput::Applied(s.version.clone())
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
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        rmp_serde::to_vec(&self.state).expect("the state serializes: plain data")
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotDecodeError> {
        self.state =
            rmp_serde::from_slice(snapshot).map_err(|e| SnapshotDecodeError(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sm(consistency: Consistency) -> ParameterSync {
        ParameterSync::new(SyncConfig {
            initial: vec![0.0],
            learning_rate: 1.0,
            workers: vec![NodeId(1), NodeId(2)],
            consistency,
        })
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
    fn consistency_parses() {
        assert_eq!("bsp".parse(), Ok(Consistency::Bsp));
        assert_eq!("ssp:3".parse(), Ok(Consistency::Ssp(3)));
        assert_eq!("asp".parse(), Ok(Consistency::Asp));
        assert!("ssp:x".parse::<Consistency>().is_err());
        assert_eq!(Consistency::Ssp(3).to_string(), "ssp:3");
    }
}
