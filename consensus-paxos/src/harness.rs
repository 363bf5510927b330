//! A cluster of pure cores (no actors, no clock): messages in a seeded
//! random order, local effects applied at once. Unit tests of the cores'
//! composition (dueling proposers, leader recovery) run on it.

use crate::acceptor::{AcceptorCore, AcceptorEffect, AcceptorInput};
use crate::config::PaxosConfig;
use crate::election::{ElectionCore, ElectionEffect, ElectionInput};
use crate::learner::{LearnerCore, LearnerEffect, LearnerInput};
use crate::messages::PaxosMessage;
use crate::proposer::{ProposerCore, ProposerEffect, ProposerInput};
use crate::safety::{self, PaxosEvent, SafetyChecker};
use crate::types::{BatchId, Request};
use consensus_actors::kv::KvOutput;
use consensus_actors::types::{LogId, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub(crate) struct CoreNode {
    pub acceptor: AcceptorCore,
    pub proposer: ProposerCore,
    pub learner: LearnerCore,
    pub election: ElectionCore,
    /// Tokens of a batch, until its answer.
    pub tracked: BTreeMap<BatchId, Vec<u64>>,
    /// Answers: token → (output, position).
    pub answers: BTreeMap<u64, (KvOutput, LogId)>,
    pub failed: BTreeSet<u64>,
}

pub(crate) struct Cluster {
    pub cfg: PaxosConfig,
    pub nodes: BTreeMap<NodeId, CoreNode>,
    pub queue: VecDeque<(NodeId, NodeId, PaxosMessage)>,
    pub rng: ChaCha8Rng,
    pub now_us: u64,
    /// Nodes cut off from everyone.
    pub cut: BTreeSet<NodeId>,
    pub checker: SafetyChecker,
    next_token: u64,
}

impl Cluster {
    pub fn new(cfg: PaxosConfig, seed: u64) -> Self {
        let members: Vec<NodeId> = (1..=cfg.nodes as u64).map(NodeId).collect();
        let nodes = members
            .iter()
            .map(|&id| {
                (
                    id,
                    CoreNode {
                        acceptor: AcceptorCore::new(id),
                        proposer: ProposerCore::new(id, cfg.clone(), members.clone(), seed ^ id.0),
                        learner: LearnerCore::new(id, &cfg, members.clone()),
                        election: ElectionCore::new(id, members.clone(), cfg.majority()),
                        tracked: BTreeMap::new(),
                        answers: BTreeMap::new(),
                        failed: BTreeSet::new(),
                    },
                )
            })
            .collect();
        Self {
            checker: safety::checker_with_acceptors(cfg.nodes),
            cfg,
            nodes,
            queue: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            now_us: 0,
            cut: BTreeSet::new(),
            next_token: 0,
        }
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    fn report(&mut self, ev: PaxosEvent) {
        self.checker.observe(self.now_us, &ev.into());
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: PaxosMessage) {
        if (self.cut.contains(&from) || self.cut.contains(&to)) && from != to {
            return;
        }
        self.queue.push_back((from, to, msg));
    }

    /// Submits a command at `node`; returns its token.
    pub fn submit(&mut self, node: NodeId, request: Request) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.proposer(node, ProposerInput::Submit { token, request });
        token
    }

    pub fn proposer(&mut self, node: NodeId, input: ProposerInput) {
        let mut out = Vec::new();
        let now = self.now_us;
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        n.proposer.step(now, input, &mut out);
        for e in out {
            match e {
                ProposerEffect::Broadcast(msg) => {
                    for to in self.ids() {
                        self.send(node, to, msg.clone());
                    }
                }
                ProposerEffect::Send { to, msg } => self.send(node, to, msg),
                ProposerEffect::Proposed {
                    slot,
                    ballot,
                    value,
                } => {
                    self.learner(
                        node,
                        LearnerInput::Proposed {
                            slot,
                            ballot,
                            value,
                        },
                    );
                }
                ProposerEffect::Track { batch, tokens } => {
                    self.nodes
                        .get_mut(&node)
                        .unwrap()
                        .tracked
                        .insert(batch, tokens);
                }
                ProposerEffect::Abandon { batches, .. } => {
                    let n = self.nodes.get_mut(&node).unwrap();
                    for b in batches {
                        if let Some(ts) = n.tracked.remove(&b) {
                            n.failed.extend(ts);
                        }
                    }
                }
                ProposerEffect::Fail { tokens, .. } => {
                    self.nodes.get_mut(&node).unwrap().failed.extend(tokens);
                }
                ProposerEffect::BallotTooLow { promised } => {
                    self.election(node, ElectionInput::BallotTooLow { promised });
                }
                ProposerEffect::BecameLeader { .. }
                | ProposerEffect::SteppedDown
                | ProposerEffect::PersistBallot(_) => {}
            }
        }
    }

    pub fn learner(&mut self, node: NodeId, input: LearnerInput) {
        let mut out = Vec::new();
        let now = self.now_us;
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        n.learner.step(now, input, &mut out);
        for e in out {
            match e {
                LearnerEffect::Send { to, msg } => self.send(node, to, msg),
                LearnerEffect::Persist(_) => {}
                LearnerEffect::Decided {
                    slot,
                    batch,
                    next_undelivered,
                    commit,
                } => {
                    self.proposer(
                        node,
                        ProposerInput::Decided {
                            slot,
                            batch,
                            next_undelivered,
                            commit,
                        },
                    );
                }
                LearnerEffect::Answer {
                    batch,
                    outputs,
                    log_id,
                } => {
                    let n = self.nodes.get_mut(&node).unwrap();
                    if let Some(ts) = n.tracked.remove(&batch) {
                        for (t, o) in ts.into_iter().zip(outputs) {
                            n.answers.insert(t, (o, log_id));
                        }
                    }
                }
                LearnerEffect::Skipped { batch } => {
                    let n = self.nodes.get_mut(&node).unwrap();
                    if let Some(ts) = n.tracked.remove(&batch) {
                        n.failed.extend(ts);
                    }
                }
                LearnerEffect::Report(r) => self.report(r.event()),
                LearnerEffect::Acked { acceptors } => {
                    self.proposer(node, ProposerInput::Acked { acceptors });
                }
                LearnerEffect::Leading { ballot } => {
                    self.proposer(node, ProposerInput::Leading { ballot });
                }
                LearnerEffect::Configured(configs) => {
                    let members = configs.latest().1.to_vec();
                    self.proposer(node, ProposerInput::Configured { configs });
                    self.election(node, ElectionInput::Members(members));
                }
                LearnerEffect::Snapshot(s) | LearnerEffect::Installed(s) => {
                    self.acceptor(node, AcceptorInput::Compact { through: s.slot });
                }
            }
        }
    }

    pub fn election(&mut self, node: NodeId, input: ElectionInput) {
        let mut out = Vec::new();
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        n.election.step(input, &mut out);
        for e in out {
            match e {
                ElectionEffect::Send { to, msg } => self.send(node, to, msg),
                ElectionEffect::Leader(leader) => {
                    self.proposer(node, ProposerInput::Leader { leader });
                }
            }
        }
    }

    fn acceptor(&mut self, node: NodeId, input: AcceptorInput) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        n.acceptor.step(input);
        for e in n.acceptor.take_effects() {
            match e {
                AcceptorEffect::Send { to, msg } => self.send(node, to, msg),
                AcceptorEffect::Report(r) => self.report(r.event()),
                AcceptorEffect::PersistPromise(_)
                | AcceptorEffect::PersistAccepted(_)
                | AcceptorEffect::Purge { .. } => {}
            }
        }
    }

    /// Delivers one queued message (a random one); false when none is left.
    pub fn deliver_one(&mut self) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let i = self.rng.random_range(0..self.queue.len());
        let Some((from, to, msg)) = self.queue.remove(i) else {
            return false;
        };
        if (self.cut.contains(&from) || self.cut.contains(&to)) && from != to {
            return true;
        }
        use PaxosMessage as M;
        match msg {
            M::Prepare(msg) => self.acceptor(to, AcceptorInput::Prepare { from, msg }),
            M::Accept(msg) => {
                if from != to {
                    self.learner(to, LearnerInput::Accept(msg.clone()));
                }
                self.acceptor(to, AcceptorInput::Accept { from, msg })
            }
            M::LazyAccepts(msg) => {
                if from != to {
                    self.learner(to, LearnerInput::Accepts(msg.accepts.clone()));
                }
                self.acceptor(to, AcceptorInput::LazyAccepts { from, msg })
            }
            M::Promise(msg) => self.proposer(to, ProposerInput::Promise { from, msg }),
            M::Nack(msg) => self.proposer(to, ProposerInput::Nack { from, msg }),
            M::Accepted(msg) => self.learner(to, LearnerInput::Accepted { from, msg }),
            M::LazyAccepted(msg) => self.learner(to, LearnerInput::LazyAccepted { from, msg }),
            M::Chosen(c) => self.learner(to, LearnerInput::Chosen(c)),
            M::Commit(c) => self.learner(to, LearnerInput::Commit(c)),
            M::CatchUp(msg) => self.learner(to, LearnerInput::CatchUp { from, msg }),
            M::CatchUpReply(r) => self.learner(to, LearnerInput::CatchUpReply(r)),
            M::InstallSnapshot(m) => self.learner(to, LearnerInput::InstallSnapshot(m)),
            M::HeartbeatRequest(msg) => self.election(to, ElectionInput::Request { from, msg }),
            M::HeartbeatReply(msg) => self.election(to, ElectionInput::Reply { from, msg }),
        }
        true
    }

    /// Advances time by `ms` in 1 ms steps: ticks every component (the
    /// election every heartbeat) and delivers what is queued.
    pub fn run_ms(&mut self, ms: u64, election: bool) {
        for _ in 0..ms {
            self.now_us += 1000;
            for id in self.ids() {
                if self.cut.contains(&id) {
                    continue;
                }
                self.proposer(id, ProposerInput::Tick);
                self.learner(id, LearnerInput::Tick);
                if election && (self.now_us / 1000).is_multiple_of(self.cfg.heartbeat_ms) {
                    self.election(id, ElectionInput::RoundEnd);
                }
            }
            for _ in 0..10_000 {
                if !self.deliver_one() {
                    break;
                }
            }
        }
    }
}
