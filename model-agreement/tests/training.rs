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
            spec.rusher = true;
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
