//! # consensus-raft
//!
//! Raft as four supervised actors around pure cores: `LeaderElection`,
//! `LogReplicator`, `MembershipManager` (joint consensus) and
//! `SnapshotCompactor`.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`messages`] | the paper's messages as types, and the wire enum [`messages::RaftMessage`] |
//! | [`membership`] | joint-capable [`membership::Membership`] and its quorum rules |
//! | [`log`] | the in-memory log suffix after the last snapshot |
//! | [`events`] | what the owner of term/vote/log tells the other components |
//! | [`replication`] | the LogReplicator core: the single owner of term, vote and log |
//! | [`election`] | the LeaderElection core: timeouts, pre-vote, vote counting, check-quorum, transfer |
//! | [`membership_manager`] | the MembershipManager core: learner catch-up, C_old,new then C_new |
//! | [`snapshot`] | the SnapshotCompactor core: when to snapshot, InstallSnapshot chunks |
//! | [`actors`] | the four components (and the inbound router) as supervised actix actors |
//! | [`node`] | [`node::RaftNodeBuilder`]: one node as a supervision tree, and the client API |
//! | [`sim`] | [`sim::RaftSimFactory`]: Raft nodes for the deterministic simulation |
#![deny(missing_docs)]

pub mod actors;
pub mod config;
pub mod election;
pub mod error;
pub mod events;
pub mod log;
pub mod membership;
pub mod membership_manager;
pub mod messages;
pub mod node;
pub mod replication;
pub mod sim;
pub mod snapshot;

pub use config::RaftConfig;
pub use membership::Membership;
pub use messages::{RaftCommand, RaftMessage};
