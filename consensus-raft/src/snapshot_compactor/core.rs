//! The SnapshotCompactor core: log compaction and snapshot transfer (§7).
//!
//! - **When to snapshot**: once the state machine has applied more than
//!   `snapshot_threshold` entries since the last snapshot, ask the owner to
//!   snapshot the state machine and purge the log
//!   ([`CompactorEffect::Compact`]).
//! - **Leader side**: a follower whose next entry is purged gets the
//!   snapshot in chunks of `snapshot_chunk_bytes`, one chunk in flight,
//!   driven by the follower's answers and resent after silence; when the
//!   follower has installed it, the owner resumes replication after it.
//! - **Follower side**: chunks are assembled in order (a chunk at another
//!   offset is answered with the offset expected); the complete snapshot is
//!   handed to the owner, which installs it and answers the last chunk.
//!
//! Term rules are the owner's: every chunk from a leader is reported with
//! [`CompactorEffect::ObserveLeader`] (term-carrying), a higher term in a
//! response with [`CompactorEffect::ObserveTerm`].

use crate::config::RaftConfig;
use crate::configuration::Membership;
use crate::events::{RaftEvent, Snapshot, SnapshotMeta};
use crate::messages::{InstallSnapshot, InstallSnapshotResponse};
use consensus_actors::types::{LogId, LogIndex, NodeId, NodeState, Term};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An output of [`SnapshotCore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompactorEffect {
    /// Send a chunk to a follower.
    SendChunk {
        /// The follower.
        to: NodeId,
        /// The chunk.
        msg: InstallSnapshot,
    },
    /// Answer a leader's chunk.
    SendResponse {
        /// The leader.
        to: NodeId,
        /// The answer.
        msg: InstallSnapshotResponse,
    },
    /// Ask the owner to snapshot the state machine and purge the log,
    /// keeping this many entries below the snapshot
    /// ([`Input::Compact`](crate::log_replicator::Input::Compact)).
    Compact {
        /// Entries to keep below the snapshot.
        keep_entries: u64,
    },
    /// Hand a complete snapshot to the owner
    /// ([`Input::InstallSnapshot`](crate::log_replicator::Input::InstallSnapshot)).
    Install {
        /// The sending leader's term.
        term: Term,
        /// The sending leader.
        leader: NodeId,
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// A follower installed the snapshot
    /// ([`Input::SnapshotSent`](crate::log_replicator::Input::SnapshotSent)).
    SnapshotSent {
        /// The leader's term.
        term: Term,
        /// The follower.
        peer: NodeId,
        /// What it now holds.
        last_included: LogId,
    },
    /// A chunk came from the leader of `term`
    /// ([`Input::ObserveLeader`](crate::log_replicator::Input::ObserveLeader)).
    ObserveLeader {
        /// The leader's term.
        term: Term,
        /// The leader.
        leader: NodeId,
    },
    /// A response carried a higher term.
    ObserveTerm {
        /// The term seen.
        term: Term,
    },
}

#[derive(Clone, Debug)]
struct Outgoing {
    snapshot: Arc<Snapshot>,
    offset: u64,
    sent_at_us: u64,
}

#[derive(Clone, Debug)]
struct Incoming {
    term: Term,
    leader: NodeId,
    last_included: LogId,
    membership: Membership,
    data: Vec<u8>,
}

/// One input of the SnapshotCompactor core; every input goes through
/// [`SnapshotCore::step`].
#[derive(Debug)]
pub enum CompactorInput<'a> {
    /// An event of the owner.
    Event(&'a RaftEvent),
    /// The owner's answer to [`CompactorEffect::Compact`].
    Compacted(Result<SnapshotMeta, crate::error::Refusal>),
    /// A chunk of a snapshot from the leader.
    InstallSnapshot {
        /// The sender.
        from: NodeId,
        /// The chunk.
        message: InstallSnapshot,
    },
    /// A follower's answer to a chunk.
    InstallSnapshotResponse {
        /// The follower.
        from: NodeId,
        /// Its answer.
        response: InstallSnapshotResponse,
    },
    /// The periodic check (every heartbeat interval).
    Tick,
}

/// The SnapshotCompactor core. See the [module documentation](self).
pub struct SnapshotCore {
    id: NodeId,
    cfg: RaftConfig,
    term: Term,
    role: NodeState,
    snapshot_index: LogIndex,
    last_applied: LogIndex,
    compacting: bool,
    outgoing: BTreeMap<NodeId, Outgoing>,
    incoming: Option<Incoming>,
    out: Vec<CompactorEffect>,
}

impl SnapshotCore {
    /// A core for node `id`; `snapshot_index` is the last index covered by
    /// the persisted snapshot (0 when none).
    pub fn new(id: NodeId, cfg: RaftConfig, snapshot_index: LogIndex) -> Self {
        Self {
            id,
            cfg,
            term: Term::ZERO,
            role: NodeState::Follower,
            snapshot_index,
            last_applied: snapshot_index,
            compacting: false,
            outgoing: BTreeMap::new(),
            incoming: None,
            out: Vec::new(),
        }
    }

    /// Takes the effects produced so far, in order.
    pub fn take_effects(&mut self) -> Vec<CompactorEffect> {
        std::mem::take(&mut self.out)
    }

    /// The last index covered by a snapshot, as last reported.
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot_index
    }

    /// Followers currently receiving a snapshot.
    pub fn transfers(&self) -> Vec<NodeId> {
        self.outgoing.keys().copied().collect()
    }

    /// An event from the owner.
    /// The one entry of the core: handles `input` at `now_us`, then checks
    /// the core's invariants (in debug builds), so no input can skip them.
    pub fn step(&mut self, now_us: u64, input: CompactorInput<'_>) {
        match input {
            CompactorInput::Event(event) => self.handle_event(now_us, event),
            CompactorInput::Compacted(result) => self.handle_compacted(result),
            CompactorInput::InstallSnapshot { from, message } => {
                self.handle_install_snapshot(now_us, from, message)
            }
            CompactorInput::InstallSnapshotResponse { from, response } => {
                self.handle_install_snapshot_response(now_us, from, response)
            }
            CompactorInput::Tick => self.tick(now_us),
        }
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
    }

    /// The core's invariants, checked after every step: no transfer to
    /// itself, every transfer's offset within its snapshot, and a snapshot
    /// being received only from a leader of a term the node has seen.
    pub fn check_invariants(&self) {
        assert!(
            !self.outgoing.contains_key(&self.id),
            "{}: sending a snapshot to itself",
            self.id
        );
        for (peer, o) in &self.outgoing {
            assert!(
                o.offset <= o.snapshot.data.len() as u64,
                "{}: offset {} past the end of the snapshot for {peer}",
                self.id,
                o.offset
            );
        }
        if let Some(inc) = &self.incoming {
            assert!(
                inc.term <= self.term,
                "{}: receiving a snapshot of term {} above its term {}",
                self.id,
                inc.term,
                self.term
            );
        }
    }

    fn handle_event(&mut self, now_us: u64, event: &RaftEvent) {
        match event {
            RaftEvent::RoleChanged { term, role, .. } => {
                if *term < self.term {
                    return;
                }
                if *term > self.term || *role != NodeState::Leader {
                    self.outgoing.clear();
                }
                if self.incoming.as_ref().is_some_and(|i| i.term < *term) {
                    self.incoming = None;
                }
                self.term = *term;
                self.role = *role;
            }
            RaftEvent::Progress(p) => {
                self.last_applied = p.last_applied;
                self.snapshot_index = self.snapshot_index.max(p.snapshot_index);
                self.maybe_compact();
            }
            RaftEvent::SnapshotTaken { meta, .. } => {
                self.snapshot_index = self.snapshot_index.max(meta.last_included.index);
                self.compacting = false;
            }
            RaftEvent::SnapshotNeeded {
                term,
                peer,
                snapshot,
            } => {
                if *term != self.term || self.role != NodeState::Leader {
                    return;
                }
                let same = self
                    .outgoing
                    .get(peer)
                    .is_some_and(|o| o.snapshot.meta.last_included == snapshot.meta.last_included);
                if !same {
                    self.outgoing.insert(
                        *peer,
                        Outgoing {
                            snapshot: Arc::clone(snapshot),
                            offset: 0,
                            sent_at_us: now_us,
                        },
                    );
                    self.send_chunk(now_us, *peer);
                }
            }
            _ => {}
        }
    }

    /// §7: "once the log holds more than snapshot_threshold entries since
    /// the last snapshot, take a snapshot of the state machine and purge the
    /// log".
    fn maybe_compact(&mut self) {
        let since = self
            .last_applied
            .get()
            .saturating_sub(self.snapshot_index.get());
        if !self.compacting && since >= self.cfg.snapshot_threshold {
            self.compacting = true;
            self.out.push(CompactorEffect::Compact {
                keep_entries: self.cfg.snapshot_keep_entries,
            });
        }
    }

    /// The owner's answer to [`CompactorEffect::Compact`].
    fn handle_compacted(&mut self, result: Result<SnapshotMeta, crate::error::Refusal>) {
        self.compacting = false;
        if let Ok(meta) = result {
            self.snapshot_index = self.snapshot_index.max(meta.last_included.index);
        }
    }

    fn send_chunk(&mut self, now_us: u64, peer: NodeId) {
        let chunk = self.cfg.snapshot_chunk_bytes as u64;
        let term = self.term;
        let Some(o) = self.outgoing.get_mut(&peer) else {
            return;
        };
        let data = &o.snapshot.data;
        let len = data.len() as u64;
        let start = o.offset.min(len);
        let end = (start + chunk).min(len);
        o.sent_at_us = now_us;
        let meta = &o.snapshot.meta;
        let msg = InstallSnapshot {
            term,
            leader_id: self.id,
            last_included_index: meta.last_included.index,
            last_included_term: meta.last_included.term,
            offset: start,
            data: data[start as usize..end as usize].to_vec(),
            done: end == len,
            membership: meta.membership.clone(),
        };
        self.out.push(CompactorEffect::SendChunk { to: peer, msg });
    }

    /// InstallSnapshot at a follower (§7, receiver implementation): "Reply
    /// immediately if term < currentTerm"; "Create new snapshot file if first
    /// chunk (offset is 0)"; "Write data into snapshot file at given offset";
    /// "Reply and wait for more data chunks if done is false"; when done,
    /// hand the snapshot to the owner, which installs it and replies.
    fn handle_install_snapshot(&mut self, _now_us: u64, from: NodeId, m: InstallSnapshot) {
        let reply = |term, next_offset| CompactorEffect::SendResponse {
            to: from,
            msg: InstallSnapshotResponse {
                term,
                last_included_index: m.last_included_index,
                next_offset,
                done: false,
            },
        };
        if m.term < self.term {
            self.out.push(reply(self.term, 0));
            return;
        }
        self.term = m.term;
        self.out.push(CompactorEffect::ObserveLeader {
            term: m.term,
            leader: m.leader_id,
        });
        let last_included = m.last_included();
        let same = self.incoming.as_ref().is_some_and(|i| {
            i.term == m.term && i.leader == m.leader_id && i.last_included == last_included
        });
        if !same {
            if m.offset != 0 {
                self.out.push(reply(m.term, 0));
                return;
            }
            self.incoming = Some(Incoming {
                term: m.term,
                leader: m.leader_id,
                last_included,
                membership: m.membership.clone(),
                data: Vec::new(),
            });
        }
        let max = self.cfg.max_snapshot_bytes;
        let Some(inc) = self.incoming.as_mut() else {
            return;
        };
        let have = inc.data.len() as u64;
        if m.offset != have {
            // A duplicate or a chunk out of order: say where we are.
            self.out.push(reply(m.term, have));
            return;
        }
        if have + m.data.len() as u64 > max {
            // A bounded buffer: refuse an oversized snapshot.
            tracing::warn!(
                bytes = have + m.data.len() as u64,
                max,
                "snapshot too large, dropped"
            );
            self.incoming = None;
            self.out.push(reply(m.term, 0));
            return;
        }
        inc.data.extend_from_slice(&m.data);
        if m.done {
            let Some(inc) = self.incoming.take() else {
                return;
            };
            self.out.push(CompactorEffect::Install {
                term: inc.term,
                leader: inc.leader,
                snapshot: Snapshot {
                    meta: SnapshotMeta {
                        last_included: inc.last_included,
                        membership: inc.membership,
                    },
                    data: Arc::new(inc.data),
                },
            });
        } else {
            let next = inc.data.len() as u64;
            self.out.push(reply(m.term, next));
        }
    }

    /// An answer from a follower receiving a snapshot.
    fn handle_install_snapshot_response(
        &mut self,
        now_us: u64,
        from: NodeId,
        r: InstallSnapshotResponse,
    ) {
        if r.term > self.term {
            self.out.push(CompactorEffect::ObserveTerm { term: r.term });
            self.outgoing.clear();
            return;
        }
        if r.term < self.term || self.role != NodeState::Leader {
            return;
        }
        let Some(o) = self.outgoing.get_mut(&from) else {
            return;
        };
        let last_included = o.snapshot.meta.last_included;
        if r.last_included_index != last_included.index {
            return;
        }
        if r.done {
            self.outgoing.remove(&from);
            self.out.push(CompactorEffect::SnapshotSent {
                term: self.term,
                peer: from,
                last_included,
            });
            return;
        }
        let len = o.snapshot.data.len() as u64;
        if r.next_offset <= len && r.next_offset != o.offset {
            o.offset = r.next_offset;
            self.send_chunk(now_us, from);
        } else if r.next_offset == o.offset {
            // The follower asks again for the chunk in flight (it restarted
            // or lost it).
            self.send_chunk(now_us, from);
        }
    }

    /// Periodic check (every heartbeat interval): resend a chunk that got no
    /// answer for two heartbeat intervals.
    fn tick(&mut self, now_us: u64) {
        let resend_after = 2 * self.cfg.heartbeat_interval_us();
        let stale: Vec<NodeId> = self
            .outgoing
            .iter()
            .filter(|(_, o)| now_us.saturating_sub(o.sent_at_us) >= resend_after)
            .map(|(&p, _)| p)
            .collect();
        for peer in stale {
            self.send_chunk(now_us, peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input goes through `step`, which ends with the invariant
    /// check: a core whose state is broken is caught whatever the input.
    #[test]
    fn every_input_runs_the_invariant_check() {
        let event = RaftEvent::Progress(crate::events::LogProgress::default());
        let make = || -> Vec<CompactorInput<'_>> {
            vec![
                CompactorInput::Event(&event),
                CompactorInput::Compacted(Err(crate::error::Refusal::Unavailable)),
                CompactorInput::InstallSnapshotResponse {
                    from: NodeId(2),
                    response: InstallSnapshotResponse {
                        term: Term(0),
                        last_included_index: LogIndex::ZERO,
                        next_offset: 0,
                        done: false,
                    },
                },
                CompactorInput::Tick,
            ]
        };
        for input in make() {
            let name = format!("{input:?}");
            let mut c = SnapshotCore::new(NodeId(1), cfg(), LogIndex::ZERO);
            // Break an invariant behind the core's back: a transfer to itself.
            c.outgoing.insert(
                NodeId(1),
                Outgoing {
                    snapshot: Arc::new(Snapshot {
                        meta: SnapshotMeta::default(),
                        data: Arc::new(Vec::new()),
                    }),
                    offset: 0,
                    sent_at_us: 0,
                },
            );
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.step(0, input);
            }));
            assert!(caught.is_err(), "{name} skipped the invariant check");
        }
    }
    use crate::error::Refusal;
    use crate::events::LogProgress;

    fn n(i: u64) -> NodeId {
        NodeId(i)
    }

    fn cfg() -> RaftConfig {
        RaftConfig {
            snapshot_threshold: 100,
            snapshot_keep_entries: 10,
            snapshot_chunk_bytes: 4,
            ..RaftConfig::default()
        }
    }

    fn progress(applied: u64, snapshot: u64) -> RaftEvent {
        RaftEvent::Progress(LogProgress {
            term: Term(1),
            commit_index: LogIndex(applied),
            last_applied: LogIndex(applied),
            last_log_index: LogIndex(applied),
            snapshot_index: LogIndex(snapshot),
        })
    }

    fn snapshot(data: &[u8]) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            meta: SnapshotMeta {
                last_included: LogId::new(Term(1), LogIndex(50)),
                membership: Membership::new([n(1), n(2)]),
            },
            data: Arc::new(data.to_vec()),
        })
    }

    fn leader() -> SnapshotCore {
        let mut c = SnapshotCore::new(n(1), cfg(), LogIndex::ZERO);
        c.handle_event(
            0,
            &RaftEvent::RoleChanged {
                term: Term(1),
                role: NodeState::Leader,
                leader: Some(n(1)),
            },
        );
        c
    }

    fn chunks(effects: &[CompactorEffect]) -> Vec<(u64, Vec<u8>, bool)> {
        effects
            .iter()
            .filter_map(|e| match e {
                CompactorEffect::SendChunk { msg, .. } => {
                    Some((msg.offset, msg.data.clone(), msg.done))
                }
                _ => None,
            })
            .collect()
    }

    fn answer(next_offset: u64, done: bool) -> InstallSnapshotResponse {
        InstallSnapshotResponse {
            term: Term(1),
            last_included_index: LogIndex(50),
            next_offset,
            done,
        }
    }

    /// §7 / the issue: once more than `snapshot_threshold` entries were
    /// applied since the last snapshot, compact (once until it is done).
    #[test]
    fn compacts_at_the_threshold_once() {
        let mut c = SnapshotCore::new(n(1), cfg(), LogIndex(20));
        c.handle_event(0, &progress(119, 20));
        assert!(c.take_effects().is_empty());
        c.handle_event(0, &progress(120, 20));
        assert_eq!(
            c.take_effects(),
            vec![CompactorEffect::Compact { keep_entries: 10 }]
        );
        c.handle_event(0, &progress(130, 20));
        assert!(c.take_effects().is_empty(), "one compaction at a time");
        c.handle_compacted(Err(Refusal::NothingToCompact(LogIndex(20))));
        c.handle_event(0, &progress(131, 20));
        assert_eq!(c.take_effects().len(), 1, "retried after a refusal");
        c.handle_compacted(Ok(SnapshotMeta {
            last_included: LogId::new(Term(1), LogIndex(131)),
            membership: Membership::empty(),
        }));
        c.handle_event(0, &progress(200, 131));
        assert!(c.take_effects().is_empty());
        assert_eq!(c.snapshot_index(), LogIndex(131));
    }

    /// §7: "the leader uses a new RPC called InstallSnapshot to send
    /// snapshots to followers that are too far behind", in chunks, each
    /// chunk sent after the previous one was acknowledged.
    #[test]
    fn leader_sends_chunks_in_order() {
        let mut c = leader();
        let snap = snapshot(b"0123456789");
        c.handle_event(
            5,
            &RaftEvent::SnapshotNeeded {
                term: Term(1),
                peer: n(2),
                snapshot: Arc::clone(&snap),
            },
        );
        let effects = c.take_effects();
        assert_eq!(chunks(&effects), vec![(0, b"0123".to_vec(), false)]);
        // Asking again for the same snapshot does not restart it.
        c.handle_event(
            6,
            &RaftEvent::SnapshotNeeded {
                term: Term(1),
                peer: n(2),
                snapshot: Arc::clone(&snap),
            },
        );
        assert!(c.take_effects().is_empty());
        c.handle_install_snapshot_response(7, n(2), answer(4, false));
        assert_eq!(
            chunks(&c.take_effects()),
            vec![(4, b"4567".to_vec(), false)]
        );
        c.handle_install_snapshot_response(8, n(2), answer(8, false));
        assert_eq!(chunks(&c.take_effects()), vec![(8, b"89".to_vec(), true)]);
        c.handle_install_snapshot_response(9, n(2), answer(10, true));
        assert_eq!(
            c.take_effects(),
            vec![CompactorEffect::SnapshotSent {
                term: Term(1),
                peer: n(2),
                last_included: LogId::new(Term(1), LogIndex(50))
            }]
        );
        assert!(c.transfers().is_empty());
    }

    /// A chunk without an answer is resent after two heartbeat intervals;
    /// losing leadership ends the transfers; a higher term is reported.
    #[test]
    fn silence_resends_and_leadership_loss_stops() {
        let mut c = leader();
        c.handle_event(
            0,
            &RaftEvent::SnapshotNeeded {
                term: Term(1),
                peer: n(3),
                snapshot: snapshot(b"abcdef"),
            },
        );
        c.take_effects();
        c.tick(99_999);
        assert!(c.take_effects().is_empty());
        c.tick(100_000);
        assert_eq!(
            chunks(&c.take_effects()),
            vec![(0, b"abcd".to_vec(), false)]
        );
        c.handle_install_snapshot_response(
            0,
            n(3),
            InstallSnapshotResponse {
                term: Term(4),
                ..answer(0, false)
            },
        );
        assert_eq!(
            c.take_effects(),
            vec![CompactorEffect::ObserveTerm { term: Term(4) }]
        );
        assert!(c.transfers().is_empty());
    }

    fn chunk(term: u64, offset: u64, data: &[u8], done: bool) -> InstallSnapshot {
        InstallSnapshot {
            term: Term(term),
            leader_id: n(1),
            last_included_index: LogIndex(50),
            last_included_term: Term(1),
            offset,
            data: data.to_vec(),
            done,
            membership: Membership::new([n(1), n(2)]),
        }
    }

    /// §7, receiver: chunks are written at their offset, the reply tells
    /// where to continue, and the complete snapshot goes to the owner.
    #[test]
    fn follower_assembles_chunks_and_hands_the_snapshot_over() {
        let mut c = SnapshotCore::new(n(2), cfg(), LogIndex::ZERO);
        c.handle_install_snapshot(0, n(1), chunk(1, 0, b"0123", false));
        assert_eq!(
            c.take_effects(),
            vec![
                CompactorEffect::ObserveLeader {
                    term: Term(1),
                    leader: n(1)
                },
                CompactorEffect::SendResponse {
                    to: n(1),
                    msg: answer(4, false)
                }
            ]
        );
        // A duplicate of the first chunk: "I have 4 bytes".
        c.handle_install_snapshot(0, n(1), chunk(1, 0, b"0123", false));
        assert_eq!(
            c.take_effects()[1],
            CompactorEffect::SendResponse {
                to: n(1),
                msg: answer(4, false)
            }
        );
        c.handle_install_snapshot(0, n(1), chunk(1, 4, b"45", true));
        let effects = c.take_effects();
        assert_eq!(
            effects[1],
            CompactorEffect::Install {
                term: Term(1),
                leader: n(1),
                snapshot: Snapshot {
                    meta: SnapshotMeta {
                        last_included: LogId::new(Term(1), LogIndex(50)),
                        membership: Membership::new([n(1), n(2)]),
                    },
                    data: Arc::new(b"012345".to_vec()),
                }
            }
        );
    }

    /// §7, receiver 1: "Reply immediately if term < currentTerm"; a chunk
    /// that does not start a snapshot we know is answered with offset 0.
    #[test]
    fn stale_or_unknown_chunks_are_refused() {
        let mut c = SnapshotCore::new(n(2), cfg(), LogIndex::ZERO);
        c.handle_event(
            0,
            &RaftEvent::RoleChanged {
                term: Term(3),
                role: NodeState::Follower,
                leader: None,
            },
        );
        c.handle_install_snapshot(0, n(1), chunk(2, 0, b"01", true));
        assert_eq!(
            c.take_effects(),
            vec![CompactorEffect::SendResponse {
                to: n(1),
                msg: InstallSnapshotResponse {
                    term: Term(3),
                    ..answer(0, false)
                }
            }]
        );
        c.handle_install_snapshot(0, n(1), chunk(3, 4, b"45", true));
        let effects = c.take_effects();
        assert_eq!(
            effects[1],
            CompactorEffect::SendResponse {
                to: n(1),
                msg: InstallSnapshotResponse {
                    term: Term(3),
                    ..answer(0, false)
                }
            }
        );
    }
}
