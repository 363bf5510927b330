//! # consensus-paxos
//!
//! Single-decree Paxos per slot (`paxos`) and Multi-Paxos (`multi-paxos`)
//! as supervised actix actors replicating the reference key-value store.
//!
//! Paxos in a few lines (Lamport, "Paxos Made Simple"): a proposer picks a
//! ballot and asks acceptors to *promise* to ignore lower ballots (phase 1);
//! a quorum of promises tells it the value of the highest ballot any of them
//! accepted, which it must propose (or its own value if none); it then asks
//! them to *accept* (phase 2); a value accepted by a quorum at one ballot is
//! *chosen*, and every later ballot can only propose it again. Multi-Paxos
//! runs one instance per log slot and lets a stable leader do phase 1 once
//! for all later slots.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`types`] | ballots, slots, values (batches of commands or no-ops) |
//! | [`messages`] | the paper's messages, one type each |
//! | [`config`] | protocol mode, timers, window, batching, (flexible) quorums |
//! | [`acceptor`] | the Acceptor: pure core + actor over a synced store |
//! | [`proposer`] | the Proposer (and the Multi-Paxos leader's duties) |
//! | [`learner`] | the Learner: quorum counting, in-order delivery, catch-up, client answers; snapshots and log compaction |
//! | [`election`] | ballot leader election (Multi-Paxos, after OmniPaxos) |
//! | [`wiring`] | the messages between components of a node |
//! | [`router`], [`slots`], [`node`] | the node: supervision tree, builder slots, client API |
//! | [`plugin`] | [`PaxosPlugin`], what the engine registers as `paxos` and `multi-paxos` |
//! | [`safety`], [`report`] | safety events and invariants; events as the cores hand them out |
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!("consensus-paxos needs panic = \"unwind\": supervision restarts components whose handlers panic");

pub mod acceptor;
pub mod config;
pub mod election;
pub mod error;
pub mod learner;
pub mod messages;
pub mod node;
pub mod plugin;
pub mod proposer;
pub mod report;
pub mod ring;
pub mod router;
pub mod safety;
pub mod slots;
pub mod types;
pub mod wiring;

pub use config::{Mode, PaxosConfig};
pub use error::ProposeError;
pub use node::{NodeStores, PaxosNode, PaxosNodeBuilder};
pub use plugin::{PaxosPlugin, MULTI_PAXOS, PAXOS};

#[cfg(test)]
pub(crate) mod harness;
#[cfg(test)]
mod tests;
