//! # consensus-engine
//!
//! One API and one program for every protocol of the framework.
//!
//! * [`ConsensusEngine`]: start nodes, propose commands, find the leader,
//!   add and remove nodes, snapshot, read metrics; the protocol is chosen by
//!   [`ConsensusConfig::protocol`](consensus_actors::ConsensusConfig).
//! * The `consensus` program: `simulate` (a deterministic cluster in virtual
//!   time under faults, checked for safety and linearizability), `bench`
//!   (real-clock throughput) and `check-history` (linearizability of a
//!   recorded history).
//!
//! # The plug-in boundary
//!
//! A protocol crate plugs in by implementing the runtime's
//! [`ProtocolPlugin`] (build a node from a
//! [`NodeContext`](consensus_actors::sim::NodeContext) and a
//! [`NodeWiring`]) and [`NodeHandle`] (submit a command, tell who leads,
//! change membership, snapshot), both defined in
//! [`consensus_actors::plugin`] so the plug-in lives in the protocol's own
//! crate, then registering it by name in a [`Registry`]
//! ([`Registry::register`], or [`Registry::register_with`] for a variant
//! built by a factory of its own, e.g. a node with one component swapped).
//! Everything else (the workload, the nemesis, the checkers, the reports,
//! the benchmark, campaigns, the engine facade) is written once against
//! those traits; leadership is observed from the protocol-neutral safety
//! events every protocol reports. Raft (`consensus_raft::RaftPlugin`) is
//! the first plug-in; Paxos and PBFT are listed as planned and refused with
//! [`EngineError::ProtocolNotBuilt`] until theirs exist.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`plugin`] | (re-exported from the runtime) [`ProtocolPlugin`], [`NodeHandle`], [`NodeWiring`] and the request/answer types |
//! | [`registry`] | [`Registry`], [`PluginSpec`] (a protocol's name and plug-in factory) and the type-erased [`ProtocolDriver`] |
//! | [`engine`] | the [`ConsensusEngine`] facade and [`EngineMetrics`] |
//! | [`host`] | hosting a plug-in's nodes: in a simulation, or in a real-time [`LocalCluster`](host::LocalCluster) |
//! | [`network`] | the zero-delay in-process network of real-time clusters |
//! | [`node`] | `consensus node`: one node of a real cluster (disk, TCP, HTTP API) |
//! | [`observer`] | (re-exported from the runtime) leaderships, crashes and supervision events as the cluster runs |
//! | [`workload`] | simulated clients that record a history |
//! | [`faults`] | the `--faults` selection and its nemesis |
//! | [`simulate`] | one checked simulation run and its [`SimulationReport`] |
//! | [`timeline`] | a run over time, and its SVG picture |
//! | [`bench`](mod@bench) | the real-clock benchmark |
//! | [`campaign`] | a run per seed over a range of seeds, failing seeds with their replay command |
//! | [`cli`] | the flags that shape a run, and the replay command rendered back from a run |
//! | [`check`] | reading and checking recorded histories |
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod campaign;
pub mod check;
pub mod cli;
pub mod engine;
pub mod error;
pub mod faults;
pub mod host;
pub mod load;
pub mod network;
pub mod node;
pub mod registry;
pub mod simulate;
pub mod timeline;
pub mod workload;

pub use bench::{BenchCommand, BenchOptions, BenchReport};
pub use consensus_actors::{observer, plugin};
pub use engine::{ConsensusEngine, EngineMetrics, EngineOptions, LatencyStats};
pub use error::{EngineError, NodeError};
pub use faults::{Fault, FaultSelection};
pub use plugin::{
    Capabilities, Committed, NodeDirectory, NodeHandle, NodeInfo, NodeWiring, PluginNode,
    ProtocolPlugin,
};
pub use registry::{PluginFactory, PluginSpec, ProtocolDriver, Registry};
pub use simulate::{LatencySummary, SimulateOptions, SimulationReport, SimulationRun};
pub use workload::WorkloadOptions;
