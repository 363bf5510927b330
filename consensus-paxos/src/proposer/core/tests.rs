//! The Proposer core alone: exact effects for each input.

use super::*;
use crate::messages::Accepted;
use crate::types::Configurations;
use crate::wiring::Change;
use consensus_actors::kv::KvCommand;
use consensus_actors::types::ClientId;

fn n(i: u64) -> NodeId {
    NodeId(i)
}

fn members() -> Vec<NodeId> {
    vec![n(1), n(2), n(3)]
}

fn request(v: &str) -> Request {
    Request {
        client: ClientId(1),
        command: KvCommand::put("k", v),
    }
}

fn broadcast_prepare(out: &[ProposerEffect]) -> Option<Prepare> {
    out.iter().find_map(|e| match e {
        ProposerEffect::Broadcast(PaxosMessage::Prepare(p)) => Some(p.clone()),
        _ => None,
    })
}

/// The Accepts proposed, once each: broadcast, or (thrifty) sent to each
/// acceptor of the counted quorum.
fn accepts(out: &[ProposerEffect]) -> Vec<Accept> {
    let mut seen = std::collections::BTreeSet::new();
    out.iter()
        .filter_map(|e| match e {
            ProposerEffect::Broadcast(PaxosMessage::Accept(a))
            | ProposerEffect::Send {
                msg: PaxosMessage::Accept(a),
                ..
            } => Some(a.clone()),
            _ => None,
        })
        .filter(|a| seen.insert((a.ballot, a.slot)))
        .collect()
}

#[test]
fn basic_paxos_persists_its_ballot_before_preparing_and_adopts_the_highest_accepted_value() {
    let mut p = ProposerCore::new(n(1), PaxosConfig::new(Mode::Basic, 3), members(), 1);
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Submit {
            token: 0,
            request: request("mine"),
        },
        &mut out,
    );
    let b = Ballot::new(1, n(1));
    assert_eq!(out[0], ProposerEffect::PersistBallot(b), "persisted first");
    let prep = broadcast_prepare(&out).unwrap();
    assert_eq!(
        (prep.ballot, prep.first, prep.last),
        (b, Slot(1), Some(Slot(1)))
    );
    // Two promises; one reports a value accepted at a lower ballot.
    let theirs = ValueRef::new(Value {
        batch: Some(BatchId {
            node: n(2),
            nonce: 9,
            seq: 0,
        }),
        requests: vec![request("theirs")],
        reconfig: None,
    });
    out.clear();
    p.step(
        1,
        ProposerInput::Promise {
            from: n(2),
            msg: Promise {
                ballot: b,
                accepted: vec![PValue {
                    slot: Slot(1),
                    ballot: Ballot::new(0, n(2)),
                    value: ValueRef::clone(&theirs),
                }],
                compacted: Slot(0),
            },
        },
        &mut out,
    );
    assert!(out.is_empty(), "one promise of three is no quorum");
    p.step(
        1,
        ProposerInput::Promise {
            from: n(3),
            msg: Promise {
                ballot: b,
                accepted: vec![],
                compacted: Slot(0),
            },
        },
        &mut out,
    );
    let a = accepts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].value, theirs, "P2c: the reported value, not ours");
    // It is chosen: our batch goes to slot 2, with a fresh phase 1.
    out.clear();
    p.step(
        2,
        ProposerInput::Decided {
            slot: Slot(1),
            batch: theirs.batch,
            next_undelivered: Slot(2),
            commit: None,
        },
        &mut out,
    );
    let prep = broadcast_prepare(&out).unwrap();
    assert_eq!(prep.first, Slot(2));
    assert!(prep.ballot > b);
    let _ = Accepted {
        ballot: b,
        slot: Slot(1),
    };
}

