//! The Learner: a value is chosen once a quorum of acceptors accepted it;
//! slots are delivered in order to the key-value state machine; gaps are
//! filled by asking peers (or by a peer's snapshot when they were
//! compacted); the proposing client gets its answer. Snapshots and log
//! compaction live here too (see [`core`] for why). Pure [`core`] and its
//! [`actor`].

pub mod actor;
pub mod core;

pub use self::actor::{
    GetLearnerState, GetLearnerStatus, Learner, LearnerOutputs, LearnerState, LearnerStatus,
    LearnerStorage, SnapshotTaken, TakeSnapshot,
};
pub use self::core::{ChosenRecord, LearnerCore, LearnerEffect, LearnerInput};
