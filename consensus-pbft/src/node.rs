//! The messages between a PBFT node's actors, and the node builder with
//! one slot per replaceable component ([`PbftSlots`]).
//!
//! A node is five actors under the runtime's `NodeSupervisor`:
//!
//! * `authenticator` (the node's inbox): checks every inbound MAC and
//!   signature, drops what fails and records evidence; passes the rest
//!   as [`Inbound`] to the component that owns it
//!   ([`owner_of`](crate::engine::replica::owner_of)), and REPLYs as
//!   [`ClientReply`] to the client proxy;
//! * `replica`: the PBFTEngine ([`crate::engine`]); replaceable through
//!   [`PbftSlots::replica`];
//! * `view_changer`: the ViewChanger ([`crate::view_changer`]); replaceable
//!   through [`PbftSlots::view_changer`];
//! * `checkpoint`: the CheckpointProtocol ([`crate::checkpoint`]);
//!   replaceable through [`PbftSlots::checkpoint`];
//! * `client`: the clients that submit through this node
//!   ([`crate::client`]): signs requests, multicasts them, accepts a
//!   result on f+1 matching replies.
//!
//! The engine, the ViewChanger and the CheckpointProtocol talk through
//! [`ToEngine`], [`ToViewChanger`] and [`ToCheckpoint`], the notes of
//! [`crate::notes`] (whose module docs hold the contract, the resync after
//! a restart included), over the [`Peers`] every component's context holds.
//!
//! A replica slot may also hold a *whole* replica
//! ([`ReplicaComponent::whole`]): one actor running the three cores
//! ([`crate::engine::replica`]), as the Byzantine replicas and Twins do to
//! lie with all of their output. The node then starts no ViewChanger and no
//! CheckpointProtocol, and the authenticator gives that actor everything.

use crate::authenticator::actor::{Authenticator, Routes};
use crate::checkpoint::actor::CheckpointActor;
use crate::client::ClientProxy;
use crate::engine::actor::{ReplicaActor, ReplicaStore};
use crate::engine::core::ReplicaConfig;
use crate::evidence::EvidenceLog;
use crate::messages::{decode_payload, encode_payload, PbftMessage, Replies};
use crate::notes::{CheckpointNote, EngineNote, Note, ViewChangerNote};
use crate::safety::PbftEvent;
use crate::view_changer::actor::ViewChangerActor;
use actix::prelude::*;
use consensus_actors::kv::{KvStore, StateMachine};
use consensus_actors::plugin::NodeError;
use consensus_actors::safety::SafetySink;
use consensus_actors::supervision::{
    ChildSlot, NodeSupervisor, SupervisionEvent, SupervisorBuilder,
};
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{ClientId, LogId, LogIndex, NodeId, Term};
use std::cell::OnceCell;
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
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

/// REPLYs from one replica for clients of this node: one with its MAC, or
/// those of one executed batch under one MAC. The MACs are not checked yet:
/// the clients check them when a REPLY is still awaited
/// ([`ClientCore::handle_replies`]); the local replica's carry none.
///
/// [`ClientCore::handle_replies`]: crate::client::ClientCore::handle_replies
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ClientReply {
    /// The replica that sent them.
    pub from: NodeId,
    /// The replies.
    pub replies: Replies,
}

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
    /// Where the accepted result (encoded output and position) goes.
    pub reply: oneshot::Sender<Result<crate::client::Accepted, NodeError>>,
}

/// A request a [`RequestSigner`](crate::client::RequestSigner) of this
/// node already authenticated (on the submitting thread), for the client
/// proxy to send and track.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubmitAuthenticated {
    /// The request, with its client's MACs.
    pub request: crate::messages::AuthenticatedRequest,
    /// Where the accepted result (encoded output and position) goes.
    pub reply: oneshot::Sender<Result<crate::client::Accepted, NodeError>>,
}

/// A note for the engine (from the ViewChanger or the CheckpointProtocol).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ToEngine(pub EngineNote);

