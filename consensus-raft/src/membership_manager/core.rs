//! The MembershipManager core: runs one configuration change at a time by
//! joint consensus (Raft paper §6, thesis §4.3).
//!
//! Adding a node: (1) it joins as a **learner** (`C + learner`), receives
//! the log and catches up (thesis §4.2.1: "new servers join as non-voting
//! members until they have caught up"); (2) the leader appends the joint
//! configuration `C_old,new`; (3) once that is committed, `C_new`. Removing a
//! node skips the learner step. While joint, elections and commits need both
//! majorities (enforced by [`Membership`] in the owner and the election
//! core). A leader that is not part of `C_new` steps down once `C_new` is
//! committed. A second change while one is in progress gets
//! [`MembershipChangeError::ChangeInProgress`].
//!
//! The core owns the *process*; the configuration entries themselves are
//! appended by the owner of the log
//! ([`Input::ProposeMembership`](crate::log_replicator::Input::ProposeMembership)),
//! term-carrying, and the core learns of their commitment from
//! [`RaftEvent::MembershipChanged`]. A new leader that finds a committed joint
//! configuration finishes the change by appending `C_new`.

use crate::config::RaftConfig;
use crate::configuration::{Membership, MembershipError};
use crate::error::Refusal;
use crate::events::RaftEvent;
use consensus_actors::types::{LogId, LogIndex, NodeId, NodeState, Term};
use std::collections::BTreeMap;

/// Identifies one change request inside a node (chosen by the actor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId(pub u64);

/// A requested configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Add a voter (through learner catch-up).
    AddNode(NodeId),
    /// Remove a voter or a learner.
    RemoveNode(NodeId),
}

/// Why a configuration change failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipChangeError {
    /// Only the leader changes the configuration.
    #[error("not the leader; try {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// One change at a time.
    #[error("another configuration change is in progress")]
    ChangeInProgress,
    /// The node is already a voter.
    #[error("{0} is already a voter")]
    AlreadyMember(NodeId),
    /// The node is not a member.
    #[error("{0} is not a member")]
    NotMember(NodeId),
    /// Removing the last voter would leave a cluster that can never elect.
    #[error("cannot remove {0}: it is the last voter")]
    LastVoter(NodeId),
    /// The learner did not catch up in time; it was removed again.
    #[error("{0} did not catch up with the leader in time")]
    CatchUpTimeout(NodeId),
    /// Leadership was lost during the change; the configuration entries
    /// already appended may still be committed by the next leader.
    #[error("leadership lost during the change")]
    LeadershipLost,
    /// The configuration could not be built.
    #[error(transparent)]
    Invalid(#[from] MembershipError),
}

/// An output of [`MembershipCore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEffect {
    /// Ask the owner to append this configuration; answer with
    /// [`MembershipInput::Proposed`].
    ProposeConfig {
        /// The leader's term.
        term: Term,
        /// The configuration to append.
        membership: Membership,
    },
    /// This leader is not part of the committed configuration: step down.
    StepDown {
        /// The leader's term.
        term: Term,
    },
    /// A change finished.
    ChangeDone {
        /// The request.
        id: ChangeId,
        /// The committed configuration, or why the change failed.
        result: Result<Membership, MembershipChangeError>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for the learner configuration to commit.
    LearnerAdded(LogId),
    /// Waiting for the learner to catch up.
    CatchingUp { since_us: u64 },
    /// Waiting for `C_old,new` to commit.
    Joint(LogId),
    /// Waiting for `C_new` (or the final simple configuration) to commit.
    Final(LogId),
}

/// How the stage after a proposal is built from the appended entry's id.
type StageAfter = fn(LogId) -> Stage;

#[derive(Clone, Debug)]
struct Change {
    id: ChangeId,
    kind: ChangeKind,
    /// `None` while a proposal for the next stage is outstanding or must be
    /// retried.
    stage: Option<Stage>,
    /// The configuration to (re)propose when `stage` is `None`.
    next: Option<(Membership, StageAfter)>,
}

