//! The small key-value state machine the simulated clients use: read, write
//! and compare-and-set on a few keys, with a compact command encoding and a
//! snapshot format.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A client command, as carried in a log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// The id of the operation in the history.
    pub op: u64,
    /// The key.
    pub key: u64,
    /// What to do.
    pub action: Action,
}

/// What a command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Set the key.
    Write(u64),
    /// Set the key to `new` if it holds `expected` (None: absent).
    Cas {
        /// The value required.
        expected: Option<u64>,
        /// The value to set.
        new: u64,
    },
}

/// What applying a command returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A write.
    Written,
    /// A CAS: whether it matched.
    Cas(bool),
}

impl Command {
    /// Encodes the command.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(34);
        b.put_u64_le(self.op);
        b.put_u64_le(self.key);
        match self.action {
            Action::Write(v) => {
                b.put_u8(0);
                b.put_u64_le(v);
            }
            Action::Cas { expected, new } => {
                b.put_u8(1);
                b.put_u64_le(new);
                b.put_u8(expected.is_some() as u8);
                b.put_u64_le(expected.unwrap_or(0));
            }
        }
        b.freeze()
    }

    /// Decodes a command, or None if the bytes are not one.
    pub fn decode(mut b: &[u8]) -> Option<Command> {
        if b.len() < 25 {
            return None;
        }
        let op = b.get_u64_le();
        let key = b.get_u64_le();
        let action = match b.get_u8() {
            0 if b.len() >= 8 => Action::Write(b.get_u64_le()),
            1 if b.len() >= 17 => {
                let new = b.get_u64_le();
                let has = b.get_u8() != 0;
                let v = b.get_u64_le();
                Action::Cas {
                    expected: has.then_some(v),
                    new,
                }
            }
            _ => return None,
        };
        Some(Command { op, key, action })
    }
}

/// The replicated map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<u64, u64>,
    /// The index of the last entry applied.
    pub applied: u64,
}

impl Kv {
    /// Applies the entry at `index`; blank and membership entries carry no
    /// command and only move `applied`.
    pub fn apply(&mut self, index: u64, command: Option<&Command>) -> Option<Outcome> {
        assert!(index > self.applied, "apply {index} after {}", self.applied);
        self.applied = index;
        let c = command?;
        Some(match c.action {
            Action::Write(v) => {
                self.map.insert(c.key, v);
                Outcome::Written
            }
            Action::Cas { expected, new } => {
                let ok = self.map.get(&c.key).copied() == expected;
                if ok {
                    self.map.insert(c.key, new);
                }
                Outcome::Cas(ok)
            }
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.map.get(&key).copied()
    }

    /// A hash of the contents (not of `applied`).
    pub fn state_hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.map.hash(&mut h);
        h.finish()
    }

    /// Serializes the map and the applied index.
    pub fn snapshot(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16 + 16 * self.map.len());
        b.put_u64_le(self.applied);
        b.put_u64_le(self.map.len() as u64);
        for (&k, &v) in &self.map {
            b.put_u64_le(k);
            b.put_u64_le(v);
        }
        b.freeze()
    }

    /// Rebuilds from a snapshot made by [`Kv::snapshot`]; an empty snapshot
    /// is the empty map.
    pub fn restore(mut b: &[u8]) -> Option<Kv> {
        if b.is_empty() {
            return Some(Kv::default());
        }
        if b.len() < 16 {
            return None;
        }
        let applied = b.get_u64_le();
        let n = b.get_u64_le() as usize;
        if b.len() != n * 16 {
            return None;
        }
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let k = b.get_u64_le();
            let v = b.get_u64_le();
            map.insert(k, v);
        }
        Some(Kv { map, applied })
    }
}

/// A stable hash of an entry payload, for comparing logs across nodes.
pub fn payload_hash(payload: &raft_core::EntryPayload) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match payload {
        raft_core::EntryPayload::Blank => 0u8.hash(&mut h),
        raft_core::EntryPayload::Command(data) => {
            1u8.hash(&mut h);
            data.hash(&mut h);
        }
        raft_core::EntryPayload::Membership(m) => {
            2u8.hash(&mut h);
            for (id, member) in m.members() {
                id.hash(&mut h);
                (member.role as u8).hash(&mut h);
            }
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for action in [
            Action::Write(7),
            Action::Cas {
                expected: None,
                new: 3,
            },
            Action::Cas {
                expected: Some(9),
                new: 1,
            },
        ] {
            let c = Command {
                op: 42,
                key: 2,
                action,
            };
            assert_eq!(Command::decode(&c.encode()), Some(c));
        }
        assert_eq!(Command::decode(b"short"), None);
    }

    #[test]
    fn cas_and_snapshot() {
        let mut kv = Kv::default();
        let cas = |expected, new| Command {
            op: 1,
            key: 5,
            action: Action::Cas { expected, new },
        };
        assert_eq!(
            kv.apply(1, Some(&cas(Some(1), 2))),
            Some(Outcome::Cas(false))
        );
        assert_eq!(kv.apply(2, Some(&cas(None, 2))), Some(Outcome::Cas(true)));
        assert_eq!(kv.apply(3, None), None);
        assert_eq!(kv.get(5), Some(2));
        let restored = Kv::restore(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv);
        assert_eq!(Kv::restore(b"bad"), None);
    }
}
