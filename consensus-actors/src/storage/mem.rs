//! [`MemStorage`]: the crash-aware in-memory store used by the simulation and
//! by tests.
//!
//! # Crash semantics
//!
//! Reads always see every write, synced or not (like the operating system's
//! page cache). [`MemStorage::crash`] throws away every write made since the
//! last successful [`Durable::sync`] and restores the image that sync made
//! durable.
//!
//! # Disk faults
//!
//! Besides [`MemStorage::set_fail_writes`] (a disk that refuses writes), the
//! store plays the faults the durable store on disk
//! ([`DiskStorage`](super::DiskStorage)) can meet, chosen by the caller
//! (the simulation's seeded nemesis), so runs stay deterministic:
//!
//! - a crash loses what was not synced ([`MemStorage::crash`]);
//! - a failed `fsync` ([`MemStorage::fail_next_sync`]): the next sync
//!   returns [`StorageError::Io`] and from then on every write and sync
//!   fails until the next crash (restart), as after a real failed `fsync`
//!   whose outcome the kernel no longer knows. What the failed sync was
//!   writing either *landed* ([`SyncFailure::Landed`]: durable although the
//!   caller was told otherwise) or was *torn* ([`SyncFailure::Torn`]: the
//!   disk store's torn last record, cut off on reopen, so the writes are
//!   lost at the crash). A protocol is safe under both only if it
//!   acknowledges nothing that depends on a sync that failed.
//!
//! # Cost
//!
//! The store keeps one copy of the log (a `VecDeque` after a purge watermark)
//! and an *undo list* of the unsynced log operations: appends are recorded as
//! a count (consecutive appends coalesce into one record), truncations and
//! purges move the entries they removed into their record. So:
//!
//! - `append(n entries)`: O(n) (the clone of the slice), no extra copy;
//! - `sync`: O(unsynced records + entries they hold), independent of the log
//!   length; syncing after appends only is O(1);
//! - `crash`: O(unsynced work);
//! - `entries(from, to, max)`: one `Vec` allocation plus the clones.

use super::{
    CrashableStorage, Durable, HardStateStore, LogStore, Snapshot, SnapshotStore, StorageError,
    StorageResult,
};
use crate::types::LogIndex;
#[cfg(test)]
use crate::types::Term;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Counters of what a [`MemStorage`] was asked to do (for tests and
/// metrics). Failed writes (see [`MemStorage::set_fail_writes`]) are counted
/// only in `failed_writes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStats {
    /// Successful [`Durable::sync`] calls.
    pub syncs: u64,
    /// Successful [`HardStateStore::save_hard_state`] calls.
    pub hard_state_writes: u64,
    /// Successful non-empty [`LogStore::append`] calls.
    pub append_calls: u64,
    /// Entries appended by those calls.
    pub entries_appended: u64,
    /// Successful [`LogStore::truncate_suffix`] calls that removed entries.
    pub truncations: u64,
    /// Successful [`LogStore::purge_prefix`] calls that moved the watermark.
    pub purges: u64,
    /// Successful [`SnapshotStore::save_snapshot`] calls.
    pub snapshot_writes: u64,
    /// Simulated crashes.
    pub crashes: u64,
    /// Writes and syncs refused with [`StorageError::Unavailable`].
    pub failed_writes: u64,
    /// Syncs that failed because of [`MemStorage::fail_next_sync`].
    pub failed_syncs: u64,
}

/// What a sync failed by [`MemStorage::fail_next_sync`] did to the writes
/// it was making durable (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SyncFailure {
    /// The write was torn: the writes are lost at the next crash.
    Torn,
    /// The write landed but the flush reported an error: the writes
    /// survive the next crash.
    Landed,
}

/// How to undo one unsynced log operation.
enum LogUndo<E> {
    /// `count` entries were appended at the end: drop them.
    Append { count: usize },
    /// These entries were removed from the end: put them back.
    TruncateSuffix { removed: Vec<E> },
    /// These entries were removed from the front and the purge watermark
    /// moved from `prev_purged`: put both back.
    PurgePrefix {
        prev_purged: LogIndex,
        removed: Vec<E>,
    },
}

