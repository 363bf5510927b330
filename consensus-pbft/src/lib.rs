//! # consensus-pbft
//!
//! Practical Byzantine Fault Tolerance (Castro and Liskov). Today this crate
//! holds PBFT's vocabulary ([`types`]: views, sequence numbers) and its
//! safety properties ([`safety`]: the events replicas report and the
//! invariants checked over them). The components (`PBFTEngine`,
//! `ViewChanger`, `MessageAuthenticator`, `CheckpointProtocol`) and the
//! engine plug-in are not built yet.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!(
    "consensus-pbft needs panic = \"unwind\": supervision restarts components whose handlers panic"
);

pub mod safety;
pub mod types;
