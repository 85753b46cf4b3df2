//! The commands on lists: LPUSH, RPUSH, LPOP, RPOP, LLEN, LRANGE, LINDEX,
//! LSET, LREM, LTRIM, LPOS, LMOVE, LMPOP, and one attempt of the blocking
//! pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP). Their arguments come
//! as sent ([`TypedCmd`]) and are checked here, in Redis's order.
//!
//! A blocking pop is applied as Redis runs it inside MULTI: it pops at once
//! or replies null, never waits. The waiting is the connection's
//! (`crate::blocking`): it sends the same write again when a list it waits
//! for may have changed, so that the log alone decides who gets an element.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::access::List;
use super::args::{parse_i64, parse_timeout_ms, pop_count, random_count, NOT_INTEGER, SYNTAX};
use super::reply::Out;
use super::typed::TypedCmd;
use super::value::{Value, WRONGTYPE};
use super::KvStore;

impl KvStore {
    /// Answers a read-only command on a list.
    pub(super) fn answer_lists(&self, cmd: TypedCmd, a: &[&[u8]], out: &mut impl Out) {
        use TypedCmd::*;
        let key = a[0];
        match cmd {
            LLen => self.answer_as(key, out, |o| o.int(0), |l: &List, o| o.int(l.len() as i64)),
            LRange => {
                let (Some(start), Some(stop)) = (parse_i64(a[1]), parse_i64(a[2])) else {
                    return out.error(NOT_INTEGER);
                };
                self.answer_as(
                    key,
                    out,
                    |o| o.array(0),
                    |l: &List, o| {
                        let range = list_range(l.len(), start, stop);
                        o.array(range.len());
                        for e in l.range(range) {
                            o.bulk(e);
                        }
                    },
                )
            }
            LIndex => self.answer_as(
                key,
                out,
                |o| o.null(),
                |l: &List, o| {
                    let Some(i) = parse_i64(a[1]) else {
                        return o.error(NOT_INTEGER);
                    };
                    match list_index(l.len(), i).and_then(|i| l.get(i)) {
                        Some(e) => o.bulk(e),
                        None => o.null(),
                    }
                },
            ),
            LPos => self.lpos(a, out),
            _ => out.error(&format!("ERR '{}' is not answered by a query", cmd.name())),
        }
    }

