//! Why a store refused a change or an identity, as kinds a caller matches
//! on ([`PersistenceError::Invalid`](super::PersistenceError::Invalid),
//! [`PersistenceError::Identity`](super::PersistenceError::Identity)); the
//! text is for people.

use std::fmt;
use std::path::PathBuf;

use raft_core::{LogIndex, NodeId, Term};

/// Why a change does not fit what a store holds
/// ([`PersistenceError::Invalid`](super::PersistenceError::Invalid)): each
/// kind says what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidChange {
    /// The first save to an empty store carries no identity.
    #[error("the first save to a store must carry the node's identity")]
    MissingIdentity,
    /// A snapshot at index 0 covers nothing.
    #[error("a snapshot at index 0 covers nothing")]
    EmptySnapshot,
    /// The snapshot is older than the stored one.
    #[error("snapshot at index {index} is older than the stored snapshot at index {stored}")]
    SnapshotOlder {
        /// The new snapshot's index.
        index: LogIndex,
        /// The stored snapshot's index.
        stored: LogIndex,
    },
    /// The snapshot's term is below the stored snapshot's, or differs from
    /// it at the same index.
    #[error("snapshot at index {index} has term {term}, but the stored snapshot at index {stored_index} has term {stored_term}")]
    SnapshotTerm {
        /// The new snapshot's index.
        index: LogIndex,
        /// The new snapshot's term.
        term: Term,
        /// The stored snapshot's index.
        stored_index: LogIndex,
        /// The stored snapshot's term.
        stored_term: Term,
    },
    /// The snapshot contradicts the stored entry at its index, and the
    /// change keeps stored entries after it: it must truncate them.
    #[error("snapshot at index {index} (term {term}) does not match the stored entry at that index (term {stored_term:?}), yet the stored entries after it (up to {stored_last}) are kept: the change must truncate from index {}", index + 1)]
    SnapshotConflicts {
        /// The snapshot's index.
        index: LogIndex,
        /// The snapshot's term.
        term: Term,
        /// The stored entry's term at that index, if the store holds one.
        stored_term: Option<Term>,
        /// The last stored entry.
        stored_last: LogIndex,
    },
    /// A truncation reaches into the snapshot.
    #[error("truncation from index {from} reaches into the snapshot, which covers up to index {snapshot}")]
    TruncationIntoSnapshot {
        /// The first index truncated.
        from: LogIndex,
        /// The last index the snapshot covers.
        snapshot: LogIndex,
    },
    /// An entry does not follow on from the log (it overlaps it, or leaves
    /// a gap).
    #[error("entry {index} {} the log, whose last entry is {last} (entries must follow on one index at a time)", if *.index <= *.last { "overlaps" } else { "leaves a gap after" })]
    EntryNotNext {
        /// The entry's index.
        index: LogIndex,
        /// The log's last index before it (the one it must follow).
        last: LogIndex,
    },
    /// An entry's term is below the term of the entry before it.
    #[error("entry {index} has term {term}, below the term {previous} of the entry before it")]
    EntryTermBelow {
        /// The entry's index.
        index: LogIndex,
        /// Its term.
        term: Term,
        /// The term of the entry before it.
        previous: Term,
    },
    /// The hard state's term is below the stored term.
    #[error("hard state term {term} is below the stored term {stored}")]
    TermBelow {
        /// The new term.
        term: Term,
        /// The stored term.
        stored: Term,
    },
    /// The hard state changes the vote of a term.
    #[error("hard state changes the vote of term {term} from node number {stored} to {vote}")]
    VoteChanged {
        /// The term.
        term: Term,
        /// The new vote (a node number).
        vote: NodeId,
        /// The stored vote (a node number).
        stored: NodeId,
    },
    /// The hard state's commit index is below the stored one.
    #[error("hard state commit index {commit} is below the stored commit index {stored}")]
    CommitBelow {
        /// The new commit index.
        commit: LogIndex,
        /// The stored commit index.
        stored: LogIndex,
    },
    /// The hard state's commit index is beyond the log (after the change):
    /// a node commits only entries it holds.
    #[error("hard state commit index {commit} is beyond the log's last index {last} (after this change): a node commits only entries it holds")]
    CommitBeyondLog {
        /// The new commit index.
        commit: LogIndex,
        /// The log's last index after the change.
        last: LogIndex,
    },
    /// A snapshot chunk does not follow on from the chunks received (or
    /// none is being received).
    #[error("snapshot chunk at offset {offset} of snapshot {index} does not follow the {received} bytes received{}", match .receiving { Some(r) => format!(" of snapshot {r}"), None => " (no snapshot is being received)".to_string() })]
    ChunkNotNext {
        /// The chunk's snapshot.
        index: LogIndex,
        /// The chunk's offset.
        offset: u64,
        /// The snapshot being received, if any.
        receiving: Option<LogIndex>,
        /// The bytes received of it.
        received: u64,
    },
    /// A snapshot was installed that was not received whole.
    #[error("snapshot {index} installed with {received} of {total} bytes received{}", match .receiving { Some(r) => format!(" (of snapshot {r})"), None => " (none was being received)".to_string() })]
    SnapshotIncomplete {
        /// The snapshot installed.
        index: LogIndex,
        /// The snapshot being received, if any.
        receiving: Option<LogIndex>,
        /// The bytes received.
        received: u64,
        /// The bytes announced.
        total: u64,
    },
    /// A read of a stored snapshot's data reaches past its end.
    #[error("snapshot file {}: reading {bytes} bytes at offset {offset} of data holding {data_bytes}", .file.display())]
    ReadPastEnd {
        /// The snapshot's file.
        file: PathBuf,
        /// Where the read starts, in the data.
        offset: u64,
        /// How much it reads.
        bytes: u64,
        /// How much data the snapshot holds.
        data_bytes: u64,
    },
}

