//! [`ClusterRecorder`]: a `metrics` recorder local to one simulated cluster.
//!
//! The `metrics` crate has one global recorder per process, but two simulated
//! clusters in one test process must not mix their numbers. A
//! `ClusterRecorder` is an ordinary value (a cheap clonable handle) that
//! implements [`::metrics::Recorder`]; code records into it by running the
//! usual macros under [`ClusterRecorder::with`] (which installs it as the
//! thread-local recorder for the closure), or by keeping the handles those
//! macros return:
//!
//! ```
//! use consensus_actors::metrics::ClusterRecorder;
//! let recorder = ClusterRecorder::new();
//! recorder.with(|| {
//!     ::metrics::counter!("commits", "node" => "1").increment(3);
//!     ::metrics::gauge!("term").set(7.0);
//!     ::metrics::histogram!("commit_latency_us").record(1500.0);
//! });
//! let snap = recorder.snapshot();
//! assert_eq!(snap.counter("commits{node=\"1\"}"), Some(3));
//! assert_eq!(snap.gauge("term"), Some(7.0));
//! assert_eq!(snap.histograms["commit_latency_us"].max, 1500);
//! ```
//!
//! Histogram values are stored in a [`LatencyHistogram`]: non-negative
//! numbers rounded to integers (negative and non-finite values count as 0)
//! with < 0.8 % relative error. Record microseconds or counts, not seconds.

use super::histogram::LatencyHistogram;
use ::metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Label, Metadata, Recorder, SharedString,
    Unit,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// A histogram handle's storage.
#[derive(Default)]
struct SharedHistogram(Mutex<LatencyHistogram>);

impl SharedHistogram {
    fn lock(&self) -> MutexGuard<'_, LatencyHistogram> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HistogramFn for SharedHistogram {
    fn record(&self, value: f64) {
        self.lock().record(histogram_value(value));
    }

    fn record_many(&self, value: f64, count: usize) {
        self.lock().record_n(histogram_value(value), count as u64);
    }
}

/// A recorded `f64` as the histogram's integer: rounded, negative and
/// non-finite values as 0, saturating at `u64::MAX`.
fn histogram_value(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        // `as` saturates for floats beyond u64::MAX.
        value.round() as u64
    } else {
        0
    }
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<Key, Arc<AtomicU64>>,
    gauges: BTreeMap<Key, Arc<AtomicU64>>,
    histograms: BTreeMap<Key, Arc<SharedHistogram>>,
    descriptions: BTreeMap<String, String>,
}

/// A recorder for one cluster (or any other scope): counters, gauges and
/// histograms kept apart from every other recorder. Clones share the same
/// metrics. See the [module docs](self).
#[derive(Clone, Default)]
pub struct ClusterRecorder {
    registry: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for ClusterRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let registry = self.lock();
        f.debug_struct("ClusterRecorder")
            .field("counters", &registry.counters.len())
            .field("gauges", &registry.gauges.len())
            .field("histograms", &registry.histograms.len())
            .finish()
    }
}

/// Count, extremes, mean and percentiles of one histogram.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistogramSummary {
    /// Values recorded.
    pub count: u64,
    /// Smallest value (exact).
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value (exact).
    pub max: u64,
    /// Mean (exact).
    pub mean: f64,
}

