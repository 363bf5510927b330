//! # consensus-paxos
//!
//! Single-decree Paxos and Multi-Paxos. Today this crate holds Paxos'
//! vocabulary ([`types`]: ballots, slots) and its safety properties
//! ([`safety`]: the events acceptors and learners report and the invariants
//! checked over them). The components (`Proposer`, `Acceptor`, `Learner`,
//! `MultiPaxos`) and the engine plug-in are not built yet.
#![deny(missing_docs)]

pub mod safety;
pub mod types;
