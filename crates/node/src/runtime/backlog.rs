//! The apply backlog: committed entries handed to the apply task and not
//! yet applied. The driver adds to it, the apply task takes away, and both
//! the proposal path and the driver read it to apply back-pressure (as
//! etcd limits the gap between its commit and applied indexes): a slow
//! state machine slows the proposers on a leader, and makes a follower
//! leave the leader's appends unanswered until it has caught up, instead
//! of growing the node's memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use raft_core::{Entry, LogIndex};
use tokio::sync::Notify;

/// What the apply task has been given and not yet applied, what commands
/// admitted on this node will add, and the limits past which the node
/// holds back.
#[derive(Debug)]
pub(crate) struct ApplyBacklog {
    /// The index the state machine has applied (published after each
    /// batch): what a local read reflects.
    applied: AtomicU64,
    counts: Mutex<Counts>,
    max_bytes: usize,
    max_entries: usize,
    /// Woken when the backlog falls back under its limits.
    room: Notify,
    /// Proposals that waited for the backlog to shrink.
    waits: AtomicU64,
    /// Appends from the leader a follower left unanswered while over the
    /// limits.
    deferred_appends: AtomicU64,
}

/// The backlog's sizes.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Committed entries handed to the apply task and not yet applied.
    handed_bytes: usize,
    handed_entries: usize,
    /// Commands admitted here (proposed through this node while it led)
    /// and not yet answered: they will be committed and applied.
    admitted_bytes: usize,
    admitted_entries: usize,
}

impl Counts {
    fn bytes(&self) -> usize {
        self.handed_bytes + self.admitted_bytes
    }
    fn entries(&self) -> usize {
        self.handed_entries + self.admitted_entries
    }
    fn full(&self, max_bytes: usize, max_entries: usize) -> bool {
        self.bytes() >= max_bytes || self.entries() >= max_entries
    }
}

/// A snapshot of the backlog's figures, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyBacklogStats {
    /// Bytes of committed entries waiting to be applied.
    pub bytes: usize,
    /// How many committed entries wait to be applied.
    pub entries: usize,
    /// Commands admitted on this node (while it led) and not yet answered.
    pub admitted: usize,
    /// The limit on `bytes` ([`crate::Options::max_unapplied_bytes`]).
    pub max_bytes: usize,
    /// The limit on `entries` ([`crate::Options::max_unapplied_entries`]).
    pub max_entries: usize,
    /// Commands that waited on this node (while it led) for the state
    /// machine to catch up before they were proposed.
    pub proposals_waited: u64,
    /// Appends this node (as a follower) left unanswered because its state
    /// machine was behind; the leader sends them again.
    pub appends_deferred: u64,
}

/// A command admitted through the backlog's gate: counted until dropped
/// (when the command is answered).
pub(crate) struct Admitted<'a> {
    backlog: &'a ApplyBacklog,
    bytes: usize,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let bytes = self.bytes;
        self.backlog.release(|c| {
            c.admitted_bytes -= bytes;
            c.admitted_entries -= 1;
        });
    }
}

