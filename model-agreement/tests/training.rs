//! Training over Raft in the deterministic simulation: convergence, every
//! replica bit-identical, robustness of the rules against each attack, and a
//! replica crash and restart mid-training.
//!
//! Tolerance: the data is `y = w*·x + ε` with ε of standard deviation 0.1;
//! training starts 2.9 away from `w*` (L2). "Converges" means the final
//! parameters are within 0.1 of `w*` after 40 rounds (the noise floor of
//! full-batch gradient descent on these shards is about 0.01); "does not
//! converge" means they end more than 1.0 away.
#![forbid(unsafe_code)]

use consensus_actors::types::NodeId;
use model_agreement::gradient_consensus::Round;
use model_agreement::training::{run_training, CrashPlan, TrainingReport, TrainingSpec};
use model_agreement::{Aggregator, Attack};

const CONVERGED: f64 = 0.1;
const DIVERGED: f64 = 1.0;

fn run(spec: &TrainingSpec) -> TrainingReport {
    run_training(spec).expect("the spec is valid and the cluster makes progress")
}

/// Seeded synthetic linear regression over 6 workers (one of them always
/// later than the round timeout) on 3 Raft replicas: converges to within
/// 0.05 of the true weights; every replica ends with the same parameter
/// hash; rounds close on their timeout without the late worker; the run
/// replays bit for bit.
#[test]
fn test_gradient_consensus_convergence() {
    let mut spec = TrainingSpec::new(11, 6, 0, Attack::Silent, Aggregator::Mean);
    spec.late_workers = 1;
    let report = run(&spec);
    assert!(
        report.final_distance < 0.05,
        "distance {}",
        report.final_distance
    );
    assert!(report.final_loss < report.initial_loss / 100.0);
    assert!(report.replicas_identical);
    assert_eq!(
        report.replica_losses.len(),
        3,
        "one state machine per replica, no restart"
    );
    for r in &report.rounds {
        assert_eq!(
            r.summary.included.len(),
            5,
            "{}: the late worker is left out",
            r.summary.round
        );
        assert_eq!(
            r.stale, 1,
            "{}: the late worker's gradient arrives after the close",
            r.summary.round
        );
        assert_eq!(r.summary.version.number, r.summary.round.0 + 1);
    }
    let last = report.rounds.last().expect("40 rounds");
    assert_eq!(last.summary.version.vector.get(NodeId(100)), 40);
    assert_eq!(
        last.summary.version.vector.get(NodeId(105)),
        0,
        "the late worker is never included"
    );
    // Loss decreases round over round while far from the noise floor.
    for w in report.rounds[..15].windows(2) {
        assert!(w[1].loss < w[0].loss);
    }
    let again = run(&spec);
    assert_eq!(again.trace_hash, report.trace_hash);
    assert_eq!(
        again
            .final_params
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        report
            .final_params
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    );
}

/// With f = 2 Byzantine workers out of 7 running each attack, median,
/// trimmed mean (β = 0.3), Krum, Multi-Krum and centered clipping (τ = 0.1,
/// 5 iterations) converge,
/// and so does Bulyan (11 workers, the smallest n for f = 2). Plain mean
/// diverges under sign flip, Gaussian noise and inner-product manipulation.
/// It converges under the other three, and the test says so: equivocation
/// is neutralised by the ordering (the worker is dropped on every replica),
/// a silent worker removes nothing but itself, and "a little is enough"
/// shifts by less than the honest spread, which on these well-conditioned
/// shards costs mean nothing (the attack targets the robust rules).
#[test]
fn robust_rules_converge_under_each_attack_while_mean_does_not() {
    let robust = [
        Aggregator::Median,
        Aggregator::TrimmedMean { beta: 0.3 },
        Aggregator::Krum,
        Aggregator::MultiKrum { m: 5 },
        Aggregator::CenteredClipping {
            tau: 0.1,
            iterations: 5,
        },
    ];
    for attack in Attack::ALL {
        for rule in robust {
            let r = run(&TrainingSpec::new(3, 7, 2, attack, rule));
            assert!(
                r.final_distance < CONVERGED,
                "{} under {}: distance {}",
                rule.name(),
                attack.name(),
                r.final_distance
            );
            assert!(
                r.replicas_identical,
                "{} under {}",
                rule.name(),
                attack.name()
            );
        }
        let b = run(&TrainingSpec::new(3, 11, 2, attack, Aggregator::Bulyan));
        assert!(
            b.final_distance < CONVERGED,
            "bulyan under {}: {}",
            attack.name(),
            b.final_distance
        );
        let mean = run(&TrainingSpec::new(3, 7, 2, attack, Aggregator::Mean));
        assert!(
            mean.replicas_identical,
            "even a diverging model is replicated identically"
        );
        match attack {
            Attack::SignFlip { .. }
            | Attack::GaussianNoise { .. }
            | Attack::InnerProductManipulation { .. } => {
                assert!(
                    mean.final_distance.is_nan() || mean.final_distance >= DIVERGED,
                    "mean under {} should not converge: {}",
                    attack.name(),
                    mean.final_distance
                )
            }
            Attack::ALittleIsEnough { .. } | Attack::Equivocation | Attack::Silent => assert!(
                mean.final_distance < CONVERGED,
                "mean under {}: {}",
                attack.name(),
                mean.final_distance
            ),
        }
    }
}

