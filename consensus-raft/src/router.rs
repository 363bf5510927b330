//! The RaftRouter actor: the node's inbox on the network. It hands each
//! inbound message to the component that handles it, so the network needs
//! one recipient per node and components stay replaceable.

use crate::actors::{PeerMessage, ReplicatedCommand};
use crate::messages::RaftMessage;
use actix::prelude::*;
use consensus_actors::transport::{Envelope, Wire};
use consensus_actors::types::NodeId;

/// Dispatches inbound [`Envelope`]s: RequestVote and AppendEntries (and
/// their responses) to the LogReplicator, vote responses and TimeoutNow to
/// LeaderElection, InstallSnapshot (and its responses) to the
/// SnapshotCompactor. Envelopes addressed to another node are dropped.
///
/// In a node built by [`RaftNodeBuilder`](crate::node::RaftNodeBuilder) the
/// network delivers to the LogReplicator, which handles the messages
/// [`for_log_replicator`] and forwards the others here: the messages of
/// nearly every step take one mailbox hop instead of two.
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

/// Whether the LogReplicator handles `msg`: RequestVote, AppendEntries and
/// AppendEntries responses (the messages of nearly every step). A
/// LogReplicator given the router with
/// [`LogReplicator::with_router`](crate::actors::LogReplicator::with_router) takes
/// the node's envelopes itself, handles these and hands the rest to the
/// router.
pub fn for_log_replicator<C>(msg: &RaftMessage<C>) -> bool {
    matches!(
        msg,
        RaftMessage::RequestVote(_)
            | RaftMessage::AppendEntries(_)
            | RaftMessage::AppendEntriesResponse(_)
    )
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
            m if for_log_replicator(m) => &self.replicator,
            RaftMessage::RequestVoteResponse(_) | RaftMessage::TimeoutNow(_) => &self.election,
            _ => &self.compactor,
        };
        to.do_send(PeerMessage {
            from: env.from,
            msg: env.msg,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{RequestVote, TimeoutNow};
    use consensus_actors::kv::KvCommand;
    use consensus_actors::types::{LogIndex, Term};

    /// RequestVote goes to the LogReplicator; TimeoutNow (LeaderElection's)
    /// does not.
    #[test]
    fn the_log_replicator_takes_request_vote_not_timeout_now() {
        let rv: RaftMessage<KvCommand> = RaftMessage::RequestVote(RequestVote {
            term: Term(2),
            candidate_id: NodeId(1),
            last_log_index: LogIndex(3),
            last_log_term: Term(1),
            pre_vote: false,
            leadership_transfer: false,
        });
        assert!(for_log_replicator(&rv));
        let tn: RaftMessage<KvCommand> = RaftMessage::TimeoutNow(TimeoutNow { term: Term(2) });
        assert!(!for_log_replicator(&tn));
    }
}
