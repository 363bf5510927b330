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

use super::{SafetyChecker, SafetyEvent, SafetyReport, SharedChecker, Violation};
use crate::sim::clock;
use actix::prelude::*;
use std::cell::Cell;
use std::fmt;
use tokio::time::Instant;

/// Reports one event, observed `at_us` microseconds after the verifier's
/// origin.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Observe {
    /// When it happened (microseconds).
    pub at_us: u64,
    /// What happened.
    pub event: SafetyEvent,
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
pub struct SafetyVerifier {
    checker: SafetyChecker,
    subscribers: Vec<Recipient<ViolationFound>>,
    origin: Instant,
}

impl SafetyVerifier {
    /// A verifier running `checker`; its time origin is now (tokio clock).
    pub fn new(checker: SafetyChecker) -> Self {
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
    pub fn start_with_sink(self) -> (Addr<SafetyVerifier>, SafetySink) {
        let origin = self.origin;
        let addr = self.start();
        let sink = SafetySink::actor(addr.clone().recipient(), origin);
        (addr, sink)
    }
}

impl Actor for SafetyVerifier {
    type Context = Context<Self>;
}

impl Handler<Observe> for SafetyVerifier {
    type Result = ();

    fn handle(&mut self, msg: Observe, _ctx: &mut Self::Context) {
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

impl Handler<GetViolations> for SafetyVerifier {
    type Result = MessageResult<GetViolations>;

    fn handle(&mut self, _msg: GetViolations, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.checker.violations().to_vec())
    }
}

impl Handler<GetSafetyReport> for SafetyVerifier {
    type Result = MessageResult<GetSafetyReport>;

    fn handle(&mut self, _msg: GetSafetyReport, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.checker.report())
    }
}

impl Handler<SubscribeViolations> for SafetyVerifier {
    type Result = ();

    fn handle(&mut self, msg: SubscribeViolations, _ctx: &mut Self::Context) {
        self.subscribers.push(msg.0);
    }
}

#[derive(Clone, Default)]
enum SinkMode {
    #[default]
    Off,
    Local {
        checker: SharedChecker,
        origin: Instant,
        /// The last instant stamped and its stamp: events reported at one
        /// (virtual) instant, which is the common case, reuse it.
        last: Cell<Option<(Instant, u64)>>,
    },
    Actor {
        recipient: Recipient<Observe>,
        origin: Instant,
    },
}

/// The handle protocol components report [`SafetyEvent`]s through. Cheap to
/// clone; `Send`. The default sink is off.
#[derive(Clone, Default)]
pub struct SafetySink {
    mode: SinkMode,
}

impl fmt::Debug for SafetySink {
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

impl SafetySink {
    /// A sink that drops everything (outside simulations and tests).
    pub fn noop() -> Self {
        Self::default()
    }

    /// A sink that checks events synchronously in `checker`, stamping them
    /// relative to `origin`.
    pub fn local(checker: &SharedChecker, origin: Instant) -> Self {
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
    pub fn actor(recipient: Recipient<Observe>, origin: Instant) -> Self {
        Self {
            mode: SinkMode::Actor { recipient, origin },
        }
    }

    /// True unless the sink is off: emitters can skip preparing events.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.mode, SinkMode::Off)
    }

    /// Reports an event that happens now.
    pub fn emit(&self, event: impl Into<SafetyEvent>) {
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
    pub fn emit_ref(&self, event: &SafetyEvent) {
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
    pub fn emit_with<E: Into<SafetyEvent>>(&self, make: impl FnOnce() -> E) {
        if self.is_enabled() {
            self.emit(make());
        }
    }

    /// Reports an event with an explicit time (microseconds since the
    /// origin), e.g. from a simulation that keeps its own clock.
    pub fn emit_at(&self, at_us: u64, event: impl Into<SafetyEvent>) {
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
    use crate::safety::{digest_of, Epoch, PbftEvent, Position, RaftEvent};
    use crate::types::{LogIndex, NodeId, SeqNo, Term, View};
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

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

    fn leader(node: u64, term: u64) -> RaftEvent {
        RaftEvent::BecameLeader {
            node: NodeId(node),
            term: Term(term),
        }
    }

    /// The verifier, under the paused clock: events stamped in virtual time
    /// by the sink, a violation pushed to a subscriber and returned by
    /// `GetViolations`, clean events leaving no trace.
    #[test]
    fn the_verifier_actor_checks_events_in_virtual_time() {
        let sys = paused_system();
        sys.block_on(async {
            let (verifier, sink) =
                SafetyVerifier::new(SafetyChecker::new().with_raft().with_pbft()).start_with_sink();
            let collector = Collector(Vec::new()).start();
            verifier
                .send(SubscribeViolations(collector.clone().recipient()))
                .await
                .expect("verifier alive");

            tokio::time::sleep(Duration::from_millis(5)).await;
            sink.emit(leader(1, 1));
            sink.emit_with(|| RaftEvent::Appended {
                node: NodeId(1),
                index: LogIndex(1),
                term: Term(1),
                digest: digest_of(&"x"),
            });
            tokio::time::sleep(Duration::from_millis(7)).await;
            sink.emit(leader(2, 1));
            sink.emit_at(
                20_000,
                PbftEvent::Committed {
                    replica: NodeId(0),
                    view: View(0),
                    seq: SeqNo(1),
                    digest: 1,
                },
            );
            sink.emit_at(
                21_000,
                PbftEvent::Committed {
                    replica: NodeId(1),
                    view: View(1),
                    seq: SeqNo(1),
                    digest: 2,
                },
            );

            let violations = verifier.send(GetViolations).await.expect("verifier alive");
            assert_eq!(violations.len(), 2);
            let v = &violations[0];
            assert_eq!(v.invariant, "raft-election-safety");
            assert_eq!(v.at_us, 12_000, "5 ms + 7 ms of virtual time");
            assert_eq!(v.nodes, vec![NodeId(1), NodeId(2)]);
            assert_eq!(v.epoch, Some(Epoch::Term(Term(1))));
            let v = &violations[1];
            assert_eq!(v.invariant, "pbft-agreement");
            assert_eq!(v.at_us, 21_000);
            assert_eq!(v.position, Some(Position::Seq(SeqNo(1))));

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
            let shared = SharedChecker::new(SafetyChecker::new().with_raft());
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
        let sink = SafetySink::noop();
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
        assert_send_clone::<SafetySink>();
        assert_send_clone::<SharedChecker>();
    }
}
