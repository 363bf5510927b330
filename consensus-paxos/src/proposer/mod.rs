//! The Proposer: phase 1 (Prepare / Promise, adopting the value of the
//! highest accepted ballot), phase 2 (Accept), retries with a higher ballot
//! after a seeded random back-off when proposers duel; in Multi-Paxos, the
//! leader's side: phase 1 once per ballot, a window of slots in flight,
//! batching, recovery of unfinished slots and no-ops in holes. Pure
//! [`core`] and its [`actor`].

pub mod actor;
pub mod core;

pub use self::actor::{
    GetProposerStatus, Proposer, ProposerOutputs, ProposerStatus, ProposerStorage,
};
pub use self::core::{ProposerCore, ProposerEffect, ProposerInput, Role};
