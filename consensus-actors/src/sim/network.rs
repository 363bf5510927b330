//! [`SimNetwork`]: the in-process network of a simulation.
//!
//! Every message between simulated nodes goes through this one actor, which
//! decides with its own seeded generator whether the message is lost,
//! duplicated or held back, and when each copy arrives. Delivery happens on
//! the tokio clock, so in a paused-clock simulation the delays cost no real
//! time.
//!
//! # Model
//!
//! * A message enters the network when the actor handles its [`Envelope`].
//!   It is dropped at once when its sender is down, its destination is not
//!   registered, the link is cut (partition, one-way block, isolation), or by
//!   the loss roll.
//! * Otherwise it is delivered after `base_delay + U[0, jitter]`. Links are
//!   FIFO: a message never overtakes an earlier one on the same directed link
//!   (its delivery is pushed back to the link's last delivery time), *unless*
//!   the reorder roll picks it: it then gets an extra `U[0, reorder_window]`
//!   and is exempt from the FIFO rule, so later messages may overtake it.
//! * The duplicate roll schedules a second, independently delayed copy.
//! * At delivery time the link and the destination are checked again: a
//!   message in flight when a partition starts or its destination crashes is
//!   dropped. A message in flight to a node that crashed and came back is
//!   delivered to the new incarnation, like a late packet; a message already
//!   in flight from a node that crashes is still delivered.
//! * A partition only concerns the nodes it lists: nodes in no group (test
//!   clients, nodes added later) still reach everyone. Use [`Isolate`] to cut
//!   a node off entirely.
//! * Messages due at the same instant are delivered in the order they entered
//!   the network. Nothing depends on hash-map order.
//!
//! tokio's timer has millisecond resolution: delays are effectively rounded
//! up to the next millisecond of virtual time.

use super::rng::chance;
use super::trace::{digest, TraceHandle};
use crate::transport::{DeregisterNode, Envelope, RegisterNode, Wire};
use crate::types::NodeId;
use actix::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::{Duration, Instant};

/// The fault rates of the network. All may be changed during a run with
/// [`SetFaults`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkFaults {
    /// Delay every message gets.
    pub base_delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per message.
    pub jitter: Duration,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Probability that a message is held back (extra delay in
    /// `[0, reorder_window]`, exempt from link FIFO order).
    pub reorder: f64,
    /// The most extra delay a reordered message gets.
    pub reorder_window: Duration,
}

impl Default for NetworkFaults {
    fn default() -> Self {
        Self::none()
    }
}

impl NetworkFaults {
    /// A reliable FIFO network with a 1 ms delay and no faults.
    pub const fn none() -> Self {
        Self {
            base_delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_window: Duration::from_millis(10),
        }
    }

    /// A LAN-like network: 1 ms delay, 1 ms jitter, no faults.
    pub const fn lan() -> Self {
        Self {
            jitter: Duration::from_millis(1),
            ..Self::none()
        }
    }

    /// Checks that every probability is in `[0, 1]`.
    pub fn validate(&self) -> Result<(), NetworkError> {
        for (name, p) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(NetworkError::BadProbability { name, value: p });
            }
        }
        Ok(())
    }
}

/// A control request the network refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NetworkError {
    /// A fault probability outside `[0, 1]` (or NaN).
    #[error("{name} probability {value} is not in [0, 1]")]
    BadProbability {
        /// Which field.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// A node listed in two groups of a partition.
    #[error("node {0} is listed in two groups of the partition")]
    NodeInTwoGroups(NodeId),
}

/// Counts of what the network did with the messages it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// Envelopes handed to the network.
    pub sent: u64,
    /// Copies delivered to a registered inbox.
    pub delivered: u64,
    /// Dropped by the loss roll.
    pub dropped_loss: u64,
    /// Dropped because the link was cut (partition, block, isolation).
    pub dropped_partition: u64,
    /// Dropped because the sender was down or the destination not registered
    /// (crashed, not started, or its inbox actor stopped).
    pub dropped_down: u64,
    /// Extra copies scheduled by the duplicate roll.
    pub duplicated: u64,
    /// Copies held back by the reorder roll.
    pub reordered: u64,
}

