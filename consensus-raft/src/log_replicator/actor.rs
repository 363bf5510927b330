//! The LogReplicator actor: runs the [`ReplicationCore`] (the owner of term,
//! vote and log) against real storage, the network and the other components.
//!
//! Effects are carried out in order; durable writes (hard state, entries,
//! truncations, snapshots, purges) go to storage first and are synced before
//! the first effect that anybody else can see (a message, a client result, an
//! event), so one sync covers a whole step: a group commit. Client proposals
//! and reads are batched: the proposals of the [`SubmissionQueue`] (where
//! [`RaftNode`](crate::node::RaftNode) puts them, waking the actor with one
//! [`DrainSubmissions`] per batch) and every [`Propose`], [`ProposeBatch`]
//! and [`Read`] waiting in the mailbox join the same batch, appended and
//! replicated together.
//!
//! Events go to the subscribers of the owner's event stream (see
//! [`subscription`](crate::actors::subscription)), each getting what it asked for,
//! one message per subscriber per step at most; a follower's repeated
//! contacts from its leader go to the subscriber's [`LeaderContact`](crate::actors::LeaderContact)
//! instead of a message per AppendEntries, when it gave one.

use crate::actors::subscription::Subscriptions;
use crate::actors::{
    micros_since_cached, AbortTransfer, BecomeLeader, BeginElection, Compact, DrainSubmissions,
    GetRaftStatus, InstallSnapshotData, ObserveLeader, ObserveTerm, PeerMessage, Propose,
    ProposeBatch, ProposeConfig, RaftStateMachine, RaftStatus, Read, ReadFn, Reply, ReplySlot,
    SnapshotSent, StartTransfer, StepDown, Submission, SubmissionQueue, Subscribe,
};
use crate::config::RaftConfig;
use crate::configuration::Membership;
use crate::error::{ProposeError, RecoveryError, Refusal};
use crate::events::{HardState, LogProgress, RaftEvent, Snapshot, SnapshotMeta};
use crate::log_replicator::{
    Accepted, Committed, Effect, EffectOf, Input, Proposal, ProposalId, ReadId, Recovered,
    ReplicationCore,
};
use crate::messages::{EntryRef, RaftMessage};
use crate::router::for_log_replicator;
use crate::safety::{
    became_leader, stepped_down, RaftSafetyEvent as SafetyRaftEvent, SafetyEvent, SafetySink,
};
use actix::prelude::*;
use consensus_actors::sim::TraceHandle;
use consensus_actors::storage::{Snapshot as StoredSnapshot, Storage, StorageError};
use consensus_actors::supervision::FailNode;
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{LogId, LogIndex, NodeId, NodeState, Term};
use serde::{de::DeserializeOwned, Serialize};
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A store for a Raft node replicating commands `C`: hard state
/// ([`HardState`]), log entries ([`EntryRef`]) and snapshots.
pub trait RaftStorage<C>: Storage<HardState, EntryRef<C>> + Unpin
where
    C: Clone + Serialize + DeserializeOwned,
{
}

impl<T, C> RaftStorage<C> for T
where
    T: Storage<HardState, EntryRef<C>> + Unpin,
    C: Clone + Serialize + DeserializeOwned,
{
}

type Output<SM> = <SM as consensus_actors::kv::StateMachine>::Output;
type Command<SM> = <SM as consensus_actors::kv::StateMachine>::Command;
type ReadReply = Result<Box<dyn Any + Send>, ProposeError>;
type ProposeReply<SM> = Result<Committed<Output<SM>>, ProposeError>;

/// The results of a [`ProposeBatch`], filled in as they come.
struct BatchReply<T> {
    results: Vec<Option<T>>,
    remaining: usize,
    slot: ReplySlot<Vec<T>>,
}

/// Who waits for a proposal's result.
enum Waiter<T> {
    /// A single [`Propose`].
    One(ReplySlot<T>),
    /// A proposal of the [`SubmissionQueue`].
    Queued(tokio::sync::oneshot::Sender<T>),
    /// Position `.1` of a [`ProposeBatch`].
    InBatch(std::rc::Rc<std::cell::RefCell<BatchReply<T>>>, usize),
}

impl<T> Waiter<T> {
    fn answer(self, result: T) {
        match self {
            Waiter::One(slot) => slot.send(result),
            Waiter::Queued(reply) => {
                // The client may have given up: nothing to do then.
                let _ = reply.send(result);
            }
            Waiter::InBatch(batch, i) => {
                let mut b = batch.borrow_mut();
                if b.results[i].is_none() {
                    b.results[i] = Some(result);
                    b.remaining -= 1;
                }
                if b.remaining == 0 {
                    let results = std::mem::take(&mut b.results)
                        .into_iter()
                        .flatten()
                        .collect();
                    b.slot.clone().send(results);
                }
            }
        }
    }
}

