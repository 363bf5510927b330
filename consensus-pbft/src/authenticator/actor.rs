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
