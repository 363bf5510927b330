//! The ViewChanger core (Castro and Liskov, OSDI'99 §4.4): what goes into
//! a VIEW-CHANGE, when one is valid, and the NEW-VIEW's re-issued
//! PRE-PREPAREs (`O`) that the new primary computes and every backup
//! recomputes, so a primary that lies is caught.
//!
//! * A VIEW-CHANGE for `v+1` carries the replica's stable checkpoint with
//!   its proof (2f+1 signed CHECKPOINTs) and, for every sequence number
//!   above it, the prepared certificate of the highest view (a signed
//!   PRE-PREPARE and 2f signed PREPAREs from distinct backups).
//! * `O`: let `min-s` be the highest stable checkpoint in the 2f+1
//!   VIEW-CHANGEs and `max-s` the highest prepared sequence number; every
//!   `n` in `(min-s, max-s]` gets the digest of the certificate of the
//!   highest view for `n`, or the null request if there is none.
//!
//! Timeouts: [`view_change_timeout_us`] doubles with every successive view
//! change that did not lead to progress.

use crate::checkpoint::core::proof_is_valid;
use crate::messages::{Batch, Checkpoint, Digest, PreparedCert, Signed, ViewChange};
use crate::types::{SeqNo, View};
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;

/// The cluster's shape, as the view change needs it.
#[derive(Clone, Debug)]
pub struct Quorums {
    /// Replicas, sorted; the primary of view `v` is `members[v mod n]`.
    pub members: Vec<NodeId>,
    /// `f`.
    pub f: usize,
    /// The watermark window `L`.
    pub window: u64,
    /// The digest of the initial state (the checkpoint at 0).
    pub genesis: Digest,
}

impl Quorums {
    /// The primary of `view`.
    pub fn primary(&self, view: View) -> NodeId {
        self.members[(view.get() % self.members.len() as u64) as usize]
    }

    /// `2f + 1`.
    pub fn quorum(&self) -> usize {
        2 * self.f + 1
    }
}

/// Why a VIEW-CHANGE is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidViewChange {
    /// Its checkpoint proof does not hold 2f+1 matching CHECKPOINTs.
    #[error("the checkpoint proof for {0} does not hold 2f+1 matching CHECKPOINTs")]
    CheckpointProof(SeqNo),
    /// A prepared certificate is malformed.
    #[error("the prepared certificate for {seq} is invalid: {why}")]
    Certificate {
        /// Its sequence number.
        seq: SeqNo,
        /// What is wrong.
        why: &'static str,
    },
    /// Two certificates for one sequence number.
    #[error("two prepared certificates for {0}")]
    DuplicateCertificate(SeqNo),
}

/// Checks a prepared certificate (signatures are the authenticator's job).
pub fn certificate_is_valid(cert: &PreparedCert, q: &Quorums) -> Result<(), &'static str> {
    let pp = &cert.pre_prepare.body;
    if pp.primary != q.primary(pp.view) {
        return Err("the PRE-PREPARE is not from the primary of its view");
    }
    if cert.batch.digest() != pp.digest {
        return Err("the batch does not match the PRE-PREPARE's digest");
    }
    let mut backups: Vec<NodeId> = cert
        .prepares
        .iter()
        .filter(|p| {
            p.body.view == pp.view
                && p.body.seq == pp.seq
                && p.body.digest == pp.digest
                && p.body.replica != pp.primary
                && q.members.contains(&p.body.replica)
        })
        .map(|p| p.body.replica)
        .collect();
    backups.sort_unstable();
    backups.dedup();
    if backups.len() < 2 * q.f {
        return Err("fewer than 2f matching PREPAREs from distinct backups");
    }
    Ok(())
}