impl NetworkStats {
    /// All drops, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_partition + self.dropped_down
    }
}

/// Live counters of a [`SimNetwork`], readable without messaging the actor
/// (a simulation's wait conditions are synchronous).
#[derive(Clone, Debug, Default)]
pub struct NetworkStatsHandle {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    delivered: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_partition: AtomicU64,
    dropped_down: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
}

impl NetworkStatsHandle {
    /// The counts so far.
    pub fn get(&self) -> NetworkStats {
        let c = &self.inner;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetworkStats {
            sent: r(&c.sent),
            delivered: r(&c.delivered),
            dropped_loss: r(&c.dropped_loss),
            dropped_partition: r(&c.dropped_partition),
            dropped_down: r(&c.dropped_down),
            duplicated: r(&c.duplicated),
            reordered: r(&c.reordered),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Replaces the network's fault rates (takes effect for messages sent after it).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<(), NetworkError>")]
pub struct SetFaults(pub NetworkFaults);

/// Splits the listed nodes into groups that cannot talk to each other (both
/// ways). Nodes listed in no group are not affected (they reach every
/// group). Replaces any earlier partition; one-way blocks and isolations
/// stay.
#[derive(Message, Clone, Debug)]
#[rtype(result = "Result<(), NetworkError>")]
pub struct Partition(pub Vec<Vec<NodeId>>);

/// Cuts the directed link `from -> to` (the other direction keeps working).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct BlockLink {
    /// Sender side.
    pub from: NodeId,
    /// Receiver side.
    pub to: NodeId,
}

/// Restores the directed link `from -> to` cut by [`BlockLink`].
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct UnblockLink {
    /// Sender side.
    pub from: NodeId,
    /// Receiver side.
    pub to: NodeId,
}

/// Cuts every link to and from a node.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Isolate(pub NodeId);

/// Removes every partition, one-way block and isolation (fault rates stay).
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Heal;

/// Asks for the counters.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "NetworkStats")]
pub struct GetStats;

struct InFlight<M: Wire> {
    env: Envelope<M>,
    digest: u64,
}

/// The simulated network actor. See the [module docs](self) for the model.
pub struct SimNetwork<M: Wire> {
    rng: ChaCha8Rng,
    faults: NetworkFaults,
    trace: Option<TraceHandle>,
    stats: NetworkStatsHandle,
    inboxes: BTreeMap<NodeId, Recipient<Envelope<M>>>,
    down: BTreeSet<NodeId>,
    groups: Option<BTreeMap<NodeId, usize>>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    isolated: BTreeSet<NodeId>,
    queue: BTreeMap<(Instant, u64), InFlight<M>>,
    next_seq: u64,
    link_tail: BTreeMap<(NodeId, NodeId), Instant>,
    timer: Option<(Instant, SpawnHandle)>,
}

impl<M: Wire> Actor for SimNetwork<M> {
    type Context = Context<Self>;
}

impl<M: Wire> SimNetwork<M> {
    /// A network drawing every random choice from `rng`, recording deliveries
    /// and control actions in `trace` when given. Fails when `faults` is
    /// invalid (see [`NetworkFaults::validate`]).
    pub fn new(
        rng: ChaCha8Rng,
        faults: NetworkFaults,
        trace: Option<TraceHandle>,
    ) -> Result<Self, NetworkError> {
        faults.validate()?;
        Ok(Self {
            rng,
            faults,
            trace,
            stats: NetworkStatsHandle::default(),
            inboxes: BTreeMap::new(),
            down: BTreeSet::new(),
            groups: None,
            blocked: BTreeSet::new(),
            isolated: BTreeSet::new(),
            queue: BTreeMap::new(),
            next_seq: 0,
            link_tail: BTreeMap::new(),
            timer: None,
        })
    }

    /// The live counters (take it before starting the actor).
    pub fn stats_handle(&self) -> NetworkStatsHandle {
        self.stats.clone()
    }

    /// Whether a message may currently travel `from -> to`.
    fn link_open(&self, from: NodeId, to: NodeId) -> bool {
        if from == to {
            return true;
        }
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            return false;
        }
        if self.blocked.contains(&(from, to)) {
            return false;
        }
        match &self.groups {
            None => true,
            Some(groups) => match (groups.get(&from), groups.get(&to)) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            },
        }
    }

