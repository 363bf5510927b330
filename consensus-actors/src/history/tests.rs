//! Tests of the history types, the recorder and the checker; the checker is
//! cross-checked against the exhaustive one in [`super::brute`].

use super::*;
use crate::kv::{KvStore, StateMachine};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Builds histories one operation at a time; ids in insertion order, client
/// = id unless given.
#[derive(Default)]
struct B(Vec<Operation>);

impl B {
    fn push(mut self, command: KvCommand, invoke_us: u64, outcome: Outcome) -> Self {
        let id = self.0.len() as u64;
        self.0.push(Operation {
            id: OpId(id),
            client: ClientId(id),
            command,
            invoke_us,
            outcome,
        });
        self
    }

    fn ok(
        self,
        command: KvCommand,
        output: impl Into<ObservedOutput>,
        inv: u64,
        done: u64,
    ) -> Self {
        self.push(
            command,
            inv,
            Outcome::Ok {
                output: output.into(),
                complete_us: done,
            },
        )
    }

    fn fail(self, command: KvCommand, inv: u64, done: u64) -> Self {
        self.push(command, inv, Outcome::Fail { complete_us: done })
    }

    fn unknown(self, command: KvCommand, inv: u64) -> Self {
        self.push(command, inv, Outcome::Unknown { gave_up_us: None })
    }

    fn history(self) -> History {
        History { operations: self.0 }
    }
}

fn put(v: &str) -> KvCommand {
    KvCommand::put("x", v)
}

fn get() -> KvCommand {
    KvCommand::get("x")
}

fn read(v: Option<&str>) -> KvOutput {
    KvOutput::Value(v.map(str::to_string))
}

/// Checks with the real checker and the brute-force one, asserts they
/// agree, and returns the verdict.
fn verdict(h: &History) -> Verdict {
    let report = check_history_with(h, &CheckOptions::unlimited());
    assert_eq!(
        report.linearizable,
        brute::linearizable(h),
        "checker and brute force disagree on {h:#?}\n{report}"
    );
    report.verdict
}

use Verdict::{Linearizable as LIN, NotLinearizable as NOT};

#[test]
fn empty_and_sequential_histories_are_linearizable() {
    let empty = check_history(&History::default());
    assert_eq!(
        (empty.verdict, empty.operations, empty.keys, empty.steps),
        (LIN, 0, 0, 0)
    );
    assert!(empty.linearizable && empty.per_key.is_empty());
    let h = B::default()
        .ok(get(), read(None), 0, 1)
        .ok(put("1"), KvOutput::Ok, 2, 3)
        .ok(get(), read(Some("1")), 4, 5)
        .ok(KvCommand::cas("x", Some("1"), "2"), KvOutput::CasOk, 6, 7)
        .ok(KvCommand::delete("x"), KvOutput::Deleted(true), 8, 9)
        .ok(KvCommand::delete("x"), KvOutput::Deleted(false), 10, 11)
        .ok(KvCommand::cas("x", None, "3"), KvOutput::CasOk, 12, 13)
        .ok(
            KvCommand::cas("x", None, "4"),
            KvOutput::CasFailed(Some("3".into())),
            14,
            15,
        )
        .history();
    assert_eq!(verdict(&h), LIN);
    let report = check_history(&h);
    assert_eq!((report.operations, report.keys), (8, 1));
    assert_eq!(report.per_key[0].operations, 8);
}

#[test]
fn concurrent_read_may_see_either_value() {
    for seen in [None, Some("1")] {
        let h = B::default()
            .ok(put("1"), KvOutput::Ok, 0, 10)
            .ok(get(), read(seen), 5, 15)
            .history();
        assert_eq!(verdict(&h), LIN, "read {seen:?}");
    }
}

#[test]
fn stale_read_is_not_linearizable_and_explained() {
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 10)
        .ok(get(), read(None), 20, 30)
        .history();
    assert_eq!(verdict(&h), NOT);
    // The unique-values pass decides it; with no step to spare for the
    // short search, its own certificate explains it.
    let report = check_history_with(&h, &CheckOptions::default().with_max_steps_per_key(1));
    assert_eq!(report.verdict, NOT);
    assert!(report.per_key[0].reductions.unique_values);
    let e = report.per_key[0].explanation.clone().unwrap();
    assert_eq!(e.blocked, OpId(1));
    assert!(
        e.summary
            .contains("op0 c0 put(\"x\", \"1\") -> Ok [0, 10] returned before op1"),
        "{}",
        e.summary
    );
    // Otherwise a short search finds the longest linearizable prefix.
    let report = check_history(&h);
    assert!(report.per_key[0].reductions.unique_values);
    assert_eq!(report.violations().count(), 1);
    let e = report.per_key[0].explanation.clone().unwrap();
    assert_eq!(e.longest_prefix, vec![OpId(0)]);
    assert_eq!(e.value_after_prefix.as_deref(), Some("1"));
    assert_eq!(e.blocked, OpId(1));
    assert_eq!(e.candidates, vec![OpId(1)]);
    assert!(e.summary.contains("key \"x\""), "{}", e.summary);
    assert!(e.summary.contains("op1"), "{}", e.summary);
    assert!(
        e.summary
            .contains("prefix has 1 of its 2 operations and leaves the value \"1\""),
        "{}",
        e.summary
    );
    assert!(report.to_string().contains(&e.summary));
}

#[test]
fn lost_write_is_not_linearizable() {
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 10)
        .ok(put("2"), KvOutput::Ok, 20, 30)
        .ok(get(), read(Some("1")), 40, 50)
        .history();
    assert_eq!(verdict(&h), NOT);
    // Had the writes overlapped, "1" could have been last.
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 25)
        .ok(put("2"), KvOutput::Ok, 20, 30)
        .ok(get(), read(Some("1")), 40, 50)
        .history();
    assert_eq!(verdict(&h), LIN);
}

#[test]
fn read_of_a_value_never_written_is_not_linearizable() {
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 10)
        .ok(get(), read(Some("7")), 5, 15)
        .history();
    assert_eq!(verdict(&h), NOT);
}

#[test]
fn reads_may_not_go_back_in_time() {
    // Two reads ordered in real time see new then old: not linearizable,
    // though each alone overlaps the write.
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 100)
        .ok(get(), read(Some("1")), 10, 20)
        .ok(get(), read(None), 30, 40)
        .history();
    assert_eq!(verdict(&h), NOT);
}

#[test]
fn cas_anomalies() {
    let cas = |e: Option<&str>, n: &str| KvCommand::cas("x", e, n);
    // Two CAS from the same expected value cannot both succeed.
    let h = B::default()
        .ok(put("a"), KvOutput::Ok, 0, 1)
        .ok(cas(Some("a"), "b"), KvOutput::CasOk, 2, 10)
        .ok(cas(Some("a"), "c"), KvOutput::CasOk, 3, 11)
        .history();
    assert_eq!(verdict(&h), NOT);
    // One of them failing, seeing the other's value, is fine.
    let h = B::default()
        .ok(put("a"), KvOutput::Ok, 0, 1)
        .ok(cas(Some("a"), "b"), KvOutput::CasOk, 2, 10)
        .ok(
            cas(Some("a"), "c"),
            KvOutput::CasFailed(Some("b".into())),
            3,
            11,
        )
        .history();
    assert_eq!(verdict(&h), LIN);
    // ...but not reporting a value that was never there.
    let h = B::default()
        .ok(put("a"), KvOutput::Ok, 0, 1)
        .ok(cas(Some("a"), "b"), KvOutput::CasOk, 2, 10)
        .ok(
            cas(Some("a"), "c"),
            KvOutput::CasFailed(Some("z".into())),
            3,
            11,
        )
        .history();
    assert_eq!(verdict(&h), NOT);
    // A CAS that fails although the register certainly held the expected value.
    let h = B::default()
        .ok(put("a"), KvOutput::Ok, 0, 1)
        .ok(
            cas(Some("a"), "b"),
            ObservedOutput::CasFailedUnreported,
            2,
            3,
        )
        .history();
    assert_eq!(verdict(&h), NOT);
    // An unreported failure matches any other value.
    let h = B::default()
        .ok(put("q"), KvOutput::Ok, 0, 1)
        .ok(
            cas(Some("a"), "b"),
            ObservedOutput::CasFailedUnreported,
            2,
            3,
        )
        .ok(get(), read(Some("q")), 4, 5)
        .history();
    assert_eq!(verdict(&h), LIN);
    // A CAS that succeeded but whose new value is not what a later read sees.
    let h = B::default()
        .ok(cas(None, "n"), KvOutput::CasOk, 0, 1)
        .ok(get(), read(None), 2, 3)
        .history();
    assert_eq!(verdict(&h), NOT);
}

