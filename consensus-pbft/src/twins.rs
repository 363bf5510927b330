//! Twins (Bano et al., "Twins: BFT Systems Made Robust", the approach Diem
//! used to generate millions of scenarios): two instances of one replica
//! sharing its identity and keys, each running the unmodified replica
//! cores (engine, ViewChanger and CheckpointProtocol, [`Companions`]), each talking to its own half of the other replicas. To the
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
use crate::engine::core::{Effect, Engine, Input};
use crate::engine::replica::Companions;
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
    /// Each twin's ViewChanger and CheckpointProtocol (rebuilt, and
    /// resynced, on every start).
    parts: [Option<Companions>; 2],
}

impl<SM: StateMachine> TwinsActor<SM> {
    /// The twins of `ctx.cfg.id`, split as [`groups`] says.
    pub fn new(ctx: ReplicaContext<SM>) -> Self {
        let groups = groups(&ctx.cfg.members, ctx.cfg.id);
        Self {
            ctx,
            second: ReplicaStore::new(),
            groups,
            parts: [None, None],
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
        let store = self.store(twin).clone();
        let Some(parts) = self.parts[twin].as_mut() else {
            return;
        };
        let effects = {
            let mut slot = store.0.borrow_mut();
            let engine: &mut Engine<SM> = slot.get_or_insert_with(|| self.ctx.fresh_replica());
            parts.step(engine, input)
        };
        self.carry_out(twin, effects);
    }

    fn carry_out(&self, twin: usize, effects: Vec<Effect>) {
        let me = self.ctx.cfg.id;
        let group = &self.groups[twin];
        for effect in effects {
            match effect {
                Effect::Send { to, msg } if to == me => {
                    if let Some(replies) = msg.into_replies() {
                        self.ctx
                            .local_clients
                            .do_send(ClientReply { from: me, replies });
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
                Effect::Count(name) => self.ctx.evidence.count(name, self.ctx.cfg.id),
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
        let now_us = self.ctx.now_us();
        for twin in 0..2 {
            let store = self.store(twin).clone();
            let fresh = store.0.borrow().is_none();
            let effects = {
                let mut slot = store.0.borrow_mut();
                let engine = slot.get_or_insert_with(|| self.ctx.fresh_replica());
                let mut effects = if fresh { engine.start() } else { Vec::new() };
                let mut parts = Companions::for_engine(engine);
                effects.extend(parts.start(engine, now_us));
                self.parts[twin] = Some(parts);
                effects
            };
            self.carry_out(twin, effects);
        }
        ctx.run_interval(TICK, move |act, _ctx| {
            let now_us = act.ctx.now_us();
            for twin in 0..2 {
                act.step(twin, Input::Tick { now_us });
            }
        });
    }
}

impl<SM: StateMachine> Supervised for TwinsActor<SM> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.parts = [None, None];
    }
}

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
        ReplicaComponent::whole(slot, TwinsActor::new(ctx.clone()))
    })
}

#[cfg(test)]
mod tests {
    //! Why `n >= 3f + 1` is tight, with Twins: in a 4-replica cluster
    //! (f = 1), one twinned replica cannot split the correct ones, but two
    //! (f + 1 colluders) can: each half (twin a of n0 and n1 with n2, twin b
    //! of n0 and n1 with n3) holds 2f + 1 identities, so each commits a
    //! different request at sequence number 1, and the safety checker
    //! flags the disagreement between the correct n2 and n3.
    use crate::authenticator::core::{cluster_secret, Keys};
    use crate::authenticator::verify::{check_inbound, VerifyCache};
    use crate::engine::core::{Effect, Input, Replica};
    use crate::engine::tests::{config, Cluster, CLIENT_NODE};
    use crate::messages::PbftMessage;
    use crate::safety::{self, PbftEvent, SafetyEvent};
    use crate::types::SeqNo;
    use consensus_actors::kv::KvCommand;
    use consensus_actors::safety::Violation;
    use consensus_actors::types::NodeId;
    use std::collections::VecDeque;

    struct Instance {
        id: NodeId,
        half: usize,
        replica: Replica,
        keys: Keys,
        cache: VerifyCache,
    }

