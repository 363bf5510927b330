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

/// Most nodes of a cluster `simulate` runs (`--nodes`, or a configuration
/// file's `cluster_size`).
pub const MAX_NODES: usize = 128;
/// Most nodes of a cluster `bench` runs: every node runs on the real clock
/// on one thread, and beyond this size the heartbeats alone outrun it.
pub const MAX_BENCH_NODES: usize = 64;
/// Most concurrent clients of a run.
pub const MAX_CLIENTS: usize = 10_000;
/// Most distinct keys of a workload (memory grows with the keys used, not
/// with this bound).
pub const MAX_KEYS: usize = 1_000_000;
/// Longest virtual run, in seconds (a week).
pub const MAX_DURATION_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// Shortest virtual run, in seconds (one millisecond).
pub const MIN_DURATION_SECS: f64 = 0.001;
/// Slowest `--rate`, in operations per virtual second.
pub const MIN_RATE: f64 = 0.000_001;
/// Fastest `--rate` per client: the timers have a resolution of one
/// millisecond, so one client starts at most 1000 operations a second.
pub const MAX_RATE_PER_CLIENT: f64 = 1000.0;
/// Longest millisecond setting (think time, timeouts): one hour.
pub const MAX_MS: u64 = 3_600_000;
/// Largest weight of one operation in `--mix`.
pub const MAX_MIX_WEIGHT: u32 = 1_000_000;
/// Largest `--max-append-entries`.
pub const MAX_BATCH: usize = 1_000_000;
/// Largest `--snapshot-threshold`.
pub const MAX_SNAPSHOT_THRESHOLD: u64 = 1_000_000_000_000;
/// Characters of user input an error message echoes at most.
pub const EXCERPT_CHARS: usize = 60;

/// At most [`EXCERPT_CHARS`] characters of `input` for an error message:
/// the start, then `...` and the full length when it is longer.
pub fn excerpt(input: &str) -> String {
    let count = input.chars().count();
    if count <= EXCERPT_CHARS {
        return input.to_string();
    }
    let head: String = input.chars().take(EXCERPT_CHARS).collect();
    format!("{head}... ({count} characters)")
}

/// `message` on one line (line breaks become `; `), cut to at most `max`
/// characters: what the program prints when it refuses something.
pub fn one_line(message: &str, max: usize) -> String {
    let joined = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if joined.chars().count() <= max {
        return joined;
    }
    let head: String = joined.chars().take(max.saturating_sub(3)).collect();
    format!("{head}...")
}

/// A whole number in `lo..=hi` (the range is named when it is not).
pub fn whole_in(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number in {lo}..={hi}")),
    }
}

/// [`whole_in`] as a `usize`.
pub fn count_in(s: &str, lo: usize, hi: usize) -> Result<usize, String> {
    let n = whole_in(s, lo as u64, hi as u64)?;
    usize::try_from(n).map_err(|_| format!("expected a whole number in {lo}..={hi}"))
}