#[test]
fn delete_semantics() {
    let del = || KvCommand::delete("x");
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 1)
        .ok(del(), KvOutput::Deleted(true), 2, 3)
        .ok(get(), read(None), 4, 5)
        .history();
    assert_eq!(verdict(&h), LIN);
    // Deleting a key that certainly exists cannot report it absent.
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 1)
        .ok(del(), KvOutput::Deleted(false), 2, 3)
        .history();
    assert_eq!(verdict(&h), NOT);
    // The value does not survive a completed delete.
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 1)
        .ok(del(), KvOutput::Deleted(true), 2, 3)
        .ok(get(), read(Some("1")), 4, 5)
        .history();
    assert_eq!(verdict(&h), NOT);
    // Two deletes of one value cannot both find it.
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 1)
        .ok(del(), KvOutput::Deleted(true), 2, 10)
        .ok(del(), KvOutput::Deleted(true), 3, 11)
        .history();
    assert_eq!(verdict(&h), NOT);
}

#[test]
fn unknown_outcome_may_have_taken_effect() {
    let h = B::default()
        .unknown(put("1"), 0)
        .ok(get(), read(Some("1")), 10, 20)
        .history();
    assert_eq!(verdict(&h), LIN);
}

#[test]
fn unknown_outcome_may_not_have_taken_effect() {
    let h = B::default()
        .unknown(put("1"), 0)
        .ok(get(), read(None), 10, 20)
        .ok(get(), read(None), 30, 40)
        .history();
    assert_eq!(verdict(&h), LIN);
    // ...or may take effect late, after later reads.
    let h = B::default()
        .unknown(put("1"), 0)
        .ok(get(), read(None), 10, 20)
        .ok(get(), read(Some("1")), 30, 40)
        .history();
    assert_eq!(verdict(&h), LIN);
}

#[test]
fn unknown_outcome_takes_effect_at_most_once_and_not_before_invocation() {
    // Once seen, an unknown write cannot be un-done.
    let h = B::default()
        .unknown(put("1"), 0)
        .ok(get(), read(Some("1")), 10, 20)
        .ok(get(), read(None), 30, 40)
        .history();
    assert_eq!(verdict(&h), NOT);
    // It cannot take effect before it was invoked.
    let h = B::default()
        .ok(get(), read(Some("1")), 0, 5)
        .unknown(put("1"), 10)
        .history();
    assert_eq!(verdict(&h), NOT);
    // An unknown delete may explain a missing value.
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 1)
        .unknown(KvCommand::delete("x"), 2)
        .ok(get(), read(None), 10, 20)
        .history();
    assert_eq!(verdict(&h), LIN);
}

#[test]
fn failed_operations_are_ignored() {
    let h = B::default()
        .fail(put("1"), 0, 5)
        .ok(get(), read(Some("1")), 10, 20)
        .history();
    assert_eq!(verdict(&h), NOT);
    let h = B::default()
        .fail(put("1"), 0, 5)
        .ok(get(), read(None), 10, 20)
        .history();
    assert_eq!(verdict(&h), LIN);
    assert_eq!(check_history(&h).per_key[0].operations, 1);
}

#[test]
fn keys_are_checked_independently_and_noops_constrain_nothing() {
    let h = B::default()
        .ok(KvCommand::put("a", "1"), KvOutput::Ok, 0, 10)
        .ok(KvCommand::put("b", "1"), KvOutput::Ok, 0, 10)
        .ok(KvCommand::Noop, KvOutput::Ok, 0, 100)
        .ok(KvCommand::get("a"), read(Some("1")), 20, 30)
        .ok(KvCommand::get("b"), read(None), 20, 30)
        .ok(KvCommand::get("c"), read(None), 20, 30)
        .history();
    assert_eq!(verdict(&h), NOT);
    let report = check_history(&h);
    assert_eq!((report.operations, report.keys), (6, 3));
    let per_key: Vec<(&str, Verdict, usize)> = report
        .per_key
        .iter()
        .map(|k| (k.key.as_str(), k.verdict, k.operations))
        .collect();
    assert_eq!(per_key, vec![("a", LIN, 2), ("b", NOT, 2), ("c", LIN, 1)]);
    assert!(report.per_key[0].explanation.is_none());
    assert_eq!(
        report.per_key[1].explanation.as_ref().unwrap().blocked,
        OpId(4)
    );
}

#[test]
fn equal_timestamps_are_concurrent() {
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 10)
        .ok(get(), read(None), 10, 20)
        .history();
    assert_eq!(verdict(&h), LIN);
    let h = B::default()
        .ok(put("1"), KvOutput::Ok, 0, 10)
        .ok(get(), read(None), 11, 20)
        .history();
    assert_eq!(verdict(&h), NOT);
}

/// A history whose search is exponential without a lucky order: many
/// overlapping writes of distinct values, then two overlapping reads of two
/// of them (after every write returned, both must see the last one). The
/// value "0" is written twice, so that the unique-values pass hands the key
/// to the search.
fn hard_history(writers: usize) -> History {
    let mut b = B::default().ok(put("0"), KvOutput::Ok, 0, 100);
    for i in 0..writers {
        b = b.ok(put(&i.to_string()), KvOutput::Ok, 0, 100);
    }
    // Each value read while the writes go on, so that none is a write
    // nobody observes and no two writes are alike.
    for i in 0..writers {
        b = b.ok(get(), read(Some(&i.to_string())), 0, 100);
    }
    b.ok(get(), read(Some("0")), 200, 300)
        .ok(get(), read(Some("1")), 200, 300)
        .history()
}

#[test]
fn step_budget_and_interrupt_give_unknown() {
    let h = hard_history(12);
    let full = check_history_with(&h, &CheckOptions::unlimited());
    assert_eq!(full.verdict, NOT);
    assert!(full.steps > 100, "{}", full.steps);

    let limited = check_history_with(&h, &CheckOptions::default().with_max_steps_per_key(50));
    assert_eq!(
        (limited.verdict, limited.linearizable),
        (Verdict::Undecided, false)
    );
    assert_eq!(limited.steps, 50);
    assert_eq!(limited.per_key[0].verdict, Verdict::Undecided);
    assert_eq!(
        limited.per_key[0].stopped_by,
        Some(Budget::Steps { limit: 50 })
    );
    assert!(
        limited.to_string().contains(
            "key \"x\" undecided: the step budget (50 steps per key) ran out after 50 search steps"
        ),
        "{limited}"
    );

    let stop = || true;
    let interrupted = check_history_with(&h, &CheckOptions::unlimited().with_interrupt(&stop));
    assert_eq!(interrupted.verdict, Verdict::Undecided);
    assert_eq!(interrupted.steps, 0);

    // A budget large enough changes nothing, and the search is deterministic.
    let again = check_history_with(&h, &CheckOptions::default());
    assert_eq!(again, full);
}

#[test]
fn a_violation_on_one_key_wins_over_an_unknown_on_another() {
    let mut h = hard_history(12);
    h.operations.push(Operation {
        id: OpId(100),
        client: ClientId(100),
        command: KvCommand::get("other"),
        invoke_us: 0,
        outcome: Outcome::Ok {
            output: ObservedOutput::Value(Some("ghost".into())),
            complete_us: 1,
        },
    });
    let report = check_history_with(&h, &CheckOptions::default().with_max_steps_per_key(50));
    let verdicts: Vec<Verdict> = report.per_key.iter().map(|k| k.verdict).collect();
    assert_eq!(verdicts, vec![NOT, Verdict::Undecided]);
    assert_eq!(report.verdict, NOT);
}

/// The recorder hands back the command of an operation it recorded (the
/// simulation's clients learn from it), and nothing for an unknown one.
#[test]
fn recorder_returns_the_recorded_command() {
    let mut rec = HistoryRecorder::new();
    let a = rec.invoke(ClientId(1), put("1"), 10);
    let b = rec.invoke(ClientId(2), get(), 11);
    rec.ok(a, KvOutput::Ok, 20).unwrap();
    assert_eq!(rec.command(a), Some(&put("1")));
    assert_eq!(rec.command(b), Some(&get()));
    assert_eq!(rec.command(OpId(2)), None);
    assert_eq!(rec.command(OpId(u64::MAX)), None);
}

