//! A compact binary encoding of everything that leaves memory: Raft
//! messages and the other requests and replies between nodes (for byte
//! transports such as TCP), and log entries, hard state, snapshots and
//! identities (for storage such as the file persistence).
//!
//! Integers are little-endian; variable-length fields carry a `u32` length
//! first. Decoding never panics and never allocates more than the input
//! holds: every length is checked against what is left, and a malformed
//! input is a [`DecodeError`] that says what was being read and where.
//!
//! # For transports and stores of your own
//!
//! A transport that moves bytes sends [`encode_envelope`] and answers with
//! [`encode_reply`]; the receiving side calls [`decode_envelope`] and
//! [`decode_reply`]. A store writes entries, hard state, snapshots and
//! identities with the `put_*` functions and reads them back with a
//! [`Reader`] and the `get_*` ones. (With the `serde` feature the same
//! types also derive `Serialize` and `Deserialize`, for a format of your
//! choice.)
//!
//! # Versions
//!
//! This is the wire format of version [`WIRE_VERSION`] of the node's
//! protocol, the version the TCP transport's handshake carries. The rules
//! that keep nodes of neighbouring versions talking:
//!
//! - the encoding of an existing message, request or reply never changes
//!   within a version; a new kind gets a new type number, and a decoder
//!   refuses a type number it does not know with a [`DecodeError`] (the
//!   request fails, the connection stays usable);
//! - a node sends a peer only what the peer's version can decode: the TCP
//!   transport learns the peer's version in the handshake and falls back
//!   to what both understand (one-way post frames need version 2);
//! - what a store writes with these functions is versioned by the store
//!   itself (the file store's segments and snapshots carry their own
//!   format version and are read by later versions).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::{
    Append, AppendOutcome, AppendResponse, Body, Entry, EntryPayload, HardState, MemberRole,
    Membership, Message, Snapshot, SnapshotChunk, SnapshotMeta, SnapshotResponse, VoteRequest,
};

use crate::persistence::Identity;
use crate::transport::{Envelope, ErrorCode, Reply, Request};

/// The version of the wire format this module writes and reads (the
/// protocol version of the TCP transport's handshake).
pub const WIRE_VERSION: u32 = crate::transport::tcp::frame::VERSION;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} at byte {offset}: {reason}")]
pub struct DecodeError {
    /// What was being decoded.
    pub what: &'static str,
    /// Where in the input.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// A cursor over the input that checks every read.
pub struct Reader<'a> {
    buf: &'a [u8],
    start_len: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `buf`, describing errors as being about `what`.
    pub fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader {
            buf,
            start_len: buf.len(),
            what,
        }
    }

    /// An error at the current position.
    pub fn err(&self, reason: &'static str) -> DecodeError {
        DecodeError {
            what: self.what,
            offset: self.start_len - self.buf.len(),
            reason,
        }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless the input is used up.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(self.err("input ends early"))
        } else {
            Ok(())
        }
    }

    /// A byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }

    /// A bool (0 or 1).
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err("a boolean is neither 0 nor 1")),
        }
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32_le())
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_u64_le())
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        self.need(n)?;
        let b = Bytes::copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(b)
    }

    /// A length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("a string is not UTF-8"))
    }

    /// A count of items that each take at least `min_size` bytes: refused if
    /// the input cannot hold that many (so a hostile count cannot make the
    /// decoder allocate).
    pub fn count(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.buf.len() {
            return Err(self.err("a count larger than the input can hold"));
        }
        Ok(n)
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32_le(v.len() as u32);
    b.put_slice(v);
}

/// Appends the encoding of a membership.
pub fn put_membership(b: &mut BytesMut, m: &Membership) {
    b.put_u32_le(m.len() as u32);
    for (id, member) in m.members() {
        b.put_u64_le(id);
        b.put_u8(match member.role {
            MemberRole::Voter => 0,
            MemberRole::Learner => 1,
        });
        put_bytes(b, &member.context);
    }
}

/// Reads a membership.
pub fn get_membership(r: &mut Reader<'_>) -> Result<Membership, DecodeError> {
    let n = r.count(13)?;
    let mut m = Membership::default();
    for _ in 0..n {
        let id = r.u64()?;
        let role = r.u8()?;
        let context = r.bytes()?;
        let change = match role {
            0 => raft_core::ConfChange::AddVoter { id, context },
            1 => raft_core::ConfChange::AddLearner { id, context },
            _ => return Err(r.err("a member role is neither voter nor learner")),
        };
        m = m
            .apply(&change)
            .map_err(|_| r.err("a member is listed twice or has id 0"))?;
    }
    Ok(m)
}

