//! LogReplicator: the one owner of term, vote, log, commit index, state machine, role and configuration in effect; the node's inbox.
//!
//! | file | holds |
//! |---|---|
//! | `core` | [`ReplicationCore`]: the pure core (inputs in, effects out; no actix, no clock, no I/O), unit-tested rule by rule |
//! | `actor.rs` | [`LogReplicator`]: the thin supervised actix actor that owns the core and carries out its effects in order |

pub mod actor;
pub mod core;

pub use self::actor::*;
pub use self::core::*;
