//! One simulated node: the core, its disk (what survives a crash), the write
//! queue in front of the disk (what a crash loses), and its state machine.

use std::collections::{BTreeMap, VecDeque};

use raft_core::{
    Entry, HardState, LogIndex, Membership, Message, Raft, ReadState, Ready, Snapshot, Term,
};

use crate::kv::Kv;

/// What the node's disk holds: survives crashes.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    /// Term, vote, commit.
    pub hard: HardState,
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot (possibly some before it).
    pub entries: Vec<Entry>,
}

impl Disk {
    /// Applies the persistent part of a batch in the order `Ready` requires.
    /// Returns a description of an inconsistency the core handed out.
    pub fn write(&mut self, w: &Write) -> Result<(), String> {
        if let Some(s) = &w.snapshot {
            self.entries.retain(|e| e.index > s.meta.index);
            self.snapshot = Some(s.clone());
        }
        if let Some(t) = w.truncate_from {
            self.entries.retain(|e| e.index < t);
        }
        for e in &w.entries {
            let expected = match self.entries.last() {
                Some(last) => last.index + 1,
                None => self.snapshot.as_ref().map_or(1, |s| s.meta.index + 1),
            };
            if e.index != expected {
                return Err(format!(
                    "storage asked to append entry {} where {} comes next",
                    e.index, expected
                ));
            }
            self.entries.push(e.clone());
        }
        if let Some(hs) = w.hard_state {
            self.hard = hs;
        }
        Ok(())
    }
}

/// One batch handed out by the core, waiting for the disk.
#[derive(Debug, Default)]
pub struct Write {
    /// Term, vote, commit to persist.
    pub hard_state: Option<HardState>,
    /// Snapshot to persist.
    pub snapshot: Option<Snapshot>,
    /// Restore the state machine from `snapshot`.
    pub restore: bool,
    /// Truncation point.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// Messages released once durable.
    pub after: Vec<Message>,
    /// What to report to `on_persisted`.
    pub marker: Option<(LogIndex, Term)>,
    /// Committed entries to apply once durable.
    pub committed: Vec<Entry>,
    /// Reads to serve after applying.
    pub reads: Vec<ReadState>,
    /// Reads that failed.
    pub aborted: Vec<u64>,
    /// Chunks of a snapshot being received, to write to the temporary file.
    pub chunks: Vec<raft_core::IncomingChunk>,
    /// `snapshot` is the one received in chunks: its data is the file.
    pub streamed: bool,
}

impl Write {
    /// Splits a `Ready` into what waits for the disk (`messages` are sent by
    /// the caller at once).
    pub fn from_ready(rd: Ready) -> (Vec<Message>, Write) {
        let marker = rd.persisted_marker();
        let write = Write {
            hard_state: rd.hard_state,
            snapshot: rd.snapshot,
            restore: rd.restore_snapshot,
            truncate_from: rd.truncate_from,
            entries: rd.entries,
            after: rd.messages_after_persist,
            marker,
            committed: rd.committed_entries,
            reads: rd.reads,
            aborted: rd.aborted_reads,
            chunks: rd.snapshot_chunks,
            streamed: rd.snapshot_streamed,
        };
        (rd.messages, write)
    }

    /// True when the disk must be written.
    pub fn needs_disk(&self) -> bool {
        self.hard_state.is_some()
            || self.snapshot.is_some()
            || !self.chunks.is_empty()
            || self.truncate_from.is_some()
            || !self.entries.is_empty()
    }
}

/// A simulated node.
pub struct SimNode {
    /// The core; `None` while crashed.
    pub raft: Option<Raft>,
    /// Incarnation number: events scheduled for an earlier life are ignored.
    pub life: u32,
    /// What survives a crash.
    pub disk: Disk,
    /// Batches waiting for the disk, in order.
    pub queue: VecDeque<Write>,
    /// A flush is under way (a `DiskDone` is scheduled).
    pub flush_scheduled: bool,
    /// How many queued batches the flush under way covers.
    pub flushing: usize,
    /// The state machine (lost on crash, rebuilt from the snapshot).
    pub kv: Kv,
    /// This node's tick period (clock skew).
    pub tick_us: u64,
    /// The membership this node starts with when its disk is empty.
    pub bootstrap: Membership,
    /// Client proposals made at this node: index -> (term, op).
    pub proposals: BTreeMap<LogIndex, (Term, u64)>,
    /// Client reads started at this node: read id -> op.
    pub reads: BTreeMap<u64, u64>,
    /// Highest commit index seen in this life.
    pub commit_seen: LogIndex,
    /// Highest term seen in this life.
    pub term_seen: Term,
    /// Highest term of any message sent (over all lives).
    pub max_term_sent: Term,
    /// (term, last index) while leader, for the append-only check.
    pub leading: Option<(Term, LogIndex)>,
    /// Index of the last snapshot this node took or installed.
    pub snapshot_index: LogIndex,
    /// Leader terms whose completeness was already checked.
    pub checked_leader_term: Term,
    /// The snapshot being received in chunks (the temporary file), and its
    /// expected size: lost on a crash.
    pub receiving: Option<(raft_core::SnapshotMeta, u64, Vec<u8>)>,
}

impl SimNode {
    /// A node that has never run.
    pub fn new(tick_us: u64, bootstrap: Membership) -> SimNode {
        SimNode {
            raft: None,
            life: 0,
            disk: Disk::default(),
            queue: VecDeque::new(),
            flush_scheduled: false,
            flushing: 0,
            kv: Kv::default(),
            tick_us,
            bootstrap,
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            commit_seen: 0,
            term_seen: 0,
            max_term_sent: 0,
            leading: None,
            snapshot_index: 0,
            checked_leader_term: 0,
            receiving: None,
        }
    }

    /// True while running.
    pub fn is_up(&self) -> bool {
        self.raft.is_some()
    }
}
