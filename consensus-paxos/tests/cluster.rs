//! Paxos and Multi-Paxos clusters of supervised actors in the deterministic
//! simulation (paused clock, seeded network): an acceptor's promise
//! survives its crash because it is synced before it is answered; a
//! minority chooses nothing while the majority goes on; a Multi-Paxos
//! leader that crashes with commands in flight is replaced, and the cluster
//! converges on one log. Every test checks the Paxos invariants as it runs.
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::observer::ClusterObserver;
use consensus_actors::plugin::{NodeError, NodeHandle, NodeWiring, ProtocolPlugin, VoteRequest};
use consensus_actors::safety::{SafetySink, SharedChecker};
use consensus_actors::sim::{NodeContext, NodeFactory, SimConfig, Simulation, StartedNode};
use consensus_actors::storage::SyncFailure;
use consensus_actors::types::{ClientId, LogIndex, NodeId, NodeState, Term};
use consensus_paxos::config::{Mode, PaxosConfig};
use consensus_paxos::messages::PaxosMessage;
use consensus_paxos::safety::{self, PaxosEvent};
use consensus_paxos::slots::{LearnerSlot, ProposerSlot};
use consensus_paxos::{PaxosPlugin, MULTI_PAXOS, PAXOS};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

type Handles = Rc<RefCell<BTreeMap<NodeId, Rc<dyn NodeHandle>>>>;

/// Starts nodes through the plug-in, as the engine does.
struct Factory {
    plugin: PaxosPlugin,
    wiring: NodeWiring<PaxosEvent>,
    handles: Handles,
}

impl NodeFactory<PaxosMessage> for Factory {
    fn start_node(&mut self, ctx: NodeContext<PaxosMessage>) -> StartedNode<PaxosMessage> {
        let id = ctx.id;
        let node = self.plugin.start_node(ctx, &self.wiring);
        self.handles.borrow_mut().insert(id, node.handle);
        node.started
    }

    fn on_crash(&mut self, id: NodeId) {
        self.handles.borrow_mut().remove(&id);
        self.plugin.on_crash(id);
    }
}

fn factory(multi: bool, nodes: usize, checker: &SharedChecker<PaxosEvent>) -> (Factory, Handles) {
    let protocol = if multi { MULTI_PAXOS } else { PAXOS };
    let config = ConsensusConfig::for_protocol(protocol, nodes);
    let origin = Instant::now();
    let handles = Handles::default();
    let wiring = NodeWiring {
        config: config.clone(),
        safety: SafetySink::local(checker, origin),
        supervision: None,
        initial_members: (1..=nodes as u64).map(NodeId).collect(),
        direct_rpcs: true,
        observer: ClusterObserver::with_origin(origin),
        simulated: true,
    };
    let plugin = PaxosPlugin::new(&config).expect("a valid configuration");
    (
        Factory {
            plugin,
            wiring,
            handles: handles.clone(),
        },
        handles,
    )
}

/// Multi-Paxos nodes whose stock Learner does not offer to be the inbox:
/// the router is, and copies each peer's Accept to the Learner.
fn factory_router_inbox(nodes: usize, checker: &SharedChecker<PaxosEvent>) -> (Factory, Handles) {
    let (mut f, handles) = factory(true, nodes, checker);
    f.plugin = PaxosPlugin::with_setup(&f.wiring.config, |_, builder| {
        builder.learner(LearnerSlot::new(|ctx| {
            let mut stock = LearnerSlot::default().build(ctx);
            stock.handles_mut().inbox = None;
            stock
        }))
    })
    .expect("a valid configuration");
    (f, handles)
}

