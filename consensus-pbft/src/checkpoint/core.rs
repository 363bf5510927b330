//! The CheckpointProtocol core (Castro and Liskov, OSDI'99 §4.3): a
//! checkpoint every `K` sequence numbers with the digest of the state; a
//! checkpoint is *stable* with 2f+1 matching signed CHECKPOINTs from
//! distinct replicas (its proof); the low watermark `h` is the last stable
//! checkpoint and the high watermark `H = h + L`; everything in the log at
//! or below `h` is discarded.

use crate::messages::{Checkpoint, Digest, Signed};
use crate::types::SeqNo;
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Checkpoint votes kept per replica (a Byzantine replica cannot make the
/// table grow beyond `n * VOTES_PER_REPLICA`).
pub const VOTES_PER_REPLICA: usize = 4;

/// A stable checkpoint and its proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StableCheckpoint {
    /// Its sequence number (`h`).
    pub seq: SeqNo,
    /// The state digest.
    pub digest: Digest,
    /// 2f+1 matching signed CHECKPOINTs (empty for the initial state).
    pub proof: Vec<Signed<Checkpoint>>,
}

/// Checks that `proof` holds `quorum` matching CHECKPOINTs for `(seq,
/// digest)` from distinct members (signatures are the authenticator's
/// job).
pub fn proof_is_valid(
    seq: SeqNo,
    digest: Digest,
    proof: &[Signed<Checkpoint>],
    members: &[NodeId],
    quorum: usize,
) -> bool {
    let mut signers: Vec<NodeId> = proof
        .iter()
        .filter(|c| {
            c.body.seq == seq && c.body.state == digest && members.contains(&c.body.replica)
        })
        .map(|c| c.body.replica)
        .collect();
    signers.sort_unstable();
    signers.dedup();
    signers.len() >= quorum
}

/// The checkpoint state of one replica.
#[derive(Debug)]
pub struct CheckpointProtocol {
    interval: u64,
    window: u64,
    quorum: usize,
    stable: StableCheckpoint,
    votes: BTreeMap<SeqNo, BTreeMap<NodeId, Signed<Checkpoint>>>,
    own: BTreeMap<SeqNo, (Digest, Rc<Vec<u8>>)>,
}

impl CheckpointProtocol {
    /// Checkpoints every `interval` sequence numbers, watermark window
    /// `window`, stable at `quorum` votes; the initial state has digest
    /// `genesis` and encoding `state`.
    pub fn new(interval: u64, window: u64, quorum: usize, genesis: Digest, state: Vec<u8>) -> Self {
        assert!(
            interval > 0 && window >= interval,
            "the window must hold a checkpoint interval"
        );
        let mut own = BTreeMap::new();
        own.insert(SeqNo::ZERO, (genesis, Rc::new(state)));
        Self {
            interval,
            window,
            quorum,
            stable: StableCheckpoint {
                seq: SeqNo::ZERO,
                digest: genesis,
                proof: Vec::new(),
            },
            votes: BTreeMap::new(),
            own,
        }
    }

    /// `K`.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// Whether a checkpoint is taken after executing `seq`.
    pub fn is_checkpoint(&self, seq: SeqNo) -> bool {
        seq.get().is_multiple_of(self.interval)
    }

    /// The low watermark `h`.
    pub fn low(&self) -> SeqNo {
        self.stable.seq
    }

    /// The high watermark `H = h + L`.
    pub fn high(&self) -> SeqNo {
        SeqNo(self.stable.seq.get() + self.window)
    }

    /// Whether `seq` is within `(h, H]`.
    pub fn in_window(&self, seq: SeqNo) -> bool {
        seq > self.low() && seq <= self.high()
    }

    /// The last stable checkpoint.
    pub fn stable(&self) -> &StableCheckpoint {
        &self.stable
    }

    /// The encoded state of this replica's own checkpoint at `seq`.
    pub fn own_state(&self, seq: SeqNo) -> Option<(Digest, Rc<Vec<u8>>)> {
        self.own.get(&seq).cloned()
    }

    /// This replica's highest own checkpoint.
    pub fn last_own(&self) -> Option<SeqNo> {
        self.own.keys().next_back().copied()
    }