#[test]
fn a_refused_basic_proposer_backs_off_then_retries_higher_and_a_restart_never_reuses_a_ballot() {
    let cfg = PaxosConfig::new(Mode::Basic, 3);
    let mut p = ProposerCore::new(n(1), cfg.clone(), members(), 1);
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Submit {
            token: 0,
            request: request("x"),
        },
        &mut out,
    );
    let b = broadcast_prepare(&out).unwrap().ballot;
    out.clear();
    let promised = Ballot::new(5, n(2));
    p.step(
        1,
        ProposerInput::Nack {
            from: n(2),
            msg: Nack {
                ballot: b,
                promised,
            },
        },
        &mut out,
    );
    assert_eq!(p.role(), Role::Idle);
    // Within the back-off nothing is sent; after it, a ballot above the
    // refusal.
    let mut retried = None;
    for t in (1..=cfg.backoff_max_ms * 1000 + 1000).step_by(1000) {
        out.clear();
        p.step(t, ProposerInput::Tick, &mut out);
        if let Some(prep) = broadcast_prepare(&out) {
            retried = Some(prep.ballot);
            break;
        }
    }
    let retried = retried.expect("a retry after the back-off");
    assert!(retried > promised);
    // A new incarnation that persisted `retried` starts above it.
    let mut q = ProposerCore::new(n(1), cfg, members(), 2).above(retried);
    out.clear();
    q.step(
        0,
        ProposerInput::Submit {
            token: 0,
            request: request("y"),
        },
        &mut out,
    );
    assert!(broadcast_prepare(&out).unwrap().ballot > retried);
}

#[test]
fn a_multi_paxos_leader_batches_within_its_window_and_refuses_when_following() {
    let mut cfg = PaxosConfig::new(Mode::Multi, 3);
    cfg.window = 2;
    let mut p = ProposerCore::new(n(1), cfg, members(), 1);
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Submit {
            token: 0,
            request: request("a"),
        },
        &mut out,
    );
    assert!(matches!(
        &out[..],
        [ProposerEffect::Fail {
            error: ProposeError::NotLeader { leader: None },
            ..
        }]
    ));
    out.clear();
    let b = Ballot::new(3, n(1));
    p.step(0, ProposerInput::Leader { leader: b }, &mut out);
    assert_eq!(
        broadcast_prepare(&out).unwrap().last,
        None,
        "phase 1 for every later slot"
    );
    for from in [n(1), n(2)] {
        p.step(
            0,
            ProposerInput::Promise {
                from,
                msg: Promise {
                    ballot: b,
                    accepted: vec![],
                    compacted: Slot(0),
                },
            },
            &mut out,
        );
    }
    assert!(p.is_leader());
    out.clear();
    for t in 0..5 {
        p.step(
            0,
            ProposerInput::Submit {
                token: t,
                request: request("v"),
            },
            &mut out,
        );
    }
    // Two slots in flight (one command each), three commands queued.
    let sent = accepts(&out);
    assert_eq!(
        sent.iter().map(|a| a.slot).collect::<Vec<_>>(),
        [Slot(1), Slot(2)]
    );
    assert_eq!(p.queued(), 3);
    out.clear();
    let batch = sent[0].value.batch;
    p.step(
        0,
        ProposerInput::Decided {
            slot: Slot(1),
            batch,
            next_undelivered: Slot(2),
            commit: None,
        },
        &mut out,
    );
    // The freed slot takes the three queued commands as one batch.
    let a = accepts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].slot, a[0].value.requests.len()), (Slot(3), 3));
    // Another leader: in-flight batches abandoned (unknown), role dropped.
    out.clear();
    p.step(
        0,
        ProposerInput::Leader {
            leader: Ballot::new(4, n(2)),
        },
        &mut out,
    );
    assert!(out.iter().any(|e| matches!(
        e,
        ProposerEffect::Abandon {
            error: ProposeError::Unknown,
            ..
        }
    )));
    assert!(out.contains(&ProposerEffect::SteppedDown));
    assert!(!p.is_leader());
}

fn promise(from: u64, ballot: Ballot, compacted: u64) -> ProposerInput {
    ProposerInput::Promise {
        from: n(from),
        msg: Promise {
            ballot,
            accepted: vec![],
            compacted: Slot(compacted),
        },
    }
}

