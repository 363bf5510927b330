//! The four Raft components as actix actors, and the messages they exchange.
//!
//! Each actor owns one pure core and carries out its effects in order:
//!
//! | actor | core | handles |
//! |---|---|---|
//! | [`LogReplicator`] | [`ReplicationCore`](crate::log_replicator::ReplicationCore) | RequestVote, AppendEntries(+Response), client proposals and reads, every request that touches term/vote/log |
//! | [`LeaderElection`] | [`ElectionCore`](crate::leader_election::ElectionCore) | vote responses, TimeoutNow, the election timer, leadership transfer requests |
//! | [`MembershipManager`] | [`MembershipCore`](crate::membership_manager::MembershipCore) | add/remove node requests |
//! | [`SnapshotCompactor`] | [`SnapshotCore`](crate::snapshot_compactor::SnapshotCore) | InstallSnapshot(+Response), compaction |
//! | [`RaftRouter`] | — | inbound envelopes, dispatched to the component that handles them |
//!
//! Components reach each other only through `Recipient<_>` handles given by
//! the node builder ([`OwnerHandles`]: the owner's term-carrying requests)
//! and through the owner's event stream, which any component subscribes to
//! ([`Subscribe`], see [`subscription`]), so any of them can be replaced by
//! another actor handling the same messages.
//!
//! Every actor is `Supervised`: on a restart it rebuilds its state from
//! storage (the LogReplicator) or from the owner's current state, which the
//! owner sends through the event stream when the component subscribes again
//! in `started()`; never from memory a crash would have lost. It sets its
//! timers again in `started()`.

pub mod subscription;

pub use crate::leader_election::LeaderElection;
pub use crate::log_replicator::{LogReplicator, RaftStorage};
pub use crate::membership_manager::MembershipManager;
pub use crate::router::{for_log_replicator, RaftRouter};
pub use crate::snapshot_compactor::SnapshotCompactor;
pub use subscription::{EventKinds, Interest, ProgressFilter, Subscribe};

use crate::configuration::Membership;
use crate::error::{ProposeError, Refusal};
use crate::events::{RaftEvent, Snapshot, SnapshotMeta};
pub use crate::log_replicator::Committed;
use crate::membership_manager::{ChangeKind, MembershipChangeError};
use crate::messages::RaftMessage;
use actix::prelude::*;
use consensus_actors::kv::StateMachine;
use consensus_actors::types::{ClientId, LogId, LogIndex, NodeId, NodeState, Term};
use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

/// A command Raft can replicate: it crosses the network (serde), and is
/// shared between components and threads by reference count (`Send +
/// Sync`).
pub trait ReplicatedCommand:
    Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + Unpin
    + 'static
{
}

impl<T> ReplicatedCommand for T where
    T: Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + Unpin
        + 'static
{
}

/// A state machine Raft can replicate: its commands are
/// [`ReplicatedCommand`]s; the actor holding it must be `Unpin` (actix).
pub trait RaftStateMachine:
    StateMachine<Command: ReplicatedCommand, Output: Unpin> + Send + Unpin
{
}

impl<T> RaftStateMachine for T where
    T: StateMachine<Command: ReplicatedCommand, Output: Unpin> + Send + Unpin
{
}

pub(crate) use consensus_actors::sim::clock::{micros_since, micros_since_cached};

/// A protocol message from a peer, dispatched by the [`RaftRouter`].
pub struct PeerMessage<C> {
    /// The sender.
    pub from: NodeId,
    /// The message.
    pub msg: RaftMessage<C>,
}

impl<C: 'static> Message for PeerMessage<C> {
    type Result = ();
}

/// Events published by the owner of term, vote and log, in order.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct RaftEvents(pub Vec<RaftEvent>);

/// The latest contact from the current leader that the LogReplicator
/// recorded for a subscriber instead of sending it a
/// [`RaftEvent::HeardFromLeader`]: part of the event-stream contract, for
/// the subscribers that ask for it ([`Subscribe::with_leader_contact`]).
///
/// A follower hears from its leader on every AppendEntries; telling a
/// component each time costs a mailbox message per AppendEntries, and all
/// an election component does with a repeat (same term, same leader,
/// nothing else of interest in between) is to push its election deadline
/// back. So the owner sends the first contact of a run as an event and
/// records each repeat here, with its time, once the step is published. The
/// subscriber takes the record before it handles anything else (a message
/// or its timer) and acts on it as on the event, at the time it was
/// recorded (the stock LeaderElection computes the deadline the event would
/// have given, so no election starts while the leader is heard). The owner
/// only writes it; the subscriber only takes it.
#[derive(Clone, Debug, Default)]
pub struct LeaderContact(Arc<std::sync::Mutex<Option<Contact>>>);

