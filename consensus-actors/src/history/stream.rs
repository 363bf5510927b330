//! The streaming check: a JSON history read once, in file order, checked
//! in *segments* at quiet points and forgotten segment by segment, so that
//! memory follows the longest segment, not the history.
//!
//! # Cuts
//!
//! Read the operations that constrain the model (known outcomes, and
//! unknown-outcome writes, deletes and compare-and-swaps; see
//! `linearizability::constrains`) in file order. A *quiet point* is met at
//! an operation `s` invoked after every constraining operation with a known
//! outcome read before it has completed, and not before any constraining
//! operation read before it was invoked. The operations read before `s`
//! since the last cut are the segment `P`, `s` and what follows are `S`.
//! The cut stands only if every constraining operation read later is also
//! invoked after the latest completion in `P` and not before its latest
//! invocation (else the file is not in time order and the streaming check
//! gives up, see below).
//!
//! **The cut lemma.** Let every known-outcome operation of `P` complete
//! before every constraining operation of `S` is invoked, and no operation
//! of `P` be invoked after one of `S`. Let `L_P`
//! linearize `P` together with the unknown-outcome operations carried into
//! it (invoked earlier, placed nowhere yet), starting from the value `x0`
//! the segments before left, and let it end with the key holding `x`. Let
//! `L_S` linearize `S` together with the unknown-outcome operations
//! invoked so far that no earlier segment placed, starting from `x`. Then
//! `L_P` followed by `L_S` linearizes `P` and `S` together from `x0`.
//! *Proof.* Every operation appears at most once: known ones belong to one
//! segment; an unknown-outcome one is carried into a segment only while no
//! segment before placed it. The register replays: `L_S` starts from the
//! value `L_P` ends with. Real time: a pair within one order is respected
//! by that order; for `p` in `L_P` and `s` in `L_S`, the concatenation
//! puts `p` first, which is wrong only if `s` completed before `p` was
//! invoked. `s` is either an operation of `S` (invoked no earlier than
//! any operation of `P`, `p` included, and it completes at or after its
//! invocation) or an unknown-outcome operation carried from before,
//! which never completes. Unknown-outcome operations left out of every
//! order never took effect, which their outcome allows. ∎
//!
//! So a *linearizable* verdict is built segment by segment, and it is a
//! proof: the orders are found by the in-memory checker
//! ([`check_compact_with`]) and each is replayed here on the register
//! ([`KvStore`]), with outputs and real time checked, before it is
//! accepted. The value `x` at a cut and the unknown-outcome operations
//! carried past it are all that is kept of a segment once the next one is
//! checked.
//!
//! The value a segment starts from is given to the in-memory checker as a
//! *boundary write*: a put of `x` (nothing when the key is absent, which is
//! where every check starts) completing just before the segment's first
//! invocation. Real time puts every known-outcome operation of the segment
//! after it; an unknown-outcome operation placed before it changed nothing
//! the segment observes (the boundary write overwrites it) and counts as
//! not placed.
//!
//! # When the cut loses something
//!
//! The converse does not hold: `P` may have several linearizations ending
//! with different values (two writes invoked and completed together last,
//! which is how a simulated cluster's batches look), and `S` may fit only
//! some. So every check also notes, from the order it found, the value and
//! the carried operations at the segment's *last* quiet point inside it
//! (the lemma holds at every quiet point, not only at cuts), and keeps the
//! operations after that point. When the next segment has no
//! linearization from the value its predecessor ended with, it is checked
//! again together with those kept operations, from the value noted there:
//! that check is exact about the cut that failed, and costs about one
//! segment more. The replay checks that every order it takes a value from
//! places the operations before the quiet point first (real time forces
//! it; a file out of order is caught before, see below).
//!
//! If that fails too, or a segment is undecided, or the file is not in
//! time order (a constraining operation invoked at or before the latest
//! completion before a quiet point already passed), or its ids do not
//! increase (duplicates could not be told apart without keeping them
//! all), the streaming check gives up with a reason and the caller checks
//! the whole history in memory, which decides every case. A *not
//! linearizable* verdict is never given here: it always comes from the
//! whole history. So the streaming check cannot change a verdict, only
//! who gives it.
//!
//! The unknown-outcome operations carried are those no segment placed;
//! past [`StreamOptions::max_carried_unknown`] per key the oldest are left
//! out (they never took effect, which is sound for a linearizable verdict;
//! if one was needed, a segment fails and the whole history decides).
//!
//! Budgets: each segment gets the steps per key the key has left
//! ([`CheckOptions::max_steps_per_key`] minus the most any key spent so
//! far), the memory budget and the interrupt; a segment that runs out is
//! undecided, so the whole history is checked with the full budget.

