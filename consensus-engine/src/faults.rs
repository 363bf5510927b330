//! Which faults a simulation injects (`--faults none|all|crash,partition,...`)
//! and the [`FaultSchedule`] (nemesis) that injects them.

use crate::error::EngineError;
use crate::plugin::{Capabilities, NodeDirectory};
use consensus_actors::history::{History, Outcome};
use consensus_actors::observer::ClusterObserver;
use consensus_actors::sim::{FaultAction, FaultEvent, FaultKind, FaultSchedule, NetworkFaults};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use tokio::time::Duration;

/// One family of faults the `consensus simulate` command can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Crash nodes (at most a minority at once) and restart them from their
    /// durable state.
    Crash,
    /// Partition the network: two groups, one-way link cuts, isolated nodes;
    /// and heal it.
    Partition,
    /// Lose messages (up to 10 %).
    Loss,
    /// Duplicate messages (up to 10 %).
    Dup,
    /// Reorder messages (up to 20 % held back up to 10 ms) with up to 5 ms
    /// of jitter.
    Reorder,
    /// Make a component of a node panic; its supervisor restarts it.
    Panic,
    /// Fail the next sync of a node's store (the write torn or landed): the
    /// node must stop without acknowledging; it is crashed and later
    /// restarted. Not part of `all` (yet): runs with `all` keep their
    /// trace hashes.
    Disk,
    /// OmniPaxos' quorum-loss scenario: only one node (never the leader)
    /// stays connected to all; every other link is cut. Held 5 s, then
    /// healed. Not part of `all`.
    QuorumLoss,
    /// OmniPaxos' constrained election: a node is isolated until its log
    /// is behind, then made the only quorum-connected node. Not part of
    /// `all`.
    Constrained,
    /// OmniPaxos' chained scenario: the leader and one other node cannot
    /// reach each other; all else works. Not part of `all`.
    Chained,
    /// `--byzantine F` replicas, drawn from the seed, each running a
    /// Byzantine behaviour drawn from the seed (only for protocols with
    /// [`Capabilities::byzantine`]). Not part of `all`.
    Byzantine,
}

impl Fault {
    /// Every fault family, in command-line order.
    pub const ALL: [Fault; 11] = [
        Fault::Crash,
        Fault::Partition,
        Fault::Loss,
        Fault::Dup,
        Fault::Reorder,
        Fault::Panic,
        Fault::Disk,
        Fault::QuorumLoss,
        Fault::Constrained,
        Fault::Chained,
        Fault::Byzantine,
    ];

    /// Whether `all` includes this family (`disk` and the
    /// partial-connectivity scenarios are only run when named, so runs
    /// with `all` keep their trace hashes).
    pub const fn in_all(self) -> bool {
        !matches!(
            self,
            Fault::Disk
                | Fault::QuorumLoss
                | Fault::Constrained
                | Fault::Chained
                | Fault::Byzantine
        )
    }

    /// Whether this family is one of the partial-connectivity scenarios.
    pub const fn is_scenario(self) -> bool {
        matches!(
            self,
            Fault::QuorumLoss | Fault::Constrained | Fault::Chained
        )
    }

    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            Fault::Crash => "crash",
            Fault::Partition => "partition",
            Fault::Loss => "loss",
            Fault::Dup => "dup",
            Fault::Reorder => "reorder",
            Fault::Panic => "panic",
            Fault::Disk => "disk",
            Fault::QuorumLoss => "quorum-loss",
            Fault::Constrained => "constrained",
            Fault::Chained => "chained",
            Fault::Byzantine => "byzantine",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The faults of a run: `none`, `all` (every family the protocol supports),
/// `all` with families it leaves out (`all,byzantine`), or an explicit list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultSelection {
    /// No faults.
    None,
    /// Every family the protocol supports (`panic` only with
    /// [`Capabilities::panic_injection`]), except `disk` and the
    /// partial-connectivity scenarios.
    #[default]
    All,
    /// What `all` injects, plus these families that `all` leaves out
    /// (`disk`, `byzantine`, the partial-connectivity scenarios): written
    /// `all,byzantine`.
    AllAnd(Vec<Fault>),
    /// Exactly these families.
    Only(Vec<Fault>),
}

