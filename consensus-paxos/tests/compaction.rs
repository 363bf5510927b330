//! Log compaction and snapshot catch-up on a Multi-Paxos cluster of
//! supervised actors in the deterministic simulation: the counterpart of
//! Raft's `test_snapshot_compaction`. Past `snapshot_interval` delivered
//! commands every learner snapshots its key-value store and drops its log, and
//! its acceptor forgets the acceptances below the snapshot, so what every
//! node keeps stays bounded however long the run. A node cut off past
//! several snapshots asks for slots its peers compacted, installs a peer's
//! snapshot and ends with the same state; restarted, it comes back from
//! its snapshot plus log. The Paxos invariants are checked as it runs.
#![forbid(unsafe_code)]

use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::safety::{SafetySink, SharedChecker};
use consensus_actors::sim::{NodeContext, NodeFactory, SimConfig, Simulation, StartedNode};
use consensus_actors::storage::{LogStore, SnapshotStore};
use consensus_actors::supervision::Shutdown;
use consensus_actors::types::{ClientId, NodeId};
use consensus_paxos::messages::PaxosMessage;
use consensus_paxos::safety::{self, PaxosEvent};
use consensus_paxos::types::Slot;
use consensus_paxos::{Mode, NodeStores, PaxosConfig, PaxosNode, PaxosNodeBuilder};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

type Nodes = Rc<RefCell<BTreeMap<NodeId, PaxosNode>>>;

/// Starts each node from the builder with stores kept across its crashes.
struct Factory {
    cfg: PaxosConfig,
    checker: SharedChecker<PaxosEvent>,
    origin: Instant,
    stores: BTreeMap<NodeId, NodeStores>,
    nodes: Nodes,
}

impl NodeFactory<PaxosMessage> for Factory {
    fn start_node(&mut self, ctx: NodeContext<PaxosMessage>) -> StartedNode<PaxosMessage> {
        let id = ctx.id;
        let stores = self.stores.entry(id).or_default().clone();
        let node = PaxosNodeBuilder::new(
            id,
            self.cfg.clone(),
            ctx.members(),
            ctx.transport.clone(),
            stores,
        )
        .seed(ctx.id.get() ^ 0x5eed)
        .safety(SafetySink::local(&self.checker, self.origin))
        .time_base(self.origin)
        .start();
        let supervisor = node.supervisor().clone();
        let inbox = node.inbox();
        self.nodes.borrow_mut().insert(id, node);
        StartedNode::new(inbox, move || supervisor.do_send(Shutdown))
    }

    fn on_crash(&mut self, id: NodeId) {
        self.nodes.borrow_mut().remove(&id);
        if let Some(s) = self.stores.get(&id) {
            s.crash();
        }
    }
}

fn node(nodes: &Nodes, id: NodeId) -> PaxosNode {
    nodes.borrow()[&id].clone()
}

async fn wait_leader(nodes: &Nodes) -> NodeId {
    for _ in 0..500 {
        let all: Vec<PaxosNode> = nodes.borrow().values().cloned().collect();
        for n in all {
            if n.proposer_status().await.is_some_and(|s| s.is_leader) {
                return n.id();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no leader in 5 s");
}

/// Waits until every node delivered up to `next` (exclusive) or `secs` ran
/// out; the nodes' (next, state) at the end.
async fn converge(nodes: &Nodes, next: Slot, secs: u64) -> Vec<(Slot, Vec<u8>)> {
    let mut states = Vec::new();
    for _ in 0..secs * 100 {
        let all: Vec<PaxosNode> = nodes.borrow().values().cloned().collect();
        states.clear();
        for n in all {
            if let Some(s) = n.learner_state().await {
                states.push((s.next, s.state));
            }
        }
        if states.len() == 3 && states.iter().all(|(n, _)| *n >= next) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    states
}

fn put(i: u64) -> KvCommand {
    KvCommand::put(format!("k{i}"), format!("v{i}"))
}

/// Log compaction with a snapshot every 50 commands: see the module
/// documentation.
#[test]
fn test_snapshot_compaction() {
    let mut cfg = PaxosConfig::new(Mode::Multi, 3);
    cfg.snapshot_interval = 50;
    let checker = SharedChecker::new(safety::checker_with_acceptors(3));
    let nodes = Nodes::default();
    let stores: BTreeMap<NodeId, NodeStores> = (1..=3)
        .map(|i| (NodeId(i), NodeStores::default()))
        .collect();
    let factory = Factory {
        cfg,
        checker: checker.clone(),
        origin: Instant::now(),
        stores: stores.clone(),
        nodes: nodes.clone(),
    };
    Simulation::run(SimConfig::new(51, 3), factory, |mut sim| async move {
        let leader = wait_leader(&nodes).await;
        let lagging = (1..=3).map(NodeId).find(|&n| n != leader).unwrap();
        sim.isolate(lagging);
        let l = node(&nodes, leader);
        for i in 0..350 {
            assert_eq!(
                l.submit(put(i), ClientId(1)).await.map(|c| c.output),
                Ok(KvOutput::Ok),
                "command {i}"
            );
        }
        // Bounded: the learner keeps under 50 slots after its snapshot, its
        // store a snapshot and the slots after it, its acceptor the
        // acceptances after the snapshot.
        let s = l.learner_status().await.unwrap();
        assert!(s.snapshot >= Slot(300), "{s:?}");
        assert!(s.retained < 50, "{s:?}");
        let ls = &stores[&leader].learner;
        assert!(ls.first_index().0 > 300, "the learner's log was purged");
        assert!((ls.last_index().0 + 1).saturating_sub(ls.first_index().0) < 50);
        assert!(ls.load_snapshot().unwrap().unwrap().last_index.0 >= 300);
        let acc = &stores[&leader].acceptor;
        let kept = (acc.last_index().0 + 1).saturating_sub(acc.first_index().0);
        assert!(kept < 50 + 2, "the acceptor keeps {kept} records");
        // The lagging node catches up through a snapshot.
        sim.heal();
        let target = Slot(351);
        let states = converge(&nodes, target, 3).await;
        assert!(
            states.iter().all(|s| s.0 >= target && *s == states[0]),
            "{:?}",
            states.iter().map(|s| s.0).collect::<Vec<_>>()
        );
        let lag = node(&nodes, lagging).learner_status().await.unwrap();
        assert!(lag.snapshot >= Slot(300), "installed a snapshot: {lag:?}");
        // Restarted, it comes back from snapshot plus log.
        sim.crash(lagging).unwrap();
        sim.restart(lagging).unwrap();
        let again = converge(&nodes, target, 2).await;
        assert_eq!(again.len(), 3);
        assert!(again.iter().all(|s| *s == again[0]));
        // Reads go through the log: old writes are there.
        let leader = wait_leader(&nodes).await;
        let n = node(&nodes, leader);
        for i in [0, 123, 349] {
            assert_eq!(
                n.submit(KvCommand::get(format!("k{i}")), ClientId(2))
                    .await
                    .map(|c| c.output),
                Ok(KvOutput::Value(Some(format!("v{i}"))))
            );
        }
    })
    .unwrap();
    assert!(checker.is_ok(), "{:?}", checker.violations());
}
