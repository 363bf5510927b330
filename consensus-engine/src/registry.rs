//! The [`Registry`]: which protocol is run by which plug-in, by name.
//!
//! A plug-in ([`ProtocolPlugin`]) is generic; the registry erases it into a
//! [`ProtocolDriver`] so the engine and the `consensus` program can pick a
//! protocol from configuration at run time. The registry is open: any crate
//! registers a protocol under a name of its own ([`Registry::register`]),
//! or a variant of one (a plug-in built by a factory of its own, e.g. Raft
//! with a component swapped: [`Registry::register_with`]), and it runs
//! under the engine, `simulate`, `bench` and campaigns with no engine edit.
//! A protocol that is part of the plan but has no plug-in yet is listed as
//! [`Availability::Planned`] and refused with
//! [`EngineError::ProtocolNotBuilt`]: it is never faked.

use crate::bench::{self, BenchOptions, BenchReport};
use crate::error::EngineError;
use crate::host::{ClusterHost, LocalCluster, LocalOptions};
use crate::simulate::{self, SimulateOptions, SimulationRun};
use consensus_actors::config::{ConfigError, ConsensusConfig};
use consensus_actors::plugin::{Capabilities, PluginError, ProtocolPlugin};
use consensus_actors::types::ConsensusProtocol;
use std::sync::Arc;

/// Builds the plug-in of one cluster from its configuration.
pub type PluginFactory<P> = Arc<dyn Fn(&ConsensusConfig) -> Result<P, PluginError> + Send + Sync>;

/// A protocol as the engine runs it: its name and how to build its plug-in
/// for one cluster.
pub struct PluginSpec<P> {
    name: ConsensusProtocol,
    make: PluginFactory<P>,
}

impl<P> Clone for PluginSpec<P> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            make: Arc::clone(&self.make),
        }
    }
}

impl<P: ProtocolPlugin> PluginSpec<P> {
    /// `P` under `name`, built by [`ProtocolPlugin::new`].
    pub fn stock(name: ConsensusProtocol) -> Self {
        Self::with_factory(name, |config: &ConsensusConfig| P::new(config))
    }

    /// `P` under `name`, built by `make` (e.g. the stock plug-in with one
    /// component replaced).
    pub fn with_factory(
        name: ConsensusProtocol,
        make: impl Fn(&ConsensusConfig) -> Result<P, PluginError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            make: Arc::new(make),
        }
    }

    /// The name it runs under.
    pub fn name(&self) -> &ConsensusProtocol {
        &self.name
    }

    /// Checks that `config` can run this protocol: it validates, names this
    /// protocol, and asks for Byzantine tolerance only of a protocol that
    /// has it.
    pub fn check(&self, config: &ConsensusConfig) -> Result<(), EngineError> {
        config.validate()?;
        if config.protocol != self.name {
            return Err(EngineError::InvalidSetting(format!(
                "configuration asks for {} but the plug-in runs {}",
                config.protocol, self.name
            )));
        }
        if config.byzantine_tolerance && !P::CAPABILITIES.byzantine {
            return Err(ConfigError::ByzantineUnsupported(self.name.clone()).into());
        }
        Ok(())
    }

    /// The plug-in of one cluster configured by `config` (checked first).
    pub fn build(&self, config: &ConsensusConfig) -> Result<P, EngineError> {
        self.check(config)?;
        Ok((self.make)(config)?)
    }
}

/// A protocol plug-in with its type erased: everything the engine and the
/// program do with a protocol.
pub trait ProtocolDriver: Send + Sync {
    /// The protocol's name.
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

impl<P: ProtocolPlugin> ProtocolDriver for PluginSpec<P> {
    fn protocol(&self) -> ConsensusProtocol {
        self.name.clone()
    }

    fn capabilities(&self) -> Capabilities {
        P::CAPABILITIES
    }

    fn simulate(
        &self,
        config: &ConsensusConfig,
        options: &SimulateOptions,
    ) -> Result<SimulationRun, EngineError> {
        simulate::simulate(self, config, options)
    }

    fn bench(
        &self,
        config: &ConsensusConfig,
        options: &BenchOptions,
    ) -> Result<BenchReport, EngineError> {
        bench::bench(self, config, options)
    }

    fn local_cluster(
        &self,
        config: &ConsensusConfig,
        options: LocalOptions,
    ) -> Result<Box<dyn ClusterHost>, EngineError> {
        Ok(Box::new(LocalCluster::new(self, config, options)?))
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

/// Maps each protocol name to the plug-in that runs it.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<(ConsensusProtocol, Availability)>,
}

impl Registry {
    /// A registry that knows no protocol.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The protocols this build of the framework runs: Raft, Paxos,
    /// Multi-Paxos and PBFT.
    pub fn builtin() -> Self {
        let mut r = Self::empty();
        r.register::<consensus_raft::RaftPlugin>(consensus_raft::PROTOCOL);
        r.register::<consensus_paxos::PaxosPlugin>(consensus_paxos::PAXOS);
        r.register::<consensus_paxos::PaxosPlugin>(consensus_paxos::MULTI_PAXOS);
        r.register::<consensus_pbft::PbftPlugin>(consensus_pbft::PROTOCOL);
        r
    }

