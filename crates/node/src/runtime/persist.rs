//! Carrying out the writes of the driver's pipeline ([`raft_core::pipeline`]
//! decides what each holds, merges what queued meanwhile and holds back a
//! lone commit index): the driver spools a write's snapshot chunks, then
//! polls the store's save as a future beside its other input, one write at
//! a time. No task of its own: the only hop is the store's (the file
//! store's writer thread).

use std::sync::Arc;

use bytes::Bytes;
use raft_core::pipeline::{Save, SaveJob};
use raft_core::LogIndex;

use crate::persistence::{Change, Persistence, PersistenceError};
use crate::runtime::spool::Spool;

/// What a write under way resolves to: the job, and the index and data of
/// the snapshot it saved (as the store hands it out, mapped from its
/// file, for sending it on), or why it failed.
pub(crate) type Saved = (SaveJob, Result<Option<(LogIndex, Bytes)>, PersistenceError>);

/// A write under way, polled by the driver.
pub(crate) type Saving = std::pin::Pin<Box<dyn std::future::Future<Output = Saved> + Send>>;

/// The store's change for a pipeline save.
pub(crate) fn change_of(save: Save) -> Change {
    Change {
        identity: None,
        snapshot: save.snapshot,
        truncate_from: save.truncate_from,
        entries: save.entries,
        hard_state: save.hard_state,
    }
}

/// The pipeline save a change (with no identity) stands for.
pub(crate) fn save_of(change: Change) -> Save {
    debug_assert!(change.identity.is_none());
    Save {
        snapshot: change.snapshot,
        truncate_from: change.truncate_from,
        entries: change.entries,
        hard_state: change.hard_state,
    }
}

/// Spools the chunks of `job`'s batches and finishes a streamed snapshot
/// (the data of its save and its restore is then the spooled file), before
/// the write. Written inline: each chunk is at most `snapshot_chunk_bytes`
/// and goes to the page cache (the spool file needs no fsync: it is
/// mapped, then saved by the store, which makes its own copy durable).
pub(crate) fn spool_chunks(spool: &mut Spool, job: &mut SaveJob) -> Result<(), PersistenceError> {
    for batch in &mut job.batches {
        for c in std::mem::take(&mut batch.chunks) {
            spool.write(&c)?;
        }
    }
    if job.batches.iter().any(|b| b.streamed) {
        if let Some(meta) = job.save.snapshot.as_ref().map(|s| s.meta.clone()) {
            let data = spool.finish(&meta)?;
            job.set_snapshot_data(data);
        }
    }
    Ok(())
}

/// Starts `job`'s write on `p` (its chunks already spooled): a future the
/// driver polls beside its other input.
pub(crate) fn start(p: Arc<dyn Persistence>, mut job: SaveJob) -> Saving {
    Box::pin(async move {
        let result = save(&*p, &mut job).await;
        (job, result)
    })
}

/// Waits for the write under way (never resolves if there is none).
pub(crate) async fn wait(saving: &mut Option<Saving>) -> Saved {
    match saving {
        Some(s) => s.await,
        None => std::future::pending().await,
    }
}

/// Saves `job`'s write, and says where a saved snapshot can be read from.
async fn save(
    p: &dyn Persistence,
    job: &mut SaveJob,
) -> Result<Option<(LogIndex, Bytes)>, PersistenceError> {
    let saved_snapshot = job
        .save
        .snapshot
        .as_ref()
        .map(|s| (s.meta.index, s.data.clone()));
    let change = change_of(std::mem::take(&mut job.save));
    if !change.is_empty() {
        p.save(change).await?;
    }
    let Some((index, data)) = saved_snapshot else {
        return Ok(None);
    };
    let mapped = p
        .mapped_snapshot()
        .await
        .filter(|(i, _)| *i == index)
        .unwrap_or((index, data));
    Ok(Some(mapped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::bugs::BugSet;
    use raft_core::pipeline::Pipeline;
    use raft_core::{Entry, EntryPayload, HardState, Ready};

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

    #[tokio::test]
    async fn a_job_is_saved_as_one_change_and_comes_back_whole() {
        let store = Arc::new(Recorder::default());
        let mut pipeline = Pipeline::new(5, BugSet::default());
        let mut released = Vec::new();
        let entry = |index| Entry {
            index,
            term: 1,
            payload: EntryPayload::Blank,
        };
        for i in 1..=3 {
            pipeline.push(
                Ready {
                    entries: vec![entry(i)],
                    hard_state: (i == 3).then_some(HardState {
                        term: 1,
                        vote: 1,
                        commit: 2,
                    }),
                    ..Ready::default()
                },
                false,
                &mut released,
            );
        }
        let job = pipeline.next_save(usize::MAX, &mut released).unwrap();
        let (job, result) = start(store.clone(), job).await;
        assert!(result.expect("saved").is_none());
        assert_eq!(job.batches.len(), 3);
        let saves = store.saves.lock().unwrap().clone();
        assert_eq!(saves.len(), 1, "one write for the three batches");
        assert_eq!(saves[0].entries, vec![entry(1), entry(2), entry(3)]);
        assert_eq!(saves[0].hard_state.map(|h| h.commit), Some(2));
        pipeline.saved(job, &mut released);
        assert_eq!(released.len(), 3);
    }
}
