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
//! * A message enters the network when the actor handles its [`Envelope`]
//!   (or, in a [`Simulation`](super::Simulation), the moment the sending
//!   node's transport sends it, through the node's port). It is dropped at once when its sender is down, its destination is not
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
//!
//! # Inside (what makes it cheap per message)
//!
//! The network's state (generator, fault rates, node table, link table,
//! in-flight queue) sits behind one lock shared by the actor, the ports of a
//! simulation's nodes and the simulation itself. A simulated node's port is
//! an [`EnvelopeSink`] behind its [`Transport`](crate::transport::Transport):
//! it applies the model above to each envelope as the node sends it, so a
//! message enters the network without a mailbox hop (a [`SimPort`] actor
//! costs one; the network actor's mailbox, one), and the simulation's control
//! operations (partition, crash, faults...) apply the moment they are
//! called. Copies in flight wait in one binary heap ordered by (delivery
//! time, entry order); a single driver task sleeps until the earliest one is
//! due, delivers everything due, and moves its one tokio sleep to the next:
//! no timer or task per message. Which links are open is a table
//! recomputed when partitions, blocks or isolations change, not worked out
//! per message; every lookup by node id happens once per message.

use super::rng::chance;
use super::trace::{digest, DeliveryRecorder, TraceHandle};
use crate::transport::{DeregisterNode, Envelope, EnvelopeSink, RegisterNode, Wire};
use crate::types::NodeId;
use actix::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};
use tokio::time::{Duration, Instant, Sleep};

/// Node ids below this are looked up in a vector indexed by id, not a map.
const DENSE_IDS: u64 = 1 << 12;
/// No node at this id in [`Core::dense`].
const NO_INDEX: u32 = u32::MAX;

/// Whole nanoseconds of `d`, saturating.
#[inline]
fn duration_nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

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

    /// Counts one. Only the network's core, under its lock, writes the
    /// counters, so a plain load and store suffice (no atomic
    /// read-modify-write on the per-message path).
    fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
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

/// A node as the network knows it, at a dense index.
struct Endpoint<M: Wire> {
    id: NodeId,
    /// Where its messages go; `None` when not registered (never, or since
    /// it was deregistered).
    inbox: Option<Recipient<Envelope<M>>>,
    /// Deregistered (crashed) and not registered again: what it sends is
    /// dropped.
    down: bool,
}

/// The state of one directed link.
#[derive(Clone, Copy, Default)]
struct Link {
    /// Whether a message may currently travel the link (partitions, blocks
    /// and isolations folded in; recomputed when they change).
    open: bool,
    /// Delivery time of the last FIFO message on the link (as a
    /// [`Due::at`]; 0 before the first).
    tail: u64,
}

/// A copy of a message in flight (waiting in [`Core::slots`]).
struct Scheduled<M: Wire> {
    from: u32,
    to: u32,
    digest: u64,
    env: Envelope<M>,
}

/// The place of a copy in flight in the delivery order: by delivery time,
/// then by the order it entered the network. The heap orders these small
/// keys; the copy itself stays put in its slot (a sift moved whole
/// envelopes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Due {
    /// Delivery time, in nanoseconds since [`Core::origin`] (two words to
    /// compare instead of an `Instant`'s seconds and nanoseconds).
    at: u64,
    seq: u64,
    /// Index of the copy in [`Core::slots`].
    slot: u32,
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest first.
    /// `seq` is unique: no two keys compare equal.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Everything the network knows and decides, shared by the [`SimNetwork`]
