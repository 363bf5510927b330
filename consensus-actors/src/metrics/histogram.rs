//! [`LatencyHistogram`]: a log-linear histogram of `u64` values (usually
//! microseconds) in the style of HdrHistogram.
//!
//! Values below 128 get one bucket each (exact). Above that, every power of
//! two `[2^k, 2^(k+1))` is split into 128 equal buckets, so a bucket's width
//! is less than 1/128 (0.78 %) of its lower bound: every reported value is
//! within 0.78 % of a value that was recorded. The whole `u64` range is
//! covered by 7 424 preallocated buckets (58 KiB); recording is O(1) and
//! never allocates.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// log2 of the number of linear sub-buckets per power of two.
const SUB_BITS: u32 = 7;
/// Linear sub-buckets per power of two (and the count of exact buckets).
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Buckets covering `0..=u64::MAX`.
const BUCKETS: usize = SUB_COUNT + (64 - SUB_BITS as usize) * SUB_COUNT;

/// The bucket holding `value`.
#[inline]
fn bucket_of(value: u64) -> usize {
    if value < SUB_COUNT as u64 {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (value >> shift) as usize - SUB_COUNT;
    SUB_COUNT + shift as usize * SUB_COUNT + sub
}

/// The smallest and largest value of bucket `index` (both inclusive).
#[inline]
fn bucket_bounds(index: usize) -> (u64, u64) {
    debug_assert!(index < BUCKETS);
    if index < SUB_COUNT {
        return (index as u64, index as u64);
    }
    let shift = ((index - SUB_COUNT) / SUB_COUNT) as u32;
    let sub = (index - SUB_COUNT) % SUB_COUNT;
    let low = ((SUB_COUNT + sub) as u64) << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// One non-empty bucket of a histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramBucket {
    /// The largest value the bucket holds (inclusive), in microseconds for
    /// latency histograms.
    pub upper_us: u64,
    /// How many recorded values fell in the bucket.
    pub count: u64,
}

/// A summary of a histogram: count, mean and the usual percentiles, plus
/// the non-empty buckets. All values in microseconds for latencies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySnapshot {
    /// Values recorded.
    pub count: u64,
    /// Smallest value recorded (0 when empty).
    pub min_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value recorded (exact; 0 when empty).
    pub max_us: u64,
    /// Arithmetic mean (exact; 0 when empty).
    pub mean_us: f64,
    /// The non-empty buckets, in increasing order.
    pub histogram: Vec<HistogramBucket>,
}

/// A log-linear histogram with bounded memory and < 0.8 % relative error.
/// See the [module docs](self).
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("p50", &self.p50())
            .field("p99", &self.p99())
            .field("max", &self.max)
            .finish()
    }
}

impl LatencyHistogram {
    /// The largest relative error of a reported value: `1/128`.
    pub const RELATIVE_PRECISION: f64 = 1.0 / SUB_COUNT as f64;

    /// An empty histogram (allocates all its buckets now).
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `n` occurrences of `value`.
    #[inline]
    pub fn record_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.counts[bucket_of(value)] += n;
        self.count += n;
        self.sum += u128::from(value) * u128::from(n);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Records a duration in whole microseconds (saturating at `u64::MAX`).
    #[inline]
    pub fn record_duration(&mut self, duration: Duration) {
        self.record(duration_micros(duration));
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Smallest value recorded (exact), 0 when empty.
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    /// Largest value recorded (exact), 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Arithmetic mean (exact up to `f64` rounding), 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0.0 to 1.0; clamped, NaN counts as 0):
    /// the smallest recorded value `v` such that at least `ceil(q * count)`
    /// values are `<= v`, reported as the upper bound of `v`'s bucket (so
    /// within [`RELATIVE_PRECISION`](Self::RELATIVE_PRECISION) above it)
    /// and never outside `min()..=max()`. 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for index in bucket_of(self.min)..=bucket_of(self.max) {
            seen += self.counts[index];
            if seen >= rank {
                return bucket_bounds(index).1.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Median.
    pub fn p50(&self) -> u64 {
        self.value_at_quantile(0.50)
    }

    /// 90th percentile.
    pub fn p90(&self) -> u64 {
        self.value_at_quantile(0.90)
    }

    /// 99th percentile.
    pub fn p99(&self) -> u64 {
        self.value_at_quantile(0.99)
    }

    /// 99.9th percentile.
    pub fn p999(&self) -> u64 {
        self.value_at_quantile(0.999)
    }

    /// Adds every value recorded in `other` to `self`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.count == 0 {
            return;
        }
        for index in bucket_of(other.min)..=bucket_of(other.max) {
            self.counts[index] += other.counts[index];
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Forgets every recorded value.
    pub fn clear(&mut self) {
        if self.count > 0 {
            let (lo, hi) = (bucket_of(self.min), bucket_of(self.max));
            self.counts[lo..=hi].fill(0);
        }
        self.count = 0;
        self.sum = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    /// The non-empty buckets, in increasing order of value.
    pub fn buckets(&self) -> impl Iterator<Item = HistogramBucket> + '_ {
        let range = if self.count == 0 {
            0..0
        } else {
            bucket_of(self.min)..bucket_of(self.max) + 1
        };
        range.filter_map(move |index| {
            let count = self.counts[index];
            (count > 0).then(|| HistogramBucket {
                upper_us: bucket_bounds(index).1,
                count,
            })
        })
    }

    /// Count, mean, percentiles and buckets in one serializable value.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            count: self.count,
            min_us: self.min(),
            p50_us: self.p50(),
            p90_us: self.p90(),
            p99_us: self.p99(),
            p999_us: self.p999(),
            max_us: self.max(),
            mean_us: self.mean(),
            histogram: self.buckets().collect(),
        }
    }
}

