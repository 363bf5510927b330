//! # consensus-pbft
//!
//! Will hold Practical Byzantine Fault Tolerance (Castro and Liskov) as
//! supervised actors: `PBFTEngine` (pre-prepare, prepare, commit),
//! `ViewChanger`, `MessageAuthenticator` (MAC vectors) and
//! `CheckpointProtocol`, tolerating f < n/3 Byzantine replicas. Not built
//! yet: this crate compiles and exports nothing.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!(
    "consensus-pbft needs panic = \"unwind\": supervision restarts components whose handlers panic"
);
