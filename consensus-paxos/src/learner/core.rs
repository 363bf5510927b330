//! The Learner's logic (Paxos Made Simple §2.3, with the proposer's node as
//! the distinguished learner of its own proposals):
//!
//! * The local proposer reports each `Accept` it sends ([`LearnerInput::Proposed`]);
//!   acceptors answer [`Accepted`] to this node; `q2` of them for the same
//!   (slot, ballot) choose the value. In `paxos` the learner then tells
//!   every peer ([`Chosen`]).
//! * In `multi-paxos` it tells no peer: the leader's next Accept (or, when
//!   none follows soon, a [`Commit`] alone) names the slots chosen at its
//!   ballot, as Raft's AppendEntries carries the commit index. A
//!   follower's learner sees the leader's Accepts go by
//!   ([`LearnerInput::Accept`]: it is the node's inbox, or the router
//!   copies them to it) and keeps each (slot, ballot, value): a slot a
//!   [`Commit`] names at ballot `b` is delivered with the value of the
//!   Accept of (`b`, slot), the only value ballot `b` proposes there. A
//!   slot whose Accept it missed it fetches from a peer ([`CatchUp`]).
//!   What it tells as commit is the run of its last delivered slots
//!   chosen at one ballot ([`LearnerEffect::Decided`]'s `commit`).
//! * Chosen values are delivered in slot order to the [`KvStore`]; a batch
//!   proposed in more than one slot is executed at its first slot only
//!   (the learner remembers what ran per proposer incarnation, bounded:
//!   [`ExecutedBatches`]).
//!   Each delivered slot is appended to the learner's log (index = slot),
//!   from which a restarted learner rebuilds its state machine.
//! * Every `catch_up_ms` (and at once on a gap) it asks one peer, in turn,
//!   for the decisions from its first undelivered slot ([`CatchUp`]).
//! * It tells the local proposer of the decisions of the slots it proposed
//!   ([`LearnerEffect::Decided`]); of the others, in `multi-paxos`, only
//!   every [`DECIDED_EVERY`] slots and at every tick (a follower's proposer
//!   is idle; each message it is spared is two mailbox hops), in `paxos`
//!   of every one.
//!
//! # Log compaction and snapshots
//!
//! Once `snapshot_interval` commands were delivered since the last
//! snapshot (a slot counts its batch's commands, at least one, as Raft's
//! threshold counts log entries),
//! the learner snapshots its state machine at the last delivered slot
//! ([`PaxosSnapshot`]: the key-value store and the batches executed) and
//! drops its log up to it ([`LearnerEffect::Snapshot`]; the actor saves
//! the snapshot, purges its log, syncs, and only then tells the acceptor to
//! forget those slots, so a node never forgets a chosen value before it
//! holds a durable snapshot that includes it).
//!
//! A peer asking for slots at or below the snapshot gets the snapshot
//! ([`InstallSnapshot`]) followed by the decisions after it; a learner
//! that installs a snapshot ahead of its own delivery replaces its state
//! machine with it ([`LearnerEffect::Installed`]).
//!
//! Compaction lives in the learner rather than in a component of its own
//! (Raft's SnapshotCompactor) because the learner owns the state machine
//! and its log: a separate actor would have to ask the learner for a copy
//! of both at every snapshot and every transfer, and hand installs back to
//! it, for no decision of its own (Paxos has no term/leader rules around
//! a transfer: a snapshot contains only chosen slots, so any peer may send
//! it and any learner may install it). Snapshots travel whole, not in
//! chunks: the reference key-value store is small.

use crate::config::PaxosConfig;
use crate::messages::InstallSnapshot;
use crate::messages::{
    Accept, Accepted, CatchUp, CatchUpReply, Chosen, Commit, LazyAccepted, PaxosMessage,
    CATCH_UP_MAX,
};
use crate::report::Report;
use crate::ring::SlotRing;
use crate::types::{
    Admission, Ballot, BatchId, Configurations, ExecutedBatches, PValue, PaxosSnapshot, Slot,
    SnapshotRef, ValueRef,
};
use consensus_actors::kv::{KvOutput, KvStore, SnapshotDecodeError, StateMachine};
use consensus_actors::types::{LogId, LogIndex, NodeId, Term};
use std::collections::{BTreeMap, VecDeque};

/// Multi-Paxos: a follower's proposer hears of every this many slots
/// decided by others (and of where delivery stands at every tick), not of
/// each one: it proposes nothing until it leads, and then runs phase 1
/// from where its learner stands.
pub const DECIDED_EVERY: u64 = 64;

/// What a slot weighs against the snapshot interval: its commands, at
/// least one (a no-op or a configuration change counts one).
fn commands(value: &ValueRef) -> u64 {
    (value.requests.len() as u64).max(1)
}

/// What running a delivered slot's value did.
enum Execution {
    /// The batch ran: its outputs.
    Ran(Vec<KvOutput>),
    /// It did not run (a no-op, a duplicate, or too old).
    Skipped(Admission),
}

/// A delivered slot as the learner's log keeps it.
pub type ChosenRecord = PValue;

/// An input of [`LearnerCore::step`].
#[derive(Clone, Debug)]
pub enum LearnerInput {
    /// The local proposer sent Accept(`ballot`, `slot`, `value`).
    Proposed {
        /// The slot.
        slot: Slot,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: ValueRef,
    },
    /// Phase 2b from acceptor `from`.
    Accepted {
        /// The acceptor.
        from: NodeId,
        /// Its acceptance.
        msg: Accepted,
    },
    /// A peer learned a decision.
    Chosen(Chosen),
    /// A peer's Accept to this node's acceptor went by (Multi-Paxos: its
    /// value is the one chosen if a [`Commit`] names its slot and ballot;
    /// its own `commit` is one).
    Accept(Accept),
    /// Accepts sent to this node's acceptor lazily, in one message
    /// (thrifty Multi-Paxos): each as [`LearnerInput::Accept`].
    Accepts(Vec<Accept>),
    /// An acceptor's answer to lazy Accepts: each slot as an
    /// [`LearnerInput::Accepted`] from `from`.
    LazyAccepted {
        /// The acceptor.
        from: NodeId,
        /// Its answer.
        msg: LazyAccepted,
    },
    /// The Multi-Paxos leader's decisions by ballot.
    Commit(Commit),
    /// A peer asks for decisions.
    CatchUp {
        /// The peer.
        from: NodeId,
        /// Its request.
        msg: CatchUp,
    },
    /// Decisions a peer sent.
    CatchUpReply(CatchUpReply),
    /// A snapshot a peer sent (the slots asked for were compacted).
    InstallSnapshot(InstallSnapshot),
    /// Take a snapshot at the last delivered slot now, whatever the
    /// interval says (the engine's `create_snapshot`); nothing to do when
    /// the latest snapshot is there already or nothing was delivered.
    SnapshotNow,
    /// Time passed.
    Tick,
}

