//! The LogReplicator core: ReadIndex reads (thesis §6.4): served once the leader has heard from a quorum in its term and applied up to the read index.

use super::*;

impl<SM: StateMachine> ReplicationCore<SM>
where
    SM::Command: Sync,
{
    // ----- ReadIndex --------------------------------------------------------

    /// Linearizable reads through ReadIndex (thesis §6.4): the read index is
    /// the commit index, or the leader's no-op if that is not yet committed;
    /// the leader confirms it is still leader with a round of heartbeats
    /// acknowledged by a quorum; the read is served once the state machine
    /// has applied the read index.
    pub(super) fn on_read_index(&mut self, ids: Vec<ReadId>) {
        let max = self.cfg.max_pending_proposals;
        let Some(ls) = self.leader_state.as_mut() else {
            let leader = self.leader.filter(|&l| l != self.id);
            for id in ids {
                self.emit(Effect::ReadFailed {
                    id,
                    error: ProposeError::NotLeader { leader },
                });
            }
            return;
        };
        if ids.is_empty() {
            return;
        }
        ls.round += 1;
        let index = self.commit_index.max(ls.first_index);
        let round = ls.round;
        let mut refused = Vec::new();
        for id in ids {
            if ls.reads.len() >= max {
                refused.push(id);
            } else {
                ls.reads.push_back(PendingRead { id, index, round });
            }
        }
        for id in refused {
            self.emit(Effect::ReadFailed {
                id,
                error: ProposeError::Busy,
            });
        }
        self.maybe_serve_reads();
        self.broadcast_append(true);
    }

    pub(super) fn maybe_serve_reads(&mut self) {
        let applied = self.last_applied;
        let membership = &self.configs[self.configs.len() - 1].1;
        let Some(ls) = self.leader_state.as_mut() else {
            return;
        };
        let mut ready = Vec::new();
        while let Some(front) = ls.reads.front() {
            if applied < front.index {
                break;
            }
            let mut granted: BTreeSet<NodeId> = ls
                .progress
                .iter()
                .filter(|(_, p)| p.acked_round >= front.round)
                .map(|(&id, _)| id)
                .collect();
            granted.insert(self.id);
            if !membership.is_quorum(&granted) {
                break;
            }
            ready.push(front.id);
            ls.reads.pop_front();
        }
        for id in ready {
            self.emit(Effect::ReadReady { id });
        }
    }
}
