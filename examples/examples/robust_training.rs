//! A simulated training cluster that agrees on its model while workers lie:
//! gradients are ordered through Raft (or PBFT) and aggregated by a robust rule on
//! every replica (model-agreement's GradientConsensus), all in virtual time.
//!
//! ```sh
//! cargo run --example robust_training -- --aggregator krum --byzantine 2 --attack sign-flip
//! cargo run --example robust_training -- --aggregator mean --byzantine 2 --attack ipm --json
//! cargo run --example robust_training -- --attack-window 10:20 --report loss.svg
//! cargo run --example robust_training -- --consistency ssp:2 --aggregator mean --byzantine 1
//! ```
//!
//! Prints the held-out loss after every round; with `--json` the last line
//! of stdout is one JSON object (`aggregator`, `workers`, `byzantine`,
//! `attack`, `rounds`, `final_loss`, `replicas_identical`, ...).
//! `--report FILE.svg` draws the loss per round of every replica, the attack
//! window shaded.
//!
//! `--consistency bsp` (the default) runs synchronous rounds with the chosen
//! rule (GradientConsensus). `ssp:S` and `asp` run ParameterSync instead:
//! every push aggregates the latest gradient of each worker with the chosen
//! rule; its Byzantine workers push sign-flipped (×100) gradients without
//! ever waiting, or stay silent with `--attack silent`. `--evict-after K`
//! evicts a silent worker: after K silent rounds (bsp), or after it was
//! stuck behind the others for K slow-worker steps (40 ms each, ssp/asp;
//! K must exceed one honest step, so K >= 2).
//! The JSON also says which replicas served a model the majority did not
//! (`served_disagreements`, bsp).
//!
//! `--protocol pbft` orders the rounds (bsp) or the pushes (ssp, asp)
//! through PBFT instead of Raft, 4 replicas by default, replica 1 (the first primary) Byzantine as
//! `--replica-fault` says (default `equivocate`: different PRE-PREPAREs to
//! different backups; also `wrong-digest`, `forged-auth`, `lying-new-view`,
//! `flood`, `replay`, `silent`, or `none`); every correct replica must end
//! with the same model (or parameters).
//!
//! ```sh
//! cargo run --example robust_training -- --protocol pbft --aggregator krum --byzantine 2 --json
//! ```
#![forbid(unsafe_code)]

use clap::Parser;
use consensus_actors::types::NodeId;
use consensus_pbft::byzantine::Behaviour as PbftBehaviour;
use model_agreement::gradient_consensus::Round;
use model_agreement::parameter_sync::Consistency;
use model_agreement::sync_run::{run_parameter_sync, SyncSpec};
use model_agreement::training::{run_training, OrderingLayer, TrainingSpec};
use model_agreement::{Aggregator, Attack};
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(about = "Robust distributed training on a simulated Raft or PBFT cluster")]
struct Args {
    /// mean | median | trimmed-mean | krum | multi-krum | bulyan | centered-clipping
    #[arg(long, default_value = "median")]
    aggregator: String,
    /// Workers in total (Byzantine ones included).
    #[arg(long, default_value_t = 7)]
    workers: usize,
    /// Byzantine workers (the rule tolerates this many).
    #[arg(long, default_value_t = 2)]
    byzantine: usize,
    /// sign-flip | gaussian | alie | ipm | equivocation | silent
    #[arg(long, default_value = "sign-flip")]
    attack: Attack,
    /// Rounds in which the Byzantine workers attack, `FROM:UNTIL` (default: all).
    #[arg(long)]
    attack_window: Option<String>,
    /// bsp | ssp:S | asp
    #[arg(long, default_value = "bsp")]
    consistency: Consistency,
    /// raft | pbft
    #[arg(long, default_value = "raft")]
    protocol: String,
    /// Training rounds.
    #[arg(long, default_value_t = 40)]
    rounds: u64,
    /// Consensus replicas (default: 3 for raft, 4 for pbft).
    #[arg(long)]
    replicas: Option<u64>,
    /// pbft: how replica 1 lies (equivocate | wrong-digest | forged-auth |
    /// lying-new-view | flood | replay | silent | none).
    #[arg(long, default_value = "equivocate")]
    replica_fault: String,
    /// Seed of the simulation, the data and the workers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Evict a worker silent for K rounds (bsp) or stuck K slow steps (ssp, asp; K >= 2).
    #[arg(long, value_name = "K")]
    evict_after: Option<u64>,
    /// One JSON object on the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Writes the loss per round of every replica as an SVG picture.
    #[arg(long, value_name = "FILE.svg")]
    report: Option<std::path::PathBuf>,
}

