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
use crate::messages::{decode_payload, encode_payload, PbftMessage, Reply};
use crate::safety::PbftEvent;
use actix::prelude::*;
use consensus_actors::kv::{KvStore, StateMachine};
use consensus_actors::plugin::NodeError;
use consensus_actors::safety::SafetySink;
use consensus_actors::supervision::{
    ChildSlot, NodeSupervisor, SupervisionEvent, SupervisorBuilder,
};
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{ClientId, NodeId};
use std::future::Future;
use std::marker::PhantomData;
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

/// A client's operation, submitted through this node. The operation and
/// the result are the service's command and output encoded with
/// [`encode_payload`] ([`PbftNode::submit`] does both).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Submit {
    /// The client.
    pub client: ClientId,
    /// The operation (encoded command).
    pub op: Vec<u8>,
    /// Where the accepted result (encoded output) goes.
    pub reply: oneshot::Sender<Result<Vec<u8>, NodeError>>,
}

/// Builds a replica's empty state machine.
pub type MakeStateMachine<SM> = Arc<dyn Fn() -> SM + Send + Sync>;

/// What the replica slot's factory gets.
pub struct ReplicaContext<SM: StateMachine = KvStore> {
    /// The replica's settings.
    pub cfg: ReplicaConfig,
    /// Its durable state (kept across crashes and restarts).
    pub store: ReplicaStore<SM>,
    /// Builds the empty state machine a fresh replica starts from.
    pub make_state_machine: MakeStateMachine<SM>,
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

impl<SM: StateMachine> Clone for ReplicaContext<SM> {
    fn clone(&self) -> Self {
        Self {
            cfg: self.cfg.clone(),
            store: self.store.clone(),
            make_state_machine: Arc::clone(&self.make_state_machine),
            transport: self.transport.clone(),
            local_clients: self.local_clients.clone(),
            safety: self.safety.clone(),
            evidence: self.evidence.clone(),
            epoch: self.epoch,
        }
    }
}

impl<SM: StateMachine> ReplicaContext<SM> {
    /// A replica in view 0 on a fresh state machine.
    pub fn fresh_replica(&self) -> crate::engine::core::Replica<SM> {
        crate::engine::core::Replica::with_state_machine(
            self.cfg.clone(),
            (self.make_state_machine)(),
        )
    }
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

type ReplicaFactory<SM> = dyn Fn(&ReplicaContext<SM>) -> ReplicaComponent + Send + Sync;

/// The replaceable components of a PBFT node whose replicas execute on
/// `SM` (default: the reference key-value store).
pub struct PbftSlots<SM: StateMachine = KvStore> {
    /// The replica (stock: [`ReplicaActor`]).
    pub replica: Arc<ReplicaFactory<SM>>,
}

impl<SM: StateMachine> Clone for PbftSlots<SM> {
    fn clone(&self) -> Self {
        Self {
            replica: Arc::clone(&self.replica),
        }
    }
}

impl<SM: StateMachine> Default for PbftSlots<SM> {
    fn default() -> Self {
        Self {
            replica: Arc::new(|ctx: &ReplicaContext<SM>| {
                let slot = ChildSlot::<ReplicaActor<SM>>::new();
                let actor = ReplicaActor::new(ctx.clone());
                ReplicaComponent::new(slot, actor)
            }),
        }
    }
}

impl<SM: StateMachine> PbftSlots<SM> {
    /// The slots with the replica built by `factory`.
    #[must_use]
    pub fn with_replica(
        mut self,
        factory: impl Fn(&ReplicaContext<SM>) -> ReplicaComponent + Send + Sync + 'static,
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

/// A started PBFT node whose replica executes on `SM`.
pub struct PbftNode<SM: StateMachine = KvStore> {
    /// The node.
    pub id: NodeId,
    /// Its supervisor.
    pub supervisor: Addr<NodeSupervisor>,
    /// Its inbox (the authenticator).
    pub inbox: Recipient<Envelope<PbftMessage>>,
    /// Its client proxy.
    pub client: Addr<ClientProxy>,
    /// Its replica's durable state.
    pub store: ReplicaStore<SM>,
    _sm: PhantomData<fn() -> SM>,
}

impl<SM: StateMachine> Clone for PbftNode<SM> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            supervisor: self.supervisor.clone(),
            inbox: self.inbox.clone(),
            client: self.client.clone(),
            store: self.store.clone(),
            _sm: PhantomData,
        }
    }
}

impl<SM: StateMachine> PbftNode<SM> {
    /// Client `client` of this node submits `command`: the future resolves
    /// to the output f+1 replicas agreed on. Submitting needs no running
    /// future: the request leaves when this is called.
    pub fn submit(
        &self,
        client: ClientId,
        command: &SM::Command,
    ) -> impl Future<Output = Result<SM::Output, NodeError>> + 'static {
        submit_encoded::<SM>(&self.client, client, encode_payload(command))
    }

    /// Reads the replica's state machine (`None` before it started or
    /// while a step holds it).
    pub fn with_state_machine<T>(&self, f: impl FnOnce(&SM) -> T) -> Option<T> {
        self.store.with(|r| f(r.store()))
    }
}

/// Submits an encoded command through `proxy` and decodes the accepted
/// output as `SM`'s.
pub(crate) fn submit_encoded<SM: StateMachine>(
    proxy: &Addr<ClientProxy>,
    client: ClientId,
    op: Vec<u8>,
) -> impl Future<Output = Result<SM::Output, NodeError>> + 'static {
    let (tx, rx) = oneshot::channel();
    let sent = proxy.try_send(Submit {
        client,
        op,
        reply: tx,
    });
    async move {
        sent.map_err(|_| NodeError::Stopped)?;
        match rx.await {
            Ok(Ok(bytes)) => decode_payload::<SM::Output>(&bytes).ok_or_else(|| {
                NodeError::Unknown(
                    "f+1 replicas answered with bytes that are not an output of the service".into(),
                )
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(NodeError::Stopped),
        }
    }
}

/// What a node is started with.
pub struct NodeSpec<SM: StateMachine = KvStore> {
    /// The replica's settings.
    pub cfg: ReplicaConfig,
    /// Its durable state.
    pub store: ReplicaStore<SM>,
    /// Builds the empty state machine a fresh replica starts from.
    pub make_state_machine: MakeStateMachine<SM>,
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
pub fn start_node<SM: StateMachine>(
    spec: NodeSpec<SM>,
    slots: &PbftSlots<SM>,
    supervision: Option<Recipient<SupervisionEvent>>,
) -> PbftNode<SM> {
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
        make_state_machine: spec.make_state_machine,
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
        store: ctx.store,
        _sm: PhantomData,
    }
}
