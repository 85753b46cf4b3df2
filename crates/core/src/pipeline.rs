//! The pipeline between the core and the disk: the ordering rules of
//! [`Ready`] in one place, with no I/O, so that the runtime and the
//! simulator carry out the same decisions.
//!
//! A driver hands every `Ready` to [`Pipeline::push`], sends the messages
//! it returns at once, asks [`Pipeline::next_save`] for what to write,
//! writes it (however its store does: at once, on another thread, in a
//! simulated disk), and hands the job back to [`Pipeline::saved`]. Batches
//! come out of `push`, `next_save` and `saved` *released*, in the order the
//! core produced them: only then may the driver send their
//! `messages_after_persist`, call [`crate::Raft::on_persisted`] with their
//! marker, restore and apply, and serve or fail their reads.
//!
//! What it decides:
//! - **Order.** Batches are released in order; a batch that needs no disk
//!   still waits for the ones ahead of it.
//! - **Merging.** Batches waiting while a save is under way become one save
//!   (group commit at the node level); a snapshot is saved alone.
//! - **The commit index alone is not waited for.** Raft's commit index is
//!   volatile: a node that restarts with an older one learns it again. A
//!   batch whose only change is the commit index (term and vote as last
//!   saved) is released at once, its hard state held back and saved with
//!   the next change, or alone once nothing carried it for a few ticks.
//!   Term and vote are never held back.
//!
//! What a crash loses: everything in the pipeline, a held commit index
//! included. That breaks nothing: the entries below a held commit index are
//! committed, so a quorum holds them on disk; the node restarts with the
//! commit index it last wrote (never beyond the log it wrote) and learns
//! the rest from the leader, and the clients it answered were answered from
//! committed entries. The deferral is wrong only if it writes a held commit
//! index *after* a newer hard state took its place (the durable commit
//! index, and term and vote with it, would go back), holds back a changed
//! term or vote, or lets a batch it releases overtake the ones before it.
//! Reads are released with their batch, after the committed entries ahead
//! of them: a read answered before those are applied could miss a write
//! that was already acknowledged.

use std::collections::VecDeque;

use crate::bugs::{Bug, BugSet};
use crate::message::Message;
use crate::ready::{IncomingChunk, ReadState, Ready};
use crate::types::{Entry, HardState, LogIndex, NodeId, Snapshot, Term};

/// What one save writes, in this order: the snapshot (entries at or below
/// its index may then go), the truncation (entries at and above it go),
/// the entries (appended), the hard state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Save {
    /// A snapshot to keep.
    pub snapshot: Option<Snapshot>,
    /// Drop stored entries at and above this index.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// Term, vote and commit index.
    pub hard_state: Option<HardState>,
}

impl Save {
    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
    }

    /// Folds `next` into this save, so that writing the result once has the
    /// effect of writing the two in order. `next` carries no snapshot unless
    /// this save is empty (the pipeline saves snapshots alone).
    pub fn merge(&mut self, next: Save) {
        if self.is_empty() {
            *self = next;
            return;
        }
        debug_assert!(next.snapshot.is_none(), "a snapshot is saved alone");
        if let Some(t) = next.truncate_from {
            match self.entries.first().map(|e| e.index) {
                Some(first) if t > first => self.entries.truncate((t - first) as usize),
                _ => {
                    self.entries.clear();
                    self.truncate_from = Some(self.truncate_from.map_or(t, |old| old.min(t)));
                }
            }
        }
        self.entries.extend(next.entries);
        if next.hard_state.is_some() {
            self.hard_state = next.hard_state;
        }
    }
}

