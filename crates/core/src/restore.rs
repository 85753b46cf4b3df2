//! What a node restarts from, and why a stored state can be refused.

use crate::config::ConfigError;
use crate::membership::Membership;
use crate::types::{Entry, HardState, LogIndex, Snapshot, Term};

/// What a node restarts from: everything its storage made durable.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The last durable term, vote and commit index.
    pub hard_state: HardState,
    /// The latest snapshot. With no snapshot yet, index and term 0 and the
    /// bootstrap membership (empty for a node that waits to be added).
    pub snapshot: Option<Snapshot>,
    /// The bootstrap membership when there is no snapshot: the same on every
    /// node started together, or empty for a node that will be added by a
    /// leader.
    pub bootstrap: Membership,
    /// The durable log entries after the snapshot.
    pub entries: Vec<Entry>,
}

/// Why the durable state cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The stored entries have a gap or overlap.
    #[error("stored log entry {found} follows {expected_after}: the log has a gap")]
    Gap {
        /// The index the entry should have followed.
        expected_after: LogIndex,
        /// The index found.
        found: LogIndex,
    },
    /// Terms go backwards along the stored log.
    #[error("stored log entry {index} has term {term}, below the term before it")]
    TermOrder {
        /// The entry's index.
        index: LogIndex,
        /// Its term.
        term: Term,
    },
    /// The stored term is below a stored entry's term.
    #[error("stored term {hard} is below the term {entry} of stored entry {index}")]
    HardTermBehind {
        /// The hard state's term.
        hard: Term,
        /// The entry's term.
        entry: Term,
        /// The entry's index.
        index: LogIndex,
    },
    /// The stored commit index is beyond the stored log: entries were lost.
    #[error("stored commit index {commit} is beyond the last stored entry {last}: committed entries are missing")]
    CommitBeyondLog {
        /// The stored commit index.
        commit: LogIndex,
        /// The last stored index.
        last: LogIndex,
    },
}