use super::compact::{read_json_operations, OperationSink};
use super::linearizability::check_compact_with;
use super::{
    CheckOptions, CompactHistory, HistoryError, KeyReport, LinearizabilityReport, ObservedOutput,
    OpId, Operation, Outcome, Reductions, Verdict,
};
use crate::kv::{KvCommand, KvStore, StateMachine};
use crate::types::ClientId;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

/// The default of [`StreamOptions::min_segment_ops`].
pub const DEFAULT_MIN_SEGMENT_OPS: usize = 1 << 14;
/// The default of [`StreamOptions::max_carried_unknown`].
pub const DEFAULT_MAX_CARRIED_UNKNOWN: usize = 4096;
/// Ids of boundary writes: `SYNTHETIC_IDS + k` for the `k`-th key. A file
/// with ids this large is checked in memory.
const SYNTHETIC_IDS: u64 = 1 << 62;

/// How [`check_json_streaming`] cuts a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// A segment is cut at the first quiet point after it holds this many
    /// constraining operations (at least 1). Memory follows the longest
    /// segment; fewer, longer segments mean fewer checks.
    pub min_segment_ops: usize,
    /// Unknown-outcome operations carried past cuts per key, at most (the
    /// oldest are left out first).
    pub max_carried_unknown: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            min_segment_ops: DEFAULT_MIN_SEGMENT_OPS,
            max_carried_unknown: DEFAULT_MAX_CARRIED_UNKNOWN,
        }
    }
}

/// What the streaming check did, for figures and `--json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// Segments decided.
    pub segments: u64,
    /// Segments that had no linearization from the value the one before
    /// ended with and were checked again from that one's last quiet point.
    pub merged: u64,
    /// The most operations checked at once (a segment, with what was kept
    /// of the one before when merged, boundary writes and carried
    /// operations included).
    pub largest_segment_ops: usize,
}

/// The result of [`check_json_streaming`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Streamed {
    /// Linearizable, proved segment by segment. The report has no
    /// linearization per key ([`KeyReport::linearization`] is `None`: it
    /// would be as long as the history).
    Decided {
        /// The verdict and the per-key figures, summed over segments.
        report: LinearizabilityReport,
        /// How it was cut.
        stats: StreamStats,
    },
    /// The streaming check cannot decide this history: check it whole
    /// ([`CompactHistory::from_json_reader`] and [`check_compact_with`]).
    NeedsWholeHistory {
        /// Why, for people.
        reason: String,
        /// How far it got.
        stats: StreamStats,
    },
}

/// Checks a JSON history read from `reader` in segments (see the [module
/// documentation](self)); errors are those of
/// [`CompactHistory::from_json_reader`] met before it gives up.
pub fn check_json_streaming(
    reader: impl Read,
    options: &CheckOptions<'_>,
    stream: &StreamOptions,
) -> Result<Streamed, HistoryError> {
    let mut streamer = Streamer::new(options, stream);
    let read = read_json_operations(reader, &mut streamer);
    if let Some(reason) = streamer.stop.take() {
        return Ok(Streamed::NeedsWholeHistory {
            reason,
            stats: streamer.stats,
        });
    }
    read?;
    Ok(match streamer.finish() {
        Ok(report) => Streamed::Decided {
            report,
            stats: streamer.stats,
        },
        Err(reason) => Streamed::NeedsWholeHistory {
            reason,
            stats: streamer.stats,
        },
    })
}