/// The clients waiting for their proposals, by id. Ids are handed out in
/// increasing order, so a deque indexed from the oldest id still waiting
/// holds them: insertion at the back and removal in any order are O(1)
/// (a `BTreeMap` cost a tree walk and rebalancing per proposal).
struct Waiters<T> {
    /// Id of `slots[0]`.
    first: u64,
    /// `None`: answered already, or an id given to a read.
    slots: std::collections::VecDeque<Option<Waiter<T>>>,
}

impl<T> Waiters<T> {
    fn new() -> Self {
        Self {
            first: 0,
            slots: std::collections::VecDeque::new(),
        }
    }

    /// Records the waiter of `id`, which must be above every id recorded
    /// before.
    fn insert(&mut self, id: ProposalId, waiter: Waiter<T>) {
        if self.slots.is_empty() {
            self.first = id.0;
        }
        let at = id.0 - self.first;
        assert!(
            at >= self.slots.len() as u64,
            "proposal ids are handed out in increasing order"
        );
        // Ids skipped (given to reads) hold nothing.
        while (self.slots.len() as u64) < at {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some(waiter));
    }

    /// Takes the waiter of `id`, if it still waits.
    fn remove(&mut self, id: ProposalId) -> Option<Waiter<T>> {
        let at = usize::try_from(id.0.checked_sub(self.first)?).ok()?;
        let waiter = self.slots.get_mut(at)?.take()?;
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.first += 1;
        }
        Some(waiter)
    }

    /// Takes every waiter, oldest first.
    fn take_all(&mut self) -> impl Iterator<Item = Waiter<T>> {
        self.first += self.slots.len() as u64;
        std::mem::take(&mut self.slots).into_iter().flatten()
    }
}

/// Runs the batch of proposals and reads collected from the mailbox.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// The LogReplicator component. See the [module documentation](self).
pub struct LogReplicator<SM: RaftStateMachine, S> {
    id: NodeId,
    cfg: RaftConfig,
    initial_membership: Membership,
    storage: S,
    make_sm: Arc<dyn Fn() -> SM + Send + Sync>,
    transport: Transport<RaftMessage<Command<SM>>>,
    /// The owner's event stream (see [`Subscribe`]).
    subscriptions: Subscriptions,
    safety: SafetySink,
    supervisor: Option<Recipient<FailNode>>,
    epoch: Instant,
    /// The last instant read and its microseconds since `epoch`.
    last_now: Option<(Instant, u64)>,
    trace: Option<TraceHandle>,
    core: Option<ReplicationCore<SM>>,
    next_id: u64,
    proposals: Waiters<ProposeReply<SM>>,
    reads: BTreeMap<ReadId, (ReadFn<SM>, ReplySlot<ReadReply>)>,
    batch: Vec<Proposal<Command<SM>>>,
    read_batch: Vec<ReadId>,
    /// The effects buffer handed back to the core (see
    /// [`ReplicationCore::swap_effects`]).
    spare_effects: Vec<EffectOf<SM>>,
    /// The events of a step, reused from step to step (empty between).
    spare_events: Vec<RaftEvent>,
    /// Digest buffers reused by the safety events this replicator reports
    /// (they are checked by reference and handed back).
    spare_digests: Vec<u64>,
    spare_terms_digests: Vec<(Term, u64)>,
    submissions: Arc<SubmissionQueue<Command<SM>, Output<SM>>>,
    spare_submissions: Vec<Submission<Command<SM>, Output<SM>>>,
    flush_scheduled: bool,
    unsynced: bool,
    failed: bool,
    /// Safety events held until the next sync succeeds: a snapshot install
    /// and the log events after it in the same step. The checker's mirror
    /// takes an installed snapshot as durable (a crash keeps it), so it
    /// must not hear of one whose sync then fails (a disk fault); the
    /// events after it wait too, to keep their order.
    held_safety: Vec<SafetyEvent>,
    /// The last [`RaftEvent::Progress`] published to the other components
    /// (see [`publishes`](Self::publishes)).
    published_progress: Option<LogProgress>,
    /// Where envelopes delivered here but handled by another component go
    /// (see [`with_router`](Self::with_router)).
    router: Option<Recipient<Envelope<RaftMessage<Command<SM>>>>>,
}

