//! # model-agreement
//!
//! The nodes of a distributed training job agree on model state even when
//! some workers lie. Robust-aggregation libraries trust one server to
//! aggregate; here the gradients of each round are *ordered through a
//! consensus group* (Raft today) and every replica aggregates them with the
//! same deterministic rule, so every replica holds a bit-identical model,
//! checkable by its hash.
//!
//! # Components
//!
//! | component | what it is |
//! |---|---|
//! | [`VersionVector`] | causal order of model versions: increment, merge, compare (before, after, equal, concurrent) |
//! | [`Aggregator`] | mean, coordinate-wise median, trimmed mean, Krum, Multi-Krum, Bulyan, centered clipping; bounds on f checked; bit-identical results |
//! | [`GradientConsensus`] | the replicated state machine of training rounds: submissions, round closes and evictions of silent workers are log commands |
//! | [`ParameterSync`](parameter_sync::ParameterSync) | a replicated parameter server with BSP, SSP(s) and ASP, the bound enforced by the log; every push aggregated with the robust rule; silent workers evicted by a log command |
//! | [`replica`] | GradientConsensus and ParameterSync as *supervised actors* of each replica's training tier, one builder slot each ([`TrainingSlots`](replica::TrainingSlots)): they order through the replica's ordering layer and serve what their own replica applied |
//! | [`Attack`] | Byzantine worker behaviours: sign flip, Gaussian noise, "a little is enough", inner-product manipulation, equivocation, silence |
//! | [`worker`] | a worker's pure core and its actix actor |
//!
//! # Two tiers per replica
//!
//! Both state machines implement
//! [`StateMachine`](consensus_actors::kv::StateMachine), so any ordering
//! layer that replicates a `StateMachine` carries them; here they run
//! inside each Raft node's supervised LogReplicator (the *ordering tier*).
//! Next to it, each replica runs a *training tier* under its own
//! NodeSupervisor: the GradientConsensus or ParameterSync component that
//! workers talk to. It reaches the ordering layer only through an
//! [`Ordering`](replica::Ordering) handle (propose, read) and serves the
//! model its own replica's state machine reported, so a coordinator that
//! pulls from every replica and compares hashes catches a replica that
//! serves a model it did not apply (see `tests/training.rs`, where a slot
//! puts in such a liar).
//!
//! The ordering layer is Raft (crash faults) or PBFT (Byzantine replicas,
//! n ≥ 3f + 1; [`OrderingLayer`](training::OrderingLayer)): with PBFT, a
//! replica that equivocates as primary, signs wrong digests or forges
//! authenticators leaves every correct replica with the same model
//! (GradientConsensus, [`training`]) or the same parameters (ParameterSync,
//! [`sync_run`]; [`SyncSpec::ordering`](sync_run::SyncSpec::ordering)).
//!
//! # Using it
//!
//! Seven workers, two of them flipping their gradients ×100, Krum, three
//! Raft replicas, in virtual time:
//!
//! ```
//! use model_agreement::training::{run_training, TrainingSpec};
//! use model_agreement::{Aggregator, Attack};
//!
//! let mut spec = TrainingSpec::new(1, 7, 2, Attack::SignFlip { scale: 100.0 }, Aggregator::Krum);
//! spec.rounds = 30;
//! let report = run_training(&spec).unwrap();
//! assert!(report.final_distance < 0.1); // close to the true weights
//! assert!(report.replicas_identical); // every replica, the same bits
//! ```
//!
//! The aggregation rules are plain functions:
//!
//! ```
//! use model_agreement::{AggregationError, Aggregator};
//! let g = [vec![1.0f32, 0.0], vec![1.2, 0.1], vec![0.9, -0.1], vec![-100.0, 100.0], vec![1.1, 0.0]];
//! let refs: Vec<&[f32]> = g.iter().map(Vec::as_slice).collect();
//! assert_eq!(Aggregator::Median.aggregate(&refs, 1).unwrap(), vec![1.0, 0.0]);
//! assert!(matches!(
//!     Aggregator::Bulyan.aggregate(&refs, 1),
//!     Err(AggregationError::BoundViolated { bound: "n >= 4f+3", .. })
//! ));
//! ```
//!
//! The example `robust_training` (`cargo run --example robust_training --
//! --help`) runs the same from the command line, with `--json` and an SVG
//! report.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`version_vector`] | [`VersionVector`], [`CausalOrder`] |
//! | [`aggregation`] | the rules, their bounds and the determinism rules (canonical f64 summation) |
//! | [`attack`] | [`Attack`] and what a worker sends ([`WorkerOutput`]) |
//! | [`task`] | the seeded linear-regression task of the tests and the example |
//! | [`worker`] | `WorkerCore` (pure) and `WorkerActor` (actix) |
//! | [`gradient_consensus`] | [`GradientConsensus`], its commands, outputs, versions, and the `ReplicaProbe` observer |
//! | [`parameter_sync`] | `ParameterSync` and `Consistency` |
//! | [`replica`] | the training tier: `Ordering`, the components, their messages and slots |
//! | [`replica_sim`] | both tiers on simulated Raft: `ReplicaSimFactory`, `raft_ordering`, `Replicas` |
//! | [`replica_pbft`] | training tiers (GradientConsensus or ParameterSync) on simulated PBFT, Byzantine replicas included: `PbftReplicaSimFactory`, `pbft_ordering` |
//! | [`training`] | GradientConsensus on a simulated Raft or PBFT cluster: `run_training`, `run_training_with(slots)` |
//! | [`sync_run`] | ParameterSync on a simulated Raft or PBFT cluster: `run_parameter_sync`, `run_parameter_sync_with(slots)` |
//!
//! # Testing
//!
//! ```sh
//! cargo test -p model-agreement
//! cargo bench -p model-agreement --bench aggregation   # 10 gradients of 1,000,000 f32
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

// Supervision restarts a component whose handler panicked: the panic must
// unwind to the supervisor, so a build that aborts on panic is refused.
#[cfg(panic = "abort")]
compile_error!("model-agreement needs panic = \"unwind\": supervision restarts components whose handlers panic");

pub mod aggregation;
pub mod attack;
pub mod gradient_consensus;
pub mod parameter_sync;
pub mod replica;
pub mod replica_pbft;
pub mod replica_sim;
pub mod sync_run;
pub mod task;
pub mod training;
pub mod version_vector;
pub mod worker;

pub use aggregation::{AggregationError, Aggregator};
pub use attack::{Attack, WorkerOutput};
pub use gradient_consensus::{
    GradientCommand, GradientConsensus, GradientOutput, Round, TrainingConfig,
};
pub use version_vector::{CausalOrder, VersionVector};
