//! The Persistence API (the seed's): `save(change)` and `load()`.
//!
//! `save` receives what changed since the previous save, so that its cost
//! grows with the change, not with the log. It must not return before the
//! change is durable: the node sends no message that depends on a change
//! before `save` of that change has returned. `load` returns everything a
//! node needs to restart.

mod error;
pub mod file;
pub mod memory;
mod refusal;
mod validate;

pub use error::{Corruption, IoFailure, PersistenceError};
pub use refusal::{IdentityMismatch, InvalidChange, Owner, Place};

use async_trait::async_trait;
use raft_core::{Entry, HardState, LogIndex, Membership, Snapshot};

/// Who a node is: written once, when the node is created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Identity {
    /// The node's id.
    pub id: String,
    /// The cluster's id.
    pub cluster: String,
    /// The membership the node started with (empty for a node that waits to
    /// be added by a leader).
    pub bootstrap: Membership,
}

/// What changed since the previous save. Apply it in this order: identity,
/// snapshot (log entries at or below its index may then be dropped),
/// truncation (drop entries at and above `truncate_from`), entries
/// (append), hard state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Change {
    /// The node's identity (in the first save only).
    pub identity: Option<Identity>,
    /// A new snapshot: the latest one is what `load` returns.
    pub snapshot: Option<Snapshot>,
    /// Drop stored entries at and above this index.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append after the stored ones (their indexes follow on).
    pub entries: Vec<Entry>,
    /// Term, vote and commit index, if they changed.
    pub hard_state: Option<HardState>,
}

impl Change {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.identity.is_none()
            && self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
    }
}

/// Everything needed to restart a node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct State {
    /// Who the node is.
    pub identity: Identity,
    /// The latest term, vote and commit index.
    pub hard_state: HardState,
    /// The latest snapshot.
    pub snapshot: Option<Snapshot>,
    /// The stored log entries after the snapshot (some at or below it may be
    /// included; they are ignored).
    pub entries: Vec<Entry>,
}

/// Where a node keeps its durable state.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), raft_node::PersistenceError> {
/// use raft_core::{Entry, EntryPayload, HardState, Membership};
/// use raft_node::persistence::{Change, Identity, Persistence};
/// use raft_node::MemoryPersistence;
///
/// let store = MemoryPersistence::new();
/// assert!(store.load().await?.is_none()); // never written
/// let identity = Identity {
///     id: "n1".into(),
///     cluster: "c".into(),
///     bootstrap: Membership::with_voters([1]),
/// };
/// store
///     .save(Change {
///         identity: Some(identity),
///         entries: vec![Entry { term: 1, index: 1, payload: EntryPayload::Command("x".into()) }],
///         hard_state: Some(HardState { term: 1, vote: 1, commit: 1 }),
///         ..Change::default()
///     })
///     .await?;
/// let state = store.load().await?.expect("saved");
/// assert_eq!(state.entries.len(), 1);
/// assert_eq!(state.hard_state.commit, 1);
/// # Ok(()) }
/// ```
///
/// [`FilePersistence`](crate::FilePersistence) keeps it on a disk; the
/// [guide](crate::guide) says how to write and check a store of your own.
#[async_trait]
pub trait Persistence: Send + Sync + 'static {
    /// Makes `change` durable; returns only once it is.
    async fn save(&self, change: Change) -> Result<(), PersistenceError>;

    /// Loads what was saved, or `None` for a store that was never written.
    async fn load(&self) -> Result<Option<State>, PersistenceError>;

    /// Saves `change` at once if this store can without waiting (an
    /// in-memory store): `Ok(result)` when done; `Err(change)` hands it
    /// back, to go through [`Persistence::save`]. The node uses it to skip a
    /// task hop per batch. The default always hands it back.
    fn try_save_now(&self, change: Change) -> Result<Result<(), PersistenceError>, Box<Change>> {
        Err(Box::new(change))
    }

    /// The latest saved snapshot's data read from where it is stored, if the
    /// store can hand it out without loading it into memory (a file mapped
    /// into the page cache): the node then sends snapshots to followers from
    /// it instead of from memory. The default has none.
    async fn mapped_snapshot(&self) -> Option<(raft_core::LogIndex, bytes::Bytes)> {
        None
    }

    /// Where the node writes the snapshots it receives from the leader while
    /// they arrive, unless its options name a place
    /// ([`Options::snapshot_spool`](crate::Options::snapshot_spool)): a
    /// directory that belongs to this store alone (a store on disk keeps
    /// them beside its files, on the same disk). The default has none: the
    /// node then uses a directory of its own in the system's temporary
    /// directory, removed when it stops.
    fn snapshot_spool(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// Checks that `entries` follow on from a log ending at (`prev_index`,
/// `prev_term`): one index at a time, terms never going back. The rule every
/// store enforces.
pub(crate) fn check_entries_follow(
    mut prev_index: raft_core::LogIndex,
    mut prev_term: raft_core::Term,
    entries: &[Entry],
) -> Result<(), PersistenceError> {
    for entry in entries {
        if entry.index != prev_index + 1 {
            return Err(PersistenceError::Invalid(InvalidChange::EntryNotNext {
                index: entry.index,
                last: prev_index,
            }));
        }
        if entry.term < prev_term {
            return Err(PersistenceError::Invalid(InvalidChange::EntryTermBelow {
                index: entry.index,
                term: entry.term,
                previous: prev_term,
            }));
        }
        prev_index = entry.index;
        prev_term = entry.term;
    }
    Ok(())
}

/// Checks that the hard state `next` may follow `stored`: the term never
/// goes back, the vote of a term never changes, the commit index never goes
/// back.
pub(crate) fn check_hard_state(
    stored: &HardState,
    next: &HardState,
) -> Result<(), PersistenceError> {
    if next.term < stored.term {
        return Err(PersistenceError::Invalid(InvalidChange::TermBelow {
            term: next.term,
            stored: stored.term,
        }));
    }
    if next.term == stored.term && stored.vote != raft_core::NO_NODE && next.vote != stored.vote {
        return Err(PersistenceError::Invalid(InvalidChange::VoteChanged {
            term: next.term,
            vote: next.vote,
            stored: stored.vote,
        }));
    }
    if next.commit < stored.commit {
        return Err(PersistenceError::Invalid(InvalidChange::CommitBelow {
            commit: next.commit,
            stored: stored.commit,
        }));
    }
    Ok(())
}
