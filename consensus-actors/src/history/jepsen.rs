//! Import of Jepsen single-register logs, as published with Porcupine (its
//! `test_data/jepsen`, Jepsen runs against etcd).
//!
//! One event per line, fields separated by tabs or runs of spaces:
//!
//! ```text
//! INFO  jepsen.util - PROCESS  :TYPE  :F  VALUE
//! ```
//!
//! - `TYPE`: `:invoke`, `:ok`, `:fail` or `:info`;
//! - `F` and `VALUE`: `:read nil` (invoke), `:read N` or `:read nil` (ok);
//!   `:write N`; `:cas [OLD NEW]`; `:timed-out` as a completion value marks
//!   an unknown result.
//!
//! The log becomes a [`History`] on the single key [`REGISTER_KEY`], which
//! starts absent (`nil`). Process `P` becomes client `P`; the virtual time of
//! an event is its line number (1-based), so real-time order is line order.
//!
//! | event | becomes |
//! |---|---|
//! | `:invoke :read nil` | [`KvCommand::Get`] |
//! | `:invoke :write N` | [`KvCommand::Put`] of `N` |
//! | `:invoke :cas [OLD NEW]` | [`KvCommand::Cas`] expecting `OLD` |
//! | `:ok :read V` | [`Outcome::Ok`] with [`ObservedOutput::Value`] |
//! | `:ok :write N` / `:ok :cas [..]` | [`Outcome::Ok`] with `Ok` / `CasOk` |
//! | `:fail :cas [..]` | [`Outcome::Ok`] with [`ObservedOutput::CasFailedUnreported`]: the CAS ran and the register did not hold `OLD` |
//! | `:fail :read`/`:write` | [`Outcome::Fail`]: it did not happen |
//! | `:info ..` or a `:timed-out` value | [`Outcome::Unknown`] |
//! | invoked, never completed | [`Outcome::Unknown`] |
//!
//! Blank lines are skipped; the empty file is the empty history. Any other
//! line that does not fit is a [`JepsenError`] with its line number.

use super::{History, ObservedOutput, OpId, Operation, Outcome};
use crate::kv::KvCommand;
use crate::types::ClientId;
use std::collections::BTreeMap;

/// The key of the register a Jepsen log is imported onto.
pub const REGISTER_KEY: &str = "r";

/// A Jepsen log line that cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct JepsenError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub kind: JepsenErrorKind,
}

/// What is wrong with a Jepsen log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JepsenErrorKind {
    /// The line is not `INFO jepsen.util - PROCESS :TYPE :F VALUE`.
    #[error("expected `INFO jepsen.util - PROCESS :TYPE :F VALUE`")]
    Shape,
    /// The process field is not a non-negative integer.
    #[error("bad process number {0:?}")]
    Process(String),
    /// The type is not `:invoke`, `:ok`, `:fail` or `:info`.
    #[error("unknown event type {0:?}")]
    EventType(String),
    /// The function is not `:read`, `:write` or `:cas`.
    #[error("unknown function {0:?}")]
    Function(String),
    /// The value does not fit the function and event type.
    #[error("bad value {value:?} for {function} {event}")]
    Value {
        /// The event type.
        event: String,
        /// The function.
        function: String,
        /// The value found.
        value: String,
    },
    /// A process invokes while its previous operation is still open.
    #[error("process {0} invokes while its previous operation is still open")]
    AlreadyOpen(u64),
    /// A process completes an operation it never invoked.
    #[error("process {0} completes an operation it did not invoke")]
    NotOpen(u64),
    /// The completion does not match the open operation.
    #[error("completion {completed} does not match the invocation {invoked}")]
    Mismatch {
        /// The open invocation, as written.
        invoked: String,
        /// The completion, as written.
        completed: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Completion {
    Ok,
    Fail,
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Function {
    Read,
    Write,
    Cas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    Nil,
    Int(i64),
    Pair(i64, i64),
    TimedOut,
}

struct Line<'a> {
    process: u64,
    event: Event,
    function: Function,
    value: Value,
    /// `:F VALUE` as written, for error messages.
    text: String,
    raw_event: &'a str,
}

fn parse_line(line: &str) -> Result<Option<Line<'_>>, JepsenErrorKind> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.is_empty() {
        return Ok(None);
    }
    if fields.len() < 7 || fields[0] != "INFO" || fields[1] != "jepsen.util" || fields[2] != "-" {
        return Err(JepsenErrorKind::Shape);
    }
    let process = fields[3]
        .parse::<u64>()
        .map_err(|_| JepsenErrorKind::Process(fields[3].to_string()))?;
    let event = match fields[4] {
        ":invoke" => Event::Invoke,
        ":ok" => Event::Ok,
        ":fail" => Event::Fail,
        ":info" => Event::Info,
        other => return Err(JepsenErrorKind::EventType(other.to_string())),
    };
    let function = match fields[5] {
        ":read" => Function::Read,
        ":write" => Function::Write,
        ":cas" => Function::Cas,
        other => return Err(JepsenErrorKind::Function(other.to_string())),
    };
    let raw_value = fields[6..].join(" ");
    let bad_value = || JepsenErrorKind::Value {
        event: fields[4].to_string(),
        function: fields[5].to_string(),
        value: raw_value.clone(),
    };
    let value = parse_value(&raw_value).ok_or_else(bad_value)?;
    let fits = match (event, function, value) {
        (_, _, Value::TimedOut) => event != Event::Invoke,
        (Event::Info, _, _) => true,
        (Event::Invoke, Function::Read, v) => v == Value::Nil,
        (_, Function::Read, v) => matches!(v, Value::Nil | Value::Int(_)),
        (_, Function::Write, v) => matches!(v, Value::Int(_)),
        (_, Function::Cas, v) => matches!(v, Value::Pair(..)),
    };
    if !fits {
        return Err(bad_value());
    }
    Ok(Some(Line {
        process,
        event,
        function,
        value,
        text: format!("{} {}", fields[5], raw_value),
        raw_event: fields[4],
    }))
}

