//! The [`Registry`]: which protocol is run by which plug-in.
//!
//! A plug-in ([`ProtocolPlugin`]) is generic; the registry erases it into a
//! [`ProtocolDriver`] so the engine and the `consensus` program can pick a
//! protocol from configuration at run time. A protocol that is part of the
//! plan but has no plug-in yet is listed as [`Availability::Planned`] and
//! refused with [`EngineError::ProtocolNotBuilt`]: it is never faked.

use crate::bench::{self, BenchOptions, BenchReport};
use crate::error::EngineError;
use crate::host::{ClusterHost, LocalCluster, LocalOptions};
use crate::plugin::{Capabilities, ProtocolPlugin};
use crate::simulate::{self, SimulateOptions, SimulationRun};
use consensus_actors::config::ConsensusConfig;
use consensus_actors::types::ConsensusProtocol;
use std::marker::PhantomData;
use std::sync::Arc;

/// A protocol plug-in with its type erased: everything the engine and the
/// program do with a protocol.
pub trait ProtocolDriver: Send + Sync {
    /// The protocol.
    fn protocol(&self) -> ConsensusProtocol;

    /// What it offers beyond submitting commands.
    fn capabilities(&self) -> Capabilities;

    /// Runs and checks one deterministic simulation.
    fn simulate(
        &self,
        config: &ConsensusConfig,
        options: &SimulateOptions,
    ) -> Result<SimulationRun, EngineError>;

    /// Runs a real-time benchmark in this process.
    fn bench(
        &self,
        config: &ConsensusConfig,
        options: &BenchOptions,
    ) -> Result<BenchReport, EngineError>;

    /// A real-time cluster with no node yet (call inside an actix System).
    fn local_cluster(
        &self,
        config: &ConsensusConfig,
        options: LocalOptions,
    ) -> Result<Box<dyn ClusterHost>, EngineError>;
}

/// The driver of plug-in `P`.
pub struct PluginDriver<P>(PhantomData<fn() -> P>);

impl<P> PluginDriver<P> {
    /// The driver of `P`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<P> Default for PluginDriver<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: ProtocolPlugin> ProtocolDriver for PluginDriver<P> {
    fn protocol(&self) -> ConsensusProtocol {
        P::PROTOCOL
    }

    fn capabilities(&self) -> Capabilities {
        P::CAPABILITIES
    }

    fn simulate(
        &self,
        config: &ConsensusConfig,
        options: &SimulateOptions,
    ) -> Result<SimulationRun, EngineError> {
        simulate::simulate::<P>(config, options)
    }

    fn bench(
        &self,
        config: &ConsensusConfig,
        options: &BenchOptions,
    ) -> Result<BenchReport, EngineError> {
        bench::bench::<P>(config, options)
    }

    fn local_cluster(
        &self,
        config: &ConsensusConfig,
        options: LocalOptions,
    ) -> Result<Box<dyn ClusterHost>, EngineError> {
        Ok(Box::new(LocalCluster::<P>::new(config, options)?))
    }
}

/// Whether a protocol can be run.
#[derive(Clone)]
pub enum Availability {
    /// Run by this driver.
    Built(Arc<dyn ProtocolDriver>),
    /// Planned, not built yet; the reason says what is missing.
    Planned(String),
}

/// Maps each [`ConsensusProtocol`] to the plug-in that runs it.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<(ConsensusProtocol, Availability)>,
}

impl Registry {
    /// A registry that knows no protocol.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The protocols this build of the framework runs: Raft; Paxos,
    /// Multi-Paxos and PBFT are listed as planned.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register::<crate::raft::RaftPlugin>();
        r.plan(
            ConsensusProtocol::Paxos,
            "the consensus-paxos plug-in (Proposer, Acceptor, Learner) is not built yet",
        );
        r.plan(
            ConsensusProtocol::MultiPaxos,
            "the consensus-paxos Multi-Paxos plug-in is not built yet",
        );
        r.plan(
            ConsensusProtocol::Pbft,
            "the consensus-pbft plug-in (PBFTEngine, ViewChanger, CheckpointProtocol) is not built yet",
        );
        r
    }

    fn set(&mut self, protocol: ConsensusProtocol, availability: Availability) {
        match self.entries.iter_mut().find(|(p, _)| *p == protocol) {
            Some(entry) => entry.1 = availability,
            None => self.entries.push((protocol, availability)),
        }
    }

    /// Runs `P::PROTOCOL` with plug-in `P` (replacing what was there).
    pub fn register<P: ProtocolPlugin>(&mut self) -> &mut Self {
        self.set(
            P::PROTOCOL,
            Availability::Built(Arc::new(PluginDriver::<P>::new())),
        );
        self
    }

    /// Lists `protocol` as planned but not built, with the reason.
    pub fn plan(&mut self, protocol: ConsensusProtocol, reason: impl Into<String>) -> &mut Self {
        self.set(protocol, Availability::Planned(reason.into()));
        self
    }

    /// The driver of `protocol`, or why there is none.
    pub fn driver(
        &self,
        protocol: ConsensusProtocol,
    ) -> Result<Arc<dyn ProtocolDriver>, EngineError> {
        match self.entries.iter().find(|(p, _)| *p == protocol) {
            Some((_, Availability::Built(driver))) => Ok(driver.clone()),
            Some((_, Availability::Planned(reason))) => Err(EngineError::ProtocolNotBuilt {
                protocol,
                reason: reason.clone(),
            }),
            None => Err(EngineError::ProtocolNotBuilt {
                protocol,
                reason: "no plug-in is registered for it".into(),
            }),
        }
    }

    /// The protocols that can be run, in registration order.
    pub fn available(&self) -> Vec<ConsensusProtocol> {
        self.entries
            .iter()
            .filter(|(_, a)| matches!(a, Availability::Built(_)))
            .map(|(p, _)| *p)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbuilt_protocols_are_refused_with_the_reason() {
        let r = Registry::builtin();
        for p in [
            ConsensusProtocol::Paxos,
            ConsensusProtocol::MultiPaxos,
            ConsensusProtocol::Pbft,
        ] {
            match r.driver(p) {
                Err(EngineError::ProtocolNotBuilt { protocol, reason }) => {
                    assert_eq!(protocol, p);
                    assert!(reason.contains("not built yet"), "{reason}");
                }
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("{p} must not be available"),
            }
        }
        assert_eq!(r.available(), vec![ConsensusProtocol::Raft]);
        assert_eq!(
            r.driver(ConsensusProtocol::Raft).map(|d| d.protocol()).ok(),
            Some(ConsensusProtocol::Raft)
        );
        let empty = Registry::empty();
        assert!(matches!(
            empty.driver(ConsensusProtocol::Raft),
            Err(EngineError::ProtocolNotBuilt { .. })
        ));
    }
}
