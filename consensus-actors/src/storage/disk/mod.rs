//! [`DiskStorage`]: the durable store on disk, a segmented write-ahead log.
//!
//! # Layout of a data directory
//!
//! ```text
//! DIR/wal-0000000000000001.log   segments of the write-ahead log, in order
//! DIR/wal-0000000000000002.log   (the highest is the one being written)
//! DIR/snap-0000000000000003.snap the installed snapshot (at most one kept)
//! ```
//!
//! Everything — hard state, log appends, truncations, purges and the
//! snapshot in force — goes through one write-ahead log of checksummed
//! records (byte layout in the source of `storage/disk/format.rs`). Writes
//! are buffered in memory and become one record at the next
//! [`Durable::sync`]: **one write and one
//! `fdatasync` per sync**, however many entries were appended since (group
//! commit, as TiKV's raft-engine does). Because a record is all-or-nothing,
//! a sync is atomic: a crash leaves exactly the state of some successful
//! sync, never term of one and log of another. Reads see unsynced writes
//! too; a crash ([`CrashableStorage::crash`], which drops the memory and
//! reopens) loses exactly them.
//!
//! # Recovery
//!
//! [`DiskStorage::open`] replays the segments. The last record of the last
//! segment may be *torn* (the sync in progress at the crash never returned,
//! so nothing depended on it): it is detected by its checksum and cut off
//! (see [`RecoveryStats::torn_bytes_cut`]). A record failing its checks
//! anywhere else, a gap in the log, a missing snapshot file or a checkpoint
//! disagreeing with the replay is [`StorageError::Corrupt`] naming the file
//! and offset: the store refuses to open rather than lose data silently.
//!
//! # Segments, purge and snapshots
//!
//! A segment grows to [`DiskOptions::segment_bytes`], then the next sync
//! starts a new one whose first record is a *checkpoint* of the durable
//! state (last index, purge watermark, snapshot, hard state), so each
//! segment with the ones after it is enough to recover. A segment is
//! deleted once every entry it holds is purged or truncated away durably.
//! A snapshot is written at the sync that makes it durable, to a temporary
//! file that is fsynced, renamed and whose directory is fsynced, before the
//! log record that installs it; the previous snapshot file is deleted after
//! that record is durable.
//!
//! # Failed syncs
//!
//! After a failed write or `fdatasync` the kernel may have dropped the
//! unsynced pages while still serving them from its cache ("fsyncgate"), so
//! the store refuses every later write and sync with [`StorageError::Io`]
//! until it is reopened: the caller (Raft's LogReplicator stops its node)
//! must not acknowledge anything, and a restart recovers what is on disk.
//!
//! # Why no embedded database
//!
//! The issue suggests `redb` for hard state and metadata next to a log of
//! entries. Two stores mean two fsyncs per Raft step that changes the term
//! and the log together, and no atomicity between them; one log of
//! checksummed records gives both in one `fdatasync`. The only dependency
//! is `crc32c` (hardware CRC32C, the checksum of ext4, iSCSI and
//! raft-engine).
//!
//! One process at a time: the store holds an exclusive lock on the file
//! `LOCK` in its directory (`flock` on Unix) for as long as it is open; a
//! second open, from this or another process, fails with
//! [`StorageError::Locked`] instead of corrupting the log. The operating
//! system releases the lock when the process dies, so a crash never leaves
//! the directory locked.

mod format;
#[cfg(test)]
mod tests;

use self::format::{
    decode_ops, decode_snapshot, encode_snapshot, put_record, scan_records, segment_header,
    BatchWriter, Checkpoint, EntrySpan, Op, ENTRY_HEADER_LEN, MAX_RECORD_LEN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};
use super::{
    CrashableStorage, Durable, HardStateStore, LogStore, Snapshot, SnapshotStore, StorageError,
    StorageResult,
};
use crate::types::LogIndex;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How a [`DiskStorage`] lays out its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskOptions {
    /// A sync that finds the current segment at least this long starts a
    /// new one (default 64 MiB). Smaller segments free disk space sooner
    /// after a purge.
    pub segment_bytes: u64,
}

impl Default for DiskOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
        }
    }
}

/// Counters of what a [`DiskStorage`] did since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Syncs that wrote a record (a sync with nothing new writes nothing).
    pub records_written: u64,
    /// `fdatasync`/`fsync` calls on segment and snapshot files and on the
    /// directory.
    pub fsyncs: u64,
    /// Bytes written to segments and snapshot files.
    pub bytes_written: u64,
    /// Segments started (the first one of a new directory included).
    pub segments_created: u64,
    /// Segments deleted because nothing live remained in them.
    pub segments_deleted: u64,
}

