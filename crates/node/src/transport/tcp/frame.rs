//! The TCP transport's wire format: length-delimited frames.
//!
//! ```text
//! +----------------+--------+---------------+----------------------+
//! | length: u32 LE | kind u8| id: u64 LE    | payload              |
//! +----------------+--------+---------------+----------------------+
//!                  '------------- length bytes -------------------'
//! ```
//!
//! `length` counts everything after itself (so at least
//! [`FRAME_HEAD`] = 9 bytes) and may not exceed the receiver's maximum frame
//! size. The kinds ([`FrameKind`]):
//!
//! | kind | id | payload |
//! |------|----|---------|
//! | 1 `Hello` | 0 | [`Hello`]: magic, protocol version, max frame size, max requests in flight, cluster id, node id, advertised address |
//! | 2 `Request` | request id | [`codec::put_envelope`](crate::codec::put_envelope) |
//! | 3 `Reply` | id of the request answered | [`codec::put_reply`](crate::codec::put_reply) |
//! | 4 `Cancel` | id of the request given up | empty |
//! | 5 `Close` | 0 | the reason, UTF-8 |
//! | 6 `Listen` | 0 | empty: the sender serves requests over this connection |
//! | 7 `Post` | 0 | [`codec::put_envelope`](crate::codec::put_envelope) of a Raft message: a request that is not answered (version 2) |
//!
//! Integers are little-endian, like the rest of [`crate::codec`]. Request ids
//! are chosen by the side that sends the request; both sides may send
//! requests, so a `Reply` answers a request of the side that receives it.
//!
//! [`FrameDecoder`] is a pure function of its input: it never panics and
//! never buffers more than one frame's worth of bytes (a length above the
//! maximum is refused as soon as the 4 length bytes are in, an unknown kind
//! as soon as its byte is).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{put_envelope, put_reply, DecodeError, Reader};
use crate::transport::{Envelope, Reply};

/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 4;

/// Bytes of a frame after its length prefix and before its payload: the kind
/// and the id. The smallest valid length.
pub const FRAME_HEAD: usize = 9;

/// The first bytes of every [`Hello`] payload (`"RAFT"`).
pub const MAGIC: [u8; 4] = *b"RAFT";

/// The protocol version this implementation speaks: 2 adds `Post` frames,
/// sent only to a peer whose handshake says version 2 or later.
pub const VERSION: u32 = 2;

/// The oldest version accepted at the handshake; a peer with a version
/// outside `MIN_VERSION..=VERSION` is refused.
pub const MIN_VERSION: u32 = 1;

/// The first version that takes `Post` frames.
pub const POST_VERSION: u32 = 2;

/// The largest handshake frame read (a `Hello`, or the `Close` refusing
/// one): before a peer is accepted, at most this much is buffered for it,
/// whatever frame size it announces.
pub const MAX_HANDSHAKE_FRAME: usize = 16 * 1024;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// The handshake, first frame in each direction.
    Hello = 1,
    /// A request: an encoded [`Envelope`].
    Request = 2,
    /// A reply: an encoded [`Reply`].
    Reply = 3,
    /// The sender gave up waiting for the reply to this request id.
    Cancel = 4,
    /// The sender closes the connection; the payload says why.
    Close = 5,
    /// The sender takes requests over this connection (a back channel).
    Listen = 6,
    /// A one-way request: an encoded [`Envelope`] of a Raft message, not
    /// answered.
    Post = 7,
}

impl FrameKind {
    /// The kind with this byte, if any.
    pub fn from_u8(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            1 => FrameKind::Hello,
            2 => FrameKind::Request,
            3 => FrameKind::Reply,
            4 => FrameKind::Cancel,
            5 => FrameKind::Close,
            6 => FrameKind::Listen,
            7 => FrameKind::Post,
            _ => return None,
        })
    }
}

/// One decoded frame (its payload not decoded yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: FrameKind,
    /// The request id (0 for frames that are not about a request).
    pub id: u64,
    /// The rest of the frame.
    pub payload: Bytes,
}

/// Why the byte stream is not a sequence of valid frames. Each closes the
/// connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the maximum frame size.
    #[error("a frame of {length} bytes exceeds the maximum frame size of {max} bytes")]
    Oversized {
        /// The length announced.
        length: usize,
        /// The maximum.
        max: usize,
    },
    /// The length prefix is shorter than a frame's kind and id.
    #[error("a frame of {length} bytes is shorter than the {FRAME_HEAD}-byte frame head")]
    TooShort {
        /// The length announced.
        length: usize,
    },
    /// The kind byte is not one of [`FrameKind`].
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
}

