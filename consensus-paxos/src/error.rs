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
}

impl From<ProposeError> for NodeError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { leader } => NodeError::NotLeader { leader },
            ProposeError::Busy => NodeError::Refused("too many commands in flight".into()),
            ProposeError::Unknown => NodeError::Unknown(e.to_string()),
        }
    }
}