/// What [`DiskStorage::open`] found and repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Segments replayed.
    pub segments_replayed: u64,
    /// Records replayed.
    pub records_replayed: u64,
    /// Bytes of a torn last record cut off (0 after a clean shutdown).
    pub torn_bytes_cut: u64,
}

/// Where a synced entry's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    seg: u64,
    offset: u64,
    len: u32,
    crc: u32,
}

impl Loc {
    /// Whether `next` starts right after `self` in the same segment (the
    /// next entry of the same append), so both can be read at once.
    fn adjoins(&self, next: &Loc) -> bool {
        self.seg == next.seg && self.offset + u64::from(self.len) + ENTRY_HEADER_LEN == next.offset
    }
}

/// One present log position.
enum Slot<E> {
    /// Synced: read from the segment.
    Disk(Loc),
    /// Appended since the last sync: in memory and in the pending batch.
    Pending { value: E, span: EntrySpan },
}

/// A durable store on disk for hard state `H`, log entries `E` and
/// snapshots (see the [module docs](self)).
///
/// Reads of synced entries go to the file (`pread`, checksum, decode);
/// memory holds 24 bytes per entry plus the unsynced writes.
pub struct DiskStorage<H, E> {
    dir: PathBuf,
    opts: DiskOptions,
    /// Every segment still on disk, by sequence number.
    segments: BTreeMap<u64, File>,
    /// The segment being written and its length.
    active: u64,
    active_len: u64,
    /// The state the last successful sync made durable (the checkpoint of
    /// the next segment).
    durable: Checkpoint,
    /// Visible state: purge watermark, entries after it, hard state.
    purged: u64,
    slots: VecDeque<Slot<E>>,
    hard: Option<H>,
    hard_bytes: Option<Vec<u8>>,
    /// Unsynced writes: the record payload being built and the snapshot.
    batch: BatchWriter,
    pending_snapshot: Option<Snapshot>,
    hard_dirty: bool,
    /// The number the next snapshot file gets.
    next_snap: u64,
    /// Set by a failed sync: why the store refuses writes until reopened.
    poisoned: Option<String>,
    record: Vec<u8>,
    stats: DiskStats,
    opened: RecoveryStats,
    /// Test hook: the next record write fails as a failed `fdatasync` would.
    #[cfg(test)]
    fail_next_write: bool,
    /// The open, exclusively locked `LOCK` file: released when the store
    /// is dropped or the process dies.
    _lock: File,
}

impl<H, E> fmt::Debug for DiskStorage<H, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStorage")
            .field("dir", &self.dir)
            .field("segments", &self.segments.keys().collect::<Vec<_>>())
            .field("purged", &self.purged)
            .field("entries", &self.slots.len())
            .field("unsynced_bytes", &self.batch.buf.len())
            .field("poisoned", &self.poisoned)
            .field("stats", &self.stats)
            .finish()
    }
}

fn io_err(what: &str, path: &Path, e: &io::Error) -> StorageError {
    StorageError::Io(format!("{what} {}: {e}", path.display()))
}

/// Opens `dir/LOCK` and takes an exclusive lock on it without waiting.
fn lock_dir(dir: &Path) -> StorageResult<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err("opening", &path, &e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StorageError::Locked(dir.display().to_string())),
        Err(fs::TryLockError::Error(e)) => Err(io_err("locking", &path, &e)),
    }
}

fn remove_file(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        tracing::warn!(file = %path.display(), error = %e, "could not remove a file");
    }
}

fn segment_name(seq: u64) -> String {
    format!("wal-{seq:016x}.log")
}

fn snapshot_name(seq: u64) -> String {
    format!("snap-{seq:016x}.snap")
}

