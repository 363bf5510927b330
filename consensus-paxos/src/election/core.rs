//! The ballot leader election's logic (Ngo et al., "Omni-Paxos: Breaking
//! the Barriers of Partial Connectivity", EuroSys 2023, §4):
//!
//! * every round (one heartbeat period) each node asks every peer for its
//!   ballot; a reply carries the replier's ballot and whether the replier
//!   was quorum-connected;
//! * at the end of a round a node that heard from a majority (itself
//!   included) is quorum-connected and elects the highest ballot among the
//!   quorum-connected repliers; if that is below the leader it followed
//!   (the leader is gone or lost its quorum), it raises its own ballot above
//!   the old leader's and elects in the next round;
//! * a proposer refused by an acceptor's higher promise raises the ballot
//!   above that promise ([`ElectionInput::BallotTooLow`]);
//! * the first round elects only when every member answered (from the
//!   second on, a majority suffices): at start every ballot is of round 0
//!   and the highest node id wins, so electing from a majority that missed
//!   a slow starter's reply names a leader the next round replaces, and
//!   its clients retry.
//!
//! The elected ballot is the leader's Paxos ballot: its proposer runs phase
//! 1 with it.

use crate::messages::{HeartbeatReply, HeartbeatRequest, PaxosMessage};
use crate::types::Ballot;
use consensus_actors::types::NodeId;
use std::collections::BTreeMap;

/// An input of [`ElectionCore::step`].
#[derive(Clone, Debug)]
pub enum ElectionInput {
    /// The round's time is up.
    RoundEnd,
    /// A peer's heartbeat request.
    Request {
        /// The peer.
        from: NodeId,
        /// Its request.
        msg: HeartbeatRequest,
    },
    /// A peer's answer.
    Reply {
        /// The peer.
        from: NodeId,
        /// Its answer.
        msg: HeartbeatReply,
    },
    /// The proposer was refused: an acceptor promised `promised`.
    BallotTooLow {
        /// The promise.
        promised: Ballot,
    },
    /// The acceptors are now `members` (a configuration change was
    /// delivered): heartbeats go to them and a majority of them elects. A
    /// node not among them stays silent and elects nobody.
    Members(Vec<NodeId>),
}

/// What the election asks its actor to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ElectionEffect {
    /// Send to one peer.
    Send {
        /// The peer.
        to: NodeId,
        /// The message.
        msg: PaxosMessage,
    },
    /// A new leader: tell the proposer.
    Leader(Ballot),
}

/// The election's state. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct ElectionCore {
    id: NodeId,
    members: Vec<NodeId>,
    majority: usize,
    ballot: Ballot,
    leader: Ballot,
    round: u64,
    quorum_connected: bool,
    replies: BTreeMap<NodeId, (Ballot, bool)>,
    /// The highest promise an acceptor refused this node's proposer with.
    floor: Ballot,
    /// Some round was judged (see [`handle_round_end`](Self::handle_round_end)).
    judged: bool,
}

impl ElectionCore {
    /// The election of node `id` among `members`.
    pub fn new(id: NodeId, members: Vec<NodeId>, majority: usize) -> Self {
        Self {
            id,
            members,
            majority,
            ballot: Ballot::new(0, id),
            leader: Ballot::ZERO,
            round: 0,
            quorum_connected: true,
            replies: BTreeMap::new(),
            floor: Ballot::ZERO,
            judged: false,
        }
    }

    /// The leader elected (`None` before the first election).
    pub fn leader(&self) -> Option<Ballot> {
        (self.leader != Ballot::ZERO).then_some(self.leader)
    }

    /// This node's own ballot.
    pub fn ballot(&self) -> Ballot {
        self.ballot
    }

    /// Whether it heard from a quorum in its last round.
    pub fn quorum_connected(&self) -> bool {
        self.quorum_connected
    }

