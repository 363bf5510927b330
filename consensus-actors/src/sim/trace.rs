//! The run trace: every delivered message and every state change a node
//! reports, folded into one stable hash.
//!
//! The hash is the replay check of the simulation: the same seed on the same
//! build yields the same sequence of events at the same virtual times, hence
//! the same [`TraceHandle::hash`]. It folds a fixed little-endian encoding
//! of each record a 64-bit word at a time (the same word hasher as
//! [`digest`]), so it does not depend on the process, the platform's hasher
//! keys or the order of any hash map. (It was FNV-1a 64 byte by byte before:
//! hashes recorded then differ.)
//!
//! Records themselves are only kept when asked for
//! ([`TraceConfig::keep_records`]), bounded to the most recent ones, and can
//! be written out as JSON lines to compare two runs record by record.

use super::digest::WordHasher;
use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;

/// Incremental FNV-1a 64-bit hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv1a64 {
    /// A hasher in its initial state.
    pub const fn new() -> Self {
        Self(FNV_OFFSET)
    }

    /// Folds `bytes` in.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    /// Folds a `u64` in (little-endian).
    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    /// Folds a string in, length-prefixed so `("ab","c")` and `("a","bc")` differ.
    pub fn write_str(&mut self, s: &str) {
        self.write_u64(s.len() as u64);
        self.write(s.as_bytes());
    }

    /// The hash so far.
    pub const fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a64::new();
    h.write(bytes);
    h.finish()
}

/// Digest of a value: a 64-bit hash of its serde data model (integers,
/// strings, lengths, variant indexes, in order; see the encoding in the
/// `digest` module's source docs), folded a word at a time without encoding
/// the value into a buffer. Equal values digest equally in every process and
/// on every platform; values of one type that differ digest differently
/// (up to 64-bit hash collisions). A value whose `Serialize` impl fails
/// digests to the FNV-1a of its error text, so the trace stays
/// deterministic; a warning is logged.
///
/// (Until this digest was introduced, it was the FNV-1a of the value's
/// MessagePack encoding: trace hashes recorded before differ.)
pub fn digest<T: Serialize + ?Sized>(value: &T) -> u64 {
    match super::digest::structural_digest(value) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "trace digest: value does not encode");
            fnv1a64(e.to_string().as_bytes())
        }
    }
}

/// What happened, in one record of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceKind {
    /// The network delivered a message to `to`'s inbox.
    Deliver {
        /// Sender.
        from: NodeId,
        /// Receiver.
        to: NodeId,
        /// [`digest`] of the message.
        digest: u64,
    },
    /// A node reported a state change.
    State {
        /// The reporting node.
        node: NodeId,
        /// What changed ("became leader", "committed", ...).
        label: String,
        /// [`digest`] of the attached value, 0 when there is none.
        digest: u64,
    },
    /// The simulation itself acted (node started or crashed, partition, faults).
    Control {
        /// A description of the action (part of the hash).
        what: String,
    },
}

/// One record of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Position in the trace, from 0.
    pub seq: u64,
    /// Virtual time since the trace started, in microseconds.
    pub at_us: u64,
    /// The event.
    #[serde(flatten)]
    pub kind: TraceKind,
    /// The trace hash after folding this record in (lets two runs be compared
    /// to find the first diverging record).
    pub hash: u64,
}

/// Which records a trace keeps in memory (the hash always covers all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TraceConfig {
    /// Keep at most this many of the most recent records (0 keeps none).
    pub keep_records: usize,
    /// Record every delivered message (on by default in simulations; turning
    /// it off leaves only state changes and control actions in the hash).
    pub skip_deliveries: bool,
}

#[derive(Debug)]
struct TraceState {
    start: Instant,
    hasher: WordHasher,
    count: u64,
    config: TraceConfig,
    kept: VecDeque<TraceRecord>,
}

impl TraceState {
    /// Microseconds of virtual time from the trace's start to `now`.
    fn micros_at(&self, now: Instant) -> u64 {
        super::clock::micros_between(self.start, now)
    }

    /// Folds one delivery record: the same words as [`fold`](Self::fold)
    /// of a [`TraceKind::Deliver`], without building the record unless it
    /// is kept (the network's per-delivery path).
    #[inline]
    fn fold_delivery(&mut self, at_us: u64, from: NodeId, to: NodeId, digest: u64) {
        if self.config.keep_records > 0 {
            self.fold(at_us, TraceKind::Deliver { from, to, digest });
            return;
        }
        let h = &mut self.hasher;
        h.write_u64(at_us);
        h.write_u64(1);
        h.write_u64(from.get());
        h.write_u64(to.get());
        h.write_u64(digest);
        self.count += 1;
    }

