//! PBFT **agreement** (Castro and Liskov, "Practical Byzantine Fault
//! Tolerance", OSDI 1999, §4.2: "the invariant ensures that non-faulty
//! replicas agree on the sequence numbers of requests that commit locally";
//! §4.4: "… even if they commit in different views"): no two correct
//! replicas commit different requests at the same sequence number, in any
//! view — nor does one correct replica commit two.
//!
//! Replicas declared with `ByzantineReplicas` are faulty on purpose: their
//! commits are ignored, and earlier commits of a replica declared later are
//! no longer compared with (declare them before anything happens to get
//! clean reports).

use super::{seq_position, view_epoch, Invariant, PbftEvent, SafetyEvent, Violation};
use crate::types::{SeqNo, View};
use consensus_actors::safety::fmt_digest;
use consensus_actors::types::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// One replica's claim that a request holds a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Claim {
    pub(super) replica: NodeId,
    pub(super) view: View,
    pub(super) digest: u64,
}

/// Claims of replicas, keyed by position, compared among correct replicas.
#[derive(Clone, Debug)]
pub(super) struct ReplicaClaims<K> {
    byzantine: BTreeSet<NodeId>,
    claims: BTreeMap<K, Vec<Claim>>,
}

impl<K> Default for ReplicaClaims<K> {
    fn default() -> Self {
        Self {
            byzantine: BTreeSet::new(),
            claims: BTreeMap::new(),
        }
    }
}

impl<K: Ord> ReplicaClaims<K> {
    pub(super) fn declare_byzantine(&mut self, replicas: &[NodeId]) {
        self.byzantine.extend(replicas.iter().copied());
    }

    pub(super) fn is_byzantine(&self, replica: NodeId) -> bool {
        self.byzantine.contains(&replica)
    }

    /// Records `claim` at `key`; returns the first earlier claim of a
    /// correct replica for a different request. Claims of Byzantine
    /// replicas are ignored.
    pub(super) fn claim(&mut self, key: K, claim: Claim) -> Option<Claim> {
        if self.byzantine.contains(&claim.replica) {
            return None;
        }
        let claims = self.claims.entry(key).or_default();
        let conflict = claims
            .iter()
            .find(|c| c.digest != claim.digest && !self.byzantine.contains(&c.replica))
            .copied();
        if !claims
            .iter()
            .any(|c| c.replica == claim.replica && c.digest == claim.digest)
        {
            claims.push(claim);
        }
        conflict
    }
}

/// Correct replicas commit one request per sequence number, in any view.
#[derive(Clone, Debug, Default)]
pub struct PbftAgreement {
    claims: ReplicaClaims<SeqNo>,
}

impl PbftAgreement {
    /// True if `replica` was declared Byzantine.
    pub fn is_byzantine(&self, replica: NodeId) -> bool {
        self.claims.is_byzantine(replica)
    }
}

impl Invariant<PbftEvent> for PbftAgreement {
    fn name(&self) -> &'static str {
        "pbft-agreement"
    }

    fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>) {
        match ev {
            SafetyEvent::Protocol(PbftEvent::ByzantineReplicas { replicas }) => {
                self.claims.declare_byzantine(replicas);
            }
            SafetyEvent::Protocol(PbftEvent::Committed {
                replica,
                view,
                seq,
                digest,
            }) => {
                let claim = Claim {
                    replica: *replica,
                    view: *view,
                    digest: *digest,
                };
                if let Some(c) = self.claims.claim(*seq, claim) {
                    out.push(
                        Violation::new(
                            self.name(),
                            at_us,
                            ev,
                            format!(
                                "{replica} committed {} at {seq} in {view} where {} committed {} in {}",
                                fmt_digest(*digest),
                                c.replica,
                                fmt_digest(c.digest),
                                c.view
                            ),
                        )
                        .with_nodes([c.replica, *replica])
                        .with_epoch(view_epoch(*view))
                        .with_position(seq_position(*seq)),
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

    const R0: NodeId = NodeId(0);
    const R1: NodeId = NodeId(1);
    const R2: NodeId = NodeId(2);
    const R3: NodeId = NodeId(3);

    fn committed(replica: NodeId, view: u64, seq: u64, digest: u64) -> SafetyEvent {
        PbftEvent::Committed {
            replica,
            view: View(view),
            seq: SeqNo(seq),
            digest,
        }
        .into()
    }

    fn byzantine(replicas: &[NodeId]) -> SafetyEvent {
        PbftEvent::ByzantineReplicas {
            replicas: replicas.to_vec(),
        }
        .into()
    }

    fn run(inv: &mut PbftAgreement, events: &[SafetyEvent]) -> Vec<Violation> {
        let mut out = Vec::new();
        for (t, ev) in events.iter().enumerate() {
            inv.observe(t as u64, ev, &mut out);
        }
        out
    }

    /// §4.4: a request committed in view 0 by some replicas and, after a view
    /// change, in view 1 by others, at the same sequence number, passes.
    #[test]
    fn the_same_request_committed_across_views_passes() {
        let mut inv = PbftAgreement::default();
        let out = run(
            &mut inv,
            &[
                committed(R0, 0, 1, 10),
                committed(R1, 0, 1, 10),
                committed(R2, 1, 1, 10),
                committed(R0, 1, 1, 10),
                committed(R3, 1, 2, 11),
                SafetyEvent::Crashed { node: R3 },
            ],
        );
        assert!(out.is_empty(), "{out:?}");
    }

    /// §4.2/§4.4: two correct replicas committing different requests at one
    /// sequence number in different views is a violation.
    #[test]
    fn different_requests_at_one_sequence_number_in_different_views_are_reported() {
        let mut inv = PbftAgreement::default();
        let out = run(
            &mut inv,
            &[committed(R0, 0, 5, 10), committed(R2, 1, 5, 11)],
        );
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.invariant, "pbft-agreement");
        assert_eq!(v.nodes, vec![R0, R2]);
        assert_eq!(v.epoch, Some(view_epoch(View(1))));
        assert_eq!(v.position, Some(seq_position(SeqNo(5))));
        assert_eq!(
            v.detail,
            "n2 committed #000000000000000b at s5 in v1 where n0 committed #000000000000000a in v0"
        );
    }

    /// A correct replica committing two requests at one sequence number.
    #[test]
    fn one_replica_committing_two_requests_at_a_sequence_number_is_reported() {
        let mut inv = PbftAgreement::default();
        let out = run(
            &mut inv,
            &[committed(R1, 0, 5, 10), committed(R1, 2, 5, 11)],
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nodes, vec![R1]);
    }

    /// A Byzantine replica's conflicting commit is ignored, whether it comes
    /// first or last.
    #[test]
    fn a_byzantine_replicas_conflicting_commit_is_ignored() {
        let mut inv = PbftAgreement::default();
        let out = run(
            &mut inv,
            &[
                byzantine(&[R3]),
                committed(R3, 0, 1, 66),
                committed(R0, 0, 1, 10),
                committed(R1, 0, 1, 10),
                committed(R3, 0, 1, 99),
            ],
        );
        assert!(out.is_empty(), "{out:?}");
        assert!(inv.is_byzantine(R3));
        assert!(!inv.is_byzantine(R0));
        // A correct replica disagreeing is still caught.
        let out = run(&mut inv, &[committed(R2, 1, 1, 12)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nodes, vec![R0, R2]);
    }
}
