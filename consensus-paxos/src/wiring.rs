//! The messages between the components of one node: the contracts a
//! replacement component must honour. Every component is reached through a
//! `Recipient<M>` of one of these (see [`slots`](crate::slots)).
//!
//! | message | from → to | meaning |
//! |---|---|---|
//! | [`PeerMessage`] | router → any | a message from a peer |
//! | [`Submit`] | client API → Proposer | a client command |
//! | [`DrainSubmissions`] | client API → Proposer | take the commands queued in the [`SubmissionQueue`] |
//! | [`Proposed`] | Proposer → Learner | "I asked acceptors to accept this": the learner counts their `Accepted`; the first proposal of a batch carries its clients' answers (through a [`LocalFeed`] the stock Learner takes before each input) |
//! | [`Abandon`] | Proposer → Learner | the batch may never be delivered: answer its clients with this error |
//! | [`Decided`] | Learner → Proposer | a slot's value is chosen; the learner's next undelivered slot and its commit (a [`LearnerNews`], through a [`LocalFeed`]) |
//! | [`LeaderChange`] | election → Proposer | the ballot leader election's leader |
//! | [`BallotTooLow`] | Proposer → election | an acceptor promised a higher ballot |
//! | [`Configured`] | Learner → Proposer, election | the configurations known after a change was delivered (or installed); to the Proposer a [`LearnerNews`], in order with its decisions |
//! | [`FeedReady`] | feed → its consumer | a [`LocalFeed`] the consumer takes holds messages it asked to be woken for |
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
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
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

/// Microseconds since `epoch` on tokio's clock, read once per wake-up of
/// a simulation's runtime ([`consensus_actors::sim::clock`]) rather than at
/// every step.
pub(crate) fn micros_since(epoch: tokio::time::Instant) -> u64 {
    consensus_actors::sim::clock::micros_since(epoch)
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

/// What the Learner tells the Proposer, in the order it happened: a
/// decision must never overtake the configuration change delivered before
/// it (the leader proposes in slot `t` only once it knows `t`'s
/// acceptors), so both travel on one [`LocalFeed`].
#[derive(Debug, Clone)]
pub enum LearnerNews {
    /// A slot's value is chosen.
    Decided(Decided),
    /// The acceptors whose answers chose the last slot the Learner
    /// counted (sent when they change; thrifty phase 2 counts on them).
    Acked(Vec<NodeId>),
    /// A leader's Accept or commit went by at a ballot higher than any
    /// before: its node is the leader to name to clients.
    Leading(Ballot),
    /// The configurations changed.
    Configured(Configured),
}

/// Wakes the consumer of a [`LocalFeed`] of `M`: messages it asked to be
/// woken for are queued ([`LocalFeed::take_into`] takes them).
pub struct FeedReady<M>(PhantomData<fn() -> M>);

impl<M> FeedReady<M> {
    /// The wake.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<M> Default for FeedReady<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> std::fmt::Debug for FeedReady<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedReady")
    }
}

impl<M: 'static> Message for FeedReady<M> {
    type Result = ();
}

type Dispatch<M> = Box<dyn Fn(M) + Send + Sync>;

enum FeedRoute<M: 'static> {
    /// Each message is handed on at once (a consumer that takes messages
    /// one mailbox message at a time).
    Each(Dispatch<M>),
    /// Messages wait in the feed until the consumer takes them; it is
    /// woken through `wake` only when it asked to be.
    Taken(Option<Recipient<FeedReady<M>>>),
}

struct FeedState<M> {
    items: Vec<M>,
    /// The consumer asked to be woken by the next message.
    wake_wanted: bool,
    /// A [`FeedReady`] was sent and the consumer has not taken since.
    wake_pending: bool,
}

struct FeedInner<M: 'static> {
    route: OnceLock<FeedRoute<M>>,
    state: Mutex<FeedState<M>>,
    /// Whether `state.items` may hold messages (set and cleared under the
    /// lock): a consumer with nothing queued takes without locking.
    queued: AtomicBool,
}

