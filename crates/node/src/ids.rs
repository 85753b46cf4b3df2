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

/// What the membership records about a member besides its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerContext {
    /// The member's id.
    pub id: String,
    /// Where it listens, in the transport's terms.
    pub address: String,
}

impl PeerContext {
    /// Encodes the context for the membership.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(4 + self.id.len() + self.address.len());
        b.put_u32_le(self.id.len() as u32);
        b.put_slice(self.id.as_bytes());
        b.put_slice(self.address.as_bytes());
        b.freeze()
    }

    /// Decodes a context; `None` if the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<PeerContext> {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let id = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?;
        let address = std::str::from_utf8(bytes.get(4 + len..)?).ok()?;
        Some(PeerContext {
            id: id.to_string(),
            address: address.to_string(),
        })
    }

    /// The context of member `number` in `membership`, if it has one.
    pub fn of(membership: &Membership, number: NodeId) -> Option<PeerContext> {
        membership
            .get(number)
            .and_then(|m| PeerContext::decode(&m.context))
    }
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
        let c = PeerContext {
            id: "ckxyz".into(),
            address: "127.0.0.1:7000".into(),
        };
        assert_eq!(PeerContext::decode(&c.encode()), Some(c));
        assert_eq!(PeerContext::decode(b"\xff\xff\xff\xffab"), None);
    }
}
