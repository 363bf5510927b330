//! [`FaultSchedule`]: a protocol-agnostic nemesis that, driven by its own
//! stream of the simulation seed, crashes and restarts nodes, cuts and heals
//! links, varies the network's fault rates and fails nodes' disks over a
//! run.
//!
//! # Disk faults
//!
//! [`FaultKind::Disk`] (only with a hook, see
//! [`FaultSchedule::with_disk_hook`]) makes the next sync of a running
//! node's store fail, the write it was making durable either torn (lost)
//! or landed (durable anyway), drawn from the nemesis's stream: the hook
//! arms the store, typically with
//! [`MemStorage::fail_next_sync`](crate::storage::MemStorage::fail_next_sync).
//! A node whose sync fails must stop without acknowledging anything that
//! depended on it (as a real process exits on a failed `fsync`); at the
//! nemesis's next step the node is crashed (the process is gone, and its
//! store drops what the failure did not make durable) and counts as down
//! until a later `Restart`.
//!
//! # Partial connectivity
//!
//! [`FaultKind::QuorumLoss`], [`FaultKind::Constrained`] and
//! [`FaultKind::Chained`] set up the three partial-connectivity scenarios of
//! OmniPaxos (Ng et al., "OmniPaxos: Breaking the Barriers of Partial
//! Connectivity", EuroSys 2023), in which every node is up and most links
//! work, yet Raft-family protocols can stall or livelock:
//!
//! - **quorum-loss**: one node, the *hub*, stays connected to every other
//!   node; every link not touching the hub is cut (both ways). The leader
//!   (when the [leader hook](FaultSchedule::with_leader_hook) names one, it
//!   is never the hub) loses its quorum; only the hub is quorum-connected.
//! - **constrained**: first the hub is isolated for one pause (so its log
//!   falls behind while the others commit), then the quorum-loss topology is
//!   set up around that outdated hub, with the old leader cut off from the
//!   hub as well (so nobody brings the hub up to date): the only
//!   quorum-connected node cannot win an election that requires an
//!   up-to-date log.
//! - **chained**: only the links between the leader and one other node are
//!   cut; that node still hears the rest, which still hear the leader.
//!
//! A scenario is held for [`FaultSchedule::scenario_hold`] of virtual time,
//! then the nemesis heals the network. While one is set up, the nemesis
//! draws no other network change (partition, link cut, isolation, heal),
//! so crashes, panics, disk faults and fault rates still mix with it but the
//! topology stays the scenario's.

use super::network::NetworkFaults;
use super::rng::nemesis_rng;
use super::simulation::{NodeFactory, SimError, Simulation};
use crate::storage::SyncFailure;
use crate::transport::Wire;
use crate::types::NodeId;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Duration;

/// The kinds of fault a [`FaultSchedule`] chooses among.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// Crash a running node (at most `max_down` down at once).
    Crash,
    /// Restart a crashed node.
    Restart,
    /// Split the members into two groups.
    Partition,
    /// Cut one directed link.
    OneWay,
    /// Cut every link of one node.
    Isolate,
    /// Remove every partition, block and isolation.
    Heal,
    /// Draw new fault rates (loss, duplication, reordering, jitter).
    Faults,
    /// Call the panic hook on a running node (only with a hook).
    Panic,
    /// Fail the next sync of a running node's store (only with a hook, see
    /// [`FaultSchedule::with_disk_hook`]); the write is torn or landed, drawn
    /// from the nemesis's stream. The node must stop without acknowledging
    /// anything that depended on that sync; the nemesis crashes it at its
    /// next step (the process is gone) and counts it down until a
    /// `Restart`.
    Disk,
    /// Set up the quorum-loss scenario (see the module docs), held for
    /// [`FaultSchedule::scenario_hold`].
    QuorumLoss,
    /// Set up the constrained-election scenario (see the module docs): the
    /// hub is isolated first, then made the only quorum-connected node.
    Constrained,
    /// Set up the chained scenario (see the module docs): the leader and
    /// one other node cannot reach each other.
    Chained,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Crash,
        FaultKind::Restart,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Isolate,
        FaultKind::Heal,
        FaultKind::Faults,
        FaultKind::Panic,
        FaultKind::Disk,
        FaultKind::QuorumLoss,
        FaultKind::Constrained,
        FaultKind::Chained,
    ];

    /// Whether this kind sets up a partial-connectivity scenario.
    pub const fn is_scenario(self) -> bool {
        matches!(
            self,
            FaultKind::QuorumLoss | FaultKind::Constrained | FaultKind::Chained
        )
    }

    /// Whether this kind changes which links work (and so must wait while
    /// a scenario is held).
    const fn changes_links(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::OneWay | FaultKind::Isolate | FaultKind::Heal
        ) || self.is_scenario()
    }
}

