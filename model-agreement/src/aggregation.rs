//! Aggregation rules: from the gradients of one round to the one update
//! every replica applies. Pure functions on the hot path.
//!
//! | rule | keeps | bound on f (n gradients) |
//! |---|---|---|
//! | [`Aggregator::Mean`] | the average | none: tolerates no Byzantine worker; accepted with any f as the baseline that attacks break |
//! | [`Aggregator::Median`] | coordinate-wise median | n ≥ 2f+1 |
//! | [`Aggregator::TrimmedMean`] | per coordinate, the mean after dropping the ⌊βn⌋ smallest and ⌊βn⌋ largest | ⌊βn⌋ ≥ f and n − 2⌊βn⌋ ≥ 1 |
//! | [`Aggregator::Krum`] | the gradient with the smallest sum of squared distances to its n−f−2 nearest (Blanchard et al. 2017) | n ≥ 2f+3 |
//! | [`Aggregator::MultiKrum`] | the mean of the m best-scored gradients | n ≥ 2f+3, 1 ≤ m ≤ n−f |
//! | [`Aggregator::Bulyan`] | θ = n−2f gradients chosen by Krum one at a time, then per coordinate the mean of the β = θ−2f values closest to the median (El Mhamdi et al. 2018) | n ≥ 4f+3 |
//! | [`Aggregator::CenteredClipping`] | `v ← v + (1/n) Σ clip_τ(x_i − v)`, L times, from a given center or 0 (Karimireddy et al. 2021) | n ≥ 2f+1 |
//!
//! The trimmed-mean bound "2βn > f" is weaker than what the rule
//! needs: f Byzantine values can all sit on one side, so each side must drop
//! at least f; that is the bound checked here.
//!
//! # Determinism
//!
//! Every replica must compute a bit-identical aggregate from the same
//! gradients in the same order, on every platform. The rules therefore:
//!
//! - accumulate in `f64`, in a canonical order: gradients in input order
//!   (GradientConsensus passes them sorted by worker id), coordinates in
//!   index order, never in parallel and never reassociated (Rust does not
//!   contract `a * b + c` into a fused multiply-add or reorder float sums);
//!   the result is rounded to `f32` once, at the end. Pairwise distances
//!   (Krum, Multi-Krum, Bulyan) put coordinate `c` in accumulator lane
//!   `c mod 4` and combine the lanes as `(l0 + l1) + (l2 + l3)`;
//! - compare floats with the IEEE total order (`total_cmp`, or the same
//!   order as `i32` keys on the per-coordinate paths), so ties and signed
//!   zeros are decided the same way everywhere; Krum scores that tie are
//!   ranked by the gradients' coordinates (lexicographic, total order);
//! - select order statistics with `select_nth_unstable` (average O(n)
//!   per coordinate, no full sort), but never sum in the order selection
//!   left the values in, which is unspecified and may change between
//!   standard-library versions: the kept values are summed in input order,
//!   and values equal to a threshold (bit-identical under the total order)
//!   are added as `threshold × count`;
//! - reject non-finite inputs ([`AggregationError::NonFinite`]).
//!
//! Median and Krum select input values, so they are exactly independent of
//! the input order. The others sum, and a float sum in another order may
//! round differently in the last bit: for them the canonical order is part
//! of the definition.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A rule that turns one round's gradients into one update.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Aggregator {
    /// Coordinate-wise mean. No Byzantine tolerance.
    Mean,
    /// Coordinate-wise median (the mean of the two middle values when n is even).
    Median,
    /// Coordinate-wise trimmed mean: drops the ⌊βn⌋ smallest and largest values.
    TrimmedMean {
        /// Fraction trimmed on each side, in `[0, 0.5)`.
        beta: f64,
    },
    /// Krum: the single gradient closest to its n−f−2 nearest neighbours.
    Krum,
    /// Multi-Krum: the mean of the `m` best gradients by Krum score.
    MultiKrum {
        /// How many gradients are averaged.
        m: usize,
    },
    /// Bulyan: Krum selection of n−2f gradients, then a trimmed mean around
    /// the coordinate-wise median.
    Bulyan,
    /// Centered clipping with radius `tau`, `iterations` times.
    CenteredClipping {
        /// Clipping radius (L2), finite and > 0.
        tau: f64,
        /// Number of clipping iterations, ≥ 1.
        iterations: u32,
    },
}

