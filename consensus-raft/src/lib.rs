//! # consensus-raft
//!
//! Raft (Ongaro and Ousterhout, 2014, and Ongaro's thesis) as four
//! supervised actix actors around pure cores. Not a classroom Raft:
//! pre-vote, check-quorum and the leader lease on votes, leadership transfer,
//! pipelined and batched replication with fast back-off, ReadIndex reads,
//! joint-consensus membership changes with learner catch-up, log compaction
//! with chunked InstallSnapshot, and recovery from snapshot plus log.
//!
//! # The four components
//!
//! | component | owns | decides |
//! |---|---|---|
//! | **LogReplicator** | term, vote, log, commit index, state machine, role, configuration in effect | votes, term changes, appends, commits, applies, snapshots taken and installed |
//! | **LeaderElection** | timing | when to campaign (randomized, seeded timeouts), pre-vote, vote counting (both majorities while joint), check-quorum, transfer timing |
//! | **MembershipManager** | the change process | learner catch-up, `C_old,new` then `C_new`, one change at a time, a removed leader steps down |
//! | **SnapshotCompactor** | transfers | when to snapshot, InstallSnapshot chunks (both sides) |
//!
//! One owner for term, vote and log: the LogReplicator. The other three keep
//! read-only copies refreshed by [`events::RaftEvent`]s and ask the owner
//! with term-carrying requests (`BeginElection{expected_term}`,
//! `BecomeLeader{term}`, `ProposeConfig{term}`, ...) that it refuses when
//! stale. A vote is never decided on a stale copy of the log.
//!
//! Each core is a plain struct (no actix, no clock, no I/O): inputs in,
//! effects out, unit-tested rule by rule (Figure 2, §5.3, §5.4, §6, §7 of the
//! paper, the thesis' §3.10, §4.2.3, §6.4, §9.6). The actors carry the
//! effects out in order: hard state and entries are persisted and synced
//! before any message, client result or event that depends on them.
//!
//! # Using it
//!
//! A 3-node cluster in the deterministic simulation (virtual time, so this
//! runs in milliseconds):
//!
//! ```
//! use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
//! use consensus_actors::sim::{SimConfig, Simulation};
//! use consensus_actors::types::{ClientId, NodeId, NodeState};
//! use consensus_raft::{sim::RaftSimFactory, RaftConfig};
//! use std::time::Duration;
//!
//! let factory = RaftSimFactory::new(RaftConfig::default(), (1..=3).map(NodeId), KvStore::default);
//! let out = Simulation::run(SimConfig::new(7, 3), factory, |sim| async move {
//!     sim.run_for(Duration::from_secs(1)).await; // an election happens
//!     let mut leader = None;
//!     for node in sim.factory().nodes() {
//!         if node.status().await.is_some_and(|s| s.role == NodeState::Leader) {
//!             leader = Some(node);
//!         }
//!     }
//!     let leader = leader.expect("a leader is elected within a second");
//!     assert_eq!(leader.propose(KvCommand::put("x", "1"), ClientId(1)).await, Ok(KvOutput::Ok));
//!     leader.get("x").await // a linearizable read (ReadIndex)
//! })
//! .unwrap();
//! assert_eq!(out.result, Ok(Some("1".to_string())));
//! ```
//!
//! Outside the simulation, build each node with [`node::RaftNodeBuilder`]
//! (any [`StateMachine`](consensus_actors::kv::StateMachine), any storage
//! implementing the workspace's storage traits, any network) and call the
//! client API on the returned [`node::RaftNode`]: `propose` (`propose_at`
//! also tells the committed log position),
//! `propose_batch`, `read`/`get`,
//! `add_node`, `remove_node`, `transfer_leadership`, `status`.
//!
//! # Testing
//!
//! ```sh
//! cargo test -p consensus-raft                       # cores, scenarios, supervision, 200-seed campaign
//! RAFT_CAMPAIGN_SEEDS=10000 cargo test --release -p consensus-raft --test campaign -- --nocapture
//! RAFT_FAILOVER_SEEDS=1000 cargo test --release -p consensus-raft --test failover -- --nocapture
//! cargo run --release -p consensus-raft --example throughput -- 4096 3 64
//! ```
//!
//! # Layout
//!
//! One folder per box of the architecture, its pure core and its actor side
//! by side:
//!
//! | module | holds |
//! |---|---|
//! | [`log_replicator`] | the LogReplicator: `core/` (the single owner of term, vote and log; one file per handler: vote, append, commit, read, transfer, snapshot) and `actor.rs` |
//! | [`leader_election`] | LeaderElection: `core.rs` (timeouts, pre-vote, vote counting, check-quorum, transfer timing) and `actor.rs` |
//! | [`membership_manager`] | MembershipManager: `core.rs` (learner catch-up, C_old,new then C_new) and `actor.rs` |
//! | [`snapshot_compactor`] | SnapshotCompactor: `core.rs` (when to snapshot, InstallSnapshot chunks) and `actor.rs` |
//! | [`router`] | the inbound router: the messages the LogReplicator does not handle, to the component that does |
//! | [`actors`] | the contract between components: the messages, the owner's handles and its event subscription, and the actors re-exported |
//! | [`slots`] | a slot per replaceable component in the node builder |
//! | [`node`] | [`node::RaftNodeBuilder`]: one node as a supervision tree, and the client API |
//! | [`messages`] | the paper's messages as types, and the wire enum [`messages::RaftMessage`] |
//! | [`configuration`] | joint-capable [`Membership`] (the cluster configuration) and its quorum rules |
//! | [`log`] | the in-memory log suffix after the last snapshot |
//! | [`events`] | what the owner of term/vote/log tells the other components |
//! | [`sim`] | [`sim::RaftSimFactory`]: Raft nodes for the deterministic simulation |
//! | [`config`] | [`RaftConfig`]: the shared settings plus Raft's own knobs |
//! | [`error`] | client errors and the owner's refusals |
//! | [`safety`] | Raft's safety events and its invariants (Figure 3), checked by the runtime's verifier |
//! | [`plugin`] | [`RaftPlugin`]: Raft behind the runtime's plug-in traits, registered by the engine as `raft` |
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!(
    "consensus-raft needs panic = \"unwind\": supervision restarts components whose handlers panic"
);

pub mod actors;
pub mod config;
pub mod configuration;
pub mod error;
pub mod events;
pub mod leader_election;
pub mod log;
pub mod log_replicator;
pub mod membership_manager;
pub mod messages;
pub mod node;
pub mod plugin;
pub mod router;
pub mod safety;
pub mod sim;
pub mod slots;
pub mod snapshot_compactor;

pub use config::RaftConfig;
pub use configuration::Membership;
pub use messages::{RaftCommand, RaftMessage};
pub use plugin::{RaftPlugin, PROTOCOL};
