//! The commands on keys of any type: DEL (and UNLINK), EXISTS, TYPE,
//! RENAME, RENAMENX, COPY, KEYS, SCAN (with TYPE), DBSIZE, FLUSHDB (and
//! FLUSHALL). SCAN's cursor is a key hash: see the module documentation.

use bytes::{Bytes, BytesMut};

use super::args::{parse_cursor, parse_i64, scan_options, NOT_INTEGER, SYNTAX};
use super::batch::{array_len, bulk_len, decimal_len};
use super::glob_match;
use super::keyspace::{discard, key_hash, remove};
use super::reply::{u64_digits, Answer, Out};
use super::typed::TypedCmd;
use super::value::Value;
use super::KvStore;
use crate::frame::{put_array, put_bulk, put_int, put_simple};

impl KvStore {
    /// `DEL key...`: the number of keys removed (with their times to live;
    /// a key named twice is removed, and counted, once).
    pub(super) fn write_del(&mut self, keys: &[&[u8]], out: &mut BytesMut) {
        let mut n: i64 = 0;
        for &k in keys {
            if remove(&mut self.map, key_hash(k), k).is_some() {
                self.deadlines.clear(k);
                n += 1;
            }
        }
        self.len -= n as usize;
        put_int(out, n);
    }

    /// `FLUSHDB`: every key removed.
    pub(super) fn write_flushdb(&mut self, out: &mut BytesMut) {
        discard(std::mem::take(&mut self.map));
        self.deadlines.clear_all();
        self.len = 0;
        put_simple(out, "OK");
    }

    /// `EXISTS key...`: how many of the keys exist (a key named twice
    /// counts twice).
    pub(super) fn read_exists(&self, keys: &[&[u8]], out: &mut BytesMut) {
        let n = keys.iter().filter(|k| self.get(k).is_some()).count();
        put_int(out, n as i64);
    }

    /// `KEYS pattern`: the matching keys, in (hash, key) order.
    pub(super) fn read_keys(&self, pattern: &[u8], answer: &mut Answer) {
        if pattern == b"*" {
            put_array(&mut answer.chunk, self.len);
            for (k, _) in self.iter() {
                answer.bulk(k);
            }
        } else {
            let keys: Vec<&Bytes> = self
                .iter()
                .map(|(k, _)| k)
                .filter(|k| glob_match(pattern, k))
                .collect();
            put_array(&mut answer.chunk, keys.len());
            for k in keys {
                answer.bulk(k);
            }
        }
    }

    /// The length of [`KvStore::read_keys`]'s reply.
    pub(super) fn keys_reply_size(&self, pattern: &[u8]) -> usize {
        let (n, bytes) = self
            .iter()
            .filter(|(k, _)| pattern == b"*" || glob_match(pattern, k))
            .fold((0, 0usize), |(n, bytes), (k, _)| {
                (n + 1, bytes.saturating_add(bulk_len(k.len())))
            });
        array_len(n) + bytes
    }

