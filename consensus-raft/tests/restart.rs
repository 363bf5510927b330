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
use consensus_actors::types::{LogIndex, NodeId, Term};
use consensus_raft::actors::{
    BeginElection, EventSubscribers, LogReplicator, RaftEvents, StartTransfer,
};
use consensus_raft::error::Refusal;
use consensus_raft::events::HardState;
use consensus_raft::messages::{EntryRef, RaftMessage, RequestVote};
use consensus_raft::node::{RaftNode, RaftNodeBuilder};
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

/// Swallows the owner's events (the test plays the other components).
struct Deaf;

impl Actor for Deaf {
    type Context = Context<Self>;
}

impl Handler<RaftEvents> for Deaf {
    type Result = ();
    fn handle(&mut self, _: RaftEvents, _ctx: &mut Context<Self>) {}
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
        let deaf = Deaf.start().recipient();
        let owner = LogReplicator::new(
            NodeId(1),
            quiet_config(),
            Membership::new([NodeId(1), NodeId(2), NodeId(3)]),
            storage,
            Arc::new(KvStore::default),
            Transport::new(NodeId(1), outbox.recipient()),
            EventSubscribers {
                election: deaf.clone(),
                membership: deaf.clone(),
                compactor: deaf,
            },
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
