//! How much faster than real time a simulated cluster runs.
//!
//! Five nodes exchange messages over 10 minutes of virtual time through a
//! faulty `SimNetwork` (jitter, loss, duplication, reordering) with the
//! trace hash on: ping/pong at four message rates, then the message pattern
//! of Raft log replication at 1000 client operations per second, one
//! operation per append or batched every 5 ms, and the batched pattern again
//! with the operations coming from 50 client tasks that each submit one
//! (one actor message per operation) and wait for the majority's answer: the
//! floor of what any protocol on this runtime costs at that load, with no
//! log, state machine or checks. For each, prints the virtual
//! and real durations, the speed-up (virtual / real), the thread's CPU time
//! and the speed-up by it (steadier on a busy machine), messages delivered
//! per real second, and checks that tokio's paused clock really
//! auto-advanced.
//!
//! Run: `cargo bench -p consensus-actors --bench sim_speed`
//! (`-- --quick` runs only the first workload; `-- --workload I` runs only
//! workload `I` (0-based); `-- --secs S` simulates `S` virtual seconds
//! instead of 600, e.g. for a shorter run under callgrind, where
//! `-- --no-speed-check` skips the check that the run took far less real
//! time than virtual time).
#![forbid(unsafe_code)]

use actix::prelude::*;
use consensus_actors::sim::{
    NetworkFaults, NodeContext, NodeFactory, SimConfig, Simulation, StartedNode,
};
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
enum Msg {
    Ping {
        seq: u64,
        payload: Vec<u8>,
    },
    Pong {
        seq: u64,
    },
    /// Leader to follower: a batch of log entries (Raft's AppendEntries),
    /// each a term and a command.
    Append {
        first: u64,
        entries: Vec<(u64, String)>,
    },
    /// Leader to follower: `count` entries from `first` on, by number only
    /// (so that the runtime's own cost shows, not the payload's).
    AppendCount {
        first: u64,
        count: u64,
    },
    /// Follower to leader: everything up to `upto` is stored.
    Ack {
        upto: u64,
    },
}

/// The 64-byte command of every replicated entry.
const COMMAND: &str = "put key-0042 value-0123456789abcdef0123456789abcdef0123456789abc";

/// What a node does.
#[derive(Clone, Copy, Debug)]
enum Workload {
    /// Every node pings a random peer every `U[lo, hi]` ms; pings are
    /// answered with pongs (one timer per two messages).
    PingPong { period_ms: (u64, u64) },
    /// Node 1 takes `ops_per_sec` client operations (64-byte commands) and
    /// every `batch_ms` sends those that arrived to the 4 others in one
    /// append, which each acknowledge: the message pattern of Raft log
    /// replication (one timer per `2 * 4` messages).
    Replicate { ops_per_sec: u64, batch_ms: u64 },
    /// The same, but the operations come from `clients` client tasks, each
    /// submitting one operation every `clients * 1000 / ops_per_sec` ms (one
    /// actor message per operation) and waiting for its answer, which node 1
    /// gives once two followers acknowledged the append that carried it (a
    /// majority of 5). Appends carry only numbers (`AppendCount`), so this is
    /// what the runtime itself (tokio's paused clock, actix mailboxes, the
    /// simulated network with its trace) costs for the least any consensus
    /// protocol does per client operation: no log, no state machine, no
    /// checks.
    ReplicateClients {
        ops_per_sec: u64,
        batch_ms: u64,
        clients: u64,
    },
}

/// A client's operation, handed to node 1; `done` is answered when a
/// majority acknowledged the append that carried it.
#[derive(Message)]
#[rtype(result = "()")]
struct Submit {
    done: tokio::sync::oneshot::Sender<()>,
}

struct Node {
    id: NodeId,
    peers: Vec<NodeId>,
    transport: Transport<Msg>,
    rng: ChaCha8Rng,
    trace: consensus_actors::sim::TraceHandle,
    workload: Workload,
    seq: u64,
    pongs: u64,
    acked: u64,
    /// Client operations that arrived since the last append.
    arrived: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Appends sent, by the last sequence number they carry: acknowledgements
    /// so far and the clients to answer at two.
    unacked: std::collections::BTreeMap<u64, (u32, Vec<tokio::sync::oneshot::Sender<()>>)>,
}