/// One stage of a partial-connectivity scenario (see the module docs),
/// with the roles the nemesis drew for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scenario {
    /// Quorum-loss: every link not touching `hub` is cut.
    QuorumLoss {
        /// The one node connected to all others.
        hub: NodeId,
        /// The leader when the scenario was set up, if known.
        leader: Option<NodeId>,
    },
    /// First stage of the constrained election: `hub` is isolated so that
    /// its log falls behind.
    ConstrainedLag {
        /// The node that will be the outdated hub.
        hub: NodeId,
    },
    /// Constrained election: the quorum-loss topology around the outdated
    /// `hub`, and `leader` cut off from the hub.
    Constrained {
        /// The one node connected to all others, with an outdated log.
        hub: NodeId,
        /// The leader when the scenario was set up, if known.
        leader: Option<NodeId>,
    },
    /// Chained: the links between `leader` and `far` are cut both ways.
    Chained {
        /// The leader when the scenario was set up (or a drawn node when no
        /// leader is known).
        leader: NodeId,
        /// The node cut off from it.
        far: NodeId,
    },
}

impl Scenario {
    /// The scenario's command-line name (`quorum-loss`, `constrained`,
    /// `chained`; the lag stage is part of `constrained`).
    pub const fn name(&self) -> &'static str {
        match self {
            Scenario::QuorumLoss { .. } => "quorum-loss",
            Scenario::ConstrainedLag { .. } | Scenario::Constrained { .. } => "constrained",
            Scenario::Chained { .. } => "chained",
        }
    }

    /// Whether this stage is the scenario proper (not a preparation such as
    /// the constrained election's lag stage): the time to resume commits is
    /// measured from it.
    pub const fn is_main_stage(&self) -> bool {
        !matches!(self, Scenario::ConstrainedLag { .. })
    }

    /// The directed links this stage cuts, sorted, among `members`.
    pub fn blocked_links(&self, members: &[NodeId]) -> Vec<(NodeId, NodeId)> {
        let mut cut = Vec::new();
        for &a in members {
            for &b in members {
                if a == b {
                    continue;
                }
                let blocked = match *self {
                    Scenario::QuorumLoss { hub, .. } => a != hub && b != hub,
                    // As quorum-loss, and the old leader is cut off from the
                    // hub too, so that nobody can bring the hub's log up to
                    // date.
                    Scenario::Constrained { hub, leader } => {
                        (a != hub && b != hub)
                            || leader.is_some_and(|l| (a, b) == (l, hub) || (a, b) == (hub, l))
                    }
                    Scenario::ConstrainedLag { hub } => a == hub || b == hub,
                    Scenario::Chained { leader, far } => {
                        (a == leader && b == far) || (a == far && b == leader)
                    }
                };
                if blocked {
                    cut.push((a, b));
                }
            }
        }
        cut.sort_unstable();
        cut
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let leader =
            |l: &Option<NodeId>| l.map_or_else(|| "unknown".to_string(), |l| l.to_string());
        match self {
            Scenario::QuorumLoss { hub, leader: l } => {
                write!(f, "quorum-loss (hub {hub}, leader {})", leader(l))
            }
            Scenario::ConstrainedLag { hub } => write!(f, "constrained: {hub} falls behind"),
            Scenario::Constrained { hub, leader: l } => {
                write!(f, "constrained (outdated hub {hub}, leader {})", leader(l))
            }
            Scenario::Chained { leader, far } => write!(f, "chained (leader {leader}, far {far})"),
        }
    }
}

