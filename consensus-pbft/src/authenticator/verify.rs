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
//!
//! A request this replica already authenticated on receipt is not checked
//! again inside a PRE-PREPARE's batch: the cache remembers the digests of
//! the requests whose MAC held ([`VerifyCache::knows_request`]), and a
//! request with the same digest has the same client, timestamp and
//! operation, so the client sent it whatever MAC the batch carries. A
//! request the replica never authenticated (one a primary made up, or one
//! that reached only the primary) is checked as before.

use super::core::{sha256, Keys};
use crate::evidence::EvidenceKind;
use crate::messages::{
    Authenticated, Batch, Digest, PbftMessage, PreparedCert, Signed, ViewChange,
};
use consensus_actors::types::NodeId;
use std::collections::{BTreeSet, HashSet, VecDeque};

/// Signatures checked recently, by the digest of the signed item (a
/// retransmitted or nested signature is checked once), and the digests of
/// client requests whose MAC held. Bounded: the oldest entries go first.
#[derive(Debug)]
pub struct VerifyCache {
    set: BTreeSet<Digest>,
    order: VecDeque<Digest>,
    /// Request digests in two generations: new ones go into the first;
    /// when it is full it becomes the second and the old second, cleared,
    /// the first (its allocation kept: no growth, no rehash after the
    /// start, which profiled at 8 % of a loaded run with a growing set
    /// and queue). Only membership is asked (no iteration): hash sets are
    /// safe here.
    requests: [HashSet<Digest>; 2],
}

impl Default for VerifyCache {
    fn default() -> Self {
        Self {
            set: BTreeSet::new(),
            order: VecDeque::new(),
            requests: [
                HashSet::with_capacity(Self::REQUEST_CAPACITY / 2),
                HashSet::with_capacity(Self::REQUEST_CAPACITY / 2),
            ],
        }
    }
}

impl VerifyCache {
    /// Entries kept at most.
    pub const CAPACITY: usize = 16_384;

    /// Authenticated request digests kept at most (a digest goes when its
    /// request comes in a batch; beyond, the oldest go and are checked
    /// again if they come in a batch). At least twice the requests in
    /// flight of a loaded run (4096).
    pub const REQUEST_CAPACITY: usize = 1 << 14;

    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers that the request with digest `d` was authenticated.
    pub fn note_request(&mut self, d: Digest) {
        if self.knows_request(&d) {
            return;
        }
        if self.requests[0].len() >= Self::REQUEST_CAPACITY / 2 {
            self.requests.swap(0, 1);
            self.requests[0].clear();
        }
        self.requests[0].insert(d);
        debug_assert!(self.requests_held() <= Self::REQUEST_CAPACITY);
    }

    /// Whether the request with digest `d` was authenticated (and not
    /// forgotten since).
    pub fn knows_request(&self, d: &Digest) -> bool {
        self.requests.iter().any(|g| g.contains(d))
    }

    /// Forgets `d` (its request came in a batch: it is ordered once).
    pub fn forget_request(&mut self, d: &Digest) -> bool {
        let a = self.requests[0].remove(d);
        let b = self.requests[1].remove(d);
        a || b
    }

    /// Request digests held.
    pub fn requests_held(&self) -> usize {
        self.requests.iter().map(HashSet::len).sum()
    }

