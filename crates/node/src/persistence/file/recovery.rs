//! Reading the directory back: on open (recovery, with torn tails cut) and
//! on load (a strict replay that returns the entries).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use bytes::{BufMut, BytesMut};
use raft_core::Entry;

use super::format::{
    self, kind, parse_segment_name, parse_snapshot_name, segment_name, snapshot_name, Checkpoint,
    Frame, SnapRef, SEGMENT_HEADER_LEN,
};
use super::snapshot::SnapshotReader;
use super::state::Store;
use super::vfs::{read_whole, FileHandle, FileSystem, OpenMode};
use super::TornTail;
use crate::persistence::{Corruption, IdentityMismatch, IoFailure, Owner, PersistenceError, Place};

/// `Corrupt` naming a file and an offset.
pub(crate) fn corrupt(path: &Path, offset: u64, what: impl std::fmt::Display) -> PersistenceError {
    PersistenceError::Corrupt(
        Corruption::new(what.to_string())
            .in_file(path)
            .at_offset(offset),
    )
}

/// `Corrupt` naming a file (or the directory) only.
pub(crate) fn corrupt_in(path: &Path, what: impl std::fmt::Display) -> PersistenceError {
    PersistenceError::Corrupt(Corruption::new(what.to_string()).in_file(path))
}

/// `Io`: `action` (a phrase the path follows) failed on `path`.
pub(crate) fn io_error(action: &str, path: &Path, e: io::Error) -> PersistenceError {
    PersistenceError::Io(IoFailure::new(action, path, e))
}

/// The state rebuilt by replaying segments.
#[derive(Debug)]
pub(crate) struct Replay {
    /// Everything but the entries' contents.
    pub store: Store,
    /// The entries (when collecting): a contiguous run ending at the log's
    /// last index.
    pub entries: Option<VecDeque<Entry>>,
    /// Where the latest snapshot marker was read (for messages).
    pub snapshot_at: Option<(PathBuf, u64)>,
    /// Where the identity was read (for messages).
    pub identity_at: Option<(PathBuf, u64)>,
    /// The first segment replayed.
    pub first_seq: u64,
    /// The end record of the segment replayed last, if it has one: the log
    /// was recorded to continue in the next segment.
    pub continues: Option<Continues>,
}

/// A segment end record read: the log continues in another segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Continues {
    /// The segment the log continues in.
    pub next_seq: u64,
    /// The log's last index and term when the segment was left.
    pub last: (raft_core::LogIndex, raft_core::Term),
    /// Where the record was read.
    pub at: (PathBuf, u64),
}

/// How one segment ended.
#[derive(Debug)]
pub(crate) enum SegmentEnd {
    /// The data ends at this offset (after the last complete change).
    Data {
        /// Where the next record goes.
        end: u64,
        /// A torn tail found after it (only in the last segment on open).
        torn: Option<(u64, String)>,
    },
    /// The segment holds no valid header or checkpoint and nothing valid
    /// after it: a segment whose creation did not finish (last segment on
    /// open only).
    Unborn(String),
}

/// A record of a change being read.
struct Pending<'a> {
    offset: usize,
    kind: u8,
    payload: &'a [u8],
}

