//! `consensus bench`: throughput and latency of an in-process cluster on
//! the real clock.
//!
//! The cluster runs on one actix System over a current-thread tokio runtime
//! (one core), its nodes connected by a zero-delay
//! [`LocalNetwork`](crate::network::LocalNetwork), with safety checking off.
//! `clients` concurrent clients each keep one command in flight and submit
//! straight to the leader until `ops` commands have committed; latency is
//! measured per command from submission to the committed answer.

use crate::error::{EngineError, NodeError};
use crate::host::{ClusterHost, LocalCluster, LocalOptions};
use crate::plugin::{NodeDirectory, NodeHandle, ProtocolPlugin};
use crate::simulate::LatencySummary;
use actix::System;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::KvCommand;
use consensus_actors::metrics::LatencyHistogram;
use consensus_actors::types::{ClientId, ConsensusProtocol, NodeId, NodeState};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use tokio::time::{Duration, Instant};

/// Which command the benchmark replicates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchCommand {
    /// Empty commands (`KvCommand::Noop`): the cost of consensus alone.
    #[default]
    Noop,
    /// Small writes (`Put k<i % 1024> = v`).
    Put,
}

/// Settings of a benchmark run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchOptions {
    /// Concurrent clients, each with one command in flight.
    pub clients: usize,
    /// Commands to commit.
    pub ops: u64,
    /// What to replicate.
    pub command: BenchCommand,
    /// How long to wait for the first leader.
    pub leader_timeout: Duration,
    /// How long one command may take before the run fails.
    pub request_timeout: Duration,
    /// How often to sample the process' resident memory (`None`: never).
    pub rss_interval: Option<Duration>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            clients: 1,
            ops: 100_000,
            command: BenchCommand::Noop,
            leader_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            rss_interval: None,
        }
    }
}

/// The result of a benchmark, as `consensus bench --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The protocol.
    pub protocol: ConsensusProtocol,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Commands committed.
    pub ops: u64,
    /// What was replicated.
    pub command: BenchCommand,
    /// Wall-clock seconds from the first submission to the last answer.
    pub elapsed_secs: f64,
    /// `ops / elapsed_secs`.
    pub ops_per_sec: f64,
    /// Per-command latency, submission to committed answer, microseconds.
    pub latency_us: LatencySummary,
    /// Submissions retried (leader changes during the run).
    pub retries: u64,
    /// The leader when the run started.
    pub leader: NodeId,
    /// Peak resident memory of the process, in MiB (Linux only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    /// Resident memory sampled during the run, in MiB (Linux only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rss_samples_mib: Vec<f64>,
}

