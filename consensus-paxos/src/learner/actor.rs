//! The Learner actor: runs the [`LearnerCore`], keeps the clients' answers
//! per batch (they come with the batch's first [`Proposed`]) and answers them when their batch is delivered,
//! appends every delivered slot to its log and rebuilds from it on restart.
//! The log is synced once per tick, never waited for: a learner that lost
//! its tail in a crash asks its peers again.
//!
//! A snapshot (taken or installed) is saved, the log purged up to it, and
//! both synced at once; only then is the acceptor told to forget those
//! slots ([`Compact`]). Clients whose batch an installed snapshot includes
//! are answered [`ProposeError::Unknown`]
//! (applied, output not known here).

use super::core::{ChosenRecord, LearnerCore, LearnerEffect, LearnerInput};
use crate::config::PaxosConfig;
use crate::error::ProposeError;
use crate::messages::{Accept, PaxosMessage, PaxosMessage as M};
use crate::router::RouterTargets;
use crate::safety::PaxosEvent;
use crate::types::{BatchId, Configurations, PaxosSnapshot, Slot, SnapshotRef};
use crate::wiring::{
    micros_since, Abandon, ClientReply, Compact, Configured, Decided, FeedReady, InjectPanic,
    LearnerNews, LocalFeed, LocalRecipient, PeerMessage, Proposed,
};
use actix::prelude::*;
use consensus_actors::plugin::Committed;
use consensus_actors::safety::SafetySink;
use consensus_actors::storage::{Storage, StorageError};
use consensus_actors::supervision::FailNode;
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{LogIndex, NodeId};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// What the Learner stores: the delivered slots as a log (index = slot).
pub trait LearnerStorage: Storage<(), ChosenRecord> + Unpin {}

impl<T: Storage<(), ChosenRecord> + Unpin> LearnerStorage for T {}

/// The Learner's progress as the client API reports it.
#[derive(Clone, Debug, PartialEq, Eq, MessageResponse)]
pub struct LearnerStatus {
    /// The first slot not yet delivered.
    pub next: Slot,
    /// The last slot its snapshot covers (`Slot(0)`: none).
    pub snapshot: Slot,
    /// The slots it holds values for (after the snapshot).
    pub retained: usize,
    /// The acceptors of the latest configuration it knows (the initial
    /// members until a change is delivered; a change chosen in slot s
    /// governs the slots from s + α on).
    pub members: Vec<NodeId>,
}

/// Asks the Learner for its [`LearnerStatus`].
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "LearnerStatus")]
pub struct GetLearnerStatus;

/// The Learner's state machine as of its delivered prefix.
#[derive(Clone, Debug, PartialEq, Eq, MessageResponse)]
pub struct LearnerState {
    /// The first slot not yet delivered (the state covers the slots
    /// before it).
    pub next: Slot,
    /// The state machine ([`StateMachine::snapshot`](consensus_actors::kv::StateMachine::snapshot)).
    pub state: Vec<u8>,
}

/// Asks the Learner for its [`LearnerState`] (tests and tools comparing
/// replicas; it serializes the whole state machine).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "LearnerState")]
pub struct GetLearnerState;

/// A snapshot the Learner took (or already had) at its last delivered
/// slot, as [`TakeSnapshot`] answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTaken {
    /// The last slot it covers (`Slot(0)`: nothing delivered yet, the
    /// state is the empty store's).
    pub slot: Slot,
    /// The round of the ballot that slot was chosen at (0 for `Slot(0)`).
    pub round: u64,
    /// The state machine as of `slot`
    /// ([`StateMachine::snapshot`](consensus_actors::kv::StateMachine::snapshot)).
    pub state: Vec<u8>,
}

/// Asks the Learner to snapshot its state machine at its last delivered
/// slot now (saved and synced, the log and the acceptor compacted up to
/// it, as for a snapshot the interval triggers) and answer it. `None`:
/// the learner cannot go on (its storage failed).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Option<SnapshotTaken>")]
pub struct TakeSnapshot;

