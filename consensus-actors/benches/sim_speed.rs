//! How much faster than real time a simulated cluster runs.
//!
//! Five nodes exchange ping/pong messages over 10 minutes of virtual time
//! through a faulty `SimNetwork` (jitter, loss, duplication, reordering) with
//! the trace hash on, at three message rates. For each, prints the virtual
//! and real durations, the speed-up (virtual / real) and messages per real
//! second, and checks that tokio's paused clock really auto-advanced.
//!
//! Run: `cargo bench -p consensus-actors --bench sim_speed`
//! (`-- --quick` runs only the first workload).

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
    Ping { seq: u64, payload: Vec<u8> },
    Pong { seq: u64 },
}

struct Pinger {
    id: NodeId,
    peers: Vec<NodeId>,
    transport: Transport<Msg>,
    rng: ChaCha8Rng,
    trace: consensus_actors::sim::TraceHandle,
    period_ms: (u64, u64),
    seq: u64,
    pongs: u64,
}

impl Pinger {
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let to = self.peers[self.rng.random_range(0..self.peers.len())];
        self.seq += 1;
        self.transport.send(
            to,
            Msg::Ping {
                seq: self.seq,
                payload: vec![7; 64],
            },
        );
        let (lo, hi) = self.period_ms;
        let wait = Duration::from_millis(self.rng.random_range(lo..=hi));
        ctx.run_later(wait, |act, ctx| act.tick(ctx));
    }
}

impl Actor for Pinger {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

impl Handler<Envelope<Msg>> for Pinger {
    type Result = ();

    fn handle(&mut self, env: Envelope<Msg>, _: &mut Context<Self>) {
        match env.msg {
            Msg::Ping { seq, .. } => self.transport.send(env.from, Msg::Pong { seq }),
            Msg::Pong { .. } => {
                self.pongs += 1;
                if self.pongs % 100 == 0 {
                    self.trace.record_value(self.id, "pongs", &self.pongs);
                }
            }
        }
    }
}

struct Factory {
    period_ms: (u64, u64),
}

impl NodeFactory<Msg> for Factory {
    fn start_node(&mut self, ctx: NodeContext<Msg>) -> StartedNode<Msg> {
        let addr = Pinger {
            id: ctx.id,
            peers: ctx.peers,
            transport: ctx.transport,
            rng: ctx.rng,
            trace: ctx.trace,
            period_ms: self.period_ms,
            seq: 0,
            pongs: 0,
        }
        .start();
        // The bench never crashes a node.
        StartedNode::new(addr.recipient(), || {})
    }

    fn on_crash(&mut self, _: NodeId) {}
}

/// CPU time this thread has used so far (Linux: /proc/thread-self/schedstat),
/// so the figures do not depend on how busy the machine is.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let virtual_run = Duration::from_secs(600);
    println!("sim_speed: 5 nodes, {virtual_run:?} virtual, ping/pong to random peers");
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
    let workloads: &[(&str, (u64, u64))] = &[
        ("ping every 50-150ms/node (~100 msg/s)", (50, 150)),
        ("ping every 10-30ms/node (~500 msg/s)", (10, 30)),
        ("ping every 2-8ms/node (~2000 msg/s)", (2, 8)),
    ];
    for &(name, period_ms) in workloads.iter().take(if quick { 1 } else { 3 }) {
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
        let out = Simulation::run(cfg, Factory { period_ms }, |sim| async move {
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
            real < virtual_run / 10,
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
    }
}