/// A promise naming a compaction point: the slots up to it are chosen and
/// no longer reported, so the proposer must not fill them. Basic Paxos
/// moves its attempt above the point; a Multi-Paxos leader starts its
/// window there. (Without the check both propose their own value in slot
/// 1, which may already hold another chosen value.)
#[test]
fn a_proposer_never_proposes_at_or_below_a_reported_compaction_point() {
    let mut p = ProposerCore::new(n(1), PaxosConfig::new(Mode::Basic, 3), members(), 1);
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Submit {
            token: 0,
            request: request("mine"),
        },
        &mut out,
    );
    let b = broadcast_prepare(&out).unwrap().ballot;
    out.clear();
    p.step(1, promise(2, b, 0), &mut out);
    p.step(1, promise(3, b, 7), &mut out);
    assert!(accepts(&out).is_empty(), "nothing proposed in slot 1");
    let again = broadcast_prepare(&out).expect("phase 1 again, higher up");
    assert_eq!((again.first, again.last), (Slot(8), Some(Slot(8))));
    out.clear();
    p.step(2, promise(2, again.ballot, 7), &mut out);
    p.step(2, promise(3, again.ballot, 7), &mut out);
    let a = accepts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].slot, Slot(8));

    // Multi-Paxos: recovery and new slots start above the point.
    let mut m = ProposerCore::new(n(1), PaxosConfig::new(Mode::Multi, 3), members(), 1);
    let leader = Ballot::new(1, n(1));
    out.clear();
    m.step(0, ProposerInput::Leader { leader }, &mut out);
    m.step(1, promise(1, leader, 5), &mut out);
    m.step(1, promise(2, leader, 0), &mut out);
    assert!(m.is_leader());
    assert!(accepts(&out).is_empty(), "no hole filled below the point");
    out.clear();
    m.step(
        2,
        ProposerInput::Submit {
            token: 1,
            request: request("next"),
        },
        &mut out,
    );
    let a = accepts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].slot, Slot(6));
}

/// Configuration changes (Paxos Made Simple §3, α = the window): the
/// leader proposes a change as a value of its own; a second change while
/// one is in flight is refused; once the change (chosen in slot 1) is
/// delivered, the slots before its first slot (1 + α) get no-ops, and
/// nothing is proposed from that slot on until a phase-1 quorum of the
/// new acceptors (3 of 4) promised the leader's ballot.
#[test]
fn a_configuration_change_takes_effect_alpha_slots_later_after_phase_1_with_the_new_acceptors() {
    let mut cfg = PaxosConfig::new(Mode::Multi, 3);
    cfg.window = 4;
    let mut p = ProposerCore::new(n(1), cfg, members(), 1);
    let mut out = Vec::new();
    let b = Ballot::new(1, n(1));
    p.step(0, ProposerInput::Leader { leader: b }, &mut out);
    p.step(0, promise(1, b, 0), &mut out);
    p.step(0, promise(2, b, 0), &mut out);
    assert!(p.is_leader());
    out.clear();
    p.step(
        1,
        ProposerInput::Reconfigure {
            token: 0,
            change: Change::Add(n(4)),
        },
        &mut out,
    );
    let a = accepts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].slot, Slot(1));
    assert_eq!(a[0].value.reconfig, Some(vec![n(1), n(2), n(3), n(4)]));
    let batch = a[0].value.batch;
    out.clear();
    p.step(
        1,
        ProposerInput::Reconfigure {
            token: 1,
            change: Change::Add(n(5)),
        },
        &mut out,
    );
    assert_eq!(
        out,
        [ProposerEffect::Fail {
            tokens: vec![1],
            error: ProposeError::ChangeInProgress
        }]
    );
    out.clear();
    // The change is chosen in slot 1: acceptors 1..4 from slot 5 on.
    let mut configs = Configurations::initial(&members());
    configs.change(Slot(1), 4, &[n(1), n(2), n(3), n(4)]);
    p.step(
        2,
        ProposerInput::Configured {
            configs: configs.clone(),
        },
        &mut out,
    );
    p.step(
        2,
        ProposerInput::Decided {
            slot: Slot(1),
            batch,
            next_undelivered: Slot(2),
            commit: None,
        },
        &mut out,
    );
    assert_eq!(p.targets(), [n(1), n(2), n(3), n(4)]);
    let noops: Vec<Slot> = accepts(&out)
        .iter()
        .filter(|a| a.value.is_noop())
        .map(|a| a.slot)
        .collect();
    assert_eq!(noops, [Slot(2), Slot(3), Slot(4)]);
    let prepares: Vec<NodeId> = out
        .iter()
        .filter_map(|e| match e {
            ProposerEffect::Send {
                to,
                msg: PaxosMessage::Prepare(pr),
            } if pr.first == Slot(5) && pr.ballot == b => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(prepares, [n(1), n(2), n(3), n(4)]);
    out.clear();
    // A command waits for the new acceptors' phase 1.
    p.step(
        3,
        ProposerInput::Submit {
            token: 2,
            request: request("next"),
        },
        &mut out,
    );
    assert!(accepts(&out).is_empty(), "slot 5 needs the new quorum");
    p.step(3, promise(1, b, 0), &mut out);
    p.step(3, promise(4, b, 0), &mut out);
    assert!(accepts(&out).is_empty(), "2 of 4 is no quorum");
    p.step(3, promise(2, b, 0), &mut out);
    let a = accepts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].slot, Slot(5));
}

