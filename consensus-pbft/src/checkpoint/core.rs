//! The CheckpointProtocol core (Castro and Liskov, OSDI'99 §4.3): a
//! checkpoint every `K` sequence numbers with the digest of the state; a
//! checkpoint is *stable* with 2f+1 matching signed CHECKPOINTs from
//! distinct replicas (its proof); the low watermark `h` is the last stable
//! checkpoint and the high watermark `H = h + L`; everything in the log at
//! or below `h` is discarded.
//!
//! [`CheckpointProtocol`] is the book of votes and watermarks;
//! [`Checkpointer`] is the component's core around it: it signs and
//! multicasts this replica's CHECKPOINTs when the engine reports a
//! checkpoint, collects the others', tells the engine when a checkpoint is
//! stable, answers FETCH-STATE, and fetches and checks a state when the
//! replica is behind (the contract with the engine is [`crate::notes`]).

use crate::authenticator::core::{sha256, Keys};
use crate::engine::core::{Effect, ReplicaConfig};
use crate::evidence::{Evidence, EvidenceKind};
use crate::messages::{Checkpoint, Digest, FetchState, Maced, PbftMessage, Signed, StateTransfer};
use crate::notes::{CheckpointNote, EngineNote, Note, OwnCheckpoint};
use crate::types::SeqNo;
use crate::view_changer::core::Quorums;
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

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
    own: BTreeMap<SeqNo, (Digest, Arc<Vec<u8>>)>,
}