/// Where the Learner's local messages go.
#[derive(Clone)]
pub struct LearnerOutputs {
    /// To the Proposer: decisions and configurations, in order.
    pub news: LocalFeed<LearnerNews>,
    /// To the Acceptor.
    pub compact: LocalRecipient<Compact>,
    /// Configurations to the other components that want them, the
    /// election's (unbound ones are skipped).
    pub configured: Vec<LocalRecipient<Configured>>,
}

/// The Learner component. See the [module documentation](self).
pub struct Learner<S: LearnerStorage> {
    id: NodeId,
    cfg: PaxosConfig,
    members: Vec<NodeId>,
    initial: Configurations,
    epoch: Instant,
    storage: S,
    transport: Transport<PaxosMessage>,
    news: LocalFeed<LearnerNews>,
    compact: LocalRecipient<Compact>,
    configured: Vec<LocalRecipient<Configured>>,
    safety: SafetySink<PaxosEvent>,
    fail: Option<Recipient<FailNode>>,
    core: LearnerCore,
    tracked: BTreeMap<BatchId, Vec<ClientReply>>,
    effects: Vec<LearnerEffect>,
    failed: bool,
    /// Slots appended since the last sync.
    unsynced: bool,
    /// Where the envelopes for the node's other components go when this
    /// Learner is the node's inbox.
    peers: Option<RouterTargets>,
    /// The Proposer's proposals, when this Learner takes them itself.
    proposals: Option<LocalFeed<Proposed>>,
    taken: Vec<Proposed>,
    /// The time of the last tick, in microseconds since `epoch`.
    now_us: u64,
    /// The node's own acceptor's answers, when this Learner takes them
    /// itself.
    own_accepted: Option<LocalFeed<PeerMessage>>,
    own_taken: Vec<PeerMessage>,
}

