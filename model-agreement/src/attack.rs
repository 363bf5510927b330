//! Byzantine worker behaviours: what a lying worker submits instead of its
//! true gradient.
//!
//! The attacker is omniscient, as in the papers' evaluations: it knows the
//! honest gradients of the round ([`AttackContext::honest`]).
//!
//! | attack | submits |
//! |---|---|
//! | [`Attack::SignFlip`] | `−scale · g` (its true gradient, flipped; scale 100 by default) |
//! | [`Attack::GaussianNoise`] | `g + N(0, σ²)` per coordinate |
//! | [`Attack::ALittleIsEnough`] | `μ − z·σ` per coordinate over the honest gradients (Baruch et al. 2019), `z` from the paper's formula by default |
//! | [`Attack::InnerProductManipulation`] | `−ε · μ` (Xie et al. 2019) |
//! | [`Attack::Equivocation`] | a different gradient to different replicas: the true one to some, the flipped one to others |
//! | [`Attack::Silent`] | nothing |

use crate::task::standard_normal;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A Byzantine worker behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Attack {
    /// The true gradient times `-scale`.
    SignFlip {
        /// Scale (100 in the issue).
        scale: f32,
    },
    /// The true gradient plus Gaussian noise.
    GaussianNoise {
        /// Standard deviation of the noise per coordinate.
        sigma: f64,
    },
    /// "A little is enough": `μ − z·σ` of the honest gradients.
    ALittleIsEnough {
        /// The shift in standard deviations; `None`: the paper's `z_max`
        /// for `n` workers of which `f` Byzantine.
        z: Option<f64>,
    },
    /// Inner-product manipulation: `−ε · μ` of the honest gradients.
    InnerProductManipulation {
        /// ε.
        epsilon: f64,
    },
    /// A different gradient to different replicas.
    Equivocation,
    /// Submits nothing.
    Silent,
}

/// What an attack sees of the round.
#[derive(Clone, Copy, Debug)]
pub struct AttackContext<'a> {
    /// The attacker's true gradient (what an honest worker in its place sends).
    pub own: &'a [f32],
    /// The honest workers' gradients of the round.
    pub honest: &'a [Vec<f32>],
    /// Workers in total.
    pub workers: usize,
    /// Byzantine workers.
    pub byzantine: usize,
}

/// What a worker sends for one round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WorkerOutput {
    /// One gradient, the same to every replica.
    Gradient(Vec<f32>),
    /// `to_first` to one half of the replicas, `to_rest` to the other.
    Equivocate {
        /// What the first replicas receive.
        to_first: Vec<f32>,
        /// What the others receive.
        to_rest: Vec<f32>,
    },
    /// Nothing.
    Silent,
}

/// An attack name that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown attack `{0}` (expected sign-flip, gaussian, alie, ipm, equivocation or silent)")]
pub struct UnknownAttack(pub String);

impl Attack {
    /// Every attack kind with its default parameters.
    pub const ALL: [Attack; 6] = [
        Attack::SignFlip { scale: 100.0 },
        Attack::GaussianNoise { sigma: 100.0 },
        Attack::ALittleIsEnough { z: None },
        Attack::InnerProductManipulation { epsilon: 10.0 },
        Attack::Equivocation,
        Attack::Silent,
    ];

    /// The attack's command-line name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SignFlip { .. } => "sign-flip",
            Self::GaussianNoise { .. } => "gaussian",
            Self::ALittleIsEnough { .. } => "alie",
            Self::InnerProductManipulation { .. } => "ipm",
            Self::Equivocation => "equivocation",
            Self::Silent => "silent",
        }
    }

    /// What the attacker sends this round.
    pub fn craft(&self, ctx: &AttackContext<'_>, rng: &mut impl Rng) -> WorkerOutput {
        let flip = |scale: f32| ctx.own.iter().map(|&g| -scale * g).collect::<Vec<f32>>();
        match *self {
            Self::SignFlip { scale } => WorkerOutput::Gradient(flip(scale)),
            Self::GaussianNoise { sigma } => WorkerOutput::Gradient(
                ctx.own
                    .iter()
                    .map(|&g| (f64::from(g) + sigma * standard_normal(rng)) as f32)
                    .collect(),
            ),
            Self::ALittleIsEnough { z } => {
                let z = z.unwrap_or_else(|| alie_z_max(ctx.workers, ctx.byzantine));
                let (mu, sd) = mean_std(ctx.honest, ctx.own);
                WorkerOutput::Gradient(
                    mu.iter()
                        .zip(&sd)
                        .map(|(&m, &s)| (m - z * s) as f32)
                        .collect(),
                )
            }
            Self::InnerProductManipulation { epsilon } => {
                let (mu, _) = mean_std(ctx.honest, ctx.own);
                WorkerOutput::Gradient(mu.iter().map(|&m| (-epsilon * m) as f32).collect())
            }
            Self::Equivocation => WorkerOutput::Equivocate {
                to_first: ctx.own.to_vec(),
                to_rest: flip(100.0),
            },
            Self::Silent => WorkerOutput::Silent,
        }
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Attack {
    type Err = UnknownAttack;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Attack::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownAttack(s.to_string()))
    }
}

