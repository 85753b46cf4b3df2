//! How every command family reaches the keys: a key of any type, or as one
//! type ([`Kind`]: WRONGTYPE for another); a hash, set or list made empty
//! by a write's first item and removed with its last (Redis keeps no empty
//! collection); a key removed with its time to live.
//!
//! The commands on hashes, sets and lists share one shape: find the key,
//! refuse another type, answer a missing key, run, drop the key if the
//! command emptied it, record it for WATCH if the command changed it. That
//! shape is written once here ([`KvStore::answer_as`] for reads,
//! [`KvStore::change_as`] and [`KvStore::change_or_make`] for writes,
//! [`KvStore::answer_scan`] for HSCAN and SSCAN); each command gives only
//! its own body.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::args::{parse_cursor, scan_options};
use super::glob_match;
use super::keyspace::{key_hash, lookup, remove, spot, Slot, Spot};
use super::reply::Out;
use super::value::{Coll, Value, WRONGTYPE};
use super::KvStore;

/// A hash: fields and their values.
pub(super) type Hash = Coll<Bytes>;
/// A set: members.
pub(super) type Set = Coll<()>;
/// A list: elements in order.
pub(super) type List = VecDeque<Bytes>;

/// A type of value a key may hold, as the commands on it see it.
pub(super) trait Kind: Sized {
    /// The value as this type, if it is one.
    fn of(v: &Value) -> Option<&Self>;
    /// The same, to change it.
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    /// An empty value of this type (for a write's first item).
    fn empty() -> Value;
}

impl Kind for Hash {
    fn of(v: &Value) -> Option<&Self> {
        match v {
            Value::Hash(h) => Some(&**h),
            _ => None,
        }
    }
    fn of_mut(v: &mut Value) -> Option<&mut Self> {
        match v {
            Value::Hash(h) => Some(&mut **h),
            _ => None,
        }
    }
    fn empty() -> Value {
        Value::Hash(Box::default())
    }
}

impl Kind for Set {
    fn of(v: &Value) -> Option<&Self> {
        match v {
            Value::Set(s) => Some(&**s),
            _ => None,
        }
    }
    fn of_mut(v: &mut Value) -> Option<&mut Self> {
        match v {
            Value::Set(s) => Some(&mut **s),
            _ => None,
        }
    }
    fn empty() -> Value {
        Value::Set(Box::default())
    }
}

impl Kind for List {
    fn of(v: &Value) -> Option<&Self> {
        match v {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    fn of_mut(v: &mut Value) -> Option<&mut Self> {
        match v {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    fn empty() -> Value {
        Value::List(VecDeque::new())
    }
}

impl KvStore {
    /// Every key and value, in (hash, key) order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Bytes, &Value)> {
        self.map.values().flat_map(Slot::iter)
    }

    /// What `key` holds, of any type.
    pub(super) fn get(&self, key: &[u8]) -> Option<&Value> {
        lookup(&self.map, key_hash(key), key)
    }

    /// What `key` holds, to change it.
    pub(super) fn get_mut(&mut self, key: &[u8]) -> Option<&mut Value> {
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(v) => Some(v),
            Spot::Absent(_) => None,
        }
    }

    /// The string `key` holds: `Err` (WRONGTYPE) if it holds another type.
    pub(super) fn get_str(&self, key: &[u8]) -> Result<Option<&Bytes>, &'static str> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(_) => Err(WRONGTYPE),
        }
    }

