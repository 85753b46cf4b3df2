//! The values a key holds: a string, a hash (fields to values), a set (of
//! members) or a list. A command meant for one type answers any other with
//! Redis's WRONGTYPE error ([`WRONGTYPE`]) and changes nothing.
//!
//! Hashes and sets are kept like the key space ([`Coll`]): ordered by the
//! fixed hash of each field or member, so that an HSCAN or SSCAN cursor
//! means what a SCAN cursor does, and every node holds, iterates and picks
//! from them in the same order.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

use super::batch::{len32, put_str, Reader};
use super::key_hash;
use super::keyspace::{lookup, remove, spot, Map, Slot, Spot};

/// Redis's error for a command run against a key of another type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// What a key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    /// A byte string (also what INCR and friends count in).
    Str(Bytes),
    /// Fields and their values; never empty (the last HDEL removes the key).
    Hash(Box<Coll<Bytes>>),
    /// Members; never empty.
    Set(Box<Coll<()>>),
    /// Elements in order; never empty.
    List(VecDeque<Bytes>),
}

/// The snapshot codes of the types.
const T_STR: u8 = 0;
const T_HASH: u8 = 1;
const T_SET: u8 = 2;
const T_LIST: u8 = 3;

impl Value {
    /// The name TYPE answers.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::List(_) => "list",
        }
    }

    /// The string, if this is one.
    pub(super) fn as_str(&self) -> Option<&Bytes> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes [`Value::put_snapshot`] writes.
    pub(super) fn snapshot_len(&self) -> usize {
        1 + match self {
            Value::Str(s) => 4 + s.len(),
            Value::Hash(h) => 4 + h.iter().map(|(f, v)| 8 + f.len() + v.len()).sum::<usize>(),
            Value::Set(s) => 4 + s.iter().map(|(m, _)| 4 + m.len()).sum::<usize>(),
            Value::List(l) => 4 + l.iter().map(|e| 4 + e.len()).sum::<usize>(),
        }
    }

    /// Writes the value in the snapshot format (version 4): its type, then
    /// a string, or a count and the fields and values, members or elements.
    pub(super) fn put_snapshot(&self, b: &mut BytesMut) {
        match self {
            Value::Str(s) => {
                b.put_u8(T_STR);
                put_str(b, s);
            }
            Value::Hash(h) => {
                b.put_u8(T_HASH);
                b.put_u32_le(len32(h.len()));
                for (f, v) in h.iter() {
                    put_str(b, f);
                    put_str(b, v);
                }
            }
            Value::Set(s) => {
                b.put_u8(T_SET);
                b.put_u32_le(len32(s.len()));
                for (m, _) in s.iter() {
                    put_str(b, m);
                }
            }
            Value::List(l) => {
                b.put_u8(T_LIST);
                b.put_u32_le(len32(l.len()));
                for e in l.iter() {
                    put_str(b, e);
                }
            }
        }
    }

    /// Reads a value written by [`Value::put_snapshot`]; `slice` turns the
    /// bytes read into slices of the snapshot. The error says what is wrong.
    pub(super) fn read_snapshot<'a>(
        rd: &mut Reader<'a>,
        slice: &dyn Fn(&'a [u8]) -> Bytes,
    ) -> Result<Value, String> {
        let cut = || "it is cut off".to_string();
        let code = rd.u8().ok_or_else(cut)?;
        if code == T_STR {
            return Ok(Value::Str(slice(rd.str().ok_or_else(cut)?)));
        }
        let n = rd.u32().ok_or_else(cut)? as usize;
        let per = if code == T_HASH { 8 } else { 4 };
        if n == 0 {
            return Err("it is an empty collection".into());
        }
        if n > rd.buf.len() / per {
            return Err(format!(
                "it claims {n} items but only {} bytes are left",
                rd.buf.len()
            ));
        }
        let mut item = || rd.str().map(slice).ok_or_else(cut);
        match code {
            T_HASH => {
                let mut h = Coll::default();
                for _ in 0..n {
                    let (f, v) = (item()?, item()?);
                    if !h.insert(f, v) {
                        return Err("it holds a field twice".into());
                    }
                }
                Ok(Value::Hash(Box::new(h)))
            }
            T_SET => {
                let mut s = Coll::default();
                for _ in 0..n {
                    if !s.insert(item()?, ()) {
                        return Err("it holds a member twice".into());
                    }
                }
                Ok(Value::Set(Box::new(s)))
            }
            T_LIST => {
                let mut l = VecDeque::with_capacity(n);
                for _ in 0..n {
                    l.push_back(item()?);
                }
                Ok(Value::List(l))
            }
            other => Err(format!("its type code {other} is unknown")),
        }
    }
}

