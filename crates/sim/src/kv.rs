//! The small key-value state machine the simulated clients use: read, write
//! and compare-and-set on a few keys, with a compact command encoding and a
//! snapshot format.

use std::collections::BTreeMap;
use std::hash::Hasher;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::hash::{mix, WordHasher};

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
    /// The sum of [`pair_hash`] over the map, kept up to date on every
    /// change (hashing the whole map after every applied entry would cost
    /// more than applying it).
    digest: u64,
    /// The index of the last entry applied.
    pub applied: u64,
}

/// One key and its value's share of [`Kv::state_hash`].
fn pair_hash(key: u64, value: u64) -> u64 {
    mix(mix(key ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(value))
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
                self.set(c.key, v);
                Outcome::Written
            }
            Action::Cas { expected, new } => {
                let ok = self.map.get(&c.key).copied() == expected;
                if ok {
                    self.set(c.key, new);
                }
                Outcome::Cas(ok)
            }
        })
    }

    fn set(&mut self, key: u64, value: u64) {
        if let Some(old) = self.map.insert(key, value) {
            self.digest = self.digest.wrapping_sub(pair_hash(key, old));
        }
        self.digest = self.digest.wrapping_add(pair_hash(key, value));
    }

    /// The value of `key`.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.map.get(&key).copied()
    }

    /// A hash of the contents (not of `applied`): equal maps hash alike,
    /// whatever order their keys were written in.
    pub fn state_hash(&self) -> u64 {
        mix(self.digest ^ self.map.len() as u64)
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
        let mut kv = Kv {
            applied,
            ..Kv::default()
        };
        for _ in 0..n {
            let k = b.get_u64_le();
            let v = b.get_u64_le();
            kv.set(k, v);
        }
        Some(kv)
    }
}

/// A stable hash of an entry payload, for comparing logs across nodes.
pub fn payload_hash(payload: &raft_core::EntryPayload) -> u64 {
    let mut h = WordHasher::default();
    match payload {
        raft_core::EntryPayload::Blank => h.word(0),
        raft_core::EntryPayload::Command(data) => {
            h.word(1);
            h.write(data);
        }
        raft_core::EntryPayload::Membership(m) => {
            h.word(2);
            for (id, member) in m.members() {
                h.word(id);
                h.word(member.role as u64);
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
        assert_eq!(restored.state_hash(), kv.state_hash());
        assert_eq!(Kv::restore(b"bad"), None);
    }

    #[test]
    fn equal_maps_hash_alike_and_different_ones_apart() {
        let write = |key, v| Command {
            op: 1,
            key,
            action: Action::Write(v),
        };
        let (mut a, mut b) = (Kv::default(), Kv::default());
        a.apply(1, Some(&write(1, 10)));
        a.apply(2, Some(&write(2, 20)));
        b.apply(1, Some(&write(2, 7)));
        b.apply(2, Some(&write(1, 10)));
        assert_ne!(a.state_hash(), b.state_hash());
        b.apply(3, Some(&write(2, 20)));
        assert_eq!(a.state_hash(), b.state_hash());
        assert_ne!(a.state_hash(), Kv::default().state_hash());
    }
}
