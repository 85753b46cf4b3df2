//! The persistence task: saves each batch the core hands out, in order, and
//! reports back when it is durable. Batches that queued up while a save was
//! running are merged into one save (group commit at the node level).

use std::sync::Arc;

use raft_core::{Entry, LogIndex, Message, ReadState, Term};
use tokio::sync::mpsc;

use crate::persistence::{Change, Persistence, PersistenceError};
use crate::runtime::spool::Spool;

/// One batch of core output that waits for the disk.
#[derive(Debug, Default)]
pub(crate) struct Job {
    /// What to save.
    pub change: Change,
    /// Messages released once durable.
    pub after: Vec<Message>,
    /// What to report to `on_persisted`.
    pub marker: Option<(LogIndex, Term)>,
    /// A snapshot from the leader to restore the state machine from.
    pub restore: Option<raft_core::Snapshot>,
    /// Committed entries to apply once durable.
    pub committed: Vec<Entry>,
    /// Reads to serve after applying.
    pub reads: Vec<ReadState>,
    /// Reads that failed.
    pub aborted: Vec<u64>,
    /// Leadership was lost in this batch: once its committed entries are
    /// applied, the commands still waiting have an unknown outcome.
    pub leadership_lost: bool,
    /// Chunks of a snapshot being received, for the spool.
    pub chunks: Vec<raft_core::IncomingChunk>,
    /// `change.snapshot` was received in chunks: its data is the spooled
    /// file (filled in here, then restored from).
    pub streamed: bool,
    /// Set here after a snapshot is saved: its data as the store can hand it
    /// out (mapped), for sending it on.
    pub mapped: Option<(LogIndex, bytes::Bytes)>,
}

/// What the task reports back.
pub(crate) enum Done {
    /// These jobs are durable, in order.
    Saved(Vec<Job>),
    /// A save failed: the node must stop acknowledging (fail-stop).
    Failed(PersistenceError),
}

/// The most jobs merged into one save.
const MAX_MERGED: usize = 1024;

/// Saves jobs in order until the channel closes or a save fails.
pub(crate) async fn run(
    persistence: Arc<dyn Persistence>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    done: mpsc::UnboundedSender<Done>,
    mut spool: Spool,
) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut batch = vec![first];
        // A snapshot is saved on its own: after what came before it, before
        // what comes after.
        while batch.len() < MAX_MERGED && batch[0].change.snapshot.is_none() {
            match jobs.try_recv() {
                Ok(job) if job.change.snapshot.is_none() => batch.push(job),
                Ok(job) => {
                    pending = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        match save_batch(&*persistence, &mut spool, &mut batch).await {
            Ok(()) => {
                if done.send(Done::Saved(batch)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = done.send(Done::Failed(e));
                return;
            }
        }
    }
}

/// Spools the chunks of `batch`, finishes a streamed snapshot, saves the
/// changes as one, and notes where a saved snapshot can be read from.
async fn save_batch(
    p: &dyn Persistence,
    spool: &mut Spool,
    batch: &mut [Job],
) -> Result<(), PersistenceError> {
    for job in batch.iter_mut() {
        let chunks = std::mem::take(&mut job.chunks);
        let finish = if job.streamed {
            job.change.snapshot.as_ref().map(|s| s.meta.clone())
        } else {
            None
        };
        if chunks.is_empty() && finish.is_none() {
            continue;
        }
        // Written inline: each chunk is at most `snapshot_chunk_bytes` and
        // goes to the page cache (the spool file needs no fsync: it is
        // mapped, then saved by the store, which makes its own copy
        // durable). A blocking-pool hop would also break tests that run on
        // paused time.
        let mut result = Ok(None);
        for c in &chunks {
            if let Err(e) = spool.write(c) {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            if let Some(meta) = finish {
                result = spool.finish(&meta).map(Some);
            }
        }
        if let Some(data) = result? {
            if let Some(s) = &mut job.change.snapshot {
                s.data = data;
                job.restore = Some(s.clone());
            }
        }
    }
    let saved_snapshot = batch.iter().find_map(|j| {
        j.change
            .snapshot
            .as_ref()
            .map(|s| (s.meta.index, s.data.clone()))
    });
    save_merged(p, batch).await?;
    if let Some((index, data)) = saved_snapshot {
        let mapped = p
            .mapped_snapshot()
            .await
            .filter(|(i, _)| *i == index)
            .unwrap_or((index, data));
        // A snapshot is always alone in its batch.
        if let Some(job) = batch.first_mut() {
            job.mapped = Some(mapped);
        }
    }
    Ok(())
}

/// Saves the changes of `batch` as one.
async fn save_merged(p: &dyn Persistence, batch: &mut [Job]) -> Result<(), PersistenceError> {
    let mut merged = Change::default();
    for job in batch.iter_mut() {
        merge(&mut merged, std::mem::take(&mut job.change));
    }
    if merged.is_empty() {
        return Ok(());
    }
    p.save(merged).await
}

/// Folds `next` into `acc` so that saving `acc` once has the effect of
/// saving the two in order. `next` carries no snapshot unless `acc` is
/// empty (the caller splits batches at snapshots).
pub(crate) fn merge(acc: &mut Change, next: Change) {
    if acc.is_empty() {
        *acc = next;
        return;
    }
    debug_assert!(next.snapshot.is_none());
    if acc.identity.is_none() {
        acc.identity = next.identity;
    }
    if let Some(t) = next.truncate_from {
        match acc.entries.first().map(|e| e.index) {
            Some(first) if t > first => acc.entries.truncate((t - first) as usize),
            _ => {
                acc.entries.clear();
                acc.truncate_from = Some(acc.truncate_from.map_or(t, |old| old.min(t)));
            }
        }
    }
    acc.entries.extend(next.entries);
    if next.hard_state.is_some() {
        acc.hard_state = next.hard_state;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{EntryPayload, HardState};

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn merged_changes_have_the_effect_of_both() {
        let mut acc = Change {
            entries: vec![e(5, 1), e(6, 1), e(7, 1)],
            ..Change::default()
        };
        merge(
            &mut acc,
            Change {
                truncate_from: Some(6),
                entries: vec![e(6, 2)],
                hard_state: Some(HardState {
                    term: 2,
                    vote: 1,
                    commit: 5,
                }),
                ..Change::default()
            },
        );
        assert_eq!(acc.entries, vec![e(5, 1), e(6, 2)]);
        assert_eq!(acc.truncate_from, None);
        merge(
            &mut acc,
            Change {
                truncate_from: Some(3),
                entries: vec![e(3, 3)],
                ..Change::default()
            },
        );
        assert_eq!(acc.entries, vec![e(3, 3)]);
        assert_eq!(acc.truncate_from, Some(3));
        assert_eq!(acc.hard_state.map(|h| h.term), Some(2));
    }
}
