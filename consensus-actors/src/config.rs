//! Cluster configuration shared by every protocol.
//!
//! [`ConsensusConfig`] loads from TOML or JSON (missing fields take the
//! defaults below) and [`ConsensusConfig::validate`] refuses every impossible
//! setting with a typed [`ConfigError`] before any node starts.
//!
//! ```
//! use consensus_actors::config::ConsensusConfig;
//! let cfg = ConsensusConfig::from_toml_str("cluster_size = 3\nheartbeat_interval_ms = 20").unwrap();
//! assert_eq!(cfg.cluster_size, 3);
//! assert_eq!(cfg.election_timeout_ms, (150, 300));
//! cfg.validate().unwrap();
//! ```

use crate::types::ConsensusProtocol;
use serde::{Deserialize, Serialize};

/// Configuration of one consensus cluster. Defaults follow the specification:
/// the default protocol ([`DEFAULT_PROTOCOL`](crate::types::DEFAULT_PROTOCOL)), five nodes, election timeouts drawn from 150..=300 ms, heartbeats
/// every 50 ms, at most 100 entries per AppendEntries, a snapshot every
/// 10,000 entries, no Byzantine tolerance (f = 1 when it is turned on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    /// The protocol the cluster runs.
    pub protocol: ConsensusProtocol,
    /// Number of voting members the cluster starts with.
    pub cluster_size: usize,
    /// Election timeout range in milliseconds, `(min, max)`; each timeout is
    /// drawn uniformly from it.
    pub election_timeout_ms: (u64, u64),
    /// Interval between leader heartbeats in milliseconds; must be below the
    /// minimum election timeout.
    pub heartbeat_interval_ms: u64,
    /// Upper bound on the entries carried by one AppendEntries message.
    pub max_log_entries_per_append: usize,
    /// Number of log entries since the last snapshot that triggers a new one.
    pub snapshot_threshold: u64,
    /// Whether the cluster must tolerate Byzantine (arbitrarily faulty)
    /// replicas; only a protocol whose plug-in says so can (the engine
    /// refuses the others).
    pub byzantine_tolerance: bool,
    /// `f`, the number of Byzantine replicas tolerated when
    /// `byzantine_tolerance` is set; needs `cluster_size >= 3f + 1`.
    pub max_byzantine_nodes: usize,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            protocol: ConsensusProtocol::default(),
            cluster_size: 5,
            election_timeout_ms: (150, 300),
            heartbeat_interval_ms: 50,
            max_log_entries_per_append: 100,
            snapshot_threshold: 10_000,
            byzantine_tolerance: false,
            max_byzantine_nodes: 1,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A cluster needs at least one node.
    #[error("cluster_size must be at least 1, got 0")]
    EmptyCluster,
    /// The cluster is larger than the framework supports.
    #[error("cluster_size {0} is larger than the supported maximum of {max}", max = ConsensusConfig::MAX_CLUSTER_SIZE)]
    ClusterTooLarge(usize),
    /// The election timeout range is empty or starts at zero.
    #[error("election_timeout_ms ({min}, {max}) is not a valid range: need 0 < min <= max")]
    BadElectionTimeout {
        /// Lower bound given.
        min: u64,
        /// Upper bound given.
        max: u64,
    },
    /// Heartbeats must be sent, and more often than followers time out.
    #[error("heartbeat_interval_ms {heartbeat} must be > 0 and below the minimum election timeout {election_min} ms")]
    BadHeartbeat {
        /// Heartbeat interval given.
        heartbeat: u64,
        /// Minimum election timeout given.
        election_min: u64,
    },
    /// AppendEntries must be able to carry at least one entry.
    #[error("max_log_entries_per_append must be at least 1")]
    ZeroBatch,
    /// A snapshot after zero entries would never let the log grow.
    #[error("snapshot_threshold must be at least 1")]
    ZeroSnapshotThreshold,
    /// Byzantine tolerance was asked of a crash-fault-tolerant protocol
    /// (the engine checks this against the protocol's capabilities).
    #[error("byzantine_tolerance is set, but protocol {0} only tolerates crash faults")]
    ByzantineUnsupported(ConsensusProtocol),
    /// Tolerating f Byzantine replicas needs n >= 3f + 1 of them.
    #[error(
        "tolerating f = {f} Byzantine replicas needs at least {needed} nodes (3f + 1), got {n}"
    )]
    TooFewForByzantine {
        /// cluster_size given.
        n: usize,
        /// max_byzantine_nodes given.
        f: usize,
        /// 3f + 1.
        needed: usize,
    },
    /// The text could not be parsed as a configuration.
    #[error("invalid configuration file: {0}")]
    Parse(String),
}

