//! The LeaderElection core: when to campaign and who won.
//!
//! It owns the **timing** and the **election logic that does not need the
//! log**: randomized election timeouts drawn from a seeded RNG, pre-vote
//! (thesis §9.6), vote counting against the configuration's quorum (both
//! majorities while joint, §6), check-quorum (thesis §6.2: a leader that has
//! not heard from a quorum within an election timeout steps down) and the
//! timing of leadership transfer (thesis §3.10).
//!
//! Every input goes through one entry, [`ElectionCore::step`], which ends
//! with the core's invariant check (debug builds), so no input can skip it.
//!
//! Everything that touches term, vote or log is decided by the owner
//! ([`ReplicationCore`](crate::log_replicator::ReplicationCore)): this core only
//! asks, with term-carrying [`ElectionEffect`]s, and learns the outcome from
//! [`RaftEvent`]s. Inbound RequestVote goes to the owner; vote responses and
//! TimeoutNow come here.

use crate::config::RaftConfig;
use crate::configuration::Membership;
use crate::error::Refusal;
use crate::events::RaftEvent;
use crate::messages::{RequestVoteResponse, TimeoutNow};
use consensus_actors::types::{NodeId, NodeState, Term};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// An output of [`ElectionCore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionEffect {
    /// Call [`ElectionCore::step`] with [`ElectionInput::Timeout`] at this time (microseconds).
    /// Only emitted when the wake-up is earlier than the one already armed;
    /// a timer firing early is harmless (the core re-arms).
    SetTimer {
        /// When.
        at_us: u64,
    },
    /// Ask the owner to start a campaign
    /// ([`Input::BeginElection`](crate::log_replicator::Input::BeginElection)).
    BeginElection {
        /// The term the decision was based on.
        expected_term: Term,
        /// A pre-vote campaign.
        pre_vote: bool,
        /// Started by TimeoutNow.
        transfer: bool,
    },
    /// A quorum voted for this node in `term`
    /// ([`Input::BecomeLeader`](crate::log_replicator::Input::BecomeLeader)).
    BecomeLeader {
        /// The campaign's term.
        term: Term,
    },
    /// Check-quorum failed: step down from leadership of `term`.
    StepDown {
        /// The leader's term.
        term: Term,
    },
    /// A vote response carried a higher term.
    ObserveTerm {
        /// The term seen.
        term: Term,
    },
    /// Start handing leadership to `target`.
    TransferLeadership {
        /// The leader's term.
        term: Term,
        /// The node that should take over.
        target: NodeId,
    },
    /// The transfer did not complete within an election timeout.
    AbortTransfer {
        /// The leader's term.
        term: Term,
    },
}

