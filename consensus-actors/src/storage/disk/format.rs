//! The bytes on disk: segment headers, checksummed records, the operations
//! inside a record and snapshot files.
//!
//! ```text
//! segment  = header record*
//! header   = "CNSWAL01" seq:u64le                         (16 bytes)
//! record   = len:u32le hcrc:u32le pcrc:u32le payload[len] hcrc = crc32c(len), pcrc = crc32c(payload)
//! payload  = op+                                          (one sync = one record)
//! op       = 1 last:u64 purged:u64 snap:u64 hard          checkpoint (first op of every segment)
//!          | 2 hard                                       hard state saved
//!          | 3 first:u64 count:u32 entry{count}           entries appended at first..
//!          | 4 from:u64                                   suffix truncated from `from`
//!          | 5 upto:u64                                   prefix purged up to `upto`
//!          | 6 snap:u64                                   snapshot file `snap` installed
//! hard     = 0 | 1 len:u32 bytes[len]                     (MessagePack of H)
//! entry    = len:u32le crc:u32le bytes[len]               crc = crc32c(bytes), MessagePack of E
//! snapshot = "CNSSNP01" len:u64le crc:u32le bytes[len]    (MessagePack of Snapshot)
//! ```
//!
//! Every integer is little-endian. A record is the unit of atomicity: a sync
//! writes exactly one, so after a crash the last record of the last segment
//! is either whole (its checksum holds) or torn (cut off on reopen).

use super::super::{Snapshot, StorageError, StorageResult};

/// Magic at the start of every segment file.
pub(super) const SEGMENT_MAGIC: &[u8; 8] = b"CNSWAL01";
/// Magic at the start of every snapshot file.
pub(super) const SNAPSHOT_MAGIC: &[u8; 8] = b"CNSSNP01";
/// Bytes of a segment header.
pub(super) const SEGMENT_HEADER_LEN: u64 = 16;
/// Bytes of a record header (length, its checksum, the payload's checksum).
pub(super) const RECORD_HEADER_LEN: u64 = 12;
/// Bytes of an entry header inside an append op (length and checksum).
pub(super) const ENTRY_HEADER_LEN: u64 = 8;
/// The largest record accepted, written or read (1 GiB): a length beyond it
/// is garbage, not a record.
pub(super) const MAX_RECORD_LEN: u64 = 1 << 30;

const OP_CHECKPOINT: u8 = 1;
const OP_HARD_STATE: u8 = 2;
const OP_APPEND: u8 = 3;
const OP_TRUNCATE: u8 = 4;
const OP_PURGE: u8 = 5;
const OP_SNAPSHOT: u8 = 6;

/// The checksum of a record's length field: a damaged length is told apart
/// from a payload that was not written.
fn len_crc(len: u32) -> u32 {
    crc32c::crc32c(&len.to_le_bytes())
}

/// The header of segment `seq`.
pub(super) fn segment_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..].copy_from_slice(&seq.to_le_bytes());
    h
}

/// Frames `payload` as a record (header then payload) at the end of `out`.
pub(super) fn put_record(out: &mut Vec<u8>, payload: &[u8]) {
    debug_assert!((payload.len() as u64) <= MAX_RECORD_LEN);
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len_crc(len).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The durable state at the start of a segment, so that a segment (with
/// the ones after it) is enough to recover once older ones are deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Checkpoint {
    /// The log's last index.
    pub last: u64,
    /// The purge watermark.
    pub purged: u64,
    /// The installed snapshot file (0: none).
    pub snap: u64,
    /// The encoded hard state.
    pub hard: Option<Vec<u8>>,
}

/// Where an appended entry's bytes lie inside a record payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EntrySpan {
    /// Offset of the entry's bytes (after its header) in the payload.
    pub offset: u64,
    /// Length of the bytes.
    pub len: u32,
    /// crc32c of the bytes.
    pub crc: u32,
}

/// One decoded operation of a record.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Op<'a> {
    Checkpoint(Checkpoint),
    HardState(&'a [u8]),
    Append { first: u64, entries: Vec<EntrySpan> },
    Truncate(u64),
    Purge(u64),
    Snapshot(u64),
}

/// Builds a record payload op by op.
#[derive(Default)]
pub(super) struct BatchWriter {
    pub buf: Vec<u8>,
}

