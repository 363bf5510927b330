//! The Proposer actor: runs the [`ProposerCore`] on a timer, keeps the
//! clients' answers until their batch is first proposed (then hands them
//! to the Learner with the [`Proposed`], and the Learner answers on
//! delivery) and carries out the core's effects in order. Client commands
//! arrive through the node's [`SubmissionQueue`] (one [`DrainSubmissions`]
//! per batch of them) or one [`Submit`] each.

use super::core::{ProposerCore, ProposerEffect, ProposerInput, Role};
use crate::config::PaxosConfig;
use crate::messages::{PaxosMessage, PaxosMessage as M};
use crate::safety::PaxosEvent;
use crate::types::{Ballot, BatchId, Configurations, Request};
use crate::wiring::{
    micros_since, Abandon, BallotTooLow, ClientReply, Configured, Decided, DrainSubmissions,
    FeedReady, InjectPanic, LeaderChange, LearnerNews, LocalFeed, LocalRecipient, PeerMessage,
    Proposed, Reconfigure, SubmissionQueue, Submit,
};
use actix::prelude::*;
use consensus_actors::safety::{SafetyEvent, SafetySink};
use consensus_actors::sim::TraceHandle;
use consensus_actors::storage::Storage;
use consensus_actors::supervision::FailNode;
use consensus_actors::transport::Transport;
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Where the Proposer's messages to the rest of its node go.
#[derive(Clone)]
pub struct ProposerOutputs {
    /// The Learner: what was proposed (with the answers of a new batch),
    /// queued before the Accept is sent.
    pub proposed: LocalFeed<Proposed>,
    /// The Learner: batches given up.
    pub abandon: LocalRecipient<Abandon>,
    /// The ballot leader election: a refused ballot.
    pub ballot_too_low: LocalRecipient<BallotTooLow>,
}

/// The Proposer's state as the client API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, MessageResponse)]
pub struct ProposerStatus {
    /// Where it is.
    pub role: Role,
    /// The current phase's ballot.
    pub ballot: Option<Ballot>,
    /// The leader it knows of (Multi-Paxos).
    pub leader: Option<NodeId>,
    /// Whether it leads (Multi-Paxos).
    pub is_leader: bool,
}

/// Asks the Proposer for its [`ProposerStatus`].
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "ProposerStatus")]
pub struct GetProposerStatus;

/// What the Proposer stores: the highest ballot it used (hard state).
pub trait ProposerStorage: Storage<Ballot, ()> + Unpin {}

impl<T: Storage<Ballot, ()> + Unpin> ProposerStorage for T {}

/// The Proposer component. See the [module documentation](self).
pub struct Proposer<S: ProposerStorage> {
    storage: S,
    fail: Option<Recipient<FailNode>>,
    failed: bool,
    id: NodeId,
    cfg: PaxosConfig,
    members: Vec<NodeId>,
    /// The latest configurations the Learner sent (kept across restarts
    /// of this actor).
    configs: Configurations,
    seed: u64,
    incarnation: u64,
    epoch: Instant,
    transport: Transport<PaxosMessage>,
    outputs: ProposerOutputs,
    safety: SafetySink<PaxosEvent>,
    trace: Option<TraceHandle>,
    core: ProposerCore,
    replies: BTreeMap<u64, ClientReply>,
    /// The answers of batches formed and not yet proposed (sent with their
    /// first [`Proposed`]).
    batched: BTreeMap<BatchId, Vec<ClientReply>>,
    next_token: u64,
    effects: Vec<ProposerEffect>,
    submissions: Arc<SubmissionQueue>,
    drained: Vec<Submit>,
    /// The Learner's decisions and configurations, when this Proposer
    /// takes them itself.
    news: Option<LocalFeed<LearnerNews>>,
    news_taken: Vec<LearnerNews>,
}