/// A hash's fields or a set's members: ordered by their fixed hash, like
/// the key space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Coll<V> {
    map: Map<V>,
    len: usize,
}

impl<V> Default for Coll<V> {
    fn default() -> Self {
        Coll {
            map: Map::new(),
            len: 0,
        }
    }
}

impl<V> Coll<V> {
    /// The number of items.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// True with no item.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of `item`.
    pub(super) fn get(&self, item: &[u8]) -> Option<&V> {
        lookup(&self.map, key_hash(item), item)
    }

    /// Sets `item` to `value`; true if it is new.
    pub(super) fn insert(&mut self, item: Bytes, value: V) -> bool {
        match spot(&mut self.map, key_hash(&item), &item) {
            Spot::Present(v) => {
                *v = value;
                false
            }
            Spot::Absent(a) => {
                a.fill(item, value);
                self.len += 1;
                true
            }
        }
    }

    /// Removes `item`; its value if it was there.
    pub(super) fn remove(&mut self, item: &[u8]) -> Option<V> {
        let v = remove(&mut self.map, key_hash(item), item)?;
        self.len -= 1;
        Some(v)
    }

    /// Every item, in (hash, item) order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Bytes, &V)> {
        self.map.values().flat_map(Slot::iter)
    }

    /// One step of HSCAN or SSCAN: the items of the hashes from `cursor`
    /// on, at least `count` of them (all of a hash's at once), and the
    /// cursor after them (0 at the end).
    pub(super) fn scan(&self, cursor: u64, count: usize) -> (u64, Vec<(&Bytes, &V)>) {
        let mut next = 0;
        let mut items = Vec::new();
        for (&h, slot) in self.map.range(cursor..) {
            if items.len() >= count.max(1) {
                next = h;
                break;
            }
            items.extend(slot.iter());
        }
        (next, items)
    }

    /// `n` items picked by `rng`, each at most once (all of them if `n`
    /// is at least the length), in the order picked.
    pub(super) fn pick_distinct(&self, n: usize, rng: &mut Rng) -> Vec<(&Bytes, &V)> {
        let mut all: Vec<(&Bytes, &V)> = self.iter().collect();
        if n >= all.len() {
            return all;
        }
        // A partial Fisher-Yates shuffle: the first n are the picks.
        for i in 0..n {
            let j = i + rng.below(all.len() - i);
            all.swap(i, j);
        }
        all.truncate(n);
        all
    }

    /// `n` items picked by `rng`, each independently (an item may come
    /// more than once).
    pub(super) fn pick_repeating(&self, n: usize, rng: &mut Rng) -> Vec<(&Bytes, &V)> {
        let all: Vec<(&Bytes, &V)> = self.iter().collect();
        if all.is_empty() {
            return all;
        }
        (0..n).map(|_| all[rng.below(all.len())]).collect()
    }
}

/// The generator behind SPOP, SRANDMEMBER and HRANDFIELD: SplitMix64,
/// seeded from the log (the entry's index and the command's place in it),
/// so that every node picks the same items; never a node's own randomness.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    /// The generator of the `position`th command of the entry at `index`.
    pub(super) fn for_command(index: u64, position: u64) -> Rng {
        let mut r = Rng(index ^ position.rotate_left(32) ^ 0x5241_4654_4b56_5250);
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0), without modulo bias worth speaking of
    /// (128-bit multiply).
    pub(super) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}