/// Why a round's gradients could not be aggregated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AggregationError {
    /// No gradient at all.
    #[error("no gradient to aggregate")]
    NoGradients,
    /// Gradients of different lengths.
    #[error("gradient {index} has {found} coordinates, expected {expected}")]
    DimensionMismatch {
        /// Position of the offending gradient.
        index: usize,
        /// Length of the first gradient.
        expected: usize,
        /// Its length.
        found: usize,
    },
    /// A NaN or infinite coordinate.
    #[error("gradient {index} has a non-finite coordinate")]
    NonFinite {
        /// Position of the offending gradient.
        index: usize,
    },
    /// Too few gradients for the rule to tolerate f Byzantine ones.
    #[error("{rule} cannot tolerate f = {f} Byzantine gradients out of n = {n}: it needs {bound}")]
    BoundViolated {
        /// The rule's name.
        rule: &'static str,
        /// Gradients given.
        n: usize,
        /// Byzantine gradients to tolerate.
        f: usize,
        /// The bound, as text (`"n >= 2f+3"`).
        bound: &'static str,
    },
    /// A rule parameter out of range.
    #[error("{rule}: {reason}")]
    InvalidParameter {
        /// The rule's name.
        rule: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Aggregator {
    /// Every rule, with the parameters the example and benchmarks use
    /// (β = 0.2, m = n−f, τ = 1, 3 iterations are not universal choices).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Median => "median",
            Self::TrimmedMean { .. } => "trimmed-mean",
            Self::Krum => "krum",
            Self::MultiKrum { .. } => "multi-krum",
            Self::Bulyan => "bulyan",
            Self::CenteredClipping { .. } => "centered-clipping",
        }
    }

    /// Checks the rule's parameters and its bound on `f` for `n` gradients.
    pub fn check(&self, n: usize, f: usize) -> Result<(), AggregationError> {
        let rule = self.name();
        let violated = |bound| AggregationError::BoundViolated { rule, n, f, bound };
        if n == 0 {
            return Err(AggregationError::NoGradients);
        }
        match *self {
            Self::Mean => Ok(()),
            Self::Median => (n > 2 * f).then_some(()).ok_or(violated("n >= 2f+1")),
            Self::TrimmedMean { beta } => {
                if !(0.0..0.5).contains(&beta) {
                    return Err(AggregationError::InvalidParameter {
                        rule,
                        reason: format!("beta must be in [0, 0.5), got {beta}"),
                    });
                }
                let k = trim_count(beta, n);
                if k < f || n <= 2 * k {
                    return Err(violated("floor(beta*n) >= f and n > 2*floor(beta*n)"));
                }
                Ok(())
            }
            Self::Krum => (n >= 2 * f + 3).then_some(()).ok_or(violated("n >= 2f+3")),
            Self::MultiKrum { m } => {
                if n < 2 * f + 3 {
                    return Err(violated("n >= 2f+3"));
                }
                if m == 0 || m > n - f {
                    return Err(AggregationError::InvalidParameter {
                        rule,
                        reason: format!("m must be in 1..={} for n = {n}, f = {f}, got {m}", n - f),
                    });
                }
                Ok(())
            }
            Self::Bulyan => (n >= 4 * f + 3).then_some(()).ok_or(violated("n >= 4f+3")),
            Self::CenteredClipping { tau, iterations } => {
                if !(tau.is_finite() && tau > 0.0) || iterations == 0 {
                    return Err(AggregationError::InvalidParameter {
                        rule,
                        reason: format!(
                            "tau must be finite and > 0 and iterations >= 1, got tau = {tau}, iterations = {iterations}"
                        ),
                    });
                }
                (n > 2 * f).then_some(()).ok_or(violated("n >= 2f+1"))
            }
        }
    }

    /// Aggregates `gradients` tolerating `f` Byzantine ones. Centered
    /// clipping starts from 0; see [`aggregate_from`](Self::aggregate_from).
    pub fn aggregate(&self, gradients: &[&[f32]], f: usize) -> Result<Vec<f32>, AggregationError> {
        self.aggregate_from(gradients, f, None)
    }

    /// Aggregates `gradients` tolerating `f` Byzantine ones; centered
    /// clipping starts from `center` (the previous aggregate, the paper's
    /// momentum) when given, from 0 otherwise. Other rules ignore `center`.
    pub fn aggregate_from(
        &self,
        gradients: &[&[f32]],
        f: usize,
        center: Option<&[f32]>,
    ) -> Result<Vec<f32>, AggregationError> {
        let d = validate(gradients)?;
        self.check(gradients.len(), f)?;
        if let Some(c) = center {
            if c.len() != d {
                return Err(AggregationError::InvalidParameter {
                    rule: self.name(),
                    reason: format!("center has {} coordinates, expected {d}", c.len()),
                });
            }
        }
        let out = match *self {
            Self::Mean => mean(gradients, d),
            Self::Median => median(gradients, d),
            Self::TrimmedMean { beta } => {
                trimmed_mean(gradients, d, trim_count(beta, gradients.len()))
            }
            Self::Krum => {
                let scores = krum_scores(&distances(gradients), &all(gradients.len()), f);
                gradients[best(&scores, 1, gradients)[0]].to_vec()
            }
            Self::MultiKrum { m } => {
                let scores = krum_scores(&distances(gradients), &all(gradients.len()), f);
                let chosen: Vec<&[f32]> = best(&scores, m, gradients)
                    .into_iter()
                    .map(|i| gradients[i])
                    .collect();
                mean(&chosen, d)
            }
            Self::Bulyan => bulyan(gradients, d, f),
            Self::CenteredClipping { tau, iterations } => {
                centered_clipping(gradients, d, center, tau, iterations)
            }
        };
        debug_assert_eq!(out.len(), d);
        Ok(out)
    }
}