impl<S: ProposerStorage> Proposer<S> {
    /// The Proposer of node `id`, recording its ballots in `storage`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        storage: S,
        fail: Option<Recipient<FailNode>>,
        id: NodeId,
        cfg: PaxosConfig,
        members: Vec<NodeId>,
        seed: u64,
        epoch: Instant,
        transport: Transport<PaxosMessage>,
        outputs: ProposerOutputs,
        safety: SafetySink<PaxosEvent>,
    ) -> Self {
        Self {
            storage,
            fail,
            failed: false,
            core: ProposerCore::new(id, cfg.clone(), members.clone(), seed),
            id,
            cfg,
            configs: Configurations::initial(&members),
            members,
            seed,
            incarnation: 0,
            epoch,
            transport,
            outputs,
            safety,
            trace: None,
            replies: BTreeMap::new(),
            batched: BTreeMap::new(),
            next_token: 0,
            effects: Vec::new(),
            submissions: Arc::new(SubmissionQueue::new(1)),
            drained: Vec::new(),
            news: None,
            news_taken: Vec::new(),
        }
    }

    /// Takes the Learner's decisions and configurations from `feed` (the
    /// node's [`NodeBus::news`](crate::slots::NodeBus::news)) before each
    /// input, rather than one message each, and asks to be woken for them
    /// only while it waits for a decision (see
    /// [`ProposerCore::awaits_decisions`]).
    #[must_use]
    pub fn with_news(mut self, feed: LocalFeed<LearnerNews>) -> Self {
        self.news = Some(feed);
        self
    }

    /// Runs the news queued in the feed, in order.
    fn take_news(&mut self) {
        let Some(feed) = &self.news else {
            return;
        };
        let mut taken = std::mem::take(&mut self.news_taken);
        feed.take_into(&mut taken);
        for n in taken.drain(..) {
            match n {
                LearnerNews::Decided(m) => self.decided(m),
                LearnerNews::Configured(m) => self.configured(m),
                LearnerNews::Acked(acceptors) => {
                    self.step_one(ProposerInput::Acked { acceptors });
                }
                LearnerNews::Leading(ballot) => {
                    self.step_one(ProposerInput::Leading { ballot });
                }
            }
        }
        self.news_taken = taken;
    }

    /// After an input: asks the feed to wake it for the next decision
    /// only if it waits for one (a leader with commands queued behind a
    /// full window, a retry, a phase 1, basic Paxos), taking whatever came
    /// meanwhile.
    fn settle(&mut self) {
        while let Some(feed) = &self.news {
            if !feed.set_wake(self.failed || self.core.awaits_decisions()) {
                break;
            }
            self.take_news();
        }
    }

    fn decided(&mut self, m: Decided) {
        self.step_one(ProposerInput::Decided {
            slot: m.slot,
            batch: m.batch,
            next_undelivered: m.next_undelivered,
            commit: m.commit,
        });
    }

    fn configured(&mut self, m: Configured) {
        if m.configs.from.len() >= self.configs.from.len() {
            self.configs = m.configs.clone();
        }
        self.step_one(ProposerInput::Configured { configs: m.configs });
    }

    /// Takes client commands from `queue` (the node's, shared with its
    /// client API) when woken by [`DrainSubmissions`].
    #[must_use]
    pub fn with_submissions(mut self, queue: Arc<SubmissionQueue>) -> Self {
        self.submissions = queue;
        self
    }

    /// Takes every queued command into the core as one input.
    fn drain_submissions(&mut self) {
        let mut taken = std::mem::take(&mut self.drained);
        self.submissions.take_into(&mut taken);
        if taken.is_empty() {
            self.drained = taken;
            return;
        }
        let mut requests = Vec::with_capacity(taken.len());
        for m in taken.drain(..) {
            let token = self.next_token;
            self.next_token += 1;
            self.replies.insert(token, m.reply);
            requests.push((
                token,
                Request {
                    client: m.client,
                    command: m.command,
                },
            ));
        }
        self.drained = taken;
        self.step(ProposerInput::Submits { requests });
    }

    /// Starts from these configurations (a node added to a running cluster
    /// knows the initial acceptors, not itself).
    #[must_use]
    pub fn with_configurations(mut self, configs: Configurations) -> Self {
        self.core = self.core.with_configurations(configs.clone());
        self.configs = configs;
        self
    }

    /// Records leadership changes in a simulation trace.
    #[must_use]
    pub fn with_trace(mut self, trace: Option<TraceHandle>) -> Self {
        self.trace = trace;
        self
    }

    fn fail(&mut self, reason: String) {
        if self.failed {
            return;
        }
        self.failed = true;
        tracing::error!(node = %self.id, %reason, "proposer cannot go on");
        if let Some(f) = &self.fail {
            f.do_send(FailNode { reason });
        }
    }

    /// A fresh core above every ballot the store says was used.
    fn recover(&mut self) {
        let seed = self
            .seed
            .wrapping_add(self.incarnation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let core = ProposerCore::new(self.id, self.cfg.clone(), self.members.clone(), seed)
            .with_configurations(self.configs.clone());
        match self.storage.load_hard_state() {
            Ok(used) => self.core = core.above(used.unwrap_or(Ballot::ZERO)),
            Err(e) => self.fail(format!("proposer cannot read its store: {e}")),
        }
    }

    /// Runs `input` after the news that came before it.
    fn step(&mut self, input: ProposerInput) {
        self.take_news();
        self.step_one(input);
        self.settle();
    }

    fn step_one(&mut self, input: ProposerInput) {
        if self.failed {
            return;
        }
        let now = micros_since(self.epoch);
        let mut out = std::mem::take(&mut self.effects);
        self.core.step(now, input, &mut out);
        for e in out.drain(..) {
            if self.failed {
                break;
            }
            self.run(e);
        }
        out.clear();
        self.effects = out;
    }

    fn run(&mut self, effect: ProposerEffect) {
        match effect {
            ProposerEffect::PersistBallot(ballot) => {
                let r = self
                    .storage
                    .save_hard_state(&ballot)
                    .and_then(|()| self.storage.sync());
                if let Err(e) = r {
                    self.fail(format!("proposer cannot record its ballot: {e}"));
                }
            }
            ProposerEffect::Broadcast(msg) => {
                // A commit is for the other nodes' learners (ours made it).
                let to_self = !matches!(msg, M::Commit(_));
                for m in self.core.targets() {
                    if to_self || *m != self.id {
                        self.transport.send(*m, msg.clone());
                    }
                }
            }
            ProposerEffect::Send { to, msg } => self.transport.send(to, msg),
            ProposerEffect::Proposed {
                slot,
                ballot,
                value,
            } => {
                let replies = value
                    .batch
                    .and_then(|b| self.batched.remove(&b))
                    .unwrap_or_default();
                self.outputs.proposed.send(Proposed {
                    slot,
                    ballot,
                    value,
                    replies,
                });
            }
            ProposerEffect::Track { batch, tokens } => {
                let replies = tokens
                    .iter()
                    .filter_map(|t| self.replies.remove(t))
                    .collect::<Vec<_>>();
                debug_assert_eq!(replies.len(), tokens.len(), "a token without its reply");
                self.batched.insert(batch, replies);
            }
            ProposerEffect::Abandon { batches, error } => {
                // Batches never proposed are answered here; the Learner
                // answers the others.
                let mut proposed = Vec::with_capacity(batches.len());
                for b in batches {
                    match self.batched.remove(&b) {
                        Some(replies) => {
                            for r in replies {
                                let _ = r.send(Err(error.clone()));
                            }
                        }
                        None => proposed.push(b),
                    }
                }
                if !proposed.is_empty() {
                    self.outputs.abandon.do_send(Abandon {
                        batches: proposed,
                        error,
                    });
                }
            }
            ProposerEffect::Fail { tokens, error } => {
                for t in tokens {
                    if let Some(r) = self.replies.remove(&t) {
                        let _ = r.send(Err(error.clone()));
                    }
                }
            }
            ProposerEffect::BallotTooLow { promised } => {
                self.outputs
                    .ballot_too_low
                    .do_send(BallotTooLow { promised });
            }
            ProposerEffect::BecameLeader { ballot } => {
                tracing::debug!(node = %self.id, %ballot, "leads");
                if let Some(t) = &self.trace {
                    t.record_value(self.id, "leader", &ballot);
                }
                self.safety.emit(SafetyEvent::BecameLeader {
                    node: self.id,
                    epoch: ballot.round,
                });
            }
            ProposerEffect::SteppedDown => {
                if let Some(t) = &self.trace {
                    t.record_value(self.id, "stepped-down", &());
                }
                self.safety.emit(SafetyEvent::SteppedDown { node: self.id });
            }
        }
    }
}