impl Node {
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let wait_ms = match self.workload {
            Workload::PingPong {
                period_ms: (lo, hi),
            } => {
                let to = self.peers[self.rng.random_range(0..self.peers.len())];
                self.seq += 1;
                self.transport.send(
                    to,
                    Msg::Ping {
                        seq: self.seq,
                        payload: vec![7; 64],
                    },
                );
                self.rng.random_range(lo..=hi)
            }
            Workload::Replicate {
                ops_per_sec,
                batch_ms,
            } => {
                if self.id != NodeId(1) {
                    return;
                }
                let n = ops_per_sec * batch_ms / 1000;
                let first = self.seq + 1;
                self.seq += n;
                let append = Msg::Append {
                    first,
                    entries: (first..=self.seq)
                        .map(|i| (i, COMMAND.to_owned()))
                        .collect(),
                };
                self.transport.broadcast(&self.peers, &append);
                batch_ms
            }
            Workload::ReplicateClients { batch_ms, .. } => {
                if self.id != NodeId(1) {
                    return;
                }
                if !self.arrived.is_empty() {
                    let first = self.seq + 1;
                    let count = self.arrived.len() as u64;
                    self.seq += count;
                    let append = Msg::AppendCount { first, count };
                    self.transport.broadcast(&self.peers, &append);
                    let waiting = std::mem::take(&mut self.arrived);
                    self.unacked.insert(self.seq, (0, waiting));
                }
                batch_ms
            }
        };
        ctx.run_later(Duration::from_millis(wait_ms), |act, ctx| act.tick(ctx));
    }
}

impl Actor for Node {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

impl Handler<Envelope<Msg>> for Node {
    type Result = ();

    fn handle(&mut self, env: Envelope<Msg>, _: &mut Context<Self>) {
        match env.msg {
            Msg::Ping { seq, .. } => self.transport.send(env.from, Msg::Pong { seq }),
            Msg::Pong { .. } => {
                self.pongs += 1;
                if self.pongs.is_multiple_of(100) {
                    self.trace.record_value(self.id, "pongs", &self.pongs);
                }
            }
            Msg::Append { first, entries } => {
                let upto = first + entries.len() as u64 - 1;
                self.transport.send(env.from, Msg::Ack { upto });
            }
            Msg::AppendCount { first, count } => {
                self.transport.send(
                    env.from,
                    Msg::Ack {
                        upto: first + count - 1,
                    },
                );
            }
            Msg::Ack { upto } => {
                // Answer the clients of every append up to `upto` once two
                // followers acknowledged it (duplicates may over-count; the
                // cost, not the exact rule, is what is measured here).
                if let Some((acks, _)) = self.unacked.get_mut(&upto) {
                    *acks += 1;
                    if *acks >= 2 {
                        let rest = self.unacked.split_off(&(upto + 1));
                        for (_, (_, clients)) in std::mem::replace(&mut self.unacked, rest) {
                            for done in clients {
                                let _ = done.send(());
                            }
                        }
                    }
                }
                self.acked += 1;
                if self.acked.is_multiple_of(100) {
                    self.trace.record_value(self.id, "acked", &upto);
                }
            }
        }
    }
}

impl Handler<Submit> for Node {
    type Result = ();

    fn handle(&mut self, op: Submit, _: &mut Context<Self>) {
        self.arrived.push(op.done);
    }
}

struct Factory {
    workload: Workload,
    /// Node 1's address, for the clients.
    leader: std::rc::Rc<std::cell::RefCell<Option<Addr<Node>>>>,
}

impl NodeFactory<Msg> for Factory {
    fn start_node(&mut self, ctx: NodeContext<Msg>) -> StartedNode<Msg> {
        let addr = Node {
            id: ctx.id,
            peers: ctx.peers,
            transport: ctx.transport,
            rng: ctx.rng,
            trace: ctx.trace,
            workload: self.workload,
            seq: 0,
            pongs: 0,
            acked: 0,
            arrived: Vec::new(),
            unacked: std::collections::BTreeMap::new(),
        }
        .start();
        if ctx.id == NodeId(1) {
            *self.leader.borrow_mut() = Some(addr.clone());
        }
        // The bench never crashes a node.
        StartedNode::new(addr.recipient(), || {})
    }