#[test]
fn recorder_builds_histories_and_rejects_misuse() {
    let mut rec = HistoryRecorder::new();
    assert!(rec.is_empty());
    let a = rec.invoke(ClientId(1), put("1"), 10);
    let b = rec.invoke(ClientId(2), get(), 11);
    let c = rec.invoke(ClientId(3), put("2"), 12);
    let d = rec.invoke(ClientId(4), put("3"), 13);
    assert_eq!((a, b, c, d), (OpId(0), OpId(1), OpId(2), OpId(3)));
    assert_eq!((rec.len(), rec.open()), (4, 4));
    rec.ok(a, KvOutput::Ok, 20).unwrap();
    rec.fail(c, 21).unwrap();
    rec.unknown(d, 22).unwrap();
    assert_eq!(rec.open(), 1);
    assert_eq!(
        rec.ok(a, KvOutput::Ok, 30),
        Err(RecordError::AlreadyEnded(a))
    );
    assert_eq!(rec.fail(OpId(9), 30), Err(RecordError::UnknownOp(OpId(9))));
    assert_eq!(
        rec.ok(b, read(None), 5),
        Err(RecordError::EndsBeforeInvoke {
            op: b,
            invoke_us: 11,
            time_us: 5
        })
    );
    let snapshot = rec.history();
    assert_eq!(
        snapshot.operations[1].outcome,
        Outcome::Unknown { gave_up_us: None }
    );
    rec.ok(b, read(Some("1")), 25).unwrap();
    let h = rec.into_history();
    let outcomes: Vec<Outcome> = h.operations.iter().map(|o| o.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Ok {
                output: ObservedOutput::Ok,
                complete_us: 20
            },
            Outcome::Ok {
                output: ObservedOutput::Value(Some("1".into())),
                complete_us: 25
            },
            Outcome::Fail { complete_us: 21 },
            Outcome::Unknown {
                gave_up_us: Some(22)
            },
        ]
    );
    assert_eq!(h.operations[3].client, ClientId(4));
    assert_eq!(verdict(&h), LIN);
}

#[test]
fn json_schema_is_as_documented() {
    let h = B::default()
        .ok(
            KvCommand::cas("k", None, "v"),
            KvOutput::CasFailed(None),
            1,
            2,
        )
        .fail(KvCommand::Noop, 3, 4)
        .unknown(KvCommand::delete("k"), 5)
        .ok(get(), ObservedOutput::CasFailedUnreported, 6, 7)
        .history();
    let json = h.to_json();
    assert_eq!(
        json,
        concat!(
            r#"{"operations":["#,
            r#"{"id":0,"client":0,"command":{"Cas":{"key":"k","expected":null,"new":"v"}},"invoke_us":1,"outcome":{"status":"ok","output":{"CasFailed":null},"complete_us":2}},"#,
            r#"{"id":1,"client":1,"command":"Noop","invoke_us":3,"outcome":{"status":"fail","complete_us":4}},"#,
            r#"{"id":2,"client":2,"command":{"Delete":{"key":"k"}},"invoke_us":5,"outcome":{"status":"unknown"}},"#,
            r#"{"id":3,"client":3,"command":{"Get":{"key":"x"}},"invoke_us":6,"outcome":{"status":"ok","output":"CasFailedUnreported","complete_us":7}}"#,
            "]}"
        )
    );
    assert_eq!(History::from_json(&json), Ok(h.clone()));
    assert_eq!(History::from_json(&h.to_json_pretty()), Ok(h));
    let given_up = r#"{"operations":[{"id":5,"client":1,"command":"Noop","invoke_us":3,"outcome":{"status":"unknown","gave_up_us":9}}]}"#;
    let parsed = History::from_json(given_up).unwrap();
    assert_eq!(
        parsed.operations[0].outcome,
        Outcome::Unknown {
            gave_up_us: Some(9)
        }
    );
    assert_eq!(parsed.to_json(), given_up);
}

#[test]
fn observed_output_serializes_like_kv_output() {
    for out in [
        KvOutput::Ok,
        KvOutput::Value(None),
        KvOutput::Value(Some("v".into())),
        KvOutput::Deleted(true),
        KvOutput::CasOk,
        KvOutput::CasFailed(Some("w".into())),
    ] {
        let observed = ObservedOutput::from(out.clone());
        assert!(observed.matches(&out));
        assert_eq!(
            serde_json::to_string(&observed).unwrap(),
            serde_json::to_string(&out).unwrap()
        );
    }
    assert!(ObservedOutput::CasFailedUnreported.matches(&KvOutput::CasFailed(None)));
    assert!(ObservedOutput::CasFailedUnreported.matches(&KvOutput::CasFailed(Some("a".into()))));
    assert!(!ObservedOutput::CasFailedUnreported.matches(&KvOutput::CasOk));
    assert!(!ObservedOutput::Value(None).matches(&KvOutput::Value(Some("a".into()))));
}

#[test]
fn invalid_json_histories_are_typed_errors() {
    assert!(matches!(
        History::from_json("{"),
        Err(HistoryError::Json(_))
    ));
    assert!(matches!(
        History::from_json(r#"{"operations":[{"id":0}]}"#),
        Err(HistoryError::Json(_))
    ));
    let dup = B::default()
        .ok(get(), read(None), 0, 1)
        .ok(get(), read(None), 0, 1)
        .history();
    let json = dup.to_json().replace(r#""id":1"#, r#""id":0"#);
    assert_eq!(
        History::from_json(&json),
        Err(HistoryError::DuplicateId(OpId(0)))
    );
    let backwards = B::default().ok(get(), read(None), 5, 4).history();
    assert_eq!(
        History::from_json(&backwards.to_json()),
        Err(HistoryError::CompletesBeforeInvoke {
            op: OpId(0),
            invoke_us: 5,
            complete_us: 4
        })
    );
}

/// What happened to an operation in the generated run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ok,
    UnknownApplied,
    UnknownNotApplied,
    Fail,
}

/// The size of [`random_history`]'s histories.
#[derive(Clone, Copy)]
struct Shape {
    max_ops: usize,
    max_len_us: u64,
    one_key: bool,
    /// Distinct values written ("1", "2", ...).
    values: usize,
    /// Percent of operations with an unknown outcome (half of them applied).
    unknown_pct: u32,
}

/// Up to 8 operations on one or two keys, short intervals.
const SMALL: Shape = Shape {
    max_ops: 8,
    max_len_us: 12,
    one_key: false,
    values: 3,
    unknown_pct: 18,
};

/// Up to 9 operations on one key with long intervals: most overlap.
const CROWDED: Shape = Shape {
    max_ops: 9,
    max_len_us: 40,
    one_key: true,
    values: 3,
    unknown_pct: 18,
};

/// A small random history: a real sequential execution of random commands
/// on one or two keys, each operation given an interval around its
/// linearization point, some with unknown or failed outcomes, then (often)
/// one perturbation of an output, a command or an interval that may or may
/// not break linearizability.
fn random_history(rng: &mut ChaCha8Rng, shape: Shape) -> History {
    let n = rng.random_range(1..=shape.max_ops);
    let keys: &[&str] = if shape.one_key || rng.random_bool(0.7) {
        &["x"]
    } else {
        &["x", "y"]
    };
    let value = |rng: &mut ChaCha8Rng| (1 + rng.random_range(0..shape.values)).to_string();
    let mut plans = Vec::with_capacity(n);
    for _ in 0..n {
        let key = keys[rng.random_range(0..keys.len())].to_string();
        let command = match rng.random_range(0..100) {
            0..30 => KvCommand::Put {
                key,
                value: value(rng),
            },
            30..60 => KvCommand::Get { key },
            60..72 => KvCommand::Delete { key },
            72..97 => KvCommand::Cas {
                key,
                expected: rng.random_bool(0.8).then(|| value(rng)),
                new: value(rng),
            },
            _ => KvCommand::Noop,
        };
        let invoke_us = rng.random_range(0..30u64);
        let complete_us = invoke_us + rng.random_range(0..shape.max_len_us);
        let point = rng.random_range(invoke_us..=complete_us);
        let unknown_pct = shape.unknown_pct.min(90);
        let fate = match rng.random_range(0..100u32) {
            p if p < 90 - unknown_pct => Fate::Ok,
            p if p < 90 - unknown_pct / 2 => Fate::UnknownApplied,
            p if p < 90 => Fate::UnknownNotApplied,
            _ => Fate::Fail,
        };
        plans.push((command, invoke_us, complete_us, point, fate));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (plans[i].3, i));
    let mut store = KvStore::default();
    let mut outputs: Vec<Option<KvOutput>> = vec![None; n];
    for &i in &order {
        if matches!(plans[i].4, Fate::Ok | Fate::UnknownApplied) {
            outputs[i] = Some(store.apply(&plans[i].0));
        }
    }
    let mut ops: Vec<Operation> = plans
        .iter()
        .zip(outputs)
        .enumerate()
        .map(
            |(i, ((command, invoke_us, complete_us, _, fate), output))| Operation {
                id: OpId(i as u64),
                client: ClientId(rng.random_range(0..4)),
                command: command.clone(),
                invoke_us: *invoke_us,
                outcome: match (fate, output) {
                    (Fate::Ok, Some(output)) => Outcome::Ok {
                        output: output.into(),
                        complete_us: *complete_us,
                    },
                    (Fate::Fail, _) => Outcome::Fail {
                        complete_us: *complete_us,
                    },
                    _ => Outcome::Unknown {
                        gave_up_us: rng.random_bool(0.5).then_some(*complete_us),
                    },
                },
            },
        )
        .collect();
    if rng.random_bool(0.7) {
        for _ in 0..rng.random_range(1..=3) {
            perturb(&mut ops, rng);
        }
    }
    History { operations: ops }
}

/// Changes one operation a little: what it observed (half the time, when
/// something observed a value), its interval, or what it wrote or expected.
fn perturb(ops: &mut [Operation], rng: &mut ChaCha8Rng) {
    let other_value = |rng: &mut ChaCha8Rng| match rng.random_range(0..5) {
        0 => None,
        1 => Some("9".to_string()),
        v => Some(v.to_string()),
    };
    let observers: Vec<usize> = (0..ops.len())
        .filter(|&i| {
            matches!(&ops[i].outcome, Outcome::Ok { output, .. } if *output != ObservedOutput::Ok)
        })
        .collect();
    if !observers.is_empty() && rng.random_bool(0.5) {
        let op = &mut ops[observers[rng.random_range(0..observers.len())]];
        if let Outcome::Ok { output, .. } = &mut op.outcome {
            *output = match output {
                ObservedOutput::Value(_) => ObservedOutput::Value(other_value(rng)),
                ObservedOutput::Deleted(existed) => ObservedOutput::Deleted(!*existed),
                ObservedOutput::CasOk => match rng.random_range(0..2) {
                    0 => ObservedOutput::CasFailedUnreported,
                    _ => ObservedOutput::CasFailed(other_value(rng)),
                },
                ObservedOutput::CasFailed(_) => match rng.random_range(0..3) {
                    0 => ObservedOutput::CasOk,
                    1 => ObservedOutput::CasFailedUnreported,
                    _ => ObservedOutput::CasFailed(other_value(rng)),
                },
                ObservedOutput::CasFailedUnreported => ObservedOutput::CasOk,
                ObservedOutput::Ok => ObservedOutput::Ok,
            };
        }
        return;
    }
    let i = rng.random_range(0..ops.len());
    let op = &mut ops[i];
    if rng.random_bool(0.5) {
        // Move the operation to another interval.
        let shift = rng.random_range(0..40u64);
        let len = op.outcome.complete_us().map_or(0, |c| c - op.invoke_us);
        op.invoke_us = shift;
        match &mut op.outcome {
            Outcome::Ok { complete_us, .. } | Outcome::Fail { complete_us } => {
                *complete_us = shift + len
            }
            Outcome::Unknown { .. } => {}
        }
    } else {
        // Change what it wrote or expected.
        match &mut op.command {
            KvCommand::Put { value, .. } => *value = other_value(rng).unwrap_or_default(),
            KvCommand::Cas { expected, new, .. } => {
                if rng.random_bool(0.5) {
                    *expected = other_value(rng);
                } else {
                    *new = other_value(rng).unwrap_or_default();
                }
            }
            _ => {}
        }
    }
}

/// The checker agrees with the exhaustive one on thousands of small random
/// histories, and both verdicts are common among them.
#[test]
fn agrees_with_brute_force_on_random_histories() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x11ea_7ab1e);
    let (mut lin, mut not) = (0usize, 0usize);
    const CASES: usize = 20_000;
    for _ in 0..CASES {
        let h = random_history(&mut rng, SMALL);
        match verdict(&h) {
            LIN => lin += 1,
            NOT => not += 1,
            Verdict::Undecided => panic!("unlimited search stopped"),
        }
    }
    assert_eq!(lin + not, CASES);
    assert!(lin >= CASES / 4 && not >= CASES / 4, "lin {lin}, not {not}");
}