struct Inner<H, E> {
    /// Current hard state (what reads see).
    hard: Option<H>,
    /// The durable hard state, kept while an unsynced save is pending.
    hard_undo: Option<Option<H>>,
    /// Current snapshot.
    snapshot: Option<Snapshot>,
    /// The durable snapshot, kept while an unsynced save is pending.
    snapshot_undo: Option<Option<Snapshot>>,
    /// Entries `purged + 1 ..= purged + log.len()`.
    log: VecDeque<E>,
    /// Everything up to here was purged.
    purged: LogIndex,
    /// Unsynced log operations, oldest first.
    log_undo: Vec<LogUndo<E>>,
    fail_writes: bool,
    /// The next sync fails this way.
    sync_failure: Option<SyncFailure>,
    /// A sync failed: everything is refused until the next crash.
    failed: bool,
    stats: StorageStats,
}

impl<H, E> Inner<H, E> {
    fn new() -> Self {
        Self {
            hard: None,
            hard_undo: None,
            snapshot: None,
            snapshot_undo: None,
            log: VecDeque::new(),
            purged: LogIndex::ZERO,
            log_undo: Vec::new(),
            fail_writes: false,
            sync_failure: None,
            failed: false,
            stats: StorageStats::default(),
        }
    }

    fn first_index(&self) -> LogIndex {
        self.purged.next()
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.purged.get() + self.log.len() as u64)
    }

    /// Offset in `log` of a present index (caller checked the range).
    fn offset(&self, index: LogIndex) -> usize {
        debug_assert!(index > self.purged && index <= self.last_index());
        (index.get() - self.purged.get() - 1) as usize
    }

    fn out_of_range(&self, index: LogIndex) -> StorageError {
        StorageError::OutOfRange {
            index,
            first: self.first_index(),
            last: self.last_index(),
        }
    }

    fn compacted(&self, index: LogIndex) -> StorageError {
        StorageError::Compacted {
            index,
            first: self.first_index(),
        }
    }

    fn check_writable(&mut self) -> StorageResult<()> {
        if self.failed {
            self.stats.failed_writes += 1;
            return Err(StorageError::Io(
                "a sync failed earlier: the store must be reopened".into(),
            ));
        }
        if self.fail_writes {
            self.stats.failed_writes += 1;
            return Err(StorageError::Unavailable);
        }
        Ok(())
    }

    fn has_unsynced_writes(&self) -> bool {
        self.hard_undo.is_some() || self.snapshot_undo.is_some() || !self.log_undo.is_empty()
    }

    fn sync(&mut self) -> StorageResult<()> {
        self.check_writable()?;
        if let Some(outcome) = self.sync_failure.take() {
            self.failed = true;
            self.stats.failed_syncs += 1;
            if outcome == SyncFailure::Landed {
                self.make_durable();
            }
            tracing::debug!(?outcome, "storage: injected sync failure");
            return Err(StorageError::Io(format!(
                "injected fsync failure (write {outcome:?})"
            )));
        }
        self.make_durable();
        self.stats.syncs += 1;
        Ok(())
    }

    fn make_durable(&mut self) {
        self.hard_undo = None;
        self.snapshot_undo = None;
        self.log_undo.clear();
    }

    fn crash(&mut self) {
        let undone = self.log_undo.len();
        // The restarted process has a working store again.
        self.failed = false;
        self.sync_failure = None;
        if let Some(prev) = self.hard_undo.take() {
            self.hard = prev;
        }
        if let Some(prev) = self.snapshot_undo.take() {
            self.snapshot = prev;
        }
        while let Some(undo) = self.log_undo.pop() {
            match undo {
                LogUndo::Append { count } => {
                    debug_assert!(count <= self.log.len());
                    self.log.truncate(self.log.len() - count);
                }
                LogUndo::TruncateSuffix { removed } => self.log.extend(removed),
                LogUndo::PurgePrefix {
                    prev_purged,
                    removed,
                } => {
                    for e in removed.into_iter().rev() {
                        self.log.push_front(e);
                    }
                    self.purged = prev_purged;
                }
            }
        }
        self.stats.crashes += 1;
        tracing::debug!(
            undone_log_ops = undone,
            first = %self.first_index(),
            last = %self.last_index(),
            "storage crash: unsynced writes discarded"
        );
    }
}