/// Whether an operation constrains the model (as the in-memory checker
/// decides it).
fn constrains(op: &Operation) -> bool {
    match op.outcome {
        Outcome::Ok { .. } => true,
        Outcome::Fail { .. } => false,
        Outcome::Unknown { .. } => !matches!(op.command, KvCommand::Get { .. } | KvCommand::Noop),
    }
}

/// A key at a cut.
#[derive(Clone, Debug, Default)]
struct KeyState {
    /// The value it holds.
    value: Option<String>,
    /// Unknown-outcome operations on it that no segment placed, by id.
    carried: Vec<Operation>,
}

/// A key's figures summed over the checks.
#[derive(Clone, Copy, Debug, Default)]
struct Totals {
    operations: usize,
    steps: u64,
    search_bytes: u64,
    reductions: Reductions,
    /// Checks summed (0: none yet).
    checks: u64,
}

impl Totals {
    fn add_check(&mut self, report: &KeyReport) {
        self.steps += report.steps;
        self.search_bytes = self.search_bytes.max(report.search_bytes);
        let (r, o) = (&mut self.reductions, &report.reductions);
        r.unique_values = (r.unique_values || self.checks == 0) && o.unique_values;
        r.unwritten_observation |= o.unwritten_observation;
        r.anonymised_writes += o.anonymised_writes;
        r.cas_dropped += o.cas_dropped;
        self.checks += 1;
    }
}

/// The last segment checked: kept so that the next one can be checked
/// together with it.
struct Segment {
    start: BTreeMap<String, KeyState>,
    ops: Vec<Operation>,
}

/// What a check of one or two segments leaves.
struct Decided {
    /// The keys at the end.
    end: BTreeMap<String, KeyState>,
    /// The keys at the cut before the last part, as the order found leaves
    /// them.
    mid: BTreeMap<String, KeyState>,
}

struct Streamer<'o, 'a> {
    options: &'o CheckOptions<'a>,
    stream: StreamOptions,
    /// Every key named, constraining or not (each gets a report), with its
    /// figures.
    keys: BTreeMap<String, Totals>,
    /// The keys at the start of `window`.
    state: BTreeMap<String, KeyState>,
    /// Constraining operations read since the last cut.
    window: Vec<Operation>,
    prev: Option<Segment>,
    /// The latest completion of a constraining operation read so far.
    latest_completion: Option<u64>,
    /// The latest invocation of a constraining operation read so far.
    latest_invoke: u64,
    /// At the last quiet point, the latest completion and invocation
    /// before it: every constraining operation read after must be invoked
    /// after the one and not before the other.
    cut_bound: Option<(Option<u64>, u64)>,
    /// The window's last quiet point (an index into it; 0: none).
    last_quiet: usize,
    last_id: Option<u64>,
    operations: usize,
    stats: StreamStats,
    stop: Option<String>,
}

impl OperationSink for Streamer<'_, '_> {
    fn accept(&mut self, op: Operation) -> Result<(), HistoryError> {
        match self.take(op) {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.stop = Some(reason);
                Err(HistoryError::Json(
                    "the streaming check stopped".to_string(),
                ))
            }
        }
    }
}

impl<'o, 'a> Streamer<'o, 'a> {
    fn new(options: &'o CheckOptions<'a>, stream: &StreamOptions) -> Self {
        Self {
            options,
            stream: StreamOptions {
                min_segment_ops: stream.min_segment_ops.max(1),
                max_carried_unknown: stream.max_carried_unknown,
            },
            keys: BTreeMap::new(),
            state: BTreeMap::new(),
            window: Vec::new(),
            prev: None,
            latest_completion: None,
            latest_invoke: 0,
            cut_bound: None,
            last_quiet: 0,
            last_id: None,
            operations: 0,
            stats: StreamStats::default(),
            stop: None,
        }
    }