/// The same attack confined to rounds 5..15: mean is thrown off during the
/// window and recovers after it; the report's rounds show both.
#[test]
fn an_attack_window_hurts_mean_only_while_it_lasts() {
    let mut spec = TrainingSpec::new(5, 7, 2, Attack::SignFlip { scale: 100.0 }, Aggregator::Mean);
    spec.attack_window = (Round(5), Round(8));
    spec.rounds = 60;
    let r = run(&spec);
    let peak = r.rounds[5..8]
        .iter()
        .map(|x| x.distance)
        .fold(0.0, f64::max);
    assert!(peak > 10.0, "the attack throws mean off: {peak}");
    assert!(
        r.final_distance < CONVERGED,
        "and it recovers: {}",
        r.final_distance
    );
}

/// A replica crashes at round 10 and restarts at round 20 (with snapshots
/// every 30 entries, so it catches up from a snapshot and the log); training
/// continues on the other two. Whichever replica it is (one of the three is
/// the leader), every replica ends with the same model, the restarted one
/// included, and the model converges.
#[test]
fn a_replica_crash_and_restart_mid_training_leaves_every_replica_identical() {
    for replica in 1..=3 {
        let mut spec = TrainingSpec::new(
            7,
            7,
            2,
            Attack::SignFlip { scale: 100.0 },
            Aggregator::Median,
        );
        spec.raft.snapshot_threshold = 30;
        spec.crash = Some(CrashPlan {
            replica: NodeId(replica),
            at: Round(10),
            restart_at: Round(20),
        });
        let r = run(&spec);
        assert!(r.replicas_identical, "crash of n{replica}");
        assert!(
            r.replica_losses.len() >= 4,
            "the restarted replica runs a new state machine"
        );
        assert!(
            r.final_distance < CONVERGED,
            "crash of n{replica}: {}",
            r.final_distance
        );
        assert_eq!(r.rounds.len(), 40);
    }
}

/// A spec the rule cannot honour is refused before anything starts.
#[test]
fn a_spec_beyond_the_rules_bound_is_refused() {
    let err = run_training(&TrainingSpec::new(
        1,
        6,
        2,
        Attack::Silent,
        Aggregator::Krum,
    ))
    .expect_err("Krum needs 7 workers for f = 2");
    assert!(err.to_string().contains("n >= 2f+3"), "{err}");
}

/// ParameterSync with 2 fast (10 ms) and 2 slow (40 ms) workers on 3 Raft
/// replicas, 20 pushes each: no honest worker ever reads parameters more than
/// s clocks stale, and the bound binds (fast workers wait, and some read is
/// exactly s stale); BSP is s = 0 and ASP the unbounded limit (fast workers
/// run far ahead and never wait). Reads by one worker see versions in causal
/// order.
mod sync {
    use model_agreement::parameter_sync::{Consistency, PushRefusal};
    use model_agreement::sync_run::{run_parameter_sync, SyncReport, SyncSpec};
    use model_agreement::CausalOrder;

    fn run(spec: &SyncSpec) -> SyncReport {
        run_parameter_sync(spec).expect("runs to completion")
    }

    fn assert_causal_reads(r: &SyncReport) {
        for a in &r.reads {
            for b in r
                .reads
                .iter()
                .filter(|b| b.worker == a.worker && b.clock > a.clock)
            {
                assert!(
                    matches!(
                        b.version.vector.compare(&a.version.vector),
                        CausalOrder::After
                    ),
                    "a worker's later read includes its own push: {a:?} then {b:?}"
                );
            }
        }
    }

