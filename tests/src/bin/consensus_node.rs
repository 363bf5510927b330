//! `consensus node` for the multi-process tests: the same flags and the
//! same library entry point ([`consensus_engine::node::run`]) as the
//! `consensus` program's `node` subcommand, built by this crate so that
//! `CARGO_BIN_EXE_consensus_node` always names a binary of the current
//! sources (a test cannot ask cargo to build another crate's binary).
#![forbid(unsafe_code)]

use clap::Parser;
use consensus_engine::node::{run, NodeArgs, NodeRunError};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "consensus_node")]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!(
                "consensus node: {}",
                e.to_string().lines().next().unwrap_or("")
            );
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    match run(cli.node) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ NodeRunError::Runtime(_)) => {
            eprintln!("consensus node: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("consensus node: {e}");
            ExitCode::from(2)
        }
    }
}
