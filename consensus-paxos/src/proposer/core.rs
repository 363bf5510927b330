//! The Proposer's logic.
//!
//! **`paxos` ([`Mode::Basic`])**: any node proposes. The proposer batches
//! its queued commands and runs one slot at a time: the lowest slot its
//! learner does not know chosen. Phase 1 with a fresh ballot for that one
//! slot (Prepare with `first == last`); on `q1` promises it proposes the
//! value of the highest accepted ballot reported for the slot, or its own
//! batch when none was (Paxos Made Simple §2.2, P2c); phase 2 until the
//! learner reports the slot chosen. A slot taken by another value sends the
//! batch to the next slot (the same batch id: learners execute a batch
//! once). A refusal ([`Nack`]) or a silent quorum
//! restarts phase 1 with a higher ballot after a random back-off drawn from
//! the seeded generator, so dueling proposers stop colliding.
//!
//! **`multi-paxos` ([`Mode::Multi`])**: only the leader the ballot leader
//! election names proposes. It runs phase 1 once, at the election's
//! ballot, for every slot from its learner's first undelivered slot on;
//! every slot some acceptor reported gets the highest-ballot value, every
//! hole in between a no-op; then it assigns new slots to batches, at most
//! `window` of them in flight. Refused, it steps down and tells the
//! election the ballot that beat it.
//!
//! **Compaction**: a [`Promise`] names the acceptor's compaction point;
//! every slot up to it is chosen and the acceptor no longer reports its
//! value. The proposer never proposes in a slot at or below the highest
//! compaction point it heard (its learner learns those slots from a peer's
//! snapshot); see [`acceptor::core`](crate::acceptor::core#compaction) for
//! why this keeps P2c.

use crate::config::{Mode, PaxosConfig};
use crate::error::ProposeError;
use crate::messages::{Accept, Nack, PaxosMessage, Prepare, Promise};
use crate::types::{Ballot, BatchId, PValue, Request, Slot, Value, ValueRef};
use consensus_actors::types::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// An input of [`ProposerCore::step`].
#[derive(Clone, Debug)]
pub enum ProposerInput {
    /// A client command; `token` names its answer in the actor.
    Submit {
        /// The actor's name for the answer.
        token: u64,
        /// The command.
        request: Request,
    },
    /// Phase 1b from `from`.
    Promise {
        /// The acceptor.
        from: NodeId,
        /// Its promise.
        msg: Promise,
    },
    /// A refusal from `from`.
    Nack {
        /// The acceptor.
        from: NodeId,
        /// The refusal.
        msg: Nack,
    },
    /// The learner learned `slot`'s value.
    Decided {
        /// The slot.
        slot: Slot,
        /// The chosen batch (`None`: a no-op).
        batch: Option<BatchId>,
        /// The learner's first undelivered slot.
        next_undelivered: Slot,
    },
    /// The ballot leader election's leader (Multi-Paxos).
    Leader {
        /// The leader's ballot.
        leader: Ballot,
    },
    /// Time passed (retries, back-off).
    Tick,
}

/// What the proposer asks its actor to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ProposerEffect {
    /// Make `ballot` durable as the highest this proposer ever used, before
    /// the Prepare that follows is sent: a restarted proposer starts above
    /// it, so no ballot is ever used for two values.
    PersistBallot(Ballot),
    /// Send `msg` to every acceptor (this node's included).
    Broadcast(PaxosMessage),
    /// Send `msg` to one acceptor.
    Send {
        /// The acceptor.
        to: NodeId,
        /// The message.
        msg: PaxosMessage,
    },
    /// Tell the learner what was proposed (before the Accept is sent).
    Proposed {
        /// The slot.
        slot: Slot,
        /// The ballot.
        ballot: Ballot,
        /// The value.
        value: ValueRef,
    },
    /// A batch was formed of the commands `tokens` (in order).
    Track {
        /// The batch.
        batch: BatchId,
        /// The commands' tokens.
        tokens: Vec<u64>,
    },
    /// These batches may never be delivered.
    Abandon {
        /// The batches.
        batches: Vec<BatchId>,
        /// The answer for their clients.
        error: ProposeError,
    },
    /// These commands were never proposed.
    Fail {
        /// The commands' tokens.
        tokens: Vec<u64>,
        /// The answer.
        error: ProposeError,
    },
    /// Tell the election an acceptor promised `promised`.
    BallotTooLow {
        /// The promise.
        promised: Ballot,
    },
    /// Phase 1 of `ballot` succeeded: this node leads (Multi-Paxos).
    BecameLeader {
        /// The ballot.
        ballot: Ballot,
    },
    /// This node stopped leading (Multi-Paxos).
    SteppedDown,
}

