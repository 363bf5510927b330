//! The MessageAuthenticator actor: the node's inbox. Authentic messages go
//! on to the component that owns them ([`owner_of`]: the engine, the
//! ViewChanger, the CheckpointProtocol, or REPLYs to the client proxy); the
//! others are dropped and recorded as evidence against their sender.

use super::core::Keys;
use super::verify::{check_inbound, VerifyCache};
use crate::engine::core::ReplicaConfig;
use crate::engine::replica::{owner_of, Owner};
use crate::evidence::{Evidence, EvidenceLog};
use crate::messages::PbftMessage;
use crate::node::{ClientReply, Inbound};
use actix::prelude::*;
use consensus_actors::transport::Envelope;

/// Where authentic messages go.
pub struct Routes {
    /// REQUEST, PRE-PREPARE, PREPARE, COMMIT.
    pub engine: Recipient<Inbound>,
    /// VIEW-CHANGE, NEW-VIEW.
    pub view_changer: Recipient<Inbound>,
    /// CHECKPOINT, FETCH-STATE, state transfer.
    pub checkpoint: Recipient<Inbound>,
    /// REPLYs.
    pub clients: Recipient<ClientReply>,
}

/// See the [module documentation](self).
pub struct Authenticator {
    keys: Keys,
    cache: VerifyCache,
    routes: Routes,
    evidence: EvidenceLog,
}

impl Authenticator {
    /// The authenticator of `cfg.id`.
    pub fn new(cfg: &ReplicaConfig, routes: Routes, evidence: EvidenceLog) -> Self {
        Self {
            keys: Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members),
            cache: VerifyCache::new(),
            routes,
            evidence,
        }
    }
}

impl Actor for Authenticator {
    type Context = Context<Self>;
}

impl Supervised for Authenticator {}

impl Handler<Envelope<PbftMessage>> for Authenticator {
    type Result = ();

    fn handle(&mut self, env: Envelope<PbftMessage>, _ctx: &mut Context<Self>) {
        if env.to != self.keys.me() {
            return;
        }
        if let Err(refused) = check_inbound(&self.keys, &mut self.cache, env.from, &env.msg) {
            match refused.accused {
                Some(accused) => self.evidence.record(Evidence {
                    witness: self.keys.me(),
                    accused,
                    kind: refused.kind,
                    proof: refused.proof,
                }),
                None => tracing::debug!(from = %env.from, why = %refused.proof, "dropped"),
            }
            return;
        }
        let to = match owner_of(&env.msg) {
            Owner::Client => {
                // The clients trust REPLYs from their own node's replica
                // without a MAC; that replica hands them over directly,
                // never through the network, so one that claims to come
                // from here is dropped.
                if env.from == self.keys.me() {
                    tracing::debug!("a REPLY from this node through the network: dropped");
                    return;
                }
                if let Some(replies) = env.msg.into_replies() {
                    self.routes.clients.do_send(ClientReply {
                        from: env.from,
                        replies,
                    });
                }
                return;
            }
            Owner::Engine => &self.routes.engine,
            Owner::ViewChanger => &self.routes.view_changer,
            Owner::Checkpoint => &self.routes.checkpoint,
        };
        to.do_send(Inbound {
            from: env.from,
            msg: env.msg,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::tests::config;
    use crate::messages::{Maced, Reply};
    use crate::types::{SeqNo, View};
    use consensus_actors::sim::block_on_paused;
    use consensus_actors::types::{ClientId, NodeId};
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Records what reaches it.
    struct Sink<M>(Rc<RefCell<Vec<M>>>);

    impl<M: 'static> Actor for Sink<M> {
        type Context = Context<Self>;
    }

    impl<M: Message<Result = ()> + 'static> Handler<M> for Sink<M> {
        type Result = ();
        fn handle(&mut self, msg: M, _: &mut Context<Self>) {
            self.0.borrow_mut().push(msg);
        }
    }

    /// The clients take their own node's REPLYs without a MAC, so one
    /// that arrives through the network claiming to come from this node
    /// never reaches them; a peer's goes on (its MAC checked there).
    #[test]
    fn a_reply_claiming_to_come_from_this_node_is_dropped() {
        block_on_paused(async {
            let engine = Sink::<Inbound>(Rc::default()).start().recipient();
            let got = Rc::new(RefCell::new(Vec::new()));
            let clients = Sink::<ClientReply>(Rc::clone(&got)).start().recipient();
            let routes = Routes {
                engine: engine.clone(),
                view_changer: engine.clone(),
                checkpoint: engine,
                clients,
            };
            let auth = Authenticator::new(&config(0, 4), routes, EvidenceLog::new()).start();
            let reply = |replica: u64| {
                PbftMessage::Reply(Maced {
                    body: Reply {
                        view: View(0),
                        seq: SeqNo(1),
                        timestamp: 5,
                        node: NodeId(0),
                        client: ClientId(1),
                        replica: NodeId(replica),
                        result: Vec::new(),
                    },
                    auth: Vec::new(),
                })
            };
            for from in [0, 2] {
                auth.do_send(Envelope {
                    from: NodeId(from),
                    to: NodeId(0),
                    msg: reply(from),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let got = got.borrow();
            assert_eq!(got.len(), 1, "only the peer's");
            assert_eq!(got[0].from, NodeId(2));
        })
        .expect("runtime builds");
    }
}
