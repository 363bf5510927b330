//! Deterministic simulation: a whole cluster in one thread, in virtual time,
//! every random choice drawn from one seed, every run summed up by a trace
//! hash.
//!
//! # Pieces
//!
//! * [`SimNetwork`]: the network actor. Every message between nodes crosses
//!   it and gets a seeded delay, jitter, loss, duplication and reordering;
//!   symmetric partitions and one-way link cuts can be set and lifted at any
//!   time with control messages ([`SetFaults`], [`Partition`], [`BlockLink`],
//!   [`UnblockLink`], [`Isolate`], [`Heal`]).
//! * [`TraceHandle`]: the run's trace. The network records every delivery
//!   (virtual time, sender, receiver, [`digest`] of the message); nodes
//!   record state changes. All of it feeds one 64-bit hash, the replay check:
//!   same seed and same build give the same [`TraceHandle::hash`].
//! * [`Simulation`]: the cluster on one actix System over a current-thread
//!   tokio runtime with a paused clock (virtual time jumps whenever every
//!   actor is idle). Nodes come from a [`NodeFactory`]; the simulation starts,
//!   crashes, restarts and adds them, drives the network's faults, and waits
//!   on conditions in virtual time.
//! * [`FaultSchedule`]: a nemesis that applies random faults over a run.
//! * [`rng`]: how the seed is split into independent streams (one per node
//!   incarnation, one for the network, one for the workload, one for the
//!   nemesis).
//!
//! # Rules for code that runs in a simulation
//!
//! Everything must stay on the simulation's thread and clock: no other
//! Arbiter, no `spawn_blocking`, no `std::time::Instant`/`SystemTime` (use
//! `tokio::time`), no randomness but the generator handed over in
//! [`NodeContext::rng`], and no iteration over `HashMap`/`HashSet` where the
//! order can change what is sent or recorded (use `BTreeMap`/`BTreeSet`).
//! Messages digested for the trace must encode deterministically (no hash
//! maps inside them either). tokio's timers have millisecond resolution.
//!
//! # Cost per message (budget for 1000x faster than real time)
//!
//! One message costs about 4,000 to 7,000 instructions end to end on this
//! runtime (`sim_speed` bench, callgrind): roughly a third in the network
//! (model, trace digest, delivery), the rest in actix (a mailbox hop into
//! the receiver, with a boxed envelope and a task wake-up; a node's port
//! takes the message on the sender's turn, without a hop), tokio's paused timer (two driver parks per virtual
//! instant at which anything happens) and the nodes' own work and timers.
//! That is about 0.4 to 0.7 µs of CPU per message, so a run stays 1000x
//! faster than real time up to roughly 1,500 to 2,500 messages per virtual
//! second. A protocol that must simulate 1000 client operations per
//! virtual second at 1000x has to batch: Raft replication with one entry
//! per append (8 messages per operation on 5 nodes) runs about 300x; the
//! same load batched every 5 ms about 900x (`cargo bench -p consensus-actors
//! --bench sim_speed`). Turning [`TraceConfig::skip_deliveries`] on saves
//! the digest of every message (and drops deliveries from the hash).
//!
//! # Example
//!
//! ```
//! use actix::prelude::*;
//! use consensus_actors::sim::{NodeContext, NodeFactory, SimConfig, Simulation, StartedNode};
//! use consensus_actors::transport::{Envelope, Transport};
//! use consensus_actors::NodeId;
//! use std::time::Duration;
//!
//! /// Each node greets every peer once and records what it hears.
//! struct Greeter { ctx_trace: consensus_actors::sim::TraceHandle, id: NodeId }
//! impl Actor for Greeter { type Context = Context<Self>; }
//! impl Handler<Envelope<String>> for Greeter {
//!     type Result = ();
//!     fn handle(&mut self, env: Envelope<String>, _: &mut Context<Self>) {
//!         self.ctx_trace.record_value(self.id, "heard", &env.msg);
//!     }
//! }
//! #[derive(Message)]
//! #[rtype(result = "()")]
//! struct Stop;
//! impl Handler<Stop> for Greeter {
//!     type Result = ();
//!     fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) { ctx.stop(); }
//! }
//!
//! struct Factory;
//! impl NodeFactory<String> for Factory {
//!     fn start_node(&mut self, ctx: NodeContext<String>) -> StartedNode<String> {
//!         ctx.transport.broadcast(&ctx.peers, &format!("hello from {}", ctx.id));
//!         let addr = Greeter { ctx_trace: ctx.trace.clone(), id: ctx.id }.start();
//!         let stop = addr.clone();
//!         StartedNode::new(addr.recipient(), move || stop.do_send(Stop))
//!     }
//!     fn on_crash(&mut self, _: NodeId) {}
//! }
//!
//! let run = || {
//!     Simulation::run(SimConfig::new(42, 3), Factory, |sim| async move {
//!         sim.run_for(Duration::from_secs(1)).await;
//!         sim.stats().delivered
//!     })
//!     .unwrap()
//! };
//! let (a, b) = (run(), run());
//! assert_eq!(a.result, 6);
//! assert_eq!(a.trace_hash, b.trace_hash);
//! ```

pub mod clock;
pub(crate) mod digest;
mod nemesis;
pub mod network;
pub mod rng;
mod simulation;
pub mod trace;

#[cfg(test)]
mod tests;

pub use nemesis::{FaultAction, FaultEvent, FaultKind, FaultSchedule, Scenario};
pub use network::{
    BlockLink, GetStats, Heal, Isolate, NetworkError, NetworkFaults, NetworkStats,
    NetworkStatsHandle, Partition, PortSwitch, SetFaults, SimNetwork, SimPort, UnblockLink,
};
pub use simulation::{
    block_on_paused, NodeContext, NodeFactory, SimConfig, SimError, SimOutcome, Simulation,
    StartedNode, Timeout,
};
pub use trace::{digest, fnv1a64, Fnv1a64, TraceConfig, TraceHandle, TraceKind, TraceRecord};
