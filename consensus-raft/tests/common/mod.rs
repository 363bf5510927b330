//! A small deterministic in-process network and cluster harness for the
//! Raft integration tests: fixed one-way delay, per-link blocking
//! (partitions), seeded loss. Everything runs on a paused tokio clock.

#![allow(dead_code)]

use actix::prelude::*;
use consensus_actors::kv::{KvCommand, KvStore};
use consensus_actors::safety::{SafetyChecker, SafetySink, SharedChecker};
use consensus_actors::storage::MemStorage;
use consensus_actors::transport::{Envelope, RegisterNode};
use consensus_actors::types::{NodeId, NodeState};
use consensus_raft::actors::RaftStatus;
use consensus_raft::events::HardState;
use consensus_raft::messages::{EntryRef, RaftMessage};
use consensus_raft::node::{RaftNode, RaftNodeBuilder};
use consensus_raft::{Membership, RaftConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::time::Instant;

pub type Msg = RaftMessage<KvCommand>;
pub type Store = MemStorage<HardState, EntryRef<KvCommand>>;

/// Runs `f` on an actix System with a paused clock.
pub fn run<F: std::future::Future<Output = ()>>(f: F) {
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
    };
    actix::System::with_tokio_rt(rt).block_on(f);
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Block(pub NodeId, pub NodeId, pub bool);

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetLoss(pub f64);

#[derive(Message)]
#[rtype(result = "u64")]
pub struct Delivered;

/// The network: delivers after `delay`, drops blocked links and a seeded
/// fraction of messages.
pub struct Net {
    delay: Duration,
    inboxes: BTreeMap<NodeId, Recipient<Envelope<Msg>>>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    loss: f64,
    rng: ChaCha8Rng,
    delivered: u64,
}

impl Net {
    pub fn new(delay: Duration, seed: u64) -> Self {
        Self {
            delay,
            inboxes: BTreeMap::new(),
            blocked: BTreeSet::new(),
            loss: 0.0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            delivered: 0,
        }
    }
}

impl Actor for Net {
    type Context = Context<Self>;
}

impl Handler<Envelope<Msg>> for Net {
    type Result = ();
    fn handle(&mut self, env: Envelope<Msg>, ctx: &mut Context<Self>) {
        if self.blocked.contains(&(env.from, env.to)) {
            return;
        }
        if self.loss > 0.0 && self.rng.random_bool(self.loss) {
            return;
        }
        ctx.run_later(self.delay, move |act, _| {
            if act.blocked.contains(&(env.from, env.to)) {
                return;
            }
            if let Some(inbox) = act.inboxes.get(&env.to) {
                act.delivered += 1;
                inbox.do_send(env);
            }
        });
    }
}

impl Handler<RegisterNode<Msg>> for Net {
    type Result = ();
    fn handle(&mut self, m: RegisterNode<Msg>, _: &mut Context<Self>) {
        self.inboxes.insert(m.node, m.inbox);
    }
}

impl Handler<Block> for Net {
    type Result = ();
    fn handle(&mut self, m: Block, _: &mut Context<Self>) {
        if m.2 {
            self.blocked.insert((m.0, m.1));
        } else {
            self.blocked.remove(&(m.0, m.1));
        }
    }
}

impl Handler<SetLoss> for Net {
    type Result = ();
    fn handle(&mut self, m: SetLoss, _: &mut Context<Self>) {
        self.loss = m.0;
    }
}

impl Handler<Delivered> for Net {
    type Result = u64;
    fn handle(&mut self, _: Delivered, _: &mut Context<Self>) -> u64 {
        self.delivered
    }
}

/// A cluster of Raft nodes over a [`Net`], with a local safety checker.
pub struct Cluster {
    pub net: Addr<Net>,
    pub nodes: BTreeMap<NodeId, RaftNode<KvStore>>,
    pub stores: BTreeMap<NodeId, Store>,
    pub cfg: RaftConfig,
    pub checker: SharedChecker,
    pub epoch: Instant,
    pub seed: u64,
}

impl Cluster {
    pub fn new(n: u64, cfg: RaftConfig, seed: u64) -> Self {
        let net = Net::new(Duration::from_millis(2), seed).start();
        let checker = SharedChecker::new(SafetyChecker::new().with_raft());
        let mut c = Cluster {
            net,
            nodes: BTreeMap::new(),
            stores: BTreeMap::new(),
            cfg,
            checker,
            epoch: Instant::now(),
            seed,
        };
        let members = Membership::new((1..=n).map(NodeId));
        for i in 1..=n {
            c.start_node(NodeId(i), members.clone());
        }
        c
    }

    pub fn start_node(&mut self, id: NodeId, initial: Membership) {
        let store = self.stores.entry(id).or_default().clone();
        let node = RaftNodeBuilder::new(
            id,
            self.cfg.clone(),
            initial,
            store,
            KvStore::default,
            self.net.clone().recipient(),
        )
        .seed(self.seed.wrapping_mul(1000).wrapping_add(id.get()))
        .safety(SafetySink::local(&self.checker, self.epoch))
        .start();
        node.register_with(&self.net.clone().recipient());
        self.nodes.insert(id, node);
    }

    pub fn node(&self, id: u64) -> &RaftNode<KvStore> {
        &self.nodes[&NodeId(id)]
    }

    pub async fn statuses(&self) -> Vec<RaftStatus> {
        let mut out = Vec::new();
        for n in self.nodes.values() {
            if let Some(s) = n.status().await {
                out.push(s);
            }
        }
        out
    }

    /// Waits (virtual time) until exactly one node of the highest term
    /// leads, among `among`; returns it.
    pub async fn wait_for_leader(&self, among: &[u64], limit: Duration) -> Option<NodeId> {
        let start = Instant::now();
        while start.elapsed() < limit {
            let mut leaders = Vec::new();
            for &i in among {
                if let Some(s) = self.node(i).status().await {
                    if s.role == NodeState::Leader {
                        leaders.push((s.term, s.id));
                    }
                }
            }
            leaders.sort();
            if let Some(&(_, id)) = leaders.last() {
                return Some(id);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    pub async fn partition(&self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.net
                    .send(Block(NodeId(x), NodeId(y), true))
                    .await
                    .unwrap();
                self.net
                    .send(Block(NodeId(y), NodeId(x), true))
                    .await
                    .unwrap();
            }
        }
    }

    pub async fn heal(&self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &x in &ids {
            for &y in &ids {
                self.net.send(Block(x, y, false)).await.unwrap();
            }
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.checker
            .violations()
            .iter()
            .map(|v| v.to_string())
            .collect()
    }
}
