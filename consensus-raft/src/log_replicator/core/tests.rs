//! Paper-rule tests for the owner of term, vote and log: one test per rule
//! of Figure 2 (and of §5.3, §5.4, §6, §7 and the thesis), the rule quoted
//! in the doc comment, the exact effects asserted.

use super::*;
use consensus_actors::kv::{KvCommand, KvOutput, KvStore};

type Core = ReplicationCore<KvStore>;
type Eff = Effect<KvCommand, KvOutput>;

/// The inputs of [`ReplicationCore::step`] as one method each, so the
/// paper-rule tests below read like the rules; every one goes through
/// `step`.
impl Core {
    fn handle_request_vote(&mut self, now: u64, from: NodeId, msg: RequestVote) {
        let _ = self.step(now, Input::RequestVote { from, msg });
    }
    fn handle_append_entries(&mut self, now: u64, from: NodeId, msg: AppendEntries<KvCommand>) {
        let _ = self.step(now, Input::AppendEntries { from, msg });
    }
    fn handle_append_entries_response(
        &mut self,
        now: u64,
        from: NodeId,
        msg: AppendEntriesResponse,
    ) {
        let _ = self.step(now, Input::AppendEntriesResponse { from, msg });
    }
    fn propose(&mut self, now: u64, mut batch: Vec<Proposal<KvCommand>>) {
        let _ = self.step(now, Input::Propose(&mut batch));
    }
    fn read_index(&mut self, ids: Vec<ReadId>) {
        let _ = self.step(0, Input::ReadIndex(ids));
    }
    fn tick(&mut self, now: u64) {
        let _ = self.step(now, Input::Tick);
    }
    fn begin_election(
        &mut self,
        expected_term: Term,
        pre_vote: bool,
        transfer: bool,
    ) -> Result<(), Refusal> {
        self.step(
            0,
            Input::BeginElection {
                expected_term,
                pre_vote,
                transfer,
            },
        )
        .map(|_| ())
    }
    fn become_leader(&mut self, now: u64, term: Term) -> Result<(), Refusal> {
        self.step(now, Input::BecomeLeader { term }).map(|_| ())
    }
    fn transfer_leadership(&mut self, term: Term, target: NodeId) -> Result<(), Refusal> {
        self.step(0, Input::TransferLeadership { term, target })
            .map(|_| ())
    }
    fn abort_transfer(&mut self, term: Term) -> Result<(), Refusal> {
        self.step(0, Input::AbortTransfer { term }).map(|_| ())
    }
    fn propose_membership(
        &mut self,
        now: u64,
        term: Term,
        membership: Membership,
    ) -> Result<LogId, Refusal> {
        match self.step(now, Input::ProposeMembership { term, membership })? {
            Accepted::ConfigAppended(id) => Ok(id),
            other => panic!("{other:?}"),
        }
    }
    fn compact(&mut self, keep_entries: u64) -> Result<SnapshotMeta, Refusal> {
        match self.step(0, Input::Compact { keep_entries })? {
            Accepted::Compacted(meta) => Ok(meta),
            other => panic!("{other:?}"),
        }
    }
    fn install_snapshot(
        &mut self,
        now: u64,
        term: Term,
        leader: NodeId,
        snapshot: Snapshot,
    ) -> Result<(), Refusal> {
        self.step(
            now,
            Input::InstallSnapshot {
                term,
                leader,
                snapshot,
            },
        )
        .map(|_| ())
    }
    fn snapshot_sent(
        &mut self,
        term: Term,
        peer: NodeId,
        last_included: LogId,
    ) -> Result<(), Refusal> {
        self.step(
            0,
            Input::SnapshotSent {
                term,
                peer,
                last_included,
            },
        )
        .map(|_| ())
    }
}

fn n(i: u64) -> NodeId {
    NodeId(i)
}

fn cfg() -> RaftConfig {
    RaftConfig {
        max_inflight_appends: 2,
        max_log_entries_per_append: 3,
        ..RaftConfig::default()
    }
}

fn members(ids: &[u64]) -> Membership {
    Membership::new(ids.iter().map(|&i| NodeId(i)))
}

fn entry(term: u64, index: u64, cmd: RaftCommand<KvCommand>) -> EntryRef<KvCommand> {
    Arc::new(LogEntry::new(
        Term(term),
        LogIndex(index),
        cmd,
        0,
        ClientId(0),
    ))
}

fn put(k: &str, v: &str) -> RaftCommand<KvCommand> {
    RaftCommand::Normal(KvCommand::put(k, v))
}

/// A follower with a log whose entries have `terms` (entry i+1 has terms[i]).
fn node_with_log(id: u64, voters: &[u64], term: u64, terms: &[u64]) -> Core {
    let entries = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| entry(t, i as u64 + 1, put("k", &format!("v{}", i + 1))))
        .collect();
    let recovered = Recovered {
        hard_state: HardState {
            term: Term(term),
            voted_for: None,
        },
        snapshot: None,
        entries,
        initial_membership: members(voters),
    };
    ReplicationCore::new(n(id), cfg(), recovered, KvStore::default()).unwrap()
}

fn follower(id: u64, voters: &[u64]) -> Core {
    node_with_log(id, voters, 0, &[])
}

fn sends(effects: &[Eff]) -> Vec<(NodeId, RaftMessage<KvCommand>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { to, msg } => Some((*to, msg.clone())),
            _ => None,
        })
        .collect()
}

fn appends_to(effects: &[Eff], peer: u64) -> Vec<AppendEntries<KvCommand>> {
    sends(effects)
        .into_iter()
        .filter_map(|(to, m)| match m {
            RaftMessage::AppendEntries(ae) if to == n(peer) => Some(ae),
            _ => None,
        })
        .collect()
}

fn events(effects: &[Eff]) -> Vec<RaftEvent> {
    effects.iter().filter_map(Effect::as_event).collect()
}

fn results(effects: &[Eff]) -> Vec<(ProposalId, Result<KvOutput, ProposeError>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ProposalResult { id, result } => Some((*id, result.clone().map(|c| c.output))),
            _ => None,
        })
        .collect()
}

/// Where each proposal answered with success committed.
fn committed_at(effects: &[Eff]) -> Vec<(ProposalId, LogId)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ProposalResult {
                id, result: Ok(c), ..
            } => Some((*id, c.log_id)),
            _ => None,
        })
        .collect()
}

/// Node `id` elected leader of the next term; its effects are discarded.
fn elect(core: &mut Core) {
    let t = core.term();
    core.begin_election(t, false, false).unwrap();
    core.become_leader(0, t.next()).unwrap();
    core.take_effects();
}

fn leader(id: u64, voters: &[u64]) -> Core {
    let mut c = follower(id, voters);
    elect(&mut c);
    c
}

fn ok(term: u64, match_index: u64) -> AppendEntriesResponse {
    AppendEntriesResponse {
        term: Term(term),
        success: true,
        match_index: LogIndex(match_index),
        conflict_term: None,
        conflict_index: LogIndex::ZERO,
        round: 0,
    }
}

fn ae(
    term: u64,
    leader: u64,
    prev: (u64, u64),
    entries: Vec<EntryRef<KvCommand>>,
    commit: u64,
) -> AppendEntries<KvCommand> {
    AppendEntries {
        term: Term(term),
        leader_id: n(leader),
        prev_log_index: LogIndex(prev.1),
        prev_log_term: Term(prev.0),
        entries,
        leader_commit: LogIndex(commit),
        round: 0,
    }
}

fn rv(term: u64, candidate: u64, last: (u64, u64)) -> RequestVote {
    RequestVote {
        term: Term(term),
        candidate_id: n(candidate),
        last_log_index: LogIndex(last.1),
        last_log_term: Term(last.0),
        pre_vote: false,
        leadership_transfer: false,
    }
}

