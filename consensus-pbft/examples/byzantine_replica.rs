//! A 4-replica PBFT cluster (f = 1) whose primary lies: it equivocates,
//! sending one PRE-PREPARE to one backup and another to the rest. The
//! backups catch it (two signed PRE-PREPAREs for one slot meet in a
//! PREPARE), record the evidence, vote it out with a view change, and the
//! clients keep getting answers; the safety checker and the
//! linearizability checker pass.
//!
//! ```sh
//! cargo run -p consensus-pbft --example byzantine_replica -- [equivocate|wrong-digest|forged-auth|lying-new-view|flood|replay|silent|twins]
//! ```
#![forbid(unsafe_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::types::NodeId;
use consensus_engine::faults::FaultSelection;
use consensus_engine::registry::{PluginSpec, ProtocolDriver};
use consensus_engine::simulate::SimulateOptions;
use consensus_pbft::byzantine::{self, Behaviour};
use consensus_pbft::evidence::EvidenceLog;
use consensus_pbft::node::PbftSlots;
use consensus_pbft::PbftPlugin;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

fn behaviour(arg: Option<&str>) -> Option<Behaviour> {
    Some(match arg.unwrap_or("equivocate") {
        "equivocate" => Behaviour::Equivocate,
        "wrong-digest" => Behaviour::WrongDigest,
        "forged-auth" => Behaviour::ForgedAuth,
        "lying-new-view" => Behaviour::LyingNewView,
        "flood" => Behaviour::Flood,
        "replay" => Behaviour::Replay,
        "silent" => Behaviour::Silent,
        "twins" => Behaviour::Twins,
        _ => return None,
    })
}

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    let Some(behaviour) = behaviour(arg.as_deref()) else {
        eprintln!("unknown behaviour {arg:?}: equivocate, wrong-digest, forged-auth, lying-new-view, flood, replay, silent or twins");
        return ExitCode::from(2);
    };
    // The primary of view 0 is n1, of view 1 n2 (where a lying NEW-VIEW
    // can happen: n1 is silent there, so view 1 comes).
    let liar = if behaviour == Behaviour::LyingNewView {
        NodeId(2)
    } else {
        NodeId(1)
    };
    let config = ConsensusConfig::for_protocol(consensus_pbft::PROTOCOL, 4).byzantine();
    let log = EvidenceLog::new();
    let kept = log.clone();
    let spec = PluginSpec::with_factory(consensus_pbft::PROTOCOL, move |config| {
        Ok(PbftPlugin::with_slots(config, move |node| {
            if node == liar {
                byzantine::slots(behaviour)
            } else if behaviour == Behaviour::LyingNewView && node == NodeId(1) {
                byzantine::slots(Behaviour::Silent)
            } else {
                PbftSlots::default()
            }
        })?
        .with_evidence_log(kept.clone()))
    });
    let options = SimulateOptions {
        seed: 7,
        duration: Duration::from_secs(5),
        faults: FaultSelection::None,
        ..SimulateOptions::default()
    };
    println!("4 replicas, f = 1; {liar} is Byzantine: {behaviour:?}");
    let run = match spec.simulate(&config, &options) {
        Ok(run) => run,
        Err(e) => {
            eprintln!("simulation failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut by: BTreeMap<(NodeId, String), (u64, String)> = BTreeMap::new();
    for e in log.records() {
        let entry = by
            .entry((e.accused, e.kind.to_string()))
            .or_insert((0, e.to_string()));
        entry.0 += 1;
    }
    println!("evidence ({} records):", log.total());
    for ((accused, kind), (count, first)) in &by {
        println!("  {accused}: {kind} x{count}\n    e.g. {first}");
    }
    let r = &run.report;
    println!(
        "clients: {} committed, {} view changes; safety {}, linearizable {}",
        r.committed,
        r.leader_changes.saturating_sub(1),
        if r.safety_ok { "held" } else { "VIOLATED" },
        r.linearizable
    );
    let accused = log.accused();
    let detected = !behaviour.is_provable() || accused == vec![liar];
    if !(r.safety_ok && r.linearizable && r.committed > 0 && detected) {
        eprintln!("unexpected outcome (accused: {accused:?})");
        return ExitCode::FAILURE;
    }
    println!(
        "the lying replica was outvoted{}",
        if behaviour.is_provable() {
            " and caught"
        } else {
            ""
        }
    );
    ExitCode::SUCCESS
}
