//! The randomized campaign: many seeds, each a 5-node simulated cluster
//! (plus a sixth node added and a voter removed by joint consensus) under a
//! seeded nemesis — crashes and restarts, partitions, one-way links,
//! isolation, loss, duplication, reordering, jitter, panics of random
//! Raft components (restarted by the node's supervision strategy) and disk
//! faults (a node's next sync fails, its write torn or landed: the node must
//! stop without acknowledging and is crashed and later restarted), plus
//! leadership transfers — while concurrent clients read and write the
//! key-value store. Every run must end with zero SafetyVerifier
//! violations, a client history that the linearizability checker accepts
//! (`consensus_actors::history`), and a healed cluster that serves a write
//! and a read.
//!
//! Seeds and length come from the environment:
//!
//! ```sh
//! # CI (the default): 200 seeds
//! cargo test -p consensus-raft --test campaign
//! # the long campaign: 10,000 seeds
//! RAFT_CAMPAIGN_SEEDS=10000 cargo test --release -p consensus-raft --test campaign -- --nocapture
//! # replay one seed
//! RAFT_CAMPAIGN_FIRST_SEED=4242 RAFT_CAMPAIGN_SEEDS=1 cargo test -p consensus-raft --test campaign -- --nocapture
//! ```
#![forbid(unsafe_code)]

use consensus_actors::history::{check_history as check_linearizable, HistoryRecorder, Verdict};
use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
use consensus_actors::safety::{SafetySink, SharedChecker};
use consensus_actors::sim::{block_on_paused, FaultSchedule, NetworkFaults, SimConfig, Simulation};
use consensus_actors::supervision::{RestartIntensity, RestartStrategy};
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_raft::error::ProposeError;
use consensus_raft::node::{components, RaftNode};
use consensus_raft::sim::{NodeRegistry, RaftSimFactory, SimStorage};
use consensus_raft::RaftConfig;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One client operation and what came of it.
#[derive(Clone, Debug)]
struct Op {
    client: u64,
    command: KvCommand,
    invoked_us: u64,
    completed_us: u64,
    /// `None`: the outcome is unknown (timeout, crash, leadership lost).
    result: Option<Result<KvOutput, ProposeError>>,
    /// For reads: the value read.
    read: Option<Option<String>>,
}

/// What one seed did.
#[derive(Debug, Default)]
struct SeedReport {
    committed_writes: u64,
    reads: u64,
    unknown: u64,
    faults: usize,
    membership_changes: u64,
    transfers: u64,
    /// Syncs failed by disk faults (each stopped its node).
    failed_syncs: u64,
    violations: Vec<String>,
    inconsistencies: Vec<String>,
    healed: bool,
    trace_hash: u64,
}

async fn find_leader(
    reg: &NodeRegistry<KvStore>,
    hint: Option<NodeId>,
) -> Option<RaftNode<KvStore>> {
    if let Some(h) = hint.and_then(|h| reg.get(h)) {
        return Some(h);
    }
    let mut best = None;
    for n in reg.all() {
        if let Some(s) = n.status().await {
            if s.role == NodeState::Leader && best.as_ref().is_none_or(|(t, _)| s.term > *t) {
                best = Some((s.term, n));
            }
        }
    }
    best.map(|(_, n)| n)
}

fn now_us(origin: Instant) -> u64 {
    u64::try_from(Instant::now().saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX)
}

