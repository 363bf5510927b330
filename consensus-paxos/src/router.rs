//! The node's router: the inbox the network delivers to. It hands each
//! peer message to the component the paper gives it to, and holds no
//! protocol state (a restart loses nothing). Local messages (see
//! [`wiring`](crate::wiring)) do not pass through it: each goes straight
//! to its component. Neither do a node's messages to itself: the node's
//! [`Loopback`] hands them to the component at once, without the network.

use crate::messages::{PaxosMessage, PaxosMessage as M};
use crate::wiring::{LocalFeed, LocalRecipient, PeerMessage};
use actix::prelude::*;
use consensus_actors::transport::{Envelope, EnvelopeSink, Transport};
use consensus_actors::types::NodeId;

/// Where the router sends what.
#[derive(Clone)]
pub struct RouterTargets {
    /// Prepare, Accept.
    pub acceptor: LocalRecipient<PeerMessage>,
    /// Promise, Nack.
    pub proposer: LocalRecipient<PeerMessage>,
    /// Accepted, Chosen, Commit, CatchUp(+Reply), InstallSnapshot; and a
    /// copy of every Accept from a peer (see [`deliver_from_peer`](Self::deliver_from_peer)).
    pub learner: LocalRecipient<PeerMessage>,
    /// Heartbeats.
    pub election: LocalRecipient<PeerMessage>,
    /// The node's own acceptor's Accepted, when the Learner takes them
    /// itself ([`LearnerHandles::takes_own_accepted`](crate::slots::LearnerHandles::takes_own_accepted));
    /// unbound: they go to `learner` like the others.
    pub own_accepted: LocalFeed<PeerMessage>,
}

impl RouterTargets {
    /// Targets not bound yet (see [`LocalRecipient`]).
    pub fn unbound() -> Self {
        Self {
            acceptor: LocalRecipient::unbound(),
            proposer: LocalRecipient::unbound(),
            learner: LocalRecipient::unbound(),
            election: LocalRecipient::unbound(),
            own_accepted: LocalFeed::default(),
        }
    }

    /// The component that handles `msg`.
    pub fn target(&self, msg: &PaxosMessage) -> &LocalRecipient<PeerMessage> {
        match msg {
            M::Prepare(_) | M::Accept(_) | M::LazyAccepts(_) => &self.acceptor,
            M::Promise(_) | M::Nack(_) => &self.proposer,
            M::Accepted(_)
            | M::LazyAccepted(_)
            | M::Chosen(_)
            | M::Commit(_)
            | M::CatchUp(_)
            | M::CatchUpReply(_)
            | M::InstallSnapshot(_) => &self.learner,
            M::HeartbeatRequest(_) | M::HeartbeatReply(_) => &self.election,
        }
    }

    /// Hands `msg` from `from` to its component.
    pub fn deliver(&self, from: NodeId, msg: PaxosMessage) {
        self.target(&msg).do_send(PeerMessage { from, msg });
    }

    /// Hands `msg`, which came from peer `from` over the network, to its
    /// component, and an Accept to the Learner too: a Multi-Paxos learner
    /// learns the values of the slots a later [`Commit`](crate::messages::Commit)
    /// names from the Accepts that went by.
    pub fn deliver_from_peer(&self, from: NodeId, msg: PaxosMessage) {
        match &msg {
            M::Accept(a) => self.learner.do_send(PeerMessage {
                from,
                msg: M::Accept(a.clone()),
            }),
            M::LazyAccepts(b) => self.learner.do_send(PeerMessage {
                from,
                msg: M::LazyAccepts(b.clone()),
            }),
            _ => {}
        }
        self.deliver(from, msg);
    }
}

/// The router. See the [module documentation](self).
pub struct PaxosRouter {
    id: NodeId,
    to: RouterTargets,
}

impl PaxosRouter {
    /// The router of node `id`.
    pub fn new(id: NodeId, to: RouterTargets) -> Self {
        Self { id, to }
    }
}

impl Actor for PaxosRouter {
    type Context = Context<Self>;
}

impl Supervised for PaxosRouter {}

impl Handler<Envelope<PaxosMessage>> for PaxosRouter {
    type Result = ();

    fn handle(&mut self, env: Envelope<PaxosMessage>, _ctx: &mut Context<Self>) {
        if env.to != self.id {
            tracing::debug!(to = %env.to, "envelope for another node dropped");
            return;
        }
        self.to.deliver_from_peer(env.from, env.msg);
    }
}

/// The node's own end of its transport: a message a component sends to
/// its own node (a leader's Accept to its own acceptor, that acceptor's
/// Accepted to its own learner) goes straight to the component that
/// handles it; every other message goes to the network.
pub struct Loopback {
    id: NodeId,
    network: Transport<PaxosMessage>,
    local: RouterTargets,
}

impl Loopback {
    /// The transport of node `id`: its own messages to `local`, the rest
    /// through `network`.
    pub fn transport(
        id: NodeId,
        network: Transport<PaxosMessage>,
        local: RouterTargets,
    ) -> Transport<PaxosMessage> {
        Transport::direct(id, std::sync::Arc::new(Self { id, network, local }))
    }
}

impl EnvelopeSink<PaxosMessage> for Loopback {
    fn send(&self, env: Envelope<PaxosMessage>) {
        if env.to == self.id {
            if matches!(env.msg, M::Accepted(_)) && self.local.own_accepted.is_taken() {
                self.local.own_accepted.send(PeerMessage {
                    from: env.from,
                    msg: env.msg,
                });
                return;
            }
            self.local.deliver(env.from, env.msg);
        } else {
            self.network.send(env.to, env.msg);
        }
    }
}
