//! Paxos **agreement** (Lamport, "Paxos Made Simple", §2.1 safety
//! requirements: "only a single value is chosen"; §2.2 P2b: "if a proposal
//! with value v is chosen, then every higher-numbered proposal issued by any
//! proposer has value v"), per slot for Multi-Paxos.
//!
//! Checked from three angles:
//!
//! * learners: two `Chosen` reports for one slot with different values;
//! * acceptors (when the number of acceptors is known): a value accepted by
//!   a phase-2 quorum at one ballot is chosen, whether or not a learner
//!   noticed. The quorum is `q2` (flexible quorums,
//!   [`with_quorum`](PaxosAgreement::with_quorum)) for a configuration of
//!   the configured size, a majority otherwise, as the learners count it.
//!   After a configuration change (`Configured`), a slot's quorum is
//!   counted among the acceptors of the configuration governing it;
//! * P2b: once a value is chosen at ballot b, an acceptor accepting another
//!   value at a ballot ≥ b in that slot (in either order of observation)
//!   shows a proposal that breaks P2b, before any learner is misled. Two
//!   acceptors accepting different values at the same ballot and slot (a
//!   proposer proposing two values in one ballot, or two proposers sharing a
//!   ballot) is reported too.

use super::{ballot_epoch, slot_position, Invariant, PaxosEvent, SafetyEvent, Violation};
use crate::types::{Ballot, Slot};
use consensus_actors::safety::fmt_digest;
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;

/// Who said a value was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ChosenBy {
    Learner(NodeId),
    Majority(Vec<NodeId>),
}

impl ChosenBy {
    fn nodes(&self) -> Vec<NodeId> {
        match self {
            ChosenBy::Learner(n) => vec![*n],
            ChosenBy::Majority(ns) => ns.clone(),
        }
    }

    fn describe(&self) -> String {
        match self {
            ChosenBy::Learner(n) => format!("learned by {n}"),
            ChosenBy::Majority(ns) => {
                let names: Vec<String> = ns.iter().map(|n| n.to_string()).collect();
                format!("accepted by {}", names.join(" "))
            }
        }
    }
}

#[derive(Clone, Debug)]
struct ChosenValue {
    digest: u64,
    /// The lowest ballot the value is known to be chosen at.
    ballot: Ballot,
    by: ChosenBy,
}

/// A proposal as acceptors and learners report it.
#[derive(Clone, Copy, Debug)]
struct Proposal {
    slot: Slot,
    ballot: Ballot,
    digest: u64,
}

#[derive(Clone, Debug)]
struct Vote {
    digest: u64,
    acceptors: Vec<NodeId>,
}

/// One value chosen per slot.
#[derive(Clone, Debug, Default)]
pub struct PaxosAgreement {
    acceptors: Option<usize>,
    /// The phase-2 quorum of a configuration of `acceptors` acceptors
    /// (`None`: a majority).
    q2: Option<usize>,
    /// Configurations learners delivered: the acceptors from each slot on.
    configs: BTreeMap<Slot, Vec<NodeId>>,
    chosen: BTreeMap<Slot, ChosenValue>,
    votes: BTreeMap<(Slot, Ballot), Vote>,
}

const BALLOT_MAX: Ballot = Ballot {
    round: u64::MAX,
    node: NodeId(u64::MAX),
};

impl PaxosAgreement {
    /// Agreement judged from learners' reports and P2b.
    pub fn new() -> Self {
        Self::default()
    }

    /// Agreement that also infers chosen values from a majority of
    /// `acceptors` accepting one proposal.
    pub fn with_acceptors(acceptors: usize) -> Self {
        Self {
            acceptors: Some(acceptors),
            ..Self::default()
        }
    }

    /// Agreement that infers chosen values from `q2` of `acceptors`
    /// accepting one proposal (flexible quorums: `q2` may be below a
    /// majority when phase 1 needs more; a configuration of another size,
    /// after a change, is counted by majority as the learners count it).
    pub fn with_quorum(acceptors: usize, q2: usize) -> Self {
        Self {
            acceptors: Some(acceptors),
            q2: Some(q2),
            ..Self::default()
        }
    }

    /// The value (digest) known to be chosen in `slot`, if any.
    pub fn chosen(&self, slot: Slot) -> Option<u64> {
        self.chosen.get(&slot).map(|c| c.digest)
    }

