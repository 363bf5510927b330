//! Replacing one component of a Raft node with an actor of your own.
//!
//! Every box of a Raft node is an actor reached only through typed
//! `Recipient<_>` handles, so any of them can be swapped for another actor
//! that handles the same messages. `RaftNodeBuilder` has a slot per
//! component; here the LeaderElection slot gets `StaticLeaderElection`
//! (`consensus_raft::leader_election`, written as a template for rules of
//! your own): no
//! randomized timeouts, the lowest node id always campaigns and the others
//! never do. Everything else (LogReplicator, MembershipManager,
//! SnapshotCompactor, router, supervision, the client API) is the stock
//! node. Safety is untouched (the LogReplicator still owns term, vote and
//! log and refuses stale requests); only *who* campaigns *when* changed.
//!
//! The replacement talks to the owner through the documented contract
//! only: it subscribes to the owner's event stream (`Subscribe`, which
//! starts with the owner's current state) and sends term-carrying requests
//! (`OwnerHandles`).
//!
//! The same node then runs where every stock node runs: registered with the
//! engine under a name of its own (`raft-static-leader`, through
//! `RaftPlugin::with_setup`), it goes through a seeded campaign of
//! deterministic simulations under every fault (crashes, partitions, loss,
//! duplication, reordering, component panics), each checked for safety and
//! linearizability, exactly as `consensus simulate --seeds` checks stock
//! Raft. A failing seed is printed with the command that replays it.
//!
//! ```sh
//! cargo run --example custom_topology                  # the demo, then seeds 1..=20
//! cargo run --example custom_topology -- --seeds 1..200 --jobs 2 --duration 30
//! cargo run --example custom_topology -- --seed 7 --nodes 5 --duration 10   # one run
//! ```
#![forbid(unsafe_code)]

use actix::prelude::*;
use clap::Parser;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvStore};
use consensus_actors::storage::MemStorage;
use consensus_actors::supervision::RestartStrategy;
use consensus_actors::transport::Transport;
use consensus_actors::types::ConsensusProtocol;
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_engine::campaign::Campaign;
use consensus_engine::cli::{parse_range, RunArgs};
use consensus_engine::network::LocalNetwork;
use consensus_engine::Registry;
use consensus_raft::events::HardState;
use consensus_raft::leader_election::StaticLeaderElection;
use consensus_raft::messages::{EntryRef, RaftMessage};
use consensus_raft::node::{RaftNode, RaftNodeBuilder};
use consensus_raft::slots::LeaderElectionSlot;
use consensus_raft::RaftPlugin;
use consensus_raft::{Membership, RaftConfig};
use std::time::Duration;

type Cmd = KvCommand;

type Storage = MemStorage<HardState, EntryRef<Cmd>>;

/// The LeaderElection slot filled with `StaticLeaderElection`: the slot's
/// factory gets the node's context (id, settings, the owner's handles, ...)
/// and returns the actor with the handles the node needs from it. Read
/// `StaticLeaderElection::slot` and the rest of
/// `consensus-raft/src/leader_election/fixed.rs` (about 150 lines) as the
/// template for an election rule of your own.
fn static_election() -> LeaderElectionSlot<Cmd> {
    StaticLeaderElection::slot()
}

/// One node: the stock builder with our election in its slot.
fn start_node(
    id: NodeId,
    voters: &Membership,
    network: &Addr<LocalNetwork<RaftMessage<Cmd>>>,
) -> RaftNode<KvStore> {
    let node = RaftNodeBuilder::new(
        id,
        RaftConfig::default(),
        voters.clone(),
        Storage::new(),
        KvStore::default,
        Transport::new(id, network.clone().recipient()),
    )
    .strategy(RestartStrategy::RestForOne)
    .leader_election(static_election())
    .start();
    node.register_with(&network.clone().recipient());
    node
}

/// The name the variant runs under in the engine.
const STATIC_RAFT: ConsensusProtocol = ConsensusProtocol::named("raft-static-leader");

