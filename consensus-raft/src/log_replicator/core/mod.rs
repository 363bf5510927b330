//! The LogReplicator core: the one owner of term, vote and log.
//!
//! [`ReplicationCore`] holds `current_term`, `voted_for`, the log, the commit
//! index, the applied index, the state machine, the role and the
//! configuration in effect. Every decision that reads or writes them is taken
//! here, atomically with the log: votes (a vote must never be decided on a
//! stale copy of the log), term changes, role changes, appends, commits,
//! applies, snapshots taken and installed.
//!
//! Every input goes through one entry, [`ReplicationCore::step`] (as
//! raft-rs' `step`/`tick`): peer messages, client proposals and reads, the
//! timer, and the term-carrying requests of the other components
//! ([`Input::BeginElection`], [`Input::BecomeLeader`],
//! [`Input::ProposeMembership`], ...), which the core answers with a
//! [`Refusal`] when the request was based on a state that no longer holds.
//! `step` always ends the same way: the hard state is flushed, the role,
//! configuration and progress changes become events, and (in debug builds)
//! the invariants of the owner's state are checked, so no input can skip
//! them. The other components learn what happened through [`RaftEvent`]s.
//!
//! The core does no I/O and reads no clock: every input that needs the time
//! gets `now_us`, and every output is an [`Effect`] pushed on an output
//! buffer that the actor drains with [`take_effects`](ReplicationCore::take_effects)
//! and carries out **in order**: durable effects
//! ([`SaveHardState`](Effect::SaveHardState), [`AppendLog`](Effect::AppendLog),
//! ...) come before the messages that depend on them.
//!
//! # Layout
//!
//! One file per handler, as openraft's `engine/handler/`: this file holds the
//! state, the step entry, the accessors, the invariants and the role
//! changes; `vote.rs` (RequestVote and the elections LeaderElection asks
//! for), `append.rs` (AppendEntries, follower and leader side), `commit.rs`
//! (commit and apply), `read.rs` (ReadIndex), `transfer.rs` (leadership
//! transfer) and `snapshot.rs` (compaction and InstallSnapshot) each add one
//! `impl` block of handlers.
//!
//! # Hot path
//! Proposals arrive in batches ([`Input::Propose`]); each
//! command becomes one `Arc`-shared entry that the log, the persisted copy and
//! every AppendEntries share. Up to `max_inflight_appends` AppendEntries of up
//! to `max_log_entries_per_append` entries are in flight per follower; while
//! the window is full, new entries accumulate and leave in the next, larger
//! batch. With `coalesce_appends` (the default), a request that would not be
//! full also waits while another to the same follower is unanswered
//! (Nagle's algorithm): under a steady trickle of proposals each follower
//! gets one request per round trip carrying everything proposed meanwhile,
//! instead of one per proposal; an idle follower still gets a new entry at
//! once.

use crate::config::RaftConfig;
use crate::configuration::Membership;
use crate::error::{ProposeError, RecoveryError, Refusal};
use crate::events::{HardState, LogProgress, RaftEvent, Snapshot, SnapshotMeta};
use crate::log::RaftLog;
use crate::messages::{
    AppendEntries, AppendEntriesResponse, EntryRef, InstallSnapshotResponse, RaftCommand,
    RaftMessage, RequestVote, RequestVoteResponse, TimeoutNow,
};
use consensus_actors::kv::StateMachine;
use consensus_actors::types::{ClientId, LogEntry, LogId, LogIndex, NodeId, NodeState, Term};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Identifies one client proposal inside a node (chosen by the actor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProposalId(pub u64);

/// Identifies one linearizable read inside a node (chosen by the actor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// A command a client wants replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal<C> {
    /// Where the result goes.
    pub id: ProposalId,
    /// The state machine command.
    pub command: C,
    /// The proposing client (recorded in the entry).
    pub client_id: ClientId,
}

