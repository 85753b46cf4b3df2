//! A [`Persistence`] in a directory: a segmented write-ahead log with group
//! commit, and snapshot files.
//!
//! Nothing acknowledged is lost, damage is detected and reported (never
//! silently dropped), and the cost of durability (one `fdatasync`) is paid
//! once per batch of concurrent saves, not once per save.
//!
//! ```no_run
//! # async fn demo() -> Result<(), raft_node::PersistenceError> {
//! use raft_node::persistence::file::FilePersistence;
//! use raft_node::Persistence;
//!
//! let store = FilePersistence::open("/var/lib/my-node/raft").await?;
//! let state = store.load().await?; // None for a new store
//! # let _ = state; Ok(()) }
//! ```
//!
//! # Files
//!
//! ```text
//! dir/segment-00000000000000000007.wal    log segments, numbered without gaps
//! dir/segment-00000000000000000008.wal    (the last one is appended to)
//! dir/snapshot-00000000000000000003.snap  the latest snapshot
//! dir/segment-spare.tmp                   the next segment, being preallocated
//! dir/*.tmp                               files being written (removed on open)
//! ```
//!
//! # Segments and records
//!
//! A segment starts with a 32-byte header (magic `RAFTWAL\0`, format
//! version, its sequence number, a crc32c of the header) followed by
//! records. Version 2 segments may end with a segment end record; version 1
//! segments (written before it existed) are read as before, and a store
//! written by this version is refused by older ones (unknown format
//! version). The records:
//!
//! ```text
//! len u32 | crc u32 | type u8 | payload (len bytes) | 0xA5
//! ```
//!
//! `crc` is the crc32c of `len`, `type` and the payload. The trailer byte
//! `0xA5` is never zero, so a record whose write did not finish in a
//! preallocated (zero-filled) segment always ends in a zero byte. The type's
//! low 7 bits say what the record holds; its top bit marks the last record
//! of a change. Integers are little-endian; entries, hard states, snapshot
//! metadata and identities are encoded by [`codec`](crate::codec).
//!
//! | type | payload |
//! |---|---|
//! | 1 checkpoint | first segment still needed, identity?, hard state, snapshot marker?, last index and term of the log |
//! | 2 identity | the node's identity (in the first change) |
//! | 3 snapshot marker | snapshot file number, data size, snapshot metadata (index, term, membership) |
//! | 4 truncation | the first index dropped |
//! | 5 entries | first index, count, then per entry its length and encoding |
//! | 6 hard state | term, vote, commit |
//! | 7 segment end | the next segment's number, last index and term of the log |
//!
//! A change (one [`Change`] given to `save`) is written as consecutive
//! records in one segment, in the order it applies: identity, snapshot
//! marker, truncation, entries, hard state (parts that change nothing are
//! left out; an empty change writes nothing). Recovery applies a change only
//! when its last record (the flagged one) is read, so a change is durable
//! whole or not at all.
//!
//! Every segment starts with a checkpoint (a change of its own): the state
//! when the segment was created, all but the entries. Replay can start at
//! any segment from the first one still needed; each later checkpoint must
//! match the state replayed up to it (this detects a lost or damaged tail
//! of an earlier segment).
//!
//! A segment takes changes until the next one would take it past
//! [`FileOptions::segment_size`] (a single change larger than that gets a
//! segment of its own). The next segment is written under a temporary name
//! with its header and checkpoint, synced, renamed, and the directory
//! synced, before anything is written to it; then the segment left gets its
//! end record (a change of its own, synced), which names the new segment
//! and the log's last entry. So a log that stops at a segment with an end
//! record was cut short: its newest segments were deleted or emptied. With
//! [`FileOptions::preallocate`] a background thread fills the next segment
//! with zeros in advance (a real allocation, not a sparse file), gently: in
//! 256 KiB chunks, each synced, with a pause after each, so the log's syncs
//! never queue behind a large write-back. Writes then overwrite allocated
//! blocks and `fdatasync` needs no metadata update. The next segment is
//! prepared only once the active one is half full, so an idle store takes
//! about as much space as its data (not two whole segments), and only if
//! the file system keeps at least a segment's size free after it
//! (`statvfs`): preallocation never takes the last free space, and when it
//! is skipped a warning says so and the log goes on in segments that grow
//! as they are written. A store whose active segment is not preallocated
//! moves to a preallocated one as soon as one is ready.
//!
//! # Group commit
//!
//! One writer thread owns the directory. [`Persistence::save`] (or
//! [`FilePersistence::submit`]) queues the change on a channel and waits for
//! its answer. The writer takes every request queued since its last sync,
//! in order; validates each against the state left by the ones before it
//! (by the rules of [`MemoryPersistence`](crate::MemoryPersistence); a
//! refused change is answered at once and writes nothing); encodes the
//! valid ones into one buffer; writes it with one write; calls
//! `fdatasync` once; then answers them all. While it syncs, new requests
//! queue up for the next batch, so throughput grows with the number of
//! concurrent writers. Between batches it spins for
//! [`FileOptions::spin`] before sleeping, to take the next request without
//! a wake-up. Nothing blocks the async executor: `save` only sends on a
//! channel and awaits a oneshot.
//!
//! # Truncation and compaction
//!
//! A truncation is a record: replay drops the entries at and above its
//! index, whichever segments hold them. The space is reclaimed by
//! compaction: when the writer starts a new segment, its checkpoint records
//! the first segment that still holds a live entry (an entry above the
//! latest snapshot); once the new segment is durable, the segments below it
//! are removed (in order, then the directory is synced). On open, segments
//! below the number the last checkpoint records are left-overs of an
//! interrupted compaction and are removed.
//!
//! # Snapshots
//!
//! A snapshot is written to its own file (`snapshot-N.snap`, format in
//! [`SnapshotReader`]: header with the metadata and a crc, the data, a
//! footer with the data's crc) under a temporary name, synced, renamed, and
//! the directory synced; only then is its marker record written to the log.
//! The latest marker names the file [`load`](Persistence::load) returns;
//! older snapshot files are removed once the new marker is durable, and a
//! file no marker names (a crash between the file and its marker) is
//! removed on open. [`FilePersistence::snapshot_path`] gives the current
//! file, which [`SnapshotReader`] reads by ranges (its metadata at once,
//! its data in chunks), so a snapshot can be streamed without being loaded
//! whole.
//!
//! # Recovery rules (on open)
//!
//! 1. Temporary files are removed.
//! 2. The last segment's checkpoint says which segment replay starts from;
//!    every segment from there to the last must be present: a gap in the
//!    numbering is an error naming the missing file. So is a log whose
//!    last segment ends with an end record: the segment it names (and any
//!    later one) is missing or damaged, and the error names it and the
//!    first index lost. A hard state whose commit index is beyond the log
//!    is refused too (saves never write one).
//! 3. Segments are replayed in order. Any damage (a bad checksum, a
//!    malformed record, a change without its last record, a checkpoint that
//!    does not match) in a segment that is not the last is an error naming
//!    the file and offset, but for an unfinished end record at its very end
//!    (a crash while the writer closed it; the next segment's checkpoint
//!    vouches for what is before it).
//! 4. In the last segment, a bad record is a *torn tail* (the unfinished
//!    last write of a crash) only if it is incomplete — the file ends inside
//!    it, or its trailer is zero (unwritten space of a preallocated
//!    segment), or zeros stand where its header should be — and no valid
//!    record can be found anywhere after it, and it is not a complete record
//!    with a damaged length (the file's last non-zero byte is a trailer and
//!    the record checks out with the length that implies). A torn tail is cut off at the
//!    start of the change it belongs to (the file is truncated there, an
//!    atomic change, and synced; the writer then moves on to a new
//!    preallocated segment as soon as one is ready), logged with
//!    `tracing::warn!`, and reported in [`FilePersistence::recovery`] and
//!    [`FileStats::torn_tails_cut`]. A complete record with a bad checksum,
//!    or damage followed by valid records, is an error naming the file and
//!    offset: what follows it may have been acknowledged.
//! 5. A last segment without a valid header and checkpoint, and nothing
//!    valid after them, is one whose creation did not finish: it is
//!    removed (unless the segment before names it in an end record: then
//!    it was emptied, and the open refuses).
//! 6. The latest snapshot marker's file must exist and match the marker.
//! 7. With [`FileOptions::expect_node_id`] / [`FileOptions::expect_cluster`]
//!    the stored identity must match, else the open fails with
//!    [`PersistenceError::Identity`] naming where the identity was read.
//!
//! Limits: damage at the very end of the last segment that looks exactly
//! like an unfinished write (e.g. the last bytes of the last record zeroed)
//! is taken for one; a crash that persisted
//! the later sectors of a write but not the earlier ones (a disk that
//! reorders its writes) makes the open refuse, which is safe but needs a
//! person.
//!
//! # Fail-stop
//!
//! If a write or a sync fails (including `ENOSPC`), the store cannot know
//! what reached the disk (after a failed `fsync`, the kernel may have
//! dropped the dirty pages): the saves of that batch, and every later save
//! and load, fail with [`PersistenceError::Io`] carrying that first
//! failure ([`IoFailure`]: the [`std::io::ErrorKind`], `StorageFull` for a
//! full disk, the file, the offset and what was being done). The node then
//! stops acknowledging; reopening the directory recovers what is durable.
//!
//! # Faults
//!
//! Every file operation goes through [`FileSystem`] / [`FileHandle`]
//! ([`StdFs`] by default, set with [`FileOptions::fs`]). [`FaultFs`] injects
//! torn writes, failing syncs and a full disk for tests.
//!
//! The store does not lock its directory: open it from one process at a
//! time.

