//! The writer thread: it owns the directory. It takes every request queued
//! since its last sync, validates and encodes the saves in order, writes
//! them with one write, syncs once, then answers them all (group commit).

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use raft_core::Snapshot;
use tokio::sync::oneshot;

use super::format::{self, segment_name, snapshot_name, SnapRef, SPARE_NAME};
use super::recovery::{self, corrupt, io_error, Failure, Replay, SegmentEnd};
use super::snapshot::SnapshotWriter;
use super::state::Store;
use super::vfs::{FileHandle, FileSystem, OpenMode};
use super::{FileStats, RecoveryReport};
use crate::persistence::{Change, IdentityMismatch, PersistenceError, Place, State};

/// An fdatasync that takes this long is logged as a warning (etcd warns
/// at one second too).
const SLOW_SYNC: Duration = Duration::from_secs(1);

/// What the writer is asked to do.
#[allow(clippy::large_enum_variant)] // loads are rare; saves are not boxed
pub(crate) enum Request {
    /// Make a change durable.
    Save {
        change: Change,
        reply: oneshot::Sender<Result<(), PersistenceError>>,
    },
    /// Read everything back.
    Load {
        reply: oneshot::Sender<Result<Option<State>, PersistenceError>>,
    },
}

/// What the writer shares with the handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub stats: Mutex<FileStats>,
    pub snapshot_path: Mutex<Option<PathBuf>>,
}

impl Shared {
    pub(crate) fn stats(&self) -> MutexGuard<'_, FileStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_snapshot_path(&self, path: Option<PathBuf>) {
        *self.snapshot_path.lock().unwrap_or_else(|e| e.into_inner()) = path;
    }
}

/// The writer's settings.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub segment_size: u64,
    pub preallocate: bool,
    pub spin: Duration,
    pub expect_node_id: Option<String>,
    pub expect_cluster: Option<String>,
}

/// Requests taken into one batch at most.
const MAX_BATCH: usize = 4096;
/// Encoded bytes that make the writer write out (without syncing) before
/// the batch ends.
const FLUSH_AT: usize = 8 << 20;

/// The segment being appended to.
#[derive(Debug)]
struct Active {
    seq: u64,
    path: PathBuf,
    file: Box<dyn FileHandle>,
    /// Where the next record goes.
    end: u64,
    /// The file's size: beyond `end`, zeros written in advance.
    capacity: u64,
    /// Holds a change (not only its checkpoint).
    changes: bool,
}

impl Active {
    fn preallocated(&self) -> bool {
        self.capacity > self.end
    }
}

/// A preallocated file being prepared in the background.
#[derive(Debug)]
struct Spare {
    thread: JoinHandle<io::Result<Box<dyn FileHandle>>>,
    cancel: Arc<AtomicBool>,
}

/// The writer: owns the directory while the store is open.
pub(crate) struct Writer {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    config: Config,
    shared: Arc<Shared>,
    store: Store,
    active: Active,
    /// The lowest segment on disk.
    first_seq: u64,
    /// Encoded changes not yet written.
    buf: BytesMut,
    /// Written but not yet synced.
    unsynced: bool,
    /// Saves waiting for the next sync.
    pending: Vec<oneshot::Sender<Result<(), PersistenceError>>>,
    /// Snapshot files on disk.
    snap_files: BTreeSet<u64>,
    next_snap_seq: u64,
    /// A snapshot marker was staged since the last commit.
    snapshot_changed: bool,
    spare: Option<Spare>,
    /// Set by the first failed write or sync: every later save fails.
    failed: Option<Failure>,
    /// When preallocation was last skipped for lack of free space (it is
    /// tried again [`SPACE_RECHECK`] later), and whether that was logged.
    low_space: Option<Instant>,
    /// Scratch space for one change's records.
    group: BytesMut,
}