    /// One operation, in file order.
    fn take(&mut self, op: Operation) -> Result<(), String> {
        self.operations += 1;
        if self.last_id.is_some_and(|last| op.id.0 <= last) || op.id.0 >= SYNTHETIC_IDS {
            return Err(format!(
                "operation ids do not increase in file order (at {})",
                op.id
            ));
        }
        self.last_id = Some(op.id.0);
        let constrains = constrains(&op);
        if let Some(key) = op.command.key() {
            let totals = match self.keys.get_mut(key) {
                Some(t) => t,
                None => self.keys.entry(key.to_string()).or_default(),
            };
            totals.operations += usize::from(constrains);
        }
        if !constrains {
            return Ok(());
        }
        let after = |(completed, invoked): (Option<u64>, u64)| {
            completed.is_none_or(|c| op.invoke_us > c) && op.invoke_us >= invoked
        };
        if self.cut_bound.is_some_and(|bound| !after(bound)) {
            return Err(format!(
                "the file is not in time order: {} is listed after a quiet point it \
                 precedes",
                op.id
            ));
        }
        if after((self.latest_completion, self.latest_invoke)) {
            // A quiet point: a cut, or the last place inside the window
            // where the next check may start over.
            if self.window.len() >= self.stream.min_segment_ops {
                self.cut()?;
            } else {
                self.last_quiet = self.window.len();
            }
            self.cut_bound = Some((self.latest_completion, self.latest_invoke));
        }
        if let Outcome::Ok { complete_us, .. } = op.outcome {
            self.latest_completion = Some(
                self.latest_completion
                    .map_or(complete_us, |c| c.max(complete_us)),
            );
        }
        self.latest_invoke = self.latest_invoke.max(op.invoke_us);
        self.window.push(op);
        Ok(())
    }

    /// Checks the window from the keys at its start or, when that fails,
    /// together with what is kept of the segment before it, from the keys
    /// at its start. Either way the window's part after its last quiet
    /// point is kept for the next cut, with the keys there as the order
    /// found leaves them.
    fn cut(&mut self) -> Result<(), String> {
        let mut window = std::mem::take(&mut self.window);
        let quiet = std::mem::take(&mut self.last_quiet);
        let state = std::mem::take(&mut self.state);
        let (head, tail) = window.split_at(quiet);
        let decided = match self.decide(&state, &[head, tail]) {
            Ok(decided) => decided,
            Err(reason) => {
                let Some(prev) = self.prev.take() else {
                    return Err(reason);
                };
                tracing::debug!(%reason, "segment checked again with the one before");
                let decided = self.decide(&prev.start, &[&prev.ops, head, tail])?;
                self.stats.merged += 1;
                decided
            }
        };
        self.state = decided.end;
        self.stats.segments += 1;
        self.prev = Some(Segment {
            start: decided.mid,
            ops: window.split_off(quiet),
        });
        Ok(())
    }

    /// The last window, then the report.
    fn finish(&mut self) -> Result<LinearizabilityReport, String> {
        if !self.window.is_empty() {
            self.cut()?;
        }
        let per_key: Vec<KeyReport> = self
            .keys
            .iter()
            .map(|(key, t)| KeyReport {
                key: key.clone(),
                operations: t.operations,
                verdict: Verdict::Linearizable,
                steps: t.steps,
                stopped_by: None,
                search_bytes: t.search_bytes,
                reductions: t.reductions,
                linearization: None,
                explanation: None,
            })
            .collect();
        Ok(LinearizabilityReport {
            verdict: Verdict::Linearizable,
            linearizable: true,
            operations: self.operations,
            keys: per_key.len(),
            steps: per_key.iter().map(|k| k.steps).sum(),
            per_key,
        })
    }

