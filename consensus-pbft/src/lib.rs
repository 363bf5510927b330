//! # consensus-pbft
//!
//! Practical Byzantine Fault Tolerance (Castro and Liskov). Today this crate
//! holds PBFT's vocabulary ([`types`]: views, sequence numbers) and its
//! safety properties ([`safety`]: the events replicas report and the
//! invariants checked over them). The components (`PBFTEngine`,
//! `ViewChanger`, `MessageAuthenticator`, `CheckpointProtocol`) and the
//! engine plug-in are not built yet.
#![deny(missing_docs)]

pub mod safety;
pub mod types;
