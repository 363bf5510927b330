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
use crate::error::{ProposeError, RecoveryError, Refusal};
use crate::events::{HardState, LogProgress, RaftEvent, Snapshot, SnapshotMeta};
use crate::log::RaftLog;
use crate::membership::Membership;
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

    // ----- RequestVote -----------------------------------------------------

    /// RequestVote RPC, receiver implementation (Figure 2), with pre-vote
    /// (thesis §9.6) and the leader-lease rule (thesis §4.2.3).
    fn on_request_vote(&mut self, now_us: u64, from: NodeId, rv: RequestVote) {
        if rv.pre_vote {
            // A pre-vote changes no state: would we vote in term rv.term?
            let grant = rv.term > self.term
                && (rv.leadership_transfer || !self.leader_lease_active(now_us))
                && self.candidate_log_is_up_to_date(&rv);
            let term = if grant { rv.term } else { self.term };
            self.send(
                from,
                RaftMessage::RequestVoteResponse(RequestVoteResponse {
                    term,
                    vote_granted: grant,
                    pre_vote: true,
                }),
            );
            return;
        }
        if rv.term > self.term {
            if !rv.leadership_transfer && self.leader_lease_active(now_us) {
                // Thesis §4.2.3: "if a server receives a RequestVote request
                // within the minimum election timeout of hearing from a
                // current leader, it does not update its term or grant its
                // vote."
                self.send(from, Self::vote_reply(self.term, false));
                return;
            }
            self.become_follower(rv.term, None);
        }
        // 1. "Reply false if term < currentTerm."
        // 2. "If votedFor is null or candidateId, and candidate's log is at
        //    least as up-to-date as receiver's log, grant vote."
        let grant = rv.term == self.term
            && self.voted_for.is_none_or(|v| v == rv.candidate_id)
            && self.candidate_log_is_up_to_date(&rv);
        if grant && self.voted_for.is_none() {
            self.voted_for = Some(rv.candidate_id);
            // The vote is persisted before the reply that depends on it.
            self.hard_state_dirty = true;
        }
        if grant {
            self.emit(Effect::event(RaftEvent::VoteGranted {
                term: self.term,
                candidate: rv.candidate_id,
            }));
        }
        self.send(from, Self::vote_reply(self.term, grant));
    }

    fn vote_reply(term: Term, granted: bool) -> RaftMessage<SM::Command> {
        RaftMessage::RequestVoteResponse(RequestVoteResponse {
            term,
            vote_granted: granted,
            pre_vote: false,
        })
    }

    // ----- elections (asked by LeaderElection) -----------------------------

    /// Starts a campaign decided by LeaderElection, if `expected_term` is
    /// still current. A pre-vote sends RequestVote for `term + 1` and changes
    /// nothing; a real campaign follows Figure 2, candidates: "increment
    /// currentTerm, vote for self, reset election timer, send RequestVote
    /// RPCs to all other servers" (the vote persisted before the requests).
    fn on_begin_election(
        &mut self,
        expected_term: Term,
        pre_vote: bool,
        transfer: bool,
    ) -> Result<(), Refusal> {
        self.check_term(expected_term)?;
        if self.role == NodeState::Leader {
            return Err(Refusal::AlreadyLeader);
        }
        if !self.membership().is_voter(self.id) {
            return Err(Refusal::NotVoter);
        }
        let last = self.log.last_log_id();
        let term = if pre_vote {
            self.term.next()
        } else {
            self.set_term(self.term.next());
            self.voted_for = Some(self.id);
            self.hard_state_dirty = true;
            self.role = NodeState::Candidate;
            self.leader = None;
            self.report_role();
            self.term
        };
        self.emit(Effect::event(RaftEvent::ElectionStarted {
            term,
            pre_vote,
            transfer,
        }));
        let rv = RequestVote {
            term,
            candidate_id: self.id,
            last_log_index: last.index,
            last_log_term: last.term,
            pre_vote,
            leadership_transfer: transfer,
        };
        for peer in self.membership().all_voters() {
            if peer != self.id {
                self.send(peer, RaftMessage::RequestVote(rv));
            }
        }
        Ok(())
    }

    /// Becomes leader of `term` after LeaderElection counted a quorum of
    /// votes. Figure 2, leaders: "Upon election: send initial empty
    /// AppendEntries RPCs (heartbeat) to each server"; the first entry is a
    /// no-op of the new term (§8), which commits the earlier terms' entries.
    fn on_become_leader(&mut self, now_us: u64, term: Term) -> Result<(), Refusal> {
        self.check_term(term)?;
        if self.role != NodeState::Candidate {
            return Err(Refusal::NotCandidate);
        }
        self.role = NodeState::Leader;
        self.leader = Some(self.id);
        let first_index = self.log.last_index().next();
        self.leader_state = Some(LeaderState {
            progress: BTreeMap::new(),
            round: 0,
            reads: VecDeque::new(),
            first_index,
            transfer: None,
            ticks: 0,
        });
        self.sync_progress();
        self.report_role();
        let noop = Arc::new(LogEntry::new(
            self.term,
            first_index,
            RaftCommand::Noop,
            now_us,
            ClientId::default(),
        ));
        self.append_as_leader(vec![noop]);
        self.advance_commit_as_leader();
        self.broadcast_append(true);
        Ok(())
    }

    /// Steps down from leadership of `term` (check-quorum failed, or this
    /// leader was removed from the configuration).
    fn on_step_down(&mut self, term: Term) -> Result<(), Refusal> {
        self.check_term(term)?;
        if self.role != NodeState::Leader {
            return Err(Refusal::NotLeader);
        }
        self.become_follower(term, None);
        Ok(())
    }

    /// A higher term was seen by another component (in a vote response, a
    /// snapshot response): "convert to follower".
    fn on_observe_term(&mut self, term: Term) {
        if term > self.term {
            self.become_follower(term, None);
        }
    }

    /// A chunk of a snapshot came from `leader` of `term` (the compactor
    /// assembles it): same term rules as AppendEntries. Refused when `term`
    /// is stale.
    fn on_observe_leader(
        &mut self,
        now_us: u64,
        term: Term,
        leader: NodeId,
    ) -> Result<(), Refusal> {
        if term < self.term {
            return Err(Refusal::StaleTerm {
                expected: term,
                current: self.term,
            });
        }
        self.accept_leader(now_us, term, leader);
        Ok(())
    }

    fn accept_leader(&mut self, now_us: u64, term: Term, leader: NodeId) {
        debug_assert!(term >= self.term);
        if term == self.term && self.role == NodeState::Leader {
            // Election Safety (§5.2): at most one leader per term.
            assert_eq!(
                leader, self.id,
                "two leaders in {term}: {} and {leader}",
                self.id
            );
            return;
        }
        if term > self.term || self.role != NodeState::Follower || self.leader != Some(leader) {
            self.become_follower(term, Some(leader));
            // Reported before any log change that follows: a former leader
            // has stepped down before it truncates anything.
            self.report_role();
        }
        self.last_leader_contact_us = Some(now_us);
        self.emit(Effect::HeardFromLeader { term, leader });
    }

    fn check_term(&self, expected: Term) -> Result<(), Refusal> {
        if expected != self.term {
            return Err(Refusal::StaleTerm {
                expected,
                current: self.term,
            });
        }
        Ok(())
    }

    // ----- AppendEntries, follower side -------------------------------------

    /// AppendEntries RPC, receiver implementation (Figure 2), with the
    /// conflict hint of §5.3 in the rejection.
    fn on_append_entries(&mut self, now_us: u64, from: NodeId, ae: AppendEntries<SM::Command>) {
        // 1. "Reply false if term < currentTerm."
        if ae.term < self.term {
            self.send(
                from,
                RaftMessage::AppendEntriesResponse(AppendEntriesResponse {
                    term: self.term,
                    success: false,
                    match_index: ae.prev_log_index,
                    conflict_term: None,
                    conflict_index: LogIndex::ZERO,
                    round: ae.round,
                }),
            );
            return;
        }
        self.accept_leader(now_us, ae.term, ae.leader_id);
        if self.role == NodeState::Leader {
            // Our own message echoed back (a misrouted duplicate): ignore.
            return;
        }
        let last_new = LogIndex(ae.prev_log_index.get() + ae.entries.len() as u64);
        let prev = ae.prev_log_id();
        let mut entries = ae.entries;
        let purged = self.log.snapshot_last();
        if prev.index < purged.index {
            // Entries up to the snapshot are committed and therefore match.
            let skip = (purged.index.get() - prev.index.get()) as usize;
            if skip >= entries.len() {
                entries.clear();
            } else {
                entries.drain(..skip);
            }
        } else if !self.log.matches(prev) {
            // 2. "Reply false if log doesn't contain an entry at prevLogIndex
            //    whose term matches prevLogTerm."
            let (conflict_term, conflict_index) = match self.log.term_at(prev.index) {
                None => (None, self.log.last_index().next()),
                Some(t) => (Some(t), self.log.first_index_of_term_at(prev.index)),
            };
            self.send(
                from,
                RaftMessage::AppendEntriesResponse(AppendEntriesResponse {
                    term: self.term,
                    success: false,
                    match_index: ae.prev_log_index,
                    conflict_term,
                    conflict_index,
                    round: ae.round,
                }),
            );
            return;
        }
        // 3. "If an existing entry conflicts with a new one (same index but
        //    different terms), delete the existing entry and all that follow
        //    it." 4. "Append any new entries not already in the log."
        let mut first_new = entries.len();
        for (k, e) in entries.iter().enumerate() {
            match self.log.term_at(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(
                        e.index > self.commit_index,
                        "a committed entry ({}) would be truncated",
                        e.index
                    );
                    self.truncate_from(e.index);
                    first_new = k;
                    break;
                }
                None => {
                    first_new = k;
                    break;
                }
            }
        }
        if first_new < entries.len() {
            // Usually every entry is new: the request's vector is reused.
            let new: Vec<_> = if first_new == 0 {
                entries
            } else {
                entries.drain(first_new..).collect()
            };
            self.append_entries_to_log(&new);
            self.emit(Effect::AppendLog(new));
        }
        // 5. "If leaderCommit > commitIndex, set commitIndex =
        //    min(leaderCommit, index of last new entry)."
        if ae.leader_commit > self.commit_index {
            let new_commit = ae.leader_commit.min(last_new).min(self.log.last_index());
            if new_commit > self.commit_index {
                self.commit_to(new_commit);
            }
        }
        self.send(
            from,
            RaftMessage::AppendEntriesResponse(AppendEntriesResponse {
                term: self.term,
                success: true,
                match_index: last_new,
                conflict_term: None,
                conflict_index: LogIndex::ZERO,
                round: ae.round,
            }),
        );
    }

    fn truncate_from(&mut self, from: LogIndex) {
        self.log.truncate_from(from);
        self.emit(Effect::TruncateLog(from));
        // A configuration takes effect when appended, so removing it reverts
        // to the previous one (§6).
        while self.configs.len() > 1 && self.configs[self.configs.len() - 1].0.index >= from {
            self.configs.pop();
        }
    }

    fn append_entries_to_log(&mut self, entries: &[EntryRef<SM::Command>]) {
        for e in entries {
            if let RaftCommand::ConfigChange(m) = &e.command {
                self.configs.push((e.log_id(), m.clone()));
            }
            self.log.append(Arc::clone(e));
        }
    }

    // ----- commit and apply -----------------------------------------------

    fn commit_to(&mut self, index: LogIndex) {
        assert!(index > self.commit_index, "the commit index only grows");
        assert!(index <= self.log.last_index());
        let from = self.commit_index.next();
        self.commit_index = index;
        if self.observe_commits {
            let n = (index.get() - from.get() + 1) as usize;
            self.emit(Effect::Committed(self.log.slice(from, n)));
        }
        self.apply_committed();
    }

    /// Figure 2, all servers: "If commitIndex > lastApplied: increment
    /// lastApplied, apply log[lastApplied] to state machine", and return the
    /// output to the proposer.
    fn apply_committed(&mut self) {
        while self.last_applied < self.commit_index {
            let index = self.last_applied.next();
            let entry = match self.log.get(index) {
                Some(e) => Arc::clone(e),
                None => panic!("committed entry {index} missing from the log"),
            };
            // Only a proposal waiting at this index (of this entry's term)
            // gets the output; other replicas skip building it.
            let observed = self
                .pending
                .iter()
                .take_while(|p| p.index <= index)
                .any(|p| p.index == index && p.term == entry.term);
            let mut output = match &entry.command {
                RaftCommand::Normal(c) if observed => Some(self.sm.apply(c)),
                RaftCommand::Normal(c) => {
                    self.sm.apply_unobserved(c);
                    None
                }
                RaftCommand::Noop | RaftCommand::ConfigChange(_) => None,
            };
            self.last_applied = index;
            while let Some(p) = self.pending.front().copied() {
                if p.index > index {
                    break;
                }
                self.pending.pop_front();
                let result = if p.index < index {
                    // Replaced by a snapshot we did not write.
                    Err(ProposeError::Unknown)
                } else if p.term == entry.term {
                    output
                        .take()
                        .map(|output| Committed {
                            log_id: LogId::new(entry.term, index),
                            output,
                        })
                        .ok_or(ProposeError::Unknown)
                } else {
                    Err(ProposeError::Dropped)
                };
                self.emit(Effect::ProposalResult { id: p.id, result });
            }
        }
        self.maybe_serve_reads();
    }

    // ----- leader side ------------------------------------------------------

    /// Client proposals ([`Input::Propose`]): appended and replicated as
    /// one batch by a leader, refused otherwise.
    fn on_propose(&mut self, now_us: u64, batch: impl IntoIterator<Item = Proposal<SM::Command>>) {
        let batch = batch.into_iter();
        let refuse = match &self.leader_state {
            None => Some(ProposeError::NotLeader {
                leader: self.leader.filter(|&l| l != self.id),
            }),
            Some(ls) if ls.transfer.is_some() => Some(ProposeError::TransferInProgress),
            Some(_) => None,
        };
        if let Some(err) = refuse {
            for p in batch {
                self.emit(Effect::ProposalResult {
                    id: p.id,
                    result: Err(err.clone()),
                });
            }
            return;
        }
        let room = self
            .cfg
            .max_pending_proposals
            .saturating_sub(self.pending.len());
        let mut entries = Vec::with_capacity(batch.size_hint().0.min(room));
        let mut index = self.log.last_index();
        for (k, p) in batch.into_iter().enumerate() {
            if k >= room {
                self.emit(Effect::ProposalResult {
                    id: p.id,
                    result: Err(ProposeError::Busy),
                });
                continue;
            }
            index = index.next();
            self.pending.push_back(PendingProposal {
                index,
                term: self.term,
                id: p.id,
            });
            entries.push(Arc::new(LogEntry::new(
                self.term,
                index,
                RaftCommand::Normal(p.command),
                now_us,
                p.client_id,
            )));
        }
        if entries.is_empty() {
            return;
        }
        self.append_as_leader(entries);
        // The leader's own append moves the commit index only where it is
        // a majority alone (see Membership::is_sole_voter); every other
        // change to the match indexes already ran the commit rule.
        if self.membership().is_sole_voter(self.id) {
            self.advance_commit_as_leader();
        }
        self.broadcast_append(false);
    }

    fn append_as_leader(&mut self, entries: Vec<EntryRef<SM::Command>>) {
        debug_assert_eq!(self.role, NodeState::Leader);
        let reconfigures = entries
            .iter()
            .any(|e| matches!(e.command, RaftCommand::ConfigChange(_)));
        self.append_entries_to_log(&entries);
        self.emit(Effect::AppendLog(entries));
        // The set of followers changes only with the configuration (a
        // configuration entry here, or a commit: see finish_step).
        if reconfigures {
            self.sync_progress();
        }
    }

    /// Proposes a configuration entry (MembershipManager). One change at a
    /// time: refused while a configuration entry is uncommitted, and before
    /// the leader committed an entry of its own term (thesis §4.1).
    fn on_propose_membership(
        &mut self,
        now_us: u64,
        term: Term,
        membership: Membership,
    ) -> Result<LogId, Refusal> {
        self.check_term(term)?;
        let Some(ls) = &self.leader_state else {
            return Err(Refusal::NotLeader);
        };
        if self.commit_index < ls.first_index {
            return Err(Refusal::LeaderNotReady);
        }
        if self.configs[self.configs.len() - 1].0.index > self.commit_index {
            return Err(Refusal::ConfigChangePending);
        }
        let index = self.log.last_index().next();
        let entry = Arc::new(LogEntry::new(
            self.term,
            index,
            RaftCommand::ConfigChange(membership),
            now_us,
            ClientId::default(),
        ));
        let id = entry.log_id();
        self.append_as_leader(vec![entry]);
        self.advance_commit_as_leader();
        self.broadcast_append(false);
        Ok(id)
    }

    /// Keeps one progress record per member of the effective and committed
    /// configurations (removed members keep receiving the log until the
    /// configuration without them is committed, so they learn of it).
    fn sync_progress(&mut self) {
        let Some(ls) = self.leader_state.as_mut() else {
            return;
        };
        let mut targets: BTreeSet<NodeId> = self.configs[self.configs.len() - 1].1.all_members();
        let committed = self
            .configs
            .iter()
            .rev()
            .find(|(id, _)| id.index <= self.commit_index)
            .unwrap_or(&self.configs[0]);
        targets.extend(committed.1.all_members());
        targets.remove(&self.id);
        ls.progress.retain(|id, _| targets.contains(id));
        let last = self.log.last_index();
        for t in targets {
            ls.progress.entry(t).or_insert_with(|| Progress::new(last));
        }
    }

    /// Figure 2, leaders: "If there exists an N such that N > commitIndex, a
    /// majority of matchIndex[i] >= N, and log[N].term == currentTerm: set
    /// commitIndex = N" (both majorities while joint, §6).
    fn advance_commit_as_leader(&mut self) {
        let Some(ls) = &self.leader_state else {
            return;
        };
        let own = self.log.last_index();
        let n = self.membership().committed_index(|id| {
            if id == self.id {
                own
            } else {
                ls.progress
                    .get(&id)
                    .map(|p| p.match_index)
                    .unwrap_or(LogIndex::ZERO)
            }
        });
        if n > self.commit_index && self.log.term_at(n) == Some(self.term) {
            self.commit_to(n);
        }
    }

    fn send(&mut self, to: NodeId, msg: RaftMessage<SM::Command>) {
        self.emit(Effect::Send { to, msg });
    }

    fn append_limits(&self) -> AppendLimits {
        AppendLimits {
            max_entries: self.cfg.max_log_entries_per_append,
            max_inflight: self.cfg.max_inflight_appends,
            coalesce: self.cfg.coalesce_appends,
        }
    }

    fn broadcast_append(&mut self, heartbeat: bool) {
        let mut peers = std::mem::take(&mut self.scratch_peers);
        let Some(ls) = &self.leader_state else {
            return;
        };
        if heartbeat {
            peers.extend(ls.progress.keys().copied());
        } else {
            // Without a heartbeat only followers that want entries get a
            // call (most proposals find every window busy: Nagle).
            let (last, purged) = (self.log.last_index(), self.log.snapshot_last().index);
            let limits = self.append_limits();
            peers.extend(
                ls.progress
                    .iter()
                    .filter(|(_, p)| !p.snapshotting && p.wants_append(last, purged, &limits))
                    .map(|(&id, _)| id),
            );
        }
        for &peer in &peers {
            self.maybe_send_append(peer, heartbeat);
        }
        peers.clear();
        self.scratch_peers = peers;
    }

    /// Sends AppendEntries to `peer` while its window has room and entries
    /// remain; with `heartbeat`, sends an empty one when nothing else left.
    /// Returns whether anything was sent.
    fn maybe_send_append(&mut self, peer: NodeId, heartbeat: bool) -> bool {
        let limits = self.append_limits();
        let max_entries = limits.max_entries;
        let term = self.term;
        let commit = self.commit_index;
        let last = self.log.last_index();
        let purged = self.log.snapshot_last();
        let Some(ls) = self.leader_state.as_mut() else {
            return false;
        };
        let round = ls.round;
        let tick = ls.ticks;
        let Some(p) = ls.progress.get_mut(&peer) else {
            return false;
        };
        if p.snapshotting {
            return false;
        }
        let mut sent = false;
        let mut msgs = std::mem::take(&mut self.scratch_appends);
        let mut snapshot_needed = None;
        loop {
            if !p.wants_append(last, purged.index, &limits) {
                // The window is full, nothing is left, or (Nagle) a
                // partial request waits while another is unanswered: the
                // answer sends everything accumulated meanwhile.
                break;
            }
            if p.next_index <= purged.index {
                // The entries it needs are purged: it gets the snapshot.
                p.snapshotting = true;
                p.inflight.clear();
                snapshot_needed = self.snapshot.clone();
                break;
            }
            let prev_index = p.next_index.prev();
            let Some(prev_term) = self.log.term_at(prev_index) else {
                break;
            };
            let entries = self.log.slice(p.next_index, max_entries);
            debug_assert!(!entries.is_empty());
            let last_sent = entries[entries.len() - 1].index;
            p.inflight.push_back((last_sent, tick));
            p.next_index = last_sent.next();
            msgs.push(AppendEntries {
                term,
                leader_id: self.id,
                prev_log_index: prev_index,
                prev_log_term: prev_term,
                entries,
                leader_commit: commit,
                round,
            });
            sent = true;
        }
        if !sent && heartbeat && !p.snapshotting {
            // An empty AppendEntries. While probing with nothing in flight
            // it is anchored at nextIndex - 1 and so probes the follower's
            // log (a rejection starts the back-off); otherwise at the last
            // index known to match, so it succeeds and carries the commit
            // index without disturbing the pipeline.
            let anchor = if p.probing && p.inflight.is_empty() {
                p.next_index.prev()
            } else {
                p.match_index
            }
            .max(purged.index);
            if let Some(prev_term) = self.log.term_at(anchor) {
                msgs.push(AppendEntries {
                    term,
                    leader_id: self.id,
                    prev_log_index: anchor,
                    prev_log_term: prev_term,
                    entries: Vec::new(),
                    leader_commit: commit,
                    round,
                });
                sent = true;
            }
        }
        if let Some(snapshot) = snapshot_needed {
            self.emit(Effect::event(RaftEvent::SnapshotNeeded {
                term,
                peer,
                snapshot,
            }));
        }
        for m in msgs.drain(..) {
            self.emit(Effect::Send {
                to: peer,
                msg: RaftMessage::AppendEntries(m),
            });
        }
        self.scratch_appends = msgs;
        sent
    }

    /// AppendEntries response at the leader: advance match/next, back off
    /// fast on a conflict, commit by majority, confirm reads, send more.
    fn on_append_entries_response(&mut self, _now_us: u64, from: NodeId, r: AppendEntriesResponse) {
        if r.term > self.term {
            self.become_follower(r.term, None);
            return;
        }
        if r.term < self.term || self.role != NodeState::Leader {
            return;
        }
        let term = self.term;
        let last = self.log.last_index();
        let Some(ls) = self.leader_state.as_mut() else {
            return;
        };
        let Some(p) = ls.progress.get_mut(&from) else {
            return;
        };
        p.acked_round = p.acked_round.max(r.round);
        let mut events = Vec::new();
        if !p.reported_active {
            p.reported_active = true;
            events.push(RaftEvent::PeerActive { term, peer: from });
        }
        let mut matched = false;
        if r.success {
            while p.inflight.front().is_some_and(|&(i, _)| i <= r.match_index) {
                p.inflight.pop_front();
            }
            if r.match_index > p.match_index {
                assert!(
                    r.match_index <= last,
                    "a follower matched beyond the leader's log"
                );
                p.match_index = r.match_index;
                matched = true;
            }
            if r.match_index.next() >= p.next_index {
                // Everything sent is acknowledged: the pipeline may open.
                p.probing = false;
            }
            if p.next_index <= p.match_index {
                p.next_index = p.match_index.next();
            }
        } else if r.match_index > p.match_index && r.match_index < p.next_index {
            // §5.3: "After a rejection, the leader decrements nextIndex and
            // retries", skipping a whole conflicting term at once.
            let hinted = match r.conflict_term {
                None => r.conflict_index,
                Some(t) => match self.log.last_index_of_term(t) {
                    Some(i) => i.next(),
                    None => r.conflict_index,
                },
            };
            p.next_index = hinted.min(r.match_index).max(p.match_index.next());
            p.inflight.clear();
            p.probing = true;
        }
        let learner_event = matched
            && self.configs[self.configs.len() - 1].1.is_learner(from)
            && self.leader_state.is_some();
        let match_index = self.match_index_of(from).unwrap_or_default();
        for e in events {
            self.emit(Effect::event(e));
        }
        if learner_event {
            self.emit(Effect::event(RaftEvent::LearnerProgress {
                term,
                peer: from,
                match_index,
                last_log_index: last,
            }));
        }
        if matched {
            // A match at or below the commit index cannot raise it: which
            // members hold each index above it is unchanged.
            if match_index > self.commit_index {
                self.advance_commit_as_leader();
            }
            self.maybe_send_timeout_now();
        }
        self.maybe_serve_reads();
        self.maybe_send_append(from, false);
    }

    /// The leader's heartbeat timer (every `heartbeat_interval_ms`): resend
    /// what looks lost, send a heartbeat to every follower, keep asking for
    /// the snapshots still being transferred.
    fn on_tick(&mut self, _now_us: u64) {
        if self.role != NodeState::Leader {
            return;
        }
        let term = self.term;
        let snapshot = self.snapshot.clone();
        let Some(ls) = self.leader_state.as_mut() else {
            return;
        };
        ls.ticks += 1;
        let now_tick = ls.ticks;
        let mut needs_snapshot = Vec::new();
        for (&peer, p) in ls.progress.iter_mut() {
            p.reported_active = false;
            if p.inflight
                .front()
                .is_some_and(|&(_, sent)| now_tick - sent >= 2)
            {
                // Unanswered for two heartbeat intervals: assume the window
                // was lost and resend from the match point, one request at a
                // time.
                p.inflight.clear();
                p.next_index = p.match_index.next();
                p.probing = true;
            }
            if p.snapshotting {
                needs_snapshot.push(peer);
            }
        }
        if let Some(s) = snapshot {
            for peer in needs_snapshot {
                self.emit(Effect::event(RaftEvent::SnapshotNeeded {
                    term,
                    peer,
                    snapshot: Arc::clone(&s),
                }));
            }
        }
        self.broadcast_append(true);
    }

    // ----- ReadIndex --------------------------------------------------------

    /// Linearizable reads through ReadIndex (thesis §6.4): the read index is
    /// the commit index, or the leader's no-op if that is not yet committed;
    /// the leader confirms it is still leader with a round of heartbeats
    /// acknowledged by a quorum; the read is served once the state machine
    /// has applied the read index.
    fn on_read_index(&mut self, ids: Vec<ReadId>) {
        let max = self.cfg.max_pending_proposals;
        let Some(ls) = self.leader_state.as_mut() else {
            let leader = self.leader.filter(|&l| l != self.id);
            for id in ids {
                self.emit(Effect::ReadFailed {
                    id,
                    error: ProposeError::NotLeader { leader },
                });
            }
            return;
        };
        if ids.is_empty() {
            return;
        }
        ls.round += 1;
        let index = self.commit_index.max(ls.first_index);
        let round = ls.round;
        let mut refused = Vec::new();
        for id in ids {
            if ls.reads.len() >= max {
                refused.push(id);
            } else {
                ls.reads.push_back(PendingRead { id, index, round });
            }
        }
        for id in refused {
            self.emit(Effect::ReadFailed {
                id,
                error: ProposeError::Busy,
            });
        }
        self.maybe_serve_reads();
        self.broadcast_append(true);
    }

    fn maybe_serve_reads(&mut self) {
        let applied = self.last_applied;
        let membership = &self.configs[self.configs.len() - 1].1;
        let Some(ls) = self.leader_state.as_mut() else {
            return;
        };
        let mut ready = Vec::new();
        while let Some(front) = ls.reads.front() {
            if applied < front.index {
                break;
            }
            let mut granted: BTreeSet<NodeId> = ls
                .progress
                .iter()
                .filter(|(_, p)| p.acked_round >= front.round)
                .map(|(&id, _)| id)
                .collect();
            granted.insert(self.id);
            if !membership.is_quorum(&granted) {
                break;
            }
            ready.push(front.id);
            ls.reads.pop_front();
        }
        for id in ready {
            self.emit(Effect::ReadReady { id });
        }
    }

    // ----- leadership transfer ---------------------------------------------

    /// Starts handing leadership to `target` (thesis §3.10): proposals are
    /// refused meanwhile; once `target`'s log matches the leader's, it gets
    /// TimeoutNow. LeaderElection aborts the transfer after an election
    /// timeout ([`Input::AbortTransfer`]).
    fn on_transfer_leadership(&mut self, term: Term, target: NodeId) -> Result<(), Refusal> {
        self.check_term(term)?;
        if self.role != NodeState::Leader {
            return Err(Refusal::NotLeader);
        }
        if target == self.id || !self.membership().is_voter(target) {
            return Err(Refusal::BadTransferTarget(target));
        }
        if let Some(ls) = self.leader_state.as_mut() {
            ls.transfer = Some(target);
        }
        self.maybe_send_timeout_now();
        self.maybe_send_append(target, true);
        Ok(())
    }

    /// Gives up a transfer that did not finish in time: proposals are
    /// accepted again.
    fn on_abort_transfer(&mut self, term: Term) -> Result<(), Refusal> {
        self.check_term(term)?;
        match self.leader_state.as_mut() {
            Some(ls) => {
                ls.transfer = None;
                Ok(())
            }
            None => Err(Refusal::NotLeader),
        }
    }

    fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let Some(ls) = self.leader_state.as_ref() else {
            return;
        };
        let Some(target) = ls.transfer else {
            return;
        };
        if ls
            .progress
            .get(&target)
            .is_some_and(|p| p.match_index == last)
        {
            let term = self.term;
            self.send(target, RaftMessage::TimeoutNow(TimeoutNow { term }));
        }
    }

    // ----- snapshots --------------------------------------------------------

    /// Takes a snapshot of the state machine at `last_applied` and purges the
    /// log up to `last_applied - keep_entries` (SnapshotCompactor decides
    /// when; §7). Entries kept after the purge point let slightly lagging
    /// followers catch up from the log.
    fn on_compact(&mut self, keep_entries: u64) -> Result<SnapshotMeta, Refusal> {
        let index = self.last_applied;
        let current = self.log_progress().snapshot_index;
        if index <= current || index == LogIndex::ZERO {
            return Err(Refusal::NothingToCompact(current));
        }
        let Some(term) = self.log.term_at(index) else {
            return Err(Refusal::NothingToCompact(current));
        };
        let (_, membership) = self
            .configs
            .iter()
            .rev()
            .find(|(id, _)| id.index <= index)
            .cloned()
            .unwrap_or_else(|| self.configs[0].clone());
        let meta = SnapshotMeta {
            last_included: LogId::new(term, index),
            membership,
        };
        let snapshot = Arc::new(Snapshot {
            meta: meta.clone(),
            data: Arc::new(self.sm.snapshot()),
        });
        self.snapshot = Some(Arc::clone(&snapshot));
        self.emit(Effect::SaveSnapshot(snapshot));
        let purge_index = LogIndex(index.get().saturating_sub(keep_entries));
        if purge_index > self.log.snapshot_last().index {
            let purge_term = self.log.term_at(purge_index).unwrap_or(Term::ZERO);
            self.purge_to(LogId::new(purge_term, purge_index));
        }
        self.emit(Effect::event(RaftEvent::SnapshotTaken {
            meta: meta.clone(),
            purged_upto: self.log.snapshot_last().index,
        }));
        Ok(meta)
    }

    fn purge_to(&mut self, upto: LogId) {
        self.log.purge_upto(upto);
        self.emit(Effect::PurgeLog(upto.index));
        // Configurations at or below the purge point collapse into the base.
        let keep_from = self
            .configs
            .iter()
            .rposition(|(id, _)| id.index <= upto.index)
            .unwrap_or(0);
        self.configs.drain(..keep_from);
    }

    /// Installs a snapshot received from `leader` of `term` (assembled by the
    /// compactor from InstallSnapshot chunks), then answers the leader's last
    /// chunk. §7, receiver: "If existing log entry has same index and term as
    /// snapshot's last included entry, retain log entries following it and
    /// reply. Discard the entire log. Reset state machine using snapshot
    /// contents (and load snapshot's cluster configuration)."
    fn on_install_snapshot(
        &mut self,
        now_us: u64,
        term: Term,
        leader: NodeId,
        snapshot: Snapshot,
    ) -> Result<(), Refusal> {
        if term < self.term {
            return Err(Refusal::StaleTerm {
                expected: term,
                current: self.term,
            });
        }
        self.accept_leader(now_us, term, leader);
        let last = snapshot.meta.last_included;
        let reply = RaftMessage::InstallSnapshotResponse(InstallSnapshotResponse {
            term: self.term,
            last_included_index: last.index,
            next_offset: snapshot.data.len() as u64,
            done: true,
        });
        if last.index <= self.commit_index {
            // Already have everything it covers.
            self.send(leader, reply);
            return Ok(());
        }
        self.sm
            .restore(&snapshot.data)
            .map_err(|e| Refusal::BadSnapshot(e.0))?;
        let snapshot = Arc::new(snapshot);
        self.emit(Effect::SaveSnapshot(Arc::clone(&snapshot)));
        if self.log.matches(last) {
            // The log goes on after the snapshot: keep that suffix.
            self.purge_to(last);
        } else {
            // The snapshot replaces the whole log (not a truncation of
            // committed entries: the snapshot covers them).
            if self.log.last_index() > self.log.snapshot_last().index {
                let from = self.log.first_index();
                self.log.truncate_from(from);
            }
            self.log.purge_upto(last);
            self.emit(Effect::DiscardLog);
            self.emit(Effect::PurgeLog(last.index));
            self.configs = vec![(last, snapshot.meta.membership.clone())];
        }
        self.snapshot = Some(Arc::clone(&snapshot));
        self.commit_index = last.index;
        self.last_applied = last.index;
        while self.pending.front().is_some_and(|p| p.index <= last.index) {
            if let Some(p) = self.pending.pop_front() {
                self.emit(Effect::ProposalResult {
                    id: p.id,
                    result: Err(ProposeError::Unknown),
                });
            }
        }
        self.emit(Effect::event(RaftEvent::SnapshotTaken {
            meta: snapshot.meta.clone(),
            purged_upto: self.log.snapshot_last().index,
        }));
        self.send(leader, reply);
        Ok(())
    }

    /// The compactor finished sending the snapshot covering `last_included`
    /// to `peer`: replication resumes after it.
    fn on_snapshot_sent(
        &mut self,
        term: Term,
        peer: NodeId,
        last_included: LogId,
    ) -> Result<(), Refusal> {
        self.check_term(term)?;
        let last = self.log.last_index();
        let Some(ls) = self.leader_state.as_mut() else {
            return Err(Refusal::NotLeader);
        };
        if let Some(p) = ls.progress.get_mut(&peer) {
            p.snapshotting = false;
            p.inflight.clear();
            if last_included.index > p.match_index && last_included.index <= last {
                p.match_index = last_included.index;
            }
            p.next_index = p.match_index.next();
            p.probing = true;
        }
        if self.membership().is_learner(peer) {
            let match_index = self.match_index_of(peer).unwrap_or_default();
            self.emit(Effect::event(RaftEvent::LearnerProgress {
                term,
                peer,
                match_index,
                last_log_index: last,
            }));
        }
        self.advance_commit_as_leader();
        self.maybe_send_append(peer, true);
        Ok(())
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

#[cfg(test)]
mod tests;
