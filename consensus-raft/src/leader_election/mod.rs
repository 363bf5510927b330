//! LeaderElection: when to campaign (randomized, seeded timeouts), pre-vote, vote counting (both majorities while joint), check-quorum, and the timing of leadership transfer. It owns no durable state: term, vote and log are the LogReplicator's, asked for with term-carrying requests.
//!
//! | file | holds |
//! |---|---|
//! | `core` | [`ElectionCore`]: the pure core (inputs in, effects out; no actix, no clock, no I/O), unit-tested rule by rule |
//! | `actor.rs` | [`LeaderElection`]: the thin supervised actix actor that owns the core and carries out its effects in order |
//! | `fixed.rs` | [`StaticLeaderElection`]: a replacement with a designated leader, for experiments and as a template |

pub mod actor;
pub mod core;
pub mod fixed;

pub use self::actor::*;
pub use self::core::*;
pub use self::fixed::StaticLeaderElection;
