//! What the store knows about its contents without reading the disk: the
//! identity, hard state and snapshot marker, and an index of the log (the
//! terms of the entries, as runs, and the segment each run was written in).
//! It validates changes by the rules of
//! [`MemoryPersistence`](crate::persistence::memory).

use raft_core::{HardState, LogIndex, Term};

use super::format::{Checkpoint, SnapRef};
use crate::persistence::{Change, Identity, PersistenceError};

/// Consecutive entries of one term, written in one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// The first index of the run (the run ends where the next begins).
    pub first: LogIndex,
    /// Their term (meaningless when not `known`).
    pub term: Term,
    /// The segment they were written in; 0 for entries written before the
    /// first segment replayed (known only by a checkpoint).
    pub segment: u64,
    /// False for entries known only by a checkpoint.
    pub known: bool,
}

/// The log's shape: entries `base.0 + 1 ..= last`, as runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Log {
    base: (LogIndex, Term),
    last: LogIndex,
    runs: Vec<Run>,
}

impl Log {
    /// The log a checkpoint describes: it follows on from `base` (the
    /// snapshot) and ends at `last`; the entries in between were written
    /// before the checkpoint's segment (only the last one's term is known).
    pub(crate) fn from_checkpoint(base: (LogIndex, Term), last: (LogIndex, Term)) -> Log {
        let mut log = Log {
            base,
            last: base.0,
            runs: Vec::new(),
        };
        if last.0 > base.0 {
            if last.0 > base.0 + 1 {
                log.runs.push(Run {
                    first: base.0 + 1,
                    term: 0,
                    segment: 0,
                    known: false,
                });
            }
            log.runs.push(Run {
                first: last.0,
                term: last.1,
                segment: 0,
                known: true,
            });
            log.last = last.0;
        }
        log
    }

    /// The snapshot's index and term (0, 0 without one).
    pub(crate) fn base(&self) -> (LogIndex, Term) {
        self.base
    }

    /// The last index (the base's when there is no entry after it).
    pub(crate) fn last_index(&self) -> LogIndex {
        self.last
    }

    /// The term at `index`, if known (the base included).
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base.0 {
            return Some(self.base.1);
        }
        if index < self.base.0 || index > self.last {
            return None;
        }
        let k = self.runs.partition_point(|r| r.first <= index);
        let run = self.runs.get(k.checked_sub(1)?)?;
        run.known.then_some(run.term)
    }

    /// The runs of entries after the base.
    pub(crate) fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// Appends the entry `index` of `term`, written in `segment`.
    pub(crate) fn append(
        &mut self,
        index: LogIndex,
        term: Term,
        segment: u64,
    ) -> Result<(), String> {
        if index != self.last + 1 {
            return Err(format!(
                "entry {index} does not follow on from the log, whose last index is {}",
                self.last
            ));
        }
        match self.runs.last() {
            Some(r) if r.known && r.term == term && r.segment == segment => {}
            _ => self.runs.push(Run {
                first: index,
                term,
                segment,
                known: true,
            }),
        }
        self.last = index;
        Ok(())
    }

    /// Drops the entries at and above `from` (nothing if beyond the end).
    pub(crate) fn truncate(&mut self, from: LogIndex) -> Result<(), String> {
        if from <= self.base.0 {
            return Err(format!(
                "truncation from {from} reaches into the snapshot at {}",
                self.base.0
            ));
        }
        if from <= self.last {
            self.last = from - 1;
            let keep = self.runs.partition_point(|r| r.first < from);
            self.runs.truncate(keep);
        }
        Ok(())
    }

    /// A snapshot at `index` of `term`: the entries at or below it go.
    pub(crate) fn compact(&mut self, index: LogIndex, term: Term) {
        self.base = (index, term);
        if index >= self.last {
            self.runs.clear();
            self.last = index;
            return;
        }
        let k = self.runs.partition_point(|r| r.first <= index);
        if k > 0 {
            self.runs.drain(..k - 1);
            self.runs[0].first = index + 1;
        }
    }
}