    /// Folds one record, at `at_us`, into the hash (and keeps it when
    /// asked to).
    fn fold(&mut self, at_us: u64, kind: TraceKind) {
        let st = self;
        let h = &mut st.hasher;
        h.write_u64(at_us);
        match &kind {
            TraceKind::Deliver { from, to, digest } => {
                h.write_u64(1);
                h.write_u64(from.get());
                h.write_u64(to.get());
                h.write_u64(*digest);
            }
            TraceKind::State {
                node,
                label,
                digest,
            } => {
                h.write_u64(2);
                h.write_u64(node.get());
                h.write_u64(label.len() as u64);
                h.write_bytes(label.as_bytes());
                h.pad_to_word();
                h.write_u64(*digest);
            }
            TraceKind::Control { what } => {
                h.write_u64(3);
                h.write_u64(what.len() as u64);
                h.write_bytes(what.as_bytes());
                h.pad_to_word();
            }
        }
        let seq = st.count;
        st.count += 1;
        let keep = st.config.keep_records;
        if keep > 0 {
            let hash = st.hasher.finish();
            if st.kept.len() == keep {
                st.kept.pop_front();
            }
            st.kept.push_back(TraceRecord {
                seq,
                at_us,
                kind,
                hash,
            });
        }
    }
}

/// Records deliveries at one instant into a trace, holding its lock (see
/// [`TraceHandle::deliveries_at`]).
pub(crate) struct DeliveryRecorder<'t> {
    state: MutexGuard<'t, TraceState>,
    at_us: u64,
    skip: bool,
}

impl DeliveryRecorder<'_> {
    /// The network delivered a message whose [`digest`] is `digest`: the
    /// same record as [`TraceHandle::record_delivery`] at this instant.
    pub(crate) fn record(&mut self, from: NodeId, to: NodeId, digest: u64) {
        if self.skip {
            return;
        }
        let at_us = self.at_us;
        self.state.fold_delivery(at_us, from, to, digest);
    }
}

/// A clonable handle on one run's trace. Protocol actors receive one in their
/// [`NodeContext`](super::NodeContext) and report state changes through it.
/// All clones feed the same hash. Cheap to clone; safe to share.
#[derive(Clone, Debug)]
pub struct TraceHandle {
    inner: Arc<Mutex<TraceState>>,
    skip_deliveries: bool,
}

