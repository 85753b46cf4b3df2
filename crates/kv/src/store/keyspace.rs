//! The map of keys to values, ordered by key hash: one slot per hash,
//! holding its one key (or, on a collision, several), found with one
//! search. The same map, with other values, holds a hash's fields and a
//! set's members (`value`), so that HSCAN and SSCAN cursors mean what SCAN's
//! do.

use std::collections::btree_map::{self, BTreeMap};

use bytes::Bytes;

use super::value::Value;

/// The fixed hash that orders the keys (and that SCAN cursors are made
/// of): SipHash-1-3 under constant keys, so that an attacker cannot cheaply
/// make many keys share a hash, and the same on every node.
pub(super) fn key_hash(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    // "RAFT-KVS", "scan-ord": changing them would change every cursor.
    let mut h =
        siphasher::sip::SipHasher13::new_with_keys(0x5241_4654_2d4b_5653, 0x7363_616e_2d6f_7264);
    h.write(key);
    h.finish()
}

// ---------------------------------------------------------------------------
// The map
// ---------------------------------------------------------------------------

/// The keys of one hash: almost always one; several only on a collision,
/// then kept in a map so that even many colliding keys cost O(log n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Slot<V = Value> {
    One(Bytes, V),
    /// Two keys or more, never fewer.
    Many(BTreeMap<Bytes, V>),
}

impl<V> Slot<V> {
    pub(super) fn len(&self) -> usize {
        match self {
            Slot::One(..) => 1,
            Slot::Many(m) => m.len(),
        }
    }

    pub(super) fn iter(&self) -> SlotIter<'_, V> {
        match self {
            Slot::One(k, v) => SlotIter::One(Some((k, v))),
            Slot::Many(m) => SlotIter::Many(m.iter()),
        }
    }

    /// Adds a key that shares this slot's hash; false if it is already here.
    pub(super) fn add(&mut self, key: Bytes, value: V) -> bool {
        match self {
            Slot::One(k, _) if *k == key => false,
            Slot::One(..) => {
                let old = std::mem::replace(self, Slot::Many(BTreeMap::new()));
                if let (Slot::One(k0, v0), Slot::Many(m)) = (old, &mut *self) {
                    m.insert(k0, v0);
                    m.insert(key, value);
                }
                true
            }
            Slot::Many(m) => match m.entry(key) {
                btree_map::Entry::Vacant(e) => {
                    e.insert(value);
                    true
                }
                btree_map::Entry::Occupied(_) => false,
            },
        }
    }
}

pub(super) enum SlotIter<'a, V> {
    One(Option<(&'a Bytes, &'a V)>),
    Many(btree_map::Iter<'a, Bytes, V>),
}

impl<'a, V> Iterator for SlotIter<'a, V> {
    type Item = (&'a Bytes, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            SlotIter::One(o) => o.take(),
            SlotIter::Many(it) => it.next(),
        }
    }
}

pub(super) type Map<V = Value> = BTreeMap<u64, Slot<V>>;

/// Where a key is, or where it would go: found with one search.
pub(super) enum Spot<'m, V = Value> {
    Present(&'m mut V),
    Absent(Vacancy<'m, V>),
}

pub(super) enum Vacancy<'m, V = Value> {
    /// No key has this hash.
    Free(btree_map::VacantEntry<'m, u64, Slot<V>>),
    /// Other keys have this hash.
    Beside(&'m mut Slot<V>),
}

impl<V> Vacancy<'_, V> {
    pub(super) fn fill(self, key: Bytes, value: V) {
        match self {
            Vacancy::Free(e) => {
                e.insert(Slot::One(key, value));
            }
            Vacancy::Beside(slot) => {
                slot.add(key, value);
            }
        }
    }
}

pub(super) fn spot<'m, V>(map: &'m mut Map<V>, h: u64, key: &[u8]) -> Spot<'m, V> {
    match map.entry(h) {
        btree_map::Entry::Vacant(e) => Spot::Absent(Vacancy::Free(e)),
        btree_map::Entry::Occupied(e) => {
            let slot = e.into_mut();
            let present = match &*slot {
                Slot::One(k, _) => k[..] == *key,
                Slot::Many(m) => m.contains_key(key),
            };
            if !present {
                return Spot::Absent(Vacancy::Beside(slot));
            }
            match slot {
                Slot::One(_, v) => Spot::Present(v),
                Slot::Many(m) => match m.get_mut(key) {
                    Some(v) => Spot::Present(v),
                    None => unreachable!("the key was found just above"),
                },
            }
        }
    }
}

pub(super) fn lookup<'m, V>(map: &'m Map<V>, h: u64, key: &[u8]) -> Option<&'m V> {
    match map.get(&h)? {
        Slot::One(k, v) => (k[..] == *key).then_some(v),
        Slot::Many(m) => m.get(key),
    }
}

pub(super) fn remove<V>(map: &mut Map<V>, h: u64, key: &[u8]) -> Option<V> {
    let btree_map::Entry::Occupied(mut e) = map.entry(h) else {
        return None;
    };
    let slot = e.get_mut();
    match slot {
        Slot::One(k, _) => {
            if k[..] != *key {
                return None;
            }
        }
        Slot::Many(m) => {
            let v = m.remove(key)?;
            if m.len() == 1 {
                if let Some((k, v1)) = m.pop_first() {
                    *slot = Slot::One(k, v1);
                }
            }
            return Some(v);
        }
    }
    match e.remove() {
        Slot::One(_, v) => Some(v),
        Slot::Many(_) => None,
    }
}

/// Drops a large map on another thread, so that FLUSHDB or a restore does
/// not stall the apply loop (the state is the same on every node either way).
pub(super) fn discard<V: Send + 'static>(map: Map<V>) {
    if map.len() >= 1 << 14 {
        let _ = std::thread::Builder::new()
            .name("raft-kv-free".into())
            .spawn(move || drop(map));
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::crc32c;
    use super::key_hash;

    /// SipHash-1-3 of "foo" under the store's keys.
    const KEY_HASH_OF_FOO: u64 = 567_765_770_624_988_561;

    #[test]
    fn the_key_hash_is_pinned() {
        // Cursors and the order of keys in snapshots are made of this hash:
        // it must not change between versions or platforms.
        assert_eq!(key_hash(b"foo"), KEY_HASH_OF_FOO);
        assert_ne!(key_hash(b"foo"), key_hash(b"fop"));
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }
}