fn parse_seq(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn sync_dir(dir: &Path, stats: &mut DiskStats) -> StorageResult<()> {
    let d = File::open(dir).map_err(|e| io_err("opening directory", dir, &e))?;
    d.sync_all()
        .map_err(|e| io_err("fsync of directory", dir, &e))?;
    stats.fsyncs += 1;
    Ok(())
}

/// The log as replay rebuilds it: entries `base + 1 ..` with `base >=
/// purged`; `base > purged` only while the entries in between lay in
/// segments deleted since (a later purge or truncation must cover them).
#[derive(Default)]
struct Replay {
    started: bool,
    purged: u64,
    base: u64,
    locs: VecDeque<Loc>,
    hard: Option<Vec<u8>>,
    snap: u64,
}

impl Replay {
    fn last(&self) -> u64 {
        self.base + self.locs.len() as u64
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            last: self.last(),
            purged: self.purged,
            snap: self.snap,
            hard: self.hard.clone(),
        }
    }

    /// Applies one op of segment `seg` whose record payload starts at
    /// `payload_at` in the file.
    fn apply(&mut self, op: Op<'_>, seg: u64, payload_at: u64) -> Result<(), String> {
        if !self.started && !matches!(op, Op::Checkpoint(_)) {
            return Err("the first segment does not begin with a checkpoint".into());
        }
        match op {
            Op::Checkpoint(cp) => {
                if !self.started {
                    if cp.purged > cp.last {
                        return Err(format!(
                            "checkpoint purged {} beyond its last index {}",
                            cp.purged, cp.last
                        ));
                    }
                    self.started = true;
                    self.base = cp.last;
                    self.purged = cp.purged;
                    self.snap = cp.snap;
                    self.hard = cp.hard;
                } else if cp != self.checkpoint() {
                    return Err(format!(
                        "checkpoint (last {}, purged {}, snapshot {}) disagrees with the replay (last {}, purged {}, snapshot {})",
                        cp.last, cp.purged, cp.snap, self.last(), self.purged, self.snap
                    ));
                }
            }
            Op::HardState(bytes) => self.hard = Some(bytes.to_vec()),
            Op::Append { first, entries } => {
                if first != self.last() + 1 {
                    return Err(format!(
                        "append at {first} does not follow the last index {}",
                        self.last()
                    ));
                }
                self.locs.extend(entries.iter().map(|s| Loc {
                    seg,
                    offset: payload_at + s.offset,
                    len: s.len,
                    crc: s.crc,
                }));
            }
            Op::Truncate(from) => {
                if from <= self.purged || from > self.last() {
                    return Err(format!(
                        "truncation from {from} outside {}..={}",
                        self.purged + 1,
                        self.last()
                    ));
                }
                if from > self.base {
                    self.locs.truncate((from - self.base - 1) as usize);
                } else {
                    self.locs.clear();
                    self.base = from - 1;
                }
            }
            Op::Purge(upto) => {
                if upto <= self.purged {
                    return Err(format!(
                        "purge up to {upto} at or below the watermark {}",
                        self.purged
                    ));
                }
                self.purged = upto;
                if upto >= self.last() {
                    self.locs.clear();
                    self.base = upto;
                } else if upto > self.base {
                    self.locs.drain(..(upto - self.base) as usize);
                    self.base = upto;
                }
            }
            Op::Snapshot(snap) => self.snap = snap,
        }
        Ok(())
    }
}

