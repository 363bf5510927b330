//! # consensus-raft
//!
//! Raft as four supervised actors around pure cores: `LeaderElection`,
//! `LogReplicator`, `MembershipManager` (joint consensus) and
//! `SnapshotCompactor`. Being built; nothing here works yet.
#![deny(missing_docs)]
