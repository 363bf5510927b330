//! PBFT orders and executes any [`StateMachine`], not only the reference
//! key-value store: a simulated 4-replica cluster ([`PbftSimFactory`])
//! runs a hash-chained ledger (its state depends on every command and on
//! their order) with one Byzantine replica, under each behaviour. A client
//! submits its commands one after the other through a correct node, so
//! the order is known: each answer must be the one the ledger gives for
//! that prefix, and at the end every correct replica must hold exactly the
//! state of the ledger that applied the commands in submission order.
//! The safety checker must stay clean throughout.
#![forbid(unsafe_code)]

use consensus_actors::kv::{SnapshotDecodeError, StateMachine};
use consensus_actors::safety::{SafetySink, SharedChecker};
use consensus_actors::sim::{block_on_paused, NetworkFaults, SimConfig, Simulation};
use consensus_actors::types::{ClientId, NodeId};
use consensus_pbft::byzantine::Behaviour;
use consensus_pbft::evidence::EvidenceLog;
use consensus_pbft::sim::PbftSimFactory;
use consensus_pbft::PbftConfig;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// A ledger of signed amounts: the running total, the number of entries
/// and a chain hash over every entry in order (FNV-1a, enough to tell two
/// orders apart in a test).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Ledger {
    total: i64,
    entries: u64,
    chain: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
enum LedgerCommand {
    Add(i64),
    Read,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LedgerOutput {
    total: i64,
    entries: u64,
}

impl StateMachine for Ledger {
    type Command = LedgerCommand;
    type Output = LedgerOutput;

    fn apply(&mut self, command: &LedgerCommand) -> LedgerOutput {
        if let LedgerCommand::Add(x) = command {
            self.total += x;
            self.entries += 1;
            for b in x.to_le_bytes() {
                self.chain = (self.chain ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        LedgerOutput {
            total: self.total,
            entries: self.entries,
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), SnapshotDecodeError> {
        *self = serde_json::from_slice(snapshot).map_err(|e| SnapshotDecodeError(e.to_string()))?;
        Ok(())
    }
}

/// Runs 40 ledger commands through a 4-replica cluster whose replica 1
/// (the primary of view 0) behaves as `behaviour`; returns the evidence.
fn run(seed: u64, behaviour: Behaviour) -> EvidenceLog {
    let faults = NetworkFaults {
        jitter: Duration::from_millis(2),
        reorder: 0.05,
        ..NetworkFaults::none()
    };
    let evidence = EvidenceLog::new();
    let log = evidence.clone();
    block_on_paused(async move {
        let checker = SharedChecker::new(consensus_pbft::safety::checker());
        let origin = Instant::now();
        let mut cfg = PbftConfig::for_cluster(4).expect("n = 4, f = 1");
        // Checkpoints often enough that the run crosses several.
        cfg.checkpoint_interval = 8;
        cfg.log_window = 16;
        let byzantine = NodeId(1);
        let factory = PbftSimFactory::new(cfg, (1..=4).map(NodeId), Ledger::default)
            .with_byzantine(byzantine, behaviour)
            .with_safety(SafetySink::local(&checker, origin))
            .with_evidence_log(log)
            .with_time_base(origin);
        let sim = Simulation::start(SimConfig::new(seed, 4).with_faults(faults), factory)
            .expect("simulation starts");
        let entry = sim.factory().node(NodeId(2)).expect("node 2 runs");
        let mut reference = Ledger::default();
        for i in 0..40i64 {
            let cmd = if i % 10 == 9 {
                LedgerCommand::Read
            } else {
                LedgerCommand::Add(i * 7 - 50)
            };
            let expected = reference.apply(&cmd);
            let got =
                tokio::time::timeout(Duration::from_secs(120), entry.submit(ClientId(1), &cmd))
                    .await
                    .unwrap_or_else(|_| panic!("{behaviour:?}: command {i} not answered in 120 s"))
                    .unwrap_or_else(|e| panic!("{behaviour:?}: command {i} failed: {e}"));
            assert_eq!(got, expected, "{behaviour:?}: answer to command {i}");
        }
        let correct = [NodeId(2), NodeId(3), NodeId(4)];
        let began = Instant::now();
        loop {
            let states: Vec<Option<Ledger>> = correct
                .iter()
                .map(|&id| {
                    sim.factory()
                        .node(id)
                        .and_then(|n| n.with_state_machine(Ledger::clone))
                })
                .collect();
            if states.iter().all(|s| s.as_ref() == Some(&reference)) {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(120),
                "{behaviour:?}: correct replicas did not converge on {reference:?}: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let violations = checker.violations();
        assert!(violations.is_empty(), "{behaviour:?}: {violations:?}");
    })
    .expect("runtime builds");
    evidence
}

#[test]
fn a_non_kv_state_machine_is_replicated_identically_despite_one_byzantine_replica() {
    for (i, behaviour) in Behaviour::ALL.into_iter().enumerate() {
        let evidence = run(40 + i as u64, behaviour);
        if matches!(
            behaviour,
            Behaviour::Equivocate
                | Behaviour::WrongDigest
                | Behaviour::ForgedAuth
                | Behaviour::Flood
        ) {
            assert!(evidence.total() > 0, "{behaviour:?} went unnoticed");
        }
        for e in evidence.records() {
            assert_eq!(
                e.accused,
                NodeId(1),
                "{behaviour:?}: a correct replica accused: {e:?}"
            );
        }
    }
}
