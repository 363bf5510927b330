//! The training tier of a replica: **GradientConsensus** and
//! **ParameterSync** as supervised actors, each in a builder slot.
//!
//! The replicated state machines ([`GradientConsensus`],
//! [`ParameterSync`]) run inside the ordering layer (a Raft node's
//! LogReplicator), which owns them. Next to the ordering layer, each
//! replica runs a training tier under its own
//! [`NodeSupervisor`](consensus_actors::supervision::NodeSupervisor): the
//! component workers talk to.
//!
//! | component | messages | what it does |
//! |---|---|---|
//! | [`GradientConsensusActor`] | [`SubmitGradient`], [`CloseRound`], [`PullModel`], [`ModelApplied`] | submits gradients and round closes to the ordering layer; serves the model *this replica* applied |
//! | [`ParameterSyncActor`] | [`PushGradient`], [`PullParameters`], [`ParametersApplied`] | pushes through the ordering layer; serves pulls under BSP/SSP/ASP from *this replica's* parameters |
//!
//! # The contract with the ordering layer
//!
//! A component reaches the ordering layer only through an [`Ordering`]
//! handle in its context: `propose` (a command through the log, its output
//! back) and `read` (a linearizable query of the replicated state, used to
//! rebuild after a restart). The state machine of the component's own
//! replica reports every change of the served state to the component's
//! `applied` recipient ([`ModelApplied`], [`ParametersApplied`]): that is
//! how a replica serves what *it* applied, and why comparing the hashes
//! served by different replicas detects a replica that lies.
//!
//! # Slots
//!
//! [`TrainingSlots`] holds one [`Slot`] per component. A slot's factory
//! gets the component's context and returns a [`Component`]: the actor to
//! supervise and the recipients of its messages. Any actor handling the
//! same messages can fill it (the tests put in a replica whose
//! GradientConsensus serves a model it did not apply).
//!
//! A restarted component (its handler panicked) drops what it served and
//! rebuilds it from the replicated state through [`Ordering::read`], never
//! from memory a crash would have lost.

use crate::gradient_consensus::{
    GradientCommand, GradientConsensus, GradientOutput, ModelVersion, Round, TrainingConfig,
};
use crate::parameter_sync::{
    ParameterSync, SyncCommand, SyncConfig, SyncOutput, VersionedParameters,
};
use actix::prelude::*;
use consensus_actors::kv::StateMachine;
use consensus_actors::supervision::{ChildSlot, SupervisionError, SupervisorBuilder};
use consensus_actors::types::NodeId;
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// The names the components run under in a replica's training tier.
pub mod components {
    /// The GradientConsensus component.
    pub const GRADIENT_CONSENSUS: &str = "gradient_consensus";
    /// The ParameterSync component.
    pub const PARAMETER_SYNC: &str = "parameter_sync";
}

/// Why the ordering layer did not order (or read) a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderingError {
    /// No replica could order it in time (no leader, no quorum).
    #[error("the ordering layer made no progress within {0:?} (virtual)")]
    NoProgress(Duration),
    /// The answer of a read had an unexpected type (a bug in the adapter).
    #[error("the ordering layer answered a read with the wrong type")]
    BadAnswer,
}

/// A future of the ordering layer (single-threaded, like the simulation).
pub type OrderingFuture<T> = Pin<Box<dyn Future<Output = Result<T, OrderingError>>>>;

/// A query of the replicated state, boxed (retried by the adapter, hence `Fn`).
pub type Query<SM> = Arc<dyn Fn(&SM) -> Box<dyn Any + Send> + Send + Sync>;

type ProposeFn<SM> =
    dyn Fn(<SM as StateMachine>::Command) -> OrderingFuture<<SM as StateMachine>::Output>;
type ReadFn<SM> = dyn Fn(Query<SM>) -> OrderingFuture<Box<dyn Any + Send>>;

/// A component's handle on the ordering layer: propose a command, read the
/// replicated state. Protocol-agnostic; see
/// [`replica_sim::raft_ordering`](crate::replica_sim::raft_ordering) for Raft's.
pub struct Ordering<SM: StateMachine> {
    propose: Rc<ProposeFn<SM>>,
    read: Rc<ReadFn<SM>>,
}

