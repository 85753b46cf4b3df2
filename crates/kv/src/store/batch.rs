//! The binary format of log entries (batches of [`Write`]s) and queries
//! (batches of [`Read`]s): the commands' serde form in postcard, decoded
//! from untrusted bytes without copies (the byte strings of a decoded
//! command borrow the input). Entries of the first format, written before
//! the commands were serde enums, are still read (`legacy`).
//!
//! ```text
//! entry = 0xD8 write*        each write a postcard `Write`
//!       | 0xD7 ...           the first format (`legacy`)
//! query = 0xD9 read*         each read a postcard `Read`
//!       | 0xDA room read*    room: a postcard `ReplyRoom`
//! ```
//!
//! An entry's length is 1 plus its writes' ([`encoded_write_len`]), so
//! that the server can size the entries it batches before it encodes them.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::{Read, Write};
use crate::frame::put_error;

pub(super) const WRITES_FORMAT: u8 = 0xD8;
pub(super) const READS_FORMAT: u8 = 0xD9;
/// A query with room for its replies ([`encode_bounded_reads`]).
pub(super) const BOUNDED_READS_FORMAT: u8 = 0xDA;

/// The longest value APPEND may make (Redis's default proto-max-bulk-len).
pub(super) const MAX_STRING: usize = 512 << 20;

/// Appends the postcard form of `value`.
fn put<T: Serialize + ?Sized>(b: &mut BytesMut, value: &T) {
    // Serializing the commands cannot fail: every type in them has a
    // postcard form, and a `BytesMut` grows as needed.
    if let Err(e) = postcard::to_io(value, b.writer()) {
        unreachable!("a command has no postcard form: {e}");
    }
}

/// The bytes `write` adds to the log entry [`encode_writes`] makes (which
/// is 1 byte plus the sum of its writes').
pub fn encoded_write_len(write: &Write) -> usize {
    postcard::experimental::serialized_size(write).unwrap_or(0)
}

/// Encodes one log entry holding these writes, applied in order (an entry
/// with no writes is valid and has no replies).
pub fn encode_writes(writes: &[Write]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + writes.iter().map(encoded_write_len).sum::<usize>());
    b.put_u8(WRITES_FORMAT);
    for w in writes {
        put(&mut b, w);
    }
    b.freeze()
}

/// Encodes one query holding these reads, answered in order against one
/// state of the store.
pub fn encode_reads(reads: &[Read]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(READS_FORMAT);
    for r in reads {
        put(&mut b, r);
    }
    b.freeze()
}

/// How much room a bounded query's replies have ([`encode_bounded_reads`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRoom {
    /// The bytes the replies after the first may take in all: reads are
    /// answered in order while they fit, the rest are left unanswered.
    pub soft: usize,
    /// The bytes the first reply may take: if it does not fit, no read is
    /// answered.
    pub hard: usize,
    /// The largest reply any read may have (the client output buffer
    /// limit): a read whose reply would be larger is answered with an
    /// error naming it, and its reply is never built.
    pub limit: usize,
}

/// Encodes a query like [`encode_reads`] whose replies are bounded by
/// `room`, computed before any is built. Its answer is the number of reads
/// answered (u32 LE: the first ones, at least one unless the first did not
/// fit `room.hard`), the number of them refused for `room.limit` (u32 LE),
/// then their RESP replies; see [`split_bounded_answer`].
pub fn encode_bounded_reads(reads: &[Read], room: ReplyRoom) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(BOUNDED_READS_FORMAT);
    put(&mut b, &room);
    for r in reads {
        put(&mut b, r);
    }
    b.freeze()
}