    /// The keys one SCAN step returns and the cursor after it.
    pub(super) fn scan(
        &self,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> (u64, Vec<&Bytes>) {
        let pattern = pattern.filter(|p| *p != b"*");
        let count = count.max(1);
        let mut examined = 0;
        let mut next = 0;
        let mut keys: Vec<&Bytes> = Vec::new();
        for (&h, slot) in self.map.range(cursor..) {
            if examined >= count {
                next = h;
                break;
            }
            examined += slot.len();
            for (k, _) in slot.iter() {
                if pattern.is_none_or(|p| glob_match(p, k)) {
                    keys.push(k);
                }
            }
        }
        (next, keys)
    }

    /// `SCAN cursor [MATCH pattern] [COUNT count]`: the next cursor and the
    /// keys found.
    pub(super) fn read_scan(
        &self,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
        answer: &mut Answer,
    ) {
        let (next, keys) = self.scan(cursor, pattern, count);
        let out = &mut answer.chunk;
        put_array(out, 2);
        let mut digits = [0u8; 20];
        put_bulk(out, u64_digits(next, &mut digits));
        put_array(out, keys.len());
        for k in keys {
            answer.bulk(k);
        }
    }

    /// The length of [`KvStore::read_scan`]'s reply.
    pub(super) fn scan_reply_size(
        &self,
        cursor: u64,
        pattern: Option<&[u8]>,
        count: usize,
    ) -> usize {
        let (next, keys) = self.scan(cursor, pattern, count);
        array_len(2)
            + bulk_len(decimal_len(next))
            + array_len(keys.len())
            + keys.iter().map(|k| bulk_len(k.len())).sum::<usize>()
    }

    /// Answers TYPE, or SCAN with its arguments as sent (the form that
    /// takes TYPE).
    pub(super) fn answer_keys(&self, cmd: TypedCmd, a: &[&[u8]], out: &mut impl Out) {
        let key = a[0];
        match cmd {
            TypedCmd::Type => out.simple(self.get(key).map_or("none", Value::type_name)),
            TypedCmd::ScanType => {
                let Some(cursor) = parse_cursor(key) else {
                    return out.error("ERR invalid cursor");
                };
                let o = match scan_options(&a[1..], true) {
                    Ok(o) => o,
                    Err(e) => return out.error(e),
                };
                let (next, keys) = self.scan(cursor, o.pattern, o.count);
                let keys: Vec<&Bytes> = keys
                    .into_iter()
                    .filter(|k| {
                        o.kind.is_none_or(|t| {
                            self.get(k)
                                .is_some_and(|v| t.eq_ignore_ascii_case(v.type_name().as_bytes()))
                        })
                    })
                    .collect();
                out.cursor(next);
                out.array(keys.len());
                for k in keys {
                    out.bulk(k);
                }
            }
            _ => out.error(&format!("ERR '{}' is not answered by a query", cmd.name())),
        }
    }

    /// Applies RENAME, RENAMENX or COPY, adding to `changed` the keys it
    /// changes.
    pub(super) fn write_keys<'a>(
        &mut self,
        cmd: TypedCmd,
        a: &[&'a [u8]],
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
    ) {
        match cmd {
            TypedCmd::Rename | TypedCmd::RenameNx => {
                if self.rename(cmd == TypedCmd::RenameNx, a[0], a[1], out) {
                    changed.extend([a[0], a[1]]);
                }
            }
            TypedCmd::Copy => {
                if self.copy(a, out) {
                    changed.push(a[1]);
                }
            }
            _ => out.error(&format!("ERR '{}' is not a write", cmd.name())),
        }
    }

    /// `RENAME source destination` (`RENAMENX` if `nx`): the value moves
    /// with its type and its time to live; the destination's old value and
    /// time to live go. True if it moved.
    fn rename(&mut self, nx: bool, src: &[u8], dst: &[u8], out: &mut BytesMut) -> bool {
        if self.get(src).is_none() {
            out.error("ERR no such key");
            return false;
        }
        let answer = |out: &mut BytesMut, done: bool| match (nx, done) {
            (true, done) => out.int(i64::from(done)),
            (false, _) => out.simple("OK"),
        };
        // The same key: nothing changes (Redis replies as if it moved,
        // but RENAMENX says 0).
        if src == dst {
            answer(out, false);
            return false;
        }
        if nx && self.get(dst).is_some() {
            answer(out, false);
            return false;
        }
        let deadline = self.deadlines.get(src);
        let Some(value) = remove(&mut self.map, key_hash(src), src) else {
            return false;
        };
        self.deadlines.clear(src);
        self.len -= 1;
        self.remove_key(dst);
        self.insert_new(dst, value);
        if let Some(at) = deadline {
            self.deadlines.set(dst, at);
        }
        answer(out, true);
        true
    }

    /// `COPY source destination [DB 0] [REPLACE]`: 1 if it copied the value
    /// (with its type and time to live), 0 if the source is absent or the
    /// destination exists without REPLACE. There is one database: DB is 0.
    /// True if it copied.
    fn copy(&mut self, a: &[&[u8]], out: &mut BytesMut) -> bool {
        let (src, dst) = (a[0], a[1]);
        let mut replace = false;
        let mut i = 2;
        while i < a.len() {
            if a[i].eq_ignore_ascii_case(b"replace") {
                replace = true;
                i += 1;
            } else if a[i].eq_ignore_ascii_case(b"db") && i + 1 < a.len() {
                match parse_i64(a[i + 1]) {
                    Some(0) => {}
                    Some(_) => {
                        out.error("ERR DB index is out of range");
                        return false;
                    }
                    None => {
                        out.error(NOT_INTEGER);
                        return false;
                    }
                }
                i += 2;
            } else {
                out.error(SYNTAX);
                return false;
            }
        }
        if src == dst {
            out.error("ERR source and destination objects are the same");
            return false;
        }
        let Some(value) = self.get(src).cloned() else {
            out.int(0);
            return false;
        };
        if self.get(dst).is_some() && !replace {
            out.int(0);
            return false;
        }
        let deadline = self.deadlines.get(src);
        self.remove_key(dst);
        self.insert_new(dst, value);
        if let Some(at) = deadline {
            self.deadlines.set(dst, at);
        }
        out.int(1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::{NOT_INTEGER, SYNTAX};
    use super::super::testing::*;
    use super::super::*;
    use crate::frame::Frame;
    use raft_node::StateMachine;
    use std::collections::BTreeSet;

    #[test]
    fn rename_and_copy_carry_the_type_and_the_time_to_live() {
        let mut s = KvStore::new();
        let ok = || Frame::Simple("OK".into());
        assert_eq!(run(&mut s, "RPUSH l a b"), int(2));
        assert_eq!(run(&mut s, "EXPIRE l 100"), int(1));
        assert_eq!(run(&mut s, "SET d old EX 5"), ok());
        assert_eq!(run(&mut s, "RENAME l d"), ok());
        assert_eq!(run(&mut s, "TYPE d"), Frame::Simple("list".into()));
        assert_eq!(run(&mut s, "PEXPIRETIME d"), int(100_000));
        assert_eq!(run(&mut s, "EXISTS l"), int(0));
        assert_eq!(
            run(&mut s, "RENAME l d"),
            Frame::Error("ERR no such key".into())
        );
        assert_eq!(run(&mut s, "RENAME d d"), ok());
        assert_eq!(run(&mut s, "RENAMENX d d"), int(0));
        assert_eq!(run(&mut s, "SADD t m"), int(1));
        assert_eq!(run(&mut s, "RENAMENX d t"), int(0));
        assert_eq!(run(&mut s, "RENAMENX t u"), int(1));
        assert_eq!(run(&mut s, "PEXPIRETIME u"), int(-1));
        // COPY: a deep copy, the time to live with it.
        assert_eq!(run(&mut s, "COPY d e"), int(1));
        assert_eq!(run(&mut s, "PEXPIRETIME e"), int(100_000));
        assert_eq!(run(&mut s, "RPUSH e c"), int(3));
        assert_eq!(run(&mut s, "LLEN d"), int(2));
        assert_eq!(run(&mut s, "COPY u e"), int(0));
        assert_eq!(run(&mut s, "COPY u e REPLACE DB 0"), int(1));
        assert_eq!(run(&mut s, "TYPE e"), Frame::Simple("set".into()));
        assert_eq!(run(&mut s, "PEXPIRETIME e"), int(-1));
        assert_eq!(run(&mut s, "COPY nope e REPLACE"), int(0));
        assert_eq!(
            run(&mut s, "COPY u u"),
            Frame::Error("ERR source and destination objects are the same".into())
        );
        assert_eq!(
            run(&mut s, "COPY u v DB 1"),
            Frame::Error("ERR DB index is out of range".into())
        );
        assert_eq!(
            run(&mut s, "COPY u v DB x"),
            Frame::Error(NOT_INTEGER.into())
        );
        assert_eq!(run(&mut s, "COPY u v FOO"), Frame::Error(SYNTAX.into()));
        assert_eq!(run(&mut s, "DBSIZE"), int(3));
        // A snapshot holds what they made.
        let mut t = KvStore::new();
        t.restore(s.snapshot()).unwrap();
        assert_eq!(t, s);
    }

    #[test]
    fn del_counts_each_removed_key_once() {
        let mut s = KvStore::new();
        w(&mut s, &[set("a", "1"), set("b", "2"), set("c", "3")]);
        let del = |keys: &[&str]| Write::Del {
            keys: keys.iter().map(|k| b(k)).collect(),
        };
        assert_eq!(w1(&mut s, del(&["a", "a", "x", "b"])), Frame::Integer(2));
        assert_eq!(s.len(), 1);
        assert_eq!(w1(&mut s, del(&["a"])), Frame::Integer(0));
        assert_eq!(w1(&mut s, del(&[])), Frame::Integer(0));
        assert_eq!(get(&s, "c"), bulk_f("3"));
        assert_eq!(get(&s, "a"), Frame::Null);
    }

    fn keys_of(f: Frame) -> BTreeSet<Bytes> {
        match f {
            Frame::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Frame::Bulk(k) => k,
                    other => panic!("not a key: {other:?}"),
                })
                .collect(),
            other => panic!("not an array: {other:?}"),
        }
    }

    fn set_of(keys: &[&str]) -> BTreeSet<Bytes> {
        keys.iter().map(|k| b(k)).collect()
    }

    #[test]
    fn keys_with_patterns() {
        let mut s = KvStore::new();
        w(
            &mut s,
            &[
                set("hello", "1"),
                set("hallo", "2"),
                set("x", "3"),
                set("", "4"),
            ],
        );
        let keys = |p: &str| keys_of(r1(&s, Read::Keys { pattern: b(p) }));
        assert_eq!(keys("*"), set_of(&["hello", "hallo", "x", ""]));
        assert_eq!(keys("h*"), set_of(&["hello", "hallo"]));
        assert_eq!(keys("h[^a]llo"), set_of(&["hello"]));
        assert_eq!(keys("nothing"), set_of(&[]));
        assert_eq!(keys(""), set_of(&[""]));
        assert_eq!(keys("?"), set_of(&["x"]));
    }

    /// One SCAN call: the next cursor and the keys.
    fn scan(s: &KvStore, cursor: u64, pattern: Option<&str>, count: usize) -> (u64, Vec<Bytes>) {
        let reply = r1(
            s,
            Read::Scan {
                cursor,
                pattern: pattern.map(b),
                count,
            },
        );
        let Frame::Array(mut parts) = reply else {
            panic!("not an array")
        };
        assert_eq!(parts.len(), 2);
        let keys = keys_of(parts.pop().unwrap());
        let Some(Frame::Bulk(c)) = parts.pop() else {
            panic!("no cursor")
        };
        let next = std::str::from_utf8(&c).unwrap().parse().unwrap();
        (next, keys.into_iter().collect())
    }

    #[test]
    fn scan_walks_everything_once_when_nothing_changes() {
        let mut s = KvStore::new();
        assert_eq!(scan(&s, 0, None, 10), (0, vec![]));
        let all: BTreeSet<Bytes> = (0..100).map(|i| b(&format!("k{i}"))).collect();
        let pairs = all.iter().map(|k| (k.clone(), b("v"))).collect();
        w1(&mut s, Write::MSet { pairs });
        for count in [1, 3, 7, 100, 1000] {
            let (mut cursor, mut seen, mut calls) = (0, Vec::new(), 0);
            loop {
                let (next, keys) = scan(&s, cursor, None, count);
                calls += 1;
                assert!(keys.len() >= count.min(100 - seen.len()));
                seen.extend(keys);
                if next == 0 {
                    break;
                }
                assert!(next > cursor, "cursors increase");
                cursor = next;
            }
            assert_eq!(seen.len(), 100, "each key once");
            assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);
            assert_eq!(calls, 100usize.div_ceil(count));
        }
        // COUNT 0 is taken as 1; MATCH filters what was examined.
        let (next, keys) = scan(&s, 0, None, 0);
        assert!(next != 0 && keys.len() == 1);
        let (mut cursor, mut seen) = (0, Vec::new());
        loop {
            let (next, keys) = scan(&s, cursor, Some("k1*"), 10);
            seen.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 11); // k1, k10..k19
                                    // "*" matches the empty key, as in Redis.
        w1(&mut s, set("", "e"));
        assert!(scan(&s, 0, Some("*"), 1000).1.contains(&b("")));
        // A cursor past every key ends the iteration.
        assert_eq!(scan(&s, u64::MAX, None, 10).0, 0);
    }