impl<SM, S> LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    /// A LogReplicator for node `id`. `initial_membership` is used when the
    /// storage holds no configuration (the bootstrap voters, or
    /// [`Membership::empty`] for a node that will be added later);
    /// `make_sm` builds an empty state machine (restored from the snapshot
    /// on every start). The other components subscribe to its events with
    /// [`Subscribe`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        cfg: RaftConfig,
        initial_membership: Membership,
        storage: S,
        make_sm: Arc<dyn Fn() -> SM + Send + Sync>,
        transport: Transport<RaftMessage<Command<SM>>>,
        safety: SafetySink,
        supervisor: Option<Recipient<FailNode>>,
        epoch: Instant,
    ) -> Self {
        Self {
            id,
            initial_membership,
            storage,
            make_sm,
            transport,
            subscriptions: Subscriptions::default(),
            safety,
            supervisor,
            epoch,
            last_now: None,
            trace: None,
            core: None,
            next_id: 0,
            proposals: Waiters::new(),
            reads: BTreeMap::new(),
            batch: Vec::new(),
            read_batch: Vec::new(),
            spare_effects: Vec::new(),
            spare_events: Vec::new(),
            spare_digests: Vec::new(),
            spare_terms_digests: Vec::new(),
            submissions: Arc::new(SubmissionQueue::new(cfg.max_pending_proposals)),
            spare_submissions: Vec::new(),
            cfg,
            flush_scheduled: false,
            unsynced: false,
            failed: false,
            held_safety: Vec::new(),
            published_progress: None,
            router: None,
        }
    }

    /// Makes this LogReplicator the node's inbox: it handles the
    /// [`Envelope`]s [`for_log_replicator`] itself (one mailbox hop from the
    /// network instead of two) and forwards every other envelope to
    /// `router`, which dispatches it to its component.
    #[must_use]
    pub fn with_router(mut self, router: Recipient<Envelope<RaftMessage<Command<SM>>>>) -> Self {
        self.router = Some(router);
        self
    }

    /// Records role changes and commit advances in a simulation trace (so
    /// the replay hash covers the protocol's state, not only its messages).
    #[must_use]
    pub fn with_trace(mut self, trace: Option<TraceHandle>) -> Self {
        self.trace = trace;
        self
    }

    /// Takes client proposals from `queue` (shared with the node's client
    /// handles) instead of a queue of its own.
    #[must_use]
    pub fn with_submissions(
        mut self,
        queue: Arc<SubmissionQueue<Command<SM>, Output<SM>>>,
    ) -> Self {
        self.submissions = queue;
        self
    }

    /// The queue clients push proposals to (then wake the actor with
    /// [`DrainSubmissions`] when [`SubmissionQueue::push`] says so).
    pub fn submissions(&self) -> Arc<SubmissionQueue<Command<SM>, Output<SM>>> {
        Arc::clone(&self.submissions)
    }

    fn now_us(&mut self) -> u64 {
        micros_since_cached(self.epoch, &mut self.last_now)
    }

    /// Reads term, vote, snapshot and log from storage.
    fn recover(&self) -> Result<ReplicationCore<SM>, String> {
        let hard_state = self
            .storage
            .load_hard_state()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let snapshot = match self.storage.load_snapshot().map_err(|e| e.to_string())? {
            Some(s) => Some(from_stored(s).map_err(|e| e.to_string())?),
            None => None,
        };
        let first = self.storage.first_index();
        let last = self.storage.last_index();
        let entries = if last >= first {
            self.storage
                .entries(first, last.next(), usize::MAX)
                .map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        let recovered = Recovered {
            hard_state,
            snapshot,
            entries,
            initial_membership: self.initial_membership.clone(),
        };
        let mut core = ReplicationCore::new(self.id, self.cfg.clone(), recovered, (self.make_sm)())
            .map_err(|e| e.to_string())?;
        core.set_observe_commits(self.safety.is_enabled());
        Ok(core)
    }

    fn fail(&mut self, reason: String) {
        if self.failed {
            return;
        }
        self.failed = true;
        // Not durable: the checker never hears of them.
        self.held_safety.clear();
        tracing::error!(node = %self.id, %reason, "log replicator cannot go on");
        match &self.supervisor {
            Some(s) => s.do_send(FailNode { reason }),
            None => tracing::error!(node = %self.id, "no supervisor to report the failure to"),
        }
    }

    fn store(&mut self, what: &str, r: Result<(), StorageError>) -> bool {
        match r {
            Ok(()) => {
                self.unsynced = true;
                true
            }
            Err(e) => {
                self.fail(format!("storage refused {what}: {e}"));
                false
            }
        }
    }

    /// Syncs the writes made since the last sync, if any (inlined: it is
    /// asked before every message and client answer, and almost always has
    /// nothing to do).
    #[inline]
    fn sync(&mut self) -> bool {
        !self.unsynced || self.sync_writes()
    }

    #[inline(never)]
    fn sync_writes(&mut self) -> bool {
        match self.storage.sync() {
            Ok(()) => {
                self.unsynced = false;
                for ev in self.held_safety.drain(..) {
                    self.safety.emit(ev);
                }
                true
            }
            Err(e) => {
                self.fail(format!("storage sync failed: {e}"));
                false
            }
        }
    }

    /// Carries out the core's effects in order (see the module
    /// documentation), then publishes the events.
    fn run_effects(&mut self) {
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let mut effects = core.swap_effects(std::mem::take(&mut self.spare_effects));
        let mut events = std::mem::take(&mut self.spare_events);
        for effect in effects.drain(..) {
            if self.failed {
                break;
            }
            self.run_effect(effect, &mut events);
        }
        self.spare_effects = effects;
        if !self.failed && self.sync() {
            self.publish(&events);
        }
        // Not published (the step failed): nobody hears of it.
        events.clear();
        self.spare_events = events;
    }

    /// Sends each subscriber the events of the step it asked for, and
    /// records repeated contacts from the leader (see [`Subscribe`]).
    fn publish(&mut self, events: &[RaftEvent]) {
        if events.is_empty() {
            return;
        }
        let now_us = micros_since_cached(self.epoch, &mut self.last_now);
        let core = self.core.as_ref();
        self.subscriptions.publish(events, now_us, || {
            core.and_then(|c| {
                c.snapshot_events().into_iter().find_map(|e| match e {
                    RaftEvent::Progress(p) => Some(p),
                    _ => None,
                })
            })
        });
    }

    /// Whether the other components get the progress `p` (every other
    /// event is published): a [`RaftEvent::Progress`] in which only the log
    /// end moved (an append not yet committed) is not, since no component
    /// acts on the log end; they learn it with the next commit. Saves two
    /// mailbox messages per proposal batch at the leader. Asked as the
    /// effects are carried out, so a progress not published is never
    /// collected.
    fn publishes(&mut self, p: &LogProgress) -> bool {
        if !progress_to_publish(self.published_progress.as_ref(), p) {
            return false;
        }
        self.published_progress = Some(*p);
        true
    }

    fn run_effect(&mut self, effect: EffectOf<SM>, events: &mut Vec<RaftEvent>) {
        let node = self.id;
        match effect {
            Effect::SaveHardState(hs) => {
                let r = self.storage.save_hard_state(&hs);
                self.store("the hard state", r);
            }
            Effect::AppendLog(entries) => {
                if self.safety.is_enabled() {
                    self.report_appended(&entries);
                }
                let r = self.storage.append(&entries);
                self.store("log entries", r);
            }
            Effect::TruncateLog(from) => {
                self.report_durable(|| SafetyRaftEvent::Truncated {
                    node,
                    from_index: from,
                });
                let r = self.storage.truncate_suffix(from);
                self.store("a truncation", r);
            }
            Effect::SaveSnapshot(s) => {
                if self.safety.is_enabled() {
                    self.held_safety.push(SafetyEvent::Protocol(
                        SafetyRaftEvent::SnapshotInstalled {
                            node,
                            last_index: s.meta.last_included.index,
                            last_term: s.meta.last_included.term,
                        },
                    ));
                }
                let r = to_stored(&s).and_then(|stored| self.storage.save_snapshot(stored));
                self.store("a snapshot", r);
            }
            Effect::DiscardLog => {
                let first = self.storage.first_index();
                let r = self.storage.truncate_suffix(first);
                self.store("discarding the log", r);
            }
            Effect::PurgeLog(upto) => {
                let r = self.storage.purge_prefix(upto);
                self.store("a purge", r);
            }
            Effect::Send { to, msg } => {
                if self.sync() {
                    self.transport.send(to, msg);
                }
            }
            Effect::ProposalResult { id, result } => {
                if self.sync() {
                    if let Some(waiter) = self.proposals.remove(id) {
                        waiter.answer(result);
                    }
                }
            }
            Effect::ReadReady { id } => {
                if self.sync() {
                    if let (Some((query, slot)), Some(core)) = (self.reads.remove(&id), &self.core)
                    {
                        slot.send(Ok(query(core.state_machine())));
                    }
                }
            }
            Effect::ReadFailed { id, error } => {
                if let Some((_, slot)) = self.reads.remove(&id) {
                    slot.send(Err(error));
                }
            }
            Effect::Progress(p) => self.collect_progress(p, events),
            Effect::HeardFromLeader { term, leader } => {
                events.push(RaftEvent::HeardFromLeader { term, leader });
            }
            Effect::Event(ev) => {
                let ev = *ev;
                if let RaftEvent::Progress(p) = ev {
                    // Built without Effect::event: the same as its own variant.
                    self.collect_progress(p, events);
                    return;
                }
                if let Some(trace) = &self.trace {
                    if let RaftEvent::RoleChanged { term, role, leader } = &ev {
                        trace.record_value(
                            node,
                            "raft-role",
                            &(term.get(), format!("{role:?}"), leader.map(NodeId::get)),
                        );
                    }
                }
                if let RaftEvent::RoleChanged { term, role, .. } = &ev {
                    let (term, role) = (*term, *role);
                    self.safety.emit_with(|| {
                        if role == NodeState::Leader {
                            became_leader(node, term)
                        } else {
                            stepped_down(node)
                        }
                    });
                }
                events.push(ev);
            }
            Effect::Committed(entries) => {
                let term = self.core.as_ref().map(ReplicationCore::term);
                if let (Some(first), Some(last), Some(term)) =
                    (entries.first(), entries.last(), term)
                {
                    // The core applies what it commits, at once: one event
                    // says both (a CommitAdvanced to the last entry and an
                    // AppliedBatch of them all).
                    debug_assert_eq!(
                        last.index.get() - first.index.get() + 1,
                        entries.len() as u64
                    );
                    let mut digests = std::mem::take(&mut self.spare_digests);
                    digests.extend(entries.iter().map(|e| e.command_digest()));
                    let event = SafetyEvent::Protocol(SafetyRaftEvent::Committed {
                        node,
                        term,
                        first_index: first.index,
                        digests,
                    });
                    self.safety.emit_ref(&event);
                    if let SafetyEvent::Protocol(SafetyRaftEvent::Committed {
                        mut digests, ..
                    }) = event
                    {
                        digests.clear();
                        self.spare_digests = digests;
                    }
                }
            }
        }
    }

    /// Records the progress `p` in the trace, and collects it in `events`
    /// if it is to be published (see [`publishes`](Self::publishes)).
    #[inline]
    fn collect_progress(&mut self, p: LogProgress, events: &mut Vec<RaftEvent>) {
        if let Some(trace) = &self.trace {
            trace.record_value(
                self.id,
                "raft-commit",
                &(p.commit_index.get(), p.last_log_index.get()),
            );
        }
        if self.publishes(&p) {
            events.push(RaftEvent::Progress(p));
        }
    }

    /// Reports the safety event of a durable effect now, or after the
    /// sync if events are held (see `held_safety`).
    fn report_durable(&mut self, make: impl FnOnce() -> SafetyRaftEvent) {
        if self.held_safety.is_empty() {
            self.safety.emit_with(make);
        } else if self.safety.is_enabled() {
            self.held_safety.push(SafetyEvent::Protocol(make()));
        }
    }

    /// Reports appended entries to the safety checker (their command
    /// digests are computed once per entry, whichever node asks first, and
    /// remembered by the entry for its apply and the other nodes).
    fn report_appended(&mut self, entries: &[EntryRef<Command<SM>>]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut terms_digests = std::mem::take(&mut self.spare_terms_digests);
        terms_digests.extend(entries.iter().map(|e| (e.term, e.command_digest())));
        let event = SafetyEvent::Protocol(SafetyRaftEvent::AppendedBatch {
            node: self.id,
            first_index: first.index,
            entries: terms_digests,
        });
        if !self.held_safety.is_empty() {
            self.held_safety.push(event);
            return;
        }
        self.safety.emit_ref(&event);
        if let SafetyEvent::Protocol(SafetyRaftEvent::AppendedBatch { mut entries, .. }) = event {
            entries.clear();
            self.spare_terms_digests = entries;
        }
    }

    /// Runs `f` on the core (if running) and carries out the effects.
    fn step<R>(&mut self, f: impl FnOnce(&mut ReplicationCore<SM>, u64) -> R) -> Option<R> {
        if self.failed {
            return None;
        }
        let now = self.now_us();
        let core = self.core.as_mut()?;
        let r = f(core, now);
        self.run_effects();
        Some(r)
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    fn drop_clients(&mut self) {
        for waiter in self.proposals.take_all() {
            waiter.answer(Err(ProposeError::Unknown));
        }
        for (_, (_, slot)) in std::mem::take(&mut self.reads) {
            slot.send(Err(ProposeError::Unknown));
        }
        self.batch.clear();
        self.read_batch.clear();
        self.flush_scheduled = false;
    }
}

/// Whether `p` tells the components something beyond `last` (the last
/// progress published): anything but the log end alone.
fn progress_to_publish(last: Option<&LogProgress>, p: &LogProgress) -> bool {
    match last {
        None => true,
        Some(q) => {
            LogProgress {
                last_log_index: p.last_log_index,
                ..*q
            } != *p
        }
    }
}

fn to_stored(s: &Snapshot) -> Result<StoredSnapshot, StorageError> {
    let meta =
        rmp_serde::to_vec(&s.meta.membership).map_err(|e| StorageError::Codec(e.to_string()))?;
    Ok(StoredSnapshot::new(
        s.meta.last_included.index,
        s.meta.last_included.term,
        meta,
        s.data.as_ref().clone(),
    ))
}

fn from_stored(s: StoredSnapshot) -> Result<Snapshot, RecoveryError> {
    let membership: Membership =
        rmp_serde::from_slice(&s.meta).map_err(|e| RecoveryError::BadSnapshot(e.to_string()))?;
    Ok(Snapshot {
        meta: SnapshotMeta {
            last_included: LogId::new(s.last_term, s.last_index),
            membership,
        },
        data: Arc::new(s.data),
    })
}

impl<SM, S> Actor for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.failed = false;
        // Recovery reads the store, and a store's reads include the writes
        // not synced yet: after a restart (`restarting` marks everything
        // unsynced) those may be writes of the incarnation that crashed
        // between a write and its sync. Make them durable before trusting
        // them (Figure 2: persisted "before responding to RPCs"); a store
        // that cannot sync fails the node.
        if self.unsynced && !self.sync_writes() {
            return;
        }
        // Held events were flushed by the sync above (or the node failed).
        self.held_safety.clear();
        if self.submissions.reopen() {
            // A wake sent before a restart may be gone with the old state.
            ctx.notify(DrainSubmissions);
        }
        match self.recover() {
            Ok(core) => {
                let last = core.log().last_index();
                let node = self.id;
                // Whatever the verifier saw beyond the recovered log was lost
                // with the crash (unsynced), and volatile state is gone.
                self.safety.emit_with(|| SafetyEvent::Crashed { node });
                self.safety.emit_with(|| SafetyRaftEvent::Truncated {
                    node,
                    from_index: last.next(),
                });
                let events = core.snapshot_events();
                self.published_progress = events.iter().find_map(|e| match e {
                    RaftEvent::Progress(p) => Some(*p),
                    _ => None,
                });
                self.core = Some(core);
                // Every subscriber (kept across the restart) gets the
                // recovered state, in order with the events that follow.
                self.subscriptions.resync_all(&events);
            }
            Err(reason) => {
                self.fail(format!("cannot recover from storage: {reason}"));
                return;
            }
        }
        let interval = Duration::from_millis(self.cfg.heartbeat_interval_ms);
        ctx.run_interval(interval, |act, _ctx| {
            act.step(|core, now| core.step(now, Input::Tick));
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        // Nobody will drain the queue: its clients learn the outcome is
        // unknown, and later ones are refused until a restart.
        for s in self.submissions.close() {
            let _ = s.reply.send(Err(ProposeError::Unknown));
        }
        self.drop_clients();
    }
}

impl<SM, S> LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    fn flush(&mut self) {
        // The batch buffer is drained, not given away: its allocation serves
        // every batch.
        let mut batch = std::mem::take(&mut self.batch);
        let reads = std::mem::take(&mut self.read_batch);
        self.step(|core, now| {
            if !batch.is_empty() {
                // The core drains the batch: its allocation stays here.
                let _ = core.step(now, Input::Propose(&mut batch));
            }
            if !reads.is_empty() {
                let _ = core.step(now, Input::ReadIndex(reads));
            }
        });
        batch.clear();
        if self.batch.is_empty() {
            self.batch = batch;
        }
    }
}