    /// Applies a write on lists, adding to `changed` the keys it changes.
    pub(super) fn write_lists<'a>(
        &mut self,
        cmd: TypedCmd,
        a: &[&'a [u8]],
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
    ) {
        use TypedCmd::*;
        let key = a[0];
        match cmd {
            LPush | RPush => self.change_or_make(key, out, changed, |l: &mut List, out| {
                for e in &a[1..] {
                    let e = Bytes::copy_from_slice(e);
                    if cmd == LPush {
                        l.push_front(e);
                    } else {
                        l.push_back(e);
                    }
                }
                out.int(l.len() as i64);
                true
            }),
            LPop | RPop => {
                if a.len() > 2 {
                    return out.error(&crate::cmd::arity_error(cmd.name()));
                }
                let count = match pop_count(a.get(1)) {
                    Ok(c) => c,
                    Err(e) => return out.error(e),
                };
                self.change_as(
                    key,
                    out,
                    changed,
                    |o| match count {
                        Some(_) => o.null_array(),
                        None => o.null(),
                    },
                    |l: &mut List, out| {
                        let n = count
                            .map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX).min(l.len()));
                        let popped: Vec<Bytes> = (0..n)
                            .filter_map(|_| {
                                if cmd == LPop {
                                    l.pop_front()
                                } else {
                                    l.pop_back()
                                }
                            })
                            .collect();
                        match count {
                            None => out.bulk(&popped[0]),
                            Some(_) => {
                                out.array(popped.len());
                                for e in &popped {
                                    out.bulk(e);
                                }
                            }
                        }
                        !popped.is_empty()
                    },
                )
            }
            LSet => self.change_as(
                key,
                out,
                changed,
                |o| o.error("ERR no such key"),
                |l: &mut List, out| {
                    let Some(i) = parse_i64(a[1]) else {
                        out.error(NOT_INTEGER);
                        return false;
                    };
                    match list_index(l.len(), i).and_then(|i| l.get_mut(i)) {
                        Some(e) => {
                            *e = Bytes::copy_from_slice(a[2]);
                            out.simple("OK");
                            true
                        }
                        None => {
                            out.error("ERR index out of range");
                            false
                        }
                    }
                },
            ),
            LRem => {
                let Some(count) = parse_i64(a[1]) else {
                    return out.error(NOT_INTEGER);
                };
                self.change_as(
                    key,
                    out,
                    changed,
                    |o| o.int(0),
                    |l: &mut List, out| {
                        let removed = list_remove(l, count, a[2]);
                        out.int(removed as i64);
                        removed > 0
                    },
                )
            }
            LTrim => {
                let (Some(start), Some(stop)) = (parse_i64(a[1]), parse_i64(a[2])) else {
                    return out.error(NOT_INTEGER);
                };
                self.change_as(
                    key,
                    out,
                    changed,
                    |o| o.simple("OK"),
                    |l: &mut List, out| {
                        let before = l.len();
                        let range = list_range(l.len(), start, stop);
                        l.truncate(range.end);
                        l.drain(..range.start.min(l.len()));
                        out.simple("OK");
                        l.len() != before
                    },
                )
            }
            LMove => {
                if self.lmove(a, out) {
                    changed.extend([a[0], a[1]]);
                }
            }
            BLPop | BRPop => self.bpop(cmd == BLPop, a, out, changed),
            LMPop => self.mpop(a, out, changed),
            BLMPop => match blocking_timeout_ms(cmd, a) {
                Some(Err(e)) => out.error(e),
                _ => self.mpop(&a[1..], out, changed),
            },
            BLMove | BRPopLPush => {
                if let Some(Err(e)) = blocking_timeout_ms(cmd, a) {
                    return out.error(e);
                }
                let moved: &[&[u8]] = if cmd == BLMove {
                    &a[..4]
                } else {
                    &[a[0], a[1], b"right", b"left"]
                };
                if self.lmove(moved, out) {
                    changed.extend([a[0], a[1]]);
                }
            }
            _ => out.error(&format!("ERR '{}' is not a write", cmd.name())),
        }
    }

    /// One attempt of `BLPOP key [key ...] timeout` (`left`) or BRPOP:
    /// pops from the first of the keys that holds a list, replying the key
    /// and the element; a null array if none does. The first key that
    /// holds another type is WRONGTYPE, as in Redis.
    fn bpop<'a>(
        &mut self,
        left: bool,
        a: &[&'a [u8]],
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
    ) {
        if let Some(Err(e)) = blocking_timeout_ms(TypedCmd::BLPop, a) {
            return out.error(e);
        }
        self.pop_first(&a[..a.len() - 1], left, None, out, changed)
    }

    /// `LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]` (BLMPOP's
    /// attempt, after its timeout).
    fn mpop<'a>(&mut self, a: &[&'a [u8]], out: &mut BytesMut, changed: &mut Vec<&'a [u8]>) {
        match mpop_args(a) {
            Ok((keys, left, count)) => self.pop_first(keys, left, Some(count), out, changed),
            Err(e) => out.error(e),
        }
    }

    /// Pops from the first of `keys` that holds a list (its head if
    /// `left`): one element, replying `[key, element]` (BLPOP, BRPOP), or
    /// up to `count`, replying `[key, [elements]]` (LMPOP); a null array
    /// if none holds one. The first key that holds another type is
    /// WRONGTYPE, as in Redis.
    fn pop_first<'a>(
        &mut self,
        keys: &[&'a [u8]],
        left: bool,
        count: Option<i64>,
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
    ) {
        for &key in keys {
            match self.get_as::<List>(key) {
                Ok(None) => continue,
                Ok(Some(_)) => {}
                Err(e) => return out.error(e),
            }
            return self.change_as(
                key,
                out,
                changed,
                |o| o.null_array(),
                |l: &mut List, out| {
                    let n = count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX));
                    let popped: Vec<Bytes> = (0..n.min(l.len()))
                        .filter_map(|_| if left { l.pop_front() } else { l.pop_back() })
                        .collect();
                    if popped.is_empty() {
                        // A stored list is never empty.
                        out.null_array();
                        return false;
                    }
                    out.array(2);
                    out.bulk_slice(key);
                    if count.is_some() {
                        out.array(popped.len());
                    }
                    for e in &popped {
                        out.bulk(e);
                    }
                    true
                },
            );
        }
        out.null_array()
    }

    /// `LPOS key element [RANK rank] [COUNT num] [MAXLEN len]`.
    fn lpos(&self, a: &[&[u8]], out: &mut impl Out) {
        let (mut rank, mut count, mut maxlen) = (1i64, None, 0i64);
        let mut i = 2;
        while i < a.len() {
            let Some(value) = a.get(i + 1) else {
                return out.error(SYNTAX);
            };
            let opt = a[i];
            // COUNT and MAXLEN take a count: anything else is "negative".
            let n = match parse_i64(value) {
                Some(n) => n,
                None if opt.eq_ignore_ascii_case(b"rank") => return out.error(NOT_INTEGER),
                None => -1,
            };
            if opt.eq_ignore_ascii_case(b"rank") {
                if n == i64::MIN {
                    return out.error(&random_count(value).err().unwrap_or_default());
                }
                if n == 0 {
                    return out.error(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                    );
                }
                rank = n;
            } else if opt.eq_ignore_ascii_case(b"count") {
                if n < 0 {
                    return out.error("ERR COUNT can't be negative");
                }
                count = Some(n);
            } else if opt.eq_ignore_ascii_case(b"maxlen") {
                if n < 0 {
                    return out.error("ERR MAXLEN can't be negative");
                }
                maxlen = n;
            } else {
                return out.error(SYNTAX);
            }
            i += 2;
        }
        let l = match self.get_as::<List>(a[0]) {
            Ok(Some(l)) => l,
            Ok(None) => {
                return match count {
                    Some(_) => out.array(0),
                    None => out.null(),
                }
            }
            Err(e) => return out.error(e),
        };
        let wanted = match count {
            Some(0) => usize::MAX,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => 1,
        };
        let scan = if maxlen == 0 {
            l.len()
        } else {
            usize::try_from(maxlen).unwrap_or(usize::MAX).min(l.len())
        };
        let mut skip = rank.unsigned_abs() - 1;
        let mut found = Vec::new();
        let indexes: Box<dyn Iterator<Item = usize>> = if rank > 0 {
            Box::new(0..scan)
        } else {
            Box::new((l.len() - scan..l.len()).rev())
        };
        for i in indexes {
            if found.len() >= wanted {
                break;
            }
            if l[i][..] == *a[1] {
                if skip > 0 {
                    skip -= 1;
                } else {
                    found.push(i as i64);
                }
            }
        }
        match count {
            None => match found.first() {
                Some(&i) => out.int(i),
                None => out.null(),
            },
            Some(_) => {
                out.array(found.len());
                for i in found {
                    out.int(i);
                }
            }
        }
    }

    /// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`.
    /// True if it moved an element.
    fn lmove(&mut self, a: &[&[u8]], out: &mut BytesMut) -> bool {
        let (Some(from_left), Some(to_left)) = (side(a[2]), side(a[3])) else {
            out.error(SYNTAX);
            return false;
        };
        let (src, dst) = (a[0], a[1]);
        match self.get_as::<List>(src) {
            Ok(Some(_)) => {}
            Ok(None) => {
                out.null();
                return false;
            }
            Err(e) => {
                out.error(e);
                return false;
            }
        }
        if self.get_as::<List>(dst).is_err() {
            out.error(WRONGTYPE);
            return false;
        }
        let Some(Value::List(l)) = self.get_mut(src) else {
            out.null();
            return false;
        };
        let Some(e) = (if from_left {
            l.pop_front()
        } else {
            l.pop_back()
        }) else {
            out.null();
            return false;
        };
        out.bulk(&e);
        // The source first: a list emptied by its move to another key goes
        // (with its time to live) before the destination is made.
        if src != dst {
            self.drop_if_empty(src);
        }
        if let Ok(d) = self.make_as::<List>(dst) {
            if to_left {
                d.push_front(e);
            } else {
                d.push_back(e);
            }
        }
        true
    }
}

