//! # consensus-paxos
//!
//! Single-decree Paxos and Multi-Paxos. Today this crate holds Paxos'
//! vocabulary ([`types`]: ballots, slots) and its safety properties
//! ([`safety`]: the events acceptors and learners report and the invariants
//! checked over them). The components (`Proposer`, `Acceptor`, `Learner`,
//! `MultiPaxos`) and the engine plug-in are not built yet.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!("consensus-paxos needs panic = \"unwind\": supervision restarts components whose handlers panic");

pub mod safety;
pub mod types;
