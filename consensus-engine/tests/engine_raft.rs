//! The ConsensusEngine facade on Raft, in virtual time (paused tokio
//! clock): start a cluster, elect, propose and read back, redirect, direct
//! RPCs, add and remove a node, snapshot, lose the leader, metrics; and the
//! refusals (unbuilt protocol, impossible configuration, no System).
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvOutput, KvStore, StateMachine};
use consensus_actors::sim::block_on_paused;
use consensus_actors::types::{ClientId, ConsensusProtocol, LogId, LogIndex, NodeId, Term};
use consensus_engine::{ConsensusEngine, EngineError};
use std::time::Duration;

mod support;

use support::ids;

fn cluster(n: u64) -> ConsensusEngine {
    support::start(ConsensusConfig {
        cluster_size: n as usize,
        ..ConsensusConfig::default()
    })
}

#[test]
fn elect_propose_read_back_and_metrics() {
    block_on_paused(async {
        let engine = cluster(3);
        let leader = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        assert!(ids(3).contains(&leader));
        assert_eq!(engine.get_leader().await, Some(leader));

        let put = engine
            .execute(KvCommand::put("x", "1"), ClientId(1))
            .await
            .unwrap();
        assert_eq!(put.output, KvOutput::Ok);
        let get = engine
            .execute(KvCommand::get("x"), ClientId(1))
            .await
            .unwrap();
        assert_eq!(get.output, KvOutput::Value(Some("1".into())));
        let cas = engine
            .execute(KvCommand::cas("x", Some("1"), "2"), ClientId(2))
            .await
            .unwrap();
        assert_eq!(cas.output, KvOutput::CasOk);

        // A follower names the leader.
        let follower = ids(3).into_iter().find(|&n| n != leader).unwrap();
        match engine
            .propose_to(follower, KvCommand::put("y", "1"), ClientId(1))
            .await
        {
            Err(EngineError::NotLeader { node, leader: hint }) => {
                assert_eq!(node, follower);
                assert_eq!(hint, Some(leader));
            }
            other => panic!("unexpected {other:?}"),
        }

        let info = engine.node_info(leader).await.unwrap();
        assert_eq!(info.leader, Some(leader));
        assert_eq!(info.members, ids(3));
        assert!(info.commit_index >= LogIndex(4), "{info:?}");

        let m = engine.get_metrics();
        assert_eq!(m.protocol, consensus_raft::PROTOCOL);
        assert_eq!(m.nodes_running, 3);
        assert_eq!(m.committed, 3);
        assert_eq!(m.failed, 0);
        assert_eq!(m.latency_us.count, 3);
        // The in-process network has no delay and the clock is virtual:
        // commits take no virtual time at all.
        assert_eq!(m.latency_us.max, 0);
        assert_eq!(m.throughput.total, 3);
        assert!(m.leader_changes >= 1);
        assert_eq!(m.safety_ok, Some(true));
        assert_eq!(m.component_restarts, 0);
        let json = serde_json::to_value(&m).unwrap();
        assert!(json["latency_us"]["p99"].is_u64());
        assert!(json["throughput"]["ops_per_sec_1s"].is_number());
    })
    .unwrap();
}