impl<SM: StateMachine> Clone for Ordering<SM> {
    fn clone(&self) -> Self {
        Self {
            propose: Rc::clone(&self.propose),
            read: Rc::clone(&self.read),
        }
    }
}

impl<SM: StateMachine> Ordering<SM> {
    /// A handle from the adapter's `propose` and `read`.
    pub fn new(
        propose: impl Fn(SM::Command) -> OrderingFuture<SM::Output> + 'static,
        read: impl Fn(Query<SM>) -> OrderingFuture<Box<dyn Any + Send>> + 'static,
    ) -> Self {
        Self {
            propose: Rc::new(propose),
            read: Rc::new(read),
        }
    }

    /// Orders `command` and returns what applying it produced.
    pub fn propose(&self, command: SM::Command) -> OrderingFuture<SM::Output> {
        (self.propose)(command)
    }

    /// Runs `query` on the replicated state once everything ordered before
    /// the call is applied.
    pub fn read<R: Send + 'static>(
        &self,
        query: impl Fn(&SM) -> R + Send + Sync + 'static,
    ) -> OrderingFuture<R> {
        let answer = (self.read)(Arc::new(move |sm: &SM| {
            Box::new(query(sm)) as Box<dyn Any + Send>
        }));
        Box::pin(async move {
            answer
                .await?
                .downcast::<R>()
                .map(|b| *b)
                .map_err(|_| OrderingError::BadAnswer)
        })
    }
}

// ---------------------------------------------------------------------------
// Slots

type StartChild = Box<dyn FnOnce(&mut SupervisorBuilder, &str) -> Result<(), SupervisionError>>;

/// A component built by a slot: the child to supervise and the handles `H`
/// the rest of the replica (and the workers) use to reach it.
pub struct Component<H> {
    handles: H,
    start: StartChild,
}

impl<H: Clone> Component<H> {
    /// `actor`, to run in `slot` (created by the factory, so that the
    /// handles can be taken from its address before the actor starts).
    pub fn new<A>(slot: ChildSlot<A>, actor: A, handles: H) -> Self
    where
        A: Actor<Context = Context<A>> + Supervised,
    {
        Self {
            handles,
            start: Box::new(move |tree, name| tree.start_child(name, slot, actor).map(|_| ())),
        }
    }

    /// The handles.
    pub fn handles(&self) -> &H {
        &self.handles
    }

    /// Adds the component to `tree` as `name` (it starts with the tree) and
    /// returns its handles.
    pub fn start(self, tree: &mut SupervisorBuilder, name: &str) -> Result<H, SupervisionError> {
        (self.start)(tree, name)?;
        Ok(self.handles)
    }
}

type Factory<Ctx, H> = dyn Fn(&Ctx) -> Component<H> + Send + Sync;

/// The factory of one component. Cheap to clone.
pub struct Slot<Ctx, H>(Arc<Factory<Ctx, H>>);

impl<Ctx, H> Clone for Slot<Ctx, H> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<Ctx, H> Slot<Ctx, H> {
    /// A slot filled by what `factory` builds.
    pub fn new(factory: impl Fn(&Ctx) -> Component<H> + Send + Sync + 'static) -> Self {
        Self(Arc::new(factory))
    }

    /// Builds the component for `ctx`.
    pub fn build(&self, ctx: &Ctx) -> Component<H> {
        (self.0)(ctx)
    }
}

/// What the GradientConsensus slot's factory gets.
#[derive(Clone)]
pub struct GradientContext {
    /// The replica.
    pub id: NodeId,
    /// The training configuration (the initial model is served before the
    /// first round closes).
    pub config: TrainingConfig,
    /// The ordering layer.
    pub ordering: Ordering<GradientConsensus>,
}

/// What a replica needs from its GradientConsensus component.
#[derive(Clone)]
pub struct GradientHandles {
    /// Workers' gradients.
    pub submit: Recipient<SubmitGradient>,
    /// The coordinator's round closes.
    pub close: Recipient<CloseRound>,
    /// Model pulls.
    pub pull: Recipient<PullModel>,
    /// What the replica's state machine applied (give it to the state
    /// machine with [`GradientConsensus::with_publisher`]).
    pub applied: Recipient<ModelApplied>,
    /// Fault injection.
    pub panic: Recipient<InjectPanic>,
}

