//! `consensus check-history`: reading a client history (our JSON, or a
//! Jepsen register log) and checking it for linearizability.

use consensus_actors::history::{
    check_compact_with, check_history_with, check_json_streaming, CheckOptions, CompactHistory,
    History, LinearizabilityReport, StreamOptions, StreamStats, Streamed, Verdict,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

mod html;
pub use html::history_html;

/// The format of a history file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum HistoryFormat {
    /// What `consensus simulate --history` writes (see
    /// `consensus_actors::history`).
    #[default]
    Json,
    /// A Jepsen single-register log (`INFO jepsen.util - P :TYPE :F VALUE`).
    Jepsen,
}

/// A history file that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("{path}: cannot read: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file is not a history in the given format.
    #[error("{path}: not a {format} history: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The format expected.
        format: &'static str,
        /// Why.
        reason: String,
    },
}

/// Reads and parses the history in `path`.
pub fn load_history(path: &Path, format: HistoryFormat) -> Result<History, LoadError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    parse_history(&text, format).map_err(|(format, reason)| LoadError::Parse {
        path: shown,
        format,
        reason: one_line(&reason),
    })
}

/// Reads the history in `path` into the checker's compact form. A JSON
/// history is read as a stream, one operation at a time: the file's text is
/// never held, so memory follows the operations (about 56 bytes each) and
/// their distinct strings.
pub fn load_compact_history(
    path: &Path,
    format: HistoryFormat,
) -> Result<CompactHistory, LoadError> {
    let shown = path.display().to_string();
    let parse_error = |format, reason: String| LoadError::Parse {
        path: shown.clone(),
        format,
        reason: one_line(&reason),
    };
    match format {
        HistoryFormat::Json => {
            let file = std::fs::File::open(path).map_err(|e| LoadError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let bytes = file.metadata().map_or(0, |m| m.len());
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            CompactHistory::from_json_reader_sized(reader, bytes)
                .map_err(|e| parse_error("JSON", e.to_string()))
        }
        HistoryFormat::Jepsen => {
            let history = load_history(path, format)?;
            CompactHistory::from_history(&history).map_err(|e| parse_error("Jepsen", e.to_string()))
        }
    }
}

/// How `check-history` checked a JSON file: streamed in segments, or whole
/// in memory (and why).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckMode {
    /// Decided by the streaming check (`consensus_actors::history::stream`).
    pub streamed: bool,
    /// What the streaming check did (all zero if it was not tried).
    #[serde(flatten)]
    pub stats: StreamStats,
    /// Why the whole history was checked in memory, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_memory_because: Option<String>,
}

/// Checks the JSON history in `path` with the streaming check (memory
/// following its longest quiet-point-delimited segment, not its length):
/// `Ok(Ok(..))` when it decides (linearizable), `Ok(Err(..))` with the
/// reason and figures when the whole history must be checked in memory
/// ([`load_compact_history`] and [`check_compact`]), which decides every
/// case.
#[allow(clippy::type_complexity)]
pub fn check_json_file_streaming(
    path: &Path,
    options: &CheckOptions<'_>,
    stream: &StreamOptions,
) -> Result<Result<(LinearizabilityReport, StreamStats), (String, StreamStats)>, LoadError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| LoadError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    match check_json_streaming(reader, options, stream) {
        Ok(Streamed::Decided { report, stats }) => Ok(Ok((report, stats))),
        Ok(Streamed::NeedsWholeHistory { reason, stats }) => Ok(Err((reason, stats))),
        Err(e) => Err(LoadError::Parse {
            path: shown,
            format: "JSON",
            reason: one_line(&e.to_string()),
        }),
    }
}

/// Parses a history from text.
pub fn parse_history(text: &str, format: HistoryFormat) -> Result<History, (&'static str, String)> {
    match format {
        HistoryFormat::Json => History::from_json(text).map_err(|e| ("JSON", e.to_string())),
        HistoryFormat::Jepsen => History::from_jepsen(text).map_err(|e| ("Jepsen", e.to_string())),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks a compact history (see [`load_compact_history`]).
pub fn check_compact(
    history: &CompactHistory,
    options: &CheckOptions<'_>,
) -> LinearizabilityReport {
    check_compact_with(history, options)
}

/// The result of `consensus check-history --json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    /// The history is linearizable.
    pub linearizable: bool,
    /// `linearizable`, `not_linearizable` or `undecided` (a budget ran out).
    pub verdict: Verdict,
    /// Operations in the history.
    pub operations: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Wall-clock milliseconds the check took.
    pub elapsed_ms: f64,
    /// Search steps spent.
    pub steps: u64,
    /// For each key that is not linearizable (or undecided), why.
    pub violations: Vec<KeyViolation>,
    /// How the file was checked (`None`: a history checked in memory from
    /// the start, e.g. a Jepsen log or with `--html`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<CheckMode>,
}

/// A key whose history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyViolation {
    /// The key.
    pub key: String,
    /// `not_linearizable` or `undecided`.
    pub verdict: Verdict,
    /// Why.
    pub detail: String,
}

