//! What the core hands its driver after each round of input: what to
//! persist, what to send (and when), what to apply, which reads to serve.

use crate::message::Message;
use crate::types::{Entry, HardState, LogIndex, NodeId, Role, Snapshot, Term};

/// A read that may now be served: the driver has applied at least `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// The id the driver gave the read.
    pub id: u64,
    /// The read index; the state machine has applied at least this far.
    pub index: LogIndex,
}

/// A chunk of a snapshot received from the leader, to be written at
/// `offset` of the file being received (only with `Config::stream_snapshots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingChunk {
    /// What the snapshot covers.
    pub meta: crate::SnapshotMeta,
    /// Its total size.
    pub total_bytes: u64,
    /// Where this chunk goes; chunks come in order, from 0, without gaps.
    /// A chunk at offset 0 starts a new transfer (drop any earlier one).
    pub offset: u64,
    /// The bytes.
    pub data: bytes::Bytes,
}

/// The externally visible volatile state, reported when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of, or [`crate::NO_NODE`].
    pub leader: NodeId,
    /// The current term.
    pub term: Term,
}

/// One batch of output. The driver handles it in this order:
///
/// 1. send `messages` at once (they depend on nothing unpersisted: a leader's
///    appends may go out while it writes the same entries to its own disk,
///    Raft thesis 10.2.1);
/// 2. persist, in this order: `snapshot` (the storage may then drop log
///    entries at or below its index), `truncate_from` (drop entries at and
///    above it), `entries` (append), `hard_state`;
/// 3. when that is durable: send `messages_after_persist`, call
///    [`crate::Raft::on_persisted`] with [`Ready::persisted_marker`];
/// 4. restore the state machine from `snapshot` if `restore_snapshot`, then
///    apply `committed_entries` in order;
/// 5. serve `reads` (the state machine has applied far enough), and fail
///    `aborted_reads`.
#[derive(Debug, Default)]
pub struct Ready {
    /// Term, vote and commit index to persist, if they changed.
    pub hard_state: Option<HardState>,
    /// A snapshot to persist: one this node took, or one it received.
    pub snapshot: Option<Snapshot>,
    /// The snapshot came from the leader: restore the state machine from it
    /// before applying anything else.
    pub restore_snapshot: bool,
    /// The snapshot's data is what was handed out in `snapshot_chunks` (its
    /// `data` is empty): finish the received file and use it.
    pub snapshot_streamed: bool,
    /// Chunks of a snapshot being received, to write before anything else in
    /// this batch (only with `Config::stream_snapshots`).
    pub snapshot_chunks: Vec<IncomingChunk>,
    /// Drop stored log entries at and above this index before appending.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append to the stored log.
    pub entries: Vec<Entry>,
    /// Messages that may be sent before this batch is persisted.
    pub messages: Vec<Message>,
    /// Messages that must wait until this batch is persisted.
    pub messages_after_persist: Vec<Message>,
    /// Committed entries to apply, in order, after this batch is persisted.
    pub committed_entries: Vec<Entry>,
    /// Reads that may now be served.
    pub reads: Vec<ReadState>,
    /// Reads that failed (no leader, leadership lost): retry them.
    pub aborted_reads: Vec<u64>,
    /// Role, leader or term changed.
    pub soft_state: Option<SoftState>,
}

impl Ready {
    /// The log position to report to [`crate::Raft::on_persisted`] once
    /// this batch is durable, if it wrote any log entries or a snapshot.
    pub fn persisted_marker(&self) -> Option<(LogIndex, Term)> {
        if let Some(last) = self.entries.last() {
            return Some((last.index, last.term));
        }
        self.snapshot.as_ref().map(|s| (s.meta.index, s.meta.term))
    }

    /// True when something must be written before `messages_after_persist`
    /// may leave.
    pub fn needs_persist(&self) -> bool {
        self.hard_state.is_some()
            || self.snapshot.is_some()
            || !self.snapshot_chunks.is_empty()
            || self.truncate_from.is_some()
            || !self.entries.is_empty()
    }
}
