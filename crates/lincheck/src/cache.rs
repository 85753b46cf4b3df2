//! The memoisation cache of the search: the search nodes already reached,
//! `(linearized completed ops, linearized open ops, register state)`.
//!
//! The sets of linearized operations are bitsets over the operation ids of one
//! key. Storing full copies per cache entry would cost `n / 8` bytes per
//! explored node, which is too much for long histories, so entries are stored
//! in a canonical compressed form instead:
//!
//! * the number `p` of leading words of the completed set that are all ones
//!   (in a long history the early operations are all linearized),
//! * then `(word index, word)` for every other non-zero word of both sets.
//!
//! Hashing uses Zobrist hashing (the XOR of one pseudo-random number per set
//! bit), maintained incrementally by [`Bitset`], so hashing costs O(1).
//! Comparisons are exact: a hash collision can never make the search skip a
//! node it has not explored.
//!
//! Besides exact matches, a node is pruned when it is *dominated* by a failed
//! node: same completed set and state, and a subset of its open ops. Failed
//! nodes are chained per `(completed set, state)` and only the most recent
//! ones are compared (pruning is optional for correctness; this bounds the
//! cost of a lookup).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::model::Value;

/// The splitmix64 finaliser: a cheap, well-mixing bijection on `u64`.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The Zobrist key of operation `i`.
#[inline]
fn zobrist(i: usize) -> u64 {
    mix64((i as u64) ^ 0x5851_F42D_4C95_7F2D)
}

/// The set of operations linearized so far, with the bookkeeping needed to
/// hash and compress it in O(1).
#[derive(Debug, Clone)]
pub(crate) struct Bitset {
    words: Vec<u64>,
    /// Number of leading words equal to `u64::MAX`.
    full_prefix: usize,
    /// Number of words that are not zero (including the full prefix).
    nonzero: usize,
    /// XOR of the Zobrist keys of the set bits.
    hash: u64,
}

impl Bitset {
    /// An empty set able to hold `n` operations.
    pub(crate) fn new(n: usize) -> Self {
        Bitset {
            words: vec![0; n.div_ceil(64)],
            full_prefix: 0,
            nonzero: 0,
            hash: 0,
        }
    }

    /// Adds `i`, which must not be in the set.
    #[inline]
    pub(crate) fn insert(&mut self, i: usize) {
        let w = i / 64;
        let old = self.words[w];
        debug_assert_eq!(old & (1 << (i % 64)), 0);
        let new = old | (1 << (i % 64));
        self.words[w] = new;
        self.hash ^= zobrist(i);
        if old == 0 {
            self.nonzero += 1;
        }
        if new == u64::MAX && w == self.full_prefix {
            while self.full_prefix < self.words.len() && self.words[self.full_prefix] == u64::MAX {
                self.full_prefix += 1;
            }
        }
    }

    /// Removes `i`, which must be in the set.
    #[inline]
    pub(crate) fn remove(&mut self, i: usize) {
        let w = i / 64;
        let old = self.words[w];
        debug_assert_ne!(old & (1 << (i % 64)), 0);
        let new = old & !(1 << (i % 64));
        self.words[w] = new;
        self.hash ^= zobrist(i);
        if new == 0 {
            self.nonzero -= 1;
        }
        if w < self.full_prefix {
            self.full_prefix = w;
        }
    }
}

/// A pass-through hasher: the cache keys are already well-mixed 64-bit hashes.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One cache entry: its compressed form lives in `arena[start..]`, up to the
/// start of the next entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    /// The next entry with the same full hash, or `NONE`.
    next: u32,
    /// The next (older) failed entry with the same `(done, state)` hash, or
    /// `NONE`; only meaningful once this entry has failed.
    next_failed: u32,
}

const NONE: u32 = u32::MAX;

/// How many failed nodes the dominance check looks at (newest first). Any
/// pruning is optional for correctness; this bounds the cost per visit.
const DOMINANCE_SCAN: usize = 32;

