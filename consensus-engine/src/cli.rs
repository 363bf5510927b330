//! The flags of the `consensus` program that shape a cluster and a
//! simulated run, as a library: the program parses them with these types,
//! and a campaign renders the replay command of a seed back into them
//! ([`replay_args`]), so the replay line and the flags cannot drift apart
//! (a round-trip test parses every rendered command back and compares).

use crate::faults::FaultSelection;
use crate::simulate::SimulateOptions;
use crate::workload::{OpMix, WorkloadOptions};
use clap::Args;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::types::ConsensusProtocol;
use std::path::PathBuf;
use std::time::Duration;

/// Settings shared by `simulate` and `bench` that shape the cluster.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct ClusterArgs {
    /// Start from this configuration file (TOML or JSON ConsensusConfig); other flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Election timeout range in milliseconds, MIN..MAX (default 150..300).
    #[arg(long, value_name = "MIN..MAX", value_parser = parse_range)]
    pub election_timeout_ms: Option<(u64, u64)>,
    /// Heartbeat interval in milliseconds (default 50; must be below the minimum election timeout).
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Most log entries carried by one AppendEntries (default 100).
    #[arg(long, value_name = "N")]
    pub max_append_entries: Option<usize>,
    /// Entries applied since the last snapshot that trigger a new one (default 10000).
    #[arg(long, value_name = "N")]
    pub snapshot_threshold: Option<u64>,
    /// Byzantine replicas to tolerate (only protocols that tolerate them; needs nodes >= 3F+1).
    #[arg(long, value_name = "F")]
    pub byzantine: Option<usize>,
}

/// The flags of `consensus simulate` that shape one run (the cluster, the
/// workload, the faults, the check); the program adds its output flags.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct RunArgs {
    /// Protocol to run, by the name it is registered under (`consensus protocols` lists them).
    #[arg(long, default_value = "raft", value_name = "P")]
    pub protocol: ConsensusProtocol,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub nodes: usize,
    /// Seed of every random choice (same seed, same build: same run and trace hash).
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Virtual seconds the workload and the faults run for (fractions allowed).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub duration: f64,
    /// Concurrent clients, each with one operation in flight.
    #[arg(long, default_value_t = 5, value_name = "C")]
    pub clients: usize,
    /// Faults to inject: none, all, or a comma-separated list of crash, partition, loss, dup,
    /// reorder, panic, disk (failed syncs; not part of all).
    #[arg(long, default_value = "all", value_name = "LIST")]
    pub faults: FaultSelection,
    /// Distinct keys the clients read and write.
    #[arg(long, default_value_t = 8, value_name = "K")]
    pub keys: usize,
    /// Target operations per virtual second for the whole workload (default: each client goes
    /// again --think-time-ms after its previous answer).
    #[arg(long, value_name = "OPS")]
    pub rate: Option<f64>,
    /// Milliseconds a client waits after an answer before its next operation (without --rate).
    #[arg(long, default_value_t = 10, value_name = "MS")]
    pub think_time_ms: u64,
    /// Relative weights of reads, writes, compare-and-swaps and deletes.
    #[arg(long, default_value = "40,35,20,5", value_name = "GET,PUT,CAS,DELETE", value_parser = parse_mix)]
    pub mix: OpMix,
    /// Milliseconds a client waits for an answer before recording the outcome as unknown.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub request_timeout_ms: u64,
    /// Search budget of the linearizability check per key (0: unlimited); when it runs out
    /// the verdict is undecided (exit 3).
    #[arg(long, default_value_t = consensus_actors::history::DEFAULT_MAX_STEPS_PER_KEY, value_name = "N")]
    pub max_check_steps: u64,
    /// Memory budget of the linearizability check per key, in MiB (0: unlimited); when it
    /// runs out the verdict is undecided (exit 3).
    #[arg(long, default_value_t = DEFAULT_MAX_MEMORY_MIB, value_name = "MIB")]
    pub max_check_memory: u64,
    /// The cluster's settings.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The default memory budget of the linearizability check, in MiB: the
