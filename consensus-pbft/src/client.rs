//! The clients of one node (Castro and Liskov, OSDI'99 §4.1): a client
//! authenticates its request (one MAC per replica) with a timestamp above
//! its previous one, sends it to the replica it believes is the primary,
//! and accepts a result once f+1 replicas sent matching REPLYs (at least
//! one of them is correct): the same result at the same sequence number,
//! which is the request's position in the order. A request that waits too
//! long is multicast to every replica (the backups relay it to the primary
//! and start their view-change timers on it).
//!
//! The primary the clients believe in is that of the highest view that
//! f+1 matching replies vouch for (the lowest view among them, so f lying
//! replicas cannot inflate it); a wrong guess costs one retransmission
//! interval, never progress.
//!
//! [`ClientCore`] is the pure part; [`ClientProxy`] the actor.

use crate::authenticator::core::Keys;
use crate::engine::core::ReplicaConfig;
use crate::evidence::{Evidence, EvidenceKind, EvidenceLog};
use crate::messages::{
    AuthenticatedRequest, Maced, PbftMessage, Replies, Reply, ReplyBatch, Request,
};
use crate::node::{ClientReply, Inbound, Submit, SubmitAuthenticated};
use crate::types::{SeqNo, View};
use actix::prelude::*;
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
    request: AuthenticatedRequest,
    /// Each replica's (sequence number, view, result).
    replies: BTreeMap<NodeId, (SeqNo, View, Vec<u8>)>,
    sent_us: u64,
    retries: u32,
}

/// Retransmissions back off exponentially up to `retry_us << MAX_BACKOFF`
/// (an overloaded cluster is not flooded by its own clients).
pub const MAX_BACKOFF: u32 = 4;

/// What the client core asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEffect {
    /// Send this request to `to`, the primary the clients believe in (a
    /// first transmission).
    Send {
        /// The replica.
        to: NodeId,
        /// The request.
        request: AuthenticatedRequest,
    },
    /// Multicast this request to every replica (a retransmission).
    Multicast(AuthenticatedRequest),
    /// A REPLY failed its MAC check: evidence against its sender.
    Evidence(Evidence),
    /// The request `(client, timestamp)` is answered.
    Accept {
        /// The client.
        client: ClientId,
        /// The request's timestamp.
        timestamp: u64,
        /// What f+1 replicas agree on.
        accepted: Accepted,
    },
}

/// A result f+1 replicas agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The encoded output.
    pub result: Vec<u8>,
    /// The sequence number the request executed at (the f+1 agree on it).
    pub seq: SeqNo,
    /// The highest view among the f+1 replies (replicas may commit one
    /// sequence number in different views; the position is `seq`).
    pub view: View,
}

/// The clients of one node. See the [module documentation](self).
pub struct ClientCore {
    node: NodeId,
    f: usize,
    retry_us: u64,
    /// Timestamps and MACs of this node's requests (its keys check the
    /// REPLYs too).
    signer: RequestSigner,
    /// The replicas sorted: the primary of view `v` is `sorted[v mod n]`.
    sorted: Vec<NodeId>,
    /// The highest view f+1 matching replies vouched for.
    view: View,
    waiting: BTreeMap<(ClientId, u64), Waiting>,
}

impl ClientCore {
    /// The clients of `cfg.id`, retransmitting after `retry_us`.
    pub fn new(cfg: &ReplicaConfig, retry_us: u64) -> Self {
        Self {
            node: cfg.id,
            f: cfg.f,
            retry_us,
            // Its time base is unused: the core is given the time.
            signer: RequestSigner::new(cfg, Instant::now()),
            sorted: {
                let mut s = cfg.members.clone();
                s.sort();
                s.dedup();
                s
            },
            view: View(0),
            waiting: BTreeMap::new(),
        }
    }

