//! The PBFTEngine core: one replica's normal case (Castro and Liskov,
//! OSDI'99 §4.2), driving the CheckpointProtocol core (§4.3) and the
//! ViewChanger core (§4.4). Pure: no actix, no clock, no I/O. Inputs are
//! authenticated messages (the MessageAuthenticator checked every MAC and
//! signature) and ticks; outputs are [`Effect`]s.
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
//! * The view-change timer runs while requests wait (started by the oldest)
//!   and restarts whenever one executes; when it expires the replica moves
//!   to the next view. A replica that
//!   sees f+1 VIEW-CHANGEs for higher views joins the smallest.
//! * Retransmission: every `retransmit_us` a replica resends what peers
//!   are missing (by what it heard from them), its checkpoint, its
//!   VIEW-CHANGE, the NEW-VIEW (primary), and its state-transfer request.

use crate::authenticator::core::{sha256, Keys};
use crate::checkpoint::core::{proof_is_valid, CheckpointProtocol, StableCheckpoint};
use crate::evidence::{Evidence, EvidenceKind};
use crate::messages::{
    decode_payload, encode_payload, Batch, Checkpoint, Commit, Digest, FetchState, Maced, NewView,
    PbftMessage, PrePrepare, Prepare, PreparedCert, Reply, Signed, SignedRequest, StateTransfer,
    ViewChange,
};
use crate::safety::{PbftEvent, SafetyEvent};
use crate::types::{SeqNo, View};
use crate::view_changer::core::{
    plan_new_view, validate_view_change, view_change_timeout_us, NewViewPlan, Quorums,
};
use consensus_actors::kv::{KvStore, StateMachine};
use consensus_actors::types::{ClientId, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

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
}

/// A client's last executed request and its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEntry {
    /// Its node.
    pub node: NodeId,
    /// Its id there.
    pub client: ClientId,
    /// The timestamp of the last request executed.
    pub timestamp: u64,
    /// What executing it returned (encoded output).
    pub result: Vec<u8>,
}

/// The encoding of a replica's state (store and client table): what a
/// checkpoint's digest covers and a state transfer carries.
pub fn encode_state<SM: StateMachine>(store: &SM, clients: &BTreeMap<u64, ClientEntry>) -> Vec<u8> {
    rmp_serde::to_vec(&(store.snapshot(), clients)).unwrap_or_default()
}

/// The state machine's snapshot and the client table of an encoded state.
fn decode_state(bytes: &[u8]) -> Option<(Vec<u8>, BTreeMap<u64, ClientEntry>)> {
    rmp_serde::from_slice(bytes).ok()
}

type ReqKey = (u64, u64);