/// library's [`consensus_actors::history::DEFAULT_MAX_MEMORY_BYTES`].
pub const DEFAULT_MAX_MEMORY_MIB: u64 = consensus_actors::history::DEFAULT_MAX_MEMORY_BYTES >> 20;

/// `mib` mebibytes as bytes, 0 meaning unlimited.
pub fn memory_budget(mib: u64) -> Option<u64> {
    (mib > 0).then(|| mib.saturating_mul(1 << 20))
}

/// `A..B` or `A..=B` (both inclusive), e.g. `150..300`.
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..=")
        .or_else(|| s.split_once(".."))
        .ok_or_else(|| format!("{s:?} is not a range A..B"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a whole number"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a whole number"))?;
    if a > b {
        return Err(format!("range {a}..{b} is empty"));
    }
    Ok((a, b))
}

/// `GET,PUT,CAS,DELETE` weights, e.g. `4,4,1,1`.
pub fn parse_mix(s: &str) -> Result<OpMix, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [get, put, cas, delete] = parts.as_slice() else {
        return Err(format!("{s:?} is not four weights GET,PUT,CAS,DELETE"));
    };
    let weight = |w: &str| {
        w.parse::<u32>()
            .map_err(|_| format!("{w:?} is not a whole number (in --mix {s:?})"))
    };
    Ok(OpMix {
        get: weight(get)?,
        put: weight(put)?,
        cas: weight(cas)?,
        delete: weight(delete)?,
    })
}

/// The cluster configuration of a run: the file (if any), the protocol and
/// size, then the flags; validated.
pub fn build_config(
    protocol: ConsensusProtocol,
    nodes: usize,
    args: &ClusterArgs,
) -> Result<ConsensusConfig, String> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let parsed = if path.extension().is_some_and(|e| e == "json") {
                ConsensusConfig::from_json_str(&text)
            } else {
                ConsensusConfig::from_toml_str(&text)
            };
            let mut c = parsed.map_err(|e| format!("{}: {e}", path.display()))?;
            c.protocol = protocol;
            c.cluster_size = nodes;
            c
        }
        None => ConsensusConfig::for_protocol(protocol, nodes),
    };
    if let Some(range) = args.election_timeout_ms {
        config.election_timeout_ms = range;
    }
    if let Some(hb) = args.heartbeat_ms {
        config.heartbeat_interval_ms = hb;
    }
    if let Some(n) = args.max_append_entries {
        config.max_log_entries_per_append = n;
    }
    if let Some(n) = args.snapshot_threshold {
        config.snapshot_threshold = n;
    }
    if let Some(f) = args.byzantine {
        config.byzantine_tolerance = true;
        config.max_byzantine_nodes = f;
    }
    config
        .validate()
        .map_err(|e| format!("invalid configuration: {e}"))?;
    Ok(config)
}

impl RunArgs {
    /// The cluster configuration these flags describe (validated).
    pub fn config(&self) -> Result<ConsensusConfig, String> {
        build_config(self.protocol.clone(), self.nodes, &self.cluster)
    }

    /// The run options these flags describe, for `seed`.
    pub fn options(&self, seed: u64) -> Result<SimulateOptions, String> {
        if !(self.duration.is_finite() && self.duration > 0.0) {
            return Err(format!(
                "--duration must be a positive number of seconds, got {}",
                self.duration
            ));
        }
        if self.duration > 7.0 * 24.0 * 3600.0 {
            return Err("--duration longer than a week of virtual time is not supported".into());
        }
        if self.request_timeout_ms == 0 {
            return Err("--request-timeout-ms must be at least 1".into());
        }
        let options = SimulateOptions {
            seed,
            duration: Duration::from_secs_f64(self.duration),
            workload: WorkloadOptions {
                clients: self.clients,
                keys: self.keys,
                rate: self.rate,
                think_time: Duration::from_millis(self.think_time_ms),
                request_timeout: Duration::from_millis(self.request_timeout_ms),
                mix: self.mix,
            },
            faults: self.faults.clone(),
            keep_trace: 0,
            max_check_steps: (self.max_check_steps > 0).then_some(self.max_check_steps),
            max_check_memory_bytes: memory_budget(self.max_check_memory),
        };
        options.workload.validate()?;
        Ok(options)
    }
}

