//! The node's router: the inbox the network delivers to and the bus the
//! components talk through. It hands each peer message to the component
//! the paper gives it to, and forwards the local messages of
//! [`wiring`](crate::wiring) to their component. It holds no protocol
//! state (a restart loses nothing).

use crate::messages::{PaxosMessage, PaxosMessage as M};
use crate::wiring::{
    Abandon, BallotTooLow, Compact, Configured, Decided, LeaderChange, PeerMessage, Proposed, Track,
};
use actix::prelude::*;
use consensus_actors::transport::Envelope;
use consensus_actors::types::NodeId;

/// Where the router sends what.
#[derive(Clone)]
pub struct RouterTargets {
    /// Prepare, Accept.
    pub acceptor: Recipient<PeerMessage>,
    /// Promise, Nack; [`Decided`], [`LeaderChange`].
    pub proposer: Recipient<PeerMessage>,
    /// Accepted, Chosen, CatchUp(+Reply), InstallSnapshot; [`Proposed`],
    /// [`Track`], [`Abandon`].
    pub learner: Recipient<PeerMessage>,
    /// Heartbeats; [`BallotTooLow`].
    pub election: Recipient<PeerMessage>,
    /// The Proposer's [`Decided`].
    pub decided: Recipient<Decided>,
    /// The Proposer's [`LeaderChange`].
    pub leader_change: Recipient<LeaderChange>,
    /// The Learner's [`Proposed`].
    pub proposed: Recipient<Proposed>,
    /// The Learner's [`Track`].
    pub track: Recipient<Track>,
    /// The Learner's [`Abandon`].
    pub abandon: Recipient<Abandon>,
    /// The election's [`BallotTooLow`].
    pub ballot_too_low: Recipient<BallotTooLow>,
    /// The Acceptor's [`Compact`] (`None`: an acceptor that keeps
    /// everything).
    pub compact: Option<Recipient<Compact>>,
    /// The Proposer's and the election's [`Configured`].
    pub configured: Vec<Recipient<Configured>>,
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
        let target = match &env.msg {
            M::Prepare(_) | M::Accept(_) => &self.to.acceptor,
            M::Promise(_) | M::Nack(_) => &self.to.proposer,
            M::Accepted(_)
            | M::Chosen(_)
            | M::CatchUp(_)
            | M::CatchUpReply(_)
            | M::InstallSnapshot(_) => &self.to.learner,
            M::HeartbeatRequest(_) | M::HeartbeatReply(_) => &self.to.election,
        };
        target.do_send(PeerMessage {
            from: env.from,
            msg: env.msg,
        });
    }
}

macro_rules! forward {
    ($msg:ty, $field:ident) => {
        impl Handler<$msg> for PaxosRouter {
            type Result = ();

            fn handle(&mut self, m: $msg, _ctx: &mut Context<Self>) {
                self.to.$field.do_send(m);
            }
        }
    };
}

forward!(Decided, decided);
forward!(LeaderChange, leader_change);
forward!(Proposed, proposed);
forward!(Track, track);
forward!(Abandon, abandon);
forward!(BallotTooLow, ballot_too_low);

impl Handler<Configured> for PaxosRouter {
    type Result = ();

    fn handle(&mut self, m: Configured, _ctx: &mut Context<Self>) {
        for to in &self.to.configured {
            to.do_send(m.clone());
        }
    }
}

impl Handler<Compact> for PaxosRouter {
    type Result = ();

    fn handle(&mut self, m: Compact, _ctx: &mut Context<Self>) {
        if let Some(to) = &self.to.compact {
            to.do_send(m);
        }
    }
}