/// Appends the encoding of a log entry.
pub fn put_entry(b: &mut BytesMut, e: &Entry) {
    b.put_u64_le(e.index);
    b.put_u64_le(e.term);
    match &e.payload {
        EntryPayload::Blank => b.put_u8(0),
        EntryPayload::Command(data) => {
            b.put_u8(1);
            put_bytes(b, data);
        }
        EntryPayload::Membership(m) => {
            b.put_u8(2);
            put_membership(b, m);
        }
    }
}

/// Reads a log entry.
pub fn get_entry(r: &mut Reader<'_>) -> Result<Entry, DecodeError> {
    let index = r.u64()?;
    let term = r.u64()?;
    let payload = match r.u8()? {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Command(r.bytes()?),
        2 => EntryPayload::Membership(get_membership(r)?),
        _ => return Err(r.err("unknown entry kind")),
    };
    Ok(Entry {
        index,
        term,
        payload,
    })
}

/// Appends the encoding of a hard state.
pub fn put_hard_state(b: &mut BytesMut, h: &HardState) {
    b.put_u64_le(h.term);
    b.put_u64_le(h.vote);
    b.put_u64_le(h.commit);
}

/// Reads a hard state.
pub fn get_hard_state(r: &mut Reader<'_>) -> Result<HardState, DecodeError> {
    Ok(HardState {
        term: r.u64()?,
        vote: r.u64()?,
        commit: r.u64()?,
    })
}

/// Appends the encoding of snapshot metadata.
pub fn put_snapshot_meta(b: &mut BytesMut, m: &SnapshotMeta) {
    b.put_u64_le(m.index);
    b.put_u64_le(m.term);
    put_membership(b, &m.membership);
}

/// Reads snapshot metadata.
pub fn get_snapshot_meta(r: &mut Reader<'_>) -> Result<SnapshotMeta, DecodeError> {
    Ok(SnapshotMeta {
        index: r.u64()?,
        term: r.u64()?,
        membership: get_membership(r)?,
    })
}

/// Appends the encoding of a whole snapshot.
pub fn put_snapshot(b: &mut BytesMut, s: &Snapshot) {
    put_snapshot_meta(b, &s.meta);
    put_bytes(b, &s.data);
}

/// Reads a whole snapshot.
pub fn get_snapshot(r: &mut Reader<'_>) -> Result<Snapshot, DecodeError> {
    Ok(Snapshot {
        meta: get_snapshot_meta(r)?,
        data: r.bytes()?,
    })
}

/// Appends the encoding of a node's identity.
pub fn put_identity(b: &mut BytesMut, i: &Identity) {
    put_bytes(b, i.id.as_bytes());
    put_bytes(b, i.cluster.as_bytes());
    put_membership(b, &i.bootstrap);
}

/// Reads a node's identity.
pub fn get_identity(r: &mut Reader<'_>) -> Result<Identity, DecodeError> {
    Ok(Identity {
        id: r.string()?,
        cluster: r.string()?,
        bootstrap: get_membership(r)?,
    })
}

