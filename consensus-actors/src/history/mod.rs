//! Client histories of the reference key-value store and a linearizability
//! checker for them.
//!
//! A *history* is what the clients of a replicated service saw: for every
//! operation, who issued which [`KvCommand`], when it was invoked and how it
//! ended, all in virtual microseconds. A history is *linearizable* when every
//! operation can be given one instant between its invocation and its
//! completion such that applying the commands at those instants, one by one,
//! to a single [`KvStore`](crate::kv::KvStore) yields exactly the outputs the
//! clients observed.
//!
//! # Layout
//!
//! - this module: the history types ([`History`], [`Operation`], [`Outcome`],
//!   [`ObservedOutput`]), the JSON form, and [`HistoryRecorder`], which builds
//!   a history while a run goes;
//! - [`linearizability`]: the checker ([`check_history`],
//!   [`check_history_with`], [`check_compact_with`]): a Wing–Gong / Lowe search with a memo of
//!   (linearized set, state), run independently per key;
//! - [`compact`]: [`CompactHistory`], the read-only form the checker works
//!   on (fixed-size records, strings interned once, JSON streamed);
//! - [`stream`]: [`check_json_streaming`], the same check of a JSON file
//!   read once and decided segment by segment at quiet points, so memory
//!   follows the longest segment rather than the file (it proves
//!   linearizable histories; anything else it hands to the whole-history
//!   check);
//! - [`jepsen`]: import of Jepsen's single-register logs
//!   ([`History::from_jepsen`]).
//!
//! # Outcomes
//!
//! | outcome | meaning | what the checker does |
//! |---|---|---|
//! | [`Outcome::Ok`] | the command took effect and returned `output` | linearizes it between `invoke_us` and `complete_us`; `output` must match |
//! | [`Outcome::Fail`] | the command certainly did not take effect | ignores it |
//! | [`Outcome::Unknown`] | it may or may not have taken effect | treats it as completing at +infinity with an unconstrained output |
//!
//! Two operations are ordered in real time only when one completes strictly
//! before the other is invoked; equal timestamps make them concurrent.
//!
//! # JSON schema
//!
//! [`History::to_json`] writes, and [`History::from_json`] reads:
//!
//! ```text
//! { "operations": [ OPERATION, ... ] }
//!
//! OPERATION = { "id": u64,              // unique within the history
//!               "client": u64,          // ClientId
//!               "command": COMMAND,
//!               "invoke_us": u64,       // virtual time of the invocation
//!               "outcome": OUTCOME }
//!
//! COMMAND   = {"Put": {"key": str, "value": str}} | {"Get": {"key": str}}
//!           | {"Delete": {"key": str}}
//!           | {"Cas": {"key": str, "expected": str|null, "new": str}}
//!           | "Noop"
//!
//! OUTCOME   = {"status": "ok", "output": OUTPUT, "complete_us": u64}
//!           | {"status": "fail", "complete_us": u64}
//!           | {"status": "unknown"}                    // or with "gave_up_us": u64
//!
//! OUTPUT    = "Ok" | {"Value": str|null} | {"Deleted": bool} | "CasOk"
//!           | {"CasFailed": str|null}      // the value the store held instead
//!           | "CasFailedUnreported"        // the CAS did not hold; value not reported
//! ```
//!
//! `COMMAND` is the serde form of [`KvCommand`] and every `OUTPUT` but the
//! last is the serde form of the matching [`KvOutput`].
//! `complete_us` must not be smaller than `invoke_us`.
//!
//! # Example
//!
//! ```
//! use consensus_actors::history::{check_history, HistoryRecorder};
//! use consensus_actors::kv::{KvCommand, KvOutput};
//! use consensus_actors::ClientId;
//!
//! let mut rec = HistoryRecorder::new();
//! let w = rec.invoke(ClientId(1), KvCommand::put("x", "1"), 0);
//! let r = rec.invoke(ClientId(2), KvCommand::get("x"), 5);
//! rec.ok(w, KvOutput::Ok, 10)?;
//! // The read overlaps the write, so it may see the old value...
//! rec.ok(r, KvOutput::Value(None), 12)?;
//! // ...but a read that starts after the write returned may not.
//! let late = rec.invoke(ClientId(2), KvCommand::get("x"), 20);
//! rec.ok(late, KvOutput::Value(None), 25)?;
//!
//! let history = rec.into_history();
//! let report = check_history(&history);
//! assert!(!report.linearizable);
//! assert_eq!(report.per_key[0].key, "x");
//!
//! let back = consensus_actors::history::History::from_json(&history.to_json())?;
//! assert_eq!(back, history);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::kv::{KvCommand, KvOutput};
use crate::types::ClientId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

