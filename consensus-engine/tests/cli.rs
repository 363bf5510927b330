//! The `consensus` program, run as a user would: JSON output and its
//! fields, replay by seed, history written by `simulate` and checked by
//! `check-history` (agreeing with the library), the report picture,
//! campaigns, the benchmark, and refusals of bad flags and impossible
//! configurations (non-zero exit, one line naming the problem).
#![forbid(unsafe_code)]

use consensus_actors::history::{check_history, History};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn consensus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_consensus"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the consensus binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn last_json(o: &Output) -> Value {
    let out = stdout(o);
    let line = out.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("consensus-cli-{}-{name}", std::process::id()))
}

fn assert_refused(args: &[&str], needle: &str) {
    let o = consensus(args);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line, got {err:?}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} should name {needle:?}"
    );
}

const SHORT: &[&str] = &["simulate", "--duration", "3", "--seed", "4"];

#[test]
fn simulate_json_has_every_field_and_replays_by_seed() {
    let args: Vec<&str> = SHORT.iter().copied().chain(["--json"]).collect();
    let a = consensus(&args);
    assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
    let ja = last_json(&a);
    for field in [
        "protocol",
        "nodes",
        "seed",
        "virtual_secs",
        "committed",
        "leader_changes",
        "latency_us",
        "safety_ok",
        "linearizable",
        "violations",
        "trace_hash",
    ] {
        assert!(ja.get(field).is_some(), "missing {field} in {ja}");
    }
    for p in ["p50", "p99", "max"] {
        assert!(ja["latency_us"][p].is_u64(), "latency_us.{p}");
    }
    assert_eq!(ja["protocol"], "raft");
    assert_eq!(ja["nodes"], 5);
    assert_eq!(ja["seed"], 4);
    assert_eq!(ja["safety_ok"], true);
    assert_eq!(ja["linearizable"], true);
    assert!(ja["violations"].as_array().unwrap().is_empty());
    assert!(ja["committed"].as_u64().unwrap() > 0);
    assert!(ja["virtual_secs"].as_f64().unwrap() >= 3.0);

    let b = consensus(&args);
    let jb = last_json(&b);
    assert_eq!(ja["trace_hash"], jb["trace_hash"], "same seed, same trace");
    assert_eq!(ja["committed"], jb["committed"]);

    let other: Vec<&str> = ["simulate", "--duration", "3", "--seed", "5", "--json"].to_vec();
    let jc = last_json(&consensus(&other));
    assert_ne!(
        ja["trace_hash"], jc["trace_hash"],
        "another seed, another trace"
    );
}