/// The same on crowded single-key histories, where most operations overlap
/// and forced moves and candidate order matter most.
#[test]
fn agrees_with_brute_force_on_crowded_histories() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xc20_3d3d);
    let (mut lin, mut not) = (0usize, 0usize);
    const CASES: usize = 3000;
    for _ in 0..CASES {
        match verdict(&random_history(&mut rng, CROWDED)) {
            LIN => lin += 1,
            NOT => not += 1,
            Verdict::Undecided => panic!("unlimited search stopped"),
        }
    }
    assert!(lin >= CASES / 4 && not >= CASES / 4, "lin {lin}, not {not}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn json_round_trips_and_checker_agrees(seed in any::<u64>()) {
        let h = random_history(&mut ChaCha8Rng::seed_from_u64(seed), SMALL);
        prop_assert_eq!(History::from_json(&h.to_json()), Ok(h.clone()));
        let report = check_history_with(&h, &CheckOptions::unlimited());
        prop_assert_eq!(report.linearizable, brute::linearizable(&h));
    }

    /// The compact form holds the same history: converted, or streamed
    /// from its JSON (compact or indented), it gives back every operation.
    #[test]
    fn compact_form_round_trips(seed in any::<u64>()) {
        let h = random_history(&mut ChaCha8Rng::seed_from_u64(seed), SMALL);
        let compact = CompactHistory::from_history(&h).unwrap();
        prop_assert_eq!(compact.len(), h.len());
        prop_assert_eq!(compact.to_history(), h.clone());
        prop_assert_eq!(CompactHistory::from_json(&h.to_json()).unwrap().to_history(), h.clone());
        let streamed = CompactHistory::from_json_reader(h.to_json_pretty().as_bytes()).unwrap();
        prop_assert_eq!(streamed.to_history(), h);
    }
}

/// The streaming reader rejects what [`History::from_json`] rejects, with
/// the same typed errors, and ignores unknown fields as it does.
#[test]
fn compact_reader_rejects_invalid_histories_like_the_whole_text_one() {
    for text in [
        "{",
        r#"{"operations":[{"id":0}]}"#,
        "[]",
        r#"{"ops":[]}"#,
        "{\"operations\":[]} x",
    ] {
        assert!(History::from_json(text).is_err(), "{text}");
        assert!(
            matches!(CompactHistory::from_json(text), Err(HistoryError::Json(_))),
            "{text}"
        );
    }
    let dup = B::default()
        .ok(get(), read(None), 0, 1)
        .ok(get(), read(None), 0, 1)
        .history();
    let json = dup.to_json().replace(r#""id":1"#, r#""id":0"#);
    assert_eq!(
        CompactHistory::from_json(&json).unwrap_err(),
        HistoryError::DuplicateId(OpId(0))
    );
    let backwards = B::default().ok(get(), read(None), 5, 4).history();
    assert_eq!(
        CompactHistory::from_json(&backwards.to_json()).unwrap_err(),
        HistoryError::CompletesBeforeInvoke {
            op: OpId(0),
            invoke_us: 5,
            complete_us: 4
        }
    );
    let extra = r#"{"version":3,"operations":[],"note":{"a":[1,2]}}"#;
    assert_eq!(History::from_json(extra), Ok(History::default()));
    assert!(CompactHistory::from_json(extra).unwrap().is_empty());
}

/// A linearizable history of `ops` operations over `keys` keys from
/// `clients` concurrent clients, each operation's interval around its
/// linearization point.
fn big_linearizable_history(ops: usize, keys: usize, clients: u64, seed: u64) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut store = KvStore::default();
    let mut rec = HistoryRecorder::new();
    for i in 0..ops as u64 {
        let point = i * 10;
        let client = rng.random_range(0..clients);
        let key = format!("k{}", rng.random_range(0..keys));
        let command = match rng.random_range(0..4) {
            0 => KvCommand::put(key, i.to_string()),
            1 => KvCommand::get(key),
            2 => KvCommand::Cas {
                expected: store.get(&key).map(str::to_string),
                key,
                new: i.to_string(),
            },
            _ => KvCommand::delete(key),
        };
        let invoke = point.saturating_sub(rng.random_range(0..60));
        let complete = point + rng.random_range(0..60);
        let output = store.apply(&command);
        let op = rec.invoke(ClientId(client), command, invoke);
        rec.ok(op, output, complete).unwrap();
    }
    rec.into_history()
}

#[test]
fn long_single_key_history_is_linearizable() {
    let h = big_linearizable_history(3_000, 1, 16, 8);
    let report = check_history(&h);
    assert_eq!((report.verdict, report.keys), (LIN, 1), "{report}");
    // No backtracking blow-up: a few dozen steps per operation (each step
    // tries one of the ~12 concurrent candidates).
    assert!(report.steps < 50 * 3_000, "{}", report.steps);
    // Removing a write makes some later read see a value never written.
    let mut broken = h.clone();
    let write = broken
        .operations
        .iter()
        .position(|op| matches!(op.command, KvCommand::Put { .. }) && op.invoke_us > 15_000)
        .unwrap();
    broken.operations[write].outcome = Outcome::Fail {
        complete_us: broken.operations[write].invoke_us,
    };
    assert_eq!(check_history(&broken).verdict, NOT);
}