impl<S: ProposerStorage> Actor for Proposer<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.recover();
        // A wake sent before a restart may be lost with the mailbox (taking
        // spends it).
        self.take_news();
        self.settle();
        self.submissions.reopen();
        self.drain_submissions();
        let period = Duration::from_millis((self.cfg.heartbeat_ms / 5).max(1));
        ctx.run_interval(period, |act, _ctx| act.step(ProposerInput::Tick));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.submissions.close();
    }
}

impl<S: ProposerStorage> Supervised for Proposer<S> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if self.core.is_leader() {
            self.safety.emit(SafetyEvent::SteppedDown { node: self.id });
        }
        self.incarnation += 1;
        // Queued commands were never proposed; their answers are dropped
        // (the client sees an unknown outcome).
        self.replies.clear();
        self.batched.clear();
        // `started` rebuilds the core above the stored ballot.
    }
}

impl<S: ProposerStorage> Handler<Submit> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, m: Submit, _ctx: &mut Context<Self>) {
        let token = self.next_token;
        self.next_token += 1;
        self.replies.insert(token, m.reply);
        self.step(ProposerInput::Submit {
            token,
            request: Request {
                client: m.client,
                command: m.command,
            },
        });
    }
}

impl<S: ProposerStorage> Handler<DrainSubmissions> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, _: DrainSubmissions, _ctx: &mut Context<Self>) {
        self.drain_submissions();
    }
}