/// A finite number in `lo..=hi` (fractions allowed).
pub fn number_in(s: &str, lo: f64, hi: f64) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= lo && x <= hi => Ok(x),
        _ => Err(format!("expected a number in {lo}..={hi}")),
    }
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    count_in(s, 1, MAX_NODES)
}
fn parse_seed(s: &str) -> Result<u64, String> {
    whole_in(s, 0, u64::MAX)
}
fn parse_duration(s: &str) -> Result<f64, String> {
    number_in(s, MIN_DURATION_SECS, MAX_DURATION_SECS)
}
fn parse_clients(s: &str) -> Result<usize, String> {
    count_in(s, 1, MAX_CLIENTS)
}
fn parse_keys(s: &str) -> Result<usize, String> {
    count_in(s, 1, MAX_KEYS)
}
fn parse_rate(s: &str) -> Result<f64, String> {
    number_in(s, MIN_RATE, MAX_RATE_PER_CLIENT * MAX_CLIENTS as f64)
}
fn parse_ms0(s: &str) -> Result<u64, String> {
    whole_in(s, 0, MAX_MS)
}
fn parse_ms1(s: &str) -> Result<u64, String> {
    whole_in(s, 1, MAX_MS)
}
fn parse_steps(s: &str) -> Result<u64, String> {
    whole_in(s, 0, u64::MAX)
}
/// The largest memory budget of the check, in MiB (1 PiB).
pub const MAX_CHECK_MEMORY_MIB: u64 = 1 << 30;
fn parse_check_memory(s: &str) -> Result<u64, String> {
    whole_in(s, 0, MAX_CHECK_MEMORY_MIB)
}
fn parse_election(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = parse_range(s)?;
    if a == 0 || b > MAX_MS {
        return Err(format!(
            "expected a range MIN..MAX of milliseconds within 1..={MAX_MS}"
        ));
    }
    Ok((a, b))
}
fn parse_heartbeat(s: &str) -> Result<u64, String> {
    whole_in(s, 1, MAX_MS - 1)
}
fn parse_batch(s: &str) -> Result<usize, String> {
    count_in(s, 1, MAX_BATCH)
}
fn parse_snapshot(s: &str) -> Result<u64, String> {
    whole_in(s, 1, MAX_SNAPSHOT_THRESHOLD)
}
fn parse_byzantine(s: &str) -> Result<usize, String> {
    count_in(s, 0, (MAX_NODES - 1) / 3)
}

/// Settings shared by `simulate` and `bench` that shape the cluster.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct ClusterArgs {
    /// Start from this configuration file (TOML, or JSON when it ends in .json; a
    /// ConsensusConfig); flags given on the command line override it, it overrides the defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Election timeout range in milliseconds, MIN..MAX, within 1..=3600000 (default 150..300).
    #[arg(long, value_name = "MIN..MAX", value_parser = parse_election, allow_hyphen_values = true)]
    pub election_timeout_ms: Option<(u64, u64)>,
    /// Heartbeat interval in milliseconds, 1..=3599999 and below the minimum election timeout
    /// (default 50).
    #[arg(long, value_name = "MS", value_parser = parse_heartbeat, allow_hyphen_values = true)]
    pub heartbeat_ms: Option<u64>,
    /// Most log entries carried by one AppendEntries, 1..=1000000 (default 100).
    #[arg(long, value_name = "N", value_parser = parse_batch, allow_hyphen_values = true)]
    pub max_append_entries: Option<usize>,
    /// Entries applied since the last snapshot that trigger a new one, 1..=10^12 (default 10000).
    #[arg(long, value_name = "N", value_parser = parse_snapshot, allow_hyphen_values = true)]
    pub snapshot_threshold: Option<u64>,
    /// Byzantine replicas to tolerate, 0..=42 (only protocols that tolerate them; needs
    /// nodes >= 3F+1).
    #[arg(long, value_name = "F", value_parser = parse_byzantine, allow_hyphen_values = true)]
    pub byzantine: Option<usize>,
}

/// Nodes of a `bench` cluster, 1..=[`MAX_BENCH_NODES`]: the parser of
/// `bench --nodes`.
pub fn bench_nodes(s: &str) -> Result<usize, String> {
    count_in(s, 1, MAX_BENCH_NODES)
}

