//! # consensus-engine
//!
//! Will hold the `ConsensusEngine` facade (one API for every protocol, the
//! protocol chosen by configuration) and the `consensus` command-line
//! program (`simulate`, `bench`, `check-history`, `node`). Not built yet:
//! this crate compiles and exports nothing.
#![deny(missing_docs)]
