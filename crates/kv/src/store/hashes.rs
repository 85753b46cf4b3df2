//! The commands on hashes: HSET, HSETNX, HGET, HMGET, HDEL, HGETALL, HLEN,
//! HEXISTS, HINCRBY, HINCRBYFLOAT, HKEYS, HVALS, HSTRLEN, HSCAN,
//! HRANDFIELD. Their arguments come as sent ([`TypedCmd`]) and are checked
//! here, in Redis's order.

use bytes::{Bytes, BytesMut};

use super::access::Hash;
use super::args::{parse_float, parse_i64, random_count, NOT_FLOAT, NOT_INTEGER, OVERFLOW, SYNTAX};
use super::reply::{i64_value, Out};
use super::typed::TypedCmd;
use super::KvStore;

/// A float as HINCRBYFLOAT replies and stores it: the shortest decimal
/// form that reads back to it, never with an exponent.
fn float_value(f: f64) -> Bytes {
    let s = format!("{f}");
    Bytes::from(if s == "-0" { "0".to_string() } else { s })
}

impl KvStore {
    /// Answers a read-only command on a hash.
    pub(super) fn answer_hashes(&self, cmd: TypedCmd, a: &[&[u8]], out: &mut impl Out) {
        use TypedCmd::*;
        let key = a[0];
        match cmd {
            HGet => self.answer_as(
                key,
                out,
                |o| o.null(),
                |h: &Hash, o| match h.get(a[1]) {
                    Some(v) => o.bulk(v),
                    None => o.null(),
                },
            ),
            HMGet => {
                let h = match self.get_as::<Hash>(key) {
                    Ok(h) => h,
                    Err(e) => return out.error(e),
                };
                out.array(a.len() - 1);
                for f in &a[1..] {
                    match h.and_then(|h| h.get(f)) {
                        Some(v) => out.bulk(v),
                        None => out.null(),
                    }
                }
            }
            HGetAll | HKeys | HVals => self.answer_as(
                key,
                out,
                |o| o.array(0),
                |h: &Hash, o| {
                    let per = if cmd == HGetAll { 2 } else { 1 };
                    o.array(h.len() * per);
                    for (f, v) in h.iter() {
                        if cmd != HVals {
                            o.bulk(f);
                        }
                        if cmd != HKeys {
                            o.bulk(v);
                        }
                    }
                },
            ),
            HLen => self.answer_as(key, out, |o| o.int(0), |h: &Hash, o| o.int(h.len() as i64)),
            HExists => self.answer_as(
                key,
                out,
                |o| o.int(0),
                |h: &Hash, o| o.int(i64::from(h.get(a[1]).is_some())),
            ),
            HStrLen => self.answer_as(
                key,
                out,
                |o| o.int(0),
                |h: &Hash, o| o.int(h.get(a[1]).map_or(0, |v| v.len() as i64)),
            ),
            HScan => self.answer_scan(a, out, 2, |f, v: &Bytes, o| {
                o.bulk(f);
                o.bulk(v);
            }),
            _ => out.error(&format!("ERR '{}' is not answered by a query", cmd.name())),
        }
    }

