//! The messages of the paper, one type each, and the enum nodes exchange
//! ([`PaxosMessage`]).
//!
//! | message | from → to | phase |
//! |---|---|---|
//! | [`Prepare`] | proposer → acceptors | 1a |
//! | [`Promise`] | acceptor → proposer | 1b |
//! | [`Accept`] | proposer → acceptors | 2a |
//! | [`Accepted`] | acceptor → the proposer's learner | 2b |
//! | [`Nack`] | acceptor → proposer | a refusal, naming the promise |
//! | [`Chosen`] | learner → learners | the decision (`paxos`) |
//! | [`Commit`] | Multi-Paxos leader → learners | decisions, by the ballot they were chosen at (alone when no Accept carries them) |
//! | [`CatchUp`] / [`CatchUpReply`] | learner ↔ learner | filling gaps |
//! | [`InstallSnapshot`] | learner → learner | filling a gap that was compacted |
//! | [`HeartbeatRequest`] / [`HeartbeatReply`] | Multi-Paxos ballot leader election | |

use crate::types::{Ballot, PValue, Slot, SnapshotRef, ValueRef};
use serde::{Deserialize, Serialize};

/// Phase 1a: "promise not to accept anything below `ballot`, and tell me
/// what you accepted in slots `first..=last`" (`last == None`: every slot
/// from `first` on, Multi-Paxos' phase 1 for all later slots).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    /// The proposer's ballot.
    pub ballot: Ballot,
    /// The first slot the proposer asks about.
    pub first: Slot,
    /// The last slot it asks about (`None`: no bound).
    pub last: Option<Slot>,
}

/// Phase 1b: the acceptor promised `ballot`; `accepted` is what it accepted
/// in the slots asked about (the highest ballot per slot) above
/// `compacted`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// The ballot promised.
    pub ballot: Ballot,
    /// The accepted proposals in the slots asked about, by slot.
    pub accepted: Vec<PValue>,
    /// Every slot up to this one is chosen and was compacted away by this
    /// acceptor: it reports nothing for them, and the proposer must not
    /// propose in them (`Slot(0)`: nothing compacted).
    #[serde(default)]
    pub compacted: Slot,
}

/// Phase 2a: "accept `value` in `slot` at `ballot`". A Multi-Paxos
/// leader's Accept also carries what it knows chosen at its ballot
/// (`commit`), as Raft's AppendEntries carries the commit index: the
/// learners it passes by learn those slots from it instead of a
/// [`Chosen`] each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// The proposer's ballot.
    pub ballot: Ballot,
    /// The slot.
    pub slot: Slot,
    /// The value.
    pub value: ValueRef,
    /// Slots the sender knows chosen at this ballot (`commit.ballot ==
    /// ballot`); `None` in `paxos`.
    #[serde(default)]
    pub commit: Option<Commit>,
}

/// Accepts a thrifty Multi-Paxos leader sends, in one message per tick,
/// to an acceptor outside the phase-2 quorum it counts on first (see
/// [`proposer::core`](crate::proposer::core#thrifty-phase-2)): the
/// acceptor accepts each as it would a lone [`Accept`] and answers them
/// all with one [`LazyAccepted`] (a refusal with one [`Nack`]); its
/// learner keeps their values and commits as it does an Accept's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyAccepts {
    /// The Accepts, in the order proposed.
    pub accepts: Vec<Accept>,
}

/// Phase 2b for a [`LazyAccepts`]: the acceptor accepted these slots at
/// `ballot` (each counts as an [`Accepted`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyAccepted {
    /// The ballot.
    pub ballot: Ballot,
    /// The slots, in the order accepted.
    pub slots: Vec<Slot>,
}

/// Multi-Paxos' decisions without their values: "every slot in
/// `from..=through` was chosen at `ballot`". One ballot proposes one value
/// per slot, so a learner that saw the Accept of (`ballot`, slot) knows the
/// value chosen there; one that did not asks its peers ([`CatchUp`]).
/// The leader sends it on its Accepts, and alone on its tick when no
/// Accept carried its latest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The ballot every slot of the range was chosen at.
    pub ballot: Ballot,
    /// The first slot of the range.
    pub from: Slot,
    /// The last slot of the range (`through < from`: empty).
    pub through: Slot,
}

