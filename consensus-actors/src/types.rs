//! The vocabulary every protocol shares: identifiers, terms, indexes, log
//! entries, roles and the protocol's name.
//!
//! Protocol crates define their own newtypes (views, ballots, slots) with
//! [`newtype_u64!`](crate::newtype_u64).
//!
//! Indexes and terms are newtypes so that a `Term` can never be passed where a
//! `LogIndex` is expected, and no `usize`/`u64` mix creeps into protocol code.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Defines a `u64` newtype (an id, an epoch, a position) with `ZERO`,
/// `get`, `next`, `prev`, `From<u64>`, serde (as a bare number) and a
/// `Display` that prints `$short` followed by the number. The calling
/// crate needs `serde` (with `derive`) among its dependencies.
///
/// ```
/// consensus_actors::newtype_u64!(
///     /// A round of my protocol.
///     Round,
///     "r"
/// );
/// assert_eq!(Round(3).next().to_string(), "r4");
/// ```
#[macro_export]
macro_rules! newtype_u64 {
    ($(#[$meta:meta])* $name:ident, $short:literal) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            ::serde::Serialize, ::serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The zero value (the state before anything happened).
            pub const ZERO: Self = Self(0);

            /// The raw number.
            #[inline]
            pub const fn get(self) -> u64 {
                self.0
            }

            /// The next value (`self + 1`).
            #[inline]
            #[must_use]
            pub const fn next(self) -> Self {
                Self(self.0 + 1)
            }

            /// The previous value, saturating at zero.
            #[inline]
            #[must_use]
            pub const fn prev(self) -> Self {
                Self(self.0.saturating_sub(1))
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, concat!($short, "{}"), self.0)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

newtype_u64!(
    /// Identifies one node (replica) of a cluster. Node ids are chosen by the
    /// operator and never reused for a different node.
    NodeId,
    "n"
);
newtype_u64!(
    /// A Raft term: a logical clock that increases with every election.
    Term,
    "t"
);
newtype_u64!(
    /// A position in a replicated log; the first entry has index 1, index 0
    /// means "before the first entry".
    LogIndex,
    "i"
);
newtype_u64!(
    /// Identifies one client of the replicated service.
    ClientId,
    "c"
);

/// The name of a consensus protocol, as registered with the engine's
/// registry (`raft`, `multi-paxos`, or a protocol of your own): lower-case
/// ASCII letters, digits and `-`, at most 64 characters. The runtime gives
/// it no meaning; the engine looks the protocol up by it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ConsensusProtocol(std::borrow::Cow<'static, str>);

/// The protocol name a configuration has when it names none (the protocol
/// the framework was first built with).
pub const DEFAULT_PROTOCOL: ConsensusProtocol = ConsensusProtocol::named("raft");

impl ConsensusProtocol {
    /// The longest protocol name.
    pub const MAX_NAME_LEN: usize = 64;

    /// A protocol name known at compile time. It must be valid (see the
    /// type's documentation); `const` evaluation fails otherwise.
    pub const fn named(name: &'static str) -> Self {
        assert!(Self::valid(name.as_bytes()), "invalid protocol name");
        Self(std::borrow::Cow::Borrowed(name))
    }

    const fn valid(name: &[u8]) -> bool {
        if name.is_empty() || name.len() > Self::MAX_NAME_LEN {
            return false;
        }
        let mut i = 0;
        while i < name.len() {
            let c = name[i];
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
                return false;
            }
            i += 1;
        }
        true
    }

    /// The name used on the command line and in configuration files.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Default for ConsensusProtocol {
    fn default() -> Self {
        DEFAULT_PROTOCOL
    }
}

impl fmt::Display for ConsensusProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error returned when a text is not a valid protocol name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protocol name {0:?}: use 1 to 64 lower-case letters, digits and '-'")]
pub struct InvalidProtocolName(pub String);

impl std::str::FromStr for ConsensusProtocol {
    type Err = InvalidProtocolName;

    /// Parses a name, ignoring case (`Multi-Paxos` is `multi-paxos`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if Self::valid(lower.as_bytes()) {
            Ok(Self(std::borrow::Cow::Owned(lower)))
        } else {
            let excerpt: String = s.chars().take(Self::MAX_NAME_LEN + 1).collect();
            Err(InvalidProtocolName(excerpt))
        }
    }
}

impl<'de> Deserialize<'de> for ConsensusProtocol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The role a node plays in a leader-based protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Passive: answers the leader and candidates.
    #[default]
    Follower,
    /// Asking for votes to become leader.
    Candidate,
    /// Accepting proposals and replicating them.
    Leader,
}