    /// The one entry: handles `input`, leaving effects in `out`, and checks
    /// the invariants.
    pub fn step(&mut self, input: ElectionInput, out: &mut Vec<ElectionEffect>) {
        let leader_before = self.leader;
        match input {
            ElectionInput::RoundEnd => self.handle_round_end(out),
            ElectionInput::Request { from, msg } => out.push(ElectionEffect::Send {
                to: from,
                msg: PaxosMessage::HeartbeatReply(HeartbeatReply {
                    round: msg.round,
                    ballot: self.ballot,
                    quorum_connected: self.quorum_connected,
                }),
            }),
            ElectionInput::Reply { from, msg } => {
                if msg.round == self.round && self.members.contains(&from) {
                    self.replies
                        .insert(from, (msg.ballot, msg.quorum_connected));
                }
            }
            ElectionInput::BallotTooLow { promised } => {
                // Acted on at the end of the round, and only if this node
                // is still the one elected: a node that rejoins with a
                // stale leadership must not outbid a healthy leader.
                self.floor = self.floor.max(promised);
            }
            ElectionInput::Members(members) => {
                self.majority = members.len() / 2 + 1;
                self.members = members;
                self.replies.retain(|n, _| self.members.contains(n));
            }
        }
        assert_eq!(self.ballot.node, self.id, "own ballot names another node");
        // A leader is only replaced by a higher ballot, or given up.
        assert!(
            self.leader >= leader_before || self.leader == Ballot::ZERO,
            "leader went down without being given up"
        );
    }

    /// Whether this node is one of the acceptors (a removed or not yet
    /// added node takes no part).
    pub fn is_member(&self) -> bool {
        self.members.contains(&self.id)
    }

    fn handle_round_end(&mut self, out: &mut Vec<ElectionEffect>) {
        if !self.is_member() {
            self.replies.clear();
            self.round += 1;
            return;
        }
        // Round 0 is the start: nobody was asked yet, nothing to judge.
        if self.round > 0 {
            self.replies.insert(self.id, (self.ballot, true));
            if self.replies.len() >= self.majority {
                self.quorum_connected = true;
                // The first round judges only a full house (see the
                // module documentation).
                let everyone = self.members.iter().all(|m| self.replies.contains_key(m));
                if self.judged || everyone || self.round > 1 {
                    self.judged = true;
                    self.check_leader(out);
                }
            } else {
                self.quorum_connected = false;
            }
        }
        self.replies.clear();
        self.round += 1;
        let msg = PaxosMessage::HeartbeatRequest(HeartbeatRequest { round: self.round });
        for peer in &self.members {
            if *peer != self.id {
                out.push(ElectionEffect::Send {
                    to: *peer,
                    msg: msg.clone(),
                });
            }
        }
    }

