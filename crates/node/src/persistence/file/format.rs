//! The bytes on disk: file names, the segment header, record frames and
//! record payloads (see the module documentation of
//! [`file`](super) for the layout).

use bytes::{BufMut, BytesMut};
use raft_core::{Entry, HardState, LogIndex, SnapshotMeta, Term};

use crate::codec::{self, DecodeError, Reader};
use crate::persistence::Identity;

/// The first bytes of every segment.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"RAFTWAL\0";
/// The format version written in segment headers: 2 since segments end with
/// a [`kind::SEGMENT_END`] record when the log moves on to the next one.
pub(crate) const SEGMENT_VERSION: u32 = 2;
/// The oldest format version read: version 1 segments (without end records)
/// are read as before.
pub(crate) const SEGMENT_VERSION_MIN: u32 = 1;
/// Size of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;

/// Size of a record header: length, checksum, type.
pub(crate) const FRAME_HEADER_LEN: usize = 9;
/// The byte that ends every record.
pub(crate) const FRAME_TRAILER: u8 = 0xA5;
/// Bytes a record takes beyond its payload.
pub(crate) const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + 1;

/// Record types (the low 7 bits of the type byte).
pub(crate) mod kind {
    /// The state a segment starts from (first record of every segment).
    pub const CHECKPOINT: u8 = 1;
    /// The node's identity.
    pub const IDENTITY: u8 = 2;
    /// A snapshot marker: the snapshot file that is now the latest.
    pub const SNAPSHOT: u8 = 3;
    /// Drop the entries at and above an index.
    pub const TRUNCATE: u8 = 4;
    /// Log entries.
    pub const ENTRIES: u8 = 5;
    /// Term, vote and commit index.
    pub const HARD_STATE: u8 = 6;
    /// The last record of a segment the log moved on from: the log
    /// continues in the next segment (format version 2).
    pub const SEGMENT_END: u8 = 7;
    /// The highest record type.
    pub const LAST: u8 = SEGMENT_END;

    /// A name for messages.
    pub fn name(kind: u8) -> &'static str {
        match kind {
            CHECKPOINT => "checkpoint",
            IDENTITY => "identity",
            SNAPSHOT => "snapshot marker",
            TRUNCATE => "truncation",
            ENTRIES => "entries",
            HARD_STATE => "hard state",
            SEGMENT_END => "segment end",
            _ => "unknown",
        }
    }
}

/// The type-byte flag set on the last record of a change.
pub(crate) const END_OF_CHANGE: u8 = 0x80;

/// A cap on one entries record: a change with more entry bytes is split
/// into several records (of one change).
pub(crate) const MAX_ENTRIES_RECORD: usize = 4 << 20;

const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".wal";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
/// Files being written get this suffix until they are complete.
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// The preallocated file that becomes the next segment.
pub(crate) const SPARE_NAME: &str = "segment-spare.tmp";

/// The file name of segment `seq`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{SEGMENT_PREFIX}{seq:020}{SEGMENT_SUFFIX}")
}

/// The sequence number of a segment file name.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    parse_numbered(name, SEGMENT_PREFIX, SEGMENT_SUFFIX)
}

/// The file name of snapshot file `seq`.
pub(crate) fn snapshot_name(seq: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{seq:020}{SNAPSHOT_SUFFIX}")
}

/// The sequence number of a snapshot file name.
pub(crate) fn parse_snapshot_name(name: &str) -> Option<u64> {
    parse_numbered(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX)
}

/// True for the temporary files this store writes (and removes on open).
pub(crate) fn is_own_tmp(name: &str) -> bool {
    name.ends_with(TMP_SUFFIX)
        && (name.starts_with(SEGMENT_PREFIX) || name.starts_with(SNAPSHOT_PREFIX))
}

fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

// ---------------------------------------------------------------------------
// Segment header.

