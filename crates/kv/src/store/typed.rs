//! The commands on hashes, sets and lists, and TYPE: one log-entry and query code
//! for all ([`TypedCmd`] and the arguments as sent), their arguments checked
//! where Redis checks them, in Redis's order, when they are applied or
//! answered. The replies are written through [`Out`], once to size them
//! (a bounded query sizes every reply before it builds any) and once to
//! build them, from the same code.
//!
//! Random picks (SPOP, SRANDMEMBER, HRANDFIELD) are writes: they go through
//! the log, and the pick is seeded by the entry's index and the command's
//! place in it ([`Rng::for_command`]), so every node makes the same one.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::batch::{array_len, bulk_len, decimal_len, Items};
use super::keyspace::{spot, Spot};
use super::value::{Coll, Value, WRONGTYPE};
use super::{glob_match, key_hash, parse_i64, u64_digits, Answer, KvStore};
use crate::frame::{put_array, put_bulk, put_error, put_int, put_null, put_simple};

macro_rules! typed_commands {
    ($($variant:ident = $code:literal, $name:literal, $write:literal;)*) => {
        /// A command on a hash or a set, or on a key of any type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum TypedCmd {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl TypedCmd {
            /// The command of a lower-case name.
            pub fn from_name(name: &[u8]) -> Option<TypedCmd> {
                match std::str::from_utf8(name).ok()? {
                    $($name => Some(TypedCmd::$variant),)*
                    _ => None,
                }
            }

            /// Its code in log entries and queries.
            pub(super) fn code(self) -> u8 {
                match self {
                    $(TypedCmd::$variant => $code,)*
                }
            }

            pub(super) fn from_code(code: u8) -> Option<TypedCmd> {
                match code {
                    $($code => Some(TypedCmd::$variant),)*
                    _ => None,
                }
            }

            /// True if it goes through the log: it changes the store, or
            /// picks at random.
            pub fn is_write(self) -> bool {
                match self {
                    $(TypedCmd::$variant => $write,)*
                }
            }

            /// Its lower-case name, as errors give it.
            pub fn name(self) -> &'static str {
                match self {
                    $(TypedCmd::$variant => $name,)*
                }
            }
        }
    };
}

typed_commands! {
    Type = 1, "type", false;
    HSet = 10, "hset", true;
    HSetNx = 11, "hsetnx", true;
    HGet = 12, "hget", false;
    HMGet = 13, "hmget", false;
    HDel = 14, "hdel", true;
    HGetAll = 15, "hgetall", false;
    HLen = 16, "hlen", false;
    HExists = 17, "hexists", false;
    HIncrBy = 18, "hincrby", true;
    HIncrByFloat = 19, "hincrbyfloat", true;
    HKeys = 20, "hkeys", false;
    HVals = 21, "hvals", false;
    HStrLen = 22, "hstrlen", false;
    HScan = 23, "hscan", false;
    HRandField = 24, "hrandfield", true;
    SAdd = 40, "sadd", true;
    SRem = 41, "srem", true;
    SMembers = 42, "smembers", false;
    SIsMember = 43, "sismember", false;
    SMIsMember = 44, "smismember", false;
    SCard = 45, "scard", false;
    SPop = 46, "spop", true;
    SRandMember = 47, "srandmember", true;
    SInter = 48, "sinter", false;
    SUnion = 49, "sunion", false;
    SDiff = 50, "sdiff", false;
    SInterStore = 51, "sinterstore", true;
    SUnionStore = 52, "sunionstore", true;
    SDiffStore = 53, "sdiffstore", true;
    SScan = 54, "sscan", false;
    ScanType = 60, "scan", false;
    LPush = 70, "lpush", true;
    RPush = 71, "rpush", true;
    LPop = 72, "lpop", true;
    RPop = 73, "rpop", true;
    LLen = 74, "llen", false;
    LRange = 75, "lrange", false;
    LIndex = 76, "lindex", false;
    LSet = 77, "lset", true;
    LRem = 78, "lrem", true;
    LTrim = 79, "ltrim", true;
    LPos = 80, "lpos", false;
    LMove = 81, "lmove", true;
    Rename = 90, "rename", true;
    RenameNx = 91, "renamenx", true;
    Copy = 92, "copy", true;
}

impl TypedCmd {
    /// Whether `args` arguments (after the name) fit the command table's
    /// arity: checked again when applied, since an entry is untrusted bytes.
    fn arity_ok(self, args: usize) -> bool {
        crate::cmd::table::index_of(self.name().as_bytes())
            .is_some_and(|i| crate::cmd::table::COMMANDS[i].arity_ok(args + 1))
    }
}