/// One contact from the leader (see [`LeaderContact`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contact {
    /// The leader's term.
    pub term: Term,
    /// The leader.
    pub leader: NodeId,
    /// When it was heard, in microseconds since the node's time base.
    pub at_us: u64,
}

impl Contact {
    /// The event this contact stands for.
    pub fn event(&self) -> RaftEvent {
        RaftEvent::HeardFromLeader {
            term: self.term,
            leader: self.leader,
        }
    }
}

impl LeaderContact {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Contact>> {
        // Nothing panics under the lock: a poisoned lock still holds a
        // consistent value.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a contact (replacing any not taken yet: only the last one
    /// matters).
    pub fn record(&self, contact: Contact) {
        *self.lock() = Some(contact);
    }

    /// Takes the contact recorded since the last call, if any.
    pub fn take(&self) -> Option<Contact> {
        self.lock().take()
    }
}

/// Asks the owner to start a campaign (see
/// [`Input::BeginElection`](crate::log_replicator::Input::BeginElection)).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct BeginElection {
    /// The term the decision was based on.
    pub expected_term: Term,
    /// A pre-vote campaign.
    pub pre_vote: bool,
    /// Started by TimeoutNow.
    pub transfer: bool,
}

/// Tells the owner a quorum voted for it in `term`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct BecomeLeader {
    /// The campaign's term.
    pub term: Term,
}

/// Asks the owner to step down from leadership of `term`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct StepDown {
    /// The leader's term.
    pub term: Term,
}

/// Tells the owner a higher term was seen.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct ObserveTerm {
    /// The term.
    pub term: Term,
}

/// Tells the owner a snapshot chunk came from `leader` of `term`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct ObserveLeader {
    /// The leader's term.
    pub term: Term,
    /// The leader.
    pub leader: NodeId,
}

/// Asks the owner (as leader of `term`) to hand leadership to `target`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct StartTransfer {
    /// The leader's term.
    pub term: Term,
    /// The node to take over.
    pub target: NodeId,
}

/// Tells the owner the transfer of `term` timed out.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct AbortTransfer {
    /// The leader's term.
    pub term: Term,
}

/// Asks the owner (as leader of `term`) to append a configuration.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<LogId, Refusal>")]
pub struct ProposeConfig {
    /// The leader's term.
    pub term: Term,
    /// The configuration.
    pub membership: Membership,
}

/// Asks the owner to snapshot the state machine and purge the log.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<SnapshotMeta, Refusal>")]
pub struct Compact {
    /// Entries to keep below the snapshot.
    pub keep_entries: u64,
}

/// Hands a complete snapshot from `leader` of `term` to the owner.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct InstallSnapshotData {
    /// The leader's term.
    pub term: Term,
    /// The leader.
    pub leader: NodeId,
    /// The snapshot.
    pub snapshot: Snapshot,
}

/// Tells the owner (leader of `term`) that `peer` installed the snapshot.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct SnapshotSent {
    /// The leader's term.
    pub term: Term,
    /// The follower.
    pub peer: NodeId,
    /// What it now holds.
    pub last_included: LogId,
}

/// A client proposal as a mailbox message; answered with the entry's log
/// position and the state machine's output once the entry is committed and
/// applied, or with why not. ([`RaftNode`](crate::node::RaftNode) uses the
/// cheaper [`SubmissionQueue`]; this message serves callers that hold only
/// the LogReplicator's address, or another actor in its place.)
pub struct Propose<C, O> {
    /// The command.
    pub command: C,
    /// The proposing client.
    pub client_id: ClientId,
    _output: PhantomData<fn() -> O>,
}

impl<C, O> Propose<C, O> {
    /// A proposal of `command` by `client_id`.
    pub fn new(command: C, client_id: ClientId) -> Self {
        Self {
            command,
            client_id,
            _output: PhantomData,
        }
    }
}

impl<C: 'static, O: 'static> Message for Propose<C, O> {
    type Result = Result<Committed<O>, ProposeError>;
}

/// Several client proposals in one message (one mailbox trip for the whole
/// batch); answered with one result per command, in order, once every one of
/// them is known.
pub struct ProposeBatch<C, O> {
    /// The commands, in order.
    pub commands: Vec<C>,
    /// The proposing client.
    pub client_id: ClientId,
    _output: PhantomData<fn() -> O>,
}

