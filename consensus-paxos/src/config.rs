//! The settings of a Paxos node: which protocol (single-decree per slot or
//! Multi-Paxos), timers, the window of slots in flight, batching and the
//! quorums (flexible: phase 1 and phase 2 quorums need only intersect).

use consensus_actors::config::ConsensusConfig;
use serde::{Deserialize, Serialize};

/// Which of the two protocols a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// `paxos`: any node proposes; every slot goes through its own phase 1
    /// and phase 2.
    Basic,
    /// `multi-paxos`: a stable leader elected by ballots runs phase 1 once
    /// for every later slot, then only phase 2.
    Multi,
}

/// Why a [`PaxosConfig`] cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaxosConfigError {
    /// Phase 1 and phase 2 quorums must intersect: `q1 + q2 > n`, each in
    /// `1..=n`.
    #[error("quorums q1 = {q1}, q2 = {q2} of {n} acceptors do not intersect (need q1 + q2 > n, 1 <= q <= n)")]
    Quorums {
        /// Phase-1 quorum.
        q1: usize,
        /// Phase-2 quorum.
        q2: usize,
        /// Acceptors.
        n: usize,
    },
    /// A setting is zero where it must not be.
    #[error("{0} must be positive")]
    Zero(&'static str),
}

/// The settings of a Paxos node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaxosConfig {
    /// Basic Paxos or Multi-Paxos.
    pub mode: Mode,
    /// Number of acceptors (the cluster size).
    pub nodes: usize,
    /// Phase-1 quorum (promises needed).
    pub q1: usize,
    /// Phase-2 quorum (acceptances that choose a value).
    pub q2: usize,
    /// Ballot leader election: one heartbeat round every this many ms.
    pub heartbeat_ms: u64,
    /// A phase that got no quorum in this time is retried (resent, or
    /// restarted with a higher ballot).
    pub retry_ms: u64,
    /// Upper bound of the random back-off after a proposer was pre-empted
    /// (duels), in ms.
    pub backoff_max_ms: u64,
    /// Multi-Paxos: most slots in flight (proposed, not yet chosen).
    pub window: usize,
    /// Multi-Paxos: a thrifty leader sends each Accept at once only to a
    /// phase-2 quorum (itself and the `q2 − 1` quickest others) and to the
    /// other acceptors in one [`LazyAccepts`](crate::messages::LazyAccepts)
    /// per tick (see
    /// [`proposer::core`](crate::proposer::core#thrifty-phase-2)). On by
    /// default.
    #[serde(default = "default_thrifty")]
    pub thrifty: bool,
    /// Most client commands batched in one slot.
    pub max_batch: usize,
    /// Most client commands queued at a proposer (beyond: refused).
    pub max_pending: usize,
    /// A learner asks a peer for decisions it may lack every this many ms.
    pub catch_up_ms: u64,
    /// Log compaction: a learner snapshots its state machine once this
    /// many commands were delivered since its last snapshot (a slot counts
    /// its batch's commands, at least one, as Raft's threshold counts
    /// entries), and the slots up to the snapshot are dropped by it and its
    /// acceptor.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: u64,
}

fn default_thrifty() -> bool {
    true
}

fn default_snapshot_interval() -> u64 {
    ConsensusConfig::default().snapshot_threshold
}

impl PaxosConfig {
    /// Settings for `nodes` acceptors in `mode`, majority quorums.
    pub fn new(mode: Mode, nodes: usize) -> Self {
        let majority = nodes / 2 + 1;
        Self {
            mode,
            nodes,
            q1: majority,
            q2: majority,
            heartbeat_ms: 50,
            retry_ms: 150,
            backoff_max_ms: 100,
            window: 64,
            thrifty: default_thrifty(),
            max_batch: 512,
            max_pending: 16_384,
            catch_up_ms: 200,
            snapshot_interval: default_snapshot_interval(),
        }
    }

    /// Settings from the engine's configuration (heartbeat interval; the
    /// retry time is the minimum election timeout; a snapshot every
    /// `snapshot_threshold` slots).
    pub fn from_consensus(mode: Mode, config: &ConsensusConfig) -> Self {
        Self {
            heartbeat_ms: config.heartbeat_interval_ms,
            retry_ms: config.election_timeout_ms.0,
            snapshot_interval: config.snapshot_threshold,
            ..Self::new(mode, config.cluster_size)
        }
    }

    /// Flexible quorums: `q1` promises, `q2` acceptances (checked by
    /// [`validate`](Self::validate)).
    #[must_use]
    pub fn with_quorums(mut self, q1: usize, q2: usize) -> Self {
        self.q1 = q1;
        self.q2 = q2;
        self
    }

    /// Checks the quorums intersect and no setting is zero.
    pub fn validate(&self) -> Result<(), PaxosConfigError> {
        let n = self.nodes;
        let ok = |q: usize| (1..=n).contains(&q);
        if !ok(self.q1) || !ok(self.q2) || self.q1 + self.q2 <= n {
            return Err(PaxosConfigError::Quorums {
                q1: self.q1,
                q2: self.q2,
                n,
            });
        }
        for (v, name) in [
            (self.heartbeat_ms, "heartbeat_ms"),
            (self.retry_ms, "retry_ms"),
            (self.backoff_max_ms, "backoff_max_ms"),
            (self.catch_up_ms, "catch_up_ms"),
            (self.snapshot_interval, "snapshot_interval"),
        ] {
            if v == 0 {
                return Err(PaxosConfigError::Zero(name));
            }
        }
        for (v, name) in [
            (self.window, "window"),
            (self.max_batch, "max_batch"),
            (self.max_pending, "max_pending"),
        ] {
            if v == 0 {
                return Err(PaxosConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// A majority of the acceptors (what ballot leader election counts).
    pub fn majority(&self) -> usize {
        self.nodes / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majorities_by_default_and_flexible_quorums_must_intersect() {
        let c = PaxosConfig::new(Mode::Multi, 5);
        assert_eq!((c.q1, c.q2), (3, 3));
        c.validate().unwrap();
        // Flexible: a large phase-1 quorum allows a small phase-2 one.
        c.clone().with_quorums(4, 2).validate().unwrap();
        assert_eq!(
            c.clone().with_quorums(3, 2).validate(),
            Err(PaxosConfigError::Quorums { q1: 3, q2: 2, n: 5 })
        );
        assert!(c.clone().with_quorums(6, 1).validate().is_err());
        assert!(c.clone().with_quorums(0, 5).validate().is_err());
        let mut z = c;
        z.window = 0;
        assert_eq!(z.validate(), Err(PaxosConfigError::Zero("window")));
    }
}
