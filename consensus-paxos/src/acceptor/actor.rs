//! The Acceptor actor: runs the [`AcceptorCore`] over a durable store.
//! Writes of a step are synced before any message of the step is sent and
//! before its safety events are reported. A store that refuses a write or a
//! sync fails the node ([`FailNode`]): the acceptor never answers on state
//! it could not make durable. A restart rebuilds the core from the store.
//!
//! Compaction ([`Compact`], from the node's learner): the compaction point
//! is written to the hard state and synced, then the log's prefix whose
//! records all lie in compacted slots is purged. The actor remembers the
//! slot of every record in its log to find that prefix.

use super::core::{AcceptRecord, AcceptorCore, AcceptorEffect, AcceptorHardState, AcceptorInput};
use crate::messages::{PaxosMessage, PaxosMessage as M};
use crate::safety::PaxosEvent;
use crate::types::Slot;
use crate::wiring::{Compact, InjectPanic, PeerMessage};
use actix::prelude::*;
use consensus_actors::safety::SafetySink;
use consensus_actors::storage::{Storage, StorageError};
use consensus_actors::supervision::FailNode;
use consensus_actors::transport::Transport;
use consensus_actors::types::{LogIndex, NodeId};
use std::collections::VecDeque;

/// What the Acceptor stores: its promise as hard state, its acceptances as
/// an append-only log.
pub trait AcceptorStorage: Storage<AcceptorHardState, AcceptRecord> + Unpin {}

impl<T: Storage<AcceptorHardState, AcceptRecord> + Unpin> AcceptorStorage for T {}

/// The Acceptor component. See the [module documentation](self).
pub struct Acceptor<S: AcceptorStorage> {
    id: NodeId,
    storage: S,
    transport: Transport<PaxosMessage>,
    safety: SafetySink<PaxosEvent>,
    fail: Option<Recipient<FailNode>>,
    core: AcceptorCore,
    failed: bool,
    /// The slot of each record of the log, from its first index on.
    log_slots: VecDeque<Slot>,
}

impl<S: AcceptorStorage> Acceptor<S> {
    /// The acceptor of node `id` over `storage` (recovered in `started`).
    pub fn new(
        id: NodeId,
        storage: S,
        transport: Transport<PaxosMessage>,
        safety: SafetySink<PaxosEvent>,
        fail: Option<Recipient<FailNode>>,
    ) -> Self {
        Self {
            id,
            storage,
            transport,
            safety,
            fail,
            core: AcceptorCore::new(id),
            failed: false,
            log_slots: VecDeque::new(),
        }
    }

    fn recover(&mut self) -> Result<AcceptorCore, StorageError> {
        let hard = self.storage.load_hard_state()?;
        let first = self.storage.first_index();
        let last = self.storage.last_index();
        let mut records = Vec::new();
        if last >= first {
            records = self
                .storage
                .entries(first, LogIndex(last.0 + 1), usize::MAX)?;
        }
        self.log_slots = records.iter().map(|r| r.slot).collect();
        Ok(AcceptorCore::recover(self.id, hard, records))
    }

    fn fail(&mut self, reason: String) {
        if self.failed {
            return;
        }
        self.failed = true;
        tracing::error!(node = %self.id, %reason, "acceptor cannot go on");
        if let Some(f) = &self.fail {
            f.do_send(FailNode { reason });
        }
    }

