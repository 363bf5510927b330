//! A conformance suite every storage implementation must pass.
//!
//! It is ordinary (non-test) code so that any crate can run it against its
//! own store: call [`run_all`] with a factory that makes a fresh, empty store
//! (or [`run_without_crash`] for a store that cannot simulate crashes), or
//! call the individual `pub fn`s. Each check panics with a message naming
//! the broken rule.
//!
//! ```
//! use consensus_actors::storage::{conformance, MemStorage};
//! conformance::run_all(MemStorage::new);
//! ```
//!
//! The suite uses simple concrete types: [`TestHardState`] for the hard
//! state and [`TestEntry`] (`LogEntry<String>`) for log entries.

use super::{
    CrashableStorage, Durable, HardStateStore, LogStore, Snapshot, SnapshotStore, StorageError,
    StorageResult,
};
use crate::types::{ClientId, LogEntry, LogIndex, Term};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// The hard state the suite stores (shaped like Raft's term and vote).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestHardState {
    /// A term.
    pub term: u64,
    /// A vote.
    pub voted_for: Option<u64>,
}

/// The log entry type the suite stores.
pub type TestEntry = LogEntry<String>;

/// The entry the suite writes at `index` in `term`; its command names both,
/// so a misplaced entry is caught.
pub fn test_entry(term: u64, index: u64) -> TestEntry {
    LogEntry::new(
        Term(term),
        LogIndex(index),
        format!("cmd-t{term}-i{index}"),
        index * 10,
        ClientId(term),
    )
}

/// `test_entry(term, i)` for every `i` in `from..=to`.
pub fn test_entries(term: u64, from: u64, to: u64) -> Vec<TestEntry> {
    (from..=to).map(|i| test_entry(term, i)).collect()
}

/// What the suite needs from a store (implemented for every store that
/// implements the four storage traits for the suite's types).
pub trait ConformanceStore:
    HardStateStore<TestHardState> + LogStore<TestEntry> + SnapshotStore + Durable
{
}

impl<T> ConformanceStore for T where
    T: HardStateStore<TestHardState> + LogStore<TestEntry> + SnapshotStore + Durable
{
}

fn must<T>(result: StorageResult<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("storage conformance: {what} failed: {e}"),
    }
}

fn expect_err<T: Debug>(result: StorageResult<T>, expected: StorageError, what: &str) {
    match result {
        Err(e) => assert_eq!(e, expected, "storage conformance: {what}: wrong error"),
        Ok(v) => panic!("storage conformance: {what}: expected {expected:?}, got Ok({v:?})"),
    }
}

fn idx(i: u64) -> LogIndex {
    LogIndex(i)
}

/// Asserts the log holds exactly `expected` at `first..=first+len-1`, through
/// every read method.
pub fn assert_log<S: ConformanceStore>(s: &S, first: u64, expected: &[TestEntry], what: &str) {
    let last = first + expected.len() as u64 - 1;
    assert_eq!(s.first_index(), idx(first), "{what}: first_index");
    assert_eq!(s.last_index(), idx(last), "{what}: last_index");
    for (k, e) in expected.iter().enumerate() {
        let i = first + k as u64;
        assert_eq!(
            must(s.entry(idx(i)), what).as_ref(),
            Some(e),
            "{what}: entry({i})"
        );
    }
    assert_eq!(
        must(s.entry(idx(last + 1)), what),
        None,
        "{what}: entry past the end"
    );
    let all = must(s.entries(idx(first), idx(last + 1), usize::MAX), what);
    assert_eq!(all, expected, "{what}: entries(first, last + 1)");
}

/// No hard state at first; a saved one is read back; a second save replaces
/// the first.
pub fn hard_state_round_trip<S: ConformanceStore>(mut s: S) {
    assert_eq!(must(s.load_hard_state(), "load empty hard state"), None);
    let a = TestHardState {
        term: 3,
        voted_for: Some(2),
    };
    must(s.save_hard_state(&a), "save hard state");
    assert_eq!(must(s.load_hard_state(), "load"), Some(a));
    let b = TestHardState {
        term: 4,
        voted_for: None,
    };
    must(s.save_hard_state(&b), "save hard state again");
    must(s.sync(), "sync");
    assert_eq!(must(s.load_hard_state(), "load after overwrite"), Some(b));
}