/// A local channel from one component to another that costs no mailbox
/// message when the consumer can do without one. Bound by the node once
/// every component is built, in one of two ways:
///
/// * **each**: every message is handed to the consumer's handler as an
///   actor message (a component that takes messages only one at a time);
/// * **taken**: messages queue here, in order; the consumer takes them all
///   ([`take_into`](Self::take_into)) before it handles any other input,
///   and says with [`set_wake`](Self::set_wake) whether the next message
///   must wake it (one [`FeedReady`]) because it waits for it. A Proposer
///   with nothing queued does not wait for a decision: it reads the
///   decisions when its next client command or tick comes, one mailbox
///   hop fewer per command (as Raft's leader, which learns its commits
///   inside one actor).
///
/// A message sent before the feed is bound is dropped, as one to a
/// stopped actor would be. Cheap to clone (clones share the channel).
pub struct LocalFeed<M: 'static> {
    inner: Arc<FeedInner<M>>,
}

impl<M> Clone for LocalFeed<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M> Default for LocalFeed<M> {
    fn default() -> Self {
        Self {
            inner: Arc::new(FeedInner {
                route: OnceLock::new(),
                state: Mutex::new(FeedState {
                    items: Vec::new(),
                    wake_wanted: true,
                    wake_pending: false,
                }),
                queued: AtomicBool::new(false),
            }),
        }
    }
}

