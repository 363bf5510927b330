//! Throughput of a 3-node cluster in one process on the real clock: a
//! direct in-memory network (no delay), `IN_FLIGHT` proposals kept in flight
//! against the leader by `IN_FLIGHT / BATCH` clients each sending batches of
//! `BATCH` commands, commits per second measured over `SECS` seconds.
//!
//! ```sh
//! # IN_FLIGHT SECS BATCH
//! cargo run --release -p consensus-raft --example throughput -- 4096 3 1
//! cargo run --release -p consensus-raft --example throughput -- 4096 3 64
//! ```
#![forbid(unsafe_code)]

use actix::prelude::*;
use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
use consensus_actors::storage::MemStorage;
use consensus_actors::transport::{Envelope, RegisterNode, Transport};
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_raft::messages::RaftMessage;
use consensus_raft::node::{RaftNode, RaftNodeBuilder};
use consensus_raft::{Membership, RaftConfig};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

type Msg = RaftMessage<KvCommand>;

/// Delivers every envelope at once to the registered inbox.
#[derive(Default)]
struct DirectNet {
    inboxes: BTreeMap<NodeId, Recipient<Envelope<Msg>>>,
}

impl Actor for DirectNet {
    type Context = Context<Self>;
}

impl Handler<Envelope<Msg>> for DirectNet {
    type Result = ();
    fn handle(&mut self, env: Envelope<Msg>, _: &mut Context<Self>) {
        if let Some(inbox) = self.inboxes.get(&env.to) {
            inbox.do_send(env);
        }
    }
}

impl Handler<RegisterNode<Msg>> for DirectNet {
    type Result = ();
    fn handle(&mut self, m: RegisterNode<Msg>, _: &mut Context<Self>) {
        self.inboxes.insert(m.node, m.inbox);
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let in_flight = args.first().copied().unwrap_or(4096);
    let secs = args.get(1).copied().unwrap_or(3);
    let batch = args.get(2).copied().unwrap_or(1).max(1);
    let clients = (in_flight / batch).max(1);
    let sys = actix::System::new();
    sys.block_on(async move {
        let net = DirectNet::default().start();
        let members = Membership::new([1, 2, 3].map(NodeId));
        let cfg = RaftConfig {
            max_log_entries_per_append: 1024,
            snapshot_threshold: 1_000_000,
            ..RaftConfig::default()
        };
        let mut nodes: Vec<RaftNode<KvStore>> = Vec::new();
        for i in 1..=3 {
            let node = RaftNodeBuilder::new(
                NodeId(i),
                cfg.clone(),
                members.clone(),
                MemStorage::new(),
                KvStore::default,
                Transport::new(NodeId(i), net.clone().recipient()),
            )
            .start();
            node.register_with(&net.clone().recipient());
            nodes.push(node);
        }
        let leader = loop {
            let mut found = None;
            for n in &nodes {
                if n.status()
                    .await
                    .is_some_and(|s| s.role == NodeState::Leader)
                {
                    found = Some(n.clone());
                }
            }
            if let Some(l) = found {
                break l;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let done = Rc::new(Cell::new(0u64));
        let stop = Rc::new(Cell::new(false));
        let started = std::time::Instant::now();
        for c in 0..clients {
            let (leader, done, stop) = (leader.clone(), done.clone(), stop.clone());
            actix::spawn(async move {
                let mut i = 0u64;
                while !stop.get() {
                    i += 1;
                    let cmds: Vec<_> = (0..batch)
                        .map(|b| KvCommand::put(format!("k{}", (c + b) % 64), format!("{i}")))
                        .collect();
                    let ok = if batch == 1 {
                        let cmd = cmds.into_iter().next().expect("one command");
                        u64::from(leader.propose(cmd, ClientId(c)).await == Ok(KvOutput::Ok))
                    } else {
                        leader
                            .propose_batch(cmds, ClientId(c))
                            .await
                            .iter()
                            .filter(|r| **r == Ok(KvOutput::Ok))
                            .count() as u64
                    };
                    done.set(done.get() + ok);
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.set(true);
        let elapsed = started.elapsed().as_secs_f64();
        let n = done.get();
        println!(
            "{} in flight ({clients} clients x {batch}): {n} commits in {elapsed:.2}s = {:.0} commits/s",
            clients * batch,
            n as f64 / elapsed
        );
        System::current().stop();
    });
}
