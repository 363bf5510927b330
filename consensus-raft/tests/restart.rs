//! Restarts of a single component, driven message by message: what a
//! restarted LogReplicator may trust, and how the other components learn
//! the owner's state again.
//!
//! Each test starts one node (node 1 of the configuration {1, 2, 3}) whose
//! peers are played by the test: it delivers their messages to the node's
//! inbox and reads what the node sends from a channel. The clock is paused,
//! so timeouts fire only when the test lets virtual time pass.
#![forbid(unsafe_code)]

use actix::prelude::*;
use consensus_actors::kv::{KvCommand, KvStore};
use consensus_actors::safety::SafetySink;
use consensus_actors::sim::block_on_paused;
use consensus_actors::storage::{
    Durable, HardStateStore, LogStore, MemStorage, Snapshot as StoredSnapshot, SnapshotStore,
    StorageError, StorageResult,
};
use consensus_actors::supervision::install_panic_hook;
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{LogId, NodeState};
use consensus_actors::types::{LogIndex, NodeId, Term};
use consensus_raft::actors::{
    AbortTransfer, BecomeLeader, BeginElection, Compact, InstallSnapshotData, LeaderElection,
    LogReplicator, ObserveLeader, ObserveTerm, OwnerHandles, ProposeConfig, RaftEvents,
    SnapshotSent, StartTransfer, StepDown, Subscribe,
};
use consensus_raft::error::Refusal;
use consensus_raft::events::{HardState, RaftEvent, SnapshotMeta};
use consensus_raft::messages::{EntryRef, RaftMessage, RequestVote};
use consensus_raft::node::{components, RaftNode, RaftNodeBuilder};
use consensus_raft::{Membership, RaftConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

type Msg = RaftMessage<KvCommand>;
type Store = MemStorage<HardState, EntryRef<KvCommand>>;

/// A [`MemStorage`] with faults: once `armed`, the next `sync` panics (a
/// crash of the LogReplicator between a write and its sync); while
/// `fail_loads`, reading the hard state fails (recovery is impossible).
#[derive(Clone, Default)]
struct PanicOnSync {
    inner: Store,
    armed: Arc<AtomicBool>,
    fail_loads: Arc<AtomicBool>,
}

impl HardStateStore<HardState> for PanicOnSync {
    fn save_hard_state(&mut self, state: &HardState) -> StorageResult<()> {
        self.inner.save_hard_state(state)
    }
    fn load_hard_state(&self) -> StorageResult<Option<HardState>> {
        if self.fail_loads.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable);
        }
        self.inner.load_hard_state()
    }
}

impl LogStore<EntryRef<KvCommand>> for PanicOnSync {
    fn first_index(&self) -> LogIndex {
        self.inner.first_index()
    }
    fn last_index(&self) -> LogIndex {
        self.inner.last_index()
    }
    fn append(&mut self, entries: &[EntryRef<KvCommand>]) -> StorageResult<()> {
        self.inner.append(entries)
    }
    fn entry(&self, index: LogIndex) -> StorageResult<Option<EntryRef<KvCommand>>> {
        self.inner.entry(index)
    }
    fn entries(
        &self,
        from: LogIndex,
        to_exclusive: LogIndex,
        max_entries: usize,
    ) -> StorageResult<Vec<EntryRef<KvCommand>>> {
        self.inner.entries(from, to_exclusive, max_entries)
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> StorageResult<()> {
        self.inner.truncate_suffix(from)
    }
    fn purge_prefix(&mut self, upto: LogIndex) -> StorageResult<()> {
        self.inner.purge_prefix(upto)
    }
}

impl SnapshotStore for PanicOnSync {
    fn save_snapshot(&mut self, snapshot: StoredSnapshot) -> StorageResult<()> {
        self.inner.save_snapshot(snapshot)
    }
    fn load_snapshot(&self) -> StorageResult<Option<StoredSnapshot>> {
        self.inner.load_snapshot()
    }
}

impl Durable for PanicOnSync {
    fn sync(&mut self) -> StorageResult<()> {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("injected crash between a write and its sync");
        }
        self.inner.sync()
    }
}

/// The node's outgoing messages, as a channel the test reads.
struct Outbox(mpsc::UnboundedSender<Envelope<Msg>>);

impl Actor for Outbox {
    type Context = Context<Self>;
}

impl Handler<Envelope<Msg>> for Outbox {
    type Result = ();
    fn handle(&mut self, env: Envelope<Msg>, _ctx: &mut Context<Self>) {
        let _ = self.0.send(env);
    }
}

/// A config in which node 1 does not campaign while a test runs.
fn quiet_config() -> RaftConfig {
    RaftConfig {
        election_timeout_ms: (60_000, 120_000),
        ..RaftConfig::default()
    }
}