/// actor, the ports of the nodes (which hand their messages straight to it,
/// without a second mailbox hop) and the [`Simulation`](super::Simulation)
/// (whose control operations apply at once). Everything runs on the
/// simulation's one thread: the lock is never contended.
struct Core<M: Wire> {
    rng: ChaCha8Rng,
    faults: NetworkFaults,
    trace: Option<TraceHandle>,
    record_deliveries: bool,
    stats: NetworkStatsHandle,
    /// Dense index of every node the network has heard of (registered,
    /// sender or named by a control request). Never shrinks.
    index: BTreeMap<NodeId, u32>,
    endpoints: Vec<Endpoint<M>>,
    /// `endpoints.len()²` links, row `from`, column `to`.
    links: Vec<Link>,
    groups: Option<BTreeMap<NodeId, usize>>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    isolated: BTreeSet<NodeId>,
    queue: BinaryHeap<Due>,
    /// The instant [`Due::at`] counts from: the first instant a message
    /// was scheduled at (every delivery time is later).
    origin: Option<Instant>,
    /// The last instant converted by [`nanos`](Self::nanos), and its value.
    last_nanos: Option<(Instant, u64)>,
    /// Dense index of the nodes with small ids, by id ([`NO_INDEX`] for
    /// none); ids from [`DENSE_IDS`] on are only in `index`.
    dense: Vec<u32>,
    /// The copies in flight, where their [`Due`] keys point; `None` for a
    /// free slot.
    slots: Vec<Option<Scheduled<M>>>,
    /// Free slots, reused before the vector grows.
    free_slots: Vec<u32>,
    next_seq: u64,
    /// The instant (as a [`Due::at`]) the driver will next wake at, `None`
    /// when it sleeps until told (or has not started).
    armed: Option<u64>,
    /// The driver's waker, once it has run.
    driver: Option<Waker>,
    /// The actor stopped: the driver ends.
    closed: bool,
    /// While nodes are being launched: what their ports sent, entering the
    /// network in order once the launch is over (see [`NetHandle::hold`]).
    held: Option<Vec<Envelope<M>>>,
}

impl<M: Wire> Core<M> {
    fn new(rng: ChaCha8Rng, faults: NetworkFaults, trace: Option<TraceHandle>) -> Self {
        Self {
            rng,
            faults,
            record_deliveries: trace.as_ref().is_some_and(TraceHandle::records_deliveries),
            trace,
            stats: NetworkStatsHandle::default(),
            index: BTreeMap::new(),
            endpoints: Vec::new(),
            links: Vec::new(),
            groups: None,
            blocked: BTreeSet::new(),
            isolated: BTreeSet::new(),
            queue: BinaryHeap::new(),
            origin: None,
            last_nanos: None,
            dense: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            next_seq: 0,
            armed: None,
            driver: None,
            closed: false,
            held: None,
        }
    }

    #[inline]
    fn lookup(&self, id: NodeId) -> Option<u32> {
        let k = id.get();
        if k < DENSE_IDS {
            // Every known id below DENSE_IDS is in `dense`.
            return match self.dense.get(k as usize) {
                Some(&i) if i != NO_INDEX => Some(i),
                _ => None,
            };
        }
        self.index.get(&id).copied()
    }

    /// The dense index of `id`, added (with its links) when new.
    fn endpoint(&mut self, id: NodeId) -> u32 {
        if let Some(i) = self.lookup(id) {
            return i;
        }
        let old = self.endpoints.len();
        let new = old + 1;
        let mut links = vec![Link::default(); new * new];
        for from in 0..old {
            links[from * new..from * new + old]
                .copy_from_slice(&self.links[from * old..from * old + old]);
        }
        self.links = links;
        self.endpoints.push(Endpoint {
            id,
            inbox: None,
            down: false,
        });
        let i = u32::try_from(old).unwrap_or(u32::MAX);
        self.index.insert(id, i);
        if id.get() < DENSE_IDS {
            let k = id.get() as usize;
            if self.dense.len() <= k {
                self.dense.resize(k + 1, NO_INDEX);
            }
            self.dense[k] = i;
        }
        self.recompute_links();
        i
    }

