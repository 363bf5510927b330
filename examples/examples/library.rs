//! The framework as a library: start an in-process Raft cluster, execute
//! commands, find the leader, read the metrics and shut down.
//!
//! Run with `cargo run --example library`. The README's "Use it as a
//! library" section shows this same program; CI runs it, so it cannot rot.
#![forbid(unsafe_code)]

use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::{ClientId, ConsensusConfig};
use consensus_engine::{ConsensusEngine, EngineError};
use std::time::Duration;

fn main() -> Result<(), EngineError> {
    // The nodes are actix actors: they run on an actix System (here on the
    // real clock; tests use consensus_actors::sim::block_on_paused).
    actix::System::new().block_on(async {
        // Raft (the default protocol) on three nodes: the configuration is
        // the one place that says how many.
        let config = ConsensusConfig {
            cluster_size: 3,
            ..ConsensusConfig::default()
        };
        let engine = ConsensusEngine::new(config)?;
        let members = engine.start_cluster()?;
        println!("started {members:?}");

        let leader = engine.wait_for_leader(Duration::from_secs(5)).await?;
        println!("{leader} leads");

        // Every command answers with where it was committed and what
        // applying it returned.
        let client = ClientId(1);
        let put = engine
            .propose(KvCommand::put("greeting", "hello"), client)
            .await?;
        println!("put committed at {:?}: {:?}", put.log_id, put.output);
        let get = engine.execute(KvCommand::get("greeting"), client).await?;
        assert_eq!(get.output, KvOutput::Value(Some("hello".into())));
        let cas = engine
            .execute(KvCommand::cas("greeting", Some("hello"), "bye"), client)
            .await?;
        assert_eq!(cas.output, KvOutput::CasOk);
        println!("greeting was {:?}, now \"bye\"", get.output);

        let metrics = engine.get_metrics();
        println!(
            "{} commands committed, {} failed, latency p50 {} us / p99 {} us, leader {:?}, \
             {} leaderships, safety {:?}",
            metrics.committed,
            metrics.failed,
            metrics.latency_us.p50,
            metrics.latency_us.p99,
            metrics.leader,
            metrics.leader_changes,
            metrics.safety_ok
        );
        assert_eq!(metrics.committed, 3);
        assert_eq!(metrics.safety_ok, Some(true));

        // Dropping the engine stops its nodes.
        drop(engine);
        Ok(())
    })
}

/// CI runs the program (this example is built as a test: see
/// `examples/Cargo.toml`).
#[cfg(test)]
mod tests {
    #[test]
    fn the_library_program_runs() {
        super::main().unwrap();
    }

    /// The README shows this very program (its code above this module).
    #[test]
    fn the_readme_shows_this_program() {
        let readme = include_str!("../../README.md");
        let program: Vec<&str> = include_str!("library.rs")
            .lines()
            .filter(|l| !l.starts_with("//!"))
            .take_while(|l| !l.starts_with("/// CI runs the program"))
            .collect();
        let program = program.join("\n");
        assert!(
            readme.contains(program.trim()),
            "README.md's library program differs from examples/examples/library.rs"
        );
    }
}