mod fault;
mod format;
mod recovery;
mod snapshot;
mod state;
mod vfs;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;

pub use fault::{FaultCounts, FaultFs};
pub use snapshot::SnapshotReader;
pub use vfs::{FileHandle, FileSystem, OpenMode, StdFs};

use super::{Change, IoFailure, Persistence, PersistenceError, State};
use writer::{Config, Request, Shared, Writer};

/// The default size of a segment: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// How a [`FilePersistence`] is opened.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// A segment takes changes until the next one would take it past this
    /// size (default [`DEFAULT_SEGMENT_SIZE`]; at least 4 KiB).
    pub segment_size: u64,
    /// Fill the next segment with zeros in advance, in a background thread
    /// (default true): appends then cost one `fdatasync` of data only.
    pub preallocate: bool,
    /// How long the writer spins for the next request after a batch before
    /// sleeping (default 50 µs; zero: never spin).
    pub spin: Duration,
    /// Refuse to open a store that belongs to another node.
    pub expect_node_id: Option<String>,
    /// Refuse to open a store that belongs to another cluster.
    pub expect_cluster: Option<String>,
    /// The file layer (default [`StdFs`]; [`FaultFs`] in tests).
    pub fs: Arc<dyn FileSystem>,
}

impl Default for FileOptions {
    fn default() -> FileOptions {
        FileOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            preallocate: true,
            spin: Duration::from_micros(50),
            expect_node_id: None,
            expect_cluster: None,
            fs: Arc::new(StdFs),
        }
    }
}