/// Why a run cannot be replayed from the command line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this run cannot be replayed with `consensus simulate` flags: {0}")]
pub struct NotReplayable(pub String);

fn whole_ms(what: &str, d: Duration) -> Result<u128, NotReplayable> {
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(NotReplayable(format!(
            "{what} {d:?} is not a whole number of milliseconds"
        )));
    }
    Ok(d.as_millis())
}

fn check_memory_mib(bytes: Option<u64>) -> Result<u64, NotReplayable> {
    match bytes {
        None => Ok(0),
        Some(b) if b > 0 && b % (1 << 20) == 0 => Ok(b >> 20),
        Some(b) => Err(NotReplayable(format!(
            "the check's memory budget {b} bytes is not a whole number of MiB"
        ))),
    }
}

/// The `consensus simulate` flags that run `config` with `options` again:
/// every setting of both is rendered (defaults included), so nothing that
/// shaped the run is left out. The options' `keep_trace` (what is written
/// out, not what runs) is not a flag.
pub fn replay_args(
    config: &ConsensusConfig,
    options: &SimulateOptions,
) -> Result<Vec<String>, NotReplayable> {
    let w = &options.workload;
    let mut args: Vec<String> = vec![
        "--protocol".into(),
        config.protocol.to_string(),
        "--nodes".into(),
        config.cluster_size.to_string(),
        "--seed".into(),
        options.seed.to_string(),
        "--duration".into(),
        options.duration.as_secs_f64().to_string(),
        "--clients".into(),
        w.clients.to_string(),
        "--keys".into(),
        w.keys.to_string(),
    ];
    if Duration::from_secs_f64(options.duration.as_secs_f64()) != options.duration {
        return Err(NotReplayable(format!(
            "duration {:?} has no exact decimal form",
            options.duration
        )));
    }
    if let Some(rate) = w.rate {
        args.extend(["--rate".into(), rate.to_string()]);
    }
    args.extend([
        "--think-time-ms".into(),
        whole_ms("think time", w.think_time)?.to_string(),
        "--mix".into(),
        format!("{},{},{},{}", w.mix.get, w.mix.put, w.mix.cas, w.mix.delete),
        "--request-timeout-ms".into(),
        whole_ms("request timeout", w.request_timeout)?.to_string(),
        "--faults".into(),
        options.faults.to_string(),
        "--max-check-steps".into(),
        options.max_check_steps.unwrap_or(0).to_string(),
        "--max-check-memory".into(),
        check_memory_mib(options.max_check_memory_bytes)?.to_string(),
        "--election-timeout-ms".into(),
        format!(
            "{}..{}",
            config.election_timeout_ms.0, config.election_timeout_ms.1
        ),
        "--heartbeat-ms".into(),
        config.heartbeat_interval_ms.to_string(),
        "--max-append-entries".into(),
        config.max_log_entries_per_append.to_string(),
        "--snapshot-threshold".into(),
        config.snapshot_threshold.to_string(),
    ]);
    if config.byzantine_tolerance {
        args.extend(["--byzantine".into(), config.max_byzantine_nodes.to_string()]);
    }
    Ok(args)
}

