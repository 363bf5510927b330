//! Failover time: how long (virtual time) a 5-node cluster with default
//! settings (election timeouts 150–300 ms, heartbeats every 50 ms, pre-vote
//! and check-quorum on) takes from the leader's crash to a new leader that
//! has committed a client write. Measured over many seeds; the distribution
//! is printed and bounded.
//!
//! ```sh
//! RAFT_FAILOVER_SEEDS=1000 cargo test --release -p consensus-raft --test failover -- --nocapture
//! ```
#![forbid(unsafe_code)]

mod common;

use common::*;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::types::ClientId;
use consensus_raft::RaftConfig;
use std::time::Duration;
use tokio::time::Instant;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Crashes the leader and returns (time to a new leader, time to its
/// first commit).
fn failover(seed: u64) -> (Duration, Duration) {
    with_cluster(seed, 5, RaftConfig::default(), |mut c| async move {
        let (old, _) = c.wait_for_leader(&[], secs(3)).await.expect("leader");
        for i in 0..5 {
            assert_eq!(
                c.propose(KvCommand::put(format!("k{i}"), "v"), secs(1))
                    .await,
                Ok(KvOutput::Ok)
            );
        }
        // Crash at a random point of the heartbeat period.
        let mut rng = c.sim.rng_for("failover");
        let offset = rand::Rng::random_range(&mut rng, 0..50);
        c.sim.run_for(ms(offset)).await;
        c.sim.crash(old).unwrap();
        let crashed = Instant::now();
        let others: Vec<u64> = (1..=5).filter(|&n| n != old.get()).collect();
        let mut elected = None;
        loop {
            if elected.is_none() {
                if let Some((l, _)) = c.leader(&others).await {
                    elected = Some((l, crashed.elapsed()));
                }
            }
            if let Some((l, at)) = elected {
                let r = c
                    .node(l.get())
                    .propose(KvCommand::put("after", "v"), ClientId(1))
                    .await;
                if r == Ok(KvOutput::Ok) {
                    c.assert_safe();
                    return (at, crashed.elapsed());
                }
                elected = None;
            }
            assert!(crashed.elapsed() < secs(10), "no failover for seed {seed}");
            tokio::time::sleep(ms(1)).await;
        }
    })
}

#[test]
fn failover_time_distribution() {
    let seeds = std::env::var("RAFT_FAILOVER_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100u64);
    let (mut elect, mut commit): (Vec<_>, Vec<_>) = (1..=seeds).map(failover).unzip();
    elect.sort();
    commit.sort();
    for (name, d) in [("new leader", &elect), ("first commit", &commit)] {
        println!(
            "failover to {name} over {seeds} seeds: min {:?} p50 {:?} p90 {:?} p99 {:?} max {:?}",
            d[0],
            percentile(d, 0.5),
            percentile(d, 0.9),
            percentile(d, 0.99),
            d[d.len() - 1]
        );
    }
    // Detection needs at least the minimum election timeout minus one
    // heartbeat interval; a pre-vote and a vote round trip follow. Split
    // pre-votes are rare: the worst case stays within two maximum timeouts.
    assert!(elect[0] >= ms(100), "{:?}", elect[0]);
    assert!(
        percentile(&elect, 0.5) <= ms(350),
        "{:?}",
        percentile(&elect, 0.5)
    );
    assert!(
        commit[commit.len() - 1] <= ms(700),
        "{:?}",
        commit[commit.len() - 1]
    );
}
