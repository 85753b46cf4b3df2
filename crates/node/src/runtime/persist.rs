//! The persistence task: carries out the writes the driver's pipeline
//! hands it ([`raft_core::pipeline`] decides what each holds, merges what
//! queued meanwhile and holds back a lone commit index), one at a time, and
//! reports back when each is durable.

use std::sync::Arc;

use bytes::Bytes;
use raft_core::pipeline::{Save, SaveJob};
use raft_core::LogIndex;
use tokio::sync::mpsc;

use crate::persistence::{Change, Persistence, PersistenceError};
use crate::runtime::spool::Spool;

/// What the task reports back.
pub(crate) enum Done {
    /// The job is durable. `mapped`: the snapshot it saved, as the store
    /// hands it out (mapped from its file), for sending it on.
    Saved {
        /// The job.
        job: SaveJob,
        /// The saved snapshot's index and data, if it saved one.
        mapped: Option<(LogIndex, Bytes)>,
    },
    /// A save failed: the node must stop acknowledging (fail-stop).
    Failed(PersistenceError),
}

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

/// Carries out jobs in order until the channel closes or a save fails.
pub(crate) async fn run(
    persistence: Arc<dyn Persistence>,
    mut jobs: mpsc::UnboundedReceiver<SaveJob>,
    done: mpsc::UnboundedSender<Done>,
    mut spool: Spool,
) {
    while let Some(mut job) = jobs.recv().await {
        match save_job(&*persistence, &mut spool, &mut job).await {
            Ok(mapped) => {
                if done.send(Done::Saved { job, mapped }).is_err() {
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

/// Spools the chunks of `job`'s batches, finishes a streamed snapshot,
/// saves the job's write, and says where a saved snapshot can be read from.
async fn save_job(
    p: &dyn Persistence,
    spool: &mut Spool,
    job: &mut SaveJob,
) -> Result<Option<(LogIndex, Bytes)>, PersistenceError> {
    // Written inline: each chunk is at most `snapshot_chunk_bytes` and goes
    // to the page cache (the spool file needs no fsync: it is mapped, then
    // saved by the store, which makes its own copy durable). A
    // blocking-pool hop would also break tests that run on paused time.
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
        let (jobs_tx, jobs) = mpsc::unbounded_channel();
        let (done, mut done_rx) = mpsc::unbounded_channel();
        let dir = std::env::temp_dir().join(format!("persist-test-{}", std::process::id()));
        let spool = Spool::open(dir, "n1");
        tokio::spawn(run(store.clone(), jobs, done, spool));
        let mut pipeline = Pipeline::new(5, BugSet::default());
        let (mut send, mut released) = (Vec::new(), Vec::new());
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
                &mut send,
                &mut released,
            );
        }
        let job = pipeline.next_save(usize::MAX, &mut released).unwrap();
        jobs_tx.send(job).unwrap();
        let Some(Done::Saved { job, mapped }) = done_rx.recv().await else {
            panic!("the job was not saved");
        };
        assert!(mapped.is_none());
        assert_eq!(job.batches.len(), 3);
        let saves = store.saves.lock().unwrap().clone();
        assert_eq!(saves.len(), 1, "one write for the three batches");
        assert_eq!(saves[0].entries, vec![entry(1), entry(2), entry(3)]);
        assert_eq!(saves[0].hard_state.map(|h| h.commit), Some(2));
        pipeline.saved(job, &mut released);
        assert_eq!(released.len(), 3);
    }
}