/// Appends the encoding of a Raft message.
pub fn put_message(b: &mut BytesMut, m: &Message) {
    b.put_u64_le(m.cluster);
    b.put_u64_le(m.from);
    b.put_u64_le(m.to);
    b.put_u64_le(m.term);
    match &m.body {
        Body::Append(a) => {
            b.put_u8(0);
            b.put_u64_le(a.prev_index);
            b.put_u64_le(a.prev_term);
            b.put_u64_le(a.commit);
            b.put_u64_le(a.round);
            b.put_u32_le(a.entries.len() as u32);
            for e in &a.entries {
                put_entry(b, e);
            }
        }
        Body::AppendResponse(r) => {
            b.put_u8(1);
            b.put_u64_le(r.round);
            match r.outcome {
                AppendOutcome::Accepted { match_index } => {
                    b.put_u8(0);
                    b.put_u64_le(match_index);
                }
                AppendOutcome::Rejected {
                    prev_index,
                    last_index,
                    conflict,
                } => {
                    b.put_u8(1);
                    b.put_u64_le(prev_index);
                    b.put_u64_le(last_index);
                    b.put_u8(conflict.is_some() as u8);
                    let (t, i) = conflict.unwrap_or((0, 0));
                    b.put_u64_le(t);
                    b.put_u64_le(i);
                }
            }
        }
        Body::Heartbeat { commit, round } => {
            b.put_u8(2);
            b.put_u64_le(*commit);
            b.put_u64_le(*round);
        }
        Body::Commit { commit } => {
            b.put_u8(3);
            b.put_u64_le(*commit);
        }
        Body::HeartbeatResponse { round } => {
            b.put_u8(4);
            b.put_u64_le(*round);
        }
        Body::Vote(v) => {
            b.put_u8(5);
            b.put_u8(v.pre as u8);
            b.put_u64_le(v.last_index);
            b.put_u64_le(v.last_term);
            b.put_u8(v.transfer as u8);
        }
        Body::VoteResponse { pre, granted } => {
            b.put_u8(6);
            b.put_u8(*pre as u8);
            b.put_u8(*granted as u8);
        }
        Body::Snapshot(c) => {
            b.put_u8(7);
            put_snapshot_meta(b, &c.meta);
            b.put_u64_le(c.total_bytes);
            b.put_u64_le(c.offset);
            b.put_u64_le(c.round);
            put_bytes(b, &c.data);
        }
        Body::SnapshotResponse(r) => {
            b.put_u8(8);
            b.put_u64_le(r.snapshot_index);
            b.put_u64_le(r.next_offset);
            b.put_u8(r.done as u8);
            b.put_u64_le(r.round);
        }
        Body::TimeoutNow => b.put_u8(9),
        Body::ReadIndex { id } => {
            b.put_u8(10);
            b.put_u64_le(*id);
        }
        Body::ReadIndexResponse { id, index } => {
            b.put_u8(11);
            b.put_u64_le(*id);
            b.put_u8(index.is_some() as u8);
            b.put_u64_le(index.unwrap_or(0));
        }
    }
}

/// Reads a Raft message.
pub fn get_message(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let cluster = r.u64()?;
    let from = r.u64()?;
    let to = r.u64()?;
    let term = r.u64()?;
    let body = match r.u8()? {
        0 => {
            let prev_index = r.u64()?;
            let prev_term = r.u64()?;
            let commit = r.u64()?;
            let round = r.u64()?;
            let n = r.count(17)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(get_entry(r)?);
            }
            Body::Append(Append {
                prev_index,
                prev_term,
                entries,
                commit,
                round,
            })
        }
        1 => {
            let round = r.u64()?;
            let outcome = match r.u8()? {
                0 => AppendOutcome::Accepted {
                    match_index: r.u64()?,
                },
                1 => {
                    let prev_index = r.u64()?;
                    let last_index = r.u64()?;
                    let has = r.bool()?;
                    let t = r.u64()?;
                    let i = r.u64()?;
                    AppendOutcome::Rejected {
                        prev_index,
                        last_index,
                        conflict: has.then_some((t, i)),
                    }
                }
                _ => return Err(r.err("unknown append outcome")),
            };
            Body::AppendResponse(AppendResponse { round, outcome })
        }
        2 => Body::Heartbeat {
            commit: r.u64()?,
            round: r.u64()?,
        },
        3 => Body::Commit { commit: r.u64()? },
        4 => Body::HeartbeatResponse { round: r.u64()? },
        5 => Body::Vote(VoteRequest {
            pre: r.bool()?,
            last_index: r.u64()?,
            last_term: r.u64()?,
            transfer: r.bool()?,
        }),
        6 => Body::VoteResponse {
            pre: r.bool()?,
            granted: r.bool()?,
        },
        7 => {
            let meta = get_snapshot_meta(r)?;
            let total_bytes = r.u64()?;
            let offset = r.u64()?;
            let round = r.u64()?;
            let data = r.bytes()?;
            Body::Snapshot(Box::new(SnapshotChunk {
                meta,
                total_bytes,
                offset,
                data,
                round,
            }))
        }
        8 => Body::SnapshotResponse(SnapshotResponse {
            snapshot_index: r.u64()?,
            next_offset: r.u64()?,
            done: r.bool()?,
            round: r.u64()?,
        }),
        9 => Body::TimeoutNow,
        10 => Body::ReadIndex { id: r.u64()? },
        11 => {
            let id = r.u64()?;
            let has = r.bool()?;
            let index = r.u64()?;
            Body::ReadIndexResponse {
                id,
                index: has.then_some(index),
            }
        }
        _ => return Err(r.err("unknown message type")),
    };
    Ok(Message {
        cluster,
        from,
        to,
        term,
        body,
    })
}

