//! The ballot leader election actor: ends a round every heartbeat period,
//! answers peers' heartbeats, and tells the Proposer each new leader.

use super::core::{ElectionCore, ElectionEffect, ElectionInput};
use crate::messages::{PaxosMessage, PaxosMessage as M};
use crate::wiring::{
    BallotTooLow, Configured, InjectPanic, LeaderChange, LocalRecipient, PeerMessage,
};
use actix::prelude::*;
use consensus_actors::transport::Transport;
use consensus_actors::types::NodeId;
use std::time::Duration;

/// The ballot leader election component (Multi-Paxos; idle in `paxos`).
/// See the [module documentation](self).
pub struct BallotLeaderElection {
    id: NodeId,
    members: Vec<NodeId>,
    majority: usize,
    period: Duration,
    enabled: bool,
    transport: Transport<PaxosMessage>,
    leader_change: LocalRecipient<LeaderChange>,
    core: ElectionCore,
    effects: Vec<ElectionEffect>,
}

impl BallotLeaderElection {
    /// The election of node `id`: one round every `period`; `enabled`
    /// false (basic Paxos) keeps it silent.
    pub fn new(
        id: NodeId,
        members: Vec<NodeId>,
        majority: usize,
        period: Duration,
        enabled: bool,
        transport: Transport<PaxosMessage>,
        leader_change: LocalRecipient<LeaderChange>,
    ) -> Self {
        Self {
            core: ElectionCore::new(id, members.clone(), majority),
            id,
            members,
            majority,
            period,
            enabled,
            transport,
            leader_change,
            effects: Vec::new(),
        }
    }

    fn step(&mut self, input: ElectionInput) {
        let mut out = std::mem::take(&mut self.effects);
        self.core.step(input, &mut out);
        for e in out.drain(..) {
            match e {
                ElectionEffect::Send { to, msg } => self.transport.send(to, msg),
                ElectionEffect::Leader(leader) => {
                    self.leader_change.do_send(LeaderChange { leader });
                }
            }
        }
        self.effects = out;
    }
}

impl Actor for BallotLeaderElection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.enabled {
            self.step(ElectionInput::RoundEnd);
            ctx.run_interval(self.period, |act, _ctx| act.step(ElectionInput::RoundEnd));
        }
    }
}

impl Supervised for BallotLeaderElection {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // A new ballot round 0: the others' ballots and the acceptors'
        // refusals raise it again.
        self.core = ElectionCore::new(self.id, self.members.clone(), self.majority);
    }
}

impl Handler<Configured> for BallotLeaderElection {
    type Result = ();

    fn handle(&mut self, m: Configured, _ctx: &mut Context<Self>) {
        let members = m.configs.latest().1.to_vec();
        if members.is_empty() || members == self.members {
            return;
        }
        self.majority = members.len() / 2 + 1;
        self.members = members.clone();
        self.step(ElectionInput::Members(members));
    }
}

impl Handler<PeerMessage> for BallotLeaderElection {
    type Result = ();

    fn handle(&mut self, m: PeerMessage, _ctx: &mut Context<Self>) {
        if !self.enabled {
            return;
        }
        let input = match m.msg {
            M::HeartbeatRequest(msg) => ElectionInput::Request { from: m.from, msg },
            M::HeartbeatReply(msg) => ElectionInput::Reply { from: m.from, msg },
            other => {
                tracing::debug!(message = other.name(), "not for the election");
                return;
            }
        };
        self.step(input);
    }
}

impl Handler<BallotTooLow> for BallotLeaderElection {
    type Result = ();

    fn handle(&mut self, m: BallotTooLow, _ctx: &mut Context<Self>) {
        self.step(ElectionInput::BallotTooLow {
            promised: m.promised,
        });
    }
}

impl Handler<InjectPanic> for BallotLeaderElection {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in BallotLeaderElection");
    }
}