/// Replays the segment `seq` held in `buf` into `replay` (which starts from
/// this segment's checkpoint when `None`). With `torn_ok`, damage at the tail
/// that looks like an unfinished write is reported instead of refused.
pub(crate) fn replay_segment(
    replay: &mut Option<Replay>,
    buf: &[u8],
    path: &Path,
    seq: u64,
    torn_ok: bool,
    collect: bool,
) -> Result<SegmentEnd, PersistenceError> {
    // Damage at `at` that may be a torn tail.
    let damaged = |at: usize, reason: &str, incomplete: bool| -> Result<(), PersistenceError> {
        let after = format::find_valid_record(buf, at);
        let length_damaged = incomplete && format::complete_with_damaged_length(buf, at);
        if torn_ok && incomplete && after.is_none() && !length_damaged {
            return Ok(());
        }
        let why = match after {
            None if length_damaged => format!(
                "{reason}, but the record is complete and its length field is damaged: the log is damaged"
            ),
            Some(p) => format!("{reason}, followed by a valid record at offset {p}: the log is damaged in the middle"),
            None if torn_ok => format!("{reason}; the record is complete, so this is not a torn write: the log is damaged"),
            None => format!("{reason}, in a segment that is not the last one: the log is damaged"),
        };
        Err(corrupt(path, at as u64, why))
    };

    // Header.
    match format::check_segment_header(buf) {
        Ok(s) if s == seq => {}
        Ok(s) => {
            return Err(corrupt(
                path,
                16,
                format!("the header says this is segment {s}, its name says {seq}"),
            ))
        }
        Err(reason) => {
            damaged(0, reason, true)?;
            return Ok(SegmentEnd::Unborn(reason.to_owned()));
        }
    }
    // Checkpoint.
    let at = SEGMENT_HEADER_LEN;
    let (checkpoint, mut offset) = match format::read_frame(buf, at) {
        Frame::Record {
            kind: kind::CHECKPOINT,
            end: true,
            payload,
            next,
        } => {
            let cp = format::get_checkpoint(payload)
                .map_err(|e| corrupt(path, (at + format::FRAME_HEADER_LEN + e.offset) as u64, e))?;
            (cp, next)
        }
        Frame::Record { kind, .. } => {
            return Err(corrupt(
                path,
                at as u64,
                format!(
                    "the segment starts with a {} record, not a checkpoint",
                    kind::name(kind)
                ),
            ))
        }
        Frame::End => {
            damaged(at, "the segment ends before its checkpoint", true)?;
            return Ok(SegmentEnd::Unborn(
                "the segment ends before its checkpoint".into(),
            ));
        }
        Frame::Bad { reason, incomplete } => {
            damaged(at, reason, incomplete)?;
            return Ok(SegmentEnd::Unborn(format!("its checkpoint is {reason}")));
        }
    };
    match replay {
        None => {
            *replay = Some(Replay {
                store: Store::from_checkpoint(&checkpoint),
                entries: collect.then(VecDeque::new),
                snapshot_at: checkpoint
                    .snapshot
                    .as_ref()
                    .map(|_| (path.to_owned(), at as u64)),
                identity_at: checkpoint
                    .identity
                    .as_ref()
                    .map(|_| (path.to_owned(), at as u64)),
                first_seq: seq,
                continues: None,
            })
        }
        Some(r) => {
            check_checkpoint(r, &checkpoint, path, at as u64)?;
            // The previous segment's end record (if any) names this one.
            r.continues = None;
        }
    }
    let Some(r) = replay.as_mut() else {
        return Err(corrupt(path, at as u64, "internal: no replay state"));
    };

    // Changes.
    let mut pending: Vec<Pending<'_>> = Vec::new();
    loop {
        match format::read_frame(buf, offset) {
            Frame::Record {
                kind,
                end,
                payload,
                next,
            } => {
                if kind == kind::CHECKPOINT {
                    return Err(corrupt(
                        path,
                        offset as u64,
                        "a checkpoint record in the middle of a segment",
                    ));
                }
                if let Some(c) = &r.continues {
                    return Err(corrupt(
                        path,
                        offset as u64,
                        format!(
                            "a {} record after the segment's end record (at offset {})",
                            kind::name(kind),
                            c.at.1
                        ),
                    ));
                }
                pending.push(Pending {
                    offset,
                    kind,
                    payload,
                });
                if end {
                    for p in pending.drain(..) {
                        apply_record(r, &p, path, seq)?;
                    }
                }
                offset = next;
            }
            Frame::End => {
                if let Some(first) = pending.first() {
                    let cut = first.offset;
                    if !torn_ok {
                        return Err(corrupt(
                            path,
                            cut as u64,
                            "a change whose last record is missing, in a segment that is not the last one: the log is damaged",
                        ));
                    }
                    return Ok(SegmentEnd::Data {
                        end: cut as u64,
                        torn: Some((
                            cut as u64,
                            "a change whose last record is missing (the write did not finish)"
                                .into(),
                        )),
                    });
                }
                return Ok(SegmentEnd::Data {
                    end: offset as u64,
                    torn: None,
                });
            }
            Frame::Bad { reason, incomplete } => {
                if !torn_ok
                    && incomplete
                    && pending.is_empty()
                    && format::torn_segment_end(buf, offset)
                {
                    // A crash while the writer closed this segment (its end
                    // record is written once the next segment exists): the
                    // next segment's checkpoint vouches for what is before.
                    return Ok(SegmentEnd::Data {
                        end: offset as u64,
                        torn: None,
                    });
                }
                damaged(offset, reason, incomplete)?;
                let cut = pending.first().map_or(offset, |p| p.offset);
                return Ok(SegmentEnd::Data {
                    end: cut as u64,
                    torn: Some((
                        cut as u64,
                        format!("{reason} at offset {offset} (the write did not finish)"),
                    )),
                });
            }
        }
    }
}

