//! The ViewChanger core (Castro and Liskov, OSDI'99 §4.4): what goes into
//! a VIEW-CHANGE, when one is valid, and the NEW-VIEW's re-issued
//! PRE-PREPAREs (`O`) that the new primary computes and every backup
//! recomputes, so a primary that lies is caught.
//!
//! * A VIEW-CHANGE for `v+1` carries the replica's stable checkpoint with
//!   its proof (2f+1 signed CHECKPOINTs) and, for every sequence number
//!   above it, the prepared certificate of the highest view (a signed
//!   PRE-PREPARE and 2f signed PREPAREs from distinct backups).
//! * `O`: let `min-s` be the highest stable checkpoint in the 2f+1
//!   VIEW-CHANGEs and `max-s` the highest prepared sequence number; every
//!   `n` in `(min-s, max-s]` gets the digest of the certificate of the
//!   highest view for `n`, or the null request if there is none.
//!
//! Timeouts: [`view_change_timeout_us`] doubles with every successive view
//! change that did not lead to progress.
//!
//! [`ViewChanger`] is the component's core: the request timer (fed by the
//! engine's [`ViewChangerNote::Activity`]), VIEW-CHANGE send and collect,
//! NEW-VIEW compute and check, and the growing timeouts. It talks to the
//! engine in [`crate::notes`]' terms: the engine stops the normal case
//! before the VIEW-CHANGE is built, and enters a view when told.

use crate::authenticator::core::Keys;
use crate::checkpoint::core::proof_is_valid;
use crate::engine::core::{Effect, ReplicaConfig, Status};
use crate::evidence::{Evidence, EvidenceKind};
use crate::messages::{
    Batch, Checkpoint, Digest, NewView, PbftMessage, PrePrepare, PreparedCert, Signed, ViewChange,
};
use crate::notes::{EngineNote, Note, ViewChangerNote};
use crate::types::{SeqNo, View};
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The cluster's shape, as the view change needs it.
#[derive(Clone, Debug)]
pub struct Quorums {
    /// Replicas, sorted; the primary of view `v` is `members[v mod n]`.
    pub members: Vec<NodeId>,
    /// `f`.
    pub f: usize,
    /// The watermark window `L`.
    pub window: u64,
    /// The digest of the initial state (the checkpoint at 0).
    pub genesis: Digest,
}

impl Quorums {
    /// The primary of `view`.
    pub fn primary(&self, view: View) -> NodeId {
        self.members[(view.get() % self.members.len() as u64) as usize]
    }

    /// The quorum `⌈(n + f + 1) / 2⌉`: `2f + 1` when `n = 3f + 1`.
    ///
    /// Any two quorums share at least `f + 1` replicas, so at least one
    /// correct one, whatever `n >= 3f + 1` is. A fixed `2f + 1` does not:
    /// with `n = 4` and `f = 0` it is 1, and two replicas alone can commit
    /// different requests at one sequence number (a crash and lost messages
    /// suffice; seed 3020 of `--faults panic,crash,loss --byzantine 0`).
    /// At most `n - f` replicas are needed, so `f` silent ones cannot stall.
    pub fn quorum(&self) -> usize {
        (self.members.len() + self.f + 2) / 2
    }
}

/// Why a VIEW-CHANGE is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidViewChange {
    /// Its checkpoint proof does not hold 2f+1 matching CHECKPOINTs.
    #[error("the checkpoint proof for {0} does not hold 2f+1 matching CHECKPOINTs")]
    CheckpointProof(SeqNo),
    /// A prepared certificate is malformed.
    #[error("the prepared certificate for {seq} is invalid: {why}")]
    Certificate {
        /// Its sequence number.
        seq: SeqNo,
        /// What is wrong.
        why: &'static str,
    },
    /// Two certificates for one sequence number.
    #[error("two prepared certificates for {0}")]
    DuplicateCertificate(SeqNo),
}