#[derive(Clone, Debug)]
struct PendingRequest {
    request: SignedRequest,
    since_us: u64,
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

#[derive(Clone, Debug)]
struct Fetch {
    stable: StableCheckpoint,
    next: usize,
    last_us: Option<u64>,
}

/// One PBFT replica's protocol state, executing on `SM`. See the
/// [module documentation](self).
pub struct Replica<SM: StateMachine = KvStore> {
    cfg: ReplicaConfig,
    q: Quorums,
    keys: Keys,
    view: View,
    status: Status,
    attempts: u32,
    log: BTreeMap<SeqNo, Slot>,
    next_seq: SeqNo,
    queue: VecDeque<ReqKey>,
    pending: BTreeMap<ReqKey, PendingRequest>,
    store: SM,
    clients: BTreeMap<u64, ClientEntry>,
    last_exec: SeqNo,
    executed: BTreeMap<SeqNo, Digest>,
    checkpoints: CheckpointProtocol,
    own_vote: Option<Signed<Checkpoint>>,
    pset: BTreeMap<SeqNo, PreparedCert>,
    vcs: BTreeMap<View, BTreeMap<NodeId, Signed<ViewChange>>>,
    new_view: Option<Signed<NewView>>,
    heard: BTreeSet<NodeId>,
    fetch: Option<Fetch>,
    now_us: u64,
    last_retransmit_us: u64,
    retransmit_round: u64,
    last_heard_us: BTreeMap<NodeId, u64>,
    /// The view-change timer: running while requests wait, restarted when
    /// one executes (OSDI'99 §4.4).
    timer_since_us: Option<u64>,
    out: Vec<Effect>,
}

/// Retransmission rounds between two to a replica that has been silent
/// for that long (a crashed or cut-off replica is not flooded).
pub const SILENT_ROUNDS: u64 = 10;

impl<SM: StateMachine> std::fmt::Debug for Replica<SM> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.cfg.id)
            .field("view", &self.view)
            .field("status", &self.status)
            .field("last_exec", &self.last_exec)
            .field("h", &self.checkpoints.low())
            .finish_non_exhaustive()
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
    /// A replica in view 0 executing on `initial` (every replica of the
    /// cluster must start from the same state: its digest is the genesis
    /// checkpoint's).
    pub fn with_state_machine(cfg: ReplicaConfig, initial: SM) -> Self {
        assert!(cfg.members.len() > 3 * cfg.f, "PBFT needs n >= 3f + 1");
        assert!(cfg.members.contains(&cfg.id), "the replica is a member");
        assert!(cfg.log_window.is_multiple_of(cfg.checkpoint_interval) && cfg.log_window > 0);
        assert!(cfg.batch_max > 0 && cfg.batches_in_flight > 0);
        let q = cfg.quorums_from(&initial);
        let keys = Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members);
        let genesis_state = encode_state(&initial, &BTreeMap::new());
        let checkpoints = CheckpointProtocol::new(
            cfg.checkpoint_interval,
            cfg.log_window,
            q.quorum(),
            q.genesis,
            genesis_state,
        );
        Self {
            q,
            keys,
            view: View::ZERO,
            status: Status::Normal,
            attempts: 0,
            log: BTreeMap::new(),
            next_seq: SeqNo(1),
            queue: VecDeque::new(),
            pending: BTreeMap::new(),
            store: initial,
            clients: BTreeMap::new(),
            last_exec: SeqNo::ZERO,
            executed: BTreeMap::new(),
            checkpoints,
            own_vote: None,
            pset: BTreeMap::new(),
            vcs: BTreeMap::new(),
            new_view: None,
            heard: BTreeSet::new(),
            fetch: None,
            now_us: 0,
            last_retransmit_us: 0,
            retransmit_round: 0,
            last_heard_us: BTreeMap::new(),
            timer_since_us: None,
            out: Vec::new(),
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
        self.checkpoints.low()
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
    pub fn keys(&self) -> &Keys {
        &self.keys
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

    /// The one entry point: feeds `input`, returns the effects, then
    /// checks the replica's invariants.
    pub fn step(&mut self, input: Input) -> Vec<Effect> {
        match input {
            Input::Tick { now_us } => self.handle_tick(now_us),
            Input::Message { from, msg } => self.handle_message(from, msg),
        }
        self.check_invariants();
        std::mem::take(&mut self.out)
    }

    fn check_invariants(&self) {
        let h = self.checkpoints.low();
        let hi = self.checkpoints.high();
        assert!(
            self.log.keys().all(|&s| s > h && s <= hi),
            "the log holds only (h, H]"
        );
        assert!(self.log.len() as u64 <= self.cfg.log_window);
        assert!(
            self.pset.keys().all(|&s| s > h),
            "certificates at or below h are discarded"
        );
        assert!(
            self.last_exec >= h || self.fetch.is_some(),
            "a replica below its stable checkpoint is fetching the state"
        );
        assert!(self.executed.keys().all(|&s| s <= self.last_exec));
        assert!(self.next_seq > h, "sequence numbers never restart");
        assert!(self.pending.len() <= self.cfg.max_pending);
        for slot in self.log.values() {
            assert!(
                !slot.committed || slot.prepared,
                "committed-local implies prepared"
            );
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
            PbftMessage::Checkpoint(c) => self.handle_checkpoint(c),
            PbftMessage::ViewChange(vc) => self.handle_view_change(from, vc),
            PbftMessage::NewView(nv) => self.handle_new_view(from, nv),
            PbftMessage::FetchState(f) => self.handle_fetch_state(from, f.body),
            PbftMessage::StateTransfer(st) => self.handle_state_transfer(from, st),
            PbftMessage::Reply(_) => {}
        }
    }

    // ----- requests and the normal case -----

    fn reply_to(&mut self, entry: &ClientEntry) {
        let reply = Reply {
            view: self.view,
            timestamp: entry.timestamp,
            node: entry.node,
            client: entry.client,
            replica: self.cfg.id,
            result: entry.result.clone(),
        };
        let msg = PbftMessage::Reply(Maced::new(reply, &self.keys, &[entry.node]));
        self.send(entry.node, msg);
    }

    fn handle_request(&mut self, from: NodeId, sreq: SignedRequest) {
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
        let from_client = from == sreq.request.node;
        if self.pending.contains_key(&key) {
            if from_client && self.primary() != self.cfg.id {
                let primary = self.primary();
                self.send(primary, PbftMessage::Request(sreq));
            }
            return;
        }
        if self.pending.len() >= self.cfg.max_pending {
            tracing::debug!(replica = %self.cfg.id, "pending requests full: request dropped");
            return;
        }
        self.pending.insert(
            key,
            PendingRequest {
                request: sreq.clone(),
                since_us: self.now_us,
                assigned: false,
            },
        );
        if self.primary() == self.cfg.id {
            self.queue.push_back(key);
            self.maybe_send_pre_prepare();
        } else if from_client {
            let primary = self.primary();
            self.send(primary, PbftMessage::Request(sreq));
        }
    }

    /// The primary orders queued requests while the window and the
    /// pipeline allow. Returns whether it sent a PRE-PREPARE.
    fn maybe_send_pre_prepare(&mut self) -> bool {
        let mut sent = false;
        while self.is_primary()
            && !self.queue.is_empty()
            && self.next_seq <= self.checkpoints.high()
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
            let batch = Batch(batch);
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
        if self.status != Status::Normal
            || pp.view != self.view
            || !self.checkpoints.in_window(pp.seq)
        {
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
        for r in &batch.0 {
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
                        since_us: self.now_us,
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
        if self.status != Status::Normal
            || p.view != self.view
            || !self.checkpoints.in_window(p.seq)
        {
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
        if prepares.len() < 2 * self.cfg.f {
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
        if self.status != Status::Normal
            || c.view != self.view
            || !self.checkpoints.in_window(c.seq)
        {
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
            self.attempts = 0;
            self.timer_since_us = (!self.pending.is_empty()).then_some(self.now_us);
            self.maybe_send_pre_prepare();
        }
    }

    fn execute(&mut self, seq: SeqNo, digest: Digest, batch: &Batch) {
        assert_eq!(seq, self.last_exec.next(), "execution in sequence order");
        for r in &batch.0 {
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
                result,
            };
            self.reply_to(&entry);
            self.clients.insert(identity, entry);
        }
        self.last_exec = seq;
        self.executed.insert(seq, digest);
        if self.checkpoints.is_checkpoint(seq) {
            self.take_checkpoint(seq);
        }
    }

    // ----- checkpoints and state transfer -----

    fn take_checkpoint(&mut self, seq: SeqNo) {
        let state = encode_state(&self.store, &self.clients);
        let digest = sha256(&state);
        self.checkpoints.take_own(seq, digest, state);
        let vote = Signed::new(
            Checkpoint {
                seq,
                state: digest,
                replica: self.cfg.id,
            },
            &self.keys,
        );
        self.own_vote = Some(vote.clone());
        self.broadcast(PbftMessage::Checkpoint(vote.clone()));
        self.handle_checkpoint(vote);
    }

    fn handle_checkpoint(&mut self, vote: Signed<Checkpoint>) {
        if let Some(stable) = self.checkpoints.record(vote) {
            self.become_stable(stable);
        }
    }

    fn become_stable(&mut self, stable: StableCheckpoint) {
        let seq = stable.seq;
        if seq <= self.checkpoints.low() {
            return;
        }
        let behind = self.last_exec < seq;
        self.checkpoints.advance(stable.clone());
        self.log = self.log.split_off(&seq.next());
        self.pset = self.pset.split_off(&seq.next());
        self.executed = self.executed.split_off(&seq.next());
        if self.next_seq <= seq {
            self.next_seq = seq.next();
        }
        if behind {
            tracing::debug!(replica = %self.cfg.id, %seq, "behind a stable checkpoint: fetching the state");
            self.fetch = Some(Fetch {
                stable,
                next: 0,
                last_us: None,
            });
            self.send_fetch();
        }
        self.maybe_send_pre_prepare();
    }

    fn send_fetch(&mut self) {
        let Some(fetch) = &mut self.fetch else { return };
        let candidates: Vec<NodeId> = fetch
            .stable
            .proof
            .iter()
            .map(|c| c.body.replica)
            .filter(|&r| r != self.cfg.id)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let to = candidates[fetch.next % candidates.len()];
        fetch.next += 1;
        fetch.last_us = Some(self.now_us);
        let body = FetchState {
            seq: fetch.stable.seq,
            replica: self.cfg.id,
        };
        let msg = PbftMessage::FetchState(Maced::new(body, &self.keys, &[to]));
        self.send(to, msg);
    }

    fn handle_fetch_state(&mut self, from: NodeId, f: FetchState) {
        if f.replica != from {
            return;
        }
        let stable = self.checkpoints.stable().clone();
        if stable.seq < f.seq || stable.seq == SeqNo::ZERO {
            return;
        }
        let Some((digest, state)) = self.checkpoints.own_state(stable.seq) else {
            return;
        };
        assert_eq!(digest, stable.digest);
        self.send(
            from,
            PbftMessage::StateTransfer(StateTransfer {
                seq: stable.seq,
                state: state.as_ref().clone(),
                proof: stable.proof,
            }),
        );
    }

    fn handle_state_transfer(&mut self, from: NodeId, st: StateTransfer) {
        if st.seq <= self.last_exec {
            return;
        }
        let digest = sha256(&st.state);
        if !proof_is_valid(
            st.seq,
            digest,
            &st.proof,
            &self.cfg.members,
            self.q.quorum(),
        ) {
            self.accuse(
                from,
                EvidenceKind::BadStateTransfer,
                format!("state for {} does not match a certified checkpoint", st.seq),
            );
            return;
        }
        let Some((snapshot, clients)) = decode_state(&st.state) else {
            self.accuse(
                from,
                EvidenceKind::BadStateTransfer,
                format!("undecodable state for {}", st.seq),
            );
            return;
        };
        let before = self.store.snapshot();
        if let Err(e) = self.store.restore(&snapshot) {
            // 2f+1 replicas certified this digest, so a correct one wrote
            // these bytes: a snapshot the machine cannot read back is a bug
            // of the state machine, not of the sender. Keep the old state
            // (and keep fetching) rather than run on a half-restored one.
            tracing::error!(replica = %self.cfg.id, seq = %st.seq, error = %e, "a certified snapshot does not restore");
            if let Err(e) = self.store.restore(&before) {
                panic!("the replica's own snapshot does not restore: {e}");
            }
            return;
        }
        tracing::debug!(replica = %self.cfg.id, seq = %st.seq, "state transfer installed");
        self.clients = clients;
        self.last_exec = st.seq;
        self.executed.clear();
        let clients = &self.clients;
        self.pending
            .retain(|k, _| clients.get(&k.0).is_none_or(|e| e.timestamp < k.1));
        if st.seq > self.checkpoints.low() {
            self.become_stable(StableCheckpoint {
                seq: st.seq,
                digest,
                proof: st.proof,
            });
        }
        self.checkpoints.take_own(st.seq, digest, st.state);
        if self.fetch.as_ref().is_some_and(|f| f.stable.seq <= st.seq) {
            self.fetch = None;
        }
        if self.next_seq <= self.last_exec {
            self.next_seq = self.last_exec.next();
        }
        self.try_execute();
    }

    // ----- view changes -----

    fn timeout_us(&self) -> u64 {
        view_change_timeout_us(self.cfg.view_change_timeout_us, self.attempts)
    }

    fn start_view_change(&mut self, new_view: View) {
        assert!(new_view > self.view, "views only move forward");
        tracing::debug!(replica = %self.cfg.id, from = %self.view, to = %new_view, "view change");
        self.view = new_view;
        self.status = Status::ViewChange {
            since_us: self.now_us,
            quorum_since_us: None,
        };
        self.attempts = self.attempts.saturating_add(1);
        self.new_view = None;
        self.heard.clear();
        let stable = self.checkpoints.stable().clone();
        let h = stable.seq;
        let vc = Signed::new(
            ViewChange {
                new_view,
                stable_seq: h,
                stable_digest: stable.digest,
                checkpoint_proof: stable.proof,
                prepared: self
                    .pset
                    .range(h.next()..)
                    .map(|(_, c)| c.clone())
                    .collect(),
                replica: self.cfg.id,
            },
            &self.keys,
        );
        debug_assert!(
            validate_view_change(&vc.body, &self.q).is_ok(),
            "own VIEW-CHANGE valid"
        );
        self.broadcast(PbftMessage::ViewChange(vc.clone()));
        self.store_view_change(vc);
        self.vcs = self.vcs.split_off(&new_view);
        self.after_view_change_recorded();
    }

    fn store_view_change(&mut self, vc: Signed<ViewChange>) {
        let replica = vc.body.replica;
        // One VIEW-CHANGE per replica: its latest.
        for set in self.vcs.values_mut() {
            set.remove(&replica);
        }
        self.vcs.retain(|_, set| !set.is_empty());
        self.vcs
            .entry(vc.body.new_view)
            .or_default()
            .insert(replica, vc);
    }

    fn after_view_change_recorded(&mut self) {
        if let Status::ViewChange {
            since_us,
            quorum_since_us: None,
        } = self.status
        {
            if self.vcs.get(&self.view).map_or(0, BTreeMap::len) >= self.q.quorum() {
                self.status = Status::ViewChange {
                    since_us,
                    quorum_since_us: Some(self.now_us),
                };
            }
        }
        self.maybe_send_new_view();
    }

    fn handle_view_change(&mut self, from: NodeId, svc: Signed<ViewChange>) {
        let vc = &svc.body;
        if vc.replica != from {
            return;
        }
        let stale =
            vc.new_view < self.view || (vc.new_view == self.view && self.status == Status::Normal);
        if stale {
            return;
        }
        if let Err(e) = validate_view_change(vc, &self.q) {
            self.accuse(from, EvidenceKind::InvalidViewChange, e.to_string());
            return;
        }
        if self
            .vcs
            .get(&vc.new_view)
            .and_then(|s| s.get(&from))
            .is_some_and(|old| old == &svc)
        {
            return;
        }
        self.store_view_change(svc);
        // Join f+1 replicas that moved past this view (§4.5.2).
        let mut ahead: Vec<View> = self
            .vcs
            .iter()
            .filter(|(v, _)| **v > self.view)
            .flat_map(|(v, set)| set.keys().filter(|r| **r != self.cfg.id).map(move |_| *v))
            .collect();
        if ahead.len() > self.cfg.f {
            ahead.sort_unstable();
            let target = ahead[ahead.len() - 1 - self.cfg.f];
            if target > self.view {
                self.start_view_change(target);
                return;
            }
        }
        self.after_view_change_recorded();
    }

    fn maybe_send_new_view(&mut self) {
        if !matches!(self.status, Status::ViewChange { .. })
            || self.q.primary(self.view) != self.cfg.id
            || self.new_view.is_some()
        {
            return;
        }
        let Some(set) = self.vcs.get(&self.view) else {
            return;
        };
        if set.len() < self.q.quorum() || !set.contains_key(&self.cfg.id) {
            return;
        }
        let mut chosen: Vec<Signed<ViewChange>> = vec![set[&self.cfg.id].clone()];
        chosen.extend(
            set.iter()
                .filter(|(r, _)| **r != self.cfg.id)
                .map(|(_, vc)| vc.clone())
                .take(self.q.quorum() - 1),
        );
        let plan = plan_new_view(chosen.iter().map(|vc| &vc.body));
        let pre_prepares = plan
            .reissue
            .iter()
            .map(|(&seq, (digest, _))| {
                Signed::new(
                    PrePrepare {
                        view: self.view,
                        seq,
                        digest: *digest,
                        primary: self.cfg.id,
                    },
                    &self.keys,
                )
            })
            .collect();
        let nv = Signed::new(
            NewView {
                view: self.view,
                view_changes: chosen,
                pre_prepares,
                primary: self.cfg.id,
            },
            &self.keys,
        );
        self.broadcast(PbftMessage::NewView(nv.clone()));
        self.install_new_view(nv, plan);
    }

    /// Checks a NEW-VIEW against its VIEW-CHANGEs; returns `O` if it holds.
    fn check_new_view(&self, nv: &NewView) -> Result<NewViewPlan, String> {
        let mut senders: Vec<NodeId> = Vec::new();
        for vc in &nv.view_changes {
            if vc.body.new_view != nv.view {
                return Err(format!(
                    "a VIEW-CHANGE for {} in the NEW-VIEW of {}",
                    vc.body.new_view, nv.view
                ));
            }
            if !self.cfg.members.contains(&vc.body.replica) || senders.contains(&vc.body.replica) {
                return Err(format!(
                    "VIEW-CHANGE of {} repeated or not a member",
                    vc.body.replica
                ));
            }
            senders.push(vc.body.replica);
            validate_view_change(&vc.body, &self.q)
                .map_err(|e| format!("{}: {e}", vc.body.replica))?;
        }
        if senders.len() < self.q.quorum() {
            return Err(format!(
                "{} VIEW-CHANGEs, 2f+1 = {} needed",
                senders.len(),
                self.q.quorum()
            ));
        }
        let plan = plan_new_view(nv.view_changes.iter().map(|vc| &vc.body));
        let given: Vec<(SeqNo, Digest)> = nv
            .pre_prepares
            .iter()
            .map(|pp| (pp.body.seq, pp.body.digest))
            .collect();
        let expected: Vec<(SeqNo, Digest)> =
            plan.reissue.iter().map(|(s, (d, _))| (*s, *d)).collect();
        if given != expected {
            return Err(format!(
                "re-issued PRE-PREPAREs {:?} where the VIEW-CHANGEs give {:?}",
                given, expected
            ));
        }
        if nv
            .pre_prepares
            .iter()
            .any(|pp| pp.body.view != nv.view || pp.body.primary != nv.primary)
        {
            return Err("a re-issued PRE-PREPARE of another view or primary".into());
        }
        Ok(plan)
    }

    fn handle_new_view(&mut self, from: NodeId, snv: Signed<NewView>) {
        let nv = &snv.body;
        if nv.view < self.view || (nv.view == self.view && self.status == Status::Normal) {
            return;
        }
        if nv.primary != from || self.q.primary(nv.view) != from {
            return;
        }
        match self.check_new_view(nv) {
            Ok(plan) => {
                if nv.view > self.view {
                    self.view = nv.view;
                }
                self.install_new_view(snv, plan);
            }
            Err(why) => self.accuse(
                from,
                EvidenceKind::LyingNewView,
                format!("NEW-VIEW of {}: {why}", nv.view),
            ),
        }
    }

    fn install_new_view(&mut self, nv: Signed<NewView>, plan: NewViewPlan) {
        assert_eq!(nv.body.view, self.view);
        let primary = self.q.primary(self.view) == self.cfg.id;
        self.status = Status::Normal;
        self.timer_since_us = None;
        self.heard.clear();
        self.log.clear();
        self.vcs = self.vcs.split_off(&self.view.next());
        if plan.min_s > self.checkpoints.low() {
            self.become_stable(StableCheckpoint {
                seq: plan.min_s,
                digest: plan.min_s_digest,
                proof: plan.min_s_proof.clone(),
            });
        }
        for p in self.pending.values_mut() {
            p.assigned = false;
            p.since_us = self.now_us;
        }
        let h = self.checkpoints.low();
        for pp in &nv.body.pre_prepares {
            let seq = pp.body.seq;
            if seq <= h || !self.checkpoints.in_window(seq) {
                continue;
            }
            let Some((digest, batch)) = plan.reissue.get(&seq) else {
                continue;
            };
            if let Some(done) = self.executed.get(&seq) {
                // A view change never changes what was executed.
                assert_eq!(done, digest, "re-issued {seq} differs from what executed");
            }
            for r in &batch.0 {
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
        let seqs: Vec<SeqNo> = self.log.keys().copied().collect();
        for seq in seqs {
            self.maybe_prepared(seq);
        }
        self.maybe_send_pre_prepare();
    }

    // ----- time -----

    fn handle_tick(&mut self, now_us: u64) {
        self.now_us = self.now_us.max(now_us);
        let timeout = self.timeout_us();
        match self.status {
            Status::Normal => {
                if self.pending.is_empty() {
                    self.timer_since_us = None;
                } else {
                    let oldest = self
                        .pending
                        .values()
                        .map(|p| p.since_us)
                        .min()
                        .unwrap_or(self.now_us);
                    let since = *self.timer_since_us.get_or_insert(oldest);
                    if self.now_us.saturating_sub(since) > timeout {
                        self.start_view_change(self.view.next());
                    }
                }
            }
            Status::ViewChange {
                quorum_since_us: Some(t),
                ..
            } if self.now_us.saturating_sub(t) > timeout => {
                self.start_view_change(self.view.next());
            }
            Status::ViewChange { .. } => {}
        }
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
                if primary {
                    if let Some(nv) = &self.new_view {
                        for &r in &others {
                            if !self.heard.contains(&r) {
                                out.push((r, PbftMessage::NewView(nv.clone())));
                            }
                        }
                    }
                }
            }
            Status::ViewChange { .. } => {
                if let Some(vc) = self.vcs.get(&self.view).and_then(|s| s.get(&me)) {
                    for &r in &others {
                        out.push((r, PbftMessage::ViewChange(vc.clone())));
                    }
                }
            }
        }
        if let Some(vote) = &self.own_vote {
            let voters = self.checkpoints.voters(vote.body.seq);
            for &r in &others {
                if !voters.contains(&r) {
                    out.push((r, PbftMessage::Checkpoint(vote.clone())));
                }
            }
        }
        for (to, msg) in out {
            self.send(to, msg);
        }
        if self.fetch.is_some() {
            self.send_fetch();
        }
    }
}
