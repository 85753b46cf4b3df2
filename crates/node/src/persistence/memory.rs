//! The in-memory persistence: for tests and simulations.
//!
//! A [`MemoryPersistence`] is a handle on a shared store: clones see the same
//! state. A test keeps one clone, drops the node (a crash) and starts a new
//! node from another clone (a restart): what `save` returned `Ok` for
//! survives, nothing else exists.
//!
//! Each [`Change`] is validated in full before any of it is applied, so a
//! refused change (an error) leaves the store exactly as it was. The rules,
//! checked in the order the change is applied:
//!
//! 1. identity: the first non-empty change must carry one; a later change may
//!    repeat the same identity, but a different one is refused with
//!    [`PersistenceError::Identity`];
//! 2. snapshot: not at index 0, not older (lower index) than the stored one,
//!    not of a lower term than the stored one, and not a different term at
//!    the same index. If the stored log holds entries after the snapshot but
//!    its entry at the snapshot's index has another term (or is missing),
//!    those entries belong to another history and the same change must
//!    truncate them;
//! 3. truncation: `truncate_from` must be above the snapshot's index (after
//!    this change's snapshot); a truncation beyond the end of the log drops
//!    nothing;
//! 4. entries: they follow on from the stored log, one index at a time (from
//!    the snapshot's index + 1 when the log is empty), and their terms never
//!    decrease (starting from the term of the entry, or snapshot, before
//!    them);
//! 5. hard state: the term never decreases, the vote does not change within a
//!    term once cast, and the commit index never decreases nor goes past
//!    the log's last index (after the change).
//!
//! A snapshot drops the log entries at or below its index, so the store
//! holds only entries after the latest snapshot: [`Persistence::load`]
//! returns exactly those.
//!
//! Costs: `save` is proportional to the change (plus the entries a snapshot
//! or truncation drops), `load` to the state it returns.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use raft_core::{Entry, HardState, LogIndex, Snapshot, Term};

use super::{Change, Identity, IoFailure, Persistence, PersistenceError, State};

/// Counters of what a [`MemoryPersistence`] did, shared by its clones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Successful calls to `save` (including empty changes).
    pub saves: u64,
    /// Log entries appended by successful saves.
    pub entries_written: u64,
    /// Snapshots stored by successful saves.
    pub snapshots_written: u64,
    /// Saves that failed with an injected [`PersistenceError::Io`].
    pub failed_saves: u64,
    /// Saves refused because the change was invalid (or of another identity).
    pub rejected_saves: u64,
    /// Successful calls to `load`.
    pub loads: u64,
}

/// The shared state behind every clone of a [`MemoryPersistence`].
///
/// Invariants: `entries` are contiguous, start at the snapshot's index + 1
/// (index 1 without a snapshot), and their terms never decrease, starting at
/// the snapshot's term. Nothing is stored without an identity.
#[derive(Debug, Default)]
struct Inner {
    identity: Option<Identity>,
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: VecDeque<Entry>,
    fail_next: u64,
    fail_all: bool,
    stats: MemoryStats,
}

impl Inner {
    /// The index and term the log follows on from: the snapshot's, or (0, 0).
    fn base(&self) -> (LogIndex, Term) {
        self.snapshot
            .as_ref()
            .map_or((0, 0), |s| (s.meta.index, s.meta.term))
    }

    /// The last index and term of the log (the base when it is empty).
    fn last(&self) -> (LogIndex, Term) {
        self.entries
            .back()
            .map_or_else(|| self.base(), |e| (e.index, e.term))
    }

    /// The term of the entry at `index`, if the store knows it (the base
    /// included).
    fn term_at(&self, index: LogIndex) -> Option<Term> {
        let (base, base_term) = self.base();
        if index == base {
            return Some(base_term);
        }
        if index < base {
            return None;
        }
        let pos = usize::try_from(index - base - 1).ok()?;
        self.entries.get(pos).map(|e| e.term)
    }

    /// Checks `change` against the stored state without changing anything.
    fn validate(&self, change: &Change) -> Result<(), PersistenceError> {
        super::validate::validate(self, change)
    }

