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
//! A protocol plugs in by implementing [`ProtocolPlugin`] (build a node
//! from a [`NodeContext`](consensus_actors::sim::NodeContext) and a
//! [`NodeWiring`]) and [`NodeHandle`] (submit a command, tell who leads,
//! change membership, snapshot), then registering in the [`Registry`].
//! Everything else (the workload, the nemesis, the checkers, the reports,
//! the benchmark, the engine facade) is written once against those two
//! traits. Raft is the first plug-in; Paxos and PBFT are listed as planned
//! and refused with [`EngineError::ProtocolNotBuilt`] until theirs exist.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`plugin`] | [`ProtocolPlugin`], [`NodeHandle`], [`NodeWiring`] and the request/answer types |
//! | [`registry`] | [`Registry`] and the type-erased [`ProtocolDriver`] |
//! | [`engine`] | the [`ConsensusEngine`] facade and [`EngineMetrics`] |
//! | [`host`] | hosting a plug-in's nodes: in a simulation, or in a real-time [`LocalCluster`](host::LocalCluster) |
//! | [`network`] | the zero-delay in-process network of real-time clusters |
//! | [`observer`] | leaderships, crashes and supervision events as the cluster runs |
//! | [`workload`] | simulated clients that record a history |
//! | [`faults`] | the `--faults` selection and its nemesis |
//! | [`simulate`] | one checked simulation run and its [`SimulationReport`] |
//! | [`timeline`] | a run over time, and its SVG picture |
//! | [`raft`] | the Raft plug-in |
//! | [`bench`](mod@bench) | the real-clock benchmark |
//! | [`check`] | reading and checking recorded histories |
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod check;
pub mod engine;
pub mod error;
pub mod faults;
pub mod host;
pub mod network;
pub mod observer;
pub mod plugin;
pub mod raft;
pub mod registry;
pub mod simulate;
pub mod timeline;
pub mod workload;

pub use bench::{BenchCommand, BenchOptions, BenchReport};
pub use engine::{ConsensusEngine, EngineMetrics, EngineOptions, LatencyStats};
pub use error::{EngineError, NodeError};
pub use faults::{Fault, FaultSelection};
pub use plugin::{
    Capabilities, Committed, NodeDirectory, NodeHandle, NodeInfo, NodeWiring, PluginNode,
    ProtocolPlugin,
};
pub use registry::{ProtocolDriver, Registry};
pub use simulate::{LatencySummary, SimulateOptions, SimulationReport, SimulationRun};
pub use workload::WorkloadOptions;
