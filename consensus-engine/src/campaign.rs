//! Campaigns: one simulated run per seed over a range of seeds, in
//! parallel, with every failing seed listed with the command that replays
//! it.
//!
//! ```no_run
//! use consensus_engine::campaign::Campaign;
//! use consensus_engine::{Registry, SimulateOptions};
//! use consensus_actors::config::ConsensusConfig;
//!
//! let config = ConsensusConfig::default();
//! let driver = Registry::builtin().driver(&config.protocol).unwrap();
//! let report = Campaign::new(driver, config, SimulateOptions::default(), 1..=20)
//!     .jobs(2)
//!     .run();
//! assert!(report.passed_all(), "{:?}", report.failed);
//! ```

use crate::cli::replay_command;
use crate::error::EngineError;
use crate::registry::ProtocolDriver;
use crate::simulate::{SimulateOptions, SimulationReport};
use consensus_actors::config::ConsensusConfig;
use consensus_actors::history::Verdict;
use consensus_actors::types::ConsensusProtocol;
use serde::Serialize;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// A seed that failed: its verdicts, what broke and how to replay it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailedSeed {
    /// The seed.
    pub seed: u64,
    /// Whether every safety invariant held.
    pub safety_ok: bool,
    /// Whether the client history was found linearizable.
    pub linearizable: bool,
    /// What broke, one line each.
    pub violations: Vec<String>,
    /// The run's trace hash (the replay must print the same).
    pub trace_hash: String,
    /// The command that replays exactly this run.
    pub replay: String,
}

/// What a campaign found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignReport {
    /// The protocol run.
    pub protocol: ConsensusProtocol,
    /// Cluster size.
    pub nodes: usize,
    /// First seed.
    pub seeds_from: u64,
    /// Last seed (inclusive).
    pub seeds_to: u64,
    /// Runs made.
    pub runs: u64,
    /// The campaign was stopped (see [`Campaign::stop_when`]) before it
    /// ran every seed.
    pub stopped: bool,
    /// Runs that passed.
    pub passed: u64,
    /// Runs that failed, by seed.
    pub failed: Vec<FailedSeed>,
    /// Runs whose safety held but whose linearizability check ran out of a
    /// budget: not failures, not passes.
    pub undecided: Vec<FailedSeed>,
    /// Runs that could not be made, with the reason and the replay command.
    pub errors: Vec<String>,
    /// Operations committed over all runs.
    pub committed: u64,
    /// Membership changes over all runs (`--membership-changes`).
    pub membership_changes: u64,
    /// Wall-clock seconds the campaign took.
    pub real_secs: f64,
}

impl CampaignReport {
    /// Every run passed (and there was at least one).
    pub fn passed_all(&self) -> bool {
        self.runs > 0
            && self.failed.is_empty()
            && self.undecided.is_empty()
            && self.errors.is_empty()
    }
}

/// Progress callback: (runs done, runs in all, runs failed so far).
type Progress = Box<dyn Fn(u64, u64, u64) + Send + Sync>;

/// A campaign over a range of seeds. See the [module documentation](self).
pub struct Campaign {
    driver: Arc<dyn ProtocolDriver>,
    config: ConsensusConfig,
    options: SimulateOptions,
    seeds: RangeInclusive<u64>,
    jobs: usize,
    program: String,
    progress: Option<Progress>,
    stop: Option<Arc<AtomicBool>>,
}

impl Campaign {
    /// Runs `driver` on `config` with `options` once per seed of `seeds`
    /// (the options' own seed is replaced).
    pub fn new(
        driver: Arc<dyn ProtocolDriver>,
        config: ConsensusConfig,
        options: SimulateOptions,
        seeds: RangeInclusive<u64>,
    ) -> Self {
        Self {
            driver,
            config,
            options,
            seeds,
            jobs: 1,
            program: "consensus simulate".into(),
            progress: None,
            stop: None,
        }
    }

    /// Runs `jobs` seeds at a time, one thread each (at least 1).
    #[must_use]
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// What replay lines start with (default `consensus simulate`; a
    /// program of your own that takes the same flags, e.g.
    /// `cargo run --example custom_topology --`).
    #[must_use]
    pub fn replay_program(mut self, program: impl Into<String>) -> Self {
        self.program = program.into();
        self
    }