/// A later segment's checkpoint must describe the state replayed so far.
fn check_checkpoint(
    r: &Replay,
    c: &Checkpoint,
    path: &Path,
    at: u64,
) -> Result<(), PersistenceError> {
    let s = &r.store;
    if c.identity != s.identity {
        return Err(PersistenceError::identity(
            IdentityMismatch::RecordsDisagree {
                place: Place {
                    path: path.to_path_buf(),
                    offset: Some(at),
                },
                record_kind: "the checkpoint",
                record: c.identity.as_ref().map(Owner::from),
                before: s.identity.as_ref().map(Owner::from),
            },
        ));
    }
    let last = s.log.last_index();
    let mut differs = Vec::new();
    if c.hard_state != s.hard_state {
        differs.push(format!(
            "hard state {:?} vs {:?}",
            c.hard_state, s.hard_state
        ));
    }
    if c.snapshot != s.snapshot {
        let m = |x: &Option<SnapRef>| x.as_ref().map(|s| (s.seq, s.meta.index, s.meta.term));
        differs.push(format!(
            "snapshot (file, index, term) {:?} vs {:?}",
            m(&c.snapshot),
            m(&s.snapshot)
        ));
    }
    if c.last.0 != last || s.log.term_at(last).is_some_and(|t| t != c.last.1) {
        differs.push(format!(
            "last entry {:?} vs ({last}, {:?})",
            c.last,
            s.log.term_at(last)
        ));
    }
    if differs.is_empty() {
        Ok(())
    } else {
        Err(corrupt(
            path,
            at,
            format!(
                "the checkpoint does not match the segments before it (checkpoint vs replayed: {}): records are missing or damaged before this segment",
                differs.join(", ")
            ),
        ))
    }
}