/// What the ParameterSync slot's factory gets.
#[derive(Clone)]
pub struct SyncContext {
    /// The replica.
    pub id: NodeId,
    /// The parameter group's configuration.
    pub config: SyncConfig,
    /// The ordering layer.
    pub ordering: Ordering<ParameterSync>,
}

/// What a replica needs from its ParameterSync component.
#[derive(Clone)]
pub struct SyncHandles {
    /// Workers' pushes.
    pub push: Recipient<PushGradient>,
    /// Workers' pulls.
    pub pull: Recipient<PullParameters>,
    /// What the replica's state machine applied (give it to the state
    /// machine with [`ParameterSync::with_publisher`]).
    pub applied: Recipient<ParametersApplied>,
    /// Fault injection.
    pub panic: Recipient<InjectPanic>,
}

/// The GradientConsensus slot.
pub type GradientConsensusSlot = Slot<GradientContext, GradientHandles>;
/// The ParameterSync slot.
pub type ParameterSyncSlot = Slot<SyncContext, SyncHandles>;

impl Default for GradientConsensusSlot {
    /// The stock [`GradientConsensusActor`].
    fn default() -> Self {
        Slot::new(|ctx: &GradientContext| {
            let child = ChildSlot::<GradientConsensusActor>::new();
            let addr = child.address();
            let actor = GradientConsensusActor::new(ctx);
            Component::new(child, actor, GradientHandles::of(&addr))
        })
    }
}

impl Default for ParameterSyncSlot {
    /// The stock [`ParameterSyncActor`].
    fn default() -> Self {
        Slot::new(|ctx: &SyncContext| {
            let child = ChildSlot::<ParameterSyncActor>::new();
            let addr = child.address();
            let actor = ParameterSyncActor::new(ctx);
            Component::new(child, actor, SyncHandles::of(&addr))
        })
    }
}

impl GradientHandles {
    /// The handles of an actor that handles every GradientConsensus message.
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<SubmitGradient>
            + Handler<CloseRound>
            + Handler<PullModel>
            + Handler<ModelApplied>
            + Handler<InjectPanic>,
    {
        Self {
            submit: addr.clone().recipient(),
            close: addr.clone().recipient(),
            pull: addr.clone().recipient(),
            applied: addr.clone().recipient(),
            panic: addr.clone().recipient(),
        }
    }
}

impl SyncHandles {
    /// The handles of an actor that handles every ParameterSync message.
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<PushGradient>
            + Handler<PullParameters>
            + Handler<ParametersApplied>
            + Handler<InjectPanic>,
    {
        Self {
            push: addr.clone().recipient(),
            pull: addr.clone().recipient(),
            applied: addr.clone().recipient(),
            panic: addr.clone().recipient(),
        }
    }
}

/// The slots of a replica's training tier, one per component, each filled
/// by the stock actor unless replaced.
#[derive(Clone, Default)]
pub struct TrainingSlots {
    /// GradientConsensus.
    pub gradient_consensus: GradientConsensusSlot,
    /// ParameterSync.
    pub parameter_sync: ParameterSyncSlot,
}

// ---------------------------------------------------------------------------
// Messages

/// A worker's gradient for a round, to be ordered.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<GradientOutput, OrderingError>")]
pub struct SubmitGradient {
    /// The round.
    pub round: Round,
    /// The worker.
    pub worker: NodeId,
    /// The gradient.
    pub gradient: Vec<f32>,
}

/// Closes a round (its virtual timeout expired). Answers the round's
/// [`GradientOutput::Closed`] summary, also when a retried close finds the
/// round already closed by its first attempt.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Result<GradientOutput, OrderingError>")]
pub struct CloseRound {
    /// The round.
    pub round: Round,
}

/// The model a replica applied, as served to workers.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelView {
    /// The open round.
    pub round: Round,
    /// The parameters.
    pub params: Arc<Vec<f32>>,
    /// Their version (number, vector, hash).
    pub version: ModelVersion,
}