impl BatchWriter {
    fn put_hard(&mut self, hard: Option<&[u8]>) {
        match hard {
            None => self.buf.push(0),
            Some(bytes) => {
                self.buf.push(1);
                self.buf
                    .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(bytes);
            }
        }
    }

    pub fn checkpoint(&mut self, cp: &Checkpoint) {
        self.buf.push(OP_CHECKPOINT);
        self.buf.extend_from_slice(&cp.last.to_le_bytes());
        self.buf.extend_from_slice(&cp.purged.to_le_bytes());
        self.buf.extend_from_slice(&cp.snap.to_le_bytes());
        self.put_hard(cp.hard.as_deref());
    }

    pub fn hard_state(&mut self, bytes: &[u8]) {
        self.buf.push(OP_HARD_STATE);
        self.put_hard(Some(bytes));
    }

    /// Starts an append op of `count` entries at `first`; follow with
    /// exactly `count` calls of [`entry`](Self::entry).
    pub fn begin_append(&mut self, first: u64, count: u32) {
        self.buf.push(OP_APPEND);
        self.buf.extend_from_slice(&first.to_le_bytes());
        self.buf.extend_from_slice(&count.to_le_bytes());
    }

    /// Encodes one entry (MessagePack) and returns where its bytes lie.
    pub fn entry<E: serde::Serialize>(&mut self, e: &E) -> StorageResult<EntrySpan> {
        let head = self.buf.len();
        self.buf
            .extend_from_slice(&[0u8; ENTRY_HEADER_LEN as usize]);
        let start = self.buf.len();
        if let Err(err) = rmp_serde::encode::write(&mut self.buf, e) {
            self.buf.truncate(head);
            return Err(StorageError::Codec(format!("encoding a log entry: {err}")));
        }
        let len = self.buf.len() - start;
        if len as u64 > MAX_RECORD_LEN {
            self.buf.truncate(head);
            return Err(StorageError::Codec(format!(
                "a log entry of {len} bytes is larger than {MAX_RECORD_LEN}"
            )));
        }
        let crc = crc32c::crc32c(&self.buf[start..]);
        self.buf[head..head + 4].copy_from_slice(&(len as u32).to_le_bytes());
        self.buf[head + 4..start].copy_from_slice(&crc.to_le_bytes());
        Ok(EntrySpan {
            offset: start as u64,
            len: len as u32,
            crc,
        })
    }

    pub fn truncate(&mut self, from: u64) {
        self.buf.push(OP_TRUNCATE);
        self.buf.extend_from_slice(&from.to_le_bytes());
    }

    pub fn purge(&mut self, upto: u64) {
        self.buf.push(OP_PURGE);
        self.buf.extend_from_slice(&upto.to_le_bytes());
    }

    pub fn snapshot(&mut self, snap: u64) {
        self.buf.push(OP_SNAPSHOT);
        self.buf.extend_from_slice(&snap.to_le_bytes());
    }
}

/// Reads ops out of a payload whose checksum held.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("op runs past the record end at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn hard(&mut self) -> Result<Option<&'a [u8]>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => {
                let len = self.u32()? as usize;
                Ok(Some(self.take(len)?))
            }
            t => Err(format!("bad hard-state marker {t}")),
        }
    }
}

/// Decodes every op of a record payload (whose checksum held: a failure
/// here means a bug or a forged record, reported as corruption).
pub(super) fn decode_ops(payload: &[u8]) -> Result<Vec<Op<'_>>, String> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    let mut ops = Vec::new();
    while c.pos < payload.len() {
        let op = match c.u8()? {
            OP_CHECKPOINT => {
                let last = c.u64()?;
                let purged = c.u64()?;
                let snap = c.u64()?;
                let hard = c.hard()?.map(<[u8]>::to_vec);
                Op::Checkpoint(Checkpoint {
                    last,
                    purged,
                    snap,
                    hard,
                })
            }
            OP_HARD_STATE => match c.hard()? {
                Some(bytes) => Op::HardState(bytes),
                None => return Err("hard-state op without a hard state".into()),
            },
            OP_APPEND => {
                let first = c.u64()?;
                let count = c.u32()?;
                let mut entries = Vec::with_capacity((count as usize).min(payload.len() / 8));
                for _ in 0..count {
                    let len = c.u32()?;
                    let crc = c.u32()?;
                    let offset = c.pos as u64;
                    c.take(len as usize)?;
                    entries.push(EntrySpan { offset, len, crc });
                }
                Op::Append { first, entries }
            }
            OP_TRUNCATE => Op::Truncate(c.u64()?),
            OP_PURGE => Op::Purge(c.u64()?),
            OP_SNAPSHOT => Op::Snapshot(c.u64()?),
            t => return Err(format!("unknown op tag {t} at byte {}", c.pos - 1)),
        };
        ops.push(op);
    }
    Ok(ops)
}