    #[test]
    fn ssp_never_reads_more_than_s_stale() {
        for s in 1..=3 {
            let r = run(&SyncSpec::new(4, Consistency::Ssp(s)));
            assert_eq!(
                r.max_staleness(),
                s,
                "ssp:{s}: bounded by s and reaching it"
            );
            assert!(r.waits > 0, "ssp:{s}: fast workers waited");
            assert_eq!((r.applied, r.refused.len()), (80, 0));
            assert!(r.distance.1 < 0.1, "ssp:{s} converges: {:?}", r.distance);
            assert_causal_reads(&r);
            assert!(r.replicas_identical);
        }
    }

    #[test]
    fn bsp_and_asp_are_the_limits() {
        let bsp = run(&SyncSpec::new(4, Consistency::Bsp));
        assert_eq!(bsp.max_staleness(), 0);
        assert!(bsp.waits > 0);
        let asp = run(&SyncSpec::new(4, Consistency::Asp));
        assert_eq!(asp.waits, 0, "ASP never waits");
        assert!(
            asp.max_staleness() > 3,
            "fast workers run ahead: {}",
            asp.max_staleness()
        );
        for r in [&bsp, &asp] {
            assert_eq!(r.applied, 80);
            assert!(r.distance.1 < 0.1, "{:?}", r.distance);
            assert_causal_reads(r);
        }
        let again = run(&SyncSpec::new(4, Consistency::Asp));
        assert_eq!(again.trace_hash, asp.trace_hash, "replays");
    }

    /// A Byzantine worker that pushes as fast as it can without waiting
    /// cannot break the bound: the log refuses its pushes beyond it, and
    /// honest reads stay within s.
    #[test]
    fn ssp_bound_holds_with_a_byzantine_worker_that_never_waits() {
        for c in [Consistency::Bsp, Consistency::Ssp(2)] {
            let mut spec = SyncSpec::new(4, c);
            spec.byzantine = 1;
            let r = run(&spec);
            let bound = c.bound().expect("bounded modes");
            assert!(r.max_staleness() <= bound, "{c}: {}", r.max_staleness());
            assert!(!r.refused.is_empty(), "{c}: the rusher was held back");
            assert!(r
                .refused
                .iter()
                .all(|(w, why)| w.0 == 104 && matches!(why, PushRefusal::TooFarAhead { .. })));
            assert_eq!(
                r.applied, 100,
                "every honest push and the rusher's 20 were applied"
            );
        }
    }
}

/// The convergence claims are not one lucky seed: 20 seeds, each robust rule
/// under the two attacks that break mean, and mean without attackers.
/// (Seed 119 found centered clipping with 3 iterations ending 0.1005 away:
/// its bias is proportional to τ and shrinks with iterations; 5 iterations
/// keep it within 0.08 over 30 seeds and three attacks.)
#[test]
fn convergence_holds_over_seeds() {
    let rules = [
        Aggregator::Median,
        Aggregator::TrimmedMean { beta: 0.3 },
        Aggregator::Krum,
        Aggregator::CenteredClipping {
            tau: 0.1,
            iterations: 5,
        },
    ];
    for seed in 100..120 {
        let clean = run(&TrainingSpec::new(
            seed,
            5,
            0,
            Attack::Silent,
            Aggregator::Mean,
        ));
        assert!(
            clean.final_distance < CONVERGED,
            "seed {seed}: {}",
            clean.final_distance
        );
        for attack in [
            Attack::SignFlip { scale: 100.0 },
            Attack::InnerProductManipulation { epsilon: 10.0 },
        ] {
            for rule in rules {
                let r = run(&TrainingSpec::new(seed, 7, 2, attack, rule));
                assert!(
                    r.final_distance < CONVERGED && r.replicas_identical,
                    "seed {seed}, {} under {}: {} (identical: {})",
                    rule.name(),
                    attack.name(),
                    r.final_distance,
                    r.replicas_identical
                );
            }
        }
    }
}