impl<SM, S> Supervised for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Everything in memory is suspect: forget it, recover from storage in
        // started(). Waiting clients learn the outcome is unknown. The store
        // may hold writes of this incarnation that were never synced (a
        // panic between a write and its sync, or inside the write): started()
        // syncs them before recovering.
        self.unsynced = true;
        self.core = None;
        self.published_progress = None;
        self.drop_clients();
    }
}

impl<SM, S> Handler<PeerMessage<Command<SM>>> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = ();

    fn handle(&mut self, m: PeerMessage<Command<SM>>, _ctx: &mut Context<Self>) {
        self.handle_peer(m.from, m.msg);
    }
}

impl<SM, S> Handler<Envelope<RaftMessage<Command<SM>>>> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = ();

    /// The node's inbox (see [`with_router`](LogReplicator::with_router)).
    fn handle(&mut self, env: Envelope<RaftMessage<Command<SM>>>, _ctx: &mut Context<Self>) {
        if env.to != self.id {
            tracing::warn!(node = %self.id, to = %env.to, "misrouted envelope dropped");
            return;
        }
        if for_log_replicator(&env.msg) {
            self.handle_peer(env.from, env.msg);
        } else if let Some(router) = &self.router {
            router.do_send(env);
        } else {
            tracing::debug!(
                message = env.msg.name(),
                "not for the log replicator (no router)"
            );
        }
    }
}