/// A `--faults` value that cannot be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault {0:?}: expected none, all, or a comma-separated list of all, partition, loss, dup, reorder, panic, disk, quorum-loss, constrained, chained, byzantine")]
pub struct UnknownFault(pub String);

impl FromStr for FaultSelection {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "none" => return Ok(FaultSelection::None),
            "all" => return Ok(FaultSelection::All),
            _ => {}
        }
        let mut faults = Vec::new();
        let mut all = false;
        for part in s.split(',') {
            let part = part.trim().to_ascii_lowercase();
            let fault = match part.as_str() {
                "all" => {
                    all = true;
                    continue;
                }
                "crash" => Fault::Crash,
                "partition" => Fault::Partition,
                "loss" => Fault::Loss,
                "dup" | "duplicate" => Fault::Dup,
                "reorder" => Fault::Reorder,
                "panic" => Fault::Panic,
                "disk" => Fault::Disk,
                "quorum-loss" | "quorum_loss" => Fault::QuorumLoss,
                "constrained" => Fault::Constrained,
                "chained" => Fault::Chained,
                "byzantine" => Fault::Byzantine,
                _ => return Err(UnknownFault(part)),
            };
            if !faults.contains(&fault) {
                faults.push(fault);
            }
        }
        faults.sort_unstable();
        if all {
            // Families `all` already holds add nothing, except `panic`:
            // `all` leaves it out where the protocol cannot inject it, and
            // naming it must then be refused.
            faults.retain(|&f| !f.in_all() || f == Fault::Panic);
            return Ok(if faults.is_empty() {
                FaultSelection::All
            } else {
                FaultSelection::AllAnd(faults)
            });
        }
        Ok(FaultSelection::Only(faults))
    }
}

