//! The MessageAuthenticator actor: the node's inbox. Authentic messages go
//! on (to the replica, or REPLYs to the client proxy); the others are
//! dropped and recorded as evidence against their sender.

use super::core::Keys;
use super::verify::{check_inbound, VerifyCache};
use crate::engine::core::ReplicaConfig;
use crate::evidence::{Evidence, EvidenceLog};
use crate::messages::PbftMessage;
use crate::node::{ClientReply, Inbound};
use actix::prelude::*;
use consensus_actors::transport::Envelope;

/// See the [module documentation](self).
pub struct Authenticator {
    keys: Keys,
    cache: VerifyCache,
    replica: Recipient<Inbound>,
    clients: Recipient<ClientReply>,
    evidence: EvidenceLog,
}

impl Authenticator {
    /// The authenticator of `cfg.id`.
    pub fn new(
        cfg: &ReplicaConfig,
        replica: Recipient<Inbound>,
        clients: Recipient<ClientReply>,
        evidence: EvidenceLog,
    ) -> Self {
        Self {
            keys: Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members),
            cache: VerifyCache::new(),
            replica,
            clients,
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
        match env.msg {
            PbftMessage::Reply(r) => self.clients.do_send(ClientReply(r.body)),
            msg => self.replica.do_send(Inbound {
                from: env.from,
                msg,
            }),
        }
    }
}