/// The 32-byte header of segment `seq`.
pub(crate) fn segment_header(seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    // 12..16: flags, none yet.
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    // 24..28: reserved.
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header; returns its sequence number or what is wrong.
pub(crate) fn check_segment_header(buf: &[u8]) -> Result<u64, &'static str> {
    if buf.len() < SEGMENT_HEADER_LEN {
        return Err("the segment header is cut short by the end of the file");
    }
    let h = &buf[..SEGMENT_HEADER_LEN];
    if &h[..8] != SEGMENT_MAGIC {
        return Err("the segment header does not start with the segment magic");
    }
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32c::crc32c(&h[..28]) != crc {
        return Err("the segment header's checksum does not match");
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if !(SEGMENT_VERSION_MIN..=SEGMENT_VERSION).contains(&version) {
        return Err("the segment has an unknown format version");
    }
    Ok(u64::from_le_bytes(h[16..24].try_into().unwrap_or_default()))
}

// ---------------------------------------------------------------------------
// Record frames.

/// Starts a record in `buf`: reserves its header. Returns where it starts.
pub(crate) fn begin_frame(buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.put_bytes(0, FRAME_HEADER_LEN);
    start
}

/// Ends the record begun at `start`: fills in its header (length, checksum
/// and type) and appends the trailer.
pub(crate) fn end_frame(buf: &mut BytesMut, start: usize, kind_byte: u8) {
    let len = (buf.len() - start - FRAME_HEADER_LEN) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 8] = kind_byte;
    let crc = frame_crc(&buf[start..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf.put_u8(FRAME_TRAILER);
}

/// Flags the record at `start`, the last one in `buf`, as the last record
/// of its change (the flag is in the checksummed type byte).
pub(crate) fn mark_end_of_change(buf: &mut BytesMut, start: usize) {
    buf[start + 8] |= END_OF_CHANGE;
    let end = buf.len() - 1;
    let crc = frame_crc(&buf[start..end]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum of a frame whose header and payload start `frame`: over the
/// length, the type byte and the payload.
fn frame_crc(frame: &[u8]) -> u32 {
    let head = [frame[0], frame[1], frame[2], frame[3], frame[8]];
    crc32c::crc32c_append(crc32c::crc32c(&head), &frame[FRAME_HEADER_LEN..])
}

/// What is at an offset of a segment.
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    /// A valid record.
    Record {
        /// Its type (without the flag).
        kind: u8,
        /// The last record of a change.
        end: bool,
        /// Its payload.
        payload: &'a [u8],
        /// Where the next record starts.
        next: usize,
    },
    /// The end of the written data: the end of the file, or zeros up to it
    /// (a preallocated segment).
    End,
    /// Not a valid record.
    Bad {
        /// What is wrong.
        reason: &'static str,
        /// The damage looks like a write that did not finish: the file ends
        /// inside the record, or its last byte (the trailer) is zero (the
        /// unwritten part of a preallocated segment).
        incomplete: bool,
    },
}

/// Reads the frame at `at`.
pub(crate) fn read_frame(buf: &[u8], at: usize) -> Frame<'_> {
    let rest = &buf[at.min(buf.len())..];
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.len() < FRAME_HEADER_LEN {
        return if all_zero(rest) {
            Frame::End
        } else {
            Frame::Bad {
                reason: "a record header cut short by the end of the file",
                incomplete: true,
            }
        };
    }
    if all_zero(&rest[..FRAME_HEADER_LEN]) {
        return if all_zero(rest) {
            Frame::End
        } else {
            Frame::Bad {
                reason: "zeros where a record should start, with non-zero bytes after them",
                incomplete: true,
            }
        };
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let kind_byte = rest[8];
    let Some(total) = len.checked_add(FRAME_OVERHEAD) else {
        return Frame::Bad {
            reason: "a record length that overflows",
            incomplete: true,
        };
    };
    if total > rest.len() {
        return Frame::Bad {
            reason: "a record running past the end of the file",
            incomplete: true,
        };
    }
    let trailer = rest[total - 1];
    if trailer != FRAME_TRAILER {
        return Frame::Bad {
            reason: "a record without its end marker",
            incomplete: trailer == 0,
        };
    }
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if frame_crc(&rest[..total - 1]) != crc {
        return Frame::Bad {
            reason: "a record whose checksum does not match",
            incomplete: false,
        };
    }
    let kind = kind_byte & !END_OF_CHANGE;
    if !(kind::CHECKPOINT..=kind::LAST).contains(&kind) {
        return Frame::Bad {
            reason: "a record of an unknown type",
            incomplete: false,
        };
    }
    Frame::Record {
        kind,
        end: kind_byte & END_OF_CHANGE != 0,
        payload: &rest[FRAME_HEADER_LEN..total - 1],
        next: at + total,
    }
}

/// The first offset after `after` where a valid record starts, if any: used
/// to tell a torn tail (nothing valid after the damage) from damage in the
/// middle of the log.
pub(crate) fn find_valid_record(buf: &[u8], after: usize) -> Option<usize> {
    let mut p = after + 1;
    while p + FRAME_OVERHEAD <= buf.len() {
        let kind_byte = buf[p + 8];
        let kind = kind_byte & !END_OF_CHANGE;
        if (kind::CHECKPOINT..=kind::LAST).contains(&kind) {
            let len = u32::from_le_bytes([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]]) as usize;
            let end = p
                .checked_add(len)
                .and_then(|e| e.checked_add(FRAME_OVERHEAD));
            if end.is_some_and(|e| e <= buf.len() && buf[e - 1] == FRAME_TRAILER)
                && matches!(read_frame(buf, p), Frame::Record { .. })
            {
                return Some(p);
            }
        }
        p += 1;
    }
    None
}

/// True if the damaged record at `at` is in fact complete with a damaged
/// length field: the last non-zero byte of the file is a trailer, and the
/// record checks out with the length that trailer implies. Such damage
/// looks like an unfinished write (the record seems to run past the end, or
/// to end on a zero) but is not one.
pub(crate) fn complete_with_damaged_length(buf: &[u8], at: usize) -> bool {
    let Some(last) = buf.iter().rposition(|&b| b != 0) else {
        return false;
    };
    if last < at + FRAME_HEADER_LEN || buf[last] != FRAME_TRAILER {
        return false;
    }
    let implied = last - at - FRAME_HEADER_LEN;
    let Ok(implied32) = u32::try_from(implied) else {
        return false;
    };
    let stored = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    if stored == implied32 {
        return false;
    }
    let crc = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]);
    let len = implied32.to_le_bytes();
    let head = [len[0], len[1], len[2], len[3], buf[at + 8]];
    crc32c::crc32c_append(crc32c::crc32c(&head), &buf[at + FRAME_HEADER_LEN..last]) == crc
}

