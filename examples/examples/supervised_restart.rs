//! A component panics; its node's supervisor restarts it from storage and
//! the cluster goes on as if nothing happened.
//!
//! Every Raft node is a supervision tree: LogReplicator, LeaderElection,
//! MembershipManager and SnapshotCompactor run as children of a
//! `NodeSupervisor` that catches their panics and restarts them (at most N
//! restarts in T, then the node is declared failed).
//!
//! Run with `cargo run --example supervised_restart`.
#![forbid(unsafe_code)]

use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::{ClientId, ConsensusConfig, NodeId};
use consensus_engine::{ConsensusEngine, EngineError};
use std::time::Duration;

#[actix::main]
async fn main() -> Result<(), EngineError> {
    // Panics of supervised components are logged instead of printed.
    consensus_actors::supervision::install_panic_hook();
    let engine = ConsensusEngine::new(ConsensusConfig {
        cluster_size: 3,
        ..ConsensusConfig::default()
    })?;
    let members: Vec<NodeId> = (1..=3).map(NodeId).collect();
    for &id in &members {
        engine.start_node(id, &members)?;
    }
    let leader = engine.wait_for_leader(Duration::from_secs(5)).await?;
    engine
        .execute(KvCommand::put("x", "1"), ClientId(1))
        .await?;

    // The leader's LogReplicator (the owner of term, vote and log) panics.
    engine.inject_panic(leader)?;
    println!("injected a panic into {leader}'s log-replicator");

    // Its supervisor restarts it; it rebuilds its state from storage.
    for _ in 0..100 {
        if engine.get_metrics().component_restarts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = engine.get_metrics();
    println!(
        "{} component failure(s), {} restart(s), {} node failure(s)",
        m.component_failures, m.component_restarts, m.node_failures
    );
    assert_eq!(m.component_restarts, 1);

    // Nothing was lost, and the cluster still commits.
    let read = engine.execute(KvCommand::get("x"), ClientId(1)).await?;
    assert_eq!(read.output, KvOutput::Value(Some("1".into())));
    engine
        .execute(KvCommand::put("x", "2"), ClientId(1))
        .await?;
    println!(
        "x = {:?} after the restart; safety {:?}",
        read.output,
        engine.get_metrics().safety_ok
    );
    Ok(())
}