/// A proposal that committed: where its entry sits in the log and what
/// applying it returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed<O> {
    /// The entry's position: the term it was proposed in and its index.
    pub log_id: LogId,
    /// The state machine's output.
    pub output: O,
}

/// What a node finds in its storage when it (re)starts.
#[derive(Clone, Debug)]
pub struct Recovered<C> {
    /// The persisted term and vote.
    pub hard_state: HardState,
    /// The latest persisted snapshot.
    pub snapshot: Option<Snapshot>,
    /// The persisted log entries, in index order (entries covered by the
    /// snapshot are skipped).
    pub entries: Vec<EntryRef<C>>,
    /// The configuration to use when neither the snapshot nor the log holds
    /// one: the initial voters for a bootstrapping cluster,
    /// [`Membership::empty`] for a node that joins later.
    pub initial_membership: Membership,
}

impl<C> Recovered<C> {
    /// The state of a brand-new node.
    pub fn fresh(initial_membership: Membership) -> Self {
        Self {
            hard_state: HardState::default(),
            snapshot: None,
            entries: Vec::new(),
            initial_membership,
        }
    }
}

/// An output of [`ReplicationCore`], carried out by the actor in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect<C, O> {
    /// Persist term and vote (and sync) before anything that follows.
    SaveHardState(HardState),
    /// Persist these entries at the end of the log (and sync).
    AppendLog(Vec<EntryRef<C>>),
    /// Delete every persisted entry from this index on.
    TruncateLog(LogIndex),
    /// Persist this snapshot as the latest one.
    SaveSnapshot(Arc<Snapshot>),
    /// Delete every persisted entry up to and including this index.
    PurgeLog(LogIndex),
    /// Delete every persisted entry: the snapshot just saved replaces the
    /// whole log (it does not match the snapshot's last entry, §7).
    DiscardLog,
    /// Send a message to a peer.
    Send {
        /// Destination.
        to: NodeId,
        /// The message.
        msg: RaftMessage<C>,
    },
    /// A proposal's outcome.
    ProposalResult {
        /// The proposal.
        id: ProposalId,
        /// Where the entry committed and the state machine's output, or
        /// why there is none.
        result: Result<Committed<O>, ProposeError>,
    },
    /// The read may now be served from the state machine
    /// ([`ReplicationCore::state_machine`]): linearizable.
    ReadReady {
        /// The read.
        id: ReadId,
    },
    /// The read cannot be served here.
    ReadFailed {
        /// The read.
        id: ReadId,
        /// Why.
        error: ProposeError,
    },
    /// Tell the other components the log's progress (a
    /// [`RaftEvent::Progress`]: one of the two frequent events, so it has a
    /// variant of its own and is not boxed).
    Progress(LogProgress),
    /// Tell the other components the leader of `term` was heard from (a
    /// [`RaftEvent::HeardFromLeader`], once per AppendEntries at a
    /// follower: a variant of its own, not boxed).
    HeardFromLeader {
        /// The leader's term.
        term: Term,
        /// The leader.
        leader: NodeId,
    },
    /// Tell the other components any other event. Boxed: the events that
    /// carry configurations are large and rare, and every effect is moved
    /// by value (twice per step), so the effect's size is the largest
    /// variant's. Build it with [`Effect::event`].
    Event(Box<RaftEvent>),
    /// Entries just committed, in index order (only when
    /// [`ReplicationCore::set_observe_commits`] is on: for the SafetyVerifier).
    Committed(Vec<EntryRef<C>>),
}

impl<C, O> Effect<C, O> {
    /// The effect that tells the other components `event`
    /// ([`Effect::Progress`], [`Effect::HeardFromLeader`] or
    /// [`Effect::Event`]).
    pub fn event(event: RaftEvent) -> Self {
        match event {
            RaftEvent::Progress(p) => Effect::Progress(p),
            RaftEvent::HeardFromLeader { term, leader } => Effect::HeardFromLeader { term, leader },
            other => Effect::Event(Box::new(other)),
        }
    }

