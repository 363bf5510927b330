//! The per-node supervision tree.
//!
//! actix alone does not restart an actor whose handler panics: the task dies
//! and its mailbox is lost. Here every component of a node runs as a *child*
//! of that node's [`NodeSupervisor`]:
//!
//! - Each child's context is polled inside `catch_unwind`. A panic (in a
//!   handler, `started()`, `stopping()`, `stopped()` or `restarting()`) or
//!   the actor stopping itself is a *failure*: the child waits, its mailbox
//!   kept, and the supervisor is told.
//! - The supervisor applies its [`RestartStrategy`] (one-for-one,
//!   one-for-all, rest-for-one). Restarting a child uses actix's own restart
//!   path: spawned futures and timers are cancelled, `Supervised::restarting`
//!   is called on the same actor value, then `started()` runs again. The actor
//!   must rebuild its state from storage there (never trust what a crash
//!   would have lost) and set its timers again in `started()`. The mailbox
//!   survives, so every `Addr`/`Recipient` other components hold keeps
//!   working; only the message being handled when the panic hit is lost (its
//!   sender sees `MailboxError`).
//! - A [`RestartIntensity`] bounds restarts (at most N within T, in virtual
//!   time). One failure more and the node is declared failed: every child is
//!   stopped (their mailboxes closed), [`SupervisionEventKind::NodeFailed`] is
//!   emitted and the supervisor stops. Other nodes are untouched.
//! - Every failure, restart and node stop is a [`SupervisionEvent`] sent to
//!   subscribers (tests, metrics, the safety verifier).
//!
//! Everything runs on the current thread (children are `spawn_local`ed), so
//! the deterministic simulation stays deterministic. No `SystemService`, no
//! Arbiters.
//!
//! # Building a node
//!
//! ```
//! use actix::prelude::*;
//! use consensus_actors::supervision::{ChildSlot, RestartStrategy, SupervisorBuilder};
//! use consensus_actors::NodeId;
//!
//! struct Ping { peer: Addr<Pong> }
//! impl Actor for Ping { type Context = Context<Self>; }
//! impl Supervised for Ping {}
//! struct Pong;
//! impl Actor for Pong { type Context = Context<Self>; }
//! impl Supervised for Pong {}
//!
//! actix::System::new().block_on(async {
//!     let mut tree = SupervisorBuilder::new(NodeId(1)).strategy(RestartStrategy::RestForOne);
//!     // Two-step start: the address exists before the actor that needs it.
//!     let pong_slot = ChildSlot::<Pong>::new();
//!     let pong = pong_slot.address();
//!     tree.spawn_child("ping", |_| Ping { peer: pong.clone() }).unwrap();
//!     tree.start_child("pong", pong_slot, Pong).unwrap();
//!     let supervisor = tree.start();
//!     supervisor.send(consensus_actors::supervision::Shutdown).await.unwrap();
//!     assert!(!pong.connected());
//! });
//! ```

mod child;
mod node;
mod policy;
#[cfg(test)]
mod tests;

pub use child::{install_panic_hook, ChildSlot};
pub use node::{
    EventLog, FailNode, GetEvents, GetStatus, NodeSupervisor, RestartChild, Shutdown, Subscribe,
    SupervisorBuilder,
};
pub use policy::{RestartDecision, RestartIntensity, RestartStrategy, RestartTracker};

use crate::types::NodeId;
use actix::Message;
use serde::{Deserialize, Serialize};
use std::rc::Rc;

/// Something that happened in a node's supervision tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Message)]
#[rtype(result = "()")]
pub struct SupervisionEvent {
    /// The node whose tree this is.
    pub node: NodeId,
    /// The child concerned; empty for node-wide events.
    pub component: String,
    /// What happened.
    pub kind: SupervisionEventKind,
    /// Virtual time since the supervisor's time base, in microseconds.
    pub at_us: u64,
}

/// The kinds of [`SupervisionEvent`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupervisionEventKind {
    /// The child panicked with this message.
    ChildPanicked {
        /// The panic message.
        reason: String,
    },
    /// The child stopped itself (its context finished) while the node runs:
    /// a failure, handled like a panic.
    ChildStopped,
    /// The child was restarted: `by_strategy` is true when it was restarted
    /// because a sibling failed (one-for-all, rest-for-one), false when it
    /// failed itself or was restarted by [`RestartChild`].
    ChildRestarted {
        /// Restarted for a sibling's failure.
        by_strategy: bool,
    },
    /// The restart intensity was exceeded (or a component sent
    /// [`FailNode`]); every child is stopped and the supervisor stops.
    NodeFailed {
        /// Why (which child failed last, how, and the intensity).
        reason: String,
    },
    /// The node was shut down on request ([`Shutdown`]).
    NodeShutdown,
}

/// Where a child is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildState {
    /// Running (or about to run after a restart).
    Running,
    /// Failed; waiting for the supervisor's decision. Messages queue.
    AwaitingRestart,
    /// Stopped for good: the actor and its mailbox are gone.
    Stopped,
}

/// One child in a [`NodeStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildStatus {
    /// The child's name.
    pub name: String,
    /// How many times it has been restarted (for any reason).
    pub restarts: u32,
    /// Where it is now.
    pub state: ChildState,
}

/// A node's supervision tree at one moment ([`GetStatus`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: NodeId,
    /// The supervisor is running its children.
    pub running: bool,
    /// The restart intensity was exceeded.
    pub failed: bool,
    /// The children, in start order.
    pub children: Vec<ChildStatus>,
    /// Restarts counted in the intensity window so far.
    pub restarts_in_window: u32,
}

/// Errors of the supervision API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SupervisionError {
    /// Two children of one node with the same name.
    #[error("node {node} already has a child named {name:?}")]
    DuplicateChild {
        /// The node.
        node: NodeId,
        /// The repeated name.
        name: String,
    },
    /// No child with this name.
    #[error("node {node} has no child named {name:?}")]
    UnknownChild {
        /// The node.
        node: NodeId,
        /// The name asked for.
        name: String,
    },
    /// The node has failed or been shut down.
    #[error("node {node} is not running")]
    NodeNotRunning {
        /// The node.
        node: NodeId,
    },
}

/// Names a child in logs.
#[derive(Clone, Debug)]
pub(crate) struct ChildTag {
    pub node: NodeId,
    pub name: Rc<str>,
}
