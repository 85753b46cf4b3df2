//! The map of keys to values, ordered by key hash: one slot per hash,
//! holding its one key (or, on a collision, several), found with one
//! search.

use std::collections::btree_map::{self, BTreeMap};

use bytes::Bytes;

// ---------------------------------------------------------------------------
// The map
// ---------------------------------------------------------------------------

/// The keys of one hash: almost always one; several only on a collision,
/// then kept in a map so that even many colliding keys cost O(log n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Slot {
    One(Bytes, Bytes),
    /// Two keys or more, never fewer.
    Many(BTreeMap<Bytes, Bytes>),
}

impl Slot {
    pub(super) fn len(&self) -> usize {
        match self {
            Slot::One(..) => 1,
            Slot::Many(m) => m.len(),
        }
    }

    pub(super) fn iter(&self) -> SlotIter<'_> {
        match self {
            Slot::One(k, v) => SlotIter::One(Some((k, v))),
            Slot::Many(m) => SlotIter::Many(m.iter()),
        }
    }

    /// Adds a key that shares this slot's hash; false if it is already here.
    pub(super) fn add(&mut self, key: Bytes, value: Bytes) -> bool {
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

pub(super) enum SlotIter<'a> {
    One(Option<(&'a Bytes, &'a Bytes)>),
    Many(btree_map::Iter<'a, Bytes, Bytes>),
}

impl<'a> Iterator for SlotIter<'a> {
    type Item = (&'a Bytes, &'a Bytes);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            SlotIter::One(o) => o.take(),
            SlotIter::Many(it) => it.next(),
        }
    }
}

pub(super) type Map = BTreeMap<u64, Slot>;

/// Where a key is, or where it would go: found with one search.
pub(super) enum Spot<'m> {
    Present(&'m mut Bytes),
    Absent(Vacancy<'m>),
}

pub(super) enum Vacancy<'m> {
    /// No key has this hash.
    Free(btree_map::VacantEntry<'m, u64, Slot>),
    /// Other keys have this hash.
    Beside(&'m mut Slot),
}

impl Vacancy<'_> {
    pub(super) fn fill(self, key: Bytes, value: Bytes) {
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

pub(super) fn spot<'m>(map: &'m mut Map, h: u64, key: &[u8]) -> Spot<'m> {
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

pub(super) fn lookup<'m>(map: &'m Map, h: u64, key: &[u8]) -> Option<&'m Bytes> {
    match map.get(&h)? {
        Slot::One(k, v) => (k[..] == *key).then_some(v),
        Slot::Many(m) => m.get(key),
    }
}

pub(super) fn remove(map: &mut Map, h: u64, key: &[u8]) -> Option<Bytes> {
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
pub(super) fn discard(map: Map) {
    if map.len() >= 1 << 14 {
        let _ = std::thread::Builder::new()
            .name("raft-kv-free".into())
            .spawn(move || drop(map));
    }
}