/// A client: random puts, CASes and linearizable reads on three keys.
async fn client(
    id: u64,
    reg: NodeRegistry<KvStore>,
    mut rng: ChaCha8Rng,
    stop: Rc<Cell<bool>>,
    history: Rc<RefCell<Vec<Op>>>,
    origin: Instant,
) {
    let keys = ["a", "b", "c"];
    let mut hint = None;
    let mut seq = 0u64;
    while !stop.get() {
        seq += 1;
        let key = keys[rng.random_range(0..keys.len())];
        let kind = rng.random_range(0..10);
        let Some(node) = find_leader(&reg, hint).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let invoked_us = now_us(origin);
        let limit = Duration::from_millis(800);
        if kind < 3 {
            let command = KvCommand::get(key);
            let k = key.to_string();
            let r = tokio::time::timeout(limit, node.get(k)).await;
            let (result, read) = match r {
                Ok(Ok(v)) => (Some(Ok(KvOutput::Value(v.clone()))), Some(v)),
                Ok(Err(ProposeError::NotLeader { leader })) => {
                    hint = leader;
                    (Some(Err(ProposeError::NotLeader { leader })), None)
                }
                Ok(Err(e)) => (Some(Err(e)), None),
                Err(_) => (None, None),
            };
            history.borrow_mut().push(Op {
                client: id,
                command,
                invoked_us,
                completed_us: now_us(origin),
                result,
                read,
            });
        } else {
            let value = format!("c{id}-{seq}");
            let command = if kind < 7 {
                KvCommand::put(key, value)
            } else {
                let expected = history
                    .borrow()
                    .iter()
                    .rev()
                    .find_map(|o| o.read.clone().flatten());
                KvCommand::cas(key, expected.as_deref(), value)
            };
            let r = tokio::time::timeout(limit, node.propose(command.clone(), ClientId(id))).await;
            let result = match r {
                Ok(Err(ProposeError::NotLeader { leader })) => {
                    hint = leader;
                    Some(Err(ProposeError::NotLeader { leader }))
                }
                Ok(Err(ProposeError::Unknown)) | Err(_) => None,
                Ok(other) => Some(other),
            };
            if result.is_none() {
                hint = None;
            }
            history.borrow_mut().push(Op {
                client: id,
                command,
                invoked_us,
                completed_us: now_us(origin),
                result,
                read: None,
            });
        }
        // Always let virtual time move (a client answered at once, e.g. by a
        // stale NotLeader hint, must not spin at one instant).
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..15))).await;
    }
}

/// Adds node 6, later removes a random voter (possibly the leader), one
/// change at a time, retrying through leader changes.
async fn membership_changes(
    reg: NodeRegistry<KvStore>,
    mut rng: ChaCha8Rng,
    stop: Rc<Cell<bool>>,
    done: Rc<Cell<u64>>,
) {
    tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
    let victim = NodeId(rng.random_range(1..=5));
    let plan = [(true, NodeId(6)), (false, victim)];
    for (add, node) in plan {
        while !stop.get() {
            let Some(leader) = find_leader(&reg, None).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let r = if add {
                tokio::time::timeout(Duration::from_secs(3), leader.add_node(node)).await
            } else {
                tokio::time::timeout(Duration::from_secs(3), leader.remove_node(node)).await
            };
            match r {
                Ok(Ok(_)) => {
                    done.set(done.get() + 1);
                    break;
                }
                // Already done by an earlier attempt that looked failed.
                Ok(Err(
                    consensus_raft::membership_manager::MembershipChangeError::AlreadyMember(_),
                ))
                | Ok(Err(consensus_raft::membership_manager::MembershipChangeError::NotMember(
                    _,
                ))) => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
    }
}

/// Now and then asks the leader to hand leadership to a random node.
async fn transfers(
    reg: NodeRegistry<KvStore>,
    mut rng: ChaCha8Rng,
    stop: Rc<Cell<bool>>,
    done: Rc<Cell<u64>>,
) {
    while !stop.get() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..2500))).await;
        let target = NodeId(rng.random_range(1..=6));
        if let Some(l) = find_leader(&reg, None).await {
            if l.id() != target && l.transfer_leadership(target).await.is_ok() {
                done.set(done.get() + 1);
            }
        }
    }
}

/// Checks every completed operation against the writes: a read returns
/// the initial absence or a value some write put there (invoked before the
/// read completed); a successful CAS saw such a value too; a write reported
/// `Dropped` is never read.
fn check_history(history: &[Op]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut written: BTreeMap<(String, String), (u64, bool)> = BTreeMap::new();
    for op in history {
        let value = match &op.command {
            KvCommand::Put { key, value } => Some((key.clone(), value.clone())),
            KvCommand::Cas { key, new, .. } => Some((key.clone(), new.clone())),
            _ => None,
        };
        if let Some(kv) = value {
            let dropped = matches!(op.result, Some(Err(ProposeError::Dropped)))
                || matches!(op.result, Some(Ok(KvOutput::CasFailed(_))))
                || matches!(op.result, Some(Err(ProposeError::NotLeader { .. })));
            written.insert(kv, (op.invoked_us, dropped));
        }
    }
    for op in history {
        if let (KvCommand::Get { key }, Some(Some(v))) = (&op.command, &op.read) {
            match written.get(&(key.clone(), v.clone())) {
                None => problems.push(format!(
                    "client {}: {op:?} read a value never written",
                    op.client
                )),
                Some((invoked, _)) if *invoked > op.completed_us => {
                    problems.push(format!("{op:?} read a value written later"))
                }
                Some((_, true)) => {
                    problems.push(format!("{op:?} read a write reported as not applied"))
                }
                _ => {}
            }
        }
    }
    problems
}