/// The bytes an envelope carrying an append of one command entry adds to
/// the command's own bytes, when the sender's address is `from_bytes` long:
/// the envelope's cluster (8), address (4 + `from_bytes`) and request kind
/// (1); the message's cluster, sender, receiver, term and kind (33); the
/// append's previous index and term, commit, round and entry count (36);
/// the entry's index, term, kind and length (21). A forwarded command
/// (`Request::Within` a `Request::Command`) adds less: 26 + `from_bytes`.
pub const fn one_entry_append_overhead(from_bytes: usize) -> usize {
    (8 + 4 + 1) + from_bytes + 33 + 36 + 21
}

/// Encodes an envelope.
pub fn encode_envelope(e: &Envelope) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    put_envelope(&mut b, e);
    b.freeze()
}

/// Appends the encoding of an envelope.
pub fn put_envelope(b: &mut BytesMut, e: &Envelope) {
    b.put_u64_le(e.cluster);
    put_bytes(b, e.from.as_bytes());
    put_request(b, &e.request);
}

fn put_request(b: &mut BytesMut, request: &Request) {
    match request {
        Request::Raft(m) => {
            b.put_u8(0);
            put_message(b, m);
        }
        Request::Command(c) => {
            b.put_u8(1);
            put_bytes(b, c);
        }
        Request::Read(q) => {
            b.put_u8(2);
            put_bytes(b, q);
        }
        Request::Join { address } => {
            b.put_u8(3);
            put_bytes(b, address.as_bytes());
        }
        Request::Leave { id } => {
            b.put_u8(4);
            put_bytes(b, id.as_bytes());
        }
        Request::Hello => b.put_u8(5),
        Request::SessionCommand {
            session,
            seq,
            floor,
            command,
        } => {
            b.put_u8(7);
            b.put_u64_le(*session);
            b.put_u64_le(*seq);
            b.put_u64_le(*floor);
            put_bytes(b, command);
        }
        Request::OpenSession => b.put_u8(8),
        Request::Within { within, call } => {
            b.put_u8(6);
            b.put_u64_le(u64::try_from(within.as_millis()).unwrap_or(u64::MAX));
            put_request(b, call);
        }
    }
}

/// Decodes an envelope.
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let mut r = Reader::new(bytes, "envelope");
    let cluster = r.u64()?;
    let from: Arc<str> = Arc::from(r.string()?);
    let request = get_request(&mut r, true)?;
    r.finish()?;
    Ok(Envelope {
        cluster,
        from,
        request,
    })
}

/// Decodes a request; a [`Request::Within`] only if `outer` (it carries one
/// call, never another `Within`).
fn get_request(r: &mut Reader<'_>, outer: bool) -> Result<Request, DecodeError> {
    let request = match r.u8()? {
        0 => Request::Raft(get_message(r)?),
        1 => Request::Command(r.bytes()?),
        2 => Request::Read(r.bytes()?),
        3 => Request::Join {
            address: r.string()?,
        },
        4 => Request::Leave { id: r.string()? },
        5 => Request::Hello,
        6 if outer => Request::Within {
            within: Duration::from_millis(r.u64()?),
            call: Box::new(get_request(r, false)?),
        },
        7 => Request::SessionCommand {
            session: r.u64()?,
            seq: r.u64()?,
            floor: r.u64()?,
            command: r.bytes()?,
        },
        8 => Request::OpenSession,
        _ => return Err(r.err("unknown request type")),
    };
    Ok(request)
}

/// Encodes a reply.
pub fn encode_reply(reply: &Reply) -> Bytes {
    let mut b = BytesMut::with_capacity(16);
    put_reply(&mut b, reply);
    b.freeze()
}