/// Checks a prepared certificate (signatures are the authenticator's job).
pub fn certificate_is_valid(cert: &PreparedCert, q: &Quorums) -> Result<(), &'static str> {
    let pp = &cert.pre_prepare.body;
    if pp.primary != q.primary(pp.view) {
        return Err("the PRE-PREPARE is not from the primary of its view");
    }
    if cert.batch.digest() != pp.digest {
        return Err("the batch does not match the PRE-PREPARE's digest");
    }
    let mut backups: Vec<NodeId> = cert
        .prepares
        .iter()
        .filter(|p| {
            p.body.view == pp.view
                && p.body.seq == pp.seq
                && p.body.digest == pp.digest
                && p.body.replica != pp.primary
                && q.members.contains(&p.body.replica)
        })
        .map(|p| p.body.replica)
        .collect();
    backups.sort_unstable();
    backups.dedup();
    if backups.len() + 1 < q.quorum() {
        return Err("fewer than a quorum less one (2f when n = 3f + 1) matching PREPAREs from distinct backups");
    }
    Ok(())
}

/// Checks a VIEW-CHANGE's content (signatures are the authenticator's job).
pub fn validate_view_change(vc: &ViewChange, q: &Quorums) -> Result<(), InvalidViewChange> {
    let proof_ok = if vc.stable_seq == SeqNo::ZERO {
        vc.stable_digest == q.genesis
    } else {
        proof_is_valid(
            vc.stable_seq,
            vc.stable_digest,
            &vc.checkpoint_proof,
            &q.members,
            q.quorum(),
        )
    };
    if !proof_ok {
        return Err(InvalidViewChange::CheckpointProof(vc.stable_seq));
    }
    let mut seen = Vec::new();
    for cert in &vc.prepared {
        let pp = &cert.pre_prepare.body;
        let seq = pp.seq;
        if seen.contains(&seq) {
            return Err(InvalidViewChange::DuplicateCertificate(seq));
        }
        seen.push(seq);
        if pp.view >= vc.new_view {
            return Err(InvalidViewChange::Certificate {
                seq,
                why: "prepared in a view not below the new one",
            });
        }
        if seq <= vc.stable_seq || seq.get() > vc.stable_seq.get() + q.window {
            return Err(InvalidViewChange::Certificate {
                seq,
                why: "outside the watermarks",
            });
        }
        certificate_is_valid(cert, q).map_err(|why| InvalidViewChange::Certificate { seq, why })?;
    }
    Ok(())
}

/// What a NEW-VIEW must contain, computed from 2f+1 VIEW-CHANGEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewViewPlan {
    /// `min-s`: the highest stable checkpoint among them.
    pub min_s: SeqNo,
    /// Its digest.
    pub min_s_digest: Digest,
    /// Its proof.
    pub min_s_proof: Vec<Signed<Checkpoint>>,
    /// `max-s`: the highest prepared sequence number (at least `min-s`).
    pub max_s: SeqNo,
    /// `O`: the digest and batch to re-issue for every `n` in
    /// `(min-s, max-s]` (the null request where no certificate is).
    pub reissue: BTreeMap<SeqNo, (Digest, Batch)>,
}

