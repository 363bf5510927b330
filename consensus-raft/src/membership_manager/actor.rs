//! The MembershipManager actor: runs the [`MembershipCore`], proposes
//! configuration entries through the owner and answers change requests once
//! they are committed.

use crate::actors::{
    micros_since, ChangeMembership, Interest, OwnerHandles, ProposeConfig, RaftEvents, StepDown,
    Subscribe,
};
use crate::config::RaftConfig;
use crate::configuration::Membership;
use crate::membership_manager::{
    ChangeId, MembershipChangeError, MembershipCore, MembershipEffect, MembershipInput,
};
use actix::prelude::*;
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

type Reply = oneshot::Sender<Result<Membership, MembershipChangeError>>;

/// The MembershipManager component. See the [module documentation](self).
pub struct MembershipManager {
    id: NodeId,
    cfg: RaftConfig,
    owner: OwnerHandles,
    epoch: Instant,
    core: MembershipCore,
    next_id: u64,
    waiting: BTreeMap<ChangeId, Reply>,
}

impl MembershipManager {
    /// A MembershipManager for node `id`.
    pub fn new(id: NodeId, cfg: RaftConfig, owner: OwnerHandles, epoch: Instant) -> Self {
        Self {
            id,
            core: MembershipCore::new(id, cfg.clone()),
            cfg,
            owner,
            epoch,
            next_id: 0,
            waiting: BTreeMap::new(),
        }
    }

    fn now_us(&self) -> u64 {
        micros_since(self.epoch)
    }

    fn run_effects(&mut self, ctx: &mut Context<Self>) {
        for effect in self.core.take_effects() {
            match effect {
                MembershipEffect::ProposeConfig { term, membership } => {
                    tracing::info!(node = %self.id, %term, %membership, "proposing configuration");
                    let req = self
                        .owner
                        .propose_config
                        .send(ProposeConfig { term, membership });
                    ctx.spawn(req.into_actor(self).map(|res, act, ctx| {
                        let now = act.now_us();
                        let result = res.unwrap_or(Err(crate::error::Refusal::Unavailable));
                        let _ = act.core.step(now, MembershipInput::Proposed(result));
                        act.run_effects(ctx);
                    }));
                }
                MembershipEffect::StepDown { term } => {
                    tracing::info!(node = %self.id, %term, "removed from the configuration: stepping down");
                    self.owner.step_down.do_send(StepDown { term });
                }
                MembershipEffect::ChangeDone { id, result } => {
                    if let Some(tx) = self.waiting.remove(&id) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
    }
}

impl Actor for MembershipManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The owner's state comes first through the event channel, in
        // order with the events that follow.
        self.owner.subscribe.do_send(Subscribe::new(
            crate::node::components::MEMBERSHIP_MANAGER,
            ctx.address().recipient(),
            Interest::membership_manager(),
        ));
        let interval = Duration::from_millis(self.cfg.heartbeat_interval_ms);
        ctx.run_interval(interval, |act, ctx| {
            let now = act.now_us();
            let _ = act.core.step(now, MembershipInput::Tick);
            act.run_effects(ctx);
        });
    }
}

impl Supervised for MembershipManager {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The change in progress is lost with the crash; its requester learns
        // leadership (of the process) was lost. A joint configuration left
        // behind is finished by the rebuilt core.
        for (_, tx) in std::mem::take(&mut self.waiting) {
            let _ = tx.send(Err(MembershipChangeError::LeadershipLost));
        }
        self.core = MembershipCore::new(self.id, self.cfg.clone());
    }
}

impl Handler<RaftEvents> for MembershipManager {
    type Result = ();

    fn handle(&mut self, m: RaftEvents, ctx: &mut Context<Self>) {
        let now = self.now_us();
        for e in &m.0 {
            let _ = self.core.step(now, MembershipInput::Event(e));
        }
        self.run_effects(ctx);
    }
}

impl Handler<ChangeMembership> for MembershipManager {
    type Result = ResponseFuture<Result<Membership, MembershipChangeError>>;

    fn handle(&mut self, m: ChangeMembership, ctx: &mut Context<Self>) -> Self::Result {
        self.next_id += 1;
        let id = ChangeId(self.next_id);
        let now = self.now_us();
        if let Err(e) = self
            .core
            .step(now, MembershipInput::RequestChange { id, kind: m.0 })
        {
            return Box::pin(async move { Err(e) });
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(id, tx);
        self.run_effects(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or(Err(MembershipChangeError::LeadershipLost))
        })
    }
}

impl Handler<crate::actors::InjectPanic> for MembershipManager {
    type Result = ();

    fn handle(&mut self, _: crate::actors::InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in MembershipManager");
    }
}