impl<SM, S> LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    fn handle_peer(&mut self, from: NodeId, msg: RaftMessage<Command<SM>>) {
        let input = match msg {
            RaftMessage::RequestVote(msg) => Input::RequestVote { from, msg },
            RaftMessage::AppendEntries(msg) => Input::AppendEntries { from, msg },
            RaftMessage::AppendEntriesResponse(msg) => Input::AppendEntriesResponse { from, msg },
            other => {
                tracing::debug!(message = other.name(), "not for the log replicator");
                return;
            }
        };
        // Peer messages are always accepted (answers are effects).
        let _ = self.step(|core, now| core.step(now, input));
    }
}

impl<SM, S> Handler<Propose<Command<SM>, Output<SM>>> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = Reply<ProposeReply<SM>>;

    fn handle(
        &mut self,
        m: Propose<Command<SM>, Output<SM>>,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        if self.core.is_none() || self.failed {
            return Reply::Now(Err(ProposeError::Unknown));
        }
        self.next_id += 1;
        let id = ProposalId(self.next_id);
        let slot = ReplySlot::default();
        self.proposals.insert(id, Waiter::One(slot.clone()));
        self.batch.push(Proposal {
            id,
            command: m.command,
            client_id: m.client_id,
        });
        self.schedule_flush(ctx);
        Reply::Later(slot)
    }
}