/// One input of the [`ElectionCore`], given to
/// [`step`](ElectionCore::step).
#[derive(Clone, Copy, Debug)]
pub enum ElectionInput<'a> {
    /// The component (re)started: arm the election timer (§5.2: "When
    /// servers start up, they begin as followers").
    Start,
    /// An event from the owner.
    Event(&'a RaftEvent),
    /// The owner refused a request of this core (it was stale): the
    /// campaign it belonged to is abandoned.
    Refused(&'a Refusal),
    /// A RequestVote response from `from`.
    RequestVoteResponse {
        /// The voter.
        from: NodeId,
        /// The response.
        msg: RequestVoteResponse,
    },
    /// TimeoutNow from the leader `from` (thesis §3.10).
    TimeoutNow {
        /// The leader.
        from: NodeId,
        /// The message.
        msg: TimeoutNow,
    },
    /// A client asks this leader to hand leadership to `target`.
    TransferLeadership {
        /// The node to take over.
        target: NodeId,
    },
    /// The timer fired.
    Timeout,
}

#[derive(Clone, Debug)]
struct Campaign {
    term: Term,
    pre_vote: bool,
    granted: BTreeSet<NodeId>,
}

/// The LeaderElection core. See the [module documentation](self).
pub struct ElectionCore {
    id: NodeId,
    cfg: RaftConfig,
    rng: ChaCha8Rng,
    term: Term,
    role: NodeState,
    leader: Option<NodeId>,
    membership: Membership,
    /// Follower/candidate: when to campaign.
    deadline_us: u64,
    campaign: Option<Campaign>,
    /// Leader: peers heard from since the last quorum check.
    active: BTreeSet<NodeId>,
    quorum_check_at_us: u64,
    transfer: Option<(NodeId, u64)>,
    armed_at_us: Option<u64>,
    out: Vec<ElectionEffect>,
}

impl ElectionCore {
    /// A core for node `id`, drawing its timeouts from `seed`. Call
    /// [`step`](Self::step) with [`ElectionInput::Start`] next.
    pub fn new(id: NodeId, cfg: RaftConfig, seed: u64) -> Self {
        Self {
            id,
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed),
            term: Term::ZERO,
            role: NodeState::Follower,
            leader: None,
            membership: Membership::empty(),
            deadline_us: 0,
            campaign: None,
            active: BTreeSet::new(),
            quorum_check_at_us: 0,
            transfer: None,
            armed_at_us: None,
            out: Vec::new(),
        }
    }

    /// Starts the election timer (as a follower, §5.2: "When servers start
    /// up, they begin as followers").
    fn on_start(&mut self, now_us: u64) {
        self.reset_deadline(now_us);
        self.rearm();
    }

    /// Handles one input at `now_us`; its effects wait in the output buffer
    /// ([`take_effects`](Self::take_effects)). Only
    /// [`ElectionInput::TransferLeadership`] can be refused. Every step ends
    /// with [`check_invariants`](Self::check_invariants) (debug builds).
    pub fn step(&mut self, now_us: u64, input: ElectionInput<'_>) -> Result<(), Refusal> {
        let r = match input {
            ElectionInput::Start => {
                self.on_start(now_us);
                Ok(())
            }
            ElectionInput::Event(e) => {
                self.on_event(now_us, e);
                Ok(())
            }
            ElectionInput::Refused(refusal) => {
                self.on_refusal(refusal);
                Ok(())
            }
            ElectionInput::RequestVoteResponse { from, msg } => {
                self.on_request_vote_response(now_us, from, msg);
                Ok(())
            }
            ElectionInput::TimeoutNow { from, msg } => {
                self.on_timeout_now(now_us, from, msg);
                Ok(())
            }
            ElectionInput::TransferLeadership { target } => {
                self.on_transfer_leadership(now_us, target)
            }
            ElectionInput::Timeout => {
                self.on_timeout(now_us);
                Ok(())
            }
        };
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        r
    }

    /// Checks the core's invariants: a transfer is timed only while
    /// leading, and a leader knows itself as the leader.
    ///
    /// # Panics
    /// When one does not hold: the copy is corrupt and the component must
    /// restart (and resynchronise from the owner).
    pub fn check_invariants(&self) {
        assert!(
            self.transfer.is_none() || self.role == NodeState::Leader,
            "a leadership transfer timed outside leadership"
        );
        assert!(
            self.role != NodeState::Leader || self.leader == Some(self.id),
            "a leader that does not know itself as the leader"
        );
    }

    /// Takes the effects produced so far, in order.
    pub fn take_effects(&mut self) -> Vec<ElectionEffect> {
        std::mem::take(&mut self.out)
    }

    /// The term this core believes current.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The role this core believes current.
    pub fn role(&self) -> NodeState {
        self.role
    }

    /// The known leader.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// When the next election starts (followers and candidates).
    pub fn election_deadline_us(&self) -> u64 {
        self.deadline_us
    }

    /// Whether a campaign is counting votes, and whether it is a pre-vote.
    pub fn campaigning(&self) -> Option<(Term, bool)> {
        self.campaign.as_ref().map(|c| (c.term, c.pre_vote))
    }

    fn random_timeout_us(&mut self) -> u64 {
        let (min, max) = (
            self.cfg.election_timeout_min_us(),
            self.cfg.election_timeout_max_us(),
        );
        self.rng.random_range(min..=max)
    }

    /// §5.2: "election timeouts are chosen randomly from a fixed interval".
    fn reset_deadline(&mut self, now_us: u64) {
        self.deadline_us = now_us + self.random_timeout_us();
    }

    fn next_wakeup_us(&self) -> u64 {
        match self.role {
            NodeState::Leader => {
                let mut at = if self.cfg.check_quorum {
                    self.quorum_check_at_us
                } else {
                    u64::MAX
                };
                if let Some((_, deadline)) = self.transfer {
                    at = at.min(deadline);
                }
                at
            }
            _ => self.deadline_us,
        }
    }

    fn rearm(&mut self) {
        let at = self.next_wakeup_us();
        if at == u64::MAX {
            return;
        }
        if self.armed_at_us.is_none_or(|armed| at < armed) {
            self.armed_at_us = Some(at);
            self.out.push(ElectionEffect::SetTimer { at_us: at });
        }
    }

    /// An event from the owner.
    fn on_event(&mut self, now_us: u64, event: &RaftEvent) {
        match event {
            RaftEvent::RoleChanged { term, role, leader } => {
                if *term < self.term {
                    return;
                }
                let term_changed = *term > self.term;
                let was = self.role;
                self.term = *term;
                self.role = *role;
                self.leader = *leader;
                if term_changed {
                    self.campaign = None;
                }
                if *role == NodeState::Leader && was != NodeState::Leader {
                    self.campaign = None;
                    self.active.clear();
                    self.quorum_check_at_us = now_us + self.cfg.election_timeout_max_us();
                }
                if *role != NodeState::Leader {
                    self.transfer = None;
                    if was == NodeState::Leader {
                        self.reset_deadline(now_us);
                    }
                }
            }
            RaftEvent::HeardFromLeader { term, leader }
                if *term >= self.term && self.role != NodeState::Leader =>
            {
                // Figure 2, followers: the timer restarts on every valid
                // AppendEntries from the current leader.
                self.term = *term;
                self.leader = Some(*leader);
                self.campaign = None;
                self.reset_deadline(now_us);
            }
            RaftEvent::VoteGranted { term, .. } if *term >= self.term => {
                // Figure 2, followers: "... or granting vote to candidate".
                self.reset_deadline(now_us);
            }
            RaftEvent::ElectionStarted { term, pre_vote, .. } => {
                let mut granted = BTreeSet::new();
                granted.insert(self.id);
                self.campaign = Some(Campaign {
                    term: *term,
                    pre_vote: *pre_vote,
                    granted,
                });
                self.maybe_win();
            }
            RaftEvent::PeerActive { term, peer }
                if *term == self.term && self.role == NodeState::Leader =>
            {
                self.active.insert(*peer);
            }
            RaftEvent::MembershipChanged { effective, .. } => {
                self.membership = effective.clone();
                // A new quorum may already be reached.
                self.maybe_win();
            }
            _ => {}
        }
        self.rearm();
    }

    /// The owner refused a request this core made (it was stale): the
    /// campaign it belonged to is abandoned.
    fn on_refusal(&mut self, refusal: &Refusal) {
        if let Refusal::StaleTerm { current, .. } = refusal {
            if *current > self.term {
                self.term = *current;
            }
        }
        self.campaign = None;
    }

    /// A RequestVote response: count it toward the campaign it answers.
    fn on_request_vote_response(&mut self, _now_us: u64, from: NodeId, r: RequestVoteResponse) {
        if r.term > self.term && !r.vote_granted {
            // All servers: "If RPC ... response contains term T >
            // currentTerm: set currentTerm = T, convert to follower" (for a
            // pre-vote, the rejecting voter's own term).
            self.out.push(ElectionEffect::ObserveTerm { term: r.term });
            self.campaign = None;
            return;
        }
        let Some(c) = self.campaign.as_mut() else {
            return;
        };
        if c.pre_vote != r.pre_vote || c.term != r.term || !r.vote_granted {
            return;
        }
        c.granted.insert(from);
        self.maybe_win();
    }

    /// Figure 2, candidates: "If votes received from majority of servers:
    /// become leader" (a pre-vote majority starts the real campaign).
    fn maybe_win(&mut self) {
        let Some(c) = &self.campaign else {
            return;
        };
        if !self.membership.is_quorum(&c.granted) {
            return;
        }
        let (term, pre_vote) = (c.term, c.pre_vote);
        self.campaign = None;
        if pre_vote {
            self.out.push(ElectionEffect::BeginElection {
                expected_term: self.term,
                pre_vote: false,
                transfer: false,
            });
        } else {
            self.out.push(ElectionEffect::BecomeLeader { term });
        }
    }

    /// TimeoutNow from the leader (thesis §3.10): campaign at once, without
    /// pre-vote, telling voters to ignore their leader lease.
    fn on_timeout_now(&mut self, now_us: u64, _from: NodeId, m: TimeoutNow) {
        if m.term != self.term
            || self.role == NodeState::Leader
            || !self.membership.is_voter(self.id)
        {
            return;
        }
        self.reset_deadline(now_us);
        self.out.push(ElectionEffect::BeginElection {
            expected_term: self.term,
            pre_vote: false,
            transfer: true,
        });
        self.rearm();
    }

    /// Hands leadership to `target` (thesis §3.10); abandoned after an
    /// election timeout.
    fn on_transfer_leadership(&mut self, now_us: u64, target: NodeId) -> Result<(), Refusal> {
        if self.role != NodeState::Leader {
            return Err(Refusal::NotLeader);
        }
        if target == self.id || !self.membership.is_voter(target) {
            return Err(Refusal::BadTransferTarget(target));
        }
        self.transfer = Some((target, now_us + self.cfg.election_timeout_max_us()));
        self.out.push(ElectionEffect::TransferLeadership {
            term: self.term,
            target,
        });
        self.rearm();
        Ok(())
    }

    /// The timer fired.
    fn on_timeout(&mut self, now_us: u64) {
        self.armed_at_us = None;
        match self.role {
            NodeState::Leader => {
                if self.cfg.check_quorum && now_us >= self.quorum_check_at_us {
                    // Thesis §6.2: "if an election timeout elapses without a
                    // successful round of heartbeats to a majority of its
                    // cluster, the leader steps down".
                    let mut heard = std::mem::take(&mut self.active);
                    heard.insert(self.id);
                    if !self.membership.is_quorum(&heard) {
                        self.out.push(ElectionEffect::StepDown { term: self.term });
                    }
                    self.quorum_check_at_us = now_us + self.cfg.election_timeout_max_us();
                }
                if let Some((_, deadline)) = self.transfer {
                    if now_us >= deadline {
                        self.transfer = None;
                        self.out
                            .push(ElectionEffect::AbortTransfer { term: self.term });
                    }
                }
            }
            NodeState::Follower | NodeState::Candidate => {
                if now_us >= self.deadline_us {
                    // Figure 2, followers: "If election timeout elapses
                    // without receiving AppendEntries RPC from current leader
                    // or granting vote to candidate: convert to candidate";
                    // candidates: "If election timeout elapses: start new
                    // election". Learners and removed nodes never campaign.
                    self.reset_deadline(now_us);
                    self.campaign = None;
                    if self.membership.is_voter(self.id) {
                        self.out.push(ElectionEffect::BeginElection {
                            expected_term: self.term,
                            pre_vote: self.cfg.pre_vote,
                            transfer: false,
                        });
                    }
                }
            }
        }
        self.rearm();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::types::LogId;

    /// The inputs of [`ElectionCore::step`] as one method each (every one
    /// goes through `step`).
    impl ElectionCore {
        fn start(&mut self, now: u64) {
            let _ = self.step(now, ElectionInput::Start);
        }
        fn handle_event(&mut self, now: u64, e: &RaftEvent) {
            let _ = self.step(now, ElectionInput::Event(e));
        }
        fn handle_request_vote_response(
            &mut self,
            now: u64,
            from: NodeId,
            msg: RequestVoteResponse,
        ) {
            let _ = self.step(now, ElectionInput::RequestVoteResponse { from, msg });
        }
        fn handle_timeout_now(&mut self, now: u64, from: NodeId, msg: TimeoutNow) {
            let _ = self.step(now, ElectionInput::TimeoutNow { from, msg });
        }
        fn transfer_leadership(&mut self, now: u64, target: NodeId) -> Result<(), Refusal> {
            self.step(now, ElectionInput::TransferLeadership { target })
        }
        fn handle_timeout(&mut self, now: u64) {
            let _ = self.step(now, ElectionInput::Timeout);
        }
    }

    fn n(i: u64) -> NodeId {
        NodeId(i)
    }

    fn members(ids: &[u64]) -> Membership {
        Membership::new(ids.iter().map(|&i| NodeId(i)))
    }

    fn membership_event(m: Membership) -> RaftEvent {
        RaftEvent::MembershipChanged {
            term: Term(0),
            effective_id: LogId::default(),
            effective: m.clone(),
            committed_id: LogId::default(),
            committed: m,
        }
    }

    fn core(id: u64, voters: &[u64], seed: u64) -> ElectionCore {
        let mut c = ElectionCore::new(n(id), RaftConfig::default(), seed);
        c.handle_event(0, &membership_event(members(voters)));
        c.start(0);
        c
    }

    fn role(term: u64, role: NodeState, leader: Option<u64>) -> RaftEvent {
        RaftEvent::RoleChanged {
            term: Term(term),
            role,
            leader: leader.map(NodeId),
        }
    }

    fn granted(term: u64, pre_vote: bool) -> RequestVoteResponse {
        RequestVoteResponse {
            term: Term(term),
            vote_granted: true,
            pre_vote,
        }
    }

    fn timer(effects: &[ElectionEffect]) -> Option<u64> {
        effects.iter().find_map(|e| match e {
            ElectionEffect::SetTimer { at_us } => Some(*at_us),
            _ => None,
        })
    }

    /// §5.2: "election timeouts are chosen randomly from a fixed interval
    /// (e.g., 150–300ms)", from the seeded RNG: same seed, same timeouts.
    #[test]
    fn timeouts_are_random_within_the_configured_range_and_seeded() {
        let mut seen = BTreeSet::new();
        for seed in 0..50 {
            let mut c = ElectionCore::new(n(1), RaftConfig::default(), seed);
            c.start(1_000);
            let at = timer(&c.take_effects()).unwrap();
            assert!((151_000..=301_000).contains(&at), "{at}");
            seen.insert(at);
            let mut again = ElectionCore::new(n(1), RaftConfig::default(), seed);
            again.start(1_000);
            assert_eq!(timer(&again.take_effects()), Some(at));
        }
        assert!(seen.len() > 40, "timeouts are spread out");
    }

    /// Figure 2, followers: "If election timeout elapses without receiving
    /// AppendEntries RPC from current leader or granting vote to candidate:
    /// convert to candidate" — through a pre-vote first (on by default).
    #[test]
    fn follower_campaigns_after_the_timeout_with_pre_vote_first() {
        let mut c = core(1, &[1, 2, 3], 7);
        let deadline = c.election_deadline_us();
        c.take_effects();
        c.handle_timeout(deadline - 1);
        let effects = c.take_effects();
        assert!(!effects
            .iter()
            .any(|e| matches!(e, ElectionEffect::BeginElection { .. })));
        assert_eq!(
            timer(&effects),
            Some(deadline),
            "re-armed for the real deadline"
        );
        c.handle_timeout(deadline);
        let effects = c.take_effects();
        assert_eq!(
            effects[0],
            ElectionEffect::BeginElection {
                expected_term: Term(0),
                pre_vote: true,
                transfer: false
            }
        );
        let next = timer(&effects).unwrap();
        assert!(
            next > deadline,
            "a new randomized deadline for the next attempt"
        );
    }

    /// Without pre-vote, the timeout starts a real campaign directly.
    #[test]
    fn without_pre_vote_the_campaign_is_real() {
        let mut c = ElectionCore::new(
            n(1),
            RaftConfig {
                pre_vote: false,
                ..RaftConfig::default()
            },
            1,
        );
        c.handle_event(0, &membership_event(members(&[1, 2, 3])));
        c.start(0);
        c.handle_timeout(c.election_deadline_us());
        assert!(c.take_effects().contains(&ElectionEffect::BeginElection {
            expected_term: Term(0),
            pre_vote: false,
            transfer: false
        }));
    }

    /// Figure 2, followers: the timer restarts whenever the leader is heard
    /// from, or a vote is granted.
    #[test]
    fn leader_contact_and_granted_votes_reset_the_timer() {
        let mut c = core(1, &[1, 2, 3], 3);
        let first = c.election_deadline_us();
        c.handle_event(
            first - 10,
            &RaftEvent::HeardFromLeader {
                term: Term(1),
                leader: n(2),
            },
        );
        let second = c.election_deadline_us();
        assert!(second >= first - 10 + 150_000);
        c.handle_timeout(first);
        assert!(!c
            .take_effects()
            .iter()
            .any(|e| matches!(e, ElectionEffect::BeginElection { .. })));
        c.handle_event(
            second - 5,
            &RaftEvent::VoteGranted {
                term: Term(2),
                candidate: n(3),
            },
        );
        assert!(c.election_deadline_us() >= second - 5 + 150_000);
    }

    /// Learners and nodes outside the configuration never campaign (§6,
    /// thesis §4.2.1).
    #[test]
    fn non_voters_never_campaign() {
        let mut learner = core(4, &[1, 2, 3], 1);
        for _ in 0..5 {
            let d = learner.election_deadline_us();
            learner.handle_timeout(d);
            assert!(!learner
                .take_effects()
                .iter()
                .any(|e| matches!(e, ElectionEffect::BeginElection { .. })));
        }
    }

    /// Pre-vote majority → real campaign; real majority → leader (Figure 2,
    /// candidates: "If votes received from majority of servers: become
    /// leader").
    #[test]
    fn majority_of_votes_wins_pre_vote_then_election() {
        let mut c = core(1, &[1, 2, 3, 4, 5], 1);
        c.handle_event(
            0,
            &RaftEvent::ElectionStarted {
                term: Term(1),
                pre_vote: true,
                transfer: false,
            },
        );
        c.take_effects();
        c.handle_request_vote_response(0, n(2), granted(1, true));
        assert!(c.take_effects().is_empty(), "2 of 5 is no majority");
        c.handle_request_vote_response(0, n(2), granted(1, true));
        assert!(c.take_effects().is_empty(), "a duplicate vote counts once");
        c.handle_request_vote_response(0, n(3), granted(1, true));
        assert_eq!(
            c.take_effects(),
            vec![ElectionEffect::BeginElection {
                expected_term: Term(0),
                pre_vote: false,
                transfer: false
            }]
        );
        c.handle_event(0, &role(1, NodeState::Candidate, None));
        c.handle_event(
            0,
            &RaftEvent::ElectionStarted {
                term: Term(1),
                pre_vote: false,
                transfer: false,
            },
        );
        // A late pre-vote answer does not count for the real campaign.
        c.handle_request_vote_response(0, n(4), granted(1, true));
        c.handle_request_vote_response(0, n(5), granted(1, false));
        c.handle_request_vote_response(0, n(4), granted(1, false));
        assert!(c
            .take_effects()
            .contains(&ElectionEffect::BecomeLeader { term: Term(1) }));
    }

    /// §5.2 split vote: "each candidate will time out and start a new
    /// election by incrementing its term".
    #[test]
    fn split_vote_times_out_and_retries() {
        let mut c = core(1, &[1, 2, 3, 4], 9);
        c.handle_event(0, &role(1, NodeState::Candidate, None));
        c.handle_event(
            0,
            &RaftEvent::ElectionStarted {
                term: Term(1),
                pre_vote: false,
                transfer: false,
            },
        );
        c.handle_request_vote_response(0, n(2), granted(1, false));
        c.take_effects();
        assert_eq!(
            c.campaigning(),
            Some((Term(1), false)),
            "2 of 4 is no majority"
        );
        let d = c.election_deadline_us();
        c.handle_timeout(d);
        assert!(c.take_effects().contains(&ElectionEffect::BeginElection {
            expected_term: Term(1),
            pre_vote: true,
            transfer: false
        }));
        assert_eq!(c.campaigning(), None);
    }

    /// §6: while joint, an election needs a majority of both configurations.
    #[test]
    fn joint_election_needs_both_majorities() {
        let mut c = core(1, &[1, 2, 3], 1);
        let joint = members(&[1, 2, 3])
            .to_joint([1, 4, 5].map(NodeId).into())
            .unwrap();
        c.handle_event(0, &membership_event(joint));
        c.handle_event(
            0,
            &RaftEvent::ElectionStarted {
                term: Term(1),
                pre_vote: false,
                transfer: false,
            },
        );
        c.handle_request_vote_response(0, n(2), granted(1, false));
        c.handle_request_vote_response(0, n(3), granted(1, false));
        assert!(c
            .take_effects()
            .iter()
            .all(|e| matches!(e, ElectionEffect::SetTimer { .. })));
        c.handle_request_vote_response(0, n(4), granted(1, false));
        assert!(c
            .take_effects()
            .contains(&ElectionEffect::BecomeLeader { term: Term(1) }));
    }

    /// A rejection carrying a higher term makes the node observe it; answers
    /// for another term are ignored.
    #[test]
    fn higher_term_in_a_rejection_is_observed() {
        let mut c = core(1, &[1, 2, 3], 1);
        c.handle_event(
            0,
            &RaftEvent::ElectionStarted {
                term: Term(1),
                pre_vote: true,
                transfer: false,
            },
        );
        c.handle_request_vote_response(0, n(2), granted(7, true));
        assert!(c
            .take_effects()
            .iter()
            .all(|e| matches!(e, ElectionEffect::SetTimer { .. })));
        c.handle_request_vote_response(
            0,
            n(3),
            RequestVoteResponse {
                term: Term(4),
                vote_granted: false,
                pre_vote: true,
            },
        );
        assert_eq!(
            c.take_effects(),
            vec![ElectionEffect::ObserveTerm { term: Term(4) }]
        );
        assert_eq!(c.campaigning(), None);
    }

    /// Thesis §6.2 (check-quorum): "if an election timeout elapses without a
    /// successful round of heartbeats to a majority of its cluster, the
    /// leader steps down".
    #[test]
    fn check_quorum_steps_down_an_isolated_leader() {
        let mut c = core(1, &[1, 2, 3, 4, 5], 1);
        c.handle_event(1_000, &role(3, NodeState::Leader, Some(1)));
        c.take_effects();
        // The first check comes one maximum election timeout after election
        // (the follower's earlier timer firing meanwhile does nothing).
        let check = 1_000 + 300_000;
        c.handle_timeout(check - 1);
        assert_eq!(timer(&c.take_effects()), Some(check));
        c.handle_event(
            2_000,
            &RaftEvent::PeerActive {
                term: Term(3),
                peer: n(2),
            },
        );
        c.handle_event(
            2_000,
            &RaftEvent::PeerActive {
                term: Term(3),
                peer: n(3),
            },
        );
        c.handle_timeout(check);
        let effects = c.take_effects();
        assert!(!effects
            .iter()
            .any(|e| matches!(e, ElectionEffect::StepDown { .. })));
        // Next window: only one follower answers.
        c.handle_event(
            check + 1,
            &RaftEvent::PeerActive {
                term: Term(3),
                peer: n(2),
            },
        );
        let next = timer(&effects).unwrap();
        assert_eq!(next, check + 300_000);
        c.handle_timeout(next);
        assert!(c
            .take_effects()
            .contains(&ElectionEffect::StepDown { term: Term(3) }));
        // Activity reported for an older term does not count.
        c.handle_event(
            next + 1,
            &RaftEvent::PeerActive {
                term: Term(2),
                peer: n(3),
            },
        );
        assert!(c.active.is_empty());
    }

    /// Thesis §3.10: TimeoutNow makes the target campaign at once, skipping
    /// pre-vote and marked as a transfer; a stale TimeoutNow is ignored.
    #[test]
    fn timeout_now_starts_a_transfer_election() {
        let mut c = core(2, &[1, 2, 3], 1);
        c.handle_event(0, &role(4, NodeState::Follower, Some(1)));
        c.take_effects();
        c.handle_timeout_now(10, n(1), TimeoutNow { term: Term(3) });
        assert!(c.take_effects().is_empty());
        c.handle_timeout_now(10, n(1), TimeoutNow { term: Term(4) });
        assert_eq!(
            c.take_effects()[0],
            ElectionEffect::BeginElection {
                expected_term: Term(4),
                pre_vote: false,
                transfer: true
            }
        );
    }

    /// A transfer that does not complete within an election timeout is
    /// aborted, so the leader accepts proposals again.
    #[test]
    fn transfer_is_aborted_after_an_election_timeout() {
        let mut c = core(1, &[1, 2, 3], 1);
        assert_eq!(c.transfer_leadership(0, n(2)), Err(Refusal::NotLeader));
        c.handle_event(0, &role(2, NodeState::Leader, Some(1)));
        c.take_effects();
        assert_eq!(
            c.transfer_leadership(0, n(9)),
            Err(Refusal::BadTransferTarget(n(9)))
        );
        c.transfer_leadership(100, n(2)).unwrap();
        let effects = c.take_effects();
        assert_eq!(
            effects[0],
            ElectionEffect::TransferLeadership {
                term: Term(2),
                target: n(2)
            }
        );
        c.handle_timeout(100 + 300_000);
        assert!(c
            .take_effects()
            .contains(&ElectionEffect::AbortTransfer { term: Term(2) }));
    }

    /// Every input ends with the invariant check: with the copy corrupted
    /// (a transfer timed while following), each input must stop on it.
    #[test]
    fn every_input_runs_the_invariant_check() {
        let event = RaftEvent::VoteGranted {
            term: Term(1),
            candidate: n(2),
        };
        let refusal = Refusal::NotLeader;
        let inputs = [
            ElectionInput::Start,
            ElectionInput::Event(&event),
            ElectionInput::Refused(&refusal),
            ElectionInput::RequestVoteResponse {
                from: n(2),
                msg: RequestVoteResponse {
                    term: Term(1),
                    vote_granted: false,
                    pre_vote: false,
                },
            },
            ElectionInput::TimeoutNow {
                from: n(2),
                msg: TimeoutNow { term: Term(1) },
            },
            ElectionInput::TransferLeadership { target: n(2) },
            ElectionInput::Timeout,
        ];
        let mut unchecked = Vec::new();
        for input in inputs {
            let mut c = ElectionCore::new(n(1), RaftConfig::default(), 7);
            c.transfer = Some((n(2), 0));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _ = c.step(0, input);
            }));
            if r.is_ok() {
                unchecked.push(format!("{input:?}"));
            }
        }
        assert!(
            unchecked.is_empty(),
            "inputs that skipped the check: {unchecked:?}"
        );
    }
}