/// A drained submission queue is one input: the commands fill the window's
/// free slots as batches (here one slot, all three commands), the ones
/// beyond `max_pending` are refused Busy, and a follower refuses them all
/// naming no leader it does not know.
#[test]
fn drained_submissions_are_batched_into_the_free_slots_and_bounded() {
    let mut cfg = PaxosConfig::new(Mode::Multi, 3);
    cfg.window = 1;
    cfg.max_pending = 4;
    let mut p = ProposerCore::new(n(1), cfg, members(), 1);
    let mut out = Vec::new();
    let drained = |tokens: std::ops::Range<u64>| ProposerInput::Submits {
        requests: tokens.map(|t| (t, request("v"))).collect(),
    };
    p.step(0, drained(0..2), &mut out);
    assert!(matches!(
        &out[..],
        [ProposerEffect::Fail {
            tokens,
            error: ProposeError::NotLeader { leader: None },
        }] if tokens == &[0, 1]
    ));
    out.clear();
    let b = Ballot::new(3, n(1));
    p.step(0, ProposerInput::Leader { leader: b }, &mut out);
    for from in [n(1), n(2)] {
        p.step(
            0,
            ProposerInput::Promise {
                from,
                msg: Promise {
                    ballot: b,
                    accepted: vec![],
                    compacted: Slot(0),
                },
            },
            &mut out,
        );
    }
    assert!(p.is_leader());
    out.clear();
    p.step(0, drained(10..13), &mut out);
    let a = accepts(&out);
    assert_eq!(a.len(), 1, "one slot in the window");
    assert_eq!((a[0].slot, a[0].value.requests.len()), (Slot(1), 3));
    assert!(out.contains(&ProposerEffect::Track {
        batch: a[0].value.batch.unwrap(),
        tokens: vec![10, 11, 12],
    }));
    out.clear();
    // The window is full: four wait, the other two are refused.
    p.step(0, drained(20..26), &mut out);
    assert!(accepts(&out).is_empty());
    assert_eq!(p.queued(), 4);
    assert_eq!(
        out,
        vec![ProposerEffect::Fail {
            tokens: vec![24, 25],
            error: ProposeError::Busy,
        }]
    );
}

