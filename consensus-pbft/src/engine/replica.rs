//! A whole replica in one core: the PBFTEngine with its ViewChanger and
//! CheckpointProtocol, their notes ([`crate::notes`]) routed at once, in
//! order. The hand-wired core tests run it, and so does a replica slot
//! that lies about all of its output (the Byzantine replicas and Twins):
//! the stock node runs the three cores as three actors instead.
//!
//! Messages go to their owner: VIEW-CHANGE and NEW-VIEW to the
//! ViewChanger, CHECKPOINT, FETCH-STATE and state transfers to the
//! CheckpointProtocol ([`owner_of`]), the rest to the engine; a tick goes
//! to all three.

use super::core::{Effect, Engine, Input, ReplicaConfig, Status};
use crate::authenticator::core::Keys;
use crate::checkpoint::core::Checkpointer;
use crate::messages::PbftMessage;
use crate::notes::Note;
use crate::types::{SeqNo, View};
use crate::view_changer::core::ViewChanger;
use consensus_actors::kv::{KvStore, StateMachine};
use consensus_actors::types::NodeId;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

/// The component a message of a peer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The PBFTEngine: REQUEST, PRE-PREPARE, PREPARE, COMMIT.
    Engine,
    /// The ViewChanger: VIEW-CHANGE, NEW-VIEW.
    ViewChanger,
    /// The CheckpointProtocol: CHECKPOINT, FETCH-STATE, state transfer.
    Checkpoint,
    /// A client's: REPLY.
    Client,
}

/// Which component handles `msg`.
pub fn owner_of(msg: &PbftMessage) -> Owner {
    match msg {
        PbftMessage::Request(_)
        | PbftMessage::PrePrepare { .. }
        | PbftMessage::Prepare { .. }
        | PbftMessage::Commit(_) => Owner::Engine,
        PbftMessage::ViewChange(_) | PbftMessage::NewView(_) => Owner::ViewChanger,
        PbftMessage::Checkpoint(_) | PbftMessage::FetchState(_) | PbftMessage::StateTransfer(_) => {
            Owner::Checkpoint
        }
        PbftMessage::Reply(_) | PbftMessage::Replies(_) => Owner::Client,
    }
}

/// The ViewChanger and the CheckpointProtocol of a replica whose engine is
/// kept elsewhere (a slot's [`ReplicaStore`](super::actor::ReplicaStore)).
#[derive(Debug)]
pub struct Companions {
    vc: ViewChanger,
    cp: Checkpointer,
}

impl Companions {
    /// The companions of `engine` (same configuration, keys and genesis).
    pub fn for_engine<SM: StateMachine>(engine: &Engine<SM>) -> Self {
        let cfg = engine.config().clone();
        let q = engine.quorums().clone();
        let genesis = engine
            .checkpoint_state(SeqNo::ZERO)
            .map(|c| Arc::clone(&c.state))
            .unwrap_or_default();
        Self {
            vc: ViewChanger::new(cfg.clone(), q.clone(), Rc::clone(engine.keys())),
            cp: Checkpointer::new(cfg, q, Rc::clone(engine.keys()), genesis),
        }
    }

    /// The ViewChanger.
    pub fn view_changer(&self) -> &ViewChanger {
        &self.vc
    }

    /// The CheckpointProtocol.
    pub fn checkpointer(&self) -> &Checkpointer {
        &self.cp
    }

