//! A node with two components replaced through the builder's slots runs
//! under the simulation like the stock one, and stays safe and
//! linearizable under faults.
//!
//! * `StaticLeaderElection` replaces LeaderElection: no randomized
//!   timeouts, no check-quorum; the lowest voter campaigns whenever it knows
//!   no leader, nobody else ever does.
//! * `PolicyCompactor` replaces SnapshotCompactor with its own compaction
//!   policy: it asks for *every* progress event (which the stock compactor's
//!   filter would not deliver) and compacts once `every` entries were
//!   applied since the snapshot *and* `min_gap` of virtual time passed since
//!   its last compaction. It keeps the stock core for the InstallSnapshot
//!   transfers (with the core's own threshold switched off).
//!
//! Both reach the owner only through the documented contract: the
//! term-carrying requests of `OwnerHandles` and the event stream
//! (`Subscribe`). Each seed runs a 5-node cluster under crashes, partitions,
//! loss, duplication, reordering, jitter and panics of random components
//! (the replacements included), with clients reading and writing; the
//! SafetyVerifier must see no violation, the client history must be
//! linearizable, the healed cluster must serve a write and a read, and the
//! replacement compactor must have compacted with its own policy.
//!
//! ```sh
//! SWAPPED_SEEDS=200 cargo test --release -p consensus-raft --test swapped_components -- --nocapture
//! ```
#![forbid(unsafe_code)]

use actix::prelude::*;
use consensus_actors::history::{check_history, HistoryRecorder, Verdict};
use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
use consensus_actors::safety::{SafetySink, SharedChecker};
use consensus_actors::sim::{block_on_paused, FaultSchedule, NetworkFaults, SimConfig, Simulation};
use consensus_actors::supervision::{ChildSlot, RestartIntensity, RestartStrategy};
use consensus_actors::transport::Transport;
use consensus_actors::types::{ClientId, LogIndex, NodeId, NodeState};
use consensus_raft::actors::{
    Compact, EventKinds, InjectPanic, InstallSnapshotData, Interest, ObserveLeader, ObserveTerm,
    OwnerHandles, PeerMessage, ProgressFilter, RaftEvents, SnapshotSent, Subscribe,
};
use consensus_raft::error::ProposeError;
use consensus_raft::events::RaftEvent;
use consensus_raft::leader_election::StaticLeaderElection;
use consensus_raft::messages::RaftMessage;
use consensus_raft::node::{components, RaftNode};
use consensus_raft::sim::{NodeRegistry, RaftSimFactory};
use consensus_raft::slots::{
    CompactorHandles, Component, ElectionHandles, RaftSlots, Slot, SlotContext,
};
use consensus_raft::snapshot_compactor::{CompactorEffect, CompactorInput, SnapshotCore};
use consensus_raft::RaftConfig;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type Cmd = KvCommand;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ----- the replacement LeaderElection -----------------------------------------

// `StaticLeaderElection` is the library's
// (`consensus_raft::leader_election::StaticLeaderElection`).

fn static_election() -> Slot<SlotContext<Cmd>, ElectionHandles<Cmd>> {
    StaticLeaderElection::slot()
}

// ----- the replacement SnapshotCompactor --------------------------------------

/// Compacts once `every` entries were applied since the snapshot and
/// `min_gap` passed since its last compaction; counts its compactions in
/// `done` (shared by every node of a run).
struct PolicyCompactor {
    owner: OwnerHandles,
    transport: Transport<RaftMessage<Cmd>>,
    epoch: Instant,
    core: SnapshotCore,
    make_core: Arc<dyn Fn() -> SnapshotCore>,
    every: u64,
    min_gap: Duration,
    last: Option<Instant>,
    asking: bool,
    done: Arc<AtomicU64>,
}