/// The timeout of a blocking pop (ms, 0 for ever), from its arguments
/// after the name, checked as Redis checks them before it looks at a key
/// (BLMOVE's sides first): `None` for a command that does not block.
pub fn blocking_timeout_ms<A: AsRef<[u8]>>(
    cmd: TypedCmd,
    a: &[A],
) -> Option<Result<u64, &'static str>> {
    use TypedCmd::*;
    if !matches!(cmd, BLPop | BRPop | BLMove | BRPopLPush | BLMPop) {
        return None;
    }
    if cmd == BLMove {
        let sides_ok = a.len() == 5 && a[2..4].iter().all(|s| side(s.as_ref()).is_some());
        if !sides_ok {
            return Some(Err(SYNTAX));
        }
    }
    if cmd == BLMPop {
        // Its timeout comes first, and is read after the rest.
        return Some(match a.split_first() {
            Some((t, rest)) => mpop_args(rest).and_then(|_| parse_timeout_ms(t.as_ref())),
            None => Err(super::args::TIMEOUT_NOT_FLOAT),
        });
    }
    Some(match a.last() {
        Some(t) => parse_timeout_ms(t.as_ref()),
        None => Err(super::args::TIMEOUT_NOT_FLOAT),
    })
}

/// `ERR numkeys should be greater than 0`.
const NUMKEYS: &str = "ERR numkeys should be greater than 0";

