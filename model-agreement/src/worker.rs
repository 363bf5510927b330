//! Training workers: a pure [`WorkerCore`] (shard, behaviour, seeded RNG,
//! compute time) and the thin [`WorkerActor`] around it. An honest and a
//! Byzantine worker answer the same message, [`ComputeGradient`], so an
//! attack is swapped in by starting another core.

use crate::attack::{Attack, AttackContext, WorkerOutput};
use crate::gradient_consensus::Round;
use crate::task::Shard;
use actix::{Actor, Context, Handler, Message};
use consensus_actors::types::NodeId;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

/// How a worker behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// Sends its true gradient.
    Honest,
    /// Attacks in the rounds `from..until`, behaves honestly otherwise.
    Byzantine {
        /// The attack.
        attack: Attack,
        /// First attacking round.
        from: Round,
        /// First round after the attack window.
        until: Round,
    },
}

/// One worker's logic: no actix, no clock.
#[derive(Debug)]
pub struct WorkerCore {
    id: NodeId,
    shard: Shard,
    behaviour: Behaviour,
    compute_time: Duration,
    rng: ChaCha8Rng,
}

impl WorkerCore {
    /// A worker computing on `shard`, taking `compute_time` (virtual) per
    /// gradient, its randomness from `seed`.
    pub fn new(
        id: NodeId,
        shard: Shard,
        behaviour: Behaviour,
        compute_time: Duration,
        seed: u64,
    ) -> Self {
        Self {
            id,
            shard,
            behaviour,
            compute_time,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The worker's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether the worker attacks in `round`.
    pub fn attacks_in(&self, round: Round) -> Option<Attack> {
        match self.behaviour {
            Behaviour::Byzantine {
                attack,
                from,
                until,
            } if (from..until).contains(&round) => Some(attack),
            _ => None,
        }
    }

    /// Whether the worker is Byzantine at all.
    pub fn is_byzantine(&self) -> bool {
        matches!(self.behaviour, Behaviour::Byzantine { .. })
    }

    /// What the worker sends for `msg`'s round, and after how long.
    pub fn handle_compute_gradient(&mut self, msg: &ComputeGradient) -> GradientReady {
        let own = self.shard.gradient(&msg.params);
        let output = match self.attacks_in(msg.round) {
            None => WorkerOutput::Gradient(own),
            Some(attack) => attack.craft(
                &AttackContext {
                    own: &own,
                    honest: &msg.honest,
                    workers: msg.workers,
                    byzantine: msg.byzantine,
                },
                &mut self.rng,
            ),
        };
        GradientReady {
            worker: self.id,
            round: msg.round,
            output,
            after: self.compute_time,
        }
    }
}

/// Asks a worker for its gradient of a round.
#[derive(Clone, Debug, Message)]
#[rtype(result = "GradientReady")]
pub struct ComputeGradient {
    /// The round.
    pub round: Round,
    /// The parameters pulled for it.
    pub params: Arc<Vec<f32>>,
    /// The honest gradients of the round (what an omniscient attacker
    /// knows; empty for honest workers).
    pub honest: Arc<Vec<Vec<f32>>>,
    /// Workers in total.
    pub workers: usize,
    /// Byzantine workers.
    pub byzantine: usize,
}

/// A worker's answer: what it sends, and how long computing took.
#[derive(Clone, Debug, PartialEq)]
pub struct GradientReady {
    /// The worker.
    pub worker: NodeId,
    /// The round.
    pub round: Round,
    /// What it sends.
    pub output: WorkerOutput,
    /// Virtual compute time: the submission leaves this long after the pull.
    pub after: Duration,
}

/// The worker as an actix actor (owns one [`WorkerCore`]).
#[derive(Debug)]
pub struct WorkerActor {
    core: WorkerCore,
}

impl WorkerActor {
    /// An actor around `core`.
    pub fn new(core: WorkerCore) -> Self {
        Self { core }
    }
}

impl Actor for WorkerActor {
    type Context = Context<Self>;
}

impl Handler<ComputeGradient> for WorkerActor {
    type Result = actix::MessageResult<ComputeGradient>;

    fn handle(&mut self, msg: ComputeGradient, _: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(self.core.handle_compute_gradient(&msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::LinearRegression;

    #[test]
    fn a_byzantine_worker_attacks_only_in_its_window() {
        let p = LinearRegression::new(3, 0.1, 1);
        let mut w = WorkerCore::new(
            NodeId(1),
            p.shard(1, 20),
            Behaviour::Byzantine {
                attack: Attack::SignFlip { scale: 100.0 },
                from: Round(2),
                until: Round(4),
            },
            Duration::from_millis(5),
            9,
        );
        let msg = |r| ComputeGradient {
            round: Round(r),
            params: Arc::new(vec![0.0; 3]),
            honest: Arc::new(vec![]),
            workers: 5,
            byzantine: 1,
        };
        let honest = p.shard(1, 20).gradient(&[0.0; 3]);
        assert_eq!(
            w.handle_compute_gradient(&msg(1)).output,
            WorkerOutput::Gradient(honest.clone())
        );
        let flipped: Vec<f32> = honest.iter().map(|g| -100.0 * g).collect();
        let ready = w.handle_compute_gradient(&msg(2));
        assert_eq!(ready.output, WorkerOutput::Gradient(flipped));
        assert_eq!(ready.after, Duration::from_millis(5));
        assert_eq!(
            w.handle_compute_gradient(&msg(4)).output,
            WorkerOutput::Gradient(honest)
        );
    }
}
