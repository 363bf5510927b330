//! Shared harness for the Raft integration tests: a simulated cluster of
//! supervised Raft nodes (the workspace's deterministic `Simulation`, paused
//! clock, seeded faults) with a local safety checker, and helpers that wait
//! on conditions in virtual time.

#![allow(dead_code)]

use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
use consensus_actors::safety::{SafetySink, SharedChecker};
use consensus_actors::sim::{block_on_paused, SimConfig, Simulation};
use consensus_actors::storage::LogStore;
use consensus_actors::types::{ClientId, LogIndex, NodeId, NodeState, Term};
use consensus_raft::actors::RaftStatus;
use consensus_raft::error::ProposeError;
use consensus_raft::messages::{EntryRef, RaftMessage};
use consensus_raft::node::RaftNode;
use consensus_raft::sim::RaftSimFactory;
use consensus_raft::RaftConfig;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// The simulation type of these tests.
pub type Sim = Simulation<RaftMessage<KvCommand>, RaftSimFactory<KvStore>>;

/// A running test cluster.
pub struct Cluster {
    pub sim: Sim,
    pub checker: SharedChecker<consensus_raft::safety::RaftSafetyEvent>,
}

/// Runs `body` on a fresh simulated cluster of `n` nodes.
pub fn with_cluster<F, Fut, R>(seed: u64, n: u64, cfg: RaftConfig, body: F) -> R
where
    F: FnOnce(Cluster) -> Fut,
    Fut: Future<Output = R>,
{
    with_cluster_config(SimConfig::new(seed, n), cfg, body)
}

/// Runs `body` on a simulated cluster built from `sim_config`.
pub fn with_cluster_config<F, Fut, R>(sim_config: SimConfig, cfg: RaftConfig, body: F) -> R
where
    F: FnOnce(Cluster) -> Fut,
    Fut: Future<Output = R>,
{
    block_on_paused(async move {
        let checker = SharedChecker::new(consensus_raft::safety::checker());
        let origin = Instant::now();
        let factory = RaftSimFactory::new(cfg, sim_config.nodes.clone(), KvStore::default)
            .with_safety(SafetySink::local(&checker, origin))
            .with_time_base(origin);
        let sim = Simulation::start(sim_config, factory).expect("simulation starts");
        body(Cluster { sim, checker }).await
    })
    .expect("runtime builds")
}

impl Cluster {
    /// The running node `id`.
    pub fn node(&self, id: u64) -> RaftNode<KvStore> {
        self.sim
            .factory()
            .node(NodeId(id))
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// Status of `id`, `None` when down or restarting.
    pub async fn status(&self, id: NodeId) -> Option<RaftStatus> {
        let node = self.sim.factory().node(id)?;
        node.status().await
    }

    /// Statuses of every running node.
    pub async fn statuses(&self) -> Vec<RaftStatus> {
        let nodes = self.sim.factory().nodes();
        let mut out = Vec::new();
        for n in nodes {
            if let Some(s) = n.status().await {
                out.push(s);
            }
        }
        out
    }

    /// The leader of the highest term among the running nodes in `among`
    /// (all running nodes when empty), if any.
    pub async fn leader(&self, among: &[u64]) -> Option<(NodeId, Term)> {
        let mut best: Option<(Term, NodeId)> = None;
        for s in self.statuses().await {
            if !among.is_empty() && !among.contains(&s.id.get()) {
                continue;
            }
            if s.role == NodeState::Leader && best.is_none_or(|(t, _)| s.term > t) {
                best = Some((s.term, s.id));
            }
        }
        best.map(|(t, n)| (n, t))
    }

    /// Waits until a leader exists among `among`, for at most `limit`.
    pub async fn wait_for_leader(&self, among: &[u64], limit: Duration) -> Option<(NodeId, Term)> {
        let began = Instant::now();
        loop {
            if let Some(l) = self.leader(among).await {
                return Some(l);
            }
            if began.elapsed() >= limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `cond` holds on the statuses, for at most `limit`.
    pub async fn wait_statuses(
        &self,
        limit: Duration,
        mut cond: impl FnMut(&[RaftStatus]) -> bool,
    ) -> bool {
        let began = Instant::now();
        loop {
            if cond(&self.statuses().await) {
                return true;
            }
            if began.elapsed() >= limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Proposes through whichever node leads, retrying (in virtual time)
    /// while there is none or the answer is NotLeader, for at most `limit`.
    pub async fn propose(&self, cmd: KvCommand, limit: Duration) -> Result<KvOutput, ProposeError> {
        let began = Instant::now();
        loop {
            let last = match self.leader(&[]).await {
                Some((l, _)) => {
                    let node = self.sim.factory().node(l);
                    match node {
                        Some(n) => n.propose(cmd.clone(), ClientId(1)).await,
                        None => Err(ProposeError::NotLeader { leader: None }),
                    }
                }
                None => Err(ProposeError::NotLeader { leader: None }),
            };
            match last {
                Err(ProposeError::NotLeader { .. }) | Err(ProposeError::TransferInProgress)
                    if began.elapsed() < limit =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    }

    /// The persisted log of `id` as (index, term, command digest).
    pub fn log_of(&self, id: NodeId) -> Vec<(LogIndex, Term, EntryRef<KvCommand>)> {
        let store = self.sim.factory().storage(id).expect("storage").clone();
        let (first, last) = (store.first_index(), store.last_index());
        if last < first {
            return Vec::new();
        }
        store
            .entries(first, last.next(), usize::MAX)
            .expect("entries")
            .into_iter()
            .map(|e| (e.index, e.term, e))
            .collect()
    }

    /// Safety violations found so far, printed.
    pub fn violations(&self) -> Vec<String> {
        self.checker
            .violations()
            .iter()
            .map(|v| v.to_string())
            .collect()
    }

    /// Asserts the checker saw events and no violation.
    pub fn assert_safe(&self) {
        let report = self.checker.report();
        assert!(report.events_observed > 0, "the checker saw nothing");
        assert!(self.violations().is_empty(), "{:#?}", self.violations());
    }
}

/// Milliseconds, as a `Duration`.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Seconds, as a `Duration`.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
