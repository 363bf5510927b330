//! Byzantine replicas: the stock replica, whole (engine, ViewChanger and
//! CheckpointProtocol in one actor, [`crate::engine::replica`]), whose
//! output passes through a [`Corrupter`] that lies in one of the ways of
//! [`Behaviour`]. Each is a replica slot ([`slots`]) a test, the plug-in
//! ([`PbftPlugin::with_slots`](crate::PbftPlugin::with_slots)) or an
//! example puts into any replica; the replica declares itself with
//! `ByzantineReplicas` so the safety checker does not trust its events.
//!
//! | behaviour | what it does | how it is caught |
//! |---|---|---|
//! | `Silent` | sends nothing | tolerated: timers and view changes |
//! | `Equivocate` | as primary, a different PRE-PREPARE to some backups | two signed PRE-PREPAREs meet in a PREPARE: `Equivocation` |
//! | `WrongDigest` | as primary, a digest that is not its batch's | `WrongDigest` at the authenticator |
//! | `ForgedAuth` | corrupts its COMMIT MACs and PREPARE signatures | `InvalidMac`, `InvalidSignature` |
//! | `LyingNewView` | as new primary, a NEW-VIEW that does not follow from its VIEW-CHANGEs | `LyingNewView` |
//! | `Flood` | floods requests with forged client MACs, as their clients' node | `InvalidMac` (the requests come straight from the node that claims them) |
//! | `Replay` | resends its earlier messages | tolerated (authentic messages; duplicates are ignored) |
//! | `Twins` | two instances of the unmodified replica with one identity, each talking to half the cluster ([`crate::twins`]) | tolerated; `Equivocation` when a PREPARE brings one twin's PRE-PREPARE to a backup of the other |