impl<S: LearnerStorage> Learner<S> {
    /// The Learner of node `id`, which knows `members`; `initial` names
    /// the acceptors from slot 1 (until its log or snapshot says more).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: NodeId,
        cfg: PaxosConfig,
        members: Vec<NodeId>,
        initial: Configurations,
        epoch: Instant,
        storage: S,
        transport: Transport<PaxosMessage>,
        outputs: LearnerOutputs,
        safety: SafetySink<PaxosEvent>,
        fail: Option<Recipient<FailNode>>,
    ) -> Self {
        Self {
            core: LearnerCore::with_configurations(id, &cfg, initial.clone(), members.clone()),
            id,
            cfg,
            members,
            initial,
            epoch,
            storage,
            transport,
            news: outputs.news,
            compact: outputs.compact,
            configured: outputs.configured,
            safety,
            fail,
            tracked: BTreeMap::new(),
            effects: Vec::new(),
            failed: false,
            unsynced: false,
            peers: None,
            proposals: None,
            taken: Vec::new(),
            now_us: 0,
            own_accepted: None,
            own_taken: Vec::new(),
        }
    }

    /// Takes the Proposer's proposals from `feed` (the node's
    /// [`NodeBus::proposed`](crate::slots::NodeBus::proposed)) before each
    /// input, rather than one [`Proposed`] message each (see
    /// [`LearnerHandles::takes_proposed`](crate::slots::LearnerHandles::takes_proposed)).
    #[must_use]
    pub fn with_proposals(mut self, feed: LocalFeed<Proposed>) -> Self {
        self.proposals = Some(feed);
        self
    }

    /// Takes its own acceptor's Accepted from `feed` (the node's
    /// [`RouterTargets::own_accepted`]) before each input, woken for them
    /// only when one more acceptance could choose a slot
    /// ([`LearnerCore::awaits_own_ack`]).
    #[must_use]
    pub fn with_own_accepted(mut self, feed: LocalFeed<PeerMessage>) -> Self {
        self.own_accepted = Some(feed);
        self
    }

    /// Runs the own acceptor's answers queued in the feed.
    fn take_own_accepted(&mut self) {
        let Some(feed) = &self.own_accepted else {
            return;
        };
        let mut taken = std::mem::take(&mut self.own_taken);
        feed.take_into(&mut taken);
        for m in taken.drain(..) {
            if let M::Accepted(msg) = m.msg {
                self.step_one(LearnerInput::Accepted { from: m.from, msg });
            }
        }
        self.own_taken = taken;
    }

    /// After an input: asks to be woken by its own acceptor's next answer
    /// only if that answer could choose a slot, taking what came meanwhile.
    fn settle(&mut self) {
        while let Some(feed) = &self.own_accepted {
            if !feed.set_wake(self.failed || self.core.awaits_own_ack()) {
                break;
            }
            self.take_own_accepted();
        }
    }

    /// Keeps the values and commits of Accepts sent to this node's
    /// acceptor lazily (thrifty Multi-Paxos), as it does a lone Accept's.
    fn lazy_accepts(&mut self, accepts: Vec<Accept>) {
        self.step(LearnerInput::Accepts(accepts));
    }

    /// Runs the proposals queued in the feed. A proposal only matters
    /// once an acceptor answers it, and the answer comes after it (the
    /// Proposer queues it before it sends its Accept), so taking them
    /// before each input is as if each had come as a message.
    fn take_proposals(&mut self) {
        let Some(feed) = &self.proposals else {
            return;
        };
        let mut taken = std::mem::take(&mut self.taken);
        feed.take_into(&mut taken);
        for m in taken.drain(..) {
            self.proposed(m);
        }
        self.taken = taken;
    }

    fn proposed(&mut self, m: Proposed) {
        if !m.replies.is_empty() {
            if let Some(b) = m.value.batch {
                self.tracked.insert(b, m.replies);
            }
        }
        self.step_one(LearnerInput::Proposed {
            slot: m.slot,
            ballot: m.ballot,
            value: m.value,
        });
    }

    /// Makes it able to be the node's inbox: envelopes for the node's other
    /// components go to `peers` (see
    /// [`LearnerHandles::inbox`](crate::slots::LearnerHandles::inbox)).
    #[must_use]
    pub fn with_peers(mut self, peers: RouterTargets) -> Self {
        self.peers = Some(peers);
        self
    }

    fn recover(&self) -> Result<LearnerCore, String> {
        let snapshot = self
            .storage
            .load_snapshot()
            .map_err(|e| e.to_string())?
            .map(PaxosSnapshot::from_stored)
            .transpose()
            .map_err(|e| e.to_string())?;
        let records = self.records().map_err(|e| e.to_string())?;
        LearnerCore::recover_from(self.fresh(), snapshot, records).map_err(|e| e.to_string())
    }

    fn fresh(&self) -> LearnerCore {
        LearnerCore::with_configurations(
            self.id,
            &self.cfg,
            self.initial.clone(),
            self.members.clone(),
        )
    }

    fn records(&self) -> Result<Vec<ChosenRecord>, StorageError> {
        let first = self.storage.first_index();
        let last = self.storage.last_index();
        if last >= first {
            self.storage
                .entries(first, LogIndex(last.0 + 1), usize::MAX)
        } else {
            Ok(Vec::new())
        }
    }

    /// Saves `snapshot`, purges the log up to it and syncs; true when all
    /// of it is durable.
    fn save_snapshot(&mut self, snapshot: &SnapshotRef) -> bool {
        let r = self
            .storage
            .save_snapshot(snapshot.to_stored())
            .and_then(|()| self.storage.purge_prefix(LogIndex(snapshot.slot.0)))
            .and_then(|()| self.storage.sync());
        match r {
            Ok(()) => {
                self.unsynced = false;
                true
            }
            Err(e) => {
                self.fail(format!("learner snapshot failed: {e}"));
                false
            }
        }
    }

    fn fail(&mut self, reason: String) {
        if self.failed {
            return;
        }
        self.failed = true;
        tracing::error!(node = %self.id, %reason, "learner cannot go on");
        if let Some(f) = &self.fail {
            f.do_send(FailNode { reason });
        }
    }

    fn step(&mut self, input: LearnerInput) {
        self.take_proposals();
        self.take_own_accepted();
        self.step_one(input);
        self.settle();
    }

    fn step_one(&mut self, input: LearnerInput) {
        if self.failed {
            return;
        }
        // The core reads the time on its ticks only (catch-up pacing):
        // other inputs get the last tick's reading, and skip the clock.
        if matches!(input, LearnerInput::Tick) {
            self.now_us = micros_since(self.epoch);
        }
        let mut out = std::mem::take(&mut self.effects);
        self.core.set_reports(self.safety.is_enabled());
        self.core.step(self.now_us, input, &mut out);
        for e in out.drain(..) {
            self.run(e);
        }
        self.effects = out;
    }

    fn tell_configured(&self, configs: Configurations) {
        for to in self.configured.iter().filter(|to| to.is_bound()) {
            to.do_send(Configured {
                configs: configs.clone(),
            });
        }
        self.news
            .send_urgent(LearnerNews::Configured(Configured { configs }));
    }

    /// Makes the delivered slots durable, once per tick at most: nothing
    /// waits for it (a crash only costs a longer catch-up), but a node that
    /// restarts with its log need not fetch it all from its peers.
    fn sync_log(&mut self) {
        if self.unsynced && !self.failed {
            self.unsynced = false;
            if let Err(e) = self.storage.sync() {
                self.fail(format!("learner sync failed: {e}"));
            }
        }
    }

    fn run(&mut self, effect: LearnerEffect) {
        match effect {
            LearnerEffect::Send { to, msg } => self.transport.send(to, msg),
            LearnerEffect::Persist(record) => {
                if record.slot.0 == self.storage.last_index().0 + 1 {
                    match self.storage.append(std::slice::from_ref(&record)) {
                        Ok(()) => self.unsynced = true,
                        Err(e) => self.fail(format!("learner write failed: {e}")),
                    }
                }
            }
            LearnerEffect::Decided {
                slot,
                batch,
                next_undelivered,
                commit,
            } => self.news.send(LearnerNews::Decided(Decided {
                slot,
                batch,
                next_undelivered,
                commit,
            })),
            LearnerEffect::Acked { acceptors } => {
                self.news.send(LearnerNews::Acked(acceptors));
            }
            LearnerEffect::Leading { ballot } => {
                self.news.send(LearnerNews::Leading(ballot));
            }
            LearnerEffect::Answer {
                batch,
                outputs,
                log_id,
            } => {
                if let Some(replies) = self.tracked.remove(&batch) {
                    for (reply, output) in replies.into_iter().zip(outputs) {
                        let _ = reply.send(Ok(Committed {
                            output,
                            log_id: Some(log_id),
                        }));
                    }
                }
            }
            LearnerEffect::Skipped { batch } => {
                for r in self.tracked.remove(&batch).unwrap_or_default() {
                    let _ = r.send(Err(ProposeError::Unknown));
                }
            }
            LearnerEffect::Report(r) => self.safety.emit_with(|| r.event()),
            LearnerEffect::Configured(configs) => {
                // The checker counts majorities per configuration; the
                // initial one (from slot 1) it knows from the cluster size.
                let me = self.id;
                for (from, acceptors) in configs.from.range(Slot(2)..) {
                    self.safety.emit_with(|| PaxosEvent::Configured {
                        node: me,
                        from: *from,
                        acceptors: acceptors.clone(),
                    });
                }
                self.tell_configured(configs);
            }
            LearnerEffect::Snapshot(snapshot) => {
                if self.save_snapshot(&snapshot) {
                    self.compact.do_send(Compact {
                        through: snapshot.slot,
                    });
                }
            }
            LearnerEffect::Installed(snapshot) => {
                let included: Vec<BatchId> = self
                    .tracked
                    .keys()
                    .filter(|b| snapshot.executed.done(b))
                    .copied()
                    .collect();
                for b in included {
                    for r in self.tracked.remove(&b).unwrap_or_default() {
                        let _ = r.send(Err(ProposeError::Unknown));
                    }
                }
                if self.save_snapshot(&snapshot) {
                    self.compact.do_send(Compact {
                        through: snapshot.slot,
                    });
                }
            }
        }
    }
}