    #[test]
    fn scan_returns_stable_keys_under_churn() {
        let mut rng = Xorshift(42);
        for round in 0..20 {
            let mut s = KvStore::new();
            let stable: BTreeSet<Bytes> = (0..200).map(|i| b(&format!("stable:{i}"))).collect();
            let pairs = stable.iter().map(|k| (k.clone(), b("v"))).collect();
            w1(&mut s, Write::MSet { pairs });
            let mut churn: Vec<Bytes> = Vec::new();
            let (mut cursor, mut seen, mut calls) = (0u64, BTreeSet::new(), 0);
            let pattern = (round % 2 == 1).then_some("stable:*");
            loop {
                let count = 1 + rng.below(5) as usize;
                let (next, keys) = scan(&s, cursor, pattern, count);
                seen.extend(keys);
                calls += 1;
                if next == 0 {
                    break;
                }
                assert!(next > cursor);
                cursor = next;
                // Between calls: insert some keys, delete some churn keys.
                for _ in 0..rng.below(8) {
                    let k = b(&format!("churn:{}", rng.next()));
                    w1(&mut s, set(std::str::from_utf8(&k).unwrap(), "c"));
                    churn.push(k);
                }
                for _ in 0..rng.below(6) {
                    if !churn.is_empty() {
                        let k = churn.swap_remove(rng.below(churn.len() as u64) as usize);
                        w1(&mut s, Write::Del { keys: vec![k] });
                    }
                }
            }
            assert!(
                stable.is_subset(&seen),
                "round {round}: a stable key was missed"
            );
            if pattern.is_some() {
                assert!(seen.iter().all(|k| k.starts_with(b"stable:")));
            }
            assert!(calls <= 200 + churn.len() + 1000);
        }
    }