/// One input of the MembershipManager core; every input goes through
/// [`MembershipCore::step`].
#[derive(Clone, Debug)]
pub enum MembershipInput<'a> {
    /// A client asks for a change (the outcome comes as
    /// [`MembershipEffect::ChangeDone`] unless refused at once).
    RequestChange {
        /// The change's id.
        id: ChangeId,
        /// What to change.
        kind: ChangeKind,
    },
    /// The owner's answer to the last [`MembershipEffect::ProposeConfig`].
    Proposed(Result<LogId, Refusal>),
    /// An event of the owner.
    Event(&'a RaftEvent),
    /// The periodic check (every heartbeat interval).
    Tick,
}

/// The MembershipManager core. See the [module documentation](self).
pub struct MembershipCore {
    id: NodeId,
    cfg: RaftConfig,
    term: Term,
    role: NodeState,
    leader: Option<NodeId>,
    effective_id: LogId,
    effective: Membership,
    committed_id: LogId,
    committed: Membership,
    commit_index: LogIndex,
    learner_match: BTreeMap<NodeId, (LogIndex, LogIndex)>,
    change: Option<Change>,
    /// A ProposeConfig is outstanding.
    proposing: bool,
    /// The outstanding proposal finishes a joint configuration on its own.
    auto_finishing: bool,
    stepped_down_in: Option<Term>,
    out: Vec<MembershipEffect>,
}

impl MembershipCore {
    /// A core for node `id`.
    pub fn new(id: NodeId, cfg: RaftConfig) -> Self {
        Self {
            id,
            cfg,
            term: Term::ZERO,
            role: NodeState::Follower,
            leader: None,
            effective_id: LogId::default(),
            effective: Membership::empty(),
            committed_id: LogId::default(),
            committed: Membership::empty(),
            commit_index: LogIndex::ZERO,
            learner_match: BTreeMap::new(),
            change: None,
            proposing: false,
            auto_finishing: false,
            stepped_down_in: None,
            out: Vec::new(),
        }
    }

    /// Takes the effects produced so far, in order.
    pub fn take_effects(&mut self) -> Vec<MembershipEffect> {
        std::mem::take(&mut self.out)
    }

    /// Whether a change is in progress.
    pub fn change_in_progress(&self) -> bool {
        self.change.is_some()
    }

    /// The configuration in effect, as last reported.
    pub fn effective(&self) -> &Membership {
        &self.effective
    }

    /// The one entry of the core: handles `input` at `now_us`, then checks
    /// the core's invariants (in debug builds), so no input can skip them.
    /// A change refused at once is the `Err`.
    pub fn step(
        &mut self,
        now_us: u64,
        input: MembershipInput<'_>,
    ) -> Result<(), MembershipChangeError> {
        let result = match input {
            MembershipInput::RequestChange { id, kind } => self.request_change(now_us, id, kind),
            MembershipInput::Proposed(result) => {
                self.handle_proposed(now_us, result);
                Ok(())
            }
            MembershipInput::Event(event) => {
                self.handle_event(now_us, event);
                Ok(())
            }
            MembershipInput::Tick => {
                self.tick(now_us);
                Ok(())
            }
        };
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        result
    }

    /// The core's invariants, checked after every step: the committed
    /// configuration is never newer than the one in effect; one change at a
    /// time, and only one proposal outstanding; learners are tracked only
    /// while a change is in progress; a joint configuration finishes on its
    /// own only through an outstanding proposal.
    pub fn check_invariants(&self) {
        assert!(
            self.committed_id <= self.effective_id,
            "{}: committed configuration {:?} is newer than the effective {:?}",
            self.id,
            self.committed_id,
            self.effective_id
        );
        assert!(
            !self.auto_finishing || self.proposing,
            "{}: finishing a joint configuration without a proposal outstanding",
            self.id
        );
    }

