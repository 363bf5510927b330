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
//! | [`engine`] | PBFTEngine: the engine core (normal case, execution, client table), its actor, and a whole replica in one core |
//! | [`checkpoint`] | CheckpointProtocol: checkpoints, stable checkpoints, watermarks, state transfer; core and actor |
//! | [`view_changer`] | ViewChanger: request timer, VIEW-CHANGE, NEW-VIEW computation and check, timeouts; core and actor |
//! | [`notes`] | the contract between the engine, the ViewChanger and the CheckpointProtocol (resync included) |
//! | [`client`] | the clients of a node: signed requests, f+1 matching replies |
//! | [`byzantine`] | Byzantine replicas: the stock replica with lying output, as a slot |
//! | [`twins`] | Twins: two instances of one replica sharing its identity, as a slot |
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
pub mod notes;
pub mod plugin;
pub mod safety;
pub mod sim;
pub mod twins;
pub mod types;
pub mod view_changer;

pub use plugin::{PbftConfig, PbftPlugin, PROTOCOL};