/// One fault, as applied to a simulation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaultAction {
    /// Crash a node.
    Crash(NodeId),
    /// Restart a crashed node.
    Restart(NodeId),
    /// Partition into these groups.
    Partition(Vec<Vec<NodeId>>),
    /// Cut the directed link `from -> to`.
    BlockLink {
        /// Sender side.
        from: NodeId,
        /// Receiver side.
        to: NodeId,
    },
    /// Cut every link of a node.
    Isolate(NodeId),
    /// Heal the network.
    Heal,
    /// Set new fault rates.
    SetFaults(NetworkFaults),
    /// Panic a component of a node (through the hook).
    Panic(NodeId),
    /// Fail the next sync of a node's store (through the hook); the node is
    /// crashed at the nemesis's next step.
    DiskFailure {
        /// Whose disk.
        node: NodeId,
        /// What the failed sync leaves of its writes.
        outcome: SyncFailure,
    },
    /// Set up one stage of a partial-connectivity scenario: heal, then cut
    /// exactly `blocked` (directed links).
    Connectivity {
        /// The scenario stage and its roles.
        scenario: Scenario,
        /// The directed links cut, `(from, to)`.
        blocked: Vec<(NodeId, NodeId)>,
    },
}

/// A fault applied at a virtual time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// Virtual time since the simulation started.
    pub at: Duration,
    /// What was done.
    pub action: FaultAction,
}

/// A random fault schedule (nemesis). Every `U[min_interval, max_interval]`
/// of virtual time it picks one applicable kind by weight and applies it.
/// Protocol-agnostic: "panic a component" is a user hook.
pub struct FaultSchedule {
    /// Shortest pause between two faults.
    pub min_interval: Duration,
    /// Longest pause between two faults.
    pub max_interval: Duration,
    /// At most this many nodes down at once (e.g. a minority).
    pub max_down: usize,
    /// Relative weight of each kind (missing or 0: never chosen).
    pub weights: BTreeMap<FaultKind, u32>,
    /// Upper bounds of drawn fault rates: loss, duplicate, reorder and jitter
    /// are drawn uniformly up to these; base delay and reorder window are
    /// taken as they are.
    pub max_faults: NetworkFaults,
    /// How long a partial-connectivity scenario is held before the nemesis
    /// heals the network (default 5 s).
    pub scenario_hold: Duration,
    panic_hook: Option<Box<dyn FnMut(NodeId)>>,
    disk_hook: Option<Box<dyn FnMut(NodeId, SyncFailure)>>,
    leader_hook: Option<Box<dyn FnMut() -> Option<NodeId>>>,
    /// Nodes whose disk failed, to crash at the next step.
    disk_failed: BTreeSet<NodeId>,
    /// The scenario being held, and until when (virtual time since start).
    held: Option<HeldScenario>,
    rng: Option<ChaCha8Rng>,
}

/// A scenario stage the nemesis is holding.
#[derive(Clone, Copy, Debug)]
struct HeldScenario {
    scenario: Scenario,
    until: Duration,
}

impl FaultSchedule {
    /// Every kind but `Panic`, `Disk` and the partial-connectivity
    /// scenarios with weight 1, a fault every 0.5 to 3 s, `max_down` nodes
    /// down at most, loss and duplication up to 10 %, reordering up to
    /// 20 %, jitter up to 5 ms.
    pub fn new(max_down: usize) -> Self {
        let weights = FaultKind::ALL
            .iter()
            .map(|&k| {
                let default = k != FaultKind::Panic && k != FaultKind::Disk && !k.is_scenario();
                (k, u32::from(default))
            })
            .collect();
        Self {
            min_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(3),
            max_down,
            weights,
            max_faults: NetworkFaults {
                jitter: Duration::from_millis(5),
                loss: 0.1,
                duplicate: 0.1,
                reorder: 0.2,
                ..NetworkFaults::none()
            },
            scenario_hold: Duration::from_secs(5),
            panic_hook: None,
            disk_hook: None,
            leader_hook: None,
            disk_failed: BTreeSet::new(),
            held: None,
            rng: None,
        }
    }

    /// Installs the hook that names the current leader, if any (for
    /// example from a [`ClusterObserver`](crate::observer::ClusterObserver)).
    /// The partial-connectivity scenarios aim at it; without a hook, or
    /// while no leader is known, they draw their roles from the seed alone.
    #[must_use]
    pub fn with_leader_hook(mut self, hook: impl FnMut() -> Option<NodeId> + 'static) -> Self {
        self.leader_hook = Some(Box::new(hook));
        self
    }

