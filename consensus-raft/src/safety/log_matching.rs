//! Raft **Log Matching** (Raft paper §5.3, Figure 3): "if two logs contain
//! an entry with the same index and term, then the logs are identical in
//! all entries up through the given index".
//!
//! # How it is checked in O(1) per entry
//!
//! The property holds for every pair of logs, at every time, if and only if
//! every entry identified by (index, term), wherever and whenever it is
//! written, has
//!
//! 1. the same command digest, and
//! 2. the same term at `index - 1` in front of it (0 for index 1).
//!
//! (If two logs hold (i, t), by 2 they hold entries of the same term at
//! i − 1, so by induction they agree all the way down, and by 1 on every
//! command; the converse is immediate.) This is the invariant that Raft's
//! AppendEntries consistency check maintains. So the checker remembers, for
//! each (index, term) ever written, the first digest and predecessor term
//! seen, and compares every later write of that (index, term) with it: one
//! lookup in a table indexed by log index per entry, no matter how logs are truncated, compacted or
//! replaced by snapshots. The per-node mirror supplies the predecessor term.
//!
//! Two structural facts of Raft logs are checked alongside: terms never
//! decrease along a log, and a log has no holes (an entry written beyond
//! `last_index + 1` is reported, and the mirror restarts from it).

use super::index_map::IndexMap;
use super::kinds;
use super::{index_position, term_epoch};
use super::{
    AppendOutcome, AppendedEntries, EntryWrite, EventKinds, NodeLog, RaftLogs, SafetyEvent,
    Violation,
};
use consensus_actors::safety::fmt_digest;
use consensus_actors::types::{LogIndex, NodeId, Term};
/// What the first write of an (index, term) said.
#[derive(Clone, Copy, Debug)]
struct EntryFact {
    digest: u64,
    /// Term at `index - 1`; `None` when the writer's log had an unknown
    /// prefix there.
    prev_term: Option<Term>,
    node: NodeId,
}

/// What the first write of each term at one index said. Almost every index
/// is only ever written in one term, so that one is held inline and the
/// others (written by deposed leaders, later replaced) in a list that does
/// not allocate until needed.
#[derive(Clone, Debug)]
struct IndexFacts {
    term: Term,
    fact: EntryFact,
    others: Vec<(Term, EntryFact)>,
}

impl IndexFacts {
    /// The fact for `term` at this index, if one was recorded.
    fn get_mut(&mut self, term: Term) -> Option<&mut EntryFact> {
        if self.term == term {
            return Some(&mut self.fact);
        }
        self.others
            .iter_mut()
            .find(|(t, _)| *t == term)
            .map(|(_, f)| f)
    }

    /// How many terms have a fact here.
    fn len(&self) -> usize {
        1 + self.others.len()
    }
}

/// What the first write of each (index, term) said: a dense table by log
/// index (one bounds check per lookup, no hashing), each slot holding the
/// facts of the few terms ever written there.
type FactTable = IndexMap<IndexFacts>;

/// Same index and term ⇒ identical logs up to that index.
#[derive(Clone, Debug, Default)]
pub struct RaftLogMatching {
    /// Its own mirror, used only when it runs outside a checker.
    logs: RaftLogs,
    facts: FactTable,
}

impl RaftLogMatching {
    /// How many distinct (index, term) entries have been seen.
    pub fn entries_seen(&self) -> usize {
        self.facts
            .range_from(LogIndex::ZERO)
            .map(|(_, at_index)| at_index.len())
            .sum()
    }

    /// Checks one written entry (index, term, digest) of `node`, then
    /// writes it to the node's mirrored `log`.
    /// Checks the entries of an append event of `node` against the facts,
    /// with `logs` as they were before the event.
    fn check(
        facts: &mut FactTable,
        at_us: u64,
        ev: &SafetyEvent,
        logs: &RaftLogs,
        out: &mut Vec<Violation>,
    ) {
        let SafetyEvent::Protocol(raft) = ev else {
            return;
        };
        let Some((node, entries)) = raft.appended_entries() else {
            return;
        };
        let empty = NodeLog::default();
        let log = logs.get(node).unwrap_or(&empty);
        // The usual append extends the log: every entry lands at
        // `last + 1`, on top of the previous one (or, for the first, of the
        // log's last entry), exactly what the walk would report, without
        // its per-entry case analysis.
        let last = log.last_index();
        if let AppendedEntries::Batch { next, rest } = &entries {
            if *next == last.next() {
                let mut prev_term = log.term_at(last);
                let mut index = *next;
                for &(term, digest) in rest.clone() {
                    let write = EntryWrite {
                        index,
                        term,
                        digest,
                        last_before: index.prev(),
                        prev_term,
                        outcome: AppendOutcome::Extended,
                    };
                    Self::check_entry(facts, at_us, ev, node, &write, out);
                    prev_term = Some(term);
                    index = index.next();
                }
                return;
            }
        }
        for write in log.walk_append(entries) {
            Self::check_entry(facts, at_us, ev, node, &write, out);
        }
    }

