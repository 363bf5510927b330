//! The LogReplicator core: RequestVote (§5.2, §5.4.1) and the elections LeaderElection asks for: begin an election, become leader, step down, observe a term or a leader.

use super::*;

impl<SM: StateMachine> ReplicationCore<SM>
where
    SM::Command: Sync,
{
    // ----- RequestVote -----------------------------------------------------

    /// RequestVote RPC, receiver implementation (Figure 2), with pre-vote
    /// (thesis §9.6) and the leader-lease rule (thesis §4.2.3).
    pub(super) fn on_request_vote(&mut self, now_us: u64, from: NodeId, rv: RequestVote) {
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

    pub(super) fn vote_reply(term: Term, granted: bool) -> RaftMessage<SM::Command> {
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
    pub(super) fn on_begin_election(
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
    pub(super) fn on_become_leader(&mut self, now_us: u64, term: Term) -> Result<(), Refusal> {
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
    pub(super) fn on_step_down(&mut self, term: Term) -> Result<(), Refusal> {
        self.check_term(term)?;
        if self.role != NodeState::Leader {
            return Err(Refusal::NotLeader);
        }
        self.become_follower(term, None);
        Ok(())
    }

    /// A higher term was seen by another component (in a vote response, a
    /// snapshot response): "convert to follower".
    pub(super) fn on_observe_term(&mut self, term: Term) {
        if term > self.term {
            self.become_follower(term, None);
        }
    }

    /// A chunk of a snapshot came from `leader` of `term` (the compactor
    /// assembles it): same term rules as AppendEntries. Refused when `term`
    /// is stale.
    pub(super) fn on_observe_leader(
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

    pub(super) fn accept_leader(&mut self, now_us: u64, term: Term, leader: NodeId) {
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

    pub(super) fn check_term(&self, expected: Term) -> Result<(), Refusal> {
        if expected != self.term {
            return Err(Refusal::StaleTerm {
                expected,
                current: self.term,
            });
        }
        Ok(())
    }
}