/// Node 1 of {1, 2, 3} over `storage`; its messages come out of the
/// returned channel.
fn start_node<S>(
    storage: S,
    cfg: RaftConfig,
) -> (RaftNode<KvStore>, mpsc::UnboundedReceiver<Envelope<Msg>>)
where
    S: consensus_raft::actors::RaftStorage<KvCommand>,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let outbox = Outbox(tx).start();
    let node = RaftNodeBuilder::new(
        NodeId(1),
        cfg,
        Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
        storage,
        KvStore::default,
        Transport::new(NodeId(1), outbox.recipient()),
    )
    .start();
    (node, rx)
}

fn request_vote(term: u64, candidate: u64) -> Envelope<Msg> {
    Envelope {
        from: NodeId(candidate),
        to: NodeId(1),
        msg: RaftMessage::RequestVote(RequestVote {
            term: Term(term),
            candidate_id: NodeId(candidate),
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            pre_vote: false,
            leadership_transfer: false,
        }),
    }
}

/// The next message the node sends, within `limit` of virtual time.
async fn next_sent(
    rx: &mut mpsc::UnboundedReceiver<Envelope<Msg>>,
    limit: Duration,
) -> Option<Envelope<Msg>> {
    tokio::time::timeout(limit, rx.recv()).await.ok().flatten()
}

/// Figure 2: `currentTerm` and `votedFor` are "updated on stable storage
/// before responding to RPCs". The LogReplicator saves the vote for node 2,
/// then crashes in the sync; the supervisor restarts it, and node 2 asks
/// again. Whatever the restarted owner answers on the recovered vote must
/// survive a crash of the machine right after the answer: a vote granted on
/// an unsynced record would be forgotten, and node 1 could then vote for
/// another candidate in the same term (two leaders in term 5).
#[test]
fn a_restarted_owner_answers_only_on_synced_state() {
    install_panic_hook();
    block_on_paused(async {
        let storage = PanicOnSync::default();
        let (node, mut rx) = start_node(storage.clone(), quiet_config());
        storage.armed.store(true, Ordering::SeqCst);
        node.inbox().do_send(request_vote(5, 2));
        // The sync panicked: nothing was answered.
        assert!(next_sent(&mut rx, Duration::from_millis(50))
            .await
            .is_none());
        assert!(!storage.armed.load(Ordering::SeqCst), "the sync ran");
        // The restarted owner is asked again.
        node.inbox().do_send(request_vote(5, 2));
        let reply = next_sent(&mut rx, Duration::from_millis(50))
            .await
            .expect("the restarted owner answers");
        let RaftMessage::RequestVoteResponse(r) = reply.msg else {
            panic!("unexpected {:?}", reply.msg);
        };
        assert!(r.vote_granted && r.term == Term(5), "{r:?}");
        // The machine crashes right after the answer: the vote must be on
        // stable storage.
        storage.inner.crash();
        assert_eq!(
            storage.inner.load_hard_state().expect("readable"),
            Some(HardState {
                term: Term(5),
                voted_for: Some(NodeId(2)),
            }),
            "the vote node 1 answered with was not durable"
        );
        node.shutdown().await;
    })
    .expect("runtime");
}

/// An owner that could not recover (its store cannot be read) has no state
/// to decide on: it refuses requests with [`Refusal::Unavailable`], which a
/// requester retries on, not with `NotLeader`, which is a statement about
/// a state it does not have.
#[test]
fn an_owner_without_state_refuses_as_unavailable() {
    block_on_paused(async {
        let storage = PanicOnSync::default();
        storage.fail_loads.store(true, Ordering::SeqCst);
        let (tx, _rx) = mpsc::unbounded_channel();
        let outbox = Outbox(tx).start();
        let owner = LogReplicator::new(
            NodeId(1),
            quiet_config(),
            Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
            storage,
            Arc::new(KvStore::default),
            Transport::new(NodeId(1), outbox.recipient()),
            SafetySink::noop(),
            None,
            tokio::time::Instant::now(),
        )
        .start();
        let asked = owner
            .send(BeginElection {
                expected_term: Term(0),
                pre_vote: false,
                transfer: false,
            })
            .await
            .expect("the owner runs");
        assert_eq!(asked, Err(Refusal::Unavailable));
        let asked = owner
            .send(StartTransfer {
                term: Term(0),
                target: NodeId(2),
            })
            .await
            .expect("the owner runs");
        assert_eq!(asked, Err(Refusal::Unavailable));
    })
    .expect("runtime");
}

/// What the fake owner below was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Asked {
    BeginElection(Term),
    StepDown(Term),
}

