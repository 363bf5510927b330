//! The ViewChanger and the CheckpointProtocol are supervised actors of
//! their own, in slots of the node builder: a simulated 4-replica cluster
//! (paused clock, seeded network) where one of them panics, restarts,
//! resyncs from the engine and the cluster goes on; where the
//! `view_changer` slot holds another actor and that actor is the one that
//! runs; and where a replica partitioned away catches up by a state
//! transfer that goes through its CheckpointProtocol actor.
#![forbid(unsafe_code)]

use actix::prelude::*;
use consensus_actors::kv::{KvCommand, KvStore};
use consensus_actors::metrics::{metric_key, ClusterRecorder};
use consensus_actors::safety::{SafetySink, SharedChecker};
use consensus_actors::sim::{block_on_paused, NetworkFaults, SimConfig, Simulation};
use consensus_actors::supervision::{
    install_panic_hook, EventLog, GetEvents, SupervisionEvent, SupervisionEventKind,
};
use consensus_actors::types::{ClientId, NodeId};
use consensus_pbft::checkpoint::actor::CheckpointActor;
use consensus_pbft::engine::actor::ReplicaActor;
use consensus_pbft::engine::core::STATE_TRANSFER_METRIC;
use consensus_pbft::messages::PbftMessage;
use consensus_pbft::node::{
    components, Component, Inbound, InjectPanic, PbftNode, PbftSlots, ReplicaComponent,
    ReplicaContext, ToViewChanger,
};
use consensus_pbft::sim::PbftSimFactory;
use consensus_pbft::types::{SeqNo, View};
use consensus_pbft::PbftConfig;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type Sim = Simulation<PbftMessage, PbftSimFactory<KvStore>>;

/// K = 8, L = 16: a run of a few dozen requests crosses several
/// checkpoints.
fn config() -> PbftConfig {
    let mut cfg = PbftConfig::for_cluster(4).expect("n = 4, f = 1");
    cfg.checkpoint_interval = 8;
    cfg.log_window = 16;
    cfg
}

struct Cluster {
    sim: Sim,
    metrics: ClusterRecorder,
    checker: SharedChecker<consensus_pbft::safety::PbftEvent>,
    events: Addr<EventLog>,
}

fn start(seed: u64, slots: PbftSlots<KvStore>) -> Cluster {
    start_with(
        seed,
        slots,
        NetworkFaults {
            jitter: Duration::from_millis(2),
            ..NetworkFaults::none()
        },
    )
}

fn start_with(seed: u64, slots: PbftSlots<KvStore>, faults: NetworkFaults) -> Cluster {
    install_panic_hook();
    let checker = SharedChecker::new(consensus_pbft::safety::checker());
    let origin = Instant::now();
    let events = EventLog::new().start();
    let metrics = ClusterRecorder::new();
    let factory = PbftSimFactory::new(config(), (1..=4).map(NodeId), KvStore::default)
        .with_slots(slots)
        .with_safety(SafetySink::local(&checker, origin))
        .with_supervision_events(events.clone().recipient())
        .with_metrics(metrics.clone())
        .with_time_base(origin);
    let sim = Simulation::start(SimConfig::new(seed, 4).with_faults(faults), factory)
        .expect("simulation starts");
    Cluster {
        sim,
        metrics,
        checker,
        events,
    }
}

impl Cluster {
    fn node(&self, id: u64) -> PbftNode<KvStore> {
        self.sim.factory().node(NodeId(id)).expect("node runs")
    }

    /// `count` puts through node `via`, each answered within 60 s.
    async fn puts(&self, via: u64, from: u64, count: u64) {
        let node = self.node(via);
        for i in from..from + count {
            let cmd = KvCommand::put(format!("k{i}"), format!("v{i}"));
            tokio::time::timeout(Duration::from_secs(60), node.submit(ClientId(1), &cmd))
                .await
                .unwrap_or_else(|_| panic!("put {i} not answered in 60 s"))
                .unwrap_or_else(|e| panic!("put {i} failed: {e}"));
        }
    }

    async fn supervision(&self) -> Vec<SupervisionEvent> {
        self.events.send(GetEvents).await.expect("event log runs")
    }

    /// (view, normal, last executed, h, log length) of node `id`'s engine.
    fn engine(&self, id: u64) -> (View, bool, SeqNo, SeqNo, usize) {
        self.node(id)
            .store
            .with(|e| {
                (
                    e.view(),
                    e.status() == consensus_pbft::engine::core::Status::Normal,
                    e.last_executed(),
                    e.low_watermark(),
                    e.log_len(),
                )
            })
            .expect("engine started")
    }