impl FileOptions {
    /// Sets [`FileOptions::segment_size`].
    pub fn segment_size(mut self, bytes: u64) -> FileOptions {
        self.segment_size = bytes;
        self
    }

    /// Sets [`FileOptions::preallocate`].
    pub fn preallocate(mut self, preallocate: bool) -> FileOptions {
        self.preallocate = preallocate;
        self
    }

    /// Sets [`FileOptions::spin`].
    pub fn spin(mut self, spin: Duration) -> FileOptions {
        self.spin = spin;
        self
    }

    /// Sets [`FileOptions::expect_node_id`] and
    /// [`FileOptions::expect_cluster`].
    pub fn expect_identity(mut self, node_id: &str, cluster: &str) -> FileOptions {
        self.expect_node_id = Some(node_id.to_owned());
        self.expect_cluster = Some(cluster.to_owned());
        self
    }

    /// Sets [`FileOptions::fs`].
    pub fn fs(mut self, fs: Arc<dyn FileSystem>) -> FileOptions {
        self.fs = fs;
        self
    }
}

/// What a [`FilePersistence`] did since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Saves acknowledged (including empty changes).
    pub saves: u64,
    /// Saves refused as invalid or of another identity.
    pub rejected_saves: u64,
    /// Saves failed with [`PersistenceError::Io`].
    pub failed_saves: u64,
    /// Batches written and answered (group commits).
    pub commits: u64,
    /// `fdatasync`s of segments.
    pub syncs: u64,
    /// Bytes written to segments (records only).
    pub bytes_written: u64,
    /// Log entries written.
    pub entries_written: u64,
    /// Segments created (the first one of a new store included).
    pub segments_created: u64,
    /// Segments removed by compaction.
    pub segments_deleted: u64,
    /// Snapshot files written.
    pub snapshots_written: u64,
    /// Old snapshot files removed.
    pub snapshots_deleted: u64,
    /// Successful loads.
    pub loads: u64,
    /// Torn tails cut on open (0 or 1).
    pub torn_tails_cut: u64,
    /// The segment being appended to is preallocated (as of the last
    /// segment change).
    pub active_preallocated: bool,
    /// Preallocated segments made ready by the background thread.
    pub spares_prepared: u64,
    /// Times the next segment was not preallocated because the file system
    /// would have been left with less than a segment's size free.
    pub preallocations_skipped: u64,
}