/// One `Ready`'s work after its messages left: what it saves, and what
/// waits until that is durable.
#[derive(Debug, Default)]
pub struct Batch {
    /// What to write (moved into the [`SaveJob`] that writes it).
    pub save: Save,
    /// Chunks of a snapshot being received, to write (in order, before the
    /// save) where the snapshot is assembled.
    pub chunks: Vec<IncomingChunk>,
    /// The save's snapshot is the one received in chunks: its data is the
    /// assembled file ([`SaveJob::set_snapshot_data`]).
    pub streamed: bool,
    /// A snapshot from the leader to restore the state machine from, once
    /// released, before applying anything.
    pub restore: Option<Snapshot>,
    /// Messages to send once released.
    pub after: Vec<Message>,
    /// What to report to [`crate::Raft::on_persisted`] once released.
    pub marker: Option<(LogIndex, Term)>,
    /// Committed entries to apply, in order, once released.
    pub committed: Vec<Entry>,
    /// Reads to serve after applying.
    pub reads: Vec<ReadState>,
    /// Reads that failed.
    pub aborted: Vec<u64>,
    /// The node stopped leading in this batch: once its committed entries
    /// are applied, commands still waiting have an unknown outcome.
    pub leadership_lost: bool,
}

impl Batch {
    /// Splits `rd` into the messages that may leave at once and the batch.
    fn from_ready(rd: Ready, leadership_lost: bool) -> (Vec<Message>, Batch) {
        let marker = rd.persisted_marker();
        let restore = if rd.restore_snapshot {
            rd.snapshot.clone()
        } else {
            None
        };
        let batch = Batch {
            save: Save {
                snapshot: rd.snapshot,
                truncate_from: rd.truncate_from,
                entries: rd.entries,
                hard_state: rd.hard_state,
            },
            chunks: rd.snapshot_chunks,
            streamed: rd.snapshot_streamed,
            restore,
            after: rd.messages_after_persist,
            marker,
            committed: rd.committed_entries,
            reads: rd.reads,
            aborted: rd.aborted_reads,
            leadership_lost,
        };
        (rd.messages, batch)
    }

    /// Whether anything must be written before it is released.
    fn needs_disk(&self) -> bool {
        !self.save.is_empty() || !self.chunks.is_empty() || self.streamed
    }
}

/// Writes that a driver carries out: each batch's chunks in order (a
/// streamed snapshot finished into [`SaveJob::set_snapshot_data`]), then
/// [`SaveJob::save`] as one write; then the job goes back to
/// [`Pipeline::saved`].
#[derive(Debug)]
pub struct SaveJob {
    id: u64,
    /// The merged write of all the job's batches (a held commit index
    /// included when they bring no hard state).
    pub save: Save,
    /// The batches it releases once durable, in order.
    pub batches: Vec<Batch>,
}

impl SaveJob {
    /// A streamed snapshot was assembled: its data is `data` (in the save,
    /// and in what the state machine restores from).
    pub fn set_snapshot_data(&mut self, data: bytes::Bytes) {
        if let Some(s) = &mut self.save.snapshot {
            s.data = data.clone();
        }
        for b in &mut self.batches {
            if let Some(r) = &mut b.restore {
                r.data = data.clone();
            }
        }
    }
}

/// The pipeline's state: what waits for the disk, what is being written,
/// and a held commit index.
#[derive(Debug)]
pub struct Pipeline {
    /// Batches waiting for the disk (or behind ones that do), in order.
    waiting: VecDeque<Batch>,
    /// Jobs handed out and not yet back, by id, in order.
    in_flight: VecDeque<u64>,
    next_id: u64,
    /// The term and vote of the last hard state handed out to be written.
    saved_vote: Option<(Term, NodeId)>,
    /// A hard state that changed only its commit index, not written yet.
    held: Option<HardState>,
    /// The tick it was held at.
    held_at: u64,
    /// A held commit index is due to be written alone.
    flush_due: bool,
    ticks: u64,
    flush_after_ticks: u64,
    bugs: BugSet,
}

