//! The CheckpointProtocol actor: owns a [`Checkpointer`] core; CHECKPOINT,
//! FETCH-STATE and state transfers from the authenticator, notes from the
//! engine, and its ticks (retransmission of its CHECKPOINT and of its
//! state-transfer request) go in; effects are carried out in order and
//! notes go to the engine.
//!
//! The engine holds the state machine and the encoded states of its
//! checkpoints (see [`crate::notes`]): this actor shares them to answer
//! FETCH-STATE and hands a checked transferred state to the engine to
//! install.
//!
//! # Restart
//!
//! Nothing of the core survives a restart: `restarting()` drops it and
//! `started()` builds a fresh one, sets the tick again and asks the engine
//! ([`EngineNote::SyncCheckpoint`](crate::notes::EngineNote::SyncCheckpoint))
//! for the last executed sequence number, the stable checkpoint with its
//! proof and the states of its checkpoints. Until the answer it records
//! nothing; later CHECKPOINTs of its peers it learns again as they come.

use super::core::Checkpointer;
use crate::engine::actor::{carry_out, TICK};
use crate::engine::core::Effect;
use crate::node::{Inbound, InjectPanic, ReplicaContext, ToCheckpoint};
use actix::prelude::*;
use consensus_actors::kv::{KvStore, StateMachine};
use std::rc::Rc;
use std::sync::Arc;

/// See the [module documentation](self).
pub struct CheckpointActor<SM: StateMachine = KvStore> {
    ctx: ReplicaContext<SM>,
    genesis: Arc<Vec<u8>>,
    core: Option<Checkpointer>,
}

impl<SM: StateMachine> CheckpointActor<SM> {
    /// The stock CheckpointProtocol of `ctx.cfg.id`.
    pub fn new(ctx: ReplicaContext<SM>) -> Self {
        let genesis = Arc::new(ctx.genesis_state());
        Self {
            ctx,
            genesis,
            core: None,
        }
    }

    fn run(&mut self, f: impl FnOnce(&mut Checkpointer) -> Vec<Effect>) {
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let effects = f(core);
        let notes = core.take_notes();
        carry_out(&self.ctx, effects);
        self.ctx.peers.deliver(notes);
    }
}

impl<SM: StateMachine> Actor for CheckpointActor<SM> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let keys = crate::authenticator::core::Keys::new(
            self.ctx.cfg.cluster,
            self.ctx.cfg.secret,
            self.ctx.cfg.id,
            &self.ctx.cfg.members,
        );
        self.core = Some(Checkpointer::new(
            self.ctx.cfg.clone(),
            self.ctx.quorums(),
            Rc::new(keys),
            Arc::clone(&self.genesis),
        ));
        let now_us = self.ctx.now_us();
        self.run(|core| core.start(now_us));
        ctx.run_interval(TICK, |act, _ctx| {
            let now_us = act.ctx.now_us();
            act.run(|core| core.tick(now_us));
        });
    }
}

impl<SM: StateMachine> Supervised for CheckpointActor<SM> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.core = None;
    }
}

impl<SM: StateMachine> Handler<Inbound> for CheckpointActor<SM> {
    type Result = ();

    fn handle(&mut self, msg: Inbound, _ctx: &mut Context<Self>) {
        self.run(|core| core.handle_message(msg.from, msg.msg));
    }
}

impl<SM: StateMachine> Handler<ToCheckpoint> for CheckpointActor<SM> {
    type Result = ();

    fn handle(&mut self, msg: ToCheckpoint, _ctx: &mut Context<Self>) {
        self.run(|core| core.handle_note(msg.0));
    }
}

impl<SM: StateMachine> Handler<InjectPanic> for CheckpointActor<SM> {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!(
            "injected panic in the CheckpointProtocol of {}",
            self.ctx.cfg.id
        );
    }
}