    /// Whether a message may currently travel `from -> to` (the rules; the
    /// link table caches the answer).
    fn link_rule(&self, from: NodeId, to: NodeId) -> bool {
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

    fn recompute_links(&mut self) {
        let n = self.endpoints.len();
        for from in 0..n {
            for to in 0..n {
                let open = self.link_rule(self.endpoints[from].id, self.endpoints[to].id);
                self.links[from * n + to].open = open;
            }
        }
    }

    fn is_open(&self, from: u32, to: u32) -> bool {
        let n = self.endpoints.len();
        self.links[from as usize * n + to as usize].open
    }

    fn link(&mut self, from: u32, to: u32) -> &mut Link {
        let n = self.endpoints.len();
        &mut self.links[from as usize * n + to as usize]
    }

    fn control(&self, what: impl FnOnce() -> String) {
        if let Some(t) = &self.trace {
            t.record_control(what());
        }
    }

    /// A message enters the network. Returns whether the driver must be
    /// woken (the message is due before the driver's next wake-up).
    fn send(&mut self, env: Envelope<M>) -> bool {
        let c = &self.stats.inner;
        NetworkStatsHandle::bump(&c.sent);
        let to = match self.lookup(env.to) {
            Some(to) if self.endpoints[to as usize].inbox.is_some() => to,
            _ => {
                NetworkStatsHandle::bump(&c.dropped_down);
                return false;
            }
        };
        let from = match self.lookup(env.from) {
            Some(from) => {
                if self.endpoints[from as usize].down {
                    NetworkStatsHandle::bump(&c.dropped_down);
                    return false;
                }
                from
            }
            None => self.endpoint(env.from),
        };
        let c = &self.stats.inner;
        if !self.is_open(from, to) {
            NetworkStatsHandle::bump(&c.dropped_partition);
            return false;
        }
        if chance(&mut self.rng, self.faults.loss) {
            NetworkStatsHandle::bump(&c.dropped_loss);
            return false;
        }
        let digest = if self.record_deliveries {
            digest(&env.msg)
        } else {
            0
        };
        let now = super::clock::now();
        if self.origin.is_none() {
            // Every delivery time is `now` or later.
            self.origin = Some(now);
        }
        let now = self.nanos(now);
        let at = self.schedule_at(now, from, to);
        let mut earliest = at;
        if chance(&mut self.rng, self.faults.duplicate) {
            NetworkStatsHandle::bump(&self.stats.inner.duplicated);
            let at2 = self.schedule_at(now, from, to);
            earliest = earliest.min(at2);
            self.enqueue(at2, from, to, digest, env.clone());
        }
        self.enqueue(at, from, to, digest, env);
        match self.armed {
            Some(armed) if armed <= earliest => false,
            _ => {
                self.armed = Some(earliest);
                self.driver.is_some()
            }
        }
    }

    /// Delivery time (as a [`Due::at`]) of one copy sent at `now` (also a
    /// [`Due::at`]) on `from -> to`. Works in whole nanoseconds, like the
    /// `Instant` arithmetic it replaces (same draws, same results).
    fn schedule_at(&mut self, now: u64, from: u32, to: u32) -> u64 {
        let f = self.faults;
        let mut at = now.saturating_add(duration_nanos(f.base_delay));
        if !f.jitter.is_zero() {
            let jitter_ns = duration_nanos(f.jitter);
            at = at.saturating_add(self.rng.random_range(0..=jitter_ns));
        }
        if chance(&mut self.rng, f.reorder) {
            NetworkStatsHandle::bump(&self.stats.inner.reordered);
            let window_ns = duration_nanos(f.reorder_window);
            at = at.saturating_add(self.rng.random_range(0..=window_ns));
        } else {
            let link = self.link(from, to);
            at = at.max(link.tail);
            link.tail = at;
        }
        at
    }

    #[inline]
    fn enqueue(&mut self, at: u64, from: u32, to: u32, digest: u64, env: Envelope<M>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let copy = Some(Scheduled {
            from,
            to,
            digest,
            env,
        });
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot as usize] = copy;
                slot
            }
            None => {
                self.slots.push(copy);
                // Slots never exceed the copies in flight at once.
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.queue.push(Due { at, seq, slot });
    }

    /// `at` as a [`Due::at`] (0 before the origin is set by the first
    /// message sent, or for an earlier instant).
    #[inline]
    fn nanos(&mut self, at: Instant) -> u64 {
        let Some(origin) = self.origin else {
            return 0;
        };
        // Many sends and the wake-up share one instant: convert it once.
        if let Some((last, ns)) = self.last_nanos {
            if last == at {
                return ns;
            }
        }
        let ns = duration_nanos(at.saturating_duration_since(origin));
        self.last_nanos = Some((at, ns));
        ns
    }

    /// The instant of a [`Due::at`].
    fn instant(&self, at: u64) -> Option<Instant> {
        self.origin.map(|o| o + Duration::from_nanos(at))
    }

