//! The LogReplicator core: Commit and apply: the commit index only grows, and committed entries are applied in log order.

use super::*;

impl<SM: StateMachine> ReplicationCore<SM>
where
    SM::Command: Sync,
{
    // ----- commit and apply -----------------------------------------------

    pub(super) fn commit_to(&mut self, index: LogIndex) {
        assert!(index > self.commit_index, "the commit index only grows");
        assert!(index <= self.log.last_index());
        let from = self.commit_index.next();
        self.commit_index = index;
        if self.observe_commits {
            let n = (index.get() - from.get() + 1) as usize;
            self.emit(Effect::Committed(self.log.slice(from, n)));
        }
        self.apply_committed();
    }

    /// Figure 2, all servers: "If commitIndex > lastApplied: increment
    /// lastApplied, apply log[lastApplied] to state machine", and return the
    /// output to the proposer.
    pub(super) fn apply_committed(&mut self) {
        while self.last_applied < self.commit_index {
            let index = self.last_applied.next();
            let entry = match self.log.get(index) {
                Some(e) => Arc::clone(e),
                None => panic!("committed entry {index} missing from the log"),
            };
            // Only a proposal waiting at this index (of this entry's term)
            // gets the output; other replicas skip building it.
            let observed = self
                .pending
                .iter()
                .take_while(|p| p.index <= index)
                .any(|p| p.index == index && p.term == entry.term);
            let mut output = match &entry.command {
                RaftCommand::Normal(c) if observed => Some(self.sm.apply(c)),
                RaftCommand::Normal(c) => {
                    self.sm.apply_unobserved(c);
                    None
                }
                RaftCommand::Noop | RaftCommand::ConfigChange(_) => None,
            };
            self.last_applied = index;
            while let Some(p) = self.pending.front().copied() {
                if p.index > index {
                    break;
                }
                self.pending.pop_front();
                let result = if p.index < index {
                    // Replaced by a snapshot we did not write.
                    Err(ProposeError::Unknown)
                } else if p.term == entry.term {
                    output
                        .take()
                        .map(|output| Committed {
                            log_id: LogId::new(entry.term, index),
                            output,
                        })
                        .ok_or(ProposeError::Unknown)
                } else {
                    Err(ProposeError::Dropped)
                };
                self.emit(Effect::ProposalResult { id: p.id, result });
            }
        }
        self.maybe_serve_reads();
    }
}