/// Checks what Redis checks before running a command (beyond the table's
/// arity): the field-value pairs of HSET. `Err` is the arity error. Every
/// other argument is checked when the command runs, in Redis's order (a
/// syntax error may come after WRONGTYPE, or not at all for a missing key).
pub fn check_typed(cmd: TypedCmd, args: &[Bytes]) -> Result<(), String> {
    if cmd == TypedCmd::HSet && args.len() % 2 == 0 {
        return Err(crate::cmd::arity_error("hset"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Where replies go
// ---------------------------------------------------------------------------

/// Where a reply is written: the entry's output, a query's answer, or a
/// counter of its bytes.
pub(super) trait Out {
    /// A stored value or key.
    fn bulk(&mut self, v: &Bytes);
    /// Bytes made for the reply.
    fn bulk_slice(&mut self, v: &[u8]);
    fn int(&mut self, n: i64);
    fn array(&mut self, n: usize);
    fn null(&mut self);
    fn error(&mut self, e: &str);
    fn simple(&mut self, s: &str);
}

impl Out for BytesMut {
    fn bulk(&mut self, v: &Bytes) {
        super::bulk(self, v);
    }
    fn bulk_slice(&mut self, v: &[u8]) {
        super::bulk(self, v);
    }
    fn int(&mut self, n: i64) {
        put_int(self, n);
    }
    fn array(&mut self, n: usize) {
        put_array(self, n);
    }
    fn null(&mut self) {
        put_null(self);
    }
    fn error(&mut self, e: &str) {
        put_error(self, e);
    }
    fn simple(&mut self, s: &str) {
        put_simple(self, s);
    }
}

impl Out for Answer {
    fn bulk(&mut self, v: &Bytes) {
        Answer::bulk(self, v);
    }
    fn bulk_slice(&mut self, v: &[u8]) {
        put_bulk(&mut self.chunk, v);
    }
    fn int(&mut self, n: i64) {
        put_int(&mut self.chunk, n);
    }
    fn array(&mut self, n: usize) {
        put_array(&mut self.chunk, n);
    }
    fn null(&mut self) {
        put_null(&mut self.chunk);
    }
    fn error(&mut self, e: &str) {
        put_error(&mut self.chunk, e);
    }
    fn simple(&mut self, s: &str) {
        put_simple(&mut self.chunk, s);
    }
}

/// Counts the bytes of a reply instead of writing it.
#[derive(Default)]
pub(super) struct Size(pub(super) usize);

impl Out for Size {
    fn bulk(&mut self, v: &Bytes) {
        self.0 = self.0.saturating_add(bulk_len(v.len()));
    }
    fn bulk_slice(&mut self, v: &[u8]) {
        self.0 = self.0.saturating_add(bulk_len(v.len()));
    }
    fn int(&mut self, n: i64) {
        self.0 += 3 + usize::from(n < 0) + decimal_len(n.unsigned_abs());
    }
    fn array(&mut self, n: usize) {
        self.0 += array_len(n);
    }
    fn null(&mut self) {
        self.0 += 5;
    }
    fn error(&mut self, e: &str) {
        self.0 += e.len() + 3;
    }
    fn simple(&mut self, s: &str) {
        self.0 += s.len() + 3;
    }
}

// ---------------------------------------------------------------------------
// Argument checks, worded as Redis words them
// ---------------------------------------------------------------------------

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const SYNTAX: &str = "ERR syntax error";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";

/// A count of HRANDFIELD or SRANDMEMBER: any i64 but the smallest.
fn random_count(a: &[u8]) -> Result<i64, String> {
    match parse_i64(a) {
        None => Err(NOT_INTEGER.into()),
        Some(i64::MIN) => Err(format!(
            "ERR value is out of range, value must between -{m} and {m}",
            m = i64::MAX
        )),
        Some(n) => Ok(n),
    }
}

/// A float argument as Redis reads one (`strtold`): no leading space, no
/// trailing bytes, not NaN. raft-kv computes in f64 (Redis in long double).
fn parse_float(a: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(a).ok()?;
    if s.is_empty() || s.len() > 5 * 1024 || s.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    (!f.is_nan()).then_some(f)
}

/// A float as HINCRBYFLOAT replies and stores it: the shortest decimal
/// form that reads back to it, never with an exponent.
fn float_value(f: f64) -> Bytes {
    let s = format!("{f}");
    Bytes::from(if s == "-0" { "0".to_string() } else { s })
}

/// The cursor of HSCAN, SSCAN or SCAN, read as Redis reads it (`strtoul`):
/// an optional sign (a negative one wraps around), decimal digits, nothing
/// else; empty is 0.
fn parse_cursor(a: &[u8]) -> Option<u64> {
    let (negative, digits) = match a.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, a),
    };
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { n.wrapping_neg() } else { n })
}

/// The options of a scan: MATCH, COUNT and (SCAN only) TYPE.
struct ScanOptions<'a> {
    pattern: Option<&'a [u8]>,
    count: usize,
    kind: Option<&'a [u8]>,
}

fn scan_options<'a>(args: &[&'a [u8]], with_type: bool) -> Result<ScanOptions<'a>, &'static str> {
    let mut o = ScanOptions {
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = 0;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Err(SYNTAX);
        };
        let opt = args[i];
        if opt.eq_ignore_ascii_case(b"count") {
            match parse_i64(value) {
                None => return Err(NOT_INTEGER),
                Some(c) if c < 1 => return Err(SYNTAX),
                Some(c) => o.count = usize::try_from(c).unwrap_or(usize::MAX).min(1 << 20),
            }
        } else if opt.eq_ignore_ascii_case(b"match") {
            o.pattern = Some(*value).filter(|p| *p != b"*");
        } else if with_type && opt.eq_ignore_ascii_case(b"type") {
            o.kind = Some(value);
        } else {
            return Err(SYNTAX);
        }
        i += 2;
    }
    Ok(o)
}