/// Checks the settings of a benchmark.
pub fn validate(config: &ConsensusConfig, options: &BenchOptions) -> Result<(), EngineError> {
    config.validate()?;
    if options.clients == 0 {
        return Err(EngineError::InvalidSetting(
            "--clients must be at least 1".into(),
        ));
    }
    if options.ops == 0 {
        return Err(EngineError::InvalidSetting(
            "--ops must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Runs a benchmark of plug-in `P` on a fresh real-clock System.
pub fn bench<P: ProtocolPlugin>(
    config: &ConsensusConfig,
    options: &BenchOptions,
) -> Result<BenchReport, EngineError> {
    validate(config, options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::InvalidSetting(format!("cannot build a runtime: {e}")))?;
    let system = System::with_tokio_rt(move || runtime);
    let config = config.clone();
    let options = *options;
    let result = system.block_on(async move { run::<P>(&config, &options).await });
    result
}

async fn run<P: ProtocolPlugin>(
    config: &ConsensusConfig,
    options: &BenchOptions,
) -> Result<BenchReport, EngineError> {
    let mut cluster = LocalCluster::<P>::new(
        config,
        LocalOptions {
            seed: 1,
            check_safety: false,
            direct_rpcs: false,
        },
    )?;
    let members: Vec<NodeId> = (1..=config.cluster_size as u64).map(NodeId).collect();
    for &id in &members {
        cluster.start_node(id, members.clone())?;
    }
    let directory = cluster.directory();
    let leader = find_leader(&directory, options.leader_timeout).await?;

    let remaining = Rc::new(Cell::new(options.ops));
    let retries = Rc::new(Cell::new(0u64));
    let latency = Rc::new(RefCell::new(LatencyHistogram::new()));
    let current = Rc::new(RefCell::new(directory.get(leader)));
    let failure: Rc<RefCell<Option<EngineError>>> = Rc::new(RefCell::new(None));
    let rss_samples = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(Cell::new(false));
    let sampler = options.rss_interval.map(|interval| {
        let samples = rss_samples.clone();
        let done = done.clone();
        actix::spawn(async move {
            while !done.get() {
                if let Some(bytes) = resident_bytes() {
                    samples.borrow_mut().push(bytes as f64 / (1024.0 * 1024.0));
                }
                tokio::time::sleep(interval).await;
            }
        })
    });

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.clients);
    for client in 0..options.clients {
        let ctx = ClientCtx {
            client: ClientId(client as u64 + 1),
            remaining: remaining.clone(),
            retries: retries.clone(),
            latency: latency.clone(),
            current: current.clone(),
            directory: directory.clone(),
            failure: failure.clone(),
            options: *options,
        };
        tasks.push(actix::spawn(ctx.run()));
    }
    for task in tasks {
        if let Err(e) = task.await {
            return Err(EngineError::InvalidSetting(format!(
                "a client task failed: {e}"
            )));
        }
    }
    let elapsed = started.elapsed();
    done.set(true);
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }
    if let Some(error) = failure.borrow_mut().take() {
        return Err(error);
    }
    drop(cluster);
    let latency = latency.borrow();
    let elapsed_secs = elapsed.as_secs_f64();
    let rss_samples_mib = rss_samples.borrow().clone();
    Ok(BenchReport {
        protocol: P::PROTOCOL,
        nodes: config.cluster_size,
        clients: options.clients,
        ops: options.ops,
        command: options.command,
        elapsed_secs,
        ops_per_sec: if elapsed_secs > 0.0 {
            options.ops as f64 / elapsed_secs
        } else {
            0.0
        },
        latency_us: LatencySummary {
            p50: latency.p50(),
            p99: latency.p99(),
            max: latency.max(),
        },
        retries: retries.get(),
        leader,
        peak_rss_mib: peak_resident_bytes().map(|b| b as f64 / (1024.0 * 1024.0)),
        rss_samples_mib,
    })
}

struct ClientCtx {
    client: ClientId,
    remaining: Rc<Cell<u64>>,
    retries: Rc<Cell<u64>>,
    latency: Rc<RefCell<LatencyHistogram>>,
    current: Rc<RefCell<Option<Rc<dyn NodeHandle>>>>,
    directory: NodeDirectory,
    failure: Rc<RefCell<Option<EngineError>>>,
    options: BenchOptions,
}

impl ClientCtx {
    async fn run(self) {
        let mut seq: u64 = 0;
        loop {
            if self.failure.borrow().is_some() {
                return;
            }
            let left = self.remaining.get();
            if left == 0 {
                return;
            }
            self.remaining.set(left - 1);
            seq += 1;
            let command = match self.options.command {
                BenchCommand::Noop => KvCommand::Noop,
                BenchCommand::Put => KvCommand::put(format!("k{}", seq % 1024), "v"),
            };
            let mut attempts = 0u32;
            loop {
                let handle = self.current.borrow().clone();
                let Some(handle) = handle else {
                    if !self.relocate().await {
                        return;
                    }
                    continue;
                };
                let began = Instant::now();
                let answer = tokio::time::timeout(
                    self.options.request_timeout,
                    handle.submit(self.client, command.clone()),
                )
                .await;
                match answer {
                    Ok(Ok(_)) => {
                        self.latency.borrow_mut().record_duration(began.elapsed());
                        break;
                    }
                    Ok(Err(NodeError::Refused(_))) => {
                        // Back-pressure: too many in flight; try again soon.
                        self.retries.set(self.retries.get() + 1);
                        tokio::task::yield_now().await;
                    }
                    Ok(Err(error)) => {
                        attempts += 1;
                        self.retries.set(self.retries.get() + 1);
                        if attempts > 20 {
                            *self.failure.borrow_mut() =
                                Some(EngineError::from_node(handle.node(), error));
                            return;
                        }
                        if !self.relocate().await {
                            return;
                        }
                    }
                    Err(_) => {
                        *self.failure.borrow_mut() = Some(EngineError::Timeout {
                            node: handle.node(),
                            waited_ms: self.options.request_timeout.as_millis() as u64,
                        });
                        return;
                    }
                }
            }
        }
    }

    /// Finds the leader again after a failed submission.
    async fn relocate(&self) -> bool {
        match find_leader(&self.directory, self.options.leader_timeout).await {
            Ok(leader) => {
                *self.current.borrow_mut() = self.directory.get(leader);
                true
            }
            Err(e) => {
                *self.failure.borrow_mut() = Some(e);
                false
            }
        }
    }
}

/// Polls every running node until one says it leads; returns it.
pub async fn find_leader(
    directory: &NodeDirectory,
    timeout: Duration,
) -> Result<NodeId, EngineError> {
    let began = Instant::now();
    loop {
        if let Some(leader) = leader_now(directory).await {
            return Ok(leader);
        }
        let waited = began.elapsed();
        if waited >= timeout {
            return Err(EngineError::NoLeader {
                waited_ms: waited.as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The node that leads the highest epoch among the running nodes that
/// claim leadership, if any.
pub async fn leader_now(directory: &NodeDirectory) -> Option<NodeId> {
    let mut best: Option<(u64, NodeId)> = None;
    for handle in directory.handles() {
        if let Ok(info) = handle.info().await {
            if info.role == NodeState::Leader && best.is_none_or(|(e, _)| info.epoch > e) {
                best = Some((info.epoch, info.node));
            }
        }
    }
    best.map(|(_, n)| n)
}

/// The process' resident memory in bytes (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

/// The process' peak resident memory in bytes (Linux; `None` elsewhere).
pub fn peak_resident_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_settings_are_refused() {
        let cfg = ConsensusConfig::default();
        let zero_clients = BenchOptions {
            clients: 0,
            ..BenchOptions::default()
        };
        assert!(matches!(
            validate(&cfg, &zero_clients),
            Err(EngineError::InvalidSetting(m)) if m.contains("--clients")
        ));
        let zero_ops = BenchOptions {
            ops: 0,
            ..BenchOptions::default()
        };
        assert!(validate(&cfg, &zero_ops).is_err());
        let bad_cfg = ConsensusConfig {
            cluster_size: 0,
            ..ConsensusConfig::default()
        };
        assert!(matches!(
            validate(&bad_cfg, &BenchOptions::default()),
            Err(EngineError::Config(_))
        ));
    }

    #[test]
    fn resident_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes().expect("VmRSS on Linux");
            let peak = peak_resident_bytes().expect("VmHWM on Linux");
            assert!(rss > 0 && peak >= rss / 2);
        }
    }
}
