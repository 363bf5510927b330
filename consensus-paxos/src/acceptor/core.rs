//! The Acceptor's logic (Lamport, "Paxos Made Simple", §2.2 and §2.3):
//!
//! * **Prepare** `b` (phase 1a): if `b` is at least the promised ballot, the
//!   acceptor promises `b` (durably) and answers with what it accepted in the
//!   slots asked about; otherwise it refuses with the ballot it promised
//!   ([`Nack`]).
//! * **Accept** `(b, slot, v)` (phase 2a): if `b` is at least the promised
//!   ballot, it accepts (durably; a higher `b` also raises the promise) and
//!   answers [`Accepted`]; otherwise [`Nack`].
//!
//! One promise covers every slot (Multi-Paxos). Everything the answer
//! depends on is handed out as [`AcceptorEffect::PersistPromise`] or
//! [`AcceptorEffect::PersistAccepted`] first: the actor
//! writes and syncs it before it sends anything.
//!
//! # Compaction
//!
//! [`AcceptorInput::Compact`] `s` (from this node's learner, once its
//! snapshot up to `s` is durable) forgets the acceptances of every slot up
//! to `s`. The promise is never forgotten. Why forgetting is safe:
//!
//! * The learner sends `Compact(s)` only for slots it *delivered*, so each
//!   slot `t <= s` holds a value `v` accepted by a phase-2 quorum `Q2` at
//!   some ballot `b`: `v` is chosen.
//! * Paxos needs the acceptances only so that a proposer with a ballot
//!   above `b` learns `v` in phase 1 (P2c): its phase-1 quorum `Q1` meets
//!   `Q2` in an acceptor that reports `(b' >= b, v)` for `t`. After
//!   compaction that acceptor may report nothing for `t`, but it reports
//!   `compacted >= t` in its [`Promise`] instead,
//!   and the proposer never proposes in a slot at or below the highest
//!   `compacted` of its quorum (see the proposer). Either some acceptor of
//!   `Q1` compacted `t` (then `t` is left alone) or none did (then every
//!   acceptor of `Q1` still holds what it accepted in `t`, and the classic
//!   argument applies unchanged).
//! * The compaction point is part of the hard state, written and synced
//!   before the log is purged: a restarted acceptor cannot come back
//!   without its acceptances *and* without knowing it compacted them.
//! * An Accept for a compacted slot is ignored (the slot is chosen; the
//!   proposer's learner learns it from its peers).

use crate::messages::{
    Accept, Accepted, LazyAccepted, LazyAccepts, Nack, PaxosMessage, Prepare, Promise,
};
use crate::report::Report;
use crate::ring::SlotRing;
use crate::safety::PaxosEvent;
use crate::types::{Ballot, PValue, Slot, ValueRef};
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};

/// What the acceptor keeps as its hard state: the promise and the
/// compaction point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorHardState {
    /// The highest ballot promised.
    pub promised: Ballot,
    /// Every slot up to this one is chosen and its acceptances were
    /// forgotten (`Slot(0)`: none).
    #[serde(default)]
    pub compacted: Slot,
}

/// One acceptance as the acceptor's log keeps it (appended; on recovery
/// the highest ballot per slot wins).
pub type AcceptRecord = PValue;

/// An input of [`AcceptorCore::step`].
#[derive(Clone, Debug)]
pub enum AcceptorInput {
    /// Phase 1a from `from`.
    Prepare {
        /// The proposer's node.
        from: NodeId,
        /// The request.
        msg: Prepare,
    },
    /// Phase 2a from `from`.
    Accept {
        /// The proposer's node.
        from: NodeId,
        /// The request.
        msg: Accept,
    },
    /// Phase 2a, batched, for slots the proposer counts on other
    /// acceptors for first (thrifty Multi-Paxos): each accepted as a lone
    /// Accept would be, answered with one LazyAccepted (one Nack for any
    /// refused).
    LazyAccepts {
        /// The proposer's node.
        from: NodeId,
        /// The Accepts.
        msg: LazyAccepts,
    },
    /// The local learner's snapshot covers every slot up to `through`
    /// (durably): forget their acceptances.
    Compact {
        /// The last slot to forget.
        through: Slot,
    },
}

