//! The `consensus` program: `simulate`, `check-history`, `bench`.
//!
//! Exit status: 0 success; 1 the check failed (safety, linearizability) or
//! the benchmark could not finish; 2 a bad flag, an impossible
//! configuration or an unreadable file (one line on stderr naming it);
//! 3 the linearizability check was undecided: a budget (steps, memory or
//! time) ran out before a verdict (`check-history`, or `simulate` when
//! safety held; a campaign whose runs all passed but some were undecided);
//! 141 stdout was a pipe whose reader had gone (`consensus simulate | head`).
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand};
use consensus_actors::config::ConsensusConfig;
use consensus_actors::history::{CheckOptions, LinearizabilityReport, Verdict};
use consensus_actors::types::ConsensusProtocol;
use consensus_engine::bench::{BenchCommand, BenchOptions, BenchReport};
use consensus_engine::campaign::Campaign;
use consensus_engine::check::{load_compact_history, CheckMode, CheckReport, HistoryFormat};
use consensus_engine::cli::{
    bench_nodes, build_config, count_in, excerpt, one_line, parse_seeds, whole_in, ClusterArgs,
    RunArgs, SeedRange, MAX_BENCH_NODES, MAX_CLIENTS, MAX_MS,
};
use consensus_engine::simulate::{SimulateOptions, SimulationRun};
use consensus_engine::{EngineError, Registry};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status when stdout is a pipe whose reader has gone (as a shell
/// reports a process killed by SIGPIPE: 128 + 13).
const EXIT_BROKEN_PIPE: i32 = 141;

/// mimalloc instead of glibc's malloc: a simulated or benchmarked cluster
/// allocates and frees small objects (envelopes, entries, mailbox nodes)
/// at a high rate on one thread, where glibc's malloc/free were about a
/// fifth of all instructions of `consensus simulate`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes one line to stdout. `std::println!` panics when the reader of a
/// pipe has gone (`consensus simulate | head -1`); this ends the program
/// quietly instead, as command-line tools do.
fn write_line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(EXIT_BROKEN_PIPE)
        }
        Err(e) => {
            eprintln!("consensus: cannot write to stdout: {e}");
            std::process::exit(i32::from(EXIT_FAILED))
        }
    }
}

/// Writes one line to stdout through [`write_line`] (like `println!`, but
/// a closed pipe ends the program quietly).
macro_rules! out {
    ($($arg:tt)*) => {
        write_line(format_args!($($arg)*))
    };
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_UNDECIDED: u8 = 3;

use consensus_engine::cli::{memory_budget, number_in, DEFAULT_MAX_MEMORY_MIB};

#[derive(Parser, Debug)]
#[command(
    name = "consensus",
    version,
    about = "Run, check and measure consensus protocols (Raft today; Paxos, Multi-Paxos and PBFT planned)",
    long_about = "Run, check and measure consensus protocols.\n\n\
        simulate       a deterministic in-process cluster in virtual time, under a client workload \
        and injected faults, checked for safety and linearizability\n\
        check-history  check a recorded client history (ours or Jepsen's) for linearizability\n\
        bench          real-clock throughput and latency of an in-process cluster\n\
        node           one node of a real multi-process cluster (disk, authenticated TCP, HTTP API)\n\n\
        Exit status: 0 success; 1 a check failed; 2 a bad flag, impossible configuration or \
        unreadable file; 3 the linearizability check ran out of a budget (steps, memory, time) \
        before a verdict."
)]
struct Cli {
    /// Log level for messages on stderr: off, error, warn, info, debug or trace; RUST_LOG
    /// overrides it.
    #[arg(long, global = true, default_value = "error", value_name = "LEVEL",
          value_parser = ["off", "error", "warn", "info", "debug", "trace"])]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a deterministic cluster in virtual time under clients and faults, then check it.
    ///
    /// The defaults are the main job: Raft, 5 nodes, seed 1, every fault, 60 virtual seconds.
    /// Exits 0 only when safety held and the client history is linearizable.
    Simulate(Box<SimulateArgs>),
    /// Check a client history for linearizability against the key-value model.
    ///
    /// Exits 0 when linearizable, 1 when not, 2 when the file cannot be read or parsed,
    /// 3 when undecided: --max-steps, --max-memory or --timeout ran out before a verdict.
    CheckHistory(CheckArgs),
    /// Measure real-clock throughput and latency of an in-process cluster.
    Bench(BenchArgs),
    /// List the protocols and whether this build runs them.
    Protocols,
    /// Run one node of a real cluster: Raft on disk, authenticated TCP to its peers, and the
    /// key-value store's HTTP API.
    ///
    /// Example (three terminals, one node each):
    /// consensus node --id 1 --listen 127.0.0.1:7001 --http 127.0.0.1:8001 --data-dir n1
    /// --peers 2=127.0.0.1:7002/127.0.0.1:8002,3=127.0.0.1:7003/127.0.0.1:8003
    /// Stops cleanly on Ctrl-C or SIGTERM. Exits 2 on a bad flag, an unreadable key file or
    /// data dir, or a port in use (one line on stderr).
    Node(Box<consensus_engine::node::NodeArgs>),
    /// Drive a real cluster over HTTP (`consensus node`'s API or etcd's v3 JSON gateway)
    /// with closed-loop clients, and report writes and reads per second and their latency.
    Load(LoadArgs),
}

