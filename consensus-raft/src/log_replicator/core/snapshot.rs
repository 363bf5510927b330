//! The LogReplicator core: Snapshots (§7): compaction of the node's own log, InstallSnapshot from the leader, and sending one.

use super::*;

impl<SM: StateMachine> ReplicationCore<SM>
where
    SM::Command: Sync,
{
    // ----- snapshots --------------------------------------------------------

    /// Takes a snapshot of the state machine at `last_applied` and purges the
    /// log up to `last_applied - keep_entries` (SnapshotCompactor decides
    /// when; §7). Entries kept after the purge point let slightly lagging
    /// followers catch up from the log.
    pub(super) fn on_compact(&mut self, keep_entries: u64) -> Result<SnapshotMeta, Refusal> {
        let index = self.last_applied;
        let current = self.log_progress().snapshot_index;
        if index <= current || index == LogIndex::ZERO {
            return Err(Refusal::NothingToCompact(current));
        }
        let Some(term) = self.log.term_at(index) else {
            return Err(Refusal::NothingToCompact(current));
        };
        let (_, membership) = self
            .configs
            .iter()
            .rev()
            .find(|(id, _)| id.index <= index)
            .cloned()
            .unwrap_or_else(|| self.configs[0].clone());
        let meta = SnapshotMeta {
            last_included: LogId::new(term, index),
            membership,
        };
        let snapshot = Arc::new(Snapshot {
            meta: meta.clone(),
            data: Arc::new(self.sm.snapshot()),
        });
        self.snapshot = Some(Arc::clone(&snapshot));
        self.emit(Effect::SaveSnapshot(snapshot));
        let purge_index = LogIndex(index.get().saturating_sub(keep_entries));
        if purge_index > self.log.snapshot_last().index {
            let purge_term = self.log.term_at(purge_index).unwrap_or(Term::ZERO);
            self.purge_to(LogId::new(purge_term, purge_index));
        }
        self.emit(Effect::event(RaftEvent::SnapshotTaken {
            meta: meta.clone(),
            purged_upto: self.log.snapshot_last().index,
        }));
        Ok(meta)
    }

    pub(super) fn purge_to(&mut self, upto: LogId) {
        self.log.purge_upto(upto);
        self.emit(Effect::PurgeLog(upto.index));
        // Configurations at or below the purge point collapse into the base.
        let keep_from = self
            .configs
            .iter()
            .rposition(|(id, _)| id.index <= upto.index)
            .unwrap_or(0);
        self.configs.drain(..keep_from);
    }

    /// Installs a snapshot received from `leader` of `term` (assembled by the
    /// compactor from InstallSnapshot chunks), then answers the leader's last
    /// chunk. §7, receiver: "If existing log entry has same index and term as
    /// snapshot's last included entry, retain log entries following it and
    /// reply. Discard the entire log. Reset state machine using snapshot
    /// contents (and load snapshot's cluster configuration)."
    pub(super) fn on_install_snapshot(
        &mut self,
        now_us: u64,
        term: Term,
        leader: NodeId,
        snapshot: Snapshot,
    ) -> Result<(), Refusal> {
        if term < self.term {
            return Err(Refusal::StaleTerm {
                expected: term,
                current: self.term,
            });
        }
        self.accept_leader(now_us, term, leader);
        let last = snapshot.meta.last_included;
        let reply = RaftMessage::InstallSnapshotResponse(InstallSnapshotResponse {
            term: self.term,
            last_included_index: last.index,
            next_offset: snapshot.data.len() as u64,
            done: true,
        });
        if last.index <= self.commit_index {
            // Already have everything it covers.
            self.send(leader, reply);
            return Ok(());
        }
        self.sm
            .restore(&snapshot.data)
            .map_err(|e| Refusal::BadSnapshot(e.0))?;
        let snapshot = Arc::new(snapshot);
        self.emit(Effect::SaveSnapshot(Arc::clone(&snapshot)));
        if self.log.matches(last) {
            // The log goes on after the snapshot: keep that suffix.
            self.purge_to(last);
        } else {
            // The snapshot replaces the whole log (not a truncation of
            // committed entries: the snapshot covers them).
            if self.log.last_index() > self.log.snapshot_last().index {
                let from = self.log.first_index();
                self.log.truncate_from(from);
            }
            self.log.purge_upto(last);
            self.emit(Effect::DiscardLog);
            self.emit(Effect::PurgeLog(last.index));
            self.configs = vec![(last, snapshot.meta.membership.clone())];
        }
        self.snapshot = Some(Arc::clone(&snapshot));
        self.commit_index = last.index;
        self.last_applied = last.index;
        while self.pending.front().is_some_and(|p| p.index <= last.index) {
            if let Some(p) = self.pending.pop_front() {
                self.emit(Effect::ProposalResult {
                    id: p.id,
                    result: Err(ProposeError::Unknown),
                });
            }
        }
        self.emit(Effect::event(RaftEvent::SnapshotTaken {
            meta: snapshot.meta.clone(),
            purged_upto: self.log.snapshot_last().index,
        }));
        self.send(leader, reply);
        Ok(())
    }

    /// The compactor finished sending the snapshot covering `last_included`
    /// to `peer`: replication resumes after it.
    pub(super) fn on_snapshot_sent(
        &mut self,
        term: Term,
        peer: NodeId,
        last_included: LogId,
    ) -> Result<(), Refusal> {
        self.check_term(term)?;
        let last = self.log.last_index();
        let Some(ls) = self.leader_state.as_mut() else {
            return Err(Refusal::NotLeader);
        };
        if let Some(p) = ls.progress.get_mut(&peer) {
            p.snapshotting = false;
            p.inflight.clear();
            if last_included.index > p.match_index && last_included.index <= last {
                p.match_index = last_included.index;
            }
            p.next_index = p.match_index.next();
            p.probing = true;
        }
        if self.membership().is_learner(peer) {
            let match_index = self.match_index_of(peer).unwrap_or_default();
            self.emit(Effect::event(RaftEvent::LearnerProgress {
                term,
                peer,
                match_index,
                last_log_index: last,
            }));
        }
        self.advance_commit_as_leader();
        self.maybe_send_append(peer, true);
        Ok(())
    }
}