/// Crash-aware in-memory storage for one node: hard state, log and snapshot.
///
/// A cheap [`Clone`] handle (`Arc<Mutex<..>>`, `Send + Sync`): the node's
/// actors and the simulation share one store. Writes become durable at
/// [`Durable::sync`]; [`crash`](Self::crash) discards the rest. See the
/// [module docs](self) for costs.
pub struct MemStorage<H, E> {
    inner: Arc<Mutex<Inner<H, E>>>,
}

impl<H, E> Clone for MemStorage<H, E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<H, E> Default for MemStorage<H, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H, E> fmt::Debug for MemStorage<H, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemStorage")
            .field("first_index", &inner.first_index())
            .field("last_index", &inner.last_index())
            .field("has_hard_state", &inner.hard.is_some())
            .field("has_snapshot", &inner.snapshot.is_some())
            .field("unsynced", &inner.has_unsynced_writes())
            .field("stats", &inner.stats)
            .finish()
    }
}

impl<H, E> MemStorage<H, E> {
    /// An empty store: no hard state, empty log, no snapshot.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<H, E>> {
        // Every mutation of `Inner` leaves it consistent before it can panic
        // (only allocation can), so a poisoned lock still guards valid data.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Simulates a crash and restart: discards every write (hard state, log
    /// appends, truncations, purges, snapshots) made since the last
    /// successful sync, restoring the last synced image. Every handle sees
    /// the restored image.
    pub fn crash(&self) {
        self.lock().crash();
    }

    /// Fault injection: while `true`, every write and every sync fails with
    /// [`StorageError::Unavailable`] and changes nothing. Reads keep working.
    pub fn set_fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    /// Fault injection: the next [`Durable::sync`] fails with
    /// [`StorageError::Io`], leaving the writes it was making durable as
    /// `outcome` says; from then on every write and sync fails until
    /// [`crash`](Self::crash). A crash before that sync disarms it.
    pub fn fail_next_sync(&self, outcome: SyncFailure) {
        self.lock().sync_failure = Some(outcome);
    }

    /// Whether a sync failed and the store refuses writes until a crash.
    pub fn has_failed(&self) -> bool {
        self.lock().failed
    }

    /// Whether a write was made since the last successful sync.
    pub fn has_unsynced_writes(&self) -> bool {
        self.lock().has_unsynced_writes()
    }

    /// What the store has been asked to do so far.
    pub fn stats(&self) -> StorageStats {
        self.lock().stats
    }