impl<SM, S> Handler<ProposeBatch<Command<SM>, Output<SM>>> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = Reply<Vec<ProposeReply<SM>>>;

    fn handle(
        &mut self,
        m: ProposeBatch<Command<SM>, Output<SM>>,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        let n = m.commands.len();
        if self.core.is_none() || self.failed {
            return Reply::Now((0..n).map(|_| Err(ProposeError::Unknown)).collect());
        }
        if n == 0 {
            return Reply::Now(Vec::new());
        }
        let slot = ReplySlot::default();
        let batch = std::rc::Rc::new(std::cell::RefCell::new(BatchReply {
            results: (0..n).map(|_| None).collect(),
            remaining: n,
            slot: slot.clone(),
        }));
        for (i, command) in m.commands.into_iter().enumerate() {
            self.next_id += 1;
            let id = ProposalId(self.next_id);
            self.proposals
                .insert(id, Waiter::InBatch(std::rc::Rc::clone(&batch), i));
            self.batch.push(Proposal {
                id,
                command,
                client_id: m.client_id,
            });
        }
        self.schedule_flush(ctx);
        Reply::Later(slot)
    }
}

impl<SM, S> Handler<Read<SM>> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = Reply<ReadReply>;

    fn handle(&mut self, m: Read<SM>, ctx: &mut Context<Self>) -> Self::Result {
        if self.core.is_none() || self.failed {
            return Reply::Now(Err(ProposeError::Unknown));
        }
        self.next_id += 1;
        let id = ReadId(self.next_id);
        let slot = ReplySlot::default();
        self.reads.insert(id, (m.query, slot.clone()));
        self.read_batch.push(id);
        self.schedule_flush(ctx);
        Reply::Later(slot)
    }
}

