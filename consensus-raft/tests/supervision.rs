//! Supervision: a panic in any of the four Raft components (on the leader or
//! a follower, under load) is followed by a restart of exactly the children
//! the node's strategy names; the restarted components rebuild their state
//! from storage and from the owner's events; the cluster keeps committing
//! and every Raft safety invariant holds throughout.
#![forbid(unsafe_code)]

use actix::prelude::*;
use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
use consensus_actors::safety::{SafetySink, SharedChecker};
use consensus_actors::sim::{block_on_paused, SimConfig, Simulation};
use consensus_actors::supervision::{
    EventLog, GetEvents, RestartIntensity, RestartStrategy, SupervisionEventKind,
};
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_raft::node::{components, RaftNode};
use consensus_raft::sim::{NodeRegistry, RaftSimFactory};
use consensus_raft::RaftConfig;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

/// Children in start order (the router comes last).
const CHILDREN: [&str; 5] = [
    components::LOG_REPLICATOR,
    components::LEADER_ELECTION,
    components::MEMBERSHIP_MANAGER,
    components::SNAPSHOT_COMPACTOR,
    components::ROUTER,
];

async fn leader(reg: &NodeRegistry<KvStore>) -> Option<RaftNode<KvStore>> {
    for _ in 0..400 {
        for n in reg.all() {
            if n.status()
                .await
                .is_some_and(|s| s.role == NodeState::Leader)
            {
                return Some(n);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Writes through whichever node leads until `n` writes succeeded.
async fn write_n(reg: &NodeRegistry<KvStore>, from: u64, n: u64) {
    let mut done = 0;
    let began = Instant::now();
    while done < n {
        assert!(began.elapsed() < Duration::from_secs(20), "no progress");
        let Some(l) = leader(reg).await else { continue };
        let cmd = KvCommand::put(format!("k{}", from + done), "v");
        if let Ok(Ok(KvOutput::Ok)) =
            tokio::time::timeout(Duration::from_millis(500), l.propose(cmd, ClientId(1))).await
        {
            done += 1;
        }
    }
}

fn expected_restarts(strategy: RestartStrategy, failed: &str) -> BTreeSet<String> {
    let i = CHILDREN.iter().position(|c| *c == failed).unwrap();
    let range = strategy.affected(i, CHILDREN.len());
    CHILDREN[range].iter().map(|s| s.to_string()).collect()
}

fn panic_and_recover(
    strategy: RestartStrategy,
    component: &'static str,
    on_leader: bool,
    seed: u64,
) {
    consensus_actors::supervision::install_panic_hook();
    block_on_paused(async move {
        let origin = Instant::now();
        let checker = SharedChecker::new(consensus_raft::safety::checker());
        let log = EventLog::new().start();
        let factory =
            RaftSimFactory::new(RaftConfig::default(), (1..=3).map(NodeId), KvStore::default)
                .with_safety(SafetySink::local(&checker, origin))
                .with_supervision(strategy, RestartIntensity::default())
                .with_supervision_events(log.clone().recipient())
                .with_time_base(origin);
        let sim = Simulation::start(SimConfig::new(seed, 3), factory).expect("sim");
        let reg = sim.factory().registry();
        write_n(&reg, 0, 20).await;
        let l = leader(&reg).await.expect("leader");
        let victim = if on_leader {
            l.clone()
        } else {
            reg.all().into_iter().find(|n| n.id() != l.id()).unwrap()
        };
        // Load in flight while the component dies.
        let writer = {
            let reg = reg.clone();
            actix::spawn(async move { write_n(&reg, 100, 50).await })
        };
        tokio::time::sleep(Duration::from_millis(3)).await;
        assert!(victim.inject_panic(component));
        writer.await.unwrap();
        sim.run_for(Duration::from_millis(500)).await;
        write_n(&reg, 200, 10).await;

        let events = log.send(GetEvents).await.unwrap();
        let mine: Vec<_> = events.iter().filter(|e| e.node == victim.id()).collect();
        assert!(
            mine.iter().any(|e| e.component == component
                && matches!(e.kind, SupervisionEventKind::ChildPanicked { .. })),
            "{strategy:?} {component}: {mine:?}"
        );
        let restarted: BTreeSet<String> = mine
            .iter()
            .filter(|e| matches!(e.kind, SupervisionEventKind::ChildRestarted { .. }))
            .map(|e| e.component.clone())
            .collect();
        assert_eq!(
            restarted,
            expected_restarts(strategy, component),
            "{strategy:?} {component}"
        );
        assert!(
            events.iter().all(|e| e.node == victim.id()),
            "only the victim's tree moved: {events:?}"
        );
        // Every node converges on the same applied state.
        let mut applied = BTreeSet::new();
        for _ in 0..100 {
            applied.clear();
            for n in reg.all() {
                if let Some(s) = n.status().await {
                    applied.insert(s.last_applied);
                }
            }
            if applied.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(applied.len(), 1, "{strategy:?} {component}: {applied:?}");
        let l = leader(&reg).await.expect("leader");
        assert_eq!(l.get("k209").await, Ok(Some("v".into())));
        let report = checker.report();
        assert!(report.events_observed > 100);
        assert!(
            report.ok,
            "{strategy:?} {component}: {:#?}",
            report.violations
        );
    })
    .expect("runtime");
}

fn every_component(strategy: RestartStrategy) {
    for (i, component) in components::ALL.into_iter().enumerate() {
        for on_leader in [true, false] {
            panic_and_recover(strategy, component, on_leader, 100 + i as u64);
        }
    }
}

#[test]
fn one_for_one_restarts_only_the_failed_component() {
    every_component(RestartStrategy::OneForOne);
}

#[test]
fn rest_for_one_restarts_the_failed_component_and_its_dependents() {
    every_component(RestartStrategy::RestForOne);
}

#[test]
fn one_for_all_restarts_the_whole_node() {
    every_component(RestartStrategy::OneForAll);
}
