use super::*;
use crate::storage::conformance::{self, assert_log, test_entries, TestEntry, TestHardState};
use crate::storage::MemStorage;
use crate::types::Term;
use proptest::prelude::*;
use std::cell::Cell;
use tempfile::TempDir;

type Store = DiskStorage<TestHardState, TestEntry>;

fn tiny() -> DiskOptions {
    DiskOptions { segment_bytes: 200 }
}

/// A factory of fresh stores in subdirectories of one temporary directory.
fn factory(base: &TempDir, opts: DiskOptions) -> impl FnMut() -> Store + '_ {
    let n = Cell::new(0u32);
    move || {
        n.set(n.get() + 1);
        Store::open_with(base.path().join(format!("s{}", n.get())), opts).unwrap()
    }
}

fn active_segment(s: &Store) -> PathBuf {
    s.dir().join(segment_name(*s.segments().last().unwrap()))
}

fn hs(term: u64) -> TestHardState {
    TestHardState {
        term,
        voted_for: Some(term % 3),
    }
}

#[test]
fn passes_the_conformance_suite() {
    let base = TempDir::new().unwrap();
    conformance::run_all(factory(&base, DiskOptions::default()));
}

#[test]
fn passes_the_conformance_suite_with_a_segment_per_sync() {
    // 200-byte segments: nearly every sync starts a segment, so rotation,
    // checkpoints and segment deletion run under every check.
    let base = TempDir::new().unwrap();
    conformance::run_all(factory(&base, tiny()));
}

#[test]
fn a_second_open_of_a_directory_in_use_is_refused_until_the_first_closes() {
    let dir = TempDir::new().unwrap();
    let mut first = Store::open(dir.path()).unwrap();
    first.append(&test_entries(1, 1, 3)).unwrap();
    first.sync().unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::Locked(_)), "{err}");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    // The refused open changed nothing: the first store goes on.
    first.append(&test_entries(1, 4, 4)).unwrap();
    first.sync().unwrap();
    drop(first);
    let s = Store::open(dir.path()).unwrap();
    assert_log(&s, 1, &test_entries(1, 1, 4), "after the first closed");
}

#[test]
fn reopen_recovers_everything_synced_and_nothing_else() {
    let dir = TempDir::new().unwrap();
    let snap = Snapshot::new(LogIndex(3), Term(1), b"m".to_vec(), vec![5; 5000]);
    {
        let mut s = Store::open(dir.path()).unwrap();
        s.save_hard_state(&hs(4)).unwrap();
        s.append(&test_entries(1, 1, 10)).unwrap();
        s.save_snapshot(snap.clone()).unwrap();
        s.purge_prefix(LogIndex(3)).unwrap();
        s.sync().unwrap();
        s.append(&test_entries(2, 11, 12)).unwrap();
        s.save_hard_state(&hs(9)).unwrap();
        // dropped without a sync: the last two writes are lost
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.load_hard_state().unwrap(), Some(hs(4)));
    assert_eq!(s.load_snapshot().unwrap(), Some(snap));
    assert_log(&s, 4, &test_entries(1, 4, 10), "after reopen");
    assert_eq!(s.recovery().torn_bytes_cut, 0);
    assert_eq!(s.recovery().records_replayed, 2, "checkpoint + one sync");
}

#[test]
fn one_sync_is_one_record_and_one_fdatasync() {
    let dir = TempDir::new().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let before = s.stats();
    for i in 1..=1000 {
        s.append(&test_entries(1, i, i)).unwrap();
    }
    s.save_hard_state(&hs(1)).unwrap();
    s.sync().unwrap();
    s.sync().unwrap(); // nothing new: no write, no fsync
    let after = s.stats();
    assert_eq!(after.records_written - before.records_written, 1);
    assert_eq!(after.fsyncs - before.fsyncs, 1);
    assert_log(&s, 1, &test_entries(1, 1, 1000), "group commit");
}

