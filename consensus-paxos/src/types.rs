//! Paxos' vocabulary: ballots (proposal numbers), slots and the values
//! proposed in them (batches of client commands, or a no-op).

use consensus_actors::kv::KvCommand;
use consensus_actors::types::{ClientId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

consensus_actors::newtype_u64!(
    /// A Multi-Paxos log slot.
    Slot,
    "slot"
);

/// A Paxos ballot (proposal number): ordered by round, then by the proposer's
/// node id, so two proposers never use the same ballot.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// The round; a proposer that is pre-empted retries with a higher round.
    pub round: u64,
    /// The node that owns this ballot (tie-breaker).
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every real ballot.
    pub const ZERO: Self = Self {
        round: 0,
        node: NodeId(0),
    };

    /// A ballot of `round` owned by `node`.
    pub const fn new(round: u64, node: NodeId) -> Self {
        Self { round, node }
    }

    /// The smallest ballot owned by `node` that is greater than `self`.
    #[must_use]
    pub const fn next_for(self, node: NodeId) -> Self {
        Self {
            round: self.round + 1,
            node,
        }
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.round, self.node.0)
    }
}

/// Names one batch of client commands: the proposer's node, a nonce drawn
/// when that proposer (re)started, and a sequence number. A batch may be
/// proposed in more than one slot (a proposer that lost a slot retries its
/// batch in a later one); learners execute it once, at its first slot.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct BatchId {
    /// The proposing node.
    pub node: NodeId,
    /// Drawn by the proposer when it started (distinguishes incarnations).
    pub nonce: u64,
    /// The proposer's count of batches.
    pub seq: u64,
}

/// How far below a proposer's highest executed batch a batch of the same
/// proposer may still run: [`ExecutedBatches`] remembers which of the
/// last this many it executed. A proposer has at most its window plus its
/// retries of batches outstanding (formed, not yet delivered), far fewer.
pub const EXECUTED_WINDOW: u64 = 4096;

/// What [`ExecutedBatches::admit`] decided for a delivered batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Not executed before: run it.
    Execute,
    /// Executed before (a copy chosen in an earlier slot): skip it.
    Duplicate,
    /// More than [`EXECUTED_WINDOW`] batches below its proposer's highest
    /// executed one: whether it ran is no longer known, so it is skipped
    /// (never run twice) and its clients are answered "unknown".
    TooOld,
}

/// The batches a learner executed, bounded like a client table: per
/// proposer incarnation (node, nonce), the highest batch sequence number
/// executed and the sequence numbers within [`EXECUTED_WINDOW`] below it
/// that did not run (yet), as ranges. In slot order a proposer's batches
/// mostly arrive in sequence order, so the ranges stay few; its size
/// grows with proposer incarnations, not with commands. It is part of
/// every snapshot: a batch chosen again after a snapshot runs at most once
/// on every learner, whether it delivered the slots or installed them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutedBatches {
    by_proposer: BTreeMap<(NodeId, u64), ProposerRecord>,
}

/// One proposer incarnation's entry of [`ExecutedBatches`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ProposerRecord {
    /// The highest sequence number executed.
    highest: u64,
    /// Half-open ranges of sequence numbers in the window below `highest`
    /// not executed: sorted, disjoint, non-empty.
    missing: Vec<(u64, u64)>,
}

impl ProposerRecord {
    /// The lowest sequence number still tracked.
    fn floor(&self) -> u64 {
        self.highest.saturating_sub(EXECUTED_WINDOW - 1)
    }

    fn trim(&mut self) {
        let floor = self.floor();
        self.missing.retain(|(_, end)| *end > floor);
        if let Some(first) = self.missing.first_mut() {
            first.0 = first.0.max(floor);
        }
    }

    fn missing_at(&self, seq: u64) -> Option<usize> {
        self.missing.iter().position(|&(a, e)| a <= seq && seq < e)
    }
}

