//! # model-agreement
//!
//! Will let distributed training nodes agree on model state through the
//! consensus protocols: `GradientConsensus`, `ParameterSync` and
//! `VersionVector`. Not built yet: this crate compiles and exports nothing.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!("model-agreement needs panic = \"unwind\": supervision restarts components whose handlers panic");