    /// The event this effect tells the other components, if it is one.
    pub fn as_event(&self) -> Option<RaftEvent> {
        match self {
            Effect::Progress(p) => Some(RaftEvent::Progress(*p)),
            Effect::HeardFromLeader { term, leader } => Some(RaftEvent::HeardFromLeader {
                term: *term,
                leader: *leader,
            }),
            Effect::Event(e) => Some(RaftEvent::clone(&**e)),
            _ => None,
        }
    }
}

/// The leader's view of one follower or learner (Figure 2 "volatile state on
/// leaders", plus pipelining).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Progress {
    /// Index of highest log entry known to be replicated on the server.
    match_index: LogIndex,
    /// Index of the next log entry to send to that server.
    next_index: LogIndex,
    /// Last index of every AppendEntries with entries still unanswered, and
    /// the leader tick at which it was sent.
    inflight: VecDeque<(LogIndex, u64)>,
    /// After a rejection: one request at a time until one succeeds.
    probing: bool,
    /// The follower is getting a snapshot from the compactor.
    snapshotting: bool,
    /// Highest confirmation round the follower answered.
    acked_round: u64,
    /// PeerActive was reported since the last tick.
    reported_active: bool,
}

impl Progress {
    fn new(last_index: LogIndex) -> Self {
        Self {
            match_index: LogIndex::ZERO,
            next_index: last_index.next(),
            inflight: VecDeque::new(),
            probing: true,
            snapshotting: false,
            acked_round: 0,
            reported_active: false,
        }
    }

    /// Whether the send loop of `maybe_send_append` would send entries to
    /// this follower now (or fall back to the snapshot): its next entries
    /// are purged, or some remain up to `last` and its window has room
    /// (a partial request waits while another is unanswered, Nagle-style,
    /// with `coalesce`).
    fn wants_append(&self, last: LogIndex, purged: LogIndex, limits: &AppendLimits) -> bool {
        if self.next_index <= purged {
            return true;
        }
        let window_full = self.inflight.len() >= limits.max_inflight
            || (self.probing && !self.inflight.is_empty());
        if window_full || self.next_index > last {
            return false;
        }
        let available = last.get() - self.next_index.get() + 1;
        !(limits.coalesce && !self.inflight.is_empty() && available < limits.max_entries as u64)
    }
}

/// The configured bounds on AppendEntries traffic to one follower.
struct AppendLimits {
    max_entries: usize,
    max_inflight: usize,
    coalesce: bool,
}

#[derive(Clone, Debug)]
struct PendingRead {
    id: ReadId,
    index: LogIndex,
    round: u64,
}

#[derive(Clone, Debug)]
struct LeaderState {
    progress: BTreeMap<NodeId, Progress>,
    /// Current confirmation round (ReadIndex).
    round: u64,
    /// Reads waiting for confirmation and apply, in arrival order.
    reads: VecDeque<PendingRead>,
    /// Index of the leader's first entry (its no-op).
    first_index: LogIndex,
    /// Leadership is being handed to this node.
    transfer: Option<NodeId>,
    /// Heartbeat ticks since the election (ages of requests in flight).
    ticks: u64,
}

#[derive(Clone, Copy, Debug)]
struct PendingProposal {
    index: LogIndex,
    term: Term,
    id: ProposalId,
}

/// The LogReplicator core. See the [module documentation](self).
pub struct ReplicationCore<SM: StateMachine> {
    id: NodeId,
    cfg: RaftConfig,
    term: Term,
    voted_for: Option<NodeId>,
    role: NodeState,
    leader: Option<NodeId>,
    log: RaftLog<SM::Command>,
    snapshot: Option<Arc<Snapshot>>,
    /// `configs[0]` is the base (initial or from a snapshot); the rest are the
    /// configuration entries of the log, in index order.
    configs: Vec<(LogId, Membership)>,
    commit_index: LogIndex,
    last_applied: LogIndex,
    sm: SM,
    last_leader_contact_us: Option<u64>,
    leader_state: Option<LeaderState>,
    pending: VecDeque<PendingProposal>,
    observe_commits: bool,
    hard_state_dirty: bool,
    reported_role: (Term, NodeState, Option<NodeId>),
    reported_progress: LogProgress,
    reported_membership: (LogId, LogId),
    out: Vec<Effect<SM::Command, SM::Output>>,
    /// Scratch buffers of [`broadcast_append`](Self::broadcast_append) and
    /// [`maybe_send_append`](Self::maybe_send_append), empty between calls
    /// (kept to reuse their allocations).
    scratch_peers: Vec<NodeId>,
    scratch_appends: Vec<AppendEntries<SM::Command>>,
}

