//! Issue #18: every bad input to the `consensus` program is refused in one
//! clear line, nothing panics or hangs, and the legal extremes work. The
//! program is run as a user would run it (the built binary); the campaign
//! limits are also checked through the library.
//!
//! - a table runs every numeric flag of `simulate` and `bench` with 0, -1,
//!   a huge value, `u64::MAX`, a fraction and a word: each is refused with
//!   exit 2 and one line naming the flag, the value and a range, or (where
//!   legal) makes a correct quick run; never a panic, never more than 3
//!   lines on stderr;
//! - a property test feeds random argument lists and finds no panic;
//! - the cases of the issue, one test each.
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_engine::campaign::Campaign;
use consensus_engine::{Registry, SimulateOptions};
use proptest::prelude::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn consensus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_consensus"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the consensus binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn last_json(o: &Output) -> Value {
    let out = stdout(o);
    let line = out.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("consensus-inputs-{}-{name}", std::process::id()))
}

/// What every run must respect, whatever its arguments: no panic, at most
/// 3 lines on stderr, exit 0, 1 or 2.
fn assert_well_behaved(args: &[&str], o: &Output) {
    let err = stderr(o);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{args:?} panicked: {err}"
    );
    assert!(
        err.trim_end().lines().count() <= 3,
        "{args:?}: more than 3 lines on stderr: {err}"
    );
    assert!(
        matches!(o.status.code(), Some(0..=2)),
        "{args:?}: exit {:?}: {err}",
        o.status.code()
    );
}

/// A refusal: exit 2, one line naming `flag`, the value (or an excerpt of
/// it) and a range.
fn assert_refused(args: &[&str], flag: &str, value: &str) {
    let o = consensus(args);
    assert_well_behaved(args, &o);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err:?}");
    assert!(err.contains(flag), "{args:?}: {err:?} should name {flag}");
    let shown: String = value.chars().take(60).collect();
    assert!(
        err.contains(&shown),
        "{args:?}: {err:?} should show {shown:?}"
    );
    assert!(
        err.contains(".."),
        "{args:?}: {err:?} should give the range"
    );
}

const TINY: &[&str] = &["simulate", "--duration", "0.05", "--faults", "none"];

/// The numbers every numeric flag is tried with.
const PROBES: &[&str] = &[
    "0",
    "-1",
    "1000000000000000",
    "18446744073709551615",
    "0.5",
    "abc",
];

