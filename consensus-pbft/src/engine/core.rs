//! The PBFTEngine core: one replica's normal case (Castro and Liskov,
//! OSDI'99 §4.2). Pure: no actix, no clock, no I/O. Inputs are
//! authenticated messages (the MessageAuthenticator checked every MAC and
//! signature), ticks and [`EngineNote`]s from the ViewChanger and the
//! CheckpointProtocol; outputs are [`Effect`]s and [`Note`]s to them (the
//! contract is [`crate::notes`]). [`Replica`] is the three cores in one.
//!
//! * A client request carries the client's identity and timestamp; the
//!   client table keeps the last reply of every client, so a request is
//!   executed at most once and a retransmission gets the cached reply.
//! * The primary of view `v` (`members[v mod n]`) batches queued requests
//!   into PRE-PREPAREs with sequence numbers within `(h, H]`, keeping at
//!   most `batches_in_flight` batches unexecuted.
//! * `prepared(m, v, n, i)`: the PRE-PREPARE and 2f matching PREPAREs from
//!   distinct backups; `committed-local(m, v, n, i)`: prepared and 2f+1
//!   matching COMMITs. Requests execute in sequence order on the
//!   replica's [`StateMachine`] (default: the reference [`KvStore`]): an
//!   operation is decoded into the machine's command and its output
//!   encoded into the REPLY; bytes that are no command of the machine are
//!   not applied and answered with an empty result, alike on every
//!   correct replica. A checkpoint's digest covers
//!   [`StateMachine::snapshot`] and the client table; state transfer
//!   installs them through [`StateMachine::restore`].
//! * The engine tells the ViewChanger whether requests wait and when one
//!   executes (its request timer); it moves to another view only when the
//!   ViewChanger says so, and answers with its prepared certificates.
//! * It tells the CheckpointProtocol what it executed and the state of each
//!   checkpoint; it learns the watermarks and installs transferred states
//!   from it.
//! * Retransmission: every `retransmit_us` a replica resends what peers
//!   are missing (by what it heard from them), and asks the ViewChanger to
//!   resend the NEW-VIEW (primary) to peers not heard from in the view.

pub use super::replica::Replica;
use crate::authenticator::core::{sha256, Keys};
use crate::checkpoint::core::StableCheckpoint;
use crate::evidence::{Evidence, EvidenceKind};
use crate::messages::{
    decode_payload, encode_payload, AuthenticatedRequest, Batch, Commit, Digest, Maced, NewView,
    PbftMessage, PrePrepare, Prepare, PreparedCert, Reply, ReplyBatch, Signed,
};
use crate::notes::{CheckpointNote, EngineNote, Note, OwnCheckpoint, ViewChangerNote};
use crate::safety::{PbftEvent, SafetyEvent};
use crate::types::{SeqNo, View};
use crate::view_changer::core::{NewViewPlan, Quorums};
use consensus_actors::kv::{KvStore, StateMachine};
use consensus_actors::types::{ClientId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;

/// One replica's settings.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This replica.
    pub id: NodeId,
    /// Every replica, sorted.
    pub members: Vec<NodeId>,
    /// `f`: Byzantine replicas tolerated (`n >= 3f + 1`).
    pub f: usize,
    /// `K`: a checkpoint every `K` sequence numbers.
    pub checkpoint_interval: u64,
    /// `L`: the watermark window (`H = h + L`), a multiple of `K`.
    pub log_window: u64,
    /// Requests per PRE-PREPARE at most.
    pub batch_max: usize,
    /// Batches the primary keeps unexecuted at most.
    pub batches_in_flight: u64,
    /// The request timer (doubles with successive view changes).
    pub view_change_timeout_us: u64,
    /// Interval of retransmissions.
    pub retransmit_us: u64,
    /// Pending requests kept at most (more are dropped: a client resends).
    pub max_pending: usize,
    /// The cluster id in every authenticated message.
    pub cluster: u64,
    /// The cluster secret keys derive from.
    pub secret: [u8; 32],
}

impl ReplicaConfig {
    /// The view change's view of the cluster, for replicas of the
    /// reference [`KvStore`].
    pub fn quorums(&self) -> Quorums {
        self.quorums_from(&KvStore::default())
    }

    /// The view change's view of the cluster, for replicas whose state
    /// machine starts as `initial` (the genesis checkpoint's digest).
    pub fn quorums_from<SM: StateMachine>(&self, initial: &SM) -> Quorums {
        Quorums {
            members: self.members.clone(),
            f: self.f,
            window: self.log_window,
            genesis: sha256(&encode_state(initial, &BTreeMap::new())),
        }
    }
}

/// What the replica is told.
// An input is moved once into `step`; boxing the message would cost an
// allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Input {
    /// An authenticated message from `from`.
    Message {
        /// The sender (the envelope's, checked by the authenticator).
        from: NodeId,
        /// The message.
        msg: PbftMessage,
    },
    /// Time passed: `now_us` since the node's time base.
    Tick {
        /// Now.
        now_us: u64,
    },
}

/// What the replica asks its actor to do, in order.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Send `msg` to `to` (a replica, or the node of a client).
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        msg: PbftMessage,
    },
    /// Send `msg` to every other replica.
    Broadcast(PbftMessage),
    /// Report a safety event.
    Safety(SafetyEvent),
    /// Record evidence against a replica.
    Evidence(Evidence),
    /// Count one occurrence of `name` in the node's metrics, labelled
    /// with the replica (e.g. [`STATE_TRANSFER_METRIC`]).
    Count(&'static str),
}

/// The counter of state transfers a replica started (each fetch of a
/// checkpoint's state), labelled `replica`:
/// `pbft_state_transfers{replica="n4"}`. Zero in a fault-free run: a
/// replica that will reach a checkpoint by executing does not fetch it.
pub const STATE_TRANSFER_METRIC: &str = "pbft_state_transfers";

/// A client's last executed request and its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEntry {
    /// Its node.
    pub node: NodeId,
    /// Its id there.
    pub client: ClientId,
    /// The timestamp of the last request executed.
    pub timestamp: u64,
    /// The sequence number it executed at.
    pub seq: SeqNo,
    /// What executing it returned (encoded output).
    pub result: Vec<u8>,
}