#[derive(Args, Debug, Clone)]
struct LoadArgs {
    /// The members' HTTP base URLs, comma-separated (e.g. http://127.0.0.1:8001,...).
    #[arg(long, value_name = "URL,...", value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// The API the members speak: consensus or etcd.
    #[arg(long, default_value = "consensus", value_name = "API")]
    api: consensus_engine::load::Api,
    /// Concurrent clients, 1..=4096 (each one request at a time).
    #[arg(long, default_value_t = 16, value_name = "C",
          value_parser = |s: &str| count_in(s, 1, 4096), allow_hyphen_values = true)]
    clients: usize,
    /// Client threads, 1..=64.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = |s: &str| count_in(s, 1, 64), allow_hyphen_values = true)]
    threads: usize,
    /// Seconds to run, 0.1..=86400.
    #[arg(long, default_value_t = 10.0, value_name = "SECS",
          value_parser = |s: &str| number_in(s, 0.1, 86_400.0), allow_hyphen_values = true)]
    duration: f64,
    /// Bytes per value written, 1..=1048576.
    #[arg(long, default_value_t = 256, value_name = "BYTES",
          value_parser = |s: &str| count_in(s, 1, 1 << 20), allow_hyphen_values = true)]
    value_size: usize,
    /// Fraction of operations that are linearizable reads, 0..=1.
    #[arg(long, default_value_t = 0.0, value_name = "F",
          value_parser = |s: &str| number_in(s, 0.0, 1.0), allow_hyphen_values = true)]
    reads: f64,
    /// Distinct keys, 1..=1000000000.
    #[arg(long, default_value_t = 1000, value_name = "K",
          value_parser = |s: &str| whole_in(s, 1, 1_000_000_000), allow_hyphen_values = true)]
    keys: u64,
    /// Seed of the key, operation and value choices.
    #[arg(long, default_value_t = 1, value_name = "S")]
    seed: u64,
    /// Print one JSON object (the report) as the last line of stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct SimulateArgs {
    /// What shapes the run: protocol, cluster, workload, faults, check.
    #[command(flatten)]
    run: RunArgs,
    /// Run a campaign over seeds A to B inclusive (e.g. 1..100; A, B in
    /// 0..=18446744073709551615), or from A on until interrupted (A..), and list the failing
    /// ones with the command that replays each. Ctrl-C stops it and prints what it found so far.
    #[arg(long, value_name = "A..B", value_parser = parse_seeds, conflicts_with = "seed",
          allow_hyphen_values = true)]
    seeds: Option<SeedRange>,
    /// Campaign runs in parallel (one thread each), 1..=256.
    #[arg(long, default_value_t = 1, value_name = "N", requires = "seeds",
          value_parser = |s: &str| count_in(s, 1, 256), allow_hyphen_values = true)]
    jobs: usize,
    /// Write a self-contained HTML picture of the client history and the linearizability
    /// verdict to FILE.
    #[arg(long, value_name = "FILE.html", conflicts_with = "seeds")]
    html: Option<PathBuf>,
    /// Print one JSON object (the report) as the last line of stdout instead of the summary.
    #[arg(long)]
    json: bool,
    /// Write the run's trace (JSON lines: deliveries, state changes, faults) to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "seeds")]
    trace: Option<PathBuf>,
    /// Write the client history (JSON, readable by check-history) to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "seeds")]
    history: Option<PathBuf>,
    /// Write a picture of the run (SVG: committed ops/s, leader per term, fault windows) to FILE.
    #[arg(long, value_name = "FILE.svg", conflicts_with = "seeds")]
    report: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