/// Asks for the replica's model once it has applied at least version
/// `at_least`, waiting up to `within` (virtual); after that, the model it
/// has (check its version).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "Option<ModelView>")]
pub struct PullModel {
    /// The smallest version number wanted.
    pub at_least: u64,
    /// How long to wait for it.
    pub within: Duration,
}

/// The replica's state machine applied a round close (or restored a
/// snapshot): the model it now holds.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct ModelApplied(pub ModelView);

/// A worker's push, to be ordered.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<SyncOutput, OrderingError>")]
pub struct PushGradient {
    /// The worker.
    pub worker: NodeId,
    /// Its clock.
    pub clock: u64,
    /// The gradient.
    pub gradient: Vec<f32>,
}

/// A worker at `clock` asks for parameters to compute on. The replica waits
/// (up to `within`, virtual) until it has applied the worker's own pushes
/// (read-your-writes), then answers under the consistency mode.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "PullReply")]
pub struct PullParameters {
    /// The worker.
    pub worker: NodeId,
    /// Its clock (pushes of its applied so far, by its count).
    pub clock: u64,
    /// How long to wait for the replica to apply the worker's pushes.
    pub within: Duration,
}

/// The answer to a [`PullParameters`].
#[derive(Clone, Debug, PartialEq)]
pub enum PullReply {
    /// Compute on these.
    Ready(VersionedParameters),
    /// The consistency mode says wait: the worker is too far ahead of the
    /// slowest one.
    Wait {
        /// The slowest worker's clock in what this replica applied.
        slowest: u64,
    },
    /// The replica has not applied the worker's pushes yet.
    NotYet,
}

/// The replica's state machine applied a push (or an eviction, or restored
/// a snapshot): the parameters it now holds.
#[derive(Clone, Debug, Message)]
#[rtype(result = "()")]
pub struct ParametersApplied(pub VersionedParameters);

/// Makes the component's next handler panic (tests of supervision).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

// ---------------------------------------------------------------------------
// GradientConsensus

/// The pure part of the GradientConsensus component: the model this
/// replica applied, and which pulls wait for a newer one.
#[derive(Debug, Default)]
pub struct ModelMirror {
    view: Option<ModelView>,
}

impl ModelMirror {
    /// A mirror serving `initial`.
    pub fn new(initial: Option<ModelView>) -> Self {
        Self { view: initial }
    }

    /// What is served.
    pub fn view(&self) -> Option<&ModelView> {
        self.view.as_ref()
    }

    /// Takes `view` when it is newer than what is served; true when taken.
    /// Versions only grow: a replayed older close (a restarted replica
    /// catching up) is ignored.
    pub fn handle_applied(&mut self, view: ModelView) -> bool {
        let newer = self
            .view
            .as_ref()
            .is_none_or(|v| view.version.number > v.version.number);
        if newer {
            debug_assert_eq!(
                view.version.hash,
                crate::gradient_consensus::parameter_hash(&view.params)
            );
            self.view = Some(view);
        }
        newer
    }

    /// Whether a pull for `at_least` can be answered now.
    pub fn serves(&self, at_least: u64) -> bool {
        self.view
            .as_ref()
            .is_some_and(|v| v.version.number >= at_least)
    }

    /// Forgets what was served (a restart).
    pub fn clear(&mut self) {
        self.view = None;
    }
}

/// The view of a GradientConsensus state machine.
pub fn model_view(sm: &GradientConsensus) -> ModelView {
    ModelView {
        round: sm.round(),
        params: Arc::new(sm.params().to_vec()),
        version: sm.version().clone(),
    }
}

/// The stock GradientConsensus component. See the [module documentation](self).
pub struct GradientConsensusActor {
    id: NodeId,
    ordering: Ordering<GradientConsensus>,
    mirror: ModelMirror,
    waiting: Vec<(u64, oneshot::Sender<Option<ModelView>>)>,
    panic_next: bool,
    restarted: bool,
}

impl GradientConsensusActor {
    /// The component of `ctx`'s replica, serving the initial model until
    /// its state machine applies a round.
    pub fn new(ctx: &GradientContext) -> Self {
        let params = ctx.config.initial.clone();
        let initial = ModelView {
            round: Round(0),
            version: ModelVersion {
                number: 0,
                vector: Default::default(),
                hash: crate::gradient_consensus::parameter_hash(&params),
            },
            params: Arc::new(params),
        };
        Self {
            id: ctx.id,
            ordering: ctx.ordering.clone(),
            mirror: ModelMirror::new(Some(initial)),
            waiting: Vec::new(),
            panic_next: false,
            restarted: false,
        }
    }