impl PolicyCompactor {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn maybe_compact(&mut self, applied: LogIndex, snapshot: LogIndex, ctx: &mut Context<Self>) {
        let due = applied.get().saturating_sub(snapshot.get()) >= self.every
            && self.last.is_none_or(|t| t.elapsed() >= self.min_gap);
        if !due || self.asking {
            return;
        }
        self.asking = true;
        let req = self.owner.compact.send(Compact { keep_entries: 10 });
        ctx.spawn(req.into_actor(self).map(|res, act, _| {
            act.asking = false;
            if let Ok(Ok(meta)) = res {
                act.last = Some(Instant::now());
                act.done.fetch_add(1, Ordering::Relaxed);
                act.core.step(0, CompactorInput::Compacted(Ok(meta)));
            }
        }));
    }

    /// Carries out the transfer side of the stock core.
    fn run_effects(&mut self) {
        for effect in self.core.take_effects() {
            match effect {
                CompactorEffect::SendChunk { to, msg } => self
                    .transport
                    .send(to, RaftMessage::InstallSnapshot(Box::new(msg))),
                CompactorEffect::SendResponse { to, msg } => self
                    .transport
                    .send(to, RaftMessage::InstallSnapshotResponse(msg)),
                CompactorEffect::Install {
                    term,
                    leader,
                    snapshot,
                } => self.owner.install_snapshot.do_send(InstallSnapshotData {
                    term,
                    leader,
                    snapshot,
                }),
                CompactorEffect::SnapshotSent {
                    term,
                    peer,
                    last_included,
                } => self.owner.snapshot_sent.do_send(SnapshotSent {
                    term,
                    peer,
                    last_included,
                }),
                CompactorEffect::ObserveLeader { term, leader } => self
                    .owner
                    .observe_leader
                    .do_send(ObserveLeader { term, leader }),
                CompactorEffect::ObserveTerm { term } => {
                    self.owner.observe_term.do_send(ObserveTerm { term })
                }
                // The core's own policy is off (threshold u64::MAX).
                CompactorEffect::Compact { .. } => {}
            }
        }
    }
}

impl Actor for PolicyCompactor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.owner.subscribe.do_send(Subscribe::new(
            components::SNAPSHOT_COMPACTOR,
            ctx.address().recipient(),
            Interest {
                kinds: EventKinds::ROLE_CHANGED
                    | EventKinds::SNAPSHOT_NEEDED
                    | EventKinds::SNAPSHOT_TAKEN,
                progress: ProgressFilter::Always,
            },
        ));
        ctx.run_interval(Duration::from_millis(50), |act, _| {
            let now = act.now_us();
            act.core.step(now, CompactorInput::Tick);
            act.run_effects();
        });
    }
}

impl Supervised for PolicyCompactor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.core = (self.make_core)();
        self.asking = false;
    }
}

impl Handler<RaftEvents> for PolicyCompactor {
    type Result = ();
    fn handle(&mut self, m: RaftEvents, ctx: &mut Context<Self>) {
        let now = self.now_us();
        for e in &m.0 {
            self.core.step(now, CompactorInput::Event(e));
            if let RaftEvent::Progress(p) = e {
                self.maybe_compact(p.last_applied, p.snapshot_index, ctx);
            }
        }
        self.run_effects();
    }
}

impl Handler<PeerMessage<Cmd>> for PolicyCompactor {
    type Result = ();
    fn handle(&mut self, m: PeerMessage<Cmd>, _: &mut Context<Self>) {
        let now = self.now_us();
        match m.msg {
            RaftMessage::InstallSnapshot(s) => self.core.step(
                now,
                CompactorInput::InstallSnapshot {
                    from: m.from,
                    message: *s,
                },
            ),
            RaftMessage::InstallSnapshotResponse(r) => self.core.step(
                now,
                CompactorInput::InstallSnapshotResponse {
                    from: m.from,
                    response: r,
                },
            ),
            _ => {}
        }
        self.run_effects();
    }
}

impl Handler<InjectPanic> for PolicyCompactor {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        panic!("injected panic in PolicyCompactor");
    }
}

