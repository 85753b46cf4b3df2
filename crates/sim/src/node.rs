//! One simulated node: the core, its disk (what survives a crash), the write
//! queue in front of the disk (what a crash loses), and its state machine.

use std::collections::BTreeMap;

use raft_core::pipeline::{Pipeline, Save, SaveJob};
use raft_core::{Entry, HardState, LogIndex, Membership, Raft, Snapshot, Term};

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
    /// Writes a save in the order `Ready` requires; its entries move to the
    /// disk (`w.entries` is left empty). Returns a description of an
    /// inconsistency the core handed out.
    pub fn write(&mut self, w: &mut Save) -> Result<(), String> {
        if let Some(s) = &w.snapshot {
            self.entries.retain(|e| e.index > s.meta.index);
            self.snapshot = Some(s.clone());
        }
        if let Some(t) = w.truncate_from {
            self.entries.retain(|e| e.index < t);
        }
        let next = match self.entries.last() {
            Some(last) => last.index + 1,
            None => self.snapshot.as_ref().map_or(1, |s| s.meta.index + 1),
        };
        for (e, expected) in w.entries.iter().zip(next..) {
            if e.index != expected {
                return Err(format!(
                    "storage asked to append entry {} where {} comes next",
                    e.index, expected
                ));
            }
        }
        self.entries.append(&mut w.entries);
        if let Some(hs) = w.hard_state {
            self.hard = hs;
        }
        Ok(())
    }
}

/// Ticks after which a held commit index is written alone (as the
/// runtime).
pub const FLUSH_AFTER_TICKS: u64 = 5;

/// A simulated node.
pub struct SimNode {
    /// The core; `None` while crashed.
    pub raft: Option<Raft>,
    /// Incarnation number: events scheduled for an earlier life are ignored.
    pub life: u32,
    /// What survives a crash.
    pub disk: Disk,
    /// The core's output on its way through the disk (what a crash loses),
    /// as the runtime's pipeline handles it.
    pub pipeline: Pipeline,
    /// The write under way (a `DiskDone` is scheduled).
    pub flushing: Option<SaveJob>,
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
    /// The term this node was last recorded leader of (once durable).
    pub leader_recorded: Term,
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
            pipeline: Pipeline::new(FLUSH_AFTER_TICKS, Default::default()),
            flushing: None,
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
            leader_recorded: 0,
            receiving: None,
        }
    }

    /// True while running.
    pub fn is_up(&self) -> bool {
        self.raft.is_some()
    }
}