impl Pipeline {
    /// An empty pipeline; a held commit index is written alone after
    /// `flush_after_ticks` ticks. `bugs` are injected faults (see
    /// [`crate::bugs`]); [`BugSet::default`] for none.
    pub fn new(flush_after_ticks: u64, bugs: BugSet) -> Pipeline {
        Pipeline {
            waiting: VecDeque::new(),
            in_flight: VecDeque::new(),
            next_id: 1,
            saved_vote: None,
            held: None,
            held_at: 0,
            flush_due: false,
            ticks: 0,
            flush_after_ticks,
            bugs,
        }
    }

    /// Whether nothing waits and nothing is being written.
    pub fn idle(&self) -> bool {
        self.waiting.is_empty() && self.in_flight.is_empty()
    }

    /// Batches waiting for a write (not yet in a job).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Jobs handed out and not yet back.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether a commit index is held back (not yet written).
    pub fn holds_commit(&self) -> bool {
        self.held.is_some()
    }

    /// Takes the core's output and returns the messages that may leave at
    /// once; the batch is released into `released` if nothing is ahead of
    /// it and it needs no disk (or only a commit index, which is held),
    /// else it waits. `leadership_lost`: the node stopped leading in it.
    pub fn push(
        &mut self,
        rd: Ready,
        leadership_lost: bool,
        released: &mut Vec<Batch>,
    ) -> Vec<Message> {
        let (mut send, mut batch) = Batch::from_ready(rd, leadership_lost);
        if self.bugs.has(Bug::PipelineSendsBeforeSave) {
            send.append(&mut batch.after);
        }
        if self.bugs.has(Bug::PipelineAnswersBeforeApply) && !batch.reads.is_empty() {
            released.push(Batch {
                reads: std::mem::take(&mut batch.reads),
                ..Batch::default()
            });
        }
        if self.idle() {
            // Nothing ahead of it: released at once unless it needs the
            // disk (without a detour through the queue).
            if let Some(hs) = self.commit_only(&batch) {
                batch.save.hard_state = None;
                self.held = Some(hs);
                self.held_at = self.ticks;
                released.push(batch);
            } else if !batch.needs_disk() {
                released.push(batch);
            } else {
                self.waiting.push_back(batch);
            }
            return send;
        }
        self.waiting.push_back(batch);
        if self.in_flight.is_empty() {
            self.release_front(released);
        }
        send
    }

    /// With nothing being written: releases the waiting batches at the
    /// front that need no disk, holding back a lone commit index.
    fn release_front(&mut self, released: &mut Vec<Batch>) {
        while let Some(front) = self.waiting.front() {
            let held = self.commit_only(front);
            if held.is_none() && front.needs_disk() {
                return;
            }
            let Some(mut batch) = self.waiting.pop_front() else {
                return;
            };
            if held.is_some() {
                batch.save.hard_state = None;
                self.held = held;
                self.held_at = self.ticks;
            }
            released.push(batch);
        }
    }

    /// The hard state of `batch` if it changes nothing but the commit index.
    fn commit_only(&self, batch: &Batch) -> Option<HardState> {
        let s = &batch.save;
        let hs = s.hard_state?;
        let only = s.snapshot.is_none()
            && s.truncate_from.is_none()
            && s.entries.is_empty()
            && batch.chunks.is_empty()
            && !batch.streamed;
        let same_vote =
            self.saved_vote == Some((hs.term, hs.vote)) || self.bugs.has(Bug::PipelineHoldsVote);
        (only && same_vote).then_some(hs)
    }

    /// Whether [`Pipeline::next_save`] has a job.
    pub fn has_save(&self) -> bool {
        !self.waiting.is_empty() || (self.flush_due && self.held.is_some())
    }

