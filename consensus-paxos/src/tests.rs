//! Tests of the cores composed into a cluster ([`harness`](crate::harness)).

use crate::config::{Mode, PaxosConfig};
use crate::harness::Cluster;
use crate::proposer::Role;
use crate::types::{Request, Slot};
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::types::{ClientId, NodeId};

fn put(key: &str, value: &str) -> Request {
    Request {
        client: ClientId(1),
        command: KvCommand::put(key, value),
    }
}

/// Paxos Made Simple §2.1: two proposers with different values for the same
/// slot; exactly one value is chosen and every learner learns it. Many
/// seeds: the message order differs in each, and the back-off differs too.
#[test]
fn dueling_proposers_choose_exactly_one_value_and_every_learner_learns_it() {
    for seed in 0..200 {
        let cfg = PaxosConfig::new(Mode::Basic, 3);
        let mut c = Cluster::new(cfg, seed);
        let a = c.submit(NodeId(1), put("x", "from-1"));
        let b = c.submit(NodeId(2), put("x", "from-2"));
        c.run_ms(3000, false);
        assert!(
            c.checker.is_ok(),
            "seed {seed}: {:?}",
            c.checker.violations()
        );
        // Both commands end in the log (the loser retries in the next
        // slot); slot 1 holds one of them on every learner.
        let first: Vec<_> = c
            .nodes
            .values()
            .map(|n| n.learner.delivered(Slot(1)).cloned())
            .collect();
        assert!(first[0].is_some(), "seed {seed}: slot 1 not chosen");
        assert!(
            first.iter().all(|v| *v == first[0]),
            "seed {seed}: learners disagree"
        );
        for n in c.nodes.values() {
            assert!(
                n.learner.delivered(Slot(2)).is_some(),
                "seed {seed}: slot 2 missing"
            );
        }
        let (oa, pa) = c.nodes[&NodeId(1)].answers[&a].clone();
        let (ob, pb) = c.nodes[&NodeId(2)].answers[&b].clone();
        assert_ne!(pa.index, pb.index, "seed {seed}: one slot, two commands");
        assert_eq!(oa, KvOutput::Ok);
        assert_eq!(ob, KvOutput::Ok);
        // The later slot's value is the final one everywhere.
        let last = if pa.index > pb.index {
            "from-1"
        } else {
            "from-2"
        };
        for n in c.nodes.values() {
            assert_eq!(n.learner.kv().get("x"), Some(last), "seed {seed}");
        }
    }
}

/// Multi-Paxos: the elected leader runs phase 1 once, then proposes; when
/// it is cut off with slots accepted by a minority only, the next leader
/// recovers them through phase 1 and fills the holes with no-ops, and
/// every learner ends with the same log.
#[test]
fn a_new_leader_recovers_unfinished_slots_and_fills_holes() {
    for seed in 0..50 {
        let cfg = PaxosConfig::new(Mode::Multi, 5);
        let mut c = Cluster::new(cfg, seed);
        c.run_ms(300, true);
        let leader = c
            .ids()
            .into_iter()
            .find(|id| c.nodes[id].proposer.is_leader())
            .expect("a leader after 300 ms");
        for i in 0..5 {
            c.submit(leader, put("k", &format!("v{i}")));
        }
        c.run_ms(50, true);
        let done = c.nodes[&leader].learner.next();
        assert!(
            done >= Slot(6),
            "seed {seed}: five commands chosen (next {done})"
        );
        // Now the leader proposes three more, but only its own acceptor
        // hears them before it is cut off: slots accepted by a minority.
        for i in 5..8 {
            c.submit(leader, put("k", &format!("v{i}")));
        }
        // Deliver only the leader's messages to itself.
        let mut kept = std::collections::VecDeque::new();
        while let Some((f, t, m)) = c.queue.pop_front() {
            if f == leader && t == leader {
                kept.push_back((f, t, m));
            }
        }
        c.queue = kept;
        while c.deliver_one() {}
        c.cut.insert(leader);
        c.queue.clear();
        c.run_ms(1500, true);
        let new_leader = c
            .ids()
            .into_iter()
            .find(|id| *id != leader && c.nodes[id].proposer.is_leader())
            .expect("a new leader");
        c.submit(new_leader, put("k", "after"));
        c.run_ms(200, true);
        c.cut.clear();
        c.run_ms(2000, true);
        assert!(
            c.checker.is_ok(),
            "seed {seed}: {:?}",
            c.checker.violations()
        );
        let logs: Vec<Slot> = c.nodes.values().map(|n| n.learner.next()).collect();
        assert!(logs.iter().all(|s| *s == logs[0]), "seed {seed}: {logs:?}");
        let n1 = &c.nodes[&NodeId(1)].learner;
        let mut saw_after = false;
        for s in 1..logs[0].0 {
            let v = n1.delivered(Slot(s)).cloned();
            for n in c.nodes.values() {
                assert_eq!(
                    n.learner.delivered(Slot(s)).cloned(),
                    v,
                    "seed {seed}: slot {s}"
                );
            }
            saw_after |= v.is_some_and(|v| {
                v.requests
                    .iter()
                    .any(|r| r.command == KvCommand::put("k", "after"))
            });
        }
        assert!(
            saw_after,
            "seed {seed}: the new leader's command is in the log"
        );
        for n in c.nodes.values() {
            assert_eq!(n.learner.kv(), n1.kv(), "seed {seed}");
        }
        // The old leader follows; its unfinished commands were answered one
        // way or the other (failed or committed), none left hanging.
        let roles: Vec<_> = c
            .nodes
            .values()
            .map(|n| (n.proposer.role(), n.proposer.ballot(), n.election.leader()))
            .collect();
        assert_eq!(
            c.ids()
                .iter()
                .filter(|id| c.nodes[id].proposer.is_leader())
                .count(),
            1,
            "seed {seed}: one leader at the end: {roles:?}"
        );
        let _ = Role::Idle;
    }
}

