//! The messages of the Raft paper (Figure 2, §6, §7 and the thesis'
//! extensions), one type each, and the [`RaftMessage`] enum that crosses the
//! network inside an [`Envelope`](consensus_actors::transport::Envelope).
//!
//! Entries travel as [`EntryRef`]s (`Arc`s): a leader's log, its
//! AppendEntries to every follower and the persisted copy share one
//! allocation per entry, so replicating a batch costs one reference count per
//! entry and follower, not one deep copy.

use crate::configuration::Membership;
use consensus_actors::types::{LogEntry, LogId, LogIndex, NodeId, Term};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a Raft log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RaftCommand<C> {
    /// A command of the replicated state machine.
    Normal(C),
    /// The empty entry a new leader appends at the start of its term
    /// (§8: it commits the entries of earlier terms and enables ReadIndex).
    Noop,
    /// A configuration (§6): takes effect as soon as it is appended.
    ConfigChange(Membership),
}

/// One entry of a Raft log.
pub type Entry<C> = LogEntry<RaftCommand<C>>;

/// A shared, immutable log entry.
pub type EntryRef<C> = Arc<Entry<C>>;

/// Invoked by candidates to gather votes (Figure 2), and by pre-candidates
/// to ask whether they could win (thesis §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVote {
    /// Candidate's term; for a pre-vote, the term it would campaign in.
    pub term: Term,
    /// Candidate requesting the vote.
    pub candidate_id: NodeId,
    /// Index of candidate's last log entry.
    pub last_log_index: LogIndex,
    /// Term of candidate's last log entry.
    pub last_log_term: Term,
    /// A pre-vote: the voter changes no state, it only tells whether it
    /// would grant the vote.
    pub pre_vote: bool,
    /// The election was started by the leader's TimeoutNow (leadership
    /// transfer, thesis §3.10): voters do not apply the leader-lease rule.
    pub leadership_transfer: bool,
}

impl RequestVote {
    /// The candidate's last log id.
    pub fn last_log_id(&self) -> LogId {
        LogId::new(self.last_log_term, self.last_log_index)
    }
}

/// Reply to [`RequestVote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVoteResponse {
    /// The voter's current term, for the candidate to update itself; for a
    /// granted pre-vote, the term of the request.
    pub term: Term,
    /// True means the candidate received the vote.
    pub vote_granted: bool,
    /// Answers a pre-vote.
    pub pre_vote: bool,
}

/// Invoked by the leader to replicate log entries; also used as heartbeat
/// (Figure 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "C: Serialize",
    deserialize = "C: serde::de::DeserializeOwned"
))]
pub struct AppendEntries<C> {
    /// Leader's term.
    pub term: Term,
    /// So followers can redirect clients.
    pub leader_id: NodeId,
    /// Index of log entry immediately preceding new ones.
    pub prev_log_index: LogIndex,
    /// Term of `prev_log_index` entry.
    pub prev_log_term: Term,
    /// Log entries to store (empty for heartbeat), consecutive from
    /// `prev_log_index + 1`, at most `max_log_entries_per_append`.
    pub entries: Vec<EntryRef<C>>,
    /// Leader's commit index.
    pub leader_commit: LogIndex,
    /// The leader's confirmation round, echoed in the response: a response
    /// carrying round `r` proves the follower still followed this leader
    /// after the leader started round `r` (ReadIndex, thesis §6.4).
    pub round: u64,
}

impl<C> AppendEntries<C> {
    /// The log id just before the carried entries.
    pub fn prev_log_id(&self) -> LogId {
        LogId::new(self.prev_log_term, self.prev_log_index)
    }
}

/// Reply to [`AppendEntries`], with the fast back-off hint of §5.3 ("the
/// follower can include the term of the conflicting entry and the first index
/// it stores for that term").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEntriesResponse {
    /// Current term, for leader to update itself.
    pub term: Term,
    /// True if follower contained entry matching `prev_log_index` and
    /// `prev_log_term`.
    pub success: bool,
    /// On success, `prev_log_index + entries.len()`: the follower's log
    /// matches the leader's up to here. On failure, the request's
    /// `prev_log_index` (so a stale rejection can be recognised).
    pub match_index: LogIndex,
    /// On a conflict, the follower's term at `prev_log_index`; `None` when
    /// the follower's log is too short to hold `prev_log_index`.
    pub conflict_term: Option<Term>,
    /// On a conflict, the first index the follower stores for
    /// `conflict_term`, or its last index + 1 when its log is too short.
    pub conflict_index: LogIndex,
    /// The request's confirmation round, echoed.
    pub round: u64,
}

/// Invoked by the leader to send chunks of a snapshot to a follower that is
/// behind the leader's purge point (§7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshot {
    /// Leader's term.
    pub term: Term,
    /// So followers can redirect clients.
    pub leader_id: NodeId,
    /// The snapshot replaces all entries up through and including this index.
    pub last_included_index: LogIndex,
    /// Term of `last_included_index`.
    pub last_included_term: Term,
    /// Byte offset where the chunk is positioned in the snapshot file.
    pub offset: u64,
    /// Raw bytes of the snapshot chunk, starting at `offset`.
    pub data: Vec<u8>,
    /// True if this is the last chunk.
    pub done: bool,
    /// The configuration as of `last_included_index`.
    pub membership: Membership,
}