/// The flags of `consensus simulate` that shape one run (the cluster, the
/// workload, the faults, the check); the program adds its output flags.
/// Every numeric flag has a range, given in its help; a value outside it
/// is refused while parsing.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct RunArgs {
    /// Protocol to run, by the name it is registered under (`consensus protocols` lists them;
    /// default raft, or the configuration file's protocol).
    #[arg(long, value_name = "P")]
    pub protocol: Option<ConsensusProtocol>,
    /// Nodes in the cluster, 1..=128 (default 5, or the configuration file's cluster_size).
    #[arg(long, value_name = "N", value_parser = parse_nodes, allow_hyphen_values = true)]
    pub nodes: Option<usize>,
    /// Seed of every random choice, 0..=18446744073709551615 (same seed, same build: same run
    /// and trace hash).
    #[arg(long, default_value_t = 1, value_name = "S", value_parser = parse_seed, allow_hyphen_values = true)]
    pub seed: u64,
    /// Virtual seconds the workload and the faults run for, 0.001..=604800 (fractions allowed).
    #[arg(long, default_value_t = 60.0, value_name = "SECS", value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: f64,
    /// Concurrent clients, each with one operation in flight, 1..=10000.
    #[arg(long, default_value_t = 5, value_name = "C", value_parser = parse_clients, allow_hyphen_values = true)]
    pub clients: usize,
    /// Faults to inject: none, all, or a comma-separated list of crash, partition, loss, dup,
    /// reorder, panic, disk (failed syncs), quorum-loss, constrained, chained (OmniPaxos'
    /// partial-connectivity scenarios, each held 5 s), byzantine (--byzantine F replicas,
    /// with behaviours drawn from the seed; PBFT); the last five are not part of all, and
    /// `all,byzantine` (say) adds them to it.
    #[arg(long, default_value = "all", value_name = "LIST")]
    pub faults: FaultSelection,
    /// Distinct keys the clients read and write, 1..=1000000.
    #[arg(long, default_value_t = 8, value_name = "K", value_parser = parse_keys, allow_hyphen_values = true)]
    pub keys: usize,
    /// Target operations per virtual second for the whole workload, 0.000001..=1000 x clients
    /// (default: each client goes again --think-time-ms after its previous answer).
    #[arg(long, value_name = "OPS", value_parser = parse_rate, allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Milliseconds a client waits after an answer before its next operation (without --rate),
    /// 0..=3600000.
    #[arg(long, default_value_t = 10, value_name = "MS", value_parser = parse_ms0, allow_hyphen_values = true)]
    pub think_time_ms: u64,
    /// Relative weights of reads, writes, compare-and-swaps and deletes, each 0..=1000000, not
    /// all 0.
    #[arg(long, default_value = "40,35,20,5", value_name = "GET,PUT,CAS,DELETE", value_parser = parse_mix, allow_hyphen_values = true)]
    pub mix: OpMix,
    /// Milliseconds a client waits for an answer before recording the outcome as unknown,
    /// 1..=3600000.
    #[arg(long, default_value_t = 1000, value_name = "MS", value_parser = parse_ms1, allow_hyphen_values = true)]
    pub request_timeout_ms: u64,
    /// Search budget of the linearizability check per key, 0..=18446744073709551615
    /// (0: unlimited); when it runs out the verdict is undecided (exit 3).
    #[arg(long, default_value_t = consensus_actors::history::DEFAULT_MAX_STEPS_PER_KEY, value_name = "N", value_parser = parse_steps, allow_hyphen_values = true)]
    pub max_check_steps: u64,
    /// Memory budget of the linearizability check per key, in MiB, 0..=1073741824
    /// (0: unlimited); when it runs out the verdict is undecided (exit 3).
    #[arg(long, default_value_t = DEFAULT_MAX_MEMORY_MIB, value_name = "MIB", value_parser = parse_check_memory, allow_hyphen_values = true)]
    pub max_check_memory: u64,
    /// Change the membership during the run: a spare node N+1 starts with
    /// the cluster, is added through the leader, then a random node of
    /// 1..=N is removed, under the faults (protocols that cannot change
    /// their membership refuse the flag).
    #[arg(long)]
    pub membership_changes: bool,
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
        .ok_or_else(|| "expected a range A..B of whole numbers".to_string())?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a whole number in 0..={}", excerpt(a), u64::MAX))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a whole number in 0..={}", excerpt(b), u64::MAX))?;
    if a > b {
        return Err(format!("range {a}..{b} is empty"));
    }
    Ok((a, b))
}

/// The seeds of a campaign: `A..B` (both inclusive), or `A..` for every
/// seed from `A` on (until interrupted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedRange {
    /// First seed.
    pub from: u64,
    /// Last seed (inclusive); `None`: open-ended.
    pub to: Option<u64>,
}

impl SeedRange {
    /// The seeds as an inclusive range (open-ended: up to `u64::MAX`).
    pub fn inclusive(&self) -> std::ops::RangeInclusive<u64> {
        self.from..=self.to.unwrap_or(u64::MAX)
    }
}