/// Coordinate-wise mean and (population) standard deviation of the honest
/// gradients, in f64; the attacker's own true gradient when none is known.
fn mean_std(honest: &[Vec<f32>], own: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let fallback = [own.to_vec()];
    let set: &[Vec<f32>] = if honest.is_empty() { &fallback } else { honest };
    let n = set.len() as f64;
    let d = own.len();
    let mut mu = vec![0f64; d];
    for g in set {
        for (m, &x) in mu.iter_mut().zip(g) {
            *m += f64::from(x);
        }
    }
    mu.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0f64; d];
    for g in set {
        for ((v, &x), &m) in var.iter_mut().zip(g).zip(&mu) {
            *v += (f64::from(x) - m).powi(2);
        }
    }
    (mu, var.into_iter().map(|v| (v / n).sqrt()).collect())
}

/// Baruch et al.'s `z_max`: with `s = ⌊n/2 + 1⌋ − f` workers the attacker
/// must win over, `z_max = Φ⁻¹((n − s)/n)`.
pub fn alie_z_max(n: usize, f: usize) -> f64 {
    let s = (n / 2 + 1).saturating_sub(f);
    let p = ((n - s.min(n)) as f64 / n.max(1) as f64).clamp(1e-6, 1.0 - 1e-6);
    inverse_normal_cdf(p)
}

/// Φ, from the Abramowitz–Stegun 7.1.26 approximation of erf (|error| < 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Φ⁻¹ by bisection on [`normal_cdf`] (60 steps: below the approximation's error).
fn inverse_normal_cdf(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0f64, 10.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn attacks_craft_what_the_papers_describe() {
        let honest = vec![vec![1.0f32, 2.0], vec![3.0, 2.0]];
        let ctx = AttackContext {
            own: &[2.0, 2.0],
            honest: &honest,
            workers: 7,
            byzantine: 2,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            Attack::SignFlip { scale: 100.0 }.craft(&ctx, &mut rng),
            WorkerOutput::Gradient(vec![-200.0, -200.0])
        );
        assert_eq!(
            Attack::InnerProductManipulation { epsilon: 0.5 }.craft(&ctx, &mut rng),
            WorkerOutput::Gradient(vec![-1.0, -1.0])
        );
        // μ = (2, 2), σ = (1, 0).
        assert_eq!(
            Attack::ALittleIsEnough { z: Some(1.5) }.craft(&ctx, &mut rng),
            WorkerOutput::Gradient(vec![0.5, 2.0])
        );
        assert_eq!(Attack::Silent.craft(&ctx, &mut rng), WorkerOutput::Silent);
        assert!(matches!(
            Attack::Equivocation.craft(&ctx, &mut rng),
            WorkerOutput::Equivocate { to_first, to_rest } if to_first != to_rest
        ));
        let WorkerOutput::Gradient(noisy) =
            Attack::GaussianNoise { sigma: 100.0 }.craft(&ctx, &mut rng)
        else {
            panic!("a gradient");
        };
        assert!(noisy.iter().any(|&x| (x - 2.0).abs() > 1.0));
        for a in Attack::ALL {
            assert_eq!(a.name().parse::<Attack>(), Ok(a));
        }
        assert!("nope".parse::<Attack>().is_err());
    }

    #[test]
    fn z_max_matches_the_paper() {
        // n = 50, f = 12 (Baruch et al., Table 1 setting): s = 14, p = 0.72, z ≈ 0.58.
        assert!(
            (alie_z_max(50, 12) - 0.583).abs() < 0.01,
            "{}",
            alie_z_max(50, 12)
        );
        assert!(normal_cdf(0.0) - 0.5 < 1e-7);
        assert!((inverse_normal_cdf(0.975) - 1.96).abs() < 1e-3);
    }
}