/// Appends the encoding of a reply.
pub fn put_reply(b: &mut BytesMut, reply: &Reply) {
    match reply {
        Reply::Ack => b.put_u8(0),
        Reply::Output(o) => {
            b.put_u8(1);
            put_bytes(b, o);
        }
        Reply::Hello {
            id,
            cluster,
            empty,
            client_address,
        } => {
            b.put_u8(2);
            put_bytes(b, id.as_bytes());
            put_bytes(b, cluster.as_bytes());
            b.put_u8(*empty as u8);
            // Last and only when set: a node that serves no clients answers
            // as nodes did before the field existed.
            if !client_address.is_empty() {
                put_bytes(b, client_address.as_bytes());
            }
        }
        Reply::Error(e) => {
            b.put_u8(3);
            put_bytes(b, e.as_bytes());
        }
        Reply::NotMember(e) => {
            b.put_u8(4);
            put_bytes(b, e.as_bytes());
        }
        Reply::Failed { code, message } => {
            b.put_u8(5);
            b.put_u8(code.number());
            put_bytes(b, message.as_bytes());
        }
    }
}

/// Decodes a reply.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, DecodeError> {
    let mut r = Reader::new(bytes, "reply");
    let reply = match r.u8()? {
        0 => Reply::Ack,
        1 => Reply::Output(r.bytes()?),
        2 => Reply::Hello {
            id: r.string()?,
            cluster: r.string()?,
            empty: r.bool()?,
            client_address: if r.remaining() > 0 {
                r.string()?
            } else {
                String::new()
            },
        },
        3 => Reply::Error(r.string()?),
        4 => Reply::NotMember(r.string()?),
        5 => Reply::Failed {
            code: ErrorCode::from_number(r.u8()?),
            message: r.string()?,
        },
        _ => return Err(r.err("unknown reply type")),
    };
    r.finish()?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::transport::sample_envelopes;

    #[test]
    fn every_sample_envelope_round_trips() {
        for e in sample_envelopes() {
            let bytes = encode_envelope(&e);
            assert_eq!(decode_envelope(&bytes), Ok(e.clone()), "{e:?}");
            // Every strict prefix is refused, never a panic.
            for cut in 0..bytes.len() {
                assert!(decode_envelope(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn the_one_entry_append_overhead_is_exact() {
        for (from, data) in [("", 0usize), ("127.0.0.1:7001", 5), ("x", 1000)] {
            let append = |entries: Vec<Entry>| Envelope {
                cluster: u64::MAX,
                from: Arc::from(from),
                request: Request::Raft(Message {
                    cluster: 1,
                    from: 2,
                    to: 3,
                    term: 4,
                    body: Body::Append(Append {
                        prev_index: 5,
                        prev_term: 6,
                        entries,
                        commit: 7,
                        round: 8,
                    }),
                }),
            };
            let entry = Entry {
                index: 9,
                term: 4,
                payload: EntryPayload::Command(Bytes::from(vec![1u8; data])),
            };
            assert_eq!(
                encode_envelope(&append(vec![entry])).len(),
                data + one_entry_append_overhead(from.len())
            );
            let forwarded = Envelope {
                cluster: 1,
                from: Arc::from(from),
                request: Request::Command(Bytes::from(vec![1u8; data])),
            };
            assert!(
                encode_envelope(&forwarded).len() < data + one_entry_append_overhead(from.len())
            );
        }
    }

    #[test]
    fn replies_round_trip_and_garbage_is_refused() {
        let replies = [
            Reply::Ack,
            Reply::Output(Bytes::from_static(b"out")),
            Reply::Hello {
                id: "a".into(),
                cluster: "c".into(),
                empty: true,
                client_address: String::new(),
            },
            Reply::Hello {
                id: "a".into(),
                cluster: "c".into(),
                empty: false,
                client_address: "10.0.0.1:6379".into(),
            },
            Reply::Error("no".into()),
            Reply::NotMember("not a member".into()),
            Reply::Failed {
                code: ErrorCode::OutcomeUnknown(crate::UnknownKind::Unspecified),
                message: "lost".into(),
            },
        ];
        let replies = replies
            .into_iter()
            .chain(crate::UnknownKind::ALL.map(|kind| Reply::Failed {
                code: ErrorCode::OutcomeUnknown(kind),
                message: kind.to_string(),
            }));
        for r in replies {
            assert_eq!(decode_reply(&encode_reply(&r)), Ok(r));
        }
        let e = decode_reply(&[9]).unwrap_err();
        assert_eq!(e.reason, "unknown reply type");
        let huge_count = [0u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        let mut r = Reader::new(&huge_count, "test");
        r.u32().unwrap();
        assert!(r.count(17).is_err());
    }
}
