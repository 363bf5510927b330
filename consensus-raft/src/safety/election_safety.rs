//! Raft **Election Safety** (Raft paper §5.2, Figure 3): "at most one leader
//! can be elected in a given term".
//!
//! Checked on every `BecameLeader`: the first leader of a term is
//! remembered; another node becoming leader of the same term is a
//! violation. The same node announcing the same term again (a duplicate
//! report) is not.

use super::term_epoch;
use super::{EventKinds, Invariant, RaftSafetyEvent, SafetyEvent, Violation};
use consensus_actors::types::{NodeId, Term};
use std::collections::BTreeMap;

/// At most one leader per term.
#[derive(Clone, Debug, Default)]
pub struct RaftElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
}

impl RaftElectionSafety {
    /// The leader elected in `term`, if any was reported.
    pub fn leader_of(&self, term: Term) -> Option<NodeId> {
        self.leaders.get(&term).copied()
    }
}

impl Invariant<RaftSafetyEvent> for RaftElectionSafety {
    fn name(&self) -> &'static str {
        "raft-election-safety"
    }

    fn event_kinds(&self) -> EventKinds {
        EventKinds::BECAME_LEADER
    }

    fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>) {
        let SafetyEvent::BecameLeader { node, epoch } = ev else {
            return;
        };
        let term = &Term(*epoch);
        let first = *self.leaders.entry(*term).or_insert(*node);
        if first != *node {
            out.push(
                Violation::new(
                    self.name(),
                    at_us,
                    ev,
                    format!("{node} became leader of {term}, which {first} already leads"),
                )
                .with_nodes([first, *node])
                .with_epoch(term_epoch(*term)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::became_leader;

    fn leader(node: u64, term: u64) -> SafetyEvent {
        became_leader(NodeId(node), Term(term))
    }

    fn run(events: &[SafetyEvent]) -> Vec<Violation> {
        let mut inv = RaftElectionSafety::default();
        let mut out = Vec::new();
        for (t, ev) in events.iter().enumerate() {
            inv.observe(t as u64, ev, &mut out);
        }
        out
    }

    /// §5.2: one leader per term, successive terms may have different leaders.
    #[test]
    fn one_leader_per_term_passes() {
        let out = run(&[
            leader(1, 1),
            leader(2, 2),
            leader(2, 2),
            leader(1, 4),
            SafetyEvent::Crashed { node: NodeId(1) },
            leader(3, 5),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }

    /// §5.2: two leaders in one term are a violation naming both and the term.
    #[test]
    fn two_leaders_in_one_term_are_reported() {
        let out = run(&[leader(1, 3), leader(2, 4), leader(3, 3)]);
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.invariant, "raft-election-safety");
        assert_eq!(v.nodes, vec![NodeId(1), NodeId(3)]);
        assert_eq!(v.epoch, Some(term_epoch(Term(3))));
        assert_eq!(v.position, None);
        assert_eq!(v.at_us, 2);
        assert_eq!(v.event, "n3 became leader of t3");
        assert_eq!(v.detail, "n3 became leader of t3, which n1 already leads");
    }

    #[test]
    fn the_first_leader_of_a_term_is_remembered() {
        let mut inv = RaftElectionSafety::default();
        let mut out = Vec::new();
        inv.observe(0, &leader(4, 7), &mut out);
        assert_eq!(inv.leader_of(Term(7)), Some(NodeId(4)));
        assert_eq!(inv.leader_of(Term(6)), None);
    }
}