impl ConsensusConfig {
    /// The largest cluster the framework accepts.
    pub const MAX_CLUSTER_SIZE: usize = 1024;

    /// A default configuration for `protocol` with `cluster_size` nodes.
    pub fn for_protocol(protocol: ConsensusProtocol, cluster_size: usize) -> Self {
        Self {
            protocol,
            cluster_size,
            ..Self::default()
        }
    }

    /// The same configuration with Byzantine tolerance on, tolerating as
    /// many Byzantine replicas as the cluster allows (`f = (n - 1) / 3`).
    #[must_use]
    pub fn byzantine(self) -> Self {
        Self {
            byzantine_tolerance: true,
            max_byzantine_nodes: self.cluster_size.saturating_sub(1) / 3,
            ..self
        }
    }

    /// Parses a TOML document; absent fields take their defaults. The result
    /// is not validated: call [`validate`](Self::validate).
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        toml::from_str(s).map_err(|e| ConfigError::Parse(e.to_string().trim().to_string()))
    }

    /// Parses a JSON document; absent fields take their defaults. The result
    /// is not validated: call [`validate`](Self::validate).
    pub fn from_json_str(s: &str) -> Result<Self, ConfigError> {
        serde_json::from_str(s).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Checks every setting; returns the first impossible one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_size == 0 {
            return Err(ConfigError::EmptyCluster);
        }
        if self.cluster_size > Self::MAX_CLUSTER_SIZE {
            return Err(ConfigError::ClusterTooLarge(self.cluster_size));
        }
        let (min, max) = self.election_timeout_ms;
        if min == 0 || min > max {
            return Err(ConfigError::BadElectionTimeout { min, max });
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= min {
            return Err(ConfigError::BadHeartbeat {
                heartbeat: self.heartbeat_interval_ms,
                election_min: min,
            });
        }
        if self.max_log_entries_per_append == 0 {
            return Err(ConfigError::ZeroBatch);
        }
        if self.snapshot_threshold == 0 {
            return Err(ConfigError::ZeroSnapshotThreshold);
        }
        if self.byzantine_tolerance {
            let needed = 3 * self.max_byzantine_nodes + 1;
            if self.cluster_size < needed {
                return Err(ConfigError::TooFewForByzantine {
                    n: self.cluster_size,
                    f: self.max_byzantine_nodes,
                    needed,
                });
            }
        }
        Ok(())
    }

    /// Votes needed for a majority of the configured cluster (`n / 2 + 1`).
    pub fn majority(&self) -> usize {
        self.cluster_size / 2 + 1
    }

    /// The Byzantine quorum `⌈(n + f + 1) / 2⌉`: `2f + 1` when
    /// `n = 3f + 1`; any two such quorums share `f + 1` nodes for any
    /// `n >= 3f + 1`, where a fixed `2f + 1` would not.
    pub fn byzantine_quorum(&self) -> usize {
        (self.cluster_size + self.max_byzantine_nodes + 2) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec_and_validate() {
        let c = ConsensusConfig::default();
        assert_eq!(c.protocol, crate::types::DEFAULT_PROTOCOL);
        assert_eq!(c.cluster_size, 5);
        assert_eq!(c.election_timeout_ms, (150, 300));
        assert_eq!(c.heartbeat_interval_ms, 50);
        assert_eq!(c.max_log_entries_per_append, 100);
        assert_eq!(c.snapshot_threshold, 10_000);
        assert!(!c.byzantine_tolerance);
        assert_eq!(c.max_byzantine_nodes, 1);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.majority(), 3);
    }

    #[test]
    fn empty_cluster_is_refused() {
        let c = ConsensusConfig {
            cluster_size: 0,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::EmptyCluster));
    }

    #[test]
    fn oversized_cluster_is_refused() {
        let c = ConsensusConfig {
            cluster_size: 5000,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ClusterTooLarge(5000)));
    }

    #[test]
    fn inverted_or_zero_election_timeout_is_refused() {
        for (min, max) in [(300, 150), (0, 10), (0, 0)] {
            let c = ConsensusConfig {
                election_timeout_ms: (min, max),
                heartbeat_interval_ms: 1,
                ..Default::default()
            };
            assert_eq!(
                c.validate(),
                Err(ConfigError::BadElectionTimeout { min, max })
            );
        }
        let equal = ConsensusConfig {
            election_timeout_ms: (200, 200),
            ..Default::default()
        };
        assert_eq!(equal.validate(), Ok(()), "a fixed timeout is allowed");
    }

    #[test]
    fn heartbeat_must_be_below_election_timeout() {
        for hb in [0, 150, 151, 1000] {
            let c = ConsensusConfig {
                heartbeat_interval_ms: hb,
                ..Default::default()
            };
            assert_eq!(
                c.validate(),
                Err(ConfigError::BadHeartbeat {
                    heartbeat: hb,
                    election_min: 150
                }),
                "heartbeat {hb}"
            );
        }
    }

    #[test]
    fn zero_batch_and_zero_snapshot_threshold_are_refused() {
        let c = ConsensusConfig {
            max_log_entries_per_append: 0,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroBatch));
        let c = ConsensusConfig {
            snapshot_threshold: 0,
            ..Default::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ZeroSnapshotThreshold));
    }

    #[test]
    fn byzantine_tolerance_needs_3f_plus_1() {
        let c = ConsensusConfig {
            cluster_size: 3,
            byzantine_tolerance: true,
            max_byzantine_nodes: 1,
            ..Default::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooFewForByzantine {
                n: 3,
                f: 1,
                needed: 4
            })
        );
        let ok = ConsensusConfig {
            cluster_size: 4,
            ..c.clone()
        };
        assert_eq!(ok.validate(), Ok(()));
        let f2 = ConsensusConfig {
            cluster_size: 6,
            max_byzantine_nodes: 2,
            ..c
        };
        assert!(matches!(
            f2.validate(),
            Err(ConfigError::TooFewForByzantine { needed: 7, .. })
        ));
    }

    #[test]
    fn byzantine_picks_the_largest_tolerable_f() {
        let c = ConsensusConfig::for_protocol("my-bft".parse().unwrap(), 7).byzantine();
        assert!(c.byzantine_tolerance);
        assert_eq!(c.max_byzantine_nodes, 2);
        assert_eq!(c.byzantine_quorum(), 5);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.protocol.name(), "my-bft");
    }

    #[test]
    fn loads_from_toml_and_json_with_defaults() {
        let t = ConsensusConfig::from_toml_str(
            "protocol = \"multi-paxos\"\ncluster_size = 3\nelection_timeout_ms = [100, 200]\n",
        )
        .unwrap();
        assert_eq!(t.protocol.name(), "multi-paxos");
        assert_eq!(t.cluster_size, 3);
        assert_eq!(t.election_timeout_ms, (100, 200));
        assert_eq!(t.heartbeat_interval_ms, 50);

        let j = ConsensusConfig::from_json_str(r#"{"protocol":"pbft","cluster_size":4}"#).unwrap();
        assert_eq!(j.protocol.name(), "pbft");
        assert_eq!(j.snapshot_threshold, 10_000);
        // Round trip.
        let back = ConsensusConfig::from_json_str(&serde_json::to_string(&j).unwrap()).unwrap();
        assert_eq!(back, j);
    }

    #[test]
    fn unknown_fields_and_bad_types_are_parse_errors() {
        assert!(matches!(
            ConsensusConfig::from_toml_str("cluster_sise = 3"),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            ConsensusConfig::from_json_str(r#"{"cluster_size": -1}"#),
            Err(ConfigError::Parse(_))
        ));
        assert!(matches!(
            ConsensusConfig::from_json_str(r#"{"protocol": "z a b"}"#),
            Err(ConfigError::Parse(_))
        ));
    }
}