/// The key of a search node besides its linearized sets: the register value
/// and, if the last linearized operation was unacknowledged, the value before
/// it (see `wgl.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeState {
    pub(crate) value: Option<Value>,
    pub(crate) pending: Option<Option<Value>>,
}

/// The hashes and header word of a node.
struct NodeKey {
    header: u64,
    value: u64,
    pre: u64,
    /// Hash of `(done, state)`.
    partial: u64,
}

impl NodeKey {
    fn new(done: &Bitset, state: NodeState) -> Self {
        let pending = state.pending;
        let header = ((done.full_prefix as u64) << 3)
            | (u64::from(pending.is_some()) << 2)
            | (u64::from(pending.flatten().is_some()) << 1)
            | u64::from(state.value.is_some());
        let value = state.value.unwrap_or(0);
        let pre = pending.flatten().unwrap_or(0);
        let partial = done.hash ^ mix64(header ^ mix64(value ^ mix64(pre)));
        NodeKey {
            header,
            value,
            pre,
            partial,
        }
    }

    /// Hash of `(done, open, state)`.
    fn full(&self, open: &Bitset) -> u64 {
        self.partial ^ mix64(open.hash ^ 0x2545_F491_4F6C_DD1D)
    }
}

/// The memoised search nodes.
///
/// A node is `(done, open, state)`: the set of linearized acknowledged
/// operations, the set of linearized unacknowledged ones, and the
/// [`NodeState`]. A new node is pruned if it equals a stored one, or if a
/// stored node with the same `(done, state)` and a *subset* of its `open` set
/// has failed (that node had every option the new one has, and more).
pub(crate) struct Cache {
    /// Full hash -> newest entry with that hash.
    heads: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    /// `(done, state)` hash -> newest failed entry with that hash.
    failed: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    entries: Vec<Entry>,
    /// Per entry: `[header, value, pending value, number of done pairs,
    /// (index, word) pairs of done, (index, word) pairs of open]`, where
    /// `header = p << 3 | pending.is_some() << 2 |
    /// pending.flatten().is_some() << 1 | value.is_some()` and `p` is the
    /// number of leading all-ones words of `done` (not stored as pairs).
    arena: Vec<u64>,
}

impl Cache {
    pub(crate) fn new() -> Self {
        Cache {
            heads: HashMap::default(),
            failed: HashMap::default(),
            entries: Vec::new(),
            arena: Vec::new(),
        }
    }

