//! How protocol components talk to their peers, without knowing whether the
//! bytes cross an in-process [`SimNetwork`](crate::sim::SimNetwork) or a TCP
//! connection.
//!
//! A network is any actor that handles [`Envelope<M>`] (a message to send) and
//! [`RegisterNode<M>`] (where to deliver messages addressed to a node). A
//! component holds a [`Transport<M>`], a cheap clonable handle that stamps the
//! sender and forwards to the network. The network delivers to the registered
//! inbox of the destination as another `Envelope<M>`.
//!
//! Two networks exist: the deterministic [`SimNetwork`](crate::sim::SimNetwork)
//! and, for nodes in separate processes, [`tcp::TcpTransport`] (an
//! [`EnvelopeSink`] over authenticated TCP connections).

pub mod tcp;

use crate::types::NodeId;
use actix::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use std::fmt::Debug;
use std::sync::Arc;

/// What a protocol message must be to cross a network: clonable (for
/// duplication and broadcast), printable (for traces), serializable (for TCP
/// framing and trace hashing).
pub trait Wire: Clone + Debug + Serialize + DeserializeOwned + Send + 'static {}

impl<T> Wire for T where T: Clone + Debug + Serialize + DeserializeOwned + Send + 'static {}

/// A message from one node to another.
#[derive(Clone, Debug, Message, serde::Serialize, serde::Deserialize)]
#[serde(bound = "")]
#[rtype(result = "()")]
pub struct Envelope<M: Wire> {
    /// Sending node.
    pub from: NodeId,
    /// Destination node.
    pub to: NodeId,
    /// The protocol message.
    pub msg: M,
}

/// Tells a network where to deliver messages addressed to `node`. A second
/// registration for the same node replaces the first (a restarted node).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterNode<M: Wire> {
    /// The node whose inbox this is.
    pub node: NodeId,
    /// Where its inbound envelopes go.
    pub inbox: Recipient<Envelope<M>>,
}

/// Tells a network that `node` is gone (crashed or stopped): messages to it
/// are dropped until it registers again.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct DeregisterNode {
    /// The node that left.
    pub node: NodeId,
}

/// A network entry point that takes envelopes synchronously, on the
/// sender's thread, instead of through an actor's mailbox: what a
/// simulated node's port is (see [`Transport::direct`]). It must not block
/// and must not call back into the sender.
pub trait EnvelopeSink<M: Wire>: Send + Sync + 'static {
    /// The envelope enters the network (it may be dropped, as any message).
    fn send(&self, env: Envelope<M>);
}

/// Where a [`Transport`] hands its envelopes.
enum Outbound<M: Wire> {
    /// A network actor's mailbox.
    Actor(Recipient<Envelope<M>>),
    /// A synchronous entry point (one mailbox hop fewer per message).
    Direct(Arc<dyn EnvelopeSink<M>>),
}

impl<M: Wire> Clone for Outbound<M> {
    fn clone(&self) -> Self {
        match self {
            Outbound::Actor(r) => Outbound::Actor(r.clone()),
            Outbound::Direct(s) => Outbound::Direct(Arc::clone(s)),
        }
    }
}

/// The handle a component uses to send to peers. Cloning is cheap.
pub struct Transport<M: Wire> {
    local: NodeId,
    outbound: Outbound<M>,
}

impl<M: Wire> Clone for Transport<M> {
    fn clone(&self) -> Self {
        Self {
            local: self.local,
            outbound: self.outbound.clone(),
        }
    }
}

impl<M: Wire> Transport<M> {
    /// A handle for node `local` sending through `outbound` (the network
    /// actor's recipient for envelopes).
    pub fn new(local: NodeId, outbound: Recipient<Envelope<M>>) -> Self {
        Self {
            local,
            outbound: Outbound::Actor(outbound),
        }
    }

    /// A handle for node `local` handing its envelopes to `sink` as they
    /// are sent (no mailbox in between).
    pub fn direct(local: NodeId, sink: Arc<dyn EnvelopeSink<M>>) -> Self {
        Self {
            local,
            outbound: Outbound::Direct(sink),
        }
    }

    /// The node this handle sends for.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// Sends `msg` to `to`. Delivery is not guaranteed (the network may lose,
    /// delay, duplicate or reorder it): protocols retry at their own level.
    pub fn send(&self, to: NodeId, msg: M) {
        let env = Envelope {
            from: self.local,
            to,
            msg,
        };
        match &self.outbound {
            Outbound::Actor(r) => r.do_send(env),
            Outbound::Direct(s) => s.send(env),
        }
    }

    /// Sends a copy of `msg` to every node in `to` except this one.
    pub fn broadcast<'a>(&self, to: impl IntoIterator<Item = &'a NodeId>, msg: &M) {
        for &peer in to {
            if peer != self.local {
                self.send(peer, msg.clone());
            }
        }
    }
}