/// Every numeric flag of `simulate` and `bench` with every probe: a
/// refusal in one line naming flag, value and range, or a correct quick
/// run where the value is legal.
#[test]
fn every_numeric_flag_refuses_or_runs_every_probe() {
    // (arguments before the flag, flag, probes that are legal)
    let simulate: &[(&str, &[&str])] = &[
        ("--nodes", &[]),
        ("--seed", &["0", "1000000000000000", "18446744073709551615"]),
        ("--duration", &["0.5"]),
        ("--clients", &[]),
        ("--keys", &[]),
        ("--rate", &["0.5"]),
        ("--think-time-ms", &["0"]),
        ("--request-timeout-ms", &[]),
        (
            "--max-check-steps",
            &["0", "1000000000000000", "18446744073709551615"],
        ),
        ("--election-timeout-ms", &[]),
        ("--heartbeat-ms", &[]),
        ("--max-append-entries", &[]),
        ("--snapshot-threshold", &[]),
        ("--byzantine", &["0"]),
    ];
    let mut legal_runs = 0;
    for (flag, legal) in simulate {
        for &value in PROBES {
            let base = if *flag == "--duration" {
                &["simulate", "--faults", "none"][..]
            } else {
                TINY
            };
            let args: Vec<&str> = base.iter().copied().chain([*flag, value]).collect();
            if legal.contains(&value) {
                let o = consensus(&args);
                assert_well_behaved(&args, &o);
                // --byzantine 0 on Raft may be refused as a configuration.
                if *flag == "--byzantine" && o.status.code() == Some(2) {
                    continue;
                }
                assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
                assert!(stdout(&o).contains("PASS"), "{args:?}");
                legal_runs += 1;
            } else {
                assert_refused(&args, flag, value);
            }
        }
    }
    assert!(legal_runs >= 8, "the legal probes ran ({legal_runs})");
    for &value in PROBES {
        let args = ["simulate", "--seeds", "1..2", "--jobs", value];
        assert_refused(&args, "--jobs", value);
    }
    for flag in ["--nodes", "--clients", "--ops", "--rss-interval-ms"] {
        for &value in PROBES {
            let mut args = vec!["bench", flag, value];
            if flag != "--ops" {
                args.extend(["--ops", "10"]);
            }
            assert_refused(&args, flag, value);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random argument lists never make the program panic, print more
    /// than 3 lines on stderr or exit with anything but 0, 1 or 2.
    #[test]
    fn random_arguments_never_panic(
        command in prop::sample::select(vec!["simulate", "bench", "protocols", "check-history", "nonsense"]),
        pairs in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "--nodes", "--seed", "--clients", "--keys", "--rate", "--think-time-ms",
                    "--mix", "--request-timeout-ms", "--max-check-steps", "--election-timeout-ms",
                    "--heartbeat-ms", "--max-append-entries", "--snapshot-threshold",
                    "--byzantine", "--faults", "--protocol", "--log", "--ops", "--json",
                    "--config", "--bogus",
                ]),
                prop::sample::select(vec![
                    "0", "1", "3", "-1", "-3", "7", "0.5", "1e9", "NaN", "inf", "-inf",
                    "18446744073709551615", "99999999999999999999999", "abc", "", "1..5",
                    "5..1", "1,2,3,4", "0,0,0,0", "none", "raft", "paxos", "warn", "--json",
                    "/nonexistent/file.toml",
                ]),
            ),
            0..6,
        ),
    ) {
        let mut args: Vec<&str> = vec![command];
        for (flag, value) in &pairs {
            args.push(flag);
            args.push(value);
        }
        // Keep legal runs tiny.
        match command {
            "simulate" => args.extend(["--duration", "0.05"]),
            "bench" => args.extend(["--ops", "20"]),
            _ => {}
        }
        let o = consensus(&args);
        assert_well_behaved(&args, &o);
    }
}

/// `--seeds u64::MAX..u64::MAX` runs exactly one seed and ends.
#[test]
fn the_last_seed_alone_runs_once() {
    let o = consensus(&[
        "simulate",
        "--seeds",
        "18446744073709551615..18446744073709551615",
        "--duration",
        "0.3",
        "--faults",
        "none",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["runs"], 1);
    assert_eq!(j["passed"], 1);
}

/// Through the library: a range ending at `u64::MAX` ends, all 2^64 seeds
/// are not "zero seeds", a stopped campaign reports what it ran and a
/// campaign that ran nothing does not pass.
#[test]
fn campaign_counts_every_seed_and_stops_when_asked() {
    let config = ConsensusConfig {
        cluster_size: 3,
        ..ConsensusConfig::default()
    };
    let driver = Registry::builtin().driver(&config.protocol).unwrap();
    let options = SimulateOptions {
        duration: Duration::from_millis(300),
        faults: consensus_engine::FaultSelection::None,
        ..SimulateOptions::default()
    };
    let last = Campaign::new(
        driver.clone(),
        config.clone(),
        options.clone(),
        u64::MAX - 1..=u64::MAX,
    )
    .run();
    assert_eq!(last.runs, 2);
    assert!(last.passed_all(), "{last:?}");
    assert!(!last.stopped);

    // Every seed there is: stopped after the second run.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let all = Campaign::new(
        driver.clone(),
        config.clone(),
        options.clone(),
        0..=u64::MAX,
    )
    .stop_when(stop)
    .on_progress(move |done, total, _| {
        assert_eq!(total, u64::MAX, "2^64 seeds are shown as u64::MAX");
        if done >= 2 {
            flag.store(true, Ordering::SeqCst);
        }
    })
    .run();
    // The one worker may have started the third seed before the second
    // result reached the callback; no more than that.
    assert!((2..=3).contains(&all.runs), "{} runs", all.runs);
    assert!(all.stopped);
    assert!(all.passed_all(), "{all:?}");

    // Stopped before it began: nothing ran, and that is not a pass.
    let nothing = Campaign::new(driver, config, options, 1..=10)
        .stop_when(Arc::new(AtomicBool::new(true)))
        .run();
    assert_eq!(nothing.runs, 0);
    assert!(!nothing.passed_all());
}