/// A minority partition chooses nothing (no quorum of promises), the
/// majority goes on.
#[test]
fn a_minority_chooses_nothing_and_the_majority_goes_on() {
    let cfg = PaxosConfig::new(Mode::Basic, 5);
    let mut c = Cluster::new(cfg, 7);
    c.cut.extend([NodeId(1), NodeId(2), NodeId(3)]);
    // Nodes 1..3 are each alone; 4 and 5 are a minority of two, too: cut
    // them apart from 1..3 by cutting 1..3 from everyone.
    c.submit(NodeId(4), put("a", "minority?"));
    c.submit(NodeId(1), put("a", "alone"));
    c.run_ms(2000, false);
    for n in c.nodes.values() {
        assert_eq!(n.learner.next(), Slot(1), "nothing chosen without a quorum");
    }
    c.cut.clear();
    c.cut.insert(NodeId(1));
    c.cut.insert(NodeId(2));
    c.run_ms(2000, false);
    for id in [3, 4, 5] {
        assert_eq!(
            c.nodes[&NodeId(id)].learner.kv().get("a"),
            Some("minority?")
        );
    }
    assert!(c.checker.is_ok());
}

/// Flexible quorums (Howard et al., "Flexible Paxos"): phase 1 needs 4 of
/// 5 promises, phase 2 only 2 acceptances. Leaders come and go (the
/// election re-runs when one is cut off) and every learner still agrees.
#[test]
fn flexible_quorums_choose_one_value_per_slot() {
    for seed in 0..20 {
        let cfg = PaxosConfig::new(Mode::Multi, 5).with_quorums(4, 2);
        cfg.validate().unwrap();
        let mut c = Cluster::new(cfg, seed);
        c.checker = crate::safety::checker();
        c.run_ms(300, true);
        let first = c
            .ids()
            .into_iter()
            .find(|id| c.nodes[id].proposer.is_leader())
            .expect("a leader");
        for i in 0..3 {
            c.submit(first, put("k", &format!("a{i}")));
        }
        c.run_ms(100, true);
        c.cut.insert(first);
        c.run_ms(1500, true);
        let second = c
            .ids()
            .into_iter()
            .find(|id| *id != first && c.nodes[id].proposer.is_leader())
            .expect("a second leader (4 of 5 still promise)");
        c.submit(second, put("k", "b"));
        c.run_ms(200, true);
        c.cut.clear();
        c.run_ms(1500, true);
        assert!(
            c.checker.is_ok(),
            "seed {seed}: {:?}",
            c.checker.violations()
        );
        let n1 = &c.nodes[&NodeId(1)].learner;
        for n in c.nodes.values() {
            assert_eq!(n.learner.next(), n1.next(), "seed {seed}");
            assert_eq!(n.learner.kv(), n1.kv(), "seed {seed}");
        }
        assert_eq!(n1.kv().get("k"), Some("b"), "seed {seed}");
    }
}

