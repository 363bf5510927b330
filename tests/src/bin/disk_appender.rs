//! The child of the SIGKILL test (`tests/tests/disk_sigkill.rs`): opens a
//! [`DiskStorage`] in the directory given as its first argument and appends
//! batches under load until it is killed, printing one line per successful
//! sync, *after* `sync` returned:
//!
//! ```text
//! ack <last index> <first index> <hard state>
//! ```
//!
//! Entry `i` is `(i, payload(i))`, so the parent can check every entry by
//! its position. Now and then a batch truncates part of itself and appends
//! it again, and the prefix is purged, so truncation, purge, segment
//! rotation and segment deletion are all in flight when the kill lands.
//!
//! Usage: `disk_appender DIR SEED`.
#![forbid(unsafe_code)]

use consensus_actors::storage::{
    DiskOptions, DiskStorage, Durable, HardStateStore, LogStore, StorageError,
};
use consensus_actors::types::LogIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::process::ExitCode;

/// The payload of entry `i`: its index and some bulk, about 100 bytes.
fn payload(i: u64) -> String {
    format!("entry-{i:012}-{}", "x".repeat((i % 90) as usize))
}

fn run(dir: &str, seed: u64) -> Result<(), StorageError> {
    let opts = DiskOptions {
        segment_bytes: 64 << 10,
    };
    let mut store: DiskStorage<u64, (u64, String)> = DiskStorage::open_with(dir, opts)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut hard = store.load_hard_state()?.unwrap_or(0);
    let mut out = std::io::stdout().lock();
    loop {
        let first = store.last_index().get() + 1;
        let n = rng.random_range(1..=64u64);
        let batch: Vec<(u64, String)> = (first..first + n).map(|i| (i, payload(i))).collect();
        store.append(&batch)?;
        if n > 2 && rng.random_bool(0.2) {
            // Take back the second half and append it again, in one sync.
            let cut = first + n / 2;
            store.truncate_suffix(LogIndex(cut))?;
            store.append(&batch[(cut - first) as usize..])?;
        }
        let last = store.last_index().get();
        if last > 2_000 && rng.random_bool(0.05) {
            store.purge_prefix(LogIndex(last - 1_000))?;
        }
        hard += 1;
        store.save_hard_state(&hard)?;
        store.sync()?;
        // Acknowledged only now.
        writeln!(out, "ack {last} {} {hard}", store.first_index().get())
            .and_then(|()| out.flush())
            .map_err(|e| StorageError::Io(format!("stdout: {e}")))?;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(seed)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: disk_appender DIR SEED");
        return ExitCode::from(2);
    };
    match run(dir, seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("disk_appender: {e}");
            ExitCode::FAILURE
        }
    }
}