/// Computes `O` from valid VIEW-CHANGEs (deterministic in their content,
/// whatever their order).
pub fn plan_new_view<'a>(vcs: impl IntoIterator<Item = &'a ViewChange>) -> NewViewPlan {
    let vcs: Vec<&ViewChange> = vcs.into_iter().collect();
    assert!(!vcs.is_empty(), "a NEW-VIEW needs VIEW-CHANGEs");
    let best = vcs
        .iter()
        .max_by_key(|vc| (vc.stable_seq, vc.replica))
        .copied()
        .unwrap_or(vcs[0]);
    let min_s = best.stable_seq;
    let mut chosen: BTreeMap<SeqNo, (View, &PreparedCert)> = BTreeMap::new();
    for vc in &vcs {
        for cert in &vc.prepared {
            let pp = &cert.pre_prepare.body;
            if pp.seq <= min_s {
                continue;
            }
            match chosen.get(&pp.seq) {
                Some((v, c)) if (*v, c.pre_prepare.body.digest) >= (pp.view, pp.digest) => {}
                _ => {
                    chosen.insert(pp.seq, (pp.view, cert));
                }
            }
        }
    }
    let max_s = chosen
        .keys()
        .next_back()
        .copied()
        .unwrap_or(min_s)
        .max(min_s);
    let null = Batch::default();
    let null_digest = null.digest();
    let mut reissue = BTreeMap::new();
    let mut n = min_s.next();
    while n <= max_s {
        let entry = match chosen.get(&n) {
            Some((_, cert)) => (cert.pre_prepare.body.digest, cert.batch.clone()),
            None => (null_digest, null.clone()),
        };
        reissue.insert(n, entry);
        n = n.next();
    }
    assert!(max_s >= min_s && reissue.len() as u64 == max_s.get() - min_s.get());
    NewViewPlan {
        min_s,
        min_s_digest: best.stable_digest,
        min_s_proof: best.checkpoint_proof.clone(),
        max_s,
        reissue,
    }
}

/// The timeout before giving up on view `attempt` views after the last
/// one that made progress: `base * 2^attempt`, capped.
pub fn view_change_timeout_us(base_us: u64, attempt: u32) -> u64 {
    base_us.saturating_mul(1u64 << attempt.min(6))
}

/// The ViewChanger of one replica. See the [module documentation](self).
pub struct ViewChanger {
    cfg: ReplicaConfig,
    q: Quorums,
    keys: Rc<Keys>,
    /// False until the engine's state arrived (after a start or restart):
    /// no view change starts and no NEW-VIEW is accepted before.
    synced: bool,
    view: View,
    status: Status,
    /// Successive view changes without progress (the timeout doubles).
    attempts: u32,
    /// The request timer: running while requests wait, restarted when one
    /// executes (OSDI'99 §4.4).
    timer_since_us: Option<u64>,
    waiting: bool,
    vcs: BTreeMap<View, BTreeMap<NodeId, Signed<ViewChange>>>,
    new_view: Option<Signed<NewView>>,
    now_us: u64,
    last_retransmit_us: u64,
    out: Vec<Effect>,
    notes: Vec<Note>,
}

