//! The LogReplicator core: AppendEntries on both sides: the follower's consistency check and append (§5.3), and the leader's proposals, replication, flow control and commit advance (§5.3, §5.4.2).

use super::*;

impl<SM: StateMachine> ReplicationCore<SM>
where
    SM::Command: Sync,
{
    // ----- AppendEntries, follower side -------------------------------------

    /// AppendEntries RPC, receiver implementation (Figure 2), with the
    /// conflict hint of §5.3 in the rejection.
    pub(super) fn on_append_entries(
        &mut self,
        now_us: u64,
        from: NodeId,
        ae: AppendEntries<SM::Command>,
    ) {
        // 1. "Reply false if term < currentTerm."
        if ae.term < self.term {
            self.send(
                from,
                RaftMessage::AppendEntriesResponse(AppendEntriesResponse {
                    term: self.term,
                    success: false,
                    match_index: ae.prev_log_index,
                    conflict_term: None,
                    conflict_index: LogIndex::ZERO,
                    round: ae.round,
                }),
            );
            return;
        }
        self.accept_leader(now_us, ae.term, ae.leader_id);
        if self.role == NodeState::Leader {
            // Our own message echoed back (a misrouted duplicate): ignore.
            return;
        }
        let last_new = LogIndex(ae.prev_log_index.get() + ae.entries.len() as u64);
        let prev = ae.prev_log_id();
        let mut entries = ae.entries;
        let purged = self.log.snapshot_last();
        if prev.index < purged.index {
            // Entries up to the snapshot are committed and therefore match.
            let skip = (purged.index.get() - prev.index.get()) as usize;
            if skip >= entries.len() {
                entries.clear();
            } else {
                entries.drain(..skip);
            }
        } else if !self.log.matches(prev) {
            // 2. "Reply false if log doesn't contain an entry at prevLogIndex
            //    whose term matches prevLogTerm."
            let (conflict_term, conflict_index) = match self.log.term_at(prev.index) {
                None => (None, self.log.last_index().next()),
                Some(t) => (Some(t), self.log.first_index_of_term_at(prev.index)),
            };
            self.send(
                from,
                RaftMessage::AppendEntriesResponse(AppendEntriesResponse {
                    term: self.term,
                    success: false,
                    match_index: ae.prev_log_index,
                    conflict_term,
                    conflict_index,
                    round: ae.round,
                }),
            );
            return;
        }
        // 3. "If an existing entry conflicts with a new one (same index but
        //    different terms), delete the existing entry and all that follow
        //    it." 4. "Append any new entries not already in the log."
        let mut first_new = entries.len();
        for (k, e) in entries.iter().enumerate() {
            match self.log.term_at(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    assert!(
                        e.index > self.commit_index,
                        "a committed entry ({}) would be truncated",
                        e.index
                    );
                    self.truncate_from(e.index);
                    first_new = k;
                    break;
                }
                None => {
                    first_new = k;
                    break;
                }
            }
        }
        if first_new < entries.len() {
            // Usually every entry is new: the request's vector is reused.
            let new: Vec<_> = if first_new == 0 {
                entries
            } else {
                entries.drain(first_new..).collect()
            };
            self.append_entries_to_log(&new);
            self.emit(Effect::AppendLog(new));
        }
        // 5. "If leaderCommit > commitIndex, set commitIndex =
        //    min(leaderCommit, index of last new entry)."
        if ae.leader_commit > self.commit_index {
            let new_commit = ae.leader_commit.min(last_new).min(self.log.last_index());
            if new_commit > self.commit_index {
                self.commit_to(new_commit);
            }
        }
        self.send(
            from,
            RaftMessage::AppendEntriesResponse(AppendEntriesResponse {
                term: self.term,
                success: true,
                match_index: last_new,
                conflict_term: None,
                conflict_index: LogIndex::ZERO,
                round: ae.round,
            }),
        );
    }

    pub(super) fn truncate_from(&mut self, from: LogIndex) {
        self.log.truncate_from(from);
        self.emit(Effect::TruncateLog(from));
        // A configuration takes effect when appended, so removing it reverts
        // to the previous one (§6).
        while self.configs.len() > 1 && self.configs[self.configs.len() - 1].0.index >= from {
            self.configs.pop();
        }
    }

    pub(super) fn append_entries_to_log(&mut self, entries: &[EntryRef<SM::Command>]) {
        for e in entries {
            if let RaftCommand::ConfigChange(m) = &e.command {
                self.configs.push((e.log_id(), m.clone()));
            }
            self.log.append(Arc::clone(e));
        }
    }

    // ----- leader side ------------------------------------------------------

    /// Client proposals ([`Input::Propose`]): appended and replicated as
    /// one batch by a leader, refused otherwise.
    pub(super) fn on_propose(
        &mut self,
        now_us: u64,
        batch: impl IntoIterator<Item = Proposal<SM::Command>>,
    ) {
        let batch = batch.into_iter();
        let refuse = match &self.leader_state {
            None => Some(ProposeError::NotLeader {
                leader: self.leader.filter(|&l| l != self.id),
            }),
            Some(ls) if ls.transfer.is_some() => Some(ProposeError::TransferInProgress),
            Some(_) => None,
        };
        if let Some(err) = refuse {
            for p in batch {
                self.emit(Effect::ProposalResult {
                    id: p.id,
                    result: Err(err.clone()),
                });
            }
            return;
        }
        let room = self
            .cfg
            .max_pending_proposals
            .saturating_sub(self.pending.len());
        let mut entries = Vec::with_capacity(batch.size_hint().0.min(room));
        let mut index = self.log.last_index();
        for (k, p) in batch.into_iter().enumerate() {
            if k >= room {
                self.emit(Effect::ProposalResult {
                    id: p.id,
                    result: Err(ProposeError::Busy),
                });
                continue;
            }
            index = index.next();
            self.pending.push_back(PendingProposal {
                index,
                term: self.term,
                id: p.id,
            });
            entries.push(Arc::new(LogEntry::new(
                self.term,
                index,
                RaftCommand::Normal(p.command),
                now_us,
                p.client_id,
            )));
        }
        if entries.is_empty() {
            return;
        }
        self.append_as_leader(entries);
        // The leader's own append moves the commit index only where it is
        // a majority alone (see Membership::is_sole_voter); every other
        // change to the match indexes already ran the commit rule.
        if self.membership().is_sole_voter(self.id) {
            self.advance_commit_as_leader();
        }
        self.broadcast_append(false);
    }

    pub(super) fn append_as_leader(&mut self, entries: Vec<EntryRef<SM::Command>>) {
        debug_assert_eq!(self.role, NodeState::Leader);
        let reconfigures = entries
            .iter()
            .any(|e| matches!(e.command, RaftCommand::ConfigChange(_)));
        self.append_entries_to_log(&entries);
        self.emit(Effect::AppendLog(entries));
        // The set of followers changes only with the configuration (a
        // configuration entry here, or a commit: see finish_step).
        if reconfigures {
            self.sync_progress();
        }
    }

    /// Proposes a configuration entry (MembershipManager). One change at a
    /// time: refused while a configuration entry is uncommitted, and before
    /// the leader committed an entry of its own term (thesis §4.1).
    pub(super) fn on_propose_membership(
        &mut self,
        now_us: u64,
        term: Term,
        membership: Membership,
    ) -> Result<LogId, Refusal> {
        self.check_term(term)?;
        let Some(ls) = &self.leader_state else {
            return Err(Refusal::NotLeader);
        };
        if self.commit_index < ls.first_index {
            return Err(Refusal::LeaderNotReady);
        }
        if self.configs[self.configs.len() - 1].0.index > self.commit_index {
            return Err(Refusal::ConfigChangePending);
        }
        let index = self.log.last_index().next();
        let entry = Arc::new(LogEntry::new(
            self.term,
            index,
            RaftCommand::ConfigChange(membership),
            now_us,
            ClientId::default(),
        ));
        let id = entry.log_id();
        self.append_as_leader(vec![entry]);
        self.advance_commit_as_leader();
        self.broadcast_append(false);
        Ok(id)
    }

    /// Keeps one progress record per member of the effective and committed
    /// configurations (removed members keep receiving the log until the
    /// configuration without them is committed, so they learn of it).
    pub(super) fn sync_progress(&mut self) {
        let Some(ls) = self.leader_state.as_mut() else {
            return;
        };
        let mut targets: BTreeSet<NodeId> = self.configs[self.configs.len() - 1].1.all_members();
        let committed = self
            .configs
            .iter()
            .rev()
            .find(|(id, _)| id.index <= self.commit_index)
            .unwrap_or(&self.configs[0]);
        targets.extend(committed.1.all_members());
        targets.remove(&self.id);
        ls.progress.retain(|id, _| targets.contains(id));
        let last = self.log.last_index();
        for t in targets {
            ls.progress.entry(t).or_insert_with(|| Progress::new(last));
        }
    }

    /// Figure 2, leaders: "If there exists an N such that N > commitIndex, a
    /// majority of matchIndex[i] >= N, and log[N].term == currentTerm: set
    /// commitIndex = N" (both majorities while joint, §6).
    pub(super) fn advance_commit_as_leader(&mut self) {
        let Some(ls) = &self.leader_state else {
            return;
        };
        let own = self.log.last_index();
        let n = self.membership().committed_index(|id| {
            if id == self.id {
                own
            } else {
                ls.progress
                    .get(&id)
                    .map(|p| p.match_index)
                    .unwrap_or(LogIndex::ZERO)
            }
        });
        if n > self.commit_index && self.log.term_at(n) == Some(self.term) {
            self.commit_to(n);
        }
    }

    pub(super) fn send(&mut self, to: NodeId, msg: RaftMessage<SM::Command>) {
        self.emit(Effect::Send { to, msg });
    }

    pub(super) fn append_limits(&self) -> AppendLimits {
        AppendLimits {
            max_entries: self.cfg.max_log_entries_per_append,
            max_inflight: self.cfg.max_inflight_appends,
            coalesce: self.cfg.coalesce_appends,
        }
    }

    pub(super) fn broadcast_append(&mut self, heartbeat: bool) {
        let mut peers = std::mem::take(&mut self.scratch_peers);
        let Some(ls) = &self.leader_state else {
            return;
        };
        if heartbeat {
            peers.extend(ls.progress.keys().copied());
        } else {
            // Without a heartbeat only followers that want entries get a
            // call (most proposals find every window busy: Nagle).
            let (last, purged) = (self.log.last_index(), self.log.snapshot_last().index);
            let limits = self.append_limits();
            peers.extend(
                ls.progress
                    .iter()
                    .filter(|(_, p)| !p.snapshotting && p.wants_append(last, purged, &limits))
                    .map(|(&id, _)| id),
            );
        }
        for &peer in &peers {
            self.maybe_send_append(peer, heartbeat);
        }
        peers.clear();
        self.scratch_peers = peers;
    }

    /// Sends AppendEntries to `peer` while its window has room and entries
    /// remain; with `heartbeat`, sends an empty one when nothing else left.
    /// Returns whether anything was sent.
    pub(super) fn maybe_send_append(&mut self, peer: NodeId, heartbeat: bool) -> bool {
        let limits = self.append_limits();
        let max_entries = limits.max_entries;
        let term = self.term;
        let commit = self.commit_index;
        let last = self.log.last_index();
        let purged = self.log.snapshot_last();
        let Some(ls) = self.leader_state.as_mut() else {
            return false;
        };
        let round = ls.round;
        let tick = ls.ticks;
        let Some(p) = ls.progress.get_mut(&peer) else {
            return false;
        };
        if p.snapshotting {
            return false;
        }
        let mut sent = false;
        let mut msgs = std::mem::take(&mut self.scratch_appends);
        let mut snapshot_needed = None;
        loop {
            if !p.wants_append(last, purged.index, &limits) {
                // The window is full, nothing is left, or (Nagle) a
                // partial request waits while another is unanswered: the
                // answer sends everything accumulated meanwhile.
                break;
            }
            if p.next_index <= purged.index {
                // The entries it needs are purged: it gets the snapshot.
                p.snapshotting = true;
                p.inflight.clear();
                snapshot_needed = self.snapshot.clone();
                break;
            }
            let prev_index = p.next_index.prev();
            let Some(prev_term) = self.log.term_at(prev_index) else {
                break;
            };
            let entries = self.log.slice(p.next_index, max_entries);
            debug_assert!(!entries.is_empty());
            let last_sent = entries[entries.len() - 1].index;
            p.inflight.push_back((last_sent, tick));
            p.next_index = last_sent.next();
            msgs.push(AppendEntries {
                term,
                leader_id: self.id,
                prev_log_index: prev_index,
                prev_log_term: prev_term,
                entries,
                leader_commit: commit,
                round,
            });
            sent = true;
        }
        if !sent && heartbeat && !p.snapshotting {
            // An empty AppendEntries. While probing with nothing in flight
            // it is anchored at nextIndex - 1 and so probes the follower's
            // log (a rejection starts the back-off); otherwise at the last
            // index known to match, so it succeeds and carries the commit
            // index without disturbing the pipeline.
            let anchor = if p.probing && p.inflight.is_empty() {
                p.next_index.prev()
            } else {
                p.match_index
            }
            .max(purged.index);
            if let Some(prev_term) = self.log.term_at(anchor) {
                msgs.push(AppendEntries {
                    term,
                    leader_id: self.id,
                    prev_log_index: anchor,
                    prev_log_term: prev_term,
                    entries: Vec::new(),
                    leader_commit: commit,
                    round,
                });
                sent = true;
            }
        }
        if let Some(snapshot) = snapshot_needed {
            self.emit(Effect::event(RaftEvent::SnapshotNeeded {
                term,
                peer,
                snapshot,
            }));
        }
        for m in msgs.drain(..) {
            self.emit(Effect::Send {
                to: peer,
                msg: RaftMessage::AppendEntries(m),
            });
        }
        self.scratch_appends = msgs;
        sent
    }

    /// AppendEntries response at the leader: advance match/next, back off
    /// fast on a conflict, commit by majority, confirm reads, send more.
    pub(super) fn on_append_entries_response(
        &mut self,
        _now_us: u64,
        from: NodeId,
        r: AppendEntriesResponse,
    ) {
        if r.term > self.term {
            self.become_follower(r.term, None);
            return;
        }
        if r.term < self.term || self.role != NodeState::Leader {
            return;
        }
        let term = self.term;
        let last = self.log.last_index();
        let Some(ls) = self.leader_state.as_mut() else {
            return;
        };
        let Some(p) = ls.progress.get_mut(&from) else {
            return;
        };
        p.acked_round = p.acked_round.max(r.round);
        let mut events = Vec::new();
        if !p.reported_active {
            p.reported_active = true;
            events.push(RaftEvent::PeerActive { term, peer: from });
        }
        let mut matched = false;
        if r.success {
            while p.inflight.front().is_some_and(|&(i, _)| i <= r.match_index) {
                p.inflight.pop_front();
            }
            if r.match_index > p.match_index {
                assert!(
                    r.match_index <= last,
                    "a follower matched beyond the leader's log"
                );
                p.match_index = r.match_index;
                matched = true;
            }
            if r.match_index.next() >= p.next_index {
                // Everything sent is acknowledged: the pipeline may open.
                p.probing = false;
            }
            if p.next_index <= p.match_index {
                p.next_index = p.match_index.next();
            }
        } else if r.match_index > p.match_index && r.match_index < p.next_index {
            // §5.3: "After a rejection, the leader decrements nextIndex and
            // retries", skipping a whole conflicting term at once.
            let hinted = match r.conflict_term {
                None => r.conflict_index,
                Some(t) => match self.log.last_index_of_term(t) {
                    Some(i) => i.next(),
                    None => r.conflict_index,
                },
            };
            p.next_index = hinted.min(r.match_index).max(p.match_index.next());
            p.inflight.clear();
            p.probing = true;
        }
        let learner_event = matched
            && self.configs[self.configs.len() - 1].1.is_learner(from)
            && self.leader_state.is_some();
        let match_index = self.match_index_of(from).unwrap_or_default();
        for e in events {
            self.emit(Effect::event(e));
        }
        if learner_event {
            self.emit(Effect::event(RaftEvent::LearnerProgress {
                term,
                peer: from,
                match_index,
                last_log_index: last,
            }));
        }
        if matched {
            // A match at or below the commit index cannot raise it: which
            // members hold each index above it is unchanged.
            if match_index > self.commit_index {
                self.advance_commit_as_leader();
            }
            self.maybe_send_timeout_now();
        }
        self.maybe_serve_reads();
        self.maybe_send_append(from, false);
    }

    /// The leader's heartbeat timer (every `heartbeat_interval_ms`): resend
    /// what looks lost, send a heartbeat to every follower, keep asking for
    /// the snapshots still being transferred.
    pub(super) fn on_tick(&mut self, _now_us: u64) {
        if self.role != NodeState::Leader {
            return;
        }
        let term = self.term;
        let snapshot = self.snapshot.clone();
        let Some(ls) = self.leader_state.as_mut() else {
            return;
        };
        ls.ticks += 1;
        let now_tick = ls.ticks;
        let mut needs_snapshot = Vec::new();
        for (&peer, p) in ls.progress.iter_mut() {
            p.reported_active = false;
            if p.inflight
                .front()
                .is_some_and(|&(_, sent)| now_tick - sent >= 2)
            {
                // Unanswered for two heartbeat intervals: assume the window
                // was lost and resend from the match point, one request at a
                // time.
                p.inflight.clear();
                p.next_index = p.match_index.next();
                p.probing = true;
            }
            if p.snapshotting {
                needs_snapshot.push(peer);
            }
        }
        if let Some(s) = snapshot {
            for peer in needs_snapshot {
                self.emit(Effect::event(RaftEvent::SnapshotNeeded {
                    term,
                    peer,
                    snapshot: Arc::clone(&s),
                }));
            }
        }
        self.broadcast_append(true);
    }
}
