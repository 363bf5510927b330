//! Ballot leader election for Multi-Paxos (after OmniPaxos' BLE): rounds of
//! heartbeats; a node that heard from a quorum is *quorum-connected*; the
//! leader is the highest ballot among quorum-connected nodes, so a node cut
//! off from a quorum never leads, and a leader that loses its quorum is
//! replaced. Pure [`core`] and its [`actor`].

pub mod actor;
pub mod core;

pub use self::actor::BallotLeaderElection;
pub use self::core::{ElectionCore, ElectionEffect, ElectionInput};
