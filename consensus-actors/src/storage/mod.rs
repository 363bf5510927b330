//! What a protocol must keep across crashes, and where it keeps it.
//!
//! Raft, Paxos and PBFT all persist the same three kinds of state, so one set
//! of traits serves them all:
//!
//! | trait | holds | Raft | Paxos | PBFT |
//! |---|---|---|---|---|
//! | [`HardStateStore<H>`] | a small record rewritten as a whole | term, vote | promised / accepted ballot | view |
//! | [`LogStore<E>`] | a positional, contiguous, 1-based log | entries | accepted slots | prepared requests |
//! | [`SnapshotStore`] | the latest state-machine [`Snapshot`] | compaction | checkpoint | stable checkpoint |
//! | [`Durable`] | the durability barrier: [`sync`](Durable::sync) | | | |
//!
//! A write is only *durable* once a later [`Durable::sync`] returned `Ok`.
//! Until then a crash may lose it (and [`MemStorage`] does lose it, see
//! [`MemStorage::crash`]). Protocol code therefore persists, syncs, and only
//! then sends any message that depends on what it persisted.
//!
//! # Log positions
//!
//! A log holds the entries `first_index()..=last_index()` with no gaps. Index
//! 0 means "before the first entry" and never holds an entry. Compaction
//! ([`LogStore::purge_prefix`]) removes a prefix; after purging up to `p`,
//! `first_index() == p + 1`. An empty log whose prefix up to `p` was purged has
//! `last_index() == p` (so the next [`append`](LogStore::append) lands at
//! `p + 1`).
//!
//! ```
//! use consensus_actors::storage::{Durable, LogStore, MemStorage};
//! use consensus_actors::types::LogIndex;
//!
//! let mut store: MemStorage<u64, String> = MemStorage::new();
//! store.append(&["a".to_string(), "b".to_string(), "c".to_string()]).unwrap();
//! store.sync().unwrap();
//! store.purge_prefix(LogIndex(2)).unwrap();
//! assert_eq!(store.first_index(), LogIndex(3));
//! assert_eq!(store.last_index(), LogIndex(3));
//! store.crash(); // the purge was not synced: it is undone
//! assert_eq!(store.first_index(), LogIndex(1));
//! assert_eq!(store.entries(LogIndex(1), LogIndex(4), 10).unwrap(), ["a", "b", "c"]);
//! ```
//!
//! # Layout
//!
//! - this module: the traits, [`Snapshot`] and [`StorageError`];
//! - [`mem`]: [`MemStorage`], the crash-aware in-memory implementation the
//!   simulation uses;
//! - [`disk`]: [`DiskStorage`], the durable store on disk (a segmented,
//!   checksummed write-ahead log with one fsync per sync);
//! - [`conformance`]: a test suite every implementation must pass.

pub mod conformance;
pub mod disk;
pub mod mem;

pub use disk::{DiskOptions, DiskStorage};
pub use mem::{MemStorage, StorageStats, SyncFailure};

use crate::types::{LogIndex, Term};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Why a storage operation failed.
///
/// `OutOfRange` and `Compacted` are caller mistakes or races with compaction
/// that protocol code can handle (e.g. send a snapshot instead of entries);
/// `Io`, `Codec`, `Corrupt` and `Unavailable` mean the store cannot be
/// trusted with the write and the node should stop or retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The operating system refused a read or a write.
    #[error("storage I/O error: {0}")]
    Io(String),
    /// A value could not be encoded or decoded.
    #[error("storage codec error: {0}")]
    Codec(String),
    /// Stored data failed an integrity check.
    #[error("storage corrupt: {0}")]
    Corrupt(String),
    /// The requested index or range lies outside the log (index 0, beyond
    /// the last entry, or a reversed range).
    #[error("log index {index} out of range (log holds {first}..={last})")]
    OutOfRange {
        /// The offending index.
        index: LogIndex,
        /// The first index present.
        first: LogIndex,
        /// The last index present.
        last: LogIndex,
    },
    /// The requested index was removed by compaction: read the snapshot.
    #[error("log index {index} compacted (first present index is {first})")]
    Compacted {
        /// The requested index.
        index: LogIndex,
        /// The first index still present.
        first: LogIndex,
    },
    /// The store is not accepting writes (fault injection, disk gone).
    #[error("storage unavailable")]
    Unavailable,
    /// Another process (or another store in this process) holds the store's
    /// directory: two writers would corrupt it.
    #[error("storage directory {0} is in use by another process (its LOCK file is locked)")]
    Locked(String),
}

/// Result of a storage operation.
pub type StorageResult<T> = Result<T, StorageError>;

/// A small record the protocol rewrites as a whole and must not forget:
/// Raft's current term and vote, Paxos's promised and accepted ballots,
/// PBFT's view. The protocol chooses `H`.
pub trait HardStateStore<H: Clone + Serialize + DeserializeOwned> {
    /// Replaces the stored hard state (durable after the next [`Durable::sync`]).
    fn save_hard_state(&mut self, state: &H) -> StorageResult<()>;