    /// Starts the companions: they resync from the engine (on a fresh
    /// replica, and again after every restart).
    pub fn start<SM: StateMachine>(&mut self, engine: &mut Engine<SM>, now_us: u64) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut notes: VecDeque<Note> = VecDeque::new();
        out.extend(self.vc.start(now_us));
        notes.extend(self.vc.take_notes());
        out.extend(self.cp.start(now_us));
        notes.extend(self.cp.take_notes());
        self.route(engine, notes, &mut out);
        out
    }

    /// Feeds `input` to its owner (a tick to all three) and routes the
    /// notes until none is left.
    pub fn step<SM: StateMachine>(&mut self, engine: &mut Engine<SM>, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut notes = VecDeque::new();
        match input {
            Input::Tick { now_us } => {
                out.extend(engine.step(Input::Tick { now_us }));
                notes.extend(engine.take_notes());
                out.extend(self.vc.tick(now_us));
                notes.extend(self.vc.take_notes());
                out.extend(self.cp.tick(now_us));
                notes.extend(self.cp.take_notes());
            }
            Input::Message { from, msg } => match owner_of(&msg) {
                Owner::ViewChanger => {
                    out.extend(self.vc.handle_message(from, msg));
                    notes.extend(self.vc.take_notes());
                }
                Owner::Checkpoint => {
                    out.extend(self.cp.handle_message(from, msg));
                    notes.extend(self.cp.take_notes());
                }
                Owner::Engine | Owner::Client => {
                    out.extend(engine.step(Input::Message { from, msg }));
                    notes.extend(engine.take_notes());
                }
            },
        }
        self.route(engine, notes, &mut out);
        out
    }

    fn route<SM: StateMachine>(
        &mut self,
        engine: &mut Engine<SM>,
        mut notes: VecDeque<Note>,
        out: &mut Vec<Effect>,
    ) {
        let mut routed = 0usize;
        while let Some(note) = notes.pop_front() {
            routed += 1;
            assert!(routed < 100_000, "the components' notes do not quiesce");
            match note {
                Note::Engine(n) => {
                    out.extend(engine.step_note(n));
                    notes.extend(engine.take_notes());
                }
                Note::ViewChanger(n) => {
                    out.extend(self.vc.handle_note(n));
                    notes.extend(self.vc.take_notes());
                }
                Note::Checkpoint(n) => {
                    out.extend(self.cp.handle_note(n));
                    notes.extend(self.cp.take_notes());
                }
            }
        }
    }
}

/// One PBFT replica: the three cores, routed in one. See the
/// [module documentation](self).
pub struct Replica<SM: StateMachine = KvStore> {
    engine: Engine<SM>,
    parts: Companions,
}

impl<SM: StateMachine> std::fmt::Debug for Replica<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.engine.fmt(f)
    }
}

impl Replica<KvStore> {
    /// A replica of the reference key-value store in view 0 with the
    /// initial state.
    pub fn new(cfg: ReplicaConfig) -> Self {
        Self::with_state_machine(cfg, KvStore::default())
    }
}

impl<SM: StateMachine> Replica<SM> {
    /// A replica in view 0 executing on `initial`.
    pub fn with_state_machine(cfg: ReplicaConfig, initial: SM) -> Self {
        let keys = Rc::new(Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members));
        let engine = Engine::with_keys(cfg, initial, keys);
        let parts = Companions::for_engine(&engine);
        Self { engine, parts }
    }

    /// What a replica reports on start (leadership of view 0), after its
    /// ViewChanger and CheckpointProtocol synced with the engine.
    pub fn start(&mut self) -> Vec<Effect> {
        let mut out = self.engine.start();
        out.extend(self.parts.start(&mut self.engine, 0));
        out
    }

    /// Feeds `input`, returns the effects of the three cores in order.
    pub fn step(&mut self, input: Input) -> Vec<Effect> {
        self.parts.step(&mut self.engine, input)
    }

    /// The engine.
    pub fn engine(&self) -> &Engine<SM> {
        &self.engine
    }

    /// The ViewChanger and CheckpointProtocol.
    pub fn companions(&self) -> &Companions {
        &self.parts
    }

    /// The replica.
    pub fn id(&self) -> NodeId {
        self.engine.id()
    }

    /// Its view.
    pub fn view(&self) -> View {
        self.engine.view()
    }

    /// Its status in the view.
    pub fn status(&self) -> Status {
        self.engine.status()
    }

    /// The last sequence number executed.
    pub fn last_executed(&self) -> SeqNo {
        self.engine.last_executed()
    }

    /// The low watermark `h`.
    pub fn low_watermark(&self) -> SeqNo {
        self.engine.low_watermark()
    }

    /// Slots in the message log.
    pub fn log_len(&self) -> usize {
        self.engine.log_len()
    }

    /// Requests known and not executed.
    pub fn pending_len(&self) -> usize {
        self.engine.pending_len()
    }

    /// The replicated state machine.
    pub fn store(&self) -> &SM {
        self.engine.store()
    }

    /// The keys its three cores authenticate with (one set, shared).
    pub fn keys(&self) -> &Keys {
        self.engine.keys()
    }

    /// Whether it is the primary of its view, running the normal case.
    pub fn is_primary(&self) -> bool {
        self.engine.is_primary()
    }
}
