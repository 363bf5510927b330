//! Supervision under the paused-clock actix System: panics, strategies,
//! intensity, events and shutdown, all in virtual time.

use super::*;
use actix::prelude::*;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

fn run<F: Future<Output = ()>>(f: impl FnOnce() -> F) {
    install_panic_hook();
    let sys = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("current-thread runtime")
    });
    sys.block_on(f());
}

/// Lets every runnable task run without moving virtual time.
async fn settle() {
    for _ in 0..32 {
        tokio::task::yield_now().await;
    }
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// What the test can see of a worker from outside: its durable store, its
/// lifecycle journal and its timer ticks.
#[derive(Clone, Default)]
struct Probe {
    store: Rc<Cell<u64>>,
    journal: Rc<RefCell<Vec<String>>>,
    ticks: Rc<Cell<u32>>,
    /// How many more times `started()` panics.
    started_panics: Rc<Cell<u32>>,
    /// How many more times `restarting()` panics.
    restarting_panics: Rc<Cell<u32>>,
    /// Whether `stopped()` panics.
    stopped_panics: Rc<Cell<bool>>,
}

impl Probe {
    /// A probe with its own store, sharing this one's journal.
    fn sibling(&self) -> Self {
        Self {
            store: Rc::default(),
            journal: Rc::clone(&self.journal),
            ticks: Rc::default(),
            started_panics: Rc::default(),
            restarting_panics: Rc::default(),
            stopped_panics: Rc::default(),
        }
    }

    fn journal(&self) -> Vec<String> {
        self.journal.borrow().clone()
    }
}

/// A component with durable state (`durable`, persisted to `probe.store` on
/// every change and reloaded on restart) and volatile state (`volatile`,
/// lost on restart), and a 100 ms timer.
struct Worker {
    name: &'static str,
    probe: Probe,
    durable: u64,
    volatile: u64,
    tick_every: Option<Duration>,
}

impl Worker {
    fn new(name: &'static str, probe: &Probe) -> Self {
        Self {
            name,
            probe: probe.clone(),
            durable: probe.store.get(),
            volatile: 0,
            tick_every: None,
        }
    }

    fn ticking(mut self, every: Duration) -> Self {
        self.tick_every = Some(every);
        self
    }

    fn log(&self, what: &str) {
        self.probe
            .journal
            .borrow_mut()
            .push(format!("{}:{what}", self.name));
    }
}

impl Actor for Worker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.log("started");
        let left = self.probe.started_panics.get();
        if left > 0 {
            self.probe.started_panics.set(left - 1);
            panic!("cannot start");
        }
        if let Some(every) = self.tick_every {
            ctx.run_interval(every, |act, _| {
                act.probe.ticks.set(act.probe.ticks.get() + 1)
            });
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.log("stopped");
        if self.probe.stopped_panics.get() {
            panic!("cannot stop");
        }
    }
}