    fn record_chosen(
        &mut self,
        at_us: u64,
        ev: &SafetyEvent,
        proposal: Proposal,
        by: ChosenBy,
        out: &mut Vec<Violation>,
    ) {
        let Proposal {
            slot,
            ballot,
            digest,
        } = proposal;
        let name = self.name();
        if let Some(c) = self.chosen.get_mut(&slot) {
            if c.digest != digest {
                let mut nodes = c.by.nodes();
                nodes.extend(by.nodes());
                out.push(
                    Violation::new(
                        name,
                        at_us,
                        ev,
                        format!(
                            "two values chosen in {slot}: {} at {} ({}) and {} at {ballot} ({})",
                            fmt_digest(c.digest),
                            c.ballot,
                            c.by.describe(),
                            fmt_digest(digest),
                            by.describe()
                        ),
                    )
                    .with_nodes(nodes)
                    .with_epoch(ballot_epoch(ballot))
                    .with_position(slot_position(slot)),
                );
            } else if ballot < c.ballot {
                c.ballot = ballot;
            }
            return;
        }
        // P2b, looking back: proposals at higher ballots already accepted.
        for ((_, b), vote) in self.votes.range((slot, ballot)..=(slot, BALLOT_MAX)) {
            if vote.digest != digest {
                let mut nodes = by.nodes();
                nodes.extend(vote.acceptors.iter().copied());
                out.push(
                    Violation::new(
                        name,
                        at_us,
                        ev,
                        format!(
                            "{} was chosen in {slot} at {ballot} ({}), but {} was accepted there at {b}, breaking P2b",
                            fmt_digest(digest),
                            by.describe(),
                            fmt_digest(vote.digest)
                        ),
                    )
                    .with_nodes(nodes)
                    .with_epoch(ballot_epoch(*b))
                    .with_position(slot_position(slot)),
                );
            }
        }
        self.chosen.insert(slot, ChosenValue { digest, ballot, by });
    }

    fn on_accepted(
        &mut self,
        at_us: u64,
        ev: &SafetyEvent,
        acceptor: NodeId,
        proposal: Proposal,
        out: &mut Vec<Violation>,
    ) {
        let Proposal {
            slot,
            ballot,
            digest,
        } = proposal;
        let name = self.name();
        let here = |detail: String, nodes: Vec<NodeId>| {
            Violation::new(name, at_us, ev, detail)
                .with_nodes(nodes)
                .with_epoch(ballot_epoch(ballot))
                .with_position(slot_position(slot))
        };
        // P2b, looking forward: a value is already chosen at or below this ballot.
        if let Some(c) = self.chosen.get(&slot) {
            if c.ballot <= ballot && c.digest != digest {
                let mut nodes = c.by.nodes();
                nodes.push(acceptor);
                out.push(here(
                    format!(
                        "{acceptor} accepted {} in {slot} at {ballot}, but {} was chosen there at {} ({}), breaking P2b",
                        fmt_digest(digest),
                        fmt_digest(c.digest),
                        c.ballot,
                        c.by.describe()
                    ),
                    nodes,
                ));
            }
        }
        let vote = self.votes.entry((slot, ballot)).or_insert_with(|| Vote {
            digest,
            acceptors: Vec::new(),
        });
        if vote.digest != digest {
            let first = vote.acceptors.first().copied().unwrap_or(acceptor);
            out.push(here(
                format!(
                    "{acceptor} accepted {} in {slot} at {ballot} where {first} accepted {}: one ballot carries one value",
                    fmt_digest(digest),
                    fmt_digest(vote.digest)
                ),
                vec![first, acceptor],
            ));
            return;
        }
        if vote.acceptors.contains(&acceptor) {
            return;
        }
        vote.acceptors.push(acceptor);
        // The slot's acceptors: the configuration a learner reported for
        // it or, before any change, the initial number. Exactly the
        // acceptance that completes a quorum of them records the choice.
        let config = self.configs.range(..=slot).next_back().map(|(_, m)| m);
        let counted = |a: &NodeId| config.is_none_or(|m| m.contains(a));
        let n = match (config, self.acceptors) {
            (Some(m), _) => m.len(),
            (None, Some(n)) => n,
            (None, None) => return,
        };
        let quorum = match self.q2 {
            Some(q2) if Some(n) == self.acceptors => q2,
            _ => n / 2 + 1,
        };
        if counted(&acceptor) && vote.acceptors.iter().filter(|a| counted(a)).count() == quorum {
            let voters: Vec<NodeId> = vote.acceptors.iter().copied().filter(counted).collect();
            self.record_chosen(at_us, ev, proposal, ChosenBy::Majority(voters), out);
        }
    }
}