struct CheckArgs {
    /// The history file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Its format: json (what simulate --history writes) or jepsen (a Jepsen register log).
    #[arg(long, value_enum, default_value_t = HistoryFormat::Json)]
    format: HistoryFormat,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Stop the search on a key after N steps (verdict undecided, exit 3; 0: unlimited).
    #[arg(long, value_name = "N", default_value_t = consensus_actors::history::DEFAULT_MAX_STEPS_PER_KEY)]
    max_steps: u64,
    /// Stop the search on a key when it would hold more than MIB mebibytes (verdict undecided,
    /// exit 3; 0: unlimited).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_MEMORY_MIB)]
    max_memory: u64,
    /// Stop the whole search after SECS of wall-clock time (verdict undecided, exit 3).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Write a self-contained HTML picture of the history and the verdict to FILE.
    #[arg(long, value_name = "FILE.html")]
    html: Option<PathBuf>,
    /// Check a JSON file as a stream, cut at the first quiet point after every N constraining
    /// operations, so memory follows N, not the file (0: read the whole history into memory).
    #[arg(long, value_name = "N",
          default_value_t = consensus_actors::history::stream::DEFAULT_MIN_SEGMENT_OPS)]
    segment_ops: usize,
}

#[derive(Args, Debug, Clone)]
struct BenchArgs {
    /// Protocol to run (`consensus protocols` lists them; default raft, or the configuration
    /// file's protocol).
    #[arg(long, value_name = "P")]
    protocol: Option<ConsensusProtocol>,
    /// Nodes in the cluster, 1..=64 (default 3, or the configuration file's cluster_size).
    #[arg(long, value_name = "N", value_parser = bench_nodes, allow_hyphen_values = true)]
    nodes: Option<usize>,
    /// Concurrent clients, each with one command in flight, 1..=10000.
    #[arg(long, default_value_t = 1, value_name = "C",
          value_parser = |s: &str| count_in(s, 1, MAX_CLIENTS), allow_hyphen_values = true)]
    clients: usize,
    /// Commands to commit, 1..=1000000000.
    #[arg(long, default_value_t = 100_000, value_name = "OPS",
          value_parser = |s: &str| whole_in(s, 1, 1_000_000_000), allow_hyphen_values = true)]
    ops: u64,
    /// What to replicate: noop (empty commands) or put (small writes).
    #[arg(long, value_enum, default_value_t = BenchCommandArg::Noop)]
    command: BenchCommandArg,
    /// Sample resident memory every MS milliseconds, 1..=3600000 (reported with --json; Linux
    /// only).
    #[arg(long, value_name = "MS", value_parser = |s: &str| whole_in(s, 1, MAX_MS),
          allow_hyphen_values = true)]
    rss_interval_ms: Option<u64>,
    /// Run the clients on a thread of their own, the nodes on another, when the protocol allows it (default: one thread for everything).
    #[arg(long)]
    client_thread: bool,
    /// Spread the nodes over N threads, 1..=nodes: node k on thread k % N, the clients on the
    /// last unless --client-thread (default 1: every node on the calling thread); needs a
    /// protocol whose nodes take submissions from other threads.
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = |s: &str| whole_in(s, 1, MAX_BENCH_NODES as u64).map(|n| n as usize),
          allow_hyphen_values = true)]
    node_threads: usize,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchCommandArg {
    Noop,
    Put,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
                _ => {
                    // clap's first paragraph, on one line.
                    let text = e.to_string();
                    let first: Vec<&str> = text
                        .lines()
                        .map(str::trim)
                        .skip_while(|l| l.is_empty())
                        .take_while(|l| !l.is_empty())
                        .collect();
                    let mut first = first.join(" ");
                    // Echo only an excerpt of long user input.
                    for arg in std::env::args_os().skip(1) {
                        let arg = arg.to_string_lossy();
                        if arg.chars().count() > consensus_engine::cli::EXCERPT_CHARS
                            && first.contains(arg.as_ref())
                        {
                            first = first.replace(arg.as_ref(), &excerpt(&arg));
                        }
                    }
                    let first = one_line(first.trim_start_matches("error: "), 400);
                    eprintln!("consensus: {first} (see consensus --help)");
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    };
    init_logging(&cli.log);
    // Injected component panics are logged (at warn) instead of printed.
    consensus_actors::supervision::install_panic_hook();
    match cli.command {
        Command::Simulate(args) => simulate(*args),
        Command::CheckHistory(args) => check_history(args),
        Command::Bench(args) => bench(args),
        Command::Protocols => protocols(),
        Command::Load(args) => load(args),
        Command::Node(args) => node(*args),
    }
}