fn policy_compactor(done: Arc<AtomicU64>) -> Slot<SlotContext<Cmd>, CompactorHandles<Cmd>> {
    Slot::new(move |ctx: &SlotContext<Cmd>| {
        let child = ChildSlot::<PolicyCompactor>::new();
        let addr = child.address();
        let (id, core_cfg) = (
            ctx.id,
            RaftConfig {
                snapshot_threshold: u64::MAX,
                ..ctx.cfg.clone()
            },
        );
        let make_core: Arc<dyn Fn() -> SnapshotCore> =
            Arc::new(move || SnapshotCore::new(id, core_cfg.clone(), LogIndex::ZERO));
        Component::new(
            child,
            PolicyCompactor {
                owner: ctx.owner.clone(),
                transport: ctx.transport.clone(),
                epoch: ctx.epoch,
                core: make_core(),
                make_core,
                every: 40,
                min_gap: Duration::from_millis(300),
                last: None,
                asking: false,
                done: Arc::clone(&done),
            },
            CompactorHandles {
                peer: addr.clone().recipient(),
                panic: Some(addr.recipient()),
            },
        )
    })
}

// ----- the campaign -----------------------------------------------------------

/// One client operation and its outcome (`None`: unknown).
struct Op {
    client: u64,
    command: KvCommand,
    invoked_us: u64,
    completed_us: u64,
    result: Option<Result<KvOutput, ProposeError>>,
}

async fn find_leader(reg: &NodeRegistry<KvStore>) -> Option<RaftNode<KvStore>> {
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

fn micros(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

async fn client(
    id: u64,
    reg: NodeRegistry<KvStore>,
    mut rng: ChaCha8Rng,
    stop: Rc<Cell<bool>>,
    history: Rc<RefCell<Vec<Op>>>,
    origin: Instant,
) {
    let keys = ["a", "b", "c"];
    let mut seq = 0u64;
    while !stop.get() {
        seq += 1;
        let key = keys[rng.random_range(0..keys.len())];
        let Some(node) = find_leader(&reg).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let invoked_us = micros(origin);
        let limit = Duration::from_millis(800);
        let (command, result) = if rng.random_range(0..10) < 3 {
            let r = tokio::time::timeout(limit, node.get(key)).await;
            let result = match r {
                Ok(Ok(v)) => Some(Ok(KvOutput::Value(v))),
                Ok(Err(ProposeError::Unknown)) | Err(_) => None,
                Ok(Err(e)) => Some(Err(e)),
            };
            (KvCommand::get(key), result)
        } else {
            let command = KvCommand::put(key, format!("c{id}-{seq}"));
            let r = tokio::time::timeout(limit, node.propose(command.clone(), ClientId(id))).await;
            let result = match r {
                Ok(Err(ProposeError::Unknown)) | Err(_) => None,
                Ok(other) => Some(other),
            };
            (command, result)
        };
        history.borrow_mut().push(Op {
            client: id,
            command,
            invoked_us,
            completed_us: micros(origin),
            result,
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..15))).await;
    }
}

fn linearizable(history: &[Op]) -> Result<(), String> {
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
        recorded.map_err(|e| format!("history could not be recorded: {e}"))?;
    }
    let report = check_history(&recorder.into_history());
    match report.verdict {
        Verdict::Linearizable => Ok(()),
        _ => Err(format!("not linearizable: {report}")),
    }
}

struct SeedReport {
    committed: u64,
    compactions: u64,
    leaders: BTreeSet<NodeId>,
    problems: Vec<String>,
    trace_hash: u64,
}