    fn control(&self, what: impl FnOnce() -> String) {
        if let Some(t) = &self.trace {
            t.record_control(what());
        }
    }

    /// Delivery instant of one copy sent now on `from -> to`.
    fn schedule_at(&mut self, now: Instant, from: NodeId, to: NodeId) -> Instant {
        let f = self.faults;
        let mut delay = f.base_delay;
        if !f.jitter.is_zero() {
            let jitter_ns = u64::try_from(f.jitter.as_nanos()).unwrap_or(u64::MAX);
            delay += Duration::from_nanos(self.rng.random_range(0..=jitter_ns));
        }
        let mut at = now + delay;
        if chance(&mut self.rng, f.reorder) {
            NetworkStatsHandle::bump(&self.stats.inner.reordered);
            let window_ns = u64::try_from(f.reorder_window.as_nanos()).unwrap_or(u64::MAX);
            at += Duration::from_nanos(self.rng.random_range(0..=window_ns));
        } else {
            let tail = self.link_tail.entry((from, to)).or_insert(at);
            if *tail > at {
                at = *tail;
            }
            *tail = at;
        }
        at
    }

    fn enqueue(&mut self, at: Instant, flight: InFlight<M>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.insert((at, seq), flight);
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        let Some(&(next, _)) = self.queue.keys().next() else {
            return;
        };
        if let Some((armed, handle)) = self.timer {
            if armed <= next {
                return;
            }
            ctx.cancel_future(handle);
        }
        let wait = next.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.fire(ctx);
        });
        self.timer = Some((next, handle));
    }

    fn fire(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let flight = entry.remove();
            self.deliver(flight);
        }
        self.arm(ctx);
    }

    fn deliver(&mut self, flight: InFlight<M>) {
        let InFlight { env, digest } = flight;
        let c = &self.stats.inner;
        if !self.link_open(env.from, env.to) {
            NetworkStatsHandle::bump(&c.dropped_partition);
            return;
        }
        let Some(inbox) = self.inboxes.get(&env.to) else {
            NetworkStatsHandle::bump(&c.dropped_down);
            return;
        };
        if !inbox.connected() {
            NetworkStatsHandle::bump(&c.dropped_down);
            return;
        }
        if let Some(t) = &self.trace {
            t.record_delivery(env.from, env.to, digest);
        }
        NetworkStatsHandle::bump(&c.delivered);
        inbox.do_send(env);
    }
}

impl<M: Wire> Handler<Envelope<M>> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, env: Envelope<M>, ctx: &mut Context<Self>) {
        let c = self.stats.inner.clone();
        NetworkStatsHandle::bump(&c.sent);
        if self.down.contains(&env.from) || !self.inboxes.contains_key(&env.to) {
            NetworkStatsHandle::bump(&c.dropped_down);
            return;
        }
        if !self.link_open(env.from, env.to) {
            NetworkStatsHandle::bump(&c.dropped_partition);
            return;
        }
        if chance(&mut self.rng, self.faults.loss) {
            NetworkStatsHandle::bump(&c.dropped_loss);
            return;
        }
        let digest = match &self.trace {
            Some(t) if t.records_deliveries() => digest(&env.msg),
            _ => 0,
        };
        let now = Instant::now();
        let at = self.schedule_at(now, env.from, env.to);
        if chance(&mut self.rng, self.faults.duplicate) {
            NetworkStatsHandle::bump(&c.duplicated);
            let at2 = self.schedule_at(now, env.from, env.to);
            self.enqueue(
                at2,
                InFlight {
                    env: env.clone(),
                    digest,
                },
            );
        }
        self.enqueue(at, InFlight { env, digest });
        self.arm(ctx);
    }
}