/// Checks a VIEW-CHANGE's content (signatures are the authenticator's job).
pub fn validate_view_change(vc: &ViewChange, q: &Quorums) -> Result<(), InvalidViewChange> {
    let proof_ok = if vc.stable_seq == SeqNo::ZERO {
        vc.stable_digest == q.genesis
    } else {
        proof_is_valid(
            vc.stable_seq,
            vc.stable_digest,
            &vc.checkpoint_proof,
            &q.members,
            q.quorum(),
        )
    };
    if !proof_ok {
        return Err(InvalidViewChange::CheckpointProof(vc.stable_seq));
    }
    let mut seen = Vec::new();
    for cert in &vc.prepared {
        let pp = &cert.pre_prepare.body;
        let seq = pp.seq;
        if seen.contains(&seq) {
            return Err(InvalidViewChange::DuplicateCertificate(seq));
        }
        seen.push(seq);
        if pp.view >= vc.new_view {
            return Err(InvalidViewChange::Certificate {
                seq,
                why: "prepared in a view not below the new one",
            });
        }
        if seq <= vc.stable_seq || seq.get() > vc.stable_seq.get() + q.window {
            return Err(InvalidViewChange::Certificate {
                seq,
                why: "outside the watermarks",
            });
        }
        certificate_is_valid(cert, q).map_err(|why| InvalidViewChange::Certificate { seq, why })?;
    }
    Ok(())
}

/// What a NEW-VIEW must contain, computed from 2f+1 VIEW-CHANGEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewViewPlan {
    /// `min-s`: the highest stable checkpoint among them.
    pub min_s: SeqNo,
    /// Its digest.
    pub min_s_digest: Digest,
    /// Its proof.
    pub min_s_proof: Vec<Signed<Checkpoint>>,
    /// `max-s`: the highest prepared sequence number (at least `min-s`).
    pub max_s: SeqNo,
    /// `O`: the digest and batch to re-issue for every `n` in
    /// `(min-s, max-s]` (the null request where no certificate is).
    pub reissue: BTreeMap<SeqNo, (Digest, Batch)>,
}

/// Computes `O` from valid VIEW-CHANGEs (deterministic in their content,
/// whatever their order).
pub fn plan_new_view<'a>(vcs: impl IntoIterator<Item = &'a ViewChange>) -> NewViewPlan {
    let vcs: Vec<&ViewChange> = vcs.into_iter().collect();
    assert!(!vcs.is_empty(), "a NEW-VIEW needs VIEW-CHANGEs");
    let best = vcs
        .iter()
        .max_by_key(|vc| (vc.stable_seq, vc.replica))
        .copied()
        .unwrap_or(vcs[0]);
    let min_s = best.stable_seq;
    let mut chosen: BTreeMap<SeqNo, (View, &PreparedCert)> = BTreeMap::new();
    for vc in &vcs {
        for cert in &vc.prepared {
            let pp = &cert.pre_prepare.body;
            if pp.seq <= min_s {
                continue;
            }
            match chosen.get(&pp.seq) {
                Some((v, c)) if (*v, c.pre_prepare.body.digest) >= (pp.view, pp.digest) => {}
                _ => {
                    chosen.insert(pp.seq, (pp.view, cert));
                }
            }
        }
    }
    let max_s = chosen
        .keys()
        .next_back()
        .copied()
        .unwrap_or(min_s)
        .max(min_s);
    let null = Batch::default();
    let null_digest = null.digest();
    let mut reissue = BTreeMap::new();
    let mut n = min_s.next();
    while n <= max_s {
        let entry = match chosen.get(&n) {
            Some((_, cert)) => (cert.pre_prepare.body.digest, cert.batch.clone()),
            None => (null_digest, null.clone()),
        };
        reissue.insert(n, entry);
        n = n.next();
    }
    assert!(max_s >= min_s && reissue.len() as u64 == max_s.get() - min_s.get());
    NewViewPlan {
        min_s,
        min_s_digest: best.stable_digest,
        min_s_proof: best.checkpoint_proof.clone(),
        max_s,
        reissue,
    }
}

/// The timeout before giving up on view `attempt` views after the last
/// one that made progress: `base * 2^attempt`, capped.
pub fn view_change_timeout_us(base_us: u64, attempt: u32) -> u64 {
    base_us.saturating_mul(1u64 << attempt.min(6))
}