impl<C, O> ProposeBatch<C, O> {
    /// A batch of `commands` by `client_id`.
    pub fn new(commands: Vec<C>, client_id: ClientId) -> Self {
        Self {
            commands,
            client_id,
            _output: PhantomData,
        }
    }
}

impl<C: 'static, O: 'static> Message for ProposeBatch<C, O> {
    type Result = Vec<Result<Committed<O>, ProposeError>>;
}

/// What a client is answered for one proposal.
pub type ProposeResult<O> = Result<Committed<O>, ProposeError>;

/// One proposal waiting in a [`SubmissionQueue`].
pub struct Submission<C, O> {
    /// The command.
    pub command: C,
    /// The proposing client.
    pub client_id: ClientId,
    /// Where its result goes.
    pub reply: tokio::sync::oneshot::Sender<ProposeResult<O>>,
}

/// What [`SubmissionQueue::push`] did with a submission.
pub enum Pushed<C, O> {
    /// Queued; the queue was idle, so the owner must be woken with one
    /// [`DrainSubmissions`].
    Wake,
    /// Queued behind others; a [`DrainSubmissions`] is already on its way.
    Queued,
    /// Not queued: the owner is stopped or the queue is full.
    Refused(Submission<C, O>, ProposeError),
}

/// Client proposals on their way to the LogReplicator without a mailbox
/// message each: clients push here, and the one [`DrainSubmissions`] sent
/// when the queue goes from idle to busy makes the LogReplicator take every
/// proposal queued by then as one batch. Bounded (a full queue refuses with
/// [`ProposeError::Busy`]); closed while the owner is stopped.
pub struct SubmissionQueue<C, O> {
    state: std::sync::Mutex<QueueState<C, O>>,
    capacity: usize,
}

struct QueueState<C, O> {
    items: Vec<Submission<C, O>>,
    /// A [`DrainSubmissions`] was sent and not handled yet.
    wake_pending: bool,
    open: bool,
}