    /// The model served now.
    pub fn mirror(&self) -> &ModelMirror {
        &self.mirror
    }

    fn maybe_panic(&mut self) {
        if std::mem::take(&mut self.panic_next) {
            panic!("injected panic in {}'s GradientConsensus", self.id);
        }
    }
}

impl Actor for GradientConsensusActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if !self.restarted {
            return;
        }
        // Rebuild what is served from the replicated state.
        let read = self.ordering.read(model_view);
        let me = ctx.address();
        ctx.spawn(
            async move {
                match read.await {
                    Ok(view) => me.do_send(ModelApplied(view)),
                    Err(e) => tracing::warn!(error = %e, "could not rebuild the served model"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Supervised for GradientConsensusActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!(replica = %self.id, "GradientConsensus restarting: rebuilding from the replicated state");
        self.mirror.clear();
        // Waiting pulls were lost with the panic's message; answer them with
        // nothing rather than leave them hanging.
        for (_, tx) in self.waiting.drain(..) {
            let _ = tx.send(None);
        }
        self.restarted = true;
    }
}

impl Handler<SubmitGradient> for GradientConsensusActor {
    type Result = ResponseFuture<Result<GradientOutput, OrderingError>>;

    fn handle(&mut self, msg: SubmitGradient, _: &mut Context<Self>) -> Self::Result {
        self.maybe_panic();
        self.ordering.propose(GradientCommand::Submit {
            round: msg.round,
            worker: msg.worker,
            gradient: msg.gradient,
        })
    }
}

impl Handler<CloseRound> for GradientConsensusActor {
    type Result = ResponseFuture<Result<GradientOutput, OrderingError>>;

    fn handle(&mut self, msg: CloseRound, _: &mut Context<Self>) -> Self::Result {
        self.maybe_panic();
        let ordering = self.ordering.clone();
        let round = msg.round;
        Box::pin(async move {
            match ordering
                .propose(GradientCommand::CloseRound { round })
                .await?
            {
                GradientOutput::Stale { open } if open > round => {
                    // A retried close whose first attempt committed: the
                    // replicated state remembers the summary.
                    let last = ordering
                        .read(|sm: &GradientConsensus| sm.last_summary().cloned())
                        .await?;
                    Ok(match last {
                        Some(s) if s.round == round => GradientOutput::Closed(s),
                        _ => GradientOutput::Stale { open },
                    })
                }
                other => Ok(other),
            }
        })
    }
}

impl Handler<PullModel> for GradientConsensusActor {
    type Result = ResponseFuture<Option<ModelView>>;

    fn handle(&mut self, msg: PullModel, ctx: &mut Context<Self>) -> Self::Result {
        self.maybe_panic();
        if self.mirror.serves(msg.at_least) {
            let view = self.mirror.view().cloned();
            return Box::pin(async move { view });
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push((msg.at_least, tx));
        let me = ctx.address();
        Box::pin(async move {
            match tokio::time::timeout(msg.within, rx).await {
                Ok(Ok(view)) => view,
                // Timed out (or the actor restarted): what it has now.
                _ => me
                    .send(PullModel {
                        at_least: 0,
                        within: Duration::ZERO,
                    })
                    .await
                    .ok()
                    .flatten(),
            }
        })
    }
}

impl Handler<ModelApplied> for GradientConsensusActor {
    type Result = ();

    fn handle(&mut self, msg: ModelApplied, _: &mut Context<Self>) {
        if !self.mirror.handle_applied(msg.0) {
            return;
        }
        let mirror = &self.mirror;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(at_least, _)| mirror.serves(*at_least));
        self.waiting = waiting;
        for (_, tx) in ready {
            let _ = tx.send(self.mirror.view().cloned());
        }
    }
}

impl Handler<InjectPanic> for GradientConsensusActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        self.panic_next = true;
    }
}

// ---------------------------------------------------------------------------
// ParameterSync