fn proposal(id: u64, k: &str, v: &str) -> Proposal<KvCommand> {
    Proposal {
        id: ProposalId(id),
        command: KvCommand::put(k, v),
        client_id: ClientId(1),
    }
}

fn vote_reply(effects: &[Eff]) -> RequestVoteResponse {
    match sends(effects).as_slice() {
        [(_, RaftMessage::RequestVoteResponse(r))] => *r,
        other => panic!("expected exactly one vote reply, got {other:?}"),
    }
}

fn ae_reply(effects: &[Eff]) -> AppendEntriesResponse {
    match sends(effects).as_slice() {
        [(_, RaftMessage::AppendEntriesResponse(r))] => *r,
        other => panic!("expected exactly one AppendEntries reply, got {other:?}"),
    }
}

// ----- RequestVote receiver ------------------------------------------------

/// Figure 2, RequestVote receiver 2: "If votedFor is null or candidateId,
/// and candidate's log is at least as up-to-date as receiver's log, grant
/// vote"; all servers: "If RPC request contains term T > currentTerm: set
/// currentTerm = T"; persistence: the vote is on stable storage before the
/// reply.
#[test]
fn request_vote_grant_persists_vote_before_reply() {
    let mut c = follower(1, &[1, 2, 3]);
    c.handle_request_vote(0, n(2), rv(1, 2, (0, 0)));
    let effects = c.take_effects();
    assert_eq!(
        effects,
        vec![
            Effect::SaveHardState(HardState {
                term: Term(1),
                voted_for: Some(n(2))
            }),
            Effect::event(RaftEvent::VoteGranted {
                term: Term(1),
                candidate: n(2)
            }),
            Effect::Send {
                to: n(2),
                msg: RaftMessage::RequestVoteResponse(RequestVoteResponse {
                    term: Term(1),
                    vote_granted: true,
                    pre_vote: false
                })
            },
            Effect::event(RaftEvent::RoleChanged {
                term: Term(1),
                role: NodeState::Follower,
                leader: None
            }),
            Effect::event(RaftEvent::Progress(LogProgress {
                term: Term(1),
                ..LogProgress::default()
            })),
        ]
    );
    assert_eq!(c.voted_for(), Some(n(2)));
}

/// Figure 2, RequestVote receiver 1: "Reply false if term < currentTerm."
#[test]
fn request_vote_reply_false_if_term_is_stale() {
    let mut c = node_with_log(1, &[1, 2, 3], 5, &[]);
    c.handle_request_vote(0, n(2), rv(4, 2, (0, 0)));
    let effects = c.take_effects();
    let r = vote_reply(&effects);
    assert!(!r.vote_granted);
    assert_eq!(r.term, Term(5));
    assert_eq!(c.voted_for(), None);
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::SaveHardState(_))));
}

/// Figure 2, RequestVote receiver 2: one vote per term ("votedFor is null
/// or candidateId"); a retransmitted request from the same candidate is
/// granted again.
#[test]
fn request_vote_one_vote_per_term() {
    let mut c = follower(1, &[1, 2, 3]);
    c.handle_request_vote(0, n(2), rv(1, 2, (0, 0)));
    c.take_effects();
    c.handle_request_vote(0, n(3), rv(1, 3, (0, 0)));
    assert!(!vote_reply(&c.take_effects()).vote_granted);
    c.handle_request_vote(0, n(2), rv(1, 2, (0, 0)));
    let effects = c.take_effects();
    assert!(vote_reply(&effects).vote_granted);
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::SaveHardState(_))),
        "nothing new to persist"
    );
}

/// §5.4.1: "If the logs have last entries with different terms, then the log
/// with the later term is more up-to-date. If the logs end with the same
/// term, then whichever log is longer is more up-to-date."
#[test]
fn request_vote_election_restriction() {
    // Voter's log: terms [1, 2].
    let cases = [
        ((1, 5), false), // older last term, longer: refused
        ((2, 1), false), // same last term, shorter: refused
        ((2, 2), true),  // identical: granted
        ((2, 3), true),  // same last term, longer: granted
        ((3, 1), true),  // later last term, shorter: granted
    ];
    for (last, granted) in cases {
        let mut c = node_with_log(1, &[1, 2, 3], 2, &[1, 2]);
        c.handle_request_vote(0, n(2), rv(3, 2, last));
        let r = vote_reply(&c.take_effects());
        assert_eq!(r.vote_granted, granted, "candidate last log {last:?}");
        assert_eq!(c.term(), Term(3), "the higher term is adopted either way");
    }
}

/// Thesis §9.6 (pre-vote): "a candidate would first ask other servers
/// whether its log was up-to-date enough to get their vote"; the voter
/// changes no state.
#[test]
fn pre_vote_changes_no_state() {
    let mut c = node_with_log(1, &[1, 2, 3], 2, &[1, 2]);
    let mut req = rv(3, 2, (2, 2));
    req.pre_vote = true;
    c.handle_request_vote(0, n(2), req);
    let effects = c.take_effects();
    assert_eq!(
        effects,
        vec![Effect::Send {
            to: n(2),
            msg: RaftMessage::RequestVoteResponse(RequestVoteResponse {
                term: Term(3),
                vote_granted: true,
                pre_vote: true
            })
        }]
    );
    assert_eq!((c.term(), c.voted_for()), (Term(2), None));
    // A pre-vote whose log is behind is refused with the voter's term.
    let mut req = rv(3, 2, (1, 5));
    req.pre_vote = true;
    c.handle_request_vote(0, n(2), req);
    let r = vote_reply(&c.take_effects());
    assert_eq!((r.vote_granted, r.term, r.pre_vote), (false, Term(2), true));
}

/// Thesis §4.2.3: "if a server receives a RequestVote request within the
/// minimum election timeout of hearing from a current leader, it does not
/// update its term or grant its vote." A leadership-transfer election
/// (TimeoutNow) is exempt.
#[test]
fn vote_refused_within_leader_lease() {
    let mut c = follower(1, &[1, 2, 3]);
    c.handle_append_entries(1_000, n(2), ae(1, 2, (0, 0), vec![], 0));
    c.take_effects();
    let lease_end = 1_000 + cfg().election_timeout_min_us();
    for pre_vote in [false, true] {
        let mut req = rv(2, 3, (5, 5));
        req.pre_vote = pre_vote;
        c.handle_request_vote(lease_end - 1, n(3), req);
        let r = vote_reply(&c.take_effects());
        assert!(!r.vote_granted, "pre_vote={pre_vote}");
        assert_eq!(c.term(), Term(1));
    }
    let mut transfer = rv(2, 3, (5, 5));
    transfer.leadership_transfer = true;
    c.handle_request_vote(lease_end - 1, n(3), transfer);
    assert!(vote_reply(&c.take_effects()).vote_granted);
    assert_eq!(c.term(), Term(2));
    // After the lease, an ordinary candidate is heard.
    let mut c = follower(1, &[1, 2, 3]);
    c.handle_append_entries(1_000, n(2), ae(1, 2, (0, 0), vec![], 0));
    c.take_effects();
    c.handle_request_vote(lease_end, n(3), rv(2, 3, (5, 5)));
    assert!(vote_reply(&c.take_effects()).vote_granted);
}

// ----- Candidates ---------------------------------------------------------