/// Everything the store holds, but the entries' contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Store {
    /// Who the node is.
    pub identity: Option<Identity>,
    /// The latest hard state.
    pub hard_state: HardState,
    /// The latest snapshot.
    pub snapshot: Option<SnapRef>,
    /// The log's shape.
    pub log: Log,
}

impl Store {
    /// The state a checkpoint describes.
    pub(crate) fn from_checkpoint(c: &Checkpoint) -> Store {
        let base = c
            .snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.meta.index, s.meta.term));
        Store {
            identity: c.identity.clone(),
            hard_state: c.hard_state,
            snapshot: c.snapshot.clone(),
            log: Log::from_checkpoint(base, c.last),
        }
    }

    /// A checkpoint of this state.
    pub(crate) fn checkpoint(&self, first_kept: u64) -> Checkpoint {
        let last = self.log.last_index();
        Checkpoint {
            first_kept,
            identity: self.identity.clone(),
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            last: (last, self.log.term_at(last).unwrap_or(0)),
        }
    }

    fn last(&self) -> (LogIndex, Term) {
        let last = self.log.last_index();
        (last, self.log.term_at(last).unwrap_or(self.log.base().1))
    }

    /// Checks `change` against this state without changing anything, by
    /// the rules of the memory store.
    pub(crate) fn validate(&self, change: &Change) -> Result<(), PersistenceError> {
        crate::persistence::validate::validate(self, change)
    }

    /// Applies a validated change whose records went to `segment`; `snap`
    /// is the marker written for its snapshot.
    pub(crate) fn apply(&mut self, change: &Change, snap: Option<SnapRef>, segment: u64) {
        if self.identity.is_none() {
            self.identity.clone_from(&change.identity);
        }
        if let Some(snap) = snap {
            self.log.compact(snap.meta.index, snap.meta.term);
            self.snapshot = Some(snap);
        }
        if let Some(from) = change.truncate_from {
            // Validated: `from` is above the snapshot.
            let _ = self.log.truncate(from);
        }
        for e in &change.entries {
            // Validated: the entries follow on.
            let _ = self.log.append(e.index, e.term, segment);
        }
        if let Some(hs) = change.hard_state {
            self.hard_state = hs;
        }
    }
}

impl crate::persistence::validate::StoredView for Store {
    fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    fn last(&self) -> (LogIndex, Term) {
        Store::last(self)
    }

    fn base(&self) -> (LogIndex, Term) {
        self.log.base()
    }

    fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    fn hard_state(&self) -> &HardState {
        &self.hard_state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_runs() {
        let mut log = Log::default();
        for i in 1..=10 {
            log.append(i, if i <= 5 { 1 } else { 2 }, 1).unwrap();
        }
        log.append(11, 2, 2).unwrap();
        assert_eq!(log.runs().len(), 3);
        assert_eq!(log.term_at(5), Some(1));
        assert_eq!(log.term_at(6), Some(2));
        assert_eq!(log.term_at(12), None);
        assert!(log.append(13, 2, 2).is_err());
        log.truncate(6).unwrap();
        assert_eq!(log.last_index(), 5);
        assert_eq!(log.runs().len(), 1);
        log.compact(3, 1);
        assert_eq!(log.term_at(3), Some(1));
        assert_eq!(log.term_at(2), None);
        assert_eq!(log.runs()[0].first, 4);
        assert!(log.truncate(3).is_err());
        log.compact(9, 4);
        assert_eq!(log.last_index(), 9);
        assert!(log.runs().is_empty());
        let cp = Log::from_checkpoint((4, 1), (9, 3));
        assert_eq!(cp.term_at(9), Some(3));
        assert_eq!(cp.term_at(6), None);
        assert_eq!(cp.term_at(4), Some(1));
    }
}