    /// The replica the clients believe is the primary.
    pub fn primary(&self) -> Option<NodeId> {
        let n = self.sorted.len() as u64;
        (n > 0).then(|| self.sorted[(self.view.get() % n) as usize])
    }

    /// The highest view f+1 matching replies vouched for.
    pub fn view(&self) -> View {
        self.view
    }

    /// Requests waiting for replies.
    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// Client `client` submits `op` (an encoded command) at `now_us`: returns the request's
    /// timestamp and what to do, or `None` when too many are in flight.
    pub fn submit(
        &mut self,
        client: ClientId,
        op: Vec<u8>,
        now_us: u64,
    ) -> Option<(u64, Vec<ClientEffect>)> {
        if self.waiting.len() >= MAX_IN_FLIGHT {
            return None;
        }
        let request = self.signer.authenticate_at(client, op, now_us);
        Some((request.request.timestamp, self.enqueue(request, now_us)))
    }

    /// A request a [`RequestSigner`] of this node authenticated on another
    /// thread: what to do, or why it is refused (too many in flight, not
    /// this node's, or a timestamp not above the client's last one).
    pub fn submit_authenticated(
        &mut self,
        request: AuthenticatedRequest,
        now_us: u64,
    ) -> Result<Vec<ClientEffect>, &'static str> {
        if self.waiting.len() >= MAX_IN_FLIGHT {
            return Err("too many requests in flight");
        }
        let r = &request.request;
        if r.node != self.node {
            return Err("a request of another node's client");
        }
        if self
            .signer
            .last_timestamp
            .get(&r.client)
            .is_some_and(|&t| t >= r.timestamp)
        {
            return Err("a timestamp not above the client's last one");
        }
        Ok(self.enqueue(request, now_us))
    }

    /// Waits for replies to `request` (its timestamp is the client's last
    /// one from now on) and sends it.
    fn enqueue(&mut self, request: AuthenticatedRequest, now_us: u64) -> Vec<ClientEffect> {
        let (client, timestamp) = (request.request.client, request.request.timestamp);
        self.signer.last_timestamp.insert(client, timestamp);
        self.waiting.insert(
            (client, timestamp),
            Waiting {
                request: request.clone(),
                replies: BTreeMap::new(),
                sent_us: now_us,
                retries: 0,
            },
        );
        let effect = match self.primary() {
            Some(to) => ClientEffect::Send { to, request },
            None => ClientEffect::Multicast(request),
        };
        vec![effect]
    }

    /// REPLYs arrived from replica `from`: one with its own MAC, or a batch
    /// with one MAC for all (none from this node's own replica).
    pub fn handle_replies(&mut self, from: NodeId, replies: Replies) -> Vec<ClientEffect> {
        match replies {
            Replies::One(maced) => self.handle_reply(from, maced),
            Replies::Batch(batch) => self.handle_reply_batch(from, batch),
        }
    }

    /// A batch of REPLYs arrived from replica `from`. Its MAC is checked
    /// only if one of them is still awaited; a batch that fails the check is
    /// evidence and none of its REPLYs counts.
    pub fn handle_reply_batch(
        &mut self,
        from: NodeId,
        batch: Maced<ReplyBatch>,
    ) -> Vec<ClientEffect> {
        if batch.body.replica != from {
            return Vec::new();
        }
        let awaited =
            batch.body.replies.iter().any(|r| {
                r.node == self.node && self.waiting.contains_key(&(r.client, r.timestamp))
            });
        if !awaited {
            return Vec::new();
        }
        if from != self.node && !batch.verify(&self.signer.keys, from) {
            let proof = format!("a batch of {} REPLYs", batch.body.replies.len());
            return vec![self.forged(from, proof)];
        }
        let mut out = Vec::new();
        for reply in batch.body.replies {
            if reply.node == self.node && reply.replica == from {
                out.extend(self.count_reply(reply));
            }
        }
        out
    }

    /// A REPLY arrived from replica `from` (this node's own replica: no
    /// MAC). Its MAC is checked only if the request still waits for
    /// replies: once f+1 matched, the others are dropped unchecked.
    pub fn handle_reply(&mut self, from: NodeId, maced: Maced<Reply>) -> Vec<ClientEffect> {
        if maced.body.node != self.node || maced.body.replica != from {
            return Vec::new();
        }
        let key = (maced.body.client, maced.body.timestamp);
        if !self.waiting.contains_key(&key) {
            return Vec::new();
        }
        if from != self.node && !maced.verify(&self.signer.keys, from) {
            let proof = format!(
                "REPLY t{} for client {}",
                maced.body.timestamp, maced.body.client
            );
            return vec![self.forged(from, proof)];
        }
        self.count_reply(maced.body).into_iter().collect()
    }

    /// Evidence that replica `from` sent REPLYs whose MAC fails.
    fn forged(&self, from: NodeId, proof: String) -> ClientEffect {
        ClientEffect::Evidence(Evidence {
            witness: self.node,
            accused: from,
            kind: EvidenceKind::InvalidMac,
            proof,
        })
    }

    /// An authentic REPLY for one of this node's clients: counted towards
    /// its request's f+1 matching ones; the answer once they are there.
    fn count_reply(&mut self, reply: Reply) -> Option<ClientEffect> {
        let key = (reply.client, reply.timestamp);
        let w = self.waiting.get_mut(&key)?;
        w.replies
            .insert(reply.replica, (reply.seq, reply.view, reply.result.clone()));
        let matching: Vec<View> = w
            .replies
            .values()
            .filter(|(s, _, r)| *s == reply.seq && *r == reply.result)
            .map(|(_, v, _)| *v)
            .collect();
        if matching.len() > self.f {
            self.waiting.remove(&key);
            // At least one of the f+1 is correct: the lowest of their
            // views is one some correct replica reached.
            if let Some(&lowest) = matching.iter().min() {
                self.view = self.view.max(lowest);
            }
            let view = matching.into_iter().max().unwrap_or(reply.view);
            return Some(ClientEffect::Accept {
                client: key.0,
                timestamp: key.1,
                accepted: Accepted {
                    result: reply.result,
                    seq: reply.seq,
                    view,
                },
            });
        }
        None
    }

    /// Time passed: retransmits requests waiting longer than the retry
    /// interval (doubled at each retransmission, up to [`MAX_BACKOFF`]).
    pub fn tick(&mut self, now_us: u64) -> Vec<ClientEffect> {
        let mut out = Vec::new();
        for w in self.waiting.values_mut() {
            let wait_us = self.retry_us << w.retries.min(MAX_BACKOFF);
            if now_us.saturating_sub(w.sent_us) >= wait_us {
                w.sent_us = now_us;
                w.retries += 1;
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

/// Authenticates requests for the clients of one node on a thread of
/// their own (the benchmark's client thread, as a client machine would):
/// the timestamp and the MACs [`ClientCore::submit`] makes, so that the
/// proxy, on the node's thread, only keeps track of the request
/// ([`ClientCore::submit_authenticated`]).
pub struct RequestSigner {
    node: NodeId,
    keys: Keys,
    members: Vec<NodeId>,
    epoch: Instant,
    last_timestamp: BTreeMap<ClientId, u64>,
}

impl RequestSigner {
    /// The signer for the clients of `cfg.id`, timestamps counted from
    /// `epoch` as the node's proxy counts them.
    pub fn new(cfg: &ReplicaConfig, epoch: Instant) -> Self {
        Self {
            node: cfg.id,
            keys: Keys::new(cfg.cluster, cfg.secret, cfg.id, &cfg.members),
            members: cfg.members.clone(),
            epoch,
            last_timestamp: BTreeMap::new(),
        }
    }

    /// Client `client`'s request for `op`, with a timestamp above its last
    /// one and its MACs for every replica.
    pub fn authenticate(&mut self, client: ClientId, op: Vec<u8>) -> AuthenticatedRequest {
        let now_us = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_micros() as u64;
        self.authenticate_at(client, op, now_us)
    }

    /// The same at `now_us` (microseconds since the time base).
    pub fn authenticate_at(
        &mut self,
        client: ClientId,
        op: Vec<u8>,
        now_us: u64,
    ) -> AuthenticatedRequest {
        let last = self.last_timestamp.get(&client).copied().unwrap_or(0);
        let timestamp = last.saturating_add(1).max(now_us);
        self.last_timestamp.insert(client, timestamp);
        AuthenticatedRequest::new(
            Request {
                node: self.node,
                client,
                timestamp,
                op,
            },
            &self.keys,
            &self.members,
        )
    }
}

/// Where a submitted operation's accepted result goes.
type Answer = oneshot::Sender<Result<Accepted, NodeError>>;

/// The client proxy actor of one node.
pub struct ClientProxy {
    core: ClientCore,
    me: NodeId,
    members: Vec<NodeId>,
    replica: Recipient<Inbound>,
    transport: Transport<PbftMessage>,
    evidence: EvidenceLog,
    epoch: Instant,
    answers: BTreeMap<(ClientId, u64), Answer>,
}

impl ClientProxy {
    /// The proxy of `cfg.id`; forged REPLYs are recorded in `evidence`.
    pub fn new(
        cfg: &ReplicaConfig,
        replica: Recipient<Inbound>,
        transport: Transport<PbftMessage>,
        evidence: EvidenceLog,
        epoch: Instant,
    ) -> Self {
        Self {
            core: ClientCore::new(cfg, cfg.view_change_timeout_us.max(1) / 2),
            me: cfg.id,
            members: cfg.members.clone(),
            replica,
            transport,
            evidence,
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
                ClientEffect::Send { to, request } => {
                    let msg = PbftMessage::Request(request);
                    if to == self.me {
                        self.replica.do_send(Inbound { from: self.me, msg });
                    } else {
                        self.transport.send(to, msg);
                    }
                }
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
                ClientEffect::Evidence(e) => self.evidence.record(e),
                ClientEffect::Accept {
                    client,
                    timestamp,
                    accepted,
                } => {
                    if let Some(tx) = self.answers.remove(&(client, timestamp)) {
                        let _ = tx.send(Ok(accepted));
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

impl Handler<SubmitAuthenticated> for ClientProxy {
    type Result = ();

    fn handle(&mut self, msg: SubmitAuthenticated, _ctx: &mut Context<Self>) {
        let now = self.now_us();
        let key = (msg.request.request.client, msg.request.request.timestamp);
        match self.core.submit_authenticated(msg.request, now) {
            Ok(effects) => {
                self.answers.insert(key, msg.reply);
                self.carry_out(effects);
            }
            Err(why) => {
                let _ = msg.reply.send(Err(NodeError::Refused(why.into())));
            }
        }
    }
}

impl Handler<ClientReply> for ClientProxy {
    type Result = ();

    fn handle(&mut self, msg: ClientReply, _ctx: &mut Context<Self>) {
        let effects = self.core.handle_replies(msg.from, msg.replies);
        self.carry_out(effects);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticator::core::cluster_secret;
    use crate::messages::encode_payload;
    use crate::types::View;
    use consensus_actors::kv::{KvCommand, KvOutput};

    fn cfg() -> ReplicaConfig {
        ReplicaConfig {
            id: NodeId(0),
            members: (0..4).map(NodeId).collect(),
            f: 1,
            checkpoint_interval: 4,
            log_window: 8,
            batch_max: 10,
            batches_in_flight: 2,
            view_change_timeout_us: 1_000_000,
            retransmit_us: 100_000,
            max_pending: 100,
            cluster: 1,
            secret: cluster_secret(1, 1),
        }
    }

    /// Delivers `r` as its replica sends it: with a MAC for node 0.
    fn give(c: &mut ClientCore, r: Reply) -> Vec<ClientEffect> {
        let from = r.replica;
        let cfg = cfg();
        let keys = Keys::new(cfg.cluster, cfg.secret, from, &cfg.members);
        c.handle_reply(from, Maced::new(r, &keys, &[NodeId(0)]))
    }

    /// A batch of REPLYs under one MAC: a forged one is evidence and none of
    /// its REPLYs counts; an authentic one answers every request it
    /// completes; one naming another replica than its sender is dropped;
    /// once nothing in it is awaited it is not even checked.
    #[test]
    fn a_reply_batch_is_checked_once_and_counts_only_when_authentic() {
        let mut c = ClientCore::new(&cfg(), 100);
        let op = || encode_payload(&KvCommand::Noop);
        let (t1, _) = c.submit(ClientId(5), op(), 10).expect("room");
        let (t2, _) = c.submit(ClientId(6), op(), 10).expect("room");
        let v = encode_payload(&KvOutput::Ok);
        let cfg = cfg();
        let batch = |replica: u64, signer: u64| {
            let keys = Keys::new(cfg.cluster, cfg.secret, NodeId(signer), &cfg.members);
            let replies = [(5, t1), (6, t2)]
                .into_iter()
                .map(|(client, timestamp)| Reply {
                    client: ClientId(client),
                    ..reply(replica, timestamp, v.clone())
                })
                .collect();
            Maced::new(
                ReplyBatch {
                    replica: NodeId(replica),
                    replies,
                },
                &keys,
                &[NodeId(0)],
            )
        };
        let effects = c.handle_reply_batch(NodeId(1), batch(1, 2));
        assert!(
            matches!(&effects[..], [ClientEffect::Evidence(e)] if e.accused == NodeId(1) && e.kind == EvidenceKind::InvalidMac),
            "{effects:?}"
        );
        assert!(
            c.handle_reply_batch(NodeId(2), batch(1, 1)).is_empty(),
            "a batch naming another replica than its sender is dropped"
        );
        assert!(c.handle_reply_batch(NodeId(2), batch(2, 2)).is_empty());
        assert!(
            c.handle_reply_batch(NodeId(1), batch(1, 2)).len() == 1,
            "the forged batch did not count: f+1 are not there yet"
        );
        let effects = c.handle_replies(NodeId(3), Replies::Batch(batch(3, 3)));
        let answered: Vec<(ClientId, u64)> = effects
            .iter()
            .filter_map(|e| match e {
                ClientEffect::Accept {
                    client, timestamp, ..
                } => Some((*client, *timestamp)),
                _ => None,
            })
            .collect();
        assert_eq!(answered, vec![(ClientId(5), t1), (ClientId(6), t2)]);
        assert!(
            c.handle_reply_batch(NodeId(1), batch(1, 2)).is_empty(),
            "nothing awaited: dropped unchecked"
        );
    }

    /// A REPLY whose MAC fails is evidence against its sender and does not
    /// count; once f+1 matched, the late ones are not even checked.
    #[test]
    fn forged_replies_are_evidence_until_the_request_is_answered() {
        let mut c = ClientCore::new(&cfg(), 100);
        let (t, _) = c
            .submit(ClientId(5), encode_payload(&KvCommand::Noop), 10)
            .expect("room");
        let v = encode_payload(&KvOutput::Ok);
        let cfg = cfg();
        let keys = Keys::new(cfg.cluster, cfg.secret, NodeId(2), &cfg.members);
        let forged = || {
            let mut m = Maced::new(reply(1, t, v.clone()), &keys, &[NodeId(0)]);
            m.body.replica = NodeId(1);
            m
        };
        let effects = c.handle_reply(NodeId(1), forged());
        assert!(
            matches!(&effects[..], [ClientEffect::Evidence(e)] if e.accused == NodeId(1) && e.kind == EvidenceKind::InvalidMac),
            "{effects:?}"
        );
        assert!(
            c.handle_reply(NodeId(2), forged()).is_empty(),
            "a REPLY naming another replica than its sender is dropped"
        );
        assert!(give(&mut c, reply(2, t, v.clone())).is_empty());
        assert!(
            give(
                &mut c,
                reply(1, t, encode_payload(&KvOutput::Deleted(true)))
            )
            .is_empty(),
            "the forged one did not count; this one does not match"
        );
        assert_eq!(give(&mut c, reply(3, t, v.clone())).len(), 1);
        assert!(
            c.handle_reply(NodeId(1), forged()).is_empty(),
            "answered: late replies are dropped unchecked"
        );
        let local = Maced {
            body: reply(0, t + 1, v),
            auth: Vec::new(),
        };
        assert!(
            c.handle_reply(NodeId(0), local).is_empty(),
            "the local replica's REPLY carries no MAC and needs none"
        );
    }

    fn reply(replica: u64, timestamp: u64, result: Vec<u8>) -> Reply {
        Reply {
            view: View(0),
            seq: SeqNo(3),
            timestamp,
            node: NodeId(0),
            client: ClientId(5),
            replica: NodeId(replica),
            result,
        }
    }

    #[test]
    fn a_result_is_accepted_on_f_plus_1_matching_replies_only() {
        let mut c = ClientCore::new(&cfg(), 100);
        let (t, effects) = c
            .submit(ClientId(5), encode_payload(&KvCommand::get("k")), 1_000)
            .expect("room");
        assert!(
            matches!(&effects[..], [ClientEffect::Send { to: NodeId(0), request: r }] if r.request.timestamp == t),
            "a first transmission goes to the primary of view 0"
        );
        let v = |s: &str| encode_payload(&KvOutput::Value(Some(s.into())));
        assert!(give(&mut c, reply(1, t, v("lie"))).is_empty());
        assert!(give(&mut c, reply(2, t, v("x"))).is_empty(), "1 vote each");
        assert!(
            give(&mut c, reply(2, t, v("x"))).is_empty(),
            "a replica counts once"
        );
        assert_eq!(
            give(&mut c, reply(3, t, v("x"))),
            vec![ClientEffect::Accept {
                client: ClientId(5),
                timestamp: t,
                accepted: Accepted {
                    result: v("x"),
                    seq: SeqNo(3),
                    view: View(0)
                }
            }]
        );
        assert_eq!(c.in_flight(), 0);
    }

    /// The f+1 matching replies agree on the sequence number too: a
    /// replica that claims another position does not count towards it.
    #[test]
    fn replies_match_on_the_sequence_number_and_report_the_highest_view() {
        let mut c = ClientCore::new(&cfg(), 100);
        let (t, _) = c
            .submit(ClientId(5), encode_payload(&KvCommand::get("k")), 1_000)
            .expect("room");
        let v = encode_payload(&KvOutput::Value(Some("x".into())));
        let mut lie = reply(1, t, v.clone());
        lie.seq = SeqNo(9);
        assert!(give(&mut c, lie).is_empty());
        assert!(
            give(&mut c, reply(2, t, v.clone())).is_empty(),
            "same result, another position: no match"
        );
        let mut later = reply(3, t, v.clone());
        later.view = View(2);
        assert_eq!(
            give(&mut c, later),
            vec![ClientEffect::Accept {
                client: ClientId(5),
                timestamp: t,
                accepted: Accepted {
                    result: v,
                    seq: SeqNo(3),
                    view: View(2)
                }
            }]
        );
    }

    /// The clients follow the primary of the lowest view among f+1
    /// matching replies: one replica claiming a far view cannot send them
    /// to a replica that is not the primary.
    #[test]
    fn first_transmissions_follow_the_view_f_plus_1_replies_vouch_for() {
        let mut c = ClientCore::new(&cfg(), 100);
        let noop = encode_payload(&KvCommand::Noop);
        let v = encode_payload(&KvOutput::Ok);
        let (t, _) = c.submit(ClientId(5), noop.clone(), 10).expect("room");
        let mut liar = reply(1, t, v.clone());
        liar.view = View(9);
        let mut honest = reply(2, t, v.clone());
        honest.view = View(1);
        assert!(give(&mut c, liar).is_empty());
        assert_eq!(give(&mut c, honest).len(), 1);
        assert_eq!(c.view(), View(1), "the lowest of the f+1 views");
        let (t2, effects) = c.submit(ClientId(5), noop, 20).expect("room");
        assert!(
            matches!(&effects[..], [ClientEffect::Send { to: NodeId(1), request: r }] if r.request.timestamp == t2),
            "{effects:?}"
        );
        assert_eq!(c.tick(20 + 100).len(), 1);
        assert!(
            matches!(&c.tick(20 + 300)[..], [ClientEffect::Multicast(_)]),
            "a retransmission goes to every replica"
        );
    }

    /// A request authenticated on another thread is tracked as one made
    /// here: sent to the primary, refused when its timestamp is not above
    /// the client's last one or when it belongs to another node.
    #[test]
    fn requests_signed_elsewhere_are_tracked_and_their_timestamps_checked() {
        let mut c = ClientCore::new(&cfg(), 100);
        let mut signer = RequestSigner::new(&cfg(), Instant::now());
        let noop = encode_payload(&KvCommand::Noop);
        let r1 = signer.authenticate(ClientId(5), noop.clone());
        let r2 = signer.authenticate(ClientId(5), noop.clone());
        assert!(r2.request.timestamp > r1.request.timestamp);
        let keys = Keys::new(cfg().cluster, cfg().secret, NodeId(1), &cfg().members);
        assert!(r1.verify(&keys), "the MACs the replicas check");
        let effects = c.submit_authenticated(r2.clone(), 10).expect("taken");
        assert!(
            matches!(&effects[..], [ClientEffect::Send { to: NodeId(0), request }] if *request == r2)
        );
        assert_eq!(c.in_flight(), 1);
        assert!(
            c.submit_authenticated(r1, 10).is_err(),
            "an older timestamp"
        );
        assert!(
            c.submit_authenticated(r2, 10).is_err(),
            "the same one again"
        );
        let mut other = RequestSigner::new(
            &ReplicaConfig {
                id: NodeId(2),
                ..cfg()
            },
            Instant::now(),
        );
        let theirs = other.authenticate(ClientId(5), noop);
        assert!(
            c.submit_authenticated(theirs, 10).is_err(),
            "another node's client"
        );
        assert_eq!(c.in_flight(), 1);
        let (t, _) = c
            .submit(ClientId(5), encode_payload(&KvCommand::Noop), 0)
            .expect("room");
        assert!(
            t > effects_timestamp(&effects),
            "the proxy's own next timestamp is above it"
        );
    }

    fn effects_timestamp(effects: &[ClientEffect]) -> u64 {
        match &effects[0] {
            ClientEffect::Send { request, .. } | ClientEffect::Multicast(request) => {
                request.request.timestamp
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timestamps_increase_and_retransmissions_back_off() {
        let mut c = ClientCore::new(&cfg(), 100);
        let noop = encode_payload(&KvCommand::Noop);
        let (t1, _) = c.submit(ClientId(5), noop.clone(), 50).expect("room");
        let (t2, _) = c.submit(ClientId(5), noop, 10).expect("room");
        assert!(t2 > t1, "a clock going back does not reuse a timestamp");
        c.forget(ClientId(5), t1);
        assert_eq!(c.tick(159).len(), 1, "after 100 us");
        assert_eq!(c.tick(300).len(), 0, "then after 200 us");
        assert_eq!(c.tick(359).len(), 1);
    }
}