impl<SM, S> Handler<Flush> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = ();

    fn handle(&mut self, _: Flush, _ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        self.flush();
    }
}

impl<SM, S> Handler<DrainSubmissions> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = ();

    /// Takes every queued proposal as one batch (with any proposal that came
    /// as a message) and runs it now.
    fn handle(&mut self, _: DrainSubmissions, _ctx: &mut Context<Self>) {
        let mut queued = std::mem::take(&mut self.spare_submissions);
        self.submissions.take_into(&mut queued);
        if self.core.is_none() || self.failed {
            for s in queued.drain(..) {
                let _ = s.reply.send(Err(ProposeError::Unknown));
            }
        } else {
            for s in queued.drain(..) {
                self.next_id += 1;
                let id = ProposalId(self.next_id);
                self.proposals.insert(id, Waiter::Queued(s.reply));
                self.batch.push(Proposal {
                    id,
                    command: s.command,
                    client_id: s.client_id,
                });
            }
            self.flush();
        }
        self.spare_submissions = queued;
    }
}

impl<SM, S> Handler<Subscribe> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = ();

    /// Adds (or replaces) a subscriber and sends it the current state
    /// through its event channel; while the owner has no state (restarting)
    /// the state follows once it recovered.
    fn handle(&mut self, m: Subscribe, _ctx: &mut Context<Self>) {
        let state = self.core.as_ref().map(ReplicationCore::snapshot_events);
        self.subscriptions.subscribe(m, state.as_deref());
    }
}

impl<SM, S> Handler<GetRaftStatus> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = MessageResult<GetRaftStatus>;

    fn handle(&mut self, _: GetRaftStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.core.as_ref().map(|c| {
            RaftStatus {
                id: c.id(),
                term: c.term(),
                role: c.role(),
                leader: c.leader(),
                commit_index: c.commit_index(),
                last_applied: c.last_applied(),
                last_log: c.log().last_log_id(),
                first_log_index: c.log().first_index(),
                snapshot_index: c
                    .snapshot()
                    .map(|s| s.meta.last_included.index)
                    .unwrap_or(LogIndex::ZERO),
                membership: c.membership().clone(),
            }
        }))
    }
}

/// Implements a term-carrying owner request: run the core method, carry out
/// the effects, return its result ([`Refusal::Unavailable`] while the owner
/// has no state: restarting, failed to recover, or failed).
macro_rules! owner_request {
    ($msg:ty, $ret:ty, |$m:ident| $input:expr, $answer:ident) => {
        impl<SM, S> Handler<$msg> for LogReplicator<SM, S>
        where
            SM: RaftStateMachine,
            S: RaftStorage<Command<SM>>,
        {
            type Result = $ret;

            fn handle(&mut self, $m: $msg, _ctx: &mut Context<Self>) -> $ret {
                match self.step(|core, now| core.step(now, $input)) {
                    Some(r) => r.and_then($answer),
                    None => Err(Refusal::Unavailable),
                }
            }
        }
    };
}

