//! The rules every store applies to a change before writing any of it, in
//! one place: the in-memory and the file store check the same way.

use raft_core::{HardState, LogIndex, Term};

use super::{check_entries_follow, check_hard_state, Change, Identity, PersistenceError};

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
            return Err(PersistenceError::Identity(format!(
                "the store belongs to node {:?} of cluster {:?}, not to node {:?} of cluster {:?} (or its bootstrap membership differs)",
                stored.id, stored.cluster, new.id, new.cluster
            )));
        }
        (None, None) if !change.is_empty() => {
            return Err(PersistenceError::Invalid(
                "the first save to a store must carry the node's identity".into(),
            ));
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
            return Err(PersistenceError::Invalid(
                "a snapshot at index 0 covers nothing".into(),
            ));
        }
        if index < base {
            return Err(PersistenceError::Invalid(format!(
                "snapshot at index {index} is older than the stored snapshot at index {base}"
            )));
        }
        if index == base && term != base_term {
            return Err(PersistenceError::Invalid(format!(
                "snapshot at index {index} has term {term}, but the stored snapshot at that index has term {base_term}"
            )));
        }
        if term < base_term {
            return Err(PersistenceError::Invalid(format!(
                "snapshot at index {index} has term {term}, below the stored snapshot's term {base_term}"
            )));
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
            return Err(PersistenceError::Invalid(format!(
                "truncation from index {from} reaches into the snapshot, which covers up to index {base}"
            )));
        }
        last = last.min(from - 1);
    }
    if let Some(index) = conflicting_above {
        if last > index {
            let (snap_term, stored_term) = (base_term, view.term_at(index));
            return Err(PersistenceError::Invalid(format!(
                "snapshot at index {index} (term {snap_term}) does not match the stored entry at that index (term {stored_term:?}), \
                 yet the stored entries after it (up to {stored_last}) are kept: the change must truncate from index {}",
                index + 1
            )));
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
            return Err(PersistenceError::Invalid(format!(
                "hard state commit index {} is beyond the log's last index {last} (after this change): a node commits only entries it holds",
                hs.commit
            )));
        }
    }
    Ok(())
}
