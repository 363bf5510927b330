//! The client workload of a simulation: concurrent clients that send
//! key-value commands to the cluster, follow leader hints, and record every
//! operation (invocation, outcome, virtual times) in one
//! [`HistoryRecorder`] for the linearizability check.
//!
//! Each client runs one operation at a time. An answer that proves the
//! command was not applied (not the leader, refused, dropped) is recorded
//! as a failure; a timeout or a lost node is recorded as unknown, and the
//! client then continues under a fresh client id, as Jepsen does, because
//! its previous operation may still take effect at any later time.

use crate::error::NodeError;
use crate::plugin::NodeDirectory;
use consensus_actors::history::HistoryRecorder;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::metrics::LatencyHistogram;
use consensus_actors::sim::clock;
use consensus_actors::types::{ClientId, NodeId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::task::Poll;
use tokio::time::{Duration, Instant};

/// How long a client waits before retrying when it knows no leader.
const RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// Keys whose names are built up front (memory must follow the keys used,
/// not `--keys`).
const NAMED_KEYS: usize = 1024;
/// The most operations [`Workload::reserve_for`] makes room for up front.
const MAX_RESERVED_OPS: usize = 1 << 20;

/// The shape of the client workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadOptions {
    /// Concurrent clients.
    pub clients: usize,
    /// Distinct keys the clients use (`k0`, `k1`, ...).
    pub keys: usize,
    /// Target rate of the whole workload in operations per virtual second;
    /// `None`: each client starts its next operation as soon as the previous
    /// one ended (after `think_time`).
    pub rate: Option<f64>,
    /// Pause between two operations of one client when `rate` is `None`.
    pub think_time: Duration,
    /// How long a client waits for an answer before recording the outcome
    /// as unknown.
    pub request_timeout: Duration,
    /// Relative weights of get, put, cas and delete.
    pub mix: OpMix,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            clients: 5,
            keys: 8,
            rate: None,
            think_time: Duration::from_millis(10),
            request_timeout: Duration::from_secs(1),
            mix: OpMix::default(),
        }
    }
}

impl WorkloadOptions {
    /// Checks the settings; returns a one-line reason when one is impossible.
    pub fn validate(&self) -> Result<(), String> {
        if self.keys == 0 {
            return Err("the workload needs at least one key".into());
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("--rate must be a positive number, got {rate}"));
            }
            if self.clients == 0 {
                return Err("--rate needs at least one client".into());
            }
        }
        if self.request_timeout.is_zero() {
            return Err("the request timeout must be positive".into());
        }
        if self.mix.total() == 0 {
            return Err("the operation mix has no weight".into());
        }
        Ok(())
    }
}

/// Relative weights of the operations clients issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpMix {
    /// Reads.
    pub get: u32,
    /// Writes.
    pub put: u32,
    /// Compare-and-swaps.
    pub cas: u32,
    /// Deletes.
    pub delete: u32,
}

impl Default for OpMix {
    fn default() -> Self {
        Self {
            get: 40,
            put: 35,
            cas: 20,
            delete: 5,
        }
    }
}

impl OpMix {
    fn total(&self) -> u32 {
        self.get + self.put + self.cas + self.delete
    }
}

/// What the clients saw.
#[derive(Clone, Debug, Default)]
pub struct WorkloadStats {
    /// Operations sent.
    pub invoked: u64,
    /// Operations that took effect (acknowledged).
    pub ok: u64,
    /// Operations that certainly did not take effect.
    pub failed: u64,
    /// Operations whose outcome is unknown.
    pub unknown: u64,
    /// Virtual latency of acknowledged operations, in microseconds.
    pub latency: LatencyHistogram,
    /// Acknowledged operations per second of virtual time (index: second).
    pub ok_per_second: Vec<u64>,
}

impl WorkloadStats {
    fn record_ok(&mut self, latency_us: u64, at_us: u64) {
        self.ok += 1;
        self.latency.record(latency_us);
        let second = usize::try_from(at_us / 1_000_000).unwrap_or(usize::MAX);
        if second < 1_000_000 {
            if self.ok_per_second.len() <= second {
                self.ok_per_second.resize(second + 1, 0);
            }
            self.ok_per_second[second] += 1;
        }
    }
}