fn aggregator(name: &str, n: usize, f: usize) -> Result<Aggregator, String> {
    Ok(match name {
        "mean" => Aggregator::Mean,
        "median" => Aggregator::Median,
        // The smallest β that trims f on each side.
        "trimmed-mean" => Aggregator::TrimmedMean {
            beta: (f as f64 + 0.5) / n.max(1) as f64,
        },
        "krum" => Aggregator::Krum,
        "multi-krum" => Aggregator::MultiKrum {
            m: n.saturating_sub(f).max(1),
        },
        "bulyan" => Aggregator::Bulyan,
        "centered-clipping" => Aggregator::CenteredClipping {
            tau: 0.1,
            iterations: 5,
        },
        other => {
            return Err(format!(
                "unknown aggregator `{other}` (expected mean, median, trimmed-mean, krum, multi-krum, bulyan or centered-clipping)"
            ))
        }
    })
}

fn replicas(args: &Args) -> u64 {
    args.replicas
        .unwrap_or(if args.protocol == "pbft" { 4 } else { 3 })
}

fn replica_fault(name: &str) -> Result<Option<PbftBehaviour>, String> {
    Ok(Some(match name {
        "none" => return Ok(None),
        "equivocate" => PbftBehaviour::Equivocate,
        "wrong-digest" => PbftBehaviour::WrongDigest,
        "forged-auth" => PbftBehaviour::ForgedAuth,
        "lying-new-view" => PbftBehaviour::LyingNewView,
        "flood" => PbftBehaviour::Flood,
        "replay" => PbftBehaviour::Replay,
        "silent" => PbftBehaviour::Silent,
        other => {
            return Err(format!(
                "unknown --replica-fault `{other}` (expected equivocate, wrong-digest, \
                 forged-auth, lying-new-view, flood, replay, silent or none)"
            ))
        }
    }))
}

fn window(spec: Option<&str>) -> Result<(Round, Round), String> {
    let Some(s) = spec else {
        return Ok((Round(0), Round(u64::MAX)));
    };
    let parse = |x: &str| x.trim().parse::<u64>().map(Round);
    match s.split_once(':').map(|(a, b)| (parse(a), parse(b))) {
        Some((Ok(a), Ok(b))) if a < b => Ok((a, b)),
        _ => Err(format!(
            "bad --attack-window `{s}`: expected FROM:UNTIL with FROM < UNTIL"
        )),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("robust_training: {e}");
            ExitCode::from(2)
        }
    }
}

