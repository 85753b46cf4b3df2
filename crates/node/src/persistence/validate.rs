//! The rules every store applies to a change before writing any of it, in
//! one place: the in-memory and the file store check the same way.

use raft_core::{HardState, LogIndex, Term};

use super::{
    check_entries_follow, check_hard_state, Change, Identity, IdentityMismatch, InvalidChange,
    PersistenceError,
};

/// What the rules need to know of what a store holds.
pub(crate) trait StoredView {
    /// The stored identity, if any.
    fn identity(&self) -> Option<&Identity>;
    /// The last stored entry (or the snapshot's end point).
    fn last(&self) -> (LogIndex, Term);
    /// The snapshot's end point (index and term), or (0, 0).
    fn base(&self) -> (LogIndex, Term);
    /// The term of the stored entry at `index`.
    fn term_at(&self, index: LogIndex) -> Option<Term>;
    /// The stored hard state.
    fn hard_state(&self) -> &HardState;
}

/// Checks `change` against what `view` holds; says what is wrong.
pub(crate) fn validate(view: &impl StoredView, change: &Change) -> Result<(), PersistenceError> {
    // 1. Identity.
    match (view.identity(), &change.identity) {
        (Some(stored), Some(new)) if stored != new => {
            return Err(PersistenceError::identity(IdentityMismatch::Differs {
                stored: stored.into(),
                given: new.into(),
            }));
        }
        (None, None) if !change.is_empty() => {
            return Err(PersistenceError::Invalid(InvalidChange::MissingIdentity));
        }
        _ => {}
    }

    // 2. Snapshot. After it, the log follows on from (base, base_term)
    //    and holds entries up to `last`.
    let (stored_last, stored_last_term) = view.last();
    let (mut base, mut base_term) = view.base();
    let mut last = stored_last;
    // Entries above the new snapshot that contradict it and must be
    // truncated by this same change.
    let mut conflicting_above: Option<LogIndex> = None;
    if let Some(snapshot) = &change.snapshot {
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        if index == 0 {
            return Err(PersistenceError::Invalid(InvalidChange::EmptySnapshot));
        }
        if index < base {
            return Err(PersistenceError::Invalid(InvalidChange::SnapshotOlder {
                index,
                stored: base,
            }));
        }
        if (index == base && term != base_term) || term < base_term {
            return Err(PersistenceError::Invalid(InvalidChange::SnapshotTerm {
                index,
                term,
                stored_index: base,
                stored_term: base_term,
            }));
        }
        if stored_last > index && view.term_at(index) != Some(term) {
            conflicting_above = Some(index);
        }
        base = index;
        base_term = term;
        last = last.max(index);
    }

    // 3. Truncation.
    if let Some(from) = change.truncate_from {
        if from <= base {
            return Err(PersistenceError::Invalid(
                InvalidChange::TruncationIntoSnapshot {
                    from,
                    snapshot: base,
                },
            ));
        }
        last = last.min(from - 1);
    }
    if let Some(index) = conflicting_above {
        if last > index {
            return Err(PersistenceError::Invalid(
                InvalidChange::SnapshotConflicts {
                    index,
                    term: base_term,
                    stored_term: view.term_at(index),
                    stored_last,
                },
            ));
        }
    }

    // 4. Entries.
    let prev_index = last;
    let prev_term = if last == base {
        base_term
    } else if last == stored_last {
        stored_last_term
    } else {
        // `base < last < stored_last`: the stored log holds `last`.
        view.term_at(last).unwrap_or(base_term)
    };
    check_entries_follow(prev_index, prev_term, &change.entries)?;

    // 5. Hard state. Its commit index is within the log: a node commits
    //    only entries it holds (a store that finds it beyond the log on
    //    open knows entries are missing).
    if let Some(hs) = &change.hard_state {
        check_hard_state(view.hard_state(), hs)?;
        let last = change.entries.last().map_or(last, |e| e.index);
        if hs.commit > last {
            return Err(PersistenceError::Invalid(InvalidChange::CommitBeyondLog {
                commit: hs.commit,
                last,
            }));
        }
    }
    Ok(())
}