    /// Sets how long a partial-connectivity scenario is held.
    #[must_use]
    pub fn with_scenario_hold(mut self, hold: Duration) -> Self {
        self.scenario_hold = hold;
        self
    }

    /// Only these kinds, weight 1 each.
    #[must_use]
    pub fn only(mut self, kinds: &[FaultKind]) -> Self {
        self.weights = kinds.iter().map(|&k| (k, 1)).collect();
        self
    }

    /// Sets the weight of one kind.
    #[must_use]
    pub fn with_weight(mut self, kind: FaultKind, weight: u32) -> Self {
        self.weights.insert(kind, weight);
        self
    }

    /// Sets the pause between faults.
    #[must_use]
    pub fn with_interval(mut self, min: Duration, max: Duration) -> Self {
        self.min_interval = min;
        self.max_interval = max.max(min);
        self
    }

    /// Installs the hook that panics a component of a node, and gives
    /// `Panic` weight 1 if it had none.
    #[must_use]
    pub fn with_panic_hook(mut self, hook: impl FnMut(NodeId) + 'static) -> Self {
        self.panic_hook = Some(Box::new(hook));
        let w = self.weights.entry(FaultKind::Panic).or_insert(0);
        if *w == 0 {
            *w = 1;
        }
        self
    }

    /// Installs the hook that makes the next sync of a node's store fail
    /// with the given outcome (see [`FaultKind::Disk`]), and gives
    /// `Disk` weight 1 if it had none.
    #[must_use]
    pub fn with_disk_hook(mut self, hook: impl FnMut(NodeId, SyncFailure) + 'static) -> Self {
        self.disk_hook = Some(Box::new(hook));
        let w = self.weights.entry(FaultKind::Disk).or_insert(0);
        if *w == 0 {
            *w = 1;
        }
        self
    }

    /// Picks the next fault for a cluster of `members` of which `up` are
    /// running, or `None` when no kind applies. A scenario is aimed at
    /// `leader` when one is given.
    pub fn pick(
        &self,
        rng: &mut ChaCha8Rng,
        members: &[NodeId],
        up: &[NodeId],
    ) -> Option<FaultAction> {
        self.pick_with(rng, members, up, None)
    }

