//! A broken safety property, reported by an [`Invariant`](super::Invariant).

use super::{EpochLabel, ProtocolEvent, SafetyEvent};
use crate::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The protocol's epoch a violation happened in: what the protocol calls it
/// (`term`, `view`, `ballot`) and how it prints (`t3`, `v2`, `b3.1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    /// What the protocol calls its epochs.
    pub kind: String,
    /// The epoch, printed.
    pub label: String,
}

impl Epoch {
    /// An epoch of kind `kind` printed as `label`.
    pub fn new(kind: &str, label: impl fmt::Display) -> Self {
        Self {
            kind: kind.to_string(),
            label: label.to_string(),
        }
    }

    /// The numeric epoch `epoch` of protocol `E` (as in
    /// [`SafetyEvent::BecameLeader`]), printed the protocol's way.
    pub fn of<E: ProtocolEvent>(kind: &str, epoch: u64) -> Self {
        Self::new(kind, EpochLabel::<E>(epoch, std::marker::PhantomData))
    }
}

/// The position in the replicated sequence a violation is about: what the
/// protocol calls it (`index`, `seq`, `slot`) and how it prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// What the protocol calls its positions.
    pub kind: String,
    /// The position, printed.
    pub label: String,
}

impl Position {
    /// A position of kind `kind` printed as `label`.
    pub fn new(kind: &str, label: impl fmt::Display) -> Self {
        Self {
            kind: kind.to_string(),
            label: label.to_string(),
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// One broken safety property: which invariant, which nodes, where (epoch
/// and position), when, the event that broke it and what exactly is wrong.
///
/// Printed as one readable line:
/// `raft-election-safety at 30us [t1] n1 n2: n2 became leader of t1, which n1 already leads (event: n2 became leader of t1)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Name of the invariant ([`Invariant::name`](super::Invariant::name)).
    pub invariant: String,
    /// The nodes involved, the one whose event broke the property last.
    pub nodes: Vec<NodeId>,
    /// The term, view or ballot, when the property has one.
    pub epoch: Option<Epoch>,
    /// The log index, sequence number or slot, when the property has one.
    pub position: Option<Position>,
    /// The event that broke the property, as printed by its `Display`.
    pub event: String,
    /// When the event was observed, in microseconds (virtual time in a
    /// simulation).
    pub at_us: u64,
    /// What exactly is wrong.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` found at `at_us` while observing `event`.
    /// Add nodes, epoch and position with the `with_*` methods.
    pub fn new<E: ProtocolEvent>(
        invariant: &str,
        at_us: u64,
        event: &SafetyEvent<E>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            invariant: invariant.to_string(),
            nodes: Vec::new(),
            epoch: None,
            position: None,
            event: event.to_string(),
            at_us,
            detail: detail.into(),
        }
    }

    /// Names the nodes involved (duplicates are dropped, order kept).
    #[must_use]
    pub fn with_nodes(mut self, nodes: impl IntoIterator<Item = NodeId>) -> Self {
        for n in nodes {
            if !self.nodes.contains(&n) {
                self.nodes.push(n);
            }
        }
        self
    }

    /// Sets the epoch (term, view or ballot).
    #[must_use]
    pub fn with_epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// Sets the position (index, sequence number or slot).
    #[must_use]
    pub fn with_position(mut self, position: Position) -> Self {
        self.position = Some(position);
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}us", self.invariant, self.at_us)?;
        match (&self.epoch, &self.position) {
            (Some(e), Some(p)) => write!(f, " [{e} {p}]")?,
            (Some(e), None) => write!(f, " [{e}]")?,
            (None, Some(p)) => write!(f, " [{p}]")?,
            (None, None) => {}
        }
        for n in &self.nodes {
            write!(f, " {n}")?;
        }
        write!(f, ": {} (event: {})", self.detail, self.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::NoProtocolEvents;

    #[test]
    fn a_violation_prints_as_one_line_and_serializes() {
        let ev: SafetyEvent<NoProtocolEvents> = SafetyEvent::BecameLeader {
            node: NodeId(2),
            epoch: 1,
        };
        let v = Violation::new(
            "one-leader",
            30,
            &ev,
            "n2 became leader of e1, which n1 already leads",
        )
        .with_nodes([NodeId(1), NodeId(2), NodeId(1)])
        .with_epoch(Epoch::of::<NoProtocolEvents>("epoch", 1));
        assert_eq!(
            v.to_string(),
            "one-leader at 30us [e1] n1 n2: n2 became leader of e1, which n1 already leads (event: n2 became leader of e1)"
        );
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["invariant"], "one-leader");
        assert_eq!(json["nodes"], serde_json::json!([1, 2]));
        assert_eq!(
            json["epoch"],
            serde_json::json!({"kind": "epoch", "label": "e1"})
        );
        assert_eq!(json["position"], serde_json::Value::Null);
        assert_eq!(json["at_us"], 30);
        let back: Violation = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn positions_and_epochs_print_with_their_labels() {
        let ev: SafetyEvent<NoProtocolEvents> = SafetyEvent::Crashed { node: NodeId(1) };
        let v = Violation::new("x", 1, &ev, "d")
            .with_epoch(Epoch::new("ballot", "b3.2"))
            .with_position(Position::new("slot", "slot4"));
        assert_eq!(
            v.to_string(),
            "x at 1us [b3.2 slot4]: d (event: n1 crashed)"
        );
        let v = Violation::new("x", 1, &ev, "d").with_position(Position::new("seq", "s9"));
        assert_eq!(v.to_string(), "x at 1us [s9]: d (event: n1 crashed)");
    }
}
