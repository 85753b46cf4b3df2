//! String writes and reads beyond the first ones: GETDEL, SETRANGE,
//! MSETNX, INCRBYFLOAT (see `float`), GETRANGE.

use bytes::{Bytes, BytesMut};

use super::batch::{Items, MAX_STRING};
use super::keyspace::{remove, spot, Spot};
use super::value::{Value, WRONGTYPE};
use super::{bulk, key_hash, KvStore};
use crate::frame::{put_bulk, put_error, put_int, put_null};

const TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

impl KvStore {
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
    pub(super) fn write_msetnx(&mut self, items: Items<'_>, out: &mut BytesMut) {
        if items.step_by(2).any(|k| self.get(k).is_some()) {
            return put_int(out, 0);
        }
        let mut items = items;
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
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
                None => return put_error(out, super::float::NOT_FLOAT),
            },
            None => super::float::Ext::ZERO,
        };
        let Some(by) = super::float::parse(by) else {
            return put_error(out, super::float::NOT_FLOAT);
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
}

#[cfg(test)]
mod tests {
    use super::super::{encode_reads, encode_writes};
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
                ("INCRBYFLOAT g abc", err(super::super::float::NOT_FLOAT)),
                (
                    "INCRBYFLOAT g inf",
                    err("ERR increment would produce NaN or Infinity"),
                ),
                ("SET h abc", Frame::Simple("OK".into())),
                ("INCRBYFLOAT h 1", err(super::super::float::NOT_FLOAT)),
                ("GET g", bulk(b"3")),
            ],
        );
    }
}