    /// The state transfers node `id` started.
    fn state_transfers(&self, id: u64) -> u64 {
        let key = metric_key(
            STATE_TRANSFER_METRIC,
            &[("replica", &NodeId(id).to_string())],
        );
        self.metrics.snapshot().counter(&key).unwrap_or(0)
    }

    fn assert_safe(&self) {
        let violations = self.checker.violations();
        assert!(violations.is_empty(), "{violations:?}");
    }
}

/// The panics of `events` other than the injected ones (`expected`: node
/// and component).
fn unexpected_panics(
    events: &[SupervisionEvent],
    expected: &[(u64, &str)],
) -> Vec<SupervisionEvent> {
    events
        .iter()
        .filter(|e| {
            !matches!(e.kind, SupervisionEventKind::ChildRestarted { .. })
                && !expected
                    .iter()
                    .any(|(n, c)| e.node == NodeId(*n) && e.component == *c)
        })
        .cloned()
        .collect()
}

fn restarted(events: &[SupervisionEvent], node: u64, component: &str) -> bool {
    let panicked = events.iter().any(|e| {
        e.node == NodeId(node)
            && e.component == component
            && matches!(e.kind, SupervisionEventKind::ChildPanicked { .. })
    });
    let restarted = events.iter().any(|e| {
        e.node == NodeId(node)
            && e.component == component
            && matches!(e.kind, SupervisionEventKind::ChildRestarted { .. })
    });
    panicked && restarted
}

