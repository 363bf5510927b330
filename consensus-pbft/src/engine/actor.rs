//! The replica actor: owns nothing but a handle on the engine's durable
//! state ([`ReplicaStore`]); turns mailbox messages, notes and ticks into
//! [`Engine::step`] calls, carries out the effects in order and sends the
//! notes to the node's ViewChanger and CheckpointProtocol.
//!
//! A Byzantine replica runs whole ([`ReplicaActor::byzantine`]): the
//! engine with its own ViewChanger and CheckpointProtocol cores
//! ([`Companions`]), so that every output passes through its
//! [`Corrupter`].
//!
//! After a restart the engine's state is intact (durable); it tells the
//! ViewChanger and the CheckpointProtocol its state again, in case the
//! note being handled when it failed was lost.

use super::core::{Effect, Engine, Input};
use super::replica::Companions;
use crate::byzantine::Corrupter;
use crate::evidence::EvidenceLog;
use crate::messages::PbftMessage;
use crate::node::{ClientReply, Inbound, ReplicaContext, ToEngine};
use crate::notes::EngineNote;
use crate::safety::PbftEvent;
use actix::prelude::*;
use consensus_actors::kv::{KvStore, StateMachine};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Ticks of the replica's timers.
pub const TICK: Duration = Duration::from_millis(10);

/// A replica's state, kept by the plug-in across crashes and restarts
/// (the replica's durable memory: every step is as if synced before its
/// messages leave, Castro and Liskov's assumption of a replica whose state
/// survives a power failure). Single-threaded; only borrowed inside a step.
pub struct ReplicaStore<SM: StateMachine = KvStore>(pub(crate) Rc<RefCell<Option<Engine<SM>>>>);

impl<SM: StateMachine> Clone for ReplicaStore<SM> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<SM: StateMachine> Default for ReplicaStore<SM> {
    fn default() -> Self {
        Self(Rc::new(RefCell::new(None)))
    }
}

impl<SM: StateMachine> ReplicaStore<SM> {
    /// An empty store (the replica starts fresh).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the replica's state, if it has started.
    pub fn with<T>(&self, f: impl FnOnce(&Engine<SM>) -> T) -> Option<T> {
        self.0.try_borrow().ok()?.as_ref().map(f)
    }
}

/// See the [module documentation](self).
pub struct ReplicaActor<SM: StateMachine = KvStore> {
    ctx: ReplicaContext<SM>,
    corrupter: Option<Corrupter>,
    /// A whole replica's ViewChanger and CheckpointProtocol (rebuilt, and
    /// resynced, on every start).
    whole: Option<Companions>,
    is_whole: bool,
}

impl<SM: StateMachine> ReplicaActor<SM> {
    /// The stock PBFTEngine for `ctx`.
    pub fn new(ctx: ReplicaContext<SM>) -> Self {
        Self {
            ctx,
            corrupter: None,
            whole: None,
            is_whole: false,
        }
    }

    /// A whole replica (engine, ViewChanger and CheckpointProtocol in one
    /// actor), honest.
    pub fn whole(ctx: ReplicaContext<SM>) -> Self {
        Self {
            ctx,
            corrupter: None,
            whole: None,
            is_whole: true,
        }
    }

    /// A Byzantine replica: the whole stock one whose effects `corrupter`
    /// rewrites. It declares itself Byzantine to the safety checker.
    pub fn byzantine(ctx: ReplicaContext<SM>, corrupter: Corrupter) -> Self {
        Self {
            ctx,
            corrupter: Some(corrupter),
            whole: None,
            is_whole: true,
        }
    }

    fn corrupt(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        match &mut self.corrupter {
            Some(c) => c.corrupt(effects),
            None => effects,
        }
    }

    fn step(&mut self, input: Input) {
        self.run(|engine, whole| match whole {
            Some(parts) => parts.step(engine, input),
            None => engine.step(input),
        });
    }