    /// Number of nodes stored.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn words(&self, e: u32) -> &[u64] {
        let start = self.entries[e as usize].start;
        let end = self
            .entries
            .get(e as usize + 1)
            .map_or(self.arena.len(), |n| n.start);
        &self.arena[start..end]
    }

    /// If entry `e` has the same `(done, state)` as the key, its open pairs.
    fn same_done<'a>(&'a self, e: u32, key: &NodeKey, done: &Bitset) -> Option<&'a [u64]> {
        let w = self.words(e);
        let done_pairs = done.nonzero - done.full_prefix;
        let same = w[0] == key.header
            && w[1] == key.value
            && w[2] == key.pre
            && w[3] as usize == done_pairs
            && w[4..4 + 2 * done_pairs]
                .chunks_exact(2)
                .all(|c| done.words[c[0] as usize] == c[1]);
        same.then(|| &w[4 + 2 * done_pairs..])
    }

    /// Records the node `(done, open, state)` unless it is pruned. Returns the
    /// new entry's id, or `None` if the node need not be explored.
    pub(crate) fn visit(&mut self, done: &Bitset, open: &Bitset, state: NodeState) -> Option<u32> {
        let key = NodeKey::new(done, state);
        let full = key.full(open);

        // Exact match.
        let head = self.heads.get(&full).copied().unwrap_or(NONE);
        let mut e = head;
        while e != NONE {
            if let Some(pairs) = self.same_done(e, &key, done) {
                if pairs.len() / 2 == open.nonzero
                    && pairs
                        .chunks_exact(2)
                        .all(|c| open.words[c[0] as usize] == c[1])
                {
                    return None;
                }
            }
            e = self.entries[e as usize].next;
        }

        // Dominated by a failed node.
        let mut e = self.failed.get(&key.partial).copied().unwrap_or(NONE);
        for _ in 0..DOMINANCE_SCAN {
            if e == NONE {
                break;
            }
            if let Some(pairs) = self.same_done(e, &key, done) {
                if pairs
                    .chunks_exact(2)
                    .all(|c| c[1] & !open.words[c[0] as usize] == 0)
                {
                    return None;
                }
            }
            e = self.entries[e as usize].next_failed;
        }

        let id = u32::try_from(self.entries.len()).expect("more than 2^32 cached states");
        self.entries.push(Entry {
            start: self.arena.len(),
            next: head,
            next_failed: NONE,
        });
        let done_pairs = done.nonzero - done.full_prefix;
        self.arena
            .extend([key.header, key.value, key.pre, done_pairs as u64]);
        for (i, &w) in done.words.iter().enumerate().skip(done.full_prefix) {
            if w != 0 {
                self.arena.extend([i as u64, w]);
            }
        }
        for (i, &w) in open.words.iter().enumerate() {
            if w != 0 {
                self.arena.extend([i as u64, w]);
            }
        }
        self.heads.insert(full, id);
        Some(id)
    }

    /// Records that the node `id`, which is `(done, open, state)`, was fully
    /// explored without success.
    pub(crate) fn mark_failed(&mut self, id: u32, done: &Bitset, state: NodeState) {
        let key = NodeKey::new(done, state);
        let older = self.failed.insert(key.partial, id).unwrap_or(NONE);
        self.entries[id as usize].next_failed = older;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_bookkeeping() {
        let mut b = Bitset::new(200);
        for i in 0..64 {
            b.insert(i);
        }
        assert_eq!(b.full_prefix, 1);
        assert_eq!(b.nonzero, 1);
        for i in 64..128 {
            b.insert(i);
        }
        assert_eq!(b.full_prefix, 2);
        b.insert(150);
        assert_eq!((b.full_prefix, b.nonzero), (2, 3));
        b.remove(3);
        assert_eq!((b.full_prefix, b.nonzero), (0, 3));
        b.insert(3);
        assert_eq!(b.full_prefix, 2);
        b.remove(150);
        assert_eq!((b.full_prefix, b.nonzero), (2, 2));
    }

    #[test]
    fn cache_is_exact_and_prunes_dominated_nodes() {
        let mut c = Cache::new();
        let mut done = Bitset::new(300);
        let mut open = Bitset::new(100);
        let st = |value, pending| NodeState { value, pending };
        let a = c.visit(&done, &open, st(None, None)).unwrap();
        assert!(c.visit(&done, &open, st(None, None)).is_none());
        assert!(c.visit(&done, &open, st(Some(0), None)).is_some());
        assert!(c.visit(&done, &open, st(None, Some(None))).is_some());
        assert!(c.visit(&done, &open, st(None, Some(Some(0)))).is_some());
        done.insert(5);
        done.insert(250);
        assert!(c.visit(&done, &open, st(None, None)).is_some());
        assert!(c.visit(&done, &open, st(None, None)).is_none());
        done.remove(250);
        assert!(c.visit(&done, &open, st(None, None)).is_some());
        done.remove(5);
        // A superset of open ops: distinct while `a` is in progress...
        open.insert(70);
        let b = c.visit(&done, &open, st(None, None)).unwrap();
        assert!(c.visit(&done, &open, st(None, None)).is_none());
        c.mark_failed(b, &done, st(None, None));
        open.insert(3);
        assert!(c.visit(&done, &open, st(None, None)).is_none());
        open.remove(70);
        // ... {3} is not a superset of {70}, nor of `a`'s {} until it fails.
        assert!(c.visit(&done, &open, st(None, None)).is_some());
        open.insert(71);
        c.mark_failed(a, &done, st(None, None));
        assert!(c.visit(&done, &open, st(None, None)).is_none());
        assert_eq!(c.len(), 8);
    }
}