impl<H, E> DiskStorage<H, E>
where
    H: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
{
    /// Opens (creating it if needed) the store in `dir` with default
    /// options, recovering what the last successful sync made durable.
    ///
    /// Errors: [`StorageError::Io`] if the directory cannot be created or
    /// read; [`StorageError::Corrupt`] if a check fails anywhere but in the
    /// torn last record; [`StorageError::Codec`] if the hard state does not
    /// decode as `H`.
    pub fn open(dir: impl AsRef<Path>) -> StorageResult<Self> {
        Self::open_with(dir, DiskOptions::default())
    }

    /// [`open`](Self::open) with options.
    pub fn open_with(dir: impl AsRef<Path>, opts: DiskOptions) -> StorageResult<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, &e))?;
        let lock = lock_dir(&dir)?;
        Self::open_locked(dir, opts, lock)
    }

    /// Opens the store in `dir`, whose `LOCK` file `lock` is held.
    fn open_locked(dir: PathBuf, opts: DiskOptions, lock: File) -> StorageResult<Self> {
        let mut stats = DiskStats::default();
        let mut opened = RecoveryStats::default();
        let (mut seqs, snaps) = Self::list_dir(&dir)?;

        // Only the newest run of consecutive segments counts: older ones
        // are leftovers of a deletion the crash interrupted (each segment
        // opens with a checkpoint, so the run is enough).
        let run_start = (1..seqs.len())
            .rev()
            .find(|&i| seqs[i - 1] + 1 != seqs[i])
            .unwrap_or(0);
        for &stale in &seqs[..run_start] {
            tracing::warn!(dir = %dir.display(), segment = stale, "removing a segment left over from an interrupted deletion");
            remove_file(&dir.join(segment_name(stale)));
        }
        seqs.drain(..run_start);

        let mut replay = Replay::default();
        let mut segments = BTreeMap::new();
        let mut active_len = 0;
        let count = seqs.len();
        for (i, &seq) in seqs.iter().enumerate() {
            let last = i + 1 == count;
            let path = dir.join(segment_name(seq));
            let name = segment_name(seq);
            let mut bytes = fs::read(&path).map_err(|e| io_err("reading", &path, &e))?;
            let header_ok = bytes.len() >= SEGMENT_HEADER_LEN as usize
                && &bytes[..8] == SEGMENT_MAGIC
                && bytes[..SEGMENT_HEADER_LEN as usize] == segment_header(seq);
            let scan = if header_ok {
                Some(scan_records(&bytes, last, &name)?)
            } else {
                None
            };
            let records = scan.as_ref().map_or(0, |s| s.records.len());
            if records == 0 {
                // A segment without its checkpoint is a rotation (or the
                // creation of the first segment) that the crash cut short:
                // nothing was acknowledged from it.
                if last && (count > 1 || seq == 1) {
                    tracing::warn!(segment = %path.display(), "removing a segment whose creation did not finish");
                    opened.torn_bytes_cut += bytes.len() as u64;
                    fs::remove_file(&path).map_err(|e| io_err("removing", &path, &e))?;
                    sync_dir(&dir, &mut stats)?;
                    break;
                }
                return Err(StorageError::Corrupt(format!(
                    "{name}: no valid header and checkpoint"
                )));
            }
            let Some(scan) = scan else {
                unreachable!("records > 0 implies a scan")
            };
            let mut first_op = true;
            for &(pos, payload) in &scan.records {
                let ops = decode_ops(payload).map_err(|e| {
                    StorageError::Corrupt(format!("{name}: record at byte {pos}: {e}"))
                })?;
                for op in ops {
                    if first_op && !matches!(op, Op::Checkpoint(_)) {
                        return Err(StorageError::Corrupt(format!(
                            "{name}: does not begin with a checkpoint"
                        )));
                    }
                    first_op = false;
                    replay
                        .apply(op, seq, pos + RECORD_HEADER_LEN)
                        .map_err(|e| {
                            StorageError::Corrupt(format!("{name}: record at byte {pos}: {e}"))
                        })?;
                }
                opened.records_replayed += 1;
            }
            let torn_at = scan.torn_at;
            drop(scan);
            if let Some(at) = torn_at {
                let cut = bytes.len() as u64 - at;
                tracing::warn!(segment = %path.display(), at, cut, "cutting off a torn last record");
                opened.torn_bytes_cut += cut;
                bytes.truncate(at as usize);
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_err("opening", &path, &e))?;
                f.set_len(at).map_err(|e| io_err("truncating", &path, &e))?;
                f.sync_all().map_err(|e| io_err("fsync of", &path, &e))?;
                stats.fsyncs += 1;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_err("opening", &path, &e))?;
            active_len = bytes.len() as u64;
            segments.insert(seq, file);
            opened.segments_replayed += 1;
        }

        if replay.base > replay.purged {
            return Err(StorageError::Corrupt(format!(
                "{}: log entries {}..={} are missing (their segment is gone)",
                dir.display(),
                replay.purged + 1,
                replay.base
            )));
        }

        // The snapshot in force must be there; any other is an orphan of an
        // unfinished sync or an old one whose deletion did not happen.
        if replay.snap != 0 {
            let path = dir.join(snapshot_name(replay.snap));
            let bytes = fs::read(&path).map_err(|e| {
                StorageError::Corrupt(format!(
                    "the snapshot in force {} cannot be read: {e}",
                    path.display()
                ))
            })?;
            decode_snapshot(&bytes, &snapshot_name(replay.snap))?;
        }
        for &s in snaps.iter().filter(|&&s| s != replay.snap) {
            remove_file(&dir.join(snapshot_name(s)));
        }
        let next_snap = snaps.iter().copied().max().unwrap_or(0).max(replay.snap) + 1;

        let hard = match &replay.hard {
            Some(bytes) => Some(rmp_serde::from_slice(bytes).map_err(|e| {
                StorageError::Codec(format!("decoding the stored hard state: {e}"))
            })?),
            None => None,
        };

        let mut store = Self {
            dir,
            opts,
            segments,
            active: 0,
            active_len,
            durable: replay.checkpoint(),
            purged: replay.purged,
            slots: replay.locs.iter().map(|&l| Slot::Disk(l)).collect(),
            hard,
            hard_bytes: replay.hard,
            batch: BatchWriter::default(),
            pending_snapshot: None,
            hard_dirty: false,
            next_snap,
            poisoned: None,
            record: Vec::new(),
            stats,
            opened,
            #[cfg(test)]
            fail_next_write: false,
            _lock: lock,
        };
        match store.segments.keys().next_back() {
            Some(&active) => store.active = active,
            None => {
                store.create_segment(1, &[])?;
            }
        }
        tracing::debug!(dir = %store.dir.display(), first = store.purged + 1, last = store.last(), ?opened, "disk storage opened");
        Ok(store)
    }

    /// Segment and snapshot numbers in `dir`; removes temporary files.
    fn list_dir(dir: &Path) -> StorageResult<(Vec<u64>, Vec<u64>)> {
        let mut seqs = Vec::new();
        let mut snaps = Vec::new();
        let rd = fs::read_dir(dir).map_err(|e| io_err("listing", dir, &e))?;
        for entry in rd {
            let entry = entry.map_err(|e| io_err("listing", dir, &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(seq) = parse_seq(name, "wal-", ".log") {
                seqs.push(seq);
            } else if let Some(seq) = parse_seq(name, "snap-", ".snap") {
                snaps.push(seq);
            } else if name.starts_with("snap-") && name.ends_with(".tmp") {
                remove_file(&entry.path());
            }
        }
        seqs.sort_unstable();
        snaps.sort_unstable();
        Ok((seqs, snaps))
    }
}

impl<H, E> DiskStorage<H, E> {
    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the store did since it was opened.
    pub fn stats(&self) -> DiskStats {
        self.stats
    }

    /// What opening the store found (segments and records replayed, torn
    /// bytes cut off).
    pub fn recovery(&self) -> RecoveryStats {
        self.opened
    }

    /// Segment numbers on disk, oldest first.
    pub fn segments(&self) -> Vec<u64> {
        self.segments.keys().copied().collect()
    }

    /// Whether a write was made since the last successful sync.
    pub fn has_unsynced_writes(&self) -> bool {
        !self.batch.buf.is_empty() || self.pending_snapshot.is_some()
    }

    /// Why the store refuses writes (a failed sync), if it does.
    pub fn failure(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    fn last(&self) -> u64 {
        self.purged + self.slots.len() as u64
    }

    fn out_of_range(&self, index: LogIndex) -> StorageError {
        StorageError::OutOfRange {
            index,
            first: LogIndex(self.purged + 1),
            last: LogIndex(self.last()),
        }
    }

    fn compacted(&self, index: LogIndex) -> StorageError {
        StorageError::Compacted {
            index,
            first: LogIndex(self.purged + 1),
        }
    }

    fn check_writable(&self) -> StorageResult<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(why) => Err(StorageError::Io(format!(
                "the store failed a sync and must be reopened: {why}"
            ))),
        }
    }

    /// Creates segment `seq` holding its header, a checkpoint of the
    /// durable state and `payload` as a second record if not empty; makes
    /// it the active segment and returns where `payload` starts.
    fn create_segment(&mut self, seq: u64, payload: &[u8]) -> StorageResult<u64> {
        let path = self.dir.join(segment_name(seq));
        let mut cp = BatchWriter::default();
        cp.checkpoint(&self.durable);
        let mut bytes = segment_header(seq).to_vec();
        put_record(&mut bytes, &cp.buf);
        let payload_at = bytes.len() as u64 + RECORD_HEADER_LEN;
        if !payload.is_empty() {
            put_record(&mut bytes, payload);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err("creating", &path, &e))?;
        file.write_all_at(&bytes, 0)
            .map_err(|e| io_err("writing", &path, &e))?;
        file.sync_all().map_err(|e| io_err("fsync of", &path, &e))?;
        self.stats.fsyncs += 1;
        sync_dir(&self.dir, &mut self.stats)?;
        self.stats.bytes_written += bytes.len() as u64;
        self.stats.segments_created += 1;
        self.segments.insert(seq, file);
        self.active = seq;
        self.active_len = bytes.len() as u64;
        tracing::debug!(segment = %path.display(), "started a segment");
        Ok(payload_at)
    }

    /// Writes the snapshot file `seq` durably (temp file, fsync, rename,
    /// directory fsync).
    fn write_snapshot_file(&mut self, seq: u64, snapshot: &Snapshot) -> StorageResult<()> {
        let bytes = encode_snapshot(snapshot)?;
        let tmp = self.dir.join(format!("snap-{seq:016x}.tmp"));
        let path = self.dir.join(snapshot_name(seq));
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err("creating", &tmp, &e))?;
        f.write_all_at(&bytes, 0)
            .map_err(|e| io_err("writing", &tmp, &e))?;
        f.sync_all().map_err(|e| io_err("fsync of", &tmp, &e))?;
        self.stats.fsyncs += 1;
        fs::rename(&tmp, &path).map_err(|e| io_err("renaming", &tmp, &e))?;
        sync_dir(&self.dir, &mut self.stats)?;
        self.stats.bytes_written += bytes.len() as u64;
        Ok(())
    }

    /// The body of [`Durable::sync`] once there is something to write.
    fn write_batch(&mut self) -> StorageResult<()> {
        let mut new_snap = None;
        if let Some(snapshot) = self.pending_snapshot.take() {
            let seq = self.next_snap;
            self.next_snap += 1;
            self.write_snapshot_file(seq, &snapshot)?;
            self.batch.snapshot(seq);
            new_snap = Some(seq);
        }
        if self.batch.buf.len() as u64 > MAX_RECORD_LEN {
            return Err(StorageError::Io(format!(
                "{} unsynced bytes exceed the record limit of {MAX_RECORD_LEN}",
                self.batch.buf.len()
            )));
        }
        let payload = std::mem::take(&mut self.batch.buf);
        let written = if self.active_len >= self.opts.segment_bytes {
            self.create_segment(self.active + 1, &payload)
        } else {
            self.append_record(&payload)
        };
        self.batch.buf = payload;
        let payload_at = written?;

        // Durable: the entries of this batch now live in the active segment.
        let active = self.active;
        for slot in self.slots.iter_mut().rev() {
            match slot {
                Slot::Disk(_) => break,
                Slot::Pending { span, .. } => {
                    *slot = Slot::Disk(Loc {
                        seg: active,
                        offset: payload_at + span.offset,
                        len: span.len,
                        crc: span.crc,
                    });
                }
            }
        }
        self.batch.buf.clear();
        self.durable.last = self.last();
        self.durable.purged = self.purged;
        if self.hard_dirty {
            self.durable.hard.clone_from(&self.hard_bytes);
            self.hard_dirty = false;
        }
        if let Some(seq) = new_snap {
            let old = std::mem::replace(&mut self.durable.snap, seq);
            if old != 0 {
                remove_file(&self.dir.join(snapshot_name(old)));
            }
        }
        self.delete_dead_segments();
        Ok(())
    }

    /// Appends one record to the active segment and `fdatasync`s it;
    /// returns where the payload starts.
    fn append_record(&mut self, payload: &[u8]) -> StorageResult<u64> {
        self.record.clear();
        put_record(&mut self.record, payload);
        let Some(file) = self.segments.get(&self.active) else {
            return Err(StorageError::Io("the active segment is not open".into()));
        };
        let at = self.active_len;
        let path = || self.dir.join(segment_name(self.active));
        #[cfg(test)]
        if std::mem::take(&mut self.fail_next_write) {
            // Half the record lands, then the "disk" fails.
            let half = &self.record[..self.record.len() / 2];
            file.write_all_at(half, at)
                .map_err(|e| io_err("writing", &path(), &e))?;
            return Err(StorageError::Io("injected fdatasync failure".into()));
        }
        file.write_all_at(&self.record, at)
            .map_err(|e| io_err("writing", &path(), &e))?;
        file.sync_data()
            .map_err(|e| io_err("fdatasync of", &path(), &e))?;
        self.stats.fsyncs += 1;
        self.stats.records_written += 1;
        self.stats.bytes_written += self.record.len() as u64;
        self.active_len += self.record.len() as u64;
        Ok(at + RECORD_HEADER_LEN)
    }

    /// Deletes the segments older than the one holding the first live
    /// entry (or than the active one when the log is empty): the durable
    /// state no longer needs them.
    fn delete_dead_segments(&mut self) {
        let keep_from = match self.slots.front() {
            Some(Slot::Disk(loc)) => loc.seg,
            _ => self.active,
        };
        while let Some((&seq, _)) = self.segments.first_key_value() {
            if seq >= keep_from {
                break;
            }
            self.segments.remove(&seq);
            remove_file(&self.dir.join(segment_name(seq)));
            self.stats.segments_deleted += 1;
        }
    }

    /// Reads, checks and decodes the synced entry at `loc`.
    fn read_loc(&self, loc: &Loc) -> StorageResult<E>
    where
        E: DeserializeOwned,
    {
        let mut buf = vec![0u8; loc.len as usize];
        self.read_at(loc.seg, loc.offset, &mut buf)?;
        self.decode_entry(loc, &buf)
    }

    fn read_at(&self, seg: u64, offset: u64, buf: &mut [u8]) -> StorageResult<()> {
        let file = self.segments.get(&seg).ok_or_else(|| {
            StorageError::Corrupt(format!("segment {seg} of a live entry is not open"))
        })?;
        file.read_exact_at(buf, offset)
            .map_err(|e| io_err("reading", &self.dir.join(segment_name(seg)), &e))
    }

    fn decode_entry(&self, loc: &Loc, bytes: &[u8]) -> StorageResult<E>
    where
        E: DeserializeOwned,
    {
        if crc32c::crc32c(bytes) != loc.crc {
            return Err(StorageError::Corrupt(format!(
                "{}: the entry at byte {} fails its checksum",
                segment_name(loc.seg),
                loc.offset
            )));
        }
        rmp_serde::from_slice(bytes)
            .map_err(|e| StorageError::Codec(format!("decoding a log entry: {e}")))
    }
}

