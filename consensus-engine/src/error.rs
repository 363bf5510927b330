//! Errors of the engine and of the nodes it talks to.
//!
//! [`NodeError`] (defined with the plug-in boundary in
//! [`consensus_actors::plugin`]) is what one node answers to one request; it
//! says whether the request *may* have taken effect, which is what a client
//! history needs. [`EngineError`] is what the [`ConsensusEngine`]
//! facade and the `consensus` program return.
//!
//! [`ConsensusEngine`]: crate::ConsensusEngine

use consensus_actors::config::ConfigError;
use consensus_actors::plugin::PluginError;
use consensus_actors::types::{ConsensusProtocol, NodeId};

pub use consensus_actors::plugin::NodeError;

fn leader_name(leader: Option<NodeId>) -> String {
    leader.map_or_else(|| "unknown".to_string(), |n| n.to_string())
}

/// An error of the [`ConsensusEngine`](crate::ConsensusEngine) facade, the
/// simulation, the benchmark or the `consensus` program.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The configuration is impossible.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The protocol is part of the framework's plan but its plug-in is not
    /// built yet: nothing is faked in its place.
    #[error("protocol {protocol} is not available yet: {reason}")]
    ProtocolNotBuilt {
        /// The protocol asked for.
        protocol: ConsensusProtocol,
        /// What is missing.
        reason: String,
    },
    /// The protocol does not offer this operation.
    #[error("{protocol} does not support {operation}")]
    Unsupported {
        /// The protocol.
        protocol: ConsensusProtocol,
        /// The operation asked for.
        operation: &'static str,
    },
    /// A setting of a run (simulation, benchmark, engine call) is impossible.
    #[error("{0}")]
    InvalidSetting(String),
    /// The request went to a node that is not the leader.
    #[error("node {node} is not the leader (leader: {})", leader_name(*.leader))]
    NotLeader {
        /// The node asked.
        node: NodeId,
        /// The leader that node knows of, if any.
        leader: Option<NodeId>,
    },
    /// The request needs a running node and the engine runs none (none was
    /// started, or every one was stopped).
    #[error("no node is running in this engine (start_node or start_cluster first)")]
    NoNodeRunning,
    /// `start_node` was given a membership that contradicts the node, the
    /// configuration or the nodes already started.
    #[error("membership of node {node}: {reason}")]
    Membership {
        /// The node being started.
        node: NodeId,
        /// What contradicts what.
        reason: String,
    },
    /// No leader could be found in time.
    #[error("no leader within {waited_ms} ms")]
    NoLeader {
        /// How long the engine looked.
        waited_ms: u64,
    },
    /// The node is not one this engine runs.
    #[error("node {0} is not running in this engine")]
    UnknownNode(NodeId),
    /// The node is already running in this engine.
    #[error("node {0} is already running in this engine")]
    NodeExists(NodeId),
    /// A node answered with an error.
    #[error("node {node}: {error}")]
    Node {
        /// The node that answered.
        node: NodeId,
        /// Its answer.
        error: NodeError,
    },
    /// The request did not complete in time; it may or may not have been
    /// applied.
    #[error("no answer from node {node} within {waited_ms} ms (the request may still be applied)")]
    Timeout {
        /// The node asked.
        node: NodeId,
        /// How long the engine waited.
        waited_ms: u64,
    },
    /// The deterministic simulation could not run.
    #[error("simulation: {0}")]
    Simulation(String),
    /// Reading or writing a file failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl From<PluginError> for EngineError {
    fn from(e: PluginError) -> Self {
        match e {
            PluginError::Config(c) => EngineError::Config(c),
            PluginError::InvalidSetting(s) => EngineError::InvalidSetting(s),
        }
    }
}

impl EngineError {
    /// The error a node's answer becomes, with [`NodeError::NotLeader`]
    /// turned into [`EngineError::NotLeader`] naming both nodes.
    pub fn from_node(node: NodeId, error: NodeError) -> Self {
        match error {
            NodeError::NotLeader { leader } => EngineError::NotLeader { node, leader },
            error => EngineError::Node { node, error },
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<String>, error: &std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_leader_names_both_nodes() {
        let e = EngineError::from_node(
            NodeId(2),
            NodeError::NotLeader {
                leader: Some(NodeId(4)),
            },
        );
        assert_eq!(
            e,
            EngineError::NotLeader {
                node: NodeId(2),
                leader: Some(NodeId(4))
            }
        );
        assert_eq!(e.to_string(), "node n2 is not the leader (leader: n4)");
        let unknown = EngineError::from_node(NodeId(1), NodeError::NotLeader { leader: None });
        assert_eq!(
            unknown.to_string(),
            "node n1 is not the leader (leader: unknown)"
        );
    }

    #[test]
    fn only_unknown_and_stopped_may_have_applied() {
        assert!(NodeError::Unknown("x".into()).may_have_applied());
        assert!(NodeError::Stopped.may_have_applied());
        assert!(!NodeError::NotLeader { leader: None }.may_have_applied());
        assert!(!NodeError::Refused("busy".into()).may_have_applied());
        assert!(!NodeError::Dropped.may_have_applied());
        assert!(!NodeError::Unsupported("add_node").may_have_applied());
    }
}