    /// Whether `signed` carries `signer`'s signature: from the cache, or
    /// checked (and remembered). The key is the digest the signature
    /// covers with the signature and the signer, so a hit costs the
    /// body's signed digest, not its whole encoding: cheap for a
    /// VIEW-CHANGE or NEW-VIEW, whose signed digests leave the batches out
    /// ([`ViewChange::signed_digest`]).
    pub fn check_signed<T: Authenticated>(
        &mut self,
        keys: &Keys,
        signed: &Signed<T>,
        signer: NodeId,
    ) -> bool {
        let header = signed.body.header();
        let mut key = [0u8; 32 + 64 + 8 + 1];
        key[..32].copy_from_slice(&header.body.0);
        key[32..96].copy_from_slice(&signed.sig.to_bytes());
        key[96..104].copy_from_slice(&signer.get().to_le_bytes());
        key[104] = header.kind as u8;
        let d = sha256(&key);
        if self.set.contains(&d) {
            return true;
        }
        if !keys.verify_replica(signer, &header, &signed.sig) {
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

/// Checks the MACs of the requests of `batch` this replica did not
/// authenticate on receipt; `digests` are theirs, in order.
fn check_batch(
    keys: &Keys,
    cache: &mut VerifyCache,
    batch: &Batch,
    digests: &[Digest],
) -> Result<(), Refused> {
    debug_assert_eq!(batch.len(), digests.len());
    for (r, d) in batch.requests().iter().zip(digests) {
        if cache.forget_request(d) {
            continue;
        }
        if !r.verify_digest(keys, *d) {
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
    if !cache.check_signed(keys, pp, pp.body.primary) {
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
        if !cache.check_signed(keys, p, p.body.replica) {
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
    if !cache.check_signed(keys, vc, vc.body.replica) {
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
        if !cache.check_signed(keys, c, c.body.replica) {
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
            let d = r.digest();
            if r.verify_digest(keys, d) {
                cache.note_request(d);
            } else {
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
            if !cache.check_signed(keys, pre_prepare, from) {
                return refuse(
                    from,
                    EvidenceKind::InvalidSignature,
                    format!(
                        "PRE-PREPARE {} {}",
                        pre_prepare.body.view, pre_prepare.body.seq
                    ),
                );
            }
            // Each request's digest once, for the batch's and the cache.
            let digests: Vec<Digest> = batch.requests().iter().map(|r| r.digest()).collect();
            let digest = Batch::digest_of_requests(digests.iter().copied());
            if digest != pre_prepare.body.digest {
                return refuse(
                    from,
                    EvidenceKind::WrongDigest,
                    format!(
                        "PRE-PREPARE {} {} carries {:?}, its batch hashes to {:?}",
                        pre_prepare.body.view,
                        pre_prepare.body.seq,
                        pre_prepare.body.digest,
                        digest
                    ),
                );
            }
            check_batch(keys, cache, batch, &digests)?;
            // The engine checks the digest again: it need not hash again.
            batch.remember_digest(digest);
        }
        PbftMessage::Prepare {
            prepare: p,
            pre_prepare: pp,
        } => {
            claimed(p.body.replica)?;
            if !cache.check_signed(keys, p, from) {
                return refuse(
                    from,
                    EvidenceKind::InvalidSignature,
                    format!("PREPARE {} {}", p.body.view, p.body.seq),
                );
            }
            let answers = pp.body.view == p.body.view
                && pp.body.seq == p.body.seq
                && pp.body.digest == p.body.digest;
            if !answers || !cache.check_signed(keys, pp, pp.body.primary) {
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
        // The clients check the MACs of the REPLYs they still wait for
        // (`ClientCore::handle_reply`): the f+1 they need, not every one.
        PbftMessage::Reply(r) => claimed(r.body.replica)?,
        PbftMessage::Replies(b) => {
            claimed(b.body.replica)?;
            for r in &b.body.replies {
                claimed(r.replica)?;
            }
        }
        PbftMessage::Checkpoint(c) => {
            claimed(c.body.replica)?;
            if !cache.check_signed(keys, c, from) {
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
            if !cache.check_signed(keys, nv, from) {
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
                if !cache.check_signed(keys, pp, from) {
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
                if !cache.check_signed(keys, c, c.body.replica) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticator::core::cluster_secret;
    use crate::messages::{encode_payload, AuthenticatedRequest, PrePrepare, Request, Tag};
    use crate::types::{SeqNo, View};
    use consensus_actors::kv::KvCommand;
    use consensus_actors::types::ClientId;

    const CLIENT: NodeId = NodeId(100);

    fn members() -> Vec<NodeId> {
        (0..4).map(NodeId).collect()
    }

    fn keys(me: NodeId) -> Keys {
        Keys::new(7, cluster_secret(3, 7), me, &members())
    }

    fn request(timestamp: u64, value: &str) -> AuthenticatedRequest {
        let client = Keys::new(7, cluster_secret(3, 7), CLIENT, &[]);
        AuthenticatedRequest::new(
            Request {
                node: CLIENT,
                client: ClientId(1),
                timestamp,
                op: encode_payload(&KvCommand::put("k", value)),
            },
            &client,
            &members(),
        )
    }

    /// The primary n0's PRE-PREPARE for `batch` at 1 in view 0.
    fn pre_prepare(batch: Vec<AuthenticatedRequest>) -> PbftMessage {
        let batch = Batch::new(batch);
        let pre_prepare = Signed::new(
            PrePrepare {
                view: View::ZERO,
                seq: SeqNo(1),
                digest: batch.digest(),
                primary: NodeId(0),
            },
            &keys(NodeId(0)),
        );
        PbftMessage::PrePrepare { pre_prepare, batch }
    }

    /// A request whose MAC held on receipt is not checked again in the
    /// primary's batch: one client MAC checked in all, not two.
    #[test]
    fn a_request_authenticated_on_receipt_is_not_checked_again_in_a_batch() {
        let me = keys(NodeId(1));
        let mut cache = VerifyCache::new();
        let r = request(1, "v");
        let before = me.counts().macs_checked;
        check_inbound(&me, &mut cache, CLIENT, &PbftMessage::Request(r.clone()))
            .expect("an authentic request");
        assert_eq!(me.counts().macs_checked, before + 1);
        assert_eq!(cache.requests_held(), 1);
        check_inbound(&me, &mut cache, NodeId(0), &pre_prepare(vec![r]))
            .expect("an authentic PRE-PREPARE");
        assert_eq!(
            me.counts().macs_checked,
            before + 1,
            "the request's MAC is not checked twice"
        );
        assert_eq!(cache.requests_held(), 0, "ordered: forgotten");
        // A request it never received is checked in the batch.
        check_inbound(
            &me,
            &mut cache,
            NodeId(0),
            &pre_prepare(vec![request(2, "w")]),
        )
        .expect("an authentic PRE-PREPARE");
        assert_eq!(me.counts().macs_checked, before + 2);
    }

    /// A request the client never sent, inside the primary's batch with a
    /// forged MAC, is refused; so is one whose operation the primary
    /// changed after the client authenticated the original (another
    /// digest: the cache does not vouch for it). Nobody is accused: the
    /// client may have put a bad MAC for this replica only.
    #[test]
    fn a_forged_request_mac_inside_a_pre_prepare_is_refused_without_accusing_the_primary() {
        let me = keys(NodeId(1));
        let mut cache = VerifyCache::new();
        let genuine = request(1, "v");
        check_inbound(
            &me,
            &mut cache,
            CLIENT,
            &PbftMessage::Request(genuine.clone()),
        )
        .expect("an authentic request");
        let mut forged = request(2, "w");
        for (_, tag) in &mut forged.auth {
            *tag = Tag([7; 32]);
        }
        let mut altered = genuine.clone();
        altered.request.op = encode_payload(&KvCommand::put("k", "changed"));
        for lie in [forged, altered] {
            let refused = check_inbound(
                &me,
                &mut cache,
                NodeId(0),
                &pre_prepare(vec![genuine.clone(), lie]),
            )
            .expect_err("a request the client did not send");
            assert_eq!(refused.kind, EvidenceKind::InvalidMac);
            assert_eq!(refused.accused, None, "{}", refused.proof);
        }
    }

    /// The request cache is bounded: the oldest digests go first.
    #[test]
    fn the_request_cache_forgets_the_oldest_digests_beyond_its_capacity() {
        let mut cache = VerifyCache::new();
        let digest = |i: u64| {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&i.to_le_bytes());
            Digest(d)
        };
        let cap = VerifyCache::REQUEST_CAPACITY as u64;
        for i in 0..cap + 10 {
            cache.note_request(digest(i));
            assert!(cache.requests_held() <= VerifyCache::REQUEST_CAPACITY);
        }
        // The oldest half went; the newest are kept.
        assert!(!cache.knows_request(&digest(0)) && !cache.knows_request(&digest(cap / 2 - 1)));
        assert!(cache.knows_request(&digest(cap / 2)) && cache.knows_request(&digest(cap + 9)));
        assert!(cache.forget_request(&digest(cap + 9)));
        assert!(!cache.knows_request(&digest(cap + 9)));
    }
}