impl ApplyBacklog {
    /// An empty backlog, the state machine at `applied`.
    pub fn new(applied: LogIndex, max_bytes: usize, max_entries: usize) -> ApplyBacklog {
        ApplyBacklog {
            applied: AtomicU64::new(applied),
            counts: Mutex::new(Counts::default()),
            max_bytes,
            max_entries,
            room: Notify::new(),
            waits: AtomicU64::new(0),
            deferred_appends: AtomicU64::new(0),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .expect("the lock is never held across a panic")
    }

    /// The index the state machine has applied.
    pub fn applied(&self) -> LogIndex {
        self.applied.load(Ordering::Acquire)
    }

    /// Whether the backlog is at or over one of its limits.
    pub fn full(&self) -> bool {
        self.counts().full(self.max_bytes, self.max_entries)
    }

    /// The driver hands `entries` to the apply task.
    pub fn handed(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let bytes = batch_bytes(entries);
        let mut c = self.counts();
        c.handed_bytes += bytes;
        c.handed_entries += entries.len();
    }

    /// The apply task applied a batch of `count` entries of `bytes`, up to
    /// `applied`.
    pub fn applied_batch(&self, applied: LogIndex, count: usize, bytes: usize) {
        self.applied.store(applied, Ordering::Release);
        if count == 0 {
            return;
        }
        self.release(|c| {
            c.handed_bytes -= bytes;
            c.handed_entries -= count;
        });
    }

    /// Takes something off the backlog; wakes the waiting proposers if
    /// that makes room.
    fn release(&self, take: impl FnOnce(&mut Counts)) {
        let room = {
            let mut c = self.counts();
            let was_full = c.full(self.max_bytes, self.max_entries);
            take(&mut c);
            was_full && !c.full(self.max_bytes, self.max_entries)
        };
        if room {
            self.room.notify_waiters();
        }
    }

    /// Admits a command of `bytes` once the backlog has room for it
    /// (counting it from then on), waiting while it is full. An empty
    /// backlog admits a command of any size.
    pub async fn admit(&self, bytes: usize) -> Admitted<'_> {
        let mut waited = false;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the check: a wake-up between the two is
            // not lost.
            room.as_mut().enable();
            {
                let mut c = self.counts();
                if c.entries() == 0 || !c.full(self.max_bytes, self.max_entries) {
                    c.admitted_bytes += bytes;
                    c.admitted_entries += 1;
                    return Admitted {
                        backlog: self,
                        bytes,
                    };
                }
            }
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            room.await;
        }
    }

    /// A follower left an append unanswered.
    pub fn deferred_append(&self) {
        self.deferred_appends.fetch_add(1, Ordering::Relaxed);
    }

    /// The figures, for metrics.
    pub fn stats(&self) -> ApplyBacklogStats {
        let c = *self.counts();
        ApplyBacklogStats {
            bytes: c.handed_bytes,
            entries: c.handed_entries,
            admitted: c.admitted_entries,
            max_bytes: self.max_bytes,
            max_entries: self.max_entries,
            proposals_waited: self.waits.load(Ordering::Relaxed),
            appends_deferred: self.deferred_appends.load(Ordering::Relaxed),
        }
    }
}

/// The bytes a batch of entries counts for in the backlog.
pub(crate) fn batch_bytes(entries: &[Entry]) -> usize {
    entries.iter().map(Entry::size_bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use raft_core::EntryPayload;
    use std::sync::Arc;
    use std::time::Duration;

    fn entry(index: LogIndex, len: usize) -> Entry {
        Entry {
            index,
            term: 1,
            payload: EntryPayload::Command(Bytes::from(vec![0u8; len])),
        }
    }

    #[tokio::test]
    async fn proposers_wait_while_full_and_are_woken_once_it_drains() {
        let b = Arc::new(ApplyBacklog::new(0, 1000, 100));
        let batch = vec![entry(1, 600), entry(2, 600)];
        b.handed(&batch);
        assert!(b.full());
        let waiter = tokio::spawn({
            let b = b.clone();
            async move {
                let _admitted = b.admit(10).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a proposer passed a full backlog");
        b.applied_batch(2, 2, batch_bytes(&batch));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was woken")
            .unwrap();
        let s = b.stats();
        assert_eq!(
            (s.bytes, s.entries, s.admitted, s.proposals_waited),
            (0, 0, 0, 1)
        );
        assert_eq!(b.applied(), 2);
    }

    #[tokio::test]
    async fn admitted_commands_count_until_answered_and_the_entry_limit_counts_too() {
        let b = ApplyBacklog::new(0, usize::MAX, 2);
        let first = b.admit(1).await;
        assert!(!b.full());
        let second = b.admit(1).await;
        assert!(b.full());
        assert_eq!(b.stats().admitted, 2);
        drop(first);
        assert!(!b.full());
        drop(second);
        assert_eq!(b.stats().admitted, 0);
    }

    #[tokio::test]
    async fn an_empty_backlog_admits_a_command_larger_than_the_limit() {
        let b = ApplyBacklog::new(0, 100, 10);
        let big = tokio::time::timeout(Duration::from_secs(1), b.admit(1000))
            .await
            .expect("admitted at once");
        assert!(b.full());
        drop(big);
        assert!(!b.full());
    }
}