impl<M: Send + 'static> LocalFeed<M> {
    fn state(&self) -> MutexGuard<'_, FeedState<M>> {
        // Nothing panics while holding the lock; a poisoned lock still
        // holds a consistent queue.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bind(&self, route: FeedRoute<M>) {
        if self.inner.route.set(route).is_err() {
            tracing::warn!("a local feed was bound twice; the first binding stays");
        }
    }

    /// Hands every message to `each` at once.
    pub fn bind_each(&self, each: impl Fn(M) + Send + Sync + 'static) {
        self.bind(FeedRoute::Each(Box::new(each)));
    }

    /// Hands every message to `to` as an actor message.
    pub fn bind_recipient(&self, to: Recipient<M>)
    where
        M: Message,
        M::Result: Send,
    {
        self.bind_each(move |m| to.do_send(m));
    }

    /// Queues the messages for a consumer that takes them, waking it
    /// through `wake` when it asked to be (`None`: never woken; it takes
    /// them before each of its inputs and on its own timer).
    pub fn bind_taken(&self, wake: Option<Recipient<FeedReady<M>>>) {
        self.bind(FeedRoute::Taken(wake));
    }

    /// Whether the consumer takes the messages from the feed.
    pub fn is_taken(&self) -> bool {
        matches!(self.inner.route.get(), Some(FeedRoute::Taken(_)))
    }

    /// Sends `msg`: the consumer is woken if it asked to be.
    pub fn send(&self, msg: M) {
        self.push(msg, false);
    }

    /// Sends `msg` and wakes the consumer (unless a wake is on its way),
    /// whether or not it asked to be: news it must act on soon.
    pub fn send_urgent(&self, msg: M) {
        self.push(msg, true);
    }

    fn push(&self, msg: M, urgent: bool) {
        match self.inner.route.get() {
            None => tracing::debug!("local message before the node was wired: dropped"),
            Some(FeedRoute::Each(each)) => each(msg),
            Some(FeedRoute::Taken(wake)) => {
                let wake_now = {
                    let mut st = self.state();
                    st.items.push(msg);
                    self.inner.queued.store(true, Ordering::Release);
                    let now = (urgent || st.wake_wanted) && !st.wake_pending && wake.is_some();
                    if now {
                        st.wake_pending = true;
                    }
                    now
                };
                if let (true, Some(w)) = (wake_now, wake) {
                    w.do_send(FeedReady::new());
                }
            }
        }
    }

    /// Moves every queued message to `into`, in the order they were sent
    /// (the consumer's side; a wake sent before is spent).
    pub fn take_into(&self, into: &mut Vec<M>) {
        if !self.inner.queued.load(Ordering::Acquire) {
            // Nothing was pushed since the last take (so no wake either).
            return;
        }
        let mut st = self.state();
        self.inner.queued.store(false, Ordering::Release);
        st.wake_pending = false;
        if into.is_empty() {
            std::mem::swap(&mut st.items, into);
        } else {
            into.append(&mut st.items);
        }
    }

    /// The consumer's side: whether the next message must wake it. True
    /// when messages are already queued (take them, then ask again).
    #[must_use]
    pub fn set_wake(&self, wanted: bool) -> bool {
        let mut st = self.state();
        st.wake_wanted = wanted;
        !st.items.is_empty()
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.state().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts its wakes.
    #[derive(Default)]
    struct Consumer {
        woken: usize,
    }

    impl Actor for Consumer {
        type Context = Context<Self>;
    }

    impl Handler<FeedReady<u32>> for Consumer {
        type Result = ();

        fn handle(&mut self, _: FeedReady<u32>, _ctx: &mut Context<Self>) {
            self.woken += 1;
        }
    }

    /// Answers after every message sent before it: how often it was woken.
    #[derive(Message)]
    #[rtype(result = "usize")]
    struct Woken;

    impl Handler<Woken> for Consumer {
        type Result = usize;

        fn handle(&mut self, _: Woken, _ctx: &mut Context<Self>) -> usize {
            self.woken
        }
    }

    fn taken(feed: &LocalFeed<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        feed.take_into(&mut out);
        out
    }

    #[test]
    fn a_taken_feed_wakes_its_consumer_once_and_only_when_asked() {
        actix::System::new().block_on(async {
            let consumer = Consumer::default().start();
            let feed = LocalFeed::<u32>::default();
            feed.bind_taken(Some(consumer.clone().recipient()));
            assert!(feed.is_taken());
            // Not waiting: messages queue without a wake.
            assert!(!feed.set_wake(false));
            feed.send(1);
            feed.send(2);
            assert_eq!(consumer.send(Woken).await.ok(), Some(0));
            // Asking while messages are queued says so.
            assert!(feed.set_wake(true));
            assert_eq!(taken(&feed), vec![1, 2]);
            // Waiting: the first message wakes it, the next ones ride along.
            assert!(!feed.set_wake(true));
            feed.send(3);
            feed.send(4);
            assert_eq!(consumer.send(Woken).await.ok(), Some(1));
            assert_eq!(taken(&feed), vec![3, 4]);
            // Taking spends the wake: the next message wakes again.
            feed.send(5);
            assert_eq!(consumer.send(Woken).await.ok(), Some(2));
            assert_eq!(taken(&feed), vec![5]);
            // Urgent news wakes it even when it does not wait.
            assert!(!feed.set_wake(false));
            feed.send(6);
            feed.send_urgent(7);
            feed.send_urgent(8);
            assert_eq!(consumer.send(Woken).await.ok(), Some(3));
            assert_eq!(taken(&feed), vec![6, 7, 8], "in the order sent");
            assert!(feed.is_empty());
        });
    }

    #[test]
    fn an_each_feed_hands_every_message_on_at_once_and_an_unbound_one_drops() {
        let feed = LocalFeed::<u32>::default();
        feed.send(1); // dropped: not bound yet
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        feed.bind_each(move |m| sink.lock().unwrap_or_else(|e| e.into_inner()).push(m));
        assert!(!feed.is_taken());
        feed.send(2);
        feed.send_urgent(3);
        assert_eq!(*got.lock().unwrap_or_else(|e| e.into_inner()), vec![2, 3]);
        assert!(feed.is_empty());
    }
}
