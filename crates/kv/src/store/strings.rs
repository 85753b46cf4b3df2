//! The commands on strings: SET, GET, INCR and DECR (and their BY forms),
//! APPEND, MSET, MGET, GETSET, CAS (raft-kv's own), STRLEN, GETDEL,
//! SETRANGE, GETRANGE, MSETNX, INCRBYFLOAT (see `float`). Each answers a
//! key of another type with WRONGTYPE and changes nothing, except SET
//! (without GET) and MSET, which replace any type, as in Redis.

use bytes::{Bytes, BytesMut};

use super::args::{OVERFLOW, TOO_LONG};
use super::batch::MAX_STRING;
use super::keyspace::{key_hash, remove, spot, Spot};
use super::reply::{bulk, i64_value, Answer};
use super::value::{Value, WRONGTYPE};
use super::{parse_i64, KvStore, SetCondition, SetTtl};
use crate::frame::{put_array, put_bulk, put_error, put_int, put_null, put_simple};

impl KvStore {
    /// `SET key value [NX|XX] [GET] [time]`: `+OK`, or with GET the old
    /// value (WRONGTYPE, and nothing set, if the key holds another type);
    /// null if the condition refused.
    pub(super) fn write_set(
        &mut self,
        key: &[u8],
        value: &[u8],
        condition: SetCondition,
        get: bool,
        ttl: SetTtl,
        out: &mut BytesMut,
    ) {
        // The time is checked first, as Redis does.
        let deadline = match self.set_deadline(ttl) {
            Ok(d) => d,
            Err(e) => return put_error(out, &e),
        };
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(v) => {
                if get {
                    // SET GET wants the old string: any other type
                    // is an error and nothing is set (Redis 7).
                    let Value::Str(old) = v else {
                        return put_error(out, WRONGTYPE);
                    };
                    bulk(out, old);
                }
                if condition == SetCondition::IfAbsent {
                    if !get {
                        put_null(out);
                    }
                    return;
                }
                *v = Value::Str(Bytes::copy_from_slice(value));
            }
            Spot::Absent(a) => {
                if get || condition == SetCondition::IfPresent {
                    put_null(out);
                }
                if condition == SetCondition::IfPresent {
                    return;
                }
                a.fill(
                    Bytes::copy_from_slice(key),
                    Value::Str(Bytes::copy_from_slice(value)),
                );
                self.len += 1;
            }
        }
        if !get {
            put_simple(out, "OK");
        }
        self.settle_ttl(key, ttl, deadline);
    }

    /// `INCRBY key by` (and INCR, DECR, DECRBY): the new value; an absent
    /// key counts as 0; the key keeps its time to live.
    pub(super) fn write_incrby(&mut self, key: &[u8], by: i64, out: &mut BytesMut) {
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(Value::Str(v)) => match parse_i64(v) {
                None => put_error(out, "ERR value is not an integer or out of range"),
                Some(old) => match old.checked_add(by) {
                    None => put_error(out, OVERFLOW),
                    Some(n) => {
                        *v = i64_value(n);
                        put_int(out, n);
                    }
                },
            },
            Spot::Present(_) => put_error(out, WRONGTYPE),
            Spot::Absent(a) => {
                a.fill(Bytes::copy_from_slice(key), Value::Str(i64_value(by)));
                self.len += 1;
                put_int(out, by);
            }
        }
    }

    /// `APPEND key value`: the new length; the key keeps its time to live.
    pub(super) fn write_append(&mut self, key: &[u8], value: &[u8], out: &mut BytesMut) {
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(Value::Str(v)) => {
                let total = v.len() + value.len();
                if total > MAX_STRING {
                    return put_error(out, TOO_LONG);
                }
                // Grow in place when the buffer is ours alone, so that
                // appending again and again costs amortized O(1) a byte.
                let mut m = match std::mem::take(v).try_into_mut() {
                    Ok(m) => m,
                    Err(old) => {
                        let mut m = BytesMut::with_capacity(total);
                        m.extend_from_slice(&old);
                        m
                    }
                };
                m.extend_from_slice(value);
                *v = m.freeze();
                put_int(out, total as i64);
            }
            Spot::Present(_) => put_error(out, WRONGTYPE),
            Spot::Absent(a) => {
                if value.len() > MAX_STRING {
                    return put_error(out, TOO_LONG);
                }
                a.fill(
                    Bytes::copy_from_slice(key),
                    Value::Str(Bytes::copy_from_slice(value)),
                );
                self.len += 1;
                put_int(out, value.len() as i64);
            }
        }
    }

    /// `MSET key value...`: every key set, whatever it held, its time to
    /// live cleared.
    pub(super) fn write_mset(&mut self, pairs: &[(&[u8], &[u8])], out: &mut BytesMut) {
        for &(k, v) in pairs {
            self.put(k, v);
            self.deadlines.clear(k);
        }
        put_simple(out, "OK");
    }

    /// `GETSET key value`: the old value (or null); the time to live
    /// cleared.
    pub(super) fn write_getset(&mut self, key: &[u8], value: &[u8], out: &mut BytesMut) {
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(Value::Str(v)) => {
                bulk(out, v);
                *v = Bytes::copy_from_slice(value);
            }
            Spot::Present(_) => return put_error(out, WRONGTYPE),
            Spot::Absent(a) => {
                put_null(out);
                a.fill(
                    Bytes::copy_from_slice(key),
                    Value::Str(Bytes::copy_from_slice(value)),
                );
                self.len += 1;
            }
        }
        self.deadlines.clear(key);
    }

    /// `CAS key expected new`: `:1` if the key held `expected` (or was
    /// absent, for `None`) and is now `new` (its time to live cleared),
    /// else `:0`. A key of another type holds no expected string.
    pub(super) fn write_cas(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
        out: &mut BytesMut,
    ) {
        let done = match (spot(&mut self.map, key_hash(key), key), expected) {
            (Spot::Present(v), Some(e)) if v.as_str().is_some_and(|s| s[..] == *e) => {
                *v = Value::Str(Bytes::copy_from_slice(new));
                true
            }
            (Spot::Absent(a), None) => {
                a.fill(
                    Bytes::copy_from_slice(key),
                    Value::Str(Bytes::copy_from_slice(new)),
                );
                self.len += 1;
                true
            }
            _ => false,
        };
        if done {
            self.deadlines.clear(key);
        }
        put_int(out, i64::from(done));
    }

    /// `GETDEL key`: the value (or null), and the key removed; WRONGTYPE
    /// (and nothing removed) for a key of another type.
    pub(super) fn write_getdel(&mut self, key: &[u8], out: &mut BytesMut) {
        if let Err(e) = self.get_str(key) {
            return put_error(out, e);
        }
        match remove(&mut self.map, key_hash(key), key) {
            Some(Value::Str(v)) => {
                self.deadlines.clear(key);
                self.len -= 1;
                bulk(out, &v);
            }
            // Checked above: cannot happen.
            Some(_) => put_error(out, WRONGTYPE),
            None => put_null(out),
        }
    }

    /// `SETRANGE key offset value`: the new length. Nothing is set for an
    /// empty value; the key keeps its time to live. WRONGTYPE for a key of
    /// another type (even with an empty value, as in Redis).
    pub(super) fn write_setrange(
        &mut self,
        key: &[u8],
        offset: u64,
        value: &[u8],
        out: &mut BytesMut,
    ) {
        let total = offset.saturating_add(value.len() as u64);
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(Value::Str(v)) => {
                if value.is_empty() {
                    return put_int(out, v.len() as i64);
                }
                if total > MAX_STRING as u64 {
                    return put_error(out, TOO_LONG);
                }
                let total = total as usize;
                let mut m = BytesMut::with_capacity(total.max(v.len()));
                m.extend_from_slice(v);
                if m.len() < total {
                    m.resize(total, 0);
                }
                let at = offset as usize;
                m[at..at + value.len()].copy_from_slice(value);
                *v = m.freeze();
                put_int(out, v.len() as i64);
            }
            Spot::Present(_) => put_error(out, WRONGTYPE),
            Spot::Absent(a) => {
                if value.is_empty() {
                    return put_int(out, 0);
                }
                if total > MAX_STRING as u64 {
                    return put_error(out, TOO_LONG);
                }
                let mut m = BytesMut::zeroed(total as usize);
                m[offset as usize..].copy_from_slice(value);
                a.fill(Bytes::copy_from_slice(key), Value::Str(m.freeze()));
                self.len += 1;
                put_int(out, total as i64);
            }
        }
    }

    /// `MSETNX key value...`: `:1` and every key set (without a time to
    /// live) if none exists, else `:0` and nothing set (a key of any type
    /// exists).
    pub(super) fn write_msetnx(&mut self, pairs: &[(&[u8], &[u8])], out: &mut BytesMut) {
        if pairs.iter().any(|(k, _)| self.get(k).is_some()) {
            return put_int(out, 0);
        }
        for &(k, v) in pairs {
            self.put(k, v);
            self.deadlines.clear(k);
        }
        put_int(out, 1);
    }

    /// `INCRBYFLOAT key by`: the new value, in long double arithmetic as
    /// Redis computes it; the key keeps its time to live. WRONGTYPE for a
    /// key of another type.
    pub(super) fn write_incrbyfloat(&mut self, key: &[u8], by: &[u8], out: &mut BytesMut) {
        let current = match self.get_str(key) {
            Ok(v) => v.cloned(),
            Err(e) => return put_error(out, e),
        };
        let old = match &current {
            Some(v) => match super::float::parse(v) {
                Some(x) => x,
                None => return put_error(out, super::args::NOT_FLOAT),
            },
            None => super::float::Ext::ZERO,
        };
        let Some(by) = super::float::parse(by) else {
            return put_error(out, super::args::NOT_FLOAT);
        };
        let Some(sum) = old.add(by) else {
            return put_error(out, "ERR increment would produce NaN or Infinity");
        };
        let text = Bytes::from(sum.to_human());
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(v) => *v = Value::Str(text.clone()),
            Spot::Absent(a) => {
                a.fill(Bytes::copy_from_slice(key), Value::Str(text.clone()));
                self.len += 1;
            }
        }
        put_bulk(out, &text);
    }

    /// `GETRANGE key start end`: the bytes from `start` to `end`, both
    /// included, negative from the end, as Redis clamps them; WRONGTYPE
    /// for a key of another type.
    pub(super) fn getrange(&self, key: &[u8], start: i64, end: i64) -> Result<&[u8], &'static str> {
        let Some(v) = self.get_str(key)? else {
            return Ok(&[]);
        };
        if start < 0 && end < 0 && start > end {
            return Ok(&[]);
        }
        let n = v.len() as i64;
        let clamp = |i: i64| if i < 0 { (n + i).max(0) } else { i };
        let (start, mut end) = (clamp(start), clamp(end));
        if end >= n {
            end = n - 1;
        }
        if start > end || n == 0 {
            return Ok(&[]);
        }
        Ok(&v[start as usize..=end as usize])
    }

    /// `GET key`: the value, null, or WRONGTYPE.
    pub(super) fn read_get(&self, key: &[u8], answer: &mut Answer) {
        match self.get_str(key) {
            Ok(Some(v)) => answer.bulk(v),
            Ok(None) => {
                answer.chunk.reserve(5);
                put_null(&mut answer.chunk);
            }
            Err(e) => put_error(&mut answer.chunk, e),
        }
    }

    /// `MGET key...`: the values, null for a key absent or of another type.
    pub(super) fn read_mget(&self, keys: &[&[u8]], answer: &mut Answer) {
        put_array(&mut answer.chunk, keys.len());
        for &k in keys {
            match self.get_str(k).ok().flatten() {
                Some(v) => answer.bulk(v),
                None => {
                    answer.chunk.reserve(5);
                    put_null(&mut answer.chunk);
                }
            }
        }
    }

    /// `STRLEN key`: the value's length, 0 if absent.
    pub(super) fn read_strlen(&self, key: &[u8], out: &mut BytesMut) {
        match self.get_str(key) {
            Ok(v) => put_int(out, v.map_or(0, |v| v.len() as i64)),
            Err(e) => put_error(out, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{b, bulk_f, get, incr, ok, r1, set, set_with, w, w1, Xorshift};
    use super::super::{encode_reads, encode_writes, Read, Write};
    use super::*;
    use crate::cmd::{parse, Command};
    use crate::frame::{Frame, Limits};
    use raft_node::StateMachine;

    fn run(s: &mut KvStore, line: &str) -> Frame {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let out = match parse(&args) {
            Command::Write(w) => s.apply(1, &encode_writes(&[w])),
            Command::Read(r) => s.query(&encode_reads(&[r])),
            Command::Invalid(e) | Command::Refused(e) => return Frame::Error(e),
            other => panic!("{line}: {other:?}"),
        };
        let (f, used) = Frame::parse(&out, &Limits::default()).expect("one frame");
        assert_eq!(used, out.len());
        f
    }

    fn script(s: &mut KvStore, lines: &[(&str, Frame)]) {
        for (line, want) in lines {
            assert_eq!(&run(s, line), want, "{line}");
        }
    }

    fn bulk(v: &[u8]) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(v))
    }

    fn err(e: &str) -> Frame {
        Frame::Error(e.into())
    }

    #[test]
    fn the_string_commands_answer_wrongtype_for_other_types() {
        let mut s = KvStore::new();
        let wrong = || err(WRONGTYPE);
        script(
            &mut s,
            &[
                ("HSET h f v", Frame::Integer(1)),
                ("SADD s m", Frame::Integer(1)),
                ("RPUSH l e", Frame::Integer(1)),
                ("GETDEL h", wrong()),
                ("GETDEL s", wrong()),
                ("SETRANGE l 0 x", wrong()),
                // Even with nothing to write, as Redis checks the type first.
                ("SETRANGE h 0 ", wrong()),
                ("INCRBYFLOAT s 1.5", wrong()),
                ("INCRBYFLOAT l x", wrong()),
                ("GETRANGE h 0 -1", wrong()),
                ("GETRANGE l -1 -5", wrong()),
                // Any existing key blocks MSETNX, whatever its type.
                ("MSETNX fresh 1 h 2", Frame::Integer(0)),
                ("MSETNX fresh 1 l 2", Frame::Integer(0)),
                ("EXISTS fresh", Frame::Integer(0)),
                // Nothing changed.
                ("HGET h f", bulk(b"v")),
                ("SCARD s", Frame::Integer(1)),
                ("LLEN l", Frame::Integer(1)),
                ("MSETNX fresh 1 other 2", Frame::Integer(1)),
            ],
        );
    }

    #[test]
    fn getdel_returns_and_removes() {
        let mut s = KvStore::new();
        script(
            &mut s,
            &[
                ("GETDEL k", Frame::Null),
                ("SET k v EX 100", Frame::Simple("OK".into())),
                ("GETDEL k", bulk(b"v")),
                ("GETDEL k", Frame::Null),
                ("EXISTS k", Frame::Integer(0)),
                (
                    "GETDEL",
                    err("ERR wrong number of arguments for 'getdel' command"),
                ),
            ],
        );
        assert_eq!(s.len(), 0);
        assert_eq!(s.volatile_len(), 0);
    }

    #[test]
    fn setrange_pads_overwrites_and_checks_its_limits() {
        let mut s = KvStore::new();
        script(
            &mut s,
            &[
                ("SETRANGE k 0 ", Frame::Integer(0)),
                ("EXISTS k", Frame::Integer(0)),
                ("SETRANGE k 3 ab", Frame::Integer(5)),
                ("GET k", bulk(b"\0\0\0ab")),
                ("SETRANGE k 1 xyzw", Frame::Integer(5)),
                ("GET k", bulk(b"\0xyzw")),
                ("SETRANGE k 0 Hello", Frame::Integer(5)),
                ("SETRANGE k 9 ", Frame::Integer(5)),
                ("GET k", bulk(b"Hello")),
                ("SETRANGE k -1 x", err("ERR offset is out of range")),
                (
                    "SETRANGE k x x",
                    err("ERR value is not an integer or out of range"),
                ),
                ("SETRANGE k 536870911 xy", err(TOO_LONG)),
                ("SETRANGE n 536870912 x", err(TOO_LONG)),
                ("SETRANGE n 536870912 ", Frame::Integer(0)),
                ("EXISTS n", Frame::Integer(0)),
            ],
        );
    }

    #[test]
    fn msetnx_sets_all_or_nothing() {
        let mut s = KvStore::new();
        script(
            &mut s,
            &[
                ("MSETNX a 1 b 2", Frame::Integer(1)),
                ("MSETNX b 3 c 4", Frame::Integer(0)),
                (
                    "MGET a b c",
                    Frame::Array(vec![bulk(b"1"), bulk(b"2"), Frame::Null]),
                ),
                ("MSETNX c 1 c 2", Frame::Integer(1)),
                ("GET c", bulk(b"2")),
                (
                    "MSETNX a",
                    err("ERR wrong number of arguments for 'msetnx' command"),
                ),
                (
                    "MSETNX a 1 b",
                    err("ERR wrong number of arguments for 'msetnx' command"),
                ),
            ],
        );
    }

    #[test]
    fn getrange_clamps_like_redis() {
        let mut s = KvStore::new();
        run(&mut s, "SET k Hello");
        for (range, want) in [
            ("0 -1", "Hello"),
            ("0 0", "H"),
            ("1 3", "ell"),
            ("-3 -1", "llo"),
            ("-100 100", "Hello"),
            ("3 1", ""),
            ("-1 -3", ""),
            ("5 10", ""),
            ("4 4", "o"),
            ("-9223372036854775808 9223372036854775807", "Hello"),
        ] {
            assert_eq!(
                run(&mut s, &format!("GETRANGE k {range}")),
                bulk(want.as_bytes()),
                "{range}"
            );
        }
        assert_eq!(run(&mut s, "GETRANGE nope 0 -1"), bulk(b""));
        assert_eq!(
            run(&mut s, "GETRANGE k a 1"),
            err("ERR value is not an integer or out of range")
        );
        run(&mut s, "SET e ");
        assert_eq!(run(&mut s, "GETRANGE e 0 -1"), bulk(b""));
    }

    #[test]
    fn incrbyfloat_stores_what_it_replies_and_keeps_the_ttl() {
        let mut s = KvStore::new();
        s.advance_log_time(1_000);
        script(
            &mut s,
            &[
                ("SET f 10.50 PX 5000", Frame::Simple("OK".into())),
                ("INCRBYFLOAT f 0.1", bulk(b"10.6")),
                ("INCRBYFLOAT f -5e3", bulk(b"-4989.39999999999999991")),
                ("GET f", bulk(b"-4989.39999999999999991")),
                ("PEXPIRETIME f", Frame::Integer(6000)),
                ("INCRBYFLOAT g 3", bulk(b"3")),
                ("INCRBYFLOAT g abc", err(super::super::args::NOT_FLOAT)),
                (
                    "INCRBYFLOAT g inf",
                    err("ERR increment would produce NaN or Infinity"),
                ),
                ("SET h abc", Frame::Simple("OK".into())),
                ("INCRBYFLOAT h 1", err(super::super::args::NOT_FLOAT)),
                ("GET g", bulk(b"3")),
            ],
        );
    }

    #[test]
    fn set_and_get() {
        let mut s = KvStore::new();
        assert_eq!(get(&s, "k"), Frame::Null);
        assert_eq!(w1(&mut s, set("k", "v")), ok());
        assert_eq!(get(&s, "k"), bulk_f("v"));
        assert_eq!(w1(&mut s, set("k", "w")), ok());
        assert_eq!(get(&s, "k"), bulk_f("w"));
        assert_eq!(s.len(), 1);
        // Empty keys and values are keys and values.
        assert_eq!(w1(&mut s, set("", "")), ok());
        assert_eq!(get(&s, ""), bulk_f(""));
        assert_eq!(s.len(), 2);
        // Binary-safe.
        let key = Bytes::from_static(b"\0\r\n\xff");
        let value = Bytes::from_static(b"a\r\nb\0");
        let reply = w1(
            &mut s,
            Write::Set {
                key: key.clone(),
                value: value.clone(),
                condition: SetCondition::Always,
                get: false,
                ttl: SetTtl::Clear,
            },
        );
        assert_eq!(reply, ok());
        assert_eq!(r1(&s, Read::Get { key }), Frame::Bulk(value));
    }

    #[test]
    fn set_nx_xx_get_combinations() {
        use SetCondition::*;
        let mut s = KvStore::new();
        // NX: only when absent.
        assert_eq!(w1(&mut s, set_with("k", "1", IfAbsent, false)), ok());
        assert_eq!(w1(&mut s, set_with("k", "2", IfAbsent, false)), Frame::Null);
        assert_eq!(get(&s, "k"), bulk_f("1"));
        // XX: only when present.
        assert_eq!(
            w1(&mut s, set_with("x", "1", IfPresent, false)),
            Frame::Null
        );
        assert_eq!(get(&s, "x"), Frame::Null);
        assert_eq!(w1(&mut s, set_with("k", "3", IfPresent, false)), ok());
        assert_eq!(get(&s, "k"), bulk_f("3"));
        // GET: the old value, and the set happens.
        assert_eq!(w1(&mut s, set_with("k", "4", Always, true)), bulk_f("3"));
        assert_eq!(get(&s, "k"), bulk_f("4"));
        assert_eq!(w1(&mut s, set_with("g", "1", Always, true)), Frame::Null);
        assert_eq!(get(&s, "g"), bulk_f("1"));
        // NX GET: the old value; set only when absent.
        assert_eq!(w1(&mut s, set_with("k", "5", IfAbsent, true)), bulk_f("4"));
        assert_eq!(get(&s, "k"), bulk_f("4"));
        assert_eq!(w1(&mut s, set_with("n", "1", IfAbsent, true)), Frame::Null);
        assert_eq!(get(&s, "n"), bulk_f("1"));
        // XX GET: the old value; set only when present.
        assert_eq!(w1(&mut s, set_with("k", "6", IfPresent, true)), bulk_f("4"));
        assert_eq!(get(&s, "k"), bulk_f("6"));
        assert_eq!(w1(&mut s, set_with("y", "1", IfPresent, true)), Frame::Null);
        assert_eq!(get(&s, "y"), Frame::Null);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn incr_decr_and_their_errors() {
        let mut s = KvStore::new();
        assert_eq!(w1(&mut s, incr("n", 1)), Frame::Integer(1));
        assert_eq!(w1(&mut s, incr("n", 41)), Frame::Integer(42));
        assert_eq!(w1(&mut s, incr("n", -50)), Frame::Integer(-8));
        assert_eq!(get(&s, "n"), bulk_f("-8"));
        assert_eq!(w1(&mut s, incr("m", -3)), Frame::Integer(-3));
        assert_eq!(get(&s, "m"), bulk_f("-3"));
        // Overflow at both ends; the value is left alone.
        let max = i64::MAX.to_string();
        w1(&mut s, set("big", &max));
        let overflow = err("ERR increment or decrement would overflow");
        assert_eq!(w1(&mut s, incr("big", 1)), overflow);
        assert_eq!(get(&s, "big"), bulk_f(&max));
        assert_eq!(w1(&mut s, incr("big", 0)), Frame::Integer(i64::MAX));
        assert_eq!(w1(&mut s, incr("big", i64::MIN)), Frame::Integer(-1));
        let min = i64::MIN.to_string();
        w1(&mut s, set("small", &min));
        assert_eq!(w1(&mut s, incr("small", -1)), overflow);
        assert_eq!(w1(&mut s, incr("small", 1)), Frame::Integer(i64::MIN + 1));
        assert_eq!(
            w1(&mut s, incr("fresh", i64::MIN)),
            Frame::Integer(i64::MIN)
        );
        assert_eq!(get(&s, "fresh"), bulk_f(&min));
        // Redis's strict integers only.
        let not_int = err("ERR value is not an integer or out of range");
        for bad in [
            "",
            "abc",
            "+1",
            " 1",
            "1 ",
            "01",
            "-01",
            "00",
            "-0",
            "-",
            "1.0",
            "1e3",
            "9223372036854775808",
            "-9223372036854775809",
            "0x10",
            "100000000000000000000",
            "\u{0661}",
        ] {
            w1(&mut s, set("bad", bad));
            assert_eq!(w1(&mut s, incr("bad", 1)), not_int, "{bad:?}");
            assert_eq!(get(&s, "bad"), bulk_f(bad), "{bad:?} left alone");
        }
        for (good, n) in [
            ("0", 0),
            ("-1", -1),
            ("10", 10),
            ("9223372036854775806", i64::MAX - 1),
        ] {
            w1(&mut s, set("good", good));
            assert_eq!(
                w1(&mut s, incr("good", 1)),
                Frame::Integer(n + 1),
                "{good:?}"
            );
        }
    }

    #[test]
    fn strict_integer_parsing() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-00"), None);
        assert_eq!(parse_i64(b"99999999999999999999"), None);
        assert_eq!(parse_i64(b"-99999999999999999999"), None);
        let mut rng = Xorshift(7);
        for _ in 0..2000 {
            let n = rng.next() as i64 >> rng.below(64);
            let v = i64_value(n);
            assert_eq!(&v[..], n.to_string().as_bytes());
            assert_eq!(parse_i64(&v), Some(n));
        }
    }

    #[test]
    fn append_creates_and_grows() {
        let mut s = KvStore::new();
        let append = |k: &str, v: &str| Write::Append {
            key: b(k),
            value: b(v),
        };
        assert_eq!(w1(&mut s, append("k", "Hello")), Frame::Integer(5));
        assert_eq!(w1(&mut s, append("k", " World")), Frame::Integer(11));
        assert_eq!(get(&s, "k"), bulk_f("Hello World"));
        assert_eq!(w1(&mut s, append("e", "")), Frame::Integer(0));
        assert_eq!(get(&s, "e"), bulk_f(""));
        // Appending to a counter makes a string.
        w1(&mut s, incr("n", 12));
        assert_eq!(w1(&mut s, append("n", "3")), Frame::Integer(3));
        assert_eq!(w1(&mut s, incr("n", 1)), Frame::Integer(124));
        // Many appends; a snapshot taken midway keeps its bytes.
        let mut expect = String::new();
        let mut snap = None;
        for i in 0..300 {
            let piece = format!("{i},");
            expect.push_str(&piece);
            let reply = w1(&mut s, append("long", &piece));
            assert_eq!(reply, Frame::Integer(expect.len() as i64));
            if i == 150 {
                snap = Some((s.snapshot(), expect.clone()));
            }
        }
        assert_eq!(get(&s, "long"), bulk_f(&expect));
        let (snap, then) = snap.unwrap();
        let mut old = KvStore::new();
        old.restore(snap).unwrap();
        assert_eq!(get(&old, "long"), bulk_f(&then));
        // Values restored from a snapshot share its buffer: appending copies.
        w1(&mut old, append("long", "x"));
        assert_eq!(get(&old, "long"), bulk_f(&format!("{then}x")));
    }

    #[test]
    fn mset_mget_getset_flushdb() {
        let mut s = KvStore::new();
        let pairs = vec![(b("a"), b("1")), (b("b"), b("2")), (b("a"), b("3"))];
        assert_eq!(w1(&mut s, Write::MSet { pairs }), ok());
        assert_eq!(s.len(), 2);
        let mget = Read::MGet {
            keys: vec![b("a"), b("x"), b("b"), b("a")],
        };
        assert_eq!(
            r1(&s, mget),
            Frame::Array(vec![bulk_f("3"), Frame::Null, bulk_f("2"), bulk_f("3")])
        );
        assert_eq!(r1(&s, Read::MGet { keys: vec![] }), Frame::Array(vec![]));
        assert_eq!(w1(&mut s, Write::MSet { pairs: vec![] }), ok());
        let getset = |k: &str, v: &str| Write::GetSet {
            key: b(k),
            value: b(v),
        };
        assert_eq!(w1(&mut s, getset("a", "4")), bulk_f("3"));
        assert_eq!(w1(&mut s, getset("c", "5")), Frame::Null);
        assert_eq!(get(&s, "a"), bulk_f("4"));
        assert_eq!(get(&s, "c"), bulk_f("5"));
        assert_eq!(r1(&s, Read::DbSize), Frame::Integer(3));
        assert_eq!(w1(&mut s, Write::FlushDb), ok());
        assert_eq!(r1(&s, Read::DbSize), Frame::Integer(0));
        assert!(s.is_empty());
        assert_eq!(get(&s, "a"), Frame::Null);
        assert_eq!(w1(&mut s, Write::FlushDb), ok());
        // A large flush frees on another thread; the state is the same.
        let pairs: Vec<_> = (0..20_000).map(|i| (b(&format!("k{i}")), b("v"))).collect();
        w1(&mut s, Write::MSet { pairs });
        assert_eq!(s.len(), 20_000);
        assert_eq!(w1(&mut s, Write::FlushDb), ok());
        assert!(s.is_empty());
        // Empty; every key it removed changed at the flush's entry (1).
        assert_eq!(s.versions.get(b"k0"), 1);
        assert_eq!(
            s,
            KvStore {
                versions: s.versions.clone(),
                ..KvStore::new()
            }
        );
    }

    #[test]
    fn cas_absent_present_mismatch() {
        let mut s = KvStore::new();
        let cas = |k: &str, expected: Option<&str>, new: &str| Write::Cas {
            key: b(k),
            expected: expected.map(b),
            new: b(new),
        };
        assert_eq!(w1(&mut s, cas("k", Some("x"), "1")), Frame::Integer(0));
        assert_eq!(get(&s, "k"), Frame::Null);
        assert_eq!(w1(&mut s, cas("k", None, "1")), Frame::Integer(1));
        assert_eq!(get(&s, "k"), bulk_f("1"));
        assert_eq!(w1(&mut s, cas("k", None, "2")), Frame::Integer(0));
        assert_eq!(w1(&mut s, cas("k", Some("2"), "3")), Frame::Integer(0));
        assert_eq!(get(&s, "k"), bulk_f("1"));
        assert_eq!(w1(&mut s, cas("k", Some("1"), "3")), Frame::Integer(1));
        assert_eq!(get(&s, "k"), bulk_f("3"));
        // The empty value is a value, not absence.
        assert_eq!(w1(&mut s, cas("e", Some(""), "1")), Frame::Integer(0));
        w1(&mut s, set("e", ""));
        assert_eq!(w1(&mut s, cas("e", None, "1")), Frame::Integer(0));
        assert_eq!(w1(&mut s, cas("e", Some(""), "1")), Frame::Integer(1));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn exists_strlen_dbsize() {
        let mut s = KvStore::new();
        w(&mut s, &[set("a", "hello"), set("b", "")]);
        let exists = |keys: &[&str]| Read::Exists {
            keys: keys.iter().map(|k| b(k)).collect(),
        };
        assert_eq!(r1(&s, exists(&["a", "a", "b", "x"])), Frame::Integer(3));
        assert_eq!(r1(&s, exists(&[])), Frame::Integer(0));
        assert_eq!(r1(&s, Read::Strlen { key: b("a") }), Frame::Integer(5));
        assert_eq!(r1(&s, Read::Strlen { key: b("b") }), Frame::Integer(0));
        assert_eq!(r1(&s, Read::Strlen { key: b("x") }), Frame::Integer(0));
        assert_eq!(r1(&s, Read::DbSize), Frame::Integer(2));
    }
}
