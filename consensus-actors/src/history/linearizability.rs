//! The linearizability checker for key-value histories.
//!
//! # Algorithm
//!
//! The history is first split by key: commands on different keys commute and
//! the key-value model is the product of one register per key, so the
//! history is linearizable exactly when each per-key sub-history is
//! (P-compositionality, Horn & Kroening 2015). `Noop`, failed operations and
//! reads with an unknown outcome constrain nothing and are left out.
//!
//! Each sub-history is checked by the search of Wing & Gong (1993) with
//! Lowe's "just-in-time linearization" and memo (Lowe 2017), as Porcupine
//! does it. Invocations and completions are laid out as one list of entries
//! in time order (invocations first at equal times, so equal timestamps mean
//! "concurrent"). The search walks the list from the front: every invocation
//! met before the first completion is an operation that may take effect now.
//! It tries each in turn: if applying it to the current register value gives
//! the output the client observed, and the pair (set of operations taken
//! effect, new register value) has not been seen before, the operation is
//! *linearized*: its two entries are unlinked from the list (dancing links)
//! and the walk restarts from the front. Reaching a completion means the
//! operation it closes must have taken effect already but cannot, so the
//! search backtracks: the last linearized operation is relinked and the walk
//! resumes after it. The sub-history is linearizable when every operation
//! with a known outcome is linearized (operations with an unknown outcome
//! complete at +infinity with an unconstrained output, so they can always be
//! placed at the end); it is not when backtracking runs out.
//!
//! The memo makes the search visit each (linearized set, value) pair at most
//! once; the set is a bitset keyed by an incrementally maintained Zobrist
//! hash. The search is deterministic: same history, same steps, same answer.
//! A step budget per key (and an optional interrupt callback for wall-clock
//! limits, polled every few thousand steps) turns a search that would take
//! too long into an [`Verdict::Unknown`] verdict.

use super::{History, ObservedOutput, OpId, Operation, Outcome};
use crate::kv::KvCommand;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// The default step budget per key of [`CheckOptions::default`]: a few
/// seconds of search at most, far more than any history of a few thousand
/// operations per key that is not adversarial needs.
pub const DEFAULT_MAX_STEPS_PER_KEY: u64 = 20_000_000;

/// How often (in search steps) the interrupt callback is polled.
const INTERRUPT_POLL_STEPS: u64 = 4096;

/// Limits on the search.
#[derive(Clone, Copy)]
pub struct CheckOptions<'a> {
    /// Search steps allowed per key before its verdict becomes
    /// [`Verdict::Unknown`] (`None`: unlimited).
    pub max_steps_per_key: Option<u64>,
    /// Polled every few thousand steps; when it returns `true` the search
    /// stops and every key not yet decided gets [`Verdict::Unknown`]. This is
    /// how a caller imposes a wall-clock deadline without the checker reading
    /// a clock.
    pub interrupt: Option<&'a dyn Fn() -> bool>,
}

impl Default for CheckOptions<'_> {
    fn default() -> Self {
        Self {
            max_steps_per_key: Some(DEFAULT_MAX_STEPS_PER_KEY),
            interrupt: None,
        }
    }
}

impl<'a> CheckOptions<'a> {
    /// No step budget and no interrupt: the search runs to the end.
    pub fn unlimited() -> Self {
        Self {
            max_steps_per_key: None,
            interrupt: None,
        }
    }

    /// These options with a step budget per key.
    #[must_use]
    pub fn with_max_steps_per_key(mut self, steps: u64) -> Self {
        self.max_steps_per_key = Some(steps);
        self
    }

    /// These options with an interrupt callback.
    #[must_use]
    pub fn with_interrupt(mut self, interrupt: &'a dyn Fn() -> bool) -> Self {
        self.interrupt = Some(interrupt);
        self
    }
}

impl fmt::Debug for CheckOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckOptions")
            .field("max_steps_per_key", &self.max_steps_per_key)
            .field("interrupt", &self.interrupt.map(|_| "<callback>"))
            .finish()
    }
}

/// The answer for a history or one key of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists.
    NotLinearizable,
    /// The search was stopped (budget or interrupt) before it could tell.
    Unknown,
}

/// Why a key's sub-history is not linearizable: the deepest point the search
/// reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The longest sequence of operations that could be linearized, in
    /// linearization order.
    pub longest_prefix: Vec<OpId>,
    /// The key's value after that prefix.
    pub value_after_prefix: Option<String>,
    /// The operation that had to take effect next (its completion came
    /// next) but could not, whichever pending operation was put before it.
    pub blocked: OpId,
    /// The operations that could have taken effect at that point (invoked,
    /// not yet linearized), the blocked one included.
    pub candidates: Vec<OpId>,
    /// A one-paragraph account for people.
    pub summary: String,
}