/// The training tier's slots: replica 2's GradientConsensus component is
/// replaced by one that serves a model it did not apply (its parameters
/// shifted, its hash recomputed to match). The coordinator pulls the model
/// from every replica and trains on the one a majority serves: every pull
/// catches replica 2 (and only it), the model still converges, and the
/// replicated state machines stay identical (the lie is in what is served).
/// Two liars telling different lies leave no majority: the run stops with
/// a clear error instead of training on a lie.
mod lying_replica {
    use super::*;
    use actix::prelude::*;
    use consensus_actors::supervision::ChildSlot;
    use model_agreement::gradient_consensus::{parameter_hash, GradientOutput, ModelVersion};
    use model_agreement::replica::{
        CloseRound, Component, GradientConsensusSlot, GradientContext, GradientHandles,
        InjectPanic, ModelApplied, ModelMirror, ModelView, Ordering, OrderingError, PullModel,
        Slot, SubmitGradient, TrainingSlots,
    };
    use model_agreement::training::{run_training_with, TrainingError};
    use model_agreement::GradientCommand;
    use model_agreement::GradientConsensus;
    use std::sync::Arc;

    /// Orders honestly, serves `applied + shift` as if it were version
    /// `at_least`.
    struct Liar {
        ordering: Ordering<GradientConsensus>,
        mirror: ModelMirror,
        shift: f32,
    }

    impl Actor for Liar {
        type Context = Context<Self>;
    }
    impl Supervised for Liar {}

    impl Handler<SubmitGradient> for Liar {
        type Result = ResponseFuture<Result<GradientOutput, OrderingError>>;
        fn handle(&mut self, m: SubmitGradient, _: &mut Context<Self>) -> Self::Result {
            self.ordering.propose(GradientCommand::Submit {
                round: m.round,
                worker: m.worker,
                gradient: m.gradient,
            })
        }
    }

    impl Handler<CloseRound> for Liar {
        type Result = ResponseFuture<Result<GradientOutput, OrderingError>>;
        fn handle(&mut self, m: CloseRound, _: &mut Context<Self>) -> Self::Result {
            self.ordering
                .propose(GradientCommand::CloseRound { round: m.round })
        }
    }

    impl Handler<PullModel> for Liar {
        type Result = Option<ModelView>;
        fn handle(&mut self, m: PullModel, _: &mut Context<Self>) -> Option<ModelView> {
            let v = self.mirror.view()?;
            let params: Vec<f32> = v.params.iter().map(|p| p + self.shift).collect();
            Some(ModelView {
                round: Round(m.at_least),
                version: ModelVersion {
                    number: m.at_least,
                    vector: v.version.vector.clone(),
                    hash: parameter_hash(&params),
                },
                params: Arc::new(params),
            })
        }
    }

    impl Handler<ModelApplied> for Liar {
        type Result = ();
        fn handle(&mut self, m: ModelApplied, _: &mut Context<Self>) {
            self.mirror.handle_applied(m.0);
        }
    }

    impl Handler<InjectPanic> for Liar {
        type Result = ();
        fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {}
    }

    fn slots(liars: &'static [u64]) -> TrainingSlots {
        let stock = GradientConsensusSlot::default();
        TrainingSlots {
            gradient_consensus: Slot::new(move |ctx: &GradientContext| {
                if !liars.contains(&ctx.id.0) {
                    return stock.build(ctx);
                }
                let child = ChildSlot::<Liar>::new();
                let addr = child.address();
                Component::new(
                    child,
                    Liar {
                        ordering: ctx.ordering.clone(),
                        mirror: ModelMirror::new(None),
                        shift: ctx.id.0 as f32,
                    },
                    GradientHandles::of(&addr),
                )
            }),
            ..TrainingSlots::default()
        }
    }

    #[test]
    fn a_replica_serving_a_model_it_did_not_apply_is_caught_by_the_hash_comparison() {
        let mut spec = TrainingSpec::new(
            9,
            7,
            2,
            Attack::SignFlip { scale: 100.0 },
            Aggregator::Median,
        );
        spec.rounds = 20;
        let r = run_training_with(&spec, &slots(&[2])).expect("a majority is honest");
        assert!(r.final_distance < 0.2, "distance {}", r.final_distance);
        assert!(r.replicas_identical, "the state machines agree");
        assert!(r
            .served_disagreements
            .iter()
            .all(|(_, id)| *id == NodeId(2)));
        assert_eq!(
            r.served_disagreements.len(),
            20,
            "caught at every pull after a round (before the first close it serves nothing)"
        );
        let honest = run(&spec);
        assert!(honest.served_disagreements.is_empty());
        assert_eq!(
            honest
                .final_params
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            r.final_params
                .iter()
                .map(|x| x.to_bits())
                .collect::<Vec<_>>(),
            "the liar changed nothing the workers computed on"
        );
    }