impl Supervised for Worker {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.log("restarting");
        let left = self.probe.restarting_panics.get();
        if left > 0 {
            self.probe.restarting_panics.set(left - 1);
            panic!("cannot restart");
        }
        // Rebuild from storage; volatile state starts over.
        self.durable = self.probe.store.get();
        self.volatile = 0;
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Incr;

impl Handler<Incr> for Worker {
    type Result = ();
    fn handle(&mut self, _: Incr, _: &mut Self::Context) {
        self.durable += 1;
        self.probe.store.set(self.durable);
        self.volatile += 1;
    }
}

#[derive(Message)]
#[rtype(result = "(u64, u64)")]
struct Get;

impl Handler<Get> for Worker {
    type Result = MessageResult<Get>;
    fn handle(&mut self, _: Get, _: &mut Self::Context) -> Self::Result {
        MessageResult((self.durable, self.volatile))
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Boom(&'static str);

impl Handler<Boom> for Worker {
    type Result = ();
    fn handle(&mut self, msg: Boom, _: &mut Self::Context) {
        // Half-done work that the restart must throw away.
        self.volatile += 1000;
        panic!("{}", msg.0);
    }
}

/// Arms a timer whose callback panics.
#[derive(Message)]
#[rtype(result = "()")]
struct TimeBomb(Duration);

impl Handler<TimeBomb> for Worker {
    type Result = ();
    fn handle(&mut self, msg: TimeBomb, ctx: &mut Self::Context) {
        ctx.run_later(msg.0, |_, _| panic!("timer went off"));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopSelf;

impl Handler<StopSelf> for Worker {
    type Result = ();
    fn handle(&mut self, _: StopSelf, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Forwards `Incr` to a sibling it was given before the sibling started.
struct Relay {
    to: Recipient<Incr>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Supervised for Relay {}

impl Handler<Incr> for Relay {
    type Result = ();
    fn handle(&mut self, msg: Incr, _: &mut Self::Context) {
        self.to.do_send(msg);
    }
}

fn ev(component: &str, kind: SupervisionEventKind, at_us: u64) -> SupervisionEvent {
    SupervisionEvent {
        node: NodeId(1),
        component: component.to_owned(),
        kind,
        at_us,
    }
}

fn panicked(reason: &str) -> SupervisionEventKind {
    SupervisionEventKind::ChildPanicked {
        reason: reason.to_owned(),
    }
}

fn restarted(by_strategy: bool) -> SupervisionEventKind {
    SupervisionEventKind::ChildRestarted { by_strategy }
}

async fn events(log: &Addr<EventLog>) -> Vec<SupervisionEvent> {
    settle().await;
    log.send(GetEvents).await.expect("event log runs")
}

async fn restarts(sup: &Addr<NodeSupervisor>) -> Vec<u32> {
    let status = sup.send(GetStatus).await.expect("supervisor runs");
    status.children.iter().map(|c| c.restarts).collect()
}

#[test]
fn panicking_child_is_restarted_with_durable_state_and_keeps_its_mailbox() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1)).subscriber(log.clone().recipient());
        // The relay is built with the worker's address before the worker starts.
        let worker_slot = ChildSlot::<Worker>::new();
        let worker_addr = worker_slot.address();
        let to = worker_addr.clone().recipient();
        let relay = tree.spawn_child("relay", |_| Relay { to }).unwrap();
        let worker = tree
            .start_child(
                "worker",
                worker_slot,
                Worker::new("worker", &probe).ticking(Duration::from_millis(100)),
            )
            .unwrap();
        let sup = tree.start();

        for _ in 0..3 {
            worker.send(Incr).await.unwrap();
        }
        assert_eq!(worker.send(Get).await.unwrap(), (3, 3));
        sleep_ms(350).await;
        assert_eq!(probe.ticks.get(), 3);

        // The panic loses only its own message; what queues behind it is kept.
        worker.do_send(Boom("boom"));
        worker.do_send(Incr);
        relay.send(Incr).await.unwrap();
        assert_eq!(worker.send(Get).await.unwrap(), (5, 2));
        assert_eq!(probe.store.get(), 5);
        assert_eq!(
            probe.journal(),
            ["worker:started", "worker:restarting", "worker:started"]
        );
        // A request whose handler panics is answered with an error.
        assert!(worker.send(Boom("again")).await.is_err());
        assert_eq!(worker.send(Get).await.unwrap(), (5, 0));
        assert!(worker_addr.connected());

        // The old interval was cancelled and the new one set in started():
        // ticks at 450 and 550 ms, not twice as many.
        sleep_ms(250).await;
        assert_eq!(probe.ticks.get(), 5);

        assert_eq!(restarts(&sup).await, [0, 2]);
        assert_eq!(
            events(&log).await,
            [
                ev("worker", panicked("boom"), 350_000),
                ev("worker", restarted(false), 350_000),
                ev("worker", panicked("again"), 350_000),
                ev("worker", restarted(false), 350_000),
            ]
        );
        let status = sup.send(GetStatus).await.unwrap();
        assert!(status.running && !status.failed);
        assert_eq!(status.restarts_in_window, 2);
        assert!(status
            .children
            .iter()
            .all(|c| c.state == ChildState::Running));
    });
}

fn three_workers(
    strategy: RestartStrategy,
    log: &Addr<EventLog>,
    probe: &Probe,
) -> (Addr<NodeSupervisor>, [Addr<Worker>; 3]) {
    let mut tree = SupervisorBuilder::new(NodeId(1)).strategy(strategy);
    let a = tree
        .spawn_child("a", |_| Worker::new("a", &probe.sibling()))
        .unwrap();
    let b = tree
        .spawn_child("b", |_| Worker::new("b", &probe.sibling()))
        .unwrap();
    let c = tree
        .spawn_child("c", |_| Worker::new("c", &probe.sibling()))
        .unwrap();
    let sup = tree.start();
    sup.do_send(Subscribe(log.clone().recipient()));
    (sup, [a, b, c])
}

#[test]
fn one_for_all_restarts_every_sibling() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let (sup, [a, b, c]) = three_workers(RestartStrategy::OneForAll, &log, &probe);
        a.send(Incr).await.unwrap();
        c.send(Incr).await.unwrap();
        b.do_send(Boom("b broke"));
        settle().await;
        assert_eq!(a.send(Get).await.unwrap(), (1, 0));
        assert_eq!(b.send(Get).await.unwrap(), (0, 0));
        assert_eq!(c.send(Get).await.unwrap(), (1, 0));
        assert_eq!(restarts(&sup).await, [1, 1, 1]);
        assert_eq!(
            probe.journal(),
            [
                "a:started",
                "b:started",
                "c:started",
                "a:restarting",
                "a:started",
                "b:restarting",
                "b:started",
                "c:restarting",
                "c:started",
            ]
        );
        assert_eq!(
            events(&log).await,
            [
                ev("b", panicked("b broke"), 0),
                ev("a", restarted(true), 0),
                ev("b", restarted(false), 0),
                ev("c", restarted(true), 0),
            ]
        );
    });
}

#[test]
fn rest_for_one_restarts_only_the_later_siblings() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let (sup, [a, b, c]) = three_workers(RestartStrategy::RestForOne, &log, &probe);
        a.send(Incr).await.unwrap();
        c.send(Incr).await.unwrap();
        b.do_send(Boom("b broke"));
        settle().await;
        assert_eq!(a.send(Get).await.unwrap(), (1, 1));
        assert_eq!(b.send(Get).await.unwrap(), (0, 0));
        assert_eq!(c.send(Get).await.unwrap(), (1, 0));
        assert_eq!(restarts(&sup).await, [0, 1, 1]);
        assert_eq!(
            probe.journal(),
            [
                "a:started",
                "b:started",
                "c:started",
                "b:restarting",
                "b:started",
                "c:restarting",
                "c:started",
            ]
        );
        assert_eq!(
            events(&log).await,
            [
                ev("b", panicked("b broke"), 0),
                ev("b", restarted(false), 0),
                ev("c", restarted(true), 0),
            ]
        );
    });
}