/// What the acceptor asks its actor to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum AcceptorEffect {
    /// Write the hard state (the promise).
    PersistPromise(AcceptorHardState),
    /// Append an acceptance to the log.
    PersistAccepted(AcceptRecord),
    /// Remove the log's acceptances of slots up to `through` (after the
    /// hard state naming the compaction point is synced).
    Purge {
        /// The last slot forgotten.
        through: Slot,
    },
    /// Send a message (only after every write before it is synced).
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        msg: PaxosMessage,
    },
    /// Report a safety event (after the sync).
    Report(Report),
}

impl AcceptorEffect {
    /// Whether the effect writes to storage.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            AcceptorEffect::PersistPromise(_) | AcceptorEffect::PersistAccepted(_)
        )
    }
}

/// The Acceptor's state. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct AcceptorCore {
    id: NodeId,
    promised: Ballot,
    compacted: Slot,
    accepted: SlotRing<(Ballot, ValueRef)>,
    /// The highest ballot of any acceptance (the invariants compare it
    /// with the promise in O(1)).
    max_accepted: Ballot,
    effects: Vec<AcceptorEffect>,
    /// Whether it hands out [`Report`]s (see [`set_reports`](Self::set_reports)).
    reports: bool,
}

impl AcceptorCore {
    /// A fresh acceptor (nothing promised, nothing accepted).
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            promised: Ballot::ZERO,
            compacted: Slot(0),
            accepted: SlotRing::new(),
            max_accepted: Ballot::ZERO,
            effects: Vec::new(),
            reports: true,
        }
    }

    /// Whether to hand out [`AcceptorEffect::Report`]s of acceptances (on by
    /// default). The stock actor turns them off when its safety sink is
    /// off, as in benchmarks: each holds a reference to the value, whose
    /// count is an atomic add and sub at every acceptance. Promise reports
    /// are always handed out.
    pub fn set_reports(&mut self, on: bool) {
        self.reports = on;
    }

    /// An acceptor rebuilt from what it stored: its hard state and its log
    /// of acceptances (replayed in order; the highest ballot per slot wins).
    pub fn recover(
        id: NodeId,
        hard: Option<AcceptorHardState>,
        records: impl IntoIterator<Item = AcceptRecord>,
    ) -> Self {
        let mut core = Self::new(id);
        let hard = hard.unwrap_or_default();
        core.promised = hard.promised;
        core.compacted = hard.compacted;
        for r in records {
            if r.slot <= core.compacted {
                // Compacted; the purge that removes it was not synced.
                continue;
            }
            let keep = core
                .accepted
                .get(r.slot)
                .is_none_or(|(b, _)| *b <= r.ballot);
            if keep {
                core.max_accepted = core.max_accepted.max(r.ballot);
                core.accepted.insert(r.slot, (r.ballot, r.value));
            }
        }
        core.check();
        core
    }

    /// The highest ballot promised.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The compaction point: every slot up to it is forgotten.
    pub fn compacted(&self) -> Slot {
        self.compacted
    }

    /// How many slots it holds acceptances for.
    pub fn retained(&self) -> usize {
        self.accepted.len()
    }

    /// What it accepted in `slot`, if anything.
    pub fn accepted(&self, slot: Slot) -> Option<(Ballot, &ValueRef)> {
        self.accepted.get(slot).map(|(b, v)| (*b, v))
    }

    /// Takes the effects of the last steps.
    pub fn take_effects(&mut self) -> Vec<AcceptorEffect> {
        std::mem::take(&mut self.effects)
    }

    /// The one entry: handles `input`, leaving its effects to
    /// [`take_effects`](Self::take_effects), and checks the invariants.
    pub fn step(&mut self, input: AcceptorInput) {
        let before = self.promised;
        let compacted_before = self.compacted;
        match input {
            AcceptorInput::Prepare { from, msg } => self.handle_prepare(from, msg),
            AcceptorInput::Accept { from, msg } => {
                self.handle_accept(from, msg, true);
            }
            AcceptorInput::LazyAccepts { from, msg } => {
                let mut refused = None;
                let mut accepted: Vec<(Ballot, Vec<Slot>)> = Vec::new();
                for a in msg.accepts {
                    if a.ballot < self.promised {
                        refused = refused.max(Some(a.ballot));
                        continue;
                    }
                    let (ballot, slot) = (a.ballot, a.slot);
                    if self.handle_accept(from, a, false) {
                        match accepted.last_mut() {
                            Some((b, slots)) if *b == ballot => slots.push(slot),
                            _ => accepted.push((ballot, vec![slot])),
                        }
                    }
                }
                for (ballot, slots) in accepted {
                    self.effects.push(AcceptorEffect::Send {
                        to: from,
                        msg: PaxosMessage::LazyAccepted(LazyAccepted { ballot, slots }),
                    });
                }
                if let Some(ballot) = refused {
                    self.nack(from, ballot);
                }
            }
            AcceptorInput::Compact { through } => self.handle_compact(through),
        }
        // P1a: the promise never goes down; nothing forgotten comes back.
        assert!(self.promised >= before, "promise went down");
        assert!(self.compacted >= compacted_before, "compaction went back");
        self.check();
    }

    fn handle_prepare(&mut self, from: NodeId, msg: Prepare) {
        if msg.ballot < self.promised {
            self.nack(from, msg.ballot);
            return;
        }
        if msg.ballot > self.promised {
            self.promised = msg.ballot;
            self.effects
                .push(AcceptorEffect::PersistPromise(self.hard_state()));
        }
        // Compacted slots are not reported: `compacted` says they are chosen.
        let first = msg.first.max(Slot(self.compacted.0 + 1));
        let range = self.collect(self.accepted.range(first, msg.last));
        self.effects.push(AcceptorEffect::Report(Report::Event(
            PaxosEvent::Promised {
                acceptor: self.id,
                ballot: msg.ballot,
            },
        )));
        self.effects.push(AcceptorEffect::Send {
            to: from,
            msg: PaxosMessage::Promise(Promise {
                ballot: msg.ballot,
                accepted: range,
                compacted: self.compacted,
            }),
        });
    }

    fn collect(&self, slots: Vec<(Slot, &(Ballot, ValueRef))>) -> Vec<PValue> {
        slots
            .into_iter()
            .map(|(slot, (ballot, value))| PValue {
                slot,
                ballot: *ballot,
                value: ValueRef::clone(value),
            })
            .collect()
    }

    /// Accepts `msg` unless it is below the promise; answers `from` (an
    /// Accepted, or a Nack) when `answer`. True when it holds `msg`'s
    /// acceptance afterwards.
    fn handle_accept(&mut self, from: NodeId, msg: Accept, answer: bool) -> bool {
        if msg.ballot < self.promised {
            if answer {
                self.nack(from, msg.ballot);
            }
            return false;
        }
        if msg.slot <= self.compacted {
            // Chosen and forgotten: accepting again could only repeat the
            // chosen value, which this acceptor can no longer check.
            tracing::debug!(acceptor = %self.id, slot = %msg.slot, "accept for a compacted slot ignored");
            return false;
        }
        if msg.ballot > self.promised {
            // Accepting b is promising b: a lower ballot cannot be accepted
            // after it.
            self.promised = msg.ballot;
            self.effects
                .push(AcceptorEffect::PersistPromise(self.hard_state()));
            self.effects.push(AcceptorEffect::Report(Report::Event(
                PaxosEvent::Promised {
                    acceptor: self.id,
                    ballot: msg.ballot,
                },
            )));
        }
        // A leader's next slot is the ring's next place: O(1).
        let Accept {
            ballot,
            slot,
            value,
            ..
        } = msg;
        let fresh = (ballot, ValueRef::clone(&value));
        let same = match self.accepted.get_mut(slot) {
            None => {
                self.accepted.insert(slot, fresh);
                false
            }
            Some(held) => {
                let (b, v) = &*held;
                let equal = ValueRef::ptr_eq(v, &value) || **v == *value;
                // One ballot proposes one value per slot.
                assert!(
                    *b != ballot || equal,
                    "two values at {} in {}",
                    ballot,
                    slot
                );
                let same = *b == ballot;
                if !same {
                    *held = fresh;
                }
                same
            }
        };
        // The record takes the message's reference to the value: one
        // count update fewer per acceptance.
        let report = self.reports.then(|| ValueRef::clone(&value));
        if !same {
            self.max_accepted = self.max_accepted.max(ballot);
            self.effects
                .push(AcceptorEffect::PersistAccepted(AcceptRecord {
                    slot,
                    ballot,
                    value,
                }));
        }
        if let Some(value) = report {
            self.effects.push(AcceptorEffect::Report(Report::Accepted {
                acceptor: self.id,
                slot,
                ballot,
                value,
            }));
        }
        if answer {
            self.effects.push(AcceptorEffect::Send {
                to: from,
                msg: PaxosMessage::Accepted(Accepted { ballot, slot }),
            });
        }
        true
    }

    fn handle_compact(&mut self, through: Slot) {
        if through <= self.compacted {
            return;
        }
        self.compacted = through;
        self.accepted.forget_through(through);
        // The compaction point first (synced), then the purge: see the
        // module documentation.
        self.effects
            .push(AcceptorEffect::PersistPromise(self.hard_state()));
        self.effects.push(AcceptorEffect::Purge { through });
    }

    fn hard_state(&self) -> AcceptorHardState {
        AcceptorHardState {
            promised: self.promised,
            compacted: self.compacted,
        }
    }

    fn nack(&mut self, to: NodeId, ballot: Ballot) {
        debug_assert!(ballot < self.promised);
        self.effects.push(AcceptorEffect::Send {
            to,
            msg: PaxosMessage::Nack(Nack {
                ballot,
                promised: self.promised,
            }),
        });
    }

    /// Invariants after every step: every accepted ballot is at most the
    /// promise (accepting raises the promise), and every message sent is
    /// preceded by the writes it depends on.
    fn check(&self) {
        assert!(
            self.max_accepted <= self.promised,
            "accepted {} above the promise {}",
            self.max_accepted,
            self.promised
        );
        assert!(
            self.accepted
                .first_slot()
                .is_none_or(|s| s > self.compacted),
            "an acceptance kept at or below the compaction point {}",
            self.compacted
        );
        let first_send = self
            .effects
            .iter()
            .position(|e| matches!(e, AcceptorEffect::Send { .. }));
        if let Some(i) = first_send {
            debug_assert!(
                self.effects[i..].iter().all(|e| !e.is_write()),
                "a write after a send in one step"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Value;

    fn n(i: u64) -> NodeId {
        NodeId(i)
    }

    fn v(tag: &str) -> ValueRef {
        use consensus_actors::kv::KvCommand;
        use consensus_actors::types::ClientId;
        ValueRef::new(Value {
            batch: Some(crate::types::BatchId {
                node: n(1),
                nonce: 0,
                seq: 0,
            }),
            requests: vec![crate::types::Request {
                client: ClientId(1),
                command: KvCommand::put("k", tag),
            }],
            reconfig: None,
        })
    }

    fn prepare(b: Ballot, first: u64, last: Option<u64>) -> AcceptorInput {
        AcceptorInput::Prepare {
            from: b.node,
            msg: Prepare {
                ballot: b,
                first: Slot(first),
                last: last.map(Slot),
            },
        }
    }

    /// Lazy Accepts are accepted as lone ones would be and answered with
    /// one LazyAccepted; those below the promise get one Nack between
    /// them, and nothing is answered per slot.
    #[test]
    fn lazy_accepts_are_accepted_and_answered_once() {
        let mut a = AcceptorCore::new(n(2));
        let b1 = Ballot::new(1, n(1));
        let b2 = Ballot::new(2, n(3));
        a.step(prepare(b2, 5, Some(5)));
        a.take_effects();
        let lazy = |ballot: Ballot, slots: &[u64]| {
            Accept {
                ballot,
                slot: Slot(0),
                value: v("x"),
                commit: None,
            }
            .clone_for(slots)
        };
        let mut accepts = lazy(b2, &[1, 2]);
        accepts.extend(lazy(b1, &[3]));
        a.step(AcceptorInput::LazyAccepts {
            from: n(3),
            msg: LazyAccepts { accepts },
        });
        let effects = a.take_effects();
        let sends: Vec<&PaxosMessage> = effects
            .iter()
            .filter_map(|e| match e {
                AcceptorEffect::Send { msg, .. } => Some(msg),
                _ => None,
            })
            .collect();
        assert_eq!(
            sends,
            [
                &PaxosMessage::LazyAccepted(LazyAccepted {
                    ballot: b2,
                    slots: vec![Slot(1), Slot(2)],
                }),
                &PaxosMessage::Nack(Nack {
                    ballot: b1,
                    promised: b2,
                }),
            ]
        );
        assert!(a.accepted(Slot(1)).is_some() && a.accepted(Slot(2)).is_some());
        assert!(a.accepted(Slot(3)).is_none(), "below the promise");
        // Written before anything is sent.
        let first_send = effects
            .iter()
            .position(|e| matches!(e, AcceptorEffect::Send { .. }))
            .unwrap();
        assert_eq!(
            effects[..first_send]
                .iter()
                .filter(|e| matches!(e, AcceptorEffect::PersistAccepted(_)))
                .count(),
            2
        );
    }

    impl Accept {
        /// This Accept in each of `slots`.
        fn clone_for(&self, slots: &[u64]) -> Vec<Accept> {
            slots
                .iter()
                .map(|s| Accept {
                    slot: Slot(*s),
                    ..self.clone()
                })
                .collect()
        }
    }

    fn accept(b: Ballot, slot: u64, value: ValueRef) -> AcceptorInput {
        AcceptorInput::Accept {
            from: b.node,
            msg: Accept {
                ballot: b,
                slot: Slot(slot),
                value,
                commit: None,
            },
        }
    }

    #[test]
    fn a_promise_is_persisted_before_it_is_sent_and_reports_what_was_accepted() {
        let mut a = AcceptorCore::new(n(3));
        let b1 = Ballot::new(1, n(1));
        a.step(accept(b1, 4, v("x")));
        let fx = a.take_effects();
        assert!(matches!(fx[0], AcceptorEffect::PersistPromise(_)));
        assert!(matches!(fx[2], AcceptorEffect::PersistAccepted(_)));
        let b2 = Ballot::new(2, n(2));
        a.step(prepare(b2, 1, None));
        let fx = a.take_effects();
        assert_eq!(
            fx[0],
            AcceptorEffect::PersistPromise(AcceptorHardState {
                promised: b2,
                compacted: Slot(0)
            })
        );
        match &fx[2] {
            AcceptorEffect::Send {
                to,
                msg: PaxosMessage::Promise(p),
            } => {
                assert_eq!(*to, n(2));
                assert_eq!(p.accepted.len(), 1);
                assert_eq!(p.accepted[0].slot, Slot(4));
                assert_eq!(p.accepted[0].ballot, b1);
            }
            other => panic!("expected a promise, got {other:?}"),
        }
        // A bounded prepare sees only its slots.
        a.step(prepare(b2, 5, Some(5)));
        match &a.take_effects()[..] {
            [AcceptorEffect::Report(_), AcceptorEffect::Send {
                msg: PaxosMessage::Promise(p),
                ..
            }] => assert!(p.accepted.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    /// With reports off (a sink that checks nothing), an acceptance is
    /// persisted and answered as before, without its report.
    #[test]
    fn reports_off_leaves_out_only_the_acceptance_report() {
        let b1 = Ballot::new(1, n(1));
        let mut on = AcceptorCore::new(n(3));
        let mut off = AcceptorCore::new(n(3));
        off.set_reports(false);
        on.step(accept(b1, 4, v("x")));
        off.step(accept(b1, 4, v("x")));
        let with: Vec<_> = on
            .take_effects()
            .into_iter()
            .filter(|e| !matches!(e, AcceptorEffect::Report(Report::Accepted { .. })))
            .collect();
        assert_eq!(off.take_effects(), with);
        assert!(with
            .iter()
            .any(|e| matches!(e, AcceptorEffect::PersistAccepted(_))));
        assert!(with
            .iter()
            .any(|e| matches!(e, AcceptorEffect::Send { .. })));
    }

    #[test]
    fn lower_ballots_are_refused_with_the_promise() {
        let mut a = AcceptorCore::new(n(1));
        let high = Ballot::new(5, n(2));
        a.step(prepare(high, 1, None));
        a.take_effects();
        for input in [
            prepare(Ballot::new(4, n(3)), 1, None),
            accept(Ballot::new(5, n(1)), 1, v("y")),
        ] {
            a.step(input);
            let fx = a.take_effects();
            assert_eq!(fx.len(), 1);
            match &fx[0] {
                AcceptorEffect::Send {
                    msg: PaxosMessage::Nack(nack),
                    ..
                } => assert_eq!(nack.promised, high),
                other => panic!("{other:?}"),
            }
        }
        assert!(a.accepted(Slot(1)).is_none());
    }

    #[test]
    fn recovery_keeps_the_promise_and_the_highest_acceptance() {
        let b1 = Ballot::new(1, n(1));
        let b3 = Ballot::new(3, n(2));
        let a = AcceptorCore::recover(
            n(1),
            Some(AcceptorHardState {
                promised: b3,
                compacted: Slot(0),
            }),
            [
                PValue {
                    slot: Slot(1),
                    ballot: b1,
                    value: v("old"),
                },
                PValue {
                    slot: Slot(1),
                    ballot: b3,
                    value: v("new"),
                },
            ],
        );
        assert_eq!(a.promised(), b3);
        let (b, value) = a.accepted(Slot(1)).unwrap();
        assert_eq!(b, b3);
        assert_eq!(**value, *v("new"));
    }

    #[test]
    fn a_duplicate_accept_is_answered_without_a_second_write() {
        let mut a = AcceptorCore::new(n(1));
        let b = Ballot::new(1, n(2));
        a.step(accept(b, 1, v("x")));
        a.take_effects();
        a.step(accept(b, 1, v("x")));
        let fx = a.take_effects();
        assert!(fx.iter().all(|e| !e.is_write()));
        assert!(fx.iter().any(|e| matches!(
            e,
            AcceptorEffect::Send {
                msg: PaxosMessage::Accepted(_),
                ..
            }
        )));
    }

    #[test]
    fn compaction_forgets_chosen_slots_keeps_the_promise_and_says_so_in_promises() {
        let mut a = AcceptorCore::new(n(1));
        let b1 = Ballot::new(1, n(2));
        for slot in 1..=4 {
            a.step(accept(b1, slot, v("x")));
            a.take_effects();
        }
        a.step(AcceptorInput::Compact { through: Slot(2) });
        // The compaction point is written before the log is purged.
        assert_eq!(
            a.take_effects(),
            [
                AcceptorEffect::PersistPromise(AcceptorHardState {
                    promised: b1,
                    compacted: Slot(2),
                }),
                AcceptorEffect::Purge { through: Slot(2) },
            ]
        );
        assert_eq!(a.retained(), 2);
        assert!(a.accepted(Slot(2)).is_none());
        // Compacting again below the point does nothing.
        a.step(AcceptorInput::Compact { through: Slot(1) });
        assert!(a.take_effects().is_empty());
        // A Prepare from slot 1 hears about slots 3 and 4 and the point.
        let b2 = Ballot::new(2, n(3));
        a.step(prepare(b2, 1, None));
        let promise = a
            .take_effects()
            .into_iter()
            .find_map(|e| match e {
                AcceptorEffect::Send {
                    msg: PaxosMessage::Promise(p),
                    ..
                } => Some(p),
                _ => None,
            })
            .unwrap();
        assert_eq!(promise.compacted, Slot(2));
        assert_eq!(
            promise.accepted.iter().map(|p| p.slot).collect::<Vec<_>>(),
            [Slot(3), Slot(4)]
        );
        // An Accept in a compacted slot is ignored, one above it accepted.
        a.step(accept(b2, 2, v("y")));
        assert!(a.take_effects().is_empty());
        assert!(a.accepted(Slot(2)).is_none());
        a.step(accept(b2, 5, v("y")));
        assert!(a
            .take_effects()
            .iter()
            .any(|e| matches!(e, AcceptorEffect::PersistAccepted(_))));
        // Recovery skips the records the unsynced purge left behind.
        let r = AcceptorCore::recover(
            n(1),
            Some(AcceptorHardState {
                promised: b2,
                compacted: Slot(2),
            }),
            (1..=3).map(|s| PValue {
                slot: Slot(s),
                ballot: b1,
                value: v("x"),
            }),
        );
        assert_eq!(r.compacted(), Slot(2));
        assert_eq!(r.retained(), 1);
        assert!(r.accepted(Slot(3)).is_some());
    }
}