#[test]
fn history_written_by_simulate_is_checked_the_same_by_the_program_and_the_library() {
    let history = temp("history.json");
    let svg = temp("report.svg");
    let trace = temp("trace.jsonl");
    let o = consensus(&[
        "simulate",
        "--duration",
        "4",
        "--seed",
        "9",
        "--nodes",
        "3",
        "--faults",
        "crash,loss",
        "--history",
        history.to_str().unwrap(),
        "--report",
        svg.to_str().unwrap(),
        "--trace",
        trace.to_str().unwrap(),
        "--json",
    ]);
    let report = last_json(&o);
    let text = std::fs::read_to_string(&history).unwrap();
    let parsed = History::from_json(&text).unwrap();
    let library = check_history(&parsed);
    assert_eq!(Value::Bool(library.linearizable), report["linearizable"]);
    assert_eq!(library.linearizable, o.status.success());

    let c = consensus(&["check-history", history.to_str().unwrap(), "--json"]);
    let checked = last_json(&c);
    assert_eq!(checked["linearizable"], report["linearizable"]);
    assert_eq!(
        checked["operations"].as_u64().unwrap() as usize,
        parsed.len()
    );
    assert_eq!(
        checked["keys"].as_u64().unwrap() as usize,
        parsed.keys().len()
    );
    assert!(checked["elapsed_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        c.status.code(),
        Some(if library.linearizable { 0 } else { 1 })
    );

    // Streamed in small segments, or read whole: the same verdict and
    // counts, and `mode` says which.
    let small = consensus(&[
        "check-history",
        history.to_str().unwrap(),
        "--json",
        "--segment-ops",
        "50",
    ]);
    let whole = consensus(&[
        "check-history",
        history.to_str().unwrap(),
        "--json",
        "--segment-ops",
        "0",
    ]);
    let (small, whole) = (last_json(&small), last_json(&whole));
    for field in ["verdict", "operations", "keys"] {
        assert_eq!(small[field], whole[field], "{field}");
    }
    assert!(whole.get("mode").is_none(), "{whole}");
    let mode = &small["mode"];
    if library.linearizable {
        assert_eq!(mode["streamed"], Value::Bool(true), "{small}");
        assert!(mode["segments"].as_u64().unwrap() >= 2, "{small}");
    } else {
        assert_eq!(mode["streamed"], Value::Bool(false), "{small}");
        assert!(mode["in_memory_because"].is_string(), "{small}");
    }

    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg"));
    assert!(picture.contains("committed ops/s") && picture.contains("leads term"));
    let trace_text = std::fs::read_to_string(&trace).unwrap();
    let first: Value = serde_json::from_str(trace_text.lines().next().unwrap()).unwrap();
    assert!(first.get("kind").is_some() && first.get("hash").is_some());
    for f in [history, svg, trace] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn check_history_reads_jepsen_logs_and_refuses_garbage() {
    let good = temp("good.log");
    std::fs::write(
        &good,
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\n\
         INFO  jepsen.util - 0\t:ok\t:write\t1\n\
         INFO  jepsen.util - 1\t:invoke\t:read\tnil\n\
         INFO  jepsen.util - 1\t:ok\t:read\t1\n",
    )
    .unwrap();
    let o = consensus(&[
        "check-history",
        good.to_str().unwrap(),
        "--format",
        "jepsen",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["linearizable"], true);
    assert_eq!(j["operations"], 2);
    assert_eq!(j["keys"], 1);

    let bad = temp("bad.log");
    std::fs::write(
        &bad,
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\n\
         INFO  jepsen.util - 0\t:ok\t:write\t1\n\
         INFO  jepsen.util - 1\t:invoke\t:read\tnil\n\
         INFO  jepsen.util - 1\t:ok\t:read\t2\n",
    )
    .unwrap();
    let o = consensus(&["check-history", bad.to_str().unwrap(), "--format", "jepsen"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("NOT linearizable"));

    // Our JSON format is the default: a Jepsen log is unparsable as JSON.
    assert_refused(
        &["check-history", good.to_str().unwrap()],
        "not a JSON history",
    );
    assert_refused(&["check-history", "/nonexistent/h.json"], "cannot read");
    for f in [good, bad] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn bad_flags_and_impossible_configurations_are_refused() {
    assert_refused(
        &["simulate", "--nodes", "0"],
        "--nodes <N>': expected a whole number in 1..=128",
    );
    assert_refused(&["simulate", "--faults", "bitflip"], "bitflip");
    assert_refused(&["simulate", "--protocol", "zab"], "zab");
    assert_refused(
        &[
            "simulate",
            "--protocol",
            "pbft",
            "--nodes",
            "3",
            "--byzantine",
            "1",
        ],
        "at least 4 nodes",
    );
    assert_refused(&["simulate", "--heartbeat-ms", "400"], "heartbeat");
    assert_refused(&["simulate", "--election-timeout-ms", "300..100"], "empty");
    assert_refused(&["simulate", "--byzantine", "1"], "byzantine");
    assert_refused(&["simulate", "--duration", "0"], "--duration");
    assert_refused(&["simulate", "--keys", "0"], "key");
    assert_refused(&["simulate", "--frobnicate"], "--frobnicate");
    assert_refused(&["simulate", "--seed", "1", "--seeds", "1..3"], "--seed");
    assert_refused(&["bench", "--clients", "0"], "--clients");
    assert_refused(&["check-history"], "FILE");
}

#[test]
fn campaign_lists_results_and_replays() {
    let o = consensus(&[
        "simulate",
        "--seeds",
        "1..3",
        "--duration",
        "2",
        "--nodes",
        "3",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = last_json(&o);
    assert_eq!(j["runs"], 3);
    assert_eq!(j["passed"], 3);
    assert!(j["failed"].as_array().unwrap().is_empty());
    let human = consensus(&[
        "simulate",
        "--seeds",
        "1..2",
        "--duration",
        "1",
        "--nodes",
        "3",
    ]);
    assert!(
        stdout(&human).contains("2 runs, 2 passed, 0 failed"),
        "{}",
        stdout(&human)
    );
    // Not a terminal: no progress bar on stderr.
    assert!(!stderr(&human).contains('['));
}

#[test]
fn bench_reports_throughput_and_latency() {
    let o = consensus(&[
        "bench",
        "--nodes",
        "3",
        "--clients",
        "8",
        "--ops",
        "500",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = last_json(&o);
    assert!(j["ops_per_sec"].as_f64().unwrap() > 0.0);
    for p in ["p50", "p99", "max"] {
        assert!(j["latency_us"][p].is_u64(), "latency_us.{p}");
    }
    assert_eq!(j["ops"], 500);
    assert_eq!(j["nodes"], 3);
}

#[test]
fn help_explains_every_flag() {
    let top = stdout(&consensus(&["--help"]));
    for word in ["simulate", "check-history", "bench", "Exit status"] {
        assert!(top.contains(word), "--help lacks {word}");
    }
    let sim = stdout(&consensus(&["simulate", "--help"]));
    for flag in [
        "--protocol",
        "--nodes",
        "--seed",
        "--seeds",
        "--duration",
        "--clients",
        "--faults",
        "--json",
        "--trace",
        "--history",
        "--report",
        "--keys",
        "--rate",
        "--jobs",
    ] {
        assert!(sim.contains(flag), "simulate --help lacks {flag}");
    }
    let check = stdout(&consensus(&["check-history", "--help"]));
    for flag in [
        "--format",
        "--json",
        "--max-steps",
        "--timeout",
        "--segment-ops",
    ] {
        assert!(check.contains(flag), "check-history --help lacks {flag}");
    }
    let bench = stdout(&consensus(&["bench", "--help"]));
    for flag in [
        "--protocol",
        "--nodes",
        "--clients",
        "--ops",
        "--json",
        "--command",
    ] {
        assert!(bench.contains(flag), "bench --help lacks {flag}");
    }
}

#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    // `consensus simulate | head -0`: the reader is gone before the first
    // line is written.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_consensus"))
        .args(SHORT)
        .env_remove("RUST_LOG")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("the consensus binary runs");
    let err = stderr(&o);
    assert!(
        !err.contains("panicked"),
        "no panic on a broken pipe: {err}"
    );
    assert_eq!(o.status.code(), Some(141), "stderr: {err}");
}

#[test]
fn node_refuses_bad_flags_busy_ports_and_unreadable_files_in_one_line() {
    let dir = tempfile::TempDir::new().expect("temporary directory");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let busy = busy.local_addr().expect("addr").to_string();
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        l.local_addr().expect("addr").to_string()
    };
    let (listen, http) = (free(), free());
    let node = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["node", "--id", "1", "--listen", &listen, "--http", &http]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").expect("write");
    let file = file.to_str().expect("utf-8 path");
    let short_key = dir.path().join("short.key");
    std::fs::write(&short_key, "tiny\n").expect("write");
    let short_key = short_key.to_str().expect("utf-8 path");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            [
                "node",
                "--id",
                "0",
                "--listen",
                &listen,
                "--http",
                &http,
                "--data-dir",
                data,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            "not a node id",
        ),
        (node(&["--data-dir", data, "--peers", "2"]), "ID=RAFT_ADDR"),
        (
            node(&["--data-dir", data, "--peers", "2=nowhere"]),
            "HOST:PORT",
        ),
        (
            node(&["--data-dir", data, "--protocol", "pbft"]),
            "raft only",
        ),
        (node(&["--data-dir", file]), "data dir"),
        (
            node(&["--data-dir", data, "--cluster-key-file", "/nonexistent/key"]),
            "cluster key file",
        ),
        (
            node(&["--data-dir", data, "--cluster-key-file", short_key]),
            "at least 16",
        ),
        (
            [
                "node",
                "--id",
                "1",
                "--listen",
                &busy,
                "--http",
                &http,
                "--data-dir",
                data,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            "cannot listen on",
        ),
        (
            [
                "node",
                "--id",
                "1",
                "--listen",
                &listen,
                "--http",
                &busy,
                "--data-dir",
                data,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            "cannot listen on",
        ),
        (
            ["node", "--id", "1", "--listen", &listen, "--http", &http]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "--data-dir",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, needle);
    }
    let help = stdout(&consensus(&["node", "--help"]));
    for flag in [
        "--id",
        "--listen",
        "--http",
        "--peers",
        "--data-dir",
        "--protocol",
        "--cluster-key-file",
        "--join",
    ] {
        assert!(help.contains(flag), "node --help lacks {flag}");
    }
}