    #[test]
    fn two_liars_of_three_leave_no_majority_and_the_run_stops() {
        let mut spec = TrainingSpec::new(9, 5, 0, Attack::Silent, Aggregator::Mean);
        spec.rounds = 3;
        let err = run_training_with(&spec, &slots(&[2, 3])).expect_err("no majority");
        assert!(
            matches!(err, TrainingError::NoAgreement { version: 0, .. }),
            "{err}"
        );
    }
}

/// A silent Byzantine worker blocks the barrier only until it is evicted:
/// with `evict_after = 3`, the first three rounds close on the timeout
/// (the two silent workers never submit), the third close evicts both on
/// every replica (a log command), and from then on every round closes as
/// soon as the five active workers submitted. Without eviction every round
/// waits for the timeout. Both converge, replicas identical.
#[test]
fn silent_workers_are_evicted_and_rounds_close_at_the_barrier() {
    let mut spec = TrainingSpec::new(13, 7, 2, Attack::Silent, Aggregator::Krum);
    spec.rounds = 20;
    let waiting = run(&spec);
    assert!(waiting
        .rounds
        .iter()
        .all(|r| r.closed_after >= spec.round_timeout && r.summary.evicted.is_empty()));
    spec.evict_after = Some(3);
    let r = run(&spec);
    for (i, round) in r.rounds.iter().enumerate() {
        if i < 3 {
            assert!(round.closed_after >= spec.round_timeout, "round {i}");
        } else {
            assert!(
                round.closed_after < spec.round_timeout,
                "round {i} closes at the barrier: {:?}",
                round.closed_after
            );
        }
        let expected: Vec<NodeId> = if i == 2 {
            vec![NodeId(105), NodeId(106)]
        } else {
            vec![]
        };
        assert_eq!(round.summary.evicted, expected, "round {i}");
        assert_eq!(round.summary.included.len(), 5);
    }
    for report in [&waiting, &r] {
        assert!(
            report.final_distance < CONVERGED,
            "{}",
            report.final_distance
        );
        assert!(report.replicas_identical);
    }
    assert_eq!(
        r.final_params
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        waiting
            .final_params
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        "eviction changes when rounds close, not what they aggregate"
    );
}

/// ParameterSync with Byzantine workers and silent ones.
mod sync_byzantine {
    use super::*;
    use model_agreement::parameter_sync::Consistency;
    use model_agreement::sync_run::{run_parameter_sync, SyncSpec};
    use std::time::Duration;

    /// SSP (s = 2) and ASP with one Byzantine worker pushing sign-flipped
    /// ×100 gradients as fast as the log lets it: every push aggregates the
    /// latest gradient of each worker with the rule, so median, trimmed
    /// mean and Krum (f = 1) converge while mean does not; and under SSP no
    /// honest read is ever more than s clocks stale, Byzantine worker or not.
    #[test]
    fn ssp_bound_holds_and_robust_rules_converge_with_byzantine_workers() {
        for consistency in [Consistency::Ssp(2), Consistency::Asp] {
            for rule in [
                Aggregator::Median,
                Aggregator::TrimmedMean { beta: 0.3 },
                Aggregator::Krum,
                Aggregator::Mean,
            ] {
                let mut spec = SyncSpec::new(4, consistency);
                spec.byzantine = 1;
                spec.aggregator = rule;
                spec.f = if rule == Aggregator::Mean { 0 } else { 1 };
                let r = run_parameter_sync(&spec).expect("runs to completion");
                if let Some(s) = consistency.bound() {
                    assert!(r.max_staleness() <= s, "{consistency} {}", rule.name());
                }
                assert!(r.replicas_identical, "{consistency} {}", rule.name());
                if rule == Aggregator::Mean {
                    assert!(
                        r.distance.1.is_nan() || r.distance.1 >= DIVERGED,
                        "{consistency}: mean should not converge: {:?}",
                        r.distance
                    );
                } else {
                    assert!(
                        r.distance.1 < CONVERGED,
                        "{consistency} {}: {:?}",
                        rule.name(),
                        r.distance
                    );
                }
            }
        }
    }