fn run_seed(seed: u64, fault_secs: u64) -> SeedReport {
    let cfg = RaftConfig {
        snapshot_keep_entries: 10,
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
        let compactions = Arc::new(AtomicU64::new(0));
        let slots = RaftSlots::default()
            .with_leader_election(static_election())
            .with_snapshot_compactor(policy_compactor(Arc::clone(&compactions)));
        let factory = RaftSimFactory::new(cfg, (1..=5).map(NodeId), KvStore::default)
            .with_safety(SafetySink::local(&checker, origin))
            .with_supervision(strategy, intensity)
            .with_time_base(origin)
            .with_slots(slots);
        let sim_cfg = SimConfig::new(seed, 5).with_faults(NetworkFaults::lan());
        let mut sim = Simulation::start(sim_cfg, factory).expect("simulation starts");
        let reg = sim.factory().registry();
        let stop = Rc::new(Cell::new(false));
        let history = Rc::new(RefCell::new(Vec::new()));
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
        let leaders = Rc::new(RefCell::new(BTreeSet::new()));
        {
            let (reg, leaders, stop) = (reg.clone(), leaders.clone(), stop.clone());
            tasks.push(actix::spawn(async move {
                while !stop.get() {
                    if let Some(l) = find_leader(&reg).await {
                        leaders.borrow_mut().insert(l.id());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        let panic_reg = reg.clone();
        let mut panic_rng = sim.rng_for("panics");
        let mut nemesis = FaultSchedule::new(2)
            .with_interval(Duration::from_millis(200), Duration::from_millis(1200))
            .with_panic_hook(move |node| {
                if let Some(n) = panic_reg.get(node) {
                    let which = components::ALL[panic_rng.random_range(0..components::ALL.len())];
                    n.inject_panic(which);
                }
            });
        nemesis.run(&mut sim, Duration::from_secs(fault_secs)).await;
        sim.recover();
        let mut healed = false;
        let began = Instant::now();
        while !healed && began.elapsed() < Duration::from_secs(20) {
            if let Some(l) = find_leader(&reg).await {
                let limit = Duration::from_secs(1);
                let w = tokio::time::timeout(
                    limit,
                    l.propose(KvCommand::put("final", "ok"), ClientId(99)),
                )
                .await;
                let r = tokio::time::timeout(limit, l.get("final")).await;
                healed = matches!(w, Ok(Ok(KvOutput::Ok))) && matches!(r, Ok(Ok(Some(_))));
            }
            if !healed {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        stop.set(true);
        for t in tasks {
            let _ = t.await;
        }
        let history = std::mem::take(&mut *history.borrow_mut());
        let mut problems: Vec<String> =
            checker.violations().iter().map(|v| v.to_string()).collect();
        if let Err(e) = linearizable(&history) {
            problems.push(e);
        }
        if !healed {
            problems.push("the healed cluster served no write and read".into());
        }
        let leaders = leaders.borrow().clone();
        SeedReport {
            committed: history
                .iter()
                .filter(|o| {
                    matches!(o.command, KvCommand::Put { .. }) && matches!(o.result, Some(Ok(_)))
                })
                .count() as u64,
            compactions: compactions.load(Ordering::Relaxed),
            leaders,
            problems,
            trace_hash: sim.trace_hash(),
        }
    })
    .expect("runtime")
}

/// The swapped node under faults: safe, linearizable, live after healing,
/// led only by the lowest id, compacted by the replacement's own policy.
#[test]
fn a_node_with_replaced_components_is_safe_and_linearizable_under_faults() {
    let first = env_u64("SWAPPED_FIRST_SEED", 1);
    let seeds = env_u64("SWAPPED_SEEDS", 20);
    let fault_secs = env_u64("SWAPPED_SECS", 5);
    let (mut committed, mut compactions) = (0, 0);
    let mut failures = Vec::new();
    for seed in first..first + seeds {
        let r = run_seed(seed, fault_secs);
        if !r.problems.is_empty() {
            failures.push(format!("seed {seed}: {:#?}", r.problems));
        }
        assert!(
            r.leaders.iter().all(|&l| l == NodeId(1)),
            "seed {seed}: only the lowest id campaigns, leaders seen: {:?}",
            r.leaders
        );
        committed += r.committed;
        compactions += r.compactions;
    }
    println!("swapped components: {seeds} seeds from {first}, {committed} writes committed, {compactions} compactions by the replacement policy");
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(committed > seeds * 10, "the workload made progress");
    assert!(
        compactions >= seeds,
        "the replacement compactor heard of progress and compacted ({compactions})"
    );
}

/// Same seed, same build, same slots: same trace.
#[test]
fn a_swapped_node_replays_deterministically() {
    let a = run_seed(777, 2);
    let b = run_seed(777, 2);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.committed, b.committed);
}