/// What the learner asks its actor to do.
#[derive(Clone, Debug, PartialEq)]
pub enum LearnerEffect {
    /// Send to one peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: PaxosMessage,
    },
    /// Append a delivered slot to the log (index = slot).
    Persist(ChosenRecord),
    /// A slot's value is known chosen (for the proposer).
    Decided {
        /// The slot.
        slot: Slot,
        /// Its batch.
        batch: Option<BatchId>,
        /// The first slot not yet delivered.
        next_undelivered: Slot,
        /// The last delivered slots that were chosen at one ballot (what
        /// a leader tells its followers, see [`Commit`]).
        commit: Option<Commit>,
    },
    /// The acceptors whose answers chose the last slot this learner
    /// counted, in the order they came (sent when they change): the
    /// proposer counts on the quickest for thrifty phase 2.
    Acked {
        /// The acceptors.
        acceptors: Vec<NodeId>,
    },
    /// A leader's Accept or commit at a ballot higher than any seen
    /// before went by: that ballot's node leads as far as this node
    /// knows (its proposer names it to clients).
    Leading {
        /// The ballot.
        ballot: Ballot,
    },
    /// A batch was executed: its outputs, in order, at `log_id`.
    Answer {
        /// The batch.
        batch: BatchId,
        /// One output per request.
        outputs: Vec<KvOutput>,
        /// Ballot round as term, slot as index.
        log_id: LogId,
    },
    /// A batch was skipped as too old to tell whether it ran (see
    /// [`ExecutedBatches`]): its clients get an unknown outcome.
    Skipped {
        /// The batch.
        batch: BatchId,
    },
    /// Report a safety event.
    Report(Report),
    /// A configuration change was delivered (or installed with a
    /// snapshot): the configurations now known.
    Configured(Configurations),
    /// The learner took this snapshot and dropped its log up to its slot:
    /// save it, purge the log up to it, sync, then let the acceptor
    /// compact ([`Compact`](crate::wiring::Compact)).
    Snapshot(SnapshotRef),
    /// The learner installed a peer's snapshot in place of its state
    /// machine and log: save it and purge the log as for
    /// [`Snapshot`](Self::Snapshot); the clients of batches it includes
    /// will get no output.
    Installed(SnapshotRef),
}

#[derive(Clone, Debug)]
struct Tally {
    ballot: Ballot,
    value: ValueRef,
    /// The acceptors that accepted it (distinct; at most the
    /// configuration's size, so a vector, not an allocating set).
    acks: Vec<NodeId>,
    /// The local proposer proposed in this slot (at this or a lower
    /// ballot): it is told of the decision.
    local: bool,
}

/// The Learner's state. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct LearnerCore {
    id: NodeId,
    /// The acceptors of the last [`LearnerEffect::Acked`].
    acked: Vec<NodeId>,
    /// The highest ballot of a leader's Accept or commit seen.
    leading: Ballot,
    q2: usize,
    nodes: usize,
    /// Every node it knows of (peers to ask and tell).
    members: Vec<NodeId>,
    /// The acceptors of each slot.
    configs: Configurations,
    alpha: u64,
    /// Tell the proposer of every decision (`paxos`: every node proposes
    /// and must skip the slots others took).
    decide_all: bool,
    /// `peers` of the configuration starting at `.0` (of `.1`
    /// configurations known): recomputed only when either changes.
    peers_for: (Slot, usize),
    peers_cache: Vec<NodeId>,
    catch_up_us: u64,
    snapshot_interval: u64,
    /// The latest snapshot: it covers every slot up to `base`.
    snapshot: Option<SnapshotRef>,
    /// The last slot covered by the snapshot (`Slot(0)`: none).
    base: Slot,
    /// Delivered slots after the snapshot: `log[i]` is slot `base + i + 1`.
    log: VecDeque<(Ballot, ValueRef)>,
    /// The commands in `log` (each slot counting at least one).
    log_commands: u64,
    /// Chosen, not yet delivered (beyond a gap).
    ahead: BTreeMap<Slot, (Ballot, ValueRef)>,
    /// Proposals seen (the local proposer's, and in Multi-Paxos the
    /// peers' Accepts), with the acceptances counted for the local ones.
    tallies: SlotRing<Tally>,
    /// The latest [`Commit`] heard (Multi-Paxos).
    commit: Option<Commit>,
    /// The ballot the last delivered slots were chosen at and the first
    /// of them (`None`: nothing delivered since the snapshot).
    run: Option<(Ballot, Slot)>,
    executed: ExecutedBatches,
    kv: KvStore,
    next_peer: usize,
    last_catch_up_us: u64,
    /// Whether it hands out [`Report`]s (see [`set_reports`](Self::set_reports)).
    reports: bool,
}

impl LearnerCore {
    /// A fresh learner for node `id` among `members`, the acceptors from
    /// slot 1 on.
    pub fn new(id: NodeId, cfg: &PaxosConfig, members: Vec<NodeId>) -> Self {
        Self::with_configurations(id, cfg, Configurations::initial(&members), members)
    }

    /// A fresh learner for node `id` that knows `members`, the acceptors
    /// being `configs` (a node added later knows the initial ones).
    pub fn with_configurations(
        id: NodeId,
        cfg: &PaxosConfig,
        configs: Configurations,
        members: Vec<NodeId>,
    ) -> Self {
        Self {
            id,
            q2: cfg.q2,
            nodes: cfg.nodes,
            members,
            configs,
            alpha: cfg.window as u64,
            decide_all: cfg.mode == crate::config::Mode::Basic,
            peers_for: (Slot(0), 0),
            peers_cache: Vec::new(),
            catch_up_us: cfg.catch_up_ms * 1000,
            snapshot_interval: cfg.snapshot_interval.max(1),
            snapshot: None,
            base: Slot(0),
            log: VecDeque::new(),
            log_commands: 0,
            ahead: BTreeMap::new(),
            tallies: SlotRing::new(),
            acked: Vec::new(),
            leading: Ballot::ZERO,
            commit: None,
            run: None,
            executed: ExecutedBatches::new(),
            kv: KvStore::default(),
            next_peer: 0,
            last_catch_up_us: 0,
            reports: true,
        }
    }

    /// Whether to hand out [`LearnerEffect::Report`]s of chosen values (on
    /// by default). The stock actor turns them off when its safety sink is
    /// off, as in benchmarks: each holds a reference to the value, whose
    /// count is an atomic add and sub at every slot.
    pub fn set_reports(&mut self, on: bool) {
        self.reports = on;
    }

    /// A learner rebuilt from its snapshot and its log (`records` in slot
    /// order; those the snapshot covers are skipped, the log stops at the
    /// first gap). An error when the snapshot cannot be decoded.
    pub fn recover(
        id: NodeId,
        cfg: &PaxosConfig,
        members: Vec<NodeId>,
        snapshot: Option<PaxosSnapshot>,
        records: impl IntoIterator<Item = ChosenRecord>,
    ) -> Result<Self, SnapshotDecodeError> {
        Self::recover_from(Self::new(id, cfg, members), snapshot, records)
    }