    /// Calls `progress(done, total, failed)` after every run.
    #[must_use]
    pub fn on_progress(mut self, progress: impl Fn(u64, u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Starts no new run once `stop` is set (e.g. by a Ctrl-C handler): the
    /// runs in flight (at most one per job) finish and [`run`](Self::run)
    /// reports the runs made, with [`CampaignReport::stopped`] set.
    #[must_use]
    pub fn stop_when(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Adds the outcome of `seed` to `report` (errors apart, to be sorted).
    fn fold(
        &self,
        report: &mut CampaignReport,
        errors: &mut Vec<(u64, String)>,
        seed: u64,
        result: Result<SimulationReport, EngineError>,
    ) {
        match result {
            Ok(r) => {
                report.committed += r.committed;
                report.membership_changes += r.membership_changes;
                if r.passed() {
                    report.passed += 1;
                } else {
                    let seed_report = FailedSeed {
                        seed,
                        safety_ok: r.safety_ok,
                        linearizable: r.linearizable,
                        violations: r
                            .violations
                            .iter()
                            .map(|v| format!("{} {}: {}", v.kind, v.name, v.detail))
                            .collect(),
                        trace_hash: r.trace_hash,
                        replay: self.replay(seed),
                    };
                    if r.safety_ok && r.linearizability == Verdict::Undecided {
                        report.undecided.push(seed_report);
                    } else {
                        report.failed.push(seed_report);
                    }
                }
            }
            Err(e) => errors.push((
                seed,
                format!("seed {seed}: {e} (replay: {})", self.replay(seed)),
            )),
        }
    }

    /// The command that replays `seed` of this campaign.
    pub fn replay(&self, seed: u64) -> String {
        let options = SimulateOptions {
            seed,
            ..self.options.clone()
        };
        replay_command(&self.program, &self.config, &options)
            .unwrap_or_else(|e| format!("(no replay command: {e})"))
    }

    /// Runs every seed (or until stopped) and reports. A range over all
    /// 2^64 seeds is counted exactly; the progress callback then sees
    /// `u64::MAX` as the total.
    pub fn run(&self) -> CampaignReport {
        let (from, to) = (*self.seeds.start(), *self.seeds.end());
        let began = Instant::now();
        // In u128: `0..=u64::MAX` holds 2^64 seeds.
        let total: u128 = if from > to {
            0
        } else {
            u128::from(to - from) + 1
        };
        let total_shown = u64::try_from(total).unwrap_or(u64::MAX);
        let claimed = AtomicU64::new(0);
        // A rendezvous: a worker hands its result over before it looks at
        // the stop flag again, so a stop set by the progress callback
        // lets at most one more run per worker start.
        let (tx, rx) = mpsc::sync_channel::<(u64, Result<SimulationReport, EngineError>)>(0);
        // Results are folded in as they come: memory follows the failures,
        // not the number of seeds run.
        let mut report = CampaignReport {
            protocol: self.config.protocol.clone(),
            nodes: self.config.cluster_size,
            seeds_from: from,
            seeds_to: to,
            runs: 0,
            stopped: false,
            passed: 0,
            failed: Vec::new(),
            undecided: Vec::new(),
            errors: Vec::new(),
            committed: 0,
            membership_changes: 0,
            real_secs: 0.0,
        };
        let mut errors: Vec<(u64, String)> = Vec::new();
        let workers = usize::try_from(total).map_or(self.jobs, |t| self.jobs.min(t));
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let claimed = &claimed;
                scope.spawn(move || loop {
                    if self.stopped() {
                        break;
                    }
                    // Count claims rather than compare seeds, so a range
                    // ending at u64::MAX ends too (and never wraps).
                    let claim = claimed.fetch_add(1, Ordering::SeqCst);
                    if u128::from(claim) >= total {
                        break;
                    }
                    // claim < total = to - from + 1, so this cannot overflow.
                    let seed = from + claim;
                    let options = SimulateOptions {
                        seed,
                        ..self.options.clone()
                    };
                    let result = self
                        .driver
                        .simulate(&self.config, &options)
                        .map(|run| run.report);
                    if tx.send((seed, result)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            for (seed, result) in rx {
                report.runs += 1;
                self.fold(&mut report, &mut errors, seed, result);
                if let Some(progress) = &self.progress {
                    let failed = (report.failed.len() + errors.len()) as u64;
                    progress(report.runs, total_shown, failed);
                }
            }
        });
        report.failed.sort_by_key(|f| f.seed);
        report.undecided.sort_by_key(|f| f.seed);
        errors.sort_by_key(|(seed, _)| *seed);
        report.errors = errors.into_iter().map(|(_, e)| e).collect();
        report.stopped = self.stopped() && u128::from(report.runs) < total;
        report.real_secs = began.elapsed().as_secs_f64();
        report
    }
}
