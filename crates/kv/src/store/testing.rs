//! What the store's tests share: stores driven by writes and reads or by
//! command lines, and their replies as frames.

use bytes::Bytes;
use raft_node::StateMachine;

use super::value::{Value, WRONGTYPE};
use super::{
    decode_query, encode_reads, encode_writes, ExpireCommand, ExpireCondition, GetExTime, GetExTtl,
    KvStore, Read, SetCondition, SetName, SetTtl, TtlKind, TxOp, TypedCmd, Write,
};
use crate::acl::{self, PasswordHash};
use crate::cmd::{parse, Command};
use crate::frame::{Frame, Limits};

/// A decoded command (byte strings borrowed) as the owned one it was
/// encoded from, through its postcard form.
pub(super) fn owned<T: serde::Serialize, O: serde::de::DeserializeOwned>(decoded: &T) -> O {
    postcard::from_bytes(&postcard::to_stdvec(decoded).unwrap()).unwrap()
}

pub(super) fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

pub(super) fn sv(s: &str) -> Value {
    Value::Str(b(s))
}

pub(super) fn limits() -> Limits {
    Limits {
        max_bulk: 1 << 30,
        max_elements: 1 << 24,
        max_depth: 8,
        max_line: 1 << 20,
    }
}

/// Parses the whole output into frames (panics if it is not exactly that).
pub(super) fn frames(mut out: &[u8]) -> Vec<Frame> {
    let mut v = Vec::new();
    while !out.is_empty() {
        let (f, used) = Frame::parse(out, &limits()).expect("complete RESP frames");
        v.push(f);
        out = &out[used..];
    }
    v
}

pub(super) fn w(s: &mut KvStore, writes: &[Write]) -> Vec<Frame> {
    let out = frames(&s.apply(1, &encode_writes(writes)));
    assert_eq!(out.len(), writes.len());
    out
}

pub(super) fn w1(s: &mut KvStore, write: Write) -> Frame {
    w(s, &[write]).remove(0)
}

pub(super) fn r(s: &KvStore, reads: &[Read]) -> Vec<Frame> {
    let out = frames(&s.query(&encode_reads(reads)));
    assert_eq!(out.len(), reads.len());
    out
}

pub(super) fn r1(s: &KvStore, read: Read) -> Frame {
    r(s, &[read]).remove(0)
}

pub(super) fn get(s: &KvStore, k: &str) -> Frame {
    r1(s, Read::Get { key: b(k) })
}

pub(super) fn set(k: &str, v: &str) -> Write {
    set_with(k, v, SetCondition::Always, false)
}

pub(super) fn set_with(k: &str, v: &str, condition: SetCondition, get: bool) -> Write {
    Write::Set {
        key: b(k),
        value: b(v),
        condition,
        get,
        ttl: SetTtl::Clear,
    }
}

pub(super) fn incr(k: &str, by: i64) -> Write {
    Write::IncrBy { key: b(k), by }
}

pub(super) fn ok() -> Frame {
    Frame::Simple("OK".into())
}

pub(super) fn bulk_f(s: &str) -> Frame {
    Frame::Bulk(b(s))
}

pub(super) fn err(s: &str) -> Frame {
    Frame::Error(s.into())
}

pub(super) fn is_error(f: &Frame) -> bool {
    matches!(f, Frame::Error(e) if e.starts_with("ERR "))
}

/// xorshift64*: a small seeded generator for the randomized tests.
pub(super) struct Xorshift(pub(super) u64);