/// An empty log: first 1, last 0, no entries, empty ranges only.
pub fn empty_log<S: ConformanceStore>(s: S) {
    assert_eq!(s.first_index(), idx(1), "empty log: first_index");
    assert_eq!(s.last_index(), idx(0), "empty log: last_index");
    assert_eq!(must(s.entry(idx(0)), "entry(0)"), None);
    assert_eq!(must(s.entry(idx(1)), "entry(1)"), None);
    assert_eq!(must(s.entry(idx(7)), "entry(7)"), None);
    assert!(must(s.entries(idx(1), idx(1), 10), "entries(1, 1)").is_empty());
    expect_err(
        s.entries(idx(1), idx(2), 10),
        StorageError::OutOfRange {
            index: idx(2),
            first: idx(1),
            last: idx(0),
        },
        "entries(1, 2) on an empty log",
    );
}

/// Appends land at `last + 1`, in batches, and every entry reads back; an
/// empty append changes nothing.
pub fn append_and_read<S: ConformanceStore>(mut s: S) {
    must(s.append(&test_entries(1, 1, 3)), "append 1..=3");
    must(s.append(&[]), "empty append");
    must(s.append(&test_entries(2, 4, 4)), "append 4");
    must(s.append(&test_entries(2, 5, 9)), "append 5..=9");
    let mut expected = test_entries(1, 1, 3);
    expected.extend(test_entries(2, 4, 9));
    assert_log(&s, 1, &expected, "after three appends");
    must(s.sync(), "sync");
    assert_log(&s, 1, &expected, "after sync");
}

/// `entries` honours `from`, `to_exclusive` and `max_entries`.
pub fn entries_bounds_and_max<S: ConformanceStore>(mut s: S) {
    must(s.append(&test_entries(1, 1, 10)), "append 1..=10");
    let got = must(s.entries(idx(3), idx(7), 100), "entries(3, 7)");
    assert_eq!(got, test_entries(1, 3, 6));
    let got = must(s.entries(idx(3), idx(11), 2), "entries(3, 11, max 2)");
    assert_eq!(got, test_entries(1, 3, 4));
    let got = must(s.entries(idx(10), idx(11), 1), "entries(10, 11, max 1)");
    assert_eq!(got, test_entries(1, 10, 10));
    let got = must(s.entries(idx(5), idx(9), 0), "entries(5, 9, max 0)");
    assert!(got.is_empty(), "max_entries 0 gives no entries");
    let got = must(s.entries(idx(11), idx(11), 5), "entries(last+1, last+1)");
    assert!(got.is_empty());
}

/// Range errors of `entries`, `entry` and `truncate_suffix`.
pub fn range_errors<S: ConformanceStore>(mut s: S) {
    must(s.append(&test_entries(1, 1, 5)), "append 1..=5");
    let oor = |index| StorageError::OutOfRange {
        index: idx(index),
        first: idx(1),
        last: idx(5),
    };
    expect_err(s.entries(idx(0), idx(3), 10), oor(0), "entries from 0");
    expect_err(s.entries(idx(4), idx(3), 10), oor(4), "entries reversed");
    expect_err(s.entries(idx(2), idx(7), 10), oor(7), "entries past last+1");
    expect_err(
        s.entries(idx(6), idx(7), 10),
        oor(7),
        "entries after the end",
    );
    expect_err(s.truncate_suffix(idx(0)), oor(0), "truncate_suffix(0)");
    assert_eq!(must(s.entry(idx(6)), "entry(last+1)"), None);
    assert_log(&s, 1, &test_entries(1, 1, 5), "failed calls change nothing");
}

/// `truncate_suffix` in the middle, beyond the end (no-op), then appends
/// reuse the freed indexes.
pub fn truncate_suffix_middle<S: ConformanceStore>(mut s: S) {
    must(s.append(&test_entries(1, 1, 6)), "append 1..=6");
    must(s.truncate_suffix(idx(7)), "truncate beyond last");
    assert_log(
        &s,
        1,
        &test_entries(1, 1, 6),
        "truncate beyond last is a no-op",
    );
    must(s.truncate_suffix(idx(4)), "truncate from 4");
    assert_log(&s, 1, &test_entries(1, 1, 3), "after truncate from 4");
    must(s.append(&test_entries(2, 4, 5)), "append 4..=5 in term 2");
    let mut expected = test_entries(1, 1, 3);
    expected.extend(test_entries(2, 4, 5));
    assert_log(&s, 1, &expected, "conflicting suffix replaced");
    must(s.truncate_suffix(idx(5)), "truncate the last entry");
    assert_log(&s, 1, &expected[..4], "after truncating the last entry");
}

