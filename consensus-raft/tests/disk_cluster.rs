//! Raft on the durable store: a 3-node cluster in the deterministic
//! simulation whose nodes keep their term, vote, log and snapshots in a
//! [`DiskStorage`] directory each. Every incarnation opens its directory
//! afresh (a crash drops the process's memory, unsynced writes included),
//! so a restart recovers only what the store made durable. Writes
//! acknowledged before the whole cluster is crashed, some of them compacted
//! into snapshots, are all read back after the restart; the SafetyVerifier
//! sees no violation.
#![forbid(unsafe_code)]

use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
use consensus_actors::safety::SharedChecker;
use consensus_actors::sim::{
    block_on_paused, NodeContext, NodeFactory, SimConfig, Simulation, StartedNode,
};
use consensus_actors::storage::{DiskOptions, DiskStorage, LogStore, SnapshotStore};
use consensus_actors::supervision::Shutdown;
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_raft::events::HardState;
use consensus_raft::messages::{EntryRef, RaftMessage};
use consensus_raft::node::{RaftNode, RaftNodeBuilder};
use consensus_raft::safety::SafetySink;
use consensus_raft::{Membership, RaftConfig};
use rand::Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

type Store = DiskStorage<HardState, EntryRef<KvCommand>>;
type Nodes = Rc<RefCell<BTreeMap<NodeId, RaftNode<KvStore>>>>;

struct DiskFactory {
    base: PathBuf,
    cfg: RaftConfig,
    members: Vec<NodeId>,
    safety: SafetySink,
    nodes: Nodes,
}

impl DiskFactory {
    fn dir(&self, id: NodeId) -> PathBuf {
        self.base.join(format!("n{}", id.get()))
    }
}

impl NodeFactory<RaftMessage<KvCommand>> for DiskFactory {
    fn start_node(
        &mut self,
        mut ctx: NodeContext<RaftMessage<KvCommand>>,
    ) -> StartedNode<RaftMessage<KvCommand>> {
        let opts = DiskOptions {
            segment_bytes: 16 << 10,
        };
        let store = Store::open_with(self.dir(ctx.id), opts).expect("the store opens");
        let node = RaftNodeBuilder::new(
            ctx.id,
            self.cfg.clone(),
            Membership::new(self.members.iter().copied()),
            store,
            KvStore::default,
            ctx.transport,
        )
        .seed(ctx.rng.random())
        .trace(ctx.trace.clone())
        .safety(self.safety.clone())
        .start();
        let inbox = node.inbox();
        let supervisor = node.supervisor().clone();
        self.nodes.borrow_mut().insert(ctx.id, node);
        StartedNode::new(inbox, move || supervisor.do_send(Shutdown))
    }

    fn on_crash(&mut self, id: NodeId) {
        // The next incarnation reopens the directory: what was not synced
        // is gone with this one's memory.
        self.nodes.borrow_mut().remove(&id);
    }
}

async fn leader(nodes: &Nodes, limit: Duration) -> Option<RaftNode<KvStore>> {
    let began = Instant::now();
    while began.elapsed() < limit {
        let all: Vec<RaftNode<KvStore>> = nodes.borrow().values().cloned().collect();
        for n in all {
            if n.status()
                .await
                .is_some_and(|s| s.role == NodeState::Leader)
            {
                return Some(n);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[test]
fn acknowledged_writes_survive_a_whole_cluster_restart_from_disk() {
    let tmp = tempfile::TempDir::new().expect("temporary directory");
    let base = tmp.path().to_path_buf();
    let cfg = RaftConfig {
        snapshot_threshold: 40,
        snapshot_keep_entries: 5,
        ..RaftConfig::default()
    };
    block_on_paused(async move {
        let checker = SharedChecker::new(consensus_raft::safety::checker());
        let nodes: Nodes = Rc::default();
        let members: Vec<NodeId> = (1..=3).map(NodeId).collect();
        let factory = DiskFactory {
            base: base.clone(),
            cfg,
            members: members.clone(),
            safety: SafetySink::local(&checker, Instant::now()),
            nodes: nodes.clone(),
        };
        let mut sim = Simulation::start(SimConfig::new(7, 3), factory).expect("starts");
        let l = leader(&nodes, Duration::from_secs(3))
            .await
            .expect("a leader");
        for i in 0..120 {
            let put = KvCommand::put(format!("k{i}"), format!("v{i}"));
            assert_eq!(
                l.propose(put, ClientId(1)).await,
                Ok(KvOutput::Ok),
                "write {i}"
            );
        }
        // Crash everyone at once, then restart them all from disk.
        for &n in &members {
            sim.crash(n).expect("crash");
        }
        // The old incarnations stop (and close their stores, releasing each
        // directory's lock) before the new ones open them: one writer per
        // directory, as one process per node gives.
        sim.run_for(Duration::from_millis(10)).await;
        for &n in &members {
            sim.restart(n).expect("restart");
        }
        let l = leader(&nodes, Duration::from_secs(5))
            .await
            .expect("a leader after the restart");
        for i in 0..120 {
            assert_eq!(
                l.get(format!("k{i}")).await,
                Ok(Some(format!("v{i}"))),
                "k{i} after the restart"
            );
        }
        assert_eq!(
            l.propose(KvCommand::put("after", "yes"), ClientId(1)).await,
            Ok(KvOutput::Ok)
        );
        let violations = checker.violations();
        assert!(violations.is_empty(), "{violations:?}");
        // The stores compacted: a snapshot on disk and a purged log prefix
        // (read once the nodes are down: one process per directory).
        for &n in &members {
            sim.crash(n).expect("crash");
        }
        sim.run_for(Duration::from_millis(10)).await;
        for &n in &members {
            let s = Store::open(base.join(format!("n{}", n.get()))).expect("reopens");
            assert!(
                s.load_snapshot().expect("snapshot").is_some(),
                "{n} has a snapshot"
            );
            assert!(s.first_index().get() > 1, "{n} purged its log prefix");
        }
    })
    .expect("runtime");
}