/// Checks the whole client history for linearizability against the
/// key-value model (consensus_actors::history, a Wing-Gong/Lowe search per
/// key). A refusal the leader gave before appending (NotLeader, Busy,
/// TransferInProgress) or an entry overwritten by another leader (Dropped)
/// certainly did not take effect; a timeout or Unknown may or may not have.
fn linearizability_problems(history: &[Op]) -> Vec<String> {
    let mut recorder = HistoryRecorder::new();
    for op in history {
        let id = recorder.invoke(ClientId(op.client), op.command.clone(), op.invoked_us);
        let recorded = match &op.result {
            Some(Ok(output)) => recorder.ok(id, output.clone(), op.completed_us),
            Some(Err(
                ProposeError::NotLeader { .. }
                | ProposeError::Busy
                | ProposeError::TransferInProgress
                | ProposeError::Dropped,
            )) => recorder.fail(id, op.completed_us),
            Some(Err(ProposeError::Unknown)) | None => recorder.unknown(id, op.completed_us),
        };
        if let Err(e) = recorded {
            return vec![format!("history could not be recorded: {e}")];
        }
    }
    let report = check_linearizable(&recorder.into_history());
    match report.verdict {
        Verdict::Linearizable => Vec::new(),
        _ => vec![format!("history is not linearizable: {report}")],
    }
}

fn run_seed(seed: u64, fault_secs: u64) -> SeedReport {
    let cfg = RaftConfig {
        snapshot_threshold: 150,
        snapshot_keep_entries: 20,
        snapshot_chunk_bytes: 512,
        ..RaftConfig::default()
    };
    let strategy = match seed % 3 {
        0 => RestartStrategy::OneForOne,
        1 => RestartStrategy::RestForOne,
        _ => RestartStrategy::OneForAll,
    };
    let intensity = RestartIntensity {
        max_restarts: 1000,
        within: Duration::from_secs(10),
    };
    consensus_actors::supervision::install_panic_hook();
    block_on_paused(async move {
        let origin = Instant::now();
        let checker = SharedChecker::new(consensus_raft::safety::checker());
        let factory = RaftSimFactory::new(cfg, (1..=5).map(NodeId), KvStore::default)
            .with_safety(SafetySink::local(&checker, origin))
            .with_supervision(strategy, intensity)
            .with_time_base(origin);
        let sim_cfg = SimConfig::new(seed, 5).with_faults(NetworkFaults::lan());
        let mut sim = Simulation::start(sim_cfg, factory).expect("simulation starts");
        sim.add_node(NodeId(6)).expect("node 6");
        let reg = sim.factory().registry();
        let stop = Rc::new(Cell::new(false));
        let history = Rc::new(RefCell::new(Vec::new()));
        let changes = Rc::new(Cell::new(0));
        let mut tasks = Vec::new();
        for c in 1..=4u64 {
            tasks.push(actix::spawn(client(
                c,
                reg.clone(),
                sim.rng_for(&format!("client-{c}")),
                stop.clone(),
                history.clone(),
                origin,
            )));
        }
        tasks.push(actix::spawn(membership_changes(
            reg.clone(),
            sim.rng_for("membership"),
            stop.clone(),
            changes.clone(),
        )));
        let transfers_done = Rc::new(Cell::new(0));
        tasks.push(actix::spawn(transfers(
            reg.clone(),
            sim.rng_for("transfers"),
            stop.clone(),
            transfers_done.clone(),
        )));
        let stores: BTreeMap<NodeId, SimStorage<KvCommand>> = sim
            .members()
            .into_iter()
            .filter_map(|n| Some((n, sim.factory().storage(n)?.clone())))
            .collect();
        assert_eq!(stores.len(), 6, "every node has a store");
        let store_handles = stores.clone();
        let panic_reg = reg.clone();
        let mut panic_rng = sim.rng_for("panics");
        let mut nemesis = FaultSchedule::new(2)
            .with_interval(Duration::from_millis(200), Duration::from_millis(1200))
            .with_panic_hook(move |node| {
                if let Some(n) = panic_reg.get(node) {
                    let which = components::ALL[panic_rng.random_range(0..components::ALL.len())];
                    n.inject_panic(which);
                }
            })
            .with_disk_hook(move |node, outcome| {
                if let Some(s) = stores.get(&node) {
                    s.fail_next_sync(outcome);
                }
            });
        if env_u64("RAFT_CAMPAIGN_WATCH", 0) != 0 {
            let reg = reg.clone();
            let history = history.clone();
            actix::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    let mut line =
                        format!("t={:?} ops={}", origin.elapsed(), history.borrow().len());
                    for n in reg.all() {
                        if let Some(s) = n.status().await {
                            line += &format!(
                                " | {} {:?} {} c{} a{} l{}",
                                s.id,
                                s.role,
                                s.term,
                                s.commit_index,
                                s.last_applied,
                                s.last_log.index
                            );
                        }
                    }
                    eprintln!("{line}");
                }
            });
        }
        let faults = nemesis.run(&mut sim, Duration::from_secs(fault_secs)).await;
        if env_u64("RAFT_CAMPAIGN_WATCH", 0) != 0 {
            eprintln!("faults: {faults:?}");
        }
        sim.recover();
        // Liveness after healing: a write and a read go through.
        let mut healed = false;
        let began = Instant::now();
        while began.elapsed() < Duration::from_secs(20) {
            if let Some(l) = find_leader(&reg, None).await {
                let limit = Duration::from_secs(1);
                let w = tokio::time::timeout(
                    limit,
                    l.propose(KvCommand::put("final", "ok"), ClientId(99)),
                )
                .await
                .unwrap_or(Err(ProposeError::Unknown));
                let r = tokio::time::timeout(limit, l.get("final"))
                    .await
                    .unwrap_or(Err(ProposeError::Unknown));
                if env_u64("RAFT_CAMPAIGN_WATCH", 0) != 0 {
                    eprintln!(
                        "heal attempt via {}: {w:?} {r:?} (status {:?})",
                        l.id(),
                        l.status().await
                    );
                }
                if w == Ok(KvOutput::Ok) && r == Ok(Some("ok".into())) {
                    healed = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.set(true);
        for t in tasks {
            let _ = t.await;
        }
        let history = history.borrow().clone();
        let report = SeedReport {
            committed_writes: history
                .iter()
                .filter(|o| o.read.is_none() && matches!(o.result, Some(Ok(_))))
                .count() as u64,
            reads: history.iter().filter(|o| o.read.is_some()).count() as u64,
            unknown: history.iter().filter(|o| o.result.is_none()).count() as u64,
            faults: faults.len(),
            membership_changes: changes.get(),
            transfers: transfers_done.get(),
            failed_syncs: store_handles.values().map(|s| s.stats().failed_syncs).sum(),
            violations: checker.violations().iter().map(|v| v.to_string()).collect(),
            inconsistencies: {
                let mut problems = check_history(&history);
                problems.extend(linearizability_problems(&history));
                problems
            },
            healed,
            trace_hash: sim.trace_hash(),
        };
        report
    })
    .expect("runtime")
}

