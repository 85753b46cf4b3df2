//! Where replies go, for every command family: the entry's output (a
//! `BytesMut`), a query's answer ([`Answer`], which shares long stored
//! values instead of copying them), or a counter of a reply's bytes
//! ([`Size`]: a bounded query sizes every reply before it builds any). A
//! command written once against [`Out`] is sized and built by the same
//! code.

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::{array_len, bulk_len, decimal_len};
use crate::frame::{put_array, put_bulk, put_error, put_int, put_null, put_simple};

/// A stored value (or key) of at least this many bytes is not copied into
/// an answer built in parts ([`raft_node::StateMachine::query_parts`]): the
/// answer holds a clone of the stored `Bytes` (a reference count) as a part
/// of its own. A shorter one is copied with the RESP framing around it: a
/// copy of a few KiB costs less than a part of its own (an entry in the
/// list of parts, one more buffer in the vectored write that sends it), and
/// a reply of many short values stays a few large parts.
///
/// A shared value is kept alive by the reply until it is written, even if
/// the key is overwritten or deleted meanwhile: that memory was counted
/// already when the key held it, and only one copy of it exists however
/// many replies hold it. Values are stored in buffers of their own (copied
/// out of the log entry that set them), except after a snapshot is
/// restored: they are then slices of the snapshot's one buffer (a file
/// mapped into memory, or the bytes received), which a reply holding one
/// keeps alive until it is written. An APPEND to a value a reply holds
/// copies it into a new buffer instead of growing it in place.
pub const SHARED_VALUE_BYTES: usize = 4096;

/// The most a chunk of framing of an answer in parts reserves at first.
const FRAMING_CHUNK: usize = 16 * 1024;

/// Writes a bulk reply, growing the buffer once.
pub(super) fn bulk(out: &mut BytesMut, v: &[u8]) {
    out.reserve(v.len() + 16);
    put_bulk(out, v);
}

/// Writes the decimal digits of `n` at the end of `buf`; returns them.
pub(super) fn u64_digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The decimal form of `n` as a value.
pub(super) fn i64_value(n: i64) -> Bytes {
    let mut buf = [0u8; 21];
    let mut digits = [0u8; 20];
    let d = u64_digits(n.unsigned_abs(), &mut digits);
    let start = usize::from(n >= 0);
    buf[0] = b'-';
    buf[1..=d.len()].copy_from_slice(d);
    Bytes::copy_from_slice(&buf[start..=d.len()])
}

/// An answer being built: RESP framing and short values are copied into
/// `chunk`; a value of at least `share_from` bytes ends the chunk (which
/// becomes a part) and is added as a part of its own, a clone of the
/// stored `Bytes`.
pub(super) struct Answer {
    /// The parts before `chunk`.
    parts: Vec<Bytes>,
    /// Where framing and copied values go: the next part.
    pub(super) chunk: BytesMut,
    /// The length from which a value is shared rather than copied
    /// (`usize::MAX`: never).
    share_from: usize,
}

impl Answer {
    /// An answer in one buffer, every value copied into it
    /// ([`raft_node::StateMachine::query`]).
    pub(super) fn whole() -> Answer {
        Answer {
            parts: Vec::new(),
            chunk: BytesMut::new(),
            share_from: usize::MAX,
        }
    }

    /// An answer in parts, sharing values of [`SHARED_VALUE_BYTES`] or more
    /// ([`raft_node::StateMachine::query_parts`]).
    pub(super) fn in_parts() -> Answer {
        Answer {
            parts: Vec::new(),
            chunk: BytesMut::new(),
            share_from: SHARED_VALUE_BYTES,
        }
    }

    /// Makes room for an answer of `total` bytes: all of it in one buffer,
    /// or, in parts, at most [`FRAMING_CHUNK`] (most of a large answer is
    /// shared values).
    pub(super) fn reserve(&mut self, total: usize) {
        let n = if self.share_from == usize::MAX {
            total
        } else {
            total.min(FRAMING_CHUNK)
        };
        self.chunk.reserve(n);
    }

