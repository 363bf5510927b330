//! The [`SafetyVerifier`] actor and the [`SafetySink`] handle protocol
//! components report through.
//!
//! A sink has three modes behind one API:
//!
//! * **off** ([`SafetySink::noop`], the default): reporting costs a branch;
//!   use [`SafetySink::emit_with`] so digests are not even computed;
//! * **local** ([`SafetySink::local`]): events go straight into a
//!   [`SharedChecker`] in the caller's thread, synchronously (best for the
//!   deterministic simulation: no messages, violations visible at once);
//! * **actor** ([`SafetySink::actor`]): events are sent as [`Observe`]
//!   messages to a [`SafetyVerifier`], which can notify subscribers.
//!
//! Sinks stamp each event with the tokio clock (virtual time under a paused
//! clock) as microseconds since an origin shared by every clone.

use super::{ProtocolEvent, SafetyChecker, SafetyEvent, SafetyReport, SharedChecker, Violation};
use crate::sim::clock;
use actix::prelude::*;
use std::cell::Cell;
use std::fmt;
use tokio::time::Instant;

/// Reports one event, observed `at_us` microseconds after the verifier's
/// origin.
#[derive(Clone, Debug)]
pub struct Observe<E> {
    /// When it happened (microseconds).
    pub at_us: u64,
    /// What happened.
    pub event: SafetyEvent<E>,
}

impl<E: ProtocolEvent> Message for Observe<E> {
    type Result = ();
}

/// Asks for the violations found so far.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Vec<Violation>")]
pub struct GetViolations;

/// Asks for a full report (events observed, invariants, violations).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "SafetyReport")]
pub struct GetSafetyReport;

/// Subscribes a recipient to every violation found from now on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeViolations(pub Recipient<ViolationFound>);

/// Sent to subscribers for each violation found.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ViolationFound(pub Violation);

/// An actor that receives events from every node and checks its
/// [`SafetyChecker`]'s invariants as they happen.
pub struct SafetyVerifier<E: ProtocolEvent> {
    checker: SafetyChecker<E>,
    subscribers: Vec<Recipient<ViolationFound>>,
    origin: Instant,
}

impl<E: ProtocolEvent> SafetyVerifier<E> {
    /// A verifier running `checker`; its time origin is now (tokio clock).
    pub fn new(checker: SafetyChecker<E>) -> Self {
        Self {
            checker,
            subscribers: Vec::new(),
            origin: Instant::now(),
        }
    }

    /// The instant `at_us` is measured from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Starts the verifier and returns its address and a sink that reports
    /// to it, stamping events relative to its origin.
    pub fn start_with_sink(self) -> (Addr<SafetyVerifier<E>>, SafetySink<E>) {
        let origin = self.origin;
        let addr = self.start();
        let sink = SafetySink::actor(addr.clone().recipient(), origin);
        (addr, sink)
    }
}

impl<E: ProtocolEvent> Actor for SafetyVerifier<E> {
    type Context = Context<Self>;
}

impl<E: ProtocolEvent> Handler<Observe<E>> for SafetyVerifier<E> {
    type Result = ();

    fn handle(&mut self, msg: Observe<E>, _ctx: &mut Self::Context) {
        let found = self.checker.observe(msg.at_us, &msg.event);
        if found.is_empty() {
            return;
        }
        self.subscribers.retain(|s| s.connected());
        for v in found {
            for s in &self.subscribers {
                s.do_send(ViolationFound(v.clone()));
            }
        }
    }
}

impl<E: ProtocolEvent> Handler<GetViolations> for SafetyVerifier<E> {
    type Result = MessageResult<GetViolations>;

    fn handle(&mut self, _msg: GetViolations, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.checker.violations().to_vec())
    }
}

impl<E: ProtocolEvent> Handler<GetSafetyReport> for SafetyVerifier<E> {
    type Result = MessageResult<GetSafetyReport>;

    fn handle(&mut self, _msg: GetSafetyReport, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.checker.report())
    }
}