    /// The replicas that sent a CHECKPOINT for `seq`.
    pub fn voters(&self, seq: SeqNo) -> Vec<NodeId> {
        self.votes
            .get(&seq)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The CHECKPOINTs recorded for `seq` with state `digest`.
    pub fn matching(&self, seq: SeqNo, digest: Digest) -> Vec<Signed<Checkpoint>> {
        self.votes
            .get(&seq)
            .map(|v| {
                v.values()
                    .filter(|c| c.body.state == digest)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records this replica's own checkpoint (its state after executing
    /// `seq`).
    pub fn take_own(&mut self, seq: SeqNo, digest: Digest, state: Vec<u8>) {
        assert!(self.is_checkpoint(seq), "{seq} is not a checkpoint");
        self.own.insert(seq, (digest, Rc::new(state)));
    }

    /// Records a CHECKPOINT (signature already checked); returns the new
    /// stable checkpoint if this vote made one.
    pub fn record(&mut self, vote: Signed<Checkpoint>) -> Option<StableCheckpoint> {
        let seq = vote.body.seq;
        if seq <= self.stable.seq {
            return None;
        }
        let replica = vote.body.replica;
        self.votes.entry(seq).or_default().insert(replica, vote);
        // Bound the votes of each replica.
        let mine: Vec<SeqNo> = self
            .votes
            .iter()
            .filter(|(_, v)| v.contains_key(&replica))
            .map(|(s, _)| *s)
            .collect();
        if mine.len() > VOTES_PER_REPLICA {
            for s in &mine[..mine.len() - VOTES_PER_REPLICA] {
                if let Some(v) = self.votes.get_mut(s) {
                    v.remove(&replica);
                }
            }
        }
        let votes = self.votes.get(&seq)?;
        let mut by_digest: BTreeMap<Digest, Vec<&Signed<Checkpoint>>> = BTreeMap::new();
        for v in votes.values() {
            by_digest.entry(v.body.state).or_default().push(v);
        }
        let (digest, proof) = by_digest
            .into_iter()
            .find(|(_, v)| v.len() >= self.quorum)?;
        let stable = StableCheckpoint {
            seq,
            digest,
            proof: proof.into_iter().cloned().collect(),
        };
        Some(stable)
    }

    /// Makes `stable` the last stable checkpoint (it must be above the
    /// current one): the watermarks move and older votes and states go.
    /// The caller discards its log at or below `stable.seq`.
    pub fn advance(&mut self, stable: StableCheckpoint) {
        assert!(
            stable.seq > self.stable.seq,
            "stable checkpoints only move forward"
        );
        assert!(
            stable.seq.get() == 0 || stable.proof.len() >= self.quorum,
            "a stable checkpoint needs 2f+1 votes"
        );
        if let Some((own, _)) = self.own.get(&stable.seq) {
            // Agreement on the state: our own checkpoint matches the one
            // 2f+1 replicas (f+1 correct ones) signed.
            assert_eq!(*own, stable.digest, "state diverged at {}", stable.seq);
        }
        let seq = stable.seq;
        self.stable = stable;
        self.votes = self.votes.split_off(&seq.next());
        let keep = self.own.split_off(&seq);
        self.own = keep;
        assert!(self.low() == seq && self.high() > seq);
    }

    /// Drops own checkpoints that a state transfer overtook.
    pub fn drop_own_below(&mut self, seq: SeqNo) {
        self.own = self.own.split_off(&seq);
    }

    /// Votes held (a bound: at most `n * VOTES_PER_REPLICA`).
    pub fn votes_held(&self) -> usize {
        self.votes.values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticator::core::{cluster_secret, sha256, Keys};

    fn members() -> Vec<NodeId> {
        (0..4).map(NodeId).collect()
    }

    fn vote(replica: u64, seq: u64, state: &[u8]) -> Signed<Checkpoint> {
        let keys = Keys::new(1, cluster_secret(1, 1), NodeId(replica), &members());
        Signed::new(
            Checkpoint {
                seq: SeqNo(seq),
                state: sha256(state),
                replica: NodeId(replica),
            },
            &keys,
        )
    }

    #[test]
    fn a_checkpoint_becomes_stable_at_2f_plus_1_matching_votes_and_moves_the_watermarks() {
        let mut cp = CheckpointProtocol::new(4, 8, 3, sha256(b"g"), vec![]);
        assert_eq!((cp.low(), cp.high()), (SeqNo(0), SeqNo(8)));
        assert!(cp.record(vote(0, 4, b"a")).is_none());
        assert!(
            cp.record(vote(1, 4, b"b")).is_none(),
            "a different digest does not count"
        );
        assert!(cp.record(vote(2, 4, b"a")).is_none());
        let stable = cp.record(vote(3, 4, b"a")).expect("stable");
        assert_eq!(stable.seq, SeqNo(4));
        assert_eq!(stable.digest, sha256(b"a"));
        assert!(proof_is_valid(
            SeqNo(4),
            sha256(b"a"),
            &stable.proof,
            &members(),
            3
        ));
        cp.take_own(SeqNo(4), sha256(b"a"), b"a".to_vec());
        cp.advance(stable);
        assert_eq!((cp.low(), cp.high()), (SeqNo(4), SeqNo(12)));
        assert!(!cp.in_window(SeqNo(4)) && cp.in_window(SeqNo(12)) && !cp.in_window(SeqNo(13)));
        assert_eq!(cp.votes_held(), 0);
        assert!(
            cp.record(vote(1, 4, b"a")).is_none(),
            "votes at or below h are ignored"
        );
    }

    #[test]
    fn votes_of_one_replica_are_bounded() {
        let mut cp = CheckpointProtocol::new(4, 8, 3, sha256(b"g"), vec![]);
        for s in 1..100 {
            cp.record(vote(3, 4 * s, b"x"));
        }
        assert_eq!(cp.votes_held(), VOTES_PER_REPLICA);
    }

    #[test]
    fn a_proof_needs_distinct_members() {
        let v = vote(1, 4, b"a");
        assert!(!proof_is_valid(
            SeqNo(4),
            sha256(b"a"),
            &[v.clone(), v.clone(), v],
            &members(),
            3
        ));
    }
}