/// One entry of a replicated log.
///
/// `timestamp_us` is the virtual (simulation) or real time in microseconds at
/// which the leader accepted the proposal; it is informational and never used
/// for protocol decisions.
///
/// An entry remembers its digests once computed
/// ([`command_digest`](Self::command_digest) and its trace digest, see
/// [`sim::digest`](crate::sim::digest())): one entry is typically shared
/// (`Arc`) by the log, the storage, every AppendEntries that carries it and,
/// in a simulation, every node, so it is hashed once instead of once per
/// holder and per message. The remembered digests are not part of the value:
/// equality, hashing, `Debug` and the serialized form ignore them, and a clone
/// starts without them. Do not change the fields of an entry after taking its
/// digests (build a new entry with [`new`](Self::new) instead).
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct LogEntry<C> {
    /// The term in which the leader created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// The replicated command.
    pub command: C,
    /// When the leader accepted the proposal, in microseconds.
    pub timestamp_us: u64,
    /// The client that proposed the command.
    pub client_id: ClientId,
    #[serde(skip)]
    digests: EntryDigests,
}

/// The digests an entry computed so far (see [`LogEntry`]); not part of the
/// entry's value.
#[derive(Default)]
struct EntryDigests {
    /// [`digest_of`](crate::safety::digest_of) of the command.
    command: DigestCell,
    /// The structural digest of the whole entry (the trace's).
    trace: DigestCell,
}

/// A remembered digest in one word (8 bytes, where a `OnceLock<u64>` takes
/// 16 and every entry carries two): 0 means "not computed yet", so a digest
/// that happens to be 0 is simply computed again each time. Racing writers
/// store the same value (a digest of the entry's unchanging content), so
/// relaxed ordering is enough.
#[derive(Default)]
struct DigestCell(std::sync::atomic::AtomicU64);

impl DigestCell {
    fn get(&self) -> Option<u64> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            d => Some(d),
        }
    }

    fn set(&self, digest: u64) -> u64 {
        self.0.store(digest, std::sync::atomic::Ordering::Relaxed);
        digest
    }
}

impl Clone for EntryDigests {
    /// A clone starts empty: it may be changed before it is digested.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for EntryDigests {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for EntryDigests {}

impl std::hash::Hash for EntryDigests {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl<C: fmt::Debug> fmt::Debug for LogEntry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogEntry")
            .field("term", &self.term)
            .field("index", &self.index)
            .field("command", &self.command)
            .field("timestamp_us", &self.timestamp_us)
            .field("client_id", &self.client_id)
            .finish()
    }
}

/// The entry's fields, serialized as a derived `Serialize` would.
struct EntryFields<'a, C>(&'a LogEntry<C>);

impl<C: Serialize> Serialize for EntryFields<'_, C> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let e = self.0;
        let mut st = serializer.serialize_struct("LogEntry", 5)?;
        st.serialize_field("term", &e.term)?;
        st.serialize_field("index", &e.index)?;
        st.serialize_field("command", &e.command)?;
        st.serialize_field("timestamp_us", &e.timestamp_us)?;
        st.serialize_field("client_id", &e.client_id)?;
        st.end()
    }
}

impl<C: Serialize> Serialize for LogEntry<C> {
    /// The five fields as a struct, like a derived implementation; inside a
    /// trace digest, the entry's own structural digest instead (computed
    /// once per entry, see [`sim::digest`](crate::sim::digest())).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if crate::sim::digest::digesting() {
            let digest = match self.digests.trace.get() {
                Some(d) => d,
                None => self.digests.trace.set(
                    crate::sim::digest::structural_digest(&EntryFields(self))
                        .map_err(serde::ser::Error::custom)?,
                ),
            };
            return serializer.serialize_u64(digest);
        }
        EntryFields(self).serialize(serializer)
    }
}

impl<C> LogEntry<C> {
    /// A new entry.
    pub fn new(
        term: Term,
        index: LogIndex,
        command: C,
        timestamp_us: u64,
        client_id: ClientId,
    ) -> Self {
        Self {
            term,
            index,
            command,
            timestamp_us,
            client_id,
            digests: EntryDigests::default(),
        }
    }

    /// [`digest_of`](crate::safety::digest_of) the command, computed on the
    /// first call and remembered by this entry (shared by every holder of an
    /// `Arc` of it).
    pub fn command_digest(&self) -> u64
    where
        C: Serialize,
    {
        match self.digests.command.get() {
            Some(d) => d,
            None => self
                .digests
                .command
                .set(crate::safety::digest_of(&self.command)),
        }
    }

    /// The (term, index) pair that identifies this entry under the log
    /// matching property.
    pub fn log_id(&self) -> LogId {
        LogId {
            term: self.term,
            index: self.index,
        }
    }
}

/// The (term, index) pair that identifies a log position: by the log
/// matching property two logs that hold an entry with the same `LogId` are
/// identical up to it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogId {
    /// The entry's term (compared first: a later term is more up to date).
    pub term: Term,
    /// The entry's index.
    pub index: LogIndex,
}

