//! Errors: what a client is told when its request cannot be served, and why
//! the owner of the log refuses a request from another component.

use consensus_actors::types::{LogIndex, NodeId, Term};

/// Why a proposal or a read did not produce a result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ProposeError {
    /// This node is not the leader; `leader` is the one it knows, if any.
    #[error("not the leader; try {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// Too many proposals are waiting for their results.
    #[error("too many requests in flight")]
    Busy,
    /// The leader is handing leadership over and accepts nothing meanwhile.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// The entry was overwritten by another leader's: the command was
    /// definitely not applied.
    #[error("the proposal was overwritten by another leader and not applied")]
    Dropped,
    /// The outcome cannot be known here (leadership lost, a snapshot
    /// replaced the entry, the node restarted): the command may or may not
    /// have been applied.
    #[error("the outcome of the proposal is unknown")]
    Unknown,
}

/// Why the owner of term, vote and log refused a request from another
/// component. A refusal is normal (the request was based on a state that no
/// longer holds); the requester drops its plan and waits for events.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request was based on another term.
    #[error("stale request: based on {expected}, current term is {current}")]
    StaleTerm {
        /// The term the request carried.
        expected: Term,
        /// The owner's term.
        current: Term,
    },
    /// Only a leader can do this.
    #[error("not the leader")]
    NotLeader,
    /// The owner has no state to decide on: it is restarting (recovering
    /// from storage), it failed, or it stopped. Says nothing about the
    /// role: retry once the owner is back (its events tell when).
    #[error("the owner of term, vote and log is unavailable (restarting or failed)")]
    Unavailable,
    /// Only a candidate can become leader.
    #[error("not a candidate")]
    NotCandidate,
    /// Only a voter can campaign.
    #[error("not a voter in the current configuration")]
    NotVoter,
    /// A leader does not campaign.
    #[error("already the leader")]
    AlreadyLeader,
    /// A configuration entry is not yet committed (one change at a time).
    #[error("a configuration change is still uncommitted")]
    ConfigChangePending,
    /// The leader has not yet committed an entry of its term (thesis §4.1:
    /// no configuration change before that).
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// The node cannot take leadership over.
    #[error("{0} is not a voter and cannot take leadership over")]
    BadTransferTarget(NodeId),
    /// Nothing new to put in a snapshot.
    #[error("nothing to compact: the snapshot already covers {0}")]
    NothingToCompact(LogIndex),
    /// The snapshot is older than what the node already has.
    #[error("snapshot at {0} is not newer than the commit index")]
    SnapshotNotNewer(LogIndex),
    /// The snapshot could not be restored into the state machine.
    #[error("snapshot cannot be restored: {0}")]
    BadSnapshot(String),
}

/// Why state recovered from storage cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// The persisted entries are not a consecutive run after the snapshot.
    #[error("persisted log is not consecutive after the snapshot: expected index {expected}, found {found}")]
    Gap {
        /// The index that should come next.
        expected: LogIndex,
        /// The index found.
        found: LogIndex,
    },
    /// The persisted snapshot cannot be restored into the state machine.
    #[error("persisted snapshot cannot be restored: {0}")]
    BadSnapshot(String),
    /// The persisted term is below the last entry's term.
    #[error("persisted term {term} is below the last log term {last_log_term}")]
    TermBehindLog {
        /// The persisted current term.
        term: Term,
        /// The term of the last persisted entry.
        last_log_term: Term,
    },
}
