//! # consensus-pbft
//!
//! Will hold Practical Byzantine Fault Tolerance (Castro and Liskov) as
//! supervised actors: `PBFTEngine` (pre-prepare, prepare, commit),
//! `ViewChanger`, `MessageAuthenticator` (MAC vectors) and
//! `CheckpointProtocol`, tolerating f < n/3 Byzantine replicas. Not built
//! yet: this crate compiles and exports nothing.
#![deny(missing_docs)]