    /// Checks `parts` (one or two segments of constraining operations, in
    /// file order) from the keys as `start` gives them, and replays each
    /// key's linearization (see the module documentation): the keys at the
    /// end (and between the two segments), or why not.
    fn decide(
        &mut self,
        start: &BTreeMap<String, KeyState>,
        parts: &[&[Operation]],
    ) -> Result<Decided, String> {
        let real = || parts.iter().flat_map(|p| p.iter());
        let first_invoke = real().map(|op| op.invoke_us).min().unwrap_or(0);
        // Boundary writes: a put of each present key's value, completing
        // just before the first invocation.
        let mut boundary: Vec<Operation> = Vec::new();
        let mut boundary_of: HashMap<&str, u64> = HashMap::new();
        for (k, (key, state)) in start.iter().enumerate() {
            let Some(value) = &state.value else { continue };
            let Some(at) = first_invoke.checked_sub(1) else {
                return Err("a segment starts at time 0 after a cut".to_string());
            };
            let id = SYNTHETIC_IDS + k as u64;
            boundary.push(Operation {
                id: OpId(id),
                client: ClientId(u64::MAX),
                command: KvCommand::put(key.clone(), value.clone()),
                invoke_us: at,
                outcome: Outcome::Ok {
                    output: ObservedOutput::Ok,
                    complete_us: at,
                },
            });
            boundary_of.insert(key.as_str(), id);
        }
        let carried = || start.values().flat_map(|s| s.carried.iter());
        let all = || boundary.iter().chain(carried()).chain(real());
        let mut compact = CompactHistory::default();
        for op in all() {
            compact.push(op).map_err(|e| e.to_string())?;
        }
        self.stats.largest_segment_ops = self.stats.largest_segment_ops.max(compact.len());
        let spent = self.keys.values().map(|t| t.steps).max().unwrap_or(0);
        let mut options = *self.options;
        if let Some(max) = options.max_steps_per_key {
            options = options.with_max_steps_per_key(max.saturating_sub(spent));
        }
        let report = check_compact_with(&compact, &options);
        drop(compact);
        for kr in &report.per_key {
            if let Some(t) = self.keys.get_mut(&kr.key) {
                t.add_check(kr);
            }
        }
        if report.verdict != Verdict::Linearizable {
            let bad = report
                .per_key
                .iter()
                .find(|k| k.verdict != Verdict::Linearizable);
            let key = bad.map_or("?", |k| k.key.as_str());
            let why = bad
                .and_then(|k| k.explanation.as_ref())
                .map_or_else(String::new, |e| format!(" ({})", e.summary));
            return Err(format!(
                "key {key:?}: a segment starting at {first_invoke} us is {} from the value \
                 the segments before left{why}",
                report.verdict
            ));
        }
        // Per key: the known-outcome operations of the first part and of
        // all, and the unknown-outcome ones (carried first, then the
        // parts', by id) with the part they come from (0: carried or the
        // first).
        let mut known_of: HashMap<&str, [usize; 2]> = HashMap::new();
        let mut unknown_of: HashMap<&str, Vec<(&Operation, bool)>> = HashMap::new();
        // Everything before the last part is "first" (the cut before the
        // last part is the one `mid` describes).
        let first_part = parts.iter().rev().skip(1).map(|p| p.len()).sum::<usize>();
        let tagged = carried()
            .map(|op| (op, false))
            .chain(real().enumerate().map(|(i, op)| (op, i >= first_part)));
        for (op, later) in tagged {
            let Some(key) = op.command.key() else {
                continue;
            };
            if op.outcome.complete_us().is_some() {
                let known = known_of.entry(key).or_default();
                known[0] += usize::from(!later);
                known[1] += 1;
            } else {
                unknown_of.entry(key).or_default().push((op, later));
            }
        }
        let last_part = parts
            .last()
            .map_or_else(HashSet::new, |p| p.iter().map(|op| op.id.0).collect());
        let by_id: HashMap<u64, &Operation> = all().map(|op| (op.id.0, op)).collect();
        let mut end = start.clone();
        let mut mid = start.clone();
        let cap = self.stream.max_carried_unknown;
        // The unknown-outcome operations not placed, of those given.
        let unplaced = |ops: &[(&Operation, bool)], placed: &HashSet<u64>, upto_first: bool| {
            let mut left: Vec<Operation> = ops
                .iter()
                .filter(|(op, later)| !(placed.contains(&op.id.0) || upto_first && *later))
                .map(|(op, _)| (*op).clone())
                .collect();
            left.drain(..left.len().saturating_sub(cap));
            left
        };
        for kr in &report.per_key {
            let key = kr.key.as_str();
            let order = kr
                .linearization
                .as_deref()
                .ok_or_else(|| format!("key {key:?}: no linearization"))?;
            let known = known_of.get(key).copied().unwrap_or_default();
            let given = Given {
                by_id: &by_id,
                last_part: &last_part,
                boundary: boundary_of.get(key).copied(),
                known,
            };
            let replayed = replay(key, order, &given)?;
            let unknown = unknown_of.get(key).map_or(&[][..], Vec::as_slice);
            end.insert(
                kr.key.clone(),
                KeyState {
                    value: replayed.end,
                    carried: unplaced(unknown, &replayed.placed, false),
                },
            );
            mid.insert(
                kr.key.clone(),
                KeyState {
                    value: replayed.mid,
                    carried: unplaced(unknown, &replayed.placed_by_mid, true),
                },
            );
        }
        Ok(Decided { end, mid })
    }
}