    /// Applies a write on a hash, adding its key to `changed` if it
    /// changes it.
    pub(super) fn write_hashes<'a>(
        &mut self,
        cmd: TypedCmd,
        a: &[&'a [u8]],
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
    ) {
        use TypedCmd::*;
        let key = a[0];
        match cmd {
            HSet | HSetNx => self.change_or_make(key, out, changed, |h: &mut Hash, out| {
                let mut added = 0;
                for p in a[1..].chunks(2) {
                    let [f, v] = p else { break };
                    if cmd == HSetNx && h.get(f).is_some() {
                        continue;
                    }
                    added +=
                        i64::from(h.insert(Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)));
                }
                out.int(added);
                // HSET always sets a field (maybe to the value it held, a
                // change all the same, as in Redis); HSETNX only if new.
                cmd == HSet || added > 0
            }),
            HDel => self.change_as(
                key,
                out,
                changed,
                |o| o.int(0),
                |h: &mut Hash, out| {
                    let n = a[1..].iter().filter(|f| h.remove(f).is_some()).count();
                    out.int(n as i64);
                    n > 0
                },
            ),
            HIncrBy => {
                let Some(by) = parse_i64(a[2]) else {
                    return out.error(NOT_INTEGER);
                };
                self.change_or_make(key, out, changed, |h: &mut Hash, out| {
                    let old = match h.get(a[1]) {
                        None => 0,
                        Some(v) => match parse_i64(v) {
                            Some(n) => n,
                            None => {
                                out.error("ERR hash value is not an integer");
                                return false;
                            }
                        },
                    };
                    let Some(n) = old.checked_add(by) else {
                        out.error(OVERFLOW);
                        return false;
                    };
                    h.insert(Bytes::copy_from_slice(a[1]), i64_value(n));
                    out.int(n);
                    true
                })
            }
            HIncrByFloat => {
                let Some(by) = parse_float(a[2]) else {
                    return out.error(NOT_FLOAT);
                };
                if by.is_infinite() {
                    return out.error("ERR value is NaN or Infinity");
                }
                self.change_or_make(key, out, changed, |h: &mut Hash, out| {
                    let old = match h.get(a[1]) {
                        None => Some(0.0),
                        Some(v) => parse_float(v),
                    };
                    let Some(old) = old else {
                        out.error("ERR hash value is not a float");
                        return false;
                    };
                    let n = old + by;
                    if !n.is_finite() {
                        out.error("ERR increment would produce NaN or Infinity");
                        return false;
                    }
                    let v = float_value(n);
                    out.bulk(&v);
                    h.insert(Bytes::copy_from_slice(a[1]), v);
                    true
                })
            }
            HRandField => self.hrandfield(a, out),
            _ => out.error(&format!("ERR '{}' is not a write", cmd.name())),
        }
    }

    /// `HRANDFIELD key [count [WITHVALUES]]`: fields picked by the log's
    /// seed (a write, so that every node picks the same).
    fn hrandfield(&mut self, a: &[&[u8]], out: &mut BytesMut) {
        let mut rng = self.seed.rng();
        let key = a[0];
        let Some(count) = a.get(1) else {
            return self.answer_as(
                key,
                out,
                |o| o.null(),
                |h: &Hash, o| match h.pick_distinct(1, &mut rng).first() {
                    Some((f, _)) => o.bulk(f),
                    None => o.null(),
                },
            );
        };
        let count = match random_count(count) {
            Ok(c) => c,
            Err(e) => return out.error(&e),
        };
        let with_values = match a.get(2) {
            None => false,
            Some(w) if a.len() == 3 && w.eq_ignore_ascii_case(b"withvalues") => true,
            Some(_) => return out.error(SYNTAX),
        };
        if with_values && count.unsigned_abs() > (i64::MAX / 2) as u64 {
            return out.error("ERR value is out of range");
        }
        self.answer_as(
            key,
            out,
            |o| o.array(0),
            |h: &Hash, o| {
                let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
                let picks = if count >= 0 {
                    h.pick_distinct(n, &mut rng)
                } else {
                    h.pick_repeating(n, &mut rng)
                };
                o.array(picks.len() * if with_values { 2 } else { 1 });
                for (f, v) in picks {
                    o.bulk(f);
                    if with_values {
                        o.bulk(v);
                    }
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::NOT_FLOAT;
    use super::super::testing::*;
    use super::super::KvStore;
    use crate::frame::Frame;

    #[test]
    fn hashes_like_redis() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, "HSET h a 1 b 2 a 3"), int(2));
        assert_eq!(run(&mut s, "HGET h a"), bulk("3"));
        assert_eq!(run(&mut s, "HGET h x"), Frame::Null);
        assert_eq!(run(&mut s, "HGET nokey x"), Frame::Null);
        assert_eq!(
            run(&mut s, "HMGET h a x b"),
            Frame::Array(vec![bulk("3"), Frame::Null, bulk("2")])
        );
        assert_eq!(
            run(&mut s, "HMGET nokey a"),
            Frame::Array(vec![Frame::Null])
        );
        assert_eq!(run(&mut s, "HSETNX h a 9"), int(0));
        assert_eq!(run(&mut s, "HSETNX h c 9"), int(1));
        assert_eq!(run(&mut s, "HLEN h"), int(3));
        assert_eq!(run(&mut s, "HEXISTS h c"), int(1));
        assert_eq!(run(&mut s, "HEXISTS h z"), int(0));
        assert_eq!(run(&mut s, "HSTRLEN h c"), int(1));
        assert_eq!(run(&mut s, "HSTRLEN h z"), int(0));
        assert_eq!(
            items(run(&mut s, "HGETALL h")),
            strs(&["a", "3", "b", "2", "c", "9"])
        );
        assert_eq!(items(run(&mut s, "HKEYS h")), strs(&["a", "b", "c"]));
        assert_eq!(items(run(&mut s, "HVALS h")), strs(&["3", "2", "9"]));
        assert_eq!(items(run(&mut s, "HGETALL nokey")), strs(&[]));
        // Counting.
        assert_eq!(run(&mut s, "HINCRBY h a 10"), int(13));
        assert_eq!(run(&mut s, "HINCRBY h n -5"), int(-5));
        assert_eq!(
            run(&mut s, "HINCRBY h a x"),
            err("ERR value is not an integer or out of range")
        );
        run(&mut s, "HSET h s abc");
        assert_eq!(
            run(&mut s, "HINCRBY h s 1"),
            err("ERR hash value is not an integer")
        );
        run(&mut s, "HSET h m 9223372036854775807");
        assert_eq!(
            run(&mut s, "HINCRBY h m 1"),
            err("ERR increment or decrement would overflow")
        );
        assert_eq!(run(&mut s, "HINCRBYFLOAT h f 10.5"), bulk("10.5"));
        assert_eq!(run(&mut s, "HINCRBYFLOAT h f 0.25"), bulk("10.75"));
        assert_eq!(
            run(&mut s, "HINCRBYFLOAT h g 3e20"),
            bulk("300000000000000000000")
        );
        assert_eq!(run(&mut s, "HINCRBYFLOAT h f x"), err(NOT_FLOAT));
        assert_eq!(
            run(&mut s, "HINCRBYFLOAT h s 1"),
            err("ERR hash value is not a float")
        );
        assert_eq!(
            run(&mut s, "HINCRBYFLOAT h f inf"),
            err("ERR value is NaN or Infinity")
        );
        // A failed HINCRBY on a new key leaves no empty hash behind.
        run(&mut s, "SET str v");
        assert_eq!(run(&mut s, "HINCRBY str f 1"), wrong());
        assert_eq!(run(&mut s, "HDEL h a b c n s m f g x"), int(8));
        assert_eq!(run(&mut s, "HLEN h"), int(0));
        assert_eq!(run(&mut s, "EXISTS h"), int(0));
        assert_eq!(
            run(&mut s, "HSET h a"),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            run(&mut s, "HSET h a 1 b"),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(s.len(), 1);
    }
}