#[test]
fn large_history_over_many_keys_is_linearizable() {
    let h = big_linearizable_history(10_000, 100, 16, 7);
    let report = check_history(&h);
    assert_eq!(report.verdict, LIN, "{report}");
    assert_eq!((report.operations, report.keys), (10_000, 100));
    // Breaking one read breaks exactly its key.
    let mut broken = h.clone();
    let victim = broken
        .operations
        .iter()
        .rposition(|op| matches!(op.command, KvCommand::Get { .. }))
        .unwrap();
    broken.operations[victim].outcome = Outcome::Ok {
        output: ObservedOutput::Value(Some("never written".into())),
        complete_us: broken.operations[victim].outcome.complete_us().unwrap(),
    };
    let report = check_history(&broken);
    assert_eq!(report.verdict, NOT);
    let bad: Vec<&str> = report.violations().map(|k| k.key.as_str()).collect();
    assert_eq!(bad, vec![broken.operations[victim].command.key().unwrap()]);
    let e = report
        .violations()
        .next()
        .unwrap()
        .explanation
        .as_ref()
        .unwrap();
    assert_eq!(e.blocked, broken.operations[victim].id);
}

/// Single-key histories rich in unknown outcomes over six values: many
/// unknown writes are never observed.
const UNKNOWN_HEAVY: Shape = Shape {
    max_ops: 9,
    max_len_us: 25,
    one_key: true,
    values: 6,
    unknown_pct: 45,
};

/// Two values and many unknown outcomes: identical unknown commands abound.
const FEW_VALUES: Shape = Shape {
    max_ops: 9,
    max_len_us: 25,
    one_key: true,
    values: 2,
    unknown_pct: 50,
};

/// Checks `h` unlimited, asserts agreement with the brute-force checker and
/// returns the report.
fn cross_checked(h: &History) -> LinearizabilityReport {
    let report = check_history_with(h, &CheckOptions::unlimited());
    assert_ne!(report.verdict, Verdict::Undecided);
    assert_eq!(
        report.linearizable,
        brute::linearizable(h),
        "checker and brute force disagree on {h:#?}\n{report}"
    );
    report
}

/// Reduction 2: a history whose some operation observes a value that no
/// other operation invoked before it returned writes is decided without
/// search, and rightly (brute force agrees it is not linearizable).
#[test]
fn unwritten_observations_are_decided_without_search_and_rightly() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x0b5e_012e);
    let mut fired = 0;
    for round in 0..6000 {
        let shape = if round % 2 == 0 { SMALL } else { UNKNOWN_HEAVY };
        let h = random_history(&mut rng, shape);
        let report = cross_checked(&h);
        for key in &report.per_key {
            if key.reductions.unwritten_observation {
                fired += 1;
                assert_eq!((key.verdict, key.steps), (NOT, 0));
                assert!(!report.linearizable);
            }
        }
    }
    assert!(fired >= 200, "the reduction fired {fired} times");
}

/// Reduction 1: unknown-outcome writes that nothing after them observes are
/// rewritten to an anonymous value; verdicts stay those of brute force.
#[test]
fn unobserved_unknown_writes_are_anonymised_soundly() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xa402);
    let (mut fired, mut fired_not) = (0, 0);
    for _ in 0..6000 {
        let h = random_history(&mut rng, UNKNOWN_HEAVY);
        cross_checked(&h);
        // The reduction is the search's: count it where the search decides
        // every key (the unique-values pass decides many of them first).
        let report =
            super::linearizability::check_history_search_only(&h, &CheckOptions::unlimited());
        assert_eq!(report.linearizable, brute::linearizable(&h));
        if report
            .per_key
            .iter()
            .any(|k| k.reductions.anonymised_writes > 0)
        {
            fired += 1;
            if !report.linearizable {
                fired_not += 1;
            }
        }
    }
    assert!(fired >= 500 && fired_not >= 100, "{fired} / {fired_not}");
}

/// Reduction 3: unknown-outcome compare-and-swaps that can no longer
/// succeed are dropped; verdicts stay those of brute force.
#[test]
fn impossible_unknown_cas_is_dropped_soundly() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xca5);
    let mut fired = 0;
    for _ in 0..8000 {
        let h = random_history(&mut rng, UNKNOWN_HEAVY);
        let report = cross_checked(&h);
        if report.per_key.iter().any(|k| k.reductions.cas_dropped > 0) {
            fired += 1;
        }
    }
    assert!(fired >= 50, "the reduction fired {fired} times");
}

/// Reduction 4: of identical unknown-outcome commands only the earliest
/// invoked is tried; on two values identical commands abound, and verdicts
/// stay those of brute force.
#[test]
fn identical_unknown_commands_are_tried_once_soundly() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x1de7);
    let (mut twins, mut lin, mut not) = (0, 0, 0);
    for _ in 0..6000 {
        let h = random_history(&mut rng, FEW_VALUES);
        let unknown: Vec<&KvCommand> = h
            .operations
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Unknown { .. }))
            .map(|op| &op.command)
            .collect();
        let has_twins = unknown
            .iter()
            .enumerate()
            .any(|(i, a)| unknown[..i].contains(a) && !a.is_read_only());
        let report = cross_checked(&h);
        if has_twins {
            twins += 1;
            if report.linearizable {
                lin += 1;
            } else {
                not += 1;
            }
        }
    }
    assert!(
        twins >= 500 && lin >= 100 && not >= 100,
        "{twins}: {lin} / {not}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The cross-check: random small histories (reads, writes, successful
    /// and failed compare-and-swaps, deletes, unknown outcomes, one or two
    /// keys, few or many values) get the brute-force checker's verdict.
    #[test]
    fn checker_agrees_with_brute_force(seed in any::<u64>(), shape in 0..4usize) {
        let shape = [SMALL, CROWDED, UNKNOWN_HEAVY, FEW_VALUES][shape];
        let h = random_history(&mut ChaCha8Rng::seed_from_u64(seed), shape);
        let report = check_history_with(&h, &CheckOptions::unlimited());
        prop_assert_ne!(report.verdict, Verdict::Undecided);
        prop_assert_eq!(report.linearizable, brute::linearizable(&h), "{:#?}", h);
    }
}

/// The shapes crashes and timeouts leave: `writers` clients each write a
/// distinct value and never learn the outcome (invoked 10 us apart); a
/// reader reads every 15 us and sees the latest of the writes that took
/// effect (every other one, 5 us after its invocation). With `stale`, one
/// read late in the run sees the value of an earlier read again, after a
/// newer one was seen: not linearizable.
fn crash_shape(writers: u64, stale: bool) -> History {
    let mut rec = HistoryRecorder::new();
    let mut effects: Vec<(u64, String)> = Vec::new();
    for i in 0..writers {
        let value = format!("v{i}");
        rec.invoke(ClientId(i), put(&value), i * 10);
        if i % 2 == 0 {
            effects.push((i * 10 + 5, value));
        }
    }
    let end = writers * 10 + 20;
    let mut seen: Vec<Option<String>> = Vec::new();
    let mut t = 0;
    while t < end {
        let value = effects
            .iter()
            .rev()
            .find(|(at, _)| *at < t)
            .map(|(_, v)| v.clone());
        seen.push(value);
        t += 15;
    }
    if stale {
        let last = seen.len() - 1;
        seen[last] = seen[last / 2].clone();
    }
    for (i, value) in seen.into_iter().enumerate() {
        let at = i as u64 * 15;
        let r = rec.invoke(ClientId(1000), get(), at);
        rec.ok(r, read(value.as_deref()), at + 1).unwrap();
    }
    rec.into_history()
}

/// 24 unknown writes and one read of a value nobody wrote: decided without
/// search. 64 unknown writes of the shape timeouts leave: decided with the
/// default budget, in a few steps per operation when linearizable and a
/// quadratic number when not.
#[test]
fn unknown_outcome_shapes_decide_quickly() {
    let mut b = B::default();
    for i in 0..24 {
        b = b.unknown(put(&i.to_string()), i);
    }
    let h = b.ok(get(), read(Some("never")), 30, 40).history();
    let report = check_history(&h);
    assert_eq!((report.verdict, report.steps), (NOT, 0));

    for writers in [24, 64] {
        let ok = check_history(&crash_shape(writers, false));
        assert_eq!(ok.verdict, LIN, "{ok}");
        let n = ok.operations as u64;
        assert!(ok.steps <= 4 * n, "{} steps for {n} operations", ok.steps);
        let bad = check_history(&crash_shape(writers, true));
        assert_eq!(bad.verdict, NOT, "{bad}");
        // Backtracking over where the observed writes go: quadratic here
        // (8,897 steps for 64 writers), not exponential.
        assert!(bad.steps <= n * n, "{} steps for {n} operations", bad.steps);
    }
    // Small enough to cross-check.
    cross_checked(&crash_shape(4, false));
    cross_checked(&crash_shape(4, true));
}