    /// The next write: the waiting batches, at most `max` of them, up to a
    /// snapshot (saved alone), merged into one save; or a held commit index
    /// alone once due. Batches it can release without a write (nothing
    /// being written, nothing to save) go to `released` instead.
    pub fn next_save(&mut self, max: usize, released: &mut Vec<Batch>) -> Option<SaveJob> {
        if self.in_flight.is_empty() {
            self.release_front(released);
        }
        let mut batches = Vec::with_capacity(self.waiting.len().min(max.max(1)));
        while batches.len() < max.max(1) {
            let Some(next) = self.waiting.front() else {
                break;
            };
            let snapshot = next.save.snapshot.is_some();
            if snapshot && !batches.is_empty() {
                break;
            }
            batches.extend(self.waiting.pop_front());
            if snapshot {
                break;
            }
        }
        if batches.is_empty() && !(self.flush_due && self.held.is_some()) {
            return None;
        }
        let mut save = Save::default();
        for b in &mut batches {
            save.merge(std::mem::take(&mut b.save));
        }
        let held = if self.bugs.has(Bug::PipelineKeepsStaleCommit) && save.hard_state.is_some() {
            None
        } else {
            self.held.take()
        };
        self.flush_due = false;
        if save.hard_state.is_none() {
            // A newer hard state has a commit index at least as high.
            save.hard_state = held;
        }
        if let Some(hs) = &save.hard_state {
            self.saved_vote = Some((hs.term, hs.vote));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.push_back(id);
        Some(SaveJob { id, save, batches })
    }

    /// `job` is durable: its batches go to `released`, in order, with the
    /// ones behind it that need no disk.
    ///
    /// # Panics
    ///
    /// If jobs come back in another order than they were handed out.
    pub fn saved(&mut self, job: SaveJob, released: &mut Vec<Batch>) {
        assert_eq!(
            self.in_flight.pop_front(),
            Some(job.id),
            "saves must complete in the order they were handed out"
        );
        released.extend(job.batches);
        if self.in_flight.is_empty() {
            self.release_front(released);
        }
    }

    /// Makes a held commit index due at once (before a shutdown).
    pub fn flush_now(&mut self) {
        self.flush_due = self.held.is_some();
    }

    /// One tick: a commit index held for `flush_after_ticks` with nothing
    /// to carry it becomes due ([`Pipeline::has_save`]).
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.held.is_some() && self.ticks >= self.held_at + self.flush_after_ticks {
            self.flush_due = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Blank,
        }
    }

    fn hs(term: u64, vote: u64, commit: u64) -> Option<HardState> {
        Some(HardState { term, vote, commit })
    }

    fn ready(hard_state: Option<HardState>, entries: Vec<Entry>, committed: Vec<Entry>) -> Ready {
        Ready {
            hard_state,
            entries,
            committed_entries: committed,
            ..Ready::default()
        }
    }

    #[test]
    fn merged_saves_have_the_effect_of_both() {
        let mut acc = Save {
            entries: vec![e(5, 1), e(6, 1), e(7, 1)],
            ..Save::default()
        };
        acc.merge(Save {
            truncate_from: Some(6),
            entries: vec![e(6, 2)],
            hard_state: hs(2, 1, 5),
            ..Save::default()
        });
        assert_eq!(acc.entries, vec![e(5, 1), e(6, 2)]);
        assert_eq!(acc.truncate_from, None);
        acc.merge(Save {
            truncate_from: Some(3),
            entries: vec![e(3, 3)],
            ..Save::default()
        });
        assert_eq!(acc.entries, vec![e(3, 3)]);
        assert_eq!(acc.truncate_from, Some(3));
        assert_eq!(acc.hard_state.map(|h| h.term), Some(2));
    }

    #[test]
    fn batches_are_released_in_order_and_only_once_durable() {
        let mut p = Pipeline::new(5, BugSet::default());
        let (mut send, mut released) = (Vec::new(), Vec::new());
        send.extend(p.push(
            ready(hs(1, 1, 0), vec![e(1, 1)], vec![]),
            false,
            &mut released,
        ));
        assert!(released.is_empty(), "released before its save");
        // Nothing to write, but behind a batch that has: waits.
        send.extend(p.push(ready(None, vec![], vec![e(1, 1)]), false, &mut released));
        assert!(released.is_empty());
        let job = p.next_save(usize::MAX, &mut released).expect("a save");
        assert_eq!(job.save.entries, vec![e(1, 1)]);
        assert_eq!(job.batches.len(), 2, "the second rides along");
        assert!(p.next_save(usize::MAX, &mut released).is_none());
        p.saved(job, &mut released);
        assert_eq!(released.len(), 2);
        assert_eq!(released[1].committed, vec![e(1, 1)]);
        assert!(p.idle());
    }