/// What [`replay`] found.
struct Replayed {
    /// The key's value at the end.
    end: Option<String>,
    /// The unknown-outcome operations placed.
    placed: HashSet<u64>,
    /// The value right after the last known-outcome operation of the first
    /// part (the cut between two parts).
    mid: Option<String>,
    /// The unknown-outcome operations placed up to there.
    placed_by_mid: HashSet<u64>,
}

/// What [`replay`] checks an order against.
struct Given<'g> {
    by_id: &'g HashMap<u64, &'g Operation>,
    /// The ids of the last part's operations.
    last_part: &'g HashSet<u64>,
    /// The key's boundary write, if any.
    boundary: Option<u64>,
    /// The known-outcome operations of the key before the last part, and
    /// in all.
    known: [usize; 2],
}

/// Replays a key's linearization from its boundary write (if any) on the
/// register: every known-outcome operation given exactly once, after the
/// boundary write, each output as observed, real time respected, and those
/// of the last part after all others. Also gives the value at the cut
/// before the last part (right after the last known-outcome operation
/// before it).
fn replay(key: &str, order: &[OpId], given: &Given<'_>) -> Result<Replayed, String> {
    let Given {
        by_id,
        last_part,
        boundary,
        known,
    } = *given;
    let bad = |why: &str| Err(format!("key {key:?}: the segment's order {why}"));
    let from = match boundary {
        Some(id) => match order.iter().position(|op| op.0 == id) {
            Some(p) => p + 1,
            None => return bad("leaves out the boundary write"),
        },
        None => 0,
    };
    if order[..from].iter().any(|id| {
        Some(id.0) != boundary
            && by_id
                .get(&id.0)
                .is_none_or(|op| op.outcome.complete_us().is_some())
    }) {
        return bad("puts an operation with a known outcome before the boundary write");
    }
    let mut store = KvStore::default();
    if let Some(op) = boundary.and_then(|id| by_id.get(&id)) {
        store.apply(&op.command);
    }
    let mut placed = HashSet::new();
    let mut seen = HashSet::new();
    let mut seen_known = 0usize;
    let mut latest_invoke = 0u64;
    let mut mid = (known[0] == 0).then(|| (store.get(key).map(str::to_string), HashSet::new()));
    for id in &order[from..] {
        let Some(op) = by_id.get(&id.0) else {
            return bad("names an operation it was not given");
        };
        if op.command.key() != Some(key) {
            return bad("names an operation of another key");
        }
        if !seen.insert(id.0) {
            return bad("places an operation twice");
        }
        let output = store.apply(&op.command);
        match &op.outcome {
            Outcome::Ok {
                output: observed,
                complete_us,
            } => {
                if *complete_us < latest_invoke {
                    return bad("breaks real time");
                }
                if !observed.matches(&output) {
                    return bad("does not replay");
                }
                seen_known += 1;
                if (seen_known <= known[0]) == last_part.contains(&id.0) {
                    return bad("mixes the parts");
                }
                if seen_known == known[0] {
                    mid = Some((store.get(key).map(str::to_string), placed.clone()));
                }
            }
            Outcome::Unknown { .. } => {
                placed.insert(id.0);
            }
            Outcome::Fail { .. } => return bad("places a failed operation"),
        }
        latest_invoke = latest_invoke.max(op.invoke_us);
    }
    if seen_known != known[1] {
        return bad("does not place every operation with a known outcome once");
    }
    let (mid, placed_by_mid) = mid.unwrap_or_default();
    Ok(Replayed {
        end: store.get(key).map(str::to_string),
        placed,
        mid,
        placed_by_mid,
    })
}