/// Applies one record of a complete change.
fn apply_record(
    r: &mut Replay,
    p: &Pending<'_>,
    path: &Path,
    seq: u64,
) -> Result<(), PersistenceError> {
    let payload_at = (p.offset + format::FRAME_HEADER_LEN) as u64;
    let decode_err = |e: crate::codec::DecodeError| corrupt(path, payload_at + e.offset as u64, e);
    let bad = |what: String| corrupt(path, p.offset as u64, what);
    match p.kind {
        kind::IDENTITY => {
            let identity = format::get_identity_record(p.payload).map_err(decode_err)?;
            match &r.store.identity {
                Some(stored) if *stored != identity => {
                    return Err(PersistenceError::identity(
                        IdentityMismatch::RecordsDisagree {
                            place: Place {
                                path: path.to_path_buf(),
                                offset: Some(p.offset as u64),
                            },
                            record_kind: "an identity record",
                            record: Some((&identity).into()),
                            before: Some(stored.into()),
                        },
                    ))
                }
                Some(_) => {}
                None => {
                    r.store.identity = Some(identity);
                    r.identity_at = Some((path.to_owned(), p.offset as u64));
                }
            }
        }
        kind::SNAPSHOT => {
            let snap = format::get_snapshot_record(p.payload).map_err(decode_err)?;
            let (index, term) = (snap.meta.index, snap.meta.term);
            let base = r.store.log.base();
            if index == 0 || index < base.0 {
                return Err(bad(format!(
                    "a snapshot marker at index {index}, below the snapshot at {} before it",
                    base.0
                )));
            }
            if r.store.snapshot.as_ref().is_some_and(|s| snap.seq <= s.seq) {
                return Err(bad(format!(
                    "a snapshot marker naming snapshot file {}, not newer than the one before it",
                    snap.seq
                )));
            }
            r.store.log.compact(index, term);
            if let Some(entries) = &mut r.entries {
                while entries.front().is_some_and(|e| e.index <= index) {
                    entries.pop_front();
                }
            }
            r.store.snapshot = Some(snap);
            r.snapshot_at = Some((path.to_owned(), p.offset as u64));
        }
        kind::TRUNCATE => {
            let from = format::get_truncate_record(p.payload).map_err(decode_err)?;
            r.store.log.truncate(from).map_err(bad)?;
            if let Some(entries) = &mut r.entries {
                while entries.back().is_some_and(|e| e.index >= from) {
                    entries.pop_back();
                }
            }
        }
        kind::ENTRIES => {
            let log = &mut r.store.log;
            let mut entries = r.entries.as_mut();
            format::walk_entries(p.payload, |index, term, bytes| {
                log.append(index, term, seq).map_err(|m| (0, m))?;
                if let Some(entries) = entries.as_deref_mut() {
                    let e = format::decode_entry(bytes).map_err(|e| (e.offset, e.to_string()))?;
                    entries.push_back(e);
                }
                Ok(())
            })
            .map_err(|(o, m)| corrupt(path, payload_at + o as u64, m))?;
        }
        kind::HARD_STATE => {
            r.store.hard_state = format::get_hard_state_record(p.payload).map_err(decode_err)?;
        }
        kind::SEGMENT_END => {
            let end = format::get_segment_end(p.payload).map_err(decode_err)?;
            if end.next_seq != seq + 1 {
                return Err(bad(format!(
                    "a segment end record naming segment {} as the next one, in segment {seq}",
                    end.next_seq
                )));
            }
            let last = r.store.log.last_index();
            let term = r.store.log.term_at(last);
            if end.last.0 != last || term.is_some_and(|t| t != end.last.1) {
                return Err(bad(format!(
                    "a segment end record saying the log ends at index {} (term {}), but the records before it end at index {last} (term {term:?})",
                    end.last.0, end.last.1
                )));
            }
            r.continues = Some(Continues {
                next_seq: end.next_seq,
                last: end.last,
                at: (path.to_owned(), p.offset as u64),
            });
        }
        other => {
            return Err(bad(format!(
                "a {} record inside a change",
                kind::name(other)
            )))
        }
    }
    Ok(())
}

