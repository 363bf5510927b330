//! The LeaderElection actor: runs the [`ElectionCore`] with a timer and asks
//! the owner of term/vote/log to act on its decisions.

use crate::actors::{
    log_refusal, micros_since, AbortTransfer, BecomeLeader, BeginElection, Interest, LeaderContact,
    ObserveTerm, OwnerHandles, PeerMessage, RaftEvents, ReplicatedCommand, StartTransfer, StepDown,
    Subscribe, TransferLeadership,
};
use crate::config::RaftConfig;
use crate::error::Refusal;
use crate::leader_election::{ElectionCore, ElectionEffect, ElectionInput};
use crate::messages::RaftMessage;
use actix::prelude::*;
use consensus_actors::types::NodeId;
use std::marker::PhantomData;
use std::time::Duration;
use tokio::time::Instant;

/// The LeaderElection component. See the [module documentation](self).
pub struct LeaderElection<C> {
    id: NodeId,
    cfg: RaftConfig,
    seed: u64,
    incarnation: u64,
    owner: OwnerHandles,
    epoch: Instant,
    core: ElectionCore,
    timer: Option<SpawnHandle>,
    /// Contacts from the leader the owner records instead of sending them
    /// (given with the subscription; see [`LeaderContact`]).
    contact: LeaderContact,
    _commands: PhantomData<fn() -> C>,
}

impl<C: ReplicatedCommand> LeaderElection<C> {
    /// A LeaderElection for node `id`, its timeouts drawn from `seed` (a
    /// restart reseeds deterministically from it).
    pub fn new(
        id: NodeId,
        cfg: RaftConfig,
        seed: u64,
        owner: OwnerHandles,
        epoch: Instant,
    ) -> Self {
        Self {
            id,
            core: ElectionCore::new(id, cfg.clone(), seed),
            cfg,
            seed,
            incarnation: 0,
            owner,
            epoch,
            timer: None,
            contact: LeaderContact::new(),
            _commands: PhantomData,
        }
    }

    /// Acts on the contact from the leader recorded since the last call:
    /// done before anything else this component handles, as on a
    /// [`RaftEvent::HeardFromLeader`](crate::events::RaftEvent::HeardFromLeader)
    /// received when it was recorded.
    fn catch_up(&mut self) {
        if let Some(c) = self.contact.take() {
            let _ = self.core.step(c.at_us, ElectionInput::Event(&c.event()));
        }
    }

    fn now_us(&self) -> u64 {
        micros_since(self.epoch)
    }

    fn run_effects(&mut self, ctx: &mut Context<Self>) {
        for effect in self.core.take_effects() {
            match effect {
                ElectionEffect::SetTimer { at_us } => {
                    if let Some(t) = self.timer.take() {
                        ctx.cancel_future(t);
                    }
                    let delay = Duration::from_micros(at_us.saturating_sub(self.now_us()));
                    self.timer = Some(ctx.run_later(delay, |act, ctx| {
                        act.timer = None;
                        act.catch_up();
                        let now = act.now_us();
                        let _ = act.core.step(now, ElectionInput::Timeout);
                        act.run_effects(ctx);
                    }));
                }
                ElectionEffect::BeginElection {
                    expected_term,
                    pre_vote,
                    transfer,
                } => {
                    let req = self.owner.begin_election.send(BeginElection {
                        expected_term,
                        pre_vote,
                        transfer,
                    });
                    ctx.spawn(req.into_actor(self).map(|res, act, _ctx| {
                        if let Ok(Err(refusal)) = &res {
                            let _ = act.core.step(act.now_us(), ElectionInput::Refused(refusal));
                        }
                        log_refusal("election", "begin election", &res.unwrap_or(Ok(())));
                    }));
                }
                ElectionEffect::BecomeLeader { term } => {
                    self.owner.become_leader.do_send(BecomeLeader { term });
                }
                ElectionEffect::StepDown { term } => {
                    tracing::info!(node = %self.id, %term, "check-quorum failed: stepping down");
                    self.owner.step_down.do_send(StepDown { term });
                }
                ElectionEffect::ObserveTerm { term } => {
                    self.owner.observe_term.do_send(ObserveTerm { term });
                }
                ElectionEffect::TransferLeadership { term, target } => {
                    self.owner
                        .start_transfer
                        .do_send(StartTransfer { term, target });
                }
                ElectionEffect::AbortTransfer { term } => {
                    self.owner.abort_transfer.do_send(AbortTransfer { term });
                }
            }
        }
    }
}

impl<C: ReplicatedCommand> Actor for LeaderElection<C> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let now = self.now_us();
        let _ = self.core.step(now, ElectionInput::Start);
        self.run_effects(ctx);
        // Resynchronise with the owner (after a restart the copies are
        // stale): its state comes first through the event channel, in order
        // with the events that follow.
        self.owner.subscribe.do_send(
            Subscribe::new(
                crate::node::components::LEADER_ELECTION,
                ctx.address().recipient(),
                Interest::leader_election(),
            )
            .with_leader_contact(self.contact.clone()),
        );
    }
}

impl<C: ReplicatedCommand> Supervised for LeaderElection<C> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.incarnation += 1;
        self.timer = None;
        let seed = self
            .seed
            .wrapping_add(self.incarnation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        self.core = ElectionCore::new(self.id, self.cfg.clone(), seed);
    }
}

impl<C: ReplicatedCommand> Handler<RaftEvents> for LeaderElection<C> {
    type Result = ();

    fn handle(&mut self, m: RaftEvents, ctx: &mut Context<Self>) {
        self.catch_up();
        let now = self.now_us();
        for e in &m.0 {
            let _ = self.core.step(now, ElectionInput::Event(e));
        }
        self.run_effects(ctx);
    }
}

impl<C: ReplicatedCommand> Handler<PeerMessage<C>> for LeaderElection<C> {
    type Result = ();

    fn handle(&mut self, m: PeerMessage<C>, ctx: &mut Context<Self>) {
        self.catch_up();
        let now = self.now_us();
        match m.msg {
            RaftMessage::RequestVoteResponse(msg) => {
                let input = ElectionInput::RequestVoteResponse { from: m.from, msg };
                let _ = self.core.step(now, input);
            }
            RaftMessage::TimeoutNow(msg) => {
                let _ = self
                    .core
                    .step(now, ElectionInput::TimeoutNow { from: m.from, msg });
            }
            other => tracing::debug!(message = other.name(), "not for leader election"),
        }
        self.run_effects(ctx);
    }
}

impl<C: ReplicatedCommand> Handler<TransferLeadership> for LeaderElection<C> {
    type Result = Result<(), Refusal>;

    fn handle(&mut self, m: TransferLeadership, ctx: &mut Context<Self>) -> Self::Result {
        self.catch_up();
        let now = self.now_us();
        let r = self
            .core
            .step(now, ElectionInput::TransferLeadership { target: m.target });
        self.run_effects(ctx);
        r
    }
}

impl<C> Handler<crate::actors::InjectPanic> for LeaderElection<C>
where
    C: ReplicatedCommand,
{
    type Result = ();

    fn handle(&mut self, _: crate::actors::InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in LeaderElection");
    }
}
