//! The example state machine: an in-memory key-value map with set,
//! delete and compare-and-set, and reads of one key. It is what a node
//! runs when [`Options::state_machine`](crate::Options::state_machine) is
//! not set, so that `Node::new(Options::default())` is a working
//! single-node store; an application brings its own [`StateMachine`] (the
//! [guide](crate::guide) shows how).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), raft_node::NodeError> {
//! use raft_node::example::{kv_get, KvCommand, KvOutput};
//! use raft_node::{Node, Options};
//!
//! let node = Node::new(Options::default()).await?; // runs a KvStateMachine
//! node.command(KvCommand::Set { key: "k".into(), value: "v".into() }.encode()).await?;
//! let answer = node.read(kv_get(b"k")).await?;
//! assert_eq!(KvOutput::decode(&answer), Some(KvOutput::Value(Some("v".into()))));
//! # node.shutdown().await?; Ok(()) }
//! ```
//!
//! The crate's root exports the node and its interfaces, not this example:
//!
//! ```compile_fail
//! use raft_node::KvStateMachine; // it is raft_node::example::KvStateMachine
//! ```

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::LogIndex;

use crate::state_machine::{RestoreError, StateMachine};

/// A command of the default key-value state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvCommand {
    /// Set `key` to `value`.
    Set {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Set `key` to `new` if it holds `expected` (`None`: absent).
    Cas {
        /// The key.
        key: Bytes,
        /// The value required.
        expected: Option<Bytes>,
        /// The value to set.
        new: Bytes,
    },
}

/// What a command or query of the key-value machine returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvOutput {
    /// A `Set` was done.
    Done,
    /// A `Delete` or `Cas`: whether it changed something.
    Changed(bool),
    /// A `get`: the value, if any.
    Value(Option<Bytes>),
    /// The command or query was not understood.
    Error(String),
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32_le(v.len() as u32);
    b.put_slice(v);
}

fn get_bytes(b: &mut &[u8]) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_u32_le() as usize;
    if b.remaining() < n {
        return None;
    }
    let v = Bytes::copy_from_slice(&b[..n]);
    b.advance(n);
    Some(v)
}

impl KvCommand {
    /// Encodes the command for [`crate::Node::command`].
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            KvCommand::Set { key, value } => {
                b.put_u8(1);
                put_bytes(&mut b, key);
                put_bytes(&mut b, value);
            }
            KvCommand::Delete { key } => {
                b.put_u8(2);
                put_bytes(&mut b, key);
            }
            KvCommand::Cas { key, expected, new } => {
                b.put_u8(3);
                put_bytes(&mut b, key);
                b.put_u8(expected.is_some() as u8);
                put_bytes(&mut b, expected.as_deref().unwrap_or_default());
                put_bytes(&mut b, new);
            }
        }
        b.freeze()
    }

    /// Decodes a command; `None` if the bytes are not one.
    pub fn decode(mut b: &[u8]) -> Option<KvCommand> {
        if b.is_empty() {
            return None;
        }
        let tag = b.get_u8();
        let c = match tag {
            1 => KvCommand::Set {
                key: get_bytes(&mut b)?,
                value: get_bytes(&mut b)?,
            },
            2 => KvCommand::Delete {
                key: get_bytes(&mut b)?,
            },
            3 => {
                let key = get_bytes(&mut b)?;
                if b.is_empty() {
                    return None;
                }
                let has = b.get_u8() != 0;
                let expected = get_bytes(&mut b)?;
                let new = get_bytes(&mut b)?;
                KvCommand::Cas {
                    key,
                    expected: has.then_some(expected),
                    new,
                }
            }
            _ => return None,
        };
        b.is_empty().then_some(c)
    }
}

/// The query of the key-value machine: the value of `key`.
pub fn kv_get(key: &[u8]) -> Bytes {
    Bytes::copy_from_slice(key)
}