    #[test]
    fn colliding_keys_share_a_slot() {
        // Force collisions by using the map directly with a made-up hash.
        let mut s = KvStore::new();
        let h = 77;
        for k in ["b", "a", "c"] {
            match spot(&mut s.map, h, k.as_bytes()) {
                Spot::Absent(a) => a.fill(b(k), sv(&k.repeat(2))),
                Spot::Present(_) => panic!("{k} is new"),
            }
            s.len += 1;
        }
        match spot(&mut s.map, h + 1, b"d") {
            Spot::Absent(a) => a.fill(b("d"), sv("dd")),
            Spot::Present(_) => panic!(),
        }
        s.len += 1;
        assert_eq!(s.map.len(), 2);
        assert_eq!(lookup(&s.map, h, b"b"), Some(&sv("bb")));
        assert_eq!(lookup(&s.map, h, b"x"), None);
        assert_eq!(lookup(&s.map, h + 1, b"a"), None);
        match spot(&mut s.map, h, b"c") {
            Spot::Present(v) => *v = sv("new"),
            Spot::Absent(_) => panic!("c is here"),
        }
        assert_eq!(lookup(&s.map, h, b"c"), Some(&sv("new")));
        // In order within the slot; the slot is returned whole by SCAN.
        let keys: Vec<_> = s.iter().map(|(k, _)| k.clone()).collect();
        let first_is_slot = h < h + 1;
        assert!(first_is_slot);
        assert_eq!(keys, vec![b("a"), b("b"), b("c"), b("d")]);
        let (next, got) = scan(&s, 0, None, 1);
        assert_eq!(next, h + 1);
        assert_eq!(got.len(), 3);
        assert_eq!(scan(&s, next, None, 1), (0, vec![b("d")]));
        // Removing down to one key makes a plain slot again.
        assert_eq!(remove(&mut s.map, h, b"x"), None);
        assert_eq!(remove(&mut s.map, h, b"a"), Some(sv("aa")));
        assert!(matches!(s.map.get(&h), Some(Slot::Many(_))));
        assert_eq!(remove(&mut s.map, h, b"b"), Some(sv("bb")));
        assert_eq!(s.map.get(&h), Some(&Slot::One(b("c"), sv("new"))));
        assert_eq!(remove(&mut s.map, h, b"b"), None);
        assert_eq!(remove(&mut s.map, h, b"c"), Some(sv("new")));
        assert_eq!(s.map.len(), 1);
        // A slot with two keys survives a snapshot (rehashed on restore).
        let mut t = KvStore::new();
        for k in ["p", "q"] {
            if let Spot::Absent(a) = spot(&mut t.map, 5, k.as_bytes()) {
                a.fill(b(k), sv("v"));
                t.len += 1;
            }
        }
        let mut u = KvStore::new();
        u.restore(t.snapshot()).unwrap();
        assert_eq!(
            keys_of(r1(&u, Read::Keys { pattern: b("*") })),
            set_of(&["p", "q"])
        );
    }
}