/// Multi-Paxos nodes whose stock Learner and Proposer take every local
/// message one mailbox message at a time (as a replacement that does not
/// offer the feeds would): no `LocalFeed` is taken.
fn factory_no_feeds(nodes: usize, checker: &SharedChecker<PaxosEvent>) -> (Factory, Handles) {
    let (mut f, handles) = factory(true, nodes, checker);
    f.plugin = PaxosPlugin::with_setup(&f.wiring.config, |_, builder| {
        builder
            .learner(LearnerSlot::new(|ctx| {
                let mut stock = LearnerSlot::default().build(ctx);
                stock.handles_mut().takes_proposed = None;
                stock.handles_mut().takes_own_accepted = None;
                stock
            }))
            .proposer(ProposerSlot::new(|ctx| {
                let mut stock = ProposerSlot::default().build(ctx);
                stock.handles_mut().takes_news = None;
                stock
            }))
    })
    .expect("a valid configuration");
    (f, handles)
}

fn handle(handles: &Handles, node: u64) -> Rc<dyn NodeHandle> {
    handles.borrow()[&NodeId(node)].clone()
}

async fn prepare(
    handles: &Handles,
    at: u64,
    candidate: u64,
    round: u64,
) -> Result<(Term, bool), NodeError> {
    handle(handles, at)
        .request_vote(VoteRequest {
            candidate_id: NodeId(candidate),
            term: Term(round),
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
        })
        .await
        .map(|r| (r.term, r.granted))
}

async fn leader(handles: &Handles) -> Option<NodeId> {
    let all: Vec<_> = handles.borrow().values().cloned().collect();
    for h in all {
        if let Ok(info) = h.info().await {
            if info.role == NodeState::Leader {
                return Some(info.node);
            }
        }
    }
    None
}