/// Checks `history` with an optional per-key step budget and interrupt.
pub fn check(history: &History, options: &CheckOptions<'_>) -> LinearizabilityReport {
    check_history_with(history, options)
}

impl CheckReport {
    /// The JSON report of `report`, which took `elapsed_ms`.
    pub fn from_report(report: &LinearizabilityReport, elapsed_ms: f64) -> Self {
        Self {
            linearizable: report.linearizable,
            verdict: report.verdict,
            operations: report.operations,
            keys: report.keys,
            elapsed_ms,
            steps: report.steps,
            violations: report
                .per_key
                .iter()
                .filter(|k| k.verdict != Verdict::Linearizable)
                .map(|k| KeyViolation {
                    key: k.key.clone(),
                    verdict: k.verdict,
                    detail: match (&k.verdict, &k.explanation) {
                        (Verdict::NotLinearizable, Some(e)) => e.summary.clone(),
                        (Verdict::Undecided, _) => k.undecided_reason().unwrap_or_default(),
                        _ => "not linearizable".to_string(),
                    },
                })
                .collect(),
            mode: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_parse_error_on_one_line() {
        let err = parse_history("{\"operations\": [", HistoryFormat::Json).unwrap_err();
        assert_eq!(err.0, "JSON");
        let err = parse_history(
            "INFO  jepsen.util - 0\t:invoke\t:bogus\tnil\n",
            HistoryFormat::Jepsen,
        )
        .unwrap_err();
        assert_eq!(err.0, "Jepsen");
        assert!(err.1.contains("line 1"), "{}", err.1);
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }

    #[test]
    fn empty_jepsen_log_is_the_empty_history() {
        let h = parse_history("", HistoryFormat::Jepsen).unwrap();
        assert!(h.is_empty());
        let r = check(&h, &CheckOptions::unlimited());
        assert!(r.linearizable);
        let report = CheckReport::from_report(&r, 0.5);
        assert_eq!(report.operations, 0);
        assert_eq!(report.keys, 0);
        assert!(report.violations.is_empty());
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err =
            load_history(Path::new("/nonexistent/history.json"), HistoryFormat::Json).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }));
        assert!(err
            .to_string()
            .starts_with("/nonexistent/history.json: cannot read"));
        let err = load_compact_history(Path::new("/nonexistent/history.json"), HistoryFormat::Json)
            .unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }));
    }

    /// The streaming reader gives the same history and the same report as
    /// the whole-text one, and names a bad file's problem on one line.
    #[test]
    fn compact_loading_matches_the_whole_text_loading() {
        let dir = std::env::temp_dir().join(format!("check-compact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.json");
        let text = r#"{"operations":[
            {"id":0,"client":1,"command":{"Put":{"key":"x","value":"1"}},"invoke_us":0,
             "outcome":{"status":"ok","output":"Ok","complete_us":10}},
            {"id":1,"client":2,"command":{"Get":{"key":"x"}},"invoke_us":20,
             "outcome":{"status":"ok","output":{"Value":null},"complete_us":25}}]}"#;
        std::fs::write(&path, text).unwrap();
        let full = load_history(&path, HistoryFormat::Json).unwrap();
        let compact = load_compact_history(&path, HistoryFormat::Json).unwrap();
        assert_eq!(compact.to_history(), full);
        let options = CheckOptions::default();
        assert_eq!(check_compact(&compact, &options), check(&full, &options));
        assert!(!check(&full, &options).linearizable);
        std::fs::write(&path, "{\"operations\": [1,\n2]}").unwrap();
        let err = load_compact_history(&path, HistoryFormat::Json).unwrap_err();
        assert!(
            matches!(err, LoadError::Parse { format: "JSON", .. }),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
