//! The messages between the components of one node: the contracts a
//! replacement component must honour. Every component is reached through a
//! `Recipient<M>` of one of these (see [`slots`](crate::slots)).
//!
//! | message | from → to | meaning |
//! |---|---|---|
//! | [`PeerMessage`] | router → any | a message from a peer |
//! | [`Submit`] | client API → Proposer | a client command |
//! | [`Proposed`] | Proposer → Learner | "I asked acceptors to accept this": the learner counts their `Accepted` |
//! | [`Track`] | Proposer → Learner | answer these clients when this batch is delivered |
//! | [`Abandon`] | Proposer → Learner | the batch may never be delivered: answer its clients with this error |
//! | [`Decided`] | Learner → Proposer | a slot's value is chosen; the learner's next undelivered slot |
//! | [`LeaderChange`] | election → Proposer | the ballot leader election's leader |
//! | [`BallotTooLow`] | Proposer → election | an acceptor promised a higher ballot |
//! | [`Configured`] | Learner → Proposer, election | the configurations known after a change was delivered (or installed) |
//! | [`Reconfigure`] | client API → Proposer | add or remove an acceptor (Multi-Paxos) |
//! | [`Compact`] | Learner → Acceptor | the learner's durable snapshot covers these slots: forget their acceptances |
//! | [`InjectPanic`] | fault injection → any | panic (supervision restarts it) |

use crate::error::ProposeError;
use crate::messages::PaxosMessage;
use crate::types::{Ballot, BatchId, Configurations, Slot, ValueRef};
use actix::prelude::*;
use consensus_actors::kv::KvCommand;
use consensus_actors::plugin::Committed;
use consensus_actors::types::{ClientId, NodeId};
use tokio::sync::oneshot;

/// A message from peer `from`.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct PeerMessage {
    /// The sender.
    pub from: NodeId,
    /// The message.
    pub msg: PaxosMessage,
}

/// Where a client's answer goes.
pub type ClientReply = oneshot::Sender<Result<Committed, ProposeError>>;

/// A client command for the Proposer.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Submit {
    /// The client.
    pub client: ClientId,
    /// The command.
    pub command: KvCommand,
    /// Where the answer goes.
    pub reply: ClientReply,
}

/// The Proposer sent Accept(`ballot`, `slot`, `value`): the Learner counts
/// the acceptors' `Accepted` for it.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Proposed {
    /// The slot.
    pub slot: Slot,
    /// The ballot.
    pub ballot: Ballot,
    /// The value.
    pub value: ValueRef,
}

/// Answer `replies` (in the batch's order) when `batch` is delivered.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Track {
    /// The batch.
    pub batch: BatchId,
    /// One answer per request of the batch.
    pub replies: Vec<ClientReply>,
}

/// The batches may never be delivered: answer their clients with `error`
/// (unless already answered).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Abandon {
    /// The batches.
    pub batches: Vec<BatchId>,
    /// The answer.
    pub error: ProposeError,
}

/// A slot's value is chosen (the learner learned it). The Learner sends it
/// for every slot this node's Proposer proposed in; for the others it may
/// send only some (the stock one: every one in `paxos`, every 64th in
/// `multi-paxos`), and it reminds the Proposer where delivery stands
/// periodically.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Decided {
    /// The slot.
    pub slot: Slot,
    /// The chosen value's batch (`None`: a no-op).
    pub batch: Option<BatchId>,
    /// The learner's first slot not yet delivered.
    pub next_undelivered: Slot,
}

/// Ballot leader election elected `leader` (its ballot).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct LeaderChange {
    /// The leader's ballot (its node is `leader.node`).
    pub leader: Ballot,
}

/// An acceptor refused the Proposer's ballot, having promised `promised`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct BallotTooLow {
    /// The promise that beat it.
    pub promised: Ballot,
}

/// The Learner's snapshot up to `through` is durable: every slot up to it
/// is chosen, and the Acceptor may forget what it accepted there (see
/// [`acceptor::core`](crate::acceptor::core#compaction)).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Compact {
    /// The last slot covered.
    pub through: Slot,
}

/// The configurations (acceptor sets by slot) the Learner knows, sent
/// after it delivered or installed a change, and when it starts.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Configured {
    /// The configurations.
    pub configs: Configurations,
}

/// A change of the acceptor set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Add this node.
    Add(NodeId),
    /// Remove this node.
    Remove(NodeId),
}

/// Asks the Proposer (the Multi-Paxos leader) to choose a configuration
/// change; answered once it is chosen and delivered here. It takes effect
/// `α` (the window) slots after the slot it is chosen in.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Reconfigure {
    /// The change.
    pub change: Change,
    /// Where the answer goes.
    pub reply: ClientReply,
}

/// Makes the receiving component panic (fault injection).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Microseconds since `epoch`.
pub(crate) fn micros_since(epoch: tokio::time::Instant) -> u64 {
    u64::try_from(
        tokio::time::Instant::now()
            .saturating_duration_since(epoch)
            .as_micros(),
    )
    .unwrap_or(u64::MAX)
}
