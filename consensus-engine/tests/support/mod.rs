//! Set-up shared by the engine's cluster tests: an engine with every node
//! of its configuration started, members `n1..=nN`.
#![allow(dead_code)]

use consensus_actors::config::ConsensusConfig;
use consensus_actors::types::NodeId;
use consensus_engine::ConsensusEngine;

/// Nodes `n1..=nN`.
pub fn ids(n: u64) -> Vec<NodeId> {
    (1..=n).map(NodeId).collect()
}

/// An engine on `config` with nodes `n1..=n{cluster_size}` started.
pub fn start(config: ConsensusConfig) -> ConsensusEngine {
    let n = config.cluster_size as u64;
    let engine = ConsensusEngine::new(config).expect("a valid configuration");
    for id in ids(n) {
        engine.start_node(id, &ids(n)).expect("the node starts");
    }
    engine
}

/// An engine running `protocol` (by name) on `n` started nodes.
pub fn cluster(protocol: &str, n: u64) -> ConsensusEngine {
    let protocol = protocol.parse().expect("a registered protocol");
    start(ConsensusConfig::for_protocol(protocol, n as usize))
}
