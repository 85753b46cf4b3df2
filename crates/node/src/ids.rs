//! Node ids: users name nodes with strings (cuid by default); the core
//! numbers them. The number is a stable hash of the string, and the string
//! and address travel with the membership, so every node can map back.

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::{Membership, NodeId, NO_NODE};

/// The core's number for the node named `id`: FNV-1a 64 of its bytes (stable
/// across versions and platforms, since it is persisted), never 0.
pub fn node_number(id: &str) -> NodeId {
    hash64(id.as_bytes())
}

/// The number carried on the wire for the cluster named `cluster`.
pub fn cluster_number(cluster: &str) -> u64 {
    hash64(cluster.as_bytes())
}

fn hash64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    if h == NO_NODE {
        1
    } else {
        h
    }
}

/// What the membership records about a member besides its number: the
/// context bytes the core keeps with it, replicated in configuration
/// entries and snapshots.
///
/// Two versions of the record exist, told apart by their first four bytes:
///
/// - version 0, `u32 id len, id, address` (little-endian length), written
///   by every release before the mark and still written for a record with
///   no flag set, so that a node of an earlier release reads the voters and
///   deliberate learners of a mixed cluster during a rolling upgrade;
/// - version 1, `u32 0xFFFF_FFFF, u8 version (1), u8 flags, u32 id len, id,
///   address`: no version 0 record starts with that length (its id would
///   take 4 GiB). Flag bit 0 is [`PeerContext::joining`]; other bits are
///   ignored, so that a later release may add flags older ones can skip.
///
/// A record without the mark (every version 0 record) is a voter, or a
/// learner that stays one: added by `add_learner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerContext {
    /// The member's id.
    pub id: String,
    /// Where it listens, in the transport's terms.
    pub address: String,
    /// A learner added by a join that has not finished: every leader
    /// promotes it once it has caught up, or removes it if it does not
    /// within `join_timeout` of that leader taking it over. Cleared when
    /// it is promoted.
    pub joining: bool,
}

/// The first four bytes of a versioned record (a version 0 record starts
/// with its id's length instead, which is never this).
const VERSIONED: u32 = u32::MAX;
/// The version [`PeerContext::encode`] writes when a flag is set.
const VERSION: u8 = 1;
/// Flag bit: the learner was added by a join that has not finished.
const FLAG_JOINING: u8 = 1;

impl PeerContext {
    /// A member with no flag set: a voter, or a learner that stays one.
    pub fn new(id: impl Into<String>, address: impl Into<String>) -> PeerContext {
        PeerContext {
            id: id.into(),
            address: address.into(),
            joining: false,
        }
    }

    /// The same member, with the joining mark set as `joining` says.
    pub fn marked(mut self, joining: bool) -> PeerContext {
        self.joining = joining;
        self
    }

    /// Encodes the context for the membership: in version 0 when no flag
    /// is set, else in version 1.
    pub fn encode(&self) -> Bytes {
        let flags = if self.joining { FLAG_JOINING } else { 0 };
        let mut b = BytesMut::with_capacity(10 + self.id.len() + self.address.len());
        if flags != 0 {
            b.put_u32_le(VERSIONED);
            b.put_u8(VERSION);
            b.put_u8(flags);
        }
        b.put_u32_le(self.id.len() as u32);
        b.put_slice(self.id.as_bytes());
        b.put_slice(self.address.as_bytes());
        b.freeze()
    }

    /// Decodes a context of either version; `None` if the bytes are not
    /// one (truncated, not UTF-8, or of a version this release does not
    /// know).
    pub fn decode(bytes: &[u8]) -> Option<PeerContext> {
        let (flags, rest) = if le_u32(bytes)? == VERSIONED {
            match bytes.get(4..6)? {
                [VERSION, flags] => (*flags, &bytes[6..]),
                _ => return None,
            }
        } else {
            (0, bytes)
        };
        let len = le_u32(rest)? as usize;
        let id = std::str::from_utf8(rest.get(4..4usize.checked_add(len)?)?).ok()?;
        let address = std::str::from_utf8(rest.get(4 + len..)?).ok()?;
        Some(PeerContext {
            id: id.to_string(),
            address: address.to_string(),
            joining: flags & FLAG_JOINING != 0,
        })
    }

    /// The context of member `number` in `membership`, if it has one.
    pub fn of(membership: &Membership, number: NodeId) -> Option<PeerContext> {
        membership
            .get(number)
            .and_then(|m| PeerContext::decode(&m.context))
    }
}

fn le_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_never_zero() {
        assert_eq!(node_number(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(node_number("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(node_number("n1"), node_number("n2"));
    }

    #[test]
    fn context_round_trip() {
        let c = PeerContext::new("ckxyz", "127.0.0.1:7000");
        assert_eq!(PeerContext::decode(&c.encode()), Some(c.clone()));
        let joining = c.marked(true);
        assert_eq!(PeerContext::decode(&joining.encode()), Some(joining));
        assert_eq!(PeerContext::decode(b"\xff\xff\xff\xffab"), None);
    }

    /// Records written before the joining mark existed (in logs and
    /// snapshots of earlier releases) still load: as members without the
    /// mark. And a record without the mark is still written that way.
    #[test]
    fn a_version_0_record_is_a_member_without_the_mark() {
        let old = b"\x05\x00\x00\x00ckxyz127.0.0.1:7000";
        let c = PeerContext::decode(old).expect("a version 0 record");
        assert_eq!(c, PeerContext::new("ckxyz", "127.0.0.1:7000"));
        assert!(!c.joining);
        assert_eq!(&c.encode()[..], &old[..]);
        // An empty address, as some transports' members have.
        let bare = PeerContext::decode(b"\x01\x00\x00\x00a").expect("a record");
        assert_eq!(bare, PeerContext::new("a", ""));
    }

    #[test]
    fn a_version_1_record_carries_the_mark() {
        let marked = b"\xff\xff\xff\xff\x01\x01\x02\x00\x00\x00j1127.0.0.1:7004";
        let c = PeerContext::decode(marked).expect("a version 1 record");
        assert_eq!(c, PeerContext::new("j1", "127.0.0.1:7004").marked(true));
        assert_eq!(&c.encode()[..], &marked[..]);
        // Flags this release does not know are skipped.
        let later = b"\xff\xff\xff\xff\x01\x03\x02\x00\x00\x00j1a";
        assert_eq!(
            PeerContext::decode(later),
            Some(PeerContext::new("j1", "a").marked(true))
        );
        // A version this release does not know, or a truncated record, is
        // not one.
        assert_eq!(
            PeerContext::decode(b"\xff\xff\xff\xff\x02\x00\x01\x00\x00\x00ja"),
            None
        );
        assert_eq!(PeerContext::decode(b"\xff\xff\xff\xff\x01"), None);
        assert_eq!(
            PeerContext::decode(b"\xff\xff\xff\xff\x01\x01\x09\x00\x00\x00j1"),
            None
        );
        assert_eq!(PeerContext::decode(b"\x05\x00"), None);
    }
}
