//! Throughput measurement over sliding windows: [`ThroughputWindow`] (pure:
//! a ring of per-100 ms counts) and the [`ThroughputMeter`] actor around it.
//!
//! The window keeps the last 60 s in 600 buckets of 100 ms (4.7 KiB,
//! whatever the rate). A rate over a window of `W` seconds sums the buckets
//! from the one holding `now` back `W / 100 ms` buckets, and divides by the
//! time those buckets cover up to `now` (so a steady rate is measured
//! without the 10 % dip a half-filled current bucket would cause), never
//! reaching back before the meter started.

use super::recorder::ClusterRecorder;
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// Width of one bucket.
pub const BUCKET: Duration = Duration::from_millis(100);
const BUCKET_NANOS: u128 = 100_000_000;
/// Buckets kept: 60 s of history.
const RING: usize = 600;

/// Operation counts and rates at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ThroughputSnapshot {
    /// Operations recorded since the start (or the last reset).
    pub total: u64,
    /// Rate over the last second.
    pub ops_per_sec_1s: f64,
    /// Rate over the last 10 seconds.
    pub ops_per_sec_10s: f64,
    /// Rate over the last 60 seconds.
    pub ops_per_sec_60s: f64,
    /// `total / elapsed_secs` (0 when no time has passed).
    pub ops_per_sec_overall: f64,
    /// Seconds since the start (or the last reset).
    pub elapsed_secs: f64,
}

/// Per-100 ms operation counts for the last 60 s; pure (takes `now`).
#[derive(Clone, Debug)]
pub struct ThroughputWindow {
    start: Instant,
    total: u64,
    ring: Box<[u64; RING]>,
    /// Absolute index (since `start`) of the newest bucket in the ring.
    head: u64,
}

impl ThroughputWindow {
    /// An empty window starting at `start`.
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            total: 0,
            ring: Box::new([0; RING]),
            head: 0,
        }
    }

    /// Forgets everything and starts again at `start`.
    pub fn reset(&mut self, start: Instant) {
        *self = Self::new(start);
    }

    /// When the window started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Operations recorded since the start.
    pub fn total(&self) -> u64 {
        self.total
    }

    fn bucket_at(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos / BUCKET_NANOS).unwrap_or(u64::MAX)
    }

    /// Moves the head to bucket `index`, zeroing the buckets it skips
    /// (at most `RING` of them).
    fn advance_to(&mut self, index: u64) {
        if index <= self.head {
            return;
        }
        if index - self.head >= RING as u64 {
            self.ring.fill(0);
        } else {
            for b in self.head + 1..=index {
                self.ring[(b % RING as u64) as usize] = 0;
            }
        }
        self.head = index;
    }

    /// Records `n` operations at `now`. A `now` older than the window (a
    /// clock that went backwards) counts in the total only.
    pub fn record(&mut self, n: u64, now: Instant) {
        let index = self.bucket_at(now);
        self.advance_to(index);
        self.total += n;
        if self.head - index < RING as u64 {
            self.ring[(index % RING as u64) as usize] += n;
        }
    }

    /// Operations per second over the last `window` (rounded down to whole
    /// buckets, at least one, at most 60 s) as of `now`; 0 when no time
    /// has passed.
    pub fn rate(&self, window: Duration, now: Instant) -> f64 {
        let buckets = (window.as_nanos() / BUCKET_NANOS).clamp(1, RING as u128) as u64;
        let current = self.bucket_at(now);
        let first = (current + 1).saturating_sub(buckets);
        // Buckets newer than the head hold nothing yet; older than the ring
        // were overwritten (cannot happen: first > current - RING).
        let oldest_kept = (self.head + 1).saturating_sub(RING as u64);
        let sum: u64 = (first.max(oldest_kept)..=current.min(self.head))
            .map(|b| self.ring[(b % RING as u64) as usize])
            .sum();
        let elapsed = now.saturating_duration_since(self.start);
        let window_start = Duration::from_nanos(first.saturating_mul(BUCKET_NANOS as u64));
        let covered = elapsed.saturating_sub(window_start);
        if covered.is_zero() {
            0.0
        } else {
            sum as f64 / covered.as_secs_f64()
        }
    }

    /// Total and rates over 1 s, 10 s and 60 s as of `now`.
    pub fn snapshot(&self, now: Instant) -> ThroughputSnapshot {
        let elapsed_secs = now.saturating_duration_since(self.start).as_secs_f64();
        ThroughputSnapshot {
            total: self.total,
            ops_per_sec_1s: self.rate(Duration::from_secs(1), now),
            ops_per_sec_10s: self.rate(Duration::from_secs(10), now),
            ops_per_sec_60s: self.rate(Duration::from_secs(60), now),
            ops_per_sec_overall: if elapsed_secs > 0.0 {
                self.total as f64 / elapsed_secs
            } else {
                0.0
            },
            elapsed_secs,
        }
    }
}