/// ⌊βn⌋, the values trimmed on each side.
fn trim_count(beta: f64, n: usize) -> usize {
    (beta * n as f64).floor() as usize
}

fn all(n: usize) -> Vec<usize> {
    (0..n).collect()
}

/// The common dimension, after checking lengths and finiteness.
fn validate(gradients: &[&[f32]]) -> Result<usize, AggregationError> {
    let first = gradients.first().ok_or(AggregationError::NoGradients)?;
    let d = first.len();
    for (index, g) in gradients.iter().enumerate() {
        if g.len() != d {
            return Err(AggregationError::DimensionMismatch {
                index,
                expected: d,
                found: g.len(),
            });
        }
        if !g.iter().all(|x| x.is_finite()) {
            return Err(AggregationError::NonFinite { index });
        }
    }
    Ok(d)
}

/// Mean in f64, gradients in input order.
fn mean(gradients: &[&[f32]], d: usize) -> Vec<f32> {
    let mut acc = vec![0f64; d];
    for g in gradients {
        for (a, &x) in acc.iter_mut().zip(g.iter()) {
            *a += f64::from(x);
        }
    }
    let n = gradients.len() as f64;
    acc.into_iter().map(|s| (s / n) as f32).collect()
}

/// The IEEE total order on `f32` as the order of `i32` keys: `key(a) <
/// key(b)` exactly when `a.total_cmp(&b)` is `Less` (the transformation
/// `total_cmp` itself applies). Selecting on keys compares natively.
#[inline]
fn key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ ((((b >> 31) as u32) >> 1) as i32)
}