/// A memory budget too small for the search stops it with `undecided`,
/// naming the budget, instead of growing.
#[test]
fn memory_budget_gives_undecided() {
    let h = hard_history(12);
    let report = check_history_with(
        &h,
        &CheckOptions::unlimited().with_max_memory_bytes(64 * 1024),
    );
    assert_eq!(report.verdict, Verdict::Undecided, "{report}");
    let key = &report.per_key[0];
    assert_eq!(
        key.stopped_by,
        Some(Budget::Memory {
            limit_bytes: 64 * 1024
        })
    );
    assert!(key.search_bytes <= 64 * 1024, "{}", key.search_bytes);
    assert!(
        report
            .to_string()
            .contains("the memory budget (1 MiB per key)")
            || report.to_string().contains("memory budget"),
        "{report}"
    );
    // The default budget is ample for it.
    assert_eq!(check_history(&h).verdict, NOT);
}

/// `h` with its operations in another file order and renumbered (new ids
/// in the new order, none equal to an old one's position).
fn permuted(h: &History, rng: &mut ChaCha8Rng) -> History {
    use rand::seq::SliceRandom;
    let mut operations = h.operations.clone();
    operations.shuffle(rng);
    for (i, op) in operations.iter_mut().enumerate() {
        op.id = OpId(1_000 + 3 * i as u64);
    }
    History { operations }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The file order and the ids of operations change neither the verdict
    /// nor the steps (the checker orders each key's operations by what
    /// they are), on random histories with unknown outcomes and on
    /// crowded ones where most operations overlap.
    #[test]
    fn file_order_and_ids_change_nothing(seed in any::<u64>()) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for shape in [SMALL, CROWDED] {
            let h = random_history(&mut rng, shape);
            let p = permuted(&h, &mut rng);
            let a = check_history_with(&h, &CheckOptions::unlimited());
            let b = check_history_with(&p, &CheckOptions::unlimited());
            prop_assert_eq!(a.verdict, b.verdict);
            prop_assert_eq!(a.steps, b.steps);
            prop_assert_eq!(b.linearizable, brute::linearizable(&p));
        }
    }
}

/// A linearizable history in rounds, as a load generator with many clients
/// on one hot key makes them: in each round every client invokes at the
/// same instant and all complete at the same instant, so only the values
/// they observed tell the order they took effect in (writes of distinct
/// values, reads, compare-and-swaps that hold or fail, deletes).
fn rounds_history(rounds: u64, clients: u64, seed: u64) -> History {
    use rand::seq::SliceRandom;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut store = KvStore::default();
    let mut rec = HistoryRecorder::new();
    for round in 0..rounds {
        let mut order: Vec<u64> = (0..clients).collect();
        order.shuffle(&mut rng);
        for client in order {
            let value = format!("c{client}r{round}");
            let command = match rng.random_range(0..10) {
                0..=3 => KvCommand::put("k", value),
                4..=6 => KvCommand::get("k"),
                7 => KvCommand::delete("k"),
                _ => KvCommand::Cas {
                    key: "k".into(),
                    expected: if rng.random_bool(0.5) {
                        store.get("k").map(str::to_string)
                    } else {
                        Some("stale".into())
                    },
                    new: value,
                },
            };
            let output = store.apply(&command);
            let op = rec.invoke(ClientId(client), command, round * 10);
            rec.ok(op, output, round * 10 + 5).unwrap();
        }
    }
    rec.into_history()
}

/// Simultaneous operations listed in the order they took effect, and the
/// same listed in other orders with other ids: the same verdict, the same
/// steps, and a number of them linear in the history (269,116 for these
/// 6,000 operations; 3.1 million before writes nobody observes were
/// anonymised and identical operations tried once, and the step budget ran
/// out before the dead-end cut).
#[test]
fn simultaneous_operations_in_any_file_order_are_cheap() {
    let h = rounds_history(200, 30, 3);
    let base = check_history_with(&h, &CheckOptions::default());
    assert_eq!(base.verdict, Verdict::Linearizable, "{base}");
    assert!(base.steps < 400_000, "{} steps", base.steps);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..3 {
        let p = permuted(&h, &mut rng);
        let r = check_history_with(&p, &CheckOptions::default());
        assert_eq!((r.verdict, r.steps), (base.verdict, base.steps));
    }
    // One read moved to see a value overwritten in an earlier round.
    let mut bad = h.clone();
    let late_read = bad
        .operations
        .iter()
        .rposition(|op| matches!(op.command, KvCommand::Get { .. }))
        .unwrap();
    bad.operations[late_read].outcome = Outcome::Ok {
        output: ObservedOutput::Value(Some("c0r0".into())),
        complete_us: bad.operations[late_read].outcome.complete_us().unwrap(),
    };
    let was_written = h.operations.iter().any(|op| {
        op.command == KvCommand::put("k", "c0r0")
            || matches!(&op.command, KvCommand::Cas { new, .. } if new == "c0r0")
    });
    let r = check_history_with(&bad, &CheckOptions::default());
    if was_written {
        assert_eq!(r.verdict, Verdict::NotLinearizable, "{r}");
    }
    let p = permuted(&bad, &mut rng);
    assert_eq!(
        check_history_with(&p, &CheckOptions::default()).verdict,
        r.verdict
    );
}

/// A random history in which every written value is fresh (what our
/// workloads and Jepsen's register tests produce): a real sequential
/// execution of puts, reads and compare-and-swaps (expecting the current
/// value, an older one, or absent) on one or two keys, each operation given
/// an interval around its linearization point, some with unknown or failed
/// outcomes; then, most of the time, a few perturbations: a read or a
/// compare-and-swap failure reports another value seen in the run, an
/// interval moves, or a compare-and-swap expects another value. With
/// `deletes` > 0, that percentage of deletes too.
fn unique_history(rng: &mut ChaCha8Rng, max_ops: usize, max_len_us: u64, deletes: u32) -> History {
    let n = rng.random_range(1..=max_ops);
    let keys: &[&str] = if rng.random_bool(0.7) {
        &["x"]
    } else {
        &["x", "y"]
    };
    let span = (n as u64) * 4 + 10;
    let mut written: Vec<Option<String>> = vec![None];
    let mut plans = Vec::with_capacity(n);
    let mut fresh = 0u64;
    for _ in 0..n {
        let key = keys[rng.random_range(0..keys.len())].to_string();
        let roll = rng.random_range(0..100);
        let command = if roll < 35 {
            fresh += 1;
            KvCommand::put(key, format!("v{fresh}"))
        } else if roll < 70 {
            KvCommand::get(key)
        } else if roll < 70 + deletes {
            KvCommand::delete(key)
        } else {
            fresh += 1;
            KvCommand::Cas {
                key,
                // Filled in with the current value at its point, or an
                // older one.
                expected: None,
                new: format!("v{fresh}"),
            }
        };
        let invoke_us = rng.random_range(0..span);
        let complete_us = invoke_us + rng.random_range(0..max_len_us);
        let point = rng.random_range(invoke_us..=complete_us);
        let fate = match rng.random_range(0..100u32) {
            0..78 => Fate::Ok,
            78..86 => Fate::UnknownApplied,
            86..94 => Fate::UnknownNotApplied,
            _ => Fate::Fail,
        };
        plans.push((command, invoke_us, complete_us, point, fate));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (plans[i].3, i));
    let mut store = KvStore::default();
    let mut outputs: Vec<Option<KvOutput>> = vec![None; n];
    for &i in &order {
        if let KvCommand::Cas { key, expected, .. } = &mut plans[i].0 {
            *expected = if rng.random_bool(0.75) {
                store.get(key).map(str::to_string)
            } else {
                written[rng.random_range(0..written.len())].clone()
            };
        }
        if let KvCommand::Put { value, .. } | KvCommand::Cas { new: value, .. } = &plans[i].0 {
            written.push(Some(value.clone()));
        }
        if matches!(plans[i].4, Fate::Ok | Fate::UnknownApplied) {
            outputs[i] = Some(store.apply(&plans[i].0));
        }
    }
    let mut ops: Vec<Operation> = plans
        .iter()
        .zip(outputs)
        .enumerate()
        .map(
            |(i, ((command, invoke_us, complete_us, _, fate), output))| Operation {
                id: OpId(i as u64),
                client: ClientId(i as u64),
                command: command.clone(),
                invoke_us: *invoke_us,
                outcome: match (fate, output) {
                    (Fate::Ok, Some(output)) => Outcome::Ok {
                        output: output.into(),
                        complete_us: *complete_us,
                    },
                    (Fate::Fail, _) => Outcome::Fail {
                        complete_us: *complete_us,
                    },
                    _ => Outcome::Unknown { gave_up_us: None },
                },
            },
        )
        .collect();
    if rng.random_bool(0.7) {
        for _ in 0..rng.random_range(1..=3) {
            let i = rng.random_range(0..ops.len());
            let other = written[rng.random_range(0..written.len())].clone();
            let op = &mut ops[i];
            match (rng.random_range(0..4), &mut op.outcome, &mut op.command) {
                (0 | 3, Outcome::Ok { output, .. }, _) => match output {
                    ObservedOutput::Value(v) | ObservedOutput::CasFailed(v) => *v = other,
                    _ => {}
                },
                (1, _, KvCommand::Cas { expected, .. }) => *expected = other,
                _ => {
                    let shift = rng.random_range(0..span);
                    let len = op.outcome.complete_us().map_or(0, |c| c - op.invoke_us);
                    op.invoke_us = shift;
                    if let Outcome::Ok { complete_us, .. } | Outcome::Fail { complete_us } =
                        &mut op.outcome
                    {
                        *complete_us = shift + len;
                    }
                }
            }
        }
    }
    History { operations: ops }
}