impl<E: ProtocolEvent> Handler<SubscribeViolations> for SafetyVerifier<E> {
    type Result = ();

    fn handle(&mut self, msg: SubscribeViolations, _ctx: &mut Self::Context) {
        self.subscribers.push(msg.0);
    }
}

enum SinkMode<E: ProtocolEvent> {
    Off,
    Local {
        checker: SharedChecker<E>,
        origin: Instant,
        /// The last instant stamped and its stamp: events reported at one
        /// (virtual) instant, which is the common case, reuse it.
        last: Cell<Option<(Instant, u64)>>,
    },
    Actor {
        recipient: Recipient<Observe<E>>,
        origin: Instant,
    },
}

impl<E: ProtocolEvent> Clone for SinkMode<E> {
    fn clone(&self) -> Self {
        match self {
            SinkMode::Off => SinkMode::Off,
            SinkMode::Local {
                checker,
                origin,
                last,
            } => SinkMode::Local {
                checker: checker.clone(),
                origin: *origin,
                last: last.clone(),
            },
            SinkMode::Actor { recipient, origin } => SinkMode::Actor {
                recipient: recipient.clone(),
                origin: *origin,
            },
        }
    }
}

/// The handle protocol components report [`SafetyEvent`]s through. Cheap to
/// clone; `Send`. The default sink is off.
pub struct SafetySink<E: ProtocolEvent> {
    mode: SinkMode<E>,
}

impl<E: ProtocolEvent> Clone for SafetySink<E> {
    fn clone(&self) -> Self {
        Self {
            mode: self.mode.clone(),
        }
    }
}

impl<E: ProtocolEvent> Default for SafetySink<E> {
    fn default() -> Self {
        Self {
            mode: SinkMode::Off,
        }
    }
}

impl<E: ProtocolEvent> fmt::Debug for SafetySink<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            SinkMode::Off => "off",
            SinkMode::Local { .. } => "local",
            SinkMode::Actor { .. } => "actor",
        };
        f.debug_struct("SafetySink").field("mode", &mode).finish()
    }
}

/// [`clock::micros_since_cached`] with the cache in a `Cell` (the sink is
/// used through `&self`).
fn stamp(origin: Instant, last: &Cell<Option<(Instant, u64)>>) -> u64 {
    let mut cached = last.get();
    let us = clock::micros_since_cached(origin, &mut cached);
    last.set(cached);
    us
}

impl<E: ProtocolEvent> SafetySink<E> {
    /// A sink that drops everything (outside simulations and tests).
    pub fn noop() -> Self {
        Self::default()
    }

    /// A sink that checks events synchronously in `checker`, stamping them
    /// relative to `origin`.
    pub fn local(checker: &SharedChecker<E>, origin: Instant) -> Self {
        Self {
            mode: SinkMode::Local {
                checker: checker.clone(),
                origin,
                last: Cell::new(None),
            },
        }
    }

    /// A sink that sends events to a verifier (usually
    /// `addr.recipient()`), stamping them relative to `origin` (usually
    /// [`SafetyVerifier::origin`]).
    pub fn actor(recipient: Recipient<Observe<E>>, origin: Instant) -> Self {
        Self {
            mode: SinkMode::Actor { recipient, origin },
        }
    }