/// The state the clients of one run share (single-threaded).
#[derive(Clone)]
pub struct Workload {
    options: WorkloadOptions,
    directory: NodeDirectory,
    recorder: Rc<RefCell<HistoryRecorder>>,
    stats: Rc<RefCell<WorkloadStats>>,
    origin: Instant,
    /// The names `k0`, `k1`, ... of the first [`NAMED_KEYS`] keys, built
    /// once; the names of the others are built when used.
    key_names: Rc<[String]>,
}

impl Workload {
    /// A workload on the nodes of `directory`, timing everything from
    /// `origin`.
    pub fn new(options: WorkloadOptions, directory: NodeDirectory, origin: Instant) -> Self {
        let key_names = (0..options.keys.min(NAMED_KEYS))
            .map(|k| format!("k{k}"))
            .collect();
        Self {
            key_names,
            options,
            directory,
            recorder: Rc::new(RefCell::new(HistoryRecorder::new())),
            stats: Rc::new(RefCell::new(WorkloadStats::default())),
            origin,
        }
    }

    /// Makes room in the history for the operations a run of `duration`
    /// is expected to invoke at the paced rate (none when unpaced), capped
    /// at `MAX_RESERVED_OPS`: the record then does not regrow as it fills.
    pub fn reserve_for(&self, duration: Duration) {
        let Some(rate) = self.options.rate else {
            return;
        };
        let expected = (rate * duration.as_secs_f64()).ceil();
        // Casting a float to an integer saturates (NaN gives 0).
        let expected = (expected as usize).min(MAX_RESERVED_OPS);
        self.recorder.borrow_mut().reserve(expected);
    }

    /// The history recorded so far.
    pub fn recorder(&self) -> Rc<RefCell<HistoryRecorder>> {
        self.recorder.clone()
    }

    /// The statistics so far.
    pub fn stats(&self) -> WorkloadStats {
        self.stats.borrow().clone()
    }

    fn now_us(&self) -> u64 {
        self.micros_at(clock::now())
    }