/// [`replay_args`] as one shell line starting with `program` (e.g.
/// `consensus simulate`).
pub fn replay_command(
    program: &str,
    config: &ConsensusConfig,
    options: &SimulateOptions,
) -> Result<String, NotReplayable> {
    let mut line = program.to_string();
    for arg in replay_args(config, options)? {
        line.push(' ');
        line.push_str(&arg);
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::Fault;
    use clap::Parser;
    use proptest::prelude::*;

    #[derive(Parser, Debug)]
    struct Cmd {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[String]) -> RunArgs {
        let argv = std::iter::once("simulate".to_string()).chain(args.iter().cloned());
        Cmd::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"))
            .run
    }

    /// The replay of the defaults is the defaults.
    #[test]
    fn the_default_run_replays_to_itself() {
        let run = parse(&[]);
        let (config, options) = (run.config().unwrap(), run.options(1).unwrap());
        let back = parse(&replay_args(&config, &options).unwrap());
        assert_eq!(back.config().unwrap(), config);
        assert_eq!(back.options(1).unwrap(), options);
    }

    #[test]
    fn sub_millisecond_timeouts_are_not_replayable() {
        let run = parse(&[]);
        let config = run.config().unwrap();
        let mut options = run.options(1).unwrap();
        options.workload.request_timeout = Duration::from_micros(1500);
        assert!(replay_args(&config, &options).is_err());
    }

    fn fault_lists() -> impl Strategy<Value = FaultSelection> {
        prop_oneof![
            Just(FaultSelection::None),
            Just(FaultSelection::All),
            proptest::sample::subsequence(
                vec![
                    Fault::Crash,
                    Fault::Partition,
                    Fault::Loss,
                    Fault::Dup,
                    Fault::Reorder,
                    Fault::Panic,
                    Fault::Disk
                ],
                1..=7
            )
            .prop_map(FaultSelection::Only),
        ]
    }

    proptest! {
        /// Every setting a run can have survives rendering into replay
        /// flags and parsing them back: the replay line cannot drift from
        /// the flags.
        #[test]
        fn every_run_replays_to_itself(
            nodes in 1usize..8,
            seed in any::<u64>(),
            duration_ms in 1u64..100_000,
            clients in 1usize..50,
            keys in 1usize..20,
            rate in proptest::option::of(1u32..5000),
            think in 0u64..100,
            mix in (0u32..5, 1u32..5, 0u32..5, 0u32..5),
            timeout in 1u64..5000,
            faults in fault_lists(),
            steps in 0u64..1_000_000,
            memory_mib in 0u64..4096,
            election in (100u64..300, 0u64..300),
            heartbeat in 1u64..100,
            batch in 1usize..500,
            snapshot in 1u64..100_000,
            byzantine in proptest::option::of(0usize..3),
        ) {
            let mut argv: Vec<String> = Vec::new();
            let mut push = |flag: &str, value: String| {
                argv.push(flag.into());
                argv.push(value);
            };
            push("--nodes", (nodes + 3 * byzantine.unwrap_or(0)).to_string());
            push("--seed", seed.to_string());
            push("--duration", (duration_ms as f64 / 1000.0).to_string());
            push("--clients", clients.to_string());
            push("--keys", keys.to_string());
            if let Some(r) = rate {
                push("--rate", (f64::from(r) / 7.0).to_string());
            }
            push("--think-time-ms", think.to_string());
            push("--mix", format!("{},{},{},{}", mix.0, mix.1, mix.2, mix.3));
            push("--request-timeout-ms", timeout.to_string());
            push("--faults", faults.to_string());
            push("--max-check-steps", steps.to_string());
            push("--max-check-memory", memory_mib.to_string());
            push("--election-timeout-ms", format!("{}..{}", election.0, election.0 + election.1));
            push("--heartbeat-ms", heartbeat.min(election.0 - 1).to_string());
            push("--max-append-entries", batch.to_string());
            push("--snapshot-threshold", snapshot.to_string());
            if let Some(f) = byzantine {
                push("--byzantine", f.to_string());
            }
            let run = parse(&argv);
            let config = run.config().unwrap();
            let options = run.options(seed).unwrap();
            let replayed = parse(&replay_args(&config, &options).unwrap());
            prop_assert_eq!(replayed.config().unwrap(), config);
            prop_assert_eq!(replayed.options(seed).unwrap(), options);
        }
    }
}
