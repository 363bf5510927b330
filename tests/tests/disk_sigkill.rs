//! Synced before acknowledged, under SIGKILL: a child process
//! (`src/bin/disk_appender.rs`) appends batches to a `DiskStorage` and
//! prints an acknowledgement after each sync returns; the test kills it
//! with SIGKILL after a random number of acknowledgements (so the kill
//! lands at a random point of a write, an fdatasync, a rotation or a
//! deletion), 20 times on the same directory. After every kill the store
//! reopens, and every acknowledged entry is there, at its position, in
//! order; acknowledged purges and hard state are not undone.
#![forbid(unsafe_code)]

use consensus_actors::storage::{DiskOptions, DiskStorage, HardStateStore, LogStore};
use consensus_actors::types::LogIndex;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const KILLS: u64 = 20;

/// What the child acknowledged last: (last index, first index, hard state).
fn parse_ack(line: &str) -> Option<(u64, u64, u64)> {
    let mut it = line.strip_prefix("ack ")?.split(' ');
    let mut next = || it.next()?.parse().ok();
    Some((next()?, next()?, next()?))
}

#[test]
fn every_acknowledged_entry_survives_sigkill() {
    let dir = tempfile::TempDir::new().expect("temporary directory");
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let mut acked: Option<(u64, u64, u64)> = None;
    let mut recovered_torn = 0;
    for round in 0..KILLS {
        let wanted_acks = rng.random_range(1..=120u32);
        let mut child = Command::new(env!("CARGO_BIN_EXE_disk_appender"))
            .arg(dir.path())
            .arg(round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn disk_appender");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < wanted_acks {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                other => panic!("round {round}: the child stopped early: {other:?}"),
            };
            let ack = parse_ack(&line).unwrap_or_else(|| panic!("bad line {line:?}"));
            if let Some(prev) = acked {
                assert!(
                    ack.0 >= prev.0 && ack.2 > prev.2,
                    "acks go forward: {prev:?} then {ack:?}"
                );
            }
            acked = Some(ack);
            seen += 1;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let (last, first, hard) = acked.expect("at least one ack");
        let store: DiskStorage<u64, (u64, String)> = DiskStorage::open_with(
            dir.path(),
            DiskOptions {
                segment_bytes: 64 << 10,
            },
        )
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        recovered_torn += store.recovery().torn_bytes_cut;
        let (f, l) = (store.first_index().get(), store.last_index().get());
        assert!(
            l >= last,
            "round {round}: acknowledged up to {last}, recovered up to {l}"
        );
        assert!(
            f >= first,
            "round {round}: an acknowledged purge up to {} was undone (first {f})",
            first - 1
        );
        assert!(
            f <= last,
            "round {round}: first index {f} past acknowledged last {last}"
        );
        assert!(
            store.load_hard_state().unwrap().unwrap_or(0) >= hard,
            "round {round}: hard state went back"
        );
        let entries = store
            .entries(LogIndex(f), LogIndex(l + 1), usize::MAX)
            .unwrap_or_else(|e| panic!("round {round}: reading {f}..={l}: {e}"));
        for (k, (i, payload)) in entries.iter().enumerate() {
            let at = f + k as u64;
            assert_eq!(*i, at, "round {round}: entry at {at} holds index {i}");
            assert!(
                payload.starts_with(&format!("entry-{at:012}-")),
                "round {round}: entry {at} holds {payload:?}"
            );
        }
    }
    let (last, _, hard) = acked.expect("acks");
    assert!(hard >= KILLS, "every round acknowledged something");
    eprintln!("{KILLS} kills, {hard} syncs acknowledged, last index {last}, {recovered_torn} torn bytes cut on reopen");
}