    #[test]
    fn batches_waiting_during_a_save_become_one_save_and_a_snapshot_is_saved_alone() {
        let mut p = Pipeline::new(5, BugSet::default());
        let (mut send, mut released) = (Vec::new(), Vec::new());
        send.extend(p.push(
            ready(hs(1, 1, 0), vec![e(1, 1)], vec![]),
            false,
            &mut released,
        ));
        let first = p.next_save(usize::MAX, &mut released).unwrap();
        send.extend(p.push(ready(None, vec![e(2, 1)], vec![]), false, &mut released));
        send.extend(p.push(ready(None, vec![e(3, 1)], vec![]), false, &mut released));
        let snap = Snapshot {
            meta: crate::types::SnapshotMeta {
                index: 3,
                term: 1,
                membership: Default::default(),
            },
            data: bytes::Bytes::new(),
        };
        send.extend(p.push(
            Ready {
                snapshot: Some(snap),
                ..Ready::default()
            },
            false,
            &mut released,
        ));
        send.extend(p.push(ready(None, vec![e(4, 1)], vec![]), false, &mut released));
        let second = p.next_save(usize::MAX, &mut released).unwrap();
        assert_eq!(second.save.entries, vec![e(2, 1), e(3, 1)]);
        assert_eq!(second.batches.len(), 2);
        let third = p.next_save(usize::MAX, &mut released).unwrap();
        assert!(third.save.snapshot.is_some() && third.save.entries.is_empty());
        let fourth = p.next_save(usize::MAX, &mut released).unwrap();
        assert_eq!(fourth.save.entries, vec![e(4, 1)]);
        assert_eq!(p.in_flight(), 4);
        for job in [first, second, third, fourth] {
            p.saved(job, &mut released);
        }
        assert_eq!(released.len(), 5);
    }

    #[test]
    #[should_panic(expected = "in the order")]
    fn saves_completing_out_of_order_are_refused() {
        let mut p = Pipeline::new(5, BugSet::default());
        let (mut send, mut released) = (Vec::new(), Vec::new());
        send.extend(p.push(ready(hs(1, 1, 0), vec![], vec![]), false, &mut released));
        let a = p.next_save(1, &mut released).unwrap();
        send.extend(p.push(ready(None, vec![e(1, 1)], vec![]), false, &mut released));
        let b = p.next_save(1, &mut released).unwrap();
        p.saved(b, &mut released);
        p.saved(a, &mut released);
    }

    #[test]
    fn a_commit_index_alone_is_held_rides_along_and_is_flushed_when_idle() {
        let mut p = Pipeline::new(5, BugSet::default());
        let (mut send, mut released) = (Vec::new(), Vec::new());
        // A vote is written and waited for.
        send.extend(p.push(ready(hs(1, 1, 0), vec![], vec![]), false, &mut released));
        assert!(released.is_empty());
        let job = p.next_save(usize::MAX, &mut released).unwrap();
        p.saved(job, &mut released);
        assert_eq!(released.len(), 1);
        // The commit index alone: released at once, nothing to write.
        send.extend(p.push(
            ready(hs(1, 1, 4), vec![], vec![e(4, 1)]),
            false,
            &mut released,
        ));
        assert_eq!(released.len(), 2);
        assert!(p.holds_commit());
        assert!(!p.has_save());
        // Entries carry it.
        send.extend(p.push(ready(None, vec![e(5, 1)], vec![]), false, &mut released));
        let job = p.next_save(usize::MAX, &mut released).unwrap();
        assert_eq!(job.save.hard_state, hs(1, 1, 4));
        p.saved(job, &mut released);
        assert!(!p.holds_commit());
        // A new term is never held.
        send.extend(p.push(ready(hs(2, 2, 5), vec![], vec![]), false, &mut released));
        assert!(p.has_save());
        let job = p.next_save(usize::MAX, &mut released).unwrap();
        p.saved(job, &mut released);
        // Held, then written alone once due.
        send.extend(p.push(ready(hs(2, 2, 6), vec![], vec![]), false, &mut released));
        assert!(p.holds_commit());
        for _ in 0..4 {
            p.tick();
            assert!(!p.has_save());
        }
        p.tick();
        assert!(p.has_save());
        let job = p.next_save(usize::MAX, &mut released).unwrap();
        assert_eq!(job.save.hard_state, hs(2, 2, 6));
        assert!(job.batches.is_empty());
        p.saved(job, &mut released);
        assert!(p.idle() && !p.holds_commit());
    }