/// Figure 2, candidates: "On conversion to candidate, start election:
/// increment currentTerm, vote for self, reset election timer, send
/// RequestVote RPCs to all other servers."
#[test]
fn begin_election_increments_term_votes_for_self_and_asks_all() {
    let mut c = node_with_log(1, &[1, 2, 3], 2, &[1, 2]);
    c.begin_election(Term(2), false, false).unwrap();
    let effects = c.take_effects();
    let req = rv(3, 1, (2, 2));
    assert_eq!(
        effects,
        vec![
            Effect::SaveHardState(HardState {
                term: Term(3),
                voted_for: Some(n(1))
            }),
            Effect::event(RaftEvent::RoleChanged {
                term: Term(3),
                role: NodeState::Candidate,
                leader: None
            }),
            Effect::event(RaftEvent::ElectionStarted {
                term: Term(3),
                pre_vote: false,
                transfer: false
            }),
            Effect::Send {
                to: n(2),
                msg: RaftMessage::RequestVote(req)
            },
            Effect::Send {
                to: n(3),
                msg: RaftMessage::RequestVote(req)
            },
            Effect::event(RaftEvent::Progress(LogProgress {
                term: Term(3),
                last_log_index: LogIndex(2),
                ..LogProgress::default()
            })),
        ]
    );
    assert_eq!(c.role(), NodeState::Candidate);
}

/// Pre-vote campaigns ask for `term + 1` without changing the term.
#[test]
fn pre_vote_campaign_keeps_the_term() {
    let mut c = node_with_log(1, &[1, 2, 3], 2, &[1, 2]);
    c.begin_election(Term(2), true, false).unwrap();
    let effects = c.take_effects();
    assert_eq!(c.term(), Term(2));
    assert_eq!(c.role(), NodeState::Follower);
    let reqs = sends(&effects);
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|(_, m)| matches!(m,
        RaftMessage::RequestVote(r) if r.pre_vote && r.term == Term(3))));
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::SaveHardState(_))));
}

/// The owner refuses requests based on a stale term, and campaigns by
/// non-voters (learners, removed nodes).
#[test]
fn stale_or_impossible_election_requests_are_refused() {
    let mut c = node_with_log(1, &[1, 2, 3], 4, &[]);
    assert_eq!(
        c.begin_election(Term(3), false, false),
        Err(Refusal::StaleTerm {
            expected: Term(3),
            current: Term(4)
        })
    );
    assert_eq!(c.become_leader(0, Term(4)), Err(Refusal::NotCandidate));
    let mut learner = follower(9, &[1, 2, 3]);
    assert_eq!(
        learner.begin_election(Term(0), false, false),
        Err(Refusal::NotVoter)
    );
    assert!(c.take_effects().is_empty() && learner.take_effects().is_empty());
    c.begin_election(Term(4), false, false).unwrap();
    assert_eq!(
        c.become_leader(0, Term(4)),
        Err(Refusal::StaleTerm {
            expected: Term(4),
            current: Term(5)
        })
    );
}

/// Figure 2, candidates: "If AppendEntries RPC received from new leader:
/// convert to follower."
#[test]
fn candidate_becomes_follower_on_append_entries_of_its_term() {
    let mut c = follower(1, &[1, 2, 3]);
    c.begin_election(Term(0), false, false).unwrap();
    c.take_effects();
    c.handle_append_entries(0, n(2), ae(1, 2, (0, 0), vec![], 0));
    let effects = c.take_effects();
    assert_eq!(c.role(), NodeState::Follower);
    assert_eq!(c.leader(), Some(n(2)));
    assert!(ae_reply(&effects).success);
    assert!(events(&effects).contains(&RaftEvent::HeardFromLeader {
        term: Term(1),
        leader: n(2)
    }));
}

// ----- Leaders ------------------------------------------------------------

/// Figure 2, leaders: "Upon election: send initial empty AppendEntries RPCs
/// (heartbeat) to each server"; §8: the leader commits a blank no-op entry
/// at the start of its term.
#[test]
fn new_leader_appends_noop_and_sends_it_to_everyone() {
    let mut c = node_with_log(1, &[1, 2, 3], 1, &[1]);
    c.begin_election(Term(1), false, false).unwrap();
    c.take_effects();
    c.become_leader(7, Term(2)).unwrap();
    let effects = c.take_effects();
    let noop = Arc::new(LogEntry::new(
        Term(2),
        LogIndex(2),
        RaftCommand::Noop,
        7,
        ClientId(0),
    ));
    assert_eq!(
        effects[0],
        Effect::event(RaftEvent::RoleChanged {
            term: Term(2),
            role: NodeState::Leader,
            leader: Some(n(1))
        })
    );
    assert_eq!(effects[1], Effect::AppendLog(vec![noop.clone()]));
    for peer in [2, 3] {
        assert_eq!(
            appends_to(&effects, peer),
            vec![AppendEntries {
                term: Term(2),
                leader_id: n(1),
                prev_log_index: LogIndex(1),
                prev_log_term: Term(1),
                entries: vec![noop.clone()],
                leader_commit: LogIndex(0),
                round: 0
            }]
        );
    }
    assert_eq!(c.role(), NodeState::Leader);
}

/// Figure 2, leaders: "If command received from client: append entry to
/// local log, respond after entry applied to state machine." Figure 2: "If
/// there exists an N such that N > commitIndex, a majority of
/// matchIndex[i] ≥ N, and log[N].term == currentTerm: set commitIndex = N."
#[test]
fn leader_responds_after_majority_commit_and_apply() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(1));
    c.propose(5, vec![proposal(10, "a", "1"), proposal(11, "b", "2")]);
    let effects = c.take_effects();
    assert!(results(&effects).is_empty(), "no result before commit");
    assert!(matches!(&effects[0], Effect::AppendLog(e) if e.len() == 2));
    let to2 = appends_to(&effects, 2);
    assert_eq!(to2.len(), 1);
    assert_eq!(to2[0].prev_log_index, LogIndex(1));
    assert_eq!(to2[0].entries.len(), 2);
    assert_eq!(to2[0].leader_commit, LogIndex(1));
    // One follower acknowledges: with the leader that is a majority of 3.
    c.handle_append_entries_response(0, n(3), ok(1, 3));
    let effects = c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(3));
    assert_eq!(c.last_applied(), LogIndex(3));
    assert_eq!(
        results(&effects),
        vec![
            (ProposalId(10), Ok(KvOutput::Ok)),
            (ProposalId(11), Ok(KvOutput::Ok))
        ]
    );
    // Each answer names the entry's position: after the leader's no-op at
    // index 1, in the leader's term 1.
    assert_eq!(
        committed_at(&effects),
        vec![
            (ProposalId(10), LogId::new(Term(1), LogIndex(2))),
            (ProposalId(11), LogId::new(Term(1), LogIndex(3)))
        ]
    );
    assert_eq!(c.log().get(LogIndex(3)).map(|e| e.term), Some(Term(1)));
    assert_eq!(c.state_machine().get("b"), Some("2"));
}

/// Figure 2 / §5.4.2 (Figure 8): "Raft never commits log entries from
/// previous terms by counting replicas. Only log entries from the leader's
/// current term are committed by counting replicas."
#[test]
fn entries_of_earlier_terms_are_not_committed_by_counting() {
    // Leader of term 3 whose log holds an uncommitted entry of term 2.
    let mut c = node_with_log(1, &[1, 2, 3, 4, 5], 2, &[1, 2]);
    c.begin_election(Term(2), false, false).unwrap();
    c.become_leader(0, Term(3)).unwrap();
    c.take_effects();
    // Two followers have index 2 (term 2) but not the no-op at 3.
    c.handle_append_entries_response(0, n(2), ok(3, 2));
    c.handle_append_entries_response(0, n(3), ok(3, 2));
    c.take_effects();
    assert_eq!(
        c.commit_index(),
        LogIndex(0),
        "a majority holds index 2, but of term 2"
    );
    c.handle_append_entries_response(0, n(2), ok(3, 3));
    c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(0));
    c.handle_append_entries_response(0, n(3), ok(3, 3));
    c.take_effects();
    assert_eq!(
        c.commit_index(),
        LogIndex(3),
        "the no-op commits everything before it"
    );
}