impl std::fmt::Debug for ViewChanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewChanger")
            .field("id", &self.cfg.id)
            .field("synced", &self.synced)
            .field("view", &self.view)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl ViewChanger {
    /// The ViewChanger of `cfg.id`; `q` as the engine's
    /// ([`ReplicaConfig::quorums_from`]). Unsynced until
    /// [`ViewChanger::start`]'s request is answered.
    pub fn new(cfg: ReplicaConfig, q: Quorums, keys: Rc<Keys>) -> Self {
        assert_eq!(keys.me(), cfg.id, "the replica's own keys");
        Self {
            cfg,
            q,
            keys,
            synced: false,
            view: View::ZERO,
            status: Status::Normal,
            attempts: 0,
            timer_since_us: None,
            waiting: false,
            vcs: BTreeMap::new(),
            new_view: None,
            now_us: 0,
            last_retransmit_us: 0,
            out: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Its view (the engine's once synced).
    pub fn view(&self) -> View {
        self.view
    }

    /// Its status in the view.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether the engine's state arrived since the last start.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Successive view changes without progress.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// VIEW-CHANGEs held (one per replica at most).
    pub fn view_changes_held(&self) -> usize {
        self.vcs.values().map(BTreeMap::len).sum()
    }

    /// On start and after every restart: asks the engine for its state.
    pub fn start(&mut self, now_us: u64) -> Vec<Effect> {
        self.now_us = self.now_us.max(now_us);
        self.synced = false;
        self.note(EngineNote::SyncViewChanger);
        self.after_step()
    }

    /// Time passed: the request timer, the view-change timer and the
    /// VIEW-CHANGE's retransmission.
    pub fn tick(&mut self, now_us: u64) -> Vec<Effect> {
        self.now_us = self.now_us.max(now_us);
        if self.synced {
            self.handle_timers();
            if self.now_us.saturating_sub(self.last_retransmit_us) >= self.cfg.retransmit_us {
                self.last_retransmit_us = self.now_us;
                self.retransmit();
            }
        }
        self.after_step()
    }

    /// An authenticated VIEW-CHANGE or NEW-VIEW from `from` (other
    /// messages are not the ViewChanger's and are ignored).
    pub fn handle_message(&mut self, from: NodeId, msg: PbftMessage) -> Vec<Effect> {
        if self.synced {
            match msg {
                PbftMessage::ViewChange(vc) => self.handle_view_change(from, vc),
                PbftMessage::NewView(nv) => self.handle_new_view(from, nv),
                _ => {}
            }
        }
        self.after_step()
    }

    /// A note from the engine.
    pub fn handle_note(&mut self, note: ViewChangerNote) -> Vec<Effect> {
        match note {
            ViewChangerNote::Activity {
                waiting,
                restart,
                progressed,
            } => {
                self.waiting = waiting;
                if progressed {
                    self.attempts = 0;
                }
                if !waiting {
                    self.timer_since_us = None;
                } else if restart || progressed || self.timer_since_us.is_none() {
                    // Started by the oldest waiting request, restarted when
                    // one executes.
                    self.timer_since_us = Some(self.now_us);
                }
            }
            ViewChangerNote::EngineState {
                view,
                normal,
                new_view,
                stable,
                prepared,
                waiting_since_us,
                attempts,
            } => {
                if !self.synced {
                    self.resync_timer(waiting_since_us, attempts);
                }
                self.handle_engine_state(view, normal, new_view, stable, prepared)
            }
            ViewChangerNote::ResendNewView { to } => {
                if let Some(nv) = &self.new_view {
                    if nv.body.view == self.view && self.status == Status::Normal {
                        for r in to {
                            self.out.push(Effect::Send {
                                to: r,
                                msg: PbftMessage::NewView(nv.clone()),
                            });
                        }
                    }
                }
            }
        }
        self.after_step()
    }

    /// The notes for the engine, in order.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    fn after_step(&mut self) -> Vec<Effect> {
        self.check_invariants();
        std::mem::take(&mut self.out)
    }

    fn check_invariants(&self) {
        assert!(
            self.vcs.keys().all(|&v| v >= self.view),
            "VIEW-CHANGEs for past views are discarded"
        );
        for set in self.vcs.values() {
            assert!(set.len() <= self.q.members.len());
        }
        assert!(
            self.new_view
                .as_ref()
                .is_none_or(|nv| nv.body.view <= self.view),
            "the last NEW-VIEW is of this view or an earlier one"
        );
        assert!(self.synced || self.vcs.is_empty() || self.view > View::ZERO);
    }

    fn note(&mut self, note: EngineNote) {
        self.notes.push(Note::Engine(note));
    }

    fn timeout_us(&self) -> u64 {
        view_change_timeout_us(self.cfg.view_change_timeout_us, self.attempts)
    }

    fn handle_timers(&mut self) {
        let timeout = self.timeout_us();
        match self.status {
            Status::Normal => {
                if !self.waiting {
                    self.timer_since_us = None;
                } else {
                    let since = *self.timer_since_us.get_or_insert(self.now_us);
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
    }

    fn retransmit(&mut self) {
        if matches!(self.status, Status::ViewChange { .. }) {
            if let Some(vc) = self.vcs.get(&self.view).and_then(|s| s.get(&self.cfg.id)) {
                self.out
                    .push(Effect::Broadcast(PbftMessage::ViewChange(vc.clone())));
            }
        }
    }

    /// Moves to `new_view`: the engine stops the normal case first and
    /// answers with its certificates ([`Self::handle_engine_state`] sends
    /// the VIEW-CHANGE).
    fn start_view_change(&mut self, new_view: View) {
        assert!(new_view > self.view, "views only move forward");
        assert!(self.synced, "an unsynced ViewChanger starts no view change");
        tracing::debug!(replica = %self.cfg.id, from = %self.view, to = %new_view, "view change");
        self.view = new_view;
        self.status = Status::ViewChange {
            since_us: self.now_us,
            quorum_since_us: None,
        };
        self.attempts = self.attempts.saturating_add(1);
        self.new_view = None;
        self.timer_since_us = None;
        self.vcs = self.vcs.split_off(&new_view);
        self.note(EngineNote::StartViewChange { view: new_view });
    }

    /// After a start or restart: the request timer and the growing
    /// timeouts as the engine kept them, so a request that waited before
    /// the restart still triggers a view change within its timeout, and a
    /// timeout that had doubled stays doubled.
    fn resync_timer(&mut self, waiting_since_us: Option<u64>, attempts: u32) {
        self.waiting = waiting_since_us.is_some();
        self.timer_since_us = waiting_since_us.map(|t| t.min(self.now_us));
        self.attempts = attempts;
    }

    fn handle_engine_state(
        &mut self,
        view: View,
        normal: bool,
        new_view: Option<Signed<NewView>>,
        stable: crate::checkpoint::core::StableCheckpoint,
        prepared: Vec<PreparedCert>,
    ) {
        let resync = !self.synced || view > self.view;
        if resync {
            // What the engine holds is what the replica promised: adopt it.
            self.synced = true;
            self.view = view;
            self.vcs = self.vcs.split_off(&view);
            if normal {
                self.status = Status::Normal;
                self.new_view = new_view.filter(|nv| nv.body.view == view);
            } else {
                self.status = Status::ViewChange {
                    since_us: self.now_us,
                    quorum_since_us: None,
                };
                self.attempts = self.attempts.max(1);
                self.new_view = None;
            }
        }
        if normal || view != self.view || !matches!(self.status, Status::ViewChange { .. }) {
            return;
        }
        let me = self.cfg.id;
        if self.vcs.get(&view).is_some_and(|s| s.contains_key(&me)) && !resync {
            return; // already sent
        }
        let h = stable.seq;
        let vc = Signed::new(
            ViewChange {
                new_view: view,
                stable_seq: h,
                stable_digest: stable.digest,
                checkpoint_proof: stable.proof,
                prepared: prepared
                    .into_iter()
                    .filter(|c| c.pre_prepare.body.seq > h)
                    .collect(),
                replica: me,
            },
            &self.keys,
        );
        debug_assert!(
            validate_view_change(&vc.body, &self.q).is_ok(),
            "own VIEW-CHANGE valid"
        );
        self.out
            .push(Effect::Broadcast(PbftMessage::ViewChange(vc.clone())));
        self.store_view_change(vc);
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

    fn accuse(&mut self, accused: NodeId, kind: EvidenceKind, proof: String) {
        self.out.push(Effect::Evidence(Evidence {
            witness: self.cfg.id,
            accused,
            kind,
            proof,
        }));
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
        if self.holds(&svc) {
            // A retransmission: validated when it first came (a compare
            // costs less than hashing its batches again).
            return;
        }
        if let Err(e) = validate_view_change(vc, &self.q) {
            self.accuse(from, EvidenceKind::InvalidViewChange, e.to_string());
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

    /// Whether `vc` is the VIEW-CHANGE held for its sender and view (held
    /// ones were validated).
    fn holds(&self, vc: &Signed<ViewChange>) -> bool {
        self.vcs
            .get(&vc.body.new_view)
            .and_then(|s| s.get(&vc.body.replica))
            .is_some_and(|held| held == vc)
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
        self.out
            .push(Effect::Broadcast(PbftMessage::NewView(nv.clone())));
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
            if !self.holds(vc) {
                validate_view_change(&vc.body, &self.q)
                    .map_err(|e| format!("{}: {e}", vc.body.replica))?;
            }
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
        self.status = Status::Normal;
        self.timer_since_us = None;
        self.vcs = self.vcs.split_off(&self.view.next());
        self.new_view = Some(nv.clone());
        self.note(EngineNote::EnterView { new_view: nv, plan });
    }
}