impl<S: LearnerStorage> Actor for Learner<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(feed) = &self.proposals {
            // Never woken: a proposal waits for the first answer to it.
            let _ = feed.set_wake(false);
        }
        match self.recover() {
            Ok(core) => {
                self.core = core;
                // The Proposer and the election learn the configurations.
                self.tell_configured(self.core.configurations().clone());
            }
            Err(e) => self.fail(format!("learner cannot read its log or snapshot: {e}")),
        }
        // A wake sent before a restart may be lost with the mailbox
        // (taking spends it).
        self.take_own_accepted();
        self.settle();
        let period = Duration::from_millis((self.cfg.catch_up_ms / 4).max(1));
        ctx.run_interval(period, |act, _ctx| {
            act.step(LearnerInput::Tick);
            act.sync_log();
        });
    }
}

impl<S: LearnerStorage> Supervised for Learner<S> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Answers in flight are dropped: their clients see unknown outcomes.
        self.tracked.clear();
        self.core = self.fresh();
    }
}

impl<S: LearnerStorage> Handler<PeerMessage> for Learner<S> {
    type Result = ();

    fn handle(&mut self, m: PeerMessage, _ctx: &mut Context<Self>) {
        let input = match m.msg {
            M::Accepted(msg) => LearnerInput::Accepted { from: m.from, msg },
            M::Chosen(c) => LearnerInput::Chosen(c),
            M::Commit(c) => LearnerInput::Commit(c),
            M::Accept(a) => LearnerInput::Accept(a),
            M::LazyAccepts(b) => {
                self.lazy_accepts(b.accepts);
                return;
            }
            M::LazyAccepted(msg) => LearnerInput::LazyAccepted { from: m.from, msg },
            M::CatchUp(msg) => LearnerInput::CatchUp { from: m.from, msg },
            M::CatchUpReply(r) => LearnerInput::CatchUpReply(r),
            M::InstallSnapshot(m) => LearnerInput::InstallSnapshot(m),
            other => {
                tracing::debug!(message = other.name(), "not for the learner");
                return;
            }
        };
        self.step(input);
    }
}