thread_local! {
    /// Why the last value was refused by [`refuse`]: postcard keeps no
    /// message of a serde error.
    static WHY: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The error a command's decoder gives for a value it refuses (an
/// unknown code, a rule that does not parse, an EXEC inside an EXEC).
pub(crate) fn refuse<E: serde::de::Error>(why: std::fmt::Arguments<'_>) -> E {
    WHY.with(|w| *w.borrow_mut() = Some(why.to_string()));
    E::custom(why)
}

/// What postcard's error says, or for a refused value, why.
fn why(e: postcard::Error) -> String {
    match (e, WHY.with(|w| w.borrow_mut().take())) {
        (postcard::Error::SerdeDeCustom, Some(why)) => why,
        (e, _) => e.to_string(),
    }
}

/// Decodes the commands of a batch, whole: nothing is done unless all of
/// it decodes. The error says which command is wrong and why.
fn decode_all<'a, T: Deserialize<'a>>(mut body: &'a [u8]) -> Result<Vec<T>, String> {
    let mut all = Vec::new();
    while !body.is_empty() {
        let (item, rest) = postcard::take_from_bytes(body)
            .map_err(|e| format!("command {}: {}", all.len() + 1, why(e)))?;
        all.push(item);
        body = rest;
    }
    Ok(all)
}

/// Decodes a log entry, whole, in either format.
pub(super) fn decode_writes(entry: &[u8]) -> Result<Vec<Write<&[u8]>>, String> {
    let Some((&format, body)) = entry.split_first() else {
        return Err("it is empty".into());
    };
    match format {
        WRITES_FORMAT => decode_all(body),
        super::legacy::FORMAT => super::legacy::decode_writes(body),
        _ => Err(format!("unknown format byte {format:#04x}")),
    }
}

/// A decoded query: its room if it is bounded, and its reads.
pub(super) type Query<'a> = (Option<ReplyRoom>, Vec<Read<&'a [u8]>>);

/// Decodes a query, whole.
pub(super) fn decode_query(query: &[u8]) -> Result<Query<'_>, String> {
    let Some((&format, body)) = query.split_first() else {
        return Err("it is empty".into());
    };
    match format {
        READS_FORMAT => Ok((None, decode_all(body)?)),
        BOUNDED_READS_FORMAT => {
            let (room, body) =
                postcard::take_from_bytes(body).map_err(|e| format!("its room: {}", why(e)))?;
            Ok((Some(room), decode_all(body)?))
        }
        _ => Err(format!("unknown format byte {format:#04x}")),
    }
}

/// What a bounded query answered ([`encode_bounded_reads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedAnswer {
    /// How many of the reads were answered (the first ones).
    pub answered: usize,
    /// How many of those were refused for the client output buffer limit.
    pub refused: usize,
    /// Their replies, in parts to be sent one after the other (slices and
    /// clones of the answer's parts: no copy).
    pub replies: Vec<Bytes>,
}

/// Splits the answer to a bounded query, given in parts (one part for an
/// answer from [`raft_node::StateMachine::query`]): the counts are the
/// first 8 bytes of the first part (the store never splits them off);
/// `None` if it is not one (an error reply).
pub fn split_bounded_answer(answer: &[Bytes]) -> Option<BoundedAnswer> {
    let (first, rest) = answer.split_first()?;
    let count = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(first.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let (answered, refused) = (count(0)?, count(4)?);
    let mut replies = Vec::with_capacity(answer.len());
    if first.len() > 8 {
        replies.push(first.slice(8..));
    }
    replies.extend(rest.iter().cloned());
    Some(BoundedAnswer {
        answered,
        refused,
        replies,
    })
}

/// The length of `$<n>\r\n<n bytes>\r\n`.
pub(super) fn bulk_len(n: usize) -> usize {
    1 + decimal_len(n as u64) + 2 + n + 2
}

/// The length of `*<n>\r\n`.
pub(super) fn array_len(n: usize) -> usize {
    1 + decimal_len(n as u64) + 2
}

pub(super) fn decimal_len(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

pub(super) fn batch_error(what: &str, why: &str) -> Bytes {
    let mut out = BytesMut::new();
    put_error(&mut out, &format!("ERR not a raft-kv {what} batch ({why})"));
    out.freeze()
}

// ---------------------------------------------------------------------------
// The fixed-width binary helpers of the snapshot format (and of `legacy`)
// ---------------------------------------------------------------------------

pub(super) fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("raft-kv cannot encode a string of 4 GiB or more")
}

/// A u32-LE length, then the bytes.
pub(super) fn put_str(b: &mut BytesMut, s: &[u8]) {
    b.put_u32_le(len32(s.len()));
    b.put_slice(s);
}

/// Reads an untrusted buffer; every length is checked against what is left.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(a)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    pub(super) fn str(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}