/// Truncating at the first index empties the log; on a purged log the last
/// index becomes the purged index, and entries below it are `Compacted`.
pub fn truncate_at_first_index<S: ConformanceStore>(mut s: S) {
    must(s.append(&test_entries(1, 1, 4)), "append 1..=4");
    must(s.truncate_suffix(idx(1)), "truncate from 1");
    assert_eq!(s.first_index(), idx(1));
    assert_eq!(s.last_index(), idx(0), "truncated to empty");
    assert_eq!(must(s.entry(idx(1)), "entry(1)"), None);

    must(s.append(&test_entries(2, 1, 8)), "append 1..=8");
    must(s.purge_prefix(idx(3)), "purge ..=3");
    must(s.truncate_suffix(idx(4)), "truncate from first index 4");
    assert_eq!(s.first_index(), idx(4));
    assert_eq!(s.last_index(), idx(3), "empty after purge: last = purged");
    expect_err(
        s.truncate_suffix(idx(3)),
        StorageError::Compacted {
            index: idx(3),
            first: idx(4),
        },
        "truncate a purged index",
    );
    must(s.append(&test_entries(3, 4, 5)), "append 4..=5");
    assert_log(
        &s,
        4,
        &test_entries(3, 4, 5),
        "append after truncate to empty",
    );
}

/// Purging a prefix: reads of purged indexes are `Compacted`, the rest is
/// untouched, purging again at or below the watermark is a no-op, and
/// appends continue after the last entry.
pub fn purge_prefix_then_append<S: ConformanceStore>(mut s: S) {
    must(s.append(&test_entries(1, 1, 10)), "append 1..=10");
    must(s.purge_prefix(idx(0)), "purge ..=0");
    assert_log(&s, 1, &test_entries(1, 1, 10), "purge ..=0 is a no-op");
    must(s.purge_prefix(idx(4)), "purge ..=4");
    assert_log(&s, 5, &test_entries(1, 5, 10), "after purge ..=4");
    let compacted = |index| StorageError::Compacted {
        index: idx(index),
        first: idx(5),
    };
    expect_err(s.entry(idx(4)), compacted(4), "entry(4) after purge");
    expect_err(s.entry(idx(1)), compacted(1), "entry(1) after purge");
    expect_err(
        s.entries(idx(4), idx(8), 10),
        compacted(4),
        "entries from a purged index",
    );
    assert_eq!(must(s.entry(idx(0)), "entry(0) after purge"), None);
    must(s.purge_prefix(idx(2)), "purge below the watermark");
    must(s.purge_prefix(idx(4)), "purge at the watermark");
    assert_log(&s, 5, &test_entries(1, 5, 10), "repeated purges are no-ops");
    must(s.append(&test_entries(2, 11, 12)), "append 11..=12");
    let mut expected = test_entries(1, 5, 10);
    expected.extend(test_entries(2, 11, 12));
    assert_log(&s, 5, &expected, "append after purge");
}

/// Purging exactly up to the last entry and then beyond it (snapshot
/// install) leaves an empty log whose last index is the purge point.
pub fn purge_everything_and_beyond<S: ConformanceStore>(mut s: S) {
    must(s.append(&test_entries(1, 1, 5)), "append 1..=5");
    must(s.purge_prefix(idx(5)), "purge ..=5 (everything)");
    assert_eq!(s.first_index(), idx(6));
    assert_eq!(s.last_index(), idx(5));
    assert!(must(s.entries(idx(6), idx(6), 10), "entries(6, 6)").is_empty());
    must(s.purge_prefix(idx(20)), "purge ..=20 (beyond last)");
    assert_eq!(s.first_index(), idx(21));
    assert_eq!(s.last_index(), idx(20));
    assert_eq!(must(s.entry(idx(21)), "entry(21)"), None);
    expect_err(
        s.entry(idx(12)),
        StorageError::Compacted {
            index: idx(12),
            first: idx(21),
        },
        "entry in the purged gap",
    );
    must(s.append(&test_entries(4, 21, 23)), "append 21..=23");
    assert_log(
        &s,
        21,
        &test_entries(4, 21, 23),
        "append after purge beyond",
    );
    must(s.sync(), "sync");
}

/// Purging beyond the last entry of a non-empty log removes it all.
pub fn purge_beyond_non_empty_log<S: ConformanceStore>(mut s: S) {
    must(s.append(&test_entries(1, 1, 3)), "append 1..=3");
    must(s.purge_prefix(idx(2)), "purge ..=2");
    must(s.purge_prefix(idx(9)), "purge ..=9");
    assert_eq!(s.first_index(), idx(10));
    assert_eq!(s.last_index(), idx(9));
    must(s.append(&test_entries(2, 10, 10)), "append 10");
    assert_log(&s, 10, &test_entries(2, 10, 10), "after purge beyond");
}