    /// The delivery time of the earliest copy in flight (as a [`Due::at`]
    /// and as an instant).
    fn next_due(&self) -> Option<(u64, Instant)> {
        let at = self.queue.peek()?.at;
        Some((at, self.instant(at)?))
    }

    /// Delivers every copy due at or before `now`, in order.
    fn deliver_due(&mut self, now: Instant) {
        if self.queue.is_empty() {
            return;
        }
        let now_ns = self.nanos(now);
        // The trace is locked (and `now` converted) once per wake-up, when
        // the first copy is delivered, not once per copy.
        let mut recorder: Option<DeliveryRecorder<'_>> = None;
        while self.queue.peek().is_some_and(|d| d.at <= now_ns) {
            let Some(due) = self.queue.pop() else {
                break;
            };
            let copy = self.slots.get_mut(due.slot as usize).and_then(Option::take);
            self.free_slots.push(due.slot);
            if let Some(s) = copy {
                Self::deliver(
                    &self.stats,
                    &self.endpoints,
                    &self.links,
                    self.record_deliveries
                        .then_some(self.trace.as_ref())
                        .flatten(),
                    &mut recorder,
                    now,
                    s,
                );
            }
        }
    }

    fn deliver<'t>(
        stats: &NetworkStatsHandle,
        endpoints: &[Endpoint<M>],
        links: &[Link],
        trace: Option<&'t TraceHandle>,
        recorder: &mut Option<DeliveryRecorder<'t>>,
        now: Instant,
        s: Scheduled<M>,
    ) {
        let c = &stats.inner;
        let n = endpoints.len();
        if !links[s.from as usize * n + s.to as usize].open {
            NetworkStatsHandle::bump(&c.dropped_partition);
            return;
        }
        let Some(inbox) = &endpoints[s.to as usize].inbox else {
            NetworkStatsHandle::bump(&c.dropped_down);
            return;
        };
        if !inbox.connected() {
            NetworkStatsHandle::bump(&c.dropped_down);
            return;
        }
        if let Some(t) = trace {
            recorder
                .get_or_insert_with(|| t.deliveries_at(now))
                .record(s.env.from, s.env.to, s.digest);
        }
        NetworkStatsHandle::bump(&c.delivered);
        inbox.do_send(s.env);
    }

    fn register(&mut self, node: NodeId, inbox: Recipient<Envelope<M>>) {
        let i = self.endpoint(node) as usize;
        let e = &mut self.endpoints[i];
        e.down = false;
        e.inbox = Some(inbox);
    }

    fn deregister(&mut self, node: NodeId) {
        let i = self.endpoint(node) as usize;
        let e = &mut self.endpoints[i];
        e.down = true;
        e.inbox = None;
    }

    fn set_faults(&mut self, faults: NetworkFaults) -> Result<(), NetworkError> {
        faults.validate()?;
        self.faults = faults;
        self.control(|| format!("faults {faults:?}"));
        Ok(())
    }

    fn partition(&mut self, groups: &[Vec<NodeId>]) -> Result<(), NetworkError> {
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
        self.recompute_links();
        self.control(|| format!("partition {groups:?}"));
        Ok(())
    }

    fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
        self.recompute_links();
        self.control(|| format!("block {from}->{to}"));
    }

    fn unblock(&mut self, from: NodeId, to: NodeId) {
        self.blocked.remove(&(from, to));
        self.recompute_links();
        self.control(|| format!("unblock {from}->{to}"));
    }

    fn isolate(&mut self, node: NodeId) {
        self.isolated.insert(node);
        self.recompute_links();
        self.control(|| format!("isolate {node}"));
    }

    fn heal(&mut self) {
        self.groups = None;
        self.blocked.clear();
        self.isolated.clear();
        self.recompute_links();
        self.control(|| "heal".to_owned());
    }
}

/// A handle on a network's shared state: what ports and the simulation use
/// to act on the network without going through the actor's mailbox.
pub(crate) struct NetHandle<M: Wire>(Arc<Mutex<Core<M>>>);