#[test]
fn one_for_one_leaves_siblings_alone() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let (sup, [a, b, c]) = three_workers(RestartStrategy::OneForOne, &log, &probe);
        a.send(Incr).await.unwrap();
        c.send(Incr).await.unwrap();
        b.do_send(Boom("b broke"));
        settle().await;
        assert_eq!(b.send(Get).await.unwrap(), (0, 0));
        assert_eq!(a.send(Get).await.unwrap(), (1, 1));
        assert_eq!(c.send(Get).await.unwrap(), (1, 1));
        assert_eq!(restarts(&sup).await, [0, 1, 0]);
    });
}

#[test]
fn a_failure_already_covered_by_a_sibling_restart_counts_once() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let (sup, [a, b, _c]) = three_workers(RestartStrategy::OneForAll, &log, &probe);
        settle().await;
        // Both fail before the supervisor hears of either.
        a.do_send(Boom("a broke"));
        b.do_send(Boom("b broke"));
        settle().await;
        assert_eq!(restarts(&sup).await, [1, 1, 1]);
        let status = sup.send(GetStatus).await.unwrap();
        assert_eq!(status.restarts_in_window, 1);
        assert_eq!(
            events(&log).await,
            [
                ev("a", panicked("a broke"), 0),
                ev("a", restarted(false), 0),
                ev("b", restarted(true), 0),
                ev("c", restarted(true), 0),
                ev("b", panicked("b broke"), 0),
            ]
        );
        assert_eq!(b.send(Get).await.unwrap(), (0, 0));
    });
}