    fn check_leader(&mut self, out: &mut Vec<ElectionEffect>) {
        let top = self
            .replies
            .values()
            .filter(|(_, qc)| *qc)
            .map(|(b, _)| *b)
            .max()
            .unwrap_or(self.ballot);
        if top == self.ballot && self.ballot <= self.floor {
            // Elected, but acceptors promised more: bid above it (elected
            // with it next round).
            self.ballot = self.floor.next_for(self.id);
        }
        if top < self.leader {
            // The leader is gone or cut off from a quorum: outbid it and
            // elect in the next round.
            if self.ballot <= self.leader {
                self.ballot = self.leader.next_for(self.id);
            }
            self.leader = Ballot::ZERO;
        } else if top > self.leader {
            self.leader = top;
            out.push(ElectionEffect::Leader(top));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u64) -> NodeId {
        NodeId(i)
    }

    fn members() -> Vec<NodeId> {
        vec![n(1), n(2), n(3)]
    }

    fn reply(from: u64, round: u64, ballot: Ballot, qc: bool) -> ElectionInput {
        ElectionInput::Reply {
            from: n(from),
            msg: HeartbeatReply {
                round,
                ballot,
                quorum_connected: qc,
            },
        }
    }

    #[test]
    fn the_highest_quorum_connected_ballot_leads_and_a_lost_leader_is_outbid() {
        let mut e = ElectionCore::new(n(1), members(), 2);
        let mut out = Vec::new();
        e.step(ElectionInput::RoundEnd, &mut out); // the start: round 0 judged nothing
        assert!(e.quorum_connected());
        assert_eq!(e.leader(), None);
        out.clear();
        e.step(reply(2, 1, Ballot::new(0, n(2)), true), &mut out);
        e.step(reply(3, 1, Ballot::new(0, n(3)), false), &mut out);
        e.step(ElectionInput::RoundEnd, &mut out);
        // n3 is not quorum-connected: n2 leads.
        assert_eq!(e.leader(), Some(Ballot::new(0, n(2))));
        assert!(out.contains(&ElectionEffect::Leader(Ballot::new(0, n(2)))));
        // Next round n2 is silent and n3 still not quorum-connected: n1
        // outbids the lost leader, then leads.
        out.clear();
        e.step(reply(3, 2, Ballot::new(0, n(3)), false), &mut out);
        e.step(ElectionInput::RoundEnd, &mut out);
        assert_eq!(e.leader(), None);
        assert_eq!(e.ballot(), Ballot::new(1, n(1)));
        e.step(reply(3, 3, Ballot::new(0, n(3)), true), &mut out);
        e.step(ElectionInput::RoundEnd, &mut out);
        assert_eq!(e.leader(), Some(Ballot::new(1, n(1))));
    }

    /// At start the first round elects only when every member answered: a
    /// majority that missed the highest node would name a leader the next
    /// round replaces.
    #[test]
    fn the_first_round_waits_for_every_member_then_a_majority_elects() {
        let mut e = ElectionCore::new(n(1), members(), 2);
        let mut out = Vec::new();
        e.step(ElectionInput::RoundEnd, &mut out); // the start
        e.step(reply(2, 1, Ballot::new(0, n(2)), true), &mut out);
        out.clear();
        e.step(ElectionInput::RoundEnd, &mut out); // round 1: n3 is late
        assert_eq!(e.leader(), None, "n2 would be replaced by n3 next round");
        assert!(e.quorum_connected(), "a majority answered");
        assert!(!out.iter().any(|o| matches!(o, ElectionEffect::Leader(_))));
        e.step(reply(2, 2, Ballot::new(0, n(2)), true), &mut out);
        e.step(reply(3, 2, Ballot::new(0, n(3)), true), &mut out);
        e.step(ElectionInput::RoundEnd, &mut out); // round 2
        assert_eq!(e.leader(), Some(Ballot::new(0, n(3))));
        // Without n3 a majority elects from round 2 on.
        let mut e = ElectionCore::new(n(1), members(), 2);
        e.step(ElectionInput::RoundEnd, &mut out);
        for round in 1..=2 {
            e.step(reply(2, round, Ballot::new(0, n(2)), true), &mut out);
            e.step(ElectionInput::RoundEnd, &mut out);
        }
        assert_eq!(e.leader(), Some(Ballot::new(0, n(2))));
    }

    #[test]
    fn a_refused_ballot_is_raised_above_the_promise_and_stale_replies_ignored() {
        let mut e = ElectionCore::new(n(1), members(), 2);
        let mut out = Vec::new();
        let promised = Ballot::new(7, n(3));
        e.step(ElectionInput::BallotTooLow { promised }, &mut out);
        e.step(ElectionInput::RoundEnd, &mut out); // the start
        e.step(reply(2, 99, Ballot::new(50, n(2)), true), &mut out);
        e.step(ElectionInput::RoundEnd, &mut out); // round 1
        assert!(
            !e.quorum_connected(),
            "a reply from another round does not count"
        );
        // Elected (the top quorum-connected ballot is its own), it bids
        // above the promise, and leads with that bid the round after.
        e.step(reply(2, 2, Ballot::ZERO, true), &mut out);
        e.step(ElectionInput::RoundEnd, &mut out); // round 2
        assert_eq!(e.ballot(), Ballot::new(8, n(1)));
        e.step(reply(2, 3, Ballot::ZERO, true), &mut out);
        e.step(ElectionInput::RoundEnd, &mut out); // round 3
        assert_eq!(e.leader(), Some(Ballot::new(8, n(1))));
    }
}