    /// The stored hard state, or `None` if none was ever saved.
    fn load_hard_state(&self) -> StorageResult<Option<H>>;
}

/// A positional, contiguous, 1-based log of entries `E`.
///
/// The store does not look inside entries: position `i` holds whatever was
/// appended `i`-th (counting purged entries). Protocols that put the index in
/// the entry (like [`LogEntry`](crate::types::LogEntry)) must keep the two in
/// agreement; [`append`](Self::append) always writes at `last_index() + 1`.
pub trait LogStore<E: Clone + Serialize + DeserializeOwned> {
    /// The first index present; `purged + 1`, so 1 for a log never purged
    /// (even when empty).
    fn first_index(&self) -> LogIndex;

    /// The last index present; when the log is empty this is the purged
    /// index (0 for a log never purged). The log is empty exactly when
    /// `last_index() < first_index()`.
    fn last_index(&self) -> LogIndex;

    /// Appends `entries` at `last_index() + 1 ..`. Appending an empty slice
    /// is a no-op.
    fn append(&mut self, entries: &[E]) -> StorageResult<()>;

    /// The entry at `index`: `Ok(None)` for index 0 or beyond the last
    /// entry, [`StorageError::Compacted`] if it was purged.
    fn entry(&self, index: LogIndex) -> StorageResult<Option<E>>;

    /// The entries `from..to_exclusive`, at most `max_entries` of them (the
    /// first ones). `from == to_exclusive` gives an empty vector.
    ///
    /// Errors: [`StorageError::Compacted`] if `from` was purged;
    /// [`StorageError::OutOfRange`] if `from` is 0, `from > to_exclusive` or
    /// `to_exclusive > last_index() + 1`.
    fn entries(
        &self,
        from: LogIndex,
        to_exclusive: LogIndex,
        max_entries: usize,
    ) -> StorageResult<Vec<E>>;

    /// Removes `from..=last_index()` (conflict resolution). `from` beyond the
    /// last entry is a no-op; `from == first_index()` empties the log, after
    /// which `last_index() == first_index() - 1`.
    ///
    /// Errors: [`StorageError::Compacted`] if `from` was purged (committed
    /// entries cannot be truncated); [`StorageError::OutOfRange`] if `from`
    /// is 0.
    fn truncate_suffix(&mut self, from: LogIndex) -> StorageResult<()>;

    /// Removes `..=upto` (compaction, after a snapshot covers it). Purging at
    /// or below the purged index is a no-op. Purging beyond the last entry
    /// is allowed (after installing a snapshot) and leaves an empty log with
    /// `last_index() == upto`.
    fn purge_prefix(&mut self, upto: LogIndex) -> StorageResult<()>;
}

/// A snapshot of the replicated state machine and the log position it
/// covers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last log index whose effect the snapshot includes.
    pub last_index: LogIndex,
    /// The term of the entry at `last_index`.
    pub last_term: Term,
    /// Protocol-specific metadata (e.g. the membership at `last_index`).
    pub meta: Vec<u8>,
    /// The state machine's serialized state.
    pub data: Vec<u8>,
}

impl Snapshot {
    /// A snapshot covering the log up to `last_index` (of term `last_term`).
    pub fn new(last_index: LogIndex, last_term: Term, meta: Vec<u8>, data: Vec<u8>) -> Self {
        Self {
            last_index,
            last_term,
            meta,
            data,
        }
    }
}

/// Keeps the latest snapshot.
pub trait SnapshotStore {
    /// Replaces the stored snapshot (durable after the next [`Durable::sync`]).
    /// It does not touch the log: purge it separately.
    fn save_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()>;

    /// The stored snapshot, or `None` if none was ever saved.
    fn load_snapshot(&self) -> StorageResult<Option<Snapshot>>;
}

/// The durability barrier.
pub trait Durable {
    /// Makes every earlier write (hard state, log, snapshot) durable: once
    /// this returns `Ok`, a crash cannot lose them.
    fn sync(&mut self) -> StorageResult<()>;
}

/// A store whose crash can be simulated: everything not made durable by
/// [`Durable::sync`] is lost, everything synced survives. [`MemStorage`]
/// implements it in memory; a disk store implements it as "drop and reopen".
pub trait CrashableStorage {
    /// Simulates a crash followed by a restart of the store.
    fn crash(&mut self);
}

/// Everything a protocol node needs from its store, in one bound.
/// Implemented for every type that implements the four traits.
pub trait Storage<H, E>:
    HardStateStore<H> + LogStore<E> + SnapshotStore + Durable + Send + 'static
where
    H: Clone + Serialize + DeserializeOwned,
    E: Clone + Serialize + DeserializeOwned,
{
}

impl<T, H, E> Storage<H, E> for T
where
    T: HardStateStore<H> + LogStore<E> + SnapshotStore + Durable + Send + 'static,
    H: Clone + Serialize + DeserializeOwned,
    E: Clone + Serialize + DeserializeOwned,
{
}
