//! The training task of the tests and the example: seeded synthetic linear
//! regression. Each worker holds its own shard of samples `y = w*·x + ε`
//! (`x`, `ε` Gaussian) and computes the full-batch gradient of half the
//! mean squared error on it; the loss is measured on a held-out shard.
//!
//! Everything is computed in `f64` in index order and returned as `f32`, so
//! a worker's gradient depends only on its shard and the parameters.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A standard normal sample (Box–Muller), from any RNG.
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    // u1 in (0, 1]: ln(u1) is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A linear-regression problem: the true weights and the noise level.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearRegression {
    true_weights: Vec<f32>,
    noise_std: f64,
    seed: u64,
}

impl LinearRegression {
    /// A problem of `dim` weights drawn from N(0, 1) with observation noise
    /// of standard deviation `noise_std`, all from `seed`.
    pub fn new(dim: usize, noise_std: f64, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let true_weights = (0..dim).map(|_| standard_normal(&mut rng) as f32).collect();
        Self {
            true_weights,
            noise_std,
            seed,
        }
    }

    /// The weights the data was generated with.
    pub fn true_weights(&self) -> &[f32] {
        &self.true_weights
    }

    /// The number of weights.
    pub fn dim(&self) -> usize {
        self.true_weights.len()
    }

    /// Shard number `index` with `samples` samples (deterministic in the
    /// problem's seed and `index`).
    pub fn shard(&self, index: u64, samples: usize) -> Shard {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let d = self.dim();
        let mut xs = Vec::with_capacity(samples * d);
        let mut ys = Vec::with_capacity(samples);
        for _ in 0..samples {
            let x: Vec<f64> = (0..d).map(|_| standard_normal(&mut rng)).collect();
            let y: f64 = x
                .iter()
                .zip(&self.true_weights)
                .map(|(a, &w)| a * f64::from(w))
                .sum::<f64>()
                + self.noise_std * standard_normal(&mut rng);
            xs.extend(x.iter().map(|&v| v as f32));
            ys.push(y as f32);
        }
        Shard { dim: d, xs, ys }
    }

    /// The L2 distance from `params` to the true weights.
    pub fn distance_to_truth(&self, params: &[f32]) -> f64 {
        params
            .iter()
            .zip(&self.true_weights)
            .map(|(&p, &w)| (f64::from(p) - f64::from(w)).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

/// A worker's samples (row-major).
#[derive(Clone, Debug, PartialEq)]
pub struct Shard {
    dim: usize,
    xs: Vec<f32>,
    ys: Vec<f32>,
}

impl Shard {
    fn residuals<'a>(&'a self, params: &'a [f32]) -> impl Iterator<Item = (&'a [f32], f64)> + 'a {
        assert_eq!(params.len(), self.dim, "parameters of the wrong dimension");
        self.xs
            .chunks_exact(self.dim)
            .zip(&self.ys)
            .map(move |(x, &y)| {
                let pred: f64 = x
                    .iter()
                    .zip(params)
                    .map(|(&a, &w)| f64::from(a) * f64::from(w))
                    .sum();
                (x, pred - f64::from(y))
            })
    }

    /// The gradient of `½·mean((w·x − y)²)` at `params`.
    ///
    /// # Panics
    /// When `params` has the wrong dimension (a bug of the caller).
    pub fn gradient(&self, params: &[f32]) -> Vec<f32> {
        let mut g = vec![0f64; self.dim];
        for (x, r) in self.residuals(params) {
            for (gj, &xj) in g.iter_mut().zip(x) {
                *gj += r * f64::from(xj);
            }
        }
        let m = self.ys.len().max(1) as f64;
        g.into_iter().map(|v| (v / m) as f32).collect()
    }

    /// `½·mean((w·x − y)²)` at `params`.
    ///
    /// # Panics
    /// When `params` has the wrong dimension (a bug of the caller).
    pub fn loss(&self, params: &[f32]) -> f64 {
        let m = self.ys.len().max(1) as f64;
        self.residuals(params)
            .map(|(_, r)| 0.5 * r * r)
            .sum::<f64>()
            / m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain gradient descent on one shard reaches the true weights: the
    /// gradient has the right sign and scale.
    #[test]
    fn gradient_descent_on_one_shard_converges() {
        let p = LinearRegression::new(5, 0.01, 3);
        let s = p.shard(1, 200);
        let mut w = vec![0f32; 5];
        let start = s.loss(&w);
        for _ in 0..200 {
            let g = s.gradient(&w);
            for (wj, gj) in w.iter_mut().zip(g) {
                *wj -= 0.1 * gj;
            }
        }
        assert!(s.loss(&w) < start / 100.0);
        assert!(
            p.distance_to_truth(&w) < 0.01,
            "{}",
            p.distance_to_truth(&w)
        );
    }
}