impl Invariant<PaxosEvent> for PaxosAgreement {
    fn name(&self) -> &'static str {
        "paxos-agreement"
    }

    fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>) {
        match ev {
            SafetyEvent::Protocol(PaxosEvent::Accepted {
                acceptor,
                slot,
                ballot,
                digest,
            }) => {
                let proposal = Proposal {
                    slot: *slot,
                    ballot: *ballot,
                    digest: *digest,
                };
                self.on_accepted(at_us, ev, *acceptor, proposal, out);
            }
            SafetyEvent::Protocol(PaxosEvent::Configured {
                from, acceptors, ..
            }) => {
                self.configs
                    .entry(*from)
                    .or_insert_with(|| acceptors.clone());
            }
            SafetyEvent::Protocol(PaxosEvent::Chosen {
                node,
                slot,
                ballot,
                digest,
            }) => {
                let proposal = Proposal {
                    slot: *slot,
                    ballot: *ballot,
                    digest: *digest,
                };
                self.record_chosen(at_us, ev, proposal, ChosenBy::Learner(*node), out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: NodeId = NodeId(1);
    const N2: NodeId = NodeId(2);
    const N3: NodeId = NodeId(3);

    fn b(round: u64, node: NodeId) -> Ballot {
        Ballot::new(round, node)
    }

    fn accepted(acceptor: NodeId, slot: u64, ballot: Ballot, digest: u64) -> SafetyEvent {
        PaxosEvent::Accepted {
            acceptor,
            slot: Slot(slot),
            ballot,
            digest,
        }
        .into()
    }

    fn chosen(node: NodeId, slot: u64, ballot: Ballot, digest: u64) -> SafetyEvent {
        PaxosEvent::Chosen {
            node,
            slot: Slot(slot),
            ballot,
            digest,
        }
        .into()
    }

    fn run(inv: &mut PaxosAgreement, events: &[SafetyEvent]) -> Vec<Violation> {
        let mut out = Vec::new();
        for (t, ev) in events.iter().enumerate() {
            inv.observe(t as u64, ev, &mut out);
        }
        out
    }

    /// §2.2: a competing proposer at a higher ballot re-proposes the value
    /// that may have been chosen; every learner learns that one value.
    #[test]
    fn competing_proposers_that_respect_p2b_pass() {
        let mut inv = PaxosAgreement::with_acceptors(3);
        let out = run(
            &mut inv,
            &[
                accepted(N1, 1, b(1, N1), 10),
                // n2 pre-empts with a higher ballot, learns 10 from n1's promise.
                accepted(N2, 1, b(2, N2), 10),
                accepted(N3, 1, b(2, N2), 10),
                chosen(N1, 1, b(2, N2), 10),
                chosen(N3, 1, b(2, N2), 10),
                accepted(N1, 1, b(3, N3), 10),
                // Another slot takes another value.
                accepted(N1, 2, b(2, N2), 20),
                accepted(N2, 2, b(2, N2), 20),
                chosen(N2, 2, b(2, N2), 20),
                // A value accepted at a lower ballot than the chosen one may differ.
                accepted(N3, 2, b(1, N1), 21),
            ],
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(inv.chosen(Slot(1)), Some(10));
        assert_eq!(inv.chosen(Slot(2)), Some(20));
        assert_eq!(inv.chosen(Slot(3)), None);
    }

    /// §2.1: two learners learning different values for one slot.
    #[test]
    fn two_values_chosen_in_one_slot_are_reported() {
        let mut inv = PaxosAgreement::new();
        let out = run(
            &mut inv,
            &[chosen(N1, 4, b(1, N1), 10), chosen(N2, 4, b(2, N2), 11)],
        );
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.invariant, "paxos-agreement");
        assert_eq!(v.nodes, vec![N1, N2]);
        assert_eq!(v.epoch, Some(ballot_epoch(b(2, N2))));
        assert_eq!(v.position, Some(slot_position(Slot(4))));
        assert_eq!(
            v.detail,
            "two values chosen in slot4: #000000000000000a at b1.1 (learned by n1) and #000000000000000b at b2.2 (learned by n2)"
        );
    }

    /// With the acceptor count known, two majorities at different ballots
    /// for different values are caught even if no learner reports.
    #[test]
    fn two_majorities_for_different_values_are_reported_without_learners() {
        let mut inv = PaxosAgreement::with_acceptors(3);
        let out = run(
            &mut inv,
            &[
                accepted(N1, 1, b(1, N1), 10),
                accepted(N2, 1, b(1, N1), 10),
                accepted(N3, 1, b(2, N3), 11),
            ],
        );
        assert_eq!(out.len(), 1, "the acceptance at b2.3 already breaks P2b");
        assert_eq!(
            out[0].detail,
            "n3 accepted #000000000000000b in slot1 at b2.3, but #000000000000000a was chosen there at b1.1 (accepted by n1 n2), breaking P2b"
        );
        assert_eq!(out[0].nodes, vec![N1, N2, N3]);
    }

    /// P2b looking back: a value accepted at a higher ballot first, the lower
    /// ballot's choice learned afterwards.
    #[test]
    fn p2b_is_checked_whatever_the_order_of_reports() {
        let mut inv = PaxosAgreement::new();
        let out = run(
            &mut inv,
            &[accepted(N3, 1, b(5, N3), 11), chosen(N1, 1, b(2, N1), 10)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].epoch, Some(ballot_epoch(b(5, N3))));
        assert_eq!(out[0].nodes, vec![N1, N3]);
    }

    #[test]
    fn two_values_in_one_ballot_are_reported() {
        let mut inv = PaxosAgreement::new();
        let out = run(
            &mut inv,
            &[accepted(N1, 1, b(1, N1), 10), accepted(N2, 1, b(1, N1), 11)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].detail,
            "n2 accepted #000000000000000b in slot1 at b1.1 where n1 accepted #000000000000000a: one ballot carries one value"
        );
    }

    fn configured(from: u64, acceptors: &[u64]) -> SafetyEvent {
        PaxosEvent::Configured {
            node: N1,
            from: Slot(from),
            acceptors: acceptors.iter().map(|&a| NodeId(a)).collect(),
        }
        .into()
    }

    /// Flexible quorums (5 acceptors, q1 = 4, q2 = 2): two acceptances at
    /// one ballot choose the value, below a majority. A third acceptor
    /// accepting another value at a higher ballot in that slot breaks P2b;
    /// counted by majority, the choice and the violation would go unseen.
    #[test]
    fn with_flexible_quorums_q2_acceptances_choose_below_a_majority() {
        let mut inv = PaxosAgreement::with_quorum(5, 2);
        let out = run(
            &mut inv,
            &[
                accepted(N1, 1, b(1, N1), 10),
                accepted(N2, 1, b(1, N1), 10),
                accepted(N3, 1, b(2, N3), 11),
            ],
        );
        assert_eq!(inv.chosen(Slot(1)), Some(10));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].detail.contains("breaking P2b"), "{out:?}");
        let mut by_majority = PaxosAgreement::with_acceptors(5);
        let unseen = run(
            &mut by_majority,
            &[
                accepted(N1, 1, b(1, N1), 10),
                accepted(N2, 1, b(1, N1), 10),
                accepted(N3, 1, b(2, N3), 11),
            ],
        );
        assert!(unseen.is_empty() && by_majority.chosen(Slot(1)).is_none());
    }

    /// After node 4 joins (from slot 5), two acceptances of slot 6 are not
    /// a majority of the four acceptors: another value may be chosen at a
    /// higher ballot. Counted against the initial three, this would be a
    /// false "breaking P2b".
    #[test]
    fn after_a_node_joins_a_majority_is_counted_among_the_new_acceptors() {
        let n4 = NodeId(4);
        let mut inv = PaxosAgreement::with_acceptors(3);
        let out = run(
            &mut inv,
            &[
                configured(5, &[1, 2, 3, 4]),
                accepted(N1, 6, b(1, N1), 10),
                accepted(N2, 6, b(1, N1), 10),
                accepted(N2, 6, b(2, N2), 11),
                accepted(N3, 6, b(2, N2), 11),
                accepted(n4, 6, b(2, N2), 11),
                // Slot 4 is still the initial configuration's: 2 of 3.
                accepted(N1, 4, b(1, N1), 7),
                accepted(N2, 4, b(1, N1), 7),
            ],
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(inv.chosen(Slot(6)), Some(11));
        assert_eq!(inv.chosen(Slot(4)), Some(7));
    }

    /// After node 4 leaves (from slot 5, four acceptors before), two of the
    /// remaining three choose a value; a third acceptor accepting another
    /// value at a higher ballot breaks P2b. Counted against the initial
    /// four, the choice (and so the violation) would go unseen.
    #[test]
    fn after_a_node_leaves_a_majority_of_the_rest_chooses() {
        let n4 = NodeId(4);
        let mut inv = PaxosAgreement::with_acceptors(4);
        let out = run(
            &mut inv,
            &[
                configured(5, &[1, 2, 3]),
                accepted(N1, 6, b(1, N1), 10),
                // The removed node's acceptance does not count.
                accepted(n4, 6, b(1, N1), 10),
                accepted(N2, 6, b(1, N1), 10),
                accepted(N3, 6, b(2, N3), 11),
            ],
        );
        assert_eq!(inv.chosen(Slot(6)), Some(10));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].detail.contains("breaking P2b"), "{}", out[0].detail);
        assert_eq!(out[0].nodes, vec![N1, N2, N3]);
    }
}