fn leader_of(c: &Cluster) -> Option<NodeId> {
    c.ids()
        .into_iter()
        .find(|id| c.nodes[id].proposer.is_leader())
}

/// Log compaction (Multi-Paxos): with a snapshot every 8 slots, a long run
/// keeps fewer than 8 delivered slots per learner and no acceptance below
/// the snapshot per acceptor; a node cut off past several snapshots asks
/// for slots its peers compacted, installs a peer's snapshot and ends with
/// the same state machine. Every value stays chosen once per slot.
#[test]
fn compaction_bounds_every_log_and_a_lagging_node_catches_up_from_a_snapshot() {
    for seed in 0..20 {
        let mut cfg = PaxosConfig::new(Mode::Multi, 5);
        cfg.snapshot_interval = 8;
        cfg.max_batch = 1;
        let mut c = Cluster::new(cfg, seed);
        c.run_ms(300, true);
        let leader = leader_of(&c).expect("a leader");
        let lagging = c.ids().into_iter().find(|id| *id != leader).unwrap();
        c.cut.insert(lagging);
        for round in 0..20 {
            for i in 0..5 {
                c.submit(leader, put(&format!("k{i}"), &format!("v{round}")));
            }
            c.run_ms(20, true);
            for (id, n) in &c.nodes {
                assert!(
                    n.learner.retained() < 8 + 5,
                    "seed {seed}: learner {id} keeps {} slots",
                    n.learner.retained()
                );
            }
        }
        let done = c.nodes[&leader].learner.next();
        assert!(done.0 > 100, "seed {seed}: 100 commands chosen ({done})");
        for (id, n) in &c.nodes {
            if *id == lagging {
                assert_eq!(n.learner.snapshot_slot(), Slot(0));
                continue;
            }
            assert!(n.learner.snapshot_slot().0 >= done.0 - 8, "seed {seed}");
            assert!(n.acceptor.compacted() >= n.learner.snapshot_slot());
            // The acceptor keeps only the slots after its compaction point.
            assert!(n.acceptor.retained() < 8 + 5, "seed {seed}");
        }
        c.cut.clear();
        c.run_ms(1000, true);
        assert!(
            c.checker.is_ok(),
            "seed {seed}: {:?}",
            c.checker.violations()
        );
        let reference = &c.nodes[&leader].learner;
        let caught_up = &c.nodes[&lagging].learner;
        assert_eq!(caught_up.next(), reference.next(), "seed {seed}");
        assert_eq!(caught_up.kv(), reference.kv(), "seed {seed}");
        assert!(
            caught_up.snapshot_slot() > Slot(0),
            "seed {seed}: caught up through a snapshot"
        );
        for i in 0..5 {
            assert_eq!(caught_up.kv().get(&format!("k{i}")), Some("v19"));
        }
    }
}

/// Basic Paxos over compacted acceptors: a node cut off while the others
/// chose and compacted many slots proposes in the first slot *it* lacks;
/// its command ends above the compacted slots, every learner agrees and
/// its learner catches up from a snapshot. (The exact rule, no proposal at
/// or below a reported compaction point, is checked on the proposer core.)
#[test]
fn a_lagging_proposer_never_proposes_in_a_compacted_slot() {
    for seed in 0..20 {
        let mut cfg = PaxosConfig::new(Mode::Basic, 3);
        cfg.snapshot_interval = 4;
        let mut c = Cluster::new(cfg, seed);
        c.cut.insert(NodeId(3));
        for i in 0..12 {
            c.submit(NodeId(1), put("k", &format!("v{i}")));
            c.run_ms(30, false);
        }
        assert!(c.nodes[&NodeId(1)].acceptor.compacted() >= Slot(8));
        c.cut.clear();
        let t = c.submit(NodeId(3), put("k", "late"));
        c.run_ms(2000, false);
        assert!(
            c.checker.is_ok(),
            "seed {seed}: {:?}",
            c.checker.violations()
        );
        let n3 = &c.nodes[&NodeId(3)];
        let (out, at) = n3.answers.get(&t).cloned().expect("the late command ran");
        assert_eq!(out, KvOutput::Ok);
        assert!(
            at.index.0 > 12,
            "seed {seed}: proposed above the chosen slots"
        );
        for n in c.nodes.values() {
            assert_eq!(n.learner.kv().get("k"), Some("late"), "seed {seed}");
            assert_eq!(n.learner.next(), n3.learner.next(), "seed {seed}");
        }
    }
}