/// Figure 2, all servers: "If RPC ... response contains term T >
/// currentTerm: set currentTerm = T, convert to follower."
#[test]
fn leader_steps_down_on_higher_term_in_response() {
    let mut c = leader(1, &[1, 2, 3]);
    let mut r = ok(5, 0);
    r.success = false;
    c.handle_append_entries_response(0, n(2), r);
    let effects = c.take_effects();
    assert_eq!(
        (c.term(), c.role(), c.voted_for()),
        (Term(5), NodeState::Follower, None)
    );
    assert_eq!(
        effects[0],
        Effect::SaveHardState(HardState {
            term: Term(5),
            voted_for: None
        })
    );
    assert!(events(&effects).contains(&RaftEvent::RoleChanged {
        term: Term(5),
        role: NodeState::Follower,
        leader: None
    }));
}

/// A deposed leader reports that it stepped down before its log changes
/// (the verifier checks Leader Append-Only against the role it reports).
#[test]
fn deposed_leader_reports_stepping_down_before_truncating() {
    let mut c = leader(1, &[1, 2, 3]);
    c.propose(0, vec![proposal(1, "a", "1")]);
    c.take_effects();
    c.handle_append_entries(
        0,
        n(2),
        ae(2, 2, (1, 1), vec![entry(2, 2, RaftCommand::Noop)], 1),
    );
    let effects = c.take_effects();
    let stepped = effects
        .iter()
        .position(|e| {
            matches!(
                e,
                Effect::Event(ev) if matches!(**ev, RaftEvent::RoleChanged {
                    role: NodeState::Follower,
                    ..
                })
            )
        })
        .expect("stepped down");
    let truncated = effects
        .iter()
        .position(|e| matches!(e, Effect::TruncateLog(LogIndex(2))))
        .expect("truncated");
    assert!(stepped < truncated, "{effects:?}");
}

/// "A follower answers a proposal with NotLeader and the leader it knows."
#[test]
fn follower_refuses_proposals_with_leader_hint() {
    let mut c = follower(1, &[1, 2, 3]);
    c.handle_append_entries(0, n(3), ae(1, 3, (0, 0), vec![], 0));
    c.take_effects();
    c.propose(0, vec![proposal(1, "a", "b")]);
    assert_eq!(
        c.take_effects(),
        vec![Effect::ProposalResult {
            id: ProposalId(1),
            result: Err(ProposeError::NotLeader { leader: Some(n(3)) })
        }]
    );
}

/// Batching and pipelining: at most `max_log_entries_per_append` entries per
/// AppendEntries, at most `max_inflight_appends` requests in flight per
/// follower; what does not fit leaves when an answer frees the window.
#[test]
fn appends_are_bounded_and_pipelined() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.take_effects();
    let batch = (0..10).map(|i| proposal(i, "k", "v")).collect();
    c.propose(0, batch);
    let effects = c.take_effects();
    let to2 = appends_to(&effects, 2);
    assert_eq!(to2.len(), 2, "window of 2");
    assert_eq!(
        to2.iter()
            .map(|a| (a.prev_log_index.get(), a.entries.len()))
            .collect::<Vec<_>>(),
        vec![(1, 3), (4, 3)]
    );
    // n3 is still probing (its first request, the no-op, is unanswered).
    assert!(appends_to(&effects, 3).is_empty());
    c.handle_append_entries_response(0, n(2), ok(1, 4));
    let effects = c.take_effects();
    let to2 = appends_to(&effects, 2);
    assert_eq!(
        to2.iter()
            .map(|a| (a.prev_log_index.get(), a.entries.len()))
            .collect::<Vec<_>>(),
        vec![(7, 3)]
    );
    assert_eq!(c.next_index_of(n(2)), Some(LogIndex(11)));
    // Entries are shared with the log, not copied.
    assert!(Arc::ptr_eq(
        &to2[0].entries[0],
        c.log().get(LogIndex(8)).unwrap()
    ));
}

/// Nagle's algorithm (`coalesce_appends`, the default): an idle follower
/// gets a proposal at once; while its request is unanswered, proposals that
/// would not fill a request wait and leave together with the answer; enough
/// of them to fill one leave at once (pipelined).
#[test]
fn small_appends_wait_for_the_answer_and_leave_together() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.take_effects();
    c.propose(0, vec![proposal(1, "a", "1")]);
    let to2 = appends_to(&c.take_effects(), 2);
    assert_eq!(
        to2.iter()
            .map(|a| (a.prev_log_index.get(), a.entries.len()))
            .collect::<Vec<_>>(),
        vec![(1, 1)],
        "idle follower: sent at once"
    );
    c.propose(0, vec![proposal(2, "a", "2")]);
    c.propose(0, vec![proposal(3, "a", "3")]);
    assert!(
        appends_to(&c.take_effects(), 2).is_empty(),
        "held while index 2 is unanswered"
    );
    c.handle_append_entries_response(0, n(2), ok(1, 2));
    let to2 = appends_to(&c.take_effects(), 2);
    assert_eq!(
        to2.iter()
            .map(|a| (a.prev_log_index.get(), a.entries.len()))
            .collect::<Vec<_>>(),
        vec![(2, 2)],
        "the answer releases both, in one request"
    );
    // Three more fill a request (max 3 entries): it leaves while 3..=4 is
    // still unanswered.
    c.propose(0, (4..7).map(|i| proposal(i, "a", "x")).collect());
    let to2 = appends_to(&c.take_effects(), 2);
    assert_eq!(
        to2.iter()
            .map(|a| (a.prev_log_index.get(), a.entries.len()))
            .collect::<Vec<_>>(),
        vec![(4, 3)]
    );
    assert_eq!(c.next_index_of(n(2)), Some(LogIndex(8)));
}

/// With `coalesce_appends` off, every proposal batch leaves at once while
/// the window has room.
#[test]
fn without_coalescing_every_batch_leaves_at_once() {
    let cfg = RaftConfig {
        coalesce_appends: false,
        ..cfg()
    };
    let recovered = Recovered::fresh(members(&[1, 2, 3]));
    let mut c = ReplicationCore::new(n(1), cfg, recovered, KvStore::default()).unwrap();
    elect(&mut c);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.take_effects();
    c.propose(0, vec![proposal(1, "a", "1")]);
    c.propose(0, vec![proposal(2, "a", "2")]);
    let to2 = appends_to(&c.take_effects(), 2);
    assert_eq!(
        to2.iter()
            .map(|a| (a.prev_log_index.get(), a.entries.len()))
            .collect::<Vec<_>>(),
        vec![(1, 1), (2, 1)]
    );
}