    /// The `T` at `key`: `Ok(None)` if absent, `Err` (WRONGTYPE) if it
    /// holds another type.
    pub(super) fn get_as<T: Kind>(&self, key: &[u8]) -> Result<Option<&T>, &'static str> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => T::of(v).map(Some).ok_or(WRONGTYPE),
        }
    }

    /// Sets `key` to the string `value` (copied), whatever it held.
    pub(super) fn put(&mut self, key: &[u8], value: &[u8]) {
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(v) => *v = Value::Str(Bytes::copy_from_slice(value)),
            Spot::Absent(a) => {
                a.fill(
                    Bytes::copy_from_slice(key),
                    Value::Str(Bytes::copy_from_slice(value)),
                );
                self.len += 1;
            }
        }
    }

    /// Adds a key known to be absent.
    pub(super) fn insert_new(&mut self, key: &[u8], value: Value) {
        if let Spot::Absent(a) = spot(&mut self.map, key_hash(key), key) {
            a.fill(Bytes::copy_from_slice(key), value);
            self.len += 1;
        }
    }

    /// Removes a key of any type and its time to live; true if it was there.
    pub(super) fn remove_key(&mut self, key: &[u8]) -> bool {
        if remove(&mut self.map, key_hash(key), key).is_some() {
            self.deadlines.clear(key);
            self.len -= 1;
            true
        } else {
            false
        }
    }

    /// Removes the key if it holds an empty hash, set or list (Redis keeps
    /// no empty collection).
    pub(super) fn drop_if_empty(&mut self, key: &[u8]) {
        let empty = match self.get(key) {
            Some(Value::Hash(h)) => h.is_empty(),
            Some(Value::Set(s)) => s.is_empty(),
            Some(Value::List(l)) => l.is_empty(),
            _ => false,
        };
        if empty {
            self.remove_key(key);
        }
    }

    /// The `T` at `key`, made (empty) if absent; WRONGTYPE for another
    /// type. A caller that may leave it empty calls `drop_if_empty`.
    pub(super) fn make_as<T: Kind>(&mut self, key: &[u8]) -> Result<&mut T, &'static str> {
        if self.get(key).is_none() {
            self.insert_new(key, T::empty());
        }
        self.get_mut(key).and_then(T::of_mut).ok_or(WRONGTYPE)
    }

    /// Answers a read-only command on the `T` at `key`: `absent` writes the
    /// reply for a missing key, WRONGTYPE a key of another type, `present`
    /// the rest.
    pub(super) fn answer_as<T: Kind, O: Out>(
        &self,
        key: &[u8],
        out: &mut O,
        absent: impl FnOnce(&mut O),
        present: impl FnOnce(&T, &mut O),
    ) {
        match self.get_as::<T>(key) {
            Ok(Some(t)) => present(t, out),
            Ok(None) => absent(out),
            Err(e) => out.error(e),
        }
    }

    /// Answers HSCAN or SSCAN (`a`: the key, the cursor, the options): one
    /// step over the fields of a hash or the members of a set, `per` bulk
    /// strings an item, each written by `item`.
    pub(super) fn answer_scan<V, O: Out>(
        &self,
        a: &[&[u8]],
        out: &mut O,
        per: usize,
        item: impl Fn(&Bytes, &V, &mut O),
    ) where
        Coll<V>: Kind,
    {
        let Some(cursor) = parse_cursor(a[1]) else {
            return out.error("ERR invalid cursor");
        };
        // A missing key checks no option, as in Redis.
        self.answer_as(
            a[0],
            out,
            |o| {
                o.cursor(0);
                o.array(0)
            },
            |c: &Coll<V>, o| {
                let opts = match scan_options(&a[2..], false) {
                    Ok(opts) => opts,
                    Err(e) => return o.error(e),
                };
                let (next, items) = c.scan(cursor, opts.count);
                let items: Vec<_> = items
                    .into_iter()
                    .filter(|(k, _)| opts.pattern.is_none_or(|p| glob_match(p, k)))
                    .collect();
                o.cursor(next);
                o.array(items.len() * per);
                for (k, v) in items {
                    item(k, v, o);
                }
            },
        )
    }

    /// Applies a write to the `T` at `key`, which must exist: `absent`
    /// writes the reply for a missing key (nothing changes), WRONGTYPE a
    /// key of another type (nothing changes). `body` writes the reply and
    /// says whether it changed the value; a collection it leaves empty is
    /// removed; a changed key is added to `changed` (WATCH).
    pub(super) fn change_as<'a, T: Kind>(
        &mut self,
        key: &'a [u8],
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
        absent: impl FnOnce(&mut BytesMut),
        body: impl FnOnce(&mut T, &mut BytesMut) -> bool,
    ) {
        let t = match self.get_mut(key) {
            None => return absent(out),
            Some(v) => match T::of_mut(v) {
                Some(t) => t,
                None => return out.error(WRONGTYPE),
            },
        };
        let did = body(t, out);
        self.drop_if_empty(key);
        if did {
            changed.push(key);
        }
    }

    /// As [`KvStore::change_as`], but a missing key is made (empty) first:
    /// the writes that add (HSET, SADD, LPUSH...).
    pub(super) fn change_or_make<'a, T: Kind>(
        &mut self,
        key: &'a [u8],
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
        body: impl FnOnce(&mut T, &mut BytesMut) -> bool,
    ) {
        let t = match self.make_as::<T>(key) {
            Ok(t) => t,
            Err(e) => return out.error(e),
        };
        let did = body(t, out);
        self.drop_if_empty(key);
        if did {
            changed.push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::KvStore;
    use crate::frame::Frame;

    #[test]
    fn every_command_of_one_type_refuses_the_others() {
        let mut s = KvStore::new();
        run(&mut s, "SET str v");
        run(&mut s, "HSET h f v");
        run(&mut s, "SADD s m");
        for line in [
            "GET h",
            "STRLEN s",
            "INCR h",
            "APPEND s x",
            "GETSET h x",
            "SET h x GET",
            "SET h x NX GET",
            "GETEX s PERSIST",
            "HGET str f",
            "HSET s f v",
            "HGETALL str",
            "HINCRBY s f 1",
            "HSCAN str 0",
            "HRANDFIELD s",
            "SADD h m",
            "SMEMBERS str",
            "SPOP h",
            "SRANDMEMBER h 2",
            "SSCAN h 0",
            "SINTERSTORE d s h",
        ] {
            assert_eq!(run(&mut s, line), wrong(), "{line}");
        }
        // MGET answers null for another type; CAS finds no such string.
        assert_eq!(
            run(&mut s, "MGET str h s"),
            Frame::Array(vec![bulk("v"), Frame::Null, Frame::Null])
        );
        assert_eq!(run(&mut s, "CAS h v w"), int(0));
        // Key commands work on every type.
        assert_eq!(run(&mut s, "EXISTS str h s nokey"), int(3));
        assert_eq!(run(&mut s, "TYPE h"), Frame::Simple("hash".into()));
        assert_eq!(run(&mut s, "TYPE s"), Frame::Simple("set".into()));
        assert_eq!(run(&mut s, "TYPE str"), Frame::Simple("string".into()));
        assert_eq!(run(&mut s, "TYPE nokey"), Frame::Simple("none".into()));
        assert_eq!(run(&mut s, "DBSIZE"), int(3));
        assert_eq!(items(run(&mut s, "KEYS *")), strs(&["h", "s", "str"]));
        let Frame::Array(scan) = run(&mut s, "SCAN 0 COUNT 100 TYPE hash") else {
            panic!()
        };
        assert_eq!(items(scan[1].clone()), strs(&["h"]));
        let Frame::Array(scan) = run(&mut s, "SCAN 0 TYPE foo") else {
            panic!()
        };
        assert_eq!(items(scan[1].clone()), strs(&[]));
        assert_eq!(run(&mut s, "EXPIRE h 100"), int(1));
        assert_eq!(run(&mut s, "PEXPIRETIME h"), int(100_000));
        // SET replaces any type.
        assert_eq!(run(&mut s, "SET h x"), Frame::Simple("OK".into()));
        assert_eq!(run(&mut s, "GET h"), bulk("x"));
        assert_eq!(run(&mut s, "TTL h"), int(-1));
        assert_eq!(run(&mut s, "DEL h s str"), int(3));
        assert_eq!(run(&mut s, "DBSIZE"), int(0));
        // Empty again; only the key versions remember the changes.
        assert_eq!(
            s,
            KvStore {
                versions: s.versions.clone(),
                ..KvStore::new()
            }
        );
    }
}
