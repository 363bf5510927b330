//! # consensus-paxos
//!
//! Will hold single-decree Paxos and Multi-Paxos as supervised actors around
//! pure cores: `Proposer`, `Acceptor`, `Learner` and `MultiPaxos` (a stable
//! leader running phase 2 for a sequence of slots). Not built yet: this crate
//! compiles and exports nothing.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!("consensus-paxos needs panic = \"unwind\": supervision restarts components whose handlers panic");
