//! The clients of one node (Castro and Liskov, OSDI'99 §4.1): a client
//! signs its request with a timestamp above its previous one, multicasts
//! it to the replicas, and accepts a result once f+1 replicas sent
//! matching REPLYs (at least one of them is correct). It retransmits a
//! request that waits too long.
//!
//! [`ClientCore`] is the pure part; [`ClientProxy`] the actor.

use crate::authenticator::core::Keys;
use crate::engine::core::ReplicaConfig;
use crate::messages::{PbftMessage, Reply, Request, SignedRequest};
use crate::node::{ClientReply, Inbound, Submit};
use actix::prelude::*;
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::plugin::NodeError;
use consensus_actors::transport::Transport;
use consensus_actors::types::{ClientId, NodeId};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Requests in flight per node at most.
pub const MAX_IN_FLIGHT: usize = 65_536;

/// How often the proxy checks for requests to retransmit.
pub const RETRY_TICK: Duration = Duration::from_millis(50);

struct Waiting {
    request: SignedRequest,
    replies: BTreeMap<NodeId, KvOutput>,
    sent_us: u64,
}

/// What the client core asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEffect {
    /// Multicast this request to every replica.
    Multicast(SignedRequest),
    /// The request `(client, timestamp)` is answered.
    Accept {
        /// The client.
        client: ClientId,
        /// The request's timestamp.
        timestamp: u64,
        /// The result f+1 replicas agree on.
        result: KvOutput,
    },
}

/// The clients of one node. See the [module documentation](self).
pub struct ClientCore {
    node: NodeId,
    f: usize,
    retry_us: u64,
    keys: Keys,
    last_timestamp: BTreeMap<ClientId, u64>,
    waiting: BTreeMap<(ClientId, u64), Waiting>,
}

impl ClientCore {
    /// The clients of `cfg.id`, retransmitting after `retry_us`.
    pub fn new(cfg: &ReplicaConfig, retry_us: u64) -> Self {
        Self {
            node: cfg.id,
            f: cfg.f,
            retry_us,
            keys: Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members),
            last_timestamp: BTreeMap::new(),
            waiting: BTreeMap::new(),
        }
    }

    /// Requests waiting for replies.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// Client `client` submits `op` at `now_us`: returns the request's
    /// timestamp and what to do, or `None` when too many are in flight.
    pub fn submit(
        &mut self,
        client: ClientId,
        op: KvCommand,
        now_us: u64,
    ) -> Option<(u64, Vec<ClientEffect>)> {
        if self.waiting.len() >= MAX_IN_FLIGHT {
            return None;
        }
        let last = self.last_timestamp.get(&client).copied().unwrap_or(0);
        let timestamp = last.saturating_add(1).max(now_us);
        self.last_timestamp.insert(client, timestamp);
        let request = SignedRequest::new(
            Request {
                node: self.node,
                client,
                timestamp,
                op,
            },
            &self.keys,
        );
        self.waiting.insert(
            (client, timestamp),
            Waiting {
                request: request.clone(),
                replies: BTreeMap::new(),
                sent_us: now_us,
            },
        );
        Some((timestamp, vec![ClientEffect::Multicast(request)]))
    }

    /// A REPLY arrived (authenticated).
    pub fn handle_reply(&mut self, reply: Reply) -> Vec<ClientEffect> {
        if reply.node != self.node {
            return Vec::new();
        }
        let key = (reply.client, reply.timestamp);
        let Some(w) = self.waiting.get_mut(&key) else {
            return Vec::new();
        };
        w.replies.insert(reply.replica, reply.result.clone());
        let matching = w.replies.values().filter(|r| **r == reply.result).count();
        if matching > self.f {
            self.waiting.remove(&key);
            return vec![ClientEffect::Accept {
                client: key.0,
                timestamp: key.1,
                result: reply.result,
            }];
        }
        Vec::new()
    }

    /// Time passed: retransmits requests waiting longer than the retry
    /// interval.
    pub fn tick(&mut self, now_us: u64) -> Vec<ClientEffect> {
        let mut out = Vec::new();
        for w in self.waiting.values_mut() {
            if now_us.saturating_sub(w.sent_us) >= self.retry_us {
                w.sent_us = now_us;
                out.push(ClientEffect::Multicast(w.request.clone()));
            }
        }
        out
    }

    /// The caller gave up on `(client, timestamp)`.
    pub fn forget(&mut self, client: ClientId, timestamp: u64) {
        self.waiting.remove(&(client, timestamp));
    }
}

/// The client proxy actor of one node.
pub struct ClientProxy {
    core: ClientCore,
    me: NodeId,
    members: Vec<NodeId>,
    replica: Recipient<Inbound>,
    transport: Transport<PbftMessage>,
    epoch: Instant,
    answers: BTreeMap<(ClientId, u64), oneshot::Sender<Result<KvOutput, NodeError>>>,
}

impl ClientProxy {
    /// The proxy of `cfg.id`.
    pub fn new(
        cfg: &ReplicaConfig,
        replica: Recipient<Inbound>,
        transport: Transport<PbftMessage>,
        epoch: Instant,
    ) -> Self {
        Self {
            core: ClientCore::new(cfg, cfg.view_change_timeout_us.max(1) / 2),
            me: cfg.id,
            members: cfg.members.clone(),
            replica,
            transport,
            epoch,
            answers: BTreeMap::new(),
        }
    }

    fn now_us(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros() as u64
    }

    fn carry_out(&mut self, effects: Vec<ClientEffect>) {
        for e in effects {
            match e {
                ClientEffect::Multicast(r) => {
                    let msg = PbftMessage::Request(r);
                    if self.members.contains(&self.me) {
                        self.replica.do_send(Inbound {
                            from: self.me,
                            msg: msg.clone(),
                        });
                    }
                    self.transport.broadcast(&self.members, &msg);
                }
                ClientEffect::Accept {
                    client,
                    timestamp,
                    result,
                } => {
                    if let Some(tx) = self.answers.remove(&(client, timestamp)) {
                        let _ = tx.send(Ok(result));
                    }
                }
            }
        }
    }
}

impl Actor for ClientProxy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RETRY_TICK, |act, _ctx| {
            // Forget the requests whose callers gave up.
            let gone: Vec<(ClientId, u64)> = act
                .answers
                .iter()
                .filter(|(_, tx)| tx.is_closed())
                .map(|(k, _)| *k)
                .collect();
            for (c, t) in gone {
                act.answers.remove(&(c, t));
                act.core.forget(c, t);
            }
            let now = act.now_us();
            let effects = act.core.tick(now);
            act.carry_out(effects);
        });
    }
}

impl Supervised for ClientProxy {}

impl Handler<Submit> for ClientProxy {
    type Result = ();

    fn handle(&mut self, msg: Submit, _ctx: &mut Context<Self>) {
        let now = self.now_us();
        match self.core.submit(msg.client, msg.op, now) {
            Some((timestamp, effects)) => {
                self.answers.insert((msg.client, timestamp), msg.reply);
                self.carry_out(effects);
            }
            None => {
                let _ = msg.reply.send(Err(NodeError::Refused(
                    "too many requests in flight".into(),
                )));
            }
        }
    }
}

impl Handler<ClientReply> for ClientProxy {
    type Result = ();

    fn handle(&mut self, msg: ClientReply, _ctx: &mut Context<Self>) {
        let effects = self.core.handle_reply(msg.0);
        self.carry_out(effects);
    }
}