/// The size of a whole segment end record.
pub(crate) const SEGMENT_END_RECORD_LEN: usize = FRAME_OVERHEAD + 24;

/// True if the damage at `at` is an unfinished segment end record and
/// nothing else: the bytes written there (up to the last non-zero one) are a
/// prefix of such a record (its length and type, as far as they were
/// written), and only zeros or the end of the file follow. The writer
/// appends that record to a segment after the next one exists, so a crash
/// can leave it unfinished in a segment that is not the last one.
pub(crate) fn torn_segment_end(buf: &[u8], at: usize) -> bool {
    let rest = &buf[at.min(buf.len())..];
    let written = rest.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if written == 0 || written >= SEGMENT_END_RECORD_LEN {
        return false;
    }
    let len = (SEGMENT_END_RECORD_LEN as u32 - FRAME_OVERHEAD as u32).to_le_bytes();
    let head_ok = rest[..written.min(4)] == len[..written.min(4)];
    let type_ok = written <= 8 || rest[8] == kind::SEGMENT_END | END_OF_CHANGE;
    head_ok && type_ok
}

/// True if every byte is zero.
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    let chunks = bytes.chunks_exact(64);
    let rest = chunks.remainder();
    chunks
        .into_iter()
        .all(|c| c.iter().fold(0u8, |a, &b| a | b) == 0)
        && rest.iter().all(|&b| b == 0)
}

// ---------------------------------------------------------------------------
// Payloads.

/// A snapshot marker: which snapshot file is the latest, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapRef {
    /// The snapshot file's sequence number (its name).
    pub seq: u64,
    /// The size of the snapshot's data.
    pub data_len: u64,
    /// Index, term and membership.
    pub meta: SnapshotMeta,
}

/// The state a segment starts from: everything but the log entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Segments below this one hold nothing needed any more (they may be
    /// left over from a compaction that a crash interrupted).
    pub first_kept: u64,
    /// The node's identity, once saved.
    pub identity: Option<Identity>,
    /// Term, vote and commit.
    pub hard_state: HardState,
    /// The latest snapshot.
    pub snapshot: Option<SnapRef>,
    /// The log's last index and term when the segment was created (the
    /// entries of the segment follow on from it).
    pub last: (LogIndex, Term),
}

fn put_snap_ref(b: &mut BytesMut, s: &SnapRef) {
    b.put_u64_le(s.seq);
    b.put_u64_le(s.data_len);
    codec::put_snapshot_meta(b, &s.meta);
}

