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
//! **Configuration changes** (Multi-Paxos): a change is a value of its
//! own ([`Value::reconfig`]), proposed by the leader when no other change
//! is in progress; chosen in slot `s`, it names the acceptors from slot
//! `s + α` on (`α` = the window; [`Configurations`]). The leader proposes
//! in slot `t` only once slot `t − α` is delivered, so it always knows
//! `t`'s acceptors. Phase 1 at the leader's ballot covers the slots of the
//! configurations it held a quorum of; before proposing in the first slot
//! of a new configuration it repeats phase 1 (same ballot) with a quorum
//! of the new acceptors, adopting what they accepted there. With several
//! changes pending, each configuration gets its phase 1 in turn, the
//! earliest first: a leader never proposes in a configuration whose
//! acceptors it holds no quorum of. Once a change
//! is delivered the leader fills the slots up to its first slot with
//! no-ops, so the change takes effect at once (Lamport's "α − 1 no-ops").
//!
//! # Thrifty phase 2
//!
//! A Multi-Paxos leader needs `q2` acceptances per slot, and every other
//! answer costs the cluster work it does not need then. With
//! [`PaxosConfig::thrifty`] (the default) it sends each Accept at once only
//! to a phase-2 quorum of the slot's acceptors: itself and the `q2 − 1`
//! others whose answers chose its learner's last counted slot (the
//! quickest, [`ProposerInput::Acked`]), filled up in id order. Every other
//! acceptor gets the Accept queued, in one [`LazyAccepts`] per tick (or as
//! soon as it holds [`LAZY_MAX`]), and answers them all with one
//! [`LazyAccepted`](crate::messages::LazyAccepted); its learner delivers
//! them from the commits that ride along. So every acceptor still accepts
//! every slot and the leader still hears from all of them, the others once
//! per tick instead of once per slot. Should a counted acceptor fail, its
//! slots are chosen with the late answers within a tick, and the learner
//! names the acceptors that answered: the next slots count on them.
//! Safety is Paxos' own: an acceptor that accepts late accepts what the
//! ballot proposed, or refuses it for a higher promise. Thrift starts only
//! after [`THRIFTY_AFTER`] of the ballot's own slots were decided with
//! every acceptor answering at once, so the learner has named the
//! quickest; a retransmission (a slot not chosen within `retry_ms`) goes to
//! every acceptor and starts that count again.
//!
//! **Compaction**: a [`Promise`] names the acceptor's compaction point;
//! every slot up to it is chosen and the acceptor no longer reports its
//! value. The proposer never proposes in a slot at or below the highest
//! compaction point it heard (its learner learns those slots from a peer's
//! snapshot); see [`acceptor::core`](crate::acceptor::core#compaction) for
//! why this keeps P2c.