use crate::authenticator::core::{sha256, Keys};
use crate::engine::actor::ReplicaActor;
use crate::engine::core::{Effect, ReplicaConfig};
use crate::messages::{
    encode_payload, AuthenticatedRequest, Batch, NewView, PbftMessage, PrePrepare, Request, Sig,
    Signed,
};
use crate::node::{PbftSlots, ReplicaComponent, ReplicaContext};
use consensus_actors::kv::{KvCommand, StateMachine};
use consensus_actors::supervision::ChildSlot;
use consensus_actors::types::{ClientId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How a Byzantine replica lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Behaviour {
    /// Sends nothing.
    Silent,
    /// As primary, sends a different PRE-PREPARE to all backups but one.
    Equivocate,
    /// As primary, signs PRE-PREPAREs whose digest is not the batch's.
    WrongDigest,
    /// Corrupts the MACs of its COMMITs and the signatures of its PREPAREs.
    ForgedAuth,
    /// As new primary, re-issues a PRE-PREPARE its VIEW-CHANGEs do not give.
    LyingNewView,
    /// Sends requests with forged client MACs, many at a time.
    Flood,
    /// Resends earlier messages of its own.
    Replay,
    /// Two instances of the replica share its identity ([`crate::twins`]).
    /// Not a [`Corrupter`]: the effects of one core cannot make two.
    Twins,
}

impl Behaviour {
    /// Every behaviour.
    pub const ALL: [Behaviour; 8] = [
        Behaviour::Silent,
        Behaviour::Equivocate,
        Behaviour::WrongDigest,
        Behaviour::ForgedAuth,
        Behaviour::LyingNewView,
        Behaviour::Flood,
        Behaviour::Replay,
        Behaviour::Twins,
    ];

    /// Whether a correct replica can prove this behaviour (the others are
    /// tolerated without evidence).
    pub fn is_provable(self) -> bool {
        !matches!(
            self,
            Behaviour::Silent | Behaviour::Replay | Behaviour::Twins
        )
    }
}

/// Forged requests a flooding replica sends per step.
pub const FLOOD_PER_STEP: usize = 4;

/// Rewrites a replica's effects to lie. See the [module documentation](self).
pub struct Corrupter {
    behaviour: Behaviour,
    keys: Keys,
    members: Vec<NodeId>,
    counter: u64,
    sent: VecDeque<(NodeId, PbftMessage)>,
}

impl Corrupter {
    /// The corrupter of replica `cfg.id`, with its own keys.
    pub fn new(behaviour: Behaviour, cfg: &ReplicaConfig) -> Self {
        Self {
            behaviour,
            keys: Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members),
            members: cfg.members.clone(),
            counter: 0,
            sent: VecDeque::new(),
        }
    }

    /// The behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    fn others(&self) -> Vec<NodeId> {
        let me = self.keys.me();
        self.members.iter().copied().filter(|&m| m != me).collect()
    }

    /// The effects the Byzantine replica carries out instead of `effects`.
    pub fn corrupt(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        self.counter += 1;
        let mut out = Vec::new();
        for e in effects {
            match (self.behaviour, e) {
                (_, Effect::Safety(ev)) => out.push(Effect::Safety(ev)),
                // A liar's accusations are worth nothing.
                (_, Effect::Evidence(_)) => {}
                (_, Effect::Count(name)) => out.push(Effect::Count(name)),
                (Behaviour::Silent, _) => {}
                (
                    Behaviour::Equivocate,
                    Effect::Broadcast(PbftMessage::PrePrepare { pre_prepare, batch }),
                ) => {
                    let others = self.others();
                    let null = Batch::default();
                    let lie = Signed::new(
                        PrePrepare {
                            digest: null.digest(),
                            ..pre_prepare.body
                        },
                        &self.keys,
                    );
                    for (i, to) in others.into_iter().enumerate() {
                        let msg = if i == 0 {
                            PbftMessage::PrePrepare {
                                pre_prepare: pre_prepare.clone(),
                                batch: batch.clone(),
                            }
                        } else {
                            PbftMessage::PrePrepare {
                                pre_prepare: lie.clone(),
                                batch: null.clone(),
                            }
                        };
                        out.push(Effect::Send { to, msg });
                    }
                }
                (
                    Behaviour::WrongDigest,
                    Effect::Broadcast(PbftMessage::PrePrepare { pre_prepare, batch }),
                ) => {
                    let lie = Signed::new(
                        PrePrepare {
                            digest: sha256(&pre_prepare.body.seq.get().to_le_bytes()),
                            ..pre_prepare.body
                        },
                        &self.keys,
                    );
                    out.push(Effect::Broadcast(PbftMessage::PrePrepare {
                        pre_prepare: lie,
                        batch,
                    }));
                }
                (Behaviour::ForgedAuth, Effect::Broadcast(PbftMessage::Commit(mut c))) => {
                    for (_, tag) in &mut c.auth {
                        tag.0[0] ^= 0x5a;
                    }
                    out.push(Effect::Broadcast(PbftMessage::Commit(c)));
                }
                (
                    Behaviour::ForgedAuth,
                    Effect::Broadcast(PbftMessage::Prepare {
                        mut prepare,
                        pre_prepare,
                    }),
                ) => {
                    let mut bytes = prepare.sig.to_bytes();
                    bytes[7] ^= 0x5a;
                    prepare.sig = Sig::from_bytes(bytes);
                    out.push(Effect::Broadcast(PbftMessage::Prepare {
                        prepare,
                        pre_prepare,
                    }));
                }
                (Behaviour::LyingNewView, Effect::Broadcast(PbftMessage::NewView(nv))) => {
                    let mut body: NewView = nv.body;
                    let next = body
                        .pre_prepares
                        .last()
                        .map_or_else(
                            || {
                                body.view_changes
                                    .iter()
                                    .map(|vc| vc.body.stable_seq)
                                    .max()
                                    .unwrap_or_default()
                            },
                            |pp| pp.body.seq,
                        )
                        .next();
                    body.pre_prepares.push(Signed::new(
                        PrePrepare {
                            view: body.view,
                            seq: next,
                            digest: Batch::default().digest(),
                            primary: body.primary,
                        },
                        &self.keys,
                    ));
                    out.push(Effect::Broadcast(PbftMessage::NewView(Signed::new(
                        body, &self.keys,
                    ))));
                }
                (Behaviour::Replay, e) => {
                    match &e {
                        Effect::Send { to, msg } => self.remember(*to, msg.clone()),
                        Effect::Broadcast(msg) => {
                            for to in self.others() {
                                self.remember(to, msg.clone());
                            }
                        }
                        _ => {}
                    }
                    out.push(e);
                }
                (_, e) => out.push(e),
            }
        }
        match self.behaviour {
            Behaviour::Flood => {
                for i in 0..FLOOD_PER_STEP as u64 {
                    let forged = AuthenticatedRequest {
                        request: Request {
                            node: self.keys.me(),
                            client: ClientId(1_000_000 + i),
                            timestamp: self.counter,
                            op: encode_payload(&KvCommand::put("flood", "x")),
                        },
                        auth: self
                            .members
                            .iter()
                            .map(|&m| (m, crate::messages::Tag([7u8; 32])))
                            .collect(),
                    };
                    out.push(Effect::Broadcast(PbftMessage::Request(forged)));
                }
            }
            Behaviour::Replay => {
                // Two old messages per step, again.
                for _ in 0..2 {
                    if let Some((to, msg)) = self.sent.pop_front() {
                        out.push(Effect::Send {
                            to,
                            msg: msg.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn remember(&mut self, to: NodeId, msg: PbftMessage) {
        if self.sent.len() < 256 {
            self.sent.push_back((to, msg));
        }
    }
}

/// Slots with a replica (executing on `SM`) that behaves as `behaviour`.
pub fn slots<SM: StateMachine>(behaviour: Behaviour) -> PbftSlots<SM> {
    if behaviour == Behaviour::Twins {
        return crate::twins::slots();
    }
    PbftSlots::default().with_replica(move |ctx: &ReplicaContext<SM>| {
        let slot = ChildSlot::<ReplicaActor<SM>>::new();
        let actor = ReplicaActor::byzantine(ctx.clone(), Corrupter::new(behaviour, &ctx.cfg));
        ReplicaComponent::whole(slot, actor)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::{config, Cluster};
    use crate::evidence::EvidenceKind;
    use crate::safety::{PbftEvent, SafetyEvent};
    use consensus_actors::kv::KvOutput;

    /// Runs `count` requests through `c`, ticking until every one has f+1
    /// matching replies from correct replicas (or virtual time runs out).
    /// Returns how many were answered.
    fn workload(c: &mut Cluster, count: u64, f: usize, faulty: &[NodeId]) -> usize {
        let mut answered = 0;
        for i in 0..count {
            let r = c.request(i, KvCommand::put(format!("k{}", i % 3), format!("{i}")));
            c.submit(&r);
            c.run();
            for _ in 0..400 {
                let ok = c
                    .replies_for(&r)
                    .iter()
                    .filter(|p| {
                        !faulty.contains(&p.replica) && p.result == encode_payload(&KvOutput::Ok)
                    })
                    .map(|p| p.replica)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                if ok > f {
                    answered += 1;
                    break;
                }
                c.tick(100_000);
                c.run();
            }
        }
        answered
    }

    fn cluster(n: u64, faulty: &[(NodeId, Behaviour)]) -> Cluster {
        let mut c = Cluster::new(n);
        let replicas: Vec<NodeId> = faulty.iter().map(|(r, _)| *r).collect();
        c.events.insert(
            0,
            SafetyEvent::Protocol(PbftEvent::ByzantineReplicas { replicas }),
        );
        for &(r, b) in faulty {
            c.byzantine
                .insert(r, Corrupter::new(b, &config(r.get(), n)));
        }
        c
    }

    fn assert_correct_replicas_agree(c: &Cluster, faulty: &[NodeId]) {
        let correct: Vec<_> = c
            .replicas
            .iter()
            .filter(|r| !faulty.contains(&r.id()) && !c.down.contains(&r.id()))
            .collect();
        let first = correct[0];
        for r in &correct {
            assert_eq!(r.store(), first.store(), "{:?} and {:?} diverge", r, first);
        }
        c.checked();
    }

    /// Each provable behaviour is detected and attributed to the replica
    /// that lies; no correct replica is ever accused.
    #[test]
    fn test_byzantine_node_detection() {
        let cases = [
            (Behaviour::Equivocate, NodeId(0), EvidenceKind::Equivocation),
            (Behaviour::WrongDigest, NodeId(0), EvidenceKind::WrongDigest),
            (Behaviour::ForgedAuth, NodeId(3), EvidenceKind::InvalidMac),
            (
                Behaviour::ForgedAuth,
                NodeId(3),
                EvidenceKind::InvalidSignature,
            ),
            (Behaviour::Flood, NodeId(2), EvidenceKind::InvalidMac),
            (
                Behaviour::LyingNewView,
                NodeId(1),
                EvidenceKind::LyingNewView,
            ),
        ];
        for (behaviour, liar, kind) in cases {
            let mut c = cluster(4, &[(liar, behaviour)]);
            if behaviour == Behaviour::LyingNewView {
                // n1 becomes primary of view 1 once n0 is gone (a crash:
                // with n1 lying only in its NEW-VIEW, view 2 makes progress).
                c.down.insert(NodeId(0));
            }
            let answered = workload(&mut c, 5, 1, &[liar]);
            assert_eq!(answered, 5, "{behaviour:?}: clients got answers");
            assert!(
                c.evidence
                    .iter()
                    .any(|e| e.kind == kind && e.accused == liar),
                "{behaviour:?}: no {kind} evidence against {liar}: {:?}",
                c.evidence
            );
            assert!(
                c.evidence.iter().all(|e| e.accused == liar),
                "{behaviour:?}: a correct replica was accused: {:?}",
                c.evidence
            );
            assert_correct_replicas_agree(&c, &[liar]);
        }
    }

    /// n = 4 with f = 1 and n = 7 with f = 2, each behaviour in the first f
    /// replicas (the primary of view 0 among them): the correct replicas
    /// execute the same requests in the same order and clients keep getting
    /// answers.
    #[test]
    fn test_pbft_3f_plus_1_tolerance() {
        for (n, f) in [(4u64, 1usize), (7, 2)] {
            // Twins need two cores per identity: the actor-level tests run
            // them (tests/state_machine.rs), this hand-wired cluster cannot.
            for behaviour in Behaviour::ALL
                .into_iter()
                .filter(|b| *b != Behaviour::Twins)
            {
                let faulty: Vec<(NodeId, Behaviour)> =
                    (0..f as u64).map(|i| (NodeId(i), behaviour)).collect();
                let liars: Vec<NodeId> = faulty.iter().map(|(r, _)| *r).collect();
                let mut c = cluster(n, &faulty);
                let answered = workload(&mut c, 4, f, &liars);
                assert_eq!(answered, 4, "n={n} f={f} {behaviour:?}");
                assert!(
                    c.evidence.iter().all(|e| liars.contains(&e.accused)),
                    "{:?}",
                    c.evidence
                );
                assert_correct_replicas_agree(&c, &liars);
                let execs: Vec<_> = c
                    .replicas
                    .iter()
                    .filter(|r| !liars.contains(&r.id()))
                    .map(|r| r.last_executed())
                    .collect();
                assert!(
                    execs.iter().all(|e| *e == execs[0]),
                    "n={n} {behaviour:?}: {execs:?}"
                );
            }
        }
    }

    /// Why the bound is tight: tolerating f = 1 needs 4 replicas; the
    /// configuration refuses 3, where one liar and one slow replica leave
    /// quorums of 2f+1 = 3 that intersect in no correct replica.
    #[test]
    fn three_replicas_cannot_tolerate_one_byzantine_and_are_refused() {
        use consensus_actors::config::{ConfigError, ConsensusConfig};
        use consensus_actors::plugin::PluginError;
        let mut config = ConsensusConfig::for_protocol(crate::PROTOCOL, 3);
        config.byzantine_tolerance = true;
        config.max_byzantine_nodes = 1;
        assert_eq!(
            crate::PbftConfig::from_consensus(&config),
            Err(PluginError::Config(ConfigError::TooFewForByzantine {
                n: 3,
                f: 1,
                needed: 4
            }))
        );
    }
}