/// §5.3 with the fast back-off: "the follower can include the term of the
/// conflicting entry and the first index it stores for that term. With this
/// information, the leader can decrement nextIndex to bypass all of the
/// conflicting entries in that term."
#[test]
fn leader_backs_off_a_whole_term_at_once() {
    // Leader log: [1,1,1,4,4,5,5,6,6,6] (Figure 7's leader), term 8.
    let terms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let mut c = node_with_log(1, &[1, 2, 3], 7, &terms);
    elect(&mut c);
    // The no-op (index 11) went out optimistically.
    assert_eq!(c.next_index_of(n(2)), Some(LogIndex(12)));
    // Follower (e) of Figure 7: [1,1,1,4,4,4,4] rejects prev (10, 6):
    // it has no entry 10 (its log ends at 7).
    let mut f = node_with_log(2, &[1, 2, 3], 4, &[1, 1, 1, 4, 4, 4, 4]);
    let last = c.log().last_log_id();
    f.handle_append_entries(0, n(1), ae(8, 1, (last.term.get(), 11), vec![], 0));
    let r = ae_reply(&f.take_effects());
    assert_eq!(
        (r.success, r.conflict_term, r.conflict_index),
        (false, None, LogIndex(8))
    );
    c.handle_append_entries_response(0, n(2), r);
    let effects = c.take_effects();
    // nextIndex jumps to 8 (the follower's end): one probe from prev 7.
    let probe = appends_to(&effects, 2);
    assert_eq!(probe.len(), 1, "one request at a time while probing");
    assert_eq!(probe[0].prev_log_id(), LogId::new(Term(5), LogIndex(7)));
    // The follower's term at 7 is 4, whose run starts at 4.
    f.handle_append_entries(0, n(1), probe[0].clone());
    let r = ae_reply(&f.take_effects());
    assert_eq!(
        (r.conflict_term, r.conflict_index),
        (Some(Term(4)), LogIndex(4))
    );
    c.handle_append_entries_response(0, n(2), r);
    let effects = c.take_effects();
    // The leader's last entry of term 4 is 5: next = 6, one round trip.
    let resend = appends_to(&effects, 2);
    assert_eq!(resend.len(), 1);
    assert_eq!(resend[0].prev_log_id(), LogId::new(Term(4), LogIndex(5)));
    f.handle_append_entries(0, n(1), resend[0].clone());
    let r = ae_reply(&f.take_effects());
    assert!(r.success);
    assert_eq!(
        f.log().term_at(LogIndex(6)),
        Some(Term(5)),
        "conflicting entries replaced"
    );
}

/// A rejection that answers an older request (reordered or duplicated)
/// does not move nextIndex back.
#[test]
fn stale_rejections_are_ignored() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.propose(0, (0..3).map(|i| proposal(i, "k", "v")).collect());
    c.handle_append_entries_response(0, n(2), ok(1, 4));
    c.take_effects();
    let mut stale = ok(1, 0);
    stale.success = false;
    stale.conflict_index = LogIndex(1);
    c.handle_append_entries_response(0, n(2), stale);
    c.take_effects();
    assert_eq!(c.next_index_of(n(2)), Some(LogIndex(5)));
    assert_eq!(c.match_index_of(n(2)), Some(LogIndex(4)));
}

/// A window whose answers never come (lost) is resent from the match point
/// once its oldest request is two heartbeat intervals old, even while
/// heartbeats to the same follower are answered.
#[test]
fn lost_appends_are_resent_after_two_heartbeat_intervals() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.propose(0, (0..3).map(|i| proposal(i, "k", "v")).collect());
    c.take_effects();
    assert_eq!(c.next_index_of(n(2)), Some(LogIndex(5)));
    c.tick(0);
    let effects = c.take_effects();
    assert_eq!(
        c.next_index_of(n(2)),
        Some(LogIndex(5)),
        "one interval: still waiting"
    );
    // The heartbeat (anchored at match 1) is answered; the window is not.
    let hb = appends_to(&effects, 2);
    assert_eq!(hb, vec![ae(1, 1, (1, 1), vec![], 1)]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    assert!(
        appends_to(&c.take_effects(), 2).is_empty(),
        "still probing-free window of 2, one in flight"
    );
    c.tick(0);
    let effects = c.take_effects();
    let to2 = appends_to(&effects, 2);
    assert_eq!(to2.len(), 1);
    assert_eq!(to2[0].prev_log_index, LogIndex(1));
    assert_eq!(to2[0].entries.len(), 3);
    assert_eq!(c.next_index_of(n(2)), Some(LogIndex(5)));
}

/// Heartbeats are empty AppendEntries anchored at the follower's match
/// index, carrying the commit index.
#[test]
fn heartbeat_is_anchored_at_match_index() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.take_effects();
    c.tick(0);
    let effects = c.take_effects();
    assert_eq!(appends_to(&effects, 2), vec![ae(1, 1, (1, 1), vec![], 1)]);
}

/// Figure 2, leaders: "If last log index ≥ nextIndex for a follower: send
/// AppendEntries RPC with log entries starting at nextIndex" — and when
/// nextIndex is already past the end for a follower whose log is unknown (a
/// new learner), the heartbeat itself is anchored at nextIndex - 1, so its
/// rejection starts the back-off.
#[test]
fn heartbeat_probes_a_follower_whose_log_is_unknown() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    let m = members(&[1, 2, 3]).with_learner(n(4)).unwrap();
    c.propose_membership(0, Term(1), m).unwrap();
    c.handle_append_entries_response(0, n(2), ok(1, 2));
    c.take_effects();
    assert_eq!(c.next_index_of(n(4)), Some(LogIndex(3)), "past the end");
    c.tick(0);
    let hb = appends_to(&c.take_effects(), 4);
    assert_eq!(hb, vec![ae(1, 1, (1, 2), vec![], 2)]);
    let mut learner = follower(4, &[]);
    learner.handle_append_entries(0, n(1), hb[0].clone());
    let r = ae_reply(&learner.take_effects());
    assert_eq!((r.success, r.conflict_index), (false, LogIndex(1)));
    c.handle_append_entries_response(0, n(4), r);
    let to4 = appends_to(&c.take_effects(), 4);
    assert_eq!(to4.len(), 1);
    assert_eq!(to4[0].prev_log_index, LogIndex(0));
    assert_eq!(to4[0].entries.len(), 2);
}

// ----- AppendEntries receiver ---------------------------------------------

/// Figure 2, AppendEntries receiver 1: "Reply false if term < currentTerm."
#[test]
fn append_entries_reply_false_if_term_is_stale() {
    let mut c = node_with_log(1, &[1, 2, 3], 3, &[]);
    c.handle_append_entries(
        0,
        n(2),
        ae(2, 2, (0, 0), vec![entry(2, 1, put("a", "b"))], 0),
    );
    let effects = c.take_effects();
    let r = ae_reply(&effects);
    assert_eq!((r.success, r.term), (false, Term(3)));
    assert_eq!(c.log().last_index(), LogIndex(0));
    assert_eq!(c.leader(), None);
}

/// Figure 2, AppendEntries receiver 2: "Reply false if log doesn't contain
/// an entry at prevLogIndex whose term matches prevLogTerm."
#[test]
fn append_entries_reply_false_on_missing_or_mismatching_prev() {
    let mut c = node_with_log(1, &[1, 2, 3], 2, &[1, 1, 2]);
    c.handle_append_entries(0, n(2), ae(3, 2, (3, 5), vec![], 0));
    let r = ae_reply(&c.take_effects());
    assert_eq!(
        (r.success, r.match_index, r.conflict_term, r.conflict_index),
        (false, LogIndex(5), None, LogIndex(4))
    );
    c.handle_append_entries(0, n(2), ae(3, 2, (3, 3), vec![], 0));
    let r = ae_reply(&c.take_effects());
    assert_eq!(
        (r.success, r.conflict_term, r.conflict_index),
        (false, Some(Term(2)), LogIndex(3))
    );
    assert_eq!(
        c.log().last_index(),
        LogIndex(3),
        "nothing deleted on a rejection"
    );
}