/// The keys, the side (true: LEFT) and the count of `numkeys key [key
/// ...] LEFT|RIGHT [COUNT count]` (LMPOP's arguments, BLMPOP's after its
/// timeout), checked in Redis's order.
pub fn mpop_args<A: AsRef<[u8]>>(a: &[A]) -> Result<(&[A], bool, i64), &'static str> {
    let numkeys = a
        .first()
        .and_then(|n| parse_i64(n.as_ref()))
        .filter(|n| *n > 0)
        .ok_or(NUMKEYS)?;
    let side_at = usize::try_from(numkeys).map_or(usize::MAX, |n| n.saturating_add(1));
    let Some(left) = a.get(side_at).and_then(|s| side(s.as_ref())) else {
        return Err(SYNTAX);
    };
    let mut count = None;
    let mut i = side_at + 1;
    while i < a.len() {
        match a.get(i + 1) {
            Some(n) if count.is_none() && a[i].as_ref().eq_ignore_ascii_case(b"count") => {
                count = Some(
                    parse_i64(n.as_ref())
                        .filter(|n| *n > 0)
                        .ok_or("ERR count should be greater than 0")?,
                );
                i += 2;
            }
            _ => return Err(SYNTAX),
        }
    }
    Ok((&a[1..side_at], left, count.unwrap_or(1)))
}

/// LMOVE's side: `Some(true)` for LEFT, `Some(false)` for RIGHT
/// (case-insensitive).
fn side(s: &[u8]) -> Option<bool> {
    if s.eq_ignore_ascii_case(b"left") {
        Some(true)
    } else if s.eq_ignore_ascii_case(b"right") {
        Some(false)
    } else {
        None
    }
}

/// Removes up to `count` elements equal to `e` from `l` (all for 0; from
/// the tail for a negative count); how many it removed.
fn list_remove(l: &mut List, count: i64, e: &[u8]) -> usize {
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
    };
    let mut removed = 0;
    let kept: VecDeque<Bytes> = if count >= 0 {
        l.drain(..)
            .filter(|x| {
                let gone = removed < limit && x[..] == *e;
                removed += usize::from(gone);
                !gone
            })
            .collect()
    } else {
        let mut v: Vec<Bytes> = l
            .drain(..)
            .rev()
            .filter(|x| {
                let gone = removed < limit && x[..] == *e;
                removed += usize::from(gone);
                !gone
            })
            .collect();
        v.reverse();
        v.into()
    };
    *l = kept;
    removed
}