/// The inverse of [`key`] (the transformation is an involution).
#[inline]
fn unkey(k: i32) -> f32 {
    f32::from_bits((k ^ ((((k >> 31) as u32) >> 1) as i32)) as u32)
}

/// The median of the keys in `buf` (reordered); exact, independent of the
/// input order.
fn median_of(buf: &mut [i32]) -> f32 {
    let n = buf.len();
    debug_assert!(n > 0);
    let mid = n / 2;
    let (lower, &mut hi, _) = buf.select_nth_unstable(mid);
    if n % 2 == 1 {
        unkey(hi)
    } else {
        let lo = *lower.iter().max().expect("n even and > 0: a lower half");
        ((f64::from(unkey(lo)) + f64::from(unkey(hi))) / 2.0) as f32
    }
}

fn median(gradients: &[&[f32]], d: usize) -> Vec<f32> {
    let mut buf = vec![0i32; gradients.len()];
    (0..d)
        .map(|j| {
            for (b, g) in buf.iter_mut().zip(gradients) {
                *b = key(g[j]);
            }
            median_of(&mut buf)
        })
        .collect()
}

/// Sum of the sorted positions `[k, n-k)` of the keys in `column`, in
/// canonical order (values strictly inside in input order, then the
/// thresholds × their count). `buf` is scratch of the same length.
fn trimmed_sum(column: &[i32], buf: &mut [i32], k: usize) -> f64 {
    let n = column.len();
    debug_assert!(n > 2 * k);
    buf.copy_from_slice(column);
    let (_, &mut lo, rest) = buf.select_nth_unstable(k);
    // hi is at sorted position n-k-1; rest starts at sorted position k+1.
    let hi = if n - k - 1 == k {
        lo
    } else {
        *rest.select_nth_unstable(n - k - 1 - (k + 1)).1
    };
    let m = n - 2 * k;
    if lo == hi {
        return f64::from(unkey(lo)) * m as f64;
    }
    let (mut less_lo, mut eq_lo, mut eq_hi, mut greater_hi) = (0usize, 0usize, 0usize, 0usize);
    let mut inside = 0f64;
    for &x in column {
        match (x.cmp(&lo), x.cmp(&hi)) {
            (Ordering::Less, _) => less_lo += 1,
            (Ordering::Equal, _) => eq_lo += 1,
            (_, Ordering::Equal) => eq_hi += 1,
            (_, Ordering::Greater) => greater_hi += 1,
            _ => inside += f64::from(unkey(x)),
        }
    }
    let overlap = |start: usize, end: usize| end.min(n - k).saturating_sub(start.max(k));
    let kept_lo = overlap(less_lo, less_lo + eq_lo);
    let kept_hi = overlap(n - greater_hi - eq_hi, n - greater_hi);
    debug_assert!(kept_lo >= 1 && kept_hi >= 1);
    inside + f64::from(unkey(lo)) * kept_lo as f64 + f64::from(unkey(hi)) * kept_hi as f64
}

fn trimmed_mean(gradients: &[&[f32]], d: usize, k: usize) -> Vec<f32> {
    let n = gradients.len();
    let m = (n - 2 * k) as f64;
    let mut column = vec![0i32; n];
    let mut buf = vec![0i32; n];
    (0..d)
        .map(|j| {
            for (c, g) in column.iter_mut().zip(gradients) {
                *c = key(g[j]);
            }
            (trimmed_sum(&column, &mut buf, k) / m) as f32
        })
        .collect()
}

/// Coordinates per block in [`distances`]: every pair of a block is
/// computed while the block's gradients are in cache.
const DISTANCE_BLOCK: usize = 4096;

