//! Inbound checks of the MessageAuthenticator: every MAC, every signature
//! (nested ones included: the requests of a batch, the certificates of a
//! VIEW-CHANGE, the VIEW-CHANGEs of a NEW-VIEW) and every batch digest. A
//! message that fails is dropped and its sender accused when the failure
//! proves the sender lied to this replica.
//!
//! A client request carries MACs, not a signature, so only its own node
//! answers for it: a request with a bad MAC straight from the node that
//! claims it accuses that node; one forwarded by a backup, or inside a
//! primary's batch, is dropped without accusing anyone (the client may
//! have put a good MAC for one replica and a bad one for another, so the
//! forwarder may be correct). Requests inside a prepared certificate are
//! not checked again: the 2f+1 signed PRE-PREPARE and PREPAREs vouch that
//! at least f+1 correct replicas authenticated them.

use super::core::{digest_of, Keys};
use crate::evidence::EvidenceKind;
use crate::messages::{Batch, Digest, PbftMessage, PreparedCert, Signed, ViewChange};
use consensus_actors::types::NodeId;
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};

/// Signatures checked recently, by the digest of the signed item (a
/// retransmitted or nested signature is checked once). Bounded: the oldest
/// entries go first.
#[derive(Debug, Default)]
pub struct VerifyCache {
    set: BTreeSet<Digest>,
    order: VecDeque<Digest>,
}

impl VerifyCache {
    /// Entries kept at most.
    pub const CAPACITY: usize = 16_384;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `item` is authentic: from the cache, or by `check` (whose
    /// success is remembered).
    pub fn check<T: Serialize + ?Sized>(&mut self, item: &T, check: impl FnOnce() -> bool) -> bool {
        let d = digest_of(item);
        if self.set.contains(&d) {
            return true;
        }
        if !check() {
            return false;
        }
        if self.order.len() >= Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(d);
        self.order.push_back(d);
        true
    }
}

/// Why a message was refused, and whom it accuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The replica accused (the envelope's sender), `None` when the failure
    /// proves nothing against it.
    pub accused: Option<NodeId>,
    /// The misbehaviour.
    pub kind: EvidenceKind,
    /// A readable proof.
    pub proof: String,
}

fn refuse(accused: NodeId, kind: EvidenceKind, proof: String) -> Result<(), Refused> {
    Err(Refused {
        accused: Some(accused),
        kind,
        proof,
    })
}

fn drop_unattributable(kind: EvidenceKind, proof: String) -> Result<(), Refused> {
    Err(Refused {
        accused: None,
        kind,
        proof,
    })
}

fn check_batch(keys: &Keys, batch: &Batch) -> Result<(), Refused> {
    for r in batch.0.iter() {
        if !r.verify(keys) {
            return drop_unattributable(
                EvidenceKind::InvalidMac,
                format!(
                    "request t{} of client {} in a batch: its MAC for this replica fails",
                    r.request.timestamp, r.request.client
                ),
            );
        }
    }
    Ok(())
}

fn check_cert(
    keys: &Keys,
    cache: &mut VerifyCache,
    from: NodeId,
    cert: &PreparedCert,
) -> Result<(), Refused> {
    let pp = &cert.pre_prepare;
    if !cache.check(pp, || pp.verify(keys, pp.body.primary)) {
        return refuse(
            from,
            EvidenceKind::InvalidSignature,
            format!(
                "forged PRE-PREPARE {} {} in a certificate",
                pp.body.view, pp.body.seq
            ),
        );
    }
    for p in &cert.prepares {
        if !cache.check(p, || p.verify(keys, p.body.replica)) {
            return refuse(
                from,
                EvidenceKind::InvalidSignature,
                format!("forged PREPARE of {} in a certificate", p.body.replica),
            );
        }
    }
    Ok(())
}

fn check_view_change(
    keys: &Keys,
    cache: &mut VerifyCache,
    from: NodeId,
    vc: &Signed<ViewChange>,
) -> Result<(), Refused> {
    if !cache.check(vc, || vc.verify(keys, vc.body.replica)) {
        return refuse(
            from,
            EvidenceKind::InvalidSignature,
            format!(
                "VIEW-CHANGE for {} not signed by {}",
                vc.body.new_view, vc.body.replica
            ),
        );
    }
    for c in &vc.body.checkpoint_proof {
        if !cache.check(c, || c.verify(keys, c.body.replica)) {
            return refuse(
                from,
                EvidenceKind::InvalidSignature,
                format!("forged CHECKPOINT of {} in a proof", c.body.replica),
            );
        }
    }
    for cert in &vc.body.prepared {
        check_cert(keys, cache, from, cert)?;
    }
    Ok(())
}

