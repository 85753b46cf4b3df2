//! The replicated log as one node holds it: the entries since the last
//! compaction, and the four positions that move along it.

use std::collections::VecDeque;

use crate::types::{Entry, LogIndex, Term};

/// The in-memory log.
///
/// Invariants (checked by `debug_check`):
/// - `entries[k].index == offset + 1 + k`: the entries are contiguous and
///   follow the compaction point `offset`, whose term is `offset_term`;
/// - terms never decrease along the log;
/// - `offset <= applied <= commit`, and `commit <= last_index()` except
///   transiently inside an operation;
/// - `persisted <= last_index()` and `persisted < unstable_from`: what the
///   caller confirmed durable is a prefix of what it was handed;
/// - `unstable_from <= last_index() + 1`: entries from `unstable_from` on
///   have not yet been handed out for persisting.
#[derive(Debug, Clone)]
pub struct RaftLog {
    /// The index of the last entry dropped by compaction (or of the snapshot
    /// the log starts after).
    offset: LogIndex,
    /// The term of the entry at `offset`.
    offset_term: Term,
    /// Entries `offset + 1 ..= last_index()`.
    entries: VecDeque<Entry>,
    /// The highest index known committed.
    pub(crate) commit: LogIndex,
    /// The highest index handed out for applying.
    pub(crate) applied: LogIndex,
    /// The highest index the caller confirmed durable.
    pub(crate) persisted: LogIndex,
    /// The first index not yet handed out for persisting.
    pub(crate) unstable_from: LogIndex,
    /// The lowest index the storage must truncate from before appending the
    /// unstable entries, if a truncation reached into what it holds.
    pub(crate) pending_truncate: Option<LogIndex>,
}

impl RaftLog {
    /// A log that starts after `offset` (term `offset_term`), with `entries`
    /// already durable.
    pub fn restore(offset: LogIndex, offset_term: Term, entries: Vec<Entry>) -> RaftLog {
        let entries: VecDeque<Entry> = entries.into();
        let last = offset + entries.len() as u64;
        let log = RaftLog {
            offset,
            offset_term,
            entries,
            commit: offset,
            applied: offset,
            persisted: last,
            unstable_from: last + 1,
            pending_truncate: None,
        };
        log.debug_check();
        log
    }

    /// The first index still held in memory.
    pub fn first_index(&self) -> LogIndex {
        self.offset + 1
    }