/// Squared L2 distances between every pair, in f64. Coordinate `c` goes to
/// accumulator lane `c mod 4` (four independent chains, so the additions
/// pipeline), lanes are combined as `(l0 + l1) + (l2 + l3)`: a fixed order,
/// the same on every platform, whatever the blocking.
fn distances(gradients: &[&[f32]]) -> Vec<Vec<f64>> {
    let n = gradients.len();
    let d = gradients.first().map_or(0, |g| g.len());
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    let mut lanes = vec![[0f64; 4]; pairs.len()];
    let mut start = 0;
    while start < d {
        let end = (start + DISTANCE_BLOCK).min(d);
        for (acc, &(i, j)) in lanes.iter_mut().zip(&pairs) {
            let (a, b) = (&gradients[i][start..end], &gradients[j][start..end]);
            let (mut ca, mut cb) = (a.chunks_exact(4), b.chunks_exact(4));
            for (x, y) in (&mut ca).zip(&mut cb) {
                for k in 0..4 {
                    let t = f64::from(x[k]) - f64::from(y[k]);
                    acc[k] += t * t;
                }
            }
            // Only the last block has a remainder (blocks are multiples of 4),
            // so its coordinates land in lanes 0.. by index mod 4.
            for (k, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
                let t = f64::from(*x) - f64::from(*y);
                acc[k] += t * t;
            }
        }
        start = end;
    }
    let mut dist = vec![vec![0f64; n]; n];
    for (l, &(i, j)) in lanes.iter().zip(&pairs) {
        let s = (l[0] + l[1]) + (l[2] + l[3]);
        dist[i][j] = s;
        dist[j][i] = s;
    }
    dist
}

/// Krum scores of the candidates `set` (indexes into `dist`), each the sum of
/// its `|set| - f - 2` (at least 1) smallest distances to the others in `set`,
/// summed in ascending order.
fn krum_scores(dist: &[Vec<f64>], set: &[usize], f: usize) -> Vec<(usize, f64)> {
    let neighbours = set.len().saturating_sub(f + 2).max(1);
    set.iter()
        .map(|&i| {
            let mut ds: Vec<f64> = set
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| dist[i][j])
                .collect();
            ds.sort_unstable_by(f64::total_cmp);
            (i, ds.iter().take(neighbours).sum())
        })
        .collect()
}

/// The `m` candidates with the lowest scores, returned in index order. Equal
/// scores (two mutual nearest neighbours have them) are ranked by the
/// gradients' coordinates in lexicographic total order, then by index, so
/// the chosen values do not depend on the input order.
fn best(scores: &[(usize, f64)], m: usize, gradients: &[&[f32]]) -> Vec<usize> {
    let mut ranked = scores.to_vec();
    let content = |i: usize, j: usize| {
        gradients[i]
            .iter()
            .zip(gradients[j].iter())
            .map(|(a, b)| a.total_cmp(b))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    ranked.sort_unstable_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then_with(|| content(a.0, b.0))
            .then(a.0.cmp(&b.0))
    });
    let mut chosen: Vec<usize> = ranked.into_iter().take(m).map(|(i, _)| i).collect();
    chosen.sort_unstable();
    chosen
}

fn bulyan(gradients: &[&[f32]], d: usize, f: usize) -> Vec<f32> {
    let n = gradients.len();
    let theta = n - 2 * f;
    let beta = theta - 2 * f;
    debug_assert!(beta >= 3);
    let dist = distances(gradients);
    let mut remaining = all(n);
    let mut selected = Vec::with_capacity(theta);
    while selected.len() < theta {
        let scores = krum_scores(&dist, &remaining, f);
        let pick = best(&scores, 1, gradients)[0];
        selected.push(pick);
        remaining.retain(|&i| i != pick);
    }
    selected.sort_unstable();
    let chosen: Vec<&[f32]> = selected.iter().map(|&i| gradients[i]).collect();
    let mut column = vec![0f32; theta];
    let mut buf = vec![0i32; theta];
    // Distance to the median (non-negative f64: its bits order like its
    // value), then the value's key: a total order, compared natively.
    let mut keys = vec![(0u64, 0i32); theta];
    let key_of = |x: f32, med: f64| ((f64::from(x) - med).abs().to_bits(), key(x));
    (0..d)
        .map(|j| {
            for ((c, b), g) in column.iter_mut().zip(buf.iter_mut()).zip(&chosen) {
                *c = g[j];
                *b = key(g[j]);
            }
            let med = f64::from(median_of(&mut buf));
            for (k, &x) in keys.iter_mut().zip(&column) {
                *k = key_of(x, med);
            }
            let threshold = *keys.select_nth_unstable(beta - 1).1;
            // The values whose key is below the threshold, in input order,
            // then the threshold value for the rest.
            let mut sum = 0f64;
            let mut count = 0usize;
            for &x in &column {
                if key_of(x, med) < threshold {
                    sum += f64::from(x);
                    count += 1;
                }
            }
            debug_assert!(count < beta);
            sum += f64::from(unkey(threshold.1)) * (beta - count) as f64;
            (sum / beta as f64) as f32
        })
        .collect()
}