impl<C, O> SubmissionQueue<C, O> {
    /// An open, empty queue holding at most `capacity` proposals.
    pub fn new(capacity: usize) -> Self {
        Self {
            state: std::sync::Mutex::new(QueueState {
                items: Vec::new(),
                wake_pending: false,
                open: true,
            }),
            capacity: capacity.max(1),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState<C, O>> {
        // Nothing panics while holding the lock; a poisoned lock still holds
        // a consistent queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `s` (see [`Pushed`]).
    pub fn push(&self, s: Submission<C, O>) -> Pushed<C, O> {
        let mut st = self.state();
        if !st.open {
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

    /// Moves every queued proposal to `into` (in arrival order); the next
    /// push wakes the owner again.
    pub fn take_into(&self, into: &mut Vec<Submission<C, O>>) {
        let mut st = self.state();
        st.wake_pending = false;
        if into.is_empty() {
            std::mem::swap(&mut st.items, into);
        } else {
            into.append(&mut st.items);
        }
    }

    /// Closes the queue (the owner stops): returns what was queued; pushes
    /// are refused until [`reopen`](Self::reopen).
    pub fn close(&self) -> Vec<Submission<C, O>> {
        let mut st = self.state();
        st.open = false;
        st.wake_pending = false;
        std::mem::take(&mut st.items)
    }

    /// Accepts pushes again (the owner (re)started). Returns whether
    /// proposals are waiting (the owner must drain them: a wake sent before
    /// a restart may be lost).
    pub fn reopen(&self) -> bool {
        let mut st = self.state();
        st.open = true;
        !st.items.is_empty()
    }
}

/// Wakes the LogReplicator to take the proposals of its
/// [`SubmissionQueue`].
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct DrainSubmissions;

/// What a linearizable read computes from the state machine.
pub type ReadFn<SM> = Box<dyn FnOnce(&SM) -> Box<dyn Any + Send> + Send>;

/// A linearizable read through ReadIndex: `query` runs on the state machine
/// once the leader confirmed its leadership and applied the read index.
pub struct Read<SM> {
    /// The query.
    pub query: ReadFn<SM>,
}

impl<SM: 'static> Message for Read<SM> {
    type Result = Result<Box<dyn Any + Send>, ProposeError>;
}

/// Asks the MembershipManager to change the configuration; answered when the
/// change is committed (or failed).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<Membership, MembershipChangeError>")]
pub struct ChangeMembership(pub ChangeKind);

/// Asks LeaderElection to hand leadership to `target`.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), Refusal>")]
pub struct TransferLeadership {
    /// The node to take over.
    pub target: NodeId,
}

/// A snapshot of a node's Raft state, for tests, metrics and operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftStatus {
    /// The node.
    pub id: NodeId,
    /// Current term.
    pub term: Term,
    /// Current role.
    pub role: NodeState,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit_index: LogIndex,
    /// Applied index.
    pub last_applied: LogIndex,
    /// Last log id.
    pub last_log: LogId,
    /// First index held in the log.
    pub first_log_index: LogIndex,
    /// Last index covered by the latest snapshot.
    pub snapshot_index: LogIndex,
    /// Configuration in effect.
    pub membership: Membership,
}

/// Asks the owner for its [`RaftStatus`] (`None` while it is restarting).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Option<RaftStatus>")]
pub struct GetRaftStatus;

/// Makes the receiving component panic: fault injection for tests and chaos
/// experiments (the supervisor restarts it by the node's strategy).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// The owner's handles the other components use: the event stream
/// ([`Subscribe`]) and the requests (all term-carrying).
#[derive(Clone)]
pub struct OwnerHandles {
    /// [`Subscribe`]: the owner's events, starting with its current state.
    pub subscribe: Recipient<Subscribe>,
    /// [`BeginElection`].
    pub begin_election: Recipient<BeginElection>,
    /// [`BecomeLeader`].
    pub become_leader: Recipient<BecomeLeader>,
    /// [`StepDown`].
    pub step_down: Recipient<StepDown>,
    /// [`ObserveTerm`].
    pub observe_term: Recipient<ObserveTerm>,
    /// [`ObserveLeader`].
    pub observe_leader: Recipient<ObserveLeader>,
    /// [`StartTransfer`].
    pub start_transfer: Recipient<StartTransfer>,
    /// [`AbortTransfer`].
    pub abort_transfer: Recipient<AbortTransfer>,
    /// [`ProposeConfig`].
    pub propose_config: Recipient<ProposeConfig>,
    /// [`Compact`].
    pub compact: Recipient<Compact>,
    /// [`InstallSnapshotData`].
    pub install_snapshot: Recipient<InstallSnapshotData>,
    /// [`SnapshotSent`].
    pub snapshot_sent: Recipient<SnapshotSent>,
}

impl OwnerHandles {
    /// The handles of an actor that handles every owner request.
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<Subscribe>
            + Handler<BeginElection>
            + Handler<BecomeLeader>
            + Handler<StepDown>
            + Handler<ObserveTerm>
            + Handler<ObserveLeader>
            + Handler<StartTransfer>
            + Handler<AbortTransfer>
            + Handler<ProposeConfig>
            + Handler<Compact>
            + Handler<InstallSnapshotData>
            + Handler<SnapshotSent>,
    {
        Self {
            subscribe: addr.clone().recipient(),
            begin_election: addr.clone().recipient(),
            become_leader: addr.clone().recipient(),
            step_down: addr.clone().recipient(),
            observe_term: addr.clone().recipient(),
            observe_leader: addr.clone().recipient(),
            start_transfer: addr.clone().recipient(),
            abort_transfer: addr.clone().recipient(),
            propose_config: addr.clone().recipient(),
            compact: addr.clone().recipient(),
            install_snapshot: addr.clone().recipient(),
            snapshot_sent: addr.clone().recipient(),
        }
    }
}

/// The reply to a request answered later without spawning a task per
/// request (actix's `ResponseFuture` spawns one): the handler returns
/// [`Reply::Later`] with a [`ReplySlot`] it keeps; actix puts the requester's
/// channel in the slot right after the handler returns; the actor answers
/// through the slot when the result exists.
pub enum Reply<T> {
    /// Answered now.
    Now(T),
    /// Answered later through the slot.
    Later(ReplySlot<T>),
}

/// Where the requester's channel waits for a [`Reply::Later`].
pub struct ReplySlot<T>(std::rc::Rc<std::cell::RefCell<Option<actix::dev::OneshotSender<T>>>>);

impl<T> Clone for ReplySlot<T> {
    fn clone(&self) -> Self {
        Self(std::rc::Rc::clone(&self.0))
    }
}

impl<T> Default for ReplySlot<T> {
    fn default() -> Self {
        Self(std::rc::Rc::new(std::cell::RefCell::new(None)))
    }
}

impl<T> ReplySlot<T> {
    /// Answers the requester (if it is still waiting).
    pub fn send(self, value: T) {
        if let Some(tx) = self.0.borrow_mut().take() {
            // The requester may have given up: nothing to do then.
            let _ = tx.send(value);
        }
    }
}

impl<A, M, T> actix::dev::MessageResponse<A, M> for Reply<T>
where
    A: Actor,
    M: Message<Result = T>,
    T: 'static,
{
    fn handle(self, _ctx: &mut A::Context, tx: Option<actix::dev::OneshotSender<T>>) {
        match self {
            Reply::Now(v) => {
                if let Some(tx) = tx {
                    let _ = tx.send(v);
                }
            }
            Reply::Later(slot) => *slot.0.borrow_mut() = tx,
        }
    }
}

/// Logs a refusal from the owner at debug level (refusals are normal: the
/// request was based on a state that moved on).
pub(crate) fn log_refusal(component: &str, what: &str, r: &Result<(), Refusal>) {
    if let Err(e) = r {
        tracing::debug!(component, what, refusal = %e, "owner refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Queue = SubmissionQueue<u32, u32>;

    fn submission(
        command: u32,
    ) -> (
        Submission<u32, u32>,
        tokio::sync::oneshot::Receiver<ProposeResult<u32>>,
    ) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        (
            Submission {
                command,
                client_id: ClientId(1),
                reply,
            },
            answer,
        )
    }

    /// One wake-up per idle-to-busy transition; everything queued meanwhile
    /// is taken in arrival order.
    #[test]
    fn one_wake_per_batch_in_arrival_order() {
        let q = Queue::new(8);
        assert!(matches!(q.push(submission(1).0), Pushed::Wake));
        assert!(matches!(q.push(submission(2).0), Pushed::Queued));
        assert!(matches!(q.push(submission(3).0), Pushed::Queued));
        let mut taken = Vec::new();
        q.take_into(&mut taken);
        assert_eq!(
            taken.iter().map(|s| s.command).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let mut empty = Vec::new();
        q.take_into(&mut empty);
        assert!(empty.is_empty());
        assert!(matches!(q.push(submission(4).0), Pushed::Wake));
        q.take_into(&mut taken);
        assert_eq!(taken.len(), 4, "appended after what was there");
    }

    /// The bound: a full queue refuses with Busy (and hands the submission
    /// back); taking frees room.
    #[test]
    fn a_full_queue_refuses_busy() {
        let q = Queue::new(2);
        assert!(matches!(q.push(submission(1).0), Pushed::Wake));
        assert!(matches!(q.push(submission(2).0), Pushed::Queued));
        match q.push(submission(3).0) {
            Pushed::Refused(s, e) => {
                assert_eq!(s.command, 3);
                assert_eq!(e, ProposeError::Busy);
            }
            _ => panic!("a third proposal fits in a queue of two"),
        }
        q.take_into(&mut Vec::new());
        assert!(matches!(q.push(submission(3).0), Pushed::Wake));
    }

    /// A contact record keeps the last contact until taken, and is shared
    /// by its clones (the owner's and LeaderElection's).
    #[test]
    fn leader_contact_keeps_the_last_until_taken() {
        let mine = LeaderContact::new();
        let theirs = mine.clone();
        assert_eq!(theirs.take(), None);
        let at = |at_us| Contact {
            term: Term(3),
            leader: NodeId(2),
            at_us,
        };
        mine.record(at(10));
        mine.record(at(25));
        assert_eq!(theirs.take(), Some(at(25)));
        assert_eq!(theirs.take(), None);
        assert_eq!(
            at(25).event(),
            RaftEvent::HeardFromLeader {
                term: Term(3),
                leader: NodeId(2)
            }
        );
    }

    /// A closed queue returns what it held and refuses with Unknown until
    /// it is reopened; reopening tells whether proposals wait.
    #[test]
    fn closed_queue_refuses_until_reopened() {
        let q = Queue::new(4);
        assert!(matches!(q.push(submission(1).0), Pushed::Wake));
        let held = q.close();
        assert_eq!(held.len(), 1);
        assert!(matches!(
            q.push(submission(2).0),
            Pushed::Refused(_, ProposeError::Unknown)
        ));
        assert!(!q.reopen(), "nothing waits");
        assert!(matches!(q.push(submission(3).0), Pushed::Wake));
        assert!(q.reopen(), "a proposal waits");
    }
}