fn get_snap_ref(r: &mut Reader<'_>) -> Result<SnapRef, DecodeError> {
    Ok(SnapRef {
        seq: r.u64()?,
        data_len: r.u64()?,
        meta: codec::get_snapshot_meta(r)?,
    })
}

/// Appends a checkpoint record (a change of its own).
pub(crate) fn put_checkpoint(buf: &mut BytesMut, c: &Checkpoint) {
    let start = begin_frame(buf);
    buf.put_u64_le(c.first_kept);
    match &c.identity {
        Some(i) => {
            buf.put_u8(1);
            codec::put_identity(buf, i);
        }
        None => buf.put_u8(0),
    }
    codec::put_hard_state(buf, &c.hard_state);
    match &c.snapshot {
        Some(s) => {
            buf.put_u8(1);
            put_snap_ref(buf, s);
        }
        None => buf.put_u8(0),
    }
    buf.put_u64_le(c.last.0);
    buf.put_u64_le(c.last.1);
    end_frame(buf, start, kind::CHECKPOINT | END_OF_CHANGE);
}

/// Reads a checkpoint payload.
pub(crate) fn get_checkpoint(payload: &[u8]) -> Result<Checkpoint, DecodeError> {
    let mut r = Reader::new(payload, "checkpoint record");
    let first_kept = r.u64()?;
    let identity = r.bool()?.then(|| codec::get_identity(&mut r)).transpose()?;
    let hard_state = codec::get_hard_state(&mut r)?;
    let snapshot = r.bool()?.then(|| get_snap_ref(&mut r)).transpose()?;
    let last = (r.u64()?, r.u64()?);
    r.finish()?;
    Ok(Checkpoint {
        first_kept,
        identity,
        hard_state,
        snapshot,
        last,
    })
}

/// Appends an identity record.
pub(crate) fn put_identity_record(buf: &mut BytesMut, i: &Identity) -> usize {
    let start = begin_frame(buf);
    codec::put_identity(buf, i);
    end_frame(buf, start, kind::IDENTITY);
    start
}

/// Reads an identity payload.
pub(crate) fn get_identity_record(payload: &[u8]) -> Result<Identity, DecodeError> {
    let mut r = Reader::new(payload, "identity record");
    let i = codec::get_identity(&mut r)?;
    r.finish()?;
    Ok(i)
}

/// Appends a snapshot marker.
pub(crate) fn put_snapshot_record(buf: &mut BytesMut, s: &SnapRef) -> usize {
    let start = begin_frame(buf);
    put_snap_ref(buf, s);
    end_frame(buf, start, kind::SNAPSHOT);
    start
}

/// Reads a snapshot marker payload.
pub(crate) fn get_snapshot_record(payload: &[u8]) -> Result<SnapRef, DecodeError> {
    let mut r = Reader::new(payload, "snapshot marker record");
    let s = get_snap_ref(&mut r)?;
    r.finish()?;
    Ok(s)
}

/// Appends a truncation record.
pub(crate) fn put_truncate_record(buf: &mut BytesMut, from: LogIndex) -> usize {
    let start = begin_frame(buf);
    buf.put_u64_le(from);
    end_frame(buf, start, kind::TRUNCATE);
    start
}

/// Reads a truncation payload.
pub(crate) fn get_truncate_record(payload: &[u8]) -> Result<LogIndex, DecodeError> {
    let mut r = Reader::new(payload, "truncation record");
    let from = r.u64()?;
    r.finish()?;
    Ok(from)
}

/// Appends a hard-state record.
pub(crate) fn put_hard_state_record(buf: &mut BytesMut, h: &HardState) -> usize {
    let start = begin_frame(buf);
    codec::put_hard_state(buf, h);
    end_frame(buf, start, kind::HARD_STATE);
    start
}

/// Reads a hard-state payload.
pub(crate) fn get_hard_state_record(payload: &[u8]) -> Result<HardState, DecodeError> {
    let mut r = Reader::new(payload, "hard state record");
    let h = codec::get_hard_state(&mut r)?;
    r.finish()?;
    Ok(h)
}

/// A segment's end record: the log continues in segment `next_seq`, whose
/// checkpoint follows on from the log's last entry `last` (index, term).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentEnd {
    /// The segment the log continues in.
    pub next_seq: u64,
    /// The log's last index and term when the segment was left.
    pub last: (LogIndex, Term),
}