/// The encoding of a replica's state (store and client table): what a
/// checkpoint's digest covers and a state transfer carries.
pub fn encode_state<SM: StateMachine>(store: &SM, clients: &BTreeMap<u64, ClientEntry>) -> Vec<u8> {
    rmp_serde::to_vec(&(store.snapshot(), clients)).unwrap_or_default()
}

/// The state machine's snapshot and the client table of an encoded state.
pub(crate) fn decode_state(bytes: &[u8]) -> Option<(Vec<u8>, BTreeMap<u64, ClientEntry>)> {
    rmp_serde::from_slice(bytes).ok()
}

type ReqKey = (u64, u64);

#[derive(Clone, Debug)]
struct PendingRequest {
    request: AuthenticatedRequest,
    assigned: bool,
}

#[derive(Clone, Debug)]
struct Slot {
    pre_prepare: Option<Signed<PrePrepare>>,
    batch: Option<Batch>,
    prepares: BTreeMap<NodeId, Signed<Prepare>>,
    commits: BTreeMap<NodeId, Digest>,
    prepared: bool,
    committed: bool,
}

impl Slot {
    fn new() -> Self {
        Self {
            pre_prepare: None,
            batch: None,
            prepares: BTreeMap::new(),
            commits: BTreeMap::new(),
            prepared: false,
            committed: false,
        }
    }
}

/// Where the replica is in its view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Running the normal case in its view.
    Normal,
    /// Waiting for the NEW-VIEW of its view.
    ViewChange {
        /// When it sent its VIEW-CHANGE.
        since_us: u64,
        /// When it held 2f+1 VIEW-CHANGEs for the view (the timer start).
        quorum_since_us: Option<u64>,
    },
}

/// One PBFT replica's PBFTEngine, executing on `SM`. See the
/// [module documentation](self).
pub struct Engine<SM: StateMachine = KvStore> {
    cfg: ReplicaConfig,
    q: Quorums,
    keys: Rc<Keys>,
    /// A copy: the ViewChanger decides views (the durable one a restarted
    /// ViewChanger resyncs from).
    view: View,
    status: Status,
    log: BTreeMap<SeqNo, Slot>,
    next_seq: SeqNo,
    queue: VecDeque<ReqKey>,
    pending: BTreeMap<ReqKey, PendingRequest>,
    store: SM,
    clients: BTreeMap<u64, ClientEntry>,
    last_exec: SeqNo,
    executed: BTreeMap<SeqNo, Digest>,
    /// The last stable checkpoint (a copy: the CheckpointProtocol decides;
    /// the durable one a restarted CheckpointProtocol resyncs from).
    stable: StableCheckpoint,
    /// A stable checkpoint above `h` that execution has not reached yet
    /// but will from the log (applied when it does; see [`crate::notes`]).
    deferred_stable: Option<StableCheckpoint>,
    /// The encoded state of this replica's checkpoints at and above `h`.
    /// The engine holds them, not the CheckpointProtocol: it owns the state
    /// machine and its durable state outlives a restart of the other
    /// components; the CheckpointProtocol shares them (`Arc`, no copy) to
    /// answer FETCH-STATE and gets them back on resync.
    own_states: BTreeMap<SeqNo, OwnCheckpoint>,
    pset: BTreeMap<SeqNo, PreparedCert>,
    new_view: Option<Signed<NewView>>,
    heard: BTreeSet<NodeId>,
    now_us: u64,
    last_retransmit_us: u64,
    retransmit_round: u64,
    last_heard_us: BTreeMap<NodeId, u64>,
    /// What the ViewChanger last heard: whether requests wait.
    reported_waiting: bool,
    /// The last executed sequence number the CheckpointProtocol heard of.
    reported_exec: SeqNo,
    /// The ViewChanger's request timer must start again (the requests were
    /// re-queued in a new view).
    timer_restart: bool,
    /// Execution progressed in this step.
    progressed: bool,
    /// The durable copy of the ViewChanger's request timer: since when
    /// requests wait (as last reported), `None` when none do.
    timer_since_us: Option<u64>,
    /// The durable copy of the ViewChanger's count of successive view
    /// changes without progress.
    view_change_attempts: u32,
    out: Vec<Effect>,
    notes: Vec<Note>,
}

/// Retransmission rounds between two to a replica that has been silent
/// for that long (a crashed or cut-off replica is not flooded).
pub const SILENT_ROUNDS: u64 = 10;

impl<SM: StateMachine> std::fmt::Debug for Engine<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.cfg.id)
            .field("view", &self.view)
            .field("status", &self.status)
            .field("last_exec", &self.last_exec)
            .field("h", &self.low())
            .finish_non_exhaustive()
    }
}

impl Engine<KvStore> {
    /// An engine of the reference key-value store in view 0 with the
    /// initial state.
    pub fn new(cfg: ReplicaConfig) -> Self {
        Self::with_state_machine(cfg, KvStore::default())
    }
}