/// The unique-values pass agrees with the brute-force checker on small
/// random histories whose written values are distinct, linearizable and
/// broken ones, and it is what decides most of them (both verdicts).
#[test]
fn unique_values_pass_agrees_with_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xe19e);
    let (mut lin, mut not, mut handed_over) = (0usize, 0usize, 0usize);
    // Keys with a delete: decided by the pass (linearizable, not), or not.
    let (mut deleted_lin, mut deleted_not, mut deleted_keys) = (0usize, 0usize, 0usize);
    let (mut deleted_lin_keys, mut deleted_not_keys) = (0usize, 0usize);
    const CASES: usize = 30_000;
    for round in 0..CASES {
        let h = unique_history(
            &mut rng,
            brute::MAX_OPS - 1,
            [5, 14][round % 2],
            if round % 5 == 0 { 6 } else { 0 },
        );
        let report = check_history_with(&h, &CheckOptions::unlimited());
        assert_eq!(
            report.linearizable,
            brute::linearizable(&h),
            "checker and brute force disagree on {h:#?}\n{report}"
        );
        let by_pass = report.per_key.iter().all(|k| k.reductions.unique_values);
        for k in &report.per_key {
            let deleted = h.operations.iter().any(|op| {
                matches!(&op.command, KvCommand::Delete { key } if *key == k.key)
                    && !matches!(op.outcome, Outcome::Fail { .. })
            });
            if deleted {
                deleted_keys += 1;
                match k.verdict {
                    LIN => deleted_lin_keys += 1,
                    NOT => deleted_not_keys += 1,
                    _ => {}
                }
                match (k.reductions.unique_values, k.verdict) {
                    (true, LIN) => deleted_lin += 1,
                    (true, NOT) => deleted_not += 1,
                    _ => {}
                }
            }
        }
        match (by_pass, report.verdict) {
            (true, LIN) => lin += 1,
            (true, NOT) => not += 1,
            _ => handed_over += 1,
        }
        for k in &report.per_key {
            if k.reductions.unique_values {
                if k.verdict == NOT {
                    // Explained by a short search, or by the pass itself.
                    let e = k.explanation.as_ref().unwrap();
                    assert!(e.candidates.contains(&e.blocked));
                } else {
                    assert_eq!(k.steps, 0);
                }
            }
        }
    }
    let deleted = format!(
        "keys with deletes: {deleted_keys} ({deleted_lin_keys} linearizable, {deleted_not_keys} \
         not), decided by the pass: {deleted_lin} linearizable and {deleted_not} not"
    );
    eprintln!("lin {lin}, not {not}, handed over {handed_over}; {deleted}");
    assert!(
        lin >= CASES / 5
            && not >= CASES / 25
            && handed_over >= CASES / 20
            && deleted_lin >= deleted_lin_keys * 3 / 4
            && deleted_not >= deleted_not_keys / 3,
        "lin {lin}, not {not}, handed over {handed_over}; {deleted}"
    );
}

/// Keys with deletes (15 % of the operations), with unknown outcomes and
/// failed compare-and-swaps: the pass (rule 5) agrees with the brute-force
/// checker on every one, and decides most of them, both verdicts.
#[test]
fn unique_values_pass_decides_deleted_keys() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xde1e7e);
    const CASES: usize = 20_000;
    let (mut keys, mut lin, mut not, mut pass_lin, mut pass_not) = (0, 0, 0, 0, 0);
    for round in 0..CASES {
        let h = unique_history(&mut rng, brute::MAX_OPS - 1, [5, 14][round % 2], 15);
        let report = check_history_with(&h, &CheckOptions::unlimited());
        assert_eq!(
            report.linearizable,
            brute::linearizable(&h),
            "checker and brute force disagree on {h:#?}\n{report}"
        );
        for k in &report.per_key {
            let deleted = h.operations.iter().any(|op| {
                matches!(&op.command, KvCommand::Delete { key } if *key == k.key)
                    && !matches!(op.outcome, Outcome::Fail { .. })
            });
            if !deleted {
                continue;
            }
            keys += 1;
            match (k.verdict, k.reductions.unique_values) {
                (LIN, by_pass) => {
                    lin += 1;
                    pass_lin += usize::from(by_pass);
                }
                (NOT, by_pass) => {
                    not += 1;
                    pass_not += usize::from(by_pass);
                }
                _ => {}
            }
        }
    }
    eprintln!(
        "keys with deletes: {keys}; linearizable {lin} (pass {pass_lin}), not {not} (pass {pass_not})"
    );
    assert!(
        keys >= CASES / 2 && pass_lin >= lin * 3 / 4 && pass_not >= not / 3,
        "keys with deletes: {keys}; linearizable {lin} (pass {pass_lin}), not {not} (pass {pass_not})"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// On medium histories (up to 300 operations, long overlapping
    /// intervals, far beyond brute force) the pass and the search give the
    /// same verdict, and its linearizations replay.
    #[test]
    fn unique_values_pass_agrees_with_the_search(
        seed in any::<u64>(),
        long in any::<bool>(),
        deletes in any::<bool>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = unique_history(&mut rng, 300, if long { 200 } else { 30 }, if deletes { 6 } else { 0 });
        let options = CheckOptions::default().with_max_steps_per_key(2_000_000);
        let searched = super::linearizability::check_history_search_only(&h, &options);
        let passed = check_history_with(&h, &options);
        for (s, p) in searched.per_key.iter().zip(&passed.per_key) {
            prop_assert_eq!(&s.key, &p.key);
            if s.verdict != Verdict::Undecided {
                prop_assert_eq!(s.verdict, p.verdict, "{}\n{}", searched, passed);
            }
            if p.verdict == LIN {
                let order = p.linearization.as_ref().unwrap();
                prop_assert!(order.len() <= p.operations);
            }
        }
    }
}

/// When the longest prefix ends on a write that no later operation reads
/// (rewritten to the anonymous value), the explanation names what it wrote
/// and says why the value does not matter.
#[test]
fn explanation_names_an_anonymised_value_plainly() {
    let h = B::default()
        .ok(put("a"), KvOutput::Ok, 0, 5)
        .ok(get(), read(None), 10, 20)
        // "b" written twice: the unique-values pass hands the key over.
        .ok(put("b"), KvOutput::Ok, 30, 40)
        .ok(put("b"), KvOutput::Ok, 30, 40)
        .history();
    assert_eq!(verdict(&h), NOT);
    let report = check_history(&h);
    let k = &report.per_key[0];
    assert!(!k.reductions.unique_values);
    let e = k.explanation.as_ref().unwrap();
    assert_eq!(
        (e.longest_prefix.clone(), e.blocked),
        (vec![OpId(0)], OpId(1))
    );
    assert_eq!(e.value_after_prefix.as_deref(), Some("a"));
    assert!(
        e.summary.contains(
            "leaves the value \"a\" (written by op0; no later operation reads it, so any value \
             no one reads would do as well); then op1"
        ),
        "{}",
        e.summary
    );
}

/// `h` with its operations in invocation order (completion, then file
/// order, among equal invocations) and ids renumbered in that order: what a
/// recorder writes and what the streaming check reads.
fn in_time_order(h: &History) -> History {
    let mut ops = h.operations.clone();
    ops.sort_by_key(|op| (op.invoke_us, op.outcome.complete_us().unwrap_or(u64::MAX)));
    for (i, op) in ops.iter_mut().enumerate() {
        op.id = OpId(i as u64);
    }
    History { operations: ops }
}