/// The result for one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    /// The key.
    pub key: String,
    /// Operations on the key that constrain it (failed operations and reads
    /// with unknown outcome excluded).
    pub operations: usize,
    /// The verdict.
    pub verdict: Verdict,
    /// Search steps spent.
    pub steps: u64,
    /// For [`Verdict::NotLinearizable`], why.
    pub explanation: Option<Explanation>,
}

/// The result of [`check_history`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinearizabilityReport {
    /// Overall: not linearizable if any key is not, else unknown if any key
    /// is unknown, else linearizable.
    pub verdict: Verdict,
    /// `verdict == Verdict::Linearizable`.
    pub linearizable: bool,
    /// Operations in the history (all outcomes, `Noop` included).
    pub operations: usize,
    /// Distinct keys in the history.
    pub keys: usize,
    /// Search steps spent over all keys.
    pub steps: u64,
    /// One report per key, in key order.
    pub per_key: Vec<KeyReport>,
}

impl LinearizabilityReport {
    /// The keys whose sub-history is not linearizable.
    pub fn violations(&self) -> impl Iterator<Item = &KeyReport> {
        self.per_key
            .iter()
            .filter(|k| k.verdict == Verdict::NotLinearizable)
    }
}

impl fmt::Display for LinearizabilityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {} operations, {} keys, {} search steps",
            self.verdict, self.operations, self.keys, self.steps
        )?;
        for key in &self.per_key {
            match (&key.verdict, &key.explanation) {
                (Verdict::NotLinearizable, Some(e)) => write!(f, "\n  {}", e.summary)?,
                (Verdict::Unknown, _) => write!(
                    f,
                    "\n  key {:?}: undecided after {} steps",
                    key.key, key.steps
                )?,
                _ => {}
            }
        }
        Ok(())
    }
}

/// Checks `history` with the default [`CheckOptions`].
pub fn check_history(history: &History) -> LinearizabilityReport {
    check_history_with(history, &CheckOptions::default())
}

/// Checks `history` for linearizability against the key-value model.
pub fn check_history_with(history: &History, options: &CheckOptions<'_>) -> LinearizabilityReport {
    let mut partitions: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &history.operations {
        let Some(key) = op.command.key() else {
            continue;
        };
        let ops = partitions.entry(key).or_default();
        if constrains(op) {
            ops.push(op);
        }
    }
    let keys = partitions.len();
    let per_key: Vec<KeyReport> = partitions
        .into_iter()
        .map(|(key, ops)| check_key(key, &ops, options))
        .collect();
    let verdict = if per_key
        .iter()
        .any(|k| k.verdict == Verdict::NotLinearizable)
    {
        Verdict::NotLinearizable
    } else if per_key.iter().any(|k| k.verdict == Verdict::Unknown) {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    };
    let report = LinearizabilityReport {
        verdict,
        linearizable: verdict == Verdict::Linearizable,
        operations: history.operations.len(),
        keys,
        steps: per_key.iter().map(|k| k.steps).sum(),
        per_key,
    };
    tracing::debug!(verdict = ?report.verdict, operations = report.operations, keys, steps = report.steps, "history checked");
    report
}

/// Whether an operation constrains the model at all.
fn constrains(op: &Operation) -> bool {
    match op.outcome {
        Outcome::Ok { .. } => true,
        Outcome::Fail { .. } => false,
        // It may or may not have happened and its output is unknown: only
        // a command that writes can influence what others observe.
        Outcome::Unknown { .. } => !op.command.is_read_only(),
    }
}

/// Value ids of one key: 0 is "absent", others index `names`.
struct Values<'h> {
    ids: HashMap<&'h str, u32>,
    names: Vec<Option<&'h str>>,
}

impl<'h> Values<'h> {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
            names: vec![None],
        }
    }

    fn id(&mut self, value: Option<&'h str>) -> u32 {
        let Some(value) = value else {
            return ABSENT;
        };
        let next = self.names.len() as u32;
        *self.ids.entry(value).or_insert_with(|| {
            self.names.push(Some(value));
            next
        })
    }

    fn name(&self, id: u32) -> Option<String> {
        self.names
            .get(id as usize)
            .copied()
            .flatten()
            .map(str::to_string)
    }
}

const ABSENT: u32 = 0;
const NIL: u32 = u32::MAX;