fn node(args: consensus_engine::node::NodeArgs) -> ExitCode {
    use consensus_engine::node::NodeRunError;
    match consensus_engine::node::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ NodeRunError::Runtime(_)) => {
            eprintln!("consensus node: {}", one_line(&e.to_string(), 400));
            ExitCode::from(EXIT_FAILED)
        }
        Err(e) => {
            eprintln!("consensus node: {}", one_line(&e.to_string(), 400));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn load(args: LoadArgs) -> ExitCode {
    use consensus_engine::load::{run_load, LoadOptions};
    let options = LoadOptions {
        targets: args
            .targets
            .iter()
            .map(|t| t.trim().trim_end_matches('/').to_string())
            .collect(),
        api: args.api,
        clients: args.clients,
        threads: args.threads,
        duration: Duration::from_secs_f64(args.duration),
        value_size: args.value_size,
        read_fraction: args.reads,
        keys: args.keys,
        seed: args.seed,
        ..LoadOptions::default()
    };
    if let Err(e) = options.validate() {
        return usage_error(e);
    }
    let report = match run_load(&options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("consensus: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        print_json(&report);
    } else {
        out!(
            "load: {} on {}, {} clients, {} B values, {:.0}% reads, {:.1} s",
            report.api,
            report.targets.join(","),
            report.clients,
            report.value_size,
            report.read_fraction * 100.0,
            report.duration_secs
        );
        for (name, f) in [("writes", &report.writes), ("reads", &report.reads)] {
            out!(
                "  {name:<7} {:>10.0}/s  ok {}  errors {}  p50 {}  p99 {}  max {}",
                f.per_sec,
                f.ok,
                f.errors,
                ms(f.latency_us.p50),
                ms(f.latency_us.p99),
                ms(f.latency_us.max)
            );
        }
        out!(
            "  {} redirects followed, {} retries",
            report.redirects,
            report.retries
        );
    }
    let errors = report.writes.errors + report.reads.errors;
    if report.writes.ok + report.reads.ok == 0 || errors > 0 {
        eprintln!("consensus: load: {errors} operations failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints `message` as one line (cut to a few hundred characters) and
/// exits 2.
fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("consensus: {}", one_line(&message.to_string(), 400));
    ExitCode::from(EXIT_USAGE)
}

fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string(value) {
        Ok(line) => out!("{line}"),
        Err(e) => eprintln!("consensus: cannot encode the report as JSON: {e}"),
    }
}

fn simulate_options(args: &SimulateArgs, seed: u64) -> Result<SimulateOptions, String> {
    let mut options = args.run.options(seed)?;
    options.keep_trace = if args.trace.is_some() { 10_000_000 } else { 0 };
    Ok(options)
}

fn simulate(args: SimulateArgs) -> ExitCode {
    let config = match args.run.config() {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    let registry = Registry::builtin();
    let driver = match registry.driver(&config.protocol) {
        Ok(d) => d,
        Err(e) => return usage_error(e),
    };
    if let Some(seeds) = args.seeds {
        return campaign(&args, &config, driver, seeds);
    }
    let options = match simulate_options(&args, args.run.seed) {
        Ok(o) => o,
        Err(e) => return usage_error(e),
    };
    let began = Instant::now();
    let ticker = Ticker::start(format!("simulating seed {}", options.seed));
    let run = driver.simulate(&config, &options);
    drop(ticker);
    let run = match run {
        Ok(run) => run,
        Err(
            e @ (EngineError::Config(_)
            | EngineError::InvalidSetting(_)
            | EngineError::ProtocolNotBuilt { .. }),
        ) => return usage_error(e),
        Err(e) => {
            eprintln!("consensus: simulation failed: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut run = run;
    run.report.set_real_time(began.elapsed().as_secs_f64());
    if let Err(e) = write_artifacts(&args, &run) {
        return usage_error(e);
    }
    if args.json {
        print_json(&run.report);
    } else {
        print_summary(&run);
    }
    if run.report.passed() {
        ExitCode::SUCCESS
    } else if run.report.safety_ok && run.report.linearizability == Verdict::Undecided {
        ExitCode::from(EXIT_UNDECIDED)
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

fn write_file(path: &PathBuf, contents: &[u8]) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("{}: cannot write: {e}", path.display()))
}

fn write_artifacts(args: &SimulateArgs, run: &SimulationRun) -> Result<(), String> {
    if let Some(path) = &args.trace {
        let mut out = Vec::new();
        for record in &run.trace {
            serde_json::to_writer(&mut out, record).map_err(|e| e.to_string())?;
            out.push(b'\n');
        }
        write_file(path, &out)?;
        if (run.trace.len() as u64) < run.trace_len {
            eprintln!(
                "consensus: the trace had {} records; the last {} were written",
                run.trace_len,
                run.trace.len()
            );
        }
    }
    if let Some(path) = &args.history {
        write_file(path, run.history.to_json_pretty().as_bytes())?;
    }
    if let Some(path) = &args.html {
        let r = &run.report;
        let title = format!(
            "{} · {} nodes · seed {} · faults {}",
            r.protocol, r.nodes, r.seed, args.run.faults
        );
        let page =
            consensus_engine::check::history_html(&run.history, &run.linearizability, &title);
        write_file(path, page.as_bytes())?;
    }
    if let Some(path) = &args.report {
        let r = &run.report;
        let title = format!(
            "{} · {} nodes · seed {} · faults {} · {}",
            r.protocol,
            r.nodes,
            r.seed,
            args.run.faults,
            if r.passed() { "PASS" } else { "FAIL" }
        );
        write_file(path, run.timeline.to_svg(&title).as_bytes())?;
    }
    Ok(())
}

fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1000.0)
}

fn print_summary(run: &SimulationRun) {
    let r = &run.report;
    let faults: Vec<&str> = r.faults.iter().map(|f| f.name()).collect();
    let faults = if faults.is_empty() {
        "none".to_string()
    } else {
        faults.join(",")
    };
    let real = r
        .real_secs
        .map(|s| format!(" in {s:.2} s real ({:.0}x)", r.speedup.unwrap_or_default()))
        .unwrap_or_default();
    out!(
        "{}, {} nodes, {} clients, seed {}, faults {}: {:.1} s virtual{real}",
        r.protocol,
        r.nodes,
        r.clients,
        r.seed,
        faults,
        r.virtual_secs
    );
    out!(
        "  operations:   {} invoked, {} committed, {} failed, {} unknown",
        r.operations.invoked,
        r.operations.ok,
        r.operations.failed,
        r.operations.unknown
    );
    out!(
        "  latency:      p50 {}, p99 {}, max {}",
        ms(r.latency_us.p50),
        ms(r.latency_us.p99),
        ms(r.latency_us.max)
    );
    out!(
        "  cluster:      {} leaderships, {} crashes, {} component restarts, {} faults injected",
        r.leader_changes,
        r.crashes,
        r.component_restarts,
        r.faults_injected
    );
    out!(
        "  network:      {} messages delivered, {} dropped, {} duplicated",
        r.network.delivered,
        r.network.dropped(),
        r.network.duplicated
    );
    out!(
        "  safety:       {} ({} invariants, {} events)",
        if r.safety_ok { "ok" } else { "VIOLATED" },
        run.safety.invariants.len(),
        r.safety_events
    );
    out!(
        "  linearizable: {} ({} keys)",
        match r.linearizability {
            Verdict::Linearizable => "yes",
            Verdict::NotLinearizable => "NO",
            Verdict::Undecided => "undecided",
        },
        run.linearizability.keys
    );
    for b in &r.byzantine {
        out!("  byzantine:    {} behaves as {}", b.node, b.behaviour);
    }
    if let Some(e) = &r.evidence {
        let accused: Vec<String> = e.accused.iter().map(|n| n.to_string()).collect();
        out!(
            "  evidence:     {} records, against {}",
            e.total,
            if accused.is_empty() {
                "nobody".to_string()
            } else {
                accused.join(", ")
            }
        );
    }
    if r.membership_changes > 0 {
        out!(
            "  membership:   {} changes took effect",
            r.membership_changes
        );
    }
    for sc in &r.scenarios {
        out!(
            "  scenario:     {} at {}: {}",
            sc.detail,
            ms(sc.at_us),
            match sc.resumed_after_us {
                Some(us) => format!("commits resumed after {}", ms(us)),
                None => format!("no commit for the whole {} held", ms(sc.held_us)),
            }
        );
    }
    out!("  trace hash:   {}", r.trace_hash);
    for v in r.violations.iter().take(10) {
        out!("  violation ({}, {}): {}", v.kind, v.name, v.detail);
    }
    if r.violations.len() > 10 {
        out!("  ... and {} more violations", r.violations.len() - 10);
    }
    out!("{}", if r.passed() { "PASS" } else { "FAIL" });
}

fn campaign(
    args: &SimulateArgs,
    config: &ConsensusConfig,
    driver: std::sync::Arc<dyn consensus_engine::ProtocolDriver>,
    seeds: SeedRange,
) -> ExitCode {
    // Check the settings once, before any run.
    let options = match simulate_options(args, seeds.from) {
        Ok(o) => o,
        Err(e) => return usage_error(e),
    };
    // A setting no seed can run with (a fault the protocol cannot inject)
    // is one usage error, not one error per seed.
    if let Err(e) = consensus_engine::simulate::validate(config, &options)
        .and_then(|()| options.faults.resolve(&driver.capabilities()).map(drop))
    {
        return usage_error(e);
    }
    // Ctrl-C stops the campaign: no new seed starts, the runs in flight
    // finish and the summary so far is printed; a second Ctrl-C ends the
    // program at once. (ctrlc: the campaign runs on plain threads, with no
    // async runtime for tokio::signal to run on.)
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handler = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nconsensus: interrupted; finishing the runs in flight (Ctrl-C again to quit)");
    });
    if let Err(e) = handler {
        tracing::warn!(error = %e, "cannot catch Ctrl-C; it will end the campaign without a summary");
    }
    let mut campaign = Campaign::new(driver, config.clone(), options, seeds.inclusive())
        .jobs(args.jobs)
        .stop_when(stop);
    let show_progress = std::io::stderr().is_terminal();
    let open_ended = seeds.to.is_none();
    if show_progress {
        campaign = campaign.on_progress(progress);
    } else if open_ended {
        // Off a terminal there is no bar; an open-ended campaign, which
        // ends only when interrupted, still says it is alive: a line after
        // 1, 2, 4, 8 ... runs, so a long one logs a handful of lines.
        campaign = campaign.on_progress(|done, _, failed| {
            if done.is_power_of_two() {
                eprintln!("consensus: {done} runs so far, {failed} failed (Ctrl-C stops)");
            }
        });
    }
    if show_progress {
        // The first run may take a while: show the bar at once.
        let total = u128::from(*seeds.inclusive().end() - seeds.from) + 1;
        progress(0, u64::try_from(total).unwrap_or(u64::MAX), 0);
    }
    let report = campaign.run();
    if show_progress {
        eprintln!();
    }
    if args.json {
        print_json(&report);
    } else {
        out!(
            "{} campaign, {} nodes, seeds {seeds}: {} runs{}, {} passed, {} failed, {} undecided, {} errors, {} operations committed, {:.1} s",
            report.protocol,
            report.nodes,
            report.runs,
            if report.stopped { " (interrupted)" } else { "" },
            report.passed,
            report.failed.len(),
            report.undecided.len(),
            report.errors.len(),
            report.committed,
            report.real_secs
        );
        if report.membership_changes > 0 {
            out!(
                "  {} membership changes took effect",
                report.membership_changes
            );
        }
        for f in &report.failed {
            let what = match (f.safety_ok, f.linearizable) {
                (false, false) => "safety violated and not linearizable",
                (false, true) => "safety violated",
                _ => "not linearizable",
            };
            out!("  seed {}: {what}", f.seed);
            if let Some(v) = f.violations.first() {
                out!("    {v}");
            }
            out!("    replay: {}", f.replay);
        }
        for u in &report.undecided {
            out!("  seed {}: undecided (not a failure)", u.seed);
            if let Some(v) = u.violations.first() {
                out!("    {v}");
            }
            out!("    replay: {}", u.replay);
        }
        for e in &report.errors {
            out!("  error: {e}");
        }
        if report.runs == 0 {
            out!("  no run was made: a campaign that ran nothing does not pass");
        }
    }
    if !report.failed.is_empty() || !report.errors.is_empty() || report.runs == 0 {
        ExitCode::from(EXIT_FAILED)
    } else if !report.undecided.is_empty() {
        ExitCode::from(EXIT_UNDECIDED)
    } else {
        ExitCode::SUCCESS
    }
}

/// While alive, and only when stderr is a terminal, shows on stderr that a
/// long piece of work goes on: `what` and the seconds elapsed, from 1 s on,
/// refreshed twice a second; the line is cleared when dropped.
struct Ticker {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(what: String) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                done: None,
                thread: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let began = Instant::now();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let mut shown = false;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(Duration::from_millis(500))
                {
                    let secs = began.elapsed().as_secs_f64();
                    if secs >= 1.0 {
                        let mut err = std::io::stderr();
                        let _ = write!(err, "\r{what}: {secs:.0} s elapsed ");
                        let _ = err.flush();
                        shown = true;
                    }
                }
                if shown {
                    let mut err = std::io::stderr();
                    let _ = write!(err, "\r\x1b[2K");
                    let _ = err.flush();
                }
            })
            .ok();
        Self {
            done: Some(tx),
            thread,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn progress(done: u64, total: u64, failed: u64) {
    const WIDTH: u128 = 30;
    let mut err = std::io::stderr();
    if total == u64::MAX {
        // Open-ended (or all 2^64 seeds): no bar.
        let _ = write!(err, "\r{done} seeds, {failed} failed (Ctrl-C stops)");
        let _ = err.flush();
        return;
    }
    let filled = (u128::from(done) * WIDTH / u128::from(total.max(1))).min(WIDTH) as usize;
    let bar = format!(
        "{}{}",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled)
    );
    let _ = write!(err, "\r[{bar}] {done}/{total} seeds, {failed} failed");
    let _ = err.flush();
}

fn check_history(args: CheckArgs) -> ExitCode {
    if let Some(t) = args.timeout {
        if !(t.is_finite() && t > 0.0) {
            return usage_error(format!(
                "--timeout must be a positive number of seconds, got {t}"
            ));
        }
    }
    let began = Instant::now();
    let deadline = args.timeout.map(|t| began + Duration::from_secs_f64(t));
    let interrupt = move || deadline.is_some_and(|d| Instant::now() >= d);
    let mut options = CheckOptions::unlimited();
    if args.max_steps > 0 {
        options = options.with_max_steps_per_key(args.max_steps);
    }
    if let Some(bytes) = memory_budget(args.max_memory) {
        options = options.with_max_memory_bytes(bytes);
    }
    if deadline.is_some() {
        options = options.with_interrupt(&interrupt);
    }
    // A JSON file is first checked as a stream, segment by segment; the
    // whole history is read into memory only when that cannot decide (or
    // the picture needs it).
    let mut mode = None;
    if args.format == HistoryFormat::Json && args.html.is_none() && args.segment_ops > 0 {
        let stream = consensus_actors::history::StreamOptions {
            min_segment_ops: args.segment_ops,
            ..Default::default()
        };
        match consensus_engine::check::check_json_file_streaming(&args.file, &options, &stream) {
            Err(e) => return usage_error(e),
            Ok(Ok((report, stats))) => {
                let mode = CheckMode {
                    streamed: true,
                    stats,
                    in_memory_because: None,
                };
                return print_check(&args, &report, began, Some(mode));
            }
            Ok(Err((reason, stats))) => {
                tracing::info!(%reason, "checking the whole history in memory");
                mode = Some(CheckMode {
                    streamed: false,
                    stats,
                    in_memory_because: Some(reason),
                });
            }
        }
    }
    let history = match load_compact_history(&args.file, args.format) {
        Ok(h) => h,
        Err(e) => return usage_error(e),
    };
    let report = consensus_engine::check::check_compact(&history, &options);
    if let Some(path) = &args.html {
        let title = args.file.display().to_string();
        let page = consensus_engine::check::history_html(&history.to_history(), &report, &title);
        if let Err(e) = write_file(path, page.as_bytes()) {
            return usage_error(e);
        }
    }
    drop(history);
    print_check(&args, &report, began, mode)
}

/// Prints `check-history`'s result and gives its exit status.
fn print_check(
    args: &CheckArgs,
    report: &LinearizabilityReport,
    began: Instant,
    mode: Option<CheckMode>,
) -> ExitCode {
    let elapsed_ms = began.elapsed().as_secs_f64() * 1000.0;
    let mut out = CheckReport::from_report(report, elapsed_ms);
    out.mode = mode;
    if args.json {
        print_json(&out);
    } else {
        let verdict = match out.verdict {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "NOT linearizable",
            Verdict::Undecided => "undecided (a budget ran out)",
        };
        out!(
            "{}: {} operations on {} keys: {verdict} ({elapsed_ms:.1} ms, {} search steps)",
            args.file.display(),
            out.operations,
            out.keys,
            out.steps
        );
        for v in &out.violations {
            match v.verdict {
                Verdict::Undecided => out!("  {}", v.detail),
                _ => out!("  key {:?}: {}", v.key, v.detail),
            }
        }
    }
    match out.verdict {
        Verdict::Linearizable => ExitCode::SUCCESS,
        Verdict::NotLinearizable => ExitCode::from(EXIT_FAILED),
        Verdict::Undecided => ExitCode::from(EXIT_UNDECIDED),
    }
}

fn bench(args: BenchArgs) -> ExitCode {
    // Without a flag or a file, 3 nodes.
    let nodes = args.nodes.or(if args.cluster.config.is_none() {
        Some(3)
    } else {
        None
    });
    let config = match build_config(args.protocol.clone(), nodes, &args.cluster) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if config.cluster_size > MAX_BENCH_NODES {
        return usage_error(format!(
            "cluster_size {} (from --config) is out of range 1..={MAX_BENCH_NODES} for bench",
            config.cluster_size
        ));
    }
    let driver = match Registry::builtin().driver(&config.protocol) {
        Ok(d) => d,
        Err(e) => return usage_error(e),
    };
    let options = BenchOptions {
        clients: args.clients,
        ops: args.ops,
        command: match args.command {
            BenchCommandArg::Noop => BenchCommand::Noop,
            BenchCommandArg::Put => BenchCommand::Put,
        },
        rss_interval: args.rss_interval_ms.map(Duration::from_millis),
        client_thread: args.client_thread,
        node_threads: args.node_threads,
        ..BenchOptions::default()
    };
    if let Err(e) = consensus_engine::bench::validate(&config, &options) {
        return usage_error(e);
    }
    let ticker = Ticker::start(format!(
        "bench: {} nodes, {} commands",
        config.cluster_size, options.ops
    ));
    let report = driver.bench(&config, &options);
    drop(ticker);
    let report: BenchReport = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("consensus: benchmark failed: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    if args.json {
        print_json(&report);
    } else {
        out!(
            "{}, {} nodes, {} clients, {} {:?} commands: {:.0} commits/s in {:.2} s",
            report.protocol,
            report.nodes,
            report.clients,
            report.ops,
            report.command,
            report.ops_per_sec,
            report.elapsed_secs
        );
        out!(
            "  latency: p50 {} us, p99 {} us, max {} us; {} retries; leader {}",
            report.latency_us.p50,
            report.latency_us.p99,
            report.latency_us.max,
            report.retries,
            report.leader
        );
        if let Some(peak) = report.peak_rss_mib {
            out!("  peak resident memory: {peak:.1} MiB");
        }
    }
    ExitCode::SUCCESS
}

fn protocols() -> ExitCode {
    let registry = Registry::builtin();
    for name in registry.names() {
        let Ok(p) = name.parse::<ConsensusProtocol>() else {
            continue;
        };
        match registry.driver(&p) {
            Ok(_) => out!("{p:<12} available"),
            Err(e) => out!("{p:<12} {e}"),
        }
    }
    ExitCode::SUCCESS
}
