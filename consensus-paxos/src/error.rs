//! Errors of the client API.

use consensus_actors::plugin::NodeError;
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};

/// Why a command got no result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ProposeError {
    /// Multi-Paxos: this node does not lead; `leader` is the one it knows.
    /// Certainly not applied.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader it knows of.
        leader: Option<NodeId>,
    },
    /// Too many commands queued. Certainly not applied.
    #[error("too many commands in flight")]
    Busy,
    /// Leadership was lost or the component restarted while the command was
    /// in flight: it may or may not be applied.
    #[error("outcome unknown (leadership lost or component restarted)")]
    Unknown,
    /// A configuration change was asked for while another one is chosen
    /// but not yet in effect, or proposed but not yet chosen. Certainly
    /// not applied.
    #[error("a configuration change is already in progress")]
    ChangeInProgress,
    /// The configuration change makes no sense (adding a member, removing
    /// a stranger or the last member). Certainly not applied.
    #[error("invalid configuration change: {0}")]
    InvalidChange(String),
    /// Configuration changes need Multi-Paxos (`paxos` has no leader to
    /// order them).
    #[error("configuration changes are supported by multi-paxos only")]
    Unsupported,
}

impl From<ProposeError> for NodeError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { leader } => NodeError::NotLeader { leader },
            ProposeError::Busy => NodeError::Refused("too many commands in flight".into()),
            ProposeError::Unknown => NodeError::Unknown(e.to_string()),
            ProposeError::ChangeInProgress | ProposeError::InvalidChange(_) => {
                NodeError::Refused(e.to_string())
            }
            ProposeError::Unsupported => NodeError::Unsupported("add_node / remove_node"),
        }
    }
}