impl ExecutedBatches {
    /// Nothing executed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides whether `batch`, delivered now, runs; records it when it
    /// does.
    pub fn admit(&mut self, batch: BatchId) -> Admission {
        let seq = batch.seq;
        let Some(r) = self.by_proposer.get_mut(&(batch.node, batch.nonce)) else {
            // The first batch of this incarnation seen here: the ones below
            // it (within the window) may still come.
            let mut r = ProposerRecord {
                highest: seq,
                missing: Vec::new(),
            };
            if r.floor() < seq {
                r.missing.push((r.floor(), seq));
            }
            self.by_proposer.insert((batch.node, batch.nonce), r);
            return Admission::Execute;
        };
        if seq > r.highest {
            if seq > r.highest + 1 {
                r.missing.push((r.highest + 1, seq));
            }
            r.highest = seq;
            r.trim();
            return Admission::Execute;
        }
        if seq < r.floor() {
            return Admission::TooOld;
        }
        match r.missing_at(seq) {
            Some(i) => {
                let (a, e) = r.missing[i];
                let mut parts = Vec::with_capacity(2);
                if a < seq {
                    parts.push((a, seq));
                }
                if seq + 1 < e {
                    parts.push((seq + 1, e));
                }
                r.missing.splice(i..=i, parts);
                Admission::Execute
            }
            None => Admission::Duplicate,
        }
    }

    /// Whether `batch` will never run here (again): it ran, or it is too
    /// old to run.
    pub fn done(&self, batch: &BatchId) -> bool {
        match self.by_proposer.get(&(batch.node, batch.nonce)) {
            None => false,
            Some(r) => {
                batch.seq < r.floor()
                    || (batch.seq <= r.highest && r.missing_at(batch.seq).is_none())
            }
        }
    }

    /// Proposer incarnations recorded.
    pub fn proposers(&self) -> usize {
        self.by_proposer.len()
    }

    /// The ranges of sequence numbers remembered as not run, over every
    /// proposer (the table's size beyond one entry per incarnation).
    pub fn gaps(&self) -> usize {
        self.by_proposer.values().map(|r| r.missing.len()).sum()
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch{}.{:x}.{}", self.node.0, self.nonce, self.seq)
    }
}

/// One client command inside a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The client that submitted it.
    pub client: ClientId,
    /// The command.
    pub command: KvCommand,
}

/// What a slot holds: a batch of client requests, or a no-op (a hole a new
/// leader filled, `batch == None`), or a configuration change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    /// The batch's name (`None`: a no-op).
    pub batch: Option<BatchId>,
    /// The requests, applied in order.
    pub requests: Vec<Request>,
    /// A configuration change: the acceptors (sorted) from `α` slots after
    /// this one on (see [`Configurations`]).
    #[serde(default)]
    pub reconfig: Option<Vec<NodeId>>,
}

impl Value {
    /// The no-op a new leader proposes in a slot no acceptor reported.
    pub fn noop() -> Self {
        Self {
            batch: None,
            requests: Vec::new(),
            reconfig: None,
        }
    }

    /// A batch of requests.
    pub fn batch(batch: BatchId, requests: Vec<Request>) -> Self {
        Self {
            batch: Some(batch),
            requests,
            reconfig: None,
        }
    }

    /// Whether this is a no-op.
    pub fn is_noop(&self) -> bool {
        self.batch.is_none()
    }

    /// The digest safety events carry for this value.
    pub fn digest(&self) -> u64 {
        consensus_actors::safety::digest_of(self)
    }
}

/// The acceptor sets of a Multi-Paxos log over time: `(first slot,
/// members)`, the first entry from slot 1. A change chosen in slot `s`
/// takes effect at slot `s + α` (Lamport, "Paxos Made Simple" §3: the
/// acceptors of instance `i + α` are named by the state after instance
/// `i`), with `α` the window: a leader proposes in slot `t` only once slot
/// `t − α` is delivered, so it always knows which acceptors `t` has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configurations {
    /// From which slot on, which acceptors (sorted).
    pub from: BTreeMap<Slot, Vec<NodeId>>,
}