fn centered_clipping(
    gradients: &[&[f32]],
    d: usize,
    center: Option<&[f32]>,
    tau: f64,
    iterations: u32,
) -> Vec<f32> {
    let n = gradients.len() as f64;
    let mut v: Vec<f64> = match center {
        Some(c) => c.iter().map(|&x| f64::from(x)).collect(),
        None => vec![0f64; d],
    };
    let mut step = vec![0f64; d];
    for _ in 0..iterations {
        step.iter_mut().for_each(|s| *s = 0.0);
        for g in gradients {
            let norm2: f64 = g.iter().zip(&v).fold(0f64, |acc, (&x, &c)| {
                let t = f64::from(x) - c;
                acc + t * t
            });
            let norm = norm2.sqrt();
            let scale = if norm > tau { tau / norm } else { 1.0 };
            for ((s, &x), &c) in step.iter_mut().zip(g.iter()).zip(&v) {
                *s += (f64::from(x) - c) * scale;
            }
        }
        for (c, s) in v.iter_mut().zip(&step) {
            *c += s / n;
        }
    }
    v.into_iter().map(|x| x as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RULES: [Aggregator; 7] = [
        Aggregator::Mean,
        Aggregator::Median,
        Aggregator::TrimmedMean { beta: 0.2 },
        Aggregator::Krum,
        Aggregator::MultiKrum { m: 3 },
        Aggregator::Bulyan,
        Aggregator::CenteredClipping {
            tau: 1.0,
            iterations: 3,
        },
    ];

    fn refs(g: &[Vec<f32>]) -> Vec<&[f32]> {
        g.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn small_examples_by_hand() {
        let g = vec![
            vec![1.0, -3.0],
            vec![2.0, 0.0],
            vec![3.0, 1.0],
            vec![4.0, 2.0],
            vec![100.0, 50.0],
        ];
        let r = refs(&g);
        assert_eq!(Aggregator::Mean.aggregate(&r, 0), Ok(vec![22.0, 10.0]));
        assert_eq!(Aggregator::Median.aggregate(&r, 2), Ok(vec![3.0, 1.0]));
        // β = 0.2, n = 5: drop one each side: (2+3+4)/3, (0+1+2)/3.
        assert_eq!(
            Aggregator::TrimmedMean { beta: 0.2 }.aggregate(&r, 1),
            Ok(vec![3.0, 1.0])
        );
        // Even count: the mean of the two middle values.
        let e = [vec![1.0f32], vec![2.0], vec![4.0], vec![10.0]];
        assert_eq!(Aggregator::Median.aggregate(&refs(&e), 1), Ok(vec![3.0]));
        // Krum with f = 1 (n = 5 = 2f+3) never picks the outlier.
        let k = Aggregator::Krum.aggregate(&r, 1).expect("bound holds");
        assert!(k[0] <= 4.0);
        // Ties in the trimmed mean: thresholds counted, not positions.
        let t = [vec![1.0f32], vec![1.0], vec![1.0], vec![5.0], vec![5.0]];
        assert_eq!(
            Aggregator::TrimmedMean { beta: 0.2 }.aggregate(&refs(&t), 1),
            Ok(vec![7.0 / 3.0])
        );
    }

    #[test]
    fn bounds_are_refused_with_typed_errors() {
        let g: Vec<Vec<f32>> = (0..6).map(|i| vec![i as f32]).collect();
        let r = refs(&g);
        let err = Aggregator::Krum.aggregate(&r, 2).unwrap_err();
        assert_eq!(
            err,
            AggregationError::BoundViolated {
                rule: "krum",
                n: 6,
                f: 2,
                bound: "n >= 2f+3"
            }
        );
        assert!(err.to_string().contains("n >= 2f+3"));
        assert!(Aggregator::Krum.aggregate(&r, 1).is_ok());
        assert!(matches!(
            Aggregator::Bulyan.aggregate(&r, 1),
            Err(AggregationError::BoundViolated {
                bound: "n >= 4f+3",
                ..
            })
        ));
        assert!(Aggregator::Median.aggregate(&r, 3).is_err());
        assert!(Aggregator::Median.aggregate(&r, 2).is_ok());
        // β = 0.2, n = 6: trims 1 per side, not enough for f = 2.
        assert!(Aggregator::TrimmedMean { beta: 0.2 }
            .aggregate(&r, 2)
            .is_err());
        assert!(Aggregator::TrimmedMean { beta: 0.5 }
            .aggregate(&r, 0)
            .is_err());
        assert!(Aggregator::MultiKrum { m: 6 }.aggregate(&r, 1).is_err());
        assert!(Aggregator::CenteredClipping {
            tau: 0.0,
            iterations: 1
        }
        .aggregate(&r, 0)
        .is_err());
        assert_eq!(
            Aggregator::Mean.aggregate(&[], 0),
            Err(AggregationError::NoGradients)
        );
        let bad = [vec![1.0f32, 2.0], vec![1.0]];
        assert!(matches!(
            Aggregator::Mean.aggregate(&refs(&bad), 0),
            Err(AggregationError::DimensionMismatch { index: 1, .. })
        ));
        let nan = [vec![1.0f32], vec![f32::NAN]];
        assert_eq!(
            Aggregator::Median.aggregate(&refs(&nan), 0),
            Err(AggregationError::NonFinite { index: 1 })
        );
    }

    fn arb_gradients() -> impl Strategy<Value = Vec<Vec<f32>>> {
        (7usize..12, 1usize..6).prop_flat_map(|(n, d)| {
            proptest::collection::vec(proptest::collection::vec(-1000f32..1000f32, d), n)
        })
    }

    proptest! {
        /// Median and Krum pick input values: any permutation gives the same
        /// bits. The summing rules give the same result up to rounding, and
        /// the same bits for the same order (determinism).
        #[test]
        fn permutation_invariance(g in arb_gradients(), seed in any::<u64>()) {
            use rand::{seq::SliceRandom, SeedableRng};
            let mut p = g.clone();
            p.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            let (r, rp) = (refs(&g), refs(&p));
            let f = 1;
            for rule in RULES {
                let a = rule.aggregate(&r, f).expect("bounds hold for n >= 7, f = 1");
                prop_assert_eq!(&a, &rule.aggregate(&r, f).expect("same"), "{} not deterministic", rule.name());
                let b = rule.aggregate(&rp, f).expect("same n");
                match rule {
                    Aggregator::Median | Aggregator::Krum => {
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        prop_assert_eq!(bits(&a), bits(&b), "{} depends on order", rule.name());
                    }
                    _ => for (x, y) in a.iter().zip(&b) {
                        prop_assert!((x - y).abs() <= 1e-3 * (1.0 + x.abs()), "{}: {} vs {}", rule.name(), x, y);
                    },
                }
            }
        }

        /// Each rule's output lies within the coordinate-wise range of the
        /// honest inputs when f outliers are far away (robust rules only).
        #[test]
        fn robust_rules_stay_in_honest_range(g in arb_gradients()) {
            let mut g = g;
            let d = g[0].len();
            let f = 1;
            g[0] = vec![1.0e6; d];
            let honest = &g[1..];
            let r = refs(&g);
            for rule in [Aggregator::Median, Aggregator::TrimmedMean { beta: 0.2 }, Aggregator::Krum, Aggregator::MultiKrum { m: 3 }, Aggregator::Bulyan] {
                let a = rule.aggregate(&r, f).expect("bounds hold");
                for (j, &x) in a.iter().enumerate() {
                    let lo = honest.iter().map(|h| h[j]).fold(f32::INFINITY, f32::min);
                    let hi = honest.iter().map(|h| h[j]).fold(f32::NEG_INFINITY, f32::max);
                    prop_assert!(x >= lo - 1e-3 && x <= hi + 1e-3, "{}: {} outside [{}, {}]", rule.name(), x, lo, hi);
                }
            }
        }

        /// The bound checks match the formulas for every small n and f.
        #[test]
        fn bounds_match_formulas(n in 1usize..20, f in 0usize..8) {
            prop_assert_eq!(Aggregator::Krum.check(n, f).is_ok(), n >= 2 * f + 3);
            prop_assert_eq!(Aggregator::Bulyan.check(n, f).is_ok(), n >= 4 * f + 3);
            prop_assert_eq!(Aggregator::Median.check(n, f).is_ok(), n > 2 * f);
            let k = (0.25 * n as f64).floor() as usize;
            prop_assert_eq!(Aggregator::TrimmedMean { beta: 0.25 }.check(n, f).is_ok(), k >= f && n > 2 * k);
        }
    }

    /// The blocked, four-lane distances equal the plain definition up to
    /// rounding, and the lane order is what the module documents.
    #[test]
    fn blocked_distances_match_the_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for d in [1usize, 3, 4, 5, DISTANCE_BLOCK - 1, DISTANCE_BLOCK + 7] {
            let g: Vec<Vec<f32>> = (0..4)
                .map(|_| (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect())
                .collect();
            let dist = distances(&refs(&g));
            for i in 0..4 {
                assert_eq!(dist[i][i], 0.0);
                for j in 0..4 {
                    let mut lanes = [0f64; 4];
                    for c in 0..d {
                        lanes[c % 4] += (f64::from(g[i][c]) - f64::from(g[j][c])).powi(2);
                    }
                    let want = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
                    if i != j {
                        assert_eq!(dist[i][j].to_bits(), want.to_bits(), "d={d}");
                    }
                }
            }
        }
    }

    /// Keys order like `total_cmp` and invert exactly.
    #[test]
    fn keys_follow_the_total_order() {
        let xs = [
            f32::NEG_INFINITY,
            -1.5,
            -f32::MIN_POSITIVE,
            -0.0,
            0.0,
            f32::MIN_POSITIVE,
            1.0,
            3.0e38,
            f32::INFINITY,
        ];
        for a in xs {
            assert_eq!(unkey(key(a)).to_bits(), a.to_bits());
            for b in xs {
                assert_eq!(key(a).cmp(&key(b)), a.total_cmp(&b), "{a} vs {b}");
            }
        }
    }

    /// Trimmed mean by selection equals the definition by a full sort.
    #[test]
    fn trimmed_mean_matches_sorting_definition() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200 {
            let n: usize = rng.random_range(3..12);
            // Few distinct values: many ties.
            let col: Vec<f32> = (0..n).map(|_| rng.random_range(-3i32..4) as f32).collect();
            let k = rng.random_range(0..n.div_ceil(2));
            let mut sorted = col.clone();
            sorted.sort_by(f32::total_cmp);
            let want: f64 = sorted[k..n - k].iter().map(|&x| f64::from(x)).sum();
            let keys: Vec<i32> = col.iter().map(|&x| key(x)).collect();
            let mut buf = vec![0i32; n];
            assert_eq!(trimmed_sum(&keys, &mut buf, k), want, "{col:?} k={k}");
        }
    }
}