    /// `core` (fresh) rebuilt from its snapshot and log, as
    /// [`recover`](Self::recover).
    pub fn recover_from(
        mut core: Self,
        snapshot: Option<PaxosSnapshot>,
        records: impl IntoIterator<Item = ChosenRecord>,
    ) -> Result<Self, SnapshotDecodeError> {
        if let Some(s) = snapshot {
            core.restore(SnapshotRef::new(s))?;
        }
        for r in records {
            if r.slot < core.next() {
                continue;
            }
            if r.slot != core.next() {
                break;
            }
            core.execute(r.slot, r.ballot, &r.value);
            core.extend_run(r.slot, r.ballot);
            core.log_commands += commands(&r.value);
            core.log.push_back((r.ballot, r.value));
        }
        core.check();
        Ok(core)
    }

    /// Replaces the state machine and the log by `snapshot`.
    fn restore(&mut self, snapshot: SnapshotRef) -> Result<(), SnapshotDecodeError> {
        let mut kv = KvStore::default();
        kv.restore(&snapshot.state)?;
        self.kv = kv;
        self.executed = snapshot.executed.clone();
        if !snapshot.configs.from.is_empty() {
            self.configs = snapshot.configs.clone();
        }
        self.base = snapshot.slot;
        self.log.clear();
        self.log_commands = 0;
        self.run = None;
        let next = self.next();
        self.ahead.retain(|s, _| *s >= next);
        self.tallies.forget_below(next);
        self.snapshot = Some(snapshot);
        Ok(())
    }

    /// The first slot not yet delivered.
    pub fn next(&self) -> Slot {
        Slot(self.base.0 + self.log.len() as u64 + 1)
    }