/// Every cut of the last record — the write of a sync that did not return —
/// is detected and cut off; what earlier syncs made durable comes back
/// exactly, and the store goes on working.
#[test]
fn a_torn_last_record_is_cut_off_at_every_length() {
    let dir = TempDir::new().unwrap();
    let (good_len, full_len) = {
        let mut s = Store::open(dir.path()).unwrap();
        s.append(&test_entries(1, 1, 5)).unwrap();
        s.save_hard_state(&hs(1)).unwrap();
        s.sync().unwrap();
        let good = fs::metadata(active_segment(&s)).unwrap().len();
        s.append(&test_entries(2, 6, 9)).unwrap();
        s.save_hard_state(&hs(2)).unwrap();
        s.sync().unwrap();
        (good, fs::metadata(active_segment(&s)).unwrap().len())
    };
    let path = dir.path().join(segment_name(1));
    let full = fs::read(&path).unwrap();
    assert_eq!(full.len() as u64, full_len);
    for cut in good_len..full_len {
        fs::write(&path, &full[..cut as usize]).unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_log(&s, 1, &test_entries(1, 1, 5), &format!("cut at {cut}"));
        assert_eq!(s.load_hard_state().unwrap(), Some(hs(1)));
        assert_eq!(s.recovery().torn_bytes_cut, cut - good_len);
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len, "cut on disk");
        // Appending after the cut works and survives a reopen.
        s.append(&test_entries(3, 6, 6)).unwrap();
        s.sync().unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let mut expected = test_entries(1, 1, 5);
        expected.push(conformance::test_entry(3, 6));
        assert_log(&s, 1, &expected, "append after the cut");
    }
}

#[test]
fn a_torn_record_with_zeroed_sectors_is_cut_off() {
    let dir = TempDir::new().unwrap();
    let good_len = {
        let mut s = Store::open(dir.path()).unwrap();
        s.append(&test_entries(1, 1, 3)).unwrap();
        s.sync().unwrap();
        let good = fs::metadata(active_segment(&s)).unwrap().len();
        s.append(&test_entries(1, 4, 40)).unwrap();
        s.sync().unwrap();
        good
    };
    let path = dir.path().join(segment_name(1));
    let mut bytes = fs::read(&path).unwrap();
    // The file grew but the second half of the write never landed.
    let mid = (good_len as usize + bytes.len()) / 2;
    bytes[mid..].fill(0);
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&path, &bytes).unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_log(&s, 1, &test_entries(1, 1, 3), "zeroed tail cut");
    drop(s);
    // And a header that never landed at all.
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 12]);
    fs::write(&path, &bytes).unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_log(&s, 1, &test_entries(1, 1, 3), "zero header cut");
}

fn three_syncs(dir: &Path, opts: DiskOptions) -> Vec<(u64, u64)> {
    let mut s = Store::open_with(dir, opts).unwrap();
    let mut ends = Vec::new();
    for (t, (a, b)) in [(1, 5), (6, 10), (11, 15)].into_iter().enumerate() {
        s.append(&test_entries(t as u64 + 1, a, b)).unwrap();
        s.sync().unwrap();
        ends.push((
            *s.segments().last().unwrap(),
            fs::metadata(active_segment(&s)).unwrap().len(),
        ));
    }
    ends
}

#[test]
fn corruption_in_the_middle_is_an_error_not_a_cut() {
    let dir = TempDir::new().unwrap();
    let ends = three_syncs(dir.path(), DiskOptions::default());
    let path = dir.path().join(segment_name(1));
    let clean = fs::read(&path).unwrap();
    // One flipped bit in the second of three records (an entry's bytes).
    let at = (ends[0].1 + 40) as usize;
    let mut bytes = clean.clone();
    bytes[at] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt(m) if m.contains("checksum") && m.contains("wal-")),
        "{err}"
    );
    // Garbage (not zeros) after the last record is not a torn write either.
    let mut bytes = clean.clone();
    bytes.extend_from_slice(b"\x01garbage that is not a record");
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(StorageError::Corrupt(_))
    ));
    fs::write(&path, &clean).unwrap();
    assert_log(
        &Store::open(dir.path()).unwrap(),
        1,
        &{
            let mut e = test_entries(1, 1, 5);
            e.extend(test_entries(2, 6, 10));
            e.extend(test_entries(3, 11, 15));
            e
        },
        "clean again",
    );
}

#[test]
fn damage_in_an_older_segment_is_an_error_even_at_its_end() {
    let dir = TempDir::new().unwrap();
    let ends = three_syncs(dir.path(), tiny());
    assert!(ends.last().unwrap().0 >= 2, "rotated: {ends:?}");
    let path = dir.path().join(segment_name(1));
    let mut bytes = fs::read(&path).unwrap();
    bytes.pop();
    fs::write(&path, &bytes).unwrap();
    let err = Store::open_with(dir.path(), tiny()).unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt(m) if m.contains(&segment_name(1))),
        "{err}"
    );
}