    fn pick_with(
        &self,
        rng: &mut ChaCha8Rng,
        members: &[NodeId],
        up: &[NodeId],
        leader: Option<NodeId>,
    ) -> Option<FaultAction> {
        let holding = self.held.is_some();
        let down: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|n| !up.contains(n))
            .collect();
        let applicable = |k: FaultKind| match k {
            FaultKind::Crash => !up.is_empty() && down.len() < self.max_down,
            FaultKind::Restart => !down.is_empty(),
            FaultKind::Partition | FaultKind::OneWay => members.len() >= 2,
            FaultKind::Isolate => !members.is_empty(),
            FaultKind::Heal | FaultKind::Faults => true,
            FaultKind::Panic => self.panic_hook.is_some() && !up.is_empty(),
            // The node goes down: within the same budget as a crash.
            FaultKind::Disk => {
                self.disk_hook.is_some() && !up.is_empty() && down.len() < self.max_down
            }
            // Every scenario needs a hub or a far node besides the leader.
            FaultKind::QuorumLoss | FaultKind::Constrained => members.len() >= 3,
            FaultKind::Chained => members.len() >= 2,
        };
        let choices: Vec<(FaultKind, u32)> = self
            .weights
            .iter()
            .filter(|&(&k, &w)| w > 0 && applicable(k) && !(holding && k.changes_links()))
            .map(|(&k, &w)| (k, w))
            .collect();
        let total: u64 = choices.iter().map(|&(_, w)| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let mut roll = rng.random_range(0..total);
        let mut kind = choices[0].0;
        for &(k, w) in &choices {
            if roll < u64::from(w) {
                kind = k;
                break;
            }
            roll -= u64::from(w);
        }
        let one_of = |rng: &mut ChaCha8Rng, v: &[NodeId]| v[rng.random_range(0..v.len())];
        Some(match kind {
            FaultKind::Crash => FaultAction::Crash(one_of(rng, up)),
            FaultKind::Restart => FaultAction::Restart(one_of(rng, &down)),
            FaultKind::Partition => {
                let mut shuffled = members.to_vec();
                shuffled.shuffle(rng);
                let cut = rng.random_range(1..shuffled.len());
                let (a, b) = shuffled.split_at(cut);
                let (mut a, mut b) = (a.to_vec(), b.to_vec());
                a.sort_unstable();
                b.sort_unstable();
                FaultAction::Partition(vec![a, b])
            }
            FaultKind::OneWay => {
                let from = rng.random_range(0..members.len());
                let mut to = rng.random_range(0..members.len() - 1);
                if to >= from {
                    to += 1;
                }
                FaultAction::BlockLink {
                    from: members[from],
                    to: members[to],
                }
            }
            FaultKind::Isolate => FaultAction::Isolate(one_of(rng, members)),
            FaultKind::Heal => FaultAction::Heal,
            FaultKind::Faults => {
                let m = self.max_faults;
                let jitter_ns = u64::try_from(m.jitter.as_nanos()).unwrap_or(u64::MAX);
                let mut p = |max: f64| {
                    if max > 0.0 {
                        rng.random_range(0.0..=max)
                    } else {
                        0.0
                    }
                };
                let loss = p(m.loss);
                let duplicate = p(m.duplicate);
                let reorder = p(m.reorder);
                FaultAction::SetFaults(NetworkFaults {
                    base_delay: m.base_delay,
                    jitter: Duration::from_nanos(rng.random_range(0..=jitter_ns)),
                    loss,
                    duplicate,
                    reorder,
                    reorder_window: m.reorder_window,
                })
            }
            FaultKind::Panic => FaultAction::Panic(one_of(rng, up)),
            FaultKind::Disk => FaultAction::DiskFailure {
                node: one_of(rng, up),
                outcome: if rng.random_bool(0.5) {
                    SyncFailure::Torn
                } else {
                    SyncFailure::Landed
                },
            },
            FaultKind::QuorumLoss | FaultKind::Constrained | FaultKind::Chained => {
                let leader = leader.filter(|l| members.contains(l));
                // Anyone but the leader (the hub, or the node cut off from it).
                let others: Vec<NodeId> = members
                    .iter()
                    .copied()
                    .filter(|&n| Some(n) != leader)
                    .collect();
                let other = one_of(rng, &others);
                let scenario = match kind {
                    FaultKind::QuorumLoss => Scenario::QuorumLoss { hub: other, leader },
                    FaultKind::Constrained => Scenario::ConstrainedLag { hub: other },
                    _ => {
                        let leader = match leader {
                            Some(l) => l,
                            None => {
                                let rest: Vec<NodeId> =
                                    others.iter().copied().filter(|&n| n != other).collect();
                                one_of(rng, &rest)
                            }
                        };
                        Scenario::Chained { leader, far: other }
                    }
                };
                FaultAction::Connectivity {
                    blocked: scenario.blocked_links(members),
                    scenario,
                }
            }
        })
    }

    /// What the nemesis must do now because of the scenario it holds: heal
    /// once the hold is over, or move the constrained election from its
    /// lag stage to the scenario proper. `None` when nothing is due.
    fn scenario_step(
        &mut self,
        now: Duration,
        members: &[NodeId],
        leader: Option<NodeId>,
    ) -> Option<FaultAction> {
        let held = self.held?;
        if let Scenario::ConstrainedLag { hub } = held.scenario {
            let leader = leader.filter(|&l| l != hub);
            let scenario = Scenario::Constrained { hub, leader };
            return Some(FaultAction::Connectivity {
                blocked: scenario.blocked_links(members),
                scenario,
            });
        }
        (now >= held.until).then_some(FaultAction::Heal)
    }

