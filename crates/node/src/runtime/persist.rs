//! The persistence task: saves each batch the core hands out, in order, and
//! reports back when it is durable. Batches that queued up while a save was
//! running are merged into one save (group commit at the node level).

use std::sync::Arc;
use std::time::Duration;

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
    /// These jobs are durable, in order (a deferred commit index aside).
    /// `deferring`: the task now holds a commit index not yet saved, so
    /// every save must come through it (a save beside it could be
    /// overtaken by the older commit index).
    Saved {
        /// The jobs.
        jobs: Vec<Job>,
        /// Whether a commit index waits in the task.
        deferring: bool,
    },
    /// A save failed: the node must stop acknowledging (fail-stop).
    Failed(PersistenceError),
}

/// The most jobs merged into one save.
const MAX_MERGED: usize = 1024;

/// How long a commit index whose save was deferred may wait for a save to
/// ride along with before it is saved alone.
const DEFERRED_COMMIT_FLUSH: Duration = Duration::from_millis(50);

/// A commit index that changed alone (term and vote as saved) needs no
/// durability: Raft's commit index is volatile state, and a node that
/// restarts with an older one learns it again (a snapshot beyond it counts
/// as committed). Such saves are therefore not waited for: their jobs are
/// released at once, and the hard state is saved with the next change (or
/// alone, once the task has been idle for [`DEFERRED_COMMIT_FLUSH`]). This
/// takes a disk sync off every write's path between commit and apply.
#[derive(Default)]
struct Deferral {
    /// The term and vote of the last hard state handed to the store.
    saved_vote: Option<(Term, raft_core::NodeId)>,
    /// A commit-only hard state not saved yet.
    deferred: Option<raft_core::HardState>,
}

impl Deferral {
    /// Whether `batch` changes nothing but the commit index.
    fn commit_only(&self, batch: &[Job]) -> Option<raft_core::HardState> {
        let mut hard_state = None;
        for job in batch {
            let c = &job.change;
            if c.identity.is_some()
                || c.snapshot.is_some()
                || c.truncate_from.is_some()
                || !c.entries.is_empty()
                || !job.chunks.is_empty()
                || job.streamed
            {
                return None;
            }
            if let Some(hs) = &c.hard_state {
                if self.saved_vote != Some((hs.term, hs.vote)) {
                    return None;
                }
                hard_state = Some(*hs);
            }
        }
        hard_state
    }

    /// Notes what a save handed to the store.
    fn saved(&mut self, hard_state: Option<&raft_core::HardState>) {
        if let Some(hs) = hard_state {
            self.saved_vote = Some((hs.term, hs.vote));
        }
    }
}