    /// Runs the split: replicas in `twinned` run as two instances, one per
    /// half; n2 is in half 0, n3 in half 1, an untwinned n0 or n1 in half
    /// 0. Half 0's clients send `put a = 1`, half 1's `put a = 2`. Returns
    /// the checker's violations and the value of `a` at n2 and n3.
    fn split(twinned: &[u64]) -> (Vec<Violation>, Option<String>, Option<String>) {
        let n = 4;
        let mut placement: Vec<(u64, usize)> = Vec::new();
        for id in 0..2u64 {
            placement.push((id, 0));
            if twinned.contains(&id) {
                placement.push((id, 1));
            }
        }
        placement.push((2, 0));
        placement.push((3, 1));
        let members: Vec<NodeId> = (0..n).map(NodeId).collect();
        let mut inst: Vec<Instance> = placement
            .iter()
            .map(|&(id, half)| Instance {
                id: NodeId(id),
                half,
                replica: Replica::new(config(id, n)),
                keys: Keys::new(7, cluster_secret(3, 7), NodeId(id), &members),
                cache: VerifyCache::new(),
            })
            .collect();
        let mut events: Vec<SafetyEvent> = vec![PbftEvent::ByzantineReplicas {
            replicas: twinned.iter().map(|&i| NodeId(i)).collect(),
        }
        .into()];
        // (sending instance or None for the client, receiver, message)
        let mut queue: VecDeque<(Option<usize>, usize, NodeId, PbftMessage)> = VecDeque::new();
        let absorb = |from: usize,
                      effects: Vec<Effect>,
                      inst: &[Instance],
                      queue: &mut VecDeque<(Option<usize>, usize, NodeId, PbftMessage)>,
                      events: &mut Vec<SafetyEvent>| {
            let (me, half) = (inst[from].id, inst[from].half);
            for e in effects {
                match e {
                    Effect::Send { to, msg } => queue.push_back((Some(from), half, to, msg)),
                    Effect::Broadcast(msg) => {
                        for to in (0..n).map(NodeId).filter(|&t| t != me) {
                            queue.push_back((Some(from), half, to, msg.clone()));
                        }
                    }
                    Effect::Safety(ev) => events.push(ev),
                    Effect::Evidence(_) | Effect::Count(_) => {}
                }
            }
        };
        for i in 0..inst.len() {
            let effects = inst[i].replica.start();
            absorb(i, effects, &inst, &mut queue, &mut events);
        }
        let mut client = Cluster::new(n);
        for (half, value) in [(0usize, "1"), (1, "2")] {
            let r = client.request(half as u64 + 1, KvCommand::put("a", value));
            for to in 0..n {
                queue.push_back((None, half, NodeId(to), PbftMessage::Request(r.clone())));
            }
        }
        let mut steps = 0;
        while let Some((from, half, to, msg)) = queue.pop_front() {
            steps += 1;
            assert!(steps < 100_000, "the split does not quiesce");
            let Some(t) = inst.iter().position(|i| i.id == to && i.half == half) else {
                continue; // across the halves, or to the client
            };
            let sender = from.map_or(CLIENT_NODE, |f| inst[f].id);
            let target = &mut inst[t];
            if check_inbound(&target.keys, &mut target.cache, sender, &msg).is_err() {
                continue;
            }
            let effects = target.replica.step(Input::Message { from: sender, msg });
            absorb(t, effects, &inst, &mut queue, &mut events);
        }
        let mut checker = safety::checker();
        for ev in &events {
            checker.observe(0, ev);
        }
        let value = |id: u64| {
            inst.iter()
                .find(|i| i.id == NodeId(id))
                .filter(|i| i.replica.last_executed() >= SeqNo(1))
                .and_then(|i| i.replica.store().get("a").map(str::to_string))
        };
        (checker.violations().to_vec(), value(2), value(3))
    }

    #[test]
    fn one_twinned_replica_cannot_split_the_correct_ones() {
        let (violations, at2, at3) = split(&[0]);
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(at2.as_deref(), Some("1"), "half 0 holds a quorum");
        assert_eq!(
            at3, None,
            "half 1 (twin of n0 and n3) is 2 < 2f+1: nothing commits"
        );
    }

    #[test]
    fn f_plus_1_colluding_twins_break_agreement_and_the_checker_flags_it() {
        let (violations, at2, at3) = split(&[0, 1]);
        assert_eq!(at2.as_deref(), Some("1"));
        assert_eq!(at3.as_deref(), Some("2"), "the correct replicas diverged");
        assert!(
            violations.iter().any(|v| v.invariant == "pbft-agreement"
                && v.nodes.contains(&NodeId(2))
                && v.nodes.contains(&NodeId(3))),
            "the checker must flag n2 and n3 committing different requests at s1: {violations:?}"
        );
    }
}