/// Two configuration changes the leader learns of before its phase 1
/// reaches them (its Proposer's view of delivery lags its Learner's): each
/// configuration gets its own phase 1, in order. Nothing is proposed in
/// the second configuration's slots (from 5) before a quorum of its
/// acceptors promised, and a value one of them reports there is proposed
/// again, not a no-op; only then does the third configuration's phase 1
/// start. (Campaign seed 1710 with `--membership-changes`: the leader
/// prepared only the latest configuration, filled the middle one's slots
/// with no-ops and overwrote a chosen value.)
#[test]
fn two_pending_changes_get_one_phase_1_each_in_order() {
    let mut cfg = PaxosConfig::new(Mode::Multi, 3);
    cfg.window = 4;
    let mut p = ProposerCore::new(n(1), cfg, members(), 1);
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Decided {
            slot: Slot(2),
            batch: None,
            next_undelivered: Slot(3),
            commit: None,
        },
        &mut out,
    );
    let mut configs = Configurations::initial(&members());
    configs.change(Slot(1), 4, &[n(1), n(2), n(3), n(4)]);
    configs.change(Slot(5), 4, &[n(1), n(2), n(4)]);
    p.step(0, ProposerInput::Configured { configs }, &mut out);
    let b = Ballot::new(1, n(1));
    p.step(0, ProposerInput::Leader { leader: b }, &mut out);
    out.clear();
    p.step(1, promise(1, b, 0), &mut out);
    p.step(1, promise(2, b, 0), &mut out);
    assert!(p.is_leader());
    let slots: Vec<Slot> = accepts(&out).iter().map(|a| a.slot).collect();
    assert_eq!(slots, [Slot(3), Slot(4)], "nothing from slot 5 on yet");
    let prepares: Vec<(NodeId, Slot)> = out
        .iter()
        .filter_map(|e| match e {
            ProposerEffect::Send {
                to,
                msg: PaxosMessage::Prepare(pr),
            } => Some((*to, pr.first)),
            _ => None,
        })
        .collect();
    assert_eq!(
        prepares,
        [n(1), n(2), n(3), n(4)].map(|a| (a, Slot(5))),
        "phase 1 of the configuration from slot 5, not the latest"
    );
    out.clear();
    p.step(
        2,
        ProposerInput::Submit {
            token: 0,
            request: request("waits"),
        },
        &mut out,
    );
    assert!(accepts(&out).is_empty(), "slot 5 needs its own quorum");
    // A quorum of 1..=4 promises; n3 accepted a value in slot 6 earlier.
    let theirs = ValueRef::new(Value {
        batch: Some(BatchId {
            node: n(2),
            nonce: 9,
            seq: 0,
        }),
        requests: vec![request("theirs")],
        reconfig: None,
    });
    p.step(3, promise(1, b, 0), &mut out);
    p.step(3, promise(2, b, 0), &mut out);
    p.step(
        3,
        ProposerInput::Promise {
            from: n(3),
            msg: Promise {
                ballot: b,
                accepted: vec![PValue {
                    slot: Slot(6),
                    ballot: Ballot::new(0, n(2)),
                    value: ValueRef::clone(&theirs),
                }],
                compacted: Slot(0),
            },
        },
        &mut out,
    );
    let a = accepts(&out);
    assert_eq!(
        a.iter().map(|a| a.slot).collect::<Vec<_>>(),
        [Slot(5), Slot(6)],
        "the window (first undelivered 3 + α 4) ends at 7"
    );
    assert!(a[0].value.is_noop());
    assert_eq!(a[1].value, theirs, "P2c in the second configuration");
    let next: Vec<(NodeId, Slot)> = out
        .iter()
        .filter_map(|e| match e {
            ProposerEffect::Send {
                to,
                msg: PaxosMessage::Prepare(pr),
            } => Some((*to, pr.first)),
            _ => None,
        })
        .collect();
    assert_eq!(next, [n(1), n(2), n(4)].map(|a| (a, Slot(9))));
}

/// A leader elected with `members()` acceptors, with nothing proposed.
fn multi_leader(cfg: PaxosConfig) -> ProposerCore {
    let mut p = ProposerCore::new(n(1), cfg, members(), 1);
    let mut out = Vec::new();
    let b = Ballot::new(1, n(1));
    p.step(0, ProposerInput::Leader { leader: b }, &mut out);
    for from in [n(1), n(2), n(3)] {
        p.step(
            0,
            ProposerInput::Promise {
                from,
                msg: Promise {
                    ballot: b,
                    accepted: vec![],
                    compacted: Slot(0),
                },
            },
            &mut out,
        );
    }
    assert!(p.is_leader());
    p
}

