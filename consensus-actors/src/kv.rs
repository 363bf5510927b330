//! The reference key-value state machine that every protocol replicates in
//! tests, examples and the `consensus` program, and the [`StateMachine`] trait
//! any user-supplied state machine implements.
//!
//! ```
//! use consensus_actors::kv::{KvCommand, KvOutput, KvStore, StateMachine};
//! let mut kv = KvStore::default();
//! assert_eq!(kv.apply(&KvCommand::put("a", "1")), KvOutput::Ok);
//! assert_eq!(kv.apply(&KvCommand::get("a")), KvOutput::Value(Some("1".into())));
//! assert_eq!(kv.apply(&KvCommand::cas("a", Some("1"), "2")), KvOutput::CasOk);
//! assert_eq!(kv.apply(&KvCommand::cas("a", Some("1"), "3")), KvOutput::CasFailed(Some("2".into())));
//! ```

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// A deterministic state machine driven by a replicated log. `apply` must be
/// a pure function of the current state and the command: every replica that
/// applies the same commands in the same order reaches the same state and
/// returns the same outputs.
pub trait StateMachine: 'static {
    /// A command carried in log entries.
    type Command: Clone + Debug + Serialize + DeserializeOwned + Send + 'static;
    /// What applying a command returns to the proposer.
    type Output: Clone + Debug + Serialize + DeserializeOwned + Send + PartialEq + 'static;

    /// Applies one committed command.
    fn apply(&mut self, command: &Self::Command) -> Self::Output;

    /// Applies one committed command whose output nobody waits for (a
    /// replica that did not propose it). Must change the state exactly as
    /// [`apply`](Self::apply) does; the default calls it and drops the
    /// output, an implementation may skip building the output.
    fn apply_unobserved(&mut self, command: &Self::Command) {
        let _ = self.apply(command);
    }

    /// Serializes the whole state (for snapshots).
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot taken by [`snapshot`](Self::snapshot).
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotDecodeError>;
}

/// A snapshot that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot cannot be decoded: {0}")]
pub struct SnapshotDecodeError(pub String);

/// A command of the key-value store. `Noop` is what a new leader commits at
/// the start of its term; it changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvCommand {
    /// Sets `key` to `value`.
    Put {
        /// Key.
        key: String,
        /// New value.
        value: String,
    },
    /// Reads `key`.
    Get {
        /// Key.
        key: String,
    },
    /// Removes `key`.
    Delete {
        /// Key.
        key: String,
    },
    /// Sets `key` to `new` if it currently holds `expected` (`None`: absent).
    Cas {
        /// Key.
        key: String,
        /// Value the key must hold (`None` means the key must be absent).
        expected: Option<String>,
        /// Value to set when the comparison holds.
        new: String,
    },
    /// Does nothing (leader no-op, padding, benchmarks).
    Noop,
}

impl KvCommand {
    /// `Put { key, value }`.
    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// `Get { key }`.
    pub fn get(key: impl Into<String>) -> Self {
        Self::Get { key: key.into() }
    }

    /// `Delete { key }`.
    pub fn delete(key: impl Into<String>) -> Self {
        Self::Delete { key: key.into() }
    }

    /// `Cas { key, expected, new }`.
    pub fn cas(key: impl Into<String>, expected: Option<&str>, new: impl Into<String>) -> Self {
        Self::Cas {
            key: key.into(),
            expected: expected.map(str::to_string),
            new: new.into(),
        }
    }

    /// The key the command touches (`None` for `Noop`).
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Put { key, .. }
            | Self::Get { key }
            | Self::Delete { key }
            | Self::Cas { key, .. } => Some(key),
            Self::Noop => None,
        }
    }

    /// Whether the command only reads.
    pub fn is_read_only(&self) -> bool {
        matches!(self, Self::Get { .. } | Self::Noop)
    }
}

/// The result of applying a [`KvCommand`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOutput {
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
}

/// The reference key-value store: an ordered map from string keys to string
/// values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    data: BTreeMap<String, String>,
}

impl KvStore {
    /// Sets `key` to `value`, reusing the stored key and value buffers when
    /// the key exists (every replica applies every write).
    fn set(&mut self, key: &str, value: &str) {
        match self.data.get_mut(key) {
            Some(v) => {
                v.clear();
                v.push_str(value);
            }
            None => {
                self.data.insert(key.to_owned(), value.to_owned());
            }
        }
    }

    /// Reads `key` without going through a command.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// Number of keys present.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether no key is present.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Iterates the contents in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.data.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Output = KvOutput;