impl LogId {
    /// A log id.
    pub const fn new(term: Term, index: LogIndex) -> Self {
        Self { term, index }
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.term, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(command: &str) -> LogEntry<String> {
        LogEntry::new(Term(2), LogIndex(7), command.to_owned(), 99, ClientId(3))
    }

    /// The digests an entry remembers are not part of its value: it encodes
    /// like a plain five-field struct, and compares, hashes and prints
    /// without them.
    #[test]
    fn remembered_digests_are_not_part_of_an_entry() {
        #[derive(Serialize)]
        struct Plain<'a> {
            term: Term,
            index: LogIndex,
            command: &'a str,
            timestamp_us: u64,
            client_id: ClientId,
        }
        let e = entry("put k v");
        let plain = Plain {
            term: e.term,
            index: e.index,
            command: "put k v",
            timestamp_us: 99,
            client_id: ClientId(3),
        };
        let before = rmp_serde::to_vec(&e).unwrap();
        assert_eq!(e.command_digest(), crate::safety::digest_of(&e.command));
        let _ = crate::sim::digest(&e);
        assert_eq!(rmp_serde::to_vec(&e).unwrap(), before);
        assert_eq!(before, rmp_serde::to_vec(&plain).unwrap());
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            serde_json::to_string(&plain).unwrap()
        );
        let back: LogEntry<String> = rmp_serde::from_slice(&before).unwrap();
        assert_eq!(back, e);
        assert_eq!(
            format!("{e:?}"),
            "LogEntry { term: Term(2), index: LogIndex(7), command: \"put k v\", \
             timestamp_us: 99, client_id: ClientId(3) }"
        );
    }

    /// An entry's digests are computed once and remembered (shared through
    /// an `Arc`), equal those of an equal entry computed afresh, and differ
    /// for a different entry; a clone starts afresh, so changing it before
    /// digesting it is seen.
    #[test]
    fn entry_digests_are_remembered_and_follow_the_content() {
        let e = std::sync::Arc::new(entry("a"));
        let shared = std::sync::Arc::clone(&e);
        let (c, t) = (e.command_digest(), crate::sim::digest(&*e));
        assert_eq!(e.digests.command.get(), Some(c));
        assert!(shared.digests.trace.get().is_some());
        assert_eq!(shared.command_digest(), c);
        assert_eq!(crate::sim::digest(&*shared), t);
        let fresh = entry("a");
        assert_eq!((fresh.command_digest(), crate::sim::digest(&fresh)), (c, t));
        let mut changed = (*e).clone();
        assert!(changed.digests.command.get().is_none());
        changed.command = "b".to_owned();
        assert_ne!(changed.command_digest(), c);
        assert_ne!(crate::sim::digest(&changed), t);
        let mut later = entry("a");
        later.timestamp_us += 1;
        assert_ne!(crate::sim::digest(&later), t);
        // Inside a message, the entry counts through its digest: a change
        // of any entry changes the message's digest.
        let msg = |es: Vec<LogEntry<String>>| crate::sim::digest(&(1u64, es));
        assert_ne!(
            msg(vec![entry("a"), entry("b")]),
            msg(vec![entry("a"), entry("c")])
        );
        assert_eq!(
            msg(vec![entry("a"), entry("b")]),
            msg(vec![entry("a"), entry("b")])
        );
    }

    #[test]
    fn log_ids_compare_term_first() {
        let a = LogId::new(Term(2), LogIndex(1));
        let b = LogId::new(Term(1), LogIndex(9));
        assert!(a > b, "a later term is more up to date whatever the index");
    }

    #[test]
    fn protocol_names_round_trip_and_are_checked() {
        for name in ["raft", "multi-paxos", "my-protocol-2"] {
            let p: ConsensusProtocol = name.parse().unwrap();
            assert_eq!(p.name(), name);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<ConsensusProtocol>(&json).unwrap(), p);
        }
        assert_eq!(
            "Multi-Paxos".parse::<ConsensusProtocol>().unwrap().name(),
            "multi-paxos"
        );
        for bad in ["", "a b", "zab!", &"x".repeat(65)] {
            assert!(bad.parse::<ConsensusProtocol>().is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<ConsensusProtocol>("\"a/b\"").is_err());
        assert_eq!(ConsensusProtocol::default(), DEFAULT_PROTOCOL);
    }

    #[test]
    fn newtypes_serialize_as_numbers() {
        assert_eq!(serde_json::to_string(&Term(7)).unwrap(), "7");
        assert_eq!(Term(3).next(), Term(4));
        assert_eq!(LogIndex::ZERO.prev(), LogIndex::ZERO);
        assert_eq!(NodeId(4).to_string(), "n4");
    }
}