    /// Whether `self` and `other` are handles to the same store.
    pub fn same_store(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<H, E> CrashableStorage for MemStorage<H, E> {
    fn crash(&mut self) {
        self.lock().crash();
    }
}

impl<H, E> Durable for MemStorage<H, E> {
    fn sync(&mut self) -> StorageResult<()> {
        self.lock().sync()
    }
}

impl<H, E> HardStateStore<H> for MemStorage<H, E>
where
    H: Clone + Serialize + DeserializeOwned,
{
    fn save_hard_state(&mut self, state: &H) -> StorageResult<()> {
        let mut inner = self.lock();
        inner.check_writable()?;
        let prev = inner.hard.replace(state.clone());
        if inner.hard_undo.is_none() {
            inner.hard_undo = Some(prev);
        }
        inner.stats.hard_state_writes += 1;
        Ok(())
    }

    fn load_hard_state(&self) -> StorageResult<Option<H>> {
        Ok(self.lock().hard.clone())
    }
}

impl<H, E> SnapshotStore for MemStorage<H, E> {
    fn save_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        let mut inner = self.lock();
        inner.check_writable()?;
        let prev = inner.snapshot.replace(snapshot);
        if inner.snapshot_undo.is_none() {
            inner.snapshot_undo = Some(prev);
        }
        inner.stats.snapshot_writes += 1;
        Ok(())
    }

    fn load_snapshot(&self) -> StorageResult<Option<Snapshot>> {
        Ok(self.lock().snapshot.clone())
    }
}

impl<H, E> LogStore<E> for MemStorage<H, E>
where
    E: Clone + Serialize + DeserializeOwned,
{
    fn first_index(&self) -> LogIndex {
        self.lock().first_index()
    }

    fn last_index(&self) -> LogIndex {
        self.lock().last_index()
    }

    fn append(&mut self, entries: &[E]) -> StorageResult<()> {
        let mut inner = self.lock();
        inner.check_writable()?;
        if entries.is_empty() {
            return Ok(());
        }
        inner.log.extend(entries.iter().cloned());
        match inner.log_undo.last_mut() {
            Some(LogUndo::Append { count }) => *count += entries.len(),
            _ => inner.log_undo.push(LogUndo::Append {
                count: entries.len(),
            }),
        }
        inner.stats.append_calls += 1;
        inner.stats.entries_appended += entries.len() as u64;
        Ok(())
    }

    fn entry(&self, index: LogIndex) -> StorageResult<Option<E>> {
        let inner = self.lock();
        if index == LogIndex::ZERO || index > inner.last_index() {
            return Ok(None);
        }
        if index <= inner.purged {
            return Err(inner.compacted(index));
        }
        Ok(inner.log.get(inner.offset(index)).cloned())
    }

    fn entries(
        &self,
        from: LogIndex,
        to_exclusive: LogIndex,
        max_entries: usize,
    ) -> StorageResult<Vec<E>> {
        let inner = self.lock();
        if from == LogIndex::ZERO || from > to_exclusive {
            return Err(inner.out_of_range(from));
        }
        if from <= inner.purged {
            return Err(inner.compacted(from));
        }
        if to_exclusive > inner.last_index().next() {
            return Err(inner.out_of_range(to_exclusive));
        }
        let wanted = (to_exclusive.get() - from.get()).min(max_entries as u64) as usize;
        if wanted == 0 {
            return Ok(Vec::new());
        }
        let start = inner.offset(from);
        let mut out = Vec::with_capacity(wanted);
        out.extend(inner.log.range(start..start + wanted).cloned());
        Ok(out)
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> StorageResult<()> {
        let mut inner = self.lock();
        if from == LogIndex::ZERO {
            return Err(inner.out_of_range(from));
        }
        if from <= inner.purged {
            return Err(inner.compacted(from));
        }
        inner.check_writable()?;
        if from > inner.last_index() {
            return Ok(());
        }
        let start = inner.offset(from);
        let removing = inner.log.len() - start;
        match inner.log_undo.last_mut() {
            // Only entries of the latest unsynced append go: undoing that
            // append just has fewer entries to drop.
            Some(LogUndo::Append { count }) if *count >= removing => {
                *count -= removing;
                if *count == 0 {
                    inner.log_undo.pop();
                }
                inner.log.truncate(start);
            }
            _ => {
                let removed: Vec<E> = inner.log.drain(start..).collect();
                inner.log_undo.push(LogUndo::TruncateSuffix { removed });
            }
        }
        inner.stats.truncations += 1;
        Ok(())
    }

    fn purge_prefix(&mut self, upto: LogIndex) -> StorageResult<()> {
        let mut inner = self.lock();
        inner.check_writable()?;
        if upto <= inner.purged {
            return Ok(());
        }
        let present = (upto.get() - inner.purged.get()).min(inner.log.len() as u64) as usize;
        let removed: Vec<E> = inner.log.drain(..present).collect();
        let prev_purged = std::mem::replace(&mut inner.purged, upto);
        inner.log_undo.push(LogUndo::PurgePrefix {
            prev_purged,
            removed,
        });
        inner.stats.purges += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{self, test_entries, TestEntry, TestHardState};
    use proptest::prelude::*;

    type Store = MemStorage<TestHardState, TestEntry>;

    #[test]
    fn passes_the_conformance_suite() {
        conformance::run_all(Store::new);
    }

    #[test]
    fn handle_is_send_sync_and_clones_share_the_store() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Store>();
        let mut a = Store::new();
        let b = a.clone();
        assert!(a.same_store(&b));
        assert!(!a.same_store(&Store::new()));
        a.append(&test_entries(1, 1, 3)).unwrap();
        assert_eq!(b.last_index(), LogIndex(3));
        b.crash();
        assert_eq!(
            a.last_index(),
            LogIndex(0),
            "a crash through one handle is seen by all"
        );
    }

    #[test]
    fn failed_writes_change_nothing_and_report_unavailable() {
        let mut s = Store::new();
        s.append(&test_entries(1, 1, 4)).unwrap();
        s.sync().unwrap();
        s.set_fail_writes(true);
        let hs = TestHardState {
            term: 9,
            voted_for: None,
        };
        assert_eq!(s.save_hard_state(&hs), Err(StorageError::Unavailable));
        assert_eq!(
            s.append(&test_entries(1, 5, 5)),
            Err(StorageError::Unavailable)
        );
        assert_eq!(
            s.truncate_suffix(LogIndex(2)),
            Err(StorageError::Unavailable)
        );
        assert_eq!(s.purge_prefix(LogIndex(2)), Err(StorageError::Unavailable));
        assert_eq!(
            s.save_snapshot(Snapshot::default()),
            Err(StorageError::Unavailable)
        );
        assert_eq!(s.sync(), Err(StorageError::Unavailable));
        // Reads still work and see the old state.
        assert_eq!(s.load_hard_state().unwrap(), None);
        assert_eq!(s.load_snapshot().unwrap(), None);
        conformance::assert_log(&s, 1, &test_entries(1, 1, 4), "after refused writes");
        assert!(!s.has_unsynced_writes());
        assert_eq!(s.stats().failed_writes, 6);
        s.set_fail_writes(false);
        s.save_hard_state(&hs).unwrap();
        s.sync().unwrap();
        assert_eq!(s.load_hard_state().unwrap(), Some(hs));
    }

    #[test]
    fn a_failed_sync_refuses_everything_until_a_crash() {
        for outcome in [SyncFailure::Torn, SyncFailure::Landed] {
            let mut s = Store::new();
            s.append(&test_entries(1, 1, 2)).unwrap();
            s.sync().unwrap();
            s.append(&test_entries(1, 3, 5)).unwrap();
            s.save_hard_state(&TestHardState {
                term: 2,
                voted_for: None,
            })
            .unwrap();
            s.fail_next_sync(outcome);
            assert!(matches!(s.sync(), Err(StorageError::Io(_))), "{outcome:?}");
            assert!(s.has_failed());
            assert!(matches!(s.sync(), Err(StorageError::Io(_))));
            assert!(matches!(
                s.append(&test_entries(1, 6, 6)),
                Err(StorageError::Io(_))
            ));
            assert!(matches!(
                s.truncate_suffix(LogIndex(2)),
                Err(StorageError::Io(_))
            ));
            // Reads still see every write.
            conformance::assert_log(&s, 1, &test_entries(1, 1, 5), "after the failure");
            s.crash();
            assert!(!s.has_failed());
            let (log, hard) = match outcome {
                SyncFailure::Torn => (test_entries(1, 1, 2), None),
                SyncFailure::Landed => (
                    test_entries(1, 1, 5),
                    Some(TestHardState {
                        term: 2,
                        voted_for: None,
                    }),
                ),
            };
            conformance::assert_log(&s, 1, &log, &format!("{outcome:?} after the crash"));
            assert_eq!(s.load_hard_state().unwrap(), hard);
            assert_eq!(s.stats().failed_syncs, 1);
            s.append(&test_entries(2, 6, 6)).unwrap();
            s.sync().unwrap();
        }
        // A crash before the armed sync disarms it.
        let mut s = Store::new();
        s.fail_next_sync(SyncFailure::Torn);
        s.crash();
        s.sync().unwrap();
    }

    #[test]
    fn stats_count_every_kind_of_write() {
        let mut s = Store::new();
        s.append(&test_entries(1, 1, 5)).unwrap();
        s.append(&test_entries(1, 6, 7)).unwrap();
        s.append(&[]).unwrap();
        s.save_hard_state(&TestHardState {
            term: 1,
            voted_for: None,
        })
        .unwrap();
        s.truncate_suffix(LogIndex(7)).unwrap();
        s.truncate_suffix(LogIndex(50)).unwrap(); // no-op: not counted
        s.purge_prefix(LogIndex(2)).unwrap();
        s.purge_prefix(LogIndex(1)).unwrap(); // no-op: not counted
        s.save_snapshot(Snapshot::default()).unwrap();
        s.sync().unwrap();
        s.sync().unwrap();
        s.crash();
        assert_eq!(
            s.stats(),
            StorageStats {
                syncs: 2,
                hard_state_writes: 1,
                append_calls: 2,
                entries_appended: 7,
                truncations: 1,
                purges: 1,
                snapshot_writes: 1,
                crashes: 1,
                failed_writes: 0,
                failed_syncs: 0,
            }
        );
    }

    #[test]
    fn consecutive_appends_coalesce_into_one_undo_record() {
        let mut s = Store::new();
        for i in 1..=1000 {
            s.append(&test_entries(1, i, i)).unwrap();
        }
        assert_eq!(s.lock().log_undo.len(), 1, "one record for 1000 appends");
        // Truncating inside the unsynced append shrinks the record instead
        // of saving the removed entries.
        s.truncate_suffix(LogIndex(901)).unwrap();
        assert!(matches!(
            s.lock().log_undo.as_slice(),
            [LogUndo::Append { count: 900 }]
        ));
        assert!(s.has_unsynced_writes());
        s.sync().unwrap();
        assert!(s.lock().log_undo.is_empty());
        assert!(!s.has_unsynced_writes());
        s.truncate_suffix(LogIndex(1)).unwrap();
        s.crash();
        assert_eq!(s.last_index(), LogIndex(900));
    }

    /// One operation of the model-based test.
    #[derive(Clone, Debug)]
    enum Op {
        Append(u64),
        Truncate(u64),
        Purge(u64),
        SaveHard(u64),
        SaveSnapshot(u64),
        Sync,
        Crash,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..5).prop_map(Op::Append),
            2 => (0u64..25).prop_map(Op::Truncate),
            2 => (0u64..25).prop_map(Op::Purge),
            1 => (0u64..100).prop_map(Op::SaveHard),
            1 => (0u64..100).prop_map(Op::SaveSnapshot),
            2 => Just(Op::Sync),
            2 => Just(Op::Crash),
        ]
    }