#[test]
fn a_damaged_entry_is_reported_when_read() {
    let dir = TempDir::new().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    s.append(&test_entries(1, 1, 3)).unwrap();
    s.sync().unwrap();
    let Slot::Disk(loc) = s.slots[1] else {
        panic!("synced entries are on disk")
    };
    let f = OpenOptions::new()
        .write(true)
        .open(active_segment(&s))
        .unwrap();
    f.write_all_at(&[0xff], loc.offset + 2).unwrap();
    assert!(matches!(
        s.entry(LogIndex(2)),
        Err(StorageError::Corrupt(_))
    ));
    assert!(matches!(
        s.entries(LogIndex(1), LogIndex(4), 10),
        Err(StorageError::Corrupt(_))
    ));
    assert_eq!(
        s.entry(LogIndex(1)).unwrap(),
        Some(conformance::test_entry(1, 1))
    );
}

#[test]
fn a_missing_snapshot_file_or_segment_is_an_error() {
    let dir = TempDir::new().unwrap();
    {
        let mut s = Store::open(dir.path()).unwrap();
        s.append(&test_entries(1, 1, 3)).unwrap();
        s.save_snapshot(Snapshot::new(LogIndex(2), Term(1), vec![], vec![1]))
            .unwrap();
        s.sync().unwrap();
    }
    let snap = dir.path().join(snapshot_name(1));
    let saved = fs::read(&snap).unwrap();
    fs::remove_file(&snap).unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(StorageError::Corrupt(_))
    ));
    fs::write(&snap, &saved).unwrap();
    Store::open(dir.path()).unwrap();

    // The only segment holding entries that were never purged is gone.
    let dir = TempDir::new().unwrap();
    three_syncs(dir.path(), tiny());
    fs::remove_file(dir.path().join(segment_name(1))).unwrap();
    let err = Store::open_with(dir.path(), tiny()).unwrap_err();
    assert!(
        matches!(&err, StorageError::Corrupt(m) if m.contains("missing")),
        "{err}"
    );
}

#[test]
fn segments_rotate_and_purged_ones_are_deleted() {
    let dir = TempDir::new().unwrap();
    let mut s = Store::open_with(dir.path(), tiny()).unwrap();
    for i in 1..=40 {
        s.append(&test_entries(1, i, i)).unwrap();
        s.save_hard_state(&hs(i)).unwrap();
        s.sync().unwrap();
    }
    let rotated = s.segments().len();
    assert!(rotated > 10, "{rotated} segments");
    s.purge_prefix(LogIndex(35)).unwrap();
    s.sync().unwrap();
    let kept = s.segments();
    assert!(kept.len() <= 7, "kept {kept:?}");
    assert!(s.stats().segments_deleted >= (rotated - kept.len()) as u64);
    let on_disk = Store::list_dir(dir.path()).unwrap().0;
    assert_eq!(on_disk, kept, "deleted on disk too");
    drop(s);
    let mut s = Store::open_with(dir.path(), tiny()).unwrap();
    assert_log(&s, 36, &test_entries(1, 36, 40), "after reopen");
    assert_eq!(s.load_hard_state().unwrap(), Some(hs(40)));
    // Purge everything and beyond: only the active segment stays.
    s.purge_prefix(LogIndex(100)).unwrap();
    s.append(&test_entries(2, 101, 101)).unwrap();
    s.sync().unwrap();
    s.sync().unwrap();
    drop(s);
    let s = Store::open_with(dir.path(), tiny()).unwrap();
    assert_log(&s, 101, &test_entries(2, 101, 101), "after purge beyond");
}

#[test]
fn a_segment_whose_creation_was_cut_short_is_dropped() {
    let dir = TempDir::new().unwrap();
    let ends = three_syncs(dir.path(), tiny());
    let last = ends.last().unwrap().0;
    // A rotation that wrote only part of the new segment's header.
    fs::write(dir.path().join(segment_name(last + 1)), &SEGMENT_MAGIC[..5]).unwrap();
    let s = Store::open_with(dir.path(), tiny()).unwrap();
    assert_eq!(*s.segments().last().unwrap(), last);
    assert_eq!(s.last_index(), LogIndex(15));
}