impl KvOutput {
    /// Encodes the output.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            KvOutput::Done => b.put_u8(1),
            KvOutput::Changed(c) => {
                b.put_u8(2);
                b.put_u8(*c as u8);
            }
            KvOutput::Value(v) => {
                b.put_u8(3);
                b.put_u8(v.is_some() as u8);
                put_bytes(&mut b, v.as_deref().unwrap_or_default());
            }
            KvOutput::Error(e) => {
                b.put_u8(4);
                put_bytes(&mut b, e.as_bytes());
            }
        }
        b.freeze()
    }

    /// Decodes an output; `None` if the bytes are not one.
    pub fn decode(mut b: &[u8]) -> Option<KvOutput> {
        if b.is_empty() {
            return None;
        }
        Some(match b.get_u8() {
            1 => KvOutput::Done,
            2 if !b.is_empty() => KvOutput::Changed(b.get_u8() != 0),
            3 if !b.is_empty() => {
                let has = b.get_u8() != 0;
                let v = get_bytes(&mut b)?;
                KvOutput::Value(has.then_some(v))
            }
            4 => KvOutput::Error(String::from_utf8_lossy(&get_bytes(&mut b)?).into_owned()),
            _ => return None,
        })
    }
}

/// The default state machine: a map from byte keys to byte values.
/// Commands are [`KvCommand`]s, queries are keys ([`kv_get`]), outputs are
/// [`KvOutput`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvStateMachine {
    map: BTreeMap<Bytes, Bytes>,
}

impl KvStateMachine {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.map.get(key)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl StateMachine for KvStateMachine {
    fn apply(&mut self, _index: LogIndex, command: &[u8]) -> Bytes {
        let out = match KvCommand::decode(command) {
            Some(KvCommand::Set { key, value }) => {
                self.map.insert(key, value);
                KvOutput::Done
            }
            Some(KvCommand::Delete { key }) => KvOutput::Changed(self.map.remove(&key).is_some()),
            Some(KvCommand::Cas { key, expected, new }) => {
                let ok = self.map.get(&key) == expected.as_ref();
                if ok {
                    self.map.insert(key, new);
                }
                KvOutput::Changed(ok)
            }
            None => KvOutput::Error("not a key-value command".into()),
        };
        out.encode()
    }

    fn query(&self, query: &[u8]) -> Bytes {
        KvOutput::Value(self.map.get(query).cloned()).encode()
    }

    fn snapshot(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u64_le(self.map.len() as u64);
        for (k, v) in &self.map {
            put_bytes(&mut b, k);
            put_bytes(&mut b, v);
        }
        b.freeze()
    }

    fn restore(&mut self, snapshot: Bytes) -> Result<(), RestoreError> {
        let mut b = &snapshot[..];
        if b.is_empty() {
            self.map.clear();
            return Ok(());
        }
        if b.remaining() < 8 {
            return Err(RestoreError::Truncated {
                what: "the header".into(),
            });
        }
        let n = b.get_u64_le();
        let mut map = BTreeMap::new();
        for i in 0..n {
            let k = get_bytes(&mut b).ok_or_else(|| RestoreError::Truncated {
                what: format!("key {i} of {n}"),
            })?;
            let v = get_bytes(&mut b).ok_or_else(|| RestoreError::Truncated {
                what: format!("value {i} of {n}"),
            })?;
            map.insert(k, v);
        }
        if !b.is_empty() {
            return Err(RestoreError::TrailingBytes {
                what: "the last value".into(),
                bytes: b.len(),
            });
        }
        self.map = map;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_outputs_and_snapshots_round_trip() {
        let cmds = [
            KvCommand::Set {
                key: "a".into(),
                value: "1".into(),
            },
            KvCommand::Cas {
                key: "a".into(),
                expected: Some("1".into()),
                new: "2".into(),
            },
            KvCommand::Cas {
                key: "b".into(),
                expected: None,
                new: "x".into(),
            },
            KvCommand::Delete { key: "b".into() },
        ];
        let mut sm = KvStateMachine::default();
        let mut outs = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            assert_eq!(KvCommand::decode(&c.encode()).as_ref(), Some(c));
            outs.push(KvOutput::decode(&sm.apply(i as u64 + 1, &c.encode())).unwrap());
        }
        assert_eq!(
            outs,
            vec![
                KvOutput::Done,
                KvOutput::Changed(true),
                KvOutput::Changed(true),
                KvOutput::Changed(true)
            ]
        );
        let got = KvOutput::decode(&sm.query(&kv_get(b"a"))).unwrap();
        assert_eq!(got, KvOutput::Value(Some("2".into())));
        let mut other = KvStateMachine::default();
        other.restore(sm.snapshot()).unwrap();
        assert_eq!(other, sm);
        assert!(other
            .restore(Bytes::from_static(b"\x05\0\0\0\0\0\0\0"))
            .is_err());
        let bad = KvOutput::decode(&sm.apply(9, b"\x09junk")).unwrap();
        assert!(matches!(bad, KvOutput::Error(_)));
    }
}