/// Splits a byte stream into frames, refusing frames longer than a maximum.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames whose length exceeds `max_frame` bytes.
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder { max_frame }
    }

    /// The maximum frame length.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes the next whole frame off the front of `buf`: `Ok(None)` if more
    /// bytes are needed (nothing is consumed), an error if the stream is not
    /// valid (the connection must be closed; `buf` is left as it was).
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(length) = self.check(buf)? else {
            return Ok(None);
        };
        if buf.len() < LENGTH_BYTES + length {
            return Ok(None);
        }
        let mut frame = buf.split_to(LENGTH_BYTES + length);
        frame.advance(LENGTH_BYTES);
        let kind = frame.get_u8();
        let id = frame.get_u64_le();
        let kind = FrameKind::from_u8(kind).ok_or(FrameError::UnknownKind(kind))?;
        Ok(Some(Frame {
            kind,
            id,
            payload: frame.freeze(),
        }))
    }

    /// How many more bytes the next frame needs (0 if a whole frame is
    /// buffered or the stream is already invalid): a hint for reserving
    /// room before reading.
    pub fn missing(&self, buf: &[u8]) -> usize {
        match self.check(buf) {
            Ok(Some(length)) => (LENGTH_BYTES + length).saturating_sub(buf.len()),
            Ok(None) => LENGTH_BYTES + FRAME_HEAD - buf.len().min(LENGTH_BYTES + FRAME_HEAD),
            Err(_) => 0,
        }
    }

    /// Validates what of the next frame's head is buffered: its length once
    /// known, an error as soon as the length or kind is known to be bad.
    fn check(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..LENGTH_BYTES) else {
            return Ok(None);
        };
        let mut prefix_bytes = [0u8; LENGTH_BYTES];
        prefix_bytes.copy_from_slice(prefix);
        let length = u32::from_le_bytes(prefix_bytes) as usize;
        if length > self.max_frame {
            return Err(FrameError::Oversized {
                length,
                max: self.max_frame,
            });
        }
        if length < FRAME_HEAD {
            return Err(FrameError::TooShort { length });
        }
        if let Some(&kind) = buf.get(LENGTH_BYTES) {
            if FrameKind::from_u8(kind).is_none() {
                return Err(FrameError::UnknownKind(kind));
            }
        }
        Ok(Some(length))
    }
}

/// Starts a frame in `b`: a placeholder length, the kind and the id.
/// Returns where the frame starts, for [`finish_frame`].
fn start_frame(b: &mut BytesMut, kind: FrameKind, id: u64) -> usize {
    let start = b.len();
    b.put_u32_le(0);
    b.put_u8(kind as u8);
    b.put_u64_le(id);
    start
}

/// Writes the length of the frame started at `start`; its length (without
/// the prefix) or `None` if it does not fit a `u32`.
fn finish_frame(b: &mut BytesMut, start: usize) -> Option<usize> {
    let length = b.len() - start - LENGTH_BYTES;
    let prefix = u32::try_from(length).ok()?;
    b[start..start + LENGTH_BYTES].copy_from_slice(&prefix.to_le_bytes());
    Some(length)
}

/// A whole frame with this kind, id and payload.
pub fn encode_frame(kind: FrameKind, id: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(LENGTH_BYTES + FRAME_HEAD + payload.len());
    let start = start_frame(&mut b, kind, id);
    b.put_slice(payload);
    // A payload over 4 GiB cannot be framed: it is cut to an empty frame of
    // the same kind, which the receiver refuses as malformed.
    if finish_frame(&mut b, start).is_none() {
        return encode_frame(kind, id, &[]);
    }
    b.freeze()
}

/// A `Request` frame carrying `envelope`, and its length (without the
/// prefix; `usize::MAX` if it does not fit a `u32`: too large for any peer).
pub fn request_frame(id: u64, envelope: &Envelope) -> (Bytes, usize) {
    let mut b = BytesMut::with_capacity(LENGTH_BYTES + FRAME_HEAD + 64);
    let start = start_frame(&mut b, FrameKind::Request, id);
    put_envelope(&mut b, envelope);
    let length = finish_frame(&mut b, start).unwrap_or(usize::MAX);
    (b.freeze(), length)
}

/// A `Post` frame carrying `envelope`, and its length (without the
/// prefix; `usize::MAX` if it does not fit a `u32`).
pub fn post_frame(envelope: &Envelope) -> (Bytes, usize) {
    let mut b = BytesMut::with_capacity(LENGTH_BYTES + FRAME_HEAD + 64);
    let start = start_frame(&mut b, FrameKind::Post, 0);
    put_envelope(&mut b, envelope);
    let length = finish_frame(&mut b, start).unwrap_or(usize::MAX);
    (b.freeze(), length)
}

/// A `Reply` frame carrying `reply`, and its length (without the prefix;
/// `usize::MAX` if it does not fit a `u32`).
pub fn reply_frame(id: u64, reply: &Reply) -> (Bytes, usize) {
    let mut b = BytesMut::with_capacity(LENGTH_BYTES + FRAME_HEAD + 16);
    let start = start_frame(&mut b, FrameKind::Reply, id);
    put_reply(&mut b, reply);
    let length = finish_frame(&mut b, start).unwrap_or(usize::MAX);
    (b.freeze(), length)
}

/// The most bytes of a close reason sent.
const MAX_REASON: usize = 1024;