impl<S: LearnerStorage> Handler<Envelope<PaxosMessage>> for Learner<S> {
    type Result = ();

    fn handle(&mut self, env: Envelope<PaxosMessage>, ctx: &mut Context<Self>) {
        if env.to != self.id {
            tracing::debug!(to = %env.to, "envelope for another node dropped");
            return;
        }
        match (&env.msg, &self.peers) {
            (M::LazyAccepts(b), Some(_)) => {
                // The same for Accepts sent to this acceptor lazily.
                if self.cfg.mode == crate::config::Mode::Multi {
                    let accepts = b.accepts.clone();
                    self.lazy_accepts(accepts);
                }
                if let Some(peers) = &self.peers {
                    peers.deliver(env.from, env.msg);
                }
            }
            (M::Accept(a), Some(_)) => {
                // A Multi-Paxos learner keeps the leader's Accepts (and
                // their commit) as they go by to the acceptor.
                if self.cfg.mode == crate::config::Mode::Multi {
                    let a = a.clone();
                    self.step(LearnerInput::Accept(a));
                }
                if let Some(peers) = &self.peers {
                    peers.deliver(env.from, env.msg);
                }
            }
            (
                M::Accepted(_)
                | M::LazyAccepted(_)
                | M::Chosen(_)
                | M::Commit(_)
                | M::CatchUp(_)
                | M::CatchUpReply(_)
                | M::InstallSnapshot(_),
                _,
            ) => self.handle(
                PeerMessage {
                    from: env.from,
                    msg: env.msg,
                },
                ctx,
            ),
            (_, Some(peers)) => peers.deliver(env.from, env.msg),
            (_, None) => {
                tracing::debug!(
                    message = env.msg.name(),
                    "not for the learner, no peers to hand it to"
                );
            }
        }
    }
}