/// A torn tail cut off on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub file: PathBuf,
    /// Where it was cut (the start of the unfinished change).
    pub offset: u64,
    /// Non-zero bytes dropped.
    pub bytes: u64,
    /// What was found there.
    pub reason: String,
}

/// What opening the store found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The directory held no store: a new one was created.
    pub created: bool,
    /// Segments replayed.
    pub segments_replayed: u64,
    /// The first segment kept.
    pub first_segment: u64,
    /// The last segment (appended to).
    pub last_segment: u64,
    /// The torn tail cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Files removed: temporary files, segments left over by an interrupted
    /// compaction, snapshot files no marker names, a segment whose creation
    /// did not finish.
    pub removed: Vec<PathBuf>,
}

/// A [`Persistence`] in a directory; see the [module documentation](self)
/// for the design.
///
/// Dropping it waits for the writer thread to finish the batch in hand.
#[derive(Debug)]
pub struct FilePersistence {
    dir: PathBuf,
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    recovery: RecoveryReport,
}

impl FilePersistence {
    /// Opens (or creates) the store in `dir` with the default options.
    pub async fn open(dir: impl AsRef<Path>) -> Result<FilePersistence, PersistenceError> {
        FilePersistence::open_with(dir, FileOptions::default()).await
    }

    /// Opens (or creates) the store in `dir`: recovers what is there (see
    /// the recovery rules in the module documentation) on the store's own
    /// thread.
    ///
    /// Errors: [`PersistenceError::Corrupt`] for damage that is not a torn
    /// tail (naming the file and offset), [`PersistenceError::Identity`]
    /// for a store of another node or cluster, [`PersistenceError::Io`]
    /// when the directory cannot be read or written.
    pub async fn open_with(
        dir: impl AsRef<Path>,
        options: FileOptions,
    ) -> Result<FilePersistence, PersistenceError> {
        let dir = dir.as_ref().to_owned();
        let config = Config {
            segment_size: options.segment_size.max(4096),
            preallocate: options.preallocate,
            spin: options.spin,
            expect_node_id: options.expect_node_id,
            expect_cluster: options.expect_cluster,
        };
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let (opened_tx, opened_rx) = oneshot::channel();
        let (fs, thread_dir, thread_shared) = (options.fs, dir.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("raft-wal".into())
            .spawn(
                move || match Writer::open(fs, thread_dir, config, thread_shared) {
                    Ok((writer, report)) => {
                        let _ = opened_tx.send(Ok(report));
                        writer.run(rx);
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                    }
                },
            )
            .map_err(|e| PersistenceError::io("starting the writer thread of", &dir, e))?;
        let opened = opened_rx.await.unwrap_or_else(|_| {
            Err(PersistenceError::Io(IoFailure::other(
                std::io::ErrorKind::BrokenPipe,
                format!(
                    "the writer thread of {} stopped while opening",
                    dir.display()
                ),
            )))
        });
        match opened {
            Ok(recovery) => Ok(FilePersistence {
                dir,
                tx: Some(tx),
                thread: Some(thread),
                shared,
                recovery,
            }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// Queues `change` now and returns a future that resolves once it is
    /// durable (or refused). Changes are applied in the order they are
    /// submitted, so concurrent writers that need an order (e.g. entries
    /// that follow on) submit under their own lock and await outside it.
    /// [`Persistence::save`] is `submit(change).await`.
    pub fn submit(
        &self,
        change: Change,
    ) -> impl Future<Output = Result<(), PersistenceError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Request::Save { change, reply }).is_ok());
        async move {
            if !sent {
                return Err(writer_gone());
            }
            rx.await.unwrap_or_else(|_| Err(writer_stopped()))
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the latest durable snapshot, to read with
    /// [`SnapshotReader`]. It is removed when a newer snapshot is durable
    /// (a reader that has it open keeps reading it on Unix).
    pub fn snapshot_path(&self) -> Option<PathBuf> {
        self.shared
            .snapshot_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What the store did since it was opened.
    pub fn stats(&self) -> FileStats {
        *self.shared.stats()
    }

    /// What opening the store found and did.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }
}

/// The writer thread is gone (it panicked, or the store is being dropped).
fn writer_gone() -> PersistenceError {
    PersistenceError::Io(IoFailure::other(
        std::io::ErrorKind::BrokenPipe,
        "the store's writer thread is gone",
    ))
}

/// The writer thread stopped with a request in hand.
fn writer_stopped() -> PersistenceError {
    PersistenceError::Io(IoFailure::other(
        std::io::ErrorKind::BrokenPipe,
        "the store's writer thread stopped before answering",
    ))
}

impl Drop for FilePersistence {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[async_trait]
impl Persistence for FilePersistence {
    async fn save(&self, change: Change) -> Result<(), PersistenceError> {
        self.submit(change).await
    }

    async fn load(&self) -> Result<Option<State>, PersistenceError> {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Request::Load { reply }).is_ok());
        if !sent {
            return Err(writer_gone());
        }
        rx.await.unwrap_or_else(|_| Err(writer_stopped()))
    }

    async fn mapped_snapshot(&self) -> Option<(raft_core::LogIndex, bytes::Bytes)> {
        let path = self.snapshot_path()?;
        let mapped = tokio::task::spawn_blocking(move || {
            let reader = SnapshotReader::open(&path).ok()?;
            let index = reader.meta().index;
            let (start, len) = (reader.data_offset() as usize, reader.data_len() as usize);
            let all = crate::runtime::spool::map_file(&path).ok()?;
            (start + len <= all.len()).then(|| (index, all.slice(start..start + len)))
        })
        .await;
        mapped.ok().flatten()
    }

    /// `spool` in the store's directory (the store ignores it when it
    /// recovers).
    fn snapshot_spool(&self) -> Option<PathBuf> {
        Some(self.dir.join("spool"))
    }
}
