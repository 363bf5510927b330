//! The vocabulary every protocol shares: identifiers, terms, indexes, log
//! entries, roles and the protocol selector.
//!
//! Indexes and terms are newtypes so that a `Term` can never be passed where a
//! `LogIndex` is expected, and no `usize`/`u64` mix creeps into protocol code.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! newtype_u64 {
    ($(#[$meta:meta])* $name:ident, $short:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The zero value (the state before anything happened).
            pub const ZERO: Self = Self(0);

            /// The raw number.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }

            /// The next value (`self + 1`).
            #[inline]
            #[must_use]
            pub const fn next(self) -> Self {
                Self(self.0 + 1)
            }

            /// The previous value, saturating at zero.
            #[inline]
            #[must_use]
            pub const fn prev(self) -> Self {
                Self(self.0.saturating_sub(1))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($short, "{}"), self.0)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

newtype_u64!(
    /// Identifies one node (replica) of a cluster. Node ids are chosen by the
    /// operator and never reused for a different node.
    NodeId,
    "n"
);
newtype_u64!(
    /// A Raft term: a logical clock that increases with every election.
    Term,
    "t"
);
newtype_u64!(
    /// A position in a replicated log; the first entry has index 1, index 0
    /// means "before the first entry".
    LogIndex,
    "i"
);
newtype_u64!(
    /// A PBFT view number; the primary of view `v` is replica `v mod n`.
    View,
    "v"
);
newtype_u64!(
    /// A PBFT sequence number assigned by the primary.
    SeqNo,
    "s"
);
newtype_u64!(
    /// A Multi-Paxos log slot.
    Slot,
    "slot"
);
newtype_u64!(
    /// Identifies one client of the replicated service.
    ClientId,
    "c"
);

/// A Paxos ballot (proposal number): ordered by round, then by the proposer's
/// node id, so two proposers never use the same ballot.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// The round; a proposer that is pre-empted retries with a higher round.
    pub round: u64,
    /// The node that owns this ballot (tie-breaker).
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every real ballot.
    pub const ZERO: Self = Self {
        round: 0,
        node: NodeId(0),
    };

    /// A ballot of `round` owned by `node`.
    pub const fn new(round: u64, node: NodeId) -> Self {
        Self { round, node }
    }

    /// The smallest ballot owned by `node` that is greater than `self`.
    #[must_use]
    pub const fn next_for(self, node: NodeId) -> Self {
        Self {
            round: self.round + 1,
            node,
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.round, self.node.0)
    }
}

/// Which consensus protocol a cluster runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsensusProtocol {
    /// Raft (Ongaro and Ousterhout, 2014).
    #[default]
    Raft,
    /// Single-decree Paxos (Lamport, "Paxos Made Simple").
    Paxos,
    /// Multi-Paxos: a stable leader runs phase 2 for a sequence of slots.
    MultiPaxos,
    /// Practical Byzantine Fault Tolerance (Castro and Liskov, 1999).
    Pbft,
}

impl ConsensusProtocol {
    /// Every protocol, in declaration order.
    pub const ALL: [ConsensusProtocol; 4] = [
        ConsensusProtocol::Raft,
        ConsensusProtocol::Paxos,
        ConsensusProtocol::MultiPaxos,
        ConsensusProtocol::Pbft,
    ];

    /// The name used on the command line and in configuration files.
    pub const fn name(self) -> &'static str {
        match self {
            ConsensusProtocol::Raft => "raft",
            ConsensusProtocol::Paxos => "paxos",
            ConsensusProtocol::MultiPaxos => "multi-paxos",
            ConsensusProtocol::Pbft => "pbft",
        }
    }
}

impl fmt::Display for ConsensusProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error returned when a protocol name is not recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: expected one of raft, paxos, multi-paxos, pbft")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for ConsensusProtocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "raft" => Ok(Self::Raft),
            "paxos" => Ok(Self::Paxos),
            "multi-paxos" | "multipaxos" | "multi_paxos" => Ok(Self::MultiPaxos),
            "pbft" => Ok(Self::Pbft),
            _ => Err(UnknownProtocol(s.to_string())),
        }
    }
}

/// The role a node plays in a leader-based protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Passive: answers the leader and candidates.
    #[default]
    Follower,
    /// Asking for votes to become leader.
    Candidate,
    /// Accepting proposals and replicating them.
    Leader,
}

/// One entry of a replicated log.
///
/// `timestamp_us` is the virtual (simulation) or real time in microseconds at
/// which the leader accepted the proposal; it is informational and never used
/// for protocol decisions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogEntry<C> {
    /// The term in which the leader created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// The replicated command.
    pub command: C,
    /// When the leader accepted the proposal, in microseconds.
    pub timestamp_us: u64,
    /// The client that proposed the command.
    pub client_id: ClientId,
}

impl<C> LogEntry<C> {
    /// A new entry.
    pub fn new(
        term: Term,
        index: LogIndex,
        command: C,
        timestamp_us: u64,
        client_id: ClientId,
    ) -> Self {
        Self {
            term,
            index,
            command,
            timestamp_us,
            client_id,
        }
    }

    /// The (term, index) pair that identifies this entry under the log
    /// matching property.
    pub fn log_id(&self) -> LogId {
        LogId {
            term: self.term,
            index: self.index,
        }
    }
}

/// The (term, index) pair that identifies a log position: by the log
/// matching property two logs that hold an entry with the same `LogId` are
/// identical up to it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogId {
    /// The entry's term (compared first: a later term is more up to date).
    pub term: Term,
    /// The entry's index.
    pub index: LogIndex,
}

impl LogId {
    /// A log id.
    pub const fn new(term: Term, index: LogIndex) -> Self {
        Self { term, index }
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.term, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_round_then_node() {
        assert!(Ballot::new(1, NodeId(5)) < Ballot::new(2, NodeId(1)));
        assert!(Ballot::new(2, NodeId(1)) < Ballot::new(2, NodeId(2)));
        assert!(Ballot::ZERO < Ballot::new(0, NodeId(1)));
        let b = Ballot::new(3, NodeId(2)).next_for(NodeId(1));
        assert_eq!(b, Ballot::new(4, NodeId(1)));
    }

    #[test]
    fn log_ids_compare_term_first() {
        let a = LogId::new(Term(2), LogIndex(1));
        let b = LogId::new(Term(1), LogIndex(9));
        assert!(a > b, "a later term is more up to date whatever the index");
    }

    #[test]
    fn protocol_names_round_trip() {
        for p in ConsensusProtocol::ALL {
            assert_eq!(p.name().parse::<ConsensusProtocol>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        assert!("zab".parse::<ConsensusProtocol>().is_err());
    }

    #[test]
    fn newtypes_serialize_as_numbers() {
        assert_eq!(serde_json::to_string(&Term(7)).unwrap(), "7");
        assert_eq!(Term(3).next(), Term(4));
        assert_eq!(LogIndex::ZERO.prev(), LogIndex::ZERO);
        assert_eq!(NodeId(4).to_string(), "n4");
    }
}