    #[test]
    fn a_held_commit_index_is_dropped_once_a_newer_hard_state_is_written() {
        let mut p = Pipeline::new(5, BugSet::default());
        let (mut send, mut released) = (Vec::new(), Vec::new());
        send.extend(p.push(ready(hs(1, 1, 0), vec![], vec![]), false, &mut released));
        let job = p.next_save(usize::MAX, &mut released).unwrap();
        p.saved(job, &mut released);
        send.extend(p.push(ready(hs(1, 1, 3), vec![], vec![]), false, &mut released));
        assert!(p.holds_commit());
        // A new term with entries: its own hard state is written.
        send.extend(p.push(
            ready(hs(2, 2, 4), vec![e(5, 2)], vec![]),
            false,
            &mut released,
        ));
        let job = p.next_save(usize::MAX, &mut released).unwrap();
        assert_eq!(job.save.hard_state, hs(2, 2, 4));
        p.saved(job, &mut released);
        assert!(!p.holds_commit(), "the older commit index must not follow");
        for _ in 0..10 {
            p.tick();
        }
        assert!(!p.has_save());
    }

    #[test]
    fn reads_are_released_after_the_entries_ahead_of_them() {
        let mut p = Pipeline::new(5, BugSet::default());
        let (mut send, mut released) = (Vec::new(), Vec::new());
        send.extend(p.push(
            ready(hs(1, 1, 1), vec![e(2, 1)], vec![e(1, 1)]),
            false,
            &mut released,
        ));
        let read = ReadState { id: 7, index: 1 };
        send.extend(p.push(
            Ready {
                reads: vec![read],
                ..Ready::default()
            },
            false,
            &mut released,
        ));
        assert!(released.is_empty(), "a read went ahead of entry 1");
        let job = p.next_save(usize::MAX, &mut released).unwrap();
        p.saved(job, &mut released);
        assert_eq!(released.len(), 2);
        assert_eq!(released[0].committed, vec![e(1, 1)]);
        assert_eq!(released[1].reads, vec![read]);
    }

    #[test]
    fn messages_after_persist_wait_for_the_save() {
        let mut p = Pipeline::new(5, BugSet::default());
        let (mut send, mut released) = (Vec::new(), Vec::new());
        let m = Message {
            cluster: 1,
            from: 1,
            to: 2,
            term: 1,
            body: crate::message::Body::TimeoutNow,
        };
        send.extend(p.push(
            Ready {
                hard_state: hs(1, 1, 0),
                messages: vec![m.clone()],
                messages_after_persist: vec![m.clone()],
                ..Ready::default()
            },
            false,
            &mut released,
        ));
        assert_eq!(
            send.len(),
            1,
            "only the messages that need nothing durable left"
        );
        let job = p.next_save(usize::MAX, &mut released).unwrap();
        p.saved(job, &mut released);
        assert_eq!(released[0].after, vec![m]);
    }
}