/// A command on one key, values interned.
#[derive(Clone, Copy, Debug)]
enum Cmd {
    Put(u32),
    Get,
    Delete,
    Cas { expected: u32, new: u32 },
}

/// What the model returns, values interned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Ok,
    Value(u32),
    Deleted(bool),
    CasOk,
    CasFailed(u32),
}

/// What the client observed, values interned.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Unknown outcome: anything goes.
    Any,
    Exactly(Out),
    /// A failed compare-and-swap whose found value was not reported.
    AnyCasFailure,
}

impl Expect {
    fn allows(self, out: Out) -> bool {
        match self {
            Self::Any => true,
            Self::Exactly(expected) => expected == out,
            Self::AnyCasFailure => matches!(out, Out::CasFailed(_)),
        }
    }
}

/// The register model of one key: applies `cmd` to `state`.
fn step(state: u32, cmd: Cmd) -> (u32, Out) {
    match cmd {
        Cmd::Put(v) => (v, Out::Ok),
        Cmd::Get => (state, Out::Value(state)),
        Cmd::Delete => (ABSENT, Out::Deleted(state != ABSENT)),
        Cmd::Cas { expected, new } if state == expected => (new, Out::CasOk),
        Cmd::Cas { .. } => (state, Out::CasFailed(state)),
    }
}

/// One operation of a sub-history, in the search's terms.
#[derive(Clone, Copy, Debug)]
struct SeqOp {
    cmd: Cmd,
    expect: Expect,
    invoke_us: u64,
    /// `None`: completes at +infinity (unknown outcome).
    complete_us: Option<u64>,
}

impl SeqOp {
    fn new<'h>(op: &'h Operation, values: &mut Values<'h>) -> Self {
        let cmd = match &op.command {
            KvCommand::Put { value, .. } => Cmd::Put(values.id(Some(value))),
            KvCommand::Get { .. } => Cmd::Get,
            KvCommand::Delete { .. } => Cmd::Delete,
            KvCommand::Cas { expected, new, .. } => Cmd::Cas {
                expected: values.id(expected.as_deref()),
                new: values.id(Some(new)),
            },
            // Noop has no key and never reaches a partition; treat it as a
            // read of this key with an unconstrained output if it did.
            KvCommand::Noop => Cmd::Get,
        };
        let (expect, complete_us) = match &op.outcome {
            Outcome::Ok {
                output,
                complete_us,
            } => {
                let expect = match output {
                    ObservedOutput::Ok => Expect::Exactly(Out::Ok),
                    ObservedOutput::Value(v) => {
                        Expect::Exactly(Out::Value(values.id(v.as_deref())))
                    }
                    ObservedOutput::Deleted(existed) => Expect::Exactly(Out::Deleted(*existed)),
                    ObservedOutput::CasOk => Expect::Exactly(Out::CasOk),
                    ObservedOutput::CasFailed(v) => {
                        Expect::Exactly(Out::CasFailed(values.id(v.as_deref())))
                    }
                    ObservedOutput::CasFailedUnreported => Expect::AnyCasFailure,
                };
                // An inconsistent history (completion before invocation) is
                // read as an instantaneous operation.
                (expect, Some((*complete_us).max(op.invoke_us)))
            }
            Outcome::Fail { .. } | Outcome::Unknown { .. } => (Expect::Any, None),
        };
        Self {
            cmd,
            expect,
            invoke_us: op.invoke_us,
            complete_us,
        }
    }
}

fn check_key(key: &str, ops: &[&Operation], options: &CheckOptions<'_>) -> KeyReport {
    let mut values = Values::new();
    let seq: Vec<SeqOp> = ops.iter().map(|op| SeqOp::new(op, &mut values)).collect();
    let mut search = Search::new(&seq);
    let outcome = search.run(options);
    let steps = search.steps;
    let (verdict, explanation) = match outcome {
        SearchOutcome::Linearizable => (Verdict::Linearizable, None),
        SearchOutcome::Stopped => (Verdict::Unknown, None),
        SearchOutcome::Violation(deepest) => {
            let explanation = explain(key, ops, &values, &deepest);
            tracing::debug!(key, summary = %explanation.summary, "not linearizable");
            (Verdict::NotLinearizable, Some(explanation))
        }
    };
    KeyReport {
        key: key.to_string(),
        operations: ops.len(),
        verdict,
        steps,
        explanation,
    }
}