impl Commit {
    /// Whether `slot` is in the range.
    pub fn covers(&self, slot: Slot) -> bool {
        self.from <= slot && slot <= self.through
    }
}

/// Phase 2b: the acceptor accepted (`ballot`, value) in `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The ballot accepted.
    pub ballot: Ballot,
    /// The slot.
    pub slot: Slot,
}

/// A refusal: the acceptor promised `promised`, above the request's
/// `ballot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The ballot refused.
    pub ballot: Ballot,
    /// The higher ballot the acceptor promised.
    pub promised: Ballot,
}

/// The decision: `value` was accepted by a quorum at `ballot` in `slot`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chosen {
    /// The slot.
    pub slot: Slot,
    /// The ballot a quorum accepted.
    pub ballot: Ballot,
    /// The chosen value.
    pub value: ValueRef,
}

/// A learner asks a peer for the values chosen from slot `from` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUp {
    /// The first slot the asker lacks.
    pub from: Slot,
}

/// The chosen values a learner knows from the slot asked for (at most
/// [`CATCH_UP_MAX`] of them, consecutive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchUpReply {
    /// The decisions, in slot order.
    pub chosen: Vec<Chosen>,
}

/// The slots a learner asked for were compacted: the state machine as of
/// `snapshot.slot`, to install in their place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshot {
    /// The snapshot.
    pub snapshot: SnapshotRef,
}

/// Most decisions one [`CatchUpReply`] carries.
pub const CATCH_UP_MAX: usize = 256;

/// Ballot leader election (Multi-Paxos): a round of heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The asker's round.
    pub round: u64,
}

/// The answer to a [`HeartbeatRequest`]: the replier's own ballot and
/// whether it was connected to a quorum in its last round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The round answered.
    pub round: u64,
    /// The replier's ballot.
    pub ballot: Ballot,
    /// The replier heard from a quorum in its last round.
    pub quorum_connected: bool,
}

/// Everything Paxos nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaxosMessage {
    /// Phase 1a.
    Prepare(Prepare),
    /// Phase 1b.
    Promise(Promise),
    /// Phase 2a.
    Accept(Accept),
    /// Phase 2b.
    Accepted(Accepted),
    /// A refusal.
    Nack(Nack),
    /// A decision.
    Chosen(Chosen),
    /// Decisions by ballot (Multi-Paxos).
    Commit(Commit),
    /// A gap to fill.
    CatchUp(CatchUp),
    /// Decisions that fill it.
    CatchUpReply(CatchUpReply),
    /// A snapshot that fills it.
    InstallSnapshot(InstallSnapshot),
    /// Leader election heartbeat.
    HeartbeatRequest(HeartbeatRequest),
    /// Its answer.
    HeartbeatReply(HeartbeatReply),
    /// Phase 2a, batched, for an acceptor outside the quorum counted on
    /// first (thrifty Multi-Paxos). Last, so the older variants keep their
    /// encoding.
    LazyAccepts(LazyAccepts),
    /// Phase 2b for it.
    LazyAccepted(LazyAccepted),
}

impl PaxosMessage {
    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            PaxosMessage::Prepare(_) => "Prepare",
            PaxosMessage::Promise(_) => "Promise",
            PaxosMessage::Accept(_) => "Accept",
            PaxosMessage::Accepted(_) => "Accepted",
            PaxosMessage::LazyAccepts(_) => "LazyAccepts",
            PaxosMessage::LazyAccepted(_) => "LazyAccepted",
            PaxosMessage::Nack(_) => "Nack",
            PaxosMessage::Chosen(_) => "Chosen",
            PaxosMessage::Commit(_) => "Commit",
            PaxosMessage::CatchUp(_) => "CatchUp",
            PaxosMessage::CatchUpReply(_) => "CatchUpReply",
            PaxosMessage::InstallSnapshot(_) => "InstallSnapshot",
            PaxosMessage::HeartbeatRequest(_) => "HeartbeatRequest",
            PaxosMessage::HeartbeatReply(_) => "HeartbeatReply",
        }
    }
}