/// Figure 2, AppendEntries receiver 3: "If an existing entry conflicts with
/// a new one (same index but different terms), delete the existing entry and
/// all that follow it"; 4: "Append any new entries not already in the log."
#[test]
fn append_entries_truncates_conflicts_and_appends() {
    let mut c = node_with_log(1, &[1, 2, 3], 2, &[1, 2, 2, 2]);
    let new = vec![
        entry(3, 3, put("x", "1")),
        entry(3, 4, put("y", "2")),
        entry(3, 5, put("z", "3")),
    ];
    c.handle_append_entries(0, n(2), ae(3, 2, (2, 2), new.clone(), 0));
    let effects = c.take_effects();
    let durable: Vec<_> = effects
        .iter()
        .filter(|e| matches!(e, Effect::TruncateLog(_) | Effect::AppendLog(_)))
        .cloned()
        .collect();
    assert_eq!(
        durable,
        vec![Effect::TruncateLog(LogIndex(3)), Effect::AppendLog(new)]
    );
    let r = ae_reply(&effects);
    assert_eq!((r.success, r.match_index), (true, LogIndex(5)));
    // The reply comes after the durable effects.
    let reply_pos = effects
        .iter()
        .position(|e| matches!(e, Effect::Send { .. }))
        .unwrap();
    let append_pos = effects
        .iter()
        .position(|e| matches!(e, Effect::AppendLog(_)))
        .unwrap();
    assert!(append_pos < reply_pos);
    assert_eq!(c.log().last_log_id(), LogId::new(Term(3), LogIndex(5)));
}

/// Figure 2, AppendEntries receiver 4: entries already in the log are not
/// appended again, and a stale (shorter) request does not truncate the
/// entries after it.
#[test]
fn append_entries_is_idempotent_and_never_truncates_on_a_stale_request() {
    let mut c = follower(1, &[1, 2, 3]);
    let e1 = entry(1, 1, put("a", "1"));
    let e2 = entry(1, 2, put("b", "2"));
    c.handle_append_entries(0, n(2), ae(1, 2, (0, 0), vec![e1.clone(), e2.clone()], 0));
    c.take_effects();
    c.handle_append_entries(0, n(2), ae(1, 2, (0, 0), vec![e1], 0));
    let effects = c.take_effects();
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::TruncateLog(_) | Effect::AppendLog(_))));
    let r = ae_reply(&effects);
    assert_eq!((r.success, r.match_index), (true, LogIndex(1)));
    assert_eq!(c.log().last_index(), LogIndex(2));
}

/// Figure 2, AppendEntries receiver 5: "If leaderCommit > commitIndex, set
/// commitIndex = min(leaderCommit, index of last new entry)"; all servers:
/// apply in order.
#[test]
fn append_entries_commit_is_bounded_by_last_new_entry() {
    let mut c = follower(1, &[1, 2, 3]);
    let es = vec![entry(1, 1, put("a", "1")), entry(1, 2, put("a", "2"))];
    c.handle_append_entries(0, n(2), ae(1, 2, (0, 0), es, 9));
    c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(2));
    assert_eq!(c.state_machine().get("a"), Some("2"));
    // A heartbeat anchored at 1 cannot commit beyond 1 even if the leader's
    // commit index is higher: entries after 1 might not match.
    let mut d = node_with_log(1, &[1, 2, 3], 1, &[1, 1, 1]);
    d.handle_append_entries(0, n(2), ae(1, 2, (1, 1), vec![], 3));
    d.take_effects();
    assert_eq!(d.commit_index(), LogIndex(1));
}

// ----- ReadIndex ---------------------------------------------------------

/// Thesis §6.4: a read is served only after (1) the leader committed an
/// entry of its term, (2) a quorum acknowledged a heartbeat sent after the
/// read arrived, (3) the state machine applied the read index.
#[test]
fn read_index_waits_for_confirmation_and_apply() {
    let mut c = leader(1, &[1, 2, 3]);
    c.read_index(vec![ReadId(1)]);
    let effects = c.take_effects();
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::ReadReady { .. })));
    let hb = appends_to(&effects, 2);
    assert_eq!(hb.len(), 1);
    assert_eq!(hb[0].round, 1);
    // An acknowledgement of an older round does not confirm.
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    let effects = c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(1));
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::ReadReady { .. })));
    let mut r = ok(1, 1);
    r.round = 1;
    c.handle_append_entries_response(0, n(3), r);
    let effects = c.take_effects();
    assert!(effects.contains(&Effect::ReadReady { id: ReadId(1) }));
}

/// A read at a follower, or pending when leadership is lost, fails with
/// NotLeader.
#[test]
fn reads_fail_without_leadership() {
    let mut f = follower(1, &[1, 2, 3]);
    f.read_index(vec![ReadId(4)]);
    assert_eq!(
        f.take_effects(),
        vec![Effect::ReadFailed {
            id: ReadId(4),
            error: ProposeError::NotLeader { leader: None }
        }]
    );
    let mut c = leader(1, &[1, 2, 3]);
    c.read_index(vec![ReadId(5)]);
    c.take_effects();
    c.handle_request_vote(0, n(2), {
        let mut r = rv(9, 2, (9, 9));
        r.leadership_transfer = true;
        r
    });
    let effects = c.take_effects();
    assert!(effects.contains(&Effect::ReadFailed {
        id: ReadId(5),
        error: ProposeError::NotLeader { leader: None }
    }));
}

/// A single-node cluster commits and reads without any message.
#[test]
fn single_node_commits_alone() {
    let mut c = leader(1, &[1]);
    assert_eq!(c.commit_index(), LogIndex(1));
    c.propose(0, vec![proposal(1, "a", "1")]);
    let effects = c.take_effects();
    assert_eq!(results(&effects), vec![(ProposalId(1), Ok(KvOutput::Ok))]);
    assert!(sends(&effects).is_empty());
    c.read_index(vec![ReadId(1)]);
    assert!(c
        .take_effects()
        .contains(&Effect::ReadReady { id: ReadId(1) }));
}

// ----- Leadership transfer ----------------------------------------------

/// Thesis §3.10: "the prior leader ... stops accepting client requests",
/// brings the target up to date, then "sends it a TimeoutNow request".
#[test]
fn transfer_sends_timeout_now_once_target_is_up_to_date() {
    let mut c = leader(1, &[1, 2, 3]);
    c.transfer_leadership(Term(1), n(2)).unwrap();
    let effects = c.take_effects();
    assert!(!sends(&effects)
        .iter()
        .any(|(_, m)| matches!(m, RaftMessage::TimeoutNow(_))));
    c.propose(0, vec![proposal(1, "a", "b")]);
    assert_eq!(
        results(&c.take_effects()),
        vec![(ProposalId(1), Err(ProposeError::TransferInProgress))]
    );
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    let effects = c.take_effects();
    assert!(
        sends(&effects).contains(&(n(2), RaftMessage::TimeoutNow(TimeoutNow { term: Term(1) })))
    );
    assert_eq!(
        c.transfer_leadership(Term(1), n(1)),
        Err(Refusal::BadTransferTarget(n(1)))
    );
    c.abort_transfer(Term(1)).unwrap();
    c.propose(0, vec![proposal(2, "a", "b")]);
    assert!(results(&c.take_effects()).is_empty(), "accepted again");
}

// ----- Membership (§6) ---------------------------------------------------

/// §6: "a server always uses the latest configuration in its log, regardless
/// of whether the entry is committed"; and when the entry is removed by a
/// conflicting leader the previous configuration is back in effect.
#[test]
fn configuration_takes_effect_when_appended_and_reverts_on_truncation() {
    let mut c = node_with_log(1, &[1, 2, 3], 1, &[1]);
    let joint = members(&[1, 2, 3])
        .to_joint([1, 2, 3, 4].map(NodeId).into())
        .unwrap();
    let cfg_entry = entry(1, 2, RaftCommand::ConfigChange(joint.clone()));
    c.handle_append_entries(0, n(2), ae(1, 2, (1, 1), vec![cfg_entry], 1));
    let effects = c.take_effects();
    assert_eq!(c.membership(), &joint);
    assert_eq!(c.committed_config().1, &members(&[1, 2, 3]));
    assert!(events(&effects).iter().any(|e| matches!(e,
        RaftEvent::MembershipChanged { effective, .. } if effective == &joint)));
    // A new leader of term 2 overwrites index 2.
    c.handle_append_entries(
        0,
        n(3),
        ae(2, 3, (1, 1), vec![entry(2, 2, RaftCommand::Noop)], 1),
    );
    c.take_effects();
    assert_eq!(c.membership(), &members(&[1, 2, 3]));
}

