//! The contract between a replica's three protocol components: the
//! PBFTEngine ([`crate::engine`]), the ViewChanger ([`crate::view_changer`])
//! and the CheckpointProtocol ([`crate::checkpoint`]). Each note is plain
//! data; the cores emit them as [`Note`]s, and the actors carry them over
//! `Recipient`s in order (one FIFO channel per direction), or
//! [`crate::engine::replica::Replica`] routes them at once in a single core.
//!
//! # Who owns what
//!
//! * The engine owns the normal case, the state machine and the client
//!   table, and keeps the durable copies the two others resync from: its
//!   view and whether it runs the normal case, the last NEW-VIEW it
//!   installed, its prepared certificates, the last stable checkpoint with
//!   its proof, and the encoded state of its checkpoints at and above it.
//! * The ViewChanger owns the request timer, the VIEW-CHANGEs it collects,
//!   the NEW-VIEW computation and check, and the timeouts that grow across
//!   successive views. It decides when the view changes; the engine moves
//!   only when told ([`EngineNote::StartViewChange`],
//!   [`EngineNote::EnterView`]).
//! * The CheckpointProtocol owns the CHECKPOINT votes, the stable
//!   checkpoint and the watermarks it implies, answers FETCH-STATE and
//!   verifies state transfers. The engine learns the watermarks from
//!   [`EngineNote::Stable`].
//!
//! # Ordering: why a VIEW-CHANGE never misses a certificate
//!
//! The ViewChanger never builds a VIEW-CHANGE from a copy of the engine's
//! certificates: it asks the engine to stop the normal case first
//! ([`EngineNote::StartViewChange`]) and builds the message from the
//! engine's answer ([`ViewChangerNote::EngineState`]), which the engine
//! sends after it stopped accepting PRE-PREPAREs, PREPAREs and COMMITs of
//! the old view. So every certificate the replica ever formed in a lower
//! view is in the VIEW-CHANGE (OSDI'99 §4.4).
//!
//! # Resync after a restart
//!
//! A restarted ViewChanger or CheckpointProtocol trusts nothing it held in
//! memory. In `started()` it asks the engine through the same ordered
//! channel ([`EngineNote::SyncViewChanger`], [`EngineNote::SyncCheckpoint`])
//! and is *unsynced* until the answer arrives:
//!
//! * an unsynced ViewChanger starts no view change and accepts no NEW-VIEW;
//!   the answer gives it the engine's view, status and last NEW-VIEW, the
//!   request timer (whether requests wait, and since when) and the count
//!   of successive view changes without progress (so the timeouts go on
//!   doubling), and, if the engine is between views, the certificates it
//!   needs to send its VIEW-CHANGE again. VIEW-CHANGEs of peers it lost come back through
//!   their retransmission; a NEW-VIEW it lost through the primary's.
//! # Stable checkpoints the engine has not reached
//!
//! Other replicas' CHECKPOINTs usually make a checkpoint stable before
//! this replica's own execution reaches it. The engine then keeps its
//! watermarks and its log until it executes up to the checkpoint (the
//! stable checkpoint is *deferred*), unless it cannot: then it answers
//! [`CheckpointNote::Behind`] and the CheckpointProtocol fetches the state.
//! The CheckpointProtocol also fetches if execution stalls below the
//! checkpoint (the COMMITs the engine lacks may never come). So a replica
//! that keeps up never transfers state.
//!
//! # Resync after a restart (continued)
//!
//! * an unsynced CheckpointProtocol records nothing; the answer gives it
//!   the last executed sequence number, the stable checkpoint with its
//!   proof (its own stored proof), and the states of the engine's
//!   checkpoints at and above it (to answer FETCH-STATE). Votes of peers
//!   for later checkpoints are learnt again as they come; if the engine is
//!   behind the stable checkpoint, it fetches the state.
//!
//! The engine answers in order with everything else it sends, so the
//! answer reflects every note sent before it and precedes every note after.

use crate::checkpoint::core::StableCheckpoint;
use crate::messages::{Digest, NewView, PreparedCert, Signed};
use crate::types::{SeqNo, View};
use crate::view_changer::core::NewViewPlan;
use consensus_actors::types::NodeId;
use std::sync::Arc;