    fn micros_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// Runs client number `index` (0-based) until `deadline`, drawing its
    /// choices from `rng`. Spawn one future per client.
    pub async fn run_client(self, index: usize, mut rng: ChaCha8Rng, deadline: Instant) {
        let clients = self.options.clients.max(1) as u64;
        let mut generation: u64 = 0;
        let client_of = |generation: u64| ClientId(index as u64 + 1 + generation * clients);
        let mut hint: Option<NodeId> = None;
        let mut seq: u64 = 0;
        // What each key (by number) held after the client's last
        // acknowledged command on it: only the keys used take room (only
        // looked up, never iterated).
        let mut seen: BTreeMap<usize, Option<String>> = BTreeMap::new();
        let interval = self
            .options
            .rate
            .map(|rate| Duration::from_secs_f64(clients as f64 / rate));
        // Spread the clients' first operations over one interval.
        let mut next_start = clock::now()
            + interval.map_or(Duration::ZERO, |i| i.mul_f64(index as f64 / clients as f64));
        // One timer for the whole life of the client instead of a fresh one
        // per operation. While a request is out it is armed for the next
        // start of the paced workload if that comes before the request's
        // deadline (the usual case), and moved on to the deadline only if
        // it fires first: one re-arm per operation, not two.
        let timer = tokio::time::sleep_until(next_start);
        tokio::pin!(timer);
        loop {
            if interval.is_some() {
                // The next paced start is past the end of the run: waiting
                // for it would stretch the run past its duration.
                if next_start >= deadline {
                    break;
                }
                if timer.deadline() != next_start {
                    timer.as_mut().reset(next_start);
                }
                timer.as_mut().await;
            }
            let now = clock::now();
            if now >= deadline {
                break;
            }
            let Some(target) = self.pick_target(&mut hint, &mut rng) else {
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            };
            let Some(handle) = self.directory.get(target) else {
                hint = None;
                continue;
            };
            seq += 1;
            let (key, command) = self.next_command(&mut rng, index, generation, seq, &seen);
            let client = client_of(generation);
            let invoked_us = self.micros_at(now);
            // The command goes to the node; the history keeps its own copy
            // (the only clone per operation), which `learn` reads back.
            let op = self
                .recorder
                .borrow_mut()
                .invoke(client, command.clone(), invoked_us);
            self.stats.borrow_mut().invoked += 1;
            let request_deadline = now + self.options.request_timeout;
            let wake =
                interval.map_or(request_deadline, |i| (next_start + i).min(request_deadline));
            timer.as_mut().reset(wake);
            // The answer, or `None` once the request's deadline passed.
            let answer = {
                let submitted = handle.submit(client, command);
                tokio::pin!(submitted);
                let mut timer = timer.as_mut();
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(answer) = submitted.as_mut().poll(cx) {
                        return Poll::Ready(Some(answer));
                    }
                    loop {
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        if timer.deadline() >= request_deadline {
                            return Poll::Ready(None);
                        }
                        timer.as_mut().reset(request_deadline);
                    }
                })
                .await
            };
            let done_us = self.now_us();
            let mut backoff = false;
            match answer {
                Some(Ok(committed)) => {
                    {
                        let mut recorder = self.recorder.borrow_mut();
                        if let Some(command) = recorder.command(op) {
                            learn(seen.entry(key).or_default(), command, &committed.output);
                        }
                        if let Err(e) = recorder.ok(op, committed.output, done_us) {
                            tracing::error!(error = %e, "history: cannot record an acknowledgement");
                        }
                    }
                    hint = Some(target);
                    self.stats
                        .borrow_mut()
                        .record_ok(done_us.saturating_sub(invoked_us), done_us);
                }
                Some(Err(error)) if !error.may_have_applied() => {
                    if let Err(e) = self.recorder.borrow_mut().fail(op, done_us) {
                        tracing::error!(error = %e, "history: cannot record a failure");
                    }
                    self.stats.borrow_mut().failed += 1;
                    match error {
                        NodeError::NotLeader {
                            leader: Some(leader),
                        } if leader != target => hint = Some(leader),
                        _ => {
                            hint = None;
                            backoff = true;
                        }
                    }
                }
                Some(Err(_)) | None => {
                    if let Err(e) = self.recorder.borrow_mut().unknown(op, done_us) {
                        tracing::error!(error = %e, "history: cannot record an unknown outcome");
                    }
                    self.stats.borrow_mut().unknown += 1;
                    generation += 1;
                    hint = None;
                    backoff = true;
                }
            }
            match interval {
                Some(i) => {
                    next_start += i;
                    if backoff && next_start < clock::now() + RETRY_BACKOFF {
                        next_start = clock::now() + RETRY_BACKOFF;
                    }
                }
                None => {
                    let pause = if backoff {
                        RETRY_BACKOFF.max(self.options.think_time)
                    } else {
                        self.options.think_time
                    };
                    if pause.is_zero() {
                        tokio::task::yield_now().await;
                    } else {
                        // Never past the end of the run (a long think
                        // time must not stretch it).
                        tokio::time::sleep_until((clock::now() + pause).min(deadline)).await;
                    }
                }
            }
        }
    }

    fn pick_target(&self, hint: &mut Option<NodeId>, rng: &mut ChaCha8Rng) -> Option<NodeId> {
        if let Some(h) = *hint {
            if self.directory.contains(h) {
                return Some(h);
            }
            *hint = None;
        }
        let up = self.directory.ids();
        if up.is_empty() {
            return None;
        }
        Some(up[rng.random_range(0..up.len())])
    }

    /// The next command and the number of its key.
    fn next_command(
        &self,
        rng: &mut ChaCha8Rng,
        index: usize,
        generation: u64,
        seq: u64,
        seen: &BTreeMap<usize, Option<String>>,
    ) -> (usize, KvCommand) {
        let k = rng.random_range(0..self.options.keys);
        let key = match self.key_names.get(k) {
            Some(name) => name.clone(),
            None => format!("k{k}"),
        };
        // Only writes carry a value (built after every draw: the draws and
        // so the commands stay the same).
        let value = || value_name(index, generation, seq);
        let mix = self.options.mix;
        let mut roll = rng.random_range(0..mix.total());
        if roll < mix.get {
            return (k, KvCommand::get(key));
        }
        roll -= mix.get;
        if roll < mix.put {
            return (k, KvCommand::put(key, value()));
        }
        roll -= mix.put;
        if roll < mix.cas {
            let expected = seen.get(&k).cloned().flatten();
            return (
                k,
                KvCommand::Cas {
                    key,
                    expected,
                    new: value(),
                },
            );
        }
        (k, KvCommand::delete(key))
    }
}

