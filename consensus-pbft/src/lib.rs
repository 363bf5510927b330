//! # consensus-pbft
//!
//! Practical Byzantine Fault Tolerance (Castro and Liskov, OSDI'99 and
//! TOCS 2002) as supervised actix actors, tolerating `f` Byzantine
//! replicas among `n >= 3f + 1`.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`types`] | views and sequence numbers |
//! | [`messages`] | the paper's messages and their authentication |
//! | [`authenticator`] | MessageAuthenticator: HMAC-SHA256 authenticators, ed25519 signatures, inbound checks, the inbox actor |
//! | [`engine`] | PBFTEngine: the replica core (normal case, execution, client table) and its actor |
//! | [`checkpoint`] | CheckpointProtocol core: checkpoints, stable checkpoints, watermarks |
//! | [`view_changer`] | ViewChanger core: VIEW-CHANGE validity, NEW-VIEW computation, timeouts |
//! | [`client`] | the clients of a node: signed requests, f+1 matching replies |
//! | [`byzantine`] | Byzantine replicas: the stock replica with lying output, as a slot |
//! | [`evidence`] | evidence records against Byzantine replicas |
//! | [`node`] | the node's actors, messages and slots ([`node::PbftSlots`]) |
//! | [`plugin`] | [`PbftPlugin`], the engine's plug-in (`pbft`) |
//! | [`safety`] | PBFT's safety events and invariants |
//! | [`sim`] | [`sim::PbftSimFactory`]: PBFT nodes on any state machine for the deterministic simulation |
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!(
    "consensus-pbft needs panic = \"unwind\": supervision restarts components whose handlers panic"
);

pub mod authenticator;
pub mod byzantine;
pub mod checkpoint;
pub mod client;
pub mod engine;
pub mod evidence;
pub mod messages;
pub mod node;
pub mod plugin;
pub mod safety;
pub mod sim;
pub mod types;
pub mod view_changer;

pub use plugin::{PbftConfig, PbftPlugin, PROTOCOL};