impl Configurations {
    /// One configuration from slot 1.
    pub fn initial(members: &[NodeId]) -> Self {
        let mut m = members.to_vec();
        m.sort_unstable();
        m.dedup();
        Self {
            from: BTreeMap::from([(Slot(1), m)]),
        }
    }

    /// The acceptors of `slot`.
    pub fn at(&self, slot: Slot) -> &[NodeId] {
        self.from
            .range(..=slot)
            .next_back()
            .map_or(&[], |(_, m)| m.as_slice())
    }

    /// The first slot of the configuration `slot` is in.
    pub fn start_of(&self, slot: Slot) -> Slot {
        self.from
            .range(..=slot)
            .next_back()
            .map_or(Slot(1), |(s, _)| *s)
    }

    /// The latest configuration and the slot it starts at.
    pub fn latest(&self) -> (Slot, &[NodeId]) {
        self.from
            .iter()
            .next_back()
            .map_or((Slot(1), &[][..]), |(s, m)| (*s, m.as_slice()))
    }

    /// Every acceptor of the configurations from `slot`'s on, sorted.
    pub fn from_slot(&self, slot: Slot) -> Vec<NodeId> {
        let start = self.start_of(slot);
        let mut all: Vec<NodeId> = self
            .from
            .range(start..)
            .flat_map(|(_, m)| m.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Records a change chosen in `slot`: `members` from `slot + alpha` on.
    pub fn change(&mut self, slot: Slot, alpha: u64, members: &[NodeId]) {
        let mut m = members.to_vec();
        m.sort_unstable();
        m.dedup();
        self.from.insert(Slot(slot.0 + alpha), m);
    }
}

/// A value as messages and stores share it (never copied on broadcast).
pub type ValueRef = Arc<Value>;

/// A proposal an acceptor accepted: (slot, ballot, value), the paper's
/// "pvalue".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PValue {
    /// The slot.
    pub slot: Slot,
    /// The ballot it was accepted at.
    pub ballot: Ballot,
    /// The value.
    pub value: ValueRef,
}

/// The learner's state machine at a slot: what log compaction keeps in
/// place of the slots up to `slot`, and what a lagging learner installs
/// when the slots it asks for were compacted away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaxosSnapshot {
    /// The last slot whose value the snapshot includes.
    pub slot: Slot,
    /// The ballot `slot`'s value was chosen at.
    pub ballot: Ballot,
    /// The state machine ([`StateMachine::snapshot`](consensus_actors::kv::StateMachine::snapshot)).
    pub state: Vec<u8>,
    /// The batches executed up to `slot` (a batch chosen again in a later
    /// slot must not run twice).
    pub executed: ExecutedBatches,
    /// The configurations known at `slot` (empty: the initial one).
    #[serde(default)]
    pub configs: Configurations,
}

/// A snapshot as messages and learners share it.
pub type SnapshotRef = Arc<PaxosSnapshot>;

impl PaxosSnapshot {
    /// The snapshot in the storage traits' form: `last_index` = slot,
    /// `last_term` = the ballot's round, `meta` = (ballot, executed) in
    /// MessagePack, `data` = the state machine.
    pub fn to_stored(&self) -> consensus_actors::storage::Snapshot {
        // Encoding a ballot and a list of ids cannot fail.
        let meta =
            rmp_serde::to_vec(&(self.ballot, &self.executed, &self.configs)).unwrap_or_default();
        consensus_actors::storage::Snapshot::new(
            consensus_actors::types::LogIndex(self.slot.0),
            consensus_actors::types::Term(self.ballot.round),
            meta,
            self.state.clone(),
        )
    }