/// A note for the ViewChanger (from the engine).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ToViewChanger(pub ViewChangerNote);

/// A note for the CheckpointProtocol (from the engine).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ToCheckpoint(pub CheckpointNote);

/// Makes the component that receives it panic (fault injection: tests
/// restart components this way). The stock ViewChanger and
/// CheckpointProtocol handle it.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// A recipient the node connects once every component is built (each
/// factory needs the others' recipients, and a slot's address exists only
/// once its factory ran). Connected before any actor runs.
pub struct Link<M: Message<Result = ()> + Send>(Rc<OnceCell<Recipient<M>>>)
where
    M::Result: Send;

impl<M: Message<Result = ()> + Send> Clone for Link<M> {
    fn clone(&self) -> Self {
        Self(Rc::clone(&self.0))
    }
}

impl<M: Message<Result = ()> + Send> Default for Link<M> {
    fn default() -> Self {
        Self(Rc::new(OnceCell::new()))
    }
}

impl<M: Message<Result = ()> + Send> Link<M> {
    /// Sends `msg` (dropped with an error log if the link was never
    /// connected: a whole replica's node has no such component).
    pub fn do_send(&self, msg: M) {
        match self.0.get() {
            Some(r) => r.do_send(msg),
            None => tracing::error!(
                message = std::any::type_name::<M>(),
                "a note for a component the node did not start"
            ),
        }
    }

    fn connect(&self, to: Recipient<M>) {
        if self.0.set(to).is_err() {
            tracing::error!("a link connected twice");
        }
    }
}

/// Where a component's notes go.
#[derive(Clone, Default)]
pub struct Peers {
    /// The engine.
    pub engine: Link<ToEngine>,
    /// The ViewChanger.
    pub view_changer: Link<ToViewChanger>,
    /// The CheckpointProtocol.
    pub checkpoint: Link<ToCheckpoint>,
}

impl Peers {
    /// Sends each note to its component, in order.
    pub fn deliver(&self, notes: Vec<Note>) {
        for note in notes {
            match note {
                Note::Engine(n) => self.engine.do_send(ToEngine(n)),
                Note::ViewChanger(n) => self.view_changer.do_send(ToViewChanger(n)),
                Note::Checkpoint(n) => self.checkpoint.do_send(ToCheckpoint(n)),
            }
        }
    }
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
    /// The node's protocol components, for notes.
    pub peers: Peers,
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
            peers: self.peers.clone(),
        }
    }
}

impl<SM: StateMachine> ReplicaContext<SM> {
    /// An engine in view 0 on a fresh state machine.
    pub fn fresh_replica(&self) -> crate::engine::core::Engine<SM> {
        crate::engine::core::Engine::with_state_machine(
            self.cfg.clone(),
            (self.make_state_machine)(),
        )
    }

    /// The view change's view of the cluster (the genesis digest from a
    /// fresh state machine).
    pub fn quorums(&self) -> crate::view_changer::core::Quorums {
        self.cfg.quorums_from(&(self.make_state_machine)())
    }

    /// The encoded initial state (the checkpoint at 0).
    pub fn genesis_state(&self) -> Vec<u8> {
        crate::engine::core::encode_state(
            &(self.make_state_machine)(),
            &std::collections::BTreeMap::new(),
        )
    }

    /// Microseconds since the node's time base.
    pub fn now_us(&self) -> u64 {
        tokio::time::Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros() as u64
    }
}

type StartChild = Box<
    dyn FnOnce(
        &mut SupervisorBuilder,
    ) -> Result<(), consensus_actors::supervision::SupervisionError>,
>;

