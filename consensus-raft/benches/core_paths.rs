//! Criterion benches of Raft's hot paths on the pure [`ReplicationCore`]
//! (no actors, no clock, no storage): what consensus itself costs per batch.
//!
//! - `replicate_batch/N`: a leader of 3 appends a batch of N proposals,
//!   sends it, both followers append it and answer, the leader advances its
//!   commit index, applies the batch and produces the N results.
//! - `advance_commit/N`: only the last step: the leader handles the two
//!   followers' answers for N replicated entries (commit index advance,
//!   apply, results).
//! - `follower_append/N`: a follower handles one AppendEntries carrying N
//!   entries.
//!
//! Run with `cargo bench -p consensus-raft --bench core_paths`.
#![forbid(unsafe_code)]

use consensus_actors::kv::{KvCommand, KvStore};
use consensus_actors::types::{ClientId, NodeId};
use consensus_raft::events::HardState;
use consensus_raft::log_replicator::{
    Effect, Input, Proposal, ProposalId, Recovered, ReplicationCore,
};
use consensus_raft::messages::RaftMessage;
use consensus_raft::{Membership, RaftConfig};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use std::collections::VecDeque;
use std::hint::black_box;

type Core = ReplicationCore<KvStore>;
type Msg = RaftMessage<KvCommand>;

const IDS: [u64; 3] = [1, 2, 3];

fn cfg(batch: usize) -> RaftConfig {
    RaftConfig {
        max_log_entries_per_append: batch.max(64),
        ..RaftConfig::default()
    }
}

fn core(id: u64, batch: usize) -> Core {
    let recovered = Recovered {
        hard_state: HardState::default(),
        snapshot: None,
        entries: Vec::new(),
        initial_membership: Membership::new(IDS.iter().map(|&i| NodeId(i))),
    };
    ReplicationCore::new(NodeId(id), cfg(batch), recovered, KvStore::default())
        .expect("an empty store recovers")
}

/// Three cores: node 1 leads term 1 and its term-start entry is committed.
struct Cluster {
    nodes: Vec<Core>,
    inbox: VecDeque<(NodeId, NodeId, Msg)>,
    results: usize,
}

impl Cluster {
    fn new(batch: usize) -> Self {
        let mut nodes: Vec<Core> = IDS.iter().map(|&i| core(i, batch)).collect();
        let leader = &mut nodes[0];
        let t = leader.term();
        leader
            .step(
                0,
                Input::BeginElection {
                    expected_term: t,
                    pre_vote: false,
                    transfer: false,
                },
            )
            .expect("a follower may campaign");
        leader
            .step(0, Input::BecomeLeader { term: t.next() })
            .expect("the candidate of this term may lead");
        let mut c = Self {
            nodes,
            inbox: VecDeque::new(),
            results: 0,
        };
        c.collect(0);
        c.pump();
        c
    }

    /// Moves node `i`'s effects: messages to the inbox, results counted.
    fn collect(&mut self, i: usize) {
        let from = NodeId(IDS[i]);
        for effect in self.nodes[i].take_effects() {
            match effect {
                Effect::Send { to, msg } => self.inbox.push_back((from, to, msg)),
                Effect::ProposalResult { result, .. } => {
                    black_box(&result);
                    self.results += 1;
                }
                other => {
                    black_box(&other);
                }
            }
        }
    }

    /// Delivers one message.
    fn deliver(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        let i = (to.get() - 1) as usize;
        let node = &mut self.nodes[i];
        let input = match msg {
            RaftMessage::AppendEntries(msg) => Input::AppendEntries { from, msg },
            RaftMessage::AppendEntriesResponse(msg) => Input::AppendEntriesResponse { from, msg },
            RaftMessage::RequestVote(msg) => Input::RequestVote { from, msg },
            _ => return,
        };
        let _ = node.step(0, input);
        self.collect(i);
    }

    /// Delivers messages until none is left.
    fn pump(&mut self) {
        while let Some((from, to, msg)) = self.inbox.pop_front() {
            self.deliver(from, to, msg);
        }
    }

    fn propose(&mut self, n: usize) {
        let mut batch = (0..n as u64)
            .map(|i| Proposal {
                id: ProposalId(i + 1),
                command: KvCommand::Noop,
                client_id: ClientId(i),
            })
            .collect();
        let _ = self.nodes[0].step(0, Input::Propose(&mut batch));
        self.collect(0);
    }
}

const SIZES: [usize; 3] = [1, 64, 1024];

fn replicate_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("replicate_batch");
    for n in SIZES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || Cluster::new(n),
                |mut cluster| {
                    cluster.propose(n);
                    cluster.pump();
                    assert_eq!(cluster.results, n, "every proposal commits");
                    cluster
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn advance_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("advance_commit");
    for n in SIZES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || {
                    // Replicate the batch to both followers; hold their answers.
                    let mut cluster = Cluster::new(n);
                    cluster.propose(n);
                    let requests: Vec<_> = cluster.inbox.drain(..).collect();
                    for (from, to, msg) in requests {
                        cluster.deliver(from, to, msg);
                    }
                    cluster
                },
                |mut cluster| {
                    cluster.pump();
                    assert_eq!(cluster.results, n, "every proposal commits");
                    cluster
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn follower_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("follower_append");
    for n in SIZES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_batched(
                || {
                    let mut cluster = Cluster::new(n);
                    cluster.propose(n);
                    let (from, to, msg) = cluster
                        .inbox
                        .pop_front()
                        .expect("the leader replicates the batch");
                    (cluster, from, to, msg)
                },
                |(mut cluster, from, to, msg)| {
                    let i = (to.get() - 1) as usize;
                    match msg {
                        RaftMessage::AppendEntries(msg) => {
                            let _ = cluster.nodes[i].step(0, Input::AppendEntries { from, msg });
                        }
                        other => panic!("expected AppendEntries, got {}", other.name()),
                    }
                    black_box(cluster.nodes[i].take_effects());
                    cluster
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, replicate_batch, advance_commit, follower_append);
criterion_main!(benches);