    /// Checks one written entry of `node`, seen with the log as it was just
    /// before the write, and records its (index, term) fact.
    fn check_entry(
        facts: &mut FactTable,
        at_us: u64,
        ev: &SafetyEvent,
        node: NodeId,
        write: &EntryWrite,
        out: &mut Vec<Violation>,
    ) {
        let EntryWrite {
            index,
            term,
            digest,
            last_before: last,
            ..
        } = *write;
        let here = |detail: String, nodes: &[NodeId]| {
            Violation::new(NAME, at_us, ev, detail)
                .with_nodes(nodes.iter().copied())
                .with_epoch(term_epoch(term))
                .with_position(index_position(index))
        };
        if index == LogIndex::ZERO {
            out.push(here(
                format!("{node} wrote an entry at index 0 (the first index is 1)"),
                &[node],
            ));
            return;
        }
        if matches!(write.outcome, AppendOutcome::Gap { .. }) {
            out.push(here(
                format!("{node} wrote {index} but its log ends at {last}: a log has no holes"),
                &[node],
            ));
        }
        let prev_term = write.prev_term;
        if let Some(prev) = prev_term.filter(|p| *p > term) {
            out.push(here(
                format!(
                    "{node} wrote an entry of {term} at {index} after one of {prev}: terms never decrease along a log"
                ),
                &[node],
            ));
        }
        let fresh = EntryFact {
            digest,
            prev_term,
            node,
        };
        let slot = match facts.get_mut(index) {
            None => {
                facts.get_or_insert(
                    index,
                    IndexFacts {
                        term,
                        fact: fresh,
                        others: Vec::new(),
                    },
                );
                None
            }
            Some(at_index) => match at_index.get_mut(term) {
                Some(fact) => Some(fact),
                None => {
                    at_index.others.push((term, fresh));
                    None
                }
            },
        };
        if let Some(fact) = slot {
            if fact.digest != digest {
                out.push(here(
                    format!(
                        "{node} holds {} at {index} {term} where {} holds {}",
                        fmt_digest(digest),
                        fact.node,
                        fmt_digest(fact.digest)
                    ),
                    &[fact.node, node],
                ));
            }
            match (fact.prev_term, prev_term) {
                (Some(a), Some(b)) if a != b => out.push(here(
                    format!(
                        "logs differ below {index} {term}: {node} has an entry of {b} at {} where {} has one of {a}",
                        index.prev(),
                        fact.node
                    ),
                    &[fact.node, node],
                )),
                (None, Some(b)) => fact.prev_term = Some(b),
                _ => {}
            }
        }
    }
}

/// The invariant's name.
const NAME: &str = "raft-log-matching";