impl TraceHandle {
    /// A trace whose virtual time 0 is `start`.
    pub fn new(start: Instant, config: TraceConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(TraceState {
                start,
                hasher: WordHasher::new(),
                count: 0,
                config,
                kept: VecDeque::new(),
            })),
            skip_deliveries: config.skip_deliveries,
        }
    }

    /// A trace starting now (virtual time of the current tokio clock).
    pub fn starting_now(config: TraceConfig) -> Self {
        Self::new(Instant::now(), config)
    }

    fn lock(&self) -> MutexGuard<'_, TraceState> {
        // A panic while holding the lock cannot leave the state half-written
        // in a way that matters more than the panic itself: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `node` reports a state change described by `label`.
    pub fn record(&self, node: NodeId, label: &str) {
        self.push(TraceKind::State {
            node,
            label: label.to_owned(),
            digest: 0,
        });
    }

    /// Node `node` reports a state change `label` with a value (its digest,
    /// see [`digest`], enters the hash).
    pub fn record_value<T: Serialize + ?Sized>(&self, node: NodeId, label: &str, value: &T) {
        self.push(TraceKind::State {
            node,
            label: label.to_owned(),
            digest: digest(value),
        });
    }

    /// The network delivered a message whose [`digest`] is `digest`.
    pub fn record_delivery(&self, from: NodeId, to: NodeId, digest: u64) {
        self.push(TraceKind::Deliver { from, to, digest });
    }

    /// Records deliveries made at `now` (holding the trace's lock until
    /// dropped): for the network, which delivers every message due at one
    /// instant in a row.
    pub(crate) fn deliveries_at(&self, now: Instant) -> DeliveryRecorder<'_> {
        let state = self.lock();
        let at_us = state.micros_at(now);
        DeliveryRecorder {
            state,
            at_us,
            skip: self.skip_deliveries,
        }
    }

    /// The simulation performed a control action.
    pub fn record_control(&self, what: impl Into<String>) {
        self.push(TraceKind::Control { what: what.into() });
    }

    /// Whether deliveries are being recorded.
    pub fn records_deliveries(&self) -> bool {
        !self.skip_deliveries
    }

    fn push(&self, kind: TraceKind) {
        self.push_at(super::clock::now(), kind);
    }

    fn push_at(&self, now: Instant, kind: TraceKind) {
        if self.skip_deliveries && matches!(kind, TraceKind::Deliver { .. }) {
            return;
        }
        let mut st = self.lock();
        let at_us = st.micros_at(now);
        st.fold(at_us, kind);
    }

    /// The hash of every record so far: the replay check.
    pub fn hash(&self) -> u64 {
        self.lock().hasher.finish()
    }

    /// How many records have been folded into the hash.
    pub fn len(&self) -> u64 {
        self.lock().count
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records kept in memory (the most recent
    /// [`TraceConfig::keep_records`]), oldest first.
    pub fn records(&self) -> Vec<TraceRecord> {
        self.lock().kept.iter().cloned().collect()
    }

    /// Virtual time since the trace started.
    pub fn elapsed(&self) -> tokio::time::Duration {
        Instant::now().saturating_duration_since(self.lock().start)
    }

    /// Writes the kept records as JSON lines (one object per line).
    pub fn write_jsonl<W: io::Write>(&self, mut out: W) -> io::Result<()> {
        for rec in self.records() {
            serde_json::to_writer(&mut out, &rec).map_err(io::Error::other)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        // Reference values of FNV-1a 64.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn on_paused<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn hash_depends_on_content_order_and_time() {
        on_paused(async {
            let cfg = TraceConfig {
                keep_records: 2,
                skip_deliveries: false,
            };
            let a = TraceHandle::starting_now(cfg);
            let b = TraceHandle::starting_now(cfg);
            let c = TraceHandle::starting_now(cfg);
            a.record(NodeId(1), "x");
            a.record_value(NodeId(2), "y", &5u32);
            b.record(NodeId(1), "x");
            b.record_value(NodeId(2), "y", &5u32);
            c.record_value(NodeId(2), "y", &5u32);
            c.record(NodeId(1), "x");
            assert_eq!(a.hash(), b.hash());
            assert_ne!(a.hash(), c.hash());
            tokio::time::sleep(tokio::time::Duration::from_millis(3)).await;
            a.record_delivery(NodeId(1), NodeId(2), 9);
            b.record_delivery(NodeId(1), NodeId(2), 9);
            assert_eq!(a.hash(), b.hash());
            // Same event, one millisecond apart: different hashes.
            let a_clone = a.clone();
            a_clone.record(NodeId(3), "z");
            tokio::time::sleep(tokio::time::Duration::from_millis(1)).await;
            b.record(NodeId(3), "z");
            assert_eq!(a.len(), 4);
            assert_ne!(a.hash(), b.hash());
            let kept = a.records();
            assert_eq!(kept.len(), 2);
            assert_eq!(kept[0].seq, 2);
            assert_eq!(kept[0].at_us, 3_000);
            assert_eq!(
                kept[0].kind,
                TraceKind::Deliver {
                    from: NodeId(1),
                    to: NodeId(2),
                    digest: 9
                }
            );
            assert_eq!(kept[1].at_us, 3_000);
            assert_eq!(kept[1].hash, a.hash());
            let mut out = Vec::new();
            a.write_jsonl(&mut out).expect("write");
            let text = String::from_utf8(out).expect("utf8");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2);
            let back: TraceRecord = serde_json::from_str(lines[1]).expect("parse");
            assert_eq!(back, kept[1]);
            assert!(lines[0].contains("\"kind\":\"deliver\""), "{}", lines[0]);
        });
    }

    #[test]
    fn skipping_deliveries_leaves_them_out_of_the_hash() {
        on_paused(async {
            let cfg = TraceConfig {
                keep_records: 0,
                skip_deliveries: true,
            };
            let a = TraceHandle::starting_now(cfg);
            let h0 = a.hash();
            a.record_delivery(NodeId(1), NodeId(2), 3);
            assert_eq!(a.hash(), h0);
            assert!(a.is_empty());
            a.record_control("heal");
            assert_ne!(a.hash(), h0);
            assert!(a.records().is_empty());
        });
    }
}