impl std::fmt::Display for SeedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to {
            Some(to) => write!(f, "{}..{to}", self.from),
            None => write!(f, "{}..", self.from),
        }
    }
}

/// `A..B`, `A..=B` or `A..` (every seed from `A` on).
pub fn parse_seeds(s: &str) -> Result<SeedRange, String> {
    let t = s.trim();
    if let Some(from) = t.strip_suffix("..") {
        if !from.contains("..") {
            let from = whole_in(from, 0, u64::MAX)
                .map_err(|_| format!("expected A..B or A.. with A, B in 0..={}", u64::MAX))?;
            return Ok(SeedRange { from, to: None });
        }
    }
    let (from, to) = parse_range(t)?;
    Ok(SeedRange { from, to: Some(to) })
}

/// `GET,PUT,CAS,DELETE` weights, e.g. `4,4,1,1`, each in
/// 0..=[`MAX_MIX_WEIGHT`].
pub fn parse_mix(s: &str) -> Result<OpMix, String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [get, put, cas, delete] = parts.as_slice() else {
        return Err(format!(
            "expected four weights GET,PUT,CAS,DELETE, each in 0..={MAX_MIX_WEIGHT}"
        ));
    };
    let weight = |w: &str| {
        whole_in(w, 0, u64::from(MAX_MIX_WEIGHT))
            .map(|w| w as u32)
            .map_err(|_| {
                format!(
                    "{:?} is not a weight in 0..={MAX_MIX_WEIGHT} (--mix GET,PUT,CAS,DELETE)",
                    excerpt(w)
                )
            })
    };
    Ok(OpMix {
        get: weight(get)?,
        put: weight(put)?,
        cas: weight(cas)?,
        delete: weight(delete)?,
    })
}