/// An owner played by the test, for one LeaderElection: it resynchronises
/// the component with a state taken just before the owner moved on (it
/// became leader of term 5 right after), and records what it is asked.
struct FakeOwner {
    asked: mpsc::UnboundedSender<Asked>,
}

impl Actor for FakeOwner {
    type Context = Context<Self>;
}

fn voters() -> Membership {
    Membership::new([NodeId(1), NodeId(2), NodeId(3)])
}

fn membership_event() -> RaftEvent {
    RaftEvent::MembershipChanged {
        term: Term(5),
        effective_id: LogId::default(),
        effective: voters(),
        committed_id: LogId::default(),
        committed: voters(),
    }
}

/// The state the owner is in when the component resynchronises: candidate
/// of term 5.
fn candidate_state() -> Vec<RaftEvent> {
    vec![
        RaftEvent::RoleChanged {
            term: Term(5),
            role: NodeState::Candidate,
            leader: None,
        },
        membership_event(),
    ]
}

/// What the owner publishes next: it won term 5.
fn became_leader() -> Vec<RaftEvent> {
    vec![RaftEvent::RoleChanged {
        term: Term(5),
        role: NodeState::Leader,
        leader: Some(NodeId(1)),
    }]
}

impl Handler<Subscribe> for FakeOwner {
    type Result = ();
    fn handle(&mut self, m: Subscribe, _ctx: &mut Context<Self>) {
        assert_eq!(m.name, components::LEADER_ELECTION);
        // As the LogReplicator does: the state now, through the subscriber's
        // event channel; the owner moves on at once and publishes.
        m.events.do_send(RaftEvents(candidate_state()));
        m.events.do_send(RaftEvents(became_leader()));
    }
}

impl Handler<BeginElection> for FakeOwner {
    type Result = Result<(), Refusal>;
    fn handle(&mut self, m: BeginElection, _ctx: &mut Context<Self>) -> Self::Result {
        let _ = self.asked.send(Asked::BeginElection(m.expected_term));
        Err(Refusal::AlreadyLeader)
    }
}

impl Handler<StepDown> for FakeOwner {
    type Result = Result<(), Refusal>;
    fn handle(&mut self, m: StepDown, _ctx: &mut Context<Self>) -> Self::Result {
        let _ = self.asked.send(Asked::StepDown(m.term));
        Ok(())
    }
}

/// The other owner requests: refused (LeaderElection does not make them in
/// this test, or their answer does not matter).
macro_rules! refuse {
    ($($msg:ty => $ret:ty),* $(,)?) => {$(
        impl Handler<$msg> for FakeOwner {
            type Result = $ret;
            fn handle(&mut self, _: $msg, _ctx: &mut Context<Self>) -> Self::Result {
                Err(Refusal::Unavailable)
            }
        }
    )*};
}

refuse!(
    BecomeLeader => Result<(), Refusal>,
    ObserveLeader => Result<(), Refusal>,
    StartTransfer => Result<(), Refusal>,
    AbortTransfer => Result<(), Refusal>,
    ProposeConfig => Result<LogId, Refusal>,
    Compact => Result<SnapshotMeta, Refusal>,
    InstallSnapshotData => Result<(), Refusal>,
    SnapshotSent => Result<(), Refusal>,
);

impl Handler<ObserveTerm> for FakeOwner {
    type Result = ();
    fn handle(&mut self, _: ObserveTerm, _ctx: &mut Context<Self>) {}
}

/// A (re)started LeaderElection resynchronises with the owner's state, and
/// the owner moves on meanwhile (here: from candidate to leader of term 5).
/// The component must end with the newest state, in the owner's order:
/// leader of term 5, so its check-quorum runs and (no peer answers) asks the
/// owner to step down. A copy that slid back to candidate would campaign
/// again in term 5 instead, and check-quorum would stay off.
#[test]
fn a_restarted_component_ends_with_the_owners_newest_state() {
    block_on_paused(async {
        let (tx, mut asked) = mpsc::unbounded_channel();
        let owner = FakeOwner { asked: tx }.start();
        let cfg = RaftConfig::default();
        let _election = LeaderElection::<KvCommand>::start(LeaderElection::new(
            NodeId(1),
            cfg.clone(),
            7,
            OwnerHandles::of(&owner),
            tokio::time::Instant::now(),
        ));
        let first = tokio::time::timeout(
            Duration::from_micros(4 * cfg.election_timeout_max_us()),
            asked.recv(),
        )
        .await
        .expect("LeaderElection asks the owner something")
        .expect("open");
        assert_eq!(
            first,
            Asked::StepDown(Term(5)),
            "LeaderElection acted as candidate of term 5 after it learned it leads"
        );
    })
    .expect("runtime");
}