impl<H, E> DiskStorage<H, E>
where
    H: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
{
    /// Drops everything in memory (unsynced writes included) and recovers
    /// from the files, as a restart after a crash does.
    /// The store keeps its directory's lock throughout.
    pub fn reopen(&mut self) -> StorageResult<()> {
        // A duplicate of the locked file shares its lock (flock locks
        // belong to the open file, not to the descriptor).
        let lock = self
            ._lock
            .try_clone()
            .map_err(|e| io_err("duplicating the lock of", &self.dir, &e))?;
        let fresh = Self::open_locked(self.dir.clone(), self.opts, lock)?;
        *self = fresh;
        Ok(())
    }
}

impl<H, E> CrashableStorage for DiskStorage<H, E>
where
    H: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
{
    /// Drops and reopens (see [`DiskStorage::reopen`]). If reopening fails
    /// the error is logged and the store refuses writes.
    fn crash(&mut self) {
        if let Err(e) = self.reopen() {
            tracing::error!(dir = %self.dir.display(), error = %e, "reopening after a crash failed");
            self.poisoned = Some(format!("reopening failed: {e}"));
        }
    }
}

impl<H, E> Durable for DiskStorage<H, E> {
    fn sync(&mut self) -> StorageResult<()> {
        self.check_writable()?;
        if !self.has_unsynced_writes() {
            return Ok(());
        }
        let r = self.write_batch();
        if let Err(e) = &r {
            tracing::error!(dir = %self.dir.display(), error = %e, "sync failed: refusing writes until reopened");
            self.poisoned = Some(e.to_string());
        }
        r
    }
}