#[test]
fn exceeding_the_intensity_stops_the_node_and_not_its_peer() {
    run(|| async {
        let log1 = EventLog::new().start();
        let log2 = EventLog::new().start();
        let probe1 = Probe::default();
        let probe2 = Probe::default();
        let intensity = RestartIntensity {
            max_restarts: 2,
            within: Duration::from_secs(10),
        };
        let mut tree1 = SupervisorBuilder::new(NodeId(1))
            .intensity(intensity)
            .subscriber(log1.clone().recipient());
        let w1 = tree1
            .spawn_child("w", |_| Worker::new("w1", &probe1))
            .unwrap();
        let r1 = tree1
            .spawn_child("relay", |_| Relay {
                to: w1.clone().recipient(),
            })
            .unwrap();
        let sup1 = tree1.start();
        let mut tree2 = SupervisorBuilder::new(NodeId(2))
            .intensity(intensity)
            .subscriber(log2.clone().recipient());
        let w2 = tree2
            .spawn_child("w", |_| Worker::new("w2", &probe2))
            .unwrap();
        let sup2 = tree2.start();

        w1.do_send(Boom("one"));
        sleep_ms(1000).await;
        w1.do_send(Boom("two"));
        sleep_ms(1000).await;
        assert!(w1.connected() && r1.connected());
        w1.do_send(Boom("three"));
        settle().await;

        assert!(!w1.connected());
        assert!(!r1.connected());
        assert!(!sup1.connected());
        assert!(w1.send(Get).await.is_err());
        assert_eq!(
            events(&log1).await,
            [
                ev("w", panicked("one"), 0),
                ev("w", restarted(false), 0),
                ev("w", panicked("two"), 1_000_000),
                ev("w", restarted(false), 1_000_000),
                ev("w", panicked("three"), 2_000_000),
                ev(
                    "",
                    SupervisionEventKind::NodeFailed {
                        reason: "w panicked: three; restart intensity exceeded \
                                 (2 restarts within 10s, at most 2)"
                            .to_owned()
                    },
                    2_000_000
                ),
            ]
        );
        assert_eq!(
            probe1.journal(),
            [
                "w1:started",
                "w1:restarting",
                "w1:started",
                "w1:restarting",
                "w1:started",
                "w1:stopped"
            ]
        );

        // The peer node runs on.
        w2.send(Incr).await.unwrap();
        assert_eq!(w2.send(Get).await.unwrap(), (1, 1));
        let status2 = sup2.send(GetStatus).await.unwrap();
        assert!(status2.running && !status2.failed);
        assert_eq!(status2.children[0].restarts, 0);
        assert!(events(&log2).await.is_empty());
    });
}

#[test]
fn failures_outside_the_window_are_forgotten() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1))
            .intensity(RestartIntensity {
                max_restarts: 1,
                within: Duration::from_secs(1),
            })
            .subscriber(log.clone().recipient());
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        let sup = tree.start();
        for _ in 0..4 {
            w.do_send(Boom("slow failure"));
            sleep_ms(1000).await;
        }
        assert!(w.connected());
        assert_eq!(restarts(&sup).await, [4]);
        let kinds: Vec<_> = events(&log).await.into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds.len(), 8);
        assert!(!kinds
            .iter()
            .any(|k| matches!(k, SupervisionEventKind::NodeFailed { .. })));
    });
}

#[test]
fn a_child_that_panics_in_started_fails_the_node_after_the_intensity() {
    run(|| async {
        let probe = Probe::default();
        probe.started_panics.set(u32::MAX);
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1))
            .intensity(RestartIntensity {
                max_restarts: 3,
                within: Duration::from_secs(1),
            })
            .subscriber(log.clone().recipient());
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        let sup = tree.start();
        settle().await;
        assert!(!w.connected());
        assert!(!sup.connected());
        let kinds: Vec<_> = events(&log).await.into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                panicked("cannot start"),
                restarted(false),
                panicked("cannot start"),
                restarted(false),
                panicked("cannot start"),
                restarted(false),
                panicked("cannot start"),
                SupervisionEventKind::NodeFailed {
                    reason: "w panicked: cannot start; restart intensity exceeded \
                             (3 restarts within 1s, at most 3)"
                        .to_owned()
                },
            ]
        );
    });
}