impl InstallSnapshot {
    /// The snapshot's last included log id.
    pub fn last_included(&self) -> LogId {
        LogId::new(self.last_included_term, self.last_included_index)
    }
}

/// Reply to [`InstallSnapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshotResponse {
    /// Current term, for leader to update itself.
    pub term: Term,
    /// The snapshot this answers.
    pub last_included_index: LogIndex,
    /// The next byte offset the follower expects (the whole length once the
    /// last chunk was taken).
    pub next_offset: u64,
    /// The whole snapshot has been installed.
    pub done: bool,
}

/// Sent by a leader to the follower it hands leadership to: "start an
/// election now" (thesis §3.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutNow {
    /// Leader's term.
    pub term: Term,
}

/// Every message Raft nodes exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "C: Serialize",
    deserialize = "C: serde::de::DeserializeOwned"
))]
pub enum RaftMessage<C> {
    /// [`RequestVote`].
    RequestVote(RequestVote),
    /// [`RequestVoteResponse`].
    RequestVoteResponse(RequestVoteResponse),
    /// [`AppendEntries`].
    AppendEntries(AppendEntries<C>),
    /// [`AppendEntriesResponse`].
    AppendEntriesResponse(AppendEntriesResponse),
    /// [`InstallSnapshot`], boxed: it is by far the largest message and
    /// rare, and every other message is moved and copied by value.
    InstallSnapshot(Box<InstallSnapshot>),
    /// [`InstallSnapshotResponse`].
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// [`TimeoutNow`].
    TimeoutNow(TimeoutNow),
}

impl<C> RaftMessage<C> {
    /// The term the message carries.
    pub fn term(&self) -> Term {
        match self {
            RaftMessage::RequestVote(m) => m.term,
            RaftMessage::RequestVoteResponse(m) => m.term,
            RaftMessage::AppendEntries(m) => m.term,
            RaftMessage::AppendEntriesResponse(m) => m.term,
            RaftMessage::InstallSnapshot(m) => m.term,
            RaftMessage::InstallSnapshotResponse(m) => m.term,
            RaftMessage::TimeoutNow(m) => m.term,
        }
    }

    /// The message's name in the paper (for traces and metrics).
    pub fn name(&self) -> &'static str {
        match self {
            RaftMessage::RequestVote(m) if m.pre_vote => "PreVote",
            RaftMessage::RequestVote(_) => "RequestVote",
            RaftMessage::RequestVoteResponse(m) if m.pre_vote => "PreVoteResponse",
            RaftMessage::RequestVoteResponse(_) => "RequestVoteResponse",
            RaftMessage::AppendEntries(_) => "AppendEntries",
            RaftMessage::AppendEntriesResponse(_) => "AppendEntriesResponse",
            RaftMessage::InstallSnapshot(_) => "InstallSnapshot",
            RaftMessage::InstallSnapshotResponse(_) => "InstallSnapshotResponse",
            RaftMessage::TimeoutNow(_) => "TimeoutNow",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::kv::KvCommand;
    use consensus_actors::types::ClientId;

    fn sample() -> RaftMessage<KvCommand> {
        let entry = Arc::new(LogEntry::new(
            Term(2),
            LogIndex(5),
            RaftCommand::Normal(KvCommand::put("k", "v")),
            17,
            ClientId(3),
        ));
        RaftMessage::AppendEntries(AppendEntries {
            term: Term(2),
            leader_id: NodeId(1),
            prev_log_index: LogIndex(4),
            prev_log_term: Term(1),
            entries: vec![entry],
            leader_commit: LogIndex(4),
            round: 9,
        })
    }

    #[test]
    fn messages_round_trip_through_messagepack_and_json() {
        let m = sample();
        let bytes = rmp_serde::to_vec(&m).unwrap();
        let back: RaftMessage<KvCommand> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
        let json = serde_json::to_string(&m).unwrap();
        let back: RaftMessage<KvCommand> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(m.term(), Term(2));
        assert_eq!(m.name(), "AppendEntries");
    }

    #[test]
    fn garbage_does_not_decode() {
        let r: Result<RaftMessage<KvCommand>, _> = rmp_serde::from_slice(&[0x93, 0x01]);
        assert!(r.is_err());
    }

    #[test]
    fn pre_vote_is_named_apart() {
        let rv = RequestVote {
            term: Term(3),
            candidate_id: NodeId(2),
            last_log_index: LogIndex(7),
            last_log_term: Term(2),
            pre_vote: true,
            leadership_transfer: false,
        };
        assert_eq!(RaftMessage::<KvCommand>::RequestVote(rv).name(), "PreVote");
        assert_eq!(rv.last_log_id(), LogId::new(Term(2), LogIndex(7)));
    }
}