    /// Writes the bulk reply of a stored value or key.
    pub(super) fn bulk(&mut self, v: &Bytes) {
        if v.len() < self.share_from {
            bulk(&mut self.chunk, v);
            return;
        }
        let mut digits = [0u8; 20];
        self.chunk.reserve(1 + 20 + 2);
        self.chunk.put_u8(b'$');
        self.chunk
            .put_slice(u64_digits(v.len() as u64, &mut digits));
        self.chunk.put_slice(b"\r\n");
        self.parts.push(self.chunk.split().freeze());
        self.parts.push(v.clone());
        self.chunk.extend_from_slice(b"\r\n");
    }

    /// The answer in one buffer (built by [`Answer::whole`], whose values
    /// are all copied).
    pub(super) fn into_bytes(self) -> Bytes {
        debug_assert!(self.parts.is_empty());
        self.chunk.freeze()
    }

    /// The answer's parts, in order; none if it is empty.
    pub(super) fn into_parts(mut self) -> Vec<Bytes> {
        if !self.chunk.is_empty() {
            self.parts.push(self.chunk.freeze());
        }
        self.parts
    }
}

/// Where a reply is written: the entry's output, a query's answer, or a
/// counter of its bytes.
pub(super) trait Out {
    /// A stored value or key.
    fn bulk(&mut self, v: &Bytes);
    /// Bytes made for the reply.
    fn bulk_slice(&mut self, v: &[u8]);
    /// An integer.
    fn int(&mut self, n: i64);
    /// The header of an array of `n` items.
    fn array(&mut self, n: usize);
    /// A null bulk string.
    fn null(&mut self);
    /// A null array (`*-1`).
    fn null_array(&mut self);
    /// An error (its text begins with its code).
    fn error(&mut self, e: &str);
    /// A simple string.
    fn simple(&mut self, s: &str);

    /// The reply of a scan step: a two-item array, the cursor after it
    /// first (the items' array follows).
    fn cursor(&mut self, next: u64) {
        let mut digits = [0u8; 20];
        self.array(2);
        self.bulk_slice(u64_digits(next, &mut digits));
    }
}

impl Out for BytesMut {
    fn bulk(&mut self, v: &Bytes) {
        bulk(self, v);
    }
    fn bulk_slice(&mut self, v: &[u8]) {
        bulk(self, v);
    }
    fn int(&mut self, n: i64) {
        put_int(self, n);
    }
    fn array(&mut self, n: usize) {
        put_array(self, n);
    }
    fn null(&mut self) {
        put_null(self);
    }
    fn null_array(&mut self) {
        self.extend_from_slice(b"*-1\r\n");
    }
    fn error(&mut self, e: &str) {
        put_error(self, e);
    }
    fn simple(&mut self, s: &str) {
        put_simple(self, s);
    }
}

impl Out for Answer {
    fn bulk(&mut self, v: &Bytes) {
        Answer::bulk(self, v);
    }
    fn bulk_slice(&mut self, v: &[u8]) {
        put_bulk(&mut self.chunk, v);
    }
    fn int(&mut self, n: i64) {
        put_int(&mut self.chunk, n);
    }
    fn array(&mut self, n: usize) {
        put_array(&mut self.chunk, n);
    }
    fn null(&mut self) {
        put_null(&mut self.chunk);
    }
    fn null_array(&mut self) {
        self.chunk.extend_from_slice(b"*-1\r\n");
    }
    fn error(&mut self, e: &str) {
        put_error(&mut self.chunk, e);
    }
    fn simple(&mut self, s: &str) {
        put_simple(&mut self.chunk, s);
    }
}

/// Counts the bytes of a reply instead of writing it.
#[derive(Default)]
pub(super) struct Size(pub(super) usize);

impl Out for Size {
    fn bulk(&mut self, v: &Bytes) {
        self.0 = self.0.saturating_add(bulk_len(v.len()));
    }
    fn bulk_slice(&mut self, v: &[u8]) {
        self.0 = self.0.saturating_add(bulk_len(v.len()));
    }
    fn int(&mut self, n: i64) {
        self.0 += 3 + usize::from(n < 0) + decimal_len(n.unsigned_abs());
    }
    fn array(&mut self, n: usize) {
        self.0 += array_len(n);
    }
    fn null(&mut self) {
        self.0 += 5;
    }
    fn null_array(&mut self) {
        self.0 += 5;
    }
    fn error(&mut self, e: &str) {
        self.0 += e.len() + 3;
    }
    fn simple(&mut self, s: &str) {
        self.0 += s.len() + 3;
    }
}
