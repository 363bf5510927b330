//! The SnapshotCompactor actor: runs the [`SnapshotCore`], sends and
//! receives InstallSnapshot chunks, asks the owner to compact and to install.

use crate::actors::{
    log_refusal, micros_since, Compact, InstallSnapshotData, Interest, ObserveLeader, ObserveTerm,
    OwnerHandles, PeerMessage, RaftEvents, ReplicatedCommand, SnapshotSent, Subscribe,
};
use crate::config::RaftConfig;
use crate::error::Refusal;
use crate::messages::RaftMessage;
use crate::snapshot_compactor::{CompactorEffect, CompactorInput, SnapshotCore};
use actix::prelude::*;
use consensus_actors::transport::{Transport, Wire};
use consensus_actors::types::{LogIndex, NodeId};
use std::time::Duration;
use tokio::time::Instant;

/// The SnapshotCompactor component. See the [module documentation](self).
pub struct SnapshotCompactor<C>
where
    RaftMessage<C>: Wire,
{
    id: NodeId,
    cfg: RaftConfig,
    owner: OwnerHandles,
    transport: Transport<RaftMessage<C>>,
    epoch: Instant,
    core: SnapshotCore,
}

impl<C> SnapshotCompactor<C>
where
    C: ReplicatedCommand,
    RaftMessage<C>: Wire,
{
    /// A SnapshotCompactor for node `id`.
    pub fn new(
        id: NodeId,
        cfg: RaftConfig,
        owner: OwnerHandles,
        transport: Transport<RaftMessage<C>>,
        epoch: Instant,
    ) -> Self {
        Self {
            id,
            core: SnapshotCore::new(id, cfg.clone(), LogIndex::ZERO),
            cfg,
            owner,
            transport,
            epoch,
        }
    }

    fn now_us(&self) -> u64 {
        micros_since(self.epoch)
    }

    fn run_effects(&mut self, ctx: &mut Context<Self>) {
        for effect in self.core.take_effects() {
            match effect {
                CompactorEffect::SendChunk { to, msg } => {
                    self.transport
                        .send(to, RaftMessage::InstallSnapshot(Box::new(msg)));
                }
                CompactorEffect::SendResponse { to, msg } => {
                    self.transport
                        .send(to, RaftMessage::InstallSnapshotResponse(msg));
                }
                CompactorEffect::Compact { keep_entries } => {
                    let req = self.owner.compact.send(Compact { keep_entries });
                    ctx.spawn(req.into_actor(self).map(|res, act, ctx| {
                        let result = res.unwrap_or(Err(Refusal::Unavailable));
                        if let Ok(meta) = &result {
                            tracing::debug!(node = %act.id, last_included = %meta.last_included, "snapshot taken");
                        }
                        let now = act.now_us();
                        act.core.step(now, CompactorInput::Compacted(result));
                        act.run_effects(ctx);
                    }));
                }
                CompactorEffect::Install {
                    term,
                    leader,
                    snapshot,
                } => {
                    let req = self.owner.install_snapshot.send(InstallSnapshotData {
                        term,
                        leader,
                        snapshot,
                    });
                    ctx.spawn(req.into_actor(self).map(|res, _act, _ctx| {
                        log_refusal("compactor", "install snapshot", &res.unwrap_or(Ok(())));
                    }));
                }
                CompactorEffect::SnapshotSent {
                    term,
                    peer,
                    last_included,
                } => {
                    self.owner.snapshot_sent.do_send(SnapshotSent {
                        term,
                        peer,
                        last_included,
                    });
                }
                CompactorEffect::ObserveLeader { term, leader } => {
                    self.owner
                        .observe_leader
                        .do_send(ObserveLeader { term, leader });
                }
                CompactorEffect::ObserveTerm { term } => {
                    self.owner.observe_term.do_send(ObserveTerm { term });
                }
            }
        }
    }
}

impl<C> Actor for SnapshotCompactor<C>
where
    C: ReplicatedCommand,
    RaftMessage<C>: Wire,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The owner's state comes first through the event channel, in
        // order with the events that follow.
        self.owner.subscribe.do_send(Subscribe::new(
            crate::node::components::SNAPSHOT_COMPACTOR,
            ctx.address().recipient(),
            Interest::snapshot_compactor(self.cfg.snapshot_threshold),
        ));
        let interval = Duration::from_millis(self.cfg.heartbeat_interval_ms);
        ctx.run_interval(interval, |act, ctx| {
            let now = act.now_us();
            act.core.step(now, CompactorInput::Tick);
            act.run_effects(ctx);
        });
    }
}

impl<C> Supervised for SnapshotCompactor<C>
where
    C: ReplicatedCommand,
    RaftMessage<C>: Wire,
{
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Transfers in progress are lost; the owner keeps asking for the
        // snapshots its followers still need, and the snapshot index comes
        // back with the owner's state.
        self.core = SnapshotCore::new(self.id, self.cfg.clone(), LogIndex::ZERO);
    }
}

impl<C> Handler<RaftEvents> for SnapshotCompactor<C>
where
    C: ReplicatedCommand,
    RaftMessage<C>: Wire,
{
    type Result = ();

    fn handle(&mut self, m: RaftEvents, ctx: &mut Context<Self>) {
        let now = self.now_us();
        for e in &m.0 {
            self.core.step(now, CompactorInput::Event(e));
        }
        self.run_effects(ctx);
    }
}

impl<C> Handler<PeerMessage<C>> for SnapshotCompactor<C>
where
    C: ReplicatedCommand,
    RaftMessage<C>: Wire,
{
    type Result = ();

    fn handle(&mut self, m: PeerMessage<C>, ctx: &mut Context<Self>) {
        let now = self.now_us();
        match m.msg {
            RaftMessage::InstallSnapshot(s) => self.core.step(
                now,
                CompactorInput::InstallSnapshot {
                    from: m.from,
                    message: *s,
                },
            ),
            RaftMessage::InstallSnapshotResponse(r) => self.core.step(
                now,
                CompactorInput::InstallSnapshotResponse {
                    from: m.from,
                    response: r,
                },
            ),
            other => tracing::debug!(message = other.name(), "not for the snapshot compactor"),
        }
        self.run_effects(ctx);
    }
}

impl<C> Handler<crate::actors::InjectPanic> for SnapshotCompactor<C>
where
    C: ReplicatedCommand,
{
    type Result = ();

    fn handle(&mut self, _: crate::actors::InjectPanic, _ctx: &mut Context<Self>) {
        panic!("injected panic in SnapshotCompactor");
    }
}
