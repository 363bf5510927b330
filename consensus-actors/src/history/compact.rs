//! A compact, read-only form of a [`History`] for checking large histories.
//!
//! A [`History`] holds every operation as Rust values with their own heap
//! strings (about 200 bytes per operation, plus the JSON text it was parsed
//! from when it came from a file). [`CompactHistory`] holds each operation
//! as one fixed-size record (56 bytes) and every distinct string (keys,
//! values) once, in one arena. [`CompactHistory::from_json_reader`] builds
//! it while it reads the JSON, one operation at a time, so reading a file
//! holds the records, the distinct strings and a constant buffer, never the
//! text or a tree of it.
//!
//! The checker works on this form ([`check_compact_with`](super::check_compact_with));
//! [`check_history_with`](super::check_history_with) converts a
//! [`History`] first.

use super::{History, HistoryError, ObservedOutput, OpId, Operation, Outcome};
use crate::kv::KvCommand;
use crate::types::ClientId;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;

/// The string id standing for "no string" (`None`, or no key).
pub(crate) const NO_STRING: u32 = u32::MAX;
/// `end_us` of an unknown outcome without a give-up time.
const NO_TIME: u64 = u64::MAX;

/// Distinct strings, each stored once in one arena and numbered in order of
/// first appearance.
#[derive(Clone, Default)]
struct Strings {
    text: String,
    /// String `i` is `text[ends[i - 1]..ends[i]]` (`ends[-1]` = 0).
    ends: Vec<u64>,
    /// Hash of a string -> its id (the first with that hash).
    table: HashMap<u64, u32, BuildHasherDefault<Fx>>,
    /// Next id with the same hash (`NO_STRING`: none), per id.
    same_hash: Vec<u32>,
}

/// FxHash's mixing step, one word at a time: for the interning table only
/// (lookups, never iteration order).
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ ((bytes.len() as u64) << 56));
    }

    fn write_u64(&mut self, n: u64) {
        // The table's keys are already hashes.
        self.0 = n;
    }
}

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Strings {
    fn reserve(&mut self, strings: usize, bytes: usize) {
        self.text.reserve(bytes.min(1 << 32));
        self.ends.reserve(strings);
        self.same_hash.reserve(strings);
        // Not the table: reserving it writes its control bytes.
    }

    fn get(&self, id: u32) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn intern(&mut self, s: &str) -> Result<u32, HistoryError> {
        let mut h = Fx::default();
        h.write(s.as_bytes());
        let hash = h.finish();
        if let Some(&first) = self.table.get(&hash) {
            let mut cur = first;
            while cur != NO_STRING {
                if self.get(cur) == s {
                    return Ok(cur);
                }
                cur = self.same_hash[cur as usize];
            }
        }
        let id = u32::try_from(self.ends.len())
            .ok()
            .filter(|&id| id < NO_STRING)
            .ok_or(HistoryError::TooManyStrings)?;
        self.text.push_str(s);
        self.ends.push(self.text.len() as u64);
        // Chain behind the first of this hash (collisions are rare).
        match self.table.get(&hash) {
            Some(&first) => {
                self.same_hash.push(self.same_hash[first as usize]);
                self.same_hash[first as usize] = id;
            }
            None => {
                self.same_hash.push(NO_STRING);
                self.table.insert(hash, id);
            }
        }
        Ok(id)
    }

    fn bytes(&self) -> usize {
        self.text.capacity()
            + self.ends.capacity() * 8
            + self.same_hash.capacity() * 4
            + self.table.capacity() * 13
    }
}

/// The command of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmdTag {
    /// `Put(key, a)`.
    Put,
    /// `Get(key)`.
    Get,
    /// `Delete(key)`.
    Delete,
    /// `Cas(key, expected a (NO_STRING: absent), new b)`.
    Cas,
    /// `Noop`.
    Noop,
}

/// The outcome of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutcomeTag {
    /// Ok, with the output in `output`/`out_value`/`flag`; `end_us` is the
    /// completion.
    Ok,
    /// Fail; `end_us` is the completion.
    Fail,
    /// Unknown; `end_us` is the give-up time, `NO_TIME` if none.
    Unknown,
}