/// Proposes one command and decides its slot; the Accepts sent, by
/// destination.
fn propose_and_decide(p: &mut ProposerCore, token: u64) -> Vec<(NodeId, PaxosMessage)> {
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Submit {
            token,
            request: request("v"),
        },
        &mut out,
    );
    let a = accepts(&out);
    assert_eq!(a.len(), 1);
    let mut sent = Vec::new();
    for e in &out {
        match e {
            ProposerEffect::Broadcast(m @ PaxosMessage::Accept(_)) => {
                for to in members() {
                    sent.push((to, m.clone()));
                }
            }
            ProposerEffect::Send { to, msg } => sent.push((*to, msg.clone())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Decided {
            slot: a[0].slot,
            batch: a[0].value.batch,
            next_undelivered: Slot(a[0].slot.0 + 1),
            commit: None,
        },
        &mut out,
    );
    sent
}

/// Thrifty phase 2: the first THRIFTY_AFTER slots of a ballot go to every
/// acceptor; once the learner named the quickest, each Accept goes to the
/// leader and the quickest other only, the third acceptor gets them in one
/// LazyAccepts on the tick, and a retransmission asks everyone again.
#[test]
fn a_thrifty_leader_counts_on_the_quickest_and_batches_the_others() {
    let mut cfg = PaxosConfig::new(Mode::Multi, 3);
    cfg.thrifty = true;
    let mut p = multi_leader(cfg);
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Acked {
            acceptors: vec![n(1), n(3)],
        },
        &mut out,
    );
    for t in 0..THRIFTY_AFTER as u64 {
        let sent = propose_and_decide(&mut p, t);
        let to: Vec<NodeId> = sent.iter().map(|(to, _)| *to).collect();
        assert_eq!(to, members(), "slot {t}: every acceptor before thrift");
    }
    // Thrifty now: n3 (the quickest other) and n1 itself; n2 waits.
    let sent = propose_and_decide(&mut p, 100);
    let mut to: Vec<NodeId> = sent.iter().map(|(to, _)| *to).collect();
    to.sort();
    assert_eq!(to, [n(1), n(3)]);
    let mut slot_sent = None;
    for t in 101..104 {
        let mut out = Vec::new();
        p.step(
            0,
            ProposerInput::Submit {
                token: t,
                request: request("w"),
            },
            &mut out,
        );
        slot_sent.get_or_insert(accepts(&out)[0].slot);
    }
    let mut out = Vec::new();
    p.step(1_000, ProposerInput::Tick, &mut out);
    let lazy: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            ProposerEffect::Send {
                to,
                msg: PaxosMessage::LazyAccepts(l),
            } => Some((*to, l.accepts.iter().map(|a| a.slot).collect::<Vec<_>>())),
            _ => None,
        })
        .collect();
    assert_eq!(lazy.len(), 1, "one LazyAccepts, for n2: {lazy:?}");
    assert_eq!(lazy[0].0, n(2));
    assert_eq!(
        lazy[0].1.len(),
        4,
        "the thrifty slot and the three in flight"
    );
    // Nothing decided for a retry period: everyone is asked again, and
    // thrift waits for THRIFTY_AFTER decisions anew.
    let mut out = Vec::new();
    let retry_us = PaxosConfig::new(Mode::Multi, 3).retry_ms * 1000;
    p.step(1_000 + retry_us, ProposerInput::Tick, &mut out);
    let resent = out
        .iter()
        .filter(|e| matches!(e, ProposerEffect::Broadcast(PaxosMessage::Accept(_))))
        .count();
    assert_eq!(resent, 3, "the three slots in flight, to every acceptor");
    let sent = propose_and_decide(&mut p, 200);
    assert_eq!(sent.len(), 3, "not thrifty after a retransmission");
}

/// With thrift turned off, every Accept goes to every acceptor.
#[test]
fn a_leader_without_thrift_sends_every_accept_to_every_acceptor() {
    let mut cfg = PaxosConfig::new(Mode::Multi, 3);
    cfg.thrifty = false;
    let mut p = multi_leader(cfg);
    let mut out = Vec::new();
    p.step(
        0,
        ProposerInput::Acked {
            acceptors: vec![n(1), n(3)],
        },
        &mut out,
    );
    for t in 0..(THRIFTY_AFTER as u64 + 4) {
        assert_eq!(propose_and_decide(&mut p, t).len(), 3);
    }
}

/// A follower cut off from all but the new leader cannot complete an
/// election round and keeps the old leader; the new leader's Accepts,
/// seen by its learner, make it name the new one to clients.
#[test]
fn a_follower_names_the_leader_whose_accepts_it_sees() {
    let mut p = ProposerCore::new(n(1), PaxosConfig::new(Mode::Multi, 3), members(), 1);
    let mut out = Vec::new();
    let old = Ballot::new(2, n(3));
    p.step(0, ProposerInput::Leader { leader: old }, &mut out);
    assert_eq!(p.leader(), Some(n(3)));
    p.step(
        0,
        ProposerInput::Leading {
            ballot: Ballot::new(3, n(2)),
        },
        &mut out,
    );
    assert_eq!(p.leader(), Some(n(2)), "the higher ballot's node");
    // A later election of a higher ballot wins again.
    p.step(
        0,
        ProposerInput::Leader {
            leader: Ballot::new(4, n(3)),
        },
        &mut out,
    );
    assert_eq!(p.leader(), Some(n(3)));
    // And a client of this follower is told so.
    out.clear();
    p.step(
        0,
        ProposerInput::Submit {
            token: 9,
            request: request("x"),
        },
        &mut out,
    );
    assert!(
        matches!(
            &out[..],
            [ProposerEffect::Fail {
                error: ProposeError::NotLeader { leader: Some(l) },
                ..
            }] if *l == n(3)
        ),
        "{out:?}"
    );
}