/// `--seeds A..` runs until interrupted; off a terminal it says it is
/// alive after 1, 2, 4 ... runs, and Ctrl-C (SIGINT) prints the summary of
/// the runs made so far.
#[cfg(unix)]
#[test]
fn an_open_campaign_runs_until_interrupted_and_reports() {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(env!("CARGO_BIN_EXE_consensus"))
        .args([
            "simulate",
            "--seeds",
            "7..",
            "--duration",
            "0.3",
            "--faults",
            "none",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (on output, not on the clock) until two runs are done.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let read = err.read_line(&mut line).unwrap();
        assert!(read > 0, "stderr closed before any progress: {seen}");
        seen.push_str(&line);
        if line.starts_with("consensus: 2 runs so far, 0 failed") {
            break;
        }
    }
    assert!(seen.contains("consensus: 1 runs so far"), "{seen}");
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{seen}{rest}");
    assert!(out.contains("seeds 7..:"), "{out}");
    assert!(out.contains("(interrupted)"), "{out}");
    assert!(!out.contains(" 0 runs"), "{out}");
    assert!(!out.contains(" 1 runs,"), "{out}");
}

/// `--rate 0.0001 --duration 5` ends after 5 virtual seconds (it ran
/// 50,000 before), and the one operation it starts is recorded.
#[test]
fn a_slow_rate_keeps_the_duration() {
    let o = consensus(&[
        "simulate",
        "--rate",
        "0.0001",
        "--duration",
        "5",
        "--faults",
        "none",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = last_json(&o);
    let secs = j["virtual_secs"].as_f64().unwrap();
    assert!((5.0..7.0).contains(&secs), "ran {secs} virtual seconds");
    // A long think time does not stretch the run either.
    let o = consensus(&[
        "simulate",
        "--think-time-ms",
        "3600000",
        "--duration",
        "2",
        "--faults",
        "none",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let secs = last_json(&o)["virtual_secs"].as_f64().unwrap();
    assert!((2.0..4.0).contains(&secs), "ran {secs} virtual seconds");
}

/// A rate the clients cannot reach is refused, naming the reachable range.
#[test]
fn an_unreachable_rate_is_refused() {
    assert_refused(
        &["simulate", "--rate", "1000000000"],
        "--rate",
        "1000000000",
    );
    let o = consensus(&["simulate", "--rate", "6000", "--clients", "5"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("--rate 6000") && err.contains("..=5000"),
        "{err}"
    );
}

/// The largest legal number of keys runs, and quickly: memory follows the
/// keys used.
#[test]
fn a_million_keys_run() {
    let o = consensus(&[
        "simulate",
        "--keys",
        "1000000",
        "--duration",
        "0.5",
        "--faults",
        "none",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(last_json(&o)["committed"].as_u64().unwrap() > 0);
}

/// `--clients 0`, `--nodes -3`, `--log bogus`, `bench --nodes 1000`: one
/// line naming the flag, the value and the range.
#[test]
fn the_issues_refusals() {
    assert_refused(&["simulate", "--clients", "0"], "--clients", "0");
    assert_refused(&["simulate", "--nodes", "-3"], "--nodes", "-3");
    assert_refused(&["bench", "--nodes", "1000"], "--nodes", "1000");
    let o = consensus(&["--log", "bogus", "simulate"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("--log") && err.contains("bogus") && err.contains("trace"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1);
}

/// A campaign whose settings no seed can run with (Byzantine replicas for
/// a crash-fault protocol; `byzantine` without `--byzantine F`) is refused
/// in one line before any run, not once per seed; `all,byzantine` runs.
#[test]
fn a_campaign_refuses_impossible_faults_once() {
    for (protocol, faults) in [("raft", "all,byzantine"), ("pbft", "crash,byzantine")] {
        let o = consensus(&[
            "simulate",
            "--protocol",
            protocol,
            "--nodes",
            "4",
            "--faults",
            faults,
            "--seeds",
            "1..50",
        ]);
        assert_eq!(o.status.code(), Some(2), "{protocol} {faults}");
        let err = stderr(&o);
        assert_eq!(err.trim_end().lines().count(), 1, "{faults}: {err}");
        assert!(stdout(&o).is_empty(), "{faults}: no run started");
    }
    let o = consensus(&[
        "simulate",
        "--protocol",
        "pbft",
        "--nodes",
        "4",
        "--byzantine",
        "1",
        "--faults",
        "all,byzantine",
        "--duration",
        "0.5",
        "--seeds",
        "1..2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 passed"), "{}", stdout(&o));
}

/// Flags given on the command line override the configuration file, which
/// overrides the defaults.
#[test]
fn the_config_file_is_respected_under_explicit_flags() {
    let path = temp("c.json");
    std::fs::write(&path, r#"{"cluster_size": 3, "heartbeat_interval_ms": 40}"#).unwrap();
    let file = path.to_str().unwrap();
    let base = [
        "simulate",
        "--duration",
        "0.5",
        "--faults",
        "none",
        "--json",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let o = consensus(&args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        last_json(&o)
    };
    assert_eq!(run(&["--config", file])["nodes"], 3);
    assert_eq!(run(&["--config", file, "--nodes", "4"])["nodes"], 4);
    assert_eq!(run(&[])["nodes"], 5);
    std::fs::remove_file(&path).ok();
}

/// A huge argument or a huge one-line file is echoed as an excerpt only.
#[test]
fn errors_echo_only_an_excerpt() {
    let long = "9".repeat(100_000);
    let o = consensus(&["simulate", "--seed", &long]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.len() < 400, "{} bytes on stderr", err.len());
    assert!(
        err.contains("--seed") && err.contains("100000 characters"),
        "{err}"
    );

    let path = temp("huge.toml");
    std::fs::write(&path, format!("cluster_size = {}", "x".repeat(1_000_000))).unwrap();
    let o = consensus(&["simulate", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.len() < 600, "{} bytes on stderr: {err}", err.len());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    std::fs::remove_file(&path).ok();
}

/// The ranges in the help are the ones enforced (the help text spells
/// them out; this keeps it in step with the constants).
#[test]
fn help_gives_the_enforced_ranges() {
    use consensus_engine::cli::{MAX_BENCH_NODES, MAX_CLIENTS, MAX_KEYS, MAX_NODES};
    let help = stdout(&consensus(&["simulate", "--help"]));
    for range in [
        format!("1..={MAX_NODES}"),
        format!("1..={MAX_CLIENTS}"),
        format!("1..={MAX_KEYS}"),
        format!("0..={}", (MAX_NODES - 1) / 3),
    ] {
        assert!(help.contains(&range), "simulate --help lacks {range}");
    }
    let bench = stdout(&consensus(&["bench", "--help"]));
    assert!(bench.contains(&format!("1..={MAX_BENCH_NODES}")), "{bench}");
    let over = (MAX_NODES + 1).to_string();
    assert_refused(&["simulate", "--nodes", &over], "--nodes", &over);
    let over = (MAX_BENCH_NODES + 1).to_string();
    assert_refused(&["bench", "--nodes", &over], "--nodes", &over);
}