impl HistogramSummary {
    /// The summary of `histogram`.
    pub fn of(histogram: &LatencyHistogram) -> Self {
        Self {
            count: histogram.count(),
            min: histogram.min(),
            p50: histogram.p50(),
            p99: histogram.p99(),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// Every metric of a [`ClusterRecorder`] at one moment. Keys are the metric
/// name followed, when it has labels, by the labels sorted by name:
/// `name{a="x",b="y"}` (Prometheus style).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Counter values.
    pub counters: BTreeMap<String, u64>,
    /// Gauge values.
    pub gauges: BTreeMap<String, f64>,
    /// Histogram summaries.
    pub histograms: BTreeMap<String, HistogramSummary>,
    /// Descriptions given with `describe_*!` (by metric name; unit in
    /// brackets when given).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub descriptions: BTreeMap<String, String>,
}

impl MetricsSnapshot {
    /// A counter's value by its full key.
    pub fn counter(&self, key: &str) -> Option<u64> {
        self.counters.get(key).copied()
    }

    /// A gauge's value by its full key.
    pub fn gauge(&self, key: &str) -> Option<f64> {
        self.gauges.get(key).copied()
    }

    /// A histogram's summary by its full key.
    pub fn histogram(&self, key: &str) -> Option<&HistogramSummary> {
        self.histograms.get(key)
    }
}

/// The snapshot key of a metric: `name` or `name{a="x",b="y"}`.
pub fn metric_key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<(&str, &str)> = labels.to_vec();
    labels.sort();
    format_key(name, labels.into_iter())
}

fn format_key<'a>(name: &str, labels: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from(name);
    let mut first = true;
    for (k, v) in labels {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(v);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out
}

/// `key` with its labels sorted by name, so `a,b` and `b,a` are one metric.
fn canonical(key: &Key) -> Key {
    let sorted = key
        .labels()
        .zip(key.labels().skip(1))
        .all(|(a, b)| a.key() <= b.key());
    if sorted {
        return key.clone();
    }
    let mut labels: Vec<Label> = key.labels().cloned().collect();
    labels.sort_by(|a, b| a.key().cmp(b.key()));
    Key::from_parts(key.name_shared(), labels)
}

fn snapshot_key(key: &Key) -> String {
    format_key(key.name(), key.labels().map(|l| (l.key(), l.value())))
}

impl ClusterRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Registry updates cannot panic half-way (only allocation can), so a
        // poisoned lock still guards consistent maps.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` with `self` as this thread's recorder: every `metrics`
    /// macro inside records here, not in the global recorder.
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        ::metrics::with_local_recorder(self, f)
    }

    /// Whether `self` and `other` are handles to the same metrics.
    pub fn same_recorder(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.registry, &other.registry)
    }

    /// The values of every metric, keys in sorted order.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let registry = self.lock();
        MetricsSnapshot {
            counters: registry
                .counters
                .iter()
                .map(|(k, v)| (snapshot_key(k), v.load(Ordering::Acquire)))
                .collect(),
            gauges: registry
                .gauges
                .iter()
                .map(|(k, v)| (snapshot_key(k), f64::from_bits(v.load(Ordering::Acquire))))
                .collect(),
            histograms: registry
                .histograms
                .iter()
                .map(|(k, h)| (snapshot_key(k), HistogramSummary::of(&h.lock())))
                .collect(),
            descriptions: registry.descriptions.clone(),
        }
    }

    /// A copy of the full histogram `key` (as [`metric_key`] formats it),
    /// with every bucket.
    pub fn histogram(&self, key: &str) -> Option<LatencyHistogram> {
        let registry = self.lock();
        registry
            .histograms
            .iter()
            .find(|(k, _)| snapshot_key(k) == key)
            .map(|(_, h)| h.lock().clone())
    }

    /// Forgets every metric. Handles registered earlier keep working but
    /// are no longer reported.
    pub fn clear(&self) {
        let mut registry = self.lock();
        registry.counters.clear();
        registry.gauges.clear();
        registry.histograms.clear();
        registry.descriptions.clear();
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let text = match unit {
            Some(unit) => format!("{description} [{}]", unit.as_str()),
            None => description.to_string(),
        };
        self.lock()
            .descriptions
            .insert(key.as_str().to_string(), text);
    }
}