impl<H, E> HardStateStore<H> for DiskStorage<H, E>
where
    H: Clone + Serialize + DeserializeOwned,
{
    fn save_hard_state(&mut self, state: &H) -> StorageResult<()> {
        self.check_writable()?;
        let bytes = rmp_serde::to_vec(state)
            .map_err(|e| StorageError::Codec(format!("encoding the hard state: {e}")))?;
        self.batch.hard_state(&bytes);
        self.hard = Some(state.clone());
        self.hard_bytes = Some(bytes);
        self.hard_dirty = true;
        Ok(())
    }

    fn load_hard_state(&self) -> StorageResult<Option<H>> {
        Ok(self.hard.clone())
    }
}

impl<H, E> SnapshotStore for DiskStorage<H, E> {
    fn save_snapshot(&mut self, snapshot: Snapshot) -> StorageResult<()> {
        self.check_writable()?;
        self.pending_snapshot = Some(snapshot);
        Ok(())
    }

    fn load_snapshot(&self) -> StorageResult<Option<Snapshot>> {
        if let Some(s) = &self.pending_snapshot {
            return Ok(Some(s.clone()));
        }
        if self.durable.snap == 0 {
            return Ok(None);
        }
        let name = snapshot_name(self.durable.snap);
        let path = self.dir.join(&name);
        let bytes = fs::read(&path).map_err(|e| io_err("reading", &path, &e))?;
        decode_snapshot(&bytes, &name).map(Some)
    }
}