/// `propose` returns the log entry each command became: the leader's term,
/// consecutive indexes, the command and the client; every node's log holds
/// an entry of that term at that index (an AppendEntries heartbeat that
/// names it as the previous entry is accepted, one that names another term
/// is refused), and the state machine applied the commands in that order.
#[test]
fn propose_returns_the_committed_log_entry() {
    block_on_paused(async {
        let engine = cluster(3);
        let leader = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        let term = Term(engine.node_info(leader).await.unwrap().epoch);
        let mut entries = Vec::new();
        for i in 0..5u64 {
            let command = KvCommand::put("x", format!("v{i}"));
            let committed = engine.propose(command, ClientId(10 + i)).await.unwrap();
            assert_eq!(committed.output, KvOutput::Ok);
            let entry = committed.log_id.expect("propose reports the log position");
            assert_eq!(entry.term, term);
            if let Some(prev) = entries.last().map(|e: &LogId| e.index) {
                assert_eq!(entry.index, LogIndex(prev.get() + 1));
            }
            entries.push(entry);
        }
        // Index 1 holds the leader's no-op: the first command comes after.
        assert!(entries[0].index >= LogIndex(2), "{:?}", entries[0]);
        let last = entries[4].index;
        // Proposing to the leader directly takes the next position.
        let direct = engine
            .propose_to(leader, KvCommand::get("x"), ClientId(1))
            .await
            .unwrap();
        assert_eq!(direct.output, KvOutput::Value(Some("v4".into())));
        assert_eq!(
            direct.log_id.map(|id| (id.term, id.index)),
            Some((term, LogIndex(last.get() + 1)))
        );
        // Wait until every node committed them, then check each log.
        for _ in 0..100 {
            let mut all = true;
            for n in ids(3) {
                all &= engine.node_info(n).await.unwrap().commit_index >= last;
            }
            if all {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for n in ids(3).into_iter().filter(|&n| n != leader) {
            for e in &entries {
                let (_, matched) = engine
                    .append_entries(n, leader, term, e.index, e.term, Vec::new(), LogIndex(0))
                    .await
                    .unwrap();
                assert!(matched, "node {n} has term {} at {}", e.term, e.index);
                let (_, other) = engine
                    .append_entries(
                        n,
                        leader,
                        term,
                        e.index,
                        Term(e.term.get() + 1),
                        Vec::new(),
                        LogIndex(0),
                    )
                    .await
                    .unwrap();
                assert!(!other, "node {n}: another term at {}", e.index);
            }
        }
        let got = engine
            .execute(KvCommand::get("x"), ClientId(1))
            .await
            .unwrap();
        assert_eq!(got.output, KvOutput::Value(Some("v4".into())));
        assert_eq!(
            got.log_id.map(|id| id.index),
            Some(LogIndex(last.get() + 2))
        );
        assert_eq!(engine.get_metrics().safety_ok, Some(true));
    })
    .unwrap();
}

#[test]
fn snapshot_holds_the_replicated_state() {
    block_on_paused(async {
        let engine = cluster(3);
        for i in 0..10 {
            engine
                .execute(
                    KvCommand::put(format!("k{i}"), format!("v{i}")),
                    ClientId(1),
                )
                .await
                .unwrap();
        }
        let bytes = engine.create_snapshot().await.unwrap();
        let mut restored = KvStore::default();
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.len(), 10);
        assert_eq!(restored.get("k7"), Some("v7"));
    })
    .unwrap();
}

#[test]
fn add_and_remove_nodes() {
    block_on_paused(async {
        let engine = cluster(3);
        let leader = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        engine
            .execute(KvCommand::put("a", "1"), ClientId(1))
            .await
            .unwrap();
        engine.add_node(NodeId(4)).await.unwrap();
        assert_eq!(engine.running_nodes(), ids(4));
        let info = engine.node_info(leader).await.unwrap();
        assert_eq!(info.members, ids(4));
        assert!(matches!(
            engine.add_node(NodeId(4)).await,
            Err(EngineError::NodeExists(NodeId(4)))
        ));

        let victim = ids(3).into_iter().find(|&n| n != leader).unwrap();
        engine.remove_node(victim).await.unwrap();
        assert!(!engine.running_nodes().contains(&victim));
        let info = engine.node_info(leader).await.unwrap();
        assert_eq!(info.members.len(), 3);
        assert!(!info.members.contains(&victim));
        // The new member has the data and the cluster goes on.
        let got = engine
            .execute(KvCommand::get("a"), ClientId(1))
            .await
            .unwrap();
        assert_eq!(got.output, KvOutput::Value(Some("1".into())));
        let four = engine.node_info(NodeId(4)).await.unwrap();
        assert!(four.last_applied >= LogIndex(2), "{four:?}");
    })
    .unwrap();
}

#[test]
fn losing_the_leader_elects_another_and_nothing_is_lost() {
    block_on_paused(async {
        let engine = cluster(5);
        let first = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        engine
            .execute(KvCommand::put("k", "before"), ClientId(1))
            .await
            .unwrap();
        engine.stop_node(first).unwrap();
        let second = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        assert_ne!(second, first);
        let got = engine
            .execute(KvCommand::get("k"), ClientId(1))
            .await
            .unwrap();
        assert_eq!(got.output, KvOutput::Value(Some("before".into())));
        engine.restart_node(first).unwrap();
        assert_eq!(engine.running_nodes(), ids(5));
        assert!(engine.get_metrics().leader_changes >= 2);
        assert_eq!(engine.get_metrics().crashes, 1);
    })
    .unwrap();
}

#[test]
fn direct_request_vote_and_append_entries() {
    block_on_paused(async {
        let engine = cluster(3);
        let leader = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        engine
            .execute(KvCommand::put("x", "1"), ClientId(1))
            .await
            .unwrap();
        let follower = ids(3).into_iter().find(|&n| n != leader).unwrap();
        let term = Term(engine.node_info(leader).await.unwrap().epoch);
        // A stale candidate (term 0, empty log) is refused, and told the term.
        let (t, granted) = engine
            .request_vote(follower, leader, Term(0), LogIndex(0), Term(0))
            .await
            .unwrap();
        assert_eq!((t, granted), (term, false));
        // An AppendEntries from a stale leader is refused too.
        let (t, ok) = engine
            .append_entries(
                follower,
                leader,
                Term(0),
                LogIndex(0),
                Term(0),
                Vec::new(),
                LogIndex(0),
            )
            .await
            .unwrap();
        assert_eq!((t, ok), (term, false));
        // A heartbeat from the current leader matching the empty prefix is
        // accepted.
        let (t, ok) = engine
            .append_entries(
                follower,
                leader,
                term,
                LogIndex(0),
                Term(0),
                Vec::new(),
                LogIndex(0),
            )
            .await
            .unwrap();
        assert_eq!((t, ok), (term, true));
        // The cluster is unharmed.
        engine
            .execute(KvCommand::put("x", "2"), ClientId(1))
            .await
            .unwrap();
        assert_eq!(engine.get_metrics().safety_ok, Some(true));
    })
    .unwrap();
}

#[test]
fn refusals_are_typed() {
    let p = ConsensusProtocol::named("hotstuff");
    let cfg = ConsensusConfig::for_protocol(p.clone(), 4);
    match ConsensusEngine::new(cfg) {
        Err(EngineError::ProtocolNotBuilt { protocol, reason }) => {
            assert_eq!(protocol, p);
            assert!(reason.contains("no plug-in is registered"), "{reason}");
        }
        other => panic!("{p}: unexpected {other:?}"),
    }
    // PBFT tolerating f = 1 needs 3f + 1 = 4 replicas.
    let mut three = ConsensusConfig::for_protocol(ConsensusProtocol::named("pbft"), 3);
    three.byzantine_tolerance = true;
    three.max_byzantine_nodes = 1;
    assert!(matches!(
        ConsensusEngine::new(three),
        Err(EngineError::Config(
            consensus_actors::config::ConfigError::TooFewForByzantine {
                n: 3,
                f: 1,
                needed: 4
            }
        ))
    ));
    // Byzantine tolerance with the default protocol selects PBFT.
    let engine =
        ConsensusEngine::new(ConsensusConfig::for_protocol(Default::default(), 4).byzantine());
    assert_eq!(
        engine.map(|e| e.protocol()).ok(),
        Some(ConsensusProtocol::named("pbft"))
    );
    let bad = ConsensusConfig {
        cluster_size: 0,
        ..ConsensusConfig::default()
    };
    assert!(matches!(
        ConsensusEngine::new(bad),
        Err(EngineError::Config(_))
    ));
    // Outside an actix System nothing can start.
    let engine = ConsensusEngine::new(ConsensusConfig::default()).unwrap();
    assert!(matches!(
        engine.start_node(NodeId(1), &ids(5)),
        Err(EngineError::InvalidSetting(m)) if m.contains("actix System")
    ));
    block_on_paused(async {
        let engine = cluster(3);
        assert!(matches!(
            engine.start_node(NodeId(2), &ids(3)),
            Err(EngineError::NodeExists(NodeId(2)))
        ));
        assert!(matches!(
            engine.node_info(NodeId(9)).await,
            Err(EngineError::UnknownNode(NodeId(9)))
        ));
    })
    .unwrap();
}

/// Issue #18: `start_node` refuses a membership that does not include the
/// node, names a node twice, disagrees with the configuration's
/// `cluster_size` or with the nodes already started, and starts nothing
/// then; `start_cluster` starts the configured cluster in one call.
#[test]
fn start_node_refuses_a_contradicting_membership() {
    block_on_paused(async {
        let engine = ConsensusEngine::new(ConsensusConfig {
            cluster_size: 3,
            ..ConsensusConfig::default()
        })
        .unwrap();
        let refused = |r: Result<(), EngineError>, node: u64, words: &str| match r {
            Err(EngineError::Membership { node: n, reason }) => {
                assert_eq!(n, NodeId(node));
                assert!(reason.contains(words), "{reason}");
            }
            other => panic!("expected a membership refusal, got {other:?}"),
        };
        refused(
            engine.start_node(NodeId(4), &ids(3)),
            4,
            "do not include the node itself",
        );
        refused(
            engine.start_node(NodeId(1), &ids(5)),
            1,
            "cluster_size is 3",
        );
        refused(
            engine.start_node(NodeId(1), &[NodeId(1), NodeId(2), NodeId(2)]),
            1,
            "twice",
        );
        assert!(engine.running_nodes().is_empty(), "nothing was started");
        engine.start_node(NodeId(1), &ids(3)).unwrap();
        refused(
            engine.start_node(NodeId(2), &[NodeId(1), NodeId(2), NodeId(7)]),
            2,
            "differ from [n1, n2, n3]",
        );
        assert_eq!(engine.running_nodes(), vec![NodeId(1)]);
        // The peers may come in any order.
        engine
            .start_node(NodeId(2), &[NodeId(3), NodeId(2), NodeId(1)])
            .unwrap();
        engine.start_node(NodeId(3), &ids(3)).unwrap();
        engine
            .execute(KvCommand::put("a", "1"), ClientId(1))
            .await
            .unwrap();

        let whole = ConsensusEngine::new(ConsensusConfig {
            cluster_size: 3,
            ..ConsensusConfig::default()
        })
        .unwrap();
        assert_eq!(whole.start_cluster().unwrap(), ids(3));
        assert_eq!(whole.running_nodes(), ids(3));
        whole
            .execute(KvCommand::put("a", "1"), ClientId(1))
            .await
            .unwrap();
    })
    .unwrap();
}

/// Issue #18: a node removed from the cluster is not a crash in the
/// metrics; a stopped node is.
#[test]
fn remove_node_is_not_counted_as_a_crash() {
    block_on_paused(async {
        let engine = cluster(3);
        let leader = engine
            .wait_for_leader(Duration::from_secs(5))
            .await
            .unwrap();
        let victim = ids(3).into_iter().find(|&n| n != leader).unwrap();
        engine.remove_node(victim).await.unwrap();
        assert!(!engine.running_nodes().contains(&victim));
        let m = engine.get_metrics();
        assert_eq!(m.crashes, 0, "{m:?}");
        assert_eq!(m.nodes_running, 2);
        // A crash still counts.
        let other = engine
            .running_nodes()
            .into_iter()
            .find(|&n| n != leader)
            .unwrap();
        engine.stop_node(other).unwrap();
        assert_eq!(engine.get_metrics().crashes, 1);
    })
    .unwrap();
}

/// Issue #18: with no node running, `propose`, `execute`,
/// `create_snapshot`, `remove_node` and `wait_for_leader` fail at once
/// (no virtual time passes) saying no node is running, both before any
/// node started and after every node stopped.
#[test]
fn requests_without_a_running_node_fail_at_once() {
    block_on_paused(async {
        let engine = ConsensusEngine::new(ConsensusConfig {
            cluster_size: 3,
            ..ConsensusConfig::default()
        })
        .unwrap();
        assert_no_node_running(&engine).await;
        for id in ids(3) {
            engine.start_node(id, &ids(3)).unwrap();
        }
        engine
            .execute(KvCommand::put("x", "1"), ClientId(1))
            .await
            .unwrap();
        for id in ids(3) {
            engine.stop_node(id).unwrap();
        }
        assert_no_node_running(&engine).await;
    })
    .unwrap();
}

/// Every request that needs a node fails at once with
/// [`EngineError::NoNodeRunning`].
async fn assert_no_node_running(engine: &ConsensusEngine) {
    let began = tokio::time::Instant::now();
    let no_node = |e: EngineError| {
        assert_eq!(e, EngineError::NoNodeRunning);
        assert!(e.to_string().contains("no node is running"));
    };
    no_node(
        engine
            .propose(KvCommand::put("x", "1"), ClientId(1))
            .await
            .unwrap_err(),
    );
    no_node(
        engine
            .execute(KvCommand::get("x"), ClientId(1))
            .await
            .unwrap_err(),
    );
    no_node(engine.create_snapshot().await.unwrap_err());
    no_node(engine.remove_node(NodeId(2)).await.unwrap_err());
    no_node(
        engine
            .wait_for_leader(Duration::from_secs(10))
            .await
            .unwrap_err(),
    );
    assert_eq!(tokio::time::Instant::now(), began, "no time was waited");
}