/// What scanning a segment's records found.
pub(super) struct Scan<'a> {
    /// Each whole record: its offset in the file and its payload.
    pub records: Vec<(u64, &'a [u8])>,
    /// Where a torn tail starts (the file should be cut there), if any.
    pub torn_at: Option<u64>,
}

/// Splits a segment's bytes (after the header) into records.
///
/// Only the segment being written at the crash (`last`) may end in a *torn
/// tail*, the unfinished write of the last sync, which is cut off: fewer
/// bytes than a record header; a header whose bytes are all zero (a sector
/// that never landed); a sound header whose payload runs past the end of the
/// file; or a payload failing its checksum with nothing but zeros after it.
/// Everything else that fails a check, and any failure in an older segment,
/// is corruption: an error naming the file and the offset, never a silent
/// cut (the approach of etcd's WAL, which also tells torn writes by their
/// zeroed sectors).
pub(super) fn scan_records<'a>(bytes: &'a [u8], last: bool, name: &str) -> StorageResult<Scan<'a>> {
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN as usize;
    let len = bytes.len();
    let zeros = |from: usize, to: usize| bytes[from.min(len)..to.min(len)].iter().all(|&b| b == 0);
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    while pos < len {
        let torn = Scan {
            records: Vec::new(),
            torn_at: Some(pos as u64),
        };
        let head_end = pos + RECORD_HEADER_LEN as usize;
        if head_end > len {
            if last {
                return Ok(Scan { records, ..torn });
            }
            return Err(corrupt_at(
                name,
                pos,
                &format!("has a truncated header ({} bytes left)", len - pos),
            ));
        }
        let rlen = word(pos);
        if word(pos + 4) != len_crc(rlen) || rlen == 0 || u64::from(rlen) > MAX_RECORD_LEN {
            if last && zeros(pos, head_end) {
                return Ok(Scan { records, ..torn });
            }
            return Err(corrupt_at(name, pos, "has a damaged header"));
        }
        let end = head_end as u64 + u64::from(rlen);
        if end > len as u64 {
            if last {
                return Ok(Scan { records, ..torn });
            }
            return Err(corrupt_at(
                name,
                pos,
                &format!("claims {rlen} bytes, {} remain", len - head_end),
            ));
        }
        let end = end as usize;
        let payload = &bytes[head_end..end];
        if crc32c::crc32c(payload) != word(pos + 8) {
            if last && zeros(end, len) {
                return Ok(Scan { records, ..torn });
            }
            return Err(corrupt_at(
                name,
                pos,
                &format!("fails its checksum and {} bytes follow it", len - end),
            ));
        }
        records.push((pos as u64, payload));
        pos = end;
    }
    Ok(Scan {
        records,
        torn_at: None,
    })
}

fn corrupt_at(name: &str, pos: usize, why: &str) -> StorageError {
    StorageError::Corrupt(format!("{name}: record at byte {pos} {why}"))
}

