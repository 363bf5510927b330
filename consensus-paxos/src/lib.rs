//! # consensus-paxos
//!
//! Will hold single-decree Paxos and Multi-Paxos as supervised actors around
//! pure cores: `Proposer`, `Acceptor`, `Learner` and `MultiPaxos` (a stable
//! leader running phase 2 for a sequence of slots). Not built yet: this crate
//! compiles and exports nothing.
#![deny(missing_docs)]