/// Records `n` completed operations now.
#[derive(Message, Clone, Copy, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct RecordOps {
    /// How many operations completed.
    pub n: u64,
}

/// Asks for the total and the rates as of now.
#[derive(Message, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[rtype(result = "ThroughputSnapshot")]
pub struct GetThroughput;

/// Forgets everything and restarts the clock now (e.g. after a warm-up).
#[derive(Message, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct ResetThroughput;

/// An actor that counts completed operations and reports rates over
/// sliding windows, for one node or one cluster. Its clock starts when the
/// actor starts. Optionally also adds every count to a counter of a
/// [`ClusterRecorder`].
#[derive(Debug)]
pub struct ThroughputMeter {
    window: ThroughputWindow,
    report: Option<::metrics::Counter>,
}

impl Default for ThroughputMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl ThroughputMeter {
    /// A meter with nothing recorded. Its clock restarts when the actor
    /// starts.
    pub fn new() -> Self {
        Self {
            window: ThroughputWindow::new(Instant::now()),
            report: None,
        }
    }

    /// Also add every count to counter `name` with `labels` of `recorder`.
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
        self.report = Some(recorder.with(|| ::metrics::counter!(name, labels)));
        self
    }
}

impl Actor for ThroughputMeter {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.window.reset(Instant::now());
    }
}

impl Handler<RecordOps> for ThroughputMeter {
    type Result = ();

    fn handle(&mut self, msg: RecordOps, _ctx: &mut Self::Context) {
        self.window.record(msg.n, Instant::now());
        if let Some(counter) = &self.report {
            counter.increment(msg.n);
        }
    }
}

impl Handler<GetThroughput> for ThroughputMeter {
    type Result = MessageResult<GetThroughput>;

    fn handle(&mut self, _msg: GetThroughput, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.window.snapshot(Instant::now()))
    }
}

impl Handler<ResetThroughput> for ThroughputMeter {
    type Result = ();