/// The ViewChangers of the three backups panic and restart; they resync
/// their view from the engine. Then the primary crashes: a view change
/// still completes (it needs the 3 restarted ViewChangers, 2f+1 = 3), the
/// new primary orders the next requests, nothing is unsafe.
#[test]
fn a_panicked_view_changer_restarts_resyncs_and_a_view_change_still_completes() {
    block_on_paused(async {
        let mut c = start(11, PbftSlots::default());
        c.puts(2, 0, 5).await;
        for id in 2..=4 {
            c.node(id)
                .view_changer_panic
                .expect("the stock ViewChanger offers fault injection")
                .do_send(InjectPanic);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let events = c.supervision().await;
        for id in 2..=4 {
            assert!(
                restarted(&events, id, components::VIEW_CHANGER),
                "n{id}'s ViewChanger panicked and restarted: {events:?}"
            );
        }
        // The others were not touched.
        assert!(!events
            .iter()
            .any(|e| e.component == components::REPLICA || e.component == components::CHECKPOINT));
        c.puts(2, 5, 3).await;
        assert_eq!(c.engine(2).0, View(0), "no view change without a fault");
        c.sim.crash(NodeId(1)).expect("n1 crashes");
        c.puts(2, 8, 5).await;
        let events = c.supervision().await;
        let expected: Vec<(u64, &str)> = (2..=4).map(|id| (id, components::VIEW_CHANGER)).collect();
        let others: Vec<_> = unexpected_panics(&events, &expected)
            .into_iter()
            .filter(|e| e.node != NodeId(1))
            .collect();
        assert!(others.is_empty(), "{others:?}");
        for id in 2..=4 {
            let (view, normal, exec, _, _) = c.engine(id);
            assert!(view >= View(1) && normal, "n{id}: {view} normal={normal}");
            assert!(exec >= SeqNo(13), "n{id} executed {exec}");
        }
        c.assert_safe();
    })
    .expect("runtime builds");
}

/// The request timer survives a restart of the ViewChanger. The primary
/// crashes, a request reaches the backups and waits; 100 ms later (well
/// within the 300 ms timeout) the three backups' ViewChangers panic and
/// restart. Their engines report no change from then on (the request just
/// keeps waiting), so a restarted ViewChanger learns that it waits only
/// from the resync: it re-arms the timer from the engine's copy and the
/// view change starts on time. The new view is entered within the
/// timeout and two rounds of VIEW-CHANGE retransmission of the request's
/// arrival (without the resync nobody ever leaves view 0).
#[test]
fn a_view_changer_restarted_while_a_request_waits_still_changes_view_on_time() {
    block_on_paused(async {
        let mut c = start(15, PbftSlots::default());
        c.puts(2, 0, 3).await;
        c.sim.crash(NodeId(1)).expect("n1 crashes");
        let node = c.node(2);
        let submitted = Instant::now();
        let answer =
            tokio::task::spawn_local(node.submit(ClientId(1), &KvCommand::put("after", "crash")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        for id in 2..=4 {
            let (view, normal, ..) = c.engine(id);
            assert!(view == View(0) && normal, "n{id} waits in view 0");
            c.node(id)
                .view_changer_panic
                .expect("the stock ViewChanger offers fault injection")
                .do_send(InjectPanic);
        }
        let timeout = Duration::from_micros(config().view_change_timeout_us);
        let retransmit = Duration::from_micros(config().retransmit_us);
        let deadline = submitted + timeout + 2 * retransmit + Duration::from_millis(100);
        loop {
            let moved = (2..=4).all(|id| {
                let (view, normal, ..) = c.engine(id);
                view >= View(1) && normal
            });
            if moved {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no new view {:?} after the request: {:?}",
                Instant::now() - submitted,
                (2..=4).map(|id| c.engine(id)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let events = c.supervision().await;
        for id in 2..=4 {
            assert!(
                restarted(&events, id, components::VIEW_CHANGER),
                "n{id}'s ViewChanger panicked and restarted: {events:?}"
            );
        }
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("the request is answered in the new view")
            .expect("the client task runs")
            .expect("the put succeeds");
        c.assert_safe();
    })
    .expect("runtime builds");
}

/// The CheckpointProtocols of two replicas panic and restart; they resync
/// the stable checkpoint and the checkpoint states from the engine, and
/// checkpoints still become stable everywhere: the watermarks move on and
/// the log stays within L.
#[test]
fn a_panicked_checkpoint_protocol_restarts_resyncs_and_checkpoints_still_become_stable() {
    block_on_paused(async {
        let c = start(12, PbftSlots::default());
        c.puts(2, 0, 20).await;
        let before: Vec<SeqNo> = (1..=4).map(|id| c.engine(id).3).collect();
        assert!(before.iter().all(|h| *h >= SeqNo(8)), "{before:?}");
        for id in [1, 3] {
            c.node(id)
                .checkpoint_panic
                .expect("the stock CheckpointProtocol offers fault injection")
                .do_send(InjectPanic);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let events = c.supervision().await;
        for id in [1, 3] {
            assert!(
                restarted(&events, id, components::CHECKPOINT),
                "n{id}'s CheckpointProtocol panicked and restarted: {events:?}"
            );
        }
        for round in 0..6 {
            c.puts(3, 20 + round * 10, 10).await;
            for id in 1..=4 {
                let (_, _, _, _, log) = c.engine(id);
                assert!(log <= 16, "n{id}'s log holds {log} > L slots");
            }
        }
        // Everyone executes the 80 puts; give the last checkpoint time.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for id in 1..=4 {
            let (_, _, exec, h, _) = c.engine(id);
            assert!(
                h >= SeqNo(before[id as usize - 1].get() + 24),
                "n{id}: h = {h}, before the panics {}",
                before[id as usize - 1]
            );
            assert!(exec >= h, "n{id}: executed {exec} below h = {h}");
        }
        let events = c.supervision().await;
        let unexpected = unexpected_panics(
            &events,
            &[(1, components::CHECKPOINT), (3, components::CHECKPOINT)],
        );
        assert!(unexpected.is_empty(), "{unexpected:?}");
        let states: Vec<_> = (1..=4)
            .map(|id| c.node(id).with_state_machine(|s| s.clone()))
            .collect();
        assert!(states.iter().all(|s| *s == states[0]), "{states:?}");
        c.assert_safe();
    })
    .expect("runtime builds");
}

/// Hands every message to an engine `lag` late, in order: an engine whose
/// mailbox is backed up (as a loaded backup's is), while its
/// CheckpointProtocol keeps up with the others' CHECKPOINTs.
struct Lag {
    to: Recipient<Inbound>,
    lag: Duration,
    queue: std::collections::VecDeque<(Instant, Inbound)>,
}

impl Actor for Lag {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Lag {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        self.queue.push_back((Instant::now() + self.lag, msg));
        ctx.run_later(self.lag, |act, _| {
            while act.queue.front().is_some_and(|(t, _)| *t <= Instant::now()) {
                if let Some((_, msg)) = act.queue.pop_front() {
                    act.to.do_send(msg);
                }
            }
        });
    }
}

/// A fault-free run through many checkpoints (K = 8, 300 requests from
/// 3 nodes' clients at once) where n4's engine handles every message
/// 50 ms late: the others' CHECKPOINTs make each checkpoint stable at
/// n4's CheckpointProtocol before n4's engine executed up to it. n4 then
/// executes up to it from its own log instead of transferring the state
/// (TOCS 2002 §5.3.2): no replica fetches a state, and every checkpoint
/// still becomes stable everywhere.
#[test]
fn a_fault_free_run_through_many_checkpoints_transfers_no_state() {
    let slots = PbftSlots::default().with_replica(|ctx: &ReplicaContext<KvStore>| {
        let slot = consensus_actors::supervision::ChildSlot::<ReplicaActor<KvStore>>::new();
        let mut component = ReplicaComponent::new(slot, ReplicaActor::new(ctx.clone()));
        if ctx.cfg.id == NodeId(4) {
            let lag = Lag {
                to: component.inbound.clone(),
                lag: Duration::from_millis(15),
                queue: Default::default(),
            }
            .start();
            component.inbound = lag.recipient();
        }
        component
    });
    block_on_paused(async move {
        let c = start(16, slots);
        let mut clients = Vec::new();
        for via in 1..=3u64 {
            let node = c.node(via);
            clients.push(tokio::task::spawn_local(async move {
                for i in 0..100u64 {
                    let cmd = KvCommand::put(format!("k{via}-{i}"), format!("v{i}"));
                    tokio::time::timeout(Duration::from_secs(60), node.submit(ClientId(via), &cmd))
                        .await
                        .unwrap_or_else(|_| panic!("put {i} via n{via} not answered in 60 s"))
                        .unwrap_or_else(|e| panic!("put {i} via n{via} failed: {e}"));
                }
            }));
        }
        for client in clients {
            client.await.expect("the client task runs");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let last = c.engine(1).2;
        for id in 1..=4 {
            let (view, normal, exec, h, _) = c.engine(id);
            assert!(view == View(0) && normal, "n{id}: no view change");
            assert_eq!(exec, last, "n{id} executed everything");
            assert!(
                h.get() + 8 > last.get() && h >= SeqNo(16),
                "n{id}: h = {h}, executed {last}"
            );
            assert_eq!(
                c.state_transfers(id),
                0,
                "n{id} fetched a state it could execute to"
            );
        }
        assert!(last >= SeqNo(24), "several checkpoints: executed {last}");
        c.assert_safe();
    })
    .expect("runtime builds");
}

/// A ViewChanger that never starts a view change: it takes the engine's
/// notes and the VIEW-CHANGEs and NEW-VIEWs, counts them, and does
/// nothing.
struct Passive {
    seen: Arc<AtomicU64>,
}

impl Actor for Passive {
    type Context = Context<Self>;
}

impl Supervised for Passive {}

impl Handler<Inbound> for Passive {
    type Result = ();

    fn handle(&mut self, _: Inbound, _: &mut Context<Self>) {
        self.seen.fetch_add(1, Ordering::Relaxed);
    }
}

impl Handler<ToViewChanger> for Passive {
    type Result = ();

    fn handle(&mut self, _: ToViewChanger, _: &mut Context<Self>) {
        self.seen.fetch_add(1, Ordering::Relaxed);
    }
}

/// The `view_changer` slot holds a passive ViewChanger on every node: it
/// is the one that runs (it gets the engine's notes), and with it the
/// crash of the primary is never repaired: a request after the crash goes
/// unanswered, and no engine leaves view 0. With the stock slot the same
/// run changes view (the test above).
#[test]
fn the_view_changer_slot_holds_the_actor_that_runs() {
    let seen = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&seen);
    let slots = PbftSlots::default().with_view_changer(move |_ctx: &ReplicaContext<KvStore>| {
        let slot = consensus_actors::supervision::ChildSlot::<Passive>::new();
        Component::new(
            slot,
            Passive {
                seen: Arc::clone(&counter),
            },
        )
    });
    let answered = Rc::new(Cell::new(false));
    let flag = Rc::clone(&answered);
    block_on_paused(async move {
        let mut c = start(13, slots);
        c.puts(2, 0, 3).await;
        c.sim.crash(NodeId(1)).expect("n1 crashes");
        let cmd = KvCommand::put("after", "crash");
        let node = c.node(2);
        let r = tokio::time::timeout(Duration::from_secs(30), node.submit(ClientId(1), &cmd)).await;
        flag.set(r.is_ok());
        for id in 2..=4 {
            assert_eq!(c.engine(id).0, View(0), "n{id} changed view");
        }
        c.assert_safe();
    })
    .expect("runtime builds");
    assert!(!answered.get(), "nobody changes view, nobody answers");
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "the slot's actor got the engine's notes"
    );
}

/// Counts the state transfers on their way to the CheckpointProtocol, and
/// passes every message on.
struct Relay {
    to: Recipient<Inbound>,
    transfers: Arc<AtomicU64>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<Inbound> for Relay {
    type Result = ();

    fn handle(&mut self, msg: Inbound, _: &mut Context<Self>) {
        if matches!(msg.msg, PbftMessage::StateTransfer(_)) {
            self.transfers.fetch_add(1, Ordering::Relaxed);
        }
        self.to.do_send(msg);
    }
}

/// n4 is cut off while the others go past several checkpoints (beyond its
/// window: the log it missed is discarded everywhere). Healed, it fetches
/// the checkpoint's state through its CheckpointProtocol actor (counted on
/// the way in), installs it, ends with the others' state and keeps
/// executing.
#[test]
fn a_partitioned_replica_fetches_the_checkpoint_state_through_its_checkpoint_actor() {
    let transfers = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&transfers);
    let slots = PbftSlots::default().with_checkpoint(move |ctx: &ReplicaContext<KvStore>| {
        let slot = consensus_actors::supervision::ChildSlot::<CheckpointActor<KvStore>>::new();
        let mut component = Component::new(slot, CheckpointActor::new(ctx.clone()));
        if ctx.cfg.id == NodeId(4) {
            let relay = Relay {
                to: component.inbound.clone(),
                transfers: Arc::clone(&counter),
            }
            .start();
            component.inbound = relay.recipient();
        }
        component
    });
    block_on_paused(async move {
        let c = start(14, slots);
        c.puts(2, 0, 4).await;
        c.sim.isolate(NodeId(4));
        c.puts(2, 4, 60).await;
        let (_, _, exec4, h4, _) = c.engine(4);
        let (_, _, exec2, h2, _) = c.engine(2);
        assert!(
            exec4 <= SeqNo(16) && h2 >= SeqNo(40),
            "n4 {exec4}/{h4}, n2 {exec2}/{h2}"
        );
        assert_eq!(transfers.load(Ordering::Relaxed), 0);
        c.sim.heal();
        // More requests: their checkpoints tell n4 it is behind.
        c.puts(2, 64, 20).await;
        let began = Instant::now();
        loop {
            let n2 = c.node(2).with_state_machine(|s| s.clone());
            let n4 = c.node(4).with_state_machine(|s| s.clone());
            if n2.is_some() && n2 == n4 {
                break;
            }
            if began.elapsed() > Duration::from_secs(60) {
                let events = c.supervision().await;
                panic!(
                    "n4 did not catch up: {:?} vs {:?}; supervision: {events:?}",
                    c.engine(4),
                    c.engine(2)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            transfers.load(Ordering::Relaxed) > 0,
            "the state came through n4's CheckpointProtocol"
        );
        assert!(c.state_transfers(4) >= 1, "n4 counted its transfer");
        for id in 1..=3 {
            assert_eq!(c.state_transfers(id), 0, "n{id} kept up: no transfer");
        }
        let caught_up = c.engine(4).2;
        // And it keeps executing with the others.
        c.puts(4, 84, 10).await;
        let began = Instant::now();
        while c.engine(4).2 < c.engine(2).2 || c.engine(4).2 <= caught_up {
            assert!(began.elapsed() < Duration::from_secs(60), "n4 stalls");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let exec4 = c.engine(4).2;
        assert!(
            exec4 > caught_up,
            "n4 executes again: {exec4} after {caught_up}"
        );
        let (n2, n4) = (
            c.node(2).with_state_machine(|s| s.clone()),
            c.node(4).with_state_machine(|s| s.clone()),
        );
        assert_eq!(n2, n4);
        let events = c.supervision().await;
        assert!(events.is_empty(), "nothing failed: {events:?}");
        assert_eq!(
            n4.and_then(|s| s.get("k93").map(str::to_string)).as_deref(),
            Some("v93")
        );
        c.assert_safe();
    })
    .expect("runtime builds");
}
