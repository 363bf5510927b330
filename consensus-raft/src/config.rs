//! Raft settings: the shared [`ConsensusConfig`] plus the knobs only Raft has
//! (pre-vote, check-quorum, pipelining depth, snapshot chunk size, ...).

use consensus_actors::config::{ConfigError, ConsensusConfig};
use serde::{Deserialize, Serialize};

/// Everything a Raft node needs to know about timing and limits.
///
/// Built from a [`ConsensusConfig`] with [`RaftConfig::from_consensus`]; the
/// Raft-only fields take the defaults documented on each field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftConfig {
    /// Election timeout range in milliseconds; every timeout is drawn
    /// uniformly from `min..=max`.
    pub election_timeout_ms: (u64, u64),
    /// Interval between leader heartbeats in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Upper bound on the entries carried by one AppendEntries.
    pub max_log_entries_per_append: usize,
    /// Entries applied since the last snapshot that trigger a new snapshot.
    pub snapshot_threshold: u64,
    /// Pre-vote (thesis §9.6): a candidate first asks whether it could win
    /// before bumping its term. Default: on.
    pub pre_vote: bool,
    /// Check-quorum (thesis §6.2): a leader that has not heard from a quorum
    /// within an election timeout steps down; a follower that heard from a
    /// leader within the minimum election timeout ignores vote requests
    /// (thesis §4.2.3). Default: on.
    pub check_quorum: bool,
    /// AppendEntries requests in flight per follower (pipelining depth).
    /// Default: 8.
    pub max_inflight_appends: usize,
    /// Coalesce small appends (Nagle's algorithm): while a follower has an
    /// AppendEntries unanswered, new entries that would not fill a whole
    /// request (`max_log_entries_per_append`) wait for the answer and then
    /// leave together, one request instead of one per proposal. A follower
    /// with nothing in flight gets a new entry at once, so an idle cluster
    /// commits a single proposal with no added delay; full requests still
    /// pipeline up to `max_inflight_appends` deep. Off: every proposal batch
    /// goes out at once while the window has room. Default: on.
    #[serde(default = "default_coalesce_appends")]
    pub coalesce_appends: bool,
    /// Bytes of snapshot data per InstallSnapshot chunk. Default: 64 KiB.
    pub snapshot_chunk_bytes: usize,
    /// Largest snapshot a follower accepts from a leader. Default: 1 GiB.
    pub max_snapshot_bytes: u64,
    /// Entries kept in the log below a new snapshot, so followers slightly
    /// behind catch up from the log rather than by InstallSnapshot.
    /// Default: `max_log_entries_per_append * max_inflight_appends`.
    pub snapshot_keep_entries: u64,
    /// Proposals a leader holds waiting for their results before it answers
    /// `Busy`. Default: 65,536.
    pub max_pending_proposals: usize,
    /// A learner counts as caught up once it is at most this many entries
    /// behind the leader's last entry. Default: `max_log_entries_per_append`.
    pub learner_max_lag: u64,
    /// How long a learner may take to catch up before the change is
    /// abandoned, in milliseconds. Default: 20 maximum election timeouts.
    pub learner_catchup_timeout_ms: u64,
}

fn default_coalesce_appends() -> bool {
    true
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self::from_consensus(&ConsensusConfig::default())
    }
}

impl RaftConfig {
    /// The Raft settings of `cfg` with the Raft-only defaults.
    pub fn from_consensus(cfg: &ConsensusConfig) -> Self {
        Self {
            election_timeout_ms: cfg.election_timeout_ms,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            max_log_entries_per_append: cfg.max_log_entries_per_append,
            snapshot_threshold: cfg.snapshot_threshold,
            pre_vote: true,
            check_quorum: true,
            max_inflight_appends: 8,
            coalesce_appends: true,
            snapshot_chunk_bytes: 64 * 1024,
            max_snapshot_bytes: 1 << 30,
            snapshot_keep_entries: cfg.max_log_entries_per_append as u64 * 8,
            max_pending_proposals: 65_536,
            learner_max_lag: cfg.max_log_entries_per_append as u64,
            learner_catchup_timeout_ms: cfg.election_timeout_ms.1.saturating_mul(20),
        }
    }

    /// Checks every setting (the shared ones through
    /// [`ConsensusConfig::validate`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let shared = ConsensusConfig {
            election_timeout_ms: self.election_timeout_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            max_log_entries_per_append: self.max_log_entries_per_append,
            snapshot_threshold: self.snapshot_threshold,
            ..ConsensusConfig::default()
        };
        shared.validate()?;
        if self.max_inflight_appends == 0
            || self.snapshot_chunk_bytes == 0
            || self.max_snapshot_bytes == 0
            || self.max_pending_proposals == 0
        {
            return Err(ConfigError::Parse(
                "max_inflight_appends, snapshot_chunk_bytes, max_snapshot_bytes and max_pending_proposals must be at least 1"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// The minimum election timeout in microseconds.
    pub fn election_timeout_min_us(&self) -> u64 {
        self.election_timeout_ms.0 * 1000
    }

    /// The maximum election timeout in microseconds.
    pub fn election_timeout_max_us(&self) -> u64 {
        self.election_timeout_ms.1 * 1000
    }

    /// The heartbeat interval in microseconds.
    pub fn heartbeat_interval_us(&self) -> u64 {
        self.heartbeat_interval_ms * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_shared_config() {
        let c = RaftConfig::default();
        assert_eq!(c.election_timeout_ms, (150, 300));
        assert_eq!(c.heartbeat_interval_ms, 50);
        assert_eq!(c.max_log_entries_per_append, 100);
        assert!(c.pre_vote && c.check_quorum);
        assert_eq!(c.learner_max_lag, 100);
        assert_eq!(c.election_timeout_min_us(), 150_000);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn impossible_settings_are_refused() {
        let c = RaftConfig {
            max_inflight_appends: 0,
            ..RaftConfig::default()
        };
        assert!(c.validate().is_err());
        let c = RaftConfig {
            heartbeat_interval_ms: 400,
            ..RaftConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadHeartbeat { .. })
        ));
    }
}