impl<M: Wire> Clone for NetHandle<M> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<M: Wire> NetHandle<M> {
    fn lock(&self) -> MutexGuard<'_, Core<M>> {
        // Only the simulation's thread takes the lock and no code that can
        // panic half-way through an update runs under it: keep going.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message enters the network (as if the actor handled it), or waits
    /// for [`release`](Self::release) while the network is held.
    #[inline]
    pub(crate) fn send(&self, env: Envelope<M>) {
        let mut core = self.lock();
        if let Some(held) = &mut core.held {
            held.push(env);
            return;
        }
        if core.send(env) {
            if let Some(w) = &core.driver {
                w.wake_by_ref();
            }
        }
    }

    /// Holds what ports send until [`release`](Self::release), while nodes
    /// are launched: a node may send from its start, before it and its
    /// peers are registered (a port actor's mailbox held such messages until
    /// the launch was over). Returns false when already held (the caller
    /// then leaves the release to whoever held it).
    pub(crate) fn hold(&self) -> bool {
        let mut core = self.lock();
        if core.held.is_some() {
            return false;
        }
        core.held = Some(Vec::new());
        true
    }

    /// Lets the messages held since [`hold`](Self::hold) enter the network,
    /// in the order they were sent.
    pub(crate) fn release(&self) {
        let mut core = self.lock();
        let Some(held) = core.held.take() else {
            return;
        };
        let mut wake = false;
        for env in held {
            wake |= core.send(env);
        }
        if wake {
            if let Some(w) = &core.driver {
                w.wake_by_ref();
            }
        }
    }

    /// See [`RegisterNode`].
    pub(crate) fn register(&self, node: NodeId, inbox: Recipient<Envelope<M>>) {
        self.lock().register(node, inbox);
    }

    /// See [`DeregisterNode`].
    pub(crate) fn deregister(&self, node: NodeId) {
        self.lock().deregister(node);
    }

    /// See [`SetFaults`].
    pub(crate) fn set_faults(&self, faults: NetworkFaults) -> Result<(), NetworkError> {
        self.lock().set_faults(faults)
    }

    /// See [`Partition`].
    pub(crate) fn partition(&self, groups: &[Vec<NodeId>]) -> Result<(), NetworkError> {
        self.lock().partition(groups)
    }

    /// See [`BlockLink`].
    pub(crate) fn block(&self, from: NodeId, to: NodeId) {
        self.lock().block(from, to);
    }

    /// See [`UnblockLink`].
    pub(crate) fn unblock(&self, from: NodeId, to: NodeId) {
        self.lock().unblock(from, to);
    }

    /// See [`Isolate`].
    pub(crate) fn isolate(&self, node: NodeId) {
        self.lock().isolate(node);
    }

    /// See [`Heal`].
    pub(crate) fn heal(&self) {
        self.lock().heal();
    }

    fn close(&self) {
        let mut core = self.lock();
        core.closed = true;
        if let Some(w) = core.driver.take() {
            w.wake();
        }
    }
}

/// The task that delivers messages when they are due: one tokio sleep,
/// moved to the earliest delivery time whenever that changes, instead of a
/// timer per message or per wake-up.
struct Driver<M: Wire> {
    net: NetHandle<M>,
    sleep: Pin<Box<Sleep>>,
    sleep_at: Option<Instant>,
}

impl<M: Wire> Future for Driver<M> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = self.get_mut();
        let mut core = this.net.lock();
        loop {
            if core.closed {
                return Poll::Ready(());
            }
            let now = super::clock::now();
            core.deliver_due(now);
            let Some((next_ns, next)) = core.next_due() else {
                core.armed = None;
                store_waker(&mut core.driver, cx);
                return Poll::Pending;
            };
            if this.sleep_at != Some(next) {
                this.sleep.as_mut().reset(next);
                this.sleep_at = Some(next);
            }
            if this.sleep.as_mut().poll(cx).is_ready() {
                // tokio fires a sleep at or after its deadline (rounded up
                // to the millisecond), so `next` is due now.
                this.sleep_at = None;
                continue;
            }
            core.armed = Some(next_ns);
            store_waker(&mut core.driver, cx);
            return Poll::Pending;
        }
    }
}