struct Outcome {
    lines: Vec<String>,
    final_loss: f64,
    final_distance: f64,
    replicas_identical: bool,
    replica_losses: BTreeMap<usize, Vec<(Round, f64)>>,
    trace_hash: u64,
    rounds: u64,
    extra: serde_json::Value,
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let ordering = match args.protocol.as_str() {
        "raft" => OrderingLayer::Raft,
        "pbft" => OrderingLayer::Pbft {
            byzantine: replica_fault(&args.replica_fault)?
                .map(|b| vec![(NodeId(1), b)])
                .unwrap_or_default(),
        },
        other => {
            return Err(format!(
                "unknown protocol `{other}` (expected raft or pbft)"
            ))
        }
    };
    let attack_window = window(args.attack_window.as_deref())?;
    let rule = aggregator(&args.aggregator, args.workers, args.byzantine)?;
    let outcome = match args.consistency {
        Consistency::Bsp => bsp(args, rule, attack_window, ordering)?,
        c => sync(args, rule, c, ordering)?,
    };
    for line in &outcome.lines {
        println!("{line}");
    }
    println!(
        "final loss {:.6}, distance to the true weights {:.4}, replicas identical: {}",
        outcome.final_loss, outcome.final_distance, outcome.replicas_identical
    );
    if let Some(path) = &args.report {
        let svg = svg(&outcome.replica_losses, outcome.rounds, attack_window, args);
        std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if args.json {
        let mut json = serde_json::json!({
            "aggregator": args.aggregator,
            "workers": args.workers,
            "byzantine": args.byzantine,
            "attack": args.attack.name(),
            "consistency": args.consistency.to_string(),
            "protocol": args.protocol,
            "seed": args.seed,
            "rounds": outcome.rounds,
            "final_loss": outcome.final_loss,
            "final_distance": outcome.final_distance,
            "replicas_identical": outcome.replicas_identical,
            "trace_hash": format!("{:016x}", outcome.trace_hash),
        });
        if let (Some(obj), serde_json::Value::Object(extra)) = (json.as_object_mut(), outcome.extra)
        {
            obj.extend(extra);
        }
        println!("{json}");
    }
    Ok(if outcome.replicas_identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bsp(
    args: &Args,
    rule: Aggregator,
    attack_window: (Round, Round),
    ordering: OrderingLayer,
) -> Result<Outcome, String> {
    let mut spec = TrainingSpec::new(args.seed, args.workers, args.byzantine, args.attack, rule);
    spec.rounds = args.rounds;
    spec.replicas = replicas(args);
    spec.ordering = ordering;
    spec.attack_window = attack_window;
    spec.evict_after = args.evict_after;
    let report = run_training(&spec).map_err(|e| e.to_string())?;
    let lines = report
        .rounds
        .iter()
        .map(|r| {
            format!(
                "round {:>3}  loss {:>12.6}  distance {:>10.4}  included {}  stale {}{}{}",
                r.summary.round.0,
                r.loss,
                r.distance,
                r.summary.included.len(),
                r.stale,
                if r.summary.evicted.is_empty() {
                    String::new()
                } else {
                    format!("  evicted {:?}", r.summary.evicted)
                },
                r.summary
                    .refused
                    .as_deref()
                    .map(|e| format!("  (no update: {e})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    Ok(Outcome {
        lines,
        final_loss: report.final_loss,
        final_distance: report.final_distance,
        replicas_identical: report.replicas_identical,
        replica_losses: report.replica_losses,
        trace_hash: report.trace_hash,
        rounds: args.rounds,
        extra: serde_json::json!({
            "initial_loss": report.initial_loss,
            "replicas": spec.replicas,
            "replica_fault": if args.protocol == "pbft" { args.replica_fault.as_str() } else { "none" },
            "replica_evidence": report.replica_evidence,
            "evicted": report
                .rounds
                .iter()
                .flat_map(|r| r.summary.evicted.iter().map(|w| w.0))
                .collect::<Vec<_>>(),
            "served_disagreements": report
                .served_disagreements
                .iter()
                .map(|(round, replica)| serde_json::json!({"round": round.0, "replica": replica.0}))
                .collect::<Vec<_>>(),
        }),
    })
}

fn sync(
    args: &Args,
    rule: Aggregator,
    consistency: Consistency,
    ordering: OrderingLayer,
) -> Result<Outcome, String> {
    if args.byzantine > args.workers {
        return Err(format!(
            "--byzantine {} is more than --workers {}",
            args.byzantine, args.workers
        ));
    }
    let honest = args.workers - args.byzantine;
    let mut spec = SyncSpec::new(args.seed, consistency);
    spec.replicas = replicas(args);
    spec.fast_workers = honest.div_ceil(2);
    spec.slow_workers = honest / 2;
    spec.steps = args.rounds;
    if args.attack == model_agreement::Attack::Silent {
        spec.silent = args.byzantine;
    } else {
        spec.byzantine = args.byzantine;
    }
    spec.aggregator = rule;
    spec.f = args.byzantine;
    spec.evict_after = args.evict_after.map(|k| spec.slow * k as u32);
    spec.ordering = ordering;
    let report = run_parameter_sync(&spec).map_err(|e| e.to_string())?;
    let every = honest.max(1);
    let lines = report
        .replica_losses
        .values()
        .next()
        .map(|first| {
            first
                .iter()
                .filter(|(v, _)| v.0 % every as u64 == 0)
                .map(|(v, l)| format!("version {:>4}  loss {:>12.6}", v.0, l))
                .collect()
        })
        .unwrap_or_default();
    Ok(Outcome {
        lines,
        final_loss: report.final_loss,
        final_distance: report.distance.1,
        replicas_identical: report.replicas_identical,
        rounds: report.applied,
        replica_losses: report.replica_losses.clone(),
        trace_hash: report.trace_hash,
        extra: serde_json::json!({
            "max_staleness": report.max_staleness(),
            "waits": report.waits,
            "refused_pushes": report.refused.len(),
            "buffered_pushes": report.buffered,
            "evicted": report.evicted.iter().map(|w| w.0).collect::<Vec<_>>(),
        }),
    })
}

/// Loss (log scale) per round, one line per replica incarnation, the attack
/// window shaded.
fn svg(
    losses: &BTreeMap<usize, Vec<(Round, f64)>>,
    rounds: u64,
    window: (Round, Round),
    args: &Args,
) -> String {
    let (w, h, left, right, top, bottom) = (800.0, 450.0, 70.0, 20.0, 40.0, 50.0);
    let all: Vec<f64> = losses
        .values()
        .flatten()
        .map(|&(_, l)| l)
        .filter(|l| l.is_finite() && *l > 0.0)
        .collect();
    let lo = all
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1e-12)
        .log10()
        .floor();
    let hi = all
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .max(1e-11)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x_max = rounds.max(1) as f64;
    let x = |r: f64| left + (w - left - right) * r / x_max;
    let y = |l: f64| {
        let v = if l.is_finite() && l > 0.0 {
            l.log10().clamp(lo, hi)
        } else {
            hi
        };
        top + (h - top - bottom) * (hi - v) / (hi - lo)
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"20\" font-size=\"14\">{} with {} of {} workers Byzantine ({}), {} replicas</text>\n",
        args.aggregator, args.byzantine, args.workers, args.attack.name(), replicas(args)
    );
    if args.byzantine > 0 {
        let (a, b) = (window.0 .0 as f64, (window.1 .0 as f64).min(x_max));
        s += &format!(
            "<rect x=\"{:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f4c7c3\" opacity=\"0.6\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#a33\">attack</text>\n",
            x(a),
            (x(b) - x(a)).max(0.0),
            h - top - bottom,
            x(a) + 4.0,
            top + 14.0
        );
    }
    let mut d = lo;
    while d <= hi {
        s += &format!(
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/><text x=\"5\" y=\"{:.1}\">1e{d}</text>\n",
            w - right,
            y(10f64.powf(d)),
            y(10f64.powf(d)),
            y(10f64.powf(d)) + 4.0
        );
        d += 1.0;
    }
    s += &format!(
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"black\"/>\
         <line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\">round</text><text x=\"{left}\" y=\"{:.1}\">0</text><text x=\"{:.1}\" y=\"{:.1}\">{rounds}</text>\n",
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        w / 2.0,
        h - 10.0,
        h - bottom + 15.0,
        w - right - 20.0,
        h - bottom + 15.0
    );
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
    ];
    for (i, (instance, points)) in losses.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|&(r, l)| format!("{:.1},{:.1}", x(r.0 as f64 + 1.0), y(l)))
            .collect();
        let color = colors[i % colors.len()];
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" opacity=\"0.8\" points=\"{}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">replica incarnation {instance}</text>\n",
            path.join(" "),
            w - right - 170.0,
            top + 16.0 * (i as f64 + 1.0)
        );
    }
    s + "</svg>\n"
}