impl Recorder for ClusterRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        let key = canonical(key);
        let mut registry = self.lock();
        let cell = registry.counters.entry(key).or_default();
        Counter::from_arc(Arc::clone(cell))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        let key = canonical(key);
        let mut registry = self.lock();
        let cell = registry
            .gauges
            .entry(key)
            .or_insert_with(|| Arc::new(AtomicU64::new(0.0f64.to_bits())));
        Gauge::from_arc(Arc::clone(cell))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        let key = canonical(key);
        let mut registry = self.lock();
        let cell = registry.histograms.entry(key).or_default();
        Histogram::from_arc(Arc::clone(cell))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_recorders_do_not_mix() {
        let a = ClusterRecorder::new();
        let b = ClusterRecorder::new();
        a.with(|| ::metrics::counter!("commits").increment(2));
        b.with(|| ::metrics::counter!("commits").increment(5));
        a.with(|| ::metrics::counter!("commits").increment(1));
        b.with(|| ::metrics::histogram!("lat").record(10.0));
        assert_eq!(a.snapshot().counter("commits"), Some(3));
        assert_eq!(b.snapshot().counter("commits"), Some(5));
        assert!(a.snapshot().histograms.is_empty());
        assert_eq!(b.snapshot().histograms["lat"].count, 1);
        // Outside `with`, the macros go to the global (no-op) recorder.
        ::metrics::counter!("commits").increment(100);
        assert_eq!(a.snapshot().counter("commits"), Some(3));
        assert_eq!(b.snapshot().counter("commits"), Some(5));
        assert!(!a.same_recorder(&b));
        assert!(a.same_recorder(&a.clone()));
    }

    #[test]
    fn handles_keep_recording_outside_with() {
        let rec = ClusterRecorder::new();
        let counter = rec.with(|| ::metrics::counter!("ops", "node" => "2"));
        let hist = rec.with(|| ::metrics::histogram!("lat_us", "node" => "2"));
        counter.increment(4);
        counter.increment(6);
        for v in [100.0, 200.0, 300.0, -5.0, f64::NAN] {
            hist.record(v);
        }
        let snap = rec.snapshot();
        assert_eq!(snap.counter("ops{node=\"2\"}"), Some(10));
        let h = &snap.histograms["lat_us{node=\"2\"}"];
        assert_eq!(h.count, 5);
        assert_eq!(h.min, 0, "negative and NaN values count as 0");
        assert_eq!(h.max, 300);
        assert_eq!(h.p50, 100);
        assert_eq!(
            rec.histogram("lat_us{node=\"2\"}").map(|h| h.count()),
            Some(5)
        );
    }

    #[test]
    fn gauges_set_increment_decrement() {
        let rec = ClusterRecorder::new();
        rec.with(|| {
            let g = ::metrics::gauge!("leaders");
            g.set(3.0);
            g.increment(2.5);
            g.decrement(1.0);
        });
        assert_eq!(rec.snapshot().gauge("leaders"), Some(4.5));
    }

    #[test]
    fn label_order_does_not_split_a_metric() {
        let rec = ClusterRecorder::new();
        rec.with(|| {
            ::metrics::counter!("msgs", "to" => "3", "from" => "1").increment(1);
            ::metrics::counter!("msgs", "from" => "1", "to" => "3").increment(1);
        });
        let key = metric_key("msgs", &[("to", "3"), ("from", "1")]);
        assert_eq!(key, "msgs{from=\"1\",to=\"3\"}");
        assert_eq!(rec.snapshot().counter(&key), Some(2));
        assert_eq!(rec.snapshot().counters.len(), 1);
    }

    #[test]
    fn descriptions_and_json() {
        let rec = ClusterRecorder::new();
        rec.with(|| {
            ::metrics::describe_histogram!(
                "lat_us",
                ::metrics::Unit::Microseconds,
                "commit latency"
            );
            ::metrics::histogram!("lat_us").record(7.0);
            ::metrics::counter!("c").absolute(9);
        });
        let snap = rec.snapshot();
        assert_eq!(snap.descriptions["lat_us"], "commit latency [microseconds]");
        let json = serde_json::to_string(&snap).unwrap();
        let back: MetricsSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
        rec.clear();
        assert_eq!(rec.snapshot(), MetricsSnapshot::default());
    }
}