impl Writer {
    /// Opens the store in `dir`: recovers what is there (cutting a torn
    /// tail), or creates a new store.
    pub(crate) fn open(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        config: Config,
        shared: Arc<Shared>,
    ) -> Result<(Writer, RecoveryReport), PersistenceError> {
        let fsr = &*fs;
        fsr.create_dir_all(&dir)
            .map_err(|e| io_error("creating", &dir, e))?;
        let mut listing = recovery::list(fsr, &dir)?;
        let mut report = RecoveryReport::default();
        for tmp in &listing.tmp {
            fsr.remove(tmp).map_err(|e| io_error("removing", tmp, e))?;
            report.removed.push(tmp.clone());
        }

        // Find the last segment that holds a checkpoint: it says where to
        // start replaying.
        let mut unborn: Vec<recovery::Unborn> = Vec::new();
        let (last_seq, last_path, last_buf, checkpoint) = loop {
            let Some((&seq, path)) = listing.segments.last_key_value() else {
                break (0, PathBuf::new(), Vec::new(), None);
            };
            let path = path.clone();
            let buf = recovery::read_file(fsr, &path)?;
            if let Some(cp) = peek_checkpoint(&buf, seq) {
                break (seq, path, buf, Some(cp));
            }
            // No valid header or checkpoint: a segment whose creation did
            // not finish, or damage (refused by the replay). It is removed
            // once the replay shows that no end record names it.
            match recovery::replay_segment(&mut None, &buf, &path, seq, true, false)? {
                SegmentEnd::Unborn(reason) => {
                    if listing.segments.len() == 1 && seq != 1 {
                        return Err(corrupt(
                            &path,
                            0,
                            format!("{reason}, and it is the only segment"),
                        ));
                    }
                    listing.segments.remove(&seq);
                    unborn.push(recovery::Unborn { seq, path, reason });
                }
                SegmentEnd::Data { .. } => {
                    return Err(corrupt(
                        &path,
                        0,
                        "internal: a segment without checkpoint replayed",
                    ))
                }
            }
        };

        let Some(checkpoint) = checkpoint else {
            // A new store.
            if let Some(&seq) = listing.snapshots.iter().next() {
                return Err(corrupt(
                    &dir.join(snapshot_name(seq)),
                    0,
                    "a snapshot file in a directory without any log segment: the segments are missing",
                ));
            }
            remove_unborn(fsr, &unborn, &mut report)?;
            let store = Store::default();
            let (file, end, capacity) =
                recovery::create_segment(fsr, &dir, 1, &store.checkpoint(1), None)
                    .map_err(PersistenceError::Io)?;
            report.created = true;
            report.first_segment = 1;
            report.last_segment = 1;
            let writer = Writer::new(
                fs.clone(),
                dir.clone(),
                config,
                shared,
                store,
                Active {
                    seq: 1,
                    path: dir.join(segment_name(1)),
                    file,
                    end,
                    capacity,
                    changes: false,
                },
                1,
                BTreeSet::new(),
                1,
            );
            writer.shared.stats().segments_created += 1;
            return Ok((writer, report));
        };

        // Replay from the first segment still needed.
        let first_kept = checkpoint.first_kept;
        let cp_at = format::SEGMENT_HEADER_LEN as u64;
        if first_kept == 0 || first_kept > last_seq {
            return Err(corrupt(
                &last_path,
                cp_at,
                format!("the checkpoint says segments from {first_kept} on are needed, but this is segment {last_seq}"),
            ));
        }
        for seq in first_kept..=last_seq {
            if !listing.segments.contains_key(&seq) {
                return Err(recovery::corrupt_in(
                    &dir.join(segment_name(seq)),
                    format!(
                        "the segment is missing: the checkpoint of {} at offset {cp_at} says every segment from {first_kept} to {last_seq} holds needed records",
                        last_path.display()
                    ),
                ));
            }
        }
        let mut replay: Option<Replay> = None;
        let mut tail = None;
        for seq in first_kept..=last_seq {
            let owned;
            let (path, buf) = if seq == last_seq {
                (&last_path, &last_buf)
            } else {
                let Some(path) = listing.segments.get(&seq) else {
                    return Err(corrupt(
                        &dir.join(segment_name(seq)),
                        0,
                        "the segment is missing",
                    ));
                };
                owned = recovery::read_file(fsr, path)?;
                (path, &owned)
            };
            match recovery::replay_segment(&mut replay, buf, path, seq, seq == last_seq, false)? {
                SegmentEnd::Data { end, torn } => {
                    if seq == last_seq {
                        tail = Some((end, torn));
                    }
                }
                SegmentEnd::Unborn(reason) => {
                    return Err(corrupt(path, 0, reason));
                }
            }
            report.segments_replayed += 1;
        }
        let (Some(replay), Some((end, torn))) = (replay, tail) else {
            return Err(corrupt(&last_path, 0, "internal: nothing replayed"));
        };
        recovery::check_continues(&replay, &dir, &unborn)?;
        recovery::check_complete(&replay, &dir)?;
        remove_unborn(fsr, &unborn, &mut report)?;
        let store = replay.store;

        // The identity the caller expects.
        if let Some(identity) = &store.identity {
            let place = || match &replay.identity_at {
                Some((p, o)) => Place {
                    path: p.clone(),
                    offset: Some(*o),
                },
                None => Place {
                    path: dir.to_path_buf(),
                    offset: None,
                },
            };
            if let Some(id) = config
                .expect_node_id
                .as_ref()
                .filter(|&id| *id != identity.id)
            {
                return Err(PersistenceError::identity(IdentityMismatch::OtherNode {
                    place: place(),
                    stored: identity.into(),
                    expected: id.clone(),
                }));
            }
            if let Some(c) = config
                .expect_cluster
                .as_ref()
                .filter(|&c| *c != identity.cluster)
            {
                return Err(PersistenceError::identity(IdentityMismatch::OtherCluster {
                    place: place(),
                    stored: identity.into(),
                    expected: c.clone(),
                }));
            }
        }

        // The latest snapshot's file.
        if let Some(snap) = &store.snapshot {
            recovery::check_snapshot_file(fsr, &dir, snap, replay.snapshot_at.as_ref())?;
        }

        // Cut a torn tail.
        let mut capacity = last_buf.len() as u64;
        if let Some((cut, reason)) = torn {
            let bytes = recovery::cut_tail(fsr, &last_path, &last_buf, cut)?;
            capacity = cut;
            tracing::warn!(file = %last_path.display(), offset = cut, bytes, %reason, "cut a torn tail off the log");
            report.torn_tail = Some(recovery::torn_tail(&last_path, cut, bytes, reason));
        }

        // Remove what is no longer needed.
        let mut removed_any = false;
        for (&seq, path) in listing.segments.range(..first_kept) {
            fsr.remove(path)
                .map_err(|e| io_error("removing", path, e))?;
            tracing::info!(file = %path.display(), seq, "removed a segment left over by an interrupted compaction");
            report.removed.push(path.clone());
            removed_any = true;
        }
        let current = store.snapshot.as_ref().map(|s| s.seq);
        for &seq in &listing.snapshots {
            if Some(seq) != current {
                let path = dir.join(snapshot_name(seq));
                fsr.remove(&path)
                    .map_err(|e| io_error("removing", &path, e))?;
                report.removed.push(path);
                removed_any = true;
            }
        }
        if removed_any {
            fsr.sync_dir(&dir)
                .map_err(|e| io_error("syncing", &dir, e))?;
        }

        // What an earlier run wrote and never synced (it crashed first) is
        // read back from the page cache like the rest, and this store now
        // reports it as saved: make it durable before anything is built on
        // it, or a power loss could still drop it (an end record of a
        // segment before the last, say, or the entries of the last).
        for seq in first_kept..last_seq {
            if let Some(path) = listing.segments.get(&seq) {
                fsr.open(path, OpenMode::Write)
                    .and_then(|mut f| f.sync_data())
                    .map_err(|e| io_error("syncing what an earlier run left in", path, e))?;
            }
        }
        let mut file = fsr
            .open(&last_path, OpenMode::Write)
            .map_err(|e| io_error("opening", &last_path, e))?;
        file.sync_data()
            .map_err(|e| io_error("syncing what an earlier run left in", &last_path, e))?;
        let next_snap_seq = listing
            .snapshots
            .iter()
            .copied()
            .chain(current)
            .max()
            .unwrap_or(0)
            + 1;
        report.first_segment = first_kept;
        report.last_segment = last_seq;
        let writer = Writer::new(
            fs.clone(),
            dir.clone(),
            config,
            shared,
            store,
            Active {
                seq: last_seq,
                path: last_path,
                file,
                end,
                capacity,
                changes: true,
            },
            first_kept,
            current.into_iter().collect(),
            next_snap_seq,
        );
        {
            let mut stats = writer.shared.stats();
            stats.torn_tails_cut += u64::from(report.torn_tail.is_some());
        }
        Ok((writer, report))
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        config: Config,
        shared: Arc<Shared>,
        store: Store,
        active: Active,
        first_seq: u64,
        snap_files: BTreeSet<u64>,
        next_snap_seq: u64,
    ) -> Writer {
        let snapshot_path = store
            .snapshot
            .as_ref()
            .map(|s| dir.join(snapshot_name(s.seq)));
        shared.set_snapshot_path(snapshot_path);
        shared.stats().active_preallocated = active.preallocated();
        let mut writer = Writer {
            fs,
            dir,
            config,
            shared,
            store,
            active,
            first_seq,
            buf: BytesMut::with_capacity(64 << 10),
            unsynced: false,
            pending: Vec::new(),
            snap_files,
            next_snap_seq,
            snapshot_changed: false,
            spare: None,
            failed: None,
            low_space: None,
            group: BytesMut::with_capacity(4 << 10),
        };
        writer.start_spare();
        writer
    }

