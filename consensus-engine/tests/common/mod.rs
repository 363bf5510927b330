//! A toy protocol for exercising the engine's protocol-agnostic machinery
//! (workload, nemesis, checking, reports) without depending on a real
//! protocol: node 1 is the primary forever; it applies each command to its
//! durable key-value store at once (so crashes lose nothing) and tells the
//! backups, which apply what they hear. Clients talking to a backup are sent
//! to node 1. It is linearizable by construction; `LYING` makes the primary
//! answer every read with "absent", which is not.
//!
//! It is no Raft: it registers under its own names ([`TOY`], [`LYING_TOY`]),
//! has no protocol events of its own ([`NoProtocolEvents`]) and reports its
//! leadership with the runtime's neutral `BecameLeader` event only.
#![allow(dead_code)]

use actix::prelude::*;
use consensus_actors::config::ConsensusConfig;
use consensus_actors::kv::{KvCommand, KvOutput, KvStore, StateMachine};
use consensus_actors::safety::{NoProtocolEvents, SafetyChecker, SafetyEvent};
use consensus_actors::sim::NodeContext;
use consensus_actors::sim::StartedNode;
use consensus_actors::transport::{Envelope, Transport};
use consensus_actors::types::{
    ClientId, ConsensusProtocol, LogId, LogIndex, NodeId, NodeState, Term,
};
use consensus_engine::plugin::{ready, PluginError, Reply};
use consensus_engine::{
    Capabilities, Committed, NodeError, NodeHandle, NodeInfo, NodeWiring, PluginNode, PluginSpec,
    ProtocolPlugin,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

pub const PRIMARY: NodeId = NodeId(1);

/// The name the honest toy registers under.
pub const TOY: ConsensusProtocol = ConsensusProtocol::named("toy");

/// The name the lying toy registers under.
pub const LYING_TOY: ConsensusProtocol = ConsensusProtocol::named("lying-toy");

/// A configuration of `n` toy nodes.
pub fn toy_config(n: usize) -> ConsensusConfig {
    ConsensusConfig::for_protocol(TOY, n)
}

/// The honest toy, as the engine runs it.
pub fn good_toy() -> PluginSpec<GoodToy> {
    PluginSpec::stock(TOY)
}

/// The lying toy, as the engine runs it.
pub fn lying_toy() -> PluginSpec<LyingToy> {
    PluginSpec::stock(LYING_TOY)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToyMsg {
    Replicate { index: u64, command: KvCommand },
}

#[derive(Default)]
struct Durable {
    store: KvStore,
    applied: u64,
}

pub struct Toy<const LYING: bool> {
    durable: BTreeMap<NodeId, Rc<RefCell<Durable>>>,
}

pub type GoodToy = Toy<false>;
pub type LyingToy = Toy<true>;

struct ToyNode {
    id: NodeId,
    peers: Vec<NodeId>,
    transport: Transport<ToyMsg>,
    durable: Rc<RefCell<Durable>>,
    lying: bool,
}

impl Actor for ToyNode {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "(u64, KvOutput)")]
struct Apply(KvCommand);

#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

impl Handler<Apply> for ToyNode {
    type Result = MessageResult<Apply>;
    fn handle(&mut self, msg: Apply, _: &mut Context<Self>) -> Self::Result {
        let mut d = self.durable.borrow_mut();
        d.applied += 1;
        let mut output = d.store.apply(&msg.0);
        if self.lying && matches!(msg.0, KvCommand::Get { .. }) {
            output = KvOutput::Value(None);
        }
        let index = d.applied;
        self.transport.broadcast(
            &self.peers,
            &ToyMsg::Replicate {
                index,
                command: msg.0,
            },
        );
        MessageResult((index, output))
    }
}

impl Handler<Envelope<ToyMsg>> for ToyNode {
    type Result = ();
    fn handle(&mut self, env: Envelope<ToyMsg>, _: &mut Context<Self>) {
        let ToyMsg::Replicate { index, command } = env.msg;
        let mut d = self.durable.borrow_mut();
        if index == d.applied + 1 {
            d.applied = index;
            d.store.apply(&command);
        }
    }
}

impl Handler<Stop> for ToyNode {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

struct ToyHandle {
    id: NodeId,
    addr: Addr<ToyNode>,
    durable: Rc<RefCell<Durable>>,
}

impl NodeHandle for ToyHandle {
    fn node(&self) -> NodeId {
        self.id
    }

    fn submit(&self, client: ClientId, command: KvCommand) -> Reply<Committed> {
        if self.id != PRIMARY {
            return ready(Err(NodeError::NotLeader {
                leader: Some(PRIMARY),
            }));
        }
        let addr = self.addr.clone();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let (index, output) = addr
                .send(Apply(command.clone()))
                .await
                .map_err(|_| NodeError::Stopped)?;
            let _ = (client, command);
            Ok(Committed {
                output,
                log_id: Some(LogId::new(Term(1), LogIndex(index))),
            })
        })
    }

    fn info(&self) -> Reply<NodeInfo> {
        let d = self.durable.borrow();
        ready(Ok(NodeInfo {
            node: self.id,
            role: if self.id == PRIMARY {
                NodeState::Leader
            } else {
                NodeState::Follower
            },
            epoch: 1,
            leader: Some(PRIMARY),
            commit_index: LogIndex(d.applied),
            last_applied: LogIndex(d.applied),
            members: Vec::new(),
        }))
    }
}

impl<const LYING: bool> ProtocolPlugin for Toy<LYING> {
    type Message = ToyMsg;
    type Event = NoProtocolEvents;
    const CAPABILITIES: Capabilities = Capabilities {
        membership: false,
        snapshots: false,
        raft_rpcs: false,
        panic_injection: false,
        byzantine: false,
        log_positions: true,
    };

    fn new(_config: &ConsensusConfig) -> Result<Self, PluginError> {
        Ok(Self {
            durable: BTreeMap::new(),
        })
    }

    fn safety_checker(&self, _config: &ConsensusConfig) -> SafetyChecker<NoProtocolEvents> {
        SafetyChecker::new()
    }

    fn start_node(
        &mut self,
        ctx: NodeContext<ToyMsg>,
        wiring: &NodeWiring<NoProtocolEvents>,
    ) -> PluginNode<ToyMsg> {
        let durable = self.durable.entry(ctx.id).or_default().clone();
        let addr = ToyNode {
            id: ctx.id,
            peers: ctx.peers.clone(),
            transport: ctx.transport.clone(),
            durable: durable.clone(),
            lying: LYING,
        }
        .start();
        if ctx.id == PRIMARY {
            wiring.safety.emit(SafetyEvent::BecameLeader {
                node: ctx.id,
                epoch: u64::from(ctx.incarnation) + 1,
            });
        }
        let stop = addr.clone();
        PluginNode {
            started: StartedNode::new(addr.clone().recipient(), move || stop.do_send(Stop)),
            handle: Rc::new(ToyHandle {
                id: ctx.id,
                addr,
                durable,
            }),
        }
    }

    fn on_crash(&mut self, _node: NodeId) {}
}