fn start_in<A>(name: &'static str, slot: ChildSlot<A>, actor: A) -> StartChild
where
    A: Actor<Context = Context<A>> + Supervised,
{
    Box::new(move |tree| tree.start_child(name, slot, actor).map(|_| ()))
}

/// A replica component: the actor to supervise, started in its slot.
pub struct ReplicaComponent {
    /// The recipient of authenticated messages.
    pub inbound: Recipient<Inbound>,
    /// The recipient of the other components' notes (`None`: a whole
    /// replica, which runs them itself).
    pub notes: Option<Recipient<ToEngine>>,
    start: StartChild,
}

impl ReplicaComponent {
    /// A PBFTEngine `actor`, to run in `slot` (created first, so its
    /// address can be handed out), next to the node's ViewChanger and
    /// CheckpointProtocol.
    pub fn new<A>(slot: ChildSlot<A>, actor: A) -> Self
    where
        A: Actor<Context = Context<A>> + Supervised + Handler<Inbound> + Handler<ToEngine>,
    {
        let addr = slot.address();
        Self {
            inbound: addr.clone().recipient(),
            notes: Some(addr.recipient()),
            start: start_in(components::REPLICA, slot, actor),
        }
    }

    /// A whole replica `actor` (it runs its own ViewChanger and
    /// CheckpointProtocol and gets every authenticated message).
    pub fn whole<A>(slot: ChildSlot<A>, actor: A) -> Self
    where
        A: Actor<Context = Context<A>> + Supervised + Handler<Inbound>,
    {
        Self {
            inbound: slot.address().recipient(),
            notes: None,
            start: start_in(components::REPLICA, slot, actor),
        }
    }
}

/// A ViewChanger or CheckpointProtocol component: the actor to supervise
/// and its recipients. `N` is the note it gets from the engine
/// ([`ToViewChanger`] or [`ToCheckpoint`]).
pub struct Component<N: Message<Result = ()> + Send> {
    /// The recipient of the authenticated messages it owns.
    pub inbound: Recipient<Inbound>,
    /// The recipient of the engine's notes.
    pub notes: Recipient<N>,
    /// Fault injection (`None`: the component offers none).
    pub panic: Option<Recipient<InjectPanic>>,
    start: StartNamed,
}

type StartResult = Result<(), consensus_actors::supervision::SupervisionError>;
type StartNamed = Box<dyn FnOnce(&mut SupervisorBuilder, &'static str) -> StartResult>;

impl<N: Message<Result = ()> + Send + 'static> Component<N> {
    /// `actor`, to run in `slot`.
    pub fn new<A>(slot: ChildSlot<A>, actor: A) -> Self
    where
        A: Actor<Context = Context<A>> + Supervised + Handler<Inbound> + Handler<N>,
    {
        let addr = slot.address();
        Self {
            inbound: addr.clone().recipient(),
            notes: addr.recipient(),
            panic: None,
            start: Box::new(move |tree, name| tree.start_child(name, slot, actor).map(|_| ())),
        }
    }

    /// The same, offering fault injection.
    pub fn with_panic(mut self, panic: Recipient<InjectPanic>) -> Self {
        self.panic = Some(panic);
        self
    }
}

type ReplicaFactory<SM> = dyn Fn(&ReplicaContext<SM>) -> ReplicaComponent + Send + Sync;
type ComponentFactory<SM, N> = dyn Fn(&ReplicaContext<SM>) -> Component<N> + Send + Sync;

/// The replaceable components of a PBFT node whose replicas execute on
/// `SM` (default: the reference key-value store).
pub struct PbftSlots<SM: StateMachine = KvStore> {
    /// The replica (stock: [`ReplicaActor`], the PBFTEngine).
    pub replica: Arc<ReplicaFactory<SM>>,
    /// The ViewChanger (stock: [`ViewChangerActor`]); not started next to
    /// a whole replica.
    pub view_changer: Arc<ComponentFactory<SM, ToViewChanger>>,
    /// The CheckpointProtocol (stock: [`CheckpointActor`]); not started
    /// next to a whole replica.
    pub checkpoint: Arc<ComponentFactory<SM, ToCheckpoint>>,
}

impl<SM: StateMachine> Clone for PbftSlots<SM> {
    fn clone(&self) -> Self {
        Self {
            replica: Arc::clone(&self.replica),
            view_changer: Arc::clone(&self.view_changer),
            checkpoint: Arc::clone(&self.checkpoint),
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
            view_changer: Arc::new(|ctx: &ReplicaContext<SM>| {
                let slot = ChildSlot::<ViewChangerActor<SM>>::new();
                let panic = slot.address().recipient();
                Component::new(slot, ViewChangerActor::new(ctx.clone())).with_panic(panic)
            }),
            checkpoint: Arc::new(|ctx: &ReplicaContext<SM>| {
                let slot = ChildSlot::<CheckpointActor<SM>>::new();
                let panic = slot.address().recipient();
                Component::new(slot, CheckpointActor::new(ctx.clone())).with_panic(panic)
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

    /// The slots with the ViewChanger built by `factory`.
    #[must_use]
    pub fn with_view_changer(
        mut self,
        factory: impl Fn(&ReplicaContext<SM>) -> Component<ToViewChanger> + Send + Sync + 'static,
    ) -> Self {
        self.view_changer = Arc::new(factory);
        self
    }

    /// The slots with the CheckpointProtocol built by `factory`.
    #[must_use]
    pub fn with_checkpoint(
        mut self,
        factory: impl Fn(&ReplicaContext<SM>) -> Component<ToCheckpoint> + Send + Sync + 'static,
    ) -> Self {
        self.checkpoint = Arc::new(factory);
        self
    }
}

/// The names the supervisor knows the components by.
pub mod components {
    /// The MessageAuthenticator (the node's inbox).
    pub const AUTHENTICATOR: &str = "authenticator";
    /// The replica (the PBFTEngine, or a whole replica).
    pub const REPLICA: &str = "replica";
    /// The ViewChanger.
    pub const VIEW_CHANGER: &str = "view_changer";
    /// The CheckpointProtocol.
    pub const CHECKPOINT: &str = "checkpoint";
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
    /// Fault injection into its ViewChanger (`None`: none offered, or a
    /// whole replica).
    pub view_changer_panic: Option<Recipient<InjectPanic>>,
    /// Fault injection into its CheckpointProtocol.
    pub checkpoint_panic: Option<Recipient<InjectPanic>>,
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
            view_changer_panic: self.view_changer_panic.clone(),
            checkpoint_panic: self.checkpoint_panic.clone(),
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
        let answer = submit_encoded::<SM>(&self.client, client, encode_payload(command));
        async move { answer.await.map(|(output, _)| output) }
    }

    /// As [`PbftNode::submit`], with the position f+1 replicas agree the
    /// command executed at: the view as term, the sequence number as index
    /// (the requests of one batch share it).
    pub fn submit_at(
        &self,
        client: ClientId,
        command: &SM::Command,
    ) -> impl Future<Output = Result<(SM::Output, LogId), NodeError>> + 'static {
        submit_encoded::<SM>(&self.client, client, encode_payload(command))
    }

    /// Reads the replica's state machine (`None` before it started or
    /// while a step holds it).
    pub fn with_state_machine<T>(&self, f: impl FnOnce(&SM) -> T) -> Option<T> {
        self.store.with(|r| f(r.store()))
    }
}

/// Submits an encoded command through `proxy` and decodes the accepted
/// output as `SM`'s, with its position.
pub(crate) fn submit_encoded<SM: StateMachine>(
    proxy: &Addr<ClientProxy>,
    client: ClientId,
    op: Vec<u8>,
) -> impl Future<Output = Result<(SM::Output, LogId), NodeError>> + 'static {
    let (tx, rx) = oneshot::channel();
    // Not `try_send`: the proxy's mailbox is bounded (16) and thousands of
    // clients submit at once; a stopped proxy drops the message, and with it
    // the answer's sender, which reads as `Stopped` below.
    proxy.do_send(Submit {
        client,
        op,
        reply: tx,
    });
    decode_answer::<SM>(rx)
}

/// Sends `request` (authenticated on the caller's thread) through `proxy`
/// and decodes the accepted output as `SM`'s, with its position.
pub(crate) fn submit_authenticated<SM: StateMachine>(
    proxy: &Addr<ClientProxy>,
    request: crate::messages::AuthenticatedRequest,
) -> impl Future<Output = Result<(SM::Output, LogId), NodeError>> + 'static {
    let (tx, rx) = oneshot::channel();
    proxy.do_send(SubmitAuthenticated { request, reply: tx });
    decode_answer::<SM>(rx)
}

/// The accepted output `rx` brings, decoded as `SM`'s, with its position.
async fn decode_answer<SM: StateMachine>(
    rx: oneshot::Receiver<Result<crate::client::Accepted, NodeError>>,
) -> Result<(SM::Output, LogId), NodeError> {
    match rx.await {
        Ok(Ok(accepted)) => {
            let at = LogId::new(Term(accepted.view.get()), LogIndex(accepted.seq.get()));
            decode_payload::<SM::Output>(&accepted.result)
                .map(|output| (output, at))
                .ok_or_else(|| {
                    NodeError::Unknown(
                        "f+1 replicas answered with bytes that are not an output of the service"
                            .into(),
                    )
                })
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(NodeError::Stopped),
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

/// Starts a node: authenticator, replica, ViewChanger and
/// CheckpointProtocol (from `slots`; only the replica if it is whole),
/// client proxy, under one supervisor. Call inside a running actix System.
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
        peers: Peers::default(),
    };
    let replica = (slots.replica)(&ctx);
    let companions = replica.notes.clone().map(|engine| {
        let vc = (slots.view_changer)(&ctx);
        let cp = (slots.checkpoint)(&ctx);
        ctx.peers.engine.connect(engine);
        ctx.peers.view_changer.connect(vc.notes.clone());
        ctx.peers.checkpoint.connect(cp.notes.clone());
        (vc, cp)
    });
    let routes = match &companions {
        Some((vc, cp)) => Routes {
            engine: replica.inbound.clone(),
            view_changer: vc.inbound.clone(),
            checkpoint: cp.inbound.clone(),
            clients: client_addr.clone().recipient(),
        },
        None => Routes {
            engine: replica.inbound.clone(),
            view_changer: replica.inbound.clone(),
            checkpoint: replica.inbound.clone(),
            clients: client_addr.clone().recipient(),
        },
    };
    let auth_slot = ChildSlot::<Authenticator>::new();
    let inbox = auth_slot.address().recipient();
    let auth = Authenticator::new(&ctx.cfg, routes, ctx.evidence.clone());
    let client = ClientProxy::new(
        &ctx.cfg,
        replica.inbound.clone(),
        ctx.transport.clone(),
        ctx.evidence.clone(),
        ctx.epoch,
    );
    // Names are distinct constants: starting cannot fail.
    if let Err(e) = tree.start_child(components::AUTHENTICATOR, auth_slot, auth) {
        tracing::error!(error = %e, "cannot add the authenticator");
    }
    if let Err(e) = (replica.start)(&mut tree) {
        tracing::error!(error = %e, "cannot add the replica");
    }
    let (mut view_changer_panic, mut checkpoint_panic) = (None, None);
    if let Some((vc, cp)) = companions {
        view_changer_panic = vc.panic.clone();
        checkpoint_panic = cp.panic.clone();
        if let Err(e) = (vc.start)(&mut tree, components::VIEW_CHANGER) {
            tracing::error!(error = %e, "cannot add the ViewChanger");
        }
        if let Err(e) = (cp.start)(&mut tree, components::CHECKPOINT) {
            tracing::error!(error = %e, "cannot add the CheckpointProtocol");
        }
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
        view_changer_panic,
        checkpoint_panic,
        _sm: PhantomData,
    }
}
