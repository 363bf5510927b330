//! Latency measurement: [`LatencyCore`] (pure: a histogram plus the start
//! times of operations in flight) and the [`LatencyTracker`] actor around it.
//!
//! The actor is the only place that reads the clock, through
//! [`tokio::time::Instant`]: virtual time under the simulation's paused
//! clock, real time otherwise. A caller either measures itself and sends
//! [`RecordLatency`], or brackets an operation with [`StartOp`] and
//! [`FinishOp`] and lets the tracker measure (the clock is read when the
//! tracker handles each message).

use super::histogram::{duration_micros, LatencyHistogram, LatencySnapshot};
use super::recorder::ClusterRecorder;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Operations in flight a tracker remembers by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 100_000;

/// The pure part of a latency tracker.
#[derive(Debug, Clone)]
pub struct LatencyCore {
    histogram: LatencyHistogram,
    in_flight: BTreeMap<u64, Instant>,
    max_in_flight: usize,
    abandoned: u64,
}

impl Default for LatencyCore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

impl LatencyCore {
    /// An empty core remembering at most `max_in_flight` (at least 1)
    /// started operations.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            histogram: LatencyHistogram::new(),
            in_flight: BTreeMap::new(),
            max_in_flight: max_in_flight.max(1),
            abandoned: 0,
        }
    }

    /// Records a measured latency.
    pub fn record(&mut self, micros: u64) {
        self.histogram.record(micros);
    }

    /// Notes that operation `id` started at `now`. Starting an id already in
    /// flight restarts it. When the table is full, the operation with the
    /// smallest id is forgotten. Both count as abandoned.
    pub fn start(&mut self, id: u64, now: Instant) {
        if self.in_flight.insert(id, now).is_some() {
            self.abandoned += 1;
        }
        while self.in_flight.len() > self.max_in_flight {
            self.in_flight.pop_first();
            self.abandoned += 1;
        }
    }

    /// Finishes operation `id` at `now`: records and returns its latency in
    /// microseconds, or `None` (recording nothing) if it was not in flight.
    pub fn finish(&mut self, id: u64, now: Instant) -> Option<u64> {
        let started = self.in_flight.remove(&id)?;
        let micros = duration_micros(now.saturating_duration_since(started));
        self.histogram.record(micros);
        Some(micros)
    }

    /// Forgets operation `id` without recording (it failed); whether it
    /// was in flight.
    pub fn cancel(&mut self, id: u64) -> bool {
        self.in_flight.remove(&id).is_some()
    }

    /// Operations started and not yet finished or cancelled.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Operations forgotten because the table was full or their id was
    /// started again.
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// The latencies recorded so far.
    pub fn histogram(&self) -> &LatencyHistogram {
        &self.histogram
    }

    /// Forgets the recorded latencies (operations in flight stay).
    pub fn reset(&mut self) {
        self.histogram.clear();
    }
}

/// Records one measured latency.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct RecordLatency {
    /// The latency in microseconds.
    pub micros: u64,
}

impl RecordLatency {
    /// A latency given as a duration (whole microseconds, saturating).
    pub fn from_duration(duration: Duration) -> Self {
        Self {
            micros: duration_micros(duration),
        }
    }
}

/// Operation `id` starts now (the tracker reads the clock).
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct StartOp {
    /// Caller-chosen id, unique among operations in flight.
    pub id: u64,
}

/// Operation `id` finished now: its latency is recorded and returned
/// (`None` if it was not in flight).
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "Option<u64>")]
pub struct FinishOp {
    /// The id given to [`StartOp`].
    pub id: u64,
}

/// Operation `id` failed: forget it without recording. Returns whether it
/// was in flight.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "bool")]
pub struct CancelOp {
    /// The id given to [`StartOp`].
    pub id: u64,
}

/// Asks for the latency summary.
#[derive(Message, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[rtype(result = "LatencySnapshot")]
pub struct GetLatency;

/// Forgets every recorded latency (e.g. after a warm-up).
#[derive(Message, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct ResetLatency;

/// An actor that measures latencies into a histogram, for one node or one
/// cluster. Optionally also reports every latency to a histogram of a
/// [`ClusterRecorder`].
#[derive(Debug, Default)]
pub struct LatencyTracker {
    core: LatencyCore,
    report: Option<::metrics::Histogram>,
}

impl LatencyTracker {
    /// A tracker with an empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remember at most `max_in_flight` started operations (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]).
    #[must_use]
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.core = LatencyCore::new(max_in_flight);
        self
    }

    /// Also record every latency (microseconds) in histogram `name` with
    /// `labels` of `recorder`.
    #[must_use]
    pub fn reporting_to(
        mut self,
        recorder: &ClusterRecorder,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Self {
        let labels: Vec<::metrics::Label> = labels
            .iter()
            .map(|(k, v)| ::metrics::Label::new(k.to_string(), v.to_string()))
            .collect();
        let name = name.to_string();
        self.report = Some(recorder.with(|| ::metrics::histogram!(name, labels)));
        self
    }

    /// The core (for inspection before the actor starts).
    pub fn core(&self) -> &LatencyCore {
        &self.core
    }

    fn report(&self, micros: u64) {
        if let Some(h) = &self.report {
            h.record(micros as f64);
        }
    }
}

impl Actor for LatencyTracker {
    type Context = Context<Self>;
}

impl Handler<RecordLatency> for LatencyTracker {
    type Result = ();

    fn handle(&mut self, msg: RecordLatency, _ctx: &mut Self::Context) {
        self.core.record(msg.micros);
        self.report(msg.micros);
    }
}

impl Handler<StartOp> for LatencyTracker {
    type Result = ();