/// The effect type of a core replicating `SM`.
pub type EffectOf<SM> = Effect<<SM as StateMachine>::Command, <SM as StateMachine>::Output>;

/// One input of the [`ReplicationCore`], given to
/// [`step`](ReplicationCore::step). Times are not part of an input: `step`
/// takes the current time.
#[derive(Debug)]
pub enum Input<'a, C> {
    /// The heartbeat timer (a leader sends heartbeats and retries).
    Tick,
    /// A RequestVote (or pre-vote) from `from` (Figure 2, thesis §9.6).
    RequestVote {
        /// The candidate.
        from: NodeId,
        /// The request.
        msg: RequestVote,
    },
    /// An AppendEntries from `from` (Figure 2).
    AppendEntries {
        /// The leader.
        from: NodeId,
        /// The request.
        msg: AppendEntries<C>,
    },
    /// A follower's answer to an AppendEntries.
    AppendEntriesResponse {
        /// The follower.
        from: NodeId,
        /// The answer.
        msg: AppendEntriesResponse,
    },
    /// Client proposals, taken out of the caller's buffer (left empty, its
    /// allocation kept).
    Propose(&'a mut Vec<Proposal<C>>),
    /// Linearizable reads (ReadIndex, thesis §6.4).
    ReadIndex(Vec<ReadId>),
    /// LeaderElection: start a campaign based on `expected_term`.
    BeginElection {
        /// The term the decision was based on.
        expected_term: Term,
        /// A pre-vote campaign.
        pre_vote: bool,
        /// Started by TimeoutNow.
        transfer: bool,
    },
    /// LeaderElection: a quorum voted for this node in `term`.
    BecomeLeader {
        /// The campaign's term.
        term: Term,
    },
    /// LeaderElection or MembershipManager: step down from leading `term`.
    StepDown {
        /// The leader's term.
        term: Term,
    },
    /// A higher term was seen by another component.
    ObserveTerm {
        /// The term.
        term: Term,
    },
    /// SnapshotCompactor: a snapshot chunk came from `leader` of `term`.
    ObserveLeader {
        /// The leader's term.
        term: Term,
        /// The leader.
        leader: NodeId,
    },
    /// LeaderElection: hand leadership of `term` to `target` (thesis §3.10).
    TransferLeadership {
        /// The leader's term.
        term: Term,
        /// The node to take over.
        target: NodeId,
    },
    /// LeaderElection: the transfer of `term` timed out.
    AbortTransfer {
        /// The leader's term.
        term: Term,
    },
    /// MembershipManager: append `membership` as leader of `term`.
    ProposeMembership {
        /// The leader's term.
        term: Term,
        /// The configuration.
        membership: Membership,
    },
    /// SnapshotCompactor: snapshot the state machine, keep `keep_entries`
    /// entries below the snapshot.
    Compact {
        /// Entries to keep below the snapshot.
        keep_entries: u64,
    },
    /// SnapshotCompactor: install the snapshot assembled from `leader`'s
    /// chunks (§7).
    InstallSnapshot {
        /// The leader's term.
        term: Term,
        /// The leader.
        leader: NodeId,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// SnapshotCompactor: `peer` installed the snapshot covering
    /// `last_included`.
    SnapshotSent {
        /// The leader's term.
        term: Term,
        /// The follower.
        peer: NodeId,
        /// What it now holds.
        last_included: LogId,
    },
}

/// What [`ReplicationCore::step`] answers when the input was accepted
/// (beside the effects it leaves in the output buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Done; nothing to tell.
    Done,
    /// The configuration entry of [`Input::ProposeMembership`] was
    /// appended here.
    ConfigAppended(LogId),
    /// The snapshot of [`Input::Compact`] was taken.
    Compacted(SnapshotMeta),
}