    /// Starts a change. Errors that can be told at once are returned;
    /// otherwise the outcome comes as [`MembershipEffect::ChangeDone`].
    fn request_change(
        &mut self,
        now_us: u64,
        id: ChangeId,
        kind: ChangeKind,
    ) -> Result<(), MembershipChangeError> {
        if self.role != NodeState::Leader {
            return Err(MembershipChangeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.change.is_some()
            || self.proposing
            || self.effective.is_joint()
            || self.effective_id.index > self.commit_index
        {
            return Err(MembershipChangeError::ChangeInProgress);
        }
        let current = &self.effective;
        let mut change = Change {
            id,
            kind,
            stage: None,
            next: None,
        };
        match kind {
            ChangeKind::AddNode(node) => {
                if current.is_voter(node) {
                    return Err(MembershipChangeError::AlreadyMember(node));
                }
                if current.is_learner(node) {
                    // A learner left over by an earlier attempt: catch up.
                    change.stage = Some(Stage::CatchingUp { since_us: now_us });
                } else {
                    change.next = Some((current.with_learner(node)?, Stage::LearnerAdded));
                }
            }
            ChangeKind::RemoveNode(node) => {
                if current.is_learner(node) {
                    change.next = Some((current.without_learner(node)?, Stage::Final));
                } else if current.is_voter(node) {
                    let mut voters = current.voters.clone();
                    voters.remove(&node);
                    if voters.is_empty() {
                        return Err(MembershipChangeError::LastVoter(node));
                    }
                    change.next = Some((current.to_joint(voters)?, Stage::Joint));
                } else {
                    return Err(MembershipChangeError::NotMember(node));
                }
            }
        }
        self.change = Some(change);
        self.advance(now_us);
        Ok(())
    }

    /// The owner's answer to the last [`MembershipEffect::ProposeConfig`].
    fn handle_proposed(&mut self, now_us: u64, result: Result<LogId, Refusal>) {
        if !self.proposing {
            return;
        }
        self.proposing = false;
        let auto = std::mem::take(&mut self.auto_finishing);
        match result {
            Ok(config_id) => {
                if let Some(c) = self.change.as_mut() {
                    if !auto {
                        if let Some((_, stage)) = c.next.take() {
                            c.stage = Some(stage(config_id));
                        }
                    }
                }
            }
            // Not yet possible: retried on the next event (the log moved),
            // or once the owner is back (its events then tell whether this
            // node still leads).
            Err(Refusal::LeaderNotReady)
            | Err(Refusal::ConfigChangePending)
            | Err(Refusal::Unavailable) => return,
            Err(_) => self.fail(MembershipChangeError::LeadershipLost),
        }
        self.advance(now_us);
    }

    /// An event from the owner.
    fn handle_event(&mut self, now_us: u64, event: &RaftEvent) {
        match event {
            RaftEvent::RoleChanged { term, role, leader } => {
                if *term < self.term {
                    return;
                }
                let lost = self.role == NodeState::Leader
                    && (*role != NodeState::Leader || *term != self.term);
                self.term = *term;
                self.role = *role;
                self.leader = *leader;
                if lost {
                    self.proposing = false;
                    self.auto_finishing = false;
                    self.fail(MembershipChangeError::LeadershipLost);
                }
                if *role == NodeState::Leader {
                    self.learner_match.clear();
                }
            }
            RaftEvent::MembershipChanged {
                effective_id,
                effective,
                committed_id,
                committed,
                ..
            } => {
                self.effective_id = *effective_id;
                self.effective = effective.clone();
                self.committed_id = *committed_id;
                self.committed = committed.clone();
                self.commit_index = self.commit_index.max(committed_id.index);
            }
            RaftEvent::Progress(p) => {
                if p.term >= self.term {
                    self.commit_index = p.commit_index;
                }
            }
            RaftEvent::LearnerProgress {
                term,
                peer,
                match_index,
                last_log_index,
            } => {
                if *term == self.term {
                    self.learner_match
                        .insert(*peer, (*match_index, *last_log_index));
                }
            }
            _ => return,
        }
        self.advance(now_us);
    }

    /// Periodic check (every heartbeat interval): abandons a learner that
    /// does not catch up in time.
    fn tick(&mut self, now_us: u64) {
        let timeout_us = self.cfg.learner_catchup_timeout_ms * 1000;
        let Some(c) = &self.change else {
            return;
        };
        let (ChangeKind::AddNode(node), Some(Stage::CatchingUp { since_us })) = (c.kind, &c.stage)
        else {
            return;
        };
        if now_us.saturating_sub(*since_us) < timeout_us {
            return;
        }
        self.fail(MembershipChangeError::CatchUpTimeout(node));
        // Remove the learner again (best effort, not tracked as a change).
        if let Ok(m) = self.effective.without_learner(node) {
            if !self.proposing {
                self.proposing = true;
                self.auto_finishing = true;
                self.out.push(MembershipEffect::ProposeConfig {
                    term: self.term,
                    membership: m,
                });
            }
        }
    }

    fn fail(&mut self, error: MembershipChangeError) {
        if let Some(c) = self.change.take() {
            self.out.push(MembershipEffect::ChangeDone {
                id: c.id,
                result: Err(error),
            });
        }
    }

    fn propose(&mut self, membership: Membership, auto: bool) {
        self.proposing = true;
        self.auto_finishing = auto;
        self.out.push(MembershipEffect::ProposeConfig {
            term: self.term,
            membership,
        });
    }

    fn advance(&mut self, now_us: u64) {
        enum Step {
            Propose(Membership),
            ProposeNext(Membership, StageAfter),
            Enter(Stage),
            Done,
            Fail(MembershipChangeError),
        }
        if self.role != NodeState::Leader || self.proposing {
            return;
        }
        let committed_upto = self.committed_id.index;
        let Some(c) = self.change.as_ref() else {
            self.maybe_finish_joint();
            return;
        };
        let step = match (&c.stage, &c.next) {
            (None, Some((m, _))) => Step::Propose(m.clone()),
            (Some(Stage::LearnerAdded(id)), _) if committed_upto >= id.index => {
                Step::Enter(Stage::CatchingUp { since_us: now_us })
            }
            (Some(Stage::CatchingUp { .. }), _) => {
                let ChangeKind::AddNode(node) = c.kind else {
                    return;
                };
                let caught_up = self.learner_match.get(&node).is_some_and(|&(m, last)| {
                    last.get().saturating_sub(m.get()) <= self.cfg.learner_max_lag
                });
                if !caught_up {
                    return;
                }
                let mut voters = self.effective.voters.clone();
                voters.insert(node);
                match self.effective.to_joint(voters) {
                    Ok(joint) => Step::ProposeNext(joint, Stage::Joint),
                    Err(e) => Step::Fail(e.into()),
                }
            }
            (Some(Stage::Joint(id)), _) if committed_upto >= id.index => {
                match self.committed.leave_joint() {
                    Ok(new) => Step::ProposeNext(new, Stage::Final),
                    Err(e) => Step::Fail(e.into()),
                }
            }
            (Some(Stage::Final(id)), _) if committed_upto >= id.index => Step::Done,
            _ => return,
        };
        match step {
            Step::Propose(m) => self.propose(m, false),
            Step::ProposeNext(m, stage) => {
                if let Some(c) = self.change.as_mut() {
                    c.stage = None;
                    c.next = Some((m.clone(), stage));
                }
                self.propose(m, false);
            }
            Step::Enter(stage) => {
                if let Some(c) = self.change.as_mut() {
                    c.stage = Some(stage);
                }
                self.advance(now_us);
            }
            Step::Done => {
                if let Some(c) = self.change.take() {
                    self.out.push(MembershipEffect::ChangeDone {
                        id: c.id,
                        result: Ok(self.committed.clone()),
                    });
                }
                self.maybe_finish_joint();
            }
            Step::Fail(e) => self.fail(e),
        }
    }

    /// A leader that finds a committed joint configuration with nothing
    /// after it appends `C_new`; a leader outside the committed simple
    /// configuration steps down (§6: "the leader steps down once C_new is
    /// committed").
    fn maybe_finish_joint(&mut self) {
        if self.effective_id != self.committed_id {
            return;
        }
        if self.committed.is_joint() {
            if let Ok(new) = self.committed.leave_joint() {
                self.propose(new, true);
            }
            return;
        }
        if !self.committed.is_voter(self.id) && self.stepped_down_in != Some(self.term) {
            self.stepped_down_in = Some(self.term);
            self.out
                .push(MembershipEffect::StepDown { term: self.term });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input goes through `step`, which ends with the invariant
    /// check: a core whose state is broken is caught whatever the input.
    #[test]
    fn every_input_runs_the_invariant_check() {
        let event = RaftEvent::RoleChanged {
            term: Term(1),
            role: NodeState::Follower,
            leader: None,
        };
        let inputs = [
            MembershipInput::RequestChange {
                id: ChangeId(1),
                kind: ChangeKind::AddNode(NodeId(9)),
            },
            MembershipInput::Proposed(Err(Refusal::Unavailable)),
            MembershipInput::Event(&event),
            MembershipInput::Tick,
        ];
        for input in inputs {
            let mut c = MembershipCore::new(NodeId(1), RaftConfig::default());
            assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = c.step(0, input.clone());
            }))
            .is_ok());
            // Break an invariant behind the core's back.
            c.auto_finishing = true;
            c.proposing = false;
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = c.step(0, input.clone());
            }));
            assert!(caught.is_err(), "{input:?} skipped the invariant check");
        }
    }
    use crate::events::LogProgress;
    use std::collections::BTreeSet;

    fn n(i: u64) -> NodeId {
        NodeId(i)
    }

    fn members(ids: &[u64]) -> Membership {
        Membership::new(ids.iter().map(|&i| NodeId(i)))
    }

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(Term(term), LogIndex(index))
    }

    /// What the owner would report after appending/committing.
    fn config_event(effective: (LogId, &Membership), committed: (LogId, &Membership)) -> RaftEvent {
        RaftEvent::MembershipChanged {
            term: Term(1),
            effective_id: effective.0,
            effective: effective.1.clone(),
            committed_id: committed.0,
            committed: committed.1.clone(),
        }
    }

    fn leader_core(voters: &[u64]) -> MembershipCore {
        let mut c = MembershipCore::new(n(1), RaftConfig::default());
        let m = members(voters);
        c.handle_event(0, &config_event((id(0, 0), &m), (id(0, 0), &m)));
        c.handle_event(
            0,
            &RaftEvent::RoleChanged {
                term: Term(1),
                role: NodeState::Leader,
                leader: Some(n(1)),
            },
        );
        c.take_effects();
        c
    }

    fn proposed(effects: &[MembershipEffect]) -> Vec<Membership> {
        effects
            .iter()
            .filter_map(|e| match e {
                MembershipEffect::ProposeConfig { membership, .. } => Some(membership.clone()),
                _ => None,
            })
            .collect()
    }

    /// Thesis §4.2.1 + §6: a new node joins as a learner, catches up, then
    /// C_old,new, then C_new; the change completes when C_new is committed.
    #[test]
    fn add_node_goes_learner_joint_new() {
        let mut c = leader_core(&[1, 2, 3]);
        let old = members(&[1, 2, 3]);
        c.request_change(0, ChangeId(1), ChangeKind::AddNode(n(4)))
            .unwrap();
        let learner = old.with_learner(n(4)).unwrap();
        assert_eq!(proposed(&c.take_effects()), vec![learner.clone()]);
        c.handle_proposed(0, Ok(id(1, 2)));
        c.handle_event(0, &config_event((id(1, 2), &learner), (id(0, 0), &old)));
        assert!(
            c.take_effects().is_empty(),
            "waits for the learner entry to commit"
        );
        c.handle_event(0, &config_event((id(1, 2), &learner), (id(1, 2), &learner)));
        assert!(
            c.take_effects().is_empty(),
            "waits for the learner to catch up"
        );
        c.handle_event(
            0,
            &RaftEvent::LearnerProgress {
                term: Term(1),
                peer: n(4),
                match_index: LogIndex(1),
                last_log_index: LogIndex(500),
            },
        );
        assert!(c.take_effects().is_empty(), "499 behind is not caught up");
        c.handle_event(
            0,
            &RaftEvent::LearnerProgress {
                term: Term(1),
                peer: n(4),
                match_index: LogIndex(450),
                last_log_index: LogIndex(500),
            },
        );
        let joint = learner
            .to_joint(
                [1, 2, 3, 4]
                    .map(NodeId)
                    .into_iter()
                    .collect::<BTreeSet<_>>(),
            )
            .unwrap();
        assert_eq!(proposed(&c.take_effects()), vec![joint.clone()]);
        assert!(!joint.is_learner(n(4)));
        c.handle_proposed(0, Ok(id(1, 501)));
        c.handle_event(0, &config_event((id(1, 501), &joint), (id(1, 501), &joint)));
        let new = members(&[1, 2, 3, 4]);
        assert_eq!(proposed(&c.take_effects()), vec![new.clone()]);
        c.handle_proposed(0, Ok(id(1, 502)));
        c.handle_event(0, &config_event((id(1, 502), &new), (id(1, 502), &new)));
        assert_eq!(
            c.take_effects(),
            vec![MembershipEffect::ChangeDone {
                id: ChangeId(1),
                result: Ok(new)
            }]
        );
        assert!(!c.change_in_progress());
    }

    /// One change at a time: "a second one gets a clear error".
    #[test]
    fn second_change_is_refused() {
        let mut c = leader_core(&[1, 2, 3]);
        c.request_change(0, ChangeId(1), ChangeKind::RemoveNode(n(3)))
            .unwrap();
        assert_eq!(
            c.request_change(0, ChangeId(2), ChangeKind::AddNode(n(5))),
            Err(MembershipChangeError::ChangeInProgress)
        );
    }

    /// Requests that can be refused at once are.
    #[test]
    fn impossible_requests_are_refused() {
        let mut f = MembershipCore::new(n(2), RaftConfig::default());
        f.handle_event(
            0,
            &RaftEvent::RoleChanged {
                term: Term(1),
                role: NodeState::Follower,
                leader: Some(n(1)),
            },
        );
        assert_eq!(
            f.request_change(0, ChangeId(1), ChangeKind::AddNode(n(4))),
            Err(MembershipChangeError::NotLeader { leader: Some(n(1)) })
        );
        let mut c = leader_core(&[1]);
        assert_eq!(
            c.request_change(0, ChangeId(1), ChangeKind::AddNode(n(1))),
            Err(MembershipChangeError::AlreadyMember(n(1)))
        );
        assert_eq!(
            c.request_change(0, ChangeId(1), ChangeKind::RemoveNode(n(7))),
            Err(MembershipChangeError::NotMember(n(7)))
        );
        assert_eq!(
            c.request_change(0, ChangeId(1), ChangeKind::RemoveNode(n(1))),
            Err(MembershipChangeError::LastVoter(n(1)))
        );
    }

    /// §6: removing the leader: it manages C_new's commitment and steps
    /// down once C_new is committed.
    #[test]
    fn removed_leader_steps_down_after_c_new_commits() {
        let mut c = leader_core(&[1, 2, 3]);
        let old = members(&[1, 2, 3]);
        c.request_change(0, ChangeId(1), ChangeKind::RemoveNode(n(1)))
            .unwrap();
        let joint = old.to_joint([2, 3].map(NodeId).into()).unwrap();
        assert_eq!(proposed(&c.take_effects()), vec![joint.clone()]);
        c.handle_proposed(0, Ok(id(1, 2)));
        c.handle_event(0, &config_event((id(1, 2), &joint), (id(1, 2), &joint)));
        let new = members(&[2, 3]);
        assert_eq!(proposed(&c.take_effects()), vec![new.clone()]);
        c.handle_proposed(0, Ok(id(1, 3)));
        c.handle_event(0, &config_event((id(1, 3), &new), (id(1, 2), &joint)));
        assert!(
            c.take_effects().is_empty(),
            "no step-down before C_new commits"
        );
        c.handle_event(0, &config_event((id(1, 3), &new), (id(1, 3), &new)));
        assert_eq!(
            c.take_effects(),
            vec![
                MembershipEffect::ChangeDone {
                    id: ChangeId(1),
                    result: Ok(new)
                },
                MembershipEffect::StepDown { term: Term(1) }
            ]
        );
    }

    /// A new leader that finds a committed joint configuration finishes the
    /// change with C_new (retrying until its no-op is committed).
    #[test]
    fn new_leader_finishes_a_joint_configuration() {
        let mut c = MembershipCore::new(n(2), RaftConfig::default());
        let joint = members(&[1, 2, 3])
            .to_joint([2, 3, 4].map(NodeId).into())
            .unwrap();
        c.handle_event(0, &config_event((id(1, 5), &joint), (id(1, 5), &joint)));
        c.handle_event(
            0,
            &RaftEvent::RoleChanged {
                term: Term(2),
                role: NodeState::Leader,
                leader: Some(n(2)),
            },
        );
        let new = members(&[2, 3, 4]);
        assert_eq!(proposed(&c.take_effects()), vec![new.clone()]);
        c.handle_proposed(0, Err(Refusal::LeaderNotReady));
        assert!(c.take_effects().is_empty());
        c.handle_event(
            0,
            &RaftEvent::Progress(LogProgress {
                term: Term(2),
                commit_index: LogIndex(6),
                ..LogProgress::default()
            }),
        );
        assert_eq!(proposed(&c.take_effects()), vec![new]);
        assert_eq!(
            c.request_change(0, ChangeId(1), ChangeKind::AddNode(n(9))),
            Err(MembershipChangeError::ChangeInProgress),
            "still joint"
        );
    }

    /// Losing leadership fails the change in progress.
    #[test]
    fn leadership_loss_fails_the_change() {
        let mut c = leader_core(&[1, 2, 3]);
        c.request_change(0, ChangeId(3), ChangeKind::AddNode(n(4)))
            .unwrap();
        c.take_effects();
        c.handle_event(
            0,
            &RaftEvent::RoleChanged {
                term: Term(2),
                role: NodeState::Follower,
                leader: None,
            },
        );
        assert_eq!(
            c.take_effects(),
            vec![MembershipEffect::ChangeDone {
                id: ChangeId(3),
                result: Err(MembershipChangeError::LeadershipLost)
            }]
        );
    }

    /// A learner that does not catch up in time is removed again and the
    /// change fails.
    #[test]
    fn slow_learner_times_out() {
        let mut c = leader_core(&[1, 2, 3]);
        let old = members(&[1, 2, 3]);
        c.request_change(0, ChangeId(1), ChangeKind::AddNode(n(4)))
            .unwrap();
        let learner = old.with_learner(n(4)).unwrap();
        c.handle_proposed(0, Ok(id(1, 2)));
        c.handle_event(
            10,
            &config_event((id(1, 2), &learner), (id(1, 2), &learner)),
        );
        c.take_effects();
        let timeout_us = RaftConfig::default().learner_catchup_timeout_ms * 1000;
        c.tick(10 + timeout_us - 1);
        assert!(c.take_effects().is_empty());
        c.tick(10 + timeout_us);
        assert_eq!(
            c.take_effects(),
            vec![
                MembershipEffect::ChangeDone {
                    id: ChangeId(1),
                    result: Err(MembershipChangeError::CatchUpTimeout(n(4)))
                },
                MembershipEffect::ProposeConfig {
                    term: Term(1),
                    membership: old
                }
            ]
        );
    }
}
