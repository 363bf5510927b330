//! MembershipManager: learner catch-up, then `C_old,new`, then `C_new` (joint consensus), one change at a time; a removed leader steps down.
//!
//! | file | holds |
//! |---|---|
//! | `core` | [`MembershipCore`]: the pure core (inputs in, effects out; no actix, no clock, no I/O), unit-tested rule by rule |
//! | `actor.rs` | [`MembershipManager`]: the thin supervised actix actor that owns the core and carries out its effects in order |

pub mod actor;
pub mod core;

pub use self::actor::*;
pub use self::core::*;