async fn wait_leader(handles: &Handles, except: &[NodeId]) -> NodeId {
    for _ in 0..500 {
        if let Some(l) = leader(handles).await.filter(|l| !except.contains(l)) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no leader in 5 s");
}

async fn submit(
    handles: &Handles,
    node: NodeId,
    command: KvCommand,
    wait: Duration,
) -> Option<Result<KvOutput, NodeError>> {
    let h = handles.borrow().get(&node).cloned()?;
    tokio::time::timeout(wait, h.submit(ClientId(1), command))
        .await
        .ok()
        .map(|r| r.map(|c| c.output))
}

/// Paxos Made Simple §2.2 (P1a) across a crash: a promise answered is a
/// promise kept. The answer to a Prepare is sent only after the promise is
/// synced: were it not, `MemStorage::crash` would drop it and the lower
/// ballot below would be granted. A sync that fails is never answered, so
/// the lost promise was never made.
#[test]
fn a_restarted_acceptor_keeps_its_promises() {
    let checker = SharedChecker::new(safety::checker_with_acceptors(3));
    let (f, handles) = factory(false, 3, &checker);
    Simulation::run(SimConfig::new(11, 3), f, |mut sim| async move {
        assert_eq!(prepare(&handles, 3, 1, 5).await, Ok((Term(5), true)));
        sim.crash(NodeId(3)).unwrap();
        sim.restart(NodeId(3)).unwrap();
        sim.run_for(Duration::from_millis(10)).await;
        assert_eq!(
            prepare(&handles, 3, 2, 4).await,
            Ok((Term(5), false)),
            "the restarted acceptor forgot its promise of round 5"
        );
        // A sync that fails: the acceptor does not answer and the node stops.
        assert!(handle(&handles, 3).fail_next_sync(SyncFailure::Torn));
        assert!(prepare(&handles, 3, 1, 9).await.is_err());
        sim.crash(NodeId(3)).unwrap();
        sim.restart(NodeId(3)).unwrap();
        sim.run_for(Duration::from_millis(10)).await;
        assert_eq!(prepare(&handles, 3, 2, 7).await, Ok((Term(7), true)));
    })
    .unwrap();
    assert!(checker.is_ok(), "{:?}", checker.violations());
}

/// A minority (the leader and one follower) chooses nothing: its commands
/// get no answer. The majority elects a leader of its own and commits.
#[test]
fn a_minority_chooses_nothing_and_the_majority_goes_on() {
    let checker = SharedChecker::new(safety::checker_with_acceptors(5));
    let (f, handles) = factory(true, 5, &checker);
    Simulation::run(SimConfig::new(5, 5), f, |sim| async move {
        let old = wait_leader(&handles, &[]).await;
        let put = |v: &str| KvCommand::put("k", v);
        assert_eq!(
            submit(&handles, old, put("before"), Duration::from_secs(2)).await,
            Some(Ok(KvOutput::Ok))
        );
        let buddy = if old == NodeId(1) {
            NodeId(2)
        } else {
            NodeId(1)
        };
        let minority = vec![old, buddy];
        let majority: Vec<NodeId> = (1..=5)
            .map(NodeId)
            .filter(|n| !minority.contains(n))
            .collect();
        sim.partition(vec![minority.clone(), majority.clone()])
            .unwrap();
        let lost = submit(&handles, old, put("minority"), Duration::from_secs(2)).await;
        assert!(
            !matches!(lost, Some(Ok(_))),
            "the minority committed: {lost:?}"
        );
        let new = wait_leader(&handles, &minority).await;
        assert!(majority.contains(&new));
        assert_eq!(
            submit(&handles, new, put("majority"), Duration::from_secs(2)).await,
            Some(Ok(KvOutput::Ok))
        );
        sim.heal();
        sim.run_for(Duration::from_secs(2)).await;
        let l = wait_leader(&handles, &[]).await;
        assert_eq!(
            submit(&handles, l, KvCommand::get("k"), Duration::from_secs(2)).await,
            Some(Ok(KvOutput::Value(Some("majority".into()))))
        );
    })
    .unwrap();
    assert!(checker.is_ok(), "{:?}", checker.violations());
}

/// Multi-Paxos: the leader crashes with commands in flight. A new leader
/// runs phase 1 over every unfinished slot (recovering what a quorum may
/// have chosen, no-ops in the holes); the old leader restarts from its
/// stores and catches up; every node ends with the same log.
#[test]
fn a_crashed_leader_is_replaced_and_every_node_converges() {
    for seed in [1, 2, 3] {
        let checker = SharedChecker::new(safety::checker_with_acceptors(5));
        let (f, handles) = factory(true, 5, &checker);
        Simulation::run(SimConfig::new(seed, 5), f, |mut sim| async move {
            let old = wait_leader(&handles, &[]).await;
            let h = handle(&handles, old.get());
            let in_flight: Vec<_> = (0..20)
                .map(|i| h.submit(ClientId(i), KvCommand::put(format!("k{i}"), "v")))
                .collect();
            drop(h);
            // Let some of them reach the acceptors, then crash the leader.
            tokio::time::sleep(Duration::from_millis(seed)).await;
            sim.crash(old).unwrap();
            let answers = futures::future::join_all(in_flight).await;
            let acknowledged: Vec<usize> = answers
                .iter()
                .enumerate()
                .filter(|(_, a)| a.as_ref().is_ok_and(|c| c.output == KvOutput::Ok))
                .map(|(i, _)| i)
                .collect();
            let new = wait_leader(&handles, &[old]).await;
            assert_eq!(
                submit(
                    &handles,
                    new,
                    KvCommand::put("after", "1"),
                    Duration::from_secs(2)
                )
                .await,
                Some(Ok(KvOutput::Ok))
            );
            sim.restart(old).unwrap();
            sim.run_for(Duration::from_secs(2)).await;
            let mut applied = Vec::new();
            for n in 1..=5 {
                applied.push(handle(&handles, n).info().await.unwrap().last_applied);
            }
            assert!(
                applied.iter().all(|a| *a == applied[0] && a.0 >= 1),
                "seed {seed}: {applied:?}"
            );
            // Reads go through the log: every acknowledged write survived
            // the crash, and the last write is read back.
            let l = wait_leader(&handles, &[]).await;
            for i in acknowledged {
                assert_eq!(
                    submit(
                        &handles,
                        l,
                        KvCommand::get(format!("k{i}")),
                        Duration::from_secs(2)
                    )
                    .await,
                    Some(Ok(KvOutput::Value(Some("v".into())))),
                    "seed {seed}: acknowledged k{i} lost"
                );
            }
            assert_eq!(
                submit(&handles, l, KvCommand::get("after"), Duration::from_secs(2)).await,
                Some(Ok(KvOutput::Value(Some("1".into()))))
            );
        })
        .unwrap();
        assert!(checker.is_ok(), "seed {seed}: {:?}", checker.violations());
    }
}

/// A Proposer that panics and is restarted by its supervisor never reuses
/// a ballot (which could put two values under one ballot in a slot): it
/// persists the highest ballot it used before each Prepare and starts
/// above it. Were it to start over at round 1, the acceptors' promise would
/// stay at round 1 and the Prepare of round 1 below would be granted.
#[test]
fn a_restarted_proposer_never_reuses_a_ballot() {
    consensus_actors::supervision::install_panic_hook();
    let checker = SharedChecker::new(safety::checker_with_acceptors(3));
    let (f, handles) = factory(false, 3, &checker);
    Simulation::run(SimConfig::new(3, 3), f, |sim| async move {
        let wait = Duration::from_secs(2);
        assert_eq!(
            submit(&handles, NodeId(1), KvCommand::put("k", "1"), wait).await,
            Some(Ok(KvOutput::Ok))
        );
        assert_eq!(prepare(&handles, 2, 1, 1).await, Ok((Term(1), true)));
        // The panics go through the components in turn: acceptor, proposer.
        let h = handle(&handles, 1);
        assert!(h.inject_panic());
        assert!(h.inject_panic());
        // Long enough for the Learner to tell the new Proposer where
        // delivery stands (slot 2 is next): the first Prepare then goes to
        // a fresh slot, where a reused ballot would go unnoticed.
        sim.run_for(Duration::from_millis(500)).await;
        assert_eq!(
            submit(&handles, NodeId(1), KvCommand::put("k", "2"), wait).await,
            Some(Ok(KvOutput::Ok))
        );
        let (promised, granted) = prepare(&handles, 2, 1, 1).await.unwrap();
        assert!(
            !granted && promised >= Term(2),
            "the restarted proposer used round 1 again (promise {promised:?})"
        );
    })
    .unwrap();
    assert!(checker.is_ok(), "{:?}", checker.violations());
}

/// A Multi-Paxos follower learns the decisions from the leader's next
/// Accept (its commit) or, with nothing more to propose, from the commit
/// the leader sends alone on its tick (every heartbeat / 5 = 10 ms): within
/// a few ticks of the leader, not at its next catch-up (every 200 ms).
/// With the stock Learner as the node's inbox, with the router as the
/// inbox (which copies each Accept to the Learner), and with components
/// that take no local feeds (one mailbox message per proposal, decision
/// and own Accepted); were the Accepts not seen, a round below would find
/// a follower behind.
#[test]
fn followers_learn_decisions_from_the_leaders_accepts_within_a_few_ticks() {
    type Build = fn(usize, &SharedChecker<PaxosEvent>) -> (Factory, Handles);
    let builds: [(&str, Build); 3] = [
        ("learner inbox", |n, c| factory(true, n, c)),
        ("router inbox", factory_router_inbox),
        ("no local feeds", factory_no_feeds),
    ];
    for (what, build) in builds {
        let checker = SharedChecker::new(safety::checker_with_acceptors(3));
        let (f, handles) = build(3, &checker);
        Simulation::run(SimConfig::new(7, 3), f, |_sim| async move {
            let leader = wait_leader(&handles, &[]).await;
            for round in 0..5 {
                for i in 0..10 {
                    let key = format!("k{round}-{i}");
                    assert_eq!(
                        submit(
                            &handles,
                            leader,
                            KvCommand::put(key, "v"),
                            Duration::from_secs(2)
                        )
                        .await,
                        Some(Ok(KvOutput::Ok)),
                        "{what}"
                    );
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
                let mut applied = Vec::new();
                for n in 1..=3 {
                    applied.push(handle(&handles, n).info().await.unwrap().last_applied);
                }
                assert!(
                    applied.iter().all(|a| *a == applied[0]),
                    "{what}, round {round}: {applied:?}"
                );
            }
        })
        .unwrap();
        assert!(checker.is_ok(), "{what}: {:?}", checker.violations());
    }
}

/// A one-node Multi-Paxos cluster: its own acceptor's Accepted alone
/// chooses a slot, so the Learner must be woken by it (it waits for no
/// peer). Were it left queued until the Learner's next tick (every
/// 50 ms), these 50 commands would take seconds of virtual time.
#[test]
fn a_one_node_cluster_chooses_on_its_own_acceptance_at_once() {
    let checker = SharedChecker::new(safety::checker_with_acceptors(1));
    let (f, handles) = factory(true, 1, &checker);
    Simulation::run(SimConfig::new(11, 1), f, |_sim| async move {
        let leader = wait_leader(&handles, &[]).await;
        let start = Instant::now();
        for i in 0..50 {
            assert_eq!(
                submit(
                    &handles,
                    leader,
                    KvCommand::put(format!("k{i}"), "v"),
                    Duration::from_secs(2)
                )
                .await,
                Some(Ok(KvOutput::Ok))
            );
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(50),
            "50 commands took {took:?} of virtual time"
        );
    })
    .unwrap();
    assert!(checker.is_ok(), "{:?}", checker.violations());
}

/// Thrifty phase 2 under a cut follower: once the leader counts on one
/// follower for each slot (after its first slots), cutting either
/// follower away leaves every command answered well within the retry
/// time: the other follower's batched answers choose the slots within a
/// tick, and the learner then counts on it.
#[test]
fn a_thrifty_leader_goes_on_at_once_when_either_follower_is_cut_off() {
    let checker = SharedChecker::new(safety::checker_with_acceptors(3));
    let (mut f, handles) = factory(true, 3, &checker);
    let mut cfg = PaxosConfig::from_consensus(Mode::Multi, &f.wiring.config);
    cfg.thrifty = true;
    f.plugin = PaxosPlugin::with_config(cfg).expect("a valid configuration");
    Simulation::run(SimConfig::new(13, 3), f, |sim| async move {
        let leader = wait_leader(&handles, &[]).await;
        let followers: Vec<NodeId> = (1..=3).map(NodeId).filter(|n| *n != leader).collect();
        let mut i = 0;
        let mut put = |handles: &Handles| {
            i += 1;
            let h = handles.clone();
            let key = format!("k{i}");
            async move { submit(&h, leader, KvCommand::put(key, "v"), Duration::from_secs(2)).await }
        };
        for _ in 0..40 {
            assert_eq!(put(&handles).await, Some(Ok(KvOutput::Ok)));
        }
        for cut in &followers {
            let rest: Vec<NodeId> = (1..=3).map(NodeId).filter(|n| n != cut).collect();
            sim.partition(vec![vec![*cut], rest]).unwrap();
            let mut slowest = Duration::ZERO;
            for _ in 0..40 {
                let start = Instant::now();
                assert_eq!(put(&handles).await, Some(Ok(KvOutput::Ok)), "{cut} cut");
                slowest = slowest.max(start.elapsed());
            }
            assert!(
                slowest < Duration::from_millis(100),
                "with {cut} cut a command took {slowest:?}"
            );
            sim.heal();
            sim.run_for(Duration::from_millis(500)).await;
        }
        assert_eq!(wait_leader(&handles, &[]).await, leader);
    })
    .unwrap();
    assert!(checker.is_ok(), "{:?}", checker.violations());
}