/// The pure part of the ParameterSync component: the parameters this
/// replica applied, the consistency rule for pulls, and since when each
/// worker has been *behind*: the slowest, behind the fastest, at the same
/// clock (times are given by the caller: virtual time since the component
/// started). A worker blocked by a silent one is not behind (every active
/// worker is at least as far), so it is not mistaken for silent once the
/// silent one is evicted.
#[derive(Debug)]
pub struct ParameterMirror {
    config: SyncConfig,
    view: Option<VersionedParameters>,
    behind: BTreeMap<NodeId, (u64, Duration)>,
}

impl ParameterMirror {
    /// A mirror for `config`, serving `initial` from time zero.
    pub fn new(config: SyncConfig, initial: Option<VersionedParameters>) -> Self {
        let mut m = Self {
            config,
            view: None,
            behind: BTreeMap::new(),
        };
        if let Some(v) = initial {
            m.handle_applied(v, Duration::ZERO);
        }
        m
    }

    /// Takes `view`, applied by the replica at `now`, when newer; true when
    /// taken.
    pub fn handle_applied(&mut self, view: VersionedParameters, now: Duration) -> bool {
        let newer = self.view.as_ref().is_none_or(|v| {
            view.version.number > v.version.number
                || (view.version.number == v.version.number && view.evicted.len() > v.evicted.len())
        });
        if newer {
            let clock = |w: NodeId| view.version.vector.get(w);
            let fastest = self
                .config
                .workers
                .iter()
                .map(|w| clock(*w))
                .max()
                .unwrap_or(0);
            for &w in &self.config.workers {
                let c = clock(w);
                if c == view.slowest && c < fastest && !view.evicted.contains(&w) {
                    let entry = self.behind.entry(w).or_insert((c, now));
                    if entry.0 != c {
                        *entry = (c, now);
                    }
                } else {
                    self.behind.remove(&w);
                }
            }
            self.view = Some(view);
        }
        newer
    }

    /// The workers to evict at `now`, with the clock they are stuck at:
    /// behind (see the type's documentation) for at least
    /// [`SyncConfig::evict_after`], which must exceed an honest worker's
    /// longest step. Empty without eviction.
    pub fn stuck(&self, now: Duration) -> Vec<(NodeId, u64)> {
        let Some(after) = self.config.evict_after else {
            return Vec::new();
        };
        self.behind
            .iter()
            .filter(|(_, &(_, since))| now.saturating_sub(since) >= after)
            .map(|(&w, &(c, _))| (w, c))
            .collect()
    }

    /// The answer to `pull` now: `NotYet` until this replica applied the
    /// worker's `clock` pushes, then `Wait` while the consistency mode
    /// forbids computing, else the parameters.
    pub fn handle_pull(&self, pull: &PullParameters) -> PullReply {
        let Some(view) = &self.view else {
            return PullReply::NotYet;
        };
        if view.version.vector.get(pull.worker) < pull.clock {
            return PullReply::NotYet;
        }
        if self.config.consistency.allows(pull.clock, view.slowest) {
            PullReply::Ready(view.clone())
        } else {
            PullReply::Wait {
                slowest: view.slowest,
            }
        }
    }

    /// Forgets what was served (a restart).
    pub fn clear(&mut self) {
        self.view = None;
    }
}

/// The stock ParameterSync component. See the [module documentation](self).
pub struct ParameterSyncActor {
    id: NodeId,
    ordering: Ordering<ParameterSync>,
    mirror: ParameterMirror,
    waiting: Vec<(PullParameters, oneshot::Sender<PullReply>)>,
    epoch: tokio::time::Instant,
    evictions_proposed: BTreeSet<(NodeId, u64)>,
    panic_next: bool,
    restarted: bool,
}

impl ParameterSyncActor {
    /// The component of `ctx`'s replica, serving the initial parameters
    /// until its state machine applies a push.
    pub fn new(ctx: &SyncContext) -> Self {
        let initial = ParameterSync::new(ctx.config.clone()).pull();
        Self {
            id: ctx.id,
            ordering: ctx.ordering.clone(),
            mirror: ParameterMirror::new(ctx.config.clone(), Some(initial)),
            waiting: Vec::new(),
            epoch: tokio::time::Instant::now(),
            evictions_proposed: BTreeSet::new(),
            panic_next: false,
            restarted: false,
        }
    }

