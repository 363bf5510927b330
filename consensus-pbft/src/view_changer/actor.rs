//! The ViewChanger actor: owns a [`ViewChanger`] core; VIEW-CHANGE and
//! NEW-VIEW from the authenticator, notes from the engine, and its ticks
//! (the request timer, the view-change timer, the VIEW-CHANGE's
//! retransmission) go in; effects are carried out in order and notes go to
//! the engine.
//!
//! # Restart
//!
//! Nothing of the core survives a restart: `restarting()` drops it and
//! `started()` builds a fresh one, sets the tick again and asks the engine
//! for its state ([`EngineNote::SyncViewChanger`](crate::notes::EngineNote::SyncViewChanger)).
//! Until the answer the core is unsynced: it starts no view change and
//! accepts no NEW-VIEW (see [`crate::notes`] for the whole contract).

use super::core::ViewChanger;
use crate::engine::actor::{carry_out, TICK};
use crate::engine::core::Effect;
use crate::node::{Inbound, InjectPanic, ReplicaContext, ToViewChanger};
use actix::prelude::*;
use consensus_actors::kv::{KvStore, StateMachine};
use std::rc::Rc;

/// See the [module documentation](self).
pub struct ViewChangerActor<SM: StateMachine = KvStore> {
    ctx: ReplicaContext<SM>,
    core: Option<ViewChanger>,
}

impl<SM: StateMachine> ViewChangerActor<SM> {
    /// The stock ViewChanger of `ctx.cfg.id`.
    pub fn new(ctx: ReplicaContext<SM>) -> Self {
        Self { ctx, core: None }
    }

    fn run(&mut self, f: impl FnOnce(&mut ViewChanger) -> Vec<Effect>) {
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let effects = f(core);
        let notes = core.take_notes();
        carry_out(&self.ctx, effects);
        self.ctx.peers.deliver(notes);
    }
}

impl<SM: StateMachine> Actor for ViewChangerActor<SM> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let keys = crate::authenticator::core::Keys::new(
            self.ctx.cfg.cluster,
            self.ctx.cfg.secret,
            self.ctx.cfg.id,
            &self.ctx.cfg.members,
        );
        self.core = Some(ViewChanger::new(
            self.ctx.cfg.clone(),
            self.ctx.quorums(),
            Rc::new(keys),
        ));
        let now_us = self.ctx.now_us();
        self.run(|core| core.start(now_us));
        ctx.run_interval(TICK, |act, _ctx| {
            let now_us = act.ctx.now_us();
            act.run(|core| core.tick(now_us));
        });
    }
}

impl<SM: StateMachine> Supervised for ViewChangerActor<SM> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.core = None;
    }
}

impl<SM: StateMachine> Handler<Inbound> for ViewChangerActor<SM> {
    type Result = ();

    fn handle(&mut self, msg: Inbound, _ctx: &mut Context<Self>) {
        self.run(|core| core.handle_message(msg.from, msg.msg));
    }
}

impl<SM: StateMachine> Handler<ToViewChanger> for ViewChangerActor<SM> {
    type Result = ();

    fn handle(&mut self, msg: ToViewChanger, _ctx: &mut Context<Self>) {
        self.run(|core| core.handle_note(msg.0));
    }
}

impl<SM: StateMachine> Handler<InjectPanic> for ViewChangerActor<SM> {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in the ViewChanger of {}", self.ctx.cfg.id);
    }
}