impl<M: Wire> Handler<RegisterNode<M>> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, msg: RegisterNode<M>, _: &mut Context<Self>) {
        self.down.remove(&msg.node);
        self.inboxes.insert(msg.node, msg.inbox);
    }
}

impl<M: Wire> Handler<DeregisterNode> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, msg: DeregisterNode, _: &mut Context<Self>) {
        self.inboxes.remove(&msg.node);
        self.down.insert(msg.node);
    }
}

impl<M: Wire> Handler<SetFaults> for SimNetwork<M> {
    type Result = Result<(), NetworkError>;

    fn handle(&mut self, SetFaults(faults): SetFaults, _: &mut Context<Self>) -> Self::Result {
        faults.validate()?;
        self.faults = faults;
        self.control(|| format!("faults {faults:?}"));
        Ok(())
    }
}

impl<M: Wire> Handler<Partition> for SimNetwork<M> {
    type Result = Result<(), NetworkError>;

    fn handle(&mut self, Partition(groups): Partition, _: &mut Context<Self>) -> Self::Result {
        let mut map = BTreeMap::new();
        for (i, group) in groups.iter().enumerate() {
            for &node in group {
                if let Some(&other) = map.get(&node) {
                    if other != i {
                        return Err(NetworkError::NodeInTwoGroups(node));
                    }
                }
                map.insert(node, i);
            }
        }
        self.groups = Some(map);
        self.control(|| format!("partition {groups:?}"));
        Ok(())
    }
}

impl<M: Wire> Handler<BlockLink> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, BlockLink { from, to }: BlockLink, _: &mut Context<Self>) {
        self.blocked.insert((from, to));
        self.control(|| format!("block {from}->{to}"));
    }
}

impl<M: Wire> Handler<UnblockLink> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, UnblockLink { from, to }: UnblockLink, _: &mut Context<Self>) {
        self.blocked.remove(&(from, to));
        self.control(|| format!("unblock {from}->{to}"));
    }
}

impl<M: Wire> Handler<Isolate> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, Isolate(node): Isolate, _: &mut Context<Self>) {
        self.isolated.insert(node);
        self.control(|| format!("isolate {node}"));
    }
}

impl<M: Wire> Handler<Heal> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, _: Heal, _: &mut Context<Self>) {
        self.groups = None;
        self.blocked.clear();
        self.isolated.clear();
        self.control(|| "heal".to_owned());
    }
}

impl<M: Wire> Handler<GetStats> for SimNetwork<M> {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats.get())
    }
}

/// The outbound side of one node incarnation: forwards the node's envelopes
/// to the network until closed. A crashed incarnation's port is closed at
/// once, so actors of the dead incarnation still draining their mailboxes
/// cannot send as the node (or as its next incarnation).
pub struct SimPort<M: Wire> {
    node: NodeId,
    network: Recipient<Envelope<M>>,
    closed: Arc<AtomicBool>,
}

impl<M: Wire> Actor for SimPort<M> {
    type Context = Context<Self>;
}

/// Closes a [`SimPort`] (cheap clonable switch).
#[derive(Clone, Debug, Default)]
pub struct PortSwitch(Arc<AtomicBool>);

impl PortSwitch {
    /// Closes the port: it forwards nothing from now on and stops.
    pub fn close(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the port has been closed.
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl<M: Wire> SimPort<M> {
    /// A port for `node` forwarding to `network`, with the switch that closes it.
    pub fn new(node: NodeId, network: Recipient<Envelope<M>>) -> (Self, PortSwitch) {
        let switch = PortSwitch::default();
        (
            Self {
                node,
                network,
                closed: switch.0.clone(),
            },
            switch,
        )
    }
}

impl<M: Wire> Handler<Envelope<M>> for SimPort<M> {
    type Result = ();

    fn handle(&mut self, mut env: Envelope<M>, ctx: &mut Context<Self>) {
        if self.closed.load(Ordering::Relaxed) {
            ctx.stop();
            return;
        }
        if env.from != self.node {
            tracing::warn!(port = %self.node, from = %env.from, "envelope with a foreign sender restamped");
            env.from = self.node;
        }
        self.network.do_send(env);
    }
}