/// No snapshot at first; a saved snapshot reads back; a newer one replaces
/// it; saving a snapshot does not touch the log.
pub fn snapshot_round_trip<S: ConformanceStore>(mut s: S) {
    assert_eq!(must(s.load_snapshot(), "load empty snapshot"), None);
    must(s.append(&test_entries(1, 1, 4)), "append 1..=4");
    let a = Snapshot::new(idx(3), Term(1), b"members=1,2,3".to_vec(), vec![1, 2, 3]);
    must(s.save_snapshot(a.clone()), "save snapshot");
    assert_eq!(must(s.load_snapshot(), "load snapshot"), Some(a));
    assert_log(
        &s,
        1,
        &test_entries(1, 1, 4),
        "snapshot leaves the log alone",
    );
    let b = Snapshot::new(idx(4), Term(1), Vec::new(), vec![9; 1000]);
    must(s.save_snapshot(b.clone()), "save newer snapshot");
    must(s.sync(), "sync");
    assert_eq!(must(s.load_snapshot(), "load newer snapshot"), Some(b));
}

/// `sync` with nothing to sync succeeds, repeatedly.
pub fn sync_is_idempotent<S: ConformanceStore>(mut s: S) {
    must(s.sync(), "sync of an empty store");
    must(s.sync(), "second sync");
    must(s.append(&test_entries(1, 1, 2)), "append 1..=2");
    must(s.sync(), "sync after append");
    must(s.sync(), "sync again");
    assert_log(&s, 1, &test_entries(1, 1, 2), "after repeated syncs");
}

/// Writes that were synced survive a crash; reads before the crash see
/// unsynced writes too.
pub fn crash_keeps_synced_writes<S: ConformanceStore + CrashableStorage>(mut s: S) {
    let hs = TestHardState {
        term: 5,
        voted_for: Some(1),
    };
    let snap = Snapshot::new(idx(2), Term(1), vec![7], vec![8, 9]);
    must(s.save_hard_state(&hs), "save hard state");
    must(s.append(&test_entries(1, 1, 6)), "append 1..=6");
    must(s.save_snapshot(snap.clone()), "save snapshot");
    must(s.purge_prefix(idx(2)), "purge ..=2");
    assert_eq!(must(s.load_hard_state(), "read unsynced"), Some(hs.clone()));
    must(s.sync(), "sync");
    s.crash();
    assert_eq!(
        must(s.load_hard_state(), "hard state after crash"),
        Some(hs)
    );
    assert_eq!(must(s.load_snapshot(), "snapshot after crash"), Some(snap));
    assert_log(&s, 3, &test_entries(1, 3, 6), "synced log after crash");
}

/// A crash with nothing synced leaves an empty store.
pub fn crash_before_any_sync<S: ConformanceStore + CrashableStorage>(mut s: S) {
    must(
        s.save_hard_state(&TestHardState {
            term: 1,
            voted_for: None,
        }),
        "save hard state",
    );
    must(s.append(&test_entries(1, 1, 3)), "append 1..=3");
    must(
        s.save_snapshot(Snapshot::new(idx(1), Term(1), vec![], vec![1])),
        "save snapshot",
    );
    must(s.purge_prefix(idx(1)), "purge ..=1");
    s.crash();
    assert_eq!(must(s.load_hard_state(), "hard state"), None);
    assert_eq!(must(s.load_snapshot(), "snapshot"), None);
    assert_eq!(s.first_index(), idx(1), "first_index after crash");
    assert_eq!(s.last_index(), idx(0), "last_index after crash");
    s.crash();
    assert_eq!(s.last_index(), idx(0), "a second crash changes nothing");
}

/// Unsynced hard state and snapshot writes are lost; the synced values come
/// back, even after several unsynced overwrites.
pub fn crash_loses_unsynced_hard_state_and_snapshot<S: ConformanceStore + CrashableStorage>(
    mut s: S,
) {
    let synced = TestHardState {
        term: 2,
        voted_for: Some(3),
    };
    let snap = Snapshot::new(idx(4), Term(2), vec![1], vec![2]);
    must(s.save_hard_state(&synced), "save hard state");
    must(s.save_snapshot(snap.clone()), "save snapshot");
    must(s.sync(), "sync");
    for term in 3..6 {
        must(
            s.save_hard_state(&TestHardState {
                term,
                voted_for: None,
            }),
            "save unsynced hard state",
        );
    }
    must(
        s.save_snapshot(Snapshot::new(idx(9), Term(3), vec![], vec![])),
        "save unsynced snapshot",
    );
    s.crash();
    assert_eq!(must(s.load_hard_state(), "hard state"), Some(synced));
    assert_eq!(must(s.load_snapshot(), "snapshot"), Some(snap));
}

