//! The RaftRouter actor: the node's inbox on the network. It hands each
//! inbound message to the component that handles it, so the network needs
//! one recipient per node and components stay replaceable.

use super::{PeerMessage, ReplicatedCommand};
use crate::messages::RaftMessage;
use actix::prelude::*;
use consensus_actors::transport::{Envelope, Wire};
use consensus_actors::types::NodeId;

/// Dispatches inbound [`Envelope`]s: RequestVote and AppendEntries (and
/// their responses) to the LogReplicator, vote responses and TimeoutNow to
/// LeaderElection, InstallSnapshot (and its responses) to the
/// SnapshotCompactor. Envelopes addressed to another node are dropped.
pub struct RaftRouter<C: ReplicatedCommand> {
    id: NodeId,
    replicator: Recipient<PeerMessage<C>>,
    election: Recipient<PeerMessage<C>>,
    compactor: Recipient<PeerMessage<C>>,
}

impl<C: ReplicatedCommand> RaftRouter<C> {
    /// A router for node `id`.
    pub fn new(
        id: NodeId,
        replicator: Recipient<PeerMessage<C>>,
        election: Recipient<PeerMessage<C>>,
        compactor: Recipient<PeerMessage<C>>,
    ) -> Self {
        Self {
            id,
            replicator,
            election,
            compactor,
        }
    }
}

impl<C: ReplicatedCommand> Actor for RaftRouter<C> {
    type Context = Context<Self>;
}

impl<C: ReplicatedCommand> Supervised for RaftRouter<C> {}

impl<C> Handler<Envelope<RaftMessage<C>>> for RaftRouter<C>
where
    C: ReplicatedCommand,
    RaftMessage<C>: Wire,
{
    type Result = ();

    fn handle(&mut self, env: Envelope<RaftMessage<C>>, _ctx: &mut Context<Self>) {
        if env.to != self.id {
            tracing::warn!(node = %self.id, to = %env.to, "misrouted envelope dropped");
            return;
        }
        let to = match &env.msg {
            RaftMessage::RequestVote(_)
            | RaftMessage::AppendEntries(_)
            | RaftMessage::AppendEntriesResponse(_) => &self.replicator,
            RaftMessage::RequestVoteResponse(_) | RaftMessage::TimeoutNow(_) => &self.election,
            RaftMessage::InstallSnapshot(_) | RaftMessage::InstallSnapshotResponse(_) => {
                &self.compactor
            }
        };
        to.do_send(PeerMessage {
            from: env.from,
            msg: env.msg,
        });
    }
}
