//! What a node restarts from, and why a stored state can be refused.

use crate::config::ConfigError;
use crate::membership::Membership;
use crate::types::{Entry, HardState, LogIndex, Snapshot, Term, MAX_TERM};

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
    /// A stored term (the hard state's, the snapshot's or an entry's) is
    /// above [`MAX_TERM`]: a forged or corrupt message raised it before
    /// messages with such terms were refused. A node in that term could never
    /// campaign again, and lowering a term could let it vote twice in one,
    /// so it does not start.
    #[error("stored {what} {term} is above the highest plausible term {max} (MAX_TERM): it came from a forged or corrupt message, and no election can follow it; rebuild this node's storage from its peers")]
    ImplausibleTerm {
        /// Where the term was found.
        what: StoredTerm,
        /// The stored term.
        term: Term,
        /// The bound, [`MAX_TERM`].
        max: Term,
    },
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

/// Where a stored term was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredTerm {
    /// The hard state's term.
    HardState,
    /// The snapshot's term.
    Snapshot,
    /// The term of the stored entry at this index.
    Entry(LogIndex),
}

impl std::fmt::Display for StoredTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredTerm::HardState => f.write_str("term"),
            StoredTerm::Snapshot => f.write_str("snapshot term"),
            StoredTerm::Entry(index) => write!(f, "term of entry {index}"),
        }
    }
}

impl Restored {
    /// Refuses a stored term above [`MAX_TERM`], naming where it is.
    pub(crate) fn check_terms(&self) -> Result<(), RestoreError> {
        let refuse = |what, term| {
            Err(RestoreError::ImplausibleTerm {
                what,
                term,
                max: MAX_TERM,
            })
        };
        if self.hard_state.term > MAX_TERM {
            return refuse(StoredTerm::HardState, self.hard_state.term);
        }
        if let Some(s) = self.snapshot.as_ref().filter(|s| s.meta.term > MAX_TERM) {
            return refuse(StoredTerm::Snapshot, s.meta.term);
        }
        if let Some(e) = self.entries.iter().find(|e| e.term > MAX_TERM) {
            return refuse(StoredTerm::Entry(e.index), e.term);
        }
        Ok(())
    }
}