/// Checks `msg` from `from`.
pub fn check_inbound(
    keys: &Keys,
    cache: &mut VerifyCache,
    from: NodeId,
    msg: &PbftMessage,
) -> Result<(), Refused> {
    let claimed = |sender: NodeId| -> Result<(), Refused> {
        if sender == from {
            Ok(())
        } else {
            refuse(
                from,
                EvidenceKind::Impersonation,
                format!("{} claims to be {sender}", msg.name()),
            )
        }
    };
    match msg {
        PbftMessage::Request(r) => {
            if !r.verify(keys) {
                let proof = format!(
                    "request t{} of client {}: its MAC for this replica fails",
                    r.request.timestamp, r.request.client
                );
                return if from == r.request.node {
                    refuse(from, EvidenceKind::InvalidMac, proof)
                } else {
                    drop_unattributable(EvidenceKind::InvalidMac, proof)
                };
            }
        }
        PbftMessage::PrePrepare { pre_prepare, batch } => {
            claimed(pre_prepare.body.primary)?;
            if !cache.check(pre_prepare, || pre_prepare.verify(keys, from)) {
                return refuse(
                    from,
                    EvidenceKind::InvalidSignature,
                    format!(
                        "PRE-PREPARE {} {}",
                        pre_prepare.body.view, pre_prepare.body.seq
                    ),
                );
            }
            if batch.digest() != pre_prepare.body.digest {
                return refuse(
                    from,
                    EvidenceKind::WrongDigest,
                    format!(
                        "PRE-PREPARE {} {} carries {:?}, its batch hashes to {:?}",
                        pre_prepare.body.view,
                        pre_prepare.body.seq,
                        pre_prepare.body.digest,
                        batch.digest()
                    ),
                );
            }
            check_batch(keys, batch)?;
        }
        PbftMessage::Prepare {
            prepare: p,
            pre_prepare: pp,
        } => {
            claimed(p.body.replica)?;
            if !cache.check(p, || p.verify(keys, from)) {
                return refuse(
                    from,
                    EvidenceKind::InvalidSignature,
                    format!("PREPARE {} {}", p.body.view, p.body.seq),
                );
            }
            let answers = pp.body.view == p.body.view
                && pp.body.seq == p.body.seq
                && pp.body.digest == p.body.digest;
            if !answers || !cache.check(pp, || pp.verify(keys, pp.body.primary)) {
                return refuse(
                    from,
                    EvidenceKind::InvalidSignature,
                    format!(
                        "PREPARE {} {} carries a PRE-PREPARE that is forged or for another request",
                        p.body.view, p.body.seq
                    ),
                );
            }
        }
        PbftMessage::Commit(c) => {
            claimed(c.body.replica)?;
            if !c.verify(keys, from) {
                return refuse(
                    from,
                    EvidenceKind::InvalidMac,
                    format!("COMMIT {} {}", c.body.view, c.body.seq),
                );
            }
        }
        PbftMessage::Reply(r) => {
            claimed(r.body.replica)?;
            if !r.verify(keys, from) {
                return refuse(
                    from,
                    EvidenceKind::InvalidMac,
                    format!("REPLY t{}", r.body.timestamp),
                );
            }
        }
        PbftMessage::Checkpoint(c) => {
            claimed(c.body.replica)?;
            if !cache.check(c, || c.verify(keys, from)) {
                return refuse(
                    from,
                    EvidenceKind::InvalidSignature,
                    format!("CHECKPOINT {}", c.body.seq),
                );
            }
        }
        PbftMessage::ViewChange(vc) => {
            claimed(vc.body.replica)?;
            check_view_change(keys, cache, from, vc)?;
        }
        PbftMessage::NewView(nv) => {
            claimed(nv.body.primary)?;
            if !cache.check(nv, || nv.verify(keys, from)) {
                return refuse(
                    from,
                    EvidenceKind::InvalidSignature,
                    format!("NEW-VIEW {}", nv.body.view),
                );
            }
            for vc in &nv.body.view_changes {
                check_view_change(keys, cache, from, vc)?;
            }
            for pp in &nv.body.pre_prepares {
                if !cache.check(pp, || pp.verify(keys, from)) {
                    return refuse(
                        from,
                        EvidenceKind::InvalidSignature,
                        format!("re-issued PRE-PREPARE {} in NEW-VIEW", pp.body.seq),
                    );
                }
            }
        }
        PbftMessage::FetchState(f) => {
            claimed(f.body.replica)?;
            if !f.verify(keys, from) {
                return refuse(
                    from,
                    EvidenceKind::InvalidMac,
                    format!("state request for {}", f.body.seq),
                );
            }
        }
        PbftMessage::StateTransfer(st) => {
            for c in &st.proof {
                if !cache.check(c, || c.verify(keys, c.body.replica)) {
                    return refuse(
                        from,
                        EvidenceKind::InvalidSignature,
                        format!(
                            "forged CHECKPOINT of {} in a state transfer",
                            c.body.replica
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}