/// The observed output of an `Ok` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutTag {
    /// `Ok` (also the filler of non-`Ok` outcomes).
    Ok,
    /// `Value(out_value)`.
    Value,
    /// `Deleted(flag)`.
    Deleted,
    /// `CasOk`.
    CasOk,
    /// `CasFailed(out_value)`.
    CasFailed,
    /// `CasFailedUnreported`.
    CasFailedUnreported,
}

/// One operation as a fixed-size record; strings are ids into the
/// history's arena ([`NO_STRING`] for `None`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    pub(crate) id: u64,
    pub(crate) client: u64,
    pub(crate) invoke_us: u64,
    pub(crate) end_us: u64,
    pub(crate) key: u32,
    pub(crate) a: u32,
    pub(crate) b: u32,
    pub(crate) out_value: u32,
    pub(crate) cmd: CmdTag,
    pub(crate) outcome: OutcomeTag,
    pub(crate) output: OutTag,
    pub(crate) flag: bool,
}

/// A read-only history as fixed-size records and interned strings (see the
/// [module documentation](self)).
#[derive(Clone, Default)]
pub struct CompactHistory {
    records: Vec<Record>,
    strings: Strings,
}

impl fmt::Debug for CompactHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompactHistory")
            .field("operations", &self.records.len())
            .field("strings", &self.strings.ends.len())
            .finish()
    }
}

impl CompactHistory {
    /// The compact form of `history` (which must be valid, see
    /// [`History::validate`]; an inconsistent one is converted as it is).
    pub fn from_history(history: &History) -> Result<Self, HistoryError> {
        let mut compact = Self::default();
        compact.records.reserve_exact(history.operations.len());
        for op in &history.operations {
            compact.push(op)?;
        }
        Ok(compact)
    }

    /// Reads a JSON history (schema in the [module documentation](super))
    /// from `reader`, one operation at a time, and validates it as
    /// [`History::from_json`] does.
    pub fn from_json_reader(reader: impl Read) -> Result<Self, HistoryError> {
        Self::from_json_reader_sized(reader, 0)
    }

    /// [`from_json_reader`](Self::from_json_reader) for a text of about
    /// `text_bytes` bytes (a file's length): room for as many operations as
    /// such a text can hold is reserved up front, so the records and the
    /// string arena are never regrown and copied. (Address space reserved
    /// and never written costs no memory.)
    pub fn from_json_reader_sized(
        reader: impl Read,
        text_bytes: u64,
    ) -> Result<Self, HistoryError> {
        let mut compact = Self::default();
        // An operation takes at least about 90 bytes of JSON and brings at
        // most a few short strings.
        let ops = usize::try_from(text_bytes / 90).unwrap_or(0).min(1 << 28);
        compact.records.reserve(ops);
        compact
            .strings
            .reserve(ops, usize::try_from(text_bytes / 8).unwrap_or(0));
        read_json_operations(reader, &mut compact)?;
        compact.check_ids()?;
        Ok(compact)
    }

    /// Reads a JSON history from a string (see
    /// [`from_json_reader`](Self::from_json_reader)).
    pub fn from_json(text: &str) -> Result<Self, HistoryError> {
        Self::from_json_reader(text.as_bytes())
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The bytes it holds (records and strings), for figures.
    pub fn heap_bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>() + self.strings.bytes()
    }