/// A node and its cluster, by the ids they were given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The node's id.
    pub id: String,
    /// The cluster's id.
    pub cluster: String,
}

impl Owner {
    /// The node `id` of cluster `cluster`.
    pub fn new(id: impl Into<String>, cluster: impl Into<String>) -> Owner {
        Owner {
            id: id.into(),
            cluster: cluster.into(),
        }
    }
}

impl From<&super::Identity> for Owner {
    fn from(i: &super::Identity) -> Owner {
        Owner::new(i.id.clone(), i.cluster.clone())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {:?} of cluster {:?}", self.id, self.cluster)
    }
}

/// Where a store read an identity: a file, and the offset of the record in
/// it when one record says it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Place {
    /// The file (or the store's directory).
    pub path: PathBuf,
    /// The record's offset in the file.
    pub offset: Option<u64>,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        Ok(())
    }
}

/// Why a store refused an identity
/// ([`PersistenceError::Identity`](super::PersistenceError::Identity)): the
/// store belongs to another node or cluster, or its own records disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityMismatch {
    /// A change carries an identity other than the stored one.
    #[error("the store belongs to {stored}, not to {given}{}", if .stored == .given { " (its bootstrap membership differs)" } else { "" })]
    Differs {
        /// Whose the store is.
        stored: Owner,
        /// Whose the change is.
        given: Owner,
    },
    /// The store was opened for a node of another id.
    #[error("{place}: the store belongs to {stored}, not to node {expected:?}")]
    OtherNode {
        /// Where the stored identity was read.
        place: Place,
        /// Whose the store is.
        stored: Owner,
        /// The node id it was opened for.
        expected: String,
    },
    /// The store was opened for another cluster.
    #[error("{place}: the store belongs to {stored}, not to cluster {expected:?}")]
    OtherCluster {
        /// Where the stored identity was read.
        place: Place,
        /// Whose the store is.
        stored: Owner,
        /// The cluster id it was opened for.
        expected: String,
    },
    /// A record of the store names another owner than the records before
    /// it (damage, or files of two stores mixed).
    #[error("{place}: {} names {}, the records before it {}", .record_kind, owner(.record), owner(.before))]
    RecordsDisagree {
        /// Where the record is.
        place: Place,
        /// What record (`"a checkpoint"`, `"an identity record"`).
        record_kind: &'static str,
        /// Whose the record says the store is, if it says.
        record: Option<Owner>,
        /// Whose the records before it say it is, if they say.
        before: Option<Owner>,
    },
}

fn owner(o: &Option<Owner>) -> String {
    match o {
        Some(o) => o.to_string(),
        None => "no node".to_string(),
    }
}