    /// The obvious implementation: a full copy of everything at each sync.
    #[derive(Clone, Default)]
    struct Image {
        purged: u64,
        log: Vec<u64>,
        hard: Option<u64>,
        snapshot: Option<u64>,
    }

    proptest! {
        #[test]
        fn behaves_like_a_copy_on_sync_model(ops in prop::collection::vec(op(), 1..60)) {
            let mut s: MemStorage<u64, u64> = MemStorage::new();
            let mut visible = Image::default();
            let mut durable = Image::default();
            let mut next_value = 0u64;
            for op in ops {
                match op {
                    Op::Append(n) => {
                        let batch: Vec<u64> = (0..n).map(|k| next_value + k).collect();
                        next_value += n;
                        s.append(&batch).unwrap();
                        visible.log.extend(batch);
                    }
                    Op::Truncate(from) => {
                        let r = s.truncate_suffix(LogIndex(from));
                        if from == 0 {
                            prop_assert!(matches!(r, Err(StorageError::OutOfRange { .. })), "truncate from 0 must be out of range");
                        } else if from <= visible.purged {
                            prop_assert!(matches!(r, Err(StorageError::Compacted { .. })), "truncate of a purged index must be compacted");
                        } else {
                            r.unwrap();
                            visible.log.truncate((from - visible.purged - 1).min(visible.log.len() as u64) as usize);
                        }
                    }
                    Op::Purge(upto) => {
                        s.purge_prefix(LogIndex(upto)).unwrap();
                        if upto > visible.purged {
                            let n = ((upto - visible.purged) as usize).min(visible.log.len());
                            visible.log.drain(..n);
                            visible.purged = upto;
                        }
                    }
                    Op::SaveHard(h) => {
                        s.save_hard_state(&h).unwrap();
                        visible.hard = Some(h);
                    }
                    Op::SaveSnapshot(v) => {
                        s.save_snapshot(Snapshot::new(LogIndex(v), Term(v), vec![], vec![])).unwrap();
                        visible.snapshot = Some(v);
                    }
                    Op::Sync => {
                        s.sync().unwrap();
                        durable = visible.clone();
                    }
                    Op::Crash => {
                        s.crash();
                        visible = durable.clone();
                    }
                }
                let first = visible.purged + 1;
                let last = visible.purged + visible.log.len() as u64;
                prop_assert_eq!(s.first_index(), LogIndex(first));
                prop_assert_eq!(s.last_index(), LogIndex(last));
                prop_assert_eq!(s.entries(LogIndex(first), LogIndex(last + 1), usize::MAX).unwrap(), visible.log.clone());
                prop_assert_eq!(s.load_hard_state().unwrap(), visible.hard);
                prop_assert_eq!(
                    s.load_snapshot().unwrap().map(|snap| snap.last_index.get()),
                    visible.snapshot
                );
            }
        }
    }
}
