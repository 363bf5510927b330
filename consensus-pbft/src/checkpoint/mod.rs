//! The CheckpointProtocol: the book of checkpoints, stable checkpoints and
//! watermarks, and the component's core [`core::Checkpointer`] (votes,
//! stability, FETCH-STATE and state transfer), run by its supervised actor
//! ([`actor`]).

pub mod actor;
pub mod core;