    fn apply(&mut self, command: &KvCommand) -> KvOutput {
        match command {
            KvCommand::Put { key, value } => {
                self.set(key, value);
                KvOutput::Ok
            }
            KvCommand::Get { key } => KvOutput::Value(self.data.get(key).cloned()),
            KvCommand::Delete { key } => KvOutput::Deleted(self.data.remove(key).is_some()),
            KvCommand::Cas { key, expected, new } => {
                let current = self.data.get(key);
                if current == expected.as_ref() {
                    self.set(key, new);
                    KvOutput::CasOk
                } else {
                    KvOutput::CasFailed(current.cloned())
                }
            }
            KvCommand::Noop => KvOutput::Ok,
        }
    }

    /// Like `apply`, without copying a value read (`Get`, a failed `Cas`).
    fn apply_unobserved(&mut self, command: &KvCommand) {
        match command {
            KvCommand::Get { .. } | KvCommand::Noop => {}
            KvCommand::Put { key, value } => self.set(key, value),
            KvCommand::Delete { key } => {
                self.data.remove(key);
            }
            KvCommand::Cas { key, expected, new } => {
                if self.data.get(key) == expected.as_ref() {
                    self.set(key, new);
                }
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        // Encoding a BTreeMap of strings cannot fail.
        rmp_serde::to_vec(&self.data).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotDecodeError> {
        self.data =
            rmp_serde::from_slice(snapshot).map_err(|e| SnapshotDecodeError(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_delete() {
        let mut kv = KvStore::default();
        assert_eq!(kv.apply(&KvCommand::get("k")), KvOutput::Value(None));
        assert_eq!(kv.apply(&KvCommand::put("k", "v")), KvOutput::Ok);
        assert_eq!(
            kv.apply(&KvCommand::get("k")),
            KvOutput::Value(Some("v".into()))
        );
        assert_eq!(kv.apply(&KvCommand::delete("k")), KvOutput::Deleted(true));
        assert_eq!(kv.apply(&KvCommand::delete("k")), KvOutput::Deleted(false));
        assert!(kv.is_empty());
    }

    /// Applying without observing changes the state exactly as `apply`.
    #[test]
    fn unobserved_applies_change_the_state_as_applies_do() {
        let commands = [
            KvCommand::put("a", "1"),
            KvCommand::get("a"),
            KvCommand::cas("a", Some("1"), "2"),
            KvCommand::cas("a", Some("1"), "3"),
            KvCommand::cas("b", None, "x"),
            KvCommand::put("c", "long value"),
            KvCommand::put("c", "v"),
            KvCommand::delete("b"),
            KvCommand::delete("zz"),
            KvCommand::Noop,
        ];
        let (mut observed, mut unobserved) = (KvStore::default(), KvStore::default());
        for (k, c) in commands.iter().enumerate() {
            observed.apply(c);
            unobserved.apply_unobserved(c);
            assert_eq!(observed, unobserved, "after command {k}: {c:?}");
        }
        let contents: Vec<(&str, &str)> = unobserved.iter().collect();
        assert_eq!(contents, vec![("a", "2"), ("c", "v")]);
    }

    #[test]
    fn cas_on_absent_and_present_keys() {
        let mut kv = KvStore::default();
        assert_eq!(
            kv.apply(&KvCommand::cas("k", Some("x"), "y")),
            KvOutput::CasFailed(None)
        );
        assert_eq!(kv.apply(&KvCommand::cas("k", None, "a")), KvOutput::CasOk);
        assert_eq!(
            kv.apply(&KvCommand::cas("k", None, "b")),
            KvOutput::CasFailed(Some("a".into()))
        );
        assert_eq!(
            kv.apply(&KvCommand::cas("k", Some("a"), "b")),
            KvOutput::CasOk
        );
        assert_eq!(kv.get("k"), Some("b"));
    }

    #[test]
    fn snapshot_round_trips_and_garbage_is_an_error() {
        let mut kv = KvStore::default();
        for i in 0..50 {
            kv.apply(&KvCommand::put(format!("k{i}"), format!("v{i}")));
        }
        let snap = kv.snapshot();
        let mut other = KvStore::default();
        other.restore(&snap).unwrap();
        assert_eq!(other, kv);
        assert!(other.restore(&[0xc1, 0xff, 0x00]).is_err());
        assert_eq!(other, kv, "a failed restore leaves the state unchanged");
    }

    #[test]
    fn noop_changes_nothing() {
        let mut kv = KvStore::default();
        kv.apply(&KvCommand::put("a", "1"));
        let before = kv.clone();
        assert_eq!(kv.apply(&KvCommand::Noop), KvOutput::Ok);
        assert_eq!(kv, before);
        assert!(KvCommand::Noop.is_read_only());
        assert_eq!(KvCommand::Noop.key(), None);
    }
}
