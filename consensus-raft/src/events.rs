//! What the owner of term, vote and log tells the other components, and the
//! persistent records (hard state, snapshots) they share.
//!
//! The LogReplicator is the single owner of `current_term`, `voted_for`, the
//! log, the commit index and the configuration in effect. LeaderElection,
//! MembershipManager and SnapshotCompactor keep read-only copies, refreshed
//! by these [`RaftEvent`]s, and every request they send back carries the term
//! their decision was based on so the owner can refuse a stale one.

use crate::configuration::Membership;
use consensus_actors::types::{LogId, LogIndex, NodeId, NodeState, Term};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The state Raft must persist before answering (Figure 2: "updated on
/// stable storage before responding to RPCs").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// Latest term the server has seen.
    pub term: Term,
    /// Candidate that received the vote in the current term.
    pub voted_for: Option<NodeId>,
}

/// What a snapshot covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last entry the snapshot replaces.
    pub last_included: LogId,
    /// The configuration in effect at `last_included` (§7: "the latest
    /// configuration as of last included index").
    pub membership: Membership,
}

/// A snapshot of the state machine (§7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The state machine's serialized state
    /// ([`StateMachine::snapshot`](consensus_actors::kv::StateMachine::snapshot)).
    pub data: Arc<Vec<u8>>,
}

impl Snapshot {
    /// The last entry covered.
    pub fn last_included(&self) -> LogId {
        self.meta.last_included
    }
}

/// A summary of where the log stands, published whenever it moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogProgress {
    /// The owner's term.
    pub term: Term,
    /// Highest index known committed.
    pub commit_index: LogIndex,
    /// Highest index applied to the state machine.
    pub last_applied: LogIndex,
    /// Last index of the log.
    pub last_log_index: LogIndex,
    /// Last index covered by the latest snapshot.
    pub snapshot_index: LogIndex,
}

/// An event the owner publishes to the other components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaftEvent {
    /// The term, the role or the known leader changed.
    RoleChanged {
        /// Current term.
        term: Term,
        /// Current role.
        role: NodeState,
        /// The leader known for `term`.
        leader: Option<NodeId>,
    },
    /// A valid AppendEntries or InstallSnapshot came from the leader of
    /// `term` (resets the election timer). A LogReplicator given a
    /// [`LeaderContact`](crate::actors::LeaderContact) publishes only the
    /// first of a run of these and records the repeats there.
    HeardFromLeader {
        /// The leader's term.
        term: Term,
        /// The leader.
        leader: NodeId,
    },
    /// This node granted its vote in `term` (resets the election timer).
    VoteGranted {
        /// The term of the vote.
        term: Term,
        /// The candidate.
        candidate: NodeId,
    },
    /// The owner sent RequestVote for a campaign; votes for it may now be
    /// counted.
    ElectionStarted {
        /// The campaign's term (for a pre-vote, the term it would use).
        term: Term,
        /// A pre-vote campaign.
        pre_vote: bool,
        /// Started by TimeoutNow.
        transfer: bool,
    },
    /// As leader, a response of `term` came from `peer` (check-quorum).
    PeerActive {
        /// The leader's term.
        term: Term,
        /// The peer that answered.
        peer: NodeId,
    },
    /// The configuration in effect or the committed configuration changed.
    MembershipChanged {
        /// The owner's term.
        term: Term,
        /// Where the configuration in effect was appended (index 0: the
        /// initial configuration; otherwise a snapshot or a log entry).
        effective_id: LogId,
        /// The configuration in effect (the latest in the log).
        effective: Membership,
        /// Where the latest committed configuration was appended.
        committed_id: LogId,
        /// The latest committed configuration.
        committed: Membership,
    },
    /// The commit index, the applied index, the log end or the snapshot moved.
    /// (The LogReplicator does not publish one in which only the log end
    /// moved: no component acts on an uncommitted append.)
    Progress(LogProgress),
    /// As leader, a learner's match index moved (catch-up tracking).
    LearnerProgress {
        /// The leader's term.
        term: Term,
        /// The learner.
        peer: NodeId,
        /// Its match index.
        match_index: LogIndex,
        /// The leader's last log index.
        last_log_index: LogIndex,
    },
    /// As leader, `peer` needs entries the log no longer holds: send it this
    /// snapshot. Repeated while the transfer is unfinished.
    SnapshotNeeded {
        /// The leader's term.
        term: Term,
        /// The follower.
        peer: NodeId,
        /// The snapshot to send.
        snapshot: Arc<Snapshot>,
    },
    /// A snapshot was taken or installed; the log is purged up to
    /// `purged_upto`.
    SnapshotTaken {
        /// What it covers.
        meta: SnapshotMeta,
        /// The log holds no entry up to here any more.
        purged_upto: LogIndex,
    },
}

impl RaftEvent {
    /// Whether LeaderElection acts on this event.
    pub fn for_election(&self) -> bool {
        matches!(
            self,
            RaftEvent::RoleChanged { .. }
                | RaftEvent::HeardFromLeader { .. }
                | RaftEvent::VoteGranted { .. }
                | RaftEvent::ElectionStarted { .. }
                | RaftEvent::PeerActive { .. }
                | RaftEvent::MembershipChanged { .. }
        )
    }

    /// Whether MembershipManager acts on this event.
    pub fn for_membership(&self) -> bool {
        matches!(
            self,
            RaftEvent::RoleChanged { .. }
                | RaftEvent::MembershipChanged { .. }
                | RaftEvent::Progress(_)
                | RaftEvent::LearnerProgress { .. }
        )
    }

    /// Whether SnapshotCompactor acts on this event.
    pub fn for_compactor(&self) -> bool {
        matches!(
            self,
            RaftEvent::RoleChanged { .. }
                | RaftEvent::Progress(_)
                | RaftEvent::SnapshotNeeded { .. }
                | RaftEvent::SnapshotTaken { .. }
        )
    }
}