/// Encodes a snapshot file.
pub(super) fn encode_snapshot(s: &Snapshot) -> StorageResult<Vec<u8>> {
    let body = rmp_serde::to_vec(s)
        .map_err(|e| StorageError::Codec(format!("encoding a snapshot: {e}")))?;
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes and checks a snapshot file.
pub(super) fn decode_snapshot(bytes: &[u8], name: &str) -> StorageResult<Snapshot> {
    let corrupt = |why: &str| StorageError::Corrupt(format!("snapshot {name}: {why}"));
    if bytes.len() < 20 || &bytes[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("bad header"));
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(l);
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let body = &bytes[20..];
    if body.len() as u64 != len {
        return Err(corrupt(&format!(
            "holds {} bytes, its header says {len}",
            body.len()
        )));
    }
    if crc32c::crc32c(body) != crc {
        return Err(corrupt("fails its checksum"));
    }
    rmp_serde::from_slice(body).map_err(|e| corrupt(&format!("cannot be decoded: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[&[u8]]) -> Vec<u8> {
        let mut b = segment_header(1).to_vec();
        for r in records {
            put_record(&mut b, r);
        }
        b
    }

    #[test]
    fn ops_round_trip() {
        let mut w = BatchWriter::default();
        let cp = Checkpoint {
            last: 7,
            purged: 3,
            snap: 2,
            hard: Some(vec![1, 2]),
        };
        w.checkpoint(&cp);
        w.hard_state(&[9, 9, 9]);
        w.begin_append(8, 2);
        let a = w.entry(&"x".to_string()).unwrap();
        let b = w.entry(&42u64).unwrap();
        w.truncate(9);
        w.purge(5);
        w.snapshot(3);
        let ops = decode_ops(&w.buf).unwrap();
        assert_eq!(
            ops,
            vec![
                Op::Checkpoint(cp),
                Op::HardState(&[9, 9, 9]),
                Op::Append {
                    first: 8,
                    entries: vec![a, b]
                },
                Op::Truncate(9),
                Op::Purge(5),
                Op::Snapshot(3),
            ]
        );
        let bytes = &w.buf[a.offset as usize..][..a.len as usize];
        assert_eq!(crc32c::crc32c(bytes), a.crc);
        let s: String = rmp_serde::from_slice(bytes).unwrap();
        assert_eq!(s, "x");
    }

    #[test]
    fn garbage_ops_are_errors_not_panics() {
        assert!(decode_ops(&[77]).is_err());
        assert!(decode_ops(&[OP_APPEND, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0]).is_err());
        assert!(decode_ops(&[OP_HARD_STATE, 0]).is_err());
        assert!(decode_ops(&[OP_TRUNCATE, 1, 2]).is_err());
    }

    #[test]
    fn torn_tails_are_cut_only_in_the_last_segment() {
        let whole = segment(&[b"one", b"two"]);
        let s = scan_records(&whole, true, "t").unwrap();
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.torn_at, None);
        let second_at = s.records[1].0;
        // Every proper prefix that cuts the second record is a torn tail.
        for cut in (second_at as usize + 1)..whole.len() {
            let s = scan_records(&whole[..cut], true, "t").unwrap();
            assert_eq!(s.records.len(), 1, "cut at {cut}");
            assert_eq!(s.torn_at, Some(second_at), "cut at {cut}");
            assert!(
                matches!(
                    scan_records(&whole[..cut], false, "t"),
                    Err(StorageError::Corrupt(_))
                ),
                "cut at {cut} in an older segment is corruption"
            );
        }
        // A torn last record followed by zeros (the file grew, the data did not land).
        let mut zeroed = whole.clone();
        let n = zeroed.len();
        zeroed[n - 2..].fill(0);
        zeroed.extend_from_slice(&[0; 100]);
        let s = scan_records(&zeroed, true, "t").unwrap();
        assert_eq!(s.torn_at, Some(second_at));
    }

    #[test]
    fn a_bad_record_with_data_after_it_is_corruption() {
        let mut b = segment(&[b"one", b"two", b"three"]);
        b[SEGMENT_HEADER_LEN as usize + 8] ^= 0x40; // inside "one"
        let err = scan_records(&b, true, "seg").err().unwrap();
        assert!(
            matches!(&err, StorageError::Corrupt(m) if m.contains("checksum")),
            "{err}"
        );
        // A damaged length in the middle is caught as well, even one that
        // points past the end of the file.
        for bad_len in [2u8, 200] {
            let mut b = segment(&[b"one", b"two", b"three"]);
            b[SEGMENT_HEADER_LEN as usize] = bad_len;
            assert!(matches!(
                scan_records(&b, true, "seg"),
                Err(StorageError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn snapshot_files_are_checked() {
        let s = Snapshot::new(
            crate::types::LogIndex(5),
            crate::types::Term(2),
            vec![1],
            vec![7; 300],
        );
        let mut bytes = encode_snapshot(&s).unwrap();
        assert_eq!(decode_snapshot(&bytes, "s").unwrap(), s);
        bytes[100] ^= 1;
        assert!(matches!(
            decode_snapshot(&bytes, "s"),
            Err(StorageError::Corrupt(_))
        ));
        assert!(decode_snapshot(&bytes[..bytes.len() - 1], "s").is_err());
    }
}