#[test]
fn a_failed_sync_refuses_writes_until_reopened() {
    let dir = TempDir::new().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    s.append(&test_entries(1, 1, 3)).unwrap();
    s.sync().unwrap();
    s.append(&test_entries(1, 4, 6)).unwrap();
    s.fail_next_write = true;
    assert!(matches!(s.sync(), Err(StorageError::Io(_))));
    assert!(s.failure().is_some());
    // Nothing may be acknowledged now: every write and sync fails.
    assert!(matches!(s.sync(), Err(StorageError::Io(_))));
    assert!(matches!(
        s.append(&test_entries(1, 7, 7)),
        Err(StorageError::Io(_))
    ));
    assert!(matches!(
        s.save_hard_state(&hs(1)),
        Err(StorageError::Io(_))
    ));
    assert!(matches!(
        s.save_snapshot(Snapshot::default()),
        Err(StorageError::Io(_))
    ));
    // A restart recovers the synced state (the half-written record is a torn tail).
    s.crash();
    assert!(s.failure().is_none());
    assert_log(&s, 1, &test_entries(1, 1, 3), "after reopen");
    assert!(s.recovery().torn_bytes_cut > 0);
    s.append(&test_entries(2, 4, 4)).unwrap();
    s.sync().unwrap();
}

#[test]
fn a_stray_snapshot_of_an_unfinished_sync_is_removed() {
    let dir = TempDir::new().unwrap();
    {
        let mut s = Store::open(dir.path()).unwrap();
        s.save_snapshot(Snapshot::new(LogIndex(1), Term(1), vec![], vec![1]))
            .unwrap();
        s.sync().unwrap();
        s.save_snapshot(Snapshot::new(LogIndex(2), Term(1), vec![], vec![2]))
            .unwrap();
        s.sync().unwrap();
    }
    // The first snapshot file was deleted by the second sync.
    assert!(!dir.path().join(snapshot_name(1)).exists());
    // A snapshot written by a sync whose log record never landed.
    fs::write(dir.path().join(snapshot_name(7)), b"whatever").unwrap();
    fs::write(dir.path().join("snap-0000000000000008.tmp"), b"x").unwrap();
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.load_snapshot().unwrap().unwrap().last_index, LogIndex(2));
    assert!(!dir.path().join(snapshot_name(7)).exists());
    assert!(!dir.path().join("snap-0000000000000008.tmp").exists());
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
        1 => (0u64..25).prop_map(Op::Purge),
        1 => (0u64..100).prop_map(Op::SaveHard),
        1 => (0u64..100).prop_map(Op::SaveSnapshot),
        3 => Just(Op::Sync),
        2 => Just(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Driven by the same operations, the disk store (with tiny segments,
    /// so rotation and deletion happen all the time, and crash = reopen)
    /// behaves exactly like `MemStorage`, the reference model of the
    /// contract.
    #[test]
    fn behaves_like_mem_storage(ops in prop::collection::vec(op(), 1..50)) {
        let dir = TempDir::new().unwrap();
        let mut d: DiskStorage<u64, u64> = DiskStorage::open_with(dir.path(), DiskOptions { segment_bytes: 100 }).unwrap();
        let mut m: MemStorage<u64, u64> = MemStorage::new();
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Append(n) => {
                    let batch: Vec<u64> = (next..next + n).collect();
                    next += n;
                    prop_assert_eq!(d.append(&batch), m.append(&batch));
                }
                Op::Truncate(from) => prop_assert_eq!(d.truncate_suffix(LogIndex(from)), m.truncate_suffix(LogIndex(from))),
                Op::Purge(upto) => prop_assert_eq!(d.purge_prefix(LogIndex(upto)), m.purge_prefix(LogIndex(upto))),
                Op::SaveHard(h) => prop_assert_eq!(d.save_hard_state(&h), m.save_hard_state(&h)),
                Op::SaveSnapshot(v) => {
                    let s = Snapshot::new(LogIndex(v), Term(v), vec![], vec![v as u8]);
                    prop_assert_eq!(d.save_snapshot(s.clone()), m.save_snapshot(s));
                }
                Op::Sync => prop_assert_eq!(d.sync(), m.sync()),
                Op::Crash => {
                    CrashableStorage::crash(&mut d);
                    m.crash();
                    prop_assert!(d.failure().is_none());
                }
            }
            prop_assert_eq!(d.first_index(), m.first_index());
            prop_assert_eq!(d.last_index(), m.last_index());
            let (f, l) = (m.first_index(), m.last_index());
            prop_assert_eq!(d.entries(f, l.next(), usize::MAX), m.entries(f, l.next(), usize::MAX));
            prop_assert_eq!(d.load_hard_state(), m.load_hard_state());
            prop_assert_eq!(d.load_snapshot(), m.load_snapshot());
        }
    }
}