/// Checks, once every segment is replayed, that every entry after the
/// snapshot was read from a segment (none is known only by a checkpoint),
/// and that the log holds every entry the hard state says is committed.
pub(crate) fn check_complete(r: &Replay, dir: &Path) -> Result<(), PersistenceError> {
    let (commit, last) = (r.store.hard_state.commit, r.store.log.last_index());
    if commit > last {
        return Err(PersistenceError::Corrupt(
            Corruption::new(format!(
                "the hard state says the entries up to index {commit} are committed, but the log ends at index {last}: the entries from {} to {commit} are missing (a segment was lost or cut short)",
                last + 1
            ))
            .in_file(dir)
            .at_index(last + 1),
        ));
    }
    if let Some(run) = r.store.log.runs().iter().find(|run| run.segment == 0) {
        let first_path = dir.join(segment_name(r.first_seq));
        return Err(corrupt(
            &first_path,
            SEGMENT_HEADER_LEN as u64,
            format!(
                "the log's entries from index {} on were written before this segment, whose checkpoint says so, but the segments holding them are gone",
                run.first
            ),
        ));
    }
    if let Some(entries) = &r.entries {
        let base = r.store.log.base().0;
        let last = r.store.log.last_index();
        let live = entries.iter().filter(|e| e.index > base).count() as u64;
        if live != last.saturating_sub(base) {
            return Err(corrupt_in(
                dir,
                format!("replaying the segments gives {live} entries after the snapshot at {base}, but the log ends at {last}"),
            ));
        }
    }
    Ok(())
}

/// A segment found on open without a valid header and checkpoint, and
/// nothing valid after them: one whose creation did not finish, unless an
/// end record names it.
#[derive(Debug, Clone)]
pub(crate) struct Unborn {
    /// Its number.
    pub seq: u64,
    /// Its file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// Checks, once every segment is replayed on open, that the log does not
/// stop short of a segment the last one replayed says it continues in: the
/// newest segments were deleted, or emptied. (Every segment is created, and
/// synced, before the end record naming it is written.)
pub(crate) fn check_continues(
    r: &Replay,
    dir: &Path,
    unborn: &[Unborn],
) -> Result<(), PersistenceError> {
    let Some(c) = &r.continues else {
        return Ok(());
    };
    let next = dir.join(segment_name(c.next_seq));
    let what = match unborn.iter().find(|u| u.seq == c.next_seq) {
        Some(u) => format!("the segment is damaged ({})", u.reason),
        None => "the segment is missing".to_owned(),
    };
    Err(PersistenceError::Corrupt(
        Corruption::new(format!(
            "{what}: {} at offset {} records that the log continues in it after index {} (term {}), so the entries from index {} on (in segment {} and any later one) are lost; restore the segments, or remove this node from its cluster and add it back with an empty directory",
            c.at.0.display(),
            c.at.1,
            c.last.0,
            c.last.1,
            c.last.0 + 1,
            c.next_seq
        ))
        .in_file(next)
        .at_index(c.last.0 + 1),
    ))
}

/// The files of a store's directory.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segments by sequence number.
    pub segments: BTreeMap<u64, PathBuf>,
    /// Snapshot files by sequence number.
    pub snapshots: BTreeSet<u64>,
    /// Temporary files left by an interrupted write.
    pub tmp: Vec<PathBuf>,
}

/// Lists `dir`.
pub(crate) fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Listing, PersistenceError> {
    let names = fs.list(dir).map_err(|e| io_error("listing", dir, e))?;
    let mut listing = Listing::default();
    for name in names {
        if let Some(seq) = parse_segment_name(&name) {
            listing.segments.insert(seq, dir.join(&name));
        } else if let Some(seq) = parse_snapshot_name(&name) {
            listing.snapshots.insert(seq);
        } else if format::is_own_tmp(&name) {
            listing.tmp.push(dir.join(&name));
        }
    }
    Ok(listing)
}

/// Reads a whole file.
pub(crate) fn read_file(fs: &dyn FileSystem, path: &Path) -> Result<Vec<u8>, PersistenceError> {
    let mut f = fs
        .open(path, OpenMode::Read)
        .map_err(|e| io_error("opening", path, e))?;
    read_whole(&mut *f).map_err(|e| io_error("reading", path, e))
}

/// A failed write or sync (the store then fails every later save).
pub(crate) type Failure = IoFailure;

/// A new segment: its file, where its records start, the file's size.
pub(crate) type NewSegment = (Box<dyn FileHandle>, u64, u64);

