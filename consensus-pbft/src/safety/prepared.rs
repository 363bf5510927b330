//! PBFT **prepared agreement** (Castro and Liskov, OSDI 1999, §4.2: "if
//! prepared(m, v, n, i) is true then prepared(m′, v, n, j) is false for any
//! non-faulty replica j (including i = j) and any m′ such that
//! D(m′) ≠ D(m)"): within one view, correct replicas prepare at most one
//! request per sequence number. This is what makes commits agree within a
//! view; a break here shows the bug before any replica commits.
//!
//! Replicas declared with `ByzantineReplicas` are ignored.

use super::agreement::{Claim, ReplicaClaims};
use super::{seq_position, view_epoch, Invariant, PbftEvent, SafetyEvent, Violation};
use crate::types::{SeqNo, View};
use consensus_actors::safety::fmt_digest;

/// Correct replicas prepare one request per view and sequence number.
#[derive(Clone, Debug, Default)]
pub struct PbftPreparedAgreement {
    claims: ReplicaClaims<(View, SeqNo)>,
}

impl Invariant<PbftEvent> for PbftPreparedAgreement {
    fn name(&self) -> &'static str {
        "pbft-prepared-agreement"
    }

    fn observe(&mut self, at_us: u64, ev: &SafetyEvent, out: &mut Vec<Violation>) {
        match ev {
            SafetyEvent::Protocol(PbftEvent::ByzantineReplicas { replicas }) => {
                self.claims.declare_byzantine(replicas);
            }
            SafetyEvent::Protocol(PbftEvent::Prepared {
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
                if let Some(c) = self.claims.claim((*view, *seq), claim) {
                    out.push(
                        Violation::new(
                            self.name(),
                            at_us,
                            ev,
                            format!(
                                "{replica} prepared {} at {seq} in {view} where {} prepared {}",
                                fmt_digest(*digest),
                                c.replica,
                                fmt_digest(c.digest)
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
    use consensus_actors::types::NodeId;

    fn prepared(replica: u64, view: u64, seq: u64, digest: u64) -> SafetyEvent {
        PbftEvent::Prepared {
            replica: NodeId(replica),
            view: View(view),
            seq: SeqNo(seq),
            digest,
        }
        .into()
    }

    fn run(events: &[SafetyEvent]) -> Vec<Violation> {
        let mut inv = PbftPreparedAgreement::default();
        let mut out = Vec::new();
        for (t, ev) in events.iter().enumerate() {
            inv.observe(t as u64, ev, &mut out);
        }
        out
    }

    /// §4.2: one request per (view, seq); a new view may prepare another
    /// request at the same sequence number (it was never committed).
    #[test]
    fn one_request_per_view_and_sequence_number_passes() {
        let out = run(&[
            prepared(0, 0, 1, 10),
            prepared(1, 0, 1, 10),
            prepared(2, 1, 1, 11),
            prepared(1, 1, 1, 11),
            prepared(0, 0, 2, 12),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }

    /// §4.2: two correct replicas preparing different requests in one view.
    #[test]
    fn two_requests_prepared_in_one_view_are_reported() {
        let out = run(&[prepared(0, 3, 7, 10), prepared(1, 3, 7, 11)]);
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.invariant, "pbft-prepared-agreement");
        assert_eq!(v.nodes, vec![NodeId(0), NodeId(1)]);
        assert_eq!(v.epoch, Some(view_epoch(View(3))));
        assert_eq!(v.position, Some(seq_position(SeqNo(7))));
        assert_eq!(
            v.detail,
            "n1 prepared #000000000000000b at s7 in v3 where n0 prepared #000000000000000a"
        );
    }

    #[test]
    fn a_byzantine_replicas_conflicting_prepare_is_ignored() {
        let out = run(&[
            PbftEvent::ByzantineReplicas {
                replicas: vec![NodeId(0)],
            }
            .into(),
            prepared(0, 0, 1, 66),
            prepared(1, 0, 1, 10),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }
}