    /// The index of the last entry (or the offset when there is none).
    pub fn last_index(&self) -> LogIndex {
        self.offset + self.entries.len() as u64
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.offset_term, |e| e.term)
    }

    /// The compaction point and its term.
    pub fn offset(&self) -> (LogIndex, Term) {
        (self.offset, self.offset_term)
    }

    /// The term of the entry at `index`, if this log knows it (it does not
    /// for compacted entries below the offset, nor beyond the end).
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.offset {
            Some(self.offset_term)
        } else {
            self.get(index).map(|e| e.term)
        }
    }

    /// The entry at `index`, if held.
    pub fn get(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index - self.offset - 1) as usize)
    }

    /// True if a candidate whose log ends at (`last_index`, `last_term`) is
    /// at least as up to date as this log (Raft paper section 5.4.1).
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Appends an entry created by this node as leader.
    pub fn append(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        debug_assert!(entry.term >= self.last_term());
        self.entries.push_back(entry);
    }

    /// Removes every entry at `index` and above, and records what the storage
    /// must truncate. Committed entries are never removed.
    pub fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.commit,
            "truncating committed entry {index} (commit {})",
            self.commit
        );
        if index > self.last_index() {
            return;
        }
        self.entries.truncate((index - self.offset - 1) as usize);
        self.persisted = self.persisted.min(index - 1);
        if index < self.unstable_from {
            self.unstable_from = index;
            self.pending_truncate = Some(self.pending_truncate.map_or(index, |t| t.min(index)));
        }
    }

    /// The first of `entries` that this log does not already hold (a
    /// different term at its index, or beyond the end), as a position in
    /// `entries`. Entries at or below the offset are committed here and
    /// count as held.
    pub fn find_conflict(&self, entries: &[Entry]) -> Option<usize> {
        entries
            .iter()
            .position(|e| e.index > self.offset && self.term(e.index) != Some(e.term))
    }

    /// Clones the entries `from ..= to`, stopping early once `max_bytes`
    /// are reached (but always returning at least one entry when any are in
    /// range).
    pub fn slice(&self, from: LogIndex, to: LogIndex, max_bytes: usize) -> Vec<Entry> {
        debug_assert!(from > self.offset);
        let to = to.min(self.last_index());
        // Room for the whole range (bounded: `max_bytes` may stop it early).
        let mut out =
            Vec::with_capacity(to.saturating_sub(from).saturating_add(1).min(1024) as usize);
        let mut bytes = 0;
        let mut index = from;
        while index <= to {
            let entry = &self.entries[(index - self.offset - 1) as usize];
            bytes += entry.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(entry.clone());
            index += 1;
        }
        out
    }

    /// The entries from `unstable_from` on, to hand out for persisting.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.unstable_from > last {
            return Vec::new();
        }
        let start = (self.unstable_from - self.offset - 1) as usize;
        let out: Vec<Entry> = self.entries.range(start..).cloned().collect();
        self.unstable_from = last + 1;
        out
    }

    /// True if entries wait to be handed out for persisting.
    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index() || self.pending_truncate.is_some()
    }

    /// The caller made entries durable up to (`index`, `term`). Ignored when
    /// the log no longer holds that entry (it was truncated meanwhile).
    /// Returns true when `persisted` advanced.
    pub fn persisted_to(&mut self, index: LogIndex, term: Term) -> bool {
        if index <= self.persisted || index >= self.unstable_from {
            return false;
        }
        if self.term(index) != Some(term) {
            return false;
        }
        self.persisted = index;
        true
    }

    /// Drops entries up to `index` (which must be applied); `index` becomes
    /// the new offset.
    pub fn compact_to(&mut self, index: LogIndex) {
        if index <= self.offset {
            return;
        }
        assert!(index <= self.applied, "compacting unapplied entry {index}");
        let term = self.term(index).expect("entries up to applied are held");
        let drop = (index - self.offset) as usize;
        self.entries.drain(..drop);
        self.offset = index;
        self.offset_term = term;
        self.debug_check();
    }

    /// Replaces the log by a snapshot's end point: every entry is dropped.
    /// The storage drops what it holds at or below the snapshot when it
    /// stores the snapshot, and everything above through `pending_truncate`.
    pub fn reset_to(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.offset = index;
        self.offset_term = term;
        self.commit = index;
        self.applied = index;
        self.persisted = index;
        self.unstable_from = index + 1;
        self.pending_truncate = Some(index + 1);
        self.debug_check();
    }

    /// Checks the invariants (debug builds only).
    pub fn debug_check(&self) {
        if cfg!(debug_assertions) {
            if let Some(first) = self.entries.front() {
                assert_eq!(
                    first.index,
                    self.offset + 1,
                    "log does not follow its offset"
                );
            }
            assert!(self.offset <= self.applied, "applied below offset");
            assert!(self.applied <= self.commit, "applied beyond commit");
            assert!(self.persisted <= self.last_index().max(self.offset));
            assert!(self.unstable_from <= self.last_index() + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;

    fn entry(index: LogIndex, term: Term) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Blank,
        }
    }

    fn log_with(terms: &[Term]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| entry(i as u64 + 1, t))
            .collect();
        RaftLog::restore(0, 0, entries)
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let log = log_with(&[1, 1, 2]);
        assert!(log.is_up_to_date(3, 2));
        assert!(log.is_up_to_date(1, 3));
        assert!(!log.is_up_to_date(9, 1));
        assert!(!log.is_up_to_date(2, 2));
    }

    #[test]
    fn find_conflict_finds_first_mismatch_or_new_entry() {
        let log = log_with(&[1, 1, 2]);
        assert_eq!(log.find_conflict(&[entry(2, 1), entry(3, 2)]), None);
        assert_eq!(log.find_conflict(&[entry(2, 1), entry(3, 3)]), Some(1));
        assert_eq!(log.find_conflict(&[entry(3, 2), entry(4, 2)]), Some(1));
    }

    #[test]
    fn truncation_is_recorded_for_storage_only_when_storage_holds_it() {
        let mut log = log_with(&[1, 1, 2]);
        log.append(entry(4, 2));
        log.truncate_from(4); // never handed out: storage never saw it
        assert_eq!(log.pending_truncate, None);
        log.truncate_from(3);
        assert_eq!(log.pending_truncate, Some(3));
        assert_eq!(log.persisted, 2);
        log.append(entry(3, 3));
        assert_eq!(log.take_unstable(), vec![entry(3, 3)]);
    }

    #[test]
    fn persisted_ignores_truncated_entries() {
        let mut log = log_with(&[1]);
        log.append(entry(2, 1));
        assert_eq!(log.take_unstable().len(), 1);
        log.truncate_from(2);
        log.append(entry(2, 2));
        assert!(!log.persisted_to(2, 1));
        log.take_unstable();
        assert!(log.persisted_to(2, 2));
    }

    #[test]
    fn compaction_keeps_term_of_offset() {
        let mut log = log_with(&[1, 2, 3]);
        log.commit = 2;
        log.applied = 2;
        log.compact_to(2);
        assert_eq!(log.term(2), Some(2));
        assert_eq!(log.term(1), None);
        assert_eq!(log.first_index(), 3);
        assert_eq!(log.slice(3, 3, 0), vec![entry(3, 3)]);
    }
}