/// §6: "Agreement (for elections and entry commitment) requires separate
/// majorities from both the old and new configurations."
#[test]
fn joint_commit_needs_both_majorities() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.take_effects();
    let joint = members(&[1, 2, 3])
        .to_joint([1, 4, 5].map(NodeId).into())
        .unwrap();
    let id = c.propose_membership(0, Term(1), joint).unwrap();
    assert_eq!(id, LogId::new(Term(1), LogIndex(2)));
    c.take_effects();
    // Old majority {1,2} has index 2, new set {1,4,5} only has the leader.
    c.handle_append_entries_response(0, n(2), ok(1, 2));
    c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(1));
    c.handle_append_entries_response(0, n(4), ok(1, 2));
    c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(2));
    assert!(c.committed_config().1.is_joint());
}

/// One change at a time (thesis §4.1): a second configuration entry is
/// refused while one is uncommitted, and before the leader committed an
/// entry of its term.
#[test]
fn one_configuration_change_at_a_time() {
    let mut c = leader(1, &[1, 2, 3]);
    let m = members(&[1, 2, 3]).with_learner(n(4)).unwrap();
    assert_eq!(
        c.propose_membership(0, Term(1), m.clone()),
        Err(Refusal::LeaderNotReady)
    );
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.propose_membership(0, Term(1), m.clone()).unwrap();
    assert_eq!(
        c.propose_membership(0, Term(1), m.clone()),
        Err(Refusal::ConfigChangePending)
    );
    assert_eq!(
        c.propose_membership(0, Term(0), m),
        Err(Refusal::StaleTerm {
            expected: Term(0),
            current: Term(1)
        })
    );
    // The learner is replicated to as soon as the entry is appended.
    assert!(c.next_index_of(n(4)).is_some());
}

/// §6: a leader that is not part of C_new still manages the cluster but
/// does not count itself in majorities.
#[test]
fn leader_outside_the_new_configuration_does_not_count_itself() {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.take_effects();
    let new_voters: BTreeSet<NodeId> = [2, 3].map(NodeId).into();
    let joint = members(&[1, 2, 3]).to_joint(new_voters).unwrap();
    c.propose_membership(0, Term(1), joint.clone()).unwrap();
    c.handle_append_entries_response(0, n(2), ok(1, 2));
    c.handle_append_entries_response(0, n(3), ok(1, 2));
    c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(2));
    c.propose_membership(0, Term(1), joint.leave_joint().unwrap())
        .unwrap();
    c.handle_append_entries_response(0, n(2), ok(1, 3));
    c.take_effects();
    assert_eq!(
        c.commit_index(),
        LogIndex(2),
        "n1 + n2 is not a majority of {{2,3}}"
    );
    c.handle_append_entries_response(0, n(3), ok(1, 3));
    c.take_effects();
    assert_eq!(c.commit_index(), LogIndex(3));
}

// ----- Snapshots (§7) -----------------------------------------------------

fn leader_with_entries(count: u64) -> Core {
    let mut c = leader(1, &[1, 2, 3]);
    c.handle_append_entries_response(0, n(2), ok(1, 1));
    c.propose(
        0,
        (0..count)
            .map(|i| proposal(i, &format!("k{i}"), "v"))
            .collect(),
    );
    // Let n2 catch up in steps.
    for m in 2..=count + 1 {
        c.handle_append_entries_response(0, n(2), ok(1, m));
    }
    c.take_effects();
    c
}

/// §7: "each server takes snapshots independently, covering just the
/// committed entries", and then discards the log up to it.
#[test]
fn compaction_snapshots_applied_state_and_purges() {
    let mut c = leader_with_entries(6);
    assert_eq!(c.last_applied(), LogIndex(7));
    let meta = c.compact(2).unwrap();
    assert_eq!(meta.last_included, LogId::new(Term(1), LogIndex(7)));
    assert_eq!(meta.membership, members(&[1, 2, 3]));
    let effects = c.take_effects();
    assert!(matches!(&effects[0], Effect::SaveSnapshot(s) if s.meta == meta));
    assert_eq!(effects[1], Effect::PurgeLog(LogIndex(5)));
    assert_eq!(c.log().first_index(), LogIndex(6));
    assert_eq!(c.compact(0), Err(Refusal::NothingToCompact(LogIndex(7))));
}

/// §7: "the leader must occasionally send snapshots to followers that lag
/// behind": a follower whose next entry is purged gets the snapshot.
#[test]
fn follower_behind_the_purge_point_needs_the_snapshot() {
    let mut c = leader_with_entries(6);
    c.compact(0).unwrap();
    c.take_effects();
    // n3 never answered: its next index (1) is purged.
    c.tick(0);
    let effects = c.take_effects();
    let needed: Vec<_> = events(&effects)
        .into_iter()
        .filter_map(|e| match e {
            RaftEvent::SnapshotNeeded { peer, snapshot, .. } => {
                Some((peer, snapshot.meta.last_included))
            }
            _ => None,
        })
        .collect();
    assert_eq!(needed, vec![(n(3), LogId::new(Term(1), LogIndex(7)))]);
    assert!(appends_to(&effects, 3).is_empty());
    c.snapshot_sent(Term(1), n(3), LogId::new(Term(1), LogIndex(7)))
        .unwrap();
    assert_eq!(c.match_index_of(n(3)), Some(LogIndex(7)));
}

/// §7, InstallSnapshot receiver: "If existing log entry has same index and
/// term as snapshot's last included entry, retain log entries following it";
/// otherwise "discard the entire log" and "reset state machine using
/// snapshot contents".
#[test]
fn install_snapshot_keeps_a_matching_suffix_or_discards_the_log() {
    let mut src = KvStore::default();
    src.apply(&KvCommand::put("s", "1"));
    let snap = |term, index| Snapshot {
        meta: SnapshotMeta {
            last_included: LogId::new(Term(term), LogIndex(index)),
            membership: members(&[1, 2, 3]),
        },
        data: Arc::new(src.snapshot()),
    };
    // Matching: log [1,1,1,1], snapshot at (1,2) keeps 3..4.
    let mut c = node_with_log(2, &[1, 2, 3], 1, &[1, 1, 1, 1]);
    c.install_snapshot(0, Term(1), n(1), snap(1, 2)).unwrap();
    let effects = c.take_effects();
    assert_eq!(c.log().first_index(), LogIndex(3));
    assert_eq!(c.log().last_index(), LogIndex(4));
    assert_eq!(
        (c.commit_index(), c.last_applied()),
        (LogIndex(2), LogIndex(2))
    );
    assert_eq!(c.state_machine().get("s"), Some("1"));
    assert!(sends(&effects).iter().any(
        |(to, m)| *to == n(1) && matches!(m, RaftMessage::InstallSnapshotResponse(r) if r.done)
    ));
    // Not matching: log [1,1], snapshot at (2,5) replaces everything.
    let mut c = node_with_log(2, &[1, 2, 3], 2, &[1, 1]);
    c.install_snapshot(0, Term(2), n(1), snap(2, 5)).unwrap();
    let effects = c.take_effects();
    let durable: Vec<_> = effects
        .iter()
        .filter(|e| !matches!(e, Effect::Send { .. }) && e.as_event().is_none())
        .cloned()
        .collect();
    assert!(matches!(durable[0], Effect::SaveSnapshot(_)));
    assert_eq!(
        durable[1..],
        [Effect::DiscardLog, Effect::PurgeLog(LogIndex(5))]
    );
    assert_eq!(c.log().last_log_id(), LogId::new(Term(2), LogIndex(5)));
    // A stale snapshot is refused.
    assert!(c.install_snapshot(0, Term(1), n(1), snap(1, 9)).is_err());
}