    fn on_crash(&mut self, _: NodeId) {}
}

/// Starts `clients` client tasks that together submit `ops_per_sec`
/// operations to `leader`, each one at a time on a fixed period (staggered),
/// waiting for each answer.
fn spawn_clients(
    leader: Addr<Node>,
    ops_per_sec: u64,
    clients: u64,
    answered_ops: std::rc::Rc<std::cell::Cell<u64>>,
) {
    let period = Duration::from_micros(clients * 1_000_000 / ops_per_sec.max(1));
    for c in 0..clients {
        let leader = leader.clone();
        let answered_ops = answered_ops.clone();
        actix::spawn(async move {
            let mut next = tokio::time::Instant::now() + period * c as u32 / clients as u32;
            loop {
                tokio::time::sleep_until(next).await;
                let (done, answered) = tokio::sync::oneshot::channel();
                leader.do_send(Submit { done });
                if answered.await.is_err() {
                    return;
                }
                answered_ops.set(answered_ops.get() + 1);
                next += period;
            }
        });
    }
}

/// CPU time this thread has used so far (Linux: /proc/thread-self/schedstat),
/// so the figures do not depend on how busy the machine is.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The value following flag `name` on the command line, parsed.
fn arg_value<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    match args.get(i + 1).map(|v| v.parse()) {
        Some(Ok(v)) => Some(v),
        _ => {
            eprintln!("{name} needs a numeric value");
            std::process::exit(2);
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let speed_check = !std::env::args().any(|a| a == "--no-speed-check");
    let only: Option<usize> = arg_value("--workload");
    let virtual_run = Duration::from_secs(arg_value("--secs").unwrap_or(600));
    println!("sim_speed: 5 nodes, {virtual_run:?} virtual");
    println!(
        "{:<40} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9} {:>11} {:>16}",
        "workload",
        "virtual_s",
        "real_s",
        "speedup",
        "cpu_s",
        "cpu_spdup",
        "messages",
        "msgs/real_s",
        "trace_hash"
    );
    let ping = |lo, hi| Workload::PingPong {
        period_ms: (lo, hi),
    };
    let replicate = |batch_ms| Workload::Replicate {
        ops_per_sec: 1000,
        batch_ms,
    };
    let workloads: &[(&str, Workload)] = &[
        ("ping every 50-150ms/node (~100 msg/s)", ping(50, 150)),
        ("ping every 10-30ms/node (~500 msg/s)", ping(10, 30)),
        ("ping every 2-8ms/node (~2000 msg/s)", ping(2, 8)),
        ("ping every 1-3ms/node (~5000 msg/s)", ping(1, 3)),
        ("replicate 1000 op/s, 1 op/append (8000/s)", replicate(1)),
        ("replicate 1000 op/s, 5ms batch (1600/s)", replicate(5)),
        (
            "same, ops from 50 clients (+1 msg/op)",
            Workload::ReplicateClients {
                ops_per_sec: 1000,
                batch_ms: 5,
                clients: 50,
            },
        ),
    ];
    let chosen: Vec<(&str, Workload)> = match only {
        Some(i) => workloads.get(i).copied().into_iter().collect(),
        None => workloads
            .iter()
            .copied()
            .take(if quick { 1 } else { workloads.len() })
            .collect(),
    };
    if chosen.is_empty() {
        eprintln!("no such workload (0..{})", workloads.len());
        std::process::exit(2);
    }
    for (name, workload) in chosen {
        let mut cfg = SimConfig::new(42, 5);
        cfg.network = NetworkFaults {
            base_delay: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
            loss: 0.01,
            duplicate: 0.01,
            reorder: 0.01,
            reorder_window: Duration::from_millis(10),
        };
        let cpu_start = thread_cpu_time();
        let real_start = std::time::Instant::now();
        let leader = std::rc::Rc::new(std::cell::RefCell::new(None));
        let answered_ops = std::rc::Rc::new(std::cell::Cell::new(0));
        let counted = answered_ops.clone();
        let factory = Factory {
            workload,
            leader: leader.clone(),
        };
        let out = Simulation::run(cfg, factory, |sim| async move {
            if let Workload::ReplicateClients {
                ops_per_sec,
                clients,
                ..
            } = workload
            {
                if let Some(leader) = leader.borrow().clone() {
                    spawn_clients(leader, ops_per_sec, clients, counted);
                }
            }
            sim.run_for(virtual_run).await;
            sim.now()
        });
        let real = real_start.elapsed();
        let cpu = thread_cpu_time()
            .zip(cpu_start)
            .map(|(end, start)| end.saturating_sub(start));
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                eprintln!("simulation failed: {e}");
                std::process::exit(1);
            }
        };
        let virt = out.result;
        assert_eq!(virt, virtual_run, "virtual clock did not reach the end");
        assert!(
            !speed_check || real < virtual_run / 10,
            "tokio did not auto-advance: {real:?} real for {virt:?} virtual"
        );
        let speedup = virt.as_secs_f64() / real.as_secs_f64();
        let msgs = out.stats.delivered;
        let (cpu_s, cpu_speedup) = match cpu {
            Some(cpu) if !cpu.is_zero() => (
                format!("{:.3}", cpu.as_secs_f64()),
                format!("{:.0}x", virt.as_secs_f64() / cpu.as_secs_f64()),
            ),
            _ => ("n/a".to_owned(), "n/a".to_owned()),
        };
        println!(
            "{:<40} {:>9.0} {:>8.3} {:>8.0}x {:>8} {:>9} {:>9} {:>11.0} {:>16x}",
            name,
            virt.as_secs_f64(),
            real.as_secs_f64(),
            speedup,
            cpu_s,
            cpu_speedup,
            msgs,
            msgs as f64 / real.as_secs_f64(),
            out.trace_hash
        );
        if answered_ops.get() > 0 {
            println!(
                "  {} client operations answered ({:.0} per virtual second)",
                answered_ops.get(),
                answered_ops.get() as f64 / virt.as_secs_f64()
            );
        }
    }
}
