//! The messages between a PBFT node's actors, and the node builder with
//! one slot per replaceable component ([`PbftSlots`]).
//!
//! A node is three actors under the runtime's `NodeSupervisor`:
//!
//! * `authenticator` (the node's inbox): checks every inbound MAC and
//!   signature, drops what fails and records evidence; passes the rest
//!   as [`Inbound`] to the replica, and REPLYs as [`ClientReply`] to the
//!   client proxy;
//! * `replica`: the PBFTEngine with its CheckpointProtocol and ViewChanger
//!   cores ([`crate::engine`]); replaceable through [`PbftSlots::replica`]
//!   (a Byzantine replica is another actor handling [`Inbound`]);
//! * `client`: the clients that submit through this node
//!   ([`crate::client`]): signs requests, multicasts them, accepts a
//!   result on f+1 matching replies.

use crate::authenticator::actor::Authenticator;
use crate::client::ClientProxy;
use crate::engine::actor::{ReplicaActor, ReplicaStore};
use crate::engine::core::ReplicaConfig;
use crate::evidence::EvidenceLog;
use crate::messages::{PbftMessage, Reply};
use crate::safety::PbftEvent;
use actix::prelude::*;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::plugin::NodeError;
use consensus_actors::safety::SafetySink;
use consensus_actors::supervision::{
    ChildSlot, NodeSupervisor, SupervisionEvent, SupervisorBuilder,
};
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{ClientId, NodeId};
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// An authenticated message for the replica.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Inbound {
    /// The sender.
    pub from: NodeId,
    /// The message.
    pub msg: PbftMessage,
}

/// A REPLY for a client of this node (authenticated, or from the local
/// replica).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ClientReply(pub Reply);

/// A client's operation, submitted through this node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    /// The client.
    pub client: ClientId,
    /// The operation.
    pub op: KvCommand,
    /// Where the accepted result goes.
    pub reply: oneshot::Sender<Result<KvOutput, NodeError>>,
}

/// What the replica slot's factory gets.
#[derive(Clone)]
pub struct ReplicaContext {
    /// The replica's settings.
    pub cfg: ReplicaConfig,
    /// Its durable state (kept across crashes and restarts).
    pub store: ReplicaStore,
    /// Messages to peers.
    pub transport: Transport<PbftMessage>,
    /// REPLYs to this node's own clients.
    pub local_clients: Recipient<ClientReply>,
    /// Where safety events go.
    pub safety: SafetySink<PbftEvent>,
    /// Where evidence goes.
    pub evidence: EvidenceLog,
    /// Times count from here.
    pub epoch: Instant,
}

type StartChild = Box<
    dyn FnOnce(
        &mut SupervisorBuilder,
    ) -> Result<(), consensus_actors::supervision::SupervisionError>,
>;

/// A replica component: the actor to supervise, started in its slot.
pub struct ReplicaComponent {
    /// The recipient of authenticated messages.
    pub inbound: Recipient<Inbound>,
    start: StartChild,
}

impl ReplicaComponent {
    /// `actor`, to run in `slot` (created first, so its address can be
    /// handed out).
    pub fn new<A>(slot: ChildSlot<A>, actor: A) -> Self
    where
        A: Actor<Context = Context<A>> + Supervised + Handler<Inbound>,
    {
        let inbound = slot.address().recipient();
        Self {
            inbound,
            start: Box::new(move |tree| {
                tree.start_child(components::REPLICA, slot, actor)
                    .map(|_| ())
            }),
        }
    }
}

type ReplicaFactory = dyn Fn(&ReplicaContext) -> ReplicaComponent + Send + Sync;

/// The replaceable components of a PBFT node.
#[derive(Clone)]
pub struct PbftSlots {
    /// The replica (stock: [`ReplicaActor`]).
    pub replica: Arc<ReplicaFactory>,
}

impl Default for PbftSlots {
    fn default() -> Self {
        Self {
            replica: Arc::new(|ctx: &ReplicaContext| {
                let slot = ChildSlot::<ReplicaActor>::new();
                let actor = ReplicaActor::new(ctx.clone());
                ReplicaComponent::new(slot, actor)
            }),
        }
    }
}

impl PbftSlots {
    /// The slots with the replica built by `factory`.
    #[must_use]
    pub fn with_replica(
        mut self,
        factory: impl Fn(&ReplicaContext) -> ReplicaComponent + Send + Sync + 'static,
    ) -> Self {
        self.replica = Arc::new(factory);
        self
    }
}

/// The names the supervisor knows the components by.
pub mod components {
    /// The MessageAuthenticator (the node's inbox).
    pub const AUTHENTICATOR: &str = "authenticator";
    /// The replica (PBFTEngine, CheckpointProtocol, ViewChanger).
    pub const REPLICA: &str = "replica";
    /// The client proxy.
    pub const CLIENT: &str = "client";
}

/// A started PBFT node.
pub struct PbftNode {
    /// The node.
    pub id: NodeId,
    /// Its supervisor.
    pub supervisor: Addr<NodeSupervisor>,
    /// Its inbox (the authenticator).
    pub inbox: Recipient<Envelope<PbftMessage>>,
    /// Its client proxy.
    pub client: Addr<ClientProxy>,
}

/// What a node is started with.
#[derive(Clone)]
pub struct NodeSpec {
    /// The replica's settings.
    pub cfg: ReplicaConfig,
    /// Its durable state.
    pub store: ReplicaStore,
    /// Messages to peers.
    pub transport: Transport<PbftMessage>,
    /// Where safety events go.
    pub safety: SafetySink<PbftEvent>,
    /// Where evidence goes.
    pub evidence: EvidenceLog,
    /// Times count from here.
    pub epoch: Instant,
}

/// Starts a node: authenticator, replica (from `slots`), client proxy,
/// under one supervisor. Call inside a running actix System.
pub fn start_node(
    spec: NodeSpec,
    slots: &PbftSlots,
    supervision: Option<Recipient<SupervisionEvent>>,
) -> PbftNode {
    let id = spec.cfg.id;
    let mut tree = SupervisorBuilder::new(id).time_base(spec.epoch);
    if let Some(s) = supervision {
        tree = tree.subscriber(s);
    }
    let client_slot = ChildSlot::<ClientProxy>::new();
    let client_addr = client_slot.address();
    let ctx = ReplicaContext {
        cfg: spec.cfg,
        store: spec.store,
        transport: spec.transport,
        local_clients: client_addr.clone().recipient(),
        safety: spec.safety,
        evidence: spec.evidence,
        epoch: spec.epoch,
    };
    let replica = (slots.replica)(&ctx);
    let auth_slot = ChildSlot::<Authenticator>::new();
    let inbox = auth_slot.address().recipient();
    let auth = Authenticator::new(
        &ctx.cfg,
        replica.inbound.clone(),
        client_addr.clone().recipient(),
        ctx.evidence.clone(),
    );
    let client = ClientProxy::new(
        &ctx.cfg,
        replica.inbound.clone(),
        ctx.transport.clone(),
        ctx.epoch,
    );
    // Names are distinct constants: starting cannot fail.
    if let Err(e) = tree.start_child(components::AUTHENTICATOR, auth_slot, auth) {
        tracing::error!(error = %e, "cannot add the authenticator");
    }
    if let Err(e) = (replica.start)(&mut tree) {
        tracing::error!(error = %e, "cannot add the replica");
    }
    if let Err(e) = tree.start_child(components::CLIENT, client_slot, client) {
        tracing::error!(error = %e, "cannot add the client proxy");
    }
    PbftNode {
        id,
        supervisor: tree.start(),
        inbox,
        client: client_addr,
    }
}
