//! Tests of the simulation with a small dummy protocol: nodes that gossip
//! pings to random peers on seeded timers and answer with pongs, or simply
//! record what reaches them.

use super::*;
use crate::transport::{Envelope, Transport};
use crate::types::NodeId;
use actix::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use tokio::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Msg {
    Ping { seq: u64 },
    Pong { seq: u64 },
    Data(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Received {
    from: NodeId,
    msg: Msg,
    incarnation: u32,
}

#[derive(Default)]
struct SharedState {
    received: BTreeMap<NodeId, Vec<Received>>,
    transports: BTreeMap<NodeId, Transport<Msg>>,
    incarnations: BTreeMap<NodeId, u32>,
    crashed: Vec<NodeId>,
}

#[derive(Clone, Default)]
struct Shared(Rc<RefCell<SharedState>>);

impl Shared {
    /// Sends as node `from`, through the transport its latest incarnation got.
    fn send(&self, from: u64, to: u64, msg: Msg) {
        let t = self.0.borrow().transports[&NodeId(from)].clone();
        t.send(NodeId(to), msg);
    }

    fn received(&self, node: u64) -> Vec<Received> {
        self.0
            .borrow()
            .received
            .get(&NodeId(node))
            .cloned()
            .unwrap_or_default()
    }

    fn data_from(&self, node: u64, from: u64) -> Vec<u64> {
        self.received(node)
            .into_iter()
            .filter(|r| r.from == NodeId(from))
            .filter_map(|r| match r.msg {
                Msg::Data(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    fn total_received(&self) -> usize {
        self.0.borrow().received.values().map(Vec::len).sum()
    }
}

struct TestNode {
    id: NodeId,
    incarnation: u32,
    peers: Vec<NodeId>,
    transport: Transport<Msg>,
    rng: ChaCha8Rng,
    trace: TraceHandle,
    shared: Shared,
    /// Gossip period range in ms; `None`: passive node.
    gossip_ms: Option<(u64, u64)>,
    next_seq: u64,
}

impl TestNode {
    fn schedule_tick(&mut self, ctx: &mut Context<Self>) {
        if let Some((lo, hi)) = self.gossip_ms {
            let wait = Duration::from_millis(self.rng.random_range(lo..=hi));
            ctx.run_later(wait, |act, ctx| act.tick(ctx));
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if !self.peers.is_empty() {
            let to = self.peers[self.rng.random_range(0..self.peers.len())];
            self.next_seq += 1;
            self.transport.send(to, Msg::Ping { seq: self.next_seq });
            if self.next_seq.is_multiple_of(10) {
                self.trace
                    .record_value(self.id, "pinged", &(self.next_seq, to));
            }
        }
        self.schedule_tick(ctx);
    }
}

impl Actor for TestNode {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.trace
            .record_value(self.id, "started", &self.incarnation);
        self.schedule_tick(ctx);
    }
}

impl Handler<Envelope<Msg>> for TestNode {
    type Result = ();

    fn handle(&mut self, env: Envelope<Msg>, _: &mut Context<Self>) {
        self.trace
            .record_value(self.id, "received", &(env.from, &env.msg));
        if let (Some(_), Msg::Ping { seq }) = (self.gossip_ms, &env.msg) {
            self.transport.send(env.from, Msg::Pong { seq: *seq });
        }
        self.shared
            .0
            .borrow_mut()
            .received
            .entry(self.id)
            .or_default()
            .push(Received {
                from: env.from,
                msg: env.msg,
                incarnation: self.incarnation,
            });
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<Stop> for TestNode {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

struct TestFactory {
    shared: Shared,
    gossip_ms: Option<(u64, u64)>,
}

impl TestFactory {
    fn passive() -> Self {
        Self {
            shared: Shared::default(),
            gossip_ms: None,
        }
    }

    fn gossip() -> Self {
        Self {
            shared: Shared::default(),
            gossip_ms: Some((5, 40)),
        }
    }
}

impl NodeFactory<Msg> for TestFactory {
    fn start_node(&mut self, ctx: NodeContext<Msg>) -> StartedNode<Msg> {
        {
            let mut st = self.shared.0.borrow_mut();
            st.transports.insert(ctx.id, ctx.transport.clone());
            st.incarnations.insert(ctx.id, ctx.incarnation);
        }
        let addr = TestNode {
            id: ctx.id,
            incarnation: ctx.incarnation,
            peers: ctx.peers,
            transport: ctx.transport,
            rng: ctx.rng,
            trace: ctx.trace,
            shared: self.shared.clone(),
            gossip_ms: self.gossip_ms,
            next_seq: 0,
        }
        .start();
        let stop = addr.clone();
        StartedNode::new(addr.recipient(), move || stop.do_send(Stop))
    }

    fn on_crash(&mut self, id: NodeId) {
        self.shared.0.borrow_mut().crashed.push(id);
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A gossip run with every kind of fault: the workload the replay checks use.
fn chaotic_run(seed: u64) -> SimOutcome<(NetworkStats, Vec<FaultEvent>)> {
    let mut cfg = SimConfig::new(seed, 5);
    cfg.network = NetworkFaults {
        base_delay: ms(2),
        jitter: ms(3),
        loss: 0.05,
        duplicate: 0.05,
        reorder: 0.1,
        reorder_window: ms(20),
    };
    Simulation::run(cfg, TestFactory::gossip(), |mut sim| async move {
        let mut nemesis = FaultSchedule::new(2).with_interval(ms(100), ms(500));
        let events = nemesis.run(&mut sim, Duration::from_secs(10)).await;
        sim.recover();
        sim.run_for(Duration::from_secs(1)).await;
        (sim.stats(), events)
    })
    .expect("simulation runs")
}

#[test]
fn same_seed_gives_same_trace_hash_in_one_process() {
    let a = chaotic_run(7);
    let b = chaotic_run(7);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.result, b.result);
    assert_eq!(a.trace.len(), b.trace.len());
    let (stats, events) = &a.result;
    assert!(stats.delivered > 1000, "{stats:?}");
    assert!(stats.dropped_loss > 0 && stats.duplicated > 0 && stats.reordered > 0);
    assert!(events.len() >= 10, "{events:?}");
    assert_eq!(a.virtual_elapsed, Duration::from_secs(11));
}

#[test]
fn different_seeds_give_different_trace_hashes() {
    let a = chaotic_run(7);
    let b = chaotic_run(8);
    assert_ne!(a.trace_hash, b.trace_hash);
}

const CHILD_ENV: &str = "CONSENSUS_SIM_PRINT_HASH";

/// Re-runs this very test in two child processes (which print their hash)
/// and compares: the replay check across processes.
#[test]
fn same_seed_gives_same_trace_hash_across_processes() {
    let here = chaotic_run(11).trace_hash;
    if std::env::var_os(CHILD_ENV).is_some() {
        println!("SIM_TRACE_HASH={here:016x}");
        return;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let name = "sim::tests::same_seed_gives_same_trace_hash_across_processes";
    let child_hash = || {
        let out = std::process::Command::new(&exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .output()
            .expect("child test process runs");
        assert!(out.status.success(), "child failed: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("SIM_TRACE_HASH=").map(|(_, h)| h))
            .unwrap_or_else(|| panic!("no hash in child output: {stdout}"))
            .to_owned();
        u64::from_str_radix(line.trim(), 16).expect("hex hash")
    };
    let first = child_hash();
    let second = child_hash();
    assert_eq!(first, second);
    assert_eq!(first, here);
}

#[test]
fn total_loss_delivers_nothing() {
    let mut cfg = SimConfig::new(1, 3);
    cfg.network.loss = 1.0;
    let f = TestFactory::passive();
    let shared = f.shared.clone();
    let out = Simulation::run(cfg, f, |sim| async move {
        for i in 0..50 {
            shared.send(1 + i % 3, 1 + (i + 1) % 3, Msg::Data(i));
        }
        sim.run_for(Duration::from_secs(1)).await;
        (sim.stats(), shared.total_received())
    })
    .expect("runs");
    let (stats, received) = out.result;
    assert_eq!(received, 0);
    assert_eq!(stats.sent, 50);
    assert_eq!(stats.dropped_loss, 50);
    assert_eq!(stats.delivered, 0);
}

#[test]
fn partition_blocks_both_ways_and_heal_restores() {
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(SimConfig::new(2, 3), f, |sim| async move {
        sim.partition(vec![vec![NodeId(1)], vec![NodeId(2), NodeId(3)]])
            .expect("valid partition");
        s.send(1, 2, Msg::Data(1));
        s.send(2, 1, Msg::Data(2));
        s.send(2, 3, Msg::Data(3));
        s.send(3, 2, Msg::Data(4));
        sim.run_for(ms(100)).await;
        assert!(s.data_from(2, 1).is_empty());
        assert!(s.data_from(1, 2).is_empty());
        assert_eq!(s.data_from(3, 2), vec![3]);
        assert_eq!(s.data_from(2, 3), vec![4]);
        assert_eq!(sim.stats().dropped_partition, 2);
        sim.heal();
        s.send(1, 2, Msg::Data(5));
        s.send(2, 1, Msg::Data(6));
        sim.run_for(ms(100)).await;
        assert_eq!(s.data_from(2, 1), vec![5]);
        assert_eq!(s.data_from(1, 2), vec![6]);
        assert_eq!(sim.stats().delivered, 4);
    })
    .expect("runs");
}

#[test]
fn message_in_flight_when_partition_starts_is_dropped() {
    let mut cfg = SimConfig::new(3, 2);
    cfg.network.base_delay = ms(50);
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(cfg, f, |sim| async move {
        s.send(1, 2, Msg::Data(1));
        sim.run_for(ms(10)).await;
        sim.partition(vec![vec![NodeId(1)], vec![NodeId(2)]])
            .expect("valid");
        sim.run_for(ms(100)).await;
        assert!(s.data_from(2, 1).is_empty());
        assert_eq!(sim.stats().dropped_partition, 1);
    })
    .expect("runs");
}

#[test]
fn one_way_block_blocks_only_one_direction() {
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(SimConfig::new(4, 2), f, |sim| async move {
        sim.block_link(NodeId(1), NodeId(2));
        s.send(1, 2, Msg::Data(1));
        s.send(2, 1, Msg::Data(2));
        sim.run_for(ms(50)).await;
        assert!(s.data_from(2, 1).is_empty());
        assert_eq!(s.data_from(1, 2), vec![2]);
        sim.unblock_link(NodeId(1), NodeId(2));
        s.send(1, 2, Msg::Data(3));
        sim.run_for(ms(50)).await;
        assert_eq!(s.data_from(2, 1), vec![3]);
    })
    .expect("runs");
}

#[test]
fn isolate_cuts_every_link_of_a_node_until_heal() {
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(SimConfig::new(5, 3), f, |sim| async move {
        sim.isolate(NodeId(3));
        s.send(1, 3, Msg::Data(1));
        s.send(3, 2, Msg::Data(2));
        s.send(1, 2, Msg::Data(3));
        sim.run_for(ms(50)).await;
        assert!(s.received(3).is_empty());
        assert_eq!(s.data_from(2, 3), Vec::<u64>::new());
        assert_eq!(s.data_from(2, 1), vec![3]);
        sim.heal();
        s.send(3, 2, Msg::Data(4));
        sim.run_for(ms(50)).await;
        assert_eq!(s.data_from(2, 3), vec![4]);
    })
    .expect("runs");
}

#[test]
fn duplication_delivers_twice() {
    let mut cfg = SimConfig::new(6, 2);
    cfg.network.duplicate = 1.0;
    let f = TestFactory::passive();
    let s = f.shared.clone();
    let out = Simulation::run(cfg, f, |sim| async move {
        for i in 0..10 {
            s.send(1, 2, Msg::Data(i));
        }
        sim.run_for(ms(100)).await;
        (sim.stats(), s.data_from(2, 1))
    })
    .expect("runs");
    let (stats, got) = out.result;
    assert_eq!(stats.duplicated, 10);
    assert_eq!(stats.delivered, 20);
    let expected: Vec<u64> = (0..10).flat_map(|i| [i, i]).collect();
    // FIFO link, no reordering: each message and its copy arrive in order.
    assert_eq!(got, expected);
}

fn ordering_run(faults: NetworkFaults) -> (Vec<u64>, NetworkStats) {
    let mut cfg = SimConfig::new(9, 2);
    cfg.network = faults;
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(cfg, f, |sim| async move {
        for i in 0..100 {
            s.send(1, 2, Msg::Data(i));
            sim.run_for(ms(1)).await;
        }
        sim.run_for(Duration::from_secs(1)).await;
        (s.data_from(2, 1), sim.stats())
    })
    .expect("runs")
    .result
}

#[test]
fn links_are_fifo_under_jitter_without_reordering() {
    let (got, stats) = ordering_run(NetworkFaults {
        jitter: ms(20),
        ..NetworkFaults::none()
    });
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    assert_eq!(stats.reordered, 0);
}

#[test]
fn reordering_actually_reorders() {
    let (got, stats) = ordering_run(NetworkFaults {
        reorder: 0.5,
        reorder_window: ms(30),
        ..NetworkFaults::none()
    });
    assert_eq!(got.len(), 100);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert_ne!(got, sorted, "nothing was reordered");
    assert!(stats.reordered > 20 && stats.reordered < 80, "{stats:?}");
}

#[test]
fn crashed_nodes_receive_nothing_and_restarts_get_the_next_incarnation() {
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(SimConfig::new(10, 3), f, |mut sim| async move {
        assert_eq!(sim.incarnation(NodeId(2)), Some(0));
        let old_transport = s.0.borrow().transports[&NodeId(2)].clone();
        sim.crash(NodeId(2)).expect("crash");
        assert!(!sim.is_up(NodeId(2)));
        assert_eq!(sim.up_nodes(), vec![NodeId(1), NodeId(3)]);
        assert_eq!(sim.down_nodes(), vec![NodeId(2)]);
        assert_eq!(s.0.borrow().crashed, vec![NodeId(2)]);
        assert!(matches!(sim.crash(NodeId(2)), Err(SimError::NodeDown(_))));
        s.send(1, 2, Msg::Data(1));
        // The dead incarnation's transport sends nothing any more.
        old_transport.send(NodeId(1), Msg::Data(2));
        sim.run_for(ms(100)).await;
        assert!(s.received(2).is_empty());
        assert!(s.received(1).is_empty());
        assert_eq!(sim.stats().dropped_down, 1);

        assert_eq!(sim.restart(NodeId(2)).expect("restart"), 1);
        assert!(matches!(
            sim.restart(NodeId(2)),
            Err(SimError::NodeRunning(_))
        ));
        assert_eq!(s.0.borrow().incarnations[&NodeId(2)], 1);
        assert_eq!(sim.incarnation(NodeId(2)), Some(1));
        s.send(1, 2, Msg::Data(3));
        old_transport.send(NodeId(1), Msg::Data(4));
        sim.run_for(ms(100)).await;
        assert_eq!(
            s.received(2),
            vec![Received {
                from: NodeId(1),
                msg: Msg::Data(3),
                incarnation: 1
            }]
        );
        assert!(s.received(1).is_empty());
        assert!(matches!(
            sim.crash(NodeId(9)),
            Err(SimError::UnknownNode(_))
        ));
    })
    .expect("runs");
}

#[test]
fn message_in_flight_to_a_crashing_node_is_dropped() {
    let mut cfg = SimConfig::new(11, 2);
    cfg.network.base_delay = ms(50);
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(cfg, f, |mut sim| async move {
        s.send(1, 2, Msg::Data(1));
        sim.run_for(ms(10)).await;
        sim.crash(NodeId(2)).expect("crash");
        sim.run_for(ms(100)).await;
        assert!(s.received(2).is_empty());
        assert_eq!(sim.stats().dropped_down, 1);
    })
    .expect("runs");
}

#[test]
fn added_node_joins_the_network() {
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(SimConfig::new(12, 2), f, |mut sim| async move {
        sim.add_node(NodeId(4)).expect("add");
        assert!(matches!(
            sim.add_node(NodeId(1)),
            Err(SimError::NodeExists(_))
        ));
        assert_eq!(sim.members(), vec![NodeId(1), NodeId(2), NodeId(4)]);
        s.send(1, 4, Msg::Data(1));
        s.send(4, 2, Msg::Data(2));
        sim.run_for(ms(10)).await;
        assert_eq!(s.data_from(4, 1), vec![1]);
        assert_eq!(s.data_from(2, 4), vec![2]);
    })
    .expect("runs");
}

#[test]
fn wait_until_times_out_in_virtual_time() {
    let out = Simulation::run(
        SimConfig::new(13, 1),
        TestFactory::passive(),
        |sim| async move {
            // An hour of virtual time: the test would take an hour if the
            // clock were not virtual.
            let r = sim.wait_until(|_| false, Duration::from_secs(3600)).await;
            (r, sim.now())
        },
    )
    .expect("runs");
    let (r, now) = out.result;
    assert_eq!(
        r,
        Err(Timeout {
            limit: Duration::from_secs(3600)
        })
    );
    assert_eq!(now, Duration::from_secs(3600));
}

#[test]
fn wait_until_returns_when_the_condition_holds() {
    let mut cfg = SimConfig::new(14, 2);
    cfg.network.base_delay = ms(250);
    let f = TestFactory::passive();
    let s = f.shared.clone();
    let out = Simulation::run(cfg, f, |sim| async move {
        s.send(1, 2, Msg::Data(1));
        sim.wait_until(|sim| sim.stats().delivered == 1, Duration::from_secs(5))
            .await
    })
    .expect("runs");
    let waited = out.result.expect("delivered in time");
    assert!(waited >= ms(250) && waited <= ms(260), "waited {waited:?}");
}

#[test]
fn control_requests_are_validated() {
    Simulation::run(
        SimConfig::new(15, 3),
        TestFactory::passive(),
        |mut sim| async move {
            assert!(matches!(
                sim.partition(vec![vec![NodeId(1), NodeId(2)], vec![NodeId(2)]]),
                Err(SimError::Network(NetworkError::NodeInTwoGroups(NodeId(2))))
            ));
            let bad = NetworkFaults {
                loss: 1.5,
                ..NetworkFaults::none()
            };
            assert!(matches!(
                sim.set_faults(bad),
                Err(SimError::Network(NetworkError::BadProbability {
                    name: "loss",
                    ..
                }))
            ));
            assert_eq!(sim.faults(), NetworkFaults::none());
        },
    )
    .expect("runs");
    let mut cfg = SimConfig::new(1, 2);
    cfg.nodes.push(NodeId(1));
    assert!(matches!(
        Simulation::run(cfg, TestFactory::passive(), |_| async {}),
        Err(SimError::NodeExists(NodeId(1)))
    ));
}

#[test]
fn nemesis_is_seeded_and_recover_restores_the_cluster() {
    let run = |seed| {
        Simulation::run(
            SimConfig::new(seed, 5),
            TestFactory::gossip(),
            |mut sim| async move {
                let mut nemesis = FaultSchedule::new(2);
                let events = nemesis.run(&mut sim, Duration::from_secs(60)).await;
                assert!(sim.down_nodes().len() <= 2);
                let restarted = sim.recover();
                assert!(sim.down_nodes().is_empty());
                assert_eq!(sim.faults(), NetworkFaults::none());
                sim.run_for(Duration::from_secs(1)).await;
                (events, restarted)
            },
        )
        .expect("runs")
    };
    let a = run(21);
    let b = run(21);
    assert_eq!(a.result, b.result);
    assert_eq!(a.trace_hash, b.trace_hash);
    let (events, _) = &a.result;
    // 60 s at one fault every 0.5-3 s.
    assert!(
        events.len() >= 20 && events.len() <= 120,
        "{}",
        events.len()
    );
    let kinds: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| match e.action {
            FaultAction::Crash(_) => "crash",
            FaultAction::Restart(_) => "restart",
            FaultAction::Partition(_) => "partition",
            FaultAction::BlockLink { .. } => "block",
            FaultAction::Isolate(_) => "isolate",
            FaultAction::Heal => "heal",
            FaultAction::SetFaults(_) => "faults",
            FaultAction::Panic(_) => "panic",
            FaultAction::DiskFailure { .. } => "disk",
            FaultAction::Connectivity { .. } => "scenario",
        })
        .collect();
    assert!(!kinds.contains("scenario"), "scenarios only when asked for");
    assert!(!kinds.contains("panic"), "no hook, no panic");
    assert!(!kinds.contains("disk"), "no hook, no disk fault");
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    assert!(events.windows(2).all(|w| w[0].at < w[1].at));
}

#[test]
fn nemesis_disk_faults_hit_running_nodes_which_are_crashed_next_step() {
    use crate::storage::SyncFailure;
    let hits: Rc<RefCell<Vec<(NodeId, SyncFailure)>>> = Rc::default();
    let h = hits.clone();
    let f = TestFactory::passive();
    let shared = f.shared.clone();
    let out = Simulation::run(SimConfig::new(5, 5), f, |mut sim| async move {
        let mut nemesis = FaultSchedule::new(2)
            .only(&[FaultKind::Restart])
            .with_disk_hook(move |n, o| h.borrow_mut().push((n, o)));
        nemesis.run(&mut sim, Duration::from_secs(60)).await
    })
    .expect("runs");
    let events = &out.result;
    let disk: Vec<(NodeId, SyncFailure)> = events
        .iter()
        .filter_map(|e| match e.action {
            FaultAction::DiskFailure { node, outcome } => Some((node, outcome)),
            _ => None,
        })
        .collect();
    assert!(disk.len() >= 5, "{events:?}");
    assert_eq!(*hits.borrow(), disk, "the hook saw every disk fault");
    let outcomes: std::collections::BTreeSet<_> = disk.iter().map(|d| d.1).collect();
    assert_eq!(outcomes.len(), 2, "both outcomes drawn");
    // Each disk fault is followed by the crash of that node, before any
    // other fault, and only then can the node be restarted.
    for (i, e) in events.iter().enumerate() {
        if let FaultAction::DiskFailure { node, .. } = e.action {
            assert_eq!(
                events.get(i + 1).map(|n| &n.action),
                Some(&FaultAction::Crash(node)),
                "{events:?}"
            );
        }
    }
    let crashed = shared.0.borrow().crashed.len();
    assert_eq!(crashed, disk.len());
    // Never more than max_down nodes down.
    let mut down = std::collections::BTreeSet::new();
    for e in events {
        match e.action {
            FaultAction::Crash(n) => assert!(down.insert(n)),
            FaultAction::Restart(n) => assert!(down.remove(&n)),
            _ => {}
        }
        assert!(down.len() <= 2);
    }
}

#[test]
fn scenarios_cut_the_links_of_their_topology() {
    use super::Scenario;
    let members: Vec<NodeId> = (1..=5).map(NodeId).collect();
    let n = |i| NodeId(i);
    // Quorum-loss: every link that does not touch the hub is cut, both ways.
    let ql = Scenario::QuorumLoss {
        hub: n(3),
        leader: Some(n(1)),
    }
    .blocked_links(&members);
    assert_eq!(ql.len(), 4 * 3);
    assert!(ql.iter().all(|&(a, b)| a != n(3) && b != n(3)));
    // Constrained: the same, and the old leader cut off from the hub.
    let c = Scenario::Constrained {
        hub: n(3),
        leader: Some(n(1)),
    }
    .blocked_links(&members);
    assert_eq!(c.len(), ql.len() + 2);
    assert!(c.contains(&(n(1), n(3))) && c.contains(&(n(3), n(1))));
    // Its lag stage isolates the hub.
    let lag = Scenario::ConstrainedLag { hub: n(2) }.blocked_links(&members);
    assert_eq!(lag.len(), 8);
    assert!(lag.iter().all(|&(a, b)| a == n(2) || b == n(2)));
    // Chained: only the leader and the far node cannot talk.
    let ch = Scenario::Chained {
        leader: n(1),
        far: n(4),
    }
    .blocked_links(&members);
    assert_eq!(ch, vec![(n(1), n(4)), (n(4), n(1))]);
}

#[test]
fn nemesis_holds_each_scenario_then_heals_and_aims_at_the_leader() {
    use super::Scenario;
    let out = Simulation::run(
        SimConfig::new(9, 5),
        TestFactory::gossip(),
        |mut sim| async move {
            let mut nemesis = FaultSchedule::new(2)
                .only(&[
                    FaultKind::QuorumLoss,
                    FaultKind::Constrained,
                    FaultKind::Chained,
                    FaultKind::Partition,
                    FaultKind::Isolate,
                    FaultKind::Heal,
                ])
                .with_scenario_hold(Duration::from_secs(4))
                .with_leader_hook(|| Some(NodeId(2)));
            nemesis.run(&mut sim, Duration::from_secs(300)).await
        },
    )
    .expect("runs");
    let events = &out.result;
    let members: Vec<NodeId> = (1..=5).map(NodeId).collect();
    let mut seen = std::collections::BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        let FaultAction::Connectivity { scenario, blocked } = &e.action else {
            continue;
        };
        seen.insert(scenario.name());
        assert_eq!(*blocked, scenario.blocked_links(&members));
        match *scenario {
            Scenario::QuorumLoss { hub, leader } | Scenario::Constrained { hub, leader } => {
                assert_ne!(hub, NodeId(2), "the hub is never the leader");
                assert_eq!(leader, Some(NodeId(2)));
            }
            Scenario::Chained { leader, far } => {
                assert_eq!(leader, NodeId(2));
                assert_ne!(far, NodeId(2));
            }
            Scenario::ConstrainedLag { hub } => {
                // The scenario proper follows at once, around the same hub.
                assert!(
                    matches!(
                        events.get(i + 1).map(|n| &n.action),
                        Some(FaultAction::Connectivity {
                            scenario: Scenario::Constrained { hub: h, .. },
                            ..
                        }) if *h == hub
                    ),
                    "{events:?}"
                );
                continue;
            }
        }
        // Held at least the hold, with no other change of links, then healed.
        let Some(next) = events.get(i + 1) else {
            break; // still held when the run ended
        };
        assert_eq!(next.action, FaultAction::Heal, "{events:?}");
        assert!(next.at - e.at >= Duration::from_secs(4));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn nemesis_panic_hook_is_called_on_running_nodes() {
    let hits: Rc<RefCell<Vec<NodeId>>> = Rc::default();
    let h = hits.clone();
    let out = Simulation::run(
        SimConfig::new(3, 3),
        TestFactory::passive(),
        |mut sim| async move {
            let mut nemesis = FaultSchedule::new(1)
                .only(&[FaultKind::Crash, FaultKind::Restart])
                .with_panic_hook(move |n| h.borrow_mut().push(n));
            let events = nemesis.run(&mut sim, Duration::from_secs(30)).await;
            events
        },
    )
    .expect("runs");
    let panics: Vec<NodeId> = out
        .result
        .iter()
        .filter_map(|e| match e.action {
            FaultAction::Panic(n) => Some(n),
            _ => None,
        })
        .collect();
    assert!(!panics.is_empty());
    assert_eq!(*hits.borrow(), panics);
    for e in &out.result {
        assert!(matches!(
            e.action,
            FaultAction::Crash(_) | FaultAction::Restart(_) | FaultAction::Panic(_)
        ));
    }
}

#[test]
fn trace_records_deliveries_and_state_changes_when_kept() {
    let mut cfg = SimConfig::new(16, 2);
    cfg.trace.keep_records = 100;
    let f = TestFactory::passive();
    let s = f.shared.clone();
    let out = Simulation::run(cfg, f, |sim| async move {
        s.send(1, 2, Msg::Data(7));
        sim.run_for(ms(10)).await;
    })
    .expect("runs");
    let recs = out.trace.records();
    let kinds: Vec<TraceKind> = recs.iter().map(|r| r.kind.clone()).collect();
    let digest_of = |v: &(NodeId, &Msg)| super::digest(v);
    assert_eq!(
        kinds,
        vec![
            TraceKind::Control {
                what: "start n1 incarnation 0".into()
            },
            TraceKind::Control {
                what: "start n2 incarnation 0".into()
            },
            TraceKind::State {
                node: NodeId(1),
                label: "started".into(),
                digest: super::digest(&0u32)
            },
            TraceKind::State {
                node: NodeId(2),
                label: "started".into(),
                digest: super::digest(&0u32)
            },
            TraceKind::Deliver {
                from: NodeId(1),
                to: NodeId(2),
                digest: super::digest(&Msg::Data(7))
            },
            TraceKind::State {
                node: NodeId(2),
                label: "received".into(),
                digest: digest_of(&(NodeId(1), &Msg::Data(7)))
            },
        ]
    );
    assert_eq!(recs[4].at_us, 1_000);
    assert_eq!(recs.last().map(|r| r.hash), Some(out.trace_hash));
}

/// A test client's inbox: records what reaches it.
struct ClientInbox {
    id: NodeId,
    shared: Shared,
}

impl Actor for ClientInbox {
    type Context = Context<Self>;
}

impl Handler<Envelope<Msg>> for ClientInbox {
    type Result = ();

    fn handle(&mut self, env: Envelope<Msg>, _: &mut Context<Self>) {
        self.shared
            .0
            .borrow_mut()
            .received
            .entry(self.id)
            .or_default()
            .push(Received {
                from: env.from,
                msg: env.msg,
                incarnation: 0,
            });
    }
}

#[test]
fn nodes_left_out_of_a_partition_reach_every_side() {
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(SimConfig::new(17, 3), f, |sim| async move {
        sim.partition(vec![vec![NodeId(1)], vec![NodeId(2)]])
            .expect("valid");
        s.send(3, 1, Msg::Data(1));
        s.send(3, 2, Msg::Data(2));
        s.send(1, 3, Msg::Data(3));
        s.send(2, 3, Msg::Data(4));
        s.send(1, 2, Msg::Data(5));
        sim.run_for(ms(10)).await;
        assert_eq!(s.data_from(1, 3), vec![1]);
        assert_eq!(s.data_from(2, 3), vec![2]);
        assert_eq!(s.data_from(3, 1), vec![3]);
        assert_eq!(s.data_from(3, 2), vec![4]);
        assert!(s.data_from(2, 1).is_empty());
    })
    .expect("runs");
}

#[test]
fn registered_clients_exchange_messages_with_nodes() {
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(SimConfig::new(18, 2), f, |mut sim| async move {
        let client = NodeId(100);
        let inbox = ClientInbox {
            id: client,
            shared: s.clone(),
        }
        .start();
        let t = sim
            .register_client(client, inbox.recipient())
            .expect("new client");
        let again = ClientInbox {
            id: client,
            shared: s.clone(),
        }
        .start();
        assert!(matches!(
            sim.register_client(client, again.clone().recipient()),
            Err(SimError::NodeExists(_))
        ));
        assert!(matches!(
            sim.register_client(NodeId(1), again.recipient()),
            Err(SimError::NodeExists(_))
        ));
        assert!(matches!(sim.add_node(client), Err(SimError::NodeExists(_))));
        sim.partition(vec![vec![NodeId(1)], vec![NodeId(2)]])
            .expect("valid");
        t.send(NodeId(1), Msg::Data(1));
        t.send(NodeId(2), Msg::Data(2));
        s.send(2, 100, Msg::Data(3));
        sim.run_for(ms(10)).await;
        assert_eq!(s.data_from(1, 100), vec![1]);
        assert_eq!(s.data_from(2, 100), vec![2]);
        assert_eq!(s.data_from(100, 2), vec![3]);
        assert_eq!(sim.members(), vec![NodeId(1), NodeId(2)]);
    })
    .expect("runs");
}

/// An inbox that logs (virtual ms since `start`, sender, message).
struct TimedInbox {
    start: tokio::time::Instant,
    log: Rc<RefCell<Vec<(u64, NodeId, Msg)>>>,
}

impl Actor for TimedInbox {
    type Context = Context<Self>;
}

impl Handler<Envelope<Msg>> for TimedInbox {
    type Result = ();

    fn handle(&mut self, env: Envelope<Msg>, _: &mut Context<Self>) {
        let at = tokio::time::Instant::now().saturating_duration_since(self.start);
        let at_ms = u64::try_from(at.as_millis()).expect("short run");
        self.log.borrow_mut().push((at_ms, env.from, env.msg));
    }
}

/// The network actor on its own (no `Simulation`): envelopes, registrations
/// and control requests all arrive through its mailbox. A message sent later
/// with a shorter delay is delivered first (the delivery timer is moved
/// earlier), and a partition requested by message applies to what is sent
/// after it.
#[test]
fn a_standalone_network_actor_delivers_on_time_and_obeys_control_messages() {
    block_on_paused(async {
        let start = tokio::time::Instant::now();
        let slow = NetworkFaults {
            base_delay: ms(50),
            ..NetworkFaults::none()
        };
        let fast = NetworkFaults {
            base_delay: ms(5),
            ..NetworkFaults::none()
        };
        let trace = TraceHandle::new(start, TraceConfig::default());
        let net = SimNetwork::<Msg>::new(rng::network_rng(1), slow, Some(trace.clone()))
            .expect("valid faults");
        let stats = net.stats_handle();
        let addr = net.start();
        let log = Rc::new(RefCell::new(Vec::new()));
        for id in [1, 2] {
            let inbox = TimedInbox {
                start,
                log: log.clone(),
            }
            .start();
            addr.do_send(crate::transport::RegisterNode {
                node: NodeId(id),
                inbox: inbox.recipient(),
            });
        }
        let envelope = |from: u64, to: u64, msg: Msg| Envelope {
            from: NodeId(from),
            to: NodeId(to),
            msg,
        };
        addr.do_send(envelope(1, 2, Msg::Data(1)));
        addr.send(SetFaults(fast))
            .await
            .expect("network runs")
            .expect("valid faults");
        tokio::time::sleep(ms(10)).await;
        addr.do_send(envelope(2, 1, Msg::Data(2)));
        tokio::time::sleep(ms(100)).await;
        assert_eq!(
            *log.borrow(),
            vec![(15, NodeId(2), Msg::Data(2)), (50, NodeId(1), Msg::Data(1))]
        );
        addr.send(Partition(vec![vec![NodeId(1)], vec![NodeId(2)]]))
            .await
            .expect("network runs")
            .expect("valid partition");
        addr.do_send(envelope(1, 2, Msg::Data(3)));
        addr.do_send(envelope(3, 2, Msg::Data(4)));
        tokio::time::sleep(ms(100)).await;
        assert_eq!(log.borrow().len(), 3);
        assert_eq!(log.borrow()[2], (115, NodeId(3), Msg::Data(4)));
        let got = addr.send(GetStats).await.expect("network runs");
        assert_eq!(got, stats.get());
        assert_eq!(
            got,
            NetworkStats {
                sent: 4,
                delivered: 3,
                dropped_partition: 1,
                ..NetworkStats::default()
            }
        );
        // Deliveries and control actions are in the trace.
        assert_eq!(trace.len(), 3 + 2);
    })
    .expect("runtime");
}

/// Dropping the `Simulation` handle does not stop the network: the nodes'
/// ports keep the network actor (and its delivery task) alive, so running
/// nodes keep exchanging messages.
#[test]
fn the_network_outlives_the_simulation_handle() {
    let mut cfg = SimConfig::new(19, 2);
    cfg.network.base_delay = ms(5);
    let f = TestFactory::passive();
    let s = f.shared.clone();
    Simulation::run(cfg, f, |sim| async move {
        s.send(1, 2, Msg::Data(1));
        drop(sim);
        tokio::time::sleep(ms(20)).await;
        s.send(2, 1, Msg::Data(2));
        tokio::time::sleep(ms(20)).await;
        assert_eq!(s.data_from(2, 1), vec![1]);
        assert_eq!(s.data_from(1, 2), vec![2]);
    })
    .expect("runs");
}
