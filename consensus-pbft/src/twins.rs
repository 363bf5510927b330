//! Twins (Bano et al., "Twins: BFT Systems Made Robust", the approach Diem
//! used to generate millions of scenarios): two instances of one replica
//! sharing its identity and keys, each running the unmodified replica core
//! ([`Replica`]), each talking to its own half of the other replicas. To the
//! cluster the node is one replica that tells each half a different story:
//! as primary it may order different requests at one sequence number, as a
//! backup it may vote for both. It declares itself Byzantine to the safety
//! checker, and its accusations are dropped (a liar's evidence is worth
//! nothing).
//!
//! [`TwinsActor`] is a replica slot ([`slots`]): messages from the peers of
//! [`groups`]`[0]` go to the first twin, from `groups[1]` to the second,
//! messages from the node's own client proxy to both; each twin's sends
//! reach only its own group (and the node's clients). The first twin keeps
//! its state in the node's [`ReplicaStore`] (what `info` reads), the second
//! in one of its own.

use crate::engine::actor::{ReplicaStore, TICK};
use crate::engine::core::{Effect, Input, Replica};
use crate::messages::PbftMessage;
use crate::node::{ClientReply, Inbound, PbftSlots, ReplicaComponent, ReplicaContext};
use crate::safety::PbftEvent;
use actix::prelude::*;
use consensus_actors::kv::StateMachine;
use consensus_actors::supervision::ChildSlot;
use consensus_actors::types::NodeId;

/// The two halves of the other replicas: `me`'s peers in order, the first
/// `⌊(n-1)/2⌋` for the first twin, the rest for the second.
pub fn groups(members: &[NodeId], me: NodeId) -> [Vec<NodeId>; 2] {
    let others: Vec<NodeId> = members.iter().copied().filter(|&m| m != me).collect();
    let half = others.len() / 2;
    [others[..half].to_vec(), others[half..].to_vec()]
}

/// Two twins of one replica. See the [module documentation](self).
pub struct TwinsActor<SM: StateMachine> {
    ctx: ReplicaContext<SM>,
    second: ReplicaStore<SM>,
    groups: [Vec<NodeId>; 2],
}

impl<SM: StateMachine> TwinsActor<SM> {
    /// The twins of `ctx.cfg.id`, split as [`groups`] says.
    pub fn new(ctx: ReplicaContext<SM>) -> Self {
        let groups = groups(&ctx.cfg.members, ctx.cfg.id);
        Self {
            ctx,
            second: ReplicaStore::new(),
            groups,
        }
    }

    fn store(&self, twin: usize) -> &ReplicaStore<SM> {
        if twin == 0 {
            &self.ctx.store
        } else {
            &self.second
        }
    }

    fn step(&mut self, twin: usize, input: Input) {
        let effects = {
            let mut slot = self.store(twin).0.borrow_mut();
            let replica: &mut Replica<SM> = slot.get_or_insert_with(|| self.ctx.fresh_replica());
            replica.step(input)
        };
        self.carry_out(twin, effects);
    }

    fn carry_out(&self, twin: usize, effects: Vec<Effect>) {
        let me = self.ctx.cfg.id;
        let group = &self.groups[twin];
        for effect in effects {
            match effect {
                Effect::Send { to, msg } if to == me => {
                    if let PbftMessage::Reply(r) = msg {
                        self.ctx.local_clients.do_send(ClientReply(r.body));
                    }
                }
                Effect::Send { to, msg } => {
                    // Replies go to any client node; replica traffic to the
                    // twin's own group only.
                    let to_replica = self.ctx.cfg.members.contains(&to);
                    if !to_replica || group.contains(&to) {
                        self.ctx.transport.send(to, msg);
                    }
                }
                Effect::Broadcast(msg) => self.ctx.transport.broadcast(group, &msg),
                Effect::Safety(ev) => self.ctx.safety.emit(ev),
                // A liar's accusations are worth nothing.
                Effect::Evidence(_) => {}
            }
        }
    }
}

impl<SM: StateMachine> Actor for TwinsActor<SM> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.ctx.safety.emit(PbftEvent::ByzantineReplicas {
            replicas: vec![self.ctx.cfg.id],
        });
        for twin in 0..2 {
            let fresh = self.store(twin).0.borrow().is_none();
            if fresh {
                let effects = {
                    let mut slot = self.store(twin).0.borrow_mut();
                    slot.get_or_insert_with(|| self.ctx.fresh_replica()).start()
                };
                self.carry_out(twin, effects);
            }
        }
        let epoch = self.ctx.epoch;
        ctx.run_interval(TICK, move |act, _ctx| {
            let now_us = tokio::time::Instant::now()
                .saturating_duration_since(epoch)
                .as_micros() as u64;
            for twin in 0..2 {
                act.step(twin, Input::Tick { now_us });
            }
        });
    }
}

impl<SM: StateMachine> Supervised for TwinsActor<SM> {}

impl<SM: StateMachine> Handler<Inbound> for TwinsActor<SM> {
    type Result = ();

    fn handle(&mut self, msg: Inbound, _ctx: &mut Context<Self>) {
        let twins: Vec<usize> = if msg.from == self.ctx.cfg.id {
            vec![0, 1]
        } else if self.groups[0].contains(&msg.from) {
            vec![0]
        } else if self.groups[1].contains(&msg.from) {
            vec![1]
        } else {
            // A client's node outside the cluster: both hear it.
            vec![0, 1]
        };
        for twin in twins {
            self.step(
                twin,
                Input::Message {
                    from: msg.from,
                    msg: msg.msg.clone(),
                },
            );
        }
    }
}

/// Slots whose replica is a pair of twins.
pub fn slots<SM: StateMachine>() -> PbftSlots<SM> {
    PbftSlots::default().with_replica(|ctx: &ReplicaContext<SM>| {
        let slot = ChildSlot::<TwinsActor<SM>>::new();
        ReplicaComponent::new(slot, TwinsActor::new(ctx.clone()))
    })
}
