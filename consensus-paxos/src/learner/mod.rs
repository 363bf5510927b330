//! The Learner: a value is chosen once a quorum of acceptors accepted it;
//! slots are delivered in order to the key-value state machine; gaps are
//! filled by asking peers; the proposing client gets its answer. Pure
//! [`core`] and its [`actor`].

pub mod actor;
pub mod core;

pub use self::actor::{GetLearnerStatus, Learner, LearnerStatus, LearnerStorage};
pub use self::core::{ChosenRecord, LearnerCore, LearnerEffect, LearnerInput};
