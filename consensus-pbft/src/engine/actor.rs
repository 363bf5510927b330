//! The replica actor: owns nothing but a handle on the replica's durable
//! state ([`ReplicaStore`]); turns mailbox messages and ticks into
//! [`Replica::step`] calls and carries out the effects in order.

use super::core::{Effect, Input, Replica};
use crate::byzantine::Corrupter;
use crate::evidence::EvidenceLog;
use crate::messages::PbftMessage;
use crate::node::{ClientReply, Inbound, ReplicaContext};
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
pub struct ReplicaStore<SM: StateMachine = KvStore>(Rc<RefCell<Option<Replica<SM>>>>);

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
    pub fn with<T>(&self, f: impl FnOnce(&Replica<SM>) -> T) -> Option<T> {
        self.0.try_borrow().ok()?.as_ref().map(f)
    }
}

/// See the [module documentation](self).
pub struct ReplicaActor<SM: StateMachine = KvStore> {
    ctx: ReplicaContext<SM>,
    corrupter: Option<Corrupter>,
}

impl<SM: StateMachine> ReplicaActor<SM> {
    /// The stock replica for `ctx`.
    pub fn new(ctx: ReplicaContext<SM>) -> Self {
        Self {
            ctx,
            corrupter: None,
        }
    }

    /// A Byzantine replica: the stock one whose effects `corrupter`
    /// rewrites. It declares itself Byzantine to the safety checker.
    pub fn byzantine(ctx: ReplicaContext<SM>, corrupter: Corrupter) -> Self {
        Self {
            ctx,
            corrupter: Some(corrupter),
        }
    }

    fn corrupt(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        match &mut self.corrupter {
            Some(c) => c.corrupt(effects),
            None => effects,
        }
    }

    fn step(&mut self, input: Input) {
        let effects = {
            let mut slot = self.ctx.store.0.borrow_mut();
            let replica = slot.get_or_insert_with(|| self.ctx.fresh_replica());
            replica.step(input)
        };
        let effects = self.corrupt(effects);
        carry_out(&self.ctx, effects);
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
        }
    }
}

fn send<SM: StateMachine>(
    ctx: &ReplicaContext<SM>,
    to: consensus_actors::types::NodeId,
    msg: PbftMessage,
) {
    if to == ctx.cfg.id {
        if let PbftMessage::Reply(r) = msg {
            ctx.local_clients.do_send(ClientReply(r.body));
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
            let effects = {
                let mut slot = self.ctx.store.0.borrow_mut();
                slot.get_or_insert_with(|| self.ctx.fresh_replica()).start()
            };
            let effects = self.corrupt(effects);
            carry_out(&self.ctx, effects);
        }
        let epoch = self.ctx.epoch;
        ctx.run_interval(TICK, move |act, _ctx| {
            let now_us = tokio::time::Instant::now()
                .saturating_duration_since(epoch)
                .as_micros() as u64;
            act.step(Input::Tick { now_us });
        });
    }
}

impl<SM: StateMachine> Supervised for ReplicaActor<SM> {}

impl<SM: StateMachine> Handler<Inbound> for ReplicaActor<SM> {
    type Result = ();

    fn handle(&mut self, msg: Inbound, _ctx: &mut Context<Self>) {
        self.step(Input::Message {
            from: msg.from,
            msg: msg.msg,
        });
    }
}