/// A duration in whole microseconds, saturating at `u64::MAX`.
pub(crate) fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_tile_the_whole_range_without_gaps() {
        let mut expected_low = 0u64;
        for index in 0..BUCKETS {
            let (low, high) = bucket_bounds(index);
            assert_eq!(
                low, expected_low,
                "bucket {index} starts where the last ended"
            );
            assert!(high >= low);
            assert_eq!(bucket_of(low), index);
            assert_eq!(bucket_of(high), index);
            if low >= SUB_COUNT as u64 {
                // width / low < 1/128, in integers (f64 rounds near 2^64).
                assert!(
                    u128::from(high - low) * (SUB_COUNT as u128) < u128::from(low),
                    "bucket {index} is too wide"
                );
            }
            expected_low = high.wrapping_add(1);
        }
        assert_eq!(bucket_bounds(BUCKETS - 1).1, u64::MAX);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = LatencyHistogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.min(), 1);
        assert_eq!(h.p50(), 50);
        assert_eq!(h.p90(), 90);
        assert_eq!(h.p99(), 99);
        assert_eq!(h.max(), 100);
        assert_eq!(h.value_at_quantile(0.0), 1);
        assert_eq!(h.value_at_quantile(1.0), 100);
        assert_eq!(h.mean(), 50.5);
    }

    #[test]
    fn uniform_distribution_percentiles_within_precision() {
        let mut h = LatencyHistogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, exact) in [
            (0.5, 50_000u64),
            (0.9, 90_000),
            (0.99, 99_000),
            (0.999, 99_900),
        ] {
            let got = h.value_at_quantile(q);
            assert!(got >= exact, "q{q}: {got} below the exact {exact}");
            let err = (got - exact) as f64 / exact as f64;
            assert!(
                err < LatencyHistogram::RELATIVE_PRECISION,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.max(), 100_000);
        assert_eq!(
            h.p99(),
            99_327,
            "upper bound of 99_000's bucket [98_816, 99_327]"
        );
        assert_eq!(h.mean(), 50_000.5);
    }

    #[test]
    fn bimodal_distribution_percentiles() {
        // 95 % fast (1 ms), 5 % slow (250 ms): p50 is fast, p99 is slow.
        let mut h = LatencyHistogram::new();
        h.record_n(1_000, 950);
        h.record_n(250_000, 50);
        assert_eq!(h.count(), 1_000);
        let (lo, hi) = bucket_bounds(bucket_of(1_000));
        assert!(lo <= 1_000 && 1_000 <= hi);
        assert_eq!(h.p50(), hi.min(250_000));
        assert!(h.p50() >= 1_000 && h.p50() < 1_008);
        assert_eq!(
            h.value_at_quantile(0.95),
            h.p50(),
            "the 950th value is still fast"
        );
        assert_eq!(
            h.value_at_quantile(0.951),
            250_000,
            "clamped to the exact max"
        );
        assert_eq!(h.p99(), 250_000);
        assert_eq!(h.mean(), (950.0 * 1_000.0 + 50.0 * 250_000.0) / 1_000.0);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let h = LatencyHistogram::new();
        assert!(h.is_empty());
        let s = h.snapshot();
        assert_eq!(s, LatencySnapshot::default());
        assert_eq!(h.buckets().count(), 0);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        let mut both = LatencyHistogram::new();
        for v in (0..5_000u64).map(|i| i * i % 77_777) {
            if v % 3 == 0 {
                a.record(v);
            } else {
                b.record(v);
            }
            both.record(v);
        }
        a.merge(&b);
        assert_eq!(a, both);
        a.merge(&LatencyHistogram::new());
        assert_eq!(a, both);
    }

    #[test]
    fn bucket_listing_and_clear() {
        let mut h = LatencyHistogram::new();
        h.record_n(5, 2);
        h.record(1_000_000);
        h.record(u64::MAX);
        let buckets: Vec<_> = h.buckets().collect();
        assert_eq!(buckets.len(), 3);
        assert_eq!(
            buckets[0],
            HistogramBucket {
                upper_us: 5,
                count: 2
            }
        );
        assert!(buckets[1].upper_us >= 1_000_000 && buckets[1].upper_us < 1_008_000);
        assert_eq!(buckets[1].count, 1);
        assert_eq!(
            buckets[2],
            HistogramBucket {
                upper_us: u64::MAX,
                count: 1
            }
        );
        assert_eq!(h.max(), u64::MAX);
        h.clear();
        assert_eq!(h, LatencyHistogram::new());
    }

    #[test]
    fn durations_record_in_microseconds() {
        let mut h = LatencyHistogram::new();
        h.record_duration(Duration::from_millis(3));
        h.record_duration(Duration::from_nanos(999));
        assert_eq!(h.max(), 3_000);
        assert_eq!(h.min(), 0);
        assert_eq!(duration_micros(Duration::MAX), u64::MAX);
    }
}