    /// Proposes the eviction of every worker stuck long enough (once per
    /// worker and clock); the log decides, so replicas proposing the same
    /// eviction is harmless (the second is refused).
    fn maybe_evict(&mut self, ctx: &mut Context<Self>) {
        for (worker, clock) in self.mirror.stuck(self.epoch.elapsed()) {
            if !self.evictions_proposed.insert((worker, clock)) {
                continue;
            }
            let propose = self.ordering.propose(SyncCommand::Evict { worker, clock });
            let id = self.id;
            ctx.spawn(
                async move {
                    match propose.await {
                        Ok(out) => tracing::debug!(replica = %id, %worker, clock, ?out, "eviction proposed"),
                        Err(e) => tracing::warn!(replica = %id, %worker, error = %e, "eviction not ordered"),
                    }
                }
                .into_actor(self),
            );
        }
    }
}

impl Actor for ParameterSyncActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(after) = self.mirror.config.evict_after {
            let period = (after / 4).max(Duration::from_millis(1));
            ctx.run_interval(period, Self::maybe_evict);
        }
        if !self.restarted {
            return;
        }
        let read = self.ordering.read(ParameterSync::pull);
        let me = ctx.address();
        ctx.spawn(
            async move {
                match read.await {
                    Ok(view) => me.do_send(ParametersApplied(view)),
                    Err(e) => tracing::warn!(error = %e, "could not rebuild the served parameters"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Supervised for ParameterSyncActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!(replica = %self.id, "ParameterSync restarting: rebuilding from the replicated state");
        self.mirror.clear();
        for (_, tx) in self.waiting.drain(..) {
            let _ = tx.send(PullReply::NotYet);
        }
        self.restarted = true;
    }
}

impl Handler<PushGradient> for ParameterSyncActor {
    type Result = ResponseFuture<Result<SyncOutput, OrderingError>>;

    fn handle(&mut self, msg: PushGradient, _: &mut Context<Self>) -> Self::Result {
        if std::mem::take(&mut self.panic_next) {
            panic!("injected panic in {}'s ParameterSync", self.id);
        }
        self.ordering.propose(SyncCommand::Push {
            worker: msg.worker,
            clock: msg.clock,
            gradient: msg.gradient,
        })
    }
}

impl Handler<PullParameters> for ParameterSyncActor {
    type Result = ResponseFuture<PullReply>;

    fn handle(&mut self, msg: PullParameters, _: &mut Context<Self>) -> Self::Result {
        if std::mem::take(&mut self.panic_next) {
            panic!("injected panic in {}'s ParameterSync", self.id);
        }
        let reply = self.mirror.handle_pull(&msg);
        if reply != PullReply::NotYet || msg.within.is_zero() {
            return Box::pin(async move { reply });
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.push((msg, tx));
        Box::pin(async move {
            tokio::time::timeout(msg.within, rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(PullReply::NotYet)
        })
    }
}

impl Handler<ParametersApplied> for ParameterSyncActor {
    type Result = ();

    fn handle(&mut self, msg: ParametersApplied, _: &mut Context<Self>) {
        if !self.mirror.handle_applied(msg.0, self.epoch.elapsed()) {
            return;
        }
        let mut still = Vec::new();
        for (pull, tx) in std::mem::take(&mut self.waiting) {
            match self.mirror.handle_pull(&pull) {
                PullReply::NotYet if !tx.is_closed() => still.push((pull, tx)),
                PullReply::NotYet => {}
                reply => {
                    let _ = tx.send(reply);
                }
            }
        }
        self.waiting = still;
    }
}

impl Handler<InjectPanic> for ParameterSyncActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        self.panic_next = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradient_consensus::parameter_hash;
    use crate::parameter_sync::Consistency;

    fn view(number: u64, params: Vec<f32>) -> ModelView {
        ModelView {
            round: Round(number),
            version: ModelVersion {
                number,
                vector: Default::default(),
                hash: parameter_hash(&params),
            },
            params: Arc::new(params),
        }
    }

    /// Regression (found with `robust_training --consistency ssp:2
    /// --attack silent --evict-after 5`): a worker blocked by the silent one
    /// sat at its clock as long as the silent one and was evicted right
    /// after it, stalling the run. Being *behind* starts when the others
    /// move past, not when the clock was reached.
    #[test]
    fn a_worker_blocked_by_a_silent_one_is_not_taken_for_silent() {
        let ms = Duration::from_millis;
        let mut config = SyncConfig::plain(
            vec![0.0],
            1.0,
            (1..=3).map(NodeId).collect(),
            Consistency::Bsp,
        );
        config.evict_after = Some(ms(100));
        let mut sm = ParameterSync::new(config.clone());
        let mut m = ParameterMirror::new(config, Some(sm.pull()));
        let push = |w, clock| SyncCommand::Push {
            worker: NodeId(w),
            clock,
            gradient: vec![1.0],
        };
        for w in [1, 2] {
            sm.apply(&push(w, 0));
            m.handle_applied(sm.pull(), ms(0));
        }
        assert_eq!(m.stuck(ms(100)), vec![(NodeId(3), 0)]);
        sm.apply(&SyncCommand::Evict {
            worker: NodeId(3),
            clock: 0,
        });
        m.handle_applied(sm.pull(), ms(110));
        assert!(m.stuck(ms(110)).is_empty());
        sm.apply(&push(1, 1));
        m.handle_applied(sm.pull(), ms(150));
        assert!(
            m.stuck(ms(200)).is_empty(),
            "worker 2 has been at clock 1 since 0 ms, but behind only since 150 ms"
        );
        assert_eq!(m.stuck(ms(250)), vec![(NodeId(2), 1)]);
        sm.apply(&push(2, 1));
        m.handle_applied(sm.pull(), ms(260));
        assert!(m.stuck(ms(999)).is_empty());
    }

    #[test]
    fn the_model_mirror_only_moves_forward() {
        let mut m = ModelMirror::new(Some(view(0, vec![0.0])));
        assert!(m.serves(0) && !m.serves(1));
        assert!(m.handle_applied(view(2, vec![1.0])));
        assert!(!m.handle_applied(view(1, vec![5.0])), "a replayed close");
        assert_eq!(m.view().map(|v| v.params[0]), Some(1.0));
        assert!(m.serves(2) && !m.serves(3));
        m.clear();
        assert!(!m.serves(0));
    }

    #[test]
    fn pulls_wait_for_own_pushes_then_obey_the_mode() {
        let mut config = SyncConfig::plain(
            vec![0.0],
            1.0,
            vec![NodeId(1), NodeId(2)],
            Consistency::Ssp(1),
        );
        config.evict_after = Some(Duration::from_millis(100));
        let mut sm = ParameterSync::new(config.clone());
        let mut m = ParameterMirror::new(config, Some(sm.pull()));
        let pull = |clock| PullParameters {
            worker: NodeId(1),
            clock,
            within: Duration::ZERO,
        };
        assert!(matches!(m.handle_pull(&pull(0)), PullReply::Ready(_)));
        assert_eq!(m.handle_pull(&pull(1)), PullReply::NotYet);
        for clock in 0..2 {
            sm.apply(&SyncCommand::Push {
                worker: NodeId(1),
                clock,
                gradient: vec![1.0],
            });
            assert!(m.handle_applied(sm.pull(), Duration::from_millis(10 * clock)));
        }
        // Clock 2 while worker 2 is at 0: more than 1 ahead.
        assert_eq!(m.handle_pull(&pull(2)), PullReply::Wait { slowest: 0 });
        // Worker 2 is behind since worker 1 pushed at 0 ms: stuck after 100 ms.
        assert!(m.stuck(Duration::from_millis(99)).is_empty());
        assert_eq!(m.stuck(Duration::from_millis(100)), vec![(NodeId(2), 0)]);
        let SyncOutput::Evicted(_) = sm.apply(&SyncCommand::Evict {
            worker: NodeId(2),
            clock: 0,
        }) else {
            panic!("evicted");
        };
        assert!(m.handle_applied(sm.pull(), Duration::from_millis(150)));
        assert!(m.stuck(Duration::from_secs(9)).is_empty());
        assert!(matches!(m.handle_pull(&pull(2)), PullReply::Ready(_)));
    }
}