    fn set(&mut self, protocol: ConsensusProtocol, availability: Availability) {
        match self.entries.iter_mut().find(|(p, _)| *p == protocol) {
            Some(entry) => entry.1 = availability,
            None => self.entries.push((protocol, availability)),
        }
    }

    /// Runs protocol `name` with plug-in `P`, built by
    /// [`ProtocolPlugin::new`] (replacing what was registered under `name`).
    pub fn register<P: ProtocolPlugin>(&mut self, name: ConsensusProtocol) -> &mut Self {
        self.register_spec(PluginSpec::<P>::stock(name))
    }

    /// Runs protocol `name` with plug-in `P`, built by `make` for each
    /// cluster: the way to register a variant of a protocol (a component
    /// swapped, a Byzantine replica) under a name of its own.
    pub fn register_with<P: ProtocolPlugin>(
        &mut self,
        name: ConsensusProtocol,
        make: impl Fn(&ConsensusConfig) -> Result<P, PluginError> + Send + Sync + 'static,
    ) -> &mut Self {
        self.register_spec(PluginSpec::with_factory(name, make))
    }

    /// Runs `spec.name()` with `spec`.
    pub fn register_spec<P: ProtocolPlugin>(&mut self, spec: PluginSpec<P>) -> &mut Self {
        self.set(spec.name().clone(), Availability::Built(Arc::new(spec)));
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
        protocol: &ConsensusProtocol,
    ) -> Result<Arc<dyn ProtocolDriver>, EngineError> {
        match self.entries.iter().find(|(p, _)| p == protocol) {
            Some((_, Availability::Built(driver))) => Ok(driver.clone()),
            Some((_, Availability::Planned(reason))) => Err(EngineError::ProtocolNotBuilt {
                protocol: protocol.clone(),
                reason: reason.clone(),
            }),
            None => Err(EngineError::ProtocolNotBuilt {
                protocol: protocol.clone(),
                reason: format!(
                    "no plug-in is registered under that name (known: {})",
                    self.names().join(", ")
                ),
            }),
        }
    }

    /// The protocols that can be run, in registration order.
    pub fn available(&self) -> Vec<ConsensusProtocol> {
        self.entries
            .iter()
            .filter(|(_, a)| matches!(a, Availability::Built(_)))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Every name known, built or planned, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(p, _)| p.name().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unbuilt_protocols_are_refused_with_the_reason() {
        let _r = Registry::builtin();
        let mut r = Registry::builtin();
        let p = ConsensusProtocol::named("hotstuff");
        r.plan(p.clone(), "the hotstuff plug-in is not built yet");
        match r.driver(&p) {
            Err(EngineError::ProtocolNotBuilt { protocol, reason }) => {
                assert_eq!(protocol, p);
                assert!(reason.contains("not built yet"), "{reason}");
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("{p} must not be available"),
        }
        assert_eq!(
            r.available(),
            vec![
                consensus_raft::PROTOCOL,
                consensus_paxos::PAXOS,
                consensus_paxos::MULTI_PAXOS,
                consensus_pbft::PROTOCOL
            ]
        );
        assert_eq!(
            r.driver(&consensus_raft::PROTOCOL)
                .map(|d| d.protocol())
                .ok(),
            Some(consensus_raft::PROTOCOL)
        );
        let empty = Registry::empty();
        assert!(matches!(
            empty.driver(&consensus_raft::PROTOCOL),
            Err(EngineError::ProtocolNotBuilt { .. })
        ));
        match r.driver(&"zab".parse().unwrap()) {
            Err(EngineError::ProtocolNotBuilt { reason, .. }) => {
                assert!(
                    reason.contains("known: raft, paxos, multi-paxos, pbft"),
                    "{reason}"
                )
            }
            _ => panic!("zab is not registered"),
        }
    }

    #[test]
    fn byzantine_tolerance_is_refused_to_crash_tolerant_protocols() {
        let spec = PluginSpec::<consensus_raft::RaftPlugin>::stock(consensus_raft::PROTOCOL);
        let config = ConsensusConfig::default().byzantine();
        assert!(matches!(
            spec.check(&config),
            Err(EngineError::Config(ConfigError::ByzantineUnsupported(_)))
        ));
        let other = ConsensusConfig::for_protocol("paxos".parse().unwrap(), 3);
        assert!(matches!(
            spec.check(&other),
            Err(EngineError::InvalidSetting(_))
        ));
        assert!(spec.check(&ConsensusConfig::default()).is_ok());
    }
}
