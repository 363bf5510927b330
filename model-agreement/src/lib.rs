//! # model-agreement
//!
//! The nodes of a distributed training job agree on model state even when
//! some workers lie: gradients are ordered through a consensus group and
//! aggregated deterministically, so every replica holds a bit-identical
//! model.
#![deny(missing_docs)]

pub mod aggregation;
pub mod attack;
pub mod gradient_consensus;
pub mod parameter_sync;
pub mod sync_run;
pub mod task;
pub mod training;
pub mod version_vector;
pub mod worker;

pub use aggregation::{AggregationError, Aggregator};
pub use attack::{Attack, WorkerOutput};
pub use gradient_consensus::{
    GradientCommand, GradientConsensus, GradientOutput, Round, TrainingConfig,
};
pub use version_vector::{CausalOrder, VersionVector};
