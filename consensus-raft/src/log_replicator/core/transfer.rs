//! The LogReplicator core: Leadership transfer (thesis §3.10): catch the target up, then TimeoutNow.

use super::*;

impl<SM: StateMachine> ReplicationCore<SM>
where
    SM::Command: Sync,
{
    // ----- leadership transfer ---------------------------------------------

    /// Starts handing leadership to `target` (thesis §3.10): proposals are
    /// refused meanwhile; once `target`'s log matches the leader's, it gets
    /// TimeoutNow. LeaderElection aborts the transfer after an election
    /// timeout ([`Input::AbortTransfer`]).
    pub(super) fn on_transfer_leadership(
        &mut self,
        term: Term,
        target: NodeId,
    ) -> Result<(), Refusal> {
        self.check_term(term)?;
        if self.role != NodeState::Leader {
            return Err(Refusal::NotLeader);
        }
        if target == self.id || !self.membership().is_voter(target) {
            return Err(Refusal::BadTransferTarget(target));
        }
        if let Some(ls) = self.leader_state.as_mut() {
            ls.transfer = Some(target);
        }
        self.maybe_send_timeout_now();
        self.maybe_send_append(target, true);
        Ok(())
    }

    /// Gives up a transfer that did not finish in time: proposals are
    /// accepted again.
    pub(super) fn on_abort_transfer(&mut self, term: Term) -> Result<(), Refusal> {
        self.check_term(term)?;
        match self.leader_state.as_mut() {
            Some(ls) => {
                ls.transfer = None;
                Ok(())
            }
            None => Err(Refusal::NotLeader),
        }
    }

    pub(super) fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let Some(ls) = self.leader_state.as_ref() else {
            return;
        };
        let Some(target) = ls.transfer else {
            return;
        };
        if ls
            .progress
            .get(&target)
            .is_some_and(|p| p.match_index == last)
        {
            let term = self.term;
            self.send(target, RaftMessage::TimeoutNow(TimeoutNow { term }));
        }
    }
}