impl<SM: StateMachine> ReplicationCore<SM>
where
    SM::Command: Sync,
{
    /// Rebuilds the owner from what storage holds: the state machine from
    /// the snapshot, the log from the entries after it. The node starts as a
    /// follower; committed entries after the snapshot are applied again once
    /// a leader tells the commit index.
    pub fn new(
        id: NodeId,
        cfg: RaftConfig,
        recovered: Recovered<SM::Command>,
        mut sm: SM,
    ) -> Result<Self, RecoveryError> {
        let Recovered {
            hard_state,
            snapshot,
            entries,
            initial_membership,
        } = recovered;
        let (base_id, base_membership, snapshot) = match snapshot {
            Some(s) => {
                sm.restore(&s.data)
                    .map_err(|e| RecoveryError::BadSnapshot(e.0))?;
                (
                    s.meta.last_included,
                    s.meta.membership.clone(),
                    Some(Arc::new(s)),
                )
            }
            None => (LogId::default(), initial_membership, None),
        };
        let mut log = RaftLog::restore(base_id, std::iter::empty());
        let mut configs = vec![(base_id, base_membership)];
        for e in entries {
            if e.index <= base_id.index {
                continue;
            }
            if e.index != log.last_index().next() {
                return Err(RecoveryError::Gap {
                    expected: log.last_index().next(),
                    found: e.index,
                });
            }
            if let RaftCommand::ConfigChange(m) = &e.command {
                configs.push((e.log_id(), m.clone()));
            }
            log.append(e);
        }
        if hard_state.term < log.last_log_id().term {
            return Err(RecoveryError::TermBehindLog {
                term: hard_state.term,
                last_log_term: log.last_log_id().term,
            });
        }
        let mut core = Self {
            id,
            cfg,
            term: hard_state.term,
            voted_for: hard_state.voted_for,
            role: NodeState::Follower,
            leader: None,
            log,
            snapshot,
            configs,
            commit_index: base_id.index,
            last_applied: base_id.index,
            sm,
            last_leader_contact_us: None,
            leader_state: None,
            pending: VecDeque::new(),
            observe_commits: false,
            hard_state_dirty: false,
            reported_role: (hard_state.term, NodeState::Follower, None),
            reported_progress: LogProgress::default(),
            reported_membership: (LogId::default(), LogId::default()),
            out: Vec::new(),
            scratch_peers: Vec::new(),
            scratch_appends: Vec::new(),
        };
        core.reported_progress = core.log_progress();
        core.reported_membership = core.membership_ids();
        core.check_invariants();
        Ok(core)
    }

    /// Turns on [`Effect::Committed`] (for the SafetyVerifier).
    pub fn set_observe_commits(&mut self, on: bool) {
        self.observe_commits = on;
    }

    /// Takes the effects produced so far, in the order they must be carried
    /// out.
    pub fn take_effects(&mut self) -> Vec<EffectOf<SM>> {
        self.flush_hard_state();
        std::mem::take(&mut self.out)
    }

    /// Like [`take_effects`](Self::take_effects), handing the core `spare`
    /// (an empty buffer) to collect the next step's effects: an actor that
    /// gives back the buffer it drained reuses two allocations forever
    /// instead of growing a new vector on every step.
    pub fn swap_effects(&mut self, spare: Vec<EffectOf<SM>>) -> Vec<EffectOf<SM>> {
        debug_assert!(spare.is_empty(), "the spare buffer must be drained");
        self.flush_hard_state();
        std::mem::replace(&mut self.out, spare)
    }

    /// Pushes an effect, after the hard state if it changed: term and vote
    /// are durable before anything that follows them (a reply, an entry of
    /// the new term, an event).
    ///
    /// (Inlined: ~9 effects per client operation, each built in place in
    /// the buffer instead of copied into a call and again into the buffer.)
    #[inline]
    fn emit(&mut self, effect: EffectOf<SM>) {
        self.flush_hard_state();
        self.out.push(effect);
    }

    #[inline]
    fn flush_hard_state(&mut self) {
        if self.hard_state_dirty {
            self.push_hard_state();
        }
    }

    #[cold]
    fn push_hard_state(&mut self) {
        self.hard_state_dirty = false;
        self.out.push(Effect::SaveHardState(self.hard_state()));
    }

    /// Events that describe the current state from scratch (for a component
    /// that just (re)started).
    pub fn snapshot_events(&self) -> Vec<RaftEvent> {
        let (effective_id, effective) = self.configs.last().cloned().unwrap_or_default();
        let (committed_id, committed) = self.committed_config();
        vec![
            RaftEvent::RoleChanged {
                term: self.term,
                role: self.role,
                leader: self.leader,
            },
            RaftEvent::MembershipChanged {
                term: self.term,
                effective_id,
                effective,
                committed_id,
                committed: committed.clone(),
            },
            RaftEvent::Progress(self.log_progress()),
        ]
    }

    // ----- the step ------------------------------------------------------

    /// Handles one input at `now_us`: its effects go to the output buffer
    /// ([`take_effects`](Self::take_effects)), in the order they must be
    /// carried out. Every step ends alike, whatever the input and whether
    /// it was refused: the hard state is flushed, role, configuration and
    /// progress changes become events, and (debug builds) the invariants are
    /// checked ([`check_invariants`](Self::check_invariants)).
    ///
    /// Peer messages, proposals, reads, the timer and
    /// [`Input::ObserveTerm`] are always [`Accepted::Done`] (a refusal
    /// reaches a client or a peer as an effect); a component's request is
    /// refused when the state it was based on no longer holds.
    pub fn step(
        &mut self,
        now_us: u64,
        input: Input<'_, SM::Command>,
    ) -> Result<Accepted, Refusal> {
        let done = |r: Result<(), Refusal>| r.map(|()| Accepted::Done);
        let answer = match input {
            Input::Tick => {
                self.on_tick(now_us);
                Ok(Accepted::Done)
            }
            Input::RequestVote { from, msg } => {
                self.on_request_vote(now_us, from, msg);
                Ok(Accepted::Done)
            }
            Input::AppendEntries { from, msg } => {
                self.on_append_entries(now_us, from, msg);
                Ok(Accepted::Done)
            }
            Input::AppendEntriesResponse { from, msg } => {
                self.on_append_entries_response(now_us, from, msg);
                Ok(Accepted::Done)
            }
            Input::Propose(batch) => {
                self.on_propose(now_us, batch.drain(..));
                Ok(Accepted::Done)
            }
            Input::ReadIndex(ids) => {
                self.on_read_index(ids);
                Ok(Accepted::Done)
            }
            Input::BeginElection {
                expected_term,
                pre_vote,
                transfer,
            } => done(self.on_begin_election(expected_term, pre_vote, transfer)),
            Input::BecomeLeader { term } => done(self.on_become_leader(now_us, term)),
            Input::StepDown { term } => done(self.on_step_down(term)),
            Input::ObserveTerm { term } => {
                self.on_observe_term(term);
                Ok(Accepted::Done)
            }
            Input::ObserveLeader { term, leader } => {
                done(self.on_observe_leader(now_us, term, leader))
            }
            Input::TransferLeadership { term, target } => {
                done(self.on_transfer_leadership(term, target))
            }
            Input::AbortTransfer { term } => done(self.on_abort_transfer(term)),
            Input::ProposeMembership { term, membership } => self
                .on_propose_membership(now_us, term, membership)
                .map(Accepted::ConfigAppended),
            Input::Compact { keep_entries } => {
                self.on_compact(keep_entries).map(Accepted::Compacted)
            }
            Input::InstallSnapshot {
                term,
                leader,
                snapshot,
            } => done(self.on_install_snapshot(now_us, term, leader, snapshot)),
            Input::SnapshotSent {
                term,
                peer,
                last_included,
            } => done(self.on_snapshot_sent(term, peer, last_included)),
        };
        self.finish_step();
        answer
    }

    // ----- read-only accessors -------------------------------------------

    /// This node.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// `currentTerm`.
    pub fn term(&self) -> Term {
        self.term
    }
    /// `votedFor`.
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    /// The current role.
    pub fn role(&self) -> NodeState {
        self.role
    }
    /// The leader known for the current term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    /// `commitIndex`.
    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }
    /// `lastApplied`.
    pub fn last_applied(&self) -> LogIndex {
        self.last_applied
    }
    /// The log.
    pub fn log(&self) -> &RaftLog<SM::Command> {
        &self.log
    }
    /// The latest snapshot.
    pub fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.snapshot.as_ref()
    }
    /// The state machine (reads are linearizable only after
    /// [`Effect::ReadReady`]).
    pub fn state_machine(&self) -> &SM {
        &self.sm
    }
    /// The configuration in effect (the latest in the log).
    pub fn membership(&self) -> &Membership {
        &self.configs[self.configs.len() - 1].1
    }
    /// The latest committed configuration and where it was appended.
    pub fn committed_config(&self) -> (LogId, &Membership) {
        let (id, m) = self
            .configs
            .iter()
            .rev()
            .find(|(id, _)| id.index <= self.commit_index)
            .unwrap_or(&self.configs[0]);
        (*id, m)
    }
    /// The hard state as it must be persisted.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
        }
    }
    /// As leader, a follower's match index.
    pub fn match_index_of(&self, peer: NodeId) -> Option<LogIndex> {
        self.leader_state
            .as_ref()
            .and_then(|l| l.progress.get(&peer))
            .map(|p| p.match_index)
    }
    /// As leader, a follower's next index.
    pub fn next_index_of(&self, peer: NodeId) -> Option<LogIndex> {
        self.leader_state
            .as_ref()
            .and_then(|l| l.progress.get(&peer))
            .map(|p| p.next_index)
    }
    /// Number of proposals waiting for their results.
    pub fn pending_proposals(&self) -> usize {
        self.pending.len()
    }

    fn log_progress(&self) -> LogProgress {
        LogProgress {
            term: self.term,
            commit_index: self.commit_index,
            last_applied: self.last_applied,
            last_log_index: self.log.last_index(),
            snapshot_index: self
                .snapshot
                .as_ref()
                .map(|s| s.meta.last_included.index)
                .unwrap_or(LogIndex::ZERO),
        }
    }

    fn membership_ids(&self) -> (LogId, LogId) {
        (
            self.configs[self.configs.len() - 1].0,
            self.committed_config().0,
        )
    }

    // ----- invariants ------------------------------------------------------

    /// Checks the invariants of the owner's state (openraft's `Validate`,
    /// TigerBeetle's assertions): `purged <= snapshot <= applied <= commit <=
    /// last log index`, `last log term <= current term`, a leader voted for
    /// itself, configurations sorted by index.
    ///
    /// # Panics
    /// When an invariant does not hold: the state is corrupt and the
    /// component must restart from storage.
    pub fn check_invariants(&self) {
        let snapshot_index = self.log_progress().snapshot_index;
        assert!(
            self.log.snapshot_last().index <= snapshot_index
                || (self.snapshot.is_none() && self.log.snapshot_last().index == LogIndex::ZERO),
            "purged beyond the snapshot"
        );
        assert!(
            snapshot_index <= self.last_applied,
            "snapshot beyond applied"
        );
        assert!(
            self.last_applied <= self.commit_index,
            "applied beyond commit"
        );
        assert!(
            self.commit_index <= self.log.last_index(),
            "commit index {} beyond last log index {}",
            self.commit_index,
            self.log.last_index()
        );
        assert!(
            self.log.last_log_id().term <= self.term,
            "log holds a term above the current term"
        );
        assert!(
            self.configs.windows(2).all(|w| w[0].0.index < w[1].0.index),
            "configurations out of order"
        );
        match self.role {
            NodeState::Leader => {
                assert_eq!(self.leader, Some(self.id));
                assert_eq!(self.voted_for, Some(self.id), "a leader voted for itself");
                assert!(self.leader_state.is_some());
            }
            NodeState::Candidate => {
                assert_eq!(
                    self.voted_for,
                    Some(self.id),
                    "a candidate votes for itself"
                );
                assert!(self.leader_state.is_none());
            }
            NodeState::Follower => assert!(self.leader_state.is_none()),
        }
    }

    // ----- role changes ----------------------------------------------------

    fn set_term(&mut self, term: Term) {
        assert!(term >= self.term, "the term never decreases");
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.hard_state_dirty = true;
        }
    }

    fn report_role(&mut self) {
        let now = (self.term, self.role, self.leader);
        if now != self.reported_role {
            self.reported_role = now;
            self.emit(Effect::event(RaftEvent::RoleChanged {
                term: self.term,
                role: self.role,
                leader: self.leader,
            }));
        }
    }

    /// Figure 2, all servers: "If RPC request or response contains term T >
    /// currentTerm: set currentTerm = T, convert to follower". Also used when
    /// a candidate learns of the leader of its term.
    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.set_term(term);
        if self.role == NodeState::Leader {
            self.stop_leading();
        }
        self.role = NodeState::Follower;
        self.leader = leader;
    }

    fn stop_leading(&mut self) {
        if let Some(ls) = self.leader_state.take() {
            let leader = self.leader.filter(|&l| l != self.id);
            for r in ls.reads {
                self.emit(Effect::ReadFailed {
                    id: r.id,
                    error: ProposeError::NotLeader { leader },
                });
            }
        }
    }

    fn leader_lease_active(&self, now_us: u64) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        if self.role == NodeState::Leader {
            return true;
        }
        self.leader.is_some()
            && self
                .last_leader_contact_us
                .is_some_and(|t| now_us.saturating_sub(t) < self.cfg.election_timeout_min_us())
    }

    fn candidate_log_is_up_to_date(&self, rv: &RequestVote) -> bool {
        // §5.4.1: "If the logs have last entries with different terms, then
        // the log with the later term is more up-to-date. If the logs end
        // with the same term, then whichever log is longer is more
        // up-to-date."
        rv.last_log_id() >= self.log.last_log_id()
    }

    // ----- end of step ------------------------------------------------------

    fn finish_step(&mut self) {
        self.flush_hard_state();
        self.report_role();
        let ids = self.membership_ids();
        if ids != self.reported_membership {
            self.reported_membership = ids;
            let (effective_id, effective) = self.configs[self.configs.len() - 1].clone();
            let (committed_id, committed) = self.committed_config();
            let committed = committed.clone();
            self.emit(Effect::event(RaftEvent::MembershipChanged {
                term: self.term,
                effective_id,
                effective,
                committed_id,
                committed,
            }));
            if self.role == NodeState::Leader {
                self.sync_progress();
            } else if !self.membership().contains(self.id) {
                // Removed from the cluster: this node will not learn the
                // fate of the proposals it accepted as leader.
                while let Some(p) = self.pending.pop_front() {
                    self.emit(Effect::ProposalResult {
                        id: p.id,
                        result: Err(ProposeError::Unknown),
                    });
                }
            }
        }
        let progress = self.log_progress();
        if progress != self.reported_progress {
            self.reported_progress = progress;
            self.emit(Effect::Progress(progress));
        }
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }
}

mod append;
mod commit;
mod read;
mod snapshot;
mod transfer;
mod vote;

#[cfg(test)]
mod tests;