/// The cluster configuration of a run: the defaults, then the file (if
/// any), then the flags given on the command line (`protocol` and `nodes`
/// are `None` when not given); validated.
pub fn build_config(
    protocol: Option<ConsensusProtocol>,
    nodes: Option<usize>,
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
            parsed.map_err(|e| format!("{}: {}", path.display(), one_line(&e.to_string(), 160)))?
        }
        None => ConsensusConfig::default(),
    };
    if let Some(protocol) = protocol {
        config.protocol = protocol;
    }
    if let Some(nodes) = nodes {
        config.cluster_size = nodes;
    }
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
    /// The cluster configuration these flags describe (validated; at most
    /// [`MAX_NODES`] nodes, whether from `--nodes` or the file).
    pub fn config(&self) -> Result<ConsensusConfig, String> {
        let config = build_config(self.protocol.clone(), self.nodes, &self.cluster)?;
        if config.cluster_size > MAX_NODES {
            return Err(format!(
                "cluster_size {} (from --config) is out of range 1..={MAX_NODES}",
                config.cluster_size
            ));
        }
        Ok(config)
    }

    /// The run options these flags describe, for `seed`.
    pub fn options(&self, seed: u64) -> Result<SimulateOptions, String> {
        if !(self.duration.is_finite()
            && (MIN_DURATION_SECS..=MAX_DURATION_SECS).contains(&self.duration))
        {
            return Err(format!(
                "--duration {} is out of range {MIN_DURATION_SECS}..={MAX_DURATION_SECS} seconds",
                self.duration
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err("--request-timeout-ms must be at least 1".into());
        }
        if self.clients == 0 {
            return Err(format!("--clients 0 is out of range 1..={MAX_CLIENTS}"));
        }
        if let Some(rate) = self.rate {
            let max = MAX_RATE_PER_CLIENT * self.clients as f64;
            if !(rate.is_finite() && (MIN_RATE..=max).contains(&rate)) {
                return Err(format!(
                    "--rate {rate} is out of range {MIN_RATE}..={max} for {} clients \
                     (each client starts at most {MAX_RATE_PER_CLIENT} operations a second)",
                    self.clients
                ));
            }
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
            membership_changes: self.membership_changes,
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
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
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
    if options.membership_changes {
        args.push("--membership-changes".into());
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

    /// Seed ranges: closed (both ends inclusive), open-ended, and refusals
    /// that name the range without echoing long input.
    #[test]
    fn seed_ranges_parse_and_refuse() {
        let closed = parse_seeds("3..7").unwrap();
        assert_eq!((closed.from, closed.to), (3, Some(7)));
        assert_eq!(closed.inclusive(), 3..=7);
        assert_eq!(parse_seeds("3..=7").unwrap(), closed);
        let open = parse_seeds("5..").unwrap();
        assert_eq!((open.from, open.to), (5, None));
        assert_eq!(open.inclusive(), 5..=u64::MAX);
        assert_eq!(open.to_string(), "5..");
        let max = u64::MAX.to_string();
        let last = parse_seeds(&format!("{max}..{max}")).unwrap();
        assert_eq!(last.inclusive(), u64::MAX..=u64::MAX);
        for bad in ["", "..", "5", "7..3", "-1..4", "a..", "1..2..3"] {
            assert!(parse_seeds(bad).is_err(), "{bad:?}");
        }
        let long = "9".repeat(10_000);
        let e = parse_seeds(&format!("1..{long}")).unwrap_err();
        assert!(e.len() < 200, "{e}");
    }

    /// Numbers outside their range, fractions, words and non-finite
    /// numbers are refused, naming the range.
    #[test]
    fn numbers_are_checked_against_their_range() {
        assert_eq!(whole_in("7", 1, 10), Ok(7));
        for bad in ["0", "11", "-1", "0.5", "abc", "", "99999999999999999999999"] {
            let e = whole_in(bad, 1, 10).unwrap_err();
            assert!(e.contains("1..=10"), "{bad:?}: {e}");
        }
        assert_eq!(number_in("0.5", 0.001, 1.0), Ok(0.5));
        for bad in ["0", "2", "NaN", "inf", "-inf", "x"] {
            assert!(number_in(bad, 0.001, 1.0).is_err(), "{bad:?}");
        }
        assert!(parse_mix("1,1,1,1000001").is_err());
        assert!(parse_election("0..10").is_err());
        assert!(parse_election("10..3600001").is_err());
    }

    /// Long input is shown as an excerpt, messages on one line.
    #[test]
    fn excerpts_and_one_line_messages() {
        assert_eq!(excerpt("short"), "short");
        let e = excerpt(&"x".repeat(1000));
        assert!(e.starts_with(&"x".repeat(EXCERPT_CHARS)));
        assert!(e.ends_with("(1000 characters)"));
        assert_eq!(one_line("a\n\n  b\n", 100), "a; b");
        assert_eq!(one_line(&"y".repeat(50), 10).chars().count(), 10);
    }

    /// The configuration file's values hold unless a flag is given.
    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let path = std::env::temp_dir().join(format!("cli-unit-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"cluster_size": 3, "heartbeat_interval_ms": 40}"#).unwrap();
        let args = ClusterArgs {
            config: Some(path.clone()),
            ..ClusterArgs::default()
        };
        let from_file = build_config(None, None, &args).unwrap();
        assert_eq!(
            (from_file.cluster_size, from_file.heartbeat_interval_ms),
            (3, 40)
        );
        let flagged = build_config(
            None,
            Some(7),
            &ClusterArgs {
                heartbeat_ms: Some(30),
                ..args
            },
        )
        .unwrap();
        assert_eq!(
            (flagged.cluster_size, flagged.heartbeat_interval_ms),
            (7, 30)
        );
        let defaults = build_config(None, None, &ClusterArgs::default()).unwrap();
        assert_eq!(defaults, ConsensusConfig::default());
        std::fs::remove_file(&path).ok();
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
                    Fault::Disk,
                    Fault::QuorumLoss,
                    Fault::Constrained,
                    Fault::Chained,
                    Fault::Byzantine
                ],
                1..=11
            )
            .prop_map(FaultSelection::Only),
            proptest::sample::subsequence(
                vec![
                    Fault::Disk,
                    Fault::QuorumLoss,
                    Fault::Constrained,
                    Fault::Chained,
                    Fault::Byzantine
                ],
                1..=5
            )
            .prop_map(FaultSelection::AllAnd),
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