/// Reads at most this many bytes at once when `entries` reads adjoining
/// entries.
const MAX_READ_BYTES: u64 = 1 << 20;

impl<H, E> LogStore<E> for DiskStorage<H, E>
where
    E: Clone + Serialize + DeserializeOwned,
{
    fn first_index(&self) -> LogIndex {
        LogIndex(self.purged + 1)
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.last())
    }

    fn append(&mut self, entries: &[E]) -> StorageResult<()> {
        self.check_writable()?;
        if entries.is_empty() {
            return Ok(());
        }
        let count = u32::try_from(entries.len())
            .map_err(|_| StorageError::Io(format!("{} entries in one append", entries.len())))?;
        let mark = self.batch.buf.len();
        let slots_before = self.slots.len();
        self.batch.begin_append(self.last() + 1, count);
        for e in entries {
            match self.batch.entry(e) {
                Ok(span) => self.slots.push_back(Slot::Pending {
                    value: e.clone(),
                    span,
                }),
                Err(err) => {
                    self.batch.buf.truncate(mark);
                    self.slots.truncate(slots_before);
                    return Err(err);
                }
            }
        }
        if self.batch.buf.len() as u64 > MAX_RECORD_LEN {
            self.batch.buf.truncate(mark);
            self.slots.truncate(slots_before);
            return Err(StorageError::Io(format!(
                "unsynced writes would exceed {MAX_RECORD_LEN} bytes: sync first"
            )));
        }
        Ok(())
    }

    fn entry(&self, index: LogIndex) -> StorageResult<Option<E>> {
        if index == LogIndex::ZERO || index.get() > self.last() {
            return Ok(None);
        }
        if index.get() <= self.purged {
            return Err(self.compacted(index));
        }
        match &self.slots[(index.get() - self.purged - 1) as usize] {
            Slot::Pending { value, .. } => Ok(Some(value.clone())),
            Slot::Disk(loc) => self.read_loc(loc).map(Some),
        }
    }

    fn entries(
        &self,
        from: LogIndex,
        to_exclusive: LogIndex,
        max_entries: usize,
    ) -> StorageResult<Vec<E>> {
        if from == LogIndex::ZERO || from > to_exclusive {
            return Err(self.out_of_range(from));
        }
        if from.get() <= self.purged {
            return Err(self.compacted(from));
        }
        if to_exclusive.get() > self.last() + 1 {
            return Err(self.out_of_range(to_exclusive));
        }
        let wanted = (to_exclusive.get() - from.get()).min(max_entries as u64) as usize;
        let start = (from.get() - self.purged - 1) as usize;
        let mut out = Vec::with_capacity(wanted);
        let mut run: Vec<Loc> = Vec::new();
        let mut buf = Vec::new();
        for slot in self.slots.range(start..start + wanted) {
            match slot {
                Slot::Pending { value, .. } => {
                    self.read_run(&mut run, &mut buf, &mut out)?;
                    out.push(value.clone());
                }
                Slot::Disk(loc) => {
                    let joins = run.last().is_some_and(|prev| {
                        prev.adjoins(loc)
                            && loc.offset + u64::from(loc.len) - run[0].offset <= MAX_READ_BYTES
                    });
                    if !joins {
                        self.read_run(&mut run, &mut buf, &mut out)?;
                    }
                    run.push(*loc);
                }
            }
        }
        self.read_run(&mut run, &mut buf, &mut out)?;
        debug_assert_eq!(out.len(), wanted);
        Ok(out)
    }

    fn truncate_suffix(&mut self, from: LogIndex) -> StorageResult<()> {
        if from == LogIndex::ZERO {
            return Err(self.out_of_range(from));
        }
        if from.get() <= self.purged {
            return Err(self.compacted(from));
        }
        self.check_writable()?;
        if from.get() > self.last() {
            return Ok(());
        }
        self.slots.truncate((from.get() - self.purged - 1) as usize);
        self.batch.truncate(from.get());
        Ok(())
    }

    fn purge_prefix(&mut self, upto: LogIndex) -> StorageResult<()> {
        self.check_writable()?;
        if upto.get() <= self.purged {
            return Ok(());
        }
        let present = (upto.get() - self.purged).min(self.slots.len() as u64) as usize;
        self.slots.drain(..present);
        self.purged = upto.get();
        self.batch.purge(upto.get());
        Ok(())
    }
}

impl<H, E> DiskStorage<H, E>
where
    E: DeserializeOwned,
{
    /// Reads the adjoining synced entries of `run` with one `pread` and
    /// decodes them into `out`, leaving `run` empty.
    fn read_run(
        &self,
        run: &mut Vec<Loc>,
        buf: &mut Vec<u8>,
        out: &mut Vec<E>,
    ) -> StorageResult<()> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        if run.len() == 1 {
            out.push(self.read_loc(first)?);
            run.clear();
            return Ok(());
        }
        let span = (last.offset + u64::from(last.len) - first.offset) as usize;
        buf.clear();
        buf.resize(span, 0);
        self.read_at(first.seg, first.offset, buf)?;
        for loc in run.iter() {
            let at = (loc.offset - first.offset) as usize;
            out.push(self.decode_entry(loc, &buf[at..at + loc.len as usize])?);
        }
        run.clear();
        Ok(())
    }
}