#[test]
fn campaign_has_no_safety_violations() {
    let first = env_u64("RAFT_CAMPAIGN_FIRST_SEED", 1);
    let seeds = env_u64("RAFT_CAMPAIGN_SEEDS", 200);
    let fault_secs = env_u64("RAFT_CAMPAIGN_SECS", 5);
    let mut totals = SeedReport::default();
    let mut failures = Vec::new();
    let verbose = env_u64("RAFT_CAMPAIGN_VERBOSE", 0) != 0;
    for seed in first..first + seeds {
        if verbose {
            eprintln!("seed {seed} ...");
        }
        let r = run_seed(seed, fault_secs);
        if !r.violations.is_empty() || !r.inconsistencies.is_empty() || !r.healed {
            failures.push(format!(
                "seed {seed}: healed={} violations={:#?} inconsistencies={:#?}",
                r.healed, r.violations, r.inconsistencies
            ));
        }
        totals.committed_writes += r.committed_writes;
        totals.reads += r.reads;
        totals.unknown += r.unknown;
        totals.faults += r.faults;
        totals.membership_changes += r.membership_changes;
        totals.transfers += r.transfers;
        totals.failed_syncs += r.failed_syncs;
    }
    println!(
        "campaign: {seeds} seeds from {first}, {} faults, {} writes committed, {} reads, {} unknown outcomes, {} membership changes, {} leadership transfers started, {} syncs failed by disk faults",
        totals.faults,
        totals.committed_writes,
        totals.reads,
        totals.unknown,
        totals.membership_changes,
        totals.transfers,
        totals.failed_syncs
    );
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        totals.committed_writes > seeds * 10,
        "the workload made progress"
    );
    assert!(totals.membership_changes > 0, "membership changes happened");
    assert!(
        totals.failed_syncs > 0,
        "disk faults failed syncs of running nodes"
    );
}

/// Same seed, same build: same trace (the replay check).
#[test]
fn campaign_runs_are_deterministic() {
    let a = run_seed(12345, 3);
    let b = run_seed(12345, 3);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.committed_writes, b.committed_writes);
}