/// A `Close` frame with `reason` (cut to 1 KiB at a character boundary).
pub fn close_frame(reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode_frame(FrameKind::Close, 0, &reason.as_bytes()[..end])
}

/// The reason carried by a `Close` payload (invalid UTF-8 replaced, cut to
/// 1 KiB).
pub fn decode_close(payload: &[u8]) -> String {
    let cut = &payload[..payload.len().min(MAX_REASON)];
    String::from_utf8_lossy(cut).into_owned()
}

/// The handshake: what each side tells the other first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version ([`VERSION`]).
    pub version: u32,
    /// The largest frame the sender accepts.
    pub max_frame: u32,
    /// The most requests the sender takes in flight on this connection:
    /// the other side keeps its window at most this wide.
    pub max_in_flight: u32,
    /// The sender's cluster id string.
    pub cluster: String,
    /// The sender's node id (for logs).
    pub node: String,
    /// Where the sender listens, or empty (for back channels).
    pub address: String,
}

impl Hello {
    /// The whole `Hello` frame.
    pub fn frame(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(
            LENGTH_BYTES
                + FRAME_HEAD
                + 24
                + self.cluster.len()
                + self.node.len()
                + self.address.len(),
        );
        let start = start_frame(&mut b, FrameKind::Hello, 0);
        b.put_slice(&MAGIC);
        b.put_u32_le(self.version);
        b.put_u32_le(self.max_frame);
        b.put_u32_le(self.max_in_flight);
        for s in [&self.cluster, &self.node, &self.address] {
            b.put_u32_le(s.len() as u32);
            b.put_slice(s.as_bytes());
        }
        if finish_frame(&mut b, start).is_none() {
            return encode_frame(FrameKind::Hello, 0, &[]);
        }
        b.freeze()
    }

    /// Reads a `Hello` payload.
    pub fn decode(payload: &[u8]) -> Result<Hello, DecodeError> {
        let mut r = Reader::new(payload, "handshake");
        let magic = [r.u8()?, r.u8()?, r.u8()?, r.u8()?];
        if magic != MAGIC {
            return Err(r.err("not a raft-node TCP handshake (bad magic)"));
        }
        let hello = Hello {
            version: r.u32()?,
            max_frame: r.u32()?,
            max_in_flight: r.u32()?,
            cluster: r.string()?,
            node: r.string()?,
            address: r.string()?,
        };
        r.finish()?;
        Ok(hello)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_envelope, decode_reply};
    use crate::testkit::transport::sample_envelopes;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let decoder = FrameDecoder::new(1 << 20);
        let mut stream = BytesMut::new();
        let envelopes = sample_envelopes();
        for (i, e) in envelopes.iter().enumerate() {
            stream.extend_from_slice(&request_frame(i as u64, e).0);
        }
        // Fed in 1000-byte pieces.
        let all = stream.freeze();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in all.chunks(1000) {
            buf.extend_from_slice(piece);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                assert_eq!(frame.kind, FrameKind::Request);
                got.push((frame.id, decode_envelope(&frame.payload).unwrap()));
            }
        }
        assert!(buf.is_empty());
        assert_eq!(got.len(), envelopes.len());
        for (i, (id, e)) in got.into_iter().enumerate() {
            assert_eq!(id, i as u64);
            assert_eq!(e, envelopes[i]);
        }
        let (reply, _) = reply_frame(7, &Reply::Error("no".into()));
        let mut buf = BytesMut::from(&reply[..]);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.id, 7);
        assert_eq!(
            decode_reply(&frame.payload).unwrap(),
            Reply::Error("no".into())
        );
    }

    #[test]
    fn bad_heads_are_refused_early() {
        let decoder = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&101u32.to_le_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::Oversized {
                length: 101,
                max: 100
            })
        );
        let mut buf = BytesMut::from(&8u32.to_le_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooShort { length: 8 })
        );
        let mut buf = BytesMut::from(&[20, 0, 0, 0, 77][..]);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::UnknownKind(77)));
        let mut buf = BytesMut::from(&[20, 0, 0, 0, 2][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(decoder.missing(&buf), 19);
    }

    #[test]
    fn hello_round_trips() {
        let hello = Hello {
            version: VERSION,
            max_frame: 1 << 24,
            max_in_flight: 64,
            cluster: "c-☃".into(),
            node: "n1".into(),
            address: "127.0.0.1:7000".into(),
        };
        let mut buf = BytesMut::from(&hello.frame()[..]);
        let frame = FrameDecoder::new(1 << 20)
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(frame.kind, FrameKind::Hello);
        assert_eq!(Hello::decode(&frame.payload), Ok(hello));
        assert!(Hello::decode(b"RAFX").is_err());
        assert_eq!(decode_close(&close_frame("bye")[13..]), "bye");
        let long = "é".repeat(1000);
        let frame = close_frame(&long);
        assert!(frame.len() <= 13 + MAX_REASON);
        assert!(decode_close(&frame[13..]).chars().all(|c| c == 'é'));
    }
}