use crate::config::{Mode, PaxosConfig};
use crate::error::ProposeError;
use crate::messages::{Accept, Commit, LazyAccepts, Nack, PaxosMessage, Prepare, Promise};
use crate::types::{Ballot, BatchId, Configurations, PValue, Request, Slot, Value, ValueRef};
use crate::wiring::Change;
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
    /// Client commands taken together (a drained submission queue), in
    /// arrival order; each token names its answer in the actor.
    Submits {
        /// The commands and their tokens.
        requests: Vec<(u64, Request)>,
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
        /// The learner's last delivered slots chosen at one ballot.
        commit: Option<Commit>,
    },
    /// The ballot leader election's leader (Multi-Paxos).
    Leader {
        /// The leader's ballot.
        leader: Ballot,
    },
    /// The learner's configurations changed (Multi-Paxos).
    Configured {
        /// The configurations now known.
        configs: Configurations,
    },
    /// A configuration change to propose; `token` names its answer.
    Reconfigure {
        /// The actor's name for the answer.
        token: u64,
        /// The change.
        change: Change,
    },
    /// The acceptors whose answers chose the learner's last counted slot,
    /// quickest first (Multi-Paxos: thrifty phase 2 counts on them).
    Acked {
        /// The acceptors.
        acceptors: Vec<NodeId>,
    },
    /// The learner saw a leader's Accept or commit at this ballot, higher
    /// than any before (Multi-Paxos): the leader to name to clients when
    /// the election, which may not complete a round from here, names an
    /// older one.
    Leading {
        /// The ballot.
        ballot: Ballot,
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

/// Phase 1 again, at the leader's ballot, with the acceptors of a new
/// configuration.
#[derive(Clone, Debug)]
struct Reprepare {
    /// The first slot of the new configuration.
    from: Slot,
    promises: BTreeMap<NodeId, Vec<PValue>>,
    compacted: Slot,
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
    /// The acceptors of each slot (Multi-Paxos changes them).
    configs: Configurations,
    /// Where Prepare and Accept go: every acceptor from the current
    /// configuration on.
    targets: Vec<NodeId>,
    /// The leader holds a phase-1 quorum of the configurations starting
    /// at or before this slot.
    prepared_from: Slot,
    reprepare: Option<Reprepare>,
    /// Recovered values (or hole-filling no-ops) waiting until the window
    /// reaches their slot.
    deferred: BTreeMap<Slot, ValueRef>,
    leader: Option<Ballot>,
    backoff_until_us: u64,
    /// Multi-Paxos: the slots the learner delivered that were chosen at
    /// the current ballot (told to the followers on the next Accept).
    commit: Option<Commit>,
    /// The last slot of the latest commit sent.
    commit_sent: Slot,
    /// Thrifty phase 2 is on for the current ballot (off after its first
    /// retransmission).
    thrifty: bool,
    /// Accepts queued for the acceptors outside the counted quorum.
    lazy: BTreeMap<NodeId, Vec<Accept>>,
    /// The counted quorum of the last thrifty Accept (a buffer).
    loud_buf: Vec<NodeId>,
    /// The last slot of the latest commit sent alone (to every acceptor).
    lazy_commit_sent: Slot,
    /// The other acceptors whose answers chose the learner's last counted
    /// slot, quickest first: the counted quorum of thrifty phase 2.
    quick: Vec<NodeId>,
    /// The highest ballot of a leader's Accepts its learner saw.
    seen_leading: Option<Ballot>,
    /// Own slots decided since this ballot began or last retransmitted:
    /// thrift starts once there are [`THRIFTY_AFTER`].
    calm: usize,
}

/// Own slots a leader sees decided with every acceptor answering (at the
/// start of its ballot, after a retransmission) before it turns thrifty:
/// by then its learner has named the quickest acceptors.
pub const THRIFTY_AFTER: usize = 16;

/// Accepts queued for one acceptor before they go at once, without
/// waiting for the tick.
pub const LAZY_MAX: usize = 256;

impl ProposerCore {
    /// A proposer for node `id` among `members`, its batch nonce and
    /// back-off drawn from `seed`.
    pub fn new(id: NodeId, cfg: PaxosConfig, members: Vec<NodeId>, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let nonce = rng.random();
        Self {
            id,
            cfg,
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
            targets: members.clone(),
            configs: Configurations::initial(&members),
            prepared_from: Slot(1),
            reprepare: None,
            deferred: BTreeMap::new(),
            leader: None,
            backoff_until_us: 0,
            commit: None,
            commit_sent: Slot(0),
            thrifty: false,
            lazy: BTreeMap::new(),
            loud_buf: Vec::new(),
            lazy_commit_sent: Slot(0),
            quick: Vec::new(),
            seen_leading: None,
            calm: 0,
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

    /// Whether it waits for its learner's next decision to make progress:
    /// in basic Paxos always (one slot at a time); in Multi-Paxos while it
    /// has commands or values it could not propose yet (a full window, a
    /// slot beyond the delivered configurations), recovered slots to
    /// propose, or a phase 1 under way. A Multi-Paxos leader with
    /// everything queued in flight does not: it reads its decisions with
    /// its next command or tick (their commit rides on its next Accept),
    /// and a retransmission timer runs only after reading them.
    pub fn awaits_decisions(&self) -> bool {
        match self.cfg.mode {
            Mode::Basic => true,
            Mode::Multi => {
                !self.queue.is_empty()
                    || !self.retry.is_empty()
                    || !self.deferred.is_empty()
                    || self.reprepare.is_some()
                    || matches!(self.phase, Phase::Preparing { .. })
            }
        }
    }

    /// The leader it knows of (Multi-Paxos): the election's, or the node
    /// of a higher ballot whose Accepts its learner saw. A node cut off
    /// from all but the new leader cannot complete an election round and
    /// keeps naming the old one; the new leader's Accepts name the new.
    pub fn leader(&self) -> Option<NodeId> {
        match (self.leader, self.seen_leading) {
            (Some(l), Some(s)) if s > l => Some(s.node),
            (l, s) => l.or(s).map(|b| b.node),
        }
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

    /// Where Prepare and Accept go (every acceptor from the current
    /// configuration on).
    pub fn targets(&self) -> &[NodeId] {
        &self.targets
    }

    /// The acceptors of each slot, as far as it knows.
    pub fn configurations(&self) -> &Configurations {
        &self.configs
    }

    /// A proposer that knows `configs` from the start (a node added to
    /// the cluster knows the initial acceptors, not itself).
    #[must_use]
    pub fn with_configurations(mut self, configs: Configurations) -> Self {
        self.configs = configs;
        self.targets = self.configs.from_slot(self.first_unchosen);
        self
    }

    /// The phase-1 quorum of a configuration: `q1` for the configured
    /// cluster size, a majority for any other.
    fn q1_of(&self, acceptors: &[NodeId]) -> usize {
        if acceptors.len() == self.cfg.nodes {
            self.cfg.q1
        } else {
            acceptors.len() / 2 + 1
        }
    }

    /// The first slot the leader may not propose in yet: `α` past the
    /// first undelivered slot, and the first slot of a configuration it
    /// holds no phase-1 quorum of.
    fn limit(&self) -> Slot {
        let mut lim = Slot(self.first_unchosen.0 + self.cfg.window as u64);
        if let Some(unprepared) = self.next_unprepared() {
            lim = lim.min(unprepared);
        }
        lim
    }

    /// The first slot of the earliest configuration after the ones the
    /// leader holds a phase-1 quorum of (`None`: it holds every one it
    /// knows). With two changes chosen before a leader's phase 1, this is
    /// the first of them, not the latest: each configuration gets its own
    /// phase 1, in order.
    fn next_unprepared(&self) -> Option<Slot> {
        self.configs
            .from
            .range(Slot(self.prepared_from.0 + 1)..)
            .next()
            .map(|(s, _)| *s)
    }

    /// The one entry: handles `input` at `now_us`, leaving its effects in
    /// `out`, and checks the invariants.
    pub fn step(&mut self, now_us: u64, input: ProposerInput, out: &mut Vec<ProposerEffect>) {
        match input {
            ProposerInput::Submit { token, request } => {
                self.handle_submit(now_us, token, request, out)
            }
            ProposerInput::Submits { requests } => self.handle_submits(now_us, requests, out),
            ProposerInput::Promise { from, msg } => self.handle_promise(now_us, from, msg, out),
            ProposerInput::Nack { msg, .. } => self.handle_nack(now_us, msg, out),
            ProposerInput::Decided {
                slot,
                batch,
                next_undelivered,
                commit,
            } => {
                self.note_commit(commit);
                self.handle_decided(now_us, slot, batch, next_undelivered, out)
            }
            ProposerInput::Leader { leader } => self.handle_leader(now_us, leader, out),
            ProposerInput::Configured { configs } => self.handle_configured(now_us, configs, out),
            ProposerInput::Reconfigure { token, change } => {
                self.handle_reconfigure(now_us, token, change, out)
            }
            ProposerInput::Tick => self.handle_tick(now_us, out),
            ProposerInput::Leading { ballot } => {
                if self.seen_leading.is_none_or(|s| ballot > s) {
                    self.seen_leading = Some(ballot);
                }
            }
            ProposerInput::Acked { acceptors } => {
                self.quick = acceptors.into_iter().filter(|a| *a != self.id).collect();
            }
        }
        self.check();
    }

    fn handle_configured(
        &mut self,
        now_us: u64,
        configs: Configurations,
        out: &mut Vec<ProposerEffect>,
    ) {
        if configs.from.len() < self.configs.from.len() {
            // Older news (a restarted learner that has not caught up).
            return;
        }
        self.configs = configs;
        self.targets = self.configs.from_slot(self.first_unchosen);
        if self.maybe_promised(now_us, out) || !self.is_leader() {
            return;
        }
        if self.next_unprepared().is_some() {
            self.fill_to_change();
            self.begin_reprepare(now_us, out);
        }
        self.fill_window(now_us, out);
    }

    /// A change takes effect at the first slot of its configuration (the
    /// earliest one not prepared yet): the open slots before it get
    /// no-ops, so it does at once. Slots of a configuration not prepared
    /// get nothing here: what its acceptors accepted there is unknown
    /// until its phase 1.
    fn fill_to_change(&mut self) {
        let Some(latest) = self.next_unprepared() else {
            return;
        };
        if let Phase::Accepting {
            in_flight,
            next_slot,
            ..
        } = &mut self.phase
        {
            let mut s = *next_slot;
            while s < latest {
                let open = s >= self.first_unchosen
                    && s > self.compacted
                    && !self.chosen_ahead.contains(&s)
                    && !in_flight.contains_key(&s);
                if open {
                    self.deferred
                        .entry(s)
                        .or_insert_with(|| ValueRef::new(Value::noop()));
                }
                s = Slot(s.0 + 1);
            }
            *next_slot = (*next_slot).max(latest);
        }
    }

    /// Phase 1 again at the leader's ballot, with the acceptors of the
    /// earliest configuration it holds no quorum of, for its slots.
    fn begin_reprepare(&mut self, now_us: u64, out: &mut Vec<ProposerEffect>) {
        let Some(ballot) = self.ballot() else {
            return;
        };
        let Some(from) = self.next_unprepared() else {
            return;
        };
        let acceptors = self.configs.at(from).to_vec();
        if self.reprepare.as_ref().is_some_and(|r| r.from == from) {
            return;
        }
        // What the old acceptors reported for these slots does not count.
        self.deferred.retain(|s, _| *s < from);
        self.reprepare = Some(Reprepare {
            from,
            promises: BTreeMap::new(),
            compacted: Slot(0),
            since_us: now_us,
        });
        let msg = PaxosMessage::Prepare(Prepare {
            ballot,
            first: from,
            last: None,
        });
        for a in acceptors {
            out.push(ProposerEffect::Send {
                to: a,
                msg: msg.clone(),
            });
        }
    }

    /// A promise for the repeated phase 1.
    fn handle_reprepare_promise(
        &mut self,
        now_us: u64,
        from: NodeId,
        msg: Promise,
        out: &mut Vec<ProposerEffect>,
    ) {
        let Some(r) = &mut self.reprepare else {
            return;
        };
        let acceptors = self.configs.at(r.from).to_vec();
        if !acceptors.contains(&from) {
            return;
        }
        r.compacted = r.compacted.max(msg.compacted);
        r.promises.insert(from, msg.accepted);
        if r.promises.len() < self.q1_of(&acceptors) {
            return;
        }
        let Some(r) = self.reprepare.take() else {
            return;
        };
        self.compacted = self.compacted.max(r.compacted);
        // This phase 1 covers its configuration's slots only: a later
        // configuration's get their own.
        let upto = self
            .configs
            .from
            .range(Slot(r.from.0 + 1)..)
            .next()
            .map_or(Slot(u64::MAX), |(s, _)| *s);
        let mut adopted: BTreeMap<Slot, (Ballot, ValueRef)> = BTreeMap::new();
        for pv in r.promises.into_values().flatten() {
            if pv.slot < r.from || pv.slot >= upto {
                continue;
            }
            let e = adopted
                .entry(pv.slot)
                .or_insert((pv.ballot, ValueRef::clone(&pv.value)));
            if pv.ballot > e.0 {
                *e = (pv.ballot, pv.value);
            }
        }
        if let Some(max) = adopted.keys().next_back().copied() {
            for s in r.from.0..=max.0 {
                let slot = Slot(s);
                if slot < self.first_unchosen
                    || slot <= self.compacted
                    || self.chosen_ahead.contains(&slot)
                {
                    continue;
                }
                let value = adopted
                    .remove(&slot)
                    .map_or_else(|| ValueRef::new(Value::noop()), |(_, v)| v);
                self.deferred.insert(slot, value);
            }
            if let Phase::Accepting { next_slot, .. } = &mut self.phase {
                *next_slot = (*next_slot).max(Slot(max.0 + 1));
            }
        }
        self.prepared_from = r.from;
        if self.next_unprepared().is_some() {
            // A later change is known too: its configuration next.
            self.fill_to_change();
            self.begin_reprepare(now_us, out);
        }
        self.fill_window(now_us, out);
    }

    /// Whether a configuration change is under way: chosen and not yet in
    /// effect, or proposed and not yet chosen.
    fn change_in_progress(&self) -> bool {
        let (latest, _) = self.configs.latest();
        if latest > self.prepared_from || latest > self.first_unchosen {
            return true;
        }
        let pending = |v: &ValueRef| v.reconfig.is_some();
        let in_flight = match &self.phase {
            Phase::Accepting { in_flight, .. } => in_flight.values().any(|f| pending(&f.value)),
            _ => false,
        };
        in_flight || self.deferred.values().any(pending) || self.retry.iter().any(pending)
    }

    fn handle_reconfigure(
        &mut self,
        now_us: u64,
        token: u64,
        change: Change,
        out: &mut Vec<ProposerEffect>,
    ) {
        let fail = |error| ProposerEffect::Fail {
            tokens: vec![token],
            error,
        };
        if self.cfg.mode != Mode::Multi {
            out.push(fail(ProposeError::Unsupported));
            return;
        }
        if !self.is_leader() {
            out.push(fail(ProposeError::NotLeader {
                leader: self.leader().filter(|l| *l != self.id),
            }));
            return;
        }
        if self.change_in_progress() {
            out.push(fail(ProposeError::ChangeInProgress));
            return;
        }
        let mut members = self.configs.latest().1.to_vec();
        match change {
            Change::Add(n) if members.contains(&n) => {
                out.push(fail(ProposeError::InvalidChange(format!(
                    "{n} is already a member"
                ))));
                return;
            }
            Change::Add(n) => members.push(n),
            Change::Remove(n) if !members.contains(&n) => {
                out.push(fail(ProposeError::InvalidChange(format!(
                    "{n} is not a member"
                ))));
                return;
            }
            Change::Remove(_) if members.len() == 1 => {
                out.push(fail(ProposeError::InvalidChange(
                    "the last member cannot be removed".into(),
                )));
                return;
            }
            Change::Remove(n) => members.retain(|m| *m != n),
        }
        members.sort_unstable();
        let batch = BatchId {
            node: self.id,
            nonce: self.nonce,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        out.push(ProposerEffect::Track {
            batch,
            tokens: vec![token],
        });
        self.retry.push_front(ValueRef::new(Value {
            batch: Some(batch),
            requests: Vec::new(),
            reconfig: Some(members),
        }));
        self.fill_window(now_us, out);
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

    fn handle_submits(
        &mut self,
        now_us: u64,
        requests: Vec<(u64, Request)>,
        out: &mut Vec<ProposerEffect>,
    ) {
        if requests.is_empty() {
            return;
        }
        if self.cfg.mode == Mode::Multi && self.role() == Role::Idle {
            out.push(ProposerEffect::Fail {
                tokens: requests.into_iter().map(|(t, _)| t).collect(),
                error: ProposeError::NotLeader {
                    leader: self.leader().filter(|l| *l != self.id),
                },
            });
            return;
        }
        let room = self.cfg.max_pending.saturating_sub(self.queue.len());
        let mut refused = Vec::new();
        for (i, (token, request)) in requests.into_iter().enumerate() {
            if i < room {
                self.queue.push_back((token, request));
            } else {
                refused.push(token);
            }
        }
        if !refused.is_empty() {
            out.push(ProposerEffect::Fail {
                tokens: refused,
                error: ProposeError::Busy,
            });
        }
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
        if matches!(self.phase, Phase::Accepting { .. })
            && self.cfg.mode == Mode::Multi
            && Some(msg.ballot) == self.ballot()
        {
            self.handle_reprepare_promise(now_us, from, msg, out);
            return;
        }
        let Phase::Preparing {
            ballot,
            first,
            promises,
            compacted,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if msg.ballot != *ballot || !self.configs.at(*first).contains(&from) {
            return;
        }
        *compacted = (*compacted).max(msg.compacted);
        promises.insert(from, msg.accepted);
        self.maybe_promised(now_us, out);
    }

    /// Phase 1 is done once `q1` acceptors of its first slot's
    /// configuration promised (checked on each promise and whenever the
    /// configurations change).
    fn maybe_promised(&mut self, now_us: u64, out: &mut Vec<ProposerEffect>) -> bool {
        let Phase::Preparing {
            first, promises, ..
        } = &mut self.phase
        else {
            return false;
        };
        let acceptors = self.configs.at(*first).to_vec();
        promises.retain(|n, _| acceptors.contains(n));
        if promises.len() < self.q1_of(&acceptors) {
            return false;
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
                            return true;
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
                self.prepared_from = self.configs.start_of(first);
                self.deferred.clear();
                self.reprepare = None;
                let unprepared = self.next_unprepared();
                if let Some(boundary) = unprepared {
                    // The slots of a newer configuration wait for its own
                    // phase 1.
                    next = next.min(boundary);
                }
                let limit = self.limit();
                // Recover every unfinished slot; fill the holes with no-ops
                // (those beyond the window wait in `deferred`).
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
                    if slot >= limit {
                        self.deferred.insert(slot, value);
                    } else {
                        self.propose(now_us, ballot, slot, value, &mut in_flight, out);
                    }
                }
                self.phase = Phase::Accepting {
                    ballot,
                    in_flight,
                    next_slot: next,
                };
                out.push(ProposerEffect::BecameLeader { ballot });
                // Every acceptor answers until the learner has named the
                // quickest (see THRIFTY_AFTER).
                self.thrifty = false;
                self.calm = 0;
                self.lazy.clear();
                if unprepared.is_some() {
                    self.fill_to_change();
                    self.begin_reprepare(now_us, out);
                }
                self.fill_window(now_us, out);
            }
        }
        true
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
        let commit = self.commit_at(ballot);
        let accept = Accept {
            ballot,
            slot,
            value: ValueRef::clone(&value),
            commit,
        };
        if self.thrifty && self.cfg.mode == Mode::Multi {
            self.send_thrifty(accept, out);
        } else {
            out.push(ProposerEffect::Broadcast(PaxosMessage::Accept(accept)));
        }
        let previous = in_flight.insert(
            slot,
            InFlight {
                value,
                since_us: now_us,
            },
        );
        assert!(previous.is_none(), "{slot} proposed twice in one ballot");
    }

    /// Sends `accept` at once to a phase-2 quorum of its slot's acceptors
    /// (this node, if one of them, and the next others in id order from
    /// `loud_from`) and queues it for the other targets (see the
    /// [module documentation](self#thrifty-phase-2)).
    fn send_thrifty(&mut self, accept: Accept, out: &mut Vec<ProposerEffect>) {
        // A buffer kept between calls: this runs once per slot.
        let mut loud = std::mem::take(&mut self.loud_buf);
        loud.clear();
        let acceptors = self.configs.at(accept.slot);
        let me_in = acceptors.contains(&self.id);
        let wanted = self.q2_of(acceptors).saturating_sub(usize::from(me_in));
        if me_in {
            loud.push(self.id);
        }
        // The quickest first, then the others in id order.
        let mut counted = 0;
        for a in self.quick.iter().chain(acceptors.iter()) {
            if counted >= wanted {
                break;
            }
            if *a != self.id && acceptors.contains(a) && !loud.contains(a) {
                loud.push(*a);
                counted += 1;
            }
        }
        // The last target takes `accept` itself: one reference count
        // update fewer per slot than cloning for every target.
        let mut accept = Some(accept);
        let last = self.targets.len().saturating_sub(1);
        for (i, to) in self.targets.iter().enumerate() {
            let take = |accept: &mut Option<Accept>| {
                if i == last {
                    accept.take()
                } else {
                    accept.clone()
                }
            };
            if loud.contains(to) {
                let Some(a) = take(&mut accept) else { break };
                out.push(ProposerEffect::Send {
                    to: *to,
                    msg: PaxosMessage::Accept(a),
                });
            } else if *to != self.id {
                let Some(a) = take(&mut accept) else { break };
                let queue = self.lazy.entry(*to).or_default();
                queue.push(a);
                if queue.len() >= LAZY_MAX {
                    let accepts = std::mem::replace(queue, Vec::with_capacity(LAZY_MAX));
                    out.push(ProposerEffect::Send {
                        to: *to,
                        msg: PaxosMessage::LazyAccepts(LazyAccepts { accepts }),
                    });
                }
            }
        }
        self.loud_buf = loud;
    }

    /// Sends every queued lazy Accept (on the tick).
    fn flush_lazy(&mut self, out: &mut Vec<ProposerEffect>) {
        for (to, queue) in &mut self.lazy {
            if !queue.is_empty() {
                out.push(ProposerEffect::Send {
                    to: *to,
                    msg: PaxosMessage::LazyAccepts(LazyAccepts {
                        accepts: std::mem::take(queue),
                    }),
                });
            }
        }
    }

    /// The phase-2 quorum of a configuration: `q2` for the configured
    /// cluster size, a majority for any other (as the learners count).
    fn q2_of(&self, acceptors: &[NodeId]) -> usize {
        if acceptors.len() == self.cfg.nodes {
            self.cfg.q2
        } else {
            acceptors.len() / 2 + 1
        }
    }

    /// Keeps the learner's commit when it is of the current ballot
    /// (Multi-Paxos): only what was chosen at the leader's own ballot is
    /// named by it.
    fn note_commit(&mut self, commit: Option<Commit>) {
        let Some(c) = commit else {
            return;
        };
        if self.cfg.mode != Mode::Multi || self.ballot() != Some(c.ballot) {
            return;
        }
        if self
            .commit
            .is_none_or(|old| old.ballot != c.ballot || old.through < c.through)
        {
            self.commit = Some(c);
        }
    }

    /// The commit to carry on an Accept at `ballot` (noting it sent).
    fn commit_at(&mut self, ballot: Ballot) -> Option<Commit> {
        let c = self.commit.filter(|c| c.ballot == ballot)?;
        self.commit_sent = self.commit_sent.max(c.through);
        Some(c)
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
        Some(ValueRef::new(Value::batch(batch, requests)))
    }

    fn fill_window(&mut self, now_us: u64, out: &mut Vec<ProposerEffect>) -> bool {
        let mut did = false;
        loop {
            let Phase::Accepting {
                in_flight,
                next_slot,
                ..
            } = &self.phase
            else {
                return did;
            };
            if in_flight.len() >= self.cfg.window {
                return did;
            }
            let limit = if self.cfg.mode == Mode::Multi {
                self.limit()
            } else {
                Slot(u64::MAX)
            };
            // Recovered slots first, as the window reaches them.
            let deferred = self.deferred.range(..limit).next().map(|(s, _)| *s);
            let (slot, value) = if let Some(slot) = deferred {
                let Some(value) = self.deferred.remove(&slot) else {
                    return did;
                };
                (slot, value)
            } else {
                let mut slot = *next_slot;
                while slot < self.first_unchosen
                    || slot <= self.compacted
                    || self.chosen_ahead.contains(&slot)
                    || self.deferred.contains_key(&slot)
                {
                    slot = Slot(slot.0 + 1);
                }
                if slot >= limit {
                    return did;
                }
                let Some(value) = self.next_batch(out) else {
                    return did;
                };
                (slot, value)
            };
            let Phase::Accepting {
                ballot,
                mut in_flight,
                next_slot,
            } = std::mem::replace(&mut self.phase, Phase::Idle)
            else {
                unreachable!("matched above");
            };
            self.propose(now_us, ballot, slot, value, &mut in_flight, out);
            self.phase = Phase::Accepting {
                ballot,
                in_flight,
                next_slot: next_slot.max(Slot(slot.0 + 1)),
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
        self.reprepare = None;
        self.deferred.clear();
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
        if self.cfg.thrifty && self.cfg.mode == Mode::Multi && self.is_leader() && !self.thrifty {
            self.calm += 1;
            if self.calm >= THRIFTY_AFTER && !self.quick.is_empty() {
                self.thrifty = true;
            }
        }
        if next_undelivered > self.first_unchosen {
            self.first_unchosen = next_undelivered;
            if self.configs.from.len() > 1 {
                self.targets = self.configs.from_slot(self.first_unchosen);
            }
        }
        if slot >= self.first_unchosen {
            self.chosen_ahead.insert(slot);
        }
        let first = self.first_unchosen;
        self.chosen_ahead.retain(|s| *s >= first);
        self.deferred.remove(&slot);
        self.deferred.retain(|s, _| *s >= first);
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
        if !matches!(self.phase, Phase::Accepting { .. }) {
            // Not leading (any more): what was queued is for a ballot
            // that is over.
            self.lazy.clear();
        }
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
                    for m in self.configs.at(*first) {
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
                let commit = self.commit.filter(|c| c.ballot == ballot);
                let mut resent = false;
                for (slot, f) in in_flight.iter_mut() {
                    if now_us.saturating_sub(f.since_us) >= retry_us {
                        f.since_us = now_us;
                        resent = true;
                        out.push(ProposerEffect::Proposed {
                            slot: *slot,
                            ballot,
                            value: ValueRef::clone(&f.value),
                        });
                        out.push(ProposerEffect::Broadcast(PaxosMessage::Accept(Accept {
                            ballot,
                            slot: *slot,
                            value: ValueRef::clone(&f.value),
                            commit,
                        })));
                    }
                }
                if resent {
                    // A counted acceptor may have failed: answers from
                    // every acceptor until the learner names the quickest
                    // again.
                    self.thrifty = false;
                    self.calm = 0;
                }
                self.flush_lazy(out);
                if let Some(c) = commit {
                    // The acceptors outside the counted quorum saw only
                    // the commits their lazy Accepts carried.
                    let sent = if self.cfg.thrifty {
                        self.lazy_commit_sent
                    } else {
                        self.commit_sent
                    };
                    if c.through > sent {
                        // No Accept carried the latest decisions: they go
                        // alone, as Raft's heartbeat carries the commit
                        // index.
                        self.commit_sent = c.through;
                        self.lazy_commit_sent = c.through;
                        out.push(ProposerEffect::Broadcast(PaxosMessage::Commit(c)));
                    }
                }
            }
        }
        if let (Some(ballot), Some(r)) = (self.ballot(), self.reprepare.as_mut()) {
            if now_us.saturating_sub(r.since_us) >= retry_us {
                r.since_us = now_us;
                let msg = PaxosMessage::Prepare(Prepare {
                    ballot,
                    first: r.from,
                    last: None,
                });
                for m in self.configs.at(r.from) {
                    if !r.promises.contains_key(m) {
                        out.push(ProposerEffect::Send {
                            to: *m,
                            msg: msg.clone(),
                        });
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
                ballot,
                promises,
                first,
                ..
            } => {
                assert_eq!(ballot.node, self.id, "phase 1 with another node's ballot");
                let acceptors = self.configs.at(*first);
                assert!(
                    promises.keys().all(|n| acceptors.contains(n)),
                    "a promise counted from a stranger"
                );
                assert!(
                    promises.len() < self.q1_of(acceptors),
                    "a phase-1 quorum left unused"
                );
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