fn put_cursor(out: &mut impl Out, next: u64) {
    let mut digits = [0u8; 20];
    out.array(2);
    out.bulk_slice(u64_digits(next, &mut digits));
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

/// What a key holds, as a command on one type sees it.
enum Held<'a, T> {
    Absent,
    This(&'a T),
    Other,
}

impl KvStore {
    fn hash(&self, key: &[u8]) -> Held<'_, Coll<Bytes>> {
        match self.get(key) {
            None => Held::Absent,
            Some(Value::Hash(h)) => Held::This(h),
            Some(_) => Held::Other,
        }
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
        let l = match self.get(a[0]) {
            None => {
                return match count {
                    Some(_) => out.array(0),
                    None => out.null(),
                }
            }
            Some(Value::List(l)) => l,
            Some(_) => return out.error(WRONGTYPE),
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

    fn set(&self, key: &[u8]) -> Held<'_, Coll<()>> {
        match self.get(key) {
            None => Held::Absent,
            Some(Value::Set(s)) => Held::This(s),
            Some(_) => Held::Other,
        }
    }

    /// Answers a read-only typed command into a query's answer.
    pub(super) fn read_typed(&self, cmd: TypedCmd, args: Items<'_>, answer: &mut Answer) {
        let args: Vec<&[u8]> = args.collect();
        self.answer_typed(cmd, &args, answer);
    }

    /// The length of the reply [`KvStore::read_typed`] would give.
    pub(super) fn typed_reply_size(&self, cmd: TypedCmd, args: Items<'_>) -> usize {
        let args: Vec<&[u8]> = args.collect();
        let mut size = Size::default();
        self.answer_typed(cmd, &args, &mut size);
        size.0
    }

    fn answer_typed(&self, cmd: TypedCmd, a: &[&[u8]], out: &mut impl Out) {
        use TypedCmd::*;
        if !cmd.arity_ok(a.len()) {
            return out.error(&crate::cmd::arity_error(cmd.name()));
        }
        let key = a[0];
        macro_rules! hash_or {
            ($absent:expr) => {
                match self.hash(key) {
                    Held::This(h) => h,
                    Held::Absent => return $absent,
                    Held::Other => return out.error(WRONGTYPE),
                }
            };
        }
        macro_rules! set_or {
            ($absent:expr) => {
                match self.set(key) {
                    Held::This(s) => s,
                    Held::Absent => return $absent,
                    Held::Other => return out.error(WRONGTYPE),
                }
            };
        }
        match cmd {
            Type => out.simple(self.get(key).map_or("none", Value::type_name)),
            HGet => match hash_or!(out.null()).get(a[1]) {
                Some(v) => out.bulk(v),
                None => out.null(),
            },
            HMGet => {
                let h = match self.hash(key) {
                    Held::This(h) => Some(h),
                    Held::Absent => None,
                    Held::Other => return out.error(WRONGTYPE),
                };
                out.array(a.len() - 1);
                for f in &a[1..] {
                    match h.and_then(|h| h.get(f)) {
                        Some(v) => out.bulk(v),
                        None => out.null(),
                    }
                }
            }
            HGetAll | HKeys | HVals => {
                let h = hash_or!(out.array(0));
                let per = if cmd == HGetAll { 2 } else { 1 };
                out.array(h.len() * per);
                for (f, v) in h.iter() {
                    if cmd != HVals {
                        out.bulk(f);
                    }
                    if cmd != HKeys {
                        out.bulk(v);
                    }
                }
            }
            HLen => out.int(hash_or!(out.int(0)).len() as i64),
            HExists => out.int(i64::from(hash_or!(out.int(0)).get(a[1]).is_some())),
            HStrLen => out.int(hash_or!(out.int(0)).get(a[1]).map_or(0, |v| v.len() as i64)),
            HScan | SScan => {
                let Some(cursor) = parse_cursor(a[1]) else {
                    return out.error("ERR invalid cursor");
                };
                match cmd {
                    HScan => {
                        let h = hash_or!({
                            put_cursor(out, 0);
                            out.array(0)
                        });
                        let o = match scan_options(&a[2..], false) {
                            Ok(o) => o,
                            Err(e) => return out.error(e),
                        };
                        let (next, items) = h.scan(cursor, o.count);
                        let items: Vec<_> = items
                            .into_iter()
                            .filter(|(f, _)| o.pattern.is_none_or(|p| glob_match(p, f)))
                            .collect();
                        put_cursor(out, next);
                        out.array(items.len() * 2);
                        for (f, v) in items {
                            out.bulk(f);
                            out.bulk(v);
                        }
                    }
                    _ => {
                        let s = set_or!({
                            put_cursor(out, 0);
                            out.array(0)
                        });
                        let o = match scan_options(&a[2..], false) {
                            Ok(o) => o,
                            Err(e) => return out.error(e),
                        };
                        let (next, items) = s.scan(cursor, o.count);
                        let items: Vec<_> = items
                            .into_iter()
                            .filter(|(m, _)| o.pattern.is_none_or(|p| glob_match(p, m)))
                            .collect();
                        put_cursor(out, next);
                        out.array(items.len());
                        for (m, _) in items {
                            out.bulk(m);
                        }
                    }
                }
            }
            ScanType => {
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
                put_cursor(out, next);
                out.array(keys.len());
                for k in keys {
                    out.bulk(k);
                }
            }
            SMembers => {
                let s = set_or!(out.array(0));
                out.array(s.len());
                for (m, _) in s.iter() {
                    out.bulk(m);
                }
            }
            SIsMember => out.int(i64::from(set_or!(out.int(0)).get(a[1]).is_some())),
            SMIsMember => {
                let s = match self.set(key) {
                    Held::This(s) => Some(s),
                    Held::Absent => None,
                    Held::Other => return out.error(WRONGTYPE),
                };
                out.array(a.len() - 1);
                for m in &a[1..] {
                    out.int(i64::from(s.is_some_and(|s| s.get(m).is_some())));
                }
            }
            SCard => out.int(set_or!(out.int(0)).len() as i64),
            LLen => match self.get(key) {
                None => out.int(0),
                Some(Value::List(l)) => out.int(l.len() as i64),
                Some(_) => out.error(WRONGTYPE),
            },
            LRange => {
                let (Some(start), Some(stop)) = (parse_i64(a[1]), parse_i64(a[2])) else {
                    return out.error(NOT_INTEGER);
                };
                let l = match self.get(key) {
                    None => return out.array(0),
                    Some(Value::List(l)) => l,
                    Some(_) => return out.error(WRONGTYPE),
                };
                let range = list_range(l.len(), start, stop);
                out.array(range.len());
                for e in l.range(range) {
                    out.bulk(e);
                }
            }
            LIndex => {
                let l = match self.get(key) {
                    None => return out.null(),
                    Some(Value::List(l)) => l,
                    Some(_) => return out.error(WRONGTYPE),
                };
                let Some(i) = parse_i64(a[1]) else {
                    return out.error(NOT_INTEGER);
                };
                match list_index(l.len(), i).and_then(|i| l.get(i)) {
                    Some(e) => out.bulk(e),
                    None => out.null(),
                }
            }
            LPos => self.lpos(a, out),
            SInter | SUnion | SDiff => match self.combine(cmd, a) {
                Ok(members) => {
                    out.array(members.len());
                    for m in members {
                        out.bulk(m);
                    }
                }
                Err(e) => out.error(e),
            },
            _ => out.error(&format!("ERR '{}' is not answered by a query", cmd.name())),
        }
    }

    /// The members of SINTER, SUNION or SDIFF of the sets at `keys`
    /// (missing keys are empty sets), in the first set's order (SINTER,
    /// SDIFF) or the order found; WRONGTYPE if any key holds another type.
    fn combine<'s>(
        &'s self,
        cmd: TypedCmd,
        keys: &[&[u8]],
    ) -> Result<Vec<&'s Bytes>, &'static str> {
        let mut sets = Vec::with_capacity(keys.len());
        for k in keys {
            match self.set(k) {
                Held::This(s) => sets.push(Some(s)),
                Held::Absent => sets.push(None),
                Held::Other => return Err(WRONGTYPE),
            }
        }
        let Some(first) = sets[0] else {
            return Ok(match cmd {
                TypedCmd::SUnion | TypedCmd::SUnionStore => union(&sets),
                _ => Vec::new(),
            });
        };
        Ok(match cmd {
            TypedCmd::SInter | TypedCmd::SInterStore => {
                if sets.iter().any(Option::is_none) {
                    return Ok(Vec::new());
                }
                first
                    .iter()
                    .map(|(m, _)| m)
                    .filter(|m| sets[1..].iter().flatten().all(|s| s.get(m).is_some()))
                    .collect()
            }
            TypedCmd::SDiff | TypedCmd::SDiffStore => first
                .iter()
                .map(|(m, _)| m)
                .filter(|m| !sets[1..].iter().flatten().any(|s| s.get(m).is_some()))
                .collect(),
            _ => union(&sets),
        })
    }

    // -----------------------------------------------------------------------
    // Writes
    // -----------------------------------------------------------------------

    /// Applies a typed write (or answers a typed read sent as one), adding
    /// to `changed` each key it really changes (made, altered or removed
    /// because it became empty: what WATCH sees).
    pub(super) fn write_typed<'a>(
        &mut self,
        cmd: TypedCmd,
        args: Items<'a>,
        out: &mut BytesMut,
        changed: &mut Vec<&'a [u8]>,
    ) {
        use TypedCmd::*;
        let a: Vec<&'a [u8]> = args.collect();
        if !cmd.is_write() {
            let mut answer = Answer::whole();
            self.answer_typed(cmd, &a, &mut answer);
            out.extend_from_slice(&answer.into_bytes());
            return;
        }
        if !cmd.arity_ok(a.len()) {
            return put_error(out, &crate::cmd::arity_error(cmd.name()));
        }
        let key = a[0];
        match cmd {
            HSet | HSetNx => {
                let h = match self.hash_mut(key) {
                    Ok(h) => h,
                    Err(e) => return put_error(out, e),
                };
                let mut added = 0;
                for p in a[1..].chunks(2) {
                    let [f, v] = p else { break };
                    if cmd == HSetNx && h.get(f).is_some() {
                        continue;
                    }
                    added +=
                        i64::from(h.insert(Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)));
                }
                // HSET always sets a field (maybe to the value it held, a
                // change all the same, as in Redis); HSETNX only if new.
                if cmd == HSet || added > 0 {
                    changed.push(key);
                }
                put_int(out, added);
            }
            HDel => {
                let n = match self.get_mut(key) {
                    None => 0,
                    Some(Value::Hash(h)) => a[1..].iter().filter(|f| h.remove(f).is_some()).count(),
                    Some(_) => return put_error(out, WRONGTYPE),
                };
                self.drop_if_empty(key);
                if n > 0 {
                    changed.push(key);
                }
                put_int(out, n as i64);
            }
            HIncrBy => {
                let Some(by) = parse_i64(a[2]) else {
                    return put_error(out, NOT_INTEGER);
                };
                let h = match self.hash_mut(key) {
                    Ok(h) => h,
                    Err(e) => return put_error(out, e),
                };
                let old = match h.get(a[1]) {
                    None => 0,
                    Some(v) => match parse_i64(v) {
                        Some(n) => n,
                        None => {
                            put_error(out, "ERR hash value is not an integer");
                            return self.drop_if_empty(key);
                        }
                    },
                };
                match old.checked_add(by) {
                    Some(n) => {
                        h.insert(Bytes::copy_from_slice(a[1]), super::i64_value(n));
                        changed.push(key);
                        put_int(out, n);
                    }
                    None => {
                        put_error(out, "ERR increment or decrement would overflow");
                        self.drop_if_empty(key);
                    }
                }
            }
            HIncrByFloat => {
                let Some(by) = parse_float(a[2]) else {
                    return put_error(out, NOT_FLOAT);
                };
                if by.is_infinite() {
                    return put_error(out, "ERR value is NaN or Infinity");
                }
                let h = match self.hash_mut(key) {
                    Ok(h) => h,
                    Err(e) => return put_error(out, e),
                };
                let old = match h.get(a[1]) {
                    None => Some(0.0),
                    Some(v) => parse_float(v),
                };
                let Some(old) = old else {
                    put_error(out, "ERR hash value is not a float");
                    return self.drop_if_empty(key);
                };
                let n = old + by;
                if !n.is_finite() {
                    put_error(out, "ERR increment would produce NaN or Infinity");
                    return self.drop_if_empty(key);
                }
                let v = float_value(n);
                super::bulk(out, &v);
                h.insert(Bytes::copy_from_slice(a[1]), v);
                changed.push(key);
            }
            HRandField => self.hrandfield(&a, out),
            SAdd => {
                let s = match self.set_mut(key) {
                    Ok(s) => s,
                    Err(e) => return put_error(out, e),
                };
                let n: i64 = a[1..]
                    .iter()
                    .map(|m| i64::from(s.insert(Bytes::copy_from_slice(m), ())))
                    .sum();
                if n > 0 {
                    changed.push(key);
                }
                put_int(out, n);
            }
            SRem => {
                let n = match self.get_mut(key) {
                    None => 0,
                    Some(Value::Set(s)) => a[1..].iter().filter(|m| s.remove(m).is_some()).count(),
                    Some(_) => return put_error(out, WRONGTYPE),
                };
                self.drop_if_empty(key);
                if n > 0 {
                    changed.push(key);
                }
                put_int(out, n as i64);
            }
            SPop => {
                if self.spop(&a, out) {
                    changed.push(key);
                }
            }
            LPush | RPush => {
                let l = match self.list_mut(key) {
                    Ok(l) => l,
                    Err(e) => return put_error(out, e),
                };
                for e in &a[1..] {
                    let e = Bytes::copy_from_slice(e);
                    if cmd == LPush {
                        l.push_front(e);
                    } else {
                        l.push_back(e);
                    }
                }
                put_int(out, l.len() as i64);
                changed.push(key);
            }
            LPop | RPop => {
                if a.len() > 2 {
                    return put_error(out, &crate::cmd::arity_error(cmd.name()));
                }
                let count = match a.get(1) {
                    None => None,
                    Some(c) => match parse_i64(c) {
                        Some(n) if n >= 0 => Some(n),
                        _ => return put_error(out, MUST_BE_POSITIVE),
                    },
                };
                let l = match self.get_mut(key) {
                    None if count.is_some() => return out.extend_from_slice(b"*-1\r\n"),
                    None => return put_null(out),
                    Some(Value::List(l)) => l,
                    Some(_) => return put_error(out, WRONGTYPE),
                };
                let n = count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX).min(l.len()));
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
                    None => super::bulk(out, &popped[0]),
                    Some(_) => {
                        put_array(out, popped.len());
                        for e in &popped {
                            super::bulk(out, e);
                        }
                    }
                }
                self.drop_if_empty(key);
                if !popped.is_empty() {
                    changed.push(key);
                }
            }
            LSet => {
                let l = match self.get_mut(key) {
                    None => return put_error(out, "ERR no such key"),
                    Some(Value::List(l)) => l,
                    Some(_) => return put_error(out, WRONGTYPE),
                };
                let Some(i) = parse_i64(a[1]) else {
                    return put_error(out, NOT_INTEGER);
                };
                match list_index(l.len(), i).and_then(|i| l.get_mut(i)) {
                    Some(e) => {
                        *e = Bytes::copy_from_slice(a[2]);
                        changed.push(key);
                        put_simple(out, "OK");
                    }
                    None => put_error(out, "ERR index out of range"),
                }
            }
            LRem => {
                let Some(count) = parse_i64(a[1]) else {
                    return put_error(out, NOT_INTEGER);
                };
                let l = match self.get_mut(key) {
                    None => return put_int(out, 0),
                    Some(Value::List(l)) => l,
                    Some(_) => return put_error(out, WRONGTYPE),
                };
                let limit = if count == 0 {
                    usize::MAX
                } else {
                    usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
                };
                let mut removed = 0;
                let kept: VecDeque<Bytes> = if count >= 0 {
                    l.drain(..)
                        .filter(|e| {
                            let gone = removed < limit && e[..] == *a[2];
                            removed += usize::from(gone);
                            !gone
                        })
                        .collect()
                } else {
                    let mut v: Vec<Bytes> = l
                        .drain(..)
                        .rev()
                        .filter(|e| {
                            let gone = removed < limit && e[..] == *a[2];
                            removed += usize::from(gone);
                            !gone
                        })
                        .collect();
                    v.reverse();
                    v.into()
                };
                *l = kept;
                put_int(out, removed as i64);
                self.drop_if_empty(key);
                if removed > 0 {
                    changed.push(key);
                }
            }
            LTrim => {
                let (Some(start), Some(stop)) = (parse_i64(a[1]), parse_i64(a[2])) else {
                    return put_error(out, NOT_INTEGER);
                };
                match self.get_mut(key) {
                    None => {}
                    Some(Value::List(l)) => {
                        let before = l.len();
                        let range = list_range(l.len(), start, stop);
                        l.truncate(range.end);
                        l.drain(..range.start.min(l.len()));
                        if l.len() != before {
                            changed.push(key);
                        }
                    }
                    Some(_) => return put_error(out, WRONGTYPE),
                }
                put_simple(out, "OK");
                self.drop_if_empty(key);
            }
            LMove => {
                if self.lmove(&a, out) {
                    changed.extend([a[0], a[1]]);
                }
            }
            Rename | RenameNx => {
                if self.rename(cmd == RenameNx, a[0], a[1], out) {
                    changed.extend([a[0], a[1]]);
                }
            }
            Copy => {
                if self.copy(&a, out) {
                    changed.push(a[1]);
                }
            }
            SRandMember => self.srandmember(&a, out),
            SInterStore | SUnionStore | SDiffStore => {
                let members: Vec<Bytes> = match self.combine(cmd, &a[1..]) {
                    Ok(m) => m.into_iter().cloned().collect(),
                    Err(e) => return put_error(out, e),
                };
                // The destination is replaced whatever it held, and loses
                // its time to live; it changes unless it was and stays
                // absent.
                if self.remove_key(key) || !members.is_empty() {
                    changed.push(key);
                }
                put_int(out, members.len() as i64);
                if members.is_empty() {
                    return;
                }
                let mut s = Coll::default();
                for m in members {
                    s.insert(m, ());
                }
                self.insert_new(key, Value::Set(Box::new(s)));
            }
            _ => put_error(out, &format!("ERR '{}' is not a write", cmd.name())),
        }
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Value> {
        match spot(&mut self.map, key_hash(key), key) {
            Spot::Present(v) => Some(v),
            Spot::Absent(_) => None,
        }
    }

    /// Adds a key known to be absent.
    fn insert_new(&mut self, key: &[u8], value: Value) {
        if let Spot::Absent(a) = spot(&mut self.map, key_hash(key), key) {
            a.fill(Bytes::copy_from_slice(key), value);
            self.len += 1;
        }
    }

    /// Removes a key of any type and its time to live; true if it was there.
    pub(super) fn remove_key(&mut self, key: &[u8]) -> bool {
        if super::keyspace::remove(&mut self.map, key_hash(key), key).is_some() {
            self.deadlines.clear(key);
            self.len -= 1;
            true
        } else {
            false
        }
    }

    /// Removes the key if it holds an empty hash or set (Redis keeps no
    /// empty collection).
    fn drop_if_empty(&mut self, key: &[u8]) {
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

    /// The hash at `key`, made (empty) if absent; WRONGTYPE for another
    /// type. A caller that may leave it empty calls `drop_if_empty`.
    fn hash_mut(&mut self, key: &[u8]) -> Result<&mut Coll<Bytes>, &'static str> {
        if self.get(key).is_none() {
            self.insert_new(key, Value::Hash(Box::default()));
        }
        match self.get_mut(key) {
            Some(Value::Hash(h)) => Ok(h),
            _ => Err(WRONGTYPE),
        }
    }

    fn list_mut(&mut self, key: &[u8]) -> Result<&mut VecDeque<Bytes>, &'static str> {
        if self.get(key).is_none() {
            self.insert_new(key, Value::List(VecDeque::new()));
        }
        match self.get_mut(key) {
            Some(Value::List(l)) => Ok(l),
            _ => Err(WRONGTYPE),
        }
    }

    /// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`.
    /// True if it moved an element.
    fn lmove(&mut self, a: &[&[u8]], out: &mut BytesMut) -> bool {
        let side = |s: &[u8]| {
            if s.eq_ignore_ascii_case(b"left") {
                Some(true)
            } else if s.eq_ignore_ascii_case(b"right") {
                Some(false)
            } else {
                None
            }
        };
        let (Some(from_left), Some(to_left)) = (side(a[2]), side(a[3])) else {
            put_error(out, SYNTAX);
            return false;
        };
        let (src, dst) = (a[0], a[1]);
        match self.get(src) {
            None => {
                put_null(out);
                return false;
            }
            Some(Value::List(_)) => {}
            Some(_) => {
                put_error(out, WRONGTYPE);
                return false;
            }
        }
        if !matches!(self.get(dst), None | Some(Value::List(_))) {
            put_error(out, WRONGTYPE);
            return false;
        }
        let Some(Value::List(l)) = self.get_mut(src) else {
            put_null(out);
            return false;
        };
        let Some(e) = (if from_left {
            l.pop_front()
        } else {
            l.pop_back()
        }) else {
            put_null(out);
            return false;
        };
        super::bulk(out, &e);
        // The source first: a list emptied by its move to another key goes
        // (with its time to live) before the destination is made.
        if src != dst {
            self.drop_if_empty(src);
        }
        if let Ok(d) = self.list_mut(dst) {
            if to_left {
                d.push_front(e);
            } else {
                d.push_back(e);
            }
        }
        true
    }

    fn set_mut(&mut self, key: &[u8]) -> Result<&mut Coll<()>, &'static str> {
        if self.get(key).is_none() {
            self.insert_new(key, Value::Set(Box::default()));
        }
        match self.get_mut(key) {
            Some(Value::Set(s)) => Ok(s),
            _ => Err(WRONGTYPE),
        }
    }

    /// `HRANDFIELD key [count [WITHVALUES]]`.
    fn hrandfield(&mut self, a: &[&[u8]], out: &mut BytesMut) {
        let mut rng = self.seed.rng();
        let key = a[0];
        let Some(count) = a.get(1) else {
            return match self.hash(key) {
                Held::This(h) => match h.pick_distinct(1, &mut rng).first() {
                    Some((f, _)) => super::bulk(out, f),
                    None => put_null(out),
                },
                Held::Absent => put_null(out),
                Held::Other => put_error(out, WRONGTYPE),
            };
        };
        let count = match random_count(count) {
            Ok(c) => c,
            Err(e) => return put_error(out, &e),
        };
        let with_values = match a.get(2) {
            None => false,
            Some(w) if a.len() == 3 && w.eq_ignore_ascii_case(b"withvalues") => true,
            Some(_) => return put_error(out, SYNTAX),
        };
        if with_values && count.unsigned_abs() > (i64::MAX / 2) as u64 {
            return put_error(out, "ERR value is out of range");
        }
        let h = match self.hash(key) {
            Held::This(h) => h,
            Held::Absent => return put_array(out, 0),
            Held::Other => return put_error(out, WRONGTYPE),
        };
        let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
        let picks = if count >= 0 {
            h.pick_distinct(n, &mut rng)
        } else {
            h.pick_repeating(n, &mut rng)
        };
        put_array(out, picks.len() * if with_values { 2 } else { 1 });
        for (f, v) in picks {
            super::bulk(out, f);
            if with_values {
                super::bulk(out, v);
            }
        }
    }

    /// `SRANDMEMBER key [count]`.
    fn srandmember(&mut self, a: &[&[u8]], out: &mut BytesMut) {
        let mut rng = self.seed.rng();
        let key = a[0];
        if a.len() > 2 {
            return put_error(out, SYNTAX);
        }
        let Some(count) = a.get(1) else {
            return match self.set(key) {
                Held::This(s) => match s.pick_distinct(1, &mut rng).first() {
                    Some((m, _)) => super::bulk(out, m),
                    None => put_null(out),
                },
                Held::Absent => put_null(out),
                Held::Other => put_error(out, WRONGTYPE),
            };
        };
        let count = match random_count(count) {
            Ok(c) => c,
            Err(e) => return put_error(out, &e),
        };
        let s = match self.set(key) {
            Held::This(s) => s,
            Held::Absent => return put_array(out, 0),
            Held::Other => return put_error(out, WRONGTYPE),
        };
        let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
        let picks = if count >= 0 {
            s.pick_distinct(n, &mut rng)
        } else {
            s.pick_repeating(n, &mut rng)
        };
        put_array(out, picks.len());
        for (m, _) in picks {
            super::bulk(out, m);
        }
    }

    /// `SPOP key [count]`.
    /// `RENAME source destination` (`RENAMENX` if `nx`): the value moves
    /// with its type and its time to live; the destination's old value and
    /// time to live go. True if it moved.
    fn rename(&mut self, nx: bool, src: &[u8], dst: &[u8], out: &mut BytesMut) -> bool {
        if self.get(src).is_none() {
            put_error(out, "ERR no such key");
            return false;
        }
        let answer = |out: &mut BytesMut, done: bool| match (nx, done) {
            (true, done) => put_int(out, i64::from(done)),
            (false, _) => put_simple(out, "OK"),
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
        let Some(value) = super::keyspace::remove(&mut self.map, key_hash(src), src) else {
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
                        put_error(out, "ERR DB index is out of range");
                        return false;
                    }
                    None => {
                        put_error(out, NOT_INTEGER);
                        return false;
                    }
                }
                i += 2;
            } else {
                put_error(out, SYNTAX);
                return false;
            }
        }
        if src == dst {
            put_error(out, "ERR source and destination objects are the same");
            return false;
        }
        let Some(value) = self.get(src).cloned() else {
            put_int(out, 0);
            return false;
        };
        if self.get(dst).is_some() && !replace {
            put_int(out, 0);
            return false;
        }
        let deadline = self.deadlines.get(src);
        self.remove_key(dst);
        self.insert_new(dst, value);
        if let Some(at) = deadline {
            self.deadlines.set(dst, at);
        }
        put_int(out, 1);
        true
    }

    /// True if it removed a member.
    fn spop(&mut self, a: &[&[u8]], out: &mut BytesMut) -> bool {
        let mut rng = self.seed.rng();
        let key = a[0];
        if a.len() > 2 {
            put_error(out, SYNTAX);
            return false;
        }
        let count = match a.get(1) {
            None => None,
            Some(c) => match parse_i64(c) {
                Some(n) if n >= 0 => Some(n),
                _ => {
                    put_error(out, MUST_BE_POSITIVE);
                    return false;
                }
            },
        };
        let picked: Vec<Bytes> = match self.set(key) {
            Held::This(s) => {
                let n = count.map_or(1, |c| usize::try_from(c).unwrap_or(usize::MAX));
                s.pick_distinct(n, &mut rng)
                    .into_iter()
                    .map(|(m, _)| m.clone())
                    .collect()
            }
            Held::Absent => Vec::new(),
            Held::Other => {
                put_error(out, WRONGTYPE);
                return false;
            }
        };
        if let Some(Value::Set(s)) = self.get_mut(key) {
            for m in &picked {
                s.remove(m);
            }
        }
        self.drop_if_empty(key);
        match count {
            None => match picked.first() {
                Some(m) => super::bulk(out, m),
                None => put_null(out),
            },
            Some(_) => {
                put_array(out, picked.len());
                for m in &picked {
                    super::bulk(out, m);
                }
            }
        }
        !picked.is_empty()
    }
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