/// Where the proposer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not proposing.
    Idle,
    /// In phase 1.
    Preparing,
    /// In phase 2 (Multi-Paxos: leading).
    Accepting,
}

#[derive(Clone, Debug)]
struct InFlight {
    value: ValueRef,
    since_us: u64,
}

#[derive(Clone, Debug)]
enum Phase {
    Idle,
    Preparing {
        ballot: Ballot,
        first: Slot,
        last: Option<Slot>,
        promises: BTreeMap<NodeId, Vec<PValue>>,
        /// The highest compaction point the promises named.
        compacted: Slot,
        since_us: u64,
    },
    Accepting {
        ballot: Ballot,
        in_flight: BTreeMap<Slot, InFlight>,
        next_slot: Slot,
    },
}

/// The Proposer's state. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ProposerCore {
    id: NodeId,
    cfg: PaxosConfig,
    members: Vec<NodeId>,
    rng: ChaCha8Rng,
    nonce: u64,
    next_seq: u64,
    /// Commands not yet in a batch.
    queue: VecDeque<(u64, Request)>,
    /// Our batches waiting for a slot (a slot they lost, or a retry).
    retry: VecDeque<ValueRef>,
    phase: Phase,
    /// The highest ballot this proposer used (durably, see
    /// [`ProposerEffect::PersistBallot`]) or saw refuse it.
    highest: Ballot,
    /// The learner's first undelivered slot.
    first_unchosen: Slot,
    /// Slots known chosen at or after `first_unchosen`.
    chosen_ahead: BTreeSet<Slot>,
    /// Every slot up to this one is chosen: an acceptor compacted it.
    compacted: Slot,
    leader: Option<Ballot>,
    backoff_until_us: u64,
}

impl ProposerCore {
    /// A proposer for node `id` among `members`, its batch nonce and
    /// back-off drawn from `seed`.
    pub fn new(id: NodeId, cfg: PaxosConfig, members: Vec<NodeId>, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nonce = rng.random();
        Self {
            id,
            cfg,
            members,
            rng,
            nonce,
            next_seq: 0,
            queue: VecDeque::new(),
            retry: VecDeque::new(),
            phase: Phase::Idle,
            highest: Ballot::ZERO,
            first_unchosen: Slot(1),
            chosen_ahead: BTreeSet::new(),
            compacted: Slot(0),
            leader: None,
            backoff_until_us: 0,
        }
    }

    /// A proposer restarted after using ballots up to `used` (what it
    /// persisted): every ballot it uses from now on is above it.
    #[must_use]
    pub fn above(mut self, used: Ballot) -> Self {
        self.highest = self.highest.max(used);
        self
    }

    /// The highest ballot used or seen.
    pub fn highest(&self) -> Ballot {
        self.highest
    }

    /// Where it is.
    pub fn role(&self) -> Role {
        match self.phase {
            Phase::Idle => Role::Idle,
            Phase::Preparing { .. } => Role::Preparing,
            Phase::Accepting { .. } => Role::Accepting,
        }
    }