impl CheckpointProtocol {
    /// Checkpoints every `interval` sequence numbers, watermark window
    /// `window`, stable at `quorum` votes; the initial state has digest
    /// `genesis` and encoding `state`.
    pub fn new(
        interval: u64,
        window: u64,
        quorum: usize,
        genesis: Digest,
        state: impl Into<Arc<Vec<u8>>>,
    ) -> Self {
        assert!(
            interval > 0 && window >= interval,
            "the window must hold a checkpoint interval"
        );
        let mut own = BTreeMap::new();
        own.insert(SeqNo::ZERO, (genesis, state.into()));
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
    pub fn own_state(&self, seq: SeqNo) -> Option<(Digest, Arc<Vec<u8>>)> {
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
    pub fn take_own(&mut self, seq: SeqNo, digest: Digest, state: impl Into<Arc<Vec<u8>>>) {
        assert!(self.is_checkpoint(seq), "{seq} is not a checkpoint");
        if seq < self.stable.seq {
            return;
        }
        if seq == self.stable.seq {
            assert_eq!(digest, self.stable.digest, "state diverged at {seq}");
        }
        self.own.insert(seq, (digest, state.into()));
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

#[derive(Clone, Debug)]
struct Fetch {
    stable: StableCheckpoint,
    next: usize,
}

/// A stable checkpoint the engine has not executed yet and may still
/// reach from its own log.
#[derive(Clone, Debug)]
struct Behind {
    stable: StableCheckpoint,
    /// When it became stable, or execution last progressed since.
    since_us: u64,
}

/// Retransmission intervals without execution progress before a replica
/// behind a stable checkpoint fetches its state although the engine said
/// it holds the log up to it (the COMMITs it lacks may never come: the
/// others discarded that log).
pub const FETCH_AFTER_STALLED_ROUNDS: u64 = 2;

/// The CheckpointProtocol component's core. See the
/// [module documentation](self).
pub struct Checkpointer {
    cfg: ReplicaConfig,
    q: Quorums,
    keys: Rc<Keys>,
    book: CheckpointProtocol,
    /// False until the engine's state arrived (after a start or restart):
    /// nothing is recorded before.
    synced: bool,
    own_vote: Option<Signed<Checkpoint>>,
    fetch: Option<Fetch>,
    /// Behind a stable checkpoint, waiting for execution to reach it.
    behind: Option<Behind>,
    /// State transfers started (fetches).
    transfers: u64,
    /// The last sequence number the engine executed (as it reported).
    known_exec: SeqNo,
    now_us: u64,
    last_retransmit_us: u64,
    out: Vec<Effect>,
    notes: Vec<Note>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("id", &self.cfg.id)
            .field("synced", &self.synced)
            .field("h", &self.book.low())
            .field("known_exec", &self.known_exec)
            .field("fetching", &self.fetch.as_ref().map(|f| f.stable.seq))
            .finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// The CheckpointProtocol of `cfg.id`; `q` as the engine's, `genesis`
    /// the encoded initial state. Unsynced until [`Checkpointer::start`]'s
    /// request is answered.
    pub fn new(cfg: ReplicaConfig, q: Quorums, keys: Rc<Keys>, genesis: Arc<Vec<u8>>) -> Self {
        assert_eq!(keys.me(), cfg.id, "the replica's own keys");
        let book = CheckpointProtocol::new(
            cfg.checkpoint_interval,
            cfg.log_window,
            q.quorum(),
            q.genesis,
            genesis,
        );
        Self {
            cfg,
            q,
            keys,
            book,
            synced: false,
            own_vote: None,
            fetch: None,
            behind: None,
            transfers: 0,
            known_exec: SeqNo::ZERO,
            now_us: 0,
            last_retransmit_us: 0,
            out: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The book of votes and watermarks.
    pub fn book(&self) -> &CheckpointProtocol {
        &self.book
    }

    /// Whether the engine's state arrived since the last start.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The checkpoint it fetches the state of, if any.
    pub fn fetching(&self) -> Option<SeqNo> {
        self.fetch.as_ref().map(|f| f.stable.seq)
    }

    /// The stable checkpoint it waits for execution to reach, if any.
    pub fn awaiting(&self) -> Option<SeqNo> {
        self.behind.as_ref().map(|b| b.stable.seq)
    }

    /// State transfers it started (each counted in
    /// [`STATE_TRANSFER_METRIC`](crate::engine::core::STATE_TRANSFER_METRIC)).
    pub fn state_transfers(&self) -> u64 {
        self.transfers
    }

    /// On start and after every restart: asks the engine for its state.
    pub fn start(&mut self, now_us: u64) -> Vec<Effect> {
        self.now_us = self.now_us.max(now_us);
        self.synced = false;
        self.notes.push(Note::Engine(EngineNote::SyncCheckpoint));
        self.after_step()
    }

    /// Time passed: its CHECKPOINT again to replicas that did not vote,
    /// and its state-transfer request again.
    pub fn tick(&mut self, now_us: u64) -> Vec<Effect> {
        self.now_us = self.now_us.max(now_us);
        if self.synced
            && self.now_us.saturating_sub(self.last_retransmit_us) >= self.cfg.retransmit_us
        {
            self.last_retransmit_us = self.now_us;
            if let Some(vote) = &self.own_vote {
                let voters = self.book.voters(vote.body.seq);
                for &r in &self.cfg.members {
                    if r != self.cfg.id && !voters.contains(&r) {
                        self.out.push(Effect::Send {
                            to: r,
                            msg: PbftMessage::Checkpoint(vote.clone()),
                        });
                    }
                }
            }
            if self.fetch.is_some() {
                self.send_fetch();
            }
        }
        self.maybe_fetch_stalled();
        self.after_step()
    }

    /// An authenticated CHECKPOINT, FETCH-STATE or state transfer from
    /// `from` (other messages are not the CheckpointProtocol's).
    pub fn handle_message(&mut self, from: NodeId, msg: PbftMessage) -> Vec<Effect> {
        if self.synced {
            match msg {
                PbftMessage::Checkpoint(c) => self.handle_checkpoint(c),
                PbftMessage::FetchState(f) => self.handle_fetch_state(from, f.body),
                PbftMessage::StateTransfer(st) => self.handle_state_transfer(from, st),
                _ => {}
            }
        }
        self.after_step()
    }

    /// A note from the engine.
    pub fn handle_note(&mut self, note: CheckpointNote) -> Vec<Effect> {
        match note {
            CheckpointNote::Executed {
                last_exec,
                checkpoint,
            } => {
                if last_exec > self.known_exec {
                    self.known_exec = last_exec;
                    if let Some(b) = &mut self.behind {
                        b.since_us = self.now_us;
                    }
                }
                if let Some(own) = checkpoint {
                    self.take_checkpoint(own);
                }
            }
            CheckpointNote::Behind { seq } => {
                if self.fetch.is_none() && self.known_exec < seq {
                    let target = match self.behind.take() {
                        Some(b) if b.stable.seq <= seq => Some(b.stable),
                        other => {
                            self.behind = other;
                            (self.book.low() == seq).then(|| self.book.stable().clone())
                        }
                    };
                    if let Some(stable) = target {
                        tracing::debug!(replica = %self.cfg.id, seq = %stable.seq, "the engine cannot reach the stable checkpoint: fetching the state");
                        self.start_fetch(stable);
                    }
                }
            }
            CheckpointNote::Installed(own) => {
                self.known_exec = self.known_exec.max(own.seq);
                self.book.take_own(own.seq, own.digest, own.state);
            }
            CheckpointNote::Adopt(stable) => self.become_stable(stable),
            CheckpointNote::Synced {
                last_exec,
                stable,
                own,
            } => {
                self.synced = true;
                self.known_exec = self.known_exec.max(last_exec);
                if stable.seq > self.book.low() {
                    self.book.advance(stable.clone());
                }
                for c in own {
                    self.book.take_own(c.seq, c.digest, c.state);
                }
                if self.known_exec < self.book.low() {
                    let stable = self.book.stable().clone();
                    self.start_fetch(stable);
                }
            }
        }
        if self
            .fetch
            .as_ref()
            .is_some_and(|f| f.stable.seq <= self.known_exec)
        {
            self.fetch = None;
        }
        if self
            .behind
            .as_ref()
            .is_some_and(|b| b.stable.seq <= self.known_exec)
        {
            self.behind = None;
        }
        self.after_step()
    }

    /// The notes for the engine, in order.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    fn after_step(&mut self) -> Vec<Effect> {
        self.check_invariants();
        std::mem::take(&mut self.out)
    }

    fn check_invariants(&self) {
        assert!(
            !self.synced
                || self.known_exec >= self.book.low()
                || self.fetch.is_some()
                || self.behind.is_some(),
            "a replica below its stable checkpoint fetches the state or executes up to it"
        );
        assert!(
            self.fetch.is_none() || self.behind.is_none(),
            "it waits for execution or fetches, not both"
        );
        assert!(
            self.fetch
                .as_ref()
                .is_none_or(|f| f.stable.seq >= self.book.low()),
            "it fetches no state below its stable checkpoint"
        );
        assert!(self.book.votes_held() <= self.q.members.len() * VOTES_PER_REPLICA);
    }

    fn take_checkpoint(&mut self, own: OwnCheckpoint) {
        let seq = own.seq;
        self.book.take_own(seq, own.digest, own.state);
        let vote = Signed::new(
            Checkpoint {
                seq,
                state: own.digest,
                replica: self.cfg.id,
            },
            &self.keys,
        );
        self.own_vote = Some(vote.clone());
        self.out
            .push(Effect::Broadcast(PbftMessage::Checkpoint(vote.clone())));
        self.handle_checkpoint(vote);
    }

    fn handle_checkpoint(&mut self, vote: Signed<Checkpoint>) {
        let (seq, digest) = (vote.body.seq, vote.body.state);
        if let Some(stable) = self.book.record(vote) {
            self.become_stable(stable);
            return;
        }
        self.maybe_fetch_ahead(seq, digest);
    }

    /// f+1 matching CHECKPOINTs at or beyond the high watermark: at least
    /// one correct replica executed that far, and this one can accept no
    /// message there, so it fetches the state (TOCS 2002 §5.3.2). A replica
    /// whose peers answer it with 2f+1 votes will never see (when a
    /// Byzantine replica keeps its own vote from it: a twin talking to the
    /// other half) would otherwise stay behind for good. What it installs
    /// still needs the 2f+1-vote proof the state transfer carries.
    fn maybe_fetch_ahead(&mut self, seq: SeqNo, digest: Digest) {
        if self.fetch.is_some() || seq < self.book.high() || seq <= self.known_exec {
            return;
        }
        let votes = self.book.matching(seq, digest);
        if votes.len() <= self.cfg.f {
            return;
        }
        tracing::debug!(replica = %self.cfg.id, %seq, "f+1 checkpoints beyond the window: fetching the state");
        self.start_fetch(StableCheckpoint {
            seq,
            digest,
            proof: votes,
        });
    }

    fn become_stable(&mut self, stable: StableCheckpoint) {
        let seq = stable.seq;
        if seq <= self.book.low() {
            return;
        }
        self.book.advance(stable.clone());
        self.notes
            .push(Note::Engine(EngineNote::Stable(stable.clone())));
        if self.known_exec >= seq {
            return;
        }
        if let Some(fetch) = &mut self.fetch {
            // Already fetching: the later checkpoint's state instead.
            *fetch = Fetch { stable, next: 0 };
            self.send_fetch();
            return;
        }
        // Other replicas' votes usually arrive before this one's own
        // execution reaches the checkpoint: it fetches the state only if
        // the engine cannot reach it from its log (it answers `Behind`)
        // or execution stalls (TOCS 2002 §5.3.2). A later checkpoint
        // keeps the wait's start: a stalled replica fetches in time
        // however fast the others go.
        tracing::debug!(replica = %self.cfg.id, %seq, "behind a stable checkpoint: executing up to it");
        let since_us = self.behind.as_ref().map_or(self.now_us, |b| b.since_us);
        self.behind = Some(Behind { stable, since_us });
    }

    /// Behind a stable checkpoint and execution made no progress for
    /// [`FETCH_AFTER_STALLED_ROUNDS`] retransmission intervals: fetch.
    fn maybe_fetch_stalled(&mut self) {
        let wait = self
            .cfg
            .retransmit_us
            .saturating_mul(FETCH_AFTER_STALLED_ROUNDS);
        if self
            .behind
            .as_ref()
            .is_some_and(|b| self.now_us.saturating_sub(b.since_us) >= wait)
        {
            if let Some(b) = self.behind.take() {
                tracing::debug!(replica = %self.cfg.id, seq = %b.stable.seq, "execution stalled below the stable checkpoint: fetching the state");
                self.start_fetch(b.stable);
            }
        }
    }

    fn start_fetch(&mut self, stable: StableCheckpoint) {
        self.behind = None;
        self.transfers += 1;
        self.out
            .push(Effect::Count(crate::engine::core::STATE_TRANSFER_METRIC));
        self.fetch = Some(Fetch { stable, next: 0 });
        self.send_fetch();
    }

    fn send_fetch(&mut self) {
        let Some(fetch) = &mut self.fetch else { return };
        let candidates: Vec<NodeId> = fetch
            .stable
            .proof
            .iter()
            .map(|c| c.body.replica)
            .filter(|&r| r != self.cfg.id)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let to = candidates[fetch.next % candidates.len()];
        fetch.next += 1;
        let body = FetchState {
            seq: fetch.stable.seq,
            replica: self.cfg.id,
        };
        let msg = PbftMessage::FetchState(Maced::new(body, &self.keys, &[to]));
        self.out.push(Effect::Send { to, msg });
    }

    fn handle_fetch_state(&mut self, from: NodeId, f: FetchState) {
        if f.replica != from {
            return;
        }
        let stable = self.book.stable().clone();
        if stable.seq < f.seq || stable.seq == SeqNo::ZERO {
            return;
        }
        let Some((digest, state)) = self.book.own_state(stable.seq) else {
            return;
        };
        assert_eq!(digest, stable.digest);
        self.out.push(Effect::Send {
            to: from,
            msg: PbftMessage::StateTransfer(StateTransfer {
                seq: stable.seq,
                state: state.as_ref().clone(),
                proof: stable.proof,
            }),
        });
    }

    fn handle_state_transfer(&mut self, from: NodeId, st: StateTransfer) {
        // A state below the stable checkpoint is of no use: the log between
        // them is discarded everywhere, so only a state at or above it can
        // be caught up from.
        if st.seq <= self.known_exec || st.seq < self.book.low() {
            return;
        }
        let digest = sha256(&st.state);
        if !proof_is_valid(st.seq, digest, &st.proof, &self.q.members, self.q.quorum()) {
            self.out.push(Effect::Evidence(Evidence {
                witness: self.cfg.id,
                accused: from,
                kind: EvidenceKind::BadStateTransfer,
                proof: format!("state for {} does not match a certified checkpoint", st.seq),
            }));
            return;
        }
        let stable = StableCheckpoint {
            seq: st.seq,
            digest,
            proof: st.proof,
        };
        if stable.seq > self.book.low() {
            // Stable, but not fetched again: the engine installs it next.
            self.book.advance(stable.clone());
            self.notes
                .push(Note::Engine(EngineNote::Stable(stable.clone())));
            if self
                .fetch
                .as_ref()
                .is_none_or(|f| f.stable.seq < stable.seq)
            {
                self.behind = None;
                self.fetch = Some(Fetch {
                    stable: stable.clone(),
                    next: 0,
                });
            }
        }
        self.notes.push(Note::Engine(EngineNote::Install {
            from,
            stable,
            state: Arc::new(st.state),
        }));
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
        let mut cp = CheckpointProtocol::new(4, 8, 3, sha256(b"g"), Vec::new());
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
        let mut cp = CheckpointProtocol::new(4, 8, 3, sha256(b"g"), Vec::new());
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

    /// A Checkpointer of replica 3 (K = 4, L = 8), synced with a fresh
    /// engine.
    fn checkpointer() -> Checkpointer {
        let mut cfg = crate::engine::tests::config(3, 4);
        cfg.cluster = 1;
        cfg.secret = cluster_secret(1, 1);
        let q = cfg.quorums();
        let keys = Rc::new(Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members));
        let mut cp = Checkpointer::new(cfg, q.clone(), keys, Arc::new(Vec::new()));
        cp.start(0);
        assert!(!cp.is_synced());
        cp.handle_note(CheckpointNote::Synced {
            last_exec: SeqNo::ZERO,
            stable: StableCheckpoint {
                seq: SeqNo::ZERO,
                digest: q.genesis,
                proof: Vec::new(),
            },
            own: Vec::new(),
        });
        assert!(cp.is_synced());
        cp.take_notes();
        cp
    }

    fn engine_notes(cp: &mut Checkpointer) -> Vec<EngineNote> {
        cp.take_notes()
            .into_iter()
            .map(|n| match n {
                Note::Engine(e) => e,
                other => panic!("a Checkpointer talks to the engine only: {other:?}"),
            })
            .collect()
    }

    /// Found by the actor-level state-transfer test: a replica behind a
    /// stable checkpoint at 8 gets (late) the state of the earlier one at
    /// 4. The log between them is discarded everywhere, so that state
    /// helps nothing; handing it to the engine made it install a state
    /// below its stable checkpoint. It is dropped, and the replica keeps
    /// fetching 8.
    #[test]
    fn a_state_below_the_stable_checkpoint_is_not_installed() {
        let mut cp = checkpointer();
        for r in 0..3 {
            cp.handle_message(NodeId(r), PbftMessage::Checkpoint(vote(r, 8, b"s8")));
        }
        assert_eq!(cp.book().low(), SeqNo(8));
        assert_eq!(cp.fetching(), Some(SeqNo(8)), "behind: fetching");
        let notes = engine_notes(&mut cp);
        assert!(matches!(&notes[..], [EngineNote::Stable(s)] if s.seq == SeqNo(8)));
        let old = StateTransfer {
            seq: SeqNo(4),
            state: b"s4".to_vec(),
            proof: (0..3).map(|r| vote(r, 4, b"s4")).collect(),
        };
        let effects = cp.handle_message(NodeId(0), PbftMessage::StateTransfer(old));
        assert!(effects.is_empty(), "{effects:?}");
        assert!(engine_notes(&mut cp).is_empty(), "nothing to install");
        assert_eq!(cp.fetching(), Some(SeqNo(8)));
        let good = StateTransfer {
            seq: SeqNo(8),
            state: b"s8".to_vec(),
            proof: (0..3).map(|r| vote(r, 8, b"s8")).collect(),
        };
        cp.handle_message(NodeId(1), PbftMessage::StateTransfer(good));
        let notes = engine_notes(&mut cp);
        assert!(
            matches!(&notes[..], [EngineNote::Install { from, stable, .. }] if *from == NodeId(1) && stable.seq == SeqNo(8)),
            "{notes:?}"
        );
    }

    /// A forged state (its digest is not the certified one) is refused and
    /// its sender accused.
    #[test]
    fn a_state_that_does_not_match_its_certificate_is_refused_and_attributed() {
        let mut cp = checkpointer();
        let forged = StateTransfer {
            seq: SeqNo(8),
            state: b"lie".to_vec(),
            proof: (0..3).map(|r| vote(r, 8, b"s8")).collect(),
        };
        let effects = cp.handle_message(NodeId(2), PbftMessage::StateTransfer(forged));
        assert!(
            matches!(&effects[..], [Effect::Evidence(e)] if e.accused == NodeId(2) && e.kind == EvidenceKind::BadStateTransfer),
            "{effects:?}"
        );
        assert!(engine_notes(&mut cp).is_empty());
    }

    fn executed(cp: &mut Checkpointer, seq: u64) {
        cp.handle_note(CheckpointNote::Executed {
            last_exec: SeqNo(seq),
            checkpoint: None,
        });
    }

    /// TOCS 2002 §5.3.2: the others' CHECKPOINTs make 4 stable while this
    /// replica executed 2. It waits for its own execution (no fetch);
    /// execution reaches 4 and nothing was transferred. Then 8 becomes
    /// stable at 6 executed: progress keeps it waiting, and once execution
    /// stalls for two retransmission intervals it fetches 8.
    #[test]
    fn a_replica_executes_up_to_a_stable_checkpoint_and_fetches_only_when_stalled() {
        let mut cp = checkpointer();
        let retransmit = crate::engine::tests::config(3, 4).retransmit_us;
        executed(&mut cp, 2);
        for r in 0..3 {
            cp.handle_message(NodeId(r), PbftMessage::Checkpoint(vote(r, 4, b"s4")));
        }
        assert_eq!(cp.book().low(), SeqNo(4));
        assert_eq!((cp.awaiting(), cp.fetching()), (Some(SeqNo(4)), None));
        cp.tick(retransmit);
        executed(&mut cp, 4);
        assert_eq!((cp.awaiting(), cp.fetching()), (None, None));
        executed(&mut cp, 6);
        for r in 0..3 {
            cp.handle_message(NodeId(r), PbftMessage::Checkpoint(vote(r, 8, b"s8")));
        }
        assert_eq!(cp.awaiting(), Some(SeqNo(8)));
        cp.tick(2 * retransmit);
        executed(&mut cp, 7);
        cp.tick(3 * retransmit);
        assert_eq!(cp.fetching(), None, "execution progresses: it waits");
        cp.tick(5 * retransmit);
        assert_eq!((cp.awaiting(), cp.fetching()), (None, Some(SeqNo(8))));
        assert_eq!(cp.state_transfers(), 1);
    }

    /// The engine answers `Behind` (it cannot reach the checkpoint by the
    /// normal case): the replica fetches at once.
    #[test]
    fn a_replica_the_engine_says_is_behind_fetches_at_once() {
        let mut cp = checkpointer();
        for r in 0..3 {
            cp.handle_message(NodeId(r), PbftMessage::Checkpoint(vote(r, 4, b"s4")));
        }
        assert_eq!((cp.awaiting(), cp.fetching()), (Some(SeqNo(4)), None));
        let effects = cp.handle_note(CheckpointNote::Behind { seq: SeqNo(4) });
        assert_eq!((cp.awaiting(), cp.fetching()), (None, Some(SeqNo(4))));
        assert!(effects.iter().any(|e| matches!(
            e,
            Effect::Send {
                msg: PbftMessage::FetchState(_),
                ..
            }
        )));
        assert!(effects
            .iter()
            .any(|e| matches!(e, Effect::Count(crate::engine::core::STATE_TRANSFER_METRIC))));
        assert_eq!(cp.state_transfers(), 1);
    }
}