/// Saves jobs in order until the channel closes or a save fails.
pub(crate) async fn run(
    persistence: Arc<dyn Persistence>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    done: mpsc::UnboundedSender<Done>,
    mut spool: Spool,
) {
    let mut pending: Option<Job> = None;
    let mut deferral = Deferral::default();
    loop {
        let first = match pending.take() {
            Some(job) => job,
            None if deferral.deferred.is_some() => {
                match tokio::time::timeout(DEFERRED_COMMIT_FLUSH, jobs.recv()).await {
                    Ok(Some(job)) => job,
                    Ok(None) => {
                        let _ = flush_deferred(&*persistence, &mut deferral).await;
                        return;
                    }
                    Err(_) => {
                        if let Err(e) = flush_deferred(&*persistence, &mut deferral).await {
                            let _ = done.send(Done::Failed(e));
                            return;
                        }
                        let flushed = Done::Saved {
                            jobs: Vec::new(),
                            deferring: false,
                        };
                        if done.send(flushed).is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
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
        if let Some(hs) = deferral.commit_only(&batch) {
            deferral.deferred = Some(hs);
            for job in &mut batch {
                job.change = Change::default();
            }
            let saved = Done::Saved {
                jobs: batch,
                deferring: true,
            };
            if done.send(saved).is_err() {
                return;
            }
            continue;
        }
        match save_batch(&*persistence, &mut spool, &mut batch, &mut deferral).await {
            Ok(()) => {
                let saved = Done::Saved {
                    jobs: batch,
                    deferring: deferral.deferred.is_some(),
                };
                if done.send(saved).is_err() {
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

/// Saves a deferred commit index alone.
async fn flush_deferred(
    p: &dyn Persistence,
    deferral: &mut Deferral,
) -> Result<(), PersistenceError> {
    match deferral.deferred.take() {
        Some(hs) => {
            p.save(Change {
                hard_state: Some(hs),
                ..Change::default()
            })
            .await
        }
        None => Ok(()),
    }
}

/// Spools the chunks of `batch`, finishes a streamed snapshot, saves the
/// changes as one, and notes where a saved snapshot can be read from.
async fn save_batch(
    p: &dyn Persistence,
    spool: &mut Spool,
    batch: &mut [Job],
    deferral: &mut Deferral,
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
    save_merged(p, batch, deferral).await?;
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

/// Saves the changes of `batch` as one, with a deferred commit index if
/// the batch brings no newer hard state.
async fn save_merged(
    p: &dyn Persistence,
    batch: &mut [Job],
    deferral: &mut Deferral,
) -> Result<(), PersistenceError> {
    let mut merged = Change::default();
    for job in batch.iter_mut() {
        merge(&mut merged, std::mem::take(&mut job.change));
    }
    if merged.is_empty() {
        return Ok(());
    }
    let deferred = deferral.deferred.take();
    if merged.hard_state.is_none() {
        merged.hard_state = deferred;
    }
    deferral.saved(merged.hard_state.as_ref());
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

    /// Records every save; never fails.
    #[derive(Default)]
    struct Recorder {
        saves: std::sync::Mutex<Vec<Change>>,
    }

    #[async_trait::async_trait]
    impl Persistence for Recorder {
        async fn save(&self, change: Change) -> Result<(), PersistenceError> {
            self.saves.lock().unwrap().push(change);
            Ok(())
        }

        async fn load(&self) -> Result<Option<crate::persistence::State>, PersistenceError> {
            Ok(None)
        }
    }

    fn hs(term: u64, vote: u64, commit: u64) -> Change {
        Change {
            hard_state: Some(HardState { term, vote, commit }),
            ..Change::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_commit_index_alone_is_not_waited_for_and_rides_along() {
        let store = Arc::new(Recorder::default());
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let (done, mut done_rx) = mpsc::unbounded_channel();
        let dir = std::env::temp_dir().join(format!("persist-test-{}", std::process::id()));
        let spool = Spool::open(dir, "n1");
        tokio::spawn(run(store.clone(), jobs, done, spool));
        let send = |change: Change| {
            jobs_tx
                .send(Job {
                    change,
                    ..Job::default()
                })
                .unwrap()
        };
        let saves = |s: &Recorder| s.saves.lock().unwrap().clone();
        // How many jobs were released, and whether the task then holds a
        // commit index (so the driver must not save beside it).
        let released_with = |rx: &mut mpsc::UnboundedReceiver<Done>| match rx.try_recv() {
            Ok(Done::Saved { jobs, deferring }) => (jobs.len(), deferring),
            _ => (0, false),
        };
        let released = |rx: &mut mpsc::UnboundedReceiver<Done>| released_with(rx).0;

        // A vote is saved (and waited for).
        send(hs(1, 1, 0));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(released(&mut done_rx), 1);
        assert_eq!(saves(&store).len(), 1);
        // The commit index alone: released with no save.
        send(hs(1, 1, 4));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(released_with(&mut done_rx), (1, true));
        assert_eq!(saves(&store).len(), 1, "a commit-only change was saved");
        // Entries without a hard state carry the deferred commit index.
        send(Change {
            entries: vec![e(5, 1)],
            ..Change::default()
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(released(&mut done_rx), 1);
        let s = saves(&store);
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].entries, vec![e(5, 1)]);
        assert_eq!(s[1].hard_state.as_ref().map(|h| h.commit), Some(4));
        // A new term is never deferred.
        send(hs(2, 2, 5));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(released(&mut done_rx), 1);
        assert_eq!(saves(&store).len(), 3);
        // A deferred commit index is saved alone once the task is idle.
        send(hs(2, 2, 6));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(released(&mut done_rx), 1);
        assert_eq!(saves(&store).len(), 3);
        tokio::time::sleep(DEFERRED_COMMIT_FLUSH * 2).await;
        assert_eq!(released_with(&mut done_rx), (0, false));
        let s = saves(&store);
        assert_eq!(s.len(), 4, "the deferred commit index was never saved");
        assert_eq!(s[3].hard_state.as_ref().map(|h| h.commit), Some(6));
        assert!(s[3].entries.is_empty());
    }
}
