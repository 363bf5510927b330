//! Runnable examples of the consensus framework, one concept each; run them
//! from the repository root with `cargo run --example NAME`:
//!
//! | example | shows |
//! |---|---|
//! | `library` | the README's library program: start a cluster, execute commands, find the leader, read metrics, shut down |
//! | `kv_cluster` | a 5-node Raft cluster through the `ConsensusEngine`: write, read, lose the leader, go on |
//! | `supervised_restart` | a component panics, its node's supervisor restarts it, the cluster never notices |
//! | `custom_topology` | replacing one Raft component (LeaderElection) with an actor of your own |
#![forbid(unsafe_code)]