fn explain(key: &str, ops: &[&Operation], values: &Values<'_>, deepest: &Deepest) -> Explanation {
    let id = |i: u32| ops[i as usize].id;
    let longest_prefix: Vec<OpId> = deepest.prefix.iter().map(|&i| id(i)).collect();
    let value_after_prefix = values.name(deepest.state);
    let blocked = ops[deepest.blocked as usize];
    let candidates: Vec<OpId> = deepest.candidates.iter().map(|&i| id(i)).collect();
    let others: Vec<String> = deepest
        .candidates
        .iter()
        .filter(|&&i| i != deepest.blocked)
        .map(|&i| ops[i as usize].to_string())
        .collect();
    let value = match &value_after_prefix {
        Some(v) => format!("{v:?}"),
        None => "absent".to_string(),
    };
    let summary = format!(
        "key {key:?} is not linearizable: the longest linearizable prefix has {} of its {} \
         operations and leaves the value {value}; then {blocked} must take effect before it \
         returns but cannot{}",
        longest_prefix.len(),
        ops.len(),
        if others.is_empty() {
            String::new()
        } else {
            format!(", whichever of these goes first: {}", others.join("; "))
        }
    );
    Explanation {
        longest_prefix,
        value_after_prefix,
        blocked: blocked.id,
        candidates,
        summary,
    }
}

/// The deepest dead end of a failed search.
#[derive(Clone, Debug, Default)]
struct Deepest {
    /// Linearized operations (indexes into the sub-history), in order.
    prefix: Vec<u32>,
    /// Register value after them.
    state: u32,
    /// The operation whose completion stopped the walk.
    blocked: u32,
    /// Operations invoked and not linearized at that point.
    candidates: Vec<u32>,
}

enum SearchOutcome {
    Linearizable,
    Violation(Deepest),
    Stopped,
}

/// Hashes a `u64` that is already a good hash (a Zobrist key) to itself.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// SplitMix64's finalizer: a fixed, well-mixed 64-bit value per input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The set of (linearized bitset, register value) pairs already explored,
/// stored flat: entry `i` is `sets[i*words..(i+1)*words]`, `states[i]`, and
/// `chain[i]` links entries whose hashes are equal.
struct Memo {
    words: usize,
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    sets: Vec<u64>,
    states: Vec<u32>,
    chain: Vec<u32>,
}

impl Memo {
    fn new(words: usize) -> Self {
        Self {
            words,
            heads: HashMap::default(),
            sets: Vec::new(),
            states: Vec::new(),
            chain: Vec::new(),
        }
    }

    /// Inserts the pair; `false` if it was already there.
    fn insert(&mut self, hash: u64, set: &[u64], state: u32) -> bool {
        let head = self.heads.entry(hash).or_insert(NIL);
        let mut cur = *head;
        while cur != NIL {
            let i = cur as usize;
            if self.states[i] == state && self.sets[i * self.words..(i + 1) * self.words] == *set {
                return false;
            }
            cur = self.chain[i];
        }
        let index = self.states.len() as u32;
        self.sets.extend_from_slice(set);
        self.states.push(state);
        self.chain.push(*head);
        *head = index;
        true
    }
}

/// The search over one sub-history.
struct Search<'s> {
    ops: &'s [SeqOp],
    /// Entry `e < 2n`: the operation it belongs to.
    entry_op: Vec<u32>,
    /// For an invocation entry, its completion entry; `NIL` for completions.
    completion_of: Vec<u32>,
    /// Doubly linked list over entries; index `2n` is the head sentinel.
    next: Vec<u32>,
    prev: Vec<u32>,
    head: u32,
    zobrist: Vec<u64>,
    linearized: Vec<u64>,
    linearized_hash: u64,
    /// Operations with a known outcome not yet linearized.
    definite_left: usize,
    steps: u64,
}