    /// Operation `i` (in file order) as an [`Operation`].
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn operation(&self, i: usize) -> Operation {
        let r = &self.records[i];
        let s = |id: u32| self.string(id).map(str::to_string);
        let key = || s(r.key).unwrap_or_default();
        let command = match r.cmd {
            CmdTag::Put => KvCommand::Put {
                key: key(),
                value: s(r.a).unwrap_or_default(),
            },
            CmdTag::Get => KvCommand::Get { key: key() },
            CmdTag::Delete => KvCommand::Delete { key: key() },
            CmdTag::Cas => KvCommand::Cas {
                key: key(),
                expected: s(r.a),
                new: s(r.b).unwrap_or_default(),
            },
            CmdTag::Noop => KvCommand::Noop,
        };
        let outcome = match r.outcome {
            OutcomeTag::Ok => Outcome::Ok {
                output: match r.output {
                    OutTag::Ok => ObservedOutput::Ok,
                    OutTag::Value => ObservedOutput::Value(s(r.out_value)),
                    OutTag::Deleted => ObservedOutput::Deleted(r.flag),
                    OutTag::CasOk => ObservedOutput::CasOk,
                    OutTag::CasFailed => ObservedOutput::CasFailed(s(r.out_value)),
                    OutTag::CasFailedUnreported => ObservedOutput::CasFailedUnreported,
                },
                complete_us: r.end_us,
            },
            OutcomeTag::Fail => Outcome::Fail {
                complete_us: r.end_us,
            },
            OutcomeTag::Unknown => Outcome::Unknown {
                gave_up_us: (r.end_us != NO_TIME).then_some(r.end_us),
            },
        };
        Operation {
            id: OpId(r.id),
            client: ClientId(r.client),
            command,
            invoke_us: r.invoke_us,
            outcome,
        }
    }

    /// The whole history as a [`History`].
    pub fn to_history(&self) -> History {
        History {
            operations: (0..self.len()).map(|i| self.operation(i)).collect(),
        }
    }

    pub(crate) fn records(&self) -> &[Record] {
        &self.records
    }

    /// Number of distinct strings (ids are `0..string_count()`).
    pub(crate) fn string_count(&self) -> usize {
        self.strings.ends.len()
    }

    /// The string with id `id`; `None` for [`NO_STRING`].
    pub(crate) fn string(&self, id: u32) -> Option<&str> {
        (id != NO_STRING).then(|| self.strings.get(id))
    }

    /// Appends one operation.
    pub(crate) fn push(&mut self, op: &Operation) -> Result<(), HistoryError> {
        let strings = &mut self.strings;
        let mut intern = |s: Option<&str>| s.map_or(Ok(NO_STRING), |s| strings.intern(s));
        let (cmd, key, a, b) = match &op.command {
            KvCommand::Put { key, value } => (
                CmdTag::Put,
                intern(Some(key))?,
                intern(Some(value))?,
                NO_STRING,
            ),
            KvCommand::Get { key } => (CmdTag::Get, intern(Some(key))?, NO_STRING, NO_STRING),
            KvCommand::Delete { key } => (CmdTag::Delete, intern(Some(key))?, NO_STRING, NO_STRING),
            KvCommand::Cas { key, expected, new } => (
                CmdTag::Cas,
                intern(Some(key))?,
                intern(expected.as_deref())?,
                intern(Some(new))?,
            ),
            KvCommand::Noop => (CmdTag::Noop, NO_STRING, NO_STRING, NO_STRING),
        };
        let (outcome, end_us, output, out_value, flag) = match &op.outcome {
            Outcome::Ok {
                output,
                complete_us,
            } => {
                let (tag, value, flag) = match output {
                    ObservedOutput::Ok => (OutTag::Ok, NO_STRING, false),
                    ObservedOutput::Value(v) => (OutTag::Value, intern(v.as_deref())?, false),
                    ObservedOutput::Deleted(existed) => (OutTag::Deleted, NO_STRING, *existed),
                    ObservedOutput::CasOk => (OutTag::CasOk, NO_STRING, false),
                    ObservedOutput::CasFailed(v) => {
                        (OutTag::CasFailed, intern(v.as_deref())?, false)
                    }
                    ObservedOutput::CasFailedUnreported => {
                        (OutTag::CasFailedUnreported, NO_STRING, false)
                    }
                };
                (OutcomeTag::Ok, *complete_us, tag, value, flag)
            }
            Outcome::Fail { complete_us } => {
                (OutcomeTag::Fail, *complete_us, OutTag::Ok, NO_STRING, false)
            }
            Outcome::Unknown { gave_up_us } => (
                OutcomeTag::Unknown,
                gave_up_us.unwrap_or(NO_TIME),
                OutTag::Ok,
                NO_STRING,
                false,
            ),
        };
        self.records.push(Record {
            id: op.id.0,
            client: op.client.0,
            invoke_us: op.invoke_us,
            end_us,
            key,
            a,
            b,
            out_value,
            cmd,
            outcome,
            output,
            flag,
        });
        Ok(())
    }