/// The positions LRANGE and LTRIM keep of a list of `len` (negative
/// indexes count from the end; out of range is clamped, and empty if start
/// is past stop).
fn list_range(len: usize, start: i64, stop: i64) -> std::ops::Range<usize> {
    let len_i = len as i64;
    let fix = |i: i64| if i < 0 { (len_i + i).max(0) } else { i };
    let (start, stop) = (fix(start), fix(stop).min(len_i - 1));
    if start > stop || start >= len_i {
        return 0..0;
    }
    start as usize..stop as usize + 1
}

/// The position of LINDEX and LSET's index in a list of `len`.
fn list_index(len: usize, i: i64) -> Option<usize> {
    let i = if i < 0 {
        (len as i64).checked_add(i)?
    } else {
        i
    };
    usize::try_from(i).ok().filter(|&i| i < len)
}

#[cfg(test)]
mod tests {
    use super::super::args::{MUST_BE_POSITIVE, NOT_INTEGER, SYNTAX};
    use super::super::testing::*;
    use super::super::KvStore;
    use crate::frame::Frame;
    use raft_node::StateMachine;

    #[test]
    fn lists_like_redis() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, "RPUSH l a b c"), int(3));
        assert_eq!(run(&mut s, "LPUSH l z y"), int(5));
        let all = |s: &mut KvStore| match run(s, "LRANGE l 0 -1") {
            Frame::Array(a) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(all(&mut s), ["y", "z", "a", "b", "c"].map(bulk));
        assert_eq!(run(&mut s, "LLEN l"), int(5));
        assert_eq!(run(&mut s, "LINDEX l -1"), bulk("c"));
        assert_eq!(run(&mut s, "LINDEX l 5"), Frame::Null);
        assert_eq!(
            run(&mut s, "LRANGE l -100 1"),
            Frame::Array(vec![bulk("y"), bulk("z")])
        );
        assert_eq!(run(&mut s, "LRANGE l 3 1"), Frame::Array(vec![]));
        assert_eq!(run(&mut s, "LRANGE l x 1"), err(NOT_INTEGER));
        assert_eq!(run(&mut s, "LSET l 1 Z"), Frame::Simple("OK".into()));
        assert_eq!(run(&mut s, "LSET l 9 Z"), err("ERR index out of range"));
        assert_eq!(run(&mut s, "LSET nokey 0 Z"), err("ERR no such key"));
        assert_eq!(run(&mut s, "LPOP l"), bulk("y"));
        assert_eq!(
            run(&mut s, "RPOP l 2"),
            Frame::Array(vec![bulk("c"), bulk("b")])
        );
        assert_eq!(run(&mut s, "LPOP l 0"), Frame::Array(vec![]));
        assert_eq!(run(&mut s, "LPOP nokey 2"), Frame::NullArray);
        assert_eq!(run(&mut s, "LPOP l -1"), err(MUST_BE_POSITIVE));
        run(&mut s, "RPUSH l a x a y a");
        assert_eq!(run(&mut s, "LPOS l a"), int(1));
        assert_eq!(run(&mut s, "LPOS l a RANK -1"), int(6));
        assert_eq!(
            run(&mut s, "LPOS l a COUNT 0"),
            Frame::Array(vec![int(1), int(2), int(4), int(6)])
        );
        assert_eq!(run(&mut s, "LPOS l a RANK 2 MAXLEN 2"), Frame::Null);
        assert_eq!(
            run(&mut s, "LPOS l a COUNT -1"),
            err("ERR COUNT can't be negative")
        );
        assert_eq!(run(&mut s, "LREM l -2 a"), int(2));
        assert_eq!(all(&mut s), ["Z", "a", "a", "x", "y"].map(bulk));
        assert_eq!(run(&mut s, "LREM l 0 a"), int(2));
        assert_eq!(run(&mut s, "LTRIM l 1 -1"), Frame::Simple("OK".into()));
        assert_eq!(all(&mut s), ["x", "y"].map(bulk));
        assert_eq!(run(&mut s, "LMOVE l m LEFT RIGHT"), bulk("x"));
        assert_eq!(run(&mut s, "LMOVE l m RIGHT LEFT"), bulk("y"));
        assert_eq!(run(&mut s, "EXISTS l"), int(0));
        assert_eq!(
            run(&mut s, "LRANGE m 0 -1"),
            Frame::Array(vec![bulk("y"), bulk("x")])
        );
        assert_eq!(run(&mut s, "LMOVE m m LEFT RIGHT"), bulk("y"));
        assert_eq!(
            run(&mut s, "LRANGE m 0 -1"),
            Frame::Array(vec![bulk("x"), bulk("y")])
        );
        assert_eq!(run(&mut s, "LMOVE m m UP RIGHT"), err(SYNTAX));
        run(&mut s, "SET str v");
        assert_eq!(run(&mut s, "LMOVE m str LEFT LEFT"), wrong());
        assert_eq!(run(&mut s, "LPUSH str a"), wrong());
        assert_eq!(run(&mut s, "TYPE m"), Frame::Simple("list".into()));
        assert_eq!(run(&mut s, "LTRIM m 5 10"), Frame::Simple("OK".into()));
        assert_eq!(run(&mut s, "EXISTS m"), int(0));
        // Lists go into snapshots too.
        run(&mut s, "RPUSH kept 1 2 3");
        let mut t = KvStore::new();
        t.restore(s.snapshot()).unwrap();
        assert_eq!(t, s);
        assert_eq!(
            run(&mut t, "LRANGE kept 0 -1"),
            Frame::Array(vec![bulk("1"), bulk("2"), bulk("3")])
        );
    }

    #[test]
    fn blocking_pops_pop_at_once_or_reply_null_when_applied() {
        use super::super::{encode_writes, Write};
        use super::TypedCmd;
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, "BLPOP a b 0"), Frame::NullArray);
        run(&mut s, "RPUSH b x y");
        assert_eq!(
            run(&mut s, "BLPOP a b 0"),
            Frame::Array(vec![bulk("b"), bulk("x")])
        );
        assert_eq!(
            run(&mut s, "BRPOP a b 1.5"),
            Frame::Array(vec![bulk("b"), bulk("y")])
        );
        assert_eq!(run(&mut s, "EXISTS b"), int(0), "emptied: removed");
        // The first key that exists decides, as in Redis.
        run(&mut s, "SET a str");
        run(&mut s, "RPUSH b z");
        assert_eq!(run(&mut s, "BLPOP a b 0"), wrong());
        assert_eq!(
            run(&mut s, "BLPOP b a 0"),
            Frame::Array(vec![bulk("b"), bulk("z")])
        );
        assert_eq!(run(&mut s, "BLMOVE src dst LEFT RIGHT 0"), Frame::Null);
        assert_eq!(run(&mut s, "BRPOPLPUSH src dst 0"), Frame::Null);
        run(&mut s, "RPUSH src 1 2");
        assert_eq!(run(&mut s, "BRPOPLPUSH src dst 0"), bulk("2"));
        assert_eq!(run(&mut s, "BLMOVE src dst LEFT LEFT 0.1"), bulk("1"));
        assert_eq!(run(&mut s, "EXISTS src"), int(0));
        assert_eq!(
            run(&mut s, "LRANGE dst 0 -1"),
            Frame::Array(vec![bulk("1"), bulk("2")])
        );
        assert_eq!(run(&mut s, "BLMOVE dst a LEFT LEFT 0"), wrong());
        assert_eq!(run(&mut s, "BRPOPLPUSH a dst 0"), wrong());
        assert_eq!(run(&mut s, "LLEN dst"), int(2), "nothing moved");
        // An entry is untrusted bytes: its arguments are checked again,
        // in Redis's order (BLMOVE's sides, the timeout, then the keys).
        let mut applied = |cmd, args: &[&str]| {
            let args = args
                .iter()
                .map(|a| bytes::Bytes::from(a.to_string()))
                .collect();
            frame(&s.apply(2, &encode_writes(&[Write::Typed { cmd, args }])))
        };
        assert_eq!(
            applied(TypedCmd::BLPop, &["a", "-1"]),
            err("ERR timeout is negative")
        );
        assert_eq!(
            applied(TypedCmd::BRPop, &["dst", "x"]),
            err("ERR timeout is not a float or out of range")
        );
        assert_eq!(
            applied(TypedCmd::BLMove, &["dst", "a", "UP", "LEFT", "x"]),
            err(SYNTAX)
        );
        assert_eq!(
            applied(TypedCmd::BRPopLPush, &["a", "dst", "-2"]),
            err("ERR timeout is negative")
        );
        assert_eq!(
            applied(TypedCmd::BLPop, &["dst"]),
            err("ERR wrong number of arguments for 'blpop' command")
        );
        assert_eq!(
            applied(TypedCmd::BLMPop, &["-1", "1", "dst", "LEFT"]),
            err("ERR timeout is negative")
        );
        assert_eq!(run(&mut s, "LLEN dst"), int(2));
    }

    #[test]
    fn lmpop_pops_from_the_first_list_that_holds_something() {
        let mut s = KvStore::new();
        let popped = |key: &str, elements: &[&str]| {
            Frame::Array(vec![
                bulk(key),
                Frame::Array(elements.iter().map(|e| bulk(e)).collect()),
            ])
        };
        assert_eq!(run(&mut s, "LMPOP 2 a b LEFT"), Frame::NullArray);
        run(&mut s, "RPUSH b 1 2 3 4");
        assert_eq!(run(&mut s, "LMPOP 2 a b LEFT"), popped("b", &["1"]));
        assert_eq!(
            run(&mut s, "LMPOP 2 a b right COUNT 2"),
            popped("b", &["4", "3"])
        );
        // A count past the length pops what there is; the key goes.
        assert_eq!(run(&mut s, "LMPOP 1 b LEFT COUNT 10"), popped("b", &["2"]));
        assert_eq!(run(&mut s, "EXISTS b"), int(0));
        // The first key that exists decides, as in Redis.
        run(&mut s, "SET a str");
        run(&mut s, "RPUSH b x");
        assert_eq!(run(&mut s, "LMPOP 2 a b LEFT"), wrong());
        assert_eq!(run(&mut s, "LMPOP 2 b a LEFT"), popped("b", &["x"]));
        // BLMPOP's attempt pops at once or replies null.
        assert_eq!(run(&mut s, "BLMPOP 0 1 b LEFT"), Frame::NullArray);
        run(&mut s, "LPUSH c y");
        assert_eq!(run(&mut s, "BLMPOP 0.5 2 b c RIGHT"), popped("c", &["y"]));
        // Arguments in Redis's order: numkeys, the side, COUNT, then
        // BLMPOP's timeout.
        let numkeys = err("ERR numkeys should be greater than 0");
        let count = err("ERR count should be greater than 0");
        assert_eq!(run(&mut s, "LMPOP 0 a LEFT"), numkeys);
        assert_eq!(run(&mut s, "LMPOP x a LEFT"), numkeys);
        assert_eq!(run(&mut s, "LMPOP +1 a LEFT"), numkeys);
        assert_eq!(run(&mut s, "LMPOP 3 a LEFT"), err(SYNTAX));
        assert_eq!(run(&mut s, "LMPOP 99999999999999999 a LEFT"), err(SYNTAX));
        assert_eq!(run(&mut s, "LMPOP 1 a UP"), err(SYNTAX));
        assert_eq!(run(&mut s, "LMPOP 1 a LEFT COUNT 0"), count);
        assert_eq!(run(&mut s, "LMPOP 1 a LEFT COUNT x"), count);
        assert_eq!(run(&mut s, "LMPOP 1 a LEFT COUNT"), err(SYNTAX));
        assert_eq!(run(&mut s, "LMPOP 1 a LEFT COUNT 1 COUNT 1"), err(SYNTAX));
        assert_eq!(run(&mut s, "LMPOP 1 a LEFT BOGUS 1"), err(SYNTAX));
        assert_eq!(run(&mut s, "BLMPOP x 1 a UP"), err(SYNTAX));
        assert_eq!(
            run(&mut s, "BLMPOP x 1 a LEFT"),
            err("ERR timeout is not a float or out of range")
        );
    }
}