    /// Applies a change that [`Inner::validate`] accepted, in the documented
    /// order.
    fn apply(&mut self, change: Change) {
        let Change {
            identity,
            snapshot,
            truncate_from,
            entries,
            hard_state,
        } = change;
        if self.identity.is_none() {
            self.identity = identity;
        }
        if let Some(snapshot) = snapshot {
            let index = snapshot.meta.index;
            // Compaction: drop what the snapshot covers, from the front.
            while self.entries.front().is_some_and(|e| e.index <= index) {
                self.entries.pop_front();
            }
            self.snapshot = Some(snapshot);
            self.stats.snapshots_written += 1;
        }
        if let Some(from) = truncate_from {
            let (base, _) = self.base();
            // `from > base` was validated: keep `from - base - 1` entries.
            let keep = usize::try_from(from.saturating_sub(base + 1)).unwrap_or(usize::MAX);
            self.entries.truncate(keep);
        }
        self.stats.entries_written += entries.len() as u64;
        self.entries.extend(entries);
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        self.stats.saves += 1;
    }

    /// Everything stored, or `None` for a store never written.
    fn state(&self) -> Option<State> {
        let identity = self.identity.clone()?;
        Some(State {
            identity,
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.iter().cloned().collect(),
        })
    }
}

/// A [`Persistence`] that keeps everything in memory, shared by its clones.
///
/// ```
/// # use raft_node::persistence::{memory::MemoryPersistence, Persistence};
/// # tokio_test_block(async {
/// let store = MemoryPersistence::new();
/// let kept = store.clone(); // survives the "crash" of whoever owns `store`
/// drop(store);
/// assert_eq!(kept.load().await.unwrap(), None);
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryPersistence {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryPersistence {
    /// An empty store: `load` returns `None` until the first save.
    pub fn new() -> MemoryPersistence {
        MemoryPersistence::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; should a caller's panic
        // ever poison it, the state is still consistent (changes are applied
        // only after validation, by code that cannot fail).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next `n` saves fail with [`PersistenceError::Io`] without
    /// applying their change (replacing any count set before).
    pub fn fail_next_saves(&self, n: u64) {
        self.lock().fail_next = n;
    }

    /// While `fail` is true, every save fails with [`PersistenceError::Io`]
    /// without applying its change.
    pub fn set_fail(&self, fail: bool) {
        self.lock().fail_all = fail;
    }

    /// What the store did so far (shared by all clones).
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats
    }

    /// Successful saves so far.
    pub fn saves(&self) -> u64 {
        self.lock().stats.saves
    }

    /// Log entries appended by successful saves so far.
    pub fn entries_written(&self) -> u64 {
        self.lock().stats.entries_written
    }

    /// What `load` would return, without counting a load: for tests that
    /// inspect what is durable.
    pub fn stored(&self) -> Option<State> {
        self.lock().state()
    }

    /// Validates and applies a change, at once.
    fn save_sync(&self, change: Change) -> Result<(), PersistenceError> {
        let mut inner = self.lock();
        let injected = if inner.fail_all {
            true
        } else if inner.fail_next > 0 {
            inner.fail_next -= 1;
            true
        } else {
            false
        };
        if injected {
            inner.stats.failed_saves += 1;
            return Err(PersistenceError::Io(IoFailure::other(
                std::io::ErrorKind::Other,
                "saving (an injected failure: MemoryPersistence::fail_next_saves / set_fail)",
            )));
        }
        if let Err(e) = inner.validate(&change) {
            inner.stats.rejected_saves += 1;
            return Err(e);
        }
        inner.apply(change);
        Ok(())
    }
}

#[async_trait]
impl Persistence for MemoryPersistence {
    async fn save(&self, change: Change) -> Result<(), PersistenceError> {
        self.save_sync(change)
    }

    fn try_save_now(&self, change: Change) -> Result<Result<(), PersistenceError>, Box<Change>> {
        Ok(self.save_sync(change))
    }

    async fn load(&self) -> Result<Option<State>, PersistenceError> {
        let mut inner = self.lock();
        inner.stats.loads += 1;
        Ok(inner.state())
    }
}

impl super::validate::StoredView for Inner {
    fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    fn last(&self) -> (LogIndex, Term) {
        Inner::last(self)
    }

    fn base(&self) -> (LogIndex, Term) {
        Inner::base(self)
    }

    fn term_at(&self, index: LogIndex) -> Option<Term> {
        Inner::term_at(self, index)
    }

    fn hard_state(&self) -> &HardState {
        &self.hard_state
    }
}