/// What the ViewChanger and the CheckpointProtocol tell the engine.
#[derive(Clone, Debug)]
pub enum EngineNote {
    /// ViewChanger: stop the normal case and move to `view` (above the
    /// engine's); answer with [`ViewChangerNote::EngineState`].
    StartViewChange {
        /// The view to move to.
        view: View,
    },
    /// ViewChanger: a NEW-VIEW it sent or checked; the engine enters its
    /// view with the re-issued PRE-PREPAREs of `plan`.
    EnterView {
        /// The NEW-VIEW.
        new_view: Signed<NewView>,
        /// `min-s`, `max-s` and `O`, computed from its VIEW-CHANGEs.
        plan: NewViewPlan,
    },
    /// A restarted ViewChanger asks for [`ViewChangerNote::EngineState`].
    SyncViewChanger,
    /// CheckpointProtocol: a new stable checkpoint; the watermarks move
    /// and the log at or below it goes.
    Stable(StableCheckpoint),
    /// CheckpointProtocol: a state transfer whose state has the digest
    /// `digest` certified by `stable`'s proof; the engine installs it.
    Install {
        /// The replica that sent the state.
        from: NodeId,
        /// The certified checkpoint.
        stable: StableCheckpoint,
        /// The encoded state (state machine snapshot and client table).
        state: Arc<Vec<u8>>,
    },
    /// A restarted CheckpointProtocol asks for [`CheckpointNote::Synced`].
    SyncCheckpoint,
}

/// What the engine tells the ViewChanger.
// Sent once per executed batch at most, and moved, never copied: boxing
// the large variant would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum ViewChangerNote {
    /// The request timer's input: whether requests wait, whether it must
    /// start again (the waiting requests were re-queued), whether execution
    /// progressed (which also resets the growing timeouts).
    Activity {
        /// Requests known and not executed.
        waiting: bool,
        /// The timer starts again now.
        restart: bool,
        /// Some request executed.
        progressed: bool,
    },
    /// The engine's view and status, after [`EngineNote::StartViewChange`]
    /// or [`EngineNote::SyncViewChanger`].
    EngineState {
        /// Its view.
        view: View,
        /// Whether it runs the normal case in `view`.
        normal: bool,
        /// The last NEW-VIEW it installed.
        new_view: Option<Signed<NewView>>,
        /// Its stable checkpoint (with proof).
        stable: StableCheckpoint,
        /// Between views: its prepared certificates above `stable` (final:
        /// it forms no more in lower views). Empty in the normal case.
        prepared: Vec<PreparedCert>,
        /// The request timer as the engine last reported it: `Some(t)`
        /// when requests wait, the timer running since `t` (µs, the
        /// engine's clock); `None` when none wait. A restarted ViewChanger
        /// re-arms its timer from it instead of waiting for the next
        /// [`ViewChangerNote::Activity`].
        waiting_since_us: Option<u64>,
        /// Successive view changes without progress: one per
        /// [`EngineNote::StartViewChange`] to a higher view, zero again
        /// when a request executes. A restarted ViewChanger's timeouts go
        /// on doubling from here instead of starting over.
        attempts: u32,
    },
    /// The primary's retransmission: the NEW-VIEW again to these replicas,
    /// not heard from in the view.
    ResendNewView {
        /// The replicas.
        to: Vec<NodeId>,
    },
}

/// One of the engine's checkpoints: the state after executing `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnCheckpoint {
    /// The sequence number.
    pub seq: SeqNo,
    /// The digest of `state`.
    pub digest: Digest,
    /// The encoded state (shared, never copied between components).
    pub state: Arc<Vec<u8>>,
}

/// What the engine tells the CheckpointProtocol.
#[derive(Clone, Debug)]
pub enum CheckpointNote {
    /// Execution reached `last_exec`; `checkpoint` when it passed a
    /// checkpoint (the CheckpointProtocol signs and multicasts the vote).
    Executed {
        /// The last sequence number executed.
        last_exec: SeqNo,
        /// The checkpoint taken on the way.
        checkpoint: Option<OwnCheckpoint>,
    },
    /// The engine installed a transferred state (no vote: it did not
    /// execute it).
    Installed(OwnCheckpoint),
    /// A NEW-VIEW's `min-s` with its proof: stable.
    Adopt(StableCheckpoint),
    /// The answer to [`EngineNote::Stable`] when the engine has not
    /// executed up to `seq` and cannot by the normal case (it is between
    /// views, or `seq` is beyond its window): fetch the state now. Without it the CheckpointProtocol waits for execution to reach
    /// `seq` (the engine keeps its log up to it), and fetches only if
    /// execution stalls.
    Behind {
        /// The stable checkpoint.
        seq: SeqNo,
    },
    /// The answer to [`EngineNote::SyncCheckpoint`].
    Synced {
        /// The last sequence number executed.
        last_exec: SeqNo,
        /// The stable checkpoint the engine knows, with its proof.
        stable: StableCheckpoint,
        /// The engine's checkpoints at and above it.
        own: Vec<OwnCheckpoint>,
    },
}

/// A note from one component to another.
#[derive(Clone, Debug)]
pub enum Note {
    /// To the engine.
    Engine(EngineNote),
    /// To the ViewChanger.
    ViewChanger(ViewChangerNote),
    /// To the CheckpointProtocol.
    Checkpoint(CheckpointNote),
}