    fn handle(&mut self, _msg: ResetThroughput, _ctx: &mut Self::Context) {
        self.window.reset(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_support::run_paused;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn window_rates_for_a_single_burst() {
        let t0 = Instant::now();
        let mut w = ThroughputWindow::new(t0);
        w.record(100, t0);
        assert_eq!(
            w.rate(Duration::from_secs(1), t0),
            0.0,
            "no time has passed"
        );
        let s = w.snapshot(t0 + ms(500));
        assert_eq!(s.total, 100);
        assert_eq!(s.ops_per_sec_1s, 200.0);
        assert_eq!(s.ops_per_sec_10s, 200.0);
        assert_eq!(s.ops_per_sec_60s, 200.0);
        assert_eq!(s.ops_per_sec_overall, 200.0);
        assert_eq!(s.elapsed_secs, 0.5);
        let s = w.snapshot(t0 + ms(2_000));
        assert_eq!(s.ops_per_sec_1s, 0.0, "the burst left the 1 s window");
        assert_eq!(s.ops_per_sec_10s, 50.0);
        let s = w.snapshot(t0 + ms(12_000));
        assert_eq!(s.ops_per_sec_10s, 0.0);
        assert_eq!(s.ops_per_sec_60s, 100.0 / 12.0);
        let s = w.snapshot(t0 + ms(61_000));
        assert_eq!(s.ops_per_sec_60s, 0.0, "older than the ring");
        assert_eq!(s.total, 100);
    }

    #[test]
    fn window_measures_a_steady_rate() {
        let t0 = Instant::now();
        let mut w = ThroughputWindow::new(t0);
        // 1 op every 10 ms for 30 s: 100 ops/s.
        for i in 0..3_000u64 {
            w.record(1, t0 + ms(i * 10));
        }
        // At 30.005 s the current bucket is [30.0, 30.1): the windows are
        // the 10, 100 and 600 buckets ending there, cut at `now` and at the
        // start: [29.1, 30.005), [20.1, 30.005) and [0, 30.005), holding 90,
        // 990 and 3000 ops.
        let now = t0 + Duration::from_micros(30_005_000);
        let s = w.snapshot(now);
        assert_eq!(s.total, 3_000);
        assert_eq!(s.ops_per_sec_1s, 90.0 / 0.905);
        assert_eq!(s.ops_per_sec_10s, 990.0 / 9.905);
        assert_eq!(s.ops_per_sec_60s, 3_000.0 / 30.005);
        for rate in [s.ops_per_sec_1s, s.ops_per_sec_10s, s.ops_per_sec_60s] {
            assert!((rate - 100.0).abs() < 1.0, "{rate} is not about 100 ops/s");
        }
    }

    #[test]
    fn window_skips_long_idle_gaps_and_reuses_the_ring() {
        let t0 = Instant::now();
        let mut w = ThroughputWindow::new(t0);
        w.record(7, t0 + ms(50));
        w.record(5, t0 + Duration::from_secs(3_600));
        let s = w.snapshot(t0 + Duration::from_secs(3_600) + ms(50));
        assert_eq!(s.total, 12);
        assert_eq!(s.ops_per_sec_1s, 5.0 / 0.95);
        assert_eq!(s.ops_per_sec_60s, 5.0 / 59.95, "the old burst was wiped");
        // A `now` from before the window counts in the total only.
        w.record(3, t0);
        assert_eq!(w.total(), 15);
        assert_eq!(
            w.snapshot(t0 + Duration::from_secs(3_600) + ms(50)),
            s.with_total(15)
        );
    }

    impl ThroughputSnapshot {
        fn with_total(mut self, total: u64) -> Self {
            self.total = total;
            self.ops_per_sec_overall = total as f64 / self.elapsed_secs;
            self
        }
    }

    #[test]
    fn meter_slides_over_virtual_time() {
        let (during, after_idle, after_reset) = run_paused(async {
            let recorder = ClusterRecorder::new();
            let meter = ThroughputMeter::new()
                .reporting_to(&recorder, "ops", &[("node", "3")])
                .start();
            // 20 ops every 100 ms for 15 s: 200 ops/s, starting at 50 ms.
            tokio::time::sleep(ms(50)).await;
            for _ in 0..150 {
                meter.send(RecordOps { n: 20 }).await.unwrap();
                tokio::time::sleep(ms(100)).await;
            }
            let during = meter.send(GetThroughput).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            let after_idle = meter.send(GetThroughput).await.unwrap();
            assert_eq!(recorder.snapshot().counter("ops{node=\"3\"}"), Some(3_000));
            meter.send(ResetThroughput).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            meter.send(RecordOps { n: 4 }).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let after_reset = meter.send(GetThroughput).await.unwrap();
            (during, after_idle, after_reset)
        });
        // Records at 0.05, 0.15, ..., 14.95 s; queried at 15.05 s, in
        // bucket [15.0, 15.1). The 1 s window is [14.1, 15.05): 9 records;
        // the 10 s one [5.1, 15.05): 99 records; the 60 s one everything.
        assert_eq!(during.total, 3_000);
        assert_eq!(during.elapsed_secs, 15.05);
        assert_eq!(during.ops_per_sec_1s, 180.0 / 0.95);
        assert_eq!(during.ops_per_sec_10s, 1_980.0 / 9.95);
        assert_eq!(during.ops_per_sec_60s, 3_000.0 / 15.05);
        // Idle for 5 s (now 20.05 s): the 1 s window is empty, the 10 s one
        // [10.1, 20.05) holds 49 records.
        assert_eq!(after_idle.ops_per_sec_1s, 0.0);
        assert_eq!(after_idle.ops_per_sec_10s, 980.0 / 9.95);
        assert_eq!(after_idle.total, 3_000);
        assert_eq!(after_reset.total, 4);
        assert_eq!(after_reset.elapsed_secs, 2.0);
        assert_eq!(after_reset.ops_per_sec_1s, 0.0);
        assert_eq!(after_reset.ops_per_sec_10s, 2.0);
    }
}