impl fmt::Display for FaultSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSelection::None => f.write_str("none"),
            FaultSelection::All => f.write_str("all"),
            FaultSelection::Only(list) if list.is_empty() => f.write_str("none"),
            FaultSelection::AllAnd(list) => {
                f.write_str("all")?;
                list.iter().try_for_each(|x| write!(f, ",{}", x.name()))
            }
            FaultSelection::Only(list) => {
                let names: Vec<&str> = list.iter().map(|x| x.name()).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl FaultSelection {
    /// The families named in the selection beyond `all` (everything for an
    /// explicit list, the extras for `all,...`).
    pub fn named(&self) -> &[Fault] {
        match self {
            FaultSelection::None | FaultSelection::All => &[],
            FaultSelection::AllAnd(list) | FaultSelection::Only(list) => list,
        }
    }

    /// The fault families this selection injects for a protocol with
    /// `capabilities`. An explicit `panic` the protocol cannot do is an
    /// error; `all` leaves it out.
    pub fn resolve(&self, capabilities: &Capabilities) -> Result<Vec<Fault>, EngineError> {
        let all = || {
            Fault::ALL
                .iter()
                .copied()
                .filter(|&f| f.in_all())
                .filter(|&f| f != Fault::Panic || capabilities.panic_injection)
        };
        match self {
            FaultSelection::None => Ok(Vec::new()),
            FaultSelection::All => Ok(all().collect()),
            FaultSelection::AllAnd(extra) => {
                let mut list: Vec<Fault> = all().collect();
                list.extend(FaultSelection::Only(extra.clone()).resolve(capabilities)?);
                list.sort_unstable();
                list.dedup();
                Ok(list)
            }
            FaultSelection::Only(list) => {
                if list.contains(&Fault::Panic) && !capabilities.panic_injection {
                    return Err(EngineError::InvalidSetting(
                        "--faults panic: this protocol cannot inject component panics".into(),
                    ));
                }
                if list.contains(&Fault::Byzantine) && !capabilities.byzantine {
                    return Err(EngineError::InvalidSetting(
                        "--faults byzantine: this protocol only tolerates crash faults (try --protocol pbft)".into(),
                    ));
                }
                Ok(list.clone())
            }
        }
    }
}

/// The nemesis for `faults` on a cluster of `nodes`: a fault every 0.5 to
/// 3 s of virtual time, at most a minority down at once. `None` when there
/// is nothing to inject. The partial-connectivity scenarios aim at the
/// leader `observer` knows of.
pub fn schedule_for(
    faults: &[Fault],
    nodes: usize,
    directory: &NodeDirectory,
    observer: &ClusterObserver,
) -> Option<FaultSchedule> {
    let mut kinds = Vec::new();
    let has = |f: Fault| faults.contains(&f);
    if has(Fault::Crash) {
        kinds.extend([FaultKind::Crash, FaultKind::Restart]);
    }
    if has(Fault::Partition) {
        kinds.extend([
            FaultKind::Partition,
            FaultKind::OneWay,
            FaultKind::Isolate,
            FaultKind::Heal,
        ]);
    }
    let rates = has(Fault::Loss) || has(Fault::Dup) || has(Fault::Reorder);
    if rates {
        kinds.push(FaultKind::Faults);
    }
    for (fault, kind) in [
        (Fault::QuorumLoss, FaultKind::QuorumLoss),
        (Fault::Constrained, FaultKind::Constrained),
        (Fault::Chained, FaultKind::Chained),
    ] {
        if has(fault) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() && !has(Fault::Panic) && !has(Fault::Disk) {
        return None;
    }
    let base = NetworkFaults::lan();
    let mut schedule = FaultSchedule::new(nodes.saturating_sub(1) / 2).only(&kinds);
    schedule.max_faults = NetworkFaults {
        base_delay: base.base_delay,
        jitter: if has(Fault::Reorder) {
            Duration::from_millis(5)
        } else {
            base.jitter
        },
        loss: if has(Fault::Loss) { 0.1 } else { 0.0 },
        duplicate: if has(Fault::Dup) { 0.1 } else { 0.0 },
        reorder: if has(Fault::Reorder) { 0.2 } else { 0.0 },
        reorder_window: Duration::from_millis(10),
    };
    if faults.iter().any(|f| f.is_scenario()) {
        let observer = observer.clone();
        schedule = schedule.with_leader_hook(move || observer.current_leader().map(|(n, _)| n));
    }
    if has(Fault::Panic) {
        let directory = directory.clone();
        schedule = schedule.with_panic_hook(move |node| {
            let injected = directory.get(node).is_some_and(|h| h.inject_panic());
            if !injected {
                tracing::debug!(%node, "panic fault: node not running or cannot panic");
            }
        });
    }
    if has(Fault::Disk) {
        let directory = directory.clone();
        schedule = schedule.with_disk_hook(move |node, outcome| {
            let injected = directory
                .get(node)
                .is_some_and(|h| h.fail_next_sync(outcome));
            if !injected {
                tracing::debug!(%node, "disk fault: node not running or its store cannot fail");
            }
        });
    }
    Some(schedule)
}

/// How the cluster fared in one partial-connectivity scenario of a run:
/// how long after it was set up commits resumed, if they did before the
/// nemesis healed the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioOutcome {
    /// `quorum-loss`, `constrained` or `chained`.
    pub scenario: String,
    /// The scenario with its roles (hub, leader, far node).
    pub detail: String,
    /// When it was set up (virtual microseconds since the start).
    pub at_us: u64,
    /// How long it was held before the network healed (or the workload
    /// ended), in virtual microseconds.
    pub held_us: u64,
    /// From set-up to the first acknowledged client operation invoked after
    /// it; `None` when no operation invoked during the scenario was
    /// acknowledged before the heal: commits stalled for the whole hold.
    pub resumed_after_us: Option<u64>,
}

/// The outcome of every partial-connectivity scenario among `events` (the
/// nemesis's faults) in `history`; `end_us` closes a scenario still held
/// when the workload ended.
pub fn scenario_outcomes(
    events: &[FaultEvent],
    history: &History,
    end_us: u64,
) -> Vec<ScenarioOutcome> {
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    // Acknowledged operations as (invoke, complete), by invocation.
    let mut acked: Vec<(u64, u64)> = history
        .operations
        .iter()
        .filter_map(|op| match op.outcome {
            Outcome::Ok { complete_us, .. } => Some((op.invoke_us, complete_us)),
            _ => None,
        })
        .collect();
    acked.sort_unstable();
    let mut outcomes = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let FaultAction::Connectivity { scenario, .. } = &event.action else {
            continue;
        };
        if !scenario.is_main_stage() {
            continue;
        }
        let at = micros(event.at);
        let until = events[i + 1..]
            .iter()
            .find(|e| {
                matches!(
                    e.action,
                    FaultAction::Heal | FaultAction::Connectivity { .. }
                )
            })
            .map_or(end_us, |e| micros(e.at))
            .max(at);
        let first = acked.partition_point(|&(invoke, _)| invoke < at);
        let resumed = acked[first..]
            .iter()
            .filter(|&&(invoke, complete)| invoke < until && complete <= until)
            .map(|&(_, complete)| complete - at)
            .min();
        outcomes.push(ScenarioOutcome {
            scenario: scenario.name().to_string(),
            detail: scenario.to_string(),
            at_us: at,
            held_us: until - at,
            resumed_after_us: resumed,
        });
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus_actors::sim::Scenario;
    use consensus_actors::types::NodeId;

    fn caps(panic: bool) -> Capabilities {
        Capabilities {
            membership: true,
            snapshots: true,
            raft_rpcs: true,
            panic_injection: panic,
            byzantine: false,
            log_positions: true,
        }
    }

    #[test]
    fn parses_none_all_and_lists() {
        assert_eq!("none".parse(), Ok(FaultSelection::None));
        assert_eq!("ALL".parse(), Ok(FaultSelection::All));
        assert_eq!(
            "reorder, crash,crash,dup".parse(),
            Ok(FaultSelection::Only(vec![
                Fault::Crash,
                Fault::Dup,
                Fault::Reorder
            ]))
        );
        assert_eq!(
            "crash,bitflip".parse::<FaultSelection>(),
            Err(UnknownFault("bitflip".into()))
        );
        assert_eq!(
            FaultSelection::Only(vec![Fault::Loss, Fault::Panic]).to_string(),
            "loss,panic"
        );
    }

    #[test]
    fn all_takes_the_families_it_leaves_out() {
        let with = "all, byzantine,crash,disk".parse::<FaultSelection>();
        assert_eq!(
            with,
            Ok(FaultSelection::AllAnd(vec![Fault::Disk, Fault::Byzantine]))
        );
        assert_eq!(with.unwrap().to_string(), "all,disk,byzantine");
        // Naming only what `all` holds is `all`; `panic` stays named, so a
        // protocol that cannot inject it refuses it.
        assert_eq!("crash,all".parse(), Ok(FaultSelection::All));
        let panic = "all,panic".parse::<FaultSelection>().unwrap();
        assert!(panic.resolve(&caps(false)).is_err());
        assert_eq!(panic.resolve(&caps(true)).unwrap().len(), 6);
        let mut byzantine = caps(false);
        byzantine.byzantine = true;
        assert_eq!(
            FaultSelection::AllAnd(vec![Fault::Byzantine])
                .resolve(&byzantine)
                .unwrap(),
            vec![
                Fault::Crash,
                Fault::Partition,
                Fault::Loss,
                Fault::Dup,
                Fault::Reorder,
                Fault::Byzantine
            ]
        );
        // An extra the protocol cannot run is refused as when named alone.
        assert!(FaultSelection::AllAnd(vec![Fault::Byzantine])
            .resolve(&caps(true))
            .is_err());
    }

    #[test]
    fn all_leaves_out_panic_when_the_protocol_cannot() {
        assert_eq!(
            FaultSelection::All.resolve(&caps(false)).unwrap(),
            vec![
                Fault::Crash,
                Fault::Partition,
                Fault::Loss,
                Fault::Dup,
                Fault::Reorder
            ]
        );
        assert_eq!(FaultSelection::All.resolve(&caps(true)).unwrap().len(), 6);
        assert!(FaultSelection::Only(vec![Fault::Panic])
            .resolve(&caps(false))
            .is_err());
        assert!(FaultSelection::None
            .resolve(&caps(true))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn schedule_weights_follow_the_selection() {
        let dir = NodeDirectory::new();
        let obs = ClusterObserver::new();
        assert!(schedule_for(&[], 5, &dir, &obs).is_none());
        let s = schedule_for(&[Fault::Crash, Fault::Loss], 5, &dir, &obs).unwrap();
        let kinds: Vec<FaultKind> = s
            .weights
            .iter()
            .filter(|(_, &w)| w > 0)
            .map(|(&k, _)| k)
            .collect();
        assert_eq!(
            kinds,
            vec![FaultKind::Crash, FaultKind::Restart, FaultKind::Faults]
        );
        assert_eq!(s.max_down, 2);
        assert_eq!(s.max_faults.loss, 0.1);
        assert_eq!(s.max_faults.duplicate, 0.0);
        assert_eq!(s.max_faults.reorder, 0.0);
        let p = schedule_for(&[Fault::Panic], 3, &dir, &obs).unwrap();
        assert_eq!(p.weights.get(&FaultKind::Panic), Some(&1));
        assert_eq!(p.max_down, 1);
        let d = schedule_for(&[Fault::Disk], 3, &dir, &obs).unwrap();
        assert_eq!(d.weights.get(&FaultKind::Disk), Some(&1));
        assert_eq!(d.weights.get(&FaultKind::Crash), None);
        assert_eq!(
            "crash,disk".parse(),
            Ok(FaultSelection::Only(vec![Fault::Crash, Fault::Disk]))
        );
        assert!(!FaultSelection::All
            .resolve(&caps(true))
            .unwrap()
            .contains(&Fault::Disk));
    }

    #[test]
    fn scenarios_are_named_apart_from_all() {
        assert_eq!(
            "quorum-loss,constrained,chained".parse::<FaultSelection>(),
            Ok(FaultSelection::Only(vec![
                Fault::QuorumLoss,
                Fault::Constrained,
                Fault::Chained
            ]))
        );
        let all = FaultSelection::All.resolve(&caps(true)).unwrap();
        assert!(all
            .iter()
            .all(|f| !f.is_scenario() && *f != Fault::Byzantine));
        // Byzantine replicas only where the protocol has them.
        let byz = FaultSelection::Only(vec![Fault::Byzantine]);
        assert!(byz.resolve(&caps(true)).is_err());
        let bft = Capabilities {
            byzantine: true,
            ..caps(false)
        };
        assert_eq!(byz.resolve(&bft).unwrap(), vec![Fault::Byzantine]);
        let dir = NodeDirectory::new();
        let obs = ClusterObserver::new();
        let s = schedule_for(&[Fault::Chained], 5, &dir, &obs).unwrap();
        let kinds: Vec<FaultKind> = s
            .weights
            .iter()
            .filter(|(_, &w)| w > 0)
            .map(|(&k, _)| k)
            .collect();
        assert_eq!(kinds, vec![FaultKind::Chained]);
    }

    #[test]
    fn outcomes_measure_the_first_commit_invoked_during_the_scenario() {
        use consensus_actors::history::{ObservedOutput, OpId, Operation};
        use consensus_actors::kv::KvCommand;
        use consensus_actors::types::ClientId;
        let op = |id: u64, invoke_us: u64, complete_us: u64| Operation {
            id: OpId(id),
            client: ClientId(id),
            command: KvCommand::Get { key: "k".into() },
            invoke_us,
            outcome: Outcome::Ok {
                output: ObservedOutput::Value(None),
                complete_us,
            },
        };
        let history = History {
            operations: vec![
                // Invoked before the first scenario: does not count.
                op(1, 900_000, 1_200_000),
                op(2, 1_300_000, 1_700_000),
                op(3, 1_100_000, 1_500_000),
                // Invoked during the second scenario, acknowledged after
                // its heal: it stalled.
                op(4, 5_000_000, 7_500_000),
            ],
        };
        let scenario = Scenario::Chained {
            leader: NodeId(1),
            far: NodeId(2),
        };
        let at = |ms: u64| Duration::from_millis(ms);
        let cut = FaultAction::Connectivity {
            scenario,
            blocked: scenario.blocked_links(&[NodeId(1), NodeId(2), NodeId(3)]),
        };
        let events = vec![
            FaultEvent {
                at: at(1_000),
                action: cut.clone(),
            },
            FaultEvent {
                at: at(3_000),
                action: FaultAction::Heal,
            },
            FaultEvent {
                at: at(4_000),
                action: cut,
            },
            FaultEvent {
                at: at(6_000),
                action: FaultAction::Heal,
            },
        ];
        let outcomes = scenario_outcomes(&events, &history, 10_000_000);
        assert_eq!(outcomes.len(), 2);
        assert_eq!(outcomes[0].scenario, "chained");
        assert_eq!(outcomes[0].held_us, 2_000_000);
        assert_eq!(outcomes[0].resumed_after_us, Some(500_000));
        assert_eq!(outcomes[1].resumed_after_us, None);
    }
}