    /// Serves requests until every handle is gone.
    pub(crate) fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Some(first) = self.next_request(&rx) {
            self.handle(first);
            let mut taken = 1;
            while taken < MAX_BATCH && self.buf.len() < FLUSH_AT {
                match rx.try_recv() {
                    Ok(request) => {
                        self.handle(request);
                        taken += 1;
                    }
                    Err(_) => break,
                }
            }
            self.commit();
            self.idle_work();
        }
        self.commit();
        self.stop_spare();
    }

    /// The next request: spins a little before sleeping (a request that
    /// comes right after a sync is then taken without a wake-up).
    fn next_request(&self, rx: &mpsc::Receiver<Request>) -> Option<Request> {
        if !self.config.spin.is_zero() {
            let start = Instant::now();
            loop {
                match rx.try_recv() {
                    Ok(r) => return Some(r),
                    Err(mpsc::TryRecvError::Disconnected) => return None,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                if start.elapsed() >= self.config.spin {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        rx.recv().ok()
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Save { change, reply } => match self.stage(change) {
                Ok(()) => self.pending.push(reply),
                Err(e) => {
                    {
                        let mut stats = self.shared.stats();
                        if matches!(e, PersistenceError::Io(..)) {
                            stats.failed_saves += 1;
                        } else {
                            stats.rejected_saves += 1;
                        }
                    }
                    let _ = reply.send(Err(e));
                }
            },
            Request::Load { reply } => {
                self.commit();
                let _ = reply.send(self.load());
            }
        }
    }

    /// Records the first failure; returns the error every save gets.
    fn fail(&mut self, failure: Failure) -> PersistenceError {
        let failed = self.failed.get_or_insert_with(|| {
            let failure = failure.fail_stop();
            tracing::error!(dir = %self.dir.display(), kind = ?failure.kind(), "{failure}");
            failure
        });
        PersistenceError::Io(failed.clone())
    }

    /// Validates and encodes one save; it is durable at the next commit.
    fn stage(&mut self, change: Change) -> Result<(), PersistenceError> {
        if let Some(failed) = &self.failed {
            return Err(PersistenceError::Io(failed.clone()));
        }
        self.store.validate(&change)?;

        // The records of the change, the last one flagged.
        let write_identity = self.store.identity.is_none() && change.identity.is_some();
        let snap = change.snapshot.as_ref().map(|s| SnapRef {
            seq: self.next_snap_seq,
            data_len: s.data.len() as u64,
            meta: s.meta.clone(),
        });
        let last_after_snapshot = self
            .store
            .log
            .last_index()
            .max(snap.as_ref().map_or(0, |s| s.meta.index));
        let truncate = change.truncate_from.filter(|&f| f <= last_after_snapshot);
        let hard_state = change.hard_state.filter(|h| *h != self.store.hard_state);
        let mut group = std::mem::take(&mut self.group);
        group.clear();
        let mut last_record = None;
        if let Some(identity) = change.identity.as_ref().filter(|_| write_identity) {
            last_record = Some(format::put_identity_record(&mut group, identity));
        }
        if let Some(s) = &snap {
            last_record = Some(format::put_snapshot_record(&mut group, s));
        }
        if let Some(from) = truncate {
            last_record = Some(format::put_truncate_record(&mut group, from));
        }
        if !change.entries.is_empty() {
            last_record = Some(format::put_entries_records(&mut group, &change.entries));
        }
        if let Some(h) = &hard_state {
            last_record = Some(format::put_hard_state_record(&mut group, h));
        }
        let Some(last_record) = last_record else {
            // Nothing to write (an empty change, or one that changes
            // nothing): answered with the batch.
            self.group = group;
            return Ok(());
        };
        format::mark_end_of_change(&mut group, last_record);

        let result = self.stage_group(&change, snap, &group);
        self.group = group;
        result
    }

    fn stage_group(
        &mut self,
        change: &Change,
        snap: Option<SnapRef>,
        group: &[u8],
    ) -> Result<(), PersistenceError> {
        // The snapshot's file is durable before its marker is written.
        if let (Some(s), Some(snapshot)) = (&snap, &change.snapshot) {
            self.write_snapshot_file(s, snapshot)
                .map_err(|f| self.fail(f))?;
            self.next_snap_seq += 1;
            self.snap_files.insert(s.seq);
            self.snapshot_changed = true;
        }
        // A change goes whole into one segment.
        let size = self.active.end + self.buf.len() as u64 + group.len() as u64;
        if self.active.changes && size > self.config.segment_size {
            let spare = self.take_spare();
            self.rotate(spare).map_err(|f| self.fail(f))?;
        }
        self.buf.extend_from_slice(group);
        self.active.changes = true;
        if self.buf.len() >= FLUSH_AT {
            self.write_buf().map_err(|f| self.fail(f))?;
        }
        self.store.apply(change, snap, self.active.seq);
        self.shared.stats().entries_written += change.entries.len() as u64;
        Ok(())
    }

    fn write_snapshot_file(&mut self, s: &SnapRef, snapshot: &Snapshot) -> Result<(), Failure> {
        let path = self.dir.join(snapshot_name(s.seq));
        let what = |w: &'static str| {
            let path = &path;
            move |e| Failure::new(w, path, e)
        };
        let mut w = SnapshotWriter::create(&*self.fs, &path, &s.meta, s.data_len)
            .map_err(what("creating snapshot file"))?;
        w.write(&snapshot.data)
            .map_err(what("writing snapshot file"))?;
        w.finish(&*self.fs, &self.dir)
            .map_err(what("syncing and renaming snapshot file"))?;
        self.shared.stats().snapshots_written += 1;
        Ok(())
    }

    /// Writes the encoded changes to the active segment (no sync).
    fn write_buf(&mut self) -> Result<(), Failure> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = self.buf.len() as u64;
        let result = self.active.file.write_at(self.active.end, &self.buf);
        self.buf.clear();
        if let Err(e) = result {
            return Err(
                Failure::new(format!("writing {len} bytes to"), &self.active.path, e)
                    .at_offset(self.active.end),
            );
        }
        self.active.end += len;
        self.active.capacity = self.active.capacity.max(self.active.end);
        self.unsynced = true;
        self.shared.stats().bytes_written += len;
        Ok(())
    }

    /// Syncs what was written to the active segment; warns if that took
    /// [`SLOW_SYNC`] or longer.
    fn sync(&mut self) -> Result<(), Failure> {
        if !self.unsynced {
            return Ok(());
        }
        let started = Instant::now();
        self.active
            .file
            .sync_data()
            .map_err(|e| Failure::new("fdatasync of", &self.active.path, e))?;
        let took = started.elapsed();
        if took >= SLOW_SYNC {
            // Every write of this node waited that long: the disk, not
            // Raft, is what a stall of the cluster then comes from.
            tracing::warn!(file = %self.active.path.display(), seconds = took.as_secs_f64(), "slow fdatasync: the disk held every write back");
        }
        self.unsynced = false;
        self.shared.stats().syncs += 1;
        Ok(())
    }

    /// Writes and syncs the staged saves, then answers them.
    fn commit(&mut self) {
        if self.pending.is_empty() && self.buf.is_empty() && !self.unsynced {
            return;
        }
        let result = match &self.failed {
            Some(failed) => Err(PersistenceError::Io(failed.clone())),
            None => self
                .write_buf()
                .and_then(|()| self.sync())
                .map_err(|f| self.fail(f)),
        };
        if result.is_ok() {
            self.start_spare();
        }
        if result.is_ok() && self.snapshot_changed {
            // The new marker is durable: the older files can go.
            self.snapshot_changed = false;
            self.remove_old_snapshots();
        }
        let replies = std::mem::take(&mut self.pending);
        {
            let mut stats = self.shared.stats();
            match &result {
                Ok(()) => {
                    stats.saves += replies.len() as u64;
                    stats.commits += 1;
                }
                Err(_) => stats.failed_saves += replies.len() as u64,
            }
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }

    /// Once the latest snapshot's marker is durable, the older files go.
    fn remove_old_snapshots(&mut self) {
        let Some(current) = self.store.snapshot.as_ref().map(|s| s.seq) else {
            return;
        };
        self.shared
            .set_snapshot_path(Some(self.dir.join(snapshot_name(current))));
        let old: Vec<u64> = self.snap_files.range(..current).copied().collect();
        for seq in &old {
            let path = self.dir.join(snapshot_name(*seq));
            match self.fs.remove(&path) {
                Ok(()) => self.shared.stats().snapshots_deleted += 1,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove an old snapshot file")
                }
            }
            self.snap_files.remove(seq);
        }
        // No directory sync: an old file that comes back after a crash is
        // named by no marker and removed on open.
    }

    /// Starts the next segment (from `spare` if given): the active one is
    /// written and synced first; segments no longer needed are removed
    /// once the new one is durable.
    fn rotate(&mut self, spare: Option<Box<dyn FileHandle>>) -> Result<(), Failure> {
        self.write_buf()?;
        self.sync()?;
        let seq = self.active.seq + 1;
        let first_kept = self
            .store
            .log
            .runs()
            .first()
            .map_or(seq, |r| r.segment)
            .max(self.first_seq)
            .min(seq);
        let checkpoint = self.store.checkpoint(first_kept);
        let spare = spare.map(|f| (f, self.dir.join(SPARE_NAME)));
        let (file, end, capacity) =
            recovery::create_segment(&*self.fs, &self.dir, seq, &checkpoint, spare)?;
        // Now that the new segment is durable, the old one says so: a log
        // that stops before it is then known to be cut short.
        self.close_active(seq, checkpoint.last)?;
        self.active = Active {
            seq,
            path: self.dir.join(segment_name(seq)),
            file,
            end,
            capacity,
            changes: false,
        };
        {
            let mut stats = self.shared.stats();
            stats.segments_created += 1;
            stats.active_preallocated = self.active.preallocated();
        }
        // No directory sync after the removals: a segment that comes back
        // after a crash is below the first one the new checkpoint keeps,
        // and removed on open.
        while self.first_seq < first_kept {
            let path = self.dir.join(segment_name(self.first_seq));
            match self.fs.remove(&path) {
                Ok(()) => self.shared.stats().segments_deleted += 1,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot remove a compacted segment")
                }
            }
            self.first_seq += 1;
        }
        self.start_spare();
        Ok(())
    }

    /// Appends the end record to the active segment, naming `next_seq`
    /// (already durable) and the log's last entry, and syncs it.
    fn close_active(&mut self, next_seq: u64, last: (u64, u64)) -> Result<(), Failure> {
        let mut record = BytesMut::with_capacity(format::SEGMENT_END_RECORD_LEN);
        format::put_segment_end(&mut record, &format::SegmentEnd { next_seq, last });
        let a = &mut self.active;
        a.file
            .write_at(a.end, &record)
            .map_err(|e| Failure::new("writing the end record of", &a.path, e).at_offset(a.end))?;
        a.file
            .sync_data()
            .map_err(|e| Failure::new("fdatasync of", &a.path, e))?;
        a.end += record.len() as u64;
        let mut stats = self.shared.stats();
        stats.bytes_written += record.len() as u64;
        stats.syncs += 1;
        Ok(())
    }

    /// Between batches: move to a preallocated segment as soon as one is
    /// ready, if the active one is not preallocated.
    fn idle_work(&mut self) {
        if self.failed.is_some() || self.active.preallocated() {
            return;
        }
        if let Some(spare) = self.take_spare() {
            if let Err(f) = self.rotate(Some(spare)) {
                self.fail(f);
            }
        }
    }

    /// Starts preparing the next segment in the background, once the
    /// active one is half full (so an idle store holds no more than its
    /// data, and the spare is usually ready when the active segment fills),
    /// and only if the file system keeps at least a segment's worth of free
    /// space after it: preallocation never takes the last free space.
    fn start_spare(&mut self) {
        if !self.config.preallocate || self.spare.is_some() || self.failed.is_some() {
            return;
        }
        let size = self.config.segment_size;
        if self.active.end + self.buf.len() as u64 <= size / 2 {
            return;
        }
        if self
            .low_space
            .is_some_and(|at| at.elapsed() < SPACE_RECHECK)
        {
            return;
        }
        let needed = size.saturating_mul(2);
        match self.fs.available_space(&self.dir) {
            Ok(Some(free)) if free < needed => {
                if self.low_space.is_none() {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        free_bytes = free,
                        segment_size = size,
                        "not preallocating the next segment: it would leave less than a segment's size free on the file system (the log goes on appending to segments that grow as they are written)"
                    );
                }
                self.low_space = Some(Instant::now());
                self.shared.stats().preallocations_skipped += 1;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot tell the free space: not preallocating");
                self.low_space = Some(Instant::now());
                return;
            }
        }
        if self.low_space.take().is_some() {
            tracing::info!(dir = %self.dir.display(), "free space is back: preallocating the next segment again");
        }
        let fs = self.fs.clone();
        let path = self.dir.join(SPARE_NAME);
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("raft-wal-prealloc".into())
            .spawn(move || {
                let spare = prepare_spare(&*fs, &path, size, &stop);
                if spare.is_ok() {
                    shared.stats().spares_prepared += 1;
                }
                spare
            });
        match spawned {
            Ok(thread) => self.spare = Some(Spare { thread, cancel }),
            Err(e) => tracing::warn!(error = %e, "cannot start the preallocation thread"),
        }
    }

    fn take_spare(&mut self) -> Option<Box<dyn FileHandle>> {
        if !self.spare.as_ref()?.thread.is_finished() {
            return None;
        }
        let spare = self.spare.take()?;
        match spare.thread.join() {
            Ok(Ok(file)) => Some(file),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "preallocating the next segment failed");
                let _ = self.fs.remove(&self.dir.join(SPARE_NAME));
                None
            }
            Err(_) => None,
        }
    }

    fn stop_spare(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.cancel.store(true, Ordering::Relaxed);
            let _ = spare.thread.join();
        }
    }

    /// Reads everything back from the segments and the snapshot file.
    fn load(&mut self) -> Result<Option<State>, PersistenceError> {
        if let Some(failed) = &self.failed {
            return Err(PersistenceError::Io(failed.clone()));
        }
        let fs = &*self.fs;
        let mut replay: Option<Replay> = None;
        for seq in self.first_seq..=self.active.seq {
            let path = self.dir.join(segment_name(seq));
            let buf = recovery::read_file(fs, &path)?;
            match recovery::replay_segment(&mut replay, &buf, &path, seq, false, true)? {
                SegmentEnd::Data { end, .. } => {
                    if seq == self.active.seq && end != self.active.end {
                        return Err(corrupt(
                            &path,
                            end,
                            format!(
                                "the segment's records end here, but the store wrote up to offset {}",
                                self.active.end
                            ),
                        ));
                    }
                }
                SegmentEnd::Unborn(reason) => return Err(corrupt(&path, 0, reason)),
            }
        }
        let Some(replay) = replay else {
            return Err(recovery::corrupt_in(&self.dir, "no segment to load"));
        };
        recovery::check_complete(&replay, &self.dir)?;
        let (a, b) = (&replay.store, &self.store);
        if a.identity != b.identity
            || a.hard_state != b.hard_state
            || a.snapshot != b.snapshot
            || a.log.base() != b.log.base()
            || a.log.last_index() != b.log.last_index()
        {
            return Err(recovery::corrupt_in(
                &self.dir,
                "the segments do not hold what this store wrote (were they changed behind its back?)",
            ));
        }
        self.shared.stats().loads += 1;
        let Some(identity) = replay.store.identity else {
            return Ok(None);
        };
        let snapshot = match &replay.store.snapshot {
            Some(s) => {
                let mut reader =
                    recovery::check_snapshot_file(fs, &self.dir, s, replay.snapshot_at.as_ref())?;
                Some(Snapshot {
                    meta: s.meta.clone(),
                    data: reader.read_all()?,
                })
            }
            None => None,
        };
        let base = replay.store.log.base().0;
        let entries = replay
            .entries
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.index > base)
            .collect();
        Ok(Some(State {
            identity,
            hard_state: replay.store.hard_state,
            snapshot,
            entries,
        }))
    }
}

