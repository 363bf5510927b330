//! The CheckpointProtocol: checkpoints, stable checkpoints, watermarks
//! ([`core`]). It runs inside the replica actor (it owns no message of its
//! own beyond CHECKPOINT and the state transfer, which the replica feeds it).

pub mod core;