/// Unsynced appends, truncations and purges are all undone by a crash, in
/// any mix, and the synced log comes back exactly.
pub fn crash_undoes_unsynced_log_ops<S: ConformanceStore + CrashableStorage>(mut s: S) {
    must(s.append(&test_entries(1, 1, 8)), "append 1..=8");
    must(s.purge_prefix(idx(2)), "purge ..=2");
    must(s.sync(), "sync");
    let synced = test_entries(1, 3, 8);

    // Appends only.
    must(s.append(&test_entries(1, 9, 12)), "append 9..=12");
    s.crash();
    assert_log(&s, 3, &synced, "unsynced appends undone");

    // Truncate below the synced length, then append a new suffix.
    must(s.truncate_suffix(idx(5)), "truncate from 5");
    must(s.append(&test_entries(2, 5, 10)), "append 5..=10 in term 2");
    must(
        s.truncate_suffix(idx(7)),
        "truncate from 7 (unsynced entries)",
    );
    must(
        s.truncate_suffix(idx(4)),
        "truncate from 4 (synced entries)",
    );
    s.crash();
    assert_log(&s, 3, &synced, "unsynced truncations undone");

    // Purge, append, purge beyond the end, append.
    must(s.purge_prefix(idx(5)), "purge ..=5");
    must(s.append(&test_entries(1, 9, 9)), "append 9");
    must(s.purge_prefix(idx(30)), "purge ..=30");
    must(s.append(&test_entries(3, 31, 33)), "append 31..=33");
    assert_log(&s, 31, &test_entries(3, 31, 33), "before crash");
    s.crash();
    assert_log(&s, 3, &synced, "unsynced purges undone");
}

/// Only what was synced by the latest sync survives: a sequence of synced
/// and unsynced log operations ends at the last synced image.
pub fn crash_after_partial_sync<S: ConformanceStore + CrashableStorage>(mut s: S) {
    must(s.append(&test_entries(1, 1, 5)), "append 1..=5");
    must(s.sync(), "sync 1");
    must(s.truncate_suffix(idx(4)), "truncate from 4");
    must(s.append(&test_entries(2, 4, 6)), "append 4..=6");
    must(s.purge_prefix(idx(2)), "purge ..=2");
    must(s.sync(), "sync 2");
    let mut synced = test_entries(1, 3, 3);
    synced.extend(test_entries(2, 4, 6));
    must(s.truncate_suffix(idx(3)), "truncate from 3");
    must(s.append(&test_entries(3, 3, 3)), "append 3");
    must(s.purge_prefix(idx(3)), "purge ..=3");
    s.crash();
    assert_log(&s, 3, &synced, "state of sync 2");
    must(s.append(&test_entries(3, 7, 7)), "append after recovery");
    must(s.sync(), "sync 3");
    s.crash();
    synced.push(test_entry(3, 7));
    assert_log(&s, 3, &synced, "state of sync 3");
}

/// Runs every check that needs no crash, each on a fresh store from `make`.
pub fn run_without_crash<S, F>(mut make: F)
where
    S: ConformanceStore,
    F: FnMut() -> S,
{
    hard_state_round_trip(make());
    empty_log(make());
    append_and_read(make());
    entries_bounds_and_max(make());
    range_errors(make());
    truncate_suffix_middle(make());
    truncate_at_first_index(make());
    purge_prefix_then_append(make());
    purge_everything_and_beyond(make());
    purge_beyond_non_empty_log(make());
    snapshot_round_trip(make());
    sync_is_idempotent(make());
}

/// Runs every crash-recovery check, each on a fresh store from `make`.
pub fn run_crash<S, F>(mut make: F)
where
    S: ConformanceStore + CrashableStorage,
    F: FnMut() -> S,
{
    crash_keeps_synced_writes(make());
    crash_before_any_sync(make());
    crash_loses_unsynced_hard_state_and_snapshot(make());
    crash_undoes_unsynced_log_ops(make());
    crash_after_partial_sync(make());
}

/// Runs the whole suite, each check on a fresh store from `make`.
pub fn run_all<S, F>(mut make: F)
where
    S: ConformanceStore + CrashableStorage,
    F: FnMut() -> S,
{
    run_without_crash(&mut make);
    run_crash(&mut make);
}
