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

use crate::messages::{Accept, Accepted, Nack, PaxosMessage, Prepare, Promise};
use crate::report::Report;
use crate::safety::PaxosEvent;
use crate::types::{Ballot, PValue, Slot, ValueRef};
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the acceptor keeps as its hard state: the promise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorHardState {
    /// The highest ballot promised.
    pub promised: Ballot,
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
}

/// What the acceptor asks its actor to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum AcceptorEffect {
    /// Write the hard state (the promise).
    PersistPromise(AcceptorHardState),
    /// Append an acceptance to the log.
    PersistAccepted(AcceptRecord),
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
    accepted: BTreeMap<Slot, (Ballot, ValueRef)>,
    /// The highest ballot of any acceptance (the invariants compare it
    /// with the promise in O(1)).
    max_accepted: Ballot,
    effects: Vec<AcceptorEffect>,
}

impl AcceptorCore {
    /// A fresh acceptor (nothing promised, nothing accepted).
    pub fn new(id: NodeId) -> Self {
        Self {
            id,
            promised: Ballot::ZERO,
            accepted: BTreeMap::new(),
            max_accepted: Ballot::ZERO,
            effects: Vec::new(),
        }
    }

    /// An acceptor rebuilt from what it stored: its hard state and its log
    /// of acceptances (replayed in order; the highest ballot per slot wins).
    pub fn recover(
        id: NodeId,
        hard: Option<AcceptorHardState>,
        records: impl IntoIterator<Item = AcceptRecord>,
    ) -> Self {
        let mut core = Self::new(id);
        core.promised = hard.unwrap_or_default().promised;
        for r in records {
            let keep = core
                .accepted
                .get(&r.slot)
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

    /// What it accepted in `slot`, if anything.
    pub fn accepted(&self, slot: Slot) -> Option<(Ballot, &ValueRef)> {
        self.accepted.get(&slot).map(|(b, v)| (*b, v))
    }

    /// Takes the effects of the last steps.
    pub fn take_effects(&mut self) -> Vec<AcceptorEffect> {
        std::mem::take(&mut self.effects)
    }

    /// The one entry: handles `input`, leaving its effects to
    /// [`take_effects`](Self::take_effects), and checks the invariants.
    pub fn step(&mut self, input: AcceptorInput) {
        let before = self.promised;
        match input {
            AcceptorInput::Prepare { from, msg } => self.handle_prepare(from, msg),
            AcceptorInput::Accept { from, msg } => self.handle_accept(from, msg),
        }
        // P1a: the promise never goes down.
        assert!(self.promised >= before, "promise went down");
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
                .push(AcceptorEffect::PersistPromise(AcceptorHardState {
                    promised: msg.ballot,
                }));
        }
        let range = match msg.last {
            Some(last) if last < msg.first => Vec::new(),
            Some(last) => self.collect(self.accepted.range(msg.first..=last)),
            None => self.collect(self.accepted.range(msg.first..)),
        };
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
            }),
        });
    }

    fn collect<'a>(
        &self,
        it: impl Iterator<Item = (&'a Slot, &'a (Ballot, ValueRef))>,
    ) -> Vec<PValue> {
        it.map(|(slot, (ballot, value))| PValue {
            slot: *slot,
            ballot: *ballot,
            value: ValueRef::clone(value),
        })
        .collect()
    }

    fn handle_accept(&mut self, from: NodeId, msg: Accept) {
        if msg.ballot < self.promised {
            self.nack(from, msg.ballot);
            return;
        }
        if msg.ballot > self.promised {
            // Accepting b is promising b: a lower ballot cannot be accepted
            // after it.
            self.promised = msg.ballot;
            self.effects
                .push(AcceptorEffect::PersistPromise(AcceptorHardState {
                    promised: msg.ballot,
                }));
            self.effects.push(AcceptorEffect::Report(Report::Event(
                PaxosEvent::Promised {
                    acceptor: self.id,
                    ballot: msg.ballot,
                },
            )));
        }
        let same = self
            .accepted
            .get(&msg.slot)
            .is_some_and(|(b, v)| *b == msg.ballot && **v == *msg.value);
        if !same {
            if let Some((b, v)) = self.accepted.get(&msg.slot) {
                // One ballot proposes one value per slot.
                assert!(
                    *b != msg.ballot || **v == *msg.value,
                    "two values at {} in {}",
                    msg.ballot,
                    msg.slot
                );
            }
            self.max_accepted = self.max_accepted.max(msg.ballot);
            self.accepted
                .insert(msg.slot, (msg.ballot, ValueRef::clone(&msg.value)));
            self.effects
                .push(AcceptorEffect::PersistAccepted(AcceptRecord {
                    slot: msg.slot,
                    ballot: msg.ballot,
                    value: ValueRef::clone(&msg.value),
                }));
        }
        self.effects.push(AcceptorEffect::Report(Report::Accepted {
            acceptor: self.id,
            slot: msg.slot,
            ballot: msg.ballot,
            value: ValueRef::clone(&msg.value),
        }));
        self.effects.push(AcceptorEffect::Send {
            to: from,
            msg: PaxosMessage::Accepted(Accepted {
                ballot: msg.ballot,
                slot: msg.slot,
            }),
        });
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

    fn accept(b: Ballot, slot: u64, value: ValueRef) -> AcceptorInput {
        AcceptorInput::Accept {
            from: b.node,
            msg: Accept {
                ballot: b,
                slot: Slot(slot),
                value,
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
            AcceptorEffect::PersistPromise(AcceptorHardState { promised: b2 })
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
            Some(AcceptorHardState { promised: b3 }),
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
}