    /// The last slot the latest snapshot covers (`Slot(0)`: none).
    pub fn snapshot_slot(&self) -> Slot {
        self.base
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Option<&SnapshotRef> {
        self.snapshot.as_ref()
    }

    /// How many slots it holds values for (delivered after the snapshot,
    /// or chosen beyond a gap).
    pub fn retained(&self) -> usize {
        self.log.len() + self.ahead.len()
    }

    /// The acceptors of each slot, as far as it knows.
    pub fn configurations(&self) -> &Configurations {
        &self.configs
    }

    /// The state machine.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// The value delivered in `slot`, if any and not compacted.
    pub fn delivered(&self, slot: Slot) -> Option<&ValueRef> {
        let i = usize::try_from(slot.0.checked_sub(self.base.0 + 1)?).ok()?;
        self.log.get(i).map(|(_, v)| v)
    }

    /// The one entry: handles `input` at `now_us`, leaving its effects in
    /// `out`, and checks the invariants. Only [`LearnerInput::Tick`] reads
    /// `now_us` (the stock actor passes the last tick's time with the
    /// others).
    pub fn step(&mut self, now_us: u64, input: LearnerInput, out: &mut Vec<LearnerEffect>) {
        let delivered_before = self.next();
        match input {
            LearnerInput::Proposed {
                slot,
                ballot,
                value,
            } => self.handle_proposed(slot, ballot, value, true),
            LearnerInput::Accepted { from, msg } => self.handle_accepted(from, msg, out),
            LearnerInput::Chosen(c) => {
                self.learn(c.slot, c.ballot, c.value, false, out);
            }
            LearnerInput::Accept(a) => {
                self.note_leading(a.ballot, out);
                self.handle_accept(a);
            }
            LearnerInput::Commit(c) => {
                self.note_leading(c.ballot, out);
                self.handle_commit(c);
            }
            LearnerInput::Accepts(accepts) => {
                for a in accepts {
                    self.note_leading(a.ballot, out);
                    self.handle_accept(a);
                }
            }
            LearnerInput::LazyAccepted { from, msg } => {
                for slot in msg.slots {
                    let one = Accepted {
                        ballot: msg.ballot,
                        slot,
                    };
                    self.handle_accepted(from, one, out);
                }
            }
            LearnerInput::CatchUp { from, msg } => self.handle_catch_up(from, msg, out),
            LearnerInput::CatchUpReply(r) => {
                let full = r.chosen.len() >= CATCH_UP_MAX;
                let before = self.next();
                for c in r.chosen {
                    self.learn(c.slot, c.ballot, c.value, false, out);
                }
                if full && self.next() > before {
                    // The peer has more: ask again now, not at the next tick.
                    self.ask_peer(out);
                }
            }
            LearnerInput::InstallSnapshot(m) => self.handle_install_snapshot(m.snapshot, out),
            LearnerInput::Tick => self.handle_tick(now_us, out),
            LearnerInput::SnapshotNow => self.take_snapshot(out),
        }
        self.deliver_committed(out);
        self.maybe_snapshot(out);
        // Delivery never goes back; the log is bounded by the interval.
        assert!(self.next() >= delivered_before, "delivery went back");
        assert!(
            self.log_commands < self.snapshot_interval
                && self.log.len() as u64 <= self.log_commands,
            "the log outgrew the snapshot interval"
        );
        self.check();
    }

    /// Invariants after every step: nothing waits beyond a delivered slot,
    /// and the snapshot covers exactly the slots below the log.
    fn check(&self) {
        let next = self.next();
        assert!(
            self.ahead.keys().next().is_none_or(|s| *s > next),
            "a deliverable slot left undelivered"
        );
        assert_eq!(
            self.snapshot.as_ref().map_or(Slot(0), |s| s.slot),
            self.base,
            "the snapshot and the log disagree"
        );
    }

    /// Takes a snapshot once `snapshot_interval` commands were delivered
    /// since the last one.
    fn maybe_snapshot(&mut self, out: &mut Vec<LearnerEffect>) {
        if self.log_commands >= self.snapshot_interval {
            self.take_snapshot(out);
        }
    }

    /// Snapshots the state machine at the last delivered slot and drops
    /// the log up to it (nothing when the log is empty: the latest
    /// snapshot, if any, is at that slot already).
    fn take_snapshot(&mut self, out: &mut Vec<LearnerEffect>) {
        let Some((ballot, _)) = self.log.back() else {
            return;
        };
        let snapshot = SnapshotRef::new(PaxosSnapshot {
            slot: Slot(self.next().0 - 1),
            ballot: *ballot,
            state: self.kv.snapshot(),
            executed: self.executed.clone(),
            configs: self.configs.clone(),
        });
        self.base = snapshot.slot;
        self.log.clear();
        self.log_commands = 0;
        self.snapshot = Some(SnapshotRef::clone(&snapshot));
        out.push(LearnerEffect::Snapshot(snapshot));
    }

    fn handle_install_snapshot(&mut self, snapshot: SnapshotRef, out: &mut Vec<LearnerEffect>) {
        if snapshot.slot < self.next() {
            return;
        }
        if let Err(e) = self.restore(SnapshotRef::clone(&snapshot)) {
            tracing::warn!(node = %self.id, slot = %snapshot.slot, error = %e, "a peer's snapshot cannot be installed");
            return;
        }
        out.push(LearnerEffect::Installed(SnapshotRef::clone(&snapshot)));
        out.push(LearnerEffect::Configured(self.configs.clone()));
        self.deliver(out);
        out.push(LearnerEffect::Decided {
            slot: snapshot.slot,
            batch: None,
            next_undelivered: self.next(),
            commit: self.run_commit(),
        });
    }

    /// Records that (`ballot`, `value`) was proposed in `slot`, by the
    /// local proposer when `local`.
    fn handle_proposed(&mut self, slot: Slot, ballot: Ballot, value: ValueRef, local: bool) {
        if slot < self.next() || self.ahead.contains_key(&slot) {
            return;
        }
        match self.tallies.get_mut(slot) {
            Some(t) if t.ballot >= ballot => t.local |= local,
            Some(t) => {
                *t = Tally {
                    ballot,
                    value,
                    acks: Vec::new(),
                    local: local || t.local,
                }
            }
            None => {
                self.tallies.insert(
                    slot,
                    Tally {
                        ballot,
                        value,
                        acks: Vec::new(),
                        local,
                    },
                );
            }
        }
    }

    /// A peer's Accept went by: in Multi-Paxos, its value and its commit.
    /// Reports a leader's ballot higher than any seen (Multi-Paxos).
    fn note_leading(&mut self, ballot: Ballot, out: &mut Vec<LearnerEffect>) {
        if !self.decide_all && ballot > self.leading && ballot.node != self.id {
            self.leading = ballot;
            out.push(LearnerEffect::Leading { ballot });
        }
    }

    fn handle_accept(&mut self, a: Accept) {
        if self.decide_all || a.ballot.node == self.id {
            // `paxos` decides by Chosen; our own proposals come as
            // Proposed.
            return;
        }
        if let Some(c) = a.commit {
            self.handle_commit(c);
        }
        self.handle_proposed(a.slot, a.ballot, a.value, false);
    }

    /// Keeps the newest commit heard (a higher ballot's, or the same
    /// ballot's further one); [`deliver_committed`](Self::deliver_committed)
    /// acts on it.
    fn handle_commit(&mut self, c: Commit) {
        let newer = self.commit.is_none_or(|old| {
            c.ballot > old.ballot || (c.ballot == old.ballot && c.through > old.through)
        });
        if newer && c.from <= c.through {
            self.commit = Some(c);
        }
    }

    /// Delivers the slots from the first undelivered one on that the
    /// latest commit names and whose Accept at its ballot went by.
    fn deliver_committed(&mut self, out: &mut Vec<LearnerEffect>) {
        let Some(c) = self.commit else {
            return;
        };
        loop {
            let slot = self.next();
            if !c.covers(slot) {
                break;
            }
            let Some(t) = self.tallies.get(slot) else {
                break;
            };
            if t.ballot != c.ballot {
                // Another ballot's proposal: not what was chosen at
                // `c.ballot` (a peer has it).
                break;
            }
            let value = ValueRef::clone(&t.value);
            self.learn(slot, c.ballot, value, false, out);
            assert!(self.next() > slot, "a committed slot left undelivered");
        }
        if self.commit.is_some_and(|c| c.through < self.next()) {
            self.commit = None;
        }
    }

    /// The last delivered slots chosen at one ballot, as a [`Commit`].
    fn run_commit(&self) -> Option<Commit> {
        self.run.map(|(ballot, from)| Commit {
            ballot,
            from,
            through: Slot(self.next().0 - 1),
        })
    }

    /// Slot `slot` (the next after the log's end) was delivered, chosen
    /// at `ballot`.
    fn extend_run(&mut self, slot: Slot, ballot: Ballot) {
        if self.run.is_none_or(|(b, _)| b != ballot) {
            self.run = Some((ballot, slot));
        }
    }

    /// The phase-2 quorum of a configuration: `q2` for the configured
    /// cluster size, a majority for any other.
    /// Whether its own acceptor's next answer must wake it (see
    /// [`LearnerHandles::takes_own_accepted`](crate::slots::LearnerHandles::takes_own_accepted))
    /// rather than wait for the next peer's answer, which comes as a
    /// message of its own: when one more acceptance could choose a slot it
    /// tallies, and always when one acceptance is a phase-2 quorum (then
    /// no peer's answer comes first, and a proposal the Learner has not
    /// taken yet is not among its tallies). Counted against the smallest
    /// phase-2 quorum of its configurations: waking too often costs a
    /// message, too rarely a stall until the next tick.
    pub fn awaits_own_ack(&self) -> bool {
        let q2 = self
            .configs
            .from
            .values()
            .map(|a| self.q2_of(a))
            .min()
            .unwrap_or(1);
        q2 <= 1 || self.tallies.values().any(|t| t.acks.len() + 1 >= q2)
    }

    fn q2_of(&self, acceptors: &[NodeId]) -> usize {
        if acceptors.len() == self.nodes {
            self.q2
        } else {
            acceptors.len() / 2 + 1
        }
    }

    fn handle_accepted(&mut self, from: NodeId, msg: Accepted, out: &mut Vec<LearnerEffect>) {
        let acceptors = self.configs.at(msg.slot);
        if !acceptors.contains(&from) {
            return;
        }
        let q2 = self.q2_of(acceptors);
        let Some(t) = self.tallies.get_mut(msg.slot) else {
            return;
        };
        if t.ballot != msg.ballot {
            return;
        }
        if !t.acks.contains(&from) {
            t.acks.push(from);
        }
        if t.acks.len() >= q2 {
            let Some(t) = self.tallies.remove(msg.slot) else {
                return;
            };
            if t.acks != self.acked {
                self.acked.clone_from(&t.acks);
                out.push(LearnerEffect::Acked { acceptors: t.acks });
            }
            self.learn(msg.slot, t.ballot, t.value, true, out);
        }
    }

    /// Records that `value` is chosen in `slot`; tells the peers when this
    /// learner counted the quorum itself.
    fn learn(
        &mut self,
        slot: Slot,
        ballot: Ballot,
        value: ValueRef,
        counted: bool,
        out: &mut Vec<LearnerEffect>,
    ) {
        if slot < self.next() || self.ahead.contains_key(&slot) || slot.0 == 0 {
            return;
        }
        // The local proposer proposed here when it told this learner so.
        let ours = self.tallies.remove(slot).is_some_and(|t| t.local) || counted;
        if self.reports {
            out.push(LearnerEffect::Report(Report::Chosen {
                node: self.id,
                slot,
                ballot,
                value: ValueRef::clone(&value),
            }));
        }
        if counted && self.decide_all {
            let msg = PaxosMessage::Chosen(Chosen {
                slot,
                ballot,
                value: ValueRef::clone(&value),
            });
            self.refresh_peers(slot);
            for peer in &self.peers_cache {
                out.push(LearnerEffect::Send {
                    to: *peer,
                    msg: msg.clone(),
                });
            }
        }
        let batch = value.batch;
        let gap = slot > self.next();
        if gap {
            self.ahead.insert(slot, (ballot, value));
        } else {
            // The next slot (most decisions): delivered without a trip
            // through `ahead`.
            self.deliver_one(slot, ballot, value, out);
        }
        self.deliver(out);
        if ours || self.decide_all || slot.0.is_multiple_of(DECIDED_EVERY) {
            out.push(LearnerEffect::Decided {
                slot,
                batch,
                next_undelivered: self.next(),
                commit: self.run_commit(),
            });
        }
        if gap && !counted {
            // Decisions arrive after a hole: ask for it now.
            self.ask_peer(out);
        }
    }

    /// Delivers the slots `ahead` holds from the first undelivered one on.
    fn deliver(&mut self, out: &mut Vec<LearnerEffect>) {
        if self.ahead.is_empty() {
            return;
        }
        while let Some((ballot, value)) = self.ahead.remove(&self.next()) {
            let slot = self.next();
            self.deliver_one(slot, ballot, value, out);
        }
    }

    /// Delivers `slot`, the first undelivered one.
    fn deliver_one(
        &mut self,
        slot: Slot,
        ballot: Ballot,
        value: ValueRef,
        out: &mut Vec<LearnerEffect>,
    ) {
        debug_assert_eq!(slot, self.next(), "delivery out of order");
        {
            let known = self.configs.from.len();
            match self.execute(slot, ballot, &value) {
                Execution::Ran(outputs) => {
                    if self.configs.from.len() != known {
                        out.push(LearnerEffect::Configured(self.configs.clone()));
                    }
                    if let Some(batch) = value.batch {
                        out.push(LearnerEffect::Answer {
                            batch,
                            outputs,
                            log_id: LogId::new(Term(ballot.round), LogIndex(slot.0)),
                        });
                    }
                }
                Execution::Skipped(Admission::TooOld) => {
                    if let Some(batch) = value.batch {
                        out.push(LearnerEffect::Skipped { batch });
                    }
                }
                Execution::Skipped(_) => {}
            }
            out.push(LearnerEffect::Persist(ChosenRecord {
                slot,
                ballot,
                value: ValueRef::clone(&value),
            }));
            self.extend_run(slot, ballot);
            self.log_commands += commands(&value);
            self.log.push_back((ballot, value));
        }
    }

    /// Makes `peers_cache` every other node that should hear of `slot`:
    /// the acceptors from its configuration on, and every node it knows.
    fn refresh_peers(&mut self, slot: Slot) {
        let key = (self.configs.start_of(slot), self.configs.from.len());
        if key == self.peers_for {
            return;
        }
        let mut all = self.configs.from_slot(slot);
        all.extend(self.members.iter().copied());
        all.sort_unstable();
        all.dedup();
        all.retain(|p| *p != self.id);
        self.peers_cache = all;
        self.peers_for = key;
    }

    /// Applies a slot's batch unless it ran already; its outputs (a
    /// configuration change answers one `Ok`, and takes effect `α` slots
    /// later).
    fn execute(&mut self, slot: Slot, _ballot: Ballot, value: &ValueRef) -> Execution {
        let Some(batch) = value.batch else {
            return Execution::Skipped(Admission::Duplicate);
        };
        match self.executed.admit(batch) {
            Admission::Execute => {}
            other => return Execution::Skipped(other),
        }
        let mut outputs: Vec<KvOutput> = value
            .requests
            .iter()
            .map(|r| self.kv.apply(&r.command))
            .collect();
        if let Some(members) = &value.reconfig {
            self.configs.change(slot, self.alpha, members);
            outputs.push(KvOutput::Ok);
        }
        Execution::Ran(outputs)
    }

    fn handle_catch_up(&mut self, from: NodeId, msg: CatchUp, out: &mut Vec<LearnerEffect>) {
        if msg.from.0 == 0 || msg.from >= self.next() {
            return;
        }
        let mut first = msg.from;
        if first <= self.base {
            // Compacted here: the snapshot stands for those slots.
            if let Some(s) = &self.snapshot {
                out.push(LearnerEffect::Send {
                    to: from,
                    msg: PaxosMessage::InstallSnapshot(InstallSnapshot {
                        snapshot: SnapshotRef::clone(s),
                    }),
                });
            }
            first = Slot(self.base.0 + 1);
            if first >= self.next() {
                return;
            }
        }
        let start = usize::try_from(first.0 - self.base.0 - 1).unwrap_or(usize::MAX);
        let base = self.base.0;
        let chosen: Vec<Chosen> = self
            .log
            .iter()
            .enumerate()
            .skip(start)
            .take(CATCH_UP_MAX)
            .map(|(i, (ballot, value))| Chosen {
                slot: Slot(base + i as u64 + 1),
                ballot: *ballot,
                value: ValueRef::clone(value),
            })
            .collect();
        out.push(LearnerEffect::Send {
            to: from,
            msg: PaxosMessage::CatchUpReply(CatchUpReply { chosen }),
        });
    }

    fn handle_tick(&mut self, now_us: u64, out: &mut Vec<LearnerEffect>) {
        if now_us.saturating_sub(self.last_catch_up_us) >= self.catch_up_us {
            self.last_catch_up_us = now_us;
            self.ask_peer(out);
            // Remind the proposer where delivery stands (after its restart).
            let last = Slot(self.next().0 - 1);
            if last.0 > 0 {
                out.push(LearnerEffect::Decided {
                    slot: last,
                    batch: self.log.back().and_then(|(_, v)| v.batch),
                    next_undelivered: self.next(),
                    commit: self.run_commit(),
                });
            }
        }
        // Forget tallies of slots already delivered.
        let next = self.next();
        self.tallies.forget_below(next);
    }

    fn ask_peer(&mut self, out: &mut Vec<LearnerEffect>) {
        self.refresh_peers(self.next());
        let peers = &self.peers_cache;
        if peers.is_empty() {
            return;
        }
        let to = peers[self.next_peer % peers.len()];
        self.next_peer = self.next_peer.wrapping_add(1);
        out.push(LearnerEffect::Send {
            to,
            msg: PaxosMessage::CatchUp(CatchUp { from: self.next() }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::types::{Configurations, Request, Value};
    use consensus_actors::kv::KvCommand;
    use consensus_actors::types::ClientId;

    fn n(i: u64) -> NodeId {
        NodeId(i)
    }

    fn batch(seq: u64, key: &str, val: &str) -> ValueRef {
        ValueRef::new(Value {
            batch: Some(BatchId {
                node: n(1),
                nonce: 7,
                seq,
            }),
            requests: vec![Request {
                client: ClientId(1),
                command: KvCommand::put(key, val),
            }],
            reconfig: None,
        })
    }

    fn learner() -> LearnerCore {
        LearnerCore::new(
            n(1),
            &PaxosConfig::new(Mode::Multi, 3),
            vec![n(1), n(2), n(3)],
        )
    }

    fn chosen(slot: u64, value: ValueRef) -> LearnerInput {
        LearnerInput::Chosen(Chosen {
            slot: Slot(slot),
            ballot: Ballot::new(1, n(2)),
            value,
        })
    }

    #[test]
    fn a_quorum_of_accepted_chooses_and_the_decided_carries_the_commit() {
        let mut l = learner();
        let mut out = Vec::new();
        let b = Ballot::new(1, n(1));
        l.step(
            0,
            LearnerInput::Proposed {
                slot: Slot(1),
                ballot: b,
                value: batch(0, "k", "v"),
            },
            &mut out,
        );
        l.step(
            0,
            LearnerInput::Accepted {
                from: n(2),
                msg: Accepted {
                    ballot: b,
                    slot: Slot(1),
                },
            },
            &mut out,
        );
        assert!(out.is_empty(), "one acceptance of three is no quorum");
        // A stale ballot does not count.
        l.step(
            0,
            LearnerInput::Accepted {
                from: n(3),
                msg: Accepted {
                    ballot: Ballot::new(0, n(1)),
                    slot: Slot(1),
                },
            },
            &mut out,
        );
        assert!(out.is_empty());
        l.step(
            0,
            LearnerInput::Accepted {
                from: n(3),
                msg: Accepted {
                    ballot: b,
                    slot: Slot(1),
                },
            },
            &mut out,
        );
        assert_eq!(l.next(), Slot(2));
        assert_eq!(l.kv().get("k"), Some("v"));
        let sends = out
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    LearnerEffect::Send {
                        msg: PaxosMessage::Chosen(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(
            sends, 0,
            "Multi-Paxos tells its decisions on the next Accept"
        );
        assert!(out.iter().any(|e| matches!(e, LearnerEffect::Answer { log_id, .. } if log_id.index == LogIndex(1) && log_id.term == Term(1))));
        let commit = Commit {
            ballot: b,
            from: Slot(1),
            through: Slot(1),
        };
        assert!(out.iter().any(|e| matches!(
            e,
            LearnerEffect::Decided { slot: Slot(1), commit: Some(c), .. } if *c == commit
        )));
    }

    fn basic_learner() -> LearnerCore {
        LearnerCore::new(
            n(1),
            &PaxosConfig::new(Mode::Basic, 3),
            vec![n(1), n(2), n(3)],
        )
    }

    #[test]
    fn in_basic_paxos_a_quorum_of_accepted_is_told_to_every_peer() {
        let mut l = basic_learner();
        let mut out = Vec::new();
        let b = Ballot::new(1, n(1));
        l.step(
            0,
            LearnerInput::Proposed {
                slot: Slot(1),
                ballot: b,
                value: batch(0, "k", "v"),
            },
            &mut out,
        );
        for from in [n(1), n(2)] {
            let msg = Accepted {
                ballot: b,
                slot: Slot(1),
            };
            l.step(0, LearnerInput::Accepted { from, msg }, &mut out);
        }
        let told: Vec<NodeId> = out
            .iter()
            .filter_map(|e| match e {
                LearnerEffect::Send {
                    to,
                    msg: PaxosMessage::Chosen(_),
                } => Some(*to),
                _ => None,
            })
            .collect();
        assert_eq!(told, [n(2), n(3)]);
    }

    fn accept(ballot: Ballot, slot: u64, value: ValueRef, commit: Option<Commit>) -> LearnerInput {
        LearnerInput::Accept(Accept {
            ballot,
            slot: Slot(slot),
            value,
            commit,
        })
    }

    /// A follower delivers the slots a commit names with the values of the
    /// Accepts of that ballot it saw go by, and nothing else: a slot whose
    /// Accept it saw at another ballot (which a later ballot may have
    /// replaced) or not at all waits for a peer.
    #[test]
    fn a_follower_learns_from_the_commit_on_the_next_accept_only_values_of_its_ballot() {
        let mut l = learner();
        let mut out = Vec::new();
        let old = Ballot::new(1, n(2));
        let b = Ballot::new(2, n(3));
        let c = |from, through| Commit {
            ballot: b,
            from: Slot(from),
            through: Slot(through),
        };
        l.step(0, accept(b, 1, batch(0, "k", "1"), None), &mut out);
        // Slot 2: only an older ballot's Accept went by.
        l.step(0, accept(old, 2, batch(1, "k", "old"), None), &mut out);
        assert_eq!(l.next(), Slot(1), "nothing is delivered without a commit");
        // The Accept of slot 3 says slots 1 and 2 were chosen at `b`.
        l.step(0, accept(b, 3, batch(2, "k", "3"), Some(c(1, 2))), &mut out);
        assert_eq!(l.next(), Slot(2), "slot 1 delivered, slot 2 waits");
        assert_eq!(l.kv().get("k"), Some("1"));
        assert!(
            !out.iter()
                .any(|e| matches!(e, LearnerEffect::Decided { .. })),
            "a follower's idle proposer is not told of each slot"
        );
        // Slot 2's value comes from a peer; the commit then covers slot 3
        // once it is named.
        l.step(
            0,
            LearnerInput::Chosen(Chosen {
                slot: Slot(2),
                ballot: b,
                value: batch(1, "k", "2"),
            }),
            &mut out,
        );
        assert_eq!(l.next(), Slot(3));
        l.step(0, LearnerInput::Commit(c(1, 3)), &mut out);
        assert_eq!(l.next(), Slot(4));
        assert_eq!(l.kv().get("k"), Some("3"));
        // A commit of another ballot does not deliver this ballot's values.
        l.step(0, accept(b, 4, batch(3, "k", "4"), None), &mut out);
        l.step(
            0,
            LearnerInput::Commit(Commit {
                ballot: Ballot::new(3, n(2)),
                from: Slot(4),
                through: Slot(4),
            }),
            &mut out,
        );
        assert_eq!(l.next(), Slot(4));
        assert_eq!(l.kv().get("k"), Some("3"));
    }

    /// `SnapshotNow` snapshots at the last delivered slot whatever the
    /// interval, drops the log up to it and asks for the acceptor's
    /// compaction (the Snapshot effect); with nothing delivered since the
    /// last snapshot it does nothing.
    #[test]
    fn snapshot_now_snapshots_at_the_last_delivered_slot() {
        let mut l = learner();
        let mut out = Vec::new();
        l.step(0, LearnerInput::SnapshotNow, &mut out);
        assert!(out.is_empty(), "nothing delivered, nothing to snapshot");
        l.step(0, chosen(1, batch(0, "k", "1")), &mut out);
        l.step(0, chosen(2, batch(1, "j", "2")), &mut out);
        out.clear();
        l.step(0, LearnerInput::SnapshotNow, &mut out);
        let taken: Vec<Slot> = out
            .iter()
            .filter_map(|e| match e {
                LearnerEffect::Snapshot(s) => Some(s.slot),
                _ => None,
            })
            .collect();
        assert_eq!(taken, [Slot(2)]);
        assert_eq!(l.snapshot_slot(), Slot(2));
        assert_eq!(l.retained(), 0, "the log up to the snapshot is dropped");
        let mut kv = KvStore::default();
        kv.restore(&l.snapshot().unwrap().state).unwrap();
        assert_eq!((kv.get("k"), kv.get("j")), (Some("1"), Some("2")));
        out.clear();
        l.step(0, LearnerInput::SnapshotNow, &mut out);
        assert!(
            out.is_empty(),
            "the snapshot is at the last delivered slot already"
        );
    }

    /// A commit that arrives before the Accept it names (reordering)
    /// delivers the slot when the Accept comes.
    #[test]
    fn a_commit_ahead_of_its_accept_delivers_when_the_accept_arrives() {
        let mut l = learner();
        let mut out = Vec::new();
        let b = Ballot::new(2, n(3));
        l.step(
            0,
            LearnerInput::Commit(Commit {
                ballot: b,
                from: Slot(1),
                through: Slot(1),
            }),
            &mut out,
        );
        assert_eq!(l.next(), Slot(1));
        l.step(0, accept(b, 1, batch(0, "k", "1"), None), &mut out);
        assert_eq!(l.next(), Slot(2));
        assert_eq!(l.kv().get("k"), Some("1"));
    }

    #[test]
    fn slots_are_delivered_in_order_and_a_gap_is_asked_for() {
        let mut l = learner();
        let mut out = Vec::new();
        l.step(0, chosen(2, batch(1, "k", "second")), &mut out);
        assert_eq!(l.next(), Slot(1), "slot 2 waits for slot 1");
        assert!(out.iter().any(|e| matches!(
            e,
            LearnerEffect::Send {
                msg: PaxosMessage::CatchUp(CatchUp { from: Slot(1) }),
                ..
            }
        )));
        out.clear();
        l.step(0, chosen(1, batch(0, "k", "first")), &mut out);
        assert_eq!(l.next(), Slot(3));
        assert_eq!(l.kv().get("k"), Some("second"));
        let persisted: Vec<Slot> = out
            .iter()
            .filter_map(|e| match e {
                LearnerEffect::Persist(r) => Some(r.slot),
                _ => None,
            })
            .collect();
        assert_eq!(persisted, [Slot(1), Slot(2)]);
    }

    #[test]
    fn a_batch_chosen_twice_is_executed_once_and_catch_up_serves_the_log() {
        let mut l = learner();
        let mut out = Vec::new();
        let put = |v: &str| {
            ValueRef::new(Value {
                batch: Some(BatchId {
                    node: n(2),
                    nonce: 1,
                    seq: 0,
                }),
                requests: vec![Request {
                    client: ClientId(1),
                    command: KvCommand::put("k", v),
                }],
                reconfig: None,
            })
        };
        l.step(0, chosen(1, put("a")), &mut out);
        l.step(0, chosen(2, batch(0, "k", "b")), &mut out);
        l.step(0, chosen(3, put("a")), &mut out);
        assert_eq!(
            l.kv().get("k"),
            Some("b"),
            "the second copy of the batch did not run"
        );
        out.clear();
        l.step(
            0,
            LearnerInput::CatchUp {
                from: n(3),
                msg: CatchUp { from: Slot(2) },
            },
            &mut out,
        );
        match &out[..] {
            [LearnerEffect::Send {
                to,
                msg: PaxosMessage::CatchUpReply(r),
            }] => {
                assert_eq!(*to, n(3));
                assert_eq!(
                    r.chosen.iter().map(|c| c.slot).collect::<Vec<_>>(),
                    [Slot(2), Slot(3)]
                );
            }
            other => panic!("{other:?}"),
        }
        // A restarted learner replays its log to the same state.
        let records: Vec<ChosenRecord> = (1..=3)
            .map(|s| ChosenRecord {
                slot: Slot(s),
                ballot: Ballot::new(1, n(2)),
                value: ValueRef::clone(l.delivered(Slot(s)).unwrap()),
            })
            .collect();
        let r = LearnerCore::recover(
            n(1),
            &PaxosConfig::new(Mode::Multi, 3),
            vec![n(1), n(2), n(3)],
            None,
            records,
        )
        .unwrap();
        assert_eq!(r.next(), Slot(4));
        assert_eq!(r.kv().get("k"), Some("b"));
    }

    /// Exactly-once across a leader change and a snapshot install: the old
    /// leader's batch B ran at slot 1; a new leader recovers B's copy
    /// that acceptors hold elsewhere (or the old leader retried it), so B
    /// is chosen again at slot 4. A learner that delivered slot 1 and one
    /// that only installed a snapshot covering it both skip the copy: the
    /// executed-batch table travels in the snapshot. (With a snapshot that
    /// dropped the table, the installing learner would put `k = a` back.)
    #[test]
    fn a_batch_chosen_again_after_a_leader_change_runs_once_even_across_a_snapshot_install() {
        let mut cfg = PaxosConfig::new(Mode::Multi, 3);
        cfg.snapshot_interval = 3;
        let members = vec![n(1), n(2), n(3)];
        let mut l = LearnerCore::new(n(1), &cfg, members.clone());
        let mut out = Vec::new();
        let b = batch(0, "k", "a");
        l.step(0, chosen(1, ValueRef::clone(&b)), &mut out);
        l.step(0, chosen(2, batch(1, "k", "b")), &mut out);
        l.step(0, chosen(3, batch(2, "other", "x")), &mut out);
        let snap = out
            .iter()
            .find_map(|e| match e {
                LearnerEffect::Snapshot(s) => Some(SnapshotRef::clone(s)),
                _ => None,
            })
            .expect("a snapshot at slot 3");
        let mut fresh = LearnerCore::new(n(2), &cfg, members);
        fresh.step(
            0,
            LearnerInput::InstallSnapshot(InstallSnapshot {
                snapshot: SnapshotRef::clone(&snap),
            }),
            &mut out,
        );
        assert_eq!(fresh.next(), Slot(4));
        // The new leader's ballot chooses B again at slot 4.
        let again = LearnerInput::Chosen(Chosen {
            slot: Slot(4),
            ballot: Ballot::new(2, n(3)),
            value: ValueRef::clone(&b),
        });
        for learner in [&mut l, &mut fresh] {
            out.clear();
            learner.step(0, again.clone(), &mut out);
            assert_eq!(learner.next(), Slot(5));
            assert_eq!(learner.kv().get("k"), Some("b"), "B ran twice");
            assert!(
                !out.iter().any(|e| matches!(
                    e,
                    LearnerEffect::Answer { .. } | LearnerEffect::Skipped { .. }
                )),
                "{out:?}"
            );
        }
    }

    /// The snapshot interval counts commands, not slots (as Raft's counts
    /// entries): one slot holding a batch of four commands reaches an
    /// interval of four, where four such slots of one command each are
    /// needed; a no-op counts one.
    #[test]
    fn the_snapshot_interval_counts_commands_not_slots() {
        let mut cfg = PaxosConfig::new(Mode::Multi, 3);
        cfg.snapshot_interval = 4;
        let mut l = LearnerCore::new(n(1), &cfg, vec![n(1), n(2), n(3)]);
        let mut out = Vec::new();
        let four = ValueRef::new(Value {
            batch: Some(BatchId {
                node: n(2),
                nonce: 3,
                seq: 0,
            }),
            requests: (0..4)
                .map(|i| Request {
                    client: ClientId(i),
                    command: KvCommand::put("k", "v"),
                })
                .collect(),
            reconfig: None,
        });
        l.step(0, chosen(1, four), &mut out);
        assert_eq!(l.snapshot_slot(), Slot(1), "four commands in one slot");
        l.step(0, chosen(2, ValueRef::new(Value::noop())), &mut out);
        l.step(0, chosen(3, batch(0, "a", "1")), &mut out);
        l.step(0, chosen(4, batch(1, "a", "2")), &mut out);
        assert_eq!((l.snapshot_slot(), l.retained()), (Slot(1), 3));
        l.step(0, chosen(5, batch(2, "a", "3")), &mut out);
        assert_eq!((l.snapshot_slot(), l.retained()), (Slot(5), 0));
    }

    /// The table the snapshots carry stays the same size however many
    /// batches ran (one entry per proposer incarnation), where a set of
    /// every executed batch grew with each.
    #[test]
    fn the_executed_batch_table_does_not_grow_with_the_batches() {
        let mut cfg = PaxosConfig::new(Mode::Multi, 3);
        cfg.snapshot_interval = 1000;
        let mut l = LearnerCore::new(n(1), &cfg, vec![n(1), n(2), n(3)]);
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for seq in 0..10_000 {
            l.step(0, chosen(seq + 1, batch(seq, "k", "v")), &mut out);
            for e in out.drain(..) {
                if let LearnerEffect::Snapshot(s) = e {
                    sizes.push((
                        s.executed.proposers(),
                        s.executed.gaps(),
                        s.to_stored().meta.len(),
                    ));
                }
            }
        }
        assert_eq!(sizes.len(), 10);
        assert!(sizes.iter().all(|s| *s == sizes[0]), "{sizes:?}");
        assert_eq!((sizes[0].0, sizes[0].1), (1, 0));
    }

    #[test]
    fn a_snapshot_every_interval_is_served_to_a_lagging_peer_which_installs_it() {
        let mut cfg = PaxosConfig::new(Mode::Multi, 3);
        cfg.snapshot_interval = 2;
        let members = vec![n(1), n(2), n(3)];
        let mut l = LearnerCore::new(n(1), &cfg, members.clone());
        let mut out = Vec::new();
        l.step(0, chosen(1, batch(0, "a", "1")), &mut out);
        assert!(!out.iter().any(|e| matches!(e, LearnerEffect::Snapshot(_))));
        l.step(0, chosen(2, batch(1, "b", "2")), &mut out);
        let snap = out
            .iter()
            .find_map(|e| match e {
                LearnerEffect::Snapshot(s) => Some(SnapshotRef::clone(s)),
                _ => None,
            })
            .expect("a snapshot after two slots");
        assert_eq!(snap.slot, Slot(2));
        assert_eq!(snap.executed.proposers(), 1);
        assert_eq!((l.snapshot_slot(), l.retained()), (Slot(2), 0));
        assert!(l.delivered(Slot(1)).is_none(), "compacted");
        l.step(0, chosen(3, batch(2, "a", "3")), &mut out);
        // A peer asking from slot 1 gets the snapshot, then slot 3.
        out.clear();
        l.step(
            0,
            LearnerInput::CatchUp {
                from: n(2),
                msg: CatchUp { from: Slot(1) },
            },
            &mut out,
        );
        let (install, reply) = match &out[..] {
            [LearnerEffect::Send {
                msg: PaxosMessage::InstallSnapshot(i),
                ..
            }, LearnerEffect::Send {
                msg: PaxosMessage::CatchUpReply(r),
                ..
            }] => (i.clone(), r.clone()),
            other => panic!("{other:?}"),
        };
        assert_eq!(install.snapshot, snap);
        assert_eq!(
            reply.chosen.iter().map(|c| c.slot).collect::<Vec<_>>(),
            [Slot(3)]
        );
        // The lagging peer installs it, then the decisions after it.
        let mut p = LearnerCore::new(n(2), &cfg, members.clone());
        let mut out = Vec::new();
        p.step(0, chosen(5, batch(4, "c", "5")), &mut out);
        out.clear();
        p.step(0, LearnerInput::InstallSnapshot(install), &mut out);
        assert!(matches!(out[0], LearnerEffect::Installed(ref s) if s.slot == Slot(2)));
        assert!(out.iter().any(|e| matches!(
            e,
            LearnerEffect::Decided {
                slot: Slot(2),
                next_undelivered: Slot(3),
                ..
            }
        )));
        p.step(0, LearnerInput::CatchUpReply(reply), &mut out);
        assert_eq!(p.next(), l.next());
        assert_eq!(p.kv(), l.kv());
        // A stale snapshot changes nothing; a batch in it never runs again.
        out.clear();
        p.step(
            0,
            LearnerInput::InstallSnapshot(InstallSnapshot { snapshot: snap }),
            &mut out,
        );
        assert!(out.is_empty());
        p.step(0, chosen(4, batch(0, "a", "1")), &mut out);
        assert_eq!(p.kv().get("a"), Some("3"), "batch 0 ran once, at slot 1");
        assert_eq!(p.next(), Slot(6));
        // A restart rebuilds the same state from the snapshot and the log.
        let stored = p.snapshot().map(|s| (**s).clone());
        let r = LearnerCore::recover(
            n(2),
            &cfg,
            members,
            stored,
            [ChosenRecord {
                slot: Slot(5),
                ballot: Ballot::new(1, n(2)),
                value: batch(4, "c", "5"),
            }],
        )
        .unwrap();
        assert_eq!(r.next(), p.next());
        assert_eq!(r.kv(), p.kv());
    }

    /// Each slot is chosen by a phase-2 quorum of its own configuration:
    /// with acceptors 1..3 until slot 4 and 1..4 from slot 5, two of three
    /// choose slot 4 (node 4's acceptance does not count there) and slot 5
    /// needs three of four.
    #[test]
    fn each_slot_is_counted_among_the_acceptors_of_its_configuration() {
        let cfg = PaxosConfig::new(Mode::Multi, 3);
        let mut configs = Configurations::initial(&[n(1), n(2), n(3)]);
        configs.change(Slot(1), 4, &[n(1), n(2), n(3), n(4)]);
        let mut l =
            LearnerCore::with_configurations(n(1), &cfg, configs, vec![n(1), n(2), n(3), n(4)]);
        let mut out = Vec::new();
        let b = Ballot::new(1, n(1));
        for slot in 1..=5 {
            l.step(
                0,
                LearnerInput::Proposed {
                    slot: Slot(slot),
                    ballot: b,
                    value: batch(slot, "k", &slot.to_string()),
                },
                &mut out,
            );
        }
        let acc = |from: u64, slot: u64| LearnerInput::Accepted {
            from: n(from),
            msg: Accepted {
                ballot: b,
                slot: Slot(slot),
            },
        };
        for slot in 1..=3 {
            l.step(0, acc(2, slot), &mut out);
            l.step(0, acc(3, slot), &mut out);
        }
        l.step(0, acc(4, 4), &mut out);
        l.step(0, acc(2, 4), &mut out);
        assert_eq!(l.next(), Slot(4), "node 4 is no acceptor of slot 4");
        l.step(0, acc(3, 4), &mut out);
        assert_eq!(l.next(), Slot(5));
        l.step(0, acc(2, 5), &mut out);
        l.step(0, acc(3, 5), &mut out);
        assert_eq!(l.next(), Slot(5), "two of four choose nothing");
        l.step(0, acc(4, 5), &mut out);
        assert_eq!(l.next(), Slot(6));
        assert_eq!(l.kv().get("k"), Some("5"));
    }
}