    /// Applies one fault to `sim`.
    pub fn apply<M: Wire, F: NodeFactory<M>>(
        &mut self,
        sim: &mut Simulation<M, F>,
        action: &FaultAction,
    ) -> Result<(), SimError> {
        match action {
            FaultAction::Crash(n) => sim.crash(*n),
            FaultAction::Restart(n) => sim.restart(*n).map(|_| ()),
            FaultAction::Partition(groups) => sim.partition(groups.clone()),
            FaultAction::BlockLink { from, to } => {
                sim.block_link(*from, *to);
                Ok(())
            }
            FaultAction::Isolate(n) => {
                sim.isolate(*n);
                Ok(())
            }
            FaultAction::Heal => {
                sim.heal();
                Ok(())
            }
            FaultAction::SetFaults(f) => sim.set_faults(*f),
            FaultAction::Panic(n) => {
                let hook = self.panic_hook.as_mut().ok_or(SimError::NoPanicHook(*n))?;
                sim.trace().record_control(format!("panic {n}"));
                hook(*n);
                Ok(())
            }
            FaultAction::DiskFailure { node, outcome } => {
                let hook = self.disk_hook.as_mut().ok_or(SimError::NoDiskHook(*node))?;
                sim.trace()
                    .record_control(format!("disk failure {node} {outcome:?}"));
                hook(*node, *outcome);
                self.disk_failed.insert(*node);
                Ok(())
            }
            FaultAction::Connectivity { scenario, blocked } => {
                sim.heal();
                sim.trace().record_control(format!("scenario {scenario}"));
                for &(from, to) in blocked {
                    sim.block_link(from, to);
                }
                Ok(())
            }
        }
    }

    /// Tracks the scenario being held after `action` was applied at `now`.
    fn note_applied(&mut self, action: &FaultAction, now: Duration) {
        match action {
            FaultAction::Connectivity { scenario, .. } => {
                self.held = Some(HeldScenario {
                    scenario: *scenario,
                    until: now + self.scenario_hold,
                });
            }
            FaultAction::Heal => self.held = None,
            _ => {}
        }
    }

    /// Crashes the nodes whose disk failed since the last step (their
    /// process stopped on the failed sync) and returns the crashes.
    pub fn crash_disk_failed<M: Wire, F: NodeFactory<M>>(
        &mut self,
        sim: &mut Simulation<M, F>,
    ) -> Vec<FaultEvent> {
        let mut events = Vec::new();
        for node in std::mem::take(&mut self.disk_failed) {
            if sim.is_up(node) && sim.crash(node).is_ok() {
                events.push(FaultEvent {
                    at: sim.now(),
                    action: FaultAction::Crash(node),
                });
            }
        }
        events
    }

    /// Runs the schedule on `sim` for `duration` of virtual time and returns
    /// the faults applied. The cluster is left as the last fault left it:
    /// call [`Simulation::recover`] to heal it. Calling `run` again continues
    /// the same random stream.
    pub async fn run<M: Wire, F: NodeFactory<M>>(
        &mut self,
        sim: &mut Simulation<M, F>,
        duration: Duration,
    ) -> Vec<FaultEvent> {
        let mut rng = self.rng.take().unwrap_or_else(|| nemesis_rng(sim.seed()));
        let end = sim.now() + duration;
        let mut events = Vec::new();
        loop {
            let min_ns = u64::try_from(self.min_interval.as_nanos()).unwrap_or(u64::MAX);
            let max_ns = u64::try_from(self.max_interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(min_ns);
            // At least 1 ms, so the loop always moves virtual time forward.
            let pause = Duration::from_nanos(rng.random_range(min_ns..=max_ns))
                .max(Duration::from_millis(1));
            let now = sim.now();
            if now + pause >= end {
                sim.run_for(end.saturating_sub(now)).await;
                events.extend(self.crash_disk_failed(sim));
                break;
            }
            sim.run_for(pause).await;
            events.extend(self.crash_disk_failed(sim));
            let members = sim.members();
            let up = sim.up_nodes();
            let leader = self.leader_hook.as_mut().and_then(|hook| hook());
            let due = self.scenario_step(sim.now(), &members, leader);
            let Some(action) = due.or_else(|| self.pick_with(&mut rng, &members, &up, leader))
            else {
                continue;
            };
            match self.apply(sim, &action) {
                Ok(()) => {
                    self.note_applied(&action, sim.now());
                    events.push(FaultEvent {
                        at: sim.now(),
                        action,
                    });
                }
                Err(e) => tracing::warn!(error = %e, ?action, "nemesis: fault not applied"),
            }
        }
        self.rng = Some(rng);
        events
    }
}