impl Xorshift {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(super) fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The one reply in `out` (panics if it is not exactly one frame).
pub(super) fn frame(out: &[u8]) -> Frame {
    let (f, used) = Frame::parse(out, &limits()).expect("a complete RESP frame");
    assert_eq!(used, out.len(), "one reply");
    f
}

/// Runs one command line (words split on spaces) as the server would:
/// a write through `apply` at log index `index`, a read as a query
/// (checking its size is found before it is built: exactly for the
/// commands on hashes, sets and lists, an upper bound for the others).
pub(super) fn run_at(s: &mut KvStore, index: u64, line: &str) -> Frame {
    let args: Vec<Bytes> = line
        .split(' ')
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    match parse(&args) {
        Command::Write(w) => frame(&s.apply(index, &encode_writes(&[w]))),
        Command::Read(r) => {
            let q = encode_reads(std::slice::from_ref(&r));
            let out = s.query(&q);
            let (_, ops) = decode_query(&q).unwrap();
            let op = &ops[0];
            if matches!(r, Read::Typed { .. }) {
                assert_eq!(s.reply_size(op), out.len(), "the size of {line:?}");
            } else {
                assert!(s.reply_size(op) >= out.len(), "the size of {line:?}");
            }
            frame(&out)
        }
        Command::Refused(e) | Command::Invalid(e) => Frame::Error(e),
        other => panic!("{line}: {other:?}"),
    }
}

/// [`run_at`] at log index 1.
pub(super) fn run(s: &mut KvStore, line: &str) -> Frame {
    run_at(s, 1, line)
}

pub(super) fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

pub(super) fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

pub(super) fn wrong() -> Frame {
    Frame::Error(WRONGTYPE.into())
}

/// The bulk strings of an array, as a sorted multiset.
pub(super) fn items(f: Frame) -> Vec<String> {
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

/// Strings as a sorted multiset, to compare with [`items`].
pub(super) fn strs(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// All the writes, for encoding tests.
pub(super) fn every_write() -> Vec<Write> {
    vec![
        set_with("k", "v", SetCondition::Always, false),
        set_with("k", "v", SetCondition::IfAbsent, true),
        set_with("", "", SetCondition::IfPresent, false),
        Write::Set {
            key: b("t"),
            value: b("v"),
            condition: SetCondition::IfPresent,
            get: true,
            ttl: SetTtl::In {
                ms: 1500,
                name: SetName::PSetEx,
            },
        },
        Write::Set {
            key: b("t"),
            value: b("v"),
            condition: SetCondition::Always,
            get: false,
            ttl: SetTtl::At(u64::MAX),
        },
        Write::Set {
            key: b("t"),
            value: b(""),
            condition: SetCondition::IfAbsent,
            get: false,
            ttl: SetTtl::Keep,
        },
        Write::Expire {
            key: b("t"),
            when_ms: i64::MIN,
            command: ExpireCommand::PExpireAt,
            condition: ExpireCondition::IfSomeEarlier,
        },
        Write::Expire {
            key: b(""),
            when_ms: 5,
            command: ExpireCommand::Expire,
            condition: ExpireCondition::Always,
        },
        Write::Persist { key: b("t") },
        Write::GetEx {
            key: b("t"),
            ttl: GetExTtl::Persist,
        },
        Write::GetEx {
            key: b("t"),
            ttl: GetExTtl::Set(GetExTime {
                seconds: false,
                absolute: true,
                time: b("123"),
            }),
        },
        Write::GetEx {
            key: b("t"),
            ttl: GetExTtl::Set(GetExTime {
                seconds: true,
                absolute: false,
                time: b(""),
            }),
        },
        Write::Del {
            keys: vec![b("a"), b(""), b("c")],
        },
        Write::Del { keys: vec![] },
        incr("n", i64::MIN),
        Write::Append {
            key: b("k"),
            value: b("more"),
        },
        Write::MSet {
            pairs: vec![(b("a"), b("1")), (b("b"), b(""))],
        },
        Write::GetSet {
            key: b("g"),
            value: b("s"),
        },
        Write::FlushDb,
        Write::Cas {
            key: b("c"),
            expected: None,
            new: b("1"),
        },
        Write::Cas {
            key: b("c"),
            expected: Some(b("")),
            new: b("2"),
        },
        Write::AclInit { password: None },
        Write::AclInit {
            password: Some(PasswordHash::of(b"pw")),
        },
        Write::AclSetUser {
            name: b("alice"),
            rules: [
                "on",
                ">pw",
                "~app:*",
                "&*",
                "+@read",
                "-keys",
                "+acl|whoami",
            ]
            .iter()
            .map(|r| acl::Rule::parse(r.as_bytes()).unwrap())
            .collect(),
        },
        Write::AclSetUser {
            name: b(""),
            rules: vec![],
        },
        Write::AclDelUser {
            names: vec![b("alice"), b("bob")],
        },
        Write::Typed {
            cmd: TypedCmd::HSet,
            args: vec![b("h"), b("f"), b("")],
        },
        Write::Typed {
            cmd: TypedCmd::SPop,
            args: vec![],
        },
        Write::GetDel { key: b("k") },
        Write::SetRange {
            key: b("k"),
            offset: 7,
            value: b("xy"),
        },
        Write::MSetNx {
            pairs: vec![(b("a"), b("1")), (b("b"), b(""))],
        },
        Write::IncrByFloat {
            key: b("f"),
            by: b("1.5e3"),
        },
        Write::Exec {
            watches: vec![],
            ops: vec![],
        },
        Write::Exec {
            watches: vec![(b("w"), 7), (b(""), u64::MAX)],
            ops: vec![
                TxOp::Write(set("k", "v")),
                TxOp::Read(Read::Get { key: b("k") }),
                TxOp::Reply(b("+PONG\r\n")),
                TxOp::Write(Write::FlushDb),
                TxOp::Read(Read::DbSize),
            ],
        },
    ]
}

pub(super) fn every_read() -> Vec<Read> {
    vec![
        Read::Get { key: b("k") },
        Read::MGet {
            keys: vec![b("a"), b("b")],
        },
        Read::Exists { keys: vec![b("")] },
        Read::Strlen { key: b("k") },
        Read::Ttl {
            key: b("k"),
            kind: TtlKind::Ttl,
        },
        Read::Ttl {
            key: b(""),
            kind: TtlKind::PExpireTime,
        },
        Read::DbSize,
        Read::VolatileLen,
        Read::Keys { pattern: b("*") },
        Read::Scan {
            cursor: u64::MAX,
            pattern: Some(b("a*")),
            count: 10,
        },
        Read::Scan {
            cursor: 0,
            pattern: None,
            count: 0,
        },
        Read::GetRange {
            key: b("k"),
            start: i64::MIN,
            end: -1,
        },
        Read::Versions {
            keys: vec![b("a"), b("")],
        },
        // Last: a whole one in a cut-off query would be an error.
        Read::Typed {
            cmd: TypedCmd::HGetAll,
            args: vec![b("h")],
        },
        Read::Typed {
            cmd: TypedCmd::SInter,
            args: vec![],
        },
    ]
}