    /// True unless the sink is off: emitters can skip preparing events.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.mode, SinkMode::Off)
    }

    /// Reports an event that happens now.
    pub fn emit(&self, event: impl Into<SafetyEvent<E>>) {
        match &self.mode {
            SinkMode::Off => {}
            SinkMode::Local { .. } => self.emit_ref(&event.into()),
            SinkMode::Actor { recipient, origin } => recipient.do_send(Observe {
                at_us: clock::micros_since(*origin),
                event: event.into(),
            }),
        }
    }

    /// Reports an event that happens now, by reference: a local sink
    /// checks it in place (so the caller can reuse the event's buffers), an
    /// actor sink sends a copy.
    pub fn emit_ref(&self, event: &SafetyEvent<E>) {
        match &self.mode {
            SinkMode::Off => {}
            SinkMode::Local {
                checker,
                origin,
                last,
            } => {
                checker.observe(stamp(*origin, last), event);
            }
            SinkMode::Actor { recipient, origin } => recipient.do_send(Observe {
                at_us: clock::micros_since(*origin),
                event: event.clone(),
            }),
        }
    }

    /// Reports the event `make` builds, calling it only if the sink is on
    /// (so digests are never computed outside simulations).
    pub fn emit_with<V: Into<SafetyEvent<E>>>(&self, make: impl FnOnce() -> V) {
        if self.is_enabled() {
            self.emit(make());
        }
    }

    /// Reports an event with an explicit time (microseconds since the
    /// origin), e.g. from a simulation that keeps its own clock.
    pub fn emit_at(&self, at_us: u64, event: impl Into<SafetyEvent<E>>) {
        match &self.mode {
            SinkMode::Off => {}
            SinkMode::Local { checker, .. } => {
                checker.observe(at_us, &event.into());
            }
            SinkMode::Actor { recipient, .. } => recipient.do_send(Observe {
                at_us,
                event: event.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::{Epoch, EventKinds, Invariant, NoProtocolEvents};
    use crate::types::NodeId;
    use std::collections::BTreeMap;
    use std::rc::Rc;
    use std::time::Duration;

    type Ev = SafetyEvent<NoProtocolEvents>;

    /// At most one leader per epoch, from the neutral events.
    #[derive(Default)]
    struct OneLeaderPerEpoch(BTreeMap<u64, NodeId>);

    impl Invariant<NoProtocolEvents> for OneLeaderPerEpoch {
        fn name(&self) -> &'static str {
            "one-leader-per-epoch"
        }

        fn observe(&mut self, at_us: u64, ev: &Ev, out: &mut Vec<Violation>) {
            if let SafetyEvent::BecameLeader { node, epoch } = ev {
                let first = *self.0.entry(*epoch).or_insert(*node);
                if first != *node {
                    out.push(
                        Violation::new(self.name(), at_us, ev, "two leaders")
                            .with_nodes([first, *node])
                            .with_epoch(Epoch::of::<NoProtocolEvents>("epoch", *epoch)),
                    );
                }
            }
        }

        fn event_kinds(&self) -> EventKinds {
            EventKinds::BECAME_LEADER
        }
    }

    fn checker() -> SafetyChecker<NoProtocolEvents> {
        SafetyChecker::new().with(Box::new(OneLeaderPerEpoch::default()))
    }

    /// The sink's stamp keeps its one-entry cache in the `Cell`: a
    /// repeated instant gets the stamp cached for it (deliberately a wrong
    /// one here), a new instant is computed afresh and cached.
    #[test]
    fn the_sink_stamp_reuses_the_last_instant() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let origin = Instant::now();
            let last = Cell::new(Some((Instant::now(), 42)));
            assert_eq!(stamp(origin, &last), 42);
            tokio::time::advance(std::time::Duration::from_micros(1_500)).await;
            assert_eq!(stamp(origin, &last), 1_500);
            assert_eq!(last.get(), Some((Instant::now(), 1_500)));
            assert_eq!(stamp(origin, &last), 1_500);
        });
    }

    fn paused_system() -> actix::SystemRunner {
        actix::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("a current-thread runtime builds")
        })
    }

    /// Collects violations sent to it.
    struct Collector(Vec<Violation>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<ViolationFound> for Collector {
        type Result = ();

        fn handle(&mut self, msg: ViolationFound, _ctx: &mut Self::Context) {
            self.0.push(msg.0);
        }
    }

    #[derive(Message)]
    #[rtype(result = "Vec<Violation>")]
    struct Collected;

    impl Handler<Collected> for Collector {
        type Result = MessageResult<Collected>;

        fn handle(&mut self, _msg: Collected, _ctx: &mut Self::Context) -> Self::Result {
            MessageResult(self.0.clone())
        }
    }

    fn leader(node: u64, epoch: u64) -> Ev {
        SafetyEvent::BecameLeader {
            node: NodeId(node),
            epoch,
        }
    }

    /// The verifier, under the paused clock: events stamped in virtual time
    /// by the sink, a violation pushed to a subscriber and returned by
    /// `GetViolations`, clean events leaving no trace.
    #[test]
    fn the_verifier_actor_checks_events_in_virtual_time() {
        let sys = paused_system();
        sys.block_on(async {
            let (verifier, sink) = SafetyVerifier::new(checker()).start_with_sink();
            let collector = Collector(Vec::new()).start();
            verifier
                .send(SubscribeViolations(collector.clone().recipient()))
                .await
                .expect("verifier alive");

            tokio::time::sleep(Duration::from_millis(5)).await;
            sink.emit(leader(1, 1));
            sink.emit_with(|| SafetyEvent::Crashed { node: NodeId(3) });
            tokio::time::sleep(Duration::from_millis(7)).await;
            sink.emit(leader(2, 1));
            sink.emit_at(20_000, leader(1, 2));
            sink.emit_at(21_000, leader(3, 2));

            let violations = verifier.send(GetViolations).await.expect("verifier alive");
            assert_eq!(violations.len(), 2);
            let v = &violations[0];
            assert_eq!(v.invariant, "one-leader-per-epoch");
            assert_eq!(v.at_us, 12_000, "5 ms + 7 ms of virtual time");
            assert_eq!(v.nodes, vec![NodeId(1), NodeId(2)]);
            assert_eq!(v.epoch, Some(Epoch::new("epoch", "e1")));
            let v = &violations[1];
            assert_eq!(v.at_us, 21_000);
            assert_eq!(v.nodes, vec![NodeId(1), NodeId(3)]);

            let report = verifier
                .send(GetSafetyReport)
                .await
                .expect("verifier alive");
            assert!(!report.ok);
            assert_eq!(report.events_observed, 5);
            assert_eq!(report.violation_count, 2);

            // Notifications were sent before the replies above; let the
            // collector's mailbox drain.
            tokio::task::yield_now().await;
            let pushed = collector.send(Collected).await.expect("collector alive");
            assert_eq!(pushed, violations);
            System::current().stop();
        });
    }

    /// A local sink checks synchronously: the violation is visible right
    /// after `emit` returns, stamped in virtual time.
    #[test]
    fn a_local_sink_checks_in_the_callers_thread() {
        let sys = paused_system();
        sys.block_on(async {
            let shared = SharedChecker::new(checker());
            let sink = SafetySink::local(&shared, Instant::now());
            let clone = sink.clone();
            sink.emit(leader(1, 2));
            tokio::time::sleep(Duration::from_millis(3)).await;
            assert!(shared.is_ok());
            clone.emit(leader(3, 2));
            let violations = shared.violations();
            assert_eq!(violations.len(), 1);
            assert_eq!(violations[0].at_us, 3_000);
            assert!(sink.is_enabled());
        });
    }

    /// An off sink never builds the event.
    #[test]
    fn a_noop_sink_does_nothing_and_builds_nothing() {
        let sink = SafetySink::<NoProtocolEvents>::noop();
        assert!(!sink.is_enabled());
        let built = Rc::new(Cell::new(false));
        let flag = built.clone();
        sink.emit_with(move || {
            flag.set(true);
            leader(1, 1)
        });
        sink.emit(leader(1, 1));
        sink.emit_at(3, leader(2, 1));
        assert!(!built.get());
        assert_eq!(format!("{sink:?}"), "SafetySink { mode: \"off\" }");
    }

    #[test]
    fn sinks_are_send_and_clone() {
        fn assert_send_clone<T: Send + Clone>() {}
        assert_send_clone::<SafetySink<NoProtocolEvents>>();
        assert_send_clone::<SharedChecker<NoProtocolEvents>>();
    }
}
