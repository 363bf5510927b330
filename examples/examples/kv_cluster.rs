//! A 5-node Raft cluster behind the `ConsensusEngine`: write, read, lose
//! the leader, and go on.
//!
//! Run with `cargo run --example kv_cluster`.
#![forbid(unsafe_code)]

use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::{ClientId, ConsensusConfig, NodeId};
use consensus_engine::{ConsensusEngine, EngineError};
use std::time::Duration;

#[actix::main]
async fn main() -> Result<(), EngineError> {
    // Raft, five nodes, the spec's timings (elections in 150-300 ms).
    let engine = ConsensusEngine::new(ConsensusConfig::default())?;
    let members: Vec<NodeId> = (1..=5).map(NodeId).collect();
    for &id in &members {
        engine.start_node(id, &members)?;
    }
    let leader = engine.wait_for_leader(Duration::from_secs(5)).await?;
    println!("{leader} leads");

    // Writes and reads go through the replicated log.
    let client = ClientId(1);
    engine
        .execute(KvCommand::put("greeting", "hello"), client)
        .await?;
    let read = engine.execute(KvCommand::get("greeting"), client).await?;
    println!("greeting = {:?}", read.output);

    // Lose the leader: the four others elect a new one and keep the data.
    engine.stop_node(leader)?;
    println!("{leader} crashed");
    let next = engine.wait_for_leader(Duration::from_secs(5)).await?;
    println!("{next} leads now");
    let read = engine.execute(KvCommand::get("greeting"), client).await?;
    assert_eq!(read.output, KvOutput::Value(Some("hello".into())));
    engine
        .execute(KvCommand::put("greeting", "still here"), client)
        .await?;

    // The crashed node comes back from its durable state and catches up.
    engine.restart_node(leader)?;
    let read = engine.execute(KvCommand::get("greeting"), client).await?;
    println!("greeting = {:?}", read.output);

    let m = engine.get_metrics();
    println!(
        "{} commands committed, latency p50 {} us / p99 {} us, {} leaderships, safety {}",
        m.committed,
        m.latency_us.p50,
        m.latency_us.p99,
        m.leader_changes,
        if m.safety_ok == Some(true) {
            "ok"
        } else {
            "VIOLATED"
        }
    );
    Ok(())
}