    /// Runs one input; with `capture`, the answer to that node is returned
    /// instead of sent.
    fn step(&mut self, input: AcceptorInput, capture: Option<NodeId>) -> Option<PaxosMessage> {
        if self.failed {
            return None;
        }
        self.core.set_reports(self.safety.is_enabled());
        self.core.step(input);
        let effects = self.core.take_effects();
        let mut wrote = false;
        for e in &effects {
            let r = match e {
                AcceptorEffect::PersistPromise(h) => self.storage.save_hard_state(h),
                AcceptorEffect::PersistAccepted(r) => {
                    self.log_slots.push_back(r.slot);
                    self.storage.append(std::slice::from_ref(r))
                }
                _ => continue,
            };
            wrote = true;
            if let Err(err) = r {
                self.fail(format!("acceptor write failed: {err}"));
                return None;
            }
        }
        if wrote {
            if let Err(err) = self.storage.sync() {
                self.fail(format!("acceptor sync failed: {err}"));
                return None;
            }
        }
        let mut answer = None;
        for e in effects {
            match e {
                AcceptorEffect::Send { to, msg } if capture == Some(to) && answer.is_none() => {
                    answer = Some(msg);
                }
                AcceptorEffect::Send { to, msg } => self.transport.send(to, msg),
                AcceptorEffect::Report(r) => self.safety.emit_with(|| r.event()),
                AcceptorEffect::Purge { through } => self.purge(through),
                AcceptorEffect::PersistPromise(_) | AcceptorEffect::PersistAccepted(_) => {}
            }
        }
        answer
    }

    /// Purges the log's longest prefix of records in slots up to
    /// `through` (the compaction point is already synced: a purge a crash
    /// undoes only brings back records recovery skips).
    fn purge(&mut self, through: Slot) {
        let mut n = 0u64;
        while self.log_slots.front().is_some_and(|s| *s <= through) {
            self.log_slots.pop_front();
            n += 1;
        }
        if n == 0 {
            return;
        }
        let upto = LogIndex(self.storage.first_index().0 + n - 1);
        if let Err(e) = self.storage.purge_prefix(upto) {
            self.fail(format!("acceptor purge failed: {e}"));
        }
    }
}

impl<S: AcceptorStorage> Actor for Acceptor<S> {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        match self.recover() {
            Ok(core) => self.core = core,
            Err(e) => self.fail(format!("acceptor cannot read its store: {e}")),
        }
    }
}

impl<S: AcceptorStorage> Supervised for Acceptor<S> {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Whatever the core held is rebuilt from the store in `started`.
        self.core = AcceptorCore::new(self.id);
    }
}

impl<S: AcceptorStorage> Handler<PeerMessage> for Acceptor<S> {
    type Result = ();

    fn handle(&mut self, m: PeerMessage, _ctx: &mut Context<Self>) {
        let input = match m.msg {
            M::Prepare(msg) => AcceptorInput::Prepare { from: m.from, msg },
            M::Accept(msg) => AcceptorInput::Accept { from: m.from, msg },
            M::LazyAccepts(msg) => AcceptorInput::LazyAccepts { from: m.from, msg },
            other => {
                tracing::debug!(message = other.name(), "not for the acceptor");
                return;
            }
        };
        self.step(input, None);
    }
}

/// A Prepare or Accept whose answer comes back to the caller instead of
/// going to `from` over the network (the engine's `request_vote`). The
/// answer is `None` when the acceptor failed or the message is not one.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Option<PaxosMessage>")]
pub struct DirectRequest {
    /// The node the request is on behalf of.
    pub from: NodeId,
    /// Prepare or Accept.
    pub msg: PaxosMessage,
}

impl<S: AcceptorStorage> Handler<DirectRequest> for Acceptor<S> {
    type Result = Option<PaxosMessage>;

    fn handle(&mut self, m: DirectRequest, _ctx: &mut Context<Self>) -> Option<PaxosMessage> {
        let input = match m.msg {
            M::Prepare(msg) => AcceptorInput::Prepare { from: m.from, msg },
            M::Accept(msg) => AcceptorInput::Accept { from: m.from, msg },
            _ => return None,
        };
        self.step(input, Some(m.from))
    }
}

impl<S: AcceptorStorage> Handler<Compact> for Acceptor<S> {
    type Result = ();

    fn handle(&mut self, m: Compact, _ctx: &mut Context<Self>) {
        self.step(AcceptorInput::Compact { through: m.through }, None);
    }
}

impl<S: AcceptorStorage> Handler<InjectPanic> for Acceptor<S> {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in Acceptor");
    }
}
