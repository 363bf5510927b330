//! SnapshotCompactor: when to snapshot, and InstallSnapshot in chunks, both sides.
//!
//! | file | holds |
//! |---|---|
//! | `core` | [`SnapshotCore`]: the pure core (inputs in, effects out; no actix, no clock, no I/O), unit-tested rule by rule |
//! | `actor.rs` | [`SnapshotCompactor`]: the thin supervised actix actor that owns the core and carries out its effects in order |

pub mod actor;
pub mod core;

pub use self::actor::*;
pub use self::core::*;