    /// Duplicate ids: a linear pass when ids increase in file order (what
    /// our recorder and the Jepsen import write), else a sort of a copy.
    fn check_ids(&self) -> Result<(), HistoryError> {
        if self.records.windows(2).all(|w| w[0].id < w[1].id) {
            return Ok(());
        }
        let mut ids: Vec<u64> = self.records.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        match ids.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => Err(HistoryError::DuplicateId(OpId(w[0]))),
            None => Ok(()),
        }
    }
}

/// What the streaming reader hands each operation to, in file order.
pub(crate) trait OperationSink {
    /// Room for about `n` more operations (a hint).
    fn reserve(&mut self, _n: usize) {}

    /// Takes one operation, already checked not to complete before it is
    /// invoked; an error stops the reading and is returned by
    /// [`read_json_operations`].
    fn accept(&mut self, op: Operation) -> Result<(), HistoryError>;
}

impl OperationSink for CompactHistory {
    fn reserve(&mut self, n: usize) {
        self.records.reserve(n);
    }

    fn accept(&mut self, op: Operation) -> Result<(), HistoryError> {
        self.push(&op)
    }
}

/// Reads a JSON history (schema in the [module documentation](super)) from
/// `reader`, handing each operation to `sink` as soon as it is read: the
/// text is never held. Validates every operation as
/// [`History::from_json`] does, except for duplicate ids (the sink's
/// business).
pub(crate) fn read_json_operations(
    reader: impl Read,
    sink: &mut impl OperationSink,
) -> Result<(), HistoryError> {
    let mut reading = Reading {
        sink,
        invalid: None,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let read = HistorySeed(&mut reading)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    // A validation error travels through serde as a custom error; the
    // typed one was kept aside.
    if let Some(e) = reading.invalid {
        return Err(e);
    }
    read.map_err(|e| HistoryError::Json(e.to_string()))
}

/// The sink being filled, and the first validation error.
struct Reading<'s, S> {
    sink: &'s mut S,
    invalid: Option<HistoryError>,
}

impl<S> Reading<'_, S> {
    fn fail<E: serde::de::Error>(&mut self, e: HistoryError) -> E {
        let message = e.to_string();
        self.invalid = Some(e);
        E::custom(message)
    }
}

/// Reads `{"operations": [...]}`, handing each operation on as it is read.
struct HistorySeed<'a, 's, S>(&'a mut Reading<'s, S>);

impl<'de, S: OperationSink> DeserializeSeed<'de> for HistorySeed<'_, '_, S> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: OperationSink> Visitor<'de> for HistorySeed<'_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a history object with an \"operations\" array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(field) = map.next_key::<String>()? {
            if field == "operations" {
                if seen {
                    return Err(A::Error::duplicate_field("operations"));
                }
                map.next_value_seed(OperationsSeed(&mut *self.0))?;
                seen = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !seen {
            return Err(A::Error::missing_field("operations"));
        }
        Ok(())
    }
}

struct OperationsSeed<'a, 's, S>(&'a mut Reading<'s, S>);

impl<'de, S: OperationSink> DeserializeSeed<'de> for OperationsSeed<'_, '_, S> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: OperationSink> Visitor<'de> for OperationsSeed<'_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of operations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Some(n) = seq.size_hint() {
            self.0.sink.reserve(n);
        }
        while let Some(op) = seq.next_element::<Operation>()? {
            if let Some(complete_us) = op.outcome.complete_us() {
                if complete_us < op.invoke_us {
                    let e = HistoryError::CompletesBeforeInvoke {
                        op: op.id,
                        invoke_us: op.invoke_us,
                        complete_us,
                    };
                    return Err(self.0.fail(e));
                }
            }
            if let Err(e) = self.0.sink.accept(op) {
                return Err(self.0.fail(e));
            }
        }
        Ok(())
    }
}