    /// ParameterSync ordered by PBFT (4 replicas, f = 1) with replica 1,
    /// the primary of view 0, Byzantine, and one Byzantine worker pushing
    /// sign-flipped ×100 gradients without waiting, median (f = 1): under
    /// SSP(2) no honest read is more than 2 clocks stale, every correct
    /// replica holds the same parameters bit for bit, and they converge.
    #[test]
    fn parameter_sync_over_pbft_with_a_byzantine_replica_keeps_the_bound_and_one_model() {
        use consensus_pbft::byzantine::Behaviour;
        use model_agreement::training::OrderingLayer;
        for behaviour in [Behaviour::Equivocate, Behaviour::Silent] {
            let mut spec = SyncSpec::new(4, Consistency::Ssp(2));
            spec.replicas = 4;
            spec.byzantine = 1;
            spec.aggregator = Aggregator::Median;
            spec.f = 1;
            spec.ordering = OrderingLayer::Pbft {
                byzantine: vec![(NodeId(1), behaviour)],
            };
            let r = run_parameter_sync(&spec).expect("runs to completion");
            assert!(
                r.max_staleness() <= 2,
                "{behaviour:?}: {}",
                r.max_staleness()
            );
            assert!(r.replicas_identical, "{behaviour:?}");
            assert!(r.distance.1 < CONVERGED, "{behaviour:?}: {:?}", r.distance);
            assert_eq!(r.applied, 100, "{behaviour:?}: every push applied");
        }
    }

    /// A silent worker stalls BSP and SSP (the slowest clock stops) until a
    /// replica that saw it stuck for `evict_after` proposes its eviction:
    /// then every honest push completes, the reads stay within the bound,
    /// and every replica records the same eviction. Without eviction the
    /// run makes no progress.
    #[test]
    fn a_silent_worker_is_evicted_and_stops_blocking_bsp_and_ssp() {
        for consistency in [Consistency::Bsp, Consistency::Ssp(2)] {
            let mut spec = SyncSpec::new(4, consistency);
            spec.silent = 1;
            spec.steps = 10;
            spec.evict_after = Some(Duration::from_millis(300));
            let r = run_parameter_sync(&spec).expect("the silent worker is evicted");
            assert_eq!(r.evicted, vec![NodeId(104)], "{consistency}");
            assert_eq!(r.applied, 40, "{consistency}");
            assert!(r.max_staleness() <= consistency.bound().unwrap_or(0));
            assert!(r.replicas_identical, "{consistency}");
            assert!(
                r.distance.1 < r.distance.0 / 2.0,
                "{consistency}: {:?}",
                r.distance
            );
            spec.evict_after = None;
            assert!(
                run_parameter_sync(&spec).is_err(),
                "{consistency}: stalls without eviction"
            );
        }
    }
}

/// PBFT as the ordering layer (4 replicas, f = 1) with replica 1, the
/// primary of view 0, Byzantine, and 2 of 7 workers flipping their
/// gradients ×100 (Krum). An equivocating primary sends different
/// PRE-PREPAREs to different backups; the correct replicas catch it
/// (evidence), change view, and every correct replica ends with the same
/// model, bit for bit, which converges. The same holds when the primary
/// signs wrong digests, forges authenticators or stays silent.
#[test]
fn an_equivocating_pbft_replica_leaves_every_honest_replica_with_the_same_model() {
    use consensus_pbft::byzantine::Behaviour;
    use model_agreement::training::OrderingLayer;
    for behaviour in [
        Behaviour::Equivocate,
        Behaviour::WrongDigest,
        Behaviour::ForgedAuth,
        Behaviour::Silent,
    ] {
        let mut spec = TrainingSpec::new(
            21,
            7,
            2,
            Attack::SignFlip { scale: 100.0 },
            Aggregator::Krum,
        );
        spec.replicas = 4;
        spec.ordering = OrderingLayer::Pbft {
            byzantine: vec![(NodeId(1), behaviour)],
        };
        let r = run(&spec);
        assert!(r.replicas_identical, "{behaviour:?}");
        assert!(
            r.final_distance < CONVERGED,
            "{behaviour:?}: {}",
            r.final_distance
        );
        assert!(
            r.served_disagreements
                .iter()
                .all(|(_, id)| *id == NodeId(1)),
            "{behaviour:?}: a correct replica served another model: {:?}",
            r.served_disagreements
        );
        if behaviour != Behaviour::Silent {
            assert!(r.replica_evidence > 0, "{behaviour:?} went unnoticed");
        }
    }
    // PBFT needs n >= 3f + 1: one Byzantine replica among 3 is refused.
    let mut spec = TrainingSpec::new(1, 5, 0, Attack::Silent, Aggregator::Mean);
    spec.ordering = OrderingLayer::Pbft {
        byzantine: vec![(NodeId(1), Behaviour::Equivocate)],
    };
    assert!(run_training(&spec).is_err());
}