    /// Runs `f` on the engine (and a whole replica's companions), then
    /// carries out the effects and sends the notes.
    fn run(&mut self, f: impl FnOnce(&mut Engine<SM>, Option<&mut Companions>) -> Vec<Effect>) {
        let (effects, notes) = {
            let mut slot = self.ctx.store.0.borrow_mut();
            let engine = slot.get_or_insert_with(|| self.ctx.fresh_replica());
            let effects = f(engine, self.whole.as_mut());
            (effects, engine.take_notes())
        };
        let effects = self.corrupt(effects);
        carry_out(&self.ctx, effects);
        self.ctx.peers.deliver(notes);
    }
}

/// Carries out `effects` for the replica of `ctx`, in order.
pub fn carry_out<SM: StateMachine>(ctx: &ReplicaContext<SM>, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Send { to, msg } => send(ctx, to, msg),
            Effect::Broadcast(msg) => ctx.transport.broadcast(&ctx.cfg.members, &msg),
            Effect::Safety(ev) => ctx.safety.emit(ev),
            Effect::Evidence(ev) => record(&ctx.evidence, ev),
            Effect::Count(name) => ctx.evidence.count(name, ctx.cfg.id),
        }
    }
}

fn send<SM: StateMachine>(
    ctx: &ReplicaContext<SM>,
    to: consensus_actors::types::NodeId,
    msg: PbftMessage,
) {
    if to == ctx.cfg.id {
        if let Some(replies) = msg.into_replies() {
            ctx.local_clients.do_send(ClientReply {
                from: ctx.cfg.id,
                replies,
            });
        }
        return;
    }
    ctx.transport.send(to, msg);
}

fn record(log: &EvidenceLog, ev: crate::evidence::Evidence) {
    log.record(ev);
}

impl<SM: StateMachine> Actor for ReplicaActor<SM> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.corrupter.is_some() {
            self.ctx.safety.emit(PbftEvent::ByzantineReplicas {
                replicas: vec![self.ctx.cfg.id],
            });
        }
        let fresh = self.ctx.store.0.borrow().is_none();
        if fresh {
            self.run(|engine, _| engine.start());
        }
        let now_us = self.ctx.now_us();
        if self.is_whole {
            let mut parts = {
                let mut slot = self.ctx.store.0.borrow_mut();
                Companions::for_engine(slot.get_or_insert_with(|| self.ctx.fresh_replica()))
            };
            let effects = {
                let mut slot = self.ctx.store.0.borrow_mut();
                let engine = slot.get_or_insert_with(|| self.ctx.fresh_replica());
                parts.start(engine, now_us)
            };
            self.whole = Some(parts);
            let effects = self.corrupt(effects);
            carry_out(&self.ctx, effects);
        } else if !fresh {
            // Restarted: the note being handled may be lost; the others
            // get the engine's state again.
            self.run(|engine, _| {
                let mut out = engine.step_note(EngineNote::SyncViewChanger);
                out.extend(engine.step_note(EngineNote::SyncCheckpoint));
                out
            });
        }
        ctx.run_interval(TICK, move |act, _ctx| {
            let now_us = act.ctx.now_us();
            act.step(Input::Tick { now_us });
        });
    }
}

impl<SM: StateMachine> Supervised for ReplicaActor<SM> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Only the engine's state is durable.
        self.whole = None;
    }
}

impl<SM: StateMachine> Handler<ToEngine> for ReplicaActor<SM> {
    type Result = ();

    fn handle(&mut self, msg: ToEngine, _ctx: &mut Context<Self>) {
        if self.is_whole {
            return; // a whole replica's companions are its own
        }
        self.run(|engine, _| engine.step_note(msg.0));
    }
}

impl<SM: StateMachine> Handler<Inbound> for ReplicaActor<SM> {
    type Result = ();

    fn handle(&mut self, msg: Inbound, _ctx: &mut Context<Self>) {
        self.step(Input::Message {
            from: msg.from,
            msg: msg.msg,
        });
    }
}
