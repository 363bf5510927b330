//! The messages between the components of one node: the contracts a
//! replacement component must honour. Every component is reached through a
//! `Recipient<M>` of one of these (see [`slots`](crate::slots)).
//!
//! | message | from → to | meaning |
//! |---|---|---|
//! | [`PeerMessage`] | router → any | a message from a peer |
//! | [`Submit`] | client API → Proposer | a client command |
//! | [`DrainSubmissions`] | client API → Proposer | take the commands queued in the [`SubmissionQueue`] |
//! | [`Proposed`] | Proposer → Learner | "I asked acceptors to accept this": the learner counts their `Accepted`; the first proposal of a batch carries its clients' answers |
//! | [`Abandon`] | Proposer → Learner | the batch may never be delivered: answer its clients with this error |
//! | [`Decided`] | Learner → Proposer | a slot's value is chosen; the learner's next undelivered slot and its commit |
//! | [`LeaderChange`] | election → Proposer | the ballot leader election's leader |
//! | [`BallotTooLow`] | Proposer → election | an acceptor promised a higher ballot |
//! | [`Configured`] | Learner → Proposer, election | the configurations known after a change was delivered (or installed) |
//! | [`Reconfigure`] | client API → Proposer | add or remove an acceptor (Multi-Paxos) |
//! | [`Compact`] | Learner → Acceptor | the learner's durable snapshot covers these slots: forget their acceptances |
//! | [`InjectPanic`] | fault injection → any | panic (supervision restarts it) |

use crate::error::ProposeError;
use crate::messages::{Commit, PaxosMessage};
use crate::types::{Ballot, BatchId, Configurations, Slot, ValueRef};
use actix::prelude::*;
use consensus_actors::kv::KvCommand;
use consensus_actors::plugin::Committed;
use consensus_actors::types::{ClientId, NodeId};
use std::sync::{Arc, OnceLock};
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

/// What [`SubmissionQueue::push`] did with a submission.
#[derive(Debug)]
pub enum Pushed {
    /// Queued; the queue was idle, so the Proposer must be woken with one
    /// [`DrainSubmissions`].
    Wake,
    /// Queued behind others; a [`DrainSubmissions`] is on its way.
    Queued,
    /// Not queued: the queue is full ([`ProposeError::Busy`]) or the
    /// Proposer is stopped ([`ProposeError::Unknown`]).
    Refused(Submit, ProposeError),
}

/// Client commands on their way to the Proposer without a mailbox message
/// each (as Raft's leader takes its proposals): clients push here, and the
/// one [`DrainSubmissions`] sent when the queue goes from idle to busy
/// makes the Proposer take every command queued by then, which it batches
/// into its next slots. Bounded: a full queue refuses. Closed while the
/// Proposer is stopped (what it held is dropped, so its clients see an
/// unknown outcome, as for commands lost in a mailbox).
#[derive(Debug)]
pub struct SubmissionQueue {
    state: std::sync::Mutex<QueueState>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct QueueState {
    items: Vec<Submit>,
    /// A [`DrainSubmissions`] was sent and not handled yet.
    wake_pending: bool,
    closed: bool,
}

impl SubmissionQueue {
    /// An empty queue holding at most `capacity` commands.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: std::sync::Mutex::new(QueueState::default()),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Nothing panics while holding the lock; a poisoned lock still
        // holds a consistent queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `s` (see [`Pushed`]).
    pub fn push(&self, s: Submit) -> Pushed {
        let mut st = self.state();
        if st.closed {
            return Pushed::Refused(s, ProposeError::Unknown);
        }
        if st.items.len() >= self.capacity {
            return Pushed::Refused(s, ProposeError::Busy);
        }
        st.items.push(s);
        if st.wake_pending {
            Pushed::Queued
        } else {
            st.wake_pending = true;
            Pushed::Wake
        }
    }

    /// Moves every queued command to `into` (in arrival order); the next
    /// push wakes the Proposer again.
    pub fn take_into(&self, into: &mut Vec<Submit>) {
        let mut st = self.state();
        st.wake_pending = false;
        if into.is_empty() {
            std::mem::swap(&mut st.items, into);
        } else {
            into.append(&mut st.items);
        }
    }

    /// Closes the queue (the Proposer stopped): what it held is dropped
    /// (unanswered) and pushes are refused until [`reopen`](Self::reopen).
    pub fn close(&self) {
        let dropped = {
            let mut st = self.state();
            st.closed = true;
            st.wake_pending = false;
            std::mem::take(&mut st.items)
        };
        drop(dropped);
    }

    /// Accepts pushes again (the Proposer (re)started).
    pub fn reopen(&self) {
        self.state().closed = false;
    }

    /// Commands queued.
    pub fn len(&self) -> usize {
        self.state().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Wakes the Proposer to take the commands of its [`SubmissionQueue`].
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct DrainSubmissions;

/// The Proposer sent Accept(`ballot`, `slot`, `value`): the Learner counts
/// the acceptors' `Accepted` for it. The first proposal of a batch carries
/// the answers of its clients (in the batch's order), which the Learner
/// sends when the batch is delivered; a batch proposed again (a later
/// slot, a resend) carries none.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Proposed {
    /// The slot.
    pub slot: Slot,
    /// The ballot.
    pub ballot: Ballot,
    /// The value.
    pub value: ValueRef,
    /// One answer per request of the value's batch (empty: answered
    /// elsewhere, or proposed before).
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
    /// The learner's last delivered slots that were chosen at one ballot
    /// (a Multi-Paxos leader tells its followers those chosen at its own
    /// ballot on its next Accept: [`Commit`]).
    pub commit: Option<Commit>,
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

/// The recipient of a local message, bound once the node has built every
/// component (components name each other before any of them exists: the
/// Proposer sends to the Learner and the Learner to the Proposer). A
/// message sent before it is bound is dropped, as one to a stopped actor
/// would be. Cheap to clone (clones share the binding).
pub struct LocalRecipient<M: Message + Send>
where
    M::Result: Send,
{
    to: Arc<OnceLock<Recipient<M>>>,
}

impl<M: Message + Send> Clone for LocalRecipient<M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Self {
            to: Arc::clone(&self.to),
        }
    }
}

impl<M: Message + Send> Default for LocalRecipient<M>
where
    M::Result: Send,
{
    fn default() -> Self {
        Self {
            to: Arc::new(OnceLock::new()),
        }
    }
}

impl<M: Message + Send> LocalRecipient<M>
where
    M::Result: Send,
{
    /// Not bound yet.
    pub fn unbound() -> Self {
        Self::default()
    }

    /// Already bound to `to`.
    pub fn bound(to: Recipient<M>) -> Self {
        let me = Self::default();
        me.bind(to);
        me
    }

    /// Binds it to `to` (the first binding wins; later ones are ignored).
    pub fn bind(&self, to: Recipient<M>) {
        if self.to.set(to).is_err() {
            tracing::warn!("a local recipient was bound twice; the first binding stays");
        }
    }

    /// Whether it is bound.
    pub fn is_bound(&self) -> bool {
        self.to.get().is_some()
    }

    /// Sends `msg` (dropped when not bound).
    pub fn do_send(&self, msg: M) {
        match self.to.get() {
            Some(to) => to.do_send(msg),
            None => tracing::debug!("local message before the node was wired: dropped"),
        }
    }
}

impl<M: Message + Send> From<Recipient<M>> for LocalRecipient<M>
where
    M::Result: Send,
{
    fn from(to: Recipient<M>) -> Self {
        Self::bound(to)
    }
}