/// A restarted node recovers from snapshot plus log.
#[test]
fn recovery_from_snapshot_and_log() {
    let mut c = leader_with_entries(6);
    c.compact(3).unwrap();
    let effects = c.take_effects();
    let snapshot = effects
        .iter()
        .find_map(|e| match e {
            Effect::SaveSnapshot(s) => Some((**s).clone()),
            _ => None,
        })
        .unwrap();
    let entries: Vec<_> = c.log().iter_from(LogIndex(1)).cloned().collect();
    assert_eq!(entries[0].index, LogIndex(5));
    let recovered = Recovered {
        hard_state: c.hard_state(),
        snapshot: Some(snapshot),
        entries,
        initial_membership: Membership::empty(),
    };
    let r = ReplicationCore::new(n(1), cfg(), recovered, KvStore::default()).unwrap();
    assert_eq!(r.role(), NodeState::Follower);
    assert_eq!(r.term(), Term(1));
    assert_eq!(r.last_applied(), LogIndex(7));
    assert_eq!(r.log().last_index(), LogIndex(7));
    assert_eq!(
        r.log().first_index(),
        LogIndex(8),
        "entries under the snapshot are dropped"
    );
    assert_eq!(r.state_machine().get("k5"), Some("v"));
    assert_eq!(r.membership(), &members(&[1, 2, 3]));
}

/// Recovery refuses a log with a gap or a term behind the log.
#[test]
fn recovery_rejects_corrupt_state() {
    let gap = Recovered {
        hard_state: HardState {
            term: Term(1),
            voted_for: None,
        },
        snapshot: None,
        entries: vec![
            entry(1, 1, RaftCommand::Noop),
            entry(1, 3, RaftCommand::Noop),
        ],
        initial_membership: members(&[1]),
    };
    assert_eq!(
        ReplicationCore::new(n(1), cfg(), gap, KvStore::default()).err(),
        Some(RecoveryError::Gap {
            expected: LogIndex(2),
            found: LogIndex(3)
        })
    );
    let behind = Recovered {
        hard_state: HardState::default(),
        snapshot: None,
        entries: vec![entry(2, 1, RaftCommand::Noop)],
        initial_membership: members(&[1]),
    };
    assert!(matches!(
        ReplicationCore::new(n(1), cfg(), behind, KvStore::default()),
        Err(RecoveryError::TermBehindLog { .. })
    ));
}

/// An entry proposed by a leader and overwritten by the next leader is
/// reported Dropped once the index is applied with the other entry.
#[test]
fn overwritten_proposal_is_reported_dropped() {
    let mut c = leader(1, &[1, 2, 3]);
    c.propose(0, vec![proposal(7, "a", "1")]);
    c.take_effects();
    // Leader of term 2 overwrites index 2 and commits it.
    c.handle_append_entries(
        0,
        n(2),
        ae(2, 2, (1, 1), vec![entry(2, 2, RaftCommand::Noop)], 2),
    );
    let effects = c.take_effects();
    assert_eq!(
        results(&effects),
        vec![(ProposalId(7), Err(ProposeError::Dropped))]
    );
}

/// The committed entries are reported in order when observation is on (for
/// the SafetyVerifier).
#[test]
fn committed_entries_are_observed() {
    let mut c = leader(1, &[1, 2, 3]);
    c.set_observe_commits(true);
    c.propose(0, vec![proposal(1, "a", "1")]);
    c.take_effects();
    c.handle_append_entries_response(0, n(2), ok(1, 2));
    let effects = c.take_effects();
    let committed: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Committed(es) => Some(es.iter().map(|e| e.index.get()).collect::<Vec<_>>()),
            _ => None,
        })
        .collect();
    assert_eq!(committed, vec![vec![1, 2]]);
}

/// The frequent events get unboxed variants of their own, every other
/// event is boxed, and `as_event` gives back the event either way.
#[test]
fn effect_event_picks_the_variant_and_round_trips() {
    let progress = LogProgress {
        term: Term(3),
        commit_index: LogIndex(4),
        last_applied: LogIndex(4),
        last_log_index: LogIndex(6),
        snapshot_index: LogIndex(1),
    };
    let heard = RaftEvent::HeardFromLeader {
        term: Term(3),
        leader: n(2),
    };
    let role = RaftEvent::RoleChanged {
        term: Term(3),
        role: NodeState::Follower,
        leader: Some(n(2)),
    };
    assert_eq!(
        Eff::event(RaftEvent::Progress(progress)),
        Effect::Progress(progress)
    );
    assert_eq!(
        Eff::event(heard.clone()),
        Effect::HeardFromLeader {
            term: Term(3),
            leader: n(2)
        }
    );
    assert_eq!(
        Eff::event(role.clone()),
        Effect::Event(Box::new(role.clone()))
    );
    for e in [RaftEvent::Progress(progress), heard, role] {
        assert_eq!(Eff::event(e.clone()).as_event(), Some(e));
    }
    assert_eq!(Eff::TruncateLog(LogIndex(2)).as_event(), None);
}

/// Every input ends with the post-step check (openraft's `Validate`): with
/// the owner's state corrupted (configurations out of order), each input,
/// accepted or refused, must stop on the invariant check. Before the single
/// step entry, `abort_transfer` and every early refusal skipped the check.
#[test]
fn every_input_runs_the_invariant_check() {
    type Drive = fn(&mut Core, Term);
    let inputs: Vec<(&str, Drive)> = vec![
        ("Tick", |c, _| c.tick(0)),
        ("RequestVote", |c, t| {
            c.handle_request_vote(0, n(2), rv(t.get(), 2, (0, 0)))
        }),
        ("AppendEntries", |c, _| {
            c.handle_append_entries(0, n(2), ae(0, 2, (0, 0), vec![], 0))
        }),
        ("AppendEntriesResponse", |c, t| {
            c.handle_append_entries_response(0, n(2), ok(t.get(), 0))
        }),
        ("Propose", |c, _| c.propose(0, vec![proposal(1, "k", "v")])),
        ("ReadIndex", |c, _| c.read_index(vec![ReadId(1)])),
        ("BeginElection", |c, t| {
            let _ = c.begin_election(t, false, false);
        }),
        ("BecomeLeader", |c, t| {
            let _ = c.become_leader(0, t);
        }),
        ("TransferLeadership", |c, t| {
            let _ = c.transfer_leadership(t, n(9));
        }),
        ("AbortTransfer", |c, t| {
            let _ = c.abort_transfer(t);
        }),
        ("ProposeMembership", |c, t| {
            let _ = c.propose_membership(0, t, members(&[1, 2, 3]));
        }),
        ("Compact", |c, _| {
            let _ = c.compact(0);
        }),
        ("InstallSnapshot", |c, _| {
            let snapshot = Snapshot {
                meta: SnapshotMeta::default(),
                data: Arc::new(Vec::new()),
            };
            let _ = c.install_snapshot(0, Term(0), n(2), snapshot);
        }),
        ("SnapshotSent", |c, t| {
            let _ = c.snapshot_sent(t, n(2), LogId::default());
        }),
    ];
    let mut unchecked = Vec::new();
    for (name, drive) in inputs {
        let mut c = leader(1, &[1, 2, 3]);
        let t = c.term();
        let base = c.configs[0].clone();
        c.configs.push(base);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(&mut c, t)));
        match r {
            Err(e) => {
                let msg = e
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| e.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                assert!(msg.contains("configurations out of order"), "{name}: {msg}");
            }
            Ok(()) => unchecked.push(name),
        }
    }
    assert!(
        unchecked.is_empty(),
        "inputs that skipped the invariant check: {unchecked:?}"
    );
}