impl<S: LearnerStorage> Handler<Proposed> for Learner<S> {
    type Result = ();

    fn handle(&mut self, m: Proposed, _ctx: &mut Context<Self>) {
        self.take_proposals();
        self.take_own_accepted();
        self.proposed(m);
        self.settle();
    }
}

impl<S: LearnerStorage> Handler<FeedReady<Proposed>> for Learner<S> {
    type Result = ();

    fn handle(&mut self, _: FeedReady<Proposed>, _ctx: &mut Context<Self>) {
        self.take_proposals();
    }
}

impl<S: LearnerStorage> Handler<FeedReady<PeerMessage>> for Learner<S> {
    type Result = ();

    fn handle(&mut self, _: FeedReady<PeerMessage>, _ctx: &mut Context<Self>) {
        self.take_proposals();
        self.take_own_accepted();
        self.settle();
    }
}

impl<S: LearnerStorage> Handler<Abandon> for Learner<S> {
    type Result = ();

    fn handle(&mut self, m: Abandon, _ctx: &mut Context<Self>) {
        // The proposals sent before it first.
        self.take_proposals();
        for b in m.batches {
            if let Some(replies) = self.tracked.remove(&b) {
                for r in replies {
                    let _ = r.send(Err(m.error.clone()));
                }
            }
        }
    }
}

impl<S: LearnerStorage> Handler<GetLearnerStatus> for Learner<S> {
    type Result = LearnerStatus;

    fn handle(&mut self, _: GetLearnerStatus, _ctx: &mut Context<Self>) -> LearnerStatus {
        LearnerStatus {
            next: self.core.next(),
            snapshot: self.core.snapshot_slot(),
            retained: self.core.retained(),
            members: self.core.configurations().latest().1.to_vec(),
        }
    }
}

impl<S: LearnerStorage> Handler<GetLearnerState> for Learner<S> {
    type Result = LearnerState;

    fn handle(&mut self, _: GetLearnerState, _ctx: &mut Context<Self>) -> LearnerState {
        use consensus_actors::kv::StateMachine;
        LearnerState {
            next: self.core.next(),
            state: self.core.kv().snapshot(),
        }
    }
}

impl<S: LearnerStorage> Handler<TakeSnapshot> for Learner<S> {
    type Result = Option<SnapshotTaken>;

    fn handle(&mut self, _: TakeSnapshot, _ctx: &mut Context<Self>) -> Option<SnapshotTaken> {
        self.step(LearnerInput::SnapshotNow);
        if self.failed {
            return None;
        }
        match self.core.snapshot() {
            Some(s) if s.slot == Slot(self.core.next().0 - 1) => Some(SnapshotTaken {
                slot: s.slot,
                round: s.ballot.round,
                state: s.state.clone(),
            }),
            // Nothing delivered yet (or the snapshot is behind, which
            // SnapshotNow rules out): the state machine as it is.
            _ => {
                use consensus_actors::kv::StateMachine;
                debug_assert_eq!(self.core.next(), Slot(1), "a delivered slot left out");
                Some(SnapshotTaken {
                    slot: Slot(self.core.next().0 - 1),
                    round: 0,
                    state: self.core.kv().snapshot(),
                })
            }
        }
    }
}

impl<S: LearnerStorage> Handler<InjectPanic> for Learner<S> {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in Learner");
    }
}