/// Removes the segments whose creation did not finish (found on open).
fn remove_unborn(
    fs: &dyn FileSystem,
    unborn: &[recovery::Unborn],
    report: &mut RecoveryReport,
) -> Result<(), PersistenceError> {
    for u in unborn {
        tracing::warn!(file = %u.path.display(), reason = %u.reason, "removing a segment whose creation did not finish");
        fs.remove(&u.path)
            .map_err(|e| io_error("removing", &u.path, e))?;
        report.removed.push(u.path.clone());
    }
    Ok(())
}

/// The checkpoint at the start of a segment, if its header and checkpoint
/// are valid.
fn peek_checkpoint(buf: &[u8], seq: u64) -> Option<format::Checkpoint> {
    if format::check_segment_header(buf) != Ok(seq) {
        return None;
    }
    match format::read_frame(buf, format::SEGMENT_HEADER_LEN) {
        format::Frame::Record {
            kind: format::kind::CHECKPOINT,
            end: true,
            payload,
            ..
        } => format::get_checkpoint(payload).ok(),
        _ => None,
    }
}

/// Preallocation writes zeros in chunks of this size, each synced on its
/// own, with a pause after each: the log's syncs then never queue behind a
/// large write-back.
const SPARE_CHUNK: usize = 256 << 10;
/// The pause after each chunk.
const SPARE_PAUSE: Duration = Duration::from_millis(1);
/// After preallocation was skipped for lack of free space, the free space
/// is looked at again after this long (not at every commit).
const SPACE_RECHECK: Duration = Duration::from_secs(5);

/// Writes a file of `size` zeros and syncs it: the next segment, whose
/// blocks are then allocated (appends to it need no metadata update).
fn prepare_spare(
    fs: &dyn FileSystem,
    path: &Path,
    size: u64,
    cancel: &AtomicBool,
) -> io::Result<Box<dyn FileHandle>> {
    let mut file = fs.open(path, OpenMode::Create)?;
    let zeros = vec![0u8; SPARE_CHUNK];
    let mut offset = 0u64;
    while offset < size {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "preallocation cancelled",
            ));
        }
        let n = (zeros.len() as u64).min(size - offset) as usize;
        file.write_at(offset, &zeros[..n])?;
        file.sync_data()?;
        offset += n as u64;
        std::thread::sleep(SPARE_PAUSE);
    }
    file.sync_all()?;
    Ok(file)
}
