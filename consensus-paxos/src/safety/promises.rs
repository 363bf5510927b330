//! Paxos **promises kept** (Lamport, "Paxos Made Simple", §2.2 P1a: "an
//! acceptor can accept a proposal numbered n iff it has not responded to a
//! prepare request having a number greater than n"; and an acceptor only
//! answers a prepare request numbered above every one it answered before).
//!
//! Promises are durable (they survive crashes) and, as in Multi-Paxos, one
//! promise covers every slot. Accepting a proposal does not by itself raise
//! the promise: only `Promised` events do.

use super::{ballot_epoch, slot_position, Invariant, PaxosEvent, SafetyEvent, Violation};
use crate::types::Ballot;
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;

/// Acceptors never accept below, or promise below, a ballot they promised.
#[derive(Clone, Debug, Default)]
pub struct PaxosPromisesKept {
    promised: BTreeMap<NodeId, Ballot>,
}

impl PaxosPromisesKept {
    /// The highest ballot `acceptor` has promised, if any.
    pub fn promised(&self, acceptor: NodeId) -> Option<Ballot> {
        self.promised.get(&acceptor).copied()
    }
}

impl Invariant<PaxosEvent> for PaxosPromisesKept {
    fn name(&self) -> &'static str {
        "paxos-promises-kept"
    }

    fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>) {
        match ev {
            SafetyEvent::Protocol(PaxosEvent::Promised { acceptor, ballot }) => {
                let name = self.name();
                let promised = self.promised.entry(*acceptor).or_insert(*ballot);
                if *ballot < *promised {
                    out.push(
                        Violation::new(
                            name,
                            at_us,
                            ev,
                            format!(
                                "{acceptor} promised {ballot} after promising the higher {promised}"
                            ),
                        )
                        .with_nodes([*acceptor])
                        .with_epoch(ballot_epoch(*ballot)),
                    );
                } else {
                    *promised = *ballot;
                }
            }
            SafetyEvent::Protocol(PaxosEvent::Accepted {
                acceptor,
                slot,
                ballot,
                ..
            }) => {
                if let Some(promised) = self.promised.get(acceptor).filter(|p| *ballot < **p) {
                    out.push(
                        Violation::new(
                            self.name(),
                            at_us,
                            ev,
                            format!(
                                "{acceptor} accepted {ballot} in {slot} after promising {promised}"
                            ),
                        )
                        .with_nodes([*acceptor])
                        .with_epoch(ballot_epoch(*ballot))
                        .with_position(slot_position(*slot)),
                    );
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Slot;

    const N1: NodeId = NodeId(1);

    fn promised(acceptor: NodeId, round: u64) -> SafetyEvent {
        PaxosEvent::Promised {
            acceptor,
            ballot: Ballot::new(round, NodeId(9)),
        }
        .into()
    }

    fn accepted(acceptor: NodeId, round: u64) -> SafetyEvent {
        PaxosEvent::Accepted {
            acceptor,
            slot: Slot(3),
            ballot: Ballot::new(round, NodeId(9)),
            digest: 1,
        }
        .into()
    }

    fn run(events: &[SafetyEvent]) -> Vec<Violation> {
        let mut inv = PaxosPromisesKept::default();
        let mut out = Vec::new();
        for (t, ev) in events.iter().enumerate() {
            inv.observe(t as u64, ev, &mut out);
        }
        out
    }

    /// P1a: accepting at or above the promised ballot is allowed, as is
    /// promising ever higher ballots; a crash does not erase a promise.
    #[test]
    fn acceptors_keeping_their_promises_pass() {
        let out = run(&[
            accepted(N1, 1),
            promised(N1, 2),
            accepted(N1, 2),
            promised(N1, 2),
            promised(N1, 4),
            SafetyEvent::Crashed { node: N1 },
            accepted(N1, 5),
            accepted(NodeId(2), 1),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }

    /// P1a: accepting below a promise is a violation.
    #[test]
    fn accepting_below_a_promise_is_reported() {
        let out = run(&[
            promised(N1, 4),
            SafetyEvent::Crashed { node: N1 },
            accepted(N1, 3),
        ]);
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.invariant, "paxos-promises-kept");
        assert_eq!(v.nodes, vec![N1]);
        assert_eq!(v.position, Some(slot_position(Slot(3))));
        assert_eq!(v.detail, "n1 accepted b3.9 in slot3 after promising b4.9");
    }

    #[test]
    fn promising_a_lower_ballot_is_reported() {
        let mut inv = PaxosPromisesKept::default();
        let mut out = Vec::new();
        inv.observe(0, &promised(N1, 4), &mut out);
        inv.observe(1, &promised(N1, 2), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].detail,
            "n1 promised b2.9 after promising the higher b4.9"
        );
        assert_eq!(inv.promised(N1), Some(Ballot::new(4, NodeId(9))));
    }
}