fn store_waker(slot: &mut Option<Waker>, cx: &TaskContext<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The simulated network actor. See the [module docs](self) for the model.
pub struct SimNetwork<M: Wire> {
    net: NetHandle<M>,
    stats: NetworkStatsHandle,
}

impl<M: Wire> Actor for SimNetwork<M> {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        let driver = Driver {
            net: self.net.clone(),
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            sleep_at: None,
        };
        // On the current thread's LocalSet, like the actor itself.
        actix::spawn(driver);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.net.close();
    }
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
        let core = Core::new(rng, faults, trace);
        let stats = core.stats.clone();
        Ok(Self {
            net: NetHandle(Arc::new(Mutex::new(core))),
            stats,
        })
    }

    /// The live counters (take it before starting the actor).
    pub fn stats_handle(&self) -> NetworkStatsHandle {
        self.stats.clone()
    }

    /// The shared state, for ports and the simulation (take it before
    /// starting the actor).
    pub(crate) fn handle(&self) -> NetHandle<M> {
        self.net.clone()
    }
}

impl<M: Wire> Handler<Envelope<M>> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, env: Envelope<M>, _: &mut Context<Self>) {
        self.net.send(env);
    }
}

impl<M: Wire> Handler<RegisterNode<M>> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, msg: RegisterNode<M>, _: &mut Context<Self>) {
        self.net.register(msg.node, msg.inbox);
    }
}

impl<M: Wire> Handler<DeregisterNode> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, msg: DeregisterNode, _: &mut Context<Self>) {
        self.net.deregister(msg.node);
    }
}

impl<M: Wire> Handler<SetFaults> for SimNetwork<M> {
    type Result = Result<(), NetworkError>;

    fn handle(&mut self, SetFaults(faults): SetFaults, _: &mut Context<Self>) -> Self::Result {
        self.net.set_faults(faults)
    }
}

impl<M: Wire> Handler<Partition> for SimNetwork<M> {
    type Result = Result<(), NetworkError>;

    fn handle(&mut self, Partition(groups): Partition, _: &mut Context<Self>) -> Self::Result {
        self.net.partition(&groups)
    }
}

impl<M: Wire> Handler<BlockLink> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, BlockLink { from, to }: BlockLink, _: &mut Context<Self>) {
        self.net.block(from, to);
    }
}

impl<M: Wire> Handler<UnblockLink> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, UnblockLink { from, to }: UnblockLink, _: &mut Context<Self>) {
        self.net.unblock(from, to);
    }
}

impl<M: Wire> Handler<Isolate> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, Isolate(node): Isolate, _: &mut Context<Self>) {
        self.net.isolate(node);
    }
}

impl<M: Wire> Handler<Heal> for SimNetwork<M> {
    type Result = ();

    fn handle(&mut self, _: Heal, _: &mut Context<Self>) {
        self.net.heal();
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

/// A simulated node's port as an [`EnvelopeSink`]: it does what a
/// [`SimPort`] does (restamps the sender, forwards nothing once closed) and
/// hands each envelope straight to the network's state as it is sent, so a
/// message costs no mailbox hop to enter the network.
pub(crate) struct DirectPort<M: Wire> {
    node: NodeId,
    net: NetHandle<M>,
    closed: Arc<AtomicBool>,
    /// Keeps the network actor (and so its delivery task) alive as long as
    /// a port can send, as a port sending through its mailbox does.
    _keep_alive: Recipient<Envelope<M>>,
}

impl<M: Wire> DirectPort<M> {
    /// A port for `node` entering the network behind `net`, with the switch
    /// that closes it. `network` is that network actor's recipient, held to
    /// keep the actor alive.
    pub(crate) fn new(
        node: NodeId,
        net: NetHandle<M>,
        network: Recipient<Envelope<M>>,
    ) -> (Self, PortSwitch) {
        let switch = PortSwitch::default();
        (
            Self {
                node,
                net,
                closed: switch.0.clone(),
                _keep_alive: network,
            },
            switch,
        )
    }
}

impl<M: Wire> EnvelopeSink<M> for DirectPort<M> {
    fn send(&self, mut env: Envelope<M>) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        if env.from != self.node {
            tracing::warn!(port = %self.node, from = %env.from, "envelope with a foreign sender restamped");
            env.from = self.node;
        }
        self.net.send(env);
    }
}