/// `nil`, an integer, `[A B]` or `:timed-out`.
fn parse_value(text: &str) -> Option<Value> {
    match text {
        "nil" => Some(Value::Nil),
        ":timed-out" => Some(Value::TimedOut),
        _ => {
            if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                let mut parts = inner.split_whitespace();
                let a = parts.next()?.parse().ok()?;
                let b = parts.next()?.parse().ok()?;
                if parts.next().is_some() {
                    return None;
                }
                Some(Value::Pair(a, b))
            } else {
                text.parse().ok().map(Value::Int)
            }
        }
    }
}

/// An invocation waiting for its completion.
struct Open {
    index: usize,
    function: Function,
    value: Value,
    text: String,
}

/// Parses a Jepsen single-register log into a [`History`] (see the
/// [module documentation](self) for the mapping).
pub fn parse(text: &str) -> Result<History, JepsenError> {
    let mut operations: Vec<Operation> = Vec::new();
    let mut open: BTreeMap<u64, Open> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let time_us = line_no as u64;
        let err = |kind| JepsenError {
            line: line_no,
            kind,
        };
        let Some(line) = parse_line(raw).map_err(err)? else {
            continue;
        };
        let completion = match line.event {
            Event::Ok => Completion::Ok,
            Event::Fail => Completion::Fail,
            Event::Info => Completion::Info,
            Event::Invoke => {
                if open.contains_key(&line.process) {
                    return Err(err(JepsenErrorKind::AlreadyOpen(line.process)));
                }
                let key = REGISTER_KEY.to_string();
                let command = match line.value {
                    Value::Int(n) if line.function == Function::Write => KvCommand::Put {
                        key,
                        value: n.to_string(),
                    },
                    Value::Pair(old, new) => KvCommand::Cas {
                        key,
                        expected: Some(old.to_string()),
                        new: new.to_string(),
                    },
                    _ => KvCommand::Get { key },
                };
                open.insert(
                    line.process,
                    Open {
                        index: operations.len(),
                        function: line.function,
                        value: line.value,
                        text: line.text,
                    },
                );
                operations.push(Operation {
                    id: OpId(operations.len() as u64),
                    client: ClientId(line.process),
                    command,
                    invoke_us: time_us,
                    outcome: Outcome::Unknown { gave_up_us: None },
                });
                continue;
            }
        };
        let Some(invoked) = open.remove(&line.process) else {
            return Err(err(JepsenErrorKind::NotOpen(line.process)));
        };
        // A write or CAS completion echoes its invocation's argument.
        let echoes = match (line.function, line.value) {
            (_, Value::TimedOut) => true,
            (Function::Read, _) => true,
            (_, v) => v == invoked.value,
        };
        if line.function != invoked.function || (completion != Completion::Info && !echoes) {
            return Err(err(JepsenErrorKind::Mismatch {
                invoked: invoked.text,
                completed: format!("{} {}", line.raw_event, line.text),
            }));
        }
        let outcome = match (completion, line.function, line.value) {
            (Completion::Info, _, _) | (_, _, Value::TimedOut) => Outcome::Unknown {
                gave_up_us: Some(time_us),
            },
            (Completion::Ok, Function::Read, v) => Outcome::Ok {
                output: ObservedOutput::Value(match v {
                    Value::Int(n) => Some(n.to_string()),
                    _ => None,
                }),
                complete_us: time_us,
            },
            (Completion::Ok, Function::Write, _) => Outcome::Ok {
                output: ObservedOutput::Ok,
                complete_us: time_us,
            },
            (Completion::Ok, Function::Cas, _) => Outcome::Ok {
                output: ObservedOutput::CasOk,
                complete_us: time_us,
            },
            (Completion::Fail, Function::Cas, _) => Outcome::Ok {
                output: ObservedOutput::CasFailedUnreported,
                complete_us: time_us,
            },
            (Completion::Fail, _, _) => Outcome::Fail {
                complete_us: time_us,
            },
        };
        operations[invoked.index].outcome = outcome;
    }
    Ok(History { operations })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{check_history_with, CheckOptions, Verdict};
    use std::path::PathBuf;

    fn line(process: u64, rest: &str) -> String {
        format!("INFO  jepsen.util - {process}\t{rest}\n")
    }

    #[test]
    fn maps_every_event_kind() {
        let log = [
            line(0, ":invoke\t:read\tnil"),
            line(1, ":invoke\t:write\t3"),
            line(2, ":invoke\t:cas\t[3 4]"),
            line(3, ":invoke\t:cas\t[1 2]"),
            line(4, ":invoke\t:write\t9"),
            line(0, ":ok\t:read\tnil"),
            line(1, ":ok\t:write\t3"),
            line(2, ":ok\t:cas\t[3 4]"),
            line(3, ":fail\t:cas\t[1 2]"),
            line(4, ":info\t:write\t:timed-out"),
            line(0, ":invoke\t:read\tnil"),
            line(0, ":fail\t:read\t:timed-out"),
            line(1, ":invoke\t:write\t5"),
            line(1, ":fail\t:write\t5"),
            line(2, ":invoke\t:read\tnil"),
            line(2, ":ok\t:read\t4"),
            line(3, ":invoke\t:write\t7"),
        ]
        .concat();
        let h = parse(&log).unwrap();
        let outcomes: Vec<(KvCommand, u64, Outcome)> = h
            .operations
            .iter()
            .map(|op| (op.command.clone(), op.invoke_us, op.outcome.clone()))
            .collect();
        let ok = |output, complete_us| Outcome::Ok {
            output,
            complete_us,
        };
        assert_eq!(
            outcomes,
            vec![
                (KvCommand::get("r"), 1, ok(ObservedOutput::Value(None), 6)),
                (KvCommand::put("r", "3"), 2, ok(ObservedOutput::Ok, 7)),
                (
                    KvCommand::cas("r", Some("3"), "4"),
                    3,
                    ok(ObservedOutput::CasOk, 8)
                ),
                (
                    KvCommand::cas("r", Some("1"), "2"),
                    4,
                    ok(ObservedOutput::CasFailedUnreported, 9)
                ),
                (
                    KvCommand::put("r", "9"),
                    5,
                    Outcome::Unknown {
                        gave_up_us: Some(10)
                    }
                ),
                (
                    KvCommand::get("r"),
                    11,
                    Outcome::Unknown {
                        gave_up_us: Some(12)
                    }
                ),
                (
                    KvCommand::put("r", "5"),
                    13,
                    Outcome::Fail { complete_us: 14 }
                ),
                (
                    KvCommand::get("r"),
                    15,
                    ok(ObservedOutput::Value(Some("4".into())), 16)
                ),
                (
                    KvCommand::put("r", "7"),
                    17,
                    Outcome::Unknown { gave_up_us: None }
                ),
            ]
        );
        let ids: Vec<u64> = h.operations.iter().map(|op| op.id.get()).collect();
        assert_eq!(ids, (0..9).collect::<Vec<_>>());
        assert_eq!(h.operations[3].client, ClientId(3));
        h.validate().unwrap();
    }

    #[test]
    fn runs_of_spaces_tabs_and_blank_lines_are_tolerated() {
        let spaced = "INFO  jepsen.util - 0   :invoke :cas    [3 0]\n\n   \nINFO jepsen.util -  0 :ok  :cas  [3   0]  \n";
        let tabbed = "INFO\tjepsen.util\t-\t0\t:invoke\t:cas\t[3 0]\nINFO\tjepsen.util\t-\t0\t:ok\t:cas\t[3 0]";
        let a = parse(spaced).unwrap();
        let b = parse(tabbed).unwrap();
        assert_eq!(a.operations.len(), 1);
        assert_eq!(a.operations[0].command, KvCommand::cas("r", Some("3"), "0"));
        assert_eq!(
            a.operations[0].outcome,
            Outcome::Ok {
                output: ObservedOutput::CasOk,
                complete_us: 4
            }
        );
        assert_eq!(b.operations[0].command, a.operations[0].command);
    }

    #[test]
    fn empty_file_is_the_empty_history() {
        assert_eq!(parse("").unwrap(), History::default());
        assert_eq!(parse("\n\n").unwrap(), History::default());
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        let ok_first = line(0, ":invoke\t:read\tnil");
        let cases: Vec<(String, usize, JepsenErrorKind)> = vec![
            ("garbage\n".into(), 1, JepsenErrorKind::Shape),
            (
                format!("{ok_first}INFO  jepsen.util - 0\t:ok\t:read\n"),
                2,
                JepsenErrorKind::Shape,
            ),
            (
                line(7, ":invoke\t:read\tnil").replace(" 7", " x7"),
                1,
                JepsenErrorKind::Process("x7".into()),
            ),
            (
                line(0, ":done\t:read\tnil"),
                1,
                JepsenErrorKind::EventType(":done".into()),
            ),
            (
                line(0, ":invoke\t:append\t3"),
                1,
                JepsenErrorKind::Function(":append".into()),
            ),
            (
                line(0, ":invoke\t:write\tnil"),
                1,
                JepsenErrorKind::Value {
                    event: ":invoke".into(),
                    function: ":write".into(),
                    value: "nil".into(),
                },
            ),
            (
                line(0, ":invoke\t:cas\t[1 2 3]"),
                1,
                JepsenErrorKind::Value {
                    event: ":invoke".into(),
                    function: ":cas".into(),
                    value: "[1 2 3]".into(),
                },
            ),
            (
                format!("{ok_first}{ok_first}"),
                2,
                JepsenErrorKind::AlreadyOpen(0),
            ),
            (line(4, ":ok\t:read\t3"), 1, JepsenErrorKind::NotOpen(4)),
            (
                format!("{ok_first}{}", line(0, ":ok\t:write\t3")),
                2,
                JepsenErrorKind::Mismatch {
                    invoked: ":read nil".into(),
                    completed: ":ok :write 3".into(),
                },
            ),
            (
                format!(
                    "{}{}",
                    line(0, ":invoke\t:write\t3"),
                    line(0, ":ok\t:write\t4")
                ),
                2,
                JepsenErrorKind::Mismatch {
                    invoked: ":write 3".into(),
                    completed: ":ok :write 4".into(),
                },
            ),
        ];
        for (text, line_no, kind) in cases {
            let err = parse(&text).unwrap_err();
            assert_eq!(
                err,
                JepsenError {
                    line: line_no,
                    kind
                },
                "for {text:?}"
            );
            assert!(err.to_string().starts_with(&format!("line {line_no}: ")));
        }
    }

    /// The Jepsen etcd histories whose verdict Porcupine's own test suite
    /// (`porcupine_test.go`, `TestEtcdJepsen000`..`102`) asserts as
    /// linearizable; every other file is asserted not linearizable there,
    /// except `etcd_095` (empty: the cluster failed to start), which is
    /// trivially linearizable.
    const PORCUPINE_LINEARIZABLE: &[u32] = &[
        2, 5, 7, 18, 25, 31, 38, 45, 48, 49, 51, 53, 56, 67, 75, 76, 80, 87, 92, 95, 98, 100, 101,
        102,
    ];

    /// Where the Jepsen etcd histories are: `$JEPSEN_ETCD_DIR` if set, else
    /// `<workspace root>/../shared/testdata/jepsen-etcd`.
    fn jepsen_dir() -> PathBuf {
        match std::env::var_os("JEPSEN_ETCD_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("..")
                .join("shared")
                .join("testdata")
                .join("jepsen-etcd"),
        }
    }

    /// Every Jepsen etcd history gets the verdict Porcupine's tests expect,
    /// within a step budget.
    #[test]
    fn jepsen_etcd_histories_match_porcupine() {
        let dir = jepsen_dir();
        if !dir.is_dir() {
            assert!(
                std::env::var_os("CI").is_none(),
                "Jepsen test data missing at {} under CI",
                dir.display()
            );
            println!("skipped: no Jepsen test data at {}", dir.display());
            return;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 103, "expected etcd_000..etcd_102");
        let options = CheckOptions::default().with_max_steps_per_key(5_000_000);
        let (mut linearizable, mut violations) = (0, 0);
        for path in &files {
            let name = path.file_stem().unwrap().to_str().unwrap();
            let number: u32 = name.trim_start_matches("etcd_").parse().unwrap();
            let text = std::fs::read_to_string(path).unwrap();
            let history = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let report = check_history_with(&history, &options);
            let expected = if PORCUPINE_LINEARIZABLE.contains(&number) {
                Verdict::Linearizable
            } else {
                Verdict::NotLinearizable
            };
            assert_eq!(report.verdict, expected, "{name}: {report}");
            match report.verdict {
                Verdict::Linearizable => linearizable += 1,
                _ => {
                    violations += 1;
                    let e = report.per_key[0].explanation.as_ref().unwrap();
                    assert!(e.candidates.contains(&e.blocked), "{name}: {e:?}");
                }
            }
        }
        assert_eq!((linearizable, violations), (24, 79));
    }
}