raft_log_invariant!(
    RaftLogMatching,
    name: NAME,
    state: facts,
    check: Self::check,
    kinds: kinds::APPENDED.or(kinds::APPENDED_BATCH),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::test_support::{append, batch, run_invariant};
    use crate::safety::Invariant;
    use crate::safety::RaftSafetyEvent;

    const N1: NodeId = NodeId(1);
    const N2: NodeId = NodeId(2);
    const N3: NodeId = NodeId(3);

    fn run(events: &[SafetyEvent]) -> Vec<Violation> {
        run_invariant(&mut RaftLogMatching::default(), events)
    }

    /// §5.3: followers that repair divergent suffixes (Figure 7 style) keep
    /// the property; snapshots and crashes do not confuse the check.
    #[test]
    fn replicated_and_repaired_logs_pass() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11), (2, 12)]),
            batch(N2, 1, &[(1, 10), (1, 11)]),
            // n3 got an entry of term 1 the others never kept? No: it holds
            // a stale entry from a deposed leader of t1 at index 3.
            batch(N3, 1, &[(1, 10), (1, 11), (1, 99)]),
            // The leader of t3 repairs n3: index 3 becomes (t2, 12).
            append(N3, 3, 2, 12),
            append(N1, 4, 3, 13),
            batch(N2, 3, &[(2, 12), (3, 13)]),
            RaftSafetyEvent::SnapshotInstalled {
                node: N2,
                last_index: LogIndex(3),
                last_term: Term(2),
            }
            .into(),
            SafetyEvent::Crashed { node: N2 },
            append(N2, 5, 3, 14),
            RaftSafetyEvent::Truncated {
                node: N3,
                from_index: LogIndex(4),
            }
            .into(),
            append(N3, 4, 3, 13),
            append(N3, 5, 3, 14),
            // A snapshot on a fresh node, then the entries after it.
            RaftSafetyEvent::SnapshotInstalled {
                node: NodeId(4),
                last_index: LogIndex(4),
                last_term: Term(3),
            }
            .into(),
            append(NodeId(4), 5, 3, 14),
        ]);
        assert!(out.is_empty(), "{out:?}");
    }

    /// Figure 3: two entries with the same index and term but different
    /// commands are a violation naming both nodes.
    #[test]
    fn different_commands_at_the_same_index_and_term_are_reported() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (1, 11)]),
            batch(N2, 1, &[(1, 10), (1, 77)]),
        ]);
        assert_eq!(out.len(), 1);
        let v = &out[0];
        assert_eq!(v.invariant, "raft-log-matching");
        assert_eq!(v.nodes, vec![N1, N2]);
        assert_eq!(v.epoch, Some(term_epoch(Term(1))));
        assert_eq!(v.position, Some(index_position(LogIndex(2))));
        assert_eq!(
            v.detail,
            "n2 holds #000000000000004d at i2 t1 where n1 holds #000000000000000b"
        );
    }

    /// Figure 3: the same (index, term) on top of different prefixes is a
    /// violation even when the entries themselves are equal.
    #[test]
    fn equal_entries_on_different_prefixes_are_reported() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (2, 11), (3, 12)]),
            batch(N2, 1, &[(1, 10), (1, 20), (3, 12)]),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].position, Some(index_position(LogIndex(3))));
        assert_eq!(
            out[0].detail,
            "logs differ below i3 t3: n2 has an entry of t1 at i2 where n1 has one of t2"
        );
    }

    /// The prefix rule holds across a snapshot: the snapshot's last term is
    /// the predecessor of the next entry.
    #[test]
    fn a_prefix_mismatch_behind_a_snapshot_is_reported() {
        let out = run(&[
            batch(N1, 1, &[(1, 10), (2, 11), (2, 12)]),
            RaftSafetyEvent::SnapshotInstalled {
                node: N2,
                last_index: LogIndex(2),
                last_term: Term(1),
            }
            .into(),
            append(N2, 3, 2, 12),
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nodes, vec![N1, N2]);
        assert_eq!(out[0].position, Some(index_position(LogIndex(3))));
    }

    /// A divergence is also caught between a log written long ago and a log
    /// written now: (index, term) identifies one entry forever.
    #[test]
    fn a_divergence_from_an_overwritten_entry_is_still_caught() {
        let out = run(&[
            append(N1, 1, 1, 10),
            append(N1, 1, 2, 20), // n1 replaces it
            append(N2, 1, 1, 11), // n2 writes a different (i1, t1)
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].nodes, vec![N1, N2]);
    }

    #[test]
    fn decreasing_terms_holes_and_index_zero_are_reported() {
        let out = run(&[
            append(N1, 1, 2, 10),
            append(N1, 2, 1, 11),
            append(N1, 5, 2, 12),
            append(N1, 0, 2, 13),
        ]);
        let details: Vec<&str> = out.iter().map(|v| v.detail.as_str()).collect();
        assert_eq!(
            details,
            vec![
                "n1 wrote an entry of t1 at i2 after one of t2: terms never decrease along a log",
                "n1 wrote i5 but its log ends at i2: a log has no holes",
                "n1 wrote an entry at index 0 (the first index is 1)",
            ]
        );
    }

    #[test]
    fn each_index_and_term_is_remembered_once() {
        let mut inv = RaftLogMatching::default();
        let mut out = Vec::new();
        inv.observe(0, &batch(N1, 1, &[(1, 1), (1, 2)]), &mut out);
        inv.observe(1, &batch(N2, 1, &[(1, 1), (1, 2)]), &mut out);
        assert!(out.is_empty());
        assert_eq!(inv.entries_seen(), 2);
    }

    #[test]
    fn facts_of_several_terms_at_one_index_are_kept_apart() {
        let mut inv = RaftLogMatching::default();
        let mut out = Vec::new();
        // i2 is written in t1 (n1), then in t2 and t3 (n2 replacing its own
        // entry), then each again by n3: every (index, term) keeps its own
        // digest, so only n3's different t2 command is reported.
        inv.observe(0, &batch(N1, 1, &[(1, 1), (1, 2)]), &mut out);
        inv.observe(1, &batch(N2, 1, &[(1, 1), (2, 3)]), &mut out);
        inv.observe(2, &append(N2, 2, 3, 4), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(inv.entries_seen(), 4);
        inv.observe(3, &batch(N3, 1, &[(1, 1), (3, 4)]), &mut out);
        inv.observe(4, &append(N3, 2, 1, 2), &mut out);
        assert!(out.is_empty(), "{out:?}");
        inv.observe(5, &append(N3, 2, 2, 9), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].position, Some(index_position(LogIndex(2))));
        assert_eq!(out[0].epoch, Some(term_epoch(Term(2))));
        assert_eq!(out[0].nodes, vec![N2, N3]);
        assert_eq!(inv.entries_seen(), 4);
    }
}