    fn handle(&mut self, msg: StartOp, _ctx: &mut Self::Context) {
        self.core.start(msg.id, Instant::now());
    }
}

impl Handler<FinishOp> for LatencyTracker {
    type Result = Option<u64>;

    fn handle(&mut self, msg: FinishOp, _ctx: &mut Self::Context) -> Option<u64> {
        let micros = self.core.finish(msg.id, Instant::now());
        match micros {
            Some(m) => self.report(m),
            None => tracing::trace!(id = msg.id, "FinishOp for an operation not in flight"),
        }
        micros
    }
}

impl Handler<CancelOp> for LatencyTracker {
    type Result = bool;

    fn handle(&mut self, msg: CancelOp, _ctx: &mut Self::Context) -> bool {
        self.core.cancel(msg.id)
    }
}

impl Handler<GetLatency> for LatencyTracker {
    type Result = MessageResult<GetLatency>;

    fn handle(&mut self, _msg: GetLatency, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.core.histogram().snapshot())
    }
}

impl Handler<ResetLatency> for LatencyTracker {
    type Result = ();

    fn handle(&mut self, _msg: ResetLatency, _ctx: &mut Self::Context) {
        self.core.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_support::run_paused;

    #[test]
    fn core_measures_between_start_and_finish() {
        let t0 = Instant::now();
        let mut core = LatencyCore::new(10);
        core.start(1, t0);
        core.start(2, t0 + Duration::from_millis(1));
        assert_eq!(core.finish(2, t0 + Duration::from_millis(4)), Some(3_000));
        assert_eq!(
            core.finish(1, t0 + Duration::from_micros(10_500)),
            Some(10_500)
        );
        assert_eq!(
            core.finish(1, t0 + Duration::from_secs(1)),
            None,
            "already finished"
        );
        assert_eq!(core.histogram().count(), 2);
        assert_eq!(core.histogram().max(), 10_500);
        assert_eq!(core.in_flight(), 0);
    }

    #[test]
    fn core_in_flight_table_is_bounded() {
        let t0 = Instant::now();
        let mut core = LatencyCore::new(3);
        for id in 1..=5 {
            core.start(id, t0);
        }
        assert_eq!(core.in_flight(), 3);
        assert_eq!(core.abandoned(), 2);
        assert_eq!(core.finish(1, t0), None, "the smallest ids were forgotten");
        assert_eq!(core.finish(2, t0), None);
        assert!(core.cancel(3));
        assert!(!core.cancel(3));
        core.start(4, t0);
        assert_eq!(
            core.abandoned(),
            3,
            "restarting an id abandons the first start"
        );
        assert_eq!(core.finish(5, t0 + Duration::from_micros(7)), Some(7));
        assert_eq!(core.histogram().count(), 1);
    }

    #[test]
    fn tracker_measures_virtual_time() {
        let snap = run_paused(async {
            let recorder = ClusterRecorder::new();
            let tracker = LatencyTracker::new()
                .reporting_to(&recorder, "op_latency_us", &[("node", "1")])
                .start();
            tracker.send(StartOp { id: 1 }).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            tracker.send(StartOp { id: 2 }).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert_eq!(
                tracker.send(FinishOp { id: 1 }).await.unwrap(),
                Some(25_000)
            );
            assert_eq!(tracker.send(FinishOp { id: 2 }).await.unwrap(), Some(5_000));
            assert_eq!(tracker.send(FinishOp { id: 3 }).await.unwrap(), None);
            tracker.send(StartOp { id: 4 }).await.unwrap();
            assert!(tracker.send(CancelOp { id: 4 }).await.unwrap());
            tracker.send(RecordLatency { micros: 1_000 }).await.unwrap();
            let snap = tracker.send(GetLatency).await.unwrap();
            let reported = recorder.snapshot();
            let h = &reported.histograms["op_latency_us{node=\"1\"}"];
            assert_eq!((h.count, h.min, h.max), (3, 1_000, 25_000));
            snap
        });
        assert_eq!(snap.count, 3);
        assert_eq!(snap.min_us, 1_000);
        assert_eq!(snap.max_us, 25_000);
        assert!(
            snap.p50_us >= 5_000 && snap.p50_us < 5_040,
            "p50 {}",
            snap.p50_us
        );
        assert_eq!(snap.p99_us, 25_000);
        assert_eq!(snap.mean_us, 31_000.0 / 3.0);
        assert_eq!(snap.histogram.iter().map(|b| b.count).sum::<u64>(), 3);
    }

    #[test]
    fn tracker_percentiles_of_a_known_distribution_and_reset() {
        let (before, after) = run_paused(async {
            let tracker = LatencyTracker::new().start();
            // 1..=1000 ms in microseconds, shuffled deterministically.
            for i in 0..1_000u64 {
                let ms = (i * 337) % 1_000 + 1;
                tracker.do_send(RecordLatency::from_duration(Duration::from_millis(ms)));
            }
            let before = tracker.send(GetLatency).await.unwrap();
            tracker.send(ResetLatency).await.unwrap();
            let after = tracker.send(GetLatency).await.unwrap();
            (before, after)
        });
        assert_eq!(before.count, 1_000);
        assert_eq!(before.min_us, 1_000);
        assert_eq!(before.max_us, 1_000_000);
        assert_eq!(before.mean_us, 500_500.0);
        for (got, exact) in [(before.p50_us, 500_000u64), (before.p99_us, 990_000)] {
            assert!(got >= exact, "{got} < {exact}");
            assert!(((got - exact) as f64) / (exact as f64) < LatencyHistogram::RELATIVE_PRECISION);
        }
        assert_eq!(after, LatencySnapshot::default());
    }
}