#[cfg(test)]
mod brute;
pub mod compact;
pub mod jepsen;
pub mod linearizability;
pub mod stream;
#[cfg(test)]
mod tests;

pub use compact::CompactHistory;
pub use jepsen::{JepsenError, JepsenErrorKind};
pub use linearizability::{
    check_compact_with, check_history, check_history_with, Budget, CheckOptions, Explanation,
    KeyReport, LinearizabilityReport, Reductions, Verdict, DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_MAX_STEPS_PER_KEY,
};
pub use stream::{check_json_streaming, StreamOptions, StreamStats, Streamed};

/// Identifies one operation of a [`History`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct OpId(pub u64);

impl OpId {
    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op{}", self.0)
    }
}

/// What a client observed as the result of a command that took effect.
///
/// It mirrors [`KvOutput`] (and serializes the same way for the shared
/// variants), plus [`CasFailedUnreported`](Self::CasFailedUnreported): a
/// compare-and-swap known not to have held, whose actual value was not
/// reported (Jepsen's `:fail :cas`). That variant is a wildcard: it matches
/// every [`KvOutput::CasFailed`], whatever value it carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ObservedOutput {
    /// A put or no-op took effect.
    Ok,
    /// The value read (`None`: absent).
    Value(Option<String>),
    /// A delete took effect; carries whether the key existed.
    Deleted(bool),
    /// A compare-and-swap took effect.
    CasOk,
    /// A compare-and-swap did not hold; carries the value actually found.
    CasFailed(Option<String>),
    /// A compare-and-swap did not hold; the value found was not reported.
    CasFailedUnreported,
}

impl ObservedOutput {
    /// Whether the store returning `actual` is consistent with this
    /// observation.
    pub fn matches(&self, actual: &KvOutput) -> bool {
        match (self, actual) {
            (Self::Ok, KvOutput::Ok) | (Self::CasOk, KvOutput::CasOk) => true,
            (Self::Value(a), KvOutput::Value(b)) => a == b,
            (Self::Deleted(a), KvOutput::Deleted(b)) => a == b,
            (Self::CasFailed(a), KvOutput::CasFailed(b)) => a == b,
            (Self::CasFailedUnreported, KvOutput::CasFailed(_)) => true,
            _ => false,
        }
    }
}

impl From<KvOutput> for ObservedOutput {
    fn from(output: KvOutput) -> Self {
        match output {
            KvOutput::Ok => Self::Ok,
            KvOutput::Value(v) => Self::Value(v),
            KvOutput::Deleted(existed) => Self::Deleted(existed),
            KvOutput::CasOk => Self::CasOk,
            KvOutput::CasFailed(v) => Self::CasFailed(v),
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The command took effect and the client received `output`.
    Ok {
        /// What the client observed.
        output: ObservedOutput,
        /// When the client received the reply, in virtual microseconds.
        complete_us: u64,
    },
    /// The command certainly did not take effect.
    Fail {
        /// When the client learned it, in virtual microseconds.
        complete_us: u64,
    },
    /// The command may or may not have taken effect, at any time after its
    /// invocation; the client never learned its output.
    Unknown {
        /// When the client stopped waiting, if it did (informational only:
        /// the command may still take effect later).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gave_up_us: Option<u64>,
    },
}

impl Outcome {
    /// The completion time of an `Ok` or `Fail` outcome.
    pub fn complete_us(&self) -> Option<u64> {
        match self {
            Self::Ok { complete_us, .. } | Self::Fail { complete_us } => Some(*complete_us),
            Self::Unknown { .. } => None,
        }
    }
}

/// One client operation: a command, its invocation time and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique within its history.
    pub id: OpId,
    /// The client that issued it.
    pub client: ClientId,
    /// The command.
    pub command: KvCommand,
    /// When the client sent it, in virtual microseconds.
    pub invoke_us: u64,
    /// How it ended.
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.id, self.client)?;
        match &self.command {
            KvCommand::Put { key, value } => write!(f, "put({key:?}, {value:?})")?,
            KvCommand::Get { key } => write!(f, "get({key:?})")?,
            KvCommand::Delete { key } => write!(f, "delete({key:?})")?,
            KvCommand::Cas { key, expected, new } => {
                write!(f, "cas({key:?}, {expected:?} -> {new:?})")?
            }
            KvCommand::Noop => write!(f, "noop")?,
        }
        match &self.outcome {
            Outcome::Ok {
                output,
                complete_us,
            } => write!(f, " -> {output:?} [{}, {complete_us}]", self.invoke_us),
            Outcome::Fail { complete_us } => {
                write!(f, " -> fail [{}, {complete_us}]", self.invoke_us)
            }
            Outcome::Unknown { .. } => write!(f, " -> unknown [{}, inf)", self.invoke_us),
        }
    }
}