    /// The snapshot [`to_stored`](Self::to_stored) wrote; an error for
    /// metadata it cannot decode.
    pub fn from_stored(
        stored: consensus_actors::storage::Snapshot,
    ) -> Result<Self, consensus_actors::kv::SnapshotDecodeError> {
        let (ballot, executed, configs): (Ballot, ExecutedBatches, Configurations) =
            rmp_serde::from_slice(&stored.meta)
                .map_err(|e| consensus_actors::kv::SnapshotDecodeError(e.to_string()))?;
        Ok(Self {
            slot: Slot(stored.last_index.0),
            ballot,
            state: stored.data,
            executed,
            configs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(node: u64, nonce: u64, seq: u64) -> BatchId {
        BatchId {
            node: NodeId(node),
            nonce,
            seq,
        }
    }

    /// Each batch runs once, in whatever order its proposer's batches are
    /// delivered; incarnations are told apart; a batch more than the
    /// window below its proposer's highest is refused as too old.
    #[test]
    fn executed_batches_admit_each_batch_once_in_any_order_within_the_window() {
        let mut e = ExecutedBatches::new();
        assert_eq!(e.admit(b(1, 7, 3)), Admission::Execute);
        assert_eq!(e.admit(b(1, 7, 3)), Admission::Duplicate);
        // Below the first one seen, and a jump ahead: both still run once.
        assert_eq!(e.admit(b(1, 7, 1)), Admission::Execute);
        assert_eq!(e.admit(b(1, 7, 9)), Admission::Execute);
        for seq in [0, 2, 4, 5, 6, 7, 8] {
            assert!(!e.done(&b(1, 7, seq)));
            assert_eq!(e.admit(b(1, 7, seq)), Admission::Execute, "{seq}");
            assert!(e.done(&b(1, 7, seq)));
        }
        for seq in 0..=9 {
            assert_eq!(e.admit(b(1, 7, seq)), Admission::Duplicate, "{seq}");
        }
        assert_eq!(e.gaps(), 0);
        // Another incarnation of the same node is another proposer.
        assert_eq!(e.admit(b(1, 8, 3)), Admission::Execute);
        assert_eq!(e.proposers(), 2);
        // Far ahead: what lies a window below is too old to tell.
        let top = 9 + EXECUTED_WINDOW + 10;
        assert_eq!(e.admit(b(1, 7, top)), Admission::Execute);
        assert_eq!(e.admit(b(1, 7, 5)), Admission::TooOld);
        assert!(e.done(&b(1, 7, 5)));
        assert_eq!(e.admit(b(1, 7, top - 1)), Admission::Execute);
        // One range not run yet per incarnation: 20..4114 and 0..3.
        assert_eq!(e.gaps(), 2);
        assert!(e.by_proposer.values().all(|r| r
            .missing
            .iter()
            .all(|(a, end)| a < end && *end <= r.highest)));
    }

    #[test]
    fn ballots_order_by_round_then_node() {
        assert!(Ballot::new(1, NodeId(5)) < Ballot::new(2, NodeId(1)));
        assert!(Ballot::new(2, NodeId(1)) < Ballot::new(2, NodeId(2)));
        assert!(Ballot::ZERO < Ballot::new(0, NodeId(1)));
        let b = Ballot::new(3, NodeId(2)).next_for(NodeId(1));
        assert_eq!(b, Ballot::new(4, NodeId(1)));
        assert_eq!(b.to_string(), "b4.1");
        assert_eq!(Slot(3).to_string(), "slot3");
    }

    #[test]
    fn a_snapshot_round_trips_through_the_storage_form() {
        let s = PaxosSnapshot {
            slot: Slot(9),
            ballot: Ballot::new(4, NodeId(2)),
            state: vec![1, 2, 3],
            executed: {
                let mut e = ExecutedBatches::new();
                e.admit(BatchId {
                    node: NodeId(1),
                    nonce: 5,
                    seq: 7,
                });
                e
            },
            configs: Configurations::initial(&[NodeId(1), NodeId(2)]),
        };
        let stored = s.to_stored();
        assert_eq!(stored.last_index.0, 9);
        assert_eq!(stored.last_term.0, 4);
        assert_eq!(PaxosSnapshot::from_stored(stored).unwrap(), s);
        let garbage = consensus_actors::storage::Snapshot::new(
            consensus_actors::types::LogIndex(1),
            consensus_actors::types::Term(1),
            vec![0xc1],
            Vec::new(),
        );
        assert!(PaxosSnapshot::from_stored(garbage).is_err());
    }
}
