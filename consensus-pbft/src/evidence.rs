//! Evidence against replicas: what a correct replica saw that only a
//! faulty one sends. Each record names the accused replica, the kind of
//! misbehaviour and a readable proof.
//!
//! With a [`ClusterRecorder`] ([`EvidenceLog::with_recorder`]) every record
//! also counts in the cluster's metrics: the counter [`EVIDENCE_METRIC`]
//! labelled with the accused replica and the kind.

use consensus_actors::metrics::ClusterRecorder;
use consensus_actors::types::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// The kinds of misbehaviour detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EvidenceKind {
    /// A MAC that does not check.
    InvalidMac,
    /// A signature that does not check (the message's own or a nested one).
    InvalidSignature,
    /// A message claiming another sender than the one it came from.
    Impersonation,
    /// A batch whose digest is not the one its PRE-PREPARE carries.
    WrongDigest,
    /// Two signed PRE-PREPAREs for one view and sequence number.
    Equivocation,
    /// Two PREPAREs or COMMITs of one replica for one slot, with different
    /// digests.
    ConflictingVote,
    /// A VIEW-CHANGE whose checkpoint proof or certificates do not hold.
    InvalidViewChange,
    /// A NEW-VIEW that does not follow from its VIEW-CHANGEs.
    LyingNewView,
    /// A state transfer whose state does not match its certified digest.
    BadStateTransfer,
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            EvidenceKind::InvalidMac => "invalid MAC",
            EvidenceKind::InvalidSignature => "invalid signature",
            EvidenceKind::Impersonation => "impersonation",
            EvidenceKind::WrongDigest => "wrong digest",
            EvidenceKind::Equivocation => "equivocation",
            EvidenceKind::ConflictingVote => "conflicting vote",
            EvidenceKind::InvalidViewChange => "invalid VIEW-CHANGE",
            EvidenceKind::LyingNewView => "lying NEW-VIEW",
            EvidenceKind::BadStateTransfer => "bad state transfer",
        };
        f.write_str(s)
    }
}

/// One record of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Who saw it.
    pub witness: NodeId,
    /// The replica accused.
    pub accused: NodeId,
    /// What it did.
    pub kind: EvidenceKind,
    /// The proof, readable.
    pub proof: String,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} accuses {} of {}: {}",
            self.witness, self.accused, self.kind, self.proof
        )
    }
}

/// Records kept per log at most (older ones are counted, not kept).
pub const EVIDENCE_KEPT: usize = 1024;

/// The counter evidence records count in, labelled `accused` (`n1`) and
/// `kind` (`InvalidMac`...): `pbft_evidence{accused="n1",kind="Equivocation"}`.
pub const EVIDENCE_METRIC: &str = "pbft_evidence";

/// A cluster's evidence records, shared by its nodes (and readable from
/// the thread that started the cluster).
#[derive(Clone, Default)]
pub struct EvidenceLog {
    inner: Arc<Mutex<(Vec<Evidence>, u64)>>,
    recorder: Option<ClusterRecorder>,
}

impl fmt::Debug for EvidenceLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EvidenceLog")
            .field("total", &self.total())
            .field("metrics", &self.recorder.is_some())
            .finish()
    }
}

impl EvidenceLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same log, also counting every record in `recorder` (see
    /// [`EVIDENCE_METRIC`]). Set it before handing clones out: clones made
    /// earlier do not count.
    #[must_use]
    pub fn with_recorder(mut self, recorder: ClusterRecorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    fn lock(&self) -> MutexGuard<'_, (Vec<Evidence>, u64)> {
        // A panic while recording leaves whole records: keep using them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `evidence`.
    pub fn record(&self, evidence: Evidence) {
        tracing::warn!(%evidence, "byzantine behaviour detected");
        if let Some(recorder) = &self.recorder {
            recorder.with(|| {
                ::metrics::counter!(
                    EVIDENCE_METRIC,
                    "accused" => evidence.accused.to_string(),
                    "kind" => format!("{:?}", evidence.kind)
                )
                .increment(1);
            });
        }
        let mut inner = self.lock();
        inner.1 += 1;
        if inner.0.len() < EVIDENCE_KEPT {
            inner.0.push(evidence);
        }
    }

    /// Counts one occurrence of the counter `name` for `replica` in the
    /// recorder, if the log has one (a node's other metrics ride along
    /// with its evidence: [`crate::engine::core::Effect::Count`]).
    pub fn count(&self, name: &'static str, replica: NodeId) {
        if let Some(recorder) = &self.recorder {
            recorder.with(|| {
                ::metrics::counter!(name, "replica" => replica.to_string()).increment(1);
            });
        }
    }

    /// The records kept.
    pub fn records(&self) -> Vec<Evidence> {
        self.lock().0.clone()
    }

    /// How many were recorded in all.
    pub fn total(&self) -> u64 {
        self.lock().1
    }

    /// The replicas accused, sorted.
    pub fn accused(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self.lock().0.iter().map(|e| e.accused).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