/// A client history: the operations of a run, in no particular order.
///
/// See the [module documentation](self) for its JSON schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The operations.
    pub operations: Vec<Operation>,
}

/// A history that cannot be read or is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The text is not a JSON history.
    #[error("invalid JSON history: {0}")]
    Json(String),
    /// Two operations share an id.
    #[error("duplicate operation id {0}")]
    DuplicateId(OpId),
    /// An operation completes before it is invoked.
    #[error("{op} completes at {complete_us} us, before its invocation at {invoke_us} us")]
    CompletesBeforeInvoke {
        /// The operation.
        op: OpId,
        /// Its invocation time.
        invoke_us: u64,
        /// Its completion time.
        complete_us: u64,
    },
    /// More than 2^32 - 1 distinct keys and values (the limit of
    /// [`CompactHistory`]).
    #[error("more than 2^32 - 1 distinct keys and values")]
    TooManyStrings,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// The distinct keys the operations touch (`Noop` touches none).
    pub fn keys(&self) -> BTreeSet<&str> {
        self.operations
            .iter()
            .filter_map(|op| op.command.key())
            .collect()
    }

    /// Checks that ids are unique and that nothing completes before it is
    /// invoked.
    pub fn validate(&self) -> Result<(), HistoryError> {
        let mut ids = BTreeSet::new();
        for op in &self.operations {
            if !ids.insert(op.id) {
                return Err(HistoryError::DuplicateId(op.id));
            }
            if let Some(complete_us) = op.outcome.complete_us() {
                if complete_us < op.invoke_us {
                    return Err(HistoryError::CompletesBeforeInvoke {
                        op: op.id,
                        invoke_us: op.invoke_us,
                        complete_us,
                    });
                }
            }
        }
        Ok(())
    }

    /// The history as compact JSON (schema in the [module documentation](self)).
    pub fn to_json(&self) -> String {
        // Every map key in these types is a string field name, so encoding
        // cannot fail.
        serde_json::to_string(self).expect("a history always encodes as JSON")
    }

    /// The history as indented JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a history always encodes as JSON")
    }

    /// Reads a JSON history and [validates](Self::validate) it.
    pub fn from_json(text: &str) -> Result<Self, HistoryError> {
        let history: Self =
            serde_json::from_str(text).map_err(|e| HistoryError::Json(e.to_string()))?;
        history.validate()?;
        Ok(history)
    }

    /// Reads a Jepsen single-register log (see [`jepsen`]).
    pub fn from_jepsen(text: &str) -> Result<Self, JepsenError> {
        jepsen::parse(text)
    }
}