#[test]
fn a_child_that_panics_in_started_once_recovers() {
    run(|| async {
        let probe = Probe::default();
        probe.started_panics.set(1);
        let mut tree = SupervisorBuilder::new(NodeId(1));
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        let sup = tree.start();
        w.do_send(Incr);
        assert_eq!(w.send(Get).await.unwrap(), (1, 1));
        assert_eq!(restarts(&sup).await, [1]);
    });
}

#[test]
fn a_child_that_stops_itself_is_restarted() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1)).subscriber(log.clone().recipient());
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        let sup = tree.start();
        w.send(Incr).await.unwrap();
        w.do_send(StopSelf);
        w.do_send(Incr);
        assert_eq!(w.send(Get).await.unwrap(), (2, 1));
        assert_eq!(restarts(&sup).await, [1]);
        assert_eq!(
            probe.journal(),
            ["w:started", "w:stopped", "w:restarting", "w:started"]
        );
        assert_eq!(
            events(&log).await,
            [
                ev("w", SupervisionEventKind::ChildStopped, 0),
                ev("w", restarted(false), 0),
            ]
        );
    });
}

#[test]
fn shutdown_drops_every_mailbox_before_it_returns() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1)).subscriber(log.clone().recipient());
        let a = tree.spawn_child("a", |_| Worker::new("a", &probe)).unwrap();
        let b = tree.spawn_child("b", |_| Worker::new("b", &probe)).unwrap();
        let sup = tree.start();
        sleep_ms(5).await;
        a.send(Incr).await.unwrap();
        sup.send(Shutdown).await.unwrap();
        assert!(!a.connected());
        assert!(!b.connected());
        assert!(matches!(a.send(Get).await, Err(MailboxError::Closed)));
        // Stopped last-started first; durable state stays in storage.
        assert_eq!(
            probe.journal(),
            ["a:started", "b:started", "b:stopped", "a:stopped"]
        );
        assert_eq!(probe.store.get(), 1);
        settle().await;
        assert!(!sup.connected());
        assert_eq!(
            events(&log).await,
            [ev("", SupervisionEventKind::NodeShutdown, 5_000)]
        );
    });
}

#[test]
fn a_restarted_node_reloads_its_state_from_storage() {
    run(|| async {
        let probe = Probe::default();
        let mut tree = SupervisorBuilder::new(NodeId(1));
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        let sup = tree.start();
        w.send(Incr).await.unwrap();
        w.send(Incr).await.unwrap();
        sup.send(Shutdown).await.unwrap();
        // A simulated crash and recovery: a new tree over the same storage.
        let mut tree = SupervisorBuilder::new(NodeId(1));
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        let _sup = tree.start();
        assert_eq!(w.send(Get).await.unwrap(), (2, 0));
    });
}

#[test]
fn manual_restart_and_name_errors() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1)).subscriber(log.clone().recipient());
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        assert_eq!(
            tree.spawn_child("w", |_| Worker::new("w", &probe))
                .unwrap_err(),
            SupervisionError::DuplicateChild {
                node: NodeId(1),
                name: "w".to_owned()
            }
        );
        assert!(tree
            .start_child("w", ChildSlot::new(), Worker::new("w", &probe))
            .is_err());
        let sup = tree.start();
        w.send(Incr).await.unwrap();
        sup.send(RestartChild {
            name: "w".to_owned(),
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(w.send(Get).await.unwrap(), (1, 0));
        assert_eq!(
            sup.send(RestartChild {
                name: "x".to_owned()
            })
            .await
            .unwrap(),
            Err(SupervisionError::UnknownChild {
                node: NodeId(1),
                name: "x".to_owned()
            })
        );
        let status = sup.send(GetStatus).await.unwrap();
        assert_eq!(status.children[0].restarts, 1);
        // Manual restarts do not count against the intensity.
        assert_eq!(status.restarts_in_window, 0);
        assert_eq!(events(&log).await, [ev("w", restarted(false), 0)]);
    });
}