/// The value client `index` writes in its `seq`-th command of generation
/// `generation`: `c{index}g{generation}s{seq}` (built without the
/// formatting machinery: one per write).
fn value_name(index: usize, generation: u64, seq: u64) -> String {
    /// Writes the decimal digits of `n` at the end of `out[..end]`'s free
    /// space, backwards; returns where they start.
    fn put_decimal(out: &mut [u8], mut end: usize, mut n: u64) -> usize {
        loop {
            end -= 1;
            out[end] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return end;
            }
        }
    }
    // Three numbers of at most 20 digits and three letters, written from
    // the end of the buffer.
    let mut buf = [0u8; 64];
    let mut at = put_decimal(&mut buf, 64, seq);
    at -= 1;
    buf[at] = b's';
    at = put_decimal(&mut buf, at, generation);
    at -= 1;
    buf[at] = b'g';
    at = put_decimal(&mut buf, at, index as u64);
    at -= 1;
    buf[at] = b'c';
    // Only ASCII letters and digits were written: the conversion is
    // lossless and copies once.
    String::from_utf8_lossy(&buf[at..]).into_owned()
}

/// Sets `slot` to `value`, reusing the slot's buffer when it holds one.
fn set(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(held) => {
            held.clear();
            held.push_str(value);
        }
        None => *slot = Some(value.to_owned()),
    }
}

/// Remembers in `slot` what a key held after an acknowledged command on it,
/// so later compare-and-swaps have a fair chance to hold.
fn learn(slot: &mut Option<String>, command: &KvCommand, output: &KvOutput) {
    match (command, output) {
        (KvCommand::Get { .. }, KvOutput::Value(v)) => slot.clone_from(v),
        (KvCommand::Put { value, .. }, _) => set(slot, value),
        (KvCommand::Delete { .. }, _) => *slot = None,
        (KvCommand::Cas { new, .. }, KvOutput::CasOk) => set(slot, new),
        (KvCommand::Cas { .. }, KvOutput::CasFailed(actual)) => slot.clone_from(actual),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value names are those `format!("c{index}g{generation}s{seq}")`
    /// gives, zeros and the largest numbers included.
    #[test]
    fn value_names_spell_client_generation_and_sequence() {
        assert_eq!(value_name(0, 0, 1), "c0g0s1");
        assert_eq!(value_name(49, 3, 1207), "c49g3s1207");
        assert_eq!(
            value_name(10, u64::MAX, 100),
            format!("c10g{}s100", u64::MAX)
        );
    }

    /// What a key held is learnt from reads, writes, deletes and both
    /// outcomes of a compare-and-swap.
    #[test]
    fn learn_follows_every_acknowledged_command() {
        let mut slot = None;
        learn(&mut slot, &KvCommand::put("k1", "a"), &KvOutput::Ok);
        assert_eq!(slot.as_deref(), Some("a"));
        let cas = KvCommand::Cas {
            key: "k1".into(),
            expected: Some("a".into()),
            new: "b".into(),
        };
        learn(&mut slot, &cas, &KvOutput::CasOk);
        assert_eq!(slot.as_deref(), Some("b"));
        learn(&mut slot, &cas, &KvOutput::CasFailed(Some("z".into())));
        assert_eq!(slot.as_deref(), Some("z"));
        learn(
            &mut slot,
            &KvCommand::delete("k1"),
            &KvOutput::Deleted(true),
        );
        assert_eq!(slot, None);
        learn(
            &mut slot,
            &KvCommand::get("k1"),
            &KvOutput::Value(Some("y".into())),
        );
        assert_eq!(slot.as_deref(), Some("y"));
    }
}