/// Creates segment `seq` starting from `checkpoint`, durably (written under
/// a temporary name, synced, renamed, directory synced). Returns the open
/// file and the size written.
pub(crate) fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    checkpoint: &Checkpoint,
    spare: Option<(Box<dyn FileHandle>, PathBuf)>,
) -> Result<NewSegment, Failure> {
    let path = dir.join(segment_name(seq));
    let mut head = BytesMut::with_capacity(256);
    head.put_slice(&format::segment_header(seq));
    format::put_checkpoint(&mut head, checkpoint);
    fn ctx<'a>(what: &'a str, p: &'a Path) -> impl FnOnce(io::Error) -> IoFailure + 'a {
        move |e| IoFailure::new(what, p, e)
    }
    let (mut file, tmp) = match spare {
        Some((file, tmp)) => (file, tmp),
        None => {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format::TMP_SUFFIX);
            let tmp = PathBuf::from(tmp);
            let file = fs
                .open(&tmp, OpenMode::Create)
                .map_err(ctx("creating", &tmp))?;
            (file, tmp)
        }
    };
    file.write_at(0, &head)
        .map_err(ctx("writing the header of", &tmp))?;
    file.sync_all().map_err(ctx("syncing", &tmp))?;
    let size = file.size().map_err(ctx("sizing", &tmp))?;
    fs.rename(&tmp, &path)
        .map_err(ctx("renaming into place", &path))?;
    fs.sync_dir(dir)
        .map_err(ctx("syncing the directory", dir))?;
    Ok((file, head.len() as u64, size))
}

/// Checks that the snapshot file a marker names is there and matches it.
pub(crate) fn check_snapshot_file(
    fs: &dyn FileSystem,
    dir: &Path,
    snap: &SnapRef,
    marker_at: Option<&(PathBuf, u64)>,
) -> Result<SnapshotReader, PersistenceError> {
    let path = dir.join(snapshot_name(snap.seq));
    let whence = || match marker_at {
        Some((p, o)) => format!("the snapshot marker in {} at offset {o}", p.display()),
        None => "the snapshot marker".to_owned(),
    };
    let reader = SnapshotReader::open_with(fs, &path).map_err(|e| match e {
        PersistenceError::Io(m) => corrupt_in(
            &path,
            format!(
                "{} names this snapshot file, which cannot be read: {m}",
                whence()
            ),
        ),
        other => other,
    })?;
    if reader.meta() != &snap.meta || reader.data_len() != snap.data_len {
        return Err(corrupt(
            &path,
            0,
            format!(
                "the file holds the snapshot at index {} (term {}, {} bytes), but {} says index {} (term {}, {} bytes)",
                reader.meta().index,
                reader.meta().term,
                reader.data_len(),
                whence(),
                snap.meta.index,
                snap.meta.term,
                snap.data_len
            ),
        ));
    }
    Ok(reader)
}

/// Cuts a torn tail at `cut` in a segment whose bytes were `buf`: the file
/// is truncated there (one atomic metadata change: a crash while cutting
/// leaves the tail as it was, or cut) and synced. A preallocated segment
/// loses its preallocation; the writer moves to a preallocated spare as
/// soon as one is ready. Returns the non-zero bytes dropped.
pub(crate) fn cut_tail(
    fs: &dyn FileSystem,
    path: &Path,
    buf: &[u8],
    cut: u64,
) -> Result<u64, PersistenceError> {
    let nonzero_end = buf.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1) as u64;
    let ctx = |e| io_error("cutting the torn tail of", path, e);
    let mut f = fs.open(path, OpenMode::Write).map_err(ctx)?;
    f.set_len(cut).map_err(ctx)?;
    f.sync_all().map_err(ctx)?;
    Ok(nonzero_end.saturating_sub(cut))
}

/// The torn tail to report.
pub(crate) fn torn_tail(path: &Path, offset: u64, bytes: u64, reason: String) -> TornTail {
    TornTail {
        file: path.to_owned(),
        offset,
        bytes,
        reason,
    }
}