/// Appends a segment end record (a change of its own).
pub(crate) fn put_segment_end(buf: &mut BytesMut, e: &SegmentEnd) {
    let start = begin_frame(buf);
    buf.put_u64_le(e.next_seq);
    buf.put_u64_le(e.last.0);
    buf.put_u64_le(e.last.1);
    end_frame(buf, start, kind::SEGMENT_END | END_OF_CHANGE);
}

/// Reads a segment end payload.
pub(crate) fn get_segment_end(payload: &[u8]) -> Result<SegmentEnd, DecodeError> {
    let mut r = Reader::new(payload, "segment end record");
    let next_seq = r.u64()?;
    let last = (r.u64()?, r.u64()?);
    r.finish()?;
    Ok(SegmentEnd { next_seq, last })
}

/// Appends entries records for `entries` (one, or several when they are
/// large); returns where the last one starts.
pub(crate) fn put_entries_records(buf: &mut BytesMut, entries: &[Entry]) -> usize {
    let mut last_start = buf.len();
    let mut rest = entries;
    while let Some(first) = rest.first() {
        let start = begin_frame(buf);
        last_start = start;
        buf.put_u64_le(first.index);
        let count_at = buf.len();
        buf.put_u32_le(0);
        let mut count = 0u32;
        for e in rest {
            if count > 0 && buf.len() - start >= MAX_ENTRIES_RECORD {
                break;
            }
            let len_at = buf.len();
            buf.put_u32_le(0);
            codec::put_entry(buf, e);
            let len = (buf.len() - len_at - 4) as u32;
            buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
            count += 1;
        }
        buf[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        end_frame(buf, start, kind::ENTRIES);
        rest = &rest[count as usize..];
    }
    last_start
}

/// Walks an entries payload: calls `each` with every entry's index, term
/// and encoded bytes, checking that the indexes follow on from the record's
/// first index. The error says what is wrong and where in the payload.
pub(crate) fn walk_entries(
    payload: &[u8],
    mut each: impl FnMut(LogIndex, Term, &[u8]) -> Result<(), (usize, String)>,
) -> Result<(), (usize, String)> {
    let bad = |at: usize, what: &str| Err((at, what.to_owned()));
    if payload.len() < 12 {
        return bad(0, "an entries record too short for its header");
    }
    let first = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
    let count = u32::from_le_bytes(payload[8..12].try_into().unwrap_or_default()) as u64;
    let mut at = 12usize;
    for i in 0..count {
        if payload.len() - at < 4 {
            return bad(at, "an entries record ends before its last entry");
        }
        let len = u32::from_le_bytes(payload[at..at + 4].try_into().unwrap_or_default()) as usize;
        at += 4;
        if payload.len() - at < len || len < 17 {
            return bad(at, "an entry whose length does not fit its record");
        }
        let bytes = &payload[at..at + len];
        let index = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        let term = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
        if Some(index) != first.checked_add(i) {
            return bad(at, "an entry whose index does not follow on in its record");
        }
        each(index, term, bytes).map_err(|(o, m)| (at + o, m))?;
        at += len;
    }
    if at != payload.len() {
        return bad(
            at,
            "trailing bytes after the last entry of an entries record",
        );
    }
    Ok(())
}

/// Decodes one entry's bytes (as given to [`walk_entries`]'s callback).
pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let mut r = Reader::new(bytes, "entry");
    let e = codec::get_entry(&mut r)?;
    r.finish()?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_snapshot_name(&snapshot_name(7)), Some(7));
        assert_eq!(parse_segment_name("segment-1.wal"), None);
        assert_eq!(parse_segment_name(SPARE_NAME), None);
        assert!(is_own_tmp(SPARE_NAME));
        assert!(is_own_tmp(&format!("{}{TMP_SUFFIX}", snapshot_name(3))));
        assert!(!is_own_tmp("notes.tmp"));
    }

    #[test]
    fn frames_round_trip_and_damage_is_classified() {
        let mut buf = BytesMut::new();
        put_truncate_record(&mut buf, 9);
        let one = buf.len();
        put_hard_state_record(
            &mut buf,
            &HardState {
                term: 3,
                vote: 1,
                commit: 2,
            },
        );
        let bytes = buf.to_vec();
        let Frame::Record { kind, next, .. } = read_frame(&bytes, 0) else {
            panic!("first record")
        };
        assert_eq!((kind, next), (kind::TRUNCATE, one));
        assert!(matches!(read_frame(&bytes, one), Frame::Record { .. }));
        assert!(matches!(read_frame(&bytes, bytes.len()), Frame::End));
        // Every cut of the second record is incomplete.
        for cut in one + 1..bytes.len() {
            match read_frame(&bytes[..cut], one) {
                Frame::Bad { incomplete, .. } => assert!(incomplete, "cut at {cut}"),
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // A prefix followed by zeros (a preallocated segment) too.
        for cut in one + 1..bytes.len() {
            let mut z = bytes[..cut].to_vec();
            z.resize(bytes.len() + 64, 0);
            match read_frame(&z, one) {
                Frame::Bad { incomplete, .. } => assert!(incomplete, "zero cut at {cut}"),
                Frame::End => assert!(cut <= one + FRAME_HEADER_LEN),
                other => panic!("zero cut at {cut}: {other:?}"),
            }
        }
        // A flipped bit in a complete record is not.
        for bit in 0..(bytes.len() - one - 1) * 8 {
            let mut f = bytes.clone();
            f[one + bit / 8] ^= 1 << (bit % 8);
            match read_frame(&f, one) {
                Frame::Bad { .. } => {}
                other => panic!("bit {bit}: {other:?}"),
            }
        }
        assert_eq!(find_valid_record(&bytes, 0), Some(one));
        assert_eq!(find_valid_record(&bytes, one), None);
        // A flipped bit in the length of the last record: whether the file
        // ends there or zeros follow, the record is known to be complete.
        for zeros in [0usize, 100] {
            for bit in 0..32 {
                let mut f = bytes.clone();
                f.resize(bytes.len() + zeros, 0);
                f[one + bit / 8] ^= 1 << (bit % 8);
                assert!(
                    matches!(read_frame(&f, one), Frame::Bad { .. }),
                    "bit {bit}"
                );
                assert!(
                    complete_with_damaged_length(&f, one),
                    "bit {bit}, {zeros} zeros"
                );
            }
        }
        // A torn record is not.
        for cut in one + 1..bytes.len() {
            let mut z = bytes[..cut].to_vec();
            z.resize(bytes.len() + 10, 0);
            assert!(!complete_with_damaged_length(&z, one), "cut {cut}");
            assert!(
                !complete_with_damaged_length(&bytes[..cut], one),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn segment_header_checks() {
        let h = segment_header(5);
        assert_eq!(check_segment_header(&h), Ok(5));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(check_segment_header(&bad).is_err());
        assert!(check_segment_header(&h[..10]).is_err());
        // A version 1 header (written before segment end records) is read.
        let mut v1 = h;
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&v1[..28]);
        v1[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(check_segment_header(&v1), Ok(5));
        let mut v3 = h;
        v3[8..12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32c::crc32c(&v3[..28]);
        v3[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(check_segment_header(&v3).is_err());
    }

    #[test]
    fn segment_end_round_trips() {
        let end = SegmentEnd {
            next_seq: 8,
            last: (1004, 3),
        };
        let mut buf = BytesMut::new();
        put_segment_end(&mut buf, &end);
        let Frame::Record {
            kind,
            end: last,
            payload,
            ..
        } = read_frame(&buf, 0)
        else {
            panic!("a record")
        };
        assert_eq!((kind, last), (kind::SEGMENT_END, true));
        assert_eq!(get_segment_end(payload), Ok(end));
        assert_eq!(buf.len(), SEGMENT_END_RECORD_LEN);
        // Every unfinished prefix is recognised, with zeros after it or not;
        // other damage is not.
        for cut in 1..buf.len() {
            let mut torn = buf[..cut].to_vec();
            assert!(torn_segment_end(&torn, 0), "cut at {cut}");
            torn.resize(4096, 0);
            assert!(torn_segment_end(&torn, 0), "cut at {cut}, zeros after");
        }
        assert!(!torn_segment_end(&buf, 0), "a whole record is not torn");
        let mut other = BytesMut::new();
        put_truncate_record(&mut other, 9);
        assert!(!torn_segment_end(&other[..other.len() - 1], 0));
        let mut more = buf[..20].to_vec();
        more.extend_from_slice(&[0; 40]);
        more.push(1);
        assert!(!torn_segment_end(&more, 0), "non-zero bytes further on");
    }
}