    /// The ballot of the current phase (`None` when idle).
    pub fn ballot(&self) -> Option<Ballot> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Preparing { ballot, .. } | Phase::Accepting { ballot, .. } => Some(*ballot),
        }
    }

    /// Whether this node leads (Multi-Paxos: phase 1 done at its ballot).
    pub fn is_leader(&self) -> bool {
        self.cfg.mode == Mode::Multi && self.role() == Role::Accepting
    }

    /// The leader it knows of (Multi-Paxos).
    pub fn leader(&self) -> Option<NodeId> {
        self.leader.map(|b| b.node)
    }

    /// Slots proposed and not yet known chosen.
    pub fn in_flight(&self) -> Vec<Slot> {
        match &self.phase {
            Phase::Accepting { in_flight, .. } => in_flight.keys().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Commands queued, not yet in a batch.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The one entry: handles `input` at `now_us`, leaving its effects in
    /// `out`, and checks the invariants.
    pub fn step(&mut self, now_us: u64, input: ProposerInput, out: &mut Vec<ProposerEffect>) {
        match input {
            ProposerInput::Submit { token, request } => {
                self.handle_submit(now_us, token, request, out)
            }
            ProposerInput::Promise { from, msg } => self.handle_promise(now_us, from, msg, out),
            ProposerInput::Nack { msg, .. } => self.handle_nack(now_us, msg, out),
            ProposerInput::Decided {
                slot,
                batch,
                next_undelivered,
            } => self.handle_decided(now_us, slot, batch, next_undelivered, out),
            ProposerInput::Leader { leader } => self.handle_leader(now_us, leader, out),
            ProposerInput::Tick => self.handle_tick(now_us, out),
        }
        self.check();
    }

    fn handle_submit(
        &mut self,
        now_us: u64,
        token: u64,
        request: Request,
        out: &mut Vec<ProposerEffect>,
    ) {
        if self.cfg.mode == Mode::Multi && self.role() == Role::Idle {
            out.push(ProposerEffect::Fail {
                tokens: vec![token],
                error: ProposeError::NotLeader {
                    leader: self.leader().filter(|l| *l != self.id),
                },
            });
            return;
        }
        if self.queue.len() >= self.cfg.max_pending {
            out.push(ProposerEffect::Fail {
                tokens: vec![token],
                error: ProposeError::Busy,
            });
            return;
        }
        self.queue.push_back((token, request));
        self.maybe_propose(now_us, out);
    }

    /// Starts phase 1 (basic) or fills the window (multi) when there is
    /// work. Returns whether it did anything.
    fn maybe_propose(&mut self, now_us: u64, out: &mut Vec<ProposerEffect>) -> bool {
        match self.cfg.mode {
            Mode::Basic => {
                let has_work = !self.queue.is_empty() || !self.retry.is_empty();
                if matches!(self.phase, Phase::Idle) && has_work && now_us >= self.backoff_until_us
                {
                    let slot = self.lowest_open_slot();
                    self.begin_prepare(now_us, slot, Some(slot), None, out);
                    return true;
                }
                false
            }
            Mode::Multi => self.fill_window(now_us, out),
        }
    }

    fn lowest_open_slot(&self) -> Slot {
        let mut s = self.first_unchosen.max(Slot(self.compacted.0 + 1));
        while self.chosen_ahead.contains(&s) {
            s = Slot(s.0 + 1);
        }
        s
    }

    fn begin_prepare(
        &mut self,
        now_us: u64,
        first: Slot,
        last: Option<Slot>,
        ballot: Option<Ballot>,
        out: &mut Vec<ProposerEffect>,
    ) {
        let ballot = ballot.unwrap_or_else(|| self.highest.next_for(self.id));
        assert_eq!(ballot.node, self.id, "phase 1 with another node's ballot");
        assert!(ballot > self.highest, "a ballot reused");
        self.highest = ballot;
        out.push(ProposerEffect::PersistBallot(ballot));
        self.phase = Phase::Preparing {
            ballot,
            first,
            last,
            promises: BTreeMap::new(),
            compacted: Slot(0),
            since_us: now_us,
        };
        out.push(ProposerEffect::Broadcast(PaxosMessage::Prepare(Prepare {
            ballot,
            first,
            last,
        })));
    }

    fn handle_promise(
        &mut self,
        now_us: u64,
        from: NodeId,
        msg: Promise,
        out: &mut Vec<ProposerEffect>,
    ) {
        let Phase::Preparing {
            ballot,
            promises,
            compacted,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if msg.ballot != *ballot || !self.members.contains(&from) {
            return;
        }
        *compacted = (*compacted).max(msg.compacted);
        promises.insert(from, msg.accepted);
        if promises.len() < self.cfg.q1 {
            return;
        }
        let Phase::Preparing {
            ballot,
            first,
            last,
            promises,
            compacted,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            unreachable!("matched above");
        };
        // Slots up to `compacted` are chosen and forgotten by an acceptor
        // of the quorum: never propose in them.
        self.compacted = self.compacted.max(compacted);
        let compacted = self.compacted;
        // P2c: per slot, the value of the highest accepted ballot reported.
        let mut adopted: BTreeMap<Slot, (Ballot, ValueRef)> = BTreeMap::new();
        for pv in promises.into_values().flatten() {
            if pv.slot < first || last.is_some_and(|l| pv.slot > l) {
                continue;
            }
            let e = adopted
                .entry(pv.slot)
                .or_insert((pv.ballot, ValueRef::clone(&pv.value)));
            if pv.ballot > e.0 {
                *e = (pv.ballot, pv.value);
            }
        }
        let mut in_flight = BTreeMap::new();
        match self.cfg.mode {
            Mode::Basic if first <= compacted => {
                // The slot is chosen; the next attempt goes above it (the
                // learner fetches it from a peer's snapshot).
                self.maybe_propose(now_us, out);
            }
            Mode::Basic => {
                let value = match adopted.remove(&first) {
                    Some((_, v)) => v,
                    None => match self.next_batch(out) {
                        Some(v) => v,
                        None => {
                            // Nothing left to propose (our batch was
                            // decided meanwhile).
                            return;
                        }
                    },
                };
                self.propose(now_us, ballot, first, value, &mut in_flight, out);
                self.phase = Phase::Accepting {
                    ballot,
                    in_flight,
                    next_slot: Slot(first.0 + 1),
                };
            }
            Mode::Multi => {
                let reported_max = adopted.keys().next_back().copied();
                let ahead_max = self.chosen_ahead.iter().next_back().copied();
                let mut next = first.max(Slot(compacted.0 + 1));
                for s in [reported_max, ahead_max].into_iter().flatten() {
                    next = next.max(Slot(s.0 + 1));
                }
                // Recover every unfinished slot; fill the holes with no-ops.
                for s in first.0..next.0 {
                    let slot = Slot(s);
                    if slot < self.first_unchosen
                        || slot <= compacted
                        || self.chosen_ahead.contains(&slot)
                    {
                        continue;
                    }
                    let value = adopted
                        .remove(&slot)
                        .map_or_else(|| ValueRef::new(Value::noop()), |(_, v)| v);
                    self.propose(now_us, ballot, slot, value, &mut in_flight, out);
                }
                self.phase = Phase::Accepting {
                    ballot,
                    in_flight,
                    next_slot: next,
                };
                out.push(ProposerEffect::BecameLeader { ballot });
                self.fill_window(now_us, out);
            }
        }
    }

    fn propose(
        &mut self,
        now_us: u64,
        ballot: Ballot,
        slot: Slot,
        value: ValueRef,
        in_flight: &mut BTreeMap<Slot, InFlight>,
        out: &mut Vec<ProposerEffect>,
    ) {
        out.push(ProposerEffect::Proposed {
            slot,
            ballot,
            value: ValueRef::clone(&value),
        });
        out.push(ProposerEffect::Broadcast(PaxosMessage::Accept(Accept {
            ballot,
            slot,
            value: ValueRef::clone(&value),
        })));
        let previous = in_flight.insert(
            slot,
            InFlight {
                value,
                since_us: now_us,
            },
        );
        assert!(previous.is_none(), "{slot} proposed twice in one ballot");
    }

    /// The next batch to propose: one waiting for a slot, or a new one of
    /// the queued commands.
    fn next_batch(&mut self, out: &mut Vec<ProposerEffect>) -> Option<ValueRef> {
        if let Some(v) = self.retry.pop_front() {
            return Some(v);
        }
        if self.queue.is_empty() {
            return None;
        }
        let n = self.queue.len().min(self.cfg.max_batch);
        let mut tokens = Vec::with_capacity(n);
        let mut requests = Vec::with_capacity(n);
        for (t, r) in self.queue.drain(..n) {
            tokens.push(t);
            requests.push(r);
        }
        let batch = BatchId {
            node: self.id,
            nonce: self.nonce,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        out.push(ProposerEffect::Track { batch, tokens });
        Some(ValueRef::new(Value {
            batch: Some(batch),
            requests,
        }))
    }

    fn fill_window(&mut self, now_us: u64, out: &mut Vec<ProposerEffect>) -> bool {
        let mut did = false;
        loop {
            let Phase::Accepting { in_flight, .. } = &self.phase else {
                return did;
            };
            if in_flight.len() >= self.cfg.window {
                return did;
            }
            let Some(value) = self.next_batch(out) else {
                return did;
            };
            let Phase::Accepting {
                ballot,
                mut in_flight,
                next_slot,
            } = std::mem::replace(&mut self.phase, Phase::Idle)
            else {
                unreachable!("matched above");
            };
            let mut slot = next_slot;
            while slot < self.first_unchosen
                || slot <= self.compacted
                || self.chosen_ahead.contains(&slot)
            {
                slot = Slot(slot.0 + 1);
            }
            self.propose(now_us, ballot, slot, value, &mut in_flight, out);
            self.phase = Phase::Accepting {
                ballot,
                in_flight,
                next_slot: Slot(slot.0 + 1),
            };
            did = true;
        }
    }

    fn handle_nack(&mut self, now_us: u64, msg: Nack, out: &mut Vec<ProposerEffect>) {
        if Some(msg.ballot) != self.ballot() || msg.promised <= msg.ballot {
            return;
        }
        self.highest = self.highest.max(msg.promised);
        match self.cfg.mode {
            Mode::Basic => self.preempted(now_us),
            Mode::Multi => {
                out.push(ProposerEffect::BallotTooLow {
                    promised: msg.promised,
                });
                self.step_down(out);
            }
        }
    }

    /// Basic Paxos lost its ballot: our batches go back in line and phase
    /// 1 restarts with a higher ballot after a random back-off.
    fn preempted(&mut self, now_us: u64) {
        if let Phase::Accepting { in_flight, .. } = std::mem::replace(&mut self.phase, Phase::Idle)
        {
            for (_, f) in in_flight.into_iter().rev() {
                if f.value
                    .batch
                    .is_some_and(|b| b.node == self.id && b.nonce == self.nonce)
                {
                    self.retry.push_front(f.value);
                }
            }
        }
        let backoff_us = self.rng.random_range(0..=self.cfg.backoff_max_ms * 1000);
        self.backoff_until_us = now_us + backoff_us;
    }

    fn step_down(&mut self, out: &mut Vec<ProposerEffect>) {
        let was_leading = self.is_leader();
        let mut batches: Vec<BatchId> = Vec::new();
        if let Phase::Accepting { in_flight, .. } = std::mem::replace(&mut self.phase, Phase::Idle)
        {
            batches.extend(in_flight.values().filter_map(|f| self.own(&f.value)));
        }
        batches.extend(self.retry.drain(..).filter_map(|v| v.batch));
        if !batches.is_empty() {
            out.push(ProposerEffect::Abandon {
                batches,
                error: ProposeError::Unknown,
            });
        }
        if !self.queue.is_empty() {
            let tokens = self.queue.drain(..).map(|(t, _)| t).collect();
            out.push(ProposerEffect::Fail {
                tokens,
                error: ProposeError::NotLeader {
                    leader: self.leader().filter(|l| *l != self.id),
                },
            });
        }
        if was_leading {
            out.push(ProposerEffect::SteppedDown);
        }
    }

    fn own(&self, value: &Value) -> Option<BatchId> {
        value
            .batch
            .filter(|b| b.node == self.id && b.nonce == self.nonce)
    }

    fn handle_decided(
        &mut self,
        now_us: u64,
        slot: Slot,
        batch: Option<BatchId>,
        next_undelivered: Slot,
        out: &mut Vec<ProposerEffect>,
    ) {
        if next_undelivered > self.first_unchosen {
            self.first_unchosen = next_undelivered;
        }
        if slot >= self.first_unchosen {
            self.chosen_ahead.insert(slot);
        }
        let first = self.first_unchosen;
        self.chosen_ahead.retain(|s| *s >= first);
        // Our batch is decided: it needs no other slot.
        if let Some(b) = batch {
            self.retry.retain(|v| v.batch != Some(b));
        }
        let mut lost = Vec::new();
        if let Phase::Accepting { in_flight, .. } = &mut self.phase {
            if let Some(f) = in_flight.remove(&slot) {
                if f.value.batch != batch {
                    lost.push(f.value);
                }
            }
            // Slots the learner passed without a decision of their own (a
            // snapshot installed over them): what they held is unknown, so
            // our batches there go to later slots (run at most once).
            let kept = in_flight.split_off(&first);
            lost.extend(
                std::mem::replace(in_flight, kept)
                    .into_values()
                    .map(|f| f.value),
            );
        }
        for v in lost.into_iter().rev() {
            if self.own(&v).is_some() && v.batch != batch {
                // Another value took the slot: ours goes to a later one.
                self.retry.push_front(v);
            }
        }
        if self.cfg.mode == Mode::Basic {
            if let Phase::Accepting { in_flight, .. } = &self.phase {
                if in_flight.is_empty() {
                    self.phase = Phase::Idle;
                }
            }
        }
        self.maybe_propose(now_us, out);
    }

    fn handle_leader(&mut self, now_us: u64, leader: Ballot, out: &mut Vec<ProposerEffect>) {
        if self.cfg.mode != Mode::Multi {
            return;
        }
        self.leader = Some(leader);
        if leader.node == self.id {
            if self.ballot().is_some_and(|b| b >= leader) {
                return;
            }
            self.step_down(out);
            if leader <= self.highest {
                // Used before (an earlier incarnation) or already refused:
                // the election must bid higher.
                out.push(ProposerEffect::BallotTooLow {
                    promised: self.highest,
                });
                return;
            }
            let first = self.first_unchosen;
            self.begin_prepare(now_us, first, None, Some(leader), out);
        } else if self.role() != Role::Idle {
            self.step_down(out);
        }
    }

    fn handle_tick(&mut self, now_us: u64, out: &mut Vec<ProposerEffect>) {
        let retry_us = self.cfg.retry_ms * 1000;
        match (&mut self.phase, self.cfg.mode) {
            (Phase::Idle, _) => {
                self.maybe_propose(now_us, out);
            }
            (Phase::Preparing { since_us, .. }, Mode::Basic) => {
                if now_us.saturating_sub(*since_us) >= retry_us {
                    self.preempted(now_us);
                }
            }
            (
                Phase::Preparing {
                    ballot,
                    first,
                    last,
                    promises,
                    since_us,
                    ..
                },
                Mode::Multi,
            ) => {
                if now_us.saturating_sub(*since_us) >= retry_us {
                    *since_us = now_us;
                    let msg = PaxosMessage::Prepare(Prepare {
                        ballot: *ballot,
                        first: *first,
                        last: *last,
                    });
                    for m in &self.members {
                        if !promises.contains_key(m) {
                            out.push(ProposerEffect::Send {
                                to: *m,
                                msg: msg.clone(),
                            });
                        }
                    }
                }
            }
            (Phase::Accepting { in_flight, .. }, Mode::Basic) => {
                let stale = in_flight
                    .values()
                    .any(|f| now_us.saturating_sub(f.since_us) >= retry_us);
                if stale {
                    // No quorum: phase 1 again finds out what the slot holds.
                    self.preempted(now_us);
                }
            }
            (
                Phase::Accepting {
                    ballot, in_flight, ..
                },
                Mode::Multi,
            ) => {
                let ballot = *ballot;
                for (slot, f) in in_flight.iter_mut() {
                    if now_us.saturating_sub(f.since_us) >= retry_us {
                        f.since_us = now_us;
                        out.push(ProposerEffect::Proposed {
                            slot: *slot,
                            ballot,
                            value: ValueRef::clone(&f.value),
                        });
                        out.push(ProposerEffect::Broadcast(PaxosMessage::Accept(Accept {
                            ballot,
                            slot: *slot,
                            value: ValueRef::clone(&f.value),
                        })));
                    }
                }
            }
        }
        if matches!(self.phase, Phase::Idle) {
            self.maybe_propose(now_us, out);
        }
    }

    /// Invariants after every step.
    fn check(&self) {
        assert!(
            self.queue.len() <= self.cfg.max_pending,
            "queue over its bound"
        );
        match &self.phase {
            Phase::Idle => {}
            Phase::Preparing {
                ballot, promises, ..
            } => {
                assert_eq!(ballot.node, self.id, "phase 1 with another node's ballot");
                assert!(promises.len() < self.cfg.q1, "a phase-1 quorum left unused");
            }
            Phase::Accepting {
                ballot,
                in_flight,
                next_slot,
            } => {
                assert_eq!(ballot.node, self.id, "phase 2 with another node's ballot");
                if self.cfg.mode == Mode::Basic {
                    assert!(in_flight.len() <= 1, "basic Paxos runs one slot at a time");
                }
                if let Some(last) = in_flight.keys().next_back() {
                    assert!(
                        *last < *next_slot,
                        "a slot in flight at or past the next slot"
                    );
                }
            }
        }
        assert!(
            self.ballot().is_none_or(|b| b <= self.highest),
            "a ballot above the highest known"
        );
    }
}

#[cfg(test)]
mod tests;