owner_request!(BeginElection, Result<(), Refusal>, |m| Input::BeginElection {
    expected_term: m.expected_term,
    pre_vote: m.pre_vote,
    transfer: m.transfer,
}, done);
owner_request!(BecomeLeader, Result<(), Refusal>, |m| Input::BecomeLeader { term: m.term }, done);
owner_request!(StepDown, Result<(), Refusal>, |m| Input::StepDown { term: m.term }, done);
owner_request!(ObserveLeader, Result<(), Refusal>, |m| Input::ObserveLeader {
    term: m.term,
    leader: m.leader,
}, done);
owner_request!(StartTransfer, Result<(), Refusal>, |m| Input::TransferLeadership {
    term: m.term,
    target: m.target,
}, done);
owner_request!(AbortTransfer, Result<(), Refusal>, |m| Input::AbortTransfer { term: m.term }, done);
owner_request!(ProposeConfig, Result<LogId, Refusal>, |m| Input::ProposeMembership {
    term: m.term,
    membership: m.membership,
}, config_appended);
owner_request!(Compact, Result<SnapshotMeta, Refusal>, |m| Input::Compact {
    keep_entries: m.keep_entries,
}, compacted);
owner_request!(InstallSnapshotData, Result<(), Refusal>, |m| Input::InstallSnapshot {
    term: m.term,
    leader: m.leader,
    snapshot: m.snapshot,
}, done);
owner_request!(SnapshotSent, Result<(), Refusal>, |m| Input::SnapshotSent {
    term: m.term,
    peer: m.peer,
    last_included: m.last_included,
}, done);

/// The answer to a request that expects nothing back.
fn done(a: Accepted) -> Result<(), Refusal> {
    debug_assert_eq!(a, Accepted::Done);
    Ok(())
}

/// The answer to [`ProposeConfig`].
fn config_appended(a: Accepted) -> Result<LogId, Refusal> {
    match a {
        Accepted::ConfigAppended(id) => Ok(id),
        other => unreachable!("a configuration proposal answered {other:?}"),
    }
}

/// The answer to [`Compact`].
fn compacted(a: Accepted) -> Result<SnapshotMeta, Refusal> {
    match a {
        Accepted::Compacted(meta) => Ok(meta),
        other => unreachable!("a compaction answered {other:?}"),
    }
}

impl<SM, S> Handler<ObserveTerm> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = ();

    fn handle(&mut self, m: ObserveTerm, _ctx: &mut Context<Self>) {
        let _ = self.step(|core, now| core.step(now, Input::ObserveTerm { term: m.term }));
    }
}

impl<SM, S> Handler<crate::actors::InjectPanic> for LogReplicator<SM, S>
where
    SM: RaftStateMachine,
    S: RaftStorage<Command<SM>>,
{
    type Result = ();

    fn handle(&mut self, _: crate::actors::InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in LogReplicator");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::types::Term;

    /// An append alone (the log end moves) is not published; a move of the
    /// term, commit index, applied index or snapshot is, and so is the
    /// first progress.
    #[test]
    fn only_progress_beyond_the_log_end_is_published() {
        let base = LogProgress {
            term: Term(2),
            commit_index: LogIndex(5),
            last_applied: LogIndex(5),
            last_log_index: LogIndex(6),
            snapshot_index: LogIndex(0),
        };
        assert!(progress_to_publish(None, &base));
        let appended = LogProgress {
            last_log_index: LogIndex(9),
            ..base
        };
        assert!(!progress_to_publish(Some(&base), &appended));
        for moved in [
            LogProgress {
                term: Term(3),
                ..appended
            },
            LogProgress {
                commit_index: LogIndex(6),
                ..appended
            },
            LogProgress {
                last_applied: LogIndex(6),
                ..appended
            },
            LogProgress {
                snapshot_index: LogIndex(4),
                ..appended
            },
        ] {
            assert!(progress_to_publish(Some(&base), &moved), "{moved:?}");
        }
    }

    fn waiter() -> (Waiter<u32>, tokio::sync::oneshot::Receiver<u32>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Waiter::Queued(tx), rx)
    }

    /// Waiters are found by id whatever the order of the answers, ids given
    /// to reads leave holes, and an id answered twice is found once.
    #[test]
    fn waiters_answer_in_any_order() {
        let mut w = Waiters::new();
        let mut answers = Vec::new();
        for id in [5, 6, 8, 9] {
            let (wt, rx) = waiter();
            w.insert(ProposalId(id), wt);
            answers.push((id, rx));
        }
        assert!(w.remove(ProposalId(7)).is_none(), "a read's id");
        assert!(w.remove(ProposalId(4)).is_none(), "before the first");
        assert!(w.remove(ProposalId(10)).is_none(), "after the last");
        for id in [8, 5, 9] {
            w.remove(ProposalId(id)).expect("waiting").answer(id as u32);
            assert!(w.remove(ProposalId(id)).is_none(), "answered once");
        }
        // 5 left the front; 6 waits, followed by the holes of 7, 8 and 9.
        assert_eq!((w.first, w.slots.len()), (6, 4));
        let rest: Vec<_> = w.take_all().collect();
        assert_eq!(rest.len(), 1);
        for r in rest {
            r.answer(6);
        }
        for (id, mut rx) in answers {
            assert_eq!(rx.try_recv(), Ok(id as u32));
        }
        let (wt, _rx) = waiter();
        w.insert(ProposalId(20), wt);
        assert_eq!((w.first, w.slots.len()), (20, 1));
    }
}