#[test]
fn events_serialize_with_their_fields() {
    let e = SupervisionEvent {
        node: NodeId(3),
        component: "replicator".to_owned(),
        kind: panicked("index out of bounds"),
        at_us: 1500,
    };
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(
        json,
        r#"{"node":3,"component":"replicator","kind":{"ChildPanicked":{"reason":"index out of bounds"}},"at_us":1500}"#
    );
    let back: SupervisionEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
}

#[test]
fn a_panic_in_restarting_is_another_failure() {
    run(|| async {
        let probe = Probe::default();
        probe.restarting_panics.set(1);
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1)).subscriber(log.clone().recipient());
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        let sup = tree.start();
        w.send(Incr).await.unwrap();
        w.do_send(Boom("boom"));
        settle().await;
        assert_eq!(w.send(Get).await.unwrap(), (1, 0));
        assert_eq!(restarts(&sup).await, [2]);
        assert_eq!(
            probe.journal(),
            ["w:started", "w:restarting", "w:restarting", "w:started"]
        );
        assert_eq!(
            events(&log).await,
            [
                ev("w", panicked("boom"), 0),
                ev("w", restarted(false), 0),
                ev("w", panicked("cannot restart"), 0),
                ev("w", restarted(false), 0),
            ]
        );
    });
}

#[test]
fn a_panic_in_a_timer_callback_is_caught_and_the_timer_is_gone() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1)).subscriber(log.clone().recipient());
        let w = tree
            .spawn_child("w", |_| {
                Worker::new("w", &probe).ticking(Duration::from_millis(100))
            })
            .unwrap();
        let sup = tree.start();
        w.send(Incr).await.unwrap();
        w.send(TimeBomb(Duration::from_millis(250))).await.unwrap();
        sleep_ms(1000).await;
        // Ticks at 100, 200 before the bomb at 250, then the new interval
        // from 250: 350 ... 950.
        assert_eq!(probe.ticks.get(), 9);
        assert_eq!(w.send(Get).await.unwrap(), (1, 0));
        assert_eq!(restarts(&sup).await, [1]);
        assert_eq!(
            events(&log).await,
            [
                ev("w", panicked("timer went off"), 250_000),
                ev("w", restarted(false), 250_000),
            ]
        );
    });
}

#[test]
fn a_panic_while_stopping_does_not_stop_the_shutdown() {
    run(|| async {
        let probe = Probe::default();
        probe.stopped_panics.set(true);
        let other = probe.sibling();
        let mut tree = SupervisorBuilder::new(NodeId(1));
        let a = tree.spawn_child("a", |_| Worker::new("a", &other)).unwrap();
        let b = tree.spawn_child("b", |_| Worker::new("b", &probe)).unwrap();
        let sup = tree.start();
        settle().await;
        sup.send(Shutdown).await.unwrap();
        assert!(!a.connected() && !b.connected());
        assert_eq!(
            probe.journal(),
            ["a:started", "b:started", "b:stopped", "a:stopped"]
        );
    });
}

#[test]
fn fail_node_stops_every_child_with_the_given_reason() {
    run(|| async {
        let probe = Probe::default();
        let log = EventLog::new().start();
        let mut tree = SupervisorBuilder::new(NodeId(1)).subscriber(log.clone().recipient());
        let w = tree.spawn_child("w", |_| Worker::new("w", &probe)).unwrap();
        let sup = tree.start();
        sleep_ms(7).await;
        sup.send(FailNode {
            reason: "disk refused a write".to_owned(),
        })
        .await
        .unwrap();
        assert!(!w.connected());
        settle().await;
        assert!(!sup.connected());
        assert_eq!(
            events(&log).await,
            [ev(
                "",
                SupervisionEventKind::NodeFailed {
                    reason: "disk refused a write".to_owned()
                },
                7_000
            )]
        );
    });
}