/// A registry that knows the variant: the stock Raft plug-in whose nodes
/// get `StaticLeaderElection` in their LeaderElection slot.
fn registry() -> Registry {
    let mut registry = Registry::builtin();
    registry.register_with(STATIC_RAFT, |config: &ConsensusConfig| {
        RaftPlugin::with_setup(config, |_id, builder| {
            builder.leader_election(static_election())
        })
    });
    registry
}

/// The flags: those of `consensus simulate` (so a campaign's replay lines
/// work here), plus a seed range.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
    /// Run seeds A..B (inclusive) instead of the one --seed.
    #[arg(long, value_name = "A..B", value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Seeds run at a time.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

/// Runs the variant over `seeds` under `run`'s settings; true when every
/// seed passed.
fn campaign(run: &RunArgs, seeds: (u64, u64), jobs: usize) -> bool {
    let mut run = run.clone();
    // Whatever --protocol said: this program runs its own variant.
    run.protocol = Some(STATIC_RAFT);
    let config = run.config().unwrap_or_else(|e| panic!("{e}"));
    let options = run.options(seeds.0).unwrap_or_else(|e| panic!("{e}"));
    let driver = registry().driver(&STATIC_RAFT).expect("registered above");
    let report = Campaign::new(driver, config, options, seeds.0..=seeds.1)
        .jobs(jobs)
        .replay_program("cargo run --example custom_topology --")
        .run();
    println!(
        "{} campaign, {} nodes, seeds {}..{} under faults {}: {} runs, {} passed, {} failed, {} errors, {} operations committed, {:.1} s",
        report.protocol,
        report.nodes,
        report.seeds_from,
        report.seeds_to,
        run.faults,
        report.runs,
        report.passed,
        report.failed.len(),
        report.errors.len(),
        report.committed,
        report.real_secs
    );
    for f in &report.failed {
        println!("  seed {} failed: {:?}", f.seed, f.violations.first());
        println!("    replay: {}", f.replay);
    }
    for e in &report.errors {
        println!("  error: {e}");
    }
    report.passed_all()
}

fn main() {
    // Injected component panics (the `panic` fault) are logged, not printed.
    consensus_actors::supervision::install_panic_hook();
    if std::env::args().len() > 1 {
        let cli = Cli::parse();
        let seeds = cli.seeds.unwrap_or((cli.run.seed, cli.run.seed));
        if !campaign(&cli.run, seeds, cli.jobs) {
            std::process::exit(1);
        }
        return;
    }
    demo();
    // The variant under a seeded campaign: 5 nodes, every fault, 10
    // virtual seconds per seed, seeds 1..=20.
    let defaults = Cli::parse_from(["custom_topology", "--duration", "10"]);
    assert!(
        campaign(&defaults.run, (1, 20), defaults.jobs),
        "the swapped node must pass every seed"
    );
}

/// Three nodes on the real clock, each with `StaticLeaderElection` in its
/// slot: node 1 leads, the stock client API works.
#[actix::main]
async fn demo() {
    let ids: Vec<NodeId> = (1..=3).map(NodeId).collect();
    let voters = Membership::new(ids.iter().copied());
    let network = LocalNetwork::<RaftMessage<Cmd>>::new().start();
    let nodes: Vec<RaftNode<KvStore>> = ids
        .iter()
        .map(|&id| start_node(id, &voters, &network))
        .collect();

    // Node 1 campaigns at its first tick and wins; nobody else ever tries.
    let mut leader = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for n in &nodes {
            if let Some(s) = n.status().await {
                if s.role == NodeState::Leader {
                    leader = Some((n.clone(), s.term));
                }
            }
        }
        if leader.is_some() {
            break;
        }
    }
    let Some((leader, term)) = leader else {
        panic!("no leader elected");
    };
    println!(
        "{} leads term {term} (always the lowest id with StaticLeaderElection)",
        leader.id()
    );
    assert_eq!(leader.id(), NodeId(1));
    let out = leader
        .propose(KvCommand::put("who", "static"), ClientId(1))
        .await;
    println!("put who=static -> {out:?}");
    assert_eq!(out, Ok(consensus_actors::kv::KvOutput::Ok));
    assert_eq!(leader.get("who").await, Ok(Some("static".into())));
    println!("get who -> static (a linearizable read through the stock client API)");
    for n in &nodes {
        n.shutdown().await;
    }
}