impl<'s> Search<'s> {
    fn new(ops: &'s [SeqOp]) -> Self {
        let n = ops.len();
        // (at infinity, time, completion?, op) orders the entries.
        let mut order: Vec<(bool, u64, bool, u32)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            order.push((false, op.invoke_us, false, i as u32));
            match op.complete_us {
                Some(t) => order.push((false, t, true, i as u32)),
                None => order.push((true, 0, true, i as u32)),
            }
        }
        order.sort_unstable();
        let m = order.len();
        let mut entry_op = vec![0; m];
        let mut completion_of = vec![NIL; m];
        let mut invocation_at = vec![NIL; n];
        for (e, &(_, _, is_completion, op)) in order.iter().enumerate() {
            entry_op[e] = op;
            if !is_completion {
                invocation_at[op as usize] = e as u32;
            }
        }
        for (e, &(_, _, is_completion, op)) in order.iter().enumerate() {
            if is_completion {
                completion_of[invocation_at[op as usize] as usize] = e as u32;
            }
        }
        let head = m as u32;
        let mut next = vec![NIL; m + 1];
        let mut prev = vec![NIL; m + 1];
        let mut last = head;
        for e in 0..m as u32 {
            next[last as usize] = e;
            prev[e as usize] = last;
            last = e;
        }
        Self {
            ops,
            entry_op,
            completion_of,
            next,
            prev,
            head,
            zobrist: (0..n as u64).map(mix).collect(),
            linearized: vec![0; n.div_ceil(64)],
            linearized_hash: 0,
            definite_left: ops.iter().filter(|op| op.complete_us.is_some()).count(),
            steps: 0,
        }
    }

    fn unlink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn relink(&mut self, e: u32) {
        let (p, n) = (self.prev[e as usize], self.next[e as usize]);
        self.next[p as usize] = e;
        if n != NIL {
            self.prev[n as usize] = e;
        }
    }

    /// Takes an invocation entry and its completion out of the list.
    fn lift(&mut self, call: u32) {
        self.unlink(call);
        self.unlink(self.completion_of[call as usize]);
    }

    /// Undoes the matching [`lift`](Self::lift) (must be the last one).
    fn unlift(&mut self, call: u32) {
        self.relink(self.completion_of[call as usize]);
        self.relink(call);
    }

    fn toggle(&mut self, op: u32) {
        self.linearized[(op / 64) as usize] ^= 1 << (op % 64);
        self.linearized_hash ^= self.zobrist[op as usize];
    }

    fn is_definite(&self, op: u32) -> bool {
        self.ops[op as usize].complete_us.is_some()
    }

    fn run(&mut self, options: &CheckOptions<'_>) -> SearchOutcome {
        let mut state = ABSENT;
        let mut memo = Memo::new(self.linearized.len());
        // Linearized invocation entries, each with the value before it.
        let mut calls: Vec<(u32, u32)> = Vec::new();
        let mut deepest: Option<Deepest> = None;
        let mut entry = self.next[self.head as usize];
        loop {
            if self.definite_left == 0 {
                return SearchOutcome::Linearizable;
            }
            if self.steps % INTERRUPT_POLL_STEPS == 0 {
                if let Some(interrupt) = options.interrupt {
                    if interrupt() {
                        return SearchOutcome::Stopped;
                    }
                }
            }
            if options
                .max_steps_per_key
                .is_some_and(|max| self.steps >= max)
            {
                return SearchOutcome::Stopped;
            }
            self.steps += 1;

            let is_call = entry != NIL && self.completion_of[entry as usize] != NIL;
            if is_call {
                let op = self.entry_op[entry as usize];
                let seq_op = self.ops[op as usize];
                let (new_state, out) = step(state, seq_op.cmd);
                if seq_op.expect.allows(out) {
                    self.toggle(op);
                    let key_hash = self.linearized_hash ^ mix(u64::from(new_state) ^ 0xA5A5_A5A5);
                    if memo.insert(key_hash, &self.linearized, new_state) {
                        calls.push((entry, state));
                        state = new_state;
                        self.lift(entry);
                        if self.is_definite(op) {
                            self.definite_left -= 1;
                        }
                        entry = self.next[self.head as usize];
                        continue;
                    }
                    self.toggle(op);
                }
                entry = self.next[entry as usize];
            } else {
                // A completion: the operation it closes cannot take effect
                // after the current prefix.
                if deepest
                    .as_ref()
                    .is_none_or(|d| calls.len() > d.prefix.len())
                {
                    deepest = Some(self.dead_end(&calls, state, entry));
                }
                let Some((call, before)) = calls.pop() else {
                    return SearchOutcome::Violation(deepest.unwrap_or_default());
                };
                let op = self.entry_op[call as usize];
                state = before;
                self.toggle(op);
                self.unlift(call);
                if self.is_definite(op) {
                    self.definite_left += 1;
                }
                entry = self.next[call as usize];
            }
        }
    }

    /// Describes the dead end at completion entry `stop`.
    fn dead_end(&self, calls: &[(u32, u32)], state: u32, stop: u32) -> Deepest {
        let mut candidates = Vec::new();
        let mut e = self.next[self.head as usize];
        while e != stop && e != NIL {
            candidates.push(self.entry_op[e as usize]);
            e = self.next[e as usize];
        }
        Deepest {
            prefix: calls
                .iter()
                .map(|&(c, _)| self.entry_op[c as usize])
                .collect(),
            state,
            blocked: if stop == NIL {
                0
            } else {
                self.entry_op[stop as usize]
            },
            candidates,
        }
    }
}