/// A recorder call that does not fit the operation it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// No operation has this id.
    #[error("{0} was never invoked")]
    UnknownOp(OpId),
    /// The operation already has an outcome.
    #[error("{0} already has an outcome")]
    AlreadyEnded(OpId),
    /// The completion time is before the invocation time.
    #[error("{op} ends at {time_us} us, before its invocation at {invoke_us} us")]
    EndsBeforeInvoke {
        /// The operation.
        op: OpId,
        /// Its invocation time.
        invoke_us: u64,
        /// The rejected completion time.
        time_us: u64,
    },
}

/// Builds a [`History`] as a run goes. Operation ids are handed out in
/// invocation order, starting at 0.
///
/// A plain struct with no interior mutability: a simulation shares one
/// between its client actors through `Rc<RefCell<HistoryRecorder>>`. Every
/// call is O(1) amortized.
#[derive(Clone, Debug, Default)]
pub struct HistoryRecorder {
    /// Invocations in id order, each with its outcome once known.
    ops: Vec<(Operation, bool)>,
    open: usize,
}

impl HistoryRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes room for at least `additional` more invocations, so that a run
    /// whose length is known up front does not regrow (and copy) the record
    /// as it goes.
    pub fn reserve(&mut self, additional: usize) {
        self.ops.reserve(additional);
    }

    /// Records that `client` sent `command` at `time_us`; returns the id to
    /// report its outcome with.
    pub fn invoke(&mut self, client: ClientId, command: KvCommand, time_us: u64) -> OpId {
        let id = OpId(self.ops.len() as u64);
        self.ops.push((
            Operation {
                id,
                client,
                command,
                invoke_us: time_us,
                outcome: Outcome::Unknown { gave_up_us: None },
            },
            false,
        ));
        self.open += 1;
        id
    }

    /// Records that `op` took effect and returned `output` at `time_us`.
    pub fn ok(
        &mut self,
        op: OpId,
        output: impl Into<ObservedOutput>,
        time_us: u64,
    ) -> Result<(), RecordError> {
        let output = output.into();
        self.end(op, time_us, |complete_us| Outcome::Ok {
            output,
            complete_us,
        })
    }

    /// Records that `op` certainly did not take effect (learned at `time_us`).
    pub fn fail(&mut self, op: OpId, time_us: u64) -> Result<(), RecordError> {
        self.end(op, time_us, |complete_us| Outcome::Fail { complete_us })
    }

    /// Records that the client gave up on `op` at `time_us` without knowing
    /// whether it took effect.
    pub fn unknown(&mut self, op: OpId, time_us: u64) -> Result<(), RecordError> {
        self.end(op, time_us, |t| Outcome::Unknown {
            gave_up_us: Some(t),
        })
    }

    fn end(
        &mut self,
        op: OpId,
        time_us: u64,
        outcome: impl FnOnce(u64) -> Outcome,
    ) -> Result<(), RecordError> {
        let index = usize::try_from(op.0).map_err(|_| RecordError::UnknownOp(op))?;
        let (operation, ended) = self.ops.get_mut(index).ok_or(RecordError::UnknownOp(op))?;
        if *ended {
            return Err(RecordError::AlreadyEnded(op));
        }
        if time_us < operation.invoke_us {
            return Err(RecordError::EndsBeforeInvoke {
                op,
                invoke_us: operation.invoke_us,
                time_us,
            });
        }
        operation.outcome = outcome(time_us);
        *ended = true;
        self.open -= 1;
        Ok(())
    }

    /// The command of operation `op`, if it was invoked.
    pub fn command(&self, op: OpId) -> Option<&KvCommand> {
        let index = usize::try_from(op.0).ok()?;
        self.ops.get(index).map(|(operation, _)| &operation.command)
    }

    /// Number of operations invoked so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether nothing was invoked yet.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of operations invoked but not yet ended.
    pub fn open(&self) -> usize {
        self.open
    }

    /// The history so far; operations still open appear as
    /// [`Outcome::Unknown`] (they may yet take effect).
    pub fn history(&self) -> History {
        History {
            operations: self.ops.iter().map(|(op, _)| op.clone()).collect(),
        }
    }

    /// The history, consuming the recorder; open operations become
    /// [`Outcome::Unknown`].
    pub fn into_history(self) -> History {
        History {
            operations: self.ops.into_iter().map(|(op, _)| op).collect(),
        }
    }
}