fn streamed(h: &History, min_segment_ops: usize, max_carried_unknown: usize) -> Streamed {
    let stream = StreamOptions {
        min_segment_ops,
        max_carried_unknown,
    };
    check_json_streaming(h.to_json().as_bytes(), &CheckOptions::unlimited(), &stream)
        .expect("a valid history")
}

/// The streaming check, cut at every quiet point it can, agrees with the
/// whole-history check (and with brute force on the small ones) on tens
/// of thousands of random histories: fresh values and reused ones,
/// deletes, unknown outcomes, failed compare-and-swaps, one or two keys.
/// It only ever says "linearizable", and it says so on most histories the
/// whole check finds linearizable, across cuts and after merging segments.
#[test]
fn streaming_agrees_with_the_whole_history_check() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5742_ea11);
    const CASES: usize = 24_000;
    let (mut lin, mut decided, mut cut, mut merged, mut brute_checked) = (0, 0, 0, 0, 0);
    let (mut lin_sorted, mut decided_sorted, mut unsorted_decided) = (0, 0, 0);
    for round in 0..CASES {
        let h = match round % 4 {
            0 => random_history(&mut rng, SMALL),
            1 => unique_history(&mut rng, brute::MAX_OPS - 1, 4, 15),
            2 => unique_history(&mut rng, 40, 6, 6),
            _ => unique_history(&mut rng, 60, [3, 12][round % 8 / 4], 0),
        };
        // One in five files as generated (out of time order), ids
        // renumbered in file order.
        let sorted = round % 5 != 0;
        let h = if !sorted {
            let mut h = h;
            for (i, op) in h.operations.iter_mut().enumerate() {
                op.id = OpId(i as u64);
            }
            h
        } else {
            in_time_order(&h)
        };
        let whole = check_history_with(&h, &CheckOptions::unlimited());
        lin += usize::from(whole.linearizable);
        lin_sorted += usize::from(whole.linearizable && sorted);
        let segment = [1, 2, 3, 7][round / 4 % 4];
        let carried = if round % 3 == 0 { 1 } else { 64 };
        match streamed(&h, segment, carried) {
            Streamed::Decided { report, stats } => {
                assert!(whole.linearizable, "streaming decided {h:#?}\n{whole}");
                assert_eq!(report.verdict, Verdict::Linearizable);
                assert_eq!(report.operations, whole.operations);
                let counts = |r: &LinearizabilityReport| {
                    r.per_key
                        .iter()
                        .map(|k| (k.key.clone(), k.operations, k.verdict))
                        .collect::<Vec<_>>()
                };
                assert_eq!(counts(&report), counts(&whole), "{h:#?}");
                let constraining = h
                    .operations
                    .iter()
                    .filter(|op| op.command != KvCommand::Noop)
                    .filter(|op| !matches!(op.outcome, Outcome::Fail { .. }))
                    .count();
                if constraining <= brute::MAX_OPS {
                    assert!(brute::linearizable(&h), "{h:#?}");
                    brute_checked += 1;
                }
                decided += 1;
                decided_sorted += usize::from(sorted);
                unsorted_decided += usize::from(!sorted && stats.segments >= 2);
                cut += usize::from(stats.segments >= 2);
                merged += usize::from(stats.merged > 0);
            }
            Streamed::NeedsWholeHistory { reason, .. } => {
                assert!(!reason.is_empty());
            }
        }
    }
    eprintln!(
        "lin {lin}, decided {decided}, cut {cut}, merged {merged}, brute {brute_checked}; \
         in time order: lin {lin_sorted}, decided {decided_sorted}; \
         out of order, decided across cuts: {unsorted_decided}"
    );
    // Both verdicts are common, the streaming check decides most of the
    // linearizable histories in time order, many across cuts, some after
    // merging.
    assert!((CASES / 4..=CASES * 3 / 4).contains(&lin), "lin {lin}");
    assert!(
        decided_sorted * 100 >= lin_sorted * 95,
        "decided {decided_sorted} of {lin_sorted}"
    );
    assert!(cut >= decided / 3, "cut {cut} of {decided}");
    assert!(merged >= 100, "merged {merged}");
    assert!(brute_checked >= 1000, "brute force {brute_checked}");
}

/// An unknown-outcome write invoked before a cut and read after it is
/// carried past the cut and placed there; one that nobody reads is never
/// placed.
#[test]
fn streaming_carries_unknown_writes_past_cuts() {
    let h = B::default()
        .unknown(put("late"), 0)
        .unknown(put("never"), 1)
        .ok(put("a"), KvOutput::Ok, 2, 3)
        .ok(get(), read(Some("a")), 5, 6)
        .ok(get(), read(Some("late")), 10, 11)
        .ok(put("b"), KvOutput::Ok, 20, 21)
        .ok(get(), read(Some("b")), 30, 31)
        .history();
    let Streamed::Decided { report, stats } = streamed(&h, 1, 64) else {
        panic!("not decided");
    };
    assert!(report.linearizable);
    assert_eq!(report.per_key[0].operations, 7);
    assert!(stats.segments >= 3, "{stats:?}");
    // With nothing carried, the read of "late" has no writer: the whole
    // history must decide.
    assert!(matches!(
        streamed(&h, 1, 0),
        Streamed::NeedsWholeHistory { .. }
    ));
}

/// When the value a segment ends with is ambiguous (two writes at once),
/// the next segment, which needs one of them last, is checked again
/// together with it if the guess was wrong.
#[test]
fn streaming_merges_a_segment_whose_start_was_guessed_wrong() {
    let mut merged = 0;
    for last in ["a", "b"] {
        let h = B::default()
            .ok(put("a"), KvOutput::Ok, 0, 5)
            .ok(put("b"), KvOutput::Ok, 0, 5)
            .ok(get(), read(Some(last)), 10, 11)
            .ok(get(), read(Some(last)), 20, 21)
            .history();
        match streamed(&h, 1, 64) {
            Streamed::Decided { report, stats } => {
                assert!(report.linearizable);
                assert!(stats.segments >= 2, "{stats:?}");
                merged += stats.merged;
            }
            Streamed::NeedsWholeHistory { reason, .. } => panic!("{reason}"),
        }
    }
    // The first segment ends with one guess; one of the two reads needs
    // the other.
    assert!(merged >= 1);
}

/// The streaming check gives up, with a reason, on what it cannot decide:
/// a file not in time order, ids that do not increase, a violation. The
/// whole-history check decides those.
#[test]
fn streaming_hands_over_what_it_cannot_decide() {
    let stale = B::default()
        .ok(put("a"), KvOutput::Ok, 0, 1)
        .ok(put("b"), KvOutput::Ok, 2, 3)
        .ok(get(), read(Some("a")), 4, 5)
        .history();
    let Streamed::NeedsWholeHistory { reason, .. } = streamed(&stale, 1, 64) else {
        panic!("a violation streamed");
    };
    assert!(reason.contains("not linearizable"), "{reason}");
    assert_eq!(verdict(&stale), NOT);

    // Listed after a cut that it precedes in time.
    let unsorted = B::default()
        .ok(put("a"), KvOutput::Ok, 0, 1)
        .ok(get(), read(Some("a")), 5, 6)
        .ok(put("z"), KvOutput::Ok, 0, 1)
        .history();
    let Streamed::NeedsWholeHistory { reason, .. } = streamed(&unsorted, 1, 64) else {
        panic!("a file out of time order streamed");
    };
    assert!(reason.contains("time order"), "{reason}");
    assert_eq!(verdict(&unsorted), LIN);

    // An unknown-outcome write listed before a read that returned before
    // it was invoked: no quiet point before the read (it is invoked before
    // the write), so the order that puts the write first is never built.
    let late = B::default()
        .ok(put("a"), KvOutput::Ok, 0, 1)
        .unknown(put("v"), 100)
        .ok(get(), read(Some("v")), 50, 60)
        .history();
    assert!(matches!(
        streamed(&late, 1, 64),
        Streamed::NeedsWholeHistory { .. }
    ));
    assert_eq!(verdict(&late), NOT);

    let mut ids = in_time_order(&stale);
    ids.operations[2].id = OpId(0);
    ids.operations[0].id = OpId(2);
    let Streamed::NeedsWholeHistory { reason, .. } = streamed(&ids, 1, 64) else {
        panic!("decreasing ids streamed");
    };
    assert!(reason.contains("ids"), "{reason}");

    // Invalid files are the same typed errors as for the whole history.
    assert!(matches!(
        check_json_streaming(
            "{\"operations\":[1]}".as_bytes(),
            &CheckOptions::default(),
            &StreamOptions::default()
        ),
        Err(HistoryError::Json(_))
    ));
}