impl<S: ProposerStorage> Handler<Reconfigure> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, m: Reconfigure, _ctx: &mut Context<Self>) {
        let token = self.next_token;
        self.next_token += 1;
        self.replies.insert(token, m.reply);
        self.step(ProposerInput::Reconfigure {
            token,
            change: m.change,
        });
    }
}

impl<S: ProposerStorage> Handler<Configured> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, m: Configured, _ctx: &mut Context<Self>) {
        self.take_news();
        self.configured(m);
        self.settle();
    }
}

impl<S: ProposerStorage> Handler<PeerMessage> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, m: PeerMessage, _ctx: &mut Context<Self>) {
        let input = match m.msg {
            M::Promise(msg) => ProposerInput::Promise { from: m.from, msg },
            M::Nack(msg) => ProposerInput::Nack { from: m.from, msg },
            other => {
                tracing::debug!(message = other.name(), "not for the proposer");
                return;
            }
        };
        self.step(input);
    }
}

impl<S: ProposerStorage> Handler<Decided> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, m: Decided, _ctx: &mut Context<Self>) {
        self.take_news();
        self.decided(m);
        self.settle();
    }
}

impl<S: ProposerStorage> Handler<FeedReady<LearnerNews>> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, _: FeedReady<LearnerNews>, _ctx: &mut Context<Self>) {
        self.take_news();
        self.settle();
    }
}

impl<S: ProposerStorage> Handler<LeaderChange> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, m: LeaderChange, _ctx: &mut Context<Self>) {
        self.step(ProposerInput::Leader { leader: m.leader });
    }
}

impl<S: ProposerStorage> Handler<GetProposerStatus> for Proposer<S> {
    type Result = ProposerStatus;

    fn handle(&mut self, _: GetProposerStatus, _ctx: &mut Context<Self>) -> ProposerStatus {
        ProposerStatus {
            role: self.core.role(),
            ballot: self.core.ballot(),
            leader: self.core.leader(),
            is_leader: self.core.is_leader(),
        }
    }
}

impl<S: ProposerStorage> Handler<InjectPanic> for Proposer<S> {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in Proposer");
    }
}
