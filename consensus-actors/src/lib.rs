//! # consensus-actors
//!
//! The runtime every protocol of this workspace stands on. Each box of a
//! protocol's architecture is an actix actor around a pure core; this crate
//! gives those actors what they share:
//!
//! | module | what it holds |
//! |---|---|
//! | [`types`] | ids, terms, indexes, log entries, roles, protocol names |
//! | [`config`] | [`ConsensusConfig`] and its validation |
//! | [`supervision`] | the per-node supervision tree that catches panics and restarts components |
//! | [`storage`] | storage traits (hard state, log, snapshots), a crash-aware in-memory store and a durable store on disk |
//! | [`transport`] | the network abstraction protocol code sends through |
//! | [`sim`] | deterministic simulation: `SimNetwork`, `Simulation`, paused clock, seeded RNG, traces |
//! | [`plugin`] | the plug-in boundary: [`ProtocolPlugin`](plugin::ProtocolPlugin) and [`NodeHandle`](plugin::NodeHandle), what a protocol crate implements to run under the engine |
//! | [`observer`] | [`ClusterObserver`](observer::ClusterObserver): leaderships, crashes and supervision events as a cluster runs |
//! | [`metrics`] | `LatencyTracker`, `ThroughputMeter` and a per-cluster metrics recorder |
//! | [`safety`] | the `SafetyVerifier`, the checker and sink, generic over a protocol's events |
//! | [`kv`] | the reference key-value state machine |
//! | [`history`] | client histories, JSON and Jepsen import, the linearizability checker |
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!("consensus-actors needs panic = \"unwind\": supervision restarts components whose handlers panic");

pub mod config;
pub mod history;
pub mod kv;
pub mod metrics;
pub mod observer;
pub mod plugin;
pub mod safety;
pub mod sim;
pub mod storage;
pub mod supervision;
pub mod transport;
pub mod types;

pub use config::{ConfigError, ConsensusConfig};
pub use types::{
    ClientId, ConsensusProtocol, LogEntry, LogId, LogIndex, NodeId, NodeState, Term,
    DEFAULT_PROTOCOL,
};