/// The members of any of the sets, each once, in the order found.
fn union<'s>(sets: &[Option<&'s Coll<()>>]) -> Vec<&'s Bytes> {
    let mut seen: Coll<()> = Coll::default();
    let mut members = Vec::new();
    for s in sets.iter().flatten() {
        for (m, _) in s.iter() {
            if seen.insert(m.clone(), ()) {
                members.push(m);
            }
        }
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{parse, Command};
    use crate::frame::{Frame, Limits};
    use crate::store::{encode_reads, encode_writes, Read};
    use bytes::BufMut;
    use raft_node::StateMachine;
    use std::collections::BTreeSet;

    fn limits() -> Limits {
        Limits {
            max_bulk: 1 << 30,
            max_elements: 1 << 24,
            max_depth: 8,
            max_line: 1 << 20,
        }
    }

    fn frame(out: &[u8]) -> Frame {
        let (f, used) = Frame::parse(out, &limits()).expect("a complete RESP frame");
        assert_eq!(used, out.len(), "one reply");
        f
    }

    /// Runs one command line (words split on spaces) as the server would:
    /// a write through `apply` at log index `index`, a read as a query
    /// (checking its size is found exactly before it is built).
    fn run_at(s: &mut KvStore, index: u64, line: &str) -> Frame {
        let args: Vec<Bytes> = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        match parse(&args) {
            Command::Write(w) => frame(&s.apply(index, &encode_writes(&[w]))),
            Command::Read(r) => {
                let q = encode_reads(std::slice::from_ref(&r));
                let out = s.query(&q);
                let mut rd = super::super::Reader { buf: &q[1..] };
                let op = super::super::parse_read(&mut rd).unwrap();
                // Exact for these commands; an upper bound for integers of
                // the others.
                if matches!(r, Read::Typed { .. }) {
                    assert_eq!(s.reply_size(&op), out.len(), "the size of {line:?}");
                } else {
                    assert!(s.reply_size(&op) >= out.len(), "the size of {line:?}");
                }
                frame(&out)
            }
            Command::Refused(e) | Command::Invalid(e) => Frame::Error(e),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn run(s: &mut KvStore, line: &str) -> Frame {
        run_at(s, 1, line)
    }

    fn int(n: i64) -> Frame {
        Frame::Integer(n)
    }

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn wrong() -> Frame {
        Frame::Error(WRONGTYPE.into())
    }

    fn err(e: &str) -> Frame {
        Frame::Error(e.into())
    }

    /// The bulk strings of an array, as a sorted multiset.
    fn items(f: Frame) -> Vec<String> {
        let Frame::Array(a) = f else {
            panic!("not an array: {f:?}")
        };
        let mut v: Vec<String> = a
            .into_iter()
            .map(|f| match f {
                Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect();
        v.sort();
        v
    }

    fn strs(v: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

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

    #[test]
    fn sets_like_redis() {
        let mut s = KvStore::new();
        assert_eq!(run(&mut s, "SADD s a b c a"), int(3));
        assert_eq!(run(&mut s, "SADD s c d"), int(1));
        assert_eq!(run(&mut s, "SCARD s"), int(4));
        assert_eq!(run(&mut s, "SISMEMBER s a"), int(1));
        assert_eq!(run(&mut s, "SISMEMBER s z"), int(0));
        assert_eq!(
            run(&mut s, "SMISMEMBER s a z d"),
            Frame::Array(vec![int(1), int(0), int(1)])
        );
        assert_eq!(
            items(run(&mut s, "SMEMBERS s")),
            strs(&["a", "b", "c", "d"])
        );
        run(&mut s, "SADD t c d e");
        assert_eq!(items(run(&mut s, "SINTER s t")), strs(&["c", "d"]));
        assert_eq!(
            items(run(&mut s, "SUNION s t nokey")),
            strs(&["a", "b", "c", "d", "e"])
        );
        assert_eq!(items(run(&mut s, "SDIFF s t")), strs(&["a", "b"]));
        assert_eq!(items(run(&mut s, "SINTER s nokey")), strs(&[]));
        assert_eq!(items(run(&mut s, "SDIFF nokey s")), strs(&[]));
        assert_eq!(
            items(run(&mut s, "SUNION nokey s")),
            strs(&["a", "b", "c", "d"])
        );
        run(&mut s, "SET str v");
        assert_eq!(run(&mut s, "SINTER nokey str"), wrong());
        assert_eq!(run(&mut s, "SUNION s str"), wrong());
        // Stores replace the destination, whatever its type.
        assert_eq!(run(&mut s, "SINTERSTORE str s t"), int(2));
        assert_eq!(run(&mut s, "TYPE str"), Frame::Simple("set".into()));
        assert_eq!(run(&mut s, "SDIFFSTORE d s t"), int(2));
        assert_eq!(run(&mut s, "SUNIONSTORE u s t"), int(5));
        assert_eq!(run(&mut s, "SINTERSTORE d s nokey"), int(0));
        assert_eq!(run(&mut s, "EXISTS d"), int(0));
        assert_eq!(run(&mut s, "SREM s a b z"), int(2));
        assert_eq!(run(&mut s, "SREM s c d"), int(2));
        assert_eq!(run(&mut s, "EXISTS s"), int(0));
        assert_eq!(run(&mut s, "SREM s c"), int(0));
    }

    #[test]
    fn entries_with_too_few_arguments_get_an_error_not_a_panic() {
        let mut s = KvStore::new();
        for code in 0..=u8::MAX {
            let Some(cmd) = TypedCmd::from_code(code) else {
                continue;
            };
            for n in 0..3 {
                let args = vec![Bytes::from_static(b"k"); n];
                let w = crate::store::Write::Typed {
                    cmd,
                    args: args.clone(),
                };
                let out = s.apply(1, &encode_writes(&[w]));
                let _ = frame(&out);
                let r = Read::Typed { cmd, args };
                let _ = frame(&s.query(&encode_reads(&[r])));
            }
        }
    }

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
    fn scans_walk_every_field_and_member_once() {
        let mut s = KvStore::new();
        for i in 0..300 {
            run(&mut s, &format!("HSET h f{i} v{i}"));
            run(&mut s, &format!("SADD s m{i}"));
        }
        for (cmd, per) in [("HSCAN h", 2), ("SSCAN s", 1)] {
            let mut seen = BTreeSet::new();
            let mut cursor = "0".to_string();
            let mut steps = 0;
            loop {
                let Frame::Array(a) = run(&mut s, &format!("{cmd} {cursor} COUNT 7")) else {
                    panic!()
                };
                let Frame::Bulk(next) = &a[0] else { panic!() };
                let found = items(a[1].clone());
                assert!(found.len() >= 7 * per || next[..] == *b"0");
                for f in found.into_iter().filter(|f| f.starts_with(['f', 'm'])) {
                    assert!(seen.insert(f), "returned once");
                }
                cursor = String::from_utf8(next.to_vec()).unwrap();
                steps += 1;
                if cursor == "0" {
                    break;
                }
            }
            assert_eq!(seen.len(), 300, "{cmd}");
            assert!(steps > 10);
        }
        let Frame::Array(a) = run(&mut s, "HSCAN h 0 COUNT 1000 MATCH f1?") else {
            panic!()
        };
        assert_eq!(items(a[1].clone()).len(), 20, "10 fields and their values");
        assert_eq!(run(&mut s, "HSCAN h x"), err("ERR invalid cursor"));
        assert_eq!(run(&mut s, "HSCAN h 0 COUNT 0"), err(SYNTAX));
        assert_eq!(run(&mut s, "SSCAN s 0 COUNT x"), err(NOT_INTEGER));
        assert_eq!(run(&mut s, "SSCAN s 0 FOO 1"), err(SYNTAX));
        // A missing key checks no option, as in Redis.
        assert_eq!(
            run(&mut s, "HSCAN nokey 0 COUNT 0"),
            Frame::Array(vec![bulk("0"), Frame::Array(vec![])])
        );
    }

    #[test]
    fn random_picks_are_decided_by_the_log() {
        let mut a = KvStore::new();
        for i in 0..50 {
            run(&mut a, &format!("SADD s m{i}"));
            run(&mut a, &format!("HSET h f{i} v{i}"));
        }
        let b = a.clone();
        let mut picks = BTreeSet::new();
        for index in 10..40 {
            let line = "SRANDMEMBER s 3";
            let (mut x, mut y) = (a.clone(), b.clone());
            let one = run_at(&mut x, index, line);
            assert_eq!(one, run_at(&mut y, index, line), "same entry, same pick");
            let got = items(one);
            assert_eq!(got.len(), 3);
            assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 3, "distinct");
            picks.insert(got);
        }
        assert!(picks.len() > 20, "different entries pick differently");
        let mut s = a.clone();
        assert_eq!(items(run(&mut s, "SRANDMEMBER s 100")).len(), 50);
        assert_eq!(items(run(&mut s, "SRANDMEMBER s -100")).len(), 100);
        assert_eq!(items(run(&mut s, "SRANDMEMBER s 0")).len(), 0);
        assert_eq!(items(run(&mut s, "SRANDMEMBER nokey 5")).len(), 0);
        assert_eq!(run(&mut s, "SRANDMEMBER nokey"), Frame::Null);
        assert_eq!(
            run(&mut s, "SRANDMEMBER s -9223372036854775808"),
            err("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807")
        );
        assert_eq!(items(run(&mut s, "HRANDFIELD h -7 WITHVALUES")).len(), 14);
        assert_eq!(items(run(&mut s, "HRANDFIELD h 100")).len(), 50);
        assert_eq!(run(&mut s, "HRANDFIELD h 1 FOO"), err(SYNTAX));
        assert_eq!(
            run(&mut s, "HRANDFIELD h 9223372036854775807 WITHVALUES"),
            err("ERR value is out of range")
        );
        // SPOP removes what it picks, the same on every replica.
        let mut t = s.clone();
        for index in 100..110 {
            let line = "SPOP s 4";
            let (p, q) = (run_at(&mut s, index, line), run_at(&mut t, index, line));
            assert_eq!(p, q);
        }
        assert_eq!(s, t);
        assert_eq!(run(&mut s, "SCARD s"), int(10));
        assert_eq!(run(&mut s, "SPOP s -1"), err(MUST_BE_POSITIVE));
        assert_eq!(run(&mut s, "SPOP s 1 2"), err(SYNTAX));
        assert_eq!(items(run(&mut s, "SPOP s 100")).len(), 10);
        assert_eq!(run(&mut s, "EXISTS s"), int(0));
        assert_eq!(run(&mut s, "SPOP s"), Frame::Null);
        assert_eq!(items(run(&mut s, "SPOP s 2")).len(), 0);
    }

    #[test]
    fn snapshots_carry_every_type_and_old_ones_still_load() {
        let mut s = KvStore::new();
        run(&mut s, "SET str v");
        run(&mut s, "HSET h a 1 b 2");
        run(&mut s, "SADD s x y z");
        run(&mut s, "EXPIRE h 1000");
        for i in 0..100 {
            run(&mut s, &format!("HSET big f{i} {i}"));
        }
        let snap = s.snapshot();
        let mut t = KvStore::new();
        t.restore(snap.clone()).unwrap();
        assert_eq!(t, s);
        assert_eq!(t.snapshot(), snap);
        assert_eq!(run(&mut t, "HGET h b"), bulk("2"));
        assert_eq!(run(&mut t, "SCARD s"), int(3));
        assert_eq!(run(&mut t, "PEXPIRETIME h"), int(1_000_000));
        // A corrupt type code is named, and changes nothing.
        let mut bad = snap.to_vec();
        let at = bad.windows(3).position(|w| w == b"str").unwrap() + 3;
        assert_eq!(bad[at], 0, "the type code of a string");
        bad[at] = 9;
        let end = bad.len() - 4;
        let crc = super::super::crc32c(&bad[..end]).to_le_bytes();
        bad[end..].copy_from_slice(&crc);
        let e = t.restore(Bytes::from(bad)).unwrap_err().to_string();
        assert!(
            e.contains("type code 9 is unknown") && e.contains("\"str\""),
            "{e}"
        );
        assert_eq!(t, s);
        // Version 3: every value a string.
        let mut v3 = BytesMut::new();
        v3.extend_from_slice(b"RKVS");
        v3.put_u8(3);
        v3.put_u64_le(1);
        super::super::put_str(&mut v3, b"old");
        super::super::put_str(&mut v3, b"value");
        let mut users = Vec::new();
        crate::acl::codec::encode(&crate::acl::Users::default(), &mut users);
        super::super::put_str(&mut v3, &users);
        v3.put_u64_le(0);
        v3.put_u64_le(0);
        let crc = super::super::crc32c(&v3);
        v3.put_u32_le(crc);
        let mut o = KvStore::new();
        o.restore(v3.freeze()).unwrap();
        assert_eq!(run(&mut o, "GET old"), bulk("value"));
        assert_eq!(run(&mut o, "TYPE old"), Frame::Simple("string".into()));
    }
}