impl<SM: StateMachine> Engine<SM> {
    /// An engine in view 0 executing on `initial` (every replica of the
    /// cluster must start from the same state: its digest is the genesis
    /// checkpoint's), with keys of its own.
    pub fn with_state_machine(cfg: ReplicaConfig, initial: SM) -> Self {
        let keys = Rc::new(Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members));
        Self::with_keys(cfg, initial, keys)
    }

    /// An engine in view 0 executing on `initial`, authenticating with
    /// `keys` (shared with the node's other components).
    pub fn with_keys(cfg: ReplicaConfig, initial: SM, keys: Rc<Keys>) -> Self {
        assert!(cfg.members.len() > 3 * cfg.f, "PBFT needs n >= 3f + 1");
        assert!(cfg.members.contains(&cfg.id), "the replica is a member");
        assert!(cfg.log_window.is_multiple_of(cfg.checkpoint_interval) && cfg.log_window > 0);
        assert!(cfg.batch_max > 0 && cfg.batches_in_flight > 0);
        assert_eq!(keys.me(), cfg.id, "the replica's own keys");
        let q = cfg.quorums_from(&initial);
        let genesis_state = encode_state(&initial, &BTreeMap::new());
        let mut own_states = BTreeMap::new();
        own_states.insert(
            SeqNo::ZERO,
            OwnCheckpoint {
                seq: SeqNo::ZERO,
                digest: q.genesis,
                state: Arc::new(genesis_state),
            },
        );
        Self {
            stable: StableCheckpoint {
                seq: SeqNo::ZERO,
                digest: q.genesis,
                proof: Vec::new(),
            },
            own_states,
            deferred_stable: None,
            q,
            keys,
            view: View::ZERO,
            status: Status::Normal,
            log: BTreeMap::new(),
            next_seq: SeqNo(1),
            queue: VecDeque::new(),
            pending: BTreeMap::new(),
            store: initial,
            clients: BTreeMap::new(),
            last_exec: SeqNo::ZERO,
            executed: BTreeMap::new(),
            pset: BTreeMap::new(),
            new_view: None,
            heard: BTreeSet::new(),
            now_us: 0,
            last_retransmit_us: 0,
            retransmit_round: 0,
            last_heard_us: BTreeMap::new(),
            reported_waiting: false,
            reported_exec: SeqNo::ZERO,
            timer_restart: false,
            progressed: false,
            timer_since_us: None,
            view_change_attempts: 0,
            out: Vec::new(),
            notes: Vec::new(),
            cfg,
        }
    }

    /// The replica.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// Its view.
    pub fn view(&self) -> View {
        self.view
    }

    /// Its status in the view.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The primary of its view.
    pub fn primary(&self) -> NodeId {
        self.q.primary(self.view)
    }

    /// Whether it is the primary of its view, running the normal case.
    pub fn is_primary(&self) -> bool {
        self.primary() == self.cfg.id && self.status == Status::Normal
    }

    /// The last sequence number executed.
    pub fn last_executed(&self) -> SeqNo {
        self.last_exec
    }

    /// The low watermark `h` (last stable checkpoint).
    pub fn low_watermark(&self) -> SeqNo {
        self.low()
    }

    fn low(&self) -> SeqNo {
        self.stable.seq
    }

    /// The high watermark `H = h + L`, where `h` counts a deferred stable
    /// checkpoint: the window moves on as the others' does, while the
    /// log between the old and the deferred checkpoint waits for
    /// execution (so a replica a little behind never drops the
    /// PRE-PREPAREs the others send above its old window).
    fn high(&self) -> SeqNo {
        let base = self.deferred_stable.as_ref().map_or(self.low(), |d| d.seq);
        SeqNo(base.get() + self.cfg.log_window)
    }

    /// Whether `seq` is within `(h, H]`.
    fn in_window(&self, seq: SeqNo) -> bool {
        seq > self.low() && seq <= self.high()
    }

    /// The last stable checkpoint it knows.
    pub fn stable_checkpoint(&self) -> &StableCheckpoint {
        &self.stable
    }

    /// Slots in the message log (bounded by `L`).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Requests known and not executed.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The replicated state machine.
    pub fn store(&self) -> &SM {
        &self.store
    }

    /// The keys it authenticates with.
    pub fn keys(&self) -> &Rc<Keys> {
        &self.keys
    }

    /// The cluster's shape as the view change needs it.
    pub fn quorums(&self) -> &Quorums {
        &self.q
    }

    /// The encoded state of its checkpoint at `seq` (at or above `h`).
    pub fn checkpoint_state(&self, seq: SeqNo) -> Option<&OwnCheckpoint> {
        self.own_states.get(&seq)
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicaConfig {
        &self.cfg
    }

    /// What a replica reports on start: leadership of view 0.
    pub fn start(&mut self) -> Vec<Effect> {
        if self.primary() == self.cfg.id {
            self.out.push(Effect::Safety(SafetyEvent::BecameLeader {
                node: self.cfg.id,
                epoch: self.view.get(),
            }));
        }
        std::mem::take(&mut self.out)
    }

    /// The one entry point for messages and ticks: feeds `input`, returns
    /// the effects (the notes wait in [`Engine::take_notes`]), then checks
    /// the engine's invariants.
    pub fn step(&mut self, input: Input) -> Vec<Effect> {
        match input {
            Input::Tick { now_us } => self.handle_tick(now_us),
            Input::Message { from, msg } => self.handle_message(from, msg),
        }
        self.after_step()
    }

    /// The entry point for the other components' notes.
    pub fn step_note(&mut self, note: EngineNote) -> Vec<Effect> {
        self.handle_note(note);
        self.after_step()
    }

    /// The notes for the ViewChanger and the CheckpointProtocol, in order.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    fn after_step(&mut self) -> Vec<Effect> {
        if self
            .deferred_stable
            .as_ref()
            .is_some_and(|d| d.seq <= self.last_exec)
        {
            if let Some(stable) = self.deferred_stable.take() {
                self.become_stable(stable);
            }
        }
        let waiting = !self.pending.is_empty();
        let restart = std::mem::take(&mut self.timer_restart);
        let progressed = std::mem::take(&mut self.progressed);
        if progressed {
            self.view_change_attempts = 0;
        }
        if waiting != self.reported_waiting || restart || progressed {
            // The ViewChanger's timer rule, kept here for its restart.
            if !waiting {
                self.timer_since_us = None;
            } else if restart || progressed || self.timer_since_us.is_none() {
                self.timer_since_us = Some(self.now_us);
            }
            self.reported_waiting = waiting;
            self.note(Note::ViewChanger(ViewChangerNote::Activity {
                waiting,
                restart,
                progressed,
            }));
        }
        if self.last_exec > self.reported_exec {
            self.reported_exec = self.last_exec;
            self.note(Note::Checkpoint(CheckpointNote::Executed {
                last_exec: self.last_exec,
                checkpoint: None,
            }));
        }
        self.check_invariants();
        std::mem::take(&mut self.out)
    }

    fn note(&mut self, note: Note) {
        self.notes.push(note);
    }

    /// Checked after every step. The maps are ordered, so the range
    /// invariants look at their first and last keys only (a step costs
    /// O(log L) here, not O(L): profiled at about 4 % of a loaded
    /// replica's instructions); the per-slot one runs in debug builds.
    fn check_invariants(&self) {
        let h = self.low();
        let hi = self.high();
        let first = |m: Option<SeqNo>| m.is_none_or(|s| s > h);
        assert!(
            first(self.log.keys().next().copied())
                && self.log.keys().next_back().is_none_or(|&s| s <= hi),
            "the log holds only (h, H]"
        );
        assert!(self.log.len() as u64 <= hi.get() - h.get());
        assert!(
            hi.get() - h.get() <= 2 * self.cfg.log_window,
            "a deferred stable checkpoint is within the window"
        );
        assert!(
            first(self.pset.keys().next().copied()),
            "certificates at or below h are discarded"
        );
        assert!(
            self.own_states.keys().next().is_none_or(|&s| s >= h),
            "checkpoint states below h are discarded"
        );
        assert!(self.stable.seq.get() == 0 || self.stable.proof.len() >= self.q.quorum());
        assert!(
            self.deferred_stable
                .as_ref()
                .is_none_or(|d| d.seq > h && d.seq > self.last_exec),
            "a deferred stable checkpoint is above h and not yet executed"
        );
        assert!(self
            .executed
            .keys()
            .next_back()
            .is_none_or(|&s| s <= self.last_exec));
        assert!(self.next_seq > h, "sequence numbers never restart");
        assert!(self.pending.len() <= self.cfg.max_pending);
        if cfg!(debug_assertions) {
            for slot in self.log.values() {
                assert!(
                    !slot.committed || slot.prepared,
                    "committed-local implies prepared"
                );
            }
        }
    }

    fn emit(&mut self, ev: impl Into<SafetyEvent>) {
        self.out.push(Effect::Safety(ev.into()));
    }

    fn accuse(&mut self, accused: NodeId, kind: EvidenceKind, proof: String) {
        self.out.push(Effect::Evidence(Evidence {
            witness: self.cfg.id,
            accused,
            kind,
            proof,
        }));
    }

    fn broadcast(&mut self, msg: PbftMessage) {
        self.out.push(Effect::Broadcast(msg));
    }

    fn send(&mut self, to: NodeId, msg: PbftMessage) {
        self.out.push(Effect::Send { to, msg });
    }

    fn others(&self) -> Vec<NodeId> {
        self.cfg
            .members
            .iter()
            .copied()
            .filter(|&m| m != self.cfg.id)
            .collect()
    }

    fn handle_message(&mut self, from: NodeId, msg: PbftMessage) {
        if from != self.cfg.id && self.cfg.members.contains(&from) {
            self.last_heard_us.insert(from, self.now_us);
        }
        match msg {
            PbftMessage::Request(r) => self.handle_request(from, r),
            PbftMessage::PrePrepare { pre_prepare, batch } => {
                self.handle_pre_prepare(from, pre_prepare, batch)
            }
            PbftMessage::Prepare {
                prepare,
                pre_prepare,
            } => self.handle_prepare(from, prepare, pre_prepare),
            PbftMessage::Commit(c) => self.handle_commit(from, c.body),
            // The ViewChanger's and the CheckpointProtocol's messages.
            PbftMessage::Checkpoint(_)
            | PbftMessage::ViewChange(_)
            | PbftMessage::NewView(_)
            | PbftMessage::FetchState(_)
            | PbftMessage::StateTransfer(_)
            | PbftMessage::Reply(_)
            | PbftMessage::Replies(_) => {}
        }
    }

    // ----- requests and the normal case -----

    fn reply_to(&mut self, entry: &ClientEntry) {
        let msg = PbftMessage::Reply(self.reply(entry));
        self.send(entry.node, msg);
    }

    /// This replica's authenticated REPLY for `entry`.
    fn reply(&self, entry: &ClientEntry) -> Maced<Reply> {
        Maced::new(self.reply_body(entry), &self.keys, &[entry.node])
    }

    /// This replica's REPLY for `entry`, not yet authenticated.
    fn reply_body(&self, entry: &ClientEntry) -> Reply {
        Reply {
            view: self.view,
            seq: entry.seq,
            timestamp: entry.timestamp,
            node: entry.node,
            client: entry.client,
            replica: self.cfg.id,
            result: entry.result.clone(),
        }
    }

    fn handle_request(&mut self, from: NodeId, sreq: AuthenticatedRequest) {
        let identity = sreq.request.identity();
        let key = (identity, sreq.request.timestamp);
        if let Some(entry) = self.clients.get(&identity) {
            if key.1 < entry.timestamp {
                return;
            }
            if key.1 == entry.timestamp {
                let entry = entry.clone();
                self.reply_to(&entry);
                return;
            }
        }
        // Clients send a request to the primary they believe in and
        // multicast it only when it waits too long (OSDI'99 §4.1): a copy
        // straight from the client at a backup is such a retransmission,
        // perhaps because the primary never got it, so the backup relays
        // it to the primary (and keeps it: its view-change timer runs).
        let relay = from == sreq.request.node && self.primary() != self.cfg.id;
        if self.pending.contains_key(&key) {
            if relay {
                let primary = self.primary();
                self.send(primary, PbftMessage::Request(sreq));
            }
            return;
        }
        if self.pending.len() >= self.cfg.max_pending {
            tracing::debug!(replica = %self.cfg.id, "pending requests full: request dropped");
            return;
        }
        if relay {
            let primary = self.primary();
            self.send(primary, PbftMessage::Request(sreq.clone()));
        }
        self.pending.insert(
            key,
            PendingRequest {
                request: sreq,
                assigned: false,
            },
        );
        if self.primary() == self.cfg.id {
            self.queue.push_back(key);
            self.maybe_send_pre_prepare();
        }
    }

    /// The primary orders queued requests while the window and the
    /// pipeline allow. Returns whether it sent a PRE-PREPARE.
    fn maybe_send_pre_prepare(&mut self) -> bool {
        let mut sent = false;
        while self.is_primary()
            && !self.queue.is_empty()
            && self.next_seq <= self.high()
            && self.next_seq.get() - self.last_exec.get().min(self.next_seq.get() - 1)
                <= self.cfg.batches_in_flight
        {
            let mut batch = Vec::new();
            while batch.len() < self.cfg.batch_max {
                let Some(key) = self.queue.pop_front() else {
                    break;
                };
                if let Some(p) = self.pending.get_mut(&key) {
                    if !p.assigned {
                        p.assigned = true;
                        batch.push(p.request.clone());
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            let batch = Batch::new(batch);
            let seq = self.next_seq;
            let pp = Signed::new(
                PrePrepare {
                    view: self.view,
                    seq,
                    digest: batch.digest(),
                    primary: self.cfg.id,
                },
                &self.keys,
            );
            let mut slot = Slot::new();
            slot.pre_prepare = Some(pp.clone());
            slot.batch = Some(batch.clone());
            self.log.insert(seq, slot);
            self.broadcast(PbftMessage::PrePrepare {
                pre_prepare: pp,
                batch,
            });
            self.next_seq = seq.next();
            sent = true;
            self.maybe_prepared(seq);
        }
        sent
    }

    fn handle_pre_prepare(&mut self, from: NodeId, spp: Signed<PrePrepare>, batch: Batch) {
        let pp = spp.body;
        if self.status != Status::Normal || pp.view != self.view || !self.in_window(pp.seq) {
            return;
        }
        if from != self.primary() || pp.primary != from || self.primary() == self.cfg.id {
            return;
        }
        if batch.digest() != pp.digest {
            // The authenticator refuses these; a core fed directly checks too.
            return;
        }
        let slot = self.log.entry(pp.seq).or_insert_with(Slot::new);
        if let Some(existing) = &slot.pre_prepare {
            if existing.body.digest != pp.digest {
                let proof = format!(
                    "two signed PRE-PREPAREs for {} {}: {:?} and {:?}",
                    pp.view, pp.seq, existing.body.digest, pp.digest
                );
                self.accuse(from, EvidenceKind::Equivocation, proof);
            }
            return;
        }
        slot.pre_prepare = Some(spp);
        slot.batch = Some(batch.clone());
        for r in batch.requests().iter() {
            let key = (r.request.identity(), r.request.timestamp);
            let done = self
                .clients
                .get(&key.0)
                .is_some_and(|e| e.timestamp >= key.1);
            if done {
                continue;
            }
            if let Some(p) = self.pending.get_mut(&key) {
                p.assigned = true;
            } else if self.pending.len() < self.cfg.max_pending {
                self.pending.insert(
                    key,
                    PendingRequest {
                        request: r.clone(),
                        assigned: true,
                    },
                );
            }
        }
        self.send_prepare(pp.seq, pp.digest);
        self.maybe_prepared(pp.seq);
    }

    fn send_prepare(&mut self, seq: SeqNo, digest: Digest) {
        let prepare = Signed::new(
            Prepare {
                view: self.view,
                seq,
                digest,
                replica: self.cfg.id,
            },
            &self.keys,
        );
        let Some(slot) = self.log.get_mut(&seq) else {
            return;
        };
        slot.prepares.insert(self.cfg.id, prepare.clone());
        let Some(pre_prepare) = slot.pre_prepare.clone() else {
            return;
        };
        self.broadcast(PbftMessage::Prepare {
            prepare,
            pre_prepare,
        });
    }

    fn handle_prepare(&mut self, from: NodeId, sp: Signed<Prepare>, spp: Signed<PrePrepare>) {
        let p = sp.body;
        if self.status != Status::Normal || p.view != self.view || !self.in_window(p.seq) {
            return;
        }
        if p.replica != from || from == self.primary() {
            return;
        }
        self.heard.insert(from);
        let primary = self.primary();
        let slot = self.log.entry(p.seq).or_insert_with(Slot::new);
        if let Some(own) = &slot.pre_prepare {
            if spp.body.primary == primary && own.body.digest != spp.body.digest {
                let proof = format!(
                    "two signed PRE-PREPAREs for {} {}: {:?} (received) and {:?} (in {from}'s PREPARE)",
                    p.view, p.seq, own.body.digest, spp.body.digest
                );
                self.accuse(primary, EvidenceKind::Equivocation, proof);
                return;
            }
        }
        let slot = self.log.entry(p.seq).or_insert_with(Slot::new);
        if let Some(existing) = slot.prepares.get(&from) {
            if existing.body.digest != p.digest {
                let proof = format!(
                    "two signed PREPAREs for {} {}: {:?} and {:?}",
                    p.view, p.seq, existing.body.digest, p.digest
                );
                self.accuse(from, EvidenceKind::ConflictingVote, proof);
            }
            return;
        }
        slot.prepares.insert(from, sp);
        self.maybe_prepared(p.seq);
    }

    /// `prepared(m, v, n, i)`: on becoming true, the replica records the
    /// certificate and multicasts its COMMIT.
    fn maybe_prepared(&mut self, seq: SeqNo) -> bool {
        let primary = self.primary();
        let Some(slot) = self.log.get_mut(&seq) else {
            return false;
        };
        if slot.prepared {
            return false;
        }
        let (Some(pp), Some(batch)) = (&slot.pre_prepare, &slot.batch) else {
            return false;
        };
        let digest = pp.body.digest;
        let prepares: Vec<Signed<Prepare>> = slot
            .prepares
            .values()
            .filter(|p| p.body.digest == digest && p.body.replica != primary)
            .cloned()
            .collect();
        // Prepared: the PRE-PREPARE and a quorum less one PREPAREs (2f
        // when n = 3f + 1; see `Quorums::quorum`).
        if prepares.len() + 1 < self.q.quorum() {
            return false;
        }
        slot.prepared = true;
        let cert = PreparedCert {
            pre_prepare: pp.clone(),
            prepares,
            batch: batch.clone(),
        };
        slot.commits.insert(self.cfg.id, digest);
        if let Some(old) = self.pset.get(&seq) {
            assert!(
                old.pre_prepare.body.view <= self.view,
                "certificates only move to later views"
            );
        }
        self.pset.insert(seq, cert);
        self.emit(PbftEvent::Prepared {
            replica: self.cfg.id,
            view: self.view,
            seq,
            digest: digest.short(),
        });
        let commit = Commit {
            view: self.view,
            seq,
            digest,
            replica: self.cfg.id,
        };
        let to = self.others();
        self.broadcast(PbftMessage::Commit(Maced::new(commit, &self.keys, &to)));
        self.maybe_committed(seq);
        true
    }

    fn handle_commit(&mut self, from: NodeId, c: Commit) {
        if self.status != Status::Normal || c.view != self.view || !self.in_window(c.seq) {
            return;
        }
        if c.replica != from {
            return;
        }
        self.heard.insert(from);
        let slot = self.log.entry(c.seq).or_insert_with(Slot::new);
        if let Some(existing) = slot.commits.get(&from) {
            if *existing != c.digest {
                let proof = format!(
                    "two COMMITs for {} {}: {:?} and {:?}",
                    c.view, c.seq, existing, c.digest
                );
                self.accuse(from, EvidenceKind::ConflictingVote, proof);
            }
            return;
        }
        slot.commits.insert(from, c.digest);
        self.maybe_committed(c.seq);
    }

    /// `committed-local(m, v, n, i)`: on becoming true, executes what is
    /// next in sequence order.
    fn maybe_committed(&mut self, seq: SeqNo) -> bool {
        let quorum = self.q.quorum();
        let Some(slot) = self.log.get_mut(&seq) else {
            return false;
        };
        if slot.committed || !slot.prepared {
            return false;
        }
        let Some(pp) = &slot.pre_prepare else {
            return false;
        };
        let digest = pp.body.digest;
        if slot.commits.values().filter(|d| **d == digest).count() < quorum {
            return false;
        }
        slot.committed = true;
        self.emit(PbftEvent::Committed {
            replica: self.cfg.id,
            view: self.view,
            seq,
            digest: digest.short(),
        });
        self.try_execute();
        true
    }

    fn try_execute(&mut self) {
        let mut progressed = false;
        loop {
            let n = self.last_exec.next();
            let Some(slot) = self.log.get(&n) else { break };
            if !slot.committed {
                break;
            }
            let (Some(batch), Some(pp)) = (slot.batch.clone(), &slot.pre_prepare) else {
                break;
            };
            let digest = pp.body.digest;
            self.execute(n, digest, &batch);
            progressed = true;
        }
        if progressed {
            self.progressed = true;
            self.maybe_send_pre_prepare();
        }
    }

    fn execute(&mut self, seq: SeqNo, digest: Digest, batch: &Batch) {
        assert_eq!(seq, self.last_exec.next(), "execution in sequence order");
        // The batch's REPLYs, by client node: one message to each.
        let mut replies: BTreeMap<NodeId, Vec<Reply>> = BTreeMap::new();
        for r in batch.requests().iter() {
            let req = &r.request;
            let identity = req.identity();
            let key = (identity, req.timestamp);
            self.pending.remove(&key);
            let fresh = self
                .clients
                .get(&identity)
                .is_none_or(|e| e.timestamp < req.timestamp);
            if !fresh {
                // Exactly once: an old or repeated request is not applied.
                continue;
            }
            let result = match decode_payload::<SM::Command>(&req.op) {
                Some(command) => encode_payload(&self.store.apply(&command)),
                // Not a command of this service: refused alike everywhere.
                None => Vec::new(),
            };
            let entry = ClientEntry {
                node: req.node,
                client: req.client,
                timestamp: req.timestamp,
                seq,
                result,
            };
            replies
                .entry(entry.node)
                .or_default()
                .push(self.reply_body(&entry));
            self.clients.insert(identity, entry);
        }
        for (node, mut rs) in replies {
            let msg = if rs.len() == 1 {
                PbftMessage::Reply(Maced::new(rs.remove(0), &self.keys, &[node]))
            } else {
                let batch = ReplyBatch {
                    replica: self.cfg.id,
                    replies: rs,
                };
                PbftMessage::Replies(Maced::new(batch, &self.keys, &[node]))
            };
            self.send(node, msg);
        }
        self.last_exec = seq;
        self.executed.insert(seq, digest);
        if seq.get().is_multiple_of(self.cfg.checkpoint_interval) {
            self.take_checkpoint(seq);
        }
    }

    // ----- checkpoints and state transfer -----

    fn take_checkpoint(&mut self, seq: SeqNo) {
        let state = encode_state(&self.store, &self.clients);
        let own = OwnCheckpoint {
            seq,
            digest: sha256(&state),
            state: Arc::new(state),
        };
        self.own_states.insert(seq, own.clone());
        self.reported_exec = seq;
        self.note(Note::Checkpoint(CheckpointNote::Executed {
            last_exec: seq,
            checkpoint: Some(own),
        }));
    }

    /// The CheckpointProtocol's notes and the ViewChanger's.
    fn handle_note(&mut self, note: EngineNote) {
        match note {
            EngineNote::StartViewChange { view } => self.handle_start_view_change(view),
            EngineNote::EnterView { new_view, plan } => self.enter_view(new_view, plan),
            EngineNote::SyncViewChanger => self.report_state(),
            EngineNote::Stable(stable) => self.handle_stable(stable),
            EngineNote::Install {
                from,
                stable,
                state,
            } => self.install_state(from, stable, state),
            EngineNote::SyncCheckpoint => {
                let own = self
                    .own_states
                    .range(self.low()..)
                    .map(|(_, c)| c.clone())
                    .collect();
                self.reported_exec = self.last_exec;
                self.note(Note::Checkpoint(CheckpointNote::Synced {
                    last_exec: self.last_exec,
                    stable: self.stable.clone(),
                    own,
                }));
            }
        }
    }

    /// A stable checkpoint from the CheckpointProtocol. Executed up to
    /// it: it becomes the low watermark. Not yet, but in the normal case
    /// and within the window: deferred until execution reaches it (no
    /// state transfer; the CheckpointProtocol fetches if execution
    /// stalls). Otherwise the CheckpointProtocol fetches its state now
    /// ([`CheckpointNote::Behind`]).
    fn handle_stable(&mut self, stable: StableCheckpoint) {
        let seq = stable.seq;
        if seq <= self.low() || self.deferred_stable.as_ref().is_some_and(|d| d.seq >= seq) {
            return;
        }
        if self.last_exec < seq && self.can_reach(seq) {
            self.deferred_stable = Some(stable);
            self.maybe_send_pre_prepare();
            return;
        }
        self.become_stable(stable);
    }

    /// Whether execution may reach `seq` by the normal case: the replica
    /// runs it and `seq` is within its window `(h, h + L]` (not counting
    /// a deferred checkpoint), so the PRE-PREPAREs, PREPAREs and COMMITs
    /// up to it are accepted. Whether they are in the log yet says little:
    /// a loaded engine's mailbox holds them while its CheckpointProtocol
    /// already counted the others' CHECKPOINTs.
    fn can_reach(&self, seq: SeqNo) -> bool {
        self.status == Status::Normal && seq.get() <= self.low().get() + self.cfg.log_window
    }

    /// A stable checkpoint (from the CheckpointProtocol, a NEW-VIEW or a
    /// state transfer): the watermarks move, the log at or below it goes.
    fn become_stable(&mut self, stable: StableCheckpoint) {
        let seq = stable.seq;
        if seq <= self.low() {
            return;
        }
        if self.deferred_stable.as_ref().is_some_and(|d| d.seq <= seq) {
            self.deferred_stable = None;
        }
        if self.last_exec < seq {
            // The log up to it goes: only its state brings this replica
            // there (a NEW-VIEW's min-s, or a checkpoint beyond reach).
            self.note(Note::Checkpoint(CheckpointNote::Behind { seq }));
        }
        if let Some(own) = self.own_states.get(&seq) {
            // Agreement on the state: our own checkpoint matches the one
            // 2f+1 replicas (f+1 correct ones) signed.
            assert_eq!(own.digest, stable.digest, "state diverged at {seq}");
        }
        self.stable = stable;
        self.log = self.log.split_off(&seq.next());
        self.pset = self.pset.split_off(&seq.next());
        self.executed = self.executed.split_off(&seq.next());
        self.own_states = self.own_states.split_off(&seq);
        if self.next_seq <= seq {
            self.next_seq = seq.next();
        }
        if self.last_exec < seq {
            tracing::debug!(replica = %self.cfg.id, %seq, "behind a stable checkpoint: waiting for its state");
        }
        self.maybe_send_pre_prepare();
    }

    /// A state the CheckpointProtocol checked against its certificate.
    fn install_state(&mut self, from: NodeId, stable: StableCheckpoint, state: Arc<Vec<u8>>) {
        let seq = stable.seq;
        if seq <= self.last_exec || seq < self.low() {
            // Caught up meanwhile, or overtaken by a later stable
            // checkpoint (the log between them is gone: only that one's
            // state helps): tell the CheckpointProtocol what it has.
            self.reported_exec = self.last_exec;
            self.note(Note::Checkpoint(CheckpointNote::Executed {
                last_exec: self.last_exec,
                checkpoint: None,
            }));
            return;
        }
        debug_assert_eq!(
            sha256(&state),
            stable.digest,
            "checked by the CheckpointProtocol"
        );
        let Some((snapshot, clients)) = decode_state(&state) else {
            self.accuse(
                from,
                EvidenceKind::BadStateTransfer,
                format!("undecodable state for {seq}"),
            );
            return;
        };
        let before = self.store.snapshot();
        if let Err(e) = self.store.restore(&snapshot) {
            // 2f+1 replicas certified this digest, so a correct one wrote
            // these bytes: a snapshot the machine cannot read back is a bug
            // of the state machine, not of the sender. Keep the old state
            // (and keep fetching) rather than run on a half-restored one.
            tracing::error!(replica = %self.cfg.id, %seq, error = %e, "a certified snapshot does not restore");
            if let Err(e) = self.store.restore(&before) {
                panic!("the replica's own snapshot does not restore: {e}");
            }
            return;
        }
        tracing::debug!(replica = %self.cfg.id, %seq, "state transfer installed");
        self.clients = clients;
        self.last_exec = seq;
        self.executed.clear();
        let clients = &self.clients;
        self.pending
            .retain(|k, _| clients.get(&k.0).is_none_or(|e| e.timestamp < k.1));
        let digest = stable.digest;
        self.become_stable(stable);
        let own = OwnCheckpoint { seq, digest, state };
        self.own_states.insert(seq, own.clone());
        self.reported_exec = seq;
        self.note(Note::Checkpoint(CheckpointNote::Installed(own)));
        if self.next_seq <= self.last_exec {
            self.next_seq = self.last_exec.next();
        }
        self.try_execute();
    }

    // ----- view changes (decided by the ViewChanger) -----

    /// Stops the normal case and moves to `view`; answers with the
    /// certificates a VIEW-CHANGE carries (final: none forms in a lower
    /// view from now on).
    fn handle_start_view_change(&mut self, view: View) {
        if view > self.view {
            tracing::debug!(replica = %self.cfg.id, from = %self.view, to = %view, "view change");
            self.view_change_attempts = self.view_change_attempts.saturating_add(1);
            self.view = view;
            self.status = Status::ViewChange {
                since_us: self.now_us,
                quorum_since_us: None,
            };
            self.new_view = None;
            self.heard.clear();
        }
        self.report_state();
    }

    fn report_state(&mut self) {
        let normal = self.status == Status::Normal;
        // A deferred stable checkpoint is stable (its proof holds): the
        // VIEW-CHANGE carries it, and the certificates above it (some may
        // be above the old window).
        let stable = self
            .deferred_stable
            .clone()
            .unwrap_or_else(|| self.stable.clone());
        let h = stable.seq;
        let prepared = if normal {
            Vec::new()
        } else {
            self.pset
                .range(h.next()..)
                .map(|(_, c)| c.clone())
                .collect()
        };
        self.note(Note::ViewChanger(ViewChangerNote::EngineState {
            view: self.view,
            normal,
            new_view: self.new_view.clone(),
            stable,
            prepared,
            waiting_since_us: if self.reported_waiting {
                self.timer_since_us
            } else {
                None
            },
            attempts: self.view_change_attempts,
        }));
    }

    /// Enters the view of a NEW-VIEW the ViewChanger sent or checked, with
    /// its re-issued PRE-PREPAREs.
    fn enter_view(&mut self, nv: Signed<NewView>, plan: NewViewPlan) {
        let view = nv.body.view;
        if view < self.view || (view == self.view && self.status == Status::Normal) {
            return;
        }
        self.view = view;
        let primary = self.q.primary(self.view) == self.cfg.id;
        self.status = Status::Normal;
        self.heard.clear();
        self.log.clear();
        if plan.min_s > self.low() {
            let stable = StableCheckpoint {
                seq: plan.min_s,
                digest: plan.min_s_digest,
                proof: plan.min_s_proof.clone(),
            };
            self.note(Note::Checkpoint(CheckpointNote::Adopt(stable.clone())));
            self.become_stable(stable);
        }
        for p in self.pending.values_mut() {
            p.assigned = false;
        }
        let h = self.low();
        for pp in &nv.body.pre_prepares {
            let seq = pp.body.seq;
            if seq <= h || !self.in_window(seq) {
                continue;
            }
            let Some((digest, batch)) = plan.reissue.get(&seq) else {
                continue;
            };
            if let Some(done) = self.executed.get(&seq) {
                // A view change never changes what was executed.
                assert_eq!(done, digest, "re-issued {seq} differs from what executed");
            }
            for r in batch.requests().iter() {
                if let Some(p) = self
                    .pending
                    .get_mut(&(r.request.identity(), r.request.timestamp))
                {
                    p.assigned = true;
                }
            }
            let mut slot = Slot::new();
            slot.pre_prepare = Some(pp.clone());
            slot.batch = Some(batch.clone());
            self.log.insert(seq, slot);
            if !primary {
                self.send_prepare(seq, *digest);
            }
        }
        let floor = plan.max_s.max(h).max(self.last_exec);
        if self.next_seq <= floor {
            self.next_seq = floor.next();
        }
        self.new_view = Some(nv);
        if primary {
            self.emit(SafetyEvent::BecameLeader {
                node: self.cfg.id,
                epoch: self.view.get(),
            });
            self.queue = self
                .pending
                .iter()
                .filter(|(_, p)| !p.assigned)
                .map(|(k, _)| *k)
                .collect();
        } else {
            self.queue.clear();
        }
        self.timer_restart = true;
        let seqs: Vec<SeqNo> = self.log.keys().copied().collect();
        for seq in seqs {
            self.maybe_prepared(seq);
        }
        self.maybe_send_pre_prepare();
    }

    // ----- time -----

    fn handle_tick(&mut self, now_us: u64) {
        self.now_us = self.now_us.max(now_us);
        if self.now_us.saturating_sub(self.last_retransmit_us) >= self.cfg.retransmit_us {
            self.last_retransmit_us = self.now_us;
            self.retransmit();
        }
    }

    fn retransmit(&mut self) {
        let me = self.cfg.id;
        self.retransmit_round += 1;
        let silent_after = self.cfg.retransmit_us.saturating_mul(SILENT_ROUNDS);
        let everyone = self.retransmit_round.is_multiple_of(SILENT_ROUNDS);
        let others: Vec<NodeId> = self
            .others()
            .into_iter()
            .filter(|r| {
                everyone
                    || self
                        .last_heard_us
                        .get(r)
                        .is_some_and(|&t| self.now_us.saturating_sub(t) <= silent_after)
            })
            .collect();
        let mut out = Vec::new();
        match self.status {
            Status::Normal => {
                let primary = self.primary() == me;
                for slot in self.log.values() {
                    let missing: Vec<NodeId> = others
                        .iter()
                        .copied()
                        .filter(|r| !slot.commits.contains_key(r))
                        .collect();
                    if missing.is_empty() {
                        continue;
                    }
                    if primary {
                        if let (Some(pp), Some(batch)) = (&slot.pre_prepare, &slot.batch) {
                            for &r in &missing {
                                if !slot.prepares.contains_key(&r) {
                                    out.push((
                                        r,
                                        PbftMessage::PrePrepare {
                                            pre_prepare: pp.clone(),
                                            batch: batch.clone(),
                                        },
                                    ));
                                }
                            }
                        }
                    } else if let (Some(p), Some(pp)) = (slot.prepares.get(&me), &slot.pre_prepare)
                    {
                        for &r in &missing {
                            out.push((
                                r,
                                PbftMessage::Prepare {
                                    prepare: p.clone(),
                                    pre_prepare: pp.clone(),
                                },
                            ));
                        }
                    }
                    if slot.prepared {
                        if let Some(d) = slot.commits.get(&me) {
                            let (view, seq) = slot
                                .pre_prepare
                                .as_ref()
                                .map_or((self.view, SeqNo::ZERO), |p| (p.body.view, p.body.seq));
                            let commit = Commit {
                                view,
                                seq,
                                digest: *d,
                                replica: me,
                            };
                            for &r in &missing {
                                out.push((
                                    r,
                                    PbftMessage::Commit(Maced::new(commit, &self.keys, &[r])),
                                ));
                            }
                        }
                    }
                }
                if primary && self.new_view.is_some() {
                    let to: Vec<NodeId> = others
                        .iter()
                        .copied()
                        .filter(|r| !self.heard.contains(r))
                        .collect();
                    if !to.is_empty() {
                        self.note(Note::ViewChanger(ViewChangerNote::ResendNewView { to }));
                    }
                }
            }
            // Between views the ViewChanger retransmits the VIEW-CHANGE.
            Status::ViewChange { .. } => {}
        }
        for (to, msg) in out {
            self.send(to, msg);
        }
    }
}
